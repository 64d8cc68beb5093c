/* read.c -- point reads, snapshots and token-range iterators.
 *
 * DESIGN  A read takes references on the memtable, the immutable memtable
 *         and the current version under e->mu (a few pointer copies), then
 *         reads without any lock; writers and background work never wait
 *         for readers. It sees exactly the groups committed up to its
 *         sequence number (visible_seq, or its snapshot's), newest first:
 *         memtable, immutable memtable, L0 newest to oldest, then L1..L6.
 *
 *         The range iterator merges all those sources, skips entries newer
 *         than its sequence number and older versions of a key, and walks
 *         tokens [start, end]; when start > end it walks [start, 2^64) and
 *         then [0, end], the way a token range wraps around the ring.
 * THREADING  Any thread. An iterator belongs to one thread.
 */
#include "engine_int.h"

void eng_read_options_init(eng_read_options_t *o)
{
    memset(o, 0, sizeof *o);
    o->fill_cache = true;
}

void eng_value_free(eng_value_t *v)
{
    kv_buf_deinit(&v->value);
}

typedef struct read_state {
    eng_memtable_t *mem, *imm;
    eng_version_t *v;
    uint64_t seq;
} read_state_t;

static void state_get(struct eng *e, const eng_snapshot_t *snap, read_state_t *rs)
{
    pthread_mutex_lock(&e->mu);
    rs->mem = e->mem;
    eng_memtable_ref(rs->mem);
    rs->imm = e->imm;
    if (rs->imm) eng_memtable_ref(rs->imm);
    rs->v = e->current;
    eng_version_ref(rs->v);
    rs->seq = snap ? snap->node.seq : atomic_load(&e->visible_seq);
    pthread_mutex_unlock(&e->mu);
}

static void state_put(read_state_t *rs)
{
    eng_memtable_unref(rs->mem);
    if (rs->imm) eng_memtable_unref(rs->imm);
    eng_version_unref(rs->v);
}

kv_status_t eng_get(eng_t *e, const eng_read_options_t *ro, kv_slice_t key,
                    eng_value_t *out)
{
    eng_read_options_t def;
    if (!ro) {
        eng_read_options_init(&def);
        ro = &def;
    }
    if (key.len > ENG_MAX_KEY_LEN) {
        kv_errmsg_set("a key is longer than %u bytes", ENG_MAX_KEY_LEN);
        return KV_INVALID;
    }
    atomic_fetch_add(&e->st_gets, 1);
    uint8_t stack[256];
    kv_buf_t okey = {0};
    if (key.len + ENG_TOKEN_LEN <= sizeof stack) okey = (kv_buf_t){stack, 0, sizeof stack};
    eng_okey_append(&okey, key);

    read_state_t rs;
    state_get(e, ro->snapshot, &rs);
    kv_buf_t cell = {0};
    eng_kind_t kind;
    kv_status_t rc = eng_lookup(e, rs.mem, rs.imm, rs.v, kv_buf_slice(&okey), rs.seq,
                                ro->no_io, &kind, &cell);
    state_put(&rs);
    if (okey.data != stack) kv_buf_deinit(&okey);
    if (rc != KV_OK) {
        kv_buf_deinit(&cell);
        return rc;
    }
    eng_cell_t c;
    if (!eng_cell_decode(kv_buf_slice(&cell), &c)) {
        kv_buf_deinit(&cell);
        kv_errmsg_set("%s: an undecodable cell", e->dir);
        return KV_CORRUPT;
    }
    out->ts = c.ts;
    out->expire_ms = c.expire_ms;
    out->tombstone = !eng_cell_live(&c, eng_wall_ms(e));
    /* hand the caller the cell buffer with the header cut off */
    size_t hdr = (size_t)(c.value.data - cell.data);
    if (out->tombstone) kv_buf_clear(&cell);
    else kv_buf_consume(&cell, hdr);
    out->value = cell;
    return KV_OK;
}

