/* engine_rocksdb.c -- the RocksDB adapter of cairn-engine-bench.
 *
 * DESIGN  Uses RocksDB's C API (rocksdb/c.h) with the bench settings:
 *         block-based tables with 4 KiB blocks, a full (not block-based)
 *         bloom filter of bench_config_t.bloom_bits_per_key, an LRU block
 *         cache, a 64 MiB memtable and zstd at the same level Cairn uses.
 *         Everything else stays at RocksDB's defaults (2 background jobs,
 *         leveled compaction, L0 triggers 4/20/36). Gets copy the value out
 *         (rocksdb_get), as LevelDB's and Cairn's gets do.
 * THREADING  put_sync is called from many threads; a rocksdb_t is
 *         thread-safe and the write options are read-only after open.
 */
#define KV_LOG_MODULE "bench"
#include "bench.h"

#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>

struct bench_db {
    rocksdb_t *db;
    rocksdb_options_t *opt;
    rocksdb_block_based_table_options_t *table;
    rocksdb_cache_t *cache;
    rocksdb_writeoptions_t *wo;      /* WAL, no sync */
    rocksdb_writeoptions_t *wo_sync; /* WAL, sync each write */
    rocksdb_readoptions_t *ro;
    rocksdb_readoptions_t *scan_ro;  /* fill_cache off */
    char *dir;
};

struct bench_cursor {
    rocksdb_iterator_t *it;
};

/* Turn a RocksDB error string into a status; frees it. */
static kv_status_t rdb_error(const char *what, char *err)
{
    kv_errmsg_set("rocksdb %s: %s", what, err);
    rocksdb_free(err);
    return KV_IO;
}

static void rdb_describe(const bench_config_t *cfg, char *buf, size_t n)
{
#ifdef BENCH_ROCKSDB_VERSION
    const char *version = BENCH_ROCKSDB_VERSION;
#else
    const char *version = "?";
#endif
    char comp[32];
    if (cfg->compression == BENCH_COMPRESS_ZSTD)
        snprintf(comp, sizeof(comp), "zstd level %d", cfg->zstd_level);
    else
        snprintf(comp, sizeof(comp), "%s",
                 cfg->compression == BENCH_COMPRESS_SNAPPY ? "snappy"
                                                           : "no compression");
    snprintf(buf, n,
             "RocksDB %s: %s, full bloom %d bits/key, %zu B blocks, "
             "%zu MiB LRU cache, %zu MiB memtable, WAL on",
             version, comp, cfg->bloom_bits_per_key,
             cfg->block_bytes, cfg->cache_bytes >> 20,
             cfg->write_buffer_bytes >> 20);
}

static void rdb_free(bench_db_t *d)
{
    if (d->db) rocksdb_close(d->db);
    if (d->wo) rocksdb_writeoptions_destroy(d->wo);
    if (d->wo_sync) rocksdb_writeoptions_destroy(d->wo_sync);
    if (d->ro) rocksdb_readoptions_destroy(d->ro);
    if (d->scan_ro) rocksdb_readoptions_destroy(d->scan_ro);
    if (d->opt) rocksdb_options_destroy(d->opt);
    if (d->table) rocksdb_block_based_options_destroy(d->table);
    if (d->cache) rocksdb_cache_destroy(d->cache);
    kv_free(d->dir);
    kv_free(d);
}

static kv_status_t rdb_open(const char *dir, const bench_config_t *cfg,
                            bool sync_writes, bench_db_t **out)
{
    KV_UNUSED(sync_writes); /* RocksDB chooses per write */
    bench_db_t *d = kv_calloc(1, sizeof(*d));
    d->dir = kv_strdup(dir);

    d->cache = rocksdb_cache_create_lru(cfg->cache_bytes);
    d->table = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_block_size(d->table, cfg->block_bytes);
    rocksdb_block_based_options_set_block_cache(d->table, d->cache);
    /* The table options take ownership of the policy. */
    rocksdb_block_based_options_set_filter_policy(
        d->table, rocksdb_filterpolicy_create_bloom_full(cfg->bloom_bits_per_key));

    d->opt = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(d->opt, 1);
    rocksdb_options_set_write_buffer_size(d->opt, cfg->write_buffer_bytes);
    switch (cfg->compression) {
    case BENCH_COMPRESS_ZSTD:
        rocksdb_options_set_compression(d->opt, rocksdb_zstd_compression);
        /* window_bits, level, strategy, max_dict_bytes: only level matters */
        rocksdb_options_set_compression_options(d->opt, -14, cfg->zstd_level,
                                                0, 0);
        break;
    case BENCH_COMPRESS_SNAPPY:
        rocksdb_options_set_compression(d->opt, rocksdb_snappy_compression);
        break;
    case BENCH_COMPRESS_NONE:
        rocksdb_options_set_compression(d->opt, rocksdb_no_compression);
        break;
    }
    rocksdb_options_set_block_based_table_factory(d->opt, d->table);

    d->wo = rocksdb_writeoptions_create();
    d->wo_sync = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(d->wo_sync, 1);
    d->ro = rocksdb_readoptions_create();
    d->scan_ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_fill_cache(d->scan_ro, 0);

    char *err = NULL;
    d->db = rocksdb_open(d->opt, dir, &err);
    if (err) {
        kv_status_t rc = rdb_error("open", err);
        rdb_free(d);
        return rc;
    }
    *out = d;
    return KV_OK;
}

