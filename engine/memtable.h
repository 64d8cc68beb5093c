/* memtable.h -- the in-memory table of recent writes (internal to engine/):
 * a skiplist of (ikey -> cell bytes) in internal-key order, allocated from
 * an arena and freed all at once.
 *
 * THREADING  One writer at a time (the engine's commit leader) and any
 *            number of concurrent readers without locks: a node is fully
 *            built before it is published with a release store, and readers
 *            follow links with acquire loads. Entries are never removed.
 *            Reference counted: readers hold a ref while they use it.
 */
#ifndef CAIRN_ENGINE_MEMTABLE_H
#define CAIRN_ENGINE_MEMTABLE_H

#include "format.h"
#include "iter.h"

typedef struct eng_memtable eng_memtable_t;

eng_memtable_t *eng_memtable_create(void);
/* Sized for a memtable that will grow to about budget bytes: its key filter
 * (about ten bits per entry) is sized from it. */
eng_memtable_t *eng_memtable_create_sized(size_t budget);
void eng_memtable_ref(eng_memtable_t *m);
void eng_memtable_unref(eng_memtable_t *m); /* frees at zero */

/* Add an entry (single writer). okey = token || key; cell = encoded cell
 * (format.h). Copies both into the arena. (okey, seq) must be new. */
void eng_memtable_add(eng_memtable_t *m, uint64_t seq, eng_kind_t kind,
                      kv_slice_t okey, kv_slice_t cell);

/* Newest entry for okey with seq <= max_seq. true when found; *cell points
 * into the arena (valid while the caller holds a ref). */
bool eng_memtable_get(eng_memtable_t *m, kv_slice_t okey, uint64_t max_seq,
                      eng_kind_t *kind, uint64_t *seq, kv_slice_t *cell);

/* Arena bytes in use (the flush trigger) and entry count. */
size_t eng_memtable_bytes(eng_memtable_t *m);
uint64_t eng_memtable_count(eng_memtable_t *m);

/* Iterator over every entry in internal-key order. Holds a ref on m. */
eng_iiter_t *eng_memtable_iter_create(eng_memtable_t *m);

#endif /* CAIRN_ENGINE_MEMTABLE_H */
