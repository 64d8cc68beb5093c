/* test_metrics.c -- the metrics registry and its Prometheus text output.
 *
 * The first part is a checker for Prometheus text format 0.0.4
 * (prom_validate) and a sample lookup (prom_sample); test_admin.c reuses
 * them by defining PROM_CHECK_ONLY and including this file. The checker is
 * strict where our renderer has no reason to differ from the format:
 *   - every line ends in \n; no blank lines;
 *   - `# TYPE name type` at most once per name, before its samples; a
 *     counter's name ends in _total; `# HELP` at most once per name;
 *   - a sample is `name{label="value",...} value` with valid names, only
 *     \\ \" \n escapes in label values, a value strtod reads completely
 *     (or NaN, +Inf, -Inf);
 *   - a sample belongs to the family declared by the last TYPE: the same
 *     name, or for histograms name_bucket (with an le label), _sum, _count;
 *     a family's samples are contiguous and no series appears twice.
 */
#include "test_util.h"

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>

#include "metrics.h"

/* ---- Prometheus text checker -------------------------------------------- */

#define PROM_MAX_FAMILIES 256
#define PROM_MAX_SERIES 4096

typedef struct prom_family {
    char name[128];
    char type[16];
    bool help_seen, type_seen, closed;
} prom_family_t;

typedef struct prom_check {
    prom_family_t fam[PROM_MAX_FAMILIES];
    size_t nfam;
    char **series; /* "name{labels}" keys seen, to catch duplicates */
    size_t nseries;
    size_t samples;
} prom_check_t;

static bool prom_name_ok(const char *s, size_t n, bool colon)
{
    if (n == 0) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  c == '_' || (colon && c == ':') ||
                  (i > 0 && c >= '0' && c <= '9');
        if (!ok) return false;
    }
    return true;
}

