/* test_peer_port.c -- hostile and half-right input on a real cairnd's peer
 * port, from raw TCP sockets speaking (or failing to speak) peer_proto.h:
 *
 *   - bytes that are not frames, and lengths above max_frame_bytes: the
 *     node closes the connection without answering;
 *   - valid frames other than PEER_HELLO first: PEER_REFUSE (KV_PROTO), the
 *     connection closed, and nothing the frames asked for done;
 *   - a HELLO with one field wrong (cluster name, node name, protocol
 *     version, ring digest, a clock an hour ahead): PEER_REFUSE with the
 *     status peer_proto.h gives for it, each counted under its reason in
 *     /metrics;
 *   - a correct HELLO as a member ("ghost", listed in initial_cluster but
 *     not running): HELLO_OK, then MUTATION / READ / PING answered as a
 *     replica, an older cell refused SUPERSEDED, and the cell readable
 *     through the client port.
 *
 * After each batch the node must still be ready and serve clients. Waits
 * are bounded polls (CLOSE_WAIT_MS for a close, IO_TIMEOUT_MS for a frame).
 */
#include "node_test_util.h"

#include "cairn.h"
#include "coding.h"
#include "hlc.h"
#include "peer_proto.h"

/* How long the node may take to close a connection it refuses. */
#define CLOSE_WAIT_MS 5000
/* Small limits so a frame at the limit is cheap to send. */
#define MAX_FRAME (2u << 20)

/* ---- a raw peer connection ---------------------------------------------- */

typedef struct pconn {
    int fd;
    kv_frame_decoder_t *dec;
    kv_frame_t f;
    kv_buf_t out;
} pconn_t;

static void pc_open(pconn_t *c, uint16_t port)
{
    memset(c, 0, sizeof *c);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(c->fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(c->fd, (struct sockaddr *)&a, sizeof a), 0);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->dec = kv_frame_decoder_create(0);
    kv_frame_init(&c->f);
}

static void pc_close(pconn_t *c)
{
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    kv_frame_release(&c->f);
    kv_frame_decoder_destroy(c->dec);
    c->dec = NULL;
    kv_buf_deinit(&c->out);
}

/* Write all of [p, p+n); false if the node closed or reset the connection
 * (MSG_NOSIGNAL: no SIGPIPE for the test process). */
static bool send_bytes(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        b += w;
        n -= (size_t)w;
    }
    return true;
}

static void pc_flush(pconn_t *c)
{
    assert_true(send_bytes(c->fd, c->out.data, c->out.len));
    kv_buf_clear(&c->out);
}

/* The next frame into c->f within timeout_ms: KV_OK, KV_CLOSED (EOF or
 * reset), KV_TIMEOUT. */
static kv_status_t pc_next(pconn_t *c, int timeout_ms)
{
    uint8_t buf[65536];
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        kv_status_t rc = kv_frame_decoder_next(c->dec, &c->f);
        if (rc == KV_OK) return KV_OK;
        assert_int_equal(rc, KV_AGAIN); /* the node sends well-formed frames */
        uint64_t now = now_ms();
        if (now >= deadline) return KV_TIMEOUT;
        struct pollfd pfd = {c->fd, POLLIN, 0};
        int pr = poll(&pfd, 1, (int)(deadline - now));
        if (pr < 0 && errno == EINTR) continue;
        if (pr <= 0) return KV_TIMEOUT;
        ssize_t n = read(c->fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return KV_CLOSED;
        assert_int_equal(kv_frame_decoder_feed(c->dec, buf, (size_t)n), KV_OK);
    }
}

/* The node must close the connection without sending anything more. */
static void pc_expect_closed(pconn_t *c, const char *what)
{
    kv_status_t rc = pc_next(c, CLOSE_WAIT_MS);
    if (rc == KV_OK)
        fail_msg("%s: the node sent a frame of type %u instead of closing",
                 what, c->f.type);
    if (rc != KV_CLOSED)
        fail_msg("%s: the connection was still open after %d ms", what,
                 CLOSE_WAIT_MS);
}

/* The next frame must be a PEER_REFUSE with status ST and a message holding
 * NEEDLE; then the node must close. */
