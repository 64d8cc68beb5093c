/* recover.c -- opening and closing the engine: recovery from CURRENT, the
 * manifest and the WALs, orphan cleanup, and the engine's statistics.
 *
 * DESIGN  Open: lock the directory (flock on LOCK, one process at a time);
 *         recover the version from CURRENT and the manifest (version.c);
 *         replay every WAL at or above the manifest's log number into a
 *         memtable, cutting a torn tail; start a fresh WAL and a fresh
 *         manifest; delete files no live state refers to; flush what the
 *         WALs replayed; start the commit, sync and background threads.
 *         A store whose CURRENT is gone but whose WALs or tables remain is
 *         refused rather than recreated over its data.
 * THREADING  eng_open and eng_close run on the caller's thread; the others
 *            any thread.
 */
#define KV_LOG_MODULE "engine"
#include "engine_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <unistd.h>

/* ---- open and close ---------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* "000123.wal" -> 123 with ext "wal"; false for anything else. */
static bool parse_file_name(const char *name, const char *ext, uint64_t *no)
{
    char *end = NULL;
    if (name[0] < '0' || name[0] > '9') return false;
    unsigned long long v = strtoull(name, &end, 10);
    if (!end || *end != '.' || strcmp(end + 1, ext) != 0) return false;
    *no = v;
    return true;
}

typedef struct replay_ctx {
    eng_memtable_t *mem;
    uint64_t last_seq;
    uint64_t ops;      /* writes replayed */
    uint64_t replayed; /* highest seq replayed so far (0: none) */
} replay_ctx_t;

static void replay_op(void *arg, uint64_t seq, eng_kind_t kind, kv_slice_t okey,
                      kv_slice_t cell)
{
    replay_ctx_t *r = arg;
    eng_memtable_add(r->mem, seq, kind, okey, cell);
    r->ops++;
    if (seq > r->last_seq) r->last_seq = seq;
}

static kv_status_t replay_wal(struct eng *e, uint64_t no, replay_ctx_t *ctx)
{
    char *path = eng_file_name(e, no, "wal");
    eng_log_reader_t *r = NULL;
    kv_status_t rc = eng_log_reader_open(path, ENG_WAL_MAGIC, e->o.salvage, &r);
    if (rc != KV_OK) goto out;
    kv_slice_t payload;
    while ((rc = eng_log_reader_next(r, &payload)) == KV_OK) {
        uint64_t last = 0;
        if (eng_wal_decode(payload, NULL, NULL, &last) != KV_OK) {
            kv_errmsg_set("%s: record ending at offset %" PRIu64 " passes its checksum "
                          "but does not decode", path, eng_log_reader_offset(r));
            rc = KV_CORRUPT;
            goto out;
        }
        /* Records are written in sequence order, across WALs too: one whose
         * numbers do not come after those replayed (a duplicated or stale
         * record that checksums fine) would put one (key, seq) twice in the
         * memtable. Found by fuzzing (tests/fuzz/regress/manifest). */
        uint64_t first = kv_get_le64(payload.data);
        if (last && first <= ctx->replayed) {
            if (e->o.salvage) {
                KV_LOG(KV_WARN, "%s: salvage skipped a record ending at offset %" PRIu64
                       " whose sequence numbers %" PRIu64 "..%" PRIu64 " do not follow %"
                       PRIu64, path, eng_log_reader_offset(r), first, last, ctx->replayed);
                continue;
            }
            kv_errmsg_set("%s: record ending at offset %" PRIu64 " has sequence numbers %"
                          PRIu64 "..%" PRIu64 ", not after %" PRIu64 " already replayed",
                          path, eng_log_reader_offset(r), first, last, ctx->replayed);
            rc = KV_CORRUPT;
            goto out;
        }
        (void)eng_wal_decode(payload, replay_op, ctx, NULL);
        if (last) ctx->replayed = last;
    }
    if (rc != KV_NOTFOUND) goto out;
    rc = KV_OK;
    eng_log_read_stats_t st;
    eng_log_reader_stats(r, &st);
    if (st.torn) {
        KV_LOG(KV_WARN, "%s: cut a torn tail of %" PRIu64 " bytes at offset %" PRIu64
               " (a write that was never acknowledged)", path, st.torn_bytes, st.torn_offset);
        atomic_fetch_add(&e->st_torn_tails, 1);
        atomic_fetch_add(&e->st_torn_bytes, st.torn_bytes);
        eng_log_reader_close(r);
        r = NULL;
        rc = eng_log_truncate(path, st.torn_offset);
    }
    if (st.skipped_records)
        KV_LOG(KV_WARN, "%s: salvage skipped %" PRIu64 " damaged records (%" PRIu64 " bytes)",
               path, st.skipped_records, st.skipped_bytes);
out:
    if (rc != KV_OK && rc != KV_NOTFOUND)
        KV_LOG(KV_ERROR, "cannot replay %s: %s", path, kv_errmsg());
    eng_log_reader_close(r);
    kv_free(path);
    return rc;
}

