/* gossip.c -- Cairn's membership state machine: the member table,
 * datagram intake, own-stall handling, up/down, events, actions,
 * lifecycle, the view and the invariant checker.
 *
 * DESIGN  The gossip_t holds one record per member ever heard of (members
 *         are never removed; m[0] is this node), indexed by name through an
 *         open-addressing table. The work is split along the protocol's
 *         seams:
 *           gossip_merge.c     what news is applied, refutation, conflicts
 *           gossip_probe.c     SWIM probes, ping-req relays, dead probes,
 *                              Lifeguard suspicion timers, awareness
 *           gossip_bcast.c     the broadcast queue, datagram assembly,
 *                              gossip rounds
 *           gossip_pushpull.c  full-state exchange, seeds, refusals
 *           codec.c, phi.c     the wire format, phi accrual
 *         Every entry point starts with gossip_enter (own stalls) and ends
 *         with gossip_timers_update (the cached next timer).
 *
 *         up = self || (liveness != DEAD && (phi < threshold || phi_hold)).
 *         Rather than evaluating phi for every member on every tick, each
 *         member keeps down_at, the time phi crosses the threshold given
 *         its samples (phi is monotone between samples), and a tick scans
 *         the members only once the earliest down_at of an up member
 *         (scan_at) has come; phi itself is computed only near that time.
 *
 *         Own stall: any entry point (tick or input) that comes more than
 *         stall_ms after the previous one means this node's loop did not run
 *         (a pause, swap, an overloaded host). Suspicion timers are pushed
 *         back by the gap, the probe in flight is abandoned uncounted, and
 *         every member gets phi_hold: phi convicts nobody until a datagram
 *         from that member arrives, and that first arrival is not taken as
 *         a gap sample (the gap spans our stall, not theirs).
 *
 * INVARIANTS (gossip_validate)
 *   (1) m[0] is self, ALIVE, generation >= 1; names are distinct, non-empty
 *       and found through the index; tokens strictly ascending.
 *   (2) a member's (generation, incarnation) never decreases here;
 *       this node's incarnation changes only through refute, set_local or
 *       a load announcement.
 *   (3) cnt[] counts other members by liveness; a SUSPECT member has
 *       susp_n <= susp_k; others hold no suspicion state.
 *   (4) the broadcast queue holds at most one update per member and
 *       member.bq points at it (gossip_bq_validate).
 *
 * THREADING  One thread per gossip_t; no globals.
 */
#include "gossip_int.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <strings.h>

#include <xxhash.h>

/* ---- small helpers ----------------------------------------------------- */

uint64_t gossip_hash(const void *p, size_t n)
{
    return XXH3_64bits(p, n);
}


static void str_set(char **dst, kv_slice_t s)
{
    if (*dst && gossip_slice_is(s, *dst)) return;
    kv_free(*dst);
    *dst = gossip_dup_slice(s);
}

const char *gossip_addr(const char *host, uint16_t port, char *buf, size_t cap)
{
    if (strchr(host, ':')) snprintf(buf, cap, "[%s]:%u", host, (unsigned)port);
    else snprintf(buf, cap, "%s:%u", host, (unsigned)port);
    return buf;
}

const char *gossip_liveness_str(gossip_liveness_t l)
{
    switch (l) {
    case GOSSIP_ALIVE: return "alive";
    case GOSSIP_SUSPECT: return "suspect";
    case GOSSIP_DEAD: return "dead";
    }
    return "unknown";
}

const char *gossip_status_str(gossip_status_t s)
{
    switch (s) {
    case GOSSIP_JOINING: return "joining";
    case GOSSIP_NORMAL: return "normal";
    case GOSSIP_LEAVING: return "leaving";
    case GOSSIP_LEFT: return "left";
    }
    return "unknown";
}

void gossip_config_init(gossip_config_t *c)
{
    memset(c, 0, sizeof *c);
    c->probe_interval_ms = 1000;
    c->probe_timeout_ms = 500;
    c->indirect_checks = 3;
    c->suspicion_mult = 4;
    c->suspicion_max_mult = 6;
    c->retransmit_mult = 4;
    c->gossip_interval_ms = 200;
    c->gossip_fanout = 3;
    c->pushpull_interval_ms = 30000;
    c->seed_interval_ms = 1000;
    c->dead_probe_interval_ms = 5000;
    c->awareness_max = 8;
    c->load_interval_ms = 10000;
    c->phi_threshold = 8.0;
    c->phi_window = 100;
    c->phi_min_std_ms = 100;
    c->phi_acceptable_pause_ms = 3000;
    c->phi_first_estimate_ms = 1000;
    c->phi_min_gap_ms = 50;
    c->stall_ms = 2000;
}

/* ---- actions and events ----------------------------------------------- */

/* One allocation holds the data, host and target of an action, so the
 * action outlives any change to the member table until the next clear. */
