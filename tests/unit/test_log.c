/* test_log.c -- the checksummed record log: round trips, torn tails cut at
 * every byte, zeroed and garbage tails, bit flips in every field of a
 * middle and a last record, salvage, disk-full and failed-sync faults,
 * headers moved to another offset, and a seeded random-corruption loop in
 * which the reader must never return a payload that was not written. */
#include "test_util.h"

#include <fcntl.h>
#include <xxhash.h>

#include "coding.h"
#include "fs.h"
#include "log.h"

#define MAGIC "CAIRNWAL"

/* ---- fixtures ------------------------------------------------------------ */

typedef struct {
    size_t n;
    uint8_t **data;
    size_t *len;
    uint64_t *off; /* where each record's header starts */
    uint64_t size; /* file size after the last record */
} recs_t;

static void recs_free(recs_t *rs)
{
    for (size_t i = 0; i < rs->n; i++) free(rs->data[i]);
    free(rs->data);
    free(rs->len);
    free(rs->off);
    memset(rs, 0, sizeof *rs);
}

/* n payloads with the given lengths (random bytes, index in the first
 * bytes so equal-length payloads still differ). */
static void recs_make(recs_t *rs, kv_rng_t *rng, size_t n, const size_t *lens)
{
    rs->n = n;
    rs->data = calloc(n, sizeof *rs->data);
    rs->len = calloc(n, sizeof *rs->len);
    rs->off = calloc(n, sizeof *rs->off);
    for (size_t i = 0; i < n; i++) {
        rs->len[i] = lens[i];
        rs->data[i] = malloc(lens[i] ? lens[i] : 1);
        for (size_t j = 0; j < lens[i]; j++)
            rs->data[i][j] = (uint8_t)kv_rng_next(rng);
        if (lens[i] >= 4) kv_put_le32(rs->data[i], (uint32_t)i);
    }
}

static void recs_write(recs_t *rs, const char *path)
{
    eng_log_writer_t *w = NULL;
    assert_int_equal(eng_log_writer_create(path, MAGIC, &w), KV_OK);
    assert_int_equal(eng_log_writer_size(w), ENG_LOG_HEADER);
    assert_string_equal(eng_log_writer_path(w), path);
    for (size_t i = 0; i < rs->n; i++) {
        rs->off[i] = eng_log_writer_size(w);
        assert_int_equal(
            eng_log_writer_add(w, kv_slice(rs->data[i], rs->len[i])), KV_OK);
        assert_int_equal(eng_log_writer_size(w),
                         rs->off[i] + ENG_LOG_RECORD_HEADER + rs->len[i]);
    }
    assert_int_equal(eng_log_writer_sync(w), KV_OK);
    rs->size = eng_log_writer_size(w);
    eng_log_writer_close(w);
}

/* Build and write a log of n records with lengths from `lens`. */
static void recs_build(recs_t *rs, const char *path, uint64_t seed, size_t n,
                       const size_t *lens)
{
    kv_rng_t rng;
    kv_rng_seed(&rng, seed);
    recs_make(rs, &rng, n, lens);
    recs_write(rs, path);
}

static void recs_build_uniform(recs_t *rs, const char *path, size_t n,
                               size_t len)
{
    size_t *lens = calloc(n ? n : 1, sizeof *lens);
    for (size_t i = 0; i < n; i++) lens[i] = len;
    recs_build(rs, path, 42, n, lens);
    free(lens);
}

static bool rec_is(const recs_t *rs, size_t i, kv_slice_t p)
{
    return i < rs->n && kv_slice_eq(p, kv_slice(rs->data[i], rs->len[i]));
}

/* Read the log: the records returned must be exactly rs[want[0..]] in
 * order (want == NULL: rs[0..nwant)). Returns the final status. */
static kv_status_t read_expect(const char *path, bool salvage,
                               const recs_t *rs, const size_t *want,
                               size_t nwant, eng_log_read_stats_t *st,
                               uint64_t *offset)
{
    eng_log_reader_t *r = NULL;
    kv_status_t rc = eng_log_reader_open(path, MAGIC, salvage, &r);
    if (rc != KV_OK) return rc;
    kv_slice_t p;
    size_t got = 0;
    while ((rc = eng_log_reader_next(r, &p)) == KV_OK) {
        assert_true(got < nwant);
        assert_true(rec_is(rs, want ? want[got] : got, p));
        got++;
    }
    assert_int_equal(got, nwant);
    /* END and CORRUPT are sticky. */
    assert_int_equal(eng_log_reader_next(r, &p), rc);
    eng_log_reader_stats(r, st);
    assert_int_equal(st->records, nwant);
    *offset = eng_log_reader_offset(r);
    eng_log_reader_close(r);
    return rc;
}

