/* client.c -- libcairn: connections, pipelined requests, futures, failover.
 *
 * DESIGN  Each client runs one background I/O thread that owns the socket.
 *         Callers (any thread) encode a request frame into a new future and
 *         append it to the client's queue under `mu`, then poke an eventfd.
 *         The I/O thread moves queued frames into its write buffer and the
 *         futures into the in-flight map (request id -> future), runs a
 *         poll(2) loop over the socket and the eventfd, matches each REPLY
 *         to its future by id (replies may come in any order), and expires
 *         requests whose deadline passed (CAIRN_TIMEOUT; a reply arriving
 *         later finds no id in the map and is dropped).
 *
 *         Connection state, as seen by the I/O thread:
 *
 *                 connect_round() ok                 socket error, EOF,
 *           DOWN ------------------------> UP ------ malformed frame -------+
 *            ^  \ (tries every contact     | \                              |
 *            |   \ point once, starting    |  \ a CLOSED reply: the node is |
 *            |    \ after the last used)   |   v draining                   |
 *            |     all fail: queued        |  DRAINING: send nothing new;   |
 *            |     requests fail           |  when nothing is in flight ----+
 *            |                             |                                |
 *            +---- in-flight requests fail (CAIRN_CONNECTION/PROTOCOL) <----+
 *
 *         A round starts only when requests are queued (lazily), so an idle
 *         client does not hammer a dead cluster. The handshake (HELLO ->
 *         HELLO_OK or an error REPLY) runs synchronously inside a round,
 *         bounded by connect_timeout_ms and interrupted by cairn_close.
 *
 * INVARIANTS (1) a request is sent at most once: in-flight requests on a
 *            lost connection complete with an error, never resent; only
 *            requests still queued (never written) move to the next node;
 *            (2) a future completes exactly once (complete() is the only
 *            place that sets `done`) and is freed when both the caller and
 *            the client have dropped their reference; (3) the causality
 *            token sent is the largest hlc seen in any HELLO_OK, REPLY,
 *            INFO_REPLY, RING_REPLY or LOCAL_REPLY before the request was
 *            issued; (4) no length read from the network sizes an
 *            allocation before the frame decoder has checked it against
 *            KV_FRAME_DEFAULT_MAX.
 *
 * THREADING  The public functions are safe from any thread. `mu` guards the
 *            queue, `closing` and last_error; each future has its own mutex
 *            and condition so futures outlive their client; max_hlc is
 *            atomic; everything under "I/O thread only" belongs to io_main.
 */
#include "client_int.h"

#include <openssl/err.h>

static __thread char tls_error[ERRLEN];

/* Format an error detail into an ERRLEN buffer (truncating quietly). */
static __thread char tls_connect_error[ERRLEN];

/* ---- names ------------------------------------------------------------- */

const char *cairn_status_name(cairn_status_t s)
{
    switch (s) {
    case CAIRN_OK: return "OK";
    case CAIRN_NOT_FOUND: return "NotFound";
    case CAIRN_UNAVAILABLE: return "Unavailable";
    case CAIRN_TIMEOUT: return "Timeout";
    case CAIRN_INVALID: return "Invalid";
    case CAIRN_CONNECTION: return "ConnectionError";
    case CAIRN_OVERLOADED: return "Overloaded";
    case CAIRN_CLOCK_SKEW: return "ClockSkew";
    case CAIRN_PROTOCOL: return "ProtocolError";
    case CAIRN_DENIED: return "Denied";
    case CAIRN_CLOSED: return "Closed";
    }
    return "Unknown";
}

const char *cairn_consistency_name(cairn_consistency_t cl)
{
    switch (cl) {
    case CAIRN_ONE: return "ONE";
    case CAIRN_QUORUM: return "QUORUM";
    case CAIRN_ALL: return "ALL";
    }
    return "?";
}

const char *cairn_node_status_name(cairn_node_status_t s)
{
    switch (s) {
    case CAIRN_NODE_JOINING: return "joining";
    case CAIRN_NODE_NORMAL: return "normal";
    case CAIRN_NODE_LEAVING: return "leaving";
    case CAIRN_NODE_LEFT: return "left";
    }
    return "?";
}

