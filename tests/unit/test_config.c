/* test_config.c -- cairnd's configuration: defaults, the YAML file, the
 * environment and flags with their precedence, every kind of bad input
 * (each error names the setting and its source), --help, --print-config
 * round trips, and the cross-setting rules of node_config_validate.
 *
 * Every test builds its own argv and envp; none reads the real environment.
 */
#include "test_util.h"

#include "config.h"

#define ARGV(...) ((char *[]){"cairnd", __VA_ARGS__, NULL})
#define NOARGS ((char *[]){"cairnd", NULL})
#define ENV(...) ((char *[]){__VA_ARGS__, NULL})
#define NOENV ((char *[]){NULL})

static int argc_of(char **argv)
{
    int n = 0;
    while (argv[n]) n++;
    return n;
}

/* Load into C (initialised by the caller); returns the status. */
static kv_status_t load(node_config_t *c, char **argv, char **envp,
                        node_action_t *action)
{
    node_action_t a = NODE_RUN;
    kv_errmsg_clear();
    kv_status_t rc = node_config_load(c, argc_of(argv), argv, envp, &a);
    if (action) *action = a;
    return rc;
}

/* Loading must fail with RC and a message containing every NEEDLE. */
#define expect_error(rc_want, argv, envp, ...)                                 \
    do {                                                                       \
        node_config_t c_;                                                      \
        node_config_init(&c_);                                                 \
        kv_status_t rc_ = load(&c_, (argv), (envp), NULL);                     \
        const char *needles_[] = {__VA_ARGS__};                                \
        if (rc_ != (rc_want))                                                  \
            fail_msg("status %s, want %s (%s)", kv_status_str(rc_),            \
                     kv_status_str(rc_want), kv_errmsg());                     \
        for (size_t k_ = 0; k_ < KV_ARRAY_LEN(needles_); k_++)                 \
            if (!strstr(kv_errmsg(), needles_[k_]))                            \
                fail_msg("message '%s' lacks '%s'", kv_errmsg(), needles_[k_]); \
        /* a failed load leaves the config as it was */                        \
        assert_int_equal(c_.client_port, 7070);                                \
        node_config_deinit(&c_);                                               \
    } while (0)

static char file_path[PATH_MAX];

