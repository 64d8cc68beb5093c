/* compact.c -- background work: flushing memtables and compacting tables.
 *
 * DESIGN  background_threads workers share one queue of "what needs doing",
 *         read under e->mu: a flush whenever an immutable memtable waits
 *         (always first: writers may be stalled on it), then at most one
 *         compaction at a time, chosen by score:
 *           L0: tables / l0_compaction_trigger
 *           Ln: bytes / (level1_bytes * 10^(n-1))
 *         The level with the highest score >= 1 is compacted into the next:
 *         L0 takes all its tables (they overlap), Ln one table round-robin;
 *         plus every table of the next level they overlap. A single input
 *         with nothing below to merge with is moved by an edit alone.
 *
 *         Both flush and compaction stream entries through one filter, in
 *         internal-key order, writing tables of at most table_bytes (never
 *         splitting one key's versions across two tables):
 *           - an entry is dropped when a newer entry of the same key exists
 *             at or below the oldest live snapshot (nobody can read it);
 *           - a value past its expiry becomes a tombstone at its own ts;
 *           - at the bottom, a key's newest version that every snapshot can
 *             see is written with sequence number 0 (nothing below it can
 *             be shadowed, and zeros compress);
 *           - a tombstone is dropped once gc_grace has passed since its
 *             timestamp (or expiry), it is visible to every snapshot, and
 *             no table below the output level may hold an older version of
 *             the key (otherwise the older version would resurface).
 *         Outputs are written to NNNNNN.sst.tmp, fdatasynced, renamed, the
 *         directory fsynced, and only then journaled by an edit. Inputs are
 *         unlinked when no version refers to them any more.
 *
 *         Errors (a full disk, an I/O error) abandon the job's outputs, are
 *         counted and logged, and the job is retried after a second; writers
 *         stall only if memtables pile up, reads are never affected.
 * THREADING  Background threads; e->mu is held only to pick work and to
 *            install results. eng_flush and eng_compact_range run their work
 *            on the calling thread and wait.
 */
#define KV_LOG_MODULE "engine"
#include "engine_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#define RETRY_NS 1000000000ULL

uint64_t eng_smallest_snapshot(struct eng *e)
{
    if (e->snapshots.next == &e->snapshots) return ENG_MAX_SEQ;
    return e->snapshots.next->seq; /* the list is oldest first */
}

/* ---- writing tables ---------------------------------------------------- */

typedef struct job {
    struct eng *e;
    eng_version_t *v;       /* the version the inputs came from */
    int output_level;
    bool check_l0;          /* flush: older L0 tables may hold the key */
    uint64_t smallest_snap;
    int64_t now_ms;
    bool rate_limited;
    eng_edit_t edit;
    uint64_t bytes_written;
    uint64_t started_ns;
    eng_keep_fn keep;       /* cleanup: drop every key it rejects */
    void *keep_arg;
    uint64_t cleaned;       /* entries dropped by keep */
} job_t;

/* No table below the output (nor older L0 tables, for flushes) may hold the
 * key: only then can its tombstone go. */
static bool is_base_level(job_t *j, kv_slice_t okey)
{
    eng_version_t *v = j->v;
    if (j->check_l0)
        for (size_t i = 0; i < v->n[0]; i++)
            if (eng_table_covers(v->t[0][i], okey)) return false;
    for (int l = KV_MAX(j->output_level + 1, 1); l < ENG_LEVELS; l++)
        if (eng_level_find(v, l, okey)) return false;
    return true;
}

static void rate_limit(job_t *j)
{
    uint64_t rate = j->e->o.compaction_bytes_per_sec;
    if (!j->rate_limited || rate == 0) return;
    uint64_t should_ns = j->bytes_written * 1000000000ULL / rate;
    uint64_t elapsed = eng_now_ns() - j->started_ns;
    if (should_ns > elapsed) {
        uint64_t us = (should_ns - elapsed) / 1000;
        usleep((useconds_t)KV_MIN(us, 1000000));
    }
}

typedef struct out_table {
    eng_sst_builder_t *b;
    uint64_t file_no;
    char *tmp, *path;
} out_table_t;

