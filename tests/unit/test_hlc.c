/* test_hlc.c -- the hybrid logical clock: strict monotonicity under a wall
 * clock that jumps both ways, refusal of skewed remotes, counter overflow,
 * and restarts with the wall clock set back. */
#include "test_util.h"

#include "hlc.h"

#define T0 1763700000000LL /* 2025-11-21, in ms */

static hlc_t *open_clock(kv_manual_clock_t *mc, const char *path)
{
    hlc_options_t o;
    hlc_options_init(&o);
    o.clock = &mc->clock;
    o.state_path = path;
    hlc_t *h = NULL;
    assert_int_equal(hlc_open(&o, &h), KV_OK);
    return h;
}

static void test_hlc_layout_is_48_bits_wall_16_bits_logical(void **state)
{
    (void)state;
    hlc_ts_t t = hlc_make(T0, 7);
    assert_int_equal(hlc_wall_ms(t), T0);
    assert_int_equal(hlc_logical(t), 7);
    assert_true(hlc_make(T0, 0xffff) < hlc_make(T0 + 1, 0));
    assert_int_equal(hlc_make(T0, 0xffff) + 1, hlc_make(T0 + 1, 0));
    char buf[32];
    assert_string_equal(hlc_format(hlc_make(5, 3), buf, sizeof buf), "5.3");
}

static void test_hlc_now_follows_wall_clock_and_is_strict(void **state)
{
    (void)state;
    kv_manual_clock_t mc;
    kv_manual_clock_init(&mc, T0);
    hlc_t *h = open_clock(&mc, NULL);
    hlc_ts_t a, b, c;
    assert_int_equal(hlc_now(h, &a), KV_OK);
    assert_int_equal(a, hlc_make(T0, 0));
    assert_int_equal(hlc_now(h, &b), KV_OK);
    assert_int_equal(b, hlc_make(T0, 1)); /* same ms: logical counter */
    kv_manual_clock_advance(&mc, 5);
    assert_int_equal(hlc_now(h, &c), KV_OK);
    assert_int_equal(c, hlc_make(T0 + 5, 0));
    hlc_close(h);
}

/* Random interleavings of now() and update() while the wall clock jumps
 * forward and back: every timestamp is strictly above the previous one and
 * above every accepted remote. */
static void test_hlc_monotonic_under_random_interleavings(void **state)
{
    (void)state;
    kv_rng_t rng;
    kv_rng_seed(&rng, test_seed("hlc interleavings"));
    kv_manual_clock_t mc;
    kv_manual_clock_init(&mc, T0);
    hlc_t *h = open_clock(&mc, NULL);
    hlc_ts_t prev = 0;
    int refused = 0, jumps_back = 0;
    for (int i = 0; i < 200000; i++) {
        uint64_t r = kv_rng_below(&rng, 100);
        if (r < 5) {
            int64_t back = (int64_t)kv_rng_below(&rng, 3600 * 1000);
            kv_manual_clock_set_wall(&mc, mc.wall - back);
            jumps_back++;
        } else if (r < 15) {
            kv_manual_clock_set_wall(&mc, mc.wall + (int64_t)kv_rng_below(&rng, 2000));
        }
        hlc_ts_t t;
        if (kv_rng_below(&rng, 2)) {
            assert_int_equal(hlc_now(h, &t), KV_OK);
        } else {
            /* a remote within +-1 s of local wall time */
            int64_t off = (int64_t)kv_rng_below(&rng, 2000) - 1000;
            hlc_ts_t remote = hlc_make((uint64_t)(mc.wall + off),
                                       (uint32_t)kv_rng_below(&rng, 1u << 16));
            kv_status_t rc = hlc_update(h, remote, &t);
            /* refused only when ahead of the wall clock as read (and of the
             * monotonic account, which a leap back leaves ahead of it) */
            if (rc == KV_CLOCK_SKEW) {
                assert_true(off > 500 && remote > prev);
                assert_int_equal(hlc_last(h), prev); /* untouched */
                refused++;
                continue;
            }
            assert_int_equal(rc, KV_OK);
            assert_true(t > remote);
        }
        assert_true(t > prev);
        prev = t;
    }
    assert_true(refused > 0);
    assert_true(jumps_back > 0);
    hlc_stats_t st;
    hlc_get_stats(h, &st);
    assert_int_equal(st.skew_refused, (uint64_t)refused);
    hlc_close(h);
}

