/* sim.h -- a deterministic simulator for Cairn's gossip: N gossip_t state
 * machines on a virtual clock and a virtual network, driven from one seed.
 *
 * WHAT IT IS  The gossip core is free of I/O (see gossip.h): it takes
 * (now, message) or (now, timer) and returns datagrams and push-pulls to
 * send. This simulator is the glue cairnd's node/ would be, with the clock
 * and the network replaced by a discrete-event queue:
 *
 *   - virtual time in microseconds (the nodes see milliseconds);
 *   - a datagram is delivered after base latency + uniform jitter, or lost
 *     with the loss probability, or dropped at a partition, a crashed
 *     node or a full receive buffer;
 *   - a push-pull is a TCP exchange: the request arrives after one
 *     latency, the responder's gossip_on_pushpull runs, its reply arrives
 *     after another; if neither came back within pushpull_timeout_ms the
 *     requester gets gossip_on_pushpull_failed;
 *   - faults: crash (stops ticking and receiving), restart (a new gossip_t
 *     with a larger generation, same name, node id and address), pause
 *     (SIGSTOP: no ticks; what arrives waits in the socket buffer and is
 *     read all at once on resume, then the overdue timer fires), slow
 *     member (every send leaves later), partitions and loss.
 *
 * The same seed gives the same run, bit for bit (sim_digest folds every
 * delivery and event into one number), so a failure is replayed by its
 * seed. The tool cairn-gossip-sim and tests/unit/test_gossip_sim.c both
 * drive it through this header; the "experiments" at the end are the
 * measurements the tool prints and the tests assert on.
 *
 * NODES  Node i is named "n%04u" (n0000, n0001 ...), lives at host
 * 10.0.(1 + i / 250).(1 + i % 250) port 7071, has a random node id, 1-16
 * random tokens and status NORMAL. Its seeds are the first nseeds nodes
 * (itself excluded); with all_known every node also starts with every
 * other one added by gossip_add_known, as cairnd does with initial_cluster.
 *
 * OBSERVATION  Every event a node reports is counted and, for watched
 * subjects, timed per observer (sim_watch, sim_seen_*). A suspicion, death
 * or "down" about a node that was running and reachable from the observer
 * (paused counts as running) for at least false_grace_ms is counted as
 * false. Traffic is counted per sending node.
 *
 * THREADING  A sim_t belongs to one thread; separate sim_t may run on
 * separate threads (no globals).
 */
#ifndef CAIRN_GOSSIP_SIM_H
#define CAIRN_GOSSIP_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "gossip.h"

#define SIM_NEVER UINT64_MAX
#define SIM_PORT 7071u
#define SIM_MAX_NODES 62500u /* 250 x 250 addresses */

typedef struct sim sim_t;

typedef struct sim_config {
    uint32_t nodes;
    uint64_t seed;
    uint32_t nseeds;              /* the first nseeds nodes are seeds: 3 */
    bool all_known;               /* start with every other node known: false */
    uint32_t start_spread_ms;     /* node i starts at a random time in
                                     [0, spread]: 1000 */
    uint32_t latency_us;          /* per message: 100 */
    uint32_t jitter_us;           /* plus uniform [0, jitter]: 900 */
    double loss;                  /* datagram loss probability: 0 */
    uint32_t pushpull_timeout_ms; /* 2000 (cairnd's peer_timeout_ms) */
    uint32_t rcvbuf_bytes;        /* a paused node's UDP buffer: 212992 */
    uint32_t false_grace_ms;      /* see OBSERVATION: 30000 */
    gossip_config_t gossip;       /* every node's settings; .seed is
                                     replaced by one drawn per node */
} sim_config_t;

/* Defaults above, with gossip_config_init's gossip settings. */
void sim_config_init(sim_config_t *c, uint32_t nodes, uint64_t seed);

/* Aborts with a message on a bad configuration (this is test tooling). */
sim_t *sim_create(const sim_config_t *c);
void sim_destroy(sim_t *s);

/* ---- time -------------------------------------------------------------- */

uint64_t sim_now_ms(const sim_t *s);
/* Process every event up to and including time t, then stand at t. */
void sim_run_until(sim_t *s, uint64_t t_ms);
void sim_run_for(sim_t *s, uint64_t ms);

/* Every node has started, and every running node sees every other running
 * node known, ALIVE and at its current generation (paused nodes count as
 * running). Whether it is also "up" (phi) is sim_down_pairs' business. */
bool sim_converged(sim_t *s);
/* Run, checking every 100 ms, until sim_converged or deadline (absolute
 * ms). Returns the time it first held, or SIM_NEVER. */
uint64_t sim_run_until_converged(sim_t *s, uint64_t deadline_ms);

/* ---- faults and changes ------------------------------------------------ */

