/* cluster_int.h -- shared by the cluster glue inside node/: the members and
 * the ring (cluster.c), the coordinator and replica paths (cluster.c), and
 * the peer connections (peer.c).
 *
 * The ring and the coordinator are I/O-free state machines (ring/,
 * coordinator/); this is the glue that feeds them: cluster.c turns client
 * requests into coordinator calls and coordinator actions into peer
 * messages or local engine operations; peer.c owns every node-to-node TCP
 * connection (handshake, heartbeats, liveness, reconnect, bounded output)
 * and hands decoded requests and replies back to cluster.c.
 *
 * THREADING  Loop thread only.
 */
#ifndef CAIRN_NODE_CLUSTER_INT_H
#define CAIRN_NODE_CLUSTER_INT_H

#include "coord.h"
#include "gossip.h"
#include "node_int.h"
#include "peer_proto.h"
#include "ring.h"

typedef struct peer_link peer_link_t;
typedef struct node_cluster node_cluster_t;

/* A member of the cluster as this node sees it. Members get a slot (idx)
 * when gossip first names them and keep it for the life of the process, so
 * the coordinator's replica numbers stay valid while the ring changes; the
 * ring's own node indices map to slots through cl->ring_slot. */
typedef struct node_peer {
    node_cluster_t *cl;
    uint32_t idx;
    char *name, *host, *rack;
    uint16_t peer_port;
    bool self;
    bool in_ring;           /* owns token ranges (status NORMAL / LEAVING) */
    bool gossip_up;         /* gossip: not DEAD and phi below the threshold */
    gossip_status_t status;
    /* from gossip or the handshake (self: from the config) */
    char node_id[33];
    uint16_t client_port, admin_port;
    uint64_t load_bytes;    /* from the last PONG (self: the engine) */
    /* the connection this node dialled to it (requests go out on it) */
    peer_link_t *out;
    bool up;                /* handshake done and heard from in time */
    uint64_t last_heard_ns;
    uint64_t next_ping_ns;
    uint64_t down_since_ms; /* monotonic; when gossip last saw it go down
                               (0 while up) -- the hint window */
    uint32_t backoff_ms;    /* next reconnect delay */
    struct event *retry_ev;
    char last_error[160];   /* why it is down, for logs and UNAVAILABLE */
    char left_id[33];       /* node id seen LEFT in this slot: that node
                               stays out of the ring even if it returns */
    uint64_t generation;    /* gossip's, for token conflicts */
    bool lost;              /* its link dropped: the coordinator is told */
    uint64_t skew_ns;       /* last clock disagreement with it (either way) */
    metric_series_t *m_up, *m_sent, *m_recv, *m_phi;
} node_peer_t;

typedef struct gossip_glue gossip_glue_t;
typedef struct hints_glue hints_glue_t;
typedef struct stream_mgr stream_mgr_t;
typedef struct ops ops_t;

