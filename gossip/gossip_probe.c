/* gossip_probe.c -- SWIM failure detection with Lifeguard's refinements:
 * the probe cycle, ping-req relays, dead-member probing, suspicion timers.
 *
 * DESIGN  One probe at a time, one per period of probe_interval * (A + 1)
 *         where A is the local health score (awareness):
 *
 *           t0: PING target ------ ack ------> done (A - 1)
 *             |  (carries "you are suspect/dead at (g, i)" when we think so)
 *           t0 + probe_timeout * (A + 1), no ack yet:
 *             PING-REQ to up to indirect_checks random ALIVE members; each
 *             pings the target and relays its ack, or sends NACK when it got
 *             none within 4/5 of probe_timeout (so the nack is back before
 *             our period ends; memberlist waits a whole probe_timeout and its
 *             nacks usually arrive after the verdict)
 *           t0 + period, no ack (direct or relayed):
 *             SUSPECT at the (generation, incarnation) probed; A + 1 when
 *             fewer nacks came back than ping-reqs went out (we may be the
 *             slow one)
 *
 *         Targets come round-robin from a list reshuffled on every pass
 *         (self and DEAD members left out); a member that joins (or comes
 *         back from the dead) mid-pass is inserted at a random place in
 *         what is left of it, so it is probed within one pass. Gossip
 *         targets come from a second such list (gossip_bcast.c). DEAD members are probed separately, one every
 *         dead_probe_interval in turn, with the dead notice, so a member
 *         cut off by a partition refutes once it is reachable again and the
 *         two sides merge.
 *
 *         Suspicion (Lifeguard): when a member becomes SUSPECT here, with N
 *         members not DEAD (self included):
 *             min = suspicion_mult * max(1, log10 N) * probe_interval
 *             max = suspicion_max_mult * min
 *             k   = suspicion_mult - 2, or 0 when N - 2 < k
 *         and the member is declared DEAD at start + timeout(n), where n
 *         counts suspect messages from distinct members other than the
 *         first reporter (at most k):
 *             timeout(n) = max(min, max - log(n + 1) / log(k + 1) * (max - min))
 *         (k = 0: min). start is local and pushed back by our own stalls.
 *
 * THREADING  none inside.
 */
#include "gossip_int.h"

#include <math.h>

static uint64_t scaled(const gossip_t *g, uint32_t ms)
{
    return (uint64_t)ms * (g->awareness + 1);
}

static void awareness_add(gossip_t *g, int delta)
{
    int64_t a = (int64_t)g->awareness + delta;
    if (a < 0) a = 0;
    if (a > (int64_t)g->cfg.awareness_max - 1) a = g->cfg.awareness_max - 1;
    g->awareness = (uint32_t)a;
}

/* ---- round-robin lists -------------------------------------------------- */

static void rr_push(rr_t *r, uint32_t i)
{
    if (r->len == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 16;
        r->v = kv_realloc(r->v, r->cap * sizeof *r->v);
    }
    r->v[r->len++] = i;
}

/* Put i at a random place in what is left of the pass. */
static void rr_insert(gossip_t *g, rr_t *r, uint32_t i)
{
    rr_push(r, i);
    uint32_t at = r->pos + (uint32_t)kv_rng_below(&g->rng, r->len - r->pos);
    uint32_t t = r->v[at];
    r->v[at] = r->v[r->len - 1];
    r->v[r->len - 1] = t;
}

void gossip_probe_added(gossip_t *g, uint32_t i)
{
    rr_insert(g, &g->probe_rr, i);
    rr_insert(g, &g->gossip_rr, i);
}

static void rr_rebuild(gossip_t *g, rr_t *r)
{
    r->len = r->pos = 0;
    for (uint32_t i = 1; i < g->n; i++)
        if (g->m[i]->liveness != GOSSIP_DEAD) rr_push(r, i);
    for (uint32_t j = r->len; j > 1; j--) {
        uint32_t k = (uint32_t)kv_rng_below(&g->rng, j);
        uint32_t t = r->v[k];
        r->v[k] = r->v[j - 1];
        r->v[j - 1] = t;
    }
}

int64_t gossip_rr_next(gossip_t *g, rr_t *r)
{
    for (int pass = 0; pass < 2; pass++) {
        while (r->pos < r->len) {
            uint32_t i = r->v[r->pos++];
            if (i > 0 && i < g->n && g->m[i]->liveness != GOSSIP_DEAD) return i;
        }
        rr_rebuild(g, r);
        if (r->len == 0) break;
    }
    return -1;
}

