/* config.c -- cairnd's settings: one table drives the defaults, the YAML
 * file, the environment, the flags, --help and --print-config.
 *
 * DESIGN  Every setting is one row of SETTINGS: its snake-case name (the
 *   YAML key), a kind (string, enum, port, count, size, duration), the
 *   member's offset and width in node_config_t, its default written as the
 *   text a user would type, and a one-line description. The flag
 *   (--data-dir) and the variable (CAIRN_DATA_DIR) are derived from the
 *   name, so adding a setting is adding a row. Defaults go through the same
 *   parser as user input, so the table cannot hold a default the loader
 *   would reject, and the width comes from sizeof, so a row cannot write
 *   past its member.
 *
 *   node_config_load builds a scratch config and moves it into the caller's
 *   only on success, so a failed load leaves *c as it was:
 *
 *     scan argv   syntax errors, --config, actions (--help/--version stop)
 *     scan envp   unknown CAIRN_* variables (typos), CAIRN_CONFIG
 *     apply       defaults -> file -> environment -> flags
 *                 (each later source overwrites the earlier ones)
 *     validate    cross-setting rules (NODE_RUN only; --print-config shows
 *                 a config even when it would not start, to debug it)
 *
 *   Values parse fully or not at all: digits only, no sign, no overflow.
 *   Sizes are bytes or a number with a binary suffix KiB/MiB/GiB/TiB (k, m,
 *   g, t in any case mean the same; "KB"/"MB" are refused as ambiguous).
 *   Durations are whole milliseconds. Every error names the setting and its
 *   source: "(from --client-port)", "(from CAIRN_CLIENT_PORT)",
 *   "(from /etc/cairn.yaml line 7)".
 *
 *   The file is one YAML mapping of scalar keys to scalar values; seeds may
 *   also be a sequence of strings (joined with commas). Unknown and
 *   duplicate keys, lists or mappings as values, aliases and several
 *   documents are errors. An empty file is an empty config.
 *
 * THREADING  Any thread; no globals. Errors go to the thread's kv_errmsg().
 */
#define KV_LOG_MODULE "config"
#include "config.h"
#include "config_int.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

/* ---- the table --------------------------------------------------------- */

typedef enum {
    K_STR,   /* free text */
    K_ENUM,  /* one of the '|'-separated choices */
    K_PORT,  /* 1..65535 */
    K_COUNT, /* unsigned integer */
    K_SIZE,  /* bytes, with an optional binary suffix */
    K_MS,    /* milliseconds */
} kind_t;

typedef struct setting {
    const char *name;
    kind_t kind;
    size_t off;          /* offsetof(node_config_t, member) */
    size_t width;        /* sizeof the member */
    const char *def;     /* default as typed; NULL: the host name */
    const char *choices; /* K_ENUM: "group|periodic" */
    bool list;           /* the file may give a sequence (joined with ',') */
    const char *help;
} setting_t;

#define MEMBER(f) offsetof(node_config_t, f), sizeof(((node_config_t *)0)->f)

