/* test_coord.c -- the coordinator's request state machines, driven through a
 * deterministic simulated cluster.
 *
 * The simulation: N replicas, each an in-memory last-write-wins store that
 * answers SUPERSEDED (with the held stamp) to an older cell, as the engine
 * does; a message queue with per-message random delay, loss and duplication
 * from a kv_rng seeded by test_seed(); one or two coordinators, each with its
 * own manual wall clock (so one can run ahead) and HLC. Replicas can be down
 * (gossip says so; messages to them are lost), mute (gossip thinks them up;
 * their replies are lost), slow, or failing writes (they store nothing and
 * answer an error, as the glue does for a send that failed; err_pct does it
 * to any message at random). Every SEND and HINT is logged; hints can be
 * delivered to their targets afterwards, as hint replay would. Every step
 * calls coord_validate().
 */
#include "test_util.h"

#include "coord.h"
#include "format.h"
#include "hlc.h"

#define T0 1763700000000LL
#define MAX_NODES 5
#define MAX_KEYS 8
#define MAX_VAL 48
#define MAX_REQS 2048
#define MAX_COORDS 2
#define MAX_LOG 4096

/* ---- the simulated cluster --------------------------------------------- */

typedef struct stored {
    char key[16];
    eng_cell_t cell;
    uint8_t val[MAX_VAL];
} stored_t;

typedef struct replica {
    bool up;       /* false: every message to it is lost */
    bool gossip_up; /* what coordinators are told */
    bool mute;     /* processes messages, its replies are lost */
    bool fail_writes; /* stores nothing, answers a mutation with KV_IO */
    bool fail_reads;  /* answers a read with KV_IO */
    uint32_t slow_ms;
    stored_t st[MAX_KEYS];
    size_t n;
} replica_t;

typedef enum { M_MUT, M_READ, M_MUT_REPLY, M_READ_REPLY } msg_kind_t;

typedef struct msg {
    uint64_t at, order;
    msg_kind_t kind;
    uint32_t node; /* the replica: destination or sender */
    int coord;
    uint64_t msg_id;
    char key[16];
    bool has_cell;
    eng_cell_t cell;
    uint8_t val[MAX_VAL];
    kv_status_t status;
    hlc_ts_t sup;
} msg_t;

typedef struct creply {
    int count;
    kv_status_t status;
    hlc_ts_t ts;
    char val[MAX_VAL + 1];
    uint32_t acks;
    uint64_t at;
    uint64_t evt; /* its place among all actions taken (sim_t.evt) */
} creply_t;

/* A SEND_* or HINT action as it was taken from a coordinator. */
typedef struct logged {
    int coord;
    coord_action_kind_t kind;
    uint64_t req; /* client_req_id */
    uint32_t node;
    uint64_t msg_id;
    char key[16];
    eng_cell_t cell; /* value re-pointed at val when used */
    uint8_t val[MAX_VAL];
    uint64_t at;
    uint64_t evt;
} logged_t;

typedef struct sim_coord {
    kv_manual_clock_t mc;
    hlc_t *hlc;
    coord_t *c;
} sim_coord_t;

typedef struct sim {
    kv_rng_t rng;
    uint64_t now;
    uint32_t nrep;
    replica_t rep[MAX_NODES];
    int ncoord;
    sim_coord_t co[MAX_COORDS];
    msg_t *q;
    size_t nq, capq;
    uint64_t order;
    uint32_t loss_pct, dup_pct, min_delay, max_delay;
    uint32_t err_pct; /* a replica answers any message with KV_IO */
    creply_t *replies;
    uint64_t next_req;
    uint32_t hints, hint_target;
    hlc_ts_t hint_ts;
    uint32_t sends; /* SEND_* actions seen */
    logged_t *hint_log, *send_log;
    size_t nhint_log, nsend_log;
    uint64_t evt; /* actions taken so far, in order */
} sim_t;

static void sim_init(sim_t *s, uint64_t seed, uint32_t nrep, int ncoord,
                     const int64_t *wall_offsets)
{
    memset(s, 0, sizeof *s);
    kv_rng_seed(&s->rng, seed);
    s->now = 1000;
    s->nrep = nrep;
    for (uint32_t i = 0; i < nrep; i++) s->rep[i].up = s->rep[i].gossip_up = true;
    s->ncoord = ncoord;
    for (int i = 0; i < ncoord; i++) {
        sim_coord_t *co = &s->co[i];
        kv_manual_clock_init(&co->mc, T0 + (wall_offsets ? wall_offsets[i] : 0));
        hlc_options_t ho;
        hlc_options_init(&ho);
        ho.clock = &co->mc.clock;
        assert_int_equal(hlc_open(&ho, &co->hlc), KV_OK);
        coord_options_t o;
        coord_options_init(&o);
        o.hlc = co->hlc;
        assert_int_equal(coord_create(&o, &co->c), KV_OK);
    }
    s->min_delay = 1;
    s->max_delay = 1;
    s->replies = kv_calloc(MAX_REQS, sizeof *s->replies);
    s->hint_log = kv_calloc(MAX_LOG, sizeof *s->hint_log);
    s->send_log = kv_calloc(MAX_LOG, sizeof *s->send_log);
    s->next_req = 1;
}

/* Background read repair for every coordinator: chance `ppm[cl]` (index 0
 * unused), at most max_inflight checks. Call before the first request. */
static void sim_bg_repair(sim_t *s, const uint32_t ppm[4], uint32_t max_inflight)
{
    for (int i = 0; i < s->ncoord; i++) {
        sim_coord_t *co = &s->co[i];
        assert_int_equal(coord_live_requests(co->c), 0);
        coord_destroy(co->c);
        coord_options_t o;
        coord_options_init(&o);
        assert_int_equal(o.bg_repair_max_inflight, 64);
        o.hlc = co->hlc;
        memcpy(o.read_repair_ppm, ppm, sizeof o.read_repair_ppm);
        o.bg_repair_max_inflight = max_inflight;
        o.rng_seed = kv_rng_next(&s->rng);
        assert_int_equal(coord_create(&o, &co->c), KV_OK);
    }
}

static void sim_deinit(sim_t *s)
{
    for (int i = 0; i < s->ncoord; i++) {
        coord_destroy(s->co[i].c);
        hlc_close(s->co[i].hlc);
    }
    kv_free(s->q);
    kv_free(s->replies);
    kv_free(s->hint_log);
    kv_free(s->send_log);
}

static void sim_validate(sim_t *s)
{
    for (int i = 0; i < s->ncoord; i++) {
        kv_status_t rc = coord_validate(s->co[i].c);
        if (rc != KV_OK) fail_msg("coord_validate: %s", kv_errmsg());
    }
}

static void net_push(sim_t *s, const msg_t *m, uint32_t extra_delay)
{
    if (kv_rng_below(&s->rng, 100) < s->loss_pct) return;
    int copies = kv_rng_below(&s->rng, 100) < s->dup_pct ? 2 : 1;
    for (int k = 0; k < copies; k++) {
        if (s->nq == s->capq) {
            s->capq = s->capq ? s->capq * 2 : 64;
            s->q = kv_realloc(s->q, s->capq * sizeof *s->q);
        }
        msg_t *d = &s->q[s->nq++];
        *d = *m;
        d->at = s->now + s->min_delay + extra_delay +
                kv_rng_below(&s->rng, s->max_delay - s->min_delay + 1);
        d->order = s->order++;
        d->cell.value.data = NULL; /* the queue moves: re-pointed on delivery */
    }
}

static void msg_set_cell(msg_t *m, const eng_cell_t *c)
{
    kv_assert(c->value.len <= MAX_VAL);
    m->has_cell = true;
    m->cell = *c;
    if (c->value.len) memcpy(m->val, c->value.data, c->value.len);
}

static void copy_key(char *dst, kv_slice_t k)
{
    kv_assert(k.len < 16);
    memcpy(dst, k.data, k.len);
    dst[k.len] = 0;
}

static void log_action(sim_t *s, int ci, const coord_action_t *a)
{
    bool hint = a->kind == COORD_ACT_HINT;
    size_t *n = hint ? &s->nhint_log : &s->nsend_log;
    assert_true(*n < MAX_LOG);
    logged_t *l = &(hint ? s->hint_log : s->send_log)[(*n)++];
    memset(l, 0, sizeof *l);
    l->coord = ci;
    l->kind = a->kind;
    l->req = a->client_req_id;
    l->node = a->node;
    l->msg_id = a->msg_id;
    l->at = s->now;
    l->evt = s->evt;
    copy_key(l->key, a->key);
    if (a->kind != COORD_ACT_SEND_READ) {
        kv_assert(a->cell.value.len <= MAX_VAL);
        l->cell = a->cell;
        if (a->cell.value.len) memcpy(l->val, a->cell.value.data, a->cell.value.len);
        l->cell.value.data = NULL;
    }
}

/* The logged cell, its value pointing into the log entry. */
static eng_cell_t logged_cell(const logged_t *l)
{
    eng_cell_t c = l->cell;
    c.value = kv_slice(c.value.len ? l->val : NULL, c.value.len);
    return c;
}

/* The first logged send matching (coord, request, node, kind); fails when
 * there is none. ts != 0 also requires the mutation's stamp to differ from
 * it (an earlier attempt's). */
static const logged_t *find_send(const sim_t *s, int ci, uint64_t req,
                                 uint32_t node, coord_action_kind_t kind,
                                 hlc_ts_t not_ts)
{
    for (size_t i = 0; i < s->nsend_log; i++) {
        const logged_t *l = &s->send_log[i];
        if (l->coord == ci && l->req == req && l->node == node &&
            l->kind == kind && (not_ts == 0 || l->cell.ts != not_ts))
            return l;
    }
    fail_msg("no send of kind %d for request %" PRIu64 " to node %u", (int)kind,
             req, node);
    return NULL;
}

static size_t count_sends(const sim_t *s, size_t from, coord_action_kind_t kind)
{
    size_t n = 0;
    for (size_t i = from; i < s->nsend_log; i++) n += s->send_log[i].kind == kind;
    return n;
}

