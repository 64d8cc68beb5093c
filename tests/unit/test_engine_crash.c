/* test_engine_crash.c -- the engine loses no acknowledged write when its
 * process is killed at a random moment.
 *
 * DESIGN  Each round forks a child that opens the store (sync = group,
 *         64 KiB memtables and tables, so flushes and compactions run all
 *         the time) and starts writer threads. A writer takes a unique,
 *         growing timestamp from a counter in shared memory, puts or deletes
 *         a key of a bounded key space, and once the engine answers KV_OK
 *         reports (key, ts) to the parent in one write(2) of a fixed-size
 *         record (atomic: smaller than PIPE_BUF). The cell itself -- value
 *         bytes or tombstone -- is a pure function of (key, ts), so the
 *         report needs no payload and any cell found later can be checked.
 *
 *         The parent reads reports while it waits a random 20-300 ms (the
 *         child may still be recovering from the last kill), SIGKILLs the
 *         child, drains the pipe and reopens the store itself:
 *           - eng_open succeeds;
 *           - every key holds a cell at least as new as the newest write
 *             acknowledged for it (newer ones were applied but not yet
 *             reported), and whatever cell it holds is exactly the one the
 *             writer made for that (key, ts);
 *           - a full scan succeeds and agrees with the point reads.
 *         What was found becomes the floor for later rounds (a write seen
 *         after recovery must never disappear), the store is closed, and
 *         the next round kills a child working on the same directory.
 *
 *         CAIRN_CRASH_ROUNDS sets the number of rounds (default 8);
 *         CAIRN_TEST_SEED replays a run.
 * THREADING  The child writes from several threads; it never runs cmocka
 *            assertions and leaves with _exit. The parent is single-threaded
 *            whenever it forks (no engine is open).
 */
#include "engine_test_util.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>

#define CRASH_KEYS 2000
#define CRASH_WRITERS 4
#define CRASH_MAX_VALUE 8192
#define CRASH_DEFAULT_ROUNDS 8

/* One acknowledged write, child -> parent. */
typedef struct crash_ack {
    uint32_t key;
    uint32_t magic;
    uint64_t ts;
} crash_ack_t;

#define CRASH_ACK_MAGIC 0xACC0FFEEu
_Static_assert(sizeof(crash_ack_t) < PIPE_BUF, "a report must be one atomic write");

/* Shared between parent and child (MAP_SHARED survives the kill). */
typedef struct crash_shared {
    _Atomic uint64_t next;        /* timestamp counter: base_ms + next */
    _Atomic uint64_t flushes;     /* the child's engine stats, sampled */
    _Atomic uint64_t compactions;
    _Atomic uint64_t deepest;     /* deepest non-empty level seen */
} crash_shared_t;

typedef struct crash_ctx {
    const char *dir;
    int fd;                       /* the pipe's write end (child) */
    crash_shared_t *sh;
    uint64_t base_ms;
    uint64_t seed;
    eng_t *e;
} crash_ctx_t;

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Key i: short for most, long for every fifth so tables see both. */
static size_t crash_key(uint32_t i, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "key-%05u", i);
    if (i % 5 == 0) {
        int pad = 40 + (int)(i % 97);
        for (int j = 0; j < pad && (size_t)n + 1 < cap; j++) buf[n++] = 'x';
        buf[n] = '\0';
    }
    return (size_t)n;
}

/* Parse a key made by crash_key; false for anything else. */
static bool crash_key_parse(kv_slice_t k, uint32_t *out)
{
    char buf[256];
    if (k.len < 9 || k.len >= sizeof buf || memcmp(k.data, "key-", 4) != 0) return false;
    unsigned v = 0;
    for (int i = 4; i < 9; i++) {
        char c = ((const char *)k.data)[i];
        if (c < '0' || c > '9') return false;
        v = v * 10 + (unsigned)(c - '0');
    }
    if (v >= CRASH_KEYS) return false;
    size_t n = crash_key(v, buf, sizeof buf);
    if (n != k.len || memcmp(buf, k.data, n) != 0) return false;
    *out = v;
    return true;
}

