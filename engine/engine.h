/* engine.h -- Cairn's local storage engine: a log-structured merge tree of
 * last-write-wins cells ordered by (token, key).
 *
 * A cell is key -> (value | tombstone, HLC timestamp, optional expiry). The
 * engine keeps only the winner of each key by last-write-wins (plus older
 * versions a live snapshot still needs) and answers a write older than the
 * cell it holds with KV_SUPERSEDED and the timestamp that beats it.
 *
 * Writes are durable when they return (sync = group, the default: many
 * concurrent writers share one fdatasync) or within sync_period_ms
 * (sync = periodic). Reads never block on writers. Everything is safe to
 * call from any thread; slow work (flush, compaction, fsync) runs on the
 * engine's own threads, and eng_write_async lets an event loop submit a
 * write without waiting for the disk.
 */
#ifndef CAIRN_ENGINE_H
#define CAIRN_ENGINE_H

#include "clock.h"
#include "hlc.h"
#include "kv.h"

#define ENG_MAX_KEY_LEN (64u * 1024)
#define ENG_DEFAULT_MAX_VALUE (16u * 1024 * 1024)

/* The partitioner token of a key: XXH3-64 of its bytes. The ring uses the
 * same function, so engine order and ring order agree. */
uint64_t eng_token(kv_slice_t key);

typedef struct eng eng_t;

typedef enum { ENG_SYNC_GROUP = 0, ENG_SYNC_PERIODIC = 1 } eng_sync_t;

typedef struct eng_options {
    const char *dir;               /* data directory, created if missing */
    const kv_clock_t *clock;       /* expiry and gc_grace; default system */
    eng_sync_t sync;               /* default ENG_SYNC_GROUP */
    uint32_t sync_period_ms;       /* with ENG_SYNC_PERIODIC; default 100 */
    size_t memtable_bytes;         /* flush threshold; default 64 MiB */
    size_t max_value_len;          /* default 16 MiB; larger -> KV_INVALID */
    size_t block_bytes;            /* SSTable data block; default 4 KiB */
    int restart_interval;          /* keys between restart points; 16 */
    int compression_level;         /* zstd level; 0 = off; default 1 */
    int bloom_bits_per_key;        /* default 10; 0 = no filter */
    size_t cache_bytes;            /* block cache; default 32 MiB */
    size_t table_bytes;            /* target SSTable size; default 64 MiB */
    int l0_compaction_trigger;     /* default 4 */
    int l0_slowdown_trigger;       /* writes delayed 1 ms each; default 20 */
    int l0_stop_trigger;           /* writes wait; default 36 */
    uint64_t level1_bytes;         /* default 256 MiB; x10 per level */
    uint64_t compaction_bytes_per_sec; /* rate limit; 0 = unlimited */
    uint64_t gc_grace_ms;          /* tombstone lifetime; default 10 days */
    int background_threads;        /* flush + compaction; default 2 */
    bool salvage;                  /* skip WAL corruption instead of failing */
    bool create_if_missing;        /* default true */
} eng_options_t;

void eng_options_init(eng_options_t *o);

/* Open (creating if allowed) the engine in o->dir and replay its WAL.
 * KV_CORRUPT when stored state is damaged (kv_errmsg() names file and
 * offset); a torn WAL tail is cut, logged and counted, not an error. */
kv_status_t eng_open(const eng_options_t *o, eng_t **out);
/* Finish background work in progress, sync the WAL, release everything.
 * The memtable is not flushed (the WAL covers it); call eng_flush first for
 * a quick next open. */
void eng_close(eng_t *e);

/* ---- writes ------------------------------------------------------------ */

typedef struct eng_batch eng_batch_t;

eng_batch_t *eng_batch_create(void);
void eng_batch_destroy(eng_batch_t *b);
void eng_batch_clear(eng_batch_t *b);
/* expire_ms: absolute wall-clock ms after which the value reads as deleted;
 * 0 = never. */
void eng_batch_put(eng_batch_t *b, kv_slice_t key, kv_slice_t value,
                   hlc_ts_t ts, uint64_t expire_ms);
void eng_batch_delete(eng_batch_t *b, kv_slice_t key, hlc_ts_t ts);
size_t eng_batch_count(const eng_batch_t *b);

/* Per-operation outcome of a batch write. */
typedef struct eng_result {
    kv_status_t status;   /* KV_OK, or KV_SUPERSEDED */
    hlc_ts_t superseded_by; /* with KV_SUPERSEDED: the timestamp held */
} eng_result_t;

/* Apply a batch atomically: all accepted operations become durable and
 * visible together. An operation older than the cell held is not applied
 * and reported KV_SUPERSEDED in results[i] (results may be NULL); the
 * others still apply. The call's status is KV_OK when the batch was
 * processed, or KV_INVALID (oversized key or value: nothing applied),
 * KV_NOSPACE (a full disk: nothing applied; the engine stays readable and
 * accepts writes again once there is space), KV_IO (an I/O error; after a
 * failed fsync what reached the disk is unknown, so the engine refuses
 * writes until it is reopened, and keeps serving reads), KV_CLOSED. */
kv_status_t eng_write(eng_t *e, const eng_batch_t *b, eng_result_t *results);

/* The same without waiting: done(arg, status, results) is called exactly
 * once, on an engine thread, after the batch is durable (or failed). The
 * engine copies the batch; the caller may destroy it on return. results
 * is valid only during the callback. KV_BUSY without a callback when more
 * than max in-flight bytes are queued. */
typedef void (*eng_write_cb)(void *arg, kv_status_t status,
                             const eng_result_t *results, size_t n);
