/* fuzz_wal.c -- the write-ahead log reader (engine/log.c with magic
 * CAIRNWAL) and the WAL record decoder (eng_wal_decode), on a file built
 * from the input (fuzz_util.h: raw, or records with valid checksums). The
 * log is read twice, strict and with salvage, and every payload's batch is
 * decoded and every cell in it parsed, as recovery does.
 */
#include "engine_int.h"
#include "format.h"
#include "fuzz_util.h"
#include "log.h"

static void on_op(void *arg, uint64_t seq, eng_kind_t kind, kv_slice_t okey,
                  kv_slice_t cell)
{
    size_t *n = arg;
    eng_cell_t c;
    if (eng_cell_decode(cell, &c)) *n += c.value.len + c.tombstone;
    *n += seq + kind + okey.len;
}

static void read_all(const char *path, bool salvage)
{
    eng_log_reader_t *r;
    if (eng_log_reader_open(path, ENG_WAL_MAGIC, salvage, &r) != KV_OK) return;
    kv_slice_t p;
    size_t acc = 0;
    while (eng_log_reader_next(r, &p) == KV_OK) {
        uint64_t last = 0;
        (void)eng_wal_decode(p, on_op, &acc, &last);
    }
    eng_log_read_stats_t st;
    eng_log_reader_stats(r, &st);
    eng_log_reader_close(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_quiet();
    fz_t f = {data, size};
    kv_buf_t file = {0};
    fz_build_log(&f, ENG_WAL_MAGIC, &file);
    char path[512];
    snprintf(path, sizeof path, "%s/000002.wal", fz_dir());
    fz_write_file(path, file.data, file.len);
    read_all(path, false);
    read_all(path, true);
    unlink(path);
    kv_buf_deinit(&file);
    return 0;
}
