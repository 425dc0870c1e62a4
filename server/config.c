#include "config.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "accesslog.h"
#include "conf.h"
#include "config_internal.h"
#include "errors.h"
#include "http.h"
#include "log.h"
#include "real_ip.h"
#include "stats.h"
#include "tls.h"

static atomic_ulong generations;

static pthread_mutex_t pub_lock = PTHREAD_MUTEX_INITIALIZER;
static cel_config *published;
static atomic_ulong published_gen;

/* ---- workers ---- */

static int allowed_cpus(int *ids, int max)
{
    cpu_set_t set;
    int n = 0;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        for (int i = 0; i < CPU_SETSIZE && n < max; i++)
            if (CPU_ISSET(i, &set))
                ids[n++] = i;
    }
    return n;
}

static int parse_workers(conf_ctx *c, cel_config *cfg, yaml_node_t *n)
{
    int avail[CPU_SETSIZE];
    int navail = allowed_cpus(avail, CPU_SETSIZE);
    if (n->type == YAML_SEQUENCE_NODE) {
        size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
        if (count == 0)
            return conf_error(c, n, "workers: the CPU list is empty");
        int *cpus = calloc(count, sizeof(int));
        if (!cpus)
            return conf_error(c, n, "out of memory");
        free(cfg->cpus);
        cfg->cpus = cpus;
        cfg->nworkers = (unsigned)count;
        for (size_t i = 0; i < count; i++) {
            yaml_node_t *item = conf_node(c, n->data.sequence.items.start[i]);
            long long id;
            int rc = conf_int(c, item, "a worker CPU id", 0, CPU_SETSIZE - 1, &id);
            if (rc)
                return rc;
            int ok = 0;
            for (int j = 0; j < navail; j++)
                ok |= avail[j] == id;
            if (!ok)
                return conf_error(c, item, "CPU %lld is not available to this process", id);
            cpus[i] = (int)id;
        }
        return 0;
    }
    long long count;
    if (n->type == YAML_SCALAR_NODE && strcmp((const char *)n->data.scalar.value, "auto") == 0) {
        count = navail > 0 ? navail : 1;
    } else {
        if (n->type != YAML_SCALAR_NODE || conf_int(c, n, "workers", 1, 1024, &count))
            return conf_error(c, n,
                              "workers must be \"auto\", a number from 1 to 1024 or a list of "
                              "CPU ids");
    }
    int *cpus = calloc((size_t)count, sizeof(int));
    if (!cpus)
        return conf_error(c, n, "out of memory");
    for (long long i = 0; i < count; i++)
        cpus[i] = navail > 0 ? avail[i % navail] : -1;
    free(cfg->cpus);
    cfg->cpus = cpus;
    cfg->nworkers = (unsigned)count;
    return 0;
}

/* ---- limits, log ---- */

#define LIMIT(key, field, kind, min, max, def)                                                     \
    {                                                                                              \
        key, kind, offsetof(cel_limits, field), sizeof(((cel_limits *)0)->field), min, max, def    \
    }

