/* test_sst_fault.c -- SSTable corruption: a damaged data block, index,
 * filter, props or footer, truncation, garbage, a decompression bomb, and a
 * byte flipped at every offset. Each must give KV_CORRUPT naming the file
 * -- never a crash, never a wrong answer. */
#include "sst_test_util.h"

#include <xxhash.h>

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
    /* rewrite block 0 in place at its old size (found as the shortest
     * prefix whose trailer checksum matches), so every handle stays valid */
    eng_sst_t *t;
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        kv_unit_test(test_sst_flipped_data_block_bit_is_corrupt),
        kv_unit_test(test_sst_flipped_index_filter_or_props_bit_is_corrupt),
        kv_unit_test(test_sst_damaged_footer_is_corrupt),
        kv_unit_test(test_sst_truncated_file_is_corrupt),
        kv_unit_test(test_sst_garbage_file_is_corrupt),
        kv_unit_test(test_sst_oversized_raw_size_is_refused),
        kv_unit_test(test_sst_random_flips_never_crash_or_lie),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
