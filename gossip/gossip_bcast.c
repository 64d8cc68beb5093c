/* gossip_bcast.c -- dissemination: the broadcast queue, datagram assembly
 * with piggybacked updates, and the periodic gossip round.
 *
 * DESIGN  The queue holds at most one update per member (keyed by the
 *         member's index): news about a member replaces whatever was queued
 *         about it, since only the newest record matters. Each entry sits
 *         in the bucket of its transmit count, newest first, so assembling
 *         a datagram walks buckets 0, 1, 2 ... and takes every update that
 *         still fits the GOSSIP_MAX_UDP budget -- fewest-sent first -- then
 *         moves each taken one to the next bucket, or drops it once sent
 *         retransmit_mult * ceil(log10(N + 1)) times.
 *
 *         An alive that could not fit even an otherwise empty gossip
 *         datagram (a member with hundreds of tokens) is queued compact:
 *         the tokens are replaced by their digest. Receivers that hold
 *         the same tokens apply it (so such a member can still refute a
 *         suspicion in time); others fetch the full state by push-pull
 *         (gossip_apply). The tokens themselves travel by push-pull only.
 *
 *         Every gossip_interval a gossip datagram goes to gossip_fanout
 *         members that are not DEAD, with updates or without: the empty
 *         ones are the heartbeats phi feeds on. Targets are taken in turn
 *         from a list reshuffled on every pass rather than drawn
 *         independently, so each member hears from this node at a steady
 *         rate (gaps of one pass, at most two) instead of at exponentially
 *         distributed gaps whose tail phi would read as a failure.
 *
 * THREADING  none inside.
 */
#include "gossip_int.h"

#include <math.h>

#define MAX_PIGGYBACK 256u /* updates in one datagram (each takes >= 6 bytes) */
#define MIN_UPDATE 8u       /* below this budget nothing else fits */

void gossip_bq_init(bq_t *q)
{
    memset(q, 0, sizeof *q);
    q->free_head = -1;
}

void gossip_bq_deinit(bq_t *q)
{
    for (uint32_t i = 0; i < q->n; i++) kv_buf_deinit(&q->ents[i].bytes);
    kv_free(q->ents);
    kv_free(q->head);
    gossip_bq_init(q);
}

static void bucket_unlink(bq_t *q, int32_t e)
{
    bq_ent_t *x = &q->ents[e];
    if (x->prev >= 0) q->ents[x->prev].next = x->next;
    else q->head[x->transmits] = x->next;
    if (x->next >= 0) q->ents[x->next].prev = x->prev;
    x->prev = x->next = -1;
}

static void bucket_push(bq_t *q, int32_t e, uint32_t t)
{
    if (t >= q->nbuckets) {
        uint32_t nb = KV_MAX(t + 1, q->nbuckets * 2);
        q->head = kv_realloc(q->head, nb * sizeof *q->head);
        for (uint32_t b = q->nbuckets; b < nb; b++) q->head[b] = -1;
        q->nbuckets = nb;
    }
    bq_ent_t *x = &q->ents[e];
    x->transmits = t;
    x->prev = -1;
    x->next = q->head[t];
    if (x->next >= 0) q->ents[x->next].prev = e;
    q->head[t] = e;
}

static void ent_free(gossip_t *g, int32_t e)
{
    bq_t *q = &g->bq;
    bq_ent_t *x = &q->ents[e];
    bucket_unlink(q, e);
    g->m[x->member]->bq = -1;
    kv_buf_deinit(&x->bytes);
    x->next = q->free_head;
    q->free_head = e;
    q->live--;
}

void gossip_bq_drop(gossip_t *g, uint32_t i)
{
    if (g->m[i]->bq >= 0) ent_free(g, g->m[i]->bq);
}

uint32_t gossip_retransmit_limit(const gossip_t *g)
{
    double s = ceil(log10((double)g->n + 1.0));
    return g->cfg.retransmit_mult * (uint32_t)(s < 1 ? 1 : s);
}

