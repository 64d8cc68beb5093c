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
    kv_frame_begin(&w, buf, MSG_HELLO, id, h->has_auth ? 4 : 3);
    msgpack_pack_uint32(&w.pk, h->version);
    pack_slice_str(&w.pk, h->cluster);
    pack_slice_str(&w.pk, h->client_name);
    if (h->has_auth) {
        msgpack_pack_array(&w.pk, 2);
        pack_slice_str(&w.pk, h->user);
        kv_pack_bytes(&w.pk, h->password);
    }
    return kv_frame_end(&w, max_body);
}

kv_status_t proto_encode_hello_ok(kv_buf_t *buf, uint64_t id,
                                  const proto_hello_ok_t *h, uint32_t max_body)
{
    kv_frame_writer_t w;
    bool who = h->user.len || h->role.len;
    kv_frame_begin(&w, buf, MSG_HELLO_OK, id, who ? 7 : 5);
    msgpack_pack_uint32(&w.pk, h->version);
    pack_slice_str(&w.pk, h->cluster);
    pack_slice_str(&w.pk, h->node_name);
    pack_slice_str(&w.pk, h->node_id);
    msgpack_pack_uint64(&w.pk, h->hlc);
    if (who) {
        pack_slice_str(&w.pk, h->user);
        pack_slice_str(&w.pk, h->role);
    }
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

kv_status_t proto_encode_ping(kv_buf_t *buf, uint64_t id, uint32_t max_body)
{
    kv_frame_writer_t w;
    kv_frame_begin(&w, buf, MSG_PING, id, 0);
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
    memset(&h, 0, sizeof h);
    if (f->type != MSG_HELLO) return KV_PROTO;
    KV_RET(arg_u32(f, 0, &h.version));
    KV_RET(kv_arg_bytes(f, 1, &h.cluster));
    KV_RET(kv_arg_bytes(f, 2, &h.client_name));
    /* auth: [user, password]; anything else there (nil, or what a later
     * version may send) is no credentials, by the compatibility rule that
     * unknown trailing arguments are ignored */
    const msgpack_object_array *a;
    if (f->nargs > 3 && kv_arg_array(f, 3, &a) == KV_OK && a->size >= 2) {
        kv_slice_t part[2];
        bool ok = true;
        for (int i = 0; i < 2; i++) {
            const msgpack_object *o = &a->ptr[i];
            if (o->type == MSGPACK_OBJECT_STR)
                part[i] = kv_slice(o->via.str.ptr, o->via.str.size);
            else if (o->type == MSGPACK_OBJECT_BIN)
                part[i] = kv_slice(o->via.bin.ptr, o->via.bin.size);
            else
                ok = false;
        }
        if (ok) {
            h.has_auth = true;
            h.user = part[0];
            h.password = part[1];
        }
    }
    *out = h;
    return KV_OK;
}

kv_status_t proto_decode_hello_ok(const kv_frame_t *f, proto_hello_ok_t *out)
{
    proto_hello_ok_t h;
    memset(&h, 0, sizeof h);
    if (f->type != MSG_HELLO_OK) return KV_PROTO;
    KV_RET(arg_u32(f, 0, &h.version));
    KV_RET(kv_arg_bytes(f, 1, &h.cluster));
    KV_RET(kv_arg_bytes(f, 2, &h.node_name));
    KV_RET(kv_arg_bytes(f, 3, &h.node_id));
    KV_RET(kv_arg_u64(f, 4, &h.hlc));
    if (f->nargs > 6 && (kv_arg_bytes(f, 5, &h.user) != KV_OK ||
                         kv_arg_bytes(f, 6, &h.role) != KV_OK))
        h.user = h.role = kv_slice(NULL, 0); /* not ours: ignored */
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

/* ---- RING -------------------------------------------------------------- */

uint32_t proto_phi_milli(double phi)
{
    if (!(phi > 0)) return 0; /* negative, zero or NaN */
    if (phi >= (double)UINT32_MAX / 1000.0) return UINT32_MAX;
    double m = phi * 1000.0 + 0.5;
    return m >= (double)UINT32_MAX ? UINT32_MAX : (uint32_t)m;
}

#define RING_NODE_FIELDS_MIN 11 /* up to the tokens: what every node sends */
#define RING_NODE_FIELDS 16     /* ... then status, liveness, phi_milli,
                                   generation, in_ring */
#define RING_PPM_ONE 1000000u
#define RING_EFFECTIVE_MAX (RING_PPM_ONE * 32u) /* RF is at most 32 (ring.h) */

kv_status_t proto_encode_ring(kv_buf_t *buf, uint64_t id, const kv_slice_t *key,
                              uint32_t max_body)
{
    kv_frame_writer_t w;
    kv_frame_begin(&w, buf, MSG_RING, id, 1);
    pack_opt_bytes(&w.pk, key != NULL, key ? *key : kv_slice(NULL, 0));
    return kv_frame_end(&w, max_body);
}

/* What the decoder would refuse, checked before encoding. */
static bool ring_valid(const proto_ring_t *r)
{
    if (r->nnodes == 0 ? r->self != 0 : r->self >= r->nnodes) return false;
    if (r->nnodes > UINT32_MAX || r->nreplicas > UINT32_MAX) return false;
    for (size_t i = 0; i < r->nreplicas; i++)
        if (r->replicas[i] >= r->nnodes) return false;
    for (size_t i = 0; i < r->nnodes; i++) {
        const proto_ring_node_t *n = &r->nodes[i];
        if (n->ownership_ppm > RING_PPM_ONE || n->effective_ppm > RING_EFFECTIVE_MAX ||
            n->ntokens > UINT32_MAX || n->status > PROTO_NODE_LEFT ||
            n->liveness > PROTO_LIVE_DEAD)
            return false;
    }
    return true;
}

kv_status_t proto_encode_ring_reply(kv_buf_t *buf, uint64_t id, uint64_t hlc,
                                    const proto_ring_t *r, uint32_t max_body)
{
    if (!ring_valid(r)) return KV_INVALID;
    kv_frame_writer_t w;
    kv_frame_begin(&w, buf, MSG_RING_REPLY, id, 6);
    msgpack_pack_uint64(&w.pk, hlc);
    msgpack_pack_uint32(&w.pk, r->replication_factor);
    msgpack_pack_uint32(&w.pk, r->self);
    msgpack_pack_uint64(&w.pk, r->key_token);
    msgpack_pack_array(&w.pk, r->nnodes);
    for (size_t i = 0; i < r->nnodes; i++) {
        const proto_ring_node_t *n = &r->nodes[i];
        msgpack_pack_array(&w.pk, RING_NODE_FIELDS);
        pack_slice_str(&w.pk, n->name);
        pack_slice_str(&w.pk, n->node_id);
        pack_slice_str(&w.pk, n->host);
        msgpack_pack_uint16(&w.pk, n->client_port);
        msgpack_pack_uint16(&w.pk, n->admin_port);
        pack_slice_str(&w.pk, n->rack);
        if (n->up) msgpack_pack_true(&w.pk);
        else msgpack_pack_false(&w.pk);
        msgpack_pack_uint64(&w.pk, n->load_bytes);
        msgpack_pack_uint32(&w.pk, n->ownership_ppm);
        msgpack_pack_uint32(&w.pk, n->effective_ppm);
        msgpack_pack_array(&w.pk, n->ntokens);
        for (size_t t = 0; t < n->ntokens; t++) msgpack_pack_uint64(&w.pk, n->tokens[t]);
        msgpack_pack_uint8(&w.pk, n->status);
        msgpack_pack_uint8(&w.pk, n->liveness);
        msgpack_pack_uint32(&w.pk, n->phi_milli);
        msgpack_pack_uint64(&w.pk, n->generation);
        if (n->in_ring) msgpack_pack_true(&w.pk);
        else msgpack_pack_false(&w.pk);
    }
    msgpack_pack_array(&w.pk, r->nreplicas);
    for (size_t i = 0; i < r->nreplicas; i++) msgpack_pack_uint32(&w.pk, r->replicas[i]);
    return kv_frame_end(&w, max_body);
}

kv_status_t proto_encode_admin(kv_buf_t *buf, uint64_t id, kv_slice_t op,
                               kv_slice_t arg, uint32_t max_body)
{
    if (op.len == 0) return KV_INVALID;
    kv_frame_writer_t w;
    kv_frame_begin(&w, buf, MSG_ADMIN, id, 2);
    msgpack_pack_str(&w.pk, op.len);
    msgpack_pack_str_body(&w.pk, op.data, op.len);
    msgpack_pack_str(&w.pk, arg.len);
    msgpack_pack_str_body(&w.pk, arg.data, arg.len);
    return kv_frame_end(&w, max_body);
}

kv_status_t proto_decode_admin(const kv_frame_t *f, kv_slice_t *op, kv_slice_t *arg)
{
    if (f->type != MSG_ADMIN) return KV_PROTO;
    kv_slice_t o, a;
    KV_RET(kv_arg_bytes(f, 0, &o));
    KV_RET(kv_arg_bytes(f, 1, &a));
    if (o.len == 0) return KV_PROTO;
    *op = o;
    *arg = a;
    return KV_OK;
}

kv_status_t proto_decode_ring(const kv_frame_t *f, kv_slice_t *key, bool *has_key)
{
    if (f->type != MSG_RING) return KV_PROTO;
    kv_slice_t k;
    bool has;
    KV_RET(kv_arg_opt_bytes(f, 0, &k, &has));
    *key = k;
    *has_key = has;
    return KV_OK;
}

static kv_status_t obj_u64(const msgpack_object *o, uint64_t max, uint64_t *out)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 > max) return KV_PROTO;
    *out = o->via.u64;
    return KV_OK;
}

