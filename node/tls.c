/* tls.c -- TLS for the client port and mutual TLS between nodes, with
 * OpenSSL under libevent's bufferevent_openssl.
 *
 * DESIGN  Three contexts, made once at start from tls_cert_file,
 *         tls_key_file and tls_ca_file (TLS 1.2 at least):
 *           client port  server side; asks for a client certificate (signed
 *                        by the CA) but does not require one -- password
 *                        users need none; a certificate that does not verify
 *                        fails the handshake;
 *           peer accept  server side; a certificate signed by the CA is
 *                        required (mutual TLS);
 *           peer dial    client side; the accepting node's certificate must
 *                        be signed by the CA.
 *         Verification is the chain only: nodes are found by IP or by
 *         container name, so host names are not matched. Instead the peer
 *         handshake (peer.c) requires the certificate's common name to be
 *         the node name the peer claims, and every peer certificate to be
 *         a node certificate (valid for TLS servers: the extended key usage
 *         scripts/certs.sh gives nodes and not clients), so a client
 *         certificate cannot join the cluster.
 *         A bufferevent_openssl sits on the socket; the rest of the node
 *         reads and writes plaintext through it as before. Dirty shutdowns
 *         (EOF without close_notify) are allowed: the framing tells whether
 *         a message was cut.
 * THREADING  Contexts are built before the loop runs and are read-only
 *            after; everything else runs on the loop.
 */
#define KV_LOG_MODULE "tls"
#include "node_int.h"
#include "security_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#define L(...) ((const char *const[]){__VA_ARGS__, NULL})

static void ssl_errstr(char *buf, size_t cap)
{
    unsigned long e = ERR_get_error();
    if (!e) {
        snprintf(buf, cap, "unknown OpenSSL error");
        return;
    }
    ERR_error_string_n(e, buf, cap);
    ERR_clear_error();
}

/* Load cert + key (+ CA) into ctx; errors name the setting. */
static kv_status_t ctx_load(SSL_CTX *ctx, const node_config_t *cfg, bool need_ca)
{
    char err[256];
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert_file) != 1) {
        ssl_errstr(err, sizeof err);
        kv_errmsg_set("tls_cert_file: cannot load '%s': %s", cfg->tls_cert_file, err);
        return KV_INVALID;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key_file, SSL_FILETYPE_PEM) != 1) {
        ssl_errstr(err, sizeof err);
        kv_errmsg_set("tls_key_file: cannot load '%s': %s", cfg->tls_key_file, err);
        return KV_INVALID;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        kv_errmsg_set("tls_key_file: '%s' is not the key of tls_cert_file '%s'",
                      cfg->tls_key_file, cfg->tls_cert_file);
        return KV_INVALID;
    }
    if (cfg->tls_ca_file && *cfg->tls_ca_file) {
        if (SSL_CTX_load_verify_locations(ctx, cfg->tls_ca_file, NULL) != 1) {
            ssl_errstr(err, sizeof err);
            kv_errmsg_set("tls_ca_file: cannot load '%s': %s", cfg->tls_ca_file, err);
            return KV_INVALID;
        }
    } else if (need_ca) {
        kv_errmsg_set("tls_ca_file: needed");
        return KV_INVALID;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    return KV_OK;
}

static SSL_CTX *ctx_new(bool server)
{
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (ctx) SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                       SSL_MODE_ENABLE_PARTIAL_WRITE);
    return ctx;
}

static void register_metrics(node_sec_t *s)
{
    metrics_t *m = s->node->metrics;
    metrics_register(m, "cairn_tls_handshake_failures_total",
                     "TLS handshakes that failed (bad or missing certificate, a "
                     "plain client on a TLS port ...), by port.",
                     METRIC_COUNTER, L("port"));
    metrics_register(m, "cairn_peer_certificates_refused_total",
                     "Peer connections refused after the TLS handshake: the "
                     "certificate is not a node certificate, or names another node.",
                     METRIC_COUNTER, NULL);
    metrics_register(m, "cairn_client_auth_total",
                     "Client authentications, by result.", METRIC_COUNTER, L("result"));
    metrics_register(m, "cairn_client_requests_denied_total",
                     "Requests refused DENIED because the user's role does not "
                     "allow them.", METRIC_COUNTER, NULL);
    s->m.tls_fail_client = metrics_series(m, "cairn_tls_handshake_failures_total", L("client"));
    s->m.tls_fail_peer = metrics_series(m, "cairn_tls_handshake_failures_total", L("peer"));
    s->m.peer_cert_refused = metrics_series(m, "cairn_peer_certificates_refused_total", NULL);
    s->m.auth_ok = metrics_series(m, "cairn_client_auth_total", L("ok"));
    s->m.auth_bad = metrics_series(m, "cairn_client_auth_total", L("bad_credentials"));
    s->m.auth_none = metrics_series(m, "cairn_client_auth_total", L("no_credentials"));
    s->m.auth_busy = metrics_series(m, "cairn_client_auth_total", L("busy"));
    s->m.denied = metrics_series(m, "cairn_client_requests_denied_total", NULL);
}

