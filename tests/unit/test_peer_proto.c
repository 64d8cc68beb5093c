/* test_peer_proto.c -- node-to-node messages: every message round-trips
 * through the frame codec with the documented wire layout; every decoder
 * takes only its own type and refuses missing, mistyped or out-of-range
 * arguments (leaving its outputs alone); arguments appended by a later
 * version are ignored; encoders refuse oversized frames and fields their
 * decoder would refuse, leaving the buffer as it was. */
#include "test_util.h"

#include "frame.h"
#include "peer_proto.h"

/* Decode the single frame in buf into *f (the caller releases f). */
static void decode_one(const kv_buf_t *buf, kv_frame_t *f)
{
    kv_frame_decoder_t *d = kv_frame_decoder_create(0);
    kv_frame_init(f);
    assert_int_equal(kv_frame_decoder_feed(d, buf->data, buf->len), KV_OK);
    assert_int_equal(kv_frame_decoder_next(d, f), KV_OK);
    kv_frame_t rest;
    kv_frame_init(&rest);
    assert_int_equal(kv_frame_decoder_next(d, &rest), KV_AGAIN);
    kv_frame_decoder_destroy(d);
}

static bool all_bytes(const void *p, size_t n, uint8_t v)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != v) return false;
    return true;
}

/* ---- hand-built frames --------------------------------------------------
 * A frame is [type, id, arg...] with the args described by targ_t. */

typedef enum { A_U, A_NEG, A_STR, A_BIN, A_NIL, A_TRUE, A_FALSE, A_ARR } akind_t;

typedef struct targ {
    akind_t k;
    uint64_t u;    /* A_U */
    const char *s; /* A_STR, A_BIN */
} targ_t;

#define U(x) {A_U, (uint64_t)(x), NULL}
#define NEG {A_NEG, 0, NULL}
#define S(x) {A_STR, 0, (x)}
#define B(x) {A_BIN, 0, (x)}
#define NIL {A_NIL, 0, NULL}
#define TRUE_ {A_TRUE, 0, NULL}
#define FALSE_ {A_FALSE, 0, NULL}
#define ARR {A_ARR, 0, NULL}

#define MAX_TARGS 16

static void pack_targ(msgpack_packer *pk, const targ_t *a)
{
    switch (a->k) {
    case A_U: msgpack_pack_uint64(pk, a->u); break;
    case A_NEG: msgpack_pack_int64(pk, -1); break;
    case A_STR: kv_pack_str(pk, a->s); break;
    case A_BIN: kv_pack_bytes(pk, kv_slice_str(a->s)); break;
    case A_NIL: msgpack_pack_nil(pk); break;
    case A_TRUE: msgpack_pack_true(pk); break;
    case A_FALSE: msgpack_pack_false(pk); break;
    case A_ARR:
        msgpack_pack_array(pk, 1);
        msgpack_pack_uint8(pk, 1);
        break;
    }
}

static void build(kv_buf_t *buf, uint32_t type, uint64_t id, const targ_t *args,
                  size_t n)
{
    kv_frame_writer_t w;
    kv_frame_begin(&w, buf, type, id, (uint32_t)n);
    for (size_t i = 0; i < n; i++) pack_targ(&w.pk, &args[i]);
    assert_int_equal(kv_frame_end(&w, 0), KV_OK);
}

/* ---- decoders behind one signature ---------------------------------------
 * Each runs one decoder with poisoned outputs, checks they are untouched on
 * failure and, on success, renders what it decoded into out. */

typedef enum {
    D_HEAD, D_HELLO, D_REFUSE, D_PONG, D_MUT, D_MUT_REPLY, D_READ, D_READ_REPLY,
    D_COUNT_
} dec_id_t;

static const char *const DEC_NAMES[] = {"head", "hello", "refuse", "pong",
                                        "mutation", "mutation_reply", "read",
                                        "read_reply"};

static void render_slice(char *out, size_t n, kv_slice_t s)
{
    size_t len = strlen(out);
    snprintf(out + len, n - len, "'");
    for (size_t i = 0; i < s.len; i++) {
        len = strlen(out);
        snprintf(out + len, n - len, "%02x", s.data[i]);
    }
    len = strlen(out);
    snprintf(out + len, n - len, "' ");
}

static void render_u(char *out, size_t n, uint64_t v)
{
    size_t len = strlen(out);
    snprintf(out + len, n - len, "%" PRIu64 " ", v);
}

static void render_head(char *out, size_t n, const peer_head_t *h)
{
    out[0] = '\0';
    render_u(out, n, (uint64_t)h->type);
    render_u(out, n, h->msg_id);
    render_u(out, n, h->hlc);
}

static void render_cell(char *out, size_t n, const peer_cell_t *c)
{
    render_u(out, n, c->ts);
    render_u(out, n, c->tombstone);
    render_u(out, n, c->expire_ms);
    render_slice(out, n, c->value);
}

#define POISON(x) memset(&(x), 0x5a, sizeof(x))
#define UNTOUCHED(x) assert_true(all_bytes(&(x), sizeof(x), 0x5a))

static kv_status_t run_decoder(dec_id_t d, const kv_frame_t *f, char *out, size_t n)
{
    peer_head_t h;
    kv_status_t rc = KV_INVALID;
    POISON(h);
    switch (d) {
    case D_HEAD: {
        rc = peer_decode_head(f, &h);
        if (rc == KV_OK) render_head(out, n, &h);
        break;
    }
    case D_HELLO: {
        peer_hello_t o;
        POISON(o);
        rc = peer_decode_hello(f, &h, &o);
        if (rc != KV_OK) {
            UNTOUCHED(o);
            break;
        }
        render_head(out, n, &h);
        render_u(out, n, o.version);
        render_slice(out, n, o.cluster);
        render_slice(out, n, o.node_name);
        render_slice(out, n, o.node_id);
        render_u(out, n, o.ring_digest);
        render_u(out, n, o.client_port);
        render_u(out, n, o.admin_port);
        break;
    }
    case D_REFUSE: {
        peer_refuse_t o;
        POISON(o);
        rc = peer_decode_refuse(f, &h, &o);
        if (rc != KV_OK) {
            UNTOUCHED(o);
            break;
        }
        render_head(out, n, &h);
        render_u(out, n, (uint64_t)o.status);
        render_slice(out, n, o.message);
        break;
    }
    case D_PONG: {
        uint64_t load;
        POISON(load);
        rc = peer_decode_pong(f, &h, &load);
        if (rc != KV_OK) {
            UNTOUCHED(load);
            break;
        }
        render_head(out, n, &h);
        render_u(out, n, load);
        break;
    }
    case D_MUT: {
        peer_mutation_t o;
        POISON(o);
        rc = peer_decode_mutation(f, &h, &o);
        if (rc != KV_OK) {
            UNTOUCHED(o);
            break;
        }
        render_head(out, n, &h);
        render_slice(out, n, o.key);
        render_cell(out, n, &o.cell);
        break;
    }
    case D_MUT_REPLY: {
        peer_mutation_reply_t o;
        POISON(o);
        rc = peer_decode_mutation_reply(f, &h, &o);
        if (rc != KV_OK) {
            UNTOUCHED(o);
            break;
        }
        render_head(out, n, &h);
        render_u(out, n, (uint64_t)o.status);
        render_u(out, n, o.superseded_by);
        break;
    }
    case D_READ: {
        kv_slice_t key;
        POISON(key);
        rc = peer_decode_read(f, &h, &key);
        if (rc != KV_OK) {
            UNTOUCHED(key);
            break;
        }
        render_head(out, n, &h);
        render_slice(out, n, key);
        break;
    }
    case D_READ_REPLY: {
        peer_read_reply_t o;
        POISON(o);
        rc = peer_decode_read_reply(f, &h, &o);
        if (rc != KV_OK) {
            UNTOUCHED(o);
            break;
        }
        render_head(out, n, &h);
        render_u(out, n, (uint64_t)o.status);
        render_cell(out, n, &o.cell);
        break;
    }
    case D_COUNT_: fail_msg("no such decoder");
    }
    if (rc != KV_OK) UNTOUCHED(h);
    return rc;
}

