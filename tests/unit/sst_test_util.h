/* sst_test_util.h -- a model of an SSTable's contents for the SSTable unit
 * tests (test_sst.c, test_sst_fault.c): random entries, building a table
 * from them, and checking a table's answers against them. */
#ifndef CAIRN_SST_TEST_UTIL_H
#define CAIRN_SST_TEST_UTIL_H

#include "test_util.h"

#include "fs.h"
#include "sst.h"

#define SST_TRAILER_TEST 9 /* type(1) + XXH3-64(8), per sst.h */

/* ---- a model of a table's contents -------------------------------------- */

typedef struct ent {
    kv_buf_t ikey, cell;
} ent_t;

typedef struct model {
    ent_t *e;
    size_t n, cap;
} model_t;

static inline void model_add(model_t *m, kv_slice_t ukey, uint64_t seq, bool tomb,
                      hlc_ts_t ts, uint64_t expire_ms, kv_slice_t value)
{
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 256;
        m->e = kv_realloc(m->e, m->cap * sizeof *m->e);
    }
    ent_t *e = &m->e[m->n++];
    memset(e, 0, sizeof *e);
    kv_buf_t ok = {0};
    eng_okey_append(&ok, ukey);
    eng_ikey_append(&e->ikey, kv_buf_slice(&ok), seq,
                    tomb ? ENG_KIND_TOMBSTONE : ENG_KIND_VALUE);
    kv_buf_deinit(&ok);
    eng_cell_t c = {.ts = ts, .expire_ms = expire_ms, .tombstone = tomb,
                    .value = tomb ? kv_slice(NULL, 0) : value};
    eng_cell_encode(&e->cell, &c);
}

static inline int ent_cmp(const void *a, const void *b)
{
    return eng_ikey_cmp(kv_buf_slice(&((const ent_t *)a)->ikey),
                        kv_buf_slice(&((const ent_t *)b)->ikey));
}

static inline int buf_cmp(const void *a, const void *b)
{
    return eng_ikey_cmp(kv_buf_slice(a), kv_buf_slice(b));
}

static inline void model_sort(model_t *m) { qsort(m->e, m->n, sizeof *m->e, ent_cmp); }

static inline void model_free(model_t *m)
{
    for (size_t i = 0; i < m->n; i++) {
        kv_buf_deinit(&m->e[i].ikey);
        kv_buf_deinit(&m->e[i].cell);
    }
    kv_free(m->e);
    memset(m, 0, sizeof *m);
}

static inline void fill_random(kv_rng_t *r, uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)kv_rng_next(r);
}

/* nkeys distinct user keys (one empty, `big` of 64 KiB), 1-3 versions
 * each; values empty to ~1 MiB (`huge` of those), compressible or not. */
static inline void model_random(model_t *m, kv_rng_t *r, size_t nkeys, int big, int huge)
{
    uint8_t *kb = kv_malloc(ENG_MAX_KEY_LEN);
    uint8_t *vb = kv_malloc((1u << 20) + 1);
    for (size_t i = 0; i < nkeys; i++) {
        size_t klen = i == 0 ? 0 : (int)i <= big ? ENG_MAX_KEY_LEN
                                                 : 4 + kv_rng_below(r, 40);
        if (klen) {
            fill_random(r, kb, klen);
            kv_put_be32(kb, (uint32_t)i); /* distinct, never 0xffffffff */
        }
        int versions = 1 + (int)kv_rng_below(r, 3);
        uint64_t seq = 1 + kv_rng_below(r, 1000000) + 10;
        for (int v = 0; v < versions; v++) {
            seq -= 1 + kv_rng_below(r, 3); /* strictly older each time */
            bool tomb = kv_rng_below(r, 5) == 0;
            uint64_t exp = kv_rng_below(r, 5) == 0 ? 1700000000000 + seq : 0;
            size_t vlen = i + (size_t)huge >= nkeys ? (1u << 20)
                          : kv_rng_below(r, 4) == 0 ? 0 : kv_rng_below(r, 200);
            if (kv_rng_below(r, 2)) memset(vb, 'a' + (int)(i % 26), vlen);
            else fill_random(r, vb, vlen);
            model_add(m, kv_slice(kb, klen), seq, tomb, (hlc_ts_t)seq << 16, exp,
                      kv_slice(vb, vlen));
        }
    }
    kv_free(kb);
    kv_free(vb);
    model_sort(m);
}

static inline eng_sst_options_t opts(int level, int bloom, size_t block, int restart)
{
    eng_sst_options_t o = {.block_bytes = block, .restart_interval = restart,
                           .compression_level = level, .bloom_bits_per_key = bloom};
    return o;
}

static inline void build(const char *path, const eng_sst_options_t *o, const model_t *m,
                  eng_sst_props_t *props)
{
    eng_sst_builder_t *b;
    assert_int_equal(eng_sst_builder_create(path, o, &b), KV_OK);
    for (size_t i = 0; i < m->n; i++)
        assert_int_equal(eng_sst_builder_add(b, kv_buf_slice(&m->e[i].ikey),
                                             kv_buf_slice(&m->e[i].cell)),
                         KV_OK);
    assert_int_equal(eng_sst_builder_entries(b), m->n);
    eng_sst_props_t p;
    assert_int_equal(eng_sst_builder_finish(b, &p), KV_OK);
    if (props) *props = p;
    else eng_sst_props_deinit(&p);
}

static inline kv_slice_t ent_okey(const ent_t *e) { return eng_ikey_okey(kv_buf_slice(&e->ikey)); }

static inline uint64_t ent_seq(const ent_t *e)
{
    return eng_ikey_trailer(kv_buf_slice(&e->ikey)) >> 8;
}

/* get(okey, max_seq) must answer exactly entry `want` (or NOTFOUND). */
static inline void expect_get(eng_sst_t *t, kv_slice_t okey, uint64_t max_seq,
                       const ent_t *want)
{
    eng_kind_t kind;
    uint64_t seq;
    kv_buf_t cell = {0};
    kv_status_t rc = eng_sst_get(t, okey, max_seq, false, &kind, &seq, &cell);
    if (!want) {
        assert_int_equal(rc, KV_NOTFOUND);
    } else {
        assert_int_equal(rc, KV_OK);
        uint64_t tr = eng_ikey_trailer(kv_buf_slice(&want->ikey));
        assert_int_equal(seq, tr >> 8);
        assert_int_equal(kind, (eng_kind_t)(tr & 0xff));
        assert_true(kv_slice_eq(kv_buf_slice(&cell), kv_buf_slice(&want->cell)));
    }
    kv_buf_deinit(&cell);
}

static inline void expect_iter_all(eng_sst_t *t, const model_t *m, bool fill)
{
    eng_iiter_t *it = eng_sst_iter_create(t, fill);
    size_t i = 0;
    for (eng_iiter_seek_first(it); eng_iiter_valid(it); eng_iiter_next(it), i++) {
        assert_true(i < m->n);
        assert_true(kv_slice_eq(eng_iiter_key(it), kv_buf_slice(&m->e[i].ikey)));
        assert_true(kv_slice_eq(eng_iiter_value(it), kv_buf_slice(&m->e[i].cell)));
    }
    assert_int_equal(eng_iiter_status(it), KV_OK);
    assert_int_equal(i, m->n);
    eng_iiter_destroy(it);
}

#endif /* CAIRN_SST_TEST_UTIL_H */
