/* test_client.c -- libcairn against a fake node.
 *
 * The fake node is a thread with a listening socket on 127.0.0.1 (port 0)
 * that speaks the client protocol through proto.h: HELLO_OK (or an error
 * REPLY for a wrong cluster name), GET/PUT/DELETE over an in-memory table,
 * INFO, RING (a fixed three-node view). The test steers it through fields
 * under its mutex: delay replies,
 * hold a batch of replies and send them in reverse order, drop every
 * connection, answer with an oversized frame, answer CLOSED (draining), and
 * set the hlc it reports. It records the causality token of the last
 * request. The fake node never calls cmocka (it is not the test's thread).
 */
#include "test_util.h"
#include "cli_test_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

#include "cairn.h"
#include "coding.h"
#include "proto.h"

/* ---- the fake node ----------------------------------------------------- */

#define FAKE_MAX_CONNS 16

typedef struct fake_entry {
    uint8_t *key, *val;
    size_t klen, vlen;
    uint64_t ts;
    bool live;
} fake_entry_t;

typedef struct fake_conn {
    int fd;
    uint64_t serial;
    kv_frame_decoder_t *dec;
    kv_buf_t out;
    bool close_after_flush;
} fake_conn_t;

typedef struct fake_delayed {
    uint64_t due_ns;
    uint64_t conn_serial;
    kv_buf_t frame;
} fake_delayed_t;

typedef struct fake {
    int lfd;
    uint16_t port;
    pthread_t thread;
    pthread_mutex_t mu;
    /* control (under mu) */
    bool stop;
    char cluster[64];
    uint64_t hlc;      /* reported in replies; writes advance it */
    int delay_ms;      /* delay every reply by this much */
    int reorder;       /* hold this many replies, then send them reversed */
    bool drop_now;     /* close every connection at once */
    bool go_away;      /* drop_now, and close the listener: refuse from now on */
    bool oversized;    /* answer the next request with an oversized frame */
    bool closed;       /* answer CLOSED (draining) */
    int ring_mode;     /* RING: 0 the view, 1 a malformed RING_REPLY,
                          2 REPLY PROTO (an old node), 3 REPLY OK,
                          4 an empty ring, 5 an old node's reply (no
                          gossip fields), 6 the view from n4 */
    /* statistics (under mu) */
    int hellos;
    int requests;
    int accepted;
    uint64_t last_causality;
    uint64_t last_timeout_ms;
    proto_cl_t last_cl;
    uint64_t last_ttl_ms;
    int rings;            /* RING requests */
    int pings;            /* PING requests */
    int last_ring_has_key;
    int last_ring_klen;
    char last_ring_key[64];
    /* the node's own state (fake thread only) */
    fake_entry_t *table;
    size_t ntable;
    fake_conn_t conns[FAKE_MAX_CONNS];
    size_t nconns;
    uint64_t next_serial;
    fake_delayed_t *delayed;
    size_t ndelayed;
    kv_buf_t *held; /* reordered replies waiting for the batch to fill */
    size_t nheld;
    uint64_t held_conn;
} fake_t;

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static fake_entry_t *fake_find(fake_t *s, kv_slice_t key)
{
    for (size_t i = 0; i < s->ntable; i++)
        if (kv_slice_eq(kv_slice(s->table[i].key, s->table[i].klen), key))
            return &s->table[i];
    return NULL;
}

static void fake_conn_close(fake_t *s, size_t i)
{
    fake_conn_t *c = &s->conns[i];
    close(c->fd);
    kv_frame_decoder_destroy(c->dec);
    kv_buf_deinit(&c->out);
    for (size_t d = 0; d < s->ndelayed;) {
        if (s->delayed[d].conn_serial == c->serial) {
            kv_buf_deinit(&s->delayed[d].frame);
            s->delayed[d] = s->delayed[--s->ndelayed];
        } else {
            d++;
        }
    }
    if (s->held_conn == c->serial) {
        for (size_t h = 0; h < s->nheld; h++) kv_buf_deinit(&s->held[h]);
        s->nheld = 0;
    }
    s->conns[i] = s->conns[--s->nconns];
}

static fake_conn_t *fake_conn_by_serial(fake_t *s, uint64_t serial)
{
    for (size_t i = 0; i < s->nconns; i++)
        if (s->conns[i].serial == serial) return &s->conns[i];
    return NULL;
}

/* Queue one encoded reply for conn, honouring delay and reorder. */
static void fake_send(fake_t *s, fake_conn_t *c, kv_buf_t *frame, int delay_ms, int reorder)
{
    if (delay_ms > 0) {
        s->delayed = kv_realloc(s->delayed, (s->ndelayed + 1) * sizeof *s->delayed);
        fake_delayed_t *d = &s->delayed[s->ndelayed++];
        d->due_ns = mono_ns() + (uint64_t)delay_ms * 1000000u;
        d->conn_serial = c->serial;
        d->frame = *frame;
        return;
    }
    if (reorder > 1) {
        s->held = kv_realloc(s->held, (s->nheld + 1) * sizeof *s->held);
        s->held[s->nheld++] = *frame;
        s->held_conn = c->serial;
        if (s->nheld >= (size_t)reorder) {
            while (s->nheld) {
                kv_buf_t *b = &s->held[--s->nheld];
                kv_buf_append(&c->out, b->data, b->len);
                kv_buf_deinit(b);
            }
        }
        return;
    }
    kv_buf_append(&c->out, frame->data, frame->len);
    kv_buf_deinit(frame);
}

/* The fake's view of the ring: listed out of name order, answered by n2
 * (index 2); n3's tokens arrive unsorted and it is suspect; n1 is dead,
 * has no rack and an IPv6 host; n4 is joining (a member, not in the ring
 * yet); n5 has left. With a key: token 4242 + its length, replicas n1, n2,
 * n3. */
static const uint64_t fake_tokens_n3[] = {900, 100};
static const uint64_t fake_tokens_n1[] = {200, UINT64_MAX};
static const uint64_t fake_tokens_n2[] = {50};

/* An old node's RING_REPLY: nodes of eleven fields, without gossip's
 * (n1 up, n2 down). */
static void fake_old_ring_reply(fake_t *s, uint64_t id, kv_buf_t *out)
{
    kv_frame_writer_t w;
    kv_frame_begin(&w, out, MSG_RING_REPLY, id, 6);
    msgpack_pack_uint64(&w.pk, s->hlc);
    msgpack_pack_uint32(&w.pk, 2);
    msgpack_pack_uint32(&w.pk, 0);
    msgpack_pack_uint64(&w.pk, 0);
    msgpack_pack_array(&w.pk, 2);
    for (int i = 0; i < 2; i++) {
        msgpack_pack_array(&w.pk, 11);
        kv_pack_str(&w.pk, i ? "n2" : "n1");
        kv_pack_str(&w.pk, i ? "id-2" : "id-1");
        kv_pack_str(&w.pk, "127.0.0.1");
        msgpack_pack_uint16(&w.pk, (uint16_t)(7070 + 10 * i));
        msgpack_pack_uint16(&w.pk, (uint16_t)(7072 + 10 * i));
        kv_pack_str(&w.pk, "rack1");
        if (i) msgpack_pack_false(&w.pk);
        else msgpack_pack_true(&w.pk);
        msgpack_pack_uint64(&w.pk, 2048);
        msgpack_pack_uint32(&w.pk, 500000);
        msgpack_pack_uint32(&w.pk, 1000000);
        msgpack_pack_array(&w.pk, 1);
        msgpack_pack_uint64(&w.pk, i ? 1000 : 10);
    }
    msgpack_pack_array(&w.pk, 0);
    kv_assert(kv_frame_end(&w, 0) == KV_OK);
}