/* Write TEXT to a fresh config file; returns its path (static). */
static const char *write_config(const char *dir, const char *text)
{
    snprintf(file_path, sizeof file_path, "%s/cairn.yaml", dir);
    FILE *f = fopen(file_path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
    return file_path;
}

static char *flag_eq(char *buf, size_t cap, const char *flag, const char *v)
{
    snprintf(buf, cap, "%s=%s", flag, v);
    return buf;
}

/* ---- defaults and sources ---------------------------------------------- */

static void test_config_defaults_match_the_contract(void **state)
{
    (void)state;
    node_config_t c;
    node_config_init(&c);
    assert_string_equal(c.cluster_name, "cairn");
    char host[256] = "";
    gethostname(host, sizeof host);
    assert_string_equal(c.node_name, host);
    assert_string_equal(c.listen_address, "127.0.0.1");
    assert_int_equal(c.client_port, 7070);
    assert_int_equal(c.peer_port, 7071);
    assert_int_equal(c.admin_port, 7072);
    assert_string_equal(c.data_dir, "./data");
    assert_string_equal(c.seeds, "");
    assert_string_equal(c.initial_cluster, "");
    assert_string_equal(c.rack, "rack1");
    assert_int_equal(c.num_tokens, 16);
    assert_int_equal(c.replication_factor, 3);
    assert_string_equal(c.sync, "group");
    assert_int_equal(c.sync_period_ms, 100);
    assert_int_equal(c.max_key_bytes, 65536);
    assert_int_equal(c.max_value_bytes, 16u << 20);
    assert_int_equal(c.max_frame_bytes, 32u << 20);
    assert_int_equal(c.max_connections, 1024);
    assert_int_equal(c.max_inflight, 4096);
    assert_int_equal(c.request_timeout_ms, 2000);
    assert_int_equal(c.drain_timeout_ms, 10000);
    assert_int_equal(c.idle_timeout_ms, 0);
    assert_int_equal(c.max_clock_offset_ms, 500);
    assert_int_equal(c.peer_timeout_ms, 2000);
    assert_int_equal(c.peer_queue_bytes, 64u << 20);
    assert_int_equal(c.memtable_bytes, 64u << 20);
    assert_int_equal(c.cache_bytes, 32u << 20);
    assert_int_equal(c.gc_grace_seconds, 864000);
    assert_string_equal(c.log_level, "info");
    assert_int_equal(node_config_validate(&c), KV_OK);
    node_config_deinit(&c);
}

static void test_config_load_with_nothing_gives_defaults(void **state)
{
    (void)state;
    node_config_t c;
    node_config_init(&c);
    node_action_t a;
    assert_int_equal(load(&c, NOARGS, ENV("HOME=/root", "PATH=/bin"), &a),
                     KV_OK);
    assert_int_equal(a, NODE_RUN);
    assert_int_equal(c.client_port, 7070);
    assert_string_equal(c.sync, "group");
    /* a NULL envp is an empty environment */
    assert_int_equal(load(&c, NOARGS, NULL, &a), KV_OK);
    node_config_deinit(&c);
}

static void test_config_file_sets_every_kind_of_setting(void **state)
{
    (void)state;
    const char *dir = test_tmpdir("config-file");
    const char *path = write_config(dir,
        "# a comment\n"
        "cluster_name: prod-eu\n"
        "node_name: \"n1\"\n"
        "client_port: 9000\n"
        "peer_port: '9001'\n"
        "data_dir: /var/lib/cairn\n"
        "seeds: a:9001,b\n"
        "num_tokens: 64\n"
        "sync: periodic\n"
        "sync_period_ms: 25\n"
        "max_value_bytes: 1MiB\n"
        "memtable_bytes: 8 MiB\n"
        "gc_grace_seconds: 3600\n"
        "log_level: debug\n");
    node_config_t c;
    node_config_init(&c);
    char buf[PATH_MAX + 16];
    assert_int_equal(load(&c, ARGV(flag_eq(buf, sizeof buf, "--config", path)),
                          NOENV, NULL),
                     KV_OK);
    assert_string_equal(c.cluster_name, "prod-eu");
    assert_string_equal(c.node_name, "n1");
    assert_int_equal(c.client_port, 9000);
    assert_int_equal(c.peer_port, 9001);
    assert_int_equal(c.admin_port, 7072);
    assert_string_equal(c.data_dir, "/var/lib/cairn");
    assert_string_equal(c.seeds, "a:9001,b");
    assert_int_equal(c.num_tokens, 64);
    assert_string_equal(c.sync, "periodic");
    assert_int_equal(c.sync_period_ms, 25);
    assert_int_equal(c.max_value_bytes, 1u << 20);
    assert_int_equal(c.memtable_bytes, 8u << 20);
    assert_int_equal(c.gc_grace_seconds, 3600);
    assert_string_equal(c.log_level, "debug");
    node_config_deinit(&c);
    test_rmrf(dir);
}

static void test_config_file_named_by_env_and_flag_wins(void **state)
{
    (void)state;
    const char *dir = test_tmpdir("config-which");
    char a_path[PATH_MAX], b_path[PATH_MAX + 16], env[PATH_MAX + 16];
    snprintf(a_path, sizeof a_path, "%s", write_config(dir, "rack: ra\n"));
    snprintf(b_path, sizeof b_path, "%s/b.yaml", dir);
    FILE *f = fopen(b_path, "w");
    assert_non_null(f);
    fputs("rack: rb\n", f);
    fclose(f);
    snprintf(env, sizeof env, "CAIRN_CONFIG=%s", a_path);

    node_config_t c;
    node_config_init(&c);
    assert_int_equal(load(&c, NOARGS, ENV(env), NULL), KV_OK);
    assert_string_equal(c.rack, "ra");
    assert_int_equal(load(&c, ARGV("--config", b_path), ENV(env), NULL), KV_OK);
    assert_string_equal(c.rack, "rb");
    /* an empty CAIRN_CONFIG names no file */
    assert_int_equal(load(&c, NOARGS, ENV("CAIRN_CONFIG="), NULL), KV_OK);
    assert_string_equal(c.rack, "rack1");
    node_config_deinit(&c);
    test_rmrf(dir);
}

static void test_config_precedence_is_flag_env_file_default(void **state)
{
    (void)state;
    const char *dir = test_tmpdir("config-prec");
    const char *path = write_config(dir,
        "client_port: 8000\npeer_port: 8001\nadmin_port: 8002\n");
    node_config_t c;
    node_config_init(&c);
    /* env overrides file */
    assert_int_equal(load(&c, ARGV("--config", (char *)path),
                          ENV("CAIRN_PEER_PORT=8101", "CAIRN_ADMIN_PORT=8102"),
                          NULL),
                     KV_OK);
    assert_int_equal(c.client_port, 8000);
    assert_int_equal(c.peer_port, 8101);
    assert_int_equal(c.admin_port, 8102);
    /* flag overrides env */
    assert_int_equal(load(&c, ARGV("--config", (char *)path, "--admin-port", "8202"),
                          ENV("CAIRN_PEER_PORT=8101", "CAIRN_ADMIN_PORT=8102"),
                          NULL),
                     KV_OK);
    assert_int_equal(c.client_port, 8000);
    assert_int_equal(c.peer_port, 8101);
    assert_int_equal(c.admin_port, 8202);
    /* the order of the arguments does not matter; a later flag wins */
    assert_int_equal(load(&c, ARGV("--admin-port=8300", "--admin-port", "8301",
                                   "--config", (char *)path),
                          NOENV, NULL),
                     KV_OK);
    assert_int_equal(c.admin_port, 8301);
    assert_int_equal(c.client_port, 8000);
    node_config_deinit(&c);
    test_rmrf(dir);
}

static void test_config_flags_take_both_spellings(void **state)
{
    (void)state;
    node_config_t c;
    node_config_init(&c);
    assert_int_equal(load(&c, ARGV("--data-dir", "/d1", "--rack=r2",
                                   "--seeds=", "--node-name", "x=y"),
                          NOENV, NULL),
                     KV_INVALID); /* x=y is not a valid node name */
    assert_int_equal(load(&c, ARGV("--data-dir", "/d1", "--rack=r2",
                                   "--seeds=", "--listen-address=0.0.0.0",
                                   "--advertise-address=10.0.0.1"),
                          NOENV, NULL),
                     KV_OK);
    assert_string_equal(c.data_dir, "/d1");
    assert_string_equal(c.rack, "r2");
    assert_string_equal(c.seeds, "");
    assert_string_equal(c.listen_address, "0.0.0.0");
    /* --x=y keeps everything after the first '=' */
    assert_int_equal(load(&c, ARGV("--data-dir=/a=b"), NOENV, NULL), KV_OK);
    assert_string_equal(c.data_dir, "/a=b");
    node_config_deinit(&c);
}

static void test_config_sizes_take_binary_suffixes(void **state)
{
    (void)state;
    static const struct { const char *text; uint64_t want; } CASES[] = {
        {"0", 0},
        {"4096", 4096},
        {"1KiB", 1024},
        {"3k", 3072},
        {"3K", 3072},
        {"2MiB", 2u << 20},
        {"2m", 2u << 20},
        {"5GiB", UINT64_C(5) << 30},
        {"5g", UINT64_C(5) << 30},
        {"1TiB", UINT64_C(1) << 40},
        {"7 MiB", UINT64_C(7) << 20},
        {"12B", 12},
    };
    node_config_t c;
    node_config_init(&c);
    for (size_t i = 0; i < KV_ARRAY_LEN(CASES); i++) {
        char flag[64];
        flag_eq(flag, sizeof flag, "--cache-bytes", CASES[i].text);
        assert_int_equal(load(&c, ARGV(flag), NOENV, NULL), KV_OK);
        if (c.cache_bytes != CASES[i].want)
            fail_msg("%s gave %" PRIu64, CASES[i].text, c.cache_bytes);
    }
    node_config_deinit(&c);
}

static void test_config_seeds_may_be_a_yaml_list(void **state)
{
    (void)state;
    const char *dir = test_tmpdir("config-seeds");
    node_config_t c;
    node_config_init(&c);
    const char *path = write_config(dir,
        "seeds:\n  - 10.0.0.1:7071\n  - \"10.0.0.2\"\n  - '[::1]:7071'\n");
    assert_int_equal(load(&c, ARGV("--config", (char *)path), NOENV, NULL),
                     KV_OK);
    assert_string_equal(c.seeds, "10.0.0.1:7071,10.0.0.2,[::1]:7071");
    path = write_config(dir, "seeds: [a, b:1]\n");
    assert_int_equal(load(&c, ARGV("--config", (char *)path), NOENV, NULL),
                     KV_OK);
    assert_string_equal(c.seeds, "a,b:1");
    path = write_config(dir, "seeds: []\n");
    assert_int_equal(load(&c, ARGV("--config", (char *)path), NOENV, NULL),
                     KV_OK);
    assert_string_equal(c.seeds, "");
    node_config_deinit(&c);
    test_rmrf(dir);
}

static void test_config_empty_file_and_empty_document_are_defaults(void **state)
{
    (void)state;
    const char *dir = test_tmpdir("config-empty");
    static const char *TEXTS[] = {"", "# nothing\n", "---\n", "---\n...\n",
                                  "{}\n"};
    node_config_t c;
    node_config_init(&c);
    for (size_t i = 0; i < KV_ARRAY_LEN(TEXTS); i++) {
        const char *path = write_config(dir, TEXTS[i]);
        if (load(&c, ARGV("--config", (char *)path), NOENV, NULL) != KV_OK)
            fail_msg("'%s': %s", TEXTS[i], kv_errmsg());
        assert_int_equal(c.client_port, 7070);
    }
    node_config_deinit(&c);
    test_rmrf(dir);
}

static void test_config_harness_and_tool_variables_are_ignored(void **state)
{
    (void)state;
    node_config_t c;
    node_config_init(&c);
    /* CAIRN_HOST belongs to the cairn tool (its contact points) */
    assert_int_equal(load(&c, NOARGS,
                          ENV("CAIRN_TEST_TMP=/tmp/x", "CAIRN_TEST_SEED=5",
                              "CAIRN_CRASH_ROUNDS=3", "CAIRN_MODEL_STEPS=9",
                              "CAIRN_HOST=127.0.0.1,127.0.0.2:7070",
                              "CAIRNX=1", "NOTCAIRN_FOO=1", "CAIRN_NOEQUALS"),
                          NULL),
                     KV_OK);
    assert_string_equal(c.listen_address, "127.0.0.1");
    node_config_deinit(&c);
    /* only that exact name: a look-alike is still a typo */
    expect_error(KV_INVALID, NOARGS, ENV("CAIRN_HOSTS=x"), "CAIRN_HOSTS");
}

static void test_config_loading_twice_replaces_strings(void **state)
{
    (void)state;
    /* the leak check of kv_unit_test fails this test if a string leaks */
    node_config_t c;
    node_config_init(&c);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(load(&c, ARGV("--cluster-name", "c1", "--seeds", "a,b"),
                              ENV("CAIRN_CLUSTER_NAME=c0", "CAIRN_RACK=r9"),
                              NULL),
                         KV_OK);
        assert_string_equal(c.cluster_name, "c1");
        assert_string_equal(c.rack, "r9");
    }
    node_config_deinit(&c);
    /* a zeroed config is a valid starting point too */
    node_config_t z = {0};
    assert_int_equal(load(&z, NOARGS, NOENV, NULL), KV_OK);
    node_config_deinit(&z);
    node_config_deinit(&z); /* deinit twice is harmless */
}

