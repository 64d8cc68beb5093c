/* auth.c -- client authentication against users_file, off the loop.
 *
 * DESIGN  A connection's HELLO carries a user name and password, or the
 *         connection presented a verified client certificate whose common
 *         name is the user name (tls.c). conn.c asks node_auth_check; the
 *         check runs on a one-thread pool, because PBKDF2 takes tens of
 *         milliseconds by design and the loop must not, and the result
 *         comes back on the loop as the job's completion. The pool's queue
 *         is bounded (AUTH_QUEUE): a flood of logins gets BUSY, not an
 *         unbounded backlog.
 *         users_file is read by the auth thread when its size, mtime or
 *         inode changed since the last read, so `cairn user add` takes
 *         effect at the next login without a restart. A line that does not
 *         parse is skipped with a warning naming it; a file that cannot be
 *         read empties the table (nobody gets in) and is logged.
 *         An unknown user costs the same PBKDF2 as a known one (a dummy
 *         hash), and both failures give the same answer, so a client
 *         cannot probe which names exist.
 * THREADING  node_auth_check and completions on the loop; the table under
 *            users_mu, read and reloaded by the auth thread.
 */
#define KV_LOG_MODULE "auth"
#include "node_int.h"
#include "security_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define AUTH_QUEUE 64

typedef struct auth_job {
    node_job_t job; /* first */
    node_sec_t *s;
    char user[KV_USER_MAX + 1];
    kv_buf_t password;
    bool cert;
    node_auth_done_fn fn;
    void *arg;
    kv_status_t st;
    kv_role_t role;
    char msg[256];
} auth_job_t;

static char *dummy_hash; /* made once: the cost of a miss */
static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;

static void make_dummy(void)
{
    (void)kv_passwd_hash(kv_slice_str("no such user"), 0, &dummy_hash);
}

static void users_free(node_user_t *u, size_t n)
{
    for (size_t i = 0; i < n; i++) kv_free(u[i].hash);
    kv_free(u);
}

/* Auth thread, users_mu held: read users_file again if it changed. */
static void users_refresh(node_sec_t *s)
{
    const char *path = s->node->cfg->users_file;
    struct stat st;
    if (stat(path, &st) != 0) {
        if (s->users_loaded || s->nusers)
            KV_LOG(KV_ERROR, "users_file %s: %s; refusing every login until it is back",
                   path, strerror(errno));
        users_free(s->users, s->nusers);
        s->users = NULL;
        s->nusers = 0;
        s->users_loaded = false;
        return;
    }
    if (s->users_loaded && st.st_size == s->users_size && st.st_ino == s->users_ino &&
        st.st_mtim.tv_sec == s->users_mtime.tv_sec &&
        st.st_mtim.tv_nsec == s->users_mtime.tv_nsec)
        return;
    FILE *f = fopen(path, "r");
    if (!f) {
        KV_LOG(KV_ERROR, "users_file %s: %s", path, strerror(errno));
        return;
    }
    node_user_t *u = NULL;
    size_t n = 0, cap = 0;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    unsigned lineno = 0;
    while ((len = getline(&line, &lcap, f)) >= 0) {
        lineno++;
        while (len && line[len - 1] == '\n') len--;
        kv_user_line_t ul;
        kv_status_t rc = kv_user_line_parse(line, (size_t)len, &ul);
        if (rc == KV_NOTFOUND) continue;
        if (rc != KV_OK) {
            KV_LOG(KV_WARN, "users_file %s line %u skipped: %s", path, lineno, kv_errmsg());
            continue;
        }
        if (n == cap) u = kv_realloc(u, (cap = cap ? cap * 2 : 16) * sizeof *u);
        memset(&u[n], 0, sizeof u[n]);
        memcpy(u[n].name, ul.name.data, ul.name.len);
        u[n].role = ul.role;
        u[n].hash = kv_malloc(ul.hash.len + 1);
        memcpy(u[n].hash, ul.hash.data, ul.hash.len);
        u[n].hash[ul.hash.len] = 0;
        n++;
    }
    free(line);
    fclose(f);
    users_free(s->users, s->nusers);
    s->users = u;
    s->nusers = n;
    s->users_size = st.st_size;
    s->users_ino = st.st_ino;
    s->users_mtime = st.st_mtim;
    s->users_loaded = true;
    KV_LOG(KV_INFO, "users_file %s: %zu users", path, n);
}

