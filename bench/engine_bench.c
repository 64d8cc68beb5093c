/* engine_bench.c -- cairn-engine-bench: one storage workload run against
 * Cairn's engine, RocksDB and LevelDB, printed as one comparison table.
 *
 * DESIGN  Each store sits behind a bench_store_ops_t adapter (bench.h); this
 *         file owns the workload, the clock and the report. Stores run one
 *         after another, each in its own fresh directory, through the
 *         benchmarks in the order given (default: fillrandom, readrandom,
 *         seekrandom, scan, size, sync1, sync16):
 *
 *           fillrandom  num puts of unique 16-byte keys in random key order
 *           readrandom  close, reopen, num gets of random existing keys
 *           seekrandom  `seeks` times: seek to a random existing key, 10 next
 *           scan        iterate everything, entries/s
 *           size        flush + full compaction, then bytes in the directory
 *           syncN       sync_ops durable puts of new keys from N threads
 *
 *         With --repeat R the whole sequence runs R times, the stores taking
 *         turns (A B A B ...), each round in a fresh directory; the table
 *         shows medians and the min..max of each cell.
 *
 *         A benchmark that reads the data fills the store first (unreported)
 *         when fillrandom did not run. A store is reopened when a benchmark
 *         needs the other durability mode (Cairn decides it at open).
 *
 *         Keys need no table: key i is the 16 lower-case hex digits of
 *         key_scramble(i + salt), a bijection on 64-bit integers, so keys
 *         0..num-1 are distinct, their sort order is random (filling i = 0,
 *         1, 2 ... inserts in shuffled key order), and a random existing key
 *         is key(random i < num). The sync benchmarks write keys num, num+1
 *         ... so they never overwrite. Values are half random bytes, half
 *         one repeated byte: about 2:1 compressible.
 *
 *         Times come from CLOCK_MONOTONIC around the measured loop only;
 *         opening, closing and filling for a read benchmark are outside.
 * OUTPUT  Progress on stderr; on stdout a header, one JSON line per result
 *         as it is measured, then the table.
 */
#define KV_LOG_MODULE "bench"
#include "bench.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BENCH_KEY_LEN 16
#define BENCH_SEEK_NEXT 10
#define BENCH_MAX_BENCHES 16
#define BENCH_MAX_THREADS 256
#define BENCH_MAX_REPEAT 15

/* ---- the stores this binary knows ------------------------------------- */

typedef struct store_slot {
    const char *name;
    const bench_store_ops_t *ops; /* NULL when not built */
    const char *why_missing;
} store_slot_t;

static const store_slot_t all_stores[] = {
#ifdef BENCH_WITH_CAIRN
    {"cairn", &bench_cairn_ops, NULL},
#else
    {"cairn", NULL, "built with CAIRN_BENCH_WITH_CAIRN=OFF"},
#endif
#ifdef BENCH_WITH_ROCKSDB
    {"rocksdb", &bench_rocksdb_ops, NULL},
#else
    {"rocksdb", NULL, "RocksDB (librocksdb-dev) was not found at build time"},
#endif
#ifdef BENCH_WITH_LEVELDB
    {"leveldb", &bench_leveldb_ops, NULL},
#else
    {"leveldb", NULL, "LevelDB (libleveldb-dev) was not found at build time"},
#endif
};
#define NSTORES ((int)KV_ARRAY_LEN(all_stores))
enum { COL_CAIRN = 0, COL_ROCKSDB = 1, COL_LEVELDB = 2 };

/* ---- benchmarks --------------------------------------------------------- */

typedef enum {
    B_FILL, B_READ, B_SEEK, B_SCAN, B_SIZE, B_SYNC,
} bench_kind_t;

typedef struct bench_spec {
    bench_kind_t kind;
    int threads;   /* B_SYNC */
    char name[24];
} bench_spec_t;

static const char *const default_benchmarks =
    "fillrandom,readrandom,seekrandom,scan,size,sync1,sync16";

/* ---- settings ----------------------------------------------------------- */

typedef struct bench_args {
    uint64_t num;
    size_t value_size;
    uint64_t seeks;
    uint64_t sync_ops;
    uint64_t seed;
    const char *stores;
    const char *benchmarks;
    const char *dir;
    bench_compression_t compression;
    int repeat;
    bool keep;
} bench_args_t;

/* ---- results ------------------------------------------------------------ */

/* One benchmark's samples for one store, one per round; the table shows
 * the median. Values are ops/s, or bytes for B_SIZE. */
typedef struct result {
    int n;
    double value[BENCH_MAX_REPEAT];
} result_t;

static result_t results[BENCH_MAX_BENCHES][NSTORES];
static bool store_failed[NSTORES];

/* ---- small helpers ------------------------------------------------------ */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double secs_since(uint64_t t0) { return (double)(now_ns() - t0) / 1e9; }