static bool prom_ends_with(const char *s, size_t n, const char *suffix)
{
    size_t k = strlen(suffix);
    return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

static prom_family_t *prom_family(prom_check_t *c, const char *name, size_t n)
{
    for (size_t i = 0; i < c->nfam; i++)
        if (strlen(c->fam[i].name) == n && !memcmp(c->fam[i].name, name, n))
            return &c->fam[i];
    if (c->nfam == PROM_MAX_FAMILIES || n >= sizeof c->fam[0].name)
        return NULL;
    prom_family_t *f = &c->fam[c->nfam++];
    memset(f, 0, sizeof *f);
    memcpy(f->name, name, n);
    return f;
}

static bool prom_value_ok(const char *s, size_t n)
{
    char tmp[64];
    if (n == 0 || n >= sizeof tmp) return false;
    memcpy(tmp, s, n);
    tmp[n] = 0;
    if (!strcmp(tmp, "NaN") || !strcmp(tmp, "+Inf") || !strcmp(tmp, "-Inf"))
        return true;
    char *end;
    errno = 0;
    double v = strtod(tmp, &end);
    return *end == 0 && errno == 0 && isfinite(v);
}

#define PROM_FAIL(...)                                                         \
    do {                                                                       \
        snprintf(err, errlen, "line %zu: ", lineno);                           \
        size_t used_ = strlen(err);                                            \
        snprintf(err + used_, errlen - used_, __VA_ARGS__);                    \
        ok = false;                                                            \
        goto out;                                                              \
    } while (0)

/* Check `text` (len bytes). On failure, err says which line and why. */
static bool prom_validate_n(const char *text, size_t len, char *err,
                            size_t errlen, size_t *samples)
{
    prom_check_t *c = calloc(1, sizeof *c);
    c->series = calloc(PROM_MAX_SERIES, sizeof *c->series);
    prom_family_t *cur = NULL;
    bool ok = true;
    size_t lineno = 0, pos = 0;
    err[0] = 0;

    while (pos < len) {
        lineno++;
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', len - pos);
        if (!nl) PROM_FAIL("no newline at end");
        size_t n = (size_t)(nl - line);
        pos += n + 1;
        if (n == 0) PROM_FAIL("blank line");
        if (memchr(line, 0, n)) PROM_FAIL("NUL byte");

        if (line[0] == '#') {
            bool is_help = n > 7 && !memcmp(line, "# HELP ", 7);
            bool is_type = n > 7 && !memcmp(line, "# TYPE ", 7);
            if (!is_help && !is_type) continue; /* plain comment */
            const char *name = line + 7;
            const char *sp = memchr(name, ' ', (size_t)(nl - name));
            size_t nn = sp ? (size_t)(sp - name) : (size_t)(nl - name);
            if (!prom_name_ok(name, nn, true)) PROM_FAIL("bad metric name");
            prom_family_t *f = prom_family(c, name, nn);
            if (!f) PROM_FAIL("too many families");
            if (f->closed) PROM_FAIL("%s: family reopened", f->name);
            if (cur && cur != f) cur->closed = true;
            cur = f;
            if (is_help) {
                if (f->help_seen) PROM_FAIL("%s: second HELP", f->name);
                if (!sp) PROM_FAIL("%s: HELP without text", f->name);
                f->help_seen = true;
                for (const char *p = sp + 1; p < nl; p++)
                    if (*p == '\\' && (p + 1 == nl || (p[1] != '\\' &&
                                                        p[1] != 'n')))
                        PROM_FAIL("%s: bad escape in HELP", f->name);
                    else if (*p == '\\') p++;
                continue;
            }
            if (f->type_seen) PROM_FAIL("%s: second TYPE", f->name);
            if (!sp) PROM_FAIL("%s: TYPE without type", f->name);
            size_t tn = (size_t)(nl - sp - 1);
            if (tn >= sizeof f->type) PROM_FAIL("bad type");
            memcpy(f->type, sp + 1, tn);
            f->type[tn] = 0;
            if (strcmp(f->type, "counter") && strcmp(f->type, "gauge") &&
                strcmp(f->type, "histogram") && strcmp(f->type, "summary") &&
                strcmp(f->type, "untyped"))
                PROM_FAIL("%s: unknown type '%s'", f->name, f->type);
            if (!strcmp(f->type, "counter") &&
                !prom_ends_with(f->name, strlen(f->name), "_total"))
                PROM_FAIL("%s: counter name without _total", f->name);
            f->type_seen = true;
            continue;
        }

        /* sample: name [{labels}] value */
        size_t i = 0;
        while (i < n && line[i] != '{' && line[i] != ' ') i++;
        size_t nn = i;
        if (!prom_name_ok(line, nn, true)) PROM_FAIL("bad sample name");
        bool has_le = false;
        if (i < n && line[i] == '{') {
            i++;
            while (i < n && line[i] != '}') {
                size_t ls = i;
                while (i < n && line[i] != '=') i++;
                if (!prom_name_ok(line + ls, i - ls, false))
                    PROM_FAIL("bad label name");
                if (i - ls == 2 && !memcmp(line + ls, "le", 2)) has_le = true;
                if (i + 1 >= n || line[i + 1] != '"')
                    PROM_FAIL("label value not quoted");
                i += 2;
                while (i < n && line[i] != '"') {
                    if (line[i] == '\\') {
                        if (i + 1 >= n || (line[i + 1] != '\\' &&
                                           line[i + 1] != '"' &&
                                           line[i + 1] != 'n'))
                            PROM_FAIL("bad escape in label value");
                        i++;
                    }
                    i++;
                }
                if (i >= n) PROM_FAIL("unterminated label value");
                i++; /* closing quote */
                if (i < n && line[i] == ',') i++;
                else if (i < n && line[i] != '}')
                    PROM_FAIL("expected , or } after label");
            }
            if (i >= n) PROM_FAIL("unterminated label set");
            i++; /* '}' */
        }
        size_t key_len = i;
        if (i >= n || line[i] != ' ') PROM_FAIL("no space before value");
        i++;
        const char *val = line + i;
        const char *sp = memchr(val, ' ', n - i);
        size_t vn = sp ? (size_t)(sp - val) : n - i;
        if (!prom_value_ok(val, vn)) PROM_FAIL("unparseable value");
        if (sp) { /* optional integer timestamp */
            for (const char *p = sp + 1; p < nl; p++)
                if (!((*p >= '0' && *p <= '9') || (p == sp + 1 && *p == '-')))
                    PROM_FAIL("bad timestamp");
        }

        if (!cur || !cur->type_seen) PROM_FAIL("sample before its TYPE");
        size_t fn = strlen(cur->name);
        bool belongs = nn == fn && !memcmp(line, cur->name, fn);
        if (!strcmp(cur->type, "histogram")) {
            belongs = false;
            static const char *const sfx[] = {"_bucket", "_sum", "_count"};
            for (size_t k = 0; k < 3; k++)
                if (nn == fn + strlen(sfx[k]) && !memcmp(line, cur->name, fn) &&
                    !memcmp(line + fn, sfx[k], strlen(sfx[k]))) {
                    belongs = true;
                    if (k == 0 && !has_le) PROM_FAIL("_bucket without le");
                }
        }
        if (!belongs)
            PROM_FAIL("sample %.*s outside its TYPE (%s)", (int)nn, line,
                      cur->name);
        for (size_t k = 0; k < c->nseries; k++)
            if (strlen(c->series[k]) == key_len &&
                !memcmp(c->series[k], line, key_len))
                PROM_FAIL("duplicate series");
        if (c->nseries == PROM_MAX_SERIES) PROM_FAIL("too many series");
        c->series[c->nseries++] = strndup(line, key_len);
        c->samples++;
    }
out:
    if (ok && samples) *samples = c->samples;
    for (size_t k = 0; k < c->nseries; k++) free(c->series[k]);
    free(c->series);
    free(c);
    return ok;
}

static bool prom_validate(const kv_buf_t *b, char *err, size_t errlen)
{
    return prom_validate_n((const char *)b->data, b->len, err, errlen, NULL);
}

/* The value of the sample whose `name{labels}` is exactly `key`, or NAN. */
static double prom_sample_n(const char *text, size_t len, const char *key)
{
    size_t k = strlen(key);
    size_t pos = 0;
    while (pos < len) {
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - line) : len - pos;
        pos += n + 1;
        if (n > k && !memcmp(line, key, k) && line[k] == ' ') {
            char tmp[64];
            size_t vn = KV_MIN(n - k - 1, sizeof tmp - 1);
            memcpy(tmp, line + k + 1, vn);
            tmp[vn] = 0;
            if (!strcmp(tmp, "+Inf")) return INFINITY;
            if (!strcmp(tmp, "-Inf")) return -INFINITY;
            return strtod(tmp, NULL);
        }
    }
    return NAN;
}

