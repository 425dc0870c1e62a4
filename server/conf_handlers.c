/* The config halves of the handler types: YAML block in, handler out. */
#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "conf.h"
#include "filebuf.h"
#include "fspath.h"
#include "handler_dir.h"
#include "http.h"
#include "json_template.h"
#include "module.h"
#include "mw_module.h"

#define MAX_HEADERS 64

/* What static and json share: status, content_type, headers. */
typedef struct head_build {
    long long status;
    const char *content_type;
    cel_kv headers[MAX_HEADERS];
    char lower[MAX_HEADERS][128];
    size_t nheaders;
    const char *pattern; /* the route's path, for {{param.NAME}} in values */
} head_build;

static int check_scalar(conf_ctx *c, yaml_node_t *n, const char *pattern);

static int header_pair(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    head_build *h = arg;
    size_t n = strlen(key);
    if (h->nheaders == MAX_HEADERS)
        return conf_error(c, k, "too many headers (at most %d)", MAX_HEADERS);
    if (n == 0 || n >= sizeof(h->lower[0]))
        return conf_error(c, k, "header name \"%s\" is empty or too long", key);
    char *low = h->lower[h->nheaders];
    for (size_t i = 0; i < n; i++) {
        if (!cel_http_is_tchar((unsigned char)key[i]))
            return conf_error(c, k, "header name \"%s\" has a character not allowed in a name",
                              key);
        low[i] = (char)cel_http_lower((unsigned char)key[i]);
    }
    low[n] = 0;
    int owner = cel_http_field_owner(low, n);
    if (owner == CEL_HTTP_SERVER || (owner && !cel_http_conn_specific(low, n)))
        return conf_error(c, k, "header \"%s\" cannot be set here (%s)", key,
                          "the server sets it; use content_type for the type");
    if (owner)
        return conf_error(c, k, "header \"%s\" cannot be set here (%s)", key,
                          "HTTP/2 forbids connection-specific headers");
    const char *val;
    char what[160];
    snprintf(what, sizeof(what), "header value for \"%s\"", key);
    int rc = conf_wire_string(c, v, what, 1, &val);
    if (rc)
        return rc;
    if (strstr(val, "{{") && (rc = check_scalar(c, v, h->pattern)))
        return rc;
    h->headers[h->nheaders++] = (cel_kv){{low, n}, {val, strlen(val)}};
    return 0;
}

/* Compiles the values that have placeholders (checked by header_pair), into
 * TMPLS[nheaders]; NULL for the constant ones. 0, or an error at N. */
static int head_templates(conf_ctx *c, head_build *h, yaml_node_t *n, cel_tmpl **tmpls)
{
    char msg[256];
    for (size_t i = 0; i < h->nheaders; i++) {
        const cel_str *v = &h->headers[i].value;
        tmpls[i] = NULL;
        if (!strstr(v->p, "{{"))
            continue;
        if (!(tmpls[i] = cel_tmpl_compile_text(v->p, v->n, msg, sizeof(msg)))) {
            while (i--)
                cel_tmpl_free(tmpls[i]);
            return conf_error(c, n, "%s", msg);
        }
        cel_tmpl_bind_params(tmpls[i], h->pattern);
    }
    return 0;
}

/* The keys common to static and json, whose builders start with a head_build
 * (so ARG, a static_build or json_build, is also its head). */
static int head_status(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    head_build *h = arg;
    (void)key, (void)k;
    return conf_int(c, v, "status", 200, 599, &h->status);
}

static int head_content_type(conf_ctx *c, void *arg, const char *key, yaml_node_t *k,
                             yaml_node_t *v)
{
    head_build *h = arg;
    (void)key, (void)k;
    int rc = conf_wire_string(c, v, "content_type", 0, &h->content_type);
    if (!rc && !*h->content_type)
        return conf_error(c, v, "content_type must be a media type like text/plain");
    return rc;
}

static int head_headers(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    (void)key, (void)k;
    return conf_mapping(c, v, "headers", header_pair, arg);
}

#define HEAD_KEYS                                                                                  \
    {"status", head_status}, {"content_type", head_content_type},                                  \
    {                                                                                              \
        "headers", head_headers                                                                    \
    }

static int no_body_status(long long status)
{
    return status == 204 || status == 304;
}

/* ---- static ---- */

