/* merkle.c -- Merkle trees over token ranges (see merkle.h).
 *
 * DESIGN  The tree is an implicit binary heap in one array: node 1 is the
 *         root, node i has children 2i and 2i+1, and the 2^depth leaves are
 *         nodes 2^depth .. 2^(depth+1)-1. A token maps to a leaf by its
 *         offset into the range, scaled in 128-bit arithmetic so that every
 *         range width up to the whole ring (2^64) splits evenly.
 *
 *         A leaf is a sum of cell hashes (order does not matter: replicas
 *         scan in the same order anyway, but a sum makes the leaf a
 *         function of the set). Inner nodes are XXH3 over their children,
 *         so a difference anywhere shows at the root.
 */
#include "merkle.h"

#include <xxhash.h>

#include "coding.h"

struct merkle {
    uint64_t start, end;
    uint32_t depth;
    uint64_t *node; /* 2^(depth+1) entries; [0] unused */
    uint64_t cells, outside;
};

typedef unsigned __int128 u128;

/* The width of (start, end] in tokens: 2^64 for the whole ring. */
static u128 width_of(uint64_t start, uint64_t end)
{
    return start == end ? (u128)1 << 64 : (u128)(uint64_t)(end - start);
}

/* No more leaves than tokens: a leaf always holds at least one token. */
static uint32_t depth_for(uint64_t start, uint64_t end, uint32_t depth)
{
    while (depth > 0 && ((u128)1 << depth) > width_of(start, end)) depth--;
    return depth;
}

merkle_t *merkle_create(uint64_t start, uint64_t end, uint32_t depth)
{
    if (depth > MERKLE_MAX_DEPTH) return NULL;
    depth = depth_for(start, end, depth);
    merkle_t *m = kv_calloc(1, sizeof *m);
    m->start = start;
    m->end = end;
    m->depth = depth;
    m->node = kv_calloc((size_t)2 << depth, sizeof *m->node);
    return m;
}

merkle_t *merkle_from_leaves(uint64_t start, uint64_t end, uint32_t depth,
                             const uint64_t *leaves, size_t n)
{
    if (depth > MERKLE_MAX_DEPTH || depth != depth_for(start, end, depth) ||
        n != (size_t)1 << depth)
        return NULL;
    merkle_t *m = merkle_create(start, end, depth);
    memcpy(m->node + n, leaves, n * sizeof *leaves);
    merkle_finish(m);
    return m;
}

void merkle_destroy(merkle_t *m)
{
    if (!m) return;
    kv_free(m->node);
    kv_free(m);
}

uint64_t merkle_cell_hash(kv_slice_t key, const eng_cell_t *cell)
{
    uint8_t h[8 + 1 + 8 + 8 + 4];
    kv_put_le64(h, cell->ts);
    h[8] = cell->tombstone;
    kv_put_le64(h + 9, cell->expire_ms);
    kv_put_le64(h + 17, cell->tombstone ? 0 : XXH3_64bits(cell->value.data, cell->value.len));
    kv_put_le32(h + 25, (uint32_t)key.len);
    return XXH3_64bits_withSeed(h, sizeof h, XXH3_64bits(key.data, key.len));
}

uint32_t merkle_leaf_of(const merkle_t *m, uint64_t token)
{
    u128 off = (u128)(uint64_t)(token - m->start - 1); /* 0 .. width-1 */
    return (uint32_t)((off << m->depth) / width_of(m->start, m->end));
}

static bool in_range(const merkle_t *m, uint64_t token)
{
    if (m->start < m->end) return token > m->start && token <= m->end;
    if (m->start > m->end) return token > m->start || token <= m->end;
    return true;
}

void merkle_add(merkle_t *m, uint64_t token, kv_slice_t key, const eng_cell_t *cell)
{
    if (!in_range(m, token)) {
        m->outside++;
        return;
    }
    m->node[((size_t)1 << m->depth) + merkle_leaf_of(m, token)] += merkle_cell_hash(key, cell);
    m->cells++;
}

