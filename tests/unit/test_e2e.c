/* test_e2e.c -- a real cairnd driven the way users drive it: through
 * libcairn (blocking calls, futures, per-request overrides, failover) and
 * through the cairn command-line tool (exit codes, stdin values). */
#include "node_test_util.h"
#include "cli_test_util.h"

#include "cairn.h"

#ifndef CAIRN_CLI_PATH
#error "CAIRN_CLI_PATH must name the cairn binary"
#endif

static cairn_client_t *connect_to(const char *points)
{
    cairn_options_t o;
    cairn_options_init(&o);
    o.contact_points = points;
    o.cluster_name = "test";
    cairn_client_t *c = NULL;
    cairn_status_t st = cairn_connect(&o, &c);
    if (st != CAIRN_OK) fail_msg("connect %s: %s: %s", points, cairn_status_name(st),
                                 cairn_connect_error());
    return c;
}

static void hostport(const node_proc_t *p, char *buf, size_t n)
{
    snprintf(buf, n, "127.0.0.1:%u", p->client_port);
}

static void test_e2e_libcairn_put_get_delete_and_overrides(void **state)
{
    (void)state;
    node_proc_t *p = proc_new("e2e-lib");
    proc_start(p, NULL);
    char hp[64];
    hostport(p, hp, sizeof hp);
    cairn_client_t *c = connect_to(hp);

    assert_int_equal(cairn_put(c, "k", 1, "v1", 2, NULL), CAIRN_OK);
    cairn_value_t v;
    assert_int_equal(cairn_get(c, "k", 1, NULL, &v), CAIRN_OK);
    assert_int_equal(v.len, 2);
    assert_memory_equal(v.data, "v1", 2);
    uint64_t ts1 = v.timestamp;
    cairn_value_free(&v);

    /* every consistency level is met by a single node */
    cairn_request_opts_t all = {.consistency = CAIRN_ALL, .timeout_ms = 1000};
    cairn_request_opts_t one = {.consistency = CAIRN_ONE};
    assert_int_equal(cairn_put(c, "k", 1, "v2", 2, &all), CAIRN_OK);
    assert_int_equal(cairn_get(c, "k", 1, &one, &v), CAIRN_OK);
    assert_memory_equal(v.data, "v2", 2);
    assert_true(v.timestamp > ts1); /* a later write, a later stamp */
    cairn_value_free(&v);

    /* binary keys and values */
    const char bk[] = {0, 'a', 0}, bv[] = {'x', 0, 0, 'y'};
    assert_int_equal(cairn_put(c, bk, sizeof bk, bv, sizeof bv, NULL), CAIRN_OK);
    assert_int_equal(cairn_get(c, bk, sizeof bk, NULL, &v), CAIRN_OK);
    assert_int_equal(v.len, sizeof bv);
    assert_memory_equal(v.data, bv, sizeof bv);
    cairn_value_free(&v);

    assert_int_equal(cairn_delete(c, "k", 1, NULL), CAIRN_OK);
    assert_int_equal(cairn_get(c, "k", 1, NULL, &v), CAIRN_NOT_FOUND);

    /* an oversized key is refused with a reason, and the client goes on */
    char *big = kv_malloc(70000);
    memset(big, 'k', 70000);
    assert_int_equal(cairn_put(c, big, 70000, "v", 1, NULL), CAIRN_INVALID);
    assert_non_null(strstr(cairn_last_error(c), "key"));
    kv_free(big);
    assert_int_equal(cairn_put(c, "after", 5, "ok", 2, NULL), CAIRN_OK);
    cairn_close(c);
}

/* 2,000 futures in flight on one connection, then their results. */
static void test_e2e_libcairn_pipelines_futures(void **state)
{
    (void)state;
    node_proc_t *p = proc_new("e2e-async");
    proc_start(p, NULL);
    char hp[64];
    hostport(p, hp, sizeof hp);
    cairn_client_t *c = connect_to(hp);
    enum { N = 2000 };
    cairn_future_t **f = kv_malloc(N * sizeof *f);
    char k[32], val[32];
    for (int i = 0; i < N; i++) {
        int kn = snprintf(k, sizeof k, "key-%d", i), vn = snprintf(val, sizeof val, "value-%d", i);
        f[i] = cairn_put_async(c, k, (size_t)kn, val, (size_t)vn, NULL);
        assert_non_null(f[i]);
    }
    for (int i = 0; i < N; i++) {
        assert_int_equal(cairn_future_wait(f[i], NULL), CAIRN_OK);
        cairn_future_free(f[i]);
    }
    for (int i = 0; i < N; i++) {
        int kn = snprintf(k, sizeof k, "key-%d", i);
        f[i] = cairn_get_async(c, k, (size_t)kn, NULL);
    }
    for (int i = 0; i < N; i++) {
        cairn_value_t v;
        assert_int_equal(cairn_future_wait(f[i], &v), CAIRN_OK);
        int vn = snprintf(val, sizeof val, "value-%d", i);
        assert_int_equal(v.len, (size_t)vn);
        assert_memory_equal(v.data, val, (size_t)vn);
        cairn_value_free(&v);
        cairn_future_free(f[i]);
    }
    kv_free(f);
    cairn_close(c);
}

