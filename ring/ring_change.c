/* ring_change.c -- the future ring, pending write targets and transfers of
 * one membership change (see ring_change.h for the rules).
 *
 * DESIGN  Both rings' tokens together cut the ring into elementary ranges
 *         (t[i-1], t[i]]; inside one of them both rings' replica sets are
 *         constant -- those of t[i] -- because a vnode at T owns (prev, T]
 *         and every boundary of either ring is among the t[i]. Transfers are
 *         computed per elementary range and then merged: consecutive ranges
 *         with the same destination and sources become one.
 */
#define KV_LOG_MODULE "ring"
#include "ring_change.h"

#include <stdlib.h>

const char *ring_change_kind_str(ring_change_kind_t k)
{
    switch (k) {
    case RING_CHANGE_JOIN: return "join";
    case RING_CHANGE_LEAVE: return "leave";
    case RING_CHANGE_REMOVE: return "remove";
    case RING_CHANGE_REPLACE: return "replace";
    }
    return "?";
}

bool ring_range_contains(uint64_t start, uint64_t end, uint64_t token)
{
    if (start < end) return token > start && token <= end;
    if (start > end) return token > start || token <= end;
    return true; /* the whole ring */
}

kv_status_t ring_change_future(const ring_t *cur, const ring_change_t *ch,
                               ring_t **out)
{
    uint32_t idx;
    if (!ch || !ch->node) return KV_INVALID;
    ring_t *f = ring_clone(cur);
    kv_status_t rc = KV_INVALID;
    switch (ch->kind) {
    case RING_CHANGE_JOIN:
        if (ring_node_find(cur, ch->node, &idx) == KV_OK) {
            rc = KV_EXISTS;
            break;
        }
        rc = ring_add_node(f, ch->node, ch->rack, ch->tokens, ch->ntokens);
        break;
    case RING_CHANGE_LEAVE:
    case RING_CHANGE_REMOVE:
        rc = ring_remove_node(f, ch->node);
        break;
    case RING_CHANGE_REPLACE: {
        const uint64_t *t;
        if (!ch->replaced || ring_node_find(cur, ch->replaced, &idx) != KV_OK) {
            rc = KV_NOTFOUND;
            break;
        }
        if (ring_node_find(cur, ch->node, &idx) == KV_OK) {
            rc = KV_EXISTS;
            break;
        }
        ring_node_find(cur, ch->replaced, &idx);
        size_t nt = ring_node_tokens(cur, idx, &t);
        uint64_t *tokens = kv_memdup(t, nt * sizeof *t);
        rc = ring_remove_node(f, ch->replaced);
        if (rc == KV_OK) rc = ring_add_node(f, ch->node, ch->rack, tokens, nt);
        kv_free(tokens);
        break;
    }
    }
    if (rc != KV_OK) {
        ring_destroy(f);
        return rc;
    }
    *out = f;
    return KV_OK;
}

/* Replica names of token in ring r. */
static size_t names_of(const ring_t *r, uint64_t token, const char **out)
{
    uint32_t idx[RING_MAX_RF];
    size_t n = ring_replicas(r, token, idx, RING_MAX_RF);
    for (size_t i = 0; i < n; i++) out[i] = ring_node_name(r, idx[i]);
    return n;
}

static bool has_name(const char *const *set, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(set[i], name)) return true;
    return false;
}

