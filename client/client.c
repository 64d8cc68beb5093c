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
 *            token sent is the largest hlc seen in any HELLO_OK, REPLY or
 *            INFO_REPLY before the request was issued; (4) no length read
 *            from the network sizes an allocation before the frame decoder
 *            has checked it against KV_FRAME_DEFAULT_MAX.
 *
 * THREADING  The public functions are safe from any thread. `mu` guards the
 *            queue, `closing` and last_error; each future has its own mutex
 *            and condition so futures outlive their client; max_hlc is
 *            atomic; everything under "I/O thread only" belongs to io_main.
 */
#define KV_LOG_MODULE "client"
#include "cairn.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "kv.h"
#include "proto.h"

#define ERRLEN 512
#define READ_CHUNK 65536
#define MAX_POLL_MS 1000

typedef enum { REQ_GET, REQ_PUT, REQ_DELETE, REQ_INFO } req_kind_t;

struct cairn_future {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs; /* under mu: the caller's and, until completion, the client's */
    bool done;
    req_kind_t kind;
    cairn_status_t status;
    bool has_value;
    uint8_t *value; /* NUL-terminated copy */
    size_t vlen;
    uint64_t ts;
    char *message;  /* NULL when none */
    kv_buf_t info;  /* INFO: "name\0value\0" ... */
    /* Owned by the client: under c->mu while queued, I/O thread after. */
    uint64_t id;
    uint64_t deadline_ns;
    uint32_t timeout_ms;
    kv_buf_t frame;           /* the encoded request until it is written */
    cairn_future_t *qnext;    /* the client's queue */
    cairn_future_t *hnext;    /* an in-flight map chain */
};

typedef struct point {
    char host[256];
    char port[8];
    char desc[272]; /* host:port for messages */
} point_t;

struct cairn_client {
    /* Set at connect, then read-only. */
    char *cluster;
    char *client_name;
    point_t *points;
    size_t npoints;
    proto_cl_t default_cl;
    uint32_t timeout_ms;
    uint32_t connect_timeout_ms;
    const kv_clock_t *clock;
    int wake_fd;
    pthread_t thread;

    _Atomic uint64_t max_hlc;
    _Atomic uint64_t next_id;

    pthread_mutex_t mu;
    pthread_cond_t started_cv;
    bool started;                 /* the first round finished */
    cairn_status_t start_status;
    bool closing;
    cairn_future_t *qhead, *qtail;
    char last_error[ERRLEN];

    /* I/O thread only. */
    int fd;                       /* -1: DOWN */
    bool draining;
    size_t cur;                   /* index of the current/last point */
    kv_frame_decoder_t *dec;
    kv_buf_t wbuf;
    size_t woff;
    cairn_future_t **buckets;
    size_t nbuckets;              /* a power of two */
    size_t ninflight;
    uint64_t next_deadline;       /* no in-flight deadline is earlier */
    char round_err[ERRLEN];       /* why the last round failed */
};

static __thread char tls_error[ERRLEN];

/* Format an error detail into an ERRLEN buffer (truncating quietly). */
KV_PRINTF(2, 3) static void errf(char *dst, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, ERRLEN, fmt, ap);
    va_end(ap);
}
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

/* A node's status to the client's. Failures inside the node that have no
 * client status of their own (IO, NOSPACE, CORRUPT, NOMEM ...) mean it
 * cannot serve the request: Unavailable; the message keeps the detail. */
