/* test_cluster.c -- three real cairnd processes on loopback, replication
 * factor 3, driven through libcairn: every consistency level when healthy;
 * one and two nodes stopped (SIGSTOP: a hung process whose sockets stay
 * open; SIGKILL: a dead one); a replica that missed writes brought up to date
 * by a QUORUM read; each node's own copy through LOCAL_GET; a write through
 * a node whose wall clock is hours behind (libfaketime); deadlines; peers
 * refused for another cluster name or replication factor. */
#include "cluster_test_util.h"
#include "cli_test_util.h"

#include <sys/stat.h>

#include "cairn.h"

/* ---- healthy ----------------------------------------------------------- */

static void test_cluster_every_level_on_every_node(void **state)
{
    (void)state;
    tcluster_t c;
    cluster_make(&c, "healthy");
    cluster_start(&c, NULL);
    wait_all_up(&c);
    const cairn_consistency_t cls[] = {CAIRN_ONE, CAIRN_QUORUM, CAIRN_ALL};
    for (int i = 0; i < NODES; i++) {
        for (int l = 0; l < 3; l++) {
            char k[32], v[32];
            snprintf(k, sizeof k, "k-%d-%d", i, l);
            snprintf(v, sizeof v, "v-%d-%d", i, l);
            ASSERT_ST(put_via(&c, i, k, v, cls[l], 2000, NULL), CAIRN_OK);
            /* W + R > RF: an ALL read through any node sees a write that
             * met its level. (A ONE read after a ONE write need not: the
             * first ack may come from another replica before this node's
             * own engine has stored it.) */
            expect_val(&c, (i + l) % NODES, k, CAIRN_ALL, v);
        }
    }
    /* every node stored every ALL write as a replica */
    for (int i = 0; i < NODES; i++)
        assert_true(scrape(c.n[i], "cairn_replica_writes_total") >= NODES);
    /* deletes replicate like writes */
    ASSERT_ST(put_via(&c, 0, "gone", "x", CAIRN_ALL, 2000, NULL), CAIRN_OK);
    cairn_client_t *cc = client_of(&c, 1);
    cairn_request_opts_t q = {.consistency = CAIRN_QUORUM};
    ASSERT_ST(cairn_delete(cc, "gone", 4, &q), CAIRN_OK);
    cairn_close(cc);
    for (int i = 0; i < NODES; i++)
        ASSERT_ST(get_via(&c, i, "gone", CAIRN_ALL, NULL, 0, NULL), CAIRN_NOT_FOUND);
    cluster_stop_clean(&c);
}

/* ---- nodes stopped ----------------------------------------------------- */

static void one_and_two_down(int sig)
{
    tcluster_t c;
    cluster_make(&c, sig == SIGSTOP ? "down-stop" : "down-kill");
    cluster_start(&c, NULL);
    wait_all_up(&c);
    ASSERT_ST(put_via(&c, 0, "k", "v1", CAIRN_ALL, 2000, NULL), CAIRN_OK);

    proc_kill(c.n[2], sig);
    wait_peer(&c, 0, 2, 0);
    wait_peer(&c, 1, 2, 0);
    for (int i = 0; i < 2; i++) {
        char v[16];
        snprintf(v, sizeof v, "v2-%d", i);
        ASSERT_ST(put_via(&c, i, "k", v, CAIRN_QUORUM, 2000, NULL), CAIRN_OK);
        expect_val(&c, 1 - i, "k", CAIRN_QUORUM, v);
        /* ALL fails fast, before sending anything, and says who is down */
        uint64_t t0 = now_ms();
        ASSERT_ST(put_via(&c, i, "k", "never", CAIRN_ALL, 5000, NULL),
                  CAIRN_UNAVAILABLE);
        assert_true(now_ms() - t0 < 2500);
        assert_non_null(strstr(last_err, "n3"));
        ASSERT_ST(get_via(&c, i, "k", CAIRN_ALL, NULL, 0, NULL), CAIRN_UNAVAILABLE);
    }
    expect_val(&c, 0, "k", CAIRN_QUORUM, "v2-1"); /* "never" was not written */

    proc_kill(c.n[1], sig);
    wait_peer(&c, 0, 1, 0);
    ASSERT_ST(put_via(&c, 0, "k", "v3", CAIRN_QUORUM, 2000, NULL), CAIRN_UNAVAILABLE);
    ASSERT_ST(get_via(&c, 0, "k", CAIRN_QUORUM, NULL, 0, NULL), CAIRN_UNAVAILABLE);
    ASSERT_ST(put_via(&c, 0, "k", "v4", CAIRN_ONE, 2000, NULL), CAIRN_OK);
    expect_val(&c, 0, "k", CAIRN_ONE, "v4");
    assert_true(scrape(c.n[0], "cairn_coordinator_unavailable_total") >= 4);
}

