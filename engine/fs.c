/* fs.c -- the engine's file layer: EINTR-safe syscalls, errors that name
 * the file, and process-wide fault injection for tests.
 *
 * THREADING  Any thread. A file object is used by one thread at a time
 *            (writers) or shared read-only (pread is position-free). The
 *            fault counters are atomics.
 */
#define KV_LOG_MODULE "engine"
#include "fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

struct eng_file {
    int fd;
    uint64_t size;
    char *path;
};

static _Atomic int64_t fault_space = -1; /* bytes left; < 0 = off */
static atomic_bool fault_sync;
static _Atomic int64_t fault_sync_after = -1; /* syncs left; < 0 = off */

void eng_fs_fault_nospace_after(int64_t bytes) { atomic_store(&fault_space, bytes); }
void eng_fs_fault_sync_fails(bool on) { atomic_store(&fault_sync, on); }
void eng_fs_fault_sync_fails_after(int64_t n) { atomic_store(&fault_sync_after, n); }

void eng_fs_fault_reset(void)
{
    atomic_store(&fault_space, -1);
    atomic_store(&fault_sync, false);
    atomic_store(&fault_sync_after, -1);
}

/* Should this sync fail by injection? Counts down fault_sync_after. */
static bool sync_fault(void)
{
    if (atomic_load(&fault_sync)) return true;
    int64_t left = atomic_load(&fault_sync_after);
    while (left > 0 && !atomic_compare_exchange_weak(&fault_sync_after, &left, left - 1)) {
    }
    return left == 0;
}

static kv_status_t fail(const char *op, const char *path, int err)
{
    kv_errmsg_set("%s %s: %s", op, path, strerror(err));
    return kv_status_from_errno(err);
}

static kv_status_t open_file(const char *path, int flags, eng_file_t **out)
{
    int fd;
    do {
        fd = open(path, flags | O_CLOEXEC, 0644);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) return fail("open", path, errno);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return fail("stat", path, e);
    }
    eng_file_t *f = kv_calloc(1, sizeof *f);
    f->fd = fd;
    f->size = (uint64_t)st.st_size;
    f->path = kv_strdup(path);
    *out = f;
    return KV_OK;
}

kv_status_t eng_file_create(const char *path, eng_file_t **out)
{
    return open_file(path, O_WRONLY | O_CREAT | O_TRUNC, out);
}

kv_status_t eng_file_open_append(const char *path, eng_file_t **out)
{
    return open_file(path, O_WRONLY, out);
}

kv_status_t eng_file_open_read(const char *path, eng_file_t **out)
{
    return open_file(path, O_RDONLY, out);
}

void eng_file_close(eng_file_t *f)
{
    if (!f) return;
    close(f->fd);
    kv_free(f->path);
    kv_free(f);
}

kv_status_t eng_file_append(eng_file_t *f, const void *p, size_t n)
{
    const uint8_t *b = p;
    size_t allowed = n;
    bool full = false;
    int64_t left = atomic_load(&fault_space);
    if (left >= 0) {
        if ((uint64_t)left < n) {
            allowed = (size_t)left;
            full = true;
        }
        atomic_fetch_sub(&fault_space, (int64_t)allowed);
    }
    uint64_t off = f->size;
    size_t done = 0;
    while (done < allowed) {
        ssize_t w = pwrite(f->fd, b + done, allowed - done, (off_t)(off + done));
        if (w < 0) {
            if (errno == EINTR) continue;
            return fail("write", f->path, errno);
        }
        done += (size_t)w;
    }
    if (full) return fail("write", f->path, ENOSPC);
    f->size += n;
    return KV_OK;
}

kv_status_t eng_file_pread(eng_file_t *f, uint64_t off, void *p, size_t n)
{
    uint8_t *b = p;
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(f->fd, b + done, n - done, (off_t)(off + done));
        if (r < 0) {
            if (errno == EINTR) continue;
            return fail("read", f->path, errno);
        }
        if (r == 0) {
            kv_errmsg_set("%s: read of %zu bytes at offset %llu runs past the "
                          "end of the file", f->path, n, (unsigned long long)off);
            return KV_CORRUPT;
        }
        done += (size_t)r;
    }
    return KV_OK;
}