static kv_status_t load_secret(node_sec_t *s, const node_config_t *cfg)
{
    if (cfg->cluster_secret && *cfg->cluster_secret) {
        s->secret_len = strlen(cfg->cluster_secret);
        s->secret = kv_memdup(cfg->cluster_secret, s->secret_len);
        return KV_OK;
    }
    if (!cfg->cluster_secret_file || !*cfg->cluster_secret_file) return KV_OK;
    FILE *f = fopen(cfg->cluster_secret_file, "rb");
    if (!f) {
        kv_errmsg_set("cluster_secret_file: cannot read '%s': %s",
                      cfg->cluster_secret_file, strerror(errno));
        return KV_IO;
    }
    char buf[4097];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    size_t a = 0;
    while (a < n && (buf[a] == ' ' || buf[a] == '\n' || buf[a] == '\r' || buf[a] == '\t')) a++;
    while (n > a && (buf[n - 1] == ' ' || buf[n - 1] == '\n' || buf[n - 1] == '\r' ||
                     buf[n - 1] == '\t'))
        n--;
    if (n - a < 16 || n > 4096) {
        kv_errmsg_set("cluster_secret_file: '%s' must hold 16 to 4096 bytes",
                      cfg->cluster_secret_file);
        return KV_INVALID;
    }
    s->secret_len = n - a;
    s->secret = kv_memdup(buf + a, s->secret_len);
    OPENSSL_cleanse(buf, sizeof buf);
    return KV_OK;
}

kv_status_t node_sec_open(node_t *n)
{
    const node_config_t *cfg = n->cfg;
    node_sec_t *s = kv_calloc(1, sizeof *s);
    s->node = n;
    n->sec = s;
    register_metrics(s);
    s->client_mode = !strcmp(cfg->client_tls, "on")         ? NODE_TLS_ON
                     : !strcmp(cfg->client_tls, "optional") ? NODE_TLS_OPTIONAL
                                                            : NODE_TLS_OFF;
    s->peer_tls = !strcmp(cfg->peer_tls, "on");
    if (s->client_mode != NODE_TLS_OFF) {
        if (!(s->client_ctx = ctx_new(true))) return KV_NOMEM;
        KV_RET(ctx_load(s->client_ctx, cfg, false));
        if (cfg->tls_ca_file && *cfg->tls_ca_file) {
            /* ask for a client certificate; password users send none */
            SSL_CTX_set_verify(s->client_ctx, SSL_VERIFY_PEER, NULL);
            STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->tls_ca_file);
            if (names) SSL_CTX_set_client_CA_list(s->client_ctx, names);
        }
    }
    if (s->peer_tls) {
        if (!(s->peer_srv_ctx = ctx_new(true)) || !(s->peer_cli_ctx = ctx_new(false)))
            return KV_NOMEM;
        KV_RET(ctx_load(s->peer_srv_ctx, cfg, true));
        KV_RET(ctx_load(s->peer_cli_ctx, cfg, true));
        SSL_CTX_set_verify(s->peer_srv_ctx,
                           SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        SSL_CTX_set_verify(s->peer_cli_ctx, SSL_VERIFY_PEER, NULL);
    }
    KV_RET(load_secret(s, cfg));
    KV_RET(node_auth_open(s));
    if (s->auth_on && s->client_mode != NODE_TLS_ON)
        KV_LOG(KV_WARN, "client_auth is on but client_tls is %s: passwords of plain "
               "connections cross the network in clear (use client_tls on, or keep "
               "the client port on a trusted network)", cfg->client_tls);
    if (s->client_mode != NODE_TLS_OFF || s->peer_tls || s->auth_on || s->secret)
        KV_LOG(KV_INFO, "security: client port %s, peer links %s, client "
               "authentication %s, gossip datagrams %s",
               s->client_mode == NODE_TLS_ON ? "TLS only"
               : s->client_mode == NODE_TLS_OPTIONAL ? "TLS or plain" : "plain",
               s->peer_tls ? "mutual TLS" : "plain", s->auth_on ? "on" : "off",
               s->secret ? "authenticated (HMAC)" : "not authenticated");
    return KV_OK;
}

void node_sec_quiesce(node_t *n)
{
    if (n->sec) node_auth_quiesce(n->sec);
}

void node_sec_close(node_t *n)
{
    node_sec_t *s = n->sec;
    if (!s) return;
    node_auth_close(s);
    if (s->client_ctx) SSL_CTX_free(s->client_ctx);
    if (s->peer_srv_ctx) SSL_CTX_free(s->peer_srv_ctx);
    if (s->peer_cli_ctx) SSL_CTX_free(s->peer_cli_ctx);
    if (s->secret) OPENSSL_cleanse(s->secret, s->secret_len);
    kv_free(s->secret);
    kv_free(s);
    n->sec = NULL;
}

node_tls_mode_t node_tls_client_mode(const node_t *n)
{
    return n->sec ? n->sec->client_mode : NODE_TLS_OFF;
}

bool node_tls_peer_on(const node_t *n) { return n->sec && n->sec->peer_tls; }

