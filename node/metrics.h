/* metrics.h -- the node's Prometheus metrics: counters, gauges and
 * histograms in one registry, rendered as Prometheus text exposition.
 *
 * Names follow Prometheus conventions: base units (_seconds, _bytes),
 * counters end in _total, a few low-cardinality labels (op, cl, status,
 * reason, level). A metric is registered once (name, help, type, label
 * names); each distinct label-value combination is a series created on
 * first use. Updates are cheap: the caller keeps the series handle.
 * THREADING  Loop thread only, except metrics_counter_add_atomic, which any
 *            thread may call on a counter series.
 */
#ifndef CAIRN_NODE_METRICS_H
#define CAIRN_NODE_METRICS_H

#include <stdio.h>

#include "kv.h"

typedef struct metrics metrics_t;
typedef struct metric_series metric_series_t;

typedef enum { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM } metric_type_t;

metrics_t *metrics_create(void);
void metrics_destroy(metrics_t *m);

/* Register a metric once (label_names: NULL-terminated, or NULL for none).
 * Counter names must end in _total. Registering the same definition again
 * is a no-op; a conflicting one, or an invalid name, is a kv_assert. A metric
 * without labels has its one series from registration on (renders 0). */
void metrics_register(metrics_t *m, const char *name, const char *help,
                      metric_type_t type, const char *const *label_names);
/* Get (creating on first use) the series of metric `name` with the given
 * label values (NULL-terminated list of values, in the order of the label
 * names given at registration; NULL for a metric without labels). The
 * metric must have been registered and the count must match (kv_assert).
 * The handle stays valid until metrics_destroy: cache it. */
metric_series_t *metrics_series(metrics_t *m, const char *name,
                                const char *const *label_values);

void metrics_counter_add(metric_series_t *s, uint64_t n);
/* Mirror a counter kept elsewhere (engine, coordinator statistics): add
 * what `now` gained since *last, then remember it. */
void metrics_counter_mirror(metric_series_t *s, uint64_t now, uint64_t *last);
/* Counters count whole numbers; a counter of fractions of a base unit
 * (milliseconds of a _seconds_total) counts in its own unit and is rendered
 * multiplied by `unit` (0.001). Call right after registering. */
void metrics_counter_unit(metrics_t *m, const char *name, double unit);
/* For a counter series updated from threads other than the loop (engine
 * workers): an atomic add. Do not mix with metrics_counter_add on one series.
 * The handle itself must be obtained on the loop thread. */
void metrics_counter_add_atomic(metric_series_t *s, uint64_t n);
void metrics_gauge_set(metric_series_t *s, double v);
void metrics_gauge_add(metric_series_t *s, double v);
/* Histograms use fixed buckets in seconds: 100us .. 10s, log-spaced
 * (1, 2.5, 5 per decade) plus +Inf. NaN observations are dropped. */
void metrics_histogram_observe(metric_series_t *s, double seconds);

/* Called just before rendering so gauges that mirror other state (engine
 * statistics, open connections) can be refreshed. */
typedef void (*metrics_refresh_fn)(void *arg, metrics_t *m);
void metrics_set_refresh(metrics_t *m, metrics_refresh_fn fn, void *arg);

/* Run the refresh hook, then append every metric as Prometheus text format
 * 0.0.4 to buf: metrics in registration order, series in creation order;
 * a metric with no series yet is left out. */
void metrics_render(metrics_t *m, kv_buf_t *buf);

#endif /* CAIRN_NODE_METRICS_H */
