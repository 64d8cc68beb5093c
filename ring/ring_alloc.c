/* ring_alloc.c -- choosing the tokens of a node that joins the ring.
 *
 * DESIGN  First node: num_tokens evenly spaced tokens, rotated by a hash of
 *         (cluster, node): every range is 1/num_tokens of the ring.
 *
 *         Later nodes (greedy, one token at a time, after Cassandra's
 *         replication-aware allocator): work on a scratch clone of the ring
 *         that already holds the new node Y with the tokens chosen so far.
 *         A candidate splits an existing range (prev, T] at prev + f * size
 *         for f in {1/4, 1/2, 3/4}, each nudged by up to +-1/32 by a hash of
 *         (cluster, node, token number, range) so that two nodes joining
 *         from the same ring view do not pick the same tokens. Its score is
 *         the change in
 *
 *             sum over nodes x of ((own_x - tp_x) / tp)^2
 *                               + ((eff_x - te_x) / te)^2
 *
 *         where tp = 1/N and te = min(RF, N)/N are the ideal primary and
 *         effective ownership with N nodes after the join; Y's own targets
 *         grow with its tokens (k/num_tokens of tp, te after k tokens), so
 *         early tokens do not grab too much. The lowest score wins (ties:
 *         the first candidate, so the result is deterministic).
 *
 *         A candidate's effect is computed exactly and locally: the primary
 *         share moves from the split range's owner to Y; replica sets change
 *         only for the new range, and for the ranges just before it whose
 *         clockwise walk reached the split point (ring->walk[] tells how
 *         far each walk went; those ranges are a contiguous run because a
 *         walk starting later sees a subset of the nodes). Those few sets
 *         are recomputed through a ring_view_t with Y's vnode inserted.
 *
 *         When Y's first token changes replica sets globally -- fewer nodes
 *         than RF (every set grows) or Y brings a new rack (every walk now
 *         seeks that rack) -- the first token is scored on primary
 *         ownership only; later tokens are scored in full.
 *
 * INVARIANTS (1) the ring passed in is never changed; (2) a chosen token is
 *            strictly inside an existing range of size >= 2, so it never
 *            equals a taken token.
 */
#define KV_LOG_MODULE "ring"
#include "ring_int.h"

#include <stdlib.h>
#include <xxhash.h>

static const double ring_alloc_fracs[] = {0.25, 0.5, 0.75};

typedef struct ring_alloc {
    ring_t *s; /* scratch ring: the old ring plus Y */
    ring_walker_t w;
    uint32_t y;
    bool primary_only;
    double tp, te;   /* ideal per-node ownership after the join */
    double tpy, tey; /* Y's target after the token being placed */
    double *dp, *de; /* [nnodes] ownership change of the candidate */
    bool *touched_flag;
    uint32_t *touched;
    size_t ntouched;
    uint32_t *set_a, *set_b;
} ring_alloc_t;

static uint64_t ring_mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static uint64_t ring_name_hash(const char *cluster, const char *node)
{
    return XXH3_64bits_withSeed(node, strlen(node),
                                XXH3_64bits(cluster, strlen(cluster)));
}

static void ring_alloc_touch(ring_alloc_t *c, uint32_t x, double dp, double de)
{
    if (!c->touched_flag[x]) {
        c->touched_flag[x] = true;
        c->touched[c->ntouched++] = x;
    }
    c->dp[x] += dp;
    c->de[x] += de;
}

static bool ring_in_set(const uint32_t *set, uint32_t n, uint32_t x)
{
    for (uint32_t i = 0; i < n; i++)
        if (set[i] == x) return true;
    return false;
}

static double ring_sq(double x) { return x * x; }

/* Score change if Y takes the first `a` (fraction of the ring) of vnode j's
 * range. */
