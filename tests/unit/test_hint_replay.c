/* test_hint_replay.c -- the hint delivery dispatcher: a target gets batches
 * only while it is up and has hints, one at a time and in order; the token
 * bucket holds delivery to bytes_per_sec over a long replay; a failed or
 * unanswered batch is discarded and retried with a growing back-off; a
 * target that goes down mid-batch has its batch discarded; an empty read
 * is acknowledged (it may have skipped expired or damaged records). */
#include "test_util.h"

#include "hint_replay.h"

typedef struct {
    size_t reads, sends, acks, discards;
    hint_act_t last;
} counts_t;

/* Drain the actions, counting them per kind. */
static void take(hint_replay_t *r, counts_t *c)
{
    size_t n;
    const hint_act_t *a = hint_replay_actions(r, &n);
    for (size_t i = 0; i < n; i++) {
        switch (a[i].kind) {
        case HINT_ACT_READ: c->reads++; break;
        case HINT_ACT_SEND: c->sends++; break;
        case HINT_ACT_ACK: c->acks++; break;
        case HINT_ACT_DISCARD: c->discards++; break;
        }
        c->last = a[i];
    }
    hint_replay_actions_clear(r);
    assert_int_equal(hint_replay_validate(r), KV_OK);
}

static hint_replay_t *make(uint64_t rate, uint64_t batch)
{
    hint_replay_options_t o;
    hint_replay_options_init(&o);
    o.bytes_per_sec = rate;
    o.batch_bytes = batch;
    hint_replay_t *r = NULL;
    assert_int_equal(hint_replay_create(&o, &r), KV_OK);
    return r;
}

static void test_hint_replay_reads_only_when_up_and_pending(void **state)
{
    (void)state;
    hint_replay_t *r = make(1 << 20, 64 << 10);
    counts_t c = {0};
    hint_replay_set(r, 0, 3, false, true); /* down */
    take(r, &c);
    assert_int_equal(c.reads, 0);
    hint_replay_set(r, 10, 3, true, false); /* up, nothing pending */
    take(r, &c);
    assert_int_equal(c.reads, 0);
    uint64_t d;
    assert_false(hint_replay_next_deadline(r, &d));
    hint_replay_set(r, 20, 3, true, true);
    take(r, &c);
    assert_int_equal(c.reads, 1);
    assert_int_equal(c.last.target, 3);
    assert_int_equal(c.last.max_bytes, 64 << 10);
    assert_true(hint_replay_busy(r, 3));
    /* a second set while reading asks for nothing more */
    hint_replay_set(r, 21, 3, true, true);
    take(r, &c);
    assert_int_equal(c.reads, 1);
    /* the batch: send it; the ack consumes it and reads on while more */
    hint_replay_on_read(r, 30, 3, true, 10, 1000, true);
    take(r, &c);
    assert_int_equal(c.sends, 1);
    hint_replay_on_sent(r, 40, 3, true);
    take(r, &c);
    assert_int_equal(c.acks, 1);
    assert_int_equal(c.reads, 2);
    /* the last batch: nothing more afterwards */
    hint_replay_on_read(r, 50, 3, true, 1, 10, false);
    hint_replay_on_sent(r, 60, 3, true);
    take(r, &c);
    assert_int_equal(c.acks, 2);
    assert_int_equal(c.reads, 2);
    assert_false(hint_replay_busy(r, 3));
    hint_replay_stats_t st;
    hint_replay_get_stats(r, &st);
    assert_int_equal(st.batches_acked, 2);
    assert_int_equal(st.records_sent, 11);
    assert_int_equal(st.bytes_sent, 1010);
    hint_replay_destroy(r);
}

/* 10 MiB at 1 MiB/s in 64 KiB batches takes about ten seconds of simulated
 * time however fast the target answers. */
static void test_hint_replay_throttle_holds_the_rate(void **state)
{
    (void)state;
    const uint64_t rate = 1 << 20, batch = 64 << 10, total = 10ull << 20;
    hint_replay_t *r = make(rate, batch);
    counts_t c = {0};
    uint64_t now = 1000, sent = 0;
    hint_replay_set(r, now, 0, true, true);
    take(r, &c);
    while (sent < total) {
        if (c.last.kind == HINT_ACT_READ) {
            size_t before = c.sends;
            uint64_t b = KV_MIN(batch, total - sent);
            hint_replay_on_read(r, now, 0, true, 1, b, sent + b < total);
            take(r, &c);
            assert_int_equal(c.sends, before + 1);
            now += 1; /* a fast target */
            hint_replay_on_sent(r, now, 0, true);
            sent += b;
            take(r, &c);
            continue;
        }
        /* waiting for the bucket: jump to the deadline */
        uint64_t d;
        assert_true(hint_replay_next_deadline(r, &d));
        assert_true(d > now);
        now = d;
        hint_replay_tick(r, now);
        take(r, &c);
    }
    uint64_t elapsed = now - 1000;
    /* one batch of burst, then the rate: (10 MiB - 64 KiB) / 1 MiB/s */
    assert_in_range(elapsed, 9800, 10100);
    hint_replay_stats_t st;
    hint_replay_get_stats(r, &st);
    assert_true(st.throttled_ms > 9000);
    hint_replay_destroy(r);
}

