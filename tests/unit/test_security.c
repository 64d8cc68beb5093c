/* test_security.c -- Cairn's security: gossip datagram authentication,
 * password hashes and users files, the HELLO credentials on the wire, and
 * real nodes with TLS on the client port, client authentication and roles,
 * mutual TLS between nodes (a node with another CA's certificate cannot
 * join) and tampered gossip datagrams (dropped and counted).
 *
 * Certificates are made at test time by scripts/certs.sh (openssl), in the
 * test's directory: nothing secret is committed.
 */
#include "cluster_test_util.h"

#include "config.h"
#include "config_int.h"
#include "gossip_auth.h"
#include "passwd.h"
#include "proto.h"

#ifndef CAIRN_SOURCE_DIR
#error "CAIRN_SOURCE_DIR must name the source tree (scripts/certs.sh)"
#endif

/* ---- gossip datagram authentication ------------------------------------- */

static const char SECRET[] = "0123456789abcdef-test-secret";

static void test_gossip_auth_sealed_datagram_opens_once(void **state)
{
    (void)state;
    gossip_auth_t *a = gossip_auth_create(SECRET, strlen(SECRET), "test", 30000, 7);
    gossip_auth_t *b = gossip_auth_create(SECRET, strlen(SECRET), "test", 30000, 9);
    const uint8_t body[] = "a gossip body";
    uint8_t sealed[64];
    size_t n = gossip_auth_seal(a, 1000000, body, sizeof body, sealed);
    assert_int_equal(n, sizeof body + GOSSIP_AUTH_OVERHEAD);
    const uint8_t *got;
    size_t glen;
    assert_int_equal(gossip_auth_open(b, 1000500, sealed, n, &got, &glen), GOSSIP_AUTH_OK);
    assert_int_equal(glen, sizeof body);
    assert_memory_equal(got, body, sizeof body);
    /* the same datagram again is a replay */
    assert_int_equal(gossip_auth_open(b, 1000600, sealed, n, &got, &glen), GOSSIP_AUTH_REPLAY);
    gossip_auth_destroy(a);
    gossip_auth_destroy(b);
}

static void test_gossip_auth_drops_tampered_stale_and_foreign_datagrams(void **state)
{
    (void)state;
    gossip_auth_t *a = gossip_auth_create(SECRET, strlen(SECRET), "test", 30000, 7);
    gossip_auth_t *other = gossip_auth_create("another secret, same cluster", 28, "test", 30000, 7);
    gossip_auth_t *elsewhere = gossip_auth_create(SECRET, strlen(SECRET), "prod", 30000, 7);
    const uint8_t body[] = "membership update";
    uint8_t sealed[64], copy[64];
    size_t n = gossip_auth_seal(a, 5000000, body, sizeof body, sealed);
    const uint8_t *got;
    size_t glen;
    /* every single flipped bit anywhere is caught */
    for (size_t i = 0; i < n; i++) {
        for (int bit = 0; bit < 8; bit++) {
            memcpy(copy, sealed, n);
            copy[i] ^= (uint8_t)(1u << bit);
            assert_int_equal(gossip_auth_open(a, 5000000, copy, n, &got, &glen),
                             GOSSIP_AUTH_BAD);
        }
    }
    /* truncated, unauthenticated (a bare gossip body), another key or cluster */
    assert_int_equal(gossip_auth_open(a, 5000000, sealed, n - 1, &got, &glen), GOSSIP_AUTH_BAD);
    assert_int_equal(gossip_auth_open(a, 5000000, body, sizeof body, &got, &glen),
                     GOSSIP_AUTH_BAD);
    assert_int_equal(gossip_auth_open(other, 5000000, sealed, n, &got, &glen), GOSSIP_AUTH_BAD);
    assert_int_equal(gossip_auth_open(elsewhere, 5000000, sealed, n, &got, &glen),
                     GOSSIP_AUTH_BAD);
    /* outside the window either way: stale, even when well signed */
    assert_int_equal(gossip_auth_open(a, 5000000 + 30001, sealed, n, &got, &glen),
                     GOSSIP_AUTH_STALE);
    assert_int_equal(gossip_auth_open(a, 5000000 - 30001, sealed, n, &got, &glen),
                     GOSSIP_AUTH_STALE);
    assert_int_equal(gossip_auth_open(a, 5000000 + 30000, sealed, n, &got, &glen),
                     GOSSIP_AUTH_OK);
    gossip_auth_destroy(a);
    gossip_auth_destroy(other);
    gossip_auth_destroy(elsewhere);
}

