/* test_sst.c -- SSTables: round trips of random contents under every
 * option combination, the bloom filter's false-positive rate, no_io reads,
 * builder failures, and concurrent readers. Corruption: test_sst_fault.c. */
#include "sst_test_util.h"

#include <pthread.h>

static void check_table(eng_sst_t *t, const model_t *m, kv_rng_t *r)
{
    const eng_sst_props_t *p = eng_sst_props(t);
    assert_int_equal(p->entries, m->n);
    if (m->n) {
        assert_true(kv_slice_eq(kv_buf_slice(&p->smallest), kv_buf_slice(&m->e[0].ikey)));
        assert_true(kv_slice_eq(kv_buf_slice(&p->largest),
                                kv_buf_slice(&m->e[m->n - 1].ikey)));
    }
    assert_int_equal(eng_sst_verify(t), KV_OK);
    for (size_t i = 0; i < m->n; i++) {
        const ent_t *e = &m->e[i];
        kv_slice_t ok = ent_okey(e);
        bool first = i == 0 || !kv_slice_eq(ok, ent_okey(&m->e[i - 1]));
        bool more = i + 1 < m->n && kv_slice_eq(ok, ent_okey(&m->e[i + 1]));
        if (first) {
            expect_get(t, ok, ENG_MAX_SEQ, e);
            expect_get(t, ok, UINT64_MAX, e);
        }
        expect_get(t, ok, ent_seq(e), e);
        expect_get(t, ok, ent_seq(e) - 1, more ? &m->e[i + 1] : NULL);
    }
    /* absent keys: user keys the model never holds */
    kv_buf_t ok = {0};
    for (int i = 0; i < 500; i++) {
        uint8_t k[12];
        fill_random(r, k, sizeof k);
        kv_put_be32(k, 0xffffffffu);
        kv_buf_clear(&ok);
        eng_okey_append(&ok, kv_slice(k, 1 + kv_rng_below(r, sizeof k)));
        expect_get(t, kv_buf_slice(&ok), ENG_MAX_SEQ, NULL);
    }
    kv_buf_deinit(&ok);
    expect_iter_all(t, m, true);
    expect_iter_all(t, m, false);
    /* seeks: to an exact ikey, to the newest of an okey, past the end */
    eng_iiter_t *it = eng_sst_iter_create(t, true);
    kv_buf_t target = {0};
    for (int n = 0; n < 300 && m->n; n++) {
        size_t i = kv_rng_below(r, m->n);
        eng_iiter_seek(it, kv_buf_slice(&m->e[i].ikey));
        assert_true(eng_iiter_valid(it));
        assert_true(kv_slice_eq(eng_iiter_key(it), kv_buf_slice(&m->e[i].ikey)));
        while (i > 0 && kv_slice_eq(ent_okey(&m->e[i]), ent_okey(&m->e[i - 1]))) i--;
        kv_buf_clear(&target);
        eng_ikey_append(&target, ent_okey(&m->e[i]), ENG_MAX_SEQ, ENG_KIND_MAX);
        eng_iiter_seek(it, kv_buf_slice(&target));
        assert_true(eng_iiter_valid(it));
        assert_true(kv_slice_eq(eng_iiter_key(it), kv_buf_slice(&m->e[i].ikey)));
        /* just past the oldest version of this okey: the next okey */
        while (i + 1 < m->n && kv_slice_eq(ent_okey(&m->e[i]), ent_okey(&m->e[i + 1]))) i++;
        kv_buf_clear(&target);
        eng_ikey_append(&target, ent_okey(&m->e[i]), 0, ENG_KIND_TOMBSTONE);
        eng_iiter_seek(it, kv_buf_slice(&target));
        assert_true(ent_seq(&m->e[i]) > 0); /* the model never uses seq 0 */
        if (i + 1 < m->n) {
            assert_true(eng_iiter_valid(it));
            assert_true(kv_slice_eq(eng_iiter_key(it), kv_buf_slice(&m->e[i + 1].ikey)));
        } else {
            assert_false(eng_iiter_valid(it));
        }
    }
    if (m->n) {
        kv_buf_clear(&target);
        uint8_t hi[ENG_TOKEN_LEN + 1];
        memset(hi, 0xff, sizeof hi);
        eng_ikey_append(&target, kv_slice(hi, sizeof hi), 0, ENG_KIND_TOMBSTONE);
        eng_iiter_seek(it, kv_buf_slice(&target));
        assert_false(eng_iiter_valid(it));
        assert_int_equal(eng_iiter_status(it), KV_OK);
    }
    kv_buf_deinit(&target);
    eng_iiter_destroy(it);
}

