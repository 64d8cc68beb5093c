/* test_engine.c -- the storage engine's behaviour through its public API:
 * last-write-wins and superseded answers, batches, durability across
 * reopen, snapshots, token-range scans, expiry, gc_grace, a full disk,
 * group commit and async writes. */
#include "engine_test_util.h"

#include <time.h>

#include <pthread.h>

#define TS(n) hlc_make(1763700000000ULL + (n), 0)

static void test_engine_put_get_delete_roundtrip(void **state)
{
    (void)state;
    const char *dir = test_tmpdir("eng-basic");
    eng_options_t o;
    small_options(&o, dir);
    eng_t *e = open_or_die(&o);
    eng_value_t v = {0};
    assert_int_equal(eng_get(e, NULL, kv_slice_str("missing"), &v), KV_NOTFOUND);
    assert_int_equal(put_s(e, "a", "apple", TS(1)), KV_OK);
    assert_int_equal(put_s(e, "b", "", TS(1)), KV_OK); /* empty value */
    assert_int_equal(eng_put(e, kv_slice(NULL, 0), kv_slice_str("empty key"), TS(1), 0, NULL), KV_OK);
    expect_kv(e, "a", "apple");
    expect_kv(e, "b", "");
    assert_int_equal(eng_get(e, NULL, kv_slice(NULL, 0), &v), KV_OK);
    assert_int_equal(v.ts, TS(1));
    eng_value_free(&v);
    assert_int_equal(eng_delete(e, kv_slice_str("a"), TS(2), NULL), KV_OK);
    assert_int_equal(eng_get(e, NULL, kv_slice_str("a"), &v), KV_OK);
    assert_true(v.tombstone);
    assert_int_equal(v.ts, TS(2)); /* deleted-at timestamp */
    assert_int_equal(v.value.len, 0);
    eng_value_free(&v);
    /* binary keys and values with zero bytes */
    uint8_t k[5] = {0, 1, 0, 2, 0}, val[4] = {0, 0, 7, 0};
    assert_int_equal(eng_put(e, kv_slice(k, 5), kv_slice(val, 4), TS(3), 0, NULL), KV_OK);
    assert_int_equal(eng_get(e, NULL, kv_slice(k, 5), &v), KV_OK);
    assert_int_equal(v.value.len, 4);
    assert_memory_equal(v.value.data, val, 4);
    eng_value_free(&v);
    eng_close(e);
    test_rmrf(dir);
}

/* An older write is refused with the timestamp that beats it, wherever the
 * newer cell lives: memtable, L0, or compacted to the bottom. */
static void test_engine_older_write_is_superseded_wherever_newer_lives(void **state)
{
    (void)state;
    const char *dir = test_tmpdir("eng-lww");
    eng_options_t o;
    small_options(&o, dir);
    eng_t *e = open_or_die(&o);
    for (int where = 0; where < 3; where++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", where);
        assert_int_equal(put_s(e, key, "new", TS(100)), KV_OK);
        if (where >= 1) assert_int_equal(eng_flush(e), KV_OK);
        if (where >= 2) assert_int_equal(eng_compact_range(e, 0, UINT64_MAX), KV_OK);
        hlc_ts_t by = 0;
        assert_int_equal(eng_put(e, kv_slice_str(key), kv_slice_str("old"), TS(50), 0, &by),
                         KV_SUPERSEDED);
        assert_int_equal(by, TS(100));
        assert_int_equal(eng_delete(e, kv_slice_str(key), TS(99), &by), KV_SUPERSEDED);
        assert_int_equal(by, TS(100));
        expect_kv(e, key, "new");
        /* a newer write wins */
        assert_int_equal(put_s(e, key, "newer", TS(101)), KV_OK);
        expect_kv(e, key, "newer");
    }
    eng_stats_t st;
    eng_get_stats(e, &st);
    assert_int_equal(st.superseded, 6);
    eng_close(e);
    test_rmrf(dir);
}

