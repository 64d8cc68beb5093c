/* hints.h -- durable hint logs: writes a replica missed, kept on the
 * coordinator until the replica is back (hinted handoff).
 *
 * A hint is (target node id, created wall ms, key, cell). Hints for one
 * target live in their own directory as a sequence of append-only segment
 * files in the checksummed record-log format of engine/log.h (magic
 * "CAIRNHNT"); a cursor file says how far replay has been acknowledged.
 *
 *   <dir>/<target>/<seq:016x>.hints   segments, seq grows; one is active
 *   <dir>/<target>/cursor             (seq, offset) acked so far + checksum
 *
 * RECORD   payload, little-endian: version u8 (=1) || flags u8 (bit 0:
 *          tombstone) || created_ms u64 || ts u64 || expire_ms u64 ||
 *          key_len u32 || key || value_len u32 || value.
 * REPLAY   hint_log_read returns the records after the cursor, in the order
 *          they were written, up to a byte budget; hint_log_ack moves the
 *          cursor to the end of a batch once the target acknowledged it, and
 *          deletes segments that lie wholly before the cursor. Nothing is
 *          deleted before its ack, so a replay cut short (either side
 *          restarting) resumes from the cursor; records past the cursor may
 *          be delivered twice, which is harmless (writes are idempotent by
 *          timestamp). The cursor is written to a temporary file and renamed;
 *          it is not fsynced -- losing it only repeats deliveries.
 * DAMAGE   A torn tail (crash mid-append) ends the segment cleanly. A record
 *          that fails its checksum with good records after it (a bit flip)
 *          is skipped, counted and logged; the records around it are still
 *          delivered. A segment whose header is unreadable is skipped whole
 *          and counted. A damaged or missing cursor restarts the target's
 *          replay from its oldest segment (duplicates again, never loss).
 *          Appending never continues a segment written by an earlier
 *          process: each open starts a new one, so a torn tail is never
 *          written after.
 * BOUNDS   max_bytes caps the bytes on disk over all targets; a hint that
 *          would pass it is refused with KV_NOSPACE (counted as refused_full),
 *          as is every hint for 10 s after an append fails for lack of disk
 *          space, so a full disk costs one failed write(2) per 10 s, not one
 *          per hint. Refusing a hint never fails the write it
 *          belongs to.
 * AGE      Hints whose created_ms is older than max_age_ms at read time are
 *          not returned (counted as expired, and acked away with the batch).
 *
 * THREADING  Blocking file I/O: call it from one thread at a time, never the
 *            event loop (node/ runs it on its own worker thread). The stats
 *            functions may be called from any thread.
 */
#ifndef CAIRN_HINTS_H
#define CAIRN_HINTS_H

#include "format.h"
#include "kv.h"

typedef struct hint_log hint_log_t;

/* A target is a node id: 1..64 characters of [0-9a-zA-Z_-]. */
#define HINT_TARGET_MAX 64

typedef struct hint_log_options {
    const char *dir;          /* created if missing */
    uint64_t max_bytes;       /* all targets together; default 1 GiB */
    uint64_t segment_bytes;   /* roll the active segment past this; 8 MiB */
} hint_log_options_t;

void hint_log_options_init(hint_log_options_t *o);

/* Open the directory and scan every target's segments from its cursor
 * (checksums included, so damage is found and counted at start). KV_IO
 * when the directory cannot be created or read. */
kv_status_t hint_log_open(const hint_log_options_t *o, hint_log_t **out);
/* Close without syncing (call hint_log_sync first to keep the last hints). */
void hint_log_close(hint_log_t *h);

/* Append one hint (not synced). KV_OK; KV_NOSPACE (over max_bytes, or the
 * disk was full within the last 10 s: refused, nothing written);
 * KV_INVALID (bad target, empty key); KV_IO / KV_NOSPACE from a failed
 * append (the log stays well-formed, nothing of the hint remains). now_ms
 * for the 10 s back-off is created_ms. */
kv_status_t hint_log_append(hint_log_t *h, const char *target,
                            uint64_t created_ms, kv_slice_t key,
                            const eng_cell_t *cell);
/* fdatasync every segment appended to since the last sync. */
kv_status_t hint_log_sync(hint_log_t *h);

/* A position in a target's log: just after a record. */
typedef struct hint_pos {
    uint64_t seq, off;
} hint_pos_t;

typedef struct hint_rec {
    uint64_t created_ms;
    kv_slice_t key;
    eng_cell_t cell; /* value points into the batch */
} hint_rec_t;

typedef struct hint_batch {
    hint_rec_t *recs;
    size_t n;
    uint64_t bytes;      /* payload bytes of the records returned */
    hint_pos_t end;      /* ack this to consume the batch */
    bool more;           /* records remain after `end` */
    uint64_t expired;    /* records skipped for age */
    uint64_t corrupt;    /* damaged records or segments skipped */
    kv_buf_t storage;    /* owns keys and values */
} hint_batch_t;

void hint_batch_init(hint_batch_t *b);
void hint_batch_free(hint_batch_t *b);

/* Read the target's records after its cursor, at least one record when
 * there is one, then more while the payload bytes stay within max_bytes.
 * Records with created_ms + max_age_ms < now_ms are skipped (max_age_ms 0:
 * no limit). An empty batch with more=false means nothing is pending
 * (end is still worth acking when expired or corrupt records were
 * skipped). KV_IO on a read error. */
kv_status_t hint_log_read(hint_log_t *h, const char *target, uint64_t now_ms,
                          uint64_t max_age_ms, uint64_t max_bytes,
                          hint_batch_t *out);
/* The target acknowledged everything up to pos: persist the cursor and
 * delete the segments wholly before it. A pos behind the cursor is ignored. */
kv_status_t hint_log_ack(hint_log_t *h, const char *target, hint_pos_t pos);
/* Delete every hint for the target (it left the ring); counted as dropped. */
kv_status_t hint_log_drop(hint_log_t *h, const char *target);

/* ---- figures (any thread) ---------------------------------------------- */

typedef struct hint_target_stats {
    char target[HINT_TARGET_MAX + 1];
    uint64_t records;     /* pending: appended or found, not yet acked */
    uint64_t bytes;       /* on disk, segment files */
    uint64_t oldest_ms;   /* created_ms of the oldest pending record; 0 */
} hint_target_stats_t;

/* Targets with anything on disk, sorted by target; returns how many there
 * are (fills at most cap). */
size_t hint_log_targets(hint_log_t *h, hint_target_stats_t *out, size_t cap);
/* One target's figures; all zero when it has none. */
void hint_log_target(hint_log_t *h, const char *target, hint_target_stats_t *out);

typedef struct hint_log_stats {
    uint64_t appended;      /* hints written */
    uint64_t refused_full;  /* refused by max_bytes or a full disk */
    uint64_t append_errors; /* appends that failed with an I/O error */
    uint64_t replayed;      /* records acked by their targets */
    uint64_t expired;       /* skipped for age at read */
    uint64_t dropped;       /* deleted because their target left */
    uint64_t corrupt;       /* damaged records / segments skipped */
    uint64_t torn_tails;    /* segments that ended mid-record */
    uint64_t bytes;         /* on disk now, all targets */
    uint64_t records;       /* pending now, all targets */
    uint64_t syncs;
} hint_log_stats_t;

void hint_log_get_stats(hint_log_t *h, hint_log_stats_t *out);

#endif /* CAIRN_HINTS_H */