/* Take every action a coordinator produced. */
static void sim_drain(sim_t *s, int ci)
{
    size_t n;
    const coord_action_t *a = coord_actions(s->co[ci].c, &n);
    for (size_t i = 0; i < n; i++, s->evt++) {
        msg_t m;
        memset(&m, 0, sizeof m);
        m.coord = ci;
        switch (a[i].kind) {
        case COORD_ACT_SEND_MUTATION:
        case COORD_ACT_SEND_READ:
            s->sends++;
            log_action(s, ci, &a[i]);
            assert_true(a[i].node < s->nrep);
            m.kind = a[i].kind == COORD_ACT_SEND_READ ? M_READ : M_MUT;
            m.node = a[i].node;
            m.msg_id = a[i].msg_id;
            copy_key(m.key, a[i].key);
            if (m.kind == M_MUT) msg_set_cell(&m, &a[i].cell);
            if (s->rep[m.node].up) net_push(s, &m, s->rep[m.node].slow_ms);
            break;
        case COORD_ACT_REPLY: {
            assert_true(a[i].client_req_id < MAX_REQS);
            creply_t *r = &s->replies[a[i].client_req_id];
            r->count++;
            assert_int_equal(r->count, 1); /* exactly one reply */
            r->status = a[i].status;
            r->ts = a[i].cell_ts;
            r->acks = a[i].acks;
            r->at = s->now;
            r->evt = s->evt;
            assert_true(a[i].value.len <= MAX_VAL);
            if (a[i].value.len) memcpy(r->val, a[i].value.data, a[i].value.len);
            r->val[a[i].value.len] = 0;
            break;
        }
        case COORD_ACT_HINT:
            s->hints++;
            s->hint_target = a[i].node;
            s->hint_ts = a[i].cell.ts;
            assert_true(a[i].node < s->nrep);
            assert_true(a[i].cell.ts != 0);
            log_action(s, ci, &a[i]);
            break;
        }
    }
    coord_actions_clear(s->co[ci].c);
    sim_validate(s);
}

static stored_t *rep_find(replica_t *r, const char *key)
{
    for (size_t i = 0; i < r->n; i++)
        if (!strcmp(r->st[i].key, key)) return &r->st[i];
    return NULL;
}

/* Store a cell by last-write-wins, as the engine does: KV_OK (stored, or
 * already held), or KV_SUPERSEDED with the newer stamp held. */
static kv_status_t replica_apply(replica_t *r, const char *key,
                                 const eng_cell_t *cell, hlc_ts_t *held)
{
    stored_t *e = rep_find(r, key);
    int cmp = e ? eng_cell_lww_cmp(cell, &e->cell) : 1;
    if (cmp < 0) {
        *held = e->cell.ts;
        return KV_SUPERSEDED;
    }
    if (cmp > 0) {
        if (!e) {
            kv_assert(r->n < MAX_KEYS);
            e = &r->st[r->n++];
            strcpy(e->key, key);
        }
        kv_assert(cell->value.len <= MAX_VAL);
        e->cell = *cell;
        if (cell->value.len) memcpy(e->val, cell->value.data, cell->value.len);
        e->cell.value = kv_slice(e->cell.value.len ? e->val : NULL,
                                 e->cell.value.len);
    }
    return KV_OK;
}

/* Hint replay: every logged hint lands on its target, up or not. */
static void sim_deliver_hints(sim_t *s)
{
    for (size_t i = 0; i < s->nhint_log; i++) {
        const logged_t *h = &s->hint_log[i];
        eng_cell_t cell = logged_cell(h);
        hlc_ts_t held;
        replica_apply(&s->rep[h->node], h->key, &cell, &held);
    }
}

static void replica_handle(sim_t *s, const msg_t *m)
{
    replica_t *r = &s->rep[m->node];
    stored_t *e = rep_find(r, m->key);
    msg_t out;
    memset(&out, 0, sizeof out);
    out.node = m->node;
    out.coord = m->coord;
    out.msg_id = m->msg_id;
    bool fail = s->err_pct && kv_rng_below(&s->rng, 100) < s->err_pct;
    if (m->kind == M_MUT) {
        out.kind = M_MUT_REPLY;
        if (fail || r->fail_writes) out.status = KV_IO; /* nothing stored */
        else out.status = replica_apply(r, m->key, &m->cell, &out.sup);
    } else if (fail || r->fail_reads) {
        out.kind = M_READ_REPLY;
        out.status = KV_IO;
    } else {
        out.kind = M_READ_REPLY;
        out.status = e ? KV_OK : KV_NOTFOUND;
        if (e) msg_set_cell(&out, &e->cell);
    }
    if (!r->mute) net_push(s, &out, 0);
}

/* Advance to the next event (a message or a deadline); false when idle. */
static bool sim_step(sim_t *s, uint64_t limit)
{
    size_t best = SIZE_MAX;
    for (size_t i = 0; i < s->nq; i++)
        if (best == SIZE_MAX || s->q[i].at < s->q[best].at ||
            (s->q[i].at == s->q[best].at && s->q[i].order < s->q[best].order))
            best = i;
    uint64_t t = best == SIZE_MAX ? UINT64_MAX : s->q[best].at;
    for (int i = 0; i < s->ncoord; i++) {
        uint64_t d;
        if (coord_next_deadline(s->co[i].c, &d) && d < t) {
            t = d;
            best = SIZE_MAX;
        }
    }
    if (t == UINT64_MAX || t > limit) return false;
    if (t > s->now) {
        for (int i = 0; i < s->ncoord; i++)
            kv_manual_clock_advance(&s->co[i].mc, (int64_t)(t - s->now));
        s->now = t;
    }
    if (best != SIZE_MAX) {
        msg_t m = s->q[best];
        s->q[best] = s->q[--s->nq];
        if (m.has_cell && m.cell.value.len) m.cell.value.data = m.val;
        if (m.kind == M_MUT || m.kind == M_READ) {
            if (s->rep[m.node].up) replica_handle(s, &m);
        } else {
            coord_t *c = s->co[m.coord].c;
            if (m.kind == M_MUT_REPLY)
                coord_on_mutation_reply(c, s->now, m.node, m.msg_id, m.status, m.sup);
            else
                coord_on_read_reply(c, s->now, m.node, m.msg_id, m.status,
                                    m.has_cell ? &m.cell : NULL);
            sim_drain(s, m.coord);
        }
    }
    for (int i = 0; i < s->ncoord; i++) {
        coord_tick(s->co[i].c, s->now);
        sim_drain(s, i);
    }
    return true;
}

static void sim_settle(sim_t *s)
{
    while (sim_step(s, UINT64_MAX)) {
    }
    for (int i = 0; i < s->ncoord; i++)
        assert_int_equal(coord_live_requests(s->co[i].c), 0);
    assert_int_equal(s->nq, 0);
}

static const creply_t *sim_wait(sim_t *s, uint64_t id)
{
    while (s->replies[id].count == 0) assert_true(sim_step(s, UINT64_MAX));
    return &s->replies[id];
}

/* Replica list and liveness for a request: `order` (NULL = 0..nrep-1). */
static size_t sim_targets(const sim_t *s, const uint32_t *order, size_t n,
                          uint32_t *reps, bool *alive)
{
    if (!order) n = s->nrep;
    for (size_t i = 0; i < n; i++) {
        reps[i] = order ? order[i] : (uint32_t)i;
        alive[i] = s->rep[reps[i]].gossip_up;
    }
    return n;
}

static uint64_t sim_write_to(sim_t *s, int ci, const char *key, const char *val,
                             coord_cl_t cl, uint64_t timeout,
                             const uint32_t *order, size_t n)
{
    uint32_t reps[MAX_NODES];
    bool alive[MAX_NODES];
    n = sim_targets(s, order, n, reps, alive);
    uint64_t id = s->next_req++;
    kv_assert(id < MAX_REQS);
    kv_slice_t v = val ? kv_slice_str(val) : kv_slice(NULL, 0);
    assert_int_equal(coord_write(s->co[ci].c, s->now, id, kv_slice_str(key), v,
                                 val == NULL, 0, cl, timeout, 0, reps, n, alive),
                     KV_OK);
    sim_drain(s, ci);
    return id;
}

static uint64_t sim_write(sim_t *s, int ci, const char *key, const char *val,
                          coord_cl_t cl)
{
    return sim_write_to(s, ci, key, val, cl, 500, NULL, 0);
}

static uint64_t sim_read_from(sim_t *s, int ci, const char *key, coord_cl_t cl,
                              uint64_t timeout, const uint32_t *order, size_t n)
{
    uint32_t reps[MAX_NODES];
    bool alive[MAX_NODES];
    n = sim_targets(s, order, n, reps, alive);
    uint64_t id = s->next_req++;
    kv_assert(id < MAX_REQS);
    assert_int_equal(coord_read(s->co[ci].c, s->now, id, kv_slice_str(key), cl,
                                timeout, 0, reps, n, alive),
                     KV_OK);
    sim_drain(s, ci);
    return id;
}

static uint64_t sim_read(sim_t *s, int ci, const char *key, coord_cl_t cl)
{
    return sim_read_from(s, ci, key, cl, 500, NULL, 0);
}

static const stored_t *replica_cell(sim_t *s, uint32_t node, const char *key)
{
    return rep_find(&s->rep[node], key);
}

/* ---- cases ------------------------------------------------------------- */

static void test_coord_every_level_succeeds_on_a_healthy_cluster(void **state)
{
    (void)state;
    sim_t s;
    sim_init(&s, test_seed("coord_healthy"), 3, 1, NULL);
    s.max_delay = 20;
    const coord_cl_t cls[] = {COORD_CL_ONE, COORD_CL_QUORUM, COORD_CL_ALL};
    const uint32_t need[] = {1, 2, 3};
    for (size_t i = 0; i < 3; i++) {
        char val[16];
        snprintf(val, sizeof val, "v%zu", i);
        uint32_t sends = s.sends;
        const creply_t *w = sim_wait(&s, sim_write(&s, 0, "k", val, cls[i]));
        assert_int_equal(w->status, KV_OK);
        assert_true(w->acks >= need[i]);
        assert_true(w->ts != 0);
        assert_int_equal(s.sends - sends, 3); /* every live replica */
        sim_settle(&s); /* ONE's reply came early; let the rest land */
        const creply_t *r = sim_wait(&s, sim_read(&s, 0, "k", cls[i]));
        assert_int_equal(r->status, KV_OK);
        assert_string_equal(r->val, val);
        assert_int_equal(r->ts, w->ts);
        sim_settle(&s);
    }
    const creply_t *nf = sim_wait(&s, sim_read(&s, 0, "absent", COORD_CL_QUORUM));
    assert_int_equal(nf->status, KV_NOTFOUND);
    assert_int_equal(nf->ts, 0);
    assert_int_equal(s.hints, 0);
    sim_settle(&s);
    sim_deinit(&s);
}