static void pc_expect_refuse(pconn_t *c, kv_status_t st, const char *needle,
                             const char *what)
{
    kv_status_t rc = pc_next(c, IO_TIMEOUT_MS);
    if (rc != KV_OK) fail_msg("%s: no answer (%s)", what, kv_status_str(rc));
    if (c->f.type != PEER_REFUSE)
        fail_msg("%s: answered type %u, want PEER_REFUSE", what, c->f.type);
    peer_head_t head;
    peer_refuse_t r;
    assert_int_equal(peer_decode_refuse(&c->f, &head, &r), KV_OK);
    assert_int_equal(head.type, PEER_REFUSE);
    assert_int_equal(head.msg_id, 0);
    assert_true(head.hlc > 0);
    char msg[512];
    snprintf(msg, sizeof msg, "%.*s", (int)KV_MIN(r.message.len, 500),
             (const char *)r.message.data);
    if (r.status != st)
        fail_msg("%s: refused with %s (%s), want %s", what,
                 kv_status_str(r.status), msg, kv_status_str(st));
    if (!strstr(msg, needle))
        fail_msg("%s: refusal '%s' lacks '%s'", what, msg, needle);
    pc_expect_closed(c, what);
}

/* Send raw bytes on a new connection; the node must close it unanswered. */
static void expect_bytes_closed(uint16_t port, const void *p, size_t n,
                                const char *what)
{
    pconn_t c;
    pc_open(&c, port);
    /* the node may close (even reset) before it has read everything */
    (void)send_bytes(c.fd, p, n);
    pc_expect_closed(&c, what);
    pc_close(&c);
}

/* ---- frames ------------------------------------------------------------- */

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t hlc_now_wall(void) { return hlc_make(wall_ms(), 0); }

typedef struct hello_args {
    uint32_t version;
    const char *cluster;
    const char *name;
    uint64_t digest;
    uint64_t hlc;
} hello_args_t;

static void queue_hello(pconn_t *c, const hello_args_t *a)
{
    peer_hello_t h = {
        .version = a->version,
        .cluster = kv_slice_str(a->cluster),
        .node_name = kv_slice_str(a->name),
        .node_id = kv_slice_str("0123456789abcdef0123456789abcdef"),
        .ring_digest = a->digest,
        .client_port = 1,
        .admin_port = 2,
    };
    assert_int_equal(peer_encode_hello(&c->out, PEER_HELLO, a->hlc, &h, 0), KV_OK);
}

static void queue_mutation(pconn_t *c, uint64_t msg_id, const char *key,
                           uint64_t ts, const char *value)
{
    peer_mutation_t m = {
        .key = kv_slice_str(key),
        .cell = {.ts = ts, .tombstone = false, .expire_ms = 0,
                 .value = kv_slice_str(value)},
    };
    assert_int_equal(peer_encode_mutation(&c->out, msg_id, hlc_now_wall(), &m, 0),
                     KV_OK);
}

/* A frame of type TYPE whose body is exactly BODY bytes: [type, 0, hlc,
 * bin padding]. */
static void queue_sized(kv_buf_t *out, uint32_t type, size_t body)
{
    size_t start = out->len;
    for (int pass = 0; pass < 2; pass++) {
        /* bin32 throughout (pad >= 65536), so the envelope is constant */
        size_t pad = pass == 0 ? 65536 : 65536 + body - (out->len - start - 4);
        out->len = start;
        uint8_t *zeros = kv_calloc(1, pad);
        kv_frame_writer_t w;
        kv_frame_begin(&w, out, type, 0, 2);
        msgpack_pack_uint64(&w.pk, hlc_now_wall());
        kv_pack_bytes(&w.pk, kv_slice(zeros, pad));
        assert_int_equal(kv_frame_end(&w, 0), KV_OK);
        kv_free(zeros);
    }
    assert_int_equal(out->len - start - 4, body);
}

/* ---- the node ----------------------------------------------------------- */

static double metric_value(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *line = text; line && *line;) {
        const char *nl = strchr(line, '\n');
        if (strncmp(line, series, n) == 0 && line[n] == ' ')
            return strtod(line + n + 1, NULL);
        line = nl ? nl + 1 : NULL;
    }
    return -1;
}

static double scrape(const node_proc_t *p, const char *series)
{
    kv_buf_t body = {0};
    assert_int_equal(http_get(p->admin_port, "/metrics", &body), 200);
    double v = metric_value((const char *)body.data, series);
    kv_buf_deinit(&body);
    return v;
}

static const char *const REASONS[] = {"cluster_name", "unknown_node", "version",
                                      "config", "clock_skew", "malformed",
                                      "handshake_timeout"};

/* cairn_peer_handshakes_refused_total must be WANT[i] for REASONS[i]; the
 * handshake timeouts (last reason) must be 0 unless a test says otherwise. */
static void expect_refusals(const node_proc_t *p, const int want[6])
{
    kv_buf_t body = {0};
    assert_int_equal(http_get(p->admin_port, "/metrics", &body), 200);
    for (int i = 0; i < 6; i++) {
        char series[96];
        snprintf(series, sizeof series,
                 "cairn_peer_handshakes_refused_total{reason=\"%s\"}",
                 REASONS[i]);
        double v = metric_value((const char *)body.data, series);
        if (v != want[i])
            fail_msg("%s is %g, want %d", series, v, want[i]);
    }
    kv_buf_deinit(&body);
}