/* In the order "expected one of" lists them. */
const conf_limit conf_limits[] = {
    LIMIT("max_concurrent_streams", max_concurrent_streams, CONF_COUNT, 1, INT32_MAX,
          CEL_DEF_MAX_CONCURRENT_STREAMS),
    LIMIT("max_header_list_size", max_header_list_size, CONF_SIZE, 1024, 16u << 20,
          CEL_DEF_MAX_HEADER_LIST_SIZE),
    LIMIT("max_request_body", max_request_body, CONF_SIZE, 0, 1LL << 40, CEL_DEF_MAX_REQUEST_BODY),
    LIMIT("max_connections", max_connections, CONF_COUNT, 1, 10000000, CEL_DEF_MAX_CONNECTIONS),
    LIMIT("idle_timeout", idle_timeout_ms, CONF_DURATION, 0, 0, CEL_DEF_IDLE_TIMEOUT_MS),
    LIMIT("header_timeout", header_timeout_ms, CONF_DURATION, 0, 0, CEL_DEF_HEADER_TIMEOUT_MS),
    LIMIT("write_timeout", write_timeout_ms, CONF_DURATION, 0, 0, CEL_DEF_WRITE_TIMEOUT_MS),
    LIMIT("min_send_rate", min_send_rate, CONF_SIZE, 0, 1LL << 30, CEL_DEF_MIN_SEND_RATE),
    LIMIT("initial_window_size", initial_window_size, CONF_SIZE, 1, INT32_MAX,
          CEL_DEF_INITIAL_WINDOW_SIZE),
    LIMIT("body_window", body_window, CONF_SIZE, 1, INT32_MAX, CEL_DEF_BODY_WINDOW),
    LIMIT("connection_window", connection_window, CONF_SIZE, 65535, INT32_MAX,
          CEL_DEF_CONNECTION_WINDOW),
    LIMIT("max_output_buffer", max_output_buffer, CONF_SIZE, 16384, 1LL << 30,
          CEL_DEF_MAX_OUTPUT_BUFFER),
    LIMIT("tcp_notsent_lowat", tcp_notsent_lowat, CONF_SIZE, 0, INT32_MAX,
          CEL_DEF_TCP_NOTSENT_LOWAT),
    LIMIT("max_settings_entries", max_settings_entries, CONF_COUNT, 6, 1000,
          CEL_DEF_MAX_SETTINGS_ENTRIES),
    LIMIT("reset_burst", reset_burst, CONF_COUNT, 1, 1000000, CEL_DEF_RESET_BURST),
    LIMIT("reset_rate", reset_rate, CONF_COUNT, 1, 1000000, CEL_DEF_RESET_RATE),
    LIMIT("max_continuations", max_continuations, CONF_COUNT, 1, 100000, CEL_DEF_MAX_CONTINUATIONS),
    LIMIT("max_outbound_ack", max_outbound_ack, CONF_COUNT, 1, 1000000, CEL_DEF_MAX_OUTBOUND_ACK),
    LIMIT("glitch_burst", glitch_burst, CONF_COUNT, 1, 100000000, CEL_DEF_GLITCH_BURST),
    LIMIT("glitch_rate", glitch_rate, CONF_COUNT, 1, 100000000, CEL_DEF_GLITCH_RATE),
    LIMIT("max_request_line", max_request_line, CONF_SIZE, 64, 1 << 20, CEL_DEF_MAX_REQUEST_LINE),
    LIMIT("max_header_line", max_header_line, CONF_SIZE, 64, 1 << 20, CEL_DEF_MAX_HEADER_LINE),
    LIMIT("max_headers", max_headers, CONF_COUNT, 1, 100, CEL_DEF_MAX_HEADERS),
};
const size_t conf_nlimits = CEL_ARRAY_LEN(conf_limits);

/* Fields are uint32_t or size_t (test_config checks every row's width). */
static void limit_store(cel_limits *l, const conf_limit *d, unsigned long long v)
{
    uint32_t v32 = (uint32_t)v;
    size_t vsz = (size_t)v;
    memcpy((char *)l + d->off, d->width == sizeof(v32) ? (void *)&v32 : (void *)&vsz, d->width);
}

static int limit_pair(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    cel_limits *l = arg;
    for (size_t j = 0; j < conf_nlimits; j++) {
        const conf_limit *d = &conf_limits[j];
        if (strcmp(key, d->key) != 0)
            continue;
        char what[64];
        snprintf(what, sizeof(what), "limits.%s", key);
        unsigned long long val = 0;
        int rc;
        if (d->kind == CONF_COUNT) {
            long long i = 0;
            rc = conf_int(c, v, what, d->min, d->max, &i);
            val = (unsigned long long)i;
        } else if (d->kind == CONF_SIZE) {
            size_t sz = 0;
            rc = conf_size(c, v, what, (size_t)d->min, (size_t)d->max, &sz);
            val = sz;
        } else {
            uint32_t ms = 0;
            rc = conf_duration_ms(c, v, what, &ms);
            val = ms;
        }
        if (!rc)
            limit_store(l, d, val);
        return rc;
    }
    char allowed[512] = "";
    return conf_unknown_key(c, k, "limits", CONF_KEY_LIST(allowed, conf_limits));
}

typedef struct access_build {
    yaml_node_t *path, *format;
} access_build;

static const struct {
    const char *key;
    size_t off;
} access_keys[] = {
    {"path", offsetof(access_build, path)},
    {"format", offsetof(access_build, format)},
};

static int access_pair(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    for (size_t i = 0; i < CEL_ARRAY_LEN(access_keys); i++) {
        if (strcmp(key, access_keys[i].key) != 0)
            continue;
        char what[64];
        const char *s;
        snprintf(what, sizeof(what), "log.access.%s", key);
        int rc = conf_string(c, v, what, &s);
        if (rc)
            return rc;
        *(yaml_node_t **)((char *)arg + access_keys[i].off) = v;
        return 0;
    }
    char allowed[64] = "";
    return conf_unknown_key(c, k, "log.access", CONF_KEY_LIST(allowed, access_keys));
}

