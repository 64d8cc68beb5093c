/* test_node.c -- cairnd as a real process on loopback: the client protocol,
 * pipelining, restarts, SIGTERM drain, SIGKILL durability, bad input and
 * limits, /metrics.
 *
 * Each test starts its own cairnd (free ports picked by binding port 0, a
 * fresh data directory) and talks to it with raw sockets and the proto.h
 * codec. Every child is recorded and killed by the test's teardown, also
 * when the test fails (cmocka runs teardown after a failed assertion); a
 * child also dies with this process (PR_SET_PDEATHSIG).
 *
 * Debugging: CAIRN_TEST_KEEP=1 keeps each node's directory (data and
 * cairnd.log); CAIRN_TEST_LOG_LEVEL=debug makes the nodes log more.
 */

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

#include <arpa/inet.h>

#include "hlc.h"
#include "proto.h"

#include "node_test_util.h"

/* ---- a raw protocol client ---------------------------------------------- */

typedef struct client {
    int fd;
    kv_frame_decoder_t *dec;
    kv_frame_t f;
    kv_buf_t out;
} client_t;

static int connect_port(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void client_open(client_t *c, const node_proc_t *p)
{
    memset(c, 0, sizeof *c);
    c->fd = connect_port(p->client_port);
    c->dec = kv_frame_decoder_create(0);
    kv_frame_init(&c->f);
}

static void client_close(client_t *c)
{
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    kv_frame_release(&c->f);
    kv_frame_decoder_destroy(c->dec);
    c->dec = NULL;
    kv_buf_deinit(&c->out);
}

static void send_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR) continue;
        assert_true(w > 0);
        b += w;
        n -= (size_t)w;
    }
}

static void client_flush(client_t *c)
{
    send_all(c->fd, c->out.data, c->out.len);
    kv_buf_clear(&c->out);
}

