/* engine_leveldb.c -- the LevelDB adapter of cairn-engine-bench.
 *
 * DESIGN  Uses LevelDB's C API (leveldb/c.h) with the bench settings: 4 KiB
 *         blocks, a bloom filter of bench_config_t.bloom_bits_per_key, an LRU
 *         block cache and a 64 MiB write buffer. LevelDB has no zstd; it gets
 *         snappy, its only compressor. Whether the library was built with
 *         snappy cannot be asked through the C API (without it LevelDB
 *         silently stores blocks raw), so the driver checks the bytes on
 *         disk against the raw data size and says so when they match.
 *         Other settings stay at LevelDB's defaults (2 MiB tables, one
 *         background thread, 1000 open files).
 * THREADING  put_sync is called from many threads; a leveldb_t is
 *         thread-safe and the write options are read-only after open.
 *         LevelDB does not own the cache or filter policy: they live until
 *         close.
 */
#define KV_LOG_MODULE "bench"
#include "bench.h"

#include <leveldb/c.h>
#include <stdio.h>
#include <stdlib.h>

struct bench_db {
    leveldb_t *db;
    leveldb_options_t *opt;
    leveldb_cache_t *cache;
    leveldb_filterpolicy_t *filter;
    leveldb_writeoptions_t *wo;      /* log, no sync */
    leveldb_writeoptions_t *wo_sync; /* log, sync each write */
    leveldb_readoptions_t *ro;
    leveldb_readoptions_t *scan_ro;  /* fill_cache off */
    char *dir;
};

struct bench_cursor {
    leveldb_iterator_t *it;
};

/* Turn a LevelDB error string into a status; frees it. */
static kv_status_t ldb_error(const char *what, char *err)
{
    kv_errmsg_set("leveldb %s: %s", what, err);
    leveldb_free(err);
    return KV_IO;
}

static void ldb_describe(const bench_config_t *cfg, char *buf, size_t n)
{
    snprintf(buf, n,
             "LevelDB %d.%d: %s, bloom %d bits/key, "
             "%zu B blocks, %zu MiB LRU cache, %zu MiB write buffer, log on",
             leveldb_major_version(), leveldb_minor_version(),
             cfg->compression == BENCH_COMPRESS_NONE ? "no compression"
             : cfg->compression == BENCH_COMPRESS_ZSTD
                 ? "snappy (LevelDB has no zstd)"
                 : "snappy",
             cfg->bloom_bits_per_key, cfg->block_bytes, cfg->cache_bytes >> 20,
             cfg->write_buffer_bytes >> 20);
}

static void ldb_free(bench_db_t *d)
{
    if (d->db) leveldb_close(d->db);
    if (d->wo) leveldb_writeoptions_destroy(d->wo);
    if (d->wo_sync) leveldb_writeoptions_destroy(d->wo_sync);
    if (d->ro) leveldb_readoptions_destroy(d->ro);
    if (d->scan_ro) leveldb_readoptions_destroy(d->scan_ro);
    if (d->opt) leveldb_options_destroy(d->opt);
    if (d->filter) leveldb_filterpolicy_destroy(d->filter);
    if (d->cache) leveldb_cache_destroy(d->cache);
    kv_free(d->dir);
    kv_free(d);
}

static kv_status_t ldb_open(const char *dir, const bench_config_t *cfg,
                            bool sync_writes, bench_db_t **out)
{
    KV_UNUSED(sync_writes); /* LevelDB chooses per write */
    bench_db_t *d = kv_calloc(1, sizeof(*d));
    d->dir = kv_strdup(dir);

    d->cache = leveldb_cache_create_lru(cfg->cache_bytes);
    d->filter = leveldb_filterpolicy_create_bloom(cfg->bloom_bits_per_key);
    d->opt = leveldb_options_create();
    leveldb_options_set_create_if_missing(d->opt, 1);
    leveldb_options_set_write_buffer_size(d->opt, cfg->write_buffer_bytes);
    leveldb_options_set_block_size(d->opt, cfg->block_bytes);
    leveldb_options_set_cache(d->opt, d->cache);
    leveldb_options_set_filter_policy(d->opt, d->filter);
    leveldb_options_set_compression(d->opt,
                                    cfg->compression == BENCH_COMPRESS_NONE
                                        ? leveldb_no_compression
                                        : leveldb_snappy_compression);

    d->wo = leveldb_writeoptions_create();
    d->wo_sync = leveldb_writeoptions_create();
    leveldb_writeoptions_set_sync(d->wo_sync, 1);
    d->ro = leveldb_readoptions_create();
    d->scan_ro = leveldb_readoptions_create();
    leveldb_readoptions_set_fill_cache(d->scan_ro, 0);

    char *err = NULL;
    d->db = leveldb_open(d->opt, dir, &err);
    if (err) {
        kv_status_t rc = ldb_error("open", err);
        ldb_free(d);
        return rc;
    }
    *out = d;
    return KV_OK;
}

