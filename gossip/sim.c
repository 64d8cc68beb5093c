/* sim.c -- the deterministic gossip simulator (see sim.h for the model).
 *
 * DESIGN  One binary heap of events ordered by (time in us, sequence
 *         number); the sequence number makes equal times FIFO, so nothing
 *         depends on heap layout, addresses or wall time, and one seed
 *         fixes the run. Events:
 *
 *           START      node boots (staggered by start_spread_ms)
 *           TICK       gossip_tick at the node's gossip_next_timer
 *           UDP        a datagram arrives
 *           PP_REQ     a push-pull request arrives at the responder
 *           PP_REPLY   its reply arrives back at the requester
 *           PP_TIMEOUT the requester gives up (if no reply came first)
 *           RESUME     a paused node continues
 *
 *         After every call into a gossip_t, node_flush() carries out its
 *         actions (datagrams and push-pulls become future events), records
 *         its events, clears both lists and re-arms the node's one timer:
 *         a TICK carries the timer epoch it was armed with and is ignored
 *         when the node re-armed since (lazy deletion).
 *
 *         A push-pull is a record (pp_rec_t) shared by the request/reply
 *         chain and the timeout; whichever reaches the requester first
 *         marks it done, the other is ignored. The record goes back to the
 *         free list when both are gone (refs).
 *
 *         Each node start is a "life": events addressed to an instance
 *         (ticks, push-pull outcomes) carry it, so nothing meant for a
 *         crashed instance reaches its successor. Datagrams and push-pull
 *         requests are addressed to host:port and reach whoever lives
 *         there, as on a real network.
 *
 *         Pause: ticks are dropped while stopped; anything else for the
 *         node is held in arrival order (datagrams up to rcvbuf_bytes, as
 *         a socket buffer) and handled at resume, then the node's overdue
 *         timer fires -- late, so its stall logic sees the stall.
 *
 * OBSERVATION  Per node: traffic it sent and events it reported. Per
 *         (observer, subject): the liveness its events imply (evview, one
 *         byte, compared to the real view by sim_event_view_mismatches).
 *         Per watched subject: when each observer first saw each state.
 *
 * THREADING  none inside; one sim_t per thread.
 */
#include "sim.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIM_WALL_BASE_MS 1700000000000ULL /* generations look like wall ms */
#define SIM_CHECK_STEP_MS 100u
#define SIM_NO_NODE UINT32_MAX

typedef enum {
    EV_START,
    EV_TICK,
    EV_UDP,
    EV_PP_REQ,
    EV_PP_REPLY,
    EV_PP_TIMEOUT,
    EV_RESUME,
} ev_kind_t;

typedef struct ev {
    uint64_t at_us, seq;
    uint8_t *data; /* owned by the event */
    size_t len;
    uint32_t kind;
    uint32_t node; /* where it happens */
    uint32_t from; /* sender (UDP, PP_REQ, PP_REPLY) */
    uint32_t life; /* instance of node it is for (TICK, PP_*, RESUME) */
    uint32_t tag;  /* TICK: timer epoch; PP_*: push-pull record */
} ev_t;

typedef struct pp_rec {
    uint64_t id;       /* the requester's push-pull id */
    uint32_t from, from_life, to;
    uint32_t refs;     /* pending events naming this record */
    uint32_t next_free;
    bool done;
} pp_rec_t;

typedef struct sim_node {
    char name[16], host[24], node_id[33], rack[8];
    uint64_t tokens[16];
    uint32_t ntokens;
    uint64_t generation;
    gossip_t *g;
    bool started, crashed, paused;
    uint32_t life;
    uint32_t group;
    uint64_t slow_us;
    bool timer_armed;
    uint32_t timer_epoch;
    uint64_t timer_at_us;
    uint64_t last_tick_ms;
    uint32_t spin; /* ticks in a row at the same ms */
    ev_t *held; /* while paused */
    size_t nheld, capheld, held_udp_bytes;
    uint64_t reach_since_us;
    sim_counters_t c; /* traffic it sent, events it reported */
} sim_node_t;

typedef struct watch {
    uint64_t start_ms;
    uint64_t target_gen, target_inc;
    uint64_t *seen; /* [observer * SIM_SEEN_COUNT_ + what] */
} watch_t;

struct sim {
    sim_config_t cfg;
    char *cluster;
    kv_rng_t net;   /* latency, loss */
    kv_rng_t setup; /* node ids, tokens, per-node gossip seeds */
    uint64_t now_us, seq;
    ev_t *heap;
    size_t nheap, capheap;
    pp_rec_t *pp;
    uint32_t npp, cappp, pp_free;
    uint32_t n;
    sim_node_t *nodes;
    watch_t **watch;  /* per subject, NULL when not watched */
    uint8_t *evview;  /* n * n: 0 unknown, 1 + gossip_liveness_t */
    const char **seed_hosts;
    uint16_t *seed_ports;
    uint32_t nseed_hosts;
    uint32_t conv_cursor;
    sim_counters_t c;
    uint64_t digest;
    FILE *trace;
};

/* ---- small helpers ------------------------------------------------------- */

__attribute__((noreturn)) KV_PRINTF(1, 2) static void sim_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "gossip sim: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}

static void *grow(void *p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return p;
    size_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    *cap = c;
    return kv_realloc(p, c * elem);
}

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void fold(sim_t *s, uint64_t v) { s->digest = mix64(s->digest ^ v) + 0x9e3779b97f4a7c15ULL; }

static void fold_bytes(sim_t *s, const uint8_t *p, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ len;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0x100000001b3ULL;
    }
    for (; i < len; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
    fold(s, h);
}

static double rng_unit(kv_rng_t *r) { return (double)(kv_rng_next(r) >> 11) * 0x1.0p-53; }

static uint64_t now_ms(const sim_t *s) { return s->now_us / 1000; }

static bool running(const sim_node_t *n) { return n->started && !n->crashed; }

/* Node index of "10.0.x.y":7071, or SIM_NO_NODE. */
static uint32_t host_index(const sim_t *s, const char *host, uint16_t port)
{
    unsigned a, b, c, d;
    int used = 0;
    if (port != SIM_PORT || !host) return SIM_NO_NODE;
    if (sscanf(host, "%u.%u.%u.%u%n", &a, &b, &c, &d, &used) != 4 || host[used])
        return SIM_NO_NODE;
    if (a != 10 || b != 0 || c < 1 || c > 250 || d < 1 || d > 250) return SIM_NO_NODE;
    uint32_t i = (c - 1) * 250 + (d - 1);
    return i < s->n ? i : SIM_NO_NODE;
}

/* Node index of a member name, or SIM_NO_NODE. */
static uint32_t name_index(const sim_t *s, const char *name)
{
    if (!name || name[0] != 'n' || name[1] < '0' || name[1] > '9') return SIM_NO_NODE;
    char *end;
    unsigned long i = strtoul(name + 1, &end, 10);
    if (*end || i >= s->n || strcmp(s->nodes[i].name, name) != 0) return SIM_NO_NODE;
    return (uint32_t)i;
}

