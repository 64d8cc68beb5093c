/* ops.c -- changing the ring: bootstrap, replace, decommission, removenode
 * and cleanup, one change at a time, driven from the node that makes it.
 *
 * DESIGN  A change is announced by gossip status; everyone then computes the
 *         same future ring (members.c) and sends writes to the pending
 *         replicas too. The node that makes the change waits ring_delay_ms
 *         so every coordinator has heard of it, copies the ranges that move
 *         (ring_change_transfers: from the displaced replica, or from every
 *         survivor of a dead one) with FETCH/streams (stream.c), and then
 *         announces the end state. Progress is saved in
 *         data_dir/ring_change.state, so a node restarted in the middle
 *         resumes where it was; a transfer that fails is retried (copying a
 *         range again is harmless: last-write-wins).
 *
 *   bootstrap (the joining node; auto_bootstrap on)
 *     JOINING(tokens announced) --ring_delay--> STREAMING --all ranges-->
 *     NORMAL
 *   replace (the new node; replace_node = X, X dead)
 *     JOINING(X's tokens) --ring_delay--> STREAMING from X's survivors -->
 *     X announced LEFT on its behalf, NORMAL (newer generation wins X's
 *     tokens)
 *   decommission (the leaving node L; `cairn decommission`)
 *     LEAVING --ring_delay--> STREAMING (each new owner pulls from L) -->
 *     hints delivered (30 s at most) --> LEFT: L answers no more requests
 *   removenode (any live node Y for a dead X; `cairn removenode X`)
 *     X announced LEAVING on its behalf --ring_delay--> STREAMING (each new
 *     owner pulls from every survivor) --> X announced LEFT
 *   cleanup (`cairn cleanup`): rewrite the engine without the ranges this
 *     node does not replicate (eng_cleanup, on a worker thread).
 *
 *   Refused: a second change while one runs (any member JOINING or
 *   LEAVING), decommission below replication_factor nodes, removenode of a
 *   live node, cleanup during a change.
 *
 * INVARIANTS (1) at most one change is driven from this node; (2) a change
 *            announces its end state only after every transfer succeeded;
 *            (3) the saved state names the change and the transfers done.
 * THREADING  Loop thread, except cleanup_work (a worker).
 */
#define KV_LOG_MODULE "ops"
#include "cluster_int.h"
#include "ring_change.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <event2/event.h>

#define TICK_MS 250u
#define PARALLEL 2u             /* transfers at once */
#define RETRY_MAX_MS 30000u
#define HINT_WAIT_MS 30000u     /* decommission: hints delivered before LEFT */

typedef enum {
    OP_NONE,
    OP_BOOTSTRAP,
    OP_REPLACE,
    OP_DECOMMISSION,
    OP_REMOVE,
} op_kind_t;

typedef enum {
    ST_IDLE,
    ST_WAIT,      /* announced: waiting ring_delay_ms */
    ST_STREAMING,
    ST_HINTS,     /* decommission: waiting for hints to drain */
    ST_DONE,
    ST_FAILED,
} op_state_t;

static const char *const KIND[] = {"none", "bootstrap", "replace", "decommission",
                                   "removenode"};
static const char *const STATE[] = {"idle", "waiting", "streaming", "hints", "done",
                                    "failed"};

typedef struct xfer {
    ring_transfer_t t; /* names point into ops->cur / ops->fut */
    bool done, running;
    uint32_t tries;
    uint64_t retry_at;
    uint64_t keys, bytes;
    struct ops *o;
} xfer_t;

typedef struct cleanup_job {
    node_job_t job; /* first */
    struct ops *o;
    ring_t *ring;   /* a copy: the loop may change cl->ring meanwhile */
    uint32_t self;  /* this node's index in ring */
    uint64_t dropped;
    kv_status_t rc;
    uint64_t started_ms;
} cleanup_job_t;

struct ops {
    node_cluster_t *cl;
    struct event *timer;
    op_kind_t kind;
    op_state_t state;
    char subject[256];      /* removenode / replace: the dead node */
    uint64_t since_ms;      /* the state began */
    ring_t *cur, *fut;      /* frozen when streaming starts */
    xfer_t *x;
    size_t nx, ndone, running;
    size_t ranges_total, ranges_done; /* of the last plan, kept for INFO */
    size_t ranges_resumed;  /* copied before a restart, skipped after it */
    uint64_t keys, bytes, started_ms;
    char error[256];
    char refusal[256];      /* left, or a replace that cannot be done */
    bool left;              /* this node has left the ring */
    /* cleanup */
    node_pool_t *pool;
    bool cleaning;
    char cleanup_result[160];
    kv_buf_t resume_done;   /* transfers a restarted change had finished */
    /* INFO storage */
    char info_vals[4][300];
};