static void fake_ring_reply(fake_t *s, uint64_t id, bool has_key, kv_slice_t key,
                            kv_buf_t *out)
{
    proto_ring_node_t nodes[5] = {
        {.name = kv_slice_str("n3"), .node_id = kv_slice_str("id-3"),
         .host = kv_slice_str("10.0.0.3"), .rack = kv_slice_str("r1"),
         .client_port = 7070, .admin_port = 7072, .up = true, .load_bytes = 1536,
         .ownership_ppm = 333334, .effective_ppm = 1000000,
         .tokens = fake_tokens_n3, .ntokens = 2, .status = PROTO_NODE_NORMAL,
         .liveness = PROTO_LIVE_SUSPECT, .phi_milli = 3250,
         .generation = 1700000000003ULL, .in_ring = true},
        {.name = kv_slice_str("n1"), .node_id = kv_slice_str("id-1"),
         .host = kv_slice_str("::1"), .rack = kv_slice(NULL, 0),
         .client_port = 9042, .admin_port = 9043, .up = false, .load_bytes = 0,
         .ownership_ppm = 333333, .effective_ppm = 666667,
         .tokens = fake_tokens_n1, .ntokens = 2, .status = PROTO_NODE_NORMAL,
         .liveness = PROTO_LIVE_DEAD, .phi_milli = 12345678,
         .generation = 1700000000001ULL, .in_ring = true},
        {.name = kv_slice_str("n2"), .node_id = kv_slice_str("id-2"),
         .host = kv_slice_str("10.0.0.2"), .rack = kv_slice_str("r2"),
         .client_port = 7070, .admin_port = 7072, .up = true,
         .load_bytes = 5ULL << 30, .ownership_ppm = 333333, .effective_ppm = 1333333,
         .tokens = fake_tokens_n2, .ntokens = 1, .status = PROTO_NODE_NORMAL,
         .liveness = PROTO_LIVE_ALIVE, .phi_milli = 0,
         .generation = 1700000000002ULL, .in_ring = true},
        {.name = kv_slice_str("n4"), .node_id = kv_slice_str("id-4"),
         .host = kv_slice_str("10.0.0.4"), .rack = kv_slice_str("r1"),
         .client_port = 7070, .admin_port = 7072, .up = true, .load_bytes = 0,
         .status = PROTO_NODE_JOINING, .liveness = PROTO_LIVE_ALIVE,
         .phi_milli = 400, .generation = 1700000000004ULL, .in_ring = false},
        {.name = kv_slice_str("n5"), .node_id = kv_slice_str("id-5"),
         .host = kv_slice_str("10.0.0.5"), .rack = kv_slice_str("r2"),
         .client_port = 7070, .admin_port = 7072, .up = false, .load_bytes = 0,
         .status = PROTO_NODE_LEFT, .liveness = PROTO_LIVE_DEAD,
         .phi_milli = 0, .generation = 1700000000005ULL, .in_ring = false},
    };
    static const uint32_t replicas[] = {1, 2, 0};
    proto_ring_t r = {.replication_factor = 3, .self = 2, .nodes = nodes, .nnodes = 5};
    if (has_key) {
        r.key_token = 4242 + key.len;
        r.replicas = replicas;
        r.nreplicas = 3;
    }
    proto_reply_t rp = {.id = id, .hlc = s->hlc};
    switch (s->ring_mode) {
    case 0:
        kv_assert(proto_encode_ring_reply(out, id, s->hlc, &r, 0) == KV_OK);
        break;
    case 1: {
        /* self out of range: the encoder refuses it, so pack it by hand */
        kv_frame_writer_t w;
        kv_frame_begin(&w, out, MSG_RING_REPLY, id, 6);
        msgpack_pack_uint64(&w.pk, s->hlc);
        msgpack_pack_uint32(&w.pk, 3);
        msgpack_pack_uint32(&w.pk, 7);
        msgpack_pack_uint64(&w.pk, 0);
        msgpack_pack_array(&w.pk, 0);
        msgpack_pack_array(&w.pk, 0);
        kv_assert(kv_frame_end(&w, 0) == KV_OK);
        break;
    }
    case 4:
        r.nnodes = 0;
        r.self = 0;
        r.nreplicas = 0;
        kv_assert(proto_encode_ring_reply(out, id, s->hlc, &r, 0) == KV_OK);
        break;
    case 5:
        fake_old_ring_reply(s, id, out);
        break;
    case 6:
        r.self = 3; /* answered by the joining node */
        kv_assert(proto_encode_ring_reply(out, id, s->hlc, &r, 0) == KV_OK);
        break;
    case 2:
        rp.status = KV_PROTO;
        rp.message = kv_slice_str("unknown message type 21");
        proto_encode_reply(out, &rp, 0);
        break;
    default:
        rp.status = KV_OK;
        proto_encode_reply(out, &rp, 0);
        break;
    }
}

/* Handle one frame; false: close the connection now. */
static bool fake_handle(fake_t *s, fake_conn_t *c, const kv_frame_t *f)
{
    kv_buf_t out = {0};
    pthread_mutex_lock(&s->mu);
    int delay = s->delay_ms, reorder = s->reorder;
    bool oversized = s->oversized, closed = s->closed;
    if (f->type == MSG_HELLO) {
        proto_hello_t h;
        s->hellos++;
        if (proto_decode_hello(f, &h) != KV_OK) {
            pthread_mutex_unlock(&s->mu);
            return false;
        }
        if (!kv_slice_eq(h.cluster, kv_slice_str(s->cluster))) {
            char msg[200];
            snprintf(msg, sizeof msg, "cluster name mismatch: this node is in \"%s\", "
                     "the client asked for \"%.*s\"", s->cluster, (int)h.cluster.len,
                     (const char *)h.cluster.data);
            proto_reply_t r = {.id = f->request_id, .status = KV_INVALID, .hlc = s->hlc,
                               .message = kv_slice_str(msg)};
            proto_encode_reply(&c->out, &r, 0);
            c->close_after_flush = true;
        } else {
            proto_hello_ok_t ok = {.version = CAIRN_PROTO_VERSION,
                                   .cluster = kv_slice_str(s->cluster),
                                   .node_name = kv_slice_str("fake"),
                                   .node_id = kv_slice_str("id-1"), .hlc = s->hlc};
            proto_encode_hello_ok(&c->out, f->request_id, &ok, 0);
        }
        pthread_mutex_unlock(&s->mu);
        return true;
    }
    if (f->type == MSG_RING) {
        kv_slice_t key;
        bool has_key;
        if (proto_decode_ring(f, &key, &has_key) != KV_OK) {
            pthread_mutex_unlock(&s->mu);
            return false;
        }
        s->rings++;
        s->last_ring_has_key = has_key;
        s->last_ring_klen = (int)key.len;
        snprintf(s->last_ring_key, sizeof s->last_ring_key, "%.*s", (int)key.len,
                 key.len ? (const char *)key.data : "");
        fake_ring_reply(s, f->request_id, has_key, key, &out);
        pthread_mutex_unlock(&s->mu);
        fake_send(s, c, &out, 0, 0);
        return true;
    }
    if (f->type == MSG_PING) {
        s->pings++;
        proto_reply_t r = {.id = f->request_id, .status = KV_OK, .hlc = s->hlc};
        proto_encode_reply(&out, &r, 0);
        pthread_mutex_unlock(&s->mu);
        fake_send(s, c, &out, 0, 0);
        return true;
    }
    if (f->type == MSG_INFO) {
        char port[16];
        snprintf(port, sizeof port, "%u", s->port);
        proto_info_item_t items[] = {
            {"node_name", "fake", 0},
            {"cluster", s->cluster, 0},
            {"requests", NULL, (uint64_t)s->requests},
            {"port", port, 0},
        };
        proto_encode_info_reply(&out, f->request_id, s->hlc, items, KV_ARRAY_LEN(items), 0);
        pthread_mutex_unlock(&s->mu);
        fake_send(s, c, &out, 0, 0);
        return true;
    }
    proto_request_t rq;
    if (proto_decode_request(f, &rq) != KV_OK) {
        pthread_mutex_unlock(&s->mu);
        return false;
    }
    s->requests++;
    s->last_causality = rq.causality;
    s->last_timeout_ms = rq.timeout_ms;
    s->last_cl = rq.cl;
    s->last_ttl_ms = rq.ttl_ms;
    if (oversized) {
        s->oversized = false;
        pthread_mutex_unlock(&s->mu);
        uint8_t hdr[8];
        kv_put_be32(hdr, 0xFFFFFFF0u);
        memset(hdr + 4, 0x90, 4);
        kv_buf_append(&c->out, hdr, sizeof hdr);
        return true;
    }
    proto_reply_t r = {.id = rq.id, .status = KV_OK};
    if (closed) {
        r.status = KV_CLOSED;
        r.message = kv_slice_str("node is draining");
    } else if (rq.type == MSG_GET) {
        fake_entry_t *e = fake_find(s, rq.key);
        if (e && e->live) {
            r.has_value = true;
            r.value = kv_slice(e->val, e->vlen);
            r.cell_ts = e->ts;
        } else {
            r.status = KV_NOTFOUND;
        }
    } else {
        fake_entry_t *e = fake_find(s, rq.key);
        if (!e) {
            s->table = kv_realloc(s->table, (s->ntable + 1) * sizeof *s->table);
            e = &s->table[s->ntable++];
            memset(e, 0, sizeof *e);
            e->key = kv_memdup(rq.key.data ? rq.key.data : (const uint8_t *)"", rq.key.len);
            e->klen = rq.key.len;
        }
        kv_free(e->val);
        e->val = NULL;
        e->vlen = 0;
        e->live = rq.type == MSG_PUT;
        if (e->live) {
            e->val = kv_memdup(rq.value.data ? rq.value.data : (const uint8_t *)"",
                               rq.value.len);
            e->vlen = rq.value.len;
        }
        e->ts = ++s->hlc;
        r.cell_ts = e->ts;
    }
    r.hlc = s->hlc;
    proto_encode_reply(&out, &r, 0);
    pthread_mutex_unlock(&s->mu);
    fake_send(s, c, &out, delay, reorder);
    return true;
}

