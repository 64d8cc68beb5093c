/* ring.h -- Cairn's token ring: partitioner, vnode token allocation, replica
 * placement with rack awareness, ownership figures. No I/O, no clock.
 *
 * Tokens are uint64 on a ring of 2^64. The token of a key is eng_token(key)
 * (XXH3-64), so engine order and ring order agree. A vnode at token T owns
 * the range (previous token, T], inclusive end, wrapping past 2^64-1 to 0:
 * a key whose token is past the last vnode belongs to the first one.
 *
 * Replicas of a token are min(RF, node count) distinct nodes, chosen as
 * Cassandra's NetworkTopologyStrategy does inside one data centre: walk
 * clockwise from the token's vnode; take a node whose rack is not yet used;
 * once every rack has been used, take the remaining distinct nodes in
 * clockwise order (those skipped earlier first). With one rack this is
 * simply the first RF distinct nodes clockwise. The first replica is always
 * the primary (the owner of the token's vnode).
 *
 * Nodes are numbered densely 0..ring_node_count()-1 in the order they were
 * added. Removing a node shifts the indices of the nodes after it down by
 * one: hold names, not indices, across membership changes
 * (ring_node_find maps a name back to its index).
 *
 * THREADING  A ring is a plain value. Functions taking a const ring_t may
 * run concurrently with each other; nothing may run concurrently with a
 * function that changes the ring. To change a live ring, ring_clone it,
 * change the clone, and publish the clone.
 */
#ifndef CAIRN_RING_H
#define CAIRN_RING_H

#include "kv.h"

typedef struct ring ring_t;

#define RING_NO_NODE UINT32_MAX    /* ring_primary of an empty ring */
#define RING_MAX_RF 32u            /* replication factor limit */
#define RING_MAX_NAME 255u         /* bytes in a node or rack name */
#define RING_MAX_NODE_TOKENS 4096u /* tokens of one node */
#define RING_DEFAULT_NUM_TOKENS 16u

/* An empty ring with replication factor rf (1..RING_MAX_RF); NULL for an rf
 * outside that range. */
ring_t *ring_create(uint32_t replication_factor);
void ring_destroy(ring_t *ring);
/* A deep copy, e.g. to prepare a membership change and publish it whole. */
ring_t *ring_clone(const ring_t *ring);

uint32_t ring_replication_factor(const ring_t *ring);

/* The partitioner: the token of a key (= eng_token). */
uint64_t ring_key_token(kv_slice_t key);

/* ---- membership -------------------------------------------------------- */

/* Add a node with explicit tokens (learnt from gossip, or from
 * ring_allocate_tokens). rack NULL means "". KV_INVALID: empty or overlong
 * name/rack, n == 0 or n > RING_MAX_NODE_TOKENS, the same token twice in
 * `tokens`. KV_EXISTS: a node of that name exists, or a token is already
 * taken by another node. On error the ring is unchanged. */
kv_status_t ring_add_node(ring_t *ring, const char *name, const char *rack,
                          const uint64_t *tokens, size_t n);

/* Remove a node and its tokens (decommission / removenode). Nodes after it
 * move down one index. KV_NOTFOUND if there is no such node. */
kv_status_t ring_remove_node(ring_t *ring, const char *name);

/* Choose num_tokens tokens for a NEW node `node_name` in `rack` joining
 * this ring; write them to out[0..num_tokens-1] in ascending order. The
 * ring is not changed: pass the tokens to ring_add_node.
 *
 * The first node of a ring gets evenly spaced tokens at an offset hashed
 * from (cluster_name, node_name). Later nodes place one token at a time,
 * each splitting an existing range at the point (1/4, 1/2 or 3/4 of it,
 * nudged by a hash of the names) that best evens out both primary and
 * effective (RF-replica) ownership, the new node included, over a
 * sum-of-squared-relative-deviations score; the replica effect of each
 * candidate is evaluated exactly, racks included (Cassandra's
 * replication-aware allocator is the model). Deterministic: the same ring,
 * cluster and node name give the same tokens; two different names joining
 * the same ring view get different tokens, so concurrent joins do not
 * collide. KV_EXISTS if node_name is already in the ring; KV_INVALID for
 * bad names or num_tokens outside 1..RING_MAX_NODE_TOKENS. */
kv_status_t ring_allocate_tokens(const ring_t *ring, const char *cluster_name,
                                 const char *node_name, const char *rack,
                                 uint32_t num_tokens, uint64_t *out);

/* ---- placement (hot path: O(log V) search + copy of a precomputed set) */

/* The node owning the vnode whose range holds token; RING_NO_NODE when
 * the ring is empty. */
uint32_t ring_primary(const ring_t *ring, uint64_t token);

/* Write the replicas of token (primary first) to node_idx_out and return
 * how many were written: min(ring_replica_count(ring), max). */
size_t ring_replicas(const ring_t *ring, uint64_t token, uint32_t *node_idx_out,
                     size_t max);

/* The size of every replica set: min(RF, node count). */
uint32_t ring_replica_count(const ring_t *ring);

/* ---- nodes and figures ------------------------------------------------- */

uint32_t ring_node_count(const ring_t *ring);
size_t ring_vnode_count(const ring_t *ring);  /* tokens in the ring */
uint32_t ring_rack_count(const ring_t *ring); /* distinct racks */
/* KV_NOTFOUND if there is no such node. */
kv_status_t ring_node_find(const ring_t *ring, const char *name,
                           uint32_t *idx_out);
/* NULL / 0 for an index out of range. */
const char *ring_node_name(const ring_t *ring, uint32_t idx);
const char *ring_node_rack(const ring_t *ring, uint32_t idx);
/* The node's tokens in ascending order; the pointer lives until the ring
 * changes. */
size_t ring_node_tokens(const ring_t *ring, uint32_t idx,
                        const uint64_t **tokens_out);

/* Fraction of the token space (0..1) whose primary is the node; the sum
 * over nodes is 1 (0 for an empty ring). */
double ring_ownership(const ring_t *ring, uint32_t idx);
/* Fraction of the token space (0..1) for which the node is one of the
 * replicas -- Cassandra's "Owns (effective)": the sum over nodes is
 * ring_replica_count() = min(RF, nodes), and ideal balance is
 * min(RF, nodes) / nodes for every node. */
double ring_effective_ownership(const ring_t *ring, uint32_t idx);

/* Check every invariant (see ring.c INVARIANTS), recomputing replica sets
 * and ownership from scratch. KV_OK, or KV_CORRUPT with kv_errmsg(). */
kv_status_t ring_validate(const ring_t *ring);

#endif /* CAIRN_RING_H */
