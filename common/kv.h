/* kv.h -- Cairn's common base: status codes, error macros, allocation,
 * logging, asserts, byte slices and growable buffers.
 *
 * Every module includes this header. It names no third-party library: the
 * allocator behind kv_malloc is chosen at link time (kv_alloc for programs,
 * jemalloc-backed; kv_alloc_test for unit tests, cmocka-backed so leaks fail).
 */
#ifndef CAIRN_KV_H
#define CAIRN_KV_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define KV_PRINTF_DECL_(f, a) __attribute__((format(printf, f, a)))

/* ---- status ------------------------------------------------------------ */

/* One status vocabulary for the whole project. Values travel on the wire in
 * replies, so they are append-only: never renumber or reuse one. */
typedef enum {
    KV_OK = 0,
    KV_NOTFOUND = 1,    /* no such key / object */
    KV_AGAIN = 2,       /* not ready yet: more input needed, or would block */
    KV_BUSY = 3,        /* a bounded queue is full: shed load, retry later */
    KV_NOMEM = 4,       /* an allocation sized by outside input failed */
    KV_IO = 5,          /* an I/O error other than a full disk */
    KV_CORRUPT = 6,     /* checksum or format error in stored data */
    KV_TIMEOUT = 7,     /* deadline passed; the outcome is unknown */
    KV_UNAVAILABLE = 8, /* not enough live replicas; nothing was attempted */
    KV_PROTO = 9,       /* malformed or unexpected network input */
    KV_INVALID = 10,    /* a bad argument: oversized key, bad setting ... */
    KV_NOSPACE = 11,    /* the disk is full */
    KV_SUPERSEDED = 12, /* a newer version of the cell is already held */
    KV_CLOCK_SKEW = 13, /* a timestamp too far from local wall time */
    KV_CLOSED = 14,     /* the object is shutting down or shut */
    KV_EXISTS = 15,     /* already present (duplicate name, file ...) */
    KV_DENIED = 16,     /* not authorised */
    KV_STATUS_COUNT_
} kv_status_t;

/* Stable upper-case name of a status ("OK", "NOTFOUND", ...). */
const char *kv_status_str(kv_status_t s);

/* Map an errno value to a status: ENOSPC/EDQUOT -> KV_NOSPACE, ENOMEM ->
 * KV_NOMEM, ENOENT -> KV_NOTFOUND, EEXIST -> KV_EXISTS, EAGAIN -> KV_AGAIN,
 * anything else -> KV_IO. */
kv_status_t kv_status_from_errno(int err);

/* A human-readable detail for the last error this thread hit, set where the
 * error is detected ("000012.sst: block checksum mismatch at offset 8192").
 * The caller that handles the error logs or returns it. kv_errmsg() is ""
 * when nothing was set since the last kv_errmsg_clear(). */
KV_PRINTF_DECL_(1, 2) void kv_errmsg_set(const char *fmt, ...);
const char *kv_errmsg(void);
void kv_errmsg_clear(void);

/* Return the status of EXPR from the enclosing function when it is not OK. */
#define KV_RET(expr)                                                           \
    do {                                                                       \
        kv_status_t kv_ret_rc_ = (expr);                                       \
        if (kv_ret_rc_ != KV_OK) return kv_ret_rc_;                            \
    } while (0)

/* Jump to the enclosing function's `err:` label when EXPR is not OK. Write
 * the assignment inside: KV_ERR(rc = eng_block_read(...)); */
#define KV_ERR(expr)                                                           \
    do {                                                                       \
        if ((expr) != KV_OK) goto err;                                         \
    } while (0)

/* During cleanup: run EXPR and keep the first error in `rc`. */
#define KV_TRET(expr)                                                          \
    do {                                                                       \
        kv_status_t kv_tret_rc_ = (expr);                                      \
        if (kv_tret_rc_ != KV_OK && rc == KV_OK) rc = kv_tret_rc_;             \
    } while (0)

#define KV_LIKELY(x) __builtin_expect(!!(x), 1)
#define KV_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define KV_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define KV_MIN(a, b) ((a) < (b) ? (a) : (b))
#define KV_MAX(a, b) ((a) > (b) ? (a) : (b))
#define KV_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define KV_UNUSED(x) ((void)(x))

/* ---- asserts ----------------------------------------------------------- */

/* kv_assert stays on in release builds. Use it for invariants whose
 * violation would corrupt data; never for anything read from disk or the
 * network (return an error instead). */
