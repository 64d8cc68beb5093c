/* cli.h -- what the `cairn` tool's files share (internal to cli*.c). */
#ifndef CAIRN_CLI_H
#define CAIRN_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "cairn.h"

#define EXIT_NOTFOUND 1
#define EXIT_ERROR 2
#define EXIT_NOT_READY 1 /* ready: the node is not ready or not reachable */

/* cli.c: print "cairn: <Status>: <detail>" and return the exit code */
int fail(cairn_status_t st, const char *detail);
/* cli.c: print "cairn: " fmt (with arg) and the --help hint; returns 2 */
int usage_error(const char *fmt, const char *arg);
/* cli.c: a decimal in 1..UINT32_MAX */
bool parse_u32(const char *s, uint32_t *out);

/* cli_cluster.c: the commands about the cluster rather than keys */
typedef enum { VIEW_RING, VIEW_STATUS, VIEW_ENDPOINTS } view_t;
int cmd_view(cairn_client_t *c, view_t v, const char *key, const char *cluster);
int cmd_ready(const char *target, uint32_t timeout_ms);
int cmd_hints(cairn_client_t *c, const cairn_options_t *base);
int cmd_change(cairn_client_t *c, const char *op, const char *arg);
void status_repair_line(cairn_client_t *c);
int cmd_netstats(cairn_client_t *c, const cairn_options_t *base);

#endif /* CAIRN_CLI_H */