typedef struct static_build {
    head_build head;
    yaml_node_t *body, *file;
} static_build;
_Static_assert(offsetof(static_build, head) == 0, "HEAD_KEYS take a static_build as its head");

static int body_or_file(conf_ctx *c, static_build *b, const char *key, yaml_node_t *k,
                        yaml_node_t *v, yaml_node_t **out)
{
    if (b->body || b->file)
        return conf_error(c, k, "give either body or file, not both");
    if (v->type != YAML_SCALAR_NODE)
        return conf_error(c, v, "%s must be a string", key);
    *out = v;
    return 0;
}

static int static_body(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    static_build *b = arg;
    return body_or_file(c, b, key, k, v, &b->body);
}

static int static_file(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    static_build *b = arg;
    int rc = body_or_file(c, b, key, k, v, &b->file);
    if (!rc && conf_has_nul(v))
        return conf_error(c, v, "file must not contain a NUL byte");
    return rc;
}

static const conf_key static_keys[] = {
    {"body", static_body},
    {"file", static_file},
    HEAD_KEYS,
};

static int static_pair(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    return conf_key_call(c, static_keys, CEL_ARRAY_LEN(static_keys), "static", arg, key, k, v);
}

/* The file's bytes, shared with other routes that name the same file. */
static int read_file(conf_ctx *c, yaml_node_t *n, cel_filebuf **out)
{
    const char *name = (const char *)n->data.scalar.value;
    char path[4096];
    if (name[0] == '/')
        snprintf(path, sizeof(path), "%s", name);
    else
        snprintf(path, sizeof(path), "%s/%s", c->dir, name);
    int rc = cel_filebuf_get(path, out);
    if (rc == -EINVAL)
        return conf_error(c, n, "\"%s\" is not a regular file", path);
    if (rc == -EIO || rc == -ENOMEM)
        return conf_error(c, n, "cannot read file \"%s\"", path);
    if (rc)
        return conf_error(c, n, "cannot open file \"%s\": %s", path, strerror(-rc));
    return 0;
}

static void drop_body(char *body, cel_filebuf *fb)
{
    if (fb)
        cel_filebuf_unref(fb);
    else
        free(body);
}

int conf_handler_static(conf_ctx *c, yaml_node_t *n, const char *pattern, cel_handler **out)
{
    static_build b = {.head = {.status = 200, .pattern = pattern}};
    int rc = conf_mapping(c, n, "static", static_pair, &b);
    if (rc)
        return rc;
    if (!b.body && !b.file)
        return conf_error(c, n, "static needs a body or a file");
    char *body = NULL;
    size_t len = 0;
    cel_filebuf *fb = NULL;
    if (b.file) {
        if ((rc = read_file(c, b.file, &fb)))
            return rc;
        body = (char *)cel_filebuf_data(fb);
        len = cel_filebuf_len(fb);
    } else {
        len = b.body->data.scalar.length;
        body = malloc(len ? len : 1);
        if (!body)
            return conf_error(c, n, "out of memory");
        memcpy(body, b.body->data.scalar.value, len);
    }
    if (len && no_body_status(b.head.status)) {
        drop_body(body, fb);
        return conf_error(c, b.body ? b.body : b.file, "status %lld cannot carry a body",
                          b.head.status);
    }
    const char *ctype = b.head.content_type ? b.head.content_type
                        : b.file            ? "application/octet-stream"
                                            : "text/plain";
    cel_tmpl *tmpls[MAX_HEADERS];
    if ((rc = head_templates(c, &b.head, n, tmpls))) {
        drop_body(body, fb);
        return rc;
    }
    *out = fb ? cel_handler_static_new_shared((int)b.head.status, ctype, b.head.headers,
                                              b.head.nheaders, tmpls, fb)
              : cel_handler_static_new((int)b.head.status, ctype, b.head.headers, b.head.nheaders,
                                       tmpls, body, len);
    if (!*out) {
        if (!fb)
            free(body);
        return conf_error(c, n, "out of memory");
    }
    return 0;
}

/* ---- json ---- */

typedef struct json_build {
    head_build head;
    yaml_node_t *tmpl;
    const char *pattern;
} json_build;
_Static_assert(offsetof(json_build, head) == 0, "HEAD_KEYS take a json_build as its head");

