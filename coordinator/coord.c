/* coord.c -- client-request state machines: consistency levels, superseded
 * re-stamps, hints, read resolution, blocking and background read repair,
 * deadlines. No I/O.
 *
 * DESIGN  Each request is a req_t, found by its sequence number in a
 * chained hash table and ordered by deadline in a binary min-heap. Every
 * message a request sends carries msg_id = seq << 12 | attempt << 6 | slot:
 * `slot` is the replica's position in the request's replica list and
 * `attempt` names the round the message belongs to (write: the stamp number,
 * 0..COORD_MAX_WRITE_ATTEMPTS-1; read and background check: 0 = query,
 * 1 = repair). A reply whose attempt is not the request's current one is
 * stale and dropped, so re-stamping never has to chase earlier messages.
 * Per slot and round the request keeps IDLE / PENDING / DONE / FAILED;
 * duplicates find the slot no longer PENDING and are dropped.
 *
 * The coordinator never waits on anything: the caller drives it with
 * (now, input) and drains the action list. Keys and values are copied into
 * the request and again into every action, so callers' buffers need only
 * live for the call and actions outlive the request that made them.
 *
 * WRITE
 *
 *   coord_write --(live < CL)--> REPLY UNAVAILABLE          (no state kept)
 *        |      --(causality too far ahead)--> REPLY CLOCK_SKEW
 *        v
 *   +-> SENDING(attempt k): MUTATION to every live replica, HINT per down one
 *   |      | CL acks                  | SUPERSEDED(ts)        | deadline, or
 *   |      v                          |                       | CL unreachable
 *   |   REPLY OK ----> DRAINING       |                       v
 *   |                    |            |              REPLY TIMEOUT(acks)
 *   +--- re-stamp past ts <-----------+ (k+1 < MAX;          |
 *        (write_restamp)                else TIMEOUT)         v
 *                        all answered or deadline -----> freed
 *
 * HINTS  A write hints (HINT: the replica, the current cell) every replica
 * that may have missed its current stamp: one down at dispatch
 * (write_send_round), one that answers with an error -- the glue turns a
 * failed send into one -- (write_on_reply), and one still PENDING when the
 * deadline frees the write, replied or not (write_expire). A stale attempt
 * is never hinted: its slots were reset and the new stamp re-sent to all.
 * `hinted` marks the slots hinted this attempt, so no (request, replica,
 * attempt) is hinted twice. A write that gave up because its stamp was
 * superseded (TIMEOUT after MAX attempts, or CLOCK_SKEW) is `beaten`: a
 * replica holds something newer, so it hints nothing more.
 *
 * READ
 *
 *   coord_read --(live < CL)--> REPLY UNAVAILABLE
 *        v
 *   QUERY: READ to the first CL live replicas (read_start; `queried`)
 *        | all answered: resolve by eng_cell_lww_cmp (read_resolve)
 *        +--(every answer equals the winner)--> REPLY OK / NOTFOUND --> freed
 *        v
 *   REPAIR: MUTATION(winner) to each replica that answered older or nothing
 *        | all acked (OK or SUPERSEDED: it holds >= winner)
 *        v
 *   REPLY OK / NOTFOUND --> background check (by chance) ; read freed
 *   (deadline in QUERY or REPAIR -> REPLY TIMEOUT(answers) -> freed;
 *    a replica error -> TIMEOUT at once: no speculative retry yet)
 *
 * BACKGROUND CHECK  A follow-on request of its own kind (REQ_BG) with its own
 * seq, so its messages can never be taken for the read's. bg_start makes
 * one, after the read's REPLY is already appended, when the dice roll
 * (read_repair_ppm[cl]) hits, the read has an alive replica it did not
 * query, and fewer than bg_repair_max_inflight checks are in flight. It
 * carries the read's winner (or none) and never replies.
 *
 *   BG_QUERY: READ to each alive unqueried replica
 *        | all answered (an error counts as unknown)
 *        v   winner = newest of the read's winner and the answers
 *   BG_REPAIR: MUTATION(winner) to each extra replica that answered older
 *        |     or nothing, and to every queried one if the winner is newer
 *        |     than the read's (none to send -> freed)
 *        v
 *   all answered, or the deadline (now + the read's timeout at start) -> freed
 *
 * INVARIANTS
 *   (1) every request accepted by coord_write/coord_read gets exactly one
 *       REPLY; a request whose state is held has not replied unless it is
 *       DRAINING, and a DRAINING request has answers outstanding and an
 *       unexpired deadline (req_maybe_free frees it otherwise). Background
 *       checks are not client requests and never reply.
 *   (2) outstanding == number of PENDING slots; PENDING slots are alive.
 *   (3) a write's acks count DONE slots of the current attempt only, and OK
 *       is replied only once acks >= need; its stamp strictly grows with
 *       each attempt (hlc_update past the superseding stamp).
 *   (4) every held request is in the hash and the heap exactly once, with
 *       heap_idx its position; the heap is ordered by (deadline, seq).
 *   (5) a read replies only after every replica of its read set holds a cell
 *       >= the winner (blocking repair), which makes QUORUM reads monotonic.
 *   (6) a write's down replicas are IDLE and hinted in every attempt, its
 *       live ones were sent the attempt's stamp; a hinted slot is down or
 *       FAILED (never PENDING or DONE), so at most one hint per (request,
 *       replica, attempt); a read's slots are never hinted.
 *   (7) a background check exists only after its read replied; it has
 *       answers outstanding (it is freed when they are in); its query went
 *       to exactly the alive replicas the read did not query; the checks
 *       held number bg_inflight <= bg_repair_max_inflight.
 *
 * THREADING  loop thread only.
 */
