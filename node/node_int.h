/* node_int.h -- shared inside node/ only: the node, its client connections,
 * requests in flight, and the job plumbing between worker threads and the
 * loop.
 *
 * The seam for the cluster layers: conn.c turns frames into node_req_t and
 * hands them to node_exec() (cluster.c: the coordinator fans the request
 * out to the key's replicas); the executor finishes each request exactly
 * once with node_req_finish(), which builds the reply on the loop or drops
 * it when the connection is gone.
 */
#ifndef CAIRN_NODE_INT_H
#define CAIRN_NODE_INT_H

#include <pthread.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "admin.h"
#include "config.h"
#include "engine.h"
#include "frame.h"
#include "hlc.h"
#include "metrics.h"
#include "proto.h"
#include "security.h"
#include "server.h"

typedef struct node_flush node_flush_t; /* below, with node_flush_mark */

typedef enum {
    NODE_STARTING,
    NODE_SERVING,
    NODE_DRAINING,
    NODE_STOPPED,
} node_state_t;

const char *node_state_str(node_state_t s);

typedef enum {
    NODE_OP_GET,
    NODE_OP_PUT,
    NODE_OP_DELETE,
    NODE_OP_INFO,
    NODE_OP_COUNT_
} node_op_t;

/* ---- jobs: work on a thread, completion on the loop (nginx style) ------ */

typedef struct node_job node_job_t;
struct node_job {
    void (*work)(node_job_t *j); /* on a worker thread (may be NULL) */
    void (*done)(node_job_t *j); /* on the loop thread */
    node_job_t *next;
};

/* Hand a finished job to the loop. Any thread. */
void node_done_push(node_t *n, node_job_t *j);

/* A fixed set of threads with a bounded queue of jobs. */
typedef struct node_pool node_pool_t;

node_pool_t *node_pool_create(node_t *n, int threads, size_t max_queued);
/* Loop thread. KV_BUSY when max_queued jobs are already waiting. */
kv_status_t node_pool_submit(node_pool_t *p, node_job_t *j);
/* Runs every queued job, then joins the threads. */
void node_pool_destroy(node_pool_t *p);

/* ---- connections ------------------------------------------------------- */

typedef struct node_conn node_conn_t;

/* Accept a client socket (loop thread): plain, TLS, or (client_tls
 * optional) either, decided by the client's first byte. */
void node_conn_accept(node_t *n, evutil_socket_t fd, const char *peer);
/* Close accepted sockets still waiting for their first byte. */
typedef struct node_conn_sniff node_conn_sniff_t;
void node_conn_sniffs_close(node_t *n);
/* Stop reading; close once the output has drained (drain, or errors). */
void node_conn_close_gracefully(node_conn_t *c);
/* Drain: if nothing is pending on c and no input arrived after
 * quiet_since_ns, answer requests already received, then close gracefully. */
void node_conn_drain(node_conn_t *c, uint64_t quiet_since_ns);
/* Close now, dropping unsent output. */
void node_conn_close(node_conn_t *c);
void node_conn_ref(node_conn_t *c);
void node_conn_unref(node_conn_t *c);
bool node_conn_is_open(const node_conn_t *c);
/* The next open connection in the node's list (iteration). */
node_conn_t *node_conn_next(const node_conn_t *c);

/* ---- requests ---------------------------------------------------------- */

typedef struct node_req node_req_t;
struct node_req {
    node_job_t job;       /* first: a job pointer is a request pointer */
    node_t *node;
    node_conn_t *conn;    /* referenced until the request is freed */
    uint64_t id;          /* the client's request id */
    node_op_t op;
    proto_cl_t cl;
    kv_buf_t data;        /* key bytes, then value bytes (PUT) */
    size_t key_len;
    uint64_t causality;
    uint64_t expire_ms;   /* PUT with ttl: absolute wall ms; 0 = never */
    uint64_t start_ns;    /* monotonic */
    uint64_t deadline_ns;
    node_req_t *cprev, *cnext; /* the cluster's coordinated requests */
};

static inline kv_slice_t node_req_key(const node_req_t *r)
{
    return kv_slice(r->data.data, r->key_len);
}

