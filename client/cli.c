/* cli.c -- `cairn`, the command-line client.
 *
 * DESIGN  A thin shell over libcairn's public API (cairn.h): parse the
 *         options, connect, run one command, map the outcome to an exit
 *         code. One command does not use the client protocol: `ready` asks
 *         a node's admin port for /ready over plain HTTP, so a container
 *         health check needs no other program (curl) in the image. Values travel as raw bytes both ways (stdin for `put KEY -`,
 *         stdout for `get`), so the tool is usable in pipelines with binary
 *         data; a newline is added after a value only when stdout is a
 *         terminal.
 *
 *         Exit codes: 0 success, 1 key not found (get), 2 any error, with
 *         "cairn: <StatusName>: <detail>" on stderr.
 *
 *         The cluster views (ring, endpoints, status) print tables meant
 *         for people and scripts alike: one node per line, columns aligned
 *         and separated by at least two spaces, no value containing a space
 *         (an empty rack prints as "-", loads as "1.50KiB"), so `awk` splits
 *         every row into the same fields. Nodes are listed by name, so the
 *         output does not depend on which node answered.
 *
 *         `status` follows nodetool: rows start with two letters, U/D (up
 *         at the answering node) then N/J/L (the node's announced status:
 *         normal, joining, leaving), so `grep '^UN'` finds the healthy
 *         members. A node that has LEFT is not a row (it owns nothing and
 *         will not come back under that identity) but is named in a
 *         footnote, so it is not silently hidden either. `ring` lists only
 *         nodes that own ranges (in_ring) and names the others below.
 * THREADING  Single-threaded (libcairn runs its own I/O thread).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sys/stat.h>
#include <termios.h>

#include "cairn.h"
#include "passwd.h"

#define EXIT_NOTFOUND 1
#define EXIT_ERROR 2
#define EXIT_NOT_READY 1 /* ready: the node is not ready or not reachable */

static void usage(FILE *out)
{
    fprintf(out,
"usage: cairn [options] COMMAND [ARGS]\n"
"\n"
"Commands:\n"
"  get KEY          print the value of KEY (raw bytes; a newline is added only\n"
"                   when stdout is a terminal)\n"
"  put KEY VALUE    store VALUE under KEY\n"
"  put KEY -        store the bytes read from stdin (binary-safe)\n"
"  del KEY          delete KEY\n"
"  info             the node's INFO items, one \"name: value\" per line\n"
"  ping [N]         N (default 5) null requests to the node, one after the\n"
"                   other: the round trip of each, then min/median/max\n"
"  status           the cluster as the node sees it, one row per member:\n"
"                   state (U/D = up/down, then N/J/L = normal/joining/\n"
"                   leaving: UN, DN, UJ ...), name, address, load, tokens,\n"
"                   effective ownership (? while not in the ring), host id,\n"
"                   rack, and liveness when not plainly alive (suspect,\n"
"                   dead, phi=N.N); nodes that left are named below\n"
"  ring             the nodes that own ranges (name, address, rack, UP/DOWN,\n"
"                   load, owns, effective ownership, tokens; * marks the\n"
"                   node that answered), the members not in the ring, then\n"
"                   every token and its node, ascending\n"
"  endpoints KEY    the token of KEY and its replicas, primary first\n"
"  local-get KEY    debugging: the cell the node itself stores for KEY, read\n"
"                   from its own engine without coordination or repair (use\n"
"                   one -H host to pick the node): value or tombstone, HLC\n"
"                   timestamp, expiry, then the value's raw bytes; exit 1\n"
"                   when the node stores nothing for KEY\n"
"  hints            hinted handoff across the cluster: asks every reachable\n"
"                   node what it holds for whom (holder, target, hints,\n"
"                   bytes, age of the oldest), then each node's totals:\n"
"                   pending, written, delivered, expired (older than\n"
"                   max_hint_window_ms: not delivered), past-window (not\n"
"                   written: the target was down longer than the window),\n"
"                   refused (no space), dropped (target left), corrupt\n"
"  ready [HOST[:PORT]]\n"
"                   ask a node's admin port whether it is ready (HTTP GET\n"
"                   /ready; default 127.0.0.1, port $CAIRN_ADMIN_PORT or\n"
"                   7072): exit 0 and print \"ready\" when it answers 200;\n"
"                   exit 1 when it is not ready (starting, joining,\n"
"                   draining ...) or cannot be reached. Made for container\n"
"                   health checks; -t bounds the wait\n"
"  user add FILE NAME ROLE [--cert-only]\n"
"                   add or replace a user in a users file (cairnd's\n"
"                   users_file); ROLE is read (GET, INFO, RING, LOCAL_GET), readwrite\n"
"                   (and PUT, DELETE) or admin (and decommission, removenode,\n"
"                   cleanup, repair). The password comes from\n"
"                   $CAIRN_PASSWORD, --password-file, the terminal (asked\n"
"                   twice) or the first line of stdin; it is stored as a\n"
"                   salted PBKDF2 hash. --cert-only: no password, the user\n"
"                   logs in with a client certificate whose common name is\n"
"                   NAME. Nodes read the file again by themselves\n"
"  user del FILE NAME | user list FILE\n"
"                   remove a user; list users and roles\n"
"  decommission     stream the connected node's ranges to the nodes that\n"
"                   inherit them, then take it out of the ring; follows the\n"
"                   progress until done (Ctrl-C stops watching, not the work)\n"
"  removenode NODE  for a dead node that will not return (name or host id):\n"
"                   the connected node has its ranges copied from the\n"
"                   surviving replicas to their new owners, then removes it\n"
"  cleanup          drop, on the connected node, the data of ranges it no\n"
"                   longer replicates (run on each node after adding nodes)\n"
"  netstats         each node's ring change in progress and its streams, its\n"
"                   repair and the age of its least recently repaired range\n"
"  repair [primary] [range=START:END] [node=NAME]\n"
"                   anti-entropy repair of the ranges the connected node\n"
"                   replicates (primary: only those it is first replica of;\n"
"                   range: tokens; node: only with that replica): Merkle trees\n"
"                   are compared and what differs is copied both ways;\n"
"                   follows the progress until done\n"
"\n"
"Options:\n"
"  -H, --host HOST[:PORT][,HOST[:PORT]...]\n"
"                   contact points, tried in order (default $CAIRN_HOST, or\n"
"                   127.0.0.1:7070; the port defaults to 7070)\n"
"  -c, --consistency ONE|QUORUM|ALL\n"
"                   consistency level (default QUORUM)\n"
"  -t, --timeout MS request timeout in milliseconds (default 2000)\n"
"      --ttl MS     put: the value expires after MS milliseconds\n"
"      --cluster NAME\n"
"                   cluster name to expect (default \"cairn\")\n"
"      --tls        talk TLS to the node (its client_tls on or optional;\n"
"                   $CAIRN_TLS=on)\n"
"      --tls-ca FILE\n"
"                   the CA the node's certificate must be signed by (implies\n"
"                   --tls; $CAIRN_TLS_CA_FILE; default: the system's CAs)\n"
"      --tls-cert FILE, --tls-key FILE\n"
"                   a client certificate and key (implies --tls; log in as\n"
"                   the certificate's common name; $CAIRN_TLS_CERT_FILE,\n"
"                   $CAIRN_TLS_KEY_FILE)\n"
"      --tls-no-verify-host\n"
"                   do not match the host name or IP against the node's\n"
"                   certificate (the CA is still checked)\n"
"  -u, --user NAME  log in as NAME (nodes with client_auth on; $CAIRN_USER);\n"
"                   the password comes from $CAIRN_PASSWORD, --password-file\n"
"                   FILE ($CAIRN_PASSWORD_FILE) or the terminal\n"
"  -h, --help       this text\n"
"\n"
"Exit status: 0 success, 1 key not found (ready: not ready), 2 any other\n"
"error (the reason is printed as \"cairn: <Status>: <detail>\" on stderr). A\n"
"Timeout or ConnectionError on put/del means the write may or may not have\n"
"been applied.\n"
"\n"
"Examples:\n"
"  cairn put user:1 '{\"name\":\"ada\"}'\n"
"  cairn -c ONE get user:1\n"
"  tar c dir | cairn -H 10.0.0.1,10.0.0.2 put backup -\n"
"  cairn get backup | tar x\n"
"  cairn -H 10.0.0.1 status\n"
"  cairn endpoints user:1\n"
"  cairn ready 10.0.0.1:7072\n"
"  cairn -H 10.0.0.2 local-get user:1\n");
}

