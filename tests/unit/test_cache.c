/* test_cache.c -- the block cache: hit/miss accounting, LRU order, the byte
 * capacity, handles that outlive eviction, erase_file, replacement, and a
 * multi-threaded smoke test. */
#include "test_util.h"

#include <pthread.h>

#include "cache.h"

/* A value that records its own deletion. */
typedef struct val {
    int id;
    int *deleted; /* incremented by the deleter */
} val_t;

static void val_delete(void *p)
{
    val_t *v = p;
    if (v->deleted) (*v->deleted)++;
    kv_free(v);
}

static val_t *val_new(int id, int *deleted)
{
    val_t *v = kv_malloc(sizeof *v);
    v->id = id;
    v->deleted = deleted;
    return v;
}

static void put(eng_cache_t *c, uint64_t file, uint64_t off, int id, size_t charge,
                int *deleted)
{
    eng_cache_handle_t *h =
        eng_cache_insert(c, file, off, val_new(id, deleted), charge, val_delete);
    eng_cache_release(c, h);
}

/* id of the cached value, or -1 on a miss */
static int get(eng_cache_t *c, uint64_t file, uint64_t off)
{
    eng_cache_handle_t *h = eng_cache_lookup(c, file, off);
    if (!h) return -1;
    int id = ((val_t *)eng_cache_value(h))->id;
    eng_cache_release(c, h);
    return id;
}

static void test_cache_counts_hits_and_misses(void **state)
{
    (void)state;
    eng_cache_t *c = eng_cache_create(1000, 4);
    assert_int_equal(get(c, 1, 0), -1);
    put(c, 1, 0, 10, 10, NULL);
    put(c, 1, 4096, 11, 10, NULL);
    assert_int_equal(get(c, 1, 0), 10);
    assert_int_equal(get(c, 1, 4096), 11);
    assert_int_equal(get(c, 2, 0), -1);
    eng_cache_stats_t st;
    eng_cache_get_stats(c, &st);
    assert_int_equal(st.hits, 2);
    assert_int_equal(st.misses, 2);
    assert_int_equal(st.inserts, 2);
    assert_int_equal(st.evictions, 0);
    assert_int_equal(st.usage, 20);
    assert_int_equal(st.capacity, 1000);
    eng_cache_destroy(c);
}

static void test_cache_evicts_least_recently_used_first(void **state)
{
    (void)state;
    int deleted = 0;
    eng_cache_t *c = eng_cache_create(30, 1);
    put(c, 1, 0, 0, 10, &deleted);
    put(c, 1, 1, 1, 10, &deleted);
    put(c, 1, 2, 2, 10, &deleted);
    assert_int_equal(get(c, 1, 0), 0); /* 0 is now the most recent */
    put(c, 1, 3, 3, 10, &deleted);     /* evicts 1, the oldest */
    assert_int_equal(deleted, 1);
    assert_int_equal(get(c, 1, 1), -1);
    assert_int_equal(get(c, 1, 0), 0);
    assert_int_equal(get(c, 1, 2), 2);
    assert_int_equal(get(c, 1, 3), 3);
    put(c, 1, 4, 4, 10, &deleted); /* evicts 0 (touched before 2 and 3) */
    assert_int_equal(get(c, 1, 0), -1);
    assert_int_equal(get(c, 1, 2), 2);
    eng_cache_stats_t st;
    eng_cache_get_stats(c, &st);
    assert_int_equal(st.evictions, 2);
    eng_cache_destroy(c);
    assert_int_equal(deleted, 5);
}

static void test_cache_usage_never_exceeds_capacity_when_idle(void **state)
{
    (void)state;
    kv_rng_t rng;
    kv_rng_seed(&rng, test_seed("cache capacity"));
    eng_cache_t *c = eng_cache_create(10000, 8);
    for (int i = 0; i < 5000; i++) {
        put(c, kv_rng_below(&rng, 4), kv_rng_below(&rng, 500), i,
            1 + kv_rng_below(&rng, 300), NULL);
        eng_cache_stats_t st;
        eng_cache_get_stats(c, &st);
        /* per-shard capacity is rounded up: at most shards-1 bytes over */
        assert_true(st.usage <= 10000 + 7);
    }
    eng_cache_stats_t st;
    eng_cache_get_stats(c, &st);
    assert_true(st.evictions > 0);
    eng_cache_destroy(c);
}

static void test_cache_referenced_entry_survives_eviction_until_released(void **state)
{
    (void)state;
    int deleted = 0;
    eng_cache_t *c = eng_cache_create(20, 1);
    eng_cache_handle_t *h =
        eng_cache_insert(c, 7, 0, val_new(42, &deleted), 10, val_delete);
    /* fill past capacity: the held entry cannot be evicted */
    for (int i = 1; i <= 5; i++) put(c, 7, (uint64_t)i, i, 10, &deleted);
    assert_int_equal(((val_t *)eng_cache_value(h))->id, 42);
    assert_int_equal(get(c, 7, 0), 42);
    eng_cache_stats_t st;
    eng_cache_get_stats(c, &st);
    assert_true(st.usage <= 20);
    /* replace it while held: the old value lives on in the handle */
    put(c, 7, 0, 43, 10, &deleted);
    assert_int_equal(get(c, 7, 0), 43);
    assert_int_equal(((val_t *)eng_cache_value(h))->id, 42);
    int before = deleted;
    eng_cache_release(c, h);
    assert_int_equal(deleted, before + 1); /* detached: freed at release */
    eng_cache_destroy(c);
}

