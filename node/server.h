/* server.h -- one Cairn node: the libevent loop, the client listener, the
 * local engine and clock, the admin endpoint, signals and graceful drain.
 *
 *   node_t *n;
 *   KV_RET(node_create(&cfg, &n));   // binds ports, opens data_dir
 *   rc = node_run(n);                // until SIGTERM/SIGINT and a drain
 *   node_destroy(n);
 *
 * THREADING  node_create, node_run and node_destroy on one thread, which
 *            becomes the node's loop thread.
 */
#ifndef CAIRN_NODE_SERVER_H
#define CAIRN_NODE_SERVER_H

#include "config.h"
#include "kv.h"

typedef struct node node_t;

/* The daemon's version string ("0.1.0"). */
const char *node_version(void);

/* Open the node described by cfg (which must outlive the node): create
 * data_dir if missing, the engine in data_dir/engine, the clock state in
 * data_dir/clock, the node id in data_dir/node_id (16 random bytes as hex,
 * made on first start and kept), bind the client listener and the admin
 * endpoint. KV_IO with kv_errmsg() naming the address when a port is taken;
 * KV_CORRUPT / KV_IO from the engine or clock with their messages. */
kv_status_t node_create(const node_config_t *cfg, node_t **out);

/* Serve until SIGTERM or SIGINT (or node_stop), then drain: refuse new
 * requests with CLOSED, finish those in flight, flush and close the
 * engine. KV_OK after a clean drain; KV_TIMEOUT when drain_timeout_ms
 * passed first (the node still stops). */
kv_status_t node_run(node_t *n);

/* Begin the drain as a signal would (loop thread). */
void node_stop(node_t *n);

void node_destroy(node_t *n);

#endif /* CAIRN_NODE_SERVER_H */
