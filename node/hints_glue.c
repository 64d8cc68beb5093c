/* hints_glue.c -- hinted handoff on a node: the coordinator's HINT actions
 * go into the durable hint log, and the log is replayed to each replica
 * when gossip sees it up again.
 *
 * DESIGN  The hint log (replication/hints.h) does blocking file I/O, so it
 *         lives on a one-thread job pool ("the hint thread"); every log call
 *         is a job, and one thread means the jobs run in the order they were
 *         submitted (an ACK is applied before the READ that follows it).
 *
 *         Writing: HINT actions are queued on the loop. One append job at a
 *         time takes the whole queue, appends it and syncs once (sync =
 *         group) or at most every sync_period_ms (periodic): the WAL's group
 *         commit, applied to hints. A hint never holds up the client write
 *         it came from: hints count nothing toward the consistency level.
 *         A hint is not written when the target has been down longer than
 *         max_hint_window_ms, when hinted_handoff is off, or when the queue
 *         already holds 64 MiB (each counted by reason).
 *
 *         Replaying: the I/O-free dispatcher (replication/hint_replay.h)
 *         says when to READ a batch for a target (a node slot), SEND it as
 *         one HINTS frame, and ACK it in the log once the target answered
 *         HINTS_REPLY OK; a failed or unanswered batch is DISCARDed and read
 *         again later. Targets are told up (gossip up, link usable) and
 *         pending (the log has records for its node id) by hints_refresh,
 *         which runs after view changes and every second.
 *
 *         Receiving: a HINTS frame is written as one engine batch with
 *         eng_write_async; cells older than what the replica holds are
 *         superseded, which is success (the replica is already newer).
 *
 *   HINT action -> queue -> [hint thread: append..., sync] -> counters
 *   dispatcher READ -> [hint thread: hint_log_read] -> on_read -> SEND
 *     -> HINTS frame -> target's engine -> HINTS_REPLY -> on_sent -> ACK
 *     -> [hint thread: hint_log_ack]
 *
 * INVARIANTS (1) only the hint thread touches the log, except its stats
 *            (thread-safe) and open/close (before/after the thread);
 *            (2) a target has at most one batch held (read, being sent),
 *            matching the dispatcher's state; (3) after hints_glue_quiesce
 *            no job is queued or running and the log is synced and closed.
 * THREADING  Loop thread, except the job work functions (hint thread) and
 *            the engine callback of a received batch.
 */
#define KV_LOG_MODULE "hints"
#include "cluster_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "hint_replay.h"
#include "hints.h"

#define L(...) ((const char *const[]){__VA_ARGS__, NULL})

#define QUEUE_MAX_BYTES (64u * 1024 * 1024)
#define POOL_MAX_JOBS 4096u
#define REFRESH_MS 1000u
#define RECORD_OVERHEAD 64u /* per hint queued, for the queue bound */

enum { REF_FULL, REF_WINDOW, REF_QUEUE, REF_ERROR, REF_COUNT_ };

/* One queued hint. */
typedef struct hg_rec {
    char target[HINT_TARGET_MAX + 1];
    uint64_t created_ms;
    eng_cell_t cell; /* value re-pointed into kv at use */
    kv_buf_t kv;     /* key then value */
    size_t klen;
} hg_rec_t;

typedef enum { JOB_APPEND, JOB_READ, JOB_ACK, JOB_DISCARD, JOB_DROP } job_kind_t;

typedef struct hg_job {
    node_job_t job; /* first */
    hints_glue_t *g;
    job_kind_t kind;
    uint32_t target; /* slot */
    char id[HINT_TARGET_MAX + 1];
    /* APPEND */
    hg_rec_t *recs;
    size_t n;
    bool sync;
    uint64_t ok, refused, errors;
    kv_status_t sync_rc;
    /* READ */
    uint64_t now_wall, max_age, max_bytes;
    kv_status_t rc;
    hint_batch_t batch;
    /* ACK */
    hint_pos_t pos;
} hg_job_t;

/* A batch held for a target between its READ and its ACK / DISCARD. */
typedef struct hg_target {
    bool held;
    hint_batch_t batch;
    uint64_t msg_id;
    char id[HINT_TARGET_MAX + 1];
} hg_target_t;

