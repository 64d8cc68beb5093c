/* engine_cairn.c -- the Cairn engine adapter of cairn-engine-bench.
 *
 * DESIGN  Uses only engine.h. The store is opened with the bench settings
 *         (zstd level, bloom bits, block and cache sizes, memtable size).
 *         Cairn picks its durability at open, not per write: the sync
 *         benchmarks open it with ENG_SYNC_GROUP (every eng_write durable on
 *         return, concurrent writers sharing an fdatasync); everything else
 *         with ENG_SYNC_PERIODIC (WAL written per put, synced every
 *         sync_period_ms -- slightly more work than RocksDB's and LevelDB's
 *         "never sync", which the README notes).
 *
 *         Every put needs an HLC timestamp. The bench issues its own from
 *         one process-wide counter that starts at hlc_make(wall now, 0) and
 *         only grows, so timestamps rise across threads and reopens. The
 *         counter carries from the 16-bit logical part into the wall part,
 *         running ahead of real time by about one millisecond per 65,536
 *         puts -- harmless here, since the engine does not check skew.
 *
 *         Cairn orders entries by (token, key), token = eng_token(key): a
 *         seek goes to (eng_token(key), key) over the full token range and
 *         the "next" entries are the following keys in hash order.
 * THREADING  put_sync is called from many threads; the engine is safe from
 *         any thread and the timestamp counter is atomic.
 */
#define KV_LOG_MODULE "bench"
#include "bench.h"

#include "engine.h"

#include <stdatomic.h>
#include <stdio.h>

struct bench_db {
    eng_t *e;
    eng_read_options_t ro;
    eng_read_options_t scan_ro; /* fill_cache off */
    bool sync_writes;
    char *dir;
};

struct bench_cursor {
    eng_iter_t *it;
};

static _Atomic uint64_t cairn_last_ts;

/* A timestamp above every one issued before in this process. */
static hlc_ts_t cairn_next_ts(void)
{
    return atomic_fetch_add_explicit(&cairn_last_ts, 1, memory_order_relaxed) + 1;
}

/* Move the counter up to wall-clock time if it is behind. */
static void cairn_ts_catch_up(void)
{
    int64_t wall = kv_clock_wall_ms(kv_clock_system());
    uint64_t now = hlc_make(wall > 0 ? (uint64_t)wall : 0, 0);
    uint64_t cur = atomic_load(&cairn_last_ts);
    while (cur < now &&
           !atomic_compare_exchange_weak(&cairn_last_ts, &cur, now))
        ;
}

static kv_status_t cairn_error(const char *what, kv_status_t rc)
{
    char detail[256]; /* kv_errmsg_set overwrites kv_errmsg()'s buffer */
    snprintf(detail, sizeof(detail), "%s", kv_errmsg());
    kv_errmsg_set("cairn %s: %s%s%s", what, kv_status_str(rc),
                  detail[0] ? ": " : "", detail);
    return rc;
}

static void cairn_describe(const bench_config_t *cfg, char *buf, size_t n)
{
    char comp[48];
    if (cfg->compression == BENCH_COMPRESS_NONE)
        snprintf(comp, sizeof(comp), "no compression");
    else
        snprintf(comp, sizeof(comp), "zstd level %d%s", cfg->zstd_level,
                 cfg->compression == BENCH_COMPRESS_SNAPPY
                     ? " (Cairn has no snappy)" : "");
    snprintf(buf, n,
             "Cairn engine: %s, bloom %d bits/key, %zu B blocks, "
             "%zu MiB cache, %zu MiB memtable, WAL on (periodic sync; group "
             "sync for sync benchmarks)",
             comp, cfg->bloom_bits_per_key, cfg->block_bytes,
             cfg->cache_bytes >> 20, cfg->write_buffer_bytes >> 20);
}

static kv_status_t cairn_open(const char *dir, const bench_config_t *cfg,
                              bool sync_writes, bench_db_t **out)
{
    eng_options_t o;
    eng_options_init(&o);
    o.dir = dir;
    o.sync = sync_writes ? ENG_SYNC_GROUP : ENG_SYNC_PERIODIC;
    o.memtable_bytes = cfg->write_buffer_bytes;
    o.block_bytes = cfg->block_bytes;
    o.compression_level =
        cfg->compression == BENCH_COMPRESS_NONE ? 0 : cfg->zstd_level;
    o.bloom_bits_per_key = cfg->bloom_bits_per_key;
    o.cache_bytes = cfg->cache_bytes;

    eng_t *e = NULL;
    kv_status_t rc = eng_open(&o, &e);
    if (rc != KV_OK) return cairn_error("open", rc);

    bench_db_t *d = kv_calloc(1, sizeof(*d));
    d->e = e;
    d->sync_writes = sync_writes;
    d->dir = kv_strdup(dir);
    eng_read_options_init(&d->ro);
    eng_read_options_init(&d->scan_ro);
    d->scan_ro.fill_cache = false;
    cairn_ts_catch_up();
    *out = d;
    return KV_OK;
}

