/* The routes of a configuration: each route's keys, the handler types table
 * (conf_handler_types), and the routers built from the list (per virtual host
 * and scheme). The rest of the file is read in config.c. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "config.h"
#include "config_internal.h"
#include "stats.h"

/* ---- routes ---- */

typedef struct route_build {
    cel_route r;
    yaml_node_t *path_node, *handler_node, *handler_key;
    yaml_node_t *methods_node;
    yaml_node_t *mw_node;
    yaml_node_t *scheme_node, *host_node;
    const conf_handler_type *type; /* the row of conf_handler_types handler_key names */
} route_build;

static int parse_methods(conf_ctx *c, yaml_node_t *n, unsigned *out)
{
    if (n->type == YAML_SCALAR_NODE) {
        const char *s = (const char *)n->data.scalar.value;
        unsigned bit = cel_method_bit(s, n->data.scalar.length);
        if (!bit)
            return conf_error(c, n,
                              "unknown method \"%s\" (methods are upper case: GET, POST, ...)", s);
        *out |= bit;
        return 0;
    }
    if (n->type != YAML_SEQUENCE_NODE || n->data.sequence.items.start == n->data.sequence.items.top)
        return conf_error(c, n, "methods must be a non-empty list like [GET, POST]");
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++) {
        yaml_node_t *m = conf_node(c, *it);
        if (m->type != YAML_SCALAR_NODE)
            return conf_error(c, m, "each method must be a name like GET");
        int rc = parse_methods(c, m, out);
        if (rc)
            return rc;
    }
    return 0;
}

static int route_path(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    route_build *b = arg;
    (void)key, (void)k;
    const char *s;
    int rc = conf_wire_string(c, v, "path", 0, &s);
    if (rc)
        return rc;
    b->path_node = v;
    b->r.pattern = strdup(s);
    return b->r.pattern ? 0 : conf_error(c, v, "out of memory");
}

static int route_methods(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    route_build *b = arg;
    (void)key, (void)k;
    b->methods_node = v;
    return parse_methods(c, v, &b->r.methods);
}

static int route_access_log(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    route_build *b = arg;
    (void)key, (void)k;
    const char *s;
    int rc = conf_string(c, v, "access_log", &s);
    if (rc)
        return rc;
    if (strcmp(s, "off") && strcmp(s, "on") && strcmp(s, "true") && strcmp(s, "false"))
        return conf_error(c, v, "access_log must be on or off, not \"%s\"", s);
    b->r.access_log = strcmp(s, "off") && strcmp(s, "false");
    return 0;
}

/* Appends the LEN bytes at S, a host name (error at N), to *LIST (of *COUNT):
 * a DNS name (or an IP address), lowercased, with at most a leading "*." for
 * every name below a domain. */
static int add_host(conf_ctx *c, yaml_node_t *n, const char *s, size_t len, char ***list,
                    size_t *count)
{
    if (len > 1 && s[len - 1] == '.')
        len--; /* "example.com." is example.com, as requests are read */
    const char *p = len >= 2 && strncmp(s, "*.", 2) == 0 ? s + 2 : s;
    if (p == s + len || len > 253)
        return conf_error(c, n, "host \"%.*s\" is empty or too long", (int)len, s);
    for (const char *q = p; q < s + len; q++)
        if (!isalnum((unsigned char)*q) && *q != '-' && *q != '.' && *q != ':' && *q != '[' &&
            *q != ']')
            return conf_error(c, n,
                              "host \"%.*s\" is not a name like example.com or *.example.com "
                              "(no port, no scheme)",
                              (int)len, s);
    char **hosts = realloc(*list, (*count + 1) * sizeof(*hosts));
    if (!hosts)
        return conf_error(c, n, "out of memory");
    *list = hosts;
    if (!(hosts[*count] = strndup(s, len)))
        return conf_error(c, n, "out of memory");
    for (char *q = hosts[*count]; *q; q++)
        *q = (char)tolower((unsigned char)*q);
    (*count)++;
    return 0;
}

/* One name of a route's `host:`. */
static int host_name(conf_ctx *c, route_build *b, yaml_node_t *n)
{
    const char *s;
    int rc = conf_string(c, n, "host", &s);
    return rc ? rc : add_host(c, n, s, strlen(s), &b->r.hosts, &b->r.nhosts);
}

