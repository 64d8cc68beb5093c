/* engine.c -- opening, recovering and writing to Cairn's LSM engine.
 *
 * DESIGN  Writers queue up; the writer at the head of the queue is the
 *         leader. It takes a group of queued batches (up to 1 MiB), and with
 *         no lock held:
 *           1. resolves each operation by last-write-wins against the newest
 *              cell held (memtables, then tables; a small map covers keys
 *              written earlier in the same group) -- older ones are answered
 *              KV_SUPERSEDED, exact duplicates are accepted without a write;
 *           2. appends the accepted operations as ONE WAL record and, under
 *              sync = group, fdatasyncs once for the whole group;
 *           3. inserts them into the memtable.
 *         It then publishes visible_seq (readers see whole groups or nothing,
 *         so a batch is atomic), wakes the group, and hands leadership to the
 *         next head: a waiting eng_write caller leads for itself; queued
 *         eng_write_async batches are led by the commit thread, so an event
 *         loop never waits for a disk. No write is delayed to grow a group:
 *         a group is whatever queued while the previous one was on disk.
 *
 *         Only the leader inserts into the memtable and resolves, so check-
 *         then-insert needs no lock. If the WAL append fails (a full disk),
 *         nothing of the group reaches the memtable and the log writer has
 *         cut the partial record: the engine stays readable and writable as
 *         soon as space returns.
 *
 *         Opening and recovery live in recover.c.
 *
 *   writer states:  queued --(becomes head)--> leading --> done
 *                      \___(in a group led by another)____/
 *
 * INVARIANTS (1) for each key, a higher seq carries a cell that wins (or
 *            ties) by last-write-wins against every lower seq; (2) nothing
 *            with seq > visible_seq is acknowledged; (3) everything with
 *            seq <= visible_seq is in the WAL, synced if sync = group.
 * THREADING  Any thread. e->mu guards the queue, memtable switches and
 *            versions; e->wal_mu guards the WAL writer.
 */
#define KV_LOG_MODULE "engine"
#include "engine_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

void eng_options_init(eng_options_t *o)
{
    memset(o, 0, sizeof *o);
    o->clock = kv_clock_system();
    o->sync = ENG_SYNC_GROUP;
    o->sync_period_ms = 100;
    o->memtable_bytes = 64u << 20;
    o->max_value_len = ENG_DEFAULT_MAX_VALUE;
    o->block_bytes = 4096;
    o->restart_interval = 16;
    o->compression_level = 1;
    o->bloom_bits_per_key = 10;
    o->cache_bytes = 32u << 20;
    o->table_bytes = 64u << 20;
    o->l0_compaction_trigger = 4;
    o->l0_slowdown_trigger = 20;
    o->l0_stop_trigger = 36;
    o->level1_bytes = 256u << 20;
    o->gc_grace_ms = 10ULL * 24 * 3600 * 1000;
    o->background_threads = 2;
    o->create_if_missing = true;
}

uint64_t eng_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

int64_t eng_wall_ms(const struct eng *e) { return kv_clock_wall_ms(e->o.clock); }

char *eng_file_name(const struct eng *e, uint64_t no, const char *ext)
{
    char name[64];
    snprintf(name, sizeof name, "%06" PRIu64 ".%s", no, ext);
    return eng_path_join(e->dir, name);
}

/* ---- lookup (shared by the write path and reads) ----------------------- */

/* Does okey fall inside table t's key range? */
bool eng_table_covers(const eng_table_t *t, kv_slice_t okey)
{
    return kv_slice_cmp(okey, eng_ikey_okey(kv_buf_slice(&t->smallest))) >= 0 &&
           kv_slice_cmp(okey, eng_ikey_okey(kv_buf_slice(&t->largest))) <= 0;
}

