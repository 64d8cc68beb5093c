/* test_hint_log.c -- the durable hint log (replication/hint_log.c): order,
 * batches and acknowledgement, resuming after a restart, segment rolling and
 * deletion, the byte bound and a full disk, age, dropping a target, and
 * damage: a torn tail, a flipped bit, an unreadable segment, a bad cursor.
 */
#include "test_util.h"

#include <fcntl.h>

#include "fs.h"
#include "hints.h"

#define T0 1763700000000ull

typedef struct fx {
    char dir[PATH_MAX];
    hint_log_t *h;
    hint_log_options_t o;
} fx_t;

static void fx_open(fx_t *f)
{
    f->o.dir = f->dir;
    assert_int_equal(hint_log_open(&f->o, &f->h), KV_OK);
}

static void fx_init(fx_t *f, const char *name)
{
    memset(f, 0, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "%s", test_tmpdir(name));
    hint_log_options_init(&f->o);
    fx_open(f);
}

static void fx_reopen(fx_t *f)
{
    assert_int_equal(hint_log_sync(f->h), KV_OK);
    hint_log_close(f->h);
    fx_open(f);
}

static void fx_done(fx_t *f)
{
    hint_log_close(f->h);
    test_rmrf(f->dir);
}

/* Hint i: key "k<i>", value "value-<i>" (i % 5 == 0: a tombstone), ts i+1. */
static kv_status_t put(fx_t *f, const char *target, int i, uint64_t created)
{
    char k[32], v[32];
    snprintf(k, sizeof k, "k%d", i);
    snprintf(v, sizeof v, "value-%d", i);
    eng_cell_t c = {.ts = (uint64_t)i + 1, .tombstone = i % 5 == 0};
    if (!c.tombstone) c.value = kv_slice_str(v);
    if (i % 7 == 0) c.expire_ms = T0 + 1000000 + (uint64_t)i;
    return hint_log_append(f->h, target, created, kv_slice_str(k), &c);
}

static void check_rec(const hint_rec_t *r, int i)
{
    char k[32], v[32];
    snprintf(k, sizeof k, "k%d", i);
    snprintf(v, sizeof v, "value-%d", i);
    assert_true(kv_slice_eq(r->key, kv_slice_str(k)));
    assert_int_equal(r->cell.ts, (uint64_t)i + 1);
    assert_int_equal(r->cell.tombstone, i % 5 == 0);
    if (i % 5 == 0) assert_int_equal(r->cell.value.len, 0);
    else assert_true(kv_slice_eq(r->cell.value, kv_slice_str(v)));
    assert_int_equal(r->cell.expire_ms, i % 7 == 0 ? T0 + 1000000 + (uint64_t)i : 0);
}

/* The hint number in a key "k<i>" (a slice, not a string). */
static int key_num(kv_slice_t key)
{
    char buf[16];
    assert_true(key.len > 1 && key.len < sizeof buf);
    memcpy(buf, key.data + 1, key.len - 1);
    buf[key.len - 1] = '\0';
    return atoi(buf);
}

/* Read and ack everything pending for target; returns the hint numbers in
 * the order they came (read from their keys). */
static size_t drain(fx_t *f, const char *target, uint64_t budget, int *got, size_t cap)
{
    size_t n = 0;
    for (int guard = 0; guard < 100000; guard++) {
        hint_batch_t b;
        hint_batch_init(&b);
        assert_int_equal(hint_log_read(f->h, target, T0, 0, budget, &b), KV_OK);
        for (size_t i = 0; i < b.n; i++) {
            assert_true(n < cap);
            got[n++] = key_num(b.recs[i].key);
        }
        bool more = b.more, empty = b.n == 0;
        assert_int_equal(hint_log_ack(f->h, target, b.end), KV_OK);
        hint_batch_free(&b);
        if (!more && empty) return n;
    }
    fail_msg("drain did not end");
    return n;
}