static kv_status_t out_start(job_t *j, out_table_t *o)
{
    struct eng *e = j->e;
    pthread_mutex_lock(&e->mu);
    o->file_no = e->next_file++;
    pthread_mutex_unlock(&e->mu);
    o->path = eng_file_name(e, o->file_no, "sst");
    o->tmp = eng_file_name(e, o->file_no, "sst.tmp");
    eng_sst_options_t so = {
        .block_bytes = e->o.block_bytes,
        .restart_interval = e->o.restart_interval,
        .compression_level = e->o.compression_level,
        .bloom_bits_per_key = e->o.bloom_bits_per_key,
    };
    kv_status_t rc = eng_sst_builder_create(o->tmp, &so, &o->b);
    if (rc != KV_OK) o->b = NULL;
    return rc;
}

static void out_free(out_table_t *o)
{
    kv_free(o->tmp);
    kv_free(o->path);
    memset(o, 0, sizeof *o);
}

static kv_status_t out_finish(job_t *j, out_table_t *o)
{
    eng_sst_props_t props;
    memset(&props, 0, sizeof props);
    kv_status_t rc = eng_sst_builder_finish(o->b, &props);
    o->b = NULL;
    if (rc == KV_OK) rc = eng_fs_rename(o->tmp, o->path);
    eng_table_t *t = NULL;
    if (rc == KV_OK) rc = eng_table_open(j->e, o->file_no, &props, &t);
    if (rc == KV_OK) {
        eng_edit_add_table(&j->edit, j->output_level, t);
        eng_table_unref(t);
        j->bytes_written += props.file_size;
    } else {
        eng_fs_unlink(o->tmp);
        eng_fs_unlink(o->path);
    }
    eng_sst_props_deinit(&props);
    out_free(o);
    return rc;
}

/* Stream `it` through the filter into tables at j->output_level. */
static kv_status_t write_tables(job_t *j, eng_iiter_t *it)
{
    struct eng *e = j->e;
    out_table_t out = {0};
    kv_buf_t last_okey = {0}, conv = {0};
    bool have_last = false;
    uint64_t last_seq_for_key = 0;
    uint64_t n = 0;
    kv_status_t rc = KV_OK;
    for (eng_iiter_seek_first(it); eng_iiter_valid(it); eng_iiter_next(it)) {
        if ((++n & 1023) == 0) {
            rate_limit(j);
            if (e->closing && j->rate_limited) {
                rc = KV_CLOSED;
                goto err;
            }
        }
        kv_slice_t ik = eng_iiter_key(it), cell = eng_iiter_value(it);
        eng_ikey_t k;
        eng_cell_t c;
        if (!eng_ikey_parse(ik, &k) || !eng_cell_decode(cell, &c)) {
            kv_errmsg_set("an undecodable entry in a table being compacted");
            rc = KV_CORRUPT;
            goto err;
        }
        bool new_key = !have_last || !kv_slice_eq(k.okey, kv_buf_slice(&last_okey));
        if (new_key) {
            kv_buf_clear(&last_okey);
            kv_buf_append(&last_okey, k.okey.data, k.okey.len);
            have_last = true;
            last_seq_for_key = UINT64_MAX;
        }
        bool drop = false;
        if (j->keep && !j->keep(j->keep_arg, eng_okey_token(k.okey))) {
            drop = true; /* cleanup: a range this node no longer holds */
            j->cleaned++;
        } else if (last_seq_for_key <= j->smallest_snap) {
            drop = true; /* shadowed by a newer version everyone can see */
            atomic_fetch_add(&e->st_versions_dropped, 1);
        } else {
            if (!c.tombstone && c.expire_ms && (int64_t)c.expire_ms <= j->now_ms) {
                /* expired: a tombstone at its own timestamp that keeps the
                 * expiry, so gc_grace still counts from when it expired */
                eng_cell_t t = {.ts = c.ts, .tombstone = true, .expire_ms = c.expire_ms};
                kv_buf_clear(&conv);
                eng_cell_encode(&conv, &t);
                c = t;
                cell = kv_buf_slice(&conv);
                k.kind = ENG_KIND_TOMBSTONE;
            }
            if (c.tombstone && k.seq <= j->smallest_snap) {
                uint64_t since = KV_MAX(hlc_wall_ms(c.ts), c.expire_ms);
                if ((int64_t)(since + e->o.gc_grace_ms) <= j->now_ms &&
                    is_base_level(j, k.okey)) {
                    drop = true;
                    atomic_fetch_add(&e->st_tomb_dropped, 1);
                }
            }
        }
        last_seq_for_key = k.seq;
        if (drop) continue;
        if (out.b && new_key && eng_sst_builder_size(out.b) >= e->o.table_bytes) {
            if ((rc = out_finish(j, &out)) != KV_OK) goto err;
        }
        if (!out.b && (rc = out_start(j, &out)) != KV_OK) goto err;
        /* At the bottom, the newest version that every snapshot sees needs
         * no sequence number: zeroed, it compresses away (as RocksDB does). */
        uint64_t seq = k.seq;
        if (new_key && !j->check_l0 && k.seq <= j->smallest_snap && is_base_level(j, k.okey))
            seq = 0;
        kv_buf_t ikb = {0};
        if (eng_ikey_trailer(ik) != eng_trailer(seq, k.kind)) {
            eng_ikey_append(&ikb, k.okey, seq, k.kind);
            ik = kv_buf_slice(&ikb);
        }
        rc = eng_sst_builder_add(out.b, ik, cell);
        kv_buf_deinit(&ikb);
        if (rc != KV_OK) goto err;
    }
    if ((rc = eng_iiter_status(it)) != KV_OK) goto err;
    if (out.b) rc = out_finish(j, &out);
    if (rc == KV_OK && j->edit.nadds) rc = eng_fs_sync_dir(e->dir);
    kv_buf_deinit(&last_okey);
    kv_buf_deinit(&conv);
    return rc;
err:
    if (out.b) {
        eng_sst_builder_abandon(out.b);
        eng_fs_unlink(out.tmp);
    }
    out_free(&out);
    kv_buf_deinit(&last_okey);
    kv_buf_deinit(&conv);
    return rc;
}