static uint64_t now_ms(void) { return node_now_ns() / 1000000u; }

static void ops_set_state(ops_t *o, op_state_t st)
{
    o->state = st;
    o->since_ms = now_ms();
}

/* ---- the saved state ---------------------------------------------------- */

static char *state_path(const node_cluster_t *cl)
{
    size_t len = strlen(cl->node->cfg->data_dir) + sizeof "/ring_change.state";
    char *p = kv_malloc(len);
    snprintf(p, len, "%s/ring_change.state", cl->node->cfg->data_dir);
    return p;
}

/* Write the change and the transfers done: temp file, fsync, rename. */
static void state_save(ops_t *o)
{
    char *path = state_path(o->cl);
    size_t tl = strlen(path) + 5;
    char *tmp = kv_malloc(tl);
    snprintf(tmp, tl, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    bool ok = f != NULL;
    if (f) {
        fprintf(f, "kind %s\nsubject %s\n", KIND[o->kind], o->subject[0] ? o->subject : "-");
        for (size_t i = 0; i < o->nx; i++)
            if (o->x[i].done)
                fprintf(f, "done %" PRIu64 " %" PRIu64 " %s\n", o->x[i].t.start,
                        o->x[i].t.end, o->x[i].t.dest);
        ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
        ok = fclose(f) == 0 && ok;
    }
    if (!ok || rename(tmp, path) != 0)
        KV_LOG(KV_WARN, "cannot save the ring change's progress in %s: %s "
               "(a restart would repeat transfers)", path, strerror(errno));
    kv_free(tmp);
    kv_free(path);
}

static void state_clear(ops_t *o)
{
    char *path = state_path(o->cl);
    unlink(path);
    kv_free(path);
}

/* The saved change: kind and subject, and the transfers done (as
 * "start end dest" lines kept in *done). */
static op_kind_t state_load(ops_t *o, char *subject, size_t cap, kv_buf_t *done)
{
    char *path = state_path(o->cl);
    FILE *f = fopen(path, "r");
    kv_free(path);
    if (!f) return OP_NONE;
    op_kind_t kind = OP_NONE;
    char line[600];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (!strncmp(line, "kind ", 5)) {
            for (int k = 1; k < (int)KV_ARRAY_LEN(KIND); k++)
                if (!strcmp(line + 5, KIND[k])) kind = (op_kind_t)k;
        } else if (!strncmp(line, "subject ", 8)) {
            snprintf(subject, cap, "%.255s", strcmp(line + 8, "-") ? line + 8 : "");
        } else if (!strncmp(line, "done ", 5)) {
            kv_buf_append(done, line + 5, strlen(line + 5) + 1);
        }
    }
    fclose(f);
    return kind;
}

/* ---- helpers -------------------------------------------------------------- */

/* Announce this node's status (and tokens) and save it. */
static kv_status_t announce_self(ops_t *o, gossip_status_t status,
                                 const uint64_t *tokens, uint32_t ntokens)
{
    node_cluster_t *cl = o->cl;
    uint64_t now = now_ms();
    gossip_member_t self;
    gossip_member_find(cl->gossip, cl->node->cfg->node_name, now, &self);
    if (!tokens) {
        tokens = self.tokens;
        ntokens = self.ntokens;
    }
    uint64_t *copy = kv_calloc(ntokens ? ntokens : 1, sizeof *copy);
    if (ntokens) memcpy(copy, tokens, ntokens * sizeof *tokens);
    node_saved_t sv = {.generation = cl->generation, .status = status,
                       .tokens = copy, .ntokens = ntokens};
    kv_status_t rc = node_saved_store(cl->node, &sv);
    if (rc != KV_OK) {
        KV_LOG(KV_ERROR, "cannot save this node's status: %s", kv_errmsg());
        kv_free(copy);
        return rc;
    }
    gossip_local_t loc = {
        .name = self.name, .node_id = self.node_id, .host = self.host,
        .port = self.port, .client_port = self.client_port,
        .admin_port = self.admin_port, .rack = self.rack,
        .generation = self.generation, .status = status, .tokens = copy,
        .ntokens = ntokens, .load_bytes = self.load_bytes,
    };
    rc = gossip_set_local(cl->gossip, now, &loc);
    kv_free(copy);
    if (rc != KV_OK) KV_LOG(KV_ERROR, "gossip refused this node's state: %s", kv_errmsg());
    gossip_glue_flush(cl);
    return rc;
}

