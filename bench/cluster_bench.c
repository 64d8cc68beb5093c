/* cluster_bench.c -- cairn-cluster-bench: drive a running Cairn cluster
 * through libcairn and report throughput and latency.
 *
 * DESIGN  --connections C clients, each connected to a different contact
 *         point first (client i tries host i mod H, then the others, so
 *         failover still works), each driven by its own thread. The
 *         --concurrency N requests in flight are split over the clients;
 *         a thread keeps its share in a ring of slots, one future per slot.
 *
 *         libcairn has futures but no completion callbacks, so a thread
 *         sweeps its ring: every ready future is harvested (latency = now -
 *         issue time) and its slot immediately reissued. When a sweep finds
 *         nothing ready the thread blocks on the oldest future in flight
 *         (cairn_future_wait) instead of spinning, leaving the CPU to the
 *         nodes on a small machine. A request that completes while the
 *         thread waits on an older one is timed when that wait returns, so
 *         a latency is an upper bound, off by at most the time until the
 *         older request completes (replies on one connection mostly come
 *         back in order, so this is rarely more than a wake-up).
 *
 *         Phases: (load) for read and mixed workloads, every key of the key
 *         space is written once at the chosen consistency level; then the
 *         run: warmup seconds unrecorded, duration seconds recorded, then
 *         no new requests and the ones in flight are waited for (unrecorded).
 *         A completion is recorded when it happens inside the measured
 *         window. This is a closed loop: a slow reply delays the next
 *         request of its slot, so latencies do not include queueing time
 *         that an open-loop client would have seen (coordinated omission).
 *
 *         Latencies of successful requests (OK, and NotFound for reads) go
 *         into a log-bucketed histogram in nanoseconds, 128 sub-buckets per
 *         power of two: values are exact below 256 ns and within 0.4% above
 *         (a bucket's midpoint is reported). Failed requests are counted by
 *         status and not timed.
 * OUTPUT  Progress on stderr; the result table on stdout, or with --json the
 *         table on stderr and one JSON line on stdout.
 * EXIT    0 success; 1 some requests failed, a read at QUORUM or ALL missed
 *         a key the load wrote, or nothing succeeded; 2 bad usage or no node
 *         reachable.
 */
#include <cairn.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MAX_CONNECTIONS 256
#define MAX_CONCURRENCY 100000
#define MAX_HOSTS 64

/* ---- options ----------------------------------------------------------- */

typedef enum { WL_WRITE, WL_READ, WL_MIXED, WL_PING } workload_t;
static const char *const WORKLOADS[] = {"write", "read", "mixed", "ping"};

typedef struct options {
    workload_t workload;
    cairn_consistency_t cl;
    unsigned concurrency;
    unsigned connections;
    double duration_s;
    double warmup_s;
    uint64_t keys;
    size_t value_size;
    char *hosts;
    const char *cluster;
    uint32_t timeout_ms;
    uint64_t seed;
    bool skip_load;
    bool json;
} options_t;

static options_t opt = {
    .workload = WL_WRITE,
    .cl = CAIRN_QUORUM,
    .concurrency = 64,
    .connections = 4,
    .duration_s = 10,
    .warmup_s = 2,
    .keys = 100000,
    .value_size = 100,
    .hosts = "127.0.0.1:7070,127.0.0.2:7070,127.0.0.3:7070",
    .cluster = "cairn",
    .timeout_ms = 2000,
    .seed = 1,
};

/* ---- clock, random numbers --------------------------------------------- */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [0, n) (Lemire's multiply-high; the bias is below 2^-40 for
 * any key space this program can use). */
static uint64_t rand_below(uint64_t *s, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)splitmix64(s) * n) >> 64);
}

/* ---- latency histogram ------------------------------------------------- */

#define H_SUB 128                           /* sub-buckets per power of two */
#define H_BUCKETS (2 * H_SUB + 56 * H_SUB)  /* covers every uint64_t */