static cairn_client_t *client_of(const node_proc_t *p)
{
    cairn_options_t o;
    cairn_options_init(&o);
    char hp[32];
    snprintf(hp, sizeof hp, "127.0.0.1:%u", p->client_port);
    o.contact_points = hp;
    o.cluster_name = "test";
    /* with "ghost" down only this node answers: ONE is what can succeed */
    o.consistency = CAIRN_ONE;
    cairn_client_t *c = NULL;
    cairn_status_t st = cairn_connect(&o, &c);
    if (st != CAIRN_OK)
        fail_msg("connect %s: %s: %s", hp, cairn_status_name(st),
                 cairn_connect_error());
    return c;
}

/* The node is alive, serving (ready, or "joining" when its other founder
 * is a ghost that never answers; not draining nor refused), and a put then
 * get of KEY through the client port works; returns the stored cell's
 * timestamp. */
static uint64_t expect_serving(node_proc_t *p, const char *key)
{
    int st;
    assert_int_equal(waitpid(p->pid, &st, WNOHANG), 0);
    kv_buf_t body = {0};
    int code = http_get(p->admin_port, "/ready", &body);
    if (code != 200 && !(code == 503 && strncmp((const char *)body.data, "joining", 7) == 0))
        fail_msg("/ready answers %d '%s'", code, (const char *)body.data);
    kv_buf_deinit(&body);
    cairn_client_t *c = client_of(p);
    cairn_status_t rc = cairn_put(c, key, strlen(key), "alive", 5, NULL);
    if (rc != CAIRN_OK)
        fail_msg("put %s: %s: %s", key, cairn_status_name(rc), cairn_last_error(c));
    cairn_value_t v;
    assert_int_equal(cairn_get(c, key, strlen(key), NULL, &v), CAIRN_OK);
    assert_int_equal(v.len, 5);
    assert_memory_equal(v.data, "alive", 5);
    uint64_t ts = v.timestamp;
    cairn_value_free(&v);
    cairn_close(c);
    return ts;
}

static void expect_notfound(node_proc_t *p, const char *key)
{
    cairn_client_t *c = client_of(p);
    cairn_value_t v;
    cairn_status_t rc = cairn_get(c, key, strlen(key), NULL, &v);
    if (rc != CAIRN_NOT_FOUND)
        fail_msg("get %s: %s, want NotFound", key, cairn_status_name(rc));
    cairn_close(c);
}

/* The settings digest peers must share, from the node's "member ...
 * settings digest <16 hex>" start-up line; NODES_WANT is checked against
 * its "the ring has N node(s)". */
static uint64_t ring_digest_from_log(const node_proc_t *p, unsigned nodes_want)
{
    uint64_t t0 = now_ms();
    for (;;) {
        FILE *f = fopen(p->log, "r");
        char line[1024];
        while (f && fgets(line, sizeof line, f)) {
            const char *r = strstr(line, "the ring has ");
            const char *d = r ? strstr(r, " settings digest ") : NULL;
            if (!d) continue;
            fclose(f);
            unsigned nodes = 0;
            assert_int_equal(sscanf(r, "the ring has %u node(s)", &nodes), 1);
            assert_int_equal(nodes, nodes_want);
            d += strlen(" settings digest ");
            size_t hex = strspn(d, "0123456789abcdef");
            if (hex != 16) fail_msg("bad digest in log line: %s", line);
            return strtoull(d, NULL, 16);
        }
        if (f) fclose(f);
        if (now_ms() - t0 > 5000)
            fail_msg("no '... settings digest' line in %s", p->log);
        sleep_ms(10);
    }
}

/* A node "solo" that also lists "ghost" (at a port nobody listens on) in
 * initial_cluster, logging at info for the ring line. It serves, but never
 * hears from ghost, so /ready stays 503 "joining". */
static node_proc_t *start_with_ghost(const char *tag, uint64_t *digest)
{
    node_proc_t *p = proc_new(tag);
    uint16_t ghost;
    do ghost = free_port();
    while (ghost == p->client_port || ghost == p->peer_port ||
           ghost == p->admin_port);
    static char initial[128];
    snprintf(initial, sizeof initial, "solo=127.0.0.1:%u,ghost=127.0.0.1:%u",
             p->peer_port, ghost);
    const char *extra[] = {"--node-name", "solo", "--initial-cluster", initial,
                           "--log-level", "info", NULL};
    proc_spawn(p, extra);
    proc_wait_serving(p);
    *digest = ring_digest_from_log(p, 2);
    return p;
}

/* ---- not frames, and frames too large ----------------------------------- */

