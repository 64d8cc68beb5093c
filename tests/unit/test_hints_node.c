/* test_hints_node.c -- hinted handoff between real cairnd processes, three
 * nodes, replication factor 3:
 *   - n3 is SIGKILLed, 10,000 keys are written at QUORUM through n1, n3
 *     restarts; once n1's hints have drained, n1 and n2 are killed and every
 *     key is read at ONE from n3 alone: all present with the right value;
 *   - the same with n1 (the coordinator holding the hints) SIGKILLed in the
 *     middle of a throttled replay and restarted: the replay resumes;
 *   - hints past max_hint_window_ms: not written for a node down longer than
 *     the window, not delivered once older than it, and both counted in
 *     INFO, /metrics and `cairn hints`;
 *   - max_hints_bytes: past it hints are refused and counted, and every
 *     write still succeeds at QUORUM. */
#include "cluster_test_util.h"
#include "cli_test_util.h"

#define KEYS 10000

/* One INFO item of node i as a number (-1 when missing). */
typedef struct info_want {
    const char *name;
    double value;
} info_want_t;

static void info_one(const char *name, const char *value, void *arg)
{
    info_want_t *w = arg;
    if (!strcmp(name, w->name)) w->value = strtod(value, NULL);
}

static double info_num(tcluster_t *c, int i, const char *name)
{
    cairn_client_t *cc = client_of(c, i);
    info_want_t w = {name, -1};
    cairn_status_t st = cairn_info(cc, info_one, &w);
    cairn_close(cc);
    if (st != CAIRN_OK) fail_msg("INFO from %s: %s", c->names[i], cairn_status_name(st));
    return w.value;
}

/* Write keys [from, to) through node i at cl, 64 requests in flight. */
static void put_range(tcluster_t *c, int i, const char *prefix, int from, int to,
                      cairn_consistency_t cl)
{
    cairn_client_t *cc = client_of(c, i);
    cairn_request_opts_t o = {.consistency = cl, .timeout_ms = 5000};
    enum { WINDOW = 64 };
    cairn_future_t *f[WINDOW] = {0};
    int fk[WINDOW];
    for (int k = from; k < to + WINDOW; k++) {
        int slot = k % WINDOW;
        if (f[slot]) {
            cairn_value_t v = {0};
            cairn_status_t st = cairn_future_wait(f[slot], &v);
            if (st != CAIRN_OK)
                fail_msg("put %s%05d via %s: %s (%s)", prefix, fk[slot], c->names[i],
                         cairn_status_name(st), cairn_future_error(f[slot]));
            cairn_value_free(&v);
            cairn_future_free(f[slot]);
            f[slot] = NULL;
        }
        if (k >= to) continue;
        char key[32], val[48];
        int kl = snprintf(key, sizeof key, "%s%05d", prefix, k);
        int vl = snprintf(val, sizeof val, "value-of-%s%05d", prefix, k);
        f[slot] = cairn_put_async(cc, key, (size_t)kl, val, (size_t)vl, &o);
        fk[slot] = k;
        assert_non_null(f[slot]);
    }
    cairn_close(cc);
}

/* Read keys [from, to) at ONE through node i: present with the right value
 * (want_present) or all absent. */
static void check_range(tcluster_t *c, int i, const char *prefix, int from, int to,
                        bool want_present)
{
    cairn_client_t *cc = client_of(c, i);
    cairn_request_opts_t o = {.consistency = CAIRN_ONE, .timeout_ms = 5000};
    int bad = 0, first_bad = -1;
    for (int k = from; k < to; k++) {
        char key[32], want[48];
        int kl = snprintf(key, sizeof key, "%s%05d", prefix, k);
        int wl = snprintf(want, sizeof want, "value-of-%s%05d", prefix, k);
        cairn_value_t v = {0};
        cairn_status_t st = cairn_get(cc, key, (size_t)kl, &o, &v);
        bool ok = want_present ? st == CAIRN_OK && v.len == (size_t)wl &&
                                     memcmp(v.data, want, (size_t)wl) == 0
                               : st == CAIRN_NOT_FOUND;
        if (!ok && bad++ == 0) first_bad = k;
        cairn_value_free(&v);
    }
    cairn_close(cc);
    if (bad)
        fail_msg("%d of %d keys %s on %s at ONE (first %s%05d)", bad, to - from,
                 want_present ? "missing or wrong" : "present", c->names[i],
                 prefix, first_bad);
}

/* Wait until node i holds no hints (its replays have drained). */
static void wait_drained(tcluster_t *c, int i, int timeout_ms)
{
    uint64_t t0 = now_ms();
    double pending = -1;
    while (now_ms() - t0 < (uint64_t)timeout_ms) {
        pending = info_num(c, i, "hints_pending");
        if (pending == 0) return;
        sleep_ms(100);
    }
    fail_msg("%s still holds %.0f hints after %d ms (see %s)", c->names[i],
             pending, timeout_ms, c->n[i]->log);
}