typedef struct hist {
    uint64_t count[H_BUCKETS];
    uint64_t n, min, max;
    double sum;
} hist_t;

static size_t h_index(uint64_t v)
{
    if (v < 2 * H_SUB) return (size_t)v;
    int shift = (63 - __builtin_clzll(v)) - 7; /* v >> shift in [128, 255] */
    return 2 * H_SUB + (size_t)(shift - 1) * H_SUB + (size_t)((v >> shift) - H_SUB);
}

static void h_bounds(size_t i, uint64_t *lo, uint64_t *width)
{
    if (i < 2 * H_SUB) {
        *lo = i;
        *width = 1;
        return;
    }
    size_t j = i - 2 * H_SUB;
    unsigned shift = (unsigned)(j / H_SUB) + 1;
    *lo = (uint64_t)(j % H_SUB + H_SUB) << shift;
    *width = (uint64_t)1 << shift;
}

static void h_record(hist_t *h, uint64_t v)
{
    h->count[h_index(v)]++;
    if (h->n == 0 || v < h->min) h->min = v;
    if (v > h->max) h->max = v;
    h->n++;
    h->sum += (double)v;
}

static void h_merge(hist_t *into, const hist_t *h)
{
    if (h->n == 0) return;
    for (size_t i = 0; i < H_BUCKETS; i++) into->count[i] += h->count[i];
    if (into->n == 0 || h->min < into->min) into->min = h->min;
    if (h->max > into->max) into->max = h->max;
    into->n += h->n;
    into->sum += h->sum;
}

/* The value at percentile p (0..100]: the smallest recorded value v with at
 * least ceil(p% of n) values <= v, as its bucket's midpoint within min..max. */
static uint64_t h_percentile(const hist_t *h, double p)
{
    if (h->n == 0) return 0;
    double r = p / 100.0 * (double)h->n;
    uint64_t rank = (uint64_t)r;
    if ((double)rank < r) rank++;
    if (rank < 1) rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < H_BUCKETS; i++) {
        seen += h->count[i];
        if (seen >= rank) {
            uint64_t lo, width;
            h_bounds(i, &lo, &width);
            uint64_t v = lo + (width - 1) / 2;
            if (v < h->min) v = h->min;
            if (v > h->max) v = h->max;
            return v;
        }
    }
    return h->max;
}

/* ---- workers ----------------------------------------------------------- */

enum { OP_GET, OP_PUT, OP_PING, NOPS };
static const char *const OP_NAMES[NOPS] = {"read", "write", "ping"};

/* Statuses as counted: libcairn's, plus a get answered OK with a value of
 * the wrong length. */
#define ST_WRONG_VALUE (CAIRN_CLOSED + 1)
#define NSTATUS (ST_WRONG_VALUE + 1)

static const char *status_name(int st)
{
    return st == ST_WRONG_VALUE ? "WrongValue" : cairn_status_name((cairn_status_t)st);
}

typedef struct slot {
    cairn_future_t *f; /* NULL when free */
    uint64_t t0;
    int op;
} slot_t;

typedef enum { PHASE_LOAD, PHASE_RUN } phase_t;

typedef struct worker {
    unsigned id;
    cairn_client_t *client;
    char *contact_points;
    char node[128];        /* the node_name this client connected to */
    slot_t *slots;
    size_t nslots;
    uint8_t *value;
    cairn_request_opts_t ropts;
    uint64_t rng;
    pthread_t thread;
    /* the phase being driven (set by main before the thread starts) */
    phase_t phase;
    uint64_t load_next, load_stride;
    uint64_t t_measure, t_end;
    /* results */
    hist_t *hist[NOPS];               /* measured window, successful ops */
    uint64_t status[NOPS][NSTATUS];   /* measured window */
    uint64_t load_status[NSTATUS];
    char first_error[256];            /* first failure's detail text */
} worker_t;