/* ---- round trips -------------------------------------------------------- */

static void round_trip(int level, int bloom, size_t block, int restart, uint64_t salt)
{
    kv_rng_t r;
    kv_rng_seed(&r, test_seed("sst round trip") + salt);
    const char *tmp = test_tmpdir("sst-rt");
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", tmp);
    char *path = eng_path_join(dir, "000001.sst");
    model_t m = {0};
    model_random(&m, &r, 3000, 2, 2);
    eng_sst_options_t o = opts(level, bloom, block, restart);
    eng_sst_props_t p;
    build(path, &o, &m, &p);
    assert_int_equal(p.entries, m.n);
    eng_cache_t *cache = eng_cache_create(1 << 20, 4);
    eng_sst_t *t;
    assert_int_equal(eng_sst_open(path, 1, cache, &t), KV_OK);
    const eng_sst_props_t *q = eng_sst_props(t);
    assert_int_equal(q->file_size, p.file_size);
    assert_int_equal(q->tombstones, p.tombstones);
    assert_int_equal(q->raw_key_bytes, p.raw_key_bytes);
    assert_int_equal(q->raw_value_bytes, p.raw_value_bytes);
    assert_int_equal(q->min_seq, p.min_seq);
    assert_int_equal(q->max_ts, p.max_ts);
    check_table(t, &m, &r);
    eng_sst_close(t);
    /* and without a cache */
    assert_int_equal(eng_sst_open(path, 1, NULL, &t), KV_OK);
    check_table(t, &m, &r);
    eng_sst_close(t);
    fprintf(stderr, "[sst] level=%d bloom=%d block=%zu: %zu entries, %llu raw "
            "bytes -> %llu file bytes\n", level, bloom, block, m.n,
            (unsigned long long)(p.raw_key_bytes + p.raw_value_bytes),
            (unsigned long long)p.file_size);
    eng_sst_props_deinit(&p);
    eng_cache_destroy(cache);
    model_free(&m);
    kv_free(path);
    test_rmrf(dir);
}

static void test_sst_round_trip_raw_blocks_with_bloom(void **state)
{
    (void)state;
    round_trip(0, 10, 4096, 16, 1);
}

static void test_sst_round_trip_zstd_blocks_with_bloom(void **state)
{
    (void)state;
    round_trip(1, 10, 4096, 16, 2);
}

static void test_sst_round_trip_raw_blocks_without_bloom(void **state)
{
    (void)state;
    round_trip(0, 0, 1024, 4, 3);
}

static void test_sst_round_trip_zstd_tiny_blocks_without_bloom(void **state)
{
    (void)state;
    round_trip(3, 0, 128, 1, 4);
}

static void test_sst_empty_table_round_trips(void **state)
{
    (void)state;
    const char *dir = test_tmpdir("sst-empty");
    char *path = eng_path_join(dir, "e.sst");
    model_t m = {0};
    eng_sst_options_t o = opts(1, 10, 4096, 16);
    build(path, &o, &m, NULL);
    eng_sst_t *t;
    kv_rng_t r;
    kv_rng_seed(&r, 9);
    assert_int_equal(eng_sst_open(path, 1, NULL, &t), KV_OK);
    check_table(t, &m, &r);
    eng_sst_close(t);
    kv_free(path);
    test_rmrf(dir);
}

/* ---- bloom filter ------------------------------------------------------- */

static void okey_fmt(kv_buf_t *ok, const char *fmt, int i)
{
    char k[32];
    int n = snprintf(k, sizeof k, fmt, i);
    kv_buf_clear(ok);
    eng_okey_append(ok, kv_slice(k, (size_t)n));
}