static void test_coord_one_replica_down_quorum_ok_all_unavailable(void **state)
{
    (void)state;
    sim_t s;
    sim_init(&s, test_seed("coord_one_down"), 3, 1, NULL);
    s.max_delay = 10;
    s.rep[2].up = s.rep[2].gossip_up = false;

    const creply_t *w = sim_wait(&s, sim_write(&s, 0, "k", "a", COORD_CL_QUORUM));
    assert_int_equal(w->status, KV_OK);
    assert_int_equal(w->acks, 2);
    assert_int_equal(s.hints, 1);
    assert_int_equal(s.hint_target, 2);
    assert_int_equal(s.hint_ts, w->ts);

    uint32_t sends = s.sends;
    uint64_t id = sim_write(&s, 0, "k", "b", COORD_CL_ALL);
    /* fails fast: the reply is already there, nothing was sent or hinted */
    assert_int_equal(s.replies[id].count, 1);
    assert_int_equal(s.replies[id].status, KV_UNAVAILABLE);
    assert_int_equal(s.sends, sends);
    assert_int_equal(s.hints, 1);
    assert_int_equal(coord_live_requests(s.co[0].c), 0);

    id = sim_read(&s, 0, "k", COORD_CL_ALL);
    assert_int_equal(s.replies[id].status, KV_UNAVAILABLE);
    assert_int_equal(s.sends, sends);

    const creply_t *r = sim_wait(&s, sim_read(&s, 0, "k", COORD_CL_QUORUM));
    assert_int_equal(r->status, KV_OK);
    assert_string_equal(r->val, "a");
    sim_settle(&s);
    sim_deinit(&s);
}

/* During a ring change a write also goes to the pending replica, and needs
 * one more ack for it: QUORUM of 3 current + 1 pending is 3 acks. */
static void test_coord_pending_replica_gets_the_write_and_one_more_ack(void **state)
{
    (void)state;
    sim_t s;
    sim_init(&s, test_seed("coord_pending"), 4, 1, NULL);
    uint32_t reps[4] = {0, 1, 2, 3}; /* 3 is pending */
    bool alive[4] = {true, true, true, true};
    uint64_t id = s.next_req++;
    assert_int_equal(coord_write_pending(s.co[0].c, s.now, id, kv_slice_str("k"),
                                         kv_slice_str("v"), false, 0, COORD_CL_QUORUM,
                                         500, 0, reps, 4, 1, alive), KV_OK);
    sim_drain(&s, 0);
    const creply_t *w = sim_wait(&s, id);
    assert_int_equal(w->status, KV_OK);
    assert_int_equal(w->acks, 3);
    sim_settle(&s);
    assert_non_null(replica_cell(&s, 3, "k")); /* the pending one got it */

    /* two of the four down: 2 < 3 needed, Unavailable before sending */
    alive[1] = alive[3] = false;
    uint32_t sends = s.sends;
    id = s.next_req++;
    assert_int_equal(coord_write_pending(s.co[0].c, s.now, id, kv_slice_str("k"),
                                         kv_slice_str("w"), false, 0, COORD_CL_QUORUM,
                                         500, 0, reps, 4, 1, alive), KV_OK);
    sim_drain(&s, 0);
    assert_int_equal(s.replies[id].status, KV_UNAVAILABLE);
    assert_int_equal(s.sends, sends);
    /* ONE needs 2 (1 + the pending one's) */
    alive[1] = true;
    id = s.next_req++;
    assert_int_equal(coord_write_pending(s.co[0].c, s.now, id, kv_slice_str("k"),
                                         kv_slice_str("x"), false, 0, COORD_CL_ONE,
                                         500, 0, reps, 4, 1, alive), KV_OK);
    sim_drain(&s, 0);
    w = sim_wait(&s, id);
    assert_int_equal(w->status, KV_OK);
    assert_int_equal(w->acks, 2);
    /* every replica pending is refused */
    assert_int_equal(coord_write_pending(s.co[0].c, s.now, s.next_req++,
                                         kv_slice_str("k"), kv_slice_str("x"), false,
                                         0, COORD_CL_ONE, 500, 0, reps, 4, 4, alive),
                     KV_INVALID);
    sim_settle(&s);
    sim_deinit(&s);
}

/* A read whose replica fails asks the replica it did not ask yet; a read
 * whose replica's connection drops does the same at once, not at the
 * deadline. */
static void stats_of(sim_t *s, int ci, coord_stats_t *st);

static void test_coord_read_fails_over_to_an_unasked_replica(void **state)
{
    (void)state;
    sim_t s;
    sim_init(&s, test_seed("coord_failover"), 3, 1, NULL);
    const creply_t *w = sim_wait(&s, sim_write(&s, 0, "k", "v", COORD_CL_ALL));
    assert_int_equal(w->status, KV_OK);
    s.rep[0].fail_reads = true; /* the first asked answers an error */
    const creply_t *r = sim_wait(&s, sim_read(&s, 0, "k", COORD_CL_QUORUM));
    assert_int_equal(r->status, KV_OK);
    assert_string_equal(r->val, "v");
    coord_stats_t st;
    stats_of(&s, 0, &st);
    assert_int_equal(st.read_failovers, 1);
    /* two failing of three: QUORUM cannot be had */
    s.rep[1].fail_reads = true;
    r = sim_wait(&s, sim_read(&s, 0, "k", COORD_CL_QUORUM));
    assert_int_equal(r->status, KV_TIMEOUT);
    s.rep[0].fail_reads = s.rep[1].fail_reads = false;

    /* a replica goes silent with the read in flight; its link drops */
    s.rep[0].mute = true;
    uint64_t t0 = s.now;
    uint64_t id = sim_read(&s, 0, "k", COORD_CL_QUORUM);
    coord_on_node_down(s.co[0].c, s.now, 0);
    sim_drain(&s, 0);
    r = sim_wait(&s, id);
    assert_int_equal(r->status, KV_OK);
    assert_true(r->at - t0 < 100); /* well before the 500 ms deadline */
    /* a write in flight to it is hinted at once */
    uint32_t hints = s.hints;
    id = sim_write(&s, 0, "k", "w", COORD_CL_QUORUM);
    coord_on_node_down(s.co[0].c, s.now, 0);
    sim_drain(&s, 0);
    assert_int_equal(s.hints, hints + 1);
    w = sim_wait(&s, id);
    assert_int_equal(w->status, KV_OK);
    s.rep[0].mute = false;
    sim_settle(&s);
    sim_deinit(&s);
}

static void test_coord_two_replicas_down_only_one_succeeds(void **state)
{
    (void)state;
    sim_t s;
    sim_init(&s, test_seed("coord_two_down"), 3, 1, NULL);
    s.rep[0].up = s.rep[0].gossip_up = false;
    s.rep[2].up = s.rep[2].gossip_up = false;
    uint64_t q = sim_write(&s, 0, "k", "x", COORD_CL_QUORUM);
    assert_int_equal(s.replies[q].status, KV_UNAVAILABLE);
    assert_int_equal(s.hints, 0);
    const creply_t *w = sim_wait(&s, sim_write(&s, 0, "k", "x", COORD_CL_ONE));
    assert_int_equal(w->status, KV_OK);
    assert_int_equal(w->acks, 1);
    assert_int_equal(s.hints, 2);
    uint64_t rq = sim_read(&s, 0, "k", COORD_CL_QUORUM);
    assert_int_equal(s.replies[rq].status, KV_UNAVAILABLE);
    const creply_t *r = sim_wait(&s, sim_read(&s, 0, "k", COORD_CL_ONE));
    assert_int_equal(r->status, KV_OK);
    assert_string_equal(r->val, "x");
    sim_settle(&s);
    sim_deinit(&s);
}

static void test_coord_lost_acks_time_out_with_the_ack_count(void **state)
{
    (void)state;
    sim_t s;
    sim_init(&s, test_seed("coord_lost_acks"), 3, 1, NULL);
    s.max_delay = 5;
    /* two replicas store the write but their acks are lost */
    s.rep[1].mute = s.rep[2].mute = true;
    uint64_t start = s.now;
    const creply_t *w =
        sim_wait(&s, sim_write_to(&s, 0, "k", "v", COORD_CL_QUORUM, 100, NULL, 0));
    assert_int_equal(w->status, KV_TIMEOUT);
    assert_int_equal(w->acks, 1);
    assert_int_equal(w->at, start + 100);
    /* indeterminate: the write did land on the mute replicas */
    assert_non_null(replica_cell(&s, 2, "k"));
    assert_int_equal(coord_live_requests(s.co[0].c), 0);
    /* ... and the two silent ones are hinted with the stamp they were sent */
    assert_int_equal(s.nhint_log, 2);
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(s.hint_log[i].node, i + 1);
        assert_int_equal(s.hint_log[i].cell.ts, replica_cell(&s, 2, "k")->cell.ts);
        assert_int_equal(s.hint_log[i].at, start + 100);
    }

    /* a read whose answers are lost times out too */
    const creply_t *r =
        sim_wait(&s, sim_read_from(&s, 0, "k", COORD_CL_ALL, 50, NULL, 0));
    assert_int_equal(r->status, KV_TIMEOUT);
    assert_int_equal(r->acks, 1);

    /* a slow replica's ack after an OK reply is taken and state freed */
    s.rep[1].mute = s.rep[2].mute = false;
    s.rep[2].slow_ms = 300;
    const creply_t *ok =
        sim_wait(&s, sim_write_to(&s, 0, "k", "v2", COORD_CL_QUORUM, 1000, NULL, 0));
    assert_int_equal(ok->status, KV_OK);
    assert_int_equal(coord_live_requests(s.co[0].c), 1); /* waits for node 2 */
    sim_settle(&s);
    assert_int_equal(s.nhint_log, 2); /* its ack came in time: no hint */
    /* ... and one that answers after the deadline is dropped cleanly */
    s.rep[2].slow_ms = 2000;
    const creply_t *ok2 =
        sim_wait(&s, sim_write_to(&s, 0, "k", "v3", COORD_CL_QUORUM, 500, NULL, 0));
    assert_int_equal(ok2->status, KV_OK);
    coord_stats_t st;
    coord_get_stats(s.co[0].c, &st);
    uint64_t dropped = st.dropped_replies;
    sim_settle(&s);
    coord_get_stats(s.co[0].c, &st);
    assert_int_equal(st.dropped_replies, dropped + 1);
    assert_int_equal(st.timeouts, 2);
    /* the ack after the deadline came too late: node 2 was hinted */
    assert_int_equal(s.nhint_log, 3);
    assert_int_equal(s.hint_log[2].node, 2);
    assert_int_equal(s.hint_log[2].cell.ts, ok2->ts);
    assert_int_equal(st.hints, 3);
    assert_int_equal(st.hints_timeout, 3);
    assert_int_equal(st.hints_error, 0);
    sim_deinit(&s);
}

