/* cluster.c -- the node as a cluster member: members and ring from the
 * configuration, client requests coordinated across replicas, and the
 * replica side of peer requests.
 *
 * DESIGN  Membership is static for now: every node lists the whole cluster
 *         in initial_cluster. Members are sorted by name and given tokens
 *         one after another with ring_allocate_tokens, which is
 *         deterministic, so every node builds the same ring without talking;
 *         the ring's digest travels in the peer handshake and nodes that
 *         disagree refuse each other.
 *
 *         A client request (conn.c -> node_exec) becomes a coordinator
 *         request over the key's replicas, with liveness from peer.c. The
 *         coordinator (coordinator/coord.c) is I/O-free: cluster_drive
 *         drains its actions -- mutations and reads to send (to a peer
 *         link, or to this node's own engine), replies to finish client
 *         requests, hints -- and feeds replica answers back in. Inputs that
 *         arrive while the action list is being drained (a send that fails
 *         at once, a local read answered from memory) wait on a deferred
 *         list, so the coordinator is never entered re-entrantly.
 *
 *   client GET/PUT/DELETE --> node_exec --> coord_read / coord_write
 *                                             | actions
 *        +------------------------------------+----------------------+
 *        v                    v                        v             v
 *   SEND to self:        SEND to a peer:         REPLY:           HINT:
 *   engine write/read    peer_send_* (fails ->   node_req_finish  hints_glue_add
 *   -> replica_op done   deferred error reply)                    (hint log, then
 *   -> coord_on_*_reply  peer reply -> coord_on_*_reply           replay: see
 *                                                                 hints_glue.c)
 *
 *         Replica side: a MUTATION from a peer is written with
 *         eng_write_async (the engine answers OK, or SUPERSEDED with the newer
 *         stamp it holds) and a READ is answered from memory when possible,
 *         else from the reader pool; the answer goes back on the link the
 *         request came in on, if it is still open.
 *
 * INVARIANTS (1) the coordinator is entered only outside cluster_drive's
 *            drain of its actions; (2) every node_req_t handed to the
 *            coordinator is finished exactly once, by its REPLY action;
 *            (3) replica operations hold a reference on their link until
 *            they answer; after the node stops they are freed unanswered.
 * THREADING  Loop thread, except the engine callback (records the outcome
 *            and hands the operation to the loop) and the reader pool's
 *            work function.
 */
#define KV_LOG_MODULE "cluster"
#include "cluster_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#define L(...) ((const char *const[]){__VA_ARGS__, NULL})

typedef struct replica_op {
    node_job_t job; /* first: a job pointer is an op pointer */
    node_cluster_t *cl;
    struct replica_op *next_deferred;
    peer_link_t *link; /* NULL: answers this node's own coordinator */
    uint32_t from;     /* the replica the answer is from (coordinator side) */
    uint64_t msg_id;
    bool is_read;
    bool counted;      /* in cl->replica_ops */
    kv_buf_t key;
    kv_status_t result;
    hlc_ts_t superseded_by;
    eng_value_t value;
} replica_op_t;

static void cluster_drive(node_cluster_t *cl);

static uint64_t now_ms(void) { return node_now_ns() / 1000000u; }

static replica_op_t *op_new(node_cluster_t *cl, peer_link_t *link,
                            uint32_t from, uint64_t msg_id, bool is_read)
{
    replica_op_t *op = kv_calloc(1, sizeof *op);
    op->cl = cl;
    op->link = link;
    if (link) peer_link_ref(link);
    op->from = from;
    op->msg_id = msg_id;
    op->is_read = is_read;
    return op;
}

static void op_free(replica_op_t *op)
{
    if (op->counted) op->cl->replica_ops--;
    if (op->link) peer_link_unref(op->link);
    kv_buf_deinit(&op->key);
    eng_value_free(&op->value);
    kv_free(op);
}

/* Give an answer to the coordinator and free the op. */
static void op_feed(node_cluster_t *cl, replica_op_t *op)
{
    uint64_t now = now_ms();
    if (op->is_read) {
        eng_cell_t cell = {0};
        if (op->result == KV_OK) {
            cell.ts = op->value.ts;
            cell.tombstone = op->value.tombstone;
            cell.expire_ms = op->value.tombstone ? 0 : op->value.expire_ms;
            cell.value = op->value.tombstone ? kv_slice(NULL, 0)
                                             : kv_buf_slice(&op->value.value);
        }
        coord_on_read_reply(cl->coord, now, op->from, op->msg_id, op->result,
                            op->result == KV_OK ? &cell : NULL);
    } else {
        coord_on_mutation_reply(cl->coord, now, op->from, op->msg_id,
                                op->result, op->superseded_by);
    }
    op_free(op);
}

/* An answer for the coordinator: now, or after the current drain. */
static void op_answer_coord(node_cluster_t *cl, replica_op_t *op)
{
    if (cl->node->state == NODE_STOPPED) {
        op_free(op);
        return;
    }
    if (cl->driving) {
        op->next_deferred = NULL;
        if (cl->deferred_tail) cl->deferred_tail->next_deferred = op;
        else cl->deferred_head = op;
        cl->deferred_tail = op;
        return;
    }
    op_feed(cl, op);
    cluster_drive(cl);
}

