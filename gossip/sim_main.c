/* sim_main.c -- cairn-gossip-sim: measures Cairn's gossip at its default
 * settings on the simulated network of sim.c and prints three tables:
 *
 *   1. detection   a node is killed after convergence: time until every
 *                  survivor sees it down and DEAD, per cluster size, and
 *                  the steady-state traffic per node;
 *   2. dissemination  time and gossip rounds until a state change reaches
 *                  every node, next to log N;
 *   3. robustness  false deaths under packet loss, SIGSTOP pauses, and the
 *                  time a healed partition takes to agree again.
 *
 * Every row is an independent simulation with a seed derived from --seed,
 * so the tables are the same on every run with the same flags; rows run on
 * --jobs threads (default 2) and print in order.
 *
 * Usage: cairn-gossip-sim [--seed N] [--quick] [--max-n N] [--jobs N]
 *                         [--only detect|dissem|robust]
 *        CAIRN_SIM_SEED overrides the seed, as in the tests.
 */
#include "sim.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- options -------------------------------------------------------------- */

typedef struct opts {
    uint64_t seed;
    bool quick;
    uint32_t max_n;
    uint32_t jobs;
    bool detect, dissem, robust;
} opts_t;

static const uint32_t sizes[] = {3, 5, 10, 50, 100, 500, 1000};

static void usage(FILE *f)
{
    fprintf(f, "usage: cairn-gossip-sim [--seed N] [--quick] [--max-n N] [--jobs N]\n"
               "                        [--only detect|dissem|robust]\n"
               "Measures Cairn's gossip (SWIM + Lifeguard + phi) at default settings on a\n"
               "deterministic simulated LAN. CAIRN_SIM_SEED overrides --seed.\n");
}

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end;
    if (!s || !*s) return false;
    unsigned long long v = strtoull(s, &end, 0);
    if (*end) return false;
    *out = v;
    return true;
}

static int parse_opts(int argc, char **argv, opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->seed = 1;
    o->max_n = 1000;
    o->jobs = 2;
    o->detect = o->dissem = o->robust = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        uint64_t v;
        if (!strcmp(a, "--quick")) {
            o->quick = true;
        } else if (!strcmp(a, "--seed") && i + 1 < argc && parse_u64(argv[i + 1], &v)) {
            o->seed = v;
            i++;
        } else if (!strcmp(a, "--max-n") && i + 1 < argc && parse_u64(argv[i + 1], &v) && v >= 3 &&
                   v <= SIM_MAX_NODES) {
            o->max_n = (uint32_t)v;
            i++;
        } else if (!strcmp(a, "--jobs") && i + 1 < argc && parse_u64(argv[i + 1], &v) && v >= 1 &&
                   v <= 64) {
            o->jobs = (uint32_t)v;
            i++;
        } else if (!strcmp(a, "--only") && i + 1 < argc) {
            const char *w = argv[++i];
            o->detect = !strcmp(w, "detect");
            o->dissem = !strcmp(w, "dissem");
            o->robust = !strcmp(w, "robust");
            if (!o->detect && !o->dissem && !o->robust) return -1;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        } else {
            return -1;
        }
    }
    const char *env = getenv("CAIRN_SIM_SEED");
    if (env && *env && !parse_u64(env, &o->seed)) return -1;
    return 0;
}

/* ---- jobs ----------------------------------------------------------------- */

typedef enum { JOB_CLUSTER, JOB_QUIET, JOB_PAUSE, JOB_PARTITION } job_kind_t;

typedef struct job {
    job_kind_t kind;
    uint32_t n;
    uint64_t seed;
    double loss;
    uint32_t a, b, c;  /* CLUSTER: changes, crashes, traffic_ms; QUIET: -, -, s;
                          PAUSE: pause_ms, trials; PARTITION: k, hold_ms */
    double wall_s;
    union {
        sim_cluster_res_t cluster;
        sim_quiet_res_t quiet;
        sim_pause_res_t pause;
        sim_partition_res_t part;
    } r;
    bool ok;
} job_t;

typedef struct pool {
    job_t *jobs;
    size_t njobs, next;
    pthread_mutex_t mu;
} pool_t;

