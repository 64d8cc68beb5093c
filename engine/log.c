/* log.c -- checksummed record logs: the WAL and the manifest (see log.h for
 * the file and record format and the torn-tail / corruption rules).
 *
 * DESIGN  Writer: each record is built as header||payload in one scratch
 *   buffer and handed to eng_file_append as ONE call, so a record reaches
 *   the file in one write(2). If the append fails (full disk: the file layer
 *   may already have written a prefix) the file is truncated back to the end
 *   of the last whole record before the error is returned.
 *
 *   Reader: a window [win_off, win_off + win_len) of the file is kept in
 *   memory, refilled in 1 MiB reads and grown only for a record larger than
 *   that; a record's length is checked against ENG_LOG_MAX_RECORD and the
 *   bytes left in the file before anything is allocated for it. A record at
 *   `off` is accepted when
 *       hcrc == XXH3(len || off) (low 32 bits), len <= ENG_LOG_MAX_RECORD,
 *       off + 16 + len <= file size, and pcrc == XXH3(payload).
 *   When it is not, the reader looks for the next "valid record header"
 *   after it -- a position p whose hcrc matches at p with a len that fits
 *   the file (and, for len 0, whose pcrc is that of an empty payload) --
 *   to tell a torn tail (none: the crash cut the last write) from
 *   corruption (some: good data follows the bad record). The search hashes
 *   at most 12 bytes per offset and never a payload; cheap length checks
 *   reject most offsets of garbage or zeroes before that. Each byte is
 *   scanned at most once per reader, because the search starts past
 *   everything already consumed and the reader then either stops or
 *   resumes at the header found: the cost is O(file size).
 *
 *   Where the search starts: after a bad header, at off + 1 (the length
 *   cannot be trusted); after a good header with a bad payload, at the end
 *   of that record (the length is covered by hcrc). So "the last record in
 *   the file" means no valid record header follows it -- a record whose
 *   payload was half written before a crash, followed by zeroes because
 *   the file size reached the disk before the data, is a torn tail too.
 *
 *   Reader states:
 *
 *       open --(header ok)--> READING --(end of file)-------> END
 *        |                     |   ^ \--(torn tail)---------> END (torn)
 *        |                     |   |  \-(bad record, strict)> CORRUPT
 *        |                     |   |
 *        |                     +---+ (bad record, salvage: skip to next
 *        |                             valid header, count it)
 *        +--(file < 16 bytes)-----------------------------> END (torn)
 *        +--(bad magic/version)---> open fails KV_CORRUPT
 *
 *   END and CORRUPT are sticky: next() keeps answering KV_NOTFOUND /
 *   KV_CORRUPT. A read error (KV_IO, KV_NOMEM) leaves the state unchanged,
 *   so the call can be retried.
 *
 * INVARIANTS
 *   (1) After every eng_log_writer_add -- success or failure -- the file
 *       ends at a record boundary (the writer's size), unless truncating
 *       back failed, in which case the writer is broken (see (3)).
 *   (2) The reader never returns a payload whose pcrc did not match, and
 *       never a record whose header was not written at that offset.
 *   (3) A writer whose on-disk state is unknown -- a failed truncate after
 *       a failed append, or a failed fdatasync (the kernel may have dropped
 *       the dirty pages and will not report it twice) -- is broken: every
 *       later add and sync fails with the first error, and the caller must
 *       start a new log.
 *   (4) win_off <= off <= file size; payload slices point into the window.
 *
 * THREADING  A writer or reader is used by one thread at a time.
 */
#define KV_LOG_MODULE "engine"
#include "log.h"

#include <stdio.h>
#include <xxhash.h>

#include "coding.h"
#include "fs.h"

#define LOG_VERSION 1u
#define LOG_READ_CHUNK (1u << 20)       /* reader refill size */
#define LOG_SCRATCH_KEEP (1u << 20)     /* writer keeps a scratch this big */