/* A replica operation finished: answer the peer or this node's coordinator. */
static void op_complete(replica_op_t *op)
{
    node_cluster_t *cl = op->cl;
    if (op->link) {
        if (cl->node->state != NODE_STOPPED) {
            if (op->is_read) {
                peer_reply_read(op->link, op->msg_id, op->result,
                                op->result == KV_OK ? &op->value : NULL);
            } else {
                peer_reply_mutation(op->link, op->msg_id, op->result,
                                    op->superseded_by);
            }
        }
        op_free(op);
        return;
    }
    op_answer_coord(cl, op);
}

/* ---- replica: writes --------------------------------------------------- */

static void write_done(node_job_t *j) { op_complete((replica_op_t *)j); }

/* Engine thread: record the outcome, hand the op to the loop. */
static void write_cb(void *arg, kv_status_t status, const eng_result_t *res,
                     size_t nres)
{
    replica_op_t *op = arg;
    op->result = status;
    if (status == KV_OK && nres > 0 && res[0].status == KV_SUPERSEDED) {
        op->result = KV_SUPERSEDED;
        op->superseded_by = res[0].superseded_by;
    }
    op->job.done = write_done;
    node_done_push(op->cl->node, &op->job);
}

static void replica_write(node_cluster_t *cl, replica_op_t *op, kv_slice_t key,
                          const eng_cell_t *cell)
{
    node_t *n = cl->node;
    metrics_counter_add(cl->m.replica_writes, 1);
    if (n->state == NODE_STOPPED || !n->eng) {
        op->result = KV_CLOSED;
        op_complete(op);
        return;
    }
    eng_batch_t *b = eng_batch_create();
    if (cell->tombstone) eng_batch_delete(b, key, cell->ts);
    else eng_batch_put(b, key, cell->value, cell->ts, cell->expire_ms);
    op->counted = true;
    cl->replica_ops++;
    kv_status_t rc = eng_write_async(n->eng, b, write_cb, op);
    eng_batch_destroy(b);
    if (rc != KV_OK) {
        op->result = rc;
        op_complete(op);
    }
}

/* ---- replica: reads ---------------------------------------------------- */

static void read_done(node_job_t *j) { op_complete((replica_op_t *)j); }

static void read_work(node_job_t *j)
{
    replica_op_t *op = (replica_op_t *)j;
    eng_read_options_t ro;
    eng_read_options_init(&ro);
    op->result = eng_get(op->cl->node->eng, &ro, kv_buf_slice(&op->key), &op->value);
}

static void replica_read(node_cluster_t *cl, replica_op_t *op, kv_slice_t key)
{
    node_t *n = cl->node;
    metrics_counter_add(cl->m.replica_reads, 1);
    if (n->state == NODE_STOPPED || !n->eng) {
        op->result = KV_CLOSED;
        op_complete(op);
        return;
    }
    eng_read_options_t ro;
    eng_read_options_init(&ro);
    ro.no_io = true;
    op->result = eng_get(n->eng, &ro, key, &op->value);
    if (op->result != KV_AGAIN) {
        op_complete(op);
        return;
    }
    kv_buf_append(&op->key, key.data, key.len);
    op->job.work = read_work;
    op->job.done = read_done;
    op->counted = true;
    cl->replica_ops++;
    if (node_pool_submit(n->readers, &op->job) != KV_OK) {
        op->result = KV_BUSY;
        op_complete(op);
    }
}

/* ---- peer requests and replies (from peer.c) --------------------------- */

void cluster_on_mutation(node_cluster_t *cl, peer_link_t *from, uint64_t msg_id,
                         const peer_mutation_t *m)
{
    eng_cell_t cell = {.ts = m->cell.ts, .tombstone = m->cell.tombstone,
                       .expire_ms = m->cell.expire_ms, .value = m->cell.value};
    const node_config_t *cfg = cl->node->cfg;
    if (m->key.len > cfg->max_key_bytes || m->cell.value.len > cfg->max_value_bytes) {
        peer_reply_mutation(from, msg_id, KV_INVALID, 0);
        return;
    }
    replica_write(cl, op_new(cl, from, cl->self, msg_id, false), m->key, &cell);
}

void cluster_on_read(node_cluster_t *cl, peer_link_t *from, uint64_t msg_id,
                     kv_slice_t key)
{
    replica_read(cl, op_new(cl, from, cl->self, msg_id, true), key);
}

/* Peer replies arrive from the link's read callback, never inside
 * cluster_drive, so they go to the coordinator directly (it copies what it
 * keeps) without a replica_op. */
void cluster_on_mutation_reply(node_cluster_t *cl, uint32_t from,
                               uint64_t msg_id, const peer_mutation_reply_t *r)
{
    if (r->status == KV_CLOCK_SKEW && from < cl->npeers)
        cl->peers[from]->skew_ns = node_now_ns(); /* it refused our clock */
    kv_assert(!cl->driving);
    coord_on_mutation_reply(cl->coord, now_ms(), from, msg_id, r->status,
                            r->superseded_by);
    cluster_drive(cl);
}

void cluster_on_read_reply(node_cluster_t *cl, uint32_t from, uint64_t msg_id,
                           const peer_read_reply_t *r)
{
    kv_assert(!cl->driving);
    if (r->status == KV_CLOCK_SKEW && from < cl->npeers)
        cl->peers[from]->skew_ns = node_now_ns(); /* it refused our clock */
    eng_cell_t cell = {.ts = r->cell.ts, .tombstone = r->cell.tombstone,
                       .expire_ms = r->cell.expire_ms, .value = r->cell.value};
    coord_on_read_reply(cl->coord, now_ms(), from, msg_id, r->status,
                        r->status == KV_OK ? &cell : NULL);
    cluster_drive(cl);
}

