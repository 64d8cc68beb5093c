/* repair.c -- anti-entropy repair: replicas compare Merkle trees of each
 * token range and exchange only what differs.
 *
 * DESIGN  A repair runs on one node (the one `cairn repair` was sent to, or
 *         every node for its primary ranges when repair_interval_ms is
 *         set) over the ranges it replicates, one range at a time:
 *
 *   TREES   build this node's tree of the range (a scan on the repair
 *           thread, paced by repair_bytes_per_sec) and ask every other
 *           replica for its own (MERKLE_REQ); a replica that is down fails
 *           the range (a repair needs every replica);
 *   PULLS   compare: for each replica, the token ranges of the leaves that
 *           differ from ours; pull those from it (stream.c) -- this node
 *           then holds the newest of every cell any replica had;
 *   PUSHES  have each replica pull every differing range from this node
 *           (FETCH), so it ends with the same;
 *   DONE    the range is recorded as repaired now (data_dir/repair.state).
 *
 *         Cells travel with their own stamps and are stored by
 *         last-write-wins, so deletes travel as tombstones, nothing older
 *         overwrites anything newer, and a repair cut short by a restart
 *         can simply be run again.
 *
 *         Tombstones are dropped by compaction after gc_grace_seconds; a
 *         range not repaired within that long may get deleted data back
 *         from a replica that missed the delete. The node therefore keeps
 *         the time of each range's last successful repair, reports the
 *         oldest (INFO, /metrics, `cairn status`) and warns in its log.
 *
 * INVARIANTS (1) one repair at a time per node, never during a ring change
 *            this node drives; (2) a range is recorded as repaired only
 *            when every step succeeded with every replica.
 * THREADING  Loop thread, except tree_work (the repair thread).
 */
#define KV_LOG_MODULE "repair"
#include "cluster_int.h"
#include "merkle.h"
#include "ring_change.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#define MIN_DEPTH 6u            /* at least 64 leaves per range */
#define CELLS_PER_LEAF 2u       /* the depth aims at this many cells a leaf */
#define TICK_MS 250u
#define TREE_TIMEOUT_MS 120000u
#define PARALLEL 2u             /* streams at once */
#define WARN_EVERY_MS 3600000u
#define TASK_TRIES 5u
#define MAX_STREAMS_PER_RANGE 32u /* per replica and vnode range */           /* attempts per stream before the range fails */

typedef struct rrange {
    uint64_t start, end;
    bool primary;
} rrange_t;

typedef struct done_rec {      /* repair.state */
    uint64_t start, end, at_ms;
} done_rec_t;

typedef enum { RS_IDLE, RS_RUNNING, RS_DONE, RS_FAILED } run_state_t;
static const char *const RUN_STATE[] = {"idle", "running", "done", "failed"};

typedef enum { PH_TREES, PH_PULLS, PH_PUSHES } phase_t;

typedef struct task {
    struct repair_mgr *m;
    bool push;     /* have the peer pull from us; else we pull from it */
    uint32_t peer; /* slot */
    uint64_t *se;  /* the ranges, n (start, end) pairs: one stream */
    size_t n;
    bool started, finished;
    uint32_t tries;
    uint64_t retry_at;
} task_t;

/* A tree built on the repair thread: ours, or one a peer asked for. */
typedef struct tree_job {
    node_job_t job; /* first */
    struct repair_mgr *m;
    uint64_t start, end;
    uint32_t depth;
    uint64_t run;          /* ours: the run and range it belongs to */
    size_t range;
    peer_link_t *reply;    /* a peer's: answer on this link */
    uint64_t reply_id;
    merkle_t *tree;
    kv_status_t rc;
} tree_job_t;

struct repair_mgr {
    node_cluster_t *cl;
    node_pool_t *pool;
    struct event *timer;
    /* the run */
    run_state_t state;
    uint64_t run;              /* increments per run: stale completions */
    bool background;
    char node_filter[256];
    rrange_t *ranges;
    size_t nranges, at, ok, failed;
    bool begun;                /* ranges[at] has been started */
    phase_t phase;
    int round;                 /* 1: trees, pulls; 2: trees again, pushes */
    uint32_t depth;            /* of this range's trees, chosen in round 1 */
    merkle_t *mine;
    merkle_t *theirs[RING_MAX_RF];
    uint32_t peers[RING_MAX_RF];
    uint32_t npeers, trees_waiting;
    uint64_t msg_ids[RING_MAX_RF];
    uint64_t phase_since;
    bool range_failed;
    task_t *tasks;
    size_t ntasks, tasks_done, tasks_running;
    uint64_t next_msg;
    /* figures of the run */
    uint64_t started_ms, finished_ms;
    uint64_t leaves_differing, ranges_differing, keys_in, keys_out;
    char result[300];
    /* history */
    done_rec_t *done;
    size_t ndone, donecap;
    uint64_t next_background_ms, next_warn_ms;
    /* totals (metrics) */
    uint64_t t_ranges_ok, t_ranges_failed, t_leaves, t_keys_in, t_keys_out;
    struct {
        metric_series_t *ok, *failed, *leaves, *kin, *kout, *oldest, *running;
        uint64_t l_ok, l_failed, l_leaves, l_kin, l_kout;
    } mt;
    char info_vals[3][320];
};