#define KV_LOG_MODULE "coord"
#include "coord.h"

#include "coord_int.h"

/* ---- small helpers ----------------------------------------------------- */

static kv_slice_t buf_part(const kv_buf_t *b, size_t off, size_t len)
{
    if (len == 0) return kv_slice(NULL, 0);
    return kv_slice(b->data + off, len);
}

static void buf_set(kv_buf_t *b, kv_slice_t s)
{
    kv_buf_clear(b);
    kv_buf_append(b, s.data, s.len);
}

uint32_t coord_cl_required(coord_cl_t cl, uint32_t rf)
{
    switch (cl) {
    case COORD_CL_ONE: return rf ? 1 : 0;
    case COORD_CL_QUORUM: return rf ? rf / 2 + 1 : 0;
    case COORD_CL_ALL: return rf;
    }
    return 0;
}


static uint64_t msg_id_make(const req_t *r, uint32_t slot)
{
    return (r->seq << MSG_SEQ_SHIFT) | ((uint64_t)r->attempt << MSG_SLOT_BITS) |
           slot;
}

/* ---- actions ----------------------------------------------------------- */

/* Append an action whose key and value bytes are copied into its own
 * buffer; the caller fills the kind-specific fields. `value` lands in
 * cell.value (MUTATION, HINT) or value (REPLY). */
static coord_action_t *act_push(coord_t *c, coord_action_kind_t kind,
                                uint64_t client_req_id, kv_slice_t key,
                                kv_slice_t value)
{
    if (c->nacts == c->acts_cap) {
        size_t cap = c->acts_cap ? c->acts_cap * 2 : 16;
        c->acts = kv_realloc(c->acts, cap * sizeof *c->acts);
        c->act_bufs = kv_realloc(c->act_bufs, cap * sizeof *c->act_bufs);
        c->acts_cap = cap;
    }
    kv_buf_t b;
    kv_buf_init(&b);
    kv_buf_reserve(&b, key.len + value.len);
    kv_buf_append(&b, key.data, key.len);
    kv_buf_append(&b, value.data, value.len);
    coord_action_t *a = &c->acts[c->nacts];
    memset(a, 0, sizeof *a);
    a->kind = kind;
    a->client_req_id = client_req_id;
    a->key = buf_part(&b, 0, key.len);
    kv_slice_t v = buf_part(&b, key.len, value.len);
    if (kind == COORD_ACT_REPLY) a->value = v;
    else a->cell.value = v;
    c->act_bufs[c->nacts++] = b;
    return a;
}

const coord_action_t *coord_actions(const coord_t *c, size_t *n)
{
    *n = c->nacts;
    return c->acts;
}

void coord_actions_clear(coord_t *c)
{
    for (size_t i = 0; i < c->nacts; i++) kv_buf_deinit(&c->act_bufs[i]);
    c->nacts = 0;
}

static void reply_push(coord_t *c, uint64_t client_req_id, kv_slice_t key,
                       kv_status_t status, hlc_ts_t ts, kv_slice_t value,
                       uint64_t expire_ms, uint32_t acks)
{
    coord_action_t *a = act_push(c, COORD_ACT_REPLY, client_req_id, key, value);
    a->status = status;
    a->cell_ts = ts;
    a->expire_ms = expire_ms;
    a->acks = acks;
    switch (status) {
    case KV_UNAVAILABLE: c->st.unavailable++; break;
    case KV_TIMEOUT: c->st.timeouts++; break;
    case KV_CLOCK_SKEW: c->st.clock_skew++; break;
    default: break;
    }
}

/* ---- the deadline heap ------------------------------------------------- */

bool coord_heap_less(const req_t *a, const req_t *b)
{
    return a->deadline != b->deadline ? a->deadline < b->deadline
                                      : a->seq < b->seq;
}

static void heap_set(coord_t *c, size_t i, req_t *r)
{
    c->heap[i] = r;
    r->heap_idx = i;
}

static void heap_sift_up(coord_t *c, size_t i)
{
    req_t *r = c->heap[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!coord_heap_less(r, c->heap[p])) break;
        heap_set(c, i, c->heap[p]);
        i = p;
    }
    heap_set(c, i, r);
}

static void heap_sift_down(coord_t *c, size_t i)
{
    req_t *r = c->heap[i];
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        const req_t *best = r;
        if (l < c->count && coord_heap_less(c->heap[l], best)) m = l, best = c->heap[l];
        if (l + 1 < c->count && coord_heap_less(c->heap[l + 1], best)) m = l + 1;
        if (m == i) break;
        heap_set(c, i, c->heap[m]);
        i = m;
    }
    heap_set(c, i, r);
}