struct hints_glue {
    node_cluster_t *cl;
    hint_log_t *log;
    node_pool_t *pool;
    hint_replay_t *rp;
    struct event *timer;
    bool enabled, quiesced;
    uint64_t window_ms;
    /* appends waiting for the hint thread */
    hg_rec_t *q;
    size_t nq, qcap;
    uint64_t q_bytes;
    bool append_running;
    uint64_t last_sync_ms;
    hg_target_t *t;
    uint32_t nt;
    uint64_t next_msg_id;
    uint64_t next_refresh_ms;
    uint64_t refused[REF_COUNT_];
    uint64_t received_stored, received_superseded, received_invalid;
    uint64_t replay_start_ms; /* when the current replays began (figures) */
    /* INFO item storage */
    char info_names[64][HINT_TARGET_MAX + 160];
    char info_vals[64][96];
    struct {
        metric_series_t *written, *refused[REF_COUNT_], *replayed, *expired;
        metric_series_t *dropped, *corrupt, *pending, *pending_bytes;
        metric_series_t *acked, *failed, *recv_stored, *recv_superseded;
        hint_log_stats_t last;
        hint_replay_stats_t rlast;
        uint64_t refused_last[REF_COUNT_];
        uint64_t last_recv_stored, last_recv_superseded;
    } m;
};

static uint64_t mono_ms(void) { return node_now_ns() / 1000000u; }

static uint64_t wall_ms(void)
{
    return (uint64_t)kv_clock_wall_ms(kv_clock_system());
}

static void arm_timer(hints_glue_t *g);

/* Copy a NUL-terminated id or name, cut to fit. */
static void str_copy(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n > cap - 1) n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static hg_target_t *tgt(hints_glue_t *g, uint32_t slot)
{
    if (slot >= g->nt) {
        uint32_t nt = KV_MAX(slot + 1, g->nt * 2);
        g->t = kv_realloc(g->t, nt * sizeof *g->t);
        memset(g->t + g->nt, 0, (nt - g->nt) * sizeof *g->t);
        g->nt = nt;
    }
    return &g->t[slot];
}

static void target_release(hg_target_t *t)
{
    if (!t->held) return;
    hint_batch_free(&t->batch);
    t->held = false;
}

/* ---- jobs on the hint thread ------------------------------------------- */

static hg_job_t *job_new(hints_glue_t *g, job_kind_t kind, uint32_t target,
                         const char *id)
{
    hg_job_t *j = kv_calloc(1, sizeof *j);
    j->g = g;
    j->kind = kind;
    j->target = target;
    if (id) str_copy(j->id, sizeof j->id, id);
    hint_batch_init(&j->batch);
    return j;
}

static void job_free(hg_job_t *j)
{
    for (size_t i = 0; i < j->n; i++) kv_buf_deinit(&j->recs[i].kv);
    kv_free(j->recs);
    hint_batch_free(&j->batch);
    kv_free(j);
}

static void job_work(node_job_t *nj)
{
    hg_job_t *j = (hg_job_t *)nj;
    hint_log_t *log = j->g->log;
    switch (j->kind) {
    case JOB_APPEND:
        for (size_t i = 0; i < j->n; i++) {
            hg_rec_t *r = &j->recs[i];
            eng_cell_t cell = r->cell;
            cell.value = kv_slice(r->kv.data + r->klen, r->kv.len - r->klen);
            kv_status_t rc = hint_log_append(log, r->target, r->created_ms,
                                             kv_slice(r->kv.data, r->klen), &cell);
            if (rc == KV_OK) j->ok++;
            else if (rc == KV_NOSPACE) j->refused++;
            else j->errors++;
        }
        j->sync_rc = j->sync && j->ok ? hint_log_sync(log) : KV_OK;
        break;
    case JOB_READ:
        j->rc = hint_log_read(log, j->id, j->now_wall, j->max_age, j->max_bytes,
                              &j->batch);
        break;
    case JOB_ACK:
        j->rc = hint_log_ack(log, j->id, j->pos);
        break;
    case JOB_DROP:
        j->rc = hint_log_drop(log, j->id);
        break;
    case JOB_DISCARD:
        break;
    }
}

static void job_done(node_job_t *nj);

/* Hand a job to the hint thread; false (job freed) when it cannot take it. */
static bool job_submit(hints_glue_t *g, hg_job_t *j)
{
    j->job.work = job_work;
    j->job.done = job_done;
    if (g->quiesced || node_pool_submit(g->pool, &j->job) != KV_OK) {
        job_free(j);
        return false;
    }
    return true;
}

