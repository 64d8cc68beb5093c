/* cli.c -- `cairn`, the command-line client.
 *
 * DESIGN  A thin shell over libcairn's public API (cairn.h): parse the
 *         options, connect, run one command, map the outcome to an exit
 *         code. One command does not use the client protocol: `ready` asks
 *         a node's admin port for /ready over plain HTTP, so a container
 *         health check needs no other program (curl) in the image. The
 *         commands about the cluster (views, hints, ready, ring changes,
 *         netstats) live in cli_cluster.c. Values travel as raw bytes both
 *         ways (stdin for `put KEY -`,
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
#include "cli.h"
#include "passwd.h"

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

int fail(cairn_status_t st, const char *detail)
{
    fprintf(stderr, "cairn: %s: %s\n", cairn_status_name(st),
            detail && *detail ? detail : "(no detail)");
    return st == CAIRN_NOT_FOUND ? EXIT_NOTFOUND : EXIT_ERROR;
}

int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "cairn: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'cairn --help'.\n");
    return EXIT_ERROR;
}

bool parse_u32(const char *s, uint32_t *out)
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