static uint8_t *file_read(const char *path, size_t *len)
{
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    *len = (size_t)sb.st_size;
    uint8_t *b = malloc(*len ? *len : 1);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, b, *len, 0), (ssize_t)*len);
    close(fd);
    return b;
}

static void file_write(const char *path, const void *p, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    if (len) assert_int_equal(pwrite(fd, p, len, 0), (ssize_t)len);
    close(fd);
}

static void file_pwrite(const char *path, uint64_t off, const void *p,
                        size_t len)
{
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, p, len, (off_t)off), (ssize_t)len);
    close(fd);
}

static void file_flip(const char *path, uint64_t off, int bit)
{
    size_t len;
    uint8_t *b = file_read(path, &len);
    assert_true(off < len);
    uint8_t v = (uint8_t)(b[off] ^ (1u << bit));
    free(b);
    file_pwrite(path, off, &v, 1);
}

static uint64_t file_size(const char *path)
{
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    return (uint64_t)sb.st_size;
}

typedef struct {
    char dir[PATH_MAX];
    char *path; /* dir/wal */
} tdir_t;

static void tdir_open(tdir_t *t, const char *name)
{
    snprintf(t->dir, sizeof t->dir, "%s", test_tmpdir(name));
    t->path = eng_path_join(t->dir, "000001.wal");
}

static void tdir_close(tdir_t *t)
{
    eng_fs_fault_reset();
    kv_free(t->path);
    test_rmrf(t->dir);
}

/* ---- round trips --------------------------------------------------------- */

static void test_log_round_trip_returns_every_record_in_order(void **state)
{
    (void)state;
    tdir_t t;
    tdir_open(&t, "log-roundtrip");
    kv_rng_t rng;
    kv_rng_seed(&rng, test_seed("log round trip"));
    enum { N = 400 };
    size_t lens[N];
    for (size_t i = 0; i < N; i++) {
        uint64_t k = kv_rng_below(&rng, 100);
        lens[i] = k < 5    ? 0
                  : k < 10 ? 1
                  : k < 80 ? kv_rng_below(&rng, 300)
                  : k < 97 ? kv_rng_below(&rng, 70000)
                           : kv_rng_below(&rng, 3u << 20); /* to 3 MiB */
    }
    lens[0] = 0;
    lens[1] = 1;
    lens[2] = 3u << 20;       /* bigger than the reader's 1 MiB chunk */
    lens[3] = (1u << 20) - 16; /* header + payload exactly one chunk */
    recs_t rs = {0};
    recs_build(&rs, t.path, kv_rng_next(&rng), N, lens);
    assert_int_equal(file_size(t.path), rs.size);

    eng_log_read_stats_t st;
    uint64_t off;
    assert_int_equal(read_expect(t.path, false, &rs, NULL, N, &st, &off),
                     KV_NOTFOUND);
    assert_int_equal(off, rs.size);
    assert_false(st.torn);
    assert_int_equal(st.skipped_records, 0);
    /* Salvage mode reads a good log the same way. */
    assert_int_equal(read_expect(t.path, true, &rs, NULL, N, &st, &off),
                     KV_NOTFOUND);
    assert_int_equal(off, rs.size);
    recs_free(&rs);
    tdir_close(&t);
}

static void test_log_empty_log_reads_as_clean_end(void **state)
{
    (void)state;
    tdir_t t;
    tdir_open(&t, "log-empty");
    recs_t rs = {0};
    recs_build_uniform(&rs, t.path, 0, 0);
    assert_int_equal(file_size(t.path), ENG_LOG_HEADER);
    eng_log_read_stats_t st;
    uint64_t off;
    assert_int_equal(read_expect(t.path, false, &rs, NULL, 0, &st, &off),
                     KV_NOTFOUND);
    assert_false(st.torn);
    assert_int_equal(off, ENG_LOG_HEADER);
    recs_free(&rs);
    tdir_close(&t);
}

static void test_log_oversized_record_is_refused(void **state)
{
    (void)state;
    tdir_t t;
    tdir_open(&t, "log-oversized");
    eng_log_writer_t *w = NULL;
    assert_int_equal(eng_log_writer_create(t.path, MAGIC, &w), KV_OK);
    uint8_t b = 0;
    /* Refused before a byte of the payload is touched. */
    assert_int_equal(
        eng_log_writer_add(w, kv_slice(&b, (size_t)ENG_LOG_MAX_RECORD + 1)),
        KV_INVALID);
    assert_int_equal(eng_log_writer_size(w), ENG_LOG_HEADER);
    assert_int_equal(eng_log_writer_add(w, kv_slice(&b, 1)), KV_OK);
    eng_log_writer_close(w);
    assert_int_equal(file_size(t.path), ENG_LOG_HEADER + 17);
    tdir_close(&t);
}

