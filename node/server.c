/* server.c -- the node's lifecycle: open the data directory, engine and
 * clock, bind the client listener and the admin endpoint, run the loop,
 * and drain on SIGTERM/SIGINT.
 *
 * DESIGN  One libevent loop thread owns every connection and request
 *         (conn.c), the metrics and the clock; engine and reader threads
 *         hand completions back through one notification event (pool.c).
 *         The executor behind requests is local.c today; the cluster layers
 *         replace it behind node_exec/node_req_finish (node_int.h).
 *
 *   node states:
 *
 *     starting --node_run--> serving --SIGTERM/SIGINT--> draining --> stopped
 *                                                          |   (in flight 0,
 *                                                          |    conns closed)
 *                                                          +-- drain_timeout_ms
 *                                                              --> stopped (unclean)
 *
 *         node_create opens everything (state starting, /ready 503);
 *         node_run enters serving; node_stop (the signal handler) enters
 *         draining: the listener closes, requests on open connections are
 *         answered CLOSED, and node_drain_check closes each connection
 *         gracefully once none of its requests is in flight and it has been
 *         quiet for NODE_DRAIN_QUIET_MS (a request sent just before the
 *         signal may still be on its way; it gets CLOSED, not a cut
 *         connection). When the in-flight count is zero and the last
 *         connection is gone the loop exits. node_run then flushes
 *         and closes the engine (stopped). The drain timer bounds the whole
 *         wait; after it, connections are cut and node_run reports
 *         KV_TIMEOUT.
 *
 * INVARIANTS (1) state only moves forward along the diagram; (2) inflight
 *            equals the number of node_req_t handed to node_exec and not
 *            yet finished; (3) nothing reaches the engine after stopped.
 * THREADING  Loop thread (the one running node_create/node_run/destroy),
 *            except node_done_push (pool.c).
 */
#define KV_LOG_MODULE "node"
#include "node_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/thread.h>

#include "json.h"

#ifndef CAIRN_VERSION
#define CAIRN_VERSION "0.1.0"
#endif

#define NODE_READER_THREADS 2
#define NODE_READER_QUEUE 1024
/* A draining node keeps a connection open until it has been quiet this long
 * (requests sent just before the signal still get their CLOSED reply). */
#define NODE_DRAIN_QUIET_MS 100
#define NODE_DRAIN_TICK_MS 20

const char *node_version(void) { return CAIRN_VERSION; }

const char *node_state_str(node_state_t s)
{
    switch (s) {
    case NODE_STARTING: return "starting";
    case NODE_SERVING: return "serving";
    case NODE_DRAINING: return "draining";
    case NODE_STOPPED: return "stopped";
    }
    return "?";
}

bool node_on_loop(const node_t *n)
{
    return pthread_equal(n->loop_thread, pthread_self());
}

uint64_t node_now_ns(void)
{
    return kv_clock_mono_ns(kv_clock_system());
}

/* ---- metrics ----------------------------------------------------------- */

static const char *const op_names[NODE_OP_COUNT_] = {"get", "put", "delete", "info"};
static const char *const perr_names[NODE_PERR_COUNT_] = {
    "frame_too_large", "malformed", "before_hello", "bad_request",
    "wrong_cluster", "bad_version", "unknown_type",
};

static void metrics_refresh(void *arg, metrics_t *m)
{
    node_t *n = arg;
    (void)m;
    node_eng_mirror_t *em = &n->em;
    node_cluster_metrics_refresh(n);
    metrics_gauge_set(n->m.conns_open, n->nconns);
    metrics_gauge_set(n->m.inflight, n->inflight);
    if (!n->eng) return;
    eng_stats_t s;
    eng_get_stats(n->eng, &s);
    metrics_gauge_set(em->memtable, (double)s.memtable_bytes);
    metrics_gauge_set(em->live, (double)s.live_bytes);
    for (int i = 0; i < 7; i++)
        metrics_gauge_set(em->tables[i], (double)s.tables_per_level[i]);
    metrics_counter_mirror(em->flushes, s.flushes, &em->last.flushes);
    metrics_counter_mirror(em->compactions, s.compactions, &em->last.compactions);
    metrics_counter_mirror(em->hits, s.cache_hits, &em->last.cache_hits);
    metrics_counter_mirror(em->misses, s.cache_misses, &em->last.cache_misses);
    metrics_counter_mirror(em->syncs, s.wal_syncs, &em->last.wal_syncs);
    metrics_counter_mirror(em->groups, s.wal_group_writes, &em->last.wal_group_writes);
    /* whole milliseconds, rendered in seconds (metrics_counter_unit) */
    metrics_counter_mirror(em->stalls, s.write_stalls_ms, &em->last.write_stalls_ms);
    metrics_gauge_set(em->hlc_gauge, (double)hlc_wall_ms(hlc_last(n->hlc)) / 1000.0);
    hlc_stats_t hs;
    hlc_get_stats(n->hlc, &hs);
    metrics_counter_mirror(em->wall_leaps, hs.wall_leaps, &em->last_wall_leaps);
}