static void job_init(job_t *j, struct eng *e, int output_level)
{
    memset(j, 0, sizeof *j);
    j->e = e;
    j->output_level = output_level;
    eng_edit_init(&j->edit);
    pthread_mutex_lock(&e->mu);
    j->v = e->current;
    eng_version_ref(j->v);
    j->smallest_snap = eng_smallest_snapshot(e);
    pthread_mutex_unlock(&e->mu);
    j->now_ms = eng_wall_ms(e);
    j->started_ns = eng_now_ns();
}

static void job_deinit(job_t *j)
{
    eng_edit_deinit(&j->edit);
    eng_version_unref(j->v);
}

/* ---- flush ------------------------------------------------------------- */

kv_status_t eng_flush_imm(struct eng *e)
{
    pthread_mutex_lock(&e->mu);
    eng_memtable_t *imm = e->imm;
    eng_memtable_ref(imm);
    uint64_t log_no = e->wal_no; /* the oldest WAL still needed after this */
    pthread_mutex_unlock(&e->mu);

    job_t j;
    job_init(&j, e, 0);
    j.check_l0 = true;
    eng_iiter_t *it = eng_memtable_iter_create(imm);
    kv_status_t rc = write_tables(&j, it);
    eng_iiter_destroy(it);
    if (rc == KV_OK) {
        j.edit.has_log = true;
        j.edit.log_number = log_no;
        rc = eng_versions_apply(e, &j.edit);
    }
    job_deinit(&j);
    if (rc == KV_OK) {
        pthread_mutex_lock(&e->mu);
        if (e->imm == imm) {
            e->imm = NULL;
            eng_memtable_unref(imm);
        }
        pthread_mutex_unlock(&e->mu);
        atomic_fetch_add(&e->st_flushes, 1);
        eng_delete_obsolete_files(e);
    }
    eng_memtable_unref(imm);
    return rc;
}

/* ---- compaction -------------------------------------------------------- */

typedef struct pick {
    int level;              /* inputs from level and level + 1 */
    int output_level;
    eng_table_t **in;
    int *in_level;
    size_t n;
} pick_t;

static void pick_add(pick_t *p, eng_table_t *t, int level)
{
    p->in = kv_realloc(p->in, (p->n + 1) * sizeof *p->in);
    p->in_level = kv_realloc(p->in_level, (p->n + 1) * sizeof *p->in_level);
    eng_table_ref(t);
    p->in[p->n] = t;
    p->in_level[p->n++] = level;
}