static const setting_t SETTINGS[] = {
    {"cluster_name", K_STR, MEMBER(cluster_name), "cairn", NULL, false,
     "Cluster name; nodes only talk to peers with the same name"},
    {"node_name", K_STR, MEMBER(node_name), NULL, NULL, false,
     "This node's name, unique in the cluster"},
    {"listen_address", K_STR, MEMBER(listen_address), "127.0.0.1", NULL, false,
     "Address the client, peer and admin ports listen on"},
    {"client_port", K_PORT, MEMBER(client_port), "7070", NULL, false,
     "Port for client requests"},
    {"peer_port", K_PORT, MEMBER(peer_port), "7071", NULL, false,
     "Port for node-to-node traffic (gossip, replication)"},
    {"admin_port", K_PORT, MEMBER(admin_port), "7072", NULL, false,
     "Port for the admin HTTP interface (/metrics, /health, /status)"},
    {"data_dir", K_STR, MEMBER(data_dir), "./data", NULL, false,
     "Directory holding this node's data"},
    {"advertise_address", K_STR, MEMBER(advertise_address), "", NULL, false,
     "Address other nodes reach this one at; empty = listen_address"},
    {"seeds", K_STR, MEMBER(seeds), "", NULL, true,
     "Nodes to contact when starting: host[:port],... (a YAML list in the "
     "file); empty = the other initial_cluster members"},
    {"initial_cluster", K_STR, MEMBER(initial_cluster), "", NULL, true,
     "The founding nodes: name=host:peer_port[@rack],... (a YAML list in "
     "the file); empty without seeds = a cluster of this node alone; a node "
     "not listed joins through seeds"},
    {"rack", K_STR, MEMBER(rack), "rack1", NULL, false,
     "Rack (failure domain) of this node; replicas spread across racks"},
    {"num_tokens", K_COUNT, MEMBER(num_tokens), "16", NULL, false,
     "Virtual nodes this node owns on the ring (1-256)"},
    {"replication_factor", K_COUNT, MEMBER(replication_factor), "3", NULL,
     false, "Copies kept of each key"},
    {"sync", K_ENUM, MEMBER(sync), "group", "group|periodic", false,
     "WAL sync: group commit before each ack, or every sync_period_ms"},
    {"sync_period_ms", K_MS, MEMBER(sync_period_ms), "100", NULL, false,
     "WAL sync interval when sync is periodic"},
    {"max_key_bytes", K_SIZE, MEMBER(max_key_bytes), "64KiB", NULL, false,
     "Largest key accepted (at most 64KiB)"},
    {"max_value_bytes", K_SIZE, MEMBER(max_value_bytes), "16MiB", NULL, false,
     "Largest value accepted"},
    {"max_frame_bytes", K_SIZE, MEMBER(max_frame_bytes), "32MiB", NULL, false,
     "Largest wire frame; must exceed max key + max value + 1KiB"},
    {"max_connections", K_COUNT, MEMBER(max_connections), "1024", NULL, false,
     "Client connections open at once; more are refused"},
    {"max_inflight", K_COUNT, MEMBER(max_inflight), "4096", NULL, false,
     "Requests in progress on this node; more are answered BUSY"},
    {"request_timeout_ms", K_MS, MEMBER(request_timeout_ms), "2000", NULL,
     false, "Default timeout of a client request"},
    {"drain_timeout_ms", K_MS, MEMBER(drain_timeout_ms), "10000", NULL, false,
     "Bound on graceful shutdown"},
    {"idle_timeout_ms", K_MS, MEMBER(idle_timeout_ms), "0", NULL, false,
     "Close client connections idle this long; 0 = never"},
    {"max_clock_offset_ms", K_MS, MEMBER(max_clock_offset_ms), "500", NULL,
     false, "Largest clock offset tolerated from a peer or client timestamp"},
    {"peer_timeout_ms", K_MS, MEMBER(peer_timeout_ms), "2000", NULL, false,
     "A peer connection silent this long (or a handshake not finished) is "
     "closed and redialled"},
    {"peer_queue_bytes", K_SIZE, MEMBER(peer_queue_bytes), "64MiB", NULL,
     false, "Bytes queued to one peer before requests to it fail BUSY"},
    {"gossip_probe_interval_ms", K_MS, MEMBER(gossip_probe_interval_ms),
     "1000", NULL, false, "Gossip: how often each node probes one other node"},
    {"gossip_probe_timeout_ms", K_MS, MEMBER(gossip_probe_timeout_ms), "500",
     NULL, false, "Gossip: wait this long for a probe's ack before asking "
     "others to probe (below gossip_probe_interval_ms)"},
    {"gossip_interval_ms", K_MS, MEMBER(gossip_interval_ms), "200", NULL,
     false, "Gossip: how often updates are sent to a few random nodes"},
    {"gossip_pushpull_interval_ms", K_MS, MEMBER(gossip_pushpull_interval_ms),
     "30000", NULL, false, "Gossip: how often full state is exchanged with "
     "one random node over TCP"},
    {"phi_convict_threshold", K_COUNT, MEMBER(phi_convict_threshold), "8",
     NULL, false, "Phi-accrual level at which a silent node counts as down "
     "(1-16; higher = slower but fewer false alarms)"},
    {"hinted_handoff", K_ENUM, MEMBER(hinted_handoff), "on", "on|off", false,
     "Keep writes for replicas that are down or do not answer, and deliver "
     "them when the replica is back"},
    {"max_hint_window_ms", K_MS, MEMBER(max_hint_window_ms), "10800000", NULL,
     false, "Hints are not written for a replica down longer than this, and "
     "hints older than this are not delivered (repair covers the rest)"},
    {"max_hints_bytes", K_SIZE, MEMBER(max_hints_bytes), "1GiB", NULL, false,
     "Disk space hints may take on this node; past it new hints are refused"},
    {"hint_replay_bytes_per_sec", K_SIZE, MEMBER(hint_replay_bytes_per_sec),
     "1MiB", NULL, false, "Rate at which hints are delivered to each "
     "returning replica (at least 1KiB)"},
    {"read_repair_chance", K_COUNT, MEMBER(read_repair_chance), "10", NULL,
     false, "Percent of reads at ONE that afterwards check the other "
     "replicas and repair stale ones in the background (0-100)"},
    {"read_repair_chance_quorum", K_COUNT, MEMBER(read_repair_chance_quorum),
     "0", NULL, false, "The same for reads at QUORUM (0-100)"},
    {"auto_bootstrap", K_ENUM, MEMBER(auto_bootstrap), "on", "on|off", false,
     "A node joining through seeds streams the ranges it will own before it "
     "serves them; off: it joins at once, empty (only for a brand-new cluster)"},
    {"replace_node", K_STR, MEMBER(replace_node), "", NULL, false,
     "Name or node id of a dead node whose tokens this new node takes over, "
     "streaming their data from the surviving replicas"},
    {"ring_delay_ms", K_MS, MEMBER(ring_delay_ms), "5000", NULL, false,
     "Wait after announcing a ring change before streaming, so that every "
     "coordinator has heard of it and sends writes to the new replicas"},
    {"stream_bytes_per_sec", K_SIZE, MEMBER(stream_bytes_per_sec), "32MiB",
     NULL, false, "Rate at which this node sends ranges to others during "
     "ring changes (at least 64KiB)"},
    {"repair_interval_ms", K_MS, MEMBER(repair_interval_ms), "0", NULL, false,
     "Repair this node's primary ranges in the background this often (0: only "
     "when `cairn repair` asks); keep it below gc_grace_seconds"},
    {"repair_bytes_per_sec", K_SIZE, MEMBER(repair_bytes_per_sec), "32MiB", NULL,
     false, "Rate at which repair reads this node's data to build Merkle trees"},
    {"memtable_bytes", K_SIZE, MEMBER(memtable_bytes), "64MiB", NULL, false,
     "Memtable size that triggers a flush"},
    {"cache_bytes", K_SIZE, MEMBER(cache_bytes), "32MiB", NULL, false,
     "Block cache capacity; 0 = no cache"},
    {"gc_grace_seconds", K_COUNT, MEMBER(gc_grace_seconds), "864000", NULL,
     false, "Seconds a tombstone is kept before compaction may drop it"},
    {"log_level", K_ENUM, MEMBER(log_level), "info",
     "error|warn|info|debug|trace", false, "Least severe log level written"},
    {"client_tls", K_ENUM, MEMBER(client_tls), "off", "off|on|optional", false,
     "TLS on the client port: on = TLS only, optional = TLS and plain clients "
     "both (told apart by their first byte)"},
    {"peer_tls", K_ENUM, MEMBER(peer_tls), "off", "off|on", false,
     "Mutual TLS between nodes (peer links, push-pull, streaming): each node "
     "presents tls_cert_file and accepts only certificates from tls_ca_file"},
    {"tls_ca_file", K_STR, MEMBER(tls_ca_file), "", NULL, false,
     "The cluster's CA certificate (PEM): peers' and clients' certificates "
     "must be signed by it"},
    {"tls_cert_file", K_STR, MEMBER(tls_cert_file), "", NULL, false,
     "This node's certificate (PEM, chain allowed); its common name is the "
     "node_name"},
    {"tls_key_file", K_STR, MEMBER(tls_key_file), "", NULL, false,
     "The private key of tls_cert_file (PEM)"},
    {"client_auth", K_ENUM, MEMBER(client_auth), "off", "off|on", false,
     "Require clients to authenticate (password in HELLO, or a client "
     "certificate) as a user of users_file"},
    {"users_file", K_STR, MEMBER(users_file), "", NULL, false,
     "Users and roles, one name:role:hash line each (cairn user add); "
     "re-read when it changes"},
    {"cluster_secret", K_STR, MEMBER(cluster_secret), "", NULL, false,
     "Shared secret of the cluster: gossip datagrams carry an HMAC keyed from "
     "it; others are dropped. Prefer cluster_secret_file"},
    {"cluster_secret_file", K_STR, MEMBER(cluster_secret_file), "", NULL, false,
     "File holding the cluster secret (surrounding whitespace ignored)"},
    {"gossip_replay_window_ms", K_MS, MEMBER(gossip_replay_window_ms), "30000",
     NULL, false, "With a cluster secret: datagrams stamped further than this "
     "from local time, or seen before, are dropped"},
};

