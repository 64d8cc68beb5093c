/* hint_log.c -- durable hint logs, one directory of segments per target
 * (the format, replay, damage and bound rules are in hints.h).
 *
 * DESIGN  Every target has an in-memory record of its segments (sequence
 *   number, bytes on disk, how much damage has been counted in it), its
 *   cursor, the one segment this process appends to (opened lazily, never
 *   one left by an earlier process), and its figures: pending records,
 *   bytes, the created_ms of the oldest pending record.
 *
 *   Open scans each target from its cursor with a salvaging reader, so the
 *   figures are exact from the start and damage is reported at once.
 *   Reading opens a salvaging reader at the cursor, seeks to it, and walks
 *   forward across segments until the byte budget is spent; it remembers
 *   what the batch covered (records, expired ones, the next record's age),
 *   so that acknowledging exactly that batch -- the normal case -- updates
 *   the figures without reading anything again. Any other acknowledged
 *   position is counted by rescanning from it.
 *
 *   Segment life:
 *
 *     (none) --append--> ACTIVE --size >= segment_bytes, or a write or
 *                          |      sync failed--> SEALED (synced if it can be)
 *                          |                        |
 *                          +--cursor passes it------+--> deleted
 *
 *   A target whose every record has been acknowledged has all its segment
 *   files and its cursor deleted, so a drained log takes no disk space.
 *
 *   Damage is counted once: each segment remembers the offset up to which
 *   skipped bytes were counted (bad_upto), so reading the same region
 *   again (a discarded batch, the open scan and then a read) adds nothing.
 *
 * INVARIANTS (1) a target's cursor never moves back; (2) new segments get
 *   a sequence number above every one on disk and above the cursor's, so a
 *   new segment is never mistaken for a consumed one; (3) bytes == the sum
 *   of the target's segment sizes, and the log's bytes == the sum over
 *   targets; (4) records counts good records after the cursor.
 * THREADING  One caller thread at a time for everything but the figures;
 *   `mu` guards the targets array and every figure, and is held only by
 *   short sections of the caller's thread and by the figure readers.
 */
#define KV_LOG_MODULE "hints"
#include "hints.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <xxhash.h>

#include "coding.h"
#include "fs.h"
#include "log.h"

#define HINT_MAGIC "CAIRNHNT"
#define CURSOR_MAGIC "CAIRNHCR"
#define CURSOR_NAME "cursor"
#define CURSOR_LEN 32
#define SEG_SUFFIX ".hints"
#define REC_VERSION 1
#define REC_FIXED 34 /* version, flags, created, ts, expire, key_len, value_len */
#define FLAG_TOMBSTONE 1u
#define FULL_BACKOFF_MS 10000u

typedef struct seg {
    uint64_t seq;
    uint64_t bytes;    /* file size */
    uint64_t bad_upto; /* damage before this offset has been counted */
    bool bad_header;   /* unreadable header, counted */
} seg_t;

typedef struct target {
    char name[HINT_TARGET_MAX + 1];
    char *dir;
    seg_t *segs; /* by seq */
    size_t nsegs, segcap;
    eng_log_writer_t *w; /* the active segment: segs[nsegs - 1] when set */
    bool dirty;          /* appended to since the last sync */
    hint_pos_t cursor;   /* {0, 0}: from the oldest segment's start */
    uint64_t records, bytes, oldest_ms;
    /* what the last read covered, to settle its ack cheaply */
    bool rd_valid, rd_more;
    hint_pos_t rd_end;
    uint64_t rd_records, rd_expired, rd_next_ms;
    uint64_t appended_since_read;
    uint64_t first_after_read_ms; /* created_ms of the first later append */
} target_t;

struct hint_log {
    char *dir;
    hint_log_options_t o;
    pthread_mutex_t mu;
    target_t **t; /* sorted by name */
    size_t nt, tcap;
    uint64_t next_seq;
    uint64_t full_until_ms;
    hint_log_stats_t st; /* bytes and records are summed on demand */
};

void hint_log_options_init(hint_log_options_t *o)
{
    memset(o, 0, sizeof *o);
    o->max_bytes = 1ull << 30;
    o->segment_bytes = 8ull << 20;
}

/* ---- names and records --------------------------------------------------- */

static bool target_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > HINT_TARGET_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
              (c >= 'A' && c <= 'Z') || c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* "<seq:016x>.hints" -> seq */
