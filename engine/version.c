/* version.c -- live tables, versions and the manifest.
 *
 * DESIGN  A version is an immutable snapshot of which SSTables are live, per
 *         level. Readers hold a reference to the version they started with,
 *         so flushes and compactions never pull a file out from under them.
 *         Each change is an edit (tables added and removed, the WAL number
 *         below which logs are obsolete, the next file number, the last
 *         sequence number) journaled in the manifest before it is installed.
 *
 *         The manifest is a record log (log.h) of edits; CURRENT names the
 *         live one. At open, and whenever it grows past 4 MiB, a fresh
 *         manifest is written holding one edit that describes the whole
 *         version. Crash-safe order when switching (the ALICE findings):
 *           1. write the new manifest and fdatasync it;
 *           2. fsync the directory (the new name is durable);
 *           3. write CURRENT.tmp, fsync, rename over CURRENT, fsync dir;
 *           4. only now unlink the old manifest.
 *         A crash before 3 finishes leaves CURRENT naming the old, intact
 *         manifest; the orphan new one is deleted at the next open.
 *
 * EDIT RECORD  tag(varint) fields..., repeated:
 *   1 log_number  2 next_file  3 last_seq          (varint each)
 *   4 add: level file_no size entries tombstones min_ts max_ts (varints)
 *          smallest_len smallest largest_len largest
 *   5 del: level file_no
 *
 * INVARIANTS (1) in L1+ tables are sorted by smallest key and their key
 *            ranges do not overlap; (2) L0 is ordered newest file first;
 *            (3) a table's file is unlinked only after no version refers
 *            to it and the edit removing it is durable.
 * THREADING  Versions are immutable once installed; e->current changes
 *            under e->mu. Edits are serialised by manifest_busy.
 */
#define KV_LOG_MODULE "engine"
#include "engine_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- tables ------------------------------------------------------------ */

void eng_table_ref(eng_table_t *t) { atomic_fetch_add(&t->refs, 1); }

static void table_free(eng_table_t *t)
{
    eng_sst_close(t->sst);
    kv_buf_deinit(&t->smallest);
    kv_buf_deinit(&t->largest);
    kv_free(t);
}

void eng_table_unref(eng_table_t *t)
{
    if (!t || atomic_fetch_sub(&t->refs, 1) != 1) return;
    if (atomic_load(&t->obsolete) && t->eng) {
        /* the file goes on a background thread, never the caller's */
        struct eng *e = t->eng;
        pthread_mutex_lock(&e->dead_mu);
        t->next_dead = e->dead;
        e->dead = t;
        pthread_mutex_unlock(&e->dead_mu);
        return;
    }
    table_free(t);
}

void eng_reap_dead_tables(struct eng *e)
{
    pthread_mutex_lock(&e->dead_mu);
    eng_table_t *t = e->dead;
    e->dead = NULL;
    pthread_mutex_unlock(&e->dead_mu);
    while (t) {
        eng_table_t *next = t->next_dead;
        char *path = eng_file_name(e, t->file_no, "sst");
        if (e->cache) eng_cache_erase_file(e->cache, t->file_no);
        eng_sst_close(t->sst);
        t->sst = NULL;
        if (eng_fs_unlink(path) != KV_OK)
            KV_LOG(KV_WARN, "cannot remove obsolete table: %s", kv_errmsg());
        kv_free(path);
        table_free(t);
        t = next;
    }
}

static eng_table_t *table_new(struct eng *e, uint64_t file_no)
{
    eng_table_t *t = kv_calloc(1, sizeof *t);
    atomic_init(&t->refs, 1);
    atomic_init(&t->obsolete, false);
    t->file_no = file_no;
    t->eng = e;
    return t;
}

kv_status_t eng_table_open(struct eng *e, uint64_t file_no,
                           const eng_sst_props_t *props, eng_table_t **out)
{
    eng_table_t *t = table_new(e, file_no);
    t->size = props->file_size;
    t->entries = props->entries;
    t->tombstones = props->tombstones;
    t->min_ts = props->min_ts;
    t->max_ts = props->max_ts;
    kv_buf_append(&t->smallest, props->smallest.data, props->smallest.len);
    kv_buf_append(&t->largest, props->largest.data, props->largest.len);
    char *path = eng_file_name(e, file_no, "sst");
    kv_status_t rc = eng_sst_open(path, file_no, e->cache, &t->sst);
    kv_free(path);
    if (rc != KV_OK) {
        table_free(t);
        return rc;
    }
    *out = t;
    return KV_OK;
}

