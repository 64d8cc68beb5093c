/* test_hints_sim.c -- hinted handoff in a deterministic simulated cluster:
 * five nodes, each with a real coordinator (coordinator/coord.c), a real
 * hint log in a temporary directory (replication/hints.c), a real replay
 * dispatcher (replication/hint_replay.c) and an in-memory last-write-wins
 * store; keys have three replicas; a seeded message queue with delays.
 *
 *   partition: nodes {0,1} | {2,3,4}; writes at ONE through every node.
 *     Every hint names a replica that missed that write, and every replica
 *     that missed a write has a hint for it: the hints are exactly the
 *     writes the partition cost each replica.
 *   heal: the dispatchers deliver; afterwards every log is empty, every
 *     hint written was delivered, and all replicas of every key hold the
 *     same cell -- the newest one written -- while no node outside a key's
 *     replicas holds it.
 *   loss: the same with 3% of messages lost and no partition: writes whose
 *     acks were lost are hinted at their deadline, and the replicas still
 *     converge once the hints are delivered.
 */
#include "test_util.h"

#include "coord.h"
#include "format.h"
#include "hint_replay.h"
#include "hints.h"
#include "hlc.h"

#define T0 1763700000000LL
#define N 5
#define RF 3
#define KEYS 48
#define MAX_WRITES 4096
#define VAL_MAX 24

typedef struct slot {
    bool has;
    eng_cell_t cell;
    char val[VAL_MAX];
} slot_t;

typedef struct snode {
    kv_manual_clock_t mc;
    hlc_t *hlc;
    coord_t *c;
    hint_log_t *log;
    hint_replay_t *rp;
    slot_t store[KEYS];
    hint_batch_t held[N];
    bool has_held[N];
    uint64_t held_id[N];
    char dir[PATH_MAX];
} snode_t;

typedef enum { M_MUT, M_MUT_REPLY, M_HINTS, M_HINTS_REPLY } mkind_t;

typedef struct msg {
    uint64_t at;
    mkind_t kind;
    uint32_t from, to;
    uint64_t msg_id;
    int key;
    eng_cell_t cell;
    char val[VAL_MAX];
    kv_status_t status;
    hlc_ts_t sup;
} msg_t;

/* What happened to one client write. */
typedef struct wrec {
    uint32_t coord;
    int key;
    bool replied;
    kv_status_t status;
    bool hinted[N]; /* a HINT action named this replica */
    bool hinted_unreachable[N]; /* ... while it was cut off from the coord */
} wrec_t;

typedef struct sim {
    kv_rng_t rng;
    uint64_t now;
    snode_t n[N];
    bool partitioned;
    bool side[N];
    uint32_t loss_pct;
    msg_t *q;
    size_t nq, capq;
    wrec_t w[MAX_WRITES];
    uint32_t nw;
    uint64_t hints, delivered_records;
    uint64_t next_hint_msg;
} sim_t;

static void key_name(int k, char *buf) { snprintf(buf, 16, "key-%02d", k); }

static int key_index(kv_slice_t key)
{
    char buf[16];
    assert_true(key.len < sizeof buf);
    memcpy(buf, key.data, key.len);
    buf[key.len] = '\0'; /* keys are slices, not strings */
    int k = -1;
    assert_int_equal(sscanf(buf, "key-%02d", &k), 1);
    return k;
}

static void target_name(uint32_t t, char *buf) { snprintf(buf, 8, "n%u", t); }

static void replicas_of(int key, uint32_t *out)
{
    for (uint32_t i = 0; i < RF; i++) out[i] = (uint32_t)(key + (int)i) % N;
}

static bool is_replica(int key, uint32_t node)
{
    uint32_t r[RF];
    replicas_of(key, r);
    for (int i = 0; i < RF; i++)
        if (r[i] == node) return true;
    return false;
}

static bool reach(const sim_t *s, uint32_t a, uint32_t b)
{
    return !s->partitioned || s->side[a] == s->side[b];
}