static void test_engine_ties_prefer_tombstone_then_larger_value(void **state)
{
    (void)state;
    const char *dir = test_tmpdir("eng-tie");
    eng_options_t o;
    small_options(&o, dir);
    eng_t *e = open_or_die(&o);
    hlc_ts_t by;
    assert_int_equal(put_s(e, "k", "bbb", TS(5)), KV_OK);
    assert_int_equal(eng_put(e, kv_slice_str("k"), kv_slice_str("aaa"), TS(5), 0, &by), KV_SUPERSEDED);
    assert_int_equal(put_s(e, "k", "ccc", TS(5)), KV_OK); /* larger bytes win */
    expect_kv(e, "k", "ccc");
    assert_int_equal(put_s(e, "k", "ccc", TS(5)), KV_OK); /* the same cell: idempotent */
    assert_int_equal(eng_delete(e, kv_slice_str("k"), TS(5), NULL), KV_OK); /* tombstone wins */
    expect_kv(e, "k", NULL);
    assert_int_equal(put_s(e, "k", "zzz", TS(5)), KV_SUPERSEDED);
    assert_int_equal(eng_delete(e, kv_slice_str("k"), TS(5), NULL), KV_OK); /* duplicate */
    eng_close(e);
    test_rmrf(dir);
}

static void test_engine_batch_is_atomic_with_per_op_results(void **state)
{
    (void)state;
    const char *dir = test_tmpdir("eng-batch");
    eng_options_t o;
    small_options(&o, dir);
    eng_t *e = open_or_die(&o);
    assert_int_equal(put_s(e, "held", "v9", TS(9)), KV_OK);
    eng_batch_t *b = eng_batch_create();
    eng_batch_put(b, kv_slice_str("x"), kv_slice_str("1"), TS(10), 0);
    eng_batch_put(b, kv_slice_str("held"), kv_slice_str("old"), TS(1), 0);
    eng_batch_put(b, kv_slice_str("x"), kv_slice_str("2"), TS(11), 0); /* same key, newer */
    eng_batch_put(b, kv_slice_str("x"), kv_slice_str("0"), TS(3), 0);  /* same key, older */
    eng_batch_delete(b, kv_slice_str("y"), TS(10));
    eng_result_t r[5];
    assert_int_equal(eng_write(e, b, r), KV_OK);
    assert_int_equal(r[0].status, KV_OK);
    assert_int_equal(r[1].status, KV_SUPERSEDED);
    assert_int_equal(r[1].superseded_by, TS(9));
    assert_int_equal(r[2].status, KV_OK);
    assert_int_equal(r[3].status, KV_SUPERSEDED);
    assert_int_equal(r[3].superseded_by, TS(11));
    assert_int_equal(r[4].status, KV_OK);
    expect_kv(e, "x", "2");
    expect_kv(e, "held", "v9");
    assert_int_equal(eng_batch_count(b), 5);
    eng_batch_destroy(b);

    /* an oversized key anywhere in a batch: nothing applied */
    b = eng_batch_create();
    eng_batch_put(b, kv_slice_str("fine"), kv_slice_str("v"), TS(20), 0);
    size_t big = ENG_MAX_KEY_LEN + 1;
    char *k = kv_malloc(big);
    memset(k, 'k', big);
    eng_batch_put(b, kv_slice(k, big), kv_slice_str("v"), TS(20), 0);
    assert_int_equal(eng_write(e, b, NULL), KV_INVALID);
    expect_kv(e, "fine", NULL);
    /* the largest allowed key works */
    assert_int_equal(eng_put(e, kv_slice(k, ENG_MAX_KEY_LEN), kv_slice_str("v"), TS(20), 0, NULL), KV_OK);
    kv_free(k);
    eng_batch_destroy(b);
    eng_close(e);
    test_rmrf(dir);
}

static void test_engine_oversized_value_is_invalid(void **state)
{
    (void)state;
    const char *dir = test_tmpdir("eng-bigval");
    eng_options_t o;
    small_options(&o, dir);
    o.max_value_len = 1000;
    eng_t *e = open_or_die(&o);
    char v[1001];
    memset(v, 'v', sizeof v);
    assert_int_equal(eng_put(e, kv_slice_str("k"), kv_slice(v, 1001), TS(1), 0, NULL), KV_INVALID);
    assert_non_null(strstr(kv_errmsg(), "1001 bytes"));
    assert_int_equal(eng_put(e, kv_slice_str("k"), kv_slice(v, 1000), TS(1), 0, NULL), KV_OK);
    eng_close(e);
    test_rmrf(dir);
}

