/* proto.c -- encoding and decoding of Cairn's client messages (proto.h).
 *
 * DESIGN  Encoders pack straight into the caller's buffer through the frame
 *         writer; decoders read typed arguments from a decoded frame and
 *         check every range (consistency level, status, lengths that must
 *         fit a u32) so the node and the client can trust what they get.
 *         Arguments past the known ones are ignored (forward compatible).
 */
#include "proto.h"

#include <strings.h>

const char *proto_cl_str(proto_cl_t cl)
{
    switch (cl) {
    case CL_ONE: return "ONE";
    case CL_QUORUM: return "QUORUM";
    case CL_ALL: return "ALL";
    }
    return "?";
}

kv_status_t proto_cl_parse(const char *s, proto_cl_t *out)
{
    static const proto_cl_t all[] = {CL_ONE, CL_QUORUM, CL_ALL};
    for (size_t i = 0; i < KV_ARRAY_LEN(all); i++) {
        if (strcasecmp(s, proto_cl_str(all[i])) == 0) {
            *out = all[i];
            return KV_OK;
        }
    }
    return KV_INVALID;
}

static void pack_opt_bytes(msgpack_packer *pk, bool present, kv_slice_t s)
{
    if (present) kv_pack_bytes(pk, s);
    else msgpack_pack_nil(pk);
}

static void pack_slice_str(msgpack_packer *pk, kv_slice_t s)
{
    msgpack_pack_str(pk, s.len);
    msgpack_pack_str_body(pk, s.data, s.len);
}

kv_status_t proto_encode_hello(kv_buf_t *buf, uint64_t id, const proto_hello_t *h,
                               uint32_t max_body)
{
    kv_frame_writer_t w;
    kv_frame_begin(&w, buf, MSG_HELLO, id, 3);
    msgpack_pack_uint32(&w.pk, h->version);
    pack_slice_str(&w.pk, h->cluster);
    pack_slice_str(&w.pk, h->client_name);
    return kv_frame_end(&w, max_body);
}

kv_status_t proto_encode_hello_ok(kv_buf_t *buf, uint64_t id,
                                  const proto_hello_ok_t *h, uint32_t max_body)
{
    kv_frame_writer_t w;
    kv_frame_begin(&w, buf, MSG_HELLO_OK, id, 5);
    msgpack_pack_uint32(&w.pk, h->version);
    pack_slice_str(&w.pk, h->cluster);
    pack_slice_str(&w.pk, h->node_name);
    pack_slice_str(&w.pk, h->node_id);
    msgpack_pack_uint64(&w.pk, h->hlc);
    return kv_frame_end(&w, max_body);
}

kv_status_t proto_encode_request(kv_buf_t *buf, const proto_request_t *r,
                                 uint32_t max_body)
{
    kv_frame_writer_t w;
    switch (r->type) {
    case MSG_GET:
    case MSG_DELETE:
        kv_frame_begin(&w, buf, r->type, r->id, 4);
        kv_pack_bytes(&w.pk, r->key);
        break;
    case MSG_PUT:
        kv_frame_begin(&w, buf, r->type, r->id, 6);
        kv_pack_bytes(&w.pk, r->key);
        kv_pack_bytes(&w.pk, r->value);
        break;
    default:
        return KV_INVALID;
    }
    msgpack_pack_uint8(&w.pk, (uint8_t)r->cl);
    msgpack_pack_uint32(&w.pk, r->timeout_ms);
    msgpack_pack_uint64(&w.pk, r->causality);
    if (r->type == MSG_PUT) msgpack_pack_uint64(&w.pk, r->ttl_ms);
    return kv_frame_end(&w, max_body);
}

kv_status_t proto_encode_reply(kv_buf_t *buf, const proto_reply_t *r,
                               uint32_t max_body)
{
    kv_frame_writer_t w;
    kv_frame_begin(&w, buf, MSG_REPLY, r->id, 5);
    msgpack_pack_uint32(&w.pk, (uint32_t)r->status);
    msgpack_pack_uint64(&w.pk, r->hlc);
    msgpack_pack_uint64(&w.pk, r->cell_ts);
    pack_opt_bytes(&w.pk, r->has_value, r->value);
    if (r->message.len) pack_slice_str(&w.pk, r->message);
    else msgpack_pack_nil(&w.pk);
    return kv_frame_end(&w, max_body);
}

kv_status_t proto_encode_info(kv_buf_t *buf, uint64_t id, uint32_t max_body)
{
    kv_frame_writer_t w;
    kv_frame_begin(&w, buf, MSG_INFO, id, 0);
    return kv_frame_end(&w, max_body);
}