static void act_push(gossip_t *g, gossip_act_kind_t kind, const char *host,
                     uint16_t port, const char *target, const kv_buf_t *data,
                     uint64_t id)
{
    if (g->nacts == g->acts_cap) {
        g->acts_cap = g->acts_cap ? g->acts_cap * 2 : 16;
        g->acts = kv_realloc(g->acts, g->acts_cap * sizeof *g->acts);
        g->act_mem = kv_realloc(g->act_mem, g->acts_cap * sizeof *g->act_mem);
    }
    size_t hl = strlen(host) + 1, tl = target ? strlen(target) + 1 : 0;
    uint8_t *mem = kv_malloc(data->len + hl + tl + 1);
    if (data->len) memcpy(mem, data->data, data->len);
    memcpy(mem + data->len, host, hl);
    if (target) memcpy(mem + data->len + hl, target, tl);
    g->act_mem[g->nacts] = mem;
    gossip_action_t *a = &g->acts[g->nacts++];
    memset(a, 0, sizeof *a);
    a->kind = kind;
    a->host = (const char *)mem + data->len;
    a->port = port;
    a->data = mem;
    a->len = data->len;
    a->id = id;
    a->target = target ? (const char *)mem + data->len + hl : NULL;
}

void gossip_act_udp(gossip_t *g, const char *host, uint16_t port,
                    const char *target, const kv_buf_t *data)
{
    kv_assert(data->len <= GOSSIP_MAX_UDP);
    act_push(g, GOSSIP_ACT_UDP, host, port, target, data, 0);
    g->st.udp_sent++;
    g->st.udp_bytes_sent += data->len;
}

void gossip_act_pushpull(gossip_t *g, const char *host, uint16_t port,
                         const char *target, const kv_buf_t *data, uint64_t id)
{
    act_push(g, GOSSIP_ACT_PUSHPULL, host, port, target, data, id);
    g->st.pushpull_sent++;
    g->st.pushpull_bytes_sent += data->len;
}

void gossip_event(gossip_t *g, uint64_t now, gossip_event_kind_t kind,
                  const char *name, const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (g->nevs == g->evs_cap) {
        g->evs_cap = g->evs_cap ? g->evs_cap * 2 : 16;
        g->evs = kv_realloc(g->evs, g->evs_cap * sizeof *g->evs);
        g->ev_mem = kv_realloc(g->ev_mem, g->evs_cap * sizeof *g->ev_mem);
    }
    size_t nl = strlen(name) + 1, tl = strlen(text) + 1;
    char *mem = kv_malloc(nl + tl);
    memcpy(mem, name, nl);
    memcpy(mem + nl, text, tl);
    g->ev_mem[g->nevs] = mem;
    gossip_event_t *e = &g->evs[g->nevs++];
    e->kind = kind;
    e->name = mem;
    e->text = mem + nl;
    e->at_ms = now;
}

const gossip_action_t *gossip_actions(const gossip_t *g, size_t *n)
{
    *n = g->nacts;
    return g->acts;
}

const gossip_event_t *gossip_events(const gossip_t *g, size_t *n)
{
    *n = g->nevs;
    return g->evs;
}

void gossip_actions_clear(gossip_t *g)
{
    for (size_t i = 0; i < g->nacts; i++) kv_free(g->act_mem[i]);
    for (size_t i = 0; i < g->nevs; i++) kv_free(g->ev_mem[i]);
    g->nacts = g->nevs = 0;
}

/* ---- the member table --------------------------------------------------- */

member_t *gossip_find(const gossip_t *g, kv_slice_t name, uint32_t *idx)
{
    uint32_t mask = g->hcap - 1;
    uint32_t h = (uint32_t)gossip_hash(name.data, name.len) & mask;
    while (g->hidx[h]) {
        uint32_t i = g->hidx[h] - 1;
        const member_t *m = g->m[i];
        if (m->name_len == name.len && memcmp(m->name, name.data, name.len) == 0) {
            if (idx) *idx = i;
            return g->m[i];
        }
        h = (h + 1) & mask;
    }
    return NULL;
}

static member_t *find_str(const gossip_t *g, const char *name, uint32_t *idx)
{
    return gossip_find(g, kv_slice_str(name), idx);
}

static void hidx_put(uint32_t *tab, uint32_t cap, const char *name, uint32_t i)
{
    uint32_t mask = cap - 1;
    uint32_t h = (uint32_t)gossip_hash(name, strlen(name)) & mask;
    while (tab[h]) h = (h + 1) & mask;
    tab[h] = i + 1;
}

static void member_free(member_t *m)
{
    kv_free(m->name);
    kv_free(m->node_id);
    kv_free(m->host);
    kv_free(m->rack);
    kv_free(m->tokens);
    kv_free(m->susp_from);
    gossip_phi_free(m->phi);
    kv_free(m);
}