/* ---- writing ----------------------------------------------------------- */

static void append_start(hints_glue_t *g)
{
    if (g->append_running || g->nq == 0 || g->quiesced) return;
    hg_job_t *j = job_new(g, JOB_APPEND, 0, NULL);
    j->recs = g->q;
    j->n = g->nq;
    uint64_t now = mono_ms();
    const node_config_t *cfg = g->cl->node->cfg;
    j->sync = strcmp(cfg->sync, "periodic") != 0 ||
              now >= g->last_sync_ms + cfg->sync_period_ms;
    if (j->sync) g->last_sync_ms = now;
    g->q = NULL;
    g->nq = g->qcap = 0;
    g->q_bytes = 0;
    size_t n = j->n;
    if (job_submit(g, j)) g->append_running = true;
    else g->refused[REF_QUEUE] += n;
}

void hints_glue_add(node_cluster_t *cl, uint32_t slot, kv_slice_t key,
                    const eng_cell_t *cell)
{
    hints_glue_t *g = cl->hints;
    if (!g || !g->enabled || g->quiesced || slot >= cl->npeers) return;
    node_peer_t *p = cl->peers[slot];
    if (p->self) return; /* a local write that failed is the client's error */
    if (!p->node_id[0]) {
        g->refused[REF_ERROR]++;
        return;
    }
    uint64_t now = mono_ms();
    if (!p->gossip_up && p->down_since_ms && now - p->down_since_ms > g->window_ms) {
        g->refused[REF_WINDOW]++;
        return;
    }
    uint64_t need = key.len + cell->value.len + RECORD_OVERHEAD;
    if (g->q_bytes + need > QUEUE_MAX_BYTES) {
        g->refused[REF_QUEUE]++;
        return;
    }
    if (g->nq == g->qcap) {
        g->qcap = g->qcap ? g->qcap * 2 : 64;
        g->q = kv_realloc(g->q, g->qcap * sizeof *g->q);
    }
    hg_rec_t *r = &g->q[g->nq++];
    memset(r, 0, sizeof *r);
    str_copy(r->target, sizeof r->target, p->node_id);
    r->created_ms = wall_ms();
    r->cell = *cell;
    r->cell.value = kv_slice(NULL, 0);
    kv_buf_init(&r->kv);
    kv_buf_append(&r->kv, key.data, key.len);
    if (!cell->tombstone) kv_buf_append(&r->kv, cell->value.data, cell->value.len);
    r->klen = key.len;
    g->q_bytes += need;
    append_start(g);
}

/* ---- replaying --------------------------------------------------------- */

/* Carry out the dispatcher's actions. */
static void replay_drain(hints_glue_t *g)
{
    node_cluster_t *cl = g->cl;
    for (;;) {
        size_t n;
        const hint_act_t *acts = hint_replay_actions(g->rp, &n);
        if (n == 0) return;
        hint_act_t a[16];
        size_t k = KV_MIN(n, KV_ARRAY_LEN(a));
        memcpy(a, acts, k * sizeof *a);
        /* Consume what was copied; handlers may append more. */
        hint_act_t *rest = NULL;
        size_t nrest = n - k;
        if (nrest) {
            rest = kv_malloc(nrest * sizeof *rest);
            memcpy(rest, acts + k, nrest * sizeof *rest);
        }
        hint_replay_actions_clear(g->rp);
        for (size_t i = 0; i < k + nrest; i++) {
            const hint_act_t *act = i < k ? &a[i] : &rest[i - k];
            hg_target_t *t = tgt(g, act->target);
            node_peer_t *p = act->target < cl->npeers ? cl->peers[act->target] : NULL;
            uint64_t now = mono_ms();
            switch (act->kind) {
            case HINT_ACT_READ: {
                hg_job_t *j = job_new(g, JOB_READ, act->target, p ? p->node_id : "");
                j->now_wall = wall_ms();
                j->max_age = g->window_ms;
                j->max_bytes = act->max_bytes;
                if (!p || !job_submit(g, j))
                    hint_replay_on_read(g->rp, now, act->target, false, 0, 0, true);
                break;
            }
            case HINT_ACT_SEND: {
                bool ok = false;
                if (t->held && p) {
                    t->msg_id = ++g->next_msg_id;
                    ok = peer_send_hints(cl, act->target, t->msg_id, &t->batch) == KV_OK;
                    if (ok && !g->replay_start_ms) g->replay_start_ms = now;
                }
                if (!ok) hint_replay_on_sent(g->rp, now, act->target, false);
                break;
            }
            case HINT_ACT_ACK:
                if (t->held) {
                    hg_job_t *j = job_new(g, JOB_ACK, act->target, t->id);
                    j->pos = t->batch.end;
                    target_release(t);
                    job_submit(g, j);
                }
                break;
            case HINT_ACT_DISCARD:
                target_release(t);
                break;
            }
        }
        kv_free(rest);
    }
}