/* ---- passwords, users files, HELLO --------------------------------------- */

static void test_passwd_hash_verifies_only_its_password(void **state)
{
    (void)state;
    char *h1, *h2;
    assert_int_equal(kv_passwd_hash(kv_slice_str("s3cret"), 1000, &h1), KV_OK);
    assert_int_equal(kv_passwd_hash(kv_slice_str("s3cret"), 1000, &h2), KV_OK);
    assert_string_not_equal(h1, h2); /* salted */
    assert_true(strncmp(h1, "pbkdf2-sha256$1000$", 19) == 0);
    assert_int_equal(kv_passwd_verify(kv_slice_str("s3cret"), h1), KV_OK);
    assert_int_equal(kv_passwd_verify(kv_slice_str("s3cret"), h2), KV_OK);
    assert_int_equal(kv_passwd_verify(kv_slice_str("s3creT"), h1), KV_DENIED);
    assert_int_equal(kv_passwd_verify(kv_slice_str(""), h1), KV_DENIED);
    assert_int_equal(kv_passwd_verify(kv_slice_str("s3cret"), "-"), KV_INVALID);
    assert_int_equal(kv_passwd_verify(kv_slice_str("s3cret"), "pbkdf2-sha256$0$x$y"), KV_INVALID);
    assert_int_equal(kv_passwd_verify(kv_slice_str("s3cret"), "pbkdf2-sha256$99999999999$a$b"),
                     KV_INVALID);
    kv_free(h1);
    kv_free(h2);
}

static void test_users_file_lines_parse_or_say_why(void **state)
{
    (void)state;
    kv_user_line_t u;
    const char *l = "alice:readwrite:pbkdf2-sha256$1000$abc$def";
    assert_int_equal(kv_user_line_parse(l, strlen(l), &u), KV_OK);
    assert_int_equal(u.role, KV_ROLE_READWRITE);
    assert_int_equal(u.name.len, 5);
    l = "ops@example:admin:-";
    assert_int_equal(kv_user_line_parse(l, strlen(l), &u), KV_OK);
    assert_int_equal(u.role, KV_ROLE_ADMIN);
    assert_int_equal(kv_user_line_parse("# comment", 9, &u), KV_NOTFOUND);
    assert_int_equal(kv_user_line_parse("   ", 3, &u), KV_NOTFOUND);
    l = "bob:root:-";
    assert_int_equal(kv_user_line_parse(l, strlen(l), &u), KV_INVALID);
    assert_non_null(strstr(kv_errmsg(), "role"));
    l = "bad name:read:-";
    assert_int_equal(kv_user_line_parse(l, strlen(l), &u), KV_INVALID);
    l = "carol:read";
    assert_int_equal(kv_user_line_parse(l, strlen(l), &u), KV_INVALID);
}

static kv_frame_t *decode_one(kv_buf_t *b, kv_frame_decoder_t **d)
{
    static kv_frame_t f;
    kv_frame_init(&f);
    *d = kv_frame_decoder_create(0);
    assert_int_equal(kv_frame_decoder_feed(*d, b->data, b->len), KV_OK);
    assert_int_equal(kv_frame_decoder_next(*d, &f), KV_OK);
    return &f;
}