/* ---- format helpers ------------------------------------------------------ */

static uint32_t log_hcrc(uint32_t len, uint64_t off)
{
    uint8_t b[12];
    kv_put_le32(b, len);
    kv_put_le64(b + 4, off);
    return (uint32_t)XXH3_64bits(b, sizeof b);
}

static void log_encode_header(uint8_t *h, uint64_t off, kv_slice_t payload)
{
    uint32_t len = (uint32_t)payload.len;
    kv_put_le32(h, len);
    kv_put_le32(h + 4, log_hcrc(len, off));
    kv_put_le64(h + 8, XXH3_64bits(payload.data, payload.len));
}

/* Is there a record header at file offset `off` (bytes at h) that was
 * written there, with a length that fits a file of `fsize` bytes? For an
 * empty record the header is the whole record, so its pcrc (a constant) is
 * checked too: this costs nothing and lets the search run through a
 * zero-filled tail without hashing at every offset. */
static bool log_header_valid(const uint8_t *h, uint64_t off, uint64_t fsize,
                             uint64_t empty_pcrc)
{
    uint32_t len = kv_get_le32(h);
    if (len > ENG_LOG_MAX_RECORD) return false;
    if (fsize - off < ENG_LOG_RECORD_HEADER ||
        fsize - off - ENG_LOG_RECORD_HEADER < len)
        return false;
    if (len == 0 && kv_get_le64(h + 8) != empty_pcrc) return false;
    return kv_get_le32(h + 4) == log_hcrc(len, off);
}

/* ---- writer -------------------------------------------------------------- */

struct eng_log_writer {
    eng_file_t *f;
    kv_buf_t scratch;   /* header || payload of the record being added */
    kv_status_t broken; /* KV_OK, or the error that made the state unknown */
};

kv_status_t eng_log_writer_create(const char *path, const char *magic,
                                  eng_log_writer_t **out)
{
    eng_file_t *f = NULL;
    kv_status_t rc;
    uint8_t h[ENG_LOG_HEADER];
    memcpy(h, magic, 8);
    kv_put_le32(h + 8, LOG_VERSION);
    kv_put_le32(h + 12, 0);
    KV_ERR(rc = eng_file_create(path, &f));
    KV_ERR(rc = eng_file_append(f, h, sizeof h));
    eng_log_writer_t *w = kv_calloc(1, sizeof *w);
    w->f = f;
    w->broken = KV_OK;
    *out = w;
    return KV_OK;
err:
    eng_file_close(f);
    return rc;
}

kv_status_t eng_log_writer_add(eng_log_writer_t *w, kv_slice_t payload)
{
    if (w->broken != KV_OK) {
        kv_errmsg_set("%s: log writer unusable after an earlier failure",
                      eng_file_path(w->f));
        return w->broken;
    }
    if (payload.len > ENG_LOG_MAX_RECORD) {
        kv_errmsg_set("%s: record of %zu bytes exceeds the %u byte maximum",
                      eng_file_path(w->f), payload.len, ENG_LOG_MAX_RECORD);
        return KV_INVALID;
    }
    uint64_t before = eng_file_size(w->f);
    kv_buf_t *b = &w->scratch;
    kv_buf_clear(b);
    kv_buf_reserve(b, ENG_LOG_RECORD_HEADER + payload.len);
    log_encode_header(b->data, before, payload);
    b->len = ENG_LOG_RECORD_HEADER;
    kv_buf_append(b, payload.data, payload.len);

    kv_status_t rc = eng_file_append(w->f, b->data, b->len);
    if (b->cap > LOG_SCRATCH_KEEP) kv_buf_deinit(b); /* don't pin a big one */
    if (rc != KV_OK) {
        /* A prefix of the record may be on disk: cut it off so the log
         * still ends at a record boundary. Keep the append's errmsg. */
        kv_status_t trc = eng_file_truncate(w->f, before);
        if (trc != KV_OK) {
            w->broken = trc;
            KV_LOG(KV_ERROR, "%s: could not cut a failed append back to "
                   "offset %llu; the log writer is unusable",
                   eng_file_path(w->f), (unsigned long long)before);
        }
        return rc;
    }
    return KV_OK;
}