/* ---- versions ---------------------------------------------------------- */

static eng_version_t *version_new(void)
{
    eng_version_t *v = kv_calloc(1, sizeof *v);
    atomic_init(&v->refs, 1);
    return v;
}

void eng_version_ref(eng_version_t *v) { atomic_fetch_add(&v->refs, 1); }

void eng_version_unref(eng_version_t *v)
{
    if (!v || atomic_fetch_sub(&v->refs, 1) != 1) return;
    for (int l = 0; l < ENG_LEVELS; l++) {
        for (size_t i = 0; i < v->n[l]; i++) eng_table_unref(v->t[l][i]);
        kv_free(v->t[l]);
    }
    kv_free(v);
}

uint64_t eng_version_level_bytes(const eng_version_t *v, int level)
{
    uint64_t b = 0;
    for (size_t i = 0; i < v->n[level]; i++) b += v->t[level][i]->size;
    return b;
}

static int cmp_l0(const void *a, const void *b)
{
    const eng_table_t *x = *(eng_table_t *const *)a, *y = *(eng_table_t *const *)b;
    return x->file_no > y->file_no ? -1 : x->file_no < y->file_no ? 1 : 0;
}

static int cmp_smallest(const void *a, const void *b)
{
    const eng_table_t *x = *(eng_table_t *const *)a, *y = *(eng_table_t *const *)b;
    return eng_ikey_cmp(kv_buf_slice(&x->smallest), kv_buf_slice(&y->smallest));
}

kv_status_t eng_version_validate(const eng_version_t *v)
{
    for (int l = 0; l < ENG_LEVELS; l++) {
        for (size_t i = 0; i < v->n[l]; i++) {
            const eng_table_t *t = v->t[l][i];
            if (eng_ikey_cmp(kv_buf_slice(&t->smallest), kv_buf_slice(&t->largest)) > 0) {
                kv_errmsg_set("table %06" PRIu64 " has smallest > largest", t->file_no);
                return KV_CORRUPT;
            }
            if (i == 0) continue;
            const eng_table_t *p = v->t[l][i - 1];
            if (l == 0) {
                if (p->file_no <= t->file_no) {
                    kv_errmsg_set("level 0 out of order at %06" PRIu64, t->file_no);
                    return KV_CORRUPT;
                }
            } else if (kv_slice_cmp(eng_ikey_okey(kv_buf_slice(&p->largest)),
                                    eng_ikey_okey(kv_buf_slice(&t->smallest))) >= 0) {
                kv_errmsg_set("level %d tables %06" PRIu64 " and %06" PRIu64
                              " overlap", l, p->file_no, t->file_no);
                return KV_CORRUPT;
            }
        }
    }
    return KV_OK;
}

/* base + edit -> a new version (tables shared by reference). */
static eng_version_t *version_apply(const eng_version_t *base, const eng_edit_t *ed)
{
    eng_version_t *v = version_new();
    for (int l = 0; l < ENG_LEVELS; l++) {
        size_t cap = (base ? base->n[l] : 0) + ed->nadds;
        v->t[l] = kv_malloc((cap ? cap : 1) * sizeof(eng_table_t *));
        if (!base) continue;
        for (size_t i = 0; i < base->n[l]; i++) {
            eng_table_t *t = base->t[l][i];
            bool deleted = false;
            for (size_t d = 0; d < ed->ndels; d++)
                if (ed->dels[d].level == l && ed->dels[d].file_no == t->file_no)
                    deleted = true;
            if (deleted) continue;
            eng_table_ref(t);
            v->t[l][v->n[l]++] = t;
        }
    }
    for (size_t a = 0; a < ed->nadds; a++) {
        int l = ed->adds[a].level;
        eng_table_ref(ed->adds[a].table);
        v->t[l][v->n[l]++] = ed->adds[a].table;
    }
    for (int l = 0; l < ENG_LEVELS; l++)
        if (v->n[l] > 1)
            qsort(v->t[l], v->n[l], sizeof(eng_table_t *), l == 0 ? cmp_l0 : cmp_smallest);
    return v;
}

