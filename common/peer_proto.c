/* peer_proto.c -- encoding and decoding of node-to-node messages
 * (peer_proto.h).
 *
 * DESIGN  Encoders check their fields first, so a refused message leaves the
 *         buffer as it was, then pack straight into the caller's buffer
 *         through the frame writer; the hlc is always the frame's first
 *         argument. Decoders read the head (type range, hlc) once, then the
 *         typed arguments, and check every range (status, port, version,
 *         non-empty key or node name, tombstone iff the value is nil), so
 *         nothing the peer sent reaches the node unchecked. An encoder refuses
 *         what its decoder would refuse, so a node never sends a frame its
 *         peer must drop the connection over. Results are written only on
 *         success. Arguments past the known ones are ignored (forward
 *         compatible).
 */
#include "peer_proto.h"

#include <xxhash.h>

#include "coding.h"

/* Index of the first message-specific argument: args[0] is the hlc. */
#define ARG0 1u

static void pack_slice_str(msgpack_packer *pk, kv_slice_t s)
{
    msgpack_pack_str(pk, s.len);
    msgpack_pack_str_body(pk, s.data, s.len);
}

static void pack_bool(msgpack_packer *pk, bool b)
{
    if (b) msgpack_pack_true(pk);
    else msgpack_pack_false(pk);
}

/* Start a peer frame: [type, msg_id, hlc, ...nargs more]. */
static void peer_begin(kv_frame_writer_t *w, kv_buf_t *buf, peer_msg_t type,
                       uint64_t msg_id, uint64_t hlc, uint32_t nargs)
{
    kv_frame_begin(w, buf, (uint32_t)type, msg_id, 1 + nargs);
    msgpack_pack_uint64(&w->pk, hlc);
}

static bool status_ok(kv_status_t s)
{
    return (unsigned)s < (unsigned)KV_STATUS_COUNT_;
}

/* A cell its decoder accepts: a tombstone carries no value. */
static bool cell_ok(const peer_cell_t *c)
{
    return !c->tombstone || c->value.len == 0;
}

/* ts, tombstone, expire_ms, value|nil */
static void pack_cell(msgpack_packer *pk, const peer_cell_t *c)
{
    msgpack_pack_uint64(pk, c->ts);
    pack_bool(pk, c->tombstone);
    msgpack_pack_uint64(pk, c->expire_ms);
    if (c->tombstone) msgpack_pack_nil(pk);
    else kv_pack_bytes(pk, c->value);
}

kv_status_t peer_encode_hello(kv_buf_t *buf, peer_msg_t type, uint64_t hlc,
                              const peer_hello_t *h, uint32_t max_body)
{
    if (type != PEER_HELLO && type != PEER_HELLO_OK) return KV_INVALID;
    if (h->node_name.len == 0) return KV_INVALID;
    kv_frame_writer_t w;
    peer_begin(&w, buf, type, 0, hlc, 7);
    msgpack_pack_uint32(&w.pk, h->version);
    pack_slice_str(&w.pk, h->cluster);
    pack_slice_str(&w.pk, h->node_name);
    pack_slice_str(&w.pk, h->node_id);
    msgpack_pack_uint64(&w.pk, h->ring_digest);
    msgpack_pack_uint16(&w.pk, h->client_port);
    msgpack_pack_uint16(&w.pk, h->admin_port);
    return kv_frame_end(&w, max_body);
}

kv_status_t peer_encode_refuse(kv_buf_t *buf, uint64_t hlc,
                               const peer_refuse_t *r, uint32_t max_body)
{
    if (!status_ok(r->status)) return KV_INVALID;
    kv_frame_writer_t w;
    peer_begin(&w, buf, PEER_REFUSE, 0, hlc, 2);
    msgpack_pack_uint32(&w.pk, (uint32_t)r->status);
    pack_slice_str(&w.pk, r->message);
    return kv_frame_end(&w, max_body);
}

kv_status_t peer_encode_ping(kv_buf_t *buf, uint64_t msg_id, uint64_t hlc,
                             uint32_t max_body)
{
    kv_frame_writer_t w;
    peer_begin(&w, buf, PEER_PING, msg_id, hlc, 0);
    return kv_frame_end(&w, max_body);
}

kv_status_t peer_encode_pong(kv_buf_t *buf, uint64_t msg_id, uint64_t hlc,
                             uint64_t load_bytes, uint32_t max_body)
{
    kv_frame_writer_t w;
    peer_begin(&w, buf, PEER_PONG, msg_id, hlc, 1);
    msgpack_pack_uint64(&w.pk, load_bytes);
    return kv_frame_end(&w, max_body);
}