static uint64_t latency_us(sim_t *s)
{
    uint64_t j = s->cfg.jitter_us ? kv_rng_below(&s->net, (uint64_t)s->cfg.jitter_us + 1) : 0;
    return s->cfg.latency_us + j;
}

/* ---- the event heap ------------------------------------------------------ */

static bool ev_before(const ev_t *a, const ev_t *b)
{
    return a->at_us < b->at_us || (a->at_us == b->at_us && a->seq < b->seq);
}

static void heap_push(sim_t *s, ev_t e)
{
    e.seq = s->seq++;
    s->heap = grow(s->heap, &s->capheap, s->nheap + 1, sizeof *s->heap);
    size_t i = s->nheap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!ev_before(&e, &s->heap[p])) break;
        s->heap[i] = s->heap[p];
        i = p;
    }
    s->heap[i] = e;
}

static ev_t heap_pop(sim_t *s)
{
    ev_t top = s->heap[0];
    ev_t last = s->heap[--s->nheap];
    size_t i = 0, n = s->nheap;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const ev_t *mv = &last;
        if (l < n && ev_before(&s->heap[l], mv)) m = l, mv = &s->heap[l];
        if (r < n && ev_before(&s->heap[r], mv)) m = r, mv = &s->heap[r];
        if (m == i) break;
        s->heap[i] = s->heap[m];
        i = m;
    }
    if (n) s->heap[i] = last;
    return top;
}

/* ---- push-pull records --------------------------------------------------- */

static uint32_t pp_new(sim_t *s, uint32_t from, uint64_t id)
{
    uint32_t r;
    if (s->pp_free != SIM_NO_NODE) {
        r = s->pp_free;
        s->pp_free = s->pp[r].next_free;
    } else {
        size_t cap = s->cappp;
        s->pp = grow(s->pp, &cap, (size_t)s->npp + 1, sizeof *s->pp);
        s->cappp = (uint32_t)cap;
        r = s->npp++;
    }
    s->pp[r] = (pp_rec_t){.id = id, .from = from, .from_life = s->nodes[from].life,
                          .to = SIM_NO_NODE, .refs = 2, .next_free = SIM_NO_NODE};
    return r;
}

static void pp_release(sim_t *s, uint32_t r)
{
    kv_assert(s->pp[r].refs > 0);
    if (--s->pp[r].refs == 0) {
        s->pp[r].next_free = s->pp_free;
        s->pp_free = r;
    }
}

/* An event that will not be handled: free what it owns. */
static void ev_drop(sim_t *s, ev_t *e)
{
    if (e->kind == EV_PP_REQ || e->kind == EV_PP_REPLY || e->kind == EV_PP_TIMEOUT)
        pp_release(s, e->tag);
    kv_free(e->data);
    e->data = NULL;
}

/* ---- observation --------------------------------------------------------- */

static const char *ev_kind_name(gossip_event_kind_t k)
{
    static const char *names[] = {"joined", "updated", "restarted", "alive", "suspect", "dead",
                                  "up",     "down",    "refuted",   "conflict", "refused"};
    return (unsigned)k < KV_ARRAY_LEN(names) ? names[k] : "?";
}

/* A suspicion, death or down by o about subj is false when subj was running
 * and reachable from o for false_grace_ms and the view is about subj's
 * current instance. */
static bool is_false_alarm(sim_t *s, uint32_t o, uint32_t subj)
{
    const sim_node_t *on = &s->nodes[o], *sn = &s->nodes[subj];
    if (!running(sn) || on->group != sn->group) return false;
    uint64_t since = KV_MAX(on->reach_since_us, sn->reach_since_us);
    if (s->now_us < since + (uint64_t)s->cfg.false_grace_ms * 1000) return false;
    gossip_member_t m;
    if (gossip_member_find(on->g, sn->name, now_ms(s), &m) == KV_OK &&
        m.generation != sn->generation)
        return false;
    return true;
}

static bool is_current(const sim_t *s, const watch_t *w, const gossip_member_t *m)
{
    return m->known && m->generation == w->target_gen && m->incarnation >= w->target_inc &&
           m->liveness == GOSSIP_ALIVE;
}

static void seen_set(watch_t *w, uint32_t o, sim_seen_t what, uint64_t at)
{
    uint64_t *p = &w->seen[(size_t)o * SIM_SEEN_COUNT_ + what];
    if (*p == SIM_NEVER) *p = KV_MAX(at, w->start_ms);
}

static void count_event(sim_counters_t *c, gossip_event_kind_t k, bool false_alarm)
{
    c->events++;
    switch (k) {
    case GOSSIP_EV_SUSPECT:
        c->suspicions++;
        c->false_suspicions += false_alarm;
        break;
    case GOSSIP_EV_DEAD:
        c->deaths++;
        c->false_deaths += false_alarm;
        break;
    case GOSSIP_EV_DOWN:
        c->downs++;
        c->false_downs += false_alarm;
        break;
    case GOSSIP_EV_REFUTED: c->refutes++; break;
    case GOSSIP_EV_CONFLICT: c->conflicts++; break;
    case GOSSIP_EV_REFUSED: c->refusals++; break;
    default: break;
    }
}

static void observe(sim_t *s, uint32_t o, const gossip_event_t *e)
{
    sim_node_t *on = &s->nodes[o];
    uint32_t subj = name_index(s, e->name);
    bool alarm = false;
    if (subj != SIM_NO_NODE && subj != o &&
        (e->kind == GOSSIP_EV_SUSPECT || e->kind == GOSSIP_EV_DEAD || e->kind == GOSSIP_EV_DOWN))
        alarm = is_false_alarm(s, o, subj);
    count_event(&s->c, e->kind, alarm);
    count_event(&on->c, e->kind, alarm);
    fold(s, ((uint64_t)o << 40) ^ ((uint64_t)e->kind << 32) ^ e->at_ms ^
                ((uint64_t)(subj == SIM_NO_NODE ? 0xffffff : subj) << 44));
    if (s->trace)
        fprintf(s->trace, "%10.3f %s: %s %s%s -- %s\n", (double)s->now_us / 1e6, on->name,
                ev_kind_name(e->kind), e->name ? e->name : "-", alarm ? " (FALSE)" : "",
                e->text ? e->text : "");
    if (subj == SIM_NO_NODE || subj == o) return;

    uint8_t *ev = &s->evview[(size_t)o * s->n + subj];
    gossip_member_t m;
    switch (e->kind) {
    case GOSSIP_EV_JOINED:
        if (gossip_member_find(on->g, e->name, now_ms(s), &m) == KV_OK)
            *ev = (uint8_t)(1 + m.liveness);
        break;
    case GOSSIP_EV_ALIVE: *ev = 1 + GOSSIP_ALIVE; break;
    case GOSSIP_EV_SUSPECT: *ev = 1 + GOSSIP_SUSPECT; break;
    case GOSSIP_EV_DEAD: *ev = 1 + GOSSIP_DEAD; break;
    default: break;
    }

    watch_t *w = s->watch[subj];
    if (!w) return;
    switch (e->kind) {
    case GOSSIP_EV_SUSPECT: seen_set(w, o, SIM_SEEN_SUSPECT, e->at_ms); break;
    case GOSSIP_EV_DEAD: seen_set(w, o, SIM_SEEN_DEAD, e->at_ms); break;
    case GOSSIP_EV_DOWN: seen_set(w, o, SIM_SEEN_DOWN, e->at_ms); break;
    case GOSSIP_EV_ALIVE: seen_set(w, o, SIM_SEEN_ALIVE, e->at_ms); break;
    case GOSSIP_EV_UP: seen_set(w, o, SIM_SEEN_UP, e->at_ms); break;
    default: break;
    }
}

