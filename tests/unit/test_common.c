/* test_common.c -- the common base: statuses, error macros, buffers,
 * integer codings, slices, logging and the clock seam. */
#include "test_util.h"

#include "clock.h"
#include "coding.h"

static void test_status_names_are_stable_and_total(void **state)
{
    (void)state;
    assert_string_equal(kv_status_str(KV_OK), "OK");
    assert_string_equal(kv_status_str(KV_NOSPACE), "NOSPACE");
    assert_string_equal(kv_status_str(KV_SUPERSEDED), "SUPERSEDED");
    for (int s = 0; s < KV_STATUS_COUNT_; s++)
        assert_string_not_equal(kv_status_str((kv_status_t)s), "UNKNOWN");
    assert_string_equal(kv_status_str((kv_status_t)999), "UNKNOWN");
    assert_int_equal(kv_status_from_errno(ENOSPC), KV_NOSPACE);
    assert_int_equal(kv_status_from_errno(EIO), KV_IO);
    assert_int_equal(kv_status_from_errno(ENOENT), KV_NOTFOUND);
}

static int cleanup_runs;

static kv_status_t step(kv_status_t rc) { return rc; }

static kv_status_t uses_err_label(kv_status_t first, kv_status_t cleanup)
{
    kv_status_t rc = KV_OK;
    KV_ERR(rc = step(first));
    KV_ERR(rc = step(KV_OK));
err:
    cleanup_runs++;
    KV_TRET(step(cleanup)); /* keeps the first error */
    return rc;
}

static kv_status_t uses_ret(kv_status_t a)
{
    KV_RET(step(a));
    return KV_EXISTS;
}

static void test_error_macros_jump_return_and_keep_first_error(void **state)
{
    (void)state;
    cleanup_runs = 0;
    assert_int_equal(uses_err_label(KV_OK, KV_OK), KV_OK);
    assert_int_equal(uses_err_label(KV_IO, KV_OK), KV_IO);
    assert_int_equal(uses_err_label(KV_IO, KV_CORRUPT), KV_IO);
    assert_int_equal(uses_err_label(KV_OK, KV_CORRUPT), KV_CORRUPT);
    assert_int_equal(cleanup_runs, 4);
    assert_int_equal(uses_ret(KV_BUSY), KV_BUSY);
    assert_int_equal(uses_ret(KV_OK), KV_EXISTS);
}

static void test_buf_grows_consumes_and_clears(void **state)
{
    (void)state;
    kv_buf_t b;
    kv_buf_init(&b);
    for (int i = 0; i < 10000; i++) kv_buf_append_u8(&b, (uint8_t)i);
    assert_int_equal(b.len, 10000);
    assert_true(b.cap >= b.len);
    kv_buf_consume(&b, 9990);
    assert_int_equal(b.len, 10);
    assert_int_equal(b.data[0], (uint8_t)9990);
    kv_buf_clear(&b);
    assert_int_equal(b.len, 0);
    kv_buf_append(&b, "abc", 3);
    assert_true(kv_slice_eq(kv_buf_slice(&b), kv_slice_str("abc")));
    kv_buf_deinit(&b);
}

static void test_fixed_width_codings_roundtrip(void **state)
{
    (void)state;
    uint8_t p[8];
    kv_put_be32(p, 0x01020304u);
    assert_int_equal(p[0], 1);
    assert_int_equal(kv_get_be32(p), 0x01020304u);
    kv_put_be64(p, 0x0102030405060708ULL);
    assert_int_equal(p[7], 8);
    assert_int_equal(kv_get_be64(p), 0x0102030405060708ULL);
    kv_put_le32(p, 0x01020304u);
    assert_int_equal(p[0], 4);
    assert_int_equal(kv_get_le32(p), 0x01020304u);
    kv_put_le64(p, 0x0102030405060708ULL);
    assert_int_equal(p[0], 8);
    assert_int_equal(kv_get_le64(p), 0x0102030405060708ULL);
    /* big-endian sorts like the number */
    uint8_t a[8], b[8];
    kv_put_be64(a, 255);
    kv_put_be64(b, 256);
    assert_true(memcmp(a, b, 8) < 0);
}

static void test_varint_roundtrips_and_rejects_truncated_or_overlong(void **state)
{
    (void)state;
    const uint64_t vals[] = {0, 1, 127, 128, 300, 16383, 16384, UINT32_MAX,
                             (uint64_t)1 << 63, UINT64_MAX};
    uint8_t p[KV_VARINT64_MAX];
    for (size_t i = 0; i < KV_ARRAY_LEN(vals); i++) {
        size_t n = kv_put_varint64(p, vals[i]);
        assert_int_equal(n, kv_varint64_len(vals[i]));
        uint64_t v = 0;
        assert_int_equal(kv_get_varint64(p, p + n, &v), n);
        assert_int_equal(v, vals[i]);
        if (n > 1) assert_int_equal(kv_get_varint64(p, p + n - 1, &v), 0);
    }
    uint8_t overlong[11];
    memset(overlong, 0xff, sizeof overlong);
    uint64_t v;
    assert_int_equal(kv_get_varint64(overlong, overlong + 11, &v), 0);
    /* 10th byte with more than the 64th bit set overflows */
    uint8_t over[10];
    memset(over, 0x80, 9);
    over[9] = 0x02;
    assert_int_equal(kv_get_varint64(over, over + 10, &v), 0);
}