static void test_peer_port_closes_on_garbage_and_oversized_frames(void **state)
{
    (void)state;
    node_proc_t *p = proc_new("ppt-garbage");
    const char *extra[] = {"--node-name", "solo", "--max-frame-bytes", "2MiB",
                           "--max-value-bytes", "1MiB", "--peer-queue-bytes",
                           "2MiB", NULL};
    proc_start(p, extra);
    uint16_t port = p->peer_port;

    /* (a) bytes that are not a frame */
    static const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    expect_bytes_closed(port, http, sizeof http - 1, "HTTP request");
    static const uint8_t not_msgpack[] = {0, 0, 0, 4, 0xc1, 0xc1, 0xc1, 0xc1};
    expect_bytes_closed(port, not_msgpack, sizeof not_msgpack, "0xc1 body");
    static const uint8_t empty_body[] = {0, 0, 0, 0};
    expect_bytes_closed(port, empty_body, sizeof empty_body, "empty body");
    static const uint8_t not_array[] = {0, 0, 0, 3, 0xa2, 'h', 'i'};
    expect_bytes_closed(port, not_array, sizeof not_array, "a string body");
    static const uint8_t short_array[] = {0, 0, 0, 3, 0x91, 0xcc, 0xc8};
    expect_bytes_closed(port, short_array, sizeof short_array, "[200] alone");
    static const uint8_t two_objects[] = {0, 0, 0, 6, 0x92, 0xcc, 0xc8, 0x00,
                                          0x90, 0x90};
    expect_bytes_closed(port, two_objects, sizeof two_objects,
                        "body with trailing bytes");
    /* a msgpack header claiming more elements than the body holds */
    static const uint8_t lying_count[] = {0, 0, 0, 5, 0xdd, 0xff, 0xff, 0xff,
                                          0xff};
    expect_bytes_closed(port, lying_count, sizeof lying_count,
                        "array count past the body");
    uint8_t noise[4096];
    uint64_t x = 0x9e3779b97f4a7c15u;
    for (size_t i = 0; i < sizeof noise; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        noise[i] = (uint8_t)x;
    }
    noise[0] = 0x80; /* whatever follows, the length is above the limit */
    expect_bytes_closed(port, noise, sizeof noise, "random bytes");

    /* the node is unharmed */
    expect_serving(p, "after-garbage");

    /* (b) a length above max_frame_bytes is refused from the header alone,
     * before any body (the first two are under the codec's default 32 MiB
     * limit: the node's own setting is what refuses them) */
    const uint32_t lens[] = {MAX_FRAME + 1, 16u << 20, 0x7fffffffu, 0xffffffffu};
    for (size_t i = 0; i < KV_ARRAY_LEN(lens); i++) {
        uint8_t hdr[4 + 16] = {0};
        kv_put_be32(hdr, lens[i]);
        char what[64];
        snprintf(what, sizeof what, "length %u", lens[i]);
        expect_bytes_closed(port, hdr, sizeof hdr, what);
    }
    /* the limit is inclusive: a whole frame of exactly max_frame_bytes is
     * read and answered (refused: it is not a HELLO), one byte more is not */
    kv_buf_t big = {0};
    queue_sized(&big, PEER_PING, MAX_FRAME);
    pconn_t c;
    pc_open(&c, port);
    assert_true(send_bytes(c.fd, big.data, big.len));
    pc_expect_refuse(&c, KV_PROTO, "expected PEER_HELLO first",
                     "a frame of max_frame_bytes");
    pc_close(&c);
    kv_buf_clear(&big);
    queue_sized(&big, PEER_PING, MAX_FRAME + 1);
    expect_bytes_closed(port, big.data, big.len, "a frame of max_frame_bytes + 1");
    kv_buf_deinit(&big);

    expect_serving(p, "after-oversize");
    /* only the whole frame at the limit got as far as a refusal */
    const int want[6] = {0, 0, 0, 0, 0, 1};
    expect_refusals(p, want);
}

/* ---- frames before the handshake ---------------------------------------- */