/* ---- actions ------------------------------------------------------------ */

static void test_config_actions(void **state)
{
    (void)state;
    node_config_t c;
    node_config_init(&c);
    node_action_t a;
    assert_int_equal(load(&c, ARGV("--help"), NOENV, &a), KV_OK);
    assert_int_equal(a, NODE_HELP);
    assert_int_equal(load(&c, ARGV("-h"), NOENV, &a), KV_OK);
    assert_int_equal(a, NODE_HELP);
    assert_int_equal(load(&c, ARGV("--version"), NOENV, &a), KV_OK);
    assert_int_equal(a, NODE_VERSION);
    assert_int_equal(load(&c, ARGV("--print-config", "--client-port", "9"),
                          NOENV, &a),
                     KV_OK);
    assert_int_equal(a, NODE_PRINT_CONFIG);
    assert_int_equal(c.client_port, 9);
    /* --help works even when the environment or the file is broken */
    assert_int_equal(load(&c, ARGV("--help"),
                          ENV("CAIRN_CONFIG=/nonexistent/x.yaml",
                              "CAIRN_BOGUS=1"),
                          &a),
                     KV_OK);
    assert_int_equal(a, NODE_HELP);
    /* --print-config shows a config that would not start (to debug it) */
    assert_int_equal(load(&c, ARGV("--print-config", "--peer-port=7070"), NOENV,
                          &a),
                     KV_OK);
    assert_int_equal(a, NODE_PRINT_CONFIG);
    assert_int_equal(load(&c, ARGV("--peer-port=7070"), NOENV, &a), KV_INVALID);
    expect_error(KV_INVALID, ARGV("--help=yes"), NOENV, "--help");
    node_config_deinit(&c);
}

/* ---- bad values name the setting and the source ------------------------- */

static void test_config_bad_numbers_name_setting_and_source(void **state)
{
    (void)state;
    expect_error(KV_INVALID, NOARGS, ENV("CAIRN_CLIENT_PORT=abc"),
                 "client_port: 'abc' is not a port number (from "
                 "CAIRN_CLIENT_PORT)");
    expect_error(KV_INVALID, ARGV("--client-port", "abc"), NOENV,
                 "client_port", "(from --client-port)");
    expect_error(KV_INVALID, ARGV("--client-port=65536"), NOENV, "client_port",
                 "65536", "--client-port");
    expect_error(KV_INVALID, ARGV("--peer-port=0"), NOENV, "peer_port",
                 "--peer-port");
    expect_error(KV_INVALID, ARGV("--num-tokens=12abc"), NOENV, "num_tokens",
                 "12abc", "--num-tokens");
    expect_error(KV_INVALID, ARGV("--num-tokens=-1"), NOENV, "num_tokens",
                 "--num-tokens");
    expect_error(KV_INVALID, ARGV("--num-tokens=+1"), NOENV, "num_tokens");
    expect_error(KV_INVALID, ARGV("--num-tokens= 1"), NOENV, "num_tokens");
    expect_error(KV_INVALID, ARGV("--num-tokens="), NOENV, "num_tokens");
    expect_error(KV_INVALID, ARGV("--max-connections=4294967296"), NOENV,
                 "max_connections", "too large", "--max-connections");
    expect_error(KV_INVALID, ARGV("--gc-grace-seconds=18446744073709551616"),
                 NOENV, "gc_grace_seconds", "--gc-grace-seconds");
    expect_error(KV_INVALID, NOARGS, ENV("CAIRN_REQUEST_TIMEOUT_MS=2s"),
                 "request_timeout_ms", "milliseconds",
                 "CAIRN_REQUEST_TIMEOUT_MS");
    expect_error(KV_INVALID, NOARGS, ENV("CAIRN_MAX_CLOCK_OFFSET_MS=1.5"),
                 "max_clock_offset_ms", "CAIRN_MAX_CLOCK_OFFSET_MS");
    expect_error(KV_INVALID, ARGV("--memtable-bytes=12XB"), NOENV,
                 "memtable_bytes", "not a size", "--memtable-bytes");
    expect_error(KV_INVALID, ARGV("--memtable-bytes=16MB"), NOENV,
                 "memtable_bytes");
    expect_error(KV_INVALID, ARGV("--memtable-bytes=MiB"), NOENV,
                 "memtable_bytes");
    expect_error(KV_INVALID, ARGV("--memtable-bytes=-1KiB"), NOENV,
                 "memtable_bytes");
    expect_error(KV_INVALID, ARGV("--memtable-bytes=16777216TiB"), NOENV,
                 "memtable_bytes", "too large");
    expect_error(KV_INVALID, ARGV("--memtable-bytes=1 "), NOENV,
                 "memtable_bytes");
    expect_error(KV_INVALID, ARGV("--sync=always"), NOENV, "sync", "always",
                 "group|periodic", "--sync");
    expect_error(KV_INVALID, NOARGS, ENV("CAIRN_LOG_LEVEL=verbose"),
                 "log_level", "verbose", "CAIRN_LOG_LEVEL");
}

static void test_config_bad_file_values_name_the_line(void **state)
{
    (void)state;
    const char *dir = test_tmpdir("config-badval");
    char line_src[PATH_MAX + 32];
    const char *path = write_config(dir,
        "cluster_name: c\n"
        "\n"
        "client_port: abc\n");
    snprintf(line_src, sizeof line_src, "(from %s line 3)", path);
    expect_error(KV_INVALID, ARGV("--config", (char *)path), NOENV,
                 "client_port: 'abc' is not a port number", line_src);

    path = write_config(dir, "rack: r\nnum_tokens:\n  - 1\n");
    expect_error(KV_INVALID, ARGV("--config", (char *)path), NOENV,
                 "num_tokens", "a list", "line 3");
    path = write_config(dir, "rack:\n  a: b\n");
    expect_error(KV_INVALID, ARGV("--config", (char *)path), NOENV, "rack",
                 "a mapping", "line 2");
    path = write_config(dir, "seeds:\n  - a\n  - [b]\n");
    expect_error(KV_INVALID, ARGV("--config", (char *)path), NOENV, "seeds",
                 "line 3");
    path = write_config(dir, "rack: &r x\ncluster_name: *r\n");
    expect_error(KV_INVALID, ARGV("--config", (char *)path), NOENV,
                 "cluster_name", "alias", "line 2");
    test_rmrf(dir);
}

static void test_config_file_structure_errors(void **state)
{
    (void)state;
    const char *dir = test_tmpdir("config-struct");
    const char *path = write_config(dir,
        "cluster_name: c\nclient_prot: 1\n");
    expect_error(KV_INVALID, ARGV("--config", (char *)path), NOENV,
                 "unknown key 'client_prot'", "line 2", path,
                 "did you mean client_port");
    path = write_config(dir, "rack: a\nrack: b\n");
    expect_error(KV_INVALID, ARGV("--config", (char *)path), NOENV, "rack",
                 "duplicate", "line 2", "first at line 1");
    path = write_config(dir, "- a\n- b\n");
    expect_error(KV_INVALID, ARGV("--config", (char *)path), NOENV, path,
                 "mapping");
    path = write_config(dir, "just a string\n");
    expect_error(KV_INVALID, ARGV("--config", (char *)path), NOENV, path,
                 "mapping");
    path = write_config(dir, "rack: a\n---\nrack: b\n");
    expect_error(KV_INVALID, ARGV("--config", (char *)path), NOENV, path,
                 "one YAML document");
    path = write_config(dir, "[a]: b\n");
    expect_error(KV_INVALID, ARGV("--config", (char *)path), NOENV, path,
                 "line 1");
    /* malformed YAML: libyaml's problem with line and column */
    path = write_config(dir, "rack: a\ncluster_name: \"unterminated\n");
    expect_error(KV_INVALID, ARGV("--config", (char *)path), NOENV, path,
                 "YAML error", "line", "column");
    path = write_config(dir, "rack: a\n  bad indent: b\nx\n");
    expect_error(KV_INVALID, ARGV("--config", (char *)path), NOENV, path,
                 "YAML error", "line 2");
    path = write_config(dir, "rack: \"a\tb\\q\"\n");
    expect_error(KV_INVALID, ARGV("--config", (char *)path), NOENV, path,
                 "YAML error");
    /* bytes that are not UTF-8: libyaml's reader names an offset */
    path = write_config(dir, "rack: a\ncluster_name: \"\xff\"\n");
    expect_error(KV_INVALID, ARGV("--config", (char *)path), NOENV, path,
                 "YAML error at byte 23", "UTF-8");
    test_rmrf(dir);
}