/* ---- edits ------------------------------------------------------------- */

void eng_edit_init(eng_edit_t *ed) { memset(ed, 0, sizeof *ed); }

void eng_edit_deinit(eng_edit_t *ed)
{
    for (size_t i = 0; i < ed->nadds; i++) eng_table_unref(ed->adds[i].table);
    kv_free(ed->adds);
    kv_free(ed->dels);
    memset(ed, 0, sizeof *ed);
}

void eng_edit_add_table(eng_edit_t *ed, int level, eng_table_t *t)
{
    ed->adds = kv_realloc(ed->adds, (ed->nadds + 1) * sizeof *ed->adds);
    eng_table_ref(t);
    ed->adds[ed->nadds++] = (eng_edit_add_t){level, t};
}

void eng_edit_del_table(eng_edit_t *ed, int level, uint64_t file_no)
{
    ed->dels = kv_realloc(ed->dels, (ed->ndels + 1) * sizeof *ed->dels);
    ed->dels[ed->ndels++] = (eng_edit_del_t){level, file_no};
}

static void put_bytes(kv_buf_t *b, const kv_buf_t *s)
{
    kv_buf_append_lenbytes(b, s->data, s->len);
}

static void encode_add(kv_buf_t *b, int level, const eng_table_t *t)
{
    kv_buf_append_varint64(b, 4);
    kv_buf_append_varint64(b, (uint64_t)level);
    kv_buf_append_varint64(b, t->file_no);
    kv_buf_append_varint64(b, t->size);
    kv_buf_append_varint64(b, t->entries);
    kv_buf_append_varint64(b, t->tombstones);
    kv_buf_append_varint64(b, t->min_ts);
    kv_buf_append_varint64(b, t->max_ts);
    put_bytes(b, &t->smallest);
    put_bytes(b, &t->largest);
}

static void encode_edit(kv_buf_t *b, const eng_edit_t *ed)
{
    if (ed->has_log) { kv_buf_append_varint64(b, 1); kv_buf_append_varint64(b, ed->log_number); }
    if (ed->has_next_file) { kv_buf_append_varint64(b, 2); kv_buf_append_varint64(b, ed->next_file); }
    if (ed->has_last_seq) { kv_buf_append_varint64(b, 3); kv_buf_append_varint64(b, ed->last_seq); }
    for (size_t i = 0; i < ed->ndels; i++) {
        kv_buf_append_varint64(b, 5);
        kv_buf_append_varint64(b, (uint64_t)ed->dels[i].level);
        kv_buf_append_varint64(b, ed->dels[i].file_no);
    }
    for (size_t i = 0; i < ed->nadds; i++)
        encode_add(b, ed->adds[i].level, ed->adds[i].table);
}

/* The whole version as one edit. */
static void encode_snapshot(kv_buf_t *b, const eng_version_t *v, uint64_t log_no,
                            uint64_t next_file, uint64_t last_seq)
{
    kv_buf_append_varint64(b, 1); kv_buf_append_varint64(b, log_no);
    kv_buf_append_varint64(b, 2); kv_buf_append_varint64(b, next_file);
    kv_buf_append_varint64(b, 3); kv_buf_append_varint64(b, last_seq);
    for (int l = 0; l < ENG_LEVELS; l++)
        for (size_t i = 0; i < v->n[l]; i++) encode_add(b, l, v->t[l][i]);
}

typedef struct reader {
    const uint8_t *p, *end;
    bool bad;
} reader_t;

static uint64_t get_var(reader_t *r)
{
    uint64_t v = 0;
    size_t n = r->bad ? 0 : kv_get_varint64(r->p, r->end, &v);
    if (!n) {
        r->bad = true;
        return 0;
    }
    r->p += n;
    return v;
}

static void get_bytes(reader_t *r, kv_buf_t *out)
{
    uint64_t n = get_var(r);
    if (r->bad || n > (uint64_t)(r->end - r->p) || n < ENG_TOKEN_LEN + ENG_TRAILER_LEN) {
        r->bad = true;
        return;
    }
    kv_buf_append(out, r->p, (size_t)n);
    r->p += n;
}

