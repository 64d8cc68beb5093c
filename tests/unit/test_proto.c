/* test_proto.c -- Cairn's client messages: every message round-trips through
 * the frame codec; missing, mistyped or out-of-range arguments are KV_PROTO;
 * arguments appended by a later version are ignored; LOCAL_REPLY's cell
 * shapes (value, tombstone, nothing) are enforced both ways. */
#include "test_util.h"

#include <math.h>

#include "frame.h"
#include "proto.h"

/* Decode the single frame in buf into *f (the caller releases f). */
static void decode_one(const kv_buf_t *buf, kv_frame_t *f)
{
    kv_frame_decoder_t *d = kv_frame_decoder_create(0);
    kv_frame_init(f);
    assert_int_equal(kv_frame_decoder_feed(d, buf->data, buf->len), KV_OK);
    assert_int_equal(kv_frame_decoder_next(d, f), KV_OK);
    /* The frame owns its body: the decoder may go. */
    kv_frame_t rest;
    kv_frame_init(&rest);
    assert_int_equal(kv_frame_decoder_next(d, &rest), KV_AGAIN);
    kv_frame_decoder_destroy(d);
}

/* Build a raw frame [type, id, args...] where the args are packed by fn. */
typedef void (*pack_fn)(msgpack_packer *pk);
static void raw_frame(kv_buf_t *buf, uint32_t type, uint64_t id, uint32_t nargs,
                      pack_fn fn)
{
    kv_frame_writer_t w;
    kv_frame_begin(&w, buf, type, id, nargs);
    if (fn) fn(&w.pk);
    assert_int_equal(kv_frame_end(&w, 0), KV_OK);
}

static void test_proto_hello_round_trips(void **state)
{
    (void)state;
    kv_buf_t b = {0};
    proto_hello_t h = {.version = CAIRN_PROTO_VERSION, .cluster = kv_slice_str("prod"),
                       .client_name = kv_slice_str("cli")};
    assert_int_equal(proto_encode_hello(&b, 5, &h, 0), KV_OK);
    kv_frame_t f;
    decode_one(&b, &f);
    assert_int_equal(f.type, MSG_HELLO);
    assert_int_equal(f.request_id, 5);
    proto_hello_t out;
    assert_int_equal(proto_decode_hello(&f, &out), KV_OK);
    assert_int_equal(out.version, CAIRN_PROTO_VERSION);
    assert_true(kv_slice_eq(out.cluster, kv_slice_str("prod")));
    assert_true(kv_slice_eq(out.client_name, kv_slice_str("cli")));
    /* not a HELLO_OK, and no other decoder takes it */
    proto_hello_ok_t ok;
    assert_int_equal(proto_decode_hello_ok(&f, &ok), KV_PROTO);
    proto_reply_t r;
    assert_int_equal(proto_decode_reply(&f, &r), KV_PROTO);
    proto_request_t rq;
    assert_int_equal(proto_decode_request(&f, &rq), KV_PROTO);
    kv_frame_release(&f);
    kv_buf_deinit(&b);
}

static void test_proto_hello_ok_round_trips(void **state)
{
    (void)state;
    kv_buf_t b = {0};
    proto_hello_ok_t h = {.version = 1, .cluster = kv_slice_str("prod"),
                          .node_name = kv_slice_str("n1"), .node_id = kv_slice_str("6f1c"),
                          .hlc = UINT64_MAX - 1};
    assert_int_equal(proto_encode_hello_ok(&b, 0, &h, 0), KV_OK);
    kv_frame_t f;
    decode_one(&b, &f);
    proto_hello_ok_t out;
    assert_int_equal(proto_decode_hello_ok(&f, &out), KV_OK);
    assert_int_equal(out.version, 1);
    assert_true(kv_slice_eq(out.cluster, kv_slice_str("prod")));
    assert_true(kv_slice_eq(out.node_name, kv_slice_str("n1")));
    assert_true(kv_slice_eq(out.node_id, kv_slice_str("6f1c")));
    assert_true(out.hlc == UINT64_MAX - 1);
    proto_hello_t hh;
    assert_int_equal(proto_decode_hello(&f, &hh), KV_PROTO);
    kv_frame_release(&f);
    kv_buf_deinit(&b);
}

static void test_proto_requests_round_trip(void **state)
{
    (void)state;
    const uint8_t key[] = {0, 'k', 0, 0xff};
    const uint8_t val[] = {0, 1, 2, 0};
    static const proto_msg_t types[] = {MSG_GET, MSG_PUT, MSG_DELETE};
    static const proto_cl_t cls[] = {CL_ONE, CL_QUORUM, CL_ALL};
    for (size_t t = 0; t < KV_ARRAY_LEN(types); t++) {
        kv_buf_t b = {0};
        proto_request_t r = {
            .type = types[t], .id = 1000 + t, .key = kv_slice(key, sizeof key),
            .value = kv_slice(val, sizeof val), .cl = cls[t], .timeout_ms = UINT32_MAX,
            .causality = 123456789012345ULL, .ttl_ms = 60000,
        };
        assert_int_equal(proto_encode_request(&b, &r, 0), KV_OK);
        kv_frame_t f;
        decode_one(&b, &f);
        assert_int_equal(f.type, types[t]);
        proto_request_t out;
        assert_int_equal(proto_decode_request(&f, &out), KV_OK);
        assert_int_equal(out.type, types[t]);
        assert_int_equal(out.id, 1000 + t);
        assert_true(kv_slice_eq(out.key, kv_slice(key, sizeof key)));
        assert_int_equal(out.cl, cls[t]);
        assert_int_equal(out.timeout_ms, UINT32_MAX);
        assert_true(out.causality == 123456789012345ULL);
        if (types[t] == MSG_PUT) {
            assert_true(kv_slice_eq(out.value, kv_slice(val, sizeof val)));
            assert_int_equal(out.ttl_ms, 60000);
        } else {
            assert_int_equal(out.value.len, 0);
            assert_int_equal(out.ttl_ms, 0);
        }
        kv_frame_release(&f);
        kv_buf_deinit(&b);
    }
    /* An empty key and value are legal bytes. */
    kv_buf_t b = {0};
    proto_request_t r = {.type = MSG_PUT, .id = 1, .cl = CL_ONE};
    assert_int_equal(proto_encode_request(&b, &r, 0), KV_OK);
    kv_frame_t f;
    decode_one(&b, &f);
    proto_request_t out;
    assert_int_equal(proto_decode_request(&f, &out), KV_OK);
    assert_int_equal(out.key.len, 0);
    assert_int_equal(out.value.len, 0);
    kv_frame_release(&f);
    /* Only GET/PUT/DELETE are requests. */
    kv_buf_clear(&b);
    r.type = MSG_INFO;
    assert_int_equal(proto_encode_request(&b, &r, 0), KV_INVALID);
    assert_int_equal(b.len, 0);
    kv_buf_deinit(&b);
}

static void test_proto_reply_round_trips_with_and_without_value(void **state)
{
    (void)state;
    for (int with = 0; with < 2; with++) {
        kv_buf_t b = {0};
        proto_reply_t r = {.id = 77, .status = with ? KV_OK : KV_UNAVAILABLE,
                           .hlc = 99, .cell_ts = with ? 98 : 0,
                           .has_value = with, .value = kv_slice("\0v", 2),
                           .message = with ? kv_slice(NULL, 0) : kv_slice_str("2 of 3 down")};
        assert_int_equal(proto_encode_reply(&b, &r, 0), KV_OK);
        kv_frame_t f;
        decode_one(&b, &f);
        proto_reply_t out;
        assert_int_equal(proto_decode_reply(&f, &out), KV_OK);
        assert_int_equal(out.id, 77);
        assert_int_equal(out.status, r.status);
        assert_int_equal(out.hlc, 99);
        assert_int_equal(out.cell_ts, r.cell_ts);
        assert_int_equal(out.has_value, with);
        if (with) {
            assert_true(kv_slice_eq(out.value, kv_slice("\0v", 2)));
            assert_int_equal(out.message.len, 0);
        } else {
            assert_true(kv_slice_eq(out.message, kv_slice_str("2 of 3 down")));
        }
        kv_frame_release(&f);
        kv_buf_deinit(&b);
    }
}

typedef struct info_acc {
    int n;
    char text[256];
} info_acc_t;

static void collect_info(void *arg, kv_slice_t name, bool is_str, kv_slice_t str,
                         uint64_t num)
{
    info_acc_t *a = arg;
    size_t len = strlen(a->text);
    if (is_str)
        snprintf(a->text + len, sizeof a->text - len, "%.*s=%.*s;", (int)name.len,
                 (const char *)name.data, (int)str.len, (const char *)str.data);
    else
        snprintf(a->text + len, sizeof a->text - len, "%.*s=#%llu;", (int)name.len,
                 (const char *)name.data, (unsigned long long)num);
    a->n++;
}