static uint64_t now_ms(void) { return node_now_ns() / 1000000u; }
static uint64_t wall_ms(void) { return (uint64_t)kv_clock_wall_ms(kv_clock_system()); }

/* ---- the ranges this node replicates ----------------------------------- */

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Every vnode range (prev, t] of the ring this node is a replica of. */
static size_t my_ranges(node_cluster_t *cl, rrange_t **out)
{
    ring_t *r = cl->ring;
    size_t nt = ring_vnode_count(r), k = 0;
    uint64_t *tok = kv_malloc((nt ? nt : 1) * sizeof *tok);
    for (uint32_t i = 0; i < ring_node_count(r); i++) {
        const uint64_t *t;
        size_t m = ring_node_tokens(r, i, &t);
        memcpy(tok + k, t, m * sizeof *t);
        k += m;
    }
    qsort(tok, nt, sizeof *tok, u64_cmp);
    uint32_t self;
    rrange_t *rr = kv_calloc(nt ? nt : 1, sizeof *rr);
    size_t n = 0;
    if (ring_node_find(r, cl->node->cfg->node_name, &self) == KV_OK) {
        for (size_t i = 0; i < nt; i++) {
            uint32_t reps[RING_MAX_RF];
            size_t nr = ring_replicas(r, tok[i], reps, RING_MAX_RF);
            bool mine = false;
            for (size_t j = 0; j < nr; j++) mine |= reps[j] == self;
            if (!mine) continue;
            rr[n].start = tok[i == 0 ? nt - 1 : i - 1];
            rr[n].end = tok[i];
            rr[n].primary = nr && reps[0] == self;
            n++;
        }
    }
    kv_free(tok);
    *out = rr;
    return n;
}

/* ---- history ------------------------------------------------------------ */

static char *state_path(const node_cluster_t *cl, const char *suffix)
{
    size_t len = strlen(cl->node->cfg->data_dir) + 32;
    char *p = kv_malloc(len);
    snprintf(p, len, "%s/repair.state%s", cl->node->cfg->data_dir, suffix);
    return p;
}

static void history_load(struct repair_mgr *m)
{
    char *path = state_path(m->cl, "");
    FILE *f = fopen(path, "r");
    kv_free(path);
    if (!f) return;
    unsigned long long s, e, at;
    while (fscanf(f, "range %llu %llu %llu\n", &s, &e, &at) == 3) {
        if (m->ndone == m->donecap) {
            m->donecap = m->donecap ? m->donecap * 2 : 64;
            m->done = kv_realloc(m->done, m->donecap * sizeof *m->done);
        }
        m->done[m->ndone++] = (done_rec_t){s, e, at};
    }
    fclose(f);
}

static void history_save(struct repair_mgr *m)
{
    char *path = state_path(m->cl, ""), *tmp = state_path(m->cl, ".tmp");
    FILE *f = fopen(tmp, "w");
    bool ok = f != NULL;
    for (size_t i = 0; ok && i < m->ndone; i++)
        ok = fprintf(f, "range %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", m->done[i].start,
                     m->done[i].end, m->done[i].at_ms) > 0;
    if (f) {
        ok = fflush(f) == 0 && fsync(fileno(f)) == 0 && ok;
        ok = fclose(f) == 0 && ok;
    }
    if (!ok || rename(tmp, path) != 0)
        KV_LOG(KV_WARN, "cannot save repair times in %s: %s", path, strerror(errno));
    kv_free(path);
    kv_free(tmp);
}

static void history_note(struct repair_mgr *m, uint64_t s, uint64_t e, uint64_t at)
{
    for (size_t i = 0; i < m->ndone; i++)
        if (m->done[i].start == s && m->done[i].end == e) {
            m->done[i].at_ms = at;
            history_save(m);
            return;
        }
    if (m->ndone == m->donecap) {
        m->donecap = m->donecap ? m->donecap * 2 : 64;
        m->done = kv_realloc(m->done, m->donecap * sizeof *m->done);
    }
    m->done[m->ndone++] = (done_rec_t){s, e, at};
    history_save(m);
}

/* The age in ms of the least recently repaired range this node replicates
 * (UINT64_MAX: one was never repaired); *n_never counts those. */
static uint64_t oldest_age(struct repair_mgr *m, size_t *n_never)
{
    rrange_t *rr;
    size_t n = my_ranges(m->cl, &rr);
    uint64_t now = wall_ms(), oldest = 0;
    size_t never = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t at = 0;
        for (size_t j = 0; j < m->ndone; j++)
            if (m->done[j].start == rr[i].start && m->done[j].end == rr[i].end)
                at = m->done[j].at_ms;
        if (!at) never++;
        uint64_t age = at ? (now > at ? now - at : 0) : UINT64_MAX;
        if (age > oldest) oldest = age;
    }
    kv_free(rr);
    if (n_never) *n_never = never;
    return n ? oldest : 0;
}

/* ---- trees on the repair thread ------------------------------------------ */