#define NSETTINGS KV_ARRAY_LEN(SETTINGS)

/* The longest derived name ("--" or "CAIRN_" + name) fits easily. */
#define NAME_MAX_ 64

static void flag_name(const setting_t *s, char *buf)
{
    size_t n = 0;
    buf[n++] = '-';
    buf[n++] = '-';
    for (const char *p = s->name; *p && n < NAME_MAX_ - 1; p++)
        buf[n++] = *p == '_' ? '-' : *p;
    buf[n] = 0;
}

static void env_name(const setting_t *s, char *buf)
{
    size_t n = 0;
    memcpy(buf, "CAIRN_", 6);
    n = 6;
    for (const char *p = s->name; *p && n < NAME_MAX_ - 1; p++)
        buf[n++] = (char)toupper((unsigned char)*p);
    buf[n] = 0;
}

static const setting_t *setting_find(const char *name, size_t len)
{
    for (size_t i = 0; i < NSETTINGS; i++)
        if (strlen(SETTINGS[i].name) == len &&
            memcmp(SETTINGS[i].name, name, len) == 0)
            return &SETTINGS[i];
    return NULL;
}

static char **str_slot(node_config_t *c, const setting_t *s)
{
    return (char **)(void *)((char *)c + s->off);
}

static char *const *str_cslot(const node_config_t *c, const setting_t *s)
{
    return (char *const *)(const void *)((const char *)c + s->off);
}

static void uint_store(node_config_t *c, const setting_t *s, uint64_t v)
{
    void *p = (char *)c + s->off;
    switch (s->width) {
    case 2: { uint16_t x = (uint16_t)v; memcpy(p, &x, 2); break; }
    case 4: { uint32_t x = (uint32_t)v; memcpy(p, &x, 4); break; }
    case 8: memcpy(p, &v, 8); break;
    default: kv_assert(!"bad setting width");
    }
}

static uint64_t uint_load(const node_config_t *c, const setting_t *s)
{
    const void *p = (const char *)c + s->off;
    switch (s->width) {
    case 2: { uint16_t x; memcpy(&x, p, 2); return x; }
    case 4: { uint32_t x; memcpy(&x, p, 4); return x; }
    case 8: { uint64_t x; memcpy(&x, p, 8); return x; }
    default: kv_assert(!"bad setting width");
    }
    return 0;
}

static uint64_t width_max(size_t width)
{
    return width >= 8 ? UINT64_MAX : (UINT64_C(1) << (8 * width)) - 1;
}

static void str_set(char **slot, const char *v)
{
    char *copy = kv_strdup(v);
    kv_free(*slot);
    *slot = copy;
}

/* ---- value parsing ------------------------------------------------------ */

/* Digits only, the whole of [s, s+n), no overflow. */
bool node_config_parse_digits(const char *s, size_t n, uint64_t *out)
{
    if (n == 0) return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10) return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

typedef enum { NUM_OK, NUM_BAD, NUM_RANGE } num_rc_t;

