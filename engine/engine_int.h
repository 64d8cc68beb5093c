/* engine_int.h -- the engine's shared internals (internal to engine/).
 *
 * The pieces: engine.c (open, recovery, the write path and group commit),
 * version.c (tables, versions, the manifest), compact.c (background
 * threads: flush and compaction), read.c (gets, snapshots, iterators),
 * batch.c (write batches and the WAL record payload).
 */
#ifndef CAIRN_ENGINE_INT_H
#define CAIRN_ENGINE_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "cache.h"
#include "engine.h"
#include "format.h"
#include "fs.h"
#include "iter.h"
#include "log.h"
#include "memtable.h"
#include "sst.h"

#define ENG_LEVELS 7
#define ENG_WAL_MAGIC "CAIRNWAL"
#define ENG_MANIFEST_MAGIC "CAIRNMAN"
#define ENG_MANIFEST_ROLL_BYTES (4u * 1024 * 1024)
#define ENG_GROUP_MAX_BYTES (1u * 1024 * 1024)
#define ENG_ASYNC_MAX_BYTES (64u * 1024 * 1024)

/* ---- batches (batch.c) ------------------------------------------------- */

/* One operation as stored in a batch: the okey and the encoded cell. */
typedef struct eng_op {
    eng_kind_t kind;
    uint32_t okey_off, okey_len;
    uint32_t cell_off, cell_len;
} eng_op_t;

struct eng_batch {
    kv_buf_t data; /* okeys and cells back to back */
    eng_op_t *ops;
    size_t n, cap;
    bool invalid;  /* an oversized key or value was added */
};

static inline kv_slice_t eng_op_okey(const eng_batch_t *b, const eng_op_t *op)
{
    return kv_slice(b->data.data + op->okey_off, op->okey_len);
}

static inline kv_slice_t eng_op_cell(const eng_batch_t *b, const eng_op_t *op)
{
    return kv_slice(b->data.data + op->cell_off, op->cell_len);
}

/* Deep copy (async writes keep their own). */
eng_batch_t *eng_batch_clone(const eng_batch_t *b);
/* Byte size of a batch's data (for queue bounds). */
size_t eng_batch_bytes(const eng_batch_t *b);

/* WAL record payload: seq_base(u64 LE) count(varint) then per op:
 * kind(u8) okey_len(varint) okey cell_len(varint) cell. Accepted ops carry
 * consecutive sequence numbers from seq_base. */
typedef struct eng_wal_writer_ctx {
    kv_buf_t *out;
    size_t count_pos;
    uint64_t count;
} eng_wal_enc_t;

/* Bytes before the first op: seq_base and the fixed-width count. */
#define ENG_WAL_HEADER 13

void eng_wal_enc_begin(eng_wal_enc_t *w, kv_buf_t *out, uint64_t seq_base);
void eng_wal_enc_add(eng_wal_enc_t *w, eng_kind_t kind, kv_slice_t okey,
                     kv_slice_t cell);
/* Finish; returns the number of ops. */
uint64_t eng_wal_enc_end(eng_wal_enc_t *w);

typedef void (*eng_wal_op_fn)(void *arg, uint64_t seq, eng_kind_t kind,
                              kv_slice_t okey, kv_slice_t cell);
/* Decode a payload, calling fn per op. KV_CORRUPT on malformed input. */
kv_status_t eng_wal_decode(kv_slice_t payload, eng_wal_op_fn fn, void *arg,
                           uint64_t *last_seq);

/* ---- tables and versions (version.c) ----------------------------------- */

typedef struct eng_table {
    atomic_int refs;
    uint64_t file_no;
    uint64_t size;
    uint64_t entries, tombstones;
    hlc_ts_t min_ts, max_ts;
    kv_buf_t smallest, largest; /* ikeys */
    eng_sst_t *sst;             /* open while the table is referenced */
    atomic_bool obsolete;       /* unlink when the last ref goes */
    struct eng *eng;
    struct eng_table *next_dead;
} eng_table_t;