/* The heap holds c->count entries; callers adjust count around these. */
static void heap_insert(coord_t *c, req_t *r)
{
    if (c->count == c->heap_cap) {
        c->heap_cap = c->heap_cap ? c->heap_cap * 2 : 16;
        c->heap = kv_realloc(c->heap, c->heap_cap * sizeof *c->heap);
    }
    heap_set(c, c->count, r);
    c->count++;
    heap_sift_up(c, r->heap_idx);
}

static void heap_remove(coord_t *c, req_t *r)
{
    size_t i = r->heap_idx;
    kv_assert(i < c->count && c->heap[i] == r);
    c->count--;
    if (i == c->count) return;
    req_t *moved = c->heap[c->count];
    heap_set(c, i, moved);
    heap_sift_down(c, i);
    heap_sift_up(c, moved->heap_idx);
}

/* ---- the request table ------------------------------------------------- */

size_t coord_bucket_of(const coord_t *c, uint64_t seq)
{
    return (size_t)((seq * UINT64_C(0x9E3779B97F4A7C15)) >> 17) &
           (c->nbuckets - 1);
}

static void table_grow(coord_t *c)
{
    size_t nb = c->nbuckets * 2;
    req_t **nbk = kv_calloc(nb, sizeof *nbk);
    size_t old = c->nbuckets;
    req_t **ob = c->buckets;
    c->buckets = nbk;
    c->nbuckets = nb;
    for (size_t i = 0; i < old; i++) {
        req_t *r = ob[i];
        while (r) {
            req_t *next = r->hnext;
            size_t b = coord_bucket_of(c, r->seq);
            r->hnext = nbk[b];
            nbk[b] = r;
            r = next;
        }
    }
    kv_free(ob);
}

req_t *coord_table_find(const coord_t *c, uint64_t seq)
{
    for (req_t *r = c->buckets[coord_bucket_of(c, seq)]; r; r = r->hnext)
        if (r->seq == seq) return r;
    return NULL;
}

static void table_insert(coord_t *c, req_t *r)
{
    if (c->count + 1 > c->nbuckets) table_grow(c);
    size_t b = coord_bucket_of(c, r->seq);
    r->hnext = c->buckets[b];
    c->buckets[b] = r;
}

static void table_remove(coord_t *c, req_t *r)
{
    req_t **pp = &c->buckets[coord_bucket_of(c, r->seq)];
    while (*pp != r) {
        kv_assert(*pp != NULL);
        pp = &(*pp)->hnext;
    }
    *pp = r->hnext;
}

/* ---- request lifetime -------------------------------------------------- */

static req_t *req_new(coord_t *c, req_kind_t kind, uint64_t now_ms,
                      uint64_t client_req_id, kv_slice_t key, uint64_t timeout_ms,
                      uint32_t need, const uint32_t *replicas, size_t n,
                      const bool *alive)
{
    req_t *r = kv_calloc(1, sizeof *r);
    r->seq = c->next_seq++;
    r->client_req_id = client_req_id;
    r->kind = kind;
    r->n = (uint32_t)n;
    r->need = need;
    memcpy(r->replicas, replicas, n * sizeof *replicas);
    memcpy(r->alive, alive, n * sizeof *alive);
    r->timeout_ms = timeout_ms;
    r->deadline = now_ms + timeout_ms < now_ms ? UINT64_MAX : now_ms + timeout_ms;
    buf_set(&r->key, key);
    if (kind != REQ_WRITE) r->rs = kv_calloc(n, sizeof *r->rs);
    table_insert(c, r);
    heap_insert(c, r);
    return r;
}

static void req_free(coord_t *c, req_t *r)
{
    table_remove(c, r);
    heap_remove(c, r);
    if (r->kind == REQ_BG) c->bg_inflight--;
    if (r->rs) {
        for (uint32_t i = 0; i < r->n; i++) kv_buf_deinit(&r->rs[i].value);
        kv_free(r->rs);
    }
    kv_buf_deinit(&r->key);
    kv_buf_deinit(&r->value);
    kv_free(r);
}

static kv_slice_t req_key(const req_t *r)
{
    return buf_part(&r->key, 0, r->key.len);
}

/* The request's own cell, its value slice pointing at r->value. */
static eng_cell_t req_cell(const req_t *r)
{
    eng_cell_t cell = r->cell;
    cell.value = buf_part(&r->value, 0, r->value.len);
    return cell;
}

/* HINT the write's current cell to the replica in `slot`: at most once per
 * (request, replica, attempt). */
static void hint_push(coord_t *c, req_t *r, uint32_t slot)
{
    kv_assert(r->kind == REQ_WRITE && !(r->hinted & SLOT_BIT(slot)));
    eng_cell_t cell = req_cell(r);
    coord_action_t *a = act_push(c, COORD_ACT_HINT, r->client_req_id,
                                 req_key(r), cell.value);
    a->node = r->replicas[slot];
    a->cell.ts = cell.ts;
    a->cell.tombstone = cell.tombstone;
    a->cell.expire_ms = cell.expire_ms;
    r->hinted |= SLOT_BIT(slot);
    c->st.hints++;
}

