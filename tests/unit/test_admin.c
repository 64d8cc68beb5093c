/* test_admin.c -- the admin HTTP endpoint, driven over real loopback sockets.
 *
 * The test owns the event base and steps it (EVLOOP_NONBLOCK) while a plain
 * blocking client socket sends raw HTTP/1.1 and reads the answer, so all of
 * admin runs on this one thread, as it does on the node's loop. The port
 * comes from binding a socket to port 0 and closing it; admin_start is
 * retried on KV_IO in case another process took the port meanwhile.
 * Also tests node/json.h, whose only user is the /status document.
 */
#define PROM_CHECK_ONLY
#include "test_metrics.c" /* prom_validate, prom_sample */

#include <arpa/inet.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>

#include "admin.h"
#include "json.h"

/* ---- fixture ------------------------------------------------------------ */

typedef struct fixture {
    struct event_base *base;
    metrics_t *metrics;
    metric_series_t *requests;
    admin_t *admin;
    uint16_t port;
    admin_state_t state;
    int status_calls;
} fixture_t;

static admin_state_t fx_state(void *arg)
{
    return ((fixture_t *)arg)->state;
}

static void fx_status_json(void *arg, kv_buf_t *out)
{
    fixture_t *fx = arg;
    fx->status_calls++;
    kv_buf_append(out, "{\"name\":", 8);
    json_append_str(out, "node \"one\"");
    kv_buf_append(out, ",\"state\":", 9);
    json_append_str(out, fx->state == ADMIN_SERVING ? "serving" : "other");
    kv_buf_append_u8(out, '}');
}

static void fx_refresh(void *arg, metrics_t *m)
{
    fixture_t *fx = arg;
    metrics_gauge_set(metrics_series(m, "cairn_admin_test_state", NULL),
                      (double)fx->state);
}

/* A port nothing listens on right now (it may be taken again at once). */
static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t sl = sizeof sa;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

static void fx_start(fixture_t *fx)
{
    memset(fx, 0, sizeof *fx);
    fx->base = event_base_new();
    assert_non_null(fx->base);
    fx->metrics = metrics_create();
    metrics_register(fx->metrics, "cairn_admin_test_requests_total",
                     "Requests seen by the test.", METRIC_COUNTER, NULL);
    metrics_register(fx->metrics, "cairn_admin_test_state",
                     "Admin state, set by the refresh hook.", METRIC_GAUGE,
                     NULL);
    fx->requests =
        metrics_series(fx->metrics, "cairn_admin_test_requests_total", NULL);
    metrics_set_refresh(fx->metrics, fx_refresh, fx);
    fx->state = ADMIN_SERVING;
    admin_hooks_t hooks = {fx_state, fx_status_json, fx};
    kv_status_t rc = KV_IO;
    for (int attempt = 0; attempt < 20 && rc == KV_IO; attempt++) {
        fx->port = free_port();
        rc = admin_start(fx->base, "127.0.0.1", fx->port, fx->metrics, &hooks,
                         &fx->admin);
    }
    if (rc != KV_OK) fail_msg("admin_start: %s", kv_errmsg());
}

static void fx_stop(fixture_t *fx)
{
    admin_stop(fx->admin);
    metrics_destroy(fx->metrics);
    event_base_free(fx->base);
}

/* ---- a tiny HTTP client ------------------------------------------------- */

typedef struct http_resp {
    int code;
    char headers[4096]; /* status line and headers, NUL-terminated */
    kv_buf_t body;
    kv_buf_t raw; /* everything received */
} http_resp_t;

static int client_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    /* Loopback connects complete from the listen backlog: no loop needed. */
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