/* ---- coordinator actions ----------------------------------------------- */

static void send_failed(node_cluster_t *cl, const coord_action_t *a,
                        kv_status_t why)
{
    replica_op_t *op = op_new(cl, NULL, a->node, a->msg_id,
                              a->kind == COORD_ACT_SEND_READ);
    op->result = why;
    op_answer_coord(cl, op); /* deferred: we are draining */
}

static void req_link(node_cluster_t *cl, node_req_t *r)
{
    r->cprev = NULL;
    r->cnext = cl->reqs;
    if (cl->reqs) cl->reqs->cprev = r;
    cl->reqs = r;
}

static void req_unlink(node_cluster_t *cl, node_req_t *r)
{
    if (r->cprev) r->cprev->cnext = r->cnext;
    else cl->reqs = r->cnext;
    if (r->cnext) r->cnext->cprev = r->cprev;
    r->cprev = r->cnext = NULL;
}

static void finish_client(node_cluster_t *cl, const coord_action_t *a)
{
    node_req_t *r = (node_req_t *)(uintptr_t)a->client_req_id;
    req_unlink(cl, r);
    char msg[200];
    const char *m = NULL;
    const kv_slice_t *value = NULL;
    switch (a->status) {
    case KV_OK:
        if (r->op == NODE_OP_GET) value = &a->value;
        break;
    case KV_NOTFOUND:
        break;
    case KV_TIMEOUT:
        if (r->op == NODE_OP_GET) {
            snprintf(msg, sizeof msg, "read timed out: %u replica(s) answered, "
                     "%s needs %u", a->acks, proto_cl_str(r->cl),
                     coord_cl_required((coord_cl_t)r->cl,
                                       ring_replica_count(cl->ring)));
        } else {
            snprintf(msg, sizeof msg, "write timed out with %u of %u acks "
                     "needed for %s; it may have been applied", a->acks,
                     coord_cl_required((coord_cl_t)r->cl,
                                       ring_replica_count(cl->ring)),
                     proto_cl_str(r->cl));
        }
        m = msg;
        break;
    case KV_CLOCK_SKEW:
        snprintf(msg, sizeof msg, "the request's causality token is more than "
                 "max_clock_offset_ms (%" PRIu64 ") ahead of this node's clock",
                 cl->node->cfg->max_clock_offset_ms);
        metrics_counter_add(cl->node->m.skew_refused, 1);
        m = msg;
        break;
    default:
        m = kv_status_str(a->status);
        break;
    }
    node_req_finish(r, a->status, a->cell_ts, value, m);
}

static void local_send(node_cluster_t *cl, const coord_action_t *a)
{
    replica_op_t *op = op_new(cl, NULL, cl->self, a->msg_id,
                              a->kind == COORD_ACT_SEND_READ);
    if (a->kind == COORD_ACT_SEND_READ) replica_read(cl, op, a->key);
    else replica_write(cl, op, a->key, &a->cell);
}

static void schedule_deadline(node_cluster_t *cl)
{
    uint64_t due;
    if (!coord_next_deadline(cl->coord, &due)) {
        evtimer_del(cl->deadline_ev);
        return;
    }
    uint64_t now = now_ms();
    uint64_t d = due > now ? due - now : 0;
    struct timeval tv = {(long)(d / 1000), (long)(d % 1000) * 1000};
    evtimer_add(cl->deadline_ev, &tv);
}

/* Drain the coordinator's actions until it has nothing more to say. */
static void cluster_drive(node_cluster_t *cl)
{
    kv_assert(!cl->driving);
    for (;;) {
        size_t na;
        const coord_action_t *acts = coord_actions(cl->coord, &na);
        if (na == 0 && !cl->deferred_head) break;
        cl->driving = true;
        for (size_t i = 0; i < na; i++) {
            const coord_action_t *a = &acts[i];
            kv_status_t rc;
            switch (a->kind) {
            case COORD_ACT_SEND_MUTATION:
                if (a->node == cl->self) {
                    local_send(cl, a);
                    break;
                }
                rc = peer_send_mutation(cl, a->node, a->msg_id, a->key, &a->cell);
                if (rc != KV_OK) send_failed(cl, a, rc);
                break;
            case COORD_ACT_SEND_READ:
                if (a->node == cl->self) {
                    local_send(cl, a);
                    break;
                }
                rc = peer_send_read(cl, a->node, a->msg_id, a->key);
                if (rc != KV_OK) send_failed(cl, a, rc);
                break;
            case COORD_ACT_REPLY:
                finish_client(cl, a);
                break;
            case COORD_ACT_HINT:
                hints_glue_add(cl, a->node, a->key, &a->cell);
                break;
            }
        }
        coord_actions_clear(cl->coord);
        cl->driving = false;
        replica_op_t *op = cl->deferred_head;
        cl->deferred_head = cl->deferred_tail = NULL;
        while (op) {
            replica_op_t *next = op->next_deferred;
            op_feed(cl, op);
            op = next;
        }
    }
    schedule_deadline(cl);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    node_cluster_t *cl = arg;
    (void)fd;
    (void)what;
    coord_tick(cl->coord, now_ms());
    cluster_drive(cl);
}

