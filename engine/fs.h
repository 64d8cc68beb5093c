/* fs.h -- the engine's file layer (internal to engine/).
 *
 * Every byte the engine reads or writes goes through here, so that
 *   - syscalls are retried on EINTR and errno becomes a kv_status_t once;
 *   - a failure sets kv_errmsg() naming the file, the operation and offset;
 *   - tests can inject faults (a disk that fills up, fsync that fails)
 *     without mounting anything: see eng_fs_fault_*.
 */
#ifndef CAIRN_ENGINE_FS_H
#define CAIRN_ENGINE_FS_H

#include "kv.h"

typedef struct eng_file eng_file_t;

/* Create (or truncate) a file for appending. */
kv_status_t eng_file_create(const char *path, eng_file_t **out);
/* Open an existing file for appending at its end (WAL reuse, repair). */
kv_status_t eng_file_open_append(const char *path, eng_file_t **out);
/* Open an existing file read-only; its size is read once at open. */
kv_status_t eng_file_open_read(const char *path, eng_file_t **out);
void eng_file_close(eng_file_t *f);

/* Append all n bytes. On KV_NOSPACE/KV_IO part of them may have been
 * written: eng_file_size() still reports the size before the call, and the
 * caller decides (eng_file_truncate back to it, or drop the file). */
kv_status_t eng_file_append(eng_file_t *f, const void *p, size_t n);
/* Read exactly n bytes at off. Reading past the end is KV_CORRUPT (the
 * caller's metadata promised bytes the file does not have). */
kv_status_t eng_file_pread(eng_file_t *f, uint64_t off, void *p, size_t n);
kv_status_t eng_file_sync(eng_file_t *f); /* fdatasync */
kv_status_t eng_file_truncate(eng_file_t *f, uint64_t size);
/* Size: bytes successfully appended (writers) or the size at open (readers). */
uint64_t eng_file_size(const eng_file_t *f);
const char *eng_file_path(const eng_file_t *f);

kv_status_t eng_fs_mkdir(const char *dir);            /* ok if it exists */
kv_status_t eng_fs_rename(const char *from, const char *to);
kv_status_t eng_fs_unlink(const char *path);          /* ok if missing */
kv_status_t eng_fs_sync_dir(const char *dir);
kv_status_t eng_fs_exists(const char *path, bool *out);
/* Whole small file into buf (manifest pointer, options). */
kv_status_t eng_fs_read_file(const char *path, size_t max, kv_buf_t *buf);
/* Write a small file atomically: temp name, fsync, rename, fsync dir.
 * *renamed says whether the rename happened: after a failure with it set,
 * the new content is what the name shows, but maybe not durably. */
kv_status_t eng_fs_write_file_atomic(const char *dir, const char *name,
                                     const void *p, size_t n, bool *renamed);
/* Names (not paths) of the entries in dir, "." and ".." left out. Free
 * with eng_fs_names_free. */
kv_status_t eng_fs_list(const char *dir, char ***names, size_t *count);
void eng_fs_names_free(char **names, size_t count);
/* "dir/name" in a kv_malloc'd string. */
char *eng_path_join(const char *dir, const char *name);

/* ---- fault injection (tests) ------------------------------------------ */

/* After `bytes` more bytes have been appended (process-wide, any file),
 * appends fail with ENOSPC, writing what still fits first, as a real full
 * disk does. A negative value turns the fault off. */
void eng_fs_fault_nospace_after(int64_t bytes);
/* Make every fdatasync/fsync fail with EIO while on. */
void eng_fs_fault_sync_fails(bool on);
/* Let `n` more fdatasync/fsync calls (files and directories alike)
 * succeed, then fail every later one with EIO, so a test can fail each
 * sync point of an operation in turn. A negative value turns it off. */
void eng_fs_fault_sync_fails_after(int64_t n);
/* Turn every fault off. */
void eng_fs_fault_reset(void);

#endif /* CAIRN_ENGINE_FS_H */