static kv_status_t recover_wals(struct eng *e)
{
    char **names;
    size_t n;
    KV_RET(eng_fs_list(e->dir, &names, &n));
    uint64_t *wals = kv_malloc((n ? n : 1) * sizeof *wals);
    size_t nw = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t no;
        if (parse_file_name(names[i], "wal", &no) && no >= e->log_number) wals[nw++] = no;
    }
    eng_fs_names_free(names, n);
    qsort(wals, nw, sizeof *wals, cmp_u64);
    replay_ctx_t ctx = {eng_memtable_create_sized(e->o.memtable_bytes), e->last_seq, 0, 0};
    kv_status_t rc = KV_OK;
    for (size_t i = 0; i < nw && rc == KV_OK; i++) {
        rc = replay_wal(e, wals[i], &ctx);
        if (wals[i] >= e->next_file) e->next_file = wals[i] + 1;
    }
    kv_free(wals);
    if (rc != KV_OK) {
        eng_memtable_unref(ctx.mem);
        return rc;
    }
    e->last_seq = ctx.last_seq;
    atomic_store(&e->visible_seq, ctx.last_seq);
    /* A run that ended with a flush left nothing to replay; writes found
     * here mean it did not (a crash, a kill, a close without a flush). */
    atomic_store(&e->st_recovered_ops, ctx.ops);
    if (ctx.ops)
        KV_LOG(KV_INFO, "recovered %" PRIu64 " writes from %zu write-ahead log(s) "
               "not flushed by the last run", ctx.ops, nw);
    if (eng_memtable_count(ctx.mem) > 0) {
        e->imm = ctx.mem; /* flushed in the background; WALs kept till then */
    } else {
        eng_memtable_unref(ctx.mem);
    }
    return KV_OK;
}

void eng_delete_obsolete_files(struct eng *e)
{
    char **names;
    size_t n;
    if (eng_fs_list(e->dir, &names, &n) != KV_OK) return;
    pthread_mutex_lock(&e->mu);
    uint64_t log_no = e->log_number, manifest_no = e->manifest_no;
    eng_version_t *v = e->current;
    eng_version_ref(v);
    bool flushing = e->flush_running, compacting = e->compaction_running;
    pthread_mutex_unlock(&e->mu);
    for (size_t i = 0; i < n; i++) {
        const char *name = names[i];
        uint64_t no;
        bool del = false;
        size_t len = strlen(name);
        if (len > 4 && strcmp(name + len - 4, ".tmp") == 0) {
            del = !flushing && !compacting; /* a running job owns its temp */
        } else if (strncmp(name, "MANIFEST-", 9) == 0) {
            del = strtoull(name + 9, NULL, 10) != manifest_no;
        } else if (parse_file_name(name, "wal", &no)) {
            del = no < log_no;
        } else if (parse_file_name(name, "sst", &no) && !flushing && !compacting) {
            del = true;
            for (int l = 0; l < ENG_LEVELS && del; l++)
                for (size_t k = 0; k < v->n[l]; k++)
                    if (v->t[l][k]->file_no == no) del = false;
        }
        if (del) {
            char *p = eng_path_join(e->dir, name);
            KV_LOG(KV_DEBUG, "removing obsolete file %s", p);
            eng_fs_unlink(p);
            kv_free(p);
        }
    }
    eng_version_unref(v);
    eng_fs_names_free(names, n);
}