static void pick_free(pick_t *p)
{
    for (size_t i = 0; i < p->n; i++) eng_table_unref(p->in[i]);
    kv_free(p->in);
    kv_free(p->in_level);
    memset(p, 0, sizeof *p);
}

static kv_slice_t t_small(const eng_table_t *t) { return eng_ikey_okey(kv_buf_slice(&t->smallest)); }
static kv_slice_t t_large(const eng_table_t *t) { return eng_ikey_okey(kv_buf_slice(&t->largest)); }

/* Add every table of `level` overlapping okeys [lo, hi]. */
static void add_overlapping(pick_t *p, eng_version_t *v, int level, kv_slice_t lo,
                            kv_slice_t hi)
{
    for (size_t i = 0; i < v->n[level]; i++) {
        eng_table_t *t = v->t[level][i];
        if (kv_slice_cmp(t_large(t), lo) < 0 || kv_slice_cmp(t_small(t), hi) > 0) continue;
        pick_add(p, t, level);
    }
}

static void inputs_range(const pick_t *p, kv_buf_t *lo, kv_buf_t *hi)
{
    kv_buf_clear(lo);
    kv_buf_clear(hi);
    for (size_t i = 0; i < p->n; i++) {
        kv_slice_t s = t_small(p->in[i]), l = t_large(p->in[i]);
        if (i == 0 || kv_slice_cmp(s, kv_buf_slice(lo)) < 0) {
            kv_buf_clear(lo);
            kv_buf_append(lo, s.data, s.len);
        }
        if (i == 0 || kv_slice_cmp(l, kv_buf_slice(hi)) > 0) {
            kv_buf_clear(hi);
            kv_buf_append(hi, l.data, l.len);
        }
    }
}

static double level_score(struct eng *e, eng_version_t *v, int l)
{
    if (l == 0) return (double)v->n[0] / e->o.l0_compaction_trigger;
    double target = (double)e->o.level1_bytes;
    for (int i = 1; i < l; i++) target *= 10;
    return (double)eng_version_level_bytes(v, l) / target;
}

/* Choose an automatic compaction (mu held). False when none is due. */
static bool pick_compaction(struct eng *e, pick_t *p)
{
    eng_version_t *v = e->current;
    int best = -1;
    double best_score = 1.0;
    for (int l = 0; l < ENG_LEVELS - 1; l++) {
        double s = level_score(e, v, l);
        if (s >= best_score) {
            best = l;
            best_score = s;
        }
    }
    if (best < 0) return false;
    memset(p, 0, sizeof *p);
    p->level = best;
    p->output_level = best + 1;
    if (best == 0) {
        for (size_t i = 0; i < v->n[0]; i++) pick_add(p, v->t[0][i], 0);
    } else {
        /* the first table past the last one compacted, wrapping around */
        size_t i = 0;
        kv_buf_t *ptr = &e->compact_ptr[best];
        if (ptr->len)
            while (i < v->n[best] && kv_slice_cmp(t_small(v->t[best][i]), kv_buf_slice(ptr)) <= 0) i++;
        if (i == v->n[best]) i = 0;
        pick_add(p, v->t[best][i], best);
        kv_buf_clear(ptr);
        kv_buf_append(ptr, t_large(v->t[best][i]).data, t_large(v->t[best][i]).len);
    }
    kv_buf_t lo = {0}, hi = {0};
    inputs_range(p, &lo, &hi);
    add_overlapping(p, v, best + 1, kv_buf_slice(&lo), kv_buf_slice(&hi));
    kv_buf_deinit(&lo);
    kv_buf_deinit(&hi);
    return true;
}