/* The deadline has come: a write hints every replica that has not answered
 * its current stamp (replied OK or not), then the request is freed. */
static void req_expire(coord_t *c, req_t *r)
{
    if (r->kind == REQ_WRITE && !r->beaten) {
        for (uint32_t i = 0; i < r->n; i++) {
            if (r->slot[i] != SLOT_PENDING) continue;
            hint_push(c, r, i);
            c->st.hints_timeout++;
        }
    }
    req_free(c, r);
}

/* Free a replied request once nothing more is expected of it. */
static void req_maybe_free(coord_t *c, req_t *r, uint64_t now_ms)
{
    if (r->phase != PH_DRAINING) return;
    if (r->outstanding == 0) req_free(c, r);
    else if (now_ms >= r->deadline) req_expire(c, r);
}

static void bg_start(coord_t *c, const req_t *r, uint64_t now_ms);

static void req_reply(coord_t *c, req_t *r, uint64_t now_ms, kv_status_t status,
                      uint32_t acks)
{
    kv_assert(r->phase != PH_DRAINING && r->kind != REQ_BG);
    hlc_ts_t ts = 0;
    kv_slice_t value = kv_slice(NULL, 0);
    uint64_t expire = 0;
    if (r->kind == REQ_WRITE) {
        ts = status == KV_OK ? r->cell.ts : 0;
    } else if (r->have_cell && (status == KV_OK || status == KV_NOTFOUND)) {
        ts = r->cell.ts;
        if (status == KV_OK) {
            value = req_cell(r).value;
            expire = r->cell.expire_ms;
        }
    }
    reply_push(c, r->client_req_id, req_key(r), status, ts, value, expire, acks);
    r->phase = PH_DRAINING;
    if (r->kind == REQ_READ && (status == KV_OK || status == KV_NOTFOUND))
        bg_start(c, r, now_ms); /* after the REPLY: it never delays it */
    req_maybe_free(c, r, now_ms);
}

/* Mark a PENDING slot answered. */
static void slot_answer(req_t *r, uint32_t slot, slot_state_t st)
{
    kv_assert(r->slot[slot] == SLOT_PENDING && r->outstanding > 0);
    r->slot[slot] = (uint8_t)st;
    r->outstanding--;
}

/* Start a new round: every slot IDLE, nothing outstanding or hinted. */
static void round_reset(req_t *r, uint32_t attempt)
{
    r->attempt = attempt;
    memset(r->slot, SLOT_IDLE, sizeof r->slot);
    r->outstanding = 0;
    r->acks = 0;
    r->hinted = 0;
}

static void send_read(coord_t *c, req_t *r, uint32_t slot)
{
    coord_action_t *a = act_push(c, COORD_ACT_SEND_READ, r->client_req_id,
                                 req_key(r), kv_slice(NULL, 0));
    a->node = r->replicas[slot];
    a->msg_id = msg_id_make(r, slot);
    r->slot[slot] = SLOT_PENDING;
    r->outstanding++;
}

static void send_mutation(coord_t *c, req_t *r, uint32_t slot)
{
    eng_cell_t cell = req_cell(r);
    coord_action_t *a = act_push(c, COORD_ACT_SEND_MUTATION, r->client_req_id,
                                 req_key(r), cell.value);
    a->node = r->replicas[slot];
    a->msg_id = msg_id_make(r, slot);
    a->cell.ts = cell.ts;
    a->cell.tombstone = cell.tombstone;
    a->cell.expire_ms = cell.expire_ms;
    r->slot[slot] = SLOT_PENDING;
    r->outstanding++;
}

/* ---- argument checks --------------------------------------------------- */

static kv_status_t check_args(kv_slice_t key, coord_cl_t cl, uint64_t timeout_ms,
                              const uint32_t *replicas, size_t n, size_t npending,
                              const bool *alive, uint32_t *need, uint32_t *live)
{
    if (n == 0 || n > COORD_MAX_REPLICAS || !replicas || !alive || npending >= n)
        return KV_INVALID;
    if (key.len == 0 || key.len > COORD_MAX_KEY || timeout_ms == 0)
        return KV_INVALID;
    uint32_t k = coord_cl_required(cl, (uint32_t)(n - npending));
    if (k == 0) return KV_INVALID;
    k += (uint32_t)npending; /* one more ack for every pending replica */
    uint32_t up = 0;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < i; j++)
            if (replicas[i] == replicas[j]) return KV_INVALID;
        if (alive[i]) up++;
    }
    *need = k;
    *live = up;
    return KV_OK;
}

/* Advance the clock past a client's causality token. */
static kv_status_t merge_causality(coord_t *c, hlc_ts_t causality, hlc_ts_t *out)
{
    if (causality == 0) return hlc_now(c->hlc, out);
    return hlc_update(c->hlc, causality, out);
}

/* ---- writes ------------------------------------------------------------ */

/* Send the current stamp to every live replica; hint every down one (each
 * attempt, so the hint carries the stamp that may win). */
static void write_send_round(coord_t *c, req_t *r)
{
    for (uint32_t i = 0; i < r->n; i++) {
        if (r->alive[i]) send_mutation(c, r, i);
        else hint_push(c, r, i);
    }
}