static void test_hello_carries_credentials_and_stays_compatible(void **state)
{
    (void)state;
    kv_buf_t b = {0};
    kv_frame_decoder_t *d;
    /* with credentials */
    proto_hello_t h = {.version = 1, .cluster = kv_slice_str("c"),
                       .client_name = kv_slice_str("me"), .has_auth = true,
                       .user = kv_slice_str("alice"), .password = kv_slice("pw\0x", 4)};
    assert_int_equal(proto_encode_hello(&b, 3, &h, 0), KV_OK);
    kv_frame_t *f = decode_one(&b, &d);
    proto_hello_t got;
    assert_int_equal(proto_decode_hello(f, &got), KV_OK);
    assert_true(got.has_auth);
    assert_true(kv_slice_eq(got.user, kv_slice_str("alice")));
    assert_true(kv_slice_eq(got.password, kv_slice("pw\0x", 4)));
    kv_frame_release(f);
    kv_frame_decoder_destroy(d);
    /* without: the frame an older client sends, three arguments */
    kv_buf_clear(&b);
    h.has_auth = false;
    assert_int_equal(proto_encode_hello(&b, 3, &h, 0), KV_OK);
    f = decode_one(&b, &d);
    assert_int_equal(f->nargs, 3);
    assert_int_equal(proto_decode_hello(f, &got), KV_OK);
    assert_false(got.has_auth);
    kv_frame_release(f);
    kv_frame_decoder_destroy(d);
    /* HELLO_OK names the user and role; an older node's has neither */
    kv_buf_clear(&b);
    proto_hello_ok_t ok = {.version = 1, .cluster = kv_slice_str("c"),
                           .node_name = kv_slice_str("n1"), .node_id = kv_slice_str("id"),
                           .hlc = 9, .user = kv_slice_str("alice"),
                           .role = kv_slice_str("readwrite")};
    assert_int_equal(proto_encode_hello_ok(&b, 3, &ok, 0), KV_OK);
    f = decode_one(&b, &d);
    proto_hello_ok_t gok;
    assert_int_equal(proto_decode_hello_ok(f, &gok), KV_OK);
    assert_true(kv_slice_eq(gok.role, kv_slice_str("readwrite")));
    kv_frame_release(f);
    kv_frame_decoder_destroy(d);
    kv_buf_clear(&b);
    ok.user = ok.role = kv_slice(NULL, 0);
    assert_int_equal(proto_encode_hello_ok(&b, 3, &ok, 0), KV_OK);
    f = decode_one(&b, &d);
    assert_int_equal(f->nargs, 5);
    assert_int_equal(proto_decode_hello_ok(f, &gok), KV_OK);
    assert_int_equal(gok.user.len, 0);
    kv_frame_release(f);
    kv_frame_decoder_destroy(d);
    kv_buf_deinit(&b);
}

static void test_print_config_never_shows_the_cluster_secret(void **state)
{
    (void)state;
    const char yaml[] = "node_name: n1\ncluster_secret: do-not-print-this-0123\n";
    node_config_t c;
    node_config_init(&c);
    assert_int_equal(node_config_load_yaml(&c, yaml, sizeof yaml - 1, "t.yaml"), KV_OK);
    assert_string_equal(c.cluster_secret, "do-not-print-this-0123");
    char *out = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&out, &len);
    node_config_print(&c, m);
    fclose(m);
    assert_null(strstr(out, "do-not-print"));
    assert_non_null(strstr(out, "# cluster_secret: set, not printed"));
    /* what is printed still loads (without the secret) */
    node_config_t again;
    node_config_init(&again);
    assert_int_equal(node_config_load_yaml(&again, out, len, "printed.yaml"), KV_OK);
    assert_string_equal(again.cluster_secret, "");
    free(out);
    node_config_deinit(&again);
    node_config_deinit(&c);
}

/* ---- real nodes ------------------------------------------------------------ */

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
    char cmd[16384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    if (rc != 0) fail_msg("command failed (%d): %s", rc, cmd);
}

/* A CA with node certificates n1..n3 (127.0.0.1) and clients in dir. */
static void make_pki(const char *dir)
{
    sh("bash %s/scripts/certs.sh ca %s", CAIRN_SOURCE_DIR, dir);
    for (int i = 1; i <= 3; i++)
        sh("bash %s/scripts/certs.sh node %s n%d 127.0.0.1 localhost", CAIRN_SOURCE_DIR, dir, i);
    sh("bash %s/scripts/certs.sh client %s certuser", CAIRN_SOURCE_DIR, dir);
    sh("bash %s/scripts/certs.sh client %s stranger", CAIRN_SOURCE_DIR, dir);
}

typedef struct creds {
    bool tls;
    const char *ca, *cert, *key, *user, *password;
} creds_t;

static cairn_status_t try_connect(const node_proc_t *p, const creds_t *cr, cairn_client_t **out)
{
    cairn_options_t o;
    cairn_options_init(&o);
    char hp[32];
    snprintf(hp, sizeof hp, "127.0.0.1:%u", p->client_port);
    o.contact_points = hp;
    o.cluster_name = "test";
    o.connect_timeout_ms = 5000;
    o.tls = cr->tls;
    o.tls_ca_file = cr->ca;
    o.tls_cert_file = cr->cert;
    o.tls_key_file = cr->key;
    o.username = cr->user;
    o.password = cr->password;
    *out = NULL;
    return cairn_connect(&o, out);
}

