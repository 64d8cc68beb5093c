/* codec.c -- gossip's wire format: datagrams (ping, ack, ping-req, nack,
 * gossip) with piggybacked updates, and push-pull bodies. docs/gossip.md
 * is the reference for operators and other implementations.
 *
 * DESIGN  Every body is one msgpack array whose first three elements never
 *         change between protocol versions: [GW_MAGIC, version, type].
 *         A body is first walked by kv_msgpack_validate (no allocation,
 *         every container count checked against the bytes left), then
 *         unpacked by msgpack-c, whose str/bin objects point into the
 *         caller's bytes. Decoders check every field's type and range
 *         (lengths against GOSSIP_MAX_NAME / GW_MAX_NODE_ID, no NUL inside
 *         a name, ports non-zero, tokens strictly ascending and at most
 *         GOSSIP_MAX_TOKENS, enums in range) so nothing a peer sends reaches
 *         the state machine unchecked; a datagram with one bad update is
 *         dropped whole. Elements past the known ones are ignored.
 *
 *         Encoders pack straight into a kv_buf_t. Updates are encoded once,
 *         when queued (gossip_bcast.c), and copied raw into each datagram.
 *
 * THREADING  none inside.
 */
#include "gossip_int.h"

#include "frame.h"

#include <xxhash.h>

/* ---- packing ------------------------------------------------------------ */

static int buf_write(void *data, const char *p, size_t n)
{
    kv_buf_append(data, p, n);
    return 0;
}

void gw_packer_init(msgpack_packer *pk, kv_buf_t *b)
{
    msgpack_packer_init(pk, b, buf_write);
}

static void pack_slice(msgpack_packer *pk, kv_slice_t s)
{
    msgpack_pack_str(pk, s.len);
    if (s.len) msgpack_pack_str_body(pk, s.data, s.len);
}

static void pack_tokens(msgpack_packer *pk, const gw_state_t *st)
{
    msgpack_pack_bin(pk, (size_t)st->ntokens * 8u);
    for (uint32_t i = 0; i < st->ntokens; i++) {
        uint64_t t = gw_token_at(st, i);
        uint8_t be[8];
        for (int b = 7; b >= 0; b--) {
            be[b] = (uint8_t)t;
            t >>= 8;
        }
        msgpack_pack_bin_body(pk, be, sizeof be);
    }
}

/* name, node_id, host, port, client_port, admin_port, rack, generation,
 * incarnation, status, tokens, load [, liveness] */
#define STATE_FIELDS 12u

static void pack_state_fields(msgpack_packer *pk, const gw_state_t *st)
{
    pack_slice(pk, st->name);
    pack_slice(pk, st->node_id);
    pack_slice(pk, st->host);
    msgpack_pack_uint16(pk, st->port);
    msgpack_pack_uint16(pk, st->client_port);
    msgpack_pack_uint16(pk, st->admin_port);
    pack_slice(pk, st->rack);
    msgpack_pack_uint64(pk, st->generation);
    msgpack_pack_uint64(pk, st->incarnation);
    msgpack_pack_uint32(pk, st->status);
    pack_tokens(pk, st);
    msgpack_pack_uint64(pk, st->load);
}

void gw_pack_state(msgpack_packer *pk, const gw_state_t *st, bool with_liveness)
{
    msgpack_pack_array(pk, STATE_FIELDS + (with_liveness ? 1u : 0u));
    pack_state_fields(pk, st);
    if (with_liveness) msgpack_pack_uint32(pk, st->liveness);
}

void gw_encode_alive(kv_buf_t *b, const gw_state_t *st)
{
    msgpack_packer pk;
    gw_packer_init(&pk, b);
    msgpack_pack_array(&pk, 1 + STATE_FIELDS);
    msgpack_pack_uint32(&pk, GW_UPD_ALIVE);
    pack_state_fields(&pk, st);
}

uint64_t gw_tokens_digest(const uint64_t *tokens, uint32_t n)
{
    XXH3_state_t *h = XXH3_createState();
    kv_assert(h != NULL);
    XXH3_64bits_reset(h);
    for (uint32_t i = 0; i < n; i++) {
        uint8_t be[8];
        uint64_t t = tokens[i];
        for (int b = 7; b >= 0; b--) {
            be[b] = (uint8_t)t;
            t >>= 8;
        }
        XXH3_64bits_update(h, be, sizeof be);
    }
    uint64_t d = XXH3_64bits_digest(h);
    XXH3_freeState(h);
    return d;
}