static void test_cluster_nodes_stopped_sigstop(void **state)
{
    (void)state;
    one_and_two_down(SIGSTOP);
}

static void test_cluster_nodes_stopped_sigkill(void **state)
{
    (void)state;
    one_and_two_down(SIGKILL);
}

/* ---- read repair ------------------------------------------------------- */

static void test_cluster_quorum_read_repairs_a_stale_replica(void **state)
{
    (void)state;
    tcluster_t c;
    cluster_make(&c, "repair");
    /* hints would bring n3 up to date on their own: this test is about
     * what a read does */
    const char *no_hints[] = {"--hinted-handoff", "off", "--read-repair-chance", "0", NULL};
    cluster_start(&c, no_hints);
    wait_all_up(&c);
    ASSERT_ST(put_via(&c, 0, "k", "old", CAIRN_ALL, 2000, NULL), CAIRN_OK);

    proc_kill(c.n[2], SIGSTOP);
    wait_peer(&c, 0, 2, 0);
    ASSERT_ST(put_via(&c, 0, "k", "new", CAIRN_QUORUM, 2000, NULL), CAIRN_OK);
    proc_kill(c.n[2], SIGCONT);
    wait_all_up(&c);

    /* n3 missed the write (hints are off): a read at ONE through n3 is
     * answered by n3's own engine */
    expect_val(&c, 2, "k", CAIRN_ONE, "old");
    double repairs0 = scrape(c.n[2], "cairn_coordinator_read_repairs_total");
    /* a QUORUM read through n3 asks n3 and one more replica, returns the
     * newer value and writes it back to n3 before answering */
    expect_val(&c, 2, "k", CAIRN_QUORUM, "new");
    assert_true(scrape(c.n[2], "cairn_coordinator_read_repairs_total") >= repairs0 + 1);
    expect_val(&c, 2, "k", CAIRN_ONE, "new");
    cluster_stop_clean(&c);
}

/* ---- LOCAL_GET: each node's own copy ----------------------------------- */

/* Write k=v through node i at cl and return the write's HLC stamp. */
static uint64_t put_stamped(tcluster_t *c, int i, const char *k, const char *v,
                            cairn_consistency_t cl)
{
    cairn_client_t *cc = client_of(c, i);
    cairn_request_opts_t o = {.consistency = cl, .timeout_ms = 2000};
    cairn_future_t *f = cairn_put_async(cc, k, strlen(k), v, strlen(v), &o);
    cairn_value_t out;
    ASSERT_ST(cairn_future_wait(f, &out), CAIRN_OK);
    uint64_t ts = out.timestamp;
    assert_true(ts > 0);
    cairn_value_free(&out);
    cairn_future_free(f);
    cairn_close(cc);
    return ts;
}

/* Node i's own cell for k: its status, and the cell in *out on CAIRN_OK. */
static cairn_status_t local_via(tcluster_t *c, int i, const char *k, cairn_cell_t *out)
{
    cairn_client_t *cc = client_of(c, i);
    cairn_status_t st = cairn_local_get(cc, k, strlen(k), out);
    snprintf(last_err, sizeof last_err, "%s", cairn_last_error(cc));
    cairn_close(cc);
    return st;
}

static void expect_local_value(tcluster_t *c, int i, const char *k, const char *want,
                               uint64_t want_ts)
{
    cairn_cell_t cell;
    ASSERT_ST(local_via(c, i, k, &cell), CAIRN_OK);
    assert_false(cell.tombstone);
    if (cell.len != strlen(want) || memcmp(cell.data, want, cell.len) != 0)
        fail_msg("%s's own cell for %s: '%.*s', want '%s'", c->names[i], k,
                 (int)cell.len, (const char *)cell.data, want);
    assert_int_equal(cell.timestamp, want_ts);
    assert_int_equal(cell.expire_ms, 0);
    cairn_cell_free(&cell);
}