static void client_send(int fd, const char *req)
{
    size_t n = strlen(req);
    assert_int_equal(send(fd, req, n, MSG_NOSIGNAL), (ssize_t)n);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Step the loop until `done` says the bytes in `raw` are enough, or EOF. */
static void client_pump(fixture_t *fx, int fd, kv_buf_t *raw,
                        bool (*done)(const kv_buf_t *raw))
{
    uint64_t deadline = now_ms() + 5000;
    for (;;) {
        event_base_loop(fx->base, EVLOOP_NONBLOCK);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 1) == 1) {
            char tmp[4096];
            ssize_t r = recv(fd, tmp, sizeof tmp, 0);
            if (r == 0) return; /* server closed */
            if (r < 0 && errno != EINTR) fail_msg("recv: %s", strerror(errno));
            if (r > 0) kv_buf_append(raw, tmp, (size_t)r);
            if (done && done(raw)) return;
        }
        if (now_ms() > deadline) fail_msg("no answer within 5 s");
    }
}

/* Split raw into code, headers and body. */
static void parse_resp(http_resp_t *r)
{
    const char *s = (const char *)r->raw.data;
    const char *end = s ? memmem(s, r->raw.len, "\r\n\r\n", 4) : NULL;
    if (!end) fail_msg("no header end in %zu bytes", r->raw.len);
    size_t hl = (size_t)(end - s);
    assert_true(hl < sizeof r->headers);
    memcpy(r->headers, s, hl);
    r->headers[hl] = 0;
    assert_int_equal(sscanf(r->headers, "HTTP/1.1 %d ", &r->code), 1);
    kv_buf_init(&r->body);
    kv_buf_append(&r->body, end + 4, r->raw.len - hl - 4);
}

/* The value of header `name` (case-insensitive), or NULL. Static buffer. */
static const char *resp_header(const http_resp_t *r, const char *name)
{
    static char val[256];
    size_t n = strlen(name);
    for (const char *l = strstr(r->headers, "\r\n"); l; l = strstr(l, "\r\n")) {
        l += 2;
        if (!strncasecmp(l, name, n) && l[n] == ':') {
            const char *v = l + n + 1;
            while (*v == ' ') v++;
            const char *e = strstr(v, "\r\n");
            size_t vn = e ? (size_t)(e - v) : strlen(v);
            vn = KV_MIN(vn, sizeof val - 1);
            memcpy(val, v, vn);
            val[vn] = 0;
            return val;
        }
    }
    return NULL;
}

/* One request on a fresh connection, read until the server closes. A POST
 * carries a two-byte body. */
static void http_do(fixture_t *fx, const char *method, const char *path,
                    http_resp_t *r)
{
    bool post = !strcmp(method, "POST");
    char req[512];
    snprintf(req, sizeof req,
             "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
             "%s\r\n%s",
             method, path, post ? "Content-Length: 2\r\n" : "",
             post ? "hi" : "");
    memset(r, 0, sizeof *r);
    int fd = client_connect(fx->port);
    client_send(fd, req);
    client_pump(fx, fd, &r->raw, NULL);
    close(fd);
    parse_resp(r);
}

static void http_get(fixture_t *fx, const char *path, http_resp_t *r)
{
    http_do(fx, "GET", path, r);
}

static void resp_free(http_resp_t *r)
{
    kv_buf_deinit(&r->body);
    kv_buf_deinit(&r->raw);
}

static bool body_is(const http_resp_t *r, const char *want)
{
    return r->body.len == strlen(want) &&
           !memcmp(r->body.data, want, r->body.len);
}

#define assert_body(r, want)                                                   \
    do {                                                                       \
        if (!body_is((r), (want)))                                             \
            fail_msg("body %.*s, want %s", (int)(r)->body.len,                 \
                     (const char *)(r)->body.data, (want));                    \
    } while (0)

/* ---- tests -------------------------------------------------------------- */

