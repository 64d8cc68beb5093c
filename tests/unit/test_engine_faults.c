/* test_engine_faults.c -- damaged files on disk give a clear error that
 * names the file, never a crash and never a wrong answer.
 *
 * Each test builds a small store through the public API, closes it, damages
 * one file the way a disk or a crash would (a torn tail, a flipped bit, a
 * cut or missing file, stray files), and reopens. Files are found by
 * listing the directory: NNNNNN.wal, NNNNNN.sst, MANIFEST-NNNNNN, CURRENT.
 * The last test makes fdatasync fail under group commit.
 */
#include "engine_test_util.h"

#include <fcntl.h>
#include <pthread.h>
#include <xxhash.h>

#define TS(n) hlc_make(1763700000000ULL + (n), 0)

/* ---- building stores ---------------------------------------------------- */

static void key_of(int i, char *k, size_t cap) { snprintf(k, cap, "key-%06d", i); }

/* value-<i>-<gen> padded to a length that varies with i. */
static void value_of(int i, int gen, char *v, size_t cap)
{
    int n = snprintf(v, cap, "value-%06d-%d-", i, gen);
    int pad = (i * 37) % 60;
    for (int j = 0; j < pad && (size_t)n + 1 < cap; j++) v[n++] = (char)('a' + (i + j) % 26);
    v[n] = '\0';
}

static void put_keys(eng_t *e, int from, int to, int gen)
{
    char k[32], v[128];
    for (int i = from; i < to; i++) {
        key_of(i, k, sizeof k);
        value_of(i, gen, v, sizeof v);
        kv_status_t rc = put_s(e, k, v, TS(gen));
        if (rc != KV_OK) fail_msg("put %s: %s: %s", k, kv_status_str(rc), kv_errmsg());
    }
}

static void check_keys(eng_t *e, int from, int to, int gen)
{
    char k[32], v[128];
    for (int i = from; i < to; i++) {
        key_of(i, k, sizeof k);
        value_of(i, gen, v, sizeof v);
        expect_kv(e, k, v);
    }
}

/* A read of key i: KV_OK with exactly the value of gen, or the status. */
static kv_status_t read_key(eng_t *e, int i, int gen)
{
    char k[32], v[128];
    key_of(i, k, sizeof k);
    value_of(i, gen, v, sizeof v);
    eng_value_t out = {0};
    kv_status_t rc = eng_get(e, NULL, kv_slice_str(k), &out);
    if (rc == KV_OK) {
        if (out.tombstone || out.value.len != strlen(v) || memcmp(out.value.data, v, out.value.len))
            fail_msg("key %s: a wrong answer (%zu bytes)", k, out.value.len);
        eng_value_free(&out);
    }
    return rc;
}

static void group_options(eng_options_t *o, const char *dir)
{
    small_options(o, dir);
    o->sync = ENG_SYNC_GROUP;
}

/* ---- files --------------------------------------------------------------- */

/* The store file NNNNNN.<ext> with the highest number (ext "wal", "sst"),
 * or the MANIFEST-NNNNNN with the highest number (ext "MANIFEST"). */
static bool find_newest(const char *dir, const char *ext, char *out, size_t cap)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *ent;
    unsigned long long best = 0;
    bool found = false;
    bool manifest = strcmp(ext, "MANIFEST") == 0;
    while ((ent = readdir(d)) != NULL) {
        const char *n = ent->d_name;
        char *end = NULL;
        unsigned long long no;
        if (manifest) {
            if (strncmp(n, "MANIFEST-", 9) != 0) continue;
            no = strtoull(n + 9, &end, 10);
            if (*end) continue;
        } else {
            if (n[0] < '0' || n[0] > '9') continue;
            no = strtoull(n, &end, 10);
            if (*end != '.' || strcmp(end + 1, ext) != 0) continue;
        }
        if (!found || no > best) {
            best = no;
            found = true;
            snprintf(out, cap, "%s/%s", dir, n);
        }
    }
    closedir(d);
    return found;
}

static void newest(const char *dir, const char *ext, char *out, size_t cap)
{
    if (!find_newest(dir, ext, out, cap)) fail_msg("no %s file in %s", ext, dir);
}

static int count_files(const char *dir, const char *ext)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *ent;
    int n = 0;
    size_t el = strlen(ext);
    while ((ent = readdir(d)) != NULL) {
        size_t l = strlen(ent->d_name);
        if (l > el && ent->d_name[l - el - 1] == '.' && strcmp(ent->d_name + l - el, ext) == 0)
            n++;
    }
    closedir(d);
    return n;
}

static bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static uint64_t file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (uint64_t)st.st_size;
}

static void read_at(const char *path, uint64_t off, void *p, size_t n)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, p, n, (off_t)off), (ssize_t)n);
    close(fd);
}

static void write_at(const char *path, uint64_t off, const void *p, size_t n)
{
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, p, n, (off_t)off), (ssize_t)n);
    close(fd);
}

static void flip_bit(const char *path, uint64_t off)
{
    uint8_t b;
    read_at(path, off, &b, 1);
    b ^= 0x10;
    write_at(path, off, &b, 1);
}

static void cut_to(const char *path, uint64_t size) { assert_int_equal(truncate(path, (off_t)size), 0); }

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}

static void copy_file(const char *from, const char *to)
{
    uint64_t n = file_size(from);
    uint8_t *buf = malloc(n ? n : 1);
    assert_non_null(buf);
    read_at(from, 0, buf, n);
    write_file(to, buf, n);
    free(buf);
}

/* Record boundaries of a log file (log.h): starts[i] is record i's header. */
static size_t log_records(const char *path, uint64_t *starts, uint32_t *lens, size_t max)
{
    uint64_t size = file_size(path), off = 16;
    size_t n = 0;
    while (off + 16 <= size && n < max) {
        uint8_t h[4];
        read_at(path, off, h, 4);
        uint32_t len = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 |
                       (uint32_t)h[3] << 24;
        if (off + 16 + len > size) break;
        starts[n] = off;
        lens[n++] = len;
        off += 16 + len;
    }
    return n;
}

/* eng_open must fail with `want`, and kv_errmsg() must hold each of the
 * non-NULL strings. */
static void expect_open_fails(const eng_options_t *o, kv_status_t want, const char *s1,
                              const char *s2)
{
    eng_t *e = NULL;
    kv_errmsg_clear();
    kv_status_t rc = eng_open(o, &e);
    if (rc == KV_OK) {
        eng_close(e);
        fail_msg("eng_open succeeded; expected %s naming %s", kv_status_str(want), s1);
    }
    const char *msg = kv_errmsg();
    print_message("  eng_open: %s: %s\n", kv_status_str(rc), msg);
    if (rc != want) fail_msg("eng_open: %s, expected %s (%s)", kv_status_str(rc),
                             kv_status_str(want), msg);
    if (s1 && !strstr(msg, s1)) fail_msg("message \"%s\" does not name %s", msg, s1);
    if (s2 && !strstr(msg, s2)) fail_msg("message \"%s\" does not say %s", msg, s2);
}

/* ---- the WAL ------------------------------------------------------------- */

/* The file ends inside the last record: the record is cut, counted once,
 * everything before it is there, and the cut is durable. */
static void test_engine_faults_torn_wal_tail_is_cut_and_counted(void **state)
{
    (void)state;
    /* cut points, as bytes kept of the last record: inside its header,
     * just after the header, in the payload, one byte short */
    const int keep[] = {1, 8, 15, 16, 17, -200, -1};
    for (size_t c = 0; c < KV_ARRAY_LEN(keep); c++) {
        const char *dir = test_tmpdir("eng-torn-wal");
        eng_options_t o;
        group_options(&o, dir);
        eng_t *e = open_or_die(&o);
        put_keys(e, 0, 50, 1);
        char big[1024];
        memset(big, 'z', sizeof big - 1);
        big[sizeof big - 1] = '\0';
        assert_int_equal(put_s(e, "last", big, TS(2)), KV_OK); /* the last record */
        eng_close(e);

        char wal[PATH_MAX];
        newest(dir, "wal", wal, sizeof wal);
        uint64_t starts[128];
        uint32_t lens[128];
        size_t n = log_records(wal, starts, lens, 128);
        assert_int_equal(n, 51);
        uint64_t rec = starts[n - 1], end = rec + 16 + lens[n - 1];
        assert_int_equal(end, file_size(wal));
        uint64_t at = keep[c] > 0 ? rec + (uint64_t)keep[c] : end - (uint64_t)-keep[c];
        print_message("  cut %s at %" PRIu64 " (record %" PRIu64 "..%" PRIu64 ")\n",
                      base_name(wal), at, rec, end);
        cut_to(wal, at);

        e = open_or_die(&o);
        eng_stats_t st;
        eng_get_stats(e, &st);
        assert_int_equal(st.wal_torn_tails, 1);
        assert_int_equal(st.wal_torn_bytes, at - rec);
        check_keys(e, 0, 50, 1);
        expect_kv(e, "last", NULL);
        put_keys(e, 50, 60, 1); /* writes go on */
        eng_close(e);

        e = open_or_die(&o); /* the cut was made durable: nothing torn now */
        eng_get_stats(e, &st);
        assert_int_equal(st.wal_torn_tails, 0);
        check_keys(e, 0, 60, 1);
        expect_kv(e, "last", NULL);
        eng_close(e);
        test_rmrf(dir);
    }
}