static int route_host(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    route_build *b = arg;
    (void)key, (void)k;
    b->host_node = v;
    if (v->type == YAML_SCALAR_NODE)
        return host_name(c, b, v);
    if (v->type != YAML_SEQUENCE_NODE || v->data.sequence.items.start == v->data.sequence.items.top)
        return conf_error(c, v, "host is a name or a non-empty list of names");
    int rc = 0;
    for (yaml_node_item_t *it = v->data.sequence.items.start;
         !rc && it < v->data.sequence.items.top; it++)
        rc = host_name(c, b, conf_node(c, *it));
    return rc;
}

static int route_scheme(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    route_build *b = arg;
    (void)key, (void)k;
    const char *s;
    int rc = conf_string(c, v, "scheme", &s);
    if (rc)
        return rc;
    if (strcmp(s, "http") && strcmp(s, "https"))
        return conf_error(c, v, "scheme is http (cleartext connections) or https (TLS), not \"%s\"",
                          s);
    b->r.scheme = strcmp(s, "http") == 0 ? CEL_SCHEME_HTTP : CEL_SCHEME_HTTPS;
    b->scheme_node = v;
    return 0;
}

void cel_config_free_hosts(cel_route *r)
{
    for (size_t i = 0; i < r->nhosts; i++)
        free(r->hosts[i]);
    free(r->hosts);
}

static int route_middleware(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    route_build *b = arg;
    (void)c, (void)key, (void)k;
    b->mw_node = v; /* built with the handler: a route that fails owns nothing yet */
    return 0;
}

static int route_max_body(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    route_build *b = arg;
    (void)key, (void)k;
    return conf_size(c, v, "max_request_body", 0, (size_t)1 << 40, &b->r.max_request_body);
}

/* A route's own keys; its handler is one of conf_handler_types. */
static const conf_key route_keys[] = {
    {"path", route_path},
    {"methods", route_methods},
    {"access_log", route_access_log},
    {"middleware", route_middleware},
    {"max_request_body", route_max_body},
    {"host", route_host},
    {"scheme", route_scheme},
};

/* The module builder takes what it needs of the generation as arguments, so
 * conf_handlers.c does not know cel_config (tests/check_includes.py). */
static int handler_module(conf_ctx *c, yaml_node_t *n, const char *pattern, cel_handler **out)
{
    return conf_handler_module(c, n, pattern, c->cfg->modules_dir, c->cfg->nworkers, out);
}

static int handler_dir(conf_ctx *c, yaml_node_t *n, const char *pattern, cel_handler **out)
{
    return conf_handler_dir(c, n, pattern, c->cfg->nworkers, out);
}

const conf_handler_type conf_handler_types[] = {
    {"static", conf_handler_static},
    {"json", conf_handler_json},
    {"module", handler_module},
    {"metrics", conf_handler_metrics},
    {"status", conf_handler_status},
    {"readiness", conf_handler_readiness},
    {"dir", handler_dir},
    {"redirect", conf_handler_redirect},
};
const size_t conf_nhandler_types = CEL_ARRAY_LEN(conf_handler_types);

static int route_pair(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    route_build *b = arg;
    for (size_t i = 0; i < conf_nhandler_types; i++) {
        if (strcmp(key, conf_handler_types[i].key) != 0)
            continue;
        if (b->handler_key)
            return conf_error(c, k, "a route has one handler; \"%s\" was given at line %u already",
                              (const char *)b->handler_key->data.scalar.value,
                              conf_loc(b->handler_key).line);
        b->handler_key = k;
        b->handler_node = v;
        b->type = &conf_handler_types[i];
        return 0;
    }
    for (size_t i = 0; i < CEL_ARRAY_LEN(route_keys); i++)
        if (strcmp(key, route_keys[i].key) == 0)
            return route_keys[i].fn(c, b, key, k, v);
    char allowed[256] = "";
    CONF_KEY_LIST(allowed, route_keys);
    return conf_unknown_key(c, k, "route",
                            conf_key_list(allowed, sizeof(allowed), conf_handler_types,
                                          conf_nhandler_types, sizeof(conf_handler_types[0])));
}

/* The route's middleware prepares for its constant answer, if it has one
 * (compress encodes it once, here). */