/* Wait until gossip on node `from` holds `want` dead members. */
static void wait_gossip_dead(tcluster_t *c, int from, double want)
{
    uint64_t t0 = now_ms();
    while (now_ms() - t0 < 30000) {
        if (scrape(c->n[from], "cairn_gossip_members{state=\"dead\"}") == want) return;
        sleep_ms(50);
    }
    fail_msg("%s's gossip did not count %.0f dead members within 30 s", c->names[from], want);
}

/* Kill n1 and n2 and wait until n3 no longer counts them as replicas, so a
 * read at ONE through n3 is answered by n3's own engine. */
static void leave_n3_alone(tcluster_t *c)
{
    proc_kill(c->n[0], SIGKILL);
    proc_kill(c->n[1], SIGKILL);
    proc_wait_exit(c->n[0], 10000);
    proc_wait_exit(c->n[1], 10000);
    wait_peer(c, 2, 0, 0);
    wait_peer(c, 2, 1, 0);
}

static void n3_restart(tcluster_t *c)
{
    node_spawn(c, 2, NULL, NULL);
    proc_wait_ready(c->n[2]);
    wait_peer(c, 0, 2, 1);
}

/* ---- replay to a restarted replica ------------------------------------ */

static void test_hints_node_replayed_to_a_restarted_replica(void **state)
{
    (void)state;
    tcluster_t c;
    cluster_make(&c, "hints-replay");
    cluster_start(&c, NULL);
    wait_all_up(&c);
    proc_kill(c.n[2], SIGKILL);
    proc_wait_exit(c.n[2], 10000);
    wait_peer(&c, 0, 2, 0);
    put_range(&c, 0, "hk", 0, KEYS, CAIRN_QUORUM);
    /* the coordinator holds exactly one hint per write, all for n3 */
    assert_true(info_num(&c, 0, "hints_written") == KEYS);
    assert_true(info_num(&c, 0, "hints_pending") == KEYS);
    assert_true(info_num(&c, 1, "hints_written") == 0);

    n3_restart(&c);
    uint64_t t0 = now_ms();
    wait_drained(&c, 0, 60000);
    print_message("hints: %d delivered in %" PRIu64 " ms after n3 was back\n", KEYS,
                  now_ms() - t0);
    assert_true(info_num(&c, 0, "hints_replayed") == KEYS);
    double stored = scrape(c.n[2], "cairn_hints_received_total{result=\"stored\"}");
    double superseded = scrape(c.n[2], "cairn_hints_received_total{result=\"superseded\"}");
    assert_true(stored + superseded >= KEYS);
    assert_true(scrape(c.n[0], "cairn_hints_replayed_total") == KEYS);
    assert_true(scrape(c.n[0], "cairn_hints_pending") == 0);

    leave_n3_alone(&c);
    check_range(&c, 2, "hk", 0, KEYS, true);
}

/* ---- the coordinator restarts in the middle of a replay --------------- */

static void test_hints_node_replay_resumes_after_the_coordinator_restarts(void **state)
{
    (void)state;
    tcluster_t c;
    cluster_make(&c, "hints-resume");
    /* slow enough that the replay of 10,000 hints (~0.5 MB) takes a while */
    const char *slow[] = {"--hint-replay-bytes-per-sec", "48KiB", NULL};
    node_spawn(&c, 0, slow, NULL);
    node_spawn(&c, 1, NULL, NULL);
    node_spawn(&c, 2, NULL, NULL);
    for (int i = 0; i < NODES; i++) proc_wait_ready(c.n[i]);
    wait_all_up(&c);
    proc_kill(c.n[2], SIGKILL);
    proc_wait_exit(c.n[2], 10000);
    wait_peer(&c, 0, 2, 0);
    put_range(&c, 0, "rk", 0, KEYS, CAIRN_QUORUM);
    n3_restart(&c);

    /* let part of the replay happen, then kill the coordinator */
    uint64_t t0 = now_ms();
    double replayed = 0;
    while (now_ms() - t0 < 30000) {
        replayed = info_num(&c, 0, "hints_replayed");
        if (replayed >= 1000) break;
        sleep_ms(50);
    }
    assert_true(replayed >= 1000);
    assert_true(replayed < KEYS);
    proc_kill(c.n[0], SIGKILL);
    proc_wait_exit(c.n[0], 10000);

    /* back, at full speed: it picks up where the acknowledged cursor is */
    node_spawn(&c, 0, NULL, NULL);
    proc_wait_ready(c.n[0]);
    double left = info_num(&c, 0, "hints_pending");
    print_message("hints: %.0f delivered before the coordinator was killed, %.0f "
                  "pending after its restart\n", replayed, left);
    assert_true(left > 0 && left <= KEYS - replayed + 1000);
    wait_drained(&c, 0, 60000);
    leave_n3_alone(&c);
    check_range(&c, 2, "rk", 0, KEYS, true);
}

/* ---- the hint window --------------------------------------------------- */

