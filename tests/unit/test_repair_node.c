/* test_repair_node.c -- anti-entropy repair between real cairnd processes,
 * three nodes, replication factor 3, hinted handoff off (so hints cannot do
 * repair's work):
 *   - n3 is stopped; 20,000 keys are written and 2,000 of the older keys
 *     deleted at QUORUM; n3 restarts and `repair` runs on it; then n1 and
 *     n2 stop and every key is read at ONE from n3 alone: every new value
 *     is there and every deleted key is gone;
 *   - a second repair finds identical replicas: no leaf differs and no
 *     cell moves;
 *   - a repair cut short by a restart of the node running it is run again
 *     and leaves the replicas identical (a third run finds nothing).
 */
#include "node_test_util.h"

#include "cairn.h"

#define OLD 4000
#define NEW 20000
#define DELETED 2000

typedef struct rcl {
    node_proc_t *n[3];
    char names[3][8];
    char initial[256];
} rcl_t;

static void rcl_make(rcl_t *c, const char *tag)
{
    memset(c, 0, sizeof *c);
    int len = 0;
    for (int i = 0; i < 3; i++) {
        char dir[64];
        snprintf(dir, sizeof dir, "%s-n%d", tag, i + 1);
        c->n[i] = proc_new(dir);
        snprintf(c->names[i], sizeof c->names[i], "n%d", i + 1);
        len += snprintf(c->initial + len, sizeof c->initial - (size_t)len,
                        "%sn%d=127.0.0.1:%u", i ? "," : "", i + 1, c->n[i]->peer_port);
    }
}

static void rcl_spawn(rcl_t *c, int i, const char *const *extra)
{
    const char *args[32] = {"--node-name", c->names[i], "--initial-cluster", c->initial,
                            "--replication-factor", "3", "--peer-timeout-ms", "1000",
                            "--hinted-handoff", "off", "--request-timeout-ms", "5000"};
    int k = 12;
    for (int j = 0; extra && extra[j] && k < 31; j++) args[k++] = extra[j];
    args[k] = NULL;
    proc_spawn(c->n[i], args);
}

static cairn_client_t *client(rcl_t *c, int i)
{
    cairn_options_t o;
    cairn_options_init(&o);
    char hp[32];
    snprintf(hp, sizeof hp, "127.0.0.1:%u", c->n[i]->client_port);
    o.contact_points = hp;
    o.cluster_name = "test";
    o.timeout_ms = 10000;
    cairn_client_t *cc = NULL;
    cairn_status_t st = cairn_connect(&o, &cc);
    if (st != CAIRN_OK) fail_msg("connect %s: %s", hp, cairn_connect_error());
    return cc;
}

/* Wait until node `via` has working links to the nodes listed. */
static void wait_links(rcl_t *c, int via, const int *to, int n, int want)
{
    for (int k = 0; k < n; k++) {
        char series[64];
        snprintf(series, sizeof series, "cairn_peer_up{peer=\"%s\"} %d", c->names[to[k]], want);
        uint64_t t0 = now_ms();
        bool ok = false;
        while (!ok && now_ms() - t0 < 30000) {
            kv_buf_t body = {0};
            if (http_get(c->n[via]->admin_port, "/metrics", &body) == 200) {
                kv_buf_append_u8(&body, 0);
                ok = strstr((const char *)body.data, series) != NULL;
            }
            kv_buf_deinit(&body);
            if (!ok) sleep_ms(50);
        }
        if (!ok) fail_msg("%s: no %s within 30 s", c->names[via], series);
    }
}

typedef struct info_get {
    const char *name;
    char value[320];
} info_get_t;

static void info_cb(const char *name, const char *value, void *arg)
{
    info_get_t *g = arg;
    if (!strcmp(name, g->name)) snprintf(g->value, sizeof g->value, "%s", value);
}

static unsigned long long info_u(rcl_t *c, int i, const char *name, char *text, size_t cap)
{
    cairn_client_t *cc = client(c, i);
    info_get_t g = {.name = name};
    assert_int_equal(cairn_info(cc, info_cb, &g), CAIRN_OK);
    cairn_close(cc);
    if (text) snprintf(text, cap, "%s", g.value);
    return strtoull(g.value, NULL, 10);
}

