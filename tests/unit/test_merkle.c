/* test_merkle.c -- Merkle trees over token ranges (replication/merkle.c):
 * leaves partition the range exactly (wrapping ranges and the whole ring
 * included), equal cell sets give equal trees whatever the order, and a
 * difference in any field of one cell shows as exactly its leaf. */
#include "test_util.h"

#include "merkle.h"

static eng_cell_t cell(uint64_t ts, const char *v)
{
    eng_cell_t c = {.ts = ts, .tombstone = v == NULL};
    if (v) c.value = kv_slice_str(v);
    return c;
}

static void test_merkle_leaves_partition_the_range(void **state)
{
    (void)state;
    kv_rng_t rng;
    kv_rng_seed(&rng, test_seed("merkle partition"));
    const uint64_t ranges[][2] = {
        {100, 1000000}, {UINT64_MAX - 1000, 5000}, {42, 42}, {0, UINT64_MAX}, {7, 9},
    };
    for (size_t r = 0; r < KV_ARRAY_LEN(ranges); r++) {
        merkle_t *m = merkle_create(ranges[r][0], ranges[r][1], 10);
        uint32_t d = merkle_depth(m);
        if (r == 4) assert_int_equal(d, 1); /* two tokens: two leaves */
        else assert_int_equal(d, 10);
        uint64_t prev_end = ranges[r][0];
        for (uint32_t i = 0; i < (1u << d); i++) {
            uint64_t s, e;
            merkle_leaf_range(m, i, i, &s, &e);
            assert_int_equal(s, prev_end); /* contiguous */
            assert_true(s != e || d == 0); /* never empty */
            prev_end = e;
            /* the leaf's own ends map to it */
            assert_int_equal(merkle_leaf_of(m, e), i);
            assert_int_equal(merkle_leaf_of(m, s + 1), i);
        }
        assert_int_equal(prev_end, ranges[r][1]);
        uint64_t s, e;
        merkle_leaf_range(m, 0, (1u << d) - 1, &s, &e);
        assert_int_equal(s, ranges[r][0]);
        assert_int_equal(e, ranges[r][1]);
        merkle_destroy(m);
    }
    assert_null(merkle_create(0, 0, MERKLE_MAX_DEPTH + 1));
}

static void test_merkle_same_cells_any_order_same_tree(void **state)
{
    (void)state;
    kv_rng_t rng;
    kv_rng_seed(&rng, test_seed("merkle order"));
    enum { N = 5000 };
    merkle_t *a = merkle_create(1000, 1000, 12), *b = merkle_create(1000, 1000, 12);
    uint64_t tok[N];
    char key[N][16];
    for (int i = 0; i < N; i++) {
        tok[i] = kv_rng_next(&rng);
        snprintf(key[i], sizeof key[i], "k%d", i);
    }
    for (int i = 0; i < N; i++) {
        eng_cell_t c = cell((uint64_t)i + 1, i % 3 ? "v" : NULL);
        merkle_add(a, tok[i], kv_slice_str(key[i]), &c);
    }
    for (int i = N - 1; i >= 0; i--) {
        eng_cell_t c = cell((uint64_t)i + 1, i % 3 ? "v" : NULL);
        merkle_add(b, tok[i], kv_slice_str(key[i]), &c);
    }
    merkle_finish(a);
    merkle_finish(b);
    assert_int_equal(merkle_root(a), merkle_root(b));
    assert_int_equal(merkle_cells(a), N);
    merkle_range_t out[8];
    uint32_t leaves, visited;
    kv_status_t rc;
    assert_int_equal(merkle_diff(a, b, out, 8, &leaves, &visited, &rc), 0);
    assert_int_equal(rc, KV_OK);
    assert_int_equal(visited, 1); /* equal roots: nothing more to compare */
    merkle_destroy(a);
    merkle_destroy(b);
}

/* One cell different in one field: exactly its leaf differs, and the diff
 * range holds its token. */