typedef struct eng_version {
    atomic_int refs;
    size_t n[ENG_LEVELS];
    eng_table_t **t[ENG_LEVELS]; /* L0 newest first; L1+ by smallest key */
} eng_version_t;

void eng_table_ref(eng_table_t *t);
void eng_table_unref(eng_table_t *t);
void eng_version_ref(eng_version_t *v);
void eng_version_unref(eng_version_t *v);
/* Check the level invariants (sorted, non-overlapping below L0). */
kv_status_t eng_version_validate(const eng_version_t *v);
uint64_t eng_version_level_bytes(const eng_version_t *v, int level);

/* A change to the set of live tables, journaled in the manifest. */
typedef struct eng_edit_add {
    int level;
    eng_table_t *table; /* a reference owned by the edit */
} eng_edit_add_t;

typedef struct eng_edit_del {
    int level;
    uint64_t file_no;
} eng_edit_del_t;

typedef struct eng_edit {
    bool has_log, has_next_file, has_last_seq;
    uint64_t log_number, next_file, last_seq;
    eng_edit_add_t *adds;
    size_t nadds;
    eng_edit_del_t *dels;
    size_t ndels;
} eng_edit_t;

void eng_edit_init(eng_edit_t *ed);
void eng_edit_deinit(eng_edit_t *ed);
/* Add a table to the edit (takes a reference). */
void eng_edit_add_table(eng_edit_t *ed, int level, eng_table_t *t);
void eng_edit_del_table(eng_edit_t *ed, int level, uint64_t file_no);

/* Make a table object for a finished SSTable (opens it). */
kv_status_t eng_table_open(struct eng *e, uint64_t file_no,
                           const eng_sst_props_t *props, eng_table_t **out);

/* Recover the version from CURRENT and the manifest at open. */
kv_status_t eng_versions_recover(struct eng *e);
/* Start a fresh store: manifest 1, CURRENT. */
kv_status_t eng_versions_create(struct eng *e);
/* Journal an edit (sync) and install the resulting version. Serialised
 * with other edits; call without e->mu held. */
kv_status_t eng_versions_apply(struct eng *e, eng_edit_t *ed);
void eng_versions_close(struct eng *e);
/* Write a fresh manifest describing the current version (at open). */
kv_status_t eng_versions_checkpoint(struct eng *e);

/* Free tables whose last reference went (unlink their files). */
void eng_reap_dead_tables(struct eng *e);

/* ---- the engine ------------------------------------------------------- */

typedef struct eng_writer {
    const eng_batch_t *batch;
    eng_batch_t *owned;      /* async: our copy */
    eng_result_t *results;
    eng_result_t *owned_results;
    bool done;
    bool force_switch;       /* eng_flush: switch memtables, write nothing */
    kv_status_t status;
    pthread_cond_t cv;       /* sync writers wait here */
    eng_write_cb cb;         /* async writers */
    void *cb_arg;
    struct eng_writer *next;
} eng_writer_t;

typedef struct eng_snapshot_node {
    uint64_t seq;
    struct eng_snapshot_node *prev, *next;
} eng_snapshot_node_t;

struct eng_snapshot {
    eng_snapshot_node_t node;
};

struct eng {
    eng_options_t o;
    char *dir;
    int lock_fd;
    pthread_mutex_t mu;      /* guards everything below unless noted */

    /* write queue: head is the group leader */
    eng_writer_t *wq_head, *wq_tail;
    pthread_cond_t commit_cv; /* the commit thread waits for async work */
    pthread_t commit_thread;
    size_t async_bytes;

    /* sequence numbers */
    uint64_t last_seq;        /* highest assigned (leader only writes) */
    atomic_uint_fast64_t visible_seq; /* highest whose group is durable */

    /* memtables */
    eng_memtable_t *mem, *imm;
    uint64_t imm_wal_no;      /* WAL holding imm's writes */