/* Build a store of 100 WAL records (one key each) and flip a bit in the
 * middle one's payload or header. Returns which key's record was hit. */
static int wal_with_flip(const char *dir, bool in_header, char *wal, size_t cap)
{
    eng_options_t o;
    group_options(&o, dir);
    eng_t *e = open_or_die(&o);
    put_keys(e, 0, 100, 1);
    eng_close(e);
    newest(dir, "wal", wal, cap);
    uint64_t starts[128];
    uint32_t lens[128];
    assert_int_equal(log_records(wal, starts, lens, 128), 100);
    int hit = 50;
    flip_bit(wal, starts[hit] + (in_header ? 2 : 16 + lens[hit] / 2));
    return hit;
}

/* A damaged record with good records after it is corruption, not a torn
 * tail: open fails naming the WAL and the offset. */
static void test_engine_faults_wal_bit_flip_fails_open_naming_file_and_offset(void **state)
{
    (void)state;
    for (int in_header = 0; in_header < 2; in_header++) {
        const char *dir = test_tmpdir("eng-wal-flip");
        char wal[PATH_MAX];
        wal_with_flip(dir, in_header, wal, sizeof wal);
        eng_options_t o;
        group_options(&o, dir);
        expect_open_fails(&o, KV_CORRUPT, base_name(wal), "offset");
        expect_open_fails(&o, KV_CORRUPT, base_name(wal), "offset"); /* and stays so */
        test_rmrf(dir);
    }
}

/* With salvage the damaged record is skipped and everything else is read. */
static void test_engine_faults_wal_bit_flip_is_skipped_with_salvage(void **state)
{
    (void)state;
    for (int in_header = 0; in_header < 2; in_header++) {
        const char *dir = test_tmpdir("eng-wal-salvage");
        char wal[PATH_MAX];
        int hit = wal_with_flip(dir, in_header, wal, sizeof wal);
        eng_options_t o;
        group_options(&o, dir);
        o.salvage = true;
        eng_t *e = open_or_die(&o);
        check_keys(e, 0, hit, 1);
        check_keys(e, hit + 1, 100, 1);
        char k[32];
        key_of(hit, k, sizeof k);
        expect_kv(e, k, NULL);
        assert_int_equal(eng_flush(e), KV_OK); /* the salvaged state is now tables */
        eng_close(e);
        o.salvage = false;
        e = open_or_die(&o);
        check_keys(e, 0, hit, 1);
        check_keys(e, hit + 1, 100, 1);
        eng_close(e);
        test_rmrf(dir);
    }
}

/* ---- SSTables ------------------------------------------------------------ */

#define SST_KEYS 600

/* A store whose data is in exactly one table (and nothing in the WAL). */
static void store_with_one_table(const char *dir, char *sst, size_t cap)
{
    eng_options_t o;
    group_options(&o, dir);
    o.memtable_bytes = 1 << 20; /* one flush, one table */
    eng_t *e = open_or_die(&o);
    put_keys(e, 0, SST_KEYS, 1);
    assert_int_equal(eng_flush(e), KV_OK);
    eng_close(e);
    assert_int_equal(count_files(dir, "sst"), 1);
    newest(dir, "sst", sst, cap);
}

typedef struct sst_layout {
    uint64_t filter_off, filter_size, props_off, props_size, index_off, index_size;
    uint64_t footer_off;
} sst_layout_t;

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static sst_layout_t sst_layout(const char *path)
{
    uint8_t f[64];
    sst_layout_t l;
    l.footer_off = file_size(path) - 64;
    read_at(path, l.footer_off, f, sizeof f);
    assert_memory_equal(f + 56, "CAIRNSST", 8);
    l.filter_off = le64(f);
    l.filter_size = le64(f + 8);
    l.props_off = le64(f + 16);
    l.props_size = le64(f + 24);
    l.index_off = le64(f + 32);
    l.index_size = le64(f + 40);
    assert_true(l.filter_size > 0 && l.props_size > 0 && l.index_size > 0);
    return l;
}

