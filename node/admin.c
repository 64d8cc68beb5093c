/* admin.c -- the node's admin HTTP endpoint on libevent's evhttp.
 *
 * DESIGN  One evhttp bound to address:port on the node's event base, one
 *         generic callback that routes on the URI path (the query string is
 *         ignored) and answers every request at once from loop-owned state:
 *
 *           path      GET/HEAD answer (bodies end in \n)     Content-Type
 *           /health   200 ok                                text/plain
 *           /ready    200 ready, 503 starting / joining /   text/plain
 *                     draining / refused
 *           /metrics  200 metrics_render (refresh first)    text/plain; version=0.0.4
 *           /status   200 hooks->status_json                application/json
 *           other     404 not found                         text/plain
 *
 *         A known path with a method other than GET or HEAD gets 405 with
 *         `Allow: GET, HEAD` (an unknown path is 404 whatever the method).
 *         evhttp would answer disallowed methods itself with 501, so every
 *         method is allowed at the evhttp level and refused here. HEAD goes
 *         through the same code as GET; admin_reply then sends the headers
 *         with the Content-Length of the body, but not the body (libevent
 *         2.1's evhttp would send the body after a HEAD).
 *
 *         Requests are small and answered synchronously: no request body is
 *         wanted (bodies over ADMIN_MAX_BODY are refused by evhttp with 413),
 *         and idle connections close after ADMIN_TIMEOUT_S.
 *
 * THREADING  Loop thread only; the hooks run on the loop thread.
 */
#define KV_LOG_MODULE "admin"
#include "admin.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <string.h>

#define ADMIN_MAX_HEADERS 8192
#define ADMIN_MAX_BODY 4096
#define ADMIN_TIMEOUT_S 30

#define ADMIN_CT_TEXT "text/plain"
#define ADMIN_CT_METRICS "text/plain; version=0.0.4"
#define ADMIN_CT_JSON "application/json"

struct admin {
    struct evhttp *http;
    struct evhttp_bound_socket *sock;
    metrics_t *metrics;
    admin_hooks_t hooks;
    kv_buf_t scratch; /* reused for /metrics and /status bodies */
};

static void admin_reply(struct evhttp_request *req, int code,
                        const char *reason, const char *content_type,
                        const void *body, size_t len)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", content_type);
    evhttp_add_header(h, "Cache-Control", "no-store");
    if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
        /* evhttp 2.1 would send the body after HEAD: give the length only */
        char n[24];
        snprintf(n, sizeof n, "%zu", len);
        evhttp_add_header(h, "Content-Length", n);
    } else if (len > 0) {
        evbuffer_add(evhttp_request_get_output_buffer(req), body, len);
    }
    evhttp_send_reply(req, code, reason, NULL);
}

static void admin_reply_text(struct evhttp_request *req, int code,
                             const char *reason, const char *text)
{
    admin_reply(req, code, reason, ADMIN_CT_TEXT, text, strlen(text));
}

static admin_state_t admin_state(const admin_t *a)
{
    return a->hooks.state ? a->hooks.state(a->hooks.arg) : ADMIN_SERVING;
}

static void admin_ready(admin_t *a, struct evhttp_request *req)
{
    switch (admin_state(a)) {
    case ADMIN_SERVING:
        admin_reply_text(req, 200, "OK", "ready\n");
        return;
    case ADMIN_STARTING:
        admin_reply_text(req, 503, "Service Unavailable", "starting\n");
        return;
    case ADMIN_DRAINING:
        admin_reply_text(req, 503, "Service Unavailable", "draining\n");
        return;
    case ADMIN_REFUSED:
        admin_reply_text(req, 503, "Service Unavailable",
                         "refused by the cluster (see the log)\n");
        return;
    case ADMIN_JOINING:
        admin_reply_text(req, 503, "Service Unavailable",
                         "joining: no other member of the cluster heard from yet\n");
        return;
    }
    admin_reply_text(req, 503, "Service Unavailable", "unknown\n");
}