/* The cell written for (key, ts): a tombstone one time in ten, otherwise a
 * value of 0, 1..~8 KiB or a few hundred bytes derived from both. */
static bool crash_cell(uint32_t key, hlc_ts_t ts, uint8_t *val, size_t *len)
{
    uint64_t h = mix64(ts ^ ((uint64_t)key << 48) ^ 0x9e3779b97f4a7c15ULL);
    if (h % 10 == 0) {
        *len = 0;
        return true;
    }
    uint64_t r = (h >> 8) % 100, s = h >> 16;
    size_t n = r < 10 ? 0 : r < 20 ? 1 + (size_t)(s % CRASH_MAX_VALUE) : 8 + (size_t)(s % 300);
    uint64_t x = h | 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        val[i] = (uint8_t)x;
    }
    *len = n;
    return false;
}

/* ---- the child ----------------------------------------------------------- */

static void crash_options(eng_options_t *o, const char *dir)
{
    small_options(o, dir);
    o->sync = ENG_SYNC_GROUP;
    o->memtable_bytes = 64 * 1024;
    o->table_bytes = 64 * 1024;
    o->level1_bytes = 256 * 1024;
}

static _Noreturn void child_die(const char *what, kv_status_t rc)
{
    fprintf(stderr, "crash child: %s: %s: %s\n", what, kv_status_str(rc), kv_errmsg());
    _exit(3);
}

typedef struct writer {
    crash_ctx_t *c;
    int id;
} writer_t;

static void *child_writer(void *p)
{
    writer_t *w = p;
    crash_ctx_t *c = w->c;
    uint64_t rng = mix64(c->seed ^ (uint64_t)(w->id + 1) * 0x1234567ULL ^
                         atomic_load(&c->sh->next));
    uint8_t *val = malloc(CRASH_MAX_VALUE);
    char key[256];
    if (!val) _exit(4);
    for (uint64_t n = 0;; n++) {
        rng = mix64(rng + 1);
        uint32_t k = (uint32_t)(rng % CRASH_KEYS);
        hlc_ts_t ts = hlc_make(c->base_ms + atomic_fetch_add(&c->sh->next, 1), 0);
        size_t len;
        bool tomb = crash_cell(k, ts, val, &len);
        kv_slice_t ks = kv_slice(key, crash_key(k, key, sizeof key));
        kv_status_t rc = tomb ? eng_delete(c->e, ks, ts, NULL)
                              : eng_put(c->e, ks, kv_slice(val, len), ts, 0, NULL);
        if (rc == KV_SUPERSEDED) continue; /* a racing writer's newer ts won */
        if (rc != KV_OK) child_die(tomb ? "eng_delete" : "eng_put", rc);
        crash_ack_t a = {k, CRASH_ACK_MAGIC, ts};
        ssize_t wr;
        do {
            wr = write(c->fd, &a, sizeof a);
        } while (wr < 0 && errno == EINTR);
        if (wr != (ssize_t)sizeof a) _exit(5);
        if (w->id == 0 && n % 16 == 0) {
            eng_stats_t st;
            eng_get_stats(c->e, &st);
            atomic_store(&c->sh->flushes, st.flushes);
            atomic_store(&c->sh->compactions, st.compactions);
            for (int l = st.levels - 1; l > 0; l--) {
                if (!st.tables_per_level[l]) continue;
                if ((uint64_t)l > atomic_load(&c->sh->deepest))
                    atomic_store(&c->sh->deepest, (uint64_t)l);
                break;
            }
        }
    }
    return NULL;
}

static _Noreturn void child_main(crash_ctx_t *c)
{
    eng_options_t o;
    crash_options(&o, c->dir);
    kv_status_t rc = eng_open(&o, &c->e);
    if (rc != KV_OK) child_die("eng_open", rc);
    pthread_t th[CRASH_WRITERS];
    writer_t w[CRASH_WRITERS];
    for (int i = 0; i < CRASH_WRITERS; i++) {
        w[i] = (writer_t){c, i};
        if (pthread_create(&th[i], NULL, child_writer, &w[i]) != 0) _exit(6);
    }
    for (int i = 0; i < CRASH_WRITERS; i++) pthread_join(th[i], NULL);
    _exit(7); /* writers never return */
}