static double prom_sample(const kv_buf_t *b, const char *key)
{
    return prom_sample_n((const char *)b->data, b->len, key);
}

#define assert_prom_valid(buf)                                                 \
    do {                                                                       \
        char prom_err_[256];                                                   \
        bool prom_ok_ = prom_validate((buf), prom_err_, sizeof prom_err_);     \
        if (!prom_ok_)                                                         \
            fail_msg("invalid Prometheus text: %s\n%.*s", prom_err_,           \
                     (int)(buf)->len, (const char *)(buf)->data);              \
    } while (0)

#ifndef PROM_CHECK_ONLY

/* ---- helpers ------------------------------------------------------------ */

/* Render m and compare with `want` exactly; also run the checker. */
static void assert_render(metrics_t *m, const char *want)
{
    kv_buf_t b = {0};
    metrics_render(m, &b);
    assert_prom_valid(&b);
    kv_buf_append_u8(&b, 0);
    assert_string_equal((const char *)b.data, want);
    kv_buf_deinit(&b);
}

static bool prom_ok(const char *text)
{
    char err[256];
    return prom_validate_n(text, strlen(text), err, sizeof err, NULL);
}

/* ---- tests -------------------------------------------------------------- */

static void test_metrics_counter_without_labels_renders_from_registration(
    void **state)
{
    metrics_t *m = metrics_create();
    metrics_register(m, "cairn_requests_total", "Requests served.",
                     METRIC_COUNTER, NULL);
    assert_render(m, "# HELP cairn_requests_total Requests served.\n"
                     "# TYPE cairn_requests_total counter\n"
                     "cairn_requests_total 0\n");
    metric_series_t *s = metrics_series(m, "cairn_requests_total", NULL);
    metrics_counter_add(s, 3);
    metrics_counter_add(s, UINT64_C(10000000000));
    assert_render(m, "# HELP cairn_requests_total Requests served.\n"
                     "# TYPE cairn_requests_total counter\n"
                     "cairn_requests_total 10000000003\n");
    metrics_destroy(m);
}

