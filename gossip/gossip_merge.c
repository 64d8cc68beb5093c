/* gossip_merge.c -- the rules for everything a node hears about a member:
 * record precedence, refutation, identity conflicts, placeholders,
 * restarts, and the liveness transitions they cause.
 *
 * DESIGN  Every piece of news -- a piggybacked update, a push-pull record,
 *         this node's own probe verdicts and suspicion timers -- goes
 *         through gossip_apply, which orders a member's records by
 *
 *             (generation, incarnation, rank)   rank: ALIVE < SUSPECT < DEAD
 *
 *         applies only what is newer, reports what changed (events, ring
 *         and liveness versions) and queues it for dissemination:
 *
 *                 probe fails / suspect heard      timer expires / dead heard
 *           ALIVE -------------------------> SUSPECT ----------------------> DEAD
 *             ^  <-------------------------------'                          |
 *             |        alive at a higher (generation, incarnation)          |
 *             `-------------------------------------------------------------'
 *
 *         Only the member itself raises its incarnation (apply_self: refute),
 *         so an ALIVE beats a SUSPECT or DEAD only with news from the
 *         member. News about a generation never announced here waits for
 *         that generation's alive; a placeholder (generation 0) loses to any
 *         real announcement; a known name with another node id is a conflict
 *         unless the record held is a placeholder. A DEAD in a push-pull is
 *         taken as a SUSPECT (the member gets its chance to refute), except
 *         for a member not known here at all.
 *
 * THREADING  none inside.
 */
#include "gossip_int.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>

static int rec_cmp(uint64_t g1, uint64_t i1, gossip_liveness_t l1, uint64_t g2,
                   uint64_t i2, gossip_liveness_t l2)
{
    if (g1 != g2) return g1 < g2 ? -1 : 1;
    if (i1 != i2) return i1 < i2 ? -1 : 1;
    if (l1 != l2) return l1 < l2 ? -1 : 1;
    return 0;
}

void gossip_conflict(gossip_t *g, uint64_t now, member_t *m, kv_slice_t node_id,
                     kv_slice_t host, uint16_t port)
{
    g->st.dropped_conflict++;
    uint64_t h = gossip_hash(node_id.data, node_id.len);
    if (m->conflict_seen == h) return; /* reported already */
    m->conflict_seen = h;
    char *id = gossip_dup_slice(node_id), *hs = gossip_dup_slice(host), a[300], b[300];
    if (m->self)
        gossip_event(g, now, GOSSIP_EV_CONFLICT, m->name,
                     "node name %s (this node, node id %s) is also announced by "
                     "node id %s at %s; ignored",
                     m->name, m->node_id, id, gossip_addr(hs, port, a, sizeof a));
    else
        gossip_event(g, now, GOSSIP_EV_CONFLICT, m->name,
                     "node name %s is used by node id %s at %s, but node id %s "
                     "at %s announces it; ignored",
                     m->name, m->node_id,
                     gossip_addr(m->host, m->port, b, sizeof b), id,
                     gossip_addr(hs, port, a, sizeof a));
    kv_free(id);
    kv_free(hs);
}

void gossip_announce_self(gossip_t *g, uint64_t now)
{
    member_t *me = g->m[0];
    me->load_bytes = g->load_now;
    g->load_announced_at = now;
    gossip_queue_alive(g, 0);
}

/* News about this node. */
static void apply_self(gossip_t *g, uint64_t now, uint64_t gen, uint64_t inc,
                       gossip_liveness_t live, const gw_state_t *st)
{
    member_t *me = g->m[0];
    if (st && !gossip_slice_is(st->node_id, me->node_id)) {
        gossip_conflict(g, now, me, st->node_id, st->host, st->port);
        return;
    }
    if (gen != me->generation) {
        /* Someone holds an older generation of this node as suspect or
         * dead: make sure this one's alive is on its way. A newer
         * generation under our name and id is not ours to answer. */
        if (gen < me->generation && live != GOSSIP_ALIVE)
            gossip_queue_alive(g, 0);
        return;
    }
    if (live == GOSSIP_ALIVE) {
        /* Our own alive echoing back is normal; one above our incarnation
         * can only come from an earlier run with the same generation. */
        if (inc > me->incarnation) {
            me->incarnation = inc + 1;
            gossip_announce_self(g, now);
        }
        return;
    }
    if (inc < me->incarnation) {
        gossip_queue_alive(g, 0); /* stale rumour: repeat who we are */
        return;
    }
    me->incarnation = inc + 1;
    gossip_announce_self(g, now);
    g->st.suspicions_refuted++;
    if (g->awareness + 1 < g->cfg.awareness_max) g->awareness++;
    gossip_event(g, now, GOSSIP_EV_REFUTED, me->name,
                 "this node was reported %s at incarnation %" PRIu64
                 "; refuted with incarnation %" PRIu64,
                 gossip_liveness_str(live), inc, me->incarnation);
}