kv_status_t eng_log_writer_sync(eng_log_writer_t *w)
{
    if (w->broken != KV_OK) {
        kv_errmsg_set("%s: log writer unusable after an earlier failure",
                      eng_file_path(w->f));
        return w->broken;
    }
    kv_status_t rc = eng_file_sync(w->f);
    if (rc != KV_OK) w->broken = rc; /* INVARIANT (3): no retrying fsync */
    return rc;
}

uint64_t eng_log_writer_size(const eng_log_writer_t *w)
{
    return eng_file_size(w->f);
}

const char *eng_log_writer_path(const eng_log_writer_t *w)
{
    return eng_file_path(w->f);
}

void eng_log_writer_close(eng_log_writer_t *w)
{
    if (!w) return;
    eng_file_close(w->f);
    kv_buf_deinit(&w->scratch);
    kv_free(w);
}

/* ---- reader -------------------------------------------------------------- */

typedef enum { LOG_READING, LOG_END, LOG_CORRUPT } log_state_t;

struct eng_log_reader {
    eng_file_t *f;
    uint64_t fsize;      /* size at open */
    bool salvage;
    log_state_t state;
    uint64_t off;        /* next record header */
    uint64_t good_end;   /* just past the last record returned */
    uint8_t *win;        /* file bytes [win_off, win_off + win_len) */
    uint64_t win_off;
    size_t win_len;
    size_t win_cap;
    eng_log_read_stats_t st;
    char corrupt_msg[160]; /* re-set as kv_errmsg while CORRUPT */
};

/* Make file bytes [off, off + n) available at r->win + (off - r->win_off).
 * The caller guarantees off + n <= fsize and n <= 16 + ENG_LOG_MAX_RECORD. */
static kv_status_t log_reader_fill(eng_log_reader_t *r, uint64_t off, size_t n)
{
    if (off >= r->win_off && off - r->win_off <= r->win_len &&
        r->win_len - (off - r->win_off) >= n)
        return KV_OK;
    size_t want = KV_MAX(n, (size_t)LOG_READ_CHUNK);
    if (want > r->fsize - off) want = (size_t)(r->fsize - off);
    kv_assert(want >= n);

    uint8_t *dst = r->win;
    if (want > r->win_cap) {
        dst = kv_try_malloc(want);
        if (!dst) {
            kv_errmsg_set("%s: no memory for a %zu byte read buffer",
                          eng_file_path(r->f), want);
            return KV_NOMEM;
        }
    }
    size_t keep = 0; /* bytes already in the window that we can reuse */
    if (r->win_len && off >= r->win_off && off - r->win_off < r->win_len) {
        keep = r->win_len - (size_t)(off - r->win_off);
        memmove(dst, r->win + (off - r->win_off), keep);
    }
    if (dst != r->win) {
        kv_free(r->win);
        r->win = dst;
        r->win_cap = want;
    }
    r->win_off = off;
    r->win_len = keep;
    KV_RET(eng_file_pread(r->f, off + keep, r->win + keep, want - keep));
    r->win_len = want;
    return KV_OK;
}

static const uint8_t *log_reader_at(const eng_log_reader_t *r, uint64_t off)
{
    return r->win + (off - r->win_off);
}

/* First offset p >= from with a valid record header; *found = false when
 * there is none before the end of the file. */