#define L(...) ((const char *const[]){__VA_ARGS__, NULL})

static void metrics_setup(node_t *n)
{
    metrics_t *m = n->metrics = metrics_create();
    metrics_register(m, "cairn_requests_total", "Client requests received.",
                     METRIC_COUNTER, L("op", "cl"));
    metrics_register(m, "cairn_request_errors_total",
                     "Client requests answered with a status other than OK or NOTFOUND.",
                     METRIC_COUNTER, L("op", "status"));
    metrics_register(m, "cairn_request_duration_seconds",
                     "Time from a request's arrival to its reply.",
                     METRIC_HISTOGRAM, L("op"));
    metrics_register(m, "cairn_connections_open", "Client connections open.",
                     METRIC_GAUGE, NULL);
    metrics_register(m, "cairn_connections_total", "Client connections accepted.",
                     METRIC_COUNTER, NULL);
    metrics_register(m, "cairn_connections_rejected_total",
                     "Client connections refused or closed by a limit.",
                     METRIC_COUNTER, L("reason"));
    metrics_register(m, "cairn_protocol_errors_total",
                     "Malformed or unexpected client input.", METRIC_COUNTER,
                     L("reason"));
    metrics_register(m, "cairn_inflight_requests", "Requests in progress.",
                     METRIC_GAUGE, NULL);
    metrics_register(m, "cairn_superseded_retries_total",
                     "Writes re-stamped because a replica held a newer cell.",
                     METRIC_COUNTER, NULL);
    metrics_register(m, "cairn_clock_skew_refused_total",
                     "Requests refused because a timestamp was too far ahead.",
                     METRIC_COUNTER, NULL);
    metrics_register(m, "cairn_hlc_seconds", "Wall part of the node's clock.",
                     METRIC_GAUGE, NULL);
    metrics_register(m, "cairn_clock_wall_leaps_total",
                     "Times the wall clock leapt ahead of the monotonic clock by more "
                     "than max_clock_offset_ms and timestamps did not follow it.",
                     METRIC_COUNTER, NULL);
    metrics_register(m, "cairn_engine_memtable_bytes", "Bytes in the active memtable.",
                     METRIC_GAUGE, NULL);
    metrics_register(m, "cairn_engine_tables", "Live SSTables per level.",
                     METRIC_GAUGE, L("level"));
    metrics_register(m, "cairn_engine_live_bytes", "Bytes in live SSTables.",
                     METRIC_GAUGE, NULL);
    metrics_register(m, "cairn_engine_flushes_total", "Memtable flushes.",
                     METRIC_COUNTER, NULL);
    metrics_register(m, "cairn_engine_compactions_total", "Compactions.",
                     METRIC_COUNTER, NULL);
    metrics_register(m, "cairn_engine_block_cache_hits_total", "Block cache hits.",
                     METRIC_COUNTER, NULL);
    metrics_register(m, "cairn_engine_block_cache_misses_total", "Block cache misses.",
                     METRIC_COUNTER, NULL);
    metrics_register(m, "cairn_engine_wal_syncs_total", "WAL fdatasync calls.",
                     METRIC_COUNTER, NULL);
    metrics_register(m, "cairn_engine_wal_group_writes_total",
                     "Write batches committed in WAL groups.", METRIC_COUNTER, NULL);
    metrics_register(m, "cairn_engine_write_stalls_seconds_total",
                     "Time writes were delayed by L0 slowdown or stop.",
                     METRIC_COUNTER, NULL);
    metrics_counter_unit(m, "cairn_engine_write_stalls_seconds_total", 0.001);

    n->m.conns_open = metrics_series(m, "cairn_connections_open", NULL);
    n->m.conns_total = metrics_series(m, "cairn_connections_total", NULL);
    n->m.rejected_max_conns =
        metrics_series(m, "cairn_connections_rejected_total", L("max_connections"));
    n->m.idle_closed = metrics_series(m, "cairn_connections_rejected_total", L("idle"));
    n->m.inflight = metrics_series(m, "cairn_inflight_requests", NULL);
    n->m.superseded_retries = metrics_series(m, "cairn_superseded_retries_total", NULL);
    n->m.skew_refused = metrics_series(m, "cairn_clock_skew_refused_total", NULL);
    for (int i = 0; i < NODE_OP_COUNT_; i++)
        n->m.duration[i] =
            metrics_series(m, "cairn_request_duration_seconds", L(op_names[i]));

    node_eng_mirror_t *em = &n->em;
    em->memtable = metrics_series(m, "cairn_engine_memtable_bytes", NULL);
    em->live = metrics_series(m, "cairn_engine_live_bytes", NULL);
    static const char *const lv[7] = {"0", "1", "2", "3", "4", "5", "6"};
    for (int i = 0; i < 7; i++)
        em->tables[i] = metrics_series(m, "cairn_engine_tables", L(lv[i]));
    em->flushes = metrics_series(m, "cairn_engine_flushes_total", NULL);
    em->compactions = metrics_series(m, "cairn_engine_compactions_total", NULL);
    em->hits = metrics_series(m, "cairn_engine_block_cache_hits_total", NULL);
    em->misses = metrics_series(m, "cairn_engine_block_cache_misses_total", NULL);
    em->syncs = metrics_series(m, "cairn_engine_wal_syncs_total", NULL);
    em->groups = metrics_series(m, "cairn_engine_wal_group_writes_total", NULL);
    em->stalls = metrics_series(m, "cairn_engine_write_stalls_seconds_total", NULL);
    em->hlc_gauge = metrics_series(m, "cairn_hlc_seconds", NULL);
    em->wall_leaps = metrics_series(m, "cairn_clock_wall_leaps_total", NULL);
    metrics_set_refresh(m, metrics_refresh, n);
}