void hints_glue_on_reply(node_cluster_t *cl, uint32_t from, uint64_t msg_id,
                         const peer_hints_reply_t *r)
{
    hints_glue_t *g = cl->hints;
    if (!g || from >= g->nt) return;
    hg_target_t *t = &g->t[from];
    if (!t->held || t->msg_id != msg_id) return; /* late: already retried */
    bool ok = r->status == KV_OK;
    if (!ok)
        KV_LOG(KV_WARN, "hint delivery to %s refused: %s; will retry",
               cl->peers[from]->name, kv_status_str(r->status));
    hint_replay_on_sent(g->rp, mono_ms(), from, ok);
    replay_drain(g);
    arm_timer(g);
}

/* Tell the dispatcher, for every member, whether it is up and has hints;
 * drop the hints of members that left. */
static void hints_refresh(hints_glue_t *g)
{
    node_cluster_t *cl = g->cl;
    uint64_t now = mono_ms();
    g->next_refresh_ms = now + REFRESH_MS;
    hint_target_stats_t ts[64];
    size_t nts = hint_log_targets(g->log, ts, KV_ARRAY_LEN(ts));
    if (nts > KV_ARRAY_LEN(ts)) nts = KV_ARRAY_LEN(ts);
    for (uint32_t i = 0; i < cl->npeers; i++) {
        node_peer_t *p = cl->peers[i];
        if (p->self || !p->node_id[0]) continue;
        hint_target_stats_t st;
        hint_log_target(g->log, p->node_id, &st);
        if (p->status == GOSSIP_LEFT && st.records > 0 && !hint_replay_busy(g->rp, i)) {
            KV_LOG(KV_INFO, "dropping %" PRIu64 " hints for %s: it left the ring",
                   st.records, p->name);
            job_submit(g, job_new(g, JOB_DROP, i, p->node_id));
            continue;
        }
        bool full;
        bool up = p->gossip_up && peer_usable(cl, i, &full);
        hg_target_t *t = tgt(g, i);
        if (!t->held) str_copy(t->id, sizeof t->id, p->node_id);
        hint_replay_set(g->rp, now, i, up, st.records > 0);
    }
    /* Hints for node ids no member has any more (the node was replaced or
     * removed) go once they are past the window. */
    uint64_t wall = wall_ms();
    for (size_t k = 0; k < nts; k++) {
        bool known = false;
        for (uint32_t i = 0; i < cl->npeers && !known; i++)
            known = strcmp(cl->peers[i]->node_id, ts[k].target) == 0;
        if (!known && ts[k].oldest_ms && ts[k].oldest_ms + g->window_ms < wall)
            job_submit(g, job_new(g, JOB_DROP, UINT32_MAX, ts[k].target));
    }
    replay_drain(g);
}

static void job_done(node_job_t *nj)
{
    hg_job_t *j = (hg_job_t *)nj;
    hints_glue_t *g = j->g;
    if (g->quiesced) { /* after shutdown: the outcome no longer matters */
        job_free(j);
        return;
    }
    uint64_t now = mono_ms();
    switch (j->kind) {
    case JOB_APPEND:
        g->append_running = false;
        g->refused[REF_FULL] += j->refused;
        g->refused[REF_ERROR] += j->errors;
        if (j->sync_rc != KV_OK)
            KV_LOG(KV_ERROR, "syncing the hint log failed: %s",
                   kv_status_str(j->sync_rc));
        append_start(g);
        if (j->ok) hints_refresh(g); /* targets that are up get them now */
        break;
    case JOB_READ: {
        hg_target_t *t = tgt(g, j->target);
        bool ok = j->rc == KV_OK;
        if (!ok)
            KV_LOG(KV_ERROR, "reading hints for %s failed: %s", j->id,
                   kv_status_str(j->rc));
        if (ok) {
            target_release(t);
            t->batch = j->batch;
            hint_batch_init(&j->batch);
            t->held = true;
            str_copy(t->id, sizeof t->id, j->id);
        }
        hint_replay_on_read(g->rp, now, j->target, ok, ok ? t->batch.n : 0,
                            ok ? t->batch.bytes : 0, ok ? t->batch.more : true);
        break;
    }
    case JOB_ACK:
        if (j->rc != KV_OK)
            KV_LOG(KV_WARN, "recording delivered hints for %s failed: %s "
                   "(they will be delivered again)", j->id, kv_status_str(j->rc));
        break;
    case JOB_DROP:
    case JOB_DISCARD:
        break;
    }
    job_free(j);
    replay_drain(g);
    arm_timer(g);
}