/* After a call's events: did a watched subject become current at o? */
static void check_current(sim_t *s, uint32_t o, const gossip_event_t *ev, size_t nev)
{
    for (size_t k = 0; k < nev; k++) {
        uint32_t subj = name_index(s, ev[k].name);
        if (subj == SIM_NO_NODE || subj == o || !s->watch[subj]) continue;
        watch_t *w = s->watch[subj];
        if (w->seen[(size_t)o * SIM_SEEN_COUNT_ + SIM_SEEN_CURRENT] != SIM_NEVER) continue;
        gossip_member_t m;
        if (gossip_member_find(s->nodes[o].g, ev[k].name, now_ms(s), &m) == KV_OK &&
            is_current(s, w, &m))
            seen_set(w, o, SIM_SEEN_CURRENT, now_ms(s));
    }
}

/* ---- sending ------------------------------------------------------------- */

static void send_udp(sim_t *s, uint32_t from, const gossip_action_t *a)
{
    sim_node_t *fn = &s->nodes[from];
    s->c.udp_sent++;
    s->c.udp_bytes += a->len;
    fn->c.udp_sent++;
    fn->c.udp_bytes += a->len;
    uint32_t to = host_index(s, a->host, a->port);
    if (to == SIM_NO_NODE) {
        s->c.udp_cut++;
        return;
    }
    if (s->cfg.loss > 0 && rng_unit(&s->net) < s->cfg.loss) {
        s->c.udp_lost++;
        return;
    }
    ev_t e = {.at_us = s->now_us + fn->slow_us + latency_us(s),
              .data = kv_memdup(a->data, a->len),
              .len = a->len,
              .kind = EV_UDP,
              .node = to,
              .from = from};
    heap_push(s, e);
}

static void start_pushpull(sim_t *s, uint32_t from, const gossip_action_t *a)
{
    sim_node_t *fn = &s->nodes[from];
    s->c.pp_started++;
    s->c.pp_bytes += a->len;
    fn->c.pp_started++;
    fn->c.pp_bytes += a->len;
    uint32_t r = pp_new(s, from, a->id);
    uint32_t to = host_index(s, a->host, a->port);
    s->pp[r].to = to;
    if (to == SIM_NO_NODE) {
        pp_release(s, r); /* no connection: only the timeout remains */
    } else {
        ev_t req = {.at_us = s->now_us + fn->slow_us + latency_us(s),
                    .data = kv_memdup(a->data, a->len),
                    .len = a->len,
                    .kind = EV_PP_REQ,
                    .node = to,
                    .from = from,
                    .tag = r};
        heap_push(s, req);
    }
    ev_t to_ev = {.at_us = s->now_us + (uint64_t)s->cfg.pushpull_timeout_ms * 1000,
                  .kind = EV_PP_TIMEOUT,
                  .node = from,
                  .from = from,
                  .life = fn->life,
                  .tag = r};
    heap_push(s, to_ev);
}

static void arm_timer(sim_t *s, uint32_t i)
{
    sim_node_t *n = &s->nodes[i];
    if (!running(n) || n->paused) return;
    uint64_t t = gossip_next_timer(n->g) * 1000;
    if (t < s->now_us) t = s->now_us;
    if (n->timer_armed && n->timer_at_us == t) return;
    n->timer_epoch++;
    n->timer_armed = true;
    n->timer_at_us = t;
    heap_push(s, (ev_t){.at_us = t, .kind = EV_TICK, .node = i, .life = n->life,
                        .tag = n->timer_epoch});
}

/* Carry out what node i asked for, record what it reported, re-arm. */
static void node_flush(sim_t *s, uint32_t i)
{
    sim_node_t *n = &s->nodes[i];
    size_t na, ne;
    const gossip_action_t *a = gossip_actions(n->g, &na);
    for (size_t k = 0; k < na; k++) {
        if (a[k].kind == GOSSIP_ACT_UDP) send_udp(s, i, &a[k]);
        else start_pushpull(s, i, &a[k]);
    }
    const gossip_event_t *e = gossip_events(n->g, &ne);
    for (size_t k = 0; k < ne; k++) observe(s, i, &e[k]);
    check_current(s, i, e, ne);
    gossip_actions_clear(n->g);
    arm_timer(s, i);
}

/* ---- nodes --------------------------------------------------------------- */

static gossip_local_t local_of(const sim_node_t *n)
{
    return (gossip_local_t){.name = n->name,
                            .node_id = n->node_id,
                            .host = n->host,
                            .port = SIM_PORT,
                            .client_port = 7070,
                            .admin_port = 7072,
                            .rack = n->rack,
                            .generation = n->generation,
                            .status = GOSSIP_NORMAL,
                            .tokens = n->tokens,
                            .ntokens = n->ntokens,
                            .load_bytes = 1u << 20};
}

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void new_tokens(sim_t *s, sim_node_t *n)
{
    n->ntokens = 1 + (uint32_t)kv_rng_below(&s->setup, 16);
    for (uint32_t k = 0; k < n->ntokens; k++) n->tokens[k] = kv_rng_next(&s->setup);
    qsort(n->tokens, n->ntokens, sizeof n->tokens[0], u64_cmp);
    for (uint32_t k = 1; k < n->ntokens; k++) /* keep them strictly ascending */
        if (n->tokens[k] <= n->tokens[k - 1]) n->tokens[k] = n->tokens[k - 1] + 1;
}

static void drop_held(sim_t *s, sim_node_t *n)
{
    for (size_t k = 0; k < n->nheld; k++) ev_drop(s, &n->held[k]);
    n->nheld = 0;
    n->held_udp_bytes = 0;
}