/* With two nodes as contact points, the client moves to the second when the
 * first dies, and a write acknowledged before a SIGKILL is there after the
 * restart. */
static void test_e2e_libcairn_fails_over_and_acked_writes_survive_sigkill(void **state)
{
    (void)state;
    node_proc_t *a = proc_new("e2e-a"), *b = proc_new("e2e-b");
    proc_start(a, NULL);
    proc_start(b, NULL);
    char points[128], ha[64], hb[64];
    hostport(a, ha, sizeof ha);
    hostport(b, hb, sizeof hb);
    snprintf(points, sizeof points, "%s,%s", ha, hb);
    cairn_client_t *c = connect_to(points);
    assert_int_equal(cairn_put(c, "durable", 7, "yes", 3, NULL), CAIRN_OK);
    proc_kill(a, SIGKILL);
    proc_wait_exit(a, 5000);
    /* the next request may fail on the lost connection; then b answers */
    cairn_status_t st = cairn_put(c, "moved", 5, "to-b", 4, NULL);
    if (st != CAIRN_OK) {
        assert_int_equal(st, CAIRN_CONNECTION);
        assert_int_equal(cairn_put(c, "moved", 5, "to-b", 4, NULL), CAIRN_OK);
    }
    cairn_close(c);

    proc_start(a, NULL); /* same data directory */
    c = connect_to(ha);
    cairn_value_t v;
    assert_int_equal(cairn_get(c, "durable", 7, NULL, &v), CAIRN_OK);
    assert_memory_equal(v.data, "yes", 3);
    cairn_value_free(&v);
    cairn_close(c);
    c = connect_to(hb);
    assert_int_equal(cairn_get(c, "moved", 5, NULL, &v), CAIRN_OK);
    cairn_value_free(&v);
    cairn_close(c);
}

/* Run the cairn tool with stdin `in` (may be NULL). */
static int cli(const char *in, kv_buf_t *out, kv_buf_t *err, const char *const *args)
{
    return run_cli(CAIRN_CLI_PATH, args, in, in ? strlen(in) : 0, out, err);
}

static bool buf_has(const kv_buf_t *b, const char *s)
{
    return b->len && memmem(b->data, b->len, s, strlen(s)) != NULL;
}

static void test_e2e_cli_against_a_node(void **state)
{
    (void)state;
    node_proc_t *p = proc_new("e2e-cli");
    proc_start(p, NULL);
    char hp[64];
    hostport(p, hp, sizeof hp);
    kv_buf_t out = {0}, err = {0};
    const char *put[] = {"-H", hp, "--cluster", "test", "put", "color", "blue", NULL};
    assert_int_equal(cli(NULL, &out, &err, put), 0);
    const char *get[] = {"-H", hp, "--cluster", "test", "-c", "ALL", "get", "color", NULL};
    assert_int_equal(cli(NULL, &out, &err, get), 0);
    assert_true(buf_has(&out, "blue"));
    const char *put_stdin[] = {"-H", hp, "--cluster", "test", "put", "poem", "-", NULL};
    assert_int_equal(cli("roses are red\n", &out, &err, put_stdin), 0);
    const char *get_poem[] = {"-H", hp, "--cluster", "test", "get", "poem", NULL};
    assert_int_equal(cli(NULL, &out, &err, get_poem), 0);
    assert_int_equal(out.len, strlen("roses are red\n"));
    const char *del[] = {"-H", hp, "--cluster", "test", "del", "color", NULL};
    assert_int_equal(cli(NULL, &out, &err, del), 0);
    assert_int_equal(cli(NULL, &out, &err, get), 1); /* not found */
    assert_true(buf_has(&err, "NotFound"));
    const char *info[] = {"-H", hp, "--cluster", "test", "info", NULL};
    assert_int_equal(cli(NULL, &out, &err, info), 0);
    assert_true(buf_has(&out, "node_id"));
    assert_true(buf_has(&out, "serving"));
    /* errors: wrong cluster, bad consistency level, nobody listening */
    const char *wrong[] = {"-H", hp, "--cluster", "other", "get", "x", NULL};
    assert_int_equal(cli(NULL, &out, &err, wrong), 2);
    assert_true(buf_has(&err, "Invalid"));
    assert_true(buf_has(&err, "other"));
    const char *badcl[] = {"-H", hp, "--cluster", "test", "-c", "MOST", "get", "x", NULL};
    assert_int_equal(cli(NULL, &out, &err, badcl), 2);
    char dead[64];
    snprintf(dead, sizeof dead, "127.0.0.1:%u", free_port());
    const char *nobody[] = {"-H", dead, "get", "x", NULL};
    assert_int_equal(cli(NULL, &out, &err, nobody), 2);
    assert_true(buf_has(&err, "ConnectionError"));
    kv_buf_deinit(&out);
    kv_buf_deinit(&err);
}

