/* gossip_pushpull.c -- full-state exchange over TCP: periodic anti-entropy
 * with one random member, seed contact while alone, discovery of senders
 * we lack the state of, and the refusals that keep clusters apart.
 *
 * DESIGN  A push-pull request carries [magic, version, REQUEST, cluster,
 *         replication_factor, self record, member records]; the responder
 *         checks it, merges it through gossip_apply and answers with the
 *         same body (REPLY) holding its own state, or with a REFUSE record
 *         [magic, version, REFUSE, status, message] whose layout never
 *         changes between versions. Placeholders (generation 0) are never
 *         sent: only what a member announced itself travels.
 *
 *         Refusals, checked in this order:
 *           malformed body, other protocol version       KV_PROTO
 *           other cluster name                           KV_DENIED
 *           other replication factor (both non-zero)     KV_INVALID
 *           the sender's name held here by another node id (not a
 *           placeholder), or this node's own name         KV_DENIED
 *         Both sides see a REFUSED event; the requester also keeps the
 *         reason for gossip_refusal and counts it.
 *
 *         Requests this node sent are remembered (id, address, target) in
 *         a small ring so replies can be matched and named; a reply to an
 *         id no longer there is ignored.
 *
 * THREADING  none inside.
 */
#include "gossip_int.h"

#include <inttypes.h>
#include <stdio.h>

bool gossip_alone(const gossip_t *g)
{
    for (uint32_t i = 1; i < g->n; i++)
        if (g->m[i]->liveness == GOSSIP_ALIVE && g->m[i]->heard) return false;
    return true;
}

static void pend_clear(pp_pending_t *p)
{
    kv_free(p->host);
    kv_free(p->target);
    memset(p, 0, sizeof *p);
}

void gossip_pushpull_free(gossip_t *g)
{
    for (uint32_t i = 0; i < GOSSIP_PP_PENDING; i++) pend_clear(&g->pend[i]);
}

static pp_pending_t *pend_find(gossip_t *g, uint64_t id)
{
    if (id == 0) return NULL;
    for (uint32_t i = 0; i < GOSSIP_PP_PENDING; i++)
        if (g->pend[i].id == id) return &g->pend[i];
    return NULL;
}

/* This node's full state as a REQUEST or REPLY body, appended to out. */
static void full_state(const gossip_t *g, uint32_t kind, kv_buf_t *out)
{
    gw_state_t self;
    gossip_state_of(g, g->m[0], &self);
    uint32_t nrec = 0;
    for (uint32_t i = 1; i < g->n; i++)
        if (g->m[i]->generation > 0) nrec++;
    msgpack_packer pk;
    gw_packer_init(&pk, out);
    gw_pack_pp_head(&pk, kind, kv_slice_str(g->cluster),
                    g->cfg.replication_factor, &self, nrec);
    for (uint32_t i = 1; i < g->n; i++) {
        if (g->m[i]->generation == 0) continue;
        gw_state_t st;
        gossip_state_of(g, g->m[i], &st);
        gw_pack_state(&pk, &st, true);
    }
}

void gossip_pushpull_start(gossip_t *g, uint64_t now, const char *host,
                           uint16_t port, const char *target)
{
    KV_UNUSED(now);
    uint64_t id = g->pp_next_id++;
    pp_pending_t *p = &g->pend[g->pend_pos];
    g->pend_pos = (g->pend_pos + 1) % GOSSIP_PP_PENDING;
    pend_clear(p);
    p->id = id;
    p->host = kv_strdup(host);
    p->port = port;
    p->target = target ? kv_strdup(target) : NULL;
    kv_buf_t b;
    kv_buf_init(&b);
    full_state(g, GW_PP_REQUEST, &b);
    gossip_act_pushpull(g, host, port, target, &b, id);
    kv_buf_deinit(&b);
}

void gossip_pushpull_seeds(gossip_t *g, uint64_t now)
{
    for (size_t i = 0; i < g->nseeds; i++)
        gossip_pushpull_start(g, now, g->seeds[i].host, g->seeds[i].port, NULL);
}