static kv_status_t announce_other(ops_t *o, const char *name, gossip_status_t st)
{
    kv_status_t rc = gossip_set_member_status(o->cl->gossip, now_ms(), name, st);
    if (rc != KV_OK)
        KV_LOG(KV_ERROR, "cannot announce %s as %s: %s", name, gossip_status_str(st),
               kv_errmsg());
    gossip_glue_flush(o->cl);
    return rc;
}

/* Another member whose ring change is in progress (JOINING with tokens, or
 * LEAVING); NULL when none. */
static const char *other_change(node_cluster_t *cl, const char *except)
{
    uint64_t now = now_ms();
    for (size_t i = 0; i < gossip_member_count(cl->gossip); i++) {
        gossip_member_t m;
        gossip_member_at(cl->gossip, i, now, &m);
        if (m.self || (except && !strcmp(m.name, except))) continue;
        if ((m.status == GOSSIP_JOINING && m.ntokens > 0) || m.status == GOSSIP_LEAVING)
            return cl->peers[cl->gossip_slot[i]]->name;
    }
    return NULL;
}

/* ---- transfers ------------------------------------------------------------ */

static void xfers_free(ops_t *o)
{
    kv_free(o->x);
    o->x = NULL;
    o->nx = o->ndone = o->running = 0;
    if (o->cur) ring_destroy(o->cur);
    if (o->fut) ring_destroy(o->fut);
    o->cur = o->fut = NULL;
}

/* Freeze the rings and compute what moves; skip what the saved state says
 * is done. */
static kv_status_t plan(ops_t *o, const kv_buf_t *done)
{
    node_cluster_t *cl = o->cl;
    const node_config_t *cfg = cl->node->cfg;
    xfers_free(o);
    o->cur = ring_clone(cl->ring);
    ring_change_t ch = {0};
    uint64_t now = now_ms();
    gossip_member_t self;
    gossip_member_find(cl->gossip, cfg->node_name, now, &self);
    switch (o->kind) {
    case OP_BOOTSTRAP:
        ch = (ring_change_t){.kind = RING_CHANGE_JOIN, .node = cfg->node_name,
                             .rack = cfg->rack, .tokens = self.tokens,
                             .ntokens = self.ntokens};
        break;
    case OP_REPLACE:
        ch = (ring_change_t){.kind = RING_CHANGE_REPLACE, .node = cfg->node_name,
                             .rack = cfg->rack, .replaced = o->subject};
        break;
    case OP_DECOMMISSION:
        ch = (ring_change_t){.kind = RING_CHANGE_LEAVE, .node = cfg->node_name};
        break;
    case OP_REMOVE:
        ch = (ring_change_t){.kind = RING_CHANGE_REMOVE, .node = o->subject};
        break;
    case OP_NONE:
        return KV_INVALID;
    }
    kv_status_t rc = ring_change_future(o->cur, &ch, &o->fut);
    if (rc != KV_OK) {
        snprintf(o->error, sizeof o->error, "cannot compute the ring after the %s: %s",
                 KIND[o->kind], kv_status_str(rc));
        return rc;
    }
    ring_transfer_t *tr;
    size_t n;
    KV_RET(ring_change_transfers(o->cur, o->fut, &ch, &tr, &n));
    o->x = kv_calloc(n ? n : 1, sizeof *o->x);
    for (size_t i = 0; i < n; i++) {
        o->x[o->nx].t = tr[i];
        o->x[o->nx].o = o;
        /* only ours: a bootstrap or replace pulls what it gains */
        if ((o->kind == OP_BOOTSTRAP || o->kind == OP_REPLACE) &&
            strcmp(tr[i].dest, cfg->node_name))
            continue;
        for (const char *d = done ? (const char *)done->data : NULL;
             d && d < (const char *)done->data + done->len; d += strlen(d) + 1) {
            char line[400];
            snprintf(line, sizeof line, "%" PRIu64 " %" PRIu64 " %s", tr[i].start,
                     tr[i].end, tr[i].dest);
            if (!strcmp(d, line)) {
                o->x[o->nx].done = true;
                o->ndone++;
            }
        }
        o->nx++;
    }
    kv_free(tr);
    o->ranges_total = o->nx;
    o->ranges_done = o->ranges_resumed = o->ndone;
    KV_LOG(KV_INFO, "%s: %zu range(s) to copy, %zu done before", KIND[o->kind], o->nx,
           o->ndone);
    return KV_OK;
}