/* Next frame into c->f: KV_OK, KV_CLOSED on EOF/reset, KV_TIMEOUT. */
static kv_status_t client_next(client_t *c)
{
    uint8_t buf[65536];
    for (;;) {
        kv_status_t rc = kv_frame_decoder_next(c->dec, &c->f);
        if (rc == KV_OK) return KV_OK;
        assert_int_equal(rc, KV_AGAIN);
        struct pollfd pfd = {c->fd, POLLIN, 0};
        if (poll(&pfd, 1, IO_TIMEOUT_MS) <= 0) return KV_TIMEOUT;
        ssize_t n = read(c->fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return KV_CLOSED;
        assert_int_equal(kv_frame_decoder_feed(c->dec, buf, (size_t)n), KV_OK);
    }
}

/* Next frame must be a REPLY; decoded into *r (slices point into c->f). */
static void client_reply(client_t *c, proto_reply_t *r)
{
    assert_int_equal(client_next(c), KV_OK);
    assert_int_equal(c->f.type, MSG_REPLY);
    assert_int_equal(proto_decode_reply(&c->f, r), KV_OK);
}

/* The server must close the connection (after any frames it sent). */
static void client_expect_close(client_t *c)
{
    for (int i = 0; i < 100; i++) {
        kv_status_t rc = client_next(c);
        if (rc == KV_CLOSED) return;
        assert_int_equal(rc, KV_OK);
    }
    fail_msg("connection was not closed");
}

static void client_hello_as(client_t *c, const char *cluster, uint32_t version)
{
    proto_hello_t h = {.version = version, .cluster = kv_slice_str(cluster),
                       .client_name = kv_slice_str("test_node")};
    assert_int_equal(proto_encode_hello(&c->out, 1, &h, 0), KV_OK);
    client_flush(c);
}

static void client_hello(client_t *c, proto_hello_ok_t *ok_out)
{
    client_hello_as(c, "test", CAIRN_PROTO_VERSION);
    assert_int_equal(client_next(c), KV_OK);
    assert_int_equal(c->f.type, MSG_HELLO_OK);
    proto_hello_ok_t ok;
    assert_int_equal(proto_decode_hello_ok(&c->f, &ok), KV_OK);
    assert_int_equal(ok.version, CAIRN_PROTO_VERSION);
    assert_true(kv_slice_eq(ok.cluster, kv_slice_str("test")));
    assert_int_equal(ok.node_id.len, 32);
    if (ok_out) *ok_out = ok;
}

static void queue_req(client_t *c, proto_msg_t type, uint64_t id, kv_slice_t key,
                      kv_slice_t value, uint64_t causality, uint64_t ttl_ms)
{
    proto_request_t r = {.type = type, .id = id, .key = key, .value = value,
                         .cl = CL_QUORUM, .timeout_ms = 0, .causality = causality,
                         .ttl_ms = ttl_ms};
    assert_int_equal(proto_encode_request(&c->out, &r, 0), KV_OK);
}

/* One request, one reply (id checked). */
static void call(client_t *c, proto_msg_t type, kv_slice_t key, kv_slice_t value,
                 uint64_t causality, uint64_t ttl_ms, proto_reply_t *r)
{
    static uint64_t next_id = 1000;
    uint64_t id = ++next_id;
    queue_req(c, type, id, key, value, causality, ttl_ms);
    client_flush(c);
    client_reply(c, r);
    assert_int_equal(r->id, id);
}

static kv_status_t put_str(client_t *c, const char *k, const char *v)
{
    proto_reply_t r;
    call(c, MSG_PUT, kv_slice_str(k), kv_slice_str(v), 0, 0, &r);
    return r.status;
}

/* GET k and compare with want (NULL: expect NOTFOUND). */
static void expect_get(client_t *c, kv_slice_t k, const kv_slice_t *want)
{
    proto_reply_t r;
    call(c, MSG_GET, k, kv_slice(NULL, 0), 0, 0, &r);
    if (!want) {
        assert_int_equal(r.status, KV_NOTFOUND);
        return;
    }
    assert_int_equal(r.status, KV_OK);
    assert_true(r.has_value);
    assert_true(kv_slice_eq(r.value, *want));
}

/* ---- /metrics ----------------------------------------------------------- */

/* The value of the series whose line starts with `series` followed by a
 * space (e.g. `cairn_protocol_errors_total{reason="malformed"}`); -1 if
 * absent. */
static double metric_value(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *line = text; line && *line;) {
        const char *nl = strchr(line, '\n');
        if (strncmp(line, series, n) == 0 && line[n] == ' ') return strtod(line + n + 1, NULL);
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

static bool name_char(char ch, bool first)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' ||
           ch == ':' || (!first && ch >= '0' && ch <= '9');
}

/* One sample line: name{label="value",...} number */
static bool sample_line_ok(const char *s, const char *end)
{
    const char *p = s;
    if (p >= end || !name_char(*p, true)) return false;
    while (p < end && name_char(*p, false)) p++;
    if (p < end && *p == '{') {
        p++;
        while (p < end && *p != '}') {
            if (!name_char(*p, true)) return false;
            while (p < end && name_char(*p, false)) p++;
            if (p + 1 >= end || p[0] != '=' || p[1] != '"') return false;
            p += 2;
            while (p < end && *p != '"') p += (*p == '\\') ? 2 : 1;
            if (p >= end) return false;
            p++;
            if (p < end && *p == ',') p++;
        }
        if (p >= end) return false;
        p++;
    }
    if (p >= end || *p != ' ') return false;
    p++;
    char num[64];
    size_t len = (size_t)(end - p);
    if (len == 0 || len >= sizeof num) return false;
    memcpy(num, p, len);
    num[len] = 0;
    if (!strcmp(num, "+Inf") || !strcmp(num, "-Inf") || !strcmp(num, "NaN")) return true;
    char *e;
    strtod(num, &e);
    return *e == '\0';
}

static void assert_prometheus_text(const char *text)
{
    int samples = 0;
    for (const char *line = text; *line;) {
        const char *nl = strchr(line, '\n');
        assert_non_null(nl); /* every line ends with a newline */
        if (line[0] == '#') {
            assert_true(!strncmp(line, "# HELP ", 7) || !strncmp(line, "# TYPE ", 7));
        } else if (!sample_line_ok(line, nl)) {
            fail_msg("bad metrics line: %.*s", (int)(nl - line), line);
        } else {
            samples++;
        }
        line = nl + 1;
    }
    assert_true(samples > 10);
}

/* ---- tests -------------------------------------------------------------- */

typedef struct info_seen {
    int state_serving, port, tables, node_id;
    uint16_t want_port;
} info_seen_t;

static void info_cb(void *arg, kv_slice_t name, bool is_str, kv_slice_t str,
                    uint64_t num)
{
    info_seen_t *s = arg;
    if (kv_slice_eq(name, kv_slice_str("state")) && is_str &&
        kv_slice_eq(str, kv_slice_str("serving")))
        s->state_serving = 1;
    if (kv_slice_eq(name, kv_slice_str("client_port")) && !is_str && num == s->want_port)
        s->port = 1;
    if (kv_slice_eq(name, kv_slice_str("tables_l0")) && !is_str) s->tables = 1;
    if (kv_slice_eq(name, kv_slice_str("node_id")) && is_str && str.len == 32)
        s->node_id = 1;
}

typedef struct info_num {
    const char *name;
    uint64_t value;
    bool found;
} info_num_t;

static void info_num_cb(void *arg, kv_slice_t name, bool is_str, kv_slice_t str,
                        uint64_t num)
{
    info_num_t *q = arg;
    (void)str;
    if (!is_str && kv_slice_eq(name, kv_slice_str(q->name))) {
        q->value = num;
        q->found = true;
    }
}

/* One numeric INFO item of the node behind c (after HELLO). */
static uint64_t info_number(client_t *c, const char *name)
{
    assert_int_equal(proto_encode_info(&c->out, 99, 0), KV_OK);
    client_flush(c);
    assert_int_equal(client_next(c), KV_OK);
    assert_int_equal(c->f.type, MSG_INFO_REPLY);
    uint64_t hlc;
    info_num_t q = {.name = name};
    assert_int_equal(proto_decode_info_reply(&c->f, &hlc, info_num_cb, &q), KV_OK);
    if (!q.found) fail_msg("INFO has no numeric item %s", name);
    return q.value;
}

static void test_node_hello_and_info_describe_the_node(void **state)
{
    (void)state;
    node_proc_t *p = proc_new("node-hello");
    proc_start(p, NULL);
    client_t c;
    client_open(&c, p);
    proto_hello_ok_t ok;
    client_hello(&c, &ok);

    assert_int_equal(proto_encode_info(&c.out, 7, 0), KV_OK);
    client_flush(&c);
    assert_int_equal(client_next(&c), KV_OK);
    assert_int_equal(c.f.type, MSG_INFO_REPLY);
    assert_int_equal(c.f.request_id, 7);
    uint64_t hlc;
    info_seen_t seen = {.want_port = p->client_port};
    assert_int_equal(proto_decode_info_reply(&c.f, &hlc, info_cb, &seen), KV_OK);
    assert_int_equal(seen.state_serving + seen.port + seen.tables + seen.node_id, 4);
    client_close(&c);

    kv_buf_t body = {0};
    assert_int_equal(http_get(p->admin_port, "/status", &body), 200);
    assert_non_null(strstr((const char *)body.data, "\"state\":\"serving\""));
    assert_non_null(strstr((const char *)body.data, "\"cluster_name\":\"test\""));
    kv_buf_deinit(&body);
}

static void test_node_put_get_delete_round_trip(void **state)
{
    (void)state;
    node_proc_t *p = proc_new("node-rt");
    proc_start(p, NULL);
    client_t c;
    client_open(&c, p);
    client_hello(&c, NULL);

    proto_reply_t r;
    call(&c, MSG_PUT, kv_slice_str("k1"), kv_slice_str("v1"), 0, 0, &r);
    assert_int_equal(r.status, KV_OK);
    uint64_t put_ts = r.cell_ts;
    assert_true(put_ts > 0);
    assert_true(r.hlc >= put_ts);

    call(&c, MSG_GET, kv_slice_str("k1"), kv_slice(NULL, 0), 0, 0, &r);
    assert_int_equal(r.status, KV_OK);
    assert_true(kv_slice_eq(r.value, kv_slice_str("v1")));
    assert_int_equal(r.cell_ts, put_ts);

    /* overwrite, then delete: the tombstone's timestamp comes back */
    assert_int_equal(put_str(&c, "k1", "v2"), KV_OK);
    kv_slice_t v2 = kv_slice_str("v2");
    expect_get(&c, kv_slice_str("k1"), &v2);
    call(&c, MSG_DELETE, kv_slice_str("k1"), kv_slice(NULL, 0), 0, 0, &r);
    assert_int_equal(r.status, KV_OK);
    uint64_t del_ts = r.cell_ts;
    assert_true(del_ts > put_ts);
    call(&c, MSG_GET, kv_slice_str("k1"), kv_slice(NULL, 0), 0, 0, &r);
    assert_int_equal(r.status, KV_NOTFOUND);
    assert_int_equal(r.cell_ts, del_ts);
    assert_false(r.has_value);
    call(&c, MSG_GET, kv_slice_str("never"), kv_slice(NULL, 0), 0, 0, &r);
    assert_int_equal(r.status, KV_NOTFOUND);
    assert_int_equal(r.cell_ts, 0);

    /* a causality token from the near future orders the write after it */
    uint64_t ahead = r.hlc + ((uint64_t)100 << HLC_LOGICAL_BITS);
    call(&c, MSG_PUT, kv_slice_str("k2"), kv_slice_str("x"), ahead, 0, &r);
    assert_int_equal(r.status, KV_OK);
    assert_true(r.cell_ts > ahead);
    /* ... and one an hour ahead is refused as clock skew */
    uint64_t far = r.hlc + ((uint64_t)3600 * 1000 << HLC_LOGICAL_BITS);
    call(&c, MSG_PUT, kv_slice_str("k2"), kv_slice_str("y"), far, 0, &r);
    assert_int_equal(r.status, KV_CLOCK_SKEW);
    assert_true(r.message.len > 0);

    /* ttl: the value reads as gone once it expires */
    call(&c, MSG_PUT, kv_slice_str("k3"), kv_slice_str("brief"), 0, 100, &r);
    assert_int_equal(r.status, KV_OK);
    kv_slice_t brief = kv_slice_str("brief");
    expect_get(&c, kv_slice_str("k3"), &brief);
    sleep_ms(250);
    expect_get(&c, kv_slice_str("k3"), NULL);

    assert_true(scrape(p, "cairn_clock_skew_refused_total") >= 1);
    client_close(&c);
}

/* ---- LOCAL_GET ---------------------------------------------------------- */

static void queue_local_get(client_t *c, uint64_t id, kv_slice_t key)
{
    assert_int_equal(proto_encode_local_get(&c->out, id, key, 0), KV_OK);
}

/* LOCAL_GET key; the answer must be a LOCAL_REPLY with the same id. */
static void local_get(client_t *c, kv_slice_t key, proto_local_reply_t *lr)
{
    static uint64_t next_id = 5000;
    uint64_t id = ++next_id;
    queue_local_get(c, id, key);
    client_flush(c);
    assert_int_equal(client_next(c), KV_OK);
    assert_int_equal(c->f.type, MSG_LOCAL_REPLY);
    assert_int_equal(proto_decode_local_reply(&c->f, lr), KV_OK);
    assert_int_equal(lr->id, id);
}

/* LOCAL_GET returns the node's own cell: a value with the put's stamp, a
 * tombstone with the delete's, an expired value as a tombstone, nothing for
 * a key never written -- also from the disk after a restart (the reader
 * pool). A bad key is answered with a REPLY error and the connection goes
 * on; a LOCAL_GET counts as an administrative request. */
static void test_node_local_get_returns_the_nodes_own_cell(void **state)
{
    (void)state;
    node_proc_t *p = proc_new("node-local-get");
    proc_start(p, NULL);
    client_t c;
    client_open(&c, p);
    client_hello(&c, NULL);

    proto_reply_t r;
    proto_local_reply_t lr;
    const uint8_t bin[] = {'v', 0, 0xff};
    call(&c, MSG_PUT, kv_slice_str("k1"), kv_slice(bin, sizeof bin), 0, 0, &r);
    assert_int_equal(r.status, KV_OK);
    uint64_t put_ts = r.cell_ts;
    local_get(&c, kv_slice_str("k1"), &lr);
    assert_int_equal(lr.status, KV_OK);
    assert_false(lr.tombstone);
    assert_true(kv_slice_eq(lr.value, kv_slice(bin, sizeof bin)));
    assert_int_equal(lr.ts, put_ts);
    assert_int_equal(lr.expire_ms, 0);
    assert_true(lr.hlc >= put_ts);

    call(&c, MSG_PUT, kv_slice_str("empty"), kv_slice("", 0), 0, 0, &r);
    assert_int_equal(r.status, KV_OK);
    local_get(&c, kv_slice_str("empty"), &lr);
    assert_int_equal(lr.status, KV_OK);
    assert_false(lr.tombstone);
    assert_int_equal(lr.value.len, 0);

    call(&c, MSG_DELETE, kv_slice_str("k2"), kv_slice(NULL, 0), 0, 0, &r);
    assert_int_equal(r.status, KV_OK);
    uint64_t del_ts = r.cell_ts;
    local_get(&c, kv_slice_str("k2"), &lr);
    assert_int_equal(lr.status, KV_OK);
    assert_true(lr.tombstone);
    assert_int_equal(lr.value.len, 0);
    assert_int_equal(lr.ts, del_ts);

    call(&c, MSG_PUT, kv_slice_str("k3"), kv_slice_str("brief"), 0, 100, &r);
    assert_int_equal(r.status, KV_OK);
    uint64_t ttl_ts = r.cell_ts;
    local_get(&c, kv_slice_str("k3"), &lr);
    assert_int_equal(lr.status, KV_OK);
    assert_false(lr.tombstone);
    assert_true(lr.expire_ms > 0);
    uint64_t expiry = lr.expire_ms;
    sleep_ms(250);
    local_get(&c, kv_slice_str("k3"), &lr);
    assert_int_equal(lr.status, KV_OK);
    assert_true(lr.tombstone);
    assert_int_equal(lr.ts, ttl_ts);
    assert_int_equal(lr.expire_ms, expiry);

    local_get(&c, kv_slice_str("never"), &lr);
    assert_int_equal(lr.status, KV_NOTFOUND);
    assert_int_equal(lr.ts, 0);

    /* errors come as REPLY, and the connection stays usable */
    queue_local_get(&c, 77, kv_slice("", 0));
    client_flush(&c);
    client_reply(&c, &r);
    assert_int_equal(r.id, 77);
    assert_int_equal(r.status, KV_INVALID);
    kv_frame_writer_t w;
    kv_frame_begin(&w, &c.out, MSG_LOCAL_GET, 78, 1);
    msgpack_pack_uint8(&w.pk, 1); /* a key that is not bytes */
    assert_int_equal(kv_frame_end(&w, 0), KV_OK);
    client_flush(&c);
    client_reply(&c, &r);
    assert_int_equal(r.id, 78);
    assert_int_equal(r.status, KV_PROTO);
    local_get(&c, kv_slice_str("k1"), &lr);
    assert_int_equal(lr.status, KV_OK);
    client_close(&c);

    /* after a restart the cells come from the tables on disk */
    proc_kill(p, SIGTERM);
    assert_int_equal(proc_wait_exit(p, 10000), 0);
    proc_start(p, NULL);
    client_open(&c, p);
    client_hello(&c, NULL);
    local_get(&c, kv_slice_str("k1"), &lr);
    assert_int_equal(lr.status, KV_OK);
    assert_true(kv_slice_eq(lr.value, kv_slice(bin, sizeof bin)));
    assert_int_equal(lr.ts, put_ts);
    local_get(&c, kv_slice_str("k2"), &lr);
    assert_int_equal(lr.status, KV_OK);
    assert_true(lr.tombstone);
    assert_int_equal(lr.ts, del_ts);
    local_get(&c, kv_slice_str("never"), &lr);
    assert_int_equal(lr.status, KV_NOTFOUND);
    assert_true(scrape(p, "cairn_requests_total{op=\"info\",cl=\"none\"}") >= 3);
    client_close(&c);
}

static void test_node_binary_keys_and_values_keep_zero_bytes(void **state)
{
    (void)state;
    node_proc_t *p = proc_new("node-bin");
    proc_start(p, NULL);
    client_t c;
    client_open(&c, p);
    client_hello(&c, NULL);
    uint8_t key[64], val[4096];
    for (int round = 0; round < 4; round++) {
        for (size_t i = 0; i < sizeof key; i++) key[i] = (uint8_t)(i * round % 3 ? 0 : i);
        for (size_t i = 0; i < sizeof val; i++) val[i] = (uint8_t)((i + round) % 7 ? 0 : 255);
        key[0] = (uint8_t)round; /* distinct keys */
        proto_reply_t r;
        call(&c, MSG_PUT, kv_slice(key, sizeof key), kv_slice(val, sizeof val), 0, 0, &r);
        assert_int_equal(r.status, KV_OK);
        kv_slice_t want = kv_slice(val, sizeof val);
        expect_get(&c, kv_slice(key, sizeof key), &want);
    }
    /* a one-byte zero key and an empty value */
    uint8_t zero = 0;
    proto_reply_t r;
    call(&c, MSG_PUT, kv_slice(&zero, 1), kv_slice(NULL, 0), 0, 0, &r);
    assert_int_equal(r.status, KV_OK);
    kv_slice_t empty = kv_slice(NULL, 0);
    expect_get(&c, kv_slice(&zero, 1), &empty);
    client_close(&c);
}

static void test_node_answers_500_pipelined_requests_by_id(void **state)
{
    (void)state;
    node_proc_t *p = proc_new("node-pipe");
    proc_start(p, NULL);
    client_t c;
    client_open(&c, p);
    client_hello(&c, NULL);
    enum { N = 500 };
    char k[32], v[32];
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof k, "pipe-%d", i);
        snprintf(v, sizeof v, "value-%d", i);
        queue_req(&c, MSG_PUT, 10000 + (uint64_t)i, kv_slice_str(k), kv_slice_str(v), 0, 0);
    }
    client_flush(&c);
    static bool seen[N];
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < N; i++) {
        proto_reply_t r;
        client_reply(&c, &r);
        assert_int_equal(r.status, KV_OK);
        assert_true(r.id >= 10000 && r.id < 10000 + N);
        assert_false(seen[r.id - 10000]);
        seen[r.id - 10000] = true;
    }
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof k, "pipe-%d", i);
        queue_req(&c, MSG_GET, 20000 + (uint64_t)i, kv_slice_str(k), kv_slice(NULL, 0), 0, 0);
    }
    client_flush(&c);
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < N; i++) {
        proto_reply_t r;
        client_reply(&c, &r);
        assert_int_equal(r.status, KV_OK);
        assert_true(r.id >= 20000 && r.id < 20000 + N);
        int j = (int)(r.id - 20000);
        assert_false(seen[j]);
        seen[j] = true;
        snprintf(v, sizeof v, "value-%d", j);
        assert_true(kv_slice_eq(r.value, kv_slice_str(v)));
    }
    client_close(&c);
}