/* Connect, put and get one key; the status of the first step that failed. */
static cairn_status_t round_trip(const node_proc_t *p, const creds_t *cr, const char *key)
{
    cairn_client_t *c;
    cairn_status_t st = try_connect(p, cr, &c);
    if (st != CAIRN_OK) return st;
    st = cairn_put(c, key, strlen(key), "v", 1, NULL);
    cairn_value_t v;
    if (st == CAIRN_OK && (st = cairn_get(c, key, strlen(key), NULL, &v)) == CAIRN_OK) {
        assert_int_equal(v.len, 1);
        cairn_value_free(&v);
    }
    cairn_close(c);
    return st;
}

/* SIGTERM and a clean drain (exit 0): in the sanitizer build a leak or an
 * error anywhere in the TLS or auth paths makes the exit non-zero. */
static void stop_clean(node_proc_t *p)
{
    proc_kill(p, SIGTERM);
    int rc = proc_wait_exit(p, 20000);
    if (rc != 0) fail_msg("cairnd exited %d after SIGTERM; see %s", rc, p->log);
}

static char pki_[PATH_MAX];
static char path_[8][PATH_MAX + 32];

static const char *pf(int slot, const char *name)
{
    snprintf(path_[slot], sizeof path_[slot], "%s/%s", pki_, name);
    return path_[slot];
}

static void test_tls_client_port_on_and_optional(void **state)
{
    (void)state;
    snprintf(pki_, sizeof pki_, "%s", test_tmpdir("sec-tls-pki"));
    make_pki(pki_);
    node_proc_t *on = proc_new("sec-tls-on"), *opt = proc_new("sec-tls-opt");
    const char *flags_on[] = {"--node-name", "n1", "--client-tls", "on",
                              "--tls-cert-file", pf(0, "n1.crt"), "--tls-key-file",
                              pf(1, "n1.key"), NULL};
    const char *flags_opt[] = {"--node-name", "n1", "--client-tls", "optional",
                               "--tls-cert-file", pf(2, "n1.crt"), "--tls-key-file",
                               pf(3, "n1.key"), NULL};
    proc_start(on, flags_on);
    proc_start(opt, flags_opt);
    creds_t tls = {.tls = true, .ca = pf(4, "ca.crt")}, plain = {0};
    /* TLS only: a TLS client works, a plain one is refused and counted */
    assert_int_equal(round_trip(on, &tls, "k1"), CAIRN_OK);
    cairn_client_t *c;
    assert_int_equal(try_connect(on, &plain, &c), CAIRN_CONNECTION);
    assert_non_null(strstr(cairn_connect_error(), "TLS"));
    uint64_t t0 = now_ms();
    while (scrape(on, "cairn_tls_handshake_failures_total{port=\"client\"}") < 1 &&
           now_ms() - t0 < 5000)
        sleep_ms(20);
    assert_true(scrape(on, "cairn_tls_handshake_failures_total{port=\"client\"}") >= 1);
    /* a certificate from nobody we trust: the client refuses the node */
    creds_t wrong_ca = {.tls = true, .ca = pf(5, "n2.crt")};
    assert_int_equal(try_connect(on, &wrong_ca, &c), CAIRN_CONNECTION);
    assert_non_null(strstr(cairn_connect_error(), "certificate verify failed"));
    /* big values and many pipelined requests through TLS (partial writes,
     * records split across reads, OpenSSL holding decrypted bytes) */
    assert_int_equal(try_connect(on, &tls, &c), CAIRN_OK);
    size_t big = 3u << 20;
    uint8_t *val = malloc(big);
    for (size_t i = 0; i < big; i++) val[i] = (uint8_t)(i * 31 + 7);
    assert_int_equal(cairn_put(c, "big", 3, val, big, NULL), CAIRN_OK);
    cairn_future_t *fs[200];
    for (int i = 0; i < 200; i++) {
        char k[16];
        snprintf(k, sizeof k, "p%d", i);
        cairn_request_opts_t ro = {.timeout_ms = 20000};
        fs[i] = i % 20 == 1 ? cairn_get_async(c, "big", 3, &ro)
                            : cairn_put_async(c, k, strlen(k), val, 1000 + (size_t)i * 97, &ro);
    }
    for (int i = 0; i < 200; i++) {
        cairn_value_t v;
        cairn_status_t fst = cairn_future_wait(fs[i], &v);
        if (fst != CAIRN_OK) fail_msg("request %d: %s: %s", i, cairn_status_name(fst),
                                      cairn_future_error(fs[i]));
        if (i % 20 == 1) {
            assert_int_equal(v.len, big);
            assert_memory_equal(v.data, val, big);
        }
        cairn_value_free(&v);
        cairn_future_free(fs[i]);
    }
    free(val);
    cairn_close(c);
    /* optional: both kinds of client, on the same port */
    assert_int_equal(round_trip(opt, &tls, "k2"), CAIRN_OK);
    assert_int_equal(round_trip(opt, &plain, "k3"), CAIRN_OK);
    assert_int_equal(round_trip(opt, &tls, "k4"), CAIRN_OK);
    /* the cairn tool: --tls-ca reads over TLS; without TLS it is refused */
    char cmd[16384];
    if (snprintf(cmd, sizeof cmd, "%s -H 127.0.0.1:%u --cluster test --tls-ca %s get k1 "
                 ">/dev/null 2>&1", CAIRN_CLI_PATH, on->client_port,
                 pf(6, "ca.crt")) >= (int)sizeof cmd)
        fail_msg("path too long");
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s -H 127.0.0.1:%u --cluster test get k1 >/dev/null 2>&1",
             CAIRN_CLI_PATH, on->client_port);
    assert_int_equal(WEXITSTATUS(system(cmd)), 2);
    stop_clean(on);
    stop_clean(opt);
}