/* LOCAL_GET answers from the asked node's engine alone: with hints off, a
 * replica that missed a write still shows its old cell while the others
 * show the new one, stamps included; a QUORUM read through it repairs it;
 * a delete leaves the same tombstone everywhere; `cairn local-get` prints
 * the cell. */
static void test_cluster_local_get_shows_each_nodes_own_cell(void **state)
{
    (void)state;
    tcluster_t c;
    cluster_make(&c, "local-get");
    const char *no_hints[] = {"--hinted-handoff", "off", "--read-repair-chance", "0", NULL};
    cluster_start(&c, no_hints);
    wait_all_up(&c);
    uint64_t ts_old = put_stamped(&c, 0, "k", "old", CAIRN_ALL);
    for (int i = 0; i < NODES; i++) expect_local_value(&c, i, "k", "old", ts_old);

    proc_kill(c.n[2], SIGSTOP);
    wait_peer(&c, 0, 2, 0);
    uint64_t ts_new = put_stamped(&c, 0, "k", "new", CAIRN_QUORUM);
    assert_true(ts_new > ts_old);
    proc_kill(c.n[2], SIGCONT);
    wait_all_up(&c);
    expect_local_value(&c, 0, "k", "new", ts_new);
    expect_local_value(&c, 1, "k", "new", ts_new);
    expect_local_value(&c, 2, "k", "old", ts_old); /* no coordination, no repair */
    expect_local_value(&c, 2, "k", "old", ts_old);

    const char *path = CAIRN_CLI_PATH;
    char host[32], stamp[48];
    snprintf(host, sizeof host, "127.0.0.1:%u", c.n[2]->client_port);
    kv_buf_t out = {0}, err = {0};
    const char *lg[] = {"-H", host, "--cluster", c.cluster, "local-get", "k", NULL};
    assert_int_equal(run_cli(path, lg, NULL, 0, &out, &err), 0);
    kv_buf_append_u8(&out, 0);
    assert_non_null(strstr((const char *)out.data, "cell:      value\n"));
    snprintf(stamp, sizeof stamp, "timestamp: %llu (", (unsigned long long)ts_old);
    assert_non_null(strstr((const char *)out.data, stamp));
    assert_non_null(strstr((const char *)out.data, "expires:   never\n"));
    assert_non_null(strstr((const char *)out.data, "value:     old\n"));

    /* a QUORUM read through n3 repairs n3's own copy before answering */
    expect_val(&c, 2, "k", CAIRN_QUORUM, "new");
    expect_local_value(&c, 2, "k", "new", ts_new);

    /* a delete at ALL: the same tombstone on every node */
    cairn_client_t *cc = client_of(&c, 1);
    cairn_request_opts_t all = {.consistency = CAIRN_ALL, .timeout_ms = 2000};
    cairn_future_t *f = cairn_delete_async(cc, "k", 1, &all);
    cairn_value_t dv;
    ASSERT_ST(cairn_future_wait(f, &dv), CAIRN_OK);
    uint64_t ts_del = dv.timestamp;
    assert_true(ts_del > ts_new);
    cairn_value_free(&dv);
    cairn_future_free(f);
    cairn_close(cc);
    for (int i = 0; i < NODES; i++) {
        cairn_cell_t cell;
        ASSERT_ST(local_via(&c, i, "k", &cell), CAIRN_OK);
        assert_true(cell.tombstone);
        assert_null(cell.data);
        assert_int_equal(cell.len, 0);
        assert_int_equal(cell.timestamp, ts_del);
        cairn_cell_free(&cell);
    }
    assert_int_equal(run_cli(path, lg, NULL, 0, &out, &err), 0);
    kv_buf_append_u8(&out, 0);
    assert_non_null(strstr((const char *)out.data, "cell:      tombstone\n"));
    assert_null(strstr((const char *)out.data, "value:"));

    /* a key no node stores: NotFound everywhere, exit 1 from the tool */
    for (int i = 0; i < NODES; i++) {
        cairn_cell_t cell;
        memset(&cell, 0x5a, sizeof cell);
        ASSERT_ST(local_via(&c, i, "never-written", &cell), CAIRN_NOT_FOUND);
        assert_null(cell.data);
        assert_int_equal(cell.timestamp, 0);
    }
    const char *nf[] = {"-H", host, "--cluster", c.cluster, "local-get", "never-written",
                        NULL};
    assert_int_equal(run_cli(path, nf, NULL, 0, &out, &err), 1);
    kv_buf_append_u8(&err, 0);
    assert_non_null(strstr((const char *)err.data, "cairn: NotFound: "));
    kv_buf_deinit(&out);
    kv_buf_deinit(&err);
    cluster_stop_clean(&c);
}

