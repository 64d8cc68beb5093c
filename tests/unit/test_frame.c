/* test_frame.c -- the wire frame codec: any split of the byte stream,
 * concatenated frames, and every kind of malformed input. */
#include "test_util.h"

#include "coding.h"
#include "frame.h"

/* Encode [type, id, "key", 42, nil] into buf. */
static void encode_sample(kv_buf_t *buf, uint32_t type, uint64_t id,
                          const char *key)
{
    kv_frame_writer_t w;
    kv_frame_begin(&w, buf, type, id, 3);
    kv_pack_bytes(&w.pk, kv_slice_str(key));
    msgpack_pack_uint64(&w.pk, 42);
    msgpack_pack_nil(&w.pk);
    assert_int_equal(kv_frame_end(&w, 0), KV_OK);
}

static void check_sample(const kv_frame_t *f, uint32_t type, uint64_t id,
                         const char *key)
{
    assert_int_equal(f->type, type);
    assert_int_equal(f->request_id, id);
    assert_int_equal(f->nargs, 3);
    kv_slice_t k;
    assert_int_equal(kv_arg_bytes(f, 0, &k), KV_OK);
    assert_true(kv_slice_eq(k, kv_slice_str(key)));
    uint64_t v;
    assert_int_equal(kv_arg_u64(f, 1, &v), KV_OK);
    assert_int_equal(v, 42);
    bool present = true;
    assert_int_equal(kv_arg_opt_bytes(f, 2, &k, &present), KV_OK);
    assert_false(present);
}

static void test_frame_roundtrip_one_call(void **state)
{
    (void)state;
    kv_buf_t buf = {0};
    encode_sample(&buf, 7, 1234567890123ULL, "hello");
    kv_frame_decoder_t *d = kv_frame_decoder_create(0);
    kv_frame_t f;
    kv_frame_init(&f);
    assert_int_equal(kv_frame_decoder_next(d, &f), KV_AGAIN);
    assert_int_equal(kv_frame_decoder_feed(d, buf.data, buf.len), KV_OK);
    assert_int_equal(kv_frame_decoder_next(d, &f), KV_OK);
    check_sample(&f, 7, 1234567890123ULL, "hello");
    assert_int_equal(f.wire_len, buf.len);
    assert_int_equal(kv_frame_decoder_next(d, &f), KV_AGAIN);
    assert_int_equal(kv_frame_decoder_buffered(d), 0);
    kv_frame_release(&f);
    kv_frame_decoder_destroy(d);
    kv_buf_deinit(&buf);
}

/* Many frames back to back, fed in every chunk size from 1 byte up: each
 * frame comes out whole and in order, and nothing is left over. */
static void test_frame_decodes_any_split_of_concatenated_frames(void **state)
{
    (void)state;
    kv_buf_t buf = {0};
    char key[32];
    const int nframes = 20;
    for (int i = 0; i < nframes; i++) {
        snprintf(key, sizeof key, "key-%d", i * 37);
        encode_sample(&buf, (uint32_t)i + 1, (uint64_t)i * 1000, key);
    }
    for (size_t chunk = 1; chunk <= buf.len; chunk = chunk < 16 ? chunk + 1 : chunk * 2) {
        kv_frame_decoder_t *d = kv_frame_decoder_create(0);
        kv_frame_t f;
        kv_frame_init(&f);
        int got = 0;
        for (size_t off = 0; off < buf.len; off += chunk) {
            size_t n = KV_MIN(chunk, buf.len - off);
            assert_int_equal(kv_frame_decoder_feed(d, buf.data + off, n), KV_OK);
            kv_status_t rc;
            while ((rc = kv_frame_decoder_next(d, &f)) == KV_OK) {
                snprintf(key, sizeof key, "key-%d", got * 37);
                check_sample(&f, (uint32_t)got + 1, (uint64_t)got * 1000, key);
                got++;
            }
            assert_int_equal(rc, KV_AGAIN);
        }
        assert_int_equal(got, nframes);
        assert_int_equal(kv_frame_decoder_buffered(d), 0);
        kv_frame_release(&f);
        kv_frame_decoder_destroy(d);
    }
    kv_buf_deinit(&buf);
}