void sim_crash(sim_t *s, uint32_t i);
/* A crashed or running node starts again: new gossip_t, generation larger
 * than before, same name, node id, address and tokens. */
void sim_restart(sim_t *s, uint32_t i);
/* SIGSTOP for ms, then SIGCONT. The node must be running, not paused. */
void sim_pause(sim_t *s, uint32_t i, uint32_t ms);
/* group_of[i] for every node; messages between groups are dropped. */
void sim_partition(sim_t *s, const uint32_t *group_of);
/* Nodes [0, k) in one group, the rest in another. */
void sim_partition_split(sim_t *s, uint32_t k);
void sim_heal(sim_t *s);
void sim_set_loss(sim_t *s, double p);
/* Everything node i sends leaves delay_ms later (0: normal again). */
void sim_set_slow(sim_t *s, uint32_t i, uint32_t delay_ms);
/* Node i announces a new set of tokens (gossip_set_local): a state change
 * to disseminate. Watch it with sim_watch(i) afterwards. */
void sim_change_state(sim_t *s, uint32_t i);

/* ---- observation -------------------------------------------------------- */

typedef enum {
    SIM_SEEN_SUSPECT,  /* a GOSSIP_EV_SUSPECT about the subject */
    SIM_SEEN_DEAD,     /* GOSSIP_EV_DEAD */
    SIM_SEEN_DOWN,     /* GOSSIP_EV_DOWN */
    SIM_SEEN_ALIVE,    /* GOSSIP_EV_ALIVE */
    SIM_SEEN_UP,       /* GOSSIP_EV_UP */
    SIM_SEEN_CURRENT,  /* the view holds the subject's generation and at
                          least its incarnation as of sim_watch, ALIVE */
    SIM_SEEN_COUNT_
} sim_seen_t;

const char *sim_seen_str(sim_seen_t w);

/* Start (or restart) timing what every observer sees of subject, from now.
 * A state already true in an observer's view now counts as seen now. */
void sim_watch(sim_t *s, uint32_t subject);
/* When the watch started (ms), SIM_NEVER if subject is not watched. */
uint64_t sim_watch_start(const sim_t *s, uint32_t subject);
/* Absolute ms observer first saw it since the watch began, or SIM_NEVER. */
uint64_t sim_seen_at(const sim_t *s, uint32_t observer, uint32_t subject,
                     sim_seen_t what);
/* The latest sim_seen_at over every running observer other than the
 * subject (SIM_NEVER if one has not seen it), and the earliest. */
uint64_t sim_seen_by_all(const sim_t *s, uint32_t subject, sim_seen_t what);
uint64_t sim_seen_by_first(const sim_t *s, uint32_t subject, sim_seen_t what);
/* Run until sim_seen_by_all(subject, what) is set or deadline; returns it. */
uint64_t sim_run_until_seen(sim_t *s, uint32_t subject, sim_seen_t what,
                            uint64_t deadline_ms);

typedef struct sim_counters {
    uint64_t udp_sent, udp_bytes;      /* datagrams handed to the network */
    uint64_t udp_delivered, udp_lost;  /* lost: the loss probability */
    uint64_t udp_cut;                  /* partition, crashed or unknown */
    uint64_t udp_overflow;             /* a paused node's full buffer */
    uint64_t pp_started, pp_bytes;     /* push-pulls; request + reply bytes */
    uint64_t pp_answered, pp_failed;
    uint64_t ticks, calls;             /* calls into gossip_t of any kind */
    uint64_t timer_past;               /* gossip_next_timer <= the tick just
                                          made: ticked again at once */
    uint64_t timer_stuck;              /* ... 4 times in one ms (a bug) */
    uint64_t suspicions, deaths, downs;/* events, anywhere */
    uint64_t false_suspicions, false_deaths, false_downs;
    uint64_t refutes, conflicts, refusals;
    uint64_t events;
} sim_counters_t;

void sim_get_counters(const sim_t *s, sim_counters_t *out);
/* Counters of events observed by node i only (false_* and the rest). */
void sim_node_counters(const sim_t *s, uint32_t i, sim_counters_t *out);

/* Pairs (o, s) where o's event stream (ALIVE/SUSPECT/DEAD since o learnt
 * of s) leaves a liveness other than o's view says: should be 0. */
uint64_t sim_event_view_mismatches(sim_t *s);

/* Pairs (o, s) of running nodes where o's view has s not up right now. */
uint64_t sim_down_pairs(sim_t *s);

/* A hash of every delivery and event so far: equal seeds, equal digests. */
uint64_t sim_digest(const sim_t *s);

/* Print every event and fault as it happens (NULL: off). */
void sim_set_trace(sim_t *s, FILE *f);

/* ---- nodes --------------------------------------------------------------- */