static int prepare_mw(conf_ctx *c, cel_route *r, yaml_node_t *n)
{
    cel_response res;
    if (!r->mw || !r->handler->constant || !r->handler->constant(r->handler, &res))
        return 0;
    for (size_t i = 0; i < r->mw->n; i++) {
        cel_mw *m = r->mw->v[i];
        if (m->ops->prepare && m->ops->prepare(m, &res))
            return conf_error(c, n, "out of memory");
    }
    return 0;
}

/* Where a list of routes is: what their chains build on (the global list,
 * or the global then a hosts: block's), whether it is a block's or a listen
 * entry's (which say the host and the connection: no `host`, no `scheme`),
 * and the room left in cfg->routes. */
typedef struct route_list {
    cel_mw_chain *base;
    int nested;
    size_t cap;
    const char *block;  /* the hosts: block's name for the metrics (NULL: none) */
    const char *listen; /* the listen entry's address for the metrics (NULL: none) */
} route_list;

static int parse_route(conf_ctx *c, cel_config *cfg, yaml_node_t *n, const route_list *in)
{
    if (cfg->nroutes == in->cap) /* parse_routes counted every list's items */
        return conf_error(c, n, "internal error: more routes than counted");
    route_build b;
    memset(&b, 0, sizeof(b));
    b.r.loc = conf_loc(n);
    b.r.access_log = 1;
    b.r.max_request_body = CEL_ROUTE_BODY_GLOBAL;
    int rc = conf_mapping(c, n, "a route", route_pair, &b);
    if (!rc && !b.path_node)
        rc = conf_error(c, n, "route has no path");
    if (!rc && !b.handler_node) {
        char types[256] = "";
        rc = conf_error(c, n, "route at line %u has no handler (give one of: %s)", b.r.loc.line,
                        conf_key_list(types, sizeof(types), conf_handler_types, conf_nhandler_types,
                                      sizeof(conf_handler_types[0])));
    }
    if (!rc && b.r.scheme && b.r.nhosts)
        rc = conf_error(c, b.scheme_node, "a route has `scheme` or `host`, not both");
    if (!rc && in->nested && (b.r.scheme || b.r.nhosts))
        rc = conf_error(c, b.r.scheme ? b.scheme_node : b.host_node,
                        "a route of a hosts: block or a listen entry has no `%s` (the block "
                        "names the hosts, the listen entry the connections)",
                        b.r.scheme ? "scheme" : "host");
    if (!rc && !in->nested && b.r.nhosts && c->hosts)
        rc = conf_error(c, b.host_node,
                        "a route's `host` and a `hosts:` block do not mix: move this route "
                        "into the hosts: block of its names");
    if (!rc && b.mw_node) {
        c->mw_route = b.r.pattern;
        rc = conf_middleware(c, b.mw_node, "middleware", &b.r.mw_own);
        c->mw_route = NULL;
    }
    if (!rc && cel_mw_chain_join(in->base, b.r.mw_own, &b.r.mw))
        rc = conf_error(c, n, "out of memory");
    b.r.mw_joined = b.r.mw && b.r.mw != in->base;
    /* a top-level route's `host:` counts apart as a block does, under its
     * first name */
    const char *host = in->block ? in->block : b.r.nhosts ? b.r.hosts[0] : NULL;
    if (!rc &&
        (b.r.stat_id = cel_stats_route_id(b.r.pattern, host, in->listen)) == CEL_STATS_ROUTES)
        rc = conf_error(c, n, "out of memory");
    if (!rc)
        rc = b.type->build(c, b.handler_node, b.r.pattern, &b.r.handler);
    if (!rc && (rc = prepare_mw(c, &b.r, n))) {
        b.r.handler->destroy(b.r.handler);
        b.r.handler = NULL;
    }
    if (rc) {
        if (b.r.mw_joined)
            cel_mw_chain_free(b.r.mw);
        cel_mw_chain_free(b.r.mw_own);
        cel_config_free_hosts(&b.r);
        free(b.r.pattern);
        return rc;
    }
    if (!b.r.methods)
        b.r.methods = CEL_M_GET | CEL_M_HEAD;
    if (b.r.methods & CEL_M_GET)
        b.r.methods |= CEL_M_HEAD;
    b.r.loc = conf_loc(b.path_node);

    cfg->routes[cfg->nroutes++] = b.r;
    return 0;
}