static void test_admin_health_is_ok(void **state)
{
    fixture_t fx;
    fx_start(&fx);
    http_resp_t r;
    http_get(&fx, "/health", &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(resp_header(&r, "Content-Type"), "text/plain");
    assert_body(&r, "ok\n");
    resp_free(&r);

    /* Liveness does not depend on readiness. */
    fx.state = ADMIN_DRAINING;
    http_get(&fx, "/health?verbose=1", &r);
    assert_int_equal(r.code, 200);
    resp_free(&r);
    fx_stop(&fx);
}

static void test_admin_ready_follows_the_node_state(void **state)
{
    static const struct {
        admin_state_t st;
        int code;
        const char *body;
    } cases[] = {
        {ADMIN_STARTING, 503, "starting\n"},
        {ADMIN_SERVING, 200, "ready\n"},
        {ADMIN_DRAINING, 503, "draining\n"},
        {ADMIN_REFUSED, 503, "refused by the cluster (see the log)\n"},
        {ADMIN_JOINING, 503, "joining: no other member of the cluster heard from yet\n"},
    };
    fixture_t fx;
    fx_start(&fx);
    for (size_t i = 0; i < KV_ARRAY_LEN(cases); i++) {
        fx.state = cases[i].st;
        http_resp_t r;
        http_get(&fx, "/ready", &r);
        assert_int_equal(r.code, cases[i].code);
        assert_string_equal(resp_header(&r, "Content-Type"), "text/plain");
        assert_body(&r, cases[i].body);
        resp_free(&r);
    }
    fx_stop(&fx);
}

static void test_admin_metrics_are_valid_prometheus_text_that_moves(
    void **state)
{
    fixture_t fx;
    fx_start(&fx);
    metrics_counter_add(fx.requests, 5);
    fx.state = ADMIN_DRAINING;
    http_resp_t r;
    http_get(&fx, "/metrics", &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(resp_header(&r, "Content-Type"),
                        "text/plain; version=0.0.4");
    assert_prom_valid(&r.body);
    assert_true(prom_sample(&r.body, "cairn_admin_test_requests_total") == 5);
    /* the refresh hook ran before rendering */
    assert_true(prom_sample(&r.body, "cairn_admin_test_state") ==
                (double)ADMIN_DRAINING);
    resp_free(&r);

    metrics_counter_add(fx.requests, 2);
    fx.state = ADMIN_SERVING;
    http_get(&fx, "/metrics", &r);
    assert_prom_valid(&r.body);
    assert_true(prom_sample(&r.body, "cairn_admin_test_requests_total") == 7);
    assert_true(prom_sample(&r.body, "cairn_admin_test_state") ==
                (double)ADMIN_SERVING);
    resp_free(&r);
    fx_stop(&fx);
}

static void test_admin_status_is_json_from_the_hook(void **state)
{
    fixture_t fx;
    fx_start(&fx);
    http_resp_t r;
    http_get(&fx, "/status", &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(resp_header(&r, "Content-Type"), "application/json");
    assert_body(&r, "{\"name\":\"node \\\"one\\\"\",\"state\":\"serving\"}\n");
    assert_int_equal(fx.status_calls, 1);
    resp_free(&r);
    fx_stop(&fx);
}

static void test_admin_unknown_paths_are_404(void **state)
{
    static const char *const paths[] = {"/nope", "/", "/health/", "/metricsx",
                                        "/status/x"};
    fixture_t fx;
    fx_start(&fx);
    for (size_t i = 0; i < KV_ARRAY_LEN(paths); i++) {
        http_resp_t r;
        http_get(&fx, paths[i], &r);
        if (r.code != 404) fail_msg("%s: %d", paths[i], r.code);
        assert_string_equal(resp_header(&r, "Content-Type"), "text/plain");
        resp_free(&r);
    }
    /* An unknown path is 404 whatever the method. */
    http_resp_t r;
    http_do(&fx, "POST", "/nope", &r);
    assert_int_equal(r.code, 404);
    resp_free(&r);
    fx_stop(&fx);
}

static void test_admin_methods_other_than_get_and_head_are_405(void **state)
{
    static const char *const methods[] = {"POST", "PUT", "DELETE", "OPTIONS",
                                          "PATCH"};
    fixture_t fx;
    fx_start(&fx);
    for (size_t i = 0; i < KV_ARRAY_LEN(methods); i++) {
        http_resp_t r;
        http_do(&fx, methods[i], "/metrics", &r);
        if (r.code != 405) fail_msg("%s: %d", methods[i], r.code);
        assert_string_equal(resp_header(&r, "Allow"), "GET, HEAD");
        resp_free(&r);
    }
    assert_int_equal(fx.status_calls, 0);
    http_resp_t r;
    http_do(&fx, "POST", "/status", &r);
    assert_int_equal(r.code, 405);
    assert_int_equal(fx.status_calls, 0); /* the hook did not run */
    resp_free(&r);
    fx_stop(&fx);
}

static void test_admin_head_answers_like_get_without_a_body(void **state)
{
    static const char *const paths[] = {"/health", "/ready", "/metrics",
                                        "/status"};
    fixture_t fx;
    fx_start(&fx);
    for (size_t i = 0; i < KV_ARRAY_LEN(paths); i++) {
        http_resp_t get, head;
        http_get(&fx, paths[i], &get);
        http_do(&fx, "HEAD", paths[i], &head);
        assert_int_equal(head.code, get.code);
        assert_string_equal(resp_header(&head, "Content-Type"),
                            resp_header(&get, "Content-Type"));
        if (head.body.len != 0)
            fail_msg("HEAD %s sent %zu body bytes", paths[i], head.body.len);
        char want[32];
        snprintf(want, sizeof want, "%zu", get.body.len);
        assert_string_equal(resp_header(&head, "Content-Length"), want);
        resp_free(&get);
        resp_free(&head);
    }
    fx.state = ADMIN_DRAINING;
    http_resp_t r;
    http_do(&fx, "HEAD", "/ready", &r);
    assert_int_equal(r.code, 503);
    assert_int_equal(r.body.len, 0);
    resp_free(&r);
    fx_stop(&fx);
}

static bool two_responses(const kv_buf_t *raw)
{
    const char *s = (const char *)raw->data;
    const char *first = memmem(s, raw->len, "ok\n", 3);
    return first && memmem(first + 3, raw->len - (size_t)(first + 3 - s),
                           "ready\n", 6) != NULL;
}

static void test_admin_keeps_the_connection_between_requests(void **state)
{
    fixture_t fx;
    fx_start(&fx);
    int fd = client_connect(fx.port);
    client_send(fd, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
                    "GET /ready HTTP/1.1\r\nHost: x\r\n\r\n");
    kv_buf_t raw = {0};
    client_pump(&fx, fd, &raw, two_responses);
    assert_true(two_responses(&raw));
    close(fd);
    kv_buf_deinit(&raw);
    fx_stop(&fx);
}

static bool got_ok(const kv_buf_t *raw)
{
    return raw->len >= 3 && !memcmp(raw->data + raw->len - 3, "ok\n", 3);
}

static void test_admin_stop_closes_open_connections(void **state)
{
    fixture_t fx;
    fx_start(&fx);
    int fd = client_connect(fx.port);
    client_send(fd, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    kv_buf_t raw = {0};
    client_pump(&fx, fd, &raw, got_ok); /* answered; connection kept open */
    assert_true(got_ok(&raw));
    admin_stop(fx.admin);
    fx.admin = NULL;
    char c;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 2000), 1);
    assert_int_equal(recv(fd, &c, 1, 0), 0); /* EOF: the server closed it */
    kv_buf_deinit(&raw);
    close(fd);
    fx_stop(&fx);
}

static void test_admin_port_in_use_fails_with_kv_io_naming_it(void **state)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, 4), 0);
    socklen_t sl = sizeof sa;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    uint16_t port = ntohs(sa.sin_port);

    struct event_base *base = event_base_new();
    metrics_t *m = metrics_create();
    admin_t *a = (admin_t *)0x1; /* must stay untouched on failure */
    kv_errmsg_clear();
    assert_int_equal(admin_start(base, "127.0.0.1", port, m, NULL, &a), KV_IO);
    assert_ptr_equal(a, (admin_t *)0x1);
    char want[32];
    snprintf(want, sizeof want, "127.0.0.1:%u", (unsigned)port);
    if (!strstr(kv_errmsg(), want))
        fail_msg("errmsg '%s' does not name %s", kv_errmsg(), want);

    metrics_destroy(m);
    event_base_free(base);
    close(fd);
}

