/* iter.h -- the engine's internal iterator interface (internal to engine/).
 *
 * Memtables, SSTables, levels and merges all yield (ikey, cell bytes) pairs
 * in internal-key order (format.h) through this one vtable, so the read
 * path and compaction compose them freely.
 *
 * Contract: after seek_first/seek/next, valid() says whether key()/value()
 * may be called; the slices stay valid until the next move or destroy. An
 * I/O or corruption error makes valid() false and status() non-OK (and
 * kv_errmsg() names the file); a clean end has status() KV_OK.
 */
#ifndef CAIRN_ENGINE_ITER_H
#define CAIRN_ENGINE_ITER_H

#include "kv.h"

typedef struct eng_iiter eng_iiter_t;

typedef struct eng_iiter_ops {
    bool (*valid)(eng_iiter_t *it);
    void (*seek_first)(eng_iiter_t *it);
    void (*seek)(eng_iiter_t *it, kv_slice_t ikey); /* first entry >= ikey */
    void (*next)(eng_iiter_t *it);
    kv_slice_t (*key)(eng_iiter_t *it);
    kv_slice_t (*value)(eng_iiter_t *it);
    kv_status_t (*status)(eng_iiter_t *it);
    void (*destroy)(eng_iiter_t *it);
} eng_iiter_ops_t;

/* Implementations embed this as their first member. */
struct eng_iiter {
    const eng_iiter_ops_t *ops;
};

static inline bool eng_iiter_valid(eng_iiter_t *it) { return it->ops->valid(it); }
static inline void eng_iiter_seek_first(eng_iiter_t *it) { it->ops->seek_first(it); }
static inline void eng_iiter_seek(eng_iiter_t *it, kv_slice_t k) { it->ops->seek(it, k); }
static inline void eng_iiter_next(eng_iiter_t *it) { it->ops->next(it); }
static inline kv_slice_t eng_iiter_key(eng_iiter_t *it) { return it->ops->key(it); }
static inline kv_slice_t eng_iiter_value(eng_iiter_t *it) { return it->ops->value(it); }
static inline kv_status_t eng_iiter_status(eng_iiter_t *it) { return it->ops->status(it); }
static inline void eng_iiter_destroy(eng_iiter_t *it)
{
    if (it) it->ops->destroy(it);
}

/* Merge n child iterators (taking ownership of them) into one stream in
 * internal-key order. Equal keys from different children are all yielded,
 * child 0's first (children are ordered newest source first). */
eng_iiter_t *eng_merge_iter_create(eng_iiter_t **children, size_t n);

/* An iterator over nothing, or one that reports a fixed error. */
eng_iiter_t *eng_empty_iter_create(kv_status_t status);

#endif /* CAIRN_ENGINE_ITER_H */