/* A counter of milliseconds renders as seconds (Prometheus base units). */
static void test_metrics_counter_with_a_unit_renders_scaled(void **state)
{
    (void)state;
    metrics_t *m = metrics_create();
    metrics_register(m, "cairn_stall_seconds_total", "Stalls.", METRIC_COUNTER, NULL);
    metrics_counter_unit(m, "cairn_stall_seconds_total", 0.001);
    metric_series_t *s = metrics_series(m, "cairn_stall_seconds_total", NULL);
    metrics_counter_add(s, 1500);
    metrics_counter_add(s, 250);
    assert_render(m, "# HELP cairn_stall_seconds_total Stalls.\n"
                     "# TYPE cairn_stall_seconds_total counter\n"
                     "cairn_stall_seconds_total 1.75\n");
    metrics_destroy(m);
}

static void test_metrics_render_in_registration_and_creation_order(
    void **state)
{
    metrics_t *m = metrics_create();
    static const char *const labels[] = {"op", "status", NULL};
    metrics_register(m, "cairn_ops_total", "Operations.", METRIC_COUNTER,
                     labels);
    metrics_register(m, "cairn_connections", "Open connections.",
                     METRIC_GAUGE, NULL);
    metrics_register(m, "cairn_unused_total", "Never used.", METRIC_COUNTER,
                     labels);

    metric_series_t *put_ok = metrics_series(
        m, "cairn_ops_total", (const char *const[]){"put", "ok", NULL});
    metric_series_t *get_ok = metrics_series(
        m, "cairn_ops_total", (const char *const[]){"get", "ok", NULL});
    metric_series_t *get_nf = metrics_series(
        m, "cairn_ops_total", (const char *const[]){"get", "notfound", NULL});
    metrics_counter_add(get_ok, 5);
    metrics_counter_add(put_ok, 2);
    metrics_counter_add(get_nf, 1);
    metrics_gauge_set(metrics_series(m, "cairn_connections", NULL), 7);

    /* cairn_unused_total has labels and no series yet: left out. */
    assert_render(m, "# HELP cairn_ops_total Operations.\n"
                     "# TYPE cairn_ops_total counter\n"
                     "cairn_ops_total{op=\"put\",status=\"ok\"} 2\n"
                     "cairn_ops_total{op=\"get\",status=\"ok\"} 5\n"
                     "cairn_ops_total{op=\"get\",status=\"notfound\"} 1\n"
                     "# HELP cairn_connections Open connections.\n"
                     "# TYPE cairn_connections gauge\n"
                     "cairn_connections 7\n");
    metrics_destroy(m);
}

static void test_metrics_series_handles_are_reused_and_stable(void **state)
{
    metrics_t *m = metrics_create();
    static const char *const labels[] = {"peer", NULL};
    metrics_register(m, "cairn_peer_bytes_total", "Bytes to a peer.",
                     METRIC_COUNTER, labels);
    metric_series_t *first = metrics_series(
        m, "cairn_peer_bytes_total", (const char *const[]){"n0", NULL});
    metrics_counter_add(first, 1);
    /* Enough series to grow the series array several times over. */
    for (int i = 1; i < 100; i++) {
        char name[16];
        snprintf(name, sizeof name, "n%d", i);
        metric_series_t *s = metrics_series(
            m, "cairn_peer_bytes_total", (const char *const[]){name, NULL});
        assert_ptr_not_equal(s, first);
        metrics_counter_add(s, (uint64_t)i);
    }
    assert_ptr_equal(metrics_series(m, "cairn_peer_bytes_total",
                                    (const char *const[]){"n0", NULL}),
                     first);
    metrics_counter_add(first, 41);

    kv_buf_t b = {0};
    metrics_render(m, &b);
    assert_prom_valid(&b);
    assert_true(prom_sample(&b, "cairn_peer_bytes_total{peer=\"n0\"}") == 42);
    assert_true(prom_sample(&b, "cairn_peer_bytes_total{peer=\"n99\"}") ==
                99);
    kv_buf_deinit(&b);
    metrics_destroy(m);
}