static void test_proto_info_and_info_reply_round_trip(void **state)
{
    (void)state;
    kv_buf_t b = {0};
    assert_int_equal(proto_encode_info(&b, 9, 0), KV_OK);
    kv_frame_t f;
    decode_one(&b, &f);
    assert_int_equal(f.type, MSG_INFO);
    assert_int_equal(f.request_id, 9);
    assert_int_equal(f.nargs, 0);
    kv_frame_release(&f);

    kv_buf_clear(&b);
    proto_info_item_t items[] = {{"node", "n1", 0}, {"keys", NULL, 42}, {"up", NULL, 0}};
    assert_int_equal(proto_encode_info_reply(&b, 9, 555, items, 3, 0), KV_OK);
    decode_one(&b, &f);
    uint64_t hlc = 0;
    info_acc_t acc = {0, ""};
    assert_int_equal(proto_decode_info_reply(&f, &hlc, collect_info, &acc), KV_OK);
    assert_int_equal(hlc, 555);
    assert_int_equal(acc.n, 3);
    assert_string_equal(acc.text, "node=n1;keys=#42;up=#0;");
    kv_frame_release(&f);

    /* An empty map is fine too. */
    kv_buf_clear(&b);
    assert_int_equal(proto_encode_info_reply(&b, 1, 0, NULL, 0, 0), KV_OK);
    decode_one(&b, &f);
    acc.n = 0;
    assert_int_equal(proto_decode_info_reply(&f, &hlc, collect_info, &acc), KV_OK);
    assert_int_equal(acc.n, 0);
    kv_frame_release(&f);
    kv_buf_deinit(&b);
}

/* ---- malformed arguments ----------------------------------------------- */

static void pk_get_cl0(msgpack_packer *pk)
{
    kv_pack_bytes(pk, kv_slice_str("k"));
    msgpack_pack_uint8(pk, 0); /* cl 0 */
    msgpack_pack_uint32(pk, 10);
    msgpack_pack_uint64(pk, 0);
}
static void pk_get_cl4(msgpack_packer *pk)
{
    kv_pack_bytes(pk, kv_slice_str("k"));
    msgpack_pack_uint8(pk, 4); /* cl 4 */
    msgpack_pack_uint32(pk, 10);
    msgpack_pack_uint64(pk, 0);
}
static void pk_get_neg_timeout(msgpack_packer *pk)
{
    kv_pack_bytes(pk, kv_slice_str("k"));
    msgpack_pack_uint8(pk, 1);
    msgpack_pack_int32(pk, -5);
    msgpack_pack_uint64(pk, 0);
}
static void pk_get_big_timeout(msgpack_packer *pk)
{
    kv_pack_bytes(pk, kv_slice_str("k"));
    msgpack_pack_uint8(pk, 1);
    msgpack_pack_uint64(pk, (uint64_t)UINT32_MAX + 1);
    msgpack_pack_uint64(pk, 0);
}
static void pk_get_int_key(msgpack_packer *pk)
{
    msgpack_pack_uint8(pk, 7); /* key must be bytes */
    msgpack_pack_uint8(pk, 1);
    msgpack_pack_uint32(pk, 10);
    msgpack_pack_uint64(pk, 0);
}
static void pk_get_truncated(msgpack_packer *pk)
{
    kv_pack_bytes(pk, kv_slice_str("k"));
    msgpack_pack_uint8(pk, 1);
}
static void pk_put_no_ttl(msgpack_packer *pk)
{
    kv_pack_bytes(pk, kv_slice_str("k"));
    kv_pack_bytes(pk, kv_slice_str("v"));
    msgpack_pack_uint8(pk, 1);
    msgpack_pack_uint32(pk, 10);
    msgpack_pack_uint64(pk, 0);
}
static void pk_put_nil_value(msgpack_packer *pk)
{
    kv_pack_bytes(pk, kv_slice_str("k"));
    msgpack_pack_nil(pk);
    msgpack_pack_uint8(pk, 1);
    msgpack_pack_uint32(pk, 10);
    msgpack_pack_uint64(pk, 0);
    msgpack_pack_uint64(pk, 0);
}

static void test_proto_bad_requests_are_proto_errors(void **state)
{
    (void)state;
    struct {
        uint32_t type, nargs;
        pack_fn fn;
    } cases[] = {
        {MSG_GET, 4, pk_get_cl0},          {MSG_GET, 4, pk_get_cl4},
        {MSG_DELETE, 4, pk_get_neg_timeout}, {MSG_GET, 4, pk_get_big_timeout},
        {MSG_GET, 4, pk_get_int_key},      {MSG_GET, 2, pk_get_truncated},
        {MSG_PUT, 5, pk_put_no_ttl},       {MSG_PUT, 6, pk_put_nil_value},
        {MSG_GET, 0, NULL},                {MSG_INFO, 0, NULL},
        {999, 4, pk_get_cl0},
    };
    for (size_t i = 0; i < KV_ARRAY_LEN(cases); i++) {
        kv_buf_t b = {0};
        raw_frame(&b, cases[i].type, 1, cases[i].nargs, cases[i].fn);
        kv_frame_t f;
        decode_one(&b, &f);
        proto_request_t out;
        memset(&out, 0x5a, sizeof out);
        if (proto_decode_request(&f, &out) != KV_PROTO) fail_msg("case %zu decoded", i);
        kv_frame_release(&f);
        kv_buf_deinit(&b);
    }
}

static void pk_reply_status(msgpack_packer *pk, uint64_t status)
{
    msgpack_pack_uint64(pk, status);
    msgpack_pack_uint64(pk, 1);
    msgpack_pack_uint64(pk, 0);
    msgpack_pack_nil(pk);
    msgpack_pack_nil(pk);
}
static void pk_reply_status_count(msgpack_packer *pk) { pk_reply_status(pk, KV_STATUS_COUNT_); }
static void pk_reply_status_huge(msgpack_packer *pk) { pk_reply_status(pk, 1ULL << 40); }
static void pk_reply_no_message(msgpack_packer *pk)
{
    msgpack_pack_uint64(pk, 0);
    msgpack_pack_uint64(pk, 1);
    msgpack_pack_uint64(pk, 0);
    msgpack_pack_nil(pk);
}
static void pk_reply_int_value(msgpack_packer *pk)
{
    msgpack_pack_uint64(pk, 0);
    msgpack_pack_uint64(pk, 1);
    msgpack_pack_uint64(pk, 0);
    msgpack_pack_uint64(pk, 12);
    msgpack_pack_nil(pk);
}
static void pk_reply_neg_hlc(msgpack_packer *pk)
{
    msgpack_pack_uint64(pk, 0);
    msgpack_pack_int64(pk, -1);
    msgpack_pack_uint64(pk, 0);
    msgpack_pack_nil(pk);
    msgpack_pack_nil(pk);
}

static void test_proto_bad_replies_are_proto_errors(void **state)
{
    (void)state;
    struct {
        uint32_t nargs;
        pack_fn fn;
    } cases[] = {
        {5, pk_reply_status_count}, {5, pk_reply_status_huge}, {4, pk_reply_no_message},
        {5, pk_reply_int_value},    {5, pk_reply_neg_hlc},     {0, NULL},
    };
    for (size_t i = 0; i < KV_ARRAY_LEN(cases); i++) {
        kv_buf_t b = {0};
        raw_frame(&b, MSG_REPLY, 1, cases[i].nargs, cases[i].fn);
        kv_frame_t f;
        decode_one(&b, &f);
        proto_reply_t out;
        if (proto_decode_reply(&f, &out) != KV_PROTO) fail_msg("case %zu decoded", i);
        kv_frame_release(&f);
        kv_buf_deinit(&b);
    }
    /* The last valid status still decodes. */
    kv_buf_t b = {0};
    proto_reply_t r = {.id = 1, .status = KV_STATUS_COUNT_ - 1};
    assert_int_equal(proto_encode_reply(&b, &r, 0), KV_OK);
    kv_frame_t f;
    decode_one(&b, &f);
    proto_reply_t out;
    assert_int_equal(proto_decode_reply(&f, &out), KV_OK);
    assert_int_equal(out.status, KV_STATUS_COUNT_ - 1);
    kv_frame_release(&f);
    kv_buf_deinit(&b);
}

