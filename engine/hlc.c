/* hlc.c -- hybrid logical clock with a persisted high-water mark.
 *
 * DESIGN  last is the largest timestamp issued. now() returns
 *         max(last + 1, hlc_make(wall, 0)); update(r) returns
 *         max(last + 1, r + 1, hlc_make(wall, 0)). "+ 1" on a full logical
 *         counter carries into the millisecond field, so the counter never
 *         wraps: the clock simply runs a millisecond ahead until the wall
 *         catches up.
 *
 *         Restarts: before issuing a timestamp whose wall part reaches the
 *         persisted mark, the clock writes a new mark = wall part + lease and
 *         fsyncs it. On open, last = hlc_make(mark, 0), so every timestamp
 *         after a restart is above every one issued before it, even if the
 *         wall clock was set back by hours; a mark less than two leases
 *         ahead of the real clock is waited out first, so a quick restart
 *         does not resume ahead of real time. A lease write costs one small
 *         write + fsync + rename at most every lease_ms (1 s by default).
 *
 *         Jumps: the wall clock is read against the monotonic clock. When
 *         it leaps more than max_offset_ms away from where the monotonic
 *         clock says it should be (someone set it hours ahead or back), the
 *         clock does not follow: it keeps to the monotonic clock's progress
 *         from the last reading it trusted until the wall clock agrees
 *         again (the leap is undone), and peers' timestamps still move it
 *         forward (a leap that was a correction is caught up that way). So
 *         a node whose clock is set ahead while it runs stamps nothing in
 *         the future and persists no mark in the future, and once its clock
 *         is put back it is at once in step with its peers. A remote
 *         timestamp is refused only when it is ahead of both the wall clock
 *         as read and the monotonic account: a node set back is not cut
 *         off from its peers, nor one whose leap forward was a correction.
 *
 * INVARIANTS (1) every issued t satisfies t > previous issued t;
 *            (2) with a state file, every issued t < hlc_make(persisted, 0);
 *            (3) a refused remote changes nothing.
 * THREADING  Any thread; one mutex. The lease write happens under it, which
 *            briefly blocks other callers once per lease.
 * FILE       "CAIRNHLC" magic, u32 version (1), u64 mark ms, u64 XXH3 of the
 *            preceding 20 bytes; all little-endian.
 */
#define KV_LOG_MODULE "hlc"
#include "hlc.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "coding.h"

#define HLC_MAGIC "CAIRNHLC"
#define HLC_FILE_VERSION 1
#define HLC_FILE_SIZE 28

struct hlc {
    pthread_mutex_t mu;
    const kv_clock_t *clock;
    uint64_t max_offset_ms;
    uint64_t lease_ms;
    char *path;
    hlc_ts_t last;
    uint64_t persisted_ms;
    hlc_stats_t stats;
    /* the last wall reading trusted, and the monotonic time of it */
    uint64_t anchor_wall_ms, anchor_mono_ns;
    bool leapt; /* the wall clock is ahead of the monotonic clock's account */
};

void hlc_options_init(hlc_options_t *o)
{
    memset(o, 0, sizeof *o);
    o->clock = kv_clock_system();
    o->max_offset_ms = 500;
    o->lease_ms = 1000;
}

const char *hlc_format(hlc_ts_t t, char *buf, size_t n)
{
    snprintf(buf, n, "%" PRIu64 ".%" PRIu32, hlc_wall_ms(t), hlc_logical(t));
    return buf;
}

static uint64_t wall_now(const hlc_t *h)
{
    int64_t w = kv_clock_wall_ms(h->clock);
    if (w < 0) return 0;
    if ((uint64_t)w > HLC_WALL_MAX) return HLC_WALL_MAX;
    return (uint64_t)w;
}

/* The wall time timestamps follow (DESIGN: Jumps): the wall clock as read,
 * unless it leapt away from the monotonic clock's account since the last
 * reading trusted. mu held (after open). */
