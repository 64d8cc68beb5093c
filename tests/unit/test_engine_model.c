/* test_engine_model.c -- the engine against an in-memory model of
 * last-write-wins, under random writes, expiries, flushes, compactions,
 * snapshots and reopens, with a hand-driven clock so gc_grace and expiry
 * really happen. Every get and every range scan must match the model.
 *
 * Timestamps are unique per write and stay within gc_grace/2 of the clock,
 * so a write can only lose to a cell still held: the model can then keep
 * tombstones forever and still predict exactly what the engine answers
 * after it has purged them. */
#include "engine_test_util.h"

#define NKEYS 400
#define GC_GRACE_MS 20000

typedef struct cell {
    bool present;      /* ever written */
    hlc_ts_t ts;
    bool tombstone;
    uint64_t expire_ms;
    char value[64];
    size_t len;
} cell_t;

typedef struct model {
    cell_t cells[NKEYS];
    kv_manual_clock_t clock;
    kv_rng_t rng;
    uint64_t counter;  /* makes every timestamp unique */
} model_t;

static void key_of(int i, char *buf, size_t n) { snprintf(buf, n, "mk-%04d", i); }

/* Does (ts, tomb, value) beat what the model holds for key i? */
static bool model_accepts(const model_t *m, int i, hlc_ts_t ts)
{
    const cell_t *c = &m->cells[i];
    return !c->present || ts > c->ts; /* timestamps are unique: no ties */
}

static bool model_live(const model_t *m, int i)
{
    const cell_t *c = &m->cells[i];
    return c->present && !c->tombstone &&
           (c->expire_ms == 0 || (int64_t)c->expire_ms > m->clock.wall);
}

static hlc_ts_t random_ts(model_t *m)
{
    /* within [now - gc_grace/2, now + 1 s], unique in the low bits */
    int64_t off = (int64_t)kv_rng_below(&m->rng, GC_GRACE_MS / 2 + 1000) - GC_GRACE_MS / 2;
    uint64_t wall = (uint64_t)(m->clock.wall + off);
    return hlc_make(wall, (uint32_t)(++m->counter & 0xffff));
}

static void do_write(model_t *m, eng_t *e)
{
    int i = (int)kv_rng_below(&m->rng, NKEYS);
    char k[32];
    key_of(i, k, sizeof k);
    hlc_ts_t ts = random_ts(m);
    uint64_t r = kv_rng_below(&m->rng, 10);
    cell_t nc = {.present = true, .ts = ts};
    hlc_ts_t by = 0;
    kv_status_t rc;
    if (r < 2) {
        nc.tombstone = true;
        rc = eng_delete(e, kv_slice_str(k), ts, &by);
    } else {
        nc.len = (size_t)snprintf(nc.value, sizeof nc.value, "v-%d-%llu-%.*s", i,
                                  (unsigned long long)ts,
                                  (int)kv_rng_below(&m->rng, 20), "xxxxxxxxxxxxxxxxxxxx");
        if (r < 4) /* expires somewhere from the past to 30 s ahead */
            nc.expire_ms = (uint64_t)(m->clock.wall - 5000 + (int64_t)kv_rng_below(&m->rng, 35000));
        rc = eng_put(e, kv_slice_str(k), kv_slice(nc.value, nc.len), ts, nc.expire_ms, &by);
    }
    if (model_accepts(m, i, ts)) {
        if (rc != KV_OK) fail_msg("%s ts %llu: expected OK, got %s", k, (unsigned long long)ts, kv_status_str(rc));
        m->cells[i] = nc;
    } else {
        if (rc != KV_SUPERSEDED)
            fail_msg("%s ts %llu: expected SUPERSEDED by %llu, got %s", k,
                     (unsigned long long)ts, (unsigned long long)m->cells[i].ts, kv_status_str(rc));
        /* the engine may have purged an expired-and-gone cell's details, but
         * what beats us is never older than the model's cell */
        assert_true(by >= m->cells[i].ts || by > ts);
    }
}

