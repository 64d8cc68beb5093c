/* coord.c -- client-request state machines: consistency levels, superseded
 * re-stamps, read resolution and blocking read repair, deadlines. No I/O.
 *
 * DESIGN  Each client request is a req_t, found by its sequence number in a
 * chained hash table and ordered by deadline in a binary min-heap. Every
 * message a request sends carries msg_id = seq << 12 | attempt << 6 | slot:
 * `slot` is the replica's position in the request's replica list and
 * `attempt` names the round the message belongs to (write: the stamp number,
 * 0..COORD_MAX_WRITE_ATTEMPTS-1; read: 0 = query, 1 = repair). A reply whose
 * attempt is not the request's current one is stale and dropped, so
 * re-stamping never has to chase earlier messages. Per slot and round the
 * request keeps IDLE / PENDING / DONE / FAILED; duplicates find the slot no
 * longer PENDING and are dropped.
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
 * READ
 *
 *   coord_read --(live < CL)--> REPLY UNAVAILABLE
 *        v
 *   QUERY: READ to the first CL live replicas (read_start)
 *        | all answered: resolve by eng_cell_lww_cmp (read_resolve)
 *        +--(every answer equals the winner)--> REPLY OK / NOTFOUND --> freed
 *        v
 *   REPAIR: MUTATION(winner) to each replica that answered older or nothing
 *        | all acked (OK or SUPERSEDED: it holds >= winner)
 *        v
 *   REPLY OK / NOTFOUND --> freed
 *   (deadline in QUERY or REPAIR -> REPLY TIMEOUT(answers) -> freed;
 *    a replica error -> TIMEOUT at once: no speculative retry yet)
 *
 * INVARIANTS
 *   (1) every request accepted by coord_write/coord_read gets exactly one
 *       REPLY; a request whose state is held has not replied unless it is
 *       DRAINING, and a DRAINING request has answers outstanding and an
 *       unexpired deadline (req_maybe_free frees it otherwise).
 *   (2) outstanding == number of PENDING slots; PENDING slots are alive.
 *   (3) a write's acks count DONE slots of the current attempt only, and OK
 *       is replied only once acks >= need; its stamp strictly grows with
 *       each attempt (hlc_update past the superseding stamp).
 *   (4) every held request is in the hash and the heap exactly once, with
 *       heap_idx its position; the heap is ordered by (deadline, seq).
 *   (5) a read replies only after every replica of its read set holds a cell
 *       >= the winner (blocking repair), which makes QUORUM reads monotonic.
 *
 * THREADING  loop thread only.
 */
#define KV_LOG_MODULE "coord"
#include "coord.h"

#include <assert.h>
#include <inttypes.h>

#include "ring.h"

static_assert(COORD_MAX_REPLICAS == RING_MAX_RF, "replica limit follows the ring");
static_assert(COORD_MAX_REPLICAS <= 64, "slot field is 6 bits");
static_assert(COORD_MAX_WRITE_ATTEMPTS <= 64, "attempt field is 6 bits");

#define MSG_SLOT_BITS 6
#define MSG_ATTEMPT_BITS 6
#define MSG_SEQ_SHIFT (MSG_SLOT_BITS + MSG_ATTEMPT_BITS)
#define MSG_FIELD_MASK ((1u << MSG_SLOT_BITS) - 1)

#define READ_ROUND_QUERY 0u
#define READ_ROUND_REPAIR 1u

typedef enum { REQ_WRITE = 1, REQ_READ = 2 } req_kind_t;

typedef enum {
    PH_WRITE_SENDING = 1,
    PH_READ_QUERY = 2,
    PH_READ_REPAIR = 3,
    PH_DRAINING = 4, /* replied; waiting for late answers or the deadline */
} req_phase_t;

typedef enum {
    SLOT_IDLE = 0,
    SLOT_PENDING = 1,
    SLOT_DONE = 2,
    SLOT_FAILED = 3,
} slot_state_t;

