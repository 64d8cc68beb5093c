/* node_test_util.h -- running real cairnd processes from a test: free
 * ports, spawning with flags, waiting for /ready, HTTP GETs to the admin
 * port, and a teardown that kills every child even when a test fails.
 * Register such tests with node_test(f). */
#ifndef CAIRN_NODE_TEST_UTIL_H
#define CAIRN_NODE_TEST_UTIL_H

#include "test_util.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

#include <arpa/inet.h>

#ifndef CAIRND_PATH
#error "CAIRND_PATH must name the cairnd binary"
#endif

#define IO_TIMEOUT_MS 10000

/* ---- child processes ---------------------------------------------------- */

typedef struct node_proc {
    pid_t pid;
    uint16_t client_port, peer_port, admin_port;
    char dir[PATH_MAX];      /* test directory */
    char data_dir[PATH_MAX + 16]; /* dir/data */
    char log[PATH_MAX + 16];      /* dir/cairnd.log */
    const char *bin;              /* the daemon to run; NULL: CAIRND_PATH */
} node_proc_t;

#define MAX_PROCS 8
static node_proc_t *procs_[MAX_PROCS];

static inline uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static inline void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A port free for TCP and UDP on loopback now, and never handed out before
 * by this test process: the kernel may give the same ephemeral port to two
 * calls, and two nodes of one cluster listed at one port make a bad
 * initial_cluster (cairnd exits 2). */
static inline uint16_t free_port(void)
{
    static uint8_t given[65536 / 8];
    for (;;) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        assert_true(fd >= 0);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
        socklen_t len = sizeof a;
        assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
        /* gossip binds the same number for UDP */
        int ufd = socket(AF_INET, SOCK_DGRAM, 0);
        assert_true(ufd >= 0);
        bool udp_ok = bind(ufd, (struct sockaddr *)&a, sizeof a) == 0;
        close(ufd);
        close(fd);
        uint16_t port = ntohs(a.sin_port);
        if (!udp_ok || (given[port / 8] & (1u << (port % 8)))) continue;
        given[port / 8] |= (uint8_t)(1u << (port % 8));
        return port;
    }
}

/* A node description with fresh ports and directory (not started). */
static inline node_proc_t *proc_new(const char *name)
{
    node_proc_t *p = calloc(1, sizeof *p);
    assert_non_null(p);
    snprintf(p->dir, sizeof p->dir, "%s", test_tmpdir(name));
    snprintf(p->data_dir, sizeof p->data_dir, "%s/data", p->dir);
    snprintf(p->log, sizeof p->log, "%s/cairnd.log", p->dir);
    p->client_port = free_port();
    do p->peer_port = free_port(); while (p->peer_port == p->client_port);
    do p->admin_port = free_port();
    while (p->admin_port == p->client_port || p->admin_port == p->peer_port);
    for (int i = 0; i < MAX_PROCS; i++) {
        if (!procs_[i]) {
            procs_[i] = p;
            return p;
        }
    }
    fail_msg("too many node processes in one test");
    return NULL;
}

/* fork + exec cairnd with the node's ports and data dir, plus extra flags
 * (NULL-terminated) and environment entries ("NAME=value", NULL-terminated;
 * may be NULL). stderr goes to the node's log file. */
static inline void proc_spawn_env(node_proc_t *p, const char *const *extra,
                                  const char *const *env)
{
    char cport[8], pport[8], aport[8];
    snprintf(cport, sizeof cport, "%u", p->client_port);
    snprintf(pport, sizeof pport, "%u", p->peer_port);
    snprintf(aport, sizeof aport, "%u", p->admin_port);
    const char *bin = p->bin ? p->bin : CAIRND_PATH;
    const char *argv[64] = {
        bin, "--data-dir", p->data_dir, "--client-port", cport,
        "--peer-port", pport, "--admin-port", aport, "--listen-address",
        "127.0.0.1", "--cluster-name", "test", "--log-level",
        getenv("CAIRN_TEST_LOG_LEVEL") ? getenv("CAIRN_TEST_LOG_LEVEL") : "warn",
    };
    int k = 15;
    for (int i = 0; extra && extra[i] && k < 63; i++) argv[k++] = extra[i];
    argv[k] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(p->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 2);
            dup2(fd, 1);
            close(fd);
        }
        for (int i = 0; env && env[i]; i++) putenv((char *)env[i]);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    p->pid = pid;
}

static inline void proc_spawn(node_proc_t *p, const char *const *extra)
{
    proc_spawn_env(p, extra, NULL);
}

