/* ring.c -- the token ring: membership, vnode lookup, replica placement,
 * ownership figures and the invariant checker.
 *
 * DESIGN  Membership (nodes[] with their sorted tokens) is the source of
 *         truth; everything else is derived by ring_rebuild_ after each
 *         add/remove and never patched in place:
 *
 *           nodes[] --rebuild--> vtok[]/vown[]  all tokens, ascending
 *                            --> reps[]         replica set per vnode range
 *                            --> own[]/eff[]    ownership per node
 *
 *         A lookup is a binary search of vtok[] for the first token >= t
 *         (none: wrap to vnode 0) and, for replicas, a copy of that
 *         vnode's precomputed set -- O(log V) with no allocation, since it
 *         runs on every request. A rebuild costs O(V log V + V * walk),
 *         where walk is the clockwise distance needed to fill a set (a few
 *         vnodes; more when racks are very unequal); membership changes
 *         are rare.
 *
 *         Replica walk (ring_walk_, NetworkTopologyStrategy within one DC):
 *         step clockwise over vnodes, ignore nodes already seen; a node of
 *         an unused rack is taken, one of a used rack is set aside; once
 *         every rack holding tokens is used, the set-aside nodes are taken
 *         in clockwise order, then every further new node, until nrep =
 *         min(RF, nodes holding tokens) are taken.
 *
 * INVARIANTS (checked by ring_validate)
 *   (1) node names are non-empty and distinct; every node holds >= 1 token,
 *       kept strictly ascending;
 *   (2) vtok[] is strictly ascending, holds exactly the union of the
 *       nodes' tokens (so no token has two owners), vown[i] is the node
 *       whose token list holds vtok[i], and each node owns ntokens vnodes;
 *   (3) every replica set has nrep = min(RF, nodes) distinct valid nodes,
 *       starts with the vnode's owner, spans min(nrep, racks) racks, and
 *       equals a fresh walk;
 *   (4) own[] sums to 1 and eff[] to nrep (0 for an empty ring), each
 *       matching a fresh computation.
 *
 * THREADING  none inside; see ring.h.
 */
#define KV_LOG_MODULE "ring"
#include "ring_int.h"

#include "engine.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>

/* ---- small helpers ----------------------------------------------------- */

static void *ring_realloc_n(void *p, size_t count, size_t size)
{
    return kv_realloc(p, (count ? count : 1) * size);
}

static int ring_u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

typedef struct ring_pair {
    uint64_t tok;
    uint32_t own;
} ring_pair_t;

static int ring_pair_cmp(const void *a, const void *b)
{
    const ring_pair_t *x = a, *y = b;
    return x->tok < y->tok ? -1 : x->tok > y->tok;
}

/* Index of the first vnode whose token is >= t, wrapping to 0. nv > 0. */
static size_t ring_search(const ring_t *r, uint64_t t)
{
    size_t lo = 0, hi = r->nv;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->vtok[mid] < t) lo = mid + 1;
        else hi = mid;
    }
    return lo == r->nv ? 0 : lo;
}

static bool ring_name_ok(const char *s, bool allow_empty)
{
    if (!s) return false;
    size_t n = strlen(s);
    return n <= RING_MAX_NAME && (allow_empty || n > 0);
}

static bool ring_has_token(const ring_t *r, uint64_t t)
{
    return r->nv > 0 && r->vtok[ring_search(r, t)] == t;
}

/* ---- create / destroy -------------------------------------------------- */

ring_t *ring_create(uint32_t replication_factor)
{
    if (replication_factor == 0 || replication_factor > RING_MAX_RF)
        return NULL;
    ring_t *r = kv_calloc(1, sizeof *r);
    r->rf = replication_factor;
    ring_rebuild_(r);
    return r;
}

void ring_destroy(ring_t *r)
{
    if (!r) return;
    for (uint32_t i = 0; i < r->nnodes; i++) {
        kv_free(r->nodes[i].name);
        kv_free(r->nodes[i].rack);
        kv_free(r->nodes[i].tokens);
    }
    kv_free(r->nodes);
    kv_free(r->vtok);
    kv_free(r->vown);
    kv_free(r->reps);
    kv_free(r->walk);
    kv_free(r->own);
    kv_free(r->eff);
    kv_free(r);
}