static void test_config_missing_file_is_an_error(void **state)
{
    (void)state;
    const char *dir = test_tmpdir("config-missing");
    char path[PATH_MAX + 32], env[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/nope.yaml", dir);
    snprintf(env, sizeof env, "CAIRN_CONFIG=%s", path);
    expect_error(KV_NOTFOUND, ARGV("--config", path), NOENV, "nope.yaml",
                 "--config");
    expect_error(KV_NOTFOUND, NOARGS, ENV(env), "nope.yaml", "CAIRN_CONFIG");
    /* a directory is not a config file */
    expect_error(KV_IO, ARGV("--config", (char *)dir), NOENV, dir, "--config");
    expect_error(KV_INVALID, ARGV("--config"), NOENV, "--config", "value");
    expect_error(KV_INVALID, ARGV("--config="), NOENV, "--config");
    test_rmrf(dir);
}

static void test_config_unknown_flags_and_arguments(void **state)
{
    (void)state;
    expect_error(KV_INVALID, ARGV("--bogus"), NOENV, "unknown flag --bogus");
    expect_error(KV_INVALID, ARGV("--data-dri=/x"), NOENV,
                 "unknown flag --data-dri", "did you mean --data-dir");
    expect_error(KV_INVALID, ARGV("--data_dir=/x"), NOENV,
                 "unknown flag --data_dir", "--data-dir");
    expect_error(KV_INVALID, ARGV("--Data-Dir=/x"), NOENV, "--Data-Dir");
    expect_error(KV_INVALID, ARGV("-x"), NOENV, "unknown flag -x");
    expect_error(KV_INVALID, ARGV("start"), NOENV, "unexpected argument 'start'");
    expect_error(KV_INVALID, ARGV("-"), NOENV, "'-'");
    expect_error(KV_INVALID, ARGV("--"), NOENV, "'--'");
    expect_error(KV_INVALID, ARGV("--data-dir"), NOENV, "data_dir",
                 "--data-dir needs a value");
    expect_error(KV_INVALID, ARGV("--data-dir", "--rack=r"), NOENV, "data_dir",
                 "--data-dir needs a value", "--rack=r");
}

static void test_config_unknown_cairn_variables_are_errors(void **state)
{
    (void)state;
    expect_error(KV_INVALID, NOARGS, ENV("HOME=/", "CAIRN_CLIENT_PROT=1"),
                 "unknown environment variable CAIRN_CLIENT_PROT",
                 "did you mean CAIRN_CLIENT_PORT");
    expect_error(KV_INVALID, NOARGS, ENV("CAIRN_data_dir=/x"),
                 "CAIRN_data_dir");
    expect_error(KV_INVALID, NOARGS, ENV("CAIRN_=1"),
                 "unknown environment variable CAIRN_");
    expect_error(KV_INVALID, NOARGS, ENV("CAIRN_ZZZZZZZZZZZZZZZZ=1"),
                 "CAIRN_ZZZZZZZZZZZZZZZZ");
}

/* ---- help and print ----------------------------------------------------- */

static char *capture(void (*fn)(const node_config_t *, FILE *),
                     const node_config_t *c)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    if (fn) fn(c, f);
    else node_config_print_help(f);
    fclose(f);
    return text; /* libc malloc: free() */
}

static void print_config_fn(const node_config_t *c, FILE *f)
{
    node_config_print(c, f);
}

static void test_config_help_lists_every_setting(void **state)
{
    (void)state;
    static const char *SETTINGS[] = {
        "cluster_name", "node_name", "listen_address", "client_port",
        "peer_port", "admin_port", "data_dir", "advertise_address", "seeds",
        "initial_cluster",
        "rack", "num_tokens", "replication_factor", "sync", "sync_period_ms",
        "max_key_bytes", "max_value_bytes", "max_frame_bytes",
        "max_connections", "max_inflight", "request_timeout_ms",
        "drain_timeout_ms", "idle_timeout_ms", "max_clock_offset_ms",
        "peer_timeout_ms", "peer_queue_bytes", "gossip_probe_interval_ms",
        "gossip_probe_timeout_ms", "gossip_interval_ms",
        "gossip_pushpull_interval_ms", "phi_convict_threshold",
        "hinted_handoff", "max_hint_window_ms", "max_hints_bytes",
        "hint_replay_bytes_per_sec", "read_repair_chance",
        "read_repair_chance_quorum", "auto_bootstrap", "replace_node",
        "ring_delay_ms", "stream_bytes_per_sec", "repair_interval_ms",
        "repair_bytes_per_sec", "memtable_bytes",
        "cache_bytes", "gc_grace_seconds", "log_level",
        "client_tls", "peer_tls", "tls_ca_file", "tls_cert_file", "tls_key_file",
        "client_auth", "users_file", "cluster_secret", "cluster_secret_file",
        "gossip_replay_window_ms",
    };
    char *help = capture(NULL, NULL);
    assert_non_null(strstr(help, "Usage: cairnd"));
    assert_non_null(strstr(help, "--config PATH"));
    assert_non_null(strstr(help, "CAIRN_CONFIG"));
    assert_non_null(strstr(help, "--print-config"));
    assert_non_null(strstr(help, "--version"));
    assert_non_null(strstr(help, "default \"cairn\""));
    assert_non_null(strstr(help, "default 16MiB"));
    assert_non_null(strstr(help, "--sync CHOICE"));
    assert_non_null(strstr(help, "one of group|periodic"));
    assert_non_null(strstr(help, "one of error|warn|info|debug|trace"));
    for (size_t i = 0; i < KV_ARRAY_LEN(SETTINGS); i++) {
        char flag[64], env[64];
        size_t n = 0;
        flag[n++] = '-';
        flag[n++] = '-';
        for (const char *p = SETTINGS[i]; *p; p++) flag[n++] = *p == '_' ? '-' : *p;
        flag[n++] = ' ';
        flag[n] = 0;
        n = (size_t)snprintf(env, sizeof env, "CAIRN_");
        for (const char *p = SETTINGS[i]; *p; p++)
            env[n++] = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
        env[n++] = ' ';
        env[n] = 0;
        if (!strstr(help, flag)) fail_msg("help lacks '%s'", flag);
        if (!strstr(help, env)) fail_msg("help lacks '%s'", env);
        /* and each one is a real flag and variable */
        flag[strlen(flag) - 1] = 0;
        env[strlen(env) - 1] = 0;
        node_config_t c;
        node_config_init(&c);
        node_action_t a;
        assert_int_equal(load(&c, ARGV("--print-config", flag, "x"), NOENV, &a) ==
                                 KV_OK ||
                             strstr(kv_errmsg(), SETTINGS[i]),
                         1);
        node_config_deinit(&c);
    }
    free(help);
    /* and the list above is every setting: --print-config writes one
     * "name: value" line per setting, so a new one shows up here */
    node_config_t c;
    node_config_init(&c);
    char *text = capture(print_config_fn, &c);
    size_t lines = 0;
    for (const char *l = text; *l;) {
        const char *nl = strchr(l, '\n');
        assert_non_null(nl);
        if (*l != '#') lines++;
        l = nl + 1;
    }
    free(text);
    node_config_deinit(&c);
    assert_int_equal(lines, KV_ARRAY_LEN(SETTINGS));
}

