/* clock.h -- the clock seam.
 *
 * Protocol and storage code never call time() or clock_gettime() directly:
 * they read time through a kv_clock_t. Programs pass kv_clock_system();
 * tests pass a kv_manual_clock_t and move it by hand, forward or back, so
 * runs are deterministic and a failure replays exactly.
 */
#ifndef CAIRN_CLOCK_H
#define CAIRN_CLOCK_H

#include <stdint.h>

typedef struct kv_clock kv_clock_t;

struct kv_clock {
    /* Wall-clock milliseconds since the Unix epoch. May jump either way. */
    int64_t (*wall_ms)(const kv_clock_t *c);
    /* Monotonic nanoseconds from an arbitrary origin. Never goes back. */
    uint64_t (*mono_ns)(const kv_clock_t *c);
};

static inline int64_t kv_clock_wall_ms(const kv_clock_t *c)
{
    return c->wall_ms(c);
}

static inline uint64_t kv_clock_mono_ns(const kv_clock_t *c)
{
    return c->mono_ns(c);
}

/* The real clocks (CLOCK_REALTIME and CLOCK_MONOTONIC). */
const kv_clock_t *kv_clock_system(void);

/* A clock that only moves when told to. Embed it and pass &m->clock. */
typedef struct kv_manual_clock {
    kv_clock_t clock;
    int64_t wall;  /* ms */
    uint64_t mono; /* ns */
} kv_manual_clock_t;

void kv_manual_clock_init(kv_manual_clock_t *m, int64_t wall_ms);
/* Move both clocks forward by ms. */
void kv_manual_clock_advance(kv_manual_clock_t *m, int64_t ms);
/* Set the wall clock only (may go backwards); monotonic time is untouched. */
void kv_manual_clock_set_wall(kv_manual_clock_t *m, int64_t wall_ms);

#endif /* CAIRN_CLOCK_H */