static inline kv_slice_t node_req_value(const node_req_t *r)
{
    return kv_slice(r->data.data + r->key_len, r->data.len - r->key_len);
}

/* Start a decoded GET/PUT/DELETE (loop thread). The executor owns req
 * until it calls node_req_finish. */
void node_exec(node_t *n, node_req_t *req);

/* Finish a request: reply to its connection if it is still open, count
 * it, free it. value may be NULL; message may be NULL. */
void node_req_finish(node_req_t *req, kv_status_t status, hlc_ts_t cell_ts,
                     const kv_slice_t *value, const char *message);

/* Finish a LOCAL_GET: status KV_OK with the cell v, KV_NOTFOUND (v
 * unused), or an error (answered as a REPLY). */
void node_req_finish_cell(node_req_t *req, kv_status_t status, const eng_value_t *v);

/* local_get.c: read req's key from this node's engine alone (memory first,
 * else on the reader pool) and finish it with node_req_finish_cell. */
void node_local_get(node_t *n, node_req_t *req);

/* ---- the node ---------------------------------------------------------- */

/* Engine figures mirrored as metrics: counters advance by the difference
 * since the last refresh. */
typedef struct node_eng_mirror {
    metric_series_t *memtable, *live, *tables[7];
    metric_series_t *flushes, *compactions, *hits, *misses, *syncs, *groups;
    metric_series_t *stalls, *hlc_gauge, *wall_leaps;
    eng_stats_t last;
    uint64_t last_wall_leaps;
} node_eng_mirror_t;

struct node {
    const node_config_t *cfg;
    node_state_t state;
    pthread_t loop_thread;
    struct event_base *base;
    struct evconnlistener *listener;
    struct event *sig_term, *sig_int, *drain_timer, *drain_tick, *done_ev;
    struct event *accept_retry;
    struct event *flush_ev;       /* end of turn: write marked outputs */
    node_flush_t *flush_head;
    uint64_t drain_start_ns;
    admin_t *admin;
    metrics_t *metrics;
    eng_t *eng;
    hlc_t *hlc;
    struct node_cluster *cluster; /* members, ring, coordinator, peers */
    struct node_sec *sec;         /* TLS, client auth, cluster secret */
    node_pool_t *readers;
    char node_id[33];
    char *data_dir_engine, *clock_path;
    uint64_t start_ns;
    bool drained_clean;
    bool drain_timed_out;
    bool in_drain_check;

    /* completions from worker threads (done_mu) */
    pthread_mutex_t done_mu;
    node_job_t *done_head, *done_tail;

    /* loop-owned */
    node_conn_t *conns;   /* open connections, doubly linked */
    node_conn_sniff_t *sniffs; /* client_tls optional: first byte awaited */
    uint32_t nconns;
    uint32_t inflight;    /* requests handed to the executor */
    uint64_t next_conn_id;
    kv_buf_t scratch;     /* reply encoding */

    /* metric series, created at start */
    struct {
        metric_series_t *requests[NODE_OP_COUNT_][4]; /* [op][cl] */
        metric_series_t *errors[NODE_OP_COUNT_][KV_STATUS_COUNT_];
        metric_series_t *duration[NODE_OP_COUNT_];
        metric_series_t *conns_open, *conns_total;
        metric_series_t *rejected_max_conns, *rejected_draining;
        metric_series_t *idle_closed;
        metric_series_t *inflight;
        metric_series_t *superseded_retries, *skew_refused;
        metric_series_t *proto_errors[8];
    } m;
    node_eng_mirror_t em;
};

bool node_on_loop(const node_t *n);

/* ---- output that leaves once per loop turn (server.c) -------------------
 *
 * Replies and peer messages are appended to a bufferevent's output as they
 * are made. Left to libevent, every burst costs an epoll_ctl to watch the
 * socket for writability, a wake-up, the writev, and another epoll_ctl to
 * stop watching -- system calls that cost several microseconds each in a
 * virtual machine. A plain-TCP connection or peer link instead keeps EV_WRITE
 * off and marks itself here when it has output; one event at the end of the
 * loop turn writes each marked output with a single writev. Only a socket
 * that cannot take it all (or a TLS one, or one closing) has EV_WRITE
 * enabled, and libevent finishes the job as before. */
