/* alloc.c -- kv_malloc and friends for programs: jemalloc when linked in.
 *
 * DESIGN  This is the only file in Cairn that names jemalloc. Debian's
 *         jemalloc replaces malloc/free for the whole process when linked,
 *         so the wrappers call the standard names; CAIRN_WITH_JEMALLOC only
 *         adds the header for mallctl-based statistics and the name report.
 *         Sanitizer builds leave jemalloc out so ASan sees every block.
 *         Out of memory on an internal allocation is fatal (as in Redis):
 *         state half-updated for lack of a few bytes is worse than a crash.
 */
#define KV_LOG_MODULE "alloc"
#include "kv.h"

#include <stdlib.h>

#ifdef CAIRN_WITH_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

static void oom(size_t n)
{
    kv_panic("out of memory allocating %zu bytes", n);
}

void *kv_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) oom(n);
    return p;
}

void *kv_calloc(size_t count, size_t n)
{
    void *p = calloc(count ? count : 1, n ? n : 1);
    if (!p) oom(count * n);
    return p;
}

void *kv_realloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) oom(n);
    return q;
}

void kv_free(void *p) { free(p); }

void *kv_try_malloc(size_t n) { return malloc(n ? n : 1); }

const char *kv_alloc_name(void)
{
#ifdef CAIRN_WITH_JEMALLOC
    return "jemalloc";
#else
    return "libc";
#endif
}

char *kv_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    return memcpy(kv_malloc(n), s, n);
}

void *kv_memdup(const void *p, size_t n)
{
    return memcpy(kv_malloc(n), p, n);
}