kv_status_t peer_encode_pushpull(kv_buf_t *buf, peer_msg_t type, uint64_t msg_id,
                                 uint64_t hlc, kv_slice_t body, uint32_t max_body)
{
    if (type != PEER_GOSSIP_PUSHPULL && type != PEER_GOSSIP_PUSHPULL_REPLY)
        return KV_INVALID;
    kv_frame_writer_t w;
    peer_begin(&w, buf, type, msg_id, hlc, 1);
    kv_pack_bytes(&w.pk, body);
    return kv_frame_end(&w, max_body);
}

kv_status_t peer_encode_mutation(kv_buf_t *buf, uint64_t msg_id, uint64_t hlc,
                                 const peer_mutation_t *m, uint32_t max_body)
{
    if (m->key.len == 0 || !cell_ok(&m->cell)) return KV_INVALID;
    kv_frame_writer_t w;
    peer_begin(&w, buf, PEER_MUTATION, msg_id, hlc, 5);
    kv_pack_bytes(&w.pk, m->key);
    pack_cell(&w.pk, &m->cell);
    return kv_frame_end(&w, max_body);
}

kv_status_t peer_encode_mutation_reply(kv_buf_t *buf, uint64_t msg_id,
                                       uint64_t hlc,
                                       const peer_mutation_reply_t *r,
                                       uint32_t max_body)
{
    if (!status_ok(r->status)) return KV_INVALID;
    kv_frame_writer_t w;
    peer_begin(&w, buf, PEER_MUTATION_REPLY, msg_id, hlc, 2);
    msgpack_pack_uint32(&w.pk, (uint32_t)r->status);
    msgpack_pack_uint64(&w.pk, r->superseded_by);
    return kv_frame_end(&w, max_body);
}

kv_status_t peer_encode_read(kv_buf_t *buf, uint64_t msg_id, uint64_t hlc,
                             kv_slice_t key, uint32_t max_body)
{
    if (key.len == 0) return KV_INVALID;
    kv_frame_writer_t w;
    peer_begin(&w, buf, PEER_READ, msg_id, hlc, 1);
    kv_pack_bytes(&w.pk, key);
    return kv_frame_end(&w, max_body);
}

kv_status_t peer_encode_read_reply(kv_buf_t *buf, uint64_t msg_id, uint64_t hlc,
                                   const peer_read_reply_t *r,
                                   uint32_t max_body)
{
    if (!status_ok(r->status) || !cell_ok(&r->cell)) return KV_INVALID;
    kv_frame_writer_t w;
    peer_begin(&w, buf, PEER_READ_REPLY, msg_id, hlc, 5);
    msgpack_pack_uint32(&w.pk, (uint32_t)r->status);
    pack_cell(&w.pk, &r->cell);
    return kv_frame_end(&w, max_body);
}

/* ---- decoding ---------------------------------------------------------- */

static kv_status_t arg_u32(const kv_frame_t *f, uint32_t i, uint32_t *out)
{
    uint64_t v;
    KV_RET(kv_arg_u64(f, i, &v));
    if (v > UINT32_MAX) return KV_PROTO;
    *out = (uint32_t)v;
    return KV_OK;
}

static kv_status_t arg_port(const kv_frame_t *f, uint32_t i, uint16_t *out)
{
    uint64_t v;
    KV_RET(kv_arg_u64(f, i, &v));
    if (v > UINT16_MAX) return KV_PROTO;
    *out = (uint16_t)v;
    return KV_OK;
}

static kv_status_t arg_status(const kv_frame_t *f, uint32_t i, kv_status_t *out)
{
    uint64_t v;
    KV_RET(kv_arg_u64(f, i, &v));
    if (v >= KV_STATUS_COUNT_) return KV_PROTO;
    *out = (kv_status_t)v;
    return KV_OK;
}

static kv_status_t arg_nonempty(const kv_frame_t *f, uint32_t i, kv_slice_t *out)
{
    KV_RET(kv_arg_bytes(f, i, out));
    return out->len ? KV_OK : KV_PROTO;
}