/* Coordinator 1's wall clock runs 300 ms ahead (within max_clock_offset).
 * Its write finishes; then coordinator 0 writes the same key. Its first
 * stamp is older, the replicas answer SUPERSEDED, it re-stamps -- and wins. */
static void test_coord_a_write_after_another_finished_wins_despite_skew(void **state)
{
    (void)state;
    sim_t s;
    const int64_t offs[2] = {0, 300};
    sim_init(&s, test_seed("coord_restamp"), 3, 2, offs);
    s.max_delay = 10;
    const creply_t *w1 = sim_wait(&s, sim_write(&s, 1, "k", "ahead", COORD_CL_ALL));
    assert_int_equal(w1->status, KV_OK);
    sim_settle(&s);
    const creply_t *w2 = sim_wait(&s, sim_write(&s, 0, "k", "later", COORD_CL_QUORUM));
    assert_int_equal(w2->status, KV_OK);
    assert_true(w2->ts > w1->ts);
    coord_stats_t st;
    coord_get_stats(s.co[0].c, &st);
    assert_true(st.restamps >= 1);
    sim_settle(&s);
    for (int ci = 0; ci < 2; ci++) {
        const creply_t *r = sim_wait(&s, sim_read(&s, ci, "k", COORD_CL_QUORUM));
        assert_int_equal(r->status, KV_OK);
        assert_string_equal(r->val, "later");
        assert_int_equal(r->ts, w2->ts);
        sim_settle(&s);
    }
    sim_deinit(&s);
}

/* A replica that is always SUPERSEDED-ing (a stamp far ahead, refused by the
 * HLC) makes the write fail with CLOCK_SKEW, never succeed silently. */
static void test_coord_superseded_beyond_max_offset_is_clock_skew(void **state)
{
    (void)state;
    sim_t s;
    const int64_t offs[2] = {0, 3600 * 1000};
    sim_init(&s, test_seed("coord_skew"), 3, 2, offs);
    const creply_t *w1 = sim_wait(&s, sim_write(&s, 1, "k", "hour-ahead", COORD_CL_ALL));
    assert_int_equal(w1->status, KV_OK);
    sim_settle(&s);
    s.rep[2].mute = true; /* its answer never comes */
    const creply_t *w2 = sim_wait(&s, sim_write(&s, 0, "k", "now", COORD_CL_QUORUM));
    assert_int_equal(w2->status, KV_CLOCK_SKEW);
    sim_settle(&s);
    /* a replica holds a newer cell: the lost stamp is hinted to no one */
    assert_int_equal(s.nhint_log, 0);
    s.rep[2].mute = false;
    /* a causality token from the future is refused up front */
    uint32_t reps[3] = {0, 1, 2};
    bool alive[3] = {true, true, true};
    assert_int_equal(coord_write(s.co[0].c, s.now, 999, kv_slice_str("k"),
                                 kv_slice_str("x"), false, 0, COORD_CL_ONE, 100,
                                 w1->ts, reps, 3, alive),
                     KV_OK);
    sim_drain(&s, 0);
    assert_int_equal(s.replies[999].status, KV_CLOCK_SKEW);
    assert_int_equal(coord_live_requests(s.co[0].c), 0);
    sim_deinit(&s);
}

static void test_coord_read_repair_brings_a_stale_replica_up_to_date(void **state)
{
    (void)state;
    sim_t s;
    sim_init(&s, test_seed("coord_repair"), 3, 1, NULL);
    s.max_delay = 8;
    assert_int_equal(sim_wait(&s, sim_write(&s, 0, "k", "old", COORD_CL_ALL))->status,
                     KV_OK);
    sim_settle(&s);
    s.rep[2].up = s.rep[2].gossip_up = false;
    const creply_t *w = sim_wait(&s, sim_write(&s, 0, "k", "new", COORD_CL_QUORUM));
    assert_int_equal(w->status, KV_OK);
    sim_settle(&s);
    s.rep[2].up = s.rep[2].gossip_up = true; /* back, hint not replayed */
    assert_string_equal((const char *)replica_cell(&s, 2, "k")->val, "old");

    const uint32_t order[3] = {2, 0, 1}; /* the read set is {2, 0} */
    const creply_t *r =
        sim_wait(&s, sim_read_from(&s, 0, "k", COORD_CL_QUORUM, 500, order, 3));
    assert_int_equal(r->status, KV_OK);
    assert_string_equal(r->val, "new");
    assert_int_equal(r->ts, w->ts);
    coord_stats_t st;
    coord_get_stats(s.co[0].c, &st);
    assert_int_equal(st.read_repairs, 1);
    /* blocking: the repair landed before the reply */
    assert_int_equal(replica_cell(&s, 2, "k")->cell.ts, w->ts);
    sim_settle(&s);

    const uint32_t only2[1] = {2};
    const creply_t *one =
        sim_wait(&s, sim_read_from(&s, 0, "k", COORD_CL_ONE, 500, only2, 1));
    assert_int_equal(one->status, KV_OK);
    assert_string_equal(one->val, "new");
    sim_settle(&s);
    sim_deinit(&s);
}

static void test_coord_tombstones_win_and_read_as_notfound(void **state)
{
    (void)state;
    sim_t s;
    sim_init(&s, test_seed("coord_tombstone"), 3, 1, NULL);
    s.max_delay = 8;
    assert_int_equal(sim_wait(&s, sim_write(&s, 0, "k", "v", COORD_CL_ALL))->status,
                     KV_OK);
    sim_settle(&s);
    s.rep[0].up = s.rep[0].gossip_up = false;
    const creply_t *d = sim_wait(&s, sim_write(&s, 0, "k", NULL, COORD_CL_QUORUM));
    assert_int_equal(d->status, KV_OK);
    sim_settle(&s);
    s.rep[0].up = s.rep[0].gossip_up = true; /* still holds "v" */
    const uint32_t order[3] = {0, 1, 2};
    const creply_t *r =
        sim_wait(&s, sim_read_from(&s, 0, "k", COORD_CL_QUORUM, 500, order, 3));
    assert_int_equal(r->status, KV_NOTFOUND);
    assert_int_equal(r->ts, d->ts); /* the tombstone's stamp */
    assert_true(replica_cell(&s, 0, "k")->cell.tombstone);
    sim_settle(&s);
    const uint32_t only0[1] = {0};
    const creply_t *one =
        sim_wait(&s, sim_read_from(&s, 0, "k", COORD_CL_ONE, 500, only0, 1));
    assert_int_equal(one->status, KV_NOTFOUND);
    sim_settle(&s);
    sim_deinit(&s);
}

/* ---- hints for replicas that did not ack -------------------------------- */

static void stats_of(sim_t *s, int ci, coord_stats_t *st)
{
    coord_get_stats(s->co[ci].c, st);
}

/* Node 2 stores the write but its ack is lost: the write replies OK at
 * QUORUM, and at the deadline node 2 -- only node 2 -- is hinted with the
 * acked stamp. Delivered, the hint changes nothing on node 2 (it has it). */
static void test_coord_lost_acks_leave_a_hint_at_the_deadline(void **state)
{
    (void)state;
    sim_t s;
    sim_init(&s, test_seed("coord_hint_deadline"), 3, 1, NULL);
    s.rep[2].mute = true;
    uint64_t start = s.now;
    uint64_t id = sim_write_to(&s, 0, "k", "v", COORD_CL_QUORUM, 400, NULL, 0);
    const creply_t *w = sim_wait(&s, id);
    assert_int_equal(w->status, KV_OK);
    assert_int_equal(w->acks, 2);
    assert_int_equal(s.nhint_log, 0); /* nothing before the deadline */
    assert_int_equal(coord_live_requests(s.co[0].c), 1);
    sim_settle(&s);
    assert_int_equal(s.nhint_log, 1);
    const logged_t *h = &s.hint_log[0];
    assert_int_equal(h->node, 2);
    assert_int_equal(h->req, id);
    assert_string_equal(h->key, "k");
    assert_int_equal(h->cell.ts, w->ts);
    assert_false(h->cell.tombstone);
    assert_int_equal(h->cell.value.len, 1);
    assert_memory_equal(h->val, "v", 1);
    assert_int_equal(h->at, start + 400);
    coord_stats_t st;
    stats_of(&s, 0, &st);
    assert_int_equal(st.hints, 1);
    assert_int_equal(st.hints_timeout, 1);
    assert_int_equal(st.hints_error, 0);

    /* a write that times out hints its silent replicas too, at its stamp */
    s.rep[1].mute = true;
    id = sim_write_to(&s, 0, "k", NULL, COORD_CL_QUORUM, 400, NULL, 0);
    assert_int_equal(sim_wait(&s, id)->status, KV_TIMEOUT);
    sim_settle(&s);
    assert_int_equal(s.nhint_log, 3);
    for (size_t i = 1; i < 3; i++) {
        assert_int_equal(s.hint_log[i].node, i);
        assert_int_equal(s.hint_log[i].req, id);
        assert_true(s.hint_log[i].cell.tombstone);
        assert_int_equal(s.hint_log[i].cell.ts, replica_cell(&s, 0, "k")->cell.ts);
    }
    stats_of(&s, 0, &st);
    assert_int_equal(st.hints_timeout, 3);
    sim_deinit(&s);
}