struct node_cluster {
    node_t *node;
    ring_t *ring;
    uint64_t ring_digest;   /* of the ring as built now (logs, status) */
    uint64_t cfg_digest;    /* settings every member must share (RF) */
    node_peer_t **peers;    /* by slot; never shrinks */
    uint32_t npeers, peers_cap;
    uint32_t *ring_slot;    /* ring node index -> slot */
    ring_t *future;         /* the ring once the change in progress is
                               done (ring_change.h); NULL when none */
    uint32_t *future_slot;  /* future ring node index -> slot */
    uint32_t *gossip_slot;  /* gossip member index -> slot (gossip indices
                               are stable and only appended) */
    uint32_t ngossip_slot;
    uint32_t self;
    gossip_t *gossip;
    gossip_glue_t *glue;    /* UDP, push-pull connections, timers */
    hints_glue_t *hints;    /* hinted handoff: hint log, replay */
    stream_mgr_t *stream;   /* range streaming (stream.c) */
    ops_t *ops;             /* ring changes: bootstrap, decommission ... */
    struct repair_mgr *repair; /* anti-entropy repair (repair.c) */
    uint64_t ring_version_seen, live_version_seen;
    uint64_t generation;    /* this start's gossip generation */
    bool need_tokens;       /* joining: tokens chosen once the view is known */
    uint64_t view_since_ms; /* when a push-pull first succeeded (joining) */
    uint64_t join_wait_log_ms; /* joining: next "still waiting" log line */
    uint32_t founders;      /* initial_cluster members */
    bool founder;           /* this node is one of them */
    coord_t *coord;
    struct event *deadline_ev;
    struct event *lost_ev;  /* tells the coordinator of dropped links */
    bool outlier;           /* cluster_clock_outlier's last answer */
    char outlier_msg[200];
    struct event *heartbeat_ev;
    struct evconnlistener *listener;
    struct event *accept_retry; /* re-enables the listener after EMFILE */
    struct evdns_base *dns;
    peer_link_t *links;     /* every open peer connection, both directions */
    bool driving;           /* inside cluster_drive: coordinator input waits */
    struct replica_op *deferred_head, *deferred_tail;
    uint64_t replica_ops;   /* replica operations in flight */
    uint64_t hb_interval_ms;
    node_req_t *reqs;       /* client requests held by the coordinator */
    proto_ring_node_t *desc; /* RING answer storage */
    char stream_names[16][96], stream_vals[16][160]; /* INFO storage */
    uint32_t desc_reps[RING_MAX_RF];
    kv_rng_t rng;
    struct {
        metric_series_t *skew_refused, *queue_full, *connects;
        metric_series_t *refused[8]; /* handshake refusals by reason */
        metric_series_t *coord_unavailable, *coord_timeouts;
        metric_series_t *coord_read_repairs, *coord_hints, *coord_dropped;
        metric_series_t *replica_writes, *replica_reads;
        metric_series_t *bg_repair[4]; /* checks, reads, mutations, skipped */
        coord_stats_t last;
    } m;
};

/* Handshake refusal reasons (cairn_peer_handshakes_refused_total{reason}). */
enum {
    PEER_REFUSED_CLUSTER,
    PEER_REFUSED_UNKNOWN_NODE,
    PEER_REFUSED_VERSION,
    PEER_REFUSED_CONFIG,
    PEER_REFUSED_CLOCK,
    PEER_REFUSED_MALFORMED,
    PEER_REFUSED_TIMEOUT,
    PEER_REFUSED_DUPLICATE,
};

/* ---- cluster.c --------------------------------------------------------- */

/* A replica request from a peer (after its handshake): store or read, then
 * answer on the link (if it is still open). */
void cluster_on_mutation(node_cluster_t *cl, peer_link_t *from, uint64_t msg_id,
                         const peer_mutation_t *m);
void cluster_on_read(node_cluster_t *cl, peer_link_t *from, uint64_t msg_id,
                     kv_slice_t key);
/* A replica's answer on one of our outbound links. */
void cluster_on_mutation_reply(node_cluster_t *cl, uint32_t from,
                               uint64_t msg_id, const peer_mutation_reply_t *r);
void cluster_on_read_reply(node_cluster_t *cl, uint32_t from, uint64_t msg_id,
                           const peer_read_reply_t *r);


/* The outbound link to member idx dropped: messages to it waiting for an
 * answer fail now (the coordinator hints writes and asks other replicas
 * for reads) instead of at their deadline. Runs from the loop shortly. */
void cluster_on_peer_lost(node_cluster_t *cl, uint32_t idx);
/* This node's clock disagrees (beyond max_clock_offset_ms, either way) with
 * more than half of the other members (at least two) within the last 10 s:
 * it is the outlier. Writes it would stamp are refused ClockSkew and /ready is 503
 * until its clock agrees again. The sentence saying so, or "". */
const char *cluster_clock_outlier(node_cluster_t *cl);

/* ---- members.c --------------------------------------------------------- */