const char *cairn_liveness_name(cairn_liveness_t l)
{
    switch (l) {
    case CAIRN_ALIVE: return "alive";
    case CAIRN_SUSPECT: return "suspect";
    case CAIRN_DEAD: return "dead";
    }
    return "?";
}

/* A node's status to the client's. Failures inside the node that have no
 * client status of their own (IO, NOSPACE, CORRUPT, NOMEM ...) mean it
 * cannot serve the request: Unavailable; the message keeps the detail. */
cairn_status_t client_status_from_kv(kv_status_t s)
{
    switch (s) {
    case KV_OK: return CAIRN_OK;
    case KV_NOTFOUND: return CAIRN_NOT_FOUND;
    case KV_UNAVAILABLE: return CAIRN_UNAVAILABLE;
    case KV_TIMEOUT: return CAIRN_TIMEOUT;
    case KV_INVALID: return CAIRN_INVALID;
    case KV_BUSY: return CAIRN_OVERLOADED;
    case KV_AGAIN: return CAIRN_OVERLOADED;
    case KV_CLOCK_SKEW: return CAIRN_CLOCK_SKEW;
    case KV_PROTO: return CAIRN_PROTOCOL;
    case KV_DENIED: return CAIRN_DENIED;
    case KV_CLOSED: return CAIRN_CLOSED;
    default: return CAIRN_UNAVAILABLE;
    }
}

/* ---- options ----------------------------------------------------------- */

void cairn_options_init(cairn_options_t *o)
{
    memset(o, 0, sizeof *o);
    o->contact_points = "127.0.0.1";
    o->cluster_name = "cairn";
    o->client_name = "libcairn";
    o->consistency = CAIRN_QUORUM;
    o->timeout_ms = 2000;
    o->connect_timeout_ms = 2000;
}

static bool valid_cl(cairn_consistency_t cl)
{
    return cl == CAIRN_ONE || cl == CAIRN_QUORUM || cl == CAIRN_ALL;
}

/* Parse "host[:port],[v6]:port,..." into c->points. */
static bool parse_points(cairn_client_t *c, const char *s, char *err)
{
    size_t cap = 1;
    for (const char *p = s; *p; p++)
        if (*p == ',') cap++;
    c->points = kv_calloc(cap, sizeof *c->points);
    c->npoints = 0;
    const char *p = s;
    while (*p) {
        const char *end = strchr(p, ',');
        if (!end) end = p + strlen(p);
        while (p < end && (*p == ' ' || *p == '\t')) p++;
        const char *e = end;
        while (e > p && (e[-1] == ' ' || e[-1] == '\t')) e--;
        if (e > p) {
            const char *host = p, *hend, *port = NULL;
            if (*p == '[') {
                host = p + 1;
                hend = memchr(host, ']', (size_t)(e - host));
                if (!hend) goto bad;
                if (hend + 1 < e) {
                    if (hend[1] != ':') goto bad;
                    port = hend + 2;
                }
            } else {
                const char *colon = memchr(p, ':', (size_t)(e - p));
                if (colon && memchr(colon + 1, ':', (size_t)(e - colon - 1)))
                    colon = NULL; /* a bare IPv6 address */
                hend = colon ? colon : e;
                if (colon) port = colon + 1;
            }
            size_t hl = (size_t)(hend - host);
            if (hl == 0 || hl >= sizeof c->points[0].host) goto bad;
            point_t *pt = &c->points[c->npoints++];
            memcpy(pt->host, host, hl);
            pt->host[hl] = 0;
            if (port) {
                size_t pl = (size_t)(e - port);
                if (pl == 0 || pl > 5) goto bad;
                unsigned long v = 0;
                for (size_t i = 0; i < pl; i++) {
                    if (port[i] < '0' || port[i] > '9') goto bad;
                    v = v * 10 + (unsigned long)(port[i] - '0');
                }
                if (v == 0 || v > 65535) goto bad;
                snprintf(pt->port, sizeof pt->port, "%lu", v);
            } else {
                snprintf(pt->port, sizeof pt->port, "%d", CAIRN_DEFAULT_PORT);
            }
            snprintf(pt->desc, sizeof pt->desc, strchr(pt->host, ':') ? "[%s]:%s" : "%s:%s",
                     pt->host, pt->port);
        }
        p = *end ? end + 1 : end;
        continue;
    bad:
        errf(err, "bad contact point \"%.*s\"", (int)(e - p), p);
        return false;
    }
    if (c->npoints == 0) {
        errf(err, "no contact points in \"%s\"", s);
        return false;
    }
    return true;
}

