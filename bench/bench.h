/* bench.h -- the store adapter interface of cairn-engine-bench.
 *
 * The driver (engine_bench.c) runs one workload against several storage
 * engines. Each engine is an adapter: one file (engine_<name>.c) that fills
 * in a bench_store_ops_t and is compiled in only when its library was found
 * at build time. The driver never names an engine's API; adapters never
 * generate keys, values or timings.
 *
 * Adapters report failures as kv_status_t and put the engine's own message
 * in kv_errmsg_set(); the driver prints it once.
 */
#ifndef CAIRN_BENCH_H
#define CAIRN_BENCH_H

#include "kv.h"

/* The compression family asked for. Stores lacking it use their closest:
 * LevelDB has only snappy, Cairn only zstd. */
typedef enum {
    BENCH_COMPRESS_ZSTD = 0, /* default: zstd at zstd_level */
    BENCH_COMPRESS_SNAPPY,
    BENCH_COMPRESS_NONE,
} bench_compression_t;

/* The settings every store is opened with (README: "Settings"). */
typedef struct bench_config {
    bench_compression_t compression;
    int bloom_bits_per_key;    /* 10 */
    size_t block_bytes;        /* data block size: 4 KiB */
    size_t cache_bytes;        /* block cache: 32 MiB */
    size_t write_buffer_bytes; /* memtable: 64 MiB */
    int zstd_level;            /* 1 */
} bench_config_t;

typedef struct bench_db bench_db_t;         /* an open store, per adapter */
typedef struct bench_cursor bench_cursor_t; /* a reusable iterator */

typedef struct bench_store_ops {
    const char *name; /* "cairn", "rocksdb", "leveldb" */

    /* One line naming the library version and the settings actually applied
     * (compression in particular), for the report header. */
    void (*describe)(const bench_config_t *cfg, char *buf, size_t n);

    /* Open or create the store in dir. With sync_writes the store is opened
     * for put_sync (Cairn chooses its WAL sync mode at open); without it,
     * writes go to the WAL without a sync each. */
    kv_status_t (*open)(const char *dir, const bench_config_t *cfg,
                        bool sync_writes, bench_db_t **out);
    /* Close without flushing anything the WAL already covers. */
    void (*close)(bench_db_t *db);

    /* WAL on, no sync per write. Safe from one thread. */
    kv_status_t (*put)(bench_db_t *db, kv_slice_t key, kv_slice_t value);
    /* Durable on return. Safe from many threads at once; the store must
     * have been opened with sync_writes. */
    kv_status_t (*put_sync)(bench_db_t *db, kv_slice_t key, kv_slice_t value);

    /* KV_OK with *value_len set, KV_NOTFOUND, or an error. */
    kv_status_t (*get)(bench_db_t *db, kv_slice_t key, size_t *value_len);

    /* A cursor over everything, reused for many seeks. */
    kv_status_t (*cursor_create)(bench_db_t *db, bench_cursor_t **out);
    /* Position at the first entry >= key in the store's own order, then
     * step forward `next` times. *visited counts valid positions (at most
     * next + 1); *bytes sums their key and value lengths (so the reads
     * cannot be optimised away). */
    kv_status_t (*cursor_seek_next)(bench_cursor_t *c, kv_slice_t key,
                                    int next, uint64_t *visited,
                                    uint64_t *bytes);
    void (*cursor_destroy)(bench_cursor_t *c);

    /* Iterate every live entry from the start without filling the block
     * cache. */
    kv_status_t (*scan_all)(bench_db_t *db, uint64_t *entries,
                            uint64_t *bytes);

    /* Flush the memtable and compact everything; return when done. */
    kv_status_t (*settle)(bench_db_t *db);
    /* Bytes the store occupies on disk now. */
    kv_status_t (*disk_bytes)(bench_db_t *db, uint64_t *out);
} bench_store_ops_t;

/* Sum of the sizes of the regular files under dir (recursively). */
kv_status_t bench_dir_bytes(const char *dir, uint64_t *out);

/* The adapters; each exists only when its engine was found at build time
 * (BENCH_WITH_CAIRN, BENCH_WITH_ROCKSDB, BENCH_WITH_LEVELDB). */
extern const bench_store_ops_t bench_cairn_ops;
extern const bench_store_ops_t bench_rocksdb_ops;
extern const bench_store_ops_t bench_leveldb_ops;

#endif /* CAIRN_BENCH_H */