/* The slot of a member by name, or NULL. */
node_peer_t *cluster_peer_find(node_cluster_t *cl, const char *name);
/* Bring slots, links and the ring in line with gossip's view (after any
 * gossip input; cheap when nothing changed). */
void cluster_view_refresh(node_cluster_t *cl);
/* This node's saved state (data_dir/cluster.state): generation, status and
 * tokens of a node that joined through seeds. Loaded at start; saved when
 * they change. */
typedef struct node_saved {
    uint64_t generation;
    gossip_status_t status;
    uint64_t *tokens;
    uint32_t ntokens;
} node_saved_t;
kv_status_t node_saved_load(const node_t *n, node_saved_t *out);
kv_status_t node_saved_store(const node_t *n, const node_saved_t *s);
void node_saved_free(node_saved_t *s);

/* ---- gossip_glue.c ------------------------------------------------------ */

/* Bind the gossip UDP socket on listen_address:peer_port and start the
 * state machine's timers; seeds from the config, or else the founders
 * (mem) other than this node. */
kv_status_t gossip_glue_start(node_cluster_t *cl, const node_member_t *mem,
                              size_t nm);
void gossip_glue_stop(node_cluster_t *cl);
/* A GOSSIP_PUSHPULL frame arrived as the first frame of an inbound peer
 * connection: answer it on the link (which then closes). */
void gossip_glue_on_pushpull(node_cluster_t *cl, peer_link_t *l,
                             const kv_frame_t *f);
/* Let gossip act on what it was fed: send, log, refresh the view. */
void gossip_glue_flush(node_cluster_t *cl);
void gossip_glue_metrics(node_cluster_t *cl);
/* Why this node cannot take part ("" when it can): a refusal by the
 * cluster it tries to join. */
const char *gossip_glue_refusal(const node_cluster_t *cl);

/* ---- hints_glue.c ------------------------------------------------------ */

/* Open data_dir/hints and start the replay timer; stop: quiesce, then free. */
kv_status_t hints_glue_start(node_cluster_t *cl);
/* Finish every queued hint-log job and sync the log (after the loop ended;
 * idempotent). Completions that arrive later are only freed. */
void hints_glue_quiesce(node_cluster_t *cl);
void hints_glue_stop(node_cluster_t *cl);
/* A HINT action: keep `cell` for member slot (a copy is queued). */
void hints_glue_add(node_cluster_t *cl, uint32_t slot, kv_slice_t key,
                    const eng_cell_t *cell);
/* Liveness or membership may have changed: re-check what can be replayed. */
void hints_glue_poke(node_cluster_t *cl);
/* A HINTS_REPLY on the outbound link to member `from`. */
void hints_glue_on_reply(node_cluster_t *cl, uint32_t from, uint64_t msg_id,
                         const peer_hints_reply_t *r);
/* A HINTS frame (n records, already counted by peer_decode_hints) from a
 * coordinator: store the cells, answer HINTS_REPLY on the link. */
void cluster_on_hints(node_cluster_t *cl, peer_link_t *from, uint64_t msg_id,
                      const kv_frame_t *f, uint32_t n);
void hints_glue_metrics(node_cluster_t *cl);

/* What this node holds for one target (INFO, /status, `cairn hints`). */
typedef struct hints_target_view {
    char node_id[65];
    char name[128];      /* the member's name, or its node id if unknown */
    uint64_t records, bytes;
    uint64_t oldest_ms;  /* wall ms of the oldest pending hint; 0 */
} hints_target_view_t;
size_t hints_glue_targets(node_cluster_t *cl, hints_target_view_t *out,
                          size_t cap);

typedef struct hints_totals {
    uint64_t pending, pending_bytes, written, replayed, expired, dropped;
    uint64_t corrupt, refused_window, refused_full, refused_other, received;
} hints_totals_t;
void hints_glue_totals(node_cluster_t *cl, hints_totals_t *out);
/* INFO items: totals, then one per target (node_cluster_info_items). */
size_t hints_glue_info(node_cluster_t *cl, proto_info_item_t *it, size_t cap);

