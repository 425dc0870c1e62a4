/*
 * What conf_middleware.c shares with the files that read the keys of some
 * of its kinds (conf_mw_guard.c): limits on names and lists, the boolean
 * reader, and those kinds' builders for the kinds table.
 */
#ifndef CEL_CONF_MIDDLEWARE_INTERNAL_H
#define CEL_CONF_MIDDLEWARE_INTERNAL_H

#include "conf.h"
#include "middleware.h"

#define MAX_NAME 128 /* a field name's octets */
#define MAX_LIST 64  /* items of a list key (origins, address ranges) */

/* V is true or false: 0 with *OUT set, else a config error. */
int conf_mw_want_bool(conf_ctx *c, yaml_node_t *v, const char *what, int *out);

int conf_mw_build_access(conf_ctx *c, yaml_node_t *n, cel_mw **out);
int conf_mw_build_rate_limit(conf_ctx *c, yaml_node_t *n, cel_mw **out);
int conf_mw_build_basic_auth(conf_ctx *c, yaml_node_t *n, cel_mw **out);

#endif
