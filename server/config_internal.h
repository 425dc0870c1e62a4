/*
 * What config.c and config_routes.c share: the routes' part of reading a
 * configuration. Private to them.
 */
#ifndef CEL_CONFIG_INTERNAL_H
#define CEL_CONFIG_INTERNAL_H

#include <yaml.h>

#include "conf.h"
#include "config.h"

/* Reads the top level's `routes` list N (NULL: none), `hosts` (c->hosts) and
 * the listen entries' routes into CFG (its routes, routers and virtual
 * hosts); an error names the node (conf_error). */
int cel_config_parse_routes(conf_ctx *c, cel_config *cfg, yaml_node_t *n);

/* Frees CFG's `hosts:` blocks. */
void cel_config_free_blocks(cel_config *cfg);

/* Frees what a route's `host` key allocated. */
void cel_config_free_hosts(cel_route *r);

#endif