/* Append a member with just a name; the caller fills the rest. */
uint32_t gossip_member_add(gossip_t *g, kv_slice_t name, bool self)
{
    if ((g->n + 1) * 2 > g->hcap) {
        uint32_t cap = g->hcap ? g->hcap * 2 : 16;
        uint32_t *tab = kv_calloc(cap, sizeof *tab);
        for (uint32_t i = 0; i < g->n; i++) hidx_put(tab, cap, g->m[i]->name, i);
        kv_free(g->hidx);
        g->hidx = tab;
        g->hcap = cap;
    }
    if (g->n == g->mcap) {
        g->mcap = g->mcap ? g->mcap * 2 : 8;
        g->m = kv_realloc(g->m, g->mcap * sizeof *g->m);
    }
    member_t *m = kv_calloc(1, sizeof *m);
    m->name = gossip_dup_slice(name);
    m->name_len = name.len;
    m->node_id = kv_strdup("");
    m->host = kv_strdup("");
    m->rack = kv_strdup("");
    m->self = self;
    m->bq = -1;
    m->up = true;
    m->down_at = HUGE_VAL;
    m->phi = gossip_phi_new(g->cfg.phi_window, g->cfg.phi_min_std_ms,
                            g->cfg.phi_acceptable_pause_ms,
                            g->cfg.phi_first_estimate_ms, g->cfg.phi_min_gap_ms);
    uint32_t i = g->n++;
    g->m[i] = m;
    hidx_put(g->hidx, g->hcap, m->name, i);
    /* A member hears from a given other about every gossip_interval *
     * (N - 1) / fanout. phi's guess before its first gap must not be
     * shorter, or members of a large cluster look down before phi has
     * learnt their rhythm: raise it for everyone as the cluster grows. */
    uint64_t gap = (uint64_t)g->cfg.gossip_interval_ms * (g->n > 1 ? g->n - 1 : 1) /
                   (g->cfg.gossip_fanout ? g->cfg.gossip_fanout : 1);
    uint32_t first = (uint32_t)KV_MIN(KV_MAX(gap, (uint64_t)g->cfg.phi_first_estimate_ms),
                                      UINT32_MAX);
    if (first > g->phi_first) {
        g->phi_first = first;
        for (uint32_t k = 0; k < g->n; k++)
            gossip_phi_set_first_estimate(g->m[k]->phi, first);
    } else {
        gossip_phi_set_first_estimate(m->phi, g->phi_first);
    }
    if (!self) {
        g->cnt[GOSSIP_ALIVE]++;
        gossip_probe_added(g, i);
    }
    return i;
}

static bool tokens_equal(const member_t *m, const gw_state_t *st)
{
    if (m->ntokens != st->ntokens) return false;
    for (uint32_t i = 0; i < st->ntokens; i++)
        if (m->tokens[i] != gw_token_at(st, i)) return false;
    return true;
}

/* Adopt an announced state (not the name). Returns whether anything that
 * shapes the ring changed. */
bool gossip_member_set_state(member_t *m, const gw_state_t *st)
{
    bool same_tokens = tokens_equal(m, st);
    bool ring = !gossip_slice_is(st->host, m->host) || !gossip_slice_is(st->rack, m->rack) ||
                !gossip_slice_is(st->node_id, m->node_id) || m->port != st->port ||
                m->client_port != st->client_port ||
                m->admin_port != st->admin_port ||
                m->status != (gossip_status_t)st->status || !same_tokens;
    str_set(&m->node_id, st->node_id);
    str_set(&m->host, st->host);
    str_set(&m->rack, st->rack);
    m->port = st->port;
    m->client_port = st->client_port;
    m->admin_port = st->admin_port;
    m->generation = st->generation;
    m->incarnation = st->incarnation;
    m->status = (gossip_status_t)st->status;
    m->load_bytes = st->load;
    if (!same_tokens) {
        kv_free(m->tokens);
        m->tokens = st->ntokens ? kv_malloc(st->ntokens * sizeof *m->tokens) : NULL;
        m->ntokens = st->ntokens;
        for (uint32_t i = 0; i < st->ntokens; i++) m->tokens[i] = gw_token_at(st, i);
    }
    return ring;
}

void gossip_state_of(const gossip_t *g, const member_t *m, gw_state_t *out)
{
    memset(out, 0, sizeof *out);
    out->name = kv_slice_str(m->name);
    out->node_id = kv_slice_str(m->node_id);
    out->host = kv_slice_str(m->host);
    out->rack = kv_slice_str(m->rack);
    out->port = m->port;
    out->client_port = m->client_port;
    out->admin_port = m->admin_port;
    out->generation = m->generation;
    out->incarnation = m->incarnation;
    out->status = m->status;
    out->ntokens = m->ntokens;
    out->tokens = m->tokens;
    out->load = m->load_bytes;
    out->liveness = m->self ? GOSSIP_ALIVE : m->liveness;
    KV_UNUSED(g);
}

