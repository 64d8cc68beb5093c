/* fuzz_peer_proto.c -- every node-to-node message decoder
 * (common/peer_proto.c), each run on every frame whatever its type.
 *
 * The input is a frame body (the harness adds the length). Records inside
 * HINTS and STREAM_CHUNK are read one by one as the node does; a decoded
 * MERKLE_REPLY has every leaf read. Where an encoder exists, a decoded
 * message is encoded again.
 */
#include "frame.h"
#include "fuzz_util.h"
#include "peer_proto.h"

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
        peer_head_t h;
        (void)peer_decode_head(&f, &h);
        peer_hello_t hello;
        if (peer_decode_hello(&f, &h, &hello) == KV_OK)
            (void)peer_encode_hello(&out, PEER_HELLO, h.hlc, &hello, 0);
        peer_refuse_t ref;
        if (peer_decode_refuse(&f, &h, &ref) == KV_OK)
            (void)peer_encode_refuse(&out, h.hlc, &ref, 0);
        uint64_t u1, u2;
        (void)peer_decode_pong(&f, &h, &u1);
        peer_mutation_t m;
        if (peer_decode_mutation(&f, &h, &m) == KV_OK)
            (void)peer_encode_mutation(&out, h.msg_id, h.hlc, &m, 0);
        peer_mutation_reply_t mr;
        if (peer_decode_mutation_reply(&f, &h, &mr) == KV_OK)
            (void)peer_encode_mutation_reply(&out, h.msg_id, h.hlc, &mr, 0);
        kv_slice_t key;
        if (peer_decode_read(&f, &h, &key) == KV_OK)
            (void)peer_encode_read(&out, h.msg_id, h.hlc, key, 0);
        peer_read_reply_t rr;
        if (peer_decode_read_reply(&f, &h, &rr) == KV_OK)
            (void)peer_encode_read_reply(&out, h.msg_id, h.hlc, &rr, 0);
        kv_slice_t body;
        (void)peer_decode_pushpull(&f, &h, &body);
        uint32_t n;
        if (peer_decode_hints(&f, &h, &n) == KV_OK) {
            for (uint32_t i = 0; i < n; i++) {
                peer_hint_t ph;
                if (peer_decode_hint_at(&f, i, &ph) != KV_OK) break;
            }
        }
        peer_hints_reply_t hr;
        (void)peer_decode_hints_reply(&f, &h, &hr);
        (void)peer_decode_stream_req(&f, &h, &u1, &u2);
        uint64_t *se = NULL;
        size_t nse = 0;
        if (peer_decode_stream_req_ranges(&f, &h, &se, &nse) == KV_OK) {
            if (nse == 0) abort(); /* at least the first range */
            (void)peer_encode_stream_req_ranges(&out, h.msg_id, h.hlc, se, nse, 0);
            kv_free(se);
        }
        peer_stream_chunk_t ch;
        if (peer_decode_stream_chunk(&f, &h, &ch) == KV_OK) {
            peer_hint_t cells[64];
            uint32_t k = 0;
            for (uint32_t i = 0; i < ch.n; i++) {
                peer_hint_t c;
                if (peer_decode_stream_cell_at(&f, i, &c) != KV_OK) break;
                if (k < 64) cells[k++] = c;
            }
            (void)peer_stream_checksum(cells, k);
        }
        kv_status_t st;
        (void)peer_decode_stream_ack(&f, &h, &u1, &st);
        kv_slice_t msg;
        (void)peer_decode_stream_abort(&f, &h, &st, &msg);
        peer_fetch_t fe;
        if (peer_decode_fetch(&f, &h, &fe) == KV_OK) {
            /* the extra ranges are read one by one, then sent on again */
            uint64_t *extra = fe.nextra ? kv_malloc(fe.nextra * 2 * sizeof *extra) : NULL;
            for (size_t i = 0; i < fe.nextra; i++)
                peer_fetch_extra_at(&f, &fe, i, &extra[2 * i], &extra[2 * i + 1]);
            fe.extra = extra;
            (void)peer_encode_fetch(&out, h.msg_id, h.hlc, &fe, 0);
            kv_free(extra);
        }
        peer_fetch_reply_t fr;
        if (peer_decode_fetch_reply(&f, &h, &fr) == KV_OK)
            (void)peer_encode_fetch_reply(&out, h.msg_id, h.hlc, &fr, 0);
        uint32_t depth;
        (void)peer_decode_merkle_req(&f, &h, &u1, &u2, &depth);
        peer_merkle_reply_t mk;
        if (peer_decode_merkle_reply(&f, &h, &mk) == KV_OK && mk.status == KV_OK) {
            uint64_t x = 0;
            for (size_t i = 0; i < ((size_t)1 << mk.depth); i++) x ^= peer_merkle_leaf(&mk, i);
            (void)x;
        }
    }
    kv_buf_deinit(&out);
    kv_frame_release(&f);
    kv_frame_decoder_destroy(d);
    kv_buf_deinit(&in);
    return 0;
}