static void pk_hello_bad_version(msgpack_packer *pk)
{
    msgpack_pack_uint64(pk, (uint64_t)UINT32_MAX + 1);
    kv_pack_str(pk, "c");
    kv_pack_str(pk, "n");
}
static void pk_hello_int_cluster(msgpack_packer *pk)
{
    msgpack_pack_uint32(pk, 1);
    msgpack_pack_uint32(pk, 1);
    kv_pack_str(pk, "n");
}
static void pk_hello_ok_short(msgpack_packer *pk)
{
    msgpack_pack_uint32(pk, 1);
    kv_pack_str(pk, "c");
    kv_pack_str(pk, "n");
    kv_pack_str(pk, "id");
}
static void pk_info_not_map(msgpack_packer *pk)
{
    msgpack_pack_uint64(pk, 1);
    msgpack_pack_array(pk, 0);
}
static void pk_info_int_name(msgpack_packer *pk)
{
    msgpack_pack_uint64(pk, 1);
    msgpack_pack_map(pk, 1);
    msgpack_pack_uint8(pk, 1);
    kv_pack_str(pk, "v");
}
static void pk_info_bad_value(msgpack_packer *pk)
{
    msgpack_pack_uint64(pk, 1);
    msgpack_pack_map(pk, 2);
    kv_pack_str(pk, "good");
    kv_pack_str(pk, "v");
    kv_pack_str(pk, "bad");
    msgpack_pack_int8(pk, -3);
}

static int info_calls;
static void count_info(void *arg, kv_slice_t name, bool is_str, kv_slice_t str, uint64_t num)
{
    (void)arg, (void)name, (void)is_str, (void)str, (void)num;
    info_calls++;
}

static void test_proto_bad_handshakes_and_info_are_proto_errors(void **state)
{
    (void)state;
    kv_buf_t b = {0};
    kv_frame_t f;
    proto_hello_t h;
    proto_hello_ok_t ok;

    raw_frame(&b, MSG_HELLO, 1, 3, pk_hello_bad_version);
    decode_one(&b, &f);
    assert_int_equal(proto_decode_hello(&f, &h), KV_PROTO);
    kv_frame_release(&f);
    kv_buf_clear(&b);

    raw_frame(&b, MSG_HELLO, 1, 3, pk_hello_int_cluster);
    decode_one(&b, &f);
    assert_int_equal(proto_decode_hello(&f, &h), KV_PROTO);
    kv_frame_release(&f);
    kv_buf_clear(&b);

    raw_frame(&b, MSG_HELLO_OK, 1, 4, pk_hello_ok_short);
    decode_one(&b, &f);
    assert_int_equal(proto_decode_hello_ok(&f, &ok), KV_PROTO);
    kv_frame_release(&f);

    pack_fn infos[] = {pk_info_not_map, pk_info_int_name, pk_info_bad_value};
    for (size_t i = 0; i < KV_ARRAY_LEN(infos); i++) {
        kv_buf_clear(&b);
        raw_frame(&b, MSG_INFO_REPLY, 1, 2, infos[i]);
        decode_one(&b, &f);
        uint64_t hlc = 12345;
        info_calls = 0;
        assert_int_equal(proto_decode_info_reply(&f, &hlc, count_info, NULL), KV_PROTO);
        assert_int_equal(info_calls, 0); /* all checked before any callback */
        assert_int_equal(hlc, 12345);    /* untouched on failure */
        kv_frame_release(&f);
    }
    /* the map is missing */
    kv_buf_clear(&b);
    kv_frame_writer_t w;
    kv_frame_begin(&w, &b, MSG_INFO_REPLY, 1, 1);
    msgpack_pack_uint64(&w.pk, 1);
    assert_int_equal(kv_frame_end(&w, 0), KV_OK);
    decode_one(&b, &f);
    uint64_t hlc;
    assert_int_equal(proto_decode_info_reply(&f, &hlc, count_info, NULL), KV_PROTO);
    kv_frame_release(&f);
    kv_buf_deinit(&b);
}

/* ---- forward compatibility --------------------------------------------- */

static void test_proto_extra_arguments_are_ignored(void **state)
{
    (void)state;
    kv_frame_writer_t w;
    kv_frame_t f;
    kv_buf_t b = {0};

    /* PUT with two arguments a later version appended */
    kv_frame_begin(&w, &b, MSG_PUT, 42, 8);
    kv_pack_bytes(&w.pk, kv_slice_str("k"));
    kv_pack_bytes(&w.pk, kv_slice_str("v"));
    msgpack_pack_uint8(&w.pk, CL_ALL);
    msgpack_pack_uint32(&w.pk, 100);
    msgpack_pack_uint64(&w.pk, 7);
    msgpack_pack_uint64(&w.pk, 0);
    kv_pack_str(&w.pk, "future");
    msgpack_pack_map(&w.pk, 0);
    assert_int_equal(kv_frame_end(&w, 0), KV_OK);
    decode_one(&b, &f);
    proto_request_t rq;
    assert_int_equal(proto_decode_request(&f, &rq), KV_OK);
    assert_int_equal(rq.cl, CL_ALL);
    assert_int_equal(rq.causality, 7);
    kv_frame_release(&f);

    /* REPLY with an extra argument */
    kv_buf_clear(&b);
    kv_frame_begin(&w, &b, MSG_REPLY, 42, 6);
    msgpack_pack_uint32(&w.pk, KV_NOTFOUND);
    msgpack_pack_uint64(&w.pk, 3);
    msgpack_pack_uint64(&w.pk, 0);
    msgpack_pack_nil(&w.pk);
    msgpack_pack_nil(&w.pk);
    msgpack_pack_true(&w.pk);
    assert_int_equal(kv_frame_end(&w, 0), KV_OK);
    decode_one(&b, &f);
    proto_reply_t r;
    assert_int_equal(proto_decode_reply(&f, &r), KV_OK);
    assert_int_equal(r.status, KV_NOTFOUND);
    assert_false(r.has_value);
    kv_frame_release(&f);

    /* HELLO and HELLO_OK with extras */
    kv_buf_clear(&b);
    kv_frame_begin(&w, &b, MSG_HELLO, 1, 4);
    msgpack_pack_uint32(&w.pk, 2);
    kv_pack_str(&w.pk, "c");
    kv_pack_str(&w.pk, "n");
    kv_pack_str(&w.pk, "token");
    assert_int_equal(kv_frame_end(&w, 0), KV_OK);
    decode_one(&b, &f);
    proto_hello_t h;
    assert_int_equal(proto_decode_hello(&f, &h), KV_OK);
    assert_int_equal(h.version, 2);
    kv_frame_release(&f);

    kv_buf_clear(&b);
    kv_frame_begin(&w, &b, MSG_HELLO_OK, 1, 6);
    msgpack_pack_uint32(&w.pk, 2);
    kv_pack_str(&w.pk, "c");
    kv_pack_str(&w.pk, "n");
    kv_pack_str(&w.pk, "id");
    msgpack_pack_uint64(&w.pk, 9);
    msgpack_pack_array(&w.pk, 0);
    assert_int_equal(kv_frame_end(&w, 0), KV_OK);
    decode_one(&b, &f);
    proto_hello_ok_t ok;
    assert_int_equal(proto_decode_hello_ok(&f, &ok), KV_OK);
    assert_int_equal(ok.hlc, 9);
    kv_frame_release(&f);

    /* INFO_REPLY with an extra argument */
    kv_buf_clear(&b);
    kv_frame_begin(&w, &b, MSG_INFO_REPLY, 1, 3);
    msgpack_pack_uint64(&w.pk, 4);
    msgpack_pack_map(&w.pk, 1);
    kv_pack_str(&w.pk, "a");
    msgpack_pack_uint64(&w.pk, 1);
    msgpack_pack_nil(&w.pk);
    assert_int_equal(kv_frame_end(&w, 0), KV_OK);
    decode_one(&b, &f);
    uint64_t hlc;
    info_calls = 0;
    assert_int_equal(proto_decode_info_reply(&f, &hlc, count_info, NULL), KV_OK);
    assert_int_equal(info_calls, 1);
    kv_frame_release(&f);
    kv_buf_deinit(&b);
}

static void test_proto_encoders_refuse_oversized_frames(void **state)
{
    (void)state;
    kv_buf_t b = {0};
    kv_buf_append(&b, "xyz", 3); /* an earlier frame's bytes stay */
    uint8_t big[300];
    memset(big, 'a', sizeof big);
    proto_request_t r = {.type = MSG_PUT, .id = 1, .key = kv_slice("k", 1),
                         .value = kv_slice(big, sizeof big), .cl = CL_ONE};
    assert_int_equal(proto_encode_request(&b, &r, 256), KV_INVALID);
    assert_int_equal(b.len, 3);
    proto_reply_t rp = {.id = 1, .has_value = true, .value = kv_slice(big, sizeof big)};
    assert_int_equal(proto_encode_reply(&b, &rp, 256), KV_INVALID);
    assert_int_equal(b.len, 3);
    r.value.len = 100;
    assert_int_equal(proto_encode_request(&b, &r, 256), KV_OK);
    assert_true(b.len > 3);
    kv_buf_deinit(&b);
}

/* ---- RING -------------------------------------------------------------- */