/* ---- torn tails ---------------------------------------------------------- */

/* Cut the log at `cut` (inside the last record) and check the reader stops
 * cleanly at the last record, then cut the torn tail off and re-read. */
static void check_torn_cut(const tdir_t *t, const recs_t *rs,
                           const uint8_t *whole, uint64_t cut)
{
    size_t last = rs->n - 1;
    file_write(t->path, whole, (size_t)cut);
    eng_log_read_stats_t st;
    uint64_t off;
    for (int salvage = 0; salvage < 2; salvage++) {
        assert_int_equal(read_expect(t->path, salvage, rs, NULL, last, &st,
                                     &off),
                         KV_NOTFOUND);
        assert_true(st.torn);
        assert_int_equal(st.torn_offset, rs->off[last]);
        assert_int_equal(st.torn_bytes, cut - rs->off[last]);
        assert_int_equal(off, rs->off[last]);
        assert_int_equal(st.skipped_records, 0);
    }
    assert_int_equal(eng_log_truncate(t->path, st.torn_offset), KV_OK);
    assert_int_equal(file_size(t->path), rs->off[last]);
    assert_int_equal(read_expect(t->path, false, rs, NULL, last, &st, &off),
                     KV_NOTFOUND);
    assert_false(st.torn);
    assert_int_equal(off, rs->off[last]);
}

static void test_log_torn_at_every_byte_of_last_record_is_cut(void **state)
{
    (void)state;
    tdir_t t;
    tdir_open(&t, "log-torn");
    const size_t lens[] = {10, 0, 333, 1, 57};
    recs_t rs = {0};
    recs_build(&rs, t.path, 7, KV_ARRAY_LEN(lens), lens);
    size_t len;
    uint8_t *whole = file_read(t.path, &len);
    uint64_t last = rs.off[rs.n - 1];
    for (uint64_t cut = last + 1; cut < rs.size; cut++)
        check_torn_cut(&t, &rs, whole, cut);

    /* Cut exactly at a record boundary: a clean, shorter log. */
    file_write(t.path, whole, (size_t)last);
    eng_log_read_stats_t st;
    uint64_t off;
    assert_int_equal(read_expect(t.path, false, &rs, NULL, rs.n - 1, &st,
                                 &off),
                     KV_NOTFOUND);
    assert_false(st.torn);

    /* Cutting past the end is refused; the file is left alone. */
    assert_int_equal(eng_log_truncate(t.path, last + 1), KV_INVALID);
    assert_int_equal(file_size(t.path), last);
    free(whole);
    recs_free(&rs);
    tdir_close(&t);
}

static void test_log_torn_inside_a_multi_mib_last_record_is_cut(void **state)
{
    (void)state;
    tdir_t t;
    tdir_open(&t, "log-torn-big");
    const size_t lens[] = {100, (1u << 20) + 5, 3, (5u << 19) + 77};
    recs_t rs = {0};
    recs_build(&rs, t.path, 8, KV_ARRAY_LEN(lens), lens);
    size_t len;
    uint8_t *whole = file_read(t.path, &len);
    uint64_t last = rs.off[rs.n - 1];
    for (uint64_t cut = last + 1; cut <= last + ENG_LOG_RECORD_HEADER; cut++)
        check_torn_cut(&t, &rs, whole, cut);
    kv_rng_t rng;
    kv_rng_seed(&rng, 99);
    for (int i = 0; i < 24; i++)
        check_torn_cut(&t, &rs, whole,
                       last + 1 + kv_rng_below(&rng, rs.size - last - 1));
    check_torn_cut(&t, &rs, whole, rs.size - 1);
    free(whole);
    recs_free(&rs);
    tdir_close(&t);
}

static void check_tail_is_torn(const tdir_t *t, const recs_t *rs,
                               uint64_t good_end)
{
    eng_log_read_stats_t st;
    uint64_t off;
    uint64_t size = file_size(t->path);
    for (int salvage = 0; salvage < 2; salvage++) {
        assert_int_equal(read_expect(t->path, salvage, rs, NULL, rs->n, &st,
                                     &off),
                         KV_NOTFOUND);
        assert_true(st.torn);
        assert_int_equal(st.torn_offset, good_end);
        assert_int_equal(st.torn_bytes, size - good_end);
        assert_int_equal(st.skipped_records, 0);
        assert_int_equal(off, good_end);
    }
}

/* The file size reached the disk, the data did not: zeroes after the last
 * record are a torn tail, whatever their length. */