/* ---- futures ----------------------------------------------------------- */

static cairn_future_t *future_new(req_kind_t kind, int refs)
{
    cairn_future_t *f = kv_calloc(1, sizeof *f);
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    f->refs = refs;
    f->kind = kind;
    return f;
}

static void future_unref(cairn_future_t *f)
{
    pthread_mutex_lock(&f->mu);
    bool last = --f->refs == 0;
    pthread_mutex_unlock(&f->mu);
    if (!last) return;
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
    kv_free(f->value);
    kv_free(f->message);
    kv_buf_deinit(&f->info);
    cairn_ring_free(&f->ring);
    kv_buf_deinit(&f->frame);
    kv_free(f);
}

static void set_last_error(cairn_client_t *c, const char *msg)
{
    pthread_mutex_lock(&c->mu);
    errf(c->last_error, "%s", msg);
    pthread_mutex_unlock(&c->mu);
}

/* Complete f and drop the client's reference. value (if any) is copied. */
void client_complete(cairn_client_t *c, cairn_future_t *f, cairn_status_t st,
                     const char *msg, const kv_slice_t *value, uint64_t ts)
{
    kv_buf_deinit(&f->frame);
    if (st != CAIRN_OK && st != CAIRN_NOT_FOUND)
        set_last_error(c, msg ? msg : cairn_status_name(st));
    pthread_mutex_lock(&f->mu);
    kv_assert(!f->done);
    f->status = st;
    f->ts = ts;
    if (value) {
        f->has_value = true;
        f->vlen = value->len;
        f->value = kv_malloc(value->len + 1);
        if (value->len) memcpy(f->value, value->data, value->len);
        f->value[value->len] = 0;
    }
    if (msg && *msg) f->message = kv_strdup(msg);
    f->done = true;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    future_unref(f);
}

bool cairn_future_ready(cairn_future_t *f)
{
    pthread_mutex_lock(&f->mu);
    bool done = f->done;
    pthread_mutex_unlock(&f->mu);
    return done;
}

/* Wait for f; copy (or, when take, move) its value into *out. */
static cairn_status_t future_wait(cairn_future_t *f, cairn_value_t *out, bool take)
{
    pthread_mutex_lock(&f->mu);
    while (!f->done) pthread_cond_wait(&f->cv, &f->mu);
    if (out) {
        memset(out, 0, sizeof *out);
        out->timestamp = f->ts;
        if (f->has_value) {
            out->len = f->vlen;
            if (take) {
                out->data = f->value;
                f->value = NULL;
                f->has_value = false;
            } else {
                out->data = kv_memdup(f->value, f->vlen + 1);
            }
        }
    }
    cairn_status_t st = f->status;
    pthread_mutex_unlock(&f->mu);
    return st;
}

cairn_status_t cairn_future_wait(cairn_future_t *f, cairn_value_t *out)
{
    return future_wait(f, out, false);
}

const char *cairn_future_error(cairn_future_t *f)
{
    pthread_mutex_lock(&f->mu);
    const char *m = f->done && f->message ? f->message : "";
    pthread_mutex_unlock(&f->mu);
    return m;
}

void cairn_future_free(cairn_future_t *f)
{
    if (f) future_unref(f);
}