static void step(struct ops *o);

static void xfer_done(void *arg, kv_status_t rc, uint64_t keys, uint64_t bytes,
                      const char *why)
{
    xfer_t *x = arg;
    ops_t *o = x->o;
    x->running = false;
    o->running--;
    if (o->state != ST_STREAMING || !o->x) return; /* the change was dropped */
    if (rc == KV_OK) {
        x->done = true;
        x->keys = keys;
        x->bytes = bytes;
        o->keys += keys;
        o->bytes += bytes;
        o->ndone++;
        o->ranges_done = o->ndone;
        state_save(o);
        step(o); /* start the next one now, not at the next tick */
        return;
    }
    x->tries++;
    uint64_t backoff = KV_MIN((uint64_t)1000 << KV_MIN(x->tries, 5u), RETRY_MAX_MS);
    x->retry_at = now_ms() + backoff;
    snprintf(o->error, sizeof o->error, "copying (%016" PRIx64 ", %016" PRIx64 "] to %s "
             "failed (%s); retrying in %" PRIu64 " s", x->t.start, x->t.end, x->t.dest,
             why ? why : kv_status_str(rc), backoff / 1000);
    KV_LOG(KV_WARN, "%s: %s", KIND[o->kind], o->error);
}

/* The live sources of a transfer, as member slots. */
static uint32_t live_sources(ops_t *o, const xfer_t *x, uint32_t *out)
{
    node_cluster_t *cl = o->cl;
    uint32_t n = 0;
    for (uint32_t i = 0; i < x->t.nsources; i++) {
        node_peer_t *p = cluster_peer_find(cl, x->t.sources[i]);
        if (!p) continue;
        bool full;
        if (p->self || (p->gossip_up && peer_usable(cl, p->idx, &full)))
            out[n++] = p->idx;
    }
    return n;
}

/* Start transfers up to PARALLEL; true when all are done. */
static bool pump(ops_t *o)
{
    node_cluster_t *cl = o->cl;
    uint64_t now = now_ms();
    for (size_t i = 0; i < o->nx && o->running < PARALLEL; i++) {
        xfer_t *x = &o->x[i];
        if (x->done || x->running || now < x->retry_at) continue;
        uint32_t src[RING_MAX_RF];
        uint32_t ns = live_sources(o, x, src);
        /* every source must be there: one missing might be the only one
         * holding some acknowledged write */
        node_peer_t *dest = cluster_peer_find(cl, x->t.dest);
        if (ns < x->t.nsources || !dest) {
            x->retry_at = now + 2000;
            snprintf(o->error, sizeof o->error, "waiting for %s of (%016" PRIx64
                     ", %016" PRIx64 "] to be up", !dest ? "its destination"
                     : "every source", x->t.start, x->t.end);
            continue;
        }
        x->running = true;
        o->running++;
        kv_status_t rc = stream_fetch(cl, dest->idx, x->t.start, x->t.end, src, ns,
                                      xfer_done, x);
        if (rc != KV_OK) {
            xfer_done(x, rc, 0, 0, rc == KV_UNAVAILABLE ? "not connected to it" : NULL);
        }
    }
    return o->ndone == o->nx;
}

/* ---- the changes ---------------------------------------------------------- */