static cairn_status_t status_from_kv(kv_status_t s)
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
static void complete(cairn_client_t *c, cairn_future_t *f, cairn_status_t st,
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

static void drain_wake(cairn_client_t *c)
{
    uint64_t v;
    ssize_t n;
    do n = read(c->wake_fd, &v, sizeof v);
    while (n < 0 && errno == EINTR);
}

static uint64_t now_ns(const cairn_client_t *c)
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
        complete(c, f, CAIRN_INVALID, msg, NULL, 0);
        return f;
    }
    if ((klen && !key) || (vlen && !value)) {
        complete(c, f, CAIRN_INVALID, "NULL key or value with a non-zero length",
                 NULL, 0);
        return f;
    }
    f->id = atomic_fetch_add(&c->next_id, 1);
    kv_status_t rc;
    if (kind == REQ_INFO) {
        rc = proto_encode_info(&f->frame, f->id, 0);
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
        complete(c, f, CAIRN_INVALID, msg, NULL, 0);
        return f;
    }
    f->deadline_ns = now_ns(c) + (uint64_t)f->timeout_ms * 1000000u;

    pthread_mutex_lock(&c->mu);
    if (c->closing) {
        pthread_mutex_unlock(&c->mu);
        complete(c, f, CAIRN_CONNECTION, "client closed", NULL, 0);
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

/* ---- the in-flight map (I/O thread only) ------------------------------- */

static size_t bucket_of(const cairn_client_t *c, uint64_t id)
{
    return (size_t)(id * 0x9E3779B97F4A7C15ULL >> 20) & (c->nbuckets - 1);
}

static void map_insert(cairn_client_t *c, cairn_future_t *f)
{
    if (c->ninflight + 1 > c->nbuckets) {
        size_t old_n = c->nbuckets;
        cairn_future_t **old = c->buckets;
        c->nbuckets = old_n ? old_n * 2 : 64;
        c->buckets = kv_calloc(c->nbuckets, sizeof *c->buckets);
        for (size_t i = 0; i < old_n; i++) {
            cairn_future_t *e = old[i];
            while (e) {
                cairn_future_t *next = e->hnext;
                size_t b = bucket_of(c, e->id);
                e->hnext = c->buckets[b];
                c->buckets[b] = e;
                e = next;
            }
        }
        kv_free(old);
    }
    size_t b = bucket_of(c, f->id);
    f->hnext = c->buckets[b];
    c->buckets[b] = f;
    c->ninflight++;
    if (f->deadline_ns < c->next_deadline) c->next_deadline = f->deadline_ns;
}

static cairn_future_t *map_remove(cairn_client_t *c, uint64_t id)
{
    if (!c->nbuckets) return NULL;
    cairn_future_t **pp = &c->buckets[bucket_of(c, id)];
    for (; *pp; pp = &(*pp)->hnext) {
        if ((*pp)->id == id) {
            cairn_future_t *f = *pp;
            *pp = f->hnext;
            f->hnext = NULL;
            c->ninflight--;
            return f;
        }
    }
    return NULL;
}

/* Complete every in-flight request with st. */
static void fail_inflight(cairn_client_t *c, cairn_status_t st, const char *msg)
{
    for (size_t i = 0; i < c->nbuckets && c->ninflight; i++) {
        while (c->buckets[i]) {
            cairn_future_t *f = c->buckets[i];
            c->buckets[i] = f->hnext;
            c->ninflight--;
            complete(c, f, st, msg, NULL, 0);
        }
    }
    c->next_deadline = UINT64_MAX;
}

/* Expire the in-flight requests whose deadline passed. */
static void expire(cairn_client_t *c, uint64_t now)
{
    if (now < c->next_deadline) return;
    uint64_t next = UINT64_MAX;
    char msg[ERRLEN];
    for (size_t i = 0; i < c->nbuckets; i++) {
        cairn_future_t **pp = &c->buckets[i];
        while (*pp) {
            cairn_future_t *f = *pp;
            if (f->deadline_ns <= now) {
                *pp = f->hnext;
                c->ninflight--;
                errf(msg, "no reply from %s within %u ms",
                         c->points[c->cur].desc, f->timeout_ms);
                complete(c, f, CAIRN_TIMEOUT, msg, NULL, 0);
            } else {
                if (f->deadline_ns < next) next = f->deadline_ns;
                pp = &f->hnext;
            }
        }
    }
    c->next_deadline = next;
}

/* ---- connections (I/O thread only) ------------------------------------- */

static void hlc_observe(cairn_client_t *c, uint64_t hlc)
{
    uint64_t cur = atomic_load(&c->max_hlc);
    while (hlc > cur && !atomic_compare_exchange_weak(&c->max_hlc, &cur, hlc)) {
    }
}

static bool is_closing(cairn_client_t *c)
{
    pthread_mutex_lock(&c->mu);
    bool closing = c->closing;
    pthread_mutex_unlock(&c->mu);
    return closing;
}

/* Wait until fd is ready for `events` or the deadline passes. 1: ready,
 * 0: timed out, -1: the client is closing. */
static int wait_fd(cairn_client_t *c, int fd, short events, uint64_t deadline)
{
    for (;;) {
        if (is_closing(c)) return -1;
        uint64_t now = now_ns(c);
        if (now >= deadline) return 0;
        uint64_t ms = (deadline - now + 999999) / 1000000;
        struct pollfd p[2] = {{fd, events, 0}, {c->wake_fd, POLLIN, 0}};
        int n = poll(p, 2, (int)KV_MIN(ms, (uint64_t)MAX_POLL_MS));
        if (n < 0 && errno != EINTR) return 0;
        if (n <= 0) continue;
        if (p[1].revents) drain_wake(c); /* maybe cairn_close; queue is rechecked later */
        if (p[0].revents) return 1;
    }
}

static void close_conn(cairn_client_t *c)
{
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    c->draining = false;
    kv_frame_decoder_destroy(c->dec);
    c->dec = NULL;
    kv_buf_clear(&c->wbuf);
    c->woff = 0;
}

/* Open a TCP connection to pt (non-blocking, TCP_NODELAY). */
static cairn_status_t tcp_connect(cairn_client_t *c, const point_t *pt,
                                  uint64_t deadline, int *out, char *err)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(pt->host, pt->port, &hints, &res);
    if (gai != 0) {
        errf(err, "cannot resolve %s: %s", pt->desc, gai_strerror(gai));
        return CAIRN_CONNECTION;
    }
    errf(err, "no address for %s", pt->desc);
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                        ai->ai_protocol);
        if (fd < 0) {
            errf(err, "socket: %s", strerror(errno));
            continue;
        }
        int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
        int e = rc == 0 ? 0 : errno;
        if (e == EINPROGRESS) {
            int w = wait_fd(c, fd, POLLOUT, deadline);
            if (w <= 0) {
                close(fd);
                if (w < 0) {
                    errf(err, "client closed");
                    break;
                }
                errf(err, "connect to %s timed out", pt->desc);
                continue;
            }
            socklen_t len = sizeof e;
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0) e = errno;
        }
        if (e != 0) {
            close(fd);
            if (e == ECONNREFUSED)
                errf(err, "connection refused by %s", pt->desc);
            else
                errf(err, "connect to %s: %s", pt->desc, strerror(e));
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        *out = fd;
        freeaddrinfo(res);
        return CAIRN_OK;
    }
    freeaddrinfo(res);
    return CAIRN_CONNECTION;
}