void node_count_proto_error(node_t *n, node_perr_t why)
{
    if (!n->m.proto_errors[why])
        n->m.proto_errors[why] = metrics_series(n->metrics, "cairn_protocol_errors_total",
                                                L(perr_names[why]));
    metrics_counter_add(n->m.proto_errors[why], 1);
}

void node_count_request(node_t *n, node_op_t op, proto_cl_t cl)
{
    static const char *const cls[4] = {"none", "ONE", "QUORUM", "ALL"};
    int i = (cl >= CL_ONE && cl <= CL_ALL) ? (int)cl : 0;
    if (!n->m.requests[op][i])
        n->m.requests[op][i] =
            metrics_series(n->metrics, "cairn_requests_total", L(op_names[op], cls[i]));
    metrics_counter_add(n->m.requests[op][i], 1);
}

void node_count_result(node_t *n, node_op_t op, kv_status_t st, uint64_t start_ns)
{
    if (start_ns)
        metrics_histogram_observe(n->m.duration[op],
                                  (double)(node_now_ns() - start_ns) / 1e9);
    if (st == KV_OK || st == KV_NOTFOUND || (unsigned)st >= KV_STATUS_COUNT_) return;
    if (!n->m.errors[op][st])
        n->m.errors[op][st] = metrics_series(n->metrics, "cairn_request_errors_total",
                                             L(op_names[op], kv_status_str(st)));
    metrics_counter_add(n->m.errors[op][st], 1);
}

/* ---- INFO and /status -------------------------------------------------- */