static double ring_alloc_eval(ring_alloc_t *c, size_t j, double a)
{
    ring_t *s = c->s;
    ring_alloc_touch(c, c->y, a, 0);
    ring_alloc_touch(c, s->vown[j], -a, 0);
    if (!c->primary_only) {
        const uint32_t n = s->nrep;
        ring_view_t v = {s->vown, s->nv, j, c->y};
        uint32_t steps;
        /* The new range (prev, p] and the shrunk (p, T]. */
        ring_walk_(s, &c->w, &v, j, c->set_a, &steps);
        for (uint32_t k = 0; k < n; k++) {
            ring_alloc_touch(c, c->set_a[k], 0, a);
            ring_alloc_touch(c, s->reps[j * n + k], 0, -a);
        }
        /* Ranges before it whose walk passed the split point. */
        for (size_t d = 0; d + 1 < s->nv; d++) {
            size_t i = (j + s->nv - 1 - d) % s->nv;
            if (d + 1 >= s->walk[i]) break;
            ring_walk_(s, &c->w, &v, i < j ? i : i + 1, c->set_b, &steps);
            const uint32_t *old = &s->reps[i * n];
            double ri = ring_range_frac_(s, i);
            for (uint32_t k = 0; k < n; k++) {
                if (!ring_in_set(old, n, c->set_b[k]))
                    ring_alloc_touch(c, c->set_b[k], 0, ri);
                if (!ring_in_set(c->set_b, n, old[k]))
                    ring_alloc_touch(c, old[k], 0, -ri);
            }
        }
    }
    double score = 0;
    for (size_t t = 0; t < c->ntouched; t++) {
        uint32_t x = c->touched[t];
        double tpx = x == c->y ? c->tpy : c->tp;
        double tex = x == c->y ? c->tey : c->te;
        double op = s->own[x], oe = s->eff[x];
        score += ring_sq((op + c->dp[x] - tpx) / c->tp) -
                 ring_sq((op - tpx) / c->tp);
        if (!c->primary_only)
            score += ring_sq((oe + c->de[x] - tex) / c->te) -
                     ring_sq((oe - tex) / c->te);
        c->dp[x] = c->de[x] = 0;
        c->touched_flag[x] = false;
    }
    c->ntouched = 0;
    return score;
}

static void ring_node_insert_token(ring_node_t *n, uint64_t t)
{
    n->tokens = kv_realloc(n->tokens, (n->ntokens + 1) * sizeof *n->tokens);
    uint32_t i = n->ntokens;
    while (i > 0 && n->tokens[i - 1] > t) {
        n->tokens[i] = n->tokens[i - 1];
        i--;
    }
    n->tokens[i] = t;
    n->ntokens++;
}

/* Place one more token of Y (token number k of total); false if no range
 * can be split. */
static bool ring_alloc_one(ring_alloc_t *c, uint64_t seed, uint32_t k,
                           uint32_t total)
{
    ring_t *s = c->s;
    const ring_node_t *y = &s->nodes[c->y];
    double nn = (double)s->nnodes;
    c->tp = 1.0 / nn;
    c->te = (double)KV_MIN(s->rf, s->nnodes) / nn;
    c->tpy = c->tp * (k + 1) / total;
    c->tey = c->te * (k + 1) / total;
    c->primary_only = false;
    if (y->ntokens == 0) {
        bool rack_active = false;
        for (uint32_t i = 0; i < s->nnodes && !rack_active; i++)
            rack_active = s->nodes[i].ntokens > 0 &&
                          s->nodes[i].rack_id == y->rack_id;
        c->primary_only = s->nactive < s->rf || !rack_active;
    }

    bool found = false;
    double best = 0;
    uint64_t best_tok = 0;
    uint64_t hk = ring_mix64(seed ^ ((uint64_t)k << 32));
    for (size_t j = 0; j < s->nv; j++) {
        uint64_t prev = s->vtok[j == 0 ? s->nv - 1 : j - 1];
        uint64_t size = s->vtok[j] - prev; /* 0: the whole ring */
        double dsize = s->nv == 1 ? 0x1p64 : (double)size;
        if (s->nv > 1 && size < 2) continue;
        uint64_t h = ring_mix64(hk ^ j);
        for (size_t f = 0; f < KV_ARRAY_LEN(ring_alloc_fracs); f++) {
            double jit = ((double)((h >> (f * 16)) & 0xffff) / 65536.0 - 0.5) / 16;
            double units = (ring_alloc_fracs[f] + jit) * dsize;
            uint64_t a = units >= 0x1p64 ? UINT64_MAX : (uint64_t)units;
            uint64_t amax = size - 1; /* size 0 (whole ring): UINT64_MAX */
            if (a < 1) a = 1;
            if (a > amax) a = amax;
            double score = ring_alloc_eval(c, j, (double)a * 0x1p-64);
            if (!found || score < best) {
                found = true;
                best = score;
                best_tok = prev + a;
            }
        }
    }
    if (!found) return false;
    ring_node_insert_token(&s->nodes[c->y], best_tok);
    ring_rebuild_(s);
    return true;
}