/* A read answer, copied. */
typedef struct read_slot {
    bool found; /* false: the replica holds nothing */
    eng_cell_t cell;
    kv_buf_t value;
} read_slot_t;

typedef struct req {
    uint64_t seq;
    uint64_t client_req_id;
    req_kind_t kind;
    req_phase_t phase;
    uint32_t n, need;
    uint32_t replicas[COORD_MAX_REPLICAS];
    bool alive[COORD_MAX_REPLICAS];
    uint8_t slot[COORD_MAX_REPLICAS]; /* slot_state_t, current round */
    uint32_t attempt;                 /* the current round */
    uint32_t acks;        /* write: DONE this attempt; read: query answers */
    uint32_t outstanding; /* PENDING slots */
    uint64_t deadline;
    size_t heap_idx;
    struct req *hnext;
    kv_buf_t key;
    /* write: the cell being written; read: the winner once resolved */
    eng_cell_t cell;
    kv_buf_t value;
    bool have_cell;
    read_slot_t *rs; /* reads: n answers */
} req_t;

struct coord {
    hlc_t *hlc;
    uint64_t next_seq;
    /* requests by seq */
    req_t **buckets;
    size_t nbuckets; /* power of two */
    size_t count;
    /* requests by deadline */
    req_t **heap;
    size_t heap_cap;
    /* output */
    coord_action_t *acts;
    kv_buf_t *act_bufs;
    size_t nacts, acts_cap;
    coord_stats_t st;
};

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

static bool heap_less(const req_t *a, const req_t *b)
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
        if (!heap_less(r, c->heap[p])) break;
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
        if (l < c->count && heap_less(c->heap[l], best)) m = l, best = c->heap[l];
        if (l + 1 < c->count && heap_less(c->heap[l + 1], best)) m = l + 1;
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

static size_t bucket_of(const coord_t *c, uint64_t seq)
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
            size_t b = bucket_of(c, r->seq);
            r->hnext = nbk[b];
            nbk[b] = r;
            r = next;
        }
    }
    kv_free(ob);
}

static req_t *table_find(const coord_t *c, uint64_t seq)
{
    for (req_t *r = c->buckets[bucket_of(c, seq)]; r; r = r->hnext)
        if (r->seq == seq) return r;
    return NULL;
}

static void table_insert(coord_t *c, req_t *r)
{
    if (c->count + 1 > c->nbuckets) table_grow(c);
    size_t b = bucket_of(c, r->seq);
    r->hnext = c->buckets[b];
    c->buckets[b] = r;
}

static void table_remove(coord_t *c, req_t *r)
{
    req_t **pp = &c->buckets[bucket_of(c, r->seq)];
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
    r->deadline = now_ms + timeout_ms < now_ms ? UINT64_MAX : now_ms + timeout_ms;
    buf_set(&r->key, key);
    if (kind == REQ_READ) r->rs = kv_calloc(n, sizeof *r->rs);
    table_insert(c, r);
    heap_insert(c, r);
    return r;
}