/* Damage in a data block is found when a read touches it: those reads and
 * the scan answer KV_CORRUPT naming the table, the other keys still read,
 * and nothing ever reads as a wrong value or as absent. */
static void test_engine_faults_sst_data_block_damage_fails_reads_that_touch_it(void **state)
{
    (void)state;
    const char *dir = test_tmpdir("eng-sst-data");
    char sst[PATH_MAX];
    store_with_one_table(dir, sst, sizeof sst);
    sst_layout_t l = sst_layout(sst);
    assert_true(l.filter_off > 4096); /* several data blocks */
    flip_bit(sst, l.filter_off / 2);

    eng_options_t o;
    group_options(&o, dir);
    eng_t *e = open_or_die(&o);
    for (int pass = 0; pass < 2; pass++) { /* the second from the cache */
        int ok = 0, corrupt = 0;
        for (int i = 0; i < SST_KEYS; i++) {
            kv_errmsg_clear();
            kv_status_t rc = read_key(e, i, 1);
            if (rc == KV_OK) {
                ok++;
            } else {
                if (rc != KV_CORRUPT) fail_msg("key %d: %s", i, kv_status_str(rc));
                if (!strstr(kv_errmsg(), base_name(sst)))
                    fail_msg("message \"%s\" does not name %s", kv_errmsg(), base_name(sst));
                corrupt++;
            }
        }
        print_message("  pass %d: %d keys read, %d corrupt\n", pass, ok, corrupt);
        assert_true(corrupt > 0);
        assert_true(ok > SST_KEYS / 2);
    }
    eng_iter_t *it = eng_iter_create(e, NULL, 0, UINT64_MAX);
    int n = 0;
    for (eng_iter_seek_first(it); eng_iter_valid(it); eng_iter_next(it)) n++;
    assert_int_equal(eng_iter_status(it), KV_CORRUPT);
    assert_non_null(strstr(kv_errmsg(), base_name(sst)));
    assert_true(n < SST_KEYS);
    eng_iter_destroy(it);

    /* compacting over the damage fails and loses nothing readable */
    assert_int_equal(eng_compact_range(e, 0, UINT64_MAX), KV_CORRUPT);
    int ok = 0;
    for (int i = 0; i < SST_KEYS; i++) {
        kv_status_t rc = read_key(e, i, 1);
        assert_true(rc == KV_OK || rc == KV_CORRUPT);
        ok += rc == KV_OK;
    }
    assert_true(ok > SST_KEYS / 2);
    eng_close(e);
    test_rmrf(dir);
}

/* The index, filter, props and footer are read and checked at open. */
static void test_engine_faults_sst_metadata_damage_fails_open_naming_the_table(void **state)
{
    (void)state;
    enum { INDEX, FILTER, PROPS, FOOTER_HANDLE, FOOTER_VERSION, FOOTER_MAGIC, NREGIONS };
    const char *names[] = {"index", "filter", "props", "footer handles", "footer version",
                           "footer magic"};
    for (int r = 0; r < NREGIONS; r++) {
        const char *dir = test_tmpdir("eng-sst-meta");
        char sst[PATH_MAX];
        store_with_one_table(dir, sst, sizeof sst);
        sst_layout_t l = sst_layout(sst);
        uint64_t at = r == INDEX    ? l.index_off + l.index_size / 2
                      : r == FILTER ? l.filter_off + l.filter_size / 2
                      : r == PROPS  ? l.props_off + l.props_size / 2
                      : r == FOOTER_HANDLE  ? l.footer_off + 33
                      : r == FOOTER_VERSION ? l.footer_off + 48
                                            : l.footer_off + 60;
        print_message("  %s: flip at %" PRIu64 "\n", names[r], at);
        flip_bit(sst, at);
        eng_options_t o;
        group_options(&o, dir);
        expect_open_fails(&o, KV_CORRUPT, base_name(sst), NULL);
        test_rmrf(dir);
    }
}