static size_t count_files(const char *dir)
{
    char **names;
    size_t n;
    if (eng_fs_list(dir, &names, &n) != KV_OK) return 0;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += strstr(names[i], ".hints") != NULL;
    eng_fs_names_free(names, n);
    return k;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Path of the target's segment number `idx` in name order. */
static void seg_file(const fx_t *f, const char *target, size_t idx, char *out, size_t cap)
{
    char d[PATH_MAX + 80];
    snprintf(d, sizeof d, "%s/%s", f->dir, target);
    char **names;
    size_t n;
    assert_int_equal(eng_fs_list(d, &names, &n), KV_OK);
    qsort(names, n, sizeof *names, name_cmp);
    size_t k = 0;
    bool found = false;
    for (size_t i = 0; i < n && !found; i++) {
        if (!strstr(names[i], ".hints")) continue;
        if (k++ == idx) {
            snprintf(out, cap, "%s/%s", d, names[i]);
            found = true;
        }
    }
    eng_fs_names_free(names, n);
    assert_true(found);
}

static off_t file_size(const char *p)
{
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    return st.st_size;
}

static void flip_byte(const char *p, off_t off)
{
    int fd = open(p, O_RDWR);
    assert_true(fd >= 0);
    uint8_t c;
    assert_int_equal(pread(fd, &c, 1, off), 1);
    c ^= 0x40;
    assert_int_equal(pwrite(fd, &c, 1, off), 1);
    close(fd);
}

/* ---- tests ----------------------------------------------------------------- */

static void test_hint_log_hints_come_back_in_order_with_their_cells(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f, "hl-order");
    for (int i = 0; i < 200; i++) assert_int_equal(put(&f, "node-b", i, T0 + (uint64_t)i), KV_OK);
    for (int i = 0; i < 10; i++) assert_int_equal(put(&f, "node-a", 1000 + i, T0 + 5), KV_OK);

    hint_target_stats_t ts[4];
    assert_int_equal(hint_log_targets(f.h, ts, 4), 2);
    assert_string_equal(ts[0].target, "node-a"); /* sorted */
    assert_int_equal(ts[0].records, 10);
    assert_int_equal(ts[1].records, 200);
    assert_int_equal(ts[1].oldest_ms, T0);
    assert_true(ts[1].bytes > 200 * 40);

    hint_batch_t b;
    hint_batch_init(&b);
    assert_int_equal(hint_log_read(f.h, "node-b", T0, 0, 1u << 20, &b), KV_OK);
    assert_int_equal(b.n, 200);
    assert_false(b.more);
    for (int i = 0; i < 200; i++) {
        check_rec(&b.recs[i], i);
        assert_int_equal(b.recs[i].created_ms, T0 + (uint64_t)i);
    }
    assert_int_equal(hint_log_ack(f.h, "node-b", b.end), KV_OK);
    hint_batch_free(&b);

    hint_log_stats_t st;
    hint_log_get_stats(f.h, &st);
    assert_int_equal(st.appended, 210);
    assert_int_equal(st.replayed, 200);
    assert_int_equal(st.records, 10);
    hint_target_stats_t one;
    hint_log_target(f.h, "node-b", &one);
    assert_int_equal(one.records, 0);
    assert_int_equal(one.bytes, 0); /* a drained target keeps no files */
    hint_log_target(f.h, "nobody", &one);
    assert_int_equal(one.records, 0);
    fx_done(&f);
}

static void test_hint_log_batches_keep_to_the_budget_and_unacked_ones_come_again(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f, "hl-batch");
    for (int i = 0; i < 100; i++) assert_int_equal(put(&f, "t", i, T0 + (uint64_t)i), KV_OK);

    hint_batch_t b;
    hint_batch_init(&b);
    /* A budget below one record still returns one record. */
    assert_int_equal(hint_log_read(f.h, "t", T0, 0, 1, &b), KV_OK);
    assert_int_equal(b.n, 1);
    assert_true(b.more);
    check_rec(&b.recs[0], 0);
    /* Not acked (the send failed): the same records come again. */
    assert_int_equal(hint_log_read(f.h, "t", T0, 0, 500, &b), KV_OK);
    assert_true(b.n > 1 && b.n < 100);
    assert_true(b.bytes <= 500);
    assert_true(b.more);
    size_t first = b.n;
    for (size_t i = 0; i < b.n; i++) check_rec(&b.recs[i], (int)i);
    hint_pos_t end = b.end;
    assert_int_equal(hint_log_ack(f.h, "t", end), KV_OK);
    hint_target_stats_t st;
    hint_log_target(f.h, "t", &st);
    assert_int_equal(st.records, 100 - first);
    assert_int_equal(st.oldest_ms, T0 + first);
    /* An ack behind the cursor changes nothing. */
    assert_int_equal(hint_log_ack(f.h, "t", (hint_pos_t){end.seq, 16}), KV_OK);
    hint_log_target(f.h, "t", &st);
    assert_int_equal(st.records, 100 - first);
    hint_batch_free(&b);

    int got[200];
    size_t n = drain(&f, "t", 700, got, 200);
    assert_int_equal(n, 100 - first);
    for (size_t i = 0; i < n; i++) assert_int_equal(got[i], (int)(first + i));
    fx_done(&f);
}