void gossip_rr_free(rr_t *r)
{
    kv_free(r->v);
    memset(r, 0, sizeof *r);
}

/* ---- sending ------------------------------------------------------------ */

static void send_ping(gossip_t *g, const member_t *m, uint64_t seq,
                      const char *host, uint16_t port)
{
    gw_msg_t msg;
    memset(&msg, 0, sizeof msg);
    msg.h.type = GW_PING;
    msg.seq = seq;
    msg.target = kv_slice_str(m->name);
    if (m->liveness != GOSSIP_ALIVE) {
        msg.has_notice = true;
        msg.notice_kind = m->liveness == GOSSIP_DEAD ? GW_UPD_DEAD : GW_UPD_SUSPECT;
        msg.notice_gen = m->generation;
        msg.notice_inc = m->incarnation;
    }
    gossip_send(g, &msg, host, port, m->name);
}

static void send_seq(gossip_t *g, uint32_t type, uint64_t seq, const char *host,
                     uint16_t port, const char *target)
{
    gw_msg_t msg;
    memset(&msg, 0, sizeof msg);
    msg.h.type = type;
    msg.seq = seq;
    gossip_send(g, &msg, host, port, target);
}

/* ---- the probe cycle ---------------------------------------------------- */

static void probe_start(gossip_t *g, uint64_t now)
{
    g->next_probe_at = now + scaled(g, g->cfg.probe_interval_ms);
    int64_t i = gossip_rr_next(g, &g->probe_rr);
    if (i < 0) return;
    const member_t *m = g->m[i];
    probe_t *p = &g->probe;
    memset(p, 0, sizeof *p);
    p->active = true;
    p->member = (uint32_t)i;
    p->seq = g->seq++;
    p->gen = m->generation;
    p->inc = m->incarnation;
    p->indirect_at = now + scaled(g, g->cfg.probe_timeout_ms);
    p->end_at = g->next_probe_at;
    g->st.probes++;
    send_ping(g, m, p->seq, m->host, m->port);
}

static void probe_indirect(gossip_t *g)
{
    probe_t *p = &g->probe;
    p->indirect_sent = true;
    const member_t *t = g->m[p->member];
    uint32_t want = g->cfg.indirect_checks, have = 0;
    uint32_t picked[64];
    if (want > KV_ARRAY_LEN(picked)) want = KV_ARRAY_LEN(picked);
    if (g->n < 3) want = 0;
    for (uint32_t tries = 0; have < want && tries < 4 * g->n; tries++) {
        uint32_t i = 1 + (uint32_t)kv_rng_below(&g->rng, g->n - 1);
        const member_t *m = g->m[i];
        /* never heard-of placeholders cannot help */
        if (i == p->member || m->liveness != GOSSIP_ALIVE || m->generation == 0)
            continue;
        bool dup = false;
        for (uint32_t j = 0; j < have; j++) dup |= picked[j] == i;
        if (!dup) picked[have++] = i;
    }
    for (uint32_t j = 0; j < have; j++) {
        const member_t *m = g->m[picked[j]];
        gw_msg_t msg;
        memset(&msg, 0, sizeof msg);
        msg.h.type = GW_PING_REQ;
        msg.seq = p->seq;
        msg.target = kv_slice_str(t->name);
        msg.target_host = kv_slice_str(t->host);
        msg.target_port = t->port;
        gossip_send(g, &msg, m->host, m->port, m->name);
    }
    p->reqs_sent = have;
    if (have) g->st.indirect_probes++;
}

static void probe_finish(gossip_t *g, uint64_t now)
{
    probe_t *p = &g->probe;
    p->active = false;
    if (p->acked) return;
    g->st.probes_failed++;
    if (p->nacks < p->reqs_sent) awareness_add(g, 1);
    if (p->member < g->n && g->m[p->member]->liveness != GOSSIP_DEAD)
        gossip_suspect_raise(g, now, p->member, p->gen, p->inc);
}

void gossip_probe_stall(gossip_t *g, uint64_t now)
{
    g->probe.active = false; /* our stall, not the target's fault */
    g->next_probe_at = now;
    for (uint32_t r = 0; r < GOSSIP_MAX_RELAYS; r++) {
        relay_t *x = &g->relays[r];
        if (!x->used) continue;
        kv_free(x->origin_host);
        kv_free(x->origin_name);
        memset(x, 0, sizeof *x);
    }
}