static void test_log_zeroed_tail_is_a_torn_tail(void **state)
{
    (void)state;
    tdir_t t;
    tdir_open(&t, "log-zeroes");
    const size_t zl[] = {1, 15, 16, 17, 100, 4096, (1u << 20) + 3};
    recs_t rs = {0};
    for (size_t i = 0; i < KV_ARRAY_LEN(zl); i++) {
        recs_build_uniform(&rs, t.path, 6, 40);
        uint8_t *z = calloc(1, zl[i]);
        file_pwrite(t.path, rs.size, z, zl[i]);
        free(z);
        check_tail_is_torn(&t, &rs, rs.size);
        recs_free(&rs);
    }
    tdir_close(&t);
}

/* The last record's header reached the disk but its payload came back as
 * zeroes, followed by more zeroes: still a torn tail. */
static void test_log_zeroed_last_payload_then_zeroes_is_torn(void **state)
{
    (void)state;
    tdir_t t;
    tdir_open(&t, "log-zero-payload");
    recs_t rs = {0};
    recs_build_uniform(&rs, t.path, 6, 300);
    uint64_t last = rs.off[5];
    uint8_t z[1000] = {0};
    file_pwrite(t.path, last + ENG_LOG_RECORD_HEADER + 100, z, sizeof z);
    rs.n = 5; /* the last record is gone */
    check_tail_is_torn(&t, &rs, last);
    rs.n = 6;
    recs_free(&rs);
    tdir_close(&t);
}

static void test_log_garbage_tail_is_a_torn_tail(void **state)
{
    (void)state;
    tdir_t t;
    tdir_open(&t, "log-garbage");
    kv_rng_t rng;
    kv_rng_seed(&rng, test_seed("log garbage tail"));
    recs_t rs = {0};
    for (int i = 0; i < 40; i++) {
        recs_build_uniform(&rs, t.path, 5, (size_t)kv_rng_below(&rng, 200));
        size_t n = 1 + (size_t)kv_rng_below(&rng, i < 35 ? 3000 : 300000);
        uint8_t *g = malloc(n);
        for (size_t j = 0; j < n; j++) g[j] = (uint8_t)kv_rng_next(&rng);
        file_pwrite(t.path, rs.size, g, n);
        free(g);
        check_tail_is_torn(&t, &rs, rs.size);
        recs_free(&rs);
    }
    tdir_close(&t);
}

/* ---- corruption ---------------------------------------------------------- */

/* Record `bad` of a 10-record log was damaged: strict reading stops with
 * KV_CORRUPT naming the file and offset; salvage skips just that record. */
static void check_middle_corrupt(const tdir_t *t, const recs_t *rs, size_t bad)
{
    eng_log_read_stats_t st;
    uint64_t off;
    kv_errmsg_clear();
    assert_int_equal(read_expect(t->path, false, rs, NULL, bad, &st, &off),
                     KV_CORRUPT);
    char want[64];
    snprintf(want, sizeof want, "offset %llu",
             (unsigned long long)rs->off[bad]);
    assert_non_null(strstr(kv_errmsg(), t->path));
    assert_non_null(strstr(kv_errmsg(), want));
    assert_non_null(strstr(kv_errmsg(), "corrupt record"));
    assert_false(st.torn);
    assert_int_equal(off, rs->off[bad]);

    size_t want_idx[64];
    size_t n = 0;
    for (size_t i = 0; i < rs->n; i++)
        if (i != bad) want_idx[n++] = i;
    assert_int_equal(read_expect(t->path, true, rs, want_idx, n, &st, &off),
                     KV_NOTFOUND);
    assert_false(st.torn);
    assert_int_equal(st.skipped_records, 1);
    assert_int_equal(st.skipped_bytes, rs->off[bad + 1] - rs->off[bad]);
    assert_int_equal(off, rs->size);
}

static void test_log_payload_flip_in_middle_record_is_corruption(void **state)
{
    (void)state;
    tdir_t t;
    tdir_open(&t, "log-flip-payload");
    recs_t rs = {0};
    for (int bit = 0; bit < 8; bit += 3) {
        recs_build_uniform(&rs, t.path, 10, 100);
        file_flip(t.path, rs.off[4] + ENG_LOG_RECORD_HEADER + 37, bit);
        check_middle_corrupt(&t, &rs, 4);
        recs_free(&rs);
    }
    tdir_close(&t);
}

/* Every bit of the len, hcrc and pcrc fields of a middle record. */
static void test_log_header_flip_in_middle_record_is_corruption(void **state)
{
    (void)state;
    tdir_t t;
    tdir_open(&t, "log-flip-header");
    recs_t rs = {0};
    recs_build_uniform(&rs, t.path, 10, 100);
    size_t len;
    uint8_t *whole = file_read(t.path, &len);
    for (int byte = 0; byte < ENG_LOG_RECORD_HEADER; byte++) {
        for (int bit = 0; bit < 8; bit++) {
            file_write(t.path, whole, len);
            file_flip(t.path, rs.off[6] + (uint64_t)byte, bit);
            check_middle_corrupt(&t, &rs, 6);
        }
    }
    free(whole);
    recs_free(&rs);
    tdir_close(&t);
}