static void write_keys(eng_t *e, int from, int to, int ts)
{
    char k[32], v[64];
    for (int i = from; i < to; i++) {
        snprintf(k, sizeof k, "key-%06d", i);
        snprintf(v, sizeof v, "value-%06d-%d", i, ts);
        assert_int_equal(put_s(e, k, v, TS(ts)), KV_OK);
    }
}

static void check_keys(eng_t *e, int from, int to, int ts)
{
    char k[32], v[64];
    for (int i = from; i < to; i++) {
        snprintf(k, sizeof k, "key-%06d", i);
        snprintf(v, sizeof v, "value-%06d-%d", i, ts);
        expect_kv(e, k, v);
    }
}

/* Reopen replays the WAL (nothing flushed) and keeps flushed tables; many
 * flushes and compactions along the way. */
static void test_engine_reopen_keeps_everything(void **state)
{
    (void)state;
    const char *dir = test_tmpdir("eng-reopen");
    eng_options_t o;
    small_options(&o, dir);
    eng_t *e = open_or_die(&o);
    write_keys(e, 0, 5000, 1);
    write_keys(e, 0, 2500, 2);
    eng_stats_t st;
    eng_get_stats(e, &st);
    assert_true(st.flushes > 3);
    eng_close(e);
    e = open_or_die(&o);
    check_keys(e, 0, 2500, 2);
    check_keys(e, 2500, 5000, 1);
    write_keys(e, 5000, 5100, 3);
    eng_close(e); /* the last 100 only in the WAL */
    e = open_or_die(&o);
    check_keys(e, 5000, 5100, 3);
    assert_int_equal(eng_compact_range(e, 0, UINT64_MAX), KV_OK);
    check_keys(e, 0, 2500, 2);
    eng_get_stats(e, &st);
    assert_true(st.compactions > 0);
    assert_int_equal(st.tables_per_level[0], 0);
    eng_close(e);
    e = open_or_die(&o);
    check_keys(e, 0, 2500, 2);
    check_keys(e, 2500, 5000, 1);
    eng_close(e);
    test_rmrf(dir);
}

/* The open reports how many writes it replayed from WALs: none after a run
 * that flushed before closing (cairnd's clean drain), every unflushed one
 * after a run that did not (a crash: the daemon's "recovery work"). */
static void test_engine_open_counts_the_writes_it_recovers(void **state)
{
    (void)state;
    const char *dir = test_tmpdir("eng-recovered");
    eng_options_t o;
    small_options(&o, dir);
    eng_t *e = open_or_die(&o);
    eng_stats_t st;
    eng_get_stats(e, &st);
    assert_int_equal(st.wal_recovered_ops, 0); /* a new store */
    write_keys(e, 0, 300, 1);
    assert_int_equal(eng_flush(e), KV_OK);
    eng_close(e);

    e = open_or_die(&o); /* flushed, then closed: nothing to replay */
    eng_get_stats(e, &st);
    assert_int_equal(st.wal_recovered_ops, 0);
    write_keys(e, 300, 420, 1);
    char k[16];
    for (int i = 0; i < 5; i++) {
        snprintf(k, sizeof k, "key-%06d", i);
        assert_int_equal(eng_delete(e, kv_slice_str(k), TS(2), NULL), KV_OK);
    }
    eng_close(e); /* no flush: 125 writes only in the WAL */

    e = open_or_die(&o);
    eng_get_stats(e, &st);
    assert_int_equal(st.wal_recovered_ops, 125);
    check_keys(e, 5, 420, 1);
    assert_int_equal(eng_flush(e), KV_OK);
    eng_close(e);

    e = open_or_die(&o); /* what was replayed was flushed at that open */
    eng_get_stats(e, &st);
    assert_int_equal(st.wal_recovered_ops, 0);
    eng_close(e);
    test_rmrf(dir);
}

