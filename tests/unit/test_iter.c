/* test_iter.c -- the merging iterator (order, ties, seeks, error
 * propagation, ownership) and the empty iterator. Randomised tests print
 * their seed (CAIRN_TEST_SEED replays). */
#include "test_util.h"

#include "format.h"
#include "iter.h"
#include "memtable.h"

/* ---- reference entries ---------------------------------------------------- */

typedef struct ref_ent {
    kv_buf_t ikey;
    kv_buf_t cell;
    size_t child;
} ref_ent_t;

/* Merge order: ikey, then child index (the newer source first). */
static int ref_cmp(const void *a, const void *b)
{
    const ref_ent_t *x = a, *y = b;
    int c = eng_ikey_cmp(kv_buf_slice(&x->ikey), kv_buf_slice(&y->ikey));
    if (c) return c;
    return x->child < y->child ? -1 : x->child > y->child;
}

static void make_ikey(kv_buf_t *out, uint64_t k, uint64_t seq, eng_kind_t kind)
{
    char user[24];
    int n = snprintf(user, sizeof user, "user%" PRIu64, k);
    kv_buf_t ok;
    kv_buf_init(&ok);
    eng_okey_append(&ok, kv_slice(user, (size_t)n));
    eng_ikey_append(out, kv_buf_slice(&ok), seq, kind);
    kv_buf_deinit(&ok);
}

/* A cell naming its child, so ties show which child yielded the entry. */
static void make_cell(kv_buf_t *out, size_t child, uint64_t seq, eng_kind_t kind)
{
    char v[32];
    int n = snprintf(v, sizeof v, "child%zu-seq%" PRIu64, child, seq);
    eng_cell_t c = {.ts = seq, .tombstone = kind == ENG_KIND_TOMBSTONE,
                    .value = kv_slice(v, (size_t)n)};
    eng_cell_encode(out, &c);
}

typedef struct world {
    eng_memtable_t *mt[8];
    size_t nmt;
    ref_ent_t *ref;
    size_t n, cap;
} world_t;

static void world_add(world_t *w, size_t child, uint64_t k, uint64_t seq,
                      eng_kind_t kind)
{
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 256;
        w->ref = kv_realloc(w->ref, w->cap * sizeof *w->ref);
    }
    ref_ent_t *e = &w->ref[w->n++];
    kv_buf_init(&e->ikey);
    kv_buf_init(&e->cell);
    e->child = child;
    make_ikey(&e->ikey, k, seq, kind);
    make_cell(&e->cell, child, seq, kind);
    eng_memtable_add(w->mt[child], seq, kind, eng_ikey_okey(kv_buf_slice(&e->ikey)),
                     kv_buf_slice(&e->cell));
}

/* nmt memtables over a shared small key space: the same key in several
 * children, and some ikeys (key, seq, kind) present in several children at
 * once, which exercises the tie rule. */
static void world_build(world_t *w, kv_rng_t *r, size_t nmt, size_t per_child)
{
    memset(w, 0, sizeof *w);
    w->nmt = nmt;
    for (size_t c = 0; c < nmt; c++) w->mt[c] = eng_memtable_create();
    uint64_t seq = 1;
    for (size_t c = 0; c < nmt; c++) {
        for (size_t i = 0; i < per_child; i++) {
            uint64_t k = kv_rng_below(r, 300);
            eng_kind_t kind = kv_rng_below(r, 5) ? ENG_KIND_VALUE : ENG_KIND_TOMBSTONE;
            world_add(w, c, k, seq++, kind);
        }
    }
    /* shared ikeys: the same (key, seq, kind) in a random subset of children */
    for (uint64_t k = 0; k < 300; k += 7) {
        uint64_t s = seq++;
        for (size_t c = 0; c < nmt; c++)
            if (kv_rng_below(r, 2)) world_add(w, c, k, s, ENG_KIND_VALUE);
    }
    qsort(w->ref, w->n, sizeof *w->ref, ref_cmp);
}

static eng_iiter_t *world_merge(world_t *w)
{
    eng_iiter_t *kids[8];
    for (size_t c = 0; c < w->nmt; c++) kids[c] = eng_memtable_iter_create(w->mt[c]);
    return eng_merge_iter_create(kids, w->nmt);
}

static void world_free(world_t *w)
{
    for (size_t c = 0; c < w->nmt; c++) eng_memtable_unref(w->mt[c]);
    for (size_t i = 0; i < w->n; i++) {
        kv_buf_deinit(&w->ref[i].ikey);
        kv_buf_deinit(&w->ref[i].cell);
    }
    kv_free(w->ref);
}