static void test_log_two_bad_regions_are_both_skipped_by_salvage(void **state)
{
    (void)state;
    tdir_t t;
    tdir_open(&t, "log-two-bad");
    recs_t rs = {0};
    recs_build_uniform(&rs, t.path, 12, 64);
    file_flip(t.path, rs.off[2] + 1, 0);                       /* len */
    file_flip(t.path, rs.off[7] + ENG_LOG_RECORD_HEADER, 4);   /* payload */
    file_flip(t.path, rs.off[8] + ENG_LOG_RECORD_HEADER + 9, 1);
    const size_t want[] = {0, 1, 3, 4, 5, 6, 9, 10, 11};
    eng_log_read_stats_t st;
    uint64_t off;
    assert_int_equal(read_expect(t.path, true, &rs, want, KV_ARRAY_LEN(want),
                                 &st, &off),
                     KV_NOTFOUND);
    /* 7 and 8 are adjacent, but each is found bad on its own. */
    assert_int_equal(st.skipped_records, 3);
    assert_int_equal(st.skipped_bytes, 3 * (ENG_LOG_RECORD_HEADER + 64));
    assert_false(st.torn);
    recs_free(&rs);
    tdir_close(&t);
}

/* Empty records are whole in their 16-byte header; the search for a valid
 * record after a bad one must still find them. */
static void test_log_empty_records_after_a_bad_one_make_it_corrupt(void **state)
{
    (void)state;
    tdir_t t;
    tdir_open(&t, "log-empty-after-bad");
    const size_t lens[] = {5, 100, 0, 0};
    recs_t rs = {0};
    recs_build(&rs, t.path, 11, KV_ARRAY_LEN(lens), lens);
    file_flip(t.path, rs.off[1] + 4, 3); /* hcrc */
    eng_log_read_stats_t st;
    uint64_t off;
    assert_int_equal(read_expect(t.path, false, &rs, NULL, 1, &st, &off),
                     KV_CORRUPT);
    const size_t want[] = {0, 2, 3};
    assert_int_equal(read_expect(t.path, true, &rs, want, 3, &st, &off),
                     KV_NOTFOUND);
    assert_int_equal(st.skipped_records, 1);
    assert_int_equal(st.skipped_bytes, ENG_LOG_RECORD_HEADER + 100);
    recs_free(&rs);
    tdir_close(&t);
}

static void test_log_payload_flip_in_last_record_is_a_torn_tail(void **state)
{
    (void)state;
    tdir_t t;
    tdir_open(&t, "log-flip-last");
    recs_t rs = {0};
    recs_build_uniform(&rs, t.path, 10, 100);
    file_flip(t.path, rs.size - 1, 7);
    rs.n = 9;
    check_tail_is_torn(&t, &rs, rs.off[9]);
    rs.n = 10;
    recs_free(&rs);
    tdir_close(&t);
}

/* A payload is opaque, even when it happens to hold bytes that look like a
 * valid record header at their own offset: once a record's header checks
 * out its length is trusted, so a bad payload in the last record is still
 * a torn tail, not "corruption followed by a valid record". */
static void test_log_header_lookalike_inside_last_payload_is_torn(void **state)
{
    (void)state;
    tdir_t t;
    tdir_open(&t, "log-lookalike");
    recs_t rs = {0};
    recs_build_uniform(&rs, t.path, 3, 30);
    eng_log_writer_t *w = NULL;
    /* Rewrite the log with a fourth record whose payload embeds one. */
    assert_int_equal(eng_log_writer_create(t.path, MAGIC, &w), KV_OK);
    for (size_t i = 0; i < rs.n; i++)
        assert_int_equal(eng_log_writer_add(w, kv_slice(rs.data[i], rs.len[i])),
                         KV_OK);
    uint64_t last = eng_log_writer_size(w);
    uint8_t p[200] = {0};
    uint64_t fake = last + ENG_LOG_RECORD_HEADER + 40;
    uint8_t hb[12];
    kv_put_le32(hb, 20);
    kv_put_le64(hb + 4, fake);
    kv_put_le32(p + 40, 20);
    kv_put_le32(p + 44, (uint32_t)XXH3_64bits(hb, sizeof hb));
    assert_int_equal(eng_log_writer_add(w, kv_slice(p, sizeof p)), KV_OK);
    eng_log_writer_close(w);
    file_flip(t.path, last + ENG_LOG_RECORD_HEADER + 150, 0);
    check_tail_is_torn(&t, &rs, last);
    recs_free(&rs);
    tdir_close(&t);
}