static void assert_configs_equal(const node_config_t *a, const node_config_t *b)
{
    char *ta = capture(print_config_fn, a);
    char *tb = capture(print_config_fn, b);
    assert_string_equal(ta, tb);
    free(ta);
    free(tb);
}

static void test_config_print_round_trips(void **state)
{
    (void)state;
    const char *dir = test_tmpdir("config-print");
    node_config_t c, back;
    node_config_init(&c);
    node_config_init(&back);
    assert_int_equal(
        load(&c, ARGV("--cluster-name=prod", "--node-name=n-7",
                      "--data-dir=/tmp/with \"quotes\" \\ and: colon # x",
                      "--seeds=a:1,[::1]:2", "--sync=periodic",
                      "--max-value-bytes=1000001", "--cache-bytes=0",
                      "--memtable-bytes=3GiB", "--idle-timeout-ms=60000",
                      "--listen-address=::", "--advertise-address=::1",
                      "--initial-cluster=n-7=127.0.0.1:7071,x=[::1]:7071@r2",
                      "--peer-timeout-ms=150", "--peer-queue-bytes=1GiB"),
             NOENV, NULL),
        KV_OK);
    char *text = capture(print_config_fn, &c);
    assert_non_null(strstr(text, "cluster_name: \"prod\"\n"));
    assert_non_null(strstr(
        text, "initial_cluster: \"n-7=127.0.0.1:7071,x=[::1]:7071@r2\"\n"));
    assert_non_null(strstr(text, "peer_timeout_ms: 150\n"));
    assert_non_null(strstr(text, "peer_queue_bytes: 1GiB\n"));
    assert_non_null(strstr(text, "memtable_bytes: 3GiB\n"));
    assert_non_null(strstr(text, "max_value_bytes: 1000001\n"));
    const char *path = write_config(dir, text);
    free(text);
    assert_int_equal(load(&back, ARGV("--config", (char *)path), NOENV, NULL),
                     KV_OK);
    assert_string_equal(back.data_dir, c.data_dir);
    assert_int_equal(back.memtable_bytes, UINT64_C(3) << 30);
    assert_string_equal(back.initial_cluster, c.initial_cluster);
    assert_configs_equal(&c, &back);

    /* defaults round-trip too, and an empty string stays a string */
    node_config_deinit(&c);
    node_config_init(&c);
    text = capture(print_config_fn, &c);
    assert_non_null(strstr(text, "seeds: \"\"\n"));
    path = write_config(dir, text);
    free(text);
    assert_int_equal(load(&back, ARGV("--config", (char *)path), NOENV, NULL),
                     KV_OK);
    assert_configs_equal(&c, &back);
    node_config_deinit(&c);
    node_config_deinit(&back);
    test_rmrf(dir);
}

/* ---- validate ----------------------------------------------------------- */

typedef void (*mutate_fn)(node_config_t *c);

static void set_ports_same(node_config_t *c) { c->admin_port = c->client_port; }
static void set_peer_admin_same(node_config_t *c) { c->admin_port = c->peer_port; }
static void set_port_zero(node_config_t *c) { c->peer_port = 0; }
static void set_rf_zero(node_config_t *c) { c->replication_factor = 0; }
static void set_tokens_zero(node_config_t *c) { c->num_tokens = 0; }
static void set_tokens_257(node_config_t *c) { c->num_tokens = 257; }
static void set_key_big(node_config_t *c) { c->max_key_bytes = 65537; }
static void set_key_zero(node_config_t *c) { c->max_key_bytes = 0; }
static void set_frame_small(node_config_t *c)
{
    c->max_frame_bytes = c->max_key_bytes + c->max_value_bytes + 1024;
}
static void set_value_huge(node_config_t *c) { c->max_value_bytes = UINT64_MAX; }
static void set_conns_zero(node_config_t *c) { c->max_connections = 0; }
static void set_str(char **slot, const char *v)
{
    kv_free(*slot);
    *slot = v ? kv_strdup(v) : NULL;
}
static void set_cluster_empty(node_config_t *c) { set_str(&c->cluster_name, ""); }
static void set_cluster_long(node_config_t *c)
{
    set_str(&c->cluster_name,
            "a234567890123456789012345678901234567890123456789012345678901234X");
}
static void set_cluster_bad(node_config_t *c) { set_str(&c->cluster_name, "a b"); }
static void set_node_bad(node_config_t *c) { set_str(&c->node_name, "n/1"); }
static void set_node_null(node_config_t *c) { set_str(&c->node_name, NULL); }
static void set_data_empty(node_config_t *c) { set_str(&c->data_dir, ""); }
static void set_sync_bad(node_config_t *c) { set_str(&c->sync, "sometimes"); }
static void set_log_bad(node_config_t *c) { set_str(&c->log_level, "loud"); }
static void set_seeds_bad(node_config_t *c) { set_str(&c->seeds, "a,,b"); }
static void set_seeds_space(node_config_t *c) { set_str(&c->seeds, "a, b"); }
static void set_seeds_port(node_config_t *c) { set_str(&c->seeds, "a:99999"); }
static void set_peer_timeout_low(node_config_t *c) { c->peer_timeout_ms = 99; }
static void set_peer_queue_small(node_config_t *c)
{
    c->peer_queue_bytes = c->max_frame_bytes - 1;
}
static void set_any_addr(node_config_t *c) { set_str(&c->listen_address, "0.0.0.0"); }
static void set_probe_timeout_long(node_config_t *c)
{
    c->gossip_probe_timeout_ms = c->gossip_probe_interval_ms;
}
static void set_gossip_fast(node_config_t *c) { c->gossip_interval_ms = 5; }
static void set_phi_zero(node_config_t *c) { c->phi_convict_threshold = 0; }
static void set_phi_big(node_config_t *c) { c->phi_convict_threshold = 17; }
static void set_rr_big(node_config_t *c) { c->read_repair_chance = 101; }
static void set_rrq_big(node_config_t *c) { c->read_repair_chance_quorum = 250; }
static void set_replay_slow(node_config_t *c) { c->hint_replay_bytes_per_sec = 1000; }
static void set_stream_slow(node_config_t *c) { c->stream_bytes_per_sec = 1000; }
static void set_initial_bad(node_config_t *c)
{
    set_str(&c->initial_cluster, "nobody=h:1");
}