static void tree_work(node_job_t *nj)
{
    tree_job_t *j = (tree_job_t *)nj;
    eng_t *e = j->m->cl->node->eng;
    uint64_t rate = j->m->cl->node->cfg->repair_bytes_per_sec;
    j->tree = merkle_create(j->start, j->end, j->depth);
    uint64_t lo = j->start + 1, hi = j->end;
    if (j->start == j->end) {
        lo = 0;
        hi = UINT64_MAX;
    }
    eng_iter_t *it = eng_iter_create(e, NULL, lo, hi);
    uint64_t bytes = 0, t0 = node_now_ns(), n = 0;
    for (eng_iter_seek_first(it); eng_iter_valid(it); eng_iter_next(it)) {
        eng_cell_t c = {.ts = eng_iter_ts(it), .tombstone = eng_iter_tombstone(it),
                        .expire_ms = eng_iter_expire_ms(it)};
        kv_slice_t key = eng_iter_key(it);
        if (!c.tombstone) c.value = eng_iter_value(it);
        else c.expire_ms = 0; /* an expired value reads as a tombstone here */
        merkle_add(j->tree, eng_iter_token(it), key, &c);
        bytes += key.len + c.value.len + 32;
        if (rate && (++n & 255) == 0) { /* pace the scan */
            uint64_t should = bytes * 1000000000ull / rate, took = node_now_ns() - t0;
            if (should > took) usleep((useconds_t)KV_MIN((should - took) / 1000, 1000000));
        }
    }
    j->rc = eng_iter_status(it);
    eng_iter_destroy(it);
    merkle_finish(j->tree);
}

static void range_step(struct repair_mgr *m);
static void trees_request(struct repair_mgr *m);
static void peers_request(struct repair_mgr *m);

static void tree_done(node_job_t *nj)
{
    tree_job_t *j = (tree_job_t *)nj;
    struct repair_mgr *m = j->m;
    if (j->reply) { /* a peer's request */
        if (!peer_link_closed(j->reply)) {
            size_t n = 0;
            const uint64_t *leaves = j->rc == KV_OK ? merkle_leaves(j->tree, &n) : NULL;
            kv_buf_t *b = &m->cl->node->scratch;
            if (peer_encode_merkle_reply(b, j->reply_id, hlc_last(m->cl->node->hlc), j->rc,
                                         j->tree ? merkle_depth(j->tree) : 0,
                                         j->tree ? merkle_cells(j->tree) : 0, leaves,
                                         (uint32_t)m->cl->node->cfg->max_frame_bytes) == KV_OK)
                peer_link_write(j->reply, b);
            kv_buf_clear(b);
        }
        peer_link_unref(j->reply);
    } else if (j->run == m->run && m->state == RS_RUNNING && j->range == m->at &&
               m->phase == PH_TREES && !m->mine) {
        if (j->rc == KV_OK) {
            if (m->round == 1) {
                /* fine enough that a leaf holds about CELLS_PER_LEAF cells,
                 * no finer: the peers send 8 bytes a leaf */
                uint64_t cells = merkle_cells(j->tree) / CELLS_PER_LEAF;
                uint32_t d = MIN_DEPTH;
                while (d < merkle_depth(j->tree) && ((uint64_t)1 << d) < cells) d++;
                m->depth = KV_MIN(d, merkle_depth(j->tree));
            }
            m->mine = merkle_fold(j->tree, m->depth);
            m->trees_waiting--;
            if (m->mine) peers_request(m);
            range_step(m);
            merkle_destroy(j->tree);
            kv_free(j);
            return;
        } else {
            m->range_failed = true;
            snprintf(m->result, sizeof m->result, "reading this node's range failed: %s",
                     kv_status_str(j->rc));
        }
        m->trees_waiting--;
        range_step(m);
    }
    merkle_destroy(j->tree);
    kv_free(j);
}

static kv_status_t tree_submit(struct repair_mgr *m, tree_job_t *j)
{
    j->job.work = tree_work;
    j->job.done = tree_done;
    j->m = m;
    if (!m->pool || node_pool_submit(m->pool, &j->job) != KV_OK) {
        if (j->reply) peer_link_unref(j->reply);
        kv_free(j);
        return KV_BUSY;
    }
    return KV_OK;
}

void repair_on_merkle_req(node_cluster_t *cl, peer_link_t *l, uint64_t msg_id,
                          uint64_t start, uint64_t end, uint32_t depth)
{
    struct repair_mgr *m = cl->repair;
    tree_job_t *j = kv_calloc(1, sizeof *j);
    j->start = start;
    j->end = end;
    j->depth = depth;
    j->reply = l;
    peer_link_ref(l);
    j->reply_id = msg_id;
    if (tree_submit(m, j) != KV_OK) {
        kv_buf_t *b = &cl->node->scratch;
        if (peer_encode_merkle_reply(b, msg_id, hlc_last(cl->node->hlc), KV_BUSY, 0, 0,
                                     NULL, 0) == KV_OK)
            peer_link_write(l, b);
        kv_buf_clear(b);
    }
}

