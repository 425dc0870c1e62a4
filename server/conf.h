/*
 * Helpers shared by the parts of config that read YAML (config.c for the top
 * level, conf_handlers.c for each handler type). Private to config: nothing
 * outside those files includes this.
 *
 * Every error is written once, as "FILE:LINE:COL: message", at the node it is
 * about, and the helpers return CEL_EINVAL so callers just pass it up.
 */
#ifndef CEL_CONF_H
#define CEL_CONF_H

#include <yaml.h>

#include "config.h"

typedef struct conf_ctx {
    yaml_document_t *doc;
    const char *file;
    const char *dir; /* directory of FILE, for relative paths */
    cel_config *cfg; /* what is built; routes are read after every other key */
    yaml_node_t *routes; /* the top level's routes node, read last */
    yaml_node_t *access; /* log.access, read once workers are known */
    size_t json_nodes;   /* nodes of the template being converted (aliases included) */
    int check_only;      /* celerisd -t: check files the config writes, create none */
    char *err;
    size_t errlen;
} conf_ctx;

yaml_node_t *conf_node(conf_ctx *c, int index);
cel_loc conf_loc(const yaml_node_t *n);
int conf_error(conf_ctx *c, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Type checks: 0 or an error at N naming WHAT ("routes", "limits.idle_timeout"). */
int conf_want(conf_ctx *c, const yaml_node_t *n, yaml_node_type_t type, const char *what);
/* A string holding no NUL byte (C would cut it there). */
int conf_string(conf_ctx *c, const yaml_node_t *n, const char *what, const char **out);
/* A string that reaches the wire or the router (a path, a header value, a
 * content type): no NUL and no other control byte (below 0x20, 0x7f), a tab
 * only with TAB_OK. */
int conf_wire_string(conf_ctx *c, const yaml_node_t *n, const char *what, int tab_ok,
                     const char **out);
/* Does scalar N hold a NUL byte? */
int conf_has_nul(const yaml_node_t *n);
int conf_int(conf_ctx *c, const yaml_node_t *n, const char *what, long long min, long long max,
             long long *out);
/* Sizes: a byte count or "64k", "1m", "1g" (powers of 1024). */
int conf_size(conf_ctx *c, const yaml_node_t *n, const char *what, size_t min, size_t max,
              size_t *out);
/* Durations: seconds as a number, or "250ms", "10s", "2m", "1h". */
int conf_duration_ms(conf_ctx *c, const yaml_node_t *n, const char *what, uint32_t *out);

/* Walks mapping N: for each pair calls FN with the key text and nodes. Rejects a
 * non-mapping, non-scalar keys and duplicate keys. FN returns 0 or an error. */
typedef int (*conf_pair_fn)(conf_ctx *c, void *arg, const char *key, yaml_node_t *k,
                            yaml_node_t *v);
int conf_mapping(conf_ctx *c, yaml_node_t *n, const char *what, conf_pair_fn fn, void *arg);

/* "unknown key" error, listing the keys that are allowed. */
int conf_unknown_key(conf_ctx *c, const yaml_node_t *k, const char *where, const char *allowed);

/* Builds the handler for a route's handler block (`static`, `json`). PATTERN lets
 * templates (json bodies, header values) check their {{param.X}} against the
 * route. Returns 0 and *OUT, or an error. */
int conf_handler_static(conf_ctx *c, yaml_node_t *n, const char *pattern, cel_handler **out);
int conf_handler_json(conf_ctx *c, yaml_node_t *n, const char *pattern, cel_handler **out);
int conf_handler_module(conf_ctx *c, yaml_node_t *n, const char *pattern, cel_handler **out);
/* `metrics: {}`, `status: {}` (STATUS 1) and `readiness: {}` (STATUS 2): no keys yet. */
int conf_handler_stats(conf_ctx *c, yaml_node_t *n, int status, cel_handler **out);

#endif
