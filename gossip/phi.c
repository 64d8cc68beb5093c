/* phi.c -- phi-accrual failure detection over heartbeat inter-arrival
 * times (Hayashibara et al.; the normal model Akka uses).
 *
 * DESIGN  A ring of the last `window` gaps between recorded arrivals
 *         (grown as samples come, so the many members a big cluster's
 *         node rarely hears from cost little; gaps saturate at 2^32 ms). Mean
 *         and standard deviation are recomputed over the window on each
 *         sample (window is small: O(window) per sample, nothing per
 *         query). The deviation is floored at min_std so perfectly regular
 *         heartbeats do not make phi a cliff; acceptable_pause is added to
 *         the mean so a pause that long costs nothing. Before the first gap
 *         the mean is first_estimate and the deviation first_estimate / 4.
 *
 *         phi(t) = -log10(P(gap > t - last)) with the gap ~ N(mean + pause,
 *         std). With z = (t - last - mean - pause) / std, P = erfc(z/sqrt2)/2.
 *         erfc underflows near z = 38, so above PHI_Z_SWITCH the tail's
 *         asymptotic series is used instead (relative error below 1e-9
 *         there) and clamped to the value at the switch, which keeps phi
 *         finite and monotone for any gap up to 2^64 ms.
 *
 *         Arrivals closer than min_gap to the last recorded one are not
 *         samples: a burst of datagrams (an ack right after a gossip) would
 *         otherwise drag the mean down and make the member flap.
 *
 * THREADING  none inside.
 */
#include "gossip_int.h"

#include <math.h>

#define PHI_Z_SWITCH 30.0
#define LN10 2.302585092994045684
#define LN_SQRT_2PI 0.918938533204672742

struct gossip_phi {
    uint32_t window, min_std, pause, first, min_gap;
    bool has_last;
    uint64_t last;
    uint32_t *gaps;    /* ms, saturated; grown up to window as samples come */
    uint32_t cap, ngaps, pos;
    double mean, std; /* over gaps; the estimate before any */
};

static double phi_asymptotic(double z)
{
    /* ln Q(z) = -z^2/2 - ln z - ln sqrt(2 pi) + ln(1 - 1/z^2 + 3/z^4 - 15/z^6 ...) */
    double z2 = z * z, iz2 = 1.0 / z2;
    double series = 1.0 - iz2 * (1.0 - iz2 * (3.0 - 15.0 * iz2));
    double lnq = -0.5 * z2 - log(z) - LN_SQRT_2PI + log(series);
    return -lnq / LN10;
}

static double phi_erfc(double z)
{
    double q = 0.5 * erfc(z / M_SQRT2);
    if (q >= 1.0) return 0.0;
    double v = -log10(q);
    return v > 0.0 ? v : 0.0;
}

double gossip_phi_of_z(double z)
{
    if (isnan(z)) return 0.0;
    if (z < PHI_Z_SWITCH) return phi_erfc(z);
    double at_switch = phi_erfc(PHI_Z_SWITCH);
    double v = isinf(z) ? HUGE_VAL : phi_asymptotic(z);
    if (!isfinite(v)) v = 1e300;
    return v > at_switch ? v : at_switch;
}

double gossip_phi_z_for(double phi)
{
    double lo = -40.0, hi = 40.0;
    while (gossip_phi_of_z(hi) < phi && hi < 1e150) hi *= 2;
    for (int i = 0; i < 200; i++) {
        double mid = 0.5 * (lo + hi);
        if (gossip_phi_of_z(mid) < phi) lo = mid;
        else hi = mid;
    }
    return lo;
}

gossip_phi_t *gossip_phi_new(uint32_t window, uint32_t min_std_ms,
                             uint32_t acceptable_pause_ms,
                             uint32_t first_estimate_ms, uint32_t min_gap_ms)
{
    gossip_phi_t *p = kv_calloc(1, sizeof *p);
    p->window = window ? window : 1;
    p->min_std = min_std_ms;
    p->pause = acceptable_pause_ms;
    p->first = first_estimate_ms;
    p->min_gap = min_gap_ms;
    gossip_phi_reset(p);
    return p;
}

void gossip_phi_free(gossip_phi_t *p)
{
    if (!p) return;
    kv_free(p->gaps);
    kv_free(p);
}

static void phi_estimate(gossip_phi_t *p)
{
    if (p->ngaps == 0) {
        p->mean = p->first;
        p->std = p->first / 4.0;
    } else {
        double sum = 0, sq = 0;
        for (uint32_t i = 0; i < p->ngaps; i++) sum += (double)p->gaps[i];
        p->mean = sum / p->ngaps;
        for (uint32_t i = 0; i < p->ngaps; i++) {
            double d = (double)p->gaps[i] - p->mean;
            sq += d * d;
        }
        p->std = sqrt(sq / p->ngaps);
    }
    if (p->std < p->min_std) p->std = p->min_std;
    if (p->std < 1e-3) p->std = 1e-3; /* min_std 0: keep z finite */
}

uint32_t gossip_phi_gaps(const gossip_phi_t *p) { return p->ngaps; }

void gossip_phi_set_first_estimate(gossip_phi_t *p, uint32_t first_estimate_ms)
{
    p->first = first_estimate_ms;
    if (p->ngaps == 0) phi_estimate(p);
}

void gossip_phi_reset(gossip_phi_t *p)
{
    p->has_last = false;
    p->last = 0;
    p->ngaps = p->pos = 0;
    phi_estimate(p);
}

void gossip_phi_mark(gossip_phi_t *p, uint64_t now_ms)
{
    if (p->has_last && now_ms < p->last) return;
    p->has_last = true;
    p->last = now_ms;
}

void gossip_phi_sample(gossip_phi_t *p, uint64_t now_ms)
{
    if (!p->has_last) {
        gossip_phi_mark(p, now_ms);
        return;
    }
    if (now_ms < p->last || now_ms - p->last < p->min_gap) return;
    uint64_t gap = now_ms - p->last;
    if (p->ngaps < p->window) {
        /* still filling: append (pos == ngaps), growing the ring */
        if (p->ngaps == p->cap) {
            p->cap = KV_MIN(p->window, p->cap ? p->cap * 2 : 8);
            p->gaps = kv_realloc(p->gaps, p->cap * sizeof *p->gaps);
        }
        p->ngaps++;
    }
    p->gaps[p->pos] = gap > UINT32_MAX ? UINT32_MAX : (uint32_t)gap;
    p->pos = (p->pos + 1) % p->window;
    p->last = now_ms;
    phi_estimate(p);
}

static double phi_z(const gossip_phi_t *p, uint64_t now_ms)
{
    double dt = now_ms > p->last ? (double)(now_ms - p->last) : 0.0;
    return (dt - (p->mean + p->pause)) / p->std;
}

double gossip_phi_value(const gossip_phi_t *p, uint64_t now_ms)
{
    if (!p->has_last) return 0.0;
    return gossip_phi_of_z(phi_z(p, now_ms));
}

uint64_t gossip_phi_last(const gossip_phi_t *p)
{
    return p->has_last ? p->last : 0;
}

bool gossip_phi_has_sample(const gossip_phi_t *p)
{
    return p->has_last;
}

double gossip_phi_cross_ms(const gossip_phi_t *p, double z)
{
    if (!p->has_last) return HUGE_VAL;
    return (double)p->last + p->mean + p->pause + z * p->std;
}