size_t ring_write_targets(const ring_t *cur, const ring_t *future,
                          uint64_t token, const char **out, size_t max,
                          size_t *npending)
{
    const char *c[RING_MAX_RF], *f[RING_MAX_RF];
    size_t nc = names_of(cur, token, c);
    size_t nf = future ? names_of(future, token, f) : 0;
    size_t n = 0;
    for (size_t i = 0; i < nc && n < max; i++) out[n++] = c[i];
    size_t base = n;
    for (size_t i = 0; i < nf && n < max; i++)
        if (!has_name(c, nc, f[i])) out[n++] = f[i];
    *npending = n - base;
    return n;
}

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Every distinct token of both rings, sorted; returns the count. */
static size_t all_tokens(const ring_t *a, const ring_t *b, uint64_t **out)
{
    size_t cap = ring_vnode_count(a) + ring_vnode_count(b), n = 0;
    uint64_t *t = kv_malloc((cap ? cap : 1) * sizeof *t);
    const ring_t *rings[2] = {a, b};
    for (int k = 0; k < 2; k++)
        for (uint32_t i = 0; i < ring_node_count(rings[k]); i++) {
            const uint64_t *nt;
            size_t m = ring_node_tokens(rings[k], i, &nt);
            memcpy(t + n, nt, m * sizeof *nt);
            n += m;
        }
    qsort(t, n, sizeof *t, u64_cmp);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (k == 0 || t[k - 1] != t[i]) t[k++] = t[i];
    *out = t;
    return k;
}

static bool same_sources(const ring_transfer_t *a, const ring_transfer_t *b)
{
    if (a->nsources != b->nsources) return false;
    for (uint32_t i = 0; i < a->nsources; i++)
        if (strcmp(a->sources[i], b->sources[i])) return false;
    return true;
}

typedef struct tr_item {
    ring_transfer_t t;
    size_t order; /* elementary range number: ring order from the wrap */
} tr_item_t;

static int item_cmp(const void *a, const void *b)
{
    const tr_item_t *x = a, *y = b;
    int c = strcmp(x->t.dest, y->t.dest);
    if (c) return c;
    return x->order < y->order ? -1 : x->order > y->order;
}

kv_status_t ring_change_transfers(const ring_t *cur, const ring_t *future,
                                  const ring_change_t *ch,
                                  ring_transfer_t **out, size_t *nout)
{
    *out = NULL;
    *nout = 0;
    if (ring_node_count(cur) == 0) return KV_OK; /* nothing to copy from */
    uint64_t *tok;
    size_t nt = all_tokens(cur, future, &tok);
    const char *dead = ch->kind == RING_CHANGE_REMOVE    ? ch->node
                       : ch->kind == RING_CHANGE_REPLACE ? ch->replaced
                                                         : NULL;
    tr_item_t *items = NULL;
    size_t n = 0, cap = 0;
    for (size_t i = 0; i < nt; i++) {
        uint64_t start = tok[i == 0 ? nt - 1 : i - 1], end = tok[i];
        const char *c[RING_MAX_RF], *f[RING_MAX_RF];
        size_t nc = names_of(cur, end, c), nf = names_of(future, end, f);
        /* sources: the displaced replicas, or (dead node / none displaced)
         * every live current replica */
        const char *src[RING_MAX_RF];
        uint32_t ns = 0;
        if (!dead)
            for (size_t k = 0; k < nc; k++)
                if (!has_name(f, nf, c[k])) src[ns++] = c[k];
        if (ns == 0)
            for (size_t k = 0; k < nc; k++)
                if (!dead || strcmp(c[k], dead)) src[ns++] = c[k];
        for (size_t k = 0; k < nf; k++) {
            if (has_name(c, nc, f[k])) continue;
            if (ns == 0) continue; /* nobody holds this range's data */
            if (n == cap) {
                cap = cap ? cap * 2 : 16;
                items = kv_realloc(items, cap * sizeof *items);
            }
            tr_item_t *it = &items[n++];
            memset(it, 0, sizeof *it);
            it->order = i;
            it->t.start = start;
            it->t.end = end;
            it->t.dest = f[k];
            it->t.nsources = ns;
            memcpy(it->t.sources, src, ns * sizeof *src);
        }
    }
    kv_free(tok);
    if (n) qsort(items, n, sizeof *items, item_cmp);
    ring_transfer_t *res = kv_malloc((n ? n : 1) * sizeof *res);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        ring_transfer_t *t = &items[i].t;
        if (k && !strcmp(res[k - 1].dest, t->dest) && res[k - 1].end == t->start &&
            same_sources(&res[k - 1], t) && res[k - 1].start != t->end) {
            res[k - 1].end = t->end;
            continue;
        }
        res[k++] = *t;
    }
    kv_free(items);
    *out = res;
    *nout = k;
    return KV_OK;
}