kv_status_t coord_write(coord_t *c, uint64_t now_ms, uint64_t client_req_id,
                        kv_slice_t key, kv_slice_t value, bool tombstone,
                        uint64_t expire_ms, coord_cl_t cl, uint64_t timeout_ms,
                        hlc_ts_t causality, const uint32_t *replicas, size_t n,
                        const bool *alive)
{
    return coord_write_pending(c, now_ms, client_req_id, key, value, tombstone,
                               expire_ms, cl, timeout_ms, causality, replicas, n,
                               0, alive);
}

kv_status_t coord_write_pending(coord_t *c, uint64_t now_ms,
                                uint64_t client_req_id, kv_slice_t key,
                                kv_slice_t value, bool tombstone,
                                uint64_t expire_ms, coord_cl_t cl,
                                uint64_t timeout_ms, hlc_ts_t causality,
                                const uint32_t *replicas, size_t n,
                                size_t npending, const bool *alive)
{
    uint32_t need, live;
    KV_RET(check_args(key, cl, timeout_ms, replicas, n, npending, alive, &need,
                      &live));
    if (tombstone) value = kv_slice(NULL, 0);
    if (value.len > COORD_MAX_VALUE) return KV_INVALID;
    c->st.writes++;
    kv_slice_t none = kv_slice(NULL, 0);
    if (live < need) {
        reply_push(c, client_req_id, key, KV_UNAVAILABLE, 0, none, 0, 0);
        return KV_OK;
    }
    hlc_ts_t ts;
    kv_status_t rc = merge_causality(c, causality, &ts);
    if (rc != KV_OK) {
        reply_push(c, client_req_id, key, rc, 0, none, 0, 0);
        return KV_OK;
    }
    req_t *r = req_new(c, REQ_WRITE, now_ms, client_req_id, key, timeout_ms,
                       need, replicas, n, alive);
    r->phase = PH_WRITE_SENDING;
    r->npending = (uint32_t)npending;
    r->cl = cl;
    r->cell.ts = ts;
    r->cell.tombstone = tombstone;
    r->cell.expire_ms = expire_ms;
    r->have_cell = true;
    buf_set(&r->value, value);
    round_reset(r, 0);
    write_send_round(c, r);
    return KV_OK;
}

/* A replica holds a newer cell: stamp past it and send again. */
static void write_restamp(coord_t *c, req_t *r, uint64_t now_ms, hlc_ts_t held)
{
    if (r->attempt + 1 >= COORD_MAX_WRITE_ATTEMPTS) {
        KV_LOG(KV_DEBUG, "write %" PRIu64 ": superseded %u times, giving up",
               r->client_req_id, r->attempt + 1);
        r->beaten = true;
        req_reply(c, r, now_ms, KV_TIMEOUT, r->acks);
        return;
    }
    hlc_ts_t ts;
    kv_status_t rc = hlc_update(c->hlc, held, &ts);
    if (rc != KV_OK) {
        r->beaten = true;
        req_reply(c, r, now_ms, rc, r->acks);
        return;
    }
    kv_assert(ts > r->cell.ts && ts > held);
    r->cell.ts = ts;
    c->st.restamps++;
    round_reset(r, r->attempt + 1);
    write_send_round(c, r);
}

static void write_on_reply(coord_t *c, req_t *r, uint64_t now_ms, uint32_t slot,
                           kv_status_t status, hlc_ts_t superseded_by)
{
    slot_answer(r, slot, status == KV_OK ? SLOT_DONE : SLOT_FAILED);
    if (status != KV_OK && status != KV_SUPERSEDED && !r->beaten) {
        /* The replica missed this stamp (a failed send comes back so). */
        hint_push(c, r, slot);
        c->st.hints_error++;
    }
    if (r->phase == PH_DRAINING) {
        req_maybe_free(c, r, now_ms);
        return;
    }
    if (status == KV_OK) {
        r->acks++;
        if (r->acks >= r->need) req_reply(c, r, now_ms, KV_OK, r->acks);
        return;
    }
    if (status == KV_SUPERSEDED) {
        write_restamp(c, r, now_ms, superseded_by);
        return;
    }
    /* A replica error: fail as soon as CL cannot be reached any more. The
     * outcome is unknown (others may have stored it), hence TIMEOUT. */
    if (r->acks + r->outstanding < r->need)
        req_reply(c, r, now_ms, KV_TIMEOUT, r->acks);
}

/* ---- reads ------------------------------------------------------------- */