static void admin_metrics(admin_t *a, struct evhttp_request *req)
{
    kv_buf_clear(&a->scratch);
    metrics_render(a->metrics, &a->scratch);
    admin_reply(req, 200, "OK", ADMIN_CT_METRICS, a->scratch.data,
                a->scratch.len);
}

static void admin_status(admin_t *a, struct evhttp_request *req)
{
    kv_buf_clear(&a->scratch);
    if (a->hooks.status_json) a->hooks.status_json(a->hooks.arg, &a->scratch);
    else kv_buf_append(&a->scratch, "{}", 2);
    kv_buf_append_u8(&a->scratch, '\n');
    admin_reply(req, 200, "OK", ADMIN_CT_JSON, a->scratch.data,
                a->scratch.len);
}

static void admin_handle(struct evhttp_request *req, void *arg)
{
    admin_t *a = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    enum { R_NONE, R_HEALTH, R_READY, R_METRICS, R_STATUS } route = R_NONE;
    if (path) {
        if (!strcmp(path, "/health")) route = R_HEALTH;
        else if (!strcmp(path, "/ready")) route = R_READY;
        else if (!strcmp(path, "/metrics")) route = R_METRICS;
        else if (!strcmp(path, "/status")) route = R_STATUS;
    }
    if (route == R_NONE) {
        admin_reply_text(req, 404, "Not Found", "not found\n");
        return;
    }
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
                          "GET, HEAD");
        admin_reply_text(req, 405, "Method Not Allowed",
                         "method not allowed\n");
        return;
    }
    switch (route) {
    case R_HEALTH: admin_reply_text(req, 200, "OK", "ok\n"); break;
    case R_READY: admin_ready(a, req); break;
    case R_METRICS: admin_metrics(a, req); break;
    case R_STATUS: admin_status(a, req); break;
    case R_NONE: break;
    }
}

kv_status_t admin_start(struct event_base *base, const char *address,
                        uint16_t port, metrics_t *metrics,
                        const admin_hooks_t *hooks, admin_t **out)
{
    kv_assert(base && address && metrics && out);
    /* host:port, with brackets for an IPv6 literal */
    const char *lb = strchr(address, ':') ? "[" : "";
    const char *rb = *lb ? "]" : "";

    admin_t *a = kv_calloc(1, sizeof *a);
    a->metrics = metrics;
    if (hooks) a->hooks = *hooks;
    a->http = evhttp_new(base);
    if (!a->http) {
        kv_errmsg_set("admin %s%s%s:%u: evhttp_new failed", lb, address, rb,
                      (unsigned)port);
        kv_free(a);
        return KV_NOMEM;
    }
    evhttp_set_allowed_methods(
        a->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                     EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
                     EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT |
                     EVHTTP_REQ_PATCH);
    evhttp_set_max_headers_size(a->http, ADMIN_MAX_HEADERS);
    evhttp_set_max_body_size(a->http, ADMIN_MAX_BODY);
    evhttp_set_timeout(a->http, ADMIN_TIMEOUT_S);
    evhttp_set_gencb(a->http, admin_handle, a);

    errno = 0;
    a->sock = evhttp_bind_socket_with_handle(a->http, address, port);
    if (!a->sock) {
        int err = errno;
        kv_errmsg_set("admin: cannot listen on %s%s%s:%u: %s", lb, address, rb,
                      (unsigned)port,
                      err ? strerror(err) : "address not usable");
        evhttp_free(a->http);
        kv_free(a);
        return KV_IO;
    }
    KV_LOG(KV_DEBUG, "admin HTTP on %s%s%s:%u", lb, address, rb,
           (unsigned)port);
    *out = a;
    return KV_OK;
}

void admin_stop(admin_t *a)
{
    if (!a) return;
    evhttp_free(a->http); /* closes the listener and open connections */
    kv_buf_deinit(&a->scratch);
    kv_free(a);
}