static void test_log_bad_file_header_is_corruption(void **state)
{
    (void)state;
    tdir_t t;
    tdir_open(&t, "log-file-header");
    recs_t rs = {0};
    recs_build_uniform(&rs, t.path, 3, 10);
    size_t len;
    uint8_t *whole = file_read(t.path, &len);
    eng_log_reader_t *r = NULL;

    /* Another log kind's magic. */
    assert_int_equal(eng_log_reader_open(t.path, "CAIRNMAN", false, &r),
                     KV_CORRUPT);
    assert_null(r);
    assert_non_null(strstr(kv_errmsg(), t.path));
    file_flip(t.path, 3, 2);
    assert_int_equal(eng_log_reader_open(t.path, MAGIC, true, &r), KV_CORRUPT);
    assert_non_null(strstr(kv_errmsg(), t.path));

    /* Version 2. */
    file_write(t.path, whole, len);
    file_pwrite(t.path, 8, "\x02\0\0\0", 4);
    assert_int_equal(eng_log_reader_open(t.path, MAGIC, false, &r), KV_CORRUPT);
    assert_non_null(strstr(kv_errmsg(), t.path));
    assert_non_null(strstr(kv_errmsg(), "version"));
    assert_null(r);

    /* A missing file is not an empty log. */
    assert_int_equal(eng_log_reader_open("/nonexistent/wal", MAGIC, false, &r),
                     KV_NOTFOUND);
    free(whole);
    recs_free(&rs);
    tdir_close(&t);
}

static void test_log_file_shorter_than_header_is_empty_and_torn(void **state)
{
    (void)state;
    tdir_t t;
    tdir_open(&t, "log-short");
    recs_t rs = {0};
    recs_build_uniform(&rs, t.path, 1, 10);
    size_t len;
    uint8_t *whole = file_read(t.path, &len);
    for (size_t cut = 0; cut < ENG_LOG_HEADER; cut++) {
        file_write(t.path, whole, cut);
        eng_log_read_stats_t st;
        uint64_t off;
        assert_int_equal(read_expect(t.path, false, &rs, NULL, 0, &st, &off),
                         KV_NOTFOUND);
        assert_true(st.torn);
        assert_int_equal(st.torn_offset, 0);
        assert_int_equal(st.torn_bytes, cut);
        assert_int_equal(off, 0);
    }
    free(whole);
    recs_free(&rs);
    tdir_close(&t);
}

/* hcrc covers the offset: a record's bytes at any other offset -- a stale
 * copy, a duplicated write, a shifted region -- never validate. */
static void test_log_record_moved_to_another_offset_is_rejected(void **state)
{
    (void)state;
    tdir_t t;
    tdir_open(&t, "log-moved");
    recs_t rs = {0};
    recs_build_uniform(&rs, t.path, 8, 50);
    size_t len;
    uint8_t *whole = file_read(t.path, &len);
    const uint8_t *rec2 = whole + rs.off[2];
    size_t rec_len = ENG_LOG_RECORD_HEADER + 50;
    eng_log_read_stats_t st;
    uint64_t off;

    /* Record 2 appended again at the end: not a record, a torn tail. */
    file_pwrite(t.path, rs.size, rec2, rec_len);
    check_tail_is_torn(&t, &rs, rs.size);

    /* Record 2 written over record 5 (same length): corruption, and
     * salvage never hands out record 2's payload a second time. */
    file_write(t.path, whole, len);
    file_pwrite(t.path, rs.off[5], rec2, rec_len);
    check_middle_corrupt(&t, &rs, 5);

    /* A record shifted by one byte, and everything after it: the shifted
     * records are not valid anywhere, so this is a torn tail at record 3. */
    uint8_t *shifted = malloc(len + 1);
    memcpy(shifted, whole, (size_t)rs.off[3]);
    shifted[rs.off[3]] = 0x5a;
    memcpy(shifted + rs.off[3] + 1, whole + rs.off[3], len - rs.off[3]);
    file_write(t.path, shifted, len + 1);
    free(shifted);
    assert_int_equal(read_expect(t.path, true, &rs, NULL, 3, &st, &off),
                     KV_NOTFOUND);
    assert_true(st.torn);
    assert_int_equal(st.torn_offset, rs.off[3]);
    free(whole);
    recs_free(&rs);
    tdir_close(&t);
}

/* ---- faults -------------------------------------------------------------- */