size_t node_info_items(node_t *n, proto_info_item_t *it, size_t cap)
{
    static const char *const tnames[7] = {"tables_l0", "tables_l1", "tables_l2",
                                          "tables_l3", "tables_l4", "tables_l5",
                                          "tables_l6"};
    size_t k = 0;
#define S(nm, v) do { if (k < cap) it[k++] = (proto_info_item_t){nm, v, 0}; } while (0)
#define U(nm, v) do { if (k < cap) it[k++] = (proto_info_item_t){nm, NULL, (uint64_t)(v)}; } while (0)
    S("node_name", n->cfg->node_name);
    S("cluster_name", n->cfg->cluster_name);
    S("node_id", n->node_id);
    S("version", node_version());
    S("state", node_state_str(n->state));
    S("listen_address", n->cfg->listen_address);
    U("client_port", n->cfg->client_port);
    U("admin_port", n->cfg->admin_port);
    U("uptime_seconds", (node_now_ns() - n->start_ns) / 1000000000u);
    U("hlc", hlc_last(n->hlc));
    U("connections", n->nconns);
    U("inflight", n->inflight);
    if (n->eng) {
        eng_stats_t s;
        eng_get_stats(n->eng, &s);
        U("memtable_bytes", s.memtable_bytes);
        U("live_bytes", s.live_bytes);
        for (int i = 0; i < 7; i++) U(tnames[i], s.tables_per_level[i]);
        U("flushes", s.flushes);
        U("compactions", s.compactions);
        U("wal_syncs", s.wal_syncs);
        U("wal_recovered_writes", s.wal_recovered_ops);
        U("cache_hits", s.cache_hits);
        U("cache_misses", s.cache_misses);
    }
    if (k < cap) k += node_cluster_info_items(n, it + k, cap - k);
#undef S
#undef U
    return k;
}

static void status_json(void *arg, kv_buf_t *out)
{
    node_t *n = arg;
    proto_info_item_t items[NODE_INFO_MAX];
    size_t k = node_info_items(n, items, NODE_INFO_MAX);
    kv_buf_append_u8(out, '{');
    for (size_t i = 0; i < k; i++) {
        if (i) kv_buf_append_u8(out, ',');
        json_append_str(out, items[i].name);
        kv_buf_append_u8(out, ':');
        if (items[i].str) {
            json_append_str(out, items[i].str);
        } else {
            char num[24];
            int len = snprintf(num, sizeof num, "%" PRIu64, items[i].num);
            kv_buf_append(out, num, (size_t)len);
        }
    }
    kv_buf_append_u8(out, '}');
}

static admin_state_t admin_state(void *arg)
{
    node_t *n = arg;
    switch (n->state) {
    case NODE_STARTING: return ADMIN_STARTING;
    case NODE_SERVING:
        if (node_cluster_refusal(n)[0]) return ADMIN_REFUSED;
        return node_cluster_joined(n) ? ADMIN_SERVING : ADMIN_JOINING;
    default: return ADMIN_DRAINING;
    }
}

/* ---- data directory ---------------------------------------------------- */

static kv_status_t mkdir_p(const char *path)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
        kv_errmsg_set("data_dir: path too long");
        return KV_INVALID;
    }
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
                kv_errmsg_set("data_dir: cannot create %s: %s", buf, strerror(errno));
                return kv_status_from_errno(errno);
            }
            *p = c;
            if (c == '\0') break;
        }
    }
    return KV_OK;
}

static char *path_join(const char *dir, const char *name)
{
    size_t len = strlen(dir) + strlen(name) + 2;
    char *p = kv_malloc(len);
    snprintf(p, len, "%s/%s", dir, name);
    return p;
}

static bool is_hex_id(const char *s, size_t len)
{
    if (len != 32) return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
    return true;
}

/* Read data_dir/node_id, or make one: 16 random bytes as hex, written to a
 * temporary file, synced, renamed into place, directory synced. */