static void finish(ops_t *o)
{
    KV_LOG(KV_INFO, "%s%s%s done: %zu range(s), %" PRIu64 " keys, %" PRIu64
           " bytes in %" PRIu64 " s", KIND[o->kind], o->subject[0] ? " of " : "",
           o->subject, o->nx, o->keys, o->bytes, (now_ms() - o->started_ms) / 1000);
    switch (o->kind) {
    case OP_BOOTSTRAP:
        announce_self(o, GOSSIP_NORMAL, NULL, 0);
        break;
    case OP_REPLACE:
        /* NORMAL first: a newer generation takes the dead node's tokens
         * (members.c), so the ring never goes without them */
        announce_self(o, GOSSIP_NORMAL, NULL, 0);
        announce_other(o, o->subject, GOSSIP_LEFT);
        break;
    case OP_DECOMMISSION:
        announce_self(o, GOSSIP_LEFT, NULL, 0);
        o->left = true;
        snprintf(o->refusal, sizeof o->refusal, "this node has left the ring "
                 "(decommissioned); wipe its data_dir to add it again");
        break;
    case OP_REMOVE:
        announce_other(o, o->subject, GOSSIP_LEFT);
        break;
    case OP_NONE:
        break;
    }
    state_clear(o);
    xfers_free(o);
    o->error[0] = 0;
    ops_set_state(o, ST_DONE);
}

static void step(struct ops *o)
{
    node_cluster_t *cl = o->cl;
    if (cl->node->state != NODE_SERVING) return;
    uint64_t now = now_ms();
    switch (o->state) {
    case ST_WAIT:
        if (now - o->since_ms < cl->node->cfg->ring_delay_ms) return;
        kv_status_t prc = plan(o, &o->resume_done);
        kv_buf_clear(&o->resume_done);
        if (prc != KV_OK) {
            KV_LOG(KV_ERROR, "%s: %s", KIND[o->kind], o->error);
            ops_set_state(o, ST_FAILED);
            return;
        }
        ops_set_state(o, ST_STREAMING);
        /* fall through */
    case ST_STREAMING:
        if (!pump(o) || o->running) return;
        if (o->kind == OP_DECOMMISSION) {
            ops_set_state(o, ST_HINTS);
            return;
        }
        finish(o);
        return;
    case ST_HINTS: {
        hints_totals_t t;
        hints_glue_totals(cl, &t);
        if (t.pending && now - o->since_ms < HINT_WAIT_MS) return;
        if (t.pending)
            KV_LOG(KV_WARN, "decommission: %" PRIu64 " hints still undelivered after "
                   "%u s; leaving without them (repair covers them)", t.pending,
                   HINT_WAIT_MS / 1000);
        finish(o);
        return;
    }
    case ST_IDLE:
    case ST_DONE:
    case ST_FAILED:
        return;
    }
}

static void arm(ops_t *o)
{
    struct timeval tv = {0, TICK_MS * 1000};
    evtimer_add(o->timer, &tv);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    ops_t *o = arg;
    step(o);
    arm(o);
}

/* A new change: remember it, save it, wait ring_delay_ms. */
static void begin(ops_t *o, op_kind_t kind, const char *subject)
{
    xfers_free(o);
    o->kind = kind;
    snprintf(o->subject, sizeof o->subject, "%s", subject ? subject : "");
    o->keys = o->bytes = 0;
    o->ranges_total = o->ranges_done = o->ranges_resumed = 0;
    o->error[0] = 0;
    o->started_ms = now_ms();
    state_save(o);
    ops_set_state(o, ST_WAIT);
    KV_LOG(KV_INFO, "%s%s%s: announced; streaming starts in %" PRIu64 " ms",
           KIND[kind], o->subject[0] ? " of " : "", o->subject,
           o->cl->node->cfg->ring_delay_ms);
}

/* A node that joined (JOINING, tokens chosen) bootstraps (members.c calls
 * this once its tokens are announced). */
void ops_joined(node_cluster_t *cl, const char *replacing)
{
    ops_t *o = cl->ops;
    if (!o || o->kind != OP_NONE) return;
    begin(o, replacing ? OP_REPLACE : OP_BOOTSTRAP, replacing);
}

bool ops_busy(const node_cluster_t *cl)
{
    const ops_t *o = cl->ops;
    return o && (o->state == ST_WAIT || o->state == ST_STREAMING || o->state == ST_HINTS);
}

bool ops_left(const node_cluster_t *cl) { return cl->ops && cl->ops->left; }

const char *ops_refusal(const node_cluster_t *cl)
{
    return cl->ops ? cl->ops->refusal : "";
}

void ops_refuse(node_cluster_t *cl, const char *why)
{
    if (cl->ops) snprintf(cl->ops->refusal, sizeof cl->ops->refusal, "%s", why);
}