ring_t *ring_clone(const ring_t *src)
{
    ring_t *r = kv_calloc(1, sizeof *r);
    r->rf = src->rf;
    r->nnodes = r->cap_nodes = src->nnodes;
    r->nodes = ring_realloc_n(NULL, src->nnodes, sizeof *r->nodes);
    for (uint32_t i = 0; i < src->nnodes; i++) {
        const ring_node_t *s = &src->nodes[i];
        ring_node_t *d = &r->nodes[i];
        d->name = kv_strdup(s->name);
        d->rack = kv_strdup(s->rack);
        d->ntokens = s->ntokens;
        d->tokens = ring_realloc_n(NULL, s->ntokens, sizeof *d->tokens);
        if (s->ntokens)
            memcpy(d->tokens, s->tokens, s->ntokens * sizeof *d->tokens);
        d->rack_id = s->rack_id;
    }
    ring_rebuild_(r);
    return r;
}

uint32_t ring_replication_factor(const ring_t *r) { return r->rf; }

uint64_t ring_key_token(kv_slice_t key) { return eng_token(key); }

/* ---- replica walk ------------------------------------------------------ */

void ring_walker_init_(ring_walker_t *w, const ring_t *r)
{
    w->node_mark = kv_calloc(r->nnodes ? r->nnodes : 1, sizeof(uint32_t));
    w->rack_mark = kv_calloc(r->nracks ? r->nracks : 1, sizeof(uint32_t));
    w->skipped = kv_calloc(r->nnodes ? r->nnodes : 1, sizeof(uint32_t));
    w->stamp = 0;
}

void ring_walker_deinit_(ring_walker_t *w)
{
    kv_free(w->node_mark);
    kv_free(w->rack_mark);
    kv_free(w->skipped);
}

static inline uint32_t ring_view_owner(const ring_view_t *v, size_t k)
{
    if (v->ins == SIZE_MAX || k < v->ins) return v->own[k];
    if (k == v->ins) return v->ins_owner;
    return v->own[k - 1];
}

uint32_t ring_walk_(const ring_t *r, ring_walker_t *w, const ring_view_t *v,
                    size_t start, uint32_t *out, uint32_t *steps_out)
{
    size_t len = v->nv + (v->ins != SIZE_MAX);
    uint32_t want = r->nrep, cnt = 0, nsk = 0, racks_seen = 0;
    size_t s = 0;
    if (++w->stamp == 0) { /* wrapped: marks are ambiguous, clear them */
        memset(w->node_mark, 0, (r->nnodes ? r->nnodes : 1) * sizeof(uint32_t));
        memset(w->rack_mark, 0, (r->nracks ? r->nracks : 1) * sizeof(uint32_t));
        w->stamp = 1;
    }
    const uint32_t st = w->stamp;
    for (; s < len && cnt < want; s++) {
        size_t k = start + s;
        if (k >= len) k -= len;
        uint32_t x = ring_view_owner(v, k);
        if (w->node_mark[x] == st) continue;
        w->node_mark[x] = st;
        uint32_t rk = r->nodes[x].rack_id;
        if (racks_seen == r->nracks_active) {
            out[cnt++] = x;
        } else if (w->rack_mark[rk] == st) {
            w->skipped[nsk++] = x;
        } else {
            w->rack_mark[rk] = st;
            racks_seen++;
            out[cnt++] = x;
            if (racks_seen == r->nracks_active)
                for (uint32_t i = 0; i < nsk && cnt < want; i++)
                    out[cnt++] = w->skipped[i];
        }
    }
    kv_assert(cnt == want);
    *steps_out = (uint32_t)s;
    return cnt;
}

/* ---- rebuild ----------------------------------------------------------- */