/* A client that pipelines big reads and does not read its replies for a
 * while: the node's socket fills (the end-of-turn write is partial, libevent
 * takes over the rest), its output passes NODE_OUT_HIGH and reading from
 * that client pauses; other clients are served meanwhile. When the client
 * reads, every reply arrives whole and in full, and the connection goes on
 * serving. */
static void test_node_slow_reader_gets_every_reply(void **state)
{
    (void)state;
    node_proc_t *p = proc_new("node-slow");
    proc_start(p, NULL);
    client_t c, other;
    client_open(&c, p);
    client_hello(&c, NULL);
    enum { VLEN = 1 << 20, N = 40 };
    uint8_t *big = test_malloc(VLEN);
    for (size_t i = 0; i < VLEN; i++) big[i] = (uint8_t)(i * 7 + i / 4096);
    proto_reply_t r;
    call(&c, MSG_PUT, kv_slice_str("big"), kv_slice(big, VLEN), 0, 0, &r);
    assert_int_equal(r.status, KV_OK);
    for (int i = 0; i < N; i++)
        queue_req(&c, MSG_GET, 30000 + (uint64_t)i, kv_slice_str("big"), kv_slice(NULL, 0), 0, 0);
    client_flush(&c);
    usleep(300 * 1000); /* replies pile up: 40 MiB against an 8 MiB pause mark */
    client_open(&other, p);
    client_hello(&other, NULL);
    assert_int_equal(put_str(&other, "meanwhile", "served"), KV_OK);
    client_close(&other);
    bool seen[N] = {false};
    for (int i = 0; i < N; i++) {
        client_reply(&c, &r);
        assert_int_equal(r.status, KV_OK);
        assert_true(r.id >= 30000 && r.id < 30000 + N);
        assert_false(seen[r.id - 30000]);
        seen[r.id - 30000] = true;
        assert_int_equal(r.value.len, VLEN);
        assert_memory_equal(r.value.data, big, VLEN);
    }
    assert_int_equal(put_str(&c, "after", "ok"), KV_OK); /* still serving */
    call(&c, MSG_GET, kv_slice_str("after"), kv_slice(NULL, 0), 0, 0, &r);
    assert_int_equal(r.status, KV_OK);
    assert_true(kv_slice_eq(r.value, kv_slice_str("ok")));
    test_free(big);
    client_close(&c);
}