/* Start node i (first start or restart). */
static void node_boot(sim_t *s, uint32_t i)
{
    sim_node_t *n = &s->nodes[i];
    uint64_t now = now_ms(s);
    n->life++;
    uint64_t gen = SIM_WALL_BASE_MS + now;
    n->generation = gen > n->generation ? gen : n->generation + 1;
    gossip_config_t gc = s->cfg.gossip;
    gc.cluster_name = s->cluster;
    gc.seed = kv_rng_next(&s->setup);
    gossip_local_t self = local_of(n);
    if (gossip_create(&gc, &self, now, &n->g) != KV_OK)
        sim_die("gossip_create %s: %s", n->name, kv_errmsg());
    memset(&s->evview[(size_t)i * s->n], 0, s->n);
    if (s->cfg.all_known) {
        for (uint32_t j = 0; j < s->n; j++) {
            if (j == i) continue;
            gossip_local_t m = {.name = s->nodes[j].name,
                                .host = s->nodes[j].host,
                                .port = SIM_PORT,
                                .rack = s->nodes[j].rack,
                                .status = GOSSIP_NORMAL};
            if (gossip_add_known(n->g, now, &m) != KV_OK)
                sim_die("gossip_add_known %s at %s: %s", m.name, n->name, kv_errmsg());
            s->evview[(size_t)i * s->n + j] = 1 + GOSSIP_ALIVE;
        }
    }
    /* its seeds, itself excluded */
    const char *hosts[64];
    uint16_t ports[64];
    size_t ns = 0;
    for (uint32_t k = 0; k < s->nseed_hosts && ns < KV_ARRAY_LEN(hosts); k++) {
        if (strcmp(s->seed_hosts[k], n->host) == 0) continue;
        hosts[ns] = s->seed_hosts[k];
        ports[ns++] = s->seed_ports[k];
    }
    gossip_set_seeds(n->g, hosts, ports, ns);
    n->started = true;
    n->crashed = false;
    n->paused = false;
    n->timer_armed = false;
    n->last_tick_ms = UINT64_MAX;
    n->reach_since_us = s->now_us;
    s->c.calls++;
    node_flush(s, i);
    if (s->trace)
        fprintf(s->trace, "%10.3f %s: START generation %" PRIu64 "\n", (double)s->now_us / 1e6,
                n->name, n->generation);
}

/* ---- delivery ------------------------------------------------------------ */

static void hold(sim_t *s, sim_node_t *n, ev_t *e)
{
    if (e->kind == EV_UDP) {
        if (n->held_udp_bytes + e->len > s->cfg.rcvbuf_bytes) {
            s->c.udp_overflow++;
            ev_drop(s, e);
            return;
        }
        n->held_udp_bytes += e->len;
    }
    n->held = grow(n->held, &n->capheld, n->nheld + 1, sizeof *n->held);
    n->held[n->nheld++] = *e;
}

/* Handle a message event at its node, which is running and not paused. */
static void handle(sim_t *s, ev_t *e)
{
    uint32_t i = e->node;
    sim_node_t *n = &s->nodes[i];
    uint64_t now = now_ms(s);
    fold(s, ((uint64_t)e->kind << 56) ^ ((uint64_t)i << 32) ^ s->now_us);
    s->c.calls++;
    switch (e->kind) {
    case EV_UDP:
        fold_bytes(s, e->data, e->len);
        s->c.udp_delivered++;
        gossip_on_udp(n->g, now, e->data, e->len);
        node_flush(s, i);
        break;
    case EV_PP_REQ: {
        fold_bytes(s, e->data, e->len);
        kv_buf_t reply;
        kv_buf_init(&reply);
        kv_status_t rc = gossip_on_pushpull(n->g, now, e->data, e->len, &reply);
        (void)rc; /* a refusal is a reply too; the requester records it */
        s->c.pp_bytes += reply.len;
        n->c.pp_bytes += reply.len;
        ev_t r = {.at_us = s->now_us + n->slow_us + latency_us(s),
                  .data = reply.len ? kv_memdup(reply.data, reply.len) : NULL,
                  .len = reply.len,
                  .kind = EV_PP_REPLY,
                  .node = e->from,
                  .from = i,
                  .life = s->pp[e->tag].from_life,
                  .tag = e->tag};
        kv_buf_deinit(&reply);
        heap_push(s, r); /* the record's chain reference moves to the reply */
        kv_free(e->data);
        e->data = NULL;
        node_flush(s, i);
        return;
    }
    case EV_PP_REPLY: {
        pp_rec_t *r = &s->pp[e->tag];
        if (!r->done) {
            r->done = true;
            fold_bytes(s, e->data, e->len);
            s->c.pp_answered++;
            gossip_on_pushpull_reply(n->g, now, r->id, e->data, e->len);
            node_flush(s, i);
        }
        break;
    }
    case EV_PP_TIMEOUT: {
        pp_rec_t *r = &s->pp[e->tag];
        if (!r->done) {
            r->done = true;
            s->c.pp_failed++;
            gossip_on_pushpull_failed(n->g, now, r->id);
            node_flush(s, i);
        }
        break;
    }
    default: kv_assert(!"not a message event");
    }
    ev_drop(s, e);
}

/* A message event reaches its node: dropped, held or handled. */
static void deliver(sim_t *s, ev_t *e)
{
    sim_node_t *n = &s->nodes[e->node];
    bool for_instance = e->kind == EV_PP_REPLY || e->kind == EV_PP_TIMEOUT;
    bool cut = !running(n) || (for_instance && e->life != n->life) ||
               (e->kind != EV_PP_TIMEOUT && s->nodes[e->from].group != n->group);
    if (cut) {
        if (e->kind == EV_UDP) s->c.udp_cut++;
        ev_drop(s, e);
        return;
    }
    if (n->paused) {
        hold(s, n, e);
        return;
    }
    handle(s, e);
}

static void resume(sim_t *s, uint32_t i)
{
    sim_node_t *n = &s->nodes[i];
    n->paused = false;
    if (s->trace)
        fprintf(s->trace, "%10.3f %s: RESUME (%zu held)\n", (double)s->now_us / 1e6, n->name,
                n->nheld);
    /* Handling may hold nothing new (not paused), but may grow nothing
     * either: take the list first. */
    ev_t *held = n->held;
    size_t nheld = n->nheld;
    n->held = NULL;
    n->nheld = n->capheld = n->held_udp_bytes = 0;
    for (size_t k = 0; k < nheld; k++) {
        if (running(n) && !n->paused) handle(s, &held[k]);
        else ev_drop(s, &held[k]);
    }
    kv_free(held);
    arm_timer(s, i); /* overdue: fires now, after what was held */
}

static void tick(sim_t *s, uint32_t i)
{
    sim_node_t *n = &s->nodes[i];
    uint64_t now = now_ms(s);
    n->spin = n->last_tick_ms == now ? n->spin + 1 : 0;
    n->last_tick_ms = now;
    s->c.ticks++;
    s->c.calls++;
    fold(s, ((uint64_t)i << 32) ^ s->now_us ^ 0x7471);
    gossip_tick(n->g, now);
    node_flush(s, i);
    /* A timer at or before the tick just made fires again at once (as a
     * libevent timer in the past would). Counted; and if the state machine
     * keeps asking for the same ms, step one ms so the run cannot spin. */
    if (n->timer_armed && n->timer_at_us <= s->now_us) {
        s->c.timer_past++;
        if (n->spin >= 3) {
            s->c.timer_stuck++;
            n->timer_epoch++;
            n->timer_at_us = (now + 1) * 1000;
            heap_push(s, (ev_t){.at_us = n->timer_at_us, .kind = EV_TICK, .node = i,
                                .life = n->life, .tag = n->timer_epoch});
        }
    }
}

