/* gossip.h -- Cairn's membership and failure detection: SWIM with
 * Lifeguard's refinements, phi-accrual liveness, and the cluster state each
 * node announces (address, ports, node id, rack, tokens, status, load).
 *
 * I/O-FREE  A gossip_t is a state machine. It never reads a clock, opens a
 * socket or logs. The caller (node/gossip_glue.c in cairnd, gossip/sim.c in
 * tests) feeds it time and messages and carries out what it asks for:
 *
 *   gossip_tick(now)            timers: probes, ping-req, suspicion, gossip,
 *                               push-pull, seed contact, load announcements
 *   gossip_on_udp(now, pkt)     a UDP datagram arrived on the gossip port
 *   gossip_on_pushpull(now,req) a push-pull request arrived over TCP: merge
 *                               it and produce the reply
 *   gossip_on_pushpull_reply / _failed
 *                               the answer to one this node started
 *   -> gossip_actions()         datagrams to send, push-pulls to start
 *   -> gossip_events()          what changed (for logs, metrics, the ring)
 *   -> gossip_next_timer()      when to call gossip_tick next
 *
 * All times are milliseconds on the caller's monotonic clock (cairnd: the
 * loop's monotonic clock; the simulator: virtual time). Addresses are
 * (host, port) where host is what a node announced (normally an IP
 * literal) or a seed exactly as configured (possibly a DNS name, which the
 * caller resolves at each attempt). Resolving and sending are the caller's
 * job; a send that fails is simply a lost packet.
 *
 * PROTOCOL (defaults in gossip_config_init; wire format and rules in
 *           docs/gossip.md)
 *   - Probe: every probe_interval, ping one member, round-robin over a
 *     list reshuffled on each pass. No ack within probe_timeout: ping-req
 *     through indirect_checks other members (each answers ack, or nack if
 *     its own ping got nothing). No ack by the end of the period: the
 *     member becomes SUSPECT at its current incarnation.
 *   - Lifeguard: the suspicion timer starts at max = 6 x min and shrinks
 *     as independent confirmations (other members' suspect messages) arrive:
 *     max - log(n+1)/log(k+1) * (max - min), min = suspicion_mult *
 *     max(1, log10 N) * probe_interval. A local health score (0..8) rises
 *     on a failed probe with missing nacks and on refuting a suspicion about
 *     this node, falls on a clean probe, and stretches this node's probe
 *     interval and timeout by (score + 1). A ping to a suspect or dead
 *     member carries that suspicion, so the member can refute at once.
 *   - Refute: only the member itself raises its incarnation, when it hears
 *     it is suspect or dead. SUSPECT -> DEAD when the timer expires.
 *   - Dissemination: updates (alive with the full announced state, suspect,
 *     dead) ride on every ping, ack, nack and gossip datagram, fewest-sent
 *     first, each sent retransmit_mult * ceil(log10(N + 1)) times. Every
 *     gossip_interval the node sends a gossip datagram to gossip_fanout
 *     random live members (empty of updates if it has none: these
 *     datagrams are also phi's heartbeats). An alive too big for a
 *     datagram (many tokens) is gossiped compact, its tokens replaced by
 *     a digest: receivers holding those tokens apply it, others fetch the
 *     state by push-pull. A datagram from a member whose state this node
 *     lacks (unknown, placeholder, newer generation) also triggers a
 *     push-pull with it, at most once per seed_interval.
 *   - Push-pull: every pushpull_interval, full state with one random live
 *     member over TCP; and with the seeds while no other member is alive.
 *   - Dead members keep being probed, one every dead_probe_interval, so a
 *     healed partition merges by itself.
 *   - Ordering of a member's records: (generation, incarnation), then
 *     DEAD > SUSPECT > ALIVE at the same pair. A node raises its
 *     incarnation whenever its announced state changes (gossip_set_local),
 *     and takes a new, larger generation on every start.
 *   - Phi accrual per member, over the inter-arrival times of datagrams
 *     from it (arrivals closer than phi_min_gap_ms to the last sample are
 *     merged), normal distribution with phi_min_std_ms and
 *     phi_acceptable_pause_ms added to the mean. After this node's own loop
 *     has stalled (a tick more than stall_ms late), no member is convicted
 *     by phi until a new sample from it arrives, and suspicion timers are
 *     pushed back by the stall.
 *   - Identity: a member is its name. An announcement of a known name with
 *     another node_id is a conflict: ignored, counted, reported as an
 *     event; a push-pull request that carries one is refused (so is one from
 *     another cluster, protocol version or replication factor), and the
 *     refused side records why (gossip_refusal).
 *
 * Membership and liveness are separate: a DEAD member keeps its tokens and
 * stays in the table. Only status (JOINING/NORMAL/LEAVING/LEFT, announced
 * by the member itself) says whether it is in the ring.
 *
 * THREADING  One thread per gossip_t; no globals, so a simulator may run
 * thousands side by side.
 */