static uint64_t job_seed(uint64_t base, uint32_t kind, uint32_t n, uint32_t k, double x)
{
    uint64_t z = base ^ ((uint64_t)kind << 56) ^ ((uint64_t)n << 24) ^ ((uint64_t)k << 8) ^
                 (uint64_t)(x * 1000);
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void run_job(job_t *j)
{
    double t0 = wall_now();
    sim_config_t cfg;
    sim_config_init(&cfg, j->n, j->seed);
    cfg.loss = j->loss;
    switch (j->kind) {
    case JOB_CLUSTER: {
        sim_cluster_exp_t e = {
            .cfg = cfg, .changes = j->a, .crashes = j->b, .traffic_ms = j->c, .drain = true};
        j->ok = sim_exp_cluster(&e, &j->r.cluster);
        break;
    }
    case JOB_QUIET: j->ok = sim_exp_quiet(&cfg, (uint64_t)j->c * 1000, &j->r.quiet); break;
    case JOB_PAUSE: j->ok = sim_exp_pause(&cfg, j->a, j->b, &j->r.pause); break;
    case JOB_PARTITION: j->ok = sim_exp_partition(&cfg, j->a, j->b, 120000, &j->r.part); break;
    }
    j->wall_s = wall_now() - t0;
}

static void *worker(void *arg)
{
    pool_t *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        size_t k = p->next < p->njobs ? p->next++ : p->njobs;
        pthread_mutex_unlock(&p->mu);
        if (k == p->njobs) return NULL;
        run_job(&p->jobs[k]);
    }
}

static void run_all(job_t *jobs, size_t njobs, uint32_t nthreads)
{
    pool_t p = {.jobs = jobs, .njobs = njobs, .next = 0};
    pthread_mutex_init(&p.mu, NULL);
    pthread_t th[64];
    uint32_t nt = nthreads < njobs ? nthreads : (uint32_t)njobs;
    for (uint32_t k = 0; k < nt; k++)
        if (pthread_create(&th[k], NULL, worker, &p) != 0) {
            perror("pthread_create");
            exit(1);
        }
    for (uint32_t k = 0; k < nt; k++) pthread_join(th[k], NULL);
    pthread_mutex_destroy(&p.mu);
}

/* ---- the plan --------------------------------------------------------------- */

#define MAX_JOBS 256

typedef struct plan {
    job_t jobs[MAX_JOBS];
    size_t n;
} plan_t;

static job_t *add_job(plan_t *p, job_kind_t kind, uint32_t n, uint64_t seed)
{
    if (p->n == MAX_JOBS) {
        fprintf(stderr, "too many jobs\n");
        exit(1);
    }
    job_t *j = &p->jobs[p->n++];
    memset(j, 0, sizeof *j);
    j->kind = kind;
    j->n = n;
    j->seed = seed;
    return j;
}

/* Clusters per size and trials per cluster for tables 1 and 2. */
static void cluster_shape(const opts_t *o, uint32_t n, uint32_t *clusters, uint32_t *changes,
                          uint32_t *crashes)
{
    if (n <= 100) {
        *clusters = o->quick ? 2 : 4;
        *changes = o->quick ? 3 : 5;
        *crashes = o->quick ? 3 : 5;
    } else if (n <= 500) {
        *clusters = o->quick ? 1 : 2;
        *changes = o->quick ? 2 : 5;
        *crashes = o->quick ? 2 : 4;
    } else {
        *clusters = o->quick ? 1 : 2;
        *changes = o->quick ? 2 : 4;
        *crashes = o->quick ? 1 : 3;
    }
}

static const double losses[] = {0, 0.05, 0.10, 0.20};
static const uint32_t robust_sizes[] = {5, 100};
static const uint32_t pauses[] = {1000, 2000, 3000};

/* ---- printing --------------------------------------------------------------- */

static const char *fmt_s(char *buf, size_t cap, uint64_t ms)
{
    if (ms == SIM_NEVER) snprintf(buf, cap, "never");
    else snprintf(buf, cap, "%.2f", (double)ms / 1000.0);
    return buf;
}

typedef struct agg {
    uint64_t v[SIM_EXP_MAX_TRIALS * 8];
    size_t n;
} agg_t;

static void agg_add(agg_t *a, const uint64_t *v, size_t n)
{
    for (size_t k = 0; k < n && a->n < KV_ARRAY_LEN(a->v); k++) a->v[a->n++] = v[k];
}