/* A name: str (or bin, as kv_arg_bytes accepts). */
static kv_status_t obj_bytes(const msgpack_object *o, kv_slice_t *out)
{
    if (o->type == MSGPACK_OBJECT_STR) *out = kv_slice(o->via.str.ptr, o->via.str.size);
    else if (o->type == MSGPACK_OBJECT_BIN) *out = kv_slice(o->via.bin.ptr, o->via.bin.size);
    else return KV_PROTO;
    return KV_OK;
}

/* One node = [name, node_id, host, client_port, admin_port, rack, up,
 * load_bytes, ownership_ppm, effective_ppm, [token...], status, liveness,
 * phi_milli, generation, in_ring]; the last five may be missing (an older
 * node: the defaults say what its answer meant), fields past them are
 * ignored. Allocates n->tokens (bounded by the frame: every token took at
 * least one byte of it and a msgpack_object already), after every other
 * field has been checked. */
static kv_status_t decode_ring_node(const msgpack_object_array *a, proto_ring_node_t *n)
{
    const msgpack_object *o = a->ptr;
    uint64_t v;
    KV_RET(obj_bytes(&o[0], &n->name));
    KV_RET(obj_bytes(&o[1], &n->node_id));
    KV_RET(obj_bytes(&o[2], &n->host));
    KV_RET(obj_u64(&o[3], UINT16_MAX, &v));
    n->client_port = (uint16_t)v;
    KV_RET(obj_u64(&o[4], UINT16_MAX, &v));
    n->admin_port = (uint16_t)v;
    KV_RET(obj_bytes(&o[5], &n->rack));
    if (o[6].type != MSGPACK_OBJECT_BOOLEAN) return KV_PROTO;
    n->up = o[6].via.boolean;
    KV_RET(obj_u64(&o[7], UINT64_MAX, &n->load_bytes));
    KV_RET(obj_u64(&o[8], RING_PPM_ONE, &v));
    n->ownership_ppm = (uint32_t)v;
    KV_RET(obj_u64(&o[9], RING_EFFECTIVE_MAX, &v));
    n->effective_ppm = (uint32_t)v;
    if (o[10].type != MSGPACK_OBJECT_ARRAY) return KV_PROTO;
    const msgpack_object_array *toks = &o[10].via.array;
    for (uint32_t t = 0; t < toks->size; t++)
        if (toks->ptr[t].type != MSGPACK_OBJECT_POSITIVE_INTEGER) return KV_PROTO;

    n->status = PROTO_NODE_NORMAL;
    n->liveness = n->up ? PROTO_LIVE_ALIVE : PROTO_LIVE_DEAD;
    n->phi_milli = 0;
    n->generation = 0;
    n->in_ring = true;
    if (a->size > 11) {
        KV_RET(obj_u64(&o[11], PROTO_NODE_LEFT, &v));
        n->status = (uint8_t)v;
    }
    if (a->size > 12) {
        KV_RET(obj_u64(&o[12], PROTO_LIVE_DEAD, &v));
        n->liveness = (uint8_t)v;
    }
    if (a->size > 13) {
        KV_RET(obj_u64(&o[13], UINT32_MAX, &v));
        n->phi_milli = (uint32_t)v;
    }
    if (a->size > 14) KV_RET(obj_u64(&o[14], UINT64_MAX, &n->generation));
    if (a->size > 15) {
        if (o[15].type != MSGPACK_OBJECT_BOOLEAN) return KV_PROTO;
        n->in_ring = o[15].via.boolean;
    }

    if (toks->size) {
        uint64_t *tokens = kv_malloc(toks->size * sizeof *tokens);
        for (uint32_t t = 0; t < toks->size; t++) tokens[t] = toks->ptr[t].via.u64;
        n->tokens = tokens;
        n->ntokens = toks->size;
    }
    return KV_OK;
}