static int json_template(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    json_build *b = arg;
    (void)c, (void)key, (void)k;
    b->tmpl = v;
    return 0;
}

static const conf_key json_keys[] = {
    {"template", json_template},
    HEAD_KEYS,
};

static int json_pair(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    return conf_key_call(c, json_keys, CEL_ARRAY_LEN(json_keys), "json", arg, key, k, v);
}

/* Does PATTERN have a :NAME or *NAME segment? */
static int pattern_has_param(const char *pattern, const char *name, size_t len)
{
    for (const char *p = pattern; (p = strchr(p, '/')); p++) {
        if ((p[1] == ':' || p[1] == '*') && strncmp(p + 2, name, len) == 0 &&
            (p[2 + len] == '/' || p[2 + len] == 0))
            return 1;
    }
    return 0;
}

typedef struct param_check {
    const char *pattern;
    const char *missing;
    size_t missing_len;
} param_check;

static void check_param(void *arg, const char *name, size_t len)
{
    param_check *pc = arg;
    if (!pc->missing && !pattern_has_param(pc->pattern, name, len)) {
        pc->missing = name;
        pc->missing_len = len;
    }
}

static int check_scalar(conf_ctx *c, yaml_node_t *n, const char *pattern)
{
    const char *s = (const char *)n->data.scalar.value;
    char msg[256];
    if (cel_tmpl_check_string(s, n->data.scalar.length, msg, sizeof(msg)))
        return conf_error(c, n, "%s", msg);
    for (const char *p = s; (p = strstr(p, "{{param.")); p++) {
        const char *name = p + 8, *end = strstr(name, "}}");
        if (end && !pattern_has_param(pattern, name, (size_t)(end - name)))
            return conf_error(c, n, "placeholder {{param.%.*s}} names no param of path \"%s\"",
                              (int)(end - name), name, pattern);
    }
    return 0;
}

/* YAML 1.2 core schema for plain scalars: null, booleans, numbers, else string. */
static json_t *plain_scalar(const char *s)
{
    if (!*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL"))
        return json_null();
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE"))
        return json_true();
    if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE"))
        return json_false();
    char *end;
    errno = 0;
    long long i = strtoll(s, &end, 10);
    if (!*end && !errno && (isdigit((unsigned char)s[0]) || s[0] == '-' || s[0] == '+'))
        return json_integer(i);
    double d = strtod(s, &end);
    if (!*end && !errno && (isdigit((unsigned char)s[0]) || s[0] == '-' || s[0] == '.'))
        return json_real(d);
    return NULL;
}

/* YAML to JSON. With PATTERN, string values are template strings whose
 * placeholders are checked against the route. */
/* YAML aliases can make a small file a huge document ("billion laughs"). */
#define MAX_JSON_NODES 100000

static int to_json(conf_ctx *c, yaml_node_t *n, const char *pattern, int depth, json_t **out)
{
    *out = NULL;
    if (depth > 64)
        return conf_error(c, n, "template nests deeper than 64 levels");
    if (++c->json_nodes > MAX_JSON_NODES)
        return conf_error(c, n, "more than %d values (aliases expanded): refused", MAX_JSON_NODES);
    int rc = 0;
    switch (n->type) {
    case YAML_SCALAR_NODE: {
        const char *s = (const char *)n->data.scalar.value;
        *out = n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE ? plain_scalar(s) : NULL;
        if (*out)
            return 0;
        if (pattern && (rc = check_scalar(c, n, pattern)))
            return rc;
        *out = json_stringn(s, n->data.scalar.length);
        if (!*out)
            return conf_error(c, n, "template strings must be valid UTF-8");
        return 0;
    }
    case YAML_SEQUENCE_NODE:
        *out = json_array();
        for (yaml_node_item_t *it = n->data.sequence.items.start;
             !rc && it < n->data.sequence.items.top; it++) {
            json_t *item;
            if (!(rc = to_json(c, conf_node(c, *it), pattern, depth + 1, &item)))
                json_array_append_new(*out, item);
        }
        break;
    case YAML_MAPPING_NODE:
        *out = json_object();
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start;
             !rc && p < n->data.mapping.pairs.top; p++) {
            yaml_node_t *k = conf_node(c, p->key);
            json_t *item;
            if (k->type != YAML_SCALAR_NODE) {
                rc = conf_error(c, k, "template keys must be strings");
                break;
            }
            const char *key = (const char *)k->data.scalar.value;
            if (json_object_get(*out, key)) {
                rc = conf_error(c, k, "duplicate key \"%s\" in template", key);
                break;
            }
            if (!(rc = to_json(c, conf_node(c, p->value), pattern, depth + 1, &item)))
                json_object_set_new(*out, key, item);
        }
        break;
    default:
        return conf_error(c, n, "template is empty");
    }
    if (rc) {
        json_decref(*out);
        *out = NULL;
    }
    return rc;
}

