/* local.c -- the request executor of a single node: GET, PUT and DELETE
 * answered by the local engine.
 *
 * DESIGN  This is the seam the coordinator replaces (node_int.h): it takes
 *         a decoded request from conn.c and finishes it exactly once with
 *         node_req_finish(). Consistency levels: this node alone holds the
 *         data, so ONE, QUORUM and ALL are all met by the one local engine
 *         write or read; the cluster coordinator will fan out instead.
 *
 *         Writes: stamp with the HLC (merging the client's causality token,
 *         refusing one too far ahead with CLOCK_SKEW), submit with
 *         eng_write_async; the engine thread's callback only records the
 *         outcome and pushes the request onto the completion queue, so the
 *         reply is built on the loop. An engine answer of SUPERSEDED (a newer
 *         cell is held, e.g. the wall clock stepped back) advances the HLC
 *         past the held timestamp and resubmits, at most NODE_WRITE_ATTEMPTS
 *         times in all; after that the client gets TIMEOUT.
 *
 *         Reads: eng_get with no_io on the loop (memtable, block cache);
 *         KV_AGAIN moves the read to the reader pool (bounded: BUSY when
 *         full), which completes on the loop the same way.
 *
 *   write:  stamp --> submitted --(engine thread)--> completion queue
 *              ^                                           |
 *              +------ superseded, attempts < 3 ------------+--> finish
 *
 * INVARIANTS (1) a request is finished exactly once; (2) an engine or pool
 *            thread only writes the request's result fields and pushes it;
 *            (3) every stamp comes from the HLC on the loop, so stamps only
 *            grow and a resubmitted write carries a stamp above the cell
 *            that superseded it.
 * THREADING  node_exec and every *_done on the loop thread; write_cb on an
 *            engine thread; get_work on a reader thread.
 */
#define KV_LOG_MODULE "node"
#include "node_int.h"

#include <inttypes.h>
#include <stdio.h>

#define NODE_WRITE_ATTEMPTS 3

static bool past_deadline(const node_req_t *r)
{
    return node_now_ns() > r->deadline_ns;
}

/* Stamp the write, merging a causality token. KV_OK or the reply sent. */
static kv_status_t stamp(node_t *n, node_req_t *r, hlc_ts_t after)
{
    kv_status_t rc = after ? hlc_update(n->hlc, after, &r->ts)
                           : hlc_now(n->hlc, &r->ts);
    if (rc == KV_OK) return KV_OK;
    char msg[200];
    if (rc == KV_CLOCK_SKEW) {
        metrics_counter_add(n->m.skew_refused, 1);
        int64_t ahead = (int64_t)hlc_wall_ms(after) -
                        (int64_t)hlc_wall_ms(hlc_last(n->hlc));
        snprintf(msg, sizeof msg,
                 "timestamp %" PRIu64 " is %" PRId64 " ms ahead of this node's "
                 "clock (max_clock_offset_ms %" PRIu64 ")",
                 after, ahead, n->cfg->max_clock_offset_ms);
        KV_LOG(KV_WARN, "refused a request: %s", msg);
    } else {
        snprintf(msg, sizeof msg, "cannot persist the clock: %s",
                 kv_errmsg()[0] ? kv_errmsg() : kv_status_str(rc));
        KV_LOG(KV_ERROR, "%s", msg);
    }
    node_req_finish(r, rc, 0, NULL, msg);
    return rc;
}

/* ---- writes ------------------------------------------------------------ */

static void write_done(node_job_t *j);

/* Engine thread: record the outcome and hand the request to the loop. */
static void write_cb(void *arg, kv_status_t status, const eng_result_t *res,
                     size_t nres)
{
    node_req_t *r = arg;
    r->result = status;
    if (status == KV_OK && nres > 0 && res[0].status == KV_SUPERSEDED) {
        r->result = KV_SUPERSEDED;
        r->superseded_by = res[0].superseded_by;
    }
    r->job.done = write_done;
    node_done_push(r->node, &r->job);
}

static void write_submit(node_t *n, node_req_t *r)
{
    eng_batch_t *b = eng_batch_create();
    if (r->op == NODE_OP_PUT)
        eng_batch_put(b, node_req_key(r), node_req_value(r), r->ts, r->expire_ms);
    else
        eng_batch_delete(b, node_req_key(r), r->ts);
    r->attempts++;
    kv_errmsg_clear();
    kv_status_t rc = eng_write_async(n->eng, b, write_cb, r);
    eng_batch_destroy(b);
    if (rc == KV_OK) return;
    const char *msg = rc == KV_BUSY ? "the engine's write queue is full"
                      : kv_errmsg()[0] ? kv_errmsg() : "write refused by the engine";
    node_req_finish(r, rc, 0, NULL, msg);
}