static bool seg_name_parse(const char *name, uint64_t *seq)
{
    if (strlen(name) != 16 + strlen(SEG_SUFFIX) || strcmp(name + 16, SEG_SUFFIX))
        return false;
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char c = name[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return false;
        v = v << 4 | (uint64_t)d;
    }
    if (v == 0) return false;
    *seq = v;
    return true;
}

static char *seg_path(const target_t *t, uint64_t seq)
{
    char name[32];
    snprintf(name, sizeof name, "%016" PRIx64 SEG_SUFFIX, seq);
    return eng_path_join(t->dir, name);
}

static void rec_encode(kv_buf_t *b, uint64_t created_ms, kv_slice_t key,
                       const eng_cell_t *c)
{
    size_t vlen = c->tombstone ? 0 : c->value.len;
    kv_buf_clear(b);
    kv_buf_reserve(b, REC_FIXED + key.len + vlen);
    uint8_t *p = b->data;
    p[0] = REC_VERSION;
    p[1] = c->tombstone ? FLAG_TOMBSTONE : 0;
    kv_put_le64(p + 2, created_ms);
    kv_put_le64(p + 10, c->ts);
    kv_put_le64(p + 18, c->expire_ms);
    kv_put_le32(p + 26, (uint32_t)key.len);
    memcpy(p + 30, key.data, key.len);
    kv_put_le32(p + 30 + key.len, (uint32_t)vlen);
    if (vlen) memcpy(p + 34 + key.len, c->value.data, vlen);
    b->len = REC_FIXED + key.len + vlen;
}

/* A decoded record; key and value point into the payload. */
static bool rec_decode(kv_slice_t in, hint_rec_t *out)
{
    const uint8_t *p = in.data;
    if (in.len < REC_FIXED || p[0] != REC_VERSION || (p[1] & ~FLAG_TOMBSTONE))
        return false;
    uint32_t klen = kv_get_le32(p + 26);
    if (klen == 0 || klen > in.len - REC_FIXED) return false;
    uint32_t vlen = kv_get_le32(p + 30 + klen);
    if (vlen != in.len - REC_FIXED - klen) return false;
    memset(out, 0, sizeof *out);
    out->created_ms = kv_get_le64(p + 2);
    out->cell.ts = kv_get_le64(p + 10);
    out->cell.expire_ms = kv_get_le64(p + 18);
    out->cell.tombstone = p[1] & FLAG_TOMBSTONE;
    if (out->cell.tombstone && vlen) return false;
    out->key = kv_slice(p + 30, klen);
    out->cell.value = kv_slice(p + 34 + klen, vlen);
    return true;
}

static int pos_cmp(hint_pos_t a, hint_pos_t b)
{
    if (a.seq != b.seq) return a.seq < b.seq ? -1 : 1;
    if (a.off != b.off) return a.off < b.off ? -1 : 1;
    return 0;
}

/* ---- the cursor file ----------------------------------------------------- */

static kv_status_t cursor_save(const target_t *t)
{
    uint8_t b[CURSOR_LEN];
    memcpy(b, CURSOR_MAGIC, 8);
    kv_put_le64(b + 8, t->cursor.seq);
    kv_put_le64(b + 16, t->cursor.off);
    kv_put_le64(b + 24, XXH3_64bits(b, 24));
    char *tmp = eng_path_join(t->dir, CURSOR_NAME ".tmp");
    char *path = eng_path_join(t->dir, CURSOR_NAME);
    eng_file_t *f = NULL;
    kv_status_t rc;
    KV_ERR(rc = eng_file_create(tmp, &f));
    KV_ERR(rc = eng_file_append(f, b, sizeof b));
    eng_file_close(f);
    f = NULL;
    KV_ERR(rc = eng_fs_rename(tmp, path));
err:
    eng_file_close(f);
    kv_free(tmp);
    kv_free(path);
    return rc;
}

/* The saved cursor; false when it is missing or damaged. */
static bool cursor_load(const target_t *t, hint_pos_t *out)
{
    char *path = eng_path_join(t->dir, CURSOR_NAME);
    kv_buf_t b;
    kv_buf_init(&b);
    bool ok = eng_fs_read_file(path, 4096, &b) == KV_OK && b.len == CURSOR_LEN &&
              !memcmp(b.data, CURSOR_MAGIC, 8) &&
              kv_get_le64(b.data + 24) == XXH3_64bits(b.data, 24);
    if (ok) {
        out->seq = kv_get_le64(b.data + 8);
        out->off = kv_get_le64(b.data + 16);
    }
    kv_buf_deinit(&b);
    kv_free(path);
    return ok;
}