static void eng_free(struct eng *e)
{
    if (e->wal) eng_log_writer_close(e->wal);
    eng_versions_close(e);
    if (e->mem) eng_memtable_unref(e->mem);
    if (e->imm) eng_memtable_unref(e->imm);
    eng_reap_dead_tables(e);
    if (e->cache) eng_cache_destroy(e->cache);
    for (int l = 0; l < ENG_LEVELS; l++) kv_buf_deinit(&e->compact_ptr[l]);
    if (e->lock_fd >= 0) close(e->lock_fd);
    pthread_mutex_destroy(&e->mu);
    pthread_mutex_destroy(&e->wal_mu);
    pthread_mutex_destroy(&e->dead_mu);
    pthread_cond_destroy(&e->commit_cv);
    pthread_cond_destroy(&e->manifest_cv);
    pthread_cond_destroy(&e->bg_cv);
    kv_free(e->dir);
    kv_free(e);
}

/* Before creating a store where CURRENT is missing: CURRENT is written
 * before the first WAL or table and only ever replaced by a rename, so a
 * WAL or table without it means a damaged store -- and creating a new one
 * would truncate the WALs and delete the tables as obsolete. (A lone
 * manifest is a creation cut short; it is rewritten.) */
static kv_status_t check_no_store_files(struct eng *e)
{
    char **names;
    size_t n;
    uint64_t no;
    KV_RET(eng_fs_list(e->dir, &names, &n));
    kv_status_t rc = KV_OK;
    for (size_t i = 0; i < n && rc == KV_OK; i++) {
        if (parse_file_name(names[i], "wal", &no) || parse_file_name(names[i], "sst", &no)) {
            kv_errmsg_set("%s/CURRENT is missing but %s is there: a damaged store, "
                          "not creating a new one over it", e->dir, names[i]);
            rc = KV_CORRUPT;
        }
    }
    eng_fs_names_free(names, n);
    return rc;
}

static kv_status_t check_options(const eng_options_t *o)
{
    const char *bad = NULL;
    if (!o->dir || !*o->dir) bad = "dir is empty";
    else if (o->memtable_bytes < 64 * 1024) bad = "memtable_bytes is below 64 KiB";
    else if (o->block_bytes < 256 || o->block_bytes > (16u << 20)) bad = "block_bytes is out of range";
    else if (o->restart_interval < 1) bad = "restart_interval must be at least 1";
    else if (o->table_bytes < 64 * 1024) bad = "table_bytes is below 64 KiB";
    else if (o->l0_compaction_trigger < 1 || o->l0_slowdown_trigger < o->l0_compaction_trigger ||
             o->l0_stop_trigger < o->l0_slowdown_trigger) bad = "level-0 triggers are out of order";
    else if (o->background_threads < 1) bad = "background_threads must be at least 1";
    else if (o->sync == ENG_SYNC_PERIODIC && o->sync_period_ms == 0) bad = "sync_period_ms is 0";
    else if (o->bloom_bits_per_key < 0 || o->bloom_bits_per_key > 64) bad = "bloom_bits_per_key is out of range";
    if (bad) {
        kv_errmsg_set("engine options: %s", bad);
        return KV_INVALID;
    }
    return KV_OK;
}