uint32_t sim_nodes(const sim_t *s);
const char *sim_node_name(const sim_t *s, uint32_t i);
/* Started and not crashed (a paused node is running). */
bool sim_running(const sim_t *s, uint32_t i);
bool sim_paused(const sim_t *s, uint32_t i);
/* The node's state machine, NULL when not running. */
gossip_t *sim_gossip(sim_t *s, uint32_t i);
/* observer's view of subject now; false if not running or not a member. */
bool sim_view(sim_t *s, uint32_t observer, uint32_t subject, gossip_member_t *out);
const sim_config_t *sim_config(const sim_t *s);

/* ---- small statistics --------------------------------------------------- */

/* Sorts v. Median (lower middle for even n) and maximum; 0 for n == 0. */
uint64_t sim_median(uint64_t *v, size_t n);
uint64_t sim_max(const uint64_t *v, size_t n);

/* ---- experiments (what the tool prints and the tests assert) ------------- */

/* One cluster of `nodes` joined through its seeds, converged, then:
 *   traffic:  sends per node per second over traffic_ms (with drain:
 *             once the join's updates have drained, i.e. steady state);
 *   changes:  `changes` times, a random node announces new tokens; the
 *             time until every other node has it (SIM_SEEN_CURRENT);
 *   crashes:  `crashes` times, a random node is killed; the times until
 *             every survivor sees it down and DEAD, and until the first
 *             node suspects it; then it restarts and the cluster
 *             re-converges before the next trial.
 * Times are ms after the change or crash; SIM_NEVER if not within
 * deadline_ms. */
#define SIM_EXP_MAX_TRIALS 64

typedef struct sim_cluster_exp {
    sim_config_t cfg;          /* from sim_config_init; nodes and seed */
    uint32_t changes, crashes; /* <= SIM_EXP_MAX_TRIALS */
    uint32_t traffic_ms;       /* 0: skip */
    bool drain;                /* measure traffic in steady state */
    uint32_t deadline_ms;      /* per trial: 120000 */
} sim_cluster_exp_t;

typedef struct sim_cluster_res {
    uint64_t join_ms;          /* time to the first convergence */
    double udp_per_node_s, udp_bytes_per_node_s, pp_bytes_per_node_s;
    double pp_per_node_s;
    uint64_t change_ms[SIM_EXP_MAX_TRIALS];
    uint64_t first_suspect_ms[SIM_EXP_MAX_TRIALS]; /* SWIM's first detection */
    uint64_t down_ms[SIM_EXP_MAX_TRIALS];
    uint64_t dead_ms[SIM_EXP_MAX_TRIALS];
    uint64_t rejoin_ms[SIM_EXP_MAX_TRIALS]; /* restart -> CURRENT everywhere */
    sim_counters_t counters;   /* over the whole run */
    uint64_t digest;
} sim_cluster_res_t;

/* false if the cluster never converged (res->join_ms == SIM_NEVER). */
bool sim_exp_cluster(const sim_cluster_exp_t *e, sim_cluster_res_t *res);

/* A healthy cluster left alone for duration_ms after converging (with loss
 * cfg.loss throughout): how many false suspicions and deaths. */
typedef struct sim_quiet_res {
    uint64_t join_ms;
    sim_counters_t delta;      /* counters over the quiet period only */
} sim_quiet_res_t;
bool sim_exp_quiet(const sim_config_t *cfg, uint64_t duration_ms, sim_quiet_res_t *res);

/* `trials` pauses of pause_ms, each of a different random node, 20 s apart
 * after convergence. Counts what the others concluded about the paused
 * node (false deaths and downs) and what it concluded about them. */
typedef struct sim_pause_res {
    uint64_t join_ms;
    uint32_t trials;
    uint64_t deaths_of_paused;    /* DEAD events about a paused node */
    uint64_t downs_of_paused;
    uint64_t suspicions_of_paused;
    uint64_t deaths_by_paused;    /* DEAD events at the paused node */
    uint64_t stalls;              /* stalls the paused nodes noticed */
    sim_counters_t delta;
} sim_pause_res_t;
bool sim_exp_pause(const sim_config_t *cfg, uint32_t pause_ms, uint32_t trials,
                   sim_pause_res_t *res);

/* Split into [0, k) | [k, n) for hold_ms, heal, and time how long until the
 * cluster converges again (every node sees every other ALIVE). */
typedef struct sim_partition_res {
    uint64_t join_ms;
    bool split_seen;              /* each side saw the other side DEAD */
    uint64_t heal_ms;             /* heal -> converged; SIM_NEVER */
    sim_counters_t delta;
} sim_partition_res_t;
bool sim_exp_partition(const sim_config_t *cfg, uint32_t k, uint32_t hold_ms,
                       uint32_t deadline_ms, sim_partition_res_t *res);

#endif /* CAIRN_GOSSIP_SIM_H */