/* ---- deadlines --------------------------------------------------------- */

static void test_cluster_write_times_out_when_replicas_hang(void **state)
{
    (void)state;
    tcluster_t c;
    cluster_make(&c, "deadline");
    /* a long peer timeout: the hung nodes still count as up */
    for (int i = 0; i < NODES; i++) {
        const char *extra[] = {"--peer-timeout-ms", "20000", NULL};
        node_spawn(&c, i, extra, NULL);
    }
    for (int i = 0; i < NODES; i++) proc_wait_ready(c.n[i]);
    wait_all_up(&c);
    proc_kill(c.n[1], SIGSTOP);
    proc_kill(c.n[2], SIGSTOP);
    uint64_t t0 = now_ms();
    ASSERT_ST(put_via(&c, 0, "k", "v", CAIRN_QUORUM, 300, NULL), CAIRN_TIMEOUT);
    uint64_t took = now_ms() - t0;
    assert_true(took >= 250 && took < 3000);
    assert_non_null(strstr(last_err, "may have been applied"));
    ASSERT_ST(get_via(&c, 0, "k", CAIRN_ALL, NULL, 0, NULL), CAIRN_TIMEOUT);
    /* ONE is met by n1 itself */
    ASSERT_ST(put_via(&c, 0, "k2", "v", CAIRN_ONE, 300, NULL), CAIRN_OK);
    proc_kill(c.n[1], SIGCONT);
    proc_kill(c.n[2], SIGCONT);
    /* late replies are dropped cleanly and the cluster goes on */
    ASSERT_ST(put_via(&c, 0, "k", "v2", CAIRN_ALL, 5000, NULL), CAIRN_OK);
    expect_val(&c, 1, "k", CAIRN_ALL, "v2");
    cluster_stop_clean(&c);
}

/* A peer that stops reading (hung, but not yet past peer_timeout_ms) fills
 * its bounded output queue; requests that need it then fail Overloaded
 * instead of growing the node's memory. */
static void test_cluster_full_peer_queue_answers_overloaded(void **state)
{
    (void)state;
    tcluster_t c;
    cluster_make(&c, "queue");
    const char *extra[] = {"--peer-timeout-ms", "60000", "--max-value-bytes",
                           "32KiB", "--max-key-bytes", "1KiB",
                           "--max-frame-bytes", "64KiB",
                           "--peer-queue-bytes", "64KiB", NULL};
    for (int i = 0; i < NODES; i++) node_spawn(&c, i, extra, NULL);
    for (int i = 0; i < NODES; i++) proc_wait_ready(c.n[i]);
    wait_all_up(&c);
    proc_kill(c.n[1], SIGSTOP);
    proc_kill(c.n[2], SIGSTOP);
    char *big = kv_malloc(30000);
    memset(big, 'x', 29999);
    big[29999] = 0;
    cairn_client_t *cc = client_of(&c, 0);
    cairn_request_opts_t one = {.consistency = CAIRN_ONE, .timeout_ms = 2000};
    cairn_request_opts_t quorum = {.consistency = CAIRN_QUORUM, .timeout_ms = 50};
    cairn_status_t st = CAIRN_OK;
    int i;
    /* ONE is met by n1 itself; every write is also queued to n2 and n3
     * until their queues (and the kernel's socket buffers) are full. A
     * QUORUM probe every 25 writes times out (the hung peers never ack)
     * until the queues are full. */
    for (i = 1; i <= 5000; i++) {
        char k[32];
        int kl = snprintf(k, sizeof k, "fill-%d", i);
        assert_int_equal(cairn_put(cc, k, (size_t)kl, big, 29999, &one), CAIRN_OK);
        if (i % 25) continue;
        st = cairn_put(cc, "q", 1, "v", 1, &quorum);
        if (st != CAIRN_TIMEOUT) break;
    }
    print_message("queues full after %d writes of 30 KB\n", i);
    if (st != CAIRN_OVERLOADED)
        fail_msg("QUORUM write: %s (%s), want Overloaded", cairn_status_name(st),
                 cairn_last_error(cc));
    assert_non_null(strstr(cairn_last_error(cc), "queue full"));
    assert_true(scrape(c.n[0], "cairn_peer_queue_full_total") >= 1);
    cairn_close(cc);
    kv_free(big);
    /* once the peers read again, their queues drain and QUORUM works */
    proc_kill(c.n[1], SIGCONT);
    proc_kill(c.n[2], SIGCONT);
    uint64_t t0 = now_ms();
    while (put_via(&c, 0, "q", "after", CAIRN_QUORUM, 2000, NULL) != CAIRN_OK) {
        if (now_ms() - t0 > 20000) fail_msg("QUORUM did not recover: %s", last_err);
        sleep_ms(50);
    }
    expect_val(&c, 1, "q", CAIRN_ALL, "after");
    cluster_stop_clean(&c);
}