/* ---- stream.c ---------------------------------------------------------- */

kv_status_t stream_start(node_cluster_t *cl);
/* After the loop: finish scan jobs, release engine iterators. */
void stream_quiesce(node_cluster_t *cl);
void stream_stop(node_cluster_t *cl);
/* A pull or fetch ended: status, cells and bytes stored, why it failed. */
typedef void (*stream_done_fn)(void *arg, kv_status_t st, uint64_t keys,
                               uint64_t bytes, const char *why);
/* Copy (start, end] of member src into this node's engine. done runs on
 * the loop (not before this returns KV_OK; not at all on an error). */
kv_status_t stream_pull(node_cluster_t *cl, uint32_t src, uint64_t start,
                        uint64_t end, stream_done_fn done, void *arg);
/* The same for n ranges (se: n (start, end) pairs), in one stream. */
kv_status_t stream_pull_ranges(node_cluster_t *cl, uint32_t src, const uint64_t *se,
                               size_t n, stream_done_fn done, void *arg);
/* Have member dest (this node or another, by FETCH) pull the range from
 * each of src in turn. */
kv_status_t stream_fetch(node_cluster_t *cl, uint32_t dest, uint64_t start,
                         uint64_t end, const uint32_t *src, uint32_t nsrc,
                         stream_done_fn done, void *arg);
kv_status_t stream_fetch_ranges(node_cluster_t *cl, uint32_t dest, const uint64_t *se,
                                size_t n, const uint32_t *src, uint32_t nsrc,
                                stream_done_fn done, void *arg);
/* peer.c hands these over */
/* (ranges: kv_malloc'd pairs, taken over) */
void stream_on_req(node_cluster_t *cl, peer_link_t *l, uint32_t from,
                   uint64_t sid, uint64_t *ranges, size_t nranges);
void stream_on_ack(node_cluster_t *cl, peer_link_t *l, uint64_t sid,
                   uint64_t seq, kv_status_t st);
void stream_on_chunk(node_cluster_t *cl, peer_link_t *l, uint64_t sid,
                     const kv_frame_t *f, const peer_stream_chunk_t *c);
void stream_on_abort(node_cluster_t *cl, peer_link_t *l, uint64_t sid,
                     kv_status_t st, kv_slice_t msg);
void stream_on_fetch(node_cluster_t *cl, peer_link_t *l, uint64_t msg_id,
                     const kv_frame_t *f, const peer_fetch_t *req);
void stream_on_fetch_reply(node_cluster_t *cl, peer_link_t *l, uint64_t msg_id,
                           const peer_fetch_reply_t *r);
void stream_on_link_closed(node_cluster_t *cl, peer_link_t *l);
/* INFO items: totals and one per running stream (names/vals: storage). */
size_t stream_info(node_cluster_t *cl, proto_info_item_t *it, size_t cap,
                   char (*names)[96], char (*vals)[160], size_t nbuf);
void stream_metrics(node_cluster_t *cl);

/* ---- ops.c ------------------------------------------------------------- */

/* Start the ring-change driver; resumes a change saved before a restart
 * (saved_status: this node's status from cluster.state). */
kv_status_t ops_start(node_cluster_t *cl, gossip_status_t saved_status,
                      bool have_tokens);
/* After gossip started: re-announce what a resumed change needs. */
void ops_resume_announce(node_cluster_t *cl);
void ops_quiesce(node_cluster_t *cl);
void ops_stop(node_cluster_t *cl);
/* This node announced JOINING with its tokens: bootstrap (replacing: the
 * dead member whose tokens it took, or NULL). */
