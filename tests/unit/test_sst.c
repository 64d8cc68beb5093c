/* test_sst.c -- SSTables: round trips of random contents under every
 * option combination, the bloom filter's false-positive rate, no_io reads,
 * builder failures, and corruption of every part of the file (each must
 * give KV_CORRUPT naming the file -- never a crash or a wrong answer). */
#include "test_util.h"

#include <pthread.h>
#include <xxhash.h>

#include "fs.h"
#include "sst.h"

#define SST_TRAILER_TEST 9 /* type(1) + XXH3-64(8), per sst.h */

/* ---- a model of a table's contents -------------------------------------- */

typedef struct ent {
    kv_buf_t ikey, cell;
} ent_t;

typedef struct model {
    ent_t *e;
    size_t n, cap;
} model_t;

static void model_add(model_t *m, kv_slice_t ukey, uint64_t seq, bool tomb,
                      hlc_ts_t ts, uint64_t expire_ms, kv_slice_t value)
{
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 256;
        m->e = kv_realloc(m->e, m->cap * sizeof *m->e);
    }
    ent_t *e = &m->e[m->n++];
    memset(e, 0, sizeof *e);
    kv_buf_t ok = {0};
    eng_okey_append(&ok, ukey);
    eng_ikey_append(&e->ikey, kv_buf_slice(&ok), seq,
                    tomb ? ENG_KIND_TOMBSTONE : ENG_KIND_VALUE);
    kv_buf_deinit(&ok);
    eng_cell_t c = {.ts = ts, .expire_ms = expire_ms, .tombstone = tomb,
                    .value = tomb ? kv_slice(NULL, 0) : value};
    eng_cell_encode(&e->cell, &c);
}

static int ent_cmp(const void *a, const void *b)
{
    return eng_ikey_cmp(kv_buf_slice(&((const ent_t *)a)->ikey),
                        kv_buf_slice(&((const ent_t *)b)->ikey));
}

static int buf_cmp(const void *a, const void *b)
{
    return eng_ikey_cmp(kv_buf_slice(a), kv_buf_slice(b));
}

static void model_sort(model_t *m) { qsort(m->e, m->n, sizeof *m->e, ent_cmp); }

static void model_free(model_t *m)
{
    for (size_t i = 0; i < m->n; i++) {
        kv_buf_deinit(&m->e[i].ikey);
        kv_buf_deinit(&m->e[i].cell);
    }
    kv_free(m->e);
    memset(m, 0, sizeof *m);
}

static void fill_random(kv_rng_t *r, uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)kv_rng_next(r);
}

/* nkeys distinct user keys (one empty, `big` of 64 KiB), 1-3 versions
 * each; values empty to ~1 MiB (`huge` of those), compressible or not. */
static void model_random(model_t *m, kv_rng_t *r, size_t nkeys, int big, int huge)
{
    uint8_t *kb = kv_malloc(ENG_MAX_KEY_LEN);
    uint8_t *vb = kv_malloc((1u << 20) + 1);
    for (size_t i = 0; i < nkeys; i++) {
        size_t klen = i == 0 ? 0 : (int)i <= big ? ENG_MAX_KEY_LEN
                                                 : 4 + kv_rng_below(r, 40);
        if (klen) {
            fill_random(r, kb, klen);
            kv_put_be32(kb, (uint32_t)i); /* distinct, never 0xffffffff */
        }
        int versions = 1 + (int)kv_rng_below(r, 3);
        uint64_t seq = 1 + kv_rng_below(r, 1000000) + 10;
        for (int v = 0; v < versions; v++) {
            seq -= 1 + kv_rng_below(r, 3); /* strictly older each time */
            bool tomb = kv_rng_below(r, 5) == 0;
            uint64_t exp = kv_rng_below(r, 5) == 0 ? 1700000000000 + seq : 0;
            size_t vlen = i + (size_t)huge >= nkeys ? (1u << 20)
                          : kv_rng_below(r, 4) == 0 ? 0 : kv_rng_below(r, 200);
            if (kv_rng_below(r, 2)) memset(vb, 'a' + (int)(i % 26), vlen);
            else fill_random(r, vb, vlen);
            model_add(m, kv_slice(kb, klen), seq, tomb, (hlc_ts_t)seq << 16, exp,
                      kv_slice(vb, vlen));
        }
    }
    kv_free(kb);
    kv_free(vb);
    model_sort(m);
}

