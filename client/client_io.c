/* client_io.c -- libcairn's I/O thread: the in-flight map (request id ->
 * future), connection rounds over the contact points with the handshake,
 * reading and writing frames, and the poll(2) loop with deadlines. See the
 * DESIGN comment in client.c for the connection states.
 * THREADING  I/O thread only, except where a comment says otherwise.
 */
#include "client_int.h"

#include <arpa/inet.h>
#include <signal.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

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
            client_complete(c, f, st, msg, NULL, 0);
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
                client_complete(c, f, CAIRN_TIMEOUT, msg, NULL, 0);
            } else {
                if (f->deadline_ns < next) next = f->deadline_ns;
                pp = &f->hnext;
            }
        }
    }
    c->next_deadline = next;
}

/* ---- connections (I/O thread only) ------------------------------------- */

/* TLS: OpenSSL over the same non-blocking socket. io_send / io_recv return
 * bytes moved, 0 for EOF (recv), or -1 with errno EAGAIN (would block:
 * *want says which poll event to wait for), or another errno / EPROTO
 * (a TLS failure; the text is in *err when err is not NULL). */
static void tls_errtext(char *buf, size_t cap)
{
    unsigned long e = ERR_get_error();
    if (e) ERR_error_string_n(e, buf, cap);
    else snprintf(buf, cap, "connection closed");
    ERR_clear_error();
}

static ssize_t io_result(cairn_client_t *c, int n, short *want, char *err)
{
    int e = SSL_get_error(c->ssl, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        if (want) *want = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
        errno = EAGAIN;
        return -1;
    }
    if (e == SSL_ERROR_ZERO_RETURN) return 0;
    if (e == SSL_ERROR_SYSCALL && errno == 0) return 0; /* EOF without close_notify */
    if (e == SSL_ERROR_SYSCALL) return -1;
    if (err) tls_errtext(err, ERRLEN);
    else ERR_clear_error();
    errno = EPROTO;
    return -1;
}

static ssize_t io_send(cairn_client_t *c, const void *p, size_t n, short *want)
{
    if (!c->ssl) return send(c->fd, p, n, MSG_NOSIGNAL);
    ERR_clear_error();
    int k = SSL_write(c->ssl, p, (int)KV_MIN(n, (size_t)INT32_MAX));
    return k > 0 ? k : io_result(c, k, want, NULL);
}

static ssize_t io_recv(cairn_client_t *c, void *p, size_t n, short *want)
{
    if (!c->ssl) return recv(c->fd, p, n, 0);
    ERR_clear_error();
    int k = SSL_read(c->ssl, p, (int)KV_MIN(n, (size_t)INT32_MAX));
    return k > 0 ? k : io_result(c, k, want, NULL);
}

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
        uint64_t now = client_now_ns(c);
        if (now >= deadline) return 0;
        uint64_t ms = (deadline - now + 999999) / 1000000;
        struct pollfd p[2] = {{fd, events, 0}, {c->wake_fd, POLLIN, 0}};
        int n = poll(p, 2, (int)KV_MIN(ms, (uint64_t)MAX_POLL_MS));
        if (n < 0 && errno != EINTR) return 0;
        if (n <= 0) continue;
        if (p[1].revents) client_drain_wake(c); /* maybe cairn_close; queue is rechecked later */
        if (p[0].revents) return 1;
    }
}

static void close_conn(cairn_client_t *c)
{
    if (c->ssl) {
        if (SSL_is_init_finished(c->ssl)) (void)SSL_shutdown(c->ssl); /* best effort */
        SSL_free(c->ssl);
        c->ssl = NULL;
        ERR_clear_error();
    }
    c->ssl_want_write = false;
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

/* TLS handshake on c->fd (c->ssl set up here). */
static cairn_status_t tls_handshake(cairn_client_t *c, const point_t *pt, uint64_t deadline,
                                    char *err)
{
    c->ssl = SSL_new(c->ssl_ctx);
    if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1) {
        errf(err, "cannot set up TLS for %s", pt->desc);
        return CAIRN_CONNECTION;
    }
    struct in6_addr a6;
    struct in_addr a4;
    bool ip = inet_pton(AF_INET, pt->host, &a4) == 1 || inet_pton(AF_INET6, pt->host, &a6) == 1;
    if (!ip) SSL_set_tlsext_host_name(c->ssl, pt->host);
    if (c->tls_check_host) {
        X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
        if (ip) X509_VERIFY_PARAM_set1_ip_asc(vp, pt->host);
        else SSL_set1_host(c->ssl, pt->host);
    }
    for (;;) {
        ERR_clear_error();
        int k = SSL_connect(c->ssl);
        if (k == 1) return CAIRN_OK;
        int e = SSL_get_error(c->ssl, k);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            int w = wait_fd(c, c->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline);
            if (w < 0) {
                errf(err, "client closed");
                return CAIRN_CONNECTION;
            }
            if (w == 0) {
                errf(err, "TLS handshake with %s timed out (is client_tls on at the node?)",
                     pt->desc);
                return CAIRN_CONNECTION;
            }
            continue;
        }
        long v = SSL_get_verify_result(c->ssl);
        char why[256];
        if (v != X509_V_OK)
            snprintf(why, sizeof why, "certificate verify failed: %s",
                     X509_verify_cert_error_string(v));
        else
            tls_errtext(why, sizeof why);
        errf(err, "TLS handshake with %s failed: %s%s", pt->desc, why,
             v == X509_V_OK ? " (is client_tls on at the node?)" : "");
        return CAIRN_CONNECTION;
    }
}