static void test_log_disk_full_cuts_back_to_last_whole_record(void **state)
{
    (void)state;
    tdir_t t;
    tdir_open(&t, "log-nospace");
    kv_rng_t rng;
    kv_rng_seed(&rng, 3);
    const size_t lens[] = {100, 200, 0, 300, 100000, 5, 777};
    recs_t rs = {0};
    recs_make(&rs, &rng, KV_ARRAY_LEN(lens), lens);

    eng_log_writer_t *w = NULL;
    assert_int_equal(eng_log_writer_create(t.path, MAGIC, &w), KV_OK);
    for (size_t i = 0; i < 3; i++) {
        rs.off[i] = eng_log_writer_size(w);
        assert_int_equal(eng_log_writer_add(w, kv_slice(rs.data[i], rs.len[i])),
                         KV_OK);
    }
    uint64_t before = eng_log_writer_size(w);
    /* Room for nothing, part of the header, the header and part of the
     * payload, all but the last byte. */
    const int64_t room[] = {0, 7, 16, 20, 100000 + 15};
    for (size_t i = 0; i < KV_ARRAY_LEN(room); i++) {
        eng_fs_fault_nospace_after(room[i]);
        assert_int_equal(eng_log_writer_add(w, kv_slice(rs.data[4], rs.len[4])),
                         KV_NOSPACE);
        assert_int_equal(eng_log_writer_size(w), before);
        assert_int_equal(file_size(t.path), before);
        eng_log_read_stats_t st;
        uint64_t off;
        assert_int_equal(read_expect(t.path, false, &rs, NULL, 3, &st, &off),
                         KV_NOTFOUND);
        assert_false(st.torn);
        assert_int_equal(off, before);
    }
    /* Space comes back: the writer goes on where it was. */
    eng_fs_fault_reset();
    for (size_t i = 3; i < rs.n; i++) {
        rs.off[i] = eng_log_writer_size(w);
        assert_int_equal(eng_log_writer_add(w, kv_slice(rs.data[i], rs.len[i])),
                         KV_OK);
    }
    assert_int_equal(eng_log_writer_sync(w), KV_OK);
    rs.size = eng_log_writer_size(w);
    eng_log_writer_close(w);
    eng_log_read_stats_t st;
    uint64_t off;
    assert_int_equal(read_expect(t.path, false, &rs, NULL, rs.n, &st, &off),
                     KV_NOTFOUND);
    assert_false(st.torn);
    assert_int_equal(off, rs.size);

    /* A disk too full for the file header: create fails. */
    eng_fs_fault_nospace_after(10);
    w = NULL;
    assert_int_equal(eng_log_writer_create(t.path, MAGIC, &w), KV_NOSPACE);
    assert_null(w);
    eng_fs_fault_reset();
    recs_free(&rs);
    tdir_close(&t);
}

/* After a failed fdatasync the kernel may have dropped the dirty pages and
 * will not say so again: the writer refuses to go on. */
static void test_log_failed_sync_leaves_the_writer_unusable(void **state)
{
    (void)state;
    tdir_t t;
    tdir_open(&t, "log-syncfail");
    eng_log_writer_t *w = NULL;
    assert_int_equal(eng_log_writer_create(t.path, MAGIC, &w), KV_OK);
    assert_int_equal(eng_log_writer_add(w, kv_slice_str("one")), KV_OK);
    eng_fs_fault_sync_fails(true);
    assert_int_equal(eng_log_writer_sync(w), KV_IO);
    eng_fs_fault_reset();
    uint64_t size = eng_log_writer_size(w);
    assert_int_equal(eng_log_writer_add(w, kv_slice_str("two")), KV_IO);
    assert_int_equal(eng_log_writer_sync(w), KV_IO);
    assert_int_equal(eng_log_writer_size(w), size);
    eng_log_writer_close(w);
    tdir_close(&t);
}

/* ---- random corruption --------------------------------------------------- */

/* Seeded: damage a log in random ways (bit flips, truncation, zeroed or
 * random ranges, garbage appended) and read it both ways. Strict reading
 * returns a prefix of what was written; salvage returns a subsequence;
 * neither ever returns a payload that differs from one written. */