static void test_node_restart_keeps_data_and_node_id(void **state)
{
    (void)state;
    node_proc_t *p = proc_new("node-restart");
    proc_start(p, NULL);
    client_t c;
    client_open(&c, p);
    proto_hello_ok_t ok;
    client_hello(&c, &ok);
    char id1[33];
    memcpy(id1, ok.node_id.data, 32);
    id1[32] = 0;
    char k[32], v[32];
    for (int i = 0; i < 100; i++) {
        snprintf(k, sizeof k, "r-%d", i);
        snprintf(v, sizeof v, "v-%d", i);
        assert_int_equal(put_str(&c, k, v), KV_OK);
    }
    client_close(&c);
    proc_kill(p, SIGTERM);
    assert_int_equal(proc_wait_exit(p, 10000), 0);

    proc_start(p, NULL);
    client_open(&c, p);
    client_hello(&c, &ok);
    assert_memory_equal(ok.node_id.data, id1, 32);
    /* the drain flushed: the restart had nothing to recover */
    assert_int_equal(info_number(&c, "wal_recovered_writes"), 0);
    for (int i = 0; i < 100; i++) {
        snprintf(k, sizeof k, "r-%d", i);
        snprintf(v, sizeof v, "v-%d", i);
        kv_slice_t want = kv_slice_str(v);
        expect_get(&c, kv_slice_str(k), &want);
    }
    client_close(&c);
}

