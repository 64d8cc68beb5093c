/* fuzz_client_proto.c -- every client message decoder (common/proto.c).
 *
 * The input is a frame body (the harness adds the 4-byte length, so
 * mutations stay frames); each decoder is run on the frame whatever its
 * type, the way a confused or hostile peer could send any message in any
 * place. Decoded replies are re-encoded (what the node and libcairn do with
 * them) to check the decoders' outputs are coherent.
 */
#include "frame.h"
#include "fuzz_util.h"
#include "proto.h"

static void info_item(void *arg, kv_slice_t name, bool is_str, kv_slice_t str,
                      uint64_t num)
{
    size_t *n = arg;
    *n += name.len + (is_str ? str.len : 0) + (num & 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 20)) return 0;
    kv_buf_t in = {0};
    uint8_t len[4];
    kv_put_be32(len, (uint32_t)size);
    kv_buf_append(&in, len, 4);
    kv_buf_append(&in, data, size);
    kv_frame_decoder_t *d = kv_frame_decoder_create(1u << 20);
    kv_frame_t f;
    kv_frame_init(&f);
    kv_frame_decoder_feed(d, in.data, in.len);
    kv_buf_t out = {0};
    if (kv_frame_decoder_next(d, &f) == KV_OK) {
        proto_hello_t h;
        if (proto_decode_hello(&f, &h) == KV_OK)
            (void)proto_encode_hello(&out, f.request_id, &h, 0);
        proto_hello_ok_t ok;
        if (proto_decode_hello_ok(&f, &ok) == KV_OK)
            (void)proto_encode_hello_ok(&out, f.request_id, &ok, 0);
        proto_request_t q;
        if (proto_decode_request(&f, &q) == KV_OK) (void)proto_encode_request(&out, &q, 0);
        proto_reply_t r;
        if (proto_decode_reply(&f, &r) == KV_OK) (void)proto_encode_reply(&out, &r, 0);
        uint64_t hlc = 0;
        size_t acc = 0;
        (void)proto_decode_info_reply(&f, &hlc, info_item, &acc);
        kv_slice_t op, arg, key;
        if (proto_decode_admin(&f, &op, &arg) == KV_OK)
            (void)proto_encode_admin(&out, f.request_id, op, arg, 0);
        bool has_key;
        if (proto_decode_ring(&f, &key, &has_key) == KV_OK)
            (void)proto_encode_ring(&out, f.request_id, has_key ? &key : NULL, 0);
        if (proto_decode_local_get(&f, &key) == KV_OK)
            (void)proto_encode_local_get(&out, f.request_id, key, 0);
        proto_local_reply_t lr;
        if (proto_decode_local_reply(&f, &lr) == KV_OK) {
            /* what the decoder accepted, the encoder must accept too */
            if (proto_encode_local_reply(&out, &lr, 0) != KV_OK) abort();
        }
        proto_ring_t ring;
        if (proto_decode_ring_reply(&f, &hlc, &ring) == KV_OK) {
            /* what the decoder accepted, the encoder must accept too */
            if (proto_encode_ring_reply(&out, f.request_id, hlc, &ring, 0) != KV_OK)
                abort();
        }
        proto_ring_free(&ring);
    }
    kv_buf_deinit(&out);
    kv_frame_release(&f);
    kv_frame_decoder_destroy(d);
    kv_buf_deinit(&in);
    return 0;
}