#ifndef CAIRN_GOSSIP_H
#define CAIRN_GOSSIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kv.h"

#define GOSSIP_PROTO_VERSION 1
#define GOSSIP_MAX_NAME 255u       /* node name, rack, host, cluster name */
#define GOSSIP_MAX_TOKENS 4096u    /* = RING_MAX_NODE_TOKENS */
#define GOSSIP_MAX_UDP 1400u       /* datagrams never exceed this */

typedef struct gossip gossip_t;

typedef enum {
    GOSSIP_ALIVE = 0,
    GOSSIP_SUSPECT = 1,
    GOSSIP_DEAD = 2,
} gossip_liveness_t;

/* Announced by the node itself; decides ring membership. */
typedef enum {
    GOSSIP_JOINING = 0,
    GOSSIP_NORMAL = 1,
    GOSSIP_LEAVING = 2,
    GOSSIP_LEFT = 3,
} gossip_status_t;

const char *gossip_liveness_str(gossip_liveness_t l); /* "alive" ... */
const char *gossip_status_str(gossip_status_t s);     /* "joining" ... */

typedef struct gossip_config {
    const char *cluster_name;        /* required; checked on every message */
    uint32_t replication_factor;     /* checked on push-pull; 0 = not checked */
    uint32_t probe_interval_ms;      /* 1000 */
    uint32_t probe_timeout_ms;       /* 500 */
    uint32_t indirect_checks;        /* 3 */
    uint32_t suspicion_mult;         /* 4 */
    uint32_t suspicion_max_mult;     /* 6 (max = 6 x min) */
    uint32_t retransmit_mult;        /* 4 */
    uint32_t gossip_interval_ms;     /* 200 */
    uint32_t gossip_fanout;          /* 3 */
    uint32_t pushpull_interval_ms;   /* 30000 */
    uint32_t seed_interval_ms;       /* 1000: seed contact while alone */
    uint32_t dead_probe_interval_ms; /* 5000 */
    uint32_t awareness_max;          /* 8 */
    uint32_t load_interval_ms;       /* 10000: load re-announced at most this often */
    double phi_threshold;            /* 8.0 */
    uint32_t phi_window;             /* 100 samples */
    uint32_t phi_min_std_ms;         /* 100 */
    uint32_t phi_acceptable_pause_ms;/* 3000 */
    uint32_t phi_first_estimate_ms;  /* 1000: mean before any sample */
    uint32_t phi_min_gap_ms;         /* 50 */
    uint32_t stall_ms;               /* 2000: a tick this late = own stall
                                        (must exceed gossip_interval_ms) */
    uint64_t seed;                   /* randomness (shuffles, targets) */
} gossip_config_t;

void gossip_config_init(gossip_config_t *c);

/* What a node announces about itself. Strings are copied. */
typedef struct gossip_local {
    const char *name;          /* unique in the cluster */
    const char *node_id;       /* 32 hex chars, stable across restarts */
    const char *host;          /* address others reach it at */
    uint16_t port;             /* gossip UDP and peer TCP */
    uint16_t client_port, admin_port;
    const char *rack;
    uint64_t generation;       /* larger on every start (wall ms at start) */
    gossip_status_t status;
    const uint64_t *tokens;    /* ascending; may be empty (not yet chosen) */
    uint32_t ntokens;
    uint64_t load_bytes;
} gossip_local_t;

/* A member as this node sees it (itself included). Pointers live until the
 * next call that changes the gossip_t. */
typedef struct gossip_member {
    const char *name, *node_id, *host, *rack;
    uint16_t port, client_port, admin_port;
    uint64_t generation, incarnation;
    gossip_status_t status;
    const uint64_t *tokens;
    uint32_t ntokens;
    uint64_t load_bytes;
    gossip_liveness_t liveness;
    double phi;                /* now; 0 for itself and before any sample */
    bool up;                   /* self, or liveness != DEAD && phi < threshold
                                  (phi not counted while stalled, see above) */
    bool self;
    bool known;                /* false: a placeholder from gossip_add_known
                                  never heard from (generation 0) */
    uint64_t last_heard_ms;    /* 0 = never */
} gossip_member_t;

/* ---- lifecycle -------------------------------------------------------- */