static void *fake_main(void *arg)
{
    fake_t *s = arg;
    uint8_t buf[65536];
    kv_frame_t f;
    kv_frame_init(&f);
    for (;;) {
        pthread_mutex_lock(&s->mu);
        bool stop = s->stop, drop = s->drop_now || s->go_away;
        if (s->go_away && s->lfd >= 0) {
            close(s->lfd);
            s->lfd = -1;
        }
        s->drop_now = false;
        pthread_mutex_unlock(&s->mu);
        if (stop) break;
        if (drop)
            while (s->nconns) fake_conn_close(s, 0);

        uint64_t now = mono_ns();
        for (size_t d = 0; d < s->ndelayed;) {
            if (s->delayed[d].due_ns <= now) {
                fake_conn_t *c = fake_conn_by_serial(s, s->delayed[d].conn_serial);
                if (c) kv_buf_append(&c->out, s->delayed[d].frame.data, s->delayed[d].frame.len);
                kv_buf_deinit(&s->delayed[d].frame);
                s->delayed[d] = s->delayed[--s->ndelayed];
            } else {
                d++;
            }
        }

        struct pollfd p[FAKE_MAX_CONNS + 1];
        p[0] = (struct pollfd){s->lfd, POLLIN, 0};
        for (size_t i = 0; i < s->nconns; i++)
            p[i + 1] = (struct pollfd){s->conns[i].fd,
                                       (short)(POLLIN | (s->conns[i].out.len ? POLLOUT : 0)), 0};
        size_t n = s->nconns;
        if (poll(p, n + 1, 2) <= 0) continue;
        if ((p[0].revents & POLLIN) && s->nconns < FAKE_MAX_CONNS) {
            int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd >= 0) {
                fake_conn_t *c = &s->conns[s->nconns++];
                memset(c, 0, sizeof *c);
                c->fd = fd;
                c->serial = ++s->next_serial;
                c->dec = kv_frame_decoder_create(0);
                pthread_mutex_lock(&s->mu);
                s->accepted++;
                pthread_mutex_unlock(&s->mu);
            }
        }
        /* Walk backwards: closing swaps the last connection into slot i. */
        for (size_t i = n; i-- > 0;) {
            fake_conn_t *c = &s->conns[i];
            bool ok = true;
            if (p[i + 1].revents & (POLLIN | POLLERR | POLLHUP)) {
                ssize_t r = recv(c->fd, buf, sizeof buf, 0);
                if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) ok = false;
                if (r > 0 && kv_frame_decoder_feed(c->dec, buf, (size_t)r) != KV_OK) ok = false;
                kv_status_t rc;
                while (ok && (rc = kv_frame_decoder_next(c->dec, &f)) == KV_OK)
                    ok = fake_handle(s, c, &f);
                if (ok && rc == KV_PROTO) ok = false;
            }
            while (ok && c->out.len) {
                ssize_t w = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL);
                if (w < 0) {
                    if (errno != EAGAIN && errno != EINTR) ok = false;
                    break;
                }
                kv_buf_consume(&c->out, (size_t)w);
            }
            if (ok && c->close_after_flush && c->out.len == 0) ok = false;
            if (!ok) fake_conn_close(s, i);
        }
    }
    kv_frame_release(&f);
    while (s->nconns) fake_conn_close(s, 0);
    return NULL;
}

static fake_t *fake_start(const char *cluster)
{
    fake_t *s = kv_calloc(1, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    snprintf(s->cluster, sizeof s->cluster, "%s", cluster);
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(s->lfd >= 0);
    int one = 1;
    setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(s->lfd, 16), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&a, &len), 0);
    s->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&s->thread, NULL, fake_main, s), 0);
    return s;
}

static void fake_stop(fake_t *s)
{
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    if (s->lfd >= 0) close(s->lfd);
    for (size_t i = 0; i < s->ntable; i++) {
        kv_free(s->table[i].key);
        kv_free(s->table[i].val);
    }
    kv_free(s->table);
    for (size_t d = 0; d < s->ndelayed; d++) kv_buf_deinit(&s->delayed[d].frame);
    kv_free(s->delayed);
    for (size_t h = 0; h < s->nheld; h++) kv_buf_deinit(&s->held[h]);
    kv_free(s->held);
    pthread_mutex_destroy(&s->mu);
    kv_free(s);
}

#define FAKE_SET(s, field, v)                                                  \
    do {                                                                       \
        pthread_mutex_lock(&(s)->mu);                                          \
        (s)->field = (v);                                                      \
        pthread_mutex_unlock(&(s)->mu);                                        \
    } while (0)

static uint64_t fake_get(fake_t *s, size_t off)
{
    pthread_mutex_lock(&s->mu);
    int v = *(const int *)((const char *)s + off);
    pthread_mutex_unlock(&s->mu);
    return (uint64_t)v;
}
#define FAKE_STAT(s, field) fake_get((s), offsetof(fake_t, field))

static uint64_t fake_causality(fake_t *s)
{
    pthread_mutex_lock(&s->mu);
    uint64_t v = s->last_causality;
    pthread_mutex_unlock(&s->mu);
    return v;
}

/* A port on which nothing listens. */
static uint16_t dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, (struct sockaddr *)&a, sizeof a);
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

static cairn_client_t *connect_to(const char *points, uint32_t timeout_ms)
{
    cairn_options_t o;
    cairn_options_init(&o);
    o.contact_points = points;
    o.timeout_ms = timeout_ms;
    o.connect_timeout_ms = 1000;
    o.client_name = "test_client";
    cairn_client_t *c = NULL;
    cairn_status_t st = cairn_connect(&o, &c);
    if (st != CAIRN_OK) fprintf(stderr, "connect: %s\n", cairn_connect_error());
    assert_int_equal(st, CAIRN_OK);
    return c;
}

static cairn_client_t *connect_fake(fake_t *s, uint32_t timeout_ms)
{
    char pts[64];
    snprintf(pts, sizeof pts, "127.0.0.1:%u", s->port);
    return connect_to(pts, timeout_ms);
}

/* ---- tests ------------------------------------------------------------- */

static void test_client_status_names_are_stable(void **state)
{
    (void)state;
    static const char *const names[] = {"OK", "NotFound", "Unavailable", "Timeout",
                                        "Invalid", "ConnectionError", "Overloaded",
                                        "ClockSkew", "ProtocolError", "Denied", "Closed"};
    for (int i = 0; i <= CAIRN_CLOSED; i++)
        assert_string_equal(cairn_status_name((cairn_status_t)i), names[i]);
    assert_string_equal(cairn_status_name((cairn_status_t)99), "Unknown");
    assert_string_equal(cairn_consistency_name(CAIRN_QUORUM), "QUORUM");
    cairn_options_t o;
    cairn_options_init(&o);
    assert_int_equal(o.consistency, CAIRN_QUORUM);
    assert_int_equal(o.timeout_ms, 2000);
    assert_string_equal(o.cluster_name, "cairn");
}

