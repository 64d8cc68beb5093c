/* sst.h -- sorted string tables (internal to engine/).
 *
 * FILE LAYOUT (all integers little-endian unless noted)
 *   data block 0 | data block 1 | ... | filter block | props block |
 *   index block | footer
 * BLOCK (on disk)  payload || type(1: 0 = raw, 1 = zstd) || XXH3-64(8) of
 *   (payload || type). A zstd payload starts with the raw size as a varint.
 *   Raw data/index block: entries, then restart offsets (u32 each), then
 *   the restart count (u32). Entry: shared(varint) unshared(varint)
 *   value_len(varint) key_delta value. Keys are ikeys (format.h); a restart
 *   point stores its key whole (shared = 0) every restart_interval entries.
 * INDEX  one entry per data block: key = the block's last ikey, value =
 *   handle: offset(varint) size(varint) of the block on disk (without its
 *   9-byte trailer).
 * FILTER  a bloom filter over the okeys of the table (not per block):
 *   bits, then k (u8). Probes are derived from the okey's token -- the
 *   XXH3-64 hash already at its front -- by double hashing, so a lookup
 *   hashes nothing. bits_per_key 0 writes no filter (size 0).
 * PROPS  entries, tombstones, data bytes, raw key/value bytes, min/max ts,
 *   min/max seq, smallest and largest ikey.
 * FOOTER (fixed 64 bytes)  filter handle, props handle, index handle (each
 *   offset u64 + size u64, 48 bytes), version (u32 = 1), XXH3-64 low 32
 *   bits of the preceding 52 bytes (u32), magic "CAIRNSST" (8).
 *
 * ERRORS  Every checksum, bound or format failure returns KV_CORRUPT and sets
 *   kv_errmsg() to "<path>: <what> at offset <n>" -- never a crash, never a
 *   wrong answer. Lengths read from the file are checked against the file
 *   size before anything is allocated.
 * THREADING  A builder belongs to one thread. An open table is read-only and
 *   may be used from any number of threads at once.
 */
#ifndef CAIRN_ENGINE_SST_H
#define CAIRN_ENGINE_SST_H

#include "cache.h"
#include "format.h"
#include "iter.h"

#define ENG_SST_FOOTER 64
#define ENG_SST_MAGIC "CAIRNSST"

typedef struct eng_sst_options {
    size_t block_bytes;       /* target uncompressed data block size */
    int restart_interval;
    int compression_level;    /* 0 = raw blocks; otherwise a zstd level */
    int bloom_bits_per_key;   /* 0 = no filter */
} eng_sst_options_t;

/* Facts about a table, from its props block (or its builder). */
typedef struct eng_sst_props {
    uint64_t file_size;
    uint64_t entries, tombstones;
    uint64_t raw_key_bytes, raw_value_bytes;
    hlc_ts_t min_ts, max_ts;
    uint64_t min_seq, max_seq;
    kv_buf_t smallest, largest; /* ikeys; owned */
} eng_sst_props_t;

void eng_sst_props_deinit(eng_sst_props_t *p);

typedef struct eng_sst_builder eng_sst_builder_t;

/* Start writing a table at path (created/truncated). */
kv_status_t eng_sst_builder_create(const char *path, const eng_sst_options_t *o,
                                   eng_sst_builder_t **out);
/* Add an entry; ikeys must arrive in strictly increasing internal order. */
kv_status_t eng_sst_builder_add(eng_sst_builder_t *b, kv_slice_t ikey,
                                kv_slice_t cell);
/* Bytes written so far plus the block being built (for splitting output). */
uint64_t eng_sst_builder_size(const eng_sst_builder_t *b);
uint64_t eng_sst_builder_entries(const eng_sst_builder_t *b);
/* Write filter, props, index and footer; fdatasync; close; fill *props
 * (caller deinits it). The builder is freed whatever the outcome; on
 * failure the partial file is unlinked (as by abandon). An add that failed
 * makes finish return that same status. */
kv_status_t eng_sst_builder_finish(eng_sst_builder_t *b, eng_sst_props_t *props);
/* Close and unlink the partial file; frees the builder. */
void eng_sst_builder_abandon(eng_sst_builder_t *b);

typedef struct eng_sst eng_sst_t;

/* Open a table: read and verify footer, index, filter and props. file_no
 * keys its blocks in the cache (may be NULL: no caching). */
kv_status_t eng_sst_open(const char *path, uint64_t file_no, eng_cache_t *cache,
                         eng_sst_t **out);
void eng_sst_close(eng_sst_t *t);
const eng_sst_props_t *eng_sst_props(const eng_sst_t *t);
uint64_t eng_sst_file_no(const eng_sst_t *t);

/* Bloom check for an okey; true = may be present. Counts the check. */
bool eng_sst_may_contain(eng_sst_t *t, kv_slice_t okey);

/* Newest entry for okey with seq <= max_seq: KV_OK with kind, seq and the
 * cell bytes copied into *cell (cleared first); KV_NOTFOUND; KV_AGAIN when
 * no_io and a needed block is not in the cache; KV_CORRUPT / KV_IO. */
kv_status_t eng_sst_get(eng_sst_t *t, kv_slice_t okey, uint64_t max_seq,
                        bool no_io, eng_kind_t *kind, uint64_t *seq,
                        kv_buf_t *cell);

/* Iterator over all entries. fill_cache false: blocks read for it are not
 * inserted into the cache (compaction, long scans). */
eng_iiter_t *eng_sst_iter_create(eng_sst_t *t, bool fill_cache);

typedef struct eng_sst_stats {
    uint64_t bloom_checks, bloom_negatives, blocks_read;
} eng_sst_stats_t;

/* Process-wide counters, summed over all tables. blocks_read counts data
 * blocks read from disk (cache misses, uncached reads and verify). */
void eng_sst_get_stats(eng_sst_stats_t *out);

/* Check a whole table: every block's checksum and decoding, entry order,
 * props agree with the data. KV_OK or KV_CORRUPT with kv_errmsg(). */
kv_status_t eng_sst_verify(eng_sst_t *t);

#endif /* CAIRN_ENGINE_SST_H */