static void test_client_auth_passwords_certificates_and_roles(void **state)
{
    (void)state;
    snprintf(pki_, sizeof pki_, "%s", test_tmpdir("sec-auth-pki"));
    make_pki(pki_);
    /* the users file, made with the tool as an operator would */
    const char *users = pf(0, "users");
    sh("cd %s && CAIRN_PASSWORD=rw-pass CAIRN_PASSWORD_ITERATIONS=2000 %s user add users "
       "writer readwrite 2>/dev/null && CAIRN_PASSWORD=ro-pass CAIRN_PASSWORD_ITERATIONS=2000 "
       "%s user add users reader read 2>/dev/null && %s user add users certuser admin "
       "--cert-only 2>/dev/null", pki_, CAIRN_CLI_PATH, CAIRN_CLI_PATH, CAIRN_CLI_PATH);
    node_proc_t *p = proc_new("sec-auth");
    const char *flags[] = {"--node-name", "n1", "--client-tls", "optional",
                           "--tls-ca-file", pf(1, "ca.crt"), "--tls-cert-file", pf(2, "n1.crt"),
                           "--tls-key-file", pf(3, "n1.key"), "--client-auth", "on",
                           "--users-file", users, NULL};
    proc_start(p, flags);
    cairn_client_t *c;
    /* no credentials: a clear DENIED, counted */
    creds_t none = {0};
    assert_int_equal(try_connect(p, &none, &c), CAIRN_DENIED);
    assert_non_null(strstr(cairn_connect_error(), "authentication required"));
    assert_true(scrape(p, "cairn_client_auth_total{result=\"no_credentials\"}") >= 1);
    /* wrong password, unknown user: the same answer */
    creds_t bad = {.user = "writer", .password = "nope"};
    assert_int_equal(try_connect(p, &bad, &c), CAIRN_DENIED);
    creds_t ghost = {.user = "ghost", .password = "rw-pass"};
    assert_int_equal(try_connect(p, &ghost, &c), CAIRN_DENIED);
    assert_non_null(strstr(cairn_connect_error(), "wrong user name or password"));
    assert_true(scrape(p, "cairn_client_auth_total{result=\"bad_credentials\"}") >= 2);
    /* readwrite: reads and writes, over plain TCP and over TLS; not ADMIN */
    creds_t writer = {.user = "writer", .password = "rw-pass"};
    assert_int_equal(round_trip(p, &writer, "w1"), CAIRN_OK);
    creds_t writer_tls = {.tls = true, .ca = pf(4, "ca.crt"), .user = "writer",
                          .password = "rw-pass"};
    assert_int_equal(round_trip(p, &writer_tls, "w2"), CAIRN_OK);
    assert_int_equal(try_connect(p, &writer, &c), CAIRN_OK);
    assert_string_equal(cairn_user(c), "writer");
    assert_string_equal(cairn_role(c), "readwrite");
    assert_int_equal(cairn_admin(c, "cleanup", NULL, NULL), CAIRN_DENIED);
    cairn_close(c);
    /* read: GET yes, PUT and DELETE no (DENIED, counted) */
    creds_t reader = {.user = "reader", .password = "ro-pass"};
    assert_int_equal(try_connect(p, &reader, &c), CAIRN_OK);
    cairn_value_t v;
    assert_int_equal(cairn_get(c, "w1", 2, NULL, &v), CAIRN_OK);
    cairn_value_free(&v);
    assert_int_equal(cairn_put(c, "w1", 2, "x", 1, NULL), CAIRN_DENIED);
    assert_non_null(strstr(cairn_last_error(c), "role read"));
    assert_int_equal(cairn_delete(c, "w1", 2, NULL), CAIRN_DENIED);
    cairn_close(c);
    assert_true(scrape(p, "cairn_client_requests_denied_total") >= 2);
    /* a client certificate whose name is a user: logged in without a
     * password; one whose name is not a user: refused */
    creds_t cert = {.tls = true, .ca = pf(5, "ca.crt"), .cert = pf(6, "certuser.crt"),
                    .key = pf(7, "certuser.key")};
    assert_int_equal(try_connect(p, &cert, &c), CAIRN_OK);
    assert_string_equal(cairn_role(c), "admin");
    assert_int_equal(cairn_put(c, "c1", 2, "v", 1, NULL), CAIRN_OK);
    cairn_close(c);
    creds_t stranger = {.tls = true, .ca = pf(5, "ca.crt"), .cert = pf(6, "stranger.crt"),
                        .key = pf(7, "stranger.key")};
    assert_int_equal(try_connect(p, &stranger, &c), CAIRN_DENIED);
    /* a password login for a certificate-only user is refused */
    creds_t certpw = {.user = "certuser", .password = "-"};
    assert_int_equal(try_connect(p, &certpw, &c), CAIRN_DENIED);
    /* users_file is read again when it changes: a new user gets in */
    sh("cd %s && CAIRN_PASSWORD=late-pass CAIRN_PASSWORD_ITERATIONS=2000 %s user add users "
       "late read 2>/dev/null", pki_, CAIRN_CLI_PATH);
    creds_t late = {.user = "late", .password = "late-pass"};
    assert_int_equal(try_connect(p, &late, &c), CAIRN_OK);
    cairn_close(c);
    /* the cairn tool: -u with $CAIRN_PASSWORD; DENIED (exit 2) without */
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "CAIRN_PASSWORD=rw-pass %s -H 127.0.0.1:%u --cluster test "
             "-u writer put t1 v >/dev/null 2>&1", CAIRN_CLI_PATH, p->client_port);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s -H 127.0.0.1:%u --cluster test get t1 2>&1 | "
             "grep -q 'Denied: .*authentication required'", CAIRN_CLI_PATH, p->client_port);
    assert_int_equal(system(cmd), 0);
    stop_clean(p);
}