static void test_hint_log_replay_resumes_from_the_cursor_after_a_restart(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f, "hl-resume");
    for (int i = 0; i < 50; i++) assert_int_equal(put(&f, "t", i, T0 + (uint64_t)i), KV_OK);
    hint_batch_t b;
    hint_batch_init(&b);
    assert_int_equal(hint_log_read(f.h, "t", T0, 0, 400, &b), KV_OK);
    size_t acked = b.n;
    assert_int_equal(hint_log_ack(f.h, "t", b.end), KV_OK);
    /* A second batch read and sent, but the process dies before its ack. */
    assert_int_equal(hint_log_read(f.h, "t", T0, 0, 400, &b), KV_OK);
    hint_batch_free(&b);
    fx_reopen(&f);

    hint_target_stats_t st;
    hint_log_target(f.h, "t", &st);
    assert_int_equal(st.records, 50 - acked);
    assert_int_equal(st.oldest_ms, T0 + acked);
    /* Appends after the restart go to a new segment, after the old ones. */
    for (int i = 50; i < 60; i++) assert_int_equal(put(&f, "t", i, T0 + (uint64_t)i), KV_OK);
    int got[100];
    size_t n = drain(&f, "t", 1u << 20, got, 100);
    assert_int_equal(n, 60 - acked);
    for (size_t i = 0; i < n; i++) assert_int_equal(got[i], (int)(acked + i));
    hint_log_stats_t s;
    hint_log_get_stats(f.h, &s);
    assert_int_equal(s.corrupt, 0);
    assert_int_equal(s.torn_tails, 0);
    fx_done(&f);
}

static void test_hint_log_segments_roll_and_are_deleted_once_delivered(void **state)
{
    (void)state;
    fx_t f;
    memset(&f, 0, sizeof f);
    snprintf(f.dir, sizeof f.dir, "%s", test_tmpdir("hl-roll"));
    hint_log_options_init(&f.o);
    f.o.segment_bytes = 4096;
    fx_open(&f);
    for (int i = 0; i < 500; i++) assert_int_equal(put(&f, "t", i, T0), KV_OK);
    char tdir[PATH_MAX + 8];
    snprintf(tdir, sizeof tdir, "%s/t", f.dir);
    size_t segs = count_files(tdir);
    assert_true(segs >= 5);

    /* Deliver about half: the segments wholly delivered are deleted. */
    int delivered = 0;
    while (delivered < 250) {
        hint_batch_t b;
        hint_batch_init(&b);
        assert_int_equal(hint_log_read(f.h, "t", T0, 0, 2000, &b), KV_OK);
        for (size_t i = 0; i < b.n; i++) check_rec(&b.recs[i], delivered + (int)i);
        delivered += (int)b.n;
        assert_int_equal(hint_log_ack(f.h, "t", b.end), KV_OK);
        hint_batch_free(&b);
    }
    size_t left = count_files(tdir);
    assert_true(left < segs && left > 0);
    hint_target_stats_t st;
    hint_log_target(f.h, "t", &st);
    assert_int_equal(st.records, 500 - delivered);

    /* The rest, across a restart. */
    fx_reopen(&f);
    int got[600];
    size_t n = drain(&f, "t", 3000, got, 600);
    assert_int_equal(n, 500 - (size_t)delivered);
    for (size_t i = 0; i < n; i++) assert_int_equal(got[i], delivered + (int)i);
    assert_int_equal(count_files(tdir), 0);
    hint_log_stats_t s;
    hint_log_get_stats(f.h, &s);
    assert_int_equal(s.bytes, 0);
    assert_int_equal(s.records, 0);
    fx_done(&f);
}