static void test_engine_second_open_of_a_directory_is_refused(void **state)
{
    (void)state;
    const char *dir = test_tmpdir("eng-lock");
    eng_options_t o;
    small_options(&o, dir);
    eng_t *e = open_or_die(&o);
    eng_t *e2 = NULL;
    assert_int_equal(eng_open(&o, &e2), KV_BUSY);
    assert_non_null(strstr(kv_errmsg(), "in use"));
    eng_close(e);
    o.create_if_missing = false;
    eng_options_t o2 = o;
    char missing[PATH_MAX + 16];
    snprintf(missing, sizeof missing, "%s/nothing-here", dir);
    o2.dir = missing;
    assert_int_not_equal(eng_open(&o2, &e2), KV_OK);
    test_rmrf(dir);
}

static void test_engine_snapshot_sees_the_past_through_flush_and_compaction(void **state)
{
    (void)state;
    const char *dir = test_tmpdir("eng-snap");
    eng_options_t o;
    small_options(&o, dir);
    eng_t *e = open_or_die(&o);
    write_keys(e, 0, 1000, 1);
    eng_snapshot_t *s = eng_snapshot_create(e);
    write_keys(e, 0, 1000, 2);
    assert_int_equal(eng_delete(e, kv_slice_str("key-000007"), TS(3), NULL), KV_OK);
    assert_int_equal(eng_flush(e), KV_OK);
    assert_int_equal(eng_compact_range(e, 0, UINT64_MAX), KV_OK);
    eng_read_options_t ro;
    eng_read_options_init(&ro);
    ro.snapshot = s;
    char k[32], v[64];
    for (int i = 0; i < 1000; i++) {
        snprintf(k, sizeof k, "key-%06d", i);
        snprintf(v, sizeof v, "value-%06d-1", i);
        eng_value_t out = {0};
        assert_int_equal(eng_get(e, &ro, kv_slice_str(k), &out), KV_OK);
        assert_false(out.tombstone);
        assert_memory_equal(out.value.data, v, strlen(v));
        eng_value_free(&out);
    }
    expect_kv(e, "key-000007", NULL);
    check_keys(e, 8, 1000, 2);
    /* after release, compaction may drop the old versions */
    eng_snapshot_release(e, s);
    assert_int_equal(eng_compact_range(e, 0, UINT64_MAX), KV_OK);
    eng_stats_t st;
    eng_get_stats(e, &st);
    assert_true(st.versions_dropped >= 1000);
    check_keys(e, 8, 1000, 2);
    eng_close(e);
    test_rmrf(dir);
}

/* Scans come in (token, key) order, honour [start, end], wrap when
 * start > end, include tombstones, and seek. */