/* The next request to issue, or false when this phase issues no more. */
static bool next_op(worker_t *w, uint64_t now, int *op, uint64_t *key)
{
    if (w->phase == PHASE_LOAD) {
        if (w->load_next >= opt.keys) return false;
        *op = OP_PUT;
        *key = w->load_next;
        w->load_next += w->load_stride;
        return true;
    }
    if (now >= w->t_end) return false;
    *key = rand_below(&w->rng, opt.keys);
    if (opt.workload == WL_MIXED) *op = (splitmix64(&w->rng) & 1) ? OP_GET : OP_PUT;
    else if (opt.workload == WL_PING) *op = OP_PING;
    else *op = opt.workload == WL_READ ? OP_GET : OP_PUT;
    return true;
}

static void issue(worker_t *w, slot_t *s, int op, uint64_t key)
{
    char k[32];
    int klen = snprintf(k, sizeof k, "key%08" PRIu64, key);
    s->op = op;
    s->t0 = now_ns();
    s->f = op == OP_GET    ? cairn_get_async(w->client, k, (size_t)klen, &w->ropts)
           : op == OP_PING ? cairn_ping_async(w->client)
                           : cairn_put_async(w->client, k, (size_t)klen, w->value,
                                             opt.value_size, &w->ropts);
}

/* Take the result of a ready future and free its slot. */
static void harvest(worker_t *w, slot_t *s, uint64_t now)
{
    cairn_value_t v = {0};
    int st = (int)cairn_future_wait(s->f, s->op == OP_GET ? &v : NULL);
    if (st == CAIRN_OK && s->op == OP_GET && v.len != opt.value_size)
        st = ST_WRONG_VALUE;
    if (st < 0 || st >= NSTATUS) st = CAIRN_PROTOCOL;
    if (st != CAIRN_OK && st != CAIRN_NOT_FOUND && !w->first_error[0])
        snprintf(w->first_error, sizeof w->first_error, "%s: %s", status_name(st),
                 st == ST_WRONG_VALUE ? "a read returned a value of another length"
                                      : cairn_future_error(s->f));
    cairn_value_free(&v);
    cairn_future_free(s->f);
    s->f = NULL;

    if (w->phase == PHASE_LOAD) {
        w->load_status[st]++;
        return;
    }
    if (now < w->t_measure || now >= w->t_end) return;
    w->status[s->op][st]++;
    if (st == CAIRN_OK || st == CAIRN_NOT_FOUND) h_record(w->hist[s->op], now - s->t0);
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    bool issuing = true;
    for (;;) {
        bool progressed = false;
        size_t inflight = 0, oldest = 0;
        for (size_t i = 0; i < w->nslots; i++) {
            slot_t *s = &w->slots[i];
            if (s->f && cairn_future_ready(s->f)) {
                harvest(w, s, now_ns());
                progressed = true;
            }
            if (!s->f && issuing) {
                int op = OP_PUT;
                uint64_t key = 0;
                if (next_op(w, now_ns(), &op, &key)) issue(w, s, op, key);
                else issuing = false;
            }
            if (s->f) {
                if (inflight == 0 || s->t0 < w->slots[oldest].t0) oldest = i;
                inflight++;
            }
        }
        if (inflight == 0 && !issuing) break;
        if (!progressed && inflight) cairn_future_wait(w->slots[oldest].f, NULL);
    }
    return NULL;
}

static worker_t *workers;
static unsigned nworkers;

static void run_phase(phase_t phase, uint64_t t_measure, uint64_t t_end)
{
    for (unsigned i = 0; i < nworkers; i++) {
        worker_t *w = &workers[i];
        w->phase = phase;
        w->load_next = i;
        w->load_stride = nworkers;
        w->t_measure = t_measure;
        w->t_end = t_end;
        if (pthread_create(&w->thread, NULL, worker_main, w)) {
            fprintf(stderr, "cairn-cluster-bench: cannot start a thread\n");
            exit(2);
        }
    }
    for (unsigned i = 0; i < nworkers; i++) pthread_join(workers[i].thread, NULL);
}