static void test_engine_faults_truncated_sst_fails_open_naming_it(void **state)
{
    (void)state;
    for (int how = 0; how < 3; how++) {
        const char *dir = test_tmpdir("eng-sst-cut");
        char sst[PATH_MAX];
        store_with_one_table(dir, sst, sizeof sst);
        uint64_t size = file_size(sst);
        cut_to(sst, how == 0 ? size - 1 : how == 1 ? size / 2 : 10);
        eng_options_t o;
        group_options(&o, dir);
        expect_open_fails(&o, KV_CORRUPT, base_name(sst), NULL);
        test_rmrf(dir);
    }
}

static void test_engine_faults_missing_sst_fails_open_naming_it(void **state)
{
    (void)state;
    const char *dir = test_tmpdir("eng-sst-gone");
    char sst[PATH_MAX];
    store_with_one_table(dir, sst, sizeof sst);
    assert_int_equal(unlink(sst), 0);
    eng_options_t o;
    group_options(&o, dir);
    expect_open_fails(&o, KV_CORRUPT, base_name(sst), "missing");
    test_rmrf(dir);
}

/* ---- the manifest and CURRENT -------------------------------------------- */

/* Four manifest records: the snapshot written at open, then one edit per
 * flush. Keys [0, 300) in three tables. */
static void store_with_manifest_edits(const char *dir, char *man, size_t cap)
{
    eng_options_t o;
    group_options(&o, dir);
    eng_t *e = open_or_die(&o);
    for (int f = 0; f < 3; f++) {
        put_keys(e, f * 100, f * 100 + 100, 1);
        assert_int_equal(eng_flush(e), KV_OK);
    }
    eng_close(e);
    newest(dir, "MANIFEST", man, cap);
}

static void test_engine_faults_manifest_bit_flip_fails_open_naming_it(void **state)
{
    (void)state;
    for (int in_header = 0; in_header < 2; in_header++) {
        const char *dir = test_tmpdir("eng-man-flip");
        char man[PATH_MAX];
        store_with_manifest_edits(dir, man, sizeof man);
        uint64_t starts[16];
        uint32_t lens[16];
        size_t n = log_records(man, starts, lens, 16);
        assert_true(n >= 4);
        flip_bit(man, starts[1] + (in_header ? 1 : 16 + lens[1] / 2));
        eng_options_t o;
        group_options(&o, dir);
        expect_open_fails(&o, KV_CORRUPT, base_name(man), "offset");
        test_rmrf(dir);
    }
}

/* An edit cut short by a crash was never installed (its writer had not
 * synced it): the store opens as of the edits before it. */
static void test_engine_faults_torn_manifest_tail_opens_without_the_unfinished_edit(void **state)
{
    (void)state;
    for (int keep = 0; keep < 3; keep++) {
        const char *dir = test_tmpdir("eng-man-torn");
        char man[PATH_MAX];
        store_with_manifest_edits(dir, man, sizeof man);
        /* append the start of one more record: a header written at this
         * offset (so it checks out) claiming 200 bytes, then some of them */
        uint64_t end = file_size(man);
        uint8_t rec[16 + 200];
        memset(rec, 0x5a, sizeof rec);
        uint8_t hb[12];
        uint32_t len = 200;
        for (int i = 0; i < 4; i++) hb[i] = rec[i] = (uint8_t)(len >> (8 * i));
        for (int i = 0; i < 8; i++) hb[4 + i] = (uint8_t)(end >> (8 * i));
        uint32_t hcrc = (uint32_t)XXH3_64bits(hb, sizeof hb);
        for (int i = 0; i < 4; i++) rec[4 + i] = (uint8_t)(hcrc >> (8 * i));
        size_t n = keep == 0 ? 7 : keep == 1 ? 16 : 16 + 120;
        int fd = open(man, O_WRONLY | O_APPEND);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, rec, n), (ssize_t)n);
        close(fd);

        eng_options_t o;
        group_options(&o, dir);
        eng_t *e = open_or_die(&o);
        check_keys(e, 0, 300, 1);
        put_keys(e, 300, 310, 1);
        eng_close(e);
        e = open_or_die(&o);
        check_keys(e, 0, 310, 1);
        eng_close(e);
        test_rmrf(dir);
    }
}

