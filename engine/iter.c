/* iter.c -- the merging iterator and the empty iterator.
 *
 * DESIGN  A merge keeps every positioned child in a binary min-heap ordered
 *         by (current ikey, child index); the root is the merged stream's
 *         current entry. next() advances only the root child and sifts it
 *         down (or pops it when it runs out), so a step costs O(log n)
 *         comparisons with n children -- compaction and reads merge tens of
 *         sources. Each heap slot caches its child's key slice, which stays
 *         valid until that child moves, and only the root child ever moves
 *         between repositionings, so comparisons make no vtable calls.
 *         Breaking ties by child index yields identical ikeys newest source
 *         first, as iter.h promises.
 *
 * INVARIANTS
 *   (1) heap[0..hn) holds exactly the children that are valid, each once.
 *   (2) For every slot i > 0: !less(heap[i], heap[(i-1)/2]).
 *   (3) status is the first non-OK status a child reported since the last
 *       seek/seek_first (children scanned in index order on a seek); while
 *       it is non-OK the merge is not valid.
 *
 * THREADING  An iterator is used by one thread at a time.
 */
#include "iter.h"

#include "format.h"

/* ---- merge ------------------------------------------------------------- */

typedef struct merge_slot {
    kv_slice_t key;
    size_t idx;
} merge_slot_t;

typedef struct merge_iter {
    eng_iiter_t base;
    eng_iiter_t **kids;
    size_t n;
    merge_slot_t *heap;
    size_t hn;
    kv_status_t status;
} merge_iter_t;

static inline bool merge_less(const merge_slot_t *a, const merge_slot_t *b)
{
    int c = eng_ikey_cmp(a->key, b->key);
    return c < 0 || (c == 0 && a->idx < b->idx);
}

static void merge_sift_down(merge_iter_t *m, size_t i)
{
    merge_slot_t *h = m->heap;
    merge_slot_t x = h[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m->hn) break;
        if (c + 1 < m->hn && merge_less(&h[c + 1], &h[c])) c++;
        if (!merge_less(&h[c], &x)) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
}

static void merge_note_status(merge_iter_t *m, eng_iiter_t *kid)
{
    kv_status_t s = eng_iiter_status(kid);
    if (s != KV_OK && m->status == KV_OK) m->status = s;
}

/* Rebuild the heap from every child's current position. */
static void merge_rebuild(merge_iter_t *m)
{
    m->status = KV_OK;
    m->hn = 0;
    for (size_t i = 0; i < m->n; i++) {
        eng_iiter_t *kid = m->kids[i];
        if (eng_iiter_valid(kid)) {
            m->heap[m->hn].key = eng_iiter_key(kid);
            m->heap[m->hn].idx = i;
            m->hn++;
        } else {
            merge_note_status(m, kid);
        }
    }
    for (size_t i = m->hn / 2; i-- > 0;) merge_sift_down(m, i);
}

static bool merge_valid(eng_iiter_t *it)
{
    merge_iter_t *m = (merge_iter_t *)it;
    return m->status == KV_OK && m->hn > 0;
}

static void merge_seek_first(eng_iiter_t *it)
{
    merge_iter_t *m = (merge_iter_t *)it;
    for (size_t i = 0; i < m->n; i++) eng_iiter_seek_first(m->kids[i]);
    merge_rebuild(m);
}

static void merge_seek(eng_iiter_t *it, kv_slice_t ikey)
{
    merge_iter_t *m = (merge_iter_t *)it;
    for (size_t i = 0; i < m->n; i++) eng_iiter_seek(m->kids[i], ikey);
    merge_rebuild(m);
}

static void merge_next(eng_iiter_t *it)
{
    merge_iter_t *m = (merge_iter_t *)it;
    kv_assert(merge_valid(it));
    eng_iiter_t *kid = m->kids[m->heap[0].idx];
    eng_iiter_next(kid);
    if (eng_iiter_valid(kid)) {
        m->heap[0].key = eng_iiter_key(kid);
    } else {
        merge_note_status(m, kid);
        m->heap[0] = m->heap[--m->hn];
    }
    if (m->hn > 1) merge_sift_down(m, 0);
}

static kv_slice_t merge_key(eng_iiter_t *it)
{
    return ((merge_iter_t *)it)->heap[0].key;
}

static kv_slice_t merge_value(eng_iiter_t *it)
{
    merge_iter_t *m = (merge_iter_t *)it;
    return eng_iiter_value(m->kids[m->heap[0].idx]);
}

static kv_status_t merge_status(eng_iiter_t *it)
{
    return ((merge_iter_t *)it)->status;
}

static void merge_destroy(eng_iiter_t *it)
{
    merge_iter_t *m = (merge_iter_t *)it;
    for (size_t i = 0; i < m->n; i++) eng_iiter_destroy(m->kids[i]);
    kv_free(m->kids);
    kv_free(m->heap);
    kv_free(m);
}

static const eng_iiter_ops_t merge_ops = {
    .valid = merge_valid,
    .seek_first = merge_seek_first,
    .seek = merge_seek,
    .next = merge_next,
    .key = merge_key,
    .value = merge_value,
    .status = merge_status,
    .destroy = merge_destroy,
};

eng_iiter_t *eng_merge_iter_create(eng_iiter_t **children, size_t n)
{
    merge_iter_t *m = kv_calloc(1, sizeof *m);
    m->base.ops = &merge_ops;
    m->n = n;
    m->kids = kv_malloc((n ? n : 1) * sizeof *m->kids);
    m->heap = kv_malloc((n ? n : 1) * sizeof *m->heap);
    for (size_t i = 0; i < n; i++) {
        kv_assert(children[i] != NULL);
        m->kids[i] = children[i];
    }
    m->hn = 0; /* not positioned until seek_first/seek */
    m->status = KV_OK;
    return &m->base;
}

/* ---- empty ------------------------------------------------------------- */

typedef struct empty_iter {
    eng_iiter_t base;
    kv_status_t status;
} empty_iter_t;

static bool empty_valid(eng_iiter_t *it)
{
    KV_UNUSED(it);
    return false;
}

static void empty_seek_first(eng_iiter_t *it) { KV_UNUSED(it); }

static void empty_seek(eng_iiter_t *it, kv_slice_t ikey)
{
    KV_UNUSED(it);
    KV_UNUSED(ikey);
}

static void empty_next(eng_iiter_t *it)
{
    KV_UNUSED(it);
    kv_assert(!"next on an empty iterator");
}

static kv_slice_t empty_kv(eng_iiter_t *it)
{
    KV_UNUSED(it);
    kv_assert(!"key/value on an empty iterator");
    return kv_slice(NULL, 0);
}

static kv_status_t empty_status(eng_iiter_t *it)
{
    return ((empty_iter_t *)it)->status;
}

static void empty_destroy(eng_iiter_t *it) { kv_free(it); }

static const eng_iiter_ops_t empty_ops = {
    .valid = empty_valid,
    .seek_first = empty_seek_first,
    .seek = empty_seek,
    .next = empty_next,
    .key = empty_kv,
    .value = empty_kv,
    .status = empty_status,
    .destroy = empty_destroy,
};

eng_iiter_t *eng_empty_iter_create(kv_status_t status)
{
    empty_iter_t *e = kv_malloc(sizeof *e);
    e->base.ops = &empty_ops;
    e->status = status;
    return &e->base;
}
