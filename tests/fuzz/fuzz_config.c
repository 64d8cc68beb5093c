/* fuzz_config.c -- the YAML configuration loader (node/config.c) and the
 * cross-setting rules: the input is a cairn.yaml. A file that loads is
 * printed as YAML (--print-config), loaded again from that text -- which
 * must succeed and print the same (the printer's promise: "loadable
 * again"; the cluster secret, never printed, aside) -- and its
 * initial_cluster parsed into members.
 */
#include "config.h"
#include "config_int.h"
#include "fuzz_util.h"

static char *print(const node_config_t *c, size_t *len)
{
    char *out = NULL;
    FILE *m = open_memstream(&out, len);
    node_config_print(c, m);
    fclose(m);
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536) return 0;
    kv_log_set_level(KV_ERROR);
    node_config_t c;
    node_config_init(&c);
    if (node_config_load_yaml(&c, data, size, "fuzz.yaml") == KV_OK) {
        /* the secret is deliberately not printed (a comment line): compare
         * the rest */
        if (c.cluster_secret && *c.cluster_secret) {
            kv_free(c.cluster_secret);
            c.cluster_secret = kv_strdup("");
        }
        size_t n1, n2;
        char *p1 = print(&c, &n1);
        node_config_t again;
        node_config_init(&again);
        if (node_config_load_yaml(&again, p1, n1, "printed.yaml") != KV_OK) {
            fprintf(stderr, "printed config does not load: %s\n%s", kv_errmsg(), p1);
            abort();
        }
        char *p2 = print(&again, &n2);
        if (n1 != n2 || memcmp(p1, p2, n1) != 0) {
            fprintf(stderr, "printed config changes when loaded again:\n%s---\n%s", p1, p2);
            abort();
        }
        node_member_t *m;
        size_t nm;
        if (node_config_members(&c, &m, &nm) == KV_OK) node_members_free(m, nm);
        free(p1);
        free(p2);
        node_config_deinit(&again);
    }
    node_config_deinit(&c);
    return 0;
}