/* Run repair on node i and wait for it; returns the leaves that differed. */
static unsigned long long repair_on(rcl_t *c, int i, unsigned long long *in,
                                    unsigned long long *out, uint64_t *ms)
{
    cairn_client_t *cc = client(c, i);
    cairn_value_t m;
    uint64_t t0 = now_ms();
    cairn_status_t st = cairn_admin(cc, "repair", "", &m);
    if (st != CAIRN_OK) fail_msg("repair on %s: %s", c->names[i], cairn_last_error(cc));
    cairn_value_free(&m);
    cairn_close(cc);
    char state[320] = "running";
    while (!strcmp(state, "running") && now_ms() - t0 < 300000) {
        sleep_ms(100);
        info_u(c, i, "repair_state", state, sizeof state);
    }
    if (ms) *ms = now_ms() - t0;
    char result[320];
    info_u(c, i, "repair_result", result, sizeof result);
    if (strcmp(state, "done")) fail_msg("repair on %s: %s: %s", c->names[i], state, result);
    print_message("repair on %s: %s\n", c->names[i], result);
    if (in) *in = info_u(c, i, "repair_keys_in", NULL, 0);
    if (out) *out = info_u(c, i, "repair_keys_out", NULL, 0);
    return info_u(c, i, "repair_leaves_differing", NULL, 0);
}

/* Write keys [from, to) with prefix and value "v<round>-<k>", or delete. */
static void write_range(rcl_t *c, int via, int from, int to, int round, bool del)
{
    cairn_client_t *cc = client(c, via);
    cairn_request_opts_t o = {.consistency = CAIRN_QUORUM, .timeout_ms = 10000};
    enum { W = 64 };
    cairn_future_t *f[W] = {0};
    for (int k = from; k < to + W; k++) {
        int s = k % W;
        if (f[s]) {
            cairn_value_t v = {0};
            cairn_status_t st = cairn_future_wait(f[s], &v);
            if (st != CAIRN_OK) fail_msg("%s: %s", del ? "delete" : "put", cairn_status_name(st));
            cairn_value_free(&v);
            cairn_future_free(f[s]);
            f[s] = NULL;
        }
        if (k >= to) continue;
        char key[16], val[32];
        snprintf(key, sizeof key, "rk%05d", k);
        snprintf(val, sizeof val, "v%d-%d", round, k);
        f[s] = del ? cairn_delete_async(cc, key, strlen(key), &o)
                   : cairn_put_async(cc, key, strlen(key), val, strlen(val), &o);
    }
    cairn_close(cc);
}

/* Read every key at ONE through node i; count missing, wrong, resurrected. */
static void check_one(rcl_t *c, int i, int *bad_out)
{
    cairn_client_t *cc = client(c, i);
    cairn_request_opts_t o = {.consistency = CAIRN_ONE, .timeout_ms = 10000};
    int bad = 0;
    for (int k = 0; k < NEW; k++) {
        char key[16], want[32];
        snprintf(key, sizeof key, "rk%05d", k);
        bool deleted = k < DELETED;
        snprintf(want, sizeof want, "v2-%d", k);
        cairn_value_t v = {0};
        cairn_status_t st = cairn_get(cc, key, strlen(key), &o, &v);
        bool ok = deleted ? st == CAIRN_NOT_FOUND
                          : st == CAIRN_OK && v.len == strlen(want) &&
                                !memcmp(v.data, want, v.len);
        if (!ok && bad++ < 3)
            fprintf(stderr, "%s on %s at ONE: %s %.*s\n", key, c->names[i],
                    cairn_status_name(st), (int)v.len, v.data ? (const char *)v.data : "");
        cairn_value_free(&v);
    }
    cairn_close(cc);
    *bad_out = bad;
}

