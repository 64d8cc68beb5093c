/* coord_validate.c -- coord_validate: every invariant of coord.c (listed
 * at its top), checked from scratch over the request table, the deadline
 * heap, the statistics and the pending actions. Tests call it after every
 * step.
 *
 * THREADING  loop thread only.
 */
#define KV_LOG_MODULE "coord"
#include "coord_int.h"

/* ---- validation -------------------------------------------------------- */

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            kv_errmsg_set(__VA_ARGS__);                                        \
            return KV_CORRUPT;                                                 \
        }                                                                      \
    } while (0)

static kv_status_t validate_write(const req_t *r, uint32_t done)
{
    CHECK(r->phase == PH_WRITE_SENDING || r->phase == PH_DRAINING,
          "write %" PRIu64 ": phase %d", r->seq, (int)r->phase);
    CHECK(r->attempt < COORD_MAX_WRITE_ATTEMPTS, "write %" PRIu64 ": attempt",
          r->seq);
    CHECK(r->have_cell && r->cell.ts != 0, "write %" PRIu64 ": no stamp",
          r->seq);
    CHECK(!r->beaten || r->phase == PH_DRAINING,
          "write %" PRIu64 ": beaten but not replied", r->seq);
    if (r->phase == PH_WRITE_SENDING) {
        CHECK(r->acks == done && r->acks < r->need,
              "write %" PRIu64 ": acks %u done %u need %u", r->seq, r->acks,
              done, r->need);
        CHECK(r->acks + r->outstanding >= r->need,
              "write %" PRIu64 ": CL unreachable but not replied", r->seq);
    }
    /* (6) */
    for (uint32_t i = 0; i < r->n; i++) {
        bool hinted = (r->hinted & SLOT_BIT(i)) != 0;
        if (!r->alive[i])
            CHECK(r->slot[i] == SLOT_IDLE && hinted,
                  "write %" PRIu64 ": down replica %u not hinted", r->seq, i);
        else
            CHECK(r->slot[i] != SLOT_IDLE && (!hinted || r->slot[i] == SLOT_FAILED),
                  "write %" PRIu64 ": slot %u state %u hinted %d", r->seq, i,
                  r->slot[i], (int)hinted);
    }
    CHECK(r->n == 64 || (r->hinted >> r->n) == 0,
          "write %" PRIu64 ": hint past n", r->seq);
    CHECK(r->queried == 0 && !r->rs, "write %" PRIu64 ": read state", r->seq);
    return KV_OK;
}

/* The slots of r that hold a round's message (not IDLE). */
static uint64_t slots_used(const req_t *r)
{
    uint64_t m = 0;
    for (uint32_t i = 0; i < r->n; i++)
        if (r->slot[i] != SLOT_IDLE) m |= SLOT_BIT(i);
    return m;
}

static kv_status_t validate_read(const req_t *r, uint32_t done, uint32_t pending)
{
    CHECK(r->rs && r->hinted == 0 && !r->beaten, "read %" PRIu64 ": state",
          r->seq);
    CHECK(r->phase == PH_READ_QUERY || r->phase == PH_READ_REPAIR ||
              r->phase == PH_DRAINING,
          "read %" PRIu64 ": phase %d", r->seq, (int)r->phase);
    CHECK(r->acks <= r->need, "read %" PRIu64 ": answers %u > need %u", r->seq,
          r->acks, r->need);
    CHECK(popcount64(r->queried) == r->need + r->failovers,
          "read %" PRIu64 ": queried %u", r->seq, popcount64(r->queried));
    for (uint32_t i = 0; i < r->n; i++)
        CHECK(!(r->queried & SLOT_BIT(i)) || r->alive[i],
              "read %" PRIu64 ": queried a down replica", r->seq);
    CHECK((slots_used(r) & ~r->queried) == 0,
          "read %" PRIu64 ": a message outside the read set", r->seq);
    if (r->phase == PH_READ_QUERY) {
        CHECK(r->attempt == READ_ROUND_QUERY && done == r->acks &&
                  done + pending == r->need && slots_used(r) == r->queried,
              "read %" PRIu64 ": query set", r->seq);
    }

    if (r->phase == PH_READ_REPAIR) {
        CHECK(r->attempt == READ_ROUND_REPAIR && r->have_cell &&
                  r->outstanding > 0,
              "read %" PRIu64 ": repair", r->seq);
    }
    return KV_OK;
}