static eng_sst_options_t opts(int level, int bloom, size_t block, int restart)
{
    eng_sst_options_t o = {.block_bytes = block, .restart_interval = restart,
                           .compression_level = level, .bloom_bits_per_key = bloom};
    return o;
}

static void build(const char *path, const eng_sst_options_t *o, const model_t *m,
                  eng_sst_props_t *props)
{
    eng_sst_builder_t *b;
    assert_int_equal(eng_sst_builder_create(path, o, &b), KV_OK);
    for (size_t i = 0; i < m->n; i++)
        assert_int_equal(eng_sst_builder_add(b, kv_buf_slice(&m->e[i].ikey),
                                             kv_buf_slice(&m->e[i].cell)),
                         KV_OK);
    assert_int_equal(eng_sst_builder_entries(b), m->n);
    eng_sst_props_t p;
    assert_int_equal(eng_sst_builder_finish(b, &p), KV_OK);
    if (props) *props = p;
    else eng_sst_props_deinit(&p);
}

static kv_slice_t ent_okey(const ent_t *e) { return eng_ikey_okey(kv_buf_slice(&e->ikey)); }

static uint64_t ent_seq(const ent_t *e)
{
    return eng_ikey_trailer(kv_buf_slice(&e->ikey)) >> 8;
}

/* get(okey, max_seq) must answer exactly entry `want` (or NOTFOUND). */
static void expect_get(eng_sst_t *t, kv_slice_t okey, uint64_t max_seq,
                       const ent_t *want)
{
    eng_kind_t kind;
    uint64_t seq;
    kv_buf_t cell = {0};
    kv_status_t rc = eng_sst_get(t, okey, max_seq, false, &kind, &seq, &cell);
    if (!want) {
        assert_int_equal(rc, KV_NOTFOUND);
    } else {
        assert_int_equal(rc, KV_OK);
        uint64_t tr = eng_ikey_trailer(kv_buf_slice(&want->ikey));
        assert_int_equal(seq, tr >> 8);
        assert_int_equal(kind, (eng_kind_t)(tr & 0xff));
        assert_true(kv_slice_eq(kv_buf_slice(&cell), kv_buf_slice(&want->cell)));
    }
    kv_buf_deinit(&cell);
}

static void expect_iter_all(eng_sst_t *t, const model_t *m, bool fill)
{
    eng_iiter_t *it = eng_sst_iter_create(t, fill);
    size_t i = 0;
    for (eng_iiter_seek_first(it); eng_iiter_valid(it); eng_iiter_next(it), i++) {
        assert_true(i < m->n);
        assert_true(kv_slice_eq(eng_iiter_key(it), kv_buf_slice(&m->e[i].ikey)));
        assert_true(kv_slice_eq(eng_iiter_value(it), kv_buf_slice(&m->e[i].cell)));
    }
    assert_int_equal(eng_iiter_status(it), KV_OK);
    assert_int_equal(i, m->n);
    eng_iiter_destroy(it);
}

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

/* ---- corruption ---------------------------------------------------------- */

typedef struct fixture {
    char dir[PATH_MAX];
    char *path;
    model_t m;
    uint8_t *img; /* the intact file */
    size_t len;
} fixture_t;

static void read_whole(const char *path, uint8_t **out, size_t *len)
{
    kv_buf_t b = {0};
    assert_int_equal(eng_fs_read_file(path, 64u << 20, &b), KV_OK);
    *out = b.data;
    *len = b.len;
}

static void write_whole(const char *path, const uint8_t *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n) assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}

