/* cache.h -- the block cache (internal to engine/): a sharded LRU of
 * decompressed SSTable blocks keyed by (file number, block offset).
 *
 * Entries are reference counted: a handle returned by lookup or insert
 * keeps its value alive (even if evicted meanwhile) until released.
 * Capacity is in bytes of "charge"; inserting past it evicts the least
 * recently used unreferenced entries of that shard.
 * THREADING  Any thread; one mutex per shard.
 */
#ifndef CAIRN_ENGINE_CACHE_H
#define CAIRN_ENGINE_CACHE_H

#include "kv.h"

typedef struct eng_cache eng_cache_t;
typedef struct eng_cache_handle eng_cache_handle_t;
typedef void (*eng_cache_deleter)(void *value);

/* shards: a power of two (0 = 16). capacity 0 = cache nothing (every
 * insert returns a handle whose value is freed at release). */
eng_cache_t *eng_cache_create(size_t capacity, int shards);
/* All handles must have been released. */
void eng_cache_destroy(eng_cache_t *c);

/* NULL on a miss. Counts a hit or a miss. */
eng_cache_handle_t *eng_cache_lookup(eng_cache_t *c, uint64_t file, uint64_t off);
/* Insert (replacing any entry with the same key) and return a handle. The
 * cache owns value from now on and calls deleter when the last reference
 * goes. */
eng_cache_handle_t *eng_cache_insert(eng_cache_t *c, uint64_t file, uint64_t off,
                                     void *value, size_t charge,
                                     eng_cache_deleter deleter);
void *eng_cache_value(eng_cache_handle_t *h);
void eng_cache_release(eng_cache_t *c, eng_cache_handle_t *h);
/* Drop every entry of a file (after the table is deleted): unreferenced
 * ones at once; referenced ones leave the cache now (lookups miss) and are
 * freed when their last handle is released. */
void eng_cache_erase_file(eng_cache_t *c, uint64_t file);

typedef struct eng_cache_stats {
    uint64_t hits, misses, inserts, evictions;
    uint64_t usage, capacity; /* bytes of charge */
} eng_cache_stats_t;

void eng_cache_get_stats(eng_cache_t *c, eng_cache_stats_t *out);

#endif /* CAIRN_ENGINE_CACHE_H */