void ring_rebuild_(ring_t *r)
{
    /* Rack ids: O(nodes^2) string compares, fine for the node counts of
     * one cluster and only on membership changes. */
    r->nracks = 0;
    for (uint32_t i = 0; i < r->nnodes; i++) {
        uint32_t j = 0;
        while (j < i && strcmp(r->nodes[j].rack, r->nodes[i].rack) != 0) j++;
        r->nodes[i].rack_id = j < i ? r->nodes[j].rack_id : r->nracks++;
    }
    bool *rack_seen = kv_calloc(r->nracks ? r->nracks : 1, sizeof(bool));
    r->nactive = r->nracks_active = 0;
    r->nv = 0;
    for (uint32_t i = 0; i < r->nnodes; i++) {
        const ring_node_t *n = &r->nodes[i];
        if (n->ntokens == 0) continue;
        r->nactive++;
        r->nv += n->ntokens;
        if (!rack_seen[n->rack_id]) {
            rack_seen[n->rack_id] = true;
            r->nracks_active++;
        }
    }
    kv_free(rack_seen);

    ring_pair_t *pairs = ring_realloc_n(NULL, r->nv, sizeof *pairs);
    size_t k = 0;
    for (uint32_t i = 0; i < r->nnodes; i++)
        for (uint32_t t = 0; t < r->nodes[i].ntokens; t++)
            pairs[k++] = (ring_pair_t){r->nodes[i].tokens[t], i};
    qsort(pairs, r->nv, sizeof *pairs, ring_pair_cmp);
    r->vtok = ring_realloc_n(r->vtok, r->nv, sizeof *r->vtok);
    r->vown = ring_realloc_n(r->vown, r->nv, sizeof *r->vown);
    for (size_t i = 0; i < r->nv; i++) {
        r->vtok[i] = pairs[i].tok;
        r->vown[i] = pairs[i].own;
    }
    kv_free(pairs);

    r->nrep = KV_MIN(r->rf, r->nactive);
    r->reps = ring_realloc_n(r->reps, r->nv * r->nrep, sizeof *r->reps);
    r->walk = ring_realloc_n(r->walk, r->nv, sizeof *r->walk);
    ring_walker_t w;
    ring_walker_init_(&w, r);
    ring_view_t v = {r->vown, r->nv, SIZE_MAX, 0};
    for (size_t i = 0; i < r->nv; i++)
        ring_walk_(r, &w, &v, i, &r->reps[i * r->nrep], &r->walk[i]);
    ring_walker_deinit_(&w);

    r->own = ring_realloc_n(r->own, r->nnodes, sizeof *r->own);
    r->eff = ring_realloc_n(r->eff, r->nnodes, sizeof *r->eff);
    for (uint32_t i = 0; i < r->nnodes; i++) r->own[i] = r->eff[i] = 0;
    for (size_t i = 0; i < r->nv; i++) {
        double f = ring_range_frac_(r, i);
        r->own[r->vown[i]] += f;
        for (uint32_t j = 0; j < r->nrep; j++) r->eff[r->reps[i * r->nrep + j]] += f;
    }
}

/* ---- membership -------------------------------------------------------- */

static bool ring_find(const ring_t *r, const char *name, uint32_t *idx)
{
    for (uint32_t i = 0; i < r->nnodes; i++)
        if (strcmp(r->nodes[i].name, name) == 0) {
            *idx = i;
            return true;
        }
    return false;
}

uint32_t ring_append_node_(ring_t *r, const char *name, const char *rack)
{
    if (r->nnodes == r->cap_nodes) {
        r->cap_nodes = r->cap_nodes ? r->cap_nodes * 2 : 8;
        r->nodes = kv_realloc(r->nodes, r->cap_nodes * sizeof *r->nodes);
    }
    ring_node_t *n = &r->nodes[r->nnodes];
    memset(n, 0, sizeof *n);
    n->name = kv_strdup(name);
    n->rack = kv_strdup(rack ? rack : "");
    n->tokens = ring_realloc_n(NULL, 0, sizeof *n->tokens);
    return r->nnodes++;
}

kv_status_t ring_add_node(ring_t *r, const char *name, const char *rack,
                          const uint64_t *tokens, size_t n)
{
    uint32_t idx;
    if (!rack) rack = "";
    if (!ring_name_ok(name, false) || !ring_name_ok(rack, true) || !tokens ||
        n == 0 || n > RING_MAX_NODE_TOKENS) {
        kv_errmsg_set("ring: bad node arguments");
        return KV_INVALID;
    }
    if (ring_find(r, name, &idx)) {
        kv_errmsg_set("ring: node %s already present", name);
        return KV_EXISTS;
    }
    uint64_t *sorted = kv_memdup(tokens, n * sizeof *tokens);
    qsort(sorted, n, sizeof *sorted, ring_u64_cmp);
    for (size_t i = 1; i < n; i++)
        if (sorted[i] == sorted[i - 1]) {
            kv_errmsg_set("ring: token %" PRIu64 " given twice for %s",
                          sorted[i], name);
            kv_free(sorted);
            return KV_INVALID;
        }
    for (size_t i = 0; i < n; i++)
        if (ring_has_token(r, sorted[i])) {
            kv_errmsg_set("ring: token %" PRIu64 " of %s is already taken",
                          sorted[i], name);
            kv_free(sorted);
            return KV_EXISTS;
        }
    idx = ring_append_node_(r, name, rack);
    kv_free(r->nodes[idx].tokens);
    r->nodes[idx].tokens = sorted;
    r->nodes[idx].ntokens = (uint32_t)n;
    ring_rebuild_(r);
    return KV_OK;
}