static void test_hint_log_torn_tail_is_cut_and_the_rest_delivered(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f, "hl-torn");
    for (int i = 0; i < 20; i++) assert_int_equal(put(&f, "t", i, T0), KV_OK);
    assert_int_equal(hint_log_sync(f.h), KV_OK);
    hint_log_close(f.h);
    /* A crash in the middle of the last append. */
    char p[PATH_MAX + 128];
    seg_file(&f, "t", 0, p, sizeof p);
    assert_int_equal(truncate(p, file_size(p) - 7), 0);
    fx_open(&f);

    hint_log_stats_t s;
    hint_log_get_stats(f.h, &s);
    assert_int_equal(s.torn_tails, 1);
    assert_int_equal(s.records, 19);
    assert_int_equal(s.corrupt, 0);
    /* New hints go after it (in a new segment), and all arrive in order. */
    assert_int_equal(put(&f, "t", 20, T0), KV_OK);
    int got[32];
    size_t n = drain(&f, "t", 1u << 20, got, 32);
    assert_int_equal(n, 20);
    for (int i = 0; i < 19; i++) assert_int_equal(got[i], i);
    assert_int_equal(got[19], 20);
    fx_done(&f);
}

static void test_hint_log_flipped_bit_skips_one_record_and_counts_it_once(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f, "hl-flip");
    for (int i = 0; i < 30; i++) assert_int_equal(put(&f, "t", i, T0), KV_OK);
    assert_int_equal(hint_log_sync(f.h), KV_OK);
    hint_log_close(f.h);
    char p[PATH_MAX + 128];
    seg_file(&f, "t", 0, p, sizeof p);
    flip_byte(p, file_size(p) / 2); /* inside some record in the middle */
    fx_open(&f);

    hint_log_stats_t s;
    hint_log_get_stats(f.h, &s);
    assert_int_equal(s.corrupt, 1);
    assert_int_equal(s.records, 29);
    /* Read the damaged stretch twice (a discarded batch): counted once. */
    hint_batch_t b;
    hint_batch_init(&b);
    assert_int_equal(hint_log_read(f.h, "t", T0, 0, 1u << 20, &b), KV_OK);
    assert_int_equal(b.n, 29);
    assert_int_equal(hint_log_read(f.h, "t", T0, 0, 1u << 20, &b), KV_OK);
    assert_int_equal(b.n, 29);
    int missing = -1;
    for (int i = 0, j = 0; i < 30; i++) {
        if (j < 29 && key_num(b.recs[j].key) == i) {
            check_rec(&b.recs[j], i);
            j++;
        } else {
            assert_int_equal(missing, -1); /* only one lost */
            missing = i;
        }
    }
    assert_true(missing > 0 && missing < 29);
    assert_int_equal(hint_log_ack(f.h, "t", b.end), KV_OK);
    hint_batch_free(&b);
    hint_log_get_stats(f.h, &s);
    assert_int_equal(s.corrupt, 1);
    assert_int_equal(s.replayed, 29);
    assert_int_equal(s.records, 0);
    fx_done(&f);
}

static void test_hint_log_unreadable_segment_is_skipped_whole(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f, "hl-badseg");
    for (int i = 0; i < 10; i++) assert_int_equal(put(&f, "t", i, T0), KV_OK);
    fx_reopen(&f); /* the next appends start a second segment */
    for (int i = 10; i < 20; i++) assert_int_equal(put(&f, "t", i, T0), KV_OK);
    assert_int_equal(hint_log_sync(f.h), KV_OK);
    hint_log_close(f.h);
    char p[PATH_MAX + 128];
    seg_file(&f, "t", 0, p, sizeof p);
    flip_byte(p, 2); /* the magic */
    fx_open(&f);

    hint_log_stats_t s;
    hint_log_get_stats(f.h, &s);
    assert_int_equal(s.corrupt, 1);
    assert_int_equal(s.records, 10);
    int got[32];
    size_t n = drain(&f, "t", 1u << 20, got, 32);
    assert_int_equal(n, 10);
    for (int i = 0; i < 10; i++) assert_int_equal(got[i], 10 + i);
    hint_log_get_stats(f.h, &s);
    assert_int_equal(s.corrupt, 1);
    fx_done(&f);
}