static uint64_t steady_wall(hlc_t *h, uint64_t wall)
{
    uint64_t mono = kv_clock_mono_ns(h->clock);
    uint64_t expect = h->anchor_wall_ms + (mono - h->anchor_mono_ns) / 1000000u;
    if (wall <= expect + h->max_offset_ms && wall + h->max_offset_ms >= expect) {
        if (h->leapt)
            KV_LOG(KV_INFO, "the wall clock agrees with the monotonic clock again; "
                            "timestamps follow it");
        h->leapt = false;
        h->anchor_wall_ms = wall;
        h->anchor_mono_ns = mono;
        return wall;
    }
    if (!h->leapt) {
        h->stats.wall_leaps++;
        KV_LOG(KV_WARN, "the wall clock leapt %" PRId64 " ms away from the monotonic "
                        "clock; timestamps keep to the monotonic clock (and to peers' "
                        "timestamps) until it agrees again",
               (int64_t)wall - (int64_t)expect);
    }
    h->leapt = true;
    return expect > HLC_WALL_MAX ? HLC_WALL_MAX : expect;
}

static kv_status_t write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return kv_status_from_errno(errno);
        }
        p += w;
        n -= (size_t)w;
    }
    return KV_OK;
}

static kv_status_t fsync_dir_of(const char *path)
{
    char *copy = kv_strdup(path);
    const char *dir = dirname(copy);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    kv_status_t rc = KV_OK;
    if (fd < 0) {
        rc = kv_status_from_errno(errno);
    } else {
        if (fsync(fd) != 0) rc = kv_status_from_errno(errno);
        close(fd);
    }
    kv_free(copy);
    return rc;
}

static kv_status_t persist_mark(hlc_t *h, uint64_t mark)
{
    uint8_t rec[HLC_FILE_SIZE];
    memcpy(rec, HLC_MAGIC, 8);
    kv_put_le32(rec + 8, HLC_FILE_VERSION);
    kv_put_le64(rec + 12, mark);
    kv_put_le64(rec + 20, XXH3_64bits(rec, 20));

    size_t plen = strlen(h->path);
    char *tmp = kv_malloc(plen + 5);
    memcpy(tmp, h->path, plen);
    memcpy(tmp + plen, ".tmp", 5);

    kv_status_t rc = KV_OK;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = kv_status_from_errno(errno);
        goto err;
    }
    rc = write_all(fd, rec, sizeof rec);
    if (rc == KV_OK && fsync(fd) != 0) rc = kv_status_from_errno(errno);
    close(fd);
    if (rc != KV_OK) goto err;
    if (rename(tmp, h->path) != 0) {
        rc = kv_status_from_errno(errno);
        goto err;
    }
    KV_ERR(rc = fsync_dir_of(h->path));
    h->persisted_ms = mark;
    h->stats.lease_writes++;
    kv_free(tmp);
    return KV_OK;
err:
    KV_LOG(KV_ERROR, "cannot persist clock mark to %s: %s", h->path,
           kv_status_str(rc));
    unlink(tmp);
    kv_free(tmp);
    return rc;
}

static kv_status_t load_mark(hlc_t *h)
{
    int fd = open(h->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return KV_OK; /* a fresh node */
        return kv_status_from_errno(errno);
    }
    uint8_t rec[HLC_FILE_SIZE + 1];
    ssize_t n;
    do {
        n = read(fd, rec, sizeof rec);
    } while (n < 0 && errno == EINTR);
    int err = errno;
    close(fd);
    if (n < 0) return kv_status_from_errno(err);
    if (n != HLC_FILE_SIZE || memcmp(rec, HLC_MAGIC, 8) != 0 ||
        kv_get_le32(rec + 8) != HLC_FILE_VERSION ||
        kv_get_le64(rec + 20) != XXH3_64bits(rec, 20)) {
        KV_LOG(KV_ERROR, "clock state file %s is corrupt (%zd bytes)", h->path,
               n);
        return KV_CORRUPT;
    }
    h->persisted_ms = kv_get_le64(rec + 12);
    if (h->persisted_ms > HLC_WALL_MAX) return KV_CORRUPT;
    h->last = hlc_make(h->persisted_ms, 0);
    return KV_OK;
}

/* A mark a little ahead of the wall clock is the normal case after a quick
 * restart: the lease reached past "now". Resuming from it would issue
 * timestamps up to a lease ahead of real time, which peers refuse as skew,
 * so the real clock waits it out (at most two leases). A mark further ahead
 * means the wall clock was set back: then the clock resumes from the mark,
 * ahead of wall time, and the node is the outlier (its peers say so). */