static void test_engine_faults_current_naming_a_missing_manifest_fails_open(void **state)
{
    (void)state;
    const char *dir = test_tmpdir("eng-current-missing");
    char man[PATH_MAX], cur[PATH_MAX + 16];
    store_with_manifest_edits(dir, man, sizeof man);
    snprintf(cur, sizeof cur, "%s/CURRENT", dir);
    const char *text = "MANIFEST-000999\n";
    write_file(cur, text, strlen(text));
    eng_options_t o;
    group_options(&o, dir);
    expect_open_fails(&o, KV_CORRUPT, "MANIFEST-000999", "CURRENT");
    /* and the real manifest missing under its own name */
    char line[PATH_MAX + 2];
    snprintf(line, sizeof line, "%s\n", base_name(man));
    write_file(cur, line, strlen(line));
    assert_int_equal(unlink(man), 0);
    expect_open_fails(&o, KV_CORRUPT, base_name(man), "CURRENT");
    test_rmrf(dir);
}

static void test_engine_faults_garbage_in_current_fails_open(void **state)
{
    (void)state;
    const char *garbage[] = {"", "hello\n", "MANIFEST-\n", "MANIFEST-000abc\n",
                             "MANIFEST-000005", "\x01\x02\x03\x00\xff\n"};
    const size_t lens[] = {0, 6, 10, 16, 15, 6};
    for (size_t g = 0; g < KV_ARRAY_LEN(garbage); g++) {
        const char *dir = test_tmpdir("eng-current-garbage");
        char man[PATH_MAX], cur[PATH_MAX + 16];
        store_with_manifest_edits(dir, man, sizeof man);
        snprintf(cur, sizeof cur, "%s/CURRENT", dir);
        write_file(cur, garbage[g], lens[g]);
        eng_options_t o;
        group_options(&o, dir);
        expect_open_fails(&o, KV_CORRUPT, "CURRENT", NULL);
        test_rmrf(dir);
    }
}

/* CURRENT gone but tables, WALs and a manifest present: that is a damaged
 * store, and opening it as a new, empty one would delete them all. */
static void test_engine_faults_missing_current_beside_store_files_fails_open(void **state)
{
    (void)state;
    const char *dir = test_tmpdir("eng-current-gone");
    char man[PATH_MAX], cur[PATH_MAX + 16];
    store_with_manifest_edits(dir, man, sizeof man);
    eng_options_t o;
    group_options(&o, dir);
    eng_t *e = open_or_die(&o);
    put_keys(e, 300, 320, 1); /* some in the WAL too */
    eng_close(e);
    int tables = count_files(dir, "sst");
    assert_true(tables > 0);
    snprintf(cur, sizeof cur, "%s/CURRENT", dir);
    assert_int_equal(unlink(cur), 0);
    expect_open_fails(&o, KV_CORRUPT, "CURRENT", NULL);
    assert_int_equal(count_files(dir, "sst"), tables); /* nothing deleted */
    test_rmrf(dir);
}

/* ---- orphans ------------------------------------------------------------- */

/* Files no live state refers to -- a table never journaled, temporaries,
 * an old manifest, an obsolete WAL -- are deleted at open and change no
 * answer, even when they hold valid data of their own. */
static void test_engine_faults_orphan_files_are_deleted_on_open(void **state)
{
    (void)state;
    /* another store, whose table and WAL hold different values */
    const char *other = test_tmpdir("eng-orphan-src");
    char other_dir[PATH_MAX];
    snprintf(other_dir, sizeof other_dir, "%s", other);
    eng_options_t o;
    group_options(&o, other_dir);
    eng_t *e = open_or_die(&o);
    put_keys(e, 0, 200, 9);
    assert_int_equal(eng_flush(e), KV_OK);
    put_keys(e, 0, 50, 10);
    eng_close(e);
    char other_sst[PATH_MAX], other_wal[PATH_MAX];
    newest(other_dir, "sst", other_sst, sizeof other_sst);
    newest(other_dir, "wal", other_wal, sizeof other_wal);

    const char *dir = test_tmpdir("eng-orphan");
    char man[PATH_MAX];
    store_with_manifest_edits(dir, man, sizeof man);
    struct {
        const char *name;
        const char *from; /* copy this file, or NULL for junk */
    } orphans[] = {
        {"000999.sst", other_sst},
        {"000998.sst.tmp", other_sst},
        {"CURRENT.tmp", NULL},
        {"MANIFEST-000001", man},
        {"000001.wal", other_wal},
    };
    char p[PATH_MAX + 32];
    for (size_t i = 0; i < KV_ARRAY_LEN(orphans); i++) {
        snprintf(p, sizeof p, "%s/%s", dir, orphans[i].name);
        if (orphans[i].from) copy_file(orphans[i].from, p);
        else write_file(p, "junk", 4);
    }
    group_options(&o, dir);
    e = open_or_die(&o);
    for (size_t i = 0; i < KV_ARRAY_LEN(orphans); i++) {
        snprintf(p, sizeof p, "%s/%s", dir, orphans[i].name);
        if (file_exists(p)) fail_msg("orphan %s survived the open", orphans[i].name);
    }
    check_keys(e, 0, 300, 1);
    eng_close(e);
    e = open_or_die(&o);
    check_keys(e, 0, 300, 1);
    eng_close(e);
    test_rmrf(dir);
    test_rmrf(other_dir);
}

