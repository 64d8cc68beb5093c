/* engine_test_util.h -- helpers shared by the engine's tests. */
#ifndef CAIRN_ENGINE_TEST_UTIL_H
#define CAIRN_ENGINE_TEST_UTIL_H

#include "test_util.h"

#include "engine.h"
#include "fs.h"

/* Small tables and memtables so a few thousand keys exercise flushes,
 * several levels and compactions. */
static inline void small_options(eng_options_t *o, const char *dir)
{
    eng_options_init(o);
    o->dir = dir;
    o->memtable_bytes = 64 * 1024;
    o->table_bytes = 64 * 1024;
    o->block_bytes = 1024;
    o->level1_bytes = 256 * 1024;
    o->cache_bytes = 256 * 1024;
    o->background_threads = 2;
    o->sync = ENG_SYNC_PERIODIC; /* tests that need group sync say so */
    o->sync_period_ms = 50;
}

static inline eng_t *open_or_die(const eng_options_t *o)
{
    eng_t *e = NULL;
    kv_status_t rc = eng_open(o, &e);
    if (rc != KV_OK) fail_msg("eng_open: %s: %s", kv_status_str(rc), kv_errmsg());
    return e;
}

/* Put a string value; returns the status. */
static inline kv_status_t put_s(eng_t *e, const char *k, const char *v, hlc_ts_t ts)
{
    return eng_put(e, kv_slice_str(k), kv_slice_str(v), ts, 0, NULL);
}

/* Expect key to read as value v (NULL: absent or deleted). */
static inline void expect_kv(eng_t *e, const char *k, const char *v)
{
    eng_value_t out = {0};
    kv_status_t rc = eng_get(e, NULL, kv_slice_str(k), &out);
    if (!v) {
        if (rc == KV_OK && !out.tombstone)
            fail_msg("key %s: expected absent, found %.*s", k, (int)out.value.len,
                     (const char *)out.value.data);
        assert_true(rc == KV_OK || rc == KV_NOTFOUND);
    } else {
        if (rc != KV_OK) fail_msg("key %s: %s (%s)", k, kv_status_str(rc), kv_errmsg());
        assert_false(out.tombstone);
        assert_int_equal(out.value.len, strlen(v));
        assert_memory_equal(out.value.data, v, out.value.len);
    }
    eng_value_free(&out);
}

/* Sum of the sizes of the files in dir. */
static inline uint64_t dir_bytes(const char *dir)
{
    DIR *d = opendir(dir);
    uint64_t total = 0;
    struct dirent *ent;
    char p[PATH_MAX + 256];
    while (d && (ent = readdir(d)) != NULL) {
        struct stat st;
        if (snprintf(p, sizeof p, "%s/%s", dir, ent->d_name) >= (int)sizeof p) continue;
        if (stat(p, &st) == 0 && S_ISREG(st.st_mode)) total += (uint64_t)st.st_size;
    }
    if (d) closedir(d);
    return total;
}

#endif /* CAIRN_ENGINE_TEST_UTIL_H */