static int fail(cairn_status_t st, const char *detail)
{
    fprintf(stderr, "cairn: %s: %s\n", cairn_status_name(st),
            detail && *detail ? detail : "(no detail)");
    return st == CAIRN_NOT_FOUND ? EXIT_NOTFOUND : EXIT_ERROR;
}

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "cairn: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'cairn --help'.\n");
    return EXIT_ERROR;
}

static bool parse_u32(const char *s, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || v == 0 || v > UINT32_MAX || *s == '-') return false;
    *out = (uint32_t)v;
    return true;
}

static bool parse_cl(const char *s, cairn_consistency_t *out)
{
    static const cairn_consistency_t all[] = {CAIRN_ONE, CAIRN_QUORUM, CAIRN_ALL};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (strcasecmp(s, cairn_consistency_name(all[i])) == 0) {
            *out = all[i];
            return true;
        }
    }
    return false;
}

/* Read all of stdin into a malloc'd buffer. */
static bool read_stdin(uint8_t **out, size_t *len)
{
    size_t cap = 65536, n = 0;
    uint8_t *buf = malloc(cap);
    if (!buf) return false;
    for (;;) {
        if (n == cap) {
            uint8_t *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                return false;
            }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n, stdin);
        n += r;
        if (r == 0) {
            if (ferror(stdin)) {
                free(buf);
                return false;
            }
            break;
        }
    }
    *out = buf;
    *len = n;
    return true;
}

typedef struct info_lines {
    char **names, **values;
    size_t n, cap, width;
} info_lines_t;

static void collect(const char *name, const char *value, void *arg)
{
    info_lines_t *l = arg;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->names = realloc(l->names, l->cap * sizeof *l->names);
        l->values = realloc(l->values, l->cap * sizeof *l->values);
        if (!l->names || !l->values) abort();
    }
    l->names[l->n] = strdup(name);
    l->values[l->n] = strdup(value);
    if (!l->names[l->n] || !l->values[l->n]) abort();
    size_t w = strlen(name) + 1;
    if (w > l->width) l->width = w;
    l->n++;
}

static int cmd_info(cairn_client_t *c)
{
    info_lines_t l = {0};
    cairn_status_t st = cairn_info(c, collect, &l);
    int rc = 0;
    if (st != CAIRN_OK) {
        rc = fail(st, cairn_last_error(c));
    } else {
        for (size_t i = 0; i < l.n; i++) {
            printf("%s:%*s %s\n", l.names[i], (int)(l.width - strlen(l.names[i]) - 1), "",
                   l.values[i]);
        }
    }
    for (size_t i = 0; i < l.n; i++) {
        free(l.names[i]);
        free(l.values[i]);
    }
    free(l.names);
    free(l.values);
    return rc;
}

/* ---- local-get: one node's own cell ------------------------------------ */

/* An HLC timestamp as "<u64> (<UTC wall time>, logical N)". */
static void format_hlc(uint64_t ts, char *out, size_t len)
{
    uint64_t ms = ts >> 16;
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    char when[32] = "?";
    if (gmtime_r(&secs, &tm)) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, len, "%llu (%s.%03uZ, logical %u)", (unsigned long long)ts, when,
             (unsigned)(ms % 1000), (unsigned)(ts & 0xffff));
}

static uint64_t cli_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* `cairn ping [N]`: N null requests one after another; each one's round
 * trip, then min / median / max. */
static int cmd_ping(cairn_client_t *c, const char *count)
{
    long n = 5;
    if (count) {
        char *end;
        n = strtol(count, &end, 10);
        if (*end || n < 1 || n > 100000) return usage_error("bad ping count '%s' (1..100000)", count);
    }
    uint64_t *rtt = calloc((size_t)n, sizeof *rtt);
    if (!rtt) {
        fprintf(stderr, "cairn: out of memory\n");
        return EXIT_ERROR;
    }
    for (long i = 0; i < n; i++) {
        uint64_t t0 = cli_now_us();
        cairn_status_t st = cairn_ping(c);
        rtt[i] = cli_now_us() - t0;
        if (st != CAIRN_OK) {
            free(rtt);
            return fail(st, cairn_last_error(c));
        }
        if (n <= 20) printf("ping %ld: %" PRIu64 " us\n", i + 1, rtt[i]);
    }
    qsort(rtt, (size_t)n, sizeof *rtt, cmp_u64);
    printf("%ld pings: min %" PRIu64 " us, median %" PRIu64 " us, max %" PRIu64 " us\n", n,
           rtt[0], rtt[n / 2], rtt[n - 1]);
    free(rtt);
    return 0;
}

static int cmd_local_get(cairn_client_t *c, const char *key)
{
    cairn_cell_t cell;
    cairn_status_t st = cairn_local_get(c, key, strlen(key), &cell);
    if (st == CAIRN_NOT_FOUND) return fail(st, "this node stores no cell for the key");
    if (st != CAIRN_OK) return fail(st, cairn_last_error(c));
    char ts[96];
    format_hlc(cell.timestamp, ts, sizeof ts);
    printf("cell:      %s\n", cell.tombstone ? "tombstone" : "value");
    printf("timestamp: %s\n", ts);
    if (cell.expire_ms) {
        time_t secs = (time_t)(cell.expire_ms / 1000);
        struct tm tm;
        char when[32] = "?";
        if (gmtime_r(&secs, &tm)) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
        printf("expires:   %llu (%s.%03uZ)\n", (unsigned long long)cell.expire_ms, when,
               (unsigned)(cell.expire_ms % 1000));
    } else {
        printf("expires:   never\n");
    }
    int rc = 0;
    if (!cell.tombstone) {
        printf("length:    %zu\nvalue:     ", cell.len);
        if (cell.len && fwrite(cell.data, 1, cell.len, stdout) != cell.len) rc = EXIT_ERROR;
        putchar('\n');
    }
    cairn_cell_free(&cell);
    if (fflush(stdout) != 0) rc = EXIT_ERROR;
    if (rc) fprintf(stderr, "cairn: cannot write stdout: %s\n", strerror(errno));
    return rc;
}

/* ---- cluster views (ring, endpoints, status) -------------------------- */

/* A table of strings printed with aligned columns. */
typedef struct table {
    size_t ncols, nrows, cap;
    char **cells; /* row-major, nrows * ncols */
    size_t *width;
} table_t;

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) abort();
    return p;
}

static void table_init(table_t *t, size_t ncols)
{
    memset(t, 0, sizeof *t);
    t->ncols = ncols;
    t->width = calloc(ncols, sizeof *t->width);
    if (!t->width) abort();
}

/* Append a row of t->ncols cells (copied). */
static void table_row(table_t *t, const char *const *cells)
{
    if (t->nrows == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 16;
        t->cells = realloc(t->cells, t->cap * t->ncols * sizeof *t->cells);
        if (!t->cells) abort();
    }
    for (size_t i = 0; i < t->ncols; i++) {
        size_t len = strlen(cells[i]);
        char *c = xmalloc(len + 1);
        memcpy(c, cells[i], len + 1);
        t->cells[t->nrows * t->ncols + i] = c;
        if (len > t->width[i]) t->width[i] = len;
    }
    t->nrows++;
}

/* Print every row: columns padded to their width and two spaces apart; the
 * last column unpadded, then suffix[row] when given (NULL: none). */