static void test_sst_bloom_false_positive_rate_is_low(void **state)
{
    (void)state;
    enum { N = 100000 };
    const char *dir = test_tmpdir("sst-bloom");
    char *path = eng_path_join(dir, "b.sst");
    eng_sst_options_t o = opts(1, 10, 4096, 16);
    eng_sst_builder_t *b;
    assert_int_equal(eng_sst_builder_create(path, &o, &b), KV_OK);
    kv_buf_t ok = {0}, cell = {0};
    eng_cell_t c = {.ts = 1, .value = kv_slice("v", 1)};
    eng_cell_encode(&cell, &c);
    kv_buf_t *keys = kv_calloc(N, sizeof *keys);
    for (int i = 0; i < N; i++) {
        okey_fmt(&ok, "present-%d", i);
        eng_ikey_append(&keys[i], kv_buf_slice(&ok), 5, ENG_KIND_VALUE);
    }
    qsort(keys, N, sizeof *keys, buf_cmp);
    for (int i = 0; i < N; i++)
        assert_int_equal(eng_sst_builder_add(b, kv_buf_slice(&keys[i]),
                                             kv_buf_slice(&cell)), KV_OK);
    eng_sst_props_t p;
    assert_int_equal(eng_sst_builder_finish(b, &p), KV_OK);
    eng_sst_props_deinit(&p);
    eng_sst_t *t;
    assert_int_equal(eng_sst_open(path, 1, NULL, &t), KV_OK);
    eng_sst_stats_t s0, s1;
    eng_sst_get_stats(&s0);
    for (int i = 0; i < N; i++)
        assert_true(eng_sst_may_contain(t, eng_ikey_okey(kv_buf_slice(&keys[i]))));
    int fp = 0;
    for (int i = 0; i < N; i++) {
        okey_fmt(&ok, "absent-%d", i);
        fp += eng_sst_may_contain(t, kv_buf_slice(&ok));
    }
    eng_sst_get_stats(&s1);
    assert_int_equal(s1.bloom_checks - s0.bloom_checks, 2 * N);
    assert_int_equal(s1.bloom_negatives - s0.bloom_negatives, N - fp);
    double rate = (double)fp / N;
    fprintf(stderr, "[sst] bloom 10 bits/key: false positives %d / %d = %.3f%%\n",
            fp, N, rate * 100);
    assert_true(rate < 0.02);
    eng_sst_close(t);
    for (int i = 0; i < N; i++) kv_buf_deinit(&keys[i]);
    kv_free(keys);
    kv_buf_deinit(&ok);
    kv_buf_deinit(&cell);
    kv_free(path);
    test_rmrf(dir);
}

/* ---- no_io -------------------------------------------------------------- */

static void test_sst_no_io_answers_again_until_block_is_cached(void **state)
{
    (void)state;
    kv_rng_t r;
    kv_rng_seed(&r, test_seed("sst no_io"));
    const char *dir = test_tmpdir("sst-noio");
    char *path = eng_path_join(dir, "n.sst");
    model_t m = {0};
    model_random(&m, &r, 500, 0, 0);
    eng_sst_options_t o = opts(1, 10, 1024, 16);
    build(path, &o, &m, NULL);
    eng_cache_t *cache = eng_cache_create(1 << 20, 2);
    eng_sst_t *t;
    assert_int_equal(eng_sst_open(path, 7, cache, &t), KV_OK);
    eng_kind_t kind;
    uint64_t seq;
    kv_buf_t cell = {0};
    const ent_t *e = &m.e[m.n / 2];
    eng_sst_stats_t s0, s1;
    eng_sst_get_stats(&s0);
    assert_int_equal(eng_sst_get(t, ent_okey(e), ENG_MAX_SEQ, true, &kind, &seq, &cell),
                     KV_AGAIN);
    eng_sst_get_stats(&s1);
    assert_int_equal(s1.blocks_read, s0.blocks_read); /* no disk touched */
    assert_int_equal(eng_sst_get(t, ent_okey(e), ENG_MAX_SEQ, false, &kind, &seq, &cell),
                     KV_OK);
    eng_sst_get_stats(&s1);
    assert_int_equal(s1.blocks_read, s0.blocks_read + 1);
    assert_int_equal(eng_sst_get(t, ent_okey(e), ENG_MAX_SEQ, true, &kind, &seq, &cell),
                     KV_OK);
    eng_sst_get_stats(&s0);
    assert_int_equal(s0.blocks_read, s1.blocks_read); /* from the cache */
    /* an iterator that does not fill the cache leaves the cache cold */
    eng_cache_stats_t cs0, cs1;
    eng_cache_get_stats(cache, &cs0);
    expect_iter_all(t, &m, false);
    eng_cache_get_stats(cache, &cs1);
    assert_int_equal(cs1.inserts, cs0.inserts);
    eng_sst_close(t);
    /* without a cache nothing is ever cached */
    assert_int_equal(eng_sst_open(path, 7, NULL, &t), KV_OK);
    assert_int_equal(eng_sst_get(t, ent_okey(e), ENG_MAX_SEQ, true, &kind, &seq, &cell),
                     KV_AGAIN);
    eng_sst_close(t);
    kv_buf_deinit(&cell);
    eng_cache_destroy(cache);
    model_free(&m);
    kv_free(path);
    test_rmrf(dir);
}

