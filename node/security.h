/* security.h -- who may talk to a node: TLS on the client port, mutual TLS
 * between nodes, client authentication and roles, the gossip key.
 *
 *   node_sec_open      at node_create, after metrics: loads the certificate,
 *                      key and CA (errors name the setting and the file),
 *                      the cluster secret, checks users_file can be read
 *   node_sec_quiesce   after the loop ended (joins the auth thread)
 *   node_sec_close     at node_destroy
 *
 * TLS (tls.c): bufferevents for accepted client sockets (TLS or plain), for
 * accepted and dialled peer sockets (mutual TLS when peer_tls is on), the
 * verified peer's common name, close_notify, failure counting. Client
 * authentication (auth.c): a user's password or certificate is checked
 * against users_file on a worker thread (PBKDF2 is slow on purpose; the
 * loop never runs it) and the result comes back on the loop.
 * THREADING  Loop thread, except where noted.
 */
#ifndef CAIRN_NODE_SECURITY_H
#define CAIRN_NODE_SECURITY_H

#include <event2/bufferevent.h>

#include "passwd.h"

typedef struct node node_t;
typedef struct node_sec node_sec_t;

kv_status_t node_sec_open(node_t *n);
void node_sec_quiesce(node_t *n);
void node_sec_close(node_t *n);

/* ---- TLS (tls.c) -------------------------------------------------------- */

typedef enum { NODE_TLS_OFF, NODE_TLS_ON, NODE_TLS_OPTIONAL } node_tls_mode_t;

node_tls_mode_t node_tls_client_mode(const node_t *n);
bool node_tls_peer_on(const node_t *n);

/* A bufferevent for an accepted client socket: TLS (server side of the
 * client port) when tls, plain otherwise. NULL on failure (fd closed). */
struct bufferevent *node_tls_client_bev(node_t *n, evutil_socket_t fd, bool tls);
/* A bufferevent for a peer socket: accepted (accepting), or to be dialled
 * (fd -1 or an unconnected socket bound to the source address, then
 * bufferevent_socket_connect*); mutual TLS when peer_tls is on (a dial's
 * pre-bound socket is then closed: TLS connects from a fresh one). host
 * (dialling) is sent as SNI. NULL on failure (fd closed). */
struct bufferevent *node_tls_peer_bev(node_t *n, evutil_socket_t fd, bool accepting,
                                      const char *host);
bool node_tls_bev_is_tls(struct bufferevent *bev);
/* The verified certificate of the other side: its common name into buf
 * (false when there is no verified certificate). */
bool node_tls_peer_cn(struct bufferevent *bev, char *buf, size_t cap);
/* Is the other side's verified certificate a node certificate (valid for
 * TLS servers, which client certificates are not)? */
bool node_tls_peer_is_node(struct bufferevent *bev);
/* Why a TLS bufferevent failed (certificate verification, handshake ...),
 * into buf; "" when it was not a TLS error. */
const char *node_tls_error(struct bufferevent *bev, char *buf, size_t cap);
/* Send close_notify (before shutting the socket's write side). */
void node_tls_close_notify(struct bufferevent *bev);
/* Count a failed TLS handshake (cairn_tls_handshake_failures_total{port}). */
void node_tls_count_failure(node_t *n, bool peer_port);
/* Count a peer certificate refused after the handshake (wrong name, or
 * not a node certificate): cairn_peer_certificates_refused_total. */
void node_tls_count_peer_refused(node_t *n);

/* ---- client authentication (auth.c) ------------------------------------- */

bool node_auth_on(const node_t *n);

/* Done on the loop: st KV_OK with the user's role, KV_DENIED (msg says
 * why, without saying whether the user exists), KV_BUSY, KV_IO. */
typedef void (*node_auth_done_fn)(void *arg, kv_status_t st, kv_role_t role,
                                  const char *msg);
/* Check user with password (cert false) or as the holder of a verified
 * client certificate (cert true) against users_file on the auth thread.
 * KV_BUSY when too many checks wait (then fn is not called). */
kv_status_t node_auth_check(node_t *n, kv_slice_t user, kv_slice_t password, bool cert,
                            node_auth_done_fn fn, void *arg);
/* cairn_client_auth_total{result}: ok, bad_credentials, no_credentials, busy */
void node_auth_count(node_t *n, const char *result);
/* cairn_client_requests_denied_total: a request the user's role forbids. */
void node_auth_count_denied(node_t *n);

/* ---- gossip ------------------------------------------------------------- */

/* The cluster secret (NULL when none is set) and its length. */
const uint8_t *node_sec_cluster_secret(const node_t *n, size_t *len);

#endif /* CAIRN_NODE_SECURITY_H */