int conf_handler_json(conf_ctx *c, yaml_node_t *n, const char *pattern, cel_handler **out)
{
    json_build b = {.head = {.status = 200, .pattern = pattern}, .pattern = pattern};
    int rc = conf_mapping(c, n, "json", json_pair, &b);
    if (rc)
        return rc;
    if (!b.tmpl)
        return conf_error(c, n, "json needs a template");
    if (no_body_status(b.head.status))
        return conf_error(c, n, "status %lld cannot carry a body", b.head.status);
    json_t *root = NULL;
    if (b.tmpl->type == YAML_SCALAR_NODE && b.tmpl->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) {
        /* A quoted or block string is the template as JSON text. */
        json_error_t je;
        root = json_loadb((const char *)b.tmpl->data.scalar.value, b.tmpl->data.scalar.length,
                          JSON_DECODE_ANY, &je);
        if (!root)
            return conf_error(c, b.tmpl,
                              "template is not valid JSON: %s (at line %d, column %d "
                              "of the template)",
                              je.text, je.line, je.column);
    } else if (b.tmpl->type == YAML_SCALAR_NODE) {
        return conf_error(c, b.tmpl, "template must be a mapping, a list or a quoted JSON string");
    } else if ((c->json_nodes = 0, rc = to_json(c, b.tmpl, pattern, 0, &root))) {
        return rc;
    }
    char msg[256];
    cel_tmpl *t = cel_tmpl_compile(root, msg, sizeof(msg));
    json_decref(root);
    if (!t)
        return conf_error(c, b.tmpl, "%s", msg);
    param_check pc = {.pattern = pattern};
    cel_tmpl_each_param(t, check_param, &pc);
    if (pc.missing) {
        rc = conf_error(c, b.tmpl, "placeholder {{param.%.*s}} names no param of path \"%s\"",
                        (int)pc.missing_len, pc.missing, pattern);
        cel_tmpl_free(t);
        return rc;
    }
    cel_tmpl_bind_params(t, pattern);
    cel_tmpl *tmpls[MAX_HEADERS];
    if ((rc = head_templates(c, &b.head, n, tmpls))) {
        cel_tmpl_free(t);
        return rc;
    }
    *out = cel_handler_json_new((int)b.head.status,
                                b.head.content_type ? b.head.content_type : "application/json",
                                b.head.headers, b.head.nheaders, tmpls, t);
    return *out ? 0 : conf_error(c, n, "out of memory");
}

/* ---- module ---- */

typedef struct module_build {
    yaml_node_t *name, *path, *config;
} module_build;

static int module_string(conf_ctx *c, const char *key, yaml_node_t *v, yaml_node_t **out)
{
    if (v->type != YAML_SCALAR_NODE || !v->data.scalar.length || conf_has_nul(v))
        return conf_error(c, v, "module %s must be a non-empty string without NUL", key);
    *out = v;
    return 0;
}

static int module_name(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    (void)k;
    return module_string(c, key, v, &((module_build *)arg)->name);
}

static int module_path(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    (void)k;
    return module_string(c, key, v, &((module_build *)arg)->path);
}

static int module_config(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    (void)c, (void)key, (void)k;
    ((module_build *)arg)->config = v;
    return 0;
}

static const conf_key module_keys[] = {
    {"name", module_name},
    {"path", module_path},
    {"config", module_config},
};

static int module_pair(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    return conf_key_call(c, module_keys, CEL_ARRAY_LEN(module_keys), "module", arg, key, k, v);
}

/* The module N names, loaded, and its config as JSON (to free) into *JSON;
 * *AT is the node errors about the module point at. */
