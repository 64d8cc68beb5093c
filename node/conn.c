/* conn.c -- client connections: framing, the HELLO handshake, request
 * validation and limits, replies.
 *
 * DESIGN  Each accepted socket gets a bufferevent and a frame decoder. The
 *         read callback feeds every received byte to the decoder, then
 *         handles each whole frame in order; replies are appended to the
 *         bufferevent's output, so replies produced in one loop iteration go
 *         out in few writes. Data requests become node_req_t handed to
 *         node_exec() (the executor seam); node_req_finish() writes the reply
 *         back, or drops it when the connection has gone. A LOCAL_GET (one
 *         node's own cell, for debugging) is a node_req_t too, handed to
 *         node_local_get() (local_get.c) and finished by
 *         node_req_finish_cell() with a LOCAL_REPLY.
 *
 *         A connection that must end (a protocol error, a rejected HELLO,
 *         the drain) closes gracefully: reading turns into discarding,
 *         pending output is flushed, then the write side is shut and the
 *         socket lingers briefly for the client's FIN, so the error reply
 *         is not lost to a reset caused by unread input. During the node's
 *         drain, node_conn_drain first answers CLOSED to every request that
 *         already reached the socket, then closes gracefully.
 *
 *   open --HELLO ok--> ready --error / drain--> closing --output sent-->
 *   lingering --FIN / linger timeout--> closed     (any --EOF/error--> closed)
 *
 *         Output: replies to a plain-TCP client leave once per loop turn,
 *         one writev for all that the turn produced (node_flush_mark,
 *         node_int.h); libevent writes only while the socket is full, for TLS,
 *         and while closing.
 *
 *         Output backpressure: a client that pipelines without reading has
 *         its reading paused while more than NODE_OUT_HIGH bytes wait, and
 *         resumed below NODE_OUT_LOW.
 *
 *         Security (security.h). With client_tls on, the socket gets a TLS
 *         bufferevent; with optional, the first byte the client sends decides
 *         (0x16 opens a TLS handshake; a plain frame starts with a length
 *         byte, 0 for any frame under 16 MiB). With client_auth on, HELLO
 *         must carry a user and password, or the connection must have
 *         presented a verified client certificate (its common name is the
 *         user); the check runs off the loop and frames after HELLO wait for
 *         it. A failure answers DENIED and closes. Every request is then
 *         checked against the user's role: read (GET, INFO, RING, LOCAL_GET), readwrite
 *         (and PUT, DELETE), admin (and ADMIN); others are answered DENIED.
 *
 * INVARIANTS (1) a node_conn_t lives while anyone holds a reference: the
 *            open list, each of its requests in flight, a callback running
 *            on it; (2) once closed, nothing is written to it and its
 *            bufferevent is gone; (3) every request frame after HELLO gets
 *            exactly one reply while the connection is open.
 * THREADING  Loop thread only.
 */
#define KV_LOG_MODULE "node"
#include "node_int.h"

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>

#define NODE_OUT_HIGH (8u << 20)
#define NODE_OUT_LOW (1u << 20)
#define NODE_LINGER_MS 500

struct node_conn {
    node_t *node;
    node_conn_t *prev, *next; /* node->conns */
    uint64_t id;
    int refs;
    struct bufferevent *bev;
    kv_frame_decoder_t *dec;
    kv_frame_t frame;
    uint32_t pending;  /* requests in flight */
    bool rejected;     /* over max_connections: not counted in nconns */
    bool hello_done;
    bool closing;      /* graceful close under way: input is discarded */
    bool lingering;    /* output sent, write side shut */
    bool closed;
    bool read_paused;
    bool processing;   /* inside conn_process: no re-entry */
    bool eof;          /* the client shut its write side */
    bool tls;          /* a TLS bufferevent */
    bool direct;       /* plain TCP: output leaves at the end of the turn */
    node_flush_t flush;
    bool tls_up;       /* its handshake finished */
    bool authing;      /* HELLO's credentials are being checked */
    kv_role_t role;    /* after HELLO: what the client may do */
    uint64_t hello_id; /* HELLO's request id, answered when auth is done */
    uint64_t last_input_ns; /* monotonic time bytes last arrived */
    char user[KV_USER_MAX + 1];
    char peer[64];
};

static void conn_process(node_conn_t *c);

void node_conn_ref(node_conn_t *c) { c->refs++; }

void node_conn_unref(node_conn_t *c)
{
    kv_assert(c->refs > 0);
    if (--c->refs > 0) return;
    kv_assert(c->closed);
    kv_frame_release(&c->frame);
    kv_free(c);
}

bool node_conn_is_open(const node_conn_t *c) { return !c->closed; }

