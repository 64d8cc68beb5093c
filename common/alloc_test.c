/* alloc_test.c -- kv_malloc for unit tests: routed through cmocka's
 * allocator so a block still live at the end of a test fails that test.
 *
 * DESIGN  cmocka keeps its blocks on one global list and is not thread-safe;
 *         engine tests allocate from background threads, so every call goes
 *         through one mutex. Only unit-test binaries link this file.
 */
#include "kv.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

void *kv_malloc(size_t n)
{
    pthread_mutex_lock(&mu);
    void *p = _test_malloc(n ? n : 1, __FILE__, __LINE__);
    pthread_mutex_unlock(&mu);
    if (!p) kv_panic("out of memory allocating %zu bytes", n);
    return p;
}

void *kv_calloc(size_t count, size_t n)
{
    pthread_mutex_lock(&mu);
    void *p = _test_calloc(count ? count : 1, n ? n : 1, __FILE__, __LINE__);
    pthread_mutex_unlock(&mu);
    if (!p) kv_panic("out of memory allocating %zu bytes", count * n);
    return p;
}

void *kv_realloc(void *p, size_t n)
{
    pthread_mutex_lock(&mu);
    void *q = _test_realloc(p, n ? n : 1, __FILE__, __LINE__);
    pthread_mutex_unlock(&mu);
    if (!q) kv_panic("out of memory allocating %zu bytes", n);
    return q;
}

void kv_free(void *p)
{
    if (!p) return;
    pthread_mutex_lock(&mu);
    _test_free(p, __FILE__, __LINE__);
    pthread_mutex_unlock(&mu);
}

void *kv_try_malloc(size_t n)
{
    pthread_mutex_lock(&mu);
    void *p = _test_malloc(n ? n : 1, __FILE__, __LINE__);
    pthread_mutex_unlock(&mu);
    return p;
}

const char *kv_alloc_name(void) { return "cmocka"; }

char *kv_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    return memcpy(kv_malloc(n), s, n);
}

void *kv_memdup(const void *p, size_t n)
{
    return memcpy(kv_malloc(n), p, n);
}