static int module_open(conf_ctx *c, yaml_node_t *n, const char *pattern, const char *modules_dir,
                       cel_module_image **img, char **json_out, yaml_node_t **at_out)
{
    module_build b = {0};
    int rc = conf_mapping(c, n, "module", module_pair, &b);
    if (rc)
        return rc;
    if (!b.name && !b.path)
        return conf_error(c, n, "module needs a name (found in modules_dir) or a path");
    char path[4096];
    yaml_node_t *at = b.path ? b.path : b.name;
    const char *v = (const char *)at->data.scalar.value;
    if (b.path)
        snprintf(path, sizeof(path), "%s%s%s", v[0] == '/' ? "" : c->dir, v[0] == '/' ? "" : "/",
                 v);
    else if (strchr(v, '/'))
        return conf_error(c, at, "module name \"%s\" must not contain '/': use path", v);
    else
        snprintf(path, sizeof(path), "%s/%s.so", modules_dir, v);

    char *json = NULL;
    if (b.config) {
        json_t *root;
        c->json_nodes = 0;
        if ((rc = to_json(c, b.config, NULL, 0, &root)))
            return rc;
        json = json_dumps(root, JSON_COMPACT | JSON_ENCODE_ANY);
        json_decref(root);
    } else {
        json = strdup("{}");
    }
    if (!json)
        return conf_error(c, n, "out of memory");

    char err[768];
    if (cel_module_load(path, pattern, img, err, sizeof(err))) {
        free(json);
        return conf_error(c, at, "%s", err);
    }
    *json_out = json;
    *at_out = at;
    return 0;
}

int conf_handler_module(conf_ctx *c, yaml_node_t *n, const char *pattern, const char *modules_dir,
                        unsigned nworkers, cel_handler **out)
{
    cel_module_image *img = NULL;
    char *json = NULL, err[768];
    yaml_node_t *at = NULL; /* module_open sets all three when it returns 0 */
    int rc = module_open(c, n, pattern, modules_dir, &img, &json, &at);
    if (rc)
        return rc;
    *out = cel_handler_module_new(img, pattern, json, nworkers, err, sizeof(err));
    free(json);
    return *out ? 0 : conf_error(c, at, "%s", err);
}

int conf_mw_module(conf_ctx *c, yaml_node_t *n, cel_mw **out)
{
    cel_module_image *img = NULL;
    char *json = NULL, err[768];
    yaml_node_t *at = NULL; /* module_open sets all three when it returns 0 */
    const char *route = c->mw_route ? c->mw_route : "";
    int rc = module_open(c, n, c->mw_route ? c->mw_route : "(middleware)", c->modules_dir, &img,
                         &json, &at);
    if (rc)
        return rc;
    *out = cel_mw_module_new(img, route, json, c->nworkers, err, sizeof(err));
    free(json);
    return *out ? 0 : conf_error(c, at, "%s", err);
}

/* ---- metrics, status, readiness ---- */

static int no_keys(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    (void)arg, (void)key, (void)v;
    return conf_unknown_key(c, k, "metrics/status/readiness", "(none)");
}

static int stats(conf_ctx *c, yaml_node_t *n, int status, cel_handler **out)
{
    static const char *const names[] = {"metrics", "status", "readiness"};
    int empty = n->type == YAML_SCALAR_NODE && n->data.scalar.length == 0;
    if (!empty) {
        int rc = conf_mapping(c, n, names[status], no_keys, NULL);
        if (rc)
            return rc;
    }
    *out = status == 2   ? cel_handler_readiness_new()
           : status == 1 ? cel_handler_status_new()
                         : cel_handler_metrics_new();
    return *out ? 0 : conf_error(c, n, "out of memory");
}

int conf_handler_metrics(conf_ctx *c, yaml_node_t *n, const char *pattern, cel_handler **out)
{
    (void)pattern;
    return stats(c, n, 0, out);
}

int conf_handler_status(conf_ctx *c, yaml_node_t *n, const char *pattern, cel_handler **out)
{
    (void)pattern;
    return stats(c, n, 1, out);
}

int conf_handler_readiness(conf_ctx *c, yaml_node_t *n, const char *pattern, cel_handler **out)
{
    (void)pattern;
    return stats(c, n, 2, out);
}

/* ---- dir ---- */