static void req_free(coord_t *c, req_t *r)
{
    table_remove(c, r);
    heap_remove(c, r);
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

/* Free a replied request once nothing more is expected of it. */
static void req_maybe_free(coord_t *c, req_t *r, uint64_t now_ms)
{
    if (r->phase == PH_DRAINING && (r->outstanding == 0 || now_ms >= r->deadline))
        req_free(c, r);
}

static void req_reply(coord_t *c, req_t *r, uint64_t now_ms, kv_status_t status,
                      uint32_t acks)
{
    kv_assert(r->phase != PH_DRAINING);
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
    req_maybe_free(c, r, now_ms);
}

/* Mark a PENDING slot answered. */
static void slot_answer(req_t *r, uint32_t slot, slot_state_t st)
{
    kv_assert(r->slot[slot] == SLOT_PENDING && r->outstanding > 0);
    r->slot[slot] = (uint8_t)st;
    r->outstanding--;
}

/* Start a new round: every slot IDLE, nothing outstanding. */
static void round_reset(req_t *r, uint32_t attempt)
{
    r->attempt = attempt;
    memset(r->slot, SLOT_IDLE, sizeof r->slot);
    r->outstanding = 0;
    r->acks = 0;
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
                              const uint32_t *replicas, size_t n,
                              const bool *alive, uint32_t *need, uint32_t *live)
{
    if (n == 0 || n > COORD_MAX_REPLICAS || !replicas || !alive)
        return KV_INVALID;
    if (key.len == 0 || key.len > COORD_MAX_KEY || timeout_ms == 0)
        return KV_INVALID;
    uint32_t k = coord_cl_required(cl, (uint32_t)n);
    if (k == 0) return KV_INVALID;
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
        if (r->alive[i]) {
            send_mutation(c, r, i);
        } else {
            eng_cell_t cell = req_cell(r);
            coord_action_t *a = act_push(c, COORD_ACT_HINT, r->client_req_id,
                                         req_key(r), cell.value);
            a->node = r->replicas[i];
            a->cell.ts = cell.ts;
            a->cell.tombstone = cell.tombstone;
            a->cell.expire_ms = cell.expire_ms;
            c->st.hints++;
        }
    }
}

kv_status_t coord_write(coord_t *c, uint64_t now_ms, uint64_t client_req_id,
                        kv_slice_t key, kv_slice_t value, bool tombstone,
                        uint64_t expire_ms, coord_cl_t cl, uint64_t timeout_ms,
                        hlc_ts_t causality, const uint32_t *replicas, size_t n,
                        const bool *alive)
{
    uint32_t need, live;
    KV_RET(check_args(key, cl, timeout_ms, replicas, n, alive, &need, &live));
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
        req_reply(c, r, now_ms, KV_TIMEOUT, r->acks);
        return;
    }
    hlc_ts_t ts;
    kv_status_t rc = hlc_update(c->hlc, held, &ts);
    if (rc != KV_OK) {
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
    if (r->phase == PH_DRAINING) {
        slot_answer(r, slot, status == KV_OK ? SLOT_DONE : SLOT_FAILED);
        req_maybe_free(c, r, now_ms);
        return;
    }
    if (status == KV_OK) {
        slot_answer(r, slot, SLOT_DONE);
        r->acks++;
        if (r->acks >= r->need) req_reply(c, r, now_ms, KV_OK, r->acks);
        return;
    }
    slot_answer(r, slot, SLOT_FAILED);
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
    KV_RET(check_args(key, cl, timeout_ms, replicas, n, alive, &need, &live));
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
    round_reset(r, READ_ROUND_QUERY);
    /* The first CL live replicas in ring order: the primary first. */
    for (uint32_t i = 0; i < r->n && r->outstanding < r->need; i++) {
        if (!r->alive[i]) continue;
        coord_action_t *a = act_push(c, COORD_ACT_SEND_READ, client_req_id, key,
                                     none);
        a->node = r->replicas[i];
        a->msg_id = msg_id_make(r, i);
        r->slot[i] = SLOT_PENDING;
        r->outstanding++;
    }
    return KV_OK;
}

/* Every query answer is in: pick the winner, repair the stale, or reply. */
static void read_resolve(coord_t *c, req_t *r, uint64_t now_ms)
{
    const read_slot_t *win = NULL;
    for (uint32_t i = 0; i < r->n; i++) {
        if (r->slot[i] != SLOT_DONE || !r->rs[i].found) continue;
        if (!win || eng_cell_lww_cmp(&r->rs[i].cell, &win->cell) > 0)
            win = &r->rs[i];
    }
    if (!win) {
        r->have_cell = false;
        req_reply(c, r, now_ms, KV_NOTFOUND, r->acks);
        return;
    }
    r->cell = win->cell;
    buf_set(&r->value, win->cell.value);
    r->cell.value = kv_slice(NULL, 0); /* req_cell() points it at r->value */
    r->have_cell = true;
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
        req_reply(c, r, now_ms, KV_TIMEOUT, r->acks);
        return;
    }
    read_slot_t *rs = &r->rs[slot];
    rs->found = status == KV_OK;
    if (rs->found) {
        buf_set(&rs->value, cell->tombstone ? kv_slice(NULL, 0) : cell->value);
        rs->cell = *cell;
        rs->cell.value = buf_part(&rs->value, 0, rs->value.len);
    }
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