kv_status_t ring_remove_node(ring_t *r, const char *name)
{
    uint32_t idx;
    if (!name || !ring_find(r, name, &idx)) return KV_NOTFOUND;
    ring_node_t *n = &r->nodes[idx];
    kv_free(n->name);
    kv_free(n->rack);
    kv_free(n->tokens);
    memmove(n, n + 1, (r->nnodes - idx - 1) * sizeof *n);
    r->nnodes--;
    ring_rebuild_(r);
    return KV_OK;
}

/* ---- placement --------------------------------------------------------- */

uint32_t ring_primary(const ring_t *r, uint64_t token)
{
    if (r->nv == 0) return RING_NO_NODE;
    return r->vown[ring_search(r, token)];
}

size_t ring_replicas(const ring_t *r, uint64_t token, uint32_t *out, size_t max)
{
    if (r->nv == 0) return 0;
    size_t n = KV_MIN((size_t)r->nrep, max);
    memcpy(out, &r->reps[ring_search(r, token) * r->nrep], n * sizeof *out);
    return n;
}

uint32_t ring_replica_count(const ring_t *r) { return r->nrep; }

/* ---- nodes and figures ------------------------------------------------- */

uint32_t ring_node_count(const ring_t *r) { return r->nnodes; }
size_t ring_vnode_count(const ring_t *r) { return r->nv; }
uint32_t ring_rack_count(const ring_t *r) { return r->nracks; }

kv_status_t ring_node_find(const ring_t *r, const char *name, uint32_t *idx_out)
{
    uint32_t idx;
    if (!name || !ring_find(r, name, &idx)) return KV_NOTFOUND;
    *idx_out = idx;
    return KV_OK;
}

const char *ring_node_name(const ring_t *r, uint32_t idx)
{
    return idx < r->nnodes ? r->nodes[idx].name : NULL;
}

const char *ring_node_rack(const ring_t *r, uint32_t idx)
{
    return idx < r->nnodes ? r->nodes[idx].rack : NULL;
}

size_t ring_node_tokens(const ring_t *r, uint32_t idx, const uint64_t **out)
{
    if (idx >= r->nnodes) return 0;
    *out = r->nodes[idx].tokens;
    return r->nodes[idx].ntokens;
}

double ring_ownership(const ring_t *r, uint32_t idx)
{
    return idx < r->nnodes ? r->own[idx] : 0.0;
}

double ring_effective_ownership(const ring_t *r, uint32_t idx)
{
    return idx < r->nnodes ? r->eff[idx] : 0.0;
}

/* ---- validate ---------------------------------------------------------- */

#define RING_CHECK(cond, ...)                                                  \
    do {                                                                       \
        if (!(cond)) {                                                         \
            kv_errmsg_set("ring_validate: " __VA_ARGS__);                      \
            rc = KV_CORRUPT;                                                   \
            goto err;                                                          \
        }                                                                      \
    } while (0)