node_conn_t *node_conn_next(const node_conn_t *c) { return c->next; }

void node_conn_close(node_conn_t *c)
{
    node_t *n = c->node;
    kv_assert(node_on_loop(n));
    if (c->closed) return;
    c->closed = true;
    bufferevent_free(c->bev);
    c->bev = NULL;
    kv_frame_decoder_destroy(c->dec);
    c->dec = NULL;
    if (c->prev) c->prev->next = c->next;
    else n->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    if (!c->rejected) n->nconns--;
    metrics_gauge_set(n->m.conns_open, n->nconns);
    KV_LOG(KV_DEBUG, "connection %" PRIu64 " from %s closed", c->id, c->peer);
    node_conn_unref(c);
    node_drain_check(n);
}

/* Closing, output sent, no request pending: shut the write side and wait
 * briefly for the client's FIN (or close now if it came already). */
static void conn_linger(node_conn_t *c)
{
    if (c->eof) {
        node_conn_close(c);
        return;
    }
    c->lingering = true;
    if (c->tls) node_tls_close_notify(c->bev);
    shutdown(bufferevent_getfd(c->bev), SHUT_WR);
    struct timeval tv = {NODE_LINGER_MS / 1000, (NODE_LINGER_MS % 1000) * 1000};
    bufferevent_set_timeouts(c->bev, &tv, NULL);
    bufferevent_enable(c->bev, EV_READ);
}

