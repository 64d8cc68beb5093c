/* clock.c -- the system clock and the hand-driven test clock. */
#include "clock.h"

#include <time.h>

static int64_t system_wall_ms(const kv_clock_t *c)
{
    (void)c;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t system_mono_ns(const kv_clock_t *c)
{
    (void)c;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static const kv_clock_t system_clock = {system_wall_ms, system_mono_ns};

const kv_clock_t *kv_clock_system(void) { return &system_clock; }

static int64_t manual_wall_ms(const kv_clock_t *c)
{
    return ((const kv_manual_clock_t *)c)->wall;
}

static uint64_t manual_mono_ns(const kv_clock_t *c)
{
    return ((const kv_manual_clock_t *)c)->mono;
}

void kv_manual_clock_init(kv_manual_clock_t *m, int64_t wall_ms)
{
    m->clock.wall_ms = manual_wall_ms;
    m->clock.mono_ns = manual_mono_ns;
    m->wall = wall_ms;
    m->mono = 1000000000ULL; /* an arbitrary non-zero origin */
}

void kv_manual_clock_advance(kv_manual_clock_t *m, int64_t ms)
{
    if (ms < 0) return; /* monotonic time never goes back */
    m->wall += ms;
    m->mono += (uint64_t)ms * 1000000ULL;
}

void kv_manual_clock_set_wall(kv_manual_clock_t *m, int64_t wall_ms)
{
    m->wall = wall_ms;
}