/* A replica that answers a write with an error (a failed send looks the
 * same) is hinted at once; one that answers OK never is. */
static void test_coord_an_error_reply_is_hinted(void **state)
{
    (void)state;
    sim_t s;
    sim_init(&s, test_seed("coord_hint_error"), 3, 1, NULL);
    s.rep[1].fail_writes = true;
    uint64_t start = s.now;
    const creply_t *w = sim_wait(&s, sim_write(&s, 0, "k", "v", COORD_CL_QUORUM));
    assert_int_equal(w->status, KV_OK);
    assert_int_equal(s.nhint_log, 1);
    assert_int_equal(s.hint_log[0].node, 1);
    assert_int_equal(s.hint_log[0].cell.ts, w->ts);
    assert_int_equal(s.hint_log[0].at, start + 2); /* with the error, not later */
    sim_settle(&s);
    assert_int_equal(s.nhint_log, 1); /* answered: no second hint at the deadline */
    coord_stats_t st;
    stats_of(&s, 0, &st);
    assert_int_equal(st.hints, 1);
    assert_int_equal(st.hints_error, 1);
    assert_int_equal(st.hints_timeout, 0);
    assert_null(replica_cell(&s, 1, "k"));
    sim_deliver_hints(&s);
    assert_int_equal(replica_cell(&s, 1, "k")->cell.ts, w->ts);

    /* two errors: QUORUM cannot be reached, TIMEOUT at once, both hinted */
    s.rep[2].fail_writes = true;
    uint64_t id = sim_write(&s, 0, "k", "w", COORD_CL_QUORUM);
    const creply_t *t = sim_wait(&s, id);
    assert_int_equal(t->status, KV_TIMEOUT);
    assert_int_equal(t->acks, 1);
    sim_settle(&s);
    assert_int_equal(s.nhint_log, 3);
    assert_int_equal(s.hint_log[1].node + s.hint_log[2].node, 1 + 2);
    for (size_t i = 1; i < 3; i++) {
        assert_int_equal(s.hint_log[i].req, id);
        assert_int_equal(s.hint_log[i].cell.ts, replica_cell(&s, 0, "k")->cell.ts);
    }
    /* node 1 errs, node 2 is silent: QUORUM is still reachable, so the write
     * waits for the deadline, which hints node 2 -- and node 1 not again */
    s.rep[2].fail_writes = false;
    s.rep[2].mute = true;
    uint64_t start2 = s.now;
    id = sim_write_to(&s, 0, "k", "y", COORD_CL_QUORUM, 300, NULL, 0);
    assert_int_equal(sim_wait(&s, id)->status, KV_TIMEOUT);
    sim_settle(&s);
    assert_int_equal(s.nhint_log, 5);
    assert_int_equal(s.hint_log[3].node, 1);
    assert_int_equal(s.hint_log[3].at, start2 + 2);
    assert_int_equal(s.hint_log[4].node, 2);
    assert_int_equal(s.hint_log[4].at, start2 + 300);
    assert_int_equal(s.hint_log[3].cell.ts, s.hint_log[4].cell.ts);
    stats_of(&s, 0, &st);
    assert_int_equal(st.hints_error, 4);
    assert_int_equal(st.hints_timeout, 1);
    s.rep[2].mute = false;

    /* the glue's failed send: any error status, fed straight in */
    s.rep[1].fail_writes = s.rep[2].fail_writes = false;
    s.rep[2].mute = true;
    id = sim_write(&s, 0, "k", "x", COORD_CL_ONE);
    const logged_t *m = find_send(&s, 0, id, 2, COORD_ACT_SEND_MUTATION, 0);
    assert_int_equal(coord_on_mutation_reply(s.co[0].c, s.now, 2, m->msg_id,
                                             KV_BUSY, 0),
                     KV_OK);
    sim_drain(&s, 0);
    assert_int_equal(s.nhint_log, 6);
    assert_int_equal(s.hint_log[5].node, 2);
    assert_int_equal(coord_on_mutation_reply(s.co[0].c, s.now, 2, m->msg_id,
                                             KV_BUSY, 0),
                     KV_NOTFOUND); /* a duplicate is dropped, not hinted */
    sim_drain(&s, 0);
    sim_settle(&s);
    assert_int_equal(s.nhint_log, 6);
    stats_of(&s, 0, &st);
    assert_int_equal(st.hints_error, 5);
    assert_int_equal(st.hints_timeout, 1);
    assert_int_equal(st.hints, 6);
    sim_deinit(&s);
}

/* Coordinator 1 runs 300 ms ahead and writes first; coordinator 0's write
 * is superseded and re-stamped, while node 2's acks are lost. Node 2 is
 * hinted once, with the final stamp: not for the stale attempt, not twice
 * when it also answers with an error, and a stale error is dropped. */
static void test_coord_restamped_write_hints_only_its_final_stamp(void **state)
{
    (void)state;
    sim_t s;
    const int64_t offs[2] = {0, 300};
    sim_init(&s, test_seed("coord_hint_restamp"), 3, 2, offs);
    s.max_delay = 6;
    assert_int_equal(sim_wait(&s, sim_write(&s, 1, "k", "ahead", COORD_CL_ALL))->status,
                     KV_OK);
    sim_settle(&s);
    s.rep[2].mute = true;
    uint64_t id = sim_write_to(&s, 0, "k", "later", COORD_CL_QUORUM, 400, NULL, 0);
    const creply_t *w = sim_wait(&s, id);
    assert_int_equal(w->status, KV_OK);
    coord_stats_t st;
    stats_of(&s, 0, &st);
    assert_int_equal(st.restamps, 1);
    assert_int_equal(s.nhint_log, 0);

    /* an error for the first attempt arrives late: stale, dropped */
    const logged_t *old = find_send(&s, 0, id, 1, COORD_ACT_SEND_MUTATION, w->ts);
    assert_true(old->cell.ts < w->ts);
    assert_int_equal(coord_on_mutation_reply(s.co[0].c, s.now, 1, old->msg_id,
                                             KV_IO, 0),
                     KV_NOTFOUND);
    sim_drain(&s, 0);
    assert_int_equal(s.nhint_log, 0);
    /* node 2 answers the final attempt with an error: hinted now ... */
    const logged_t *cur = NULL;
    for (size_t i = 0; i < s.nsend_log; i++)
        if (s.send_log[i].req == id && s.send_log[i].node == 2 &&
            s.send_log[i].cell.ts == w->ts)
            cur = &s.send_log[i];
    assert_non_null(cur);
    assert_int_equal(coord_on_mutation_reply(s.co[0].c, s.now, 2, cur->msg_id,
                                             KV_IO, 0),
                     KV_OK);
    sim_drain(&s, 0);
    assert_int_equal(s.nhint_log, 1);
    /* ... and not again at the deadline */
    sim_settle(&s);
    assert_int_equal(s.nhint_log, 1);
    assert_int_equal(s.hint_log[0].node, 2);
    assert_int_equal(s.hint_log[0].cell.ts, w->ts);
    stats_of(&s, 0, &st);
    assert_int_equal(st.hints, 1);
    assert_int_equal(st.hints_error, 1);
    assert_int_equal(st.hints_timeout, 0);

    /* the same without the error: the deadline hints node 2 once, with the
     * final stamp, although its first-attempt answer never came either */
    s.rep[2].mute = false;
    assert_int_equal(sim_wait(&s, sim_write(&s, 1, "k", "ahead2", COORD_CL_ALL))->status,
                     KV_OK);
    sim_settle(&s);
    s.rep[2].mute = true;
    id = sim_write_to(&s, 0, "k", "again", COORD_CL_QUORUM, 400, NULL, 0);
    const creply_t *w2 = sim_wait(&s, id);
    assert_int_equal(w2->status, KV_OK);
    stats_of(&s, 0, &st);
    assert_int_equal(st.restamps, 2);
    hlc_ts_t first = find_send(&s, 0, id, 2, COORD_ACT_SEND_MUTATION, w2->ts)->cell.ts;
    assert_true(first < w2->ts);
    sim_settle(&s);
    assert_int_equal(s.nhint_log, 2);
    assert_int_equal(s.hint_log[1].node, 2);
    assert_int_equal(s.hint_log[1].req, id);
    assert_int_equal(s.hint_log[1].cell.ts, w2->ts);
    assert_int_equal(replica_cell(&s, 2, "k")->cell.ts, w2->ts);
    stats_of(&s, 0, &st);
    assert_int_equal(st.hints_timeout, 1);
    sim_deinit(&s);
}

/* ---- background read repair --------------------------------------------- */

/* Node 0 holds "new", node 1 "old", node 2 nothing. Returns new's stamp. */
static hlc_ts_t setup_new_old_missing(sim_t *s)
{
    s->rep[2].up = s->rep[2].gossip_up = false;
    assert_int_equal(sim_wait(s, sim_write(s, 0, "k", "old", COORD_CL_QUORUM))->status,
                     KV_OK);
    sim_settle(s);
    s->rep[1].up = s->rep[1].gossip_up = false;
    const creply_t *w = sim_wait(s, sim_write(s, 0, "k", "new", COORD_CL_ONE));
    assert_int_equal(w->status, KV_OK);
    sim_settle(s);
    s->rep[1].up = s->rep[1].gossip_up = true; /* hints not replayed */
    s->rep[2].up = s->rep[2].gossip_up = true;
    assert_string_equal((const char *)replica_cell(s, 1, "k")->val, "old");
    assert_null(replica_cell(s, 2, "k"));
    return w->ts;
}