/* A simple HTTP GET; returns the status code (-1 if unreachable). */
static inline int http_get(uint16_t port, const char *path, kv_buf_t *body)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    char req[256];
    int len = snprintf(req, sizeof req,
                       "GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", path);
    if (write(fd, req, (size_t)len) != len) {
        close(fd);
        return -1;
    }
    kv_buf_t all = {0};
    char chunk[16384];
    for (;;) {
        struct pollfd pfd = {fd, POLLIN, 0};
        if (poll(&pfd, 1, IO_TIMEOUT_MS) <= 0) break;
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n <= 0) break;
        kv_buf_append(&all, chunk, (size_t)n);
    }
    close(fd);
    int code = -1;
    kv_buf_append_u8(&all, 0);
    if (sscanf((const char *)all.data, "HTTP/1.%*d %d", &code) != 1) code = -1;
    const char *sep = strstr((const char *)all.data, "\r\n\r\n");
    if (body) {
        kv_buf_clear(body);
        if (sep) kv_buf_append(body, sep + 4, strlen(sep + 4));
        kv_buf_append_u8(body, 0);
        body->len--;
    }
    kv_buf_deinit(&all);
    return code;
}

/* Wait for /ready to answer 200; fail if the child exits first. */
static inline void proc_wait_ready(node_proc_t *p)
{
    uint64_t t0 = now_ms();
    while (now_ms() - t0 < 15000) {
        int st;
        if (waitpid(p->pid, &st, WNOHANG) == p->pid) {
            p->pid = 0;
            fail_msg("cairnd exited during start-up (status %d); see %s", st, p->log);
        }
        if (http_get(p->admin_port, "/ready", NULL) == 200) return;
        sleep_ms(10);
    }
    fail_msg("cairnd did not become ready; see %s", p->log);
}

/* Wait until cairnd serves although it may not be ready: /ready answers
 * 200, 503 "joining" (a founder whose peers never start has heard from
 * no other member, so it serves without being ready) or 503 "refused" (the
 * cluster or its own clock keeps it out, and it says so). Fails if the
 * child exits first. */
static inline void proc_wait_serving(node_proc_t *p)
{
    uint64_t t0 = now_ms();
    kv_buf_t body = {0};
    while (now_ms() - t0 < 15000) {
        int st;
        if (waitpid(p->pid, &st, WNOHANG) == p->pid) {
            p->pid = 0;
            kv_buf_deinit(&body);
            fail_msg("cairnd exited during start-up (status %d); see %s", st, p->log);
        }
        int code = http_get(p->admin_port, "/ready", &body);
        if (code == 200 || (code == 503 && body.data &&
                            (strncmp((const char *)body.data, "joining", 7) == 0 ||
                             strncmp((const char *)body.data, "refused", 7) == 0))) {
            kv_buf_deinit(&body);
            return;
        }
        sleep_ms(10);
    }
    kv_buf_deinit(&body);
    fail_msg("cairnd did not start serving; see %s", p->log);
}

static inline void proc_start(node_proc_t *p, const char *const *extra)
{
    proc_spawn(p, extra);
    proc_wait_ready(p);
}

/* Wait for the child to exit; returns its exit code (-signal if killed). */
static inline int proc_wait_exit(node_proc_t *p, int timeout_ms)
{
    uint64_t t0 = now_ms();
    for (;;) {
        int st;
        pid_t r = waitpid(p->pid, &st, WNOHANG);
        if (r == p->pid) {
            p->pid = 0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
        }
        if (now_ms() - t0 > (uint64_t)timeout_ms) {
            fail_msg("cairnd (pid %d) did not exit within %d ms", (int)p->pid, timeout_ms);
        }
        sleep_ms(5);
    }
}

static inline void proc_kill(node_proc_t *p, int sig)
{
    assert_true(p->pid > 0);
    kill(p->pid, sig);
}

/* Teardown: kill every child of the test and remove its directories. */
static inline int procs_teardown(void **state)
{
    for (int i = 0; i < MAX_PROCS; i++) {
        node_proc_t *p = procs_[i];
        if (!p) continue;
        if (p->pid > 0) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, NULL, 0);
        }
        if (!getenv("CAIRN_TEST_KEEP")) test_rmrf(p->dir);
        free(p);
        procs_[i] = NULL;
    }
    return kv_leak_teardown(state);
}

/* kv_unit_test with child cleanup ahead of the same leak check. */
#define node_test(f) cmocka_unit_test_setup_teardown(f, kv_leak_setup, procs_teardown)

#endif /* CAIRN_NODE_TEST_UTIL_H */