static void test_engine_token_range_scans(void **state)
{
    (void)state;
    const char *dir = test_tmpdir("eng-scan");
    eng_options_t o;
    small_options(&o, dir);
    eng_t *e = open_or_die(&o);
    const int n = 3000;
    write_keys(e, 0, n, 1);
    assert_int_equal(eng_delete(e, kv_slice_str("key-000100"), TS(2), NULL), KV_OK);
    assert_int_equal(eng_flush(e), KV_OK);
    write_keys(e, 0, 10, 3); /* newer versions in the memtable */

    /* full scan */
    eng_iter_t *it = eng_iter_create(e, NULL, 0, UINT64_MAX);
    int count = 0, tombs = 0;
    uint64_t prev = 0;
    for (eng_iter_seek_first(it); eng_iter_valid(it); eng_iter_next(it)) {
        uint64_t t = eng_iter_token(it);
        assert_true(count == 0 || t >= prev);
        assert_int_equal(t, eng_token(eng_iter_key(it)));
        prev = t;
        count++;
        if (eng_iter_tombstone(it)) {
            tombs++;
            assert_int_equal(eng_iter_value(it).len, 0);
        }
        if (kv_slice_eq(eng_iter_key(it), kv_slice_str("key-000003")))
            assert_int_equal(eng_iter_ts(it), TS(3)); /* newest version only */
    }
    assert_int_equal(eng_iter_status(it), KV_OK);
    assert_int_equal(count, n);
    assert_int_equal(tombs, 1);
    eng_iter_destroy(it);

    /* a sub-range and its wrap-around complement partition the keys */
    uint64_t a = UINT64_MAX / 3, b = UINT64_MAX / 3 * 2;
    int in = 0, out = 0;
    it = eng_iter_create(e, NULL, a, b);
    for (eng_iter_seek_first(it); eng_iter_valid(it); eng_iter_next(it)) {
        uint64_t t = eng_iter_token(it);
        assert_true(t >= a && t <= b);
        in++;
    }
    eng_iter_destroy(it);
    it = eng_iter_create(e, NULL, b + 1, a - 1);
    bool wrapped = false;
    prev = 0;
    for (eng_iter_seek_first(it); eng_iter_valid(it); eng_iter_next(it)) {
        uint64_t t = eng_iter_token(it);
        assert_true(t > b || t < a);
        if (out > 0 && t < prev) {
            assert_false(wrapped); /* wraps exactly once */
            wrapped = true;
        }
        prev = t;
        out++;
    }
    eng_iter_destroy(it);
    assert_true(wrapped);
    assert_int_equal(in + out, n);
    assert_true(in > n / 5 && out > n / 5);

    /* seek to a key lands on it */
    it = eng_iter_create(e, NULL, 0, UINT64_MAX);
    kv_slice_t key = kv_slice_str("key-002222");
    eng_iter_seek(it, eng_token(key), key);
    assert_true(eng_iter_valid(it));
    assert_true(kv_slice_eq(eng_iter_key(it), key));
    eng_iter_destroy(it);
    eng_close(e);
    test_rmrf(dir);
}

/* Expired values read as tombstones at their own timestamp, before and
 * after compaction; tombstones go only after gc_grace, and a deleted key
 * never comes back. */
static bool keep_low_half(void *arg, uint64_t token)
{
    (void)arg;
    return token < (UINT64_C(1) << 63);
}

/* Cleanup drops every version of the keys it is told to, tombstones
 * included, from tables and memtable alike, and keeps the rest. */
static void test_engine_cleanup_drops_exactly_the_rejected_tokens(void **state)
{
    (void)state;
    const char *dir = test_tmpdir("eng-cleanup");
    eng_options_t o;
    small_options(&o, dir);
    eng_t *e = open_or_die(&o);
    enum { N = 3000 };
    char k[32], v[32];
    /* stamps of today, so gc_grace keeps the tombstones */
    uint64_t now = (uint64_t)time(NULL) * 1000;
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof k, "key%05d", i);
        snprintf(v, sizeof v, "old%05d", i);
        assert_int_equal(put_s(e, k, v, hlc_make(now, (uint32_t)i)), KV_OK);
    }
    assert_int_equal(eng_flush(e), KV_OK);
    for (int i = 0; i < N; i += 2) { /* newer versions and tombstones */
        snprintf(k, sizeof k, "key%05d", i);
        snprintf(v, sizeof v, "new%05d", i);
        if (i % 10 == 0)
            assert_int_equal(eng_delete(e, kv_slice_str(k), hlc_make(now + 1, (uint32_t)i), NULL), KV_OK);
        else
            assert_int_equal(put_s(e, k, v, hlc_make(now + 1, (uint32_t)i)), KV_OK);
    }
    uint64_t dropped = 0;
    assert_int_equal(eng_cleanup(e, keep_low_half, NULL, &dropped), KV_OK);
    size_t kept = 0;
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof k, "key%05d", i);
        bool low = eng_token(kv_slice_str(k)) < (UINT64_C(1) << 63);
        eng_value_t out = {0};
        kv_status_t rc = eng_get(e, NULL, kv_slice_str(k), &out);
        if (!low) {
            assert_int_equal(rc, KV_NOTFOUND); /* no version, no tombstone */
        } else {
            kept++;
            assert_int_equal(rc, KV_OK);
            assert_int_equal(out.tombstone, i % 10 == 0);
            if (i % 10) {
                snprintf(v, sizeof v, "%s%05d", i % 2 ? "old" : "new", i);
                assert_int_equal(out.value.len, strlen(v));
                assert_memory_equal(out.value.data, v, out.value.len);
            }
        }
        eng_value_free(&out);
    }
    assert_true(kept > N / 3 && kept < 2 * N / 3);
    assert_true(dropped >= N - kept); /* every version of each dropped key */
    /* a scan of the dropped half finds nothing, and it survives a reopen */
    eng_close(e);
    e = open_or_die(&o);
    eng_iter_t *it = eng_iter_create(e, NULL, UINT64_C(1) << 63, UINT64_MAX);
    eng_iter_seek_first(it);
    assert_false(eng_iter_valid(it));
    assert_int_equal(eng_iter_status(it), KV_OK);
    eng_iter_destroy(it);
    expect_kv(e, "key00001", eng_token(kv_slice_str("key00001")) < (UINT64_C(1) << 63)
                                 ? "old00001" : NULL);
    eng_close(e);
    test_rmrf(dir);
}