static void test_coord_bg_repair_brings_the_unread_replicas_up_to_date(void **state)
{
    (void)state;
    sim_t s;
    sim_init(&s, test_seed("coord_bg_repair"), 3, 1, NULL);
    const uint32_t always[4] = {0, 1000000, 0, 0};
    sim_bg_repair(&s, always, 64);
    hlc_ts_t new_ts = setup_new_old_missing(&s);
    coord_stats_t st0, st;
    stats_of(&s, 0, &st0);
    assert_int_equal(st0.bg_repair_checks, 0); /* writes start no checks */
    size_t sends0 = s.nsend_log;
    uint64_t start = s.now;
    const creply_t *r = sim_wait(&s, sim_read(&s, 0, "k", COORD_CL_ONE));
    /* the reply: at once, what the one replica said */
    assert_int_equal(r->status, KV_OK);
    assert_string_equal(r->val, "new");
    assert_int_equal(r->ts, new_ts);
    assert_int_equal(r->acks, 1);
    assert_int_equal(r->at, start + 2);
    assert_string_equal((const char *)replica_cell(&s, 1, "k")->val, "old");
    assert_null(replica_cell(&s, 2, "k"));
    assert_int_equal(coord_live_requests(s.co[0].c), 1); /* the check */
    for (size_t i = sends0; i < s.nsend_log; i++) /* its reads follow the REPLY */
        if (s.send_log[i].node != 0) assert_true(s.send_log[i].evt > r->evt);
    sim_settle(&s);
    for (uint32_t n = 0; n < 3; n++) {
        assert_int_equal(replica_cell(&s, n, "k")->cell.ts, new_ts);
        assert_string_equal((const char *)replica_cell(&s, n, "k")->val, "new");
    }
    stats_of(&s, 0, &st);
    assert_int_equal(st.bg_repair_checks, 1);
    assert_int_equal(st.bg_repair_reads, 2);
    assert_int_equal(st.bg_repair_mutations, 2);
    assert_int_equal(st.bg_repair_skipped, 0);
    assert_int_equal(st.read_repairs, st0.read_repairs); /* none blocking */
    assert_int_equal(st.reads, st0.reads + 1);
    assert_int_equal(count_sends(&s, sends0, COORD_ACT_SEND_READ), 3);
    assert_int_equal(count_sends(&s, sends0, COORD_ACT_SEND_MUTATION), 2);
    for (size_t i = sends0; i < s.nsend_log; i++) {
        const logged_t *l = &s.send_log[i];
        if (l->kind == COORD_ACT_SEND_MUTATION) {
            assert_true(l->node == 1 || l->node == 2);
            assert_int_equal(l->cell.ts, new_ts);
        }
    }
    /* everyone agrees now: a check reads, finds nothing to repair */
    assert_int_equal(sim_wait(&s, sim_read(&s, 0, "k", COORD_CL_ONE))->status, KV_OK);
    sim_settle(&s);
    stats_of(&s, 0, &st);
    assert_int_equal(st.bg_repair_checks, 2);
    assert_int_equal(st.bg_repair_reads, 4);
    assert_int_equal(st.bg_repair_mutations, 2);
    /* an extra replica that fails the read is unknown, not behind */
    s.rep[2].fail_reads = true;
    assert_int_equal(sim_wait(&s, sim_read(&s, 0, "k", COORD_CL_ONE))->status, KV_OK);
    sim_settle(&s);
    stats_of(&s, 0, &st);
    assert_int_equal(st.bg_repair_checks, 3);
    assert_int_equal(st.bg_repair_mutations, 2);
    s.rep[2].fail_reads = false;
    /* no unqueried alive replica (the others are down): no check */
    s.rep[1].gossip_up = s.rep[2].gossip_up = false;
    assert_int_equal(sim_wait(&s, sim_read(&s, 0, "k", COORD_CL_ONE))->status, KV_OK);
    sim_settle(&s);
    stats_of(&s, 0, &st);
    assert_int_equal(st.bg_repair_checks, 3);
    sim_deinit(&s);

    /* chance 0 at ONE (though 100% at the other levels): nothing extra */
    sim_init(&s, test_seed("coord_bg_repair"), 3, 1, NULL);
    const uint32_t not_one[4] = {1000000, 0, 1000000, 1000000};
    sim_bg_repair(&s, not_one, 64);
    setup_new_old_missing(&s);
    sends0 = s.nsend_log;
    r = sim_wait(&s, sim_read(&s, 0, "k", COORD_CL_ONE));
    assert_string_equal(r->val, "new");
    sim_settle(&s);
    assert_int_equal(s.nsend_log - sends0, 1);
    assert_string_equal((const char *)replica_cell(&s, 1, "k")->val, "old");
    assert_null(replica_cell(&s, 2, "k"));
    stats_of(&s, 0, &st);
    assert_int_equal(st.bg_repair_checks + st.bg_repair_reads +
                         st.bg_repair_mutations + st.bg_repair_skipped,
                     0);
    sim_deinit(&s);
}

/* The read set {0, 1} agrees on "old"; node 2, outside it, holds "new".
 * The read replies "old" (what its read set said); the check then brings
 * the read set up to "new". */
static void test_coord_bg_repair_spreads_a_newer_cell_from_outside_the_read_set(
    void **state)
{
    (void)state;
    sim_t s;
    sim_init(&s, test_seed("coord_bg_newer"), 3, 1, NULL);
    const uint32_t quorum[4] = {0, 0, 1000000, 0};
    sim_bg_repair(&s, quorum, 64);
    s.max_delay = 5;
    const creply_t *w1 = sim_wait(&s, sim_write(&s, 0, "k", "old", COORD_CL_ALL));
    assert_int_equal(w1->status, KV_OK);
    sim_settle(&s);
    s.rep[0].up = s.rep[0].gossip_up = false;
    s.rep[1].up = s.rep[1].gossip_up = false;
    const creply_t *w2 = sim_wait(&s, sim_write(&s, 0, "k", "new", COORD_CL_ONE));
    assert_int_equal(w2->status, KV_OK);
    sim_settle(&s);
    s.rep[0].up = s.rep[0].gossip_up = true;
    s.rep[1].up = s.rep[1].gossip_up = true;
    coord_stats_t st0, st;
    stats_of(&s, 0, &st0);
    size_t sends0 = s.nsend_log;

    const creply_t *r = sim_wait(&s, sim_read(&s, 0, "k", COORD_CL_QUORUM));
    assert_int_equal(r->status, KV_OK);
    assert_string_equal(r->val, "old");
    assert_int_equal(r->ts, w1->ts);
    assert_int_equal(r->acks, 2);
    sim_settle(&s);
    for (uint32_t n = 0; n < 3; n++)
        assert_int_equal(replica_cell(&s, n, "k")->cell.ts, w2->ts);
    stats_of(&s, 0, &st);
    assert_int_equal(st.read_repairs, st0.read_repairs);
    assert_int_equal(st.bg_repair_checks, 1);
    assert_int_equal(st.bg_repair_reads, 1);
    assert_int_equal(st.bg_repair_mutations, 2);
    assert_int_equal(find_send(&s, 0, s.next_req - 1, 2, COORD_ACT_SEND_READ, 0)->at,
                     r->at); /* sent with the reply */
    assert_int_equal(count_sends(&s, sends0, COORD_ACT_SEND_MUTATION), 2);
    /* now the read set says "new" */
    r = sim_wait(&s, sim_read(&s, 0, "k", COORD_CL_QUORUM));
    assert_string_equal(r->val, "new");
    sim_settle(&s);

    /* a tombstone outside the read set is spread the same way; a NOTFOUND
     * read set (nothing held) is repaired too */
    s.rep[0].up = s.rep[0].gossip_up = false;
    s.rep[1].up = s.rep[1].gossip_up = false;
    const creply_t *d = sim_wait(&s, sim_write(&s, 0, "k", NULL, COORD_CL_ONE));
    const creply_t *x = sim_wait(&s, sim_write(&s, 0, "x", "only2", COORD_CL_ONE));
    sim_settle(&s);
    s.rep[0].up = s.rep[0].gossip_up = true;
    s.rep[1].up = s.rep[1].gossip_up = true;
    r = sim_wait(&s, sim_read(&s, 0, "k", COORD_CL_QUORUM));
    assert_string_equal(r->val, "new");
    r = sim_wait(&s, sim_read(&s, 0, "x", COORD_CL_QUORUM));
    assert_int_equal(r->status, KV_NOTFOUND);
    assert_int_equal(r->ts, 0);
    sim_settle(&s);
    for (uint32_t n = 0; n < 3; n++) {
        assert_true(replica_cell(&s, n, "k")->cell.tombstone);
        assert_int_equal(replica_cell(&s, n, "k")->cell.ts, d->ts);
        assert_int_equal(replica_cell(&s, n, "x")->cell.ts, x->ts);
    }
    stats_of(&s, 0, &st);
    assert_int_equal(st.bg_repair_checks, 4); /* one per QUORUM read */
    assert_int_equal(st.bg_repair_mutations, 2 + 2 + 2);
    sim_deinit(&s);
}

static void test_coord_bg_repair_past_max_inflight_is_skipped(void **state)
{
    (void)state;
    sim_t s;
    sim_init(&s, test_seed("coord_bg_max"), 3, 1, NULL);
    const uint32_t always[4] = {0, 1000000, 1000000, 1000000};
    sim_bg_repair(&s, always, 1);
    assert_int_equal(sim_wait(&s, sim_write(&s, 0, "a", "1", COORD_CL_ALL))->status,
                     KV_OK);
    assert_int_equal(sim_wait(&s, sim_write(&s, 0, "b", "2", COORD_CL_ALL))->status,
                     KV_OK);
    sim_settle(&s);
    uint64_t ra = sim_read(&s, 0, "a", COORD_CL_ONE);
    uint64_t rb = sim_read(&s, 0, "b", COORD_CL_ONE);
    assert_string_equal(sim_wait(&s, ra)->val, "1");
    assert_string_equal(sim_wait(&s, rb)->val, "2");
    coord_stats_t st;
    stats_of(&s, 0, &st);
    assert_int_equal(st.bg_repair_checks, 1);
    assert_int_equal(st.bg_repair_skipped, 1);
    assert_int_equal(st.bg_repair_reads, 2);
    sim_settle(&s);
    /* the first check is over: the next read may start one */
    assert_int_equal(sim_wait(&s, sim_read(&s, 0, "b", COORD_CL_ONE))->status, KV_OK);
    sim_settle(&s);
    stats_of(&s, 0, &st);
    assert_int_equal(st.bg_repair_checks, 2);
    assert_int_equal(st.bg_repair_skipped, 1);
    assert_int_equal(st.bg_repair_mutations, 0);
    sim_deinit(&s);

    /* max_inflight 0: every check is skipped */
    sim_init(&s, test_seed("coord_bg_max"), 3, 1, NULL);
    sim_bg_repair(&s, always, 0);
    assert_int_equal(sim_wait(&s, sim_read(&s, 0, "a", COORD_CL_QUORUM))->status,
                     KV_NOTFOUND);
    sim_settle(&s);
    stats_of(&s, 0, &st);
    assert_int_equal(st.bg_repair_checks, 0);
    assert_int_equal(st.bg_repair_skipped, 1);
    sim_deinit(&s);
}