static void step(sim_t *s)
{
    ev_t e = heap_pop(s);
    kv_assert(e.at_us >= s->now_us);
    s->now_us = e.at_us;
    sim_node_t *n = &s->nodes[e.node];
    switch (e.kind) {
    case EV_START: node_boot(s, e.node); break;
    case EV_TICK:
        if (e.life != n->life || !running(n) || e.tag != n->timer_epoch) break;
        n->timer_armed = false;
        if (n->paused) break; /* re-armed at resume */
        tick(s, e.node);
        break;
    case EV_RESUME:
        if (e.life == n->life && running(n) && n->paused) resume(s, e.node);
        break;
    default: deliver(s, &e); break;
    }
}

/* ---- lifecycle ----------------------------------------------------------- */

void sim_config_init(sim_config_t *c, uint32_t nodes, uint64_t seed)
{
    memset(c, 0, sizeof *c);
    c->nodes = nodes;
    c->seed = seed;
    c->nseeds = 3;
    c->all_known = false;
    c->start_spread_ms = 1000;
    c->latency_us = 100;
    c->jitter_us = 900;
    c->loss = 0;
    c->pushpull_timeout_ms = 2000;
    c->rcvbuf_bytes = 212992;
    c->false_grace_ms = 30000;
    gossip_config_init(&c->gossip);
    c->gossip.cluster_name = "cairn-sim";
    c->gossip.replication_factor = 3;
}

sim_t *sim_create(const sim_config_t *c)
{
    if (c->nodes == 0 || c->nodes > SIM_MAX_NODES) sim_die("nodes must be 1..%u", SIM_MAX_NODES);
    if (!c->all_known && c->nseeds == 0 && c->nodes > 1) sim_die("no seeds and not all_known");
    if (c->loss < 0 || c->loss > 1) sim_die("loss must be in [0, 1]");
    if (!c->gossip.cluster_name) sim_die("gossip.cluster_name is required");
    sim_t *s = kv_calloc(1, sizeof *s);
    s->cfg = *c;
    s->cluster = kv_strdup(c->gossip.cluster_name);
    s->cfg.gossip.cluster_name = s->cluster;
    s->n = c->nodes;
    kv_rng_seed(&s->net, c->seed);
    kv_rng_seed(&s->setup, mix64(c->seed ^ 0x5e7e7u));
    s->pp_free = SIM_NO_NODE;
    const char *tr = getenv("CAIRN_SIM_TRACE"); /* replaying a seed: see everything */
    if (tr && *tr && strcmp(tr, "0") != 0) s->trace = stderr;
    s->digest = mix64(c->seed);
    s->nodes = kv_calloc(s->n, sizeof *s->nodes);
    s->watch = kv_calloc(s->n, sizeof *s->watch);
    s->evview = kv_calloc((size_t)s->n * s->n, 1);
    for (uint32_t i = 0; i < s->n; i++) {
        sim_node_t *n = &s->nodes[i];
        snprintf(n->name, sizeof n->name, "n%04u", i);
        snprintf(n->host, sizeof n->host, "10.0.%u.%u", 1 + i / 250, 1 + i % 250);
        snprintf(n->rack, sizeof n->rack, "rack%u", 1 + i % 3);
        snprintf(n->node_id, sizeof n->node_id, "%016" PRIx64 "%016" PRIx64,
                 kv_rng_next(&s->setup), kv_rng_next(&s->setup));
        new_tokens(s, n);
    }
    s->nseed_hosts = KV_MIN(c->nseeds, s->n);
    s->seed_hosts = kv_calloc(s->nseed_hosts ? s->nseed_hosts : 1, sizeof *s->seed_hosts);
    s->seed_ports = kv_calloc(s->nseed_hosts ? s->nseed_hosts : 1, sizeof *s->seed_ports);
    for (uint32_t k = 0; k < s->nseed_hosts; k++) {
        s->seed_hosts[k] = s->nodes[k].host;
        s->seed_ports[k] = SIM_PORT;
    }
    for (uint32_t i = 0; i < s->n; i++) {
        uint64_t at = c->start_spread_ms
                          ? kv_rng_below(&s->setup, (uint64_t)c->start_spread_ms * 1000 + 1)
                          : 0;
        heap_push(s, (ev_t){.at_us = at, .kind = EV_START, .node = i});
    }
    return s;
}

void sim_destroy(sim_t *s)
{
    if (!s) return;
    while (s->nheap) {
        ev_t e = heap_pop(s);
        kv_free(e.data);
    }
    for (uint32_t i = 0; i < s->n; i++) {
        sim_node_t *n = &s->nodes[i];
        for (size_t k = 0; k < n->nheld; k++) kv_free(n->held[k].data);
        kv_free(n->held);
        if (n->g) gossip_destroy(n->g);
        if (s->watch[i]) {
            kv_free(s->watch[i]->seen);
            kv_free(s->watch[i]);
        }
    }
    kv_free(s->heap);
    kv_free(s->pp);
    kv_free(s->nodes);
    kv_free(s->watch);
    kv_free(s->evview);
    kv_free(s->seed_hosts);
    kv_free(s->seed_ports);
    kv_free(s->cluster);
    kv_free(s);
}

/* ---- time ---------------------------------------------------------------- */

uint64_t sim_now_ms(const sim_t *s) { return now_ms(s); }

void sim_run_until(sim_t *s, uint64_t t_ms)
{
    uint64_t t_us = t_ms * 1000;
    while (s->nheap && s->heap[0].at_us <= t_us) step(s);
    if (s->now_us < t_us) s->now_us = t_us;
}

void sim_run_for(sim_t *s, uint64_t ms) { sim_run_until(s, now_ms(s) + ms); }

static bool observer_converged(sim_t *s, uint32_t o, uint32_t want)
{
    const sim_node_t *on = &s->nodes[o];
    size_t cnt = gossip_member_count(on->g);
    if (cnt < want) return false;
    uint32_t ok = 0;
    uint64_t now = now_ms(s);
    for (size_t k = 0; k < cnt; k++) {
        gossip_member_t m;
        gossip_member_at(on->g, k, now, &m);
        uint32_t subj = name_index(s, m.name);
        if (subj == SIM_NO_NODE || subj == o || !running(&s->nodes[subj])) continue;
        if (!m.known || m.liveness != GOSSIP_ALIVE || m.generation != s->nodes[subj].generation)
            return false;
        ok++;
    }
    return ok == want;
}

bool sim_converged(sim_t *s)
{
    uint32_t nrun = 0;
    for (uint32_t i = 0; i < s->n; i++) {
        if (!s->nodes[i].started) return false; /* still to boot */
        nrun += running(&s->nodes[i]);
    }
    if (nrun == 0) return false;
    /* Start from the observer that failed last time: failing checks stop
     * early, a passing one looks at every pair. */
    for (uint32_t k = 0; k < s->n; k++) {
        uint32_t o = (s->conv_cursor + k) % s->n;
        if (!running(&s->nodes[o])) continue;
        if (!observer_converged(s, o, nrun - 1)) {
            s->conv_cursor = o;
            return false;
        }
    }
    return true;
}