static kv_status_t run_compaction(struct eng *e, pick_t *p, bool rate_limited,
                                  eng_keep_fn keep, void *keep_arg,
                                  uint64_t *cleaned)
{
    job_t j;
    job_init(&j, e, p->output_level);
    j.rate_limited = rate_limited;
    j.keep = keep;
    j.keep_arg = keep_arg;
    kv_status_t rc = KV_OK;
    /* a single input with nothing below to merge with moves by an edit
     * (unless a cleanup must look at every entry) */
    bool trivial = !keep && p->n == 1 && p->in_level[0] != p->output_level;
    if (trivial) {
        eng_edit_add_table(&j.edit, p->output_level, p->in[0]);
    } else {
        eng_iiter_t **kids = kv_malloc(p->n * sizeof *kids);
        uint64_t in_bytes = 0;
        for (size_t i = 0; i < p->n; i++) {
            kids[i] = eng_sst_iter_create(p->in[i]->sst, false);
            in_bytes += p->in[i]->size;
        }
        eng_iiter_t *it = eng_merge_iter_create(kids, p->n);
        kv_free(kids);
        rc = write_tables(&j, it);
        eng_iiter_destroy(it);
        atomic_fetch_add(&e->st_comp_read, in_bytes);
        atomic_fetch_add(&e->st_comp_written, j.bytes_written);
    }
    for (size_t i = 0; i < p->n; i++) eng_edit_del_table(&j.edit, p->in_level[i], p->in[i]->file_no);
    if (rc == KV_OK) rc = eng_versions_apply(e, &j.edit);
    if (rc == KV_OK) atomic_fetch_add(&e->st_compactions, 1);
    if (rc == KV_OK && cleaned) *cleaned += j.cleaned;
    job_deinit(&j);
    return rc;
}

/* ---- the workers ------------------------------------------------------- */

static void note_error(struct eng *e, const char *what, kv_status_t rc)
{
    KV_LOG(KV_ERROR, "%s failed (%s), retrying in 1 s: %s", what, kv_status_str(rc),
           kv_errmsg());
    atomic_fetch_add(&e->st_bg_errors, 1);
    pthread_mutex_lock(&e->mu);
    e->bg_error = rc;
    e->bg_retry_at_ns = eng_now_ns() + RETRY_NS;
    pthread_mutex_unlock(&e->mu);
}