/* ---- fsync failure ------------------------------------------------------- */

#define WRITER_KEY_BASE 1000000

typedef struct sync_writer {
    eng_t *e;
    int id;
    int acked;            /* keys [id*BASE, id*BASE + acked) acknowledged */
    kv_status_t failed;   /* the first error */
} sync_writer_t;

static void *sync_writer_main(void *p)
{
    sync_writer_t *w = p;
    char k[32], v[128];
    for (int i = 0;; i++) {
        int key = w->id * WRITER_KEY_BASE + i;
        key_of(key, k, sizeof k);
        value_of(key, 1, v, sizeof v);
        kv_status_t rc = put_s(w->e, k, v, TS(1));
        if (rc != KV_OK) {
            w->failed = rc;
            return NULL;
        }
        w->acked = i + 1; /* until the fault stops us */
    }
}

/* A failed fdatasync under group commit: the write in flight fails, the
 * engine refuses writes from then on (the WAL's state is unknown) but keeps
 * serving reads, and after a reopen every acknowledged write is there. */
static void test_engine_faults_fsync_failure_refuses_writes_but_serves_reads(void **state)
{
    (void)state;
    const char *dir = test_tmpdir("eng-fsync");
    eng_options_t o;
    group_options(&o, dir);
    eng_t *e = open_or_die(&o);
    put_keys(e, 9000000, 9000100, 1);
    enum { W = 4 };
    pthread_t th[W];
    sync_writer_t ws[W];
    for (int i = 0; i < W; i++) {
        ws[i] = (sync_writer_t){e, i, 0, KV_OK};
        assert_int_equal(pthread_create(&th[i], NULL, sync_writer_main, &ws[i]), 0);
    }
    usleep(30 * 1000);
    eng_fs_fault_sync_fails(true);
    for (int i = 0; i < W; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < W; i++) {
        print_message("  writer %d: %d acknowledged, then %s\n", i, ws[i].acked,
                      kv_status_str(ws[i].failed));
        assert_int_equal(ws[i].failed, KV_IO);
    }
    /* refused while the disk fails, and still after it recovers */
    assert_int_equal(put_s(e, "after", "x", TS(2)), KV_IO);
    eng_fs_fault_reset();
    assert_int_equal(put_s(e, "after", "x", TS(2)), KV_IO);
    assert_int_equal(eng_delete(e, kv_slice_str("after"), TS(3), NULL), KV_IO);
    /* reads go on */
    check_keys(e, 9000000, 9000100, 1);
    for (int i = 0; i < W; i++) check_keys(e, i * WRITER_KEY_BASE, i * WRITER_KEY_BASE + ws[i].acked, 1);
    expect_kv(e, "after", NULL);
    eng_close(e);

    e = open_or_die(&o);
    check_keys(e, 9000000, 9000100, 1);
    for (int i = 0; i < W; i++) check_keys(e, i * WRITER_KEY_BASE, i * WRITER_KEY_BASE + ws[i].acked, 1);
    expect_kv(e, "after", NULL);
    put_keys(e, 9100000, 9100010, 1); /* writable again */
    eng_close(e);
    e = open_or_die(&o);
    check_keys(e, 9100000, 9100010, 1);
    eng_close(e);
    test_rmrf(dir);
}

/* A disk that starts failing syncs at any point of an open (WAL replay,
 * the fresh manifest, CURRENT, the flush of what was replayed): the open
 * may fail, but a later healthy open finds every write. */