/* A frame's slices stay valid while more bytes arrive behind it. */
static void test_frame_args_survive_later_feeds(void **state)
{
    (void)state;
    kv_buf_t buf = {0};
    encode_sample(&buf, 1, 1, "first-frame-key");
    encode_sample(&buf, 2, 2, "second");
    kv_frame_decoder_t *d = kv_frame_decoder_create(0);
    kv_frame_t f;
    kv_frame_init(&f);
    size_t first = buf.len / 2 + 10;
    kv_frame_decoder_feed(d, buf.data, first);
    assert_int_equal(kv_frame_decoder_next(d, &f), KV_OK);
    /* push enough bytes through to force the decoder to move its buffer */
    for (size_t i = first; i < buf.len; i++) kv_frame_decoder_feed(d, buf.data + i, 1);
    check_sample(&f, 1, 1, "first-frame-key");
    kv_frame_t g;
    kv_frame_init(&g);
    assert_int_equal(kv_frame_decoder_next(d, &g), KV_OK);
    check_sample(&g, 2, 2, "second");
    kv_frame_release(&f);
    kv_frame_release(&g);
    kv_frame_decoder_destroy(d);
    kv_buf_deinit(&buf);
}

static kv_frame_decoder_t *feed_raw(const uint8_t *p, size_t n, uint32_t max,
                                    kv_status_t *feed_rc)
{
    kv_frame_decoder_t *d = kv_frame_decoder_create(max);
    *feed_rc = kv_frame_decoder_feed(d, p, n);
    return d;
}

static void expect_proto(const uint8_t *p, size_t n, uint32_t max)
{
    kv_status_t rc;
    kv_frame_decoder_t *d = feed_raw(p, n, max, &rc);
    kv_frame_t f;
    kv_frame_init(&f);
    if (rc == KV_OK) rc = kv_frame_decoder_next(d, &f);
    assert_int_equal(rc, KV_PROTO);
    assert_non_null(kv_frame_decoder_error(d));
    /* sticky: the stream stays failed, nothing more is buffered */
    uint8_t more[8] = {0};
    assert_int_equal(kv_frame_decoder_feed(d, more, sizeof more), KV_PROTO);
    assert_int_equal(kv_frame_decoder_next(d, &f), KV_PROTO);
    assert_int_equal(kv_frame_decoder_buffered(d), 0);
    kv_frame_release(&f);
    kv_frame_decoder_destroy(d);
}

/* A length above the limit is refused from the header alone. */
static void test_frame_refuses_length_above_limit_before_body(void **state)
{
    (void)state;
    uint8_t hdr[4];
    kv_put_be32(hdr, 1025);
    kv_status_t rc;
    kv_frame_decoder_t *d = feed_raw(hdr, 4, 1024, &rc);
    assert_int_equal(rc, KV_PROTO);
    assert_string_equal(kv_frame_decoder_error(d), "frame length above the limit");
    kv_frame_decoder_destroy(d);

    /* header split over two feeds: refused when the 4th byte arrives */
    d = kv_frame_decoder_create(1024);
    kv_put_be32(hdr, 0xffffffffu);
    assert_int_equal(kv_frame_decoder_feed(d, hdr, 3), KV_OK);
    assert_int_equal(kv_frame_decoder_feed(d, hdr + 3, 1), KV_PROTO);
    kv_frame_decoder_destroy(d);

    /* exactly at the limit is fine (body incomplete -> AGAIN) */
    d = kv_frame_decoder_create(1024);
    kv_put_be32(hdr, 1024);
    assert_int_equal(kv_frame_decoder_feed(d, hdr, 4), KV_OK);
    kv_frame_t f;
    kv_frame_init(&f);
    assert_int_equal(kv_frame_decoder_next(d, &f), KV_AGAIN);
    kv_frame_decoder_destroy(d);
}

