/* frame.c -- incremental frame decoder, msgpack validation, frame writer.
 *
 * DESIGN  Received bytes accumulate in one buffer with a read offset; a frame
 *         is cut out once its header and whole body are present. The body is
 *         first walked by kv_msgpack_validate(), which needs no memory and
 *         checks every container count against the bytes left, so msgpack-c
 *         (which allocates count * sizeof(msgpack_object) up front for each
 *         array) never allocates more than a small multiple of the body.
 *         The body is then copied into storage owned by the frame, because
 *         msgpack-c's str/bin objects point into the bytes they came from and
 *         the decoder's buffer moves as more data arrives.
 * INVARIANTS (1) off <= buf.len; (2) once `error` is set it stays set and no
 *            frame is returned again; (3) no allocation is sized by a length
 *            field before that field has been checked against max_body.
 * THREADING  A decoder belongs to one connection and one thread.
 */
#include "frame.h"

#include "coding.h"

struct kv_frame_decoder {
    kv_buf_t buf;
    size_t off;
    uint32_t max_body;
    const char *error;
};

kv_frame_decoder_t *kv_frame_decoder_create(uint32_t max_body)
{
    kv_frame_decoder_t *d = kv_calloc(1, sizeof *d);
    d->max_body = max_body ? max_body : KV_FRAME_DEFAULT_MAX;
    return d;
}

void kv_frame_decoder_destroy(kv_frame_decoder_t *d)
{
    if (!d) return;
    kv_buf_deinit(&d->buf);
    kv_free(d);
}

static kv_status_t fail(kv_frame_decoder_t *d, const char *why)
{
    if (!d->error) d->error = why;
    kv_buf_deinit(&d->buf);
    d->off = 0;
    return KV_PROTO;
}

const char *kv_frame_decoder_error(const kv_frame_decoder_t *d)
{
    return d->error;
}

size_t kv_frame_decoder_buffered(const kv_frame_decoder_t *d)
{
    return d->buf.len - d->off;
}

/* Refuse an oversized length as soon as the header is complete. */
static kv_status_t check_header(kv_frame_decoder_t *d)
{
    if (d->buf.len - d->off < KV_FRAME_HEADER) return KV_OK;
    uint32_t len = kv_get_be32(d->buf.data + d->off);
    if (len > d->max_body) return fail(d, "frame length above the limit");
    if (len == 0) return fail(d, "empty frame body");
    return KV_OK;
}

kv_status_t kv_frame_decoder_feed(kv_frame_decoder_t *d, const void *data,
                                  size_t len)
{
    if (d->error) return KV_PROTO;
    if (d->off > 0 && d->off == d->buf.len) {
        kv_buf_clear(&d->buf);
        d->off = 0;
    } else if (d->off > 0 && d->off >= d->buf.cap / 2) {
        kv_buf_consume(&d->buf, d->off);
        d->off = 0;
    }
    /* Feed the header bytes first so an oversized length is refused before
     * any of its body is buffered. */
    const uint8_t *p = data;
    size_t have = d->buf.len - d->off;
    if (have < KV_FRAME_HEADER) {
        size_t n = KV_MIN(len, KV_FRAME_HEADER - have);
        kv_buf_append(&d->buf, p, n);
        p += n;
        len -= n;
        KV_RET(check_header(d));
    }
    kv_buf_append(&d->buf, p, len);
    return KV_OK;
}

void kv_frame_init(kv_frame_t *f)
{
    memset(f, 0, sizeof *f);
}

void kv_frame_release(kv_frame_t *f)
{
    if (f->live_) msgpack_unpacked_destroy(&f->unpacked_);
    kv_free(f->body_);
    kv_frame_init(f);
}