static void test_cache_insert_replaces_existing_key(void **state)
{
    (void)state;
    int deleted = 0;
    eng_cache_t *c = eng_cache_create(100, 2);
    put(c, 3, 8, 1, 10, &deleted);
    put(c, 3, 8, 2, 15, &deleted);
    assert_int_equal(deleted, 1);
    assert_int_equal(get(c, 3, 8), 2);
    eng_cache_stats_t st;
    eng_cache_get_stats(c, &st);
    assert_int_equal(st.usage, 15);
    eng_cache_destroy(c);
    assert_int_equal(deleted, 2);
}

static void test_cache_erase_file_drops_only_that_file(void **state)
{
    (void)state;
    int deleted = 0;
    eng_cache_t *c = eng_cache_create(1 << 20, 4);
    for (int i = 0; i < 100; i++) {
        put(c, 1, (uint64_t)i * 4096, i, 100, &deleted);
        put(c, 2, (uint64_t)i * 4096, 1000 + i, 100, &deleted);
    }
    eng_cache_handle_t *held = eng_cache_lookup(c, 1, 0);
    assert_non_null(held);
    eng_cache_erase_file(c, 1);
    assert_int_equal(deleted, 99); /* the held one waits for its release */
    for (int i = 0; i < 100; i++) {
        assert_int_equal(get(c, 1, (uint64_t)i * 4096), -1);
        assert_int_equal(get(c, 2, (uint64_t)i * 4096), 1000 + i);
    }
    assert_int_equal(((val_t *)eng_cache_value(held))->id, 0);
    eng_cache_release(c, held);
    assert_int_equal(deleted, 100);
    eng_cache_stats_t st;
    eng_cache_get_stats(c, &st);
    assert_int_equal(st.usage, 100 * 100);
    eng_cache_destroy(c);
}

static void test_cache_with_zero_capacity_caches_nothing(void **state)
{
    (void)state;
    int deleted = 0;
    eng_cache_t *c = eng_cache_create(0, 0);
    eng_cache_handle_t *h = eng_cache_insert(c, 1, 1, val_new(5, &deleted), 10,
                                             val_delete);
    assert_int_equal(((val_t *)eng_cache_value(h))->id, 5);
    assert_int_equal(get(c, 1, 1), -1);
    eng_cache_release(c, h);
    assert_int_equal(deleted, 1);
    eng_cache_destroy(c);
}

static void test_cache_oversized_entry_is_dropped_at_release(void **state)
{
    (void)state;
    int deleted = 0;
    eng_cache_t *c = eng_cache_create(100, 1);
    put(c, 1, 1, 1, 10, &deleted);
    eng_cache_handle_t *h =
        eng_cache_insert(c, 1, 2, val_new(2, &deleted), 500, val_delete);
    assert_int_equal(deleted, 1); /* the small one made room in vain */
    assert_int_equal(((val_t *)eng_cache_value(h))->id, 2);
    eng_cache_release(c, h);
    assert_int_equal(deleted, 2);
    eng_cache_stats_t st;
    eng_cache_get_stats(c, &st);
    assert_int_equal(st.usage, 0);
    eng_cache_destroy(c);
}

/* ---- threads ------------------------------------------------------------ */

typedef struct worker {
    eng_cache_t *c;
    uint64_t seed;
    int ops;
    int bad;
} worker_t;

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    kv_rng_t rng;
    kv_rng_seed(&rng, w->seed);
    for (int i = 0; i < w->ops; i++) {
        uint64_t file = kv_rng_below(&rng, 4), off = kv_rng_below(&rng, 256);
        int id = (int)(file * 1000 + off); /* the value a key must map to */
        int op = (int)kv_rng_below(&rng, 10);
        if (op < 6) {
            eng_cache_handle_t *h = eng_cache_lookup(w->c, file, off);
            if (h) {
                if (((val_t *)eng_cache_value(h))->id != id) w->bad++;
                eng_cache_release(w->c, h);
            }
        } else if (op < 9) {
            eng_cache_handle_t *h = eng_cache_insert(
                w->c, file, off, val_new(id, NULL), 1 + kv_rng_below(&rng, 64),
                val_delete);
            if (((val_t *)eng_cache_value(h))->id != id) w->bad++;
            eng_cache_release(w->c, h);
        } else if (kv_rng_below(&rng, 50) == 0) {
            eng_cache_erase_file(w->c, file);
        }
    }
    return NULL;
}

static void test_cache_survives_threads_hammering_it(void **state)
{
    (void)state;
    uint64_t seed = test_seed("cache threads");
    eng_cache_t *c = eng_cache_create(4096, 4);
    enum { N = 4 };
    pthread_t th[N];
    worker_t w[N];
    for (int i = 0; i < N; i++) {
        w[i] = (worker_t){.c = c, .seed = seed + (uint64_t)i, .ops = 20000};
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(w[i].bad, 0);
    }
    eng_cache_stats_t st;
    eng_cache_get_stats(c, &st);
    assert_true(st.usage <= 4096);
    assert_true(st.hits + st.misses > 0);
    eng_cache_destroy(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        kv_unit_test(test_cache_counts_hits_and_misses),
        kv_unit_test(test_cache_evicts_least_recently_used_first),
        kv_unit_test(test_cache_usage_never_exceeds_capacity_when_idle),
        kv_unit_test(test_cache_referenced_entry_survives_eviction_until_released),
        kv_unit_test(test_cache_insert_replaces_existing_key),
        kv_unit_test(test_cache_erase_file_drops_only_that_file),
        kv_unit_test(test_cache_with_zero_capacity_caches_nothing),
        kv_unit_test(test_cache_oversized_entry_is_dropped_at_release),
        kv_unit_test(test_cache_survives_threads_hammering_it),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
