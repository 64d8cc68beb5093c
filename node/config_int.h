/* config_int.h -- shared between config.c (loading) and
 * config_validate.c (cross-setting rules). */
#ifndef CAIRN_NODE_CONFIG_INT_H
#define CAIRN_NODE_CONFIG_INT_H

#include "config.h"

/* n decimal digits, no sign, no overflow -> *out. */
bool node_config_parse_digits(const char *s, size_t n, uint64_t *out);

#endif /* CAIRN_NODE_CONFIG_INT_H */