static void test_config_validate_checks_each_rule(void **state)
{
    (void)state;
    static const struct { mutate_fn fn; const char *needle[2]; } CASES[] = {
        {set_ports_same, {"client_port", "admin_port"}},
        {set_peer_admin_same, {"peer_port", "admin_port"}},
        {set_port_zero, {"peer_port", "0"}},
        {set_rf_zero, {"replication_factor", "1"}},
        {set_tokens_zero, {"num_tokens", "1..256"}},
        {set_tokens_257, {"num_tokens", "257"}},
        {set_key_big, {"max_key_bytes", "65536"}},
        {set_key_zero, {"max_key_bytes", "65536"}},
        {set_frame_small, {"max_frame_bytes", "max_value_bytes"}},
        {set_value_huge, {"max_frame_bytes", "max_key_bytes"}},
        {set_conns_zero, {"max_connections", "1"}},
        {set_cluster_empty, {"cluster_name", "64"}},
        {set_cluster_long, {"cluster_name", "64"}},
        {set_cluster_bad, {"cluster_name", "a b"}},
        {set_node_bad, {"node_name", "n/1"}},
        {set_node_null, {"node_name", "64"}},
        {set_data_empty, {"data_dir", "empty"}},
        {set_sync_bad, {"sync", "sometimes"}},
        {set_log_bad, {"log_level", "loud"}},
        {set_seeds_bad, {"seeds", "''"}},
        {set_seeds_space, {"seeds", "' b'"}},
        {set_seeds_port, {"seeds", "a:99999"}},
        {set_peer_timeout_low, {"peer_timeout_ms", "99"}},
        {set_peer_queue_small, {"peer_queue_bytes", "max_frame_bytes"}},
        {set_initial_bad, {"initial_cluster", "does not list"}},
        {set_any_addr, {"advertise_address", "0.0.0.0"}},
        {set_probe_timeout_long, {"gossip_probe_timeout_ms", "below"}},
        {set_gossip_fast, {"gossip_interval_ms", "10"}},
        {set_phi_zero, {"phi_convict_threshold", "1-16"}},
        {set_phi_big, {"phi_convict_threshold", "17"}},
        {set_rr_big, {"read_repair_chance", "101"}},
        {set_rrq_big, {"read_repair_chance_quorum", "250"}},
        {set_replay_slow, {"hint_replay_bytes_per_sec", "1KiB"}},
        {set_stream_slow, {"stream_bytes_per_sec", "64KiB"}},
    };
    for (size_t i = 0; i < KV_ARRAY_LEN(CASES); i++) {
        node_config_t c;
        node_config_init(&c);
        assert_int_equal(node_config_validate(&c), KV_OK);
        CASES[i].fn(&c);
        kv_errmsg_clear();
        if (node_config_validate(&c) != KV_INVALID)
            fail_msg("case %zu passed validation", i);
        for (size_t k = 0; k < 2; k++)
            if (!strstr(kv_errmsg(), CASES[i].needle[k]))
                fail_msg("case %zu: '%s' lacks '%s'", i, kv_errmsg(),
                         CASES[i].needle[k]);
        node_config_deinit(&c);
    }
    /* the boundaries themselves are fine */
    node_config_t c;
    node_config_init(&c);
    c.num_tokens = 256;
    c.max_key_bytes = 65536;
    c.max_frame_bytes = c.max_key_bytes + c.max_value_bytes + 1025;
    set_str(&c.cluster_name,
            "a234567890123456789012345678901234567890123456789012345678901234");
    set_str(&c.seeds, "h1,h2:1,[fe80::1],[::1]:65535");
    assert_int_equal(node_config_validate(&c), KV_OK);
    node_config_deinit(&c);
    /* load runs validate for NODE_RUN */
    expect_error(KV_INVALID, ARGV("--num-tokens=300"), NOENV, "num_tokens");
}

/* ---- initial_cluster and the peer settings ------------------------------ */

/* A node that is not a founder joins through seeds: its initial_cluster may
 * list the founders without it, or be empty. Without seeds it may not. */
static void test_config_joining_node_needs_seeds(void **state)
{
    (void)state;
    node_config_t c;
    node_config_init(&c);
    set_str(&c.node_name, "n4");
    set_str(&c.initial_cluster, "n1=10.0.0.1:7071,n2=10.0.0.2:7071");
    node_member_t *m = NULL;
    size_t n = 0;
    assert_int_equal(node_config_members(&c, &m, &n), KV_INVALID);
    assert_non_null(strstr(kv_errmsg(), "sets seeds"));
    set_str(&c.seeds, "10.0.0.1");
    assert_int_equal(node_config_members(&c, &m, &n), KV_OK);
    assert_int_equal(n, 2); /* the founders, not this node */
    assert_string_equal(m[0].name, "n1");
    node_members_free(m, n);
    set_str(&c.initial_cluster, "");
    m = NULL;
    assert_int_equal(node_config_members(&c, &m, &n), KV_OK);
    assert_int_equal(n, 0);
    node_members_free(m, n);
    /* alone: no seeds, no list -> a cluster of this node */
    set_str(&c.seeds, "");
    assert_int_equal(node_config_members(&c, &m, &n), KV_OK);
    assert_int_equal(n, 1);
    assert_string_equal(m[0].name, "n4");
    node_members_free(m, n);
    node_config_deinit(&c);
}

typedef struct want_member {
    const char *name, *host;
    uint16_t port;
    const char *rack;
} want_member_t;

/* node_config_members of C must give exactly WANT[0, n), in list order. */
static void expect_members(const node_config_t *c, const want_member_t *want,
                           size_t n)
{
    node_member_t *m = NULL;
    size_t got = 0;
    kv_errmsg_clear();
    if (node_config_members(c, &m, &got) != KV_OK)
        fail_msg("'%s': %s", c->initial_cluster, kv_errmsg());
    assert_non_null(m);
    assert_int_equal(got, n);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(m[i].name, want[i].name);
        assert_string_equal(m[i].host, want[i].host);
        assert_int_equal(m[i].peer_port, want[i].port);
        assert_string_equal(m[i].rack, want[i].rack);
    }
    node_members_free(m, got);
}

/* Load node n1 (peer_port 7071, rack1 unless flags say otherwise) with
 * initial_cluster LIST plus EXTRA flags; must succeed. */
static void load_cluster(node_config_t *c, const char *list, const char *extra)
{
    char flag[512];
    flag_eq(flag, sizeof flag, "--initial-cluster", list);
    kv_status_t rc = extra ? load(c, ARGV("--node-name=n1", flag, (char *)extra),
                                  NOENV, NULL)
                           : load(c, ARGV("--node-name=n1", flag), NOENV, NULL);
    if (rc != KV_OK) fail_msg("'%s': %s", list, kv_errmsg());
    assert_string_equal(c->initial_cluster, list);
}

static void test_config_initial_cluster_parses_every_field(void **state)
{
    (void)state;
    node_config_t c;
    node_config_init(&c);

    /* without racks: every member is in the default rack */
    load_cluster(&c, "n1=10.0.0.1:7071,n2=node-2.example:7081,n3=[::1]:7071",
                 NULL);
    const want_member_t plain[] = {
        {"n1", "10.0.0.1", 7071, "rack1"},
        {"n2", "node-2.example", 7081, "rack1"},
        {"n3", "::1", 7071, "rack1"},
    };
    expect_members(&c, plain, 3);

    /* with racks (this node's own rack must match --rack) */
    load_cluster(&c, "n1=10.0.0.1:7071@r-a,n2=10.0.0.2:65535@r.b,"
                     "n3=[fe80::1:2]:1@rack_3",
                 "--rack=r-a");
    const want_member_t racks[] = {
        {"n1", "10.0.0.1", 7071, "r-a"},
        {"n2", "10.0.0.2", 65535, "r.b"},
        {"n3", "fe80::1:2", 1, "rack_3"},
    };
    expect_members(&c, racks, 3);

    /* mixed, this node not first, an explicit rack1 */
    load_cluster(&c, "a_0=h:9000@east,n1=[::1]:7071@rack1,Z.9=h:9001",
                 NULL);
    const want_member_t mixed[] = {
        {"a_0", "h", 9000, "east"},
        {"n1", "::1", 7071, "rack1"},
        {"Z.9", "h", 9001, "rack1"},
    };
    expect_members(&c, mixed, 3);

    /* a list of this node alone */
    load_cluster(&c, "n1=127.0.0.1:7071", NULL);
    const want_member_t alone[] = {{"n1", "127.0.0.1", 7071, "rack1"}};
    expect_members(&c, alone, 1);

    /* the same host at two ports, and 64-character names are fine */
    load_cluster(&c, "n1=h:7071,"
                     "a234567890123456789012345678901234567890123456789012345678901234"
                     "=h:7072@"
                     "b234567890123456789012345678901234567890123456789012345678901234",
                 NULL);
    const want_member_t longn[] = {
        {"n1", "h", 7071, "rack1"},
        {"a234567890123456789012345678901234567890123456789012345678901234", "h",
         7072, "b234567890123456789012345678901234567890123456789012345678901234"},
    };
    expect_members(&c, longn, 2);
    node_config_deinit(&c);
}