/* Nodes 1 and 2 never answer: the read replies from node 0 alone, its check
 * waits for them and is freed at the read's timeout from its start. Stale,
 * misaddressed and mismatched replies to it are dropped. */
static void test_coord_bg_check_without_answers_ends_at_its_deadline(void **state)
{
    (void)state;
    sim_t s;
    sim_init(&s, test_seed("coord_bg_deadline"), 3, 1, NULL);
    const uint32_t always[4] = {0, 1000000, 0, 0};
    sim_bg_repair(&s, always, 64);
    assert_int_equal(sim_wait(&s, sim_write(&s, 0, "k", "v", COORD_CL_ALL))->status,
                     KV_OK);
    sim_settle(&s);
    s.rep[1].mute = s.rep[2].mute = true;
    uint64_t id = sim_read_from(&s, 0, "k", COORD_CL_ONE, 300, NULL, 0);
    const creply_t *r = sim_wait(&s, id);
    assert_int_equal(r->status, KV_OK);
    assert_string_equal(r->val, "v");
    coord_t *c = s.co[0].c;
    assert_int_equal(coord_live_requests(c), 1);
    uint64_t due;
    assert_true(coord_next_deadline(c, &due));
    assert_int_equal(due, r->at + 300);

    coord_stats_t st0, st;
    stats_of(&s, 0, &st0);
    const logged_t *fg = find_send(&s, 0, id, 0, COORD_ACT_SEND_READ, 0);
    const logged_t *bg = find_send(&s, 0, id, 1, COORD_ACT_SEND_READ, 0);
    assert_true(bg->msg_id != fg->msg_id);
    eng_cell_t cell = {.ts = 1, .value = kv_slice_str("zz")};
    /* from the wrong node; as a mutation reply; the finished read's id */
    assert_int_equal(coord_on_read_reply(c, s.now, 2, bg->msg_id, KV_OK, &cell),
                     KV_NOTFOUND);
    assert_int_equal(coord_on_mutation_reply(c, s.now, 1, bg->msg_id, KV_OK, 0),
                     KV_NOTFOUND);
    assert_int_equal(coord_on_read_reply(c, s.now, 0, fg->msg_id, KV_OK, &cell),
                     KV_NOTFOUND);
    sim_drain(&s, 0);
    stats_of(&s, 0, &st);
    assert_int_equal(st.dropped_replies, st0.dropped_replies + 3);
    assert_int_equal(coord_live_requests(c), 1);

    while (coord_live_requests(c) > 0) assert_true(sim_step(&s, UINT64_MAX));
    assert_int_equal(s.now, r->at + 300);
    assert_false(coord_next_deadline(c, &due));
    stats_of(&s, 0, &st);
    assert_int_equal(st.bg_repair_checks, 1);
    assert_int_equal(st.bg_repair_reads, 2);
    assert_int_equal(st.bg_repair_mutations, 0);
    assert_int_equal(st.timeouts, st0.timeouts); /* no reply, no timeout */
    /* too late now */
    assert_int_equal(coord_on_read_reply(c, s.now, 1, bg->msg_id, KV_OK, &cell),
                     KV_NOTFOUND);
    sim_drain(&s, 0);
    sim_settle(&s);

    /* one extra answers, the other never: the check waits for the deadline
     * and repairs nothing (the answer was no newer, the silence unknown) */
    s.rep[1].mute = false;
    id = sim_read_from(&s, 0, "k", COORD_CL_ONE, 300, NULL, 0);
    r = sim_wait(&s, id);
    while (coord_live_requests(c) > 0) assert_true(sim_step(&s, UINT64_MAX));
    assert_int_equal(s.now, r->at + 300);
    stats_of(&s, 0, &st);
    assert_int_equal(st.bg_repair_checks, 2);
    assert_int_equal(st.bg_repair_mutations, 0);
    sim_settle(&s);
    sim_deinit(&s);
}

static void test_coord_rejects_bad_arguments(void **state)
{
    (void)state;
    sim_t s;
    sim_init(&s, test_seed("coord_args"), 3, 1, NULL);
    coord_t *c = s.co[0].c;
    uint32_t reps[3] = {0, 1, 1};
    bool alive[3] = {true, true, true};
    kv_slice_t k = kv_slice_str("k"), v = kv_slice_str("v");
    assert_int_equal(coord_write(c, 0, 1, k, v, false, 0, COORD_CL_ONE, 10, 0, reps,
                                 3, alive),
                     KV_INVALID); /* duplicate replica */
    reps[2] = 2;
    assert_int_equal(coord_write(c, 0, 1, k, v, false, 0, (coord_cl_t)9, 10, 0, reps,
                                 3, alive),
                     KV_INVALID);
    assert_int_equal(coord_read(c, 0, 1, kv_slice(NULL, 0), COORD_CL_ONE, 10, 0,
                                reps, 3, alive),
                     KV_INVALID);
    assert_int_equal(coord_read(c, 0, 1, k, COORD_CL_ONE, 10, 0, reps, 0, alive),
                     KV_INVALID);
    size_t n;
    coord_actions(c, &n);
    assert_int_equal(n, 0);
    assert_int_equal(coord_cl_required(COORD_CL_QUORUM, 5), 3);
    assert_int_equal(coord_cl_required(COORD_CL_QUORUM, 4), 3);
    assert_int_equal(coord_cl_required(COORD_CL_ALL, 3), 3);
    coord_options_t o;
    coord_options_init(&o);
    assert_int_equal(o.bg_repair_max_inflight, 64);
    for (int cl = 0; cl < 4; cl++) assert_int_equal(o.read_repair_ppm[cl], 0);
    o.hlc = s.co[0].hlc;
    o.read_repair_ppm[COORD_CL_QUORUM] = 1000001;
    coord_t *bad = NULL;
    assert_int_equal(coord_create(&o, &bad), KV_INVALID);
    assert_null(bad);
    /* undrained actions and in-flight requests are freed by destroy */
    assert_int_equal(coord_write(c, 0, 2, k, v, false, 0, COORD_CL_ALL, 10, 0, reps,
                                 3, alive),
                     KV_OK);
    assert_int_equal(coord_live_requests(c), 1);
    sim_deinit(&s);
}

/* ---- randomized runs --------------------------------------------------- */

typedef struct op {
    uint64_t start;
    bool is_write;
    int coord;
    int key;
    coord_cl_t cl;
    char val[16];
    uint64_t id;
    bool started;
} op_t;

static uint32_t cl_need(coord_cl_t cl) { return coord_cl_required(cl, 3); }

/* Totals over the randomized runs, so the test can show it was not vacuous. */
typedef struct run_totals {
    uint64_t checked_reads, checked_writes, restamps, timeouts, repairs, ok;
    uint64_t hinted_writes; /* OK writes that needed a hint to reach all */
    uint64_t hints_timeout, hints_error, hints_down;
    uint64_t bg_checks, bg_mutations, bg_skipped;
} run_totals_t;

/* Each (coordinator, request, replica, stamp) -- a stamp is an attempt --
 * is hinted at most once. */
static void check_hints_unique(const sim_t *s, int run)
{
    for (size_t i = 0; i < s->nhint_log; i++) {
        const logged_t *a = &s->hint_log[i];
        for (size_t j = i + 1; j < s->nhint_log; j++) {
            const logged_t *b = &s->hint_log[j];
            if (a->coord == b->coord && a->req == b->req && a->node == b->node &&
                a->cell.ts == b->cell.ts)
                fail_msg("run %d: request %" PRIu64 " hinted node %u twice at "
                         "ts %" PRIu64, run, a->req, a->node, a->cell.ts);
        }
    }
}