static void table_print(const table_t *t, const char *const *suffix)
{
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t i = 0; i < t->ncols; i++) {
            const char *c = t->cells[r * t->ncols + i];
            bool last = i + 1 == t->ncols;
            if (last && !(suffix && suffix[r])) fputs(c, stdout);
            else printf("%-*s  ", (int)t->width[i], c);
        }
        if (suffix && suffix[r]) fputs(suffix[r], stdout);
        putchar('\n');
    }
}

static void table_free(table_t *t)
{
    for (size_t i = 0; i < t->nrows * t->ncols; i++) free(t->cells[i]);
    free(t->cells);
    free(t->width);
}

/* 1023 -> "1023B", 1536 -> "1.50KiB", ... */
static void human_bytes(uint64_t n, char *out, size_t len)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (n < 1024) {
        snprintf(out, len, "%lluB", (unsigned long long)n);
        return;
    }
    double v = (double)n / 1024;
    size_t u = 0;
    while (v >= 1024 && u + 1 < sizeof units / sizeof units[0]) {
        v /= 1024;
        u++;
    }
    snprintf(out, len, "%.2f%s", v, units[u]);
}

/* host:port, with brackets around an IPv6 address. */
static void node_address(const cairn_ring_node_t *n, char *out, size_t len)
{
    snprintf(out, len, strchr(n->host, ':') ? "[%s]:%u" : "%s:%u",
             *n->host ? n->host : "-", (unsigned)n->client_port);
}

static const char *or_dash(const char *s)
{
    return *s ? s : "-";
}

static const cairn_ring_t *sort_ring_; /* qsort has no context argument */

static int by_name(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    int c = strcmp(sort_ring_->nodes[x].name, sort_ring_->nodes[y].name);
    return c ? c : (x > y) - (x < y);
}

/* The node indices of r sorted by name (free() the result). */
static size_t *nodes_by_name(const cairn_ring_t *r)
{
    size_t *idx = xmalloc(r->nnodes * sizeof *idx);
    for (size_t i = 0; i < r->nnodes; i++) idx[i] = i;
    sort_ring_ = r;
    qsort(idx, r->nnodes, sizeof *idx, by_name);
    sort_ring_ = NULL;
    return idx;
}

static const char *self_name(const cairn_ring_t *r)
{
    return r->self < r->nnodes ? r->nodes[r->self].name : "?";
}

typedef struct token_owner {
    uint64_t token;
    size_t node;
} token_owner_t;

static int by_token(const void *a, const void *b)
{
    const token_owner_t *x = a, *y = b;
    if (x->token != y->token) return x->token < y->token ? -1 : 1;
    return (x->node > y->node) - (x->node < y->node);
}

/* The nodes that are not in the ring (joining, left), as a footnote:
 * "Not in the ring: n4 (joining), n5 (left)". Nothing when there are none. */
static void print_not_in_ring(const cairn_ring_t *r, const size_t *order)
{
    const char *sep = "\nNot in the ring: ";
    for (size_t k = 0; k < r->nnodes; k++) {
        const cairn_ring_node_t *n = &r->nodes[order[k]];
        if (n->in_ring) continue;
        printf("%s%s (%s)", sep, n->name, cairn_node_status_name(n->status));
        sep = ", ";
    }
    if (*sep == ',') printf("\n");
}

/* Only the nodes that own ranges: a joining node has no place on the ring
 * yet (cairn status lists it). */
static void print_ring(const cairn_ring_t *r)
{
    size_t *order = nodes_by_name(r);
    size_t nring = 0;
    for (size_t i = 0; i < r->nnodes; i++) nring += r->nodes[i].in_ring;
    printf("Ring: %zu node%s, replication factor %u", nring, nring == 1 ? "" : "s",
           r->replication_factor);
    if (r->nnodes)
        printf(", answered by %s %s", self_name(r),
               r->nodes[r->self].in_ring ? "(marked *)" : "(not in the ring)");
    printf("\n");
    if (nring > 1) {
        /* the ring's balance: most-owning node over least-owning node */
        double lo = 1, hi = 0;
        for (size_t i = 0; i < r->nnodes; i++) {
            if (!r->nodes[i].in_ring) continue;
            double o = r->nodes[i].ownership;
            if (o < lo) lo = o;
            if (o > hi) hi = o;
        }
        if (lo > 0) printf("Balance: most/least ownership %.3f\n", hi / lo);
    }
    printf("\n");
    table_t t;
    table_init(&t, 8);
    const char *head[] = {"Name", "Address", "Rack", "State", "Load", "Owns",
                          "Owns(effective)", "Tokens"};
    table_row(&t, head);
    const char **suffix = calloc(r->nnodes + 1, sizeof *suffix);
    if (!suffix) abort();
    size_t ntokens = 0, row = 1;
    for (size_t k = 0; k < r->nnodes; k++) {
        const cairn_ring_node_t *n = &r->nodes[order[k]];
        if (!n->in_ring) continue;
        char addr[300], load[32], owns[32], eff[32], toks[32];
        node_address(n, addr, sizeof addr);
        human_bytes(n->load_bytes, load, sizeof load);
        snprintf(owns, sizeof owns, "%.2f%%", n->ownership * 100);
        snprintf(eff, sizeof eff, "%.2f%%", n->effective_ownership * 100);
        snprintf(toks, sizeof toks, "%zu", n->ntokens);
        const char *cells[] = {n->name, addr, or_dash(n->rack), n->up ? "UP" : "DOWN",
                               load, owns, eff, toks};
        table_row(&t, cells);
        if (order[k] == r->self) suffix[row] = "*";
        row++;
        ntokens += n->ntokens;
    }
    table_print(&t, suffix);
    table_free(&t);
    free(suffix);
    print_not_in_ring(r, order);

    token_owner_t *all = xmalloc(ntokens * sizeof *all);
    size_t m = 0;
    for (size_t i = 0; i < r->nnodes; i++) {
        if (!r->nodes[i].in_ring) continue;
        for (size_t j = 0; j < r->nodes[i].ntokens; j++)
            all[m++] = (token_owner_t){r->nodes[i].tokens[j], i};
    }
    qsort(all, ntokens, sizeof *all, by_token);
    printf("\n%-20s  %s\n", "Token", "Node");
    for (size_t i = 0; i < ntokens; i++)
        printf("%-20llu  %s\n", (unsigned long long)all[i].token, r->nodes[all[i].node].name);
    free(all);
    free(order);
}

/* nodetool's two letters: U/D from up, then N/J/L from the announced
 * status (LEFT nodes are not rows). */
static void node_state(const cairn_ring_node_t *n, char out[3])
{
    out[0] = n->up ? 'U' : 'D';
    switch (n->status) {
    case CAIRN_NODE_NORMAL: out[1] = 'N'; break;
    case CAIRN_NODE_JOINING: out[1] = 'J'; break;
    case CAIRN_NODE_LEAVING: out[1] = 'L'; break;
    default: out[1] = '?'; break;
    }
    out[2] = 0;
}

/* "-" for a node plainly alive; else what the failure detector says:
 * "suspect", "dead", with ",phi=8.3" when phi is known; "phi=9.1" alone
 * for a node still alive by SWIM whose phi has passed the threshold. */
static void node_liveness(const cairn_ring_node_t *n, char *out, size_t len)
{
    bool plain = n->liveness == CAIRN_ALIVE && n->up;
    if (plain) {
        snprintf(out, len, "-");
        return;
    }
    int k = 0;
    if (n->liveness != CAIRN_ALIVE)
        k = snprintf(out, len, "%s", cairn_liveness_name(n->liveness));
    if (n->phi > 0)
        snprintf(out + k, len - (size_t)k, "%sphi=%.1f", k ? "," : "", n->phi);
    else if (k == 0)
        snprintf(out, len, "down");
}

/* nodetool status: a legend, then one row per member; nodes that have
 * left are not rows but a footnote. */
