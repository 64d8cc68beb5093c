/* fuzz_util.h -- helpers shared by the fuzz targets in tests/fuzz/.
 *
 * Every target defines LLVMFuzzerTestOneInput(data, size). Built with clang
 * and -DCAIRN_FUZZ=ON it links libFuzzer's main; in every build it also
 * links regress_main.c, a plain driver that feeds each file of the target's
 * seed corpus and regression inputs to the same function (ctest
 * fuzz_regress_*), so inputs that once crashed stay fixed under gcc too.
 *
 * Checksummed formats (the record logs, SSTable blocks) would reject nearly
 * every mutated input at the first checksum, so the targets that read them
 * take a mode byte first: "raw" writes the input as the file (the checksum
 * and bound checks themselves), "fixed" builds the file from the input and
 * computes every checksum the reader will check, so mutations reach the
 * decoders behind them.
 */
#ifndef CAIRN_FUZZ_UTIL_H
#define CAIRN_FUZZ_UTIL_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "coding.h"
#include "kv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A cursor over the fuzzer's bytes; reads past the end give zeroes. */
typedef struct fz {
    const uint8_t *p;
    size_t n;
} fz_t;

static inline uint8_t fz_u8(fz_t *f)
{
    if (!f->n) return 0;
    f->n--;
    return *f->p++;
}

static inline uint16_t fz_u16(fz_t *f)
{
    uint16_t a = fz_u8(f);
    return (uint16_t)(a | (uint16_t)fz_u8(f) << 8);
}

/* Up to want bytes (fewer at the end). */
static inline kv_slice_t fz_take(fz_t *f, size_t want)
{
    size_t k = want < f->n ? want : f->n;
    kv_slice_t s = kv_slice(f->p, k);
    f->p += k;
    f->n -= k;
    return s;
}

static inline void fz_rm_tree(const char *path);
static char fz_dir_[256];
static inline void fz_dir_remove(void) { fz_rm_tree(fz_dir_); }

/* Silence the log (the engine reports every damaged file it meets: at
 * thousands of inputs a second that is most of the time) unless
 * CAIRN_FUZZ_LOG is set. A crash still prints its stack. */
static inline void fz_quiet(void)
{
    static bool done;
    if (!done && !getenv("CAIRN_FUZZ_LOG")) kv_log_set_level((kv_log_level_t)-1);
    done = true;
}

/* A fresh scratch directory per process, on tmpfs when there is one (the
 * engine fsyncs; on tmpfs that costs nothing). Emptied between inputs,
 * removed at exit. */
static inline const char *fz_dir(void)
{
    char *dir = fz_dir_;
    if (!dir[0]) {
        const char *base = getenv("CAIRN_FUZZ_TMP");
        struct stat st;
        if (!base || !*base) base = stat("/dev/shm", &st) == 0 ? "/dev/shm" : "/tmp";
        snprintf(dir, sizeof fz_dir_, "%s/cairn-fuzz-%d", base, (int)getpid());
        mkdir(dir, 0700);
        atexit(fz_dir_remove);
    }
    return dir;
}

/* Remove everything under path (one level of subdirectories deep is all
 * the engine and the hint log make; recursion covers more anyway). */
static inline void fz_rm_tree(const char *path)
{
    DIR *d = opendir(path);
    if (!d) {
        unlink(path);
        return;
    }
    struct dirent *e;
    char sub[1024];
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (snprintf(sub, sizeof sub, "%s/%s", path, e->d_name) >= (int)sizeof sub) continue;
        struct stat st;
        if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode)) fz_rm_tree(sub);
        else unlink(sub);
    }
    closedir(d);
    rmdir(path);
}

static inline void fz_write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        perror(path);
        abort();
    }
    const uint8_t *p = data;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w <= 0) {
            perror(path);
            abort();
        }
        p += w;
        len -= (size_t)w;
    }
    close(fd);
}

/* ---- the record-log format of engine/log.h --------------------------- */

static inline void fz_log_header(kv_buf_t *b, const char *magic)
{
    uint8_t h[16] = {0};
    memcpy(h, magic, 8);
    kv_put_le32(h + 8, 1);
    kv_buf_append(b, h, sizeof h);
}

/* Append one record with valid checksums at its offset in b. */
static inline void fz_log_record(kv_buf_t *b, kv_slice_t payload)
{
    uint8_t h[16], lo[12];
    uint32_t len = (uint32_t)payload.len;
    kv_put_le32(lo, len);
    kv_put_le64(lo + 4, (uint64_t)b->len);
    kv_put_le32(h, len);
    kv_put_le32(h + 4, (uint32_t)XXH3_64bits(lo, sizeof lo));
    kv_put_le64(h + 8, XXH3_64bits(payload.data, payload.len));
    kv_buf_append(b, h, sizeof h);
    kv_buf_append(b, payload.data, payload.len);
}

/* Build a log file from fuzz input into b. Mode byte: bit 0 clear = raw
 * (the rest of the input is the file); set = fixed: a header with the
 * right magic, then records whose lengths are 16-bit values from the input
 * followed by that many payload bytes, each with valid checksums; bit 1
 * then flips one byte at an offset from the input (damage after the fact:
 * the torn-tail / corruption classification); bit 2 cuts the file short. */
static inline void fz_build_log(fz_t *f, const char *magic, kv_buf_t *b)
{
    uint8_t mode = fz_u8(f);
    if (!(mode & 1)) {
        kv_buf_append(b, f->p, f->n);
        return;
    }
    uint16_t flip = fz_u16(f), cut = fz_u16(f);
    fz_log_header(b, magic);
    while (f->n) {
        uint16_t len = fz_u16(f);
        fz_log_record(b, fz_take(f, len));
    }
    if ((mode & 2) && b->len) b->data[flip % b->len] ^= 0x5a;
    if ((mode & 4) && b->len) b->len -= cut % b->len;
}

#endif /* CAIRN_FUZZ_UTIL_H */