static void test_frame_truncated_body_waits_then_stays_pending(void **state)
{
    (void)state;
    kv_buf_t buf = {0};
    encode_sample(&buf, 3, 9, "truncated");
    kv_frame_decoder_t *d = kv_frame_decoder_create(0);
    kv_frame_t f;
    kv_frame_init(&f);
    assert_int_equal(kv_frame_decoder_feed(d, buf.data, buf.len - 1), KV_OK);
    assert_int_equal(kv_frame_decoder_next(d, &f), KV_AGAIN);
    assert_int_equal(kv_frame_decoder_buffered(d), buf.len - 1);
    assert_null(kv_frame_decoder_error(d));
    /* the last byte completes it */
    assert_int_equal(kv_frame_decoder_feed(d, buf.data + buf.len - 1, 1), KV_OK);
    assert_int_equal(kv_frame_decoder_next(d, &f), KV_OK);
    check_sample(&f, 3, 9, "truncated");
    kv_frame_release(&f);
    kv_frame_decoder_destroy(d);
    kv_buf_deinit(&buf);
}

static void frame_of(kv_buf_t *b, const uint8_t *body, size_t n)
{
    uint8_t hdr[4];
    kv_put_be32(hdr, (uint32_t)n);
    kv_buf_clear(b);
    kv_buf_append(b, hdr, 4);
    kv_buf_append(b, body, n);
}

static void test_frame_rejects_malformed_bodies(void **state)
{
    (void)state;
    static const struct {
        const char *what;
        uint8_t body[16];
        size_t n;
    } cases[] = {
        {"reserved byte 0xc1", {0xc1}, 1},
        {"array claims more elements than bytes", {0xdd, 0xff, 0xff, 0xff, 0xff, 1, 1}, 7},
        {"map32 claims 2^32 pairs", {0xdf, 0xff, 0xff, 0xff, 0xff}, 5},
        {"str8 longer than body", {0x93, 0x01, 0x01, 0xd9, 0x20, 'a'}, 6},
        {"bin32 longer than body", {0x93, 0x01, 0x01, 0xc6, 0, 0, 1, 0, 'a'}, 9},
        {"trailing bytes after object", {0x92, 0x01, 0x01, 0x00}, 4},
        {"not an array", {0xa3, 'a', 'b', 'c'}, 4},
        {"array of one", {0x91, 0x01}, 2},
        {"type is a string", {0x92, 0xa1, 'x', 0x01}, 4},
        {"request id negative", {0x92, 0x01, 0xff}, 3},
        {"type above 32 bits", {0x92, 0xcf, 0, 0, 0, 1, 0, 0, 0, 0, 0x01}, 11},
        {"extension type", {0x93, 0x01, 0x01, 0xd4, 0x01, 0x00}, 6},
        {"truncated uint64", {0x92, 0x01, 0xcf, 0x00, 0x01}, 5},
    };
    kv_buf_t b = {0};
    for (size_t i = 0; i < KV_ARRAY_LEN(cases); i++) {
        frame_of(&b, cases[i].body, cases[i].n);
        print_message("case: %s\n", cases[i].what);
        expect_proto(b.data, b.len, 0);
    }
    /* an empty body */
    uint8_t zero[4] = {0};
    expect_proto(zero, 4, 0);
    kv_buf_deinit(&b);
}