/* ---- builder failures --------------------------------------------------- */

static void test_sst_builder_refuses_out_of_order_keys(void **state)
{
    (void)state;
    kv_rng_t r;
    kv_rng_seed(&r, 3);
    const char *dir = test_tmpdir("sst-order");
    char *path = eng_path_join(dir, "o.sst");
    model_t m = {0};
    model_random(&m, &r, 10, 0, 0);
    eng_sst_options_t o = opts(1, 10, 4096, 16);
    eng_sst_builder_t *b;
    assert_int_equal(eng_sst_builder_create(path, &o, &b), KV_OK);
    assert_int_equal(eng_sst_builder_add(b, kv_buf_slice(&m.e[1].ikey),
                                         kv_buf_slice(&m.e[1].cell)), KV_OK);
    assert_int_equal(eng_sst_builder_add(b, kv_buf_slice(&m.e[0].ikey),
                                         kv_buf_slice(&m.e[0].cell)), KV_INVALID);
    assert_int_equal(eng_sst_builder_add(b, kv_buf_slice(&m.e[1].ikey),
                                         kv_buf_slice(&m.e[1].cell)), KV_INVALID);
    assert_int_equal(eng_sst_builder_add(b, kv_slice("short", 5),
                                         kv_buf_slice(&m.e[1].cell)), KV_INVALID);
    eng_sst_builder_abandon(b);
    bool exists = true;
    assert_int_equal(eng_fs_exists(path, &exists), KV_OK);
    assert_false(exists);
    model_free(&m);
    kv_free(path);
    test_rmrf(dir);
}

static void test_sst_builder_reports_full_disk_and_failed_sync(void **state)
{
    (void)state;
    kv_rng_t r;
    kv_rng_seed(&r, 4);
    const char *dir = test_tmpdir("sst-fail");
    char *path = eng_path_join(dir, "f.sst");
    model_t m = {0};
    model_random(&m, &r, 300, 0, 0);
    eng_sst_options_t o = opts(0, 10, 512, 16);
    for (int mode = 0; mode < 2; mode++) {
        eng_sst_builder_t *b;
        assert_int_equal(eng_sst_builder_create(path, &o, &b), KV_OK);
        if (mode == 0) eng_fs_fault_nospace_after(2000);
        else eng_fs_fault_sync_fails(true);
        kv_status_t rc = KV_OK;
        for (size_t i = 0; i < m.n && rc == KV_OK; i++)
            rc = eng_sst_builder_add(b, kv_buf_slice(&m.e[i].ikey),
                                     kv_buf_slice(&m.e[i].cell));
        eng_sst_props_t p;
        if (rc == KV_OK) rc = eng_sst_builder_finish(b, &p);
        else {
            assert_int_equal(eng_sst_builder_finish(b, &p), rc); /* sticky */
        }
        eng_fs_fault_reset();
        assert_int_equal(rc, mode == 0 ? KV_NOSPACE : KV_IO);
        assert_non_null(strstr(kv_errmsg(), path));
        bool exists = true;
        assert_int_equal(eng_fs_exists(path, &exists), KV_OK);
        assert_false(exists); /* the partial file is gone */
    }
    model_free(&m);
    kv_free(path);
    test_rmrf(dir);
}