static void test_metrics_register_same_definition_twice_is_a_no_op(
    void **state)
{
    metrics_t *m = metrics_create();
    static const char *const labels[] = {"level", NULL};
    metrics_register(m, "cairn_log_lines_total", "Log lines.", METRIC_COUNTER,
                     labels);
    metric_series_t *s = metrics_series(
        m, "cairn_log_lines_total", (const char *const[]){"warn", NULL});
    metrics_counter_add(s, 4);
    metrics_register(m, "cairn_log_lines_total", "Log lines.", METRIC_COUNTER,
                     labels);
    assert_ptr_equal(metrics_series(m, "cairn_log_lines_total",
                                    (const char *const[]){"warn", NULL}),
                     s);
    assert_render(m, "# HELP cairn_log_lines_total Log lines.\n"
                     "# TYPE cairn_log_lines_total counter\n"
                     "cairn_log_lines_total{level=\"warn\"} 4\n");
    metrics_destroy(m);
}

static void test_metrics_gauges_render_floats_that_read_back(void **state)
{
    static const double values[] = {0.5,   -3,      0.1,    1e-9, 1e300,
                                    1.0 / 3, 123456789.25, -0.0,  2.5e-7};
    metrics_t *m = metrics_create();
    static const char *const labels[] = {"i", NULL};
    metrics_register(m, "cairn_g", "A gauge.", METRIC_GAUGE, labels);
    for (size_t i = 0; i < KV_ARRAY_LEN(values); i++) {
        char idx[8];
        snprintf(idx, sizeof idx, "%zu", i);
        metric_series_t *s =
            metrics_series(m, "cairn_g", (const char *const[]){idx, NULL});
        metrics_gauge_set(s, 1);
        metrics_gauge_set(s, values[i] - 2);
        metrics_gauge_add(s, 2); /* x - 2 + 2 may round: compare with that */
    }
    kv_buf_t b = {0};
    metrics_render(m, &b);
    assert_prom_valid(&b);
    for (size_t i = 0; i < KV_ARRAY_LEN(values); i++) {
        char key[32];
        snprintf(key, sizeof key, "cairn_g{i=\"%zu\"}", i);
        assert_true(prom_sample(&b, key) == (values[i] - 2) + 2);
    }
    kv_buf_deinit(&b);
    metrics_destroy(m);

    /* Non-finite gauges use the spellings Prometheus parses. */
    m = metrics_create();
    metrics_register(m, "cairn_nan", "x", METRIC_GAUGE, NULL);
    metrics_register(m, "cairn_pinf", "x", METRIC_GAUGE, NULL);
    metrics_register(m, "cairn_ninf", "x", METRIC_GAUGE, NULL);
    metrics_gauge_set(metrics_series(m, "cairn_nan", NULL), NAN);
    metrics_gauge_set(metrics_series(m, "cairn_pinf", NULL), INFINITY);
    metrics_gauge_set(metrics_series(m, "cairn_ninf", NULL), -INFINITY);
    assert_render(m, "# HELP cairn_nan x\n# TYPE cairn_nan gauge\n"
                     "cairn_nan NaN\n"
                     "# HELP cairn_pinf x\n# TYPE cairn_pinf gauge\n"
                     "cairn_pinf +Inf\n"
                     "# HELP cairn_ninf x\n# TYPE cairn_ninf gauge\n"
                     "cairn_ninf -Inf\n");
    metrics_destroy(m);
}

static void test_metrics_label_values_and_help_are_escaped(void **state)
{
    metrics_t *m = metrics_create();
    static const char *const labels[] = {"key", "other", NULL};
    metrics_register(m, "cairn_escape_total",
                     "Help with a \\ backslash,\na newline and \"quotes\".",
                     METRIC_COUNTER, labels);
    metric_series_t *s = metrics_series(
        m, "cairn_escape_total",
        (const char *const[]){"a\"b\\c\nd", "", NULL});
    metrics_counter_add(s, 1);
    assert_render(m, "# HELP cairn_escape_total Help with a \\\\ backslash,"
                     "\\na newline and \"quotes\".\n"
                     "# TYPE cairn_escape_total counter\n"
                     "cairn_escape_total{key=\"a\\\"b\\\\c\\nd\",other=\"\"} "
                     "1\n");
    /* Values differing only in escaped characters are distinct series. */
    metric_series_t *t = metrics_series(
        m, "cairn_escape_total", (const char *const[]){"a\"b\\c", "", NULL});
    assert_ptr_not_equal(s, t);
    metrics_destroy(m);
}