/* ---- replies from replicas --------------------------------------------- */

/* The request and slot a reply belongs to, or NULL when it is stale. */
static req_t *reply_match(coord_t *c, uint32_t from_node, uint64_t msg_id,
                          uint32_t *slot_out)
{
    req_t *r = table_find(c, msg_id >> MSG_SEQ_SHIFT);
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
    read_on_repair_ack(c, r, now_ms, slot, status);
    return KV_OK;
}

kv_status_t coord_on_read_reply(coord_t *c, uint64_t now_ms, uint32_t from_node,
                                uint64_t msg_id, kv_status_t status,
                                const eng_cell_t *cell)
{
    uint32_t slot;
    req_t *r = reply_match(c, from_node, msg_id, &slot);
    if (!r) return KV_NOTFOUND;
    if (r->kind != REQ_READ || r->attempt != READ_ROUND_QUERY ||
        (status == KV_OK && !cell)) {
        c->st.dropped_replies++;
        return KV_NOTFOUND;
    }
    if (r->phase == PH_DRAINING) { /* the read already failed */
        slot_answer(r, slot, SLOT_FAILED);
        req_maybe_free(c, r, now_ms);
        return KV_OK;
    }
    read_on_answer(c, r, now_ms, slot, status, cell);
    return KV_OK;
}

/* ---- time -------------------------------------------------------------- */

void coord_tick(coord_t *c, uint64_t now_ms)
{
    while (c->count > 0 && c->heap[0]->deadline <= now_ms) {
        req_t *r = c->heap[0];
        if (r->phase != PH_DRAINING)
            req_reply(c, r, now_ms, KV_TIMEOUT, r->acks); /* frees r */
        else
            req_free(c, r);
    }
}

bool coord_next_deadline(const coord_t *c, uint64_t *out_ms)
{
    if (c->count == 0) return false;
    *out_ms = c->heap[0]->deadline;
    return true;
}

/* ---- life cycle -------------------------------------------------------- */

void coord_options_init(coord_options_t *o) { memset(o, 0, sizeof *o); }

kv_status_t coord_create(const coord_options_t *o, coord_t **out)
{
    if (!o || !o->hlc) return KV_INVALID;
    coord_t *c = kv_calloc(1, sizeof *c);
    c->hlc = o->hlc;
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

/* ---- validation -------------------------------------------------------- */

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            kv_errmsg_set(__VA_ARGS__);                                        \
            return KV_CORRUPT;                                                 \
        }                                                                      \
    } while (0)