static void rdb_close(bench_db_t *d) { rdb_free(d); }

static kv_status_t rdb_put_with(bench_db_t *d, const rocksdb_writeoptions_t *wo,
                                kv_slice_t key, kv_slice_t value)
{
    char *err = NULL;
    rocksdb_put(d->db, wo, (const char *)key.data, key.len,
                (const char *)value.data, value.len, &err);
    return err ? rdb_error("put", err) : KV_OK;
}

static kv_status_t rdb_put(bench_db_t *d, kv_slice_t key, kv_slice_t value)
{
    return rdb_put_with(d, d->wo, key, value);
}

static kv_status_t rdb_put_sync(bench_db_t *d, kv_slice_t key, kv_slice_t value)
{
    return rdb_put_with(d, d->wo_sync, key, value);
}

static kv_status_t rdb_get(bench_db_t *d, kv_slice_t key, size_t *value_len)
{
    char *err = NULL;
    size_t len = 0;
    char *v = rocksdb_get(d->db, d->ro, (const char *)key.data, key.len, &len,
                          &err);
    if (err) return rdb_error("get", err);
    if (!v) return KV_NOTFOUND;
    rocksdb_free(v);
    *value_len = len;
    return KV_OK;
}

static kv_status_t rdb_cursor_create(bench_db_t *d, bench_cursor_t **out)
{
    bench_cursor_t *c = kv_malloc(sizeof(*c));
    c->it = rocksdb_create_iterator(d->db, d->ro);
    *out = c;
    return KV_OK;
}

static kv_status_t rdb_iter_status(const rocksdb_iterator_t *it)
{
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    return err ? rdb_error("iterator", err) : KV_OK;
}

/* Count the current entry and its bytes. */
static void rdb_touch(rocksdb_iterator_t *it, uint64_t *visited,
                      uint64_t *bytes)
{
    size_t kl, vl;
    rocksdb_iter_key(it, &kl);
    rocksdb_iter_value(it, &vl);
    (*visited)++;
    *bytes += kl + vl;
}

static kv_status_t rdb_cursor_seek_next(bench_cursor_t *c, kv_slice_t key,
                                        int next, uint64_t *visited,
                                        uint64_t *bytes)
{
    rocksdb_iter_seek(c->it, (const char *)key.data, key.len);
    for (int i = 0; rocksdb_iter_valid(c->it); i++) {
        rdb_touch(c->it, visited, bytes);
        if (i == next) break;
        rocksdb_iter_next(c->it);
    }
    return rdb_iter_status(c->it);
}

static void rdb_cursor_destroy(bench_cursor_t *c)
{
    rocksdb_iter_destroy(c->it);
    kv_free(c);
}

static kv_status_t rdb_scan_all(bench_db_t *d, uint64_t *entries,
                                uint64_t *bytes)
{
    rocksdb_iterator_t *it = rocksdb_create_iterator(d->db, d->scan_ro);
    uint64_t n = 0, b = 0;
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it);
         rocksdb_iter_next(it))
        rdb_touch(it, &n, &b);
    kv_status_t rc = rdb_iter_status(it);
    rocksdb_iter_destroy(it);
    if (rc == KV_OK) {
        *entries = n;
        *bytes = b;
    }
    return rc;
}

static kv_status_t rdb_settle(bench_db_t *d)
{
    char *err = NULL;
    rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
    rocksdb_flushoptions_set_wait(fo, 1);
    rocksdb_flush(d->db, fo, &err);
    rocksdb_flushoptions_destroy(fo);
    if (err) return rdb_error("flush", err);
    rocksdb_compact_range(d->db, NULL, 0, NULL, 0);
    return KV_OK;
}

static kv_status_t rdb_disk_bytes(bench_db_t *d, uint64_t *out)
{
    return bench_dir_bytes(d->dir, out);
}

const bench_store_ops_t bench_rocksdb_ops = {
    .name = "rocksdb",
    .describe = rdb_describe,
    .open = rdb_open,
    .close = rdb_close,
    .put = rdb_put,
    .put_sync = rdb_put_sync,
    .get = rdb_get,
    .cursor_create = rdb_cursor_create,
    .cursor_seek_next = rdb_cursor_seek_next,
    .cursor_destroy = rdb_cursor_destroy,
    .scan_all = rdb_scan_all,
    .settle = rdb_settle,
    .disk_bytes = rdb_disk_bytes,
};