static void test_node_sigterm_answers_every_request_then_exits_0(void **state)
{
    (void)state;
    node_proc_t *p = proc_new("node-drain");
    proc_start(p, NULL);
    client_t c, idle;
    client_open(&c, p);
    client_hello(&c, NULL);
    client_open(&idle, p);
    client_hello(&idle, NULL);
    enum { N = 300 };
    char k[32];
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof k, "d-%d", i);
        queue_req(&c, MSG_PUT, 1 + (uint64_t)i, kv_slice_str(k), kv_slice_str("x"), 0, 0);
    }
    client_flush(&c);
    proc_kill(p, SIGTERM);
    /* /ready turns 503 while draining (or the node is already gone); the
     * signal may still be on its way for the first probe or two. */
    int code = 200;
    for (uint64_t t0 = now_ms(); code == 200 && now_ms() - t0 < 5000;)
        code = http_get(p->admin_port, "/ready", NULL);
    print_message("/ready during the drain: %d\n", code);
    assert_true(code == 503 || code == -1);

    int ok = 0, closed = 0;
    for (int i = 0; i < N; i++) {
        proto_reply_t r;
        if (client_next(&c) != KV_OK)
            fail_msg("reply %d of %d missing (%d OK, %d CLOSED before it)", i, N, ok, closed);
        assert_int_equal(proto_decode_reply(&c.f, &r), KV_OK);
        assert_true(r.id >= 1 && r.id <= N);
        if (r.status == KV_OK) ok++;
        else if (r.status == KV_CLOSED) closed++;
        else fail_msg("unexpected status %s", kv_status_str(r.status));
    }
    assert_int_equal(ok + closed, N);
    print_message("after SIGTERM: %d OK, %d CLOSED\n", ok, closed);
    client_expect_close(&c);
    client_expect_close(&idle);
    assert_int_equal(proc_wait_exit(p, 10000), 0);
    client_close(&c);
    client_close(&idle);

    /* every acknowledged write survived */
    proc_start(p, NULL);
    client_open(&c, p);
    client_hello(&c, NULL);
    int present = 0;
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof k, "d-%d", i);
        proto_reply_t r;
        call(&c, MSG_GET, kv_slice_str(k), kv_slice(NULL, 0), 0, 0, &r);
        if (r.status == KV_OK) present++;
    }
    assert_true(present >= ok);
    client_close(&c);
}