static void auth_work(node_job_t *jb)
{
    auth_job_t *j = (auth_job_t *)jb;
    node_sec_t *s = j->s;
    pthread_once(&dummy_once, make_dummy);
    char *hash = NULL;
    kv_role_t role = KV_ROLE_NONE;
    bool found = false;
    pthread_mutex_lock(&s->users_mu);
    users_refresh(s);
    for (size_t i = 0; i < s->nusers; i++) {
        if (strcmp(s->users[i].name, j->user) != 0) continue;
        found = true;
        role = s->users[i].role;
        hash = kv_strdup(s->users[i].hash);
        break;
    }
    pthread_mutex_unlock(&s->users_mu);
    j->st = KV_DENIED;
    if (j->cert) {
        /* the certificate was verified by TLS; the file gives the role */
        if (found) {
            j->st = KV_OK;
            j->role = role;
        } else {
            snprintf(j->msg, sizeof j->msg, "authentication failed: the client "
                     "certificate's user '%s' is not in users_file", j->user);
        }
    } else {
        const char *h = found && strcmp(hash, "-") != 0 ? hash : dummy_hash;
        kv_status_t rc = h ? kv_passwd_verify(kv_buf_slice(&j->password), h) : KV_IO;
        if (found && h == hash && rc == KV_OK) {
            j->st = KV_OK;
            j->role = role;
        } else if (rc == KV_INVALID && found && h == hash) {
            KV_LOG(KV_WARN, "users_file: user '%s' has a hash this node cannot read",
                   j->user);
        }
        if (j->st != KV_OK)
            snprintf(j->msg, sizeof j->msg, "authentication failed for user '%s': "
                     "wrong user name or password", j->user);
    }
    kv_free(hash);
}

static void auth_done(node_job_t *jb)
{
    auth_job_t *j = (auth_job_t *)jb;
    j->fn(j->arg, j->st, j->role, j->msg);
    if (j->password.data) OPENSSL_cleanse(j->password.data, j->password.len);
    kv_buf_deinit(&j->password);
    kv_free(j);
}

kv_status_t node_auth_check(node_t *n, kv_slice_t user, kv_slice_t password, bool cert,
                            node_auth_done_fn fn, void *arg)
{
    node_sec_t *s = n->sec;
    kv_assert(s && s->auth_on && s->auth_pool);
    auth_job_t *j = kv_calloc(1, sizeof *j);
    j->job.work = auth_work;
    j->job.done = auth_done;
    j->s = s;
    memcpy(j->user, user.data, KV_MIN(user.len, (size_t)KV_USER_MAX));
    if (!cert) kv_buf_append(&j->password, password.data, password.len);
    j->cert = cert;
    j->fn = fn;
    j->arg = arg;
    kv_status_t rc = node_pool_submit(s->auth_pool, &j->job);
    if (rc != KV_OK) {
        kv_buf_deinit(&j->password);
        kv_free(j);
    }
    return rc;
}

bool node_auth_on(const node_t *n) { return n->sec && n->sec->auth_on; }

void node_auth_count(node_t *n, const char *result)
{
    node_sec_t *s = n->sec;
    if (!s) return;
    metric_series_t *m = !strcmp(result, "ok")                ? s->m.auth_ok
                         : !strcmp(result, "bad_credentials") ? s->m.auth_bad
                         : !strcmp(result, "busy")            ? s->m.auth_busy
                                                              : s->m.auth_none;
    metrics_counter_add(m, 1);
}

void node_auth_count_denied(node_t *n)
{
    if (n->sec) metrics_counter_add(n->sec->m.denied, 1);
}

kv_status_t node_auth_open(node_sec_t *s)
{
    const node_config_t *cfg = s->node->cfg;
    pthread_mutex_init(&s->users_mu, NULL);
    s->auth_on = !strcmp(cfg->client_auth, "on");
    if (!s->auth_on) return KV_OK;
    FILE *f = fopen(cfg->users_file, "r");
    if (!f) {
        kv_errmsg_set("users_file: cannot read '%s': %s", cfg->users_file, strerror(errno));
        return KV_IO;
    }
    fclose(f);
    s->auth_pool = node_pool_create(s->node, 1, AUTH_QUEUE);
    return KV_OK;
}

void node_auth_quiesce(node_sec_t *s)
{
    if (s->auth_pool) node_pool_destroy(s->auth_pool);
    s->auth_pool = NULL;
}

void node_auth_close(node_sec_t *s)
{
    node_auth_quiesce(s);
    users_free(s->users, s->nusers);
    s->users = NULL;
    s->nusers = 0;
    pthread_mutex_destroy(&s->users_mu);
}