static kv_status_t node_id_load(node_t *n)
{
    kv_status_t rc = KV_OK;
    char *path = path_join(n->cfg->data_dir, "node_id");
    char *tmp = path_join(n->cfg->data_dir, "node_id.tmp");
    int fd = -1;
    FILE *f = fopen(path, "r");
    if (f) {
        char buf[64] = {0};
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        while (len && (buf[len - 1] == '\n' || buf[len - 1] == ' ')) len--;
        if (!is_hex_id(buf, len)) {
            kv_errmsg_set("%s: not a node id (32 lower-case hex digits)", path);
            rc = KV_CORRUPT;
            goto err;
        }
        memcpy(n->node_id, buf, 32);
        n->node_id[32] = '\0';
        goto err; /* done */
    }
    if (errno != ENOENT) {
        kv_errmsg_set("%s: %s", path, strerror(errno));
        rc = kv_status_from_errno(errno);
        goto err;
    }
    uint8_t raw[16];
    if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) {
        kv_errmsg_set("getrandom: %s", strerror(errno));
        rc = KV_IO;
        goto err;
    }
    for (int i = 0; i < 16; i++) snprintf(n->node_id + 2 * i, 3, "%02x", raw[i]);
    char line[34];
    snprintf(line, sizeof line, "%s\n", n->node_id);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, line, 33) != 33 || fsync(fd) != 0 ||
        rename(tmp, path) != 0) {
        kv_errmsg_set("%s: %s", path, strerror(errno));
        rc = kv_status_from_errno(errno);
        goto err;
    }
    close(fd);
    fd = open(n->cfg->data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) fsync(fd);
err:
    if (fd >= 0) close(fd);
    kv_free(path);
    kv_free(tmp);
    return rc;
}

/* ---- listener ---------------------------------------------------------- */

void node_addr_str(const struct sockaddr *sa, char *buf, size_t cap)
{
    char host[INET6_ADDRSTRLEN] = "?";
    snprintf(buf, cap, "?");
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        snprintf(buf, cap, "%s:%u", host, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        snprintf(buf, cap, "[%s]:%u", host, ntohs(in6->sin6_port));
    }
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd,
                      struct sockaddr *sa, int socklen, void *arg)
{
    node_t *n = arg;
    (void)l;
    (void)socklen;
    char peer[64];
    node_addr_str(sa, peer, sizeof peer);
    node_conn_accept(n, fd, peer);
}

static void accept_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    node_t *n = arg;
    (void)fd;
    (void)what;
    if (n->listener) evconnlistener_enable(n->listener);
}

/* accept() failed (EMFILE ...): pause for a moment rather than spin. */
static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    node_t *n = arg;
    int err = EVUTIL_SOCKET_ERROR();
    KV_LOG(KV_WARN, "accept failed: %s; pausing the listener for 100 ms",
           evutil_socket_error_to_string(err));
    evconnlistener_disable(l);
    struct timeval tv = {0, 100000};
    if (!n->accept_retry) n->accept_retry = evtimer_new(n->base, accept_retry_cb, n);
    evtimer_add(n->accept_retry, &tv);
}

/* A socket for an outbound connection, bound to listen_address when that
 * is one address (not a wildcard), so that peers -- and firewall rules --
 * see connections come from the address the node is known by. -1 when
 * listen_address is a wildcard or a name: the connect then makes its own
 * socket. *family is the socket's family (AF_UNSPEC for -1). */
evutil_socket_t node_outbound_socket(node_t *n, int *family)
{
    *family = AF_UNSPEC;
    const char *a = n->cfg->listen_address;
    struct sockaddr_storage ss;
    int len = (int)sizeof ss;
    memset(&ss, 0, sizeof ss);
    if (!a || evutil_parse_sockaddr_port(a, (struct sockaddr *)&ss, &len) != 0) return -1;
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        if (sin->sin_addr.s_addr == htonl(INADDR_ANY)) return -1;
        sin->sin_port = 0;
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        if (IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr)) return -1;
        sin6->sin6_port = 0;
    } else {
        return -1;
    }
    evutil_socket_t fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (bind(fd, (struct sockaddr *)&ss, (socklen_t)len) != 0) {
        evutil_closesocket(fd);
        return -1;
    }
    *family = ss.ss_family;
    return fd;
}