#define MAX_INDEX 16
#define MAX_MIME 64
/* A year and a bit: long enough for `immutable` assets. */
#define MAX_AGE_MAX (400LL * 86400)

typedef struct dir_build {
    head_build head; /* only its headers: dir sets status and type itself */
    cel_dir_conf conf;
    const char *index[MAX_INDEX];
    cel_kv mime[MAX_MIME];
    char fallback[CEL_FSPATH_MAX + 1];
    yaml_node_t *root;
} dir_build;
_Static_assert(offsetof(dir_build, head) == 0, "head_headers takes a dir_build as its head");

static int dir_root(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    dir_build *b = arg;
    (void)k;
    if (conf_string(c, v, key, &b->conf.root))
        return CEL_EINVAL;
    if (!*b->conf.root)
        return conf_error(c, v, "root must name a directory");
    b->root = v;
    return 0;
}

static int dir_index(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    dir_build *b = arg;
    (void)key, (void)k;
    yaml_node_item_t *it = NULL, *top = NULL;
    if (v->type == YAML_SEQUENCE_NODE) {
        it = v->data.sequence.items.start;
        top = v->data.sequence.items.top;
    } else if (v->type != YAML_SCALAR_NODE) {
        return conf_error(c, v, "index must be a file name or a list of them");
    }
    for (yaml_node_t *n = it ? (it < top ? conf_node(c, *it) : NULL) : v; n;
         n = it && ++it < top ? conf_node(c, *it) : NULL) {
        const char *s;
        if (conf_string(c, n, "index", &s))
            return CEL_EINVAL;
        if (!*s || strchr(s, '/') || strchr(s, '\\') || !strcmp(s, ".") || !strcmp(s, "..") ||
            strlen(s) > 200)
            return conf_error(c, n, "index \"%s\" must be a plain file name (no '/')", s);
        if (b->conf.nindex == MAX_INDEX)
            return conf_error(c, n, "too many index names (at most %d)", MAX_INDEX);
        b->index[b->conf.nindex++] = s;
        if (!it)
            break;
    }
    return 0;
}

static int dir_flag(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    dir_build *b = arg;
    (void)k;
    int *f = !strcmp(key, "listing") ? &b->conf.listing
             : !strcmp(key, "etag")  ? &b->conf.etag
                                     : &b->conf.follow_symlinks;
    return conf_bool(c, v, key, f);
}

static int dir_fallback(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    dir_build *b = arg;
    (void)k;
    const char *s;
    size_t len;
    if (conf_string(c, v, key, &s))
        return CEL_EINVAL;
    if (cel_fspath_map(s, strlen(s), b->fallback, sizeof(b->fallback), &len, NULL) || !len)
        return conf_error(
            c, v, "fallback \"%s\" must be a file's path under root (no \"..\", no '\\')", s);
    b->conf.fallback = b->fallback;
    return 0;
}

static int dir_max_age(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    dir_build *b = arg;
    (void)key, (void)k;
    if (v->type != YAML_SCALAR_NODE)
        return conf_error(c, v, "max_age must be seconds or a duration like \"1h\" or \"7d\"");
    const char *s = (const char *)v->data.scalar.value;
    char *end;
    errno = 0;
    long long n = isdigit((unsigned char)*s) ? strtoll(s, &end, 10) : -1;
    long long unit = n < 0                        ? 0
                     : !*end || !strcmp(end, "s") ? 1
                     : !strcmp(end, "m")          ? 60
                     : !strcmp(end, "h")          ? 3600
                     : !strcmp(end, "d")          ? 86400
                                                  : 0;
    if (!unit || errno || n > MAX_AGE_MAX / unit)
        return conf_error(c, v,
                          "max_age must be seconds or a duration like \"1h\" or \"7d\" (s, m, h, "
                          "d; at most 400d), not \"%s\"",
                          s);
    b->conf.max_age = n * unit;
    return 0;
}