/* ---- clock skew (libfaketime) ------------------------------------------ */

static const char *faketime_lib(void)
{
    static const char *const paths[] = {
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/faketime/libfaketime.so.1",
    };
    for (size_t i = 0; i < KV_ARRAY_LEN(paths); i++) {
        struct stat st;
        if (stat(paths[i], &st) == 0) return paths[i];
    }
    fail_msg("libfaketime not found: scripts/setup.sh installs the faketime package");
    return NULL;
}

/* n2's wall clock runs three hours behind the others'. */
static void start_with_n2_behind(tcluster_t *c, const char *max_offset)
{
    static char preload[256];
    snprintf(preload, sizeof preload, "LD_PRELOAD=%s", faketime_lib());
    const char *env[] = {preload, "FAKETIME=-3h", "FAKETIME_DONT_FAKE_MONOTONIC=1",
                         "FAKETIME_NO_CACHE=1",
                         /* libfaketime is preloaded ahead of ASan's runtime */
                         "ASAN_OPTIONS=verify_asan_link_order=0:detect_leaks=1",
                         NULL};
    const char *extra[] = {"--max-clock-offset-ms", max_offset, NULL};
    /* libfaketime cannot initialise under jemalloc: n2 runs the same daemon
     * built on the C library's allocator */
    c->n[1]->bin = CAIRND_LIBC_PATH;
    for (int i = 0; i < NODES; i++) node_spawn(c, i, extra, i == 1 ? env : NULL);
    /* serving, not ready: a refused n2 knows it is the odd clock out */
    for (int i = 0; i < NODES; i++) proc_wait_serving(c->n[i]);
}

/* With the default max_clock_offset_ms, the nodes refuse a peer three hours
 * off: n2 is cut off, learns that its clock is the odd one out, refuses
 * writes ClockSkew instead of stamping them in the past, and reports itself
 * not ready; the earlier write through n1 stays. */
static void test_cluster_skewed_node_is_refused(void **state)
{
    (void)state;
    tcluster_t c;
    cluster_make(&c, "skew-refused");
    start_with_n2_behind(&c, "500");
    wait_peer(&c, 0, 2, 1);
    wait_peer(&c, 2, 0, 1);
    ASSERT_ST(put_via(&c, 0, "k", "from-n1", CAIRN_QUORUM, 2000, NULL), CAIRN_OK);
    /* n2 never completes a handshake */
    uint64_t t0 = now_ms();
    while (scrape(c.n[1], "cairn_peer_clock_skew_refused_total") < 1 ||
           scrape(c.n[1], "cairn_peer_handshakes_refused_total{reason=\"clock_skew\"}") < 1) {
        if (now_ms() - t0 > 20000) fail_msg("no clock-skew refusal seen");
        sleep_ms(20);
    }
    assert_int_equal(scrape(c.n[0], "cairn_peer_up{peer=\"n2\"}"), 0);
    assert_int_equal(scrape(c.n[1], "cairn_peer_up{peer=\"n1\"}"), 0);
    /* Once both peers disagree with n2's clock, n2 knows it is the outlier:
     * its writes fail ClockSkew at once (nothing is stamped in the past),
     * saying so, and it reports itself not ready. Before that they fail
     * Unavailable, naming the clock. */
    t0 = now_ms();
    for (;;) {
        cairn_status_t st = put_via(&c, 1, "k", "from-n2", CAIRN_QUORUM, 2000, NULL);
        if (st == CAIRN_CLOCK_SKEW) {
            assert_non_null(strstr(last_err, "this node's clock disagrees with 2 of 2"));
            break;
        }
        ASSERT_ST(st, CAIRN_UNAVAILABLE);
        assert_non_null(strstr(last_err, "clock"));
        if (now_ms() - t0 > 20000) fail_msg("n2 never saw itself as the outlier: %s", last_err);
        sleep_ms(50);
    }
    kv_buf_t body = {0};
    assert_int_equal(http_get(c.n[1]->admin_port, "/ready", &body), 503);
    kv_buf_deinit(&body);
    assert_int_equal(http_get(c.n[0]->admin_port, "/ready", &body), 200);
    kv_buf_deinit(&body);
    /* the majority goes on writing */
    ASSERT_ST(put_via(&c, 2, "k2", "from-n3", CAIRN_QUORUM, 2000, NULL), CAIRN_OK);
    expect_val(&c, 0, "k", CAIRN_QUORUM, "from-n1");
    expect_val(&c, 2, "k", CAIRN_QUORUM, "from-n1");
}

