/* security_int.h -- shared by tls.c and auth.c only. */
#ifndef CAIRN_NODE_SECURITY_INT_H
#define CAIRN_NODE_SECURITY_INT_H

#include <openssl/ssl.h>
#include <pthread.h>
#include <sys/stat.h>

#include "metrics.h"
#include "security.h"

typedef struct node_user {
    char name[KV_USER_MAX + 1];
    kv_role_t role;
    char *hash; /* "-": certificate only */
} node_user_t;

struct node_sec {
    node_t *node;
    node_tls_mode_t client_mode;
    bool peer_tls;
    SSL_CTX *client_ctx;   /* server side of the client port */
    SSL_CTX *peer_srv_ctx; /* accepted peer connections: client cert required */
    SSL_CTX *peer_cli_ctx; /* dialled peer connections */
    uint8_t *secret;
    size_t secret_len;

    /* auth: the table is read and checked on the auth thread only */
    bool auth_on;
    struct node_pool *auth_pool;
    pthread_mutex_t users_mu;
    node_user_t *users;
    size_t nusers;
    struct timespec users_mtime;
    off_t users_size;
    ino_t users_ino;
    bool users_loaded;

    struct {
        metric_series_t *tls_fail_client, *tls_fail_peer, *peer_cert_refused;
        metric_series_t *auth_ok, *auth_bad, *auth_none, *auth_busy, *denied;
    } m;
};

kv_status_t node_auth_open(node_sec_t *s);
void node_auth_quiesce(node_sec_t *s);
void node_auth_close(node_sec_t *s);

#endif /* CAIRN_NODE_SECURITY_INT_H */