static num_rc_t parse_size(const char *s, uint64_t *out)
{
    size_t n = 0;
    while (s[n] >= '0' && s[n] <= '9') n++;
    uint64_t v;
    if (n == 0) return NUM_BAD;
    if (!node_config_parse_digits(s, n, &v)) return NUM_RANGE;
    const char *suf = s + n;
    while (*suf == ' ') suf++;
    static const struct { const char *s; unsigned shift; } SUFFIXES[] = {
        {"", 0}, {"b", 0}, {"k", 10}, {"kib", 10}, {"m", 20}, {"mib", 20},
        {"g", 30}, {"gib", 30}, {"t", 40}, {"tib", 40},
    };
    for (size_t i = 0; i < KV_ARRAY_LEN(SUFFIXES); i++) {
        if (strcasecmp(suf, SUFFIXES[i].s) != 0) continue;
        if (*suf == 0 && suf != s + n) return NUM_BAD; /* trailing spaces */
        unsigned sh = SUFFIXES[i].shift;
        if (sh && v > (UINT64_MAX >> sh)) return NUM_RANGE;
        *out = v << sh;
        return NUM_OK;
    }
    return NUM_BAD;
}

/* Parse TEXT into setting S of C. SRC names where it came from. */
static kv_status_t setting_parse(node_config_t *c, const setting_t *s,
                                 const char *text, const char *src)
{
    uint64_t v = 0;
    num_rc_t nrc = NUM_OK;
    switch (s->kind) {
    case K_STR:
        str_set(str_slot(c, s), text);
        return KV_OK;
    case K_ENUM: {
        size_t tl = strlen(text);
        for (const char *p = s->choices; tl > 0;) {
            const char *bar = strchr(p, '|');
            size_t cl = bar ? (size_t)(bar - p) : strlen(p);
            if (cl == tl && memcmp(p, text, tl) == 0) {
                str_set(str_slot(c, s), text);
                return KV_OK;
            }
            if (!bar) break;
            p = bar + 1;
        }
        kv_errmsg_set("%s: '%.64s' is not one of %s (from %s)", s->name, text,
                      s->choices, src);
        return KV_INVALID;
    }
    case K_PORT:
        if (!node_config_parse_digits(text, strlen(text), &v) || v == 0 || v > 65535) {
            kv_errmsg_set("%s: '%.64s' is not a port number (from %s)",
                          s->name, text, src);
            return KV_INVALID;
        }
        break;
    case K_COUNT:
    case K_MS:
        if (!node_config_parse_digits(text, strlen(text), &v)) {
            size_t n = strspn(text, "0123456789");
            nrc = n > 0 && text[n] == 0 ? NUM_RANGE : NUM_BAD;
        }
        if (nrc == NUM_BAD) {
            kv_errmsg_set(s->kind == K_MS
                              ? "%s: '%.64s' is not a duration in whole "
                                "milliseconds (from %s)"
                              : "%s: '%.64s' is not a number (from %s)",
                          s->name, text, src);
            return KV_INVALID;
        }
        break;
    case K_SIZE:
        nrc = parse_size(text, &v);
        if (nrc == NUM_BAD) {
            kv_errmsg_set("%s: '%.64s' is not a size (bytes, or a number with "
                          "a KiB/MiB/GiB suffix) (from %s)",
                          s->name, text, src);
            return KV_INVALID;
        }
        break;
    }
    if (nrc == NUM_RANGE || v > width_max(s->width)) {
        kv_errmsg_set("%s: '%.64s' is too large (at most %" PRIu64
                      ") (from %s)",
                      s->name, text, width_max(s->width), src);
        return KV_INVALID;
    }
    uint_store(c, s, v);
    return KV_OK;
}

static void default_apply(node_config_t *c, const setting_t *s)
{
    if (!s->def) { /* node_name: the host name */
        char host[256];
        if (gethostname(host, sizeof host) != 0 || host[0] == 0)
            snprintf(host, sizeof host, "localhost");
        host[sizeof host - 1] = 0;
        str_set(str_slot(c, s), host);
        return;
    }
    kv_status_t rc = setting_parse(c, s, s->def, "default");
    kv_assert(rc == KV_OK);
}

/* The value as the file and --help write it (sizes with a suffix when
 * exact, so 16MiB reads as such). */
static void value_format(const node_config_t *c, const setting_t *s,
                         char *buf, size_t cap)
{
    if (s->kind == K_STR || s->kind == K_ENUM) {
        const char *v = *str_cslot(c, s);
        snprintf(buf, cap, "%s", v ? v : "");
        return;
    }
    uint64_t v = uint_load(c, s);
    if (s->kind == K_SIZE && v != 0) {
        static const char *UNITS[] = {"TiB", "GiB", "MiB", "KiB"};
        static const unsigned SHIFTS[] = {40, 30, 20, 10};
        for (size_t i = 0; i < 4; i++) {
            if ((v & ((UINT64_C(1) << SHIFTS[i]) - 1)) == 0) {
                snprintf(buf, cap, "%" PRIu64 "%s", v >> SHIFTS[i], UNITS[i]);
                return;
            }
        }
    }
    snprintf(buf, cap, "%" PRIu64, v);
}

/* ---- did you mean ------------------------------------------------------- */

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63) return SIZE_MAX;
    size_t row[64];
    for (size_t j = 0; j <= lb; j++) row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            best = KV_MIN(best, up + 1);
            best = KV_MIN(best, row[j - 1] + 1);
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* The setting whose name is closest to NAME (snake case), if close. */
static const setting_t *setting_guess(const char *name)
{
    const setting_t *best = NULL;
    size_t bestd = SIZE_MAX;
    for (size_t i = 0; i < NSETTINGS; i++) {
        size_t d = edit_distance(name, SETTINGS[i].name);
        if (d < bestd) {
            bestd = d;
            best = &SETTINGS[i];
        }
    }
    return bestd <= 2 || (best && bestd <= strlen(best->name) / 4) ? best
                                                                   : NULL;
}