static void ldb_close(bench_db_t *d) { ldb_free(d); }

static kv_status_t ldb_put_with(bench_db_t *d, const leveldb_writeoptions_t *wo,
                                kv_slice_t key, kv_slice_t value)
{
    char *err = NULL;
    leveldb_put(d->db, wo, (const char *)key.data, key.len,
                (const char *)value.data, value.len, &err);
    return err ? ldb_error("put", err) : KV_OK;
}

static kv_status_t ldb_put(bench_db_t *d, kv_slice_t key, kv_slice_t value)
{
    return ldb_put_with(d, d->wo, key, value);
}

static kv_status_t ldb_put_sync(bench_db_t *d, kv_slice_t key, kv_slice_t value)
{
    return ldb_put_with(d, d->wo_sync, key, value);
}

static kv_status_t ldb_get(bench_db_t *d, kv_slice_t key, size_t *value_len)
{
    char *err = NULL;
    size_t len = 0;
    char *v = leveldb_get(d->db, d->ro, (const char *)key.data, key.len, &len,
                          &err);
    if (err) return ldb_error("get", err);
    if (!v) return KV_NOTFOUND;
    leveldb_free(v);
    *value_len = len;
    return KV_OK;
}

static kv_status_t ldb_cursor_create(bench_db_t *d, bench_cursor_t **out)
{
    bench_cursor_t *c = kv_malloc(sizeof(*c));
    c->it = leveldb_create_iterator(d->db, d->ro);
    *out = c;
    return KV_OK;
}

static kv_status_t ldb_iter_status(const leveldb_iterator_t *it)
{
    char *err = NULL;
    leveldb_iter_get_error(it, &err);
    return err ? ldb_error("iterator", err) : KV_OK;
}

/* Count the current entry and its bytes. */
static void ldb_touch(const leveldb_iterator_t *it, uint64_t *visited,
                      uint64_t *bytes)
{
    size_t kl, vl;
    leveldb_iter_key(it, &kl);
    leveldb_iter_value(it, &vl);
    (*visited)++;
    *bytes += kl + vl;
}

static kv_status_t ldb_cursor_seek_next(bench_cursor_t *c, kv_slice_t key,
                                        int next, uint64_t *visited,
                                        uint64_t *bytes)
{
    leveldb_iter_seek(c->it, (const char *)key.data, key.len);
    for (int i = 0; leveldb_iter_valid(c->it); i++) {
        ldb_touch(c->it, visited, bytes);
        if (i == next) break;
        leveldb_iter_next(c->it);
    }
    return ldb_iter_status(c->it);
}

static void ldb_cursor_destroy(bench_cursor_t *c)
{
    leveldb_iter_destroy(c->it);
    kv_free(c);
}

static kv_status_t ldb_scan_all(bench_db_t *d, uint64_t *entries,
                                uint64_t *bytes)
{
    leveldb_iterator_t *it = leveldb_create_iterator(d->db, d->scan_ro);
    uint64_t n = 0, b = 0;
    for (leveldb_iter_seek_to_first(it); leveldb_iter_valid(it);
         leveldb_iter_next(it))
        ldb_touch(it, &n, &b);
    kv_status_t rc = ldb_iter_status(it);
    leveldb_iter_destroy(it);
    if (rc == KV_OK) {
        *entries = n;
        *bytes = b;
    }
    return rc;
}

static kv_status_t ldb_settle(bench_db_t *d)
{
    /* CompactRange over everything writes the memtable out first. */
    leveldb_compact_range(d->db, NULL, 0, NULL, 0);
    return KV_OK;
}

static kv_status_t ldb_disk_bytes(bench_db_t *d, uint64_t *out)
{
    return bench_dir_bytes(d->dir, out);
}

const bench_store_ops_t bench_leveldb_ops = {
    .name = "leveldb",
    .describe = ldb_describe,
    .open = ldb_open,
    .close = ldb_close,
    .put = ldb_put,
    .put_sync = ldb_put_sync,
    .get = ldb_get,
    .cursor_create = ldb_cursor_create,
    .cursor_seek_next = ldb_cursor_seek_next,
    .cursor_destroy = ldb_cursor_destroy,
    .scan_all = ldb_scan_all,
    .settle = ldb_settle,
    .disk_bytes = ldb_disk_bytes,
};