static void test_log_random_corruption_never_returns_a_bad_record(void **state)
{
    (void)state;
    tdir_t t;
    tdir_open(&t, "log-random");
    kv_rng_t rng;
    kv_rng_seed(&rng, test_seed("log random corruption"));
    enum { N = 60, ROUNDS = 1500 };
    size_t lens[N];
    for (size_t i = 0; i < N; i++)
        lens[i] = kv_rng_below(&rng, 10) == 0 ? kv_rng_below(&rng, 5000)
                                              : kv_rng_below(&rng, 120);
    recs_t rs = {0};
    recs_build(&rs, t.path, kv_rng_next(&rng), N, lens);
    size_t len;
    uint8_t *whole = file_read(t.path, &len);
    uint8_t *buf = malloc(len + 70000);

    for (int round = 0; round < ROUNDS; round++) {
        size_t n = len;
        memcpy(buf, whole, len);
        int nmut = 1 + (int)kv_rng_below(&rng, 4);
        bool only_cut = true;
        for (int m = 0; m < nmut && n > 0; m++) {
            uint64_t kind = kv_rng_below(&rng, 5);
            size_t at = (size_t)kv_rng_below(&rng, n);
            size_t span = KV_MIN(n - at, 1 + (size_t)kv_rng_below(&rng, 64));
            if (kind != 1) only_cut = false;
            switch (kind) {
            case 0: buf[at] ^= (uint8_t)(1u << kv_rng_below(&rng, 8)); break;
            case 1: n = at; break;
            case 2: memset(buf + at, 0, span); break;
            case 3:
                for (size_t j = 0; j < span; j++)
                    buf[at + j] = (uint8_t)kv_rng_next(&rng);
                break;
            default: {
                size_t g = (size_t)kv_rng_below(&rng, 65536);
                g = KV_MIN(g, len + 65536 - n); /* stay inside buf */
                for (size_t j = 0; j < g; j++)
                    buf[n + j] = (uint8_t)kv_rng_next(&rng);
                n += g;
                break;
            }
            }
        }
        file_write(t.path, buf, n);

        for (int salvage = 0; salvage < 2; salvage++) {
            eng_log_reader_t *r = NULL;
            kv_status_t rc = eng_log_reader_open(t.path, MAGIC, salvage, &r);
            if (rc != KV_OK) {
                assert_int_equal(rc, KV_CORRUPT); /* file header damaged */
                assert_true(n >= ENG_LOG_HEADER);
                continue;
            }
            kv_slice_t p;
            size_t next = 0, got = 0;
            while ((rc = eng_log_reader_next(r, &p)) == KV_OK) {
                if (!salvage) {
                    assert_true(rec_is(&rs, next, p));
                    next++;
                } else {
                    while (next < rs.n && !rec_is(&rs, next, p)) next++;
                    assert_true(next < rs.n); /* in written order */
                    next++;
                }
                got++;
            }
            assert_true(rc == KV_NOTFOUND || (rc == KV_CORRUPT && !salvage));
            eng_log_read_stats_t st;
            eng_log_reader_stats(r, &st);
            assert_int_equal(st.records, got);
            if (only_cut && !salvage) {
                /* A plain truncation: every whole record, then the end. */
                size_t whole_recs = 0;
                while (whole_recs < rs.n &&
                       rs.off[whole_recs] + ENG_LOG_RECORD_HEADER +
                               rs.len[whole_recs] <=
                           n)
                    whole_recs++;
                assert_int_equal(rc, KV_NOTFOUND);
                if (n >= ENG_LOG_HEADER) assert_int_equal(got, whole_recs);
            }
            eng_log_reader_close(r);
        }
    }
    free(buf);
    free(whole);
    recs_free(&rs);
    tdir_close(&t);
}

/* A failed assertion skips the test's own cleanup: never let an injected
 * fault leak into the next test. */
static int faults_off(void **state)
{
    (void)state;
    eng_fs_fault_reset();
    return 0;
}

int main(void)
{
    kv_log_set_level(KV_LOG_ERROR); /* salvage warns once per skipped region */
#define T(f) cmocka_unit_test_teardown(f, faults_off)
    const struct CMUnitTest tests[] = {
        T(test_log_round_trip_returns_every_record_in_order),
        T(test_log_empty_log_reads_as_clean_end),
        T(test_log_oversized_record_is_refused),
        T(test_log_torn_at_every_byte_of_last_record_is_cut),
        T(test_log_torn_inside_a_multi_mib_last_record_is_cut),
        T(test_log_zeroed_tail_is_a_torn_tail),
        T(test_log_zeroed_last_payload_then_zeroes_is_torn),
        T(test_log_garbage_tail_is_a_torn_tail),
        T(test_log_payload_flip_in_middle_record_is_corruption),
        T(test_log_header_flip_in_middle_record_is_corruption),
        T(test_log_two_bad_regions_are_both_skipped_by_salvage),
        T(test_log_empty_records_after_a_bad_one_make_it_corrupt),
        T(test_log_payload_flip_in_last_record_is_a_torn_tail),
        T(test_log_header_lookalike_inside_last_payload_is_torn),
        T(test_log_bad_file_header_is_corruption),
        T(test_log_file_shorter_than_header_is_empty_and_torn),
        T(test_log_record_moved_to_another_offset_is_rejected),
        T(test_log_disk_full_cuts_back_to_last_whole_record),
        T(test_log_failed_sync_leaves_the_writer_unusable),
        T(test_log_random_corruption_never_returns_a_bad_record),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
