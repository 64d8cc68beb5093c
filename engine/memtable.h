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

/* The commit leader looks a key up (last write wins) and then inserts the
 * winning cell for it: both walk the skiplist to the same place, and on a
 * memtable of some hundred thousand entries each walk is a string of cache
 * misses. A position remembers where the lookup ended so the insert starts
 * there. It stays usable while nodes are only added to m (insert() catches
 * up past nodes added since), so a group may insert other keys in between. */
#define ENG_MT_MAX_HEIGHT 12
typedef struct eng_mt_pos {
    eng_memtable_t *m;                  /* NULL: no position */
    int height;                         /* levels in prev[] */
    void *prev[ENG_MT_MAX_HEIGHT];      /* last node before okey, per level */
} eng_mt_pos_t;
/* eng_memtable_get for the newest entry (any seq), also filling *pos. */
bool eng_memtable_get_pos(eng_memtable_t *m, kv_slice_t okey, eng_kind_t *kind,
                          uint64_t *seq, kv_slice_t *cell, eng_mt_pos_t *pos);
/* eng_memtable_add starting from pos (from eng_memtable_get_pos on m for
 * the same okey, seq newer than any entry then); without one (pos NULL or
 * pos->m != m) it searches like eng_memtable_add. */
void eng_memtable_add_at(eng_memtable_t *m, uint64_t seq, eng_kind_t kind,
                         kv_slice_t okey, kv_slice_t cell, const eng_mt_pos_t *pos);
/* Arena bytes in use (the flush trigger) and entry count. */
size_t eng_memtable_bytes(eng_memtable_t *m);
uint64_t eng_memtable_count(eng_memtable_t *m);

/* Iterator over every entry in internal-key order. Holds a ref on m. */
eng_iiter_t *eng_memtable_iter_create(eng_memtable_t *m);

#endif /* CAIRN_ENGINE_MEMTABLE_H */