static void fixture_init(fixture_t *fx, size_t nkeys, int level)
{
    memset(fx, 0, sizeof *fx);
    kv_rng_t r;
    kv_rng_seed(&r, test_seed("sst corruption fixture"));
    snprintf(fx->dir, sizeof fx->dir, "%s", test_tmpdir("sst-corrupt"));
    fx->path = eng_path_join(fx->dir, "000042.sst");
    model_random(&fx->m, &r, nkeys, 0, 0);
    eng_sst_options_t o = opts(level, 10, 256, 4);
    build(fx->path, &o, &fx->m, NULL);
    read_whole(fx->path, &fx->img, &fx->len);
    /* walk the data blocks by their checksums: both kinds must be covered */
    uint64_t end = kv_get_le64(fx->img + fx->len - ENG_SST_FOOTER);
    int blocks = 0, zstd = 0;
    for (size_t off = 0, n = 1; off < end; n++) {
        assert_true(off + n + SST_TRAILER_TEST <= end);
        if (XXH3_64bits(fx->img + off, n + 1) != kv_get_le64(fx->img + off + n + 1))
            continue;
        blocks++;
        zstd += fx->img[off + n] == 1;
        off += n + SST_TRAILER_TEST;
        n = 0;
    }
    assert_true(blocks > 4);
    if (level) assert_true(zstd > 0 && zstd < blocks);
    else assert_int_equal(zstd, 0);
}

static void fixture_deinit(fixture_t *fx)
{
    model_free(&fx->m);
    kv_free(fx->img);
    kv_free(fx->path);
    test_rmrf(fx->dir);
}

static uint64_t footer_u64(const fixture_t *fx, int field)
{
    return kv_get_le64(fx->img + fx->len - ENG_SST_FOOTER + 8 * field);
}

/* Write the intact image with one byte xor'ed. */
static void write_flipped(const fixture_t *fx, size_t off, uint8_t mask)
{
    uint8_t *c = kv_memdup(fx->img, fx->len);
    c[off] ^= mask;
    write_whole(fx->path, c, fx->len);
    kv_free(c);
}

static void expect_open_corrupt(const fixture_t *fx)
{
    eng_sst_t *t = NULL;
    kv_errmsg_clear();
    assert_int_equal(eng_sst_open(fx->path, 42, NULL, &t), KV_CORRUPT);
    assert_null(t);
    assert_non_null(strstr(kv_errmsg(), fx->path));
    assert_non_null(strstr(kv_errmsg(), "at offset"));
}

static void test_sst_flipped_data_block_bit_is_corrupt(void **state)
{
    (void)state;
    for (int level = 0; level <= 1; level++) {
        fixture_t fx;
        fixture_init(&fx, 200, level);
        write_flipped(&fx, 5, 0x10); /* inside data block 0 */
        eng_cache_t *cache = eng_cache_create(1 << 20, 1);
        eng_sst_t *t;
        assert_int_equal(eng_sst_open(fx.path, 42, cache, &t), KV_OK);
        eng_kind_t kind;
        uint64_t seq;
        kv_buf_t cell = {0};
        kv_errmsg_clear();
        assert_int_equal(eng_sst_get(t, ent_okey(&fx.m.e[0]), ENG_MAX_SEQ, false,
                                     &kind, &seq, &cell), KV_CORRUPT);
        assert_non_null(strstr(kv_errmsg(), fx.path));
        assert_non_null(strstr(kv_errmsg(), "at offset 0"));
        /* a key in the last block still reads fine */
        expect_get(t, ent_okey(&fx.m.e[fx.m.n - 1]), ENG_MAX_SEQ, &fx.m.e[fx.m.n - 1]);
        eng_iiter_t *it = eng_sst_iter_create(t, true);
        kv_errmsg_clear();
        eng_iiter_seek_first(it);
        assert_false(eng_iiter_valid(it));
        assert_int_equal(eng_iiter_status(it), KV_CORRUPT);
        assert_non_null(strstr(kv_errmsg(), fx.path));
        eng_iiter_destroy(it);
        kv_errmsg_clear();
        assert_int_equal(eng_sst_verify(t), KV_CORRUPT);
        assert_non_null(strstr(kv_errmsg(), fx.path));
        kv_buf_deinit(&cell);
        eng_sst_close(t);
        eng_cache_destroy(cache);
        fixture_deinit(&fx);
    }
}