static void assert_at(eng_iiter_t *it, const ref_ent_t *e)
{
    assert_true(eng_iiter_valid(it));
    assert_int_equal(eng_iiter_status(it), KV_OK);
    assert_true(kv_slice_eq(eng_iiter_key(it), kv_buf_slice(&e->ikey)));
    assert_true(kv_slice_eq(eng_iiter_value(it), kv_buf_slice(&e->cell)));
}

/* ---- a child that fails ---------------------------------------------------- */

/* Yields the first `good` of its sorted entries, then turns invalid with
 * KV_CORRUPT when asked to move past them, as a table with a bad block. */
typedef struct fail_iter {
    eng_iiter_t base;
    const ref_ent_t *ents;
    size_t n, good, pos;
    kv_status_t st;
} fail_iter_t;

static bool fail_valid(eng_iiter_t *it)
{
    fail_iter_t *f = (fail_iter_t *)it;
    return f->st == KV_OK && f->pos < f->n;
}

static void fail_settle(fail_iter_t *f)
{
    f->st = (f->pos >= f->good && f->pos < f->n) ? KV_CORRUPT : KV_OK;
}

static void fail_seek_first(eng_iiter_t *it)
{
    fail_iter_t *f = (fail_iter_t *)it;
    f->pos = 0;
    fail_settle(f);
}

static void fail_seek(eng_iiter_t *it, kv_slice_t ikey)
{
    fail_iter_t *f = (fail_iter_t *)it;
    f->pos = 0;
    while (f->pos < f->n && eng_ikey_cmp(kv_buf_slice(&f->ents[f->pos].ikey), ikey) < 0)
        f->pos++;
    fail_settle(f);
}

static void fail_next(eng_iiter_t *it)
{
    fail_iter_t *f = (fail_iter_t *)it;
    assert_true(fail_valid(it));
    f->pos++;
    fail_settle(f);
}

static kv_slice_t fail_key(eng_iiter_t *it)
{
    fail_iter_t *f = (fail_iter_t *)it;
    assert_true(fail_valid(it));
    return kv_buf_slice(&f->ents[f->pos].ikey);
}

static kv_slice_t fail_value(eng_iiter_t *it)
{
    fail_iter_t *f = (fail_iter_t *)it;
    assert_true(fail_valid(it));
    return kv_buf_slice(&f->ents[f->pos].cell);
}

static kv_status_t fail_status(eng_iiter_t *it) { return ((fail_iter_t *)it)->st; }

static void fail_destroy(eng_iiter_t *it) { kv_free(it); }

static const eng_iiter_ops_t fail_ops = {
    .valid = fail_valid, .seek_first = fail_seek_first, .seek = fail_seek,
    .next = fail_next,   .key = fail_key,               .value = fail_value,
    .status = fail_status, .destroy = fail_destroy,
};

static eng_iiter_t *fail_iter_create(const ref_ent_t *ents, size_t n, size_t good)
{
    fail_iter_t *f = kv_calloc(1, sizeof *f);
    f->base.ops = &fail_ops;
    f->ents = ents;
    f->n = n;
    f->good = good;
    return &f->base;
}

/* ---- tests ------------------------------------------------------------- */

static void test_merge_yields_sorted_union_with_lower_child_first_on_ties(void **state)
{
    (void)state;
    kv_rng_t r;
    kv_rng_seed(&r, test_seed(__func__));
    world_t w;
    world_build(&w, &r, 6, 700);
    size_t ties = 0;
    for (size_t i = 1; i < w.n; i++)
        ties += eng_ikey_cmp(kv_buf_slice(&w.ref[i - 1].ikey),
                             kv_buf_slice(&w.ref[i].ikey)) == 0;
    assert_true(ties > 20); /* the tie rule is really exercised */

    eng_iiter_t *it = world_merge(&w);
    for (int pass = 0; pass < 2; pass++) {
        eng_iiter_seek_first(it);
        for (size_t i = 0; i < w.n; i++) {
            assert_at(it, &w.ref[i]);
            eng_iiter_next(it);
        }
        assert_false(eng_iiter_valid(it));
        assert_int_equal(eng_iiter_status(it), KV_OK);
    }
    eng_iiter_destroy(it); /* destroys the children too (leak check) */
    world_free(&w);
}

