/*
 * Helpers shared by the parts of config that read YAML (conf.c implements
 * them; config.c reads the top level, limits and log, config_routes.c the
 * routes, conf_listen.c `listen` and TLS, conf_handlers.c each handler type).
 * Private to config: nothing outside those files (and tests/unit/test_config.c)
 * includes this.
 *
 * Every error is written once, as "FILE:LINE:COL: message", at the node it is
 * about, and the helpers return CEL_EINVAL so callers just pass it up.
 */
#ifndef CEL_CONF_H
#define CEL_CONF_H

#include <yaml.h>

#include "common.h"
#include "handler.h"
#include "middleware.h"

/* Not config.h: config.c includes this, and the handler builders below need
 * nothing of a generation but what their callers pass them. */
struct cel_config;

typedef struct conf_ctx {
    yaml_document_t *doc;
    const char *file;
    const char *dir;        /* directory of FILE, for relative paths */
    struct cel_config *cfg; /* what is built; routes are read after every other key */
    yaml_node_t *routes;    /* the top level's routes node, read last */
    yaml_node_t *hosts;     /* the top level's hosts node, read with the routes */
    yaml_node_t *access;    /* log.access, read once workers are known */
    size_t json_nodes;      /* nodes of the template being converted (aliases included) */
    int check_only;         /* celerisd -t: check files the config writes, create none */
    /* Middleware: the top level's list, read once the other top-level keys
     * are (after modules_dir and workers, which modules_dir and nworkers
     * then hold); the route whose list is read (NULL: the global one). */
    yaml_node_t *mw_global;
    const char *modules_dir;
    unsigned nworkers;
    const char *mw_route;
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
/* true / on or false / off into *OUT (1 or 0). */
int conf_bool(conf_ctx *c, const yaml_node_t *v, const char *what, int *out);
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

/*
 * Key tables. Each kind of key (the top level, limits, log, log.access, a
 * route, the handler types) is one table whose rows start with the key's name;
 * parsing, defaults and the "expected one of" list all read it, so a key is
 * added by adding its row. conf_key_list appends the names of the N rows of
 * ROWS, STRIDE bytes apart, to the string in BUF, joined by ", ".
 */
const char *conf_key_list(char *buf, size_t len, const void *rows, size_t n, size_t stride);
#define CONF_KEY_LIST(buf, rows)                                                                   \
    conf_key_list(buf, sizeof(buf), rows, CEL_ARRAY_LEN(rows), sizeof((rows)[0]))

/* A key and what reads its value (FN as for conf_mapping, ARG the table's owner). */
typedef struct conf_key {
    const char *key;
    conf_pair_fn fn;
} conf_key;
/* Calls the row of KEYS named KEY, or fails with "unknown key ... in WHERE". */
int conf_key_call(conf_ctx *c, const conf_key *keys, size_t n, const char *where, void *arg,
                  const char *key, yaml_node_t *k, yaml_node_t *v);

/* The tables the README documents (tests/unit/test_config.c compares them). */
extern const conf_key conf_top_keys[];
extern const size_t conf_ntop_keys;
extern const conf_key conf_log_keys[];
extern const size_t conf_nlog_keys;

/* A key under `limits:`: its field in cel_limits, its kind, range and default
 * (durations in ms; their range is conf_duration_ms's). */
typedef enum { CONF_COUNT, CONF_SIZE, CONF_DURATION } conf_kind;
typedef struct conf_limit {
    const char *key;
    conf_kind kind;
    size_t off, width; /* the field: offset in cel_limits, sizeof (uint32_t or size_t) */
    long long min, max;
    unsigned long long def;
} conf_limit;
extern const conf_limit conf_limits[];
extern const size_t conf_nlimits;

/* The handler types: a route names one of these keys, whose value BUILD turns
 * into the route's handler. Adding a type is one row here plus its code. */
typedef struct conf_handler_type {
    const char *key;
    int (*build)(conf_ctx *c, yaml_node_t *n, const char *pattern, cel_handler **out);
} conf_handler_type;
extern const conf_handler_type conf_handler_types[];
extern const size_t conf_nhandler_types;

/* Builds the handler for a route's handler block (`static`, `json`). PATTERN lets
 * templates (json bodies, header values) check their {{param.X}} against the
 * route. Returns 0 and *OUT, or an error. */
int conf_handler_static(conf_ctx *c, yaml_node_t *n, const char *pattern, cel_handler **out);
int conf_handler_json(conf_ctx *c, yaml_node_t *n, const char *pattern, cel_handler **out);
/* `redirect: { to, status }`: TO may hold placeholders of PATTERN's params;
 * or `redirect: { https: true | PORT, status }`. */
int conf_handler_redirect(conf_ctx *c, yaml_node_t *n, const char *pattern, cel_handler **out);
/* V of `https` (WHAT): true (port 0: the URL names none) or a TLS port. */
int conf_https_port(conf_ctx *c, yaml_node_t *v, const char *what, unsigned *port);
/* MODULES_DIR: where `name: X` finds X.so; NWORKERS: the generation's workers. */
int conf_handler_module(conf_ctx *c, yaml_node_t *n, const char *pattern, const char *modules_dir,
                        unsigned nworkers, cel_handler **out);
/* `dir:` (handler_dir.h); NWORKERS: the generation's workers, one open-file
 * cache each. */
int conf_handler_dir(conf_ctx *c, yaml_node_t *n, const char *pattern, unsigned nworkers,
                     cel_handler **out);
/* `metrics: {}`, `status: {}` and `readiness: {}` (no keys yet; PATTERN unused). */
int conf_handler_metrics(conf_ctx *c, yaml_node_t *n, const char *pattern, cel_handler **out);
int conf_handler_status(conf_ctx *c, yaml_node_t *n, const char *pattern, cel_handler **out);
int conf_handler_readiness(conf_ctx *c, yaml_node_t *n, const char *pattern, cel_handler **out);

/* The middleware kinds: an item of a `middleware:` list is a mapping with one
 * of these keys, whose value BUILD turns into the middleware (its per-request
 * functions are the cel_mw_ops it carries). Adding a kind is one row here plus
 * its code. */
typedef struct conf_mw_kind {
    const char *key;
    int (*build)(conf_ctx *c, yaml_node_t *n, cel_mw **out);
} conf_mw_kind;
/* `module: { name, path, config }` as a middleware (conf_handlers.c). */
int conf_mw_module(conf_ctx *c, yaml_node_t *n, cel_mw **out);
extern const conf_mw_kind conf_mw_kinds[];
extern const size_t conf_nmw_kinds;

/* Reads the `middleware:` list N (WHAT names it in errors) into a chain that
 * owns its members: *OUT, NULL when the list is empty. 0 or an error at N. */
int conf_middleware(conf_ctx *c, yaml_node_t *n, const char *what, cel_mw_chain **out);

struct cel_errors;
/* The `errors:` block (errors.h, conf_errors.c). */
int conf_errors(conf_ctx *c, yaml_node_t *n, struct cel_errors **out);

#endif