kv_status_t coord_read(coord_t *c, uint64_t now_ms, uint64_t client_req_id,
                       kv_slice_t key, coord_cl_t cl, uint64_t timeout_ms,
                       hlc_ts_t causality, const uint32_t *replicas, size_t n,
                       const bool *alive)
{
    uint32_t need, live;
    KV_RET(check_args(key, cl, timeout_ms, replicas, n, 0, alive, &need, &live));
    c->st.reads++;
    kv_slice_t none = kv_slice(NULL, 0);
    if (live < need) {
        reply_push(c, client_req_id, key, KV_UNAVAILABLE, 0, none, 0, 0);
        return KV_OK;
    }
    if (causality != 0) {
        hlc_ts_t ts;
        kv_status_t rc = hlc_update(c->hlc, causality, &ts);
        if (rc != KV_OK) {
            reply_push(c, client_req_id, key, rc, 0, none, 0, 0);
            return KV_OK;
        }
    }
    req_t *r = req_new(c, REQ_READ, now_ms, client_req_id, key, timeout_ms, need,
                       replicas, n, alive);
    r->phase = PH_READ_QUERY;
    r->cl = cl;
    round_reset(r, READ_ROUND_QUERY);
    /* The first CL live replicas in ring order: the primary first. */
    for (uint32_t i = 0; i < r->n && r->outstanding < r->need; i++) {
        if (!r->alive[i]) continue;
        send_read(c, r, i);
        r->queried |= SLOT_BIT(i);
    }
    return KV_OK;
}

/* The newest answer a read or background check holds (DONE, found), or
 * NULL when every answer was "nothing". */
static const read_slot_t *best_answer(const req_t *r)
{
    const read_slot_t *win = NULL;
    for (uint32_t i = 0; i < r->n; i++) {
        if (r->slot[i] != SLOT_DONE || !r->rs[i].found) continue;
        if (!win || eng_cell_lww_cmp(&r->rs[i].cell, &win->cell) > 0)
            win = &r->rs[i];
    }
    return win;
}

/* Make `win` (an answer) the request's own cell. */
static void take_winner(req_t *r, const read_slot_t *win)
{
    r->cell = win->cell;
    buf_set(&r->value, win->cell.value);
    r->cell.value = kv_slice(NULL, 0); /* req_cell() points it at r->value */
    r->have_cell = true;
}

/* Copy a replica's read answer (OK or NOTFOUND) into its slot. */
static void answer_store(req_t *r, uint32_t slot, kv_status_t status,
                         const eng_cell_t *cell)
{
    read_slot_t *rs = &r->rs[slot];
    rs->found = status == KV_OK;
    if (rs->found) {
        buf_set(&rs->value, cell->tombstone ? kv_slice(NULL, 0) : cell->value);
        rs->cell = *cell;
        rs->cell.value = buf_part(&rs->value, 0, rs->value.len);
    }
}

/* Every query answer is in: pick the winner, repair the stale, or reply. */
static void read_resolve(coord_t *c, req_t *r, uint64_t now_ms)
{
    const read_slot_t *win = best_answer(r);
    if (!win) {
        r->have_cell = false;
        req_reply(c, r, now_ms, KV_NOTFOUND, r->acks);
        return;
    }
    take_winner(r, win);
    eng_cell_t best = req_cell(r);

    bool stale[COORD_MAX_REPLICAS] = {false};
    uint32_t nstale = 0;
    for (uint32_t i = 0; i < r->n; i++) {
        if (r->slot[i] != SLOT_DONE) continue;
        if (!r->rs[i].found || eng_cell_lww_cmp(&r->rs[i].cell, &best) < 0) {
            stale[i] = true;
            nstale++;
        }
    }
    kv_status_t outcome = best.tombstone ? KV_NOTFOUND : KV_OK;
    if (nstale == 0) {
        req_reply(c, r, now_ms, outcome, r->acks);
        return;
    }
    uint32_t answers = r->acks;
    round_reset(r, READ_ROUND_REPAIR);
    r->acks = answers; /* a read's acks stay "replicas that answered" */
    r->phase = PH_READ_REPAIR;
    for (uint32_t i = 0; i < r->n; i++) {
        if (!stale[i]) continue;
        send_mutation(c, r, i);
        c->st.read_repairs++;
    }
}

static void read_on_answer(coord_t *c, req_t *r, uint64_t now_ms, uint32_t slot,
                           kv_status_t status, const eng_cell_t *cell)
{
    if (status != KV_OK && status != KV_NOTFOUND) {
        slot_answer(r, slot, SLOT_FAILED);
        /* A live replica not asked yet takes the failed one's place (a
         * replica that died with the request in flight). */
        for (uint32_t i = 0; i < r->n; i++) {
            if (!r->alive[i] || (r->queried & SLOT_BIT(i))) continue;
            send_read(c, r, i);
            r->queried |= SLOT_BIT(i);
            r->failovers++;
            c->st.read_failovers++;
            return;
        }
        req_reply(c, r, now_ms, KV_TIMEOUT, r->acks);
        return;
    }
    answer_store(r, slot, status, cell);
    slot_answer(r, slot, SLOT_DONE);
    r->acks++;
    if (r->outstanding == 0) read_resolve(c, r, now_ms);
}

static void read_on_repair_ack(coord_t *c, req_t *r, uint64_t now_ms,
                               uint32_t slot, kv_status_t status)
{
    /* SUPERSEDED: the replica already holds something newer than the winner,
     * which is just as good for monotonic reads. */
    bool ok = status == KV_OK || status == KV_SUPERSEDED;
    slot_answer(r, slot, ok ? SLOT_DONE : SLOT_FAILED);
    if (r->phase == PH_DRAINING) {
        req_maybe_free(c, r, now_ms);
        return;
    }
    if (!ok) {
        req_reply(c, r, now_ms, KV_TIMEOUT, r->acks);
        return;
    }
    if (r->outstanding == 0)
        req_reply(c, r, now_ms, r->cell.tombstone ? KV_NOTFOUND : KV_OK, r->acks);
}