static void test_repair_node_brings_back_a_node_that_missed_writes_and_deletes(void **state)
{
    (void)state;
    rcl_t c;
    rcl_make(&c, "rep");
    for (int i = 0; i < 3; i++) rcl_spawn(&c, i, NULL);
    for (int i = 0; i < 3; i++) proc_wait_ready(c.n[i]);
    const int others[] = {1, 2};
    wait_links(&c, 0, others, 2, 1);
    write_range(&c, 0, 0, OLD, 1, false); /* the older keys, on every node */

    proc_kill(c.n[2], SIGTERM);
    assert_int_equal(proc_wait_exit(c.n[2], 20000), 0);
    const int n3[] = {2};
    wait_links(&c, 0, n3, 1, 0);
    write_range(&c, 0, 0, NEW, 2, false);       /* new values, n3 misses them */
    write_range(&c, 0, 0, DELETED, 3, true);    /* and these deletes */

    rcl_spawn(&c, 2, NULL);
    proc_wait_ready(c.n[2]);
    const int n12[] = {0, 1};
    wait_links(&c, 2, n12, 2, 1);
    unsigned long long in, out;
    uint64_t ms;
    unsigned long long leaves = repair_on(&c, 2, &in, &out, &ms);
    print_message("first repair: %llu leaves differed, %llu cells in, %llu out, %" PRIu64
                  " ms\n", leaves, in, out, ms);
    assert_true(leaves > 0);
    assert_true(in >= NEW && in < 2 * NEW); /* what n3 missed, once */

    /* the same again: identical replicas, nothing moves */
    leaves = repair_on(&c, 2, &in, &out, &ms);
    print_message("second repair: %llu leaves differed, %llu in, %llu out, %" PRIu64 " ms\n",
                  leaves, in, out, ms);
    assert_int_equal(leaves, 0);
    assert_int_equal(in, 0);
    assert_int_equal(out, 0);
    char age[320];
    info_u(&c, 2, "repair_oldest_range_age_s", age, sizeof age);
    assert_true(strtoull(age, NULL, 10) < 60); /* every range just repaired */

    /* n3 alone answers every key right */
    proc_kill(c.n[0], SIGTERM);
    proc_kill(c.n[1], SIGTERM);
    proc_wait_exit(c.n[0], 20000);
    proc_wait_exit(c.n[1], 20000);
    wait_links(&c, 2, n12, 2, 0);
    int bad;
    check_one(&c, 2, &bad);
    if (bad) fail_msg("%d of %d keys wrong at ONE on n3 after repair", bad, NEW);
}

static void test_repair_node_interrupted_repair_runs_again(void **state)
{
    (void)state;
    rcl_t c;
    rcl_make(&c, "repi");
    const char *slow[] = {"--stream-bytes-per-sec", "64KiB", NULL};
    for (int i = 0; i < 3; i++) rcl_spawn(&c, i, slow);
    for (int i = 0; i < 3; i++) proc_wait_ready(c.n[i]);
    const int others[] = {1, 2};
    wait_links(&c, 0, others, 2, 1);
    proc_kill(c.n[2], SIGTERM);
    assert_int_equal(proc_wait_exit(c.n[2], 20000), 0);
    const int n3[] = {2};
    wait_links(&c, 0, n3, 1, 0);
    write_range(&c, 0, 0, NEW, 2, false);
    rcl_spawn(&c, 2, slow);
    proc_wait_ready(c.n[2]);
    const int n12[] = {0, 1};
    wait_links(&c, 2, n12, 2, 1);
    /* start a repair on n3 and kill it in the middle */
    cairn_client_t *cc = client(&c, 2);
    cairn_value_t m;
    assert_int_equal(cairn_admin(cc, "repair", "", &m), CAIRN_OK);
    cairn_value_free(&m);
    cairn_close(cc);
    uint64_t t0 = now_ms();
    while (info_u(&c, 2, "repair_ranges_done", NULL, 0) < 3 && now_ms() - t0 < 60000)
        sleep_ms(50);
    print_message("killing n3 after %llu ranges\n", info_u(&c, 2, "repair_ranges_done", NULL, 0));
    proc_kill(c.n[2], SIGKILL);
    proc_wait_exit(c.n[2], 10000);
    rcl_spawn(&c, 2, NULL);
    proc_wait_ready(c.n[2]);
    wait_links(&c, 2, n12, 2, 1);
    repair_on(&c, 2, NULL, NULL, NULL);        /* the rerun finishes */
    unsigned long long leaves = repair_on(&c, 2, NULL, NULL, NULL);
    assert_int_equal(leaves, 0);                /* and left nothing behind */
    /* a repair refuses to start twice */
    cc = client(&c, 2);
    assert_int_equal(cairn_admin(cc, "repair", "", &m), CAIRN_OK);
    cairn_value_free(&m);
    assert_int_equal(cairn_admin(cc, "repair", "", &m), CAIRN_OVERLOADED);
    assert_int_equal(cairn_admin(cc, "repair", "bogus", &m), CAIRN_INVALID);
    cairn_close(cc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        node_test(test_repair_node_brings_back_a_node_that_missed_writes_and_deletes),
        node_test(test_repair_node_interrupted_repair_runs_again),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