static void test_hint_log_damaged_cursor_replays_from_the_oldest_hint(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f, "hl-cursor");
    for (int i = 0; i < 40; i++) assert_int_equal(put(&f, "t", i, T0), KV_OK);
    hint_batch_t b;
    hint_batch_init(&b);
    assert_int_equal(hint_log_read(f.h, "t", T0, 0, 300, &b), KV_OK);
    assert_true(b.n > 0 && b.n < 40);
    assert_int_equal(hint_log_ack(f.h, "t", b.end), KV_OK);
    hint_batch_free(&b);
    assert_int_equal(hint_log_sync(f.h), KV_OK);
    hint_log_close(f.h);
    char p[PATH_MAX + 80];
    snprintf(p, sizeof p, "%s/t/cursor", f.dir);
    flip_byte(p, 12);
    fx_open(&f);
    /* Everything again: duplicates, never a loss. */
    int got[64];
    size_t n = drain(&f, "t", 1u << 20, got, 64);
    assert_int_equal(n, 40);
    for (int i = 0; i < 40; i++) assert_int_equal(got[i], i);
    fx_done(&f);
}

static void test_hint_log_max_bytes_refuses_new_hints_until_delivered(void **state)
{
    (void)state;
    fx_t f;
    memset(&f, 0, sizeof f);
    snprintf(f.dir, sizeof f.dir, "%s", test_tmpdir("hl-max"));
    hint_log_options_init(&f.o);
    f.o.max_bytes = 4000;
    fx_open(&f);
    int ok = 0;
    kv_status_t rc;
    while ((rc = put(&f, ok % 2 ? "a" : "b", ok, T0)) == KV_OK) ok++;
    assert_int_equal(rc, KV_NOSPACE);
    assert_true(ok > 20);
    assert_int_equal(put(&f, "c", 999, T0), KV_NOSPACE); /* any target */
    hint_log_stats_t s;
    hint_log_get_stats(f.h, &s);
    assert_true(s.bytes <= 4000);
    assert_int_equal(s.refused_full, 2);
    assert_int_equal(s.records, (uint64_t)ok);
    int got[256];
    drain(&f, "a", 1u << 20, got, 256);
    assert_int_equal(put(&f, "c", 999, T0), KV_OK);
    fx_done(&f);
}

static void test_hint_log_full_disk_refuses_for_ten_seconds_and_keeps_the_log(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f, "hl-enospc");
    for (int i = 0; i < 10; i++) assert_int_equal(put(&f, "t", i, T0), KV_OK);
    eng_fs_fault_nospace_after(30); /* the next record does not fit */
    assert_int_equal(put(&f, "t", 10, T0 + 1), KV_NOSPACE);
    eng_fs_fault_reset();
    /* The disk has room again, but for 10 s no hint tries it. */
    assert_int_equal(put(&f, "t", 11, T0 + 5000), KV_NOSPACE);
    hint_log_stats_t s;
    hint_log_get_stats(f.h, &s);
    assert_int_equal(s.refused_full, 2);
    assert_int_equal(s.records, 10);
    assert_int_equal(put(&f, "t", 12, T0 + 10001), KV_OK);
    fx_reopen(&f);
    int got[32];
    size_t n = drain(&f, "t", 1u << 20, got, 32);
    assert_int_equal(n, 11);
    for (int i = 0; i < 10; i++) assert_int_equal(got[i], i);
    assert_int_equal(got[10], 12);
    hint_log_get_stats(f.h, &s);
    assert_int_equal(s.corrupt, 0);
    assert_int_equal(s.torn_tails, 0);
    fx_done(&f);
}