void repair_on_merkle_reply(node_cluster_t *cl, uint32_t from, uint64_t msg_id,
                            const peer_merkle_reply_t *r)
{
    struct repair_mgr *m = cl->repair;
    if (m->state != RS_RUNNING || m->phase != PH_TREES) return;
    for (uint32_t i = 0; i < m->npeers; i++) {
        if (m->peers[i] != from || m->msg_ids[i] != msg_id || m->theirs[i]) continue;
        m->msg_ids[i] = 0;
        m->trees_waiting--;
        const rrange_t *rg = &m->ranges[m->at];
        if (r->status == KV_OK) {
            size_t n = (size_t)1 << r->depth;
            uint64_t *leaves = kv_malloc(n * sizeof *leaves);
            for (size_t k = 0; k < n; k++) leaves[k] = peer_merkle_leaf(r, k);
            m->theirs[i] = merkle_from_leaves(rg->start, rg->end, r->depth, leaves, n);
            kv_free(leaves);
        }
        if (!m->theirs[i]) {
            m->range_failed = true;
            snprintf(m->result, sizeof m->result, "%s could not send its tree: %s",
                     cl->peers[from]->name, kv_status_str(r->status));
        }
        range_step(m);
        return;
    }
}

/* ---- a run ---------------------------------------------------------------- */

static void range_clear(struct repair_mgr *m)
{
    merkle_destroy(m->mine);
    m->mine = NULL;
    for (uint32_t i = 0; i < m->npeers; i++) {
        merkle_destroy(m->theirs[i]);
        m->theirs[i] = NULL;
    }
    m->npeers = m->trees_waiting = 0;
    memset(m->msg_ids, 0, sizeof m->msg_ids);
    for (size_t i = 0; i < m->ntasks; i++) kv_free(m->tasks[i].se);
    kv_free(m->tasks);
    m->tasks = NULL;
    m->ntasks = m->tasks_done = m->tasks_running = 0;
    m->range_failed = false;
}

static void run_finish(struct repair_mgr *m)
{
    m->finished_ms = now_ms();
    m->t_leaves += m->leaves_differing;
    m->t_keys_in += m->keys_in;
    m->t_keys_out += m->keys_out;
    m->state = m->failed ? RS_FAILED : RS_DONE;
    char detail[300];
    snprintf(detail, sizeof detail, "%zu of %zu range(s) repaired, %" PRIu64 " differed "
             "(%" PRIu64 " leaves); %" PRIu64 " cells in, %" PRIu64 " out, %" PRIu64 " ms",
             m->ok, m->nranges, m->ranges_differing, m->leaves_differing, m->keys_in,
             m->keys_out, m->finished_ms - m->started_ms);
    if (m->failed && m->result[0]) {
        char first[300];
        snprintf(first, sizeof first, "%s", m->result);
        snprintf(m->result, sizeof m->result, "%.140s; first failure: %.130s", detail, first);
    } else {
        snprintf(m->result, sizeof m->result, "%s", detail);
    }
    KV_LOG(m->failed ? KV_WARN : KV_INFO, "repair%s %s: %s",
           m->background ? " (background)" : "", RUN_STATE[m->state], m->result);
    range_clear(m);
}

static void range_next(struct repair_mgr *m);

/* Start the task queue's next streams. */
static void tasks_pump(struct repair_mgr *m);

static void task_done(void *arg, kv_status_t rc, uint64_t keys, uint64_t bytes,
                      const char *why)
{
    (void)bytes;
    task_t *t = arg;
    struct repair_mgr *m = t->m;
    m->tasks_running--;
    if (rc != KV_OK && ++t->tries < TASK_TRIES && m->state == RS_RUNNING) {
        /* a link still coming back up, a busy source: again shortly */
        t->started = false;
        t->retry_at = now_ms() + 1000u * t->tries;
        KV_LOG(KV_DEBUG, "repair: %s %s failed (%s); retrying",
               t->push ? "pushing to" : "pulling from", m->cl->peers[t->peer]->name,
               why ? why : kv_status_str(rc));
        range_step(m);
        return;
    }
    t->finished = true;
    m->tasks_done++;
    if (rc == KV_OK) {
        if (t->push) m->keys_out += keys;
        else m->keys_in += keys;
    } else {
        m->range_failed = true;
        snprintf(m->result, sizeof m->result, "%s %s: %s", t->push ? "pushing to" : "pulling from",
                 m->cl->peers[t->peer]->name, why ? why : kv_status_str(rc));
    }
    range_step(m);
}

static void tasks_pump(struct repair_mgr *m)
{
    bool want_push = m->phase == PH_PUSHES;
    uint64_t now = now_ms();
    for (size_t i = 0; i < m->ntasks && m->tasks_running < PARALLEL; i++) {
        task_t *t = &m->tasks[i];
        if (t->started || t->push != want_push || now < t->retry_at) continue;
        t->started = true;
        m->tasks_running++;
        kv_status_t rc = t->push
                             ? stream_fetch_ranges(m->cl, t->peer, t->se, t->n, &m->cl->self,
                                                   1, task_done, t)
                             : stream_pull_ranges(m->cl, t->peer, t->se, t->n, task_done, t);
        if (rc != KV_OK) task_done(t, rc, 0, 0, "not connected");
    }
}