/* ts, tombstone, expire_ms, value|nil at args[i..i+4). */
static kv_status_t arg_cell(const kv_frame_t *f, uint32_t i, peer_cell_t *out)
{
    peer_cell_t c;
    bool present;
    KV_RET(kv_arg_u64(f, i, &c.ts));
    KV_RET(kv_arg_bool(f, i + 1, &c.tombstone));
    KV_RET(kv_arg_u64(f, i + 2, &c.expire_ms));
    KV_RET(kv_arg_opt_bytes(f, i + 3, &c.value, &present));
    if (present == c.tombstone) return KV_PROTO;
    *out = c;
    return KV_OK;
}

kv_status_t peer_decode_head(const kv_frame_t *f, peer_head_t *out)
{
    peer_head_t h;
    if (f->type < PEER_HELLO || f->type > PEER_TYPE_LAST) return KV_PROTO;
    KV_RET(kv_arg_u64(f, 0, &h.hlc));
    h.type = (peer_msg_t)f->type;
    h.msg_id = f->request_id;
    *out = h;
    return KV_OK;
}

/* The head of a frame that must be of type want or also. */
static kv_status_t head_of(const kv_frame_t *f, peer_msg_t want,
                           peer_msg_t also, peer_head_t *out)
{
    if (f->type != (uint32_t)want && f->type != (uint32_t)also) return KV_PROTO;
    return peer_decode_head(f, out);
}

kv_status_t peer_decode_hello(const kv_frame_t *f, peer_head_t *head,
                              peer_hello_t *out)
{
    peer_head_t hd;
    peer_hello_t h;
    KV_RET(head_of(f, PEER_HELLO, PEER_HELLO_OK, &hd));
    KV_RET(arg_u32(f, ARG0, &h.version));
    KV_RET(kv_arg_bytes(f, ARG0 + 1, &h.cluster));
    KV_RET(arg_nonempty(f, ARG0 + 2, &h.node_name));
    KV_RET(kv_arg_bytes(f, ARG0 + 3, &h.node_id));
    KV_RET(kv_arg_u64(f, ARG0 + 4, &h.ring_digest));
    KV_RET(arg_port(f, ARG0 + 5, &h.client_port));
    KV_RET(arg_port(f, ARG0 + 6, &h.admin_port));
    *head = hd;
    *out = h;
    return KV_OK;
}

kv_status_t peer_decode_refuse(const kv_frame_t *f, peer_head_t *head,
                               peer_refuse_t *out)
{
    peer_head_t hd;
    peer_refuse_t r;
    KV_RET(head_of(f, PEER_REFUSE, PEER_REFUSE, &hd));
    KV_RET(arg_status(f, ARG0, &r.status));
    KV_RET(kv_arg_bytes(f, ARG0 + 1, &r.message));
    *head = hd;
    *out = r;
    return KV_OK;
}

kv_status_t peer_decode_pong(const kv_frame_t *f, peer_head_t *head,
                             uint64_t *load_bytes)
{
    peer_head_t hd;
    uint64_t load;
    KV_RET(head_of(f, PEER_PONG, PEER_PONG, &hd));
    KV_RET(kv_arg_u64(f, ARG0, &load));
    *head = hd;
    *load_bytes = load;
    return KV_OK;
}

kv_status_t peer_decode_pushpull(const kv_frame_t *f, peer_head_t *head,
                                 kv_slice_t *body)
{
    peer_head_t hd;
    kv_slice_t b;
    KV_RET(head_of(f, PEER_GOSSIP_PUSHPULL, PEER_GOSSIP_PUSHPULL_REPLY, &hd));
    KV_RET(kv_arg_bytes(f, ARG0, &b));
    *head = hd;
    *body = b;
    return KV_OK;
}

kv_status_t peer_decode_mutation(const kv_frame_t *f, peer_head_t *head,
                                 peer_mutation_t *out)
{
    peer_head_t hd;
    peer_mutation_t m;
    KV_RET(head_of(f, PEER_MUTATION, PEER_MUTATION, &hd));
    KV_RET(arg_nonempty(f, ARG0, &m.key));
    KV_RET(arg_cell(f, ARG0 + 1, &m.cell));
    *head = hd;
    *out = m;
    return KV_OK;
}

kv_status_t peer_decode_mutation_reply(const kv_frame_t *f, peer_head_t *head,
                                       peer_mutation_reply_t *out)
{
    peer_head_t hd;
    peer_mutation_reply_t r;
    KV_RET(head_of(f, PEER_MUTATION_REPLY, PEER_MUTATION_REPLY, &hd));
    KV_RET(arg_status(f, ARG0, &r.status));
    KV_RET(kv_arg_u64(f, ARG0 + 1, &r.superseded_by));
    *head = hd;
    *out = r;
    return KV_OK;
}