static void test_client_put_get_delete_round_trip(void **state)
{
    (void)state;
    fake_t *s = fake_start("cairn");
    cairn_client_t *c = connect_fake(s, 2000);
    assert_int_equal(cairn_put(c, "k", 1, "hello", 5, NULL), CAIRN_OK);
    cairn_value_t v;
    assert_int_equal(cairn_get(c, "k", 1, NULL, &v), CAIRN_OK);
    assert_int_equal(v.len, 5);
    assert_memory_equal(v.data, "hello", 5);
    assert_int_equal(v.data[5], 0);
    assert_true(v.timestamp > 0);
    cairn_value_free(&v);
    assert_null(v.data);
    /* the defaults and per-request overrides reach the node */
    assert_int_equal(FAKE_STAT(s, last_cl), CL_QUORUM);
    cairn_request_opts_t ro = {.consistency = CAIRN_ALL, .timeout_ms = 1234, .ttl_ms = 99};
    assert_int_equal(cairn_put(c, "k", 1, "bye", 3, &ro), CAIRN_OK);
    assert_int_equal(FAKE_STAT(s, last_cl), CL_ALL);
    pthread_mutex_lock(&s->mu);
    assert_int_equal(s->last_timeout_ms, 1234);
    assert_int_equal(s->last_ttl_ms, 99);
    pthread_mutex_unlock(&s->mu);
    assert_int_equal(cairn_delete(c, "k", 1, NULL), CAIRN_OK);
    assert_int_equal(cairn_get(c, "k", 1, NULL, &v), CAIRN_NOT_FOUND);
    assert_null(v.data);
    assert_int_equal(v.len, 0);
    cairn_close(c);
    fake_stop(s);
}

static void test_client_get_of_missing_key_is_not_found(void **state)
{
    (void)state;
    fake_t *s = fake_start("cairn");
    cairn_client_t *c = connect_fake(s, 2000);
    cairn_value_t v;
    assert_int_equal(cairn_get(c, "nope", 4, NULL, &v), CAIRN_NOT_FOUND);
    assert_null(v.data);
    cairn_future_t *f = cairn_get_async(c, "nope", 4, NULL);
    assert_int_equal(cairn_future_wait(f, &v), CAIRN_NOT_FOUND);
    assert_int_equal(cairn_future_wait(f, NULL), CAIRN_NOT_FOUND); /* kept */
    assert_true(cairn_future_ready(f));
    cairn_value_free(&v);
    cairn_future_free(f);
    cairn_close(c);
    fake_stop(s);
}

static void test_client_keys_and_values_are_binary_safe(void **state)
{
    (void)state;
    fake_t *s = fake_start("cairn");
    cairn_client_t *c = connect_fake(s, 2000);
    const char k1[] = {'a', 0, 'b'}, k2[] = {'a', 0, 'c'};
    uint8_t val[256];
    for (int i = 0; i < 256; i++) val[i] = (uint8_t)i;
    assert_int_equal(cairn_put(c, k1, 3, val, sizeof val, NULL), CAIRN_OK);
    assert_int_equal(cairn_put(c, k2, 3, "\0\0", 2, NULL), CAIRN_OK);
    assert_int_equal(cairn_put(c, "empty", 5, "", 0, NULL), CAIRN_OK);
    cairn_value_t v;
    assert_int_equal(cairn_get(c, k1, 3, NULL, &v), CAIRN_OK);
    assert_int_equal(v.len, 256);
    assert_memory_equal(v.data, val, 256);
    cairn_value_free(&v);
    assert_int_equal(cairn_get(c, k2, 3, NULL, &v), CAIRN_OK);
    assert_int_equal(v.len, 2);
    assert_memory_equal(v.data, "\0\0", 2);
    cairn_value_free(&v);
    assert_int_equal(cairn_get(c, "empty", 5, NULL, &v), CAIRN_OK);
    assert_int_equal(v.len, 0);
    cairn_value_free(&v);
    cairn_close(c);
    fake_stop(s);
}

static void test_client_pipelines_a_thousand_async_requests(void **state)
{
    (void)state;
    enum { N = 1000 };
    fake_t *s = fake_start("cairn");
    cairn_client_t *c = connect_fake(s, 5000);
    cairn_future_t **fs = kv_calloc(N, sizeof *fs);
    char key[32], val[32];
    for (int i = 0; i < N; i++) {
        int kl = snprintf(key, sizeof key, "key-%d", i);
        int vl = snprintf(val, sizeof val, "value-%d", i * 7);
        fs[i] = cairn_put_async(c, key, (size_t)kl, val, (size_t)vl, NULL);
    }
    for (int i = 0; i < N; i++) {
        assert_int_equal(cairn_future_wait(fs[i], NULL), CAIRN_OK);
        cairn_future_free(fs[i]);
    }
    for (int i = 0; i < N; i++) {
        int kl = snprintf(key, sizeof key, "key-%d", i);
        fs[i] = cairn_get_async(c, key, (size_t)kl, NULL);
    }
    for (int i = N; i-- > 0;) {
        cairn_value_t v;
        assert_int_equal(cairn_future_wait(fs[i], &v), CAIRN_OK);
        int vl = snprintf(val, sizeof val, "value-%d", i * 7);
        assert_int_equal(v.len, (size_t)vl);
        assert_memory_equal(v.data, val, (size_t)vl);
        cairn_value_free(&v);
        cairn_future_free(fs[i]);
    }
    kv_free(fs);
    assert_int_equal(FAKE_STAT(s, accepted), 1);
    assert_int_equal(FAKE_STAT(s, requests), 2 * N);
    cairn_close(c);
    fake_stop(s);
}

static void test_client_matches_out_of_order_replies_by_id(void **state)
{
    (void)state;
    enum { N = 10 };
    fake_t *s = fake_start("cairn");
    cairn_client_t *c = connect_fake(s, 3000);
    char key[16], val[16];
    for (int i = 0; i < N; i++) {
        int kl = snprintf(key, sizeof key, "k%d", i);
        int vl = snprintf(val, sizeof val, "v%d", i);
        assert_int_equal(cairn_put(c, key, (size_t)kl, val, (size_t)vl, NULL), CAIRN_OK);
    }
    FAKE_SET(s, reorder, N);
    cairn_future_t *fs[N];
    for (int i = 0; i < N; i++) {
        int kl = snprintf(key, sizeof key, "k%d", i);
        fs[i] = cairn_get_async(c, key, (size_t)kl, NULL);
    }
    /* The first reply to arrive is the last request's. */
    assert_int_equal(cairn_future_wait(fs[N - 1], NULL), CAIRN_OK);
    for (int i = 0; i < N; i++) {
        cairn_value_t v;
        assert_int_equal(cairn_future_wait(fs[i], &v), CAIRN_OK);
        int vl = snprintf(val, sizeof val, "v%d", i);
        assert_int_equal(v.len, (size_t)vl);
        assert_memory_equal(v.data, val, (size_t)vl);
        cairn_value_free(&v);
        cairn_future_free(fs[i]);
    }
    cairn_close(c);
    fake_stop(s);
}

static void test_client_timeout_then_late_reply_is_ignored(void **state)
{
    (void)state;
    fake_t *s = fake_start("cairn");
    cairn_client_t *c = connect_fake(s, 100);
    assert_int_equal(cairn_put(c, "a", 1, "1", 1, NULL), CAIRN_OK);
    FAKE_SET(s, delay_ms, 800);
    uint64_t t0 = mono_ns();
    cairn_value_t v;
    assert_int_equal(cairn_get(c, "a", 1, NULL, &v), CAIRN_TIMEOUT);
    uint64_t took_ms = (mono_ns() - t0) / 1000000;
    /* the timeout, plus the grace the node gets to answer Timeout itself */
    assert_true(took_ms >= 340 && took_ms < 790); /* grace: 250 ms */
    assert_non_null(strstr(cairn_last_error(c), "within 100 ms"));
    FAKE_SET(s, delay_ms, 0);
    sleep_ms(500); /* the late reply arrives now and must be dropped */
    assert_int_equal(cairn_put(c, "a", 1, "2", 1, NULL), CAIRN_OK);
    assert_int_equal(cairn_get(c, "a", 1, NULL, &v), CAIRN_OK);
    assert_int_equal(v.len, 1);
    assert_int_equal(v.data[0], '2');
    cairn_value_free(&v);
    assert_int_equal(FAKE_STAT(s, accepted), 1); /* same connection throughout */
    cairn_close(c);
    fake_stop(s);
}