/* The access log is opened after workers are known: it keeps a buffer per worker. */
static int parse_access(conf_ctx *c, cel_config *cfg, yaml_node_t *n)
{
    access_build b = {0};
    if (n->type == YAML_SCALAR_NODE && strcmp((const char *)n->data.scalar.value, "off") == 0)
        return 0;
    int rc = conf_mapping(c, n, "log.access", access_pair, &b);
    if (rc)
        return rc;
    const char *path = b.path ? (const char *)b.path->data.scalar.value : "stderr";
    if (strcmp(path, "off") == 0)
        return 0;
    char full[4096];
    if (path[0] != '/' && strcmp(path, "stderr") && strcmp(path, "stdout"))
        snprintf(full, sizeof(full), "%s/%s", c->dir, path);
    else
        snprintf(full, sizeof(full), "%s", path);
    const char *format = b.format ? (const char *)b.format->data.scalar.value : "combined";
    char err[512];
    cfg->accesslog =
        cel_accesslog_new(full, format, cfg->nworkers, c->check_only, err, sizeof(err));
    if (!cfg->accesslog)
        return conf_error(c,
                          strstr(err, "format") && b.format ? b.format
                          : b.path                          ? b.path
                                                            : n,
                          "%s", err);
    return 0;
}

static int log_level(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    cel_config *cfg = arg;
    (void)key, (void)k;
    const char *s;
    int rc = conf_string(c, v, "log.level", &s);
    if (rc)
        return rc;
    cfg->log_level = cel_log_level_parse(s);
    if (cfg->log_level < 0)
        return conf_error(c, v, "log.level must be debug, info, warn or error, not \"%s\"", s);
    return 0;
}

static int log_access(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    (void)arg, (void)key, (void)k;
    c->access = v;
    return 0;
}

const conf_key conf_log_keys[] = {
    {"level", log_level},
    {"access", log_access},
};
const size_t conf_nlog_keys = CEL_ARRAY_LEN(conf_log_keys);

static int log_pair(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    return conf_key_call(c, conf_log_keys, conf_nlog_keys, "log", arg, key, k, v);
}

/* ---- top level ---- */

static int top_listen(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    (void)key, (void)k;
    cel_config *cfg = arg;
    return conf_listen(c, v, &cfg->listen, &cfg->nlisten);
}

static int top_workers(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    (void)key, (void)k;
    return parse_workers(c, arg, v);
}

static int top_limits(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    cel_config *cfg = arg;
    (void)key, (void)k;
    return conf_mapping(c, v, "limits", limit_pair, &cfg->limits);
}

static int top_log(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    (void)key, (void)k;
    return conf_mapping(c, v, "log", log_pair, arg);
}

static int top_shutdown_timeout(conf_ctx *c, void *arg, const char *key, yaml_node_t *k,
                                yaml_node_t *v)
{
    cel_config *cfg = arg;
    (void)key, (void)k;
    return conf_duration_ms(c, v, "shutdown_timeout", &cfg->shutdown_timeout_ms);
}

static int top_sendfile(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    cel_config *cfg = arg;
    (void)k;
    int on;
    if (conf_bool(c, v, key, &on))
        return CEL_EINVAL;
    cfg->no_sendfile = !on;
    return 0;
}

static int top_drain_time(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    cel_config *cfg = arg;
    (void)key, (void)k;
    /* 0 (the default) is allowed: no drain, SIGTERM stops at once. */
    if (v->type == YAML_SCALAR_NODE && strcmp((const char *)v->data.scalar.value, "0") == 0) {
        cfg->drain_time_ms = 0;
        return 0;
    }
    return conf_duration_ms(c, v, "drain_time", &cfg->drain_time_ms);
}

static void real_ip_free(cel_real_ip *r)
{
    if (!r)
        return;
    free(r->header);
    free(r->trusted);
    free(r);
}

static int real_ip_pair(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    cel_real_ip *r = arg;
    if (strcmp(key, "trusted") == 0)
        return conf_trusted(c, v, &r->trusted, &r->ntrusted);
    if (strcmp(key, "header") != 0)
        return conf_unknown_key(c, k, "real_ip", "header, trusted");
    const char *s;
    int rc = conf_string(c, v, "real_ip.header", &s);
    if (rc)
        return rc;
    size_t n = strlen(s);
    if (n == 0 || !cel_http_is_token(s, n))
        return conf_error(c, v, "real_ip.header must be a header name, not \"%s\"", s);
    free(r->header);
    if (!(r->header = strdup(s)))
        return conf_error(c, v, "out of memory");
    for (char *p = r->header; *p; p++)
        *p = cel_http_lower(*p);
    r->header_len = n;
    return 0;
}