kv_status_t node_listen(node_t *n, const char *setting, uint16_t port,
                        evconnlistener_cb cb, void *arg,
                        struct evconnlistener **out)
{
    const node_config_t *cfg = n->cfg;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE}, *ai = NULL;
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%u", port);
    int gerr = getaddrinfo(cfg->listen_address, portstr, &hints, &ai);
    if (gerr != 0) {
        kv_errmsg_set("listen_address '%s': %s", cfg->listen_address, gai_strerror(gerr));
        return KV_INVALID;
    }
    *out = evconnlistener_new_bind(
        n->base, cb, arg,
        LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC, 512,
        ai->ai_addr, (int)ai->ai_addrlen);
    int err = errno;
    freeaddrinfo(ai);
    if (!*out) {
        kv_errmsg_set("%s: cannot listen on %s:%u: %s", setting,
                      cfg->listen_address, port, strerror(err));
        return KV_IO;
    }
    return KV_OK;
}

static kv_status_t listen_client(node_t *n)
{
    KV_RET(node_listen(n, "client_port", n->cfg->client_port, accept_cb, n,
                       &n->listener));
    evconnlistener_set_error_cb(n->listener, accept_error_cb);
    return KV_OK;
}

/* ---- drain ------------------------------------------------------------- */

static void finish_drain(node_t *n, bool clean)
{
    n->state = NODE_STOPPED;
    n->drained_clean = clean;
    if (n->drain_timer) event_del(n->drain_timer);
    if (n->drain_tick) event_del(n->drain_tick);
    event_base_loopexit(n->base, NULL);
}

void node_drain_check(node_t *n)
{
    /* closing a connection re-enters through node_conn_close */
    if (n->state != NODE_DRAINING || n->in_drain_check) return;
    uint64_t now = node_now_ns();
    uint64_t quiet_ns = (uint64_t)KV_MIN(NODE_DRAIN_QUIET_MS, n->cfg->drain_timeout_ms / 4) *
                        1000000u;
    if (now - n->drain_start_ns >= quiet_ns) {
        n->in_drain_check = true;
        for (node_conn_t *c = n->conns, *next; c; c = next) {
            next = node_conn_next(c);
            node_conn_drain(c, now - quiet_ns);
        }
        n->in_drain_check = false;
    }
    if (!n->conns && n->inflight == 0) finish_drain(n, true);
}

static void drain_tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    node_drain_check(arg);
}

static void drain_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    node_t *n = arg;
    (void)fd;
    (void)what;
    if (n->state != NODE_DRAINING) return;
    KV_LOG(KV_WARN, "drain timed out after %u ms with %u requests in flight and "
           "%u connections; stopping anyway",
           n->cfg->drain_timeout_ms, n->inflight, n->nconns);
    n->drain_timed_out = true;
    n->state = NODE_STOPPED; /* no drain check while cutting connections */
    while (n->conns) node_conn_close(n->conns);
    finish_drain(n, false);
}

void node_stop(node_t *n)
{
    kv_assert(node_on_loop(n));
    if (n->state != NODE_SERVING && n->state != NODE_STARTING) return;
    n->state = NODE_DRAINING;
    KV_LOG(KV_INFO, "draining: %u connections, %u requests in flight "
           "(drain_timeout_ms %u)", n->nconns, n->inflight, n->cfg->drain_timeout_ms);
    if (n->listener) {
        evconnlistener_free(n->listener);
        n->listener = NULL;
    }
    struct timeval tv = {n->cfg->drain_timeout_ms / 1000,
                         (n->cfg->drain_timeout_ms % 1000) * 1000};
    evtimer_add(n->drain_timer, &tv);
    struct timeval tick = {0, NODE_DRAIN_TICK_MS * 1000};
    event_add(n->drain_tick, &tick);
    n->drain_start_ns = node_now_ns();
    node_drain_check(n);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    node_t *n = arg;
    (void)what;
    if (n->state == NODE_DRAINING || n->state == NODE_STOPPED) {
        KV_LOG(KV_INFO, "%s again: already draining", strsignal((int)sig));
        return;
    }
    KV_LOG(KV_INFO, "%s received", strsignal((int)sig));
    node_stop(n);
}

/* ---- output once per loop turn (node_int.h) --------------------------- */

bool node_flush_mark(node_t *n, node_flush_t *f)
{
    if (f->queued) return false;
    f->queued = true;
    f->next = n->flush_head;
    n->flush_head = f;
    if (n->flush_ev) event_active(n->flush_ev, 0, 0);
    return true;
}

