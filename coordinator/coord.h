/* coord.h -- the coordinator's client-request state machines (no I/O).
 *
 * A coord_t owns every in-flight client request coordinated by one node:
 * writes (consistency level, superseded re-stamps, timeouts, and hints for
 * every replica that did not take the write: down at dispatch, answered
 * with an error, or still silent at the deadline) and reads (resolution by
 * last-write-wins, blocking read repair of the read set, and -- by chance,
 * after the reply -- a background check of the replicas outside the read
 * set that repairs whichever replica is behind).
 * It never touches sockets, timers or clocks: every entry point takes the
 * caller's monotonic time `now_ms` and appends ACTIONS to an output list the
 * caller drains with coord_actions() / coord_actions_clear(). Timestamps come
 * from the hlc_t given at create time.
 *
 * The glue (node/) maps a key to its replicas with the ring and to liveness
 * with gossip, turns SEND_* actions into peer messages, feeds the replies back
 * in, sends REPLY actions to clients, hands HINT actions to the hint store,
 * and calls coord_tick() no later than coord_next_deadline(). A send that
 * fails at once (queue full, link down) must come back as an error reply
 * for its msg_id, so the request stops waiting and the replica is hinted.
 *
 * client_req_id is a label on every action, but only REPLY finishes the
 * request: HINT and SEND_* actions may carry the id of a request that has
 * already replied (a write's late hints, a read's background check), so the
 * glue must not use the id as a handle on anything but a REPLY.
 *
 * THREADING  loop thread only; a coord_t is not shared.
 */
#ifndef CAIRN_COORD_H
#define CAIRN_COORD_H

#include "format.h"
#include "hlc.h"
#include "kv.h"

typedef struct coord coord_t;

/* Most replicas one request may name (= RING_MAX_RF). */
#define COORD_MAX_REPLICAS 33u /* RING_MAX_RF + a pending replica */
/* Write attempts (the first stamp plus superseded re-stamps) before the
 * write gives up with KV_TIMEOUT. */
#define COORD_MAX_WRITE_ATTEMPTS 5u
/* Keys and values are copied; larger ones are KV_INVALID. */
#define COORD_MAX_KEY (64u * 1024u)
#define COORD_MAX_VALUE (64u * 1024u * 1024u)

typedef enum {
    COORD_CL_ONE = 1,    /* 1 replica */
    COORD_CL_QUORUM = 2, /* floor(RF/2) + 1 */
    COORD_CL_ALL = 3,    /* RF */
} coord_cl_t;

/* How many replicas of rf a consistency level needs; 0 for a bad cl. */
uint32_t coord_cl_required(coord_cl_t cl, uint32_t rf);

typedef enum {
    COORD_ACT_SEND_MUTATION = 1, /* node, msg_id, key, cell */
    COORD_ACT_SEND_READ = 2,     /* node, msg_id, key */
    COORD_ACT_REPLY = 3,         /* client_req_id, status, cell_ts, value, acks */
    COORD_ACT_HINT = 4,          /* node (the replica that missed it), key,
                                    cell (the write's current stamp) */
} coord_action_kind_t;

/* One thing for the caller to do. Slices point into storage owned by the
 * action list: valid until coord_actions_clear() or coord_destroy(). */
typedef struct coord_action {
    coord_action_kind_t kind;
    uint32_t node;          /* SEND_*: destination; HINT: target replica */
    uint64_t msg_id;        /* SEND_*: echo it back in the reply */
    uint64_t client_req_id; /* every kind: the request it belongs to */
    kv_slice_t key;         /* SEND_*, HINT, REPLY */
    eng_cell_t cell;        /* SEND_MUTATION, HINT: the cell to store */
    /* REPLY only: */
    kv_status_t status;  /* OK, NOTFOUND (read), TIMEOUT, UNAVAILABLE,
                            CLOCK_SKEW, or the HLC's error */
    hlc_ts_t cell_ts;    /* write: the stamp that was acked; read: the
                            winner's stamp (a tombstone's too; 0 = absent).
                            Clients fold it into their causality token. */
    kv_slice_t value;    /* read OK: the value */
    uint64_t expire_ms;  /* read OK: the value's expiry (0 = never) */
    uint32_t acks;       /* write: replicas that acked the current stamp;
                            read: replicas that answered */
} coord_action_t;

typedef struct coord_options {
    hlc_t *hlc; /* required; the caller keeps it open longer than the coord */
    /* Background read repair: the chance, in parts per million, that a read
     * at consistency level cl which replied OK or NOTFOUND then checks the
     * alive replicas it did not query (read_repair_ppm[cl]; index 0 is
     * unused). 0 never (the default: the glue picks the defaults),
     * 1000000 always; above that KV_INVALID. */
    uint32_t read_repair_ppm[4];
    /* Background checks in flight at once; a check that would pass it is
     * skipped and counted (bg_repair_skipped). 0 skips every check.
     * Default 64. */
    uint32_t bg_repair_max_inflight;
    /* Seeds the coordinator's own PRNG (the dice above): the same seed and
     * the same inputs give the same actions. Default 0. */
    uint64_t rng_seed;
} coord_options_t;

void coord_options_init(coord_options_t *o);

/* KV_INVALID without an hlc or with a chance above 1000000 ppm. */
kv_status_t coord_create(const coord_options_t *o, coord_t **out);
/* Drops every in-flight request without replies (shutdown) and any
 * undrained actions. */
void coord_destroy(coord_t *c);

/* ---- requests ---------------------------------------------------------- */