void gossip_set_liveness(gossip_t *g, member_t *m, gossip_liveness_t l)
{
    if (m->liveness == l) return;
    if (!m->self) {
        g->cnt[m->liveness]--;
        g->cnt[l]++;
    }
    m->liveness = l;
    g->liveness_version++;
    if (l != GOSSIP_SUSPECT) {
        kv_free(m->susp_from);
        m->susp_from = NULL;
        m->susp_n = m->susp_k = 0;
    }
}

uint32_t gossip_count_live(const gossip_t *g)
{
    return g->n - g->cnt[GOSSIP_DEAD];
}

/* ---- up / down ---------------------------------------------------------- */

#define PHI_MIN_GAPS 4u

static bool member_up(const gossip_t *g, const member_t *m, uint64_t now)
{
    if (m->self) return true;
    if (m->liveness == GOSSIP_DEAD) return false;
    /* phi convicts only once it has a few gaps to judge by: in a large
     * cluster a member is heard from every few seconds, and a verdict from
     * one or two gaps flags healthy members down (SWIM still catches a
     * dead one) */
    if (m->phi_hold || gossip_phi_gaps(m->phi) < PHI_MIN_GAPS) return true;
    if ((double)now + 1.0 < m->down_at) return true;
    return gossip_phi_value(m->phi, now) < g->cfg.phi_threshold;
}

void gossip_check_up(gossip_t *g, uint32_t i, uint64_t now)
{
    member_t *m = g->m[i];
    bool up = member_up(g, m, now);
    /* an up member's phi crosses the threshold at down_at: look again then */
    if (up && !m->self && m->liveness != GOSSIP_DEAD && !m->phi_hold &&
        m->down_at < g->scan_at)
        g->scan_at = m->down_at;
    if (up == m->up) return;
    m->up = up;
    g->liveness_version++;
    if (up) {
        gossip_event(g, now, GOSSIP_EV_UP, m->name, "node %s is up (%s)",
                     m->name, gossip_liveness_str(m->liveness));
    } else if (m->liveness == GOSSIP_DEAD) {
        gossip_event(g, now, GOSSIP_EV_DOWN, m->name,
                     "node %s is down: declared dead", m->name);
    } else {
        uint64_t last = gossip_phi_last(m->phi);
        gossip_event(g, now, GOSSIP_EV_DOWN, m->name,
                     "node %s is down: phi %.1f >= %.1f, nothing heard for %.1f s",
                     m->name, gossip_phi_value(m->phi, now),
                     g->cfg.phi_threshold,
                     now > last ? (double)(now - last) / 1000.0 : 0.0);
    }
}

/* A datagram from member i arrived. */
void gossip_heard_tcp(gossip_t *g, uint32_t i, uint64_t now)
{
    g->m[i]->heard = true;
    g->m[i]->last_heard_ms = now;
}

static void heard_from(gossip_t *g, uint32_t i, uint64_t now)
{
    member_t *m = g->m[i];
    m->heard = true;
    m->last_heard_ms = now;
    if (m->phi_hold) {
        gossip_phi_mark(m->phi, now);
        m->phi_hold = false;
    } else {
        gossip_phi_sample(m->phi, now);
    }
    m->down_at = gossip_phi_cross_ms(m->phi, g->z_thr);
}

/* ---- entry points ------------------------------------------------------- */

static void stall(gossip_t *g, uint64_t now, uint64_t gap)
{
    g->st.stalls++;
    for (uint32_t i = 1; i < g->n; i++) {
        member_t *m = g->m[i];
        m->phi_hold = true;
        if (m->liveness == GOSSIP_SUSPECT) m->susp_start += gap;
    }
    g->scan_at = 0; /* held members that were down are up again */
    gossip_probe_stall(g, now);
}

/* Every input and tick starts here: notice our own stalls. */
void gossip_enter(gossip_t *g, uint64_t now)
{
    if (now > g->last_seen) {
        if (now - g->last_seen > g->cfg.stall_ms) stall(g, now, now - g->last_seen);
        g->last_seen = now;
    }
}

void gossip_timers_update(gossip_t *g)
{
    uint64_t t = g->next_gossip_at;
    t = KV_MIN(t, g->next_probe_at);
    gossip_probe_timers(g, &t);
    if (g->cfg.pushpull_interval_ms) t = KV_MIN(t, g->next_pushpull_at);
    if (g->nseeds && gossip_alone(g)) t = KV_MIN(t, g->next_seed_at);
    if (g->cnt[GOSSIP_SUSPECT]) {
        for (uint32_t i = 1; i < g->n; i++)
            if (g->m[i]->liveness == GOSSIP_SUSPECT)
                t = KV_MIN(t, gossip_suspicion_deadline(g, g->m[i]));
    }
    if (g->load_now != g->m[0]->load_bytes)
        t = KV_MIN(t, g->load_announced_at + g->cfg.load_interval_ms);
    g->next_timer = t;
}

uint64_t gossip_next_timer(const gossip_t *g)
{
    return g->next_timer;
}