/* ---- connecting -------------------------------------------------------- */

static void info_node_name(const char *name, const char *value, void *arg)
{
    worker_t *w = arg;
    if (!strcmp(name, "node_name") && value)
        snprintf(w->node, sizeof w->node, "%s", value);
}

/* Contact points for client i: host i mod H first, then the others in
 * order, so the clients spread over the hosts and each can fail over. */
static char *rotated_hosts(char **hosts, size_t nhosts, unsigned i)
{
    size_t len = 1;
    for (size_t j = 0; j < nhosts; j++) len += strlen(hosts[j]) + 1;
    char *s = malloc(len);
    if (!s) abort();
    s[0] = 0;
    for (size_t j = 0; j < nhosts; j++) {
        if (j) strcat(s, ",");
        strcat(s, hosts[(i + j) % nhosts]);
    }
    return s;
}

static void connect_all(void)
{
    char *hosts[MAX_HOSTS];
    size_t nhosts = 0;
    char *copy = strdup(opt.hosts), *save = NULL;
    if (!copy) abort();
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (nhosts == MAX_HOSTS) {
            fprintf(stderr, "cairn-cluster-bench: --hosts: more than %d hosts\n", MAX_HOSTS);
            exit(2);
        }
        hosts[nhosts++] = t;
    }
    if (nhosts == 0) {
        fprintf(stderr, "cairn-cluster-bench: --hosts: no hosts given\n");
        exit(2);
    }

    for (unsigned i = 0; i < nworkers; i++) {
        worker_t *w = &workers[i];
        w->id = i;
        w->contact_points = rotated_hosts(hosts, nhosts, i);
        cairn_options_t o;
        cairn_options_init(&o);
        o.contact_points = w->contact_points;
        o.cluster_name = opt.cluster;
        o.client_name = "cairn-cluster-bench";
        o.consistency = opt.cl;
        o.timeout_ms = opt.timeout_ms;
        /* a secured cluster: the cairn tool's variables (README, Security) */
        const char *ca = getenv("CAIRN_TLS_CA_FILE"), *tls = getenv("CAIRN_TLS");
        o.tls = (ca && *ca) || (tls && (!strcmp(tls, "1") || !strcmp(tls, "on")));
        o.tls_ca_file = ca && *ca ? ca : NULL;
        o.tls_cert_file = getenv("CAIRN_TLS_CERT_FILE");
        o.tls_key_file = getenv("CAIRN_TLS_KEY_FILE");
        o.username = getenv("CAIRN_USER");
        o.password = getenv("CAIRN_PASSWORD");
        cairn_status_t st = cairn_connect(&o, &w->client);
        if (st != CAIRN_OK) {
            fprintf(stderr, "cairn-cluster-bench: connection %u to %s: %s: %s\n", i,
                    w->contact_points, cairn_status_name(st), cairn_connect_error());
            exit(2);
        }
        snprintf(w->node, sizeof w->node, "?");
        cairn_info(w->client, info_node_name, w);
        fprintf(stderr, "connection %u: node %s (contact points %s)\n", i, w->node,
                w->contact_points);
    }
    free(copy);
}

/* ---- report ------------------------------------------------------------ */

typedef struct summary {
    hist_t *hist;
    uint64_t status[NSTATUS];
    uint64_t ok, errors, not_found;
} summary_t;