#define kv_assert(cond)                                                        \
    do {                                                                       \
        if (KV_UNLIKELY(!(cond)))                                              \
            kv_assert_fail(#cond, __FILE__, __LINE__);                         \
    } while (0)

__attribute__((noreturn)) void kv_assert_fail(const char *expr,
                                              const char *file, int line);

/* Defensive branches that should never be taken: ALWAYS(x) is x, but
 * debug builds (KV_DEBUG_BUILD) abort when it is false; NEVER(x) likewise. */
#ifdef KV_DEBUG_BUILD
#define KV_ALWAYS(x) ((x) ? 1 : (kv_assert_fail(#x, __FILE__, __LINE__), 0))
#define KV_NEVER(x) ((x) ? (kv_assert_fail(#x, __FILE__, __LINE__), 1) : 0)
#else
#define KV_ALWAYS(x) (!!(x))
#define KV_NEVER(x) (!!(x))
#endif

/* Log a fatal message and abort. */
__attribute__((noreturn)) KV_PRINTF(1, 2) void kv_panic(const char *fmt, ...);

/* ---- memory ------------------------------------------------------------ */

/* Internal allocations: out of memory logs and aborts, so callers need not
 * check. Sizes taken from the network or the disk must be checked against
 * a limit first and then allocated with kv_try_malloc, which may fail. */
void *kv_malloc(size_t n);
void *kv_calloc(size_t count, size_t n);
void *kv_realloc(void *p, size_t n);
void kv_free(void *p);
char *kv_strdup(const char *s);
void *kv_memdup(const void *p, size_t n);
void *kv_try_malloc(size_t n); /* NULL on failure */

/* The name of the allocator linked in ("jemalloc", "libc", "cmocka"). */
const char *kv_alloc_name(void);

/* ---- logging ----------------------------------------------------------- */

typedef enum {
    KV_LOG_ERROR = 0,
    KV_LOG_WARN = 1,
    KV_LOG_INFO = 2,
    KV_LOG_DEBUG = 3,
    KV_LOG_TRACE = 4,
} kv_log_level_t;

/* Short spellings for call sites: KV_LOG(KV_WARN, "...") */
#define KV_ERROR KV_LOG_ERROR
#define KV_WARN KV_LOG_WARN
#define KV_INFO KV_LOG_INFO
#define KV_DEBUG KV_LOG_DEBUG
#define KV_TRACE KV_LOG_TRACE

extern kv_log_level_t kv_log_level_;

/* Each .c file may define KV_LOG_MODULE before including kv.h. */
#ifndef KV_LOG_MODULE
#define KV_LOG_MODULE "cairn"
#endif

/* The level is checked before the arguments are evaluated. */
#define KV_LOG(lvl, ...)                                                       \
    do {                                                                       \
        if ((int)(lvl) <= (int)kv_log_level_)                                  \
            kv_log_write((lvl), KV_LOG_MODULE, __VA_ARGS__);                   \
    } while (0)

KV_PRINTF(3, 4)
void kv_log_write(kv_log_level_t lvl, const char *module, const char *fmt, ...);
void kv_log_set_level(kv_log_level_t lvl);
kv_log_level_t kv_log_get_level(void);
/* Parse "error", "warn", "info", "debug", "trace"; KV_INVALID otherwise. */
kv_status_t kv_log_level_parse(const char *s, kv_log_level_t *out);
const char *kv_log_level_str(kv_log_level_t lvl);

/* Where log lines go (default: stderr). The sink receives one whole line
 * without the trailing newline. Passing NULL restores stderr. */
typedef void (*kv_log_sink_fn)(void *arg, kv_log_level_t lvl, const char *line);
void kv_log_set_sink(kv_log_sink_fn fn, void *arg);

/* ---- slices and buffers ------------------------------------------------ */

typedef struct kv_slice {
    const uint8_t *data;
    size_t len;
} kv_slice_t;

static inline kv_slice_t kv_slice(const void *data, size_t len)
{
    kv_slice_t s = {(const uint8_t *)data, len};
    return s;
}

static inline kv_slice_t kv_slice_str(const char *s)
{
    return kv_slice(s, strlen(s));
}

/* memcmp order; a proper prefix sorts first. */
int kv_slice_cmp(kv_slice_t a, kv_slice_t b);

static inline bool kv_slice_eq(kv_slice_t a, kv_slice_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
}

/* A growable byte buffer. Zero-initialised storage is a valid empty buffer. */
typedef struct kv_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
} kv_buf_t;

void kv_buf_init(kv_buf_t *b);
void kv_buf_deinit(kv_buf_t *b);
void kv_buf_reserve(kv_buf_t *b, size_t extra); /* room for len+extra */
void kv_buf_append(kv_buf_t *b, const void *p, size_t n);
void kv_buf_append_u8(kv_buf_t *b, uint8_t v);
void kv_buf_clear(kv_buf_t *b); /* len = 0, keeps capacity */
/* Remove the first n bytes (n <= len). */
void kv_buf_consume(kv_buf_t *b, size_t n);

static inline kv_slice_t kv_buf_slice(const kv_buf_t *b)
{
    return kv_slice(b->data, b->len);
}

/* ---- misc -------------------------------------------------------------- */

/* 64-bit xorshift* generator for tests and jitter; never for security. */
typedef struct kv_rng {
    uint64_t s;
} kv_rng_t;

void kv_rng_seed(kv_rng_t *r, uint64_t seed);
uint64_t kv_rng_next(kv_rng_t *r);
/* Uniform in [0, n); n > 0. */
uint64_t kv_rng_below(kv_rng_t *r, uint64_t n);

#endif /* CAIRN_KV_H */