static void test_client_wrong_cluster_fails_connect_with_message(void **state)
{
    (void)state;
    fake_t *s = fake_start("prod");
    cairn_options_t o;
    cairn_options_init(&o);
    char pts[64];
    snprintf(pts, sizeof pts, "127.0.0.1:%u", s->port);
    o.contact_points = pts;
    o.cluster_name = "staging";
    cairn_client_t *c = NULL;
    assert_int_equal(cairn_connect(&o, &c), CAIRN_INVALID);
    assert_null(c);
    assert_non_null(strstr(cairn_connect_error(), "cluster name mismatch"));
    assert_non_null(strstr(cairn_connect_error(), "staging"));
    fake_stop(s);
}

static void test_client_connect_fails_when_no_node_listens(void **state)
{
    (void)state;
    char pts[64];
    snprintf(pts, sizeof pts, "127.0.0.1:%u", dead_port());
    cairn_options_t o;
    cairn_options_init(&o);
    o.contact_points = pts;
    cairn_client_t *c = NULL;
    assert_int_equal(cairn_connect(&o, &c), CAIRN_CONNECTION);
    assert_non_null(strstr(cairn_connect_error(), "refused"));
    o.contact_points = " , ";
    assert_int_equal(cairn_connect(&o, &c), CAIRN_INVALID);
    o.contact_points = "host:99999";
    assert_int_equal(cairn_connect(&o, &c), CAIRN_INVALID);
    o.contact_points = "[::1";
    assert_int_equal(cairn_connect(&o, &c), CAIRN_INVALID);
    assert_null(c);
}

static void test_client_fails_over_when_first_contact_point_refuses(void **state)
{
    (void)state;
    fake_t *s = fake_start("cairn");
    char pts[96];
    snprintf(pts, sizeof pts, "127.0.0.1:%u, 127.0.0.1:%u", dead_port(), s->port);
    cairn_client_t *c = connect_to(pts, 2000);
    assert_int_equal(cairn_put(c, "x", 1, "y", 1, NULL), CAIRN_OK);
    assert_int_equal(FAKE_STAT(s, requests), 1);
    cairn_close(c);
    fake_stop(s);
}

static void test_client_fails_over_when_node_drops_and_keeps_causality(void **state)
{
    (void)state;
    fake_t *a = fake_start("cairn"), *b = fake_start("cairn");
    FAKE_SET(a, hlc, 5000);
    FAKE_SET(b, hlc, 10);
    char pts[96];
    snprintf(pts, sizeof pts, "127.0.0.1:%u,127.0.0.1:%u", a->port, b->port);
    cairn_client_t *c = connect_to(pts, 2000);
    assert_int_equal(cairn_put(c, "x", 1, "1", 1, NULL), CAIRN_OK); /* a: hlc 5001 */
    assert_int_equal(FAKE_STAT(a, requests), 1);
    /* a goes away for good: its connection drops and its port refuses */
    FAKE_SET(a, go_away, true);
    sleep_ms(50);
    cairn_status_t st = cairn_put(c, "x", 1, "2", 1, NULL);
    assert_int_equal(st, CAIRN_OK);
    assert_int_equal(FAKE_STAT(b, requests), 1);
    assert_int_equal(fake_causality(b), 5001); /* b saw a's clock through us */
    cairn_close(c);
    fake_stop(a);
    fake_stop(b);
}

static void test_client_inflight_requests_fail_when_connection_drops(void **state)
{
    (void)state;
    enum { N = 10 };
    fake_t *s = fake_start("cairn");
    cairn_client_t *c = connect_fake(s, 5000);
    FAKE_SET(s, delay_ms, 10000);
    cairn_future_t *fs[N];
    for (int i = 0; i < N; i++) fs[i] = cairn_put_async(c, "k", 1, "v", 1, NULL);
    for (int i = 0; i < 400 && FAKE_STAT(s, requests) < N; i++) sleep_ms(5);
    assert_int_equal(FAKE_STAT(s, requests), N);
    assert_false(cairn_future_ready(fs[0]));
    FAKE_SET(s, drop_now, true);
    for (int i = 0; i < N; i++) {
        assert_int_equal(cairn_future_wait(fs[i], NULL), CAIRN_CONNECTION);
        assert_non_null(strstr(cairn_future_error(fs[i]), "closed by the node"));
        cairn_future_free(fs[i]);
    }
    /* never resent: the node saw each once */
    assert_int_equal(FAKE_STAT(s, requests), N);
    /* the next request reconnects (the only contact point is back) */
    FAKE_SET(s, delay_ms, 0);
    assert_int_equal(cairn_put(c, "k", 1, "w", 1, NULL), CAIRN_OK);
    assert_int_equal(FAKE_STAT(s, accepted), 2);
    cairn_close(c);
    fake_stop(s);
}

static void test_client_sends_max_hlc_seen_as_causality(void **state)
{
    (void)state;
    fake_t *s = fake_start("cairn");
    FAKE_SET(s, hlc, 777);
    cairn_client_t *c = connect_fake(s, 2000);
    assert_int_equal(cairn_put(c, "k", 1, "v", 1, NULL), CAIRN_OK); /* reply hlc 778 */
    assert_int_equal(fake_causality(s), 777); /* from HELLO_OK */
    FAKE_SET(s, hlc, 1000);
    assert_int_equal(cairn_put(c, "k", 1, "v", 1, NULL), CAIRN_OK); /* reply hlc 1001 */
    assert_int_equal(fake_causality(s), 778);
    FAKE_SET(s, hlc, 50); /* a node behind: the token must not go back */
    cairn_value_t v;
    assert_int_equal(cairn_get(c, "k", 1, NULL, &v), CAIRN_OK);
    cairn_value_free(&v);
    assert_int_equal(fake_causality(s), 1001);
    assert_int_equal(cairn_delete(c, "k", 1, NULL), CAIRN_OK);
    assert_int_equal(fake_causality(s), 1001);
    cairn_close(c);
    fake_stop(s);
}

static void test_client_oversized_frame_from_node_fails_cleanly(void **state)
{
    (void)state;
    fake_t *s = fake_start("cairn");
    cairn_client_t *c = connect_fake(s, 2000);
    FAKE_SET(s, oversized, true);
    cairn_value_t v;
    assert_int_equal(cairn_get(c, "k", 1, NULL, &v), CAIRN_PROTOCOL);
    assert_non_null(strstr(cairn_last_error(c), "above the limit"));
    /* a fresh connection works */
    assert_int_equal(cairn_put(c, "k", 1, "v", 1, NULL), CAIRN_OK);
    assert_int_equal(FAKE_STAT(s, accepted), 2);
    cairn_close(c);
    fake_stop(s);
}

static void test_client_draining_node_answers_closed_then_next_node(void **state)
{
    (void)state;
    fake_t *a = fake_start("cairn"), *b = fake_start("cairn");
    char pts[96];
    snprintf(pts, sizeof pts, "127.0.0.1:%u,127.0.0.1:%u", a->port, b->port);
    cairn_client_t *c = connect_to(pts, 2000);
    FAKE_SET(a, closed, true);
    assert_int_equal(cairn_put(c, "k", 1, "v", 1, NULL), CAIRN_CLOSED);
    assert_string_equal(cairn_last_error(c), "node is draining");
    assert_int_equal(cairn_put(c, "k", 1, "v", 1, NULL), CAIRN_OK);
    assert_int_equal(FAKE_STAT(b, requests), 1);
    cairn_close(c);
    fake_stop(a);
    fake_stop(b);
}

typedef struct info_seen {
    int n;
    bool saw_requests;
} info_seen_t;

static void on_info(const char *name, const char *value, void *arg)
{
    info_seen_t *seen = arg;
    seen->n++;
    if (!strcmp(name, "requests") && !strcmp(value, "2")) seen->saw_requests = true;
}

static void test_client_info_lists_node_items(void **state)
{
    (void)state;
    fake_t *s = fake_start("cairn");
    cairn_client_t *c = connect_fake(s, 2000);
    assert_int_equal(cairn_put(c, "a", 1, "1", 1, NULL), CAIRN_OK);
    assert_int_equal(cairn_put(c, "b", 1, "1", 1, NULL), CAIRN_OK);
    info_seen_t seen = {0, false};
    assert_int_equal(cairn_info(c, on_info, &seen), CAIRN_OK);
    assert_int_equal(seen.n, 4);
    assert_true(seen.saw_requests);
    cairn_close(c);
    fake_stop(s);
}