static void test_proto_ring_request_round_trips_with_and_without_key(void **state)
{
    (void)state;
    const uint8_t key[] = {'u', 0, 0xff};
    kv_slice_t keys[] = {kv_slice(key, sizeof key), kv_slice(NULL, 0)};
    for (int i = 0; i < 3; i++) {
        kv_buf_t b = {0};
        /* i == 0: a binary key; 1: an empty key (still a key); 2: none */
        assert_int_equal(proto_encode_ring(&b, 31 + i, i < 2 ? &keys[i] : NULL, 0), KV_OK);
        kv_frame_t f;
        decode_one(&b, &f);
        assert_int_equal(f.type, MSG_RING);
        assert_int_equal(f.request_id, 31 + i);
        kv_slice_t k = kv_slice("junk", 4);
        bool has = i == 2;
        assert_int_equal(proto_decode_ring(&f, &k, &has), KV_OK);
        assert_int_equal(has, i < 2);
        if (i < 2) assert_true(kv_slice_eq(k, keys[i]));
        else assert_int_equal(k.len, 0);
        /* not a request, not an INFO_REPLY */
        proto_request_t rq;
        assert_int_equal(proto_decode_request(&f, &rq), KV_PROTO);
        kv_frame_release(&f);
        kv_buf_deinit(&b);
    }
}

static const uint64_t ring_tokens_a[] = {5, 1ULL << 40, UINT64_MAX};
static const uint64_t ring_tokens_b[] = {0, 77};
static const uint64_t ring_tokens_c[] = {1234567890123ULL};

/* A three-node ring; the second node is down (dead, phi saturated) and has
 * no rack; the third is a suspect that has not joined the ring yet. */
static void ring_sample(proto_ring_node_t nodes[3])
{
    memset(nodes, 0, 3 * sizeof *nodes);
    nodes[0] = (proto_ring_node_t){
        .name = kv_slice_str("n1"), .node_id = kv_slice_str("id-1"),
        .host = kv_slice_str("10.0.0.1"), .rack = kv_slice_str("r1"),
        .client_port = 7070, .admin_port = 65535, .up = true,
        .load_bytes = UINT64_MAX, .ownership_ppm = 1000000,
        .effective_ppm = 32000000, .tokens = ring_tokens_a, .ntokens = 3,
        .status = PROTO_NODE_NORMAL, .liveness = PROTO_LIVE_ALIVE, .phi_milli = 0,
        .generation = 1700000000123ULL, .in_ring = true};
    nodes[1] = (proto_ring_node_t){
        .name = kv_slice_str("n2"), .node_id = kv_slice_str("id-2"),
        .host = kv_slice_str("::1"), .rack = kv_slice(NULL, 0),
        .client_port = 0, .admin_port = 7072, .up = false,
        .load_bytes = 0, .ownership_ppm = 0, .effective_ppm = 0,
        .tokens = ring_tokens_b, .ntokens = 2,
        .status = PROTO_NODE_LEAVING, .liveness = PROTO_LIVE_DEAD,
        .phi_milli = UINT32_MAX, .generation = UINT64_MAX, .in_ring = true};
    nodes[2] = (proto_ring_node_t){
        .name = kv_slice_str("n3"), .node_id = kv_slice_str("id-3"),
        .host = kv_slice_str("h3"), .rack = kv_slice_str("rack-three"),
        .client_port = 1, .admin_port = 2, .up = true,
        .load_bytes = 4096, .ownership_ppm = 333333, .effective_ppm = 999999,
        .tokens = ring_tokens_c, .ntokens = 1,
        .status = PROTO_NODE_JOINING, .liveness = PROTO_LIVE_SUSPECT,
        .phi_milli = 8250, .generation = 0, .in_ring = false};
}

static void assert_ring_equal(const proto_ring_t *got, const proto_ring_t *want)
{
    assert_int_equal(got->replication_factor, want->replication_factor);
    assert_int_equal(got->self, want->self);
    assert_true(got->key_token == want->key_token);
    assert_int_equal(got->nnodes, want->nnodes);
    for (size_t i = 0; i < want->nnodes; i++) {
        const proto_ring_node_t *g = &got->nodes[i], *w = &want->nodes[i];
        assert_true(kv_slice_eq(g->name, w->name));
        assert_true(kv_slice_eq(g->node_id, w->node_id));
        assert_true(kv_slice_eq(g->host, w->host));
        assert_true(kv_slice_eq(g->rack, w->rack));
        assert_int_equal(g->client_port, w->client_port);
        assert_int_equal(g->admin_port, w->admin_port);
        assert_int_equal(g->up, w->up);
        assert_true(g->load_bytes == w->load_bytes);
        assert_int_equal(g->ownership_ppm, w->ownership_ppm);
        assert_int_equal(g->effective_ppm, w->effective_ppm);
        assert_int_equal(g->ntokens, w->ntokens);
        for (size_t t = 0; t < w->ntokens; t++) assert_true(g->tokens[t] == w->tokens[t]);
        assert_int_equal(g->status, w->status);
        assert_int_equal(g->liveness, w->liveness);
        assert_int_equal(g->phi_milli, w->phi_milli);
        assert_true(g->generation == w->generation);
        assert_int_equal(g->in_ring, w->in_ring);
    }
    assert_int_equal(got->nreplicas, want->nreplicas);
    for (size_t i = 0; i < want->nreplicas; i++)
        assert_int_equal(got->replicas[i], want->replicas[i]);
}

static void ring_round_trip(const proto_ring_t *r)
{
    kv_buf_t b = {0};
    assert_int_equal(proto_encode_ring_reply(&b, 808, 0xABCDEF, r, 0), KV_OK);
    kv_frame_t f;
    decode_one(&b, &f);
    assert_int_equal(f.type, MSG_RING_REPLY);
    assert_int_equal(f.request_id, 808);
    proto_ring_t out;
    uint64_t hlc = 0;
    assert_int_equal(proto_decode_ring_reply(&f, &hlc, &out), KV_OK);
    assert_int_equal(hlc, 0xABCDEF);
    assert_ring_equal(&out, r);
    proto_ring_free(&out);
    assert_null(out.nodes);
    assert_int_equal(out.nnodes, 0);
    proto_ring_free(&out); /* twice is harmless */
    /* no other decoder takes it */
    proto_reply_t rp;
    assert_int_equal(proto_decode_reply(&f, &rp), KV_PROTO);
    kv_slice_t k;
    bool has;
    assert_int_equal(proto_decode_ring(&f, &k, &has), KV_PROTO);
    kv_frame_release(&f);
    kv_buf_deinit(&b);
}

static void test_proto_ring_reply_round_trips(void **state)
{
    (void)state;
    proto_ring_node_t nodes[3];
    ring_sample(nodes);
    const uint32_t replicas[] = {2, 0, 1};

    /* no nodes at all */
    proto_ring_t r = {.replication_factor = 3};
    ring_round_trip(&r);
    /* one node, without a key */
    r = (proto_ring_t){.replication_factor = 1, .nodes = nodes, .nnodes = 1};
    ring_round_trip(&r);
    /* one node, with a key */
    const uint32_t only[] = {0};
    r.key_token = 99;
    r.replicas = only;
    r.nreplicas = 1;
    ring_round_trip(&r);
    /* three nodes, answered by the last, without a key */
    r = (proto_ring_t){.replication_factor = 32, .self = 2, .nodes = nodes, .nnodes = 3};
    ring_round_trip(&r);
    /* three nodes with a key at the top of the token space */
    r.key_token = UINT64_MAX;
    r.replicas = replicas;
    r.nreplicas = 3;
    ring_round_trip(&r);
    /* a node without tokens (not yet joined) */
    nodes[1].tokens = NULL;
    nodes[1].ntokens = 0;
    ring_round_trip(&r);
    /* a node that has left, and every field at its other extreme */
    nodes[1].status = PROTO_NODE_LEFT;
    nodes[1].liveness = PROTO_LIVE_ALIVE;
    nodes[1].phi_milli = 1;
    nodes[1].generation = 1;
    nodes[1].in_ring = false;
    nodes[2].in_ring = true;
    ring_round_trip(&r);
}