static void test_config_initial_cluster_empty_is_this_node(void **state)
{
    (void)state;
    node_config_t c;
    node_config_init(&c);
    assert_int_equal(load(&c, ARGV("--node-name=solo", "--listen-address=10.1.2.3",
                                   "--peer-port=9001", "--rack=r5"),
                          NOENV, NULL),
                     KV_OK);
    assert_string_equal(c.initial_cluster, "");
    const want_member_t me[] = {{"solo", "10.1.2.3", 9001, "r5"}};
    expect_members(&c, me, 1);
    /* the defaults: the host name at 127.0.0.1:7071 in rack1 */
    node_config_deinit(&c);
    node_config_init(&c);
    const want_member_t def[] = {{c.node_name, "127.0.0.1", 7071, "rack1"}};
    expect_members(&c, def, 1);
    /* an explicitly empty flag is the same */
    assert_int_equal(load(&c, ARGV("--initial-cluster=", "--node-name=x"),
                          NOENV, NULL),
                     KV_OK);
    const want_member_t x[] = {{"x", "127.0.0.1", 7071, "rack1"}};
    expect_members(&c, x, 1);
    node_config_deinit(&c);
}

static void test_config_initial_cluster_rejects_bad_lists(void **state)
{
    (void)state;
    static const struct {
        const char *list;
        const char *needle; /* besides "initial_cluster" */
    } CASES[] = {
        /* malformed entries: the message quotes the entry */
        {"n1=h:7071,n2h:7072", "'n2h:7072'"},          /* no '=' */
        {"n1h:7071", "'n1h:7071'"},
        {"n1=h:7071,n2=h2", "'n2=h2'"},                /* no port */
        {"n1=h:7071,n2=h2:", "'n2=h2:'"},
        {"n1=h:7071,n2=h2@r1", "'n2=h2@r1'"},
        {"n1=h:7071,n2=[::1]", "'n2=[::1]'"},
        {"n1=h:7071,n2=[::1]@r", "'n2=[::1]@r'"},
        {"n1=h:7071,n2=::1:7072", "'n2=::1:7072'"},    /* v6 needs [] */
        {"n1=h:7071,n2=h2:0", "'n2=h2:0'"},            /* port range */
        {"n1=h:7071,n2=h2:70000", "'n2=h2:70000'"},
        {"n1=h:7071,n2=h2:65536", "'n2=h2:65536'"},
        {"n1=h:7071,n2=h2:99999999999999999999999", "'n2=h2:9999"},
        {"n1=h:7071,n2=h2:70x1", "'n2=h2:70x1'"},      /* non-digits */
        {"n1=h:7071,n2=h2:abc", "'n2=h2:abc'"},
        {"n1=h:7071,n2=h2:-1", "'n2=h2:-1'"},
        {"n1=h:7071,n2=h2:+7072", "'n2=h2:+7072'"},
        {"n1=h:7071,n2=h2:7072:1", "'n2=h2:7072:1'"},
        {"n1=h:7071,n2=:7072", "'n2=:7072'"},          /* no host */
        {"n1=h:7071,n2=[]:7072", "'n2=[]:7072'"},
        {"n1=h:7071,n2=[::1:7072", "'n2=[::1:7072'"},
        {"n1=h:7071,n2=[::1]x:7072", "'n2=[::1]x:7072'"},
        {"n1=h:7071,n/2=h2:7072", "'n/2=h2:7072'"},    /* name chars */
        {"n1=h:7071,n 2=h2:7072", "'n 2=h2:7072'"},
        {"n1=h:7071,n@2=h2:7072", "'n@2=h2:7072'"},
        {"n1=h:7071,=h2:7072", "'=h2:7072'"},
        {"n1=h:7071,"
         "a2345678901234567890123456789012345678901234567890123456789012345"
         "=h2:7072", "'a234567890"},
        {"n1=h:7071,n2=h2:7072@r/1", "'n2=h2:7072@r/1'"}, /* rack chars */
        {"n1=h:7071,n2=h2:7072@", "'n2=h2:7072@'"},
        {"n1=h:7071,n2=h2:7072@r@s", "'n2=h2:7072@r@s'"},
        {"n1=h:7071,n2=h 2:7072", "'n2=h 2:7072'"},    /* spaces */
        {"n1=h:7071, n2=h2:7072", "' n2=h2:7072'"},
        {"n1=h:7071,", "''"},                          /* empty entries */
        {",n1=h:7071", "''"},
        {"n1=h:7071,,n2=h2:7072", "''"},
        {",", "''"},
        /* duplicates */
        {"n1=h:7071,n2=h2:7072,n2=h3:7073", "n2 listed twice"},
        {"n1=h:7071,n1=h2:7071", "n1 listed twice"},
        {"n1=h:7071,n2=h2:7072,n3=h2:7072", "address is listed twice"},
        {"n1=h:7071,n2=h:7071", "address is listed twice"},
        {"n1=h:7071,n2=[::1]:7072@a,n3=[::1]:7072@b", "address is listed twice"},
        /* host names and IPv6 hex digits are case-insensitive */
        {"n1=h:7071,n2=Node.Example:7072,n3=node.example:7072",
         "address is listed twice"},
        {"n1=h:7071,n2=[FE80::A]:7072,n3=[fe80::a]:7072",
         "address is listed twice"},
        /* this node */
        {"n2=h2:7072,n3=h3:7073", "does not list this node"},
        {"N1=h:7071", "'n1'"},
        {"n1=h:7999,n2=h2:7072", "peer_port 7071"},
        {"n2=h2:7072,n1=h:7071@r2", "rack rack1"},
    };
    for (size_t i = 0; i < KV_ARRAY_LEN(CASES); i++) {
        char flag[512];
        flag_eq(flag, sizeof flag, "--initial-cluster", CASES[i].list);
        node_config_t c;
        node_config_init(&c);
        kv_status_t rc = load(&c, ARGV("--node-name=n1", flag), NOENV, NULL);
        if (rc != KV_INVALID)
            fail_msg("'%s' gave %s, want INVALID", CASES[i].list,
                     kv_status_str(rc));
        if (!strstr(kv_errmsg(), "initial_cluster") ||
            !strstr(kv_errmsg(), CASES[i].needle))
            fail_msg("'%s': message '%s' lacks 'initial_cluster' or '%s'",
                     CASES[i].list, kv_errmsg(), CASES[i].needle);
        /* a failed load leaves the config as it was */
        assert_string_equal(c.initial_cluster, "");
        /* node_config_members refuses the same list, and gives nothing */
        set_str(&c.node_name, "n1");
        set_str(&c.initial_cluster, CASES[i].list);
        node_member_t *m = (node_member_t *)&c; /* must be reset */
        size_t n = 99;
        kv_errmsg_clear();
        assert_int_equal(node_config_members(&c, &m, &n), KV_INVALID);
        assert_null(m);
        assert_int_equal(n, 0);
        assert_non_null(strstr(kv_errmsg(), "initial_cluster"));
        node_config_deinit(&c);
    }
    /* this node's peer_port or rack given by flag, against the list */
    expect_error(KV_INVALID,
                 ARGV("--node-name=n1", "--peer-port=7999",
                      "--initial-cluster=n1=h:7071,n2=h2:7072"),
                 NOENV, "initial_cluster", "n1", "7071", "peer_port 7999");
    expect_error(KV_INVALID,
                 ARGV("--node-name=n1", "--rack=r2",
                      "--initial-cluster=n1=h:7071,n2=h2:7072@r2"),
                 NOENV, "initial_cluster", "n1", "rack rack1", "rack r2");
    /* the source of the bad value does not matter: the environment too */
    expect_error(KV_INVALID, ARGV("--node-name=n1"),
                 ENV("CAIRN_INITIAL_CLUSTER=n1=h:7071,n2=h2:0"),
                 "initial_cluster", "'n2=h2:0'");
    /* --print-config shows a list that would not start */
    node_config_t c;
    node_config_init(&c);
    node_action_t a;
    assert_int_equal(load(&c, ARGV("--print-config", "--initial-cluster=x"),
                          NOENV, &a),
                     KV_OK);
    assert_int_equal(a, NODE_PRINT_CONFIG);
    assert_string_equal(c.initial_cluster, "x");
    assert_int_equal(node_config_validate(&c), KV_INVALID);
    assert_non_null(strstr(kv_errmsg(), "initial_cluster"));
    node_config_deinit(&c);
}