/* One stream per replica and direction carries all its ranges. */
static void task_add(struct repair_mgr *m, bool push, uint32_t peer,
                     const merkle_range_t *r, size_t n)
{
    m->tasks = kv_realloc(m->tasks, (m->ntasks + 1) * sizeof *m->tasks);
    uint64_t *se = kv_malloc(2 * n * sizeof *se);
    for (size_t k = 0; k < n; k++) {
        se[2 * k] = r[k].start;
        se[2 * k + 1] = r[k].end;
    }
    m->tasks[m->ntasks++] = (task_t){.m = m, .push = push, .peer = peer, .se = se, .n = n};
}

static size_t count_phase(const struct repair_mgr *m, bool push)
{
    size_t n = 0;
    for (size_t i = 0; i < m->ntasks; i++) n += m->tasks[i].push == push;
    return n;
}

static size_t done_phase(const struct repair_mgr *m, bool push)
{
    size_t n = 0;
    for (size_t i = 0; i < m->ntasks; i++)
        n += m->tasks[i].push == push && m->tasks[i].finished;
    return n;
}

/* The trees are in. Round 1: pull from each replica what differs from
 * ours. Round 2 (ours now holds the newest of everything): have each
 * replica pull what still differs from ours. Returns the differing ranges
 * found. */
/* Merge the ranges (in ring order, within one vnode range) until at most
 * `max` remain (what one stream request can name), closing the smallest
 * gaps first. */
static size_t coalesce(merkle_range_t *r, size_t n, size_t max)
{
    while (n > max) {
        size_t best = 0;
        uint64_t gap = UINT64_MAX;
        for (size_t k = 0; k + 1 < n; k++) {
            uint64_t g = r[k + 1].start - r[k].end; /* wraps like the ring */
            if (g < gap) {
                gap = g;
                best = k;
            }
        }
        r[best].end = r[best + 1].end;
        memmove(r + best + 1, r + best + 2, (n - best - 2) * sizeof *r);
        n--;
    }
    return n;
}

/* The trees are in. Round 1: pull from each replica what differs from
 * ours (a leaf a second replica holds exactly as an earlier one is pulled
 * from the earlier one only). Round 2 (ours now holds the newest of
 * everything): have each replica pull what still differs from ours.
 * Returns the differing ranges found. */
static size_t compare(struct repair_mgr *m)
{
    size_t total = 0;
    for (uint32_t i = 0; i < m->npeers; i++) {
        uint32_t leaves;
        kv_status_t rc;
        size_t n = merkle_diff(m->mine, m->theirs[i], NULL, 0, &leaves, NULL, &rc);
        if (rc != KV_OK) {
            m->range_failed = true;
            snprintf(m->result, sizeof m->result, "%s's tree covers another range",
                     m->cl->peers[m->peers[i]]->name);
            return 0;
        }
        if (m->round == 1) m->leaves_differing += leaves;
        if (n == 0) continue;
        merkle_range_t *d = kv_malloc(n * sizeof *d);
        merkle_diff(m->mine, m->theirs[i], d, n, NULL, NULL, NULL);
        if (m->round == 1 && i > 0) {
            /* keep only the leaves no earlier replica holds alike */
            merkle_range_t *keep = kv_malloc(leaves * sizeof *keep);
            size_t nk = 0, nl;
            const uint64_t *theirs = merkle_leaves(m->theirs[i], &nl);
            for (size_t k = 0; k < n; k++) {
                uint32_t first = merkle_leaf_of(m->mine, d[k].start + 1);
                uint32_t last = merkle_leaf_of(m->mine, d[k].end);
                int64_t run = -1;
                for (uint32_t leaf = first; leaf <= last + 1; leaf++) {
                    bool need = leaf <= last;
                    for (uint32_t q = 0; need && q < i; q++)
                        if (merkle_leaves(m->theirs[q], &nl)[leaf] == theirs[leaf])
                            need = false;
                    if (need && run < 0) run = leaf;
                    if (!need && run >= 0) {
                        merkle_leaf_range(m->mine, (uint32_t)run, leaf - 1,
                                          &keep[nk].start, &keep[nk].end);
                        nk++;
                        run = -1;
                    }
                }
            }
            kv_free(d);
            d = keep;
            n = nk;
        }
        n = coalesce(d, n, PEER_STREAM_MAX_RANGES);
        if (n) task_add(m, m->round == 2, m->peers[i], d, n);
        total += n;
        kv_free(d);
    }
    if (m->round == 1 && total) m->ranges_differing++;
    return total;
}