static void queue_news(gossip_t *g, uint32_t i, gossip_liveness_t live,
                       kv_slice_t from)
{
    if (live == GOSSIP_ALIVE) {
        gossip_queue_alive(g, i);
    } else {
        char *f = gossip_dup_slice(from);
        gossip_queue_suspect_dead(g, i,
                                  live == GOSSIP_DEAD ? GW_UPD_DEAD : GW_UPD_SUSPECT,
                                  f);
        kv_free(f);
    }
}

static void member_new(gossip_t *g, uint64_t now, const gw_state_t *st,
                       gossip_liveness_t live, kv_slice_t from)
{
    uint32_t i = gossip_member_add(g, st->name, false);
    member_t *m = g->m[i];
    gossip_member_set_state(m, st);
    gossip_set_liveness(g, m, live);
    m->up = live != GOSSIP_DEAD;
    g->ring_version++;
    g->liveness_version++;
    char a[300];
    gossip_event(g, now, GOSSIP_EV_JOINED, m->name,
                 "node %s joined: node id %s at %s, rack \"%s\", %s, %u tokens, "
                 "generation %" PRIu64 " (%s)",
                 m->name, m->node_id, gossip_addr(m->host, m->port, a, sizeof a),
                 m->rack, gossip_status_str(m->status), m->ntokens,
                 m->generation, gossip_liveness_str(live));
    if (live == GOSSIP_SUSPECT) gossip_suspicion_start(g, now, i, from);
    queue_news(g, i, live, from);
}

/* Ask a sender whose state we lack (unknown, a placeholder, a newer
 * generation than we hold) for it by push-pull, at most once per
 * seed_interval per name. */
void gossip_discover(gossip_t *g, uint64_t now, kv_slice_t name_s,
                     kv_slice_t host_s, uint16_t port)
{
    uint64_t hash = gossip_hash(name_s.data, name_s.len);
    discovery_t *slot = &g->disc[0];
    for (uint32_t i = 0; i < GOSSIP_DISCOVERY_SLOTS; i++) {
        discovery_t *d = &g->disc[i];
        if (d->name_hash == hash) {
            if (now < d->at + g->cfg.seed_interval_ms) return;
            slot = d;
            break;
        }
        if (d->at < slot->at) slot = d;
    }
    slot->name_hash = hash;
    slot->at = now;
    char *host = gossip_dup_slice(host_s), *name = gossip_dup_slice(name_s);
    gossip_pushpull_start(g, now, host, port, name);
    kv_free(host);
    kv_free(name);
}