kv_status_t ring_validate(const ring_t *r)
{
    kv_status_t rc = KV_OK;
    uint32_t *count = kv_calloc(r->nnodes ? r->nnodes : 1, sizeof *count);
    uint32_t *set = kv_calloc(r->rf, sizeof *set);
    double *own = kv_calloc(r->nnodes ? r->nnodes : 1, sizeof *own);
    double *eff = kv_calloc(r->nnodes ? r->nnodes : 1, sizeof *eff);
    bool *rk = kv_calloc(r->nnodes ? r->nnodes : 1, sizeof *rk);
    ring_walker_t w;
    ring_walker_init_(&w, r);
    size_t total = 0;

    RING_CHECK(r->rf >= 1 && r->rf <= RING_MAX_RF, "bad rf %u", r->rf);
    /* (1) */
    for (uint32_t i = 0; i < r->nnodes; i++) {
        const ring_node_t *n = &r->nodes[i];
        RING_CHECK(n->name && n->name[0] && n->rack, "node %u unnamed", i);
        RING_CHECK(n->ntokens >= 1, "node %s holds no token", n->name);
        for (uint32_t j = 0; j < i; j++) {
            RING_CHECK(strcmp(r->nodes[j].name, n->name) != 0,
                       "node name %s twice", n->name);
            RING_CHECK((strcmp(r->nodes[j].rack, n->rack) == 0) ==
                           (r->nodes[j].rack_id == n->rack_id),
                       "rack ids of %s and %s", r->nodes[j].name, n->name);
        }
        RING_CHECK(n->rack_id < r->nracks, "rack id of %s", n->name);
        for (uint32_t t = 1; t < n->ntokens; t++)
            RING_CHECK(n->tokens[t - 1] < n->tokens[t],
                       "tokens of %s not ascending", n->name);
        total += n->ntokens;
    }
    /* (2) */
    RING_CHECK(total == r->nv, "vnodes %zu, node tokens %zu", r->nv, total);
    RING_CHECK(r->nactive == r->nnodes, "active %u of %u", r->nactive, r->nnodes);
    for (size_t i = 0; i < r->nv; i++) {
        RING_CHECK(i == 0 || r->vtok[i - 1] < r->vtok[i],
                   "vnode tokens not strictly ascending at %zu", i);
        uint32_t o = r->vown[i];
        RING_CHECK(o < r->nnodes, "vnode %zu owner %u out of range", i, o);
        const ring_node_t *n = &r->nodes[o];
        RING_CHECK(bsearch(&r->vtok[i], n->tokens, n->ntokens, sizeof(uint64_t),
                           ring_u64_cmp) != NULL,
                   "vnode %zu token not in owner %s", i, n->name);
        count[o]++;
    }
    for (uint32_t i = 0; i < r->nnodes; i++)
        RING_CHECK(count[i] == r->nodes[i].ntokens,
                   "node %s owns %u vnodes, holds %u tokens", r->nodes[i].name,
                   count[i], r->nodes[i].ntokens);
    /* (3) */
    uint32_t nracks = 0;
    for (uint32_t i = 0; i < r->nnodes; i++)
        if (!rk[r->nodes[i].rack_id]) {
            rk[r->nodes[i].rack_id] = true;
            nracks++;
        }
    RING_CHECK(nracks == r->nracks && nracks == r->nracks_active,
               "rack count %u / %u / %u", nracks, r->nracks, r->nracks_active);
    RING_CHECK(r->nrep == KV_MIN(r->rf, r->nnodes), "nrep %u", r->nrep);
    ring_view_t v = {r->vown, r->nv, SIZE_MAX, 0};
    for (size_t i = 0; i < r->nv; i++) {
        const uint32_t *rs = &r->reps[i * r->nrep];
        uint32_t steps, racks = 0;
        RING_CHECK(r->nrep == 0 || rs[0] == r->vown[i],
                   "vnode %zu: first replica is not the owner", i);
        memset(rk, 0, (r->nnodes ? r->nnodes : 1) * sizeof *rk);
        for (uint32_t a = 0; a < r->nrep; a++) {
            RING_CHECK(rs[a] < r->nnodes, "vnode %zu replica out of range", i);
            for (uint32_t b = 0; b < a; b++)
                RING_CHECK(rs[a] != rs[b], "vnode %zu: replica twice", i);
            if (!rk[r->nodes[rs[a]].rack_id]) {
                rk[r->nodes[rs[a]].rack_id] = true;
                racks++;
            }
        }
        RING_CHECK(racks == KV_MIN(r->nrep, r->nracks),
                   "vnode %zu: replicas span %u racks", i, racks);
        ring_walk_(r, &w, &v, i, set, &steps);
        RING_CHECK(memcmp(set, rs, r->nrep * sizeof *set) == 0 &&
                       steps == r->walk[i],
                   "vnode %zu: stale replica set", i);
    }
    /* (4) */
    double sum_own = 0, sum_eff = 0;
    for (size_t i = 0; i < r->nv; i++) {
        double f = ring_range_frac_(r, i);
        own[r->vown[i]] += f;
        for (uint32_t a = 0; a < r->nrep; a++) eff[r->reps[i * r->nrep + a]] += f;
    }
    for (uint32_t i = 0; i < r->nnodes; i++) {
        RING_CHECK(fabs(own[i] - r->own[i]) < 1e-9 &&
                       fabs(eff[i] - r->eff[i]) < 1e-9,
                   "stale ownership of %s", r->nodes[i].name);
        sum_own += r->own[i];
        sum_eff += r->eff[i];
    }
    RING_CHECK(fabs(sum_own - (r->nv ? 1.0 : 0.0)) < 1e-9, "own sums to %g",
               sum_own);
    RING_CHECK(fabs(sum_eff - r->nrep) < 1e-9, "eff sums to %g", sum_eff);
err:
    ring_walker_deinit_(&w);
    kv_free(count);
    kv_free(set);
    kv_free(own);
    kv_free(eff);
    kv_free(rk);
    return rc;
}