static void test_engine_expiry_and_gc_grace(void **state)
{
    (void)state;
    const char *dir = test_tmpdir("eng-gc");
    kv_manual_clock_t mc;
    kv_manual_clock_init(&mc, 1763700000000LL);
    eng_options_t o;
    small_options(&o, dir);
    o.clock = &mc.clock;
    o.gc_grace_ms = 60 * 1000;
    eng_t *e = open_or_die(&o);
    uint64_t now = (uint64_t)mc.wall;
    assert_int_equal(eng_put(e, kv_slice_str("ttl"), kv_slice_str("v"), hlc_make(now, 0),
                             now + 1000, NULL), KV_OK);
    expect_kv(e, "ttl", "v");
    kv_manual_clock_advance(&mc, 1001);
    eng_value_t v = {0};
    assert_int_equal(eng_get(e, NULL, kv_slice_str("ttl"), &v), KV_OK);
    assert_true(v.tombstone);
    assert_int_equal(v.ts, hlc_make(now, 0));
    eng_value_free(&v);

    /* an old value compacted to the bottom, then deleted */
    write_keys(e, 0, 500, 1);
    assert_int_equal(eng_compact_range(e, 0, UINT64_MAX), KV_OK);
    for (int i = 0; i < 500; i += 2) {
        char k[32];
        snprintf(k, sizeof k, "key-%06d", i);
        assert_int_equal(eng_delete(e, kv_slice_str(k), hlc_make((uint64_t)mc.wall, 1), NULL), KV_OK);
    }
    assert_int_equal(eng_flush(e), KV_OK);
    /* within gc_grace, compaction keeps every tombstone */
    assert_int_equal(eng_compact_range(e, 0, UINT64_MAX), KV_OK);
    eng_stats_t st;
    eng_get_stats(e, &st);
    assert_int_equal(st.tombstones_dropped, 0);
    for (int i = 0; i < 500; i++) {
        char k[32], val[64];
        snprintf(k, sizeof k, "key-%06d", i);
        snprintf(val, sizeof val, "value-%06d-1", i);
        expect_kv(e, k, i % 2 ? val : NULL);
    }
    /* past gc_grace they go, and the old values with them */
    kv_manual_clock_advance(&mc, 61 * 1000);
    assert_int_equal(eng_compact_range(e, 0, UINT64_MAX), KV_OK);
    eng_get_stats(e, &st);
    assert_true(st.tombstones_dropped >= 250);
    for (int i = 0; i < 500; i++) {
        char k[32], val[64];
        snprintf(k, sizeof k, "key-%06d", i);
        snprintf(val, sizeof val, "value-%06d-1", i);
        expect_kv(e, k, i % 2 ? val : NULL);
        if (i % 2 == 0)
            assert_int_equal(eng_get(e, NULL, kv_slice_str(k), &v), KV_NOTFOUND);
    }
    assert_int_equal(eng_get(e, NULL, kv_slice_str("ttl"), &v), KV_NOTFOUND);
    eng_close(e);
    e = open_or_die(&o);
    expect_kv(e, "key-000002", NULL);
    expect_kv(e, "key-000003", "value-000003-1");
    eng_close(e);
    test_rmrf(dir);
}