void cairn_value_free(cairn_value_t *v)
{
    if (!v) return;
    kv_free(v->data);
    memset(v, 0, sizeof *v);
}

/* ---- submitting -------------------------------------------------------- */

static void wake(cairn_client_t *c)
{
    uint64_t one = 1;
    ssize_t n;
    do n = write(c->wake_fd, &one, sizeof one);
    while (n < 0 && errno == EINTR);
    /* EAGAIN: the counter is already non-zero, the loop will wake. */
}

void client_drain_wake(cairn_client_t *c)
{
    uint64_t v;
    ssize_t n;
    do n = read(c->wake_fd, &v, sizeof v);
    while (n < 0 && errno == EINTR);
}

uint64_t client_now_ns(const cairn_client_t *c)
{
    return kv_clock_mono_ns(c->clock);
}

static cairn_future_t *submit(cairn_client_t *c, req_kind_t kind, const void *key,
                              size_t klen, const void *value, size_t vlen,
                              const cairn_request_opts_t *opts)
{
    cairn_future_t *f = future_new(kind, 2);
    char msg[ERRLEN];
    cairn_consistency_t cl = opts && opts->consistency ? opts->consistency
                                                       : (cairn_consistency_t)c->default_cl;
    f->timeout_ms = opts && opts->timeout_ms ? opts->timeout_ms : c->timeout_ms;
    if (!valid_cl(cl)) {
        errf(msg, "bad consistency level %d", (int)cl);
        client_complete(c, f, CAIRN_INVALID, msg, NULL, 0);
        return f;
    }
    if ((klen && !key) || (vlen && !value)) {
        client_complete(c, f, CAIRN_INVALID, "NULL key or value with a non-zero length",
                 NULL, 0);
        return f;
    }
    f->id = atomic_fetch_add(&c->next_id, 1);
    kv_status_t rc;
    if (kind == REQ_INFO) {
        rc = proto_encode_info(&f->frame, f->id, 0);
    } else if (kind == REQ_PING) {
        rc = proto_encode_ping(&f->frame, f->id, 0);
    } else if (kind == REQ_RING) {
        kv_slice_t k = kv_slice(key, klen);
        rc = proto_encode_ring(&f->frame, f->id, key ? &k : NULL, 0);
    } else if (kind == REQ_ADMIN) {
        rc = proto_encode_admin(&f->frame, f->id, kv_slice(key, klen),
                                kv_slice(value, vlen), 0);
    } else if (kind == REQ_LOCAL_GET) {
        rc = proto_encode_local_get(&f->frame, f->id, kv_slice(key, klen), 0);
    } else {
        static const proto_msg_t types[] = {MSG_GET, MSG_PUT, MSG_DELETE};
        proto_request_t r = {
            .type = types[kind],
            .id = f->id,
            .key = kv_slice(key, klen),
            .value = kv_slice(value, vlen),
            .cl = (proto_cl_t)cl,
            .timeout_ms = f->timeout_ms,
            .causality = atomic_load(&c->max_hlc),
            .ttl_ms = opts ? opts->ttl_ms : 0,
        };
        rc = proto_encode_request(&f->frame, &r, 0);
    }
    if (rc != KV_OK) {
        errf(msg, "request too large (%zu-byte key, %zu-byte value; "
                 "a frame holds at most %u bytes)", klen, vlen, KV_FRAME_DEFAULT_MAX);
        client_complete(c, f, CAIRN_INVALID, msg, NULL, 0);
        return f;
    }
    /* The node enforces timeout_ms and answers Timeout with what it knows
     * (how many replicas acknowledged); the client's own deadline is a
     * backstop for a node that does not answer at all, so it allows the
     * node's answer a moment to arrive. */
    f->deadline_ns = client_now_ns(c) +
                     ((uint64_t)f->timeout_ms + CLIENT_TIMEOUT_GRACE_MS) * 1000000u;

    pthread_mutex_lock(&c->mu);
    if (c->closing) {
        pthread_mutex_unlock(&c->mu);
        client_complete(c, f, CAIRN_CONNECTION, "client closed", NULL, 0);
        return f;
    }
    if (c->qtail) c->qtail->qnext = f;
    else c->qhead = f;
    c->qtail = f;
    pthread_mutex_unlock(&c->mu);
    wake(c);
    return f;
}