static void test_slice_cmp_orders_prefix_first(void **state)
{
    (void)state;
    assert_true(kv_slice_cmp(kv_slice_str("ab"), kv_slice_str("abc")) < 0);
    assert_true(kv_slice_cmp(kv_slice_str("abd"), kv_slice_str("abc")) > 0);
    assert_int_equal(kv_slice_cmp(kv_slice_str(""), kv_slice(NULL, 0)), 0);
    assert_true(kv_slice_eq(kv_slice_str("x"), kv_slice_str("x")));
    assert_false(kv_slice_eq(kv_slice_str("x"), kv_slice_str("xy")));
}

static int sink_lines;
static char sink_last[256];

static void sink(void *arg, kv_log_level_t lvl, const char *line)
{
    (void)arg;
    (void)lvl;
    sink_lines++;
    snprintf(sink_last, sizeof sink_last, "%s", line);
}

static int evaluated;
static int side_effect(void) { return ++evaluated; }

static void test_log_skips_arguments_below_level(void **state)
{
    (void)state;
    kv_log_level_t old = kv_log_get_level();
    kv_log_set_sink(sink, NULL);
    kv_log_set_level(KV_LOG_WARN);
    evaluated = 0;
    sink_lines = 0;
    KV_LOG(KV_DEBUG, "never %d", side_effect());
    assert_int_equal(evaluated, 0);
    assert_int_equal(sink_lines, 0);
    KV_LOG(KV_WARN, "peer %s suspect (phi=%.1f) %d", "n2", 8.1, side_effect());
    assert_int_equal(evaluated, 1);
    assert_int_equal(sink_lines, 1);
    assert_non_null(strstr(sink_last, "WARN  [cairn] peer n2 suspect (phi=8.1) 1"));
    kv_log_level_t lvl;
    assert_int_equal(kv_log_level_parse("debug", &lvl), KV_OK);
    assert_int_equal(lvl, KV_LOG_DEBUG);
    assert_int_equal(kv_log_level_parse("loud", &lvl), KV_INVALID);
    kv_log_set_sink(NULL, NULL);
    kv_log_set_level(old);
}

static void test_manual_clock_moves_only_when_told(void **state)
{
    (void)state;
    kv_manual_clock_t mc;
    kv_manual_clock_init(&mc, 1000);
    const kv_clock_t *c = &mc.clock;
    uint64_t m0 = kv_clock_mono_ns(c);
    assert_int_equal(kv_clock_wall_ms(c), 1000);
    kv_manual_clock_advance(&mc, 250);
    assert_int_equal(kv_clock_wall_ms(c), 1250);
    assert_int_equal(kv_clock_mono_ns(c) - m0, 250000000ULL);
    kv_manual_clock_set_wall(&mc, 10);
    assert_int_equal(kv_clock_wall_ms(c), 10);
    assert_int_equal(kv_clock_mono_ns(c) - m0, 250000000ULL);
    /* the system clock is sane */
    const kv_clock_t *s = kv_clock_system();
    assert_true(kv_clock_wall_ms(s) > 1600000000000LL);
    uint64_t a = kv_clock_mono_ns(s), b = kv_clock_mono_ns(s);
    assert_true(b >= a);
}

static void test_rng_is_deterministic_and_bounded(void **state)
{
    (void)state;
    kv_rng_t a, b;
    kv_rng_seed(&a, 42);
    kv_rng_seed(&b, 42);
    for (int i = 0; i < 1000; i++) assert_int_equal(kv_rng_next(&a), kv_rng_next(&b));
    int counts[7] = {0};
    for (int i = 0; i < 70000; i++) counts[kv_rng_below(&a, 7)]++;
    for (int i = 0; i < 7; i++) assert_in_range(counts[i], 9000, 11000);
}

static void test_allocator_tracks_blocks_for_leak_checks(void **state)
{
    (void)state;
    assert_string_equal(kv_alloc_name(), "tracked");
    uint64_t mark = kv_alloc_test_mark();
    char *s = kv_strdup("cairn");
    assert_string_equal(s, "cairn");
    assert_int_equal(kv_alloc_test_leaks_since(mark), 1); /* a leak is seen */
    s = kv_realloc(s, 100000);
    assert_string_equal(s, "cairn");
    assert_int_equal(kv_alloc_test_leaks_since(mark), 1);
    kv_free(s);
    assert_int_equal(kv_alloc_test_leaks_since(mark), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        kv_unit_test(test_status_names_are_stable_and_total),
        kv_unit_test(test_error_macros_jump_return_and_keep_first_error),
        kv_unit_test(test_buf_grows_consumes_and_clears),
        kv_unit_test(test_fixed_width_codings_roundtrip),
        kv_unit_test(test_varint_roundtrips_and_rejects_truncated_or_overlong),
        kv_unit_test(test_slice_cmp_orders_prefix_first),
        kv_unit_test(test_log_skips_arguments_below_level),
        kv_unit_test(test_manual_clock_moves_only_when_told),
        kv_unit_test(test_rng_is_deterministic_and_bounded),
        kv_unit_test(test_allocator_tracks_blocks_for_leak_checks),
    };
    return cmocka_run_group_tests_name("common", tests, NULL, NULL);
}