static void test_metrics_histogram_buckets_are_cumulative(void **state)
{
    metrics_t *m = metrics_create();
    static const char *const labels[] = {"op", NULL};
    metrics_register(m, "cairn_request_duration_seconds", "Latency.",
                     METRIC_HISTOGRAM, labels);
    metric_series_t *s = metrics_series(m, "cairn_request_duration_seconds",
                                        (const char *const[]){"get", NULL});
    static const double obs[] = {
        -0.001,  /* a clock step back: lowest bucket */
        0.00005, /* below the first bound */
        0.0001,  /* exactly on a bound: le is inclusive */
        0.0003, 0.003, 0.003, 0.7, 10.0,
        25.0,    /* only +Inf */
    };
    double sum = 0;
    for (size_t i = 0; i < KV_ARRAY_LEN(obs); i++) {
        metrics_histogram_observe(s, obs[i]);
        sum += obs[i];
    }
    metrics_histogram_observe(s, NAN); /* dropped */

    kv_buf_t b = {0};
    metrics_render(m, &b);
    assert_prom_valid(&b);

    static const struct {
        const char *le;
        double want;
    } cases[] = {
        {"0.0001", 3}, {"0.00025", 3}, {"0.0005", 4}, {"0.001", 4},
        {"0.0025", 4}, {"0.005", 6},   {"0.01", 6},   {"0.025", 6},
        {"0.05", 6},   {"0.1", 6},     {"0.25", 6},   {"0.5", 6},
        {"1", 7},      {"2.5", 7},     {"5", 7},      {"10", 8},
        {"+Inf", 9},
    };
    double prev = 0;
    for (size_t i = 0; i < KV_ARRAY_LEN(cases); i++) {
        char key[128];
        snprintf(key, sizeof key,
                 "cairn_request_duration_seconds_bucket{op=\"get\",le=\"%s\"}",
                 cases[i].le);
        double v = prom_sample(&b, key);
        if (v != cases[i].want)
            fail_msg("%s: got %g want %g", key, v, cases[i].want);
        assert_true(v >= prev);
        prev = v;
    }
    double count =
        prom_sample(&b, "cairn_request_duration_seconds_count{op=\"get\"}");
    assert_true(count == 9);
    assert_true(prom_sample(&b, "cairn_request_duration_seconds_bucket{op="
                                "\"get\",le=\"+Inf\"}") == count);
    assert_true(prom_sample(&b, "cairn_request_duration_seconds_sum{op="
                                "\"get\"}") == sum);
    kv_buf_deinit(&b);
    metrics_destroy(m);
}

static void test_metrics_histogram_without_labels_renders_exactly(void **state)
{
    metrics_t *m = metrics_create();
    metrics_register(m, "cairn_fsync_seconds", "WAL fsync time.",
                     METRIC_HISTOGRAM, NULL);
    metrics_histogram_observe(metrics_series(m, "cairn_fsync_seconds", NULL),
                              0.002);
    assert_render(m, "# HELP cairn_fsync_seconds WAL fsync time.\n"
                     "# TYPE cairn_fsync_seconds histogram\n"
                     "cairn_fsync_seconds_bucket{le=\"0.0001\"} 0\n"
                     "cairn_fsync_seconds_bucket{le=\"0.00025\"} 0\n"
                     "cairn_fsync_seconds_bucket{le=\"0.0005\"} 0\n"
                     "cairn_fsync_seconds_bucket{le=\"0.001\"} 0\n"
                     "cairn_fsync_seconds_bucket{le=\"0.0025\"} 1\n"
                     "cairn_fsync_seconds_bucket{le=\"0.005\"} 1\n"
                     "cairn_fsync_seconds_bucket{le=\"0.01\"} 1\n"
                     "cairn_fsync_seconds_bucket{le=\"0.025\"} 1\n"
                     "cairn_fsync_seconds_bucket{le=\"0.05\"} 1\n"
                     "cairn_fsync_seconds_bucket{le=\"0.1\"} 1\n"
                     "cairn_fsync_seconds_bucket{le=\"0.25\"} 1\n"
                     "cairn_fsync_seconds_bucket{le=\"0.5\"} 1\n"
                     "cairn_fsync_seconds_bucket{le=\"1\"} 1\n"
                     "cairn_fsync_seconds_bucket{le=\"2.5\"} 1\n"
                     "cairn_fsync_seconds_bucket{le=\"5\"} 1\n"
                     "cairn_fsync_seconds_bucket{le=\"10\"} 1\n"
                     "cairn_fsync_seconds_bucket{le=\"+Inf\"} 1\n"
                     "cairn_fsync_seconds_sum 0.002\n"
                     "cairn_fsync_seconds_count 1\n");
    metrics_destroy(m);
}