static void test_admin_without_hooks_is_ready_with_empty_status(void **state)
{
    struct event_base *base = event_base_new();
    metrics_t *m = metrics_create();
    fixture_t fx = {.base = base};
    kv_status_t rc = KV_IO;
    for (int attempt = 0; attempt < 20 && rc == KV_IO; attempt++) {
        fx.port = free_port();
        rc = admin_start(base, "127.0.0.1", fx.port, m, NULL, &fx.admin);
    }
    assert_int_equal(rc, KV_OK);
    http_resp_t r;
    http_get(&fx, "/ready", &r);
    assert_int_equal(r.code, 200);
    resp_free(&r);
    http_get(&fx, "/status", &r);
    assert_body(&r, "{}\n");
    resp_free(&r);
    http_get(&fx, "/metrics", &r); /* empty registry: empty, valid text */
    assert_int_equal(r.code, 200);
    assert_int_equal(r.body.len, 0);
    resp_free(&r);
    admin_stop(fx.admin);
    metrics_destroy(m);
    event_base_free(base);
}

static void assert_json(const char *in, size_t n, const char *want)
{
    kv_buf_t b = {0};
    json_append_strn(&b, in, n);
    kv_buf_append_u8(&b, 0);
    assert_string_equal((const char *)b.data, want);
    kv_buf_deinit(&b);
}