static void test_node_sigkill_loses_no_acknowledged_write(void **state)
{
    (void)state;
    node_proc_t *p = proc_new("node-kill");
    proc_start(p, NULL);
    client_t c;
    client_open(&c, p);
    client_hello(&c, NULL);
    enum { N = 1000 };
    char k[32];
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof k, "kill-%d", i);
        queue_req(&c, MSG_PUT, 1 + (uint64_t)i, kv_slice_str(k), kv_slice_str("durable"), 0, 0);
    }
    client_flush(&c);
    static bool acked[N + 1];
    memset(acked, 0, sizeof acked);
    int nacked = 0;
    for (int i = 0; i < N / 10; i++) {
        proto_reply_t r;
        client_reply(&c, &r);
        assert_int_equal(r.status, KV_OK);
        acked[r.id] = true;
        nacked++;
    }
    proc_kill(p, SIGKILL);
    /* replies already on the wire were acknowledged too */
    for (;;) {
        kv_status_t rc = client_next(&c);
        if (rc != KV_OK) break;
        proto_reply_t r;
        assert_int_equal(proto_decode_reply(&c.f, &r), KV_OK);
        if (r.status == KV_OK && !acked[r.id]) {
            acked[r.id] = true;
            nacked++;
        }
    }
    assert_int_equal(proc_wait_exit(p, 5000), -SIGKILL);
    client_close(&c);

    proc_start(p, NULL);
    client_open(&c, p);
    client_hello(&c, NULL);
    /* no drain, no flush: the restart replayed the WAL */
    uint64_t recovered = info_number(&c, "wal_recovered_writes");
    print_message("writes recovered from the WAL at restart: %" PRIu64 "\n", recovered);
    assert_true(recovered >= (uint64_t)nacked);
    kv_slice_t want = kv_slice_str("durable");
    for (int i = 1; i <= N; i++) {
        if (!acked[i]) continue;
        snprintf(k, sizeof k, "kill-%d", i - 1);
        expect_get(&c, kv_slice_str(k), &want);
    }
    print_message("acknowledged before SIGKILL: %d of %d, all present\n", nacked, N);
    client_close(&c);
}

/* A second, well-behaved client keeps working. */
static void check_good_client(client_t *good, int round)
{
    char k[32];
    snprintf(k, sizeof k, "good-%d", round);
    assert_int_equal(put_str(good, k, "fine"), KV_OK);
    kv_slice_t want = kv_slice_str("fine");
    expect_get(good, kv_slice_str(k), &want);
}