typedef struct refresh_state {
    int calls;
    double value;
} refresh_state_t;

static void refresh_hook(void *arg, metrics_t *m)
{
    refresh_state_t *rs = arg;
    rs->calls++;
    metrics_gauge_set(metrics_series(m, "cairn_engine_memtable_bytes", NULL),
                      rs->value);
}

static void test_metrics_render_runs_the_refresh_hook_first(void **state)
{
    metrics_t *m = metrics_create();
    metrics_register(m, "cairn_engine_memtable_bytes", "Memtable size.",
                     METRIC_GAUGE, NULL);
    refresh_state_t rs = {0, 4096};
    metrics_set_refresh(m, refresh_hook, &rs);
    assert_render(m, "# HELP cairn_engine_memtable_bytes Memtable size.\n"
                     "# TYPE cairn_engine_memtable_bytes gauge\n"
                     "cairn_engine_memtable_bytes 4096\n");
    assert_int_equal(rs.calls, 1);
    rs.value = 8192;
    assert_render(m, "# HELP cairn_engine_memtable_bytes Memtable size.\n"
                     "# TYPE cairn_engine_memtable_bytes gauge\n"
                     "cairn_engine_memtable_bytes 8192\n");
    assert_int_equal(rs.calls, 2);
    metrics_destroy(m);
}

typedef struct adder {
    metric_series_t *s;
    int n;
} adder_t;

static void *adder_main(void *arg)
{
    adder_t *a = arg;
    for (int i = 0; i < a->n; i++) metrics_counter_add_atomic(a->s, 1);
    return NULL;
}

static void test_metrics_atomic_counter_adds_from_threads_are_not_lost(
    void **state)
{
    metrics_t *m = metrics_create();
    metrics_register(m, "cairn_engine_jobs_total", "Engine jobs.",
                     METRIC_COUNTER, NULL);
    adder_t a = {metrics_series(m, "cairn_engine_jobs_total", NULL), 100000};
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, adder_main, &a), 0);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    assert_render(m, "# HELP cairn_engine_jobs_total Engine jobs.\n"
                     "# TYPE cairn_engine_jobs_total counter\n"
                     "cairn_engine_jobs_total 400000\n");
    metrics_destroy(m);
}

/* Run fn in a child process; true when the child died of SIGABRT. */
static bool dies_of_assert(void (*fn)(void))
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stderr)) _exit(2);
        fn();
        _exit(0);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    return WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT;
}

static void child_unregistered(void)
{
    metrics_t *m = metrics_create();
    metrics_series(m, "cairn_nope_total", NULL);
}

static void child_wrong_label_count(void)
{
    metrics_t *m = metrics_create();
    static const char *const labels[] = {"op", "cl", NULL};
    metrics_register(m, "cairn_x_total", "x", METRIC_COUNTER, labels);
    metrics_series(m, "cairn_x_total", (const char *const[]){"get", NULL});
}

static void child_counter_without_total(void)
{
    metrics_t *m = metrics_create();
    metrics_register(m, "cairn_requests", "x", METRIC_COUNTER, NULL);
}

static void child_conflicting_registration(void)
{
    metrics_t *m = metrics_create();
    metrics_register(m, "cairn_y", "x", METRIC_GAUGE, NULL);
    metrics_register(m, "cairn_y", "x", METRIC_HISTOGRAM, NULL);
}