kv_status_t eng_file_sync(eng_file_t *f)
{
    if (sync_fault()) return fail("fdatasync", f->path, EIO);
    int rc;
    do {
        rc = fdatasync(f->fd);
    } while (rc != 0 && errno == EINTR);
    return rc == 0 ? KV_OK : fail("fdatasync", f->path, errno);
}

kv_status_t eng_file_truncate(eng_file_t *f, uint64_t size)
{
    int rc;
    do {
        rc = ftruncate(f->fd, (off_t)size);
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) return fail("truncate", f->path, errno);
    f->size = size;
    return KV_OK;
}

uint64_t eng_file_size(const eng_file_t *f) { return f->size; }
const char *eng_file_path(const eng_file_t *f) { return f->path; }

kv_status_t eng_fs_mkdir(const char *dir)
{
    if (mkdir(dir, 0755) == 0 || errno == EEXIST) return KV_OK;
    return fail("mkdir", dir, errno);
}

kv_status_t eng_fs_rename(const char *from, const char *to)
{
    if (rename(from, to) == 0) return KV_OK;
    return fail("rename", from, errno);
}

kv_status_t eng_fs_unlink(const char *path)
{
    if (unlink(path) == 0 || errno == ENOENT) return KV_OK;
    return fail("unlink", path, errno);
}

kv_status_t eng_fs_sync_dir(const char *dir)
{
    if (sync_fault()) return fail("fsync", dir, EIO);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return fail("open", dir, errno);
    int rc;
    do {
        rc = fsync(fd);
    } while (rc != 0 && errno == EINTR);
    int e = errno;
    close(fd);
    return rc == 0 ? KV_OK : fail("fsync", dir, e);
}

kv_status_t eng_fs_exists(const char *path, bool *out)
{
    struct stat st;
    if (stat(path, &st) == 0) {
        *out = true;
        return KV_OK;
    }
    if (errno == ENOENT) {
        *out = false;
        return KV_OK;
    }
    return fail("stat", path, errno);
}

kv_status_t eng_fs_read_file(const char *path, size_t max, kv_buf_t *buf)
{
    eng_file_t *f;
    KV_RET(eng_file_open_read(path, &f));
    kv_status_t rc = KV_OK;
    if (f->size > max) {
        kv_errmsg_set("%s: %llu bytes, more than the %zu expected", path,
                      (unsigned long long)f->size, max);
        rc = KV_CORRUPT;
    } else {
        kv_buf_clear(buf);
        kv_buf_reserve(buf, (size_t)f->size);
        rc = eng_file_pread(f, 0, buf->data, (size_t)f->size);
        if (rc == KV_OK) buf->len = (size_t)f->size;
    }
    eng_file_close(f);
    return rc;
}

char *eng_path_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = kv_malloc(a + b + 2);
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

kv_status_t eng_fs_write_file_atomic(const char *dir, const char *name,
                                     const void *p, size_t n, bool *renamed)
{
    *renamed = false;
    char tmpname[256];
    snprintf(tmpname, sizeof tmpname, "%s.tmp", name);
    char *tmp = eng_path_join(dir, tmpname);
    char *dst = eng_path_join(dir, name);
    eng_file_t *f = NULL;
    kv_status_t rc;
    KV_ERR(rc = eng_file_create(tmp, &f));
    KV_ERR(rc = eng_file_append(f, p, n));
    KV_ERR(rc = eng_file_sync(f));
    eng_file_close(f);
    f = NULL;
    KV_ERR(rc = eng_fs_rename(tmp, dst));
    *renamed = true;
    KV_ERR(rc = eng_fs_sync_dir(dir));
    kv_free(tmp);
    kv_free(dst);
    return KV_OK;
err:
    eng_file_close(f);
    unlink(tmp);
    kv_free(tmp);
    kv_free(dst);
    return rc;
}

kv_status_t eng_fs_list(const char *dir, char ***names, size_t *count)
{
    DIR *d = opendir(dir);
    if (!d) return fail("opendir", dir, errno);
    size_t n = 0, cap = 16;
    char **v = kv_malloc(cap * sizeof *v);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (n == cap) v = kv_realloc(v, (cap *= 2) * sizeof *v);
        v[n++] = kv_strdup(e->d_name);
    }
    closedir(d);
    *names = v;
    *count = n;
    return KV_OK;
}

void eng_fs_names_free(char **names, size_t count)
{
    for (size_t i = 0; i < count; i++) kv_free(names[i]);
    kv_free(names);
}
