/* fuzz_frame.c -- the wire frame decoder (common/frame.c) on hostile bytes.
 *
 * The first byte picks the frame limit (so the "length above the limit"
 * path is hit with small inputs) and the next ones the sizes of the pieces
 * the rest is fed in (TCP splits a stream anywhere). Every frame taken out
 * has its arguments read with each typed accessor. The decoder must never
 * crash, leak or read out of bounds, and must stay failed once failed.
 */
#include "frame.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_t f = {data, size};
    static const uint32_t limits[] = {0, 16, 64, 300, 4096, 1u << 20};
    uint32_t max = limits[fz_u8(&f) % KV_ARRAY_LEN(limits)];
    uint8_t split = fz_u8(&f);
    kv_frame_decoder_t *d = kv_frame_decoder_create(max);
    kv_frame_t fr;
    kv_frame_init(&fr);
    bool failed = false;
    while (f.n) {
        size_t piece = split ? 1 + fz_u8(&f) % (split + 1u) : f.n;
        kv_slice_t s = fz_take(&f, piece);
        kv_status_t rc = kv_frame_decoder_feed(d, s.data, s.len);
        if (failed && rc != KV_PROTO) abort(); /* sticky */
        for (;;) {
            rc = kv_frame_decoder_next(d, &fr);
            if (rc == KV_AGAIN) break;
            if (rc != KV_OK) {
                if (!kv_frame_decoder_error(d)) abort();
                failed = true;
                break;
            }
            if (failed) abort();
            for (uint32_t i = 0; i <= fr.nargs; i++) {
                uint64_t u;
                int64_t v;
                bool b, present;
                kv_slice_t sl;
                const msgpack_object_array *a;
                (void)kv_arg_u64(&fr, i, &u);
                (void)kv_arg_i64(&fr, i, &v);
                (void)kv_arg_bool(&fr, i, &b);
                (void)kv_arg_bytes(&fr, i, &sl);
                (void)kv_arg_opt_bytes(&fr, i, &sl, &present);
                (void)kv_arg_array(&fr, i, &a);
            }
        }
        if (failed) break;
    }
    (void)kv_frame_decoder_buffered(d);
    kv_frame_release(&fr);
    kv_frame_decoder_destroy(d);
    (void)kv_msgpack_validate(data, size);
    return 0;
}