/* ---- the parent ---------------------------------------------------------- */

typedef struct model {
    hlc_ts_t floor[CRASH_KEYS]; /* 0 = nothing acknowledged or seen */
    uint64_t acks, rounds_with_torn_tail, reopen_flushes;
} model_t;

/* Apply whole records in buf[0..*len); keep a partial one for later. */
static void take_acks(model_t *m, uint8_t *buf, size_t *len)
{
    size_t whole = *len / sizeof(crash_ack_t) * sizeof(crash_ack_t);
    for (size_t off = 0; off < whole; off += sizeof(crash_ack_t)) {
        crash_ack_t a;
        memcpy(&a, buf + off, sizeof a);
        if (a.magic != CRASH_ACK_MAGIC || a.key >= CRASH_KEYS)
            fail_msg("malformed report from the child at byte %zu", off);
        if (a.ts > m->floor[a.key]) m->floor[a.key] = a.ts;
        m->acks++;
    }
    memmove(buf, buf + whole, *len - whole);
    *len -= whole;
}

/* Read reports until the deadline (or, with deadline 0, until EOF). */
static void read_acks(model_t *m, int fd, uint64_t deadline, uint8_t *buf, size_t *len)
{
    for (;;) {
        int timeout = -1;
        if (deadline) {
            uint64_t t = now_ms();
            if (t >= deadline) return;
            timeout = (int)(deadline - t);
        }
        struct pollfd p = {fd, POLLIN, 0};
        int r = poll(&p, 1, timeout);
        if (r < 0 && errno == EINTR) continue;
        assert_true(r >= 0);
        if (r == 0) continue; /* the deadline check returns */
        ssize_t n = read(fd, buf + *len, 64 * sizeof(crash_ack_t));
        if (n < 0 && errno == EINTR) continue;
        assert_true(n >= 0);
        if (n == 0) {
            assert_int_equal(*len, 0); /* no report was cut in half */
            return;
        }
        *len += (size_t)n;
        take_acks(m, buf, len);
    }
}

/* Check the cell a read returned for key k against everything known. */
static void check_cell(const model_t *m, uint32_t k, hlc_ts_t ts, bool tomb,
                       kv_slice_t value, hlc_ts_t ts_limit, const char *how)
{
    static uint8_t want[CRASH_MAX_VALUE];
    if (ts < m->floor[k])
        fail_msg("%s: key %u went back in time: ts %" PRIu64 " < acknowledged %" PRIu64,
                 how, k, ts, m->floor[k]);
    if (ts >= ts_limit)
        fail_msg("%s: key %u holds ts %" PRIu64 ", never issued", how, k, ts);
    size_t len;
    bool want_tomb = crash_cell(k, ts, want, &len);
    if (want_tomb != tomb)
        fail_msg("%s: key %u at ts %" PRIu64 ": %s, but a %s was written", how, k, ts,
                 tomb ? "tombstone" : "value", want_tomb ? "tombstone" : "value");
    if (!tomb && (value.len != len || memcmp(value.data, want, len) != 0))
        fail_msg("%s: key %u at ts %" PRIu64 ": value of %zu bytes differs from the "
                 "%zu written", how, k, ts, value.len, len);
}