cairn_future_t *cairn_get_async(cairn_client_t *c, const void *key, size_t klen,
                                const cairn_request_opts_t *opts)
{
    return submit(c, REQ_GET, key, klen, NULL, 0, opts);
}

cairn_future_t *cairn_put_async(cairn_client_t *c, const void *key, size_t klen,
                                const void *value, size_t vlen,
                                const cairn_request_opts_t *opts)
{
    return submit(c, REQ_PUT, key, klen, value, vlen, opts);
}

cairn_future_t *cairn_delete_async(cairn_client_t *c, const void *key,
                                   size_t klen, const cairn_request_opts_t *opts)
{
    return submit(c, REQ_DELETE, key, klen, NULL, 0, opts);
}

cairn_status_t cairn_get(cairn_client_t *c, const void *key, size_t klen,
                         const cairn_request_opts_t *opts, cairn_value_t *out)
{
    cairn_future_t *f = cairn_get_async(c, key, klen, opts);
    cairn_value_t v;
    cairn_status_t st = future_wait(f, &v, true);
    cairn_future_free(f);
    if (st == CAIRN_OK && out) *out = v;
    else {
        cairn_value_free(&v);
        if (out) memset(out, 0, sizeof *out);
    }
    return st;
}

cairn_status_t cairn_put(cairn_client_t *c, const void *key, size_t klen,
                         const void *value, size_t vlen,
                         const cairn_request_opts_t *opts)
{
    cairn_future_t *f = cairn_put_async(c, key, klen, value, vlen, opts);
    cairn_status_t st = future_wait(f, NULL, false);
    cairn_future_free(f);
    return st;
}

cairn_status_t cairn_delete(cairn_client_t *c, const void *key, size_t klen,
                            const cairn_request_opts_t *opts)
{
    cairn_future_t *f = cairn_delete_async(c, key, klen, opts);
    cairn_status_t st = future_wait(f, NULL, false);
    cairn_future_free(f);
    return st;
}

cairn_future_t *cairn_ping_async(cairn_client_t *c)
{
    return submit(c, REQ_PING, NULL, 0, NULL, 0, NULL);
}

cairn_status_t cairn_ping(cairn_client_t *c)
{
    cairn_future_t *f = cairn_ping_async(c);
    cairn_status_t st = future_wait(f, NULL, false);
    cairn_future_free(f);
    return st;
}

cairn_status_t cairn_info(cairn_client_t *c, cairn_info_fn fn, void *arg)
{
    cairn_future_t *f = submit(c, REQ_INFO, NULL, 0, NULL, 0, NULL);
    cairn_status_t st = future_wait(f, NULL, false);
    if (st == CAIRN_OK && fn) {
        /* Done futures are no longer written: read without the lock. */
        const char *p = (const char *)f->info.data;
        const char *end = p + f->info.len;
        while (p < end) {
            const char *name = p;
            const char *val = name + strlen(name) + 1;
            fn(name, val, arg);
            p = val + strlen(val) + 1;
        }
    }
    cairn_future_free(f);
    return st;
}

cairn_status_t cairn_admin(cairn_client_t *c, const char *op, const char *arg,
                           cairn_value_t *out)
{
    if (out) memset(out, 0, sizeof *out);
    if (!op || !*op) {
        cairn_future_t *f = future_new(REQ_ADMIN, 2);
        client_complete(c, f, CAIRN_INVALID, "no admin operation given", NULL, 0);
        cairn_status_t st = future_wait(f, NULL, false);
        cairn_future_free(f);
        return st;
    }
    cairn_future_t *f = submit(c, REQ_ADMIN, op, strlen(op), arg ? arg : "",
                               arg ? strlen(arg) : 0, NULL);
    cairn_status_t st = future_wait(f, out, true);
    cairn_future_free(f);
    return st;
}