void node_flush_all(node_t *n)
{
    /* a run may mark again (a write that queues another): take the list */
    while (n->flush_head) {
        node_flush_t *f = n->flush_head;
        n->flush_head = NULL;
        while (f) {
            node_flush_t *next = f->next;
            f->queued = false;
            f->run(f);
            f = next;
        }
    }
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    node_flush_all(arg);
}

bool node_bev_write_now(struct bufferevent *bev)
{
    struct evbuffer *out = bufferevent_get_output(bev);
    evutil_socket_t fd = bufferevent_getfd(bev);
    /* A socket bufferevent keeps its output's front frozen so that only its
     * own write callback drains it; thaw it for this write as that one does. */
    evbuffer_unfreeze(out, 1);
    bool all = true;
    while (evbuffer_get_length(out) > 0) {
        if (evbuffer_write(out, fd) <= 0) { /* full (EAGAIN) or failed */
            all = false;
            break;
        }
    }
    evbuffer_freeze(out, 1);
    if (!all) bufferevent_enable(bev, EV_WRITE);
    return all;
}

/* Completions from engine and reader threads. */
static void done_cb(evutil_socket_t fd, short what, void *arg)
{
    node_t *n = arg;
    (void)fd;
    (void)what;
    pthread_mutex_lock(&n->done_mu);
    node_job_t *j = n->done_head;
    n->done_head = n->done_tail = NULL;
    pthread_mutex_unlock(&n->done_mu);
    while (j) {
        node_job_t *next = j->next;
        j->done(j);
        j = next;
    }
}

/* ---- create / run / destroy ------------------------------------------- */

kv_status_t node_create(const node_config_t *cfg, node_t **out)
{
    kv_status_t rc;
    evthread_use_pthreads();
    signal(SIGPIPE, SIG_IGN);
    node_t *n = kv_calloc(1, sizeof *n);
    n->cfg = cfg;
    n->state = NODE_STARTING;
    n->loop_thread = pthread_self();
    n->start_ns = node_now_ns();
    pthread_mutex_init(&n->done_mu, NULL);

    KV_ERR(rc = mkdir_p(cfg->data_dir));
    KV_ERR(rc = node_id_load(n));

    n->clock_path = path_join(cfg->data_dir, "clock");
    hlc_options_t ho;
    hlc_options_init(&ho);
    ho.state_path = n->clock_path;
    ho.max_offset_ms = cfg->max_clock_offset_ms;
    if ((rc = hlc_open(&ho, &n->hlc)) != KV_OK) {
        if (!kv_errmsg()[0]) kv_errmsg_set("%s: cannot open the clock state", n->clock_path);
        goto err;
    }
    /* tick once: INFO and HELLO_OK report a real clock from the start, and
     * the high-water mark is renewed before the first request */
    hlc_ts_t first;
    if ((rc = hlc_now(n->hlc, &first)) != KV_OK) {
        kv_errmsg_set("%s: cannot persist the clock's high-water mark", n->clock_path);
        goto err;
    }

    n->data_dir_engine = path_join(cfg->data_dir, "engine");
    eng_options_t eo;
    eng_options_init(&eo);
    eo.dir = n->data_dir_engine;
    eo.sync = strcmp(cfg->sync, "periodic") == 0 ? ENG_SYNC_PERIODIC : ENG_SYNC_GROUP;
    eo.sync_period_ms = cfg->sync_period_ms;
    eo.memtable_bytes = cfg->memtable_bytes;
    eo.cache_bytes = cfg->cache_bytes;
    eo.max_value_len = cfg->max_value_bytes;
    eo.gc_grace_ms = cfg->gc_grace_seconds * 1000;
    if ((rc = eng_open(&eo, &n->eng)) != KV_OK) {
        if (!kv_errmsg()[0]) kv_errmsg_set("%s: cannot open the engine", n->data_dir_engine);
        goto err;
    }

    n->base = event_base_new();
    if (!n->base) {
        kv_errmsg_set("cannot create the event loop");
        rc = KV_NOMEM;
        goto err;
    }
    n->done_ev = event_new(n->base, -1, 0, done_cb, n);
    n->flush_ev = event_new(n->base, -1, 0, flush_cb, n);
    n->drain_timer = evtimer_new(n->base, drain_timeout_cb, n);
    n->drain_tick = event_new(n->base, -1, EV_PERSIST, drain_tick_cb, n);
    n->sig_term = evsignal_new(n->base, SIGTERM, signal_cb, n);
    n->sig_int = evsignal_new(n->base, SIGINT, signal_cb, n);
    event_add(n->sig_term, NULL);
    event_add(n->sig_int, NULL);
    metrics_setup(n);

    KV_ERR(rc = node_sec_open(n));
    KV_ERR(rc = listen_client(n));
    n->readers = node_pool_create(n, NODE_READER_THREADS, NODE_READER_QUEUE);
    KV_ERR(rc = node_cluster_open(n));
    admin_hooks_t hooks = {.state = admin_state, .status_json = status_json, .arg = n};
    KV_ERR(rc = admin_start(n->base, cfg->listen_address, cfg->admin_port, n->metrics,
                            &hooks, &n->admin));
    *out = n;
    return KV_OK;
err:
    node_destroy(n);
    return rc;
}