static void range_step(struct repair_mgr *m)
{
    if (m->state != RS_RUNNING) return;
    if (m->range_failed && m->tasks_running == 0 && m->trees_waiting == 0) {
        const rrange_t *rg = &m->ranges[m->at];
        KV_LOG(KV_WARN, "repair of (%016" PRIx64 ", %016" PRIx64 "] failed: %s", rg->start,
               rg->end, m->result);
        m->failed++;
        m->t_ranges_failed++;
        range_next(m);
        return;
    }
    if (m->range_failed) return; /* wait for what runs */
    switch (m->phase) {
    case PH_TREES: {
        if (m->trees_waiting) return;
        size_t differ = compare(m);
        if (m->range_failed) {
            range_step(m);
            return;
        }
        if (differ == 0) break; /* in sync (round 1) or done (round 2) */
        m->phase = m->round == 1 ? PH_PULLS : PH_PUSHES;
        range_step(m);
        return;
    }
    case PH_PULLS:
        if (done_phase(m, false) < count_phase(m, false)) {
            tasks_pump(m);
            return;
        }
        m->round = 2; /* compare again: what do the others still lack? */
        trees_request(m);
        range_step(m);
        return;
    case PH_PUSHES:
        if (done_phase(m, true) < count_phase(m, true)) {
            tasks_pump(m);
            return;
        }
        break;
    }
    const rrange_t *rg = &m->ranges[m->at];
    history_note(m, rg->start, rg->end, wall_ms());
    m->ok++;
    m->t_ranges_ok++;
    range_next(m);
}

/* Build our tree of the current range and ask every peer for theirs. */
static void trees_request(struct repair_mgr *m)
{
    const rrange_t *rg = &m->ranges[m->at];
    m->phase = PH_TREES;
    m->phase_since = now_ms();
    merkle_destroy(m->mine);
    m->mine = NULL;
    for (uint32_t i = 0; i < m->npeers; i++) {
        merkle_destroy(m->theirs[i]);
        m->theirs[i] = NULL;
    }
    /* ours */
    tree_job_t *j = kv_calloc(1, sizeof *j);
    j->start = rg->start;
    j->end = rg->end;
    j->depth = m->round == 1 ? MERKLE_MAX_DEPTH : m->depth;
    j->run = m->run;
    j->range = m->at;
    m->trees_waiting = 1;
    if (tree_submit(m, j) != KV_OK) {
        m->trees_waiting = 0;
        m->range_failed = true;
        snprintf(m->result, sizeof m->result, "the repair thread is busy");
    }
}

/* Our tree is in: ask every peer for theirs at the same depth. */
static void peers_request(struct repair_mgr *m)
{
    node_cluster_t *cl = m->cl;
    const rrange_t *rg = &m->ranges[m->at];
    /* theirs */
    for (uint32_t i = 0; i < m->npeers; i++) {
        peer_link_t *l = peer_out_link(cl, m->peers[i]);
        if (!l) {
            m->range_failed = true;
            snprintf(m->result, sizeof m->result, "replica %s is down: a repair needs "
                     "every replica", cl->peers[m->peers[i]]->name);
            continue;
        }
        m->msg_ids[i] = ++m->next_msg;
        kv_buf_t *b = &cl->node->scratch;
        if (peer_encode_merkle_req(b, m->msg_ids[i], hlc_last(cl->node->hlc), rg->start,
                                   rg->end, m->depth, 0) == KV_OK) {
            peer_link_write(l, b);
            m->trees_waiting++;
        }
        kv_buf_clear(b);
    }
}

/* Start the next range, or finish the run. */
static void range_next(struct repair_mgr *m)
{
    node_cluster_t *cl = m->cl;
    range_clear(m);
    if (m->begun) m->at++;
    m->begun = true;
    if (m->at >= m->nranges) {
        run_finish(m);
        return;
    }
    const rrange_t *rg = &m->ranges[m->at];
    m->round = 1;
    uint32_t reps[RING_MAX_RF];
    size_t nr = ring_replicas(cl->ring, rg->end, reps, RING_MAX_RF);
    for (size_t i = 0; i < nr; i++) {
        uint32_t slot = cl->ring_slot[reps[i]];
        if (slot == cl->self) continue;
        node_peer_t *p = cl->peers[slot];
        if (m->node_filter[0] && strcmp(p->name, m->node_filter) &&
            strcmp(p->node_id, m->node_filter))
            continue;
        m->peers[m->npeers++] = slot;
    }
    if (m->npeers == 0) { /* nothing to compare with: trivially in sync */
        m->ok++;
        m->t_ranges_ok++;
        history_note(m, rg->start, rg->end, wall_ms());
        range_next(m);
        return;
    }
    trees_request(m);
    range_step(m);
}