/* Connect to point idx and shake hands. On success c->fd is UP. */
static cairn_status_t connect_one(cairn_client_t *c, size_t idx, char *err)
{
    const point_t *pt = &c->points[idx];
    uint64_t deadline = now_ns(c) + (uint64_t)c->connect_timeout_ms * 1000000u;
    int fd;
    cairn_status_t st = tcp_connect(c, pt, deadline, &fd, err);
    if (st != CAIRN_OK) return st;
    c->fd = fd;
    c->dec = kv_frame_decoder_create(0);

    uint64_t hello_id = atomic_fetch_add(&c->next_id, 1);
    proto_hello_t h = {CAIRN_PROTO_VERSION, kv_slice_str(c->cluster),
                       kv_slice_str(c->client_name)};
    if (proto_encode_hello(&c->wbuf, hello_id, &h, 0) != KV_OK) {
        errf(err, "cluster or client name too long");
        st = CAIRN_INVALID;
        goto err;
    }
    while (c->woff < c->wbuf.len) {
        ssize_t n = send(fd, c->wbuf.data + c->woff, c->wbuf.len - c->woff, MSG_NOSIGNAL);
        if (n >= 0) {
            c->woff += (size_t)n;
            continue;
        }
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            errf(err, "send to %s: %s", pt->desc, strerror(errno));
            st = CAIRN_CONNECTION;
            goto err;
        }
        int w = wait_fd(c, fd, POLLOUT, deadline);
        if (w <= 0) goto wait_failed;
    }
    kv_buf_clear(&c->wbuf);
    c->woff = 0;

    kv_frame_t fr;
    kv_frame_init(&fr);
    for (;;) {
        kv_status_t rc = kv_frame_decoder_next(c->dec, &fr);
        if (rc == KV_OK) break;
        if (rc != KV_AGAIN) {
            errf(err, "malformed handshake reply from %s: %s", pt->desc,
                     kv_frame_decoder_error(c->dec));
            st = CAIRN_PROTOCOL;
            goto err;
        }
        int w = wait_fd(c, fd, POLLIN, deadline);
        if (w <= 0) goto wait_failed;
        uint8_t buf[4096];
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
        if (n <= 0) {
            errf(err, "%s closed the connection during the handshake%s%s",
                     pt->desc, n < 0 ? ": " : "", n < 0 ? strerror(errno) : "");
            st = CAIRN_CONNECTION;
            goto err;
        }
        kv_frame_decoder_feed(c->dec, buf, (size_t)n);
    }
    if (fr.type == MSG_HELLO_OK) {
        proto_hello_ok_t ok;
        if (proto_decode_hello_ok(&fr, &ok) != KV_OK) {
            errf(err, "malformed HELLO_OK from %s", pt->desc);
            st = CAIRN_PROTOCOL;
        } else {
            hlc_observe(c, ok.hlc);
            KV_LOG(KV_DEBUG, "connected to %s (node %.*s)", pt->desc,
                   (int)ok.node_name.len, (const char *)ok.node_name.data);
            st = CAIRN_OK;
        }
    } else if (fr.type == MSG_REPLY) {
        proto_reply_t r;
        if (proto_decode_reply(&fr, &r) != KV_OK || r.status == KV_OK) {
            errf(err, "malformed handshake reply from %s", pt->desc);
            st = CAIRN_PROTOCOL;
        } else {
            hlc_observe(c, r.hlc);
            st = status_from_kv(r.status);
            if (r.message.len)
                errf(err, "%s: %.*s", pt->desc, (int)r.message.len,
                         (const char *)r.message.data);
            else
                errf(err, "%s refused the handshake: %s", pt->desc,
                         kv_status_str(r.status));
        }
    } else {
        errf(err, "unexpected message type %u from %s during the handshake",
                 fr.type, pt->desc);
        st = CAIRN_PROTOCOL;
    }
    kv_frame_release(&fr);
    if (st != CAIRN_OK) goto err;
    return CAIRN_OK;