kv_status_t eng_open(const eng_options_t *o, eng_t **out)
{
    KV_RET(check_options(o));
    struct eng *e = kv_calloc(1, sizeof *e);
    e->o = *o;
    e->dir = kv_strdup(o->dir);
    e->o.dir = e->dir;
    if (!e->o.clock) e->o.clock = kv_clock_system();
    e->lock_fd = -1;
    pthread_mutex_init(&e->mu, NULL);
    pthread_mutex_init(&e->wal_mu, NULL);
    pthread_mutex_init(&e->dead_mu, NULL);
    pthread_cond_init(&e->commit_cv, NULL);
    pthread_cond_init(&e->manifest_cv, NULL);
    pthread_cond_init(&e->bg_cv, NULL);
    e->snapshots.next = e->snapshots.prev = &e->snapshots;
    atomic_init(&e->visible_seq, 0);

    kv_status_t rc = KV_OK;
    if (o->create_if_missing) KV_ERR(rc = eng_fs_mkdir(e->dir));
    {
        char *lock = eng_path_join(e->dir, "LOCK");
        e->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        int err = errno;
        kv_free(lock);
        if (e->lock_fd < 0) {
            kv_errmsg_set("cannot open %s/LOCK: %s", e->dir, strerror(err));
            rc = kv_status_from_errno(err);
            goto err;
        }
        if (flock(e->lock_fd, LOCK_EX | LOCK_NB) != 0) {
            kv_errmsg_set("%s is in use by another process", e->dir);
            rc = KV_BUSY;
            goto err;
        }
    }
    e->cache = eng_cache_create(o->cache_bytes, 0);

    char *current = eng_path_join(e->dir, "CURRENT");
    bool exists = false;
    rc = eng_fs_exists(current, &exists);
    kv_free(current);
    if (rc != KV_OK) goto err;
    if (exists) {
        KV_ERR(rc = eng_versions_recover(e));
        KV_ERR(rc = recover_wals(e));
    } else if (o->create_if_missing) {
        KV_ERR(rc = check_no_store_files(e));
        KV_ERR(rc = eng_versions_create(e));
    } else {
        kv_errmsg_set("no Cairn store in %s", e->dir);
        rc = KV_NOTFOUND;
        goto err;
    }

    /* a fresh WAL and a fresh manifest for this run */
    e->wal_no = e->next_file++;
    {
        char *path = eng_file_name(e, e->wal_no, "wal");
        rc = eng_log_writer_create(path, ENG_WAL_MAGIC, &e->wal);
        kv_free(path);
        if (rc != KV_OK) goto err;
    }
    if (e->imm) e->imm_wal_no = e->wal_no - 1;
    if (!e->imm) e->log_number = e->wal_no; /* nothing older is needed */
    KV_ERR(rc = eng_versions_checkpoint(e));
    eng_delete_obsolete_files(e);
    e->mem = eng_memtable_create_sized(e->o.memtable_bytes);
    /* Write what the WALs replayed to a table now, as LevelDB does: reads
     * then start from tables with filters, and the old WALs go. A failure
     * (a full disk) is not fatal: the background threads retry it. */
    if (e->imm && (rc = eng_flush_imm(e)) != KV_OK)
        KV_LOG(KV_WARN, "flush of the recovered memtable failed (%s); retrying in the "
               "background: %s", kv_status_str(rc), kv_errmsg());
    rc = KV_OK;

    if (pthread_create(&e->commit_thread, NULL, eng_commit_main, e) != 0) {
        rc = KV_NOMEM;
        goto err;
    }
    if (o->sync == ENG_SYNC_PERIODIC) {
        if (pthread_create(&e->sync_thread, NULL, eng_sync_main, e) == 0)
            e->sync_thread_started = true;
    }
    rc = eng_bg_start(e);
    if (rc != KV_OK) {
        eng_close(e);
        return rc;
    }
    pthread_mutex_lock(&e->mu);
    if (e->imm) eng_bg_schedule(e);
    pthread_mutex_unlock(&e->mu);
    KV_LOG(KV_INFO, "opened %s: last seq %" PRIu64 ", %zu tables in L0", e->dir,
           e->last_seq, e->current->n[0]);
    *out = e;
    return KV_OK;
err:
    if (rc != KV_OK && *kv_errmsg())
        KV_LOG(KV_ERROR, "cannot open store %s: %s", e->dir, kv_errmsg());
    eng_free(e);
    return rc;
}