/* ---- client requests --------------------------------------------------- */

static void unavailable(node_cluster_t *cl, node_req_t *r, const uint32_t *reps,
                        size_t nrep, uint32_t need, uint32_t live, bool busy)
{
    char msg[1024];
    int len = snprintf(msg, sizeof msg, "%s needs %u of %zu replicas; %u %s:",
                       proto_cl_str(r->cl), need, nrep, live,
                       busy ? "have room in their queues" : "are reachable");
    for (size_t i = 0; i < nrep && len > 0 && (size_t)len < sizeof msg; i++) {
        node_peer_t *p = cl->peers[reps[i]];
        bool full;
        bool ok = peer_usable(cl, reps[i], &full);
        len += snprintf(msg + len, sizeof msg - (size_t)len, " %s (%s)%s",
                        p->name, ok ? "up" : full ? "queue full"
                                     : p->last_error[0] ? p->last_error : "down",
                        i + 1 < nrep ? "," : "");
    }
    metrics_counter_add(busy ? cl->m.queue_full : cl->m.coord_unavailable, 1);
    node_req_finish(r, busy ? KV_BUSY : KV_UNAVAILABLE, 0, NULL, msg);
}

void node_exec(node_t *n, node_req_t *r)
{
    node_cluster_t *cl = n->cluster;
    kv_assert(node_on_loop(n));
    if (r->op != NODE_OP_GET && r->op != NODE_OP_PUT && r->op != NODE_OP_DELETE) {
        node_req_finish(r, KV_PROTO, 0, NULL, "not a data request");
        return;
    }
    if (ops_left(cl)) {
        node_req_finish(r, KV_UNAVAILABLE, 0, NULL, ops_refusal(cl));
        return;
    }
    const char *skew = cluster_clock_outlier(cl);
    if (skew[0] && r->op != NODE_OP_GET) {
        /* its stamps would be off: nothing is written */
        node_req_finish(r, KV_CLOCK_SKEW, 0, NULL, skew);
        return;
    }
    kv_slice_t key = node_req_key(r);
    uint64_t token = ring_key_token(key);
    uint32_t reps[RING_MAX_RF + 1];
    bool alive[RING_MAX_RF + 1];
    size_t nrep = ring_replicas(cl->ring, token, reps, RING_MAX_RF);
    if (nrep == 0) {
        node_req_finish(r, KV_UNAVAILABLE, 0, NULL, "no node owns any range "
                        "yet: the ring is empty");
        return;
    }
    for (size_t i = 0; i < nrep; i++) reps[i] = cl->ring_slot[reps[i]];
    /* A ring change in progress: writes also go to the replicas the key
     * will have once it is done (pending), reads do not. */
    size_t npending = 0;
    if (cl->future && r->op != NODE_OP_GET) {
        uint32_t f[RING_MAX_RF];
        size_t nf = ring_replicas(cl->future, token, f, RING_MAX_RF);
        for (size_t i = 0; i < nf && nrep < RING_MAX_RF + 1; i++) {
            uint32_t slot = cl->future_slot[f[i]];
            bool have = slot == UINT32_MAX;
            for (size_t j = 0; j < nrep && !have; j++) have = reps[j] == slot;
            if (!have) {
                reps[nrep++] = slot;
                npending++;
            }
        }
    }
    /* This node first when it is a replica: a read at ONE (or the first of a
     * QUORUM's answers) then comes from the local engine, without a hop. */
    for (size_t i = 1; i < nrep - npending; i++) {
        if (reps[i] == cl->self) {
            memmove(reps + 1, reps, i * sizeof *reps);
            reps[0] = cl->self;
            break;
        }
    }
    uint32_t need = coord_cl_required((coord_cl_t)r->cl, (uint32_t)(nrep - npending)) +
                    (uint32_t)npending;
    uint32_t live = 0, full_n = 0;
    for (size_t i = 0; i < nrep; i++) {
        bool full;
        alive[i] = peer_usable(cl, reps[i], &full);
        live += alive[i];
        full_n += full;
    }
    if (live < need) {
        /* Known before sending anything: nothing is attempted. */
        unavailable(cl, r, reps, nrep, need, live, live + full_n >= need);
        return;
    }
    uint64_t now = node_now_ns();
    uint64_t timeout_ms = r->deadline_ns > now ? (r->deadline_ns - now) / 1000000u : 0;
    if (timeout_ms == 0) timeout_ms = 1;
    uint64_t id = (uint64_t)(uintptr_t)r;
    req_link(cl, r);
    kv_status_t rc;
    if (r->op == NODE_OP_GET) {
        rc = coord_read(cl->coord, now_ms(), id, key, (coord_cl_t)r->cl,
                        timeout_ms, r->causality, reps, nrep, alive);
    } else {
        rc = coord_write_pending(cl->coord, now_ms(), id, key, node_req_value(r),
                                 r->op == NODE_OP_DELETE, r->expire_ms,
                                 (coord_cl_t)r->cl, timeout_ms, r->causality, reps,
                                 nrep, npending, alive);
    }
    if (rc != KV_OK) {
        req_unlink(cl, r);
        node_req_finish(r, rc, 0, NULL, kv_errmsg()[0] ? kv_errmsg()
                                                       : "request refused");
        return;
    }
    cluster_drive(cl);
}