static kv_status_t run_start(struct repair_mgr *m, bool background, bool primary_only,
                             const char *node_filter, bool have_range, uint64_t rs,
                             uint64_t re, char *msg, size_t cap)
{
    node_cluster_t *cl = m->cl;
    if (m->state == RS_RUNNING) {
        snprintf(msg, cap, "a repair is already running on this node");
        return KV_BUSY;
    }
    if (ops_busy(cl) || cl->future) {
        snprintf(msg, cap, "a ring change is in progress: repair after it");
        return KV_BUSY;
    }
    rrange_t *rr;
    size_t n = my_ranges(cl, &rr), k = 0;
    for (size_t i = 0; i < n; i++) {
        if (primary_only && !rr[i].primary) continue;
        if (have_range && !(ring_range_contains(rs, re, rr[i].end) ||
                            ring_range_contains(rr[i].start, rr[i].end, re)))
            continue;
        rr[k++] = rr[i];
    }
    if (k == 0) {
        kv_free(rr);
        snprintf(msg, cap, "this node replicates no range%s", have_range ? " there" : "");
        return KV_INVALID;
    }
    if (node_filter && *node_filter && !cluster_peer_find(cl, node_filter)) {
        bool found = false;
        for (uint32_t i = 0; i < cl->npeers; i++) found |= !strcmp(cl->peers[i]->node_id, node_filter);
        if (!found) {
            kv_free(rr);
            snprintf(msg, cap, "no member with the name or node id %s", node_filter);
            return KV_NOTFOUND;
        }
    }
    kv_free(m->ranges);
    m->ranges = rr;
    m->nranges = k;
    m->at = m->ok = m->failed = 0;
    m->run++;
    m->background = background;
    snprintf(m->node_filter, sizeof m->node_filter, "%s", node_filter ? node_filter : "");
    m->leaves_differing = m->ranges_differing = m->keys_in = m->keys_out = 0;
    m->result[0] = 0;
    m->started_ms = now_ms();
    m->state = RS_RUNNING;
    m->begun = false;
    snprintf(msg, cap, "repair of %zu range(s) started%s%s", k,
             m->node_filter[0] ? " with " : "", m->node_filter);
    KV_LOG(KV_INFO, "%s%s", msg, background ? " (background)" : "");
    range_next(m);
    return KV_OK;
}

/* "repair" [primary] [range=S:E] [node=NAME] */
kv_status_t repair_admin(node_cluster_t *cl, const char *arg, char *msg, size_t cap)
{
    struct repair_mgr *m = cl->repair;
    bool primary = false, have_range = false;
    uint64_t rs = 0, re = 0;
    char node[256] = "";
    char buf[512];
    snprintf(buf, sizeof buf, "%s", arg);
    for (char *save = NULL, *w = strtok_r(buf, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
        if (!strcmp(w, "primary")) {
            primary = true;
        } else if (!strncmp(w, "range=", 6)) {
            char *end;
            errno = 0;
            rs = strtoull(w + 6, &end, 0);
            if (*end != ':' || errno) goto bad;
            re = strtoull(end + 1, &end, 0);
            if (*end || errno) goto bad;
            have_range = true;
        } else if (!strncmp(w, "node=", 5)) {
            snprintf(node, sizeof node, "%s", w + 5);
        } else {
            goto bad;
        }
    }
    return run_start(m, false, primary, node, have_range, rs, re, msg, cap);
bad:
    snprintf(msg, cap, "repair takes: primary, range=START:END (tokens), node=NAME");
    return KV_INVALID;
}

/* ---- the tick: timeouts, background repair, warnings --------------------- */

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct repair_mgr *m = arg;
    node_cluster_t *cl = m->cl;
    uint64_t now = now_ms();
    if (m->state == RS_RUNNING && m->phase == PH_TREES && m->trees_waiting &&
        now - m->phase_since > TREE_TIMEOUT_MS) {
        m->range_failed = true;
        m->trees_waiting = 0; /* answers that come later are dropped */
        snprintf(m->result, sizeof m->result, "a replica's tree did not arrive in %u s",
                 TREE_TIMEOUT_MS / 1000);
        range_step(m);
    }
    if (m->state == RS_RUNNING && m->phase != PH_TREES) range_step(m); /* retries */
    const node_config_t *cfg = cl->node->cfg;
    if (cfg->repair_interval_ms && now >= m->next_background_ms &&
        cl->node->state == NODE_SERVING && m->state != RS_RUNNING) {
        m->next_background_ms = now + cfg->repair_interval_ms;
        char msg[256];
        if (run_start(m, true, true, NULL, false, 0, 0, msg, sizeof msg) != KV_OK)
            KV_LOG(KV_INFO, "background repair not started: %s", msg);
    }
    if (now >= m->next_warn_ms) {
        m->next_warn_ms = now + WARN_EVERY_MS;
        size_t never;
        uint64_t age = oldest_age(m, &never);
        uint64_t grace = cfg->gc_grace_seconds * 1000;
        if (age != UINT64_MAX && age > grace)
            KV_LOG(KV_WARN, "a range this node replicates was last repaired %" PRIu64
                   " h ago, longer than gc_grace_seconds (%" PRIu64 " h): deleted data "
                   "may come back from a replica that missed the delete; run cairn repair",
                   age / 3600000, grace / 3600000);
    }
    struct timeval tv = {0, TICK_MS * 1000};
    evtimer_add(m->timer, &tv);
}

/* ---- figures ---------------------------------------------------------------- */