static void test_admin_json_strings_are_escaped_and_valid_utf8(void **state)
{
    assert_json("", 0, "\"\"");
    assert_json("plain", 5, "\"plain\"");
    assert_json("q\"b\\s/", 6, "\"q\\\"b\\\\s/\"");
    assert_json("\n\r\t\b\f", 5, "\"\\n\\r\\t\\b\\f\"");
    assert_json("\x01\x1f", 2, "\"\\u0001\\u001f\"");
    assert_json("a\0b", 3, "\"a\\u0000b\"");
    /* well-formed UTF-8 passes through: é, €, 𝄞 */
    assert_json("\xc3\xa9\xe2\x82\xac\xf0\x9d\x84\x9e", 9,
                "\"\xc3\xa9\xe2\x82\xac\xf0\x9d\x84\x9e\"");
    /* ill-formed bytes become U+FFFD, one per offending byte */
    assert_json("\x80", 1, "\"\xef\xbf\xbd\"");                /* stray */
    assert_json("\xc0\xaf", 2, "\"\xef\xbf\xbd\xef\xbf\xbd\""); /* overlong */
    assert_json("\xed\xa0\x80", 3,
                "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");   /* surrogate */
    assert_json("\xf4\x90\x80\x80", 4,
                "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");
    assert_json("x\xe2\x82", 3, "\"x\xef\xbf\xbd\xef\xbf\xbd\""); /* cut */

    kv_buf_t b = {0};
    json_append_str(&b, NULL);
    json_append_str(&b, "k");
    kv_buf_append_u8(&b, 0);
    assert_string_equal((const char *)b.data, "null\"k\"");
    kv_buf_deinit(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        kv_unit_test(test_admin_health_is_ok),
        kv_unit_test(test_admin_ready_follows_the_node_state),
        kv_unit_test(test_admin_metrics_are_valid_prometheus_text_that_moves),
        kv_unit_test(test_admin_status_is_json_from_the_hook),
        kv_unit_test(test_admin_unknown_paths_are_404),
        kv_unit_test(test_admin_methods_other_than_get_and_head_are_405),
        kv_unit_test(test_admin_head_answers_like_get_without_a_body),
        kv_unit_test(test_admin_keeps_the_connection_between_requests),
        kv_unit_test(test_admin_stop_closes_open_connections),
        kv_unit_test(test_admin_port_in_use_fails_with_kv_io_naming_it),
        kv_unit_test(test_admin_without_hooks_is_ready_with_empty_status),
        kv_unit_test(test_admin_json_strings_are_escaped_and_valid_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