/* Build [type, id, args...] by hand and run decoder d on it. */
static kv_status_t decode_built(dec_id_t d, uint32_t type, uint64_t id,
                                const targ_t *args, size_t n, char *out,
                                size_t outn)
{
    kv_buf_t b = {0};
    kv_frame_t f;
    build(&b, type, id, args, n);
    decode_one(&b, &f);
    out[0] = '\0';
    kv_status_t rc = run_decoder(d, &f, out, outn);
    kv_frame_release(&f);
    kv_buf_deinit(&b);
    return rc;
}

/* ---- valid frames of every type, built by hand -------------------------- */

typedef struct tmpl {
    const char *name;
    uint32_t type;
    uint64_t id;
    dec_id_t dec;
    size_t nargs; /* hlc included */
    targ_t args[MAX_TARGS];
} tmpl_t;

static const tmpl_t TMPLS[] = {
    {"hello", PEER_HELLO, 0, D_HELLO, 8,
     {U(1000), U(1), S("prod"), S("n1"), S("id-1"), U(0xfeedULL), U(7070), U(7072)}},
    {"hello_ok", PEER_HELLO_OK, 0, D_HELLO, 8,
     {U(1001), U(1), S("prod"), S("n2"), S("id-2"), U(0xfeedULL), U(8080), U(8082)}},
    {"refuse", PEER_REFUSE, 0, D_REFUSE, 3, {U(1002), U(KV_DENIED), S("unknown node")}},
    {"ping", PEER_PING, 5, D_HEAD, 1, {U(1003)}},
    {"pong", PEER_PONG, 5, D_PONG, 2, {U(1004), U(123456)}},
    {"mutation", PEER_MUTATION, 9, D_MUT, 6,
     {U(1005), B("key"), U(77), FALSE_, U(0), B("value")}},
    {"mutation_tombstone", PEER_MUTATION, 10, D_MUT, 6,
     {U(1006), B("key"), U(78), TRUE_, U(0), NIL}},
    {"mutation_reply", PEER_MUTATION_REPLY, 9, D_MUT_REPLY, 3,
     {U(1007), U(KV_SUPERSEDED), U(99)}},
    {"read", PEER_READ, 11, D_READ, 2, {U(1008), B("key")}},
    {"read_reply", PEER_READ_REPLY, 11, D_READ_REPLY, 6,
     {U(1009), U(KV_OK), U(77), FALSE_, U(5000), B("value")}},
    {"read_reply_tombstone", PEER_READ_REPLY, 12, D_READ_REPLY, 6,
     {U(1010), U(KV_OK), U(78), TRUE_, U(0), NIL}},
};

static kv_status_t decode_tmpl(const tmpl_t *t, dec_id_t d, char *out, size_t n)
{
    return decode_built(d, t->type, t->id, t->args, t->nargs, out, n);
}

/* ---- round trips --------------------------------------------------------- */

static void test_peer_hello_and_hello_ok_round_trip(void **state)
{
    (void)state;
    static const peer_msg_t types[] = {PEER_HELLO, PEER_HELLO_OK};
    for (size_t t = 0; t < KV_ARRAY_LEN(types); t++) {
        kv_buf_t b = {0};
        peer_hello_t h = {
            .version = t ? UINT32_MAX : CAIRN_PEER_PROTO_VERSION,
            .cluster = t ? kv_slice(NULL, 0) : kv_slice_str("prod"),
            .node_name = kv_slice_str(t ? "node-b" : "node-a"),
            .node_id = kv_slice_str("5b0d7c1e"),
            .ring_digest = t ? UINT64_MAX : 0,
            .client_port = t ? 65535 : 7070,
            .admin_port = t ? 0 : 7072,
        };
        uint64_t hlc = t ? UINT64_MAX : 0;
        assert_int_equal(peer_encode_hello(&b, types[t], hlc, &h, 0), KV_OK);
        kv_frame_t f;
        decode_one(&b, &f);
        assert_int_equal(f.type, types[t]);
        assert_int_equal(f.request_id, 0);
        assert_int_equal(f.nargs, 8);

        peer_head_t head;
        assert_int_equal(peer_decode_head(&f, &head), KV_OK);
        assert_int_equal(head.type, types[t]);
        assert_true(head.hlc == hlc);

        peer_hello_t out;
        memset(&head, 0, sizeof head);
        assert_int_equal(peer_decode_hello(&f, &head, &out), KV_OK);
        assert_int_equal(head.type, types[t]);
        assert_int_equal(head.msg_id, 0);
        assert_true(head.hlc == hlc);
        assert_int_equal(out.version, h.version);
        assert_true(kv_slice_eq(out.cluster, h.cluster));
        assert_true(kv_slice_eq(out.node_name, h.node_name));
        assert_true(kv_slice_eq(out.node_id, h.node_id));
        assert_true(out.ring_digest == h.ring_digest);
        assert_int_equal(out.client_port, h.client_port);
        assert_int_equal(out.admin_port, h.admin_port);
        /* the slices point into the frame, not into the caller's strings */
        assert_true(out.node_name.data >= f.body_ &&
                    out.node_name.data + out.node_name.len <=
                        f.body_ + (f.wire_len - KV_FRAME_HEADER));
        kv_frame_release(&f);
        kv_buf_deinit(&b);
    }
}

static void test_peer_refuse_round_trips(void **state)
{
    (void)state;
    struct {
        kv_status_t status;
        const char *msg;
        uint64_t hlc;
    } cases[] = {
        {KV_DENIED, "cluster 'prod' is not 'test'", 1},
        {KV_PROTO, "protocol version 2, expected 1", UINT64_MAX},
        {KV_CLOCK_SKEW, "", 0},
        {KV_STATUS_COUNT_ - 1, "last status", 42},
        {KV_OK, "x", 7},
    };
    for (size_t i = 0; i < KV_ARRAY_LEN(cases); i++) {
        kv_buf_t b = {0};
        peer_refuse_t r = {cases[i].status, kv_slice_str(cases[i].msg)};
        assert_int_equal(peer_encode_refuse(&b, cases[i].hlc, &r, 0), KV_OK);
        kv_frame_t f;
        decode_one(&b, &f);
        assert_int_equal(f.type, PEER_REFUSE);
        assert_int_equal(f.request_id, 0);
        peer_head_t head;
        peer_refuse_t out;
        assert_int_equal(peer_decode_refuse(&f, &head, &out), KV_OK);
        assert_int_equal(head.type, PEER_REFUSE);
        assert_int_equal(head.msg_id, 0);
        assert_true(head.hlc == cases[i].hlc);
        assert_int_equal(out.status, cases[i].status);
        assert_true(kv_slice_eq(out.message, kv_slice_str(cases[i].msg)));
        kv_frame_release(&f);
        kv_buf_deinit(&b);
    }
}

static void test_peer_ping_and_pong_round_trip(void **state)
{
    (void)state;
    static const uint64_t vals[] = {0, 1, 255, 65536, UINT32_MAX, UINT64_MAX - 1,
                                    UINT64_MAX};
    for (size_t i = 0; i < KV_ARRAY_LEN(vals); i++) {
        uint64_t id = vals[i], hlc = vals[KV_ARRAY_LEN(vals) - 1 - i];
        kv_buf_t b = {0};
        kv_frame_t f;
        peer_head_t head;

        assert_int_equal(peer_encode_ping(&b, id, hlc, 0), KV_OK);
        decode_one(&b, &f);
        assert_int_equal(f.type, PEER_PING);
        assert_int_equal(f.nargs, 1);
        assert_int_equal(peer_decode_head(&f, &head), KV_OK);
        assert_int_equal(head.type, PEER_PING);
        assert_true(head.msg_id == id);
        assert_true(head.hlc == hlc);
        kv_frame_release(&f);

        kv_buf_clear(&b);
        uint64_t load = vals[(i + 3) % KV_ARRAY_LEN(vals)];
        assert_int_equal(peer_encode_pong(&b, id, hlc, load, 0), KV_OK);
        decode_one(&b, &f);
        uint64_t out = ~load;
        memset(&head, 0, sizeof head);
        assert_int_equal(peer_decode_pong(&f, &head, &out), KV_OK);
        assert_int_equal(head.type, PEER_PONG);
        assert_true(head.msg_id == id);
        assert_true(head.hlc == hlc);
        assert_true(out == load);
        kv_frame_release(&f);
        kv_buf_deinit(&b);
    }
}