uint64_t sim_run_until_converged(sim_t *s, uint64_t deadline_ms)
{
    for (;;) {
        if (sim_converged(s)) return now_ms(s);
        if (now_ms(s) >= deadline_ms) return SIM_NEVER;
        sim_run_until(s, KV_MIN(deadline_ms, now_ms(s) + SIM_CHECK_STEP_MS));
    }
}

/* ---- faults -------------------------------------------------------------- */

static void trace_fault(sim_t *s, const char *what, uint32_t i)
{
    if (s->trace)
        fprintf(s->trace, "%10.3f %s: %s\n", (double)s->now_us / 1e6,
                i == SIM_NO_NODE ? "sim" : s->nodes[i].name, what);
}

void sim_crash(sim_t *s, uint32_t i)
{
    kv_assert(i < s->n);
    sim_node_t *n = &s->nodes[i];
    if (!running(n)) return;
    trace_fault(s, "CRASH", i);
    fold(s, 0xc4a5u ^ ((uint64_t)i << 32));
    drop_held(s, n);
    gossip_destroy(n->g);
    n->g = NULL;
    n->crashed = true;
    n->paused = false;
    n->timer_armed = false;
    n->reach_since_us = s->now_us;
}

void sim_restart(sim_t *s, uint32_t i)
{
    kv_assert(i < s->n);
    sim_node_t *n = &s->nodes[i];
    if (!n->started) return; /* will start by itself */
    if (running(n)) sim_crash(s, i);
    trace_fault(s, "RESTART", i);
    node_boot(s, i);
}

void sim_pause(sim_t *s, uint32_t i, uint32_t ms)
{
    kv_assert(i < s->n);
    sim_node_t *n = &s->nodes[i];
    kv_assert(running(n) && !n->paused);
    trace_fault(s, "PAUSE", i);
    fold(s, 0x9a05eu ^ ((uint64_t)i << 32) ^ ms);
    n->paused = true;
    heap_push(s, (ev_t){.at_us = s->now_us + (uint64_t)ms * 1000, .kind = EV_RESUME, .node = i,
                        .life = n->life});
}

void sim_partition(sim_t *s, const uint32_t *group_of)
{
    trace_fault(s, "PARTITION", SIM_NO_NODE);
    for (uint32_t i = 0; i < s->n; i++) {
        s->nodes[i].group = group_of[i];
        s->nodes[i].reach_since_us = s->now_us;
        fold(s, ((uint64_t)i << 32) ^ group_of[i]);
    }
}

void sim_partition_split(sim_t *s, uint32_t k)
{
    uint32_t *g = kv_calloc(s->n, sizeof *g);
    for (uint32_t i = 0; i < s->n; i++) g[i] = i < k ? 0 : 1;
    sim_partition(s, g);
    kv_free(g);
}

void sim_heal(sim_t *s)
{
    uint32_t *g = kv_calloc(s->n, sizeof *g);
    sim_partition(s, g);
    kv_free(g);
}

void sim_set_loss(sim_t *s, double p)
{
    kv_assert(p >= 0 && p <= 1);
    s->cfg.loss = p;
}

void sim_set_slow(sim_t *s, uint32_t i, uint32_t delay_ms)
{
    kv_assert(i < s->n);
    s->nodes[i].slow_us = (uint64_t)delay_ms * 1000;
}

void sim_change_state(sim_t *s, uint32_t i)
{
    kv_assert(i < s->n);
    sim_node_t *n = &s->nodes[i];
    kv_assert(running(n));
    trace_fault(s, "CHANGE tokens", i);
    new_tokens(s, n);
    gossip_local_t self = local_of(n);
    if (gossip_set_local(n->g, now_ms(s), &self) != KV_OK)
        sim_die("gossip_set_local %s: %s", n->name, kv_errmsg());
    s->c.calls++;
    if (!n->paused) node_flush(s, i);
}

/* ---- observation API ----------------------------------------------------- */

const char *sim_seen_str(sim_seen_t w)
{
    static const char *names[] = {"suspect", "dead", "down", "alive", "up", "current"};
    return (unsigned)w < KV_ARRAY_LEN(names) ? names[w] : "?";
}

void sim_watch(sim_t *s, uint32_t subject)
{
    kv_assert(subject < s->n);
    watch_t *w = s->watch[subject];
    if (!w) {
        w = kv_calloc(1, sizeof *w);
        w->seen = kv_malloc((size_t)s->n * SIM_SEEN_COUNT_ * sizeof *w->seen);
        s->watch[subject] = w;
    }
    for (size_t k = 0; k < (size_t)s->n * SIM_SEEN_COUNT_; k++) w->seen[k] = SIM_NEVER;
    sim_node_t *sn = &s->nodes[subject];
    uint64_t now = now_ms(s);
    w->start_ms = now;
    w->target_gen = sn->generation;
    w->target_inc = 0;
    gossip_member_t m;
    if (running(sn) && gossip_member_find(sn->g, sn->name, now, &m) == KV_OK)
        w->target_inc = m.incarnation;
    for (uint32_t o = 0; o < s->n; o++) {
        if (o == subject || !running(&s->nodes[o])) continue;
        if (gossip_member_find(s->nodes[o].g, sn->name, now, &m) != KV_OK) continue;
        if (m.liveness == GOSSIP_SUSPECT) seen_set(w, o, SIM_SEEN_SUSPECT, now);
        if (m.liveness == GOSSIP_DEAD) seen_set(w, o, SIM_SEEN_DEAD, now);
        if (m.liveness == GOSSIP_ALIVE) seen_set(w, o, SIM_SEEN_ALIVE, now);
        seen_set(w, o, m.up ? SIM_SEEN_UP : SIM_SEEN_DOWN, now);
        if (is_current(s, w, &m)) seen_set(w, o, SIM_SEEN_CURRENT, now);
    }
}

uint64_t sim_watch_start(const sim_t *s, uint32_t subject)
{
    kv_assert(subject < s->n);
    return s->watch[subject] ? s->watch[subject]->start_ms : SIM_NEVER;
}

uint64_t sim_seen_at(const sim_t *s, uint32_t observer, uint32_t subject, sim_seen_t what)
{
    kv_assert(observer < s->n && subject < s->n && what < SIM_SEEN_COUNT_);
    const watch_t *w = s->watch[subject];
    return w ? w->seen[(size_t)observer * SIM_SEEN_COUNT_ + what] : SIM_NEVER;
}

uint64_t sim_seen_by_all(const sim_t *s, uint32_t subject, sim_seen_t what)
{
    uint64_t last = 0;
    bool any = false;
    for (uint32_t o = 0; o < s->n; o++) {
        if (o == subject || !running(&s->nodes[o])) continue;
        uint64_t t = sim_seen_at(s, o, subject, what);
        if (t == SIM_NEVER) return SIM_NEVER;
        last = KV_MAX(last, t);
        any = true;
    }
    return any ? last : SIM_NEVER;
}