struct node_flush {
    node_flush_t *next;
    bool queued;
    void (*run)(node_flush_t *f); /* write, then drop the caller's ref */
};

/* Queue f for this turn's flush. true when it was not queued yet: the
 * caller then takes a reference that f->run drops. */
bool node_flush_mark(node_t *n, node_flush_t *f);
/* Run every queued flush now (teardown). */
void node_flush_all(node_t *n);
/* Write bev's output to its socket now. true when all of it left;
 * otherwise EV_WRITE is enabled and libevent writes the rest when the
 * socket drains, or reports the error to the event callback. */
bool node_bev_write_now(struct bufferevent *bev);

/* Protocol error reasons (cairn_protocol_errors_total{reason}). */
typedef enum {
    NODE_PERR_FRAME_TOO_LARGE,
    NODE_PERR_MALFORMED,
    NODE_PERR_BEFORE_HELLO,
    NODE_PERR_BAD_REQUEST,
    NODE_PERR_WRONG_CLUSTER,
    NODE_PERR_BAD_VERSION,
    NODE_PERR_UNKNOWN_TYPE,
    NODE_PERR_COUNT_
} node_perr_t;

void node_count_proto_error(node_t *n, node_perr_t why);
void node_count_request(node_t *n, node_op_t op, proto_cl_t cl);
void node_count_result(node_t *n, node_op_t op, kv_status_t st,
                       uint64_t start_ns);
uint64_t node_now_ns(void);

/* INFO items (loop thread); names and strings point into static or node
 * storage valid until the next call. */
size_t node_info_items(node_t *n, proto_info_item_t *items, size_t cap);
#define NODE_INFO_MAX 128

/* cluster.c: open the cluster layer (after the loop and metrics exist),
 * close it (after the loop and the engine stopped; requests still held
 * are finished CLOSED), mirror the coordinator's figures into metrics, and
 * answer RING. */
kv_status_t node_cluster_open(node_t *n);
void node_cluster_close(node_t *n);
/* The cluster layer's INFO items (hints: totals, then one per target as
 * "hints_for:<name>" = "records=N bytes=N oldest_ms=N"); strings live in
 * cluster storage until the next call. Returns how many were written. */
size_t node_cluster_info_items(node_t *n, proto_info_item_t *it, size_t cap);
/* After the loop ended: finish the cluster layer's background file work
 * (queued hints are written and synced). Idempotent. */
void node_cluster_quiesce(node_t *n);
void node_cluster_metrics_refresh(node_t *n);
void node_cluster_describe(node_t *n, const kv_slice_t *key, proto_ring_t *out);
/* An ADMIN request (ops.c): decommission, removenode NODE, cleanup. */
kv_status_t node_cluster_admin(node_t *n, kv_slice_t op, kv_slice_t arg, char *msg,
                               size_t cap);
/* Why the cluster refuses this node ("" when it does not). */
const char *node_cluster_refusal(node_t *n);
/* gossip_glue.c: has this node heard from another member of its cluster
 * since it started (always true for a cluster of one)? /ready waits for it. */
bool node_cluster_joined(node_t *n);

/* server.c: bind a listener on listen_address:port (setting names the port
 * in errors: KV_INVALID for an unresolvable address, KV_IO when the port
 * cannot be bound), and format a peer address as host:port / [v6]:port. */
kv_status_t node_listen(node_t *n, const char *setting, uint16_t port,
                        evconnlistener_cb cb, void *arg,
                        struct evconnlistener **out);
void node_addr_str(const struct sockaddr *sa, char *buf, size_t cap);
/* A non-blocking TCP socket bound to listen_address for dialling out, or
 * -1 (listen_address is a wildcard); *family says which family it is. */
evutil_socket_t node_outbound_socket(node_t *n, int *family);

/* Called when a connection closes or a request finishes during a drain. */
void node_drain_check(node_t *n);

#endif /* CAIRN_NODE_INT_H */