const uint8_t *node_sec_cluster_secret(const node_t *n, size_t *len)
{
    if (!n->sec || !n->sec->secret) return NULL;
    *len = n->sec->secret_len;
    return n->sec->secret;
}

static struct bufferevent *ssl_bev(node_t *n, SSL_CTX *ctx, evutil_socket_t fd,
                                   bool accepting, const char *host)
{
    SSL *ssl = SSL_new(ctx);
    if (!ssl) {
        if (fd >= 0) evutil_closesocket(fd);
        return NULL;
    }
    if (!accepting && host && *host) SSL_set_tlsext_host_name(ssl, host);
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        n->base, fd, ssl, accepting ? BUFFEREVENT_SSL_ACCEPTING : BUFFEREVENT_SSL_CONNECTING,
        BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        SSL_free(ssl);
        if (fd >= 0) evutil_closesocket(fd);
        return NULL;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

struct bufferevent *node_tls_client_bev(node_t *n, evutil_socket_t fd, bool tls)
{
    if (tls && n->sec && n->sec->client_ctx)
        return ssl_bev(n, n->sec->client_ctx, fd, true, NULL);
    struct bufferevent *bev = bufferevent_socket_new(n->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) evutil_closesocket(fd);
    return bev;
}

struct bufferevent *node_tls_peer_bev(node_t *n, evutil_socket_t fd, bool accepting,
                                      const char *host)
{
    if (node_tls_peer_on(n)) {
        /* A TLS bufferevent starts its handshake as soon as it has a
         * socket, so a dial must hand it none: the connect makes one (and
         * the source address is then the kernel's choice, not the
         * pre-bound listen_address -- a known gap with peer_tls). */
        if (!accepting && fd >= 0) {
            evutil_closesocket(fd);
            fd = -1;
        }
        return ssl_bev(n, accepting ? n->sec->peer_srv_ctx : n->sec->peer_cli_ctx, fd,
                       accepting, host);
    }
    struct bufferevent *bev = bufferevent_socket_new(n->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!bev && fd >= 0) evutil_closesocket(fd);
    return bev;
}

bool node_tls_bev_is_tls(struct bufferevent *bev)
{
    return bev && bufferevent_openssl_get_ssl(bev) != NULL;
}

static X509 *verified_cert(struct bufferevent *bev)
{
    SSL *ssl = bev ? bufferevent_openssl_get_ssl(bev) : NULL;
    if (!ssl || SSL_get_verify_result(ssl) != X509_V_OK) return NULL;
    return SSL_get1_peer_certificate(ssl);
}

bool node_tls_peer_cn(struct bufferevent *bev, char *buf, size_t cap)
{
    X509 *c = verified_cert(bev);
    if (!c) return false;
    int len = X509_NAME_get_text_by_NID(X509_get_subject_name(c), NID_commonName, buf,
                                        (int)cap);
    X509_free(c);
    return len > 0 && (size_t)len < cap && strlen(buf) == (size_t)len;
}

bool node_tls_peer_is_node(struct bufferevent *bev)
{
    X509 *c = verified_cert(bev);
    if (!c) return false;
    bool ok = X509_check_purpose(c, X509_PURPOSE_SSL_SERVER, 0) == 1 &&
              X509_check_purpose(c, X509_PURPOSE_SSL_CLIENT, 0) == 1;
    X509_free(c);
    return ok;
}

const char *node_tls_error(struct bufferevent *bev, char *buf, size_t cap)
{
    buf[0] = 0;
    SSL *ssl = bev ? bufferevent_openssl_get_ssl(bev) : NULL;
    if (!ssl) return buf;
    unsigned long e, last = 0;
    while ((e = bufferevent_get_openssl_error(bev)) != 0)
        if (ERR_GET_LIB(e) != 0 && ERR_GET_LIB(e) != ERR_LIB_SYS) last = e;
    /* without an OpenSSL reason (lib 0: SSL_ERROR_SYSCALL and the like) it
     * was the socket: connection refused or reset, told by the caller */
    long v = SSL_get_verify_result(ssl);
    if (v != X509_V_OK)
        snprintf(buf, cap, "TLS: certificate verify failed: %s",
                 X509_verify_cert_error_string(v));
    else if (last) {
        char tmp[200];
        ERR_error_string_n(last, tmp, sizeof tmp);
        snprintf(buf, cap, "TLS: %s", tmp);
    }
    return buf;
}

void node_tls_close_notify(struct bufferevent *bev)
{
    SSL *ssl = bev ? bufferevent_openssl_get_ssl(bev) : NULL;
    if (ssl && SSL_is_init_finished(ssl)) {
        (void)SSL_shutdown(ssl);
        ERR_clear_error();
    }
}

void node_tls_count_failure(node_t *n, bool peer_port)
{
    if (n->sec)
        metrics_counter_add(peer_port ? n->sec->m.tls_fail_peer : n->sec->m.tls_fail_client, 1);
}

void node_tls_count_peer_refused(node_t *n)
{
    if (n->sec) metrics_counter_add(n->sec->m.peer_cert_refused, 1);
}