/* real_ip: { header: x-forwarded-for, trusted: [CIDR, ...] } */
static int top_real_ip(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    cel_config *cfg = arg;
    (void)key, (void)k;
    cel_real_ip *r = calloc(1, sizeof(*r));
    if (!r)
        return conf_error(c, v, "out of memory");
    real_ip_free(cfg->real_ip);
    cfg->real_ip = r;
    int rc = conf_mapping(c, v, "real_ip", real_ip_pair, r);
    if (!rc && (!r->header || !r->trusted))
        rc = conf_error(c, v, "real_ip needs header and trusted");
    return rc;
}

static int top_tls_ticket_rotation(conf_ctx *c, void *arg, const char *key, yaml_node_t *k,
                                   yaml_node_t *v)
{
    cel_config *cfg = arg;
    (void)key, (void)k;
    return conf_duration_ms(c, v, "tls_ticket_rotation", &cfg->tls_ticket_rotation_ms);
}

/* A path, relative to the config file's directory when relative. */
static int set_path(conf_ctx *c, yaml_node_t *v, const char *what, char **out)
{
    const char *s;
    int rc = conf_string(c, v, what, &s);
    if (rc)
        return rc;
    free(*out);
    if (s[0] == '/')
        *out = strdup(s);
    else if (asprintf(out, "%s/%s", c->dir, s) < 0)
        *out = NULL;
    return *out ? 0 : conf_error(c, v, "out of memory");
}

static int top_modules_dir(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    cel_config *cfg = arg;
    (void)key, (void)k;
    return set_path(c, v, "modules_dir", &cfg->modules_dir);
}

static int top_pid_file(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    cel_config *cfg = arg;
    (void)key, (void)k;
    return set_path(c, v, "pid_file", &cfg->pid_file);
}

static int top_middleware(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    (void)arg, (void)key, (void)k;
    /* Read after the other keys: a module in it needs workers and modules_dir. */
    c->mw_global = v;
    return 0;
}

static int top_routes(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    (void)arg, (void)key, (void)k;
    /* Read last: routes depend on workers and modules_dir wherever they are. */
    c->routes = v;
    return 0;
}

static int top_hosts(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    (void)arg, (void)key, (void)k;
    c->hosts = v; /* read with the routes */
    return 0;
}

/* In the order "expected one of" lists them. */
static int top_errors(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    cel_config *cfg = arg;
    (void)key, (void)k;
    return conf_errors(c, v, &cfg->errors);
}

const conf_key conf_top_keys[] = {
    {"listen", top_listen},
    {"workers", top_workers},
    {"limits", top_limits},
    {"log", top_log},
    {"shutdown_timeout", top_shutdown_timeout},
    {"drain_time", top_drain_time},
    {"real_ip", top_real_ip},
    {"tls_ticket_rotation", top_tls_ticket_rotation},
    {"sendfile", top_sendfile},
    {"modules_dir", top_modules_dir},
    {"pid_file", top_pid_file},
    {"middleware", top_middleware},
    {"errors", top_errors},
    {"routes", top_routes},
    {"hosts", top_hosts},
};
const size_t conf_ntop_keys = CEL_ARRAY_LEN(conf_top_keys);

static int top_pair(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    return conf_key_call(c, conf_top_keys, conf_ntop_keys, "the top level", arg, key, k, v);
}

static void set_defaults(cel_config *cfg)
{
    cfg->log_level = CEL_LOG_INFO;
    cfg->shutdown_timeout_ms = CEL_DEF_SHUTDOWN_TIMEOUT_MS;
    cfg->tls_ticket_rotation_ms = CEL_TLS_TICKET_ROTATION * 1000u;
    for (size_t i = 0; i < conf_nlimits; i++)
        limit_store(&cfg->limits, &conf_limits[i], conf_limits[i].def);
}