/* PING goes out as the null request (type 23) and counts as no data
 * request; many in flight complete by id. */
static void test_client_ping_is_the_null_request(void **state)
{
    (void)state;
    fake_t *s = fake_start("cairn");
    cairn_client_t *c = connect_fake(s, 2000);
    assert_int_equal(cairn_ping(c), CAIRN_OK);
    cairn_future_t *f[16];
    for (int i = 0; i < 16; i++) f[i] = cairn_ping_async(c);
    for (int i = 0; i < 16; i++) {
        assert_int_equal(cairn_future_wait(f[i], NULL), CAIRN_OK);
        cairn_future_free(f[i]);
    }
    assert_int_equal(FAKE_STAT(s, pings), 17);
    assert_int_equal(FAKE_STAT(s, requests), 0);
    cairn_close(c);
    fake_stop(s);
}

static void test_client_ring_lists_nodes_tokens_and_replicas(void **state)
{
    (void)state;
    fake_t *s = fake_start("cairn");
    FAKE_SET(s, hlc, 5000);
    cairn_client_t *c = connect_fake(s, 2000);
    cairn_ring_t r;

    /* without a key */
    assert_int_equal(cairn_ring(c, NULL, 0, &r), CAIRN_OK);
    assert_int_equal(FAKE_STAT(s, rings), 1);
    assert_int_equal(FAKE_STAT(s, last_ring_has_key), 0);
    assert_int_equal(r.replication_factor, 3);
    assert_int_equal(r.self, 2);
    assert_int_equal(r.key_token, 0);
    assert_int_equal(r.nreplicas, 0);
    assert_null(r.replicas);
    assert_int_equal(r.nnodes, 5);
    const cairn_ring_node_t *n3 = &r.nodes[0], *n1 = &r.nodes[1], *n2 = &r.nodes[2];
    const cairn_ring_node_t *n4 = &r.nodes[3], *n5 = &r.nodes[4];
    assert_string_equal(n3->name, "n3");
    assert_string_equal(n3->node_id, "id-3");
    assert_string_equal(n3->host, "10.0.0.3");
    assert_string_equal(n3->rack, "r1");
    assert_int_equal(n3->client_port, 7070);
    assert_int_equal(n3->admin_port, 7072);
    assert_true(n3->up);
    assert_int_equal(n3->load_bytes, 1536);
    assert_true(n3->ownership == 0.333334);
    assert_true(n3->effective_ownership == 1.0);
    assert_int_equal(n3->ntokens, 2);
    assert_int_equal(n3->tokens[0], 100); /* sorted */
    assert_int_equal(n3->tokens[1], 900);
    assert_string_equal(n1->host, "::1");
    assert_string_equal(n1->rack, ""); /* none: an empty string, not NULL */
    assert_false(n1->up);
    assert_true(n1->tokens[1] == UINT64_MAX);
    assert_true(n1->effective_ownership == 0.666667);
    assert_true(n2->load_bytes == 5ULL << 30);
    assert_true(n2->effective_ownership == 1.333333);
    /* gossip's view: status, liveness, phi, generation, ring membership */
    assert_int_equal(n3->status, CAIRN_NODE_NORMAL);
    assert_int_equal(n3->liveness, CAIRN_SUSPECT);
    assert_true(n3->phi == 3.25);
    assert_true(n3->generation == 1700000000003ULL);
    assert_true(n3->in_ring);
    assert_int_equal(n1->liveness, CAIRN_DEAD);
    assert_true(n1->phi == 12345.678);
    assert_int_equal(n2->liveness, CAIRN_ALIVE);
    assert_true(n2->phi == 0);
    assert_string_equal(n4->name, "n4");
    assert_int_equal(n4->status, CAIRN_NODE_JOINING);
    assert_true(n4->up);
    assert_false(n4->in_ring);
    assert_int_equal(n4->ntokens, 0);
    assert_null(n4->tokens);
    assert_int_equal(n5->status, CAIRN_NODE_LEFT);
    assert_false(n5->in_ring);
    assert_true(n5->generation == 1700000000005ULL);
    cairn_ring_free(&r);
    assert_null(r.nodes);
    assert_int_equal(r.nnodes, 0);
    cairn_ring_free(&r); /* harmless twice */

    /* the reply's clock counts for causality */
    assert_int_equal(cairn_put(c, "k", 1, "v", 1, NULL), CAIRN_OK);
    assert_true(fake_causality(s) >= 5000);

    /* with a binary key, and with the empty key */
    assert_int_equal(cairn_ring(c, "ab\0c", 4, &r), CAIRN_OK);
    assert_int_equal(FAKE_STAT(s, last_ring_has_key), 1);
    assert_int_equal(FAKE_STAT(s, last_ring_klen), 4);
    assert_int_equal(r.key_token, 4246);
    assert_int_equal(r.nreplicas, 3);
    assert_string_equal(r.nodes[r.replicas[0]].name, "n1");
    assert_string_equal(r.nodes[r.replicas[1]].name, "n2");
    assert_string_equal(r.nodes[r.replicas[2]].name, "n3");
    cairn_ring_free(&r);
    assert_int_equal(cairn_ring(c, "", 0, &r), CAIRN_OK);
    assert_int_equal(FAKE_STAT(s, last_ring_has_key), 1);
    assert_int_equal(FAKE_STAT(s, last_ring_klen), 0);
    assert_int_equal(r.key_token, 4242);
    cairn_ring_free(&r);

    cairn_close(c);
    fake_stop(s);
}

/* A node older than gossip sends no status or liveness: the library
 * reports what its answer meant. */
static void test_client_ring_from_an_old_node_has_defaults(void **state)
{
    (void)state;
    fake_t *s = fake_start("cairn");
    FAKE_SET(s, ring_mode, 5);
    cairn_client_t *c = connect_fake(s, 2000);
    cairn_ring_t r;
    assert_int_equal(cairn_ring(c, NULL, 0, &r), CAIRN_OK);
    assert_int_equal(r.nnodes, 2);
    for (size_t i = 0; i < 2; i++) {
        const cairn_ring_node_t *n = &r.nodes[i];
        assert_int_equal(n->up, i == 0);
        assert_int_equal(n->status, CAIRN_NODE_NORMAL);
        assert_int_equal(n->liveness, i == 0 ? CAIRN_ALIVE : CAIRN_DEAD);
        assert_true(n->phi == 0);
        assert_true(n->generation == 0);
        assert_true(n->in_ring);
        assert_int_equal(n->ntokens, 1);
    }
    cairn_ring_free(&r);
    cairn_close(c);
    fake_stop(s);
}

static void test_client_node_status_and_liveness_names_are_stable(void **state)
{
    (void)state;
    assert_string_equal(cairn_node_status_name(CAIRN_NODE_JOINING), "joining");
    assert_string_equal(cairn_node_status_name(CAIRN_NODE_NORMAL), "normal");
    assert_string_equal(cairn_node_status_name(CAIRN_NODE_LEAVING), "leaving");
    assert_string_equal(cairn_node_status_name(CAIRN_NODE_LEFT), "left");
    assert_string_equal(cairn_node_status_name((cairn_node_status_t)4), "?");
    assert_string_equal(cairn_liveness_name(CAIRN_ALIVE), "alive");
    assert_string_equal(cairn_liveness_name(CAIRN_SUSPECT), "suspect");
    assert_string_equal(cairn_liveness_name(CAIRN_DEAD), "dead");
    assert_string_equal(cairn_liveness_name((cairn_liveness_t)3), "?");
    /* the public values are the wire's */
    assert_int_equal(CAIRN_NODE_JOINING, PROTO_NODE_JOINING);
    assert_int_equal(CAIRN_NODE_LEFT, PROTO_NODE_LEFT);
    assert_int_equal(CAIRN_SUSPECT, PROTO_LIVE_SUSPECT);
    assert_int_equal(CAIRN_DEAD, PROTO_LIVE_DEAD);
}