static void check_get(model_t *m, eng_t *e, int i)
{
    char k[32];
    key_of(i, k, sizeof k);
    eng_value_t v = {0};
    kv_status_t rc = eng_get(e, NULL, kv_slice_str(k), &v);
    if (model_live(m, i)) {
        if (rc != KV_OK || v.tombstone)
            fail_msg("%s: expected a value, got %s%s", k, kv_status_str(rc),
                     rc == KV_OK ? " (tombstone)" : "");
        assert_int_equal(v.ts, m->cells[i].ts);
        assert_int_equal(v.value.len, m->cells[i].len);
        assert_memory_equal(v.value.data, m->cells[i].value, v.value.len);
    } else if (rc == KV_OK) {
        /* a tombstone (or an expired value) not purged yet */
        if (!v.tombstone) fail_msg("%s: expected deleted, found a value", k);
        assert_int_equal(v.ts, m->cells[i].ts);
    } else {
        assert_int_equal(rc, KV_NOTFOUND);
        /* purged: only possible once gc_grace has passed */
        if (m->cells[i].present) {
            uint64_t since = KV_MAX(hlc_wall_ms(m->cells[i].ts), m->cells[i].expire_ms);
            if ((int64_t)(since + GC_GRACE_MS) > m->clock.wall) {
                eng_iter_t *dbg = eng_iter_create(e, NULL, 0, UINT64_MAX);
                int found = 0;
                for (eng_iter_seek_first(dbg); eng_iter_valid(dbg); eng_iter_next(dbg))
                    if (kv_slice_eq(eng_iter_key(dbg), kv_slice_str(k))) found = 1;
                eng_iter_destroy(dbg);
                eng_stats_t st;
                eng_get_stats(e, &st);
                fprintf(stderr, "debug: scan finds it: %d; L0 %llu L1 %llu L2 %llu L3 %llu flushes %llu compactions %llu\n",
                        found, (unsigned long long)st.tables_per_level[0], (unsigned long long)st.tables_per_level[1],
                        (unsigned long long)st.tables_per_level[2], (unsigned long long)st.tables_per_level[3],
                        (unsigned long long)st.flushes, (unsigned long long)st.compactions);
            }
            if ((int64_t)(since + GC_GRACE_MS) > m->clock.wall)
                fail_msg("%s: purged too early (ts %llu, tombstone %d, expire %llu, now %lld)",
                         k, (unsigned long long)m->cells[i].ts, m->cells[i].tombstone,
                         (unsigned long long)m->cells[i].expire_ms, (long long)m->clock.wall);
        }
    }
    eng_value_free(&v);
}

/* Scan tokens [a, b] (wrapping when a > b) and compare with the model. */
static void check_scan(model_t *m, eng_t *e, uint64_t a, uint64_t b)
{
    bool seen[NKEYS] = {0};
    eng_iter_t *it = eng_iter_create(e, NULL, a, b);
    for (eng_iter_seek_first(it); eng_iter_valid(it); eng_iter_next(it)) {
        kv_slice_t key = eng_iter_key(it);
        int i = atoi((const char *)key.data + 3);
        assert_true(i >= 0 && i < NKEYS);
        assert_false(seen[i]); /* each key once */
        seen[i] = true;
        uint64_t t = eng_iter_token(it);
        assert_true(a <= b ? (t >= a && t <= b) : (t >= a || t <= b));
        assert_int_equal(eng_iter_ts(it), m->cells[i].ts);
        assert_int_equal(eng_iter_tombstone(it), !model_live(m, i));
        if (model_live(m, i)) {
            kv_slice_t v = eng_iter_value(it);
            assert_int_equal(v.len, m->cells[i].len);
            assert_memory_equal(v.data, m->cells[i].value, v.len);
        }
    }
    assert_int_equal(eng_iter_status(it), KV_OK);
    eng_iter_destroy(it);
    for (int i = 0; i < NKEYS; i++) {
        if (!model_live(m, i)) continue;
        char k[32];
        key_of(i, k, sizeof k);
        uint64_t t = eng_token(kv_slice_str(k));
        bool in = a <= b ? (t >= a && t <= b) : (t >= a || t <= b);
        if (in != seen[i]) fail_msg("%s (token %llx) in range: %d, seen: %d", k,
                                    (unsigned long long)t, in, seen[i]);
    }
}

/* Reads through snapshot s must match the model as it was when s was taken
 * (tombstones may be purged meanwhile only past gc_grace; values never). */
static void check_snapshot(model_t *now, const cell_t *then, eng_t *e, eng_snapshot_t *s)
{
    eng_read_options_t ro;
    eng_read_options_init(&ro);
    ro.snapshot = s;
    for (int i = 0; i < NKEYS; i++) {
        char k[32];
        key_of(i, k, sizeof k);
        eng_value_t v = {0};
        kv_status_t rc = eng_get(e, &ro, kv_slice_str(k), &v);
        const cell_t *c = &then[i];
        bool live = c->present && !c->tombstone &&
                    (c->expire_ms == 0 || (int64_t)c->expire_ms > now->clock.wall);
        if (live) {
            if (rc != KV_OK || v.tombstone)
                fail_msg("snapshot: %s expected a value, got %s", k, kv_status_str(rc));
            assert_int_equal(v.ts, c->ts);
            assert_int_equal(v.value.len, c->len);
            assert_memory_equal(v.value.data, c->value, c->len);
        } else if (rc == KV_OK) {
            if (!v.tombstone) fail_msg("snapshot: %s expected deleted", k);
            assert_int_equal(v.ts, c->ts);
        } else {
            assert_int_equal(rc, KV_NOTFOUND);
        }
        eng_value_free(&v);
    }
}