void gossip_tick(gossip_t *g, uint64_t now)
{
    gossip_enter(g, now);
    gossip_suspicion_tick(g, now);
    gossip_probe_tick(g, now);
    if (now >= g->next_gossip_at) {
        gossip_gossip_round(g, now);
        g->next_gossip_at += g->cfg.gossip_interval_ms;
        if (g->next_gossip_at <= now) g->next_gossip_at = now + g->cfg.gossip_interval_ms;
    }
    gossip_pushpull_tick(g, now);
    member_t *me = g->m[0];
    if (g->load_now != me->load_bytes &&
        now >= g->load_announced_at + g->cfg.load_interval_ms) {
        me->incarnation++;
        gossip_announce_self(g, now);
    }
    /* Phi moves with time: re-check up only once some member's phi may
     * have crossed the threshold (other changes check their member). */
    if ((double)now + 1.0 >= g->scan_at) {
        g->scan_at = HUGE_VAL;
        for (uint32_t i = 1; i < g->n; i++) gossip_check_up(g, i, now);
    }
    gossip_timers_update(g);
}

void gossip_on_udp(gossip_t *g, uint64_t now_ms, const uint8_t *data, size_t len)
{
    gossip_enter(g, now_ms);
    g->st.udp_received++;
    g->st.udp_bytes_received += len;
    gw_unpacked_t u;
    gw_unpacked_init(&u);
    gw_msg_t msg;
    gw_result_t r = gw_decode_msg(data, len, &u, &msg);
    if (r != GW_OK) {
        if (r == GW_VERSION) g->st.dropped_version++;
        else g->st.dropped_malformed++;
        goto out;
    }
    if (!gossip_slice_is(msg.h.cluster, g->cluster)) {
        g->st.dropped_cluster++;
        goto out;
    }
    uint32_t si;
    member_t *s = gossip_find(g, msg.h.name, &si);
    if (s && (s->self || (s->generation > 0 && !gossip_slice_is(msg.h.node_id, s->node_id)))) {
        if (!s->self || !gossip_slice_is(msg.h.node_id, s->node_id))
            gossip_conflict(g, now_ms, s, msg.h.node_id, msg.h.host, msg.h.port);
        goto out; /* our own name: never answer it */
    }
    for (uint32_t i = 0; i < msg.nupdates; i++) {
        gw_update_t up;
        if (gw_update_decode(&msg.updates[i], &up) != GW_OK) continue;
        gossip_liveness_t live = up.kind == GW_UPD_ALIVE   ? GOSSIP_ALIVE
                                 : up.kind == GW_UPD_DEAD ? GOSSIP_DEAD
                                                          : GOSSIP_SUSPECT;
        gossip_apply(g, now_ms, up.name, up.generation, up.incarnation, live,
                     up.kind == GW_UPD_ALIVE ? &up.st : NULL, up.from, false);
    }
    s = gossip_find(g, msg.h.name, &si);
    if (s && s->generation <= msg.h.generation) heard_from(g, si, now_ms);
    gossip_probe_on_msg(g, now_ms, &msg);
    if (!s || s->generation < msg.h.generation)
        gossip_discover(g, now_ms, msg.h.name, msg.h.host, msg.h.port);
    if (s) gossip_check_up(g, si, now_ms);
out:
    gw_unpacked_release(&u);
    gossip_timers_update(g);
}

/* ---- lifecycle ---------------------------------------------------------- */

static kv_status_t check_text(const char *what, const char *s, size_t max,
                              bool required)
{
    if (!s || !*s) {
        if (!required) return KV_OK;
        kv_errmsg_set("gossip: %s is required", what);
        return KV_INVALID;
    }
    if (strlen(s) > max) {
        kv_errmsg_set("gossip: %s is longer than %zu bytes", what, max);
        return KV_INVALID;
    }
    return KV_OK;
}

static kv_status_t check_local(const gossip_local_t *s, bool placeholder)
{
    if (!s) {
        kv_errmsg_set("gossip: no local state");
        return KV_INVALID;
    }
    KV_RET(check_text("node name", s->name, GOSSIP_MAX_NAME, true));
    KV_RET(check_text("node id", s->node_id, GW_MAX_NODE_ID, !placeholder));
    KV_RET(check_text("host", s->host, GOSSIP_MAX_NAME, true));
    KV_RET(check_text("rack", s->rack, GOSSIP_MAX_NAME, false));
    if (s->port == 0) {
        kv_errmsg_set("gossip: node %s has no gossip port", s->name);
        return KV_INVALID;
    }
    if ((unsigned)s->status > GOSSIP_LEFT) {
        kv_errmsg_set("gossip: node %s: bad status %d", s->name, (int)s->status);
        return KV_INVALID;
    }
    if (s->ntokens > GOSSIP_MAX_TOKENS || (s->ntokens && !s->tokens)) {
        kv_errmsg_set("gossip: node %s: %u tokens (at most %u)", s->name,
                      s->ntokens, GOSSIP_MAX_TOKENS);
        return KV_INVALID;
    }
    for (uint32_t i = 1; i < s->ntokens; i++)
        if (s->tokens[i - 1] >= s->tokens[i]) {
            kv_errmsg_set("gossip: node %s: tokens are not strictly ascending",
                          s->name);
            return KV_INVALID;
        }
    if (!placeholder && s->generation == 0) {
        kv_errmsg_set("gossip: node %s: generation 0 is reserved for "
                      "placeholders", s->name);
        return KV_INVALID;
    }
    return KV_OK;
}