kv_status_t ring_allocate_tokens(const ring_t *ring, const char *cluster_name,
                                 const char *node_name, const char *rack,
                                 uint32_t num_tokens, uint64_t *out)
{
    uint32_t idx;
    if (!cluster_name) cluster_name = "";
    if (!rack) rack = "";
    if (!node_name || !node_name[0] || strlen(node_name) > RING_MAX_NAME ||
        strlen(rack) > RING_MAX_NAME || num_tokens == 0 ||
        num_tokens > RING_MAX_NODE_TOKENS || !out) {
        kv_errmsg_set("ring: bad token allocation arguments");
        return KV_INVALID;
    }
    if (ring_node_find(ring, node_name, &idx) == KV_OK) {
        kv_errmsg_set("ring: node %s already present", node_name);
        return KV_EXISTS;
    }
    uint64_t seed = ring_name_hash(cluster_name, node_name);

    if (ring->nv == 0) {
        uint64_t step = UINT64_MAX / num_tokens;
        for (uint32_t i = 0; i < num_tokens; i++) out[i] = seed + i * step;
        /* Ascending order: rotate so the wrapped tokens come first. */
        uint32_t first = 0;
        for (uint32_t i = 1; i < num_tokens; i++)
            if (out[i] < out[first]) first = i;
        uint64_t *tmp = kv_memdup(out, num_tokens * sizeof *out);
        for (uint32_t i = 0; i < num_tokens; i++)
            out[i] = tmp[(first + i) % num_tokens];
        kv_free(tmp);
        return KV_OK;
    }

    kv_status_t rc = KV_OK;
    ring_alloc_t c;
    memset(&c, 0, sizeof c);
    c.s = ring_clone(ring);
    c.y = ring_append_node_(c.s, node_name, rack);
    ring_rebuild_(c.s);
    ring_walker_init_(&c.w, c.s);
    c.dp = kv_calloc(c.s->nnodes, sizeof *c.dp);
    c.de = kv_calloc(c.s->nnodes, sizeof *c.de);
    c.touched_flag = kv_calloc(c.s->nnodes, sizeof *c.touched_flag);
    c.touched = kv_calloc(c.s->nnodes, sizeof *c.touched);
    c.set_a = kv_calloc(c.s->rf, sizeof *c.set_a);
    c.set_b = kv_calloc(c.s->rf, sizeof *c.set_b);
    for (uint32_t k = 0; k < num_tokens; k++)
        if (!ring_alloc_one(&c, seed, k, num_tokens)) {
            kv_errmsg_set("ring: no range left to split for %s", node_name);
            rc = KV_INVALID;
            goto err;
        }
    memcpy(out, c.s->nodes[c.y].tokens, num_tokens * sizeof *out);
err:
    kv_free(c.dp);
    kv_free(c.de);
    kv_free(c.touched_flag);
    kv_free(c.touched);
    kv_free(c.set_a);
    kv_free(c.set_b);
    ring_walker_deinit_(&c.w);
    ring_destroy(c.s);
    return rc;
}