void node_conn_close_gracefully(node_conn_t *c)
{
    if (c->closed || c->closing) return;
    c->closing = true;
    c->read_paused = false;
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    if (c->pending == 0 && evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        conn_linger(c);
    else if (!c->eof)
        bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

/* ---- replies ----------------------------------------------------------- */

static void conn_write_cb(struct bufferevent *bev, void *arg);

/* The end-of-turn flush (node_int.h): write what the turn queued, unless
 * libevent is already at it (EV_WRITE on: a full socket, or closing). */
static void conn_flush_run(node_flush_t *f)
{
    node_conn_t *c = (node_conn_t *)((char *)f - offsetof(node_conn_t, flush));
    if (!c->closed && !(bufferevent_get_enabled(c->bev) & EV_WRITE) &&
        node_bev_write_now(c->bev))
        conn_write_cb(c->bev, c); /* what a drained output means: resume reading */
    node_conn_unref(c);
}

static void conn_write(node_conn_t *c, kv_buf_t *frame)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    evbuffer_add(out, frame->data, frame->len);
    kv_buf_clear(frame);
    if (c->direct && !(bufferevent_get_enabled(c->bev) & EV_WRITE) &&
        node_flush_mark(c->node, &c->flush))
        node_conn_ref(c);
    if (!c->closing && !c->read_paused && evbuffer_get_length(out) > NODE_OUT_HIGH) {
        c->read_paused = true;
        bufferevent_disable(c->bev, EV_READ);
    }
}

static void conn_reply(node_conn_t *c, uint64_t id, kv_status_t st,
                       hlc_ts_t cell_ts, const kv_slice_t *value,
                       const char *message)
{
    node_t *n = c->node;
    proto_reply_t r = {
        .id = id, .status = st, .hlc = hlc_last(n->hlc), .cell_ts = cell_ts,
        .has_value = value != NULL, .value = value ? *value : kv_slice(NULL, 0),
        .message = message ? kv_slice_str(message) : kv_slice(NULL, 0),
    };
    if (proto_encode_reply(&n->scratch, &r, (uint32_t)n->cfg->max_frame_bytes) != KV_OK) {
        /* Cannot happen with validated limits (frame > key + value), but
         * never leave a request unanswered. */
        proto_reply_t e = {.id = id, .status = KV_INVALID, .hlc = r.hlc,
                           .message = kv_slice_str("reply exceeds max_frame_bytes")};
        kv_buf_clear(&n->scratch);
        proto_encode_reply(&n->scratch, &e, 0);
    }
    conn_write(c, &n->scratch);
}

/* Reply to a request refused before it reached the executor. */
static void conn_refuse(node_conn_t *c, node_op_t op, uint64_t id,
                        kv_status_t st, const char *message)
{
    node_count_result(c->node, op, st, 0);
    conn_reply(c, id, st, 0, NULL, message);
}

/* A protocol error that ends the connection. */
static void conn_fail(node_conn_t *c, node_perr_t why, uint64_t id,
                      kv_status_t st, const char *message)
{
    node_count_proto_error(c->node, why);
    KV_LOG(KV_DEBUG, "connection %" PRIu64 " from %s: %s", c->id, c->peer, message);
    conn_reply(c, id, st, 0, NULL, message);
    node_conn_close_gracefully(c);
}

/* A request leaves the node's books: counted, no longer in flight. */
static void req_settle(node_req_t *r, kv_status_t status)
{
    node_t *n = r->node;
    node_conn_t *c = r->conn;
    kv_assert(node_on_loop(n));
    kv_assert(n->inflight > 0 && c->pending > 0);
    n->inflight--;
    c->pending--;
    metrics_gauge_set(n->m.inflight, n->inflight);
    node_count_result(n, r->op, status, r->start_ns);
}

void node_req_finish_cell(node_req_t *r, kv_status_t status, const eng_value_t *v)
{
    if (status != KV_OK && status != KV_NOTFOUND) {
        char msg[160];
        snprintf(msg, sizeof msg, "local read failed: %s", kv_status_str(status));
        node_req_finish(r, status, 0, NULL, msg);
        return;
    }
    node_t *n = r->node;
    node_conn_t *c = r->conn;
    req_settle(r, status);
    if (!c->closed) {
        proto_local_reply_t lr = {.id = r->id, .status = status, .hlc = hlc_last(n->hlc)};
        if (status == KV_OK) {
            lr.ts = v->ts;
            lr.tombstone = v->tombstone;
            lr.expire_ms = v->expire_ms;
            if (!v->tombstone) lr.value = kv_buf_slice(&v->value);
        }
        if (proto_encode_local_reply(&n->scratch, &lr,
                                     (uint32_t)n->cfg->max_frame_bytes) == KV_OK)
            conn_write(c, &n->scratch);
        else
            conn_reply(c, r->id, KV_INVALID, 0, NULL, "reply exceeds max_frame_bytes");
    }
    kv_buf_deinit(&r->data);
    kv_free(r);
    node_conn_unref(c);
    node_drain_check(n);
}

void node_req_finish(node_req_t *r, kv_status_t status, hlc_ts_t cell_ts,
                     const kv_slice_t *value, const char *message)
{
    node_t *n = r->node;
    node_conn_t *c = r->conn;
    req_settle(r, status);
    if (!c->closed) conn_reply(c, r->id, status, cell_ts, value, message);
    kv_buf_deinit(&r->data);
    kv_free(r);
    node_conn_unref(c);
    node_drain_check(n);
}

/* ---- requests ---------------------------------------------------------- */

static void conn_hello_ok(node_conn_t *c)
{
    node_t *n = c->node;
    proto_hello_ok_t ok = {
        .version = CAIRN_PROTO_VERSION,
        .cluster = kv_slice_str(n->cfg->cluster_name),
        .node_name = kv_slice_str(n->cfg->node_name),
        .node_id = kv_slice_str(n->node_id),
        .hlc = hlc_last(n->hlc),
    };
    if (node_auth_on(n)) {
        ok.user = kv_slice_str(c->user);
        ok.role = kv_slice_str(kv_role_str(c->role));
    }
    proto_encode_hello_ok(&n->scratch, c->hello_id, &ok, 0);
    conn_write(c, &n->scratch);
    c->hello_done = true;
}

/* The credentials check finished (loop thread). */
static void conn_auth_done(void *arg, kv_status_t st, kv_role_t role, const char *msg)
{
    node_conn_t *c = arg;
    node_t *n = c->node;
    c->authing = false;
    if (!c->closed && !c->closing) {
        if (st == KV_OK) {
            node_auth_count(n, "ok");
            c->role = role;
            KV_LOG(KV_DEBUG, "connection %" PRIu64 " from %s: user %s (%s)", c->id,
                   c->peer, c->user, kv_role_str(role));
            conn_hello_ok(c);
            conn_process(c); /* frames that came after HELLO */
        } else {
            node_auth_count(n, "bad_credentials");
            KV_LOG(KV_INFO, "connection from %s: %s", c->peer, msg);
            conn_reply(c, c->hello_id, KV_DENIED, 0, NULL, msg);
            node_conn_close_gracefully(c);
        }
    }
    node_conn_unref(c);
}

static void conn_hello(node_conn_t *c, const kv_frame_t *f)
{
    node_t *n = c->node;
    char msg[512];
    if (f->type != MSG_HELLO) {
        snprintf(msg, sizeof msg, "expected HELLO first, got a frame of type %u",
                 f->type);
        conn_fail(c, NODE_PERR_BEFORE_HELLO, f->request_id, KV_PROTO, msg);
        return;
    }
    proto_hello_t h;
    if (proto_decode_hello(f, &h) != KV_OK) {
        conn_fail(c, NODE_PERR_BAD_REQUEST, f->request_id, KV_PROTO,
                  "malformed HELLO: expected [1, id, version, cluster_name, client_name]");
        return;
    }
    if (h.version != CAIRN_PROTO_VERSION) {
        snprintf(msg, sizeof msg,
                 "protocol version %u is not supported: node speaks version %d",
                 h.version, CAIRN_PROTO_VERSION);
        conn_fail(c, NODE_PERR_BAD_VERSION, f->request_id, KV_PROTO, msg);
        return;
    }
    if (!kv_slice_eq(h.cluster, kv_slice_str(n->cfg->cluster_name))) {
        snprintf(msg, sizeof msg,
                 "cluster name mismatch: node is in '%s', client asked for '%.*s'",
                 n->cfg->cluster_name, (int)KV_MIN(h.cluster.len, 200),
                 (const char *)h.cluster.data);
        conn_fail(c, NODE_PERR_WRONG_CLUSTER, f->request_id, KV_INVALID, msg);
        return;
    }
    if (n->state != NODE_SERVING) {
        conn_reply(c, f->request_id, KV_CLOSED, 0, NULL, "node is draining");
        node_conn_close_gracefully(c);
        return;
    }
    c->hello_id = f->request_id;
    if (!node_auth_on(n)) {
        c->role = KV_ROLE_ADMIN;
        conn_hello_ok(c);
        return;
    }
    char cn[KV_USER_MAX + 2];
    bool cert = !h.has_auth && c->tls && node_tls_peer_cn(c->bev, cn, sizeof cn);
    if (!h.has_auth && !cert) {
        node_auth_count(n, "no_credentials");
        conn_fail(c, NODE_PERR_BAD_REQUEST, f->request_id, KV_DENIED,
                  "authentication required: this node (client_auth on) needs a user "
                  "name and password in HELLO (cairn --user), or a client certificate");
        return;
    }
    kv_slice_t user = h.has_auth ? h.user : kv_slice_str(cn);
    if (!kv_user_name_ok((const char *)user.data, user.len)) {
        node_auth_count(n, "bad_credentials");
        conn_fail(c, NODE_PERR_BAD_REQUEST, f->request_id, KV_DENIED,
                  "authentication failed: not a valid user name");
        return;
    }
    memcpy(c->user, user.data, user.len);
    c->user[user.len] = 0;
    kv_status_t rc = node_auth_check(n, user, h.password, !h.has_auth, conn_auth_done, c);
    if (rc != KV_OK) {
        node_auth_count(n, "busy");
        conn_reply(c, f->request_id, KV_BUSY, 0, NULL,
                   "too many logins in progress; try again");
        node_conn_close_gracefully(c);
        return;
    }
    node_conn_ref(c); /* held by the check */
    c->authing = true;
}

static void conn_info(node_conn_t *c, const kv_frame_t *f)
{
    node_t *n = c->node;
    uint64_t t0 = node_now_ns();
    node_count_request(n, NODE_OP_INFO, 0);
    if (n->state != NODE_SERVING) {
        conn_refuse(c, NODE_OP_INFO, f->request_id, KV_CLOSED, "node is draining");
        return;
    }
    proto_info_item_t items[NODE_INFO_MAX];
    size_t k = node_info_items(n, items, NODE_INFO_MAX);
    proto_encode_info_reply(&n->scratch, f->request_id, hlc_last(n->hlc), items,
                            k, 0);
    conn_write(c, &n->scratch);
    node_count_result(n, NODE_OP_INFO, KV_OK, t0);
}

static void conn_admin(node_conn_t *c, const kv_frame_t *f)
{
    node_t *n = c->node;
    uint64_t t0 = node_now_ns();
    node_count_request(n, NODE_OP_INFO, 0);
    kv_slice_t op, arg;
    if (proto_decode_admin(f, &op, &arg) != KV_OK) {
        node_count_proto_error(n, NODE_PERR_BAD_REQUEST);
        conn_reply(c, f->request_id, KV_PROTO, 0, NULL, "malformed ADMIN request");
        return;
    }
    if (n->state != NODE_SERVING) {
        conn_refuse(c, NODE_OP_INFO, f->request_id, KV_CLOSED, "node is draining");
        return;
    }
    char msg[512];
    kv_status_t rc = node_cluster_admin(n, op, arg, msg, sizeof msg);
    kv_slice_t v = kv_slice_str(msg);
    conn_reply(c, f->request_id, rc, 0, rc == KV_OK ? &v : NULL, rc == KV_OK ? NULL : msg);
    node_count_result(n, NODE_OP_INFO, rc, t0);
}

static void conn_ring(node_conn_t *c, const kv_frame_t *f)
{
    node_t *n = c->node;
    uint64_t t0 = node_now_ns();
    node_count_request(n, NODE_OP_INFO, 0);
    kv_slice_t key;
    bool has_key;
    if (proto_decode_ring(f, &key, &has_key) != KV_OK) {
        node_count_proto_error(n, NODE_PERR_BAD_REQUEST);
        conn_refuse(c, NODE_OP_INFO, f->request_id, KV_PROTO,
                    "malformed RING: expected [21, id, key|nil]");
        return;
    }
    if (n->state != NODE_SERVING) {
        conn_refuse(c, NODE_OP_INFO, f->request_id, KV_CLOSED, "node is draining");
        return;
    }
    proto_ring_t r;
    node_cluster_describe(n, has_key ? &key : NULL, &r);
    if (proto_encode_ring_reply(&n->scratch, f->request_id, hlc_last(n->hlc), &r,
                                (uint32_t)n->cfg->max_frame_bytes) != KV_OK) {
        conn_refuse(c, NODE_OP_INFO, f->request_id, KV_INVALID,
                    "the ring does not fit in max_frame_bytes");
        return;
    }
    conn_write(c, &n->scratch);
    node_count_result(n, NODE_OP_INFO, KV_OK, t0);
}

static void conn_request(node_conn_t *c, const kv_frame_t *f)
{
    node_t *n = c->node;
    const node_config_t *cfg = n->cfg;
    node_op_t op = f->type == MSG_GET ? NODE_OP_GET
                   : f->type == MSG_PUT ? NODE_OP_PUT : NODE_OP_DELETE;
    proto_request_t q;
    char msg[160];
    if (proto_decode_request(f, &q) != KV_OK) {
        node_count_proto_error(n, NODE_PERR_BAD_REQUEST);
        conn_refuse(c, op, f->request_id, KV_PROTO,
                    "malformed request: an argument is missing or of the wrong type");
        return;
    }
    node_count_request(n, op, q.cl);
    if (n->state != NODE_SERVING) {
        conn_refuse(c, op, q.id, KV_CLOSED, "node is draining");
        return;
    }
    if (q.key.len == 0 || q.key.len > cfg->max_key_bytes) {
        snprintf(msg, sizeof msg, "key length %zu is outside 1..%" PRIu64
                 " (max_key_bytes)", q.key.len, cfg->max_key_bytes);
        conn_refuse(c, op, q.id, KV_INVALID, msg);
        return;
    }
    if (q.value.len > cfg->max_value_bytes) {
        snprintf(msg, sizeof msg, "value length %zu is above max_value_bytes %" PRIu64,
                 q.value.len, cfg->max_value_bytes);
        conn_refuse(c, op, q.id, KV_INVALID, msg);
        return;
    }
    if (n->inflight >= cfg->max_inflight) {
        snprintf(msg, sizeof msg, "too many requests in flight (max_inflight %u)",
                 cfg->max_inflight);
        conn_refuse(c, op, q.id, KV_BUSY, msg);
        return;
    }
    node_req_t *r = kv_calloc(1, sizeof *r);
    r->node = n;
    r->conn = c;
    node_conn_ref(c);
    r->id = q.id;
    r->op = op;
    r->cl = q.cl;
    kv_buf_reserve(&r->data, q.key.len + q.value.len);
    kv_buf_append(&r->data, q.key.data, q.key.len);
    r->key_len = q.key.len;
    if (op == NODE_OP_PUT) {
        kv_buf_append(&r->data, q.value.data, q.value.len);
        if (q.ttl_ms) {
            int64_t now = kv_clock_wall_ms(kv_clock_system());
            r->expire_ms = (uint64_t)(now > 0 ? now : 0) + q.ttl_ms;
        }
    }
    r->causality = q.causality;
    r->start_ns = node_now_ns();
    uint32_t tmo = q.timeout_ms ? q.timeout_ms : cfg->request_timeout_ms;
    r->deadline_ns = r->start_ns + (uint64_t)tmo * 1000000u;
    n->inflight++;
    c->pending++;
    metrics_gauge_set(n->m.inflight, n->inflight);
    node_exec(n, r);
}

/* May the connection's user send a frame of this type? */
static bool conn_allowed(node_conn_t *c, const kv_frame_t *f)
{
    kv_role_t need;
    const char *what;
    switch (f->type) {
    case MSG_GET: need = KV_ROLE_READ; what = "GET"; break;
    case MSG_INFO: need = KV_ROLE_READ; what = "INFO"; break;
    case MSG_RING: need = KV_ROLE_READ; what = "RING"; break;
    case MSG_LOCAL_GET: need = KV_ROLE_READ; what = "LOCAL_GET"; break;
    case MSG_PUT: need = KV_ROLE_READWRITE; what = "PUT"; break;
    case MSG_DELETE: need = KV_ROLE_READWRITE; what = "DELETE"; break;
    case MSG_ADMIN: need = KV_ROLE_ADMIN; what = "ADMIN"; break;
    default: return true; /* unknown types get their own answer */
    }
    if (c->role >= need) return true;
    char msg[160];
    snprintf(msg, sizeof msg, "user '%s' (role %s) may not send %s: it needs role %s",
             c->user, kv_role_str(c->role), what, kv_role_str(need));
    node_auth_count_denied(c->node);
    node_op_t op = f->type == MSG_GET ? NODE_OP_GET : f->type == MSG_PUT ? NODE_OP_PUT
                   : f->type == MSG_DELETE ? NODE_OP_DELETE : NODE_OP_INFO;
    conn_refuse(c, op, f->request_id, KV_DENIED, msg);
    return false;
}

/* LOCAL_GET: this node's own cell for the key, from its engine alone
 * (local_get.c). Counted with INFO and RING as an administrative request;
 * it holds a request slot (max_inflight, the drain) while it reads. */
static void conn_local_get(node_conn_t *c, const kv_frame_t *f)
{
    node_t *n = c->node;
    const node_config_t *cfg = n->cfg;
    char msg[160];
    kv_slice_t key;
    node_count_request(n, NODE_OP_INFO, 0);
    if (proto_decode_local_get(f, &key) != KV_OK) {
        node_count_proto_error(n, NODE_PERR_BAD_REQUEST);
        conn_refuse(c, NODE_OP_INFO, f->request_id, KV_PROTO,
                    "malformed LOCAL_GET: expected [22, id, key]");
        return;
    }
    if (n->state != NODE_SERVING) {
        conn_refuse(c, NODE_OP_INFO, f->request_id, KV_CLOSED, "node is draining");
        return;
    }
    if (key.len == 0 || key.len > cfg->max_key_bytes) {
        snprintf(msg, sizeof msg, "key length %zu is outside 1..%" PRIu64
                 " (max_key_bytes)", key.len, cfg->max_key_bytes);
        conn_refuse(c, NODE_OP_INFO, f->request_id, KV_INVALID, msg);
        return;
    }
    if (n->inflight >= cfg->max_inflight) {
        snprintf(msg, sizeof msg, "too many requests in flight (max_inflight %u)",
                 cfg->max_inflight);
        conn_refuse(c, NODE_OP_INFO, f->request_id, KV_BUSY, msg);
        return;
    }
    node_req_t *r = kv_calloc(1, sizeof *r);
    r->node = n;
    r->conn = c;
    node_conn_ref(c);
    r->id = f->request_id;
    r->op = NODE_OP_INFO;
    kv_buf_append(&r->data, key.data, key.len);
    r->key_len = key.len;
    r->start_ns = node_now_ns();
    n->inflight++;
    c->pending++;
    metrics_gauge_set(n->m.inflight, n->inflight);
    node_local_get(n, r);
}

static void conn_frame(node_conn_t *c, const kv_frame_t *f)
{
    if (!c->hello_done) {
        conn_hello(c, f);
        return;
    }
    if (!conn_allowed(c, f)) return;
    switch (f->type) {
    case MSG_GET:
    case MSG_PUT:
    case MSG_DELETE:
        conn_request(c, f);
        break;
    case MSG_INFO:
        conn_info(c, f);
        break;
    case MSG_RING:
        conn_ring(c, f);
        break;
    case MSG_ADMIN:
        conn_admin(c, f);
        break;
    case MSG_LOCAL_GET:
        conn_local_get(c, f);
        break;
    case MSG_PING:
        /* The null request: answered at once, touching neither the
         * coordinator nor the engine, so a client can measure the round
         * trip to the node and nothing else. Any authenticated user. */
        conn_reply(c, f->request_id, KV_OK, 0, NULL, NULL);
        break;
    default: {
        char msg[96];
        snprintf(msg, sizeof msg, "unknown request type %u", f->type);
        node_count_proto_error(c->node, NODE_PERR_UNKNOWN_TYPE);
        conn_reply(c, f->request_id, KV_PROTO, 0, NULL, msg);
        break;
    }
    }
}

/* Handle every whole frame the decoder holds (until paused or closing). */
static void conn_process(node_conn_t *c)
{
    if (c->processing) return;
    c->processing = true;
    node_conn_ref(c);
    while (!c->closed && !c->closing && !c->read_paused && !c->authing) {
        kv_status_t rc = kv_frame_decoder_next(c->dec, &c->frame);
        if (rc == KV_AGAIN) break;
        if (rc != KV_OK) {
            const char *why = kv_frame_decoder_error(c->dec);
            if (!why) why = "malformed frame";
            node_perr_t p = strstr(why, "above the limit") ? NODE_PERR_FRAME_TOO_LARGE
                                                           : NODE_PERR_MALFORMED;
            conn_fail(c, p, 0, KV_PROTO, why);
            break;
        }
        conn_frame(c, &c->frame);
    }
    kv_frame_release(&c->frame);
    c->processing = false;
    node_conn_unref(c);
}

/* ---- bufferevent callbacks -------------------------------------------- */

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
    node_conn_t *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (c->closing) {
        evbuffer_drain(in, evbuffer_get_length(in));
        return;
    }
    if (c->node->state == NODE_DRAINING) c->last_input_ns = node_now_ns();
    struct evbuffer_iovec v[16];
    while (evbuffer_get_length(in) > 0) {
        int k = evbuffer_peek(in, -1, NULL, v, 16);
        size_t fed = 0;
        for (int i = 0; i < k && i < 16; i++) {
            /* On failure the decoder keeps its reason; conn_process reports it. */
            (void)kv_frame_decoder_feed(c->dec, v[i].iov_base, v[i].iov_len);
            fed += v[i].iov_len;
        }
        evbuffer_drain(in, fed);
    }
    conn_process(c);
}