/* A bijection on 64-bit integers (each step -- xor with a right shift,
 * multiply by an odd constant -- is invertible) that scatters neighbours. */
static uint64_t key_scramble(uint64_t x)
{
    x ^= x >> 31;
    x *= UINT64_C(0x9e3779b97f4a7c15);
    x ^= x >> 29;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 32;
    return x;
}

typedef struct workload {
    uint64_t num;
    size_t value_size;
    uint64_t salt;
    uint64_t seed;
} workload_t;

static void key_make(const workload_t *w, uint64_t i, uint8_t out[BENCH_KEY_LEN])
{
    static const char hex[] = "0123456789abcdef";
    uint64_t x = key_scramble(i + w->salt);
    for (int d = BENCH_KEY_LEN - 1; d >= 0; d--) {
        out[d] = (uint8_t)hex[x & 15];
        x >>= 4;
    }
}

/* A value buffer: the second half is constant, set once; value_fill
 * renews the first half with random bytes before each put. */
static uint8_t *value_create(size_t n)
{
    uint8_t *v = kv_malloc(n);
    memset(v, 'v', n);
    return v;
}

static void value_fill(kv_rng_t *r, uint8_t *v, size_t n)
{
    size_t rnd = n / 2;
    for (size_t i = 0; i < rnd; i += 8) {
        uint64_t x = kv_rng_next(r);
        memcpy(v + i, &x, KV_MIN((size_t)8, rnd - i));
    }
}

