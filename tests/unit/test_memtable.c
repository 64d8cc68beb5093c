/* test_memtable.c -- the memtable skiplist: order, point reads by sequence
 * number, seeks, sizes, large values, and lock-free readers racing the
 * writer. Randomised tests print their seed (CAIRN_TEST_SEED replays). */
#include "test_util.h"

#include <pthread.h>
#include <stdatomic.h>

#include "format.h"
#include "memtable.h"

/* ---- a sorted reference model ------------------------------------------ */

typedef struct ref_ent {
    kv_buf_t ikey;
    kv_buf_t cell;
    uint64_t seq;
    eng_kind_t kind;
} ref_ent_t;

static int ref_cmp(const void *a, const void *b)
{
    const ref_ent_t *x = a, *y = b;
    return eng_ikey_cmp(kv_buf_slice(&x->ikey), kv_buf_slice(&y->ikey));
}

static void ref_free(ref_ent_t *r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        kv_buf_deinit(&r[i].ikey);
        kv_buf_deinit(&r[i].cell);
    }
    kv_free(r);
}

/* The value a (user key, seq) pair carries, so any reader can check a cell
 * against its own key. */
static void value_for(kv_buf_t *out, kv_slice_t user, uint64_t seq, size_t extra)
{
    char tail[32];
    int n = snprintf(tail, sizeof tail, "@%" PRIu64 "#", seq);
    kv_buf_append(out, "v:", 2);
    kv_buf_append(out, user.data, user.len);
    kv_buf_append(out, tail, (size_t)n);
    for (size_t i = 0; i < extra; i++)
        kv_buf_append_u8(out, (uint8_t)('a' + (seq + i) % 26));
}

static void cell_for(kv_buf_t *out, kv_slice_t user, uint64_t seq,
                     eng_kind_t kind, size_t extra)
{
    kv_buf_t v;
    kv_buf_init(&v);
    eng_cell_t c = {.ts = seq * 3 + 1, .expire_ms = (seq % 5 == 0) ? seq : 0,
                    .tombstone = kind == ENG_KIND_TOMBSTONE};
    if (!c.tombstone) {
        value_for(&v, user, seq, extra);
        c.value = kv_buf_slice(&v);
    }
    eng_cell_encode(out, &c);
    kv_buf_deinit(&v);
}

/* True when cell is exactly what (user, seq, kind) implies. */
static bool cell_matches(kv_slice_t cell, kv_slice_t user, uint64_t seq,
                         eng_kind_t kind)
{
    eng_cell_t c;
    if (!eng_cell_decode(cell, &c)) return false;
    if (c.ts != seq * 3 + 1) return false;
    if (c.expire_ms != ((seq % 5 == 0) ? seq : 0)) return false;
    if (c.tombstone != (kind == ENG_KIND_TOMBSTONE)) return false;
    if (c.tombstone) return true;
    kv_buf_t v;
    kv_buf_init(&v);
    value_for(&v, user, seq, 0);
    /* any tail length is allowed; check the derived prefix and the pattern */
    bool ok = c.value.len >= v.len && memcmp(c.value.data, v.data, v.len) == 0;
    for (size_t i = v.len; ok && i < c.value.len; i++)
        ok = c.value.data[i] == (uint8_t)('a' + (seq + (i - v.len)) % 26);
    kv_buf_deinit(&v);
    return ok;
}

/* A random user key from a small alphabet, 0..max_len bytes (empty too). */
static void random_user_key(kv_rng_t *r, kv_buf_t *out, size_t max_len)
{
    size_t len = (size_t)kv_rng_below(r, max_len + 1);
    for (size_t i = 0; i < len; i++)
        kv_buf_append_u8(out, (uint8_t)("ab\0z"[kv_rng_below(r, 4)]));
}

typedef struct fixture {
    eng_memtable_t *m;
    ref_ent_t *ref;
    size_t n;
    kv_buf_t *users; /* the key pool */
    size_t nusers;
} fixture_t;