static void print_status(const cairn_ring_t *r, const char *cluster)
{
    size_t *order = nodes_by_name(r);
    size_t nleft = 0;
    for (size_t i = 0; i < r->nnodes; i++) nleft += r->nodes[i].status == CAIRN_NODE_LEFT;
    size_t nlisted = r->nnodes - nleft;
    printf("Cluster: %s, %zu node%s, replication factor %u", cluster, nlisted,
           nlisted == 1 ? "" : "s", r->replication_factor);
    if (r->nnodes) printf(", answered by %s", self_name(r));
    printf("\nStatus=Up/Down\n|/ State=Normal/Leaving/Joining\n");
    table_t t;
    table_init(&t, 9);
    const char *head[] = {"--", "Name", "Address", "Load", "Tokens",
                          "Owns(effective)", "Host-ID", "Rack", "Liveness"};
    table_row(&t, head);
    for (size_t k = 0; k < r->nnodes; k++) {
        const cairn_ring_node_t *n = &r->nodes[order[k]];
        if (n->status == CAIRN_NODE_LEFT) continue;
        char state[3], addr[300], load[32], eff[32], toks[32], live[64];
        node_state(n, state);
        node_address(n, addr, sizeof addr);
        human_bytes(n->load_bytes, load, sizeof load);
        if (n->in_ring) snprintf(eff, sizeof eff, "%.2f%%", n->effective_ownership * 100);
        else snprintf(eff, sizeof eff, "?");
        snprintf(toks, sizeof toks, "%zu", n->ntokens);
        node_liveness(n, live, sizeof live);
        const char *cells[] = {state, n->name, addr, load, toks, eff,
                               or_dash(n->node_id), or_dash(n->rack), live};
        table_row(&t, cells);
    }
    table_print(&t, NULL);
    table_free(&t);
    if (nleft) {
        const char *sep = "\nLeft the cluster (not listed): ";
        for (size_t k = 0; k < r->nnodes; k++) {
            const cairn_ring_node_t *n = &r->nodes[order[k]];
            if (n->status != CAIRN_NODE_LEFT) continue;
            printf("%s%s", sep, n->name);
            sep = ", ";
        }
        printf("\n");
    }
    free(order);
}

static int print_endpoints(const cairn_ring_t *r, const char *key)
{
    if (r->nreplicas == 0) {
        char msg[600];
        snprintf(msg, sizeof msg, "no replicas for '%.400s': the node's ring is empty", key);
        return fail(CAIRN_UNAVAILABLE, msg);
    }
    printf("Token: %llu\n\n", (unsigned long long)r->key_token);
    table_t t;
    table_init(&t, 4);
    const char *head[] = {"Name", "Address", "Rack", "State"};
    table_row(&t, head);
    for (size_t k = 0; k < r->nreplicas; k++) {
        const cairn_ring_node_t *n = &r->nodes[r->replicas[k]];
        char addr[300];
        node_address(n, addr, sizeof addr);
        const char *row[] = {n->name, addr, or_dash(n->rack), n->up ? "UP" : "DOWN"};
        table_row(&t, row);
    }
    table_print(&t, NULL);
    table_free(&t);
    return 0;
}

typedef enum { VIEW_RING, VIEW_STATUS, VIEW_ENDPOINTS } view_t;

static int cmd_view(cairn_client_t *c, view_t v, const char *key, const char *cluster)
{
    cairn_ring_t r;
    cairn_status_t st = cairn_ring(c, key, key ? strlen(key) : 0, &r);
    if (st != CAIRN_OK) return fail(st, cairn_last_error(c));
    int rc = 0;
    switch (v) {
    case VIEW_RING: print_ring(&r); break;
    case VIEW_STATUS: print_status(&r, cluster); break;
    case VIEW_ENDPOINTS: rc = print_endpoints(&r, key); break;
    }
    cairn_ring_free(&r);
    if (rc == 0 && fflush(stdout) != 0) {
        fprintf(stderr, "cairn: cannot write stdout: %s\n", strerror(errno));
        rc = EXIT_ERROR;
    }
    return rc;
}

/* ---- hints: what every node holds for whom ------------------------------ */

typedef struct hint_totals {
    unsigned long long v[8];
} hint_totals_t;

static const char *const HINT_TOTALS[8] = {
    "hints_pending", "hints_written", "hints_replayed", "hints_expired",
    "hints_refused_window", "hints_refused_full", "hints_dropped", "hints_corrupt",
};

typedef struct hint_scan {
    const char *holder;
    table_t *rows;
    hint_totals_t tot;
    bool any_total;
    double now_ms;
} hint_scan_t;

static void hint_item(const char *name, const char *value, void *arg)
{
    hint_scan_t *h = arg;
    for (int i = 0; i < 8; i++) {
        if (!strcmp(name, HINT_TOTALS[i])) {
            h->tot.v[i] = strtoull(value, NULL, 10);
            h->any_total = true;
            return;
        }
    }
    if (strncmp(name, "hints_for:", 10) != 0) return;
    unsigned long long rec = 0, bytes = 0, oldest = 0;
    if (sscanf(value, "records=%llu bytes=%llu oldest_ms=%llu", &rec, &bytes,
               &oldest) != 3)
        return;
    char nrec[32], nbytes[32], age[32];
    snprintf(nrec, sizeof nrec, "%llu", rec);
    human_bytes(bytes, nbytes, sizeof nbytes);
    if (oldest && h->now_ms > (double)oldest)
        snprintf(age, sizeof age, "%.0fs", (h->now_ms - (double)oldest) / 1000.0);
    else
        snprintf(age, sizeof age, "-");
    const char *row[] = {h->holder, name + 10, nrec, nbytes, age};
    table_row(h->rows, row);
}

/* ---- ready: GET /ready on the admin port -------------------------------- */

#define READY_MAX_REPLY 4096

static long ms_left(const struct timespec *deadline)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long ms = (long)(deadline->tv_sec - now.tv_sec) * 1000 +
              (deadline->tv_nsec - now.tv_nsec) / 1000000;
    return ms > 0 ? ms : 0;
}

/* Wait for fd to be ready for `events` until the deadline; false on timeout. */
static bool wait_fd(int fd, short events, const struct timespec *deadline)
{
    for (;;) {
        struct pollfd p = {fd, events, 0};
        int r = poll(&p, 1, (int)ms_left(deadline));
        if (r > 0) return true;
        if (r == 0) return false;
        if (errno != EINTR) return false;
    }
}

/* Connect to one address before the deadline; the socket, or -1 with *err. */
static int connect_before(const struct addrinfo *a, const struct timespec *deadline,
                          int *err)
{
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                    a->ai_protocol);
    if (fd < 0) {
        *err = errno;
        return -1;
    }
    if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
        if (errno != EINPROGRESS) {
            *err = errno;
            close(fd);
            return -1;
        }
        if (!wait_fd(fd, POLLOUT, deadline)) {
            *err = ETIMEDOUT;
            close(fd);
            return -1;
        }
        int so = 0;
        socklen_t len = sizeof so;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &len) != 0 || so != 0) {
            *err = so ? so : errno;
            close(fd);
            return -1;
        }
    }
    return fd;
}

/* `cairn ready [HOST[:PORT]]`: 0 when /ready answers 200, 1 when the node
 * answers anything else or cannot be reached, 2 for a bad argument. */