/* Nesting deeper than the limit is refused without recursion blowing up. */
static void test_frame_rejects_deep_nesting(void **state)
{
    (void)state;
    uint8_t body[4096];
    size_t n = 0;
    body[n++] = 0x92;
    body[n++] = 0x01;
    for (int i = 0; i < 4000; i++) body[n++] = 0x91;
    body[n++] = 0x01;
    kv_buf_t b = {0};
    frame_of(&b, body, n);
    expect_proto(b.data, b.len, 0);

    /* nesting within the limit is accepted */
    n = 0;
    body[n++] = 0x93;
    body[n++] = 0x01;
    body[n++] = 0x01;
    for (int i = 0; i < KV_FRAME_MAX_DEPTH - 1; i++) body[n++] = 0x91;
    body[n++] = 0x05;
    frame_of(&b, body, n);
    kv_frame_decoder_t *d = kv_frame_decoder_create(0);
    kv_frame_t f;
    kv_frame_init(&f);
    assert_int_equal(kv_frame_decoder_feed(d, b.data, b.len), KV_OK);
    assert_int_equal(kv_frame_decoder_next(d, &f), KV_OK);
    const msgpack_object_array *arr;
    assert_int_equal(kv_arg_array(&f, 0, &arr), KV_OK);
    kv_frame_release(&f);
    kv_frame_decoder_destroy(d);
    kv_buf_deinit(&b);
}

/* Good frames before a bad one are all delivered; then the stream fails. */
static void test_frame_good_frames_before_bad_one_are_delivered(void **state)
{
    (void)state;
    kv_buf_t buf = {0};
    encode_sample(&buf, 1, 1, "a");
    encode_sample(&buf, 2, 2, "b");
    uint8_t bad[] = {0, 0, 0, 1, 0xc1};
    kv_buf_append(&buf, bad, sizeof bad);
    kv_frame_decoder_t *d = kv_frame_decoder_create(0);
    kv_frame_t f;
    kv_frame_init(&f);
    assert_int_equal(kv_frame_decoder_feed(d, buf.data, buf.len), KV_OK);
    assert_int_equal(kv_frame_decoder_next(d, &f), KV_OK);
    check_sample(&f, 1, 1, "a");
    assert_int_equal(kv_frame_decoder_next(d, &f), KV_OK);
    check_sample(&f, 2, 2, "b");
    assert_int_equal(kv_frame_decoder_next(d, &f), KV_PROTO);
    kv_frame_release(&f);
    kv_frame_decoder_destroy(d);
    kv_buf_deinit(&buf);
}

static void test_frame_typed_args_reject_wrong_types(void **state)
{
    (void)state;
    kv_buf_t buf = {0};
    encode_sample(&buf, 1, 1, "k");
    kv_frame_decoder_t *d = kv_frame_decoder_create(0);
    kv_frame_t f;
    kv_frame_init(&f);
    kv_frame_decoder_feed(d, buf.data, buf.len);
    assert_int_equal(kv_frame_decoder_next(d, &f), KV_OK);
    uint64_t u;
    int64_t i;
    bool b;
    kv_slice_t s;
    const msgpack_object_array *a;
    assert_int_equal(kv_arg_u64(&f, 0, &u), KV_PROTO);   /* bin, not int */
    assert_int_equal(kv_arg_bytes(&f, 1, &s), KV_PROTO); /* int, not bin */
    assert_int_equal(kv_arg_bool(&f, 1, &b), KV_PROTO);
    assert_int_equal(kv_arg_array(&f, 1, &a), KV_PROTO);
    assert_int_equal(kv_arg_u64(&f, 3, &u), KV_PROTO);   /* out of range */
    assert_int_equal(kv_arg_i64(&f, 1, &i), KV_OK);
    assert_int_equal(i, 42);
    kv_frame_release(&f);
    kv_frame_decoder_destroy(d);
    kv_buf_deinit(&buf);
}

static void test_frame_writer_refuses_body_above_limit(void **state)
{
    (void)state;
    kv_buf_t buf = {0};
    encode_sample(&buf, 1, 1, "keep");
    size_t before = buf.len;
    kv_frame_writer_t w;
    kv_frame_begin(&w, &buf, 2, 2, 1);
    char big[200];
    memset(big, 'x', sizeof big);
    kv_pack_bytes(&w.pk, kv_slice(big, sizeof big));
    assert_int_equal(kv_frame_end(&w, 100), KV_INVALID);
    assert_int_equal(buf.len, before); /* the partial frame is gone */
    kv_buf_deinit(&buf);
}

/* Random garbage of random lengths never crashes the decoder and never
 * yields a frame that is not [uint, uint, ...]. */