static void print_detection(const opts_t *o, plan_t *p, size_t first, size_t last)
{
    printf("\n1. Detection: one node killed (SIGKILL) after the cluster converged; seconds from\n"
           "   the kill until the first node suspects it, until every survivor\n"
           "   sees it down (member.up false), and until every survivor sees it DEAD. Traffic is\n"
           "   per node per second in steady state (datagrams sent, their bytes, push-pull bytes\n"
           "   sent as requester and responder). suspicion_min = 4 x max(1, log10 N) s.\n\n");
    printf("%6s %6s %7s %7s %8s %8s %8s %8s %8s %9s %9s %9s %9s\n", "N", "trials", "join", "first",
           "down", "down", "dead", "dead", "susp.", "msgs", "UDP B", "PP B", "wall");
    printf("%6s %6s %7s %7s %8s %8s %8s %8s %8s %9s %9s %9s %9s\n", "", "", "s", "med", "med",
           "max", "med", "max", "min s", "/node/s", "/node/s", "/node/s", "s");
    for (size_t si = 0; si < KV_ARRAY_LEN(sizes); si++) {
        uint32_t n = sizes[si];
        if (n > o->max_n) continue;
        agg_t first_d = {0}, down = {0}, dead = {0};
        uint64_t join = 0;
        double msgs = 0, udpb = 0, ppb = 0, wall = 0;
        uint32_t nc = 0;
        bool ok = true;
        for (size_t k = first; k < last; k++) {
            job_t *j = &p->jobs[k];
            if (j->n != n) continue;
            ok &= j->ok;
            const sim_cluster_res_t *r = &j->r.cluster;
            agg_add(&first_d, r->first_suspect_ms, j->b);
            agg_add(&down, r->down_ms, j->b);
            agg_add(&dead, r->dead_ms, j->b);
            join = KV_MAX(join, r->join_ms);
            msgs += r->udp_per_node_s + r->pp_per_node_s;
            udpb += r->udp_bytes_per_node_s;
            ppb += r->pp_bytes_per_node_s;
            wall += j->wall_s;
            nc++;
        }
        if (!nc) continue;
        char b[9][16];
        double smin = 4.0 * fmax(1.0, log10((double)n));
        printf("%6u %6zu %7s %7s %8s %8s %8s %8s %8.1f %9.2f %9.0f %9.0f %9.1f%s\n", n, down.n,
               fmt_s(b[0], 16, join), fmt_s(b[1], 16, sim_median(first_d.v, first_d.n)),
               fmt_s(b[2], 16, sim_median(down.v, down.n)), fmt_s(b[3], 16, sim_max(down.v, down.n)),
               fmt_s(b[4], 16, sim_median(dead.v, dead.n)), fmt_s(b[5], 16, sim_max(dead.v, dead.n)),
               smin, msgs / nc, udpb / nc, ppb / nc, wall, ok ? "" : "  (did not converge)");
    }
}

static void print_dissemination(const opts_t *o, plan_t *p, size_t first, size_t last)
{
    uint32_t gi = 200;
    {
        gossip_config_t g;
        gossip_config_init(&g);
        gi = g.gossip_interval_ms;
    }
    printf("\n2. Dissemination: a random node announces new tokens (gossip_set_local); time\n"
           "   until every other node holds the new state (and sees it ALIVE); the same in\n"
           "   gossip rounds (time / gossip_interval = %u ms), next to log2 N.\n\n",
           gi);
    printf("%6s %6s %9s %9s %8s %8s %7s %11s\n", "N", "trials", "med ms", "max ms", "rounds",
           "rounds", "log2 N", "med rounds");
    printf("%6s %6s %9s %9s %8s %8s %7s %11s\n", "", "", "", "", "med", "max", "", "/ log2 N");
    for (size_t si = 0; si < KV_ARRAY_LEN(sizes); si++) {
        uint32_t n = sizes[si];
        if (n > o->max_n) continue;
        agg_t ch = {0};
        for (size_t k = first; k < last; k++)
            if (p->jobs[k].n == n) agg_add(&ch, p->jobs[k].r.cluster.change_ms, p->jobs[k].a);
        if (!ch.n) continue;
        uint64_t med = sim_median(ch.v, ch.n), mx = sim_max(ch.v, ch.n);
        double l2 = log2((double)n);
        if (med == SIM_NEVER || mx == SIM_NEVER) {
            printf("%6u %6zu %9s\n", n, ch.n, "never");
            continue;
        }
        printf("%6u %6zu %9" PRIu64 " %9" PRIu64 " %8.1f %8.1f %7.2f %11.2f\n", n, ch.n, med, mx,
               (double)med / gi, (double)mx / gi, l2, (double)med / gi / l2);
    }
}