void gw_encode_alive_compact(kv_buf_t *b, const gw_state_t *st)
{
    msgpack_packer pk;
    gw_packer_init(&pk, b);
    msgpack_pack_array(&pk, 1 + STATE_FIELDS + 1);
    msgpack_pack_uint32(&pk, GW_UPD_ALIVE);
    pack_slice(&pk, st->name);
    pack_slice(&pk, st->node_id);
    pack_slice(&pk, st->host);
    msgpack_pack_uint16(&pk, st->port);
    msgpack_pack_uint16(&pk, st->client_port);
    msgpack_pack_uint16(&pk, st->admin_port);
    pack_slice(&pk, st->rack);
    msgpack_pack_uint64(&pk, st->generation);
    msgpack_pack_uint64(&pk, st->incarnation);
    msgpack_pack_uint32(&pk, st->status);
    msgpack_pack_nil(&pk); /* tokens left out */
    msgpack_pack_uint64(&pk, st->load);
    msgpack_pack_uint64(&pk, gw_tokens_digest(st->tokens, st->ntokens));
}

void gw_encode_suspect_dead(kv_buf_t *b, uint32_t kind, kv_slice_t name,
                            uint64_t generation, uint64_t incarnation,
                            kv_slice_t from)
{
    msgpack_packer pk;
    gw_packer_init(&pk, b);
    msgpack_pack_array(&pk, 5);
    msgpack_pack_uint32(&pk, kind);
    pack_slice(&pk, name);
    msgpack_pack_uint64(&pk, generation);
    msgpack_pack_uint64(&pk, incarnation);
    pack_slice(&pk, from);
}

/* Fields after the 9-element header, before the updates. */
static uint32_t type_fields(uint32_t type)
{
    switch (type) {
    case GW_PING: return 3;     /* seq, target, notice|nil */
    case GW_ACK: return 1;      /* seq */
    case GW_PING_REQ: return 4; /* seq, target, target_host, target_port */
    case GW_NACK: return 1;     /* seq */
    case GW_GOSSIP: return 0;
    }
    return 0;
}

#define HEAD_FIELDS 9u /* magic, version, type, cluster, name, node_id,
                          generation, host, port */

void gw_pack_msg_head(msgpack_packer *pk, const gw_msg_t *m)
{
    msgpack_pack_array(pk, HEAD_FIELDS + type_fields(m->h.type) + 1);
    msgpack_pack_uint32(pk, GW_MAGIC);
    msgpack_pack_uint32(pk, GOSSIP_PROTO_VERSION);
    msgpack_pack_uint32(pk, m->h.type);
    pack_slice(pk, m->h.cluster);
    pack_slice(pk, m->h.name);
    pack_slice(pk, m->h.node_id);
    msgpack_pack_uint64(pk, m->h.generation);
    pack_slice(pk, m->h.host);
    msgpack_pack_uint16(pk, m->h.port);
    switch (m->h.type) {
    case GW_PING:
        msgpack_pack_uint64(pk, m->seq);
        pack_slice(pk, m->target);
        if (m->has_notice) {
            msgpack_pack_array(pk, 3);
            msgpack_pack_uint32(pk, m->notice_kind);
            msgpack_pack_uint64(pk, m->notice_gen);
            msgpack_pack_uint64(pk, m->notice_inc);
        } else {
            msgpack_pack_nil(pk);
        }
        break;
    case GW_ACK:
    case GW_NACK:
        msgpack_pack_uint64(pk, m->seq);
        break;
    case GW_PING_REQ:
        msgpack_pack_uint64(pk, m->seq);
        pack_slice(pk, m->target);
        pack_slice(pk, m->target_host);
        msgpack_pack_uint16(pk, m->target_port);
        break;
    default:
        break;
    }
}

void gw_pack_updates_hdr(msgpack_packer *pk, uint32_t n)
{
    msgpack_pack_array(pk, n);
}

