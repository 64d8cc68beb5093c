/* admin.h -- the node's admin HTTP endpoint (libevent evhttp):
 *   GET /health   200 "ok" while the process runs
 *   GET /ready    200 "ready" while serving; 503 "starting" / "draining"
 *   GET /metrics  Prometheus text (metrics.h)
 *   GET /status   JSON: the node's view (name, cluster, id, state, address,
 *                 ports, uptime, hlc, engine figures ...)
 * Anything else is 404; methods other than GET and HEAD are 405.
 * THREADING  Loop thread only.
 */
#ifndef CAIRN_NODE_ADMIN_H
#define CAIRN_NODE_ADMIN_H

#include <event2/event.h>

#include "metrics.h"

typedef struct admin admin_t;

/* REFUSED: running, but the cluster it tries to join refuses it (another
 * cluster name, a node name already taken): /ready answers 503.
 * JOINING: running, but it has not heard from any other member of its
 * cluster yet (its seeds are not up, or not reachable): /ready answers 503. */
typedef enum {
    ADMIN_STARTING, ADMIN_SERVING, ADMIN_DRAINING, ADMIN_REFUSED, ADMIN_JOINING
} admin_state_t;

typedef struct admin_hooks {
    /* the node's state for /ready */
    admin_state_t (*state)(void *arg);
    /* append the /status JSON object (without trailing newline) */
    void (*status_json)(void *arg, kv_buf_t *out);
    void *arg;
} admin_hooks_t;

/* Bind address:port on base. KV_IO (with kv_errmsg naming address:port) if
 * the port is taken or the address cannot be bound. hooks is copied; NULL
 * hooks, or a NULL member, mean "always ready" and a "{}" status. */
kv_status_t admin_start(struct event_base *base, const char *address,
                        uint16_t port, metrics_t *metrics,
                        const admin_hooks_t *hooks, admin_t **out);
void admin_stop(admin_t *a);

#endif /* CAIRN_NODE_ADMIN_H */