/* Three founders with peer TLS and cluster secrets; n3's certificate (and
 * secret) come from another PKI. n1 and n2 form the cluster; n3 cannot
 * join, gossip or stream: its TLS handshakes fail on both sides, its
 * datagrams are dropped, it never becomes ready, and it is no replica. */
static void test_peer_tls_keeps_out_a_node_of_another_ca(void **state)
{
    (void)state;
    char other[PATH_MAX];
    snprintf(pki_, sizeof pki_, "%s", test_tmpdir("sec-peer-pki"));
    snprintf(other, sizeof other, "%s", test_tmpdir("sec-peer-other"));
    make_pki(pki_);
    make_pki(other);
    sh("bash %s/scripts/certs.sh secret %s", CAIRN_SOURCE_DIR, pki_);
    sh("bash %s/scripts/certs.sh secret %s", CAIRN_SOURCE_DIR, other);
    tcluster_t c;
    cluster_make(&c, "sec-peer");
    char certs[3][PATH_MAX + 16], keys[3][PATH_MAX + 16], cas[3][PATH_MAX + 16],
        secrets[3][PATH_MAX + 32];
    for (int i = 0; i < 3; i++) {
        const char *dir = i == 2 ? other : pki_;
        snprintf(certs[i], sizeof certs[i], "%s/n%d.crt", dir, i + 1);
        snprintf(keys[i], sizeof keys[i], "%s/n%d.key", dir, i + 1);
        snprintf(cas[i], sizeof cas[i], "%s/ca.crt", dir);
        snprintf(secrets[i], sizeof secrets[i], "%s/cluster.secret", dir);
        const char *flags[] = {"--peer-tls", "on", "--tls-ca-file", cas[i], "--tls-cert-file",
                               certs[i], "--tls-key-file", keys[i], "--cluster-secret-file",
                               secrets[i], "--gossip-pushpull-interval-ms", "500", NULL};
        node_spawn(&c, i, flags, NULL);
    }
    proc_wait_ready(c.n[0]);
    proc_wait_ready(c.n[1]);
    wait_peer(&c, 0, 1, 1);
    wait_peer(&c, 1, 0, 1);
    /* writes at QUORUM work over the mutual-TLS links (2 of 3 replicas) */
    ASSERT_ST(put_via(&c, 0, "k", "v", CAIRN_QUORUM, 2000, NULL), CAIRN_OK);
    expect_val(&c, 1, "k", CAIRN_QUORUM, "v");
    /* n3: its links and push-pulls fail the handshake on both sides, and
     * its datagrams do not open with the cluster's secret */
    uint64_t t0 = now_ms();
    while (now_ms() - t0 < 15000 &&
           (scrape(c.n[0], "cairn_tls_handshake_failures_total{port=\"peer\"}") < 1 ||
            scrape(c.n[2], "cairn_tls_handshake_failures_total{port=\"peer\"}") < 1 ||
            scrape(c.n[0], "cairn_gossip_dropped_total{reason=\"auth\"}") < 1))
        sleep_ms(50);
    assert_true(scrape(c.n[0], "cairn_tls_handshake_failures_total{port=\"peer\"}") >= 1);
    assert_true(scrape(c.n[2], "cairn_tls_handshake_failures_total{port=\"peer\"}") >= 1);
    assert_true(scrape(c.n[0], "cairn_gossip_dropped_total{reason=\"auth\"}") >= 1);
    sleep_ms(3000);
    assert_int_equal(scrape(c.n[0], "cairn_peer_up{peer=\"n3\"}"), 0);
    assert_int_equal(scrape(c.n[1], "cairn_peer_up{peer=\"n3\"}"), 0);
    assert_int_equal(scrape(c.n[2], "cairn_peer_up{peer=\"n1\"}"), 0);
    /* n1 and n2 see each other alive and n3 not (a placeholder that never
     * answers turns suspect after its first probe); n3 has heard from nobody */
    t0 = now_ms();
    while (scrape(c.n[0], "cairn_gossip_members{state=\"alive\"}") != 1 &&
           now_ms() - t0 < 20000)
        sleep_ms(100);
    assert_int_equal(scrape(c.n[0], "cairn_gossip_members{state=\"alive\"}"), 1);
    assert_int_equal(scrape(c.n[2], "cairn_gossip_members{state=\"alive\"}"), 0);
    assert_int_not_equal(http_get(c.n[2]->admin_port, "/ready", NULL), 200);
    /* ALL needs n3: it is not a usable replica */
    ASSERT_ST(put_via(&c, 0, "k2", "v", CAIRN_ALL, 2000, NULL), CAIRN_UNAVAILABLE);
    cluster_stop_clean(&c);
}