/* ---- threads ------------------------------------------------------------ */

typedef struct reader {
    eng_sst_t *t;
    const model_t *m;
    uint64_t seed;
    int bad;
} reader_t;

static void *reader_main(void *arg)
{
    reader_t *rd = arg;
    kv_rng_t r;
    kv_rng_seed(&r, rd->seed);
    kv_buf_t cell = {0};
    for (int n = 0; n < 3000; n++) {
        const ent_t *e = &rd->m->e[kv_rng_below(&r, rd->m->n)];
        eng_kind_t kind;
        uint64_t seq;
        kv_status_t rc = eng_sst_get(rd->t, ent_okey(e), ent_seq(e), n % 2 == 0,
                                     &kind, &seq, &cell);
        if (rc == KV_AGAIN) continue; /* no_io on a cold block */
        if (rc != KV_OK || seq != ent_seq(e) ||
            !kv_slice_eq(kv_buf_slice(&cell), kv_buf_slice(&e->cell)))
            rd->bad++;
    }
    eng_iiter_t *it = eng_sst_iter_create(rd->t, true);
    size_t i = 0;
    for (eng_iiter_seek_first(it); eng_iiter_valid(it); eng_iiter_next(it), i++)
        if (!kv_slice_eq(eng_iiter_key(it), kv_buf_slice(&rd->m->e[i].ikey))) rd->bad++;
    if (eng_iiter_status(it) != KV_OK || i != rd->m->n) rd->bad++;
    eng_iiter_destroy(it);
    kv_buf_deinit(&cell);
    return NULL;
}

static void test_sst_concurrent_readers_share_table_and_cache(void **state)
{
    (void)state;
    uint64_t seed = test_seed("sst readers");
    kv_rng_t r;
    kv_rng_seed(&r, seed);
    const char *tmp = test_tmpdir("sst-threads");
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", tmp);
    char *path = eng_path_join(dir, "t.sst");
    model_t m = {0};
    model_random(&m, &r, 2000, 0, 0);
    eng_sst_options_t o = opts(1, 10, 1024, 16);
    build(path, &o, &m, NULL);
    eng_cache_t *cache = eng_cache_create(32 << 10, 4); /* small: evictions */
    eng_sst_t *t;
    assert_int_equal(eng_sst_open(path, 3, cache, &t), KV_OK);
    enum { N = 4 };
    pthread_t th[N];
    reader_t rd[N];
    for (int i = 0; i < N; i++) {
        rd[i] = (reader_t){.t = t, .m = &m, .seed = seed + (uint64_t)i};
        assert_int_equal(pthread_create(&th[i], NULL, reader_main, &rd[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(rd[i].bad, 0);
    }
    eng_cache_stats_t cs;
    eng_cache_get_stats(cache, &cs);
    assert_true(cs.evictions > 0 && cs.hits > 0);
    eng_sst_close(t);
    eng_cache_destroy(cache);
    model_free(&m);
    kv_free(path);
    test_rmrf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        kv_unit_test(test_sst_round_trip_raw_blocks_with_bloom),
        kv_unit_test(test_sst_round_trip_zstd_blocks_with_bloom),
        kv_unit_test(test_sst_round_trip_raw_blocks_without_bloom),
        kv_unit_test(test_sst_round_trip_zstd_tiny_blocks_without_bloom),
        kv_unit_test(test_sst_empty_table_round_trips),
        kv_unit_test(test_sst_bloom_false_positive_rate_is_low),
        kv_unit_test(test_sst_no_io_answers_again_until_block_is_cached),
        kv_unit_test(test_sst_builder_refuses_out_of_order_keys),
        kv_unit_test(test_sst_builder_reports_full_disk_and_failed_sync),
        kv_unit_test(test_sst_concurrent_readers_share_table_and_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