/* ---- the timer --------------------------------------------------------- */

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    hints_glue_t *g = arg;
    uint64_t now = mono_ms();
    hint_replay_tick(g->rp, now);
    if (now >= g->next_refresh_ms) hints_refresh(g);
    replay_drain(g);
    arm_timer(g);
}

static void arm_timer(hints_glue_t *g)
{
    if (g->quiesced) return;
    uint64_t now = mono_ms(), at = g->next_refresh_ms, d;
    if (hint_replay_next_deadline(g->rp, &d) && d < at) at = d;
    uint64_t wait = at > now ? at - now : 0;
    struct timeval tv = {(time_t)(wait / 1000), (suseconds_t)(wait % 1000) * 1000};
    evtimer_add(g->timer, &tv);
}

void hints_glue_poke(node_cluster_t *cl)
{
    hints_glue_t *g = cl->hints;
    if (!g || g->quiesced) return;
    hints_refresh(g);
    arm_timer(g);
}

/* ---- receiving --------------------------------------------------------- */

typedef struct hg_recv {
    node_job_t job; /* first */
    node_cluster_t *cl;
    peer_link_t *link;
    uint64_t msg_id;
    uint64_t n, invalid;
    kv_status_t rc;
    uint64_t superseded;
} hg_recv_t;

static void recv_done(node_job_t *nj)
{
    hg_recv_t *r = (hg_recv_t *)nj;
    node_cluster_t *cl = r->cl;
    if (cl->node->state != NODE_STOPPED) {
        peer_hints_reply_t rep = {.status = r->rc};
        if (r->rc == KV_OK) {
            rep.superseded = r->superseded;
            rep.stored = r->n - r->superseded;
            if (cl->hints) {
                cl->hints->received_stored += rep.stored;
                cl->hints->received_superseded += r->superseded;
            }
        }
        peer_reply_hints(r->link, r->msg_id, &rep);
    }
    peer_link_unref(r->link);
    kv_free(r);
}

static void recv_cb(void *arg, kv_status_t status, const eng_result_t *res,
                    size_t nres)
{
    hg_recv_t *r = arg;
    r->rc = status;
    for (size_t i = 0; status == KV_OK && i < nres; i++)
        if (res[i].status == KV_SUPERSEDED) r->superseded++;
    r->job.done = recv_done;
    node_done_push(r->cl->node, &r->job);
}

void cluster_on_hints(node_cluster_t *cl, peer_link_t *from, uint64_t msg_id,
                      const kv_frame_t *f, uint32_t n)
{
    node_t *node = cl->node;
    const node_config_t *cfg = node->cfg;
    peer_hints_reply_t rep = {.status = KV_OK};
    if (node->state == NODE_STOPPED || !node->eng) {
        rep.status = KV_CLOSED;
        peer_reply_hints(from, msg_id, &rep);
        return;
    }
    eng_batch_t *b = eng_batch_create();
    uint64_t invalid = 0;
    for (uint32_t i = 0; i < n; i++) {
        peer_hint_t h;
        if (peer_decode_hint_at(f, i, &h) != KV_OK) {
            eng_batch_destroy(b);
            rep.status = KV_PROTO;
            peer_reply_hints(from, msg_id, &rep);
            return;
        }
        /* A cell this node could never have accepted is skipped, not
         * retried forever. */
        if (h.key.len > cfg->max_key_bytes || h.cell.value.len > cfg->max_value_bytes) {
            invalid++;
            continue;
        }
        if (h.cell.tombstone) eng_batch_delete(b, h.key, h.cell.ts);
        else eng_batch_put(b, h.key, h.cell.value, h.cell.ts, h.cell.expire_ms);
    }
    if (cl->hints) cl->hints->received_invalid += invalid;
    if (eng_batch_count(b) == 0) {
        eng_batch_destroy(b);
        peer_reply_hints(from, msg_id, &rep);
        return;
    }
    hg_recv_t *r = kv_calloc(1, sizeof *r);
    r->cl = cl;
    r->link = from;
    peer_link_ref(from);
    r->msg_id = msg_id;
    r->n = eng_batch_count(b);
    r->invalid = invalid;
    kv_status_t rc = eng_write_async(node->eng, b, recv_cb, r);
    eng_batch_destroy(b);
    if (rc != KV_OK) {
        rep.status = rc;
        peer_reply_hints(from, msg_id, &rep);
        peer_link_unref(from);
        kv_free(r);
    }
}