static kv_status_t log_reader_find_header(eng_log_reader_t *r, uint64_t from,
                                          bool *found, uint64_t *at)
{
    uint64_t p = from;
    const uint64_t empty_pcrc = XXH3_64bits(NULL, 0);
    while (p <= r->fsize && r->fsize - p >= ENG_LOG_RECORD_HEADER) {
        size_t n = (size_t)KV_MIN(r->fsize - p, (uint64_t)LOG_READ_CHUNK);
        KV_RET(log_reader_fill(r, p, n));
        uint64_t end = p + n - ENG_LOG_RECORD_HEADER; /* last header start */
        for (; p <= end; p++) {
            const uint8_t *h = log_reader_at(r, p);
            if (log_header_valid(h, p, r->fsize, empty_pcrc)) {
                *found = true;
                *at = p;
                return KV_OK;
            }
        }
    }
    *found = false;
    return KV_OK;
}

static void log_reader_torn(eng_log_reader_t *r, uint64_t off)
{
    r->state = LOG_END;
    r->st.torn = true;
    r->st.torn_offset = off;
    r->st.torn_bytes = r->fsize - off;
}

kv_status_t eng_log_reader_open(const char *path, const char *magic,
                                bool salvage, eng_log_reader_t **out)
{
    eng_file_t *f = NULL;
    eng_log_reader_t *r = NULL;
    kv_status_t rc;
    KV_ERR(rc = eng_file_open_read(path, &f));
    r = kv_calloc(1, sizeof *r);
    r->f = f;
    r->fsize = eng_file_size(f);
    r->salvage = salvage;
    r->state = LOG_READING;
    if (r->fsize < ENG_LOG_HEADER) {
        /* The crash came before the file header was whole. */
        log_reader_torn(r, 0);
        *out = r;
        return KV_OK;
    }
    KV_ERR(rc = log_reader_fill(r, 0, ENG_LOG_HEADER));
    if (memcmp(r->win, magic, 8) != 0) {
        kv_errmsg_set("%s: not a %.8s log (bad magic)", path, magic);
        rc = KV_CORRUPT;
        goto err;
    }
    uint32_t version = kv_get_le32(r->win + 8);
    if (version != LOG_VERSION) {
        kv_errmsg_set("%s: unsupported log version %u", path, version);
        rc = KV_CORRUPT;
        goto err;
    }
    /* The reserved word is ignored: version 1 writes 0 and a later version
     * that gives it a meaning changes the version number. */
    r->off = r->good_end = ENG_LOG_HEADER;
    *out = r;
    return KV_OK;
err:
    if (r) {
        kv_free(r->win);
        kv_free(r);
    }
    eng_file_close(f);
    return rc;
}

/* The record at r->off does not check out (`why`); `from` is where a valid
 * header could next start. Decide torn tail / corruption / skip. Returns
 * KV_OK when the reader should go on (salvage skipped to a valid header). */
static kv_status_t log_reader_bad_record(eng_log_reader_t *r, uint64_t from,
                                         const char *why)
{
    bool found;
    uint64_t at;
    KV_RET(log_reader_find_header(r, from, &found, &at));
    if (!found) {
        log_reader_torn(r, r->off);
        return KV_NOTFOUND;
    }
    snprintf(r->corrupt_msg, sizeof r->corrupt_msg,
             "corrupt record at offset %llu: %s; the next valid record is at "
             "offset %llu", (unsigned long long)r->off, why,
             (unsigned long long)at);
    if (r->salvage) {
        KV_LOG(KV_WARN, "%s: %s; salvage skips %llu bytes",
               eng_file_path(r->f), r->corrupt_msg,
               (unsigned long long)(at - r->off));
        r->st.skipped_records++;
        r->st.skipped_bytes += at - r->off;
        r->off = at;
        return KV_OK;
    }
    r->state = LOG_CORRUPT;
    kv_errmsg_set("%s: %s", eng_file_path(r->f), r->corrupt_msg);
    return KV_CORRUPT;
}