static void conn_write_cb(struct bufferevent *bev, void *arg)
{
    node_conn_t *c = arg;
    size_t left = evbuffer_get_length(bufferevent_get_output(bev));
    if (c->direct && left == 0 && !c->closing) /* back to end-of-turn writes */
        bufferevent_disable(bev, EV_WRITE);
    if (c->closing) {
        if (left == 0 && c->pending == 0 && !c->lingering) conn_linger(c);
        return;
    }
    if (c->read_paused && left <= NODE_OUT_LOW) {
        c->read_paused = false;
        bufferevent_enable(bev, EV_READ);
        conn_process(c); /* frames decoded before the pause */
    }
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    node_conn_t *c = arg;
    node_t *n = c->node;
    if (what & BEV_EVENT_CONNECTED) { /* the TLS handshake finished */
        c->tls_up = true;
        return;
    }
    if (c->tls && !c->tls_up && !c->closed) {
        char why[256];
        node_tls_count_failure(n, false);
        KV_LOG(KV_DEBUG, "connection %" PRIu64 " from %s: TLS handshake failed%s%s", c->id,
               c->peer, *node_tls_error(bev, why, sizeof why) ? ": " : "", why);
        node_conn_close(c);
        return;
    }
    if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) && !c->lingering &&
        (c->pending > 0 || c->closing ||
         evbuffer_get_length(bufferevent_get_output(bev)) > 0)) {
        /* Half-closed: answer what was asked, then close. */
        c->eof = true;
        if (!c->closing) node_conn_close_gracefully(c);
        return;
    }
    if ((what & BEV_EVENT_TIMEOUT) && !c->closing) {
        if (c->pending > 0 || c->read_paused) {
            /* Waiting on us, not idle. */
            bufferevent_enable(bev, EV_READ);
            return;
        }
        metrics_counter_add(n->m.idle_closed, 1);
        KV_LOG(KV_DEBUG, "connection %" PRIu64 " from %s idle for %u ms; closing",
               c->id, c->peer, n->cfg->idle_timeout_ms);
    }
    node_conn_close(c);
}