kv_status_t peer_decode_read(const kv_frame_t *f, peer_head_t *head,
                             kv_slice_t *key)
{
    peer_head_t hd;
    kv_slice_t k;
    KV_RET(head_of(f, PEER_READ, PEER_READ, &hd));
    KV_RET(arg_nonempty(f, ARG0, &k));
    *head = hd;
    *key = k;
    return KV_OK;
}

kv_status_t peer_decode_read_reply(const kv_frame_t *f, peer_head_t *head,
                                   peer_read_reply_t *out)
{
    peer_head_t hd;
    peer_read_reply_t r;
    KV_RET(head_of(f, PEER_READ_REPLY, PEER_READ_REPLY, &hd));
    KV_RET(arg_status(f, ARG0, &r.status));
    KV_RET(arg_cell(f, ARG0 + 1, &r.cell));
    *head = hd;
    *out = r;
    return KV_OK;
}

/* ---- hinted handoff ---------------------------------------------------- */

#define HINT_ARGS 5u /* key, ts, tombstone, expire_ms, value|nil */

kv_status_t peer_encode_hints(kv_buf_t *buf, uint64_t msg_id, uint64_t hlc,
                              const peer_hint_t *h, size_t n, uint32_t max_body)
{
    if (n == 0 || n > (UINT32_MAX - 2) / HINT_ARGS) return KV_INVALID;
    for (size_t i = 0; i < n; i++)
        if (h[i].key.len == 0 || !cell_ok(&h[i].cell)) return KV_INVALID;
    kv_frame_writer_t w;
    peer_begin(&w, buf, PEER_HINTS, msg_id, hlc, 1 + (uint32_t)n * HINT_ARGS);
    msgpack_pack_uint32(&w.pk, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        kv_pack_bytes(&w.pk, h[i].key);
        pack_cell(&w.pk, &h[i].cell);
    }
    return kv_frame_end(&w, max_body);
}

kv_status_t peer_encode_hints_reply(kv_buf_t *buf, uint64_t msg_id, uint64_t hlc,
                                    const peer_hints_reply_t *r,
                                    uint32_t max_body)
{
    if (!status_ok(r->status)) return KV_INVALID;
    kv_frame_writer_t w;
    peer_begin(&w, buf, PEER_HINTS_REPLY, msg_id, hlc, 3);
    msgpack_pack_uint32(&w.pk, (uint32_t)r->status);
    msgpack_pack_uint64(&w.pk, r->stored);
    msgpack_pack_uint64(&w.pk, r->superseded);
    return kv_frame_end(&w, max_body);
}

kv_status_t peer_decode_hints(const kv_frame_t *f, peer_head_t *head, uint32_t *n)
{
    peer_head_t hd;
    uint32_t count;
    KV_RET(head_of(f, PEER_HINTS, PEER_HINTS, &hd));
    KV_RET(arg_u32(f, ARG0, &count));
    if (count == 0 || count > (UINT32_MAX - 2) / HINT_ARGS ||
        f->nargs < ARG0 + 1 + count * HINT_ARGS)
        return KV_PROTO;
    *head = hd;
    *n = count;
    return KV_OK;
}

kv_status_t peer_decode_hint_at(const kv_frame_t *f, uint32_t i, peer_hint_t *out)
{
    peer_hint_t h;
    uint32_t base = ARG0 + 1 + i * HINT_ARGS;
    if (f->type != PEER_HINTS || base + HINT_ARGS > f->nargs) return KV_PROTO;
    KV_RET(arg_nonempty(f, base, &h.key));
    KV_RET(arg_cell(f, base + 1, &h.cell));
    *out = h;
    return KV_OK;
}

kv_status_t peer_decode_hints_reply(const kv_frame_t *f, peer_head_t *head,
                                    peer_hints_reply_t *out)
{
    peer_head_t hd;
    peer_hints_reply_t r;
    KV_RET(head_of(f, PEER_HINTS_REPLY, PEER_HINTS_REPLY, &hd));
    KV_RET(arg_status(f, ARG0, &r.status));
    KV_RET(kv_arg_u64(f, ARG0 + 1, &r.stored));
    KV_RET(kv_arg_u64(f, ARG0 + 2, &r.superseded));
    *head = hd;
    *out = r;
    return KV_OK;
}

/* ---- streaming ------------------------------------------------------------ */

#define STREAM_CELL_ARGS 5u /* key, ts, tombstone, expire_ms, value|nil */
#define STREAM_MAX_SOURCES 32u