static int fill_missing(conf_ctx *c, cel_config *cfg, yaml_node_t *root)
{
    char msg[256];
    if (!cfg->nlisten) {
        cfg->listen = calloc(1, sizeof(cel_listen));
        if (!cfg->listen || cel_listen_parse("127.0.0.1:8080", cfg->listen, msg, sizeof(msg)))
            return conf_error(c, root, "out of memory");
        cfg->listen->loc = conf_loc(root);
        cfg->nlisten = 1;
    }
    if (!cfg->nworkers) {
        yaml_node_t autonode = {.type = YAML_SCALAR_NODE,
                                .data.scalar = {.value = (yaml_char_t *)"auto", .length = 4}};
        int rc = parse_workers(c, cfg, &autonode);
        if (rc)
            return rc;
    }
    if (!cfg->modules_dir && !(cfg->modules_dir = strdup(CEL_MODULES_DIR)))
        return conf_error(c, root, "out of memory");
    return 0;
}

static char *dir_of(const char *file)
{
    const char *slash = strrchr(file, '/');
    if (!slash)
        return strdup(".");
    if (slash == file)
        return strdup("/");
    return strndup(file, (size_t)(slash - file));
}

/* Is the character at M (0-based line and column, in characters) a tab? */
static int tab_at(FILE *f, yaml_mark_t m)
{
    size_t line = 0, col = 0;
    int ch;
    rewind(f);
    while ((ch = getc(f)) != EOF) {
        if (line == m.line) {
            if (ch == '\n')
                return 0;
            if ((ch & 0xc0) == 0x80)
                continue; /* a UTF-8 continuation byte: the same character */
            if (col++ == m.column)
                return ch == '\t';
        } else if (ch == '\n') {
            line++;
        }
    }
    return 0;
}

static void syntax_error(yaml_parser_t *p, FILE *f, const char *file, char *err, size_t errlen)
{
    yaml_mark_t m = p->problem_mark;
    const char *problem = p->problem ? p->problem : "unknown";
    /* libyaml's "cannot start any token" at an indenting tab never says why. */
    int tab = !strstr(problem, "tab") && tab_at(f, m);
    snprintf(err, errlen, "%s:%zu:%zu: YAML syntax error: %s%s%s%s", file, m.line + 1, m.column + 1,
             problem, p->context ? " " : "", p->context ? p->context : "",
             tab ? " (a tab: YAML does not allow tabs for indentation, use spaces)" : "");
}

/*
 * Reads FILE's events once before the document is built. yaml_parser_load
 * builds the whole tree before anything could look at it, and libyaml's
 * scanner slows down quadratically with flow nesting, so a 200 kB file of
 * "[[[[..." would take minutes; here parsing stops at the first collection past
 * MAX_DEPTH. Also refuses a second document, which the loader would ignore.
 */
#define MAX_DEPTH 100

static int prescan(FILE *f, const char *file, char *err, size_t errlen)
{
    yaml_parser_t p;
    yaml_event_t e;
    int depth = 0, docs = 0, rc = 0;
    yaml_parser_initialize(&p);
    yaml_parser_set_input_file(&p, f);
    for (;;) {
        if (!yaml_parser_parse(&p, &e)) {
            syntax_error(&p, f, file, err, errlen);
            rc = CEL_EINVAL;
            break;
        }
        yaml_event_type_t type = e.type;
        yaml_mark_t m = e.start_mark;
        yaml_event_delete(&e);
        if (type == YAML_STREAM_END_EVENT)
            break;
        if (type == YAML_SEQUENCE_END_EVENT || type == YAML_MAPPING_END_EVENT)
            depth--;
        else if ((type == YAML_SEQUENCE_START_EVENT || type == YAML_MAPPING_START_EVENT) &&
                 ++depth > MAX_DEPTH)
            snprintf(err, errlen,
                     "%s:%zu:%zu: lists and mappings nest deeper than %d levels (the depth "
                     "limit): refused",
                     file, m.line + 1, m.column + 1, MAX_DEPTH);
        else if (type == YAML_DOCUMENT_START_EVENT && ++docs > 1)
            snprintf(err, errlen,
                     "%s:%zu:%zu: a second YAML document: the configuration is one document "
                     "(remove this \"---\" and what follows, or merge it into the first)",
                     file, m.line + 1, m.column + 1);
        else
            continue;
        if (depth > MAX_DEPTH || docs > 1) {
            rc = CEL_EINVAL;
            break;
        }
    }
    yaml_parser_delete(&p);
    return rc;
}