static void *bg_main(void *arg)
{
    struct eng *e = arg;
    pthread_mutex_lock(&e->mu);
    while (!e->closing) {
        bool can_retry = eng_now_ns() >= e->bg_retry_at_ns;
        if (e->imm && !e->flush_running && can_retry) {
            e->flush_running = true;
            pthread_mutex_unlock(&e->mu);
            kv_status_t rc = eng_flush_imm(e);
            if (rc != KV_OK) note_error(e, "flush", rc);
            pthread_mutex_lock(&e->mu);
            e->flush_running = false;
            if (rc == KV_OK) e->bg_error = KV_OK;
            pthread_cond_broadcast(&e->bg_cv);
            continue;
        }
        pick_t p;
        if (!e->compaction_running && !e->manual_compaction && can_retry &&
            !e->fatal && pick_compaction(e, &p)) {
            e->compaction_running = true;
            pthread_mutex_unlock(&e->mu);
            kv_status_t rc = run_compaction(e, &p, true, NULL, NULL, NULL);
            pick_free(&p);
            if (rc != KV_OK && rc != KV_CLOSED) note_error(e, "compaction", rc);
            eng_reap_dead_tables(e);
            pthread_mutex_lock(&e->mu);
            e->compaction_running = false;
            pthread_cond_broadcast(&e->bg_cv);
            continue;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&e->bg_cv, &e->mu, &ts);
        pthread_mutex_unlock(&e->mu);
        eng_reap_dead_tables(e);
        pthread_mutex_lock(&e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

kv_status_t eng_bg_start(struct eng *e)
{
    e->bg = kv_calloc((size_t)e->o.background_threads, sizeof(pthread_t));
    for (int i = 0; i < e->o.background_threads; i++) {
        if (pthread_create(&e->bg[i], NULL, bg_main, e) != 0) return KV_NOMEM;
        e->nbg++;
    }
    return KV_OK;
}

void eng_bg_stop(struct eng *e)
{
    pthread_mutex_lock(&e->mu);
    e->closing = true;
    pthread_cond_broadcast(&e->bg_cv);
    pthread_mutex_unlock(&e->mu);
    for (int i = 0; i < e->nbg; i++) pthread_join(e->bg[i], NULL);
    kv_free(e->bg);
    e->bg = NULL;
    e->nbg = 0;
}

void eng_bg_schedule(struct eng *e) { pthread_cond_broadcast(&e->bg_cv); }

/* ---- on demand --------------------------------------------------------- */

kv_status_t eng_flush(eng_t *e)
{
    KV_RET(eng_switch_memtable(e));
    pthread_mutex_lock(&e->mu);
    kv_status_t rc = KV_OK;
    while (e->imm && !e->closing) {
        eng_bg_schedule(e);
        pthread_cond_wait(&e->bg_cv, &e->mu);
        if (e->imm && e->bg_error != KV_OK && !e->flush_running) {
            rc = e->bg_error; /* a failing flush: report, keep retrying */
            break;
        }
    }
    if (e->closing) rc = KV_CLOSED;
    pthread_mutex_unlock(&e->mu);
    return rc;
}

static bool token_overlaps(const eng_table_t *t, uint64_t start, uint64_t end)
{
    uint64_t lo = eng_okey_token(t_small(t)), hi = eng_okey_token(t_large(t));
    return hi >= start && lo <= end;
}

static kv_status_t compact_range(eng_t *e, uint64_t start, uint64_t end,
                                 eng_keep_fn keep, void *keep_arg,
                                 uint64_t *cleaned);

kv_status_t eng_compact_range(eng_t *e, uint64_t start, uint64_t end)
{
    if (start > end) {
        KV_RET(eng_compact_range(e, start, UINT64_MAX));
        return eng_compact_range(e, 0, end);
    }
    return compact_range(e, start, end, NULL, NULL, NULL);
}

kv_status_t eng_cleanup(eng_t *e, eng_keep_fn keep, void *arg, uint64_t *dropped)
{
    uint64_t n = 0;
    kv_status_t rc = compact_range(e, 0, UINT64_MAX, keep, arg, &n);
    if (dropped) *dropped = n;
    return rc;
}

static kv_status_t compact_range(eng_t *e, uint64_t start, uint64_t end,
                                 eng_keep_fn keep, void *keep_arg,
                                 uint64_t *cleaned)
{
    KV_RET(eng_flush(e));
    pthread_mutex_lock(&e->mu);
    while ((e->compaction_running || e->manual_compaction) && !e->closing)
        pthread_cond_wait(&e->bg_cv, &e->mu);
    if (e->closing) {
        pthread_mutex_unlock(&e->mu);
        return KV_CLOSED;
    }
    e->manual_compaction = true;
    int deepest = 0;
    for (int l = 0; l < ENG_LEVELS; l++)
        if (e->current->n[l]) deepest = l;
    pthread_mutex_unlock(&e->mu);

    kv_status_t rc = KV_OK;
    int bottom = deepest == 0 ? 1 : deepest;
    for (int l = 0; l <= bottom && rc == KV_OK; l++) {
        pick_t p = {0};
        p.level = l;
        p.output_level = l < bottom ? l + 1 : bottom; /* the bottom in place */
        pthread_mutex_lock(&e->mu);
        eng_version_t *v = e->current;
        bool any = false;
        for (size_t i = 0; i < v->n[l]; i++) any |= token_overlaps(v->t[l][i], start, end);
        /* L0 tables overlap one another: taking only some of them could move
         * a newer one below an older one, so L0 goes all or nothing */
        for (size_t i = 0; i < v->n[l] && any; i++)
            if (l == 0 || token_overlaps(v->t[l][i], start, end)) pick_add(&p, v->t[l][i], l);
        if (p.n && l < bottom) {
            kv_buf_t lo = {0}, hi = {0};
            inputs_range(&p, &lo, &hi);
            add_overlapping(&p, v, l + 1, kv_buf_slice(&lo), kv_buf_slice(&hi));
            kv_buf_deinit(&lo);
            kv_buf_deinit(&hi);
        }
        pthread_mutex_unlock(&e->mu);
        if (p.n) rc = run_compaction(e, &p, false, keep, keep_arg, cleaned);
        pick_free(&p);
        eng_reap_dead_tables(e);
    }
    pthread_mutex_lock(&e->mu);
    e->manual_compaction = false;
    pthread_cond_broadcast(&e->bg_cv);
    pthread_mutex_unlock(&e->mu);
    return rc;
}
