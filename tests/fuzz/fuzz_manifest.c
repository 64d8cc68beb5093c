/* fuzz_manifest.c -- the manifest reader and the engine's recovery
 * (engine/version.c, engine/recover.c): a store directory whose CURRENT,
 * MANIFEST-000001 and (when the mode asks) 000002.wal come from the input
 * (fuzz_util.h: raw logs, or records with valid checksums so edits reach
 * decode_edit, version_apply and the level checks). The store is opened
 * with create_if_missing off, strict or salvaging; when it opens it is
 * read whole, then closed.
 */
#include "engine.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_quiet();
    fz_t f = {data, size};
    uint8_t opts = fz_u8(&f);
    kv_slice_t cur = (opts & 1) ? fz_take(&f, fz_u8(&f)) : kv_slice_str("MANIFEST-000001\n");
    size_t mlen = fz_u16(&f);
    fz_t mf = {f.p, mlen < f.n ? mlen : f.n};
    fz_take(&f, mf.n);
    kv_buf_t man = {0}, wal = {0};
    fz_build_log(&mf, "CAIRNMAN", &man);
    if (opts & 2) fz_build_log(&f, "CAIRNWAL", &wal);

    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/store", fz_dir());
    mkdir(dir, 0700);
    snprintf(path, sizeof path, "%s/CURRENT", dir);
    fz_write_file(path, cur.data, cur.len);
    snprintf(path, sizeof path, "%s/MANIFEST-000001", dir);
    fz_write_file(path, man.data, man.len);
    if (opts & 2) {
        snprintf(path, sizeof path, "%s/000002.wal", dir);
        fz_write_file(path, wal.data, wal.len);
    }
    eng_options_t o;
    eng_options_init(&o);
    o.dir = dir;
    o.create_if_missing = false;
    o.background_threads = 1;
    o.cache_bytes = 1 << 20;
    o.memtable_bytes = 1 << 20;
    o.salvage = (opts & 4) != 0;
    eng_t *e;
    if (eng_open(&o, &e) == KV_OK) {
        eng_iter_t *it = eng_iter_create(e, NULL, 0, UINT64_MAX);
        size_t n = 0;
        for (eng_iter_seek_first(it); eng_iter_valid(it) && n < 100000; eng_iter_next(it))
            n += eng_iter_key(it).len + eng_iter_value(it).len;
        eng_iter_destroy(it);
        eng_value_t v = {0};
        (void)eng_get(e, NULL, kv_slice_str("k"), &v);
        eng_value_free(&v);
        eng_close(e);
    }
    fz_rm_tree(dir);
    kv_buf_deinit(&man);
    kv_buf_deinit(&wal);
    return 0;
}