uint64_t peer_stream_checksum(const peer_hint_t *c, size_t n)
{
    XXH3_state_t *st = XXH3_createState();
    XXH3_64bits_reset(st);
    for (size_t i = 0; i < n; i++) {
        uint8_t h[4 + 8 + 1 + 8 + 4];
        kv_put_le32(h, (uint32_t)c[i].key.len);
        kv_put_le64(h + 4, c[i].cell.ts);
        h[12] = c[i].cell.tombstone;
        kv_put_le64(h + 13, c[i].cell.expire_ms);
        kv_put_le32(h + 21, (uint32_t)c[i].cell.value.len);
        XXH3_64bits_update(st, h, sizeof h);
        XXH3_64bits_update(st, c[i].key.data, c[i].key.len);
        XXH3_64bits_update(st, c[i].cell.value.data, c[i].cell.value.len);
    }
    uint64_t d = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    return d;
}

kv_status_t peer_encode_stream_req(kv_buf_t *buf, uint64_t sid, uint64_t hlc,
                                   uint64_t start, uint64_t end, uint32_t max_body)
{
    kv_frame_writer_t w;
    peer_begin(&w, buf, PEER_STREAM_REQ, sid, hlc, 2);
    msgpack_pack_uint64(&w.pk, start);
    msgpack_pack_uint64(&w.pk, end);
    return kv_frame_end(&w, max_body);
}

kv_status_t peer_encode_stream_req_ranges(kv_buf_t *buf, uint64_t sid, uint64_t hlc,
                                          const uint64_t *se, size_t n, uint32_t max_body)
{
    if (n == 0 || n > PEER_STREAM_MAX_RANGES) return KV_INVALID;
    kv_frame_writer_t w;
    peer_begin(&w, buf, PEER_STREAM_REQ, sid, hlc, (uint32_t)(n == 1 ? 2 : 2 * n + 1));
    msgpack_pack_uint64(&w.pk, se[0]);
    msgpack_pack_uint64(&w.pk, se[1]);
    if (n > 1) {
        msgpack_pack_uint32(&w.pk, (uint32_t)(n - 1));
        for (size_t i = 2; i < 2 * n; i++) msgpack_pack_uint64(&w.pk, se[i]);
    }
    return kv_frame_end(&w, max_body);
}

/* Extra ranges after the first: [count, s1, e1, ...] at args[base..]. */
static kv_status_t extra_ranges(const kv_frame_t *f, uint32_t base, uint32_t *count)
{
    if (f->nargs <= base) {
        *count = 0;
        return KV_OK;
    }
    uint32_t k;
    KV_RET(arg_u32(f, base, &k));
    if (k > PEER_STREAM_MAX_RANGES - 1 || f->nargs < base + 1 + 2 * k) return KV_PROTO;
    for (uint32_t i = 0; i < 2 * k; i++) {
        uint64_t v;
        KV_RET(kv_arg_u64(f, base + 1 + i, &v));
    }
    *count = k;
    return KV_OK;
}

kv_status_t peer_decode_stream_req_ranges(const kv_frame_t *f, peer_head_t *head,
                                          uint64_t **se_out, size_t *n_out)
{
    peer_head_t hd;
    uint64_t s, e;
    KV_RET(peer_decode_stream_req(f, &hd, &s, &e));
    uint32_t k;
    KV_RET(extra_ranges(f, ARG0 + 2, &k));
    uint64_t *se = kv_malloc(2 * ((size_t)k + 1) * sizeof *se);
    se[0] = s;
    se[1] = e;
    for (uint32_t i = 0; i < 2 * k; i++) kv_arg_u64(f, ARG0 + 3 + i, &se[2 + i]);
    *head = hd;
    *se_out = se;
    *n_out = (size_t)k + 1;
    return KV_OK;
}

kv_status_t peer_decode_stream_req(const kv_frame_t *f, peer_head_t *head,
                                   uint64_t *start, uint64_t *end)
{
    peer_head_t hd;
    uint64_t s, e;
    KV_RET(head_of(f, PEER_STREAM_REQ, PEER_STREAM_REQ, &hd));
    KV_RET(kv_arg_u64(f, ARG0, &s));
    KV_RET(kv_arg_u64(f, ARG0 + 1, &e));
    *head = hd;
    *start = s;
    *end = e;
    return KV_OK;
}