/* Fill a memtable with n random adds over a pool of user keys, seqs a
 * shuffled 1..n, both kinds; the reference ends sorted. */
static void fixture_build(fixture_t *f, kv_rng_t *r, size_t n, size_t nusers)
{
    f->m = eng_memtable_create();
    f->n = n;
    f->nusers = nusers;
    f->users = kv_calloc(nusers, sizeof *f->users);
    for (size_t i = 0; i < nusers; i++) random_user_key(r, &f->users[i], 10);
    uint64_t *seqs = kv_malloc(n * sizeof *seqs);
    for (size_t i = 0; i < n; i++) seqs[i] = i + 1;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)kv_rng_below(r, i);
        uint64_t t = seqs[i - 1];
        seqs[i - 1] = seqs[j];
        seqs[j] = t;
    }
    f->ref = kv_calloc(n, sizeof *f->ref);
    size_t last_bytes = eng_memtable_bytes(f->m);
    kv_buf_t okey;
    kv_buf_init(&okey);
    for (size_t i = 0; i < n; i++) {
        ref_ent_t *e = &f->ref[i];
        kv_slice_t user = kv_buf_slice(&f->users[kv_rng_below(r, nusers)]);
        kv_buf_clear(&okey);
        eng_okey_append(&okey, user);
        e->seq = seqs[i];
        e->kind = kv_rng_below(r, 4) == 0 ? ENG_KIND_TOMBSTONE : ENG_KIND_VALUE;
        eng_ikey_append(&e->ikey, kv_buf_slice(&okey), e->seq, e->kind);
        cell_for(&e->cell, user, e->seq, e->kind, (size_t)kv_rng_below(r, 40));
        eng_memtable_add(f->m, e->seq, e->kind, kv_buf_slice(&okey),
                         kv_buf_slice(&e->cell));
        assert_int_equal(eng_memtable_count(f->m), i + 1);
        size_t b = eng_memtable_bytes(f->m);
        assert_true(b >= last_bytes + e->ikey.len + e->cell.len);
        last_bytes = b;
    }
    kv_buf_deinit(&okey);
    kv_free(seqs);
    qsort(f->ref, n, sizeof *f->ref, ref_cmp);
}

static void fixture_free(fixture_t *f)
{
    eng_memtable_unref(f->m);
    ref_free(f->ref, f->n);
    for (size_t i = 0; i < f->nusers; i++) kv_buf_deinit(&f->users[i]);
    kv_free(f->users);
}

