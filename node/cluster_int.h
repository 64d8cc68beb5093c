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
#include "node_int.h"
#include "peer_proto.h"
#include "ring.h"

typedef struct peer_link peer_link_t;
typedef struct node_cluster node_cluster_t;

/* A member of the cluster as this node sees it; indexed like the ring. */
typedef struct node_peer {
    node_cluster_t *cl;
    uint32_t idx;
    char *name, *host, *rack;
    uint16_t peer_port;
    bool self;
    /* learnt in the handshake (self: from the config) */
    char node_id[33];
    uint16_t client_port, admin_port;
    uint64_t load_bytes;    /* from the last PONG (self: the engine) */
    /* the connection this node dialled to it (requests go out on it) */
    peer_link_t *out;
    bool up;                /* handshake done and heard from in time */
    uint64_t last_heard_ns;
    uint64_t next_ping_ns;
    uint32_t backoff_ms;    /* next reconnect delay */
    struct event *retry_ev;
    char last_error[160];   /* why it is down, for logs and UNAVAILABLE */
    metric_series_t *m_up, *m_sent, *m_recv;
} node_peer_t;

struct node_cluster {
    node_t *node;
    ring_t *ring;
    uint64_t ring_digest;
    node_peer_t *peers;
    uint32_t npeers;
    uint32_t self;
    coord_t *coord;
    struct event *deadline_ev;
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
    uint32_t desc_reps[RING_MAX_RF];
    kv_rng_t rng;
    struct {
        metric_series_t *skew_refused, *queue_full, *connects;
        metric_series_t *refused[7]; /* handshake refusals by reason */
        metric_series_t *coord_unavailable, *coord_timeouts;
        metric_series_t *coord_read_repairs, *coord_hints, *coord_dropped;
        metric_series_t *replica_writes, *replica_reads;
        coord_stats_t last;
    } m;
};

/* Handshake refusal reasons (cairn_peer_handshakes_refused_total{reason}). */
enum {
    PEER_REFUSED_CLUSTER,
    PEER_REFUSED_UNKNOWN_NODE,
    PEER_REFUSED_VERSION,
    PEER_REFUSED_RING,
    PEER_REFUSED_CLOCK,
    PEER_REFUSED_MALFORMED,
    PEER_REFUSED_TIMEOUT,
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


/* ---- peer.c ------------------------------------------------------------ */

/* Bind peer_port and start dialling every other member. */
kv_status_t peer_start(node_cluster_t *cl);
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

/* Answers on an inbound link; dropped when it has closed. */
void peer_reply_mutation(peer_link_t *l, uint64_t msg_id, kv_status_t st,
                         hlc_ts_t superseded_by);
void peer_reply_read(peer_link_t *l, uint64_t msg_id, kv_status_t st,
                     const eng_value_t *v);
void peer_link_ref(peer_link_t *l);
void peer_link_unref(peer_link_t *l);

#endif /* CAIRN_NODE_CLUSTER_INT_H */