cairn_status_t cairn_ring(cairn_client_t *c, const void *key, size_t klen,
                          cairn_ring_t *out)
{
    cairn_future_t *f = submit(c, REQ_RING, key, klen, NULL, 0, NULL);
    cairn_status_t st = future_wait(f, NULL, false);
    memset(out, 0, sizeof *out);
    if (st == CAIRN_OK) {
        /* Done futures are no longer written: take the ring without the lock. */
        *out = f->ring;
        memset(&f->ring, 0, sizeof f->ring);
    }
    cairn_future_free(f);
    return st;
}

cairn_status_t cairn_local_get(cairn_client_t *c, const void *key, size_t klen,
                               cairn_cell_t *out)
{
    cairn_future_t *f = submit(c, REQ_LOCAL_GET, key, klen, NULL, 0, NULL);
    cairn_value_t v;
    cairn_status_t st = future_wait(f, &v, true);
    memset(out, 0, sizeof *out);
    if (st == CAIRN_OK) {
        /* Done futures are no longer written: read without the lock. */
        out->tombstone = f->tombstone;
        out->expire_ms = f->expire_ms;
        out->timestamp = v.timestamp;
        out->data = v.data;
        out->len = v.len;
    } else {
        cairn_value_free(&v);
    }
    cairn_future_free(f);
    return st;
}

void cairn_cell_free(cairn_cell_t *cell)
{
    if (!cell) return;
    kv_free(cell->data);
    memset(cell, 0, sizeof *cell);
}

void cairn_ring_free(cairn_ring_t *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->nnodes; i++) {
        cairn_ring_node_t *n = &r->nodes[i];
        kv_free(n->name);
        kv_free(n->node_id);
        kv_free(n->host);
        kv_free(n->rack);
        kv_free(n->tokens);
    }
    kv_free(r->nodes);
    kv_free(r->replicas);
    memset(r, 0, sizeof *r);
}

const char *cairn_last_error(cairn_client_t *c)
{
    pthread_mutex_lock(&c->mu);
    errf(tls_error, "%s", c->last_error);
    pthread_mutex_unlock(&c->mu);
    return tls_error;
}

const char *cairn_connect_error(void)
{
    return tls_connect_error;
}

/* ---- connect / close --------------------------------------------------- */

/* The TLS context from the options. false with err set when a file cannot
 * be loaded. */