static void test_hint_replay_failures_back_off_and_retry(void **state)
{
    (void)state;
    hint_replay_t *r = make(1 << 20, 64 << 10);
    counts_t c = {0};
    hint_replay_set(r, 0, 1, true, true);
    take(r, &c);
    hint_replay_on_read(r, 0, 1, true, 5, 500, false);
    take(r, &c);
    assert_int_equal(c.sends, 1);
    /* the target refuses: discard; retry after 1 s, then 2 s, 4 s ... */
    uint64_t now = 0, expect = 1000;
    for (int i = 0; i < 7; i++) {
        hint_replay_on_sent(r, now, 1, false);
        take(r, &c);
        assert_int_equal(c.discards, (size_t)i + 1);
        uint64_t d;
        assert_true(hint_replay_next_deadline(r, &d));
        assert_int_equal(d - now, expect);
        hint_replay_tick(r, d - 1);
        take(r, &c);
        assert_int_equal(c.reads, (size_t)i + 1); /* not yet */
        now = d;
        hint_replay_tick(r, now);
        take(r, &c);
        assert_int_equal(c.reads, (size_t)i + 2);
        hint_replay_on_read(r, now, 1, true, 5, 500, false);
        take(r, &c);
        expect = KV_MIN(expect * 2, 30000);
    }
    /* an unanswered batch fails at the ack timeout */
    uint64_t d;
    assert_true(hint_replay_next_deadline(r, &d));
    assert_int_equal(d, now + 10000);
    hint_replay_tick(r, d);
    take(r, &c);
    assert_int_equal(c.discards, 8);
    /* a late answer for the discarded batch changes nothing */
    hint_replay_on_sent(r, d + 1, 1, true);
    take(r, &c);
    assert_int_equal(c.acks, 0);
    /* coming back up resets the back-off: read at once */
    hint_replay_set(r, d + 2, 1, false, true);
    hint_replay_set(r, d + 3, 1, true, true);
    take(r, &c);
    assert_int_equal(c.last.kind, HINT_ACT_READ);
    hint_replay_get_stats(r, &(hint_replay_stats_t){0});
    hint_replay_destroy(r);
}

static void test_hint_replay_down_mid_batch_and_empty_reads(void **state)
{
    (void)state;
    hint_replay_t *r = make(1 << 20, 64 << 10);
    counts_t c = {0};
    hint_replay_set(r, 0, 2, true, true);
    take(r, &c);
    hint_replay_set(r, 1, 2, false, true); /* down while the read runs */
    hint_replay_on_read(r, 2, 2, true, 4, 400, true);
    take(r, &c);
    assert_int_equal(c.sends, 0);
    assert_int_equal(c.discards, 1);
    assert_false(hint_replay_busy(r, 2));
    /* up again: an empty read (all expired) is acked and ends the replay */
    hint_replay_set(r, 3, 2, true, true);
    take(r, &c);
    assert_int_equal(c.reads, 2);
    hint_replay_on_read(r, 4, 2, true, 0, 0, false);
    take(r, &c);
    assert_int_equal(c.acks, 1);
    assert_false(hint_replay_busy(r, 2));
    uint64_t d;
    assert_false(hint_replay_next_deadline(r, &d));
    /* a read error retries later */
    hint_replay_set(r, 5, 2, true, true);
    take(r, &c);
    hint_replay_on_read(r, 6, 2, false, 0, 0, true);
    take(r, &c);
    assert_int_equal(c.discards, 2);
    assert_true(hint_replay_next_deadline(r, &d));
    assert_int_equal(d, 1006);
    /* bad options */
    hint_replay_options_t o;
    hint_replay_options_init(&o);
    o.bytes_per_sec = 10;
    hint_replay_t *bad = NULL;
    assert_int_equal(hint_replay_create(&o, &bad), KV_INVALID);
    hint_replay_destroy(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        kv_unit_test(test_hint_replay_reads_only_when_up_and_pending),
        kv_unit_test(test_hint_replay_throttle_holds_the_rate),
        kv_unit_test(test_hint_replay_failures_back_off_and_retry),
        kv_unit_test(test_hint_replay_down_mid_batch_and_empty_reads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