/* `cairn ready` is the container health check: exit 0 only when /ready
 * answers 200, 1 when the node is not ready or cannot be reached, 2 for a
 * bad argument; the reason goes to stderr. */
static void test_e2e_cli_ready_follows_the_node(void **state)
{
    (void)state;
    node_proc_t *p = proc_new("e2e-ready");
    proc_start(p, NULL);
    kv_buf_t out = {0}, err = {0};
    char admin[64], byname[64];
    snprintf(admin, sizeof admin, "127.0.0.1:%u", p->admin_port);
    snprintf(byname, sizeof byname, "localhost:%u", p->admin_port);
    const char *ready[] = {"ready", admin, NULL};
    assert_int_equal(cli(NULL, &out, &err, ready), 0);
    assert_int_equal(out.len, 6);
    assert_memory_equal(out.data, "ready\n", 6);
    const char *named[] = {"ready", byname, NULL};
    assert_int_equal(cli(NULL, &out, &err, named), 0);
    /* no argument: 127.0.0.1 and the port in CAIRN_ADMIN_PORT (what a
     * container's health check gets from the node's environment) */
    char port[8];
    snprintf(port, sizeof port, "%u", p->admin_port);
    setenv("CAIRN_ADMIN_PORT", port, 1);
    const char *bare[] = {"ready", NULL};
    int rc = cli(NULL, &out, &err, bare);
    setenv("CAIRN_ADMIN_PORT", "x", 1);
    int bad_env = cli(NULL, &out, &err, bare);
    unsetenv("CAIRN_ADMIN_PORT");
    assert_int_equal(rc, 0);
    assert_int_equal(bad_env, 2);

    /* a founder whose other founder never starts serves but is not ready */
    node_proc_t *q = proc_new("e2e-ready-alone");
    char initial[128], qadmin[64];
    snprintf(initial, sizeof initial, "solo=127.0.0.1:%u,ghost=127.0.0.1:%u",
             q->peer_port, free_port());
    const char *extra[] = {"--node-name", "solo", "--initial-cluster", initial, NULL};
    proc_spawn(q, extra);
    proc_wait_serving(q);
    snprintf(qadmin, sizeof qadmin, "127.0.0.1:%u", q->admin_port);
    const char *alone[] = {"ready", qadmin, NULL};
    assert_int_equal(cli(NULL, &out, &err, alone), 1);
    assert_int_equal(out.len, 0);
    assert_true(buf_has(&err, "Unavailable"));
    assert_true(buf_has(&err, "joining"));

    /* nobody listening; a listener that never answers, within -t */
    char dead[64];
    snprintf(dead, sizeof dead, "127.0.0.1:%u", free_port());
    const char *nobody[] = {"ready", dead, NULL};
    assert_int_equal(cli(NULL, &out, &err, nobody), 1);
    assert_true(buf_has(&err, "ConnectionError"));
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in la = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(lfd, (struct sockaddr *)&la, sizeof la), 0);
    assert_int_equal(listen(lfd, 4), 0);
    socklen_t llen = sizeof la;
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&la, &llen), 0);
    char mute[64];
    snprintf(mute, sizeof mute, "127.0.0.1:%u", ntohs(la.sin_port));
    const char *silent[] = {"-t", "300", "ready", mute, NULL};
    uint64_t t0 = now_ms();
    assert_int_equal(cli(NULL, &out, &err, silent), 1);
    uint64_t took = now_ms() - t0;
    close(lfd);
    assert_true(buf_has(&err, "Timeout"));
    assert_true(took < 2000);

    /* bad arguments */
    const char *badport[] = {"ready", "127.0.0.1:http", NULL};
    assert_int_equal(cli(NULL, &out, &err, badport), 2);
    const char *two[] = {"ready", admin, admin, NULL};
    assert_int_equal(cli(NULL, &out, &err, two), 2);

    /* draining, then gone: not ready */
    proc_kill(p, SIGTERM);
    assert_int_equal(proc_wait_exit(p, 10000), 0);
    assert_int_equal(cli(NULL, &out, &err, ready), 1);
    kv_buf_deinit(&out);
    kv_buf_deinit(&err);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        node_test(test_e2e_libcairn_put_get_delete_and_overrides),
        node_test(test_e2e_libcairn_pipelines_futures),
        node_test(test_e2e_libcairn_fails_over_and_acked_writes_survive_sigkill),
        node_test(test_e2e_cli_against_a_node),
        node_test(test_e2e_cli_ready_follows_the_node),
    };
    return cmocka_run_group_tests_name("e2e", tests, NULL, NULL);
}