static int router_add(conf_ctx *c, cel_router *rt, cel_route *r)
{
    void *conflict = NULL;
    char msg[256];
    int rc = cel_router_add(rt, r->pattern, r->methods, r, &conflict, msg, sizeof(msg));
    if (rc == 0)
        return 0;
    /* Errors here point at the route's path value, remembered as loc. */
    yaml_node_t at = {.start_mark = {.line = r->loc.line - 1, .column = r->loc.col - 1}};
    if (rc == CEL_EEXIST) {
        cel_route *o = conflict;
        return conf_error(c, &at, "route \"%s\" collides with route \"%s\" at line %u:%u",
                          r->pattern, o->pattern, o->loc.line, o->loc.col);
    }
    return conf_error(c, &at, "%s", msg);
}

/* The router of host NAME, made on first use. */
static cel_router *vhost_router(cel_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->nvhosts; i++)
        if (strcmp(cfg->vhosts[i].name, name) == 0)
            return cfg->vhosts[i].router;
    cel_vhost *v = realloc(cfg->vhosts, (cfg->nvhosts + 1) * sizeof(*v));
    if (!v)
        return NULL;
    cfg->vhosts = v;
    cel_router *rt = cel_router_new();
    if (!rt)
        return NULL;
    v[cfg->nvhosts++] = (cel_vhost){.name = name, .len = strlen(name), .router = rt};
    return rt;
}

/* The top level's routes, cfg->routes from FIRST on, into their routers. */
static int build_router(conf_ctx *c, cel_config *cfg, yaml_node_t *routes, size_t first)
{
    for (size_t i = first; i < cfg->nroutes; i++) {
        cel_route *r = &cfg->routes[i];
        int rc = 0;
        if (r->scheme) {
            cel_router **rt = &cfg->scheme_router[r->scheme - 1];
            if (!*rt && !(*rt = cel_router_new()))
                return conf_error(c, routes, "out of memory");
            rc = router_add(c, *rt, r);
        } else if (!r->nhosts) {
            if (cfg->host_default)
                return conf_error(c,
                                  &(yaml_node_t){.start_mark = {.line = r->loc.line - 1,
                                                                .column = r->loc.col - 1}},
                                  "with a `default` hosts: block the top level's routes serve "
                                  "nothing: move route \"%s\" into it (`scheme:` routes may "
                                  "stay)",
                                  r->pattern);
            rc = router_add(c, cfg->router, r);
        }
        for (size_t h = 0; !rc && h < r->nhosts; h++) {
            cel_router *rt = vhost_router(cfg, r->hosts[h]);
            rc = rt ? router_add(c, rt, r) : conf_error(c, routes, "out of memory");
        }
        if (rc)
            return rc;
    }
    return 0;
}

/* The routes of list N (NULL or an empty scalar: none) into cfg->routes and
 * router RT (when not NULL). */
static int parse_list(conf_ctx *c, cel_config *cfg, yaml_node_t *n, const char *what,
                      const route_list *in, cel_router *rt)
{
    if (!n || (n->type == YAML_SCALAR_NODE && n->data.scalar.length == 0))
        return 0; /* "routes:" with nothing under it */
    int rc = conf_want(c, n, YAML_SEQUENCE_NODE, what);
    for (yaml_node_item_t *it = n->data.sequence.items.start;
         !rc && it < n->data.sequence.items.top; it++) {
        rc = parse_route(c, cfg, conf_node(c, *it), in);
        if (!rc && rt)
            rc = router_add(c, rt, &cfg->routes[cfg->nroutes - 1]);
    }
    return rc;
}

static size_t count_items(const yaml_node_t *n)
{
    return n && n->type == YAML_SEQUENCE_NODE
               ? (size_t)(n->data.sequence.items.top - n->data.sequence.items.start)
               : 0;
}

/* Routes the lists hold: the top level's, each hosts: block's (each `routes`
 * key of it, even one given twice, which is refused later), the listen
 * entries' (redirect_https: one). */