/* ---- admin requests --------------------------------------------------------- */

static kv_status_t decommission(ops_t *o, char *msg, size_t cap)
{
    node_cluster_t *cl = o->cl;
    const node_config_t *cfg = cl->node->cfg;
    gossip_member_t self;
    gossip_member_find(cl->gossip, cfg->node_name, now_ms(), &self);
    if (self.status == GOSSIP_LEAVING && o->kind == OP_DECOMMISSION) {
        snprintf(msg, cap, "decommission of %s is already under way", cfg->node_name);
        return KV_OK;
    }
    if (self.status != GOSSIP_NORMAL) {
        snprintf(msg, cap, "%s is %s, not normal: only a node that owns ranges can be "
                 "decommissioned", cfg->node_name, gossip_status_str(self.status));
        return KV_INVALID;
    }
    const char *other = other_change(cl, NULL);
    if (other || ops_busy(cl) || o->cleaning) {
        snprintf(msg, cap, "another ring change is in progress (%s); one at a time",
                 other ? other : cfg->node_name);
        return KV_BUSY;
    }
    uint32_t nodes = ring_node_count(cl->ring);
    if (nodes <= cfg->replication_factor) {
        snprintf(msg, cap, "the ring has %u node(s) and replication_factor is %u: "
                 "without %s there would be too few to hold every replica", nodes,
                 cfg->replication_factor, cfg->node_name);
        return KV_INVALID;
    }
    kv_status_t rc = announce_self(o, GOSSIP_LEAVING, NULL, 0);
    if (rc != KV_OK) {
        snprintf(msg, cap, "cannot announce LEAVING: %s", kv_errmsg());
        return rc;
    }
    begin(o, OP_DECOMMISSION, NULL);
    snprintf(msg, cap, "decommission of %s started: its ranges are streamed to their "
             "new owners after %" PRIu64 " ms", cfg->node_name, cfg->ring_delay_ms);
    return KV_OK;
}

static kv_status_t removenode(ops_t *o, const char *who, char *msg, size_t cap)
{
    node_cluster_t *cl = o->cl;
    uint64_t now = now_ms();
    node_peer_t *p = NULL;
    for (uint32_t i = 0; i < cl->npeers; i++)
        if (!strcmp(cl->peers[i]->name, who) || !strcmp(cl->peers[i]->node_id, who))
            p = cl->peers[i];
    if (!p) {
        snprintf(msg, cap, "no member with the name or node id %s", who);
        return KV_NOTFOUND;
    }
    if (p->self) {
        snprintf(msg, cap, "%s is this node: use decommission", p->name);
        return KV_INVALID;
    }
    gossip_member_t m;
    if (gossip_member_find(cl->gossip, p->name, now, &m) != KV_OK || !m.known) {
        snprintf(msg, cap, "%s has never been heard from", p->name);
        return KV_INVALID;
    }
    bool resume = o->kind == OP_REMOVE && !strcmp(o->subject, p->name) && ops_busy(cl);
    if (resume) {
        snprintf(msg, cap, "removal of %s is already under way", p->name);
        return KV_OK;
    }
    if (m.liveness != GOSSIP_DEAD) {
        snprintf(msg, cap, "%s is %s, not dead: only a dead node can be removed (stop "
                 "it, or decommission it while it runs)", p->name,
                 gossip_liveness_str(m.liveness));
        return KV_INVALID;
    }
    if (m.status != GOSSIP_NORMAL && m.status != GOSSIP_LEAVING) {
        snprintf(msg, cap, "%s is %s: it owns no ranges", p->name,
                 gossip_status_str(m.status));
        return KV_INVALID;
    }
    const char *other = other_change(cl, p->name);
    if (other || ops_busy(cl) || o->cleaning) {
        snprintf(msg, cap, "another ring change is in progress (%s); one at a time",
                 other ? other : cl->node->cfg->node_name);
        return KV_BUSY;
    }
    kv_status_t rc = announce_other(o, p->name, GOSSIP_LEAVING);
    if (rc != KV_OK) {
        snprintf(msg, cap, "cannot announce %s as leaving: %s", p->name, kv_errmsg());
        return rc;
    }
    begin(o, OP_REMOVE, p->name);
    snprintf(msg, cap, "removal of %s started: its ranges are copied from the "
             "surviving replicas after %" PRIu64 " ms", p->name,
             cl->node->cfg->ring_delay_ms);
    return KV_OK;
}