static void test_client_ring_bad_or_missing_replies_fail_cleanly(void **state)
{
    (void)state;
    fake_t *s = fake_start("cairn");
    cairn_client_t *c = connect_fake(s, 2000);
    cairn_ring_t r;

    /* a malformed RING_REPLY fails that request only */
    FAKE_SET(s, ring_mode, 1);
    memset(&r, 0x5a, sizeof r);
    assert_int_equal(cairn_ring(c, NULL, 0, &r), CAIRN_PROTOCOL);
    assert_null(r.nodes);
    assert_int_equal(r.nnodes, 0);
    assert_non_null(strstr(cairn_last_error(c), "malformed RING_REPLY"));
    cairn_ring_free(&r);
    assert_int_equal(cairn_put(c, "k", 1, "v", 1, NULL), CAIRN_OK);
    assert_int_equal(FAKE_STAT(s, accepted), 1); /* the same connection */

    /* a node that does not know RING */
    FAKE_SET(s, ring_mode, 2);
    assert_int_equal(cairn_ring(c, "k", 1, &r), CAIRN_PROTOCOL);
    assert_string_equal(cairn_last_error(c), "unknown message type 21");
    assert_null(r.nodes);

    /* success must carry a ring */
    FAKE_SET(s, ring_mode, 3);
    assert_int_equal(cairn_ring(c, NULL, 0, &r), CAIRN_PROTOCOL);
    assert_non_null(strstr(cairn_last_error(c), "no ring"));
    assert_null(r.nodes);

    /* a NULL key with a length is refused locally */
    FAKE_SET(s, ring_mode, 0);
    int before = (int)FAKE_STAT(s, rings);
    assert_int_equal(cairn_ring(c, NULL, 3, &r), CAIRN_INVALID);
    assert_int_equal(FAKE_STAT(s, rings), before);
    assert_int_equal(cairn_ring(c, NULL, 0, &r), CAIRN_OK);
    cairn_ring_free(&r);
    assert_int_equal(FAKE_STAT(s, accepted), 1);

    cairn_close(c);
    fake_stop(s);
}

static void test_client_close_completes_outstanding_futures(void **state)
{
    (void)state;
    fake_t *s = fake_start("cairn");
    cairn_client_t *c = connect_fake(s, 5000);
    FAKE_SET(s, delay_ms, 10000);
    cairn_future_t *f1 = cairn_put_async(c, "k", 1, "v", 1, NULL);
    cairn_future_t *f2 = cairn_get_async(c, "k", 1, NULL);
    cairn_close(c);
    assert_true(cairn_future_ready(f1));
    assert_int_equal(cairn_future_wait(f1, NULL), CAIRN_CONNECTION);
    assert_string_equal(cairn_future_error(f1), "client closed");
    assert_int_equal(cairn_future_wait(f2, NULL), CAIRN_CONNECTION);
    cairn_future_free(f1);
    cairn_future_free(f2);
    fake_stop(s);
}

static void test_client_rejects_bad_requests_locally(void **state)
{
    (void)state;
    fake_t *s = fake_start("cairn");
    cairn_client_t *c = connect_fake(s, 2000);
    cairn_request_opts_t ro = {.consistency = (cairn_consistency_t)7};
    assert_int_equal(cairn_put(c, "k", 1, "v", 1, &ro), CAIRN_INVALID);
    assert_int_equal(cairn_put(c, NULL, 3, "v", 1, NULL), CAIRN_INVALID);
    size_t big = KV_FRAME_DEFAULT_MAX + 1;
    uint8_t *huge = kv_calloc(1, big);
    assert_int_equal(cairn_put(c, "k", 1, huge, big, NULL), CAIRN_INVALID);
    assert_non_null(strstr(cairn_last_error(c), "too large"));
    kv_free(huge);
    assert_int_equal(FAKE_STAT(s, requests), 0);
    cairn_close(c);
    fake_stop(s);
}

typedef struct worker {
    cairn_client_t *c;
    int id;
    int failures;
} worker_t;

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    char key[32], val[32];
    for (int i = 0; i < 200; i++) {
        int kl = snprintf(key, sizeof key, "w%d-%d", w->id, i);
        int vl = snprintf(val, sizeof val, "%d", i * w->id);
        if (cairn_put(w->c, key, (size_t)kl, val, (size_t)vl, NULL) != CAIRN_OK) w->failures++;
        cairn_value_t v;
        if (cairn_get(w->c, key, (size_t)kl, NULL, &v) != CAIRN_OK || v.len != (size_t)vl ||
            memcmp(v.data, val, (size_t)vl) != 0)
            w->failures++;
        cairn_value_free(&v);
    }
    return NULL;
}

static void test_client_is_safe_from_many_threads(void **state)
{
    (void)state;
    enum { T = 4 };
    fake_t *s = fake_start("cairn");
    cairn_client_t *c = connect_fake(s, 5000);
    pthread_t th[T];
    worker_t w[T];
    for (int i = 0; i < T; i++) {
        w[i] = (worker_t){c, i + 1, 0};
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(w[i].failures, 0);
    }
    cairn_close(c);
    fake_stop(s);
}


/* ---- the command-line tool, end to end against the fake node ---------- */

/* Path of the `cairn` binary built beside this test (build/client/cairn). */
/* The cairn binary built with this test (tests/CMakeLists.txt passes its
 * path and builds it first). */
static bool cli_path(char *out, size_t n)
{
    snprintf(out, n, "%s", CAIRN_CLI_PATH);
    return access(out, X_OK) == 0;
}


static void test_cli_put_get_del_info_against_a_node(void **state)
{
    (void)state;
    char path[PATH_MAX + 32];
    if (!cli_path(path, sizeof path)) fail_msg("the cairn binary is missing: %s", path);
    fake_t *s = fake_start("cairn");
    char host[64];
    snprintf(host, sizeof host, "127.0.0.1:%u", s->port);
    kv_buf_t out = {0}, err = {0};
    uint8_t val[1000];
    for (size_t i = 0; i < sizeof val; i++) val[i] = (uint8_t)(i * 31);

    const char *put[] = {"-H", host, "-c", "one", "put", "blob", "-", NULL};
    assert_int_equal(run_cli(path, put, val, sizeof val, &out, &err), 0);
    assert_int_equal(FAKE_STAT(s, last_cl), CL_ONE);
    const char *get[] = {"-H", host, "get", "blob", NULL};
    assert_int_equal(run_cli(path, get, NULL, 0, &out, &err), 0);
    assert_int_equal(out.len, sizeof val); /* raw bytes, no newline: not a tty */
    assert_memory_equal(out.data, val, sizeof val);

    kv_buf_clear(&out);
    const char *put2[] = {"-H", host, "put", "k", "-starts-with-dash", NULL};
    assert_int_equal(run_cli(path, put2, NULL, 0, &out, &err), 0);
    const char *get2[] = {"-H", host, "-t", "500", "get", "k", NULL};
    assert_int_equal(run_cli(path, get2, NULL, 0, &out, &err), 0);
    assert_int_equal(out.len, 17);
    assert_memory_equal(out.data, "-starts-with-dash", 17);

    kv_buf_clear(&out);
    const char *del[] = {"-H", host, "del", "k", NULL};
    assert_int_equal(run_cli(path, del, NULL, 0, &out, &err), 0);
    kv_buf_clear(&err);
    assert_int_equal(run_cli(path, get2, NULL, 0, &out, &err), 1);
    assert_int_equal(out.len, 0);
    kv_buf_append_u8(&err, 0);
    assert_non_null(strstr((const char *)err.data, "cairn: NotFound: k"));

    const char *info[] = {"-H", host, "info", NULL};
    assert_int_equal(run_cli(path, info, NULL, 0, &out, &err), 0);
    kv_buf_append_u8(&out, 0);
    assert_non_null(strstr((const char *)out.data, "node_name: fake\n"));
    assert_non_null(strstr((const char *)out.data, "requests:  6\n"));

    kv_buf_clear(&err);
    const char *wrong[] = {"-H", host, "--cluster", "other", "status", NULL};
    assert_int_equal(run_cli(path, wrong, NULL, 0, &out, &err), 2);
    kv_buf_append_u8(&err, 0);
    assert_non_null(strstr((const char *)err.data, "cairn: Invalid: "));

    kv_buf_deinit(&out);
    kv_buf_deinit(&err);
    fake_stop(s);
}

/* Run the tool against the fake node; stdout as a string in out. */
static int cli_view(const char *path, fake_t *s, const char *cmd, const char *arg,
                    kv_buf_t *out, kv_buf_t *err)
{
    char host[64];
    snprintf(host, sizeof host, "127.0.0.1:%u", s->port);
    const char *args[] = {"-H", host, cmd, arg, NULL};
    int rc = run_cli(path, args, NULL, 0, out, err);
    kv_buf_append_u8(out, 0);
    kv_buf_append_u8(err, 0);
    return rc;
}

