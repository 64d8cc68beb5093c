/* fuzz_hint_log.c -- the hint log reader (replication/hint_log.c): a hints
 * directory for one target holding a segment built from the input
 * (fuzz_util.h: raw, or records with valid checksums) and, when the mode
 * asks, a cursor file made of input bytes. The log is opened (which scans
 * and counts every segment) and read to the end, acknowledging each batch
 * as replay does; then appended to and read again.
 */
#include "fuzz_util.h"
#include "hints.h"

#define TARGET "0123456789abcdef0123456789abcdef"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_quiet();
    fz_t f = {data, size};
    uint8_t opts = fz_u8(&f);
    kv_slice_t cursor = fz_take(&f, (opts & 1) ? fz_u8(&f) : 0);
    kv_buf_t seg = {0};
    fz_build_log(&f, "CAIRNHNT", &seg);

    char dir[512], tdir[600], path[700];
    snprintf(dir, sizeof dir, "%s/hints", fz_dir());
    snprintf(tdir, sizeof tdir, "%s/" TARGET, dir);
    mkdir(dir, 0700);
    mkdir(tdir, 0700);
    snprintf(path, sizeof path, "%s/%016x.hints", tdir, 1 + (opts >> 4));
    fz_write_file(path, seg.data, seg.len);
    if (opts & 1) {
        snprintf(path, sizeof path, "%s/cursor", tdir);
        fz_write_file(path, cursor.data, cursor.len);
    }
    hint_log_options_t o;
    hint_log_options_init(&o);
    o.dir = dir;
    o.segment_bytes = 4096;
    hint_log_t *h;
    if (hint_log_open(&o, &h) == KV_OK) {
        for (int round = 0; round < 2; round++) {
            for (int i = 0; i < 64; i++) {
                hint_batch_t b;
                hint_batch_init(&b);
                kv_status_t rc = hint_log_read(h, TARGET, 1000, (opts & 2) ? 500 : 0,
                                               1 + (opts & 0x0c) * 256, &b);
                bool more = rc == KV_OK && b.more;
                if (rc == KV_OK && (opts & 8)) (void)hint_log_ack(h, TARGET, b.end);
                hint_batch_free(&b);
                if (!more) break;
            }
            hint_target_stats_t ts[2];
            (void)hint_log_targets(h, ts, 2);
            eng_cell_t c = {.ts = 7, .value = kv_slice_str("v")};
            (void)hint_log_append(h, TARGET, 999, kv_slice_str("k"), &c);
        }
        hint_log_close(h);
    }
    fz_rm_tree(dir);
    kv_buf_deinit(&seg);
    return 0;
}