static void run_model(uint64_t seed, int steps)
{
    const char *dir = test_tmpdir("eng-model");
    model_t *m = kv_calloc(1, sizeof *m);
    kv_rng_seed(&m->rng, seed);
    kv_manual_clock_init(&m->clock, 1763700000000LL);
    eng_options_t o;
    small_options(&o, dir);
    o.memtable_bytes = 64 * 1024;
    o.table_bytes = 64 * 1024;
    o.level1_bytes = 128 * 1024;
    o.l0_compaction_trigger = 2;
    o.clock = &m->clock.clock;
    o.gc_grace_ms = GC_GRACE_MS;
    eng_t *e = open_or_die(&o);
    int flushes = 0, compactions = 0, reopens = 0, snapshots = 0;
    eng_snapshot_t *snap = NULL;
    cell_t *snap_cells = kv_malloc(sizeof m->cells);
    uint64_t superseded = 0, dropped = 0; /* summed over every open */
    for (int step = 0; step < steps; step++) {
        uint64_t r = kv_rng_below(&m->rng, 1000);
        if (r < 900) {
            do_write(m, e);
        } else if (r < 960) {
            check_get(m, e, (int)kv_rng_below(&m->rng, NKEYS));
        } else if (r < 975) {
            kv_manual_clock_advance(&m->clock, (int64_t)kv_rng_below(&m->rng, 3000));
        } else if (r < 985) {
            assert_int_equal(eng_flush(e), KV_OK);
            flushes++;
        } else if (r < 992) {
            uint64_t a = kv_rng_next(&m->rng), b = kv_rng_next(&m->rng);
            assert_int_equal(eng_compact_range(e, a, b), KV_OK);
            compactions++;
        } else if (r < 996) {
            check_scan(m, e, kv_rng_next(&m->rng), kv_rng_next(&m->rng));
        } else if (r < 998) {
            if (snap) { /* check it, then let it go */
                check_snapshot(m, snap_cells, e, snap);
                eng_snapshot_release(e, snap);
                snap = NULL;
            } else {
                snap = eng_snapshot_create(e);
                memcpy(snap_cells, m->cells, sizeof m->cells);
                snapshots++;
            }
        } else {
            if (snap) {
                check_snapshot(m, snap_cells, e, snap);
                eng_snapshot_release(e, snap); /* snapshots do not outlive a close */
                snap = NULL;
            }
            eng_stats_t st;
            eng_get_stats(e, &st);
            superseded += st.superseded;
            dropped += st.tombstones_dropped;
            eng_close(e);
            e = open_or_die(&o);
            reopens++;
        }
    }
    if (snap) {
        check_snapshot(m, snap_cells, e, snap);
        eng_snapshot_release(e, snap);
    }
    kv_free(snap_cells);
    for (int i = 0; i < NKEYS; i++) check_get(m, e, i);
    check_scan(m, e, 0, UINT64_MAX);
    assert_int_equal(eng_compact_range(e, 0, UINT64_MAX), KV_OK);
    kv_manual_clock_advance(&m->clock, GC_GRACE_MS * 2);
    for (int i = 0; i < NKEYS; i++) check_get(m, e, i);
    assert_int_equal(eng_compact_range(e, 0, UINT64_MAX), KV_OK);
    for (int i = 0; i < NKEYS; i++) check_get(m, e, i);
    check_scan(m, e, 0, UINT64_MAX);
    eng_stats_t st;
    eng_get_stats(e, &st);
    superseded += st.superseded;
    dropped += st.tombstones_dropped;
    print_message("model seed %llu: %d steps, %d flushes, %d manual compactions, %d reopens, "
                  "%d snapshots, %llu superseded, %llu tombstones dropped\n",
                  (unsigned long long)seed, steps, flushes, compactions, reopens, snapshots,
                  (unsigned long long)superseded,
                  (unsigned long long)dropped);
    assert_true(superseded > 100);
    assert_true(dropped > 0);
    eng_close(e);
    kv_free(m);
    test_rmrf(dir);
}

static void test_engine_matches_lww_model_under_random_operations(void **state)
{
    (void)state;
    uint64_t seed = test_seed("engine model");
    const char *steps = getenv("CAIRN_MODEL_STEPS");
    int n = steps ? atoi(steps) : 30000;
    for (int run = 0; run < 3; run++) run_model(seed + (uint64_t)run, n);
}

int main(void)
{
    kv_log_set_level(KV_LOG_WARN);
    const struct CMUnitTest tests[] = {
        kv_unit_test(test_engine_matches_lww_model_under_random_operations),
    };
    return cmocka_run_group_tests_name("engine_model", tests, NULL, NULL);
}