static void test_merkle_one_difference_is_found_in_its_leaf(void **state)
{
    (void)state;
    kv_rng_t rng;
    kv_rng_seed(&rng, test_seed("merkle diff"));
    enum { N = 3000 };
    for (int field = 0; field < 5; field++) {
        merkle_t *a = merkle_create(UINT64_MAX - (UINT64_C(1) << 62), UINT64_C(1) << 61, 10);
        merkle_t *b = merkle_create(UINT64_MAX - (UINT64_C(1) << 62), UINT64_C(1) << 61, 10);
        int odd = (int)kv_rng_below(&rng, N);
        uint64_t odd_tok = 0;
        for (int i = 0; i < N; i++) {
            uint64_t t = kv_rng_next(&rng);
            char k[16];
            snprintf(k, sizeof k, "k%d", i);
            eng_cell_t c = cell(100 + (uint64_t)i, "value");
            merkle_add(a, t, kv_slice_str(k), &c);
            if (i == odd) {
                odd_tok = t;
                switch (field) {
                case 0: c.ts++; break;
                case 1: c.value = kv_slice_str("valuE"); break;
                case 2: c.tombstone = true; c.value = kv_slice(NULL, 0); break;
                case 3: c.expire_ms = 5; break;
                case 4: snprintf(k, sizeof k, "K%d", i); break;
                }
            }
            merkle_add(b, t, kv_slice_str(k), &c);
        }
        merkle_finish(a);
        merkle_finish(b);
        merkle_range_t out[4];
        uint32_t leaves, visited;
        size_t n = merkle_diff(a, b, out, 4, &leaves, &visited, NULL);
        bool inside = (odd_tok > UINT64_MAX - (UINT64_C(1) << 62)) || odd_tok <= (UINT64_C(1) << 61);
        if (!inside) {
            assert_int_equal(n, 0); /* outside the range: not in the tree */
        } else {
            assert_int_equal(n, 1);
            assert_int_equal(leaves, 1);
            assert_true(visited <= 2 * 10 + 1); /* one path down, siblings */
            uint64_t s = out[0].start, e = out[0].end;
            bool in = s < e ? odd_tok > s && odd_tok <= e : odd_tok > s || odd_tok <= e;
            assert_true(in);
        }
        merkle_destroy(a);
        merkle_destroy(b);
    }
}

static void test_merkle_adjacent_differences_merge_and_leaves_travel(void **state)
{
    (void)state;
    merkle_t *a = merkle_create(0, 1 << 20, 4), *b = merkle_create(0, 1 << 20, 4);
    /* leaves are 65536 tokens wide: differ in leaves 2, 3 and 9 */
    const uint64_t toks[] = {2 * 65536 + 5, 3 * 65536 + 1, 9 * 65536 + 65536};
    for (size_t i = 0; i < KV_ARRAY_LEN(toks); i++) {
        eng_cell_t c = cell(1, "x");
        merkle_add(a, toks[i], kv_slice_str("k"), &c);
    }
    merkle_finish(a);
    merkle_finish(b);
    merkle_range_t out[4];
    uint32_t leaves;
    size_t n = merkle_diff(a, b, out, 4, &leaves, NULL, NULL);
    assert_int_equal(leaves, 3);
    assert_int_equal(n, 2);
    assert_int_equal(out[0].start, 2 * 65536);
    assert_int_equal(out[0].end, 4 * 65536);
    assert_int_equal(out[1].start, 9 * 65536);
    assert_int_equal(out[1].end, 10 * 65536);
    /* a tree rebuilt from its leaves is the same tree */
    size_t nl;
    const uint64_t *l = merkle_leaves(a, &nl);
    merkle_t *c = merkle_from_leaves(0, 1 << 20, 4, l, nl);
    assert_non_null(c);
    assert_int_equal(merkle_root(c), merkle_root(a));
    assert_null(merkle_from_leaves(0, 1 << 20, 4, l, nl - 1));
    assert_null(merkle_from_leaves(0, 3, 4, l, nl)); /* 3 tokens: depth 1 */
    /* trees of other ranges do not compare */
    merkle_t *d = merkle_create(1, 1 << 20, 4);
    kv_status_t rc;
    assert_int_equal(merkle_diff(a, d, out, 4, NULL, NULL, &rc), 0);
    assert_int_equal(rc, KV_INVALID);
    merkle_destroy(a);
    merkle_destroy(b);
    merkle_destroy(c);
    merkle_destroy(d);
}

/* Folding a deep tree gives exactly the tree built at the smaller depth. */
static void test_merkle_fold_equals_building_shallower(void **state)
{
    (void)state;
    kv_rng_t rng;
    kv_rng_seed(&rng, test_seed("merkle fold"));
    merkle_t *deep = merkle_create(5, 5, 16), *shallow = merkle_create(5, 5, 9);
    for (int i = 0; i < 2000; i++) {
        uint64_t t = kv_rng_next(&rng);
        eng_cell_t c = cell((uint64_t)i + 1, "v");
        merkle_add(deep, t, kv_slice_str("k"), &c);
        merkle_add(shallow, t, kv_slice_str("k"), &c);
    }
    merkle_finish(deep);
    merkle_finish(shallow);
    merkle_t *f = merkle_fold(deep, 9);
    assert_non_null(f);
    assert_int_equal(merkle_depth(f), 9);
    assert_int_equal(merkle_root(f), merkle_root(shallow));
    assert_int_equal(merkle_cells(f), 2000);
    assert_null(merkle_fold(shallow, 10));
    merkle_destroy(deep);
    merkle_destroy(shallow);
    merkle_destroy(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        kv_unit_test(test_merkle_leaves_partition_the_range),
        kv_unit_test(test_merkle_same_cells_any_order_same_tree),
        kv_unit_test(test_merkle_one_difference_is_found_in_its_leaf),
        kv_unit_test(test_merkle_adjacent_differences_merge_and_leaves_travel),
        kv_unit_test(test_merkle_fold_equals_building_shallower),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