/* Bytes an empty gossip datagram from this node takes. */
static size_t bare_len(const gossip_t *g)
{
    const member_t *me = g->m[0];
    size_t n = 1 + 5 + 1 + 1 + 9 + 3 + GW_UPDATES_HDR; /* array, ints */
    n += 5 + strlen(g->cluster) + 5 + strlen(me->name);
    n += 5 + strlen(me->node_id) + 5 + strlen(me->host);
    return n;
}

void gossip_bq_put(gossip_t *g, uint32_t i, const kv_buf_t *upd)
{
    bq_t *q = &g->bq;
    member_t *m = g->m[i];
    if (upd->len + bare_len(g) > GOSSIP_MAX_UDP) {
        gossip_bq_drop(g, i); /* superseded, and too big to gossip */
        return;
    }
    int32_t e = m->bq;
    if (e >= 0) {
        bucket_unlink(q, e);
        kv_buf_clear(&q->ents[e].bytes);
    } else {
        if (q->free_head >= 0) {
            e = q->free_head;
            q->free_head = q->ents[e].next;
        } else {
            if (q->n == q->cap) {
                q->cap = q->cap ? q->cap * 2 : 16;
                q->ents = kv_realloc(q->ents, q->cap * sizeof *q->ents);
            }
            e = (int32_t)q->n++;
        }
        memset(&q->ents[e], 0, sizeof q->ents[e]);
        q->ents[e].member = i;
        q->live++;
        m->bq = e;
    }
    kv_buf_append(&q->ents[e].bytes, upd->data, upd->len);
    bucket_push(q, e, 0);
}

void gossip_queue_alive(gossip_t *g, uint32_t i)
{
    gw_state_t st;
    gossip_state_of(g, g->m[i], &st);
    kv_buf_t b;
    kv_buf_init(&b);
    gw_encode_alive(&b, &st);
    if (b.len + bare_len(g) > GOSSIP_MAX_UDP) {
        /* too many tokens to gossip: liveness by a compact alive, the
         * tokens by push-pull */
        kv_buf_clear(&b);
        gw_encode_alive_compact(&b, &st);
    }
    gossip_bq_put(g, i, &b);
    kv_buf_deinit(&b);
}

void gossip_queue_suspect_dead(gossip_t *g, uint32_t i, uint32_t kind,
                               const char *from)
{
    const member_t *m = g->m[i];
    kv_buf_t b;
    kv_buf_init(&b);
    gw_encode_suspect_dead(&b, kind, kv_slice_str(m->name), m->generation,
                           m->incarnation, kv_slice_str(from));
    gossip_bq_put(g, i, &b);
    kv_buf_deinit(&b);
}

void gossip_send(gossip_t *g, gw_msg_t *msg, const char *host, uint16_t port,
                 const char *target)
{
    const member_t *me = g->m[0];
    bq_t *q = &g->bq;
    msg->h.cluster = kv_slice_str(g->cluster);
    msg->h.name = kv_slice_str(me->name);
    msg->h.node_id = kv_slice_str(me->node_id);
    msg->h.generation = me->generation;
    msg->h.host = kv_slice_str(me->host);
    msg->h.port = me->port;

    kv_buf_t *b = &g->scratch;
    kv_buf_clear(b);
    msgpack_packer pk;
    gw_packer_init(&pk, b);
    gw_pack_msg_head(&pk, msg);
    /* Names are limited so the bare message always fits (checked by
     * test_gossip's largest-message test). */
    kv_assert(b->len + GW_UPDATES_HDR <= GOSSIP_MAX_UDP);
    size_t budget = GOSSIP_MAX_UDP - b->len - GW_UPDATES_HDR;

    int32_t sel[MAX_PIGGYBACK];
    uint32_t k = 0;
    for (uint32_t t = 0; t < q->nbuckets && budget >= MIN_UPDATE; t++)
        for (int32_t e = q->head[t]; e >= 0 && budget >= MIN_UPDATE; e = q->ents[e].next) {
            if (k == MAX_PIGGYBACK) break;
            size_t len = q->ents[e].bytes.len;
            if (len > budget) continue;
            sel[k++] = e;
            budget -= len;
        }
    gw_pack_updates_hdr(&pk, k);
    for (uint32_t j = 0; j < k; j++)
        kv_buf_append(b, q->ents[sel[j]].bytes.data, q->ents[sel[j]].bytes.len);
    uint32_t limit = gossip_retransmit_limit(g);
    for (uint32_t j = 0; j < k; j++) {
        uint32_t t = q->ents[sel[j]].transmits + 1;
        if (t >= limit) {
            ent_free(g, sel[j]);
        } else {
            bucket_unlink(q, sel[j]);
            bucket_push(q, sel[j], t);
        }
    }
    gossip_act_udp(g, host, port, target, b);
}