static void write_done(node_job_t *j)
{
    node_req_t *r = (node_req_t *)j;
    node_t *n = r->node;
    kv_assert(node_on_loop(n));
    if (r->result == KV_SUPERSEDED) {
        metrics_counter_add(n->m.superseded_retries, 1);
        if (n->state == NODE_STOPPED) {
            node_req_finish(r, KV_CLOSED, 0, NULL, "node stopped");
        } else if (r->attempts >= NODE_WRITE_ATTEMPTS) {
            char msg[160];
            snprintf(msg, sizeof msg,
                     "write superseded %d times by newer cells (last %" PRIu64
                     "); not applied", r->attempts, r->superseded_by);
            node_req_finish(r, KV_TIMEOUT, 0, NULL, msg);
        } else if (past_deadline(r)) {
            node_req_finish(r, KV_TIMEOUT, 0, NULL,
                            "deadline passed while retrying a superseded write");
        } else if (stamp(n, r, r->superseded_by) == KV_OK) {
            write_submit(n, r);
        }
        return;
    }
    if (r->result != KV_OK) {
        char msg[96];
        snprintf(msg, sizeof msg, "engine write failed: %s",
                 kv_status_str(r->result));
        node_req_finish(r, r->result, 0, NULL, msg);
    } else if (past_deadline(r)) {
        node_req_finish(r, KV_TIMEOUT, 0, NULL,
                        "deadline passed before the write was acknowledged; "
                        "it may have been applied");
    } else {
        node_req_finish(r, KV_OK, r->ts, NULL, NULL);
    }
}

static void write_start(node_t *n, node_req_t *r)
{
    if (stamp(n, r, r->causality) != KV_OK) return;
    write_submit(n, r);
}

/* ---- reads ------------------------------------------------------------- */

static void get_done(node_job_t *j)
{
    node_req_t *r = (node_req_t *)j;
    kv_assert(node_on_loop(r->node));
    if (past_deadline(r)) {
        node_req_finish(r, KV_TIMEOUT, 0, NULL, "deadline passed during the read");
    } else if (r->result == KV_OK && !r->value.tombstone) {
        kv_slice_t v = kv_buf_slice(&r->value.value);
        node_req_finish(r, KV_OK, r->value.ts, &v, NULL);
    } else if (r->result == KV_OK) {
        node_req_finish(r, KV_NOTFOUND, r->value.ts, NULL, NULL);
    } else if (r->result == KV_NOTFOUND) {
        node_req_finish(r, KV_NOTFOUND, 0, NULL, NULL);
    } else {
        char msg[96];
        snprintf(msg, sizeof msg, "engine read failed: %s",
                 kv_status_str(r->result));
        node_req_finish(r, r->result, 0, NULL, msg);
    }
}

/* Reader thread: the read may go to disk. */
static void get_work(node_job_t *j)
{
    node_req_t *r = (node_req_t *)j;
    eng_read_options_t ro;
    eng_read_options_init(&ro);
    r->result = eng_get(r->node->eng, &ro, node_req_key(r), &r->value);
}

static void get_start(node_t *n, node_req_t *r)
{
    /* A read merges the client's causality token too, so this node's next
     * write is stamped after everything the client has seen. */
    if (r->causality && stamp(n, r, r->causality) != KV_OK) return;
    eng_read_options_t ro;
    eng_read_options_init(&ro);
    ro.no_io = true;
    r->result = eng_get(n->eng, &ro, node_req_key(r), &r->value);
    if (r->result != KV_AGAIN) {
        get_done(&r->job);
        return;
    }
    r->job.work = get_work;
    r->job.done = get_done;
    kv_status_t rc = node_pool_submit(n->readers, &r->job);
    if (rc != KV_OK)
        node_req_finish(r, rc, 0, NULL, "the read queue is full");
}

void node_exec(node_t *n, node_req_t *r)
{
    kv_assert(node_on_loop(n));
    switch (r->op) {
    case NODE_OP_GET: get_start(n, r); break;
    case NODE_OP_PUT:
    case NODE_OP_DELETE: write_start(n, r); break;
    default: node_req_finish(r, KV_PROTO, 0, NULL, "not a data request"); break;
    }
}