static void test_node_bad_input_gets_errors_and_others_keep_working(void **state)
{
    (void)state;
    node_proc_t *p = proc_new("node-bad");
    proc_start(p, NULL);
    client_t good, c;
    client_open(&good, p);
    client_hello(&good, NULL);
    proto_reply_t r;
    int round = 0;

    /* garbage bytes: a small length, then a body that is not msgpack */
    client_open(&c, p);
    static const uint8_t garbage[] = {0, 0, 0, 5, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1};
    send_all(c.fd, garbage, sizeof garbage);
    client_reply(&c, &r);
    assert_int_equal(r.status, KV_PROTO);
    assert_int_equal(r.id, 0);
    client_expect_close(&c);
    client_close(&c);
    check_good_client(&good, round++);

    /* text where a frame should be (an HTTP request) */
    client_open(&c, p);
    static const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    send_all(c.fd, http, strlen(http));
    client_reply(&c, &r);
    assert_int_equal(r.status, KV_PROTO);
    client_expect_close(&c);
    client_close(&c);
    check_good_client(&good, round++);

    /* a header claiming a length above the limit */
    client_open(&c, p);
    client_hello(&c, NULL);
    static const uint8_t huge[] = {0x7f, 0xff, 0xff, 0xff, 0x93};
    send_all(c.fd, huge, sizeof huge);
    client_reply(&c, &r);
    assert_int_equal(r.status, KV_PROTO);
    assert_int_equal(r.id, 0);
    assert_true(r.message.len > 0);
    client_expect_close(&c);
    client_close(&c);
    check_good_client(&good, round++);

    /* a truncated frame, then disconnect */
    client_open(&c, p);
    client_hello(&c, NULL);
    static const uint8_t part[] = {0, 0, 0, 100, 0x95, 11, 1};
    send_all(c.fd, part, sizeof part);
    client_close(&c);
    check_good_client(&good, round++);

    /* HELLO naming another cluster */
    client_open(&c, p);
    client_hello_as(&c, "other", CAIRN_PROTO_VERSION);
    client_reply(&c, &r);
    assert_int_equal(r.status, KV_INVALID);
    char msg[256];
    snprintf(msg, sizeof msg, "%.*s", (int)r.message.len, (const char *)r.message.data);
    assert_non_null(strstr(msg, "'test'"));
    assert_non_null(strstr(msg, "'other'"));
    client_expect_close(&c);
    client_close(&c);
    check_good_client(&good, round++);

    /* HELLO with an unknown protocol version */
    client_open(&c, p);
    client_hello_as(&c, "test", 99);
    client_reply(&c, &r);
    assert_int_equal(r.status, KV_PROTO);
    client_expect_close(&c);
    client_close(&c);

    /* a request before HELLO */
    client_open(&c, p);
    queue_req(&c, MSG_GET, 5, kv_slice_str("k"), kv_slice(NULL, 0), 0, 0);
    client_flush(&c);
    client_reply(&c, &r);
    assert_int_equal(r.status, KV_PROTO);
    client_expect_close(&c);
    client_close(&c);
    check_good_client(&good, round++);

    /* an oversized key and an empty key: INVALID, the connection stays */
    client_open(&c, p);
    client_hello(&c, NULL);
    size_t big = 65537;
    uint8_t *bigkey = test_malloc(big);
    memset(bigkey, 'k', big);
    call(&c, MSG_PUT, kv_slice(bigkey, big), kv_slice_str("v"), 0, 0, &r);
    test_free(bigkey);
    assert_int_equal(r.status, KV_INVALID);
    assert_true(r.message.len > 0);
    call(&c, MSG_GET, kv_slice(NULL, 0), kv_slice(NULL, 0), 0, 0, &r);
    assert_int_equal(r.status, KV_INVALID);
    /* an unknown request type: PROTO, the connection stays */
    kv_frame_writer_t w;
    kv_frame_begin(&w, &c.out, 77, 4242, 0);
    assert_int_equal(kv_frame_end(&w, 0), KV_OK);
    client_flush(&c);
    client_reply(&c, &r);
    assert_int_equal(r.id, 4242);
    assert_int_equal(r.status, KV_PROTO);
    /* PING, the null request: OK, no value, the connection stays */
    kv_frame_begin(&w, &c.out, MSG_PING, 4241, 0);
    assert_int_equal(kv_frame_end(&w, 0), KV_OK);
    client_flush(&c);
    client_reply(&c, &r);
    assert_int_equal(r.id, 4241);
    assert_int_equal(r.status, KV_OK);
    assert_false(r.has_value);
    /* a known type with arguments of the wrong type: PROTO, stays */
    kv_frame_begin(&w, &c.out, MSG_PUT, 4243, 1);
    msgpack_pack_nil(&w.pk);
    assert_int_equal(kv_frame_end(&w, 0), KV_OK);
    client_flush(&c);
    client_reply(&c, &r);
    assert_int_equal(r.id, 4243);
    assert_int_equal(r.status, KV_PROTO);
    assert_int_equal(put_str(&c, "after-errors", "ok"), KV_OK);
    client_close(&c);
    check_good_client(&good, round++);

    kv_buf_t body = {0};
    assert_int_equal(http_get(p->admin_port, "/metrics", &body), 200);
    const char *t = (const char *)body.data;
    static const char *const reasons[] = {"frame_too_large", "malformed", "before_hello",
                                          "wrong_cluster", "bad_version", "unknown_type",
                                          "bad_request"};
    for (size_t i = 0; i < KV_ARRAY_LEN(reasons); i++) {
        char series[128];
        snprintf(series, sizeof series, "cairn_protocol_errors_total{reason=\"%s\"}", reasons[i]);
        if (!(metric_value(t, series) > 0)) fail_msg("%s not counted", series);
    }
    assert_true(metric_value(t, "cairn_request_errors_total{op=\"put\",status=\"INVALID\"}") > 0);
    assert_true(metric_value(t, "cairn_request_errors_total{op=\"get\",status=\"INVALID\"}") > 0);
    kv_buf_deinit(&body);
    client_close(&good);
}