/* Connect to point idx and shake hands. On success c->fd is UP. */
static cairn_status_t connect_one(cairn_client_t *c, size_t idx, char *err)
{
    const point_t *pt = &c->points[idx];
    uint64_t deadline = client_now_ns(c) + (uint64_t)c->connect_timeout_ms * 1000000u;
    int fd;
    cairn_status_t st = tcp_connect(c, pt, deadline, &fd, err);
    if (st != CAIRN_OK) return st;
    c->fd = fd;
    c->dec = kv_frame_decoder_create(0);
    if (c->ssl_ctx && (st = tls_handshake(c, pt, deadline, err)) != CAIRN_OK) goto err;

    uint64_t hello_id = atomic_fetch_add(&c->next_id, 1);
    proto_hello_t h = {.version = CAIRN_PROTO_VERSION, .cluster = kv_slice_str(c->cluster),
                       .client_name = kv_slice_str(c->client_name)};
    if (c->username) {
        h.has_auth = true;
        h.user = kv_slice_str(c->username);
        h.password = kv_slice_str(c->password ? c->password : "");
    }
    if (proto_encode_hello(&c->wbuf, hello_id, &h, 0) != KV_OK) {
        errf(err, "cluster or client name too long");
        st = CAIRN_INVALID;
        goto err;
    }
    while (c->woff < c->wbuf.len) {
        short want = POLLOUT;
        ssize_t n = io_send(c, c->wbuf.data + c->woff, c->wbuf.len - c->woff, &want);
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
        int w = wait_fd(c, fd, want, deadline);
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
        short want = POLLIN;
        uint8_t buf[4096];
        ssize_t n = io_recv(c, buf, sizeof buf, &want);
        if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) {
            int w = wait_fd(c, fd, want, deadline);
            if (w <= 0) goto wait_failed;
            continue;
        }
        if (n <= 0) {
            errf(err, "%s closed the connection during the handshake%s%s%s", pt->desc,
                 n < 0 ? ": " : "", n < 0 ? strerror(errno) : "",
                 c->ssl ? "" : " (if the node's client port is TLS only, connect with TLS)");
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
            pthread_mutex_lock(&c->mu);
            snprintf(c->user, sizeof c->user, "%.*s", (int)KV_MIN(ok.user.len, 64),
                     (const char *)ok.user.data);
            snprintf(c->role, sizeof c->role, "%.*s", (int)KV_MIN(ok.role.len, 15),
                     (const char *)ok.role.data);
            pthread_mutex_unlock(&c->mu);
            st = CAIRN_OK;
        }
    } else if (fr.type == MSG_REPLY) {
        proto_reply_t r;
        if (proto_decode_reply(&fr, &r) != KV_OK || r.status == KV_OK) {
            errf(err, "malformed handshake reply from %s", pt->desc);
            st = CAIRN_PROTOCOL;
        } else {
            hlc_observe(c, r.hlc);
            st = client_status_from_kv(r.status);
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

static char *slice_strdup(kv_slice_t s)
{
    char *p = kv_malloc(s.len + 1);
    if (s.len) memcpy(p, s.data, s.len);
    p[s.len] = 0;
    return p;
}

static int token_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* A decoded RING_REPLY as the API gives it: NUL-terminated copies, ppm as
 * fractions, each node's tokens ascending. */
static void ring_convert(const proto_ring_t *in, cairn_ring_t *out)
{
    memset(out, 0, sizeof *out);
    out->replication_factor = in->replication_factor;
    out->self = in->self;
    out->key_token = in->key_token;
    if (in->nnodes) {
        out->nodes = kv_calloc(in->nnodes, sizeof *out->nodes);
        out->nnodes = in->nnodes;
    }
    for (size_t i = 0; i < in->nnodes; i++) {
        const proto_ring_node_t *s = &in->nodes[i];
        cairn_ring_node_t *d = &out->nodes[i];
        d->name = slice_strdup(s->name);
        d->node_id = slice_strdup(s->node_id);
        d->host = slice_strdup(s->host);
        d->rack = slice_strdup(s->rack);
        d->client_port = s->client_port;
        d->admin_port = s->admin_port;
        d->up = s->up;
        d->load_bytes = s->load_bytes;
        d->ownership = s->ownership_ppm / 1e6;
        d->effective_ownership = s->effective_ppm / 1e6;
        d->status = (cairn_node_status_t)s->status;
        d->liveness = (cairn_liveness_t)s->liveness;
        d->phi = s->phi_milli / 1e3;
        d->generation = s->generation;
        d->in_ring = s->in_ring;
        if (s->ntokens) {
            d->tokens = kv_memdup(s->tokens, s->ntokens * sizeof *s->tokens);
            d->ntokens = s->ntokens;
            qsort(d->tokens, d->ntokens, sizeof *d->tokens, token_cmp);
        }
    }
    if (in->nreplicas) {
        out->replicas = kv_malloc(in->nreplicas * sizeof *out->replicas);
        out->nreplicas = in->nreplicas;
        for (size_t i = 0; i < in->nreplicas; i++) out->replicas[i] = in->replicas[i];
    }
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
        cairn_status_t st = client_status_from_kv(r.status);
        if (r.status == KV_CLOSED) c->draining = true;
        if ((f->kind == REQ_RING || f->kind == REQ_LOCAL_GET) &&
            (st == CAIRN_OK || st == CAIRN_NOT_FOUND)) {
            /* Success comes as a RING_REPLY or LOCAL_REPLY; a plain REPLY
             * must be an error. */
            errf(msg, "%s answered %s with %s and no %s", desc,
                 f->kind == REQ_RING ? "RING" : "LOCAL_GET", kv_status_str(r.status),
                 f->kind == REQ_RING ? "ring" : "cell");
            client_complete(c, f, CAIRN_PROTOCOL, msg, NULL, r.cell_ts);
        } else if (st == CAIRN_OK || st == CAIRN_NOT_FOUND) {
            bool val = st == CAIRN_OK && (f->kind == REQ_GET || f->kind == REQ_ADMIN) &&
                       r.has_value;
            client_complete(c, f, st, NULL, val ? &r.value : NULL, r.cell_ts);
        } else if (r.message.len) {
            errf(msg, "%.*s", (int)r.message.len,
                     (const char *)r.message.data);
            client_complete(c, f, st, msg, NULL, r.cell_ts);
        } else {
            errf(msg, "%s answered %s", desc, kv_status_str(r.status));
            client_complete(c, f, st, msg, NULL, r.cell_ts);
        }
    } else if (fr->type == MSG_INFO_REPLY) {
        cairn_future_t *f = map_remove(c, fr->request_id);
        uint64_t hlc;
        kv_buf_t items = {0};
        size_t nitems = 0;
        if (f && f->kind != REQ_INFO) {
            errf(msg, "INFO_REPLY from %s to a data request", desc);
            client_complete(c, f, CAIRN_PROTOCOL, msg, NULL, 0);
            return;
        }
        /* Decode even when nobody waits, to check the stream is sane. */
        info_acc_t acc = {&items, &nitems};
        kv_status_t rc = proto_decode_info_reply(fr, &hlc, info_item, &acc);
        if (rc != KV_OK) {
            kv_buf_deinit(&items);
            if (f) {
                errf(msg, "malformed INFO_REPLY from %s", desc);
                client_complete(c, f, CAIRN_PROTOCOL, msg, NULL, 0);
            }
            return;
        }
        hlc_observe(c, hlc);
        if (!f) {
            kv_buf_deinit(&items);
            return;
        }
        f->info = items; /* not yet visible to the caller: done is false */
        client_complete(c, f, CAIRN_OK, NULL, NULL, 0);
    } else if (fr->type == MSG_RING_REPLY) {
        cairn_future_t *f = map_remove(c, fr->request_id);
        if (f && f->kind != REQ_RING) {
            errf(msg, "RING_REPLY from %s to another request", desc);
            client_complete(c, f, CAIRN_PROTOCOL, msg, NULL, 0);
            return;
        }
        /* Decode even when nobody waits, to check the stream is sane. */
        proto_ring_t ring;
        uint64_t hlc;
        if (proto_decode_ring_reply(fr, &hlc, &ring) != KV_OK) {
            if (f) {
                errf(msg, "malformed RING_REPLY from %s", desc);
                client_complete(c, f, CAIRN_PROTOCOL, msg, NULL, 0);
            }
            return;
        }
        hlc_observe(c, hlc);
        if (f) ring_convert(&ring, &f->ring); /* not yet visible: done is false */
        proto_ring_free(&ring);
        if (f) client_complete(c, f, CAIRN_OK, NULL, NULL, 0);
    } else if (fr->type == MSG_LOCAL_REPLY) {
        cairn_future_t *f = map_remove(c, fr->request_id);
        if (f && f->kind != REQ_LOCAL_GET) {
            errf(msg, "LOCAL_REPLY from %s to another request", desc);
            client_complete(c, f, CAIRN_PROTOCOL, msg, NULL, 0);
            return;
        }
        /* Decode even when nobody waits, to check the stream is sane. */
        proto_local_reply_t lr;
        if (proto_decode_local_reply(fr, &lr) != KV_OK) {
            if (f) {
                errf(msg, "malformed LOCAL_REPLY from %s", desc);
                client_complete(c, f, CAIRN_PROTOCOL, msg, NULL, 0);
            }
            return;
        }
        hlc_observe(c, lr.hlc);
        if (!f) return;
        f->tombstone = lr.tombstone; /* not yet visible: done is false */
        f->expire_ms = lr.expire_ms;
        bool val = lr.status == KV_OK && !lr.tombstone;
        client_complete(c, f, client_status_from_kv(lr.status), NULL,
                        val ? &lr.value : NULL, lr.ts);
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
    c->ssl_want_write = false;
    while (c->fd >= 0) {
        short want = POLLIN;
        ssize_t n = io_recv(c, buf, READ_CHUNK, &want);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c->ssl_want_write = want == POLLOUT;
            break;
        }
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
        /* plain: a short read emptied the socket; TLS: keep reading until
         * OpenSSL says it would block (it may hold decrypted bytes) */
        if (!c->ssl && (size_t)n < READ_CHUNK) break;
    }
    kv_frame_release(&fr);
    kv_free(buf);
}

static void do_write(cairn_client_t *c)
{
    char msg[ERRLEN];
    while (c->fd >= 0 && c->woff < c->wbuf.len) {
        ssize_t n = io_send(c, c->wbuf.data + c->woff, c->wbuf.len - c->woff, NULL);
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
cairn_future_t *client_take_queue(cairn_client_t *c, bool *closing)
{
    pthread_mutex_lock(&c->mu);
    cairn_future_t *q = c->qhead;
    *closing = c->closing;
    c->qhead = c->qtail = NULL;
    pthread_mutex_unlock(&c->mu);
    return q;
}

void client_fail_list(cairn_client_t *c, cairn_future_t *q, cairn_status_t st,
                      const char *msg)
{
    while (q) {
        cairn_future_t *next = q->qnext;
        client_complete(c, q, st, msg, NULL, 0);
        q = next;
    }
}

void *client_io_main(void *arg)
{
    cairn_client_t *c = arg;
    /* OpenSSL writes with write(2), not send(MSG_NOSIGNAL): a node that
     * closed its end would raise SIGPIPE and kill the caller's process.
     * The signal goes to the thread that wrote, so blocking it here (the
     * only thread that touches the socket) makes the write fail with EPIPE
     * instead, without changing the application's own signal handling. */
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, NULL);
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
        if (c->fd < 0 || !c->draining) q = client_take_queue(c, &closing);
        else closing = is_closing(c);
        if (closing) {
            client_fail_list(c, q, CAIRN_CONNECTION, "client closed");
            break;
        }
        if (q && c->fd < 0 && connect_round(c) != CAIRN_OK) {
            client_fail_list(c, q, CAIRN_CONNECTION, c->round_err);
            continue;
        }
        uint64_t now = client_now_ns(c);
        while (q) {
            cairn_future_t *f = q;
            q = q->qnext;
            f->qnext = NULL;
            if (f->deadline_ns <= now) {
                char msg[ERRLEN];
                errf(msg, "not sent within %u ms", f->timeout_ms);
                client_complete(c, f, CAIRN_TIMEOUT, msg, NULL, 0);
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
        if (c->woff < c->wbuf.len || c->ssl_want_write) p[1].events |= POLLOUT;
        int n = poll(p, c->fd >= 0 ? 2 : 1, timeout);
        if (n < 0 && errno != EINTR) {
            KV_LOG(KV_ERROR, "poll: %s", strerror(errno));
            continue;
        }
        if (n <= 0) continue;
        if (p[0].revents) client_drain_wake(c);
        if (c->fd >= 0 && p[1].revents) {
            /* TLS: a write may need the peer's bytes and a read may need to
             * write (renegotiation, key updates): try both on any event */
            if ((p[1].revents & (POLLIN | POLLERR | POLLHUP)) || (c->ssl && c->ssl_want_write))
                do_read(c);
            if (c->fd >= 0 && ((p[1].revents & POLLOUT) || c->ssl)) do_write(c);
        }
    }
    fail_inflight(c, CAIRN_CONNECTION, "client closed");
    close_conn(c);
    return NULL;
}

