/* config_int.h -- shared between config.c (loading) and
 * config_validate.c (cross-setting rules). */
#ifndef CAIRN_NODE_CONFIG_INT_H
#define CAIRN_NODE_CONFIG_INT_H

#include "config.h"

/* n decimal digits, no sign, no overflow -> *out. */
bool node_config_parse_digits(const char *s, size_t n, uint64_t *out);

/* Load settings from YAML text held in memory (name stands for the file in
 * messages) over the defaults, then validate. On success *c is replaced;
 * on error left as it was. The file loader's rules apply; the fuzz target
 * for the loader (tests/fuzz/fuzz_config.c) goes through here. */
kv_status_t node_config_load_yaml(node_config_t *c, const void *data, size_t len,
                                  const char *name);

#endif /* CAIRN_NODE_CONFIG_INT_H */
