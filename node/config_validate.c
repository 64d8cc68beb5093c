/* config_validate.c -- cairnd's cross-setting rules: names, ports, limits
 * that must fit one another, seeds. Each failure names the settings
 * involved (kv_errmsg). */
#define KV_LOG_MODULE "config"
#include "config_int.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- validation --------------------------------------------------------- */

/* 1..64 characters of [A-Za-z0-9_.-]. */
static bool name_ok(const char *v)
{
    size_t n = v ? strlen(v) : 0;
    if (n == 0 || n > 64) return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)v[i]) && !strchr("_.-", v[i])) return false;
    return true;
}

static bool enum_ok(const char *choices, const char *v)
{
    if (!v || !*v) return false;
    size_t n = strlen(v);
    for (const char *p = choices;;) {
        const char *bar = strchr(p, '|');
        size_t cl = bar ? (size_t)(bar - p) : strlen(p);
        if (cl == n && memcmp(p, v, n) == 0) return true;
        if (!bar) return false;
        p = bar + 1;
    }
}

/* host, host:port, [v6] or [v6]:port; port 1..65535; no spaces. */
static bool seed_ok(const char *p, size_t n)
{
    if (n == 0) return false;
    for (size_t i = 0; i < n; i++)
        if (isspace((unsigned char)p[i]) || (unsigned char)p[i] < 0x20)
            return false;
    const char *port = NULL;
    size_t hostlen;
    if (p[0] == '[') {
        const char *close = memchr(p, ']', n);
        if (!close || close == p + 1) return false;
        size_t rest = n - (size_t)(close + 1 - p);
        if (rest == 0) return true;
        if (close[1] != ':') return false;
        port = close + 2;
        hostlen = 1;
    } else {
        const char *colon = memchr(p, ':', n);
        hostlen = colon ? (size_t)(colon - p) : n;
        if (colon) {
            port = colon + 1;
            if (memchr(port, ':', n - hostlen - 1)) return false;
        }
    }
    if (hostlen == 0) return false;
    if (!port) return true;
    uint64_t v;
    return node_config_parse_digits(port, (size_t)(p + n - port), &v) && v >= 1 &&
           v <= 65535;
}

void node_members_free(node_member_t *m, size_t n)
{
    if (!m) return;
    for (size_t i = 0; i < n; i++) {
        kv_free(m[i].name);
        kv_free(m[i].host);
        kv_free(m[i].rack);
    }
    kv_free(m);
}

static char *dup_n(const char *p, size_t n)
{
    char *s = kv_malloc(n + 1);
    memcpy(s, p, n);
    s[n] = 0;
    return s;
}

/* One entry: name=host:port[@rack]; host may be [v6]. */
static kv_status_t member_parse(const char *p, size_t n, node_member_t *m)
{
    const char *eq = memchr(p, '=', n);
    if (!eq) return KV_INVALID;
    m->name = dup_n(p, (size_t)(eq - p));
    const char *addr = eq + 1, *end = p + n;
    const char *at = memchr(addr, '@', (size_t)(end - addr));
    m->rack = at ? dup_n(at + 1, (size_t)(end - at - 1)) : dup_n("rack1", 5);
    const char *aend = at ? at : end;
    if (!name_ok(m->name) || !name_ok(m->rack)) return KV_INVALID;
    if (!seed_ok(addr, (size_t)(aend - addr))) return KV_INVALID;
    const char *colon = NULL;
    for (const char *q = aend; q > addr; q--)
        if (q[-1] == ':') { colon = q - 1; break; }
    if (!colon || (addr[0] == '[' && colon[-1] != ']')) return KV_INVALID;
    const char *h = addr, *hend = colon;
    if (h[0] == '[') { h++; hend--; }
    m->host = dup_n(h, (size_t)(hend - h));
    uint64_t port;
    if (!node_config_parse_digits(colon + 1, (size_t)(aend - colon - 1), &port))
        return KV_INVALID;
    m->peer_port = (uint16_t)port;
    return KV_OK;
}