/* Datagrams without a valid tag, and replays of nothing: dropped, counted,
 * and the cluster keeps working. */
static void test_tampered_gossip_datagrams_are_dropped(void **state)
{
    (void)state;
    snprintf(pki_, sizeof pki_, "%s", test_tmpdir("sec-gossip-pki"));
    sh("bash %s/scripts/certs.sh secret %s", CAIRN_SOURCE_DIR, pki_);
    tcluster_t c;
    cluster_make(&c, "sec-gossip");
    char secret[PATH_MAX + 32];
    snprintf(secret, sizeof secret, "%s/cluster.secret", pki_);
    const char *flags[] = {"--cluster-secret-file", secret, NULL};
    cluster_start(&c, flags);
    wait_all_up(&c);
    double before = scrape(c.n[0], "cairn_gossip_dropped_total{reason=\"auth\"}");
    assert_true(before >= 0);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(c.n[0]->peer_port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    /* a datagram sealed with the wrong key, then the same with one byte
     * changed, then a bare (unsealed) body: all dropped */
    gossip_auth_t *forger = gossip_auth_create("not the cluster secret!!", 24, "test", 30000, 1);
    uint8_t body[40] = "tampered gossip body", sealed[128];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t wall = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    size_t n = gossip_auth_seal(forger, wall, body, sizeof body, sealed);
    assert_int_equal(sendto(fd, sealed, n, 0, (struct sockaddr *)&to, sizeof to), (ssize_t)n);
    sealed[20] ^= 1;
    assert_int_equal(sendto(fd, sealed, n, 0, (struct sockaddr *)&to, sizeof to), (ssize_t)n);
    assert_int_equal(sendto(fd, body, sizeof body, 0, (struct sockaddr *)&to, sizeof to),
                     (ssize_t)sizeof body);
    close(fd);
    gossip_auth_destroy(forger);
    uint64_t t0 = now_ms();
    while (scrape(c.n[0], "cairn_gossip_dropped_total{reason=\"auth\"}") < before + 3 &&
           now_ms() - t0 < 5000)
        sleep_ms(20);
    assert_true(scrape(c.n[0], "cairn_gossip_dropped_total{reason=\"auth\"}") >= before + 3);
    /* the real datagrams still pass: everyone stays up */
    sleep_ms(1500);
    wait_all_up(&c);
    assert_int_equal(scrape(c.n[0], "cairn_gossip_members{state=\"alive\"}"), 2);
    ASSERT_ST(put_via(&c, 0, "g", "v", CAIRN_ALL, 2000, NULL), CAIRN_OK);
    cluster_stop_clean(&c);
}

static void test_config_refuses_incomplete_security_settings(void **state)
{
    (void)state;
    node_proc_t *p = proc_new("sec-config");
    const char *a[] = {"--node-name", "n1", "--client-tls", "on", NULL};
    proc_spawn(p, a);
    assert_int_equal(proc_wait_exit(p, 10000), 2);
    const char *b[] = {"--node-name", "n1", "--peer-tls", "on", "--tls-cert-file", "/x",
                       "--tls-key-file", "/y", "--tls-ca-file", "/z", NULL};
    proc_spawn(p, b); /* no cluster secret */
    assert_int_equal(proc_wait_exit(p, 10000), 2);
    const char *d[] = {"--node-name", "n1", "--client-tls", "on", "--tls-cert-file",
                       "/nonexistent.crt", "--tls-key-file", "/nonexistent.key", NULL};
    proc_spawn(p, d); /* files that cannot be loaded: a start-up error */
    assert_true(proc_wait_exit(p, 10000) != 0);
    FILE *f = fopen(p->log, "r");
    char buf[8192] = {0};
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f) fclose(f);
    buf[n] = 0;
    assert_non_null(strstr(buf, "peer_tls: needs cluster_secret"));
    assert_non_null(strstr(buf, "tls_cert_file: cannot load '/nonexistent.crt'"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        kv_unit_test(test_gossip_auth_sealed_datagram_opens_once),
        kv_unit_test(test_gossip_auth_drops_tampered_stale_and_foreign_datagrams),
        kv_unit_test(test_passwd_hash_verifies_only_its_password),
        kv_unit_test(test_users_file_lines_parse_or_say_why),
        kv_unit_test(test_hello_carries_credentials_and_stays_compatible),
        kv_unit_test(test_print_config_never_shows_the_cluster_secret),
        node_test(test_config_refuses_incomplete_security_settings),
        node_test(test_tls_client_port_on_and_optional),
        node_test(test_client_auth_passwords_certificates_and_roles),
        node_test(test_tampered_gossip_datagrams_are_dropped),
        node_test(test_peer_tls_keeps_out_a_node_of_another_ca),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