static void wait_out_mark(hlc_t *h)
{
    uint64_t wall = wall_now(h);
    if (h->persisted_ms <= wall || h->persisted_ms - wall > 2 * h->lease_ms) return;
    if (h->clock != kv_clock_system()) return; /* a test clock moves by hand */
    uint64_t ms = h->persisted_ms - wall + 1;
    KV_LOG(KV_INFO, "waiting %" PRIu64 " ms for the wall clock to pass the clock's "
           "high-water mark", ms);
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

kv_status_t hlc_open(const hlc_options_t *o, hlc_t **out)
{
    hlc_options_t def;
    if (!o) {
        hlc_options_init(&def);
        o = &def;
    }
    hlc_t *h = kv_calloc(1, sizeof *h);
    pthread_mutex_init(&h->mu, NULL);
    h->clock = o->clock ? o->clock : kv_clock_system();
    h->max_offset_ms = o->max_offset_ms;
    h->lease_ms = o->lease_ms ? o->lease_ms : 1000;
    kv_status_t rc = KV_OK;
    if (o->state_path) {
        h->path = kv_strdup(o->state_path);
        KV_ERR(rc = load_mark(h));
        wait_out_mark(h);
    }
    h->anchor_wall_ms = wall_now(h);
    h->anchor_mono_ns = kv_clock_mono_ns(h->clock);
    *out = h;
    return KV_OK;
err:
    hlc_close(h);
    return rc;
}

void hlc_close(hlc_t *h)
{
    if (!h) return;
    pthread_mutex_destroy(&h->mu);
    kv_free(h->path);
    kv_free(h);
}

/* Issue candidate t (> last): persist a new lease first if t reaches it. */
static kv_status_t issue(hlc_t *h, hlc_ts_t t, hlc_ts_t *out)
{
    kv_assert(t > h->last);
    if (h->path && hlc_wall_ms(t) >= h->persisted_ms) {
        uint64_t mark = hlc_wall_ms(t) + h->lease_ms;
        KV_RET(persist_mark(h, mark > HLC_WALL_MAX ? HLC_WALL_MAX : mark));
        /* a clock at the end of 48-bit time has nothing left to issue */
        if (hlc_wall_ms(t) >= h->persisted_ms) return KV_INVALID;
    }
    h->last = t;
    *out = t;
    return KV_OK;
}

kv_status_t hlc_now(hlc_t *h, hlc_ts_t *out)
{
    pthread_mutex_lock(&h->mu);
    hlc_ts_t wall = hlc_make(steady_wall(h, wall_now(h)), 0);
    hlc_ts_t t = h->last + 1;
    if (wall > t) t = wall;
    else h->stats.wall_behind++;
    kv_status_t rc = issue(h, t, out);
    pthread_mutex_unlock(&h->mu);
    return rc;
}

kv_status_t hlc_update(hlc_t *h, hlc_ts_t remote, hlc_ts_t *out)
{
    pthread_mutex_lock(&h->mu);
    uint64_t raw = wall_now(h), w = steady_wall(h, raw);
    int64_t ahead = (int64_t)hlc_wall_ms(remote) - (int64_t)(raw > w ? raw : w);
    if (ahead > h->stats.max_ahead_ms) h->stats.max_ahead_ms = ahead;
    /* a timestamp no newer than our own last one moves nothing: it cannot
     * drag the clock forward, so it is never refused (our own stamps come
     * back as causality tokens) */
    if (remote > h->last && ahead > 0 && (uint64_t)ahead > h->max_offset_ms) {
        h->stats.skew_refused++;
        pthread_mutex_unlock(&h->mu);
        return KV_CLOCK_SKEW;
    }
    hlc_ts_t t = h->last + 1;
    if (remote >= t) t = remote + 1;
    hlc_ts_t wall = hlc_make(w, 0);
    if (wall > t) t = wall;
    kv_status_t rc = issue(h, t, out);
    pthread_mutex_unlock(&h->mu);
    return rc;
}

hlc_ts_t hlc_last(hlc_t *h)
{
    pthread_mutex_lock(&h->mu);
    hlc_ts_t t = h->last;
    pthread_mutex_unlock(&h->mu);
    return t;
}

uint64_t hlc_persisted_ms(hlc_t *h)
{
    pthread_mutex_lock(&h->mu);
    uint64_t m = h->persisted_ms;
    pthread_mutex_unlock(&h->mu);
    return m;
}

void hlc_get_stats(hlc_t *h, hlc_stats_t *out)
{
    pthread_mutex_lock(&h->mu);
    *out = h->stats;
    pthread_mutex_unlock(&h->mu);
}