static void test_merge_of_many_children_keeps_order(void **state)
{
    (void)state;
    kv_rng_t r;
    kv_rng_seed(&r, test_seed(__func__));
    /* 40 children, a few of them empty, built over 8 memtables' worth of
     * iterators re-created per child: each memtable yields in 5 children */
    world_t w;
    world_build(&w, &r, 8, 150);
    eng_iiter_t *kids[43];
    size_t nk = 0;
    for (int rep = 0; rep < 5; rep++)
        for (size_t c = 0; c < w.nmt; c++) kids[nk++] = eng_memtable_iter_create(w.mt[c]);
    for (int e = 0; e < 3; e++) kids[nk++] = eng_empty_iter_create(KV_OK);
    eng_iiter_t *it = eng_merge_iter_create(kids, nk);
    /* the reference: every entry five times over, as child rep*8 + c; the
     * cells name their memtable, so values check the tie order too */
    ref_ent_t *big = kv_malloc(5 * w.n * sizeof *big);
    for (size_t i = 0; i < w.n; i++)
        for (size_t rep = 0; rep < 5; rep++) {
            big[i * 5 + rep] = w.ref[i];
            big[i * 5 + rep].child = rep * w.nmt + w.ref[i].child;
        }
    qsort(big, 5 * w.n, sizeof *big, ref_cmp);
    size_t count = 0;
    for (eng_iiter_seek_first(it); eng_iiter_valid(it); eng_iiter_next(it)) {
        assert_true(count < 5 * w.n);
        assert_at(it, &big[count]);
        count++;
    }
    kv_free(big);
    assert_int_equal(count, 5 * w.n);
    assert_int_equal(eng_iiter_status(it), KV_OK);
    eng_iiter_destroy(it);
    world_free(&w);
}

static void test_merge_seek_positions_every_child(void **state)
{
    (void)state;
    kv_rng_t r;
    kv_rng_seed(&r, test_seed(__func__));
    world_t w;
    world_build(&w, &r, 4, 500);
    eng_iiter_t *it = world_merge(&w);
    kv_buf_t target;
    kv_buf_init(&target);
    for (int round = 0; round < 2000; round++) {
        kv_buf_clear(&target);
        if (round % 2) {
            const ref_ent_t *e = &w.ref[kv_rng_below(&r, w.n)];
            kv_buf_append(&target, e->ikey.data, e->ikey.len);
        } else {
            make_ikey(&target, kv_rng_below(&r, 320), kv_rng_below(&r, 3000),
                      (eng_kind_t)kv_rng_below(&r, 2));
        }
        /* first reference entry >= target (any child: ties start at child 0) */
        size_t want = 0;
        while (want < w.n &&
               eng_ikey_cmp(kv_buf_slice(&w.ref[want].ikey), kv_buf_slice(&target)) < 0)
            want++;
        eng_iiter_seek(it, kv_buf_slice(&target));
        for (size_t i = want; i < KV_MIN(want + 4, w.n); i++) {
            assert_at(it, &w.ref[i]);
            eng_iiter_next(it);
        }
        if (want + 4 > w.n) assert_false(eng_iiter_valid(it));
    }
    kv_buf_deinit(&target);
    eng_iiter_destroy(it);
    world_free(&w);
}

static void test_merge_stops_with_the_status_of_an_erroring_child(void **state)
{
    (void)state;
    kv_rng_t r;
    kv_rng_seed(&r, test_seed(__func__));
    world_t w;
    world_build(&w, &r, 2, 300);
    /* the failing child serves child 1's entries (sorted) from the
     * reference, and fails after k of them */
    ref_ent_t *mine = kv_malloc(w.n * sizeof *mine);
    size_t nmine = 0;
    for (size_t i = 0; i < w.n; i++)
        if (w.ref[i].child == 1) mine[nmine++] = w.ref[i];
    assert_true(nmine > 10);

    size_t ks[] = {0, 1, 7, nmine / 2, nmine - 1, nmine};
    for (size_t t = 0; t < KV_ARRAY_LEN(ks); t++) {
        size_t k = ks[t];
        eng_iiter_t *kids[2] = {eng_memtable_iter_create(w.mt[0]),
                                fail_iter_create(mine, nmine, k)};
        eng_iiter_t *it = eng_merge_iter_create(kids, 2);
        size_t yielded_from_fail = 0, i = 0;
        for (eng_iiter_seek_first(it); eng_iiter_valid(it); eng_iiter_next(it), i++) {
            assert_at(it, &w.ref[i]); /* a prefix of the full merge */
            yielded_from_fail += w.ref[i].child == 1;
        }
        if (k < nmine) {
            assert_int_equal(eng_iiter_status(it), KV_CORRUPT);
            assert_true(yielded_from_fail <= k);
            /* nothing past the failing child's position was yielded */
            if (k > 0) assert_true(i < w.n);
            if (k == 0) assert_int_equal(i, 0); /* fails at seek time */
        } else {
            assert_int_equal(eng_iiter_status(it), KV_OK);
            assert_int_equal(i, w.n);
        }
        /* a seek re-reads every child's status */
        eng_iiter_seek(it, kv_buf_slice(&mine[KV_MIN(k, nmine - 1)].ikey));
        if (k < nmine) {
            assert_false(eng_iiter_valid(it));
            assert_int_equal(eng_iiter_status(it), KV_CORRUPT);
        } else {
            assert_true(eng_iiter_valid(it));
        }
        eng_iiter_destroy(it);
    }
    kv_free(mine);
    world_free(&w);
}