static void test_frame_random_garbage_is_refused_or_well_formed(void **state)
{
    (void)state;
    kv_rng_t rng;
    kv_rng_seed(&rng, test_seed("frame garbage"));
    uint8_t junk[512];
    for (int iter = 0; iter < 20000; iter++) {
        size_t n = 1 + kv_rng_below(&rng, sizeof junk);
        for (size_t i = 0; i < n; i++) junk[i] = (uint8_t)kv_rng_next(&rng);
        if (iter % 2) kv_put_be32(junk, (uint32_t)(n > 4 ? n - 4 : 1));
        kv_frame_decoder_t *d = kv_frame_decoder_create(4096);
        kv_frame_t f;
        kv_frame_init(&f);
        kv_status_t rc = kv_frame_decoder_feed(d, junk, n);
        while (rc == KV_OK) rc = kv_frame_decoder_next(d, &f);
        assert_true(rc == KV_AGAIN || rc == KV_PROTO);
        kv_frame_release(&f);
        kv_frame_decoder_destroy(d);
    }
}

static void test_msgpack_validate_accepts_every_plain_type(void **state)
{
    (void)state;
    kv_buf_t buf = {0};
    kv_frame_writer_t w;
    kv_frame_begin(&w, &buf, 1, 1, 12);
    msgpack_packer pk = w.pk;
    msgpack_pack_nil(&pk);
    msgpack_pack_true(&pk);
    msgpack_pack_int64(&pk, -5);
    msgpack_pack_int64(&pk, INT64_MIN);
    msgpack_pack_uint64(&pk, UINT64_MAX);
    msgpack_pack_double(&pk, 1.5);
    msgpack_pack_float(&pk, 2.5f);
    kv_pack_str(&pk, "a string");
    char big[70000];
    memset(big, 'b', sizeof big);
    kv_pack_bytes(&pk, kv_slice(big, sizeof big));
    msgpack_pack_map(&pk, 1);
    kv_pack_str(&pk, "k");
    msgpack_pack_array(&pk, 0);
    msgpack_pack_array(&pk, 300);
    for (int i = 0; i < 300; i++) msgpack_pack_int(&pk, i);
    msgpack_pack_map(&pk, 0);
    assert_int_equal(kv_frame_end(&w, 0), KV_OK);
    assert_int_equal(kv_msgpack_validate(buf.data + 4, buf.len - 4), KV_OK);
    kv_frame_decoder_t *d = kv_frame_decoder_create(0);
    kv_frame_t f;
    kv_frame_init(&f);
    kv_frame_decoder_feed(d, buf.data, buf.len);
    assert_int_equal(kv_frame_decoder_next(d, &f), KV_OK);
    assert_int_equal(f.nargs, 12);
    kv_slice_t s;
    assert_int_equal(kv_arg_bytes(&f, 8, &s), KV_OK);
    assert_int_equal(s.len, sizeof big);
    kv_frame_release(&f);
    kv_frame_decoder_destroy(d);
    kv_buf_deinit(&buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        kv_unit_test(test_frame_roundtrip_one_call),
        kv_unit_test(test_frame_decodes_any_split_of_concatenated_frames),
        kv_unit_test(test_frame_args_survive_later_feeds),
        kv_unit_test(test_frame_refuses_length_above_limit_before_body),
        kv_unit_test(test_frame_truncated_body_waits_then_stays_pending),
        kv_unit_test(test_frame_rejects_malformed_bodies),
        kv_unit_test(test_frame_rejects_deep_nesting),
        kv_unit_test(test_frame_good_frames_before_bad_one_are_delivered),
        kv_unit_test(test_frame_typed_args_reject_wrong_types),
        kv_unit_test(test_frame_writer_refuses_body_above_limit),
        kv_unit_test(test_frame_random_garbage_is_refused_or_well_formed),
        kv_unit_test(test_msgpack_validate_accepts_every_plain_type),
    };
    return cmocka_run_group_tests_name("frame", tests, NULL, NULL);
}