kv_status_t node_config_members(const node_config_t *c, node_member_t **out,
                                size_t *nout)
{
    *out = NULL;
    *nout = 0;
    const char *list = c->initial_cluster ? c->initial_cluster : "";
    bool have_seeds = c->seeds && *c->seeds;
    if (!*list && have_seeds) return KV_OK; /* joining: no founders known */
    if (!*list) {
        node_member_t *m = kv_calloc(1, sizeof *m);
        m->name = dup_n(c->node_name, strlen(c->node_name));
        m->host = dup_n(c->listen_address, strlen(c->listen_address));
        m->peer_port = c->peer_port;
        m->rack = dup_n(c->rack, strlen(c->rack));
        *out = m;
        *nout = 1;
        return KV_OK;
    }
    size_t cap = 1;
    for (const char *q = list; *q; q++) cap += *q == ',';
    node_member_t *m = kv_calloc(cap, sizeof *m);
    size_t n = 0;
    bool self_seen = false;
    for (const char *p = list;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (member_parse(p, len, &m[n]) != KV_OK) {
            kv_errmsg_set("initial_cluster: '%.*s' is not name=host:peer_port"
                          "[@rack] (entries are comma-separated, without "
                          "spaces; names and racks are 1 to 64 characters of "
                          "A-Z a-z 0-9 _ . -)", (int)KV_MIN(len, 120), p);
            node_members_free(m, n + 1);
            return KV_INVALID;
        }
        for (size_t j = 0; j < n; j++) {
            bool same_name = !strcmp(m[j].name, m[n].name);
            /* host names (and IPv6 hex digits) are case-insensitive */
            bool same_addr = !strcasecmp(m[j].host, m[n].host) &&
                             m[j].peer_port == m[n].peer_port;
            if (same_name || same_addr) {
                kv_errmsg_set("initial_cluster: %s listed twice",
                              same_name ? m[n].name : "an address is");
                node_members_free(m, n + 1);
                return KV_INVALID;
            }
        }
        if (!strcmp(m[n].name, c->node_name)) {
            self_seen = true;
            if (m[n].peer_port != c->peer_port || strcmp(m[n].rack, c->rack)) {
                kv_errmsg_set("initial_cluster: lists %s at port %u in rack "
                              "%s, but this node has peer_port %u and rack %s",
                              m[n].name, (unsigned)m[n].peer_port, m[n].rack,
                              (unsigned)c->peer_port, c->rack);
                node_members_free(m, n + 1);
                return KV_INVALID;
            }
        }
        n++;
        if (!comma) break;
        p = comma + 1;
    }
    if (!self_seen && !have_seeds) {
        kv_errmsg_set("initial_cluster: does not list this node (node_name "
                      "'%s'); a founding node lists itself, a node joining "
                      "a running cluster sets seeds", c->node_name);
        node_members_free(m, n);
        return KV_INVALID;
    }
    *out = m;
    *nout = n;
    return KV_OK;
}