static void random_run(uint64_t seed, int run, run_totals_t *tot)
{
    sim_t s;
    kv_rng_t cfg;
    kv_rng_seed(&cfg, seed ^ (UINT64_C(0x9E3779B97F4A7C15) * (uint64_t)(run + 1)));
    const int64_t offs[2] = {0, (int64_t)kv_rng_below(&cfg, 401) - 200};
    sim_init(&s, kv_rng_next(&cfg), 3, 2, offs);
    s.loss_pct = (uint32_t)kv_rng_below(&cfg, 15);
    s.dup_pct = (uint32_t)kv_rng_below(&cfg, 20);
    s.min_delay = 1;
    s.max_delay = 1 + (uint32_t)kv_rng_below(&cfg, 40);
    if (kv_rng_below(&cfg, 4) == 0) s.rep[kv_rng_below(&cfg, 3)].slow_ms = 80;
    if (kv_rng_below(&cfg, 5) == 0) { /* down, and gossip may not know yet */
        uint32_t d = (uint32_t)kv_rng_below(&cfg, 3);
        s.rep[d].up = false;
        s.rep[d].gossip_up = kv_rng_below(&cfg, 2) == 0;
    }
    if (kv_rng_below(&cfg, 3) == 0) s.err_pct = 1 + (uint32_t)kv_rng_below(&cfg, 8);
    if (kv_rng_below(&cfg, 2) == 0) { /* background read repair */
        static const uint32_t chances[3] = {0, 300000, 1000000};
        static const uint32_t maxes[3] = {1, 2, 64};
        uint32_t ppm[4] = {0};
        for (int cl = COORD_CL_ONE; cl <= COORD_CL_ALL; cl++)
            ppm[cl] = chances[kv_rng_below(&cfg, 3)];
        sim_bg_repair(&s, ppm, maxes[kv_rng_below(&cfg, 3)]);
    }
    enum { NOPS = 40 };
    op_t ops[NOPS];
    const coord_cl_t cls[3] = {COORD_CL_ONE, COORD_CL_QUORUM, COORD_CL_ALL};
    for (int i = 0; i < NOPS; i++) {
        op_t *o = &ops[i];
        memset(o, 0, sizeof *o);
        o->start = s.now + kv_rng_below(&cfg, 1500);
        o->is_write = kv_rng_below(&cfg, 2) == 0;
        o->coord = (int)kv_rng_below(&cfg, 2);
        o->key = (int)kv_rng_below(&cfg, 2);
        o->cl = cls[kv_rng_below(&cfg, 3)];
        snprintf(o->val, sizeof o->val, "r%d-%d", run, i);
    }
    /* run: start each op at its time, processing events in between */
    for (;;) {
        int next = -1;
        for (int i = 0; i < NOPS; i++)
            if (!ops[i].started && (next < 0 || ops[i].start < ops[next].start))
                next = i;
        if (next < 0) break;
        while (sim_step(&s, ops[next].start)) {
        }
        if (s.now < ops[next].start) {
            for (int i = 0; i < s.ncoord; i++)
                kv_manual_clock_advance(&s.co[i].mc,
                                        (int64_t)(ops[next].start - s.now));
            s.now = ops[next].start;
        }
        op_t *o = &ops[next];
        char key[8];
        snprintf(key, sizeof key, "key%d", o->key);
        /* a tombstone now and then */
        const char *val = kv_rng_below(&cfg, 8) == 0 ? NULL : o->val;
        if (!val) o->val[0] = 0;
        o->id = o->is_write
                    ? sim_write_to(&s, o->coord, key, val, o->cl, 300, NULL, 0)
                    : sim_read_from(&s, o->coord, key, o->cl, 300, NULL, 0);
        o->started = true;
    }
    sim_settle(&s);

    for (int i = 0; i < NOPS; i++) {
        const creply_t *r = &s.replies[ops[i].id];
        if (r->count != 1) fail_msg("run %d op %d: %d replies", run, i, r->count);
    }
    /* reads that overlap a finished write's quorum see it or newer; a write
     * that starts after another finished beats it */
    for (int i = 0; i < NOPS; i++) {
        const op_t *w = &ops[i];
        const creply_t *wr = &s.replies[w->id];
        if (!w->is_write || wr->status != KV_OK) continue;
        eng_cell_t wc = {.ts = wr->ts, .tombstone = w->val[0] == 0,
                         .value = kv_slice_str(w->val)};
        if (wc.tombstone) wc.value = kv_slice(NULL, 0);
        for (int j = 0; j < NOPS; j++) {
            const op_t *o = &ops[j];
            const creply_t *orr = &s.replies[o->id];
            if (o->key != w->key || o->start <= wr->at) continue;
            if (cl_need(w->cl) + cl_need(o->cl) <= 3) continue;
            if (!o->is_write && (orr->status == KV_OK || orr->status == KV_NOTFOUND)) {
                eng_cell_t rc = {.ts = orr->ts,
                                 .tombstone = orr->status == KV_NOTFOUND,
                                 .value = kv_slice_str(orr->val)};
                if (rc.tombstone) rc.value = kv_slice(NULL, 0);
                tot->checked_reads++;
                if (eng_cell_lww_cmp(&rc, &wc) < 0)
                    fail_msg("run %d: read %d (ts %" PRIu64 ") missed write %d "
                             "(ts %" PRIu64 ")", run, j, orr->ts, i, wr->ts);
            }
            if (o->is_write && orr->status == KV_OK) {
                eng_cell_t oc = {.ts = orr->ts, .tombstone = o->val[0] == 0,
                                 .value = kv_slice_str(o->val)};
                if (oc.tombstone) oc.value = kv_slice(NULL, 0);
                tot->checked_writes++;
                if (eng_cell_lww_cmp(&oc, &wc) < 0)
                    fail_msg("run %d: write %d started after write %d "
                             "finished but lost", run, j, i);
            }
        }
    }
    /* Hints: after delivering every hint to its target, each write that
     * replied OK is on every replica, or superseded there by a newer cell. */
    check_hints_unique(&s, run);
    bool missing[NOPS][3] = {{false}};
    for (int i = 0; i < NOPS; i++) {
        const op_t *w = &ops[i];
        const creply_t *wr = &s.replies[w->id];
        if (!w->is_write || wr->status != KV_OK) continue;
        char key[8];
        snprintf(key, sizeof key, "key%d", w->key);
        eng_cell_t wc = {.ts = wr->ts, .tombstone = w->val[0] == 0,
                         .value = kv_slice_str(w->val)};
        if (wc.tombstone) wc.value = kv_slice(NULL, 0);
        for (uint32_t n = 0; n < 3; n++) {
            const stored_t *e = replica_cell(&s, n, key);
            missing[i][n] = !e || eng_cell_lww_cmp(&e->cell, &wc) < 0;
        }
    }
    sim_deliver_hints(&s);
    for (int i = 0; i < NOPS; i++) {
        const op_t *w = &ops[i];
        const creply_t *wr = &s.replies[w->id];
        if (!w->is_write || wr->status != KV_OK) continue;
        char key[8];
        snprintf(key, sizeof key, "key%d", w->key);
        eng_cell_t wc = {.ts = wr->ts, .tombstone = w->val[0] == 0,
                         .value = kv_slice_str(w->val)};
        if (wc.tombstone) wc.value = kv_slice(NULL, 0);
        bool hinted = false;
        for (uint32_t n = 0; n < 3; n++) {
            const stored_t *e = replica_cell(&s, n, key);
            if (!e || eng_cell_lww_cmp(&e->cell, &wc) < 0)
                fail_msg("run %d: write %d (ts %" PRIu64 ") replied OK but "
                         "replica %u lacks it after hint replay", run, i, wr->ts, n);
            hinted |= missing[i][n];
        }
        tot->hinted_writes += hinted;
    }

    for (int i = 0; i < NOPS; i++) tot->ok += s.replies[ops[i].id].status == KV_OK;
    for (int ci = 0; ci < s.ncoord; ci++) {
        coord_stats_t st;
        coord_get_stats(s.co[ci].c, &st);
        tot->restamps += st.restamps;
        tot->timeouts += st.timeouts;
        tot->repairs += st.read_repairs;
        tot->hints_timeout += st.hints_timeout;
        tot->hints_error += st.hints_error;
        tot->hints_down += st.hints - st.hints_timeout - st.hints_error;
        tot->bg_checks += st.bg_repair_checks;
        tot->bg_mutations += st.bg_repair_mutations;
        tot->bg_skipped += st.bg_repair_skipped;
    }
    sim_deinit(&s);
}

static void test_coord_randomized_runs_keep_every_promise(void **state)
{
    (void)state;
    uint64_t seed = test_seed("coord_random");
    run_totals_t tot = {0};
    for (int run = 0; run < 200; run++) random_run(seed, run, &tot);
    fprintf(stderr,
            "[coord_random] 200 runs: %" PRIu64 " OK replies, %" PRIu64
            " read/write pairs and %" PRIu64 " write/write pairs checked, %" PRIu64
            " re-stamps, %" PRIu64 " timeouts, %" PRIu64 " read repairs\n",
            tot.ok, tot.checked_reads, tot.checked_writes, tot.restamps,
            tot.timeouts, tot.repairs);
    fprintf(stderr,
            "[coord_random] hints: %" PRIu64 " down, %" PRIu64 " timeout, %" PRIu64
            " error; %" PRIu64 " OK writes reached every replica only by a hint; "
            "background: %" PRIu64 " checks, %" PRIu64 " repairs, %" PRIu64
            " skipped\n",
            tot.hints_down, tot.hints_timeout, tot.hints_error, tot.hinted_writes,
            tot.bg_checks, tot.bg_mutations, tot.bg_skipped);
    /* the workload must actually exercise what it checks */
    assert_true(tot.checked_reads > 100 && tot.checked_writes > 100);
    assert_true(tot.restamps > 0 && tot.timeouts > 0 && tot.repairs > 0);
    assert_true(tot.hints_down > 0 && tot.hints_timeout > 0 && tot.hints_error > 0);
    assert_true(tot.hinted_writes > 50);
    assert_true(tot.bg_checks > 100 && tot.bg_mutations > 0 && tot.bg_skipped > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        kv_unit_test(test_coord_every_level_succeeds_on_a_healthy_cluster),
        kv_unit_test(test_coord_one_replica_down_quorum_ok_all_unavailable),
        kv_unit_test(test_coord_two_replicas_down_only_one_succeeds),
        kv_unit_test(test_coord_read_fails_over_to_an_unasked_replica),
        kv_unit_test(test_coord_pending_replica_gets_the_write_and_one_more_ack),
        kv_unit_test(test_coord_lost_acks_time_out_with_the_ack_count),
        kv_unit_test(test_coord_a_write_after_another_finished_wins_despite_skew),
        kv_unit_test(test_coord_superseded_beyond_max_offset_is_clock_skew),
        kv_unit_test(test_coord_read_repair_brings_a_stale_replica_up_to_date),
        kv_unit_test(test_coord_tombstones_win_and_read_as_notfound),
        kv_unit_test(test_coord_lost_acks_leave_a_hint_at_the_deadline),
        kv_unit_test(test_coord_an_error_reply_is_hinted),
        kv_unit_test(test_coord_restamped_write_hints_only_its_final_stamp),
        kv_unit_test(test_coord_bg_repair_brings_the_unread_replicas_up_to_date),
        kv_unit_test(test_coord_bg_repair_spreads_a_newer_cell_from_outside_the_read_set),
        kv_unit_test(test_coord_bg_repair_past_max_inflight_is_skipped),
        kv_unit_test(test_coord_bg_check_without_answers_ends_at_its_deadline),
        kv_unit_test(test_coord_rejects_bad_arguments),
        kv_unit_test(test_coord_randomized_runs_keep_every_promise),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
