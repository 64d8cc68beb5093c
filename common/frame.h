/* frame.h -- Cairn's wire framing: a 4-byte big-endian body length, then a
 * msgpack body shaped [type, request_id, arg...].
 *
 * Decoding is incremental: feed bytes as they arrive, in any split, and take
 * whole frames out. The decoder refuses a length above its limit as soon as
 * the 4 header bytes are in (before buffering any of the body), and refuses
 * a body that is not exactly one valid msgpack array of the expected shape.
 * Every refusal is KV_PROTO and sticky: the stream cannot be resynchronised,
 * so its connection must be closed. Memory is bounded by the frame limit
 * plus a small constant factor (msgpack objects for the largest frame).
 *
 * Encoding packs straight into a kv_buf_t and patches the length at the end.
 */
#ifndef CAIRN_FRAME_H
#define CAIRN_FRAME_H

#include <msgpack.h>

#include "kv.h"

#define KV_FRAME_HEADER 4
#define KV_FRAME_DEFAULT_MAX (32u * 1024 * 1024)
#define KV_FRAME_MAX_DEPTH 16 /* nesting of arrays/maps inside a body */

/* ---- decoding ---------------------------------------------------------- */

/* One decoded frame. args[0..nargs) are the elements after type and id.
 * The objects point into storage owned by the frame: valid until
 * kv_frame_release() or the next kv_frame_decoder_next() into it. */
typedef struct kv_frame {
    uint32_t type;
    uint64_t request_id;
    const msgpack_object *args;
    uint32_t nargs;
    size_t wire_len; /* header + body bytes this frame took */
    uint8_t *body_;  /* owned copy of the body: msgpack-c's objects point in */
    msgpack_unpacked unpacked_;
    bool live_;
} kv_frame_t;

typedef struct kv_frame_decoder kv_frame_decoder_t;

/* max_body: largest body accepted (0 means KV_FRAME_DEFAULT_MAX). */
kv_frame_decoder_t *kv_frame_decoder_create(uint32_t max_body);
void kv_frame_decoder_destroy(kv_frame_decoder_t *d);

/* Append received bytes. KV_PROTO once the decoder has failed (the bytes are
 * dropped). Bytes are buffered only up to the end of the current frame plus
 * what the caller feeds; callers feed what they read and then drain with
 * kv_frame_decoder_next until it says KV_AGAIN. */
kv_status_t kv_frame_decoder_feed(kv_frame_decoder_t *d, const void *data,
                                  size_t len);

/* Take the next whole frame into *f (kv_frame_init first; an earlier frame
 * held in *f is released). KV_OK: *f holds a frame. KV_AGAIN: need more
 * bytes. KV_PROTO: the stream is malformed; kv_frame_decoder_error() says
 * why, and every later call returns KV_PROTO. */
kv_status_t kv_frame_decoder_next(kv_frame_decoder_t *d, kv_frame_t *f);

/* Why the decoder failed (static text), or NULL while it is healthy. */
const char *kv_frame_decoder_error(const kv_frame_decoder_t *d);

/* Bytes held that do not yet form a whole frame. */
size_t kv_frame_decoder_buffered(const kv_frame_decoder_t *d);

void kv_frame_init(kv_frame_t *f);
void kv_frame_release(kv_frame_t *f);

/* Check that [p, p+len) is exactly one well-formed msgpack object whose
 * every container count fits in the bytes that remain and whose nesting is
 * at most KV_FRAME_MAX_DEPTH. Cheap, allocation-free; the frame decoder runs
 * it before msgpack-c sees the body. */
kv_status_t kv_msgpack_validate(const uint8_t *p, size_t len);

/* ---- typed access to arguments ---------------------------------------- */

/* Each returns KV_PROTO when index i is out of range or of another type. */
kv_status_t kv_arg_u64(const kv_frame_t *f, uint32_t i, uint64_t *out);
kv_status_t kv_arg_i64(const kv_frame_t *f, uint32_t i, int64_t *out);
kv_status_t kv_arg_bool(const kv_frame_t *f, uint32_t i, bool *out);
/* bin or str; the slice points into the frame. */
kv_status_t kv_arg_bytes(const kv_frame_t *f, uint32_t i, kv_slice_t *out);
/* nil -> *present = false. */
kv_status_t kv_arg_opt_bytes(const kv_frame_t *f, uint32_t i, kv_slice_t *out,
                             bool *present);
kv_status_t kv_arg_array(const kv_frame_t *f, uint32_t i,
                         const msgpack_object_array **out);

/* ---- encoding ---------------------------------------------------------- */

/* A frame being written into a buffer (other frames may precede it). */
typedef struct kv_frame_writer {
    kv_buf_t *buf;
    size_t start;
    msgpack_packer pk;
} kv_frame_writer_t;

/* Start a frame with nargs arguments after type and request id; pack the
 * arguments with msgpack_pack_* on w->pk, then kv_frame_end. */
void kv_frame_begin(kv_frame_writer_t *w, kv_buf_t *buf, uint32_t type,
                    uint64_t request_id, uint32_t nargs);
/* Patch the length. KV_INVALID (and the partial frame is removed) when the
 * body exceeds max_body (0 means KV_FRAME_DEFAULT_MAX). */
kv_status_t kv_frame_end(kv_frame_writer_t *w, uint32_t max_body);

/* Pack a byte string as msgpack bin. */
static inline void kv_pack_bytes(msgpack_packer *pk, kv_slice_t s)
{
    msgpack_pack_bin(pk, s.len);
    msgpack_pack_bin_body(pk, s.data, s.len);
}

static inline void kv_pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

#endif /* CAIRN_FRAME_H */