kv_status_t peer_encode_stream_chunk(kv_buf_t *buf, uint64_t sid, uint64_t hlc,
                                     const peer_stream_chunk_t *c,
                                     const peer_hint_t *cells, uint32_t max_body)
{
    if (c->n > (UINT32_MAX - 8) / STREAM_CELL_ARGS) return KV_INVALID;
    for (size_t i = 0; i < c->n; i++)
        if (cells[i].key.len == 0 || !cell_ok(&cells[i].cell)) return KV_INVALID;
    kv_frame_writer_t w;
    peer_begin(&w, buf, PEER_STREAM_CHUNK, sid, hlc, 4 + c->n * STREAM_CELL_ARGS);
    msgpack_pack_uint64(&w.pk, c->seq);
    pack_bool(&w.pk, c->last);
    msgpack_pack_uint64(&w.pk, peer_stream_checksum(cells, c->n));
    msgpack_pack_uint32(&w.pk, c->n);
    for (size_t i = 0; i < c->n; i++) {
        kv_pack_bytes(&w.pk, cells[i].key);
        pack_cell(&w.pk, &cells[i].cell);
    }
    return kv_frame_end(&w, max_body);
}

kv_status_t peer_decode_stream_chunk(const kv_frame_t *f, peer_head_t *head,
                                     peer_stream_chunk_t *out)
{
    peer_head_t hd;
    peer_stream_chunk_t c;
    KV_RET(head_of(f, PEER_STREAM_CHUNK, PEER_STREAM_CHUNK, &hd));
    KV_RET(kv_arg_u64(f, ARG0, &c.seq));
    KV_RET(kv_arg_bool(f, ARG0 + 1, &c.last));
    KV_RET(kv_arg_u64(f, ARG0 + 2, &c.checksum));
    KV_RET(arg_u32(f, ARG0 + 3, &c.n));
    if (c.n > (UINT32_MAX - 8) / STREAM_CELL_ARGS ||
        f->nargs < ARG0 + 4 + c.n * STREAM_CELL_ARGS)
        return KV_PROTO;
    *head = hd;
    *out = c;
    return KV_OK;
}

kv_status_t peer_decode_stream_cell_at(const kv_frame_t *f, uint32_t i,
                                       peer_hint_t *out)
{
    peer_hint_t h;
    uint32_t base = ARG0 + 4 + i * STREAM_CELL_ARGS;
    if (f->type != PEER_STREAM_CHUNK || base + STREAM_CELL_ARGS > f->nargs)
        return KV_PROTO;
    KV_RET(arg_nonempty(f, base, &h.key));
    KV_RET(arg_cell(f, base + 1, &h.cell));
    *out = h;
    return KV_OK;
}

kv_status_t peer_encode_stream_ack(kv_buf_t *buf, uint64_t sid, uint64_t hlc,
                                   uint64_t seq, kv_status_t status,
                                   uint32_t max_body)
{
    if (!status_ok(status)) return KV_INVALID;
    kv_frame_writer_t w;
    peer_begin(&w, buf, PEER_STREAM_ACK, sid, hlc, 2);
    msgpack_pack_uint64(&w.pk, seq);
    msgpack_pack_uint32(&w.pk, (uint32_t)status);
    return kv_frame_end(&w, max_body);
}

kv_status_t peer_decode_stream_ack(const kv_frame_t *f, peer_head_t *head,
                                   uint64_t *seq, kv_status_t *status)
{
    peer_head_t hd;
    uint64_t s;
    kv_status_t st;
    KV_RET(head_of(f, PEER_STREAM_ACK, PEER_STREAM_ACK, &hd));
    KV_RET(kv_arg_u64(f, ARG0, &s));
    KV_RET(arg_status(f, ARG0 + 1, &st));
    *head = hd;
    *seq = s;
    *status = st;
    return KV_OK;
}

kv_status_t peer_encode_stream_abort(kv_buf_t *buf, uint64_t sid, uint64_t hlc,
                                     kv_status_t status, kv_slice_t message,
                                     uint32_t max_body)
{
    if (!status_ok(status) || status == KV_OK) return KV_INVALID;
    kv_frame_writer_t w;
    peer_begin(&w, buf, PEER_STREAM_ABORT, sid, hlc, 2);
    msgpack_pack_uint32(&w.pk, (uint32_t)status);
    pack_slice_str(&w.pk, message);
    return kv_frame_end(&w, max_body);
}