/* ---- figures ------------------------------------------------------------ */

size_t hints_glue_targets(node_cluster_t *cl, hints_target_view_t *out, size_t cap)
{
    hints_glue_t *g = cl->hints;
    if (!g || !g->log) return 0;
    hint_target_stats_t ts[64];
    size_t n = hint_log_targets(g->log, ts, KV_ARRAY_LEN(ts));
    n = KV_MIN(n, KV_ARRAY_LEN(ts));
    size_t k = 0;
    for (size_t i = 0; i < n && k < cap; i++) {
        hints_target_view_t *v = &out[k++];
        memset(v, 0, sizeof *v);
        str_copy(v->node_id, sizeof v->node_id, ts[i].target);
        str_copy(v->name, sizeof v->name, ts[i].target);
        for (uint32_t j = 0; j < cl->npeers; j++)
            if (!strcmp(cl->peers[j]->node_id, ts[i].target))
                str_copy(v->name, sizeof v->name, cl->peers[j]->name);
        v->records = ts[i].records;
        v->bytes = ts[i].bytes;
        v->oldest_ms = ts[i].oldest_ms;
    }
    return k;
}

void hints_glue_totals(node_cluster_t *cl, hints_totals_t *out)
{
    memset(out, 0, sizeof *out);
    hints_glue_t *g = cl->hints;
    if (!g || !g->log) return;
    hint_log_stats_t s;
    hint_log_get_stats(g->log, &s);
    out->pending = s.records;
    out->pending_bytes = s.bytes;
    out->written = s.appended;
    out->replayed = s.replayed;
    out->expired = s.expired;
    out->dropped = s.dropped;
    out->corrupt = s.corrupt;
    out->refused_window = g->refused[REF_WINDOW];
    out->refused_full = g->refused[REF_FULL];
    out->refused_other = g->refused[REF_QUEUE] + g->refused[REF_ERROR];
    out->received = g->received_stored + g->received_superseded;
}

size_t hints_glue_info(node_cluster_t *cl, proto_info_item_t *it, size_t cap)
{
    hints_glue_t *g = cl->hints;
    if (!g || !g->log) return 0;
    hints_totals_t t;
    hints_glue_totals(cl, &t);
    size_t k = 0;
#define U(nm, v) do { if (k < cap) it[k++] = (proto_info_item_t){nm, NULL, (uint64_t)(v)}; } while (0)
    U("hints_pending", t.pending);
    U("hints_pending_bytes", t.pending_bytes);
    U("hints_written", t.written);
    U("hints_replayed", t.replayed);
    U("hints_expired", t.expired);
    U("hints_dropped", t.dropped);
    U("hints_corrupt", t.corrupt);
    U("hints_refused_window", t.refused_window);
    U("hints_refused_full", t.refused_full);
    U("hints_refused_other", t.refused_other);
    U("hints_received", t.received);
#undef U
    hints_target_view_t v[64];
    size_t n = hints_glue_targets(cl, v, KV_ARRAY_LEN(v));
    for (size_t i = 0; i < n && k < cap; i++) {
        snprintf(g->info_names[i], sizeof g->info_names[i], "hints_for:%s", v[i].name);
        snprintf(g->info_vals[i], sizeof g->info_vals[i],
                 "records=%" PRIu64 " bytes=%" PRIu64 " oldest_ms=%" PRIu64,
                 v[i].records, v[i].bytes, v[i].oldest_ms);
        it[k++] = (proto_info_item_t){g->info_names[i], g->info_vals[i], 0};
    }
    return k;
}