wait_failed:
    st = CAIRN_CONNECTION;
    if (is_closing(c)) errf(err, "client closed");
    else errf(err, "handshake with %s timed out", pt->desc);
err:
    close_conn(c);
    return st;
}

/* Try every contact point once, starting at c->cur. A node's own refusal
 * (wrong cluster, draining) says more than a connection error, so it is
 * the one reported when every point fails. */
static cairn_status_t connect_round(cairn_client_t *c)
{
    cairn_status_t best = CAIRN_CONNECTION;
    char err[ERRLEN];
    c->round_err[0] = 0;
    for (size_t i = 0; i < c->npoints; i++) {
        size_t idx = (c->cur + i) % c->npoints;
        cairn_status_t st = connect_one(c, idx, err);
        if (st == CAIRN_OK) {
            c->cur = idx;
            return CAIRN_OK;
        }
        KV_LOG(KV_DEBUG, "%s", err);
        if (best == CAIRN_CONNECTION || st != CAIRN_CONNECTION) {
            if (st == CAIRN_CONNECTION && c->npoints > 1)
                errf(c->round_err, "could not reach any node (last: %s)", err);
            else
                errf(c->round_err, "%s", err);
            best = st;
        }
        if (is_closing(c)) break;
    }
    return best;
}

/* The connection broke: fail what was sent on it, move to the next point. */
static void conn_lost(cairn_client_t *c, cairn_status_t st, const char *msg)
{
    KV_LOG(KV_DEBUG, "%s", msg);
    fail_inflight(c, st, msg);
    close_conn(c);
    c->cur = (c->cur + 1) % c->npoints;
}

/* ---- the loop (I/O thread only) ---------------------------------------- */

typedef struct info_acc {
    kv_buf_t *b;
    size_t *n;
} info_acc_t;

/* Append one INFO item as "name\0value\0". */
static void info_item(void *arg, kv_slice_t name, bool is_str, kv_slice_t str, uint64_t num)
{
    info_acc_t *acc = arg;
    char tmp[32];
    kv_buf_append(acc->b, name.data, name.len);
    kv_buf_append_u8(acc->b, 0);
    if (is_str) {
        kv_buf_append(acc->b, str.data, str.len);
    } else {
        int n = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)num);
        kv_buf_append(acc->b, tmp, (size_t)n);
    }
    kv_buf_append_u8(acc->b, 0);
    (*acc->n)++;
}

