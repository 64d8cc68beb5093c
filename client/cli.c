/* cli.c -- `cairn`, the command-line client.
 *
 * DESIGN  A thin shell over libcairn's public API (cairn.h) only: parse the
 *         options, connect, run one command, map the outcome to an exit
 *         code. Values travel as raw bytes both ways (stdin for `put KEY -`,
 *         stdout for `get`), so the tool is usable in pipelines with binary
 *         data; a newline is added after a value only when stdout is a
 *         terminal.
 *
 *         Exit codes: 0 success, 1 key not found (get), 2 any error, with
 *         "cairn: <StatusName>: <detail>" on stderr.
 * THREADING  Single-threaded (libcairn runs its own I/O thread).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cairn.h"

#define EXIT_NOTFOUND 1
#define EXIT_ERROR 2

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
"  status           the node's view of itself (same items as info for now)\n"
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
"  -h, --help       this text\n"
"\n"
"Exit status: 0 success, 1 key not found, 2 any other error (the reason is\n"
"printed as \"cairn: <Status>: <detail>\" on stderr). A Timeout or\n"
"ConnectionError on put/del means the write may or may not have been applied.\n"
"\n"
"Examples:\n"
"  cairn put user:1 '{\"name\":\"ada\"}'\n"
"  cairn -c ONE get user:1\n"
"  tar c dir | cairn -H 10.0.0.1,10.0.0.2 put backup -\n"
"  cairn get backup | tar x\n");
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

int main(int argc, char **argv)
{
    cairn_options_t o;
    cairn_options_init(&o);
    const char *env = getenv("CAIRN_HOST");
    o.contact_points = env && *env ? env : "127.0.0.1:7070";
    o.client_name = "cairn-cli";
    cairn_request_opts_t ro = {0};

    enum { OPT_CLUSTER = 256, OPT_TTL };
    static const struct option longopts[] = {
        {"host", required_argument, NULL, 'H'},
        {"consistency", required_argument, NULL, 'c'},
        {"timeout", required_argument, NULL, 't'},
        {"cluster", required_argument, NULL, OPT_CLUSTER},
        {"ttl", required_argument, NULL, OPT_TTL},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    uint32_t u;
    /* '+': stop at the command, so values that start with '-' stay values. */
    while ((ch = getopt_long(argc, argv, "+H:c:t:h", longopts, NULL)) != -1) {
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
        case 'h': usage(stdout); return 0;
        default: return usage_error("%s", "bad option");
        }
    }
    if (optind >= argc) return usage_error("%s", "no command given");
    const char *cmd = argv[optind];
    int nargs = argc - optind - 1;
    char **args = argv + optind + 1;

    int want;
    if (!strcmp(cmd, "get") || !strcmp(cmd, "del")) want = 1;
    else if (!strcmp(cmd, "put")) want = 2;
    else if (!strcmp(cmd, "info") || !strcmp(cmd, "status")) want = 0;
    else if (!strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    } else {
        return usage_error("unknown command '%s'", cmd);
    }
    if (nargs != want) return usage_error("wrong number of arguments for '%s'", cmd);

    /* Read stdin before connecting: a slow producer must not eat the
     * request timeout. */
    uint8_t *in = NULL;
    size_t inlen = 0;
    if (want == 2 && !strcmp(args[1], "-") && !read_stdin(&in, &inlen)) {
        fprintf(stderr, "cairn: cannot read stdin: %s\n", strerror(errno));
        return EXIT_ERROR;
    }

    cairn_client_t *c;
    cairn_status_t st = cairn_connect(&o, &c);
    if (st != CAIRN_OK) {
        free(in);
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
    } else {
        rc = cmd_info(c);
    }
    cairn_close(c);
    free(in);
    return rc;
}