static void test_cli_ring_status_endpoints_against_a_node(void **state)
{
    (void)state;
    char path[PATH_MAX + 32];
    if (!cli_path(path, sizeof path)) fail_msg("the cairn binary is missing: %s", path);
    fake_t *s = fake_start("cairn");
    kv_buf_t out = {0}, err = {0};

    assert_int_equal(cli_view(path, s, "ring", NULL, &out, &err), 0);
    assert_string_equal((const char *)out.data,
        "Ring: 3 nodes, replication factor 3, answered by n2 (marked *)\n"
        "Balance: most/least ownership 1.000\n"
        "\n"
        "Name  Address        Rack  State  Load     Owns    Owns(effective)  Tokens\n"
        "n1    [::1]:9042     -     DOWN   0B       33.33%  66.67%           2\n"
        "n2    10.0.0.2:7070  r2    UP     5.00GiB  33.33%  133.33%          1       *\n"
        "n3    10.0.0.3:7070  r1    UP     1.50KiB  33.33%  100.00%          2\n"
        "\n"
        "Not in the ring: n4 (joining), n5 (left)\n"
        "\n"
        "Token                 Node\n"
        "50                    n2\n"
        "100                   n3\n"
        "200                   n1\n"
        "900                   n3\n"
        "18446744073709551615  n1\n");
    assert_int_equal(FAKE_STAT(s, last_ring_has_key), 0);

    assert_int_equal(cli_view(path, s, "status", NULL, &out, &err), 0);
    assert_string_equal((const char *)out.data,
        "Cluster: cairn, 4 nodes, replication factor 3, answered by n2\n"
        "Status=Up/Down\n"
        "|/ State=Normal/Leaving/Joining\n"
        "--  Name  Address        Load     Tokens  Owns(effective)  Host-ID  Rack  Liveness\n"
        "DN  n1    [::1]:9042     0B       2       66.67%           id-1     -     dead,phi=12345.7\n"
        "UN  n2    10.0.0.2:7070  5.00GiB  1       133.33%          id-2     r2    -\n"
        "UN  n3    10.0.0.3:7070  1.50KiB  2       100.00%          id-3     r1    suspect,phi=3.2\n"
        "UJ  n4    10.0.0.4:7070  0B       0       ?                id-4     r1    -\n"
        "\n"
        "Left the cluster (not listed): n5\n");

    assert_int_equal(cli_view(path, s, "endpoints", "user:1", &out, &err), 0);
    assert_string_equal((const char *)out.data,
        "Token: 4248\n"
        "\n"
        "Name  Address        Rack  State\n"
        "n1    [::1]:9042     -     DOWN\n"
        "n2    10.0.0.2:7070  r2    UP\n"
        "n3    10.0.0.3:7070  r1    UP\n");
    assert_int_equal(FAKE_STAT(s, last_ring_has_key), 1);
    assert_string_equal(s->last_ring_key, "user:1"); /* the fake is idle now */

    /* asked through the joining node: it is not on the ring it prints */
    FAKE_SET(s, ring_mode, 6);
    assert_int_equal(cli_view(path, s, "ring", NULL, &out, &err), 0);
    assert_non_null(strstr((const char *)out.data,
                           "Ring: 3 nodes, replication factor 3, answered by n4 "
                           "(not in the ring)\n"));
    assert_null(strstr((const char *)out.data, "*"));
    assert_int_equal(cli_view(path, s, "status", NULL, &out, &err), 0);
    assert_non_null(strstr((const char *)out.data, "answered by n4\n"));

    /* an old node's answer (no gossip fields) reads as before */
    FAKE_SET(s, ring_mode, 5);
    assert_int_equal(cli_view(path, s, "status", NULL, &out, &err), 0);
    assert_string_equal((const char *)out.data,
        "Cluster: cairn, 2 nodes, replication factor 2, answered by n1\n"
        "Status=Up/Down\n"
        "|/ State=Normal/Leaving/Joining\n"
        "--  Name  Address         Load     Tokens  Owns(effective)  Host-ID  Rack   Liveness\n"
        "UN  n1    127.0.0.1:7070  2.00KiB  1       100.00%          id-1     rack1  -\n"
        "DN  n2    127.0.0.1:7080  2.00KiB  1       100.00%          id-2     rack1  dead\n");
    assert_int_equal(cli_view(path, s, "ring", NULL, &out, &err), 0);
    assert_string_equal((const char *)out.data,
        "Ring: 2 nodes, replication factor 2, answered by n1 (marked *)\n"
        "Balance: most/least ownership 1.000\n"
        "\n"
        "Name  Address         Rack   State  Load     Owns    Owns(effective)  Tokens\n"
        "n1    127.0.0.1:7070  rack1  UP     2.00KiB  50.00%  100.00%          1       *\n"
        "n2    127.0.0.1:7080  rack1  DOWN   2.00KiB  50.00%  100.00%          1\n"
        "\n"
        "Token                 Node\n"
        "10                    n1\n"
        "1000                  n2\n");
    FAKE_SET(s, ring_mode, 0);

    /* wrong arguments, and a node that cannot answer: exit 2 */
    assert_int_equal(cli_view(path, s, "endpoints", NULL, &out, &err), 2);
    assert_non_null(strstr((const char *)err.data, "wrong number of arguments"));
    assert_int_equal(cli_view(path, s, "ring", "extra", &out, &err), 2);
    FAKE_SET(s, ring_mode, 4);
    assert_int_equal(cli_view(path, s, "endpoints", "k", &out, &err), 2);
    assert_string_equal((const char *)out.data, "");
    assert_string_equal((const char *)err.data,
                        "cairn: Unavailable: no replicas for 'k': the node's ring is empty\n");
    assert_int_equal(cli_view(path, s, "ring", NULL, &out, &err), 0);
    assert_string_equal((const char *)out.data,
        "Ring: 0 nodes, replication factor 3\n"
        "\n"
        "Name  Address  Rack  State  Load  Owns  Owns(effective)  Tokens\n"
        "\n"
        "Token                 Node\n");
    FAKE_SET(s, ring_mode, 2);
    assert_int_equal(cli_view(path, s, "status", NULL, &out, &err), 2);
    assert_string_equal((const char *)out.data, "");
    assert_string_equal((const char *)err.data,
                        "cairn: ProtocolError: unknown message type 21\n");

    kv_buf_deinit(&out);
    kv_buf_deinit(&err);
    fake_stop(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        kv_unit_test(test_client_status_names_are_stable),
        kv_unit_test(test_client_put_get_delete_round_trip),
        kv_unit_test(test_client_get_of_missing_key_is_not_found),
        kv_unit_test(test_client_keys_and_values_are_binary_safe),
        kv_unit_test(test_client_pipelines_a_thousand_async_requests),
        kv_unit_test(test_client_matches_out_of_order_replies_by_id),
        kv_unit_test(test_client_timeout_then_late_reply_is_ignored),
        kv_unit_test(test_client_wrong_cluster_fails_connect_with_message),
        kv_unit_test(test_client_connect_fails_when_no_node_listens),
        kv_unit_test(test_client_fails_over_when_first_contact_point_refuses),
        kv_unit_test(test_client_fails_over_when_node_drops_and_keeps_causality),
        kv_unit_test(test_client_inflight_requests_fail_when_connection_drops),
        kv_unit_test(test_client_sends_max_hlc_seen_as_causality),
        kv_unit_test(test_client_oversized_frame_from_node_fails_cleanly),
        kv_unit_test(test_client_draining_node_answers_closed_then_next_node),
        kv_unit_test(test_client_info_lists_node_items),
        kv_unit_test(test_client_ping_is_the_null_request),
        kv_unit_test(test_client_ring_lists_nodes_tokens_and_replicas),
        kv_unit_test(test_client_ring_from_an_old_node_has_defaults),
        kv_unit_test(test_client_node_status_and_liveness_names_are_stable),
        kv_unit_test(test_client_ring_bad_or_missing_replies_fail_cleanly),
        kv_unit_test(test_client_close_completes_outstanding_futures),
        kv_unit_test(test_client_rejects_bad_requests_locally),
        kv_unit_test(test_client_is_safe_from_many_threads),
        kv_unit_test(test_cli_put_get_del_info_against_a_node),
        kv_unit_test(test_cli_ring_status_endpoints_against_a_node),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