static void test_hints_node_past_the_window_are_neither_written_nor_delivered(void **state)
{
    (void)state;
    tcluster_t c;
    cluster_make(&c, "hints-window");
    const char *win[] = {"--max-hint-window-ms", "3000", NULL};
    for (int i = 0; i < NODES; i++) node_spawn(&c, i, win, NULL);
    for (int i = 0; i < NODES; i++) proc_wait_ready(c.n[i]);
    wait_all_up(&c);
    proc_kill(c.n[2], SIGKILL);
    proc_wait_exit(c.n[2], 10000);
    wait_peer(&c, 0, 2, 0);
    /* A: written while n3 has only just gone: hinted */
    put_range(&c, 0, "wa", 0, 100, CAIRN_QUORUM);
    assert_true(info_num(&c, 0, "hints_written") == 100);
    /* B: written once gossip has had n3 down for longer than the window */
    wait_gossip_dead(&c, 0, 1);
    sleep_ms(3500);
    put_range(&c, 0, "wb", 0, 100, CAIRN_QUORUM);
    assert_true(info_num(&c, 0, "hints_written") == 100);
    assert_true(info_num(&c, 0, "hints_refused_window") == 100);
    assert_true(scrape(c.n[0], "cairn_hints_refused_total{reason=\"window\"}") == 100);

    /* n3 returns; A's hints are older than the window by now */
    n3_restart(&c);
    wait_drained(&c, 0, 30000);
    assert_true(info_num(&c, 0, "hints_expired") == 100);
    assert_true(info_num(&c, 0, "hints_replayed") == 0);
    assert_true(scrape(c.n[0], "cairn_hints_expired_total") == 100);

    /* `cairn hints` says so too: n1's row has expired 100, past-window 100 */
    char hp[32];
    snprintf(hp, sizeof hp, "127.0.0.1:%u", c.n[0]->client_port);
    const char *args[] = {"--host", hp, "--cluster", c.cluster, "hints", NULL};
    kv_buf_t out = {0}, err = {0};
    int rc = run_cli(CAIRN_CLI_PATH, args, NULL, 0, &out, &err);
    kv_buf_append_u8(&out, 0);
    kv_buf_append_u8(&err, 0);
    if (rc != 0) fail_msg("cairn hints exited %d: %s", rc, (const char *)err.data);
    const char *text = (const char *)out.data;
    assert_non_null(strstr(text, "No hints are waiting for delivery."));
    const char *row = strstr(text, "\nn1 ");
    assert_non_null(row);
    /* Node Pending Written Delivered Expired Past-window ... */
    char name[8];
    unsigned pending, written, delivered, expired, past;
    assert_int_equal(sscanf(row + 1, "%7s %u %u %u %u %u", name, &pending, &written,
                            &delivered, &expired, &past), 6);
    assert_int_equal(pending, 0);
    assert_int_equal(written, 100);
    assert_int_equal(delivered, 0);
    assert_int_equal(expired, 100);
    assert_int_equal(past, 100);
    kv_buf_deinit(&out);
    kv_buf_deinit(&err);

    leave_n3_alone(&c);
    check_range(&c, 2, "wa", 0, 100, false);
    check_range(&c, 2, "wb", 0, 100, false);
}

/* ---- bounded hint space ------------------------------------------------ */

static void test_hints_node_full_hint_space_refuses_hints_not_writes(void **state)
{
    (void)state;
    tcluster_t c;
    cluster_make(&c, "hints-full");
    const char *small[] = {"--max-hints-bytes", "64KiB", NULL};
    node_spawn(&c, 0, small, NULL);
    node_spawn(&c, 1, NULL, NULL);
    node_spawn(&c, 2, NULL, NULL);
    for (int i = 0; i < NODES; i++) proc_wait_ready(c.n[i]);
    wait_all_up(&c);
    proc_kill(c.n[2], SIGKILL);
    proc_wait_exit(c.n[2], 10000);
    wait_peer(&c, 0, 2, 0);
    put_range(&c, 0, "fk", 0, 3000, CAIRN_QUORUM); /* every write succeeds */
    double written = info_num(&c, 0, "hints_written");
    double refused = info_num(&c, 0, "hints_refused_full");
    print_message("hints: %.0f written, %.0f refused at max_hints_bytes 64KiB\n",
                  written, refused);
    assert_true(written > 100);
    assert_true(refused > 0);
    assert_true(written + refused == 3000);
    assert_true(info_num(&c, 0, "hints_pending_bytes") <= 64 * 1024);
    assert_true(scrape(c.n[0], "cairn_hints_refused_total{reason=\"full\"}") == refused);
    /* what was kept is delivered */
    n3_restart(&c);
    wait_drained(&c, 0, 30000);
    assert_true(info_num(&c, 0, "hints_replayed") == written);
    cluster_stop_clean(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        node_test(test_hints_node_replayed_to_a_restarted_replica),
        node_test(test_hints_node_replay_resumes_after_the_coordinator_restarts),
        node_test(test_hints_node_past_the_window_are_neither_written_nor_delivered),
        node_test(test_hints_node_full_hint_space_refuses_hints_not_writes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