static void test_config_initial_cluster_may_be_a_yaml_list(void **state)
{
    (void)state;
    const char *dir = test_tmpdir("config-initial");
    node_config_t c;
    node_config_init(&c);
    const char *path = write_config(dir,
        "node_name: n1\n"
        "rack: r1\n"
        "initial_cluster:\n"
        "  - n1=10.0.0.1:7071@r1\n"
        "  - \"n2=10.0.0.2:7071@r2\"\n"
        "  - 'n3=[::1]:7072'\n");
    assert_int_equal(load(&c, ARGV("--config", (char *)path), NOENV, NULL),
                     KV_OK);
    assert_string_equal(c.initial_cluster,
                        "n1=10.0.0.1:7071@r1,n2=10.0.0.2:7071@r2,n3=[::1]:7072");
    const want_member_t list[] = {
        {"n1", "10.0.0.1", 7071, "r1"},
        {"n2", "10.0.0.2", 7071, "r2"},
        {"n3", "::1", 7072, "rack1"},
    };
    expect_members(&c, list, 3);

    /* flow style */
    path = write_config(dir, "node_name: n1\n"
                             "initial_cluster: [n1=a:7071, n2=b:7071@x]\n");
    assert_int_equal(load(&c, ARGV("--config", (char *)path), NOENV, NULL),
                     KV_OK);
    assert_string_equal(c.initial_cluster, "n1=a:7071,n2=b:7071@x");
    const want_member_t flow[] = {{"n1", "a", 7071, "rack1"},
                                  {"n2", "b", 7071, "x"}};
    expect_members(&c, flow, 2);

    /* one string in the file works as well */
    path = write_config(dir, "node_name: n1\n"
                             "initial_cluster: n1=a:7071,n2=b:7071\n");
    assert_int_equal(load(&c, ARGV("--config", (char *)path), NOENV, NULL),
                     KV_OK);
    assert_string_equal(c.initial_cluster, "n1=a:7071,n2=b:7071");

    /* an empty list is this node alone */
    path = write_config(dir, "node_name: n1\ninitial_cluster: []\n");
    assert_int_equal(load(&c, ARGV("--config", (char *)path), NOENV, NULL),
                     KV_OK);
    assert_string_equal(c.initial_cluster, "");
    const want_member_t me[] = {{"n1", "127.0.0.1", 7071, "rack1"}};
    expect_members(&c, me, 1);

    /* a flag overrides the file's list */
    path = write_config(dir, "node_name: n1\n"
                             "initial_cluster:\n  - n1=a:7071\n  - n2=b:7071\n");
    assert_int_equal(load(&c, ARGV("--config", (char *)path,
                                   "--initial-cluster=n1=z:7071"),
                          NOENV, NULL),
                     KV_OK);
    assert_string_equal(c.initial_cluster, "n1=z:7071");

    /* a bad item is refused naming the setting */
    path = write_config(dir, "node_name: n1\n"
                             "initial_cluster:\n  - n1=a:7071\n  - n2=b\n");
    expect_error(KV_INVALID, ARGV("--config", (char *)path), NOENV,
                 "initial_cluster", "'n2=b'");
    path = write_config(dir, "node_name: n1\n"
                             "initial_cluster:\n  - n1=a:7071\n  - n1=b:7072\n");
    expect_error(KV_INVALID, ARGV("--config", (char *)path), NOENV,
                 "initial_cluster", "n1 listed twice");
    /* items must be single values */
    path = write_config(dir, "node_name: n1\n"
                             "initial_cluster:\n  - n1=a:7071\n  - [n2=b:7071]\n");
    expect_error(KV_INVALID, ARGV("--config", (char *)path), NOENV,
                 "initial_cluster", "line 4");
    path = write_config(dir, "node_name: n1\n"
                             "initial_cluster:\n  n1: a:7071\n");
    expect_error(KV_INVALID, ARGV("--config", (char *)path), NOENV,
                 "initial_cluster", "a mapping", "line 3");
    node_config_deinit(&c);
    test_rmrf(dir);
}

static void test_config_peer_timeout_and_queue_limits(void **state)
{
    (void)state;
    expect_error(KV_INVALID, ARGV("--peer-timeout-ms=99"), NOENV,
                 "peer_timeout_ms", "99", "100");
    expect_error(KV_INVALID, ARGV("--peer-timeout-ms=0"), NOENV,
                 "peer_timeout_ms");
    expect_error(KV_INVALID, NOARGS, ENV("CAIRN_PEER_TIMEOUT_MS=2s"),
                 "peer_timeout_ms", "CAIRN_PEER_TIMEOUT_MS");
    expect_error(KV_INVALID, ARGV("--peer-queue-bytes=1MiB"), NOENV,
                 "peer_queue_bytes", "max_frame_bytes");
    /* one byte short of the (default) frame limit */
    expect_error(KV_INVALID, ARGV("--peer-queue-bytes=33554431"), NOENV,
                 "peer_queue_bytes", "33554431", "max_frame_bytes");
    /* the rule follows max_frame_bytes */
    expect_error(KV_INVALID,
                 ARGV("--max-frame-bytes=128MiB", "--peer-queue-bytes=64MiB"),
                 NOENV, "peer_queue_bytes", "max_frame_bytes");
    expect_error(KV_INVALID, ARGV("--peer-queue-bytes=12XB"), NOENV,
                 "peer_queue_bytes", "--peer-queue-bytes");

    /* the boundaries are fine */
    node_config_t c;
    node_config_init(&c);
    assert_int_equal(load(&c, ARGV("--peer-timeout-ms=100",
                                   "--peer-queue-bytes=32MiB"),
                          NOENV, NULL),
                     KV_OK);
    assert_int_equal(c.peer_timeout_ms, 100);
    assert_int_equal(c.peer_queue_bytes, 32u << 20);
    assert_int_equal(load(&c, ARGV("--max-frame-bytes=1MiB",
                                   "--max-value-bytes=512KiB",
                                   "--peer-queue-bytes=1MiB"),
                          NOENV, NULL),
                     KV_OK);
    assert_int_equal(c.peer_queue_bytes, 1u << 20);
    node_config_deinit(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        kv_unit_test(test_config_defaults_match_the_contract),
        kv_unit_test(test_config_load_with_nothing_gives_defaults),
        kv_unit_test(test_config_file_sets_every_kind_of_setting),
        kv_unit_test(test_config_file_named_by_env_and_flag_wins),
        kv_unit_test(test_config_precedence_is_flag_env_file_default),
        kv_unit_test(test_config_flags_take_both_spellings),
        kv_unit_test(test_config_sizes_take_binary_suffixes),
        kv_unit_test(test_config_seeds_may_be_a_yaml_list),
        kv_unit_test(test_config_empty_file_and_empty_document_are_defaults),
        kv_unit_test(test_config_harness_and_tool_variables_are_ignored),
        kv_unit_test(test_config_loading_twice_replaces_strings),
        kv_unit_test(test_config_actions),
        kv_unit_test(test_config_bad_numbers_name_setting_and_source),
        kv_unit_test(test_config_bad_file_values_name_the_line),
        kv_unit_test(test_config_file_structure_errors),
        kv_unit_test(test_config_missing_file_is_an_error),
        kv_unit_test(test_config_unknown_flags_and_arguments),
        kv_unit_test(test_config_unknown_cairn_variables_are_errors),
        kv_unit_test(test_config_help_lists_every_setting),
        kv_unit_test(test_config_print_round_trips),
        kv_unit_test(test_config_validate_checks_each_rule),
        kv_unit_test(test_config_joining_node_needs_seeds),
        kv_unit_test(test_config_initial_cluster_parses_every_field),
        kv_unit_test(test_config_initial_cluster_empty_is_this_node),
        kv_unit_test(test_config_initial_cluster_rejects_bad_lists),
        kv_unit_test(test_config_initial_cluster_may_be_a_yaml_list),
        kv_unit_test(test_config_peer_timeout_and_queue_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