uint64_t sim_seen_by_first(const sim_t *s, uint32_t subject, sim_seen_t what)
{
    uint64_t first = SIM_NEVER;
    for (uint32_t o = 0; o < s->n; o++) {
        if (o == subject || !running(&s->nodes[o])) continue;
        first = KV_MIN(first, sim_seen_at(s, o, subject, what));
    }
    return first;
}

uint64_t sim_run_until_seen(sim_t *s, uint32_t subject, sim_seen_t what, uint64_t deadline_ms)
{
    kv_assert(s->watch[subject]);
    for (;;) {
        uint64_t t = sim_seen_by_all(s, subject, what);
        if (t != SIM_NEVER) return t;
        if (now_ms(s) >= deadline_ms) return SIM_NEVER;
        sim_run_until(s, KV_MIN(deadline_ms, now_ms(s) + SIM_CHECK_STEP_MS));
    }
}

void sim_get_counters(const sim_t *s, sim_counters_t *out) { *out = s->c; }

void sim_node_counters(const sim_t *s, uint32_t i, sim_counters_t *out)
{
    kv_assert(i < s->n);
    *out = s->nodes[i].c;
}

uint64_t sim_event_view_mismatches(sim_t *s)
{
    uint64_t bad = 0, now = now_ms(s);
    for (uint32_t o = 0; o < s->n; o++) {
        const sim_node_t *on = &s->nodes[o];
        if (!running(on)) continue;
        size_t cnt = gossip_member_count(on->g);
        for (size_t k = 0; k < cnt; k++) {
            gossip_member_t m;
            gossip_member_at(on->g, k, now, &m);
            uint32_t subj = name_index(s, m.name);
            if (subj == SIM_NO_NODE || subj == o) continue;
            uint8_t ev = s->evview[(size_t)o * s->n + subj];
            if (ev != 1 + m.liveness) {
                bad++;
                if (s->trace)
                    fprintf(s->trace, "%10.3f %s: view of %s is %s, events said %s\n",
                            (double)s->now_us / 1e6, on->name, m.name,
                            gossip_liveness_str(m.liveness),
                            ev ? gossip_liveness_str((gossip_liveness_t)(ev - 1)) : "nothing");
            }
        }
    }
    return bad;
}

uint64_t sim_down_pairs(sim_t *s)
{
    uint64_t down = 0, now = now_ms(s);
    for (uint32_t o = 0; o < s->n; o++) {
        const sim_node_t *on = &s->nodes[o];
        if (!running(on)) continue;
        size_t cnt = gossip_member_count(on->g);
        for (size_t k = 0; k < cnt; k++) {
            gossip_member_t m;
            gossip_member_at(on->g, k, now, &m);
            uint32_t subj = name_index(s, m.name);
            if (subj != SIM_NO_NODE && subj != o && running(&s->nodes[subj]) && !m.up) down++;
        }
    }
    return down;
}

uint64_t sim_digest(const sim_t *s) { return s->digest; }

void sim_set_trace(sim_t *s, FILE *f) { s->trace = f; }

/* ---- nodes API ----------------------------------------------------------- */

uint32_t sim_nodes(const sim_t *s) { return s->n; }

const char *sim_node_name(const sim_t *s, uint32_t i)
{
    kv_assert(i < s->n);
    return s->nodes[i].name;
}

bool sim_running(const sim_t *s, uint32_t i)
{
    kv_assert(i < s->n);
    return running(&s->nodes[i]);
}

bool sim_paused(const sim_t *s, uint32_t i)
{
    kv_assert(i < s->n);
    return running(&s->nodes[i]) && s->nodes[i].paused;
}

gossip_t *sim_gossip(sim_t *s, uint32_t i)
{
    kv_assert(i < s->n);
    return running(&s->nodes[i]) ? s->nodes[i].g : NULL;
}

bool sim_view(sim_t *s, uint32_t observer, uint32_t subject, gossip_member_t *out)
{
    kv_assert(observer < s->n && subject < s->n);
    if (!running(&s->nodes[observer])) return false;
    return gossip_member_find(s->nodes[observer].g, s->nodes[subject].name, now_ms(s), out) ==
           KV_OK;
}

const sim_config_t *sim_config(const sim_t *s) { return &s->cfg; }

/* ---- statistics ---------------------------------------------------------- */

uint64_t sim_median(uint64_t *v, size_t n)
{
    if (n == 0) return 0;
    qsort(v, n, sizeof *v, u64_cmp);
    return v[(n - 1) / 2];
}

uint64_t sim_max(const uint64_t *v, size_t n)
{
    uint64_t m = 0;
    for (size_t k = 0; k < n; k++) m = KV_MAX(m, v[k]);
    return m;
}

/* ---- experiments --------------------------------------------------------- */

#define SIM_JOIN_DEADLINE_MS 600000u
#define SIM_SETTLE_MS 5000u
#define SIM_DRAINED_BYTES 300u /* mean datagram size with no updates queued */

_Static_assert(sizeof(sim_counters_t) % sizeof(uint64_t) == 0, "counters are all uint64_t");

static void counters_sub(sim_counters_t *d, const sim_counters_t *a, const sim_counters_t *b)
{
    const uint64_t *pa = (const uint64_t *)a, *pb = (const uint64_t *)b;
    uint64_t *pd = (uint64_t *)d;
    for (size_t k = 0; k < sizeof *d / sizeof(uint64_t); k++) pd[k] = pa[k] - pb[k];
}

static uint64_t since(uint64_t t, uint64_t start) { return t == SIM_NEVER ? SIM_NEVER : t - start; }