static void test_proto_ring_reply_encoder_refuses_what_decoder_would(void **state)
{
    (void)state;
    proto_ring_node_t nodes[3];
    ring_sample(nodes);
    const uint32_t bad_replica[] = {0, 3};
    proto_ring_t good = {.replication_factor = 3, .self = 1, .nodes = nodes, .nnodes = 3};
    proto_ring_t cases[5];
    for (size_t i = 0; i < KV_ARRAY_LEN(cases); i++) cases[i] = good;
    cases[0].self = 3;
    cases[1].replicas = bad_replica;
    cases[1].nreplicas = 2;
    cases[2].nnodes = 0; /* self 1 in an empty list */
    kv_buf_t b = {0};
    kv_buf_append(&b, "xyz", 3);
    for (size_t i = 0; i < 3; i++) {
        if (proto_encode_ring_reply(&b, 1, 1, &cases[i], 0) != KV_INVALID)
            fail_msg("case %zu encoded", i);
        assert_int_equal(b.len, 3);
    }
    nodes[2].ownership_ppm = 1000001;
    assert_int_equal(proto_encode_ring_reply(&b, 1, 1, &good, 0), KV_INVALID);
    nodes[2].ownership_ppm = 0;
    nodes[2].effective_ppm = 32000001;
    assert_int_equal(proto_encode_ring_reply(&b, 1, 1, &good, 0), KV_INVALID);
    nodes[2].effective_ppm = 0;
    nodes[2].status = PROTO_NODE_LEFT + 1;
    assert_int_equal(proto_encode_ring_reply(&b, 1, 1, &good, 0), KV_INVALID);
    nodes[2].status = PROTO_NODE_LEFT;
    nodes[2].liveness = PROTO_LIVE_DEAD + 1;
    assert_int_equal(proto_encode_ring_reply(&b, 1, 1, &good, 0), KV_INVALID);
    nodes[2].liveness = PROTO_LIVE_DEAD;
    assert_int_equal(b.len, 3);
    /* too large for max_body */
    assert_int_equal(proto_encode_ring_reply(&b, 1, 1, &good, 64), KV_INVALID);
    assert_int_equal(b.len, 3);
    assert_int_equal(proto_encode_ring_reply(&b, 1, 1, &good, 0), KV_OK);
    assert_true(b.len > 3);
    kv_buf_deinit(&b);
}

/* Malformed RING_REPLY frames: a valid two-node reply (self 1, replicas
 * [1, 0]) with one thing wrong, chosen by ring_bad. Most defects sit in the
 * second node, so the decoder has allocated the first node's tokens when it
 * finds them (the test's leak check covers the cleanup). */
typedef enum {
    RB_NONE, RB_HLC_NEG, RB_RF_BIG, RB_SELF_OUT, RB_SELF_NEG, RB_TOKEN_NEG_KEY,
    RB_NODES_MAP, RB_NODE_NOT_ARRAY, RB_NODE_SHORT, RB_NAME_INT, RB_NODE_ID_NIL,
    RB_HOST_INT, RB_RACK_NIL, RB_CLIENT_PORT, RB_ADMIN_PORT, RB_PORT_NEG,
    RB_UP_INT, RB_LOAD_NEG, RB_OWN_PPM, RB_EFF_PPM, RB_OWN_STR, RB_TOKENS_MAP,
    RB_TOKEN_NEG, RB_TOKEN_STR, RB_TOKEN_NIL, RB_REPLICAS_NIL, RB_REPLICA_OUT,
    RB_REPLICA_NEG, RB_REPLICA_BIG, RB_REPLICA_STR, RB_TRUNCATED,
    RB_STATUS_BIG, RB_STATUS_NEG, RB_STATUS_STR, RB_LIVENESS_BIG,
    RB_LIVENESS_NIL, RB_PHI_BIG, RB_PHI_FLOAT, RB_GENERATION_NEG,
    RB_IN_RING_INT, RB_IN_RING_NIL, RB_COUNT_
} ring_bad_t;
static ring_bad_t ring_bad;

static void pk_ring_node(msgpack_packer *pk, int idx)
{
    bool bad = idx == 1; /* defects go into the second node */
    if (bad && ring_bad == RB_NODE_NOT_ARRAY) {
        kv_pack_str(pk, "n2");
        return;
    }
    msgpack_pack_array(pk, bad && ring_bad == RB_NODE_SHORT ? 10 : 16);
    if (bad && ring_bad == RB_NAME_INT) msgpack_pack_uint8(pk, 2);
    else kv_pack_str(pk, idx ? "n2" : "n1");
    if (bad && ring_bad == RB_NODE_ID_NIL) msgpack_pack_nil(pk);
    else kv_pack_str(pk, "id");
    if (bad && ring_bad == RB_HOST_INT) msgpack_pack_uint32(pk, 0x7f000001);
    else kv_pack_str(pk, "127.0.0.1");
    if (bad && ring_bad == RB_CLIENT_PORT) msgpack_pack_uint32(pk, 65536);
    else if (bad && ring_bad == RB_PORT_NEG) msgpack_pack_int32(pk, -1);
    else msgpack_pack_uint16(pk, 7070);
    if (bad && ring_bad == RB_ADMIN_PORT) msgpack_pack_uint32(pk, 70000);
    else msgpack_pack_uint16(pk, 7072);
    if (bad && ring_bad == RB_RACK_NIL) msgpack_pack_nil(pk);
    else kv_pack_str(pk, "r");
    if (bad && ring_bad == RB_UP_INT) msgpack_pack_uint8(pk, 1);
    else msgpack_pack_true(pk);
    if (bad && ring_bad == RB_LOAD_NEG) msgpack_pack_int64(pk, -4096);
    else msgpack_pack_uint64(pk, 4096);
    if (bad && ring_bad == RB_OWN_PPM) msgpack_pack_uint32(pk, 1000001);
    else if (bad && ring_bad == RB_OWN_STR) kv_pack_str(pk, "50%");
    else msgpack_pack_uint32(pk, 500000);
    if (bad && ring_bad == RB_EFF_PPM) msgpack_pack_uint32(pk, 32000001);
    else msgpack_pack_uint32(pk, 1000000);
    if (bad && ring_bad == RB_NODE_SHORT) return; /* no token list */
    if (bad && ring_bad == RB_TOKENS_MAP) {
        msgpack_pack_map(pk, 0);
    } else {
        msgpack_pack_array(pk, 3);
        msgpack_pack_uint64(pk, idx ? 200 : 100);
        if (bad && ring_bad == RB_TOKEN_NEG) msgpack_pack_int64(pk, -300);
        else if (bad && ring_bad == RB_TOKEN_STR) kv_pack_str(pk, "300");
        else if (bad && ring_bad == RB_TOKEN_NIL) msgpack_pack_nil(pk);
        else msgpack_pack_uint64(pk, idx ? 300 : 150);
        msgpack_pack_uint64(pk, idx ? UINT64_MAX : 175);
    }
    /* status, liveness, phi_milli, generation, in_ring */
    if (bad && ring_bad == RB_STATUS_BIG) msgpack_pack_uint8(pk, PROTO_NODE_LEFT + 1);
    else if (bad && ring_bad == RB_STATUS_NEG) msgpack_pack_int8(pk, -1);
    else if (bad && ring_bad == RB_STATUS_STR) kv_pack_str(pk, "normal");
    else msgpack_pack_uint8(pk, PROTO_NODE_LEFT);
    if (bad && ring_bad == RB_LIVENESS_BIG) msgpack_pack_uint8(pk, PROTO_LIVE_DEAD + 1);
    else if (bad && ring_bad == RB_LIVENESS_NIL) msgpack_pack_nil(pk);
    else msgpack_pack_uint8(pk, PROTO_LIVE_DEAD);
    if (bad && ring_bad == RB_PHI_BIG) msgpack_pack_uint64(pk, (uint64_t)UINT32_MAX + 1);
    else if (bad && ring_bad == RB_PHI_FLOAT) msgpack_pack_double(pk, 8.25);
    else msgpack_pack_uint32(pk, UINT32_MAX);
    if (bad && ring_bad == RB_GENERATION_NEG) msgpack_pack_int64(pk, -2);
    else msgpack_pack_uint64(pk, UINT64_MAX);
    if (bad && ring_bad == RB_IN_RING_INT) msgpack_pack_uint8(pk, 1);
    else if (bad && ring_bad == RB_IN_RING_NIL) msgpack_pack_nil(pk);
    else msgpack_pack_false(pk);
}

static uint32_t pk_ring_nargs(void)
{
    return ring_bad == RB_TRUNCATED ? 5 : 6;
}

static void pk_ring_reply(msgpack_packer *pk)
{
    if (ring_bad == RB_HLC_NEG) msgpack_pack_int64(pk, -1);
    else msgpack_pack_uint64(pk, 10);
    if (ring_bad == RB_RF_BIG) msgpack_pack_uint64(pk, (uint64_t)UINT32_MAX + 1);
    else msgpack_pack_uint32(pk, 2);
    if (ring_bad == RB_SELF_OUT) msgpack_pack_uint32(pk, 2);
    else if (ring_bad == RB_SELF_NEG) msgpack_pack_int32(pk, -1);
    else msgpack_pack_uint32(pk, 1);
    if (ring_bad == RB_TOKEN_NEG_KEY) msgpack_pack_int64(pk, -7);
    else msgpack_pack_uint64(pk, 250);
    if (ring_bad == RB_NODES_MAP) {
        msgpack_pack_map(pk, 0);
    } else {
        msgpack_pack_array(pk, 2);
        pk_ring_node(pk, 0);
        pk_ring_node(pk, 1);
    }
    if (ring_bad == RB_TRUNCATED) return;
    if (ring_bad == RB_REPLICAS_NIL) {
        msgpack_pack_nil(pk);
        return;
    }
    msgpack_pack_array(pk, 2);
    if (ring_bad == RB_REPLICA_OUT) msgpack_pack_uint32(pk, 2);
    else if (ring_bad == RB_REPLICA_NEG) msgpack_pack_int32(pk, -1);
    else if (ring_bad == RB_REPLICA_BIG) msgpack_pack_uint64(pk, (1ULL << 32) + 1);
    else if (ring_bad == RB_REPLICA_STR) kv_pack_str(pk, "1");
    else msgpack_pack_uint32(pk, 1);
    msgpack_pack_uint32(pk, 0);
}