static void sim_init(sim_t *s, const char *tag)
{
    memset(s, 0, sizeof *s);
    kv_rng_seed(&s->rng, test_seed(tag));
    s->now = 1000;
    for (uint32_t i = 0; i < N; i++) {
        snode_t *n = &s->n[i];
        /* clocks a little apart, so re-stamps happen */
        kv_manual_clock_init(&n->mc, T0 + (int64_t)i * 3);
        hlc_options_t ho;
        hlc_options_init(&ho);
        ho.clock = &n->mc.clock;
        assert_int_equal(hlc_open(&ho, &n->hlc), KV_OK);
        coord_options_t co;
        coord_options_init(&co);
        co.hlc = n->hlc;
        assert_int_equal(coord_create(&co, &n->c), KV_OK);
        char sub[64];
        snprintf(sub, sizeof sub, "hsim-%s-n%u", tag, i);
        snprintf(n->dir, sizeof n->dir, "%s", test_tmpdir(sub));
        hint_log_options_t lo;
        hint_log_options_init(&lo);
        lo.dir = n->dir;
        assert_int_equal(hint_log_open(&lo, &n->log), KV_OK);
        hint_replay_options_t ro;
        hint_replay_options_init(&ro);
        ro.batch_bytes = 512; /* many small batches */
        ro.ack_timeout_ms = 200;
        ro.retry_ms = 50;
        assert_int_equal(hint_replay_create(&ro, &n->rp), KV_OK);
        for (uint32_t t = 0; t < N; t++) hint_batch_init(&n->held[t]);
    }
}

static void sim_deinit(sim_t *s)
{
    for (uint32_t i = 0; i < N; i++) {
        snode_t *n = &s->n[i];
        for (uint32_t t = 0; t < N; t++) hint_batch_free(&n->held[t]);
        hint_replay_destroy(n->rp);
        hint_log_close(n->log);
        coord_destroy(n->c);
        hlc_close(n->hlc);
        test_rmrf(n->dir);
    }
    kv_free(s->q);
}

static void push(sim_t *s, const msg_t *m)
{
    /* a node's messages to itself are local calls in cairnd: never lost */
    if (m->from != m->to && kv_rng_below(&s->rng, 100) < s->loss_pct) return;
    if (s->nq == s->capq) {
        s->capq = s->capq ? s->capq * 2 : 256;
        s->q = kv_realloc(s->q, s->capq * sizeof *s->q);
    }
    s->q[s->nq] = *m;
    s->q[s->nq].at = s->now + 1 + kv_rng_below(&s->rng, 3);
    s->nq++;
}

/* Store a cell by last-write-wins; KV_SUPERSEDED with the held stamp when
 * the replica holds a newer one. */
static kv_status_t apply(snode_t *n, int key, const eng_cell_t *cell,
                         const char *val, hlc_ts_t *held)
{
    slot_t *sl = &n->store[key];
    if (sl->has) {
        eng_cell_t cur = sl->cell;
        cur.value = kv_slice(sl->val, strlen(sl->val));
        int cmp = eng_cell_lww_cmp(cell, &cur);
        if (cmp == 0) return KV_OK;
        if (cmp < 0) {
            *held = cur.ts;
            return KV_SUPERSEDED;
        }
    }
    sl->has = true;
    sl->cell = *cell;
    sl->cell.value = kv_slice(NULL, 0);
    snprintf(sl->val, sizeof sl->val, "%.*s", (int)cell->value.len,
             (const char *)cell->value.data);
    return KV_OK;
}

/* Carry out one coordinator's actions. */
static void drain_coord(sim_t *s, uint32_t ci)
{
    snode_t *n = &s->n[ci];
    size_t na;
    const coord_action_t *a = coord_actions(n->c, &na);
    for (size_t i = 0; i < na; i++) {
        int key = key_index(a[i].key);
        switch (a[i].kind) {
        case COORD_ACT_SEND_MUTATION: {
            msg_t m = {.kind = M_MUT, .from = ci, .to = a[i].node,
                       .msg_id = a[i].msg_id, .key = key, .cell = a[i].cell};
            snprintf(m.val, sizeof m.val, "%.*s", (int)a[i].cell.value.len,
                     (const char *)a[i].cell.value.data);
            if (reach(s, ci, a[i].node)) push(s, &m);
            break;
        }
        case COORD_ACT_HINT: {
            wrec_t *w = &s->w[a[i].client_req_id];
            assert_int_equal(w->key, key);
            assert_true(is_replica(key, a[i].node));
            w->hinted[a[i].node] = true;
            if (!reach(s, ci, a[i].node)) w->hinted_unreachable[a[i].node] = true;
            char t[8];
            target_name(a[i].node, t);
            assert_int_equal(hint_log_append(n->log, t, (uint64_t)T0 + s->now, a[i].key,
                                             &a[i].cell), KV_OK);
            s->hints++;
            break;
        }
        case COORD_ACT_REPLY: {
            wrec_t *w = &s->w[a[i].client_req_id];
            assert_false(w->replied); /* exactly one reply per write */
            w->replied = true;
            w->status = a[i].status;
            break;
        }
        case COORD_ACT_SEND_READ:
            break;
        }
    }
    coord_actions_clear(n->c);
    if (coord_validate(n->c) != KV_OK) fail_msg("coord_validate: %s", kv_errmsg());
}