/* Decode one edit into ed, creating unopened tables for adds. */
static kv_status_t decode_edit(struct eng *e, kv_slice_t in, eng_edit_t *ed)
{
    reader_t r = {in.data, in.data + in.len, false};
    while (!r.bad && r.p < r.end) {
        uint64_t tag = get_var(&r);
        switch (tag) {
        case 1: ed->has_log = true; ed->log_number = get_var(&r); break;
        case 2: ed->has_next_file = true; ed->next_file = get_var(&r); break;
        case 3: ed->has_last_seq = true; ed->last_seq = get_var(&r); break;
        case 4: {
            uint64_t level = get_var(&r);
            eng_table_t *t = table_new(e, get_var(&r));
            t->size = get_var(&r);
            t->entries = get_var(&r);
            t->tombstones = get_var(&r);
            t->min_ts = get_var(&r);
            t->max_ts = get_var(&r);
            get_bytes(&r, &t->smallest);
            get_bytes(&r, &t->largest);
            if (level >= ENG_LEVELS) r.bad = true;
            if (!r.bad) eng_edit_add_table(ed, (int)level, t);
            eng_table_unref(t);
            break;
        }
        case 5: {
            uint64_t level = get_var(&r), no = get_var(&r);
            if (level >= ENG_LEVELS) r.bad = true;
            if (!r.bad) eng_edit_del_table(ed, (int)level, no);
            break;
        }
        default: r.bad = true;
        }
    }
    return r.bad ? KV_CORRUPT : KV_OK;
}

/* ---- manifest files ---------------------------------------------------- */

static kv_status_t write_current(struct eng *e, uint64_t manifest_no, bool *renamed)
{
    char buf[64];
    int n = snprintf(buf, sizeof buf, "MANIFEST-%06" PRIu64 "\n", manifest_no);
    return eng_fs_write_file_atomic(e->dir, "CURRENT", buf, (size_t)n, renamed);
}

static char *manifest_path(struct eng *e, uint64_t no)
{
    char name[64];
    snprintf(name, sizeof name, "MANIFEST-%06" PRIu64, no);
    return eng_path_join(e->dir, name);
}

/* Steps 1-4 of the switch (see the top of the file). On success the engine
 * writes further edits to the new manifest. On failure *unknown says
 * whether CURRENT may already name the new manifest (its directory sync
 * failed after the rename): then both manifests are kept, since either may
 * be the one the next open reads, and the caller must stop changing the
 * store. */
static kv_status_t manifest_roll(struct eng *e, const eng_version_t *v,
                                 uint64_t new_no, uint64_t log_no,
                                 uint64_t next_file, uint64_t last_seq,
                                 bool *unknown)
{
    char *path = manifest_path(e, new_no);
    eng_log_writer_t *w = NULL;
    kv_buf_t rec = {0};
    kv_status_t rc;
    bool renamed = false;
    *unknown = false;
    encode_snapshot(&rec, v, log_no, next_file, last_seq);
    KV_ERR(rc = eng_log_writer_create(path, ENG_MANIFEST_MAGIC, &w));
    KV_ERR(rc = eng_log_writer_add(w, kv_buf_slice(&rec)));
    KV_ERR(rc = eng_log_writer_sync(w));
    KV_ERR(rc = eng_fs_sync_dir(e->dir));
    rc = write_current(e, new_no, &renamed);
    if (rc != KV_OK && renamed) {
        *unknown = true;
        KV_LOG(KV_ERROR, "CURRENT now names %s but may not be durable; keeping both "
               "manifests: %s", path, kv_errmsg());
        eng_log_writer_close(w);
        kv_buf_deinit(&rec);
        kv_free(path);
        return rc;
    }
    if (rc != KV_OK) goto err;
    if (e->manifest) {
        char *old = manifest_path(e, e->manifest_no);
        eng_log_writer_close(e->manifest);
        eng_fs_unlink(old);
        kv_free(old);
    }
    e->manifest = w;
    e->manifest_no = new_no;
    kv_buf_deinit(&rec);
    kv_free(path);
    return KV_OK;
err:
    KV_LOG(KV_ERROR, "cannot write manifest %s: %s", path, kv_errmsg());
    eng_log_writer_close(w);
    eng_fs_unlink(path);
    kv_buf_deinit(&rec);
    kv_free(path);
    return rc;
}