static size_t count_routes(conf_ctx *c, cel_config *cfg, yaml_node_t *top)
{
    size_t count = count_items(top);
    yaml_node_t *h = c->hosts;
    for (yaml_node_pair_t *p = h && h->type == YAML_MAPPING_NODE ? h->data.mapping.pairs.start
                                                                 : NULL;
         p && p < h->data.mapping.pairs.top; p++) {
        yaml_node_t *v = conf_node(c, p->value);
        if (v->type != YAML_MAPPING_NODE)
            continue;
        for (yaml_node_pair_t *q = v->data.mapping.pairs.start; q < v->data.mapping.pairs.top;
             q++) {
            yaml_node_t *k = conf_node(c, q->key);
            if (k->type == YAML_SCALAR_NODE &&
                strcmp((const char *)k->data.scalar.value, "routes") == 0)
                count += count_items(conf_node(c, q->value));
        }
    }
    for (size_t i = 0; i < cfg->nlisten; i++)
        count += cfg->listen[i].redirect_node ? 1 : count_items(cfg->listen[i].routes_node);
    return count;
}

/* ---- hosts: blocks ---- */

typedef struct block_build {
    cel_config *cfg;
    cel_host_block *blk;
    yaml_node_t *routes, *mw;
} block_build;

static int block_pair(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    block_build *b = arg;
    if (strcmp(key, "routes") == 0)
        b->routes = v;
    else if (strcmp(key, "middleware") == 0)
        b->mw = v;
    else
        return conf_unknown_key(c, k, "a hosts: block", "routes, middleware");
    return 0;
}

/* The names of key K ("example.com", "*.example.com" or several joined by
 * commas) as vhosts of BLK, refusing one another block has. */
static int block_names(conf_ctx *c, cel_config *cfg, cel_host_block *blk, yaml_node_t *k)
{
    const char *s;
    int rc = conf_string(c, k, "a hosts: name", &s);
    while (!rc && *s) {
        size_t skip = strspn(s, " ");
        const char *e = strchr(s + skip, ',');
        size_t len = e ? (size_t)(e - s - skip) : strlen(s + skip);
        while (len && s[skip + len - 1] == ' ')
            len--;
        if ((rc = add_host(c, k, s + skip, len, &blk->names, &blk->nnames)))
            break;
        const char *name = blk->names[blk->nnames - 1];
        for (size_t i = 0; i < cfg->nvhosts; i++)
            if (strcmp(cfg->vhosts[i].name, name) == 0)
                return conf_error(c, k, "host \"%s\" is given twice in hosts: (also at %u:%u)",
                                  name, cfg->vhosts[i].loc.line, cfg->vhosts[i].loc.col);
        cel_vhost *v = realloc(cfg->vhosts, (cfg->nvhosts + 1) * sizeof(*v));
        if (!v)
            return conf_error(c, k, "out of memory");
        cfg->vhosts = v;
        v[cfg->nvhosts++] = (cel_vhost){name, strlen(name), blk->router, blk, conf_loc(k)};
        s = e ? e + 1 : s + skip + len;
    }
    return rc;
}

static int parse_block(conf_ctx *c, cel_config *cfg, yaml_node_t *k, yaml_node_t *v, size_t cap)
{
    cel_host_block *blk = &cfg->blocks[cfg->nblocks++];
    block_build b = {cfg, blk, NULL, NULL};
    if (!(blk->router = cel_router_new()))
        return conf_error(c, k, "out of memory");
    int rc = 0;
    if (strcmp((const char *)k->data.scalar.value, "default") == 0)
        cfg->host_default = blk;
    else
        rc = block_names(c, cfg, blk, k);
    if (!rc)
        rc = conf_mapping(c, v, "a hosts: block", block_pair, &b);
    if (!rc && b.mw)
        rc = conf_middleware(c, b.mw, "middleware", &blk->mw_own);
    if (!rc && cel_mw_chain_join(cfg->mw, blk->mw_own, &blk->mw))
        rc = conf_error(c, v, "out of memory");
    route_list in = {blk->mw, 1, cap, blk->nnames ? blk->names[0] : "default", NULL};
    return rc ? rc : parse_list(c, cfg, b.routes, "routes", &in, blk->router);
}

typedef struct hosts_build {
    cel_config *cfg;
    size_t cap;
} hosts_build;

static int hosts_pair(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    hosts_build *h = arg;
    (void)key;
    return parse_block(c, h->cfg, k, v, h->cap);
}