void gw_pack_pp_head(msgpack_packer *pk, uint32_t kind, kv_slice_t cluster,
                     uint32_t rf, const gw_state_t *self, uint32_t nrecords)
{
    msgpack_pack_array(pk, 7);
    msgpack_pack_uint32(pk, GW_MAGIC);
    msgpack_pack_uint32(pk, GOSSIP_PROTO_VERSION);
    msgpack_pack_uint32(pk, kind);
    pack_slice(pk, cluster);
    msgpack_pack_uint32(pk, rf);
    gw_pack_state(pk, self, true);
    msgpack_pack_array(pk, nrecords);
}

void gw_encode_refusal(kv_buf_t *b, kv_status_t status, const char *message)
{
    msgpack_packer pk;
    gw_packer_init(&pk, b);
    size_t n = strlen(message);
    if (n > GW_MAX_MESSAGE) n = GW_MAX_MESSAGE;
    msgpack_pack_array(&pk, 5);
    msgpack_pack_uint32(&pk, GW_MAGIC);
    msgpack_pack_uint32(&pk, GOSSIP_PROTO_VERSION);
    msgpack_pack_uint32(&pk, GW_PP_REFUSE);
    msgpack_pack_uint32(&pk, (uint32_t)status);
    pack_slice(&pk, kv_slice(message, n));
}

/* ---- unpacking ---------------------------------------------------------- */

void gw_unpacked_init(gw_unpacked_t *u)
{
    memset(u, 0, sizeof *u);
}

void gw_unpacked_release(gw_unpacked_t *u)
{
    if (u->live) msgpack_unpacked_destroy(&u->up);
    u->live = false;
}

static bool obj_u64(const msgpack_object *o, uint64_t *out)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER) return false;
    *out = o->via.u64;
    return true;
}

static bool obj_u32(const msgpack_object *o, uint32_t max, uint32_t *out)
{
    uint64_t v;
    if (!obj_u64(o, &v) || v > max) return false;
    *out = (uint32_t)v;
    return true;
}

static bool obj_port(const msgpack_object *o, bool nonzero, uint16_t *out)
{
    uint32_t v;
    if (!obj_u32(o, UINT16_MAX, &v) || (nonzero && v == 0)) return false;
    *out = (uint16_t)v;
    return true;
}

/* str or bin, at most max bytes, no NUL inside (names become C strings). */
static bool obj_text(const msgpack_object *o, size_t max, bool nonempty,
                     kv_slice_t *out)
{
    kv_slice_t s;
    if (o->type == MSGPACK_OBJECT_STR)
        s = kv_slice(o->via.str.ptr, o->via.str.size);
    else if (o->type == MSGPACK_OBJECT_BIN)
        s = kv_slice(o->via.bin.ptr, o->via.bin.size);
    else
        return false;
    if (s.len > max || (nonempty && s.len == 0)) return false;
    if (s.len && memchr(s.data, 0, s.len)) return false;
    *out = s;
    return true;
}

static bool obj_name(const msgpack_object *o, kv_slice_t *out)
{
    return obj_text(o, GOSSIP_MAX_NAME, true, out);
}

static const msgpack_object *arr_of(const msgpack_object *o, uint32_t min,
                                    uint32_t *n)
{
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size < min) return NULL;
    *n = o->via.array.size;
    return o->via.array.ptr;
}

/* STATE_FIELDS elements at a (n in all), plus liveness when asked; an
 * alive update may be compact (tokens nil, digest after the load). */