static void check_cell(const peer_cell_t *got, const peer_cell_t *want)
{
    assert_true(got->ts == want->ts);
    assert_int_equal(got->tombstone, want->tombstone);
    assert_true(got->expire_ms == want->expire_ms);
    assert_true(kv_slice_eq(got->value, want->value));
}

static void test_peer_mutation_round_trips_value_empty_value_and_tombstone(void **state)
{
    (void)state;
    /* a binary key needing bin16 and a value needing bin32 */
    size_t klen = 300, vlen = 70000;
    uint8_t *key = kv_malloc(klen), *val = kv_malloc(vlen);
    for (size_t i = 0; i < klen; i++) key[i] = (uint8_t)(i * 7);
    for (size_t i = 0; i < vlen; i++) val[i] = (uint8_t)(i * 13 + 1);
    struct {
        kv_slice_t key;
        peer_cell_t cell;
        uint64_t id, hlc;
    } cases[] = {
        {kv_slice(key, klen), {UINT64_MAX, false, UINT64_MAX, kv_slice(val, vlen)},
         UINT64_MAX, UINT64_MAX},
        {kv_slice("\0", 1), {1, false, 0, kv_slice(NULL, 0)}, 0, 0},     /* empty value */
        {kv_slice_str("gone"), {0, true, 0, kv_slice(NULL, 0)}, 3, 4},  /* tombstone */
        {kv_slice_str("k"), {123456789, false, 1700000000000ULL, kv_slice("\0v\xff", 3)},
         17, 18},
    };
    for (size_t i = 0; i < KV_ARRAY_LEN(cases); i++) {
        kv_buf_t b = {0};
        peer_mutation_t m = {cases[i].key, cases[i].cell};
        assert_int_equal(peer_encode_mutation(&b, cases[i].id, cases[i].hlc, &m, 0), KV_OK);
        kv_frame_t f;
        decode_one(&b, &f);
        assert_int_equal(f.type, PEER_MUTATION);
        assert_int_equal(f.nargs, 6);
        /* the value is a bin for a live cell (even an empty one), nil for a
         * tombstone; the tombstone flag is a bool */
        assert_int_equal(f.args[1].type, MSGPACK_OBJECT_BIN);
        assert_int_equal(f.args[3].type, MSGPACK_OBJECT_BOOLEAN);
        assert_int_equal(f.args[5].type,
                         m.cell.tombstone ? MSGPACK_OBJECT_NIL : MSGPACK_OBJECT_BIN);
        peer_head_t head;
        peer_mutation_t out;
        assert_int_equal(peer_decode_mutation(&f, &head, &out), KV_OK);
        assert_int_equal(head.type, PEER_MUTATION);
        assert_true(head.msg_id == cases[i].id);
        assert_true(head.hlc == cases[i].hlc);
        assert_true(kv_slice_eq(out.key, m.key));
        check_cell(&out.cell, &m.cell);
        kv_frame_release(&f);
        kv_buf_deinit(&b);
    }
    kv_free(key);
    kv_free(val);
}

static void test_peer_mutation_reply_round_trips(void **state)
{
    (void)state;
    struct {
        kv_status_t status;
        uint64_t superseded_by;
    } cases[] = {
        {KV_OK, 0}, {KV_SUPERSEDED, UINT64_MAX}, {KV_SUPERSEDED, 1},
        {KV_NOSPACE, 0}, {KV_STATUS_COUNT_ - 1, 5},
    };
    for (size_t i = 0; i < KV_ARRAY_LEN(cases); i++) {
        kv_buf_t b = {0};
        peer_mutation_reply_t r = {cases[i].status, cases[i].superseded_by};
        assert_int_equal(peer_encode_mutation_reply(&b, 100 + i, UINT64_MAX - i, &r, 0),
                         KV_OK);
        kv_frame_t f;
        decode_one(&b, &f);
        peer_head_t head;
        peer_mutation_reply_t out;
        assert_int_equal(peer_decode_mutation_reply(&f, &head, &out), KV_OK);
        assert_int_equal(head.type, PEER_MUTATION_REPLY);
        assert_int_equal(head.msg_id, 100 + i);
        assert_true(head.hlc == UINT64_MAX - i);
        assert_int_equal(out.status, cases[i].status);
        assert_true(out.superseded_by == cases[i].superseded_by);
        kv_frame_release(&f);
        kv_buf_deinit(&b);
    }
}

static void test_peer_read_round_trips(void **state)
{
    (void)state;
    static const struct {
        const char *key;
        size_t len;
    } keys[] = {{"k", 1}, {"\0\xff\0", 3}, {"user:42/profile", 15}};
    for (size_t i = 0; i < KV_ARRAY_LEN(keys); i++) {
        kv_buf_t b = {0};
        kv_slice_t key = kv_slice(keys[i].key, keys[i].len);
        assert_int_equal(peer_encode_read(&b, UINT64_MAX - i, i, key, 0), KV_OK);
        kv_frame_t f;
        decode_one(&b, &f);
        assert_int_equal(f.type, PEER_READ);
        assert_int_equal(f.args[1].type, MSGPACK_OBJECT_BIN);
        peer_head_t head;
        kv_slice_t out;
        assert_int_equal(peer_decode_read(&f, &head, &out), KV_OK);
        assert_int_equal(head.type, PEER_READ);
        assert_true(head.msg_id == UINT64_MAX - i);
        assert_int_equal(head.hlc, i);
        assert_true(kv_slice_eq(out, key));
        kv_frame_release(&f);
        kv_buf_deinit(&b);
    }
}

static void test_peer_read_reply_round_trips(void **state)
{
    (void)state;
    peer_read_reply_t cases[] = {
        {KV_OK, {UINT64_MAX, false, UINT64_MAX, kv_slice_str("the value")}},
        {KV_OK, {5, false, 0, kv_slice(NULL, 0)}},        /* empty value */
        {KV_OK, {UINT64_MAX - 1, true, 0, kv_slice(NULL, 0)}}, /* tombstone */
        {KV_NOTFOUND, {0, false, 0, kv_slice(NULL, 0)}},
        {KV_IO, {0, false, 0, kv_slice(NULL, 0)}},
    };
    for (size_t i = 0; i < KV_ARRAY_LEN(cases); i++) {
        kv_buf_t b = {0};
        assert_int_equal(peer_encode_read_reply(&b, i + 1, 1000 + i, &cases[i], 0), KV_OK);
        kv_frame_t f;
        decode_one(&b, &f);
        assert_int_equal(f.type, PEER_READ_REPLY);
        assert_int_equal(f.nargs, 6);
        assert_int_equal(f.args[5].type, cases[i].cell.tombstone ? MSGPACK_OBJECT_NIL
                                                                 : MSGPACK_OBJECT_BIN);
        peer_head_t head;
        peer_read_reply_t out;
        assert_int_equal(peer_decode_read_reply(&f, &head, &out), KV_OK);
        assert_int_equal(head.type, PEER_READ_REPLY);
        assert_int_equal(head.msg_id, i + 1);
        assert_int_equal(head.hlc, 1000 + i);
        assert_int_equal(out.status, cases[i].status);
        check_cell(&out.cell, &cases[i].cell);
        kv_frame_release(&f);
        kv_buf_deinit(&b);
    }
}

/* ---- the wire layout ----------------------------------------------------- */

/* The encoders produce exactly the hand-built frames of TMPLS (names and
 * messages str, keys and values bin, the tombstone a bool). */