static void test_peer_port_refuses_requests_before_hello(void **state)
{
    (void)state;
    node_proc_t *p = proc_new("ppt-nohello");
    const char *extra[] = {"--node-name", "solo", NULL};
    proc_start(p, extra);
    uint16_t port = p->peer_port;
    uint64_t ts = hlc_make(wall_ms(), 5);
    pconn_t c;

    /* (c) a PING first */
    pc_open(&c, port);
    assert_int_equal(peer_encode_ping(&c.out, 1, hlc_now_wall(), 0), KV_OK);
    pc_flush(&c);
    pc_expect_refuse(&c, KV_PROTO, "PEER_HELLO", "PING first");
    pc_close(&c);

    /* a MUTATION first: refused, and not applied */
    pc_open(&c, port);
    queue_mutation(&c, 2, "c-key", ts, "c-val");
    pc_flush(&c);
    pc_expect_refuse(&c, KV_PROTO, "PEER_HELLO", "MUTATION first");
    pc_close(&c);

    /* a READ first */
    pc_open(&c, port);
    assert_int_equal(peer_encode_read(&c.out, 3, hlc_now_wall(),
                                      kv_slice_str("c-key"), 0),
                     KV_OK);
    pc_flush(&c);
    pc_expect_refuse(&c, KV_PROTO, "PEER_HELLO", "READ first");
    pc_close(&c);

    /* a HELLO_OK (an answer, not a greeting) first */
    pc_open(&c, port);
    peer_hello_t h = {.version = CAIRN_PEER_PROTO_VERSION,
                      .cluster = kv_slice_str("test"),
                      .node_name = kv_slice_str("other"),
                      .node_id = kv_slice_str("x")};
    assert_int_equal(peer_encode_hello(&c.out, PEER_HELLO_OK, hlc_now_wall(), &h, 0),
                     KV_OK);
    pc_flush(&c);
    pc_expect_refuse(&c, KV_PROTO, "PEER_HELLO", "HELLO_OK first");
    pc_close(&c);

    /* a frame of a type outside the peer range */
    pc_open(&c, port);
    {
        kv_frame_writer_t w;
        kv_frame_begin(&w, &c.out, 1, 0, 1);
        msgpack_pack_uint64(&w.pk, hlc_now_wall());
        assert_int_equal(kv_frame_end(&w, 0), KV_OK);
    }
    pc_flush(&c);
    pc_expect_refuse(&c, KV_PROTO, "PEER_HELLO", "type 1 first");
    pc_close(&c);

    /* a HELLO cut short: [200, 0, hlc, version] */
    pc_open(&c, port);
    {
        kv_frame_writer_t w;
        kv_frame_begin(&w, &c.out, PEER_HELLO, 0, 2);
        msgpack_pack_uint64(&w.pk, hlc_now_wall());
        msgpack_pack_uint32(&w.pk, CAIRN_PEER_PROTO_VERSION);
        assert_int_equal(kv_frame_end(&w, 0), KV_OK);
    }
    pc_flush(&c);
    pc_expect_refuse(&c, KV_PROTO, "malformed", "short HELLO");
    pc_close(&c);

    /* a PING with a MUTATION right behind it in the same write: the
     * refusal stops the connection, the MUTATION is never looked at */
    pc_open(&c, port);
    assert_int_equal(peer_encode_ping(&c.out, 4, hlc_now_wall(), 0), KV_OK);
    queue_mutation(&c, 5, "c-key2", ts, "c-val");
    pc_flush(&c);
    pc_expect_refuse(&c, KV_PROTO, "PEER_HELLO", "PING then MUTATION");
    pc_close(&c);

    /* a well-formed HELLO naming this node itself is no member to it */
    pc_open(&c, port);
    hello_args_t self = {CAIRN_PEER_PROTO_VERSION, "test", "solo", 0,
                         hlc_now_wall()};
    queue_hello(&c, &self);
    pc_flush(&c);
    pc_expect_refuse(&c, KV_DENIED, "'solo' is not a member", "HELLO as itself");
    pc_close(&c);

    /* nothing was written or read as a replica (checked before the client
     * reads below, which count as this node's own replica reads) */
    assert_int_equal(scrape(p, "cairn_replica_writes_total"), 0);
    assert_int_equal(scrape(p, "cairn_replica_reads_total"), 0);
    expect_notfound(p, "c-key");
    expect_notfound(p, "c-key2");
    const int want[6] = {0, 1, 0, 0, 0, 7};
    expect_refusals(p, want);
    expect_serving(p, "after-nohello");
}

/* ---- a HELLO with one field wrong --------------------------------------- */

static void refused_hello(uint16_t port, const hello_args_t *a, kv_status_t st,
                          const char *needle, const char *what)
{
    pconn_t c;
    pc_open(&c, port);
    queue_hello(&c, a);
    pc_flush(&c);
    pc_expect_refuse(&c, st, needle, what);
    pc_close(&c);
}