static void child_bad_label_name(void)
{
    metrics_t *m = metrics_create();
    static const char *const labels[] = {"bad-name", NULL};
    metrics_register(m, "cairn_z", "x", METRIC_GAUGE, labels);
}

static void child_wrong_type_update(void)
{
    metrics_t *m = metrics_create();
    metrics_register(m, "cairn_g", "x", METRIC_GAUGE, NULL);
    metrics_counter_add(metrics_series(m, "cairn_g", NULL), 1);
}

static void test_metrics_misuse_is_a_kv_assert(void **state)
{
    assert_true(dies_of_assert(child_unregistered));
    assert_true(dies_of_assert(child_wrong_label_count));
    assert_true(dies_of_assert(child_counter_without_total));
    assert_true(dies_of_assert(child_conflicting_registration));
    assert_true(dies_of_assert(child_bad_label_name));
    assert_true(dies_of_assert(child_wrong_type_update));
}

static void test_metrics_checker_rejects_malformed_text(void **state)
{
    assert_true(prom_ok(""));
    assert_true(prom_ok("# TYPE a_total counter\na_total 1\n"));
    assert_true(prom_ok("# just a comment\n# TYPE g gauge\ng{x=\"1\",} 1e3\n"));
    assert_true(prom_ok("# TYPE g gauge\ng -Inf 1700000000000\n"));

    static const char *const bad[] = {
        "a_total 1\n",                                   /* no TYPE */
        "# TYPE a_total counter\na_total 1",             /* no newline */
        "# TYPE a counter\na 1\n",                       /* no _total */
        "# TYPE g gauge\n\ng 1\n",                       /* blank line */
        "# TYPE g gauge\ng one\n",                       /* bad value */
        "# TYPE g gauge\ng 1 2 3\n",                     /* bad timestamp */
        "# TYPE g gauge\ng{x=\"a\\tb\"} 1\n",            /* bad escape */
        "# TYPE g gauge\ng{x=\"a} 1\n",                  /* unterminated */
        "# TYPE g gauge\ng{x=a} 1\n",                    /* unquoted */
        "# TYPE g gauge\ng{1x=\"a\"} 1\n",               /* bad label name */
        "# TYPE 9g gauge\n9g 1\n",                       /* bad metric name */
        "# TYPE g gauge\n# TYPE g gauge\ng 1\n",         /* TYPE twice */
        "# TYPE g gauge\nh 1\n",                         /* other family */
        "# TYPE g gauge\ng 1\ng 2\n",                    /* duplicate series */
        "# TYPE g wibble\ng 1\n",                        /* unknown type */
        "# TYPE h histogram\nh_bucket 1\n",              /* bucket without le */
        "# TYPE g gauge\ng 1\n# TYPE k gauge\nk 1\n"
        "# HELP g again\n",                              /* family reopened */
    };
    for (size_t i = 0; i < KV_ARRAY_LEN(bad); i++)
        if (prom_ok(bad[i])) fail_msg("accepted bad text #%zu: %s", i, bad[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        kv_unit_test(
            test_metrics_counter_without_labels_renders_from_registration),
        kv_unit_test(test_metrics_counter_with_a_unit_renders_scaled),
        kv_unit_test(test_metrics_render_in_registration_and_creation_order),
        kv_unit_test(test_metrics_series_handles_are_reused_and_stable),
        kv_unit_test(test_metrics_register_same_definition_twice_is_a_no_op),
        kv_unit_test(test_metrics_gauges_render_floats_that_read_back),
        kv_unit_test(test_metrics_label_values_and_help_are_escaped),
        kv_unit_test(test_metrics_histogram_buckets_are_cumulative),
        kv_unit_test(test_metrics_histogram_without_labels_renders_exactly),
        kv_unit_test(test_metrics_render_runs_the_refresh_hook_first),
        kv_unit_test(
            test_metrics_atomic_counter_adds_from_threads_are_not_lost),
        kv_unit_test(test_metrics_misuse_is_a_kv_assert),
        kv_unit_test(test_metrics_checker_rejects_malformed_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

#endif /* PROM_CHECK_ONLY */