kv_status_t kv_frame_decoder_next(kv_frame_decoder_t *d, kv_frame_t *f)
{
    kv_frame_release(f);
    if (d->error) return KV_PROTO;
    size_t avail = d->buf.len - d->off;
    if (avail < KV_FRAME_HEADER) return KV_AGAIN;
    KV_RET(check_header(d));
    uint32_t len = kv_get_be32(d->buf.data + d->off);
    if (avail - KV_FRAME_HEADER < len) return KV_AGAIN;

    const uint8_t *body = d->buf.data + d->off + KV_FRAME_HEADER;
    if (kv_msgpack_validate(body, len) != KV_OK)
        return fail(d, "frame body is not one valid msgpack object");

    f->body_ = kv_try_malloc(len);
    if (!f->body_) return fail(d, "out of memory for frame body");
    memcpy(f->body_, body, len);
    msgpack_unpacked_init(&f->unpacked_);
    f->live_ = true;
    size_t used = 0;
    msgpack_unpack_return r = msgpack_unpack_next(
        &f->unpacked_, (const char *)f->body_, len, &used);
    if (r != MSGPACK_UNPACK_SUCCESS || used != len) {
        kv_frame_release(f);
        return fail(d, "frame body rejected by msgpack");
    }
    const msgpack_object *o = &f->unpacked_.data;
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size < 2 ||
        o->via.array.ptr[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        o->via.array.ptr[0].via.u64 > UINT32_MAX ||
        o->via.array.ptr[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
        kv_frame_release(f);
        return fail(d, "frame body is not [type, request_id, ...]");
    }
    f->type = (uint32_t)o->via.array.ptr[0].via.u64;
    f->request_id = o->via.array.ptr[1].via.u64;
    f->args = o->via.array.ptr + 2;
    f->nargs = o->via.array.size - 2;
    f->wire_len = KV_FRAME_HEADER + (size_t)len;
    d->off += f->wire_len;
    return KV_OK;
}

/* ---- validation -------------------------------------------------------- */

/* Walk one object at *pp; advance *pp past it. */
static bool walk(const uint8_t **pp, const uint8_t *end, int depth)
{
    const uint8_t *p = *pp;
    if (p >= end) return false;
    uint8_t b = *p++;
    size_t left = (size_t)(end - p);
    uint64_t count = 0; /* container elements to walk */
    size_t skip = 0;    /* payload bytes to skip */

#define NEED(n)                                                                \
    do {                                                                       \
        if (left < (n)) return false;                                          \
    } while (0)

    if (b <= 0x7f || b >= 0xe0) { /* fixint */
    } else if (b <= 0x8f) {
        count = 2u * (b & 0x0f);
    } else if (b <= 0x9f) {
        count = b & 0x0f;
    } else if (b <= 0xbf) {
        skip = b & 0x1f;
    } else {
        switch (b) {
        case 0xc0: case 0xc2: case 0xc3: break;          /* nil, bool */
        case 0xcc: case 0xd0: skip = 1; break;           /* 8-bit ints */
        case 0xcd: case 0xd1: skip = 2; break;
        case 0xce: case 0xd2: case 0xca: skip = 4; break;
        case 0xcf: case 0xd3: case 0xcb: skip = 8; break;
        case 0xc4: case 0xd9: NEED(1); skip = 1 + p[0]; break; /* bin8, str8 */
        case 0xc5: case 0xda: NEED(2); skip = 2 + ((size_t)p[0] << 8 | p[1]); break;
        case 0xc6: case 0xdb:
            NEED(4);
            skip = 4 + (size_t)kv_get_be32(p);
            break;
        case 0xdc: NEED(2); count = (uint64_t)p[0] << 8 | p[1]; p += 2; left -= 2; break;
        case 0xdd: NEED(4); count = kv_get_be32(p); p += 4; left -= 4; break;
        case 0xde: NEED(2); count = 2 * ((uint64_t)p[0] << 8 | p[1]); p += 2; left -= 2; break;
        case 0xdf: NEED(4); count = 2 * (uint64_t)kv_get_be32(p); p += 4; left -= 4; break;
        default: return false; /* 0xc1 (never used) and extension types */
        }
    }
#undef NEED
    if (skip) {
        if (left < skip) return false;
        p += skip;
    }
    if (count) {
        /* every element takes at least one byte */
        if (count > (uint64_t)(end - p) || depth >= KV_FRAME_MAX_DEPTH)
            return false;
        for (uint64_t i = 0; i < count; i++)
            if (!walk(&p, end, depth + 1)) return false;
    }
    *pp = p;
    return true;
}

kv_status_t kv_msgpack_validate(const uint8_t *p, size_t len)
{
    const uint8_t *end = p + len;
    if (!walk(&p, end, 0) || p != end) return KV_PROTO;
    return KV_OK;
}

/* ---- typed arguments --------------------------------------------------- */

static const msgpack_object *arg(const kv_frame_t *f, uint32_t i)
{
    return i < f->nargs ? &f->args[i] : NULL;
}

kv_status_t kv_arg_u64(const kv_frame_t *f, uint32_t i, uint64_t *out)
{
    const msgpack_object *o = arg(f, i);
    if (!o || o->type != MSGPACK_OBJECT_POSITIVE_INTEGER) return KV_PROTO;
    *out = o->via.u64;
    return KV_OK;
}

kv_status_t kv_arg_i64(const kv_frame_t *f, uint32_t i, int64_t *out)
{
    const msgpack_object *o = arg(f, i);
    if (!o) return KV_PROTO;
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *out = o->via.i64;
        return KV_OK;
    }
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX) {
        *out = (int64_t)o->via.u64;
        return KV_OK;
    }
    return KV_PROTO;
}