/* Reopen and check everything; returns the stats of the reopened engine. */
static void verify_store(model_t *m, const char *dir, hlc_ts_t ts_limit, eng_stats_t *st)
{
    eng_options_t o;
    crash_options(&o, dir);
    eng_t *e = NULL;
    kv_status_t rc = eng_open(&o, &e);
    if (rc != KV_OK) fail_msg("reopen after kill: %s: %s", kv_status_str(rc), kv_errmsg());
    eng_get_stats(e, st);

    char key[256];
    bool present[CRASH_KEYS];
    for (uint32_t k = 0; k < CRASH_KEYS; k++) {
        eng_value_t v = {0};
        rc = eng_get(e, NULL, kv_slice(key, crash_key(k, key, sizeof key)), &v);
        present[k] = rc == KV_OK;
        if (rc == KV_NOTFOUND) {
            if (m->floor[k])
                fail_msg("key %u: acknowledged at ts %" PRIu64 " but not found", k,
                         m->floor[k]);
            continue;
        }
        if (rc != KV_OK) fail_msg("get key %u: %s: %s", k, kv_status_str(rc), kv_errmsg());
        check_cell(m, k, v.ts, v.tombstone, kv_buf_slice(&v.value), ts_limit, "get");
        m->floor[k] = v.ts; /* seen after recovery: must stay */
        eng_value_free(&v);
    }

    eng_iter_t *it = eng_iter_create(e, NULL, 0, UINT64_MAX);
    uint32_t seen = 0;
    for (eng_iter_seek_first(it); eng_iter_valid(it); eng_iter_next(it)) {
        uint32_t k = 0;
        if (!crash_key_parse(eng_iter_key(it), &k)) fail_msg("scan: a key never written");
        if (!present[k]) fail_msg("scan: key %u not found by get", k);
        if (eng_iter_ts(it) != m->floor[k])
            fail_msg("scan: key %u at ts %" PRIu64 ", get said %" PRIu64, k,
                     eng_iter_ts(it), m->floor[k]);
        check_cell(m, k, eng_iter_ts(it), eng_iter_tombstone(it), eng_iter_value(it),
                   ts_limit, "scan");
        present[k] = false; /* each key once */
        seen++;
    }
    rc = eng_iter_status(it);
    if (rc != KV_OK) fail_msg("scan: %s: %s", kv_status_str(rc), kv_errmsg());
    eng_iter_destroy(it);
    for (uint32_t k = 0; k < CRASH_KEYS; k++)
        if (present[k]) fail_msg("scan: key %u missing", k);
    (void)seen;
    /* flush what was replayed, so background work (and a clean close in
     * the middle of it) happens between kills too */
    rc = eng_flush(e);
    if (rc != KV_OK) fail_msg("flush after reopen: %s: %s", kv_status_str(rc), kv_errmsg());
    eng_close(e);
}

static int crash_rounds(void)
{
    const char *s = getenv("CAIRN_CRASH_ROUNDS");
    int n = s && *s ? atoi(s) : CRASH_DEFAULT_ROUNDS;
    return n > 0 ? n : CRASH_DEFAULT_ROUNDS;
}

/* Kill a group-committing, flushing, compacting engine at random moments,
 * reopen, and find every acknowledged write. */