static void handle_frame(cairn_client_t *c, kv_frame_t *fr)
{
    char msg[ERRLEN];
    const char *desc = c->points[c->cur].desc;
    if (fr->type == MSG_REPLY) {
        proto_reply_t r;
        if (proto_decode_reply(fr, &r) != KV_OK) {
            errf(msg, "malformed REPLY from %s", desc);
            conn_lost(c, CAIRN_PROTOCOL, msg);
            return;
        }
        hlc_observe(c, r.hlc);
        cairn_future_t *f = map_remove(c, r.id);
        if (!f) return; /* timed out already: a late reply */
        cairn_status_t st = status_from_kv(r.status);
        if (r.status == KV_CLOSED) c->draining = true;
        if (st == CAIRN_OK || st == CAIRN_NOT_FOUND) {
            bool val = st == CAIRN_OK && f->kind == REQ_GET && r.has_value;
            complete(c, f, st, NULL, val ? &r.value : NULL, r.cell_ts);
        } else if (r.message.len) {
            errf(msg, "%.*s", (int)r.message.len,
                     (const char *)r.message.data);
            complete(c, f, st, msg, NULL, r.cell_ts);
        } else {
            errf(msg, "%s answered %s", desc, kv_status_str(r.status));
            complete(c, f, st, msg, NULL, r.cell_ts);
        }
    } else if (fr->type == MSG_INFO_REPLY) {
        cairn_future_t *f = map_remove(c, fr->request_id);
        uint64_t hlc;
        kv_buf_t items = {0};
        size_t nitems = 0;
        if (f && f->kind != REQ_INFO) {
            errf(msg, "INFO_REPLY from %s to a data request", desc);
            complete(c, f, CAIRN_PROTOCOL, msg, NULL, 0);
            return;
        }
        /* Decode even when nobody waits, to check the stream is sane. */
        info_acc_t acc = {&items, &nitems};
        kv_status_t rc = proto_decode_info_reply(fr, &hlc, info_item, &acc);
        if (rc != KV_OK) {
            kv_buf_deinit(&items);
            if (f) {
                errf(msg, "malformed INFO_REPLY from %s", desc);
                complete(c, f, CAIRN_PROTOCOL, msg, NULL, 0);
            }
            return;
        }
        hlc_observe(c, hlc);
        if (!f) {
            kv_buf_deinit(&items);
            return;
        }
        f->info = items; /* not yet visible to the caller: done is false */
        complete(c, f, CAIRN_OK, NULL, NULL, 0);
    }
    /* Other types: a newer node's messages this client does not know. */
}