/* (7) */
static kv_status_t validate_bg(const req_t *r)
{
    CHECK(r->rs && r->hinted == 0 && !r->beaten, "check %" PRIu64 ": state",
          r->seq);
    CHECK(r->outstanding > 0, "check %" PRIu64 ": nothing outstanding", r->seq);
    uint64_t extra = 0;
    for (uint32_t i = 0; i < r->n; i++)
        if (r->alive[i] && !(r->queried & SLOT_BIT(i))) extra |= SLOT_BIT(i);
    CHECK(r->queried != 0 && r->need == popcount64(extra),
          "check %" PRIu64 ": need %u for %u extra replicas", r->seq, r->need,
          popcount64(extra));
    if (r->phase == PH_BG_QUERY) {
        CHECK(r->attempt == READ_ROUND_QUERY && slots_used(r) == extra,
              "check %" PRIu64 ": query set", r->seq);
    } else {
        CHECK(r->phase == PH_BG_REPAIR && r->attempt == READ_ROUND_REPAIR &&
                  r->have_cell,
              "check %" PRIu64 ": phase %d", r->seq, (int)r->phase);
        CHECK((slots_used(r) & ~(extra | r->queried)) == 0,
              "check %" PRIu64 ": repair outside the replicas", r->seq);
    }
    return KV_OK;
}

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
    CHECK(r->cl >= COORD_CL_ONE && r->cl <= COORD_CL_ALL &&
              (r->kind == REQ_BG ||
               r->need == coord_cl_required(r->cl, r->n - r->npending) + r->npending),
          "req %" PRIu64 ": cl %d need %u", r->seq, (int)r->cl, r->need);
    switch (r->kind) {
    case REQ_WRITE: return validate_write(r, done);
    case REQ_READ: return validate_read(r, done, pending);
    case REQ_BG: return validate_bg(r);
    }
    CHECK(false, "req %" PRIu64 ": kind %d", r->seq, (int)r->kind);
}

kv_status_t coord_validate(const coord_t *c)
{
    CHECK(c->nbuckets > 0 && (c->nbuckets & (c->nbuckets - 1)) == 0,
          "bucket count %zu", c->nbuckets);
    size_t in_table = 0;
    for (size_t b = 0; b < c->nbuckets; b++) {
        for (const req_t *r = c->buckets[b]; r; r = r->hnext) {
            CHECK(coord_bucket_of(c, r->seq) == b, "req %" PRIu64 " in bucket %zu",
                  r->seq, b);
            CHECK(r->seq < c->next_seq, "req %" PRIu64 " from the future", r->seq);
            CHECK(++in_table <= c->count, "more requests in the table than %zu",
                  c->count);
        }
    }
    CHECK(in_table == c->count, "table holds %zu, count %zu", in_table, c->count);
    uint32_t checks = 0;
    for (size_t i = 0; i < c->count; i++) {
        checks += c->heap[i]->kind == REQ_BG;
        const req_t *r = c->heap[i];
        CHECK(r->heap_idx == i, "heap[%zu] says %zu", i, r->heap_idx);
        CHECK(i == 0 || !coord_heap_less(r, c->heap[(i - 1) / 2]),
              "heap order broken at %zu", i);
        CHECK(coord_table_find(c, r->seq) == r, "req %" PRIu64 " not in the table",
              r->seq);
        KV_RET(validate_req(r));
    }
    CHECK(checks == c->bg_inflight && checks <= c->bg_max,
          "%u background checks held, counted %u, max %u", checks,
          c->bg_inflight, c->bg_max);
    const coord_stats_t *st = &c->st;
    CHECK(st->hints_timeout + st->hints_error <= st->hints,
          "hints %" PRIu64 " < timeout %" PRIu64 " + error %" PRIu64, st->hints,
          st->hints_timeout, st->hints_error);
    CHECK(st->bg_repair_reads >= st->bg_repair_checks &&
              st->bg_repair_checks >= checks,
          "background checks %" PRIu64 " reads %" PRIu64, st->bg_repair_checks,
          st->bg_repair_reads);
    for (size_t i = 0; i < c->nacts; i++) {
        const coord_action_t *a = &c->acts[i];
        CHECK(a->kind >= COORD_ACT_SEND_MUTATION && a->kind <= COORD_ACT_HINT,
              "action %zu: kind %d", i, (int)a->kind);
        CHECK(a->key.len > 0, "action %zu: no key", i);
    }
    return KV_OK;
}