/* "1,234,567" */
static const char *fmt_count(double v, char *buf, size_t n)
{
    char digits[32];
    snprintf(digits, sizeof(digits), "%.0f", v);
    size_t len = strlen(digits), o = 0;
    for (size_t i = 0; i < len && o + 2 < n; i++) {
        if (i > 0 && (len - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = '\0';
    return buf;
}

/* ---- directories -------------------------------------------------------- */

typedef void (*walk_fn)(void *arg, const char *path, const struct stat *st);

/* Visit every entry under dir, children before their directory. */
static kv_status_t walk_tree(const char *dir, walk_fn fn, void *arg)
{
    DIR *d = opendir(dir);
    if (!d) {
        kv_errmsg_set("opendir %s: %s", dir, strerror(errno));
        return kv_status_from_errno(errno);
    }
    kv_status_t rc = KV_OK;
    struct dirent *de;
    char path[PATH_MAX];
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        struct stat st;
        if (lstat(path, &st) != 0) {
            if (errno == ENOENT) continue; /* deleted by a compaction */
            kv_errmsg_set("stat %s: %s", path, strerror(errno));
            rc = kv_status_from_errno(errno);
            break;
        }
        if (S_ISDIR(st.st_mode)) {
            rc = walk_tree(path, fn, arg);
            if (rc != KV_OK) break;
        }
        fn(arg, path, &st);
    }
    closedir(d);
    return rc;
}

static void add_file_size(void *arg, const char *path, const struct stat *st)
{
    KV_UNUSED(path);
    if (S_ISREG(st->st_mode)) *(uint64_t *)arg += (uint64_t)st->st_size;
}

kv_status_t bench_dir_bytes(const char *dir, uint64_t *out)
{
    uint64_t total = 0;
    KV_RET(walk_tree(dir, add_file_size, &total));
    *out = total;
    return KV_OK;
}

static void remove_entry(void *arg, const char *path, const struct stat *st)
{
    KV_UNUSED(arg);
    if ((S_ISDIR(st->st_mode) ? rmdir(path) : unlink(path)) != 0)
        fprintf(stderr, "warning: cannot remove %s: %s\n", path,
                strerror(errno));
}

static void remove_tree(const char *dir)
{
    if (walk_tree(dir, remove_entry, NULL) != KV_OK)
        fprintf(stderr, "warning: %s\n", kv_errmsg());
    if (rmdir(dir) != 0 && errno != ENOENT)
        fprintf(stderr, "warning: cannot remove %s: %s\n", dir,
                strerror(errno));
}

/* ---- one store's run ---------------------------------------------------- */

typedef struct store_run {
    const bench_store_ops_t *ops;
    const bench_config_t *cfg;
    const workload_t *w;
    int col;
    int round;
    char dir[PATH_MAX];
    bench_db_t *db;
    bool db_sync;      /* opened for put_sync */
    bool filled;
    uint64_t entries;  /* distinct keys written so far */
} store_run_t;

static kv_status_t run_open(store_run_t *s, bool sync_writes)
{
    if (s->db && s->db_sync == sync_writes) return KV_OK;
    if (s->db) s->ops->close(s->db);
    s->db = NULL;
    KV_RET(s->ops->open(s->dir, s->cfg, sync_writes, &s->db));
    s->db_sync = sync_writes;
    return KV_OK;
}

static kv_status_t run_reopen(store_run_t *s, bool sync_writes)
{
    if (s->db) s->ops->close(s->db);
    s->db = NULL;
    return run_open(s, sync_writes);
}

static void report(store_run_t *s, int bench, double value)
{
    result_t *r = &results[bench][s->col];
    if (r->n < BENCH_MAX_REPEAT) r->value[r->n++] = value;
}

static void json_ops(const store_run_t *s, const char *bench, uint64_t ops,
                     double secs, const char *extra)
{
    printf("{\"bench\":\"%s\",\"store\":\"%s\",\"ops_per_sec\":%.1f,"
           "\"ops\":%" PRIu64 ",\"seconds\":%.3f,\"round\":%d%s}\n",
           bench, s->ops->name, (double)ops / secs, ops, secs, s->round,
           extra ? extra : "");
    fflush(stdout);
}

static void progress(const store_run_t *s, const char *bench, uint64_t ops,
                     double secs, const char *unit)
{
    char b[40];
    fprintf(stderr, "%-8s %-11s %11" PRIu64 " %s in %7.2f s: %s %s/s\n",
            s->ops->name, bench, ops, unit, secs,
            fmt_count((double)ops / secs, b, sizeof(b)), unit);
}

static kv_status_t bench_fill(store_run_t *s, const char *name, int bench)
{
    const workload_t *w = s->w;
    KV_RET(run_open(s, false));
    kv_rng_t rng;
    kv_rng_seed(&rng, w->seed ^ UINT64_C(0xf111));
    uint8_t key[BENCH_KEY_LEN];
    uint8_t *val = value_create(w->value_size);
    kv_status_t rc = KV_OK;

    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < w->num; i++) {
        key_make(w, i, key);
        value_fill(&rng, val, w->value_size);
        KV_ERR(rc = s->ops->put(s->db, kv_slice(key, sizeof(key)),
                                kv_slice(val, w->value_size)));
    }
    double secs = secs_since(t0);
    s->filled = true;
    s->entries += w->num;
    if (bench >= 0) {
        progress(s, name, w->num, secs, "ops");
        json_ops(s, name, w->num, secs, NULL);
        report(s, bench, (double)w->num / secs);
    } else {
        fprintf(stderr, "%-8s (filled %" PRIu64 " keys in %.2f s for %s)\n",
                s->ops->name, w->num, secs, name);
    }
err:
    kv_free(val);
    return rc;
}

/* Benchmarks that read the data call this first. */
static kv_status_t ensure_filled(store_run_t *s, const char *for_bench)
{
    if (s->filled) return KV_OK;
    return bench_fill(s, for_bench, -1);
}

static kv_status_t bench_read(store_run_t *s, const char *name, int bench)
{
    const workload_t *w = s->w;
    KV_RET(ensure_filled(s, name));
    KV_RET(run_reopen(s, false));
    kv_rng_t rng;
    kv_rng_seed(&rng, w->seed ^ UINT64_C(0x9e7));
    uint8_t key[BENCH_KEY_LEN];
    uint64_t found = 0, wrong_len = 0;

    uint64_t t0 = now_ns();
    for (uint64_t n = 0; n < w->num; n++) {
        key_make(w, kv_rng_below(&rng, w->num), key);
        size_t len = 0;
        kv_status_t rc = s->ops->get(s->db, kv_slice(key, sizeof(key)), &len);
        if (rc == KV_OK) {
            found++;
            if (len != w->value_size) wrong_len++;
        } else if (rc != KV_NOTFOUND) {
            return rc;
        }
    }
    double secs = secs_since(t0);

    char extra[64];
    snprintf(extra, sizeof(extra), ",\"found\":%" PRIu64, found);
    progress(s, name, w->num, secs, "ops");
    fprintf(stderr, "%-8s %-11s found %" PRIu64 " of %" PRIu64 "\n",
            s->ops->name, name, found, w->num);
    json_ops(s, name, w->num, secs, extra);
    report(s, bench, (double)w->num / secs);
    if (found != w->num || wrong_len != 0) {
        kv_errmsg_set("%s: %" PRIu64 " of %" PRIu64 " existing keys not found, "
                      "%" PRIu64 " values of the wrong length",
                      name, w->num - found, w->num, wrong_len);
        return KV_CORRUPT;
    }
    return KV_OK;
}

static kv_status_t bench_seek(store_run_t *s, const char *name, int bench,
                              uint64_t seeks)
{
    const workload_t *w = s->w;
    KV_RET(ensure_filled(s, name));
    KV_RET(run_open(s, false));
    kv_rng_t rng;
    kv_rng_seed(&rng, w->seed ^ UINT64_C(0x5eec));
    uint8_t key[BENCH_KEY_LEN];
    uint64_t visited = 0, bytes = 0, misses = 0;
    bench_cursor_t *c = NULL;
    kv_status_t rc;
    KV_RET(s->ops->cursor_create(s->db, &c));

    uint64_t t0 = now_ns();
    for (uint64_t n = 0; n < seeks; n++) {
        key_make(w, kv_rng_below(&rng, w->num), key);
        uint64_t before = visited;
        KV_ERR(rc = s->ops->cursor_seek_next(c, kv_slice(key, sizeof(key)),
                                             BENCH_SEEK_NEXT, &visited,
                                             &bytes));
        if (visited == before) misses++;
    }
    double secs = secs_since(t0);

    char extra[96];
    snprintf(extra, sizeof(extra), ",\"entries\":%" PRIu64 ",\"next\":%d",
             visited, BENCH_SEEK_NEXT);
    progress(s, name, seeks, secs, "seeks");
    json_ops(s, name, seeks, secs, extra);
    report(s, bench, (double)seeks / secs);
    if (misses) {
        kv_errmsg_set("%s: %" PRIu64 " seeks to existing keys found nothing",
                      name, misses);
        rc = KV_CORRUPT;
    }
err:
    s->ops->cursor_destroy(c);
    return rc;
}

static kv_status_t bench_scan(store_run_t *s, const char *name, int bench)
{
    KV_RET(ensure_filled(s, name));
    KV_RET(run_open(s, false));
    uint64_t entries = 0, bytes = 0;

    uint64_t t0 = now_ns();
    KV_RET(s->ops->scan_all(s->db, &entries, &bytes));
    double secs = secs_since(t0);

    progress(s, name, entries, secs, "entries");
    json_ops(s, name, entries, secs, NULL);
    report(s, bench, (double)entries / secs);
    if (entries != s->entries) {
        kv_errmsg_set("%s: %" PRIu64 " entries, %" PRIu64 " written", name,
                      entries, s->entries);
        return KV_CORRUPT;
    }
    return KV_OK;
}

static kv_status_t bench_size(store_run_t *s, const char *name, int bench)
{
    KV_RET(ensure_filled(s, name));
    KV_RET(run_open(s, false));
    uint64_t t0 = now_ns();
    KV_RET(s->ops->settle(s->db));
    double settle_secs = secs_since(t0);
    uint64_t bytes = 0;
    KV_RET(s->ops->disk_bytes(s->db, &bytes));

    uint64_t raw = s->entries * (BENCH_KEY_LEN + s->w->value_size);
    fprintf(stderr, "%-8s %-11s %.1f MB on disk (raw %.1f MB, %.2f:1) after "
            "%.2f s of flush + compaction\n", s->ops->name, name,
            (double)bytes / 1e6, (double)raw / 1e6,
            bytes ? (double)raw / (double)bytes : 0.0, settle_secs);
    printf("{\"bench\":\"%s\",\"store\":\"%s\",\"bytes\":%" PRIu64
           ",\"raw_bytes\":%" PRIu64 ",\"settle_seconds\":%.3f,"
           "\"round\":%d}\n",
           name, s->ops->name, bytes, raw, settle_secs, s->round);
    fflush(stdout);
    report(s, bench, (double)bytes);
    if (bytes > raw / 10 * 9 && s->cfg->compression != BENCH_COMPRESS_NONE)
        fprintf(stderr, "%-8s note: data did not compress -- is the "
                "library built without its compressor?\n", s->ops->name);
    return KV_OK;
}

typedef struct sync_job {
    store_run_t *s;
    pthread_barrier_t *start;
    uint64_t first, count;
    uint64_t seed;
    kv_status_t rc;
    char err[256];
} sync_job_t;

static void *sync_thread(void *arg)
{
    sync_job_t *j = arg;
    const workload_t *w = j->s->w;
    kv_rng_t rng;
    kv_rng_seed(&rng, j->seed);
    uint8_t key[BENCH_KEY_LEN];
    uint8_t *val = value_create(w->value_size);

    pthread_barrier_wait(j->start);
    for (uint64_t i = 0; i < j->count; i++) {
        key_make(w, j->first + i, key);
        value_fill(&rng, val, w->value_size);
        j->rc = j->s->ops->put_sync(j->s->db, kv_slice(key, sizeof(key)),
                                    kv_slice(val, w->value_size));
        if (j->rc != KV_OK) {
            snprintf(j->err, sizeof(j->err), "%s", kv_errmsg());
            break;
        }
    }
    kv_free(val);
    return NULL;
}

static kv_status_t bench_sync(store_run_t *s, const char *name, int bench,
                              int threads, uint64_t total_ops)
{
    KV_RET(run_open(s, true));
    uint64_t per = total_ops / (uint64_t)threads;
    if (per == 0) per = 1;
    uint64_t ops = per * (uint64_t)threads;
    /* New keys after everything written so far: never an overwrite. */
    uint64_t base = s->w->num + (s->entries - (s->filled ? s->w->num : 0));

    sync_job_t *jobs = kv_calloc((size_t)threads, sizeof(*jobs));
    pthread_t *tids = kv_calloc((size_t)threads, sizeof(*tids));
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)threads + 1);
    for (int t = 0; t < threads; t++) {
        jobs[t] = (sync_job_t){.s = s, .start = &start,
                               .first = base + (uint64_t)t * per,
                               .count = per,
                               .seed = s->w->seed ^ (UINT64_C(0x5c) + (uint64_t)t)};
        if (pthread_create(&tids[t], NULL, sync_thread, &jobs[t]) != 0)
            kv_panic("pthread_create failed");
    }
    pthread_barrier_wait(&start);
    uint64_t t0 = now_ns();
    for (int t = 0; t < threads; t++) pthread_join(tids[t], NULL);
    double secs = secs_since(t0);
    pthread_barrier_destroy(&start);

    kv_status_t rc = KV_OK;
    for (int t = 0; t < threads && rc == KV_OK; t++) {
        if (jobs[t].rc != KV_OK) {
            rc = jobs[t].rc;
            kv_errmsg_set("%s", jobs[t].err);
        }
    }
    if (rc == KV_OK) {
        char extra[48];
        snprintf(extra, sizeof(extra), ",\"threads\":%d", threads);
        progress(s, name, ops, secs, "ops");
        json_ops(s, name, ops, secs, extra);
        report(s, bench, (double)ops / secs);
    }
    s->entries += ops; /* some may be missing on error; the run stops then */
    kv_free(jobs);
    kv_free(tids);
    return rc;
}