static void test_peer_port_refuses_bad_hellos(void **state)
{
    (void)state;
    uint64_t digest;
    node_proc_t *p = start_with_ghost("ppt-hello", &digest);
    uint16_t port = p->peer_port;
    const uint32_t V = CAIRN_PEER_PROTO_VERSION;
    int want[6] = {0};

    /* (d) another cluster name */
    hello_args_t a = {V, "other", "ghost", digest, hlc_now_wall()};
    refused_hello(port, &a, KV_DENIED, "cluster name", "cluster 'other'");
    want[0]++;
    expect_refusals(p, want);

    /* (e) a node name not in initial_cluster, and this node's own */
    a = (hello_args_t){V, "test", "nobody", digest, hlc_now_wall()};
    refused_hello(port, &a, KV_DENIED, "'nobody' is not a member", "node nobody");
    a.name = "solo";
    refused_hello(port, &a, KV_DENIED, "'solo' is not a member", "node solo");
    /* a member's name with more after it is another name */
    a.name = "ghost2";
    refused_hello(port, &a, KV_DENIED, "'ghost2' is not a member", "node ghost2");
    want[1] += 3;
    expect_refusals(p, want);

    /* (f) another protocol version, above and below */
    a = (hello_args_t){V + 1, "test", "ghost", digest, hlc_now_wall()};
    refused_hello(port, &a, KV_PROTO, "version", "version + 1");
    a.version = 0;
    refused_hello(port, &a, KV_PROTO, "version", "version 0");
    want[2] += 2;
    expect_refusals(p, want);

    /* (g) other cluster-wide settings (replication factor) */
    a = (hello_args_t){V, "test", "ghost", digest ^ 1, hlc_now_wall()};
    refused_hello(port, &a, KV_INVALID, "config", "digest ^ 1");
    a.digest = 0;
    refused_hello(port, &a, KV_INVALID, "config", "digest 0");
    want[3] += 2;
    expect_refusals(p, want);

    /* (i) a clock an hour ahead */
    assert_int_equal(scrape(p, "cairn_peer_clock_skew_refused_total"), 0);
    a = (hello_args_t){V, "test", "ghost", digest,
                       hlc_make(wall_ms() + 3600 * 1000, 0)};
    refused_hello(port, &a, KV_CLOCK_SKEW, "ahead", "an hour ahead");
    want[4]++;
    expect_refusals(p, want);
    assert_true(scrape(p, "cairn_peer_clock_skew_refused_total") >= 1);

    /* (j) the node is unharmed, and its clock was not dragged forward by
     * the refused hello: a new write is stamped near the wall clock */
    uint64_t ts = expect_serving(p, "after-bad-hellos");
    assert_true(hlc_wall_ms(ts) < wall_ms() + 60 * 1000);
    /* and a correct HELLO -- the same fields these varied -- is accepted */
    pconn_t c;
    pc_open(&c, port);
    a = (hello_args_t){V, "test", "ghost", digest, hlc_now_wall()};
    queue_hello(&c, &a);
    pc_flush(&c);
    assert_int_equal(pc_next(&c, IO_TIMEOUT_MS), KV_OK);
    assert_int_equal(c.f.type, PEER_HELLO_OK);
    pc_close(&c);
    expect_refusals(p, want); /* unchanged */
}

/* ---- a member's requests ------------------------------------------------ */

static void check_mutation_reply(const kv_frame_t *f, uint64_t msg_id,
                                 kv_status_t st, uint64_t superseded_by)
{
    assert_int_equal(f->type, PEER_MUTATION_REPLY);
    peer_head_t head;
    peer_mutation_reply_t r;
    assert_int_equal(peer_decode_mutation_reply(f, &head, &r), KV_OK);
    assert_int_equal(head.msg_id, msg_id);
    if (r.status != st)
        fail_msg("MUTATION %" PRIu64 ": %s, want %s", msg_id,
                 kv_status_str(r.status), kv_status_str(st));
    assert_int_equal(r.superseded_by, superseded_by);
}

static void check_read_reply(const kv_frame_t *f, uint64_t msg_id,
                             kv_status_t st, uint64_t ts, const char *value)
{
    assert_int_equal(f->type, PEER_READ_REPLY);
    peer_head_t head;
    peer_read_reply_t r;
    assert_int_equal(peer_decode_read_reply(f, &head, &r), KV_OK);
    assert_int_equal(head.msg_id, msg_id);
    assert_int_equal(r.status, st);
    assert_int_equal(r.cell.ts, ts);
    if (!value) return;
    assert_false(r.cell.tombstone);
    assert_int_equal(r.cell.expire_ms, 0);
    assert_true(kv_slice_eq(r.cell.value, kv_slice_str(value)));
}

/* The next frame must be the MUTATION_REPLY / READ_REPLY described. */
static void expect_mutation_reply(pconn_t *c, uint64_t msg_id, kv_status_t st,
                                  uint64_t superseded_by)
{
    assert_int_equal(pc_next(c, IO_TIMEOUT_MS), KV_OK);
    check_mutation_reply(&c->f, msg_id, st, superseded_by);
}

static void expect_read_reply(pconn_t *c, uint64_t msg_id, kv_status_t st,
                              uint64_t ts, const char *value)
{
    assert_int_equal(pc_next(c, IO_TIMEOUT_MS), KV_OK);
    check_read_reply(&c->f, msg_id, st, ts, value);
}