/* Lower-case NAME[0, len) and map '-' to '_' into buf, for guessing. */
static void normalise(const char *name, size_t len, char *buf, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < len && n + 1 < cap; i++)
        buf[n++] = name[i] == '-' ? '_' : (char)tolower((unsigned char)name[i]);
    buf[n] = 0;
}

/* ---- the YAML file ------------------------------------------------------ */

typedef struct yfile {
    yaml_parser_t parser;
    const char *path;
    node_config_t *c;
    unsigned seen_line[NSETTINGS]; /* line of the key; 0 = not yet */
} yfile_t;

static kv_status_t yaml_next(yfile_t *y, yaml_event_t *ev)
{
    if (yaml_parser_parse(&y->parser, ev)) return KV_OK;
    const yaml_parser_t *p = &y->parser;
    const char *problem = p->problem ? p->problem : "malformed YAML";
    if (p->error == YAML_READER_ERROR) /* no line yet: a byte offset */
        kv_errmsg_set("%s: YAML error at byte %zu: %s", y->path,
                      p->problem_offset, problem);
    else if (p->context)
        kv_errmsg_set("%s: YAML error at line %zu column %zu: %s %s (line "
                      "%zu)",
                      y->path, p->problem_mark.line + 1,
                      p->problem_mark.column + 1, problem, p->context,
                      p->context_mark.line + 1);
    else
        kv_errmsg_set("%s: YAML error at line %zu column %zu: %s", y->path,
                      p->problem_mark.line + 1, p->problem_mark.column + 1,
                      problem);
    return KV_INVALID;
}

static const char *scalar_text(const yaml_event_t *ev)
{
    const char *v = (const char *)ev->data.scalar.value;
    /* A plain null (key:  /  key: ~  /  key: null) is the empty string. */
    if (ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
        (!strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") ||
         !strcmp(v, "NULL")))
        return "";
    return v;
}

static const char *event_what(yaml_event_type_t t)
{
    switch (t) {
    case YAML_SEQUENCE_START_EVENT: return "a list";
    case YAML_MAPPING_START_EVENT: return "a mapping";
    case YAML_ALIAS_EVENT: return "an alias";
    default: return "not a single value";
    }
}

/* The value of setting S, starting with event EV (owned by the caller). */
static kv_status_t yaml_value(yfile_t *y, const setting_t *s, yaml_event_t *ev)
{
    char src[PATH_MAX + 32];
    unsigned line = (unsigned)ev->start_mark.line + 1;
    snprintf(src, sizeof src, "%s line %u", y->path, line);
    if (ev->type == YAML_SCALAR_EVENT)
        return setting_parse(y->c, s, scalar_text(ev), src);
    if (ev->type != YAML_SEQUENCE_START_EVENT || !s->list) {
        kv_errmsg_set("%s: the value must be a single value, not %s (from %s)",
                      s->name, event_what(ev->type), src);
        return KV_INVALID;
    }
    kv_buf_t joined = {0};
    kv_status_t rc;
    for (;;) {
        yaml_event_t item;
        KV_ERR(rc = yaml_next(y, &item));
        if (item.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&item);
            break;
        }
        if (item.type != YAML_SCALAR_EVENT) {
            kv_errmsg_set("%s: list items must be single values, not %s (from "
                          "%s line %zu)",
                          s->name, event_what(item.type), y->path,
                          item.start_mark.line + 1);
            yaml_event_delete(&item);
            rc = KV_INVALID;
            goto err;
        }
        if (joined.len) kv_buf_append_u8(&joined, ',');
        const char *t = scalar_text(&item);
        kv_buf_append(&joined, t, strlen(t));
        yaml_event_delete(&item);
    }
    kv_buf_append_u8(&joined, 0);
    rc = setting_parse(y->c, s, (const char *)joined.data, src);
err:
    kv_buf_deinit(&joined);
    return rc;
}

static kv_status_t yaml_mapping(yfile_t *y)
{
    kv_status_t rc = KV_OK;
    yaml_event_t key, val;
    for (;;) {
        KV_RET(yaml_next(y, &key));
        if (key.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&key);
            return KV_OK;
        }
        unsigned line = (unsigned)key.start_mark.line + 1;
        if (key.type != YAML_SCALAR_EVENT) {
            kv_errmsg_set("%s line %u: keys must be setting names, not %s",
                          y->path, line, event_what(key.type));
            yaml_event_delete(&key);
            return KV_INVALID;
        }
        const char *name = (const char *)key.data.scalar.value;
        const setting_t *s = setting_find(name, key.data.scalar.length);
        if (!s) {
            char norm[NAME_MAX_];
            normalise(name, key.data.scalar.length, norm, sizeof norm);
            const setting_t *g = setting_guess(norm);
            kv_errmsg_set("unknown key '%.64s' (from %s line %u)%s%s%s", name,
                          y->path, line, g ? "; did you mean " : "",
                          g ? g->name : "", g ? "?" : "");
            yaml_event_delete(&key);
            return KV_INVALID;
        }
        yaml_event_delete(&key);
        size_t idx = (size_t)(s - SETTINGS);
        if (y->seen_line[idx]) {
            kv_errmsg_set("%s: duplicate key (from %s line %u; first at line "
                          "%u)",
                          s->name, y->path, line, y->seen_line[idx]);
            return KV_INVALID;
        }
        y->seen_line[idx] = line;
        KV_RET(yaml_next(y, &val));
        rc = yaml_value(y, s, &val);
        yaml_event_delete(&val);
        KV_RET(rc);
    }
}

