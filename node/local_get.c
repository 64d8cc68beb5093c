/* local_get.c -- LOCAL_GET: the cell this node itself stores for a key.
 *
 * DESIGN  A debugging and testing aid (jepsen/'s convergence checker reads
 *         every replica of a key this way): no coordinator, no other
 *         replica, no read repair -- just this node's engine, tombstones and
 *         timestamps included. Like a replica READ, it is answered from
 *         memory when the engine can (no_io) and otherwise on the reader
 *         pool, so the loop never waits on the disk.
 *
 *   conn_local_get --> node_local_get --(in memory)--> node_req_finish_cell
 *                           |
 *                           +--(KV_AGAIN)--> reader pool: eng_get --> loop:
 *                                            node_req_finish_cell
 *
 * INVARIANTS (1) every request is finished exactly once; (2) a job owns
 *            its request and value from submit to completion.
 * THREADING  Loop thread, except local_read_work (a reader thread; it
 *            touches only its job and the thread-safe engine).
 */
#define KV_LOG_MODULE "node"
#include "node_int.h"

typedef struct local_read {
    node_job_t job; /* first: a job pointer is a local_read pointer */
    node_req_t *req;
    kv_status_t status;
    eng_value_t value;
} local_read_t;

static void local_read_finish(local_read_t *lr)
{
    node_req_finish_cell(lr->req, lr->status, &lr->value);
    eng_value_free(&lr->value);
    kv_free(lr);
}

static void local_read_work(node_job_t *j)
{
    local_read_t *lr = (local_read_t *)j;
    node_t *n = lr->req->node;
    eng_read_options_t ro;
    eng_read_options_init(&ro);
    lr->status = n->eng ? eng_get(n->eng, &ro, node_req_key(lr->req), &lr->value)
                        : KV_CLOSED;
}

static void local_read_done(node_job_t *j) { local_read_finish((local_read_t *)j); }

void node_local_get(node_t *n, node_req_t *req)
{
    kv_assert(node_on_loop(n));
    local_read_t *lr = kv_calloc(1, sizeof *lr);
    lr->req = req;
    if (n->state == NODE_STOPPED || !n->eng) {
        lr->status = KV_CLOSED;
        local_read_finish(lr);
        return;
    }
    eng_read_options_t ro;
    eng_read_options_init(&ro);
    ro.no_io = true;
    lr->status = eng_get(n->eng, &ro, node_req_key(req), &lr->value);
    if (lr->status != KV_AGAIN) {
        local_read_finish(lr);
        return;
    }
    lr->job.work = local_read_work;
    lr->job.done = local_read_done;
    if (node_pool_submit(n->readers, &lr->job) != KV_OK) {
        lr->status = KV_BUSY;
        local_read_finish(lr);
    }
}