/* KV_INVALID with kv_errmsg() for a bad config or local state. */
kv_status_t gossip_create(const gossip_config_t *cfg, const gossip_local_t *self,
                          uint64_t now_ms, gossip_t **out);
void gossip_destroy(gossip_t *g);

/* A member known before anyone is heard from (initial_cluster, the saved
 * view): generation 0, incarnation 0, ALIVE, probed like any member, so it
 * goes SUSPECT then DEAD if it never answers. Any real announcement
 * replaces it. node_id may be NULL or "" (unknown). KV_EXISTS if the name
 * is known already (the known record is kept). */
kv_status_t gossip_add_known(gossip_t *g, uint64_t now_ms, const gossip_local_t *m);

/* Addresses to push-pull with while no other member is alive (and once at
 * start): tried every seed_interval until one answers. Replaces the list.
 * The node's own address among them is skipped by the caller. */
void gossip_set_seeds(gossip_t *g, const char *const *hosts,
                      const uint16_t *ports, size_t n);

/* Change what this node announces (status, tokens, ports, load ...). A
 * change other than load raises the incarnation and is disseminated at
 * once; load alone is announced at most every load_interval_ms (and only
 * when it changed). name, node_id and generation may not change
 * (KV_INVALID). */
kv_status_t gossip_set_local(gossip_t *g, uint64_t now_ms, const gossip_local_t *self);

/* Announce another member's status on its behalf -- how a ring change for
 * a dead member is made known (removenode: LEAVING then LEFT; replace:
 * LEFT). The member's record is re-announced at the next incarnation with
 * the new status. The one exception to "only a member raises its own
 * incarnation": meant for members that are DEAD, since a live one that
 * hears it refutes by announcing its own state above it (a live node
 * cannot be removed this way). KV_NOTFOUND for an unknown name;
 * KV_INVALID for this node or a placeholder never heard from. */
kv_status_t gossip_set_member_status(gossip_t *g, uint64_t now_ms, const char *name,
                                     gossip_status_t status);

/* ---- inputs ----------------------------------------------------------- */

void gossip_tick(gossip_t *g, uint64_t now_ms);

/* A datagram. Malformed, foreign (other cluster), other-version and
 * conflicting datagrams are dropped and counted (gossip_stats); nothing a
 * datagram holds can make this fail otherwise. */
void gossip_on_udp(gossip_t *g, uint64_t now_ms, const uint8_t *data, size_t len);

/* A push-pull request that arrived over TCP. Appends the reply to *reply
 * (always: this node's full state, or a refusal the requester can read)
 * and returns KV_OK, or the refusal's reason with kv_errmsg() set:
 * KV_DENIED other cluster / duplicate node name, KV_PROTO other version
 * or malformed, KV_INVALID other replication factor. */
kv_status_t gossip_on_pushpull(gossip_t *g, uint64_t now_ms, const uint8_t *req,
                               size_t len, kv_buf_t *reply);

/* The reply to a GOSSIP_ACT_PUSHPULL this node asked for (id from the
 * action). A refusal is recorded (gossip_refusal) and reported as an event;
 * returns KV_OK or the refusal's reason. Unknown ids are ignored. */
kv_status_t gossip_on_pushpull_reply(gossip_t *g, uint64_t now_ms, uint64_t id,
                                     const uint8_t *data, size_t len);
/* It could not be delivered or answered (connect error, timeout). */
void gossip_on_pushpull_failed(gossip_t *g, uint64_t now_ms, uint64_t id);

/* ---- outputs ---------------------------------------------------------- */

typedef enum {
    GOSSIP_ACT_UDP,      /* send data as one datagram to host:port */
    GOSSIP_ACT_PUSHPULL, /* open TCP to host:port, send data as a
                            PEER_GOSSIP_PUSHPULL frame, feed the reply */
} gossip_act_kind_t;

typedef struct gossip_action {
    gossip_act_kind_t kind;
    const char *host;
    uint16_t port;
    const uint8_t *data;
    size_t len;
    uint64_t id;         /* PUSHPULL: for gossip_on_pushpull_reply/_failed */
    const char *target;  /* member name when known, else NULL (a seed) */
} gossip_action_t;