/* Index of the first reference entry >= ikey. */
static size_t ref_lower_bound(const fixture_t *f, kv_slice_t ikey)
{
    size_t lo = 0, hi = f->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (eng_ikey_cmp(kv_buf_slice(&f->ref[mid].ikey), ikey) < 0) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static void assert_at(eng_iiter_t *it, const ref_ent_t *e)
{
    assert_true(eng_iiter_valid(it));
    assert_true(kv_slice_eq(eng_iiter_key(it), kv_buf_slice(&e->ikey)));
    assert_true(kv_slice_eq(eng_iiter_value(it), kv_buf_slice(&e->cell)));
}

/* ---- tests ------------------------------------------------------------- */

static void test_memtable_empty_has_nothing_to_read(void **state)
{
    (void)state;
    eng_memtable_t *m = eng_memtable_create();
    assert_int_equal(eng_memtable_count(m), 0);
    kv_buf_t ok;
    kv_buf_init(&ok);
    eng_okey_append(&ok, kv_slice_str("k"));
    assert_false(eng_memtable_get(m, kv_buf_slice(&ok), ENG_MAX_SEQ, NULL, NULL, NULL));
    eng_iiter_t *it = eng_memtable_iter_create(m);
    eng_memtable_unref(m); /* the iterator's ref keeps it alive */
    eng_iiter_seek_first(it);
    assert_false(eng_iiter_valid(it));
    kv_buf_t ik;
    kv_buf_init(&ik);
    eng_ikey_append(&ik, kv_buf_slice(&ok), 5, ENG_KIND_VALUE);
    eng_iiter_seek(it, kv_buf_slice(&ik));
    assert_false(eng_iiter_valid(it));
    assert_int_equal(eng_iiter_status(it), KV_OK);
    eng_iiter_destroy(it);
    kv_buf_deinit(&ok);
    kv_buf_deinit(&ik);
}

static void test_memtable_iterates_random_adds_in_internal_key_order(void **state)
{
    (void)state;
    kv_rng_t r;
    kv_rng_seed(&r, test_seed(__func__));
    fixture_t f;
    fixture_build(&f, &r, 20000, 600);
    eng_iiter_t *it = eng_memtable_iter_create(f.m);
    for (int pass = 0; pass < 2; pass++) { /* seek_first rewinds */
        eng_iiter_seek_first(it);
        for (size_t i = 0; i < f.n; i++) {
            assert_at(it, &f.ref[i]);
            eng_iiter_next(it);
        }
        assert_false(eng_iiter_valid(it));
        assert_int_equal(eng_iiter_status(it), KV_OK);
    }
    eng_iiter_destroy(it);
    fixture_free(&f);
}

static void test_memtable_get_returns_newest_version_at_or_below_max_seq(void **state)
{
    (void)state;
    kv_rng_t r;
    kv_rng_seed(&r, test_seed(__func__));
    fixture_t f;
    fixture_build(&f, &r, 8000, 400);
    kv_buf_t okey, extra;
    kv_buf_init(&okey);
    kv_buf_init(&extra);
    for (size_t u = 0; u < f.nusers + 50; u++) {
        kv_slice_t user;
        if (u < f.nusers) {
            user = kv_buf_slice(&f.users[u]);
        } else { /* probably never added */
            kv_buf_clear(&extra);
            random_user_key(&r, &extra, 14);
            user = kv_buf_slice(&extra);
        }
        kv_buf_clear(&okey);
        eng_okey_append(&okey, user);
        uint64_t probes[] = {0, 1, f.n / 2, f.n, ENG_MAX_SEQ, UINT64_MAX,
                             kv_rng_below(&r, f.n + 2), kv_rng_below(&r, f.n + 2)};
        for (size_t p = 0; p < KV_ARRAY_LEN(probes); p++) {
            uint64_t max_seq = probes[p];
            const ref_ent_t *want = NULL;
            for (size_t i = 0; i < f.n; i++) { /* sorted: first match is newest */
                const ref_ent_t *e = &f.ref[i];
                if (e->seq <= max_seq &&
                    kv_slice_eq(eng_ikey_okey(kv_buf_slice(&e->ikey)),
                                kv_buf_slice(&okey))) {
                    want = e;
                    break;
                }
            }
            eng_kind_t kind;
            uint64_t seq;
            kv_slice_t cell;
            bool got = eng_memtable_get(f.m, kv_buf_slice(&okey), max_seq, &kind,
                                        &seq, &cell);
            assert_int_equal(got, want != NULL);
            if (!want) continue;
            assert_int_equal(seq, want->seq);
            assert_int_equal(kind, want->kind);
            assert_true(kv_slice_eq(cell, kv_buf_slice(&want->cell)));
            assert_true(cell_matches(cell, user, seq, kind));
        }
    }
    kv_buf_deinit(&okey);
    kv_buf_deinit(&extra);
    fixture_free(&f);
}

static void test_memtable_seek_positions_at_first_entry_not_below_target(void **state)
{
    (void)state;
    kv_rng_t r;
    kv_rng_seed(&r, test_seed(__func__));
    fixture_t f;
    fixture_build(&f, &r, 6000, 300);
    eng_iiter_t *it = eng_memtable_iter_create(f.m);
    kv_buf_t target, okey, user;
    kv_buf_init(&target);
    kv_buf_init(&okey);
    kv_buf_init(&user);
    for (int round = 0; round < 3000; round++) {
        kv_buf_clear(&target);
        if (round % 3 == 0) { /* an exact entry */
            const ref_ent_t *e = &f.ref[kv_rng_below(&r, f.n)];
            kv_buf_append(&target, e->ikey.data, e->ikey.len);
        } else { /* a pool key or a fresh one, at any seq and kind */
            kv_buf_clear(&okey);
            kv_buf_clear(&user);
            if (round % 3 == 1) {
                const kv_buf_t *u = &f.users[kv_rng_below(&r, f.nusers)];
                kv_buf_append(&user, u->data, u->len);
            } else {
                random_user_key(&r, &user, 12);
            }
            eng_okey_append(&okey, kv_buf_slice(&user));
            uint64_t seq = kv_rng_below(&r, f.n + 2);
            if (round % 17 == 0) seq = ENG_MAX_SEQ;
            eng_ikey_append(&target, kv_buf_slice(&okey), seq,
                            (eng_kind_t)kv_rng_below(&r, 2));
        }
        size_t want = ref_lower_bound(&f, kv_buf_slice(&target));
        eng_iiter_seek(it, kv_buf_slice(&target));
        for (size_t i = want; i < KV_MIN(want + 3, f.n); i++) {
            assert_at(it, &f.ref[i]);
            eng_iiter_next(it);
        }
        if (want + 3 > f.n) assert_false(eng_iiter_valid(it));
    }
    /* a target past every token */
    kv_buf_clear(&target);
    for (int i = 0; i < ENG_TOKEN_LEN + 4; i++) kv_buf_append_u8(&target, 0xff);
    eng_iiter_seek(it, kv_buf_slice(&target));
    assert_false(eng_iiter_valid(it));
    kv_buf_deinit(&target);
    kv_buf_deinit(&okey);
    kv_buf_deinit(&user);
    eng_iiter_destroy(it);
    fixture_free(&f);
}

static void test_memtable_holds_large_values_beside_small_ones(void **state)
{
    (void)state;
    eng_memtable_t *m = eng_memtable_create();
    kv_buf_t okey, cell;
    kv_buf_init(&okey);
    kv_buf_init(&cell);
    const size_t big = 1u << 20;
    for (uint64_t s = 1; s <= 12; s++) {
        char k[16];
        snprintf(k, sizeof k, "key%02" PRIu64, s % 4);
        kv_buf_clear(&okey);
        eng_okey_append(&okey, kv_slice_str(k));
        kv_buf_clear(&cell);
        cell_for(&cell, kv_slice_str(k), s, ENG_KIND_VALUE, s % 3 == 0 ? big : 7);
        size_t before = eng_memtable_bytes(m);
        eng_memtable_add(m, s, ENG_KIND_VALUE, kv_buf_slice(&okey), kv_buf_slice(&cell));
        assert_true(eng_memtable_bytes(m) >= before + cell.len);
    }
    assert_true(eng_memtable_bytes(m) >= 4 * big);
    assert_int_equal(eng_memtable_count(m), 12);
    for (uint64_t s = 9; s <= 12; s++) { /* newest of each key */
        char k[16];
        snprintf(k, sizeof k, "key%02" PRIu64, s % 4);
        kv_buf_clear(&okey);
        eng_okey_append(&okey, kv_slice_str(k));
        eng_kind_t kind;
        uint64_t seq;
        kv_slice_t c;
        assert_true(eng_memtable_get(m, kv_buf_slice(&okey), UINT64_MAX, &kind, &seq, &c));
        assert_int_equal(seq, s);
        assert_true(cell_matches(c, kv_slice_str(k), s, kind));
        assert_int_equal(c.len > big, s % 3 == 0);
    }
    size_t n = 0;
    eng_iiter_t *it = eng_memtable_iter_create(m);
    for (eng_iiter_seek_first(it); eng_iiter_valid(it); eng_iiter_next(it)) {
        eng_ikey_t ik = {0};
        assert_true(eng_ikey_parse(eng_iiter_key(it), &ik));
        assert_true(cell_matches(eng_iiter_value(it), eng_okey_user(ik.okey), ik.seq,
                                 ik.kind));
        n++;
    }
    assert_int_equal(n, 12);
    eng_iiter_destroy(it);
    eng_memtable_unref(m);
    kv_buf_deinit(&okey);
    kv_buf_deinit(&cell);
}

/* ---- one writer, concurrent readers -------------------------------------- */

#define CONC_ENTRIES 200000
#define CONC_KEYS 50000
#define CONC_READERS 2

typedef struct conc {
    eng_memtable_t *m;
    atomic_bool done;
    atomic_int failures;
    atomic_ulong scans, gets;
    uint64_t seed;
} conc_t;

static void conc_user(uint64_t k, uint8_t out[8]) { kv_put_be64(out, k * 2654435761u); }

static void conc_fail(conc_t *c, const char *what, uint64_t seq)
{
    if (atomic_fetch_add(&c->failures, 1) == 0)
        fprintf(stderr, "reader saw a bad entry: %s (seq %" PRIu64 ")\n", what, seq);
}

/* Validate one entry on its own: well-formed ikey, token matches the key,
 * cell exactly what the key and seq imply. */
static bool conc_entry_ok(conc_t *c, kv_slice_t ikey, kv_slice_t cell)
{
    eng_ikey_t ik = {0};
    if (!eng_ikey_parse(ikey, &ik) || ik.okey.len != ENG_TOKEN_LEN + 8) {
        conc_fail(c, "malformed ikey", 0);
        return false;
    }
    kv_slice_t user = eng_okey_user(ik.okey);
    if (eng_okey_token(ik.okey) != eng_token(user)) {
        conc_fail(c, "token does not match key", ik.seq);
        return false;
    }
    eng_kind_t want_kind = ik.seq % 7 == 0 ? ENG_KIND_TOMBSTONE : ENG_KIND_VALUE;
    uint8_t u[8];
    conc_user((ik.seq - 1) % CONC_KEYS, u);
    if (ik.kind != want_kind || memcmp(u, user.data, 8) != 0 ||
        !cell_matches(cell, user, ik.seq, ik.kind)) {
        conc_fail(c, "torn or mismatched cell", ik.seq);
        return false;
    }
    return true;
}

static void *conc_reader(void *arg)
{
    conc_t *c = arg;
    kv_rng_t r;
    kv_rng_seed(&r, c->seed ^ (uint64_t)(uintptr_t)&r);
    kv_buf_t okey;
    kv_buf_init(&okey);
    bool last = false;
    while (!last) {
        last = atomic_load(&c->done); /* one full pass after the writer ends */
        eng_iiter_t *it = eng_memtable_iter_create(c->m);
        kv_slice_t prev = {0};
        uint64_t seen = 0;
        for (eng_iiter_seek_first(it); eng_iiter_valid(it); eng_iiter_next(it)) {
            kv_slice_t k = eng_iiter_key(it);
            if (!conc_entry_ok(c, k, eng_iiter_value(it))) break;
            if (prev.data && eng_ikey_cmp(prev, k) >= 0) {
                conc_fail(c, "out of order", 0);
                break;
            }
            prev = k;
            seen++;
        }
        if (last && seen != CONC_ENTRIES) conc_fail(c, "final scan incomplete", seen);
        eng_iiter_destroy(it);
        atomic_fetch_add(&c->scans, 1);

        /* point reads: a key once seen stays visible, at its newest version */
        for (int g = 0; g < 2000; g++) {
            uint64_t k = kv_rng_below(&r, CONC_KEYS);
            uint8_t u[8];
            conc_user(k, u);
            kv_buf_clear(&okey);
            eng_okey_append(&okey, kv_slice(u, 8));
            eng_kind_t kind;
            uint64_t seq;
            kv_slice_t cell;
            uint64_t before = eng_memtable_count(c->m);
            if (!eng_memtable_get(c->m, kv_buf_slice(&okey), UINT64_MAX, &kind, &seq,
                                  &cell)) {
                if (before > k) conc_fail(c, "get missed a counted key", k + 1);
                continue;
            }
            /* count is bumped after publication, so every seq <= before is
             * visible: the newest version found is at least that new */
            uint64_t newest_known = 0;
            for (uint64_t s = k + 1; s <= before; s += CONC_KEYS) newest_known = s;
            kv_buf_t ik;
            kv_buf_init(&ik);
            eng_ikey_append(&ik, kv_buf_slice(&okey), seq, kind);
            if (!conc_entry_ok(c, kv_buf_slice(&ik), cell)) {
                kv_buf_deinit(&ik);
                break;
            }
            kv_buf_deinit(&ik);
            if (seq < newest_known) conc_fail(c, "get returned a stale version", seq);
            atomic_fetch_add(&c->gets, 1);
        }
    }
    kv_buf_deinit(&okey);
    return NULL;
}

static void test_memtable_concurrent_readers_see_sorted_untorn_entries(void **state)
{
    (void)state;
    conc_t c = {.m = eng_memtable_create(), .seed = test_seed(__func__)};
    atomic_init(&c.done, false);
    atomic_init(&c.failures, 0);
    atomic_init(&c.scans, 0);
    atomic_init(&c.gets, 0);
    pthread_t th[CONC_READERS];
    for (int i = 0; i < CONC_READERS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, conc_reader, &c), 0);

    kv_buf_t okey, cell;
    kv_buf_init(&okey);
    kv_buf_init(&cell);
    for (uint64_t seq = 1; seq <= CONC_ENTRIES; seq++) {
        uint8_t u[8];
        conc_user((seq - 1) % CONC_KEYS, u);
        kv_buf_clear(&okey);
        eng_okey_append(&okey, kv_slice(u, 8));
        eng_kind_t kind = seq % 7 == 0 ? ENG_KIND_TOMBSTONE : ENG_KIND_VALUE;
        kv_buf_clear(&cell);
        cell_for(&cell, kv_slice(u, 8), seq, kind, (size_t)(seq % 61));
        eng_memtable_add(c.m, seq, kind, kv_buf_slice(&okey), kv_buf_slice(&cell));
    }
    atomic_store(&c.done, true);
    for (int i = 0; i < CONC_READERS; i++) pthread_join(th[i], NULL);
    fprintf(stderr, "concurrent: %lu scans, %lu gets by %d readers\n",
            (unsigned long)atomic_load(&c.scans), (unsigned long)atomic_load(&c.gets),
            CONC_READERS);
    assert_int_equal(atomic_load(&c.failures), 0);
    assert_int_equal(eng_memtable_count(c.m), CONC_ENTRIES);
    kv_buf_deinit(&okey);
    kv_buf_deinit(&cell);
    eng_memtable_unref(c.m);
}