static void cairn_close(bench_db_t *d)
{
    eng_close(d->e);
    kv_free(d->dir);
    kv_free(d);
}

static kv_status_t cairn_put(bench_db_t *d, kv_slice_t key, kv_slice_t value)
{
    kv_status_t rc = eng_put(d->e, key, value, cairn_next_ts(), 0, NULL);
    return rc == KV_OK ? KV_OK : cairn_error("put", rc);
}

static kv_status_t cairn_put_sync(bench_db_t *d, kv_slice_t key,
                                  kv_slice_t value)
{
    if (!d->sync_writes) {
        kv_errmsg_set("cairn put_sync: store not opened with ENG_SYNC_GROUP");
        return KV_INVALID;
    }
    return cairn_put(d, key, value);
}

static kv_status_t cairn_get(bench_db_t *d, kv_slice_t key, size_t *value_len)
{
    eng_value_t v;
    kv_status_t rc = eng_get(d->e, &d->ro, key, &v);
    if (rc == KV_NOTFOUND) return KV_NOTFOUND;
    if (rc != KV_OK) return cairn_error("get", rc);
    bool tombstone = v.tombstone;
    size_t len = v.value.len;
    eng_value_free(&v);
    if (tombstone) return KV_NOTFOUND;
    *value_len = len;
    return KV_OK;
}

static kv_status_t cairn_cursor_create(bench_db_t *d, bench_cursor_t **out)
{
    bench_cursor_t *c = kv_malloc(sizeof(*c));
    c->it = eng_iter_create(d->e, &d->ro, 0, UINT64_MAX);
    *out = c;
    return KV_OK;
}

/* Count the current entry and its bytes. Seeks count tombstones like any
 * entry (the bench writes none); the full scan skips them. */
static void cairn_touch(eng_iter_t *it, uint64_t *visited, uint64_t *bytes)
{
    (*visited)++;
    *bytes += eng_iter_key(it).len + eng_iter_value(it).len;
}

static kv_status_t cairn_cursor_seek_next(bench_cursor_t *c, kv_slice_t key,
                                          int next, uint64_t *visited,
                                          uint64_t *bytes)
{
    eng_iter_seek(c->it, eng_token(key), key);
    for (int i = 0; eng_iter_valid(c->it); i++) {
        cairn_touch(c->it, visited, bytes);
        if (i == next) break;
        eng_iter_next(c->it);
    }
    kv_status_t rc = eng_iter_status(c->it);
    return rc == KV_OK ? KV_OK : cairn_error("iterator", rc);
}

static void cairn_cursor_destroy(bench_cursor_t *c)
{
    eng_iter_destroy(c->it);
    kv_free(c);
}

static kv_status_t cairn_scan_all(bench_db_t *d, uint64_t *entries,
                                  uint64_t *bytes)
{
    eng_iter_t *it = eng_iter_create(d->e, &d->scan_ro, 0, UINT64_MAX);
    uint64_t n = 0, b = 0;
    for (eng_iter_seek_first(it); eng_iter_valid(it); eng_iter_next(it))
        if (!eng_iter_tombstone(it)) cairn_touch(it, &n, &b);
    kv_status_t rc = eng_iter_status(it);
    eng_iter_destroy(it);
    if (rc != KV_OK) return cairn_error("scan", rc);
    *entries = n;
    *bytes = b;
    return KV_OK;
}

static kv_status_t cairn_settle(bench_db_t *d)
{
    kv_status_t rc = eng_flush(d->e);
    if (rc != KV_OK) return cairn_error("flush", rc);
    rc = eng_compact_range(d->e, 0, UINT64_MAX);
    return rc == KV_OK ? KV_OK : cairn_error("compact_range", rc);
}

static kv_status_t cairn_disk_bytes(bench_db_t *d, uint64_t *out)
{
    return bench_dir_bytes(d->dir, out);
}

const bench_store_ops_t bench_cairn_ops = {
    .name = "cairn",
    .describe = cairn_describe,
    .open = cairn_open,
    .close = cairn_close,
    .put = cairn_put,
    .put_sync = cairn_put_sync,
    .get = cairn_get,
    .cursor_create = cairn_cursor_create,
    .cursor_seek_next = cairn_cursor_seek_next,
    .cursor_destroy = cairn_cursor_destroy,
    .scan_all = cairn_scan_all,
    .settle = cairn_settle,
    .disk_bytes = cairn_disk_bytes,
};