static int cmd_ready(const char *target, uint32_t timeout_ms)
{
    char host[256] = "127.0.0.1", port[8] = "7072";
    const char *envport = getenv("CAIRN_ADMIN_PORT");
    uint32_t u;
    if (envport && *envport) {
        if (!parse_u32(envport, &u) || u > 65535)
            return usage_error("bad CAIRN_ADMIN_PORT '%s' (a port number)", envport);
        snprintf(port, sizeof port, "%u", u);
    }
    if (target) {
        /* HOST, HOST:PORT, [V6] or [V6]:PORT */
        const char *h = target, *hend, *colon = NULL;
        if (target[0] == '[') {
            h = target + 1;
            hend = strchr(h, ']');
            if (!hend || (hend[1] && hend[1] != ':'))
                return usage_error("bad address '%s' (HOST[:PORT] or [V6][:PORT])", target);
            if (hend[1] == ':') colon = hend + 1;
        } else {
            colon = strchr(target, ':');
            if (colon && strchr(colon + 1, ':'))
                return usage_error("bad address '%s' (write an IPv6 address as [V6]:PORT)",
                                   target);
            hend = colon ? colon : target + strlen(target);
        }
        if (hend == h || (size_t)(hend - h) >= sizeof host)
            return usage_error("bad address '%s' (HOST[:PORT])", target);
        memcpy(host, h, (size_t)(hend - h));
        host[hend - h] = 0;
        if (colon) {
            if (!parse_u32(colon + 1, &u) || u > 65535)
                return usage_error("bad port in '%s'", target);
            snprintf(port, sizeof port, "%u", u);
        }
    }
    char where[300];
    snprintf(where, sizeof where, strchr(host, ':') ? "[%s]:%s" : "%s:%s", host, port);
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
    }

    char detail[600];
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int gerr = getaddrinfo(host, port, &hints, &res);
    if (gerr != 0) {
        snprintf(detail, sizeof detail, "cannot resolve %s: %s", host, gai_strerror(gerr));
        fail(CAIRN_CONNECTION, detail);
        return EXIT_NOT_READY;
    }
    int fd = -1, err = 0;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next)
        fd = connect_before(a, &deadline, &err);
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(detail, sizeof detail, "cannot connect to %s: %s", where, strerror(err));
        fail(err == ETIMEDOUT ? CAIRN_TIMEOUT : CAIRN_CONNECTION, detail);
        return EXIT_NOT_READY;
    }

    char req[400], reply[READY_MAX_REPLY + 1];
    int rlen = snprintf(req, sizeof req,
                        "GET /ready HTTP/1.0\r\nHost: %s\r\nUser-Agent: cairn\r\n\r\n", where);
    size_t off = 0, got = 0;
    bool timed_out = false;
    while (off < (size_t)rlen) {
        ssize_t w = send(fd, req + off, (size_t)rlen - off, MSG_NOSIGNAL);
        if (w > 0) off += (size_t)w;
        else if (w < 0 && errno == EINTR) continue;
        else if (w < 0 && errno == EAGAIN && wait_fd(fd, POLLOUT, &deadline)) continue;
        else break;
    }
    /* HTTP/1.0: the node closes the connection after its answer */
    while (off == (size_t)rlen && got < READY_MAX_REPLY) {
        ssize_t r = recv(fd, reply + got, READY_MAX_REPLY - got, 0);
        if (r > 0) got += (size_t)r;
        else if (r == 0) break;
        else if (errno == EINTR) continue;
        else if (errno == EAGAIN && wait_fd(fd, POLLIN, &deadline)) continue;
        else {
            timed_out = errno == EAGAIN;
            break;
        }
    }
    close(fd);
    reply[got] = 0;
    int code = 0;
    if (sscanf(reply, "HTTP/1.%*d %d", &code) != 1) {
        snprintf(detail, sizeof detail, "%s did not answer /ready%s", where,
                 timed_out ? " in time" : got ? " with HTTP" : "");
        fail(timed_out ? CAIRN_TIMEOUT : CAIRN_CONNECTION, detail);
        return EXIT_NOT_READY;
    }
    /* the body: one line of text ("ready", "joining: ...", "draining") */
    const char *body = strstr(reply, "\r\n\r\n");
    body = body ? body + 4 : "";
    char line[256];
    snprintf(line, sizeof line, "%.*s", (int)strcspn(body, "\r\n"), body);
    if (code == 200) {
        printf("%s\n", line[0] ? line : "ready");
        return fflush(stdout) == 0 ? 0 : EXIT_ERROR;
    }
    snprintf(detail, sizeof detail, "%s is not ready (HTTP %d): %s", where, code,
             line[0] ? line : "(no reason given)");
    fail(CAIRN_UNAVAILABLE, detail);
    return EXIT_NOT_READY;
}