static void test_sst_flipped_index_filter_or_props_bit_is_corrupt(void **state)
{
    (void)state;
    fixture_t fx;
    fixture_init(&fx, 200, 1);
    /* footer fields: filter off,size; props off,size; index off,size */
    uint64_t filter = footer_u64(&fx, 0), props = footer_u64(&fx, 2),
             index = footer_u64(&fx, 4);
    assert_true(footer_u64(&fx, 1) > 0);
    uint64_t where[] = {filter + 3, filter + footer_u64(&fx, 1) /* type */,
                        props + 1, props + footer_u64(&fx, 3) + 4 /* checksum */,
                        index + 2, index + footer_u64(&fx, 5) - 1};
    for (size_t i = 0; i < KV_ARRAY_LEN(where); i++) {
        write_flipped(&fx, (size_t)where[i], 0x01);
        expect_open_corrupt(&fx);
    }
    fixture_deinit(&fx);
}

static void rewrite_footer(fixture_t *fx, int field, uint64_t v, uint32_t version)
{
    uint8_t *c = kv_memdup(fx->img, fx->len);
    uint8_t *ft = c + fx->len - ENG_SST_FOOTER;
    if (field >= 0) kv_put_le64(ft + 8 * field, v);
    kv_put_le32(ft + 48, version);
    kv_put_le32(ft + 52, (uint32_t)XXH3_64bits(ft, 52)); /* a valid checksum */
    write_whole(fx->path, c, fx->len);
    kv_free(c);
}

static void test_sst_damaged_footer_is_corrupt(void **state)
{
    (void)state;
    fixture_t fx;
    fixture_init(&fx, 100, 1);
    size_t ft = fx.len - ENG_SST_FOOTER;
    write_flipped(&fx, ft + 60, 0x20); /* magic */
    expect_open_corrupt(&fx);
    assert_non_null(strstr(kv_errmsg(), "magic"));
    write_flipped(&fx, ft + 53, 0x01); /* checksum */
    expect_open_corrupt(&fx);
    assert_non_null(strstr(kv_errmsg(), "checksum"));
    write_flipped(&fx, ft + 48, 0x02); /* version, checksum now wrong */
    expect_open_corrupt(&fx);
    rewrite_footer(&fx, -1, 0, 2); /* version 2 with a good checksum */
    expect_open_corrupt(&fx);
    assert_non_null(strstr(kv_errmsg(), "version"));
    /* handles that pass the checksum but lie: huge sizes, shifted offsets */
    uint64_t lies[][2] = {{5, UINT64_C(1) << 60}, {5, UINT64_MAX}, {4, 0},
                          {4, UINT64_MAX - 3}, {1, UINT64_MAX}, {3, 1 << 30},
                          {2, 1}, {0, 7}};
    for (size_t i = 0; i < KV_ARRAY_LEN(lies); i++) {
        rewrite_footer(&fx, (int)lies[i][0], lies[i][1], 1);
        expect_open_corrupt(&fx);
    }
    fixture_deinit(&fx);
}

static void test_sst_truncated_file_is_corrupt(void **state)
{
    (void)state;
    fixture_t fx;
    fixture_init(&fx, 200, 1);
    size_t cuts[] = {0, 1, 8, 63, 64, 65, fx.len / 3, fx.len / 2,
                     fx.len - ENG_SST_FOOTER - 1, fx.len - ENG_SST_FOOTER,
                     fx.len - 10, fx.len - 1};
    for (size_t i = 0; i < KV_ARRAY_LEN(cuts); i++) {
        write_whole(fx.path, fx.img, cuts[i]);
        expect_open_corrupt(&fx);
    }
    /* cut and then padded back to the old size with zeros */
    uint8_t *c = kv_calloc(1, fx.len);
    memcpy(c, fx.img, fx.len / 2);
    write_whole(fx.path, c, fx.len);
    expect_open_corrupt(&fx);
    kv_free(c);
    fixture_deinit(&fx);
}