size_t repair_info(node_cluster_t *cl, proto_info_item_t *it, size_t cap)
{
    struct repair_mgr *m = cl->repair;
    if (!m || cap < 9) return 0;
    size_t k = 0, never;
    uint64_t age = oldest_age(m, &never);
    it[k++] = (proto_info_item_t){"repair_state", RUN_STATE[m->state], 0};
    it[k++] = (proto_info_item_t){"repair_ranges", NULL, m->nranges};
    it[k++] = (proto_info_item_t){"repair_ranges_done", NULL, m->ok + m->failed};
    it[k++] = (proto_info_item_t){"repair_ranges_failed", NULL, m->failed};
    it[k++] = (proto_info_item_t){"repair_leaves_differing", NULL, m->leaves_differing};
    it[k++] = (proto_info_item_t){"repair_keys_in", NULL, m->keys_in};
    it[k++] = (proto_info_item_t){"repair_keys_out", NULL, m->keys_out};
    snprintf(m->info_vals[0], sizeof m->info_vals[0], "%s", m->result);
    it[k++] = (proto_info_item_t){"repair_result", m->info_vals[0], 0};
    if (age == UINT64_MAX)
        snprintf(m->info_vals[1], sizeof m->info_vals[1], "never (%zu range(s) never "
                 "repaired)", never);
    else
        snprintf(m->info_vals[1], sizeof m->info_vals[1], "%" PRIu64, age / 1000);
    it[k++] = (proto_info_item_t){"repair_oldest_range_age_s", m->info_vals[1], 0};
    return k;
}

void repair_metrics(node_cluster_t *cl)
{
    struct repair_mgr *m = cl->repair;
    if (!m) return;
    metrics_counter_mirror(m->mt.ok, m->t_ranges_ok, &m->mt.l_ok);
    metrics_counter_mirror(m->mt.failed, m->t_ranges_failed, &m->mt.l_failed);
    bool run = m->state == RS_RUNNING; /* a finished run is in the totals */
    metrics_counter_mirror(m->mt.leaves, m->t_leaves + (run ? m->leaves_differing : 0),
                           &m->mt.l_leaves);
    metrics_counter_mirror(m->mt.kin, m->t_keys_in + (run ? m->keys_in : 0), &m->mt.l_kin);
    metrics_counter_mirror(m->mt.kout, m->t_keys_out + (run ? m->keys_out : 0),
                           &m->mt.l_kout);
    uint64_t age = oldest_age(m, NULL);
    metrics_gauge_set(m->mt.oldest, age == UINT64_MAX ? -1 : (double)age / 1000.0);
    metrics_gauge_set(m->mt.running, m->state == RS_RUNNING);
}

#define L(...) ((const char *const[]){__VA_ARGS__, NULL})

static void metrics_setup(struct repair_mgr *m)
{
    metrics_t *mt = m->cl->node->metrics;
    metrics_register(mt, "cairn_repair_ranges_total", "Token ranges this node repaired, "
                     "by result.", METRIC_COUNTER, L("result"));
    metrics_register(mt, "cairn_repair_leaves_differing_total", "Merkle leaves that "
                     "differed between replicas.", METRIC_COUNTER, NULL);
    metrics_register(mt, "cairn_repair_keys_total", "Cells repair copied, by direction.",
                     METRIC_COUNTER, L("direction"));
    metrics_register(mt, "cairn_repair_oldest_range_seconds", "Age of the least recently "
                     "repaired range this node replicates (-1: one never was); keep it "
                     "under gc_grace_seconds.", METRIC_GAUGE, NULL);
    metrics_register(mt, "cairn_repair_running", "1 while a repair runs on this node.",
                     METRIC_GAUGE, NULL);
    m->mt.ok = metrics_series(mt, "cairn_repair_ranges_total", L("ok"));
    m->mt.failed = metrics_series(mt, "cairn_repair_ranges_total", L("failed"));
    m->mt.leaves = metrics_series(mt, "cairn_repair_leaves_differing_total", NULL);
    m->mt.kin = metrics_series(mt, "cairn_repair_keys_total", L("in"));
    m->mt.kout = metrics_series(mt, "cairn_repair_keys_total", L("out"));
    m->mt.oldest = metrics_series(mt, "cairn_repair_oldest_range_seconds", NULL);
    m->mt.running = metrics_series(mt, "cairn_repair_running", NULL);
}

/* ---- life cycle ---------------------------------------------------------------- */

kv_status_t repair_start(node_cluster_t *cl)
{
    struct repair_mgr *m = kv_calloc(1, sizeof *m);
    m->cl = cl;
    cl->repair = m;
    m->pool = node_pool_create(cl->node, 1, 256);
    m->timer = evtimer_new(cl->node->base, tick_cb, m);
    history_load(m);
    uint64_t now = now_ms();
    m->next_background_ms = now + (cl->node->cfg->repair_interval_ms
                                       ? cl->node->cfg->repair_interval_ms : 0);
    m->next_warn_ms = now + 60000; /* give gossip time to build the ring */
    metrics_setup(m);
    struct timeval tv = {0, TICK_MS * 1000};
    evtimer_add(m->timer, &tv);
    return KV_OK;
}

void repair_quiesce(node_cluster_t *cl)
{
    struct repair_mgr *m = cl->repair;
    if (!m || !m->pool) return;
    m->state = m->state == RS_RUNNING ? RS_FAILED : m->state;
    node_pool_destroy(m->pool); /* finishes tree scans before the engine closes */
    m->pool = NULL;
}

void repair_stop(node_cluster_t *cl)
{
    struct repair_mgr *m = cl->repair;
    if (!m) return;
    repair_quiesce(cl);
    range_clear(m);
    if (m->timer) event_free(m->timer);
    kv_free(m->ranges);
    kv_free(m->done);
    kv_free(m);
    cl->repair = NULL;
}