/* Carry out one node's replay actions. */
static void drain_replay(sim_t *s, uint32_t ni)
{
    snode_t *n = &s->n[ni];
    for (;;) {
        size_t na;
        const hint_act_t *acts = hint_replay_actions(n->rp, &na);
        if (na == 0) return;
        hint_act_t a = acts[0];
        /* take one at a time: handlers append more */
        hint_act_t rest[64];
        size_t nrest = na - 1;
        assert_true(nrest <= 64);
        memcpy(rest, acts + 1, nrest * sizeof *rest);
        hint_replay_actions_clear(n->rp);
        for (size_t k = 0; k <= nrest; k++) {
            const hint_act_t *act = k == 0 ? &a : &rest[k - 1];
            uint32_t t = act->target;
            char tn[8];
            target_name(t, tn);
            switch (act->kind) {
            case HINT_ACT_READ: {
                hint_batch_free(&n->held[t]);
                hint_batch_init(&n->held[t]);
                kv_status_t rc = hint_log_read(n->log, tn, (uint64_t)T0 + s->now, 0,
                                               act->max_bytes, &n->held[t]);
                n->has_held[t] = rc == KV_OK;
                hint_replay_on_read(n->rp, s->now, t, rc == KV_OK, n->held[t].n,
                                    n->held[t].bytes, n->held[t].more);
                break;
            }
            case HINT_ACT_SEND: {
                assert_true(n->has_held[t]);
                n->held_id[t] = ++s->next_hint_msg;
                msg_t m = {.kind = M_HINTS, .from = ni, .to = t,
                           .msg_id = n->held_id[t]};
                if (reach(s, ni, t)) push(s, &m);
                break;
            }
            case HINT_ACT_ACK:
                assert_true(n->has_held[t]);
                assert_int_equal(hint_log_ack(n->log, tn, n->held[t].end), KV_OK);
                n->has_held[t] = false;
                break;
            case HINT_ACT_DISCARD:
                n->has_held[t] = false;
                break;
            }
        }
        assert_int_equal(hint_replay_validate(n->rp), KV_OK);
    }
}

static void deliver(sim_t *s, const msg_t *m)
{
    if (!reach(s, m->from, m->to)) return;
    snode_t *to = &s->n[m->to];
    switch (m->kind) {
    case M_MUT: {
        msg_t r = {.kind = M_MUT_REPLY, .from = m->to, .to = m->from,
                   .msg_id = m->msg_id, .key = m->key};
        eng_cell_t cell = m->cell;
        cell.value = kv_slice(m->val, strlen(m->val));
        r.status = apply(to, m->key, &cell, m->val, &r.sup);
        push(s, &r);
        break;
    }
    case M_MUT_REPLY:
        coord_on_mutation_reply(to->c, s->now, m->from, m->msg_id, m->status, m->sup);
        drain_coord(s, m->to);
        break;
    case M_HINTS: {
        /* the batch still held by the sender under this id */
        snode_t *from = &s->n[m->from];
        if (!from->has_held[m->to] || from->held_id[m->to] != m->msg_id) return;
        const hint_batch_t *b = &from->held[m->to];
        for (size_t i = 0; i < b->n; i++) {
            int key = key_index(b->recs[i].key);
            assert_true(is_replica(key, m->to)); /* delivered to a replica */
            char val[VAL_MAX];
            snprintf(val, sizeof val, "%.*s", (int)b->recs[i].cell.value.len,
                     (const char *)b->recs[i].cell.value.data);
            hlc_ts_t held;
            apply(to, key, &b->recs[i].cell, val, &held);
            s->delivered_records++;
        }
        msg_t r = {.kind = M_HINTS_REPLY, .from = m->to, .to = m->from,
                   .msg_id = m->msg_id, .status = KV_OK};
        push(s, &r);
        break;
    }
    case M_HINTS_REPLY:
        if (!to->has_held[m->from] || to->held_id[m->from] != m->msg_id) return;
        hint_replay_on_sent(to->rp, s->now, m->from, m->status == KV_OK);
        drain_replay(s, m->to);
        break;
    }
}