static void test_sst_garbage_file_is_corrupt(void **state)
{
    (void)state;
    kv_rng_t r;
    kv_rng_seed(&r, test_seed("sst garbage"));
    fixture_t fx;
    fixture_init(&fx, 10, 0);
    size_t sizes[] = {64, 100, 4096, 100000};
    for (size_t i = 0; i < KV_ARRAY_LEN(sizes); i++) {
        uint8_t *g = kv_malloc(sizes[i]);
        fill_random(&r, g, sizes[i]);
        write_whole(fx.path, g, sizes[i]);
        expect_open_corrupt(&fx);
        memcpy(g + sizes[i] - 8, ENG_SST_MAGIC, 8); /* right magic, junk else */
        write_whole(fx.path, g, sizes[i]);
        expect_open_corrupt(&fx);
        kv_free(g);
    }
    fixture_deinit(&fx);
}

/* A data block that claims (with a valid checksum) to inflate to 1 GiB
 * must be refused before anything that size is allocated. */
static void test_sst_oversized_raw_size_is_refused(void **state)
{
    (void)state;
    fixture_t fx;
    fixture_init(&fx, 200, 0);
    uint8_t *c = kv_memdup(fx.img, fx.len);
    /* the first block's handle: read it through the table */
    eng_sst_t *t;
    assert_int_equal(eng_sst_open(fx.path, 1, NULL, &t), KV_OK);
    eng_sst_close(t);
    /* rebuild block 0 in place: its size is unchanged, find it by scanning
     * for the smallest offset whose trailer checksum matches */
    size_t size = 0;
    for (size_t n = 1; n + SST_TRAILER_TEST <= fx.len; n++) {
        if (XXH3_64bits(c, n + 1) == kv_get_le64(c + n + 1)) {
            size = n;
            break;
        }
    }
    assert_true(size > 8);
    size_t v = kv_put_varint64(c, UINT64_C(1) << 30);
    memset(c + v, 0x28, size - v);
    c[size] = 1; /* zstd */
    kv_put_le64(c + size + 1, XXH3_64bits(c, size + 1));
    write_whole(fx.path, c, fx.len);
    kv_free(c);
    assert_int_equal(eng_sst_open(fx.path, 1, NULL, &t), KV_OK);
    kv_buf_t cell = {0};
    eng_kind_t kind;
    uint64_t seq;
    assert_int_equal(eng_sst_get(t, ent_okey(&fx.m.e[0]), ENG_MAX_SEQ, false, &kind,
                                 &seq, &cell), KV_CORRUPT);
    assert_non_null(strstr(kv_errmsg(), "raw size"));
    assert_int_equal(eng_sst_verify(t), KV_CORRUPT);
    eng_sst_close(t);
    kv_buf_deinit(&cell);
    fixture_deinit(&fx);
}

/* Flip one byte at every offset of a small table (and more at random):
 * open, verify, iterate and get may fail only with KV_CORRUPT naming the
 * file; whatever they do return must be the original data. */
