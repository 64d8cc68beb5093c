/* test_util.h -- small helpers shared by Cairn's cmocka unit tests. */
#ifndef CAIRN_TEST_UTIL_H
#define CAIRN_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kv.h"

/* Leak checking (common/alloc_test.c): every kv_malloc block is tracked;
 * a test registered with kv_unit_test fails when it leaves one behind. */
uint64_t kv_alloc_test_mark(void);
size_t kv_alloc_test_leaks_since(uint64_t mark);

static uint64_t kv_test_mark_;

static inline int kv_leak_setup(void **state)
{
    (void)state;
    kv_test_mark_ = kv_alloc_test_mark();
    return 0;
}

static inline int kv_leak_teardown(void **state)
{
    (void)state;
    return kv_alloc_test_leaks_since(kv_test_mark_) == 0 ? 0 : -1;
}

#define kv_unit_test(f) cmocka_unit_test_setup_teardown(f, kv_leak_setup, kv_leak_teardown)

/* A fresh, empty directory for one test under $CAIRN_TEST_TMP (or /tmp).
 * Returns a static buffer; call test_rmrf() on it when done. */
static inline const char *test_tmpdir(const char *name)
{
    static char path[PATH_MAX];
    const char *base = getenv("CAIRN_TEST_TMP");
    if (!base || !*base) base = "/tmp";
    mkdir(base, 0755);
    snprintf(path, sizeof path, "%s/%s-%d-XXXXXX", base, name, (int)getpid());
    if (!mkdtemp(path)) {
        fprintf(stderr, "mkdtemp %s: %s\n", path, strerror(errno));
        abort();
    }
    return path;
}

/* Remove a directory tree (files and subdirectories, one level deep each). */
static inline void test_rmrf(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[PATH_MAX + 256];
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (snprintf(p, sizeof p, "%s/%s", dir, e->d_name) >= (int)sizeof p)
            continue;
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) test_rmrf(p);
        else unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

/* Seed for randomized tests: $CAIRN_TEST_SEED or a fixed default, printed
 * so a failing run can be replayed exactly. */
static inline uint64_t test_seed(const char *what)
{
    const char *s = getenv("CAIRN_TEST_SEED");
    uint64_t seed = s ? strtoull(s, NULL, 0) : 0x5eed0001ULL;
    fprintf(stderr, "[seed] %s: CAIRN_TEST_SEED=%" PRIu64 "\n", what, seed);
    return seed;
}

#endif /* CAIRN_TEST_UTIL_H */