static void lost_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    node_cluster_t *cl = arg;
    if (cl->node->state == NODE_STOPPED) return;
    for (uint32_t i = 0; i < cl->npeers; i++) {
        node_peer_t *p = cl->peers[i];
        if (!p->lost) continue;
        p->lost = false;
        if (p->up) continue; /* reconnected meanwhile */
        coord_on_node_down(cl->coord, now_ms(), i);
    }
    cluster_drive(cl);
}

#define SKEW_MEMORY_NS (10ull * 1000000000ull)

const char *cluster_clock_outlier(node_cluster_t *cl)
{
    uint64_t now = node_now_ns();
    uint32_t others = 0, skewed = 0;
    for (uint32_t i = 0; i < cl->npeers; i++) {
        node_peer_t *p = cl->peers[i];
        if (p->self || p->status == GOSSIP_LEFT) continue;
        others++;
        skewed += p->skew_ns && now - p->skew_ns < SKEW_MEMORY_NS;
    }
    /* with one other member nobody can tell whose clock is wrong */
    if (others < 2 || skewed * 2 <= others) {
        cl->outlier = false;
        return "";
    }
    if (!cl->outlier)
        KV_LOG(KV_ERROR, "this node's clock disagrees with %u of %u other members by more "
               "than max_clock_offset_ms: it refuses to stamp writes (ClockSkew) and "
               "reports itself not ready until its clock is fixed", skewed, others);
    cl->outlier = true;
    snprintf(cl->outlier_msg, sizeof cl->outlier_msg, "this node's clock disagrees with "
             "%u of %u other members by more than max_clock_offset_ms: fix its clock "
             "(NTP), or use another node", skewed, others);
    return cl->outlier_msg;
}

void cluster_on_peer_lost(node_cluster_t *cl, uint32_t idx)
{
    if (!cl->lost_ev || idx >= cl->npeers) return;
    cl->peers[idx]->lost = true;
    event_active(cl->lost_ev, EV_TIMEOUT, 0);
}

/* ---- RING -------------------------------------------------------------- */

void node_cluster_describe(node_t *n, const kv_slice_t *key, proto_ring_t *out)
{
    node_cluster_t *cl = n->cluster;
    uint32_t nn = cl->npeers;
    cl->desc = kv_realloc(cl->desc, (nn ? nn : 1) * sizeof *cl->desc);
    proto_ring_node_t *nodes = cl->desc;
    uint32_t *reps = cl->desc_reps;
    eng_stats_t s;
    eng_get_stats(cl->node->eng, &s);
    cl->peers[cl->self]->load_bytes = s.live_bytes;
    uint64_t now = node_now_ns() / 1000000u;
    /* ring index of each slot, for the ownership figures */
    uint32_t nring = ring_node_count(cl->ring);
    for (uint32_t i = 0; i < nn; i++) {
        node_peer_t *p = cl->peers[i];
        gossip_member_t m;
        bool known = gossip_member_find(cl->gossip, p->name, now, &m) == KV_OK;
        uint32_t ri = RING_NO_NODE;
        for (uint32_t j = 0; j < nring && p->in_ring; j++)
            if (cl->ring_slot[j] == i) ri = j;
        /* up is gossip's verdict (not DEAD, phi below the threshold), as
         * nodetool shows it, and only once the node has been heard from (a
         * founder that never started is not shown up); the coordinator
         * also needs the connection */
        bool up = p->self || (known && m.up && m.known);
        nodes[i] = (proto_ring_node_t){
            .name = kv_slice_str(p->name),
            .node_id = kv_slice_str(p->node_id),
            .host = kv_slice_str(p->host),
            .rack = kv_slice_str(p->rack),
            .client_port = p->client_port,
            .admin_port = p->admin_port,
            .up = up,
            .load_bytes = p->load_bytes,
            .ownership_ppm = ri == RING_NO_NODE ? 0 :
                (uint32_t)(ring_ownership(cl->ring, ri) * 1e6 + 0.5),
            .effective_ppm = ri == RING_NO_NODE ? 0 :
                (uint32_t)(ring_effective_ownership(cl->ring, ri) * 1e6 + 0.5),
            .tokens = known ? m.tokens : NULL,
            .ntokens = known ? m.ntokens : 0,
            .status = (uint8_t)(known ? m.status : p->status),
            .liveness = (uint8_t)(known ? m.liveness : GOSSIP_DEAD),
            .phi_milli = known ? proto_phi_milli(m.phi) : 0,
            .generation = known ? m.generation : 0,
            .in_ring = ri != RING_NO_NODE,
        };
    }
    *out = (proto_ring_t){
        .replication_factor = ring_replication_factor(cl->ring),
        .self = cl->self,
        .nodes = nodes,
        .nnodes = nn,
    };
    if (key) {
        out->key_token = ring_key_token(*key);
        out->nreplicas = ring_replicas(cl->ring, out->key_token, reps, RING_MAX_RF);
        for (size_t i = 0; i < out->nreplicas; i++) reps[i] = cl->ring_slot[reps[i]];
        out->replicas = reps;
    }
}

/* A founder refused by a seed (a seed from another cluster) logs it and
 * goes on serving its own ranges; a joining node that the cluster refuses
 * has nothing to serve. */
const char *node_cluster_refusal(node_t *n)
{
    node_cluster_t *cl = n->cluster;
    if (!cl) return "";
    if (ops_refusal(cl)[0]) return ops_refusal(cl);
    const char *skew = cluster_clock_outlier(cl);
    if (skew[0]) return skew;
    return !cl->founder ? gossip_glue_refusal(cl) : "";
}