static void print_robustness(plan_t *p, size_t first, size_t last)
{
    char b[4][16];
    printf("\n3a. Packet loss: a healthy cluster left alone (false = about a node that was\n"
           "    running and reachable); then nodes killed under the same loss, seconds until\n"
           "    every survivor sees the victim DEAD.\n\n");
    printf("%6s %6s %9s %9s %9s %9s %9s %9s %9s\n", "N", "loss", "sim min", "suspect", "false",
           "false", "refuted", "dead med", "dead max");
    printf("%6s %6s %9s %9s %9s %9s %9s %9s %9s\n", "", "", "", "events", "suspect", "deaths", "",
           "s", "s");
    for (size_t k = first; k < last; k++) {
        job_t *q = &p->jobs[k];
        if (q->kind != JOB_QUIET) continue;
        job_t *d = NULL;
        for (size_t m = first; m < last; m++)
            if (p->jobs[m].kind == JOB_CLUSTER && p->jobs[m].n == q->n &&
                p->jobs[m].loss == q->loss)
                d = &p->jobs[m];
        const sim_counters_t *c = &q->r.quiet.delta;
        uint64_t dm = SIM_NEVER, dx = SIM_NEVER;
        if (d && d->ok) {
            uint64_t v[SIM_EXP_MAX_TRIALS];
            memcpy(v, d->r.cluster.dead_ms, sizeof v);
            dm = sim_median(v, d->b);
            dx = sim_max(v, d->b);
        }
        printf("%6u %5.0f%% %9u %9" PRIu64 " %9" PRIu64 " %9" PRIu64 " %9" PRIu64 " %9s %9s%s\n",
               q->n, q->loss * 100, q->c / 60, c->suspicions, c->false_suspicions, c->false_deaths,
               c->refutes, fmt_s(b[0], 16, dm), fmt_s(b[1], 16, dx),
               q->ok ? "" : "  (did not converge)");
    }

    printf("\n3b. SIGSTOP pauses: a random node stopped, then resumed with its socket buffer;\n"
           "    counts over all trials of observers that suspected / saw down / declared DEAD\n"
           "    the paused node, deaths it declared itself after resuming, and the stalls it\n"
           "    noticed.\n\n");
    printf("%6s %7s %6s %9s %9s %9s %9s %9s\n", "N", "pause s", "trials", "suspected", "down",
           "DEAD", "DEAD by", "stalls");
    printf("%6s %7s %6s %9s %9s %9s %9s %9s\n", "", "", "", "by", "by", "by", "paused", "");
    for (size_t k = first; k < last; k++) {
        job_t *j = &p->jobs[k];
        if (j->kind != JOB_PAUSE) continue;
        const sim_pause_res_t *r = &j->r.pause;
        printf("%6u %7.1f %6u %9" PRIu64 " %9" PRIu64 " %9" PRIu64 " %9" PRIu64 " %9" PRIu64 "%s\n",
               j->n, j->a / 1000.0, r->trials, r->suspicions_of_paused, r->downs_of_paused,
               r->deaths_of_paused, r->deaths_by_paused, r->stalls,
               j->ok ? "" : "  (did not converge)");
    }

    printf("\n3c. Partition: split in two for the hold time, then healed; seconds from the heal\n"
           "    until every node sees every other ALIVE again.\n\n");
    printf("%6s %9s %7s %6s %11s %9s %9s\n", "N", "split", "hold s", "trials", "sides saw", "heal",
           "heal");
    printf("%6s %9s %7s %6s %11s %9s %9s\n", "", "", "", "", "other DEAD", "med s", "max s");
    for (size_t k = first; k < last; k++) {
        job_t *j = &p->jobs[k];
        if (j->kind != JOB_PARTITION) continue;
        /* rows with the same n, k, hold are trials of one line */
        bool seen_before = false;
        for (size_t m = first; m < k; m++)
            if (p->jobs[m].kind == JOB_PARTITION && p->jobs[m].n == j->n && p->jobs[m].a == j->a)
                seen_before = true;
        if (seen_before) continue;
        uint64_t v[64];
        size_t nv = 0, saw = 0;
        for (size_t m = k; m < last && nv < 64; m++) {
            job_t *x = &p->jobs[m];
            if (x->kind != JOB_PARTITION || x->n != j->n || x->a != j->a) continue;
            v[nv++] = x->r.part.heal_ms;
            saw += x->r.part.split_seen;
        }
        char split[24];
        snprintf(split, sizeof split, "%u|%u", j->a, j->n - j->a);
        printf("%6u %9s %7u %6zu %8zu/%-2zu %9s %9s\n", j->n, split, j->b / 1000, nv, saw, nv,
               fmt_s(b[2], 16, sim_median(v, nv)), fmt_s(b[3], 16, sim_max(v, nv)));
    }
}