static void summarize(summary_t *s, int op /* -1: all */)
{
    s->hist = calloc(1, sizeof *s->hist);
    if (!s->hist) abort();
    memset(s->status, 0, sizeof s->status);
    for (unsigned i = 0; i < nworkers; i++) {
        for (int o = 0; o < NOPS; o++) {
            if (op >= 0 && o != op) continue;
            h_merge(s->hist, workers[i].hist[o]);
            for (int st = 0; st < NSTATUS; st++) s->status[st] += workers[i].status[o][st];
        }
    }
    s->ok = s->status[CAIRN_OK] + s->status[CAIRN_NOT_FOUND];
    s->not_found = s->status[CAIRN_NOT_FOUND];
    s->errors = 0;
    for (int st = 0; st < NSTATUS; st++)
        if (st != CAIRN_OK && st != CAIRN_NOT_FOUND) s->errors += s->status[st];
}

static const double PCTS[] = {50, 90, 99, 99.9};
static const char *const PCT_KEYS[] = {"p50", "p90", "p99", "p99_9"};
#define NPCTS 4

static double us(uint64_t ns)
{
    return (double)ns / 1000.0;
}

static void table_row(FILE *f, const char *name, const summary_t *s)
{
    fprintf(f, "%-6s %10" PRIu64 " %10.0f %7" PRIu64, name, s->ok,
            (double)s->ok / opt.duration_s, s->errors);
    for (int i = 0; i < NPCTS; i++) fprintf(f, " %9.1f", us(h_percentile(s->hist, PCTS[i])));
    fprintf(f, " %9.1f %9.1f\n", us(s->hist->max),
            s->hist->n ? s->hist->sum / (double)s->hist->n / 1000.0 : 0.0);
}

static void json_latency(FILE *f, const summary_t *s)
{
    fprintf(f, "\"ops\":%" PRIu64 ",\"ops_per_sec\":%.1f,\"errors\":%" PRIu64
               ",\"not_found\":%" PRIu64 ",\"latency_us\":{",
            s->ok, (double)s->ok / opt.duration_s, s->errors, s->not_found);
    for (int i = 0; i < NPCTS; i++)
        fprintf(f, "\"%s\":%.1f,", PCT_KEYS[i], us(h_percentile(s->hist, PCTS[i])));
    fprintf(f, "\"max\":%.1f,\"mean\":%.1f}", us(s->hist->max),
            s->hist->n ? s->hist->sum / (double)s->hist->n / 1000.0 : 0.0);
}