/* ---- cleanup ------------------------------------------------------------------ */

static bool keep_owned(void *arg, uint64_t token)
{
    cleanup_job_t *j = arg;
    uint32_t r[RING_MAX_RF];
    size_t n = ring_replicas(j->ring, token, r, RING_MAX_RF);
    for (size_t i = 0; i < n; i++)
        if (r[i] == j->self) return true;
    return false;
}

static void cleanup_work(node_job_t *nj)
{
    cleanup_job_t *j = (cleanup_job_t *)nj;
    j->rc = eng_cleanup(j->o->cl->node->eng, keep_owned, j, &j->dropped);
}

static void cleanup_done(node_job_t *nj)
{
    cleanup_job_t *j = (cleanup_job_t *)nj;
    ops_t *o = j->o;
    o->cleaning = false;
    if (j->rc == KV_OK)
        snprintf(o->cleanup_result, sizeof o->cleanup_result, "done: %" PRIu64
                 " entries dropped in %" PRIu64 " ms", j->dropped,
                 now_ms() - j->started_ms);
    else
        snprintf(o->cleanup_result, sizeof o->cleanup_result, "failed: %s",
                 kv_status_str(j->rc));
    KV_LOG(j->rc == KV_OK ? KV_INFO : KV_ERROR, "cleanup %s", o->cleanup_result);
    ring_destroy(j->ring);
    kv_free(j);
}

static kv_status_t cleanup(ops_t *o, char *msg, size_t cap)
{
    node_cluster_t *cl = o->cl;
    if (o->cleaning) {
        snprintf(msg, cap, "a cleanup is already running");
        return KV_OK;
    }
    const char *other = other_change(cl, NULL);
    if (other || ops_busy(cl)) {
        snprintf(msg, cap, "a ring change is in progress (%s): clean up after it",
                 other ? other : cl->node->cfg->node_name);
        return KV_BUSY;
    }
    uint32_t self;
    if (ring_node_find(cl->ring, cl->node->cfg->node_name, &self) != KV_OK) {
        snprintf(msg, cap, "this node owns no ranges");
        return KV_INVALID;
    }
    cleanup_job_t *j = kv_calloc(1, sizeof *j);
    j->job.work = cleanup_work;
    j->job.done = cleanup_done;
    j->o = o;
    j->ring = ring_clone(cl->ring);
    j->self = self;
    j->started_ms = now_ms();
    if (node_pool_submit(o->pool, &j->job) != KV_OK) {
        ring_destroy(j->ring);
        kv_free(j);
        snprintf(msg, cap, "the cleanup thread is busy");
        return KV_BUSY;
    }
    o->cleaning = true;
    snprintf(o->cleanup_result, sizeof o->cleanup_result, "running");
    snprintf(msg, cap, "cleanup started: keys of ranges this node does not "
             "replicate are dropped");
    return KV_OK;
}

kv_status_t ops_admin(node_cluster_t *cl, kv_slice_t op, kv_slice_t arg, char *msg,
                      size_t cap)
{
    ops_t *o = cl->ops;
    char a[256];
    snprintf(a, sizeof a, "%.*s", (int)KV_MIN(arg.len, 255), (const char *)arg.data);
    msg[0] = 0;
    if (o->left) {
        snprintf(msg, cap, "%s", o->refusal);
        return KV_UNAVAILABLE;
    }
    if (kv_slice_eq(op, kv_slice_str("decommission"))) return decommission(o, msg, cap);
    if (kv_slice_eq(op, kv_slice_str("removenode"))) {
        if (!a[0]) {
            snprintf(msg, cap, "removenode needs a node name or node id");
            return KV_INVALID;
        }
        return removenode(o, a, msg, cap);
    }
    if (kv_slice_eq(op, kv_slice_str("cleanup"))) return cleanup(o, msg, cap);
    if (kv_slice_eq(op, kv_slice_str("repair"))) return repair_admin(cl, a, msg, cap);
    snprintf(msg, cap, "unknown admin operation '%.*s' (decommission, removenode, "
             "cleanup, repair)", (int)KV_MIN(op.len, 40), (const char *)op.data);
    return KV_INVALID;
}

/* ---- figures ------------------------------------------------------------------ */

