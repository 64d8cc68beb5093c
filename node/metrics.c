/* metrics.c -- the node's metrics registry and its Prometheus text renderer.
 *
 * DESIGN  A registry is an array of metrics in registration order; each
 *         metric owns an array of series in creation order. Series are
 *         allocated one by one so the handle a caller caches stays valid
 *         until metrics_destroy, whatever else is created later. Lookup is
 *         a linear scan (metric names are compared by a precomputed hash
 *         first); it runs once per call site because callers keep handles.
 *         A metric without labels gets its one series at registration, so
 *         it renders 0 from the start (rate() over a counter that appears
 *         late loses its first increments).
 *
 *         Histograms have fixed buckets, 1-2.5-5 per decade from 100 us to
 *         10 s, plus +Inf. Each series counts observations per bucket (not
 *         cumulative: an observation touches one cell); rendering sums them
 *         into the cumulative _bucket lines Prometheus expects, so the +Inf
 *         line always equals _count.
 *
 * FORMAT  Prometheus text exposition 0.0.4: per metric `# HELP` (backslash
 *         and newline escaped), `# TYPE`, then one line per series,
 *         `name{a="x",b="y"} value`, label values escaped (backslash, double
 *         quote, newline). Metrics with no series yet are left out.
 *
 * INVARIANTS (1) names are valid Prometheus names and counters end in
 *            _total (checked at registration: a bad name is a programming
 *            error); (2) a series has exactly as many label values as its
 *            metric has label names; (3) for a histogram series, the sum of
 *            its bucket cells equals its count.
 *
 * THREADING  Loop thread only, except metrics_counter_add_atomic. A counter
 *            series is updated either only by the loop thread through
 *            metrics_counter_add, or by any thread through
 *            metrics_counter_add_atomic; rendering reads counters with an
 *            atomic load so both are safe against a concurrent render.
 */
#include "metrics.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>

/* Bucket upper bounds (seconds) and their `le` spellings. */
static const double metrics_bucket_le[] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05,   0.1,     0.25,   0.5,   1.0,    2.5,   5.0,  10.0,
};
static const char *const metrics_bucket_le_str[] = {
    "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005",
    "0.01",   "0.025",   "0.05",   "0.1",   "0.25",   "0.5",
    "1",      "2.5",     "5",      "10",
};
#define METRICS_NBUCKETS (KV_ARRAY_LEN(metrics_bucket_le))
_Static_assert(KV_ARRAY_LEN(metrics_bucket_le) ==
                   KV_ARRAY_LEN(metrics_bucket_le_str),
               "bucket bounds and spellings must match");

struct metric_series {
    struct metric *metric;
    char **label_values; /* metric->nlabels strings */
    union {
        uint64_t counter; /* accessed with __atomic builtins */
        double gauge;
        struct {
            uint64_t buckets[METRICS_NBUCKETS + 1]; /* last is +Inf */
            uint64_t count;
            double sum;
        } hist;
    } v;
};

struct metric {
    char *name;
    char *help;
    metric_type_t type;
    double unit;        /* counters: rendered value = count * unit; 0 = 1 */
    uint64_t name_hash;
    char **label_names;
    size_t nlabels;
    metric_series_t **series;
    size_t nseries, cap_series;
};

struct metrics {
    struct metric **metrics;
    size_t nmetrics, cap_metrics;
    metrics_refresh_fn refresh;
    void *refresh_arg;
};

/* ---- helpers ----------------------------------------------------------- */

static uint64_t metrics_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
    for (; *s; s++) {
        h ^= (uint8_t)*s;
        h *= 0x100000001b3ULL;
    }
    return h;
}

static bool metrics_name_char(char c, bool first, bool colon)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_')
        return true;
    if (colon && c == ':') return true;
    return !first && c >= '0' && c <= '9';
}

static bool metrics_valid_name(const char *s, bool colon)
{
    if (!s || !*s) return false;
    for (size_t i = 0; s[i]; i++)
        if (!metrics_name_char(s[i], i == 0, colon)) return false;
    return true;
}