kv_status_t proto_decode_ring_reply(const kv_frame_t *f, uint64_t *hlc, proto_ring_t *out)
{
    proto_ring_t r;
    memset(&r, 0, sizeof r);
    memset(out, 0, sizeof *out);
    if (f->type != MSG_RING_REPLY) return KV_PROTO;
    uint64_t h, key_token;
    uint32_t rf, self;
    const msgpack_object_array *nodes, *replicas;
    KV_RET(kv_arg_u64(f, 0, &h));
    KV_RET(arg_u32(f, 1, &rf));
    KV_RET(arg_u32(f, 2, &self));
    KV_RET(kv_arg_u64(f, 3, &key_token));
    KV_RET(kv_arg_array(f, 4, &nodes));
    KV_RET(kv_arg_array(f, 5, &replicas));
    /* Check the shape before allocating: then every node below took at
     * least RING_NODE_FIELDS_MIN + 1 bytes of the frame. */
    for (uint32_t i = 0; i < nodes->size; i++) {
        const msgpack_object *o = &nodes->ptr[i];
        if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size < RING_NODE_FIELDS_MIN)
            return KV_PROTO;
    }
    if (nodes->size == 0 ? self != 0 : self >= nodes->size) return KV_PROTO;
    for (uint32_t i = 0; i < replicas->size; i++) {
        uint64_t v;
        KV_RET(obj_u64(&replicas->ptr[i], UINT32_MAX, &v));
        if (v >= nodes->size) return KV_PROTO;
    }

    r.replication_factor = rf;
    r.self = self;
    r.key_token = key_token;
    kv_status_t rc = KV_OK;
    if (nodes->size) {
        proto_ring_node_t *nv = kv_calloc(nodes->size, sizeof *nv);
        r.nodes = nv;
        r.nnodes = nodes->size;
        for (uint32_t i = 0; i < nodes->size && rc == KV_OK; i++)
            rc = decode_ring_node(&nodes->ptr[i].via.array, &nv[i]);
    }
    if (rc == KV_OK && replicas->size) {
        uint32_t *rv = kv_malloc(replicas->size * sizeof *rv);
        for (uint32_t i = 0; i < replicas->size; i++) rv[i] = (uint32_t)replicas->ptr[i].via.u64;
        r.replicas = rv;
        r.nreplicas = replicas->size;
    }
    if (rc != KV_OK) {
        proto_ring_free(&r);
        return rc;
    }
    *hlc = h;
    *out = r;
    return KV_OK;
}