static void test_hlc_refuses_remote_beyond_max_offset(void **state)
{
    (void)state;
    kv_manual_clock_t mc;
    kv_manual_clock_init(&mc, T0);
    hlc_t *h = open_clock(&mc, NULL);
    hlc_ts_t t, before;
    assert_int_equal(hlc_now(h, &before), KV_OK);
    /* 501 ms ahead: refused, clock unchanged */
    assert_int_equal(hlc_update(h, hlc_make(T0 + 501, 0), &t), KV_CLOCK_SKEW);
    assert_int_equal(hlc_last(h), before);
    /* hours ahead: refused */
    assert_int_equal(hlc_update(h, hlc_make(T0 + 3600000, 0), &t), KV_CLOCK_SKEW);
    /* exactly 500 ms ahead: accepted and adopted */
    assert_int_equal(hlc_update(h, hlc_make(T0 + 500, 3), &t), KV_OK);
    assert_int_equal(t, hlc_make(T0 + 500, 4));
    /* a remote far behind is fine and does not pull the clock back */
    hlc_ts_t u;
    assert_int_equal(hlc_update(h, hlc_make(T0 - 3600000, 0), &u), KV_OK);
    assert_true(u > t);
    hlc_stats_t st;
    hlc_get_stats(h, &st);
    assert_int_equal(st.skew_refused, 2);
    assert_int_equal(st.max_ahead_ms, 3600000);
    hlc_close(h);
}

/* A remote no newer than our own last stamp never counts as skew, even
 * when it is ahead of the wall clock (our own stamps come back as causality
 * tokens after we accepted a peer slightly ahead, or after a restart). */
static void test_hlc_own_stamps_ahead_of_wall_are_not_refused(void **state)
{
    (void)state;
    kv_manual_clock_t mc;
    kv_manual_clock_init(&mc, T0);
    hlc_t *h = open_clock(&mc, NULL);
    hlc_ts_t t, u;
    assert_int_equal(hlc_update(h, hlc_make(T0 + 400, 0), &t), KV_OK);
    /* the wall steps back (within max_offset: a leap would not be followed,
     * see test_hlc_does_not_follow_a_wall_clock_leap) */
    kv_manual_clock_set_wall(&mc, T0 - 400);
    assert_int_equal(hlc_update(h, t, &u), KV_OK); /* our own: fine */
    assert_true(u > t);
    /* but a remote newer than ours and far ahead of the wall is refused,
     * so peers cannot ratchet the clock forward */
    assert_int_equal(hlc_update(h, u + 1, &t), KV_CLOCK_SKEW);
    hlc_close(h);
}

/* A full logical counter moves to the next millisecond; it never wraps. */
static void test_hlc_logical_overflow_moves_to_next_millisecond(void **state)
{
    (void)state;
    kv_manual_clock_t mc;
    kv_manual_clock_init(&mc, T0);
    hlc_t *h = open_clock(&mc, NULL);
    hlc_ts_t t, prev = 0;
    for (uint32_t i = 0; i < (1u << 16) + 10; i++) {
        assert_int_equal(hlc_now(h, &t), KV_OK);
        assert_true(t > prev);
        prev = t;
    }
    assert_int_equal(hlc_wall_ms(t), T0 + 1);
    assert_int_equal(hlc_logical(t), 9);
    /* a remote at the top of the counter */
    assert_int_equal(hlc_update(h, hlc_make(T0 + 2, 0xffff), &t), KV_OK);
    assert_int_equal(t, hlc_make(T0 + 3, 0));
    hlc_close(h);
}

/* After a restart with the wall clock set back an hour, every new stamp is
 * above every stamp issued before the restart. */