static bool metrics_ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

static size_t metrics_strv_len(const char *const *v)
{
    size_t n = 0;
    while (v && v[n]) n++;
    return n;
}

static char **metrics_strv_dup(const char *const *v, size_t n)
{
    if (n == 0) return NULL;
    char **out = kv_calloc(n, sizeof *out);
    for (size_t i = 0; i < n; i++) out[i] = kv_strdup(v[i]);
    return out;
}

static void metrics_strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++) kv_free(v[i]);
    kv_free(v);
}

static struct metric *metrics_find(metrics_t *m, const char *name)
{
    uint64_t h = metrics_hash(name);
    for (size_t i = 0; i < m->nmetrics; i++) {
        struct metric *mt = m->metrics[i];
        if (mt->name_hash == h && strcmp(mt->name, name) == 0) return mt;
    }
    return NULL;
}

static metric_series_t *metrics_series_new(struct metric *mt,
                                           const char *const *values)
{
    metric_series_t *s = kv_calloc(1, sizeof *s);
    s->metric = mt;
    s->label_values = metrics_strv_dup(values, mt->nlabels);
    if (mt->nseries == mt->cap_series) {
        mt->cap_series = mt->cap_series ? mt->cap_series * 2 : 4;
        mt->series =
            kv_realloc(mt->series, mt->cap_series * sizeof *mt->series);
    }
    mt->series[mt->nseries++] = s;
    return s;
}

/* ---- registry ---------------------------------------------------------- */

metrics_t *metrics_create(void)
{
    return kv_calloc(1, sizeof(metrics_t));
}

void metrics_destroy(metrics_t *m)
{
    if (!m) return;
    for (size_t i = 0; i < m->nmetrics; i++) {
        struct metric *mt = m->metrics[i];
        for (size_t j = 0; j < mt->nseries; j++) {
            metrics_strv_free(mt->series[j]->label_values, mt->nlabels);
            kv_free(mt->series[j]);
        }
        kv_free(mt->series);
        metrics_strv_free(mt->label_names, mt->nlabels);
        kv_free(mt->name);
        kv_free(mt->help);
        kv_free(mt);
    }
    kv_free(m->metrics);
    kv_free(m);
}

void metrics_register(metrics_t *m, const char *name, const char *help,
                      metric_type_t type, const char *const *label_names)
{
    kv_assert(metrics_valid_name(name, true));
    kv_assert(type != METRIC_COUNTER || metrics_ends_with(name, "_total"));
    size_t nlabels = metrics_strv_len(label_names);
    for (size_t i = 0; i < nlabels; i++) {
        kv_assert(metrics_valid_name(label_names[i], false));
        kv_assert(strncmp(label_names[i], "__", 2) != 0);
        kv_assert(type != METRIC_HISTOGRAM || strcmp(label_names[i], "le"));
    }

    struct metric *old = metrics_find(m, name);
    if (old) {
        /* Registering the same definition again is harmless; a different
         * one under the same name is a programming error. */
        kv_assert(old->type == type && old->nlabels == nlabels);
        for (size_t i = 0; i < nlabels; i++)
            kv_assert(strcmp(old->label_names[i], label_names[i]) == 0);
        return;
    }

    struct metric *mt = kv_calloc(1, sizeof *mt);
    mt->name = kv_strdup(name);
    mt->help = kv_strdup(help ? help : "");
    mt->type = type;
    mt->name_hash = metrics_hash(name);
    mt->label_names = metrics_strv_dup(label_names, nlabels);
    mt->nlabels = nlabels;
    if (m->nmetrics == m->cap_metrics) {
        m->cap_metrics = m->cap_metrics ? m->cap_metrics * 2 : 16;
        m->metrics =
            kv_realloc(m->metrics, m->cap_metrics * sizeof *m->metrics);
    }
    m->metrics[m->nmetrics++] = mt;
    if (nlabels == 0) metrics_series_new(mt, NULL);
}