static void test_peer_port_serves_a_member(void **state)
{
    (void)state;
    uint64_t digest;
    node_proc_t *p = start_with_ghost("ppt-member", &digest);
    pconn_t c;
    pc_open(&c, p->peer_port);

    /* (h) the handshake */
    uint64_t hello_hlc = hlc_now_wall();
    hello_args_t a = {CAIRN_PEER_PROTO_VERSION, "test", "ghost", digest,
                      hello_hlc};
    queue_hello(&c, &a);
    pc_flush(&c);
    assert_int_equal(pc_next(&c, IO_TIMEOUT_MS), KV_OK);
    assert_int_equal(c.f.type, PEER_HELLO_OK);
    peer_head_t head;
    peer_hello_t ok;
    assert_int_equal(peer_decode_hello(&c.f, &head, &ok), KV_OK);
    assert_int_equal(head.msg_id, 0);
    assert_true(head.hlc > hello_hlc); /* our clock was merged into its own */
    assert_int_equal(ok.version, CAIRN_PEER_PROTO_VERSION);
    assert_true(kv_slice_eq(ok.cluster, kv_slice_str("test")));
    assert_true(kv_slice_eq(ok.node_name, kv_slice_str("solo")));
    assert_int_equal(ok.node_id.len, 32);
    assert_int_equal(ok.ring_digest, digest);
    assert_int_equal(ok.client_port, p->client_port);
    assert_int_equal(ok.admin_port, p->admin_port);

    /* a PING is answered with its msg_id */
    assert_int_equal(peer_encode_ping(&c.out, 41, hlc_now_wall(), 0), KV_OK);
    pc_flush(&c);
    assert_int_equal(pc_next(&c, IO_TIMEOUT_MS), KV_OK);
    assert_int_equal(c.f.type, PEER_PONG);
    uint64_t load;
    assert_int_equal(peer_decode_pong(&c.f, &head, &load), KV_OK);
    assert_int_equal(head.msg_id, 41);

    /* a MUTATION is stored; sent again, the same cell is still OK */
    uint64_t ts = hlc_make(wall_ms(), 5);
    queue_mutation(&c, 42, "k", ts, "v");
    pc_flush(&c);
    expect_mutation_reply(&c, 42, KV_OK, 0);
    queue_mutation(&c, 43, "k", ts, "v");
    pc_flush(&c);
    expect_mutation_reply(&c, 43, KV_OK, 0);

    /* a READ returns that cell; an unknown key is NOTFOUND with ts 0 */
    assert_int_equal(peer_encode_read(&c.out, 44, hlc_now_wall(),
                                      kv_slice_str("k"), 0),
                     KV_OK);
    pc_flush(&c);
    expect_read_reply(&c, 44, KV_OK, ts, "v");
    assert_int_equal(peer_encode_read(&c.out, 45, hlc_now_wall(),
                                      kv_slice_str("nope"), 0),
                     KV_OK);
    pc_flush(&c);
    expect_read_reply(&c, 45, KV_NOTFOUND, 0, NULL);

    /* an older cell loses, and says to what */
    queue_mutation(&c, 46, "k", ts - hlc_make(1000, 0), "old");
    pc_flush(&c);
    expect_mutation_reply(&c, 46, KV_SUPERSEDED, ts);
    assert_int_equal(peer_encode_read(&c.out, 47, hlc_now_wall(),
                                      kv_slice_str("k"), 0),
                     KV_OK);
    pc_flush(&c);
    expect_read_reply(&c, 47, KV_OK, ts, "v");

    /* pipelined requests are each answered once, with their msg_id (in
     * any order: a read from memory may overtake a write being synced) */
    queue_mutation(&c, 48, "k2", ts, "v2");
    assert_int_equal(peer_encode_read(&c.out, 49, hlc_now_wall(),
                                      kv_slice_str("k"), 0),
                     KV_OK);
    pc_flush(&c);
    bool got_m = false, got_r = false;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pc_next(&c, IO_TIMEOUT_MS), KV_OK);
        if (c.f.type == PEER_MUTATION_REPLY && !got_m) {
            check_mutation_reply(&c.f, 48, KV_OK, 0);
            got_m = true;
        } else {
            assert_false(got_r);
            check_read_reply(&c.f, 49, KV_OK, ts, "v");
            got_r = true;
        }
    }

    /* every request reached the replica path, and nothing else did (before
     * the client read below, which is a replica read of this node's own) */
    assert_int_equal(scrape(p, "cairn_replica_writes_total"), 4);
    assert_int_equal(scrape(p, "cairn_replica_reads_total"), 4);
    assert_int_equal(scrape(p, "cairn_peer_messages_received_total{peer=\"ghost\"}"),
                     9);

    /* the cell is what a client reads at ONE (this node is a replica) */
    cairn_client_t *cc = client_of(p);
    cairn_request_opts_t one = {.consistency = CAIRN_ONE};
    cairn_value_t v;
    assert_int_equal(cairn_get(cc, "k", 1, &one, &v), CAIRN_OK);
    assert_int_equal(v.len, 1);
    assert_memory_equal(v.data, "v", 1);
    assert_int_equal(v.timestamp, ts);
    cairn_value_free(&v);
    cairn_close(cc);

    /* (j) still ready and serving, with the member's link still open */
    expect_serving(p, "after-member");
    assert_int_equal(peer_encode_read(&c.out, 50, hlc_now_wall(),
                                      kv_slice_str("k2"), 0),
                     KV_OK);
    pc_flush(&c);
    expect_read_reply(&c, 50, KV_OK, ts, "v2");
    pc_close(&c);
    const int none[6] = {0};
    expect_refusals(p, none);
}