static kv_status_t run_bench(store_run_t *s, const bench_spec_t *b, int bench,
                             const bench_args_t *a)
{
    switch (b->kind) {
    case B_FILL:
        if (s->filled) {
            kv_errmsg_set("fillrandom runs once per store");
            return KV_INVALID;
        }
        return bench_fill(s, b->name, bench);
    case B_READ: return bench_read(s, b->name, bench);
    case B_SEEK: return bench_seek(s, b->name, bench, a->seeks);
    case B_SCAN: return bench_scan(s, b->name, bench);
    case B_SIZE: return bench_size(s, b->name, bench);
    case B_SYNC: return bench_sync(s, b->name, bench, b->threads, a->sync_ops);
    }
    return KV_INVALID;
}

/* ---- argument parsing --------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
        "usage: cairn-engine-bench [options]\n"
        "  --num N            keys to fill and gets to run (default 1000000)\n"
        "  --value-size N     value bytes, ~2:1 compressible (default 100)\n"
        "  --stores LIST      cairn,rocksdb,leveldb (default: all built in)\n"
        "  --benchmarks LIST  fillrandom,readrandom,seekrandom,scan,size,\n"
        "                     syncN (N threads, e.g. sync1,sync16) or all\n"
        "                     (default all = %s)\n"
        "  --seeks N          seeks for seekrandom (default 100000)\n"
        "  --sync-ops N       puts per syncN benchmark, all threads together\n"
        "                     (default 20000)\n"
        "  --seed N           key order and value bytes (default 1)\n"
        "  --compression C    zstd (default; LevelDB: snappy), snappy\n"
        "                     (Cairn: zstd) or none\n"
        "  --dir DIR          parent of the store directories (default a fresh\n"
        "                     /tmp/cairn-engine-bench.XXXXXX); each store uses\n"
        "                     DIR/<store>, which must not exist\n"
        "  --repeat R         run every store R times, round-robin, and report\n"
        "                     medians (default 1; the VM is noisy: use 3)\n"
        "  --keep             keep the store directories at the end\n",
        default_benchmarks);
}

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-') return false;
    *out = v;
    return true;
}

static bool parse_benchmarks(const char *list, bench_spec_t *specs, int *n)
{
    char buf[512];
    if (!strcmp(list, "all")) list = default_benchmarks;
    snprintf(buf, sizeof(buf), "%s", list);
    *n = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        if (*n == BENCH_MAX_BENCHES) {
            fprintf(stderr, "too many benchmarks (at most %d)\n",
                    BENCH_MAX_BENCHES);
            return false;
        }
        bench_spec_t *b = &specs[*n];
        memset(b, 0, sizeof(*b));
        uint64_t threads;
        if (!strcmp(tok, "fillrandom")) b->kind = B_FILL;
        else if (!strcmp(tok, "readrandom")) b->kind = B_READ;
        else if (!strcmp(tok, "seekrandom")) b->kind = B_SEEK;
        else if (!strcmp(tok, "scan")) b->kind = B_SCAN;
        else if (!strcmp(tok, "size")) b->kind = B_SIZE;
        else if (!strncmp(tok, "sync", 4) && parse_u64(tok + 4, &threads) &&
                 threads >= 1 && threads <= BENCH_MAX_THREADS) {
            b->kind = B_SYNC;
            b->threads = (int)threads;
        } else {
            fprintf(stderr, "unknown benchmark '%s'\n", tok);
            return false;
        }
        snprintf(b->name, sizeof(b->name), "%s", tok);
        (*n)++;
    }
    return *n > 0;
}

/* Fills want[] with the columns asked for; false on an unknown name. */
static bool parse_stores(const char *list, bool want[NSTORES])
{
    char buf[256];
    memset(want, 0, sizeof(bool) * NSTORES);
    if (!list) {
        for (int i = 0; i < NSTORES; i++) want[i] = all_stores[i].ops != NULL;
        return true;
    }
    snprintf(buf, sizeof(buf), "%s", list);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        int i;
        for (i = 0; i < NSTORES; i++)
            if (!strcmp(tok, all_stores[i].name)) break;
        if (i == NSTORES) {
            fprintf(stderr, "unknown store '%s' (cairn, rocksdb, leveldb)\n",
                    tok);
            return false;
        }
        want[i] = true;
    }
    return true;
}