kv_status_t peer_decode_stream_abort(const kv_frame_t *f, peer_head_t *head,
                                     kv_status_t *status, kv_slice_t *message)
{
    peer_head_t hd;
    kv_status_t st;
    kv_slice_t m;
    KV_RET(head_of(f, PEER_STREAM_ABORT, PEER_STREAM_ABORT, &hd));
    KV_RET(arg_status(f, ARG0, &st));
    if (st == KV_OK) return KV_PROTO;
    KV_RET(kv_arg_bytes(f, ARG0 + 1, &m));
    *head = hd;
    *status = st;
    *message = m;
    return KV_OK;
}

kv_status_t peer_encode_fetch(kv_buf_t *buf, uint64_t msg_id, uint64_t hlc,
                              const peer_fetch_t *fe, uint32_t max_body)
{
    if (fe->nsources == 0 || fe->nsources > STREAM_MAX_SOURCES) return KV_INVALID;
    if (fe->nextra > PEER_STREAM_MAX_RANGES - 1 || (fe->nextra && !fe->extra))
        return KV_INVALID;
    for (uint32_t i = 0; i < fe->nsources; i++)
        if (fe->sources[i].len == 0) return KV_INVALID;
    kv_frame_writer_t w;
    uint32_t nargs = 3 + fe->nsources + (fe->nextra ? 1 + 2 * (uint32_t)fe->nextra : 0);
    peer_begin(&w, buf, PEER_FETCH, msg_id, hlc, nargs);
    msgpack_pack_uint64(&w.pk, fe->start);
    msgpack_pack_uint64(&w.pk, fe->end);
    msgpack_pack_uint32(&w.pk, fe->nsources);
    for (uint32_t i = 0; i < fe->nsources; i++) pack_slice_str(&w.pk, fe->sources[i]);
    if (fe->nextra) {
        msgpack_pack_uint32(&w.pk, (uint32_t)fe->nextra);
        for (size_t i = 0; i < 2 * fe->nextra; i++) msgpack_pack_uint64(&w.pk, fe->extra[i]);
    }
    return kv_frame_end(&w, max_body);
}

kv_status_t peer_decode_fetch(const kv_frame_t *f, peer_head_t *head,
                              peer_fetch_t *out)
{
    peer_head_t hd;
    peer_fetch_t fe;
    memset(&fe, 0, sizeof fe);
    KV_RET(head_of(f, PEER_FETCH, PEER_FETCH, &hd));
    KV_RET(kv_arg_u64(f, ARG0, &fe.start));
    KV_RET(kv_arg_u64(f, ARG0 + 1, &fe.end));
    KV_RET(arg_u32(f, ARG0 + 2, &fe.nsources));
    if (fe.nsources == 0 || fe.nsources > STREAM_MAX_SOURCES) return KV_PROTO;
    for (uint32_t i = 0; i < fe.nsources; i++)
        KV_RET(arg_nonempty(f, ARG0 + 3 + i, &fe.sources[i]));
    uint32_t k;
    KV_RET(extra_ranges(f, ARG0 + 3 + fe.nsources, &k));
    fe.nextra = k;
    fe.extra_arg = ARG0 + 4 + fe.nsources;
    *head = hd;
    *out = fe;
    return KV_OK;
}

void peer_fetch_extra_at(const kv_frame_t *f, const peer_fetch_t *fe, size_t i,
                         uint64_t *start, uint64_t *end)
{
    kv_arg_u64(f, fe->extra_arg + 2 * (uint32_t)i, start);
    kv_arg_u64(f, fe->extra_arg + 2 * (uint32_t)i + 1, end);
}

kv_status_t peer_encode_fetch_reply(kv_buf_t *buf, uint64_t msg_id, uint64_t hlc,
                                    const peer_fetch_reply_t *r, uint32_t max_body)
{
    if (!status_ok(r->status)) return KV_INVALID;
    kv_frame_writer_t w;
    peer_begin(&w, buf, PEER_FETCH_REPLY, msg_id, hlc, 4);
    msgpack_pack_uint32(&w.pk, (uint32_t)r->status);
    msgpack_pack_uint64(&w.pk, r->keys);
    msgpack_pack_uint64(&w.pk, r->bytes);
    pack_slice_str(&w.pk, r->message);
    return kv_frame_end(&w, max_body);
}