    /* WAL (the leader writes it; wal_mu also guards periodic syncs) */
    pthread_mutex_t wal_mu;
    eng_log_writer_t *wal;
    uint64_t wal_no;
    bool wal_dirty;
    uint64_t last_sync_ns;
    pthread_t sync_thread;
    bool sync_thread_started;

    /* versions */
    eng_version_t *current;
    uint64_t next_file;
    uint64_t log_number;      /* WALs below this are obsolete */
    uint64_t manifest_no;
    eng_log_writer_t *manifest;
    bool manifest_busy;
    pthread_cond_t manifest_cv;

    /* background work */
    pthread_t *bg;
    int nbg;
    pthread_cond_t bg_cv;     /* work to do, or work finished */
    bool flush_running, compaction_running;
    bool manual_compaction;   /* a caller waits in eng_compact_range */
    int compact_ptr_level;
    kv_buf_t compact_ptr[ENG_LEVELS]; /* round-robin position per level */
    kv_status_t bg_error;     /* last background error (retried) */
    uint64_t bg_retry_at_ns;
    bool fatal;               /* on-disk state unknown: refuse writes */
    bool closing;

    /* snapshots */
    eng_snapshot_node_t snapshots; /* list head */

    /* dead tables awaiting unlink (dead_mu) */
    pthread_mutex_t dead_mu;
    eng_table_t *dead;

    eng_cache_t *cache;

    /* statistics (relaxed atomics: read without mu) */
    atomic_uint_fast64_t st_puts, st_deletes, st_gets, st_superseded;
    atomic_uint_fast64_t st_flushes, st_compactions;
    atomic_uint_fast64_t st_comp_read, st_comp_written;
    atomic_uint_fast64_t st_tomb_dropped, st_versions_dropped;
    atomic_uint_fast64_t st_wal_syncs, st_wal_records, st_wal_bytes,
        st_wal_groups;
    atomic_uint_fast64_t st_torn_tails, st_torn_bytes, st_stall_ms;
    atomic_uint_fast64_t st_recovered_ops;
    atomic_uint_fast64_t st_bg_errors;
};

/* engine.c */
uint64_t eng_now_ns(void);
int64_t eng_wall_ms(const struct eng *e);
char *eng_file_name(const struct eng *e, uint64_t no, const char *ext);
/* The newest cell held for okey (memtables, then tables), seq <= max_seq. */
kv_status_t eng_lookup(struct eng *e, eng_memtable_t *mem, eng_memtable_t *imm,
                       eng_version_t *v, kv_slice_t okey, uint64_t max_seq,
                       bool no_io, eng_kind_t *kind, kv_buf_t *cell);

/* The commit thread (leads async groups) and the periodic WAL syncer. */
void *eng_commit_main(void *arg);
void *eng_sync_main(void *arg);

/* Delete files that belong to no live state (temporaries, old manifests,
 * obsolete WALs, unreferenced tables). */
void eng_delete_obsolete_files(struct eng *e);
/* In level l >= 1, the one table whose key range may hold okey. */
eng_table_t *eng_level_find(eng_version_t *v, int l, kv_slice_t okey);
bool eng_table_covers(const eng_table_t *t, kv_slice_t okey);

/* Make the memtable immutable and schedule its flush (via the queue). */
kv_status_t eng_switch_memtable(struct eng *e);

/* compact.c */
/* Write the immutable memtable to an L0 table and drop it (mu not held). */
kv_status_t eng_flush_imm(struct eng *e);
kv_status_t eng_bg_start(struct eng *e);
void eng_bg_stop(struct eng *e);
/* Wake the background threads (mu held). */
void eng_bg_schedule(struct eng *e);
/* The oldest sequence number a live snapshot can read (mu held). */
uint64_t eng_smallest_snapshot(struct eng *e);

#endif /* CAIRN_ENGINE_INT_H */