/* In L1+, the one table whose range may hold okey, or NULL. */
eng_table_t *eng_level_find(eng_version_t *v, int l, kv_slice_t okey)
{
    size_t lo = 0, hi = v->n[l];
    while (lo < hi) { /* first table whose largest okey >= okey */
        size_t mid = (lo + hi) / 2;
        if (kv_slice_cmp(eng_ikey_okey(kv_buf_slice(&v->t[l][mid]->largest)), okey) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < v->n[l] && eng_table_covers(v->t[l][lo], okey)) return v->t[l][lo];
    return NULL;
}

static kv_status_t table_get(eng_table_t *t, kv_slice_t okey, uint64_t max_seq,
                             bool no_io, eng_kind_t *kind, kv_buf_t *cell)
{
    uint64_t seq;
    kv_status_t rc = eng_sst_get(t->sst, okey, max_seq, no_io, kind, &seq, cell);
    if (rc == KV_CORRUPT || rc == KV_IO)
        KV_LOG(KV_ERROR, "read failed: %s", kv_errmsg());
    return rc;
}

kv_status_t eng_lookup(struct eng *e, eng_memtable_t *mem, eng_memtable_t *imm,
                       eng_version_t *v, kv_slice_t okey, uint64_t max_seq,
                       bool no_io, eng_kind_t *kind, kv_buf_t *cell)
{
    (void)e;
    uint64_t seq;
    kv_slice_t c;
    eng_memtable_t *mts[2] = {mem, imm};
    for (int i = 0; i < 2; i++) {
        if (mts[i] && eng_memtable_get(mts[i], okey, max_seq, kind, &seq, &c)) {
            kv_buf_clear(cell);
            kv_buf_append(cell, c.data, c.len);
            return KV_OK;
        }
    }
    for (size_t i = 0; i < v->n[0]; i++) {
        eng_table_t *t = v->t[0][i];
        if (!eng_table_covers(t, okey)) continue;
        kv_status_t rc = table_get(t, okey, max_seq, no_io, kind, cell);
        if (rc != KV_NOTFOUND) return rc;
    }
    for (int l = 1; l < ENG_LEVELS; l++) {
        eng_table_t *t = eng_level_find(v, l, okey);
        if (!t) continue;
        kv_status_t rc = table_get(t, okey, max_seq, no_io, kind, cell);
        if (rc != KV_NOTFOUND) return rc;
    }
    return KV_NOTFOUND;
}

/* ---- the write path ---------------------------------------------------- */

/* Keys written earlier in the current group: okey -> cell (open addressing
 * on the token, which is already a good hash). */
typedef struct group_map {
    struct slot {
        kv_slice_t okey, cell;
        bool used;
    } *slots;
    size_t cap, n;
} group_map_t;

static struct slot *gm_find(group_map_t *m, kv_slice_t okey)
{
    if (!m->cap) return NULL;
    size_t i = (size_t)eng_okey_token(okey) & (m->cap - 1);
    while (m->slots[i].used) {
        if (kv_slice_eq(m->slots[i].okey, okey)) return &m->slots[i];
        i = (i + 1) & (m->cap - 1);
    }
    return &m->slots[i];
}

static void gm_put(group_map_t *m, kv_slice_t okey, kv_slice_t cell)
{
    if ((m->n + 1) * 2 > m->cap) {
        group_map_t g = {kv_calloc(m->cap ? m->cap * 2 : 64, sizeof(struct slot)),
                         m->cap ? m->cap * 2 : 64, 0};
        for (size_t i = 0; i < m->cap; i++)
            if (m->slots[i].used) gm_put(&g, m->slots[i].okey, m->slots[i].cell);
        kv_free(m->slots);
        *m = g;
    }
    struct slot *s = gm_find(m, okey);
    if (!s->used) m->n++;
    *s = (struct slot){okey, cell, true};
}

/* Room in the memtable for the next group; mu held, may wait. */
static kv_status_t make_room(struct eng *e, bool force)
{
    bool delayed = false;
    for (;;) {
        if (e->fatal) return KV_IO;
        if (e->closing) return KV_CLOSED;
        size_t l0 = e->current->n[0];
        if (!delayed && (int)l0 >= e->o.l0_slowdown_trigger) {
            pthread_mutex_unlock(&e->mu);
            usleep(1000);
            atomic_fetch_add(&e->st_stall_ms, 1);
            pthread_mutex_lock(&e->mu);
            delayed = true;
        } else if (force ? eng_memtable_count(e->mem) == 0
                         : eng_memtable_bytes(e->mem) < e->o.memtable_bytes) {
            return KV_OK;
        } else if (e->imm || (int)l0 >= e->o.l0_stop_trigger) {
            uint64_t t0 = eng_now_ns();
            eng_bg_schedule(e);
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&e->bg_cv, &e->mu, &ts);
            atomic_fetch_add(&e->st_stall_ms, (eng_now_ns() - t0) / 1000000);
        } else {
            /* switch to a fresh memtable and WAL; the old WAL is synced
             * first, so everything acknowledged before is durable in it */
            uint64_t no = e->next_file++;
            char *path = eng_file_name(e, no, "wal");
            eng_log_writer_t *w = NULL;
            pthread_mutex_lock(&e->wal_mu);
            kv_status_t rc = eng_log_writer_sync(e->wal);
            if (rc == KV_OK) rc = eng_log_writer_create(path, ENG_WAL_MAGIC, &w);
            if (rc == KV_OK) rc = eng_fs_sync_dir(e->dir);
            if (rc != KV_OK) {
                pthread_mutex_unlock(&e->wal_mu);
                /* a failed fsync leaves unknown what reached the disk */
                if (w == NULL && rc != KV_NOSPACE) e->fatal = true;
                KV_LOG(KV_ERROR, "cannot start a new WAL: %s", kv_errmsg());
                if (w) eng_log_writer_close(w);
                eng_fs_unlink(path);
                kv_free(path);
                return rc;
            }
            eng_log_writer_close(e->wal);
            e->wal = w;
            e->imm_wal_no = e->wal_no;
            e->wal_no = no;
            e->wal_dirty = false;
            pthread_mutex_unlock(&e->wal_mu);
            kv_free(path);
            e->imm = e->mem;
            e->mem = eng_memtable_create_sized(e->o.memtable_bytes);
            eng_bg_schedule(e);
            if (force) return KV_OK;
        }
    }
}

