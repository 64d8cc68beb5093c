/* cluster_test_util.h -- a three-node cairnd cluster on loopback for
 * tests: start nodes with extra flags, scrape metrics, wait for peers, and
 * put / get through a chosen node with libcairn. Used by test_cluster.c and
 * test_hints_node.c. */
#ifndef CAIRN_CLUSTER_TEST_UTIL_H
#define CAIRN_CLUSTER_TEST_UTIL_H

#include "node_test_util.h"

#include "cairn.h"

#define NODES 3
/* Short enough that a stopped peer is noticed quickly, long enough that an
 * ASan build on a busy CI machine does not flap. */
#define PEER_TIMEOUT "1000"

typedef struct tcluster {
    node_proc_t *n[NODES];
    char names[NODES][8];
    char initial[256];
    char cluster[32];
} tcluster_t;

static inline void cluster_make(tcluster_t *c, const char *tag)
{
    memset(c, 0, sizeof *c);
    snprintf(c->cluster, sizeof c->cluster, "test");
    int len = 0;
    for (int i = 0; i < NODES; i++) {
        char dir[64];
        snprintf(dir, sizeof dir, "%s-n%d", tag, i + 1);
        c->n[i] = proc_new(dir);
        snprintf(c->names[i], sizeof c->names[i], "n%d", i + 1);
        len += snprintf(c->initial + len, sizeof c->initial - (size_t)len,
                        "%sn%d=127.0.0.1:%u", i ? "," : "", i + 1,
                        c->n[i]->peer_port);
    }
}

/* Start node i with the cluster's flags plus extra flags and environment. */
static inline void node_spawn(tcluster_t *c, int i, const char *const *extra,
                       const char *const *env)
{
    const char *args[40] = {"--node-name", c->names[i], "--initial-cluster",
                            c->initial, "--replication-factor", "3",
                            "--peer-timeout-ms", PEER_TIMEOUT,
                            "--cluster-name", c->cluster};
    int k = 10;
    for (int j = 0; extra && extra[j] && k < 39; j++) args[k++] = extra[j];
    args[k] = NULL;
    proc_spawn_env(c->n[i], args, env);
}

static inline void cluster_start(tcluster_t *c, const char *const *extra)
{
    for (int i = 0; i < NODES; i++) node_spawn(c, i, extra, NULL);
    for (int i = 0; i < NODES; i++) proc_wait_ready(c->n[i]);
}

static inline double metric_in(const char *text, const char *series)
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

static inline double scrape(const node_proc_t *p, const char *series)
{
    kv_buf_t body = {0};
    if (http_get(p->admin_port, "/metrics", &body) != 200) {
        kv_buf_deinit(&body);
        return -1;
    }
    double v = metric_in((const char *)body.data, series);
    kv_buf_deinit(&body);
    return v;
}

/* Wait until node `from` sees node `to` as up (want 1) or down (want 0). */
static inline void wait_peer(tcluster_t *c, int from, int to, int want)
{
    char series[64];
    snprintf(series, sizeof series, "cairn_peer_up{peer=\"%s\"}", c->names[to]);
    uint64_t t0 = now_ms();
    while (now_ms() - t0 < 20000) {
        if (scrape(c->n[from], series) == want) return;
        sleep_ms(20);
    }
    fail_msg("%s did not see %s %s within 20 s (see %s)", c->names[from],
             c->names[to], want ? "up" : "down", c->n[from]->log);
}

static inline void wait_all_up(tcluster_t *c)
{
    for (int i = 0; i < NODES; i++)
        for (int j = 0; j < NODES; j++)
            if (i != j) wait_peer(c, i, j, 1);
}

static inline cairn_client_t *client_of(tcluster_t *c, int i)
{
    cairn_options_t o;
    cairn_options_init(&o);
    char hp[32];
    snprintf(hp, sizeof hp, "127.0.0.1:%u", c->n[i]->client_port);
    o.contact_points = hp;
    o.cluster_name = c->cluster;
    cairn_client_t *cc = NULL;
    cairn_status_t st = cairn_connect(&o, &cc);
    if (st != CAIRN_OK)
        fail_msg("connect %s: %s: %s", hp, cairn_status_name(st),
                 cairn_connect_error());
    return cc;
}

static char last_err[512] __attribute__((unused));

static inline cairn_status_t put_via(tcluster_t *c, int i, const char *k, const char *v,
                              cairn_consistency_t cl, uint32_t timeout_ms,
                              uint64_t *ts)
{
    cairn_client_t *cc = client_of(c, i);
    cairn_request_opts_t o = {.consistency = cl, .timeout_ms = timeout_ms};
    cairn_value_t out = {0};
    cairn_status_t st = cairn_put(cc, k, strlen(k), v, strlen(v), &o);
    (void)out;
    snprintf(last_err, sizeof last_err, "%s", cairn_last_error(cc));
    if (ts) *ts = 0;
    cairn_close(cc);
    return st;
}

/* Read k through node i; on OK the value is copied to buf (NUL-ended). */
static inline cairn_status_t get_via(tcluster_t *c, int i, const char *k,
                              cairn_consistency_t cl, char *buf, size_t cap,
                              uint64_t *ts)
{
    cairn_client_t *cc = client_of(c, i);
    cairn_request_opts_t o = {.consistency = cl, .timeout_ms = 2000};
    cairn_value_t v = {0};
    cairn_status_t st = cairn_get(cc, k, strlen(k), &o, &v);
    snprintf(last_err, sizeof last_err, "%s", cairn_last_error(cc));
    if (buf) buf[0] = 0;
    if (st == CAIRN_OK && buf) snprintf(buf, cap, "%.*s", (int)v.len, (const char *)v.data);
    if (ts) *ts = v.timestamp;
    cairn_value_free(&v);
    cairn_close(cc);
    return st;
}

#define ASSERT_ST(expr, want)                                                  \
    do {                                                                       \
        cairn_status_t st_ = (expr);                                           \
        if (st_ != (want))                                                     \
            fail_msg("%s: got %s (%s), want %s", #expr, cairn_status_name(st_), \
                     last_err, cairn_status_name(want));                       \
    } while (0)

static inline void expect_val(tcluster_t *c, int i, const char *k,
                         cairn_consistency_t cl, const char *want)
{
    char buf[256];
    ASSERT_ST(get_via(c, i, k, cl, buf, sizeof buf, NULL), CAIRN_OK);
    if (strcmp(buf, want) != 0)
        fail_msg("get %s via %s at %s: '%s', want '%s'", k, c->names[i],
                 cairn_consistency_name(cl), buf, want);
}

/* SIGTERM every running node and require a clean drain (exit 0). In the
 * sanitizer build a leak or an error at shutdown makes the exit non-zero, so
 * this checks that every request's and link's state was freed. */
static inline void cluster_stop_clean(tcluster_t *c)
{
    for (int i = 0; i < NODES; i++)
        if (c->n[i]->pid > 0) proc_kill(c->n[i], SIGTERM);
    for (int i = 0; i < NODES; i++) {
        if (c->n[i]->pid <= 0) continue;
        int rc = proc_wait_exit(c->n[i], 20000);
        if (rc != 0) fail_msg("%s exited %d after SIGTERM; see %s", c->names[i],
                              rc, c->n[i]->log);
    }
}

#endif /* CAIRN_CLUSTER_TEST_UTIL_H */