kv_status_t eng_write_async(eng_t *e, const eng_batch_t *b, eng_write_cb done,
                            void *arg);

/* One-operation conveniences around eng_write. KV_SUPERSEDED sets
 * *superseded_by (may be NULL). */
kv_status_t eng_put(eng_t *e, kv_slice_t key, kv_slice_t value, hlc_ts_t ts,
                    uint64_t expire_ms, hlc_ts_t *superseded_by);
kv_status_t eng_delete(eng_t *e, kv_slice_t key, hlc_ts_t ts,
                       hlc_ts_t *superseded_by);

/* ---- reads ------------------------------------------------------------- */

typedef struct eng_snapshot eng_snapshot_t;

/* A consistent point-in-time view; reads through it see nothing written
 * after. Release every snapshot (they hold back compaction). */
eng_snapshot_t *eng_snapshot_create(eng_t *e);
void eng_snapshot_release(eng_t *e, eng_snapshot_t *s);

typedef struct eng_read_options {
    const eng_snapshot_t *snapshot; /* NULL = latest */
    bool no_io;                     /* KV_AGAIN instead of reading the disk */
    bool fill_cache;                /* default true; scans may say false */
} eng_read_options_t;

void eng_read_options_init(eng_read_options_t *o);

/* The cell found for a key. value is a kv_malloc'd copy owned by the
 * caller (free with eng_value_free); empty for tombstones. An expired
 * value is reported as a tombstone at its timestamp. */
typedef struct eng_value {
    hlc_ts_t ts;
    uint64_t expire_ms;
    bool tombstone;
    kv_buf_t value;
} eng_value_t;

void eng_value_free(eng_value_t *v);

/* KV_OK with *out set (a value or a tombstone -- check out->tombstone),
 * KV_NOTFOUND when the engine holds nothing for the key, KV_AGAIN with
 * no_io when the answer needs a disk read, KV_CORRUPT / KV_IO on damage. */
kv_status_t eng_get(eng_t *e, const eng_read_options_t *ro, kv_slice_t key,
                    eng_value_t *out);

/* ---- range iteration over tokens --------------------------------------- */

/* Yields the winning cell of each key whose token is in [start, end]
 * (inclusive; start > end wraps around the ring), in (token, key) order,
 * tombstones included (check tombstone) so repair and streaming see them. */
typedef struct eng_iter eng_iter_t;

eng_iter_t *eng_iter_create(eng_t *e, const eng_read_options_t *ro,
                            uint64_t start_token, uint64_t end_token);
void eng_iter_destroy(eng_iter_t *it);
void eng_iter_seek_first(eng_iter_t *it);
/* First key >= (token, key) within the range. */
void eng_iter_seek(eng_iter_t *it, uint64_t token, kv_slice_t key);
bool eng_iter_valid(eng_iter_t *it);
void eng_iter_next(eng_iter_t *it);
kv_slice_t eng_iter_key(eng_iter_t *it);   /* the user key */
uint64_t eng_iter_token(eng_iter_t *it);
kv_slice_t eng_iter_value(eng_iter_t *it); /* empty for tombstones */
hlc_ts_t eng_iter_ts(eng_iter_t *it);
uint64_t eng_iter_expire_ms(eng_iter_t *it);
bool eng_iter_tombstone(eng_iter_t *it);   /* expired values included */
kv_status_t eng_iter_status(eng_iter_t *it);

/* ---- maintenance ------------------------------------------------------- */

/* Write the memtable to an SSTable and wait for it. */
kv_status_t eng_flush(eng_t *e);
/* Compact every table overlapping tokens [start, end] down the levels and
 * wait; [0, UINT64_MAX] compacts everything. */
kv_status_t eng_compact_range(eng_t *e, uint64_t start_token,
                              uint64_t end_token);

/* Cleanup after a ring change: rewrite every table, dropping every version
 * of every key whose token keep(arg, token) rejects (tombstones too: the
 * range is no longer this node's). The memtable is flushed first; writes
 * that arrive meanwhile are kept. *dropped counts the entries dropped.
 * keep runs on the calling thread. */
typedef bool (*eng_keep_fn)(void *arg, uint64_t token);
kv_status_t eng_cleanup(eng_t *e, eng_keep_fn keep, void *arg, uint64_t *dropped);

typedef struct eng_stats {
    uint64_t puts, deletes, gets, superseded;
    uint64_t memtable_bytes, memtable_entries;
    uint64_t imm_memtables;
    int levels;
    uint64_t tables_per_level[8];
    uint64_t bytes_per_level[8];
    uint64_t live_bytes;             /* all live SSTables */
    uint64_t flushes, compactions;
    uint64_t compaction_bytes_read, compaction_bytes_written;
    uint64_t tombstones_dropped, versions_dropped;
    uint64_t cache_hits, cache_misses, cache_bytes, cache_capacity;
    uint64_t bloom_checks, bloom_negatives;
    uint64_t wal_syncs, wal_records, wal_bytes;
    uint64_t wal_group_writes;       /* batches that shared those syncs */
    uint64_t wal_torn_tails, wal_torn_bytes; /* cut at open */
    uint64_t wal_recovered_ops;      /* writes replayed from WALs at open: 0
                                        when the last run flushed before it
                                        closed (a clean shutdown) */
    uint64_t write_stalls_ms;
    uint64_t background_errors;
    kv_status_t background_error;    /* last one, KV_OK if none */
    uint64_t last_seq;
} eng_stats_t;

void eng_get_stats(eng_t *e, eng_stats_t *out);

#endif /* CAIRN_ENGINE_H */