typedef struct group {
    eng_writer_t *first, *last;
    size_t nwriters;
} group_t;

/* Steps 1-3 of the DESIGN comment for one group; mu NOT held. */
static kv_status_t commit_group(struct eng *e, group_t *g, uint64_t seq_base,
                                uint64_t *accepted_out, kv_buf_t *wal_buf)
{
    group_map_t gm = {0};
    kv_buf_t cur = {0};
    eng_wal_enc_t enc;
    kv_buf_clear(wal_buf);
    eng_wal_enc_begin(&enc, wal_buf, seq_base);
    eng_version_t *v;
    eng_memtable_t *imm;
    pthread_mutex_lock(&e->mu);
    v = e->current;
    eng_version_ref(v);
    imm = e->imm;
    if (imm) eng_memtable_ref(imm);
    pthread_mutex_unlock(&e->mu);

    kv_status_t rc = KV_OK;
    uint64_t nsuper = 0;
    /* where each accepted op's key sits in the memtable, from its lookup
     * (memtable.h): the insert in step 3 starts there */
    eng_memtable_t *mem = e->mem;
    eng_mt_pos_t pos_small[8], *pos = pos_small;
    size_t npos = 0, pos_cap = KV_ARRAY_LEN(pos_small);
    for (eng_writer_t *w = g->first;; w = w->next) {
        const eng_batch_t *b = w->batch;
        for (size_t i = 0; i < b->n; i++) {
            const eng_op_t *op = &b->ops[i];
            kv_slice_t okey = eng_op_okey(b, op), cell = eng_op_cell(b, op);
            eng_cell_t in, held;
            eng_cell_decode(cell, &in);
            bool have = false;
            eng_mt_pos_t here = {0};
            struct slot *s = gm_find(&gm, okey);
            if (s && s->used) {
                eng_cell_decode(s->cell, &held);
                have = true;
            } else {
                eng_kind_t kind;
                kv_slice_t mc;
                kv_status_t lr;
                if (eng_memtable_get_pos(mem, okey, &kind, NULL, &mc, &here)) {
                    kv_buf_clear(&cur);
                    kv_buf_append(&cur, mc.data, mc.len);
                    lr = KV_OK;
                } else {
                    lr = eng_lookup(e, NULL, imm, v, okey, ENG_MAX_SEQ, false, &kind, &cur);
                }
                if (lr == KV_OK) {
                    if (!eng_cell_decode(kv_buf_slice(&cur), &held)) {
                        kv_errmsg_set("undecodable cell held for a key");
                        lr = KV_CORRUPT;
                    } else {
                        have = true;
                    }
                }
                if (lr != KV_OK && lr != KV_NOTFOUND) {
                    rc = lr;
                    goto out;
                }
            }
            eng_result_t *r = w->results ? &w->results[i] : NULL;
            int cmp = have ? eng_cell_lww_cmp(&in, &held) : 1;
            if (cmp < 0) {
                nsuper++;
                if (r) *r = (eng_result_t){KV_SUPERSEDED, held.ts};
                continue;
            }
            if (r) *r = (eng_result_t){KV_OK, 0};
            if (cmp == 0) continue; /* the same cell again: nothing to do */
            eng_wal_enc_add(&enc, op->kind, okey, cell);
            gm_put(&gm, okey, cell);
            if (npos == pos_cap) {
                pos_cap *= 2;
                if (pos == pos_small) {
                    pos = kv_malloc(pos_cap * sizeof *pos);
                    memcpy(pos, pos_small, sizeof pos_small);
                } else {
                    pos = kv_realloc(pos, pos_cap * sizeof *pos);
                }
            }
            pos[npos++] = here;
        }
        if (w == g->last) break;
    }
    uint64_t accepted = eng_wal_enc_end(&enc);
    if (accepted) {
        bool sync = e->o.sync == ENG_SYNC_GROUP;
        pthread_mutex_lock(&e->wal_mu);
        rc = eng_log_writer_add(e->wal, kv_buf_slice(wal_buf));
        if (rc == KV_OK) {
            e->wal_dirty = true;
            if (sync) {
                rc = eng_log_writer_sync(e->wal);
                if (rc == KV_OK) {
                    e->wal_dirty = false;
                    atomic_fetch_add(&e->st_wal_syncs, 1);
                } else {
                    /* the record's fate on disk is unknown: never ack it,
                     * never let a later sync make it look acknowledged */
                    pthread_mutex_lock(&e->mu);
                    e->fatal = true;
                    pthread_mutex_unlock(&e->mu);
                    KV_LOG(KV_ERROR, "WAL sync failed; refusing writes until reopen: %s",
                           kv_errmsg());
                }
            }
        } else {
            KV_LOG(KV_WARN, "WAL append failed (%s): %s", kv_status_str(rc), kv_errmsg());
        }
        pthread_mutex_unlock(&e->wal_mu);
        if (rc != KV_OK) goto out;
        atomic_fetch_add(&e->st_wal_records, 1);
        atomic_fetch_add(&e->st_wal_bytes, wal_buf->len);
        atomic_fetch_add(&e->st_wal_groups, g->nwriters);

        /* 3. the memtable: insert exactly what the WAL record holds, read
         * back from it, so replay and the live path share one truth */
        uint64_t seq = seq_base;
        kv_assert(mem == e->mem && npos == accepted); /* only the leader switches it */
        const uint8_t *p = wal_buf->data + ENG_WAL_HEADER, *end = wal_buf->data + wal_buf->len;
        for (uint64_t k = 0; k < accepted; k++, seq++) {
            eng_kind_t kind = (eng_kind_t)*p++;
            uint64_t klen = 0, clen = 0; /* we encoded it: it decodes */
            p += kv_get_varint64(p, end, &klen);
            kv_slice_t okey = kv_slice(p, (size_t)klen);
            p += klen;
            p += kv_get_varint64(p, end, &clen);
            kv_slice_t cell = kv_slice(p, (size_t)clen);
            p += clen;
            eng_memtable_add_at(mem, seq, kind, okey, cell, &pos[k]);
        }
    }
out:
    if (pos != pos_small) kv_free(pos);
    if (rc == KV_OK) atomic_fetch_add(&e->st_superseded, nsuper);
    *accepted_out = rc == KV_OK ? accepted : 0;
    if (imm) eng_memtable_unref(imm);
    eng_version_unref(v);
    kv_free(gm.slots);
    kv_buf_deinit(&cur);
    return rc;
}