static void test_proto_bad_ring_replies_are_proto_errors(void **state)
{
    (void)state;
    for (int c = RB_NONE; c < RB_COUNT_; c++) {
        ring_bad = (ring_bad_t)c;
        kv_buf_t b = {0};
        raw_frame(&b, MSG_RING_REPLY, 3, pk_ring_nargs(), pk_ring_reply);
        kv_frame_t f;
        decode_one(&b, &f);
        proto_ring_t out;
        memset(&out, 0x5a, sizeof out);
        uint64_t hlc = 12345;
        kv_status_t rc = proto_decode_ring_reply(&f, &hlc, &out);
        if (c == RB_NONE) {
            /* the frame the cases spoil is itself valid */
            assert_int_equal(rc, KV_OK);
            assert_int_equal(hlc, 10);
            assert_int_equal(out.self, 1);
            assert_int_equal(out.nnodes, 2);
            assert_int_equal(out.nodes[1].ntokens, 3);
            assert_true(out.nodes[1].tokens[2] == UINT64_MAX);
            assert_int_equal(out.nreplicas, 2);
            assert_int_equal(out.nodes[1].status, PROTO_NODE_LEFT);
            assert_int_equal(out.nodes[1].liveness, PROTO_LIVE_DEAD);
            assert_int_equal(out.nodes[1].phi_milli, UINT32_MAX);
            assert_true(out.nodes[1].generation == UINT64_MAX);
            assert_false(out.nodes[1].in_ring);
            proto_ring_free(&out);
        } else {
            if (rc != KV_PROTO) fail_msg("case %d decoded (%s)", c, kv_status_str(rc));
            assert_int_equal(hlc, 12345);
            assert_null(out.nodes);
            assert_null(out.replicas);
            assert_int_equal(out.nnodes, 0);
            proto_ring_free(&out);
        }
        kv_frame_release(&f);
        kv_buf_deinit(&b);
    }
    ring_bad = RB_NONE;

    /* an empty list with self 1; a wrong frame type; no arguments */
    kv_buf_t b = {0};
    kv_frame_writer_t w;
    kv_frame_begin(&w, &b, MSG_RING_REPLY, 1, 6);
    msgpack_pack_uint64(&w.pk, 1);
    msgpack_pack_uint32(&w.pk, 1);
    msgpack_pack_uint32(&w.pk, 1);
    msgpack_pack_uint64(&w.pk, 0);
    msgpack_pack_array(&w.pk, 0);
    msgpack_pack_array(&w.pk, 0);
    assert_int_equal(kv_frame_end(&w, 0), KV_OK);
    raw_frame(&b, MSG_INFO_REPLY, 1, pk_ring_nargs(), pk_ring_reply);
    raw_frame(&b, MSG_RING_REPLY, 1, 0, NULL);
    kv_frame_decoder_t *d = kv_frame_decoder_create(0);
    assert_int_equal(kv_frame_decoder_feed(d, b.data, b.len), KV_OK);
    kv_frame_t f;
    kv_frame_init(&f);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(kv_frame_decoder_next(d, &f), KV_OK);
        proto_ring_t out;
        uint64_t hlc;
        if (proto_decode_ring_reply(&f, &hlc, &out) != KV_PROTO) fail_msg("frame %d decoded", i);
    }
    kv_frame_release(&f);
    kv_frame_decoder_destroy(d);

    /* RING with a key that is not bytes, or without its argument */
    kv_buf_clear(&b);
    kv_frame_begin(&w, &b, MSG_RING, 1, 1);
    msgpack_pack_uint8(&w.pk, 5);
    assert_int_equal(kv_frame_end(&w, 0), KV_OK);
    raw_frame(&b, MSG_RING, 1, 0, NULL);
    d = kv_frame_decoder_create(0);
    assert_int_equal(kv_frame_decoder_feed(d, b.data, b.len), KV_OK);
    kv_frame_init(&f);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(kv_frame_decoder_next(d, &f), KV_OK);
        kv_slice_t k;
        bool has;
        if (proto_decode_ring(&f, &k, &has) != KV_PROTO) fail_msg("RING %d decoded", i);
    }
    kv_frame_release(&f);
    kv_frame_decoder_destroy(d);
    kv_buf_deinit(&b);
}

/* One node entry of n fields (10..18): the eleven every version sends,
 * then status JOINING, liveness SUSPECT, phi_milli 7500, generation 42,
 * in_ring false, then two fields from a later version; 10 is one short. */
static void pk_node_fields(msgpack_packer *pk, uint32_t n, const char *name, bool up)
{
    msgpack_pack_array(pk, n);
    kv_pack_str(pk, name);
    kv_pack_str(pk, "id");
    kv_pack_str(pk, "h");
    msgpack_pack_uint16(pk, 1);
    msgpack_pack_uint16(pk, 2);
    kv_pack_str(pk, "r");
    if (up) msgpack_pack_true(pk);
    else msgpack_pack_false(pk);
    msgpack_pack_uint64(pk, 3);
    msgpack_pack_uint32(pk, 4);
    msgpack_pack_uint32(pk, 5);
    if (n < 11) return;
    msgpack_pack_array(pk, 1);
    msgpack_pack_uint64(pk, 6);
    if (n > 11) msgpack_pack_uint8(pk, PROTO_NODE_JOINING);
    if (n > 12) msgpack_pack_uint8(pk, PROTO_LIVE_SUSPECT);
    if (n > 13) msgpack_pack_uint32(pk, 7500);
    if (n > 14) msgpack_pack_uint64(pk, 42);
    if (n > 15) msgpack_pack_false(pk);
    if (n > 16) kv_pack_str(pk, "dc1");
    if (n > 17) msgpack_pack_map(pk, 0);
}

/* A RING_REPLY whose nodes have nfields[i] fields each (node i named
 * "n<i>", up when i is even). */
static void ring_reply_of_widths(kv_buf_t *b, const uint32_t *nfields, size_t n,
                                 bool extra_arg)
{
    kv_frame_writer_t w;
    kv_frame_begin(&w, b, MSG_RING_REPLY, 4, extra_arg ? 7 : 6);
    msgpack_pack_uint64(&w.pk, 1);
    msgpack_pack_uint32(&w.pk, 3);
    msgpack_pack_uint32(&w.pk, 0);
    msgpack_pack_uint64(&w.pk, 9);
    msgpack_pack_array(&w.pk, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        char name[8];
        snprintf(name, sizeof name, "n%zu", i);
        pk_node_fields(&w.pk, nfields[i], name, i % 2 == 0);
    }
    msgpack_pack_array(&w.pk, 1);
    msgpack_pack_uint32(&w.pk, 0);
    if (extra_arg) kv_pack_str(&w.pk, "future"); /* an appended argument */
    assert_int_equal(kv_frame_end(&w, 0), KV_OK);
}

static void test_proto_ring_reply_ignores_appended_fields(void **state)
{
    (void)state;
    kv_buf_t b = {0};
    const uint32_t widths[] = {18}; /* two fields a later version added */
    ring_reply_of_widths(&b, widths, 1, true);
    kv_frame_t f;
    decode_one(&b, &f);
    proto_ring_t out;
    uint64_t hlc;
    assert_int_equal(proto_decode_ring_reply(&f, &hlc, &out), KV_OK);
    assert_int_equal(out.nnodes, 1);
    assert_true(kv_slice_eq(out.nodes[0].rack, kv_slice_str("r")));
    assert_int_equal(out.nodes[0].effective_ppm, 5);
    assert_int_equal(out.nodes[0].ntokens, 1);
    assert_int_equal(out.nodes[0].tokens[0], 6);
    assert_int_equal(out.nodes[0].status, PROTO_NODE_JOINING);
    assert_int_equal(out.nodes[0].liveness, PROTO_LIVE_SUSPECT);
    assert_int_equal(out.nodes[0].phi_milli, 7500);
    assert_int_equal(out.nodes[0].generation, 42);
    assert_false(out.nodes[0].in_ring);
    assert_int_equal(out.nreplicas, 1);
    proto_ring_free(&out);
    kv_frame_release(&f);

    /* RING with an appended argument */
    kv_buf_clear(&b);
    kv_frame_writer_t w;
    kv_frame_begin(&w, &b, MSG_RING, 4, 2);
    msgpack_pack_nil(&w.pk);
    msgpack_pack_true(&w.pk);
    assert_int_equal(kv_frame_end(&w, 0), KV_OK);
    decode_one(&b, &f);
    kv_slice_t k;
    bool has = true;
    assert_int_equal(proto_decode_ring(&f, &k, &has), KV_OK);
    assert_false(has);
    kv_frame_release(&f);
    kv_buf_deinit(&b);
}