static bool state_from(const msgpack_object *a, uint32_t n, bool with_liveness,
                       bool allow_compact, gw_state_t *out)
{
    gw_state_t s;
    memset(&s, 0, sizeof s);
    kv_slice_t tok;
    if (!obj_name(&a[0], &s.name)) return false;
    if (!obj_text(&a[1], GW_MAX_NODE_ID, true, &s.node_id)) return false;
    if (!obj_name(&a[2], &s.host)) return false;
    if (!obj_port(&a[3], true, &s.port)) return false;
    if (!obj_port(&a[4], false, &s.client_port)) return false;
    if (!obj_port(&a[5], false, &s.admin_port)) return false;
    if (!obj_text(&a[6], GOSSIP_MAX_NAME, false, &s.rack)) return false;
    if (!obj_u64(&a[7], &s.generation) || s.generation == 0) return false;
    if (!obj_u64(&a[8], &s.incarnation)) return false;
    if (!obj_u32(&a[9], GOSSIP_LEFT, &s.status)) return false;
    if (a[10].type == MSGPACK_OBJECT_NIL && allow_compact) {
        if (n < STATE_FIELDS + 1 || !obj_u64(&a[STATE_FIELDS], &s.tokens_digest))
            return false;
        s.compact = true;
        tok = kv_slice(NULL, 0);
    } else if (a[10].type == MSGPACK_OBJECT_BIN) {
        tok = kv_slice(a[10].via.bin.ptr, a[10].via.bin.size);
    } else {
        return false;
    }
    if (tok.len % 8 != 0 || tok.len / 8 > GOSSIP_MAX_TOKENS) return false;
    s.ntokens = (uint32_t)(tok.len / 8);
    s.tokens_be = tok.data;
    for (uint32_t i = 1; i < s.ntokens; i++)
        if (gw_token_at(&s, i - 1) >= gw_token_at(&s, i)) return false;
    if (!obj_u64(&a[11], &s.load)) return false;
    s.liveness = GOSSIP_ALIVE;
    if (with_liveness && !obj_u32(&a[12], GOSSIP_DEAD, &s.liveness))
        return false;
    *out = s;
    return true;
}

gw_result_t gw_state_decode(const msgpack_object *o, bool with_liveness,
                            gw_state_t *out)
{
    uint32_t n;
    const msgpack_object *a =
        arr_of(o, STATE_FIELDS + (with_liveness ? 1u : 0u), &n);
    if (!a || !state_from(a, n, with_liveness, false, out)) return GW_MALFORMED;
    return GW_OK;
}

gw_result_t gw_update_decode(const msgpack_object *o, gw_update_t *out)
{
    uint32_t n, kind;
    const msgpack_object *a = arr_of(o, 1, &n);
    gw_update_t u;
    memset(&u, 0, sizeof u);
    if (!a || !obj_u32(&a[0], GW_UPD_DEAD, &kind) || kind < GW_UPD_ALIVE)
        return GW_MALFORMED;
    u.kind = kind;
    if (kind == GW_UPD_ALIVE) {
        if (n < 1 + STATE_FIELDS || !state_from(a + 1, n - 1, false, true, &u.st))
            return GW_MALFORMED;
        u.name = u.st.name;
        u.generation = u.st.generation;
        u.incarnation = u.st.incarnation;
    } else {
        if (n < 5 || !obj_name(&a[1], &u.name) ||
            !obj_u64(&a[2], &u.generation) ||
            !obj_u64(&a[3], &u.incarnation) || !obj_name(&a[4], &u.from))
            return GW_MALFORMED;
    }
    *out = u;
    return GW_OK;
}

/* Validate, unpack, and check [magic, version, type, ...]. */
static gw_result_t unpack_body(const uint8_t *data, size_t len,
                               gw_unpacked_t *u, const msgpack_object **arr,
                               uint32_t *n, uint32_t *version, uint32_t *type)
{
    gw_unpacked_release(u);
    if (!data || len == 0 || kv_msgpack_validate(data, len) != KV_OK)
        return GW_MALFORMED;
    msgpack_unpacked_init(&u->up);
    u->live = true;
    size_t used = 0;
    if (msgpack_unpack_next(&u->up, (const char *)data, len, &used) !=
            MSGPACK_UNPACK_SUCCESS ||
        used != len)
        return GW_MALFORMED;
    uint64_t magic;
    const msgpack_object *a = arr_of(&u->up.data, 3, n);
    if (!a || !obj_u64(&a[0], &magic) || magic != GW_MAGIC ||
        !obj_u32(&a[1], UINT32_MAX, version) ||
        !obj_u32(&a[2], UINT32_MAX, type))
        return GW_MALFORMED;
    *arr = a;
    return GW_OK;
}