static kv_status_t yaml_expect(yfile_t *y, yaml_event_type_t want,
                               yaml_event_type_t *got)
{
    yaml_event_t ev;
    KV_RET(yaml_next(y, &ev));
    *got = ev.type;
    unsigned line = (unsigned)ev.start_mark.line + 1;
    bool empty_doc = ev.type == YAML_SCALAR_EVENT &&
                     ev.data.scalar.length == 0 &&
                     ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    yaml_event_delete(&ev);
    if (*got == want || (want == YAML_MAPPING_START_EVENT && empty_doc))
        return KV_OK;
    if (want == YAML_MAPPING_START_EVENT)
        kv_errmsg_set("%s line %u: the file must be a mapping of setting: "
                      "value lines",
                      y->path, line);
    else if (*got == YAML_DOCUMENT_START_EVENT)
        kv_errmsg_set("%s line %u: only one YAML document is allowed",
                      y->path, line);
    else
        kv_errmsg_set("%s line %u: unexpected YAML content", y->path, line);
    return KV_INVALID;
}

/* Parse one YAML document (from f, or from buf when f is NULL) into c.
 * path names the source in messages. */
static kv_status_t yaml_parse(node_config_t *c, const char *path, FILE *f,
                              const unsigned char *buf, size_t len)
{
    yfile_t *y = kv_calloc(1, sizeof *y);
    y->path = path;
    y->c = c;
    kv_status_t rc = KV_OK;
    if (!yaml_parser_initialize(&y->parser)) {
        kv_errmsg_set("%s: cannot start the YAML parser", path);
        kv_free(y);
        return KV_NOMEM;
    }
    if (f) yaml_parser_set_input_file(&y->parser, f);
    else yaml_parser_set_input_string(&y->parser, buf, len);

    yaml_event_type_t got;
    KV_ERR(rc = yaml_expect(y, YAML_STREAM_START_EVENT, &got));
    yaml_event_t ev;
    KV_ERR(rc = yaml_next(y, &ev));
    got = ev.type;
    yaml_event_delete(&ev);
    if (got == YAML_STREAM_END_EVENT) goto err; /* empty file: rc == KV_OK */
    KV_ERR(rc = yaml_expect(y, YAML_MAPPING_START_EVENT, &got));
    if (got == YAML_MAPPING_START_EVENT) KV_ERR(rc = yaml_mapping(y));
    KV_ERR(rc = yaml_expect(y, YAML_DOCUMENT_END_EVENT, &got));
    KV_ERR(rc = yaml_expect(y, YAML_STREAM_END_EVENT, &got));
err:
    yaml_parser_delete(&y->parser);
    kv_free(y);
    return rc;
}

static kv_status_t file_load(node_config_t *c, const char *path,
                             const char *path_src)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (!f || fstat(fileno(f), &st) != 0 || S_ISDIR(st.st_mode)) {
        int e = !f ? errno : S_ISDIR(st.st_mode) ? EISDIR : errno;
        if (f) fclose(f);
        kv_errmsg_set("config: cannot read '%s': %s (from %s)", path,
                      strerror(e), path_src);
        return e == ENOENT ? KV_NOTFOUND : KV_IO;
    }
    kv_status_t rc = yaml_parse(c, path, f, NULL, 0);
    fclose(f);
    return rc;
}

kv_status_t node_config_load_yaml(node_config_t *c, const void *data, size_t len,
                                  const char *name)
{
    node_config_t scratch;
    node_config_init(&scratch);
    kv_status_t rc = yaml_parse(&scratch, name, NULL, data, len);
    if (rc == KV_OK) rc = node_config_validate(&scratch);
    if (rc != KV_OK) {
        node_config_deinit(&scratch);
        return rc;
    }
    node_config_deinit(c);
    *c = scratch;
    return KV_OK;
}

/* ---- argv and envp ------------------------------------------------------ */

/* One flag value, applied after the file and the environment. */
typedef struct flag_val {
    const setting_t *s;
    const char *value;
} flag_val_t;

static bool is_word(const char *name, size_t len, const char *want)
{
    return strlen(want) == len && memcmp(name, want, len) == 0;
}

/* Is ENTRY (NAME=value, after "CAIRN_") one the test harness or the cairn
 * tool owns? (CAIRN_HOST, the tool's contact points, is often exported in
 * the shell that starts a node, or set in a container for `cairn` there.) */
static bool env_ignored(const char *name, size_t len)
{
    return (len >= 5 && memcmp(name, "TEST_", 5) == 0) ||
           is_word(name, len, "HOST") ||
           /* the cairn tool's TLS and login settings (CAIRN_TLS_CA_FILE and
            * the other *_FILE ones are cairnd settings too, same meaning) */
           is_word(name, len, "TLS") || is_word(name, len, "TLS_NO_VERIFY_HOST") ||
           is_word(name, len, "USER") || is_word(name, len, "PASSWORD") ||
           is_word(name, len, "PASSWORD_FILE") || is_word(name, len, "PASSWORD_ITERATIONS") ||
           is_word(name, len, "CRASH_ROUNDS") ||
           is_word(name, len, "MODEL_STEPS");
}

