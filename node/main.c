/* main.c -- cairnd: load the configuration, run one node, exit with a code
 * a supervisor can act on.
 *
 * Exit codes: 0 after a clean drain (or help/version/config printed);
 * 1 on a runtime failure (a port taken, a damaged store, a drain that timed
 * out); 2 on a configuration error. Errors go to stderr as
 * "cairnd: <message>".
 */
#define KV_LOG_MODULE "node"
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "kv.h"
#include "server.h"

extern char **environ;

int main(int argc, char **argv)
{
    node_config_t cfg;
    node_action_t action = NODE_RUN;
    node_config_init(&cfg);
    kv_status_t rc = node_config_load(&cfg, argc, argv, environ, &action);
    if (rc == KV_OK && action == NODE_RUN) rc = node_config_validate(&cfg);
    if (rc != KV_OK) {
        fprintf(stderr, "cairnd: %s\n",
                kv_errmsg()[0] ? kv_errmsg() : kv_status_str(rc));
        node_config_deinit(&cfg);
        return 2;
    }
    switch (action) {
    case NODE_HELP:
        node_config_print_help(stdout);
        node_config_deinit(&cfg);
        return 0;
    case NODE_PRINT_CONFIG:
        node_config_print(&cfg, stdout);
        node_config_deinit(&cfg);
        return 0;
    case NODE_VERSION:
        printf("cairnd %s\n", node_version());
        node_config_deinit(&cfg);
        return 0;
    case NODE_RUN:
        break;
    }

    kv_log_level_t lvl;
    if (kv_log_level_parse(cfg.log_level, &lvl) == KV_OK) kv_log_set_level(lvl);

    node_t *n = NULL;
    kv_errmsg_clear();
    rc = node_create(&cfg, &n);
    if (rc != KV_OK) {
        fprintf(stderr, "cairnd: %s\n",
                kv_errmsg()[0] ? kv_errmsg() : kv_status_str(rc));
        node_config_deinit(&cfg);
        return 1;
    }
    rc = node_run(n);
    node_destroy(n);
    node_config_deinit(&cfg);
    if (rc != KV_OK) {
        fprintf(stderr, "cairnd: shutdown was not clean: %s\n", kv_status_str(rc));
        return 1;
    }
    return 0;
}
