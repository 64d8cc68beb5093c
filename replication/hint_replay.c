/* hint_replay.c -- the per-target hint delivery dispatcher (no I/O).
 *
 * DESIGN  A target is a small struct in an array indexed by the caller's
 * target number. Each is IDLE, READING (a READ action is out) or SENDING (a
 * SEND action is out). pump() moves an IDLE target to READING when it is
 * up, has hints, is past its retry time and its token bucket is not in
 * debt. The bucket counts milli-bytes so refills at any rate stay exact in
 * integers: it gains bytes_per_sec per second of elapsed time, is capped at
 * one batch, and pays for every batch that was sent (it may go negative:
 * the next READ then waits until the debt is repaid). Failures back off
 * from retry_ms, doubling to 30 s; a success resets the back-off.
 *
 * INVARIANTS (1) at most one READ or SEND is outstanding per target, and
 *            its kind matches the state; (2) tokens <= cap; (3) every READ
 *            asks for at least one byte and at most batch_bytes.
 * THREADING  Loop thread only.
 */
#define KV_LOG_MODULE "hints"
#include "hint_replay.h"

#include <inttypes.h>
#include <string.h>

#define MAX_BACKOFF_MS 30000u

typedef enum { T_IDLE = 0, T_READING = 1, T_SENDING = 2 } tstate_t;

typedef struct target {
    bool known, up, pending, more;
    tstate_t state;
    int64_t tokens_mb;  /* milli-bytes */
    uint64_t refill_ms; /* tokens are current as of this time */
    uint64_t next_try_ms;
    uint64_t backoff_ms;
    uint64_t sent_ms;   /* SENDING: when the batch went out */
    uint64_t batch_bytes;
    size_t batch_n;
    uint64_t wait_since_ms; /* throttled since (0: not waiting) */
} target_t;

struct hint_replay {
    hint_replay_options_t o;
    uint64_t batch;  /* effective batch size */
    int64_t cap_mb;  /* bucket capacity in milli-bytes */
    target_t *t;
    uint32_t nt;
    hint_act_t *acts;
    size_t nacts, acts_cap;
    hint_replay_stats_t st;
};

void hint_replay_options_init(hint_replay_options_t *o)
{
    o->bytes_per_sec = 1024 * 1024;
    o->batch_bytes = 64 * 1024;
    o->ack_timeout_ms = 10000;
    o->retry_ms = 1000;
}

kv_status_t hint_replay_create(const hint_replay_options_t *o, hint_replay_t **out)
{
    if (!o || o->bytes_per_sec < 1024 || o->batch_bytes == 0 ||
        o->ack_timeout_ms == 0 || o->retry_ms == 0)
        return KV_INVALID;
    hint_replay_t *r = kv_calloc(1, sizeof *r);
    r->o = *o;
    r->batch = KV_MIN(o->batch_bytes, o->bytes_per_sec);
    r->cap_mb = (int64_t)r->batch * 1000;
    *out = r;
    return KV_OK;
}

void hint_replay_destroy(hint_replay_t *r)
{
    if (!r) return;
    kv_free(r->t);
    kv_free(r->acts);
    kv_free(r);
}

static void act_push(hint_replay_t *r, hint_act_kind_t kind, uint32_t target,
                     uint64_t max_bytes)
{
    if (r->nacts == r->acts_cap) {
        r->acts_cap = r->acts_cap ? r->acts_cap * 2 : 8;
        r->acts = kv_realloc(r->acts, r->acts_cap * sizeof *r->acts);
    }
    r->acts[r->nacts++] = (hint_act_t){.kind = kind, .target = target,
                                       .max_bytes = max_bytes};
}

const hint_act_t *hint_replay_actions(const hint_replay_t *r, size_t *n)
{
    *n = r->nacts;
    return r->acts;
}

void hint_replay_actions_clear(hint_replay_t *r) { r->nacts = 0; }

static target_t *target_get(hint_replay_t *r, uint32_t id, uint64_t now_ms)
{
    if (id >= r->nt) {
        uint32_t nt = KV_MAX(id + 1, r->nt * 2);
        r->t = kv_realloc(r->t, nt * sizeof *r->t);
        memset(r->t + r->nt, 0, (nt - r->nt) * sizeof *r->t);
        r->nt = nt;
    }
    target_t *t = &r->t[id];
    if (!t->known) {
        t->known = true;
        t->tokens_mb = r->cap_mb;
        t->refill_ms = now_ms;
        t->backoff_ms = r->o.retry_ms;
    }
    return t;
}

static void refill(const hint_replay_t *r, target_t *t, uint64_t now_ms)
{
    if (now_ms <= t->refill_ms) return;
    uint64_t dt = now_ms - t->refill_ms;
    t->refill_ms = now_ms;
    /* dt * rate overflows only after ~years of idling at 1 GiB/s. */
    if (dt > 1000000) dt = 1000000;
    int64_t gain = (int64_t)(dt * r->o.bytes_per_sec);
    t->tokens_mb = t->tokens_mb + gain > r->cap_mb ? r->cap_mb : t->tokens_mb + gain;
}

/* When a target in debt will be able to read again. */
static uint64_t bucket_ready_ms(const hint_replay_t *r, const target_t *t)
{
    if (t->tokens_mb >= 0) return t->refill_ms;
    uint64_t debt = (uint64_t)-t->tokens_mb;
    return t->refill_ms + (debt + r->o.bytes_per_sec - 1) / r->o.bytes_per_sec;
}