/* ---- open / close ------------------------------------------------------ */

static int member_cmp(const void *a, const void *b)
{
    return strcmp(((const node_member_t *)a)->name,
                  ((const node_member_t *)b)->name);
}

static void register_metrics(node_cluster_t *cl)
{
    metrics_t *m = cl->node->metrics;
    metrics_register(m, "cairn_peer_up", "1 while a peer is connected and "
                     "answering, else 0.", METRIC_GAUGE, L("peer"));
    metrics_register(m, "cairn_peer_messages_sent_total",
                     "Messages sent to a peer.", METRIC_COUNTER, L("peer"));
    metrics_register(m, "cairn_peer_messages_received_total",
                     "Messages received from a peer.", METRIC_COUNTER, L("peer"));
    metrics_register(m, "cairn_gossip_phi", "Phi-accrual suspicion level per "
                     "peer (down at phi_convict_threshold).", METRIC_GAUGE,
                     L("peer"));
    metrics_register(m, "cairn_peer_connects_total",
                     "Outbound peer connection attempts.", METRIC_COUNTER, NULL);
    metrics_register(m, "cairn_peer_clock_skew_refused_total",
                     "Peer messages refused because the sender's clock was more "
                     "than max_clock_offset_ms ahead.", METRIC_COUNTER, NULL);
    metrics_register(m, "cairn_peer_queue_full_total",
                     "Requests not sent because a peer's output queue was full.",
                     METRIC_COUNTER, NULL);
    metrics_register(m, "cairn_peer_handshakes_refused_total",
                     "Peer handshakes refused, by reason.", METRIC_COUNTER,
                     L("reason"));
    metrics_register(m, "cairn_coordinator_unavailable_total",
                     "Requests failed before sending: too few live replicas.",
                     METRIC_COUNTER, NULL);
    metrics_register(m, "cairn_coordinator_timeouts_total",
                     "Coordinated requests that timed out.", METRIC_COUNTER, NULL);
    metrics_register(m, "cairn_coordinator_read_repairs_total",
                     "Repair writes sent by reads that found stale replicas.",
                     METRIC_COUNTER, NULL);
    metrics_register(m, "cairn_coordinator_hints_total",
                     "Hints asked for: a replica was down, did not answer in "
                     "time or failed the write.", METRIC_COUNTER, NULL);
    metrics_register(m, "cairn_coordinator_background_repair_total",
                     "Background read repair after reads (read_repair_chance): "
                     "checks started, reads and repair writes they sent, "
                     "checks skipped because 64 were already running.",
                     METRIC_COUNTER, L("step"));
    metrics_register(m, "cairn_coordinator_dropped_replies_total",
                     "Replica replies that arrived after their request ended.",
                     METRIC_COUNTER, NULL);
    metrics_register(m, "cairn_replica_writes_total",
                     "Mutations stored as a replica.", METRIC_COUNTER, NULL);
    metrics_register(m, "cairn_replica_reads_total",
                     "Reads answered as a replica.", METRIC_COUNTER, NULL);
    static const char *const reasons[8] = {"cluster_name", "unknown_node",
                                           "version", "config", "clock_skew",
                                           "malformed", "handshake_timeout",
                                           "duplicate_name"};
    for (int i = 0; i < 8; i++)
        cl->m.refused[i] = metrics_series(m, "cairn_peer_handshakes_refused_total",
                                          L(reasons[i]));
    cl->m.skew_refused = metrics_series(m, "cairn_peer_clock_skew_refused_total", NULL);
    cl->m.queue_full = metrics_series(m, "cairn_peer_queue_full_total", NULL);
    cl->m.connects = metrics_series(m, "cairn_peer_connects_total", NULL);
    cl->m.coord_unavailable = metrics_series(m, "cairn_coordinator_unavailable_total", NULL);
    cl->m.coord_timeouts = metrics_series(m, "cairn_coordinator_timeouts_total", NULL);
    cl->m.coord_read_repairs = metrics_series(m, "cairn_coordinator_read_repairs_total", NULL);
    cl->m.coord_hints = metrics_series(m, "cairn_coordinator_hints_total", NULL);
    cl->m.coord_dropped = metrics_series(m, "cairn_coordinator_dropped_replies_total", NULL);
    static const char *const steps[4] = {"checks", "reads", "mutations", "skipped"};
    for (int i = 0; i < 4; i++)
        cl->m.bg_repair[i] = metrics_series(m, "cairn_coordinator_background_repair_total",
                                            L(steps[i]));
    cl->m.replica_writes = metrics_series(m, "cairn_replica_writes_total", NULL);
    cl->m.replica_reads = metrics_series(m, "cairn_replica_reads_total", NULL);
}