void hints_glue_metrics(node_cluster_t *cl)
{
    hints_glue_t *g = cl->hints;
    if (!g || !g->log) return;
    hint_log_stats_t s;
    hint_log_get_stats(g->log, &s);
    metrics_counter_mirror(g->m.written, s.appended, &g->m.last.appended);
    metrics_counter_mirror(g->m.replayed, s.replayed, &g->m.last.replayed);
    metrics_counter_mirror(g->m.expired, s.expired, &g->m.last.expired);
    metrics_counter_mirror(g->m.dropped, s.dropped, &g->m.last.dropped);
    metrics_counter_mirror(g->m.corrupt, s.corrupt, &g->m.last.corrupt);
    metrics_gauge_set(g->m.pending, (double)s.records);
    metrics_gauge_set(g->m.pending_bytes, (double)s.bytes);
    for (int i = 0; i < REF_COUNT_; i++)
        metrics_counter_mirror(g->m.refused[i], g->refused[i], &g->m.refused_last[i]);
    hint_replay_stats_t r;
    hint_replay_get_stats(g->rp, &r);
    metrics_counter_mirror(g->m.acked, r.batches_acked, &g->m.rlast.batches_acked);
    metrics_counter_mirror(g->m.failed, r.batches_failed, &g->m.rlast.batches_failed);
    metrics_counter_mirror(g->m.recv_stored, g->received_stored, &g->m.last_recv_stored);
    metrics_counter_mirror(g->m.recv_superseded, g->received_superseded,
                           &g->m.last_recv_superseded);
}

static void metrics_setup(hints_glue_t *g)
{
    metrics_t *m = g->cl->node->metrics;
    metrics_register(m, "cairn_hints_written_total",
                     "Hints written for replicas that missed a write.",
                     METRIC_COUNTER, NULL);
    metrics_register(m, "cairn_hints_refused_total", "Hints not written, by "
                     "reason: full (max_hints_bytes or a full disk), window "
                     "(the replica was down longer than max_hint_window_ms), "
                     "queue (too many waiting for the disk), error.",
                     METRIC_COUNTER, L("reason"));
    metrics_register(m, "cairn_hints_replayed_total",
                     "Hints delivered to and acknowledged by their replica.",
                     METRIC_COUNTER, NULL);
    metrics_register(m, "cairn_hints_expired_total", "Hints not delivered "
                     "because they were older than max_hint_window_ms.",
                     METRIC_COUNTER, NULL);
    metrics_register(m, "cairn_hints_dropped_total",
                     "Hints deleted because their replica left the ring.",
                     METRIC_COUNTER, NULL);
    metrics_register(m, "cairn_hints_corrupt_total",
                     "Damaged hint records skipped.", METRIC_COUNTER, NULL);
    metrics_register(m, "cairn_hints_pending", "Hints waiting for delivery.",
                     METRIC_GAUGE, NULL);
    metrics_register(m, "cairn_hints_pending_bytes",
                     "Disk space taken by hints waiting for delivery.",
                     METRIC_GAUGE, NULL);
    metrics_register(m, "cairn_hints_batches_total", "Hint batches sent, by "
                     "outcome.", METRIC_COUNTER, L("result"));
    metrics_register(m, "cairn_hints_received_total", "Hinted writes received "
                     "from other coordinators, by outcome (superseded: this "
                     "node already held something newer).", METRIC_COUNTER,
                     L("result"));
    g->m.written = metrics_series(m, "cairn_hints_written_total", NULL);
    static const char *const reasons[REF_COUNT_] = {"full", "window", "queue",
                                                   "error"};
    for (int i = 0; i < REF_COUNT_; i++)
        g->m.refused[i] = metrics_series(m, "cairn_hints_refused_total", L(reasons[i]));
    g->m.replayed = metrics_series(m, "cairn_hints_replayed_total", NULL);
    g->m.expired = metrics_series(m, "cairn_hints_expired_total", NULL);
    g->m.dropped = metrics_series(m, "cairn_hints_dropped_total", NULL);
    g->m.corrupt = metrics_series(m, "cairn_hints_corrupt_total", NULL);
    g->m.pending = metrics_series(m, "cairn_hints_pending", NULL);
    g->m.pending_bytes = metrics_series(m, "cairn_hints_pending_bytes", NULL);
    g->m.acked = metrics_series(m, "cairn_hints_batches_total", L("acked"));
    g->m.failed = metrics_series(m, "cairn_hints_batches_total", L("failed"));
    g->m.recv_stored = metrics_series(m, "cairn_hints_received_total", L("stored"));
    g->m.recv_superseded = metrics_series(m, "cairn_hints_received_total",
                                          L("superseded"));
}