static void pump(hint_replay_t *r, uint32_t id, uint64_t now_ms)
{
    target_t *t = &r->t[id];
    if (t->state != T_IDLE || !t->up || !t->pending || now_ms < t->next_try_ms)
        return;
    refill(r, t, now_ms);
    if (t->tokens_mb < 0) {
        if (!t->wait_since_ms) t->wait_since_ms = now_ms;
        return;
    }
    if (t->wait_since_ms) {
        r->st.throttled_ms += now_ms - t->wait_since_ms;
        t->wait_since_ms = 0;
    }
    t->state = T_READING;
    act_push(r, HINT_ACT_READ, id, r->batch);
}

static void fail(hint_replay_t *r, target_t *t, uint64_t now_ms)
{
    t->state = T_IDLE;
    t->next_try_ms = now_ms + t->backoff_ms;
    t->backoff_ms = KV_MIN(t->backoff_ms * 2, (uint64_t)MAX_BACKOFF_MS);
    if (t->backoff_ms < r->o.retry_ms) t->backoff_ms = r->o.retry_ms;
}

void hint_replay_set(hint_replay_t *r, uint64_t now_ms, uint32_t target,
                     bool up, bool pending)
{
    target_t *t = target_get(r, target, now_ms);
    if (up && !t->up) { /* back: try at once, with a fresh back-off */
        t->next_try_ms = 0;
        t->backoff_ms = r->o.retry_ms;
    }
    t->up = up;
    /* While a batch is out, the log's "pending" includes it; keep ours. */
    if (t->state == T_IDLE) t->pending = pending;
    else t->pending = t->pending || pending;
    if (!up) t->wait_since_ms = 0;
    pump(r, target, now_ms);
}

void hint_replay_on_read(hint_replay_t *r, uint64_t now_ms, uint32_t target,
                         bool ok, size_t n, uint64_t bytes, bool more)
{
    if (target >= r->nt || r->t[target].state != T_READING) return;
    target_t *t = &r->t[target];
    if (!ok) {
        act_push(r, HINT_ACT_DISCARD, target, 0);
        fail(r, t, now_ms);
        return;
    }
    if (n == 0) { /* nothing to send; consume what was skipped */
        act_push(r, HINT_ACT_ACK, target, 0);
        t->state = T_IDLE;
        t->pending = more;
        pump(r, target, now_ms);
        return;
    }
    if (!t->up) {
        act_push(r, HINT_ACT_DISCARD, target, 0);
        t->state = T_IDLE;
        return;
    }
    t->state = T_SENDING;
    t->sent_ms = now_ms;
    t->batch_bytes = bytes;
    t->batch_n = n;
    t->more = more;
    r->st.batches_sent++;
    r->st.records_sent += n;
    r->st.bytes_sent += bytes;
    act_push(r, HINT_ACT_SEND, target, 0);
}

void hint_replay_on_sent(hint_replay_t *r, uint64_t now_ms, uint32_t target,
                         bool ok)
{
    if (target >= r->nt || r->t[target].state != T_SENDING) return;
    target_t *t = &r->t[target];
    if (!ok) {
        r->st.batches_failed++;
        act_push(r, HINT_ACT_DISCARD, target, 0);
        fail(r, t, now_ms);
        return;
    }
    r->st.batches_acked++;
    act_push(r, HINT_ACT_ACK, target, 0);
    refill(r, t, now_ms);
    t->tokens_mb -= (int64_t)t->batch_bytes * 1000;
    t->state = T_IDLE;
    t->pending = t->more;
    t->backoff_ms = r->o.retry_ms;
    pump(r, target, now_ms);
}

void hint_replay_tick(hint_replay_t *r, uint64_t now_ms)
{
    for (uint32_t i = 0; i < r->nt; i++) {
        target_t *t = &r->t[i];
        if (!t->known) continue;
        if (t->state == T_SENDING && now_ms >= t->sent_ms + r->o.ack_timeout_ms) {
            KV_LOG(KV_INFO, "hint batch to target %u not acknowledged in %" PRIu64
                   " ms; will retry", i, r->o.ack_timeout_ms);
            hint_replay_on_sent(r, now_ms, i, false);
            continue;
        }
        pump(r, i, now_ms);
    }
}

bool hint_replay_next_deadline(const hint_replay_t *r, uint64_t *out_ms)
{
    bool any = false;
    uint64_t best = UINT64_MAX;
    for (uint32_t i = 0; i < r->nt; i++) {
        const target_t *t = &r->t[i];
        if (!t->known) continue;
        uint64_t at = UINT64_MAX;
        if (t->state == T_SENDING) at = t->sent_ms + r->o.ack_timeout_ms;
        else if (t->state == T_IDLE && t->up && t->pending)
            at = KV_MAX(t->next_try_ms, bucket_ready_ms(r, t));
        if (at < best) best = at, any = true;
    }
    if (any) *out_ms = best;
    return any;
}

void hint_replay_get_stats(const hint_replay_t *r, hint_replay_stats_t *out)
{
    *out = r->st;
}

bool hint_replay_busy(const hint_replay_t *r, uint32_t target)
{
    return target < r->nt && r->t[target].state != T_IDLE;
}

kv_status_t hint_replay_validate(const hint_replay_t *r)
{
    for (uint32_t i = 0; i < r->nt; i++) {
        const target_t *t = &r->t[i];
        if (t->tokens_mb > r->cap_mb) {
            kv_errmsg_set("hint target %u: bucket %" PRId64 " over cap", i,
                          t->tokens_mb);
            return KV_CORRUPT;
        }
        if (!t->known && (t->state != T_IDLE || t->pending)) {
            kv_errmsg_set("hint target %u: state without a target", i);
            return KV_CORRUPT;
        }
    }
    return KV_OK;
}