static int cmd_hints(cairn_client_t *c, const cairn_options_t *base)
{
    cairn_ring_t r;
    cairn_status_t st = cairn_ring(c, NULL, 0, &r);
    if (st != CAIRN_OK) return fail(st, cairn_last_error(c));
    size_t *order = nodes_by_name(&r);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double now_ms = (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
    table_t rows, totals;
    table_init(&rows, 5);
    table_init(&totals, 9);
    const char *h1[] = {"Holder", "Target", "Hints", "Bytes", "Oldest"};
    table_row(&rows, h1);
    const char *h2[] = {"Node", "Pending", "Written", "Delivered", "Expired",
                        "Past-window", "Refused", "Dropped", "Corrupt"};
    table_row(&totals, h2);
    size_t listed = 0, unreachable = 0;
    for (size_t k = 0; k < r.nnodes; k++) {
        const cairn_ring_node_t *n = &r.nodes[order[k]];
        if (n->status == CAIRN_NODE_LEFT) continue;
        char addr[300];
        node_address(n, addr, sizeof addr);
        hint_scan_t h = {.holder = n->name, .rows = &rows, .now_ms = now_ms};
        cairn_client_t *nc = NULL;
        cairn_options_t o = *base;
        o.contact_points = addr;
        st = n->up || order[k] == r.self ? cairn_connect(&o, &nc) : CAIRN_UNAVAILABLE;
        if (st == CAIRN_OK) {
            st = cairn_info(nc, hint_item, &h);
            cairn_close(nc);
        }
        if (st != CAIRN_OK || !h.any_total) {
            const char *row[] = {n->name, "unreachable", "-", "-", "-", "-", "-", "-", "-"};
            table_row(&totals, row);
            unreachable++;
            continue;
        }
        char cell[8][32];
        for (int i = 0; i < 8; i++) snprintf(cell[i], sizeof cell[i], "%llu", h.tot.v[i]);
        const char *row[] = {n->name, cell[0], cell[1], cell[2], cell[3],
                             cell[4], cell[5], cell[6], cell[7]};
        table_row(&totals, row);
        listed++;
    }
    if (rows.nrows > 1) table_print(&rows, NULL);
    else printf("No hints are waiting for delivery.\n");
    printf("\n");
    table_print(&totals, NULL);
    table_free(&rows);
    table_free(&totals);
    free(order);
    cairn_ring_free(&r);
    if (fflush(stdout) != 0) {
        fprintf(stderr, "cairn: cannot write stdout: %s\n", strerror(errno));
        return EXIT_ERROR;
    }
    if (listed == 0 && unreachable > 0)
        return fail(CAIRN_UNAVAILABLE, "no node answered");
    return 0;
}

/* ---- ring changes: decommission, removenode, cleanup, netstats ---------- */

typedef struct change_view {
    char kind[32], state[32], subject[256], error[300], cleanup[200];
    unsigned long long ranges, done, keys;
    unsigned long long bytes_in, bytes_out, keys_in, keys_out;
    char streams[16][300];
    int nstreams;
    char rstate[32], rresult[300], rage[120];
    unsigned long long rranges, rdone, rfailed, rleaves, rin, rout;
} change_view_t;

static void change_item(const char *name, const char *value, void *arg)
{
    change_view_t *v = arg;
    if (!strcmp(name, "ring_change")) snprintf(v->kind, sizeof v->kind, "%s", value);
    else if (!strcmp(name, "ring_change_state")) snprintf(v->state, sizeof v->state, "%s", value);
    else if (!strcmp(name, "ring_change_subject")) snprintf(v->subject, sizeof v->subject, "%s", value);
    else if (!strcmp(name, "ring_change_error")) snprintf(v->error, sizeof v->error, "%s", value);
    else if (!strcmp(name, "cleanup")) snprintf(v->cleanup, sizeof v->cleanup, "%s", value);
    else if (!strcmp(name, "ring_change_ranges")) v->ranges = strtoull(value, NULL, 10);
    else if (!strcmp(name, "ring_change_ranges_done")) v->done = strtoull(value, NULL, 10);
    else if (!strcmp(name, "ring_change_keys")) v->keys = strtoull(value, NULL, 10);
    else if (!strcmp(name, "stream_bytes_in")) v->bytes_in = strtoull(value, NULL, 10);
    else if (!strcmp(name, "stream_bytes_out")) v->bytes_out = strtoull(value, NULL, 10);
    else if (!strcmp(name, "stream_keys_in")) v->keys_in = strtoull(value, NULL, 10);
    else if (!strcmp(name, "stream_keys_out")) v->keys_out = strtoull(value, NULL, 10);
    else if (!strcmp(name, "repair_state")) snprintf(v->rstate, sizeof v->rstate, "%s", value);
    else if (!strcmp(name, "repair_result")) snprintf(v->rresult, sizeof v->rresult, "%s", value);
    else if (!strcmp(name, "repair_oldest_range_age_s")) snprintf(v->rage, sizeof v->rage, "%s", value);
    else if (!strcmp(name, "repair_ranges")) v->rranges = strtoull(value, NULL, 10);
    else if (!strcmp(name, "repair_ranges_done")) v->rdone = strtoull(value, NULL, 10);
    else if (!strcmp(name, "repair_ranges_failed")) v->rfailed = strtoull(value, NULL, 10);
    else if (!strcmp(name, "repair_leaves_differing")) v->rleaves = strtoull(value, NULL, 10);
    else if (!strcmp(name, "repair_keys_in")) v->rin = strtoull(value, NULL, 10);
    else if (!strcmp(name, "repair_keys_out")) v->rout = strtoull(value, NULL, 10);
    else if ((!strncmp(name, "stream_in:", 10) || !strncmp(name, "stream_out:", 11)) &&
             v->nstreams < 16)
        snprintf(v->streams[v->nstreams++], sizeof v->streams[0], "%.120s %.170s", name,
                 value);
}

static cairn_status_t change_read(cairn_client_t *c, change_view_t *v)
{
    memset(v, 0, sizeof *v);
    return cairn_info(c, change_item, v);
}

/* Start an operation on the connected node and follow it to its end. */
static int cmd_change(cairn_client_t *c, const char *op, const char *arg)
{
    cairn_value_t msg;
    cairn_status_t st = cairn_admin(c, op, arg, &msg);
    if (st != CAIRN_OK) return fail(st, cairn_last_error(c));
    printf("%.*s\n", (int)msg.len, (const char *)msg.data);
    cairn_value_free(&msg);
    fflush(stdout);
    bool clean = !strcmp(op, "cleanup"), repair = !strcmp(op, "repair");
    char last[700] = "";
    for (;;) {
        change_view_t v;
        st = change_read(c, &v);
        if (st != CAIRN_OK) return fail(st, cairn_last_error(c));
        char line[700];
        if (repair) {
            if (strcmp(v.rstate, "running") != 0) {
                printf("repair %s: %s\n", v.rstate, v.rresult);
                return strcmp(v.rstate, "done") ? EXIT_ERROR : 0;
            }
            snprintf(line, sizeof line, "repair: %llu of %llu ranges, %llu failed, %llu "
                     "leaves differed, %llu cells in, %llu out", v.rdone, v.rranges,
                     v.rfailed, v.rleaves, v.rin, v.rout);
        } else if (clean) {
            if (strcmp(v.cleanup, "running") != 0) {
                printf("cleanup %s\n", v.cleanup);
                return strncmp(v.cleanup, "done", 4) ? EXIT_ERROR : 0;
            }
            snprintf(line, sizeof line, "cleanup running");
        } else {
            if (!strcmp(v.state, "done") || !strcmp(v.state, "idle")) {
                printf("%s%s%s done\n", op, arg ? " " : "", arg ? arg : "");
                return 0;
            }
            if (!strcmp(v.state, "failed")) return fail(CAIRN_UNAVAILABLE, v.error);
            snprintf(line, sizeof line, "%s: %s, %llu of %llu ranges copied, %llu keys%s%s",
                     v.kind, v.state, v.done, v.ranges, v.keys, v.error[0] ? "; " : "",
                     v.error);
        }
        if (strcmp(line, last)) {
            printf("%s\n", line);
            fflush(stdout);
            snprintf(last, sizeof last, "%s", line);
        }
        sleep(1);
    }
}

/* Under `status`: how long ago the answering node's ranges were repaired. */
static void status_repair_line(cairn_client_t *c)
{
    change_view_t v;
    if (change_read(c, &v) != CAIRN_OK || !v.rage[0]) return;
    if (!strncmp(v.rage, "never", 5))
        printf("\nRepair: %d of the answering node's ranges have never been repaired "
               "(cairn repair)\n", atoi(v.rage + 7));
    else
        printf("\nRepair: the answering node's least recently repaired range was repaired "
               "%s s ago%s\n", v.rage, !strcmp(v.rstate, "running") ? " (a repair is running)" : "");
}

/* Every reachable node's ring change and streams. */
static int cmd_netstats(cairn_client_t *c, const cairn_options_t *base)
{
    cairn_ring_t r;
    cairn_status_t st = cairn_ring(c, NULL, 0, &r);
    if (st != CAIRN_OK) return fail(st, cairn_last_error(c));
    size_t *order = nodes_by_name(&r);
    for (size_t k = 0; k < r.nnodes; k++) {
        const cairn_ring_node_t *n = &r.nodes[order[k]];
        if (n->status == CAIRN_NODE_LEFT) continue;
        char addr[300];
        node_address(n, addr, sizeof addr);
        cairn_options_t o = *base;
        o.contact_points = addr;
        cairn_client_t *nc = NULL;
        change_view_t v;
        st = n->up || order[k] == r.self ? cairn_connect(&o, &nc) : CAIRN_UNAVAILABLE;
        if (st == CAIRN_OK) {
            st = change_read(nc, &v);
            cairn_close(nc);
        }
        if (st != CAIRN_OK) {
            printf("%s: unreachable\n", n->name);
            continue;
        }
        if (strcmp(v.kind, "none"))
            printf("%s: %s%s%s %s, %llu of %llu ranges copied, %llu keys", n->name,
                   v.kind, v.subject[0] ? " of " : "", v.subject, v.state, v.done,
                   v.ranges, v.keys);
        else
            printf("%s: no ring change", n->name);
        char bi[32], bo[32];
        human_bytes(v.bytes_in, bi, sizeof bi);
        human_bytes(v.bytes_out, bo, sizeof bo);
        printf("; streamed in %llu keys (%s), out %llu keys (%s); cleanup %s\n",
               v.keys_in, bi, v.keys_out, bo, v.cleanup[0] ? v.cleanup : "-");
        if (v.error[0]) printf("  %s\n", v.error);
        printf("  repair %s%s%s; oldest unrepaired range: %s%s\n", v.rstate,
               v.rresult[0] ? ": " : "", v.rresult, v.rage,
               strncmp(v.rage, "never", 5) ? " s" : "");
        for (int i = 0; i < v.nstreams; i++) printf("  %s\n", v.streams[i]);
    }
    free(order);
    cairn_ring_free(&r);
    return 0;
}

/* ---- passwords and `cairn user` ----------------------------------------- */

/* Read a password: $CAIRN_PASSWORD, the file, the terminal (no echo;
 * twice when confirm), else the first line of stdin. malloc'd. */
static char *read_password(const char *file, const char *prompt, bool confirm)
{
    const char *env = getenv("CAIRN_PASSWORD");
    if (env && *env) return strdup(env);
    char buf[1024];
    if (file && *file) {
        FILE *f = fopen(file, "r");
        if (!f || !fgets(buf, sizeof buf, f)) {
            fprintf(stderr, "cairn: cannot read the password file %s: %s\n", file,
                    f ? "empty" : strerror(errno));
            if (f) fclose(f);
            return NULL;
        }
        fclose(f);
        buf[strcspn(buf, "\r\n")] = 0;
        return strdup(buf);
    }
    int tty = open("/dev/tty", O_RDWR | O_CLOEXEC);
    if (tty >= 0 && isatty(STDIN_FILENO)) {
        char again[1024];
        for (int round = 0; round < (confirm ? 2 : 1); round++) {
            char *dst = round ? again : buf;
            struct termios old, quiet;
            dprintf(tty, "%s", round ? "Again: " : prompt);
            tcgetattr(tty, &old);
            quiet = old;
            quiet.c_lflag &= ~(tcflag_t)ECHO;
            tcsetattr(tty, TCSAFLUSH, &quiet);
            ssize_t n = read(tty, dst, 1023);
            tcsetattr(tty, TCSAFLUSH, &old);
            dprintf(tty, "\n");
            dst[n > 0 ? n : 0] = 0;
            dst[strcspn(dst, "\r\n")] = 0;
        }
        close(tty);
        if (confirm && strcmp(buf, again) != 0) {
            fprintf(stderr, "cairn: the passwords do not match\n");
            return NULL;
        }
        return strdup(buf);
    }
    if (tty >= 0) close(tty);
    if (!fgets(buf, sizeof buf, stdin)) {
        fprintf(stderr, "cairn: no password (set CAIRN_PASSWORD, --password-file, or "
                        "give it on stdin)\n");
        return NULL;
    }
    buf[strcspn(buf, "\r\n")] = 0;
    return strdup(buf);
}

/* Rewrite FILE without NAME's line (and with `add` appended, if any),
 * atomically (temp file, fsync, rename), mode 600. */
static int users_rewrite(const char *path, const char *name, const char *add)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *in = fopen(path, "r");
    if (!in && errno != ENOENT) {
        fprintf(stderr, "cairn: cannot read %s: %s\n", path, strerror(errno));
        return EXIT_ERROR;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FILE *out = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!out) {
        fprintf(stderr, "cairn: cannot write %s: %s\n", tmp, strerror(errno));
        if (in) fclose(in);
        return EXIT_ERROR;
    }
    bool found = false;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    if (!in) fprintf(out, "# Cairn users: name:role:hash (cairn user add). Keep it private.\n");
    while (in && (len = getline(&line, &cap, in)) >= 0) {
        kv_user_line_t u;
        size_t l = (size_t)len;
        while (l && line[l - 1] == '\n') l--;
        if (kv_user_line_parse(line, l, &u) == KV_OK && u.name.len == strlen(name) &&
            memcmp(u.name.data, name, u.name.len) == 0) {
            found = true;
            continue;
        }
        fwrite(line, 1, (size_t)len, out);
        if (l == (size_t)len) fputc('\n', out);
    }
    free(line);
    if (in) fclose(in);
    if (add) fprintf(out, "%s\n", add);
    bool ok = fflush(out) == 0 && fsync(fileno(out)) == 0;
    ok = fclose(out) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        fprintf(stderr, "cairn: cannot write %s: %s\n", path, strerror(errno));
        unlink(tmp);
        return EXIT_ERROR;
    }
    if (!add && !found) {
        fprintf(stderr, "cairn: no user '%s' in %s\n", name, path);
        return EXIT_NOTFOUND;
    }
    return 0;
}