bool sim_exp_cluster(const sim_cluster_exp_t *e, sim_cluster_res_t *res)
{
    kv_assert(e->changes <= SIM_EXP_MAX_TRIALS && e->crashes <= SIM_EXP_MAX_TRIALS);
    memset(res, 0, sizeof *res);
    uint64_t deadline = e->deadline_ms ? e->deadline_ms : 120000;
    sim_t *s = sim_create(&e->cfg);
    kv_rng_t pick;
    kv_rng_seed(&pick, mix64(e->cfg.seed ^ 0x91c4u));
    uint32_t n = s->n;

    res->join_ms = sim_run_until_converged(s, SIM_JOIN_DEADLINE_MS);
    if (res->join_ms == SIM_NEVER) goto out;
    sim_run_for(s, SIM_SETTLE_MS);

    if (e->traffic_ms && e->drain) {
        /* the join's updates ride on every datagram until each was sent
         * retransmit_mult x log10(N) times: wait until datagrams are
         * mostly empty again (steady state), at most 5 minutes */
        for (int k = 0; k < 60; k++) {
            sim_counters_t a, b;
            sim_get_counters(s, &a);
            sim_run_for(s, 5000);
            sim_get_counters(s, &b);
            uint64_t dgrams = b.udp_sent - a.udp_sent;
            if (dgrams && (b.udp_bytes - a.udp_bytes) / dgrams < SIM_DRAINED_BYTES) break;
        }
    }
    if (e->traffic_ms) {
        sim_counters_t a, b, d;
        sim_get_counters(s, &a);
        sim_run_for(s, e->traffic_ms);
        sim_get_counters(s, &b);
        counters_sub(&d, &b, &a);
        double ns = (double)n * e->traffic_ms / 1000.0;
        res->udp_per_node_s = (double)d.udp_sent / ns;
        res->udp_bytes_per_node_s = (double)d.udp_bytes / ns;
        res->pp_per_node_s = (double)d.pp_started / ns;
        res->pp_bytes_per_node_s = (double)d.pp_bytes / ns;
    }

    for (uint32_t t = 0; t < e->changes; t++) {
        uint32_t k = (uint32_t)kv_rng_below(&pick, n);
        sim_change_state(s, k);
        sim_watch(s, k);
        uint64_t start = sim_now_ms(s);
        res->change_ms[t] = since(sim_run_until_seen(s, k, SIM_SEEN_CURRENT, start + deadline), start);
        sim_run_for(s, 2000);
    }

    uint32_t prev = SIM_NO_NODE;
    for (uint32_t t = 0; t < e->crashes && n > 1; t++) {
        uint32_t v;
        do v = (uint32_t)kv_rng_below(&pick, n);
        while (v == prev && n > 1);
        prev = v;
        sim_crash(s, v);
        sim_watch(s, v);
        uint64_t start = sim_now_ms(s);
        sim_run_until_seen(s, v, SIM_SEEN_DEAD, start + deadline);
        sim_run_until_seen(s, v, SIM_SEEN_DOWN, start + deadline);
        res->dead_ms[t] = since(sim_seen_by_all(s, v, SIM_SEEN_DEAD), start);
        res->down_ms[t] = since(sim_seen_by_all(s, v, SIM_SEEN_DOWN), start);
        res->first_suspect_ms[t] = since(sim_seen_by_first(s, v, SIM_SEEN_SUSPECT), start);
        sim_restart(s, v);
        sim_watch(s, v);
        start = sim_now_ms(s);
        res->rejoin_ms[t] = since(sim_run_until_seen(s, v, SIM_SEEN_CURRENT, start + deadline), start);
        sim_run_until_converged(s, sim_now_ms(s) + deadline);
        sim_run_for(s, SIM_SETTLE_MS);
    }
out:
    sim_get_counters(s, &res->counters);
    res->digest = sim_digest(s);
    sim_destroy(s);
    return res->join_ms != SIM_NEVER;
}

bool sim_exp_quiet(const sim_config_t *cfg, uint64_t duration_ms, sim_quiet_res_t *res)
{
    memset(res, 0, sizeof *res);
    sim_t *s = sim_create(cfg);
    res->join_ms = sim_run_until_converged(s, SIM_JOIN_DEADLINE_MS);
    if (res->join_ms != SIM_NEVER) {
        sim_counters_t a, b;
        sim_get_counters(s, &a);
        sim_run_for(s, duration_ms);
        sim_get_counters(s, &b);
        counters_sub(&res->delta, &b, &a);
    }
    sim_destroy(s);
    return res->join_ms != SIM_NEVER;
}

bool sim_exp_pause(const sim_config_t *cfg, uint32_t pause_ms, uint32_t trials,
                   sim_pause_res_t *res)
{
    memset(res, 0, sizeof *res);
    sim_t *s = sim_create(cfg);
    kv_rng_t pick;
    kv_rng_seed(&pick, mix64(cfg->seed ^ 0x9a05eu));
    res->join_ms = sim_run_until_converged(s, SIM_JOIN_DEADLINE_MS);
    if (res->join_ms == SIM_NEVER) goto out;
    sim_run_for(s, 10000); /* phi has samples */
    sim_counters_t a, b;
    sim_get_counters(s, &a);
    uint32_t prev = SIM_NO_NODE;
    for (uint32_t t = 0; t < trials; t++) {
        uint32_t p;
        do p = (uint32_t)kv_rng_below(&pick, s->n);
        while (p == prev && s->n > 1);
        prev = p;
        gossip_stats_t st0, st1;
        gossip_get_stats(s->nodes[p].g, &st0);
        sim_counters_t pc0, pc1;
        sim_node_counters(s, p, &pc0);
        sim_watch(s, p);
        sim_pause(s, p, pause_ms);
        sim_run_for(s, 20000);
        for (uint32_t o = 0; o < s->n; o++) {
            if (o == p || !running(&s->nodes[o])) continue;
            res->deaths_of_paused += sim_seen_at(s, o, p, SIM_SEEN_DEAD) != SIM_NEVER;
            res->downs_of_paused += sim_seen_at(s, o, p, SIM_SEEN_DOWN) != SIM_NEVER;
            res->suspicions_of_paused += sim_seen_at(s, o, p, SIM_SEEN_SUSPECT) != SIM_NEVER;
        }
        gossip_get_stats(s->nodes[p].g, &st1);
        sim_node_counters(s, p, &pc1);
        res->deaths_by_paused += pc1.deaths - pc0.deaths;
        res->stalls += st1.stalls - st0.stalls;
        res->trials++;
    }
    sim_get_counters(s, &b);
    counters_sub(&res->delta, &b, &a);
out:
    sim_destroy(s);
    return res->join_ms != SIM_NEVER;
}

/* Does every node of one side see every node of the other side DEAD? */
static bool split_seen(sim_t *s, uint32_t k)
{
    uint64_t now = now_ms(s);
    for (uint32_t o = 0; o < s->n; o++) {
        for (uint32_t x = 0; x < s->n; x++) {
            if ((o < k) == (x < k)) continue;
            gossip_member_t m;
            if (gossip_member_find(s->nodes[o].g, s->nodes[x].name, now, &m) != KV_OK ||
                m.liveness != GOSSIP_DEAD)
                return false;
        }
    }
    return true;
}

bool sim_exp_partition(const sim_config_t *cfg, uint32_t k, uint32_t hold_ms,
                       uint32_t deadline_ms, sim_partition_res_t *res)
{
    memset(res, 0, sizeof *res);
    sim_t *s = sim_create(cfg);
    res->heal_ms = SIM_NEVER;
    res->join_ms = sim_run_until_converged(s, SIM_JOIN_DEADLINE_MS);
    if (res->join_ms == SIM_NEVER) goto out;
    sim_run_for(s, 10000);
    sim_counters_t a, b;
    sim_get_counters(s, &a);
    sim_partition_split(s, k);
    sim_run_for(s, hold_ms);
    res->split_seen = split_seen(s, k);
    sim_heal(s);
    uint64_t start = sim_now_ms(s);
    res->heal_ms = since(sim_run_until_converged(s, start + deadline_ms), start);
    sim_get_counters(s, &b);
    counters_sub(&res->delta, &b, &a);
out:
    sim_destroy(s);
    return res->join_ms != SIM_NEVER;
}