void node_cluster_metrics_refresh(node_t *n)
{
    node_cluster_t *cl = n->cluster;
    if (!cl || !cl->coord) return;
    coord_stats_t s;
    coord_get_stats(cl->coord, &s);
    metrics_counter_mirror(cl->m.coord_timeouts, s.timeouts, &cl->m.last.timeouts);
    metrics_counter_mirror(n->m.superseded_retries, s.restamps, &cl->m.last.restamps);
    metrics_counter_mirror(cl->m.coord_read_repairs, s.read_repairs, &cl->m.last.read_repairs);
    metrics_counter_mirror(cl->m.coord_hints, s.hints, &cl->m.last.hints);
    metrics_counter_mirror(cl->m.coord_dropped, s.dropped_replies, &cl->m.last.dropped_replies);
    metrics_counter_mirror(cl->m.bg_repair[0], s.bg_repair_checks, &cl->m.last.bg_repair_checks);
    metrics_counter_mirror(cl->m.bg_repair[1], s.bg_repair_reads, &cl->m.last.bg_repair_reads);
    metrics_counter_mirror(cl->m.bg_repair[2], s.bg_repair_mutations,
                           &cl->m.last.bg_repair_mutations);
    metrics_counter_mirror(cl->m.bg_repair[3], s.bg_repair_skipped,
                           &cl->m.last.bg_repair_skipped);
    gossip_glue_metrics(cl);
    hints_glue_metrics(cl);
    stream_metrics(cl);
    repair_metrics(cl);
}

/* The founders' tokens: members sorted by name, each placed with
 * ring_allocate_tokens against the ones before it. Deterministic, so every
 * founder computes the same tokens for every other without talking. */
static kv_status_t founder_tokens(const node_config_t *cfg, node_member_t *mem,
                                  size_t nm, uint64_t **tokens_out)
{
    ring_t *r = ring_create(KV_MIN(cfg->replication_factor, RING_MAX_RF));
    uint64_t *tokens = kv_calloc(nm ? nm * cfg->num_tokens : 1, sizeof *tokens);
    kv_status_t rc = KV_OK;
    for (size_t i = 0; i < nm && rc == KV_OK; i++) {
        uint64_t *t = tokens + i * cfg->num_tokens;
        rc = ring_allocate_tokens(r, cfg->cluster_name, mem[i].name, mem[i].rack,
                                  cfg->num_tokens, t);
        if (rc == KV_OK)
            rc = ring_add_node(r, mem[i].name, mem[i].rack, t, cfg->num_tokens);
    }
    ring_destroy(r);
    if (rc != KV_OK) {
        kv_free(tokens);
        kv_errmsg_set("initial_cluster: cannot place the founders' tokens: %s",
                      kv_status_str(rc));
        return KV_INVALID;
    }
    *tokens_out = tokens;
    return KV_OK;
}

static void gossip_config_from(const node_config_t *cfg, gossip_config_t *gc)
{
    gossip_config_init(gc);
    gc->cluster_name = cfg->cluster_name;
    gc->replication_factor = cfg->replication_factor;
    gc->probe_interval_ms = cfg->gossip_probe_interval_ms;
    gc->probe_timeout_ms = cfg->gossip_probe_timeout_ms;
    gc->gossip_interval_ms = cfg->gossip_interval_ms;
    gc->pushpull_interval_ms = cfg->gossip_pushpull_interval_ms;
    gc->phi_threshold = cfg->phi_convict_threshold;
    gc->seed = node_now_ns() ^ kv_clock_wall_ms(kv_clock_system());
}

