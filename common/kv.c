/* kv.c -- status names, asserts, logging, slices, buffers and the test RNG.
 *
 * DESIGN  Logging formats one whole line into a stack buffer and hands it to
 *         the sink in one call, so lines from different threads never mix.
 *         Lines look like:
 *           2026-11-21T09:43:04.123Z WARN  [gossip] peer n2 suspect (phi=8.1)
 * THREADING  Any thread. The level is a plain global read without a lock:
 *            a change of level reaching a thread late is harmless.
 */
#define KV_LOG_MODULE "common"
#include "kv.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

static const char *const status_names[KV_STATUS_COUNT_] = {
    [KV_OK] = "OK",
    [KV_NOTFOUND] = "NOTFOUND",
    [KV_AGAIN] = "AGAIN",
    [KV_BUSY] = "BUSY",
    [KV_NOMEM] = "NOMEM",
    [KV_IO] = "IO",
    [KV_CORRUPT] = "CORRUPT",
    [KV_TIMEOUT] = "TIMEOUT",
    [KV_UNAVAILABLE] = "UNAVAILABLE",
    [KV_PROTO] = "PROTO",
    [KV_INVALID] = "INVALID",
    [KV_NOSPACE] = "NOSPACE",
    [KV_SUPERSEDED] = "SUPERSEDED",
    [KV_CLOCK_SKEW] = "CLOCK_SKEW",
    [KV_CLOSED] = "CLOSED",
    [KV_EXISTS] = "EXISTS",
    [KV_DENIED] = "DENIED",
};

const char *kv_status_str(kv_status_t s)
{
    if ((unsigned)s >= KV_STATUS_COUNT_ || status_names[s] == NULL)
        return "UNKNOWN";
    return status_names[s];
}

kv_status_t kv_status_from_errno(int err)
{
    switch (err) {
    case 0: return KV_OK;
    case ENOSPC:
#ifdef EDQUOT
    case EDQUOT:
#endif
        return KV_NOSPACE;
    case ENOMEM: return KV_NOMEM;
    case ENOENT: return KV_NOTFOUND;
    case EEXIST: return KV_EXISTS;
    case EAGAIN: return KV_AGAIN;
    default: return KV_IO;
    }
}

static __thread char errmsg_buf[512];

void kv_errmsg_set(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg_buf, sizeof errmsg_buf, fmt, ap);
    va_end(ap);
}

const char *kv_errmsg(void) { return errmsg_buf; }

void kv_errmsg_clear(void) { errmsg_buf[0] = 0; }

/* ---- logging ----------------------------------------------------------- */

kv_log_level_t kv_log_level_ = KV_LOG_INFO;

static kv_log_sink_fn log_sink;
static void *log_sink_arg;

static const char *const level_names[] = {"ERROR", "WARN", "INFO", "DEBUG",
                                          "TRACE"};

void kv_log_set_level(kv_log_level_t lvl) { kv_log_level_ = lvl; }
kv_log_level_t kv_log_get_level(void) { return kv_log_level_; }

const char *kv_log_level_str(kv_log_level_t lvl)
{
    if ((unsigned)lvl >= KV_ARRAY_LEN(level_names)) return "?";
    return level_names[lvl];
}

kv_status_t kv_log_level_parse(const char *s, kv_log_level_t *out)
{
    static const char *const lower[] = {"error", "warn", "info", "debug",
                                        "trace"};
    for (size_t i = 0; i < KV_ARRAY_LEN(lower); i++) {
        if (strcasecmp(s, lower[i]) == 0) {
            *out = (kv_log_level_t)i;
            return KV_OK;
        }
    }
    return KV_INVALID;
}

void kv_log_set_sink(kv_log_sink_fn fn, void *arg)
{
    log_sink = fn;
    log_sink_arg = arg;
}

static void log_vwrite(kv_log_level_t lvl, const char *module, const char *fmt,
                       va_list ap)
{
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line,
                     "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s [%s] ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000L,
                     kv_log_level_str(lvl), module);
    if (n < 0) return;
    if ((size_t)n < sizeof line)
        vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    if (log_sink) {
        log_sink(log_sink_arg, lvl, line);
    } else {
        /* One fprintf per line: stdio locks the stream for the call. */
        fprintf(stderr, "%s\n", line);
    }
}

void kv_log_write(kv_log_level_t lvl, const char *module, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(lvl, module, fmt, ap);
    va_end(ap);
}

void kv_assert_fail(const char *expr, const char *file, int line)
{
    kv_log_write(KV_LOG_ERROR, "assert", "assertion failed: %s at %s:%d", expr,
                 file, line);
    abort();
}

void kv_panic(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(KV_LOG_ERROR, "panic", fmt, ap);
    va_end(ap);
    abort();
}

/* ---- slices and buffers ------------------------------------------------ */

int kv_slice_cmp(kv_slice_t a, kv_slice_t b)
{
    size_t n = a.len < b.len ? a.len : b.len;
    int c = n ? memcmp(a.data, b.data, n) : 0;
    if (c != 0) return c;
    return a.len < b.len ? -1 : a.len > b.len ? 1 : 0;
}

void kv_buf_init(kv_buf_t *b) { memset(b, 0, sizeof *b); }

void kv_buf_deinit(kv_buf_t *b)
{
    kv_free(b->data);
    memset(b, 0, sizeof *b);
}

void kv_buf_reserve(kv_buf_t *b, size_t extra)
{
    if (extra <= b->cap - b->len) return;
    size_t need = b->len + extra;
    kv_assert(need >= b->len); /* no overflow */
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap = cap * 2 > cap ? cap * 2 : need;
    b->data = kv_realloc(b->data, cap);
    b->cap = cap;
}

void kv_buf_append(kv_buf_t *b, const void *p, size_t n)
{
    if (n == 0) return;
    kv_buf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

void kv_buf_append_u8(kv_buf_t *b, uint8_t v) { kv_buf_append(b, &v, 1); }

void kv_buf_clear(kv_buf_t *b) { b->len = 0; }

void kv_buf_consume(kv_buf_t *b, size_t n)
{
    kv_assert(n <= b->len);
    if (n == b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

/* ---- rng --------------------------------------------------------------- */

void kv_rng_seed(kv_rng_t *r, uint64_t seed)
{
    /* splitmix64 to spread the seed; xorshift state must be non-zero */
    uint64_t z = seed + 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    r->s = (z ^ (z >> 31)) | 1;
}

uint64_t kv_rng_next(kv_rng_t *r)
{
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545f4914f6cdd1dULL;
}

uint64_t kv_rng_below(kv_rng_t *r, uint64_t n)
{
    kv_assert(n > 0);
    /* rejection sampling to avoid modulo bias */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do {
        x = kv_rng_next(r);
    } while (x >= limit);
    return x % n;
}