static void test_merge_reports_the_first_failing_child_in_index_order(void **state)
{
    (void)state;
    eng_memtable_t *m = eng_memtable_create();
    kv_buf_t ik, cell;
    kv_buf_init(&ik);
    kv_buf_init(&cell);
    make_ikey(&ik, 1, 1, ENG_KIND_VALUE);
    make_cell(&cell, 0, 1, ENG_KIND_VALUE);
    eng_memtable_add(m, 1, ENG_KIND_VALUE, eng_ikey_okey(kv_buf_slice(&ik)),
                     kv_buf_slice(&cell));
    eng_iiter_t *kids[3] = {eng_memtable_iter_create(m), eng_empty_iter_create(KV_IO),
                            eng_empty_iter_create(KV_CORRUPT)};
    eng_memtable_unref(m);
    eng_iiter_t *it = eng_merge_iter_create(kids, 3);
    eng_iiter_seek_first(it);
    assert_false(eng_iiter_valid(it)); /* a healthy child does not hide it */
    assert_int_equal(eng_iiter_status(it), KV_IO);
    eng_iiter_seek(it, kv_buf_slice(&ik));
    assert_false(eng_iiter_valid(it));
    assert_int_equal(eng_iiter_status(it), KV_IO);
    eng_iiter_destroy(it);
    kv_buf_deinit(&ik);
    kv_buf_deinit(&cell);
}

static void test_empty_iterator_is_never_valid_and_keeps_its_status(void **state)
{
    (void)state;
    kv_status_t sts[] = {KV_OK, KV_IO, KV_CORRUPT};
    kv_buf_t ik;
    kv_buf_init(&ik);
    make_ikey(&ik, 3, 9, ENG_KIND_VALUE);
    for (size_t i = 0; i < KV_ARRAY_LEN(sts); i++) {
        eng_iiter_t *it = eng_empty_iter_create(sts[i]);
        assert_false(eng_iiter_valid(it));
        assert_int_equal(eng_iiter_status(it), sts[i]);
        eng_iiter_seek_first(it);
        assert_false(eng_iiter_valid(it));
        eng_iiter_seek(it, kv_buf_slice(&ik));
        assert_false(eng_iiter_valid(it));
        assert_int_equal(eng_iiter_status(it), sts[i]);
        eng_iiter_destroy(it);
    }
    kv_buf_deinit(&ik);
}

static void test_merge_of_zero_or_only_empty_children_is_empty_and_ok(void **state)
{
    (void)state;
    eng_iiter_t *it = eng_merge_iter_create(NULL, 0);
    assert_false(eng_iiter_valid(it)); /* before any positioning */
    eng_iiter_seek_first(it);
    assert_false(eng_iiter_valid(it));
    assert_int_equal(eng_iiter_status(it), KV_OK);
    eng_iiter_seek(it, kv_slice("0123456789abcdef", 16));
    assert_false(eng_iiter_valid(it));
    eng_iiter_destroy(it);

    eng_memtable_t *m = eng_memtable_create();
    eng_iiter_t *kids[3] = {eng_empty_iter_create(KV_OK), eng_memtable_iter_create(m),
                            eng_empty_iter_create(KV_OK)};
    eng_memtable_unref(m);
    it = eng_merge_iter_create(kids, 3);
    eng_iiter_seek_first(it);
    assert_false(eng_iiter_valid(it));
    assert_int_equal(eng_iiter_status(it), KV_OK);
    eng_iiter_destroy(it);
}

static void test_merge_of_one_child_passes_it_through(void **state)
{
    (void)state;
    kv_rng_t r;
    kv_rng_seed(&r, test_seed(__func__));
    world_t w;
    world_build(&w, &r, 1, 400);
    eng_iiter_t *it = world_merge(&w);
    size_t i = 0;
    for (eng_iiter_seek_first(it); eng_iiter_valid(it); eng_iiter_next(it))
        assert_at(it, &w.ref[i++]);
    assert_int_equal(i, w.n);
    eng_iiter_destroy(it);
    world_free(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        kv_unit_test(test_merge_yields_sorted_union_with_lower_child_first_on_ties),
        kv_unit_test(test_merge_of_many_children_keeps_order),
        kv_unit_test(test_merge_seek_positions_every_child),
        kv_unit_test(test_merge_stops_with_the_status_of_an_erroring_child),
        kv_unit_test(test_merge_reports_the_first_failing_child_in_index_order),
        kv_unit_test(test_empty_iterator_is_never_valid_and_keeps_its_status),
        kv_unit_test(test_merge_of_zero_or_only_empty_children_is_empty_and_ok),
        kv_unit_test(test_merge_of_one_child_passes_it_through),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