static kv_status_t check_config(const gossip_config_t *c)
{
    if (!c) {
        kv_errmsg_set("gossip: no config");
        return KV_INVALID;
    }
    KV_RET(check_text("cluster name", c->cluster_name, GOSSIP_MAX_NAME, true));
    const char *bad = NULL;
    if (!c->probe_interval_ms) bad = "probe_interval_ms must be > 0";
    else if (!c->probe_timeout_ms || c->probe_timeout_ms > c->probe_interval_ms)
        bad = "probe_timeout_ms must be in 1..probe_interval_ms";
    else if (!c->gossip_interval_ms) bad = "gossip_interval_ms must be > 0";
    else if (!c->seed_interval_ms) bad = "seed_interval_ms must be > 0";
    else if (!c->suspicion_mult) bad = "suspicion_mult must be > 0";
    else if (!c->suspicion_max_mult) bad = "suspicion_max_mult must be > 0";
    else if (!c->retransmit_mult) bad = "retransmit_mult must be > 0";
    else if (!c->awareness_max) bad = "awareness_max must be > 0";
    else if (!c->phi_window || c->phi_window > 100000)
        bad = "phi_window must be in 1..100000";
    else if (!(c->phi_threshold > 0) || !isfinite(c->phi_threshold))
        bad = "phi_threshold must be > 0";
    else if (c->stall_ms <= c->gossip_interval_ms)
        /* the gossip timer is what makes ticks regular */
        bad = "stall_ms must be greater than gossip_interval_ms";
    else if (c->gossip_fanout > 64 || c->indirect_checks > 64)
        bad = "gossip_fanout and indirect_checks must be at most 64";
    if (bad) {
        kv_errmsg_set("gossip: %s", bad);
        return KV_INVALID;
    }
    return KV_OK;
}

static void local_state(const gossip_local_t *s, uint64_t gen, uint64_t inc,
                        gw_state_t *st)
{
    memset(st, 0, sizeof *st);
    st->name = kv_slice_str(s->name);
    st->node_id = kv_slice_str(s->node_id ? s->node_id : "");
    st->host = kv_slice_str(s->host);
    st->rack = kv_slice_str(s->rack ? s->rack : "");
    st->port = s->port;
    st->client_port = s->client_port;
    st->admin_port = s->admin_port;
    st->generation = gen;
    st->incarnation = inc;
    st->status = s->status;
    st->ntokens = s->ntokens;
    st->tokens = s->tokens;
    st->load = s->load_bytes;
}

kv_status_t gossip_create(const gossip_config_t *cfg, const gossip_local_t *self,
                          uint64_t now_ms, gossip_t **out)
{
    KV_RET(check_config(cfg));
    KV_RET(check_local(self, false));
    gossip_t *g = kv_calloc(1, sizeof *g);
    g->cfg = *cfg;
    g->cluster = kv_strdup(cfg->cluster_name);
    g->cfg.cluster_name = g->cluster;
    kv_rng_seed(&g->rng, cfg->seed);
    g->z_thr = gossip_phi_z_for(cfg->phi_threshold);
    g->scan_at = HUGE_VAL;
    gossip_bq_init(&g->bq);
    g->refusal = kv_strdup("");
    g->seq = 1;
    g->pp_next_id = 1;

    gw_state_t st;
    local_state(self, self->generation, 0, &st);
    gossip_member_add(g, st.name, true);
    gossip_member_set_state(g->m[0], &st);
    g->load_now = self->load_bytes;
    g->ring_version = 1;
    g->liveness_version = 1;

    g->last_seen = now_ms;
    g->next_probe_at = now_ms + cfg->probe_interval_ms;
    g->next_gossip_at = now_ms + cfg->gossip_interval_ms;
    g->next_pushpull_at = now_ms + cfg->pushpull_interval_ms;
    g->next_seed_at = now_ms;
    g->next_dead_probe_at = now_ms + cfg->dead_probe_interval_ms;
    gossip_announce_self(g, now_ms);
    gossip_timers_update(g);
    *out = g;
    return KV_OK;
}

void gossip_destroy(gossip_t *g)
{
    if (!g) return;
    gossip_actions_clear(g);
    kv_free(g->acts);
    kv_free(g->act_mem);
    kv_free(g->evs);
    kv_free(g->ev_mem);
    for (uint32_t i = 0; i < g->n; i++) member_free(g->m[i]);
    kv_free(g->m);
    kv_free(g->hidx);
    gossip_rr_free(&g->probe_rr);
    gossip_rr_free(&g->gossip_rr);
    gossip_bq_deinit(&g->bq);
    gossip_relays_free(g);
    gossip_pushpull_free(g);
    for (size_t i = 0; i < g->nseeds; i++) kv_free(g->seeds[i].host);
    kv_free(g->seeds);
    kv_free(g->refusal);
    kv_free(g->cluster);
    kv_buf_deinit(&g->scratch);
    kv_free(g);
}

