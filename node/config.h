/* config.h -- cairnd's configuration: defaults, a YAML file, environment
 * variables and command-line flags.
 *
 * Every setting has one name in snake case (the YAML key: data_dir), one
 * flag (kebab case: --data-dir VALUE or --data-dir=VALUE) and one environment
 * variable (upper case with a prefix: CAIRN_DATA_DIR). Precedence: flag over
 * environment over file over default. The file is named by --config PATH or
 * CAIRN_CONFIG. Unknown keys, unknown flags and bad values stop start-up with
 * a message naming the setting and where it came from.
 */
#ifndef CAIRN_NODE_CONFIG_H
#define CAIRN_NODE_CONFIG_H

#include <stdio.h>

#include "kv.h"

typedef struct node_config {
    char *cluster_name;        /* "cairn" */
    char *node_name;           /* default: the host name */
    char *listen_address;      /* "127.0.0.1" */
    uint16_t client_port;      /* 7070 */
    uint16_t peer_port;        /* 7071 */
    uint16_t admin_port;       /* 7072 */
    char *data_dir;            /* "./data" */
    char *advertise_address;   /* address announced to peers; "" = listen_address */
    char *seeds;               /* comma-separated host[:port]; "" = the other
                                  initial_cluster members */
    char *initial_cluster;     /* name=host:peer_port[@rack],...; "" = alone */
    char *rack;                /* "rack1" */
    uint32_t num_tokens;       /* 16 */
    uint32_t replication_factor; /* 3 */
    char *sync;                /* "group" or "periodic" */
    uint32_t sync_period_ms;   /* 100 */
    uint64_t max_key_bytes;    /* 65536 (at most 65536) */
    uint64_t max_value_bytes;  /* 16 MiB */
    uint64_t max_frame_bytes;  /* 32 MiB; must exceed max key + value */
    uint32_t max_connections;  /* 1024 */
    uint32_t max_inflight;     /* requests in progress per node; 4096 */
    uint32_t request_timeout_ms; /* default client timeout; 2000 */
    uint32_t drain_timeout_ms; /* bound on graceful shutdown; 10000 */
    uint32_t idle_timeout_ms;  /* close idle client connections; 0 = never */
    uint64_t max_clock_offset_ms; /* 500 */
    uint32_t peer_timeout_ms;  /* a silent peer is down after this; 2000 */
    uint64_t peer_queue_bytes; /* output bound per peer connection; 64 MiB */
    uint32_t gossip_probe_interval_ms;    /* 1000 */
    uint32_t gossip_probe_timeout_ms;     /* 500 */
    uint32_t gossip_interval_ms;          /* 200 */
    uint32_t gossip_pushpull_interval_ms; /* 30000 */
    uint32_t phi_convict_threshold;       /* 8 */
    char *hinted_handoff;      /* "on" or "off" */
    uint64_t max_hint_window_ms;        /* 3 h */
    uint64_t max_hints_bytes;           /* 1 GiB */
    uint64_t hint_replay_bytes_per_sec; /* 1 MiB per target */
    uint32_t read_repair_chance;        /* percent of ONE reads; 10 */
    uint32_t read_repair_chance_quorum; /* percent of QUORUM reads; 0 */
    char *auto_bootstrap;      /* "on" or "off" */
    char *replace_node;        /* "" or a dead node's name or node id */
    uint64_t ring_delay_ms;    /* 5000 */
    uint64_t stream_bytes_per_sec; /* 32 MiB */
    uint64_t repair_interval_ms;   /* 0 = off */
    uint64_t repair_bytes_per_sec; /* 32 MiB */
    uint64_t memtable_bytes;   /* 64 MiB */
    uint64_t cache_bytes;      /* 32 MiB */
    uint64_t gc_grace_seconds; /* 864000 */
    char *log_level;           /* "info" */
    /* security (node/tls.c, node/auth.c, node/gossip_auth.c) */
    char *client_tls;          /* "off", "on" or "optional" (both) */
    char *peer_tls;            /* "off" or "on": mutual TLS between nodes */
    char *tls_ca_file;         /* the cluster CA (PEM) */
    char *tls_cert_file;       /* this node's certificate chain (PEM) */
    char *tls_key_file;        /* its private key (PEM) */
    char *client_auth;         /* "off" or "on" */
    char *users_file;          /* name:role:hash lines */
    char *cluster_secret;      /* gossip datagram key material; "" = none */
    char *cluster_secret_file; /* the same, read from a file */
    uint32_t gossip_replay_window_ms; /* 30000 */
} node_config_t;

/* Fill with defaults (strings allocated). */
void node_config_init(node_config_t *c);
void node_config_deinit(node_config_t *c);

/* Build the configuration from argv (argv[0] is the program), envp (NULL-
 * terminated "NAME=value" strings, e.g. environ) and the file they name.
 * On error returns KV_INVALID (or KV_IO/KV_NOTFOUND for the file) and sets
 * kv_errmsg() to a message naming the setting, e.g.
 *   "client_port: 'abc' is not a port number (from CAIRN_CLIENT_PORT)".
 * *action tells main what was asked: run, print help, print the config.
 * *c must hold an initialised (node_config_init) or zeroed config; on
 * success it is replaced (old strings freed), on error left unchanged.
 * For NODE_RUN the result has also passed node_config_validate; for
 * NODE_PRINT_CONFIG it has not (so a bad config can be shown); for
 * NODE_HELP and NODE_VERSION it is the defaults, and neither the
 * environment nor the file is read. */
typedef enum { NODE_RUN, NODE_HELP, NODE_PRINT_CONFIG, NODE_VERSION } node_action_t;

kv_status_t node_config_load(node_config_t *c, int argc, char **argv,
                             char **envp, node_action_t *action);

/* Check cross-setting rules (ports distinct, frame > key + value ...). */
kv_status_t node_config_validate(const node_config_t *c);

/* One member of initial_cluster. */
typedef struct node_member {
    char *name;
    char *host;
    uint16_t peer_port;
    char *rack; /* the entry's @rack, else the default "rack1" */
} node_member_t;

/* Parse c->initial_cluster into members (allocated; free with
 * node_members_free). An empty initial_cluster yields one member: this node
 * (node_name at listen_address:peer_port in rack) -- or none when seeds is
 * set: the node joins a running cluster through them. A list that does not
 * name node_name is likewise a joining node's view of the founders, allowed
 * only with seeds. KV_INVALID with
 * kv_errmsg() for a malformed entry, a name listed twice, the same
 * host:port twice (host names compared without case), or a list that does
 * not name node_name while seeds is empty, or names it at another peer_port or rack than this
 * node's settings. */
kv_status_t node_config_members(const node_config_t *c, node_member_t **out,
                                size_t *n);
void node_members_free(node_member_t *m, size_t n);

/* The --help text: every setting with its flag, variable, default and a
 * one-line description. */
void node_config_print_help(FILE *out);
/* The effective configuration as YAML (loadable again). */
void node_config_print(const node_config_t *c, FILE *out);

#endif /* CAIRN_NODE_CONFIG_H */