void gossip_pushpull_tick(gossip_t *g, uint64_t now)
{
    if (g->cfg.pushpull_interval_ms && now >= g->next_pushpull_at) {
        g->next_pushpull_at = now + g->cfg.pushpull_interval_ms;
        uint32_t cand = g->cnt[GOSSIP_ALIVE];
        if (cand) {
            /* the r-th ALIVE member */
            uint32_t r = (uint32_t)kv_rng_below(&g->rng, cand);
            for (uint32_t i = 1; i < g->n; i++) {
                const member_t *m = g->m[i];
                if (m->liveness != GOSSIP_ALIVE) continue;
                if (r-- == 0) {
                    gossip_pushpull_start(g, now, m->host, m->port, m->name);
                    break;
                }
            }
        }
    }
    if (g->nseeds && now >= g->next_seed_at) {
        g->next_seed_at = now + g->cfg.seed_interval_ms;
        if (gossip_alone(g)) gossip_pushpull_seeds(g, now);
    }
}

/* Merge a REQUEST or REPLY: the sender's own record, then its view. */
static void merge(gossip_t *g, uint64_t now, const gw_pp_t *p)
{
    const gw_state_t *s = &p->self;
    gossip_apply(g, now, s->name, s->generation, s->incarnation, GOSSIP_ALIVE, s,
                 s->name, true);
    uint32_t si;
    member_t *sm = gossip_find(g, s->name, &si);
    if (sm && !sm->self && gossip_slice_is(s->node_id, sm->node_id))
        gossip_heard_tcp(g, si, now);
    for (uint32_t i = 0; i < p->nrecords; i++) {
        gw_state_t st;
        if (gw_state_decode(&p->records[i], true, &st) != GW_OK) continue;
        if (kv_slice_eq(st.name, s->name)) continue; /* its own word wins */
        gossip_apply(g, now, st.name, st.generation, st.incarnation,
                     (gossip_liveness_t)st.liveness, &st, s->name, true);
    }
}

/* Why this node refuses a request (KV_OK: it does not). */
static kv_status_t refuse_reason(const gossip_t *g, gw_result_t r,
                                 const gw_pp_t *p, char *msg, size_t cap)
{
    if (r == GW_VERSION) {
        snprintf(msg, cap, "push-pull protocol version %u is not this node's %u",
                 p->version, (unsigned)GOSSIP_PROTO_VERSION);
        return KV_PROTO;
    }
    if (r != GW_OK || p->kind != GW_PP_REQUEST) {
        snprintf(msg, cap, "malformed push-pull request");
        return KV_PROTO;
    }
    if (!gossip_slice_is(p->cluster, g->cluster)) {
        char *c = gossip_dup_slice(p->cluster);
        snprintf(msg, cap, "cluster \"%s\" is not this node's cluster \"%s\"", c,
                 g->cluster);
        kv_free(c);
        return KV_DENIED;
    }
    if (p->rf && g->cfg.replication_factor && p->rf != g->cfg.replication_factor) {
        snprintf(msg, cap,
                 "replication factor %u differs from this cluster's %u", p->rf,
                 g->cfg.replication_factor);
        return KV_INVALID;
    }
    const member_t *m = gossip_find(g, p->self.name, NULL);
    if (m && (m->self || m->generation > 0) &&
        !gossip_slice_is(p->self.node_id, m->node_id)) {
        char a[300];
        snprintf(msg, cap, "node name %s is already used by node id %s at %s",
                 m->name, m->node_id, gossip_addr(m->host, m->port, a, sizeof a));
        return KV_DENIED;
    }
    return KV_OK;
}

kv_status_t gossip_on_pushpull(gossip_t *g, uint64_t now_ms, const uint8_t *req,
                               size_t len, kv_buf_t *reply)
{
    gossip_enter(g, now_ms);
    g->st.pushpull_received++;
    g->st.pushpull_bytes_received += len;
    gw_unpacked_t u;
    gw_unpacked_init(&u);
    gw_pp_t p;
    memset(&p, 0, sizeof p);
    gw_result_t r = gw_decode_pp(req, len, &u, &p);
    char msg[GW_MAX_MESSAGE];
    kv_status_t rc = refuse_reason(g, r, &p, msg, sizeof msg);
    size_t start = reply->len;
    if (rc != KV_OK) {
        gw_encode_refusal(reply, rc, msg);
        char *who = r == GW_OK && p.self.name.len ? gossip_dup_slice(p.self.name)
                                                  : kv_strdup("(unknown)");
        char a[300] = "";
        if (r == GW_OK && p.self.host.len) {
            char *h = gossip_dup_slice(p.self.host);
            gossip_addr(h, p.self.port, a, sizeof a);
            kv_free(h);
        }
        gossip_event(g, now_ms, GOSSIP_EV_REFUSED, who,
                     "refused a push-pull from node %s%s%s: %s", who,
                     a[0] ? " at " : "", a, msg);
        kv_free(who);
        kv_errmsg_set("%s", msg);
    } else {
        merge(g, now_ms, &p);
        full_state(g, GW_PP_REPLY, reply);
    }
    g->st.pushpull_bytes_sent += reply->len - start;
    gw_unpacked_release(&u);
    gossip_timers_update(g);
    return rc;
}