void proto_ring_free(proto_ring_t *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->nnodes; i++) kv_free((void *)r->nodes[i].tokens);
    kv_free((void *)r->nodes);
    kv_free((void *)r->replicas);
    memset(r, 0, sizeof *r);
}

/* ---- LOCAL_GET --------------------------------------------------------- */

kv_status_t proto_encode_local_get(kv_buf_t *buf, uint64_t id, kv_slice_t key,
                                   uint32_t max_body)
{
    kv_frame_writer_t w;
    kv_frame_begin(&w, buf, MSG_LOCAL_GET, id, 1);
    kv_pack_bytes(&w.pk, key);
    return kv_frame_end(&w, max_body);
}

kv_status_t proto_decode_local_get(const kv_frame_t *f, kv_slice_t *key)
{
    if (f->type != MSG_LOCAL_GET) return KV_PROTO;
    kv_slice_t k;
    KV_RET(kv_arg_bytes(f, 0, &k));
    *key = k;
    return KV_OK;
}

/* The shape both sides agree on: a value cell has bytes, a tombstone and
 * "nothing" have none, and "nothing" has no timestamp either. */
static bool local_reply_valid(kv_status_t st, uint64_t ts, bool tombstone,
                              uint64_t expire_ms, bool has_value)
{
    if (st == KV_NOTFOUND) return ts == 0 && !tombstone && expire_ms == 0 && !has_value;
    if (st != KV_OK) return false;
    return tombstone ? !has_value : has_value;
}