void merkle_finish(merkle_t *m)
{
    for (size_t i = ((size_t)1 << m->depth) - 1; i >= 1; i--) {
        uint64_t kids[2] = {m->node[2 * i], m->node[2 * i + 1]};
        m->node[i] = XXH3_64bits(kids, sizeof kids);
    }
}

uint32_t merkle_depth(const merkle_t *m) { return m->depth; }
uint64_t merkle_root(const merkle_t *m) { return m->node[1]; }
uint64_t merkle_cells(const merkle_t *m) { return m->cells; }

const uint64_t *merkle_leaves(const merkle_t *m, size_t *n)
{
    *n = (size_t)1 << m->depth;
    return m->node + *n;
}

void merkle_leaf_range(const merkle_t *m, uint32_t first, uint32_t last,
                       uint64_t *s, uint64_t *e)
{
    u128 w = width_of(m->start, m->end);
    /* leaf i holds offsets [ceil(i*w/2^d), ceil((i+1)*w/2^d) - 1]: tokens
     * (start + lo, start + hi] with lo/hi the ends of the offsets + ... */
    u128 lo = (((u128)first * w) + (((u128)1 << m->depth) - 1)) >> m->depth;
    u128 hi = ((((u128)last + 1) * w) + (((u128)1 << m->depth) - 1)) >> m->depth;
    *s = m->start + (uint64_t)lo;
    *e = m->start + (uint64_t)hi;
}

typedef struct diff_acc {
    merkle_range_t *out;
    size_t cap, n;
    uint32_t leaves, visited;
    int64_t run_first, run_last; /* the run of differing leaves being built */
    const merkle_t *m;
} diff_acc_t;

static void run_flush(diff_acc_t *d)
{
    if (d->run_first < 0) return;
    if (d->n < d->cap)
        merkle_leaf_range(d->m, (uint32_t)d->run_first, (uint32_t)d->run_last,
                          &d->out[d->n].start, &d->out[d->n].end);
    d->n++;
    d->run_first = d->run_last = -1;
}

static void descend(const merkle_t *a, const merkle_t *b, size_t i, diff_acc_t *d)
{
    d->visited++;
    if (a->node[i] == b->node[i]) return;
    size_t first_leaf = (size_t)1 << a->depth;
    if (i >= first_leaf) {
        int64_t leaf = (int64_t)(i - first_leaf);
        d->leaves++;
        if (d->run_first >= 0 && d->run_last + 1 == leaf) {
            d->run_last = leaf;
        } else {
            run_flush(d);
            d->run_first = d->run_last = leaf;
        }
        return;
    }
    descend(a, b, 2 * i, d);
    descend(a, b, 2 * i + 1, d);
}

size_t merkle_diff(const merkle_t *a, const merkle_t *b, merkle_range_t *out,
                   size_t cap, uint32_t *leaves_out, uint32_t *visited,
                   kv_status_t *rc)
{
    if (a->start != b->start || a->end != b->end || a->depth != b->depth) {
        if (rc) *rc = KV_INVALID;
        return 0;
    }
    diff_acc_t d = {.out = out, .cap = cap, .run_first = -1, .run_last = -1, .m = a};
    descend(a, b, 1, &d);
    run_flush(&d);
    if (leaves_out) *leaves_out = d.leaves;
    if (visited) *visited = d.visited;
    if (rc) *rc = KV_OK;
    return d.n;
}

merkle_t *merkle_fold(const merkle_t *m, uint32_t depth)
{
    if (depth > m->depth) return NULL;
    merkle_t *f = merkle_create(m->start, m->end, depth);
    size_t n = (size_t)1 << m->depth, per = (size_t)1 << (m->depth - f->depth);
    for (size_t i = 0; i < n; i++) f->node[((size_t)1 << f->depth) + i / per] += m->node[n + i];
    f->cells = m->cells;
    f->outside = m->outside;
    merkle_finish(f);
    return f;
}