/* With a tolerance above the skew, n2 merges the others' clocks: its write,
 * which starts after n1's finished, is stamped after it and wins, although
 * n2's wall clock is three hours behind. */
static void test_cluster_write_through_a_lagging_clock_is_not_lost(void **state)
{
    (void)state;
    tcluster_t c;
    cluster_make(&c, "skew-merged");
    start_with_n2_behind(&c, "86400000");
    wait_all_up(&c);
    for (int round = 0; round < 5; round++) {
        char a[32], b[32];
        snprintf(a, sizeof a, "n1-%d", round);
        snprintf(b, sizeof b, "n2-%d", round);
        ASSERT_ST(put_via(&c, 0, "k", a, CAIRN_QUORUM, 2000, NULL), CAIRN_OK);
        ASSERT_ST(put_via(&c, 1, "k", b, CAIRN_QUORUM, 2000, NULL), CAIRN_OK);
        for (int i = 0; i < NODES; i++) expect_val(&c, i, "k", CAIRN_QUORUM, b);
    }
}

/* ---- peers that do not belong ------------------------------------------ */

static void test_cluster_refuses_other_cluster_and_other_ring(void **state)
{
    (void)state;
    tcluster_t c;
    cluster_make(&c, "refuse");
    node_spawn(&c, 0, NULL, NULL);
    /* n2 claims another cluster name, n3 another replication factor */
    snprintf(c.cluster, sizeof c.cluster, "other");
    node_spawn(&c, 1, NULL, NULL);
    snprintf(c.cluster, sizeof c.cluster, "test");
    const char *rf[] = {"--replication-factor", "2", NULL};
    node_spawn(&c, 2, rf, NULL);
    /* each is a founder of its own view: refused by the others, each still
     * serves (n1 alone at ONE below); n2 hears from no member of its
     * cluster "other", so it never becomes ready */
    for (int i = 0; i < NODES; i++) proc_wait_serving(c.n[i]);
    uint64_t t0 = now_ms();
    while (scrape(c.n[0], "cairn_peer_handshakes_refused_total{reason=\"cluster_name\"}") < 1 ||
           scrape(c.n[0], "cairn_peer_handshakes_refused_total{reason=\"config\"}") < 1) {
        if (now_ms() - t0 > 20000) fail_msg("n1 did not refuse both peers");
        sleep_ms(20);
    }
    assert_int_equal(scrape(c.n[0], "cairn_peer_up{peer=\"n2\"}"), 0);
    assert_int_equal(scrape(c.n[0], "cairn_peer_up{peer=\"n3\"}"), 0);
    /* n1's own dials are refused too, and Unavailable says why (the first
     * dial may have found a peer not listening yet: wait for a redial) */
    t0 = now_ms();
    for (;;) {
        ASSERT_ST(put_via(&c, 0, "k", "v", CAIRN_QUORUM, 2000, NULL),
                  CAIRN_UNAVAILABLE);
        if (strstr(last_err, "cluster name mismatch") &&
            strstr(last_err, "replication_factor differs"))
            break;
        if (now_ms() - t0 > 20000)
            fail_msg("Unavailable without the reasons: %s", last_err);
        sleep_ms(50);
    }
    ASSERT_ST(put_via(&c, 0, "k", "v", CAIRN_ONE, 2000, NULL), CAIRN_OK);
    /* n2 serves but is not ready: no member of its cluster "other" exists */
    kv_buf_t body = {0};
    assert_int_equal(http_get(c.n[1]->admin_port, "/ready", &body), 503);
    assert_non_null(strstr((const char *)body.data, "joining"));
    kv_buf_deinit(&body);
}