static void test_hlc_restart_with_clock_set_back_stays_ahead(void **state)
{
    (void)state;
    const char *dir = test_tmpdir("hlc");
    char path[PATH_MAX + 16];
    assert_true(snprintf(path, sizeof path, "%s/clock", dir) < (int)sizeof path);
    kv_manual_clock_t mc;
    kv_manual_clock_init(&mc, T0);
    hlc_t *h = open_clock(&mc, path);
    hlc_ts_t t = 0, last_before = 0;
    for (int i = 0; i < 1000; i++) {
        kv_manual_clock_advance(&mc, 37);
        assert_int_equal(hlc_now(h, &t), KV_OK);
        last_before = t;
        /* invariant (2): the persisted mark is always ahead */
        assert_true(hlc_wall_ms(t) < hlc_persisted_ms(h));
    }
    hlc_stats_t st;
    hlc_get_stats(h, &st);
    assert_true(st.lease_writes >= 18); /* 37 s of time, 1 s leases */
    assert_true(st.lease_writes <= 37);
    hlc_close(h);

    kv_manual_clock_set_wall(&mc, mc.wall - 3600 * 1000);
    h = open_clock(&mc, path);
    assert_int_equal(hlc_now(h, &t), KV_OK);
    assert_true(t > last_before);
    hlc_ts_t prev = t;
    for (int i = 0; i < 100; i++) {
        assert_int_equal(hlc_now(h, &t), KV_OK);
        assert_true(t > prev);
        prev = t;
    }
    hlc_close(h);

    /* also when the restart happens right after a fresh lease write */
    kv_manual_clock_init(&mc, T0 + 10 * 3600 * 1000LL);
    h = open_clock(&mc, path);
    assert_int_equal(hlc_now(h, &last_before), KV_OK);
    hlc_close(h);
    kv_manual_clock_set_wall(&mc, T0);
    h = open_clock(&mc, path);
    assert_int_equal(hlc_now(h, &t), KV_OK);
    assert_true(t > last_before);
    hlc_close(h);
    test_rmrf(dir);
}

static void test_hlc_corrupt_state_file_is_refused(void **state)
{
    (void)state;
    const char *dir = test_tmpdir("hlc-corrupt");
    char path[PATH_MAX + 16];
    assert_true(snprintf(path, sizeof path, "%s/clock", dir) < (int)sizeof path);
    kv_manual_clock_t mc;
    kv_manual_clock_init(&mc, T0);
    hlc_t *h = open_clock(&mc, path);
    hlc_ts_t t;
    assert_int_equal(hlc_now(h, &t), KV_OK);
    hlc_close(h);

    /* flip one bit of the mark */
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, 13, SEEK_SET);
    int c = fgetc(f);
    fseek(f, 13, SEEK_SET);
    fputc(c ^ 0x10, f);
    fclose(f);

    hlc_options_t o;
    hlc_options_init(&o);
    o.clock = &mc.clock;
    o.state_path = path;
    h = NULL;
    assert_int_equal(hlc_open(&o, &h), KV_CORRUPT);
    assert_null(h);

    /* a truncated file too */
    assert_int_equal(truncate(path, 10), 0);
    assert_int_equal(hlc_open(&o, &h), KV_CORRUPT);
    test_rmrf(dir);
}

static void test_hlc_unwritable_state_issues_nothing(void **state)
{
    (void)state;
    kv_manual_clock_t mc;
    kv_manual_clock_init(&mc, T0);
    hlc_t *h = open_clock(&mc, "/nonexistent-dir-for-cairn/clock");
    hlc_ts_t t = 0;
    assert_int_not_equal(hlc_now(h, &t), KV_OK);
    assert_int_equal(t, 0);
    assert_int_equal(hlc_last(h), 0);
    hlc_close(h);
}

/* A wall clock set hours ahead (or back) while the node runs is not followed:
 * timestamps keep to the monotonic clock, no mark is persisted in the
 * future, peers' timestamps are still taken, and once the wall clock is put
 * back the clock follows it again. A step within max_offset is followed. */