static bool writer_is_async(const eng_writer_t *w) { return w->cb != NULL; }

/* Wake whoever must lead the queue's new head (mu held). */
static void wake_head(struct eng *e)
{
    eng_writer_t *h = e->wq_head;
    if (!h) return;
    if (writer_is_async(h)) pthread_cond_signal(&e->commit_cv);
    else pthread_cond_signal(&h->cv);
}

static void enqueue(struct eng *e, eng_writer_t *w)
{
    w->next = NULL;
    if (e->wq_tail) e->wq_tail->next = w;
    else e->wq_head = w;
    e->wq_tail = w;
}

static void finish_writer(eng_writer_t *w)
{
    if (writer_is_async(w)) {
        w->cb(w->cb_arg, w->status, w->status == KV_OK ? w->results : NULL,
              w->batch->n);
        eng_batch_destroy(w->owned);
        kv_free(w->owned_results);
        pthread_cond_destroy(&w->cv);
        kv_free(w);
    }
}

/* Lead one group starting at the queue head; mu held on entry and exit. */
static void lead_group(struct eng *e, kv_buf_t *wal_buf)
{
    bool force = e->wq_head->force_switch;
    kv_status_t rc = make_room(e, force);
    group_t g = {e->wq_head, e->wq_head, 1};
    size_t bytes = eng_batch_bytes(g.first->batch);
    while (!force && g.last->next && !g.last->next->force_switch &&
           bytes + eng_batch_bytes(g.last->next->batch) <= ENG_GROUP_MAX_BYTES) {
        g.last = g.last->next;
        bytes += eng_batch_bytes(g.last->batch);
        g.nwriters++;
    }
    uint64_t accepted = 0;
    if (rc == KV_OK && !force) {
        uint64_t seq_base = e->last_seq + 1;
        pthread_mutex_unlock(&e->mu);
        rc = commit_group(e, &g, seq_base, &accepted, wal_buf);
        pthread_mutex_lock(&e->mu);
        e->last_seq += accepted;
        atomic_store(&e->visible_seq, e->last_seq);
    }
    /* pop the group; async callbacks run without the lock */
    eng_writer_t *done = g.first, *stop = g.last->next;
    e->wq_head = stop;
    if (!stop) e->wq_tail = NULL;
    for (eng_writer_t *w = done; w != stop; w = w->next) {
        w->status = rc;
        if (writer_is_async(w)) e->async_bytes -= eng_batch_bytes(w->batch);
    }
    wake_head(e);
    /* Chain the async writers before waking the sync ones: a woken sync
     * writer returns and its stack frame is gone. */
    eng_writer_t *async_head = NULL, **async_tail = &async_head;
    for (eng_writer_t *w = done, *next; w != stop; w = next) {
        next = w->next;
        if (writer_is_async(w)) {
            *async_tail = w;
            async_tail = &w->next;
        } else {
            w->done = true;
            pthread_cond_signal(&w->cv);
        }
    }
    *async_tail = NULL;
    if (async_head) {
        pthread_mutex_unlock(&e->mu);
        for (eng_writer_t *w = async_head, *next; w; w = next) {
            next = w->next;
            finish_writer(w);
        }
        pthread_mutex_lock(&e->mu);
    }
}