/* The commit leader's pattern (engine.c): look up a group of keys with
 * eng_memtable_get_pos, then insert them all with eng_memtable_add_at, each
 * from its remembered position while the others go in between. The list
 * must stay sorted at every level (iteration and gets see it) and every get
 * must find the newest version. */
static void test_memtable_add_at_remembered_position_keeps_order(void **state)
{
    (void)state;
    kv_rng_t r;
    kv_rng_seed(&r, test_seed(__func__));
    enum { USERS = 400, ROUNDS = 600, GROUP_MAX = 24 };
    eng_memtable_t *m = eng_memtable_create();
    kv_buf_t users[USERS], okeys[GROUP_MAX], cells[GROUP_MAX];
    uint64_t newest[USERS] = {0};
    for (size_t i = 0; i < USERS; i++) {
        kv_buf_init(&users[i]);
        random_user_key(&r, &users[i], 10);
        for (size_t j = 0; j < i; j++) /* distinct user keys */
            if (kv_slice_eq(kv_buf_slice(&users[j]), kv_buf_slice(&users[i]))) {
                kv_buf_clear(&users[i]);
                random_user_key(&r, &users[i], 10);
                j = (size_t)-1;
            }
    }
    for (size_t i = 0; i < GROUP_MAX; i++) {
        kv_buf_init(&okeys[i]);
        kv_buf_init(&cells[i]);
    }
    uint64_t seq = 0, adds = 0;
    eng_mt_pos_t pos[GROUP_MAX];
    size_t pick[GROUP_MAX];
    for (int round = 0; round < ROUNDS; round++) {
        size_t g = 1 + (size_t)kv_rng_below(&r, GROUP_MAX);
        for (size_t i = 0; i < g; i++) { /* distinct keys within a group */
            bool dup;
            do {
                pick[i] = (size_t)kv_rng_below(&r, USERS);
                dup = false;
                for (size_t j = 0; j < i; j++) dup |= pick[j] == pick[i];
            } while (dup);
            kv_buf_clear(&okeys[i]);
            eng_okey_append(&okeys[i], kv_buf_slice(&users[pick[i]]));
            uint64_t got = 0;
            bool found = eng_memtable_get_pos(m, kv_buf_slice(&okeys[i]), NULL, &got, NULL,
                                              &pos[i]);
            assert_int_equal(found, newest[pick[i]] != 0);
            if (found) assert_int_equal(got, newest[pick[i]]);
        }
        for (size_t i = 0; i < g; i++) {
            seq++;
            kv_buf_clear(&cells[i]);
            cell_for(&cells[i], kv_buf_slice(&users[pick[i]]), seq, ENG_KIND_VALUE, 3);
            /* every fourth one without a position: the plain search */
            eng_memtable_add_at(m, seq, ENG_KIND_VALUE, kv_buf_slice(&okeys[i]),
                                kv_buf_slice(&cells[i]), i % 4 == 3 ? NULL : &pos[i]);
            newest[pick[i]] = seq;
            adds++;
        }
    }
    assert_int_equal(eng_memtable_count(m), adds);
    /* level 0 in order: strictly increasing internal keys, adds of them */
    eng_iiter_t *it = eng_memtable_iter_create(m);
    kv_buf_t last;
    kv_buf_init(&last);
    uint64_t n = 0;
    for (eng_iiter_seek_first(it); eng_iiter_valid(it); eng_iiter_next(it), n++) {
        if (n) assert_true(eng_ikey_cmp(kv_buf_slice(&last), eng_iiter_key(it)) < 0);
        kv_buf_clear(&last);
        kv_buf_append(&last, eng_iiter_key(it).data, eng_iiter_key(it).len);
    }
    assert_int_equal(n, adds);
    eng_iiter_destroy(it);
    kv_buf_deinit(&last);
    /* the upper levels too: every key's newest version is found by a search */
    kv_buf_t ok;
    kv_buf_init(&ok);
    for (size_t i = 0; i < USERS; i++) {
        kv_buf_clear(&ok);
        eng_okey_append(&ok, kv_buf_slice(&users[i]));
        uint64_t got = 0;
        kv_slice_t cell;
        bool found = eng_memtable_get(m, kv_buf_slice(&ok), ENG_MAX_SEQ, NULL, &got, &cell);
        assert_int_equal(found, newest[i] != 0);
        if (found) {
            assert_int_equal(got, newest[i]);
            assert_true(cell_matches(cell, kv_buf_slice(&users[i]), got, ENG_KIND_VALUE));
        }
        kv_buf_deinit(&users[i]);
    }
    kv_buf_deinit(&ok);
    for (size_t i = 0; i < GROUP_MAX; i++) {
        kv_buf_deinit(&okeys[i]);
        kv_buf_deinit(&cells[i]);
    }
    eng_memtable_unref(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        kv_unit_test(test_memtable_empty_has_nothing_to_read),
        kv_unit_test(test_memtable_iterates_random_adds_in_internal_key_order),
        kv_unit_test(test_memtable_get_returns_newest_version_at_or_below_max_seq),
        kv_unit_test(test_memtable_seek_positions_at_first_entry_not_below_target),
        kv_unit_test(test_memtable_holds_large_values_beside_small_ones),
        kv_unit_test(test_memtable_concurrent_readers_see_sorted_untorn_entries),
        kv_unit_test(test_memtable_add_at_remembered_position_keeps_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
