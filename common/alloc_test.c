/* alloc_test.c -- kv_malloc for unit tests: every block is tracked so a
 * test that leaks fails, and guard bytes catch writes past the end.
 *
 * DESIGN  cmocka's own test allocator keeps its list of blocks in
 *         thread-local storage, so a block allocated on one thread and freed
 *         on another (the engine's writers, flushes and compactions do that
 *         all the time) corrupts it. Cairn's tests therefore track blocks
 *         here, in one process-wide list under a mutex. Each block carries a
 *         serial number; kv_alloc_test_mark() before a test and
 *         kv_alloc_test_leaks_since() after it report the blocks the test
 *         left behind (tests/unit/test_util.h wires that into cmocka's
 *         setup/teardown, so a leak fails the test like any assertion).
 *         A damaged guard or header on free aborts with the block's origin.
 *         Only unit-test binaries link this file.
 */
#include "kv.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define HDR_MAGIC 0xC41A11C0DEULL
#define GUARD_BYTE 0xAB
#define GUARD_LEN 16

typedef struct blk {
    uint64_t magic;
    uint64_t serial;
    size_t size;
    struct blk *prev, *next;
    uint64_t pad_; /* keeps the user pointer 16-byte aligned */
} blk_t;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static blk_t head = {0, 0, 0, &head, &head, 0};
static uint64_t next_serial = 1;

static void *track(size_t n, bool zero, bool may_fail)
{
    blk_t *b = malloc(sizeof(blk_t) + n + GUARD_LEN);
    if (!b) {
        if (may_fail) return NULL;
        kv_panic("out of memory allocating %zu bytes", n);
    }
    b->magic = HDR_MAGIC;
    b->size = n;
    uint8_t *user = (uint8_t *)(b + 1);
    if (zero) memset(user, 0, n);
    memset(user + n, GUARD_BYTE, GUARD_LEN);
    pthread_mutex_lock(&mu);
    b->serial = next_serial++;
    b->next = &head;
    b->prev = head.prev;
    head.prev->next = b;
    head.prev = b;
    pthread_mutex_unlock(&mu);
    return user;
}

static blk_t *untrack(void *p)
{
    blk_t *b = (blk_t *)p - 1;
    if (b->magic != HDR_MAGIC) kv_panic("kv_free of a pointer kv_malloc did not return");
    const uint8_t *g = (const uint8_t *)p + b->size;
    for (int i = 0; i < GUARD_LEN; i++)
        if (g[i] != GUARD_BYTE)
            kv_panic("heap overrun past a block of %zu bytes (allocation #%llu)", b->size,
                     (unsigned long long)b->serial);
    pthread_mutex_lock(&mu);
    b->prev->next = b->next;
    b->next->prev = b->prev;
    pthread_mutex_unlock(&mu);
    b->magic = 0;
    return b;
}

void *kv_malloc(size_t n) { return track(n, false, false); }
void *kv_calloc(size_t count, size_t n)
{
    if (n && count > SIZE_MAX / n) kv_panic("calloc overflow");
    return track(count * n, true, false);
}
void *kv_try_malloc(size_t n) { return track(n, false, true); }

void *kv_realloc(void *p, size_t n)
{
    if (!p) return kv_malloc(n);
    size_t old = ((blk_t *)p - 1)->size;
    void *q = kv_malloc(n);
    memcpy(q, p, KV_MIN(old, n));
    kv_free(p);
    return q;
}

void kv_free(void *p)
{
    if (p) free(untrack(p));
}

const char *kv_alloc_name(void) { return "tracked"; }

char *kv_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    return memcpy(kv_malloc(n), s, n);
}

void *kv_memdup(const void *p, size_t n) { return memcpy(kv_malloc(n), p, n); }

uint64_t kv_alloc_test_mark(void);
size_t kv_alloc_test_leaks_since(uint64_t mark);

uint64_t kv_alloc_test_mark(void)
{
    pthread_mutex_lock(&mu);
    uint64_t m = next_serial;
    pthread_mutex_unlock(&mu);
    return m;
}

size_t kv_alloc_test_leaks_since(uint64_t mark)
{
    size_t n = 0, bytes = 0;
    pthread_mutex_lock(&mu);
    for (blk_t *b = head.next; b != &head; b = b->next) {
        if (b->serial < mark) continue;
        if (n < 5)
            fprintf(stderr, "leak: %zu bytes, allocation #%llu\n", b->size,
                    (unsigned long long)b->serial);
        n++;
        bytes += b->size;
    }
    pthread_mutex_unlock(&mu);
    if (n) fprintf(stderr, "leak: %zu blocks, %zu bytes left by this test\n", n, bytes);
    return n;
}