static int dir_precompressed(conf_ctx *c, void *arg, const char *key, yaml_node_t *k,
                             yaml_node_t *v)
{
    dir_build *b = arg;
    static const char *const names[CEL_ENC_COUNT] = {"br", "zstd", "gzip"};
    (void)key, (void)k;
    if (v->type != YAML_SEQUENCE_NODE)
        return conf_error(c, v, "precompressed must be a list of codings like [br, zstd, gzip]");
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
         it++) {
        yaml_node_t *n = conf_node(c, *it);
        const char *s;
        if (conf_string(c, n, "precompressed", &s))
            return CEL_EINVAL;
        int e = -1;
        for (int i = 0; i < CEL_ENC_COUNT; i++)
            if (!strcmp(s, names[i]))
                e = i;
        if (e < 0)
            return conf_error(c, n, "unknown coding \"%s\" in precompressed (br, zstd or gzip)", s);
        for (size_t i = 0; i < b->conf.nprecompressed; i++)
            if (b->conf.precompressed[i] == (cel_encoding)e)
                return conf_error(c, n, "coding \"%s\" is listed twice", s);
        b->conf.precompressed[b->conf.nprecompressed++] = (cel_encoding)e;
    }
    return 0;
}

static int mime_pair(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    dir_build *b = arg;
    const char *type;
    if (b->conf.nmime == MAX_MIME)
        return conf_error(c, k, "too many mime entries (at most %d)", MAX_MIME);
    const char *ext = key[0] == '.' ? key + 1 : key;
    if (!*ext || strchr(ext, '/') || strchr(ext, '.') || strlen(ext) >= 32)
        return conf_error(c, k, "mime key \"%s\" must be an extension like .webmanifest", key);
    if (conf_wire_string(c, v, "mime type", 0, &type))
        return CEL_EINVAL;
    if (!*type || !strchr(type, '/'))
        return conf_error(c, v, "mime type \"%s\" must be a media type like text/plain", type);
    b->mime[b->conf.nmime++] = (cel_kv){{ext, strlen(ext)}, {type, strlen(type)}};
    return 0;
}

static int dir_mime(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    (void)key, (void)k;
    return conf_mapping(c, v, "mime", mime_pair, arg);
}

static int dir_cache(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    dir_build *b = arg;
    long long n;
    (void)k;
    if (conf_int(c, v, key, 0, CEL_DIR_CACHE_MAX, &n))
        return CEL_EINVAL;
    b->conf.cache_entries = (size_t)n;
    return 0;
}

static int dir_cache_bytes(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    (void)k;
    return conf_size(c, v, key, 0, CEL_DIR_BYTES_MAX, &((dir_build *)arg)->conf.cache_bytes);
}

static int dir_headers(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    dir_build *b = arg;
    int rc = head_headers(c, arg, key, k, v);
    for (size_t i = 0; !rc && i < b->head.nheaders; i++)
        if (strstr(b->head.headers[i].value.p, "{{"))
            rc = conf_error(c, v, "dir header values are constants (no {{placeholders}})");
    return rc;
}

static const conf_key dir_keys[] = {
    {"root", dir_root},
    {"index", dir_index},
    {"listing", dir_flag},
    {"etag", dir_flag},
    {"follow_symlinks", dir_flag},
    {"fallback", dir_fallback},
    {"max_age", dir_max_age},
    {"headers", dir_headers},
    {"precompressed", dir_precompressed},
    {"mime", dir_mime},
    {"open_file_cache", dir_cache},
    {"open_file_cache_bytes", dir_cache_bytes},
};

static int dir_pair(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    return conf_key_call(c, dir_keys, CEL_ARRAY_LEN(dir_keys), "dir", arg, key, k, v);
}

/* The route's wildcard param (else its last :param), or NULL: the whole
 * path maps under root. Into BUF; *IDX is its place among the pattern's
 * *NPARAMS params (as the router numbers them: the order they come in). */
static const char *path_param(const char *pattern, char *buf, size_t len, unsigned *idx,
                              unsigned *nparams)
{
    const char *found = NULL;
    unsigned k = 0;
    for (const char *p = pattern; (p = strchr(p, '/')); p++) {
        if (p[1] != '*' && p[1] != ':')
            continue;
        if (p[1] == '*' || !found || found[-1] != '*') {
            found = p + 2;
            *idx = k;
        }
        k++;
    }
    *nparams = k;
    if (!found)
        return NULL;
    size_t n = strcspn(found, "/");
    snprintf(buf, len, "%.*s", (int)n, found);
    return buf;
}

