/* block.h -- the SSTable block codec (internal to engine/, used by sst_*.c).
 *
 * A raw block is entries, then restart offsets (u32 LE each), then the
 * restart count (u32 LE); see sst.h for the entry layout. Keys are ikeys.
 * The builder produces that; the iterator decodes it without trusting any
 * byte: a malformed block makes the iterator invalid with corrupt set,
 * and the caller (which knows the file and the offset) reports it.
 */
#ifndef CAIRN_ENGINE_BLOCK_H
#define CAIRN_ENGINE_BLOCK_H

#include "kv.h"

typedef struct eng_block_builder {
    kv_buf_t buf;      /* entries so far */
    kv_buf_t restarts; /* u32 LE offsets */
    kv_buf_t last_key;
    int interval, counter;
    size_t entries;
} eng_block_builder_t;

void eng_block_builder_init(eng_block_builder_t *b, int restart_interval);
void eng_block_builder_deinit(eng_block_builder_t *b);
void eng_block_builder_reset(eng_block_builder_t *b);
void eng_block_builder_add(eng_block_builder_t *b, kv_slice_t key, kv_slice_t value);
/* Size of the raw block if finished now. */
size_t eng_block_builder_size(const eng_block_builder_t *b);
/* Append the restart array; the returned slice is valid until reset. */
kv_slice_t eng_block_builder_finish(eng_block_builder_t *b);

/* A decoded (raw) block: read-only once built; shared by threads. */
typedef struct eng_block {
    const uint8_t *data;
    size_t size;         /* bytes of entries (restart array excluded) */
    const uint8_t *restarts;
    uint32_t nrestarts;
    void *owned;         /* kv_malloc'd storage behind data, or NULL */
} eng_block_t;

/* Parse the restart array of raw block bytes [p, p+n). False when the
 * trailer does not fit. b->owned is left NULL. */
bool eng_block_parse(eng_block_t *b, const uint8_t *p, size_t n);

typedef struct eng_block_iter {
    const eng_block_t *b;
    size_t cur, next; /* offset of this entry / of the one after it */
    kv_buf_t key;
    kv_slice_t value;
    bool valid, corrupt;
} eng_block_iter_t;

void eng_block_iter_init(eng_block_iter_t *it, const eng_block_t *b);
void eng_block_iter_deinit(eng_block_iter_t *it);
void eng_block_iter_seek_first(eng_block_iter_t *it);
void eng_block_iter_next(eng_block_iter_t *it);
/* First entry with key >= target (internal-key order). */
void eng_block_iter_seek(eng_block_iter_t *it, kv_slice_t target);

#endif /* CAIRN_ENGINE_BLOCK_H */