metric_series_t *metrics_series(metrics_t *m, const char *name,
                                const char *const *label_values)
{
    struct metric *mt = metrics_find(m, name);
    kv_assert(mt != NULL);
    size_t n = metrics_strv_len(label_values);
    kv_assert(n == mt->nlabels);
    for (size_t i = 0; i < mt->nseries; i++) {
        metric_series_t *s = mt->series[i];
        size_t j = 0;
        while (j < n && strcmp(s->label_values[j], label_values[j]) == 0) j++;
        if (j == n) return s;
    }
    return metrics_series_new(mt, label_values);
}

void metrics_set_refresh(metrics_t *m, metrics_refresh_fn fn, void *arg)
{
    m->refresh = fn;
    m->refresh_arg = arg;
}

/* ---- updates ----------------------------------------------------------- */

void metrics_counter_unit(metrics_t *m, const char *name, double unit)
{
    struct metric *mt = metrics_find(m, name);
    kv_assert(mt && mt->type == METRIC_COUNTER && unit > 0);
    mt->unit = unit;
}

void metrics_counter_mirror(metric_series_t *s, uint64_t now, uint64_t *last)
{
    if (now > *last) metrics_counter_add(s, now - *last);
    *last = now;
}

void metrics_counter_add(metric_series_t *s, uint64_t n)
{
    kv_assert(s->metric->type == METRIC_COUNTER);
    /* Single writer: a relaxed load and store (no locked instruction), still
     * atomic with respect to a render on the same thread or a reader. */
    uint64_t v = __atomic_load_n(&s->v.counter, __ATOMIC_RELAXED);
    __atomic_store_n(&s->v.counter, v + n, __ATOMIC_RELAXED);
}

void metrics_counter_add_atomic(metric_series_t *s, uint64_t n)
{
    kv_assert(s->metric->type == METRIC_COUNTER); /* immutable: safe to read */
    __atomic_fetch_add(&s->v.counter, n, __ATOMIC_RELAXED);
}

void metrics_gauge_set(metric_series_t *s, double v)
{
    kv_assert(s->metric->type == METRIC_GAUGE);
    s->v.gauge = v;
}

void metrics_gauge_add(metric_series_t *s, double v)
{
    kv_assert(s->metric->type == METRIC_GAUGE);
    s->v.gauge += v;
}

void metrics_histogram_observe(metric_series_t *s, double seconds)
{
    kv_assert(s->metric->type == METRIC_HISTOGRAM);
    if (isnan(seconds)) return; /* would poison _sum forever */
    size_t i = 0;
    while (i < METRICS_NBUCKETS && seconds > metrics_bucket_le[i]) i++;
    s->v.hist.buckets[i]++;
    s->v.hist.count++;
    s->v.hist.sum += seconds;
}

/* ---- rendering --------------------------------------------------------- */