/* A full disk fails writes with KV_NOSPACE, loses nothing acknowledged,
 * keeps serving reads, and accepts writes again once space returns. */
static void test_engine_full_disk_fails_writes_cleanly_and_recovers(void **state)
{
    (void)state;
    const char *dir = test_tmpdir("eng-full");
    eng_options_t o;
    small_options(&o, dir);
    o.sync = ENG_SYNC_GROUP;
    eng_t *e = open_or_die(&o);
    write_keys(e, 0, 200, 1);
    eng_fs_fault_nospace_after(3000);
    char k[32], v[64];
    int acked = 200, failed = 0;
    for (int i = 200; i < 400; i++) {
        snprintf(k, sizeof k, "key-%06d", i);
        snprintf(v, sizeof v, "value-%06d-1", i);
        kv_status_t rc = put_s(e, k, v, TS(1));
        if (rc == KV_OK) {
            assert_int_equal(failed, 0); /* once full, stays full */
            acked = i + 1;
        } else {
            assert_int_equal(rc, KV_NOSPACE);
            failed++;
        }
    }
    assert_true(failed > 0);
    check_keys(e, 0, acked, 1); /* reads still work */
    eng_fs_fault_reset();
    write_keys(e, 400, 450, 1); /* space is back */
    eng_close(e);
    e = open_or_die(&o);
    check_keys(e, 0, acked, 1);
    for (int i = acked; i < 400; i++) {
        snprintf(k, sizeof k, "key-%06d", i);
        expect_kv(e, k, NULL); /* refused writes never appear */
    }
    check_keys(e, 400, 450, 1);
    eng_close(e);
    test_rmrf(dir);
}

/* A flush that hits a full disk is retried; writes keep working. */
static void test_engine_flush_on_full_disk_is_retried(void **state)
{
    (void)state;
    const char *dir = test_tmpdir("eng-fullflush");
    eng_options_t o;
    small_options(&o, dir);
    eng_t *e = open_or_die(&o);
    write_keys(e, 0, 300, 1);
    /* room for the new WAL's header, not for the table */
    eng_fs_fault_nospace_after(100);
    assert_int_equal(eng_flush(e), KV_NOSPACE);
    check_keys(e, 0, 300, 1);
    eng_fs_fault_reset();
    assert_int_equal(eng_flush(e), KV_OK);
    eng_stats_t st;
    eng_get_stats(e, &st);
    assert_true(st.background_errors >= 1);
    check_keys(e, 0, 300, 1);
    eng_close(e);
    e = open_or_die(&o);
    check_keys(e, 0, 300, 1);
    eng_close(e);
    test_rmrf(dir);
}

typedef struct writer_arg {
    eng_t *e;
    int id, n;
} writer_arg_t;

static void *sync_writer(void *p)
{
    writer_arg_t *a = p;
    char k[32], v[32];
    for (int i = 0; i < a->n; i++) {
        snprintf(k, sizeof k, "t%02d-%05d", a->id, i);
        snprintf(v, sizeof v, "v%d", i);
        if (put_s(a->e, k, v, TS(1)) != KV_OK) abort();
    }
    return NULL;
}