kv_status_t proto_encode_info_reply(kv_buf_t *buf, uint64_t id, uint64_t hlc,
                                    const proto_info_item_t *items, size_t n,
                                    uint32_t max_body)
{
    kv_frame_writer_t w;
    kv_frame_begin(&w, buf, MSG_INFO_REPLY, id, 2);
    msgpack_pack_uint64(&w.pk, hlc);
    msgpack_pack_map(&w.pk, n);
    for (size_t i = 0; i < n; i++) {
        kv_pack_str(&w.pk, items[i].name);
        if (items[i].str) kv_pack_str(&w.pk, items[i].str);
        else msgpack_pack_uint64(&w.pk, items[i].num);
    }
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

static kv_status_t arg_cl(const kv_frame_t *f, uint32_t i, proto_cl_t *out)
{
    uint64_t v;
    KV_RET(kv_arg_u64(f, i, &v));
    if (v < CL_ONE || v > CL_ALL) return KV_PROTO;
    *out = (proto_cl_t)v;
    return KV_OK;
}

kv_status_t proto_decode_hello(const kv_frame_t *f, proto_hello_t *out)
{
    proto_hello_t h;
    if (f->type != MSG_HELLO) return KV_PROTO;
    KV_RET(arg_u32(f, 0, &h.version));
    KV_RET(kv_arg_bytes(f, 1, &h.cluster));
    KV_RET(kv_arg_bytes(f, 2, &h.client_name));
    *out = h;
    return KV_OK;
}

kv_status_t proto_decode_hello_ok(const kv_frame_t *f, proto_hello_ok_t *out)
{
    proto_hello_ok_t h;
    if (f->type != MSG_HELLO_OK) return KV_PROTO;
    KV_RET(arg_u32(f, 0, &h.version));
    KV_RET(kv_arg_bytes(f, 1, &h.cluster));
    KV_RET(kv_arg_bytes(f, 2, &h.node_name));
    KV_RET(kv_arg_bytes(f, 3, &h.node_id));
    KV_RET(kv_arg_u64(f, 4, &h.hlc));
    *out = h;
    return KV_OK;
}

kv_status_t proto_decode_request(const kv_frame_t *f, proto_request_t *out)
{
    proto_request_t r;
    memset(&r, 0, sizeof r);
    r.type = (proto_msg_t)f->type;
    r.id = f->request_id;
    uint32_t i = 0;
    switch (f->type) {
    case MSG_GET:
    case MSG_DELETE:
        KV_RET(kv_arg_bytes(f, i++, &r.key));
        break;
    case MSG_PUT:
        KV_RET(kv_arg_bytes(f, i++, &r.key));
        KV_RET(kv_arg_bytes(f, i++, &r.value));
        break;
    default:
        return KV_PROTO;
    }
    KV_RET(arg_cl(f, i++, &r.cl));
    KV_RET(arg_u32(f, i++, &r.timeout_ms));
    KV_RET(kv_arg_u64(f, i++, &r.causality));
    if (f->type == MSG_PUT) KV_RET(kv_arg_u64(f, i++, &r.ttl_ms));
    *out = r;
    return KV_OK;
}

kv_status_t proto_decode_reply(const kv_frame_t *f, proto_reply_t *out)
{
    proto_reply_t r;
    memset(&r, 0, sizeof r);
    if (f->type != MSG_REPLY) return KV_PROTO;
    r.id = f->request_id;
    uint32_t st;
    KV_RET(arg_u32(f, 0, &st));
    if (st >= KV_STATUS_COUNT_) return KV_PROTO;
    r.status = (kv_status_t)st;
    KV_RET(kv_arg_u64(f, 1, &r.hlc));
    KV_RET(kv_arg_u64(f, 2, &r.cell_ts));
    KV_RET(kv_arg_opt_bytes(f, 3, &r.value, &r.has_value));
    bool has_msg;
    KV_RET(kv_arg_opt_bytes(f, 4, &r.message, &has_msg));
    *out = r;
    return KV_OK;
}

kv_status_t proto_decode_info_reply(const kv_frame_t *f, uint64_t *hlc,
                                    proto_info_fn fn, void *arg)
{
    if (f->type != MSG_INFO_REPLY || f->nargs < 2) return KV_PROTO;
    uint64_t h;
    KV_RET(kv_arg_u64(f, 0, &h));
    const msgpack_object *m = &f->args[1];
    if (m->type != MSGPACK_OBJECT_MAP) return KV_PROTO;
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object *k = &m->via.map.ptr[i].key, *v = &m->via.map.ptr[i].val;
        if (k->type != MSGPACK_OBJECT_STR) return KV_PROTO;
        if (v->type != MSGPACK_OBJECT_STR && v->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            return KV_PROTO;
    }
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object *k = &m->via.map.ptr[i].key, *v = &m->via.map.ptr[i].val;
        kv_slice_t name = kv_slice(k->via.str.ptr, k->via.str.size);
        if (v->type == MSGPACK_OBJECT_STR)
            fn(arg, name, true, kv_slice(v->via.str.ptr, v->via.str.size), 0);
        else
            fn(arg, name, false, kv_slice(NULL, 0), v->via.u64);
    }
    *hlc = h;
    return KV_OK;
}
