/* cli_test_util.h -- running a command-line program from a test with
 * given stdin, collecting stdout and stderr without deadlocking on either. */
#ifndef CAIRN_CLI_TEST_UTIL_H
#define CAIRN_CLI_TEST_UTIL_H

#include "test_util.h"

#include <poll.h>
#include <sys/wait.h>

/* Run the program at path with args (argv[1..], NULL-terminated) and stdin
 * from `in`; out and err are cleared, then collect stdout and stderr. Returns
 * the exit status. */
static inline int run_cli(const char *path, const char *const *args, const void *in, size_t inlen,
                   kv_buf_t *out, kv_buf_t *err)
{
    kv_buf_clear(out);
    kv_buf_clear(err);
    int pin[2], pout[2], perr[2];
    assert_int_equal(pipe(pin), 0);
    assert_int_equal(pipe(pout), 0);
    assert_int_equal(pipe(perr), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(pin[0], 0);
        dup2(pout[1], 1);
        dup2(perr[1], 2);
        close(pin[1]);
        close(pout[0]);
        close(perr[0]);
        const char *argv[16] = {path};
        for (int i = 0; args[i] && i < 14; i++) argv[i + 1] = args[i];
        execv(path, (char *const *)argv);
        _exit(127);
    }
    close(pin[0]);
    close(pout[1]);
    close(perr[1]);
    if (inlen) assert_int_equal(write(pin[1], in, inlen), (ssize_t)inlen);
    close(pin[1]);
    uint8_t buf[4096];
    struct pollfd p[2] = {{pout[0], POLLIN, 0}, {perr[0], POLLIN, 0}};
    int open_fds = 2;
    while (open_fds) {
        assert_true(poll(p, 2, 10000) > 0);
        for (int i = 0; i < 2; i++) {
            if (p[i].fd < 0 || !p[i].revents) continue;
            ssize_t r = read(p[i].fd, buf, sizeof buf);
            if (r <= 0) {
                close(p[i].fd);
                p[i].fd = -1;
                open_fds--;
            } else {
                kv_buf_append(i == 0 ? out : err, buf, (size_t)r);
            }
        }
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

#endif /* CAIRN_CLI_TEST_UTIL_H */