kv_status_t node_run(node_t *n)
{
    n->loop_thread = pthread_self();
    n->state = NODE_SERVING;
    KV_LOG(KV_INFO, "node '%s' (id %s, version %s) serving cluster '%s': clients on "
           "%s:%u, admin on %s:%u, data in %s",
           n->cfg->node_name, n->node_id, node_version(), n->cfg->cluster_name,
           n->cfg->listen_address, n->cfg->client_port, n->cfg->listen_address,
           n->cfg->admin_port, n->cfg->data_dir);
    event_base_dispatch(n->base);
    if (n->state != NODE_STOPPED) { /* the loop ended on its own: no events */
        KV_LOG(KV_ERROR, "event loop ended unexpectedly");
        n->state = NODE_STOPPED;
        n->drained_clean = false;
    }
    kv_status_t frc = eng_flush(n->eng);
    if (frc != KV_OK)
        KV_LOG(KV_ERROR, "flush at shutdown failed: %s (the WAL still holds the data)",
               kv_status_str(frc));
    node_pool_destroy(n->readers);
    n->readers = NULL;
    node_sec_quiesce(n);
    node_cluster_quiesce(n);
    eng_close(n->eng); /* completes every write still queued */
    n->eng = NULL;
    done_cb(-1, 0, n); /* drop their replies: connections are closed */
    KV_LOG(KV_INFO, "stopped %s", n->drained_clean ? "after a clean drain"
                                                   : "without a clean drain");
    return n->drained_clean ? KV_OK : KV_TIMEOUT;
}

void node_destroy(node_t *n)
{
    if (!n) return;
    if (n->base) {
        n->state = NODE_STOPPED;
        while (n->conns) node_conn_close(n->conns);
        node_conn_sniffs_close(n);
    }
    node_pool_destroy(n->readers);
    node_sec_quiesce(n);
    node_cluster_quiesce(n);
    if (n->eng) eng_close(n->eng);
    n->eng = NULL;
    if (n->done_ev) done_cb(-1, 0, n);
    node_flush_all(n); /* what the last turn left, and the refs it holds */
    node_cluster_close(n);
    node_flush_all(n);
    node_sec_close(n);
    if (n->admin) admin_stop(n->admin);
    if (n->listener) evconnlistener_free(n->listener);
    if (n->accept_retry) event_free(n->accept_retry);
    if (n->done_ev) event_free(n->done_ev);
    if (n->flush_ev) event_free(n->flush_ev);
    if (n->drain_timer) event_free(n->drain_timer);
    if (n->drain_tick) event_free(n->drain_tick);
    if (n->sig_term) event_free(n->sig_term);
    if (n->sig_int) event_free(n->sig_int);
    if (n->metrics) metrics_destroy(n->metrics);
    if (n->base) event_base_free(n->base);
    if (n->hlc) hlc_close(n->hlc);
    kv_free(n->clock_path);
    kv_free(n->data_dir_engine);
    kv_buf_deinit(&n->scratch);
    pthread_mutex_destroy(&n->done_mu);
    kv_free(n);
}
