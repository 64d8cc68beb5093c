/* merkle.h -- Merkle trees over token ranges, for anti-entropy repair
 * (no I/O).
 *
 * A tree covers one range (start, end] of the 2^64 token ring (wrapping
 * when start >= end; start == end is the whole ring), cut into 2^depth
 * leaves of equal token width. A leaf's hash summarises the cells whose
 * tokens fall in it: the sum (mod 2^64) of one 64-bit hash per cell over
 * (key, timestamp, tombstone, expiry, value), so two replicas that hold
 * the same cells get the same leaf whatever order they add them in, and a
 * cell that differs in any of those fields changes the leaf. Inner nodes
 * hash their two children; the root summarises the range.
 *
 * Two trees of the same range and depth are compared from the root down,
 * descending only into the subtrees whose hashes differ; the result is the
 * differing leaves, merged into as few token ranges as possible.
 *
 * THREADING  Plain values; a tree is built on one thread and may then be
 *            read from any.
 */
#ifndef CAIRN_MERKLE_H
#define CAIRN_MERKLE_H

#include "format.h"
#include "kv.h"

#define MERKLE_MAX_DEPTH 16u

typedef struct merkle merkle_t;

/* An empty tree (every leaf 0); NULL for a depth above MERKLE_MAX_DEPTH.
 * A range narrower than 2^depth tokens gets a smaller depth (each leaf
 * holds at least one token): merkle_depth says which. */
merkle_t *merkle_create(uint64_t start, uint64_t end, uint32_t depth);
/* A tree from its leaves as another replica sent them (depth as
 * merkle_depth gave it there, n = 2^depth); NULL when they do not fit. */
merkle_t *merkle_from_leaves(uint64_t start, uint64_t end, uint32_t depth,
                             const uint64_t *leaves, size_t n);
void merkle_destroy(merkle_t *m);

/* The 64-bit hash of one cell. */
uint64_t merkle_cell_hash(kv_slice_t key, const eng_cell_t *cell);
/* Add a cell whose token lies in the range (others are ignored and
 * counted). Inner nodes are stale until merkle_finish. */
void merkle_add(merkle_t *m, uint64_t token, kv_slice_t key, const eng_cell_t *cell);
void merkle_finish(merkle_t *m);

/* The same tree with fewer leaves (each the sum of the ones it covers:
 * exactly the tree built at that depth); NULL for a larger depth. */
merkle_t *merkle_fold(const merkle_t *m, uint32_t depth);
uint32_t merkle_depth(const merkle_t *m);
uint64_t merkle_root(const merkle_t *m);
/* The leaves, 2^depth of them. */
const uint64_t *merkle_leaves(const merkle_t *m, size_t *n);
uint64_t merkle_cells(const merkle_t *m);   /* cells added */
uint32_t merkle_leaf_of(const merkle_t *m, uint64_t token);
/* The token range (s, e] of leaves [first, last]. */
void merkle_leaf_range(const merkle_t *m, uint32_t first, uint32_t last,
                       uint64_t *s, uint64_t *e);

/* The ranges where a and b differ (adjacent differing leaves merged),
 * written to out (at most cap; returns how many there are). Both trees
 * must cover the same range at the same depth and be finished (KV_INVALID
 * otherwise, through *rc). *leaves_out counts the differing leaves and
 * *visited the nodes compared. */
typedef struct merkle_range {
    uint64_t start, end; /* (start, end] */
} merkle_range_t;

size_t merkle_diff(const merkle_t *a, const merkle_t *b, merkle_range_t *out,
                   size_t cap, uint32_t *leaves_out, uint32_t *visited,
                   kv_status_t *rc);

#endif /* CAIRN_MERKLE_H */