/* A node older than gossip sends eleven fields: the decoder fills in what
 * its answer meant (a founding member that owns its ranges, alive exactly
 * when up). Fields missing from the end are defaulted one by one, and nodes
 * of different widths may share a reply (a mixed-version cluster). */
static void test_proto_ring_reply_old_entries_decode_with_defaults(void **state)
{
    (void)state;
    const uint32_t widths[] = {11, 11, 12, 13, 14, 15, 16};
    kv_buf_t b = {0};
    ring_reply_of_widths(&b, widths, KV_ARRAY_LEN(widths), false);
    kv_frame_t f;
    decode_one(&b, &f);
    proto_ring_t out;
    uint64_t hlc = 0;
    assert_int_equal(proto_decode_ring_reply(&f, &hlc, &out), KV_OK);
    assert_int_equal(hlc, 1);
    assert_int_equal(out.nnodes, KV_ARRAY_LEN(widths));
    for (size_t i = 0; i < out.nnodes; i++) {
        const proto_ring_node_t *n = &out.nodes[i];
        uint32_t wd = widths[i];
        assert_int_equal(n->up, i % 2 == 0);
        assert_int_equal(n->ntokens, 1);
        assert_int_equal(n->status, wd > 11 ? PROTO_NODE_JOINING : PROTO_NODE_NORMAL);
        assert_int_equal(n->liveness, wd > 12 ? PROTO_LIVE_SUSPECT
                                      : n->up ? PROTO_LIVE_ALIVE
                                              : PROTO_LIVE_DEAD);
        assert_int_equal(n->phi_milli, wd > 13 ? 7500 : 0);
        assert_int_equal(n->generation, wd > 14 ? 42 : 0);
        assert_int_equal(n->in_ring, wd <= 15);
    }
    proto_ring_free(&out);
    kv_frame_release(&f);

    /* ten fields is still too few */
    kv_buf_clear(&b);
    const uint32_t short_w[] = {16, 10};
    ring_reply_of_widths(&b, short_w, 2, false);
    decode_one(&b, &f);
    assert_int_equal(proto_decode_ring_reply(&f, &hlc, &out), KV_PROTO);
    assert_null(out.nodes);
    kv_frame_release(&f);
    kv_buf_deinit(&b);
}

static void test_proto_phi_milli_rounds_and_saturates(void **state)
{
    (void)state;
    assert_int_equal(proto_phi_milli(0), 0);
    assert_int_equal(proto_phi_milli(-3.5), 0);
    assert_int_equal(proto_phi_milli(NAN), 0);
    assert_int_equal(proto_phi_milli(-INFINITY), 0);
    assert_int_equal(proto_phi_milli(0.0004), 0);
    assert_int_equal(proto_phi_milli(0.0006), 1);
    assert_int_equal(proto_phi_milli(8.25), 8250);
    assert_int_equal(proto_phi_milli(4294967.0), 4294967000u);
    assert_int_equal(proto_phi_milli(4294967.295), UINT32_MAX);
    assert_int_equal(proto_phi_milli(1e300), UINT32_MAX);
    assert_int_equal(proto_phi_milli(INFINITY), UINT32_MAX);
}

static void test_proto_consistency_names_parse(void **state)
{
    (void)state;
    proto_cl_t cl;
    assert_int_equal(proto_cl_parse("quorum", &cl), KV_OK);
    assert_int_equal(cl, CL_QUORUM);
    assert_int_equal(proto_cl_parse("ALL", &cl), KV_OK);
    assert_int_equal(cl, CL_ALL);
    assert_int_equal(proto_cl_parse("One", &cl), KV_OK);
    assert_int_equal(cl, CL_ONE);
    assert_int_equal(proto_cl_parse("two", &cl), KV_INVALID);
    assert_string_equal(proto_cl_str(CL_ONE), "ONE");
    assert_string_equal(proto_cl_str((proto_cl_t)9), "?");
}

static void test_proto_admin_round_trips_and_needs_an_operation(void **state)
{
    (void)state;
    kv_buf_t b = {0};
    assert_int_equal(proto_encode_admin(&b, 9, kv_slice_str("removenode"),
                                        kv_slice_str("n3"), 0), KV_OK);
    kv_frame_t f;
    decode_one(&b, &f);
    assert_int_equal(f.type, MSG_ADMIN);
    assert_int_equal(f.request_id, 9);
    kv_slice_t op, arg;
    assert_int_equal(proto_decode_admin(&f, &op, &arg), KV_OK);
    assert_true(kv_slice_eq(op, kv_slice_str("removenode")));
    assert_true(kv_slice_eq(arg, kv_slice_str("n3")));
    kv_frame_release(&f);
    kv_buf_clear(&b);
    assert_int_equal(proto_encode_admin(&b, 9, kv_slice(NULL, 0), kv_slice(NULL, 0), 0),
                     KV_INVALID);
    assert_int_equal(b.len, 0);
    /* an empty operation or a missing argument is malformed */
    assert_int_equal(proto_encode_admin(&b, 9, kv_slice_str("cleanup"), kv_slice(NULL, 0),
                                        0), KV_OK);
    decode_one(&b, &f);
    assert_int_equal(proto_decode_admin(&f, &op, &arg), KV_OK);
    assert_int_equal(arg.len, 0);
    f.nargs = 1;
    assert_int_equal(proto_decode_admin(&f, &op, &arg), KV_PROTO);
    f.type = MSG_INFO;
    assert_int_equal(proto_decode_admin(&f, &op, &arg), KV_PROTO);
    kv_frame_release(&f);
    kv_buf_deinit(&b);
}

/* ---- LOCAL_GET / LOCAL_REPLY ------------------------------------------- */

static void test_proto_local_get_round_trips(void **state)
{
    (void)state;
    kv_buf_t b = {0};
    const uint8_t key[] = {'k', 0, 0xff};
    assert_int_equal(proto_encode_local_get(&b, 42, kv_slice(key, sizeof key), 0), KV_OK);
    kv_frame_t f;
    decode_one(&b, &f);
    assert_int_equal(f.type, MSG_LOCAL_GET);
    assert_int_equal(f.request_id, 42);
    kv_slice_t out;
    assert_int_equal(proto_decode_local_get(&f, &out), KV_OK);
    assert_true(kv_slice_eq(out, kv_slice(key, sizeof key)));
    /* not a data request: the GET/PUT/DELETE decoder refuses it */
    proto_request_t rq;
    assert_int_equal(proto_decode_request(&f, &rq), KV_PROTO);
    kv_frame_release(&f);
    kv_buf_deinit(&b);
}

static void local_reply_round_trip(const proto_local_reply_t *in)
{
    kv_buf_t b = {0};
    assert_int_equal(proto_encode_local_reply(&b, in, 0), KV_OK);
    kv_frame_t f;
    decode_one(&b, &f);
    assert_int_equal(f.type, MSG_LOCAL_REPLY);
    proto_local_reply_t out;
    memset(&out, 0x5a, sizeof out);
    assert_int_equal(proto_decode_local_reply(&f, &out), KV_OK);
    assert_int_equal(out.id, in->id);
    assert_int_equal(out.status, in->status);
    assert_int_equal(out.hlc, in->hlc);
    assert_int_equal(out.ts, in->ts);
    assert_int_equal(out.tombstone, in->tombstone);
    assert_int_equal(out.expire_ms, in->expire_ms);
    assert_true(kv_slice_eq(out.value, in->value));
    /* a plain REPLY decoder refuses it */
    proto_reply_t r;
    assert_int_equal(proto_decode_reply(&f, &r), KV_PROTO);
    kv_frame_release(&f);
    kv_buf_deinit(&b);
}

static void test_proto_local_reply_round_trips_value_tombstone_and_nothing(void **state)
{
    (void)state;
    const uint8_t bin[] = {0, 1, 2, 0xfe};
    proto_local_reply_t value = {.id = 1, .status = KV_OK, .hlc = UINT64_MAX,
                                 .ts = 1ULL << 50, .expire_ms = 1700000000000ULL,
                                 .value = kv_slice(bin, sizeof bin)};
    local_reply_round_trip(&value);
    proto_local_reply_t empty = {.id = 2, .status = KV_OK, .hlc = 5, .ts = 7,
                                 .value = kv_slice("", 0)};
    local_reply_round_trip(&empty);
    proto_local_reply_t tomb = {.id = 3, .status = KV_OK, .hlc = 5, .ts = 9,
                                .tombstone = true, .expire_ms = 12};
    local_reply_round_trip(&tomb);
    proto_local_reply_t none = {.id = UINT64_MAX, .status = KV_NOTFOUND, .hlc = 1};
    local_reply_round_trip(&none);

    /* an empty value is a value, not a tombstone: it travels as bin 0 */
    kv_buf_t b = {0};
    assert_int_equal(proto_encode_local_reply(&b, &empty, 0), KV_OK);
    kv_frame_t f;
    decode_one(&b, &f);
    assert_int_equal(f.args[5].type, MSGPACK_OBJECT_BIN);
    kv_frame_release(&f);
    kv_buf_deinit(&b);
}