/* A client write of `value` (or a tombstone when `tombstone`) with optional
 * expiry (wall ms, 0 = never). `causality` is the largest HLC the client has
 * seen (0 = none). replicas[0..n) are the key's replicas (ring order) and
 * alive[i] says whether gossip believes replicas[i] is up.
 *
 * KV_OK means the request was taken: its outcome arrives as exactly one
 * REPLY action, possibly already appended (UNAVAILABLE when fewer than CL
 * replicas are alive -- nothing is sent then; CLOCK_SKEW when the causality
 * token is too far ahead of local time). KV_INVALID (nothing appended): n is
 * 0 or above COORD_MAX_REPLICAS, a replica appears twice, cl is unknown, the
 * key is empty or oversized, timeout_ms is 0. */
kv_status_t coord_write(coord_t *c, uint64_t now_ms, uint64_t client_req_id,
                        kv_slice_t key, kv_slice_t value, bool tombstone,
                        uint64_t expire_ms, coord_cl_t cl, uint64_t timeout_ms,
                        hlc_ts_t causality, const uint32_t *replicas, size_t n,
                        const bool *alive);

/* A client read at consistency cl; arguments and results as coord_write.
 * The REPLY is OK (value, cell_ts) or NOTFOUND (absent or a tombstone won;
 * cell_ts is the tombstone's stamp or 0), TIMEOUT, UNAVAILABLE, CLOCK_SKEW. */
/* The same while a membership change runs: the last npending replicas are
 * pending ones (ring_change.h), and the write needs the level's acks among
 * the first n - npending plus one more for each pending replica. */
kv_status_t coord_write_pending(coord_t *c, uint64_t now_ms,
                                uint64_t client_req_id, kv_slice_t key,
                                kv_slice_t value, bool tombstone,
                                uint64_t expire_ms, coord_cl_t cl,
                                uint64_t timeout_ms, hlc_ts_t causality,
                                const uint32_t *replicas, size_t n,
                                size_t npending, const bool *alive);
kv_status_t coord_read(coord_t *c, uint64_t now_ms, uint64_t client_req_id,
                       kv_slice_t key, coord_cl_t cl, uint64_t timeout_ms,
                       hlc_ts_t causality, const uint32_t *replicas, size_t n,
                       const bool *alive);

/* ---- replica replies --------------------------------------------------- */

/* A replica's answer to a SEND_MUTATION: KV_OK (stored, or already held),
 * KV_SUPERSEDED with the timestamp it holds, or an error -- also what the
 * glue feeds back for a send that failed. A write hints the replica that
 * answered with an error (unless the write gave up because its stamp was
 * superseded). Returns KV_OK when the reply was used, KV_NOTFOUND when it
 * was dropped (unknown or finished request, an earlier attempt's message, a
 * duplicate, a sender that is not the one addressed). */
kv_status_t coord_on_mutation_reply(coord_t *c, uint64_t now_ms,
                                    uint32_t from_node, uint64_t msg_id,
                                    kv_status_t status, hlc_ts_t superseded_by);

/* A replica's answer to a SEND_READ: KV_OK with the newest cell it holds
 * (a tombstone included; cell->value need only live for the call),
 * KV_NOTFOUND when it holds nothing, or an error. Returns as above. */
kv_status_t coord_on_read_reply(coord_t *c, uint64_t now_ms, uint32_t from_node,
                                uint64_t msg_id, kv_status_t status,
                                const eng_cell_t *cell);

/* The connection to `node` was lost: every message to it still waiting
 * for an answer is answered as failed (UNAVAILABLE) at once -- a write
 * hints it, a read asks another live replica instead -- rather than at the
 * deadline. */
void coord_on_node_down(coord_t *c, uint64_t now_ms, uint32_t node);

/* Expire deadlines that are <= now_ms: a request that has not replied
 * replies TIMEOUT; a write (replied or not) hints each replica whose answer
 * to its current stamp is still outstanding; a background check just ends. */
void coord_tick(coord_t *c, uint64_t now_ms);

/* The earliest deadline of an in-flight request; false when there is none. */
bool coord_next_deadline(const coord_t *c, uint64_t *out_ms);

/* ---- output ------------------------------------------------------------ */

/* The actions appended since the last clear, in order. */
const coord_action_t *coord_actions(const coord_t *c, size_t *n);
void coord_actions_clear(coord_t *c);

/* ---- introspection ----------------------------------------------------- */

/* Requests whose state is still held: replied ones that wait for late acks
 * included, and background read checks (which belong to no client request;
 * at most bg_repair_max_inflight of them). */
size_t coord_live_requests(const coord_t *c);

typedef struct coord_stats {
    uint64_t writes, reads;
    uint64_t unavailable, timeouts, clock_skew;
    uint64_t restamps;        /* superseded re-stamps */
    uint64_t hints;           /* HINT actions, all causes */
    uint64_t read_repairs;    /* blocking repair mutations sent */
    uint64_t dropped_replies; /* replies that matched nothing in flight */
    /* subsets of hints: replicas still silent at a write's deadline, and
     * replicas that answered a write with an error (the rest were down at
     * dispatch) */
    uint64_t hints_timeout, hints_error;
    /* background read repair */
    uint64_t bg_repair_checks;    /* checks started */
    uint64_t bg_repair_reads;     /* READs they sent */
    uint64_t bg_repair_mutations; /* repair MUTATIONs they sent */
    uint64_t bg_repair_skipped;   /* not started: bg_repair_max_inflight */
    uint64_t read_failovers;      /* reads that asked another replica after
                                     one failed */
} coord_stats_t;

void coord_get_stats(const coord_t *c, coord_stats_t *out);

/* Check internal invariants; KV_CORRUPT with kv_errmsg() set when one is
 * broken. Tests call it after every step. */
kv_status_t coord_validate(const coord_t *c);

#endif /* CAIRN_COORD_H */
