/* log.h -- checksummed record logs: the WAL and the manifest are both
 * sequences of records in a file of this format, and so are the hint logs
 * of replication/hints.h (the one user outside engine/).
 *
 * FILE    header: magic(8) || version(u32 LE, = 1) || reserved(u32, 0)
 *         then records back to back.
 * RECORD  len(u32 LE) || hcrc(u32 LE) || pcrc(u64 LE) || payload(len)
 *         hcrc = low 32 bits of XXH3-64 over (len as u32 LE || the record's
 *         file offset as u64 LE): a header is only valid at the offset it
 *         was written at, so stale or shifted bytes never pass.
 *         pcrc = XXH3-64 of the payload.
 *
 * READING  A record that does not check out is classified:
 *   - torn tail: the file ends inside the record (header or payload), or its
 *     header is bad and no valid record header exists anywhere after it, or
 *     its payload checksum fails and it is the last record in the file. The
 *     reader stops there cleanly: eng_log_reader_next says KV_NOTFOUND, and
 *     stats report torn = true with the offset and the bytes cut.
 *   - corruption: anything else (a valid record follows the bad one). The
 *     reader fails with KV_CORRUPT and kv_errmsg() names the file and the
 *     offset -- unless opened with salvage, when it skips to the next valid
 *     record header, counts what it skipped, and goes on.
 *   A file shorter than its header is an empty log with a torn tail; a full
 *   header with the wrong magic or version is KV_CORRUPT.
 * WRITING  One eng_log_writer_add is one record and one write(2). A failed
 *   append (full disk) truncates the file back to its last whole record, so
 *   the log stays well-formed and the writer stays usable.
 * THREADING  A writer or reader is used by one thread at a time.
 */
#ifndef CAIRN_ENGINE_LOG_H
#define CAIRN_ENGINE_LOG_H

#include "kv.h"

#define ENG_LOG_HEADER 16
#define ENG_LOG_RECORD_HEADER 16
#define ENG_LOG_MAX_RECORD (256u * 1024 * 1024)

typedef struct eng_log_writer eng_log_writer_t;

/* Create a new log file (truncating any old one) and write its header.
 * magic is exactly 8 bytes, e.g. "CAIRNWAL" or "CAIRNMAN". The caller
 * syncs the directory. */
kv_status_t eng_log_writer_create(const char *path, const char *magic,
                                  eng_log_writer_t **out);
/* Append one record (payload len <= ENG_LOG_MAX_RECORD). Not synced. */
kv_status_t eng_log_writer_add(eng_log_writer_t *w, kv_slice_t payload);
/* fdatasync everything added so far. If it fails (or a failed append
 * could not be cut back) the writer is unusable from then on: every later
 * add and sync returns that error, and the caller starts a new log. */
kv_status_t eng_log_writer_sync(eng_log_writer_t *w);
uint64_t eng_log_writer_size(const eng_log_writer_t *w);
const char *eng_log_writer_path(const eng_log_writer_t *w);
/* Close without syncing. */
void eng_log_writer_close(eng_log_writer_t *w);

typedef struct eng_log_reader eng_log_reader_t;

typedef struct eng_log_read_stats {
    uint64_t records;        /* good records returned */
    bool torn;               /* a torn tail was found and cut */
    uint64_t torn_offset;    /* where the good part of the file ends */
    uint64_t torn_bytes;     /* bytes after torn_offset */
    uint64_t skipped_records;/* salvage: bad regions skipped */
    uint64_t skipped_bytes;
} eng_log_read_stats_t;

kv_status_t eng_log_reader_open(const char *path, const char *magic,
                                bool salvage, eng_log_reader_t **out);
/* KV_OK: *payload is the next record (valid until the next call).
 * KV_NOTFOUND: end of log (clean end or torn tail). KV_CORRUPT: see above.
 * KV_IO: read error. */
kv_status_t eng_log_reader_next(eng_log_reader_t *r, kv_slice_t *payload);
/* Go on reading at `off`: the end of a record that an earlier reader of
 * this file returned (eng_log_reader_offset). An offset that is not such a
 * boundary reads as a bad record (skipped under salvage). KV_INVALID when
 * off lies before the first record or past the end of the file. */
kv_status_t eng_log_reader_seek(eng_log_reader_t *r, uint64_t off);
/* Offset just past the last good record returned. */
uint64_t eng_log_reader_offset(const eng_log_reader_t *r);
void eng_log_reader_stats(const eng_log_reader_t *r, eng_log_read_stats_t *out);
void eng_log_reader_close(eng_log_reader_t *r);

/* Cut a log back to `size` bytes (the end of its last good record) so new
 * records can be appended after a torn tail. */
kv_status_t eng_log_truncate(const char *path, uint64_t size);

#endif /* CAIRN_ENGINE_LOG_H */