kv_status_t gossip_add_known(gossip_t *g, uint64_t now_ms, const gossip_local_t *m)
{
    KV_RET(check_local(m, true));
    if (find_str(g, m->name, NULL)) {
        kv_errmsg_set("gossip: node %s is known already", m->name);
        return KV_EXISTS;
    }
    gw_state_t st;
    local_state(m, 0, 0, &st);
    uint32_t i = gossip_member_add(g, st.name, false);
    gossip_member_set_state(g->m[i], &st);
    g->ring_version++;
    g->liveness_version++;
    KV_UNUSED(now_ms);
    gossip_timers_update(g);
    return KV_OK;
}

void gossip_set_seeds(gossip_t *g, const char *const *hosts,
                      const uint16_t *ports, size_t n)
{
    for (size_t i = 0; i < g->nseeds; i++) kv_free(g->seeds[i].host);
    kv_free(g->seeds);
    g->seeds = n ? kv_calloc(n, sizeof *g->seeds) : NULL;
    g->nseeds = 0;
    const member_t *me = g->m[0];
    for (size_t i = 0; i < n; i++) {
        if (!hosts[i] || !*hosts[i] || strlen(hosts[i]) > GOSSIP_MAX_NAME ||
            !ports[i])
            continue;
        if (ports[i] == me->port && strcasecmp(hosts[i], me->host) == 0)
            continue; /* ourselves */
        g->seeds[g->nseeds].host = kv_strdup(hosts[i]);
        g->seeds[g->nseeds].port = ports[i];
        g->nseeds++;
    }
    /* Contact them at once, then every seed_interval while alone. */
    gossip_pushpull_seeds(g, g->last_seen);
    g->next_seed_at = g->last_seen + g->cfg.seed_interval_ms;
    gossip_timers_update(g);
}

kv_status_t gossip_set_local(gossip_t *g, uint64_t now_ms, const gossip_local_t *self)
{
    KV_RET(check_local(self, false));
    member_t *me = g->m[0];
    if (strcmp(self->name, me->name) != 0 || strcmp(self->node_id, me->node_id) != 0) {
        kv_errmsg_set("gossip: a node's name and node id cannot change");
        return KV_INVALID;
    }
    if (self->generation != me->generation) {
        kv_errmsg_set("gossip: a node's generation cannot change while it runs");
        return KV_INVALID;
    }
    gossip_enter(g, now_ms);
    gw_state_t st;
    local_state(self, me->generation, me->incarnation + 1, &st);
    st.load = me->load_bytes;
    g->load_now = self->load_bytes;
    bool changed = !gossip_slice_is(st.host, me->host) || !gossip_slice_is(st.rack, me->rack) ||
                   me->port != st.port || me->client_port != st.client_port ||
                   me->admin_port != st.admin_port ||
                   me->status != (gossip_status_t)st.status ||
                   !tokens_equal(me, &st);
    if (changed) {
        gossip_member_set_state(me, &st);
        g->ring_version++;
        gossip_announce_self(g, now_ms);
        char a[300];
        gossip_event(g, now_ms, GOSSIP_EV_UPDATED, me->name,
                     "this node now announces %s, rack \"%s\", %s, %u tokens "
                     "(incarnation %" PRIu64 ")",
                     gossip_addr(me->host, me->port, a, sizeof a), me->rack,
                     gossip_status_str(me->status), me->ntokens, me->incarnation);
    }
    gossip_timers_update(g);
    return KV_OK;
}

kv_status_t gossip_set_member_status(gossip_t *g, uint64_t now_ms, const char *name,
                                     gossip_status_t status)
{
    uint32_t i;
    member_t *m = find_str(g, name, &i);
    if (!m) {
        kv_errmsg_set("gossip: no member named %s", name);
        return KV_NOTFOUND;
    }
    if (m->self || m->generation == 0) {
        kv_errmsg_set("gossip: %s's status is not this node's to announce", name);
        return KV_INVALID;
    }
    if (m->status == status) return KV_OK;
    gossip_enter(g, now_ms);
    m->incarnation++;
    m->status = status;
    g->ring_version++;
    gossip_queue_alive(g, i);
    gossip_event(g, now_ms, GOSSIP_EV_UPDATED, m->name,
                 "this node announces %s as %s on its behalf (incarnation %" PRIu64 ")",
                 m->name, gossip_status_str(status), m->incarnation);
    gossip_timers_update(g);
    return KV_OK;
}

/* ---- the view ----------------------------------------------------------- */

size_t gossip_member_count(const gossip_t *g)
{
    return g->n;
}