/* Advance one millisecond: clocks, due messages, deadlines, replay. */
static void step(sim_t *s, bool replay)
{
    s->now++;
    for (uint32_t i = 0; i < N; i++) kv_manual_clock_advance(&s->n[i].mc, 1);
    for (size_t i = 0; i < s->nq;) {
        if (s->q[i].at <= s->now) {
            msg_t m = s->q[i];
            s->q[i] = s->q[--s->nq];
            deliver(s, &m);
        } else {
            i++;
        }
    }
    for (uint32_t i = 0; i < N; i++) {
        coord_tick(s->n[i].c, s->now);
        drain_coord(s, i);
        if (!replay) continue;
        if (s->now % 50 == 0) {
            for (uint32_t t = 0; t < N; t++) {
                if (t == i) continue;
                char tn[8];
                target_name(t, tn);
                hint_target_stats_t st;
                hint_log_target(s->n[i].log, tn, &st);
                hint_replay_set(s->n[i].rp, s->now, t, reach(s, i, t), st.records > 0);
            }
        }
        hint_replay_tick(s->n[i].rp, s->now);
        drain_replay(s, i);
    }
}

/* A client write of a fresh value through node ci at ONE. */
static void client_write(sim_t *s, uint32_t ci, int key)
{
    assert_true(s->nw < MAX_WRITES);
    uint32_t id = s->nw++;
    s->w[id] = (wrec_t){.coord = ci, .key = key};
    char k[16], v[VAL_MAX];
    key_name(key, k);
    snprintf(v, sizeof v, "w%u", id);
    uint32_t reps[RF];
    bool alive[RF];
    replicas_of(key, reps);
    for (int i = 0; i < RF; i++) alive[i] = reach(s, ci, reps[i]);
    assert_int_equal(coord_write(s->n[ci].c, s->now, id, kv_slice_str(k),
                                 kv_slice_str(v), false, 0, COORD_CL_ONE, 100, 0,
                                 reps, RF, alive), KV_OK);
    drain_coord(s, ci);
}

/* Run until every hint is delivered and the network is quiet. */
static void run_replay(sim_t *s)
{
    uint64_t t0 = s->now;
    for (;;) {
        step(s, true);
        if (s->now - t0 > 120000) {
            for (uint32_t i = 0; i < N; i++)
                for (uint32_t t = 0; t < N; t++) {
                    char tn[8];
                    target_name(t, tn);
                    hint_target_stats_t st;
                    hint_log_target(s->n[i].log, tn, &st);
                    if (st.records)
                        print_message("n%u holds %" PRIu64 " hints for %s\n", i, st.records, tn);
                }
            fail_msg("hints did not drain in 120 s simulated");
        }
        if (s->nq) continue;
        bool pending = false;
        for (uint32_t i = 0; i < N && !pending; i++) {
            hint_log_stats_t st;
            hint_log_get_stats(s->n[i].log, &st);
            pending = st.records > 0 || coord_live_requests(s->n[i].c) > 0;
            for (uint32_t t = 0; t < N; t++) pending = pending || hint_replay_busy(s->n[i].rp, t);
        }
        if (!pending) return;
    }
}

/* Every replica of every key holds the same cell, the newest written; no
 * other node holds the key. */
static void check_converged(sim_t *s)
{
    for (int k = 0; k < KEYS; k++) {
        uint32_t reps[RF];
        replicas_of(k, reps);
        const slot_t *best = NULL;
        for (uint32_t i = 0; i < N; i++) {
            const slot_t *sl = &s->n[i].store[k];
            if (!is_replica(k, i)) {
                if (sl->has) fail_msg("key %d stored on n%u, not one of its replicas", k, i);
                continue;
            }
            if (sl->has && (!best || sl->cell.ts > best->cell.ts)) best = sl;
        }
        for (int r = 0; r < RF; r++) {
            const slot_t *sl = &s->n[reps[r]].store[k];
            if (!best) {
                assert_false(sl->has);
                continue;
            }
            if (!sl->has || sl->cell.ts != best->cell.ts || strcmp(sl->val, best->val))
                fail_msg("key %d: n%u holds %s@%" PRIu64 ", n? holds %s@%" PRIu64, k,
                         reps[r], sl->has ? sl->val : "nothing", sl->cell.ts,
                         best->val, best->cell.ts);
        }
    }
}