/* ---- readiness: joined ------------------------------------------------- */

/* /ready of node i is 503 "joining" for the whole of ms milliseconds while
 * /health answers 200 (the process runs and keeps trying its seeds). */
static void expect_joining_for(tcluster_t *c, int i, int ms)
{
    kv_buf_t body = {0};
    uint64_t t0 = now_ms();
    int probes = 0;
    while (now_ms() - t0 < (uint64_t)ms) {
        int code = http_get(c->n[i]->admin_port, "/ready", &body);
        if (code != 503 || !strstr((const char *)body.data, "joining"))
            fail_msg("%s: /ready %d '%s' after %" PRIu64 " ms alone, want 503 joining",
                     c->names[i], code, body.data ? (const char *)body.data : "",
                     now_ms() - t0);
        assert_int_equal(http_get(c->n[i]->admin_port, "/health", NULL), 200);
        probes++;
        sleep_ms(50);
    }
    kv_buf_deinit(&body);
    assert_true(probes > 3);
}

/* Containers start in any order: a founder started before its peers serves
 * but is not ready until it hears from one of them; once in touch it stays
 * ready when they go (it still serves ONE), and a restart while they are
 * gone waits for them again. */
static void test_cluster_node_is_ready_once_it_hears_from_its_cluster(void **state)
{
    (void)state;
    tcluster_t c;
    cluster_make(&c, "joined");
    node_spawn(&c, 0, NULL, NULL);
    proc_wait_serving(c.n[0]);
    expect_joining_for(&c, 0, 1500);
    ASSERT_ST(put_via(&c, 0, "early", "v", CAIRN_ONE, 2000, NULL), CAIRN_OK);

    node_spawn(&c, 1, NULL, NULL);
    node_spawn(&c, 2, NULL, NULL);
    for (int i = 0; i < NODES; i++) proc_wait_ready(c.n[i]);

    /* its peers die: n1 stays ready */
    for (int i = 1; i < NODES; i++) {
        proc_kill(c.n[i], SIGKILL);
        proc_wait_exit(c.n[i], 5000);
    }
    wait_peer(&c, 0, 1, 0);
    wait_peer(&c, 0, 2, 0);
    assert_int_equal(http_get(c.n[0]->admin_port, "/ready", NULL), 200);

    /* restarted alone: joining again, until n3 is back */
    proc_kill(c.n[0], SIGTERM);
    assert_int_equal(proc_wait_exit(c.n[0], 10000), 0);
    node_spawn(&c, 0, NULL, NULL);
    proc_wait_serving(c.n[0]);
    expect_joining_for(&c, 0, 1000);
    node_spawn(&c, 2, NULL, NULL);
    proc_wait_ready(c.n[2]);
    proc_wait_ready(c.n[0]);
    expect_val(&c, 0, "early", CAIRN_ONE, "v");
}

/* ---- the tools ---------------------------------------------------------- */

static int count_lines_with(const char *text, const char *a, const char *b)
{
    int n = 0;
    for (const char *line = text; line && *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        char buf[512];
        snprintf(buf, sizeof buf, "%.*s", (int)KV_MIN(len, sizeof buf - 1), line);
        if (strstr(buf, a) && (!b || strstr(buf, b))) n++;
        line = nl ? nl + 1 : NULL;
    }
    return n;
}