void eng_close(eng_t *e)
{
    if (!e) return;
    pthread_mutex_lock(&e->mu);
    e->closing = true;
    pthread_cond_broadcast(&e->commit_cv);
    pthread_cond_broadcast(&e->bg_cv);
    pthread_mutex_unlock(&e->mu);
    pthread_join(e->commit_thread, NULL);
    if (e->sync_thread_started) pthread_join(e->sync_thread, NULL);
    eng_bg_stop(e);
    pthread_mutex_lock(&e->wal_mu);
    if (e->wal && e->wal_dirty && eng_log_writer_sync(e->wal) != KV_OK)
        KV_LOG(KV_ERROR, "final WAL sync failed: %s", kv_errmsg());
    pthread_mutex_unlock(&e->wal_mu);
    eng_free(e);
}

void eng_get_stats(eng_t *e, eng_stats_t *s)
{
    memset(s, 0, sizeof *s);
    s->puts = atomic_load(&e->st_puts);
    s->deletes = atomic_load(&e->st_deletes);
    s->gets = atomic_load(&e->st_gets);
    s->superseded = atomic_load(&e->st_superseded);
    s->flushes = atomic_load(&e->st_flushes);
    s->compactions = atomic_load(&e->st_compactions);
    s->compaction_bytes_read = atomic_load(&e->st_comp_read);
    s->compaction_bytes_written = atomic_load(&e->st_comp_written);
    s->tombstones_dropped = atomic_load(&e->st_tomb_dropped);
    s->versions_dropped = atomic_load(&e->st_versions_dropped);
    s->wal_syncs = atomic_load(&e->st_wal_syncs);
    s->wal_records = atomic_load(&e->st_wal_records);
    s->wal_bytes = atomic_load(&e->st_wal_bytes);
    s->wal_group_writes = atomic_load(&e->st_wal_groups);
    s->wal_torn_tails = atomic_load(&e->st_torn_tails);
    s->wal_torn_bytes = atomic_load(&e->st_torn_bytes);
    s->wal_recovered_ops = atomic_load(&e->st_recovered_ops);
    s->write_stalls_ms = atomic_load(&e->st_stall_ms);
    s->background_errors = atomic_load(&e->st_bg_errors);
    pthread_mutex_lock(&e->mu);
    s->memtable_bytes = eng_memtable_bytes(e->mem);
    s->memtable_entries = eng_memtable_count(e->mem);
    s->imm_memtables = e->imm ? 1 : 0;
    s->levels = ENG_LEVELS;
    for (int l = 0; l < ENG_LEVELS; l++) {
        s->tables_per_level[l] = e->current->n[l];
        s->bytes_per_level[l] = eng_version_level_bytes(e->current, l);
        s->live_bytes += s->bytes_per_level[l];
    }
    s->background_error = e->bg_error;
    s->last_seq = e->last_seq;
    pthread_mutex_unlock(&e->mu);
    eng_cache_stats_t cs;
    eng_cache_get_stats(e->cache, &cs);
    s->cache_hits = cs.hits;
    s->cache_misses = cs.misses;
    s->cache_bytes = cs.usage;
    s->cache_capacity = cs.capacity;
    eng_sst_stats_t ss;
    eng_sst_get_stats(&ss);
    s->bloom_checks = ss.bloom_checks;
    s->bloom_negatives = ss.bloom_negatives;
}