static int cmd_user(int nargs, char **args, const char *password_file)
{
    if (nargs >= 1 && !strcmp(args[0], "list") && nargs == 2) {
        FILE *f = fopen(args[1], "r");
        if (!f) {
            fprintf(stderr, "cairn: cannot read %s: %s\n", args[1], strerror(errno));
            return EXIT_ERROR;
        }
        char *line = NULL;
        size_t cap = 0;
        ssize_t len;
        unsigned no = 0;
        while ((len = getline(&line, &cap, f)) >= 0) {
            no++;
            size_t l = (size_t)len;
            while (l && line[l - 1] == '\n') l--;
            kv_user_line_t u;
            kv_status_t rc = kv_user_line_parse(line, l, &u);
            if (rc == KV_OK)
                printf("%.*s  %s  %s\n", (int)u.name.len, (const char *)u.name.data,
                       kv_role_str(u.role),
                       u.hash.len == 1 && u.hash.data[0] == '-' ? "certificate" : "password");
            else if (rc != KV_NOTFOUND)
                fprintf(stderr, "cairn: %s line %u: %s\n", args[1], no, kv_errmsg());
        }
        free(line);
        fclose(f);
        return 0;
    }
    if (nargs == 3 && !strcmp(args[0], "del")) return users_rewrite(args[1], args[2], NULL);
    if ((nargs == 4 || nargs == 5) && !strcmp(args[0], "add")) {
        const char *file = args[1], *name = args[2], *role = args[3];
        bool cert_only = nargs == 5 && !strcmp(args[4], "--cert-only");
        if (nargs == 5 && !cert_only) return usage_error("unknown option '%s'", args[4]);
        kv_role_t r;
        if (!kv_user_name_ok(name, strlen(name)))
            return usage_error("bad user name '%s' (1-64 of A-Z a-z 0-9 _ . @ -)", name);
        if (!kv_role_parse(role, strlen(role), &r))
            return usage_error("unknown role '%s' (read, readwrite or admin)", role);
        char *hash = NULL;
        if (!cert_only) {
            char *pw = read_password(password_file, "Password: ", true);
            if (!pw) return EXIT_ERROR;
            if (!*pw) {
                free(pw);
                fprintf(stderr, "cairn: empty password (use --cert-only for a "
                                "certificate user)\n");
                return EXIT_ERROR;
            }
            const char *it = getenv("CAIRN_PASSWORD_ITERATIONS"); /* tests */
            kv_status_t rc = kv_passwd_hash(kv_slice_str(pw), it ? (uint32_t)atoi(it) : 0, &hash);
            memset(pw, 0, strlen(pw));
            free(pw);
            if (rc != KV_OK) {
                fprintf(stderr, "cairn: cannot hash the password: %s\n", kv_errmsg());
                return EXIT_ERROR;
            }
        }
        char line[512];
        snprintf(line, sizeof line, "%s:%s:%s", name, kv_role_str(r), hash ? hash : "-");
        kv_free(hash);
        int rc = users_rewrite(file, name, line);
        if (rc == 0) fprintf(stderr, "cairn: user %s (%s) in %s\n", name, kv_role_str(r), file);
        return rc;
    }
    return usage_error("%s", "usage: cairn user add FILE NAME ROLE [--cert-only] | "
                             "user del FILE NAME | user list FILE");
}

static bool env_on(const char *name)
{
    const char *v = getenv(name);
    return v && (!strcmp(v, "1") || !strcasecmp(v, "on") || !strcasecmp(v, "true") ||
                 !strcasecmp(v, "yes"));
}