static void test_cluster_status_ring_and_endpoints_tools(void **state)
{
    (void)state;
    tcluster_t c;
    cluster_make(&c, "tools");
    cluster_start(&c, NULL);
    wait_all_up(&c);
    char hp[32];
    snprintf(hp, sizeof hp, "127.0.0.1:%u", c.n[0]->client_port);
    kv_buf_t out = {0}, err = {0};

    const char *status[] = {"-H", hp, "--cluster", "test", "status", NULL};
    assert_int_equal(run_cli(CAIRN_CLI_PATH, status, NULL, 0, &out, &err), 0);
    kv_buf_append_u8(&out, 0);
    for (int i = 0; i < NODES; i++)
        assert_int_equal(count_lines_with((char *)out.data, "UN  ", c.names[i]), 1);
    assert_non_null(strstr((char *)out.data, "Cluster: test, 3 nodes, replication factor 3"));

    /* ping: three round trips, then the summary; a bad count is refused */
    const char *ping[] = {"-H", hp, "--cluster", "test", "ping", "3", NULL};
    assert_int_equal(run_cli(CAIRN_CLI_PATH, ping, NULL, 0, &out, &err), 0);
    kv_buf_append_u8(&out, 0);
    assert_int_equal(count_lines_with((char *)out.data, "ping ", " us"), 3);
    assert_non_null(strstr((char *)out.data, "3 pings: min "));
    const char *badping[] = {"-H", hp, "--cluster", "test", "ping", "0", NULL};
    assert_int_equal(run_cli(CAIRN_CLI_PATH, badping, NULL, 0, &out, &err), 2);

    const char *ring[] = {"-H", hp, "--cluster", "test", "ring", NULL};
    assert_int_equal(run_cli(CAIRN_CLI_PATH, ring, NULL, 0, &out, &err), 0);
    kv_buf_append_u8(&out, 0);
    const char *bal = strstr((char *)out.data, "most/least ownership ");
    assert_non_null(bal);
    double ratio = strtod(bal + strlen("most/least ownership "), NULL);
    print_message("ring balance (3 nodes, 16 tokens): %.3f\n", ratio);
    assert_true(ratio >= 1.0 && ratio <= 1.3);
    /* every token listed: 16 per node */
    int per_node[NODES] = {0};
    for (const char *line = (char *)out.data; line && *line;) {
        const char *nl = strchr(line, '\n');
        char tok[32], name[16];
        if (sscanf(line, "%31[0-9] %15s", tok, name) == 2 && name[0] == 'n' &&
            name[1] >= '1' && name[1] < '1' + NODES)
            per_node[name[1] - '1']++;
        line = nl ? nl + 1 : NULL;
    }
    for (int i = 0; i < NODES; i++) assert_int_equal(per_node[i], 16);

    const char *ep[] = {"-H", hp, "--cluster", "test", "endpoints", "some-key", NULL};
    assert_int_equal(run_cli(CAIRN_CLI_PATH, ep, NULL, 0, &out, &err), 0);
    kv_buf_append_u8(&out, 0);
    for (int i = 0; i < NODES; i++)
        assert_int_equal(count_lines_with((char *)out.data, c.names[i], "UP"), 1);

    /* a dead node shows as DOWN, and in the key's endpoints */
    proc_kill(c.n[2], SIGKILL);
    wait_peer(&c, 0, 2, 0);
    /* status shows gossip's verdict, which takes a few seconds (SWIM
     * suspicion, phi) where the connection drop was immediate */
    uint64_t t0 = now_ms();
    for (;;) {
        assert_int_equal(run_cli(CAIRN_CLI_PATH, status, NULL, 0, &out, &err), 0);
        kv_buf_append_u8(&out, 0);
        if (count_lines_with((char *)out.data, "DN  ", "n3") == 1) break;
        if (now_ms() - t0 > 15000) fail_msg("n3 not DN after 15 s:\n%s", out.data);
        sleep_ms(200);
    }
    assert_int_equal(count_lines_with((char *)out.data, "UN  ", "n1"), 1);
    assert_int_equal(run_cli(CAIRN_CLI_PATH, ep, NULL, 0, &out, &err), 0);
    kv_buf_append_u8(&out, 0);
    assert_int_equal(count_lines_with((char *)out.data, "n3", "DOWN"), 1);
    kv_buf_deinit(&out);
    kv_buf_deinit(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        node_test(test_cluster_every_level_on_every_node),
        node_test(test_cluster_nodes_stopped_sigstop),
        node_test(test_cluster_nodes_stopped_sigkill),
        node_test(test_cluster_quorum_read_repairs_a_stale_replica),
        node_test(test_cluster_local_get_shows_each_nodes_own_cell),
        node_test(test_cluster_write_times_out_when_replicas_hang),
        node_test(test_cluster_full_peer_queue_answers_overloaded),
        node_test(test_cluster_skewed_node_is_refused),
        node_test(test_cluster_write_through_a_lagging_clock_is_not_lost),
        node_test(test_cluster_refuses_other_cluster_and_other_ring),
        node_test(test_cluster_node_is_ready_once_it_hears_from_its_cluster),
        node_test(test_cluster_status_ring_and_endpoints_tools),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