static void test_peer_encoders_match_the_documented_layout(void **state)
{
    (void)state;
    for (size_t i = 0; i < KV_ARRAY_LEN(TMPLS); i++) {
        const tmpl_t *t = &TMPLS[i];
        const targ_t *a = t->args;
        uint64_t hlc = a[0].u;
        kv_buf_t want = {0}, got = {0};
        build(&want, t->type, t->id, a, t->nargs);
        kv_status_t rc = KV_INVALID;
        switch (t->type) {
        case PEER_HELLO:
        case PEER_HELLO_OK: {
            peer_hello_t h = {(uint32_t)a[1].u, kv_slice_str(a[2].s), kv_slice_str(a[3].s),
                              kv_slice_str(a[4].s), a[5].u, (uint16_t)a[6].u,
                              (uint16_t)a[7].u};
            rc = peer_encode_hello(&got, (peer_msg_t)t->type, hlc, &h, 0);
            break;
        }
        case PEER_REFUSE: {
            peer_refuse_t r = {(kv_status_t)a[1].u, kv_slice_str(a[2].s)};
            rc = peer_encode_refuse(&got, hlc, &r, 0);
            break;
        }
        case PEER_PING: rc = peer_encode_ping(&got, t->id, hlc, 0); break;
        case PEER_PONG: rc = peer_encode_pong(&got, t->id, hlc, a[1].u, 0); break;
        case PEER_MUTATION: {
            bool tomb = a[3].k == A_TRUE;
            peer_mutation_t m = {kv_slice_str(a[1].s),
                                 {a[2].u, tomb, a[4].u,
                                  tomb ? kv_slice(NULL, 0) : kv_slice_str(a[5].s)}};
            rc = peer_encode_mutation(&got, t->id, hlc, &m, 0);
            break;
        }
        case PEER_MUTATION_REPLY: {
            peer_mutation_reply_t r = {(kv_status_t)a[1].u, a[2].u};
            rc = peer_encode_mutation_reply(&got, t->id, hlc, &r, 0);
            break;
        }
        case PEER_READ: rc = peer_encode_read(&got, t->id, hlc, kv_slice_str(a[1].s), 0); break;
        case PEER_READ_REPLY: {
            bool tomb = a[3].k == A_TRUE;
            peer_read_reply_t r = {(kv_status_t)a[1].u,
                                   {a[2].u, tomb, a[4].u,
                                    tomb ? kv_slice(NULL, 0) : kv_slice_str(a[5].s)}};
            rc = peer_encode_read_reply(&got, t->id, hlc, &r, 0);
            break;
        }
        default: fail_msg("template %s: no encoder", t->name);
        }
        if (rc != KV_OK) fail_msg("template %s: encoder failed", t->name);
        if (got.len != want.len || memcmp(got.data, want.data, got.len) != 0)
            fail_msg("template %s: encoded frame differs from the layout", t->name);
        kv_buf_deinit(&want);
        kv_buf_deinit(&got);
    }
}

/* ---- types --------------------------------------------------------------- */

static void test_peer_decoders_take_only_their_own_type(void **state)
{
    (void)state;
    char out[512];
    /* Every valid frame decodes with its own decoder (and the head decoder),
     * and with no other. */
    for (size_t i = 0; i < KV_ARRAY_LEN(TMPLS); i++) {
        const tmpl_t *t = &TMPLS[i];
        for (int d = 0; d < D_COUNT_; d++) {
            kv_status_t want = (d == D_HEAD || d == (int)t->dec) ? KV_OK : KV_PROTO;
            if (decode_tmpl(t, (dec_id_t)d, out, sizeof out) != want)
                fail_msg("template %s, decoder %s: expected %s", t->name, DEC_NAMES[d],
                         kv_status_str(want));
        }
    }
    /* The same arguments under any other type are refused by the decoder,
     * including types of the client protocol, reserved peer types and types
     * past the peer range. */
    static const uint32_t others[] = {1,   2,   11,  100, 199, 200, 201, 202, 203, 204,
                                      205, 209, 210, 211, 212, 213, 214, 220, 230, 259,
                                      260, 1000, UINT32_MAX};
    for (size_t i = 0; i < KV_ARRAY_LEN(TMPLS); i++) {
        const tmpl_t *t = &TMPLS[i];
        if (t->dec == D_HEAD) continue;
        for (size_t j = 0; j < KV_ARRAY_LEN(others); j++) {
            uint32_t type = others[j];
            bool own = type == t->type ||
                       (t->dec == D_HELLO && (type == PEER_HELLO || type == PEER_HELLO_OK));
            kv_status_t rc = decode_built(t->dec, type, t->id, t->args, t->nargs, out,
                                          sizeof out);
            if (rc != (own ? KV_OK : KV_PROTO))
                fail_msg("template %s as type %u: %s", t->name, type, kv_status_str(rc));
        }
    }
}

static void test_peer_head_checks_type_range_and_hlc(void **state)
{
    (void)state;
    char out[512];
    targ_t hlc[] = {U(77)};
    /* the whole peer range has a head, assigned or reserved */
    for (uint32_t type = PEER_HELLO; type <= PEER_TYPE_LAST; type++) {
        assert_int_equal(decode_built(D_HEAD, type, 3, hlc, 1, out, sizeof out), KV_OK);
        char want[64];
        snprintf(want, sizeof want, "%u 3 77 ", type);
        assert_string_equal(out, want);
    }
    /* outside it, no head */
    static const uint32_t bad[] = {0, 1, 2, 21, 102, 198, 199, PEER_TYPE_LAST + 1, 300,
                                   UINT32_MAX};
    for (size_t i = 0; i < KV_ARRAY_LEN(bad); i++)
        if (decode_built(D_HEAD, bad[i], 3, hlc, 1, out, sizeof out) != KV_PROTO)
            fail_msg("type %u has a head", bad[i]);
    /* the hlc is missing or not an unsigned integer */
    targ_t bad_hlc[] = {NEG, S("1"), B("1"), NIL, TRUE_, FALSE_, ARR};
    assert_int_equal(decode_built(D_HEAD, PEER_PING, 3, NULL, 0, out, sizeof out), KV_PROTO);
    for (size_t i = 0; i < KV_ARRAY_LEN(bad_hlc); i++)
        if (decode_built(D_HEAD, PEER_PING, 3, &bad_hlc[i], 1, out, sizeof out) != KV_PROTO)
            fail_msg("hlc of kind %d accepted", (int)bad_hlc[i].k);
    /* extremes of the hlc and msg_id */
    targ_t max_hlc[] = {U(UINT64_MAX)};
    assert_int_equal(decode_built(D_HEAD, PEER_PING, UINT64_MAX, max_hlc, 1, out, sizeof out),
                     KV_OK);
    assert_string_equal(out, "203 18446744073709551615 18446744073709551615 ");
}

/* ---- malformed arguments ------------------------------------------------- */

static void test_peer_decoders_reject_missing_arguments(void **state)
{
    (void)state;
    char out[512];
    for (size_t i = 0; i < KV_ARRAY_LEN(TMPLS); i++) {
        const tmpl_t *t = &TMPLS[i];
        assert_int_equal(decode_tmpl(t, t->dec, out, sizeof out), KV_OK);
        for (size_t n = 0; n < t->nargs; n++) {
            kv_status_t rc = decode_built(t->dec, t->type, t->id, t->args, n, out, sizeof out);
            if (rc != KV_PROTO)
                fail_msg("template %s with %zu of %zu arguments: %s", t->name, n, t->nargs,
                         kv_status_str(rc));
        }
    }
}

/* Values of another type than an argument of kind k (str and bin stand for
 * each other; nil is a value only for a tombstone, covered elsewhere). */
static size_t wrong_for(akind_t k, targ_t *w)
{
    static const targ_t for_uint[] = {NEG, S("1"), B("1"), NIL, TRUE_, FALSE_, ARR};
    static const targ_t for_bytes[] = {U(1), NEG, NIL, TRUE_, FALSE_, ARR};
    static const targ_t for_bool[] = {U(0), U(1), NEG, S("true"), B("1"), NIL, ARR};
    static const targ_t for_nil[] = {U(0), NEG, TRUE_, FALSE_, ARR};
    const targ_t *src;
    size_t n;
    switch (k) {
    case A_U: src = for_uint, n = KV_ARRAY_LEN(for_uint); break;
    case A_STR:
    case A_BIN: src = for_bytes, n = KV_ARRAY_LEN(for_bytes); break;
    case A_TRUE:
    case A_FALSE: src = for_bool, n = KV_ARRAY_LEN(for_bool); break;
    case A_NIL: src = for_nil, n = KV_ARRAY_LEN(for_nil); break;
    default: fail_msg("no template argument is of kind %d", (int)k); abort();
    }
    memcpy(w, src, n * sizeof *src);
    return n;
}