static void test_engine_faults_failed_sync_at_any_point_of_open_loses_nothing(void **state)
{
    (void)state;
    const char *dir = test_tmpdir("eng-sync-open");
    eng_options_t o;
    group_options(&o, dir);
    eng_t *e = open_or_die(&o);
    put_keys(e, 0, 300, 1);
    assert_int_equal(eng_flush(e), KV_OK);
    put_keys(e, 300, 400, 1); /* replayed from the WAL at each open */
    eng_close(e);
    int top = 400;
    for (int n = 0; n < 12; n++) {
        eng_fs_fault_sync_fails_after(n);
        e = NULL;
        kv_status_t rc = eng_open(&o, &e);
        print_message("  syncs allowed %d: open %s%s%s\n", n, kv_status_str(rc),
                      rc == KV_OK ? "" : ": ", rc == KV_OK ? "" : kv_errmsg());
        if (rc == KV_OK) {
            check_keys(e, 0, top, 1);
            eng_close(e);
        }
        eng_fs_fault_reset();
        e = open_or_die(&o);
        check_keys(e, 0, top, 1);
        put_keys(e, top, top + 20, 1);
        top += 20;
        eng_close(e);
    }
    test_rmrf(dir);
}

/* The same for a flush and a compaction: whatever sync fails, the writes
 * acknowledged before are all there after a reopen. */
static void test_engine_faults_failed_sync_during_flush_or_compaction_loses_nothing(void **state)
{
    (void)state;
    const char *dir = test_tmpdir("eng-sync-flush");
    eng_options_t o;
    group_options(&o, dir);
    int top = 0;
    for (int n = 0; n < 16; n++) {
        eng_t *e = open_or_die(&o);
        put_keys(e, top, top + 150, 1);
        top += 150;
        eng_fs_fault_sync_fails_after(n);
        kv_status_t f = eng_flush(e);
        kv_status_t c = f == KV_OK ? eng_compact_range(e, 0, UINT64_MAX) : f;
        print_message("  syncs allowed %d: flush %s, compaction %s\n", n, kv_status_str(f),
                      kv_status_str(c));
        if (f != KV_OK && f != KV_IO) fail_msg("flush: %s", kv_status_str(f));
        if (c != KV_OK && c != KV_IO) fail_msg("compaction: %s", kv_status_str(c));
        check_keys(e, 0, top, 1); /* reads never stop */
        eng_fs_fault_reset();
        /* the disk is back: a write may be refused until reopen, but if
         * it is acknowledged it must last */
        char probe[32];
        snprintf(probe, sizeof probe, "probe-%d", n);
        kv_status_t w = put_s(e, probe, "p", TS(1));
        assert_true(w == KV_OK || w == KV_IO);
        eng_close(e);
        e = open_or_die(&o);
        check_keys(e, 0, top, 1);
        if (w == KV_OK) expect_kv(e, probe, "p");
        eng_close(e);
    }
    test_rmrf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        kv_unit_test(test_engine_faults_torn_wal_tail_is_cut_and_counted),
        kv_unit_test(test_engine_faults_wal_bit_flip_fails_open_naming_file_and_offset),
        kv_unit_test(test_engine_faults_wal_bit_flip_is_skipped_with_salvage),
        kv_unit_test(test_engine_faults_sst_data_block_damage_fails_reads_that_touch_it),
        kv_unit_test(test_engine_faults_sst_metadata_damage_fails_open_naming_the_table),
        kv_unit_test(test_engine_faults_truncated_sst_fails_open_naming_it),
        kv_unit_test(test_engine_faults_missing_sst_fails_open_naming_it),
        kv_unit_test(test_engine_faults_manifest_bit_flip_fails_open_naming_it),
        kv_unit_test(test_engine_faults_torn_manifest_tail_opens_without_the_unfinished_edit),
        kv_unit_test(test_engine_faults_current_naming_a_missing_manifest_fails_open),
        kv_unit_test(test_engine_faults_garbage_in_current_fails_open),
        kv_unit_test(test_engine_faults_missing_current_beside_store_files_fails_open),
        kv_unit_test(test_engine_faults_orphan_files_are_deleted_on_open),
        kv_unit_test(test_engine_faults_fsync_failure_refuses_writes_but_serves_reads),
        kv_unit_test(test_engine_faults_failed_sync_at_any_point_of_open_loses_nothing),
        kv_unit_test(test_engine_faults_failed_sync_during_flush_or_compaction_loses_nothing),
    };
    return cmocka_run_group_tests_name("engine_faults", tests, NULL, NULL);
}