static kv_status_t env_scan(char **envp, const char **vals,
                            const char **config_path)
{
    for (char **e = envp; e && *e; e++) {
        const char *entry = *e;
        if (strncmp(entry, "CAIRN_", 6) != 0) continue;
        const char *eq = strchr(entry, '=');
        if (!eq) continue;
        const char *name = entry + 6;
        size_t len = (size_t)(eq - name);
        if (is_word(name, len, "CONFIG")) {
            *config_path = eq + 1;
            continue;
        }
        if (env_ignored(name, len)) continue;
        char lower[NAME_MAX_];
        normalise(name, len, lower, sizeof lower);
        bool upper = true;
        for (size_t i = 0; i < len; i++)
            if (islower((unsigned char)name[i]) || name[i] == '-') upper = false;
        const setting_t *s =
            upper && len < NAME_MAX_ ? setting_find(lower, len) : NULL;
        if (!s) {
            const setting_t *g = setting_guess(lower);
            char gname[NAME_MAX_] = "";
            if (g) env_name(g, gname);
            kv_errmsg_set("unknown environment variable CAIRN_%.*s%s%s%s",
                          (int)KV_MIN(len, 64), name,
                          g ? "; did you mean " : "", gname, g ? "?" : "");
            return KV_INVALID;
        }
        vals[s - SETTINGS] = eq + 1;
    }
    return KV_OK;
}

typedef struct argv_scan {
    flag_val_t *flags;
    size_t nflags;
    const char *config_path;
    bool help, version, print;
} argv_scan_t;

static kv_status_t argv_scan(int argc, char **argv, argv_scan_t *a)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "-h")) {
            a->help = true;
            continue;
        }
        if (arg[0] != '-' || arg[1] != '-' || arg[2] == 0) {
            if (arg[0] == '-' && arg[1] != 0 && arg[1] != '-')
                kv_errmsg_set("unknown flag %.64s (see --help)", arg);
            else
                kv_errmsg_set("unexpected argument '%.64s': cairnd takes only "
                              "flags (see --help)",
                              arg);
            return KV_INVALID;
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        bool *action = is_word(name, len, "help")           ? &a->help
                       : is_word(name, len, "version")      ? &a->version
                       : is_word(name, len, "print-config") ? &a->print
                                                              : NULL;
        if (action) {
            if (eq) {
                kv_errmsg_set("--%.*s takes no value", (int)len, name);
                return KV_INVALID;
            }
            *action = true;
            continue;
        }
        const setting_t *s = NULL;
        bool config = is_word(name, len, "config");
        if (!config) {
            char snake[NAME_MAX_];
            normalise(name, len, snake, sizeof snake);
            bool kebab = len < NAME_MAX_ && !memchr(name, '_', len);
            for (size_t k = 0; k < len && kebab; k++)
                if (isupper((unsigned char)name[k])) kebab = false;
            s = kebab ? setting_find(snake, len) : NULL;
            if (!s) {
                const setting_t *g = setting_guess(snake);
                char gname[NAME_MAX_] = "";
                if (g) flag_name(g, gname);
                kv_errmsg_set("unknown flag --%.*s%s%s%s", (int)KV_MIN(len, 64),
                              name, g ? "; did you mean " : "", gname,
                              g ? "?" : "");
                return KV_INVALID;
            }
        }
        const char *value;
        if (eq) {
            value = eq + 1;
        } else if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) {
            value = argv[++i];
        } else {
            kv_errmsg_set("%s: --%.*s needs a value%s%.64s%s",
                          config ? "config" : s->name, (int)len, name,
                          i + 1 < argc ? " (got " : "",
                          i + 1 < argc ? argv[i + 1] : "",
                          i + 1 < argc ? ")" : "");
            return KV_INVALID;
        }
        if (config) {
            if (!*value) {
                kv_errmsg_set("config: --config needs a file name");
                return KV_INVALID;
            }
            a->config_path = value;
        } else {
            a->flags[a->nflags].s = s;
            a->flags[a->nflags].value = value;
            a->nflags++;
        }
    }
    return KV_OK;
}

/* ---- public ------------------------------------------------------------- */

void node_config_init(node_config_t *c)
{
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < NSETTINGS; i++) default_apply(c, &SETTINGS[i]);
}

void node_config_deinit(node_config_t *c)
{
    for (size_t i = 0; i < NSETTINGS; i++) {
        const setting_t *s = &SETTINGS[i];
        if (s->kind == K_STR || s->kind == K_ENUM) {
            kv_free(*str_slot(c, s));
            *str_slot(c, s) = NULL;
        }
    }
}

static kv_status_t config_build(node_config_t *c, int argc, char **argv,
                                char **envp, node_action_t *action)
{
    kv_status_t rc;
    argv_scan_t a = {0};
    const char *env_vals[NSETTINGS] = {0};
    const char *env_config = NULL;
    a.flags = kv_calloc(argc > 0 ? (size_t)argc : 1, sizeof *a.flags);

    KV_ERR(rc = argv_scan(argc, argv, &a));
    *action = a.help      ? NODE_HELP
              : a.version ? NODE_VERSION
              : a.print   ? NODE_PRINT_CONFIG
                          : NODE_RUN;
    if (a.help || a.version) goto err; /* rc == KV_OK: defaults only */
    KV_ERR(rc = env_scan(envp, env_vals, &env_config));

    if (a.config_path)
        KV_ERR(rc = file_load(c, a.config_path, "--config"));
    else if (env_config && *env_config)
        KV_ERR(rc = file_load(c, env_config, "CAIRN_CONFIG"));

    for (size_t i = 0; i < NSETTINGS; i++) {
        if (!env_vals[i]) continue;
        char src[NAME_MAX_];
        env_name(&SETTINGS[i], src);
        KV_ERR(rc = setting_parse(c, &SETTINGS[i], env_vals[i], src));
    }
    for (size_t i = 0; i < a.nflags; i++) {
        char src[NAME_MAX_];
        flag_name(a.flags[i].s, src);
        KV_ERR(rc = setting_parse(c, a.flags[i].s, a.flags[i].value, src));
    }
    if (*action == NODE_RUN) KV_ERR(rc = node_config_validate(c));
err:
    kv_free(a.flags);
    return rc;
}