kv_status_t eng_versions_create(struct eng *e)
{
    e->current = version_new();
    e->next_file = 2;
    e->log_number = 0;
    uint64_t no = 1;
    bool unknown;
    return manifest_roll(e, e->current, no, 0, e->next_file, 0, &unknown);
}

kv_status_t eng_versions_recover(struct eng *e)
{
    kv_buf_t cur = {0};
    char *cpath = eng_path_join(e->dir, "CURRENT");
    eng_log_reader_t *r = NULL;
    eng_version_t *v = version_new();
    char *mpath = NULL;
    kv_status_t rc;
    KV_ERR(rc = eng_fs_read_file(cpath, 256, &cur));
    uint64_t mno = 0;
    {
        char name[64] = {0};
        if (cur.len) /* an empty CURRENT reads as no buffer at all */
            memcpy(name, cur.data, KV_MIN(cur.len, sizeof name - 1));
        char *end = NULL;
        if (strncmp(name, "MANIFEST-", 9) != 0 ||
            (mno = strtoull(name + 9, &end, 10)) == 0 || *end != '\n') {
            kv_errmsg_set("%s does not name a manifest", cpath);
            rc = KV_CORRUPT;
            goto err;
        }
    }
    mpath = manifest_path(e, mno);
    rc = eng_log_reader_open(mpath, ENG_MANIFEST_MAGIC, false, &r);
    if (rc == KV_NOTFOUND) {
        /* the store exists (CURRENT does) but its state is gone: damage,
         * not "no store here", which a caller might answer by creating one */
        kv_errmsg_set("%s names MANIFEST-%06" PRIu64 ", which is missing", cpath, mno);
        rc = KV_CORRUPT;
    }
    if (rc != KV_OK) goto err;
    uint64_t log_no = 0, next_file = 2, last_seq = 0;
    kv_slice_t payload;
    while ((rc = eng_log_reader_next(r, &payload)) == KV_OK) {
        eng_edit_t ed;
        eng_edit_init(&ed);
        if (decode_edit(e, payload, &ed) != KV_OK) {
            kv_errmsg_set("%s: undecodable edit ending at offset %" PRIu64, mpath,
                          eng_log_reader_offset(r));
            eng_edit_deinit(&ed);
            rc = KV_CORRUPT;
            goto err;
        }
        if (ed.has_log) log_no = ed.log_number;
        if (ed.has_next_file) next_file = ed.next_file;
        if (ed.has_last_seq) last_seq = ed.last_seq;
        eng_version_t *nv = version_apply(v, &ed);
        eng_version_unref(v);
        v = nv;
        eng_edit_deinit(&ed);
    }
    if (rc != KV_NOTFOUND) goto err;
    eng_log_read_stats_t st;
    eng_log_reader_stats(r, &st);
    if (st.torn)
        KV_LOG(KV_WARN, "%s: cut an unfinished edit at offset %" PRIu64, mpath,
               st.torn_offset);

    /* open every live table; a missing or short file is corruption */
    for (int l = 0; l < ENG_LEVELS; l++) {
        for (size_t i = 0; i < v->n[l]; i++) {
            eng_table_t *t = v->t[l][i];
            char *path = eng_file_name(e, t->file_no, "sst");
            rc = eng_sst_open(path, t->file_no, e->cache, &t->sst);
            if (rc == KV_NOTFOUND) {
                kv_errmsg_set("table %s is listed in %s but missing", path, mpath);
                rc = KV_CORRUPT;
            } else if (rc == KV_OK && eng_sst_props(t->sst)->file_size != t->size) {
                kv_errmsg_set("table %s is %" PRIu64 " bytes, the manifest says %" PRIu64,
                              path, eng_sst_props(t->sst)->file_size, t->size);
                rc = KV_CORRUPT;
            }
            kv_free(path);
            if (rc != KV_OK) goto err;
            if (t->file_no >= next_file) next_file = t->file_no + 1;
        }
    }
    if ((rc = eng_version_validate(v)) != KV_OK) goto err;
    e->current = v;
    e->log_number = log_no;
    e->next_file = KV_MAX(next_file, mno + 1);
    e->last_seq = last_seq;
    atomic_store(&e->visible_seq, last_seq);
    eng_log_reader_close(r);
    kv_buf_deinit(&cur);
    kv_free(cpath);
    kv_free(mpath);
    e->manifest_no = mno; /* replaced by a fresh one once the WALs replay */
    return KV_OK;
err:
    eng_log_reader_close(r);
    eng_version_unref(v);
    kv_buf_deinit(&cur);
    kv_free(cpath);
    kv_free(mpath);
    return rc;
}

