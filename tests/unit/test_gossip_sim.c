/* test_gossip_sim.c -- Cairn's gossip (SWIM + Lifeguard + phi) driven through
 * the deterministic simulator (gossip/sim.h): joining, detection bounds,
 * dissemination, pauses, loss, partitions, restarts, a slow member, how
 * detection time, load and dissemination scale with N, and the simulator's
 * own guarantees (same seed, same run; events agree with views).
 *
 * Every test prints its seed; CAIRN_SIM_SEED=<n> replays one (the trials of
 * a test use seeds derived from it). Sanitizer builds (CAIRN_SANITIZE) run
 * the scaling tests at smaller N: see SCALE_N below.
 */
#include "test_util.h"

#include "gossip.h"
#include "sim.h"

#include <math.h>
#include <sys/wait.h>

#ifdef CAIRN_SANITIZE
#define SCALE_N 200u /* the largest cluster of the scaling tests */
#else
#define SCALE_N 1000u
#endif

static uint64_t seed_;

static uint64_t sim_seed(const char *test)
{
    const char *s = getenv("CAIRN_SIM_SEED");
    seed_ = s && *s ? strtoull(s, NULL, 0) : 0x5eed0001ULL;
    fprintf(stderr, "[seed] %s: CAIRN_SIM_SEED=%" PRIu64 "\n", test, seed_);
    return seed_;
}