/* ---- targets ------------------------------------------------------------- */

static target_t *target_find(hint_log_t *h, const char *name, size_t *at)
{
    size_t lo = 0, hi = h->nt;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(h->t[mid]->name, name);
        if (c == 0) {
            if (at) *at = mid;
            return h->t[mid];
        }
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    if (at) *at = lo;
    return NULL;
}

static target_t *target_add(hint_log_t *h, const char *name)
{
    size_t at;
    target_t *t = target_find(h, name, &at);
    if (t) return t;
    t = kv_calloc(1, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dir = eng_path_join(h->dir, name);
    pthread_mutex_lock(&h->mu);
    if (h->nt == h->tcap) {
        h->tcap = h->tcap ? h->tcap * 2 : 8;
        h->t = kv_realloc(h->t, h->tcap * sizeof *h->t);
    }
    memmove(h->t + at + 1, h->t + at, (h->nt - at) * sizeof *h->t);
    h->t[at] = t;
    h->nt++;
    pthread_mutex_unlock(&h->mu);
    return t;
}

static void target_free(target_t *t)
{
    eng_log_writer_close(t->w);
    kv_free(t->segs);
    kv_free(t->dir);
    kv_free(t);
}

static seg_t *seg_push(target_t *t, uint64_t seq, uint64_t bytes)
{
    if (t->nsegs == t->segcap) {
        t->segcap = t->segcap ? t->segcap * 2 : 4;
        t->segs = kv_realloc(t->segs, t->segcap * sizeof *t->segs);
    }
    seg_t *s = &t->segs[t->nsegs++];
    memset(s, 0, sizeof *s);
    s->seq = seq;
    s->bytes = bytes;
    return s;
}

static int seg_cmp(const void *a, const void *b)
{
    const seg_t *x = a, *y = b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Close the active segment: sync it if it has unsynced records (a failed
 * sync is returned; the records stay readable, just not surely durable). */
static kv_status_t seal_active(target_t *t)
{
    kv_status_t rc = KV_OK;
    if (!t->w) return KV_OK;
    if (t->dirty) rc = eng_log_writer_sync(t->w);
    eng_log_writer_close(t->w);
    t->w = NULL;
    t->dirty = false;
    return rc;
}

/* Delete segments the cursor has passed: those before its segment, and its
 * segment too when sealed and read to the end. */
static void delete_consumed(hint_log_t *h, target_t *t)
{
    size_t keep = 0;
    for (size_t i = 0; i < t->nsegs; i++) {
        seg_t *s = &t->segs[i];
        bool active = t->w && i == t->nsegs - 1;
        bool gone = s->seq < t->cursor.seq ||
                    (s->seq == t->cursor.seq && !active && t->cursor.off >= s->bytes);
        if (gone) {
            char *p = seg_path(t, s->seq);
            kv_status_t rc = eng_fs_unlink(p);
            if (rc != KV_OK)
                KV_LOG(KV_WARN, "could not delete delivered hints %s: %s", p,
                       kv_errmsg());
            kv_free(p);
            if (rc != KV_OK) {
                t->segs[keep++] = *s;
                continue;
            }
            pthread_mutex_lock(&h->mu);
            t->bytes -= s->bytes;
            pthread_mutex_unlock(&h->mu);
        } else {
            t->segs[keep++] = *s;
        }
    }
    t->nsegs = keep;
}

/* Every record of t was acknowledged: delete its files. */
static void target_clear_files(hint_log_t *h, target_t *t)
{
    eng_log_writer_close(t->w); /* nothing in it is needed: no sync */
    t->w = NULL;
    t->dirty = false;
    t->cursor = (hint_pos_t){t->nsegs ? t->segs[t->nsegs - 1].seq + 1 : 0, 0};
    delete_consumed(h, t);
    if (t->nsegs == 0) {
        char *p = eng_path_join(t->dir, CURSOR_NAME);
        eng_fs_unlink(p);
        kv_free(p);
        t->cursor = (hint_pos_t){0, 0};
    }
}

/* Count damage found by a reader in segment s up to offset `at`, once. */
static uint64_t count_damage(hint_log_t *h, seg_t *s, uint64_t skipped_before,
                             const eng_log_reader_t *r, uint64_t at)
{
    eng_log_read_stats_t rs;
    eng_log_reader_stats(r, &rs);
    uint64_t n = rs.skipped_records - skipped_before;
    if (n == 0 || at <= s->bad_upto) return n;
    s->bad_upto = at;
    pthread_mutex_lock(&h->mu);
    h->st.corrupt += n;
    pthread_mutex_unlock(&h->mu);
    return n;
}

/* A segment whose header cannot be read is skipped whole; counted once. */
static void seg_bad_header(hint_log_t *h, target_t *t, seg_t *s, kv_status_t rc)
{
    if (s->bad_header) return;
    s->bad_header = true;
    KV_LOG(KV_WARN, "hints for %s: segment %016" PRIx64 " is unreadable (%s: %s); "
           "its hints are skipped", t->name, s->seq, kv_status_str(rc), kv_errmsg());
    pthread_mutex_lock(&h->mu);
    h->st.corrupt++;
    pthread_mutex_unlock(&h->mu);
}

/* Open a salvaging reader on segment s, positioned at `off` (or the start). */
static kv_status_t seg_reader(target_t *t, const seg_t *s, uint64_t off,
                              eng_log_reader_t **out)
{
    char *p = seg_path(t, s->seq);
    eng_log_reader_t *r = NULL;
    kv_status_t rc = eng_log_reader_open(p, HINT_MAGIC, true, &r);
    kv_free(p);
    if (rc != KV_OK) return rc;
    if (off > ENG_LOG_HEADER && (rc = eng_log_reader_seek(r, off)) != KV_OK) {
        eng_log_reader_close(r);
        return rc;
    }
    *out = r;
    return KV_OK;
}

/* Count the good records after `from` and the created_ms of the first;
 * damage is counted (once) on the way. */
static kv_status_t target_scan(hint_log_t *h, target_t *t, hint_pos_t from,
                               uint64_t *records, uint64_t *oldest_ms,
                               uint64_t *torn)
{
    *records = *oldest_ms = 0;
    for (size_t i = 0; i < t->nsegs; i++) {
        seg_t *s = &t->segs[i];
        if (s->seq < from.seq) continue;
        eng_log_reader_t *r;
        kv_status_t rc = seg_reader(t, s, s->seq == from.seq ? from.off : 0, &r);
        if (rc == KV_CORRUPT || rc == KV_INVALID) {
            seg_bad_header(h, t, s, rc);
            continue;
        }
        if (rc != KV_OK) return rc;
        kv_slice_t pl;
        uint64_t skipped = 0;
        while ((rc = eng_log_reader_next(r, &pl)) == KV_OK) {
            uint64_t at = eng_log_reader_offset(r);
            count_damage(h, s, skipped, r, at);
            eng_log_read_stats_t rs;
            eng_log_reader_stats(r, &rs);
            skipped = rs.skipped_records;
            hint_rec_t rec;
            if (!rec_decode(pl, &rec)) {
                if (at > s->bad_upto) {
                    s->bad_upto = at;
                    pthread_mutex_lock(&h->mu);
                    h->st.corrupt++;
                    pthread_mutex_unlock(&h->mu);
                }
                continue;
            }
            if (!*records) *oldest_ms = rec.created_ms;
            (*records)++;
        }
        eng_log_read_stats_t rs;
        eng_log_reader_stats(r, &rs);
        if (rs.torn && torn) (*torn)++;
        eng_log_reader_close(r);
        if (rc != KV_NOTFOUND) return rc;
    }
    return KV_OK;
}

/* Load one target directory at open. */
static kv_status_t target_load(hint_log_t *h, const char *name)
{
    target_t *t = target_add(h, name);
    char **names = NULL;
    size_t n = 0;
    kv_status_t rc = eng_fs_list(t->dir, &names, &n);
    if (rc != KV_OK) return rc;
    for (size_t i = 0; i < n; i++) {
        uint64_t seq;
        if (!seg_name_parse(names[i], &seq)) continue;
        char *p = eng_path_join(t->dir, names[i]);
        eng_file_t *f;
        rc = eng_file_open_read(p, &f);
        kv_free(p);
        if (rc != KV_OK) break;
        seg_push(t, seq, eng_file_size(f));
        eng_file_close(f);
        t->bytes += t->segs[t->nsegs - 1].bytes;
    }
    eng_fs_names_free(names, n);
    if (rc != KV_OK) return rc;
    if (t->nsegs) qsort(t->segs, t->nsegs, sizeof *t->segs, seg_cmp);

    bool have = cursor_load(t, &t->cursor);
    bool fits = true;
    if (have) {
        for (size_t i = 0; i < t->nsegs; i++)
            if (t->segs[i].seq == t->cursor.seq &&
                (t->cursor.off > t->segs[i].bytes ||
                 (t->cursor.off && t->cursor.off < ENG_LOG_HEADER)))
                fits = false;
    }
    if ((!have && t->nsegs) || !fits) {
        char *cp = eng_path_join(t->dir, CURSOR_NAME);
        bool exists = false;
        eng_fs_exists(cp, &exists);
        kv_free(cp);
        if (exists || !fits)
            KV_LOG(KV_WARN, "hints for %s: the replay cursor is damaged; "
                   "replaying from the oldest hint (some may arrive twice)", name);
        t->cursor = (hint_pos_t){0, 0};
    }
    uint64_t torn = 0;
    delete_consumed(h, t);
    rc = target_scan(h, t, t->cursor, &t->records, &t->oldest_ms, &torn);
    if (rc != KV_OK) return rc;
    h->st.torn_tails += torn;
    for (size_t i = 0; i < t->nsegs; i++)
        if (t->segs[i].seq >= h->next_seq) h->next_seq = t->segs[i].seq + 1;
    if (t->cursor.seq >= h->next_seq) h->next_seq = t->cursor.seq + 1;
    if (t->records == 0 && t->nsegs) target_clear_files(h, t);
    return KV_OK;
}

/* ---- open / close -------------------------------------------------------- */

kv_status_t hint_log_open(const hint_log_options_t *o, hint_log_t **out)
{
    if (!o->dir || !*o->dir || o->segment_bytes < 4096) return KV_INVALID;
    kv_status_t rc = eng_fs_mkdir(o->dir);
    if (rc != KV_OK) {
        KV_LOG(KV_ERROR, "cannot create the hint directory %s: %s", o->dir,
               kv_errmsg());
        return rc;
    }
    hint_log_t *h = kv_calloc(1, sizeof *h);
    h->o = *o;
    h->dir = kv_strdup(o->dir);
    h->o.dir = h->dir;
    h->next_seq = 1;
    pthread_mutex_init(&h->mu, NULL);
    char **names = NULL;
    size_t n = 0;
    rc = eng_fs_list(h->dir, &names, &n);
    for (size_t i = 0; rc == KV_OK && i < n; i++) {
        if (!target_name_ok(names[i])) continue;
        char *p = eng_path_join(h->dir, names[i]);
        bool isdir = false;
        char *c = eng_path_join(p, ".");
        eng_fs_exists(c, &isdir);
        kv_free(c);
        kv_free(p);
        if (isdir) rc = target_load(h, names[i]);
    }
    eng_fs_names_free(names, n);
    if (rc != KV_OK) {
        KV_LOG(KV_ERROR, "cannot read the hint directory %s: %s", h->dir, kv_errmsg());
        hint_log_close(h);
        return rc;
    }
    *out = h;
    return KV_OK;
}

void hint_log_close(hint_log_t *h)
{
    if (!h) return;
    for (size_t i = 0; i < h->nt; i++) target_free(h->t[i]);
    kv_free(h->t);
    pthread_mutex_destroy(&h->mu);
    kv_free(h->dir);
    kv_free(h);
}

/* ---- appending ----------------------------------------------------------- */

static uint64_t total_bytes_locked(const hint_log_t *h)
{
    uint64_t b = 0;
    for (size_t i = 0; i < h->nt; i++) b += h->t[i]->bytes;
    return b;
}

static void count(hint_log_t *h, uint64_t *field)
{
    pthread_mutex_lock(&h->mu);
    (*field)++;
    pthread_mutex_unlock(&h->mu);
}

/* Start a new active segment for t. */
static kv_status_t start_segment(hint_log_t *h, target_t *t)
{
    kv_status_t rc = eng_fs_mkdir(t->dir);
    if (rc != KV_OK) return rc;
    uint64_t seq = h->next_seq++;
    char *p = seg_path(t, seq);
    rc = eng_log_writer_create(p, HINT_MAGIC, &t->w);
    if (rc != KV_OK) {
        eng_fs_unlink(p);
        kv_free(p);
        return rc;
    }
    kv_free(p);
    /* The segment's name must survive a crash with its records. */
    rc = eng_fs_sync_dir(t->dir);
    if (rc == KV_OK) rc = eng_fs_sync_dir(h->dir);
    if (rc != KV_OK) {
        eng_log_writer_close(t->w);
        t->w = NULL;
        p = seg_path(t, seq);
        eng_fs_unlink(p);
        kv_free(p);
        return rc;
    }
    pthread_mutex_lock(&h->mu);
    seg_push(t, seq, eng_log_writer_size(t->w));
    t->bytes += ENG_LOG_HEADER;
    pthread_mutex_unlock(&h->mu);
    return KV_OK;
}

kv_status_t hint_log_append(hint_log_t *h, const char *target,
                            uint64_t created_ms, kv_slice_t key,
                            const eng_cell_t *cell)
{
    if (!target_name_ok(target) || key.len == 0 ||
        key.len + (cell->tombstone ? 0 : cell->value.len) + REC_FIXED >
            ENG_LOG_MAX_RECORD)
        return KV_INVALID;
    if (created_ms < h->full_until_ms) {
        count(h, &h->st.refused_full);
        return KV_NOSPACE;
    }
    uint64_t need = ENG_LOG_RECORD_HEADER + REC_FIXED + key.len +
                    (cell->tombstone ? 0 : cell->value.len);
    target_t *t = target_find(h, target, NULL);
    pthread_mutex_lock(&h->mu);
    uint64_t total = total_bytes_locked(h);
    pthread_mutex_unlock(&h->mu);
    bool roll = t && t->w && t->segs[t->nsegs - 1].bytes >= h->o.segment_bytes;
    if (!t || !t->w || roll) need += ENG_LOG_HEADER;
    if (total + need > h->o.max_bytes) {
        count(h, &h->st.refused_full);
        return KV_NOSPACE;
    }
    if (!t) t = target_add(h, target);
    kv_status_t rc = KV_OK;
    if (roll && (rc = seal_active(t)) != KV_OK)
        KV_LOG(KV_WARN, "hints for %s: syncing a full segment failed: %s",
               t->name, kv_errmsg());
    if (!t->w && (rc = start_segment(h, t)) != KV_OK) goto failed;

    kv_buf_t b;
    kv_buf_init(&b);
    rec_encode(&b, created_ms, key, cell);
    rc = eng_log_writer_add(t->w, kv_buf_slice(&b));
    kv_buf_deinit(&b);
    if (rc != KV_OK) {
        /* The log was cut back to its last whole record (or the writer is
         * unusable): either way start afresh in a new segment next time. */
        seal_active(t);
        goto failed;
    }
    t->dirty = true;
    pthread_mutex_lock(&h->mu);
    seg_t *s = &t->segs[t->nsegs - 1];
    t->bytes += eng_log_writer_size(t->w) - s->bytes;
    s->bytes = eng_log_writer_size(t->w);
    if (t->records++ == 0) t->oldest_ms = created_ms;
    if (t->appended_since_read++ == 0) t->first_after_read_ms = created_ms;
    h->st.appended++;
    pthread_mutex_unlock(&h->mu);
    return KV_OK;

failed:
    if (rc == KV_NOSPACE) {
        h->full_until_ms = created_ms + FULL_BACKOFF_MS;
        KV_LOG(KV_WARN, "the disk is full: no hints are written for %u s (%s)",
               FULL_BACKOFF_MS / 1000, kv_errmsg());
        count(h, &h->st.refused_full);
    } else {
        KV_LOG(KV_WARN, "writing a hint for %s failed: %s", target, kv_errmsg());
        count(h, &h->st.append_errors);
    }
    return rc;
}

kv_status_t hint_log_sync(hint_log_t *h)
{
    kv_status_t rc = KV_OK;
    for (size_t i = 0; i < h->nt; i++) {
        target_t *t = h->t[i];
        if (!t->w || !t->dirty) continue;
        kv_status_t r = eng_log_writer_sync(t->w);
        if (r != KV_OK) {
            /* Unknown state on disk: this segment takes no more records. */
            KV_LOG(KV_ERROR, "hints for %s: sync failed: %s", t->name, kv_errmsg());
            eng_log_writer_close(t->w);
            t->w = NULL;
            if (rc == KV_OK) rc = r;
        }
        t->dirty = false;
    }
    if (rc == KV_OK) count(h, &h->st.syncs);
    return rc;
}

/* ---- reading ------------------------------------------------------------- */

void hint_batch_init(hint_batch_t *b)
{
    memset(b, 0, sizeof *b);
    kv_buf_init(&b->storage);
}

void hint_batch_free(hint_batch_t *b)
{
    kv_free(b->recs);
    kv_buf_deinit(&b->storage);
    hint_batch_init(b);
}

/* Batch records keep offsets into storage while it grows; fixed at the end. */
static void batch_add(hint_batch_t *b, size_t *cap, const hint_rec_t *r)
{
    if (b->n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        b->recs = kv_realloc(b->recs, *cap * sizeof *b->recs);
    }
    hint_rec_t *d = &b->recs[b->n++];
    *d = *r;
    d->key.data = (const uint8_t *)(uintptr_t)b->storage.len;
    kv_buf_append(&b->storage, r->key.data, r->key.len);
    d->cell.value.data = (const uint8_t *)(uintptr_t)b->storage.len;
    kv_buf_append(&b->storage, r->cell.value.data, r->cell.value.len);
}

static void batch_fix(hint_batch_t *b)
{
    for (size_t i = 0; i < b->n; i++) {
        hint_rec_t *d = &b->recs[i];
        d->key.data = b->storage.data + (uintptr_t)d->key.data;
        d->cell.value.data = b->storage.data + (uintptr_t)d->cell.value.data;
    }
}

kv_status_t hint_log_read(hint_log_t *h, const char *target, uint64_t now_ms,
                          uint64_t max_age_ms, uint64_t max_bytes,
                          hint_batch_t *out)
{
    hint_batch_free(out);
    target_t *t = target_find(h, target, NULL);
    if (!t) return KV_OK;
    out->end = t->cursor;
    size_t cap = 0;
    uint64_t records = 0, next_ms = 0;
    bool stop = false;
    kv_status_t rc = KV_OK;
    for (size_t i = 0; i < t->nsegs && !stop; i++) {
        seg_t *s = &t->segs[i];
        if (s->seq < t->cursor.seq) continue;
        uint64_t from = s->seq == t->cursor.seq ? t->cursor.off : 0;
        if (s->seq > out->end.seq) out->end = (hint_pos_t){s->seq, ENG_LOG_HEADER};
        eng_log_reader_t *r;
        rc = seg_reader(t, s, from, &r);
        if (rc == KV_CORRUPT || rc == KV_INVALID) {
            seg_bad_header(h, t, s, rc);
            out->corrupt++;
            rc = KV_OK;
            continue;
        }
        if (rc != KV_OK) break;
        kv_slice_t pl;
        uint64_t skipped = 0;
        while ((rc = eng_log_reader_next(r, &pl)) == KV_OK) {
            uint64_t at = eng_log_reader_offset(r);
            out->corrupt += count_damage(h, s, skipped, r, at);
            eng_log_read_stats_t rs;
            eng_log_reader_stats(r, &rs);
            skipped = rs.skipped_records;
            hint_rec_t rec;
            if (!rec_decode(pl, &rec)) {
                out->corrupt++;
                if (at > s->bad_upto) {
                    s->bad_upto = at;
                    count(h, &h->st.corrupt);
                }
                out->end = (hint_pos_t){s->seq, at};
                continue;
            }
            if (max_age_ms && rec.created_ms + max_age_ms < now_ms) {
                out->expired++;
                records++;
                out->end = (hint_pos_t){s->seq, at};
                continue;
            }
            if (out->n > 0 && out->bytes + pl.len > max_bytes) {
                out->more = true;
                next_ms = rec.created_ms;
                stop = true;
                break;
            }
            batch_add(out, &cap, &rec);
            out->bytes += pl.len;
            records++;
            out->end = (hint_pos_t){s->seq, at};
        }
        eng_log_reader_close(r);
        if (rc == KV_NOTFOUND) rc = KV_OK;
        if (rc != KV_OK) break;
    }
    if (rc != KV_OK) {
        KV_LOG(KV_WARN, "reading hints for %s failed: %s", target, kv_errmsg());
        hint_batch_free(out);
        return rc;
    }
    batch_fix(out);
    t->rd_valid = true;
    t->rd_end = out->end;
    t->rd_records = records;
    t->rd_expired = out->expired;
    t->rd_next_ms = next_ms;
    t->rd_more = out->more;
    t->appended_since_read = 0;
    t->first_after_read_ms = 0;
    return KV_OK;
}

kv_status_t hint_log_ack(hint_log_t *h, const char *target, hint_pos_t pos)
{
    target_t *t = target_find(h, target, NULL);
    if (!t || pos_cmp(pos, t->cursor) <= 0) return KV_OK;
    uint64_t records, oldest, replayed, expired = 0;
    hint_pos_t old = t->cursor;
    t->cursor = pos;
    if (t->rd_valid && pos_cmp(pos, t->rd_end) == 0) {
        /* The batch just read: what is left is what it did not reach,
         * which is exactly the later appends when it reached the end. */
        records = t->rd_more ? t->records - KV_MIN(t->records, t->rd_records)
                             : t->appended_since_read;
        expired = t->rd_expired;
        replayed = t->rd_records - expired;
        oldest = t->rd_next_ms ? t->rd_next_ms : t->first_after_read_ms;
    } else {
        kv_status_t rc = target_scan(h, t, pos, &records, &oldest, NULL);
        if (rc != KV_OK) {
            t->cursor = old;
            return rc;
        }
        replayed = t->records - KV_MIN(t->records, records);
    }
    t->rd_valid = false;
    pthread_mutex_lock(&h->mu);
    t->records = records;
    t->oldest_ms = records ? oldest : 0;
    h->st.replayed += replayed;
    h->st.expired += expired;
    pthread_mutex_unlock(&h->mu);
    if (records == 0) {
        target_clear_files(h, t);
        return KV_OK;
    }
    kv_status_t rc = cursor_save(t);
    if (rc != KV_OK)
        KV_LOG(KV_WARN, "hints for %s: saving the replay cursor failed: %s "
               "(delivered hints may be delivered again)", t->name, kv_errmsg());
    delete_consumed(h, t);
    return rc;
}

kv_status_t hint_log_drop(hint_log_t *h, const char *target)
{
    size_t at;
    target_t *t = target_find(h, target, &at);
    if (!t) return KV_OK;
    eng_log_writer_close(t->w);
    t->w = NULL;
    t->dirty = false;
    kv_status_t rc = KV_OK;
    for (size_t i = 0; i < t->nsegs; i++) {
        char *p = seg_path(t, t->segs[i].seq);
        KV_TRET(eng_fs_unlink(p));
        kv_free(p);
    }
    char *p = eng_path_join(t->dir, CURSOR_NAME);
    KV_TRET(eng_fs_unlink(p));
    kv_free(p);
    if (rc != KV_OK) {
        KV_LOG(KV_WARN, "deleting the hints for %s failed: %s", target, kv_errmsg());
        return rc;
    }
    rmdir(t->dir); /* best effort: the directory is empty unless someone
                    * put files there */
    pthread_mutex_lock(&h->mu);
    h->st.dropped += t->records;
    memmove(h->t + at, h->t + at + 1, (h->nt - at - 1) * sizeof *h->t);
    h->nt--;
    pthread_mutex_unlock(&h->mu);
    target_free(t);
    return KV_OK;
}

/* ---- figures ------------------------------------------------------------- */

static void target_stats(const target_t *t, hint_target_stats_t *out)
{
    snprintf(out->target, sizeof out->target, "%s", t->name);
    out->records = t->records;
    out->bytes = t->bytes;
    out->oldest_ms = t->oldest_ms;
}

size_t hint_log_targets(hint_log_t *h, hint_target_stats_t *out, size_t cap)
{
    size_t n = 0;
    pthread_mutex_lock(&h->mu);
    for (size_t i = 0; i < h->nt; i++) {
        const target_t *t = h->t[i];
        if (!t->records && !t->bytes) continue;
        if (n < cap) target_stats(t, &out[n]);
        n++;
    }
    pthread_mutex_unlock(&h->mu);
    return n;
}

void hint_log_target(hint_log_t *h, const char *target, hint_target_stats_t *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&h->mu);
    target_t *t = NULL;
    size_t lo = 0, hi = h->nt;
    while (lo < hi && !t) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(h->t[mid]->name, target);
        if (c == 0) t = h->t[mid];
        else if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    if (t) target_stats(t, out);
    pthread_mutex_unlock(&h->mu);
}

void hint_log_get_stats(hint_log_t *h, hint_log_stats_t *out)
{
    pthread_mutex_lock(&h->mu);
    *out = h->st;
    out->bytes = total_bytes_locked(h);
    out->records = 0;
    for (size_t i = 0; i < h->nt; i++) out->records += h->t[i]->records;
    pthread_mutex_unlock(&h->mu);
}