/* ---- snapshots --------------------------------------------------------- */

eng_snapshot_t *eng_snapshot_create(eng_t *e)
{
    eng_snapshot_t *s = kv_calloc(1, sizeof *s);
    pthread_mutex_lock(&e->mu);
    s->node.seq = atomic_load(&e->visible_seq);
    /* sequence numbers only grow, so appending keeps the list oldest first */
    s->node.prev = e->snapshots.prev;
    s->node.next = &e->snapshots;
    e->snapshots.prev->next = &s->node;
    e->snapshots.prev = &s->node;
    pthread_mutex_unlock(&e->mu);
    return s;
}

void eng_snapshot_release(eng_t *e, eng_snapshot_t *s)
{
    if (!s) return;
    pthread_mutex_lock(&e->mu);
    s->node.prev->next = s->node.next;
    s->node.next->prev = s->node.prev;
    pthread_mutex_unlock(&e->mu);
    kv_free(s);
}

/* ---- range iterators --------------------------------------------------- */

struct eng_iter {
    struct eng *e;
    read_state_t rs;
    eng_iiter_t *it;
    uint64_t start, end;
    bool wrap;
    int phase;             /* wrap: 0 = [start, max], 1 = [0, end] */
    bool valid;
    kv_status_t status;
    kv_buf_t okey, cell;
    eng_cell_t cur;
    int64_t now_ms;
};

static uint64_t phase_lo(const eng_iter_t *it)
{
    return it->wrap && it->phase == 1 ? 0 : it->start;
}

static uint64_t phase_hi(const eng_iter_t *it)
{
    return it->wrap && it->phase == 0 ? UINT64_MAX : it->end;
}

static void seek_raw(eng_iter_t *it, uint64_t token, kv_slice_t key)
{
    kv_buf_t ik = {0};
    uint8_t tok[ENG_TOKEN_LEN];
    kv_put_be64(tok, token);
    kv_buf_append(&ik, tok, sizeof tok);
    kv_buf_append(&ik, key.data, key.len);
    uint8_t tr[ENG_TRAILER_LEN];
    kv_put_le64(tr, eng_trailer(ENG_MAX_SEQ, ENG_KIND_MAX));
    kv_buf_append(&ik, tr, sizeof tr);
    eng_iiter_seek(it->it, kv_buf_slice(&ik));
    kv_buf_deinit(&ik);
    kv_buf_clear(&it->okey);
}

/* A wrapping range past the end of its first half starts its second. */
static bool next_phase(eng_iter_t *it)
{
    if (!it->wrap || it->phase != 0) return false;
    it->phase = 1;
    seek_raw(it, 0, kv_slice(NULL, 0));
    return true;
}

/* From the merge iterator's position, find the next key to yield. */
static void settle(eng_iter_t *it)
{
    bool have_prev = it->okey.len > 0;
    for (;;) {
        if (!eng_iiter_valid(it->it)) {
            it->status = eng_iiter_status(it->it);
            if (it->status == KV_OK && next_phase(it)) {
                have_prev = false;
                continue;
            }
            it->valid = false;
            return;
        }
        eng_ikey_t k;
        if (!eng_ikey_parse(eng_iiter_key(it->it), &k)) {
            kv_errmsg_set("%s: an undecodable key in a scan", it->e->dir);
            it->status = KV_CORRUPT;
            it->valid = false;
            return;
        }
        if (k.seq > it->rs.seq ||
            (have_prev && kv_slice_eq(k.okey, kv_buf_slice(&it->okey)))) {
            eng_iiter_next(it->it); /* too new, or an older version */
            continue;
        }
        uint64_t token = eng_okey_token(k.okey);
        if (token > phase_hi(it)) {
            if (next_phase(it)) {
                have_prev = false;
                continue;
            }
            it->valid = false;
            return;
        }
        kv_buf_clear(&it->okey);
        kv_buf_append(&it->okey, k.okey.data, k.okey.len);
        kv_slice_t v = eng_iiter_value(it->it);
        kv_buf_clear(&it->cell);
        kv_buf_append(&it->cell, v.data, v.len);
        if (!eng_cell_decode(kv_buf_slice(&it->cell), &it->cur)) {
            kv_errmsg_set("%s: an undecodable cell in a scan", it->e->dir);
            it->status = KV_CORRUPT;
            it->valid = false;
            return;
        }
        it->valid = true;
        return;
    }
}