void gossip_apply(gossip_t *g, uint64_t now, kv_slice_t name, uint64_t gen,
                  uint64_t inc, gossip_liveness_t live, const gw_state_t *st,
                  kv_slice_t from, bool from_pushpull)
{
    uint32_t i;
    member_t *m = gossip_find(g, name, &i);
    if (m && m->self) {
        apply_self(g, now, gen, inc, live, st);
        return;
    }
    if (!m && !(st && st->compact)) {
        /* A suspect/dead about a member never announced here says nothing
         * we could act on (no address, no tokens). */
        if (st) member_new(g, now, st, live, from);
        return;
    }
    gw_state_t full;
    if (st && st->compact) {
        /* Tokens left out: usable only if they are the ones held here. */
        if (!m || gw_tokens_digest(m->tokens, m->ntokens) != st->tokens_digest) {
            gossip_discover(g, now, name, st->host, st->port);
            return;
        }
        full = *st;
        full.compact = false;
        full.tokens = m->tokens;
        full.tokens_be = NULL;
        full.ntokens = m->ntokens;
        st = &full;
    }
    bool placeholder = m->generation == 0;
    if (st && !placeholder && m->node_id[0] && !gossip_slice_is(st->node_id, m->node_id)) {
        gossip_conflict(g, now, m, st->node_id, st->host, st->port);
        return;
    }
    /* Another node's verdict of DEAD in a push-pull is taken as a
     * suspicion here: the member gets its chance to refute (memberlist). */
    if (from_pushpull && live == GOSSIP_DEAD) live = GOSSIP_SUSPECT;
    /* A suspect/dead about a generation never announced here: wait for
     * that generation's alive, which carries its state. */
    if (!st && gen > m->generation) return;

    int c = rec_cmp(gen, inc, live, m->generation, m->incarnation, m->liveness);
    if (c < 0) return;
    if (c == 0) {
        if (live == GOSSIP_SUSPECT && gossip_suspicion_confirm(g, now, i, from))
            queue_news(g, i, live, from);
        return;
    }

    gossip_liveness_t old = m->liveness;
    bool newer_pair = gen > m->generation ||
                      (gen == m->generation && inc > m->incarnation);
    bool restarted = !placeholder && gen > m->generation;
    bool ring = false;
    if (st && newer_pair) {
        ring = gossip_member_set_state(m, st);
    } else {
        m->generation = gen;
        m->incarnation = inc;
    }
    char a[300];
    if (placeholder && m->generation > 0) {
        ring = true;
        gossip_event(g, now, GOSSIP_EV_JOINED, m->name,
                     "node %s joined: node id %s at %s, rack \"%s\", %s, %u "
                     "tokens, generation %" PRIu64,
                     m->name, m->node_id,
                     gossip_addr(m->host, m->port, a, sizeof a), m->rack,
                     gossip_status_str(m->status), m->ntokens, m->generation);
    } else if (restarted) {
        gossip_phi_reset(m->phi);
        m->down_at = HUGE_VAL;
        g->ring_version++;
        gossip_event(g, now, GOSSIP_EV_RESTARTED, m->name,
                     "node %s restarted (generation %" PRIu64 ")", m->name,
                     m->generation);
    }
    if (ring) {
        g->ring_version++;
        if (!placeholder)
            gossip_event(g, now, GOSSIP_EV_UPDATED, m->name,
                         "node %s now announces %s, rack \"%s\", %s, %u tokens "
                         "(incarnation %" PRIu64 ")",
                         m->name, gossip_addr(m->host, m->port, a, sizeof a),
                         m->rack, gossip_status_str(m->status), m->ntokens,
                         m->incarnation);
    }

    if (live == GOSSIP_SUSPECT && old == GOSSIP_SUSPECT && !restarted) {
        /* Still the same suspicion, now at a higher incarnation: keep its
         * timer, count the reporter. */
        gossip_suspicion_confirm(g, now, i, from);
    } else {
        if (old == GOSSIP_SUSPECT && live == GOSSIP_SUSPECT)
            gossip_set_liveness(g, m, GOSSIP_ALIVE); /* restart: a new suspicion */
        gossip_set_liveness(g, m, live);
        if (live == GOSSIP_SUSPECT) gossip_suspicion_start(g, now, i, from);
    }
    /* Back from the dead: into what is left of this probe pass (the pass
     * was built without it). */
    if (old == GOSSIP_DEAD && live != GOSSIP_DEAD) gossip_probe_added(g, i);
    if (live != old) {
        char *f = gossip_dup_slice(from);
        switch (live) {
        case GOSSIP_ALIVE:
            gossip_event(g, now, GOSSIP_EV_ALIVE, m->name,
                         "node %s is alive again (incarnation %" PRIu64 ")",
                         m->name, m->incarnation);
            break;
        case GOSSIP_SUSPECT:
            gossip_event(g, now, GOSSIP_EV_SUSPECT, m->name,
                         "node %s is suspect (reported by %s, incarnation %" PRIu64
                         ")",
                         m->name, f, m->incarnation);
            break;
        case GOSSIP_DEAD:
            gossip_event(g, now, GOSSIP_EV_DEAD, m->name,
                         "node %s is dead (reported by %s, incarnation %" PRIu64 ")",
                         m->name, f, m->incarnation);
            break;
        }
        kv_free(f);
    }
    queue_news(g, i, live, from);
    gossip_check_up(g, i, now);
}

/* This node's own verdict after a failed probe: counted when it took
 * effect (a new suspicion, or a confirmation of someone else's). */
void gossip_suspect_raise(gossip_t *g, uint64_t now, uint32_t i, uint64_t gen,
                          uint64_t inc)
{
    member_t *me = g->m[0], *m = g->m[i];
    gossip_liveness_t was = m->liveness;
    uint32_t confirmations = m->susp_n;
    gossip_apply(g, now, kv_slice_str(m->name), gen, inc, GOSSIP_SUSPECT, NULL,
                 kv_slice_str(me->name), false);
    if ((was != GOSSIP_SUSPECT && m->liveness == GOSSIP_SUSPECT) ||
        (was == GOSSIP_SUSPECT && m->susp_n > confirmations))
        g->st.suspicions_raised++;
}