static bool parse_args(int argc, char **argv, bench_args_t *a)
{
    static const struct option opts[] = {
        {"num", required_argument, NULL, 'n'},
        {"value-size", required_argument, NULL, 'v'},
        {"stores", required_argument, NULL, 's'},
        {"benchmarks", required_argument, NULL, 'b'},
        {"seeks", required_argument, NULL, 'k'},
        {"sync-ops", required_argument, NULL, 'y'},
        {"seed", required_argument, NULL, 'e'},
        {"dir", required_argument, NULL, 'd'},
        {"compression", required_argument, NULL, 'c'},
        {"repeat", required_argument, NULL, 'r'},
        {"keep", no_argument, NULL, 'K'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *a = (bench_args_t){.num = 1000000, .value_size = 100, .seeks = 100000,
                        .sync_ops = 20000, .seed = 1, .repeat = 1,
                        .benchmarks = default_benchmarks};
    int ch, li = -1;
    uint64_t v;
    while ((ch = getopt_long(argc, argv, "h", opts, &li)) != -1) {
        switch (ch) {
        case 'n': if (!parse_u64(optarg, &a->num) || !a->num) goto bad; break;
        case 'v':
            if (!parse_u64(optarg, &v) || v < 2 || v > (1u << 20)) goto bad;
            a->value_size = (size_t)v;
            break;
        case 's': a->stores = optarg; break;
        case 'b': a->benchmarks = optarg; break;
        case 'k': if (!parse_u64(optarg, &a->seeks)) goto bad; break;
        case 'y': if (!parse_u64(optarg, &a->sync_ops)) goto bad; break;
        case 'e': if (!parse_u64(optarg, &a->seed)) goto bad; break;
        case 'd': a->dir = optarg; break;
        case 'c':
            if (!strcmp(optarg, "zstd")) a->compression = BENCH_COMPRESS_ZSTD;
            else if (!strcmp(optarg, "snappy"))
                a->compression = BENCH_COMPRESS_SNAPPY;
            else if (!strcmp(optarg, "none"))
                a->compression = BENCH_COMPRESS_NONE;
            else goto bad;
            break;
        case 'r':
            if (!parse_u64(optarg, &v) || v < 1 || v > BENCH_MAX_REPEAT)
                goto bad;
            a->repeat = (int)v;
            break;
        case 'K': a->keep = true; break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return false;
        }
        continue;
    bad:
        fprintf(stderr, "bad value '%s' for --%s\n", optarg,
                li >= 0 ? opts[li].name : "?");
        usage(stderr);
        return false;
    }
    if (optind < argc) {
        fprintf(stderr, "unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return false;
    }
    return true;
}

/* ---- the report --------------------------------------------------------- */

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* Which statistic of a cell's samples to show. */
typedef enum { STAT_MEDIAN, STAT_MIN, STAT_MAX } stat_t;

static double result_stat(const result_t *r, stat_t st)
{
    double v[BENCH_MAX_REPEAT];
    memcpy(v, r->value, sizeof(double) * (size_t)r->n);
    qsort(v, (size_t)r->n, sizeof(double), cmp_double);
    switch (st) {
    case STAT_MIN: return v[0];
    case STAT_MAX: return v[r->n - 1];
    case STAT_MEDIAN: break;
    }
    return r->n % 2 ? v[r->n / 2] : (v[r->n / 2 - 1] + v[r->n / 2]) / 2;
}

static const char *fmt_value(const bench_spec_t *b, double v, char *buf,
                             size_t n)
{
    if (b->kind == B_SIZE) {
        snprintf(buf, n, "%.1f MB", v / 1e6);
        return buf;
    }
    return fmt_count(v, buf, n);
}

static const char *fmt_cell(const bench_spec_t *b, int bench, int col,
                            char *buf, size_t n)
{
    const result_t *r = &results[bench][col];
    if (r->n == 0) {
        if (!all_stores[col].ops) return col == COL_CAIRN ? "pending" : "n/a";
        return store_failed[col] ? "failed" : "-";
    }
    return fmt_value(b, result_stat(r, STAT_MEDIAN), buf, n);
}

/* "lo..hi" of a cell, for the spread table. */
static const char *fmt_range(const bench_spec_t *b, int bench, int col,
                             char *buf, size_t n)
{
    const result_t *r = &results[bench][col];
    if (r->n == 0) return "-";
    char lo[24], hi[24];
    fmt_value(b, result_stat(r, STAT_MIN), lo, sizeof(lo));
    fmt_value(b, result_stat(r, STAT_MAX), hi, sizeof(hi));
    snprintf(buf, n, "%s..%s", lo, hi);
    return buf;
}

static const char *fmt_ratio(int bench, int num, int den, char *buf, size_t n)
{
    const result_t *a = &results[bench][num], *b = &results[bench][den];
    if (a->n == 0 || b->n == 0) return "-";
    double d = result_stat(b, STAT_MEDIAN);
    if (d <= 0) return "-";
    snprintf(buf, n, "%.2fx", result_stat(a, STAT_MEDIAN) / d);
    return buf;
}

static const char *bench_label(const bench_spec_t *b, char *buf, size_t n)
{
    const char *unit = b->kind == B_SIZE   ? "bytes on disk"
                       : b->kind == B_SCAN ? "entries/s"
                       : b->kind == B_SEEK ? "seeks/s"
                                           : "ops/s";
    snprintf(buf, n, "%s (%s)", b->name, unit);
    return buf;
}

static void print_table(const bench_spec_t *specs, int nb, int repeat)
{
    printf("\n%s", repeat > 1 ? "medians:\n" : "");
    printf("%-24s %12s %12s %12s %14s %14s\n", "benchmark", "cairn",
           "rocksdb", "leveldb", "cairn/leveldb", "cairn/rocksdb");
    for (int i = 0; i < nb; i++) {
        const bench_spec_t *b = &specs[i];
        char label[48], c0[32], c1[32], c2[32], r0[16], r1[16];
        printf("%-24s %12s %12s %12s %14s %14s\n",
               bench_label(b, label, sizeof(label)),
               fmt_cell(b, i, COL_CAIRN, c0, sizeof(c0)),
               fmt_cell(b, i, COL_ROCKSDB, c1, sizeof(c1)),
               fmt_cell(b, i, COL_LEVELDB, c2, sizeof(c2)),
               fmt_ratio(i, COL_CAIRN, COL_LEVELDB, r0, sizeof(r0)),
               fmt_ratio(i, COL_CAIRN, COL_ROCKSDB, r1, sizeof(r1)));
    }
    printf("(ratios: higher is better for Cairn, except bytes on disk where "
           "lower is better)\n");
    if (repeat < 2) return;
    printf("\nrange over %d rounds (min..max):\n", repeat);
    printf("%-24s %24s %24s %24s\n", "benchmark", "cairn", "rocksdb",
           "leveldb");
    for (int i = 0; i < nb; i++) {
        char label[48], c0[56], c1[56], c2[56];
        printf("%-24s %24s %24s %24s\n",
               bench_label(&specs[i], label, sizeof(label)),
               fmt_range(&specs[i], i, COL_CAIRN, c0, sizeof(c0)),
               fmt_range(&specs[i], i, COL_ROCKSDB, c1, sizeof(c1)),
               fmt_range(&specs[i], i, COL_LEVELDB, c2, sizeof(c2)));
    }
}

/* ---- main --------------------------------------------------------------- */

int main(int argc, char **argv)
{
    bench_args_t a;
    bench_spec_t specs[BENCH_MAX_BENCHES];
    int nb = 0;
    bool want[NSTORES];
    if (!parse_args(argc, argv, &a) ||
        !parse_benchmarks(a.benchmarks, specs, &nb) ||
        !parse_stores(a.stores, want))
        return 2;

    bool any = false;
    for (int i = 0; i < NSTORES; i++) {
        if (want[i] && !all_stores[i].ops) {
            fprintf(stderr, "%s: not in this build (%s); skipped\n",
                    all_stores[i].name, all_stores[i].why_missing);
            want[i] = false;
        }
        any |= want[i];
    }
    if (!any) {
        fprintf(stderr, "no store to run\n");
        return 2;
    }

    char root[PATH_MAX / 2]; /* room for "/<store>" and the stores' files */
    bool temp_root = a.dir == NULL;
    if (temp_root) {
        snprintf(root, sizeof(root), "/tmp/cairn-engine-bench.XXXXXX");
        if (!mkdtemp(root)) {
            fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
            return 1;
        }
    } else {
        if (strlen(a.dir) >= sizeof(root)) {
            fprintf(stderr, "--dir: path too long\n");
            return 2;
        }
        snprintf(root, sizeof(root), "%s", a.dir);
        if (mkdir(root, 0755) != 0 && errno != EEXIST) {
            fprintf(stderr, "mkdir %s: %s\n", root, strerror(errno));
            return 1;
        }
    }

    bench_config_t cfg = {
        .compression = a.compression,
        .bloom_bits_per_key = 10,
        .block_bytes = 4096,
        .cache_bytes = 32u << 20,
        .write_buffer_bytes = 64u << 20,
        .zstd_level = 1,
    };
    workload_t w = {
        .num = a.num,
        .value_size = a.value_size,
        .salt = key_scramble(a.seed ^ UINT64_C(0x6b6579)),
        .seed = a.seed,
    };

    time_t t = time(NULL);
    char when[64];
    strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S %Z", localtime(&t));
    printf("cairn-engine-bench  %s  %ld CPUs  allocator %s\n", when,
           sysconf(_SC_NPROCESSORS_ONLN), kv_alloc_name());
    printf("num %" PRIu64 "  key %d B  value %zu B (half random)  seeks %"
           PRIu64 " (+%d next)  sync ops %" PRIu64 "  seed %" PRIu64
           "  rounds %d  dir %s\n", a.num, BENCH_KEY_LEN, a.value_size,
           a.seeks, BENCH_SEEK_NEXT, a.sync_ops, a.seed, a.repeat, root);
    for (int i = 0; i < NSTORES; i++) {
        char desc[256];
        if (!all_stores[i].ops) {
            printf("  %-8s not built: %s\n", all_stores[i].name,
                   all_stores[i].why_missing);
            continue;
        }
        all_stores[i].ops->describe(&cfg, desc, sizeof(desc));
        printf("  %-8s %s%s\n", all_stores[i].name, desc,
               want[i] ? "" : "  [not selected]");
    }
    fflush(stdout);

    /* Run the stores in the order --stores named them. */
    int order[NSTORES], norder = 0;
    if (a.stores) {
        char buf[256];
        snprintf(buf, sizeof(buf), "%s", a.stores);
        for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
             tok = strtok_r(NULL, ",", &save))
            for (int i = 0; i < NSTORES; i++) {
                bool seen = false;
                for (int k = 0; k < norder; k++) seen |= order[k] == i;
                if (!seen && want[i] && !strcmp(tok, all_stores[i].name))
                    order[norder++] = i;
            }
    } else {
        for (int i = 0; i < NSTORES; i++)
            if (want[i]) order[norder++] = i;
    }

    /* Round-robin (A B A B ...) so slow spells of a shared machine land on
     * every store, not on one. */
    int exit_code = 0;
    for (int k = 0; k < norder * a.repeat; k++) {
        int col = order[k % norder];
        if (store_failed[col]) continue;
        store_run_t s = {.ops = all_stores[col].ops, .cfg = &cfg, .w = &w,
                         .col = col, .round = k / norder};
        if (a.repeat > 1)
            snprintf(s.dir, sizeof(s.dir), "%s/%s.%d", root, s.ops->name,
                     s.round);
        else
            snprintf(s.dir, sizeof(s.dir), "%s/%s", root, s.ops->name);
        if (mkdir(s.dir, 0755) != 0) {
            fprintf(stderr, "%s: mkdir %s: %s (it must not exist)\n",
                    s.ops->name, s.dir, strerror(errno));
            store_failed[col] = true;
            exit_code = 1;
            continue;
        }
        for (int i = 0; i < nb; i++) {
            kv_errmsg_clear();
            kv_status_t rc = run_bench(&s, &specs[i], i, &a);
            if (rc != KV_OK) {
                fprintf(stderr, "%s: %s failed: %s%s%s\n", s.ops->name,
                        specs[i].name, kv_status_str(rc),
                        *kv_errmsg() ? ": " : "", kv_errmsg());
                store_failed[col] = true;
                exit_code = 1;
                if (rc != KV_CORRUPT) break; /* wrong answers: keep going */
            }
        }
        if (s.db) s.ops->close(s.db);
        if (!a.keep) remove_tree(s.dir);
    }
    if (temp_root && !a.keep) remove_tree(root);
    else if (a.keep) fprintf(stderr, "kept store directories under %s\n", root);

    print_table(specs, nb, a.repeat);
    return exit_code;
}