static void test_engine_crash_kill_at_random_moments_loses_no_acknowledged_write(void **state)
{
    (void)state;
    uint64_t seed = test_seed("engine crash");
    int rounds = crash_rounds();
    const char *tmp = test_tmpdir("eng-crash");
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", tmp);
    fprintf(stderr, "[crash] %d rounds (CAIRN_CRASH_ROUNDS) on %s\n", rounds, dir);
    crash_shared_t *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE,
                              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(sh != MAP_FAILED);
    atomic_init(&sh->next, 1);
    atomic_init(&sh->flushes, 0);
    atomic_init(&sh->compactions, 0);
    atomic_init(&sh->deepest, 0);
    model_t *m = calloc(1, sizeof *m);
    assert_non_null(m);
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    uint64_t base_ms = (uint64_t)wall.tv_sec * 1000 + (uint64_t)wall.tv_nsec / 1000000;
    uint64_t rng = seed, t0 = now_ms();
    uint64_t child_flushes = 0, child_compactions = 0, torn = 0, deepest = 0;
    uint8_t buf[128 * sizeof(crash_ack_t)];

    for (int round = 0; round < rounds; round++) {
        rng = mix64(rng + 0x51);
        uint64_t delay = 20 + rng % 281;
        uint64_t acks_before = m->acks;
        atomic_store(&sh->flushes, 0);
        atomic_store(&sh->compactions, 0);
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            /* if the parent dies of a failed assertion, so do we */
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() == 1) _exit(8);
            close(fds[0]);
            crash_ctx_t c = {dir, fds[1], sh, base_ms, mix64(seed ^ (uint64_t)round), NULL};
            child_main(&c);
        }
        close(fds[1]);
        size_t len = 0;
        read_acks(m, fds[0], now_ms() + delay, buf, &len);
        assert_int_equal(kill(pid, SIGKILL), 0);
        read_acks(m, fds[0], 0, buf, &len);
        close(fds[0]);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
            fail_msg("round %d: the child ended on its own (status %#x) before the kill",
                     round, status);

        hlc_ts_t limit = hlc_make(base_ms + atomic_load(&sh->next), 0);
        eng_stats_t st;
        verify_store(m, dir, limit, &st);
        child_flushes += atomic_load(&sh->flushes);
        child_compactions += atomic_load(&sh->compactions);
        torn += st.wal_torn_tails;
        fprintf(stderr,
                "[crash] round %d: killed after %" PRIu64 " ms, %" PRIu64 " acks; child "
                "flushes %" PRIu64 " compactions %" PRIu64 "; reopen: torn tails %" PRIu64
                ", L0 %" PRIu64 " L1 %" PRIu64 " L2 %" PRIu64 "\n",
                round, delay, m->acks - acks_before, atomic_load(&sh->flushes),
                atomic_load(&sh->compactions), st.wal_torn_tails, st.tables_per_level[0],
                st.tables_per_level[1], st.tables_per_level[2]);
    }
    deepest = atomic_load(&sh->deepest);
    fprintf(stderr,
            "[crash] %d rounds in %" PRIu64 " ms: %" PRIu64 " acknowledged writes, child "
            "flushes %" PRIu64 " compactions %" PRIu64 ", deepest level %" PRIu64
            ", torn tails at reopen %" PRIu64 "\n",
            rounds, now_ms() - t0, m->acks, child_flushes, child_compactions, deepest, torn);
    /* the kills must have landed in a busy engine, not an idle one */
    assert_true(m->acks > 0);
    assert_true(child_flushes > 0);
    assert_true(child_compactions > 0);
    free(m);
    munmap(sh, sizeof *sh);
    test_rmrf(dir);
}

/* Found by the kill test under ASan: a compaction that only moves a table
 * down a level (nothing below to merge with) must leave its file alone --
 * through a clean close and the next open. */
static void test_engine_crash_table_moved_down_a_level_survives_close(void **state)
{
    (void)state;
    const char *dir = test_tmpdir("eng-move");
    eng_options_t o;
    crash_options(&o, dir);
    o.l0_compaction_trigger = 1; /* one L0 table is due, and L1 is empty */
    eng_t *e = open_or_die(&o);
    char k[32], v[32];
    for (int i = 0; i < 200; i++) {
        snprintf(k, sizeof k, "move-%04d", i);
        snprintf(v, sizeof v, "v%d", i);
        assert_int_equal(put_s(e, k, v, hlc_make(1763700000000ULL, 0)), KV_OK);
    }
    assert_int_equal(eng_flush(e), KV_OK); /* one table in L0 ... */
    eng_stats_t st;
    for (int tries = 0;; tries++) {        /* ... moved to L1 in the background */
        eng_get_stats(e, &st);
        if (st.tables_per_level[0] == 0 && st.compactions == 1) break;
        assert_true(tries < 5000);
        usleep(1000);
    }
    assert_int_equal(st.tables_per_level[1], 1);
    assert_int_equal(st.compaction_bytes_written, 0); /* moved, not rewritten */
    eng_close(e);
    e = open_or_die(&o);
    for (int i = 0; i < 200; i++) {
        snprintf(k, sizeof k, "move-%04d", i);
        snprintf(v, sizeof v, "v%d", i);
        expect_kv(e, k, v);
    }
    eng_close(e);
    test_rmrf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        kv_unit_test(test_engine_crash_table_moved_down_a_level_survives_close),
        kv_unit_test(test_engine_crash_kill_at_random_moments_loses_no_acknowledged_write),
    };
    return cmocka_run_group_tests_name("engine_crash", tests, NULL, NULL);
}