/* ---- main -------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
        "Usage: cairn-cluster-bench [options]\n"
        "Drive a running Cairn cluster through libcairn's async API and report\n"
        "throughput and latency.\n"
        "\n"
        "  --workload W       write | read | mixed (50/50) | ping    [write]\n"
        "  --consistency CL   ONE | QUORUM | ALL                     [QUORUM]\n"
        "  --concurrency N    requests in flight, all connections    [64]\n"
        "  --connections C    clients, spread over the hosts         [4]\n"
        "  --duration S       measured seconds                       [10]\n"
        "  --warmup S         unrecorded seconds before              [2]\n"
        "  --keys N           key space: key00000000 ... uniform     [100000]\n"
        "  --value-size B     bytes per value                        [100]\n"
        "  --hosts LIST       contact points host:port,...\n"
        "                     [127.0.0.1:7070,127.0.0.2:7070,127.0.0.3:7070]\n"
        "  --cluster NAME     the cluster's name                     [cairn]\n"
        "  --timeout-ms MS    per-request timeout                    [2000]\n"
        "  --seed N           random key choice                      [1]\n"
        "  --skip-load        read, mixed: do not write the key space first\n"
        "  --json             table on stderr, one JSON line on stdout\n"
        "  --help\n"
        "\n"
        "read and mixed first write every key once at the chosen consistency\n"
        "level (unless --skip-load), so reads find them.\n");
}

static bool parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || *s == '-' || v < lo || v > hi) return false;
    *out = v;
    return true;
}

static bool parse_secs(const char *s, double lo, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo) || v > 86400) return false;
    *out = v;
    return true;
}

static void bad(const char *name, const char *val)
{
    fprintf(stderr, "cairn-cluster-bench: --%s: bad value '%s' (see --help)\n", name, val);
    exit(2);
}

static void parse_args(int argc, char **argv)
{
    enum { O_WORKLOAD = 256, O_CL, O_CONC, O_CONN, O_DUR, O_WARM, O_KEYS, O_VSIZE,
           O_HOSTS, O_CLUSTER, O_TIMEOUT, O_SEED, O_SKIP, O_JSON };
    static const struct option longopts[] = {
        {"workload", required_argument, NULL, O_WORKLOAD},
        {"consistency", required_argument, NULL, O_CL},
        {"concurrency", required_argument, NULL, O_CONC},
        {"connections", required_argument, NULL, O_CONN},
        {"duration", required_argument, NULL, O_DUR},
        {"warmup", required_argument, NULL, O_WARM},
        {"keys", required_argument, NULL, O_KEYS},
        {"value-size", required_argument, NULL, O_VSIZE},
        {"hosts", required_argument, NULL, O_HOSTS},
        {"cluster", required_argument, NULL, O_CLUSTER},
        {"timeout-ms", required_argument, NULL, O_TIMEOUT},
        {"seed", required_argument, NULL, O_SEED},
        {"skip-load", no_argument, NULL, O_SKIP},
        {"json", no_argument, NULL, O_JSON},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int ch, li = -1;
    uint64_t u;
    while ((ch = getopt_long(argc, argv, "h", longopts, &li)) != -1) {
        const char *name = li >= 0 ? longopts[li].name : "?";
        switch (ch) {
        case O_WORKLOAD: {
            bool found = false;
            for (int i = 0; i < (int)(sizeof WORKLOADS / sizeof *WORKLOADS); i++)
                if (!strcmp(optarg, WORKLOADS[i])) {
                    opt.workload = (workload_t)i;
                    found = true;
                }
            if (!found) bad(name, optarg);
            break;
        }
        case O_CL:
            if (!strcasecmp(optarg, "ONE")) opt.cl = CAIRN_ONE;
            else if (!strcasecmp(optarg, "QUORUM")) opt.cl = CAIRN_QUORUM;
            else if (!strcasecmp(optarg, "ALL")) opt.cl = CAIRN_ALL;
            else bad(name, optarg);
            break;
        case O_CONC:
            if (!parse_u64(optarg, 1, MAX_CONCURRENCY, &u)) bad(name, optarg);
            opt.concurrency = (unsigned)u;
            break;
        case O_CONN:
            if (!parse_u64(optarg, 1, MAX_CONNECTIONS, &u)) bad(name, optarg);
            opt.connections = (unsigned)u;
            break;
        case O_DUR:
            if (!parse_secs(optarg, 0.001, &opt.duration_s)) bad(name, optarg);
            break;
        case O_WARM:
            if (!parse_secs(optarg, 0, &opt.warmup_s)) bad(name, optarg);
            break;
        case O_KEYS:
            if (!parse_u64(optarg, 1, UINT64_MAX / 2, &u)) bad(name, optarg);
            opt.keys = u;
            break;
        case O_VSIZE:
            if (!parse_u64(optarg, 0, (uint64_t)16 << 20, &u)) bad(name, optarg);
            opt.value_size = (size_t)u;
            break;
        case O_HOSTS: opt.hosts = optarg; break;
        case O_CLUSTER: opt.cluster = optarg; break;
        case O_TIMEOUT:
            if (!parse_u64(optarg, 1, UINT32_MAX, &u)) bad(name, optarg);
            opt.timeout_ms = (uint32_t)u;
            break;
        case O_SEED:
            if (!parse_u64(optarg, 0, UINT64_MAX, &u)) bad(name, optarg);
            opt.seed = u;
            break;
        case O_SKIP: opt.skip_load = true; break;
        case O_JSON: opt.json = true; break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); exit(2);
        }
        li = -1;
    }
    if (optind < argc) {
        fprintf(stderr, "cairn-cluster-bench: unexpected argument '%s'\n", argv[optind]);
        exit(2);
    }
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);

    nworkers = opt.connections < opt.concurrency ? opt.connections : opt.concurrency;
    workers = calloc(nworkers, sizeof *workers);
    if (!workers) abort();
    for (unsigned i = 0; i < nworkers; i++) {
        worker_t *w = &workers[i];
        w->nslots = opt.concurrency / nworkers + (i < opt.concurrency % nworkers);
        w->slots = calloc(w->nslots, sizeof *w->slots);
        w->value = malloc(opt.value_size ? opt.value_size : 1);
        for (int o = 0; o < NOPS; o++) w->hist[o] = calloc(1, sizeof *w->hist[o]);
        for (int o = 0; o < NOPS; o++)
            if (!w->hist[o]) abort();
        if (!w->slots || !w->value) abort();
        w->rng = opt.seed * 0x100000001b3ull + i;
        for (size_t b = 0; b < opt.value_size; b++) w->value[b] = (uint8_t)splitmix64(&w->rng);
        w->ropts.consistency = opt.cl;
        w->ropts.timeout_ms = opt.timeout_ms;
    }

    const char *cl_name = cairn_consistency_name(opt.cl);
    fprintf(stderr, "cairn-cluster-bench: workload %s at %s, %u in flight over %u "
                    "connections, %" PRIu64 " keys, %zu-byte values, %.3g s + %.3g s "
                    "warmup\n",
            WORKLOADS[opt.workload], cl_name, opt.concurrency, nworkers, opt.keys,
            opt.value_size, opt.duration_s, opt.warmup_s);
    connect_all();

    bool loaded = false, load_clean = true;
    if (opt.workload != WL_WRITE && opt.workload != WL_PING && !opt.skip_load) {
        fprintf(stderr, "loading %" PRIu64 " keys at %s ...\n", opt.keys, cl_name);
        uint64_t t0 = now_ns();
        run_phase(PHASE_LOAD, 0, 0);
        double secs = (double)(now_ns() - t0) / 1e9;
        uint64_t st_total[NSTATUS] = {0}, failed = 0;
        for (unsigned i = 0; i < nworkers; i++)
            for (int st = 0; st < NSTATUS; st++) st_total[st] += workers[i].load_status[st];
        for (int st = 1; st < NSTATUS; st++) failed += st_total[st];
        fprintf(stderr, "loaded %" PRIu64 " keys in %.1f s (%.0f puts/s)", opt.keys - failed,
                secs, (double)opt.keys / secs);
        if (failed) {
            load_clean = false;
            fprintf(stderr, "; %" PRIu64 " puts failed:", failed);
            for (int st = 1; st < NSTATUS; st++)
                if (st_total[st]) fprintf(stderr, " %s %" PRIu64, status_name(st), st_total[st]);
        }
        fprintf(stderr, "\n");
        loaded = true;
    }

    fprintf(stderr, "warming up %.3g s, then measuring %.3g s ...\n", opt.warmup_s,
            opt.duration_s);
    uint64_t start = now_ns();
    uint64_t t_measure = start + (uint64_t)(opt.warmup_s * 1e9);
    uint64_t t_end = t_measure + (uint64_t)(opt.duration_s * 1e9);
    run_phase(PHASE_RUN, t_measure, t_end);

    summary_t all, by_op[NOPS];
    summarize(&all, -1);
    for (int o = 0; o < NOPS; o++) summarize(&by_op[o], o);

    /* ---- the table ---- */
    FILE *tf = opt.json ? stderr : stdout;
    fprintf(tf, "\nworkload %s, consistency %s, %u in flight, %u connections, %" PRIu64
                " keys, %zu-byte values, %.3g s measured after %.3g s warmup\n"
                "hosts %s\n\n",
            WORKLOADS[opt.workload], cl_name, opt.concurrency, nworkers, opt.keys,
            opt.value_size, opt.duration_s, opt.warmup_s, opt.hosts);
    fprintf(tf, "%-6s %10s %10s %7s %9s %9s %9s %9s %9s %9s\n", "op", "ops", "ops/s",
            "errors", "p50 us", "p90 us", "p99 us", "p99.9 us", "max us", "mean us");
    if (opt.workload == WL_MIXED) {
        table_row(tf, OP_NAMES[OP_GET], &by_op[OP_GET]);
        table_row(tf, OP_NAMES[OP_PUT], &by_op[OP_PUT]);
    }
    table_row(tf, opt.workload == WL_MIXED  ? "all"
                  : opt.workload == WL_PING ? OP_NAMES[OP_PING]
                                            : OP_NAMES[opt.workload == WL_READ ? OP_GET : OP_PUT],
              &all);
    if (all.errors) {
        fprintf(tf, "errors:");
        for (int st = 0; st < NSTATUS; st++)
            if (st != CAIRN_OK && st != CAIRN_NOT_FOUND && all.status[st])
                fprintf(tf, " %s %" PRIu64, status_name(st), all.status[st]);
        fprintf(tf, "\n");
        for (unsigned i = 0; i < nworkers; i++)
            if (workers[i].first_error[0]) {
                fprintf(tf, "first error: %s\n", workers[i].first_error);
                break;
            }
    } else {
        fprintf(tf, "errors: none\n");
    }
    /* After a complete load, a read at QUORUM or ALL must find every key
     * (the load wrote at the same level, and W + R > RF); at ONE a read may
     * reach a replica the write has not reached yet. */
    bool misses = loaded && load_clean && opt.cl != CAIRN_ONE && all.not_found;
    if (all.not_found)
        fprintf(tf, "reads that found no value: %" PRIu64 "%s\n", all.not_found,
                misses ? " (every key was loaded at this level: unexpected)"
                : !loaded ? " (key space not loaded)"
                : !load_clean ? " (some loading puts failed)"
                              : " (possible at ONE: a replica the write had not reached)");

    /* ---- the JSON line ---- */
    if (opt.json) {
        printf("{\"bench\":\"cluster\",\"workload\":\"%s\",\"consistency\":\"%s\","
               "\"concurrency\":%u,\"connections\":%u,\"keys\":%" PRIu64
               ",\"value_size\":%zu,\"duration_s\":%.3f,\"warmup_s\":%.3f,\"loaded\":%s,",
               WORKLOADS[opt.workload], cl_name, opt.concurrency, nworkers, opt.keys,
               opt.value_size, opt.duration_s, opt.warmup_s, loaded ? "true" : "false");
        json_latency(stdout, &all);
        printf(",\"errors_by_status\":{");
        bool first = true;
        for (int st = 0; st < NSTATUS; st++)
            if (st != CAIRN_OK && st != CAIRN_NOT_FOUND && all.status[st]) {
                printf("%s\"%s\":%" PRIu64, first ? "" : ",", status_name(st), all.status[st]);
                first = false;
            }
        printf("},\"by_op\":{");
        first = true;
        for (int o = 0; o < NOPS; o++) {
            if (by_op[o].ok + by_op[o].errors == 0) continue;
            printf("%s\"%s\":{", first ? "" : ",", OP_NAMES[o]);
            json_latency(stdout, &by_op[o]);
            printf("}");
            first = false;
        }
        printf("}}\n");
    }
    fflush(stdout);

    for (unsigned i = 0; i < nworkers; i++) {
        cairn_close(workers[i].client);
        free(workers[i].contact_points);
        free(workers[i].slots);
        free(workers[i].value);
        for (int o = 0; o < NOPS; o++) free(workers[i].hist[o]);
    }
    free(workers);
    free(all.hist);
    for (int o = 0; o < NOPS; o++) free(by_op[o].hist);

    return all.errors || misses || all.ok == 0 ? 1 : 0;
}