static void check_flipped(const fixture_t *fx, eng_cache_t *cache, uint64_t file_no)
{
    eng_sst_t *t;
    kv_status_t rc = eng_sst_open(fx->path, file_no, cache, &t);
    if (rc != KV_OK) {
        assert_int_equal(rc, KV_CORRUPT);
        assert_non_null(strstr(kv_errmsg(), fx->path));
        return;
    }
    rc = eng_sst_verify(t);
    assert_true(rc == KV_OK || rc == KV_CORRUPT);
    eng_iiter_t *it = eng_sst_iter_create(t, true);
    size_t i = 0;
    for (eng_iiter_seek_first(it); eng_iiter_valid(it); eng_iiter_next(it), i++) {
        assert_true(i < fx->m.n);
        assert_true(kv_slice_eq(eng_iiter_key(it), kv_buf_slice(&fx->m.e[i].ikey)));
        assert_true(kv_slice_eq(eng_iiter_value(it), kv_buf_slice(&fx->m.e[i].cell)));
    }
    rc = eng_iiter_status(it);
    if (rc == KV_OK) assert_int_equal(i, fx->m.n);
    else assert_int_equal(rc, KV_CORRUPT);
    eng_iiter_destroy(it);
    kv_buf_t cell = {0};
    for (size_t j = 0; j < fx->m.n; j++) {
        const ent_t *e = &fx->m.e[j];
        eng_kind_t kind;
        uint64_t seq;
        rc = eng_sst_get(t, ent_okey(e), ent_seq(e), false, &kind, &seq, &cell);
        if (rc == KV_CORRUPT) continue;
        assert_int_equal(rc, KV_OK);
        assert_int_equal(seq, ent_seq(e));
        assert_true(kv_slice_eq(kv_buf_slice(&cell), kv_buf_slice(&e->cell)));
    }
    kv_buf_deinit(&cell);
    eng_sst_close(t);
}

static void test_sst_random_flips_never_crash_or_lie(void **state)
{
    (void)state;
    kv_rng_t r;
    kv_rng_seed(&r, test_seed("sst random flips"));
    for (int level = 0; level <= 1; level++) {
        fixture_t fx;
        fixture_init(&fx, 40, level);
        eng_cache_t *cache = eng_cache_create(1 << 16, 2);
        uint64_t file_no = 1;
        for (size_t off = 0; off < fx.len; off++) {
            write_flipped(&fx, off, (uint8_t)(1 + kv_rng_below(&r, 255)));
            check_flipped(&fx, cache, file_no++); /* fresh cache keys */
        }
        for (int n = 0; n < 500; n++) {
            uint8_t *c = kv_memdup(fx.img, fx.len);
            int flips = 1 + (int)kv_rng_below(&r, 4);
            for (int k = 0; k < flips; k++)
                c[kv_rng_below(&r, fx.len)] ^= (uint8_t)(1 + kv_rng_below(&r, 255));
            write_whole(fx.path, c, fx.len);
            kv_free(c);
            check_flipped(&fx, cache, file_no++);
        }
        fprintf(stderr, "[sst] flipped %zu-byte table (level %d) %llu times\n",
                fx.len, level, (unsigned long long)file_no - 1);
        eng_cache_destroy(cache);
        fixture_deinit(&fx);
    }
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
        cmocka_unit_test(test_sst_round_trip_raw_blocks_with_bloom),
        cmocka_unit_test(test_sst_round_trip_zstd_blocks_with_bloom),
        cmocka_unit_test(test_sst_round_trip_raw_blocks_without_bloom),
        cmocka_unit_test(test_sst_round_trip_zstd_tiny_blocks_without_bloom),
        cmocka_unit_test(test_sst_empty_table_round_trips),
        cmocka_unit_test(test_sst_bloom_false_positive_rate_is_low),
        cmocka_unit_test(test_sst_no_io_answers_again_until_block_is_cached),
        cmocka_unit_test(test_sst_builder_refuses_out_of_order_keys),
        cmocka_unit_test(test_sst_builder_reports_full_disk_and_failed_sync),
        cmocka_unit_test(test_sst_flipped_data_block_bit_is_corrupt),
        cmocka_unit_test(test_sst_flipped_index_filter_or_props_bit_is_corrupt),
        cmocka_unit_test(test_sst_damaged_footer_is_corrupt),
        cmocka_unit_test(test_sst_truncated_file_is_corrupt),
        cmocka_unit_test(test_sst_garbage_file_is_corrupt),
        cmocka_unit_test(test_sst_oversized_raw_size_is_refused),
        cmocka_unit_test(test_sst_random_flips_never_crash_or_lie),
        cmocka_unit_test(test_sst_concurrent_readers_share_table_and_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