static void test_peer_decoders_reject_wrong_argument_types(void **state)
{
    (void)state;
    char out[512];
    size_t tried = 0;
    for (size_t i = 0; i < KV_ARRAY_LEN(TMPLS); i++) {
        const tmpl_t *t = &TMPLS[i];
        for (size_t pos = 0; pos < t->nargs; pos++) {
            targ_t wrong[8];
            size_t nw = wrong_for(t->args[pos].k, wrong);
            for (size_t j = 0; j < nw; j++) {
                targ_t args[MAX_TARGS];
                memcpy(args, t->args, sizeof args);
                args[pos] = wrong[j];
                kv_status_t rc =
                    decode_built(t->dec, t->type, t->id, args, t->nargs, out, sizeof out);
                if (rc != KV_PROTO)
                    fail_msg("template %s, argument %zu as kind %d: %s", t->name, pos,
                             (int)wrong[j].k, kv_status_str(rc));
                tried++;
            }
        }
    }
    assert_true(tried > 200);
}

typedef struct subst {
    const char *tmpl;
    size_t pos;
    targ_t val;
    kv_status_t want;
} subst_t;

static const tmpl_t *tmpl_named(const char *name)
{
    for (size_t i = 0; i < KV_ARRAY_LEN(TMPLS); i++)
        if (!strcmp(TMPLS[i].name, name)) return &TMPLS[i];
    fail_msg("no template %s", name);
    abort(); /* not reached: fail_msg leaves the test */
}

static void test_peer_decoders_reject_out_of_range_values(void **state)
{
    (void)state;
    static const subst_t cases[] = {
        /* status: below KV_STATUS_COUNT_ only */
        {"refuse", 1, U(KV_STATUS_COUNT_), KV_PROTO},
        {"refuse", 1, U(1ULL << 40), KV_PROTO},
        {"refuse", 1, U(UINT64_MAX), KV_PROTO},
        {"refuse", 1, U(KV_STATUS_COUNT_ - 1), KV_OK},
        {"mutation_reply", 1, U(KV_STATUS_COUNT_), KV_PROTO},
        {"mutation_reply", 1, U((1ULL << 32) + KV_OK), KV_PROTO},
        {"mutation_reply", 1, U(KV_STATUS_COUNT_ - 1), KV_OK},
        {"read_reply", 1, U(KV_STATUS_COUNT_), KV_PROTO},
        {"read_reply", 1, U(UINT64_MAX), KV_PROTO},
        {"read_reply", 1, U(KV_STATUS_COUNT_ - 1), KV_OK},
        /* version: a u32 */
        {"hello", 1, U((uint64_t)UINT32_MAX + 1), KV_PROTO},
        {"hello_ok", 1, U(UINT64_MAX), KV_PROTO},
        {"hello", 1, U(UINT32_MAX), KV_OK},
        {"hello", 1, U(0), KV_OK},
        /* ports: at most 65535 */
        {"hello", 6, U(65536), KV_PROTO},
        {"hello", 6, U(UINT64_MAX), KV_PROTO},
        {"hello", 7, U(65536), KV_PROTO},
        {"hello_ok", 7, U((1ULL << 32) + 80), KV_PROTO},
        {"hello", 6, U(65535), KV_OK},
        {"hello", 7, U(65535), KV_OK},
        {"hello", 7, U(0), KV_OK},
        /* node name: not empty; str or bin */
        {"hello", 3, S(""), KV_PROTO},
        {"hello_ok", 3, B(""), KV_PROTO},
        {"hello", 3, B("n1"), KV_OK},
        {"hello", 2, B("prod"), KV_OK},
        /* key: not empty; bin or str */
        {"mutation", 1, B(""), KV_PROTO},
        {"mutation_tombstone", 1, S(""), KV_PROTO},
        {"read", 1, B(""), KV_PROTO},
        {"read", 1, S(""), KV_PROTO},
        {"mutation", 1, S("key"), KV_OK},
        {"read", 1, S("key"), KV_OK},
        /* a tombstone carries nil, a live cell a (possibly empty) value */
        {"mutation_tombstone", 5, B("v"), KV_PROTO},
        {"mutation_tombstone", 5, B(""), KV_PROTO},
        {"mutation_tombstone", 5, S("v"), KV_PROTO},
        {"mutation", 5, NIL, KV_PROTO},
        {"mutation", 5, B(""), KV_OK},
        {"mutation", 5, S("v"), KV_OK},
        {"read_reply_tombstone", 5, B("v"), KV_PROTO},
        {"read_reply_tombstone", 5, B(""), KV_PROTO},
        {"read_reply", 5, NIL, KV_PROTO},
        {"read_reply", 5, B(""), KV_OK},
        /* the flag decides, whatever the value looks like */
        {"mutation", 3, TRUE_, KV_PROTO},
        {"mutation_tombstone", 3, FALSE_, KV_PROTO},
        {"read_reply", 3, TRUE_, KV_PROTO},
        {"read_reply_tombstone", 3, FALSE_, KV_PROTO},
        /* a refusal may come without a message; either string type */
        {"refuse", 2, S(""), KV_OK},
        {"refuse", 2, B("why"), KV_OK},
    };
    char out[512];
    for (size_t i = 0; i < KV_ARRAY_LEN(cases); i++) {
        const tmpl_t *t = tmpl_named(cases[i].tmpl);
        targ_t args[MAX_TARGS];
        memcpy(args, t->args, sizeof args);
        args[cases[i].pos] = cases[i].val;
        kv_status_t rc = decode_built(t->dec, t->type, t->id, args, t->nargs, out, sizeof out);
        if (rc != cases[i].want)
            fail_msg("case %zu (%s, argument %zu): %s, expected %s", i, cases[i].tmpl,
                     cases[i].pos, kv_status_str(rc), kv_status_str(cases[i].want));
    }
}

/* ---- forward compatibility ----------------------------------------------- */

static void test_peer_decoders_ignore_trailing_arguments(void **state)
{
    (void)state;
    static const targ_t extra[] = {S("future"), ARR, NIL, U(UINT64_MAX), NEG, TRUE_};
    for (size_t i = 0; i < KV_ARRAY_LEN(TMPLS); i++) {
        const tmpl_t *t = &TMPLS[i];
        char plain[512], more[512];
        assert_int_equal(decode_tmpl(t, t->dec, plain, sizeof plain), KV_OK);
        for (size_t n = 1; n <= KV_ARRAY_LEN(extra); n++) {
            targ_t args[MAX_TARGS + KV_ARRAY_LEN(extra)];
            memcpy(args, t->args, t->nargs * sizeof *args);
            memcpy(args + t->nargs, extra, n * sizeof *args);
            kv_status_t rc = decode_built(t->dec, t->type, t->id, args, t->nargs + n, more,
                                          sizeof more);
            if (rc != KV_OK)
                fail_msg("template %s with %zu extra: %s", t->name, n, kv_status_str(rc));
            /* the same message, the extras unseen */
            assert_string_equal(more, plain);
        }
    }
    /* and the rendering does show what was decoded */
    char out[512];
    assert_int_equal(decode_tmpl(tmpl_named("mutation"), D_MUT, out, sizeof out), KV_OK);
    assert_string_equal(out, "210 9 1005 '6b6579' 77 0 0 '76616c7565' ");
}

/* ---- encoder refusals ---------------------------------------------------- */

typedef kv_status_t (*enc_fn)(kv_buf_t *buf, uint32_t max_body);

static const uint8_t BIG[600] = {1, 2, 3};