static bool tls_setup(cairn_client_t *c, const cairn_options_t *o, char *err)
{
    c->ssl_ctx = SSL_CTX_new(TLS_client_method());
    if (!c->ssl_ctx) {
        errf(err, "cannot create a TLS context");
        return false;
    }
    SSL_CTX_set_min_proto_version(c->ssl_ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(c->ssl_ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                     SSL_MODE_ENABLE_PARTIAL_WRITE);
    SSL_CTX_set_verify(c->ssl_ctx, SSL_VERIFY_PEER, NULL);
    char why[256] = "";
    if (o->tls_ca_file && *o->tls_ca_file) {
        if (SSL_CTX_load_verify_locations(c->ssl_ctx, o->tls_ca_file, NULL) != 1) {
            ERR_error_string_n(ERR_get_error(), why, sizeof why);
            errf(err, "cannot load the TLS CA file %s: %s", o->tls_ca_file, why);
            return false;
        }
    } else {
        SSL_CTX_set_default_verify_paths(c->ssl_ctx);
    }
    if ((o->tls_cert_file && *o->tls_cert_file) != (o->tls_key_file && *o->tls_key_file)) {
        errf(err, "a client certificate needs both tls_cert_file and tls_key_file");
        return false;
    }
    if (o->tls_cert_file && *o->tls_cert_file) {
        if (SSL_CTX_use_certificate_chain_file(c->ssl_ctx, o->tls_cert_file) != 1 ||
            SSL_CTX_use_PrivateKey_file(c->ssl_ctx, o->tls_key_file, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(c->ssl_ctx) != 1) {
            ERR_error_string_n(ERR_get_error(), why, sizeof why);
            errf(err, "cannot load the client certificate %s / key %s: %s",
                 o->tls_cert_file, o->tls_key_file, why);
            return false;
        }
    }
    ERR_clear_error();
    c->tls_check_host = !o->tls_skip_hostname_check;
    return true;
}

const char *cairn_user(cairn_client_t *c)
{
    return c->user; /* written once, before cairn_connect returned */
}

const char *cairn_role(cairn_client_t *c) { return c->role; }

static void client_free(cairn_client_t *c)
{
    if (c->wake_fd >= 0) close(c->wake_fd);
    if (c->ssl_ctx) SSL_CTX_free(c->ssl_ctx);
    kv_free(c->username);
    if (c->password) OPENSSL_cleanse(c->password, strlen(c->password));
    kv_free(c->password);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->started_cv);
    kv_free(c->cluster);
    kv_free(c->client_name);
    kv_free(c->points);
    kv_free(c->buckets);
    kv_buf_deinit(&c->wbuf);
    kv_frame_decoder_destroy(c->dec);
    kv_free(c);
}

cairn_status_t cairn_connect(const cairn_options_t *o, cairn_client_t **out)
{
    cairn_options_t def;
    if (!o) {
        cairn_options_init(&def);
        o = &def;
    }
    tls_connect_error[0] = 0;
    if (!valid_cl(o->consistency)) {
        errf(tls_connect_error, "bad consistency level %d", (int)o->consistency);
        return CAIRN_INVALID;
    }
    cairn_client_t *c = kv_calloc(1, sizeof *c);
    c->fd = -1;
    c->wake_fd = -1;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->started_cv, NULL);
    c->cluster = kv_strdup(o->cluster_name ? o->cluster_name : "cairn");
    c->client_name = kv_strdup(o->client_name ? o->client_name : "libcairn");
    c->default_cl = (proto_cl_t)o->consistency;
    c->timeout_ms = o->timeout_ms ? o->timeout_ms : 2000;
    c->connect_timeout_ms = o->connect_timeout_ms ? o->connect_timeout_ms : 2000;
    c->clock = kv_clock_system();
    c->next_id = 1;
    c->next_deadline = UINT64_MAX;
    if (o->username && *o->username) {
        c->username = kv_strdup(o->username);
        c->password = kv_strdup(o->password ? o->password : "");
    }
    if (o->tls && !tls_setup(c, o, tls_connect_error)) {
        client_free(c);
        return CAIRN_INVALID;
    }
    if (!parse_points(c, o->contact_points ? o->contact_points : "127.0.0.1",
                      tls_connect_error)) {
        client_free(c);
        return CAIRN_INVALID;
    }
    c->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (c->wake_fd < 0) {
        errf(tls_connect_error, "eventfd: %s", strerror(errno));
        client_free(c);
        return CAIRN_CONNECTION;
    }
    int e = pthread_create(&c->thread, NULL, client_io_main, c);
    if (e != 0) {
        errf(tls_connect_error, "pthread_create: %s", strerror(e));
        client_free(c);
        return CAIRN_CONNECTION;
    }
    pthread_mutex_lock(&c->mu);
    while (!c->started) pthread_cond_wait(&c->started_cv, &c->mu);
    cairn_status_t st = c->start_status;
    pthread_mutex_unlock(&c->mu);
    if (st != CAIRN_OK) {
        pthread_join(c->thread, NULL);
        errf(tls_connect_error, "%s", c->round_err);
        client_free(c);
        return st;
    }
    *out = c;
    return CAIRN_OK;
}

void cairn_close(cairn_client_t *c)
{
    if (!c) return;
    pthread_mutex_lock(&c->mu);
    c->closing = true;
    pthread_mutex_unlock(&c->mu);
    wake(c);
    pthread_join(c->thread, NULL);
    /* Requests queued after the loop's last look. */
    bool closing;
    client_fail_list(c, client_take_queue(c, &closing), CAIRN_CONNECTION, "client closed");
    client_free(c);
}