static void count_ops(struct eng *e, const eng_batch_t *b)
{
    uint64_t dels = 0;
    for (size_t i = 0; i < b->n; i++) dels += b->ops[i].kind == ENG_KIND_TOMBSTONE;
    atomic_fetch_add(&e->st_deletes, dels);
    atomic_fetch_add(&e->st_puts, b->n - dels);
}

static kv_status_t check_batch(struct eng *e, const eng_batch_t *b)
{
    if (b->invalid) {
        kv_errmsg_set("a key is longer than %u bytes", ENG_MAX_KEY_LEN);
        return KV_INVALID;
    }
    for (size_t i = 0; i < b->n; i++) {
        /* the cell is header + value: only a long cell needs decoding */
        if (b->ops[i].kind != ENG_KIND_VALUE ||
            b->ops[i].cell_len <= CELL_HEADER_MIN + e->o.max_value_len)
            continue;
        eng_cell_t c;
        eng_cell_decode(eng_op_cell(b, &b->ops[i]), &c);
        if (c.value.len > e->o.max_value_len) {
            kv_errmsg_set("a value of %zu bytes is larger than the %zu allowed",
                          c.value.len, e->o.max_value_len);
            return KV_INVALID;
        }
    }
    return KV_OK;
}

static kv_status_t write_sync(eng_t *e, const eng_batch_t *b, eng_result_t *results,
                              bool force_switch)
{
    eng_writer_t w = {.batch = b, .results = results, .force_switch = force_switch};
    eng_result_t *tmp = NULL;
    if (!results) w.results = tmp = kv_malloc((b->n ? b->n : 1) * sizeof *tmp);
    pthread_cond_init(&w.cv, NULL);
    pthread_mutex_lock(&e->mu);
    if (e->closing) {
        pthread_mutex_unlock(&e->mu);
        pthread_cond_destroy(&w.cv);
        kv_free(tmp);
        return KV_CLOSED;
    }
    enqueue(e, &w);
    kv_buf_t wal_buf = {0};
    while (!w.done) {
        if (e->wq_head == &w) lead_group(e, &wal_buf);
        else pthread_cond_wait(&w.cv, &e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    kv_buf_deinit(&wal_buf);
    pthread_cond_destroy(&w.cv);
    kv_free(tmp);
    if (w.status == KV_OK) count_ops(e, b);
    return w.status;
}

kv_status_t eng_write(eng_t *e, const eng_batch_t *b, eng_result_t *results)
{
    KV_RET(check_batch(e, b));
    if (b->n == 0) return KV_OK;
    return write_sync(e, b, results, false);
}

/* Only a leader may switch memtables, so eng_flush queues like a writer. */
kv_status_t eng_switch_memtable(struct eng *e)
{
    eng_batch_t empty = {0};
    return write_sync(e, &empty, NULL, true);
}

kv_status_t eng_write_async(eng_t *e, const eng_batch_t *b, eng_write_cb done,
                            void *arg)
{
    kv_assert(done != NULL);
    KV_RET(check_batch(e, b));
    eng_writer_t *w = kv_calloc(1, sizeof *w);
    w->owned = eng_batch_clone(b);
    w->batch = w->owned;
    w->owned_results = w->results = kv_malloc((b->n ? b->n : 1) * sizeof(eng_result_t));
    w->cb = done;
    w->cb_arg = arg;
    pthread_cond_init(&w->cv, NULL);
    pthread_mutex_lock(&e->mu);
    if (e->closing || e->async_bytes + eng_batch_bytes(b) > ENG_ASYNC_MAX_BYTES) {
        kv_status_t rc = e->closing ? KV_CLOSED : KV_BUSY;
        pthread_mutex_unlock(&e->mu);
        eng_batch_destroy(w->owned);
        kv_free(w->owned_results);
        pthread_cond_destroy(&w->cv);
        kv_free(w);
        return rc;
    }
    e->async_bytes += eng_batch_bytes(b);
    count_ops(e, b);
    enqueue(e, w);
    if (e->wq_head == w) pthread_cond_signal(&e->commit_cv);
    pthread_mutex_unlock(&e->mu);
    return KV_OK;
}

/* Leads groups whose head is an async writer. */
void *eng_commit_main(void *arg)
{
    struct eng *e = arg;
    kv_buf_t wal_buf = {0};
    pthread_mutex_lock(&e->mu);
    for (;;) {
        if (e->wq_head && writer_is_async(e->wq_head)) {
            lead_group(e, &wal_buf);
            continue;
        }
        if (e->closing && !e->wq_head) break;
        pthread_cond_wait(&e->commit_cv, &e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    kv_buf_deinit(&wal_buf);
    return NULL;
}

/* sync = periodic: fdatasync the WAL every sync_period_ms when dirty. */
void *eng_sync_main(void *arg)
{
    struct eng *e = arg;
    pthread_mutex_lock(&e->mu);
    while (!e->closing) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)e->o.sync_period_ms * 1000000ULL;
        ts.tv_sec += (time_t)(ns / 1000000000ULL);
        ts.tv_nsec = (long)(ns % 1000000000ULL);
        pthread_cond_timedwait(&e->commit_cv, &e->mu, &ts);
        pthread_mutex_unlock(&e->mu);
        pthread_mutex_lock(&e->wal_mu);
        if (e->wal_dirty && e->wal) {
            if (eng_log_writer_sync(e->wal) == KV_OK) {
                e->wal_dirty = false;
                atomic_fetch_add(&e->st_wal_syncs, 1);
            } else {
                KV_LOG(KV_ERROR, "periodic WAL sync failed; refusing writes until reopen: %s",
                       kv_errmsg());
                pthread_mutex_unlock(&e->wal_mu);
                pthread_mutex_lock(&e->mu);
                e->fatal = true;
                pthread_mutex_unlock(&e->mu);
                pthread_mutex_lock(&e->wal_mu);
            }
        }
        pthread_mutex_unlock(&e->wal_mu);
        pthread_mutex_lock(&e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

kv_status_t eng_put(eng_t *e, kv_slice_t key, kv_slice_t value, hlc_ts_t ts,
                    uint64_t expire_ms, hlc_ts_t *superseded_by)
{
    /* a one-op batch on the stack; its data too when it is small (need is
     * an upper bound, so the buffer never has to grow) */
    uint8_t stack[512];
    eng_op_t op;
    eng_batch_t b = {.ops = &op, .cap = 1};
    size_t need = ENG_TOKEN_LEN + key.len + CELL_HEADER_MIN + 8 + value.len;
    if (need <= sizeof stack) b.data = (kv_buf_t){stack, 0, sizeof stack};
    eng_batch_t *bp = &b;
    eng_batch_put(bp, key, value, ts, expire_ms);
    eng_result_t r = {KV_OK, 0};
    kv_status_t rc = eng_write(e, bp, &r);
    if (b.data.data != stack) kv_buf_deinit(&b.data);
    if (rc != KV_OK) return rc;
    if (r.status == KV_SUPERSEDED && superseded_by) *superseded_by = r.superseded_by;
    return r.status;
}

kv_status_t eng_delete(eng_t *e, kv_slice_t key, hlc_ts_t ts, hlc_ts_t *superseded_by)
{
    eng_batch_t *b = eng_batch_create();
    eng_batch_delete(b, key, ts);
    eng_result_t r = {KV_OK, 0};
    kv_status_t rc = eng_write(e, b, &r);
    eng_batch_destroy(b);
    if (rc != KV_OK) return rc;
    if (r.status == KV_SUPERSEDED && superseded_by) *superseded_by = r.superseded_by;
    return r.status;
}