kv_status_t eng_log_reader_next(eng_log_reader_t *r, kv_slice_t *payload)
{
    for (;;) {
        if (r->state == LOG_END) return KV_NOTFOUND;
        if (r->state == LOG_CORRUPT) {
            kv_errmsg_set("%s: %s", eng_file_path(r->f), r->corrupt_msg);
            return KV_CORRUPT;
        }
        uint64_t off = r->off;
        uint64_t left = r->fsize - off;
        if (left == 0) {
            r->state = LOG_END;
            return KV_NOTFOUND;
        }
        if (left < ENG_LOG_RECORD_HEADER) {
            /* The file ends inside a header: nothing can follow it. */
            log_reader_torn(r, off);
            return KV_NOTFOUND;
        }
        KV_RET(log_reader_fill(r, off, ENG_LOG_RECORD_HEADER));
        const uint8_t *h = log_reader_at(r, off);
        uint32_t len = kv_get_le32(h);
        kv_status_t rc;
        if (kv_get_le32(h + 4) != log_hcrc(len, off) ||
            len > ENG_LOG_MAX_RECORD) {
            rc = log_reader_bad_record(r, off + 1,
                                       len > ENG_LOG_MAX_RECORD
                                           ? "length over the maximum"
                                           : "bad header checksum");
            if (rc == KV_OK) continue;
            return rc;
        }
        if (left - ENG_LOG_RECORD_HEADER < len) {
            /* A header written here, its payload cut by the end of file. */
            log_reader_torn(r, off);
            return KV_NOTFOUND;
        }
        uint64_t pcrc = kv_get_le64(h + 8);
        KV_RET(log_reader_fill(r, off, ENG_LOG_RECORD_HEADER + (size_t)len));
        const uint8_t *p = log_reader_at(r, off) + ENG_LOG_RECORD_HEADER;
        if (XXH3_64bits(p, len) != pcrc) {
            uint64_t end = off + ENG_LOG_RECORD_HEADER + len;
            rc = log_reader_bad_record(r, end, "payload checksum mismatch");
            if (rc == KV_OK) continue;
            return rc;
        }
        r->off = r->good_end = off + ENG_LOG_RECORD_HEADER + len;
        r->st.records++;
        *payload = kv_slice(p, len);
        return KV_OK;
    }
}

kv_status_t eng_log_reader_seek(eng_log_reader_t *r, uint64_t off)
{
    if (off < ENG_LOG_HEADER || off > r->fsize) {
        kv_errmsg_set("%s: cannot seek to offset %llu of a %llu byte log",
                      eng_file_path(r->f), (unsigned long long)off,
                      (unsigned long long)r->fsize);
        return KV_INVALID;
    }
    if (r->state == LOG_CORRUPT) return KV_CORRUPT;
    r->off = r->good_end = off;
    r->state = LOG_READING;
    return KV_OK;
}

uint64_t eng_log_reader_offset(const eng_log_reader_t *r)
{
    return r->good_end;
}

void eng_log_reader_stats(const eng_log_reader_t *r, eng_log_read_stats_t *out)
{
    *out = r->st;
}

void eng_log_reader_close(eng_log_reader_t *r)
{
    if (!r) return;
    eng_file_close(r->f);
    kv_free(r->win);
    kv_free(r);
}

/* ---- repair -------------------------------------------------------------- */

kv_status_t eng_log_truncate(const char *path, uint64_t size)
{
    eng_file_t *f = NULL;
    kv_status_t rc;
    KV_ERR(rc = eng_file_open_append(path, &f));
    if (size > eng_file_size(f)) {
        kv_errmsg_set("%s: cannot cut a %llu byte log to %llu bytes", path,
                      (unsigned long long)eng_file_size(f),
                      (unsigned long long)size);
        rc = KV_INVALID;
        goto err;
    }
    KV_ERR(rc = eng_file_truncate(f, size));
    KV_ERR(rc = eng_file_sync(f)); /* the cut must be durable before reuse */
err:
    eng_file_close(f);
    return rc;
}