static void test_proto_local_reply_encoder_refuses_what_decoder_would(void **state)
{
    (void)state;
    const proto_local_reply_t bad[] = {
        {.id = 1, .status = KV_TIMEOUT},                      /* errors go in REPLY */
        {.id = 1, .status = KV_NOTFOUND, .ts = 3},            /* nothing has no stamp */
        {.id = 1, .status = KV_NOTFOUND, .tombstone = true},
        {.id = 1, .status = KV_NOTFOUND, .expire_ms = 3},
    };
    for (size_t i = 0; i < KV_ARRAY_LEN(bad); i++) {
        kv_buf_t b = {0};
        kv_buf_append(&b, "x", 1);
        if (proto_encode_local_reply(&b, &bad[i], 0) != KV_INVALID)
            fail_msg("case %zu encoded", i);
        assert_int_equal(b.len, 1); /* unchanged */
        kv_buf_deinit(&b);
    }
    kv_buf_t b = {0};
    proto_local_reply_t big = {.id = 1, .status = KV_OK, .ts = 1,
                               .value = kv_slice("0123456789", 10)};
    assert_int_equal(proto_encode_local_reply(&b, &big, 16), KV_INVALID);
    assert_int_equal(b.len, 0);
    kv_buf_deinit(&b);
}

typedef struct local_bad {
    uint64_t status;
    uint64_t ts;
    int tombstone; /* 0 false, 1 true, 2 an integer instead of a bool */
    uint64_t expire_ms;
    int value;     /* 0 nil, 1 bin, 2 an integer */
    bool neg_hlc;
} local_bad_t;
static local_bad_t local_bad;

static void pk_local_reply(msgpack_packer *pk)
{
    const local_bad_t *c = &local_bad;
    if (c->neg_hlc) msgpack_pack_int64(pk, -1);
    else msgpack_pack_uint64(pk, 9);
    msgpack_pack_uint64(pk, c->status);
    msgpack_pack_uint64(pk, c->ts);
    if (c->tombstone == 2) msgpack_pack_uint8(pk, 1);
    else if (c->tombstone) msgpack_pack_true(pk);
    else msgpack_pack_false(pk);
    msgpack_pack_uint64(pk, c->expire_ms);
    if (c->value == 1) kv_pack_bytes(pk, kv_slice("v", 1));
    else if (c->value == 2) msgpack_pack_uint8(pk, 7);
    else msgpack_pack_nil(pk);
}

static void pk_local_get_int_key(msgpack_packer *pk) { msgpack_pack_uint8(pk, 7); }

static void test_proto_bad_local_messages_are_proto_errors(void **state)
{
    (void)state;
    const local_bad_t cases[] = {
        {.status = KV_OK, .ts = 1, .value = 0},                 /* value cell, no value */
        {.status = KV_OK, .ts = 1, .tombstone = 1, .value = 1}, /* tombstone with one */
        {.status = KV_OK, .ts = 1, .tombstone = 2, .value = 1}, /* tombstone not a bool */
        {.status = KV_OK, .ts = 1, .value = 2},                 /* value not bin */
        {.status = KV_NOTFOUND, .value = 1},                    /* nothing, with a value */
        {.status = KV_NOTFOUND, .ts = 1},                       /* nothing, with a stamp */
        {.status = KV_NOTFOUND, .tombstone = 1},
        {.status = KV_NOTFOUND, .expire_ms = 1},
        {.status = KV_TIMEOUT},                                 /* not OK / NOTFOUND */
        {.status = KV_STATUS_COUNT_},
        {.status = 1ULL << 40},
        {.status = KV_NOTFOUND, .neg_hlc = true},
    };
    for (size_t i = 0; i < KV_ARRAY_LEN(cases); i++) {
        local_bad = cases[i];
        kv_buf_t b = {0};
        raw_frame(&b, MSG_LOCAL_REPLY, 1, 6, pk_local_reply);
        kv_frame_t f;
        decode_one(&b, &f);
        proto_local_reply_t out;
        if (proto_decode_local_reply(&f, &out) != KV_PROTO) fail_msg("case %zu decoded", i);
        kv_frame_release(&f);
        kv_buf_deinit(&b);
    }
    /* too few arguments (all unsigned zeros: a NOTFOUND needs a bool and a
     * nil too), and the whole reply under another type */
    for (uint32_t nargs = 0; nargs < 6; nargs++) {
        kv_buf_t b = {0};
        kv_frame_writer_t w;
        kv_frame_begin(&w, &b, MSG_LOCAL_REPLY, 1, nargs);
        for (uint32_t a = 0; a < nargs; a++) msgpack_pack_uint64(&w.pk, 0);
        assert_int_equal(kv_frame_end(&w, 0), KV_OK);
        kv_frame_t f;
        decode_one(&b, &f);
        proto_local_reply_t out;
        if (proto_decode_local_reply(&f, &out) != KV_PROTO) fail_msg("%u args decoded", nargs);
        kv_frame_release(&f);
        kv_buf_deinit(&b);
    }
    local_bad = (local_bad_t){.status = KV_OK, .ts = 1, .value = 1};
    {
        kv_buf_t b = {0};
        raw_frame(&b, MSG_REPLY, 1, 6, pk_local_reply);
        kv_frame_t f;
        decode_one(&b, &f);
        proto_local_reply_t out;
        assert_int_equal(proto_decode_local_reply(&f, &out), KV_PROTO);
        kv_frame_release(&f);
        kv_buf_deinit(&b);
    }
    /* the well-formed frame decodes, and appended arguments are ignored */
    kv_buf_t b = {0};
    kv_frame_writer_t w;
    kv_frame_begin(&w, &b, MSG_LOCAL_REPLY, 1, 7);
    pk_local_reply(&w.pk);
    kv_pack_str(&w.pk, "from a later version");
    assert_int_equal(kv_frame_end(&w, 0), KV_OK);
    kv_frame_t f;
    decode_one(&b, &f);
    proto_local_reply_t out;
    assert_int_equal(proto_decode_local_reply(&f, &out), KV_OK);
    assert_true(kv_slice_eq(out.value, kv_slice("v", 1)));
    kv_frame_release(&f);
    kv_buf_deinit(&b);

    /* LOCAL_GET: a key that is not bytes, or none */
    const uint32_t nargs[] = {1, 0};
    for (size_t i = 0; i < KV_ARRAY_LEN(nargs); i++) {
        kv_buf_t q = {0};
        raw_frame(&q, MSG_LOCAL_GET, 1, nargs[i], nargs[i] ? pk_local_get_int_key : NULL);
        decode_one(&q, &f);
        kv_slice_t key;
        if (proto_decode_local_get(&f, &key) != KV_PROTO) fail_msg("LOCAL_GET case %zu", i);
        kv_frame_release(&f);
        kv_buf_deinit(&q);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        kv_unit_test(test_proto_admin_round_trips_and_needs_an_operation),
        kv_unit_test(test_proto_hello_round_trips),
        kv_unit_test(test_proto_hello_ok_round_trips),
        kv_unit_test(test_proto_requests_round_trip),
        kv_unit_test(test_proto_reply_round_trips_with_and_without_value),
        kv_unit_test(test_proto_info_and_info_reply_round_trip),
        kv_unit_test(test_proto_bad_requests_are_proto_errors),
        kv_unit_test(test_proto_bad_replies_are_proto_errors),
        kv_unit_test(test_proto_bad_handshakes_and_info_are_proto_errors),
        kv_unit_test(test_proto_extra_arguments_are_ignored),
        kv_unit_test(test_proto_encoders_refuse_oversized_frames),
        kv_unit_test(test_proto_consistency_names_parse),
        kv_unit_test(test_proto_ring_request_round_trips_with_and_without_key),
        kv_unit_test(test_proto_ring_reply_round_trips),
        kv_unit_test(test_proto_ring_reply_encoder_refuses_what_decoder_would),
        kv_unit_test(test_proto_bad_ring_replies_are_proto_errors),
        kv_unit_test(test_proto_ring_reply_ignores_appended_fields),
        kv_unit_test(test_proto_ring_reply_old_entries_decode_with_defaults),
        kv_unit_test(test_proto_phi_milli_rounds_and_saturates),
        kv_unit_test(test_proto_local_get_round_trips),
        kv_unit_test(test_proto_local_reply_round_trips_value_tombstone_and_nothing),
        kv_unit_test(test_proto_local_reply_encoder_refuses_what_decoder_would),
        kv_unit_test(test_proto_bad_local_messages_are_proto_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