/* ---- main -------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    opts_t o;
    if (parse_opts(argc, argv, &o) != 0) {
        usage(stderr);
        return 2;
    }
    static plan_t plan;
    plan_t *p = &plan;
    double t0 = wall_now();

    /* tables 1 and 2 share their clusters */
    size_t c_first = p->n;
    if (o.detect || o.dissem) {
        for (size_t si = 0; si < KV_ARRAY_LEN(sizes); si++) {
            uint32_t n = sizes[si], clusters, changes, crashes;
            if (n > o.max_n) continue;
            cluster_shape(&o, n, &clusters, &changes, &crashes);
            for (uint32_t c = 0; c < clusters; c++) {
                job_t *j = add_job(p, JOB_CLUSTER, n, job_seed(o.seed, 1, n, c, 0));
                j->a = o.dissem ? changes : 0;
                j->b = o.detect ? crashes : 0;
                j->c = o.detect ? (o.quick ? 30000 : 60000) : 0;
            }
        }
    }
    size_t c_last = p->n;

    size_t r_first = p->n;
    if (o.robust) {
        for (size_t ri = 0; ri < KV_ARRAY_LEN(robust_sizes); ri++) {
            uint32_t n = robust_sizes[ri];
            if (n > o.max_n) continue;
            /* healthy run length: 30 min at N=5, 5 min at N=100 (quick: 10, 1) */
            uint32_t secs = n <= 10 ? (o.quick ? 600 : 1800) : (o.quick ? 60 : 300);
            for (size_t li = 0; li < KV_ARRAY_LEN(losses); li++) {
                job_t *j = add_job(p, JOB_QUIET, n, job_seed(o.seed, 2, n, (uint32_t)li, 0));
                j->loss = losses[li];
                j->c = secs;
                j = add_job(p, JOB_CLUSTER, n, job_seed(o.seed, 3, n, (uint32_t)li, 0));
                j->loss = losses[li];
                j->b = n <= 10 ? (o.quick ? 3 : 10) : (o.quick ? 2 : 5);
            }
            for (size_t pi = 0; pi < KV_ARRAY_LEN(pauses); pi++) {
                job_t *j = add_job(p, JOB_PAUSE, n, job_seed(o.seed, 4, n, (uint32_t)pi, 0));
                j->a = pauses[pi];
                j->b = o.quick ? 4 : (n <= 10 ? 20 : 10);
            }
            uint32_t trials = o.quick ? 1 : 3;
            for (uint32_t t = 0; t < trials; t++) {
                job_t *j = add_job(p, JOB_PARTITION, n, job_seed(o.seed, 5, n, t, 0));
                j->a = n * 2 / 5; /* 2|3 */
                j->b = 60000;
            }
        }
    }
    size_t r_last = p->n;

    gossip_config_t g;
    gossip_config_init(&g);
    printf("Cairn gossip simulator: seed %" PRIu64 "%s, default gossip settings\n", o.seed,
           o.quick ? " (--quick)" : "");
    printf("  probe %u ms, probe timeout %u ms, indirect %u, suspicion mult %u (max x%u),\n"
           "  retransmit mult %u, gossip %u ms to %u, push-pull %u s, phi threshold %.0f\n"
           "  network: LAN latency 0.1-1.0 ms per message, 3 seeds, nodes start within 1 s\n",
           g.probe_interval_ms, g.probe_timeout_ms, g.indirect_checks, g.suspicion_mult,
           g.suspicion_max_mult, g.retransmit_mult, g.gossip_interval_ms, g.gossip_fanout,
           g.pushpull_interval_ms / 1000, g.phi_threshold);
    fflush(stdout);

    run_all(p->jobs, p->n, o.jobs);

    if (o.detect) print_detection(&o, p, c_first, c_last);
    if (o.dissem) print_dissemination(&o, p, c_first, c_last);
    if (o.robust) print_robustness(p, r_first, r_last);

    sim_counters_t tot = {0};
    for (size_t k = 0; k < p->n; k++) {
        const sim_counters_t *c = NULL;
        switch (p->jobs[k].kind) {
        case JOB_CLUSTER: c = &p->jobs[k].r.cluster.counters; break;
        default: break;
        }
        if (c) tot.timer_stuck += c->timer_stuck;
    }
    printf("\n%zu simulations, %.1f s wall on %u threads%s\n", p->n, wall_now() - t0, o.jobs,
           tot.timer_stuck ? " (WARNING: the state machine's timer did not advance)" : "");
    return 0;
}