int conf_handler_dir(conf_ctx *c, yaml_node_t *n, const char *pattern, unsigned nworkers,
                     cel_handler **out)
{
    dir_build b = {.head = {.pattern = pattern}};
    b.conf.etag = 1;
    b.conf.max_age = -1;
    b.conf.cache_entries = CEL_DIR_CACHE_DEFAULT;
    b.conf.cache_bytes = CEL_DIR_BYTES_DEFAULT;
    int rc = conf_mapping(c, n, "dir", dir_pair, &b);
    if (rc)
        return rc;
    if (!b.root)
        return conf_error(c, n, "dir needs a root (the directory to serve)");
    char root[4096], param[128];
    if (b.conf.root[0] == '/')
        snprintf(root, sizeof(root), "%s", b.conf.root);
    else
        snprintf(root, sizeof(root), "%s/%s", c->dir, b.conf.root);
    b.conf.root = root;
    b.conf.index = b.index;
    b.conf.mime = b.mime;
    b.conf.headers = b.head.headers;
    b.conf.nheaders = b.head.nheaders;
    b.conf.mime_file = "/etc/mime.types";
    b.conf.param = path_param(pattern, param, sizeof(param), &b.conf.param_idx, &b.conf.nparams);
    b.conf.nworkers = nworkers;
    char err[512];
    *out = cel_handler_dir_new(&b.conf, err, sizeof(err));
    return *out ? 0 : conf_error(c, b.root, "%s", err);
}

/* ---- redirect ---- */

typedef struct redirect_build {
    yaml_node_t *to, *https;
    unsigned port;
    long long status;
    const char *pattern;
} redirect_build;

int conf_https_port(conf_ctx *c, yaml_node_t *v, const char *what, unsigned *port)
{
    long long p;
    if (v->type == YAML_SCALAR_NODE && strcmp((const char *)v->data.scalar.value, "true") == 0) {
        *port = 0;
        return 0;
    }
    if (v->type != YAML_SCALAR_NODE || conf_int(c, v, what, 1, 65535, &p))
        return conf_error(c, v, "%s is true (https on port 443) or the TLS port, 1-65535", what);
    *port = (unsigned)p;
    return 0;
}

static int redirect_https(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    redirect_build *b = arg;
    (void)k;
    b->https = v;
    return conf_https_port(c, v, key, &b->port);
}

static int redirect_to(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    redirect_build *b = arg;
    const char *s;
    (void)k;
    int rc = conf_wire_string(c, v, key, 0, &s);
    if (rc || (rc = check_scalar(c, v, b->pattern)))
        return rc;
    if (!*s)
        return conf_error(c, v, "to must not be empty");
    b->to = v;
    return 0;
}

static int redirect_status(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    redirect_build *b = arg;
    (void)k;
    int rc = conf_int(c, v, key, 301, 308, &b->status);
    if (!rc && (b->status == 304 || b->status == 305 || b->status == 306))
        rc = conf_error(c, v, "status must be 301, 302, 303, 307 or 308, not %lld", b->status);
    return rc;
}

static const conf_key redirect_keys[] = {
    {"to", redirect_to},
    {"status", redirect_status},
    {"https", redirect_https},
};

static int redirect_pair(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    return conf_key_call(c, redirect_keys, CEL_ARRAY_LEN(redirect_keys), "redirect", arg, key, k,
                         v);
}

int conf_handler_redirect(conf_ctx *c, yaml_node_t *n, const char *pattern, cel_handler **out)
{
    redirect_build b = {.status = 302, .pattern = pattern};
    int rc = conf_mapping(c, n, "redirect", redirect_pair, &b);
    if (rc)
        return rc;
    if (b.to && b.https)
        return conf_error(c, b.https, "redirect has `to` or `https`, not both");
    if (b.https) {
        *out = cel_handler_redirect_https_new((int)b.status, b.port);
        return *out ? 0 : conf_error(c, n, "out of memory");
    }
    if (!b.to)
        return conf_error(c, n, "redirect needs to (the target URL) or https");
    char msg[256];
    cel_tmpl *t = cel_tmpl_compile_url((const char *)b.to->data.scalar.value,
                                       b.to->data.scalar.length, msg, sizeof(msg));
    if (!t)
        return conf_error(c, b.to, "%s", msg);
    cel_tmpl_bind_params(t, pattern);
    if (!(*out = cel_handler_redirect_new((int)b.status, t)))
        return conf_error(c, n, "out of memory");
    return 0;
}