/* ---- life cycle --------------------------------------------------------- */

kv_status_t hints_glue_start(node_cluster_t *cl)
{
    node_t *n = cl->node;
    const node_config_t *cfg = n->cfg;
    hints_glue_t *g = kv_calloc(1, sizeof *g);
    g->cl = cl;
    g->enabled = strcmp(cfg->hinted_handoff, "off") != 0;
    g->window_ms = cfg->max_hint_window_ms;
    size_t len = strlen(cfg->data_dir) + sizeof "/hints";
    char *dir = kv_malloc(len);
    snprintf(dir, len, "%s/hints", cfg->data_dir);
    hint_log_options_t lo;
    hint_log_options_init(&lo);
    lo.dir = dir;
    lo.max_bytes = cfg->max_hints_bytes;
    kv_status_t rc = hint_log_open(&lo, &g->log);
    kv_free(dir);
    if (rc != KV_OK) {
        kv_free(g);
        return rc;
    }
    hint_replay_options_t ro;
    hint_replay_options_init(&ro);
    ro.bytes_per_sec = cfg->hint_replay_bytes_per_sec;
    ro.batch_bytes = KV_MIN(ro.batch_bytes, cfg->max_frame_bytes / 4);
    rc = hint_replay_create(&ro, &g->rp);
    if (rc != KV_OK) {
        hint_log_close(g->log);
        kv_free(g);
        return rc;
    }
    g->pool = node_pool_create(n, 1, POOL_MAX_JOBS);
    g->timer = evtimer_new(n->base, timer_cb, g);
    cl->hints = g;
    metrics_setup(g);
    hint_log_stats_t s;
    hint_log_get_stats(g->log, &s);
    if (s.records)
        KV_LOG(KV_INFO, "%" PRIu64 " hints (%" PRIu64 " bytes) wait for delivery",
               s.records, s.bytes);
    if (s.corrupt || s.torn_tails)
        KV_LOG(KV_WARN, "hint log: %" PRIu64 " damaged records skipped, %" PRIu64
               " torn tails cut", s.corrupt, s.torn_tails);
    g->next_refresh_ms = mono_ms() + REFRESH_MS;
    arm_timer(g);
    return KV_OK;
}

void hints_glue_quiesce(node_cluster_t *cl)
{
    hints_glue_t *g = cl->hints;
    if (!g || g->quiesced) return;
    /* Runs every job already queued (appends included) on the thread. */
    node_pool_destroy(g->pool);
    g->pool = NULL;
    g->quiesced = true;
    /* Hints still queued on the loop: the loop has stopped, write them
     * here. */
    for (size_t i = 0; i < g->nq; i++) {
        hg_rec_t *r = &g->q[i];
        eng_cell_t cell = r->cell;
        cell.value = kv_slice(r->kv.data + r->klen, r->kv.len - r->klen);
        hint_log_append(g->log, r->target, r->created_ms,
                        kv_slice(r->kv.data, r->klen), &cell);
        kv_buf_deinit(&r->kv);
    }
    kv_free(g->q);
    g->q = NULL;
    g->nq = g->qcap = 0;
    kv_status_t rc = hint_log_sync(g->log);
    if (rc != KV_OK)
        KV_LOG(KV_ERROR, "syncing the hint log at shutdown failed: %s",
               kv_status_str(rc));
    if (g->timer) evtimer_del(g->timer);
}

void hints_glue_stop(node_cluster_t *cl)
{
    hints_glue_t *g = cl->hints;
    if (!g) return;
    hints_glue_quiesce(cl);
    for (uint32_t i = 0; i < g->nt; i++) target_release(&g->t[i]);
    kv_free(g->t);
    if (g->timer) event_free(g->timer);
    hint_replay_destroy(g->rp);
    hint_log_close(g->log);
    kv_free(g);
    cl->hints = NULL;
}