/* ---- background read checks ------------------------------------------- */

/* After read r replied OK or NOTFOUND: roll the dice and maybe start a
 * check of the alive replicas r did not query. */
static void bg_start(coord_t *c, const req_t *r, uint64_t now_ms)
{
    uint64_t extra = 0;
    for (uint32_t i = 0; i < r->n; i++)
        if (r->alive[i] && !(r->queried & SLOT_BIT(i))) extra |= SLOT_BIT(i);
    uint32_t ppm = c->ppm[r->cl];
    if (extra == 0 || ppm == 0) return;
    if (ppm < PPM_ALWAYS && kv_rng_below(&c->rng, PPM_ALWAYS) >= ppm) return;
    if (c->bg_inflight >= c->bg_max) {
        c->st.bg_repair_skipped++;
        return;
    }
    req_t *b = req_new(c, REQ_BG, now_ms, r->client_req_id, req_key(r),
                       r->timeout_ms, popcount64(extra), r->replicas, r->n,
                       r->alive);
    c->bg_inflight++;
    c->st.bg_repair_checks++;
    b->phase = PH_BG_QUERY;
    b->cl = r->cl;
    b->queried = r->queried;
    if (r->have_cell) { /* the read's winner */
        b->cell = r->cell;
        buf_set(&b->value, req_cell(r).value);
        b->cell.value = kv_slice(NULL, 0);
        b->have_cell = true;
    }
    round_reset(b, READ_ROUND_QUERY);
    for (uint32_t i = 0; i < b->n; i++) {
        if (!(extra & SLOT_BIT(i))) continue;
        send_read(c, b, i);
        c->st.bg_repair_reads++;
    }
}

/* Every extra replica answered: repair whichever replica is known older
 * than the newest cell seen, or end. */
static void bg_resolve(coord_t *c, req_t *b)
{
    const read_slot_t *win = best_answer(b);
    eng_cell_t read_win = req_cell(b);
    bool newer = win && (!b->have_cell ||
                         eng_cell_lww_cmp(&win->cell, &read_win) > 0);
    if (newer) take_winner(b, win);
    if (!b->have_cell) { /* no replica holds anything */
        req_free(c, b);
        return;
    }
    eng_cell_t best = req_cell(b);
    /* The read set held the read's winner or older (blocking repair gave
     * them the read's winner): behind too when an extra is newer. */
    uint64_t stale = newer ? b->queried : 0;
    for (uint32_t i = 0; i < b->n; i++) {
        if (b->slot[i] != SLOT_DONE) continue; /* FAILED: unknown, left */
        if (!b->rs[i].found || eng_cell_lww_cmp(&b->rs[i].cell, &best) < 0)
            stale |= SLOT_BIT(i);
    }
    if (stale == 0) {
        req_free(c, b);
        return;
    }
    round_reset(b, READ_ROUND_REPAIR);
    b->phase = PH_BG_REPAIR;
    for (uint32_t i = 0; i < b->n; i++) {
        if (!(stale & SLOT_BIT(i))) continue;
        send_mutation(c, b, i);
        c->st.bg_repair_mutations++;
    }
}

static void bg_on_answer(coord_t *c, req_t *b, uint32_t slot,
                         kv_status_t status, const eng_cell_t *cell)
{
    bool ok = status == KV_OK || status == KV_NOTFOUND;
    if (ok) answer_store(b, slot, status, cell);
    slot_answer(b, slot, ok ? SLOT_DONE : SLOT_FAILED);
    if (b->outstanding == 0) bg_resolve(c, b);
}

/* A repair ack is only counted: the check ends with the last one. */
static void bg_on_repair_ack(coord_t *c, req_t *b, uint32_t slot,
                             kv_status_t status)
{
    bool ok = status == KV_OK || status == KV_SUPERSEDED;
    slot_answer(b, slot, ok ? SLOT_DONE : SLOT_FAILED);
    if (b->outstanding == 0) req_free(c, b);
}

/* ---- replies from replicas --------------------------------------------- */

/* The request and slot a reply belongs to, or NULL when it is stale. */
static req_t *reply_match(coord_t *c, uint32_t from_node, uint64_t msg_id,
                          uint32_t *slot_out)
{
    req_t *r = coord_table_find(c, msg_id >> MSG_SEQ_SHIFT);
    uint32_t slot = (uint32_t)(msg_id & MSG_FIELD_MASK);
    uint32_t attempt = (uint32_t)((msg_id >> MSG_SLOT_BITS) & MSG_FIELD_MASK);
    if (!r || attempt != r->attempt || slot >= r->n ||
        r->replicas[slot] != from_node || r->slot[slot] != SLOT_PENDING) {
        c->st.dropped_replies++;
        return NULL;
    }
    *slot_out = slot;
    return r;
}