static const char *env_str(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

int main(int argc, char **argv)
{
    cairn_options_t o;
    cairn_options_init(&o);
    const char *env = getenv("CAIRN_HOST");
    o.contact_points = env && *env ? env : "127.0.0.1:7070";
    o.client_name = "cairn-cli";
    cairn_request_opts_t ro = {0};
    o.tls = env_on("CAIRN_TLS");
    o.tls_ca_file = env_str("CAIRN_TLS_CA_FILE");
    o.tls_cert_file = env_str("CAIRN_TLS_CERT_FILE");
    o.tls_key_file = env_str("CAIRN_TLS_KEY_FILE");
    o.tls_skip_hostname_check = env_on("CAIRN_TLS_NO_VERIFY_HOST");
    o.username = env_str("CAIRN_USER");
    const char *password_file = env_str("CAIRN_PASSWORD_FILE");

    enum { OPT_CLUSTER = 256, OPT_TTL, OPT_TLS, OPT_TLS_CA, OPT_TLS_CERT, OPT_TLS_KEY,
           OPT_TLS_NOHOST, OPT_PWFILE };
    static const struct option longopts[] = {
        {"host", required_argument, NULL, 'H'},
        {"consistency", required_argument, NULL, 'c'},
        {"timeout", required_argument, NULL, 't'},
        {"cluster", required_argument, NULL, OPT_CLUSTER},
        {"ttl", required_argument, NULL, OPT_TTL},
        {"tls", no_argument, NULL, OPT_TLS},
        {"tls-ca", required_argument, NULL, OPT_TLS_CA},
        {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
        {"tls-key", required_argument, NULL, OPT_TLS_KEY},
        {"tls-no-verify-host", no_argument, NULL, OPT_TLS_NOHOST},
        {"user", required_argument, NULL, 'u'},
        {"password-file", required_argument, NULL, OPT_PWFILE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    uint32_t u;
    /* '+': stop at the command, so values that start with '-' stay values. */
    while ((ch = getopt_long(argc, argv, "+H:c:t:u:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'H': o.contact_points = optarg; break;
        case 'c':
            if (!parse_cl(optarg, &o.consistency))
                return usage_error("bad consistency level '%s' (ONE, QUORUM or ALL)", optarg);
            break;
        case 't':
            if (!parse_u32(optarg, &u))
                return usage_error("bad timeout '%s' (milliseconds, > 0)", optarg);
            o.timeout_ms = u;
            o.connect_timeout_ms = u;
            break;
        case OPT_TTL:
            if (!parse_u32(optarg, &u))
                return usage_error("bad ttl '%s' (milliseconds, > 0)", optarg);
            ro.ttl_ms = u;
            break;
        case OPT_CLUSTER: o.cluster_name = optarg; break;
        case OPT_TLS: o.tls = true; break;
        case OPT_TLS_CA: o.tls_ca_file = optarg; break;
        case OPT_TLS_CERT: o.tls_cert_file = optarg; break;
        case OPT_TLS_KEY: o.tls_key_file = optarg; break;
        case OPT_TLS_NOHOST: o.tls_skip_hostname_check = true; break;
        case 'u': o.username = optarg; break;
        case OPT_PWFILE: password_file = optarg; break;
        case 'h': usage(stdout); return 0;
        default: return usage_error("%s", "bad option");
        }
    }
    if (optind >= argc) return usage_error("%s", "no command given");
    const char *cmd = argv[optind];
    int nargs = argc - optind - 1;
    char **args = argv + optind + 1;

    if (!strcmp(cmd, "user")) return cmd_user(nargs, args, password_file);
    if (o.tls_ca_file || o.tls_cert_file || o.tls_key_file) o.tls = true;
    if (!strcmp(cmd, "ready")) {
        if (argc - optind - 1 > 1) return usage_error("%s", "ready takes at most one HOST[:PORT]");
        return cmd_ready(argc - optind - 1 ? argv[optind + 1] : NULL,
                         o.timeout_ms ? o.timeout_ms : 2000);
    }

    int want;
    if (!strcmp(cmd, "get") || !strcmp(cmd, "del") || !strcmp(cmd, "endpoints") ||
        !strcmp(cmd, "local-get"))
        want = 1;
    else if (!strcmp(cmd, "put")) want = 2;
    else if (!strcmp(cmd, "info") || !strcmp(cmd, "status") || !strcmp(cmd, "ring") ||
             !strcmp(cmd, "hints") || !strcmp(cmd, "decommission") ||
             !strcmp(cmd, "cleanup") || !strcmp(cmd, "netstats"))
        want = 0;
    else if (!strcmp(cmd, "removenode")) want = 1;
    else if (!strcmp(cmd, "ping")) {
        if (nargs > 1) return usage_error("%s", "ping takes at most a count");
        want = -1;
    }
    else if (!strcmp(cmd, "repair")) want = -1; /* any: its options */
    else if (!strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    } else {
        return usage_error("unknown command '%s'", cmd);
    }
    if (want >= 0 && nargs != want)
        return usage_error("wrong number of arguments for '%s'", cmd);

    /* Read stdin before connecting: a slow producer must not eat the
     * request timeout. */
    uint8_t *in = NULL;
    size_t inlen = 0;
    if (want == 2 && !strcmp(args[1], "-") && !read_stdin(&in, &inlen)) {
        fprintf(stderr, "cairn: cannot read stdin: %s\n", strerror(errno));
        return EXIT_ERROR;
    }

    char *password = NULL;
    if (o.username) {
        password = read_password(password_file, "Password: ", false);
        if (!password) {
            free(in);
            return EXIT_ERROR;
        }
        o.password = password;
    }
    cairn_client_t *c;
    cairn_status_t st = cairn_connect(&o, &c);
    if (st != CAIRN_OK) {
        free(in);
        if (password) memset(password, 0, strlen(password));
        free(password);
        return fail(st, cairn_connect_error());
    }
    int rc = 0;
    if (!strcmp(cmd, "get")) {
        cairn_value_t v;
        st = cairn_get(c, args[0], strlen(args[0]), &ro, &v);
        if (st == CAIRN_OK) {
            if (v.len && fwrite(v.data, 1, v.len, stdout) != v.len) rc = EXIT_ERROR;
            if (isatty(STDOUT_FILENO)) putchar('\n');
            if (fflush(stdout) != 0) rc = EXIT_ERROR;
            if (rc) fprintf(stderr, "cairn: cannot write stdout: %s\n", strerror(errno));
            cairn_value_free(&v);
        } else if (st == CAIRN_NOT_FOUND) {
            rc = fail(st, args[0]);
        } else {
            rc = fail(st, cairn_last_error(c));
        }
    } else if (!strcmp(cmd, "put")) {
        const void *val = in ? (const void *)in : args[1];
        size_t vlen = in ? inlen : strlen(args[1]);
        st = cairn_put(c, args[0], strlen(args[0]), val, vlen, &ro);
        if (st != CAIRN_OK) rc = fail(st, cairn_last_error(c));
    } else if (!strcmp(cmd, "del")) {
        st = cairn_delete(c, args[0], strlen(args[0]), &ro);
        if (st != CAIRN_OK) rc = fail(st, cairn_last_error(c));
    } else if (!strcmp(cmd, "status")) {
        rc = cmd_view(c, VIEW_STATUS, NULL, o.cluster_name);
        if (rc == 0) status_repair_line(c);
    } else if (!strcmp(cmd, "ring")) {
        rc = cmd_view(c, VIEW_RING, NULL, o.cluster_name);
    } else if (!strcmp(cmd, "endpoints")) {
        rc = cmd_view(c, VIEW_ENDPOINTS, args[0], o.cluster_name);
    } else if (!strcmp(cmd, "hints")) {
        rc = cmd_hints(c, &o);
    } else if (!strcmp(cmd, "decommission") || !strcmp(cmd, "cleanup")) {
        rc = cmd_change(c, cmd, NULL);
    } else if (!strcmp(cmd, "removenode")) {
        rc = cmd_change(c, cmd, args[0]);
    } else if (!strcmp(cmd, "netstats")) {
        rc = cmd_netstats(c, &o);
    } else if (!strcmp(cmd, "repair")) {
        char arg[512] = "";
        size_t len = 0;
        for (int i = 0; i < nargs && len < sizeof arg; i++)
            len += (size_t)snprintf(arg + len, sizeof arg - len, "%s%s", i ? " " : "",
                                    args[i]);
        rc = cmd_change(c, cmd, arg);
    } else if (!strcmp(cmd, "local-get")) {
        rc = cmd_local_get(c, args[0]);
    } else if (!strcmp(cmd, "ping")) {
        rc = cmd_ping(c, nargs ? args[0] : NULL);
    } else {
        rc = cmd_info(c);
    }
    cairn_close(c);
    free(in);
    if (password) memset(password, 0, strlen(password)); /* hints, netstats used it */
    free(password);
    return rc;
}