eng_iter_t *eng_iter_create(eng_t *e, const eng_read_options_t *ro,
                            uint64_t start_token, uint64_t end_token)
{
    eng_read_options_t def;
    if (!ro) {
        eng_read_options_init(&def);
        ro = &def;
    }
    eng_iter_t *it = kv_calloc(1, sizeof *it);
    it->e = e;
    it->start = start_token;
    it->end = end_token;
    it->wrap = start_token > end_token;
    it->now_ms = eng_wall_ms(e);
    state_get(e, ro->snapshot, &it->rs);
    eng_version_t *v = it->rs.v;
    size_t n = 2;
    for (int l = 0; l < ENG_LEVELS; l++) n += v->n[l];
    eng_iiter_t **kids = kv_malloc(n * sizeof *kids);
    size_t k = 0;
    kids[k++] = eng_memtable_iter_create(it->rs.mem);
    if (it->rs.imm) kids[k++] = eng_memtable_iter_create(it->rs.imm);
    for (int l = 0; l < ENG_LEVELS; l++)
        for (size_t i = 0; i < v->n[l]; i++)
            kids[k++] = eng_sst_iter_create(v->t[l][i]->sst, ro->fill_cache);
    it->it = eng_merge_iter_create(kids, k);
    kv_free(kids);
    return it;
}

void eng_iter_destroy(eng_iter_t *it)
{
    if (!it) return;
    eng_iiter_destroy(it->it);
    state_put(&it->rs);
    kv_buf_deinit(&it->okey);
    kv_buf_deinit(&it->cell);
    kv_free(it);
}

void eng_iter_seek_first(eng_iter_t *it)
{
    it->phase = 0;
    seek_raw(it, phase_lo(it), kv_slice(NULL, 0));
    settle(it);
}

void eng_iter_seek(eng_iter_t *it, uint64_t token, kv_slice_t key)
{
    if (it->wrap) {
        if (token >= it->start) it->phase = 0;
        else if (token <= it->end) it->phase = 1;
        else { /* in the gap: start at the beginning of the range */
            eng_iter_seek_first(it);
            return;
        }
    } else if (token < it->start) {
        eng_iter_seek_first(it);
        return;
    } else {
        it->phase = 0;
    }
    seek_raw(it, token, key);
    settle(it);
}

bool eng_iter_valid(eng_iter_t *it) { return it->valid; }

void eng_iter_next(eng_iter_t *it)
{
    if (!it->valid) return;
    eng_iiter_next(it->it);
    settle(it);
}

kv_slice_t eng_iter_key(eng_iter_t *it) { return eng_okey_user(kv_buf_slice(&it->okey)); }
uint64_t eng_iter_token(eng_iter_t *it) { return eng_okey_token(kv_buf_slice(&it->okey)); }

kv_slice_t eng_iter_value(eng_iter_t *it)
{
    return eng_iter_tombstone(it) ? kv_slice(NULL, 0) : it->cur.value;
}

hlc_ts_t eng_iter_ts(eng_iter_t *it) { return it->cur.ts; }
uint64_t eng_iter_expire_ms(eng_iter_t *it) { return it->cur.expire_ms; }

bool eng_iter_tombstone(eng_iter_t *it)
{
    return !eng_cell_live(&it->cur, it->now_ms);
}

kv_status_t eng_iter_status(eng_iter_t *it) { return it->status; }