void gossip_relays_free(gossip_t *g)
{
    for (uint32_t r = 0; r < GOSSIP_MAX_RELAYS; r++) {
        kv_free(g->relays[r].origin_host);
        kv_free(g->relays[r].origin_name);
        memset(&g->relays[r], 0, sizeof g->relays[r]);
    }
}

static void relay_end(gossip_t *g, relay_t *x, uint32_t type)
{
    send_seq(g, type, x->origin_seq, x->origin_host, x->origin_port,
             x->origin_name);
    kv_free(x->origin_host);
    kv_free(x->origin_name);
    memset(x, 0, sizeof *x);
}

static void dead_probe(gossip_t *g)
{
    if (!g->cnt[GOSSIP_DEAD]) return;
    for (uint32_t s = 1; s <= g->n; s++) {
        uint32_t i = (g->dead_cursor + s) % g->n;
        if (i == 0 || g->m[i]->liveness != GOSSIP_DEAD) continue;
        g->dead_cursor = i;
        const member_t *m = g->m[i];
        send_ping(g, m, g->seq++, m->host, m->port);
        return;
    }
}

void gossip_probe_tick(gossip_t *g, uint64_t now)
{
    for (uint32_t r = 0; r < GOSSIP_MAX_RELAYS; r++)
        if (g->relays[r].used && now >= g->relays[r].deadline)
            relay_end(g, &g->relays[r], GW_NACK);
    probe_t *p = &g->probe;
    if (p->active && !p->acked && !p->indirect_sent && now >= p->indirect_at)
        probe_indirect(g);
    if (now >= g->next_probe_at) {
        if (p->active) probe_finish(g, now);
        probe_start(g, now);
    }
    if (g->cfg.dead_probe_interval_ms && now >= g->next_dead_probe_at) {
        g->next_dead_probe_at = now + g->cfg.dead_probe_interval_ms;
        dead_probe(g);
    }
}

void gossip_probe_timers(const gossip_t *g, uint64_t *next)
{
    uint64_t t = *next;
    const probe_t *p = &g->probe;
    if (p->active && !p->acked && !p->indirect_sent) t = KV_MIN(t, p->indirect_at);
    if (g->cfg.dead_probe_interval_ms && g->cnt[GOSSIP_DEAD])
        t = KV_MIN(t, g->next_dead_probe_at);
    for (uint32_t r = 0; r < GOSSIP_MAX_RELAYS; r++)
        if (g->relays[r].used) t = KV_MIN(t, g->relays[r].deadline);
    *next = t;
}


static void on_ping_req(gossip_t *g, uint64_t now, const gw_msg_t *msg)
{
    const member_t *me = g->m[0];
    char *host = gossip_dup_slice(msg->h.host), *name = gossip_dup_slice(msg->h.name);
    if (gossip_slice_is(msg->target, me->name)) {
        /* Asked to reach ourselves: we are reached. */
        send_seq(g, GW_ACK, msg->seq, host, msg->h.port, name);
        goto out;
    }
    relay_t *x = NULL;
    for (uint32_t r = 0; r < GOSSIP_MAX_RELAYS && !x; r++)
        if (!g->relays[r].used) x = &g->relays[r];
    if (!x) goto out; /* busy: the origin counts a missing nack */
    x->used = true;
    x->seq = g->seq++;
    x->origin_seq = msg->seq;
    uint32_t wait = g->cfg.probe_timeout_ms * 4 / 5;
    x->deadline = now + (wait ? wait : 1);
    x->origin_host = host;
    x->origin_port = msg->h.port;
    x->origin_name = name;
    host = name = NULL;
    char *th = gossip_dup_slice(msg->target_host);
    const member_t *t = gossip_find(g, msg->target, NULL);
    if (t) {
        send_ping(g, t, x->seq, th, msg->target_port);
    } else {
        gw_msg_t ping;
        memset(&ping, 0, sizeof ping);
        ping.h.type = GW_PING;
        ping.seq = x->seq;
        ping.target = msg->target;
        char *tn = gossip_dup_slice(msg->target);
        gossip_send(g, &ping, th, msg->target_port, tn);
        kv_free(tn);
    }
    kv_free(th);
out:
    kv_free(host);
    kv_free(name);
}