/* Fail with the seed and a reason. */
#define SIM_CHECK(cond, ...)                                                   \
    do {                                                                       \
        if (!(cond)) {                                                         \
            print_error("seed %" PRIu64 " (replay with CAIRN_SIM_SEED=%" PRIu64 \
                        "): ",                                                 \
                        seed_, seed_);                                         \
            print_error(__VA_ARGS__);                                          \
            print_error("\n");                                                 \
            fail_msg("%s", #cond);                                             \
        }                                                                      \
    } while (0)

static sim_config_t config(uint32_t n, uint64_t seed)
{
    sim_config_t c;
    sim_config_init(&c, n, seed);
    return c;
}

static double secs(uint64_t ms) { return ms == SIM_NEVER ? INFINITY : (double)ms / 1000.0; }

static sim_t *converged_cluster(uint32_t n, uint64_t seed, uint64_t deadline_ms)
{
    sim_config_t c = config(n, seed);
    sim_t *s = sim_create(&c);
    uint64_t t = sim_run_until_converged(s, deadline_ms);
    SIM_CHECK(t != SIM_NEVER, "%u nodes did not converge within %.0f s", n, secs(deadline_ms));
    return s;
}

/* ---- the simulator itself ------------------------------------------------- */

static uint64_t chaotic_run(uint64_t seed)
{
    sim_config_t c = config(20, seed);
    c.loss = 0.05;
    sim_t *s = sim_create(&c);
    sim_run_until(s, 10000);
    sim_crash(s, 3);
    sim_pause(s, 7, 2500);
    sim_run_for(s, 5000);
    sim_partition_split(s, 8);
    sim_change_state(s, 12);
    sim_run_for(s, 15000);
    sim_heal(s);
    sim_restart(s, 3);
    sim_set_slow(s, 5, 300);
    sim_run_for(s, 20000);
    uint64_t d = sim_digest(s);
    sim_destroy(s);
    return d;
}

static void test_gossip_sim_same_seed_gives_the_same_run_bit_for_bit(void **state)
{
    (void)state;
    uint64_t seed = sim_seed(__func__);
    uint64_t a = chaotic_run(seed), b = chaotic_run(seed), c = chaotic_run(seed + 1);
    SIM_CHECK(a == b, "two runs of one seed differ: %016" PRIx64 " vs %016" PRIx64, a, b);
    SIM_CHECK(a != c, "another seed gave the same run");
}

static void test_gossip_sim_partition_cuts_traffic_and_pause_holds_it(void **state)
{
    (void)state;
    uint64_t seed = sim_seed(__func__);
    sim_t *s = converged_cluster(5, seed, 30000);
    sim_run_for(s, 5000);

    /* a partition drops what crosses it and nothing else */
    sim_counters_t a, b;
    sim_get_counters(s, &a);
    sim_partition_split(s, 2);
    sim_run_for(s, 5000);
    sim_get_counters(s, &b);
    SIM_CHECK(b.udp_cut > a.udp_cut, "nothing was cut by the partition");
    SIM_CHECK(b.udp_delivered > a.udp_delivered, "nothing got through inside the groups");
    sim_heal(s);
    SIM_CHECK(sim_run_until_converged(s, sim_now_ms(s) + 60000) != SIM_NEVER, "no heal");
    sim_run_for(s, 5000);

    /* a paused node reads nothing until it resumes, then all of it */
    gossip_stats_t st0, st1, st2;
    gossip_get_stats(sim_gossip(s, 4), &st0);
    sim_pause(s, 4, 3000);
    sim_run_for(s, 2999);
    gossip_get_stats(sim_gossip(s, 4), &st1);
    SIM_CHECK(st1.udp_received == st0.udp_received, "a paused node received datagrams");
    SIM_CHECK(st1.udp_sent == st0.udp_sent, "a paused node sent datagrams");
    sim_run_for(s, 1);
    gossip_get_stats(sim_gossip(s, 4), &st2);
    SIM_CHECK(st2.udp_received > st1.udp_received + 10,
              "resume delivered %" PRIu64 " held datagrams", st2.udp_received - st1.udp_received);
    SIM_CHECK(st2.stalls == st1.stalls + 1, "a 3 s pause was not noticed as a stall (%" PRIu64
              " -> %" PRIu64 ")", (uint64_t)st1.stalls, (uint64_t)st2.stalls);
    sim_destroy(s);
}

/* ---- joining ---------------------------------------------------------------- */

static void test_gossip_sim_hundred_nodes_join_through_three_seeds(void **state)
{
    (void)state;
    uint64_t seed = sim_seed(__func__);
    sim_config_t c = config(100, seed);
    sim_t *s = sim_create(&c);
    uint64_t t = sim_run_until_converged(s, 60000);
    SIM_CHECK(t != SIM_NEVER && t <= 30000, "100 nodes converged after %.1f s (bound 30 s)", secs(t));
    /* every node knows all 100 with their tokens, and no one was suspected */
    for (uint32_t o = 0; o < 100; o += 33) {
        SIM_CHECK(gossip_member_count(sim_gossip(s, o)) == 100, "n%04u knows %zu members", o,
                  gossip_member_count(sim_gossip(s, o)));
        gossip_member_t m;
        SIM_CHECK(sim_view(s, o, 57, &m) && m.ntokens >= 1 && m.status == GOSSIP_NORMAL,
                  "n%04u's view of n0057 lacks its tokens", o);
    }
    sim_counters_t k;
    sim_get_counters(s, &k);
    SIM_CHECK(k.deaths == 0, "%" PRIu64 " deaths while joining", k.deaths);
    SIM_CHECK(sim_event_view_mismatches(s) == 0, "events disagree with views");
    sim_destroy(s);
}

static void test_gossip_sim_initial_cluster_of_fifty_converges(void **state)
{
    (void)state;
    uint64_t seed = sim_seed(__func__);
    sim_config_t c = config(50, seed);
    c.all_known = true;
    c.nseeds = 0;
    sim_t *s = sim_create(&c);
    uint64_t t = sim_run_until_converged(s, 60000);
    SIM_CHECK(t != SIM_NEVER && t <= 20000, "converged after %.1f s (bound 20 s)", secs(t));
    sim_run_for(s, 30000);
    sim_counters_t k;
    sim_get_counters(s, &k);
    SIM_CHECK(k.false_deaths == 0 && k.false_suspicions == 0,
              "%" PRIu64 " false suspicions, %" PRIu64 " false deaths", k.false_suspicions,
              k.false_deaths);
    SIM_CHECK(sim_event_view_mismatches(s) == 0, "events disagree with views");
    sim_destroy(s);
}

/* ---- detection at N = 5 -------------------------------------------------------- */

static void test_gossip_sim_killed_node_is_down_everywhere_in_6s_median_8s_worst(void **state)
{
    (void)state;
    uint64_t seed = sim_seed(__func__);
    uint64_t down[20], dead[20];
    size_t nt = 0;
    for (uint32_t c = 0; c < 4; c++) {
        sim_cluster_exp_t e = {.cfg = config(5, seed + c), .crashes = 5};
        sim_cluster_res_t r;
        SIM_CHECK(sim_exp_cluster(&e, &r), "cluster %u did not converge", c);
        for (uint32_t t = 0; t < 5; t++) {
            SIM_CHECK(r.rejoin_ms[t] != SIM_NEVER, "restarted victim never rejoined");
            down[nt] = r.down_ms[t];
            dead[nt++] = r.dead_ms[t];
        }
    }
    uint64_t dmed = sim_median(down, nt), dmax = sim_max(down, nt);
    uint64_t xmed = sim_median(dead, nt), xmax = sim_max(dead, nt);
    print_message("N=5, %zu kills: down med %.2f s max %.2f s; DEAD med %.2f s max %.2f s\n", nt,
                  secs(dmed), secs(dmax), secs(xmed), secs(xmax));
    SIM_CHECK(dmed <= 6000, "median time to down everywhere %.2f s > 6 s", secs(dmed));
    SIM_CHECK(dmax <= 8000, "worst time to down everywhere %.2f s > 8 s", secs(dmax));
    /* DEAD follows within the suspicion timeout's maximum (6 x 4 s) */
    SIM_CHECK(xmax <= 26000, "worst time to DEAD everywhere %.2f s", secs(xmax));
}

static void test_gossip_sim_state_change_reaches_five_nodes_within_2s(void **state)
{
    (void)state;
    uint64_t seed = sim_seed(__func__);
    for (uint32_t c = 0; c < 4; c++) {
        sim_cluster_exp_t e = {.cfg = config(5, seed + c), .changes = 5};
        sim_cluster_res_t r;
        SIM_CHECK(sim_exp_cluster(&e, &r), "cluster did not converge");
        for (uint32_t t = 0; t < 5; t++)
            SIM_CHECK(r.change_ms[t] <= 2000, "change %u reached everyone after %.2f s", t,
                      secs(r.change_ms[t]));
    }
}

static void test_gossip_sim_restarted_node_is_alive_everywhere_within_2s(void **state)
{
    (void)state;
    uint64_t seed = sim_seed(__func__);
    sim_t *s = converged_cluster(5, seed, 30000);
    sim_run_for(s, 10000);
    /* a quick restart (a new generation before anyone noticed) */
    for (uint32_t v = 0; v < 5; v++) {
        uint64_t gen0 = 0;
        gossip_member_t m;
        SIM_CHECK(sim_view(s, (v + 1) % 5, v, &m), "no view");
        gen0 = m.generation;
        sim_restart(s, v);
        sim_watch(s, v);
        uint64_t t0 = sim_now_ms(s);
        uint64_t t = sim_run_until_seen(s, v, SIM_SEEN_CURRENT, t0 + 10000);
        SIM_CHECK(t != SIM_NEVER && t - t0 <= 2000, "n%04u restarted: current everywhere after %.2f s",
                  v, secs(t == SIM_NEVER ? t : t - t0));
        SIM_CHECK(sim_view(s, (v + 1) % 5, v, &m) && m.generation > gen0, "generation did not grow");
        sim_run_for(s, 10000);
    }
    /* a restart after the cluster declared it DEAD */
    sim_crash(s, 2);
    sim_watch(s, 2);
    SIM_CHECK(sim_run_until_seen(s, 2, SIM_SEEN_DEAD, sim_now_ms(s) + 60000) != SIM_NEVER,
              "crash not detected");
    sim_run_for(s, 5000);
    sim_restart(s, 2);
    sim_watch(s, 2);
    uint64_t t0 = sim_now_ms(s);
    uint64_t t = sim_run_until_seen(s, 2, SIM_SEEN_CURRENT, t0 + 10000);
    SIM_CHECK(t != SIM_NEVER && t - t0 <= 2000, "dead node restarted: current everywhere after %.2f s",
              secs(t == SIM_NEVER ? t : t - t0));
    SIM_CHECK(sim_event_view_mismatches(s) == 0, "events disagree with views");
    sim_destroy(s);
}

/* ---- robustness ------------------------------------------------------------- */

static void test_gossip_sim_three_second_pauses_are_never_declared_dead(void **state)
{
    (void)state;
    uint64_t seed = sim_seed(__func__);
    uint32_t ns[] = {5, 100};
    for (size_t k = 0; k < KV_ARRAY_LEN(ns); k++) {
        sim_config_t c = config(ns[k], seed + k);
        sim_pause_res_t r;
        uint32_t trials = ns[k] <= 10 ? 10 : 4;
        SIM_CHECK(sim_exp_pause(&c, 3000, trials, &r), "no convergence");
        print_message("N=%u, %u pauses of 3 s: suspected by %" PRIu64 ", down at %" PRIu64
                      ", DEAD at %" PRIu64 ", stalls %" PRIu64 "\n",
                      ns[k], r.trials, r.suspicions_of_paused, r.downs_of_paused,
                      r.deaths_of_paused, r.stalls);
        SIM_CHECK(r.deaths_of_paused == 0, "N=%u: a paused node was declared DEAD %" PRIu64 " times",
                  ns[k], r.deaths_of_paused);
        SIM_CHECK(r.deaths_by_paused == 0, "N=%u: a resumed node declared %" PRIu64 " deaths",
                  ns[k], r.deaths_by_paused);
        SIM_CHECK(r.delta.false_deaths == 0, "N=%u: %" PRIu64 " false deaths", ns[k],
                  r.delta.false_deaths);
        SIM_CHECK(r.stalls == r.trials, "N=%u: %" PRIu64 " stalls noticed in %u pauses", ns[k],
                  r.stalls, r.trials);
    }
}

static void test_gossip_sim_thirty_quiet_minutes_have_no_false_deaths(void **state)
{
    (void)state;
    uint64_t seed = sim_seed(__func__);
    sim_config_t c = config(5, seed);
    sim_quiet_res_t r;
    SIM_CHECK(sim_exp_quiet(&c, 30 * 60 * 1000, &r), "no convergence");
    SIM_CHECK(r.delta.false_deaths == 0 && r.delta.false_downs == 0,
              "%" PRIu64 " false deaths, %" PRIu64 " false downs", r.delta.false_deaths,
              r.delta.false_downs);
    SIM_CHECK(r.delta.false_suspicions == 0, "%" PRIu64 " false suspicions on a perfect network",
              r.delta.false_suspicions);
}

static void test_gossip_sim_loss_up_to_20pct_kills_no_one_and_detection_still_works(void **state)
{
    (void)state;
    uint64_t seed = sim_seed(__func__);
    const double loss[] = {0.05, 0.10, 0.20};
    for (size_t k = 0; k < KV_ARRAY_LEN(loss); k++) {
        sim_config_t c = config(5, seed + k);
        c.loss = loss[k];
        sim_quiet_res_t q;
        SIM_CHECK(sim_exp_quiet(&c, 10 * 60 * 1000, &q), "no convergence at %.0f%% loss",
                  loss[k] * 100);
        print_message("N=5, %.0f%% loss, 10 min: %" PRIu64 " suspicions (%" PRIu64
                      " false), %" PRIu64 " false deaths\n",
                      loss[k] * 100, q.delta.suspicions, q.delta.false_suspicions,
                      q.delta.false_deaths);
        SIM_CHECK(q.delta.false_deaths == 0, "%.0f%% loss: %" PRIu64 " false deaths",
                  loss[k] * 100, q.delta.false_deaths);

        sim_cluster_exp_t e = {.cfg = c, .crashes = 4};
        sim_cluster_res_t r;
        SIM_CHECK(sim_exp_cluster(&e, &r), "no convergence at %.0f%% loss", loss[k] * 100);
        for (uint32_t t = 0; t < 4; t++)
            SIM_CHECK(r.dead_ms[t] <= 30000 && r.down_ms[t] <= 30000,
                      "%.0f%% loss: kill %u seen down after %.2f s, DEAD after %.2f s",
                      loss[k] * 100, t, secs(r.down_ms[t]), secs(r.dead_ms[t]));
    }
}

static void test_gossip_sim_two_three_partition_heals_within_20s(void **state)
{
    (void)state;
    uint64_t seed = sim_seed(__func__);
    for (uint32_t t = 0; t < 3; t++) {
        sim_config_t c = config(5, seed + t);
        sim_partition_res_t r;
        SIM_CHECK(sim_exp_partition(&c, 2, 60000, 60000, &r), "no convergence");
        SIM_CHECK(r.split_seen, "after 60 s the sides did not see each other DEAD");
        SIM_CHECK(r.heal_ms <= 20000, "trial %u: converged %.2f s after the heal", t,
                  secs(r.heal_ms));
    }
}

/* Everything n0000 sends leaves `delay` ms late for 5 minutes. */
typedef struct slow_run {
    uint64_t suspicions_by_slow, suspicions_by_others, deaths, probes_by_slow;
    uint32_t max_awareness;
    bool slow_ever_dead;
} slow_run_t;

static void run_slow_member(uint64_t seed, uint32_t delay, slow_run_t *out)
{
    memset(out, 0, sizeof *out);
    sim_t *s = converged_cluster(5, seed, 30000);
    sim_run_for(s, 10000);
    sim_set_slow(s, 0, delay);
    sim_watch(s, 0);
    sim_counters_t a, b, sa, sb;
    gossip_stats_t g0, g1;
    sim_get_counters(s, &a);
    sim_node_counters(s, 0, &sa);
    gossip_get_stats(sim_gossip(s, 0), &g0);
    for (int k = 0; k < 300; k++) {
        sim_run_for(s, 1000);
        gossip_stats_t g;
        gossip_get_stats(sim_gossip(s, 0), &g);
        out->max_awareness = KV_MAX(out->max_awareness, g.awareness);
    }
    sim_get_counters(s, &b);
    sim_node_counters(s, 0, &sb);
    gossip_get_stats(sim_gossip(s, 0), &g1);
    out->suspicions_by_slow = sb.suspicions - sa.suspicions;
    out->suspicions_by_others = (b.suspicions - a.suspicions) - out->suspicions_by_slow;
    out->deaths = b.deaths - a.deaths;
    out->probes_by_slow = g1.probes - g0.probes;
    out->slow_ever_dead = sim_seen_by_first(s, 0, SIM_SEEN_DEAD) != SIM_NEVER;
    print_message("slow member, %u ms late for 5 min: it probed %" PRIu64 " times and raised %" PRIu64
                  " suspicions (awareness up to %u); the others raised %" PRIu64 "; deaths %" PRIu64 "\n",
                  delay, out->probes_by_slow, out->suspicions_by_slow, out->max_awareness,
                  out->suspicions_by_others, out->deaths);
    sim_destroy(s);
}

static void test_gossip_sim_slow_member_is_tolerated_by_local_health(void **state)
{
    (void)state;
    uint64_t seed = sim_seed(__func__);
    slow_run_t r;
    /* Answers within the probe period count, even after probe_timeout:
     * a member 900 ms slow is suspected by no one and suspects no one. */
    run_slow_member(seed, 900, &r);
    SIM_CHECK(r.suspicions_by_slow == 0 && r.suspicions_by_others == 0,
              "900 ms slow: %" PRIu64 " + %" PRIu64 " suspicions", r.suspicions_by_slow,
              r.suspicions_by_others);
    /* 2 s slow: the others suspect it, but it refutes every time, so it is
     * never declared dead; and Lifeguard's local health stretches its own
     * probe period so it stops accusing healthy members (without it: one
     * failed probe, one suspicion per second, 300 in 5 minutes). */
    run_slow_member(seed + 1, 2000, &r);
    SIM_CHECK(r.deaths == 0 && !r.slow_ever_dead, "2 s slow: %" PRIu64 " deaths", r.deaths);
    SIM_CHECK(r.max_awareness >= 3, "2 s slow: local health score only reached %u",
              r.max_awareness);
    SIM_CHECK(r.probes_by_slow <= 150, "2 s slow: it still probed %" PRIu64 " times in 300 s",
              r.probes_by_slow);
    SIM_CHECK(r.suspicions_by_slow <= 15, "2 s slow: it accused healthy members %" PRIu64 " times",
              r.suspicions_by_slow);
}

static void test_gossip_sim_events_agree_with_views_after_chaos(void **state)
{
    (void)state;
    uint64_t seed = sim_seed(__func__);
    sim_config_t c = config(30, seed);
    c.loss = 0.05;
    sim_t *s = sim_create(&c);
    SIM_CHECK(sim_run_until_converged(s, 60000) != SIM_NEVER, "no convergence");
    sim_crash(s, 4);
    sim_partition_split(s, 10);
    sim_run_for(s, 40000);
    sim_heal(s);
    sim_restart(s, 4);
    sim_pause(s, 20, 2000);
    sim_change_state(s, 25);
    sim_run_for(s, 40000);
    uint64_t bad = sim_event_view_mismatches(s);
    SIM_CHECK(bad == 0, "%" PRIu64 " views differ from what their events said", bad);
    sim_counters_t k;
    sim_get_counters(s, &k);
    SIM_CHECK(k.timer_stuck == 0, "gossip_next_timer did not advance %" PRIu64 " times",
              k.timer_stuck);
    sim_destroy(s);
}

/* ---- scaling ------------------------------------------------------------------ */

static void test_gossip_sim_detection_time_does_not_grow_with_n(void **state)
{
    (void)state;
    uint64_t seed = sim_seed(__func__);
    uint32_t ns[] = {10, 200};
    uint64_t first_med[2], dead_med[2];
    for (size_t k = 0; k < 2; k++) {
        uint64_t first[16], dead[16];
        size_t nt = 0;
        uint32_t clusters = ns[k] <= 10 ? 4 : 2, crashes = ns[k] <= 10 ? 4 : 3;
        for (uint32_t c = 0; c < clusters; c++) {
            sim_cluster_exp_t e = {.cfg = config(ns[k], seed + 100 * k + c), .crashes = crashes};
            sim_cluster_res_t r;
            SIM_CHECK(sim_exp_cluster(&e, &r), "N=%u did not converge", ns[k]);
            for (uint32_t t = 0; t < crashes; t++) {
                first[nt] = r.first_suspect_ms[t];
                dead[nt++] = r.dead_ms[t];
            }
        }
        first_med[k] = sim_median(first, nt);
        dead_med[k] = sim_median(dead, nt);
        print_message("N=%u: first suspicion med %.2f s, DEAD everywhere med %.2f s\n", ns[k],
                      secs(first_med[k]), secs(dead_med[k]));
    }
    /* SWIM: the first detection is independent of N */
    SIM_CHECK(first_med[1] <= first_med[0] * 3 / 2 + 500,
              "first detection: N=10 %.2f s, N=200 %.2f s", secs(first_med[0]), secs(first_med[1]));
    /* Everyone sees DEAD after the suspicion timeout, which grows with
     * log10 N by design (4 s at N=10, 9.2 s at N=200): beyond that growth
     * the time may not rise. */
    double growth = 4000.0 * (log10(200.0) - 1.0);
    SIM_CHECK((double)dead_med[1] <= (double)dead_med[0] + growth + 1500,
              "DEAD everywhere: N=10 %.2f s, N=200 %.2f s", secs(dead_med[0]), secs(dead_med[1]));
}

/* One cluster per size, shared by the load and dissemination tests (the
 * 1000-node one takes most of this file's run time): traffic over 10 s
 * after convergence, then state changes. Datagram counts do not depend on
 * the join's updates still queued, so no drain is needed for them. */
static const uint32_t scale_ns[] = {3, 10, 100, SCALE_N};
static sim_cluster_res_t scale_res[4];
static bool scale_done[4];
static const uint32_t scale_changes[] = {9, 9, 9, 5};

static const sim_cluster_res_t *scale_cluster(size_t k, uint64_t seed)
{
    if (!scale_done[k]) {
        sim_cluster_exp_t e = {.cfg = config(scale_ns[k], seed + k),
                               .changes = scale_changes[k],
                               .traffic_ms = 10000};
        SIM_CHECK(sim_exp_cluster(&e, &scale_res[k]), "N=%u did not converge", scale_ns[k]);
        scale_done[k] = true;
    }
    return &scale_res[k];
}

static void test_gossip_sim_messages_per_node_are_flat_from_3_to_scale_n(void **state)
{
    (void)state;
    uint64_t seed = sim_seed(__func__);
    /* Load per node must not grow with N. At N=3 a node has only 2 peers
     * for a fanout of 3, so it sends less (12/s against 17/s): that size
     * is held to "no more than the others", the rest to +-20% of their
     * mean. */
    double lo = INFINITY, hi = 0, mean = 0, at3 = 0;
    for (size_t k = 0; k < 4; k++) {
        const sim_cluster_res_t *r = scale_cluster(k, seed);
        double rate = r->udp_per_node_s + r->pp_per_node_s;
        print_message("N=%u: %.2f messages/node/s (%.2f datagrams, %.3f push-pulls)\n",
                      scale_ns[k], rate, r->udp_per_node_s, r->pp_per_node_s);
        if (scale_ns[k] <= 3) {
            at3 = rate;
            continue;
        }
        lo = fmin(lo, rate);
        hi = fmax(hi, rate);
        mean += rate / 3;
    }
    SIM_CHECK(hi <= mean * 1.2 && lo >= mean * 0.8,
              "messages/node/s from %.2f to %.2f around %.2f: not within +-20%%", lo, hi, mean);
    SIM_CHECK(at3 > 0 && at3 <= hi, "N=3 sends %.2f messages/node/s, more than larger "
              "clusters (%.2f)", at3, hi);
}

static void test_gossip_sim_dissemination_rounds_grow_like_log_n(void **state)
{
    (void)state;
    uint64_t seed = sim_seed(__func__);
    double rounds[4];
    for (size_t k = 1; k < 4; k++) { /* N = 10, 100, SCALE_N */
        const sim_cluster_res_t *r = scale_cluster(k, seed);
        uint64_t v[SIM_EXP_MAX_TRIALS];
        memcpy(v, r->change_ms, sizeof v);
        uint64_t med = sim_median(v, scale_changes[k]);
        SIM_CHECK(med != SIM_NEVER, "N=%u: a change never reached everyone", scale_ns[k]);
        gossip_config_t g;
        gossip_config_init(&g);
        rounds[k] = (double)med / g.gossip_interval_ms;
        double l2 = log2((double)scale_ns[k]);
        print_message("N=%u: a change reaches everyone in %.1f rounds (log2 N %.1f)\n",
                      scale_ns[k], rounds[k], l2);
        /* an epidemic with fanout 3 needs about log N rounds */
        SIM_CHECK(rounds[k] <= l2 + 2, "N=%u: %.1f rounds against log2 N = %.1f", scale_ns[k],
                  rounds[k], l2);
    }
    /* from 10 to SCALE_N nodes, like log N (x3 for 1000), not like N (x100) */
    double lr = log((double)SCALE_N) / log(10.0);
    SIM_CHECK(rounds[3] <= rounds[1] * lr * 1.5, "rounds %.1f at N=%u vs %.1f at N=10",
              rounds[3], SCALE_N, rounds[1]);
}

/* Phi at 200 nodes: no healthy member may stay down, and a restarted one
 * (its window starts again at every peer) must not be seen down at all.
 * KNOWN GAP: in the two minutes after the join phi still flags healthy
 * members down for a moment (166 such flaps with the default seed; they
 * clear by themselves and never reach DEAD). That count is printed, not
 * asserted, until phi learns faster in large clusters. */
static void test_gossip_sim_phi_keeps_healthy_members_up_at_200_nodes(void **state)
{
    (void)state;
    uint64_t seed = sim_seed(__func__);
    sim_t *s = converged_cluster(200, seed, 120000);
    sim_run_for(s, 30000);
    sim_counters_t a, b;
    sim_get_counters(s, &a);
    sim_run_for(s, 120000);
    sim_get_counters(s, &b);
    uint64_t after_join = b.downs - a.downs, pairs = sim_down_pairs(s);
    sim_restart(s, 7);
    sim_watch(s, 7);
    uint64_t t0 = sim_now_ms(s);
    uint64_t cur = sim_run_until_seen(s, 7, SIM_SEEN_CURRENT, t0 + 10000);
    sim_run_for(s, 60000);
    uint32_t saw_down = 0;
    for (uint32_t o = 0; o < 200; o++)
        saw_down += o != 7 && sim_seen_at(s, o, 7, SIM_SEEN_DOWN) != SIM_NEVER;
    print_message("N=200: %" PRIu64 " DOWN events about healthy members in the 2 min after the "
                  "join (%" PRIu64 " pairs down at the end); after a restart %u of 199 peers saw "
                  "it down\n",
                  after_join, pairs, saw_down);
    SIM_CHECK(cur != SIM_NEVER, "the restarted node never became current everywhere");
    SIM_CHECK(pairs == 0, "%" PRIu64 " healthy members still seen down after the join", pairs);
    SIM_CHECK(saw_down == 0, "%u peers saw a restarted, healthy member down", saw_down);
    sim_destroy(s);
}

/* ---- the tool ----------------------------------------------------------------- */

static void test_gossip_sim_tool_prints_the_three_tables(void **state)
{
    (void)state;
#ifdef CAIRN_GOSSIP_SIM_PATH
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s --quick --max-n 5 --seed 7 2>&1", CAIRN_GOSSIP_SIM_PATH);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    char out[65536];
    size_t len = fread(out, 1, sizeof out - 1, f);
    out[len] = 0;
    int st = pclose(f);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) print_error("%s\n", out);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_non_null(strstr(out, "1. Detection"));
    assert_non_null(strstr(out, "2. Dissemination"));
    assert_non_null(strstr(out, "3a. Packet loss"));
    assert_non_null(strstr(out, "3b. SIGSTOP"));
    assert_non_null(strstr(out, "3c. Partition"));
    assert_null(strstr(out, "never"));
    assert_null(strstr(out, "did not converge"));
#else
    fail_msg("built without cairn-gossip-sim (CAIRN_GOSSIP_SIM_PATH unset)");
#endif
}