gw_result_t gw_decode_msg(const uint8_t *data, size_t len, gw_unpacked_t *u,
                          gw_msg_t *out)
{
    const msgpack_object *a;
    uint32_t n, version, type;
    gw_result_t r = unpack_body(data, len, u, &a, &n, &version, &type);
    if (r != GW_OK) return r;
    if (version != GOSSIP_PROTO_VERSION) return GW_VERSION;
    if (type < GW_PING || type > GW_GOSSIP) return GW_MALFORMED;
    uint32_t nf = type_fields(type);
    if (n < HEAD_FIELDS + nf + 1) return GW_MALFORMED;

    gw_msg_t m;
    memset(&m, 0, sizeof m);
    m.h.type = type;
    if (!obj_name(&a[3], &m.h.cluster) || !obj_name(&a[4], &m.h.name) ||
        !obj_text(&a[5], GW_MAX_NODE_ID, true, &m.h.node_id) ||
        !obj_u64(&a[6], &m.h.generation) || m.h.generation == 0 ||
        !obj_name(&a[7], &m.h.host) || !obj_port(&a[8], true, &m.h.port))
        return GW_MALFORMED;
    const msgpack_object *f = a + HEAD_FIELDS;
    switch (type) {
    case GW_PING:
        if (!obj_u64(&f[0], &m.seq) || !obj_name(&f[1], &m.target))
            return GW_MALFORMED;
        if (f[2].type != MSGPACK_OBJECT_NIL) {
            uint32_t nn;
            const msgpack_object *na = arr_of(&f[2], 3, &nn);
            if (!na || !obj_u32(&na[0], GW_UPD_DEAD, &m.notice_kind) ||
                m.notice_kind < GW_UPD_SUSPECT || !obj_u64(&na[1], &m.notice_gen) ||
                !obj_u64(&na[2], &m.notice_inc))
                return GW_MALFORMED;
            m.has_notice = true;
        }
        break;
    case GW_ACK:
    case GW_NACK:
        if (!obj_u64(&f[0], &m.seq)) return GW_MALFORMED;
        break;
    case GW_PING_REQ:
        if (!obj_u64(&f[0], &m.seq) || !obj_name(&f[1], &m.target) ||
            !obj_name(&f[2], &m.target_host) ||
            !obj_port(&f[3], true, &m.target_port))
            return GW_MALFORMED;
        break;
    default:
        break;
    }
    const msgpack_object *uo = &a[HEAD_FIELDS + nf];
    if (uo->type != MSGPACK_OBJECT_ARRAY) return GW_MALFORMED;
    m.updates = uo->via.array.ptr;
    m.nupdates = uo->via.array.size;
    for (uint32_t i = 0; i < m.nupdates; i++) {
        gw_update_t upd;
        if (gw_update_decode(&m.updates[i], &upd) != GW_OK) return GW_MALFORMED;
    }
    *out = m;
    return GW_OK;
}

gw_result_t gw_decode_pp(const uint8_t *data, size_t len, gw_unpacked_t *u,
                         gw_pp_t *out)
{
    const msgpack_object *a;
    uint32_t n, version, kind;
    gw_result_t r = unpack_body(data, len, u, &a, &n, &version, &kind);
    if (r != GW_OK) return r;
    gw_pp_t p;
    memset(&p, 0, sizeof p);
    p.version = version;
    p.kind = kind;
    if (kind == GW_PP_REFUSE) {
        /* The refusal's layout is the same in every version, so a node
         * can always read why another refused it. */
        if (n < 5 || !obj_u32(&a[3], KV_STATUS_COUNT_ - 1, &p.status) ||
            !obj_text(&a[4], GW_MAX_MESSAGE, false, &p.message))
            return GW_MALFORMED;
        *out = p;
        return GW_OK;
    }
    if (version != GOSSIP_PROTO_VERSION) {
        *out = p;
        return GW_VERSION;
    }
    if ((kind != GW_PP_REQUEST && kind != GW_PP_REPLY) || n < 7)
        return GW_MALFORMED;
    if (!obj_name(&a[3], &p.cluster) || !obj_u32(&a[4], UINT32_MAX, &p.rf) ||
        gw_state_decode(&a[5], true, &p.self) != GW_OK)
        return GW_MALFORMED;
    if (a[6].type != MSGPACK_OBJECT_ARRAY) return GW_MALFORMED;
    p.records = a[6].via.array.ptr;
    p.nrecords = a[6].via.array.size;
    for (uint32_t i = 0; i < p.nrecords; i++) {
        gw_state_t st;
        if (gw_state_decode(&p.records[i], true, &st) != GW_OK)
            return GW_MALFORMED;
    }
    *out = p;
    return GW_OK;
}