/* Concurrent writers under sync = group share fdatasyncs. */
static void test_engine_group_commit_shares_syncs(void **state)
{
    (void)state;
    const char *dir = test_tmpdir("eng-group");
    eng_options_t o;
    small_options(&o, dir);
    o.sync = ENG_SYNC_GROUP;
    o.memtable_bytes = 4 << 20;
    eng_t *e = open_or_die(&o);
    enum { T = 8, N = 300 };
    pthread_t th[T];
    writer_arg_t args[T];
    for (int i = 0; i < T; i++) {
        args[i] = (writer_arg_t){e, i, N};
        pthread_create(&th[i], NULL, sync_writer, &args[i]);
    }
    for (int i = 0; i < T; i++) pthread_join(th[i], NULL);
    eng_stats_t st;
    eng_get_stats(e, &st);
    print_message("group commit: %" PRIu64 " writes, %" PRIu64 " syncs\n",
                  st.wal_group_writes, st.wal_syncs);
    assert_int_equal(st.puts, T * N);
    assert_int_equal(st.wal_group_writes, T * N);
    assert_true(st.wal_syncs <= T * N);
    assert_true(st.wal_syncs < st.wal_group_writes); /* groups formed */
    eng_close(e);
    e = open_or_die(&o);
    char k[32], v[32];
    for (int t = 0; t < T; t++)
        for (int i = 0; i < N; i++) {
            snprintf(k, sizeof k, "t%02d-%05d", t, i);
            snprintf(v, sizeof v, "v%d", i);
            expect_kv(e, k, v);
        }
    eng_close(e);
    test_rmrf(dir);
}

typedef struct async_state {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done, ok, superseded;
} async_state_t;

static void async_done(void *arg, kv_status_t status, const eng_result_t *r, size_t n)
{
    async_state_t *s = arg;
    pthread_mutex_lock(&s->mu);
    s->done++;
    if (status == KV_OK) {
        for (size_t i = 0; i < n; i++) {
            if (r[i].status == KV_OK) s->ok++;
            else if (r[i].status == KV_SUPERSEDED) s->superseded++;
        }
    }
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void test_engine_async_writes_call_back_once_each(void **state)
{
    (void)state;
    const char *dir = test_tmpdir("eng-async");
    eng_options_t o;
    small_options(&o, dir);
    o.sync = ENG_SYNC_GROUP;
    eng_t *e = open_or_die(&o);
    assert_int_equal(put_s(e, "held", "v", TS(100)), KV_OK);
    async_state_t s = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0};
    eng_batch_t *b = eng_batch_create();
    const int n = 500;
    char k[32];
    for (int i = 0; i < n; i++) {
        eng_batch_clear(b);
        snprintf(k, sizeof k, "async-%d", i);
        eng_batch_put(b, kv_slice_str(k), kv_slice_str("v"), TS(1), 0);
        if (i % 50 == 0) eng_batch_put(b, kv_slice_str("held"), kv_slice_str("old"), TS(1), 0);
        assert_int_equal(eng_write_async(e, b, async_done, &s), KV_OK);
    }
    eng_batch_destroy(b); /* the engine has its own copy */
    pthread_mutex_lock(&s.mu);
    while (s.done < n) pthread_cond_wait(&s.cv, &s.mu);
    pthread_mutex_unlock(&s.mu);
    assert_int_equal(s.ok, n);
    assert_int_equal(s.superseded, n / 50);
    expect_kv(e, "async-499", "v");
    eng_close(e);
    test_rmrf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        kv_unit_test(test_engine_put_get_delete_roundtrip),
        kv_unit_test(test_engine_older_write_is_superseded_wherever_newer_lives),
        kv_unit_test(test_engine_ties_prefer_tombstone_then_larger_value),
        kv_unit_test(test_engine_batch_is_atomic_with_per_op_results),
        kv_unit_test(test_engine_oversized_value_is_invalid),
        kv_unit_test(test_engine_reopen_keeps_everything),
        kv_unit_test(test_engine_open_counts_the_writes_it_recovers),
        kv_unit_test(test_engine_cleanup_drops_exactly_the_rejected_tokens),
        kv_unit_test(test_engine_second_open_of_a_directory_is_refused),
        kv_unit_test(test_engine_snapshot_sees_the_past_through_flush_and_compaction),
        kv_unit_test(test_engine_token_range_scans),
        kv_unit_test(test_engine_expiry_and_gc_grace),
        kv_unit_test(test_engine_full_disk_fails_writes_cleanly_and_recovers),
        kv_unit_test(test_engine_flush_on_full_disk_is_retried),
        kv_unit_test(test_engine_group_commit_shares_syncs),
        kv_unit_test(test_engine_async_writes_call_back_once_each),
    };
    return cmocka_run_group_tests_name("engine", tests, NULL, NULL);
}