/* Read what is available and handle every whole frame. */
static void do_read(cairn_client_t *c)
{
    uint8_t *buf = kv_malloc(READ_CHUNK);
    char msg[ERRLEN];
    const char *desc = c->points[c->cur].desc;
    kv_frame_t fr;
    kv_frame_init(&fr);
    while (c->fd >= 0) {
        ssize_t n = recv(c->fd, buf, READ_CHUNK, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (n <= 0) {
            if (n == 0) errf(msg, "connection to %s closed by the node", desc);
            else errf(msg, "connection to %s lost: %s", desc, strerror(errno));
            conn_lost(c, CAIRN_CONNECTION, msg);
            break;
        }
        kv_status_t rc = kv_frame_decoder_feed(c->dec, buf, (size_t)n);
        while (rc == KV_OK && c->fd >= 0) {
            rc = kv_frame_decoder_next(c->dec, &fr);
            if (rc == KV_OK) handle_frame(c, &fr);
        }
        if (c->fd >= 0 && rc == KV_PROTO) {
            errf(msg, "malformed data from %s: %s", desc,
                     kv_frame_decoder_error(c->dec));
            conn_lost(c, CAIRN_PROTOCOL, msg);
        }
        if ((size_t)n < READ_CHUNK) break;
    }
    kv_frame_release(&fr);
    kv_free(buf);
}

static void do_write(cairn_client_t *c)
{
    char msg[ERRLEN];
    while (c->fd >= 0 && c->woff < c->wbuf.len) {
        ssize_t n = send(c->fd, c->wbuf.data + c->woff, c->wbuf.len - c->woff,
                         MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (n < 0) {
            errf(msg, "connection to %s lost: %s",
                     c->points[c->cur].desc, strerror(errno));
            conn_lost(c, CAIRN_CONNECTION, msg);
            return;
        }
        c->woff += (size_t)n;
    }
    if (c->woff == c->wbuf.len) {
        kv_buf_clear(&c->wbuf);
        c->woff = 0;
    }
}

/* Detach the whole queue. */
static cairn_future_t *take_queue(cairn_client_t *c, bool *closing)
{
    pthread_mutex_lock(&c->mu);
    cairn_future_t *q = c->qhead;
    *closing = c->closing;
    c->qhead = c->qtail = NULL;
    pthread_mutex_unlock(&c->mu);
    return q;
}

static void fail_list(cairn_client_t *c, cairn_future_t *q, cairn_status_t st,
                      const char *msg)
{
    while (q) {
        cairn_future_t *next = q->qnext;
        complete(c, q, st, msg, NULL, 0);
        q = next;
    }
}

static void *io_main(void *arg)
{
    cairn_client_t *c = arg;
    cairn_status_t st = connect_round(c);
    pthread_mutex_lock(&c->mu);
    c->started = true;
    c->start_status = st;
    pthread_cond_signal(&c->started_cv);
    pthread_mutex_unlock(&c->mu);
    if (st != CAIRN_OK) return NULL;

    for (;;) {
        /* A draining node gets nothing new; leave it once it is idle. */
        if (c->fd >= 0 && c->draining && c->ninflight == 0) {
            KV_LOG(KV_DEBUG, "%s is draining; moving on", c->points[c->cur].desc);
            close_conn(c);
            c->cur = (c->cur + 1) % c->npoints;
        }
        bool closing = false;
        cairn_future_t *q = NULL;
        if (c->fd < 0 || !c->draining) q = take_queue(c, &closing);
        else closing = is_closing(c);
        if (closing) {
            fail_list(c, q, CAIRN_CONNECTION, "client closed");
            break;
        }
        if (q && c->fd < 0 && connect_round(c) != CAIRN_OK) {
            fail_list(c, q, CAIRN_CONNECTION, c->round_err);
            continue;
        }
        uint64_t now = now_ns(c);
        while (q) {
            cairn_future_t *f = q;
            q = q->qnext;
            f->qnext = NULL;
            if (f->deadline_ns <= now) {
                char msg[ERRLEN];
                errf(msg, "not sent within %u ms", f->timeout_ms);
                complete(c, f, CAIRN_TIMEOUT, msg, NULL, 0);
                continue;
            }
            kv_buf_append(&c->wbuf, f->frame.data, f->frame.len);
            kv_buf_deinit(&f->frame);
            map_insert(c, f);
        }
        do_write(c);
        expire(c, now);

        int timeout = -1;
        if (c->ninflight) {
            uint64_t ms = c->next_deadline > now ? (c->next_deadline - now + 999999) / 1000000 : 0;
            timeout = (int)KV_MIN(ms, (uint64_t)MAX_POLL_MS);
        }
        struct pollfd p[2] = {{c->wake_fd, POLLIN, 0}, {c->fd, POLLIN, 0}};
        if (c->woff < c->wbuf.len) p[1].events |= POLLOUT;
        int n = poll(p, c->fd >= 0 ? 2 : 1, timeout);
        if (n < 0 && errno != EINTR) {
            KV_LOG(KV_ERROR, "poll: %s", strerror(errno));
            continue;
        }
        if (n <= 0) continue;
        if (p[0].revents) drain_wake(c);
        if (c->fd >= 0 && p[1].revents) {
            if (p[1].revents & (POLLIN | POLLERR | POLLHUP)) do_read(c);
            if (c->fd >= 0 && (p[1].revents & POLLOUT)) do_write(c);
        }
    }
    fail_inflight(c, CAIRN_CONNECTION, "client closed");
    close_conn(c);
    return NULL;
}

/* ---- connect / close --------------------------------------------------- */

static void client_free(cairn_client_t *c)
{
    if (c->wake_fd >= 0) close(c->wake_fd);
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
    int e = pthread_create(&c->thread, NULL, io_main, c);
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
    fail_list(c, take_queue(c, &closing), CAIRN_CONNECTION, "client closed");
    client_free(c);
}
