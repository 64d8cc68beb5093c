/* cli_cluster.c -- the `cairn` commands about the cluster rather than keys:
 * the views (status, ring, endpoints), hints, ready (the admin port's
 * /ready over HTTP), the ring changes (decommission, removenode, cleanup,
 * repair) and netstats. cli.c's DESIGN comment describes how the views
 * print. */
#include <errno.h>
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

#include "cli.h"

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

int cmd_view(cairn_client_t *c, view_t v, const char *key, const char *cluster)
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
int cmd_ready(const char *target, uint32_t timeout_ms)
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

int cmd_hints(cairn_client_t *c, const cairn_options_t *base)
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
int cmd_change(cairn_client_t *c, const char *op, const char *arg)
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
void status_repair_line(cairn_client_t *c)
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
int cmd_netstats(cairn_client_t *c, const cairn_options_t *base)
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