static void test_hlc_does_not_follow_a_wall_clock_leap(void **state)
{
    (void)state;
    const char *dir = test_tmpdir("hlc-leap");
    char path[PATH_MAX + 16];
    assert_true(snprintf(path, sizeof path, "%s/clock", dir) < (int)sizeof path);
    kv_manual_clock_t mc;
    kv_manual_clock_init(&mc, T0);
    hlc_t *h = open_clock(&mc, path);
    hlc_ts_t t;
    assert_int_equal(hlc_now(h, &t), KV_OK);
    assert_int_equal(hlc_wall_ms(t), T0);

    const int64_t hours2 = 2 * 3600 * 1000LL;
    kv_manual_clock_set_wall(&mc, T0 + hours2); /* the monotonic clock did not move */
    assert_int_equal(hlc_now(h, &t), KV_OK);
    assert_true(hlc_wall_ms(t) < (uint64_t)T0 + 10);
    kv_manual_clock_advance(&mc, 1500); /* both move on together */
    assert_int_equal(hlc_now(h, &t), KV_OK);
    assert_int_equal(hlc_wall_ms(t), (uint64_t)T0 + 1500);
    assert_true(hlc_persisted_ms(h) <= (uint64_t)T0 + 1500 + 1000);
    hlc_stats_t st;
    hlc_get_stats(h, &st);
    assert_int_equal(st.wall_leaps, 1);
    /* a peer in real time is neither refused nor behind us afterwards */
    hlc_ts_t remote = hlc_make((uint64_t)T0 + 1800, 3);
    assert_int_equal(hlc_update(h, remote, &t), KV_OK);
    assert_true(t > remote);

    /* the leap is undone: the clock follows the wall clock again at once */
    kv_manual_clock_set_wall(&mc, T0 + 2000);
    kv_manual_clock_advance(&mc, 500);
    assert_int_equal(hlc_now(h, &t), KV_OK);
    assert_int_equal(hlc_wall_ms(t), (uint64_t)T0 + 2500);
    /* a step forward within max_offset (500 ms) is followed */
    kv_manual_clock_set_wall(&mc, T0 + 2900);
    assert_int_equal(hlc_now(h, &t), KV_OK);
    assert_int_equal(hlc_wall_ms(t), (uint64_t)T0 + 2900);
    hlc_get_stats(h, &st);
    assert_int_equal(st.wall_leaps, 1);

    /* set two hours back: not followed either, and peers in real time are
     * not refused as being ahead */
    kv_manual_clock_set_wall(&mc, T0 + 2900 - hours2);
    kv_manual_clock_advance(&mc, 100);
    assert_int_equal(hlc_now(h, &t), KV_OK);
    assert_int_equal(hlc_wall_ms(t), (uint64_t)T0 + 3000);
    remote = hlc_make((uint64_t)T0 + 3200, 0);
    assert_int_equal(hlc_update(h, remote, &t), KV_OK);
    /* but one far ahead of real time still is */
    assert_int_equal(hlc_update(h, hlc_make((uint64_t)T0 + 3000 + 5000, 0), &t),
                     KV_CLOCK_SKEW);
    kv_manual_clock_set_wall(&mc, T0 + 3000); /* put back */
    assert_int_equal(hlc_now(h, &t), KV_OK);
    assert_true(hlc_wall_ms(t) >= (uint64_t)T0 + 3200);
    hlc_get_stats(h, &st);
    assert_int_equal(st.wall_leaps, 2);
    hlc_close(h);
    test_rmrf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        kv_unit_test(test_hlc_layout_is_48_bits_wall_16_bits_logical),
        kv_unit_test(test_hlc_now_follows_wall_clock_and_is_strict),
        kv_unit_test(test_hlc_monotonic_under_random_interleavings),
        kv_unit_test(test_hlc_refuses_remote_beyond_max_offset),
        kv_unit_test(test_hlc_own_stamps_ahead_of_wall_are_not_refused),
        kv_unit_test(test_hlc_logical_overflow_moves_to_next_millisecond),
        kv_unit_test(test_hlc_restart_with_clock_set_back_stays_ahead),
        kv_unit_test(test_hlc_corrupt_state_file_is_refused),
        kv_unit_test(test_hlc_unwritable_state_issues_nothing),
        kv_unit_test(test_hlc_does_not_follow_a_wall_clock_leap),
    };
    return cmocka_run_group_tests_name("hlc", tests, NULL, NULL);
}