size_t ops_info(node_cluster_t *cl, proto_info_item_t *it, size_t cap)
{
    ops_t *o = cl->ops;
    if (!o || cap < 9) return 0;
    size_t k = 0;
    it[k++] = (proto_info_item_t){"ring_change", KIND[o->kind], 0};
    it[k++] = (proto_info_item_t){"ring_change_state", STATE[o->state], 0};
    snprintf(o->info_vals[0], sizeof o->info_vals[0], "%s", o->subject);
    it[k++] = (proto_info_item_t){"ring_change_subject", o->info_vals[0], 0};
    it[k++] = (proto_info_item_t){"ring_change_ranges", NULL, o->ranges_total};
    it[k++] = (proto_info_item_t){"ring_change_ranges_done", NULL, o->ranges_done};
    it[k++] = (proto_info_item_t){"ring_change_ranges_resumed", NULL, o->ranges_resumed};
    it[k++] = (proto_info_item_t){"ring_change_keys", NULL, o->keys};
    snprintf(o->info_vals[1], sizeof o->info_vals[1], "%s", o->error);
    it[k++] = (proto_info_item_t){"ring_change_error", o->info_vals[1], 0};
    snprintf(o->info_vals[2], sizeof o->info_vals[2], "%s",
             o->cleanup_result[0] ? o->cleanup_result : "never run");
    it[k++] = (proto_info_item_t){"cleanup", o->info_vals[2], 0};
    return k;
}

/* ---- life cycle ------------------------------------------------------------------ */

static size_t count_lines(const kv_buf_t *b)
{
    size_t n = 0;
    for (size_t i = 0; i < b->len; i++) n += b->data[i] == 0;
    return n;
}

kv_status_t ops_start(node_cluster_t *cl, gossip_status_t saved_status, bool have_tokens)
{
    ops_t *o = kv_calloc(1, sizeof *o);
    o->cl = cl;
    cl->ops = o;
    o->pool = node_pool_create(cl->node, 1, 4);
    o->timer = evtimer_new(cl->node->base, timer_cb, o);
    if (saved_status == GOSSIP_LEFT) {
        o->left = true;
        snprintf(o->refusal, sizeof o->refusal, "this node has left the ring "
                 "(decommissioned or removed); wipe its data_dir to add it again");
        KV_LOG(KV_WARN, "%s", o->refusal);
    }
    char subject[256] = "";
    kv_buf_init(&o->resume_done);
    op_kind_t kind = state_load(o, subject, sizeof subject, &o->resume_done);
    if (kind == OP_NONE && saved_status == GOSSIP_JOINING && have_tokens) {
        /* stopped after announcing its tokens, before saving the change */
        const char *r = cl->node->cfg->replace_node;
        kind = r && *r ? OP_REPLACE : OP_BOOTSTRAP;
        snprintf(subject, sizeof subject, "%s", r && *r ? r : "");
    }
    if (kind != OP_NONE && !o->left) {
        /* A change was under way: resume it from the announcement (after
         * ring_delay_ms again); ranges already copied are skipped. */
        KV_LOG(KV_INFO, "resuming the %s%s%s interrupted by a restart (%zu range(s) "
               "copied before)", KIND[kind], subject[0] ? " of " : "", subject,
               count_lines(&o->resume_done));
        o->kind = kind;
        snprintf(o->subject, sizeof o->subject, "%s", subject);
        o->started_ms = now_ms();
        ops_set_state(o, ST_WAIT);
    }
    arm(o);
    return KV_OK;
}

/* Re-announce what a resumed change needs (after gossip is up). */
void ops_resume_announce(node_cluster_t *cl)
{
    ops_t *o = cl->ops;
    if (!o || o->state != ST_WAIT) return;
    if (o->kind == OP_REMOVE) announce_other(o, o->subject, GOSSIP_LEAVING);
}

void ops_quiesce(node_cluster_t *cl)
{
    ops_t *o = cl->ops;
    if (!o || !o->pool) return;
    node_pool_destroy(o->pool); /* waits for a cleanup in progress */
    o->pool = NULL;
}

void ops_stop(node_cluster_t *cl)
{
    ops_t *o = cl->ops;
    if (!o) return;
    ops_quiesce(cl);
    if (o->timer) event_free(o->timer);
    xfers_free(o);
    kv_buf_deinit(&o->resume_done);
    kv_free(o);
    cl->ops = NULL;
}