static int parse_hosts(conf_ctx *c, cel_config *cfg, size_t cap)
{
    yaml_node_t *n = c->hosts;
    int rc = conf_want(c, n, YAML_MAPPING_NODE, "hosts");
    if (rc)
        return rc;
    size_t count = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
    if (count && !(cfg->blocks = calloc(count, sizeof(*cfg->blocks))))
        return conf_error(c, n, "out of memory");
    return conf_mapping(c, n, "hosts", hosts_pair, &(hosts_build){cfg, cap});
}

void cel_config_free_blocks(cel_config *cfg)
{
    for (size_t i = 0; i < cfg->nblocks; i++) {
        cel_host_block *b = &cfg->blocks[i];
        if (b->router)
            cel_router_free(b->router);
        if (b->mw != cfg->mw && b->mw != b->mw_own)
            cel_mw_chain_free(b->mw);
        cel_mw_chain_free(b->mw_own);
        for (size_t j = 0; j < b->nnames; j++)
            free(b->names[j]);
        free(b->names);
    }
    free(cfg->blocks);
}

/* ---- listen entries' routes ---- */

static int parse_listen_routes(conf_ctx *c, cel_config *cfg, cel_listen *l, size_t cap)
{
    yaml_node_t *n = l->routes_node ? l->routes_node : l->redirect_node;
    if (!n)
        return 0;
    unsigned port = 0;
    if (l->redirect_node && n->type == YAML_SCALAR_NODE &&
        strcmp((const char *)n->data.scalar.value, "false") == 0)
        return 0;
    if (l->redirect_node && conf_https_port(c, n, "redirect_https", &port))
        return CEL_EINVAL;
    if (!(l->router = cel_router_new()))
        return conf_error(c, n, "out of memory");
    cfg->listen_routes = 1;
    route_list in = {cfg->mw, 1, cap, NULL, l->text};
    if (l->routes_node)
        return parse_list(c, cfg, n, "routes", &in, l->router);
    if (cfg->nroutes == cap)
        return conf_error(c, n, "internal error: more routes than counted");
    cel_route r = {.methods = CEL_M_ALL,
                   .loc = conf_loc(n),
                   .access_log = 1,
                   .max_request_body = CEL_ROUTE_BODY_GLOBAL,
                   .mw = cfg->mw};
    if (!(r.pattern = strdup("/*rest")) ||
        (r.stat_id = cel_stats_route_id(r.pattern, NULL, l->text)) == CEL_STATS_ROUTES ||
        !(r.handler = cel_handler_redirect_https_new(308, port))) {
        free(r.pattern);
        return conf_error(c, n, "out of memory");
    }
    cfg->routes[cfg->nroutes++] = r;
    return router_add(c, l->router, &cfg->routes[cfg->nroutes - 1]);
}

int cel_config_parse_routes(conf_ctx *c, cel_config *cfg, yaml_node_t *n)
{
    /* One allocation for every list: grown a route at a time, it was copied
     * once per route wherever realloc cannot grow in place (quadratic at
     * 20,000), and the routers point into it. */
    yaml_node_t *at = n ? n : c->hosts;
    size_t cap = count_routes(c, cfg, n);
    if (cap && !(cfg->routes = malloc(cap * sizeof(*cfg->routes))))
        return conf_error(c, at, "out of memory");
    if (!(cfg->router = cel_router_new()))
        return conf_error(c, at, "out of memory");
    /* the blocks first: the top level's routes must know of a `default` */
    int rc = c->hosts ? parse_hosts(c, cfg, cap) : 0;
    size_t first = cfg->nroutes;
    route_list top = {cfg->mw, 0, cap, NULL, NULL};
    if (!rc)
        rc = parse_list(c, cfg, n, "routes", &top, NULL);
    if (!rc)
        rc = build_router(c, cfg, n, first);
    for (size_t i = 0; !rc && i < cfg->nlisten; i++)
        rc = parse_listen_routes(c, cfg, &cfg->listen[i], cap);
    for (size_t i = 0; i < cfg->nlisten; i++)
        cfg->listen[i].routes_node = cfg->listen[i].redirect_node = NULL; /* the YAML's, gone */
    cfg->by_conn = cfg->nvhosts || cfg->host_default || cfg->scheme_router[0] ||
                   cfg->scheme_router[1] || cfg->listen_routes;
    return rc;
}