kv_status_t node_config_load(node_config_t *c, int argc, char **argv,
                             char **envp, node_action_t *action)
{
    node_config_t scratch;
    node_action_t act = NODE_RUN;
    node_config_init(&scratch);
    kv_status_t rc = config_build(&scratch, argc, argv, envp, &act);
    if (rc != KV_OK) {
        node_config_deinit(&scratch);
        return rc;
    }
    node_config_deinit(c);
    *c = scratch;
    *action = act;
    return KV_OK;
}

/* ---- output ------------------------------------------------------------- */

static const char *placeholder(const setting_t *s)
{
    switch (s->kind) {
    case K_STR: return "STRING";
    case K_ENUM: return "CHOICE";
    case K_PORT: return "PORT";
    case K_COUNT: return "N";
    case K_SIZE: return "BYTES";
    case K_MS: return "MS";
    }
    return "VALUE";
}

void node_config_print_help(FILE *out)
{
    char flag[NAME_MAX_ * 2], env[NAME_MAX_];
    int wflag = (int)strlen("--config PATH"), wenv = (int)strlen("CAIRN_CONFIG");
    for (size_t i = 0; i < NSETTINGS; i++) {
        char f[NAME_MAX_];
        flag_name(&SETTINGS[i], f);
        int n = snprintf(flag, sizeof flag, "%s %s", f, placeholder(&SETTINGS[i]));
        env_name(&SETTINGS[i], env);
        wflag = KV_MAX(wflag, n);
        wenv = KV_MAX(wenv, (int)strlen(env));
    }
    fprintf(out,
            "Usage: cairnd [--config PATH] [--SETTING VALUE | --SETTING=VALUE]...\n"
            "       cairnd --print-config [...] | --help | --version\n"
            "\n"
            "Each setting is a YAML key in the config file, a flag and an\n"
            "environment variable. Precedence: flag > environment > file >\n"
            "default. Unknown keys, flags and CAIRN_* variables are errors.\n"
            "Sizes are bytes or a number with a KiB/MiB/GiB/TiB suffix (k/m/g/t\n"
            "mean the same binary multiples). Durations (*_ms) are whole\n"
            "milliseconds.\n"
            "\n"
            "Options:\n");
    fprintf(out, "  %-*s  %-*s  YAML file of setting: value lines\n", wflag,
            "--config PATH", wenv, "CAIRN_CONFIG");
    fprintf(out, "  %-*s  %-*s  print the effective configuration as YAML\n",
            wflag, "--print-config", wenv, "");
    fprintf(out, "  %-*s  %-*s  print this help\n", wflag, "--help, -h", wenv,
            "");
    fprintf(out, "  %-*s  %-*s  print the version\n", wflag, "--version", wenv,
            "");
    fprintf(out, "\nSettings:\n");
    for (size_t i = 0; i < NSETTINGS; i++) {
        const setting_t *s = &SETTINGS[i];
        char f[NAME_MAX_], def[128];
        flag_name(s, f);
        snprintf(flag, sizeof flag, "%s %s", f, placeholder(s));
        env_name(s, env);
        if (!s->def) {
            snprintf(def, sizeof def, "(the host name)");
        } else if (s->kind == K_STR || s->kind == K_ENUM) {
            snprintf(def, sizeof def, "\"%s\"", s->def);
        } else {
            snprintf(def, sizeof def, "%s", s->def);
        }
        fprintf(out, "  %-*s  %-*s  default %s\n      %s%s%s\n", wflag, flag,
                wenv, env, def, s->help, s->choices ? "; one of " : "",
                s->choices ? s->choices : "");
    }
}

static void yaml_quote(FILE *out, const char *v)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)(v ? v : ""); *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(out, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f) fprintf(out, "\\x%02x", *p);
        else fputc(*p, out);
    }
    fputc('"', out);
}

void node_config_print(const node_config_t *c, FILE *out)
{
    fprintf(out, "# cairnd configuration (effective values)\n");
    for (size_t i = 0; i < NSETTINGS; i++) {
        const setting_t *s = &SETTINGS[i];
        if (s->kind == K_STR && !strcmp(s->name, "cluster_secret") &&
            **str_cslot(c, s)) {
            /* never printed, nor replaced by a placeholder that would load
             * as a wrong secret: the line stays a comment */
            fprintf(out, "# cluster_secret: set, not printed (keep it in "
                         "cluster_secret_file)\n");
            continue;
        }
        fprintf(out, "%s: ", s->name);
        if (s->kind == K_STR || s->kind == K_ENUM) {
            yaml_quote(out, *str_cslot(c, s));
        } else {
            char buf[64];
            value_format(c, s, buf, sizeof buf);
            fputs(buf, out);
        }
        fputc('\n', out);
    }
}