static void test_hint_log_hints_past_their_age_are_skipped_and_counted(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f, "hl-age");
    for (int i = 0; i < 10; i++) assert_int_equal(put(&f, "t", i, T0 + (uint64_t)i * 1000), KV_OK);
    hint_batch_t b;
    hint_batch_init(&b);
    /* At T0 + 9500 with a 5 s limit, hints created before T0 + 4500 expired. */
    assert_int_equal(hint_log_read(f.h, "t", T0 + 9500, 5000, 1u << 20, &b), KV_OK);
    assert_int_equal(b.expired, 5);
    assert_int_equal(b.n, 5);
    for (size_t i = 0; i < b.n; i++) check_rec(&b.recs[i], 5 + (int)i);
    assert_int_equal(hint_log_ack(f.h, "t", b.end), KV_OK);
    hint_batch_free(&b);
    hint_log_stats_t s;
    hint_log_get_stats(f.h, &s);
    assert_int_equal(s.expired, 5);
    assert_int_equal(s.replayed, 5);
    assert_int_equal(s.records, 0);
    fx_done(&f);
}

static void test_hint_log_dropping_a_target_deletes_its_hints(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f, "hl-drop");
    for (int i = 0; i < 10; i++) assert_int_equal(put(&f, "gone", i, T0), KV_OK);
    for (int i = 0; i < 3; i++) assert_int_equal(put(&f, "stays", i, T0), KV_OK);
    assert_int_equal(hint_log_drop(f.h, "gone"), KV_OK);
    hint_log_stats_t s;
    hint_log_get_stats(f.h, &s);
    assert_int_equal(s.dropped, 10);
    assert_int_equal(s.records, 3);
    fx_reopen(&f);
    hint_target_stats_t ts[4];
    assert_int_equal(hint_log_targets(f.h, ts, 4), 1);
    assert_string_equal(ts[0].target, "stays");
    fx_done(&f);
}

static void test_hint_log_bad_arguments_are_refused(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f, "hl-args");
    eng_cell_t c = {.ts = 1, .value = kv_slice_str("v")};
    assert_int_equal(hint_log_append(f.h, "", T0, kv_slice_str("k"), &c), KV_INVALID);
    assert_int_equal(hint_log_append(f.h, "../etc", T0, kv_slice_str("k"), &c), KV_INVALID);
    assert_int_equal(hint_log_append(f.h, "a/b", T0, kv_slice_str("k"), &c), KV_INVALID);
    char longname[80];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    assert_int_equal(hint_log_append(f.h, longname, T0, kv_slice_str("k"), &c), KV_INVALID);
    assert_int_equal(hint_log_append(f.h, "t", T0, kv_slice(NULL, 0), &c), KV_INVALID);
    hint_log_stats_t s;
    hint_log_get_stats(f.h, &s);
    assert_int_equal(s.appended, 0);
    fx_done(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        kv_unit_test(test_hint_log_hints_come_back_in_order_with_their_cells),
        kv_unit_test(test_hint_log_batches_keep_to_the_budget_and_unacked_ones_come_again),
        kv_unit_test(test_hint_log_replay_resumes_from_the_cursor_after_a_restart),
        kv_unit_test(test_hint_log_segments_roll_and_are_deleted_once_delivered),
        kv_unit_test(test_hint_log_torn_tail_is_cut_and_the_rest_delivered),
        kv_unit_test(test_hint_log_flipped_bit_skips_one_record_and_counts_it_once),
        kv_unit_test(test_hint_log_unreadable_segment_is_skipped_whole),
        kv_unit_test(test_hint_log_damaged_cursor_replays_from_the_oldest_hint),
        kv_unit_test(test_hint_log_max_bytes_refuses_new_hints_until_delivered),
        kv_unit_test(test_hint_log_full_disk_refuses_for_ten_seconds_and_keeps_the_log),
        kv_unit_test(test_hint_log_hints_past_their_age_are_skipped_and_counted),
        kv_unit_test(test_hint_log_dropping_a_target_deletes_its_hints),
        kv_unit_test(test_hint_log_bad_arguments_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