void gossip_probe_on_msg(gossip_t *g, uint64_t now, const gw_msg_t *msg)
{
    const member_t *me = g->m[0];
    probe_t *p = &g->probe;
    switch (msg->h.type) {
    case GW_PING: {
        /* Addressed to another node (an address now used by someone
         * else): no ack, so its prober suspects the right one. */
        if (!gossip_slice_is(msg->target, me->name)) return;
        if (msg->has_notice)
            gossip_apply(g, now, msg->target, msg->notice_gen, msg->notice_inc,
                         msg->notice_kind == GW_UPD_DEAD ? GOSSIP_DEAD
                                                         : GOSSIP_SUSPECT,
                         NULL, msg->h.name, false);
        char *host = gossip_dup_slice(msg->h.host), *name = gossip_dup_slice(msg->h.name);
        send_seq(g, GW_ACK, msg->seq, host, msg->h.port, name);
        kv_free(host);
        kv_free(name);
        return;
    }
    case GW_ACK:
        if (p->active && !p->acked && msg->seq == p->seq) {
            p->acked = true;
            p->active = false;
            awareness_add(g, -1);
            return;
        }
        for (uint32_t r = 0; r < GOSSIP_MAX_RELAYS; r++)
            if (g->relays[r].used && g->relays[r].seq == msg->seq) {
                relay_end(g, &g->relays[r], GW_ACK);
                return;
            }
        return;
    case GW_NACK:
        if (p->active && msg->seq == p->seq) p->nacks++;
        return;
    case GW_PING_REQ:
        on_ping_req(g, now, msg);
        return;
    default:
        return;
    }
}

/* ---- suspicion ---------------------------------------------------------- */

void gossip_suspicion_start(gossip_t *g, uint64_t now, uint32_t i, kv_slice_t from)
{
    member_t *m = g->m[i];
    uint32_t n = gossip_count_live(g);
    double scale = n > 10 ? log10((double)n) : 1.0;
    m->susp_start = now;
    m->susp_min = (uint64_t)((double)g->cfg.suspicion_mult * scale *
                             (double)g->cfg.probe_interval_ms);
    m->susp_max = (uint64_t)g->cfg.suspicion_max_mult * m->susp_min;
    if (m->susp_max < m->susp_min) m->susp_max = m->susp_min;
    uint32_t k = g->cfg.suspicion_mult >= 2 ? g->cfg.suspicion_mult - 2 : 0;
    if (n < 2 || n - 2 < k) k = 0;
    m->susp_k = k;
    m->susp_n = 0;
    m->susp_first = gossip_hash(from.data, from.len);
    kv_free(m->susp_from);
    m->susp_from = k ? kv_calloc(k, sizeof *m->susp_from) : NULL;
}

bool gossip_suspicion_confirm(gossip_t *g, uint64_t now, uint32_t i,
                              kv_slice_t from)
{
    KV_UNUSED(now);
    member_t *m = g->m[i];
    if (m->liveness != GOSSIP_SUSPECT || m->susp_n >= m->susp_k) return false;
    uint64_t h = gossip_hash(from.data, from.len);
    if (h == m->susp_first) return false;
    for (uint32_t j = 0; j < m->susp_n; j++)
        if (m->susp_from[j] == h) return false;
    m->susp_from[m->susp_n++] = h;
    return true;
}

uint64_t gossip_suspicion_deadline(const gossip_t *g, const member_t *m)
{
    KV_UNUSED(g);
    uint64_t timeout = m->susp_min;
    if (m->susp_k > 0) {
        double frac = log((double)m->susp_n + 1.0) / log((double)m->susp_k + 1.0);
        double raw = (double)m->susp_max - frac * (double)(m->susp_max - m->susp_min);
        timeout = raw > (double)m->susp_min ? (uint64_t)floor(raw) : m->susp_min;
    }
    return m->susp_start + timeout;
}

void gossip_suspicion_tick(gossip_t *g, uint64_t now)
{
    if (!g->cnt[GOSSIP_SUSPECT]) return;
    for (uint32_t i = 1; i < g->n; i++) {
        member_t *m = g->m[i];
        if (m->liveness != GOSSIP_SUSPECT || now < gossip_suspicion_deadline(g, m))
            continue;
        g->st.deaths_declared++;
        gossip_apply(g, now, kv_slice_str(m->name), m->generation, m->incarnation,
                     GOSSIP_DEAD, NULL, kv_slice_str(g->m[0]->name), false);
    }
}