kv_status_t node_cluster_open(node_t *n)
{
    const node_config_t *cfg = n->cfg;
    node_member_t *mem;
    size_t nm;
    KV_RET(node_config_members(cfg, &mem, &nm));
    if (nm > 1) qsort(mem, nm, sizeof *mem, member_cmp);
    node_cluster_t *cl = kv_calloc(1, sizeof *cl);
    n->cluster = cl;
    cl->node = n;
    cl->founders = (uint32_t)nm;
    uint32_t rf = KV_MIN(cfg->replication_factor, RING_MAX_RF);
    cl->ring = ring_create(rf);
    cl->cfg_digest = XXH3_64bits_withSeed(&rf, sizeof rf, 0x636169726e); /* "cairn" */
    uint64_t *ftok = NULL;
    node_saved_t sv = {0};
    kv_status_t rc;
    KV_ERR(rc = founder_tokens(cfg, mem, nm, &ftok));
    KV_ERR(rc = node_saved_load(n, &sv));
    /* A larger generation on every start: others tell a restart from an
     * old message by it. */
    uint64_t wall = kv_clock_wall_ms(kv_clock_system());
    cl->generation = KV_MAX(wall, sv.generation + 1);
    sv.generation = cl->generation;
    size_t self_i = nm;
    for (size_t i = 0; i < nm; i++)
        if (!strcmp(mem[i].name, cfg->node_name)) self_i = i;
    cl->founder = self_i < nm;
    if (sv.ntokens == 0 && self_i < nm) {
        sv.tokens = kv_calloc(cfg->num_tokens, sizeof *sv.tokens);
        memcpy(sv.tokens, ftok + self_i * cfg->num_tokens,
               cfg->num_tokens * sizeof *sv.tokens);
        sv.ntokens = cfg->num_tokens;
        sv.status = GOSSIP_NORMAL;
    } else if (sv.ntokens == 0) {
        sv.status = GOSSIP_JOINING;
        cl->need_tokens = true;
    }
    KV_ERR(rc = node_saved_store(n, &sv));

    gossip_config_t gc;
    gossip_config_from(cfg, &gc);
    const char *host = cfg->advertise_address && *cfg->advertise_address
                           ? cfg->advertise_address : cfg->listen_address;
    gossip_local_t self = {
        .name = cfg->node_name, .node_id = n->node_id, .host = host,
        .port = cfg->peer_port, .client_port = cfg->client_port,
        .admin_port = cfg->admin_port, .rack = cfg->rack,
        .generation = cl->generation, .status = sv.status,
        .tokens = sv.tokens, .ntokens = sv.ntokens,
    };
    uint64_t now = node_now_ns() / 1000000u;
    KV_ERR(rc = gossip_create(&gc, &self, now, &cl->gossip));
    for (size_t i = 0; i < nm; i++) {
        if (i == self_i) continue;
        gossip_local_t f = {
            .name = mem[i].name, .host = mem[i].host, .port = mem[i].peer_port,
            .rack = mem[i].rack, .status = GOSSIP_NORMAL,
            .tokens = ftok + i * cfg->num_tokens, .ntokens = cfg->num_tokens,
        };
        KV_ERR(rc = gossip_add_known(cl->gossip, now, &f));
    }
    coord_options_t co;
    coord_options_init(&co);
    co.hlc = n->hlc;
    co.read_repair_ppm[COORD_CL_ONE] = cfg->read_repair_chance * 10000u;
    co.read_repair_ppm[COORD_CL_QUORUM] = cfg->read_repair_chance_quorum * 10000u;
    co.rng_seed = XXH3_64bits(n->node_id, strlen(n->node_id)) ^ cl->generation;
    KV_ERR(rc = coord_create(&co, &cl->coord));
    cl->deadline_ev = evtimer_new(n->base, deadline_cb, cl);
    cl->lost_ev = evtimer_new(n->base, lost_cb, cl);
    register_metrics(cl);
    KV_ERR(rc = hints_glue_start(cl));
    KV_ERR(rc = stream_start(cl));
    KV_ERR(rc = ops_start(cl, sv.status, sv.ntokens > 0));
    KV_ERR(rc = repair_start(cl));
    KV_ERR(rc = peer_start(cl));
    cluster_view_refresh(cl);
    KV_ERR(rc = gossip_glue_start(cl, mem, nm));
    ops_resume_announce(cl);
    KV_LOG(KV_INFO, "member %s (generation %" PRIu64 ", %s, %u token(s)); %zu "
           "founder(s) in initial_cluster; the ring has %u node(s); "
           "settings digest %016" PRIx64, cfg->node_name, cl->generation,
           gossip_status_str(sv.status), sv.ntokens, nm,
           ring_node_count(cl->ring), cl->cfg_digest);
err:
    kv_free(ftok);
    node_saved_free(&sv);
    node_members_free(mem, nm);
    return rc;
}

size_t node_cluster_info_items(node_t *n, proto_info_item_t *it, size_t cap)
{
    node_cluster_t *cl = n->cluster;
    if (!cl) return 0;
    size_t k = hints_glue_info(cl, it, cap);
    k += ops_info(cl, it + k, cap - k);
    k += repair_info(cl, it + k, cap - k);
    k += stream_info(cl, it + k, cap - k, cl->stream_names, cl->stream_vals,
                     KV_ARRAY_LEN(cl->stream_names));
    return k;
}

void node_cluster_quiesce(node_t *n)
{
    if (!n->cluster) return;
    hints_glue_quiesce(n->cluster);
    stream_quiesce(n->cluster);
    ops_quiesce(n->cluster);
    repair_quiesce(n->cluster);
}

kv_status_t node_cluster_admin(node_t *n, kv_slice_t op, kv_slice_t arg, char *msg,
                               size_t cap)
{
    if (!n->cluster) {
        snprintf(msg, cap, "no cluster layer");
        return KV_UNAVAILABLE;
    }
    kv_status_t rc = ops_admin(n->cluster, op, arg, msg, cap);
    KV_LOG(rc == KV_OK ? KV_INFO : KV_WARN, "admin %.*s%s%.*s: %s", (int)op.len,
           (const char *)op.data, arg.len ? " " : "", (int)arg.len,
           (const char *)arg.data, msg);
    return rc;
}

void node_cluster_close(node_t *n)
{
    node_cluster_t *cl = n->cluster;
    if (!cl) return;
    gossip_glue_stop(cl);
    hints_glue_stop(cl);
    peer_stop(cl);
    stream_stop(cl);
    ops_stop(cl);
    repair_stop(cl);
    replica_op_t *op = cl->deferred_head;
    while (op) {
        replica_op_t *next = op->next_deferred;
        op_free(op);
        op = next;
    }
    if (cl->deadline_ev) event_free(cl->deadline_ev);
    if (cl->lost_ev) event_free(cl->lost_ev);
    if (cl->coord) coord_destroy(cl->coord);
    while (cl->reqs) {
        node_req_t *r = cl->reqs;
        req_unlink(cl, r);
        node_req_finish(r, KV_CLOSED, 0, NULL, "node stopped");
    }
    kv_free(cl->desc);
    if (cl->ring) ring_destroy(cl->ring);
    kv_free(cl->ring_slot);
    if (cl->future) ring_destroy(cl->future);
    kv_free(cl->future_slot);
    kv_free(cl->gossip_slot);
    if (cl->gossip) gossip_destroy(cl->gossip);
    for (uint32_t i = 0; i < cl->npeers; i++) {
        kv_free(cl->peers[i]->name);
        kv_free(cl->peers[i]->host);
        kv_free(cl->peers[i]->rack);
        kv_free(cl->peers[i]);
    }
    kv_free(cl->peers);
    kv_free(cl);
    n->cluster = NULL;
}
