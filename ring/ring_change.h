/* ring_change.h -- one membership change in progress: the ring it leads
 * to, the nodes that must receive writes while it happens (pending
 * replicas), and the token ranges that must be streamed, from whom, to
 * whom. No I/O, no clock.
 *
 * A change is one of
 *   JOIN     a new node with its chosen tokens (bootstrap);
 *   LEAVE    a node in the ring hands its ranges on (decommission);
 *   REMOVE   a dead node's ranges are re-replicated without it (removenode);
 *   REPLACE  a new node takes a dead node's tokens (--replace).
 * The current ring is what reads use until the change completes; the
 * future ring is what they use afterwards. While the change runs, a write
 * goes to the replicas of both (ring_write_targets), and needs the
 * consistency level's acks among the current replicas *plus one for every
 * pending replica* (Cassandra's rule): with QUORUM, any write acknowledged
 * during the change is then on a quorum of the future replicas too.
 *
 * Transfers say which ranges each node gains and where to copy them from:
 *   JOIN / LEAVE: from the replica the range is taken from (the current
 *     replica that is not a future one). A QUORUM write was acknowledged
 *     by a majority of the current replicas; the future replicas are those
 *     minus the displaced one plus the gaining one, so copying from the
 *     displaced one keeps every such write on a future majority. When no
 *     replica is displaced (fewer nodes than the replication factor), from
 *     every current replica.
 *   REMOVE / REPLACE: the displaced replica is the dead node, so from every
 *     surviving current replica (their union holds every acknowledged
 *     write any majority held).
 * A range is (start, end] on the ring of 2^64 tokens, wrapping when
 * start >= end (start == end: the whole ring).
 *
 * THREADING  Plain values, like ring_t.
 */
#ifndef CAIRN_RING_CHANGE_H
#define CAIRN_RING_CHANGE_H

#include "ring.h"

typedef enum {
    RING_CHANGE_JOIN = 1,
    RING_CHANGE_LEAVE = 2,
    RING_CHANGE_REMOVE = 3,
    RING_CHANGE_REPLACE = 4,
} ring_change_kind_t;

const char *ring_change_kind_str(ring_change_kind_t k); /* "join" ... */

typedef struct ring_change {
    ring_change_kind_t kind;
    const char *node;        /* JOIN, REPLACE: the new node; LEAVE, REMOVE:
                                the node going */
    const char *rack;        /* JOIN, REPLACE */
    const uint64_t *tokens;  /* JOIN: its tokens */
    uint32_t ntokens;
    const char *replaced;    /* REPLACE: the dead node whose tokens it takes */
} ring_change_t;

/* The ring once the change is complete. KV_NOTFOUND: the node to leave,
 * remove or replace is not in the ring; KV_EXISTS: the joining node (or
 * one of its tokens) is; KV_INVALID: a bad change. */
kv_status_t ring_change_future(const ring_t *cur, const ring_change_t *ch,
                               ring_t **out);

/* The nodes a write for `token` must go to while the change runs: the
 * current replicas (names, primary first), then the pending ones (future
 * replicas that are not current). Returns the total; *npending says how
 * many of them are pending. Names point into the rings. */
size_t ring_write_targets(const ring_t *cur, const ring_t *future,
                          uint64_t token, const char **out, size_t max,
                          size_t *npending);

typedef struct ring_transfer {
    uint64_t start, end;            /* the range (start, end] */
    const char *dest;               /* the node that gains it */
    const char *sources[RING_MAX_RF];
    uint32_t nsources;
} ring_transfer_t;

/* Every range some node gains, with its sources, adjacent ranges with the
 * same destination and sources merged; in token order per destination.
 * *out is kv_malloc'd (free with kv_free); names point into the rings. */
kv_status_t ring_change_transfers(const ring_t *cur, const ring_t *future,
                                  const ring_change_t *ch,
                                  ring_transfer_t **out, size_t *n);

/* Whether token lies in the range (start, end]. */
bool ring_range_contains(uint64_t start, uint64_t end, uint64_t token);

#endif /* CAIRN_RING_CHANGE_H */