/* ---- connections that never introduce themselves ------------------------ */

static void test_peer_port_closes_silent_and_half_handshakes(void **state)
{
    (void)state;
    node_proc_t *p = proc_new("peer-silent");
    const char *extra[] = {"--node-name", "solo", "--peer-timeout-ms", "300", NULL};
    proc_start(p, extra);
    pconn_t silent, half;
    pc_open(&silent, p->peer_port);
    pc_open(&half, p->peer_port);
    /* a length promising 1 MiB, then only a little of it */
    uint8_t hdr[4 + 100] = {0x00, 0x10, 0x00, 0x00};
    assert_true(send_bytes(half.fd, hdr, sizeof hdr));
    uint64_t t0 = now_ms();
    pc_expect_closed(&silent, "a connection that sent nothing");
    pc_expect_closed(&half, "a connection that sent part of a frame");
    uint64_t took = now_ms() - t0;
    assert_true(took >= 250 && took < CLOSE_WAIT_MS);
    pc_close(&silent);
    pc_close(&half);
    assert_int_equal(
        scrape(p, "cairn_peer_handshakes_refused_total{reason=\"handshake_timeout\"}"), 2);
    expect_serving(p, "after-silence");
}

/* A name must match whole: "ghost\0evil" is not ghost. */
static void test_peer_port_refuses_a_name_with_a_nul(void **state)
{
    (void)state;
    uint64_t digest;
    node_proc_t *p = start_with_ghost("peer-nul", &digest);
    pconn_t c;
    pc_open(&c, p->peer_port);
    peer_hello_t h = {
        .version = CAIRN_PEER_PROTO_VERSION,
        .cluster = kv_slice_str("test"),
        .node_name = kv_slice("ghost\0evil", 10),
        .node_id = kv_slice_str("0123456789abcdef0123456789abcdef"),
        .ring_digest = digest,
        .client_port = 1,
        .admin_port = 2,
    };
    assert_int_equal(peer_encode_hello(&c.out, PEER_HELLO, hlc_now_wall(), &h, 0),
                     KV_OK);
    pc_flush(&c);
    pc_expect_refuse(&c, KV_DENIED, "not a member", "a name with a NUL");
    pc_close(&c);
}

/* A node dials its peers from its listen_address (not whatever address the
 * kernel picks), so firewall rules on its address cover its connections. */
static void test_peer_port_dials_from_its_listen_address(void **state)
{
    (void)state;
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(lfd >= 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(lfd, 4), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &len), 0);
    node_proc_t *p = proc_new("ppt-source");
    static char initial[128];
    snprintf(initial, sizeof initial, "solo=127.0.0.9:%u,ghost=127.0.0.1:%u",
             p->peer_port, ntohs(a.sin_port));
    const char *extra[] = {"--node-name", "solo", "--initial-cluster", initial,
                           "--listen-address", "127.0.0.9", NULL};
    proc_spawn(p, extra);
    struct pollfd pf = {.fd = lfd, .events = POLLIN};
    assert_int_equal(poll(&pf, 1, 10000), 1);
    struct sockaddr_in from;
    len = sizeof from;
    int cfd = accept(lfd, (struct sockaddr *)&from, &len);
    assert_true(cfd >= 0);
    char ip[32];
    inet_ntop(AF_INET, &from.sin_addr, ip, sizeof ip);
    assert_string_equal(ip, "127.0.0.9");
    close(cfd);
    close(lfd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        node_test(test_peer_port_dials_from_its_listen_address),
        node_test(test_peer_port_closes_on_garbage_and_oversized_frames),
        node_test(test_peer_port_refuses_requests_before_hello),
        node_test(test_peer_port_refuses_bad_hellos),
        node_test(test_peer_port_serves_a_member),
        node_test(test_peer_port_closes_silent_and_half_handshakes),
        node_test(test_peer_port_refuses_a_name_with_a_nul),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