typedef enum {
    GOSSIP_EV_JOINED,    /* a member not known before (or a placeholder's
                            first real announcement) */
    GOSSIP_EV_UPDATED,   /* announced state changed (status, tokens, ports,
                            host, rack; not load alone) */
    GOSSIP_EV_RESTARTED, /* a new generation */
    GOSSIP_EV_ALIVE,     /* SUSPECT/DEAD -> ALIVE */
    GOSSIP_EV_SUSPECT,
    GOSSIP_EV_DEAD,
    GOSSIP_EV_UP,        /* member.up false -> true */
    GOSSIP_EV_DOWN,      /* member.up true -> false (why in text) */
    GOSSIP_EV_REFUTED,   /* this node refuted a suspicion about itself */
    GOSSIP_EV_CONFLICT,  /* an announcement for a known name with another
                            node_id (text says which) */
    GOSSIP_EV_REFUSED,   /* a push-pull was refused, by or to this node */
} gossip_event_kind_t;

typedef struct gossip_event {
    gossip_event_kind_t kind;
    const char *name;    /* the member concerned */
    const char *text;    /* a human sentence for the log */
    uint64_t at_ms;
} gossip_event_t;

/* What to do / what happened since the last clear. Pointers live until
 * gossip_actions_clear, which clears both lists. */
const gossip_action_t *gossip_actions(const gossip_t *g, size_t *n);
const gossip_event_t *gossip_events(const gossip_t *g, size_t *n);
void gossip_actions_clear(gossip_t *g);

/* Absolute time of the next timer; always set (probe, gossip). */
uint64_t gossip_next_timer(const gossip_t *g);

/* ---- the view ---------------------------------------------------------- */

size_t gossip_member_count(const gossip_t *g);
/* i in 0..count-1 in a stable order (members are never removed, so an
 * index stays valid; new members are appended); phi evaluated at now. */
void gossip_member_at(const gossip_t *g, size_t i, uint64_t now_ms,
                      gossip_member_t *out);
/* KV_NOTFOUND if the name is not a member. */
kv_status_t gossip_member_find(const gossip_t *g, const char *name,
                               uint64_t now_ms, gossip_member_t *out);

/* Bumped whenever anything that shapes the ring changes: a member joined,
 * its status, tokens, rack, host or ports changed. */
uint64_t gossip_ring_version(const gossip_t *g);
/* Bumped whenever any member's liveness or up changes. up also moves with
 * phi over time: callers that need it exact re-read members on a timer. */
uint64_t gossip_liveness_version(const gossip_t *g);

/* Why the last push-pull to this node's seeds or members was refused
 * ("" if none since the last success). */
const char *gossip_refusal(const gossip_t *g);

typedef struct gossip_stats {
    uint64_t udp_sent, udp_received, udp_bytes_sent, udp_bytes_received;
    uint64_t pushpull_sent, pushpull_received, pushpull_bytes_sent,
        pushpull_bytes_received;
    uint64_t pushpull_failed, pushpull_refused;
    uint64_t probes, probes_failed;
    uint64_t indirect_probes;      /* probes that went on to ping-req */
    uint64_t suspicions_raised;    /* members this node suspected (or
                                      confirmed suspect) on its own probe */
    uint64_t suspicions_refuted;   /* times this node refuted itself */
    uint64_t deaths_declared;      /* SUSPECT -> DEAD here */
    uint64_t dropped_malformed, dropped_cluster, dropped_version,
        dropped_conflict;
    uint64_t stalls;               /* own-loop stalls noticed */
    uint32_t awareness;            /* local health score now */
    uint32_t members_alive, members_suspect, members_dead;
} gossip_stats_t;

void gossip_get_stats(const gossip_t *g, gossip_stats_t *out);

/* Check the state machine's invariants (tests call it after every step):
 * KV_OK, or KV_CORRUPT with kv_errmsg() saying which one broke. */
kv_status_t gossip_validate(const gossip_t *g);

/* ---- phi accrual (also used alone) ------------------------------------ */

typedef struct gossip_phi gossip_phi_t;

gossip_phi_t *gossip_phi_new(uint32_t window, uint32_t min_std_ms,
                             uint32_t acceptable_pause_ms,
                             uint32_t first_estimate_ms, uint32_t min_gap_ms);
void gossip_phi_free(gossip_phi_t *p);
/* A heartbeat arrived at now. */
void gossip_phi_sample(gossip_phi_t *p, uint64_t now_ms);
/* Forget every sample (a member restarted). */
void gossip_phi_reset(gossip_phi_t *p);
/* phi at now: -log10(P(a gap at least this long)), 0 before any sample;
 * finite and monotone in now (large gaps give large finite values). */
double gossip_phi_value(const gossip_phi_t *p, uint64_t now_ms);
uint64_t gossip_phi_last(const gossip_phi_t *p); /* 0 = no sample */

#endif /* CAIRN_GOSSIP_H */