kv_status_t peer_decode_fetch_reply(const kv_frame_t *f, peer_head_t *head,
                                    peer_fetch_reply_t *out)
{
    peer_head_t hd;
    peer_fetch_reply_t r;
    KV_RET(head_of(f, PEER_FETCH_REPLY, PEER_FETCH_REPLY, &hd));
    KV_RET(arg_status(f, ARG0, &r.status));
    KV_RET(kv_arg_u64(f, ARG0 + 1, &r.keys));
    KV_RET(kv_arg_u64(f, ARG0 + 2, &r.bytes));
    KV_RET(kv_arg_bytes(f, ARG0 + 3, &r.message));
    *head = hd;
    *out = r;
    return KV_OK;
}

/* ---- repair ------------------------------------------------------------------ */

#define MERKLE_MAX_DEPTH_WIRE 16u

kv_status_t peer_encode_merkle_req(kv_buf_t *buf, uint64_t msg_id, uint64_t hlc,
                                   uint64_t start, uint64_t end, uint32_t depth,
                                   uint32_t max_body)
{
    if (depth > MERKLE_MAX_DEPTH_WIRE) return KV_INVALID;
    kv_frame_writer_t w;
    peer_begin(&w, buf, PEER_MERKLE_REQ, msg_id, hlc, 3);
    msgpack_pack_uint64(&w.pk, start);
    msgpack_pack_uint64(&w.pk, end);
    msgpack_pack_uint32(&w.pk, depth);
    return kv_frame_end(&w, max_body);
}

kv_status_t peer_decode_merkle_req(const kv_frame_t *f, peer_head_t *head,
                                   uint64_t *start, uint64_t *end, uint32_t *depth)
{
    peer_head_t hd;
    uint64_t s, e;
    uint32_t d;
    KV_RET(head_of(f, PEER_MERKLE_REQ, PEER_MERKLE_REQ, &hd));
    KV_RET(kv_arg_u64(f, ARG0, &s));
    KV_RET(kv_arg_u64(f, ARG0 + 1, &e));
    KV_RET(arg_u32(f, ARG0 + 2, &d));
    if (d > MERKLE_MAX_DEPTH_WIRE) return KV_PROTO;
    *head = hd;
    *start = s;
    *end = e;
    *depth = d;
    return KV_OK;
}

kv_status_t peer_encode_merkle_reply(kv_buf_t *buf, uint64_t msg_id, uint64_t hlc,
                                     kv_status_t status, uint32_t depth, uint64_t cells,
                                     const uint64_t *leaves, uint32_t max_body)
{
    if (!status_ok(status) || depth > MERKLE_MAX_DEPTH_WIRE ||
        (status == KV_OK && !leaves))
        return KV_INVALID;
    size_t n = status == KV_OK ? (size_t)1 << depth : 0;
    kv_frame_writer_t w;
    peer_begin(&w, buf, PEER_MERKLE_REPLY, msg_id, hlc, 4);
    msgpack_pack_uint32(&w.pk, (uint32_t)status);
    msgpack_pack_uint32(&w.pk, depth);
    msgpack_pack_uint64(&w.pk, cells);
    msgpack_pack_bin(&w.pk, n * 8);
    for (size_t i = 0; i < n; i++) {
        uint8_t be[8];
        uint64_t v = leaves[i];
        for (int b = 7; b >= 0; b--) {
            be[b] = (uint8_t)v;
            v >>= 8;
        }
        msgpack_pack_bin_body(&w.pk, be, sizeof be);
    }
    return kv_frame_end(&w, max_body);
}

kv_status_t peer_decode_merkle_reply(const kv_frame_t *f, peer_head_t *head,
                                     peer_merkle_reply_t *out)
{
    peer_head_t hd;
    peer_merkle_reply_t r;
    KV_RET(head_of(f, PEER_MERKLE_REPLY, PEER_MERKLE_REPLY, &hd));
    KV_RET(arg_status(f, ARG0, &r.status));
    KV_RET(arg_u32(f, ARG0 + 1, &r.depth));
    KV_RET(kv_arg_u64(f, ARG0 + 2, &r.cells));
    KV_RET(kv_arg_bytes(f, ARG0 + 3, &r.leaves));
    if (r.depth > MERKLE_MAX_DEPTH_WIRE) return KV_PROTO;
    if (r.leaves.len != (r.status == KV_OK ? ((size_t)8 << r.depth) : 0)) return KV_PROTO;
    *head = hd;
    *out = r;
    return KV_OK;
}

uint64_t peer_merkle_leaf(const peer_merkle_reply_t *r, size_t i)
{
    const uint8_t *p = r->leaves.data + 8 * i;
    uint64_t v = 0;
    for (int b = 0; b < 8; b++) v = v << 8 | p[b];
    return v;
}