static kv_status_t enc_hello(kv_buf_t *b, uint32_t m)
{
    peer_hello_t h = {1, kv_slice(BIG, 100), kv_slice(BIG, 100), kv_slice(BIG, 100),
                      UINT64_MAX, 7070, 7072};
    return peer_encode_hello(b, PEER_HELLO, UINT64_MAX, &h, m);
}
static kv_status_t enc_hello_ok(kv_buf_t *b, uint32_t m)
{
    peer_hello_t h = {1, kv_slice_str("c"), kv_slice_str("n"), kv_slice_str("i"), 0, 1, 2};
    return peer_encode_hello(b, PEER_HELLO_OK, 1, &h, m);
}
static kv_status_t enc_refuse(kv_buf_t *b, uint32_t m)
{
    peer_refuse_t r = {KV_DENIED, kv_slice(BIG, 300)};
    return peer_encode_refuse(b, 5, &r, m);
}
static kv_status_t enc_ping(kv_buf_t *b, uint32_t m)
{
    return peer_encode_ping(b, UINT64_MAX, UINT64_MAX, m);
}
static kv_status_t enc_pong(kv_buf_t *b, uint32_t m)
{
    return peer_encode_pong(b, 1, 2, UINT64_MAX, m);
}
static kv_status_t enc_mutation(kv_buf_t *b, uint32_t m)
{
    peer_mutation_t mu = {kv_slice(BIG, 10), {1, false, 0, kv_slice(BIG, sizeof BIG)}};
    return peer_encode_mutation(b, 3, 4, &mu, m);
}
static kv_status_t enc_tombstone(kv_buf_t *b, uint32_t m)
{
    peer_mutation_t mu = {kv_slice(BIG, 200), {1, true, 0, kv_slice(NULL, 0)}};
    return peer_encode_mutation(b, 3, 4, &mu, m);
}
static kv_status_t enc_mutation_reply(kv_buf_t *b, uint32_t m)
{
    peer_mutation_reply_t r = {KV_SUPERSEDED, UINT64_MAX};
    return peer_encode_mutation_reply(b, 3, 4, &r, m);
}
static kv_status_t enc_read(kv_buf_t *b, uint32_t m)
{
    return peer_encode_read(b, 3, 4, kv_slice(BIG, 400), m);
}
static kv_status_t enc_read_reply(kv_buf_t *b, uint32_t m)
{
    peer_read_reply_t r = {KV_OK, {9, false, 10, kv_slice(BIG, sizeof BIG)}};
    return peer_encode_read_reply(b, 3, 4, &r, m);
}

static void test_peer_encoders_refuse_oversized_frames(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        enc_fn fn;
    } encs[] = {
        {"hello", enc_hello}, {"hello_ok", enc_hello_ok}, {"refuse", enc_refuse},
        {"ping", enc_ping}, {"pong", enc_pong}, {"mutation", enc_mutation},
        {"tombstone", enc_tombstone}, {"mutation_reply", enc_mutation_reply},
        {"read", enc_read}, {"read_reply", enc_read_reply},
    };
    for (size_t i = 0; i < KV_ARRAY_LEN(encs); i++) {
        kv_buf_t b = {0};
        /* the body size with no limit to speak of */
        assert_int_equal(encs[i].fn(&b, 0), KV_OK);
        uint32_t body = (uint32_t)(b.len - KV_FRAME_HEADER);
        assert_true(body > 1);
        kv_buf_clear(&b);
        kv_buf_append(&b, "xyz", 3); /* an earlier frame's bytes stay */
        static const uint32_t less[] = {1, 2, 10};
        for (size_t j = 0; j < KV_ARRAY_LEN(less); j++) {
            if (less[j] >= body) continue;
            if (encs[i].fn(&b, body - less[j]) != KV_INVALID)
                fail_msg("%s: body %u fits in %u", encs[i].name, body, body - less[j]);
            assert_int_equal(b.len, 3);
            assert_memory_equal(b.data, "xyz", 3);
        }
        /* exactly the limit fits, after the earlier bytes */
        if (encs[i].fn(&b, body) != KV_OK) fail_msg("%s: body %u refused", encs[i].name, body);
        assert_int_equal(b.len, 3 + KV_FRAME_HEADER + body);
        assert_memory_equal(b.data, "xyz", 3);
        kv_buf_deinit(&b);
    }
}

static void test_peer_encoders_refuse_out_of_range_fields(void **state)
{
    (void)state;
    kv_buf_t b = {0};
    kv_buf_append(&b, "ab", 2);
#define REFUSED(call)                                                          \
    do {                                                                       \
        assert_int_equal((call), KV_INVALID);                                  \
        assert_int_equal(b.len, 2);                                            \
        assert_memory_equal(b.data, "ab", 2);                                  \
    } while (0)

    peer_hello_t h = {1, kv_slice_str("c"), kv_slice_str("n"), kv_slice_str("i"), 0, 1, 2};
    static const peer_msg_t not_hello[] = {PEER_REFUSE, PEER_PING, PEER_MUTATION,
                                           PEER_TYPE_LAST, (peer_msg_t)0, (peer_msg_t)199};
    for (size_t i = 0; i < KV_ARRAY_LEN(not_hello); i++)
        REFUSED(peer_encode_hello(&b, not_hello[i], 1, &h, 0));
    h.node_name = kv_slice(NULL, 0);
    REFUSED(peer_encode_hello(&b, PEER_HELLO, 1, &h, 0));
    REFUSED(peer_encode_hello(&b, PEER_HELLO_OK, 1, &h, 0));

    peer_refuse_t rf = {KV_STATUS_COUNT_, kv_slice_str("m")};
    REFUSED(peer_encode_refuse(&b, 1, &rf, 0));
    rf.status = (kv_status_t)-1;
    REFUSED(peer_encode_refuse(&b, 1, &rf, 0));

    peer_mutation_t m = {kv_slice(NULL, 0), {1, false, 0, kv_slice_str("v")}};
    REFUSED(peer_encode_mutation(&b, 1, 1, &m, 0));
    m.key = kv_slice_str("k");
    m.cell.tombstone = true; /* with a value */
    REFUSED(peer_encode_mutation(&b, 1, 1, &m, 0));

    peer_mutation_reply_t mr = {KV_STATUS_COUNT_, 0};
    REFUSED(peer_encode_mutation_reply(&b, 1, 1, &mr, 0));

    REFUSED(peer_encode_read(&b, 1, 1, kv_slice(NULL, 0), 0));
    REFUSED(peer_encode_read(&b, 1, 1, kv_slice("k", 0), 0));

    peer_read_reply_t rr = {KV_STATUS_COUNT_, {0, false, 0, kv_slice(NULL, 0)}};
    REFUSED(peer_encode_read_reply(&b, 1, 1, &rr, 0));
    rr.status = KV_OK;
    rr.cell.tombstone = true;
    rr.cell.value = kv_slice_str("v");
    REFUSED(peer_encode_read_reply(&b, 1, 1, &rr, 0));
#undef REFUSED

    /* the same messages with the field put right are encoded */
    h.node_name = kv_slice_str("n");
    assert_int_equal(peer_encode_hello(&b, PEER_HELLO_OK, 1, &h, 0), KV_OK);
    rf.status = KV_STATUS_COUNT_ - 1;
    assert_int_equal(peer_encode_refuse(&b, 1, &rf, 0), KV_OK);
    m.cell.value = kv_slice(NULL, 0);
    assert_int_equal(peer_encode_mutation(&b, 1, 1, &m, 0), KV_OK);
    mr.status = KV_SUPERSEDED;
    assert_int_equal(peer_encode_mutation_reply(&b, 1, 1, &mr, 0), KV_OK);
    assert_int_equal(peer_encode_read(&b, 1, 1, kv_slice("k", 1), 0), KV_OK);
    rr.cell.value = kv_slice(NULL, 0);
    assert_int_equal(peer_encode_read_reply(&b, 1, 1, &rr, 0), KV_OK);

    /* and they are six whole frames after the earlier bytes */
    kv_frame_decoder_t *d = kv_frame_decoder_create(0);
    assert_int_equal(kv_frame_decoder_feed(d, b.data + 2, b.len - 2), KV_OK);
    static const uint32_t types[] = {PEER_HELLO_OK, PEER_REFUSE, PEER_MUTATION,
                                     PEER_MUTATION_REPLY, PEER_READ, PEER_READ_REPLY};
    kv_frame_t f;
    kv_frame_init(&f);
    for (size_t i = 0; i < KV_ARRAY_LEN(types); i++) {
        assert_int_equal(kv_frame_decoder_next(d, &f), KV_OK);
        assert_int_equal(f.type, types[i]);
    }
    assert_int_equal(kv_frame_decoder_next(d, &f), KV_AGAIN);
    kv_frame_release(&f);
    kv_frame_decoder_destroy(d);
    kv_buf_deinit(&b);
}