static cel_config *load(const char *file, int check_only, char *err, size_t errlen)
{
    FILE *f = fopen(file, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", file, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s: is a directory, not a configuration file", file);
        fclose(f);
        return NULL;
    }
    if (prescan(f, file, err, errlen)) {
        fclose(f);
        return NULL;
    }
    rewind(f);
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    if (!yaml_parser_load(&parser, &doc)) {
        syntax_error(&parser, f, file, err, errlen);
        yaml_parser_delete(&parser);
        fclose(f);
        return NULL;
    }
    yaml_parser_delete(&parser);
    fclose(f);

    cel_config *cfg = calloc(1, sizeof(*cfg));
    char *dir = dir_of(file);
    conf_ctx c = {.doc = &doc,
                  .file = file,
                  .dir = dir,
                  .err = err,
                  .errlen = errlen,
                  .check_only = check_only};
    int rc = CEL_ENOMEM;
    if (!cfg || !dir || !(cfg->file = strdup(file))) {
        snprintf(err, errlen, "%s: out of memory", file);
        goto out;
    }
    atomic_init(&cfg->refs, 1);
    set_defaults(cfg);
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) {
        snprintf(err, errlen, "%s:1:1: the configuration is empty (it needs at least routes)",
                 file);
        rc = CEL_EINVAL;
        goto out;
    }
    c.cfg = cfg;
    rc = conf_mapping(&c, root, "the configuration", top_pair, cfg);
    if (!rc)
        rc = fill_missing(&c, cfg, root);
    if (!rc && c.access)
        rc = parse_access(&c, cfg, c.access);
    c.modules_dir = cfg->modules_dir;
    c.nworkers = cfg->nworkers;
    if (!rc && c.mw_global)
        rc = conf_middleware(&c, c.mw_global, "middleware", &cfg->mw);
    if (!rc)
        rc = cel_config_parse_routes(&c, cfg, c.routes);
    if (!rc && !cfg->router && !(cfg->router = cel_router_new()))
        rc = conf_error(&c, root, "out of memory");
out:
    yaml_document_delete(&doc);
    free(dir);
    if (rc) {
        if (cfg)
            cel_config_unref(cfg);
        return NULL;
    }
    cfg->generation = atomic_fetch_add(&generations, 1) + 1;
    return cfg;
}

cel_config *cel_config_load(const char *file, char *err, size_t errlen)
{
    return load(file, 0, err, errlen);
}

cel_config *cel_config_check(const char *file, char *err, size_t errlen)
{
    return load(file, 1, err, errlen);
}

void cel_config_ref(cel_config *c)
{
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
}

void cel_config_unref(cel_config *c)
{
    if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (c->router)
        cel_router_free(c->router);
    for (size_t i = 0; i < c->nroutes; i++) {
        cel_route *r = &c->routes[i];
        r->handler->destroy(r->handler);
        if (r->mw_joined)
            cel_mw_chain_free(r->mw);
        cel_mw_chain_free(r->mw_own);
        cel_config_free_hosts(r);
        free(r->pattern);
    }
    for (size_t i = 0; i < c->nvhosts; i++)
        if (!c->vhosts[i].block)
            cel_router_free(c->vhosts[i].router);
    free(c->vhosts);
    cel_config_free_blocks(c);
    for (int i = 0; i < 2; i++)
        if (c->scheme_router[i])
            cel_router_free(c->scheme_router[i]);
    cel_mw_chain_free(c->mw);
    cel_errors_free(c->errors);
    free(c->routes);
    for (size_t i = 0; i < c->nlisten; i++) {
        cel_tls_free(c->listen[i].tls);
        free(c->listen[i].trusted);
        if (c->listen[i].router)
            cel_router_free(c->listen[i].router);
    }
    free(c->listen);
    free(c->cpus);
    free(c->modules_dir);
    free(c->pid_file);
    cel_accesslog_free(c->accesslog);
    real_ip_free(c->real_ip);
    free(c->file);
    free(c);
}

void cel_config_publish(cel_config *c)
{
    if (c)
        cel_config_ref(c);
    pthread_mutex_lock(&pub_lock);
    cel_config *old = published;
    published = c;
    atomic_store_explicit(&published_gen, c ? c->generation : 0, memory_order_release);
    pthread_mutex_unlock(&pub_lock);
    if (old)
        cel_config_unref(old);
}

unsigned long cel_config_published_generation(void)
{
    return atomic_load_explicit(&published_gen, memory_order_acquire);
}

cel_config *cel_config_acquire(void)
{
    pthread_mutex_lock(&pub_lock);
    cel_config *c = published;
    if (c)
        cel_config_ref(c);
    pthread_mutex_unlock(&pub_lock);
    return c;
}
