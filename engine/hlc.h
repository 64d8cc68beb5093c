/* hlc.h -- the hybrid logical clock that stamps every Cairn write.
 *
 * A timestamp is 64 bits: 48 bits of wall-clock milliseconds, then a 16-bit
 * logical counter. Comparing timestamps is comparing integers. A node's
 * clock only moves forward: hlc_now() and hlc_update() each return a value
 * greater than every value this clock returned before, across restarts too
 * (a persisted high-water mark, renewed ahead of use in leases).
 */
#ifndef CAIRN_HLC_H
#define CAIRN_HLC_H

#include "clock.h"
#include "kv.h"

typedef uint64_t hlc_ts_t;

#define HLC_LOGICAL_BITS 16
#define HLC_LOGICAL_MASK ((1u << HLC_LOGICAL_BITS) - 1)
#define HLC_WALL_MAX ((UINT64_C(1) << 48) - 1)

static inline hlc_ts_t hlc_make(uint64_t wall_ms, uint32_t logical)
{
    return (wall_ms << HLC_LOGICAL_BITS) | (logical & HLC_LOGICAL_MASK);
}

static inline uint64_t hlc_wall_ms(hlc_ts_t t) { return t >> HLC_LOGICAL_BITS; }
static inline uint32_t hlc_logical(hlc_ts_t t) { return t & HLC_LOGICAL_MASK; }

/* "1732182184123.7" -- wall ms and logical counter; buf >= 32 bytes. */
const char *hlc_format(hlc_ts_t t, char *buf, size_t n);

typedef struct hlc hlc_t;

typedef struct hlc_options {
    const kv_clock_t *clock;   /* default: kv_clock_system() */
    uint64_t max_offset_ms;    /* remote stamps this far ahead are refused;
                                  default 500 */
    /* File holding the high-water mark; NULL keeps the clock in memory only
       (tests, tools). The file is replaced atomically (temp, fsync, rename,
       fsync directory). */
    const char *state_path;
    uint64_t lease_ms;         /* how far ahead each persisted mark reaches;
                                  default 1000 (a restart waits out at most
                                  two leases on the real clock) */
} hlc_options_t;

void hlc_options_init(hlc_options_t *o);

/* Open a clock. With state_path, a mark left by an earlier run is read and
 * every timestamp issued is above it; a missing file starts fresh, a
 * corrupt one is KV_CORRUPT (the caller decides; never guess a mark). */
kv_status_t hlc_open(const hlc_options_t *o, hlc_t **out);
void hlc_close(hlc_t *h);

/* A timestamp for a local event or a send. KV_IO/KV_NOSPACE if the mark
 * could not be persisted (then nothing is issued). */
kv_status_t hlc_now(hlc_t *h, hlc_ts_t *out);

/* Merge a timestamp received from a peer or client and return a new local
 * timestamp greater than both it and every earlier one. A remote newer than
 * this clock's last timestamp whose wall part is more than max_offset_ms
 * ahead of local wall time (the later of the wall clock as read and its
 * monotonic account, hlc.c DESIGN: Jumps) is refused with KV_CLOCK_SKEW and
 * leaves the clock's timestamps untouched (the caller counts and logs). */
kv_status_t hlc_update(hlc_t *h, hlc_ts_t remote, hlc_ts_t *out);

/* The last timestamp issued (0 before the first). */
hlc_ts_t hlc_last(hlc_t *h);

/* The persisted high-water mark in wall ms (0 without state_path). */
uint64_t hlc_persisted_ms(hlc_t *h);

/* Counters for /metrics. */
typedef struct hlc_stats {
    uint64_t skew_refused;   /* remotes refused as too far ahead */
    uint64_t lease_writes;   /* high-water marks persisted */
    uint64_t wall_behind;    /* times the wall clock read below the last stamp */
    int64_t max_ahead_ms;    /* largest remote lead seen (accepted or not) */
    uint64_t wall_leaps;     /* times the wall clock leapt ahead or back and
                                was not followed (hlc.c DESIGN: Jumps) */
} hlc_stats_t;

void hlc_get_stats(hlc_t *h, hlc_stats_t *out);

#endif /* CAIRN_HLC_H */