static void test_peer_hints_round_trip_and_refuse_malformed_batches(void **state)
{
    (void)state;
    peer_hint_t h[3] = {
        {kv_slice_str("a"), {10, false, 0, kv_slice_str("one")}},
        {kv_slice_str("b"), {UINT64_MAX, true, 0, kv_slice(NULL, 0)}},
        {kv_slice("\0k", 2), {7, false, 1700000000000ULL, kv_slice(NULL, 0)}},
    };
    kv_buf_t b = {0};
    assert_int_equal(peer_encode_hints(&b, 42, 99, h, 3, 0), KV_OK);
    kv_frame_t f;
    decode_one(&b, &f);
    assert_int_equal(f.type, PEER_HINTS);
    assert_int_equal(f.nargs, 1 + 1 + 3 * 5);
    peer_head_t head;
    uint32_t n = 0;
    assert_int_equal(peer_decode_hints(&f, &head, &n), KV_OK);
    assert_int_equal(n, 3);
    assert_int_equal(head.msg_id, 42);
    assert_int_equal(head.hlc, 99);
    for (uint32_t i = 0; i < n; i++) {
        peer_hint_t out;
        assert_int_equal(peer_decode_hint_at(&f, i, &out), KV_OK);
        assert_true(kv_slice_eq(out.key, h[i].key));
        check_cell(&out.cell, &h[i].cell);
    }
    peer_hint_t past;
    assert_int_equal(peer_decode_hint_at(&f, 3, &past), KV_PROTO);
    kv_frame_release(&f);

    /* a count larger than the records present, a zero count, an empty key,
     * a tombstone carrying a value: refused */
    targ_t more[] = {U(1), U(2), B("k"), U(1), FALSE_, U(0), B("v")};
    kv_buf_clear(&b);
    build(&b, PEER_HINTS, 1, more, KV_ARRAY_LEN(more));
    decode_one(&b, &f);
    assert_int_equal(peer_decode_hints(&f, &head, &n), KV_PROTO);
    kv_frame_release(&f);
    targ_t zero[] = {U(1), U(0)};
    kv_buf_clear(&b);
    build(&b, PEER_HINTS, 1, zero, KV_ARRAY_LEN(zero));
    decode_one(&b, &f);
    assert_int_equal(peer_decode_hints(&f, &head, &n), KV_PROTO);
    kv_frame_release(&f);
    targ_t bad[] = {U(1), U(2), B("k"), U(1), FALSE_, U(0), B("v"),
                    B(""), U(1), FALSE_, U(0), B("v")};
    kv_buf_clear(&b);
    build(&b, PEER_HINTS, 1, bad, KV_ARRAY_LEN(bad));
    decode_one(&b, &f);
    assert_int_equal(peer_decode_hints(&f, &head, &n), KV_OK);
    peer_hint_t one;
    assert_int_equal(peer_decode_hint_at(&f, 0, &one), KV_OK);
    assert_int_equal(peer_decode_hint_at(&f, 1, &one), KV_PROTO);
    kv_frame_release(&f);
    targ_t tomb[] = {U(1), U(1), B("k"), U(1), TRUE_, U(0), B("v")};
    kv_buf_clear(&b);
    build(&b, PEER_HINTS, 1, tomb, KV_ARRAY_LEN(tomb));
    decode_one(&b, &f);
    assert_int_equal(peer_decode_hints(&f, &head, &n), KV_OK);
    assert_int_equal(peer_decode_hint_at(&f, 0, &one), KV_PROTO);
    kv_frame_release(&f);

    /* encoders refuse what decoders refuse, and oversized batches */
    kv_buf_clear(&b);
    assert_int_equal(peer_encode_hints(&b, 1, 1, h, 0, 0), KV_INVALID);
    peer_hint_t e = {kv_slice(NULL, 0), {1, false, 0, kv_slice(NULL, 0)}};
    assert_int_equal(peer_encode_hints(&b, 1, 1, &e, 1, 0), KV_INVALID);
    assert_int_equal(peer_encode_hints(&b, 1, 1, h, 3, 16), KV_INVALID);
    assert_int_equal(b.len, 0);

    /* the reply */
    peer_hints_reply_t r = {KV_NOSPACE, 5, 7};
    assert_int_equal(peer_encode_hints_reply(&b, 8, 9, &r, 0), KV_OK);
    decode_one(&b, &f);
    peer_hints_reply_t ro;
    assert_int_equal(peer_decode_hints_reply(&f, &head, &ro), KV_OK);
    assert_int_equal(ro.status, KV_NOSPACE);
    assert_int_equal(ro.stored, 5);
    assert_int_equal(ro.superseded, 7);
    assert_int_equal(peer_decode_hints(&f, &head, &n), KV_PROTO);
    kv_frame_release(&f);
    r.status = KV_STATUS_COUNT_;
    kv_buf_clear(&b);
    assert_int_equal(peer_encode_hints_reply(&b, 8, 9, &r, 0), KV_INVALID);
    kv_buf_deinit(&b);
}