static kv_status_t validate_req(const req_t *r)
{
    CHECK(r->n >= 1 && r->n <= COORD_MAX_REPLICAS, "req %" PRIu64 ": n=%u",
          r->seq, r->n);
    CHECK(r->need >= 1 && r->need <= r->n, "req %" PRIu64 ": need=%u n=%u",
          r->seq, r->need, r->n);
    uint32_t pending = 0, done = 0;
    for (uint32_t i = 0; i < r->n; i++) {
        CHECK(r->slot[i] <= SLOT_FAILED, "req %" PRIu64 ": slot state", r->seq);
        if (r->slot[i] == SLOT_PENDING) {
            pending++;
            CHECK(r->alive[i], "req %" PRIu64 ": pending on a down replica",
                  r->seq);
        }
        if (r->slot[i] == SLOT_DONE) done++;
    }
    for (uint32_t i = r->n; i < COORD_MAX_REPLICAS; i++)
        CHECK(r->slot[i] == SLOT_IDLE, "req %" PRIu64 ": slot past n", r->seq);
    CHECK(pending == r->outstanding, "req %" PRIu64 ": outstanding %u != %u",
          r->seq, r->outstanding, pending);
    CHECK(r->phase != PH_DRAINING || r->outstanding > 0,
          "req %" PRIu64 ": drained but held", r->seq);
    if (r->kind == REQ_WRITE) {
        CHECK(r->phase == PH_WRITE_SENDING || r->phase == PH_DRAINING,
              "write %" PRIu64 ": phase %d", r->seq, (int)r->phase);
        CHECK(r->attempt < COORD_MAX_WRITE_ATTEMPTS, "write %" PRIu64 ": attempt",
              r->seq);
        CHECK(r->have_cell && r->cell.ts != 0, "write %" PRIu64 ": no stamp",
              r->seq);
        if (r->phase == PH_WRITE_SENDING) {
            CHECK(r->acks == done && r->acks < r->need,
                  "write %" PRIu64 ": acks %u done %u need %u", r->seq, r->acks,
                  done, r->need);
            CHECK(r->acks + r->outstanding >= r->need,
                  "write %" PRIu64 ": CL unreachable but not replied", r->seq);
        }
    } else {
        CHECK(r->kind == REQ_READ && r->rs, "req %" PRIu64 ": kind", r->seq);
        CHECK(r->phase == PH_READ_QUERY || r->phase == PH_READ_REPAIR ||
                  r->phase == PH_DRAINING,
              "read %" PRIu64 ": phase %d", r->seq, (int)r->phase);
        CHECK(r->acks <= r->need, "read %" PRIu64 ": answers %u > need %u",
              r->seq, r->acks, r->need);
        if (r->phase == PH_READ_QUERY) {
            CHECK(r->attempt == READ_ROUND_QUERY && done == r->acks &&
                      done + pending == r->need,
                  "read %" PRIu64 ": query set", r->seq);
        }
        if (r->phase == PH_READ_REPAIR) {
            CHECK(r->attempt == READ_ROUND_REPAIR && r->have_cell &&
                      r->outstanding > 0,
                  "read %" PRIu64 ": repair", r->seq);
        }
    }
    return KV_OK;
}

kv_status_t coord_validate(const coord_t *c)
{
    CHECK(c->nbuckets > 0 && (c->nbuckets & (c->nbuckets - 1)) == 0,
          "bucket count %zu", c->nbuckets);
    size_t in_table = 0;
    for (size_t b = 0; b < c->nbuckets; b++) {
        for (const req_t *r = c->buckets[b]; r; r = r->hnext) {
            CHECK(bucket_of(c, r->seq) == b, "req %" PRIu64 " in bucket %zu",
                  r->seq, b);
            CHECK(r->seq < c->next_seq, "req %" PRIu64 " from the future", r->seq);
            CHECK(++in_table <= c->count, "more requests in the table than %zu",
                  c->count);
        }
    }
    CHECK(in_table == c->count, "table holds %zu, count %zu", in_table, c->count);
    for (size_t i = 0; i < c->count; i++) {
        const req_t *r = c->heap[i];
        CHECK(r->heap_idx == i, "heap[%zu] says %zu", i, r->heap_idx);
        CHECK(i == 0 || !heap_less(r, c->heap[(i - 1) / 2]),
              "heap order broken at %zu", i);
        CHECK(table_find(c, r->seq) == r, "req %" PRIu64 " not in the table",
              r->seq);
        KV_RET(validate_req(r));
    }
    for (size_t i = 0; i < c->nacts; i++) {
        const coord_action_t *a = &c->acts[i];
        CHECK(a->kind >= COORD_ACT_SEND_MUTATION && a->kind <= COORD_ACT_HINT,
              "action %zu: kind %d", i, (int)a->kind);
        CHECK(a->key.len > 0, "action %zu: no key", i);
    }
    return KV_OK;
}