kv_status_t proto_encode_local_reply(kv_buf_t *buf, const proto_local_reply_t *r,
                                     uint32_t max_body)
{
    bool has_value = r->status == KV_OK && !r->tombstone;
    if (!local_reply_valid(r->status, r->ts, r->tombstone, r->expire_ms, has_value))
        return KV_INVALID;
    kv_frame_writer_t w;
    kv_frame_begin(&w, buf, MSG_LOCAL_REPLY, r->id, 6);
    msgpack_pack_uint64(&w.pk, r->hlc);
    msgpack_pack_uint32(&w.pk, (uint32_t)r->status);
    msgpack_pack_uint64(&w.pk, r->ts);
    if (r->tombstone) msgpack_pack_true(&w.pk);
    else msgpack_pack_false(&w.pk);
    msgpack_pack_uint64(&w.pk, r->expire_ms);
    pack_opt_bytes(&w.pk, has_value, r->value);
    return kv_frame_end(&w, max_body);
}

kv_status_t proto_decode_local_reply(const kv_frame_t *f, proto_local_reply_t *out)
{
    proto_local_reply_t r;
    memset(&r, 0, sizeof r);
    if (f->type != MSG_LOCAL_REPLY || f->nargs < 6) return KV_PROTO;
    r.id = f->request_id;
    uint32_t st;
    KV_RET(kv_arg_u64(f, 0, &r.hlc));
    KV_RET(arg_u32(f, 1, &st));
    KV_RET(kv_arg_u64(f, 2, &r.ts));
    if (f->args[3].type != MSGPACK_OBJECT_BOOLEAN) return KV_PROTO;
    r.tombstone = f->args[3].via.boolean;
    KV_RET(kv_arg_u64(f, 4, &r.expire_ms));
    bool has_value;
    KV_RET(kv_arg_opt_bytes(f, 5, &r.value, &has_value));
    if (st >= KV_STATUS_COUNT_) return KV_PROTO;
    r.status = (kv_status_t)st;
    if (!local_reply_valid(r.status, r.ts, r.tombstone, r.expire_ms, has_value))
        return KV_PROTO;
    *out = r;
    return KV_OK;
}
