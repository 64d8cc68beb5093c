/* fuzz_sst.c -- the SSTable reader (engine/sst_read.c, engine/block.c):
 * footer, index, filter, props and data blocks.
 *
 * Mode byte bit 0 clear: the rest of the input is the file, as is. Set:
 * the input is a table (the seeds are real tables from the builder) whose
 * checksums the harness recomputes before the reader sees it -- the
 * footer's, the filter, props and index blocks' (found through the footer)
 * and every data block's (found through a raw index block) -- so mutated
 * contents reach the block, index, props and filter decoders instead of
 * stopping at the first checksum. The table is opened, verified, iterated
 * and probed with gets and bloom checks.
 */
#include "block.h"
#include "format.h"
#include "fuzz_util.h"
#include "sst_int.h"

/* Recompute the trailer checksum of the block at h, when it lies inside. */
static void fix_block(uint8_t *p, size_t n, sst_handle_t h)
{
    if (h.off > n || h.size > n - h.off || n - h.off - h.size < SST_TRAILER) return;
    kv_put_le64(p + h.off + h.size + 1, XXH3_64bits(p + h.off, (size_t)h.size + 1));
}

static void fix_checksums(uint8_t *p, size_t n)
{
    if (n < ENG_SST_FOOTER) return;
    uint8_t *ft = p + n - ENG_SST_FOOTER;
    memcpy(ft + 56, ENG_SST_MAGIC, 8);
    kv_put_le32(ft + 52, (uint32_t)XXH3_64bits(ft, 52));
    sst_footer_t footer;
    const char *what;
    if (!sst_footer_decode(ft, &footer, &what)) return;
    fix_block(p, n, footer.filter);
    fix_block(p, n, footer.props);
    fix_block(p, n, footer.index);
    sst_handle_t h = footer.index;
    if (h.off > n || h.size > n - h.off || n - h.off - h.size < SST_TRAILER) return;
    if (p[h.off + h.size] != SST_BLOCK_RAW) return;
    eng_block_t b;
    if (!eng_block_parse(&b, p + h.off, (size_t)h.size)) return;
    eng_block_iter_t it;
    eng_block_iter_init(&it, &b);
    int k = 0;
    for (eng_block_iter_seek_first(&it); it.valid && k < 4096; eng_block_iter_next(&it), k++) {
        sst_handle_t d;
        const uint8_t *q = it.value.data, *end = q + it.value.len;
        size_t a = kv_get_varint64(q, end, &d.off);
        size_t c = a ? kv_get_varint64(q + a, end, &d.size) : 0;
        if (c) fix_block(p, n, d);
    }
    eng_block_iter_deinit(&it);
    /* fixing data blocks may not touch the footer, but keep it right */
    kv_put_le32(ft + 52, (uint32_t)XXH3_64bits(ft, 52));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_quiet();
    fz_t f = {data, size};
    uint8_t mode = fz_u8(&f);
    kv_buf_t file = {0};
    kv_buf_append(&file, f.p, f.n);
    if (mode & 1) fix_checksums(file.data, file.len);
    char path[512];
    snprintf(path, sizeof path, "%s/000007.sst", fz_dir());
    fz_write_file(path, file.data, file.len);

    eng_cache_t *cache = (mode & 2) ? eng_cache_create(1 << 20, 2) : NULL;
    eng_sst_t *t;
    if (eng_sst_open(path, 7, cache, &t) == KV_OK) {
        (void)eng_sst_verify(t);
        eng_iiter_t *it = eng_sst_iter_create(t, true);
        kv_buf_t okey = {0}, cell = {0};
        size_t k = 0;
        for (eng_iiter_seek_first(it); eng_iiter_valid(it) && k < 100000;
             eng_iiter_next(it), k++) {
            kv_slice_t ik = eng_iiter_key(it);
            eng_ikey_t pk;
            if (k % 7 == 0 && eng_ikey_parse(ik, &pk)) {
                kv_buf_clear(&okey);
                kv_buf_append(&okey, pk.okey.data, pk.okey.len);
            }
        }
        eng_iiter_destroy(it);
        if (okey.len >= ENG_TOKEN_LEN) {
            eng_kind_t kind;
            uint64_t seq;
            (void)eng_sst_may_contain(t, kv_buf_slice(&okey));
            (void)eng_sst_get(t, kv_buf_slice(&okey), ENG_MAX_SEQ, false, &kind, &seq, &cell);
            (void)eng_sst_get(t, kv_buf_slice(&okey), 1, false, &kind, &seq, &cell);
        }
        kv_buf_t probe = {0};
        eng_okey_append(&probe, kv_slice_str("probe"));
        (void)eng_sst_may_contain(t, kv_buf_slice(&probe));
        eng_kind_t kind;
        uint64_t seq;
        (void)eng_sst_get(t, kv_buf_slice(&probe), ENG_MAX_SEQ, false, &kind, &seq, &cell);
        kv_buf_deinit(&probe);
        kv_buf_deinit(&okey);
        kv_buf_deinit(&cell);
        eng_sst_close(t);
    }
    if (cache) eng_cache_destroy(cache);
    unlink(path);
    kv_buf_deinit(&file);
    return 0;
}