void ops_joined(node_cluster_t *cl, const char *replacing);
/* A change driven from this node is under way. */
bool ops_busy(const node_cluster_t *cl);
/* This node has left the ring (decommissioned or removed). */
bool ops_left(const node_cluster_t *cl);
/* Why this node does not serve ("" when it does); set one. */
const char *ops_refusal(const node_cluster_t *cl);
void ops_refuse(node_cluster_t *cl, const char *why);
/* An ADMIN request: "decommission", "removenode" NODE, "cleanup". The
 * message says what was started or why not. */
kv_status_t ops_admin(node_cluster_t *cl, kv_slice_t op, kv_slice_t arg,
                      char *msg, size_t cap);
size_t ops_info(node_cluster_t *cl, proto_info_item_t *it, size_t cap);

/* ---- repair.c ---------------------------------------------------------- */

kv_status_t repair_start(node_cluster_t *cl);
void repair_quiesce(node_cluster_t *cl);
void repair_stop(node_cluster_t *cl);
/* ADMIN "repair": arg "[primary] [range=S:E] [node=NAME]". */
kv_status_t repair_admin(node_cluster_t *cl, const char *arg, char *msg, size_t cap);
void repair_on_merkle_req(node_cluster_t *cl, peer_link_t *l, uint64_t msg_id,
                          uint64_t start, uint64_t end, uint32_t depth);
void repair_on_merkle_reply(node_cluster_t *cl, uint32_t from, uint64_t msg_id,
                            const peer_merkle_reply_t *r);
size_t repair_info(node_cluster_t *cl, proto_info_item_t *it, size_t cap);
void repair_metrics(node_cluster_t *cl);

/* ---- peer.c ------------------------------------------------------------ */

/* Bind peer_port; members are dialled as they are added (peer_add). */
kv_status_t peer_start(node_cluster_t *cl);
/* A new slot: start dialling it (not self). */
void peer_add(node_cluster_t *cl, node_peer_t *p);
/* Its address changed: drop the link and redial. */
void peer_readdress(node_cluster_t *cl, node_peer_t *p);
/* Write a frame on an inbound link and close it once flushed. */
void peer_link_reply_close(peer_link_t *l, kv_buf_t *frame);
/* Close every link and the listener. */
void peer_stop(node_cluster_t *cl);

/* Whether a request may be sent to member idx now: self, or up with room
 * in its output queue. *full is set when it is up but its queue is full. */
bool peer_usable(node_cluster_t *cl, uint32_t idx, bool *full);

/* Send a request on the outbound link to member idx (not self). KV_OK,
 * KV_UNAVAILABLE (not connected), KV_BUSY (its queue is full). */
kv_status_t peer_send_mutation(node_cluster_t *cl, uint32_t idx, uint64_t msg_id,
                               kv_slice_t key, const eng_cell_t *cell);
kv_status_t peer_send_read(node_cluster_t *cl, uint32_t idx, uint64_t msg_id,
                           kv_slice_t key);
struct hint_batch;
/* A HINTS frame with every record of the batch. */
kv_status_t peer_send_hints(node_cluster_t *cl, uint32_t idx, uint64_t msg_id,
                            const struct hint_batch *b);
void peer_reply_hints(peer_link_t *l, uint64_t msg_id,
                      const peer_hints_reply_t *r);

/* Answers on an inbound link; dropped when it has closed. */
void peer_reply_mutation(peer_link_t *l, uint64_t msg_id, kv_status_t st,
                         hlc_ts_t superseded_by);
void peer_reply_read(peer_link_t *l, uint64_t msg_id, kv_status_t st,
                     const eng_value_t *v);
void peer_link_ref(peer_link_t *l);
void peer_link_unref(peer_link_t *l);
/* The ready outbound link to member idx, or NULL. */
peer_link_t *peer_out_link(node_cluster_t *cl, uint32_t idx);
/* Write a frame on a link (dropped when it has closed); clears frame. */
void peer_link_write(peer_link_t *l, kv_buf_t *frame);
bool peer_link_closed(const peer_link_t *l);
/* The member at the other end. */
uint32_t peer_link_peer(const peer_link_t *l);

#endif /* CAIRN_NODE_CLUSTER_INT_H */