/* Does the edit add this file (at any level)? A table moved down a level
 * is deleted from one level and added to the next: it stays live. */
static bool edit_adds_file(const eng_edit_t *ed, uint64_t file_no)
{
    for (size_t a = 0; a < ed->nadds; a++)
        if (ed->adds[a].table->file_no == file_no) return true;
    return false;
}

kv_status_t eng_versions_apply(struct eng *e, eng_edit_t *ed)
{
    pthread_mutex_lock(&e->mu);
    while (e->manifest_busy) pthread_cond_wait(&e->manifest_cv, &e->mu);
    if (e->fatal) {
        pthread_mutex_unlock(&e->mu);
        return KV_IO;
    }
    e->manifest_busy = true;
    eng_version_t *v = version_apply(e->current, ed);
    uint64_t log_no = ed->has_log ? ed->log_number : e->log_number;
    bool roll = !e->manifest || eng_log_writer_size(e->manifest) > ENG_MANIFEST_ROLL_BYTES;
    uint64_t new_manifest = roll ? e->next_file++ : 0;
    ed->has_next_file = true;
    ed->next_file = e->next_file;
    ed->has_last_seq = true;
    ed->last_seq = atomic_load(&e->visible_seq);
    pthread_mutex_unlock(&e->mu);

    kv_status_t rc = eng_version_validate(v);
    kv_assert(rc == KV_OK); /* a bad edit would corrupt the store */
    bool unknown = false;
    if (roll) {
        rc = manifest_roll(e, v, new_manifest, log_no, ed->next_file, ed->last_seq,
                           &unknown);
    } else {
        kv_buf_t rec = {0};
        encode_edit(&rec, ed);
        rc = eng_log_writer_add(e->manifest, kv_buf_slice(&rec));
        if (rc == KV_OK) {
            rc = eng_log_writer_sync(e->manifest);
            unknown = rc != KV_OK; /* the record may or may not be durable */
        }
        kv_buf_deinit(&rec);
    }

    pthread_mutex_lock(&e->mu);
    if (rc == KV_OK) {
        eng_version_t *old = e->current;
        for (size_t d = 0; d < ed->ndels; d++) {
            int l = ed->dels[d].level;
            if (edit_adds_file(ed, ed->dels[d].file_no)) continue; /* moved */
            for (size_t i = 0; i < old->n[l]; i++)
                if (old->t[l][i]->file_no == ed->dels[d].file_no)
                    atomic_store(&old->t[l][i]->obsolete, true);
        }
        e->current = v;
        e->log_number = log_no;
        eng_version_unref(old);
    } else {
        eng_version_unref(v);
        if (unknown) {
            e->fatal = true;
            KV_LOG(KV_ERROR, "manifest sync failed; refusing writes until reopen: %s",
                   kv_errmsg());
        }
    }
    e->manifest_busy = false;
    pthread_cond_broadcast(&e->manifest_cv);
    pthread_mutex_unlock(&e->mu);
    return rc;
}

kv_status_t eng_versions_checkpoint(struct eng *e)
{
    uint64_t no = e->next_file++;
    bool unknown;
    return manifest_roll(e, e->current, no, e->log_number, e->next_file,
                         atomic_load(&e->visible_seq), &unknown);
}

void eng_versions_close(struct eng *e)
{
    eng_log_writer_close(e->manifest);
    e->manifest = NULL;
    eng_version_unref(e->current);
    e->current = NULL;
}