kv_status_t node_config_validate(const node_config_t *c)
{
    static const char *const NAMES[] = {"cluster_name", "node_name", "rack"};
    const char *const vals[] = {c->cluster_name, c->node_name, c->rack};
    for (size_t i = 0; i < 3; i++) {
        if (!name_ok(vals[i])) {
            kv_errmsg_set("%s: '%.80s' must be 1 to 64 characters of "
                          "A-Z a-z 0-9 _ . -",
                          NAMES[i], vals[i] ? vals[i] : "");
            return KV_INVALID;
        }
    }
    if (!c->listen_address || !*c->listen_address) {
        kv_errmsg_set("listen_address: must not be empty");
        return KV_INVALID;
    }
    if (!c->data_dir || !*c->data_dir) {
        kv_errmsg_set("data_dir: must not be empty");
        return KV_INVALID;
    }
    if (c->seeds && *c->seeds) {
        for (const char *p = c->seeds;;) {
            const char *comma = strchr(p, ',');
            size_t n = comma ? (size_t)(comma - p) : strlen(p);
            if (!seed_ok(p, n)) {
                kv_errmsg_set("seeds: '%.*s' is not host[:port] (seeds are "
                              "comma-separated, without spaces)",
                              (int)KV_MIN(n, 80), p);
                return KV_INVALID;
            }
            if (!comma) break;
            p = comma + 1;
        }
    }
    {
        node_member_t *m;
        size_t nm;
        KV_RET(node_config_members(c, &m, &nm));
        node_members_free(m, nm);
    }
    bool any_addr = !strcmp(c->listen_address, "0.0.0.0") ||
                    !strcmp(c->listen_address, "::");
    if (any_addr && (!c->advertise_address || !*c->advertise_address)) {
        kv_errmsg_set("advertise_address: must be set when listen_address is "
                      "%s (other nodes need an address that reaches this one)",
                      c->listen_address);
        return KV_INVALID;
    }
    if (c->gossip_probe_interval_ms < 50 ||
        c->gossip_probe_timeout_ms >= c->gossip_probe_interval_ms ||
        c->gossip_probe_timeout_ms < 10) {
        kv_errmsg_set("gossip_probe_timeout_ms (%" PRIu32 ") must be at least "
                      "10 and below gossip_probe_interval_ms (%" PRIu32
                      ", at least 50)", c->gossip_probe_timeout_ms,
                      c->gossip_probe_interval_ms);
        return KV_INVALID;
    }
    if (c->gossip_interval_ms < 10 || c->gossip_pushpull_interval_ms < 100) {
        kv_errmsg_set("gossip_interval_ms must be at least 10 and "
                      "gossip_pushpull_interval_ms at least 100");
        return KV_INVALID;
    }
    if (c->read_repair_chance > 100 || c->read_repair_chance_quorum > 100) {
        kv_errmsg_set("%s: %" PRIu32 " is not a percentage (0-100)",
                      c->read_repair_chance > 100 ? "read_repair_chance"
                                                  : "read_repair_chance_quorum",
                      c->read_repair_chance > 100 ? c->read_repair_chance
                                                  : c->read_repair_chance_quorum);
        return KV_INVALID;
    }
    if (c->stream_bytes_per_sec < 64 * 1024) {
        kv_errmsg_set("stream_bytes_per_sec: must be at least 64KiB");
        return KV_INVALID;
    }
    if (c->hint_replay_bytes_per_sec < 1024) {
        kv_errmsg_set("hint_replay_bytes_per_sec: must be at least 1KiB");
        return KV_INVALID;
    }
    {
        bool ctls = c->client_tls && strcmp(c->client_tls, "off") != 0;
        bool ptls = c->peer_tls && !strcmp(c->peer_tls, "on");
        bool secret = (c->cluster_secret && *c->cluster_secret) ||
                      (c->cluster_secret_file && *c->cluster_secret_file);
        if ((ctls || ptls) && (!c->tls_cert_file || !*c->tls_cert_file ||
                               !c->tls_key_file || !*c->tls_key_file)) {
            kv_errmsg_set("%s: needs tls_cert_file and tls_key_file (this node's "
                          "certificate and key; scripts/certs.sh makes them)",
                          ctls ? "client_tls" : "peer_tls");
            return KV_INVALID;
        }
        if (ptls && (!c->tls_ca_file || !*c->tls_ca_file)) {
            kv_errmsg_set("peer_tls: needs tls_ca_file (the cluster CA that signs "
                          "every node's certificate)");
            return KV_INVALID;
        }
        if (ptls && !secret) {
            kv_errmsg_set("peer_tls: needs cluster_secret or cluster_secret_file, "
                          "so that gossip datagrams (UDP) are authenticated too");
            return KV_INVALID;
        }
        if (c->cluster_secret && *c->cluster_secret && c->cluster_secret_file &&
            *c->cluster_secret_file) {
            kv_errmsg_set("cluster_secret and cluster_secret_file are both set: "
                          "keep one");
            return KV_INVALID;
        }
        if (c->cluster_secret && *c->cluster_secret && strlen(c->cluster_secret) < 16) {
            kv_errmsg_set("cluster_secret: at least 16 characters");
            return KV_INVALID;
        }
        if (c->client_auth && !strcmp(c->client_auth, "on") &&
            (!c->users_file || !*c->users_file)) {
            kv_errmsg_set("client_auth: needs users_file (create it with "
                          "`cairn user add FILE NAME ROLE`)");
            return KV_INVALID;
        }
        if (c->gossip_replay_window_ms < 1000) {
            kv_errmsg_set("gossip_replay_window_ms: must be at least 1000");
            return KV_INVALID;
        }
    }
    if (c->phi_convict_threshold < 1 || c->phi_convict_threshold > 16) {
        kv_errmsg_set("phi_convict_threshold: %" PRIu32 " is outside 1-16",
                      c->phi_convict_threshold);
        return KV_INVALID;
    }
    if (c->peer_timeout_ms < 100) {
        kv_errmsg_set("peer_timeout_ms: %" PRIu32 " is below 100",
                      c->peer_timeout_ms);
        return KV_INVALID;
    }
    if (c->peer_queue_bytes < c->max_frame_bytes) {
        kv_errmsg_set("peer_queue_bytes: %" PRIu64 " must be at least "
                      "max_frame_bytes (%" PRIu64 ") so one frame fits",
                      c->peer_queue_bytes, c->max_frame_bytes);
        return KV_INVALID;
    }
    static const char *const PORTS[] = {"client_port", "peer_port",
                                        "admin_port"};
    const uint16_t ports[] = {c->client_port, c->peer_port, c->admin_port};
    for (size_t i = 0; i < 3; i++) {
        if (ports[i] == 0) {
            kv_errmsg_set("%s: must not be 0", PORTS[i]);
            return KV_INVALID;
        }
        for (size_t j = 0; j < i; j++) {
            if (ports[i] == ports[j]) {
                kv_errmsg_set("%s and %s: both are %u; the ports must differ",
                              PORTS[j], PORTS[i], (unsigned)ports[i]);
                return KV_INVALID;
            }
        }
    }
    if (c->num_tokens < 1 || c->num_tokens > 256) {
        kv_errmsg_set("num_tokens: %" PRIu32 " is not in 1..256",
                      c->num_tokens);
        return KV_INVALID;
    }
    if (c->replication_factor < 1) {
        kv_errmsg_set("replication_factor: must be at least 1");
        return KV_INVALID;
    }
    if (!enum_ok("group|periodic", c->sync)) {
        kv_errmsg_set("sync: '%.64s' is not one of group|periodic",
                      c->sync ? c->sync : "");
        return KV_INVALID;
    }
    if (!strcmp(c->sync, "periodic") && c->sync_period_ms < 1) {
        kv_errmsg_set("sync_period_ms: must be at least 1 when sync is "
                      "periodic");
        return KV_INVALID;
    }
    if (c->max_key_bytes < 1 || c->max_key_bytes > 65536) {
        kv_errmsg_set("max_key_bytes: %" PRIu64 " is not in 1..65536",
                      c->max_key_bytes);
        return KV_INVALID;
    }
    if (c->max_value_bytes < 1) {
        kv_errmsg_set("max_value_bytes: must be at least 1");
        return KV_INVALID;
    }
    /* max_key_bytes <= 65536, so only the value can overflow the sum. */
    if (c->max_value_bytes > UINT64_MAX - 65536 - 1024 ||
        c->max_frame_bytes <= c->max_key_bytes + c->max_value_bytes + 1024) {
        kv_errmsg_set("max_frame_bytes: %" PRIu64 " must exceed max_key_bytes "
                      "+ max_value_bytes + 1024 (%" PRIu64 " + %" PRIu64
                      " + 1024), room for the frame's envelope",
                      c->max_frame_bytes, c->max_key_bytes,
                      c->max_value_bytes);
        return KV_INVALID;
    }
    if (c->max_connections < 1) {
        kv_errmsg_set("max_connections: must be at least 1");
        return KV_INVALID;
    }
    if (c->max_inflight < 1) {
        kv_errmsg_set("max_inflight: must be at least 1");
        return KV_INVALID;
    }
    if (c->request_timeout_ms < 1) {
        kv_errmsg_set("request_timeout_ms: must be at least 1");
        return KV_INVALID;
    }
    if (c->memtable_bytes < 1) {
        kv_errmsg_set("memtable_bytes: must be at least 1");
        return KV_INVALID;
    }
    if (!enum_ok("error|warn|info|debug|trace", c->log_level)) {
        kv_errmsg_set("log_level: '%.64s' is not one of "
                      "error|warn|info|debug|trace",
                      c->log_level ? c->log_level : "");
        return KV_INVALID;
    }
    return KV_OK;
}