kv_status_t kv_arg_bool(const kv_frame_t *f, uint32_t i, bool *out)
{
    const msgpack_object *o = arg(f, i);
    if (!o || o->type != MSGPACK_OBJECT_BOOLEAN) return KV_PROTO;
    *out = o->via.boolean;
    return KV_OK;
}

kv_status_t kv_arg_bytes(const kv_frame_t *f, uint32_t i, kv_slice_t *out)
{
    const msgpack_object *o = arg(f, i);
    if (!o) return KV_PROTO;
    if (o->type == MSGPACK_OBJECT_BIN) {
        *out = kv_slice(o->via.bin.ptr, o->via.bin.size);
        return KV_OK;
    }
    if (o->type == MSGPACK_OBJECT_STR) {
        *out = kv_slice(o->via.str.ptr, o->via.str.size);
        return KV_OK;
    }
    return KV_PROTO;
}

kv_status_t kv_arg_opt_bytes(const kv_frame_t *f, uint32_t i, kv_slice_t *out,
                             bool *present)
{
    const msgpack_object *o = arg(f, i);
    if (o && o->type == MSGPACK_OBJECT_NIL) {
        *out = kv_slice(NULL, 0);
        *present = false;
        return KV_OK;
    }
    KV_RET(kv_arg_bytes(f, i, out));
    *present = true;
    return KV_OK;
}

kv_status_t kv_arg_array(const kv_frame_t *f, uint32_t i,
                         const msgpack_object_array **out)
{
    const msgpack_object *o = arg(f, i);
    if (!o || o->type != MSGPACK_OBJECT_ARRAY) return KV_PROTO;
    *out = &o->via.array;
    return KV_OK;
}

/* ---- writer ------------------------------------------------------------ */

static int buf_write(void *data, const char *p, size_t n)
{
    kv_buf_append(data, p, n);
    return 0;
}

void kv_frame_begin(kv_frame_writer_t *w, kv_buf_t *buf, uint32_t type,
                    uint64_t request_id, uint32_t nargs)
{
    static const uint8_t zero[KV_FRAME_HEADER];
    w->buf = buf;
    w->start = buf->len;
    kv_buf_append(buf, zero, sizeof zero);
    msgpack_packer_init(&w->pk, buf, buf_write);
    msgpack_pack_array(&w->pk, 2 + nargs);
    msgpack_pack_uint32(&w->pk, type);
    msgpack_pack_uint64(&w->pk, request_id);
}

kv_status_t kv_frame_end(kv_frame_writer_t *w, uint32_t max_body)
{
    size_t body = w->buf->len - w->start - KV_FRAME_HEADER;
    if (body > (max_body ? max_body : KV_FRAME_DEFAULT_MAX)) {
        w->buf->len = w->start;
        return KV_INVALID;
    }
    kv_put_be32(w->buf->data + w->start, (uint32_t)body);
    return KV_OK;
}