/* test_gossip_sim [pattern]: run only the tests whose names match. */
int main(int argc, char **argv)
{
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        kv_unit_test(test_gossip_sim_same_seed_gives_the_same_run_bit_for_bit),
        kv_unit_test(test_gossip_sim_partition_cuts_traffic_and_pause_holds_it),
        kv_unit_test(test_gossip_sim_hundred_nodes_join_through_three_seeds),
        kv_unit_test(test_gossip_sim_initial_cluster_of_fifty_converges),
        kv_unit_test(test_gossip_sim_killed_node_is_down_everywhere_in_6s_median_8s_worst),
        kv_unit_test(test_gossip_sim_state_change_reaches_five_nodes_within_2s),
        kv_unit_test(test_gossip_sim_restarted_node_is_alive_everywhere_within_2s),
        kv_unit_test(test_gossip_sim_three_second_pauses_are_never_declared_dead),
        kv_unit_test(test_gossip_sim_thirty_quiet_minutes_have_no_false_deaths),
        kv_unit_test(test_gossip_sim_loss_up_to_20pct_kills_no_one_and_detection_still_works),
        kv_unit_test(test_gossip_sim_two_three_partition_heals_within_20s),
        kv_unit_test(test_gossip_sim_slow_member_is_tolerated_by_local_health),
        kv_unit_test(test_gossip_sim_events_agree_with_views_after_chaos),
        kv_unit_test(test_gossip_sim_detection_time_does_not_grow_with_n),
        kv_unit_test(test_gossip_sim_messages_per_node_are_flat_from_3_to_scale_n),
        kv_unit_test(test_gossip_sim_dissemination_rounds_grow_like_log_n),
        kv_unit_test(test_gossip_sim_phi_keeps_healthy_members_up_at_200_nodes),
        kv_unit_test(test_gossip_sim_tool_prints_the_three_tables),
    };
    return cmocka_run_group_tests_name("gossip_sim", tests, NULL, NULL);
}