static kv_status_t refused(gossip_t *g, uint64_t now, const pp_pending_t *pend,
                           kv_status_t status, const char *why)
{
    char a[300], text[GW_MAX_MESSAGE + 400];
    gossip_addr(pend->host, pend->port, a, sizeof a);
    if (pend->target)
        snprintf(text, sizeof text, "node %s at %s refused the push-pull (%s): %s",
                 pend->target, a, kv_status_str(status), why);
    else
        snprintf(text, sizeof text, "seed %s refused the push-pull (%s): %s", a,
                 kv_status_str(status), why);
    kv_free(g->refusal);
    g->refusal = kv_strdup(text);
    g->st.pushpull_refused++;
    gossip_event(g, now, GOSSIP_EV_REFUSED, pend->target ? pend->target : a,
                 "%s", text);
    kv_errmsg_set("%s", text);
    return status;
}

kv_status_t gossip_on_pushpull_reply(gossip_t *g, uint64_t now_ms, uint64_t id,
                                     const uint8_t *data, size_t len)
{
    gossip_enter(g, now_ms);
    pp_pending_t *pend = pend_find(g, id);
    if (!pend) {
        gossip_timers_update(g);
        return KV_OK;
    }
    g->st.pushpull_bytes_received += len;
    gw_unpacked_t u;
    gw_unpacked_init(&u);
    gw_pp_t p;
    memset(&p, 0, sizeof p);
    gw_result_t r = gw_decode_pp(data, len, &u, &p);
    kv_status_t rc = KV_OK;
    char why[GW_MAX_MESSAGE + 64];
    if (r == GW_OK && p.kind == GW_PP_REFUSE) {
        char *m = gossip_dup_slice(p.message);
        snprintf(why, sizeof why, "%s", m);
        kv_free(m);
        rc = refused(g, now_ms, pend, (kv_status_t)p.status, why);
    } else if (r == GW_VERSION) {
        snprintf(why, sizeof why, "it answered with protocol version %u, this "
                 "node speaks %u", p.version, (unsigned)GOSSIP_PROTO_VERSION);
        rc = refused(g, now_ms, pend, KV_PROTO, why);
    } else if (r != GW_OK || p.kind != GW_PP_REPLY) {
        g->st.pushpull_failed++;
        kv_errmsg_set("gossip: malformed push-pull reply");
        rc = KV_PROTO;
    } else if (!gossip_slice_is(p.cluster, g->cluster)) {
        char *c = gossip_dup_slice(p.cluster);
        snprintf(why, sizeof why, "it is in cluster \"%s\", not \"%s\"", c,
                 g->cluster);
        kv_free(c);
        rc = refused(g, now_ms, pend, KV_DENIED, why);
    } else if (p.rf && g->cfg.replication_factor &&
               p.rf != g->cfg.replication_factor) {
        snprintf(why, sizeof why, "its replication factor %u differs from %u",
                 p.rf, g->cfg.replication_factor);
        rc = refused(g, now_ms, pend, KV_INVALID, why);
    } else {
        merge(g, now_ms, &p);
        kv_free(g->refusal);
        g->refusal = kv_strdup("");
    }
    pend_clear(pend);
    gw_unpacked_release(&u);
    gossip_timers_update(g);
    return rc;
}

void gossip_on_pushpull_failed(gossip_t *g, uint64_t now_ms, uint64_t id)
{
    gossip_enter(g, now_ms);
    pp_pending_t *pend = pend_find(g, id);
    if (pend) {
        g->st.pushpull_failed++;
        pend_clear(pend);
    }
    gossip_timers_update(g);
}