void gossip_gossip_round(gossip_t *g, uint64_t now)
{
    KV_UNUSED(now);
    uint32_t want = g->cfg.gossip_fanout, have = 0;
    uint32_t cand = g->n - 1 - g->cnt[GOSSIP_DEAD];
    if (want > cand) want = cand;
    uint32_t picked[64];
    if (want > KV_ARRAY_LEN(picked)) want = KV_ARRAY_LEN(picked);
    /* Round-robin over a shuffled list: every live member hears from this
     * node once per pass of (N - 1) / fanout rounds, so the gaps phi sees
     * stay near that; independent random picks would leave long tails. */
    for (uint32_t tries = 0; have < want && tries < 2 * want + 2; tries++) {
        int64_t i = gossip_rr_next(g, &g->gossip_rr);
        if (i < 0) break;
        bool dup = false;
        for (uint32_t j = 0; j < have; j++) dup |= picked[j] == (uint32_t)i;
        if (!dup) picked[have++] = (uint32_t)i;
    }
    for (uint32_t j = 0; j < have; j++) {
        const member_t *m = g->m[picked[j]];
        gw_msg_t msg;
        memset(&msg, 0, sizeof msg);
        msg.h.type = GW_GOSSIP;
        gossip_send(g, &msg, m->host, m->port, m->name);
    }
}

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            kv_errmsg_set(__VA_ARGS__);                                        \
            return KV_CORRUPT;                                                 \
        }                                                                      \
    } while (0)

kv_status_t gossip_bq_validate(const gossip_t *g)
{
    const bq_t *q = &g->bq;
    uint32_t in_buckets = 0, limit = gossip_retransmit_limit(g);
    for (uint32_t t = 0; t < q->nbuckets; t++) {
        int32_t prev = -1;
        for (int32_t e = q->head[t]; e >= 0; e = q->ents[e].next) {
            const bq_ent_t *x = &q->ents[e];
            CHECK((uint32_t)e < q->n, "queue entry %d out of range", e);
            CHECK(x->transmits == t && x->prev == prev,
                  "queue entry %d: %u transmits in bucket %u", e, x->transmits, t);
            CHECK(t < limit, "queue entry %d sent %u times (limit %u)", e, t, limit);
            CHECK(x->member < g->n && g->m[x->member]->bq == e,
                  "queue entry %d is not its member's", e);
            CHECK(x->bytes.len > 0 && x->bytes.len < GOSSIP_MAX_UDP,
                  "queue entry %d holds %zu bytes", e, x->bytes.len);
            CHECK(++in_buckets <= q->live, "queue holds more than %u", q->live);
            prev = e;
        }
    }
    CHECK(in_buckets == q->live, "queue: %u in buckets, %u live", in_buckets,
          q->live);
    uint32_t referenced = 0;
    for (uint32_t i = 0; i < g->n; i++)
        if (g->m[i]->bq >= 0) referenced++;
    CHECK(referenced == q->live, "queue: %u members point in, %u live",
          referenced, q->live);
    return KV_OK;
}