KV_PRINTF(2, 3) static void metrics_printf(kv_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    char small[128];
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    kv_assert(n >= 0);
    if ((size_t)n < sizeof small) {
        kv_buf_append(b, small, (size_t)n);
        return;
    }
    kv_buf_reserve(b, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

static void metrics_puts(kv_buf_t *b, const char *s)
{
    kv_buf_append(b, s, strlen(s));
}

/* HELP text escapes backslash and newline; label values also the quote. */
static void metrics_escape(kv_buf_t *b, const char *s, bool quote)
{
    for (; *s; s++) {
        if (*s == '\\') metrics_puts(b, "\\\\");
        else if (*s == '\n') metrics_puts(b, "\\n");
        else if (quote && *s == '"') metrics_puts(b, "\\\"");
        else kv_buf_append_u8(b, (uint8_t)*s);
    }
}

/* Shortest of %.15g / %.17g that reads back to the same double. */
static void metrics_put_double(kv_buf_t *b, double v)
{
    if (isnan(v)) {
        metrics_puts(b, "NaN");
    } else if (isinf(v)) {
        metrics_puts(b, v > 0 ? "+Inf" : "-Inf");
    } else {
        char tmp[40];
        snprintf(tmp, sizeof tmp, "%.15g", v);
        if (strtod(tmp, NULL) != v) snprintf(tmp, sizeof tmp, "%.17g", v);
        metrics_puts(b, tmp);
    }
}

/* `name{a="x",...[,le="..."]} ` -- the series prefix up to the value. */
static void metrics_put_series_head(kv_buf_t *b, const struct metric *mt,
                                    const metric_series_t *s,
                                    const char *suffix, const char *le)
{
    metrics_puts(b, mt->name);
    metrics_puts(b, suffix);
    if (mt->nlabels > 0 || le) {
        kv_buf_append_u8(b, '{');
        for (size_t i = 0; i < mt->nlabels; i++) {
            if (i) kv_buf_append_u8(b, ',');
            metrics_puts(b, mt->label_names[i]);
            metrics_puts(b, "=\"");
            metrics_escape(b, s->label_values[i], true);
            kv_buf_append_u8(b, '"');
        }
        if (le) {
            if (mt->nlabels) kv_buf_append_u8(b, ',');
            metrics_puts(b, "le=\"");
            metrics_puts(b, le);
            kv_buf_append_u8(b, '"');
        }
        kv_buf_append_u8(b, '}');
    }
    kv_buf_append_u8(b, ' ');
}

static void metrics_render_series(kv_buf_t *b, const struct metric *mt,
                                  const metric_series_t *s)
{
    switch (mt->type) {
    case METRIC_COUNTER:
        metrics_put_series_head(b, mt, s, "", NULL);
        if (mt->unit != 0) {
            metrics_put_double(b, (double)__atomic_load_n(&s->v.counter, __ATOMIC_RELAXED) *
                                      mt->unit);
            kv_buf_append_u8(b, '\n');
        } else {
            metrics_printf(b, "%" PRIu64 "\n",
                           __atomic_load_n(&s->v.counter, __ATOMIC_RELAXED));
        }
        break;
    case METRIC_GAUGE:
        metrics_put_series_head(b, mt, s, "", NULL);
        metrics_put_double(b, s->v.gauge);
        kv_buf_append_u8(b, '\n');
        break;
    case METRIC_HISTOGRAM: {
        uint64_t cum = 0;
        for (size_t i = 0; i <= METRICS_NBUCKETS; i++) {
            cum += s->v.hist.buckets[i];
            metrics_put_series_head(b, mt, s, "_bucket",
                                    i < METRICS_NBUCKETS
                                        ? metrics_bucket_le_str[i]
                                        : "+Inf");
            metrics_printf(b, "%" PRIu64 "\n", cum);
        }
        kv_assert(cum == s->v.hist.count);
        metrics_put_series_head(b, mt, s, "_sum", NULL);
        metrics_put_double(b, s->v.hist.sum);
        kv_buf_append_u8(b, '\n');
        metrics_put_series_head(b, mt, s, "_count", NULL);
        metrics_printf(b, "%" PRIu64 "\n", s->v.hist.count);
        break;
    }
    }
}

static const char *metrics_type_str(metric_type_t t)
{
    switch (t) {
    case METRIC_COUNTER: return "counter";
    case METRIC_GAUGE: return "gauge";
    case METRIC_HISTOGRAM: return "histogram";
    }
    return "untyped";
}

void metrics_render(metrics_t *m, kv_buf_t *buf)
{
    if (m->refresh) m->refresh(m->refresh_arg, m);
    for (size_t i = 0; i < m->nmetrics; i++) {
        const struct metric *mt = m->metrics[i];
        if (mt->nseries == 0) continue;
        metrics_printf(buf, "# HELP %s ", mt->name);
        metrics_escape(buf, mt->help, false);
        metrics_printf(buf, "\n# TYPE %s %s\n", mt->name,
                       metrics_type_str(mt->type));
        for (size_t j = 0; j < mt->nseries; j++)
            metrics_render_series(buf, mt, mt->series[j]);
    }
}