static void test_peer_stream_messages_round_trip_and_refuse_damage(void **state)
{
    (void)state;
    kv_buf_t b = {0};
    kv_frame_t f;
    peer_head_t head;
    /* STREAM_REQ */
    assert_int_equal(peer_encode_stream_req(&b, 7, 8, UINT64_MAX - 1, 5, 0), KV_OK);
    decode_one(&b, &f);
    uint64_t start, end;
    assert_int_equal(peer_decode_stream_req(&f, &head, &start, &end), KV_OK);
    assert_int_equal(head.msg_id, 7);
    assert_int_equal(start, UINT64_MAX - 1);
    assert_int_equal(end, 5);
    kv_frame_release(&f);
    /* several ranges in one request; a count past the pairs is refused */
    uint64_t se[6] = {1, 2, 10, 20, UINT64_MAX, 3};
    kv_buf_clear(&b);
    assert_int_equal(peer_encode_stream_req_ranges(&b, 9, 1, se, 3, 0), KV_OK);
    decode_one(&b, &f);
    uint64_t *got_se;
    size_t nse;
    assert_int_equal(peer_decode_stream_req_ranges(&f, &head, &got_se, &nse), KV_OK);
    assert_int_equal(nse, 3);
    assert_memory_equal(got_se, se, sizeof se);
    kv_free(got_se);
    assert_int_equal(peer_decode_stream_req(&f, &head, &start, &end), KV_OK);
    assert_int_equal(end, 2); /* an older decoder sees the first range */
    kv_frame_release(&f);
    targ_t short_[] = {U(1), U(1), U(2), U(2), U(10)};
    kv_buf_clear(&b);
    build(&b, PEER_STREAM_REQ, 1, short_, KV_ARRAY_LEN(short_));
    decode_one(&b, &f);
    assert_int_equal(peer_decode_stream_req_ranges(&f, &head, &got_se, &nse), KV_PROTO);
    kv_frame_release(&f);
    kv_buf_clear(&b);
    assert_int_equal(peer_encode_stream_req_ranges(&b, 9, 1, se, 0, 0), KV_INVALID);
    kv_buf_clear(&b);
    /* STREAM_CHUNK: cells and checksum */
    peer_hint_t cells[2] = {
        {kv_slice_str("a"), {10, false, 0, kv_slice_str("one")}},
        {kv_slice_str("b"), {11, true, 1700000000000ULL, kv_slice(NULL, 0)}},
    };
    peer_stream_chunk_t c = {.seq = 3, .last = true, .n = 2};
    kv_buf_clear(&b);
    assert_int_equal(peer_encode_stream_chunk(&b, 7, 9, &c, cells, 0), KV_OK);
    decode_one(&b, &f);
    peer_stream_chunk_t co;
    assert_int_equal(peer_decode_stream_chunk(&f, &head, &co), KV_OK);
    assert_int_equal(co.seq, 3);
    assert_true(co.last);
    assert_int_equal(co.n, 2);
    peer_hint_t got[2];
    for (uint32_t i = 0; i < 2; i++) {
        assert_int_equal(peer_decode_stream_cell_at(&f, i, &got[i]), KV_OK);
        assert_true(kv_slice_eq(got[i].key, cells[i].key));
        check_cell(&got[i].cell, &cells[i].cell);
    }
    assert_int_equal(peer_stream_checksum(got, 2), co.checksum);
    assert_int_equal(peer_decode_stream_cell_at(&f, 2, &got[0]), KV_PROTO);
    /* one changed byte of a value changes the checksum */
    got[0].cell.value = kv_slice_str("onE");
    assert_true(peer_stream_checksum(got, 2) != co.checksum);
    got[0].cell.ts++;
    got[0].cell.value = kv_slice_str("one");
    assert_true(peer_stream_checksum(got, 2) != co.checksum);
    kv_frame_release(&f);
    /* an empty last chunk (an empty range) */
    peer_stream_chunk_t empty = {.seq = 0, .last = true, .n = 0};
    kv_buf_clear(&b);
    assert_int_equal(peer_encode_stream_chunk(&b, 1, 1, &empty, NULL, 0), KV_OK);
    decode_one(&b, &f);
    assert_int_equal(peer_decode_stream_chunk(&f, &head, &co), KV_OK);
    assert_int_equal(co.n, 0);
    assert_int_equal(co.checksum, peer_stream_checksum(NULL, 0));
    kv_frame_release(&f);
    /* a count above the cells present is refused */
    targ_t more[] = {U(1), U(0), TRUE_, U(0), U(2), B("k"), U(1), FALSE_, U(0), B("v")};
    kv_buf_clear(&b);
    build(&b, PEER_STREAM_CHUNK, 1, more, KV_ARRAY_LEN(more));
    decode_one(&b, &f);
    assert_int_equal(peer_decode_stream_chunk(&f, &head, &co), KV_PROTO);
    kv_frame_release(&f);
    /* encoders refuse an empty key and a tombstone with a value */
    peer_hint_t bad = {kv_slice(NULL, 0), {1, false, 0, kv_slice_str("v")}};
    peer_stream_chunk_t one = {.n = 1};
    kv_buf_clear(&b);
    assert_int_equal(peer_encode_stream_chunk(&b, 1, 1, &one, &bad, 0), KV_INVALID);
    bad = (peer_hint_t){kv_slice_str("k"), {1, true, 0, kv_slice_str("v")}};
    assert_int_equal(peer_encode_stream_chunk(&b, 1, 1, &one, &bad, 0), KV_INVALID);
    assert_int_equal(b.len, 0);
    /* ACK, ABORT */
    assert_int_equal(peer_encode_stream_ack(&b, 7, 1, 3, KV_CORRUPT, 0), KV_OK);
    decode_one(&b, &f);
    uint64_t seq;
    kv_status_t st;
    assert_int_equal(peer_decode_stream_ack(&f, &head, &seq, &st), KV_OK);
    assert_int_equal(seq, 3);
    assert_int_equal(st, KV_CORRUPT);
    assert_int_equal(peer_decode_stream_req(&f, &head, &start, &end), KV_PROTO);
    kv_frame_release(&f);
    kv_buf_clear(&b);
    assert_int_equal(peer_encode_stream_abort(&b, 7, 1, KV_OK, kv_slice_str("x"), 0),
                     KV_INVALID);
    assert_int_equal(peer_encode_stream_abort(&b, 7, 1, KV_BUSY, kv_slice_str("busy"), 0),
                     KV_OK);
    decode_one(&b, &f);
    kv_slice_t msg;
    assert_int_equal(peer_decode_stream_abort(&f, &head, &st, &msg), KV_OK);
    assert_int_equal(st, KV_BUSY);
    assert_true(kv_slice_eq(msg, kv_slice_str("busy")));
    kv_frame_release(&f);
    /* FETCH and its reply */
    peer_fetch_t fe = {.start = 1, .end = 2, .nsources = 2,
                       .sources = {kv_slice_str("n1"), kv_slice_str("n3")}};
    kv_buf_clear(&b);
    assert_int_equal(peer_encode_fetch(&b, 5, 6, &fe, 0), KV_OK);
    decode_one(&b, &f);
    peer_fetch_t fo;
    assert_int_equal(peer_decode_fetch(&f, &head, &fo), KV_OK);
    assert_int_equal(fo.nsources, 2);
    assert_true(kv_slice_eq(fo.sources[1], kv_slice_str("n3")));
    kv_frame_release(&f);
    /* extra ranges travel after the sources */
    uint64_t extra[4] = {30, 40, 50, 60};
    fe.nextra = 2;
    fe.extra = extra;
    kv_buf_clear(&b);
    assert_int_equal(peer_encode_fetch(&b, 5, 6, &fe, 0), KV_OK);
    decode_one(&b, &f);
    assert_int_equal(peer_decode_fetch(&f, &head, &fo), KV_OK);
    assert_int_equal(fo.nextra, 2);
    uint64_t xs, xe;
    peer_fetch_extra_at(&f, &fo, 1, &xs, &xe);
    assert_int_equal(xs, 50);
    assert_int_equal(xe, 60);
    kv_frame_release(&f);
    fe.nextra = 0;
    fe.nsources = 0;
    kv_buf_clear(&b);
    assert_int_equal(peer_encode_fetch(&b, 5, 6, &fe, 0), KV_INVALID);
    targ_t many[] = {U(1), U(1), U(2), U(40), S("n1")};
    build(&b, PEER_FETCH, 1, many, KV_ARRAY_LEN(many));
    decode_one(&b, &f);
    assert_int_equal(peer_decode_fetch(&f, &head, &fo), KV_PROTO);
    kv_frame_release(&f);
    peer_fetch_reply_t fr = {KV_UNAVAILABLE, 10, 20, kv_slice_str("n3 is down")};
    kv_buf_clear(&b);
    assert_int_equal(peer_encode_fetch_reply(&b, 5, 6, &fr, 0), KV_OK);
    decode_one(&b, &f);
    peer_fetch_reply_t fro;
    assert_int_equal(peer_decode_fetch_reply(&f, &head, &fro), KV_OK);
    assert_int_equal(fro.status, KV_UNAVAILABLE);
    assert_int_equal(fro.keys, 10);
    assert_int_equal(fro.bytes, 20);
    assert_true(kv_slice_eq(fro.message, kv_slice_str("n3 is down")));
    kv_frame_release(&f);
    kv_buf_deinit(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        kv_unit_test(test_peer_hello_and_hello_ok_round_trip),
        kv_unit_test(test_peer_refuse_round_trips),
        kv_unit_test(test_peer_ping_and_pong_round_trip),
        kv_unit_test(test_peer_mutation_round_trips_value_empty_value_and_tombstone),
        kv_unit_test(test_peer_mutation_reply_round_trips),
        kv_unit_test(test_peer_read_round_trips),
        kv_unit_test(test_peer_read_reply_round_trips),
        kv_unit_test(test_peer_encoders_match_the_documented_layout),
        kv_unit_test(test_peer_decoders_take_only_their_own_type),
        kv_unit_test(test_peer_head_checks_type_range_and_hlc),
        kv_unit_test(test_peer_decoders_reject_missing_arguments),
        kv_unit_test(test_peer_decoders_reject_wrong_argument_types),
        kv_unit_test(test_peer_decoders_reject_out_of_range_values),
        kv_unit_test(test_peer_decoders_ignore_trailing_arguments),
        kv_unit_test(test_peer_encoders_refuse_oversized_frames),
        kv_unit_test(test_peer_encoders_refuse_out_of_range_fields),
        kv_unit_test(test_peer_hints_round_trip_and_refuse_malformed_batches),
        kv_unit_test(test_peer_stream_messages_round_trip_and_refuse_damage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