static void test_node_limits_connections_and_idle_time(void **state)
{
    (void)state;
    node_proc_t *p = proc_new("node-limits");
    static const char *const flags[] = {"--max-connections", "2", "--idle-timeout-ms",
                                        "300", NULL};
    proc_start(p, flags);
    client_t a, b, c;
    client_open(&a, p);
    client_hello(&a, NULL);
    client_open(&b, p);
    client_hello(&b, NULL);
    client_open(&c, p);
    proto_reply_t r;
    client_reply(&c, &r);
    assert_int_equal(r.status, KV_BUSY);
    assert_int_equal(r.id, 0);
    assert_non_null(memmem(r.message.data, r.message.len, "too many connections", 20));
    client_expect_close(&c);
    client_close(&c);
    assert_true(scrape(p, "cairn_connections_rejected_total{reason=\"max_connections\"}") >= 1);

    /* a is kept busy, b goes idle and is closed */
    for (int i = 0; i < 6; i++) {
        assert_int_equal(put_str(&a, "busy", "yes"), KV_OK);
        sleep_ms(100);
    }
    client_expect_close(&b);
    client_close(&b);
    assert_int_equal(put_str(&a, "busy", "still"), KV_OK);
    assert_true(scrape(p, "cairn_connections_rejected_total{reason=\"idle\"}") >= 1);
    client_close(&a);
}

static void test_node_metrics_are_prometheus_text_and_count_requests(void **state)
{
    (void)state;
    node_proc_t *p = proc_new("node-metrics");
    proc_start(p, NULL);
    client_t c;
    client_open(&c, p);
    client_hello(&c, NULL);
    assert_int_equal(put_str(&c, "m", "1"), KV_OK);
    const char *series = "cairn_requests_total{op=\"put\",cl=\"QUORUM\"}";
    double before = scrape(p, series);
    assert_true(before >= 1);
    for (int i = 0; i < 10; i++) assert_int_equal(put_str(&c, "m", "2"), KV_OK);
    expect_get(&c, kv_slice_str("nothing"), NULL);
    assert_true(scrape(p, series) >= before + 10);
    assert_true(scrape(p, "cairn_requests_total{op=\"get\",cl=\"QUORUM\"}") >= 1);

    kv_buf_t body = {0};
    assert_int_equal(http_get(p->admin_port, "/metrics", &body), 200);
    const char *t = (const char *)body.data;
    assert_prometheus_text(t);
    assert_true(metric_value(t, "cairn_connections_open") >= 1);
    assert_true(metric_value(t, "cairn_engine_wal_syncs_total") >= 1);
    assert_true(metric_value(t, "cairn_engine_memtable_bytes") > 0);
    assert_true(metric_value(t, "cairn_engine_tables{level=\"0\"}") >= 0);
    assert_true(metric_value(t, "cairn_request_duration_seconds_count{op=\"put\"}") >= 11);
    kv_buf_deinit(&body);
    client_close(&c);
}

/* Run cairnd to completion with extra flags; its exit code and stderr. */
static int run_cairnd(const char *const *args, kv_buf_t *err)
{
    int pipefd[2];
    assert_int_equal(pipe(pipefd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(pipefd[1], 2);
        close(pipefd[0]);
        close(pipefd[1]);
        const char *argv[32] = {CAIRND_PATH};
        int k = 1;
        for (int i = 0; args[i] && k < 31; i++) argv[k++] = args[i];
        argv[k] = NULL;
        execv(CAIRND_PATH, (char *const *)argv);
        _exit(127);
    }
    close(pipefd[1]);
    char buf[4096];
    ssize_t n;
    while ((n = read(pipefd[0], buf, sizeof buf)) > 0) kv_buf_append(err, buf, (size_t)n);
    close(pipefd[0]);
    kv_buf_append_u8(err, 0);
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_node_config_error_exits_2_naming_the_setting(void **state)
{
    (void)state;
    kv_buf_t err = {0};
    static const char *const args[] = {"--client-port", "abc", NULL};
    assert_int_equal(run_cairnd(args, &err), 2);
    assert_non_null(strstr((const char *)err.data, "cairnd: "));
    assert_non_null(strstr((const char *)err.data, "client_port"));
    kv_buf_deinit(&err);
}

static void test_node_taken_port_exits_1_naming_the_address(void **state)
{
    (void)state;
    node_proc_t *p = proc_new("node-taken");
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(p->client_port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 1), 0);
    char cport[8], pport[8], aport[8];
    snprintf(cport, sizeof cport, "%u", p->client_port);
    snprintf(pport, sizeof pport, "%u", p->peer_port);
    snprintf(aport, sizeof aport, "%u", p->admin_port);
    const char *const args[] = {"--data-dir", p->data_dir, "--client-port", cport,
                                "--peer-port", pport, "--admin-port", aport,
                                "--listen-address", "127.0.0.1", NULL};
    kv_buf_t err = {0};
    int rc = run_cairnd(args, &err);
    close(fd);
    assert_int_equal(rc, 1);
    assert_non_null(strstr((const char *)err.data, cport));
    kv_buf_deinit(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        node_test(test_node_hello_and_info_describe_the_node),
        node_test(test_node_put_get_delete_round_trip),
        node_test(test_node_local_get_returns_the_nodes_own_cell),
        node_test(test_node_binary_keys_and_values_keep_zero_bytes),
        node_test(test_node_answers_500_pipelined_requests_by_id),
        node_test(test_node_slow_reader_gets_every_reply),
        node_test(test_node_restart_keeps_data_and_node_id),
        node_test(test_node_sigterm_answers_every_request_then_exits_0),
        node_test(test_node_sigkill_loses_no_acknowledged_write),
        node_test(test_node_bad_input_gets_errors_and_others_keep_working),
        node_test(test_node_limits_connections_and_idle_time),
        node_test(test_node_metrics_are_prometheus_text_and_count_requests),
        node_test(test_node_config_error_exits_2_naming_the_setting),
        node_test(test_node_taken_port_exits_1_naming_the_address),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