/* The drain closes a connection once nothing of it is pending and no byte
 * arrived after quiet_since: a request still travelling when the drain began
 * lands in that quiet period and is answered CLOSED, not cut off. Before
 * closing, answer (CLOSED) whatever has already reached the socket. */
void node_conn_drain(node_conn_t *c, uint64_t quiet_since_ns)
{
    if (c->closed || c->closing || c->processing) return;
    if (c->pending > 0 || c->last_input_ns > quiet_since_ns) return;
    /* A TLS connection's socket holds ciphertext: answer only what was
     * already decrypted. */
    if (!c->read_paused && !c->eof && !c->tls) {
        struct evbuffer *in = bufferevent_get_input(c->bev);
        evutil_socket_t fd = bufferevent_getfd(c->bev);
        for (int i = 0; i < 64; i++) { /* bounded: a flood cannot hold us */
            int got = evbuffer_read(in, fd, 65536);
            if (got > 0) continue;
            if (got == 0) c->eof = true;
            break;
        }
        conn_read_cb(c->bev, c);
    }
    node_conn_close_gracefully(c);
}

/* ---- accept ------------------------------------------------------------ */

static void conn_setup(node_t *n, struct bufferevent *bev, bool tls, const char *peer)
{
    bool reject = n->nconns >= n->cfg->max_connections;
    evutil_socket_t fd = bufferevent_getfd(bev);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    node_conn_t *c = kv_calloc(1, sizeof *c);
    c->node = n;
    c->id = ++n->next_conn_id;
    c->refs = 1; /* the open list */
    c->bev = bev;
    c->tls = tls;
    c->direct = !tls;
    c->flush.run = conn_flush_run;
    c->dec = kv_frame_decoder_create((uint32_t)n->cfg->max_frame_bytes);
    c->rejected = reject;
    kv_frame_init(&c->frame);
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    c->next = n->conns;
    if (n->conns) n->conns->prev = c;
    n->conns = c;
    bufferevent_setcb(bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
    bufferevent_setwatermark(bev, EV_WRITE, NODE_OUT_LOW, 0);
    if (reject) {
        metrics_counter_add(n->m.rejected_max_conns, 1);
        KV_LOG(KV_DEBUG, "refused a connection from %s: max_connections %u reached",
               peer, n->cfg->max_connections);
        char msg[96];
        snprintf(msg, sizeof msg, "too many connections (max_connections %u)",
                 n->cfg->max_connections);
        conn_reply(c, 0, KV_BUSY, 0, NULL, msg);
        node_conn_close_gracefully(c);
        return;
    }
    n->nconns++;
    metrics_counter_add(n->m.conns_total, 1);
    metrics_gauge_set(n->m.conns_open, n->nconns);
    if (n->cfg->idle_timeout_ms > 0) {
        struct timeval tv = {n->cfg->idle_timeout_ms / 1000,
                             (n->cfg->idle_timeout_ms % 1000) * 1000};
        bufferevent_set_timeouts(bev, &tv, NULL);
    }
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    if (c->direct) bufferevent_disable(bev, EV_WRITE); /* on by default in libevent */
    KV_LOG(KV_DEBUG, "connection %" PRIu64 " from %s%s", c->id, peer, tls ? " (TLS)" : "");
}

static void conn_start(node_t *n, evutil_socket_t fd, bool tls, const char *peer)
{
    struct bufferevent *bev = node_tls_client_bev(n, fd, tls);
    if (!bev) {
        KV_LOG(KV_WARN, "cannot set up a connection from %s", peer);
        return;
    }
    conn_setup(n, bev, tls, peer);
}

/* client_tls optional: wait for the client's first byte to tell TLS from
 * plain, then set the connection up as either. */
struct node_conn_sniff {
    node_t *node;
    struct node_conn_sniff *prev, *next;
    evutil_socket_t fd;
    struct event *ev;
    char peer[64];
};

#define NODE_SNIFF_MS 10000

static void sniff_free(node_conn_sniff_t *s, bool close_fd)
{
    node_t *n = s->node;
    if (s->prev) s->prev->next = s->next;
    else n->sniffs = s->next;
    if (s->next) s->next->prev = s->prev;
    event_free(s->ev);
    if (close_fd) evutil_closesocket(s->fd);
    kv_free(s);
}

static void sniff_cb(evutil_socket_t fd, short what, void *arg)
{
    node_conn_sniff_t *s = arg;
    node_t *n = s->node;
    uint8_t b;
    ssize_t k = (what & EV_READ) ? recv(fd, &b, 1, MSG_PEEK) : -1;
    if (k < 0 && (errno == EAGAIN || errno == EINTR)) return; /* persist */
    if (k <= 0) { /* closed, error, or silent for NODE_SNIFF_MS */
        KV_LOG(KV_DEBUG, "connection from %s closed before its first byte", s->peer);
        sniff_free(s, true);
        return;
    }
    char peer[64];
    snprintf(peer, sizeof peer, "%s", s->peer);
    sniff_free(s, false);
    conn_start(n, fd, b == 0x16, peer); /* 0x16: a TLS handshake record */
}

void node_conn_sniffs_close(node_t *n)
{
    while (n->sniffs) sniff_free(n->sniffs, true);
}

void node_conn_accept(node_t *n, evutil_socket_t fd, const char *peer)
{
    kv_assert(node_on_loop(n));
    node_tls_mode_t mode = node_tls_client_mode(n);
    if (mode != NODE_TLS_OPTIONAL) {
        conn_start(n, fd, mode == NODE_TLS_ON, peer);
        return;
    }
    node_conn_sniff_t *s = kv_calloc(1, sizeof *s);
    s->node = n;
    s->fd = fd;
    snprintf(s->peer, sizeof s->peer, "%s", peer);
    evutil_make_socket_nonblocking(fd);
    s->ev = event_new(n->base, fd, EV_READ | EV_PERSIST, sniff_cb, s);
    s->next = n->sniffs;
    if (n->sniffs) n->sniffs->prev = s;
    n->sniffs = s;
    struct timeval tv = {NODE_SNIFF_MS / 1000, 0};
    event_add(s->ev, &tv);
}