kv_status_t coord_on_mutation_reply(coord_t *c, uint64_t now_ms,
                                    uint32_t from_node, uint64_t msg_id,
                                    kv_status_t status, hlc_ts_t superseded_by)
{
    uint32_t slot;
    req_t *r = reply_match(c, from_node, msg_id, &slot);
    if (!r) return KV_NOTFOUND;
    if (r->kind == REQ_WRITE) {
        write_on_reply(c, r, now_ms, slot, status, superseded_by);
        return KV_OK;
    }
    if (r->attempt != READ_ROUND_REPAIR) { /* a mutation reply to a READ */
        c->st.dropped_replies++;
        return KV_NOTFOUND;
    }
    if (r->kind == REQ_BG) bg_on_repair_ack(c, r, slot, status);
    else read_on_repair_ack(c, r, now_ms, slot, status);
    return KV_OK;
}

kv_status_t coord_on_read_reply(coord_t *c, uint64_t now_ms, uint32_t from_node,
                                uint64_t msg_id, kv_status_t status,
                                const eng_cell_t *cell)
{
    uint32_t slot;
    req_t *r = reply_match(c, from_node, msg_id, &slot);
    if (!r) return KV_NOTFOUND;
    if (r->kind == REQ_WRITE || r->attempt != READ_ROUND_QUERY ||
        (status == KV_OK && !cell)) {
        c->st.dropped_replies++;
        return KV_NOTFOUND;
    }
    if (r->kind == REQ_BG) {
        bg_on_answer(c, r, slot, status, cell);
        return KV_OK;
    }
    if (r->phase == PH_DRAINING) { /* the read already failed */
        slot_answer(r, slot, SLOT_FAILED);
        req_maybe_free(c, r, now_ms);
        return KV_OK;
    }
    read_on_answer(c, r, now_ms, slot, status, cell);
    return KV_OK;
}

void coord_on_node_down(coord_t *c, uint64_t now_ms, uint32_t node)
{
    /* Collect first: answering may finish requests and reshape the heap. */
    typedef struct { uint64_t msg_id; bool read; } lost_t;
    lost_t *lost = NULL;
    size_t n = 0, cap = 0;
    for (size_t h = 0; h < c->count; h++) {
        const req_t *r = c->heap[h];
        for (uint32_t i = 0; i < r->n; i++) {
            if (r->replicas[i] != node || r->slot[i] != SLOT_PENDING) continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 16;
                lost = kv_realloc(lost, cap * sizeof *lost);
            }
            lost[n].msg_id = msg_id_make(r, i);
            lost[n].read = r->kind != REQ_WRITE && r->attempt == READ_ROUND_QUERY;
            n++;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (lost[i].read)
            coord_on_read_reply(c, now_ms, node, lost[i].msg_id, KV_UNAVAILABLE, NULL);
        else
            coord_on_mutation_reply(c, now_ms, node, lost[i].msg_id, KV_UNAVAILABLE, 0);
    }
    kv_free(lost);
}

/* ---- time -------------------------------------------------------------- */

void coord_tick(coord_t *c, uint64_t now_ms)
{
    while (c->count > 0 && c->heap[0]->deadline <= now_ms) {
        req_t *r = c->heap[0];
        if (r->kind == REQ_BG || r->phase == PH_DRAINING)
            req_expire(c, r);
        else
            req_reply(c, r, now_ms, KV_TIMEOUT, r->acks); /* frees r */
    }
}

bool coord_next_deadline(const coord_t *c, uint64_t *out_ms)
{
    if (c->count == 0) return false;
    *out_ms = c->heap[0]->deadline;
    return true;
}

/* ---- life cycle -------------------------------------------------------- */

void coord_options_init(coord_options_t *o)
{
    memset(o, 0, sizeof *o);
    o->bg_repair_max_inflight = 64;
}

kv_status_t coord_create(const coord_options_t *o, coord_t **out)
{
    if (!o || !o->hlc) return KV_INVALID;
    for (int cl = COORD_CL_ONE; cl <= COORD_CL_ALL; cl++)
        if (o->read_repair_ppm[cl] > PPM_ALWAYS) return KV_INVALID;
    coord_t *c = kv_calloc(1, sizeof *c);
    c->hlc = o->hlc;
    for (int cl = COORD_CL_ONE; cl <= COORD_CL_ALL; cl++)
        c->ppm[cl] = o->read_repair_ppm[cl];
    c->bg_max = o->bg_repair_max_inflight;
    kv_rng_seed(&c->rng, o->rng_seed);
    c->next_seq = 1;
    c->nbuckets = 16;
    c->buckets = kv_calloc(c->nbuckets, sizeof *c->buckets);
    *out = c;
    return KV_OK;
}

void coord_destroy(coord_t *c)
{
    if (!c) return;
    while (c->count > 0) req_free(c, c->heap[c->count - 1]);
    coord_actions_clear(c);
    kv_free(c->acts);
    kv_free(c->act_bufs);
    kv_free(c->heap);
    kv_free(c->buckets);
    kv_free(c);
}

size_t coord_live_requests(const coord_t *c) { return c->count; }

void coord_get_stats(const coord_t *c, coord_stats_t *out) { *out = c->st; }