void gossip_member_at(const gossip_t *g, size_t i, uint64_t now_ms,
                      gossip_member_t *out)
{
    kv_assert(i < g->n);
    const member_t *m = g->m[i];
    memset(out, 0, sizeof *out);
    out->name = m->name;
    out->node_id = m->node_id;
    out->host = m->host;
    out->rack = m->rack;
    out->port = m->port;
    out->client_port = m->client_port;
    out->admin_port = m->admin_port;
    out->generation = m->generation;
    out->incarnation = m->incarnation;
    out->status = m->status;
    out->tokens = m->tokens;
    out->ntokens = m->ntokens;
    out->load_bytes = m->self ? g->load_now : m->load_bytes;
    out->liveness = m->self ? GOSSIP_ALIVE : m->liveness;
    out->phi = m->self ? 0.0 : gossip_phi_value(m->phi, now_ms);
    out->up = member_up(g, m, now_ms);
    out->self = m->self;
    out->known = m->generation != 0;
    out->last_heard_ms = m->last_heard_ms;
}

kv_status_t gossip_member_find(const gossip_t *g, const char *name,
                               uint64_t now_ms, gossip_member_t *out)
{
    uint32_t i;
    if (!name || !find_str(g, name, &i)) return KV_NOTFOUND;
    gossip_member_at(g, i, now_ms, out);
    return KV_OK;
}

uint64_t gossip_ring_version(const gossip_t *g)
{
    return g->ring_version;
}

uint64_t gossip_liveness_version(const gossip_t *g)
{
    return g->liveness_version;
}

const char *gossip_refusal(const gossip_t *g)
{
    return g->refusal;
}

void gossip_get_stats(const gossip_t *g, gossip_stats_t *out)
{
    *out = g->st;
    out->awareness = g->awareness;
    out->members_alive = g->cnt[GOSSIP_ALIVE];
    out->members_suspect = g->cnt[GOSSIP_SUSPECT];
    out->members_dead = g->cnt[GOSSIP_DEAD];
}

/* ---- validation --------------------------------------------------------- */

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            kv_errmsg_set(__VA_ARGS__);                                        \
            return KV_CORRUPT;                                                 \
        }                                                                      \
    } while (0)

kv_status_t gossip_validate(const gossip_t *g)
{
    CHECK(g->n >= 1 && g->m[0]->self, "member 0 is not this node");
    CHECK(g->m[0]->liveness == GOSSIP_ALIVE && g->m[0]->generation >= 1,
          "this node is %s at generation %" PRIu64,
          gossip_liveness_str(g->m[0]->liveness), g->m[0]->generation);
    CHECK(g->hcap >= 2 * g->n && (g->hcap & (g->hcap - 1)) == 0,
          "index capacity %u for %u members", g->hcap, g->n);
    uint32_t cnt[3] = {0, 0, 0};
    for (uint32_t i = 0; i < g->n; i++) {
        const member_t *m = g->m[i];
        uint32_t j;
        CHECK(m->name[0], "member %u has no name", i);
        CHECK(i == 0 || !m->self, "member %u claims to be this node", i);
        CHECK(find_str(g, m->name, &j) == m && j == i,
              "member %s not found at %u through the index", m->name, i);
        CHECK((unsigned)m->liveness <= GOSSIP_DEAD, "member %s: liveness %d",
              m->name, (int)m->liveness);
        for (uint32_t t = 1; t < m->ntokens; t++)
            CHECK(m->tokens[t - 1] < m->tokens[t], "member %s: tokens unsorted",
                  m->name);
        if (i > 0) cnt[m->liveness]++;
        if (m->liveness == GOSSIP_SUSPECT)
            CHECK(m->susp_n <= m->susp_k && m->susp_min <= m->susp_max,
                  "member %s: %u of %u confirmations, min %" PRIu64 " max %" PRIu64,
                  m->name, m->susp_n, m->susp_k, m->susp_min, m->susp_max);
        else
            CHECK(m->susp_from == NULL && m->susp_n == 0,
                  "member %s: suspicion state while %s", m->name,
                  gossip_liveness_str(m->liveness));
    }
    for (int l = 0; l < 3; l++)
        CHECK(cnt[l] == g->cnt[l], "%s members: counted %u, held %u",
              gossip_liveness_str((gossip_liveness_t)l), cnt[l], g->cnt[l]);
    CHECK(g->awareness < g->cfg.awareness_max, "awareness %u", g->awareness);
    KV_RET(gossip_bq_validate(g));
    for (size_t i = 0; i < g->nacts; i++) {
        const gossip_action_t *a = &g->acts[i];
        CHECK(a->kind == GOSSIP_ACT_PUSHPULL || a->len <= GOSSIP_MAX_UDP,
              "action %zu: datagram of %zu bytes", i, a->len);
        CHECK(a->kind != GOSSIP_ACT_PUSHPULL || a->id != 0,
              "action %zu: push-pull without id", i);
    }
    return KV_OK;
}