static void test_hints_sim_partition_then_heal(void **state)
{
    (void)state;
    sim_t *s = kv_calloc(1, sizeof *s);
    sim_init(s, "partition");
    s->partitioned = true;
    s->side[0] = s->side[1] = true;
    /* two seconds of writes on both sides of the partition */
    for (int t = 0; t < 2000; t++) {
        if (kv_rng_below(&s->rng, 2) == 0)
            client_write(s, (uint32_t)kv_rng_below(&s->rng, N),
                         (int)kv_rng_below(&s->rng, KEYS));
        step(s, false);
    }
    for (int t = 0; t < 500; t++) step(s, false); /* deadlines pass */
    assert_true(s->nw > 800);
    assert_true(s->hints > 300);

    /* Exactly the writes the partition cost: a replica was hinted for a
     * write iff it was cut off from that write's coordinator -- and it does
     * not hold that write's value. */
    uint64_t missed = 0;
    for (uint32_t id = 0; id < s->nw; id++) {
        const wrec_t *w = &s->w[id];
        uint32_t reps[RF];
        replicas_of(w->key, reps);
        for (int r = 0; r < RF; r++) {
            uint32_t rep = reps[r];
            /* nothing is sent (or hinted) when no replica is reachable */
            bool cut = !reach(s, w->coord, rep) && w->status != KV_UNAVAILABLE;
            assert_true(w->replied);
            if (cut != w->hinted[rep])
                fail_msg("write %u (key %d via n%u): n%u %s but %s", id, w->key,
                         w->coord, rep, cut ? "was cut off" : "was reachable",
                         w->hinted[rep] ? "got a hint" : "got no hint");
            if (w->hinted[rep]) {
                assert_true(w->hinted_unreachable[rep]);
                char v[VAL_MAX];
                snprintf(v, sizeof v, "w%u", id);
                const slot_t *sl = &s->n[rep].store[w->key];
                assert_false(sl->has && !strcmp(sl->val, v));
                missed++;
            }
        }
    }
    print_message("partition: %u writes, %" PRIu64 " hints for %" PRIu64
                  " missed (write, replica) pairs\n", s->nw, s->hints, missed);

    s->partitioned = false;
    run_replay(s);
    check_converged(s);
    uint64_t appended = 0, replayed = 0;
    for (uint32_t i = 0; i < N; i++) {
        hint_log_stats_t st;
        hint_log_get_stats(s->n[i].log, &st);
        appended += st.appended;
        replayed += st.replayed;
        assert_int_equal(st.records, 0);
        assert_int_equal(st.corrupt, 0);
    }
    assert_int_equal(appended, s->hints);
    assert_int_equal(replayed, s->hints);
    assert_true(s->delivered_records >= s->hints);
    sim_deinit(s);
    kv_free(s);
}

static void test_hints_sim_lost_messages_are_hinted_and_converge(void **state)
{
    (void)state;
    sim_t *s = kv_calloc(1, sizeof *s);
    sim_init(s, "loss");
    s->loss_pct = 3;
    for (int t = 0; t < 2000; t++) {
        if (kv_rng_below(&s->rng, 2) == 0)
            client_write(s, (uint32_t)kv_rng_below(&s->rng, N),
                         (int)kv_rng_below(&s->rng, KEYS));
        step(s, false);
    }
    for (int t = 0; t < 500; t++) step(s, false);
    assert_true(s->hints > 20); /* lost mutations and lost acks */
    s->loss_pct = 0;            /* the replay itself survives loss too, but
                                   the check wants an end */
    run_replay(s);
    check_converged(s);
    print_message("loss: %u writes, %" PRIu64 " hints, %" PRIu64 " records delivered\n",
                  s->nw, s->hints, s->delivered_records);
    sim_deinit(s);
    kv_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        kv_unit_test(test_hints_sim_partition_then_heal),
        kv_unit_test(test_hints_sim_lost_messages_are_hinted_and_converge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
