#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <pwd.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "accesslog.h"
#include "conf.h"
#include "log.h"
#include "stats.h"
#include "proxy_proto.h"
#include "real_ip.h"
#include "tls.h"

static atomic_ulong generations;

static pthread_mutex_t pub_lock = PTHREAD_MUTEX_INITIALIZER;
static cel_config *published;
static atomic_ulong published_gen;

/* ---- YAML helpers (declared in conf.h) ---- */

yaml_node_t *conf_node(conf_ctx *c, int index)
{
    return yaml_document_get_node(c->doc, index);
}

cel_loc conf_loc(const yaml_node_t *n)
{
    return (cel_loc){(unsigned)n->start_mark.line + 1, (unsigned)n->start_mark.column + 1};
}

int conf_error(conf_ctx *c, const yaml_node_t *n, const char *fmt, ...)
{
    cel_loc l = conf_loc(n);
    int k = snprintf(c->err, c->errlen, "%s:%u:%u: ", c->file, l.line, l.col);
    if (k < 0 || (size_t)k >= c->errlen)
        return CEL_EINVAL;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err + k, c->errlen - (size_t)k, fmt, ap);
    va_end(ap);
    return CEL_EINVAL;
}

static const char *type_name(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_SCALAR_NODE:
        return "a scalar";
    case YAML_SEQUENCE_NODE:
        return "a list";
    case YAML_MAPPING_NODE:
        return "a mapping";
    default:
        return "empty";
    }
}

int conf_want(conf_ctx *c, const yaml_node_t *n, yaml_node_type_t type, const char *what)
{
    if (n->type == type)
        return 0;
    const char *want = type == YAML_SCALAR_NODE     ? "a scalar"
                       : type == YAML_SEQUENCE_NODE ? "a list"
                                                    : "a mapping";
    return conf_error(c, n, "%s must be %s, not %s", what, want, type_name(n));
}

int conf_has_nul(const yaml_node_t *n)
{
    return n->type == YAML_SCALAR_NODE &&
           memchr(n->data.scalar.value, 0, n->data.scalar.length) != NULL;
}

int conf_string(conf_ctx *c, const yaml_node_t *n, const char *what, const char **out)
{
    if (n->type != YAML_SCALAR_NODE)
        return conf_error(c, n, "%s must be a string, not %s", what, type_name(n));
    /* C would silently cut the string at the NUL ("/a\0b" would serve "/a"). */
    if (conf_has_nul(n))
        return conf_error(c, n, "%s must not contain a NUL byte", what);
    *out = (const char *)n->data.scalar.value;
    return 0;
}

int conf_wire_string(conf_ctx *c, const yaml_node_t *n, const char *what, int tab_ok,
                     const char **out)
{
    int rc = conf_string(c, n, what, out);
    if (rc)
        return rc;
    for (const unsigned char *p = (const unsigned char *)*out; *p; p++)
        if ((*p < 0x20 && !(tab_ok && *p == '\t')) || *p == 0x7f)
            return conf_error(c, n, "%s has a control character (byte 0x%02x)", what, *p);
    return 0;
}

int conf_int(conf_ctx *c, const yaml_node_t *n, const char *what, long long min, long long max,
             long long *out)
{
    const char *s;
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return conf_error(c, n, "%s must be a number", what);
    s = (const char *)n->data.scalar.value;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || errno)
        return conf_error(c, n, "%s must be a number, not \"%s\"", what, s);
    if (v < min || v > max)
        return conf_error(c, n, "%s must be between %lld and %lld", what, min, max);
    *out = v;
    return 0;
}

int conf_size(conf_ctx *c, const yaml_node_t *n, const char *what, size_t min, size_t max,
              size_t *out)
{
    if (n->type != YAML_SCALAR_NODE)
        return conf_error(c, n, "%s must be a size like 65536 or \"64k\"", what);
    const char *s = (const char *)n->data.scalar.value;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || errno || *s == '-')
        return conf_error(c, n, "%s must be a size like 65536 or \"64k\", not \"%s\"", what, s);
    unsigned shift = 0;
    switch (tolower((unsigned char)*end)) {
    case 0:
        break;
    case 'k':
        shift = 10;
        break;
    case 'm':
        shift = 20;
        break;
    case 'g':
        shift = 30;
        break;
    default:
        return conf_error(c, n, "%s: unknown size unit in \"%s\" (use k, m or g)", what, s);
    }
    if (*end && end[1])
        return conf_error(c, n, "%s: unknown size unit in \"%s\" (use k, m or g)", what, s);
    if (v > (SIZE_MAX >> shift) || (v << shift) < min || (v << shift) > max)
        return conf_error(c, n, "%s must be between %zu and %zu bytes", what, min, max);
    *out = (size_t)(v << shift);
    return 0;
}

int conf_duration_ms(conf_ctx *c, const yaml_node_t *n, const char *what, uint32_t *out)
{
    if (n->type != YAML_SCALAR_NODE)
        return conf_error(c, n, "%s must be a duration like 10 or \"500ms\"", what);
    const char *s = (const char *)n->data.scalar.value;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || v < 0 || *s == '-' || !isdigit((unsigned char)*s))
        return conf_error(c, n, "%s must be a duration like 10 or \"500ms\", not \"%s\"", what,
                          s);
    double ms;
    if (!*end || strcmp(end, "s") == 0)
        ms = v * 1000;
    else if (strcmp(end, "ms") == 0)
        ms = v;
    else if (strcmp(end, "m") == 0)
        ms = v * 60000;
    else if (strcmp(end, "h") == 0)
        ms = v * 3600000;
    else
        return conf_error(c, n, "%s: unknown duration unit in \"%s\" (use ms, s, m or h)", what,
                          s);
    if (ms < 1 || ms > 86400000.0 * 7)
        return conf_error(c, n, "%s must be between 1ms and 7 days", what);
    *out = (uint32_t)ms;
    return 0;
}

int conf_mapping(conf_ctx *c, yaml_node_t *n, const char *what, conf_pair_fn fn, void *arg)
{
    int rc = conf_want(c, n, YAML_MAPPING_NODE, what);
    if (rc)
        return rc;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = conf_node(c, p->key), *v = conf_node(c, p->value);
        if (k->type != YAML_SCALAR_NODE)
            return conf_error(c, k, "keys in %s must be strings", what);
        if (conf_has_nul(k))
            return conf_error(c, k, "keys in %s must not contain a NUL byte", what);
        const char *key = (const char *)k->data.scalar.value;
        for (yaml_node_pair_t *q = n->data.mapping.pairs.start; q < p; q++) {
            yaml_node_t *k2 = conf_node(c, q->key);
            if (k2->type == YAML_SCALAR_NODE &&
                strcmp((const char *)k2->data.scalar.value, key) == 0)
                return conf_error(c, k, "duplicate key \"%s\" in %s (first at line %u)", key,
                                  what, conf_loc(k2).line);
        }
        if ((rc = fn(c, arg, key, k, v)))
            return rc;
    }
    return 0;
}

int conf_unknown_key(conf_ctx *c, const yaml_node_t *k, const char *where, const char *allowed)
{
    return conf_error(c, k, "unknown key \"%s\" in %s (expected one of: %s)",
                      (const char *)k->data.scalar.value, where, allowed);
}

/* ---- listen addresses ---- */

int cel_listen_parse(const char *s, cel_listen *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->text, sizeof(out->text), "%s", s);
    out->mode = -1;
    out->uid = out->gid = -1;
    if (strncmp(s, "unix:", 5) == 0) {
        struct sockaddr_un *un = (struct sockaddr_un *)&out->addr;
        size_t n = strlen(s + 5);
        if (s[5] != '/' || n >= sizeof(un->sun_path)) {
            snprintf(err, errlen,
                     "bad unix socket address \"%s\" (expected \"unix:/absolute/path\", at most "
                     "%zu bytes)",
                     s, sizeof(un->sun_path) - 1);
            return CEL_EINVAL;
        }
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, s + 5, n + 1);
        /* What getsockname reports for it, so workers find it again. */
        out->addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
        return 0;
    }
    char host[64] = "";
    const char *port;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':' || (size_t)(close - s - 1) >= sizeof(host))
            goto bad;
        memcpy(host, s + 1, (size_t)(close - s - 1));
        host[close - s - 1] = 0;
        port = close + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (colon) {
            if ((size_t)(colon - s) >= sizeof(host))
                goto bad;
            memcpy(host, s, (size_t)(colon - s));
            host[colon - s] = 0;
            port = colon + 1;
        } else {
            port = s;
        }
    }
    char *end;
    errno = 0;
    long p = strtol(port, &end, 10);
    if (!*port || *end || errno || !isdigit((unsigned char)*port))
        goto bad;
    if (p < 1 || p > 65535) {
        snprintf(err, errlen, "port %ld in listen address \"%s\" is out of range (1-65535)", p,
                 s);
        return CEL_EINVAL;
    }
    if (s[0] == '[') {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&out->addr;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)p);
        if (inet_pton(AF_INET6, host, &a6->sin6_addr) != 1)
            goto bad;
        out->addrlen = sizeof(*a6);
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)&out->addr;
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)p);
        if (!host[0] || strcmp(host, "*") == 0)
            a4->sin_addr.s_addr = htonl(INADDR_ANY);
        else if (inet_pton(AF_INET, host, &a4->sin_addr) != 1)
            goto bad;
        out->addrlen = sizeof(*a4);
    }
    return 0;
bad:
    snprintf(err, errlen,
             "bad listen address \"%s\" (expected \"IPv4:PORT\", \"[IPv6]:PORT\", \"*:PORT\", "
             "\"PORT\" or \"unix:/path\")",
             s);
    return CEL_EINVAL;
}

/* ---- TLS ---- */

#define MAX_CERTS 32

typedef struct tls_build {
    cel_tls_cert certs[MAX_CERTS];
    char paths[MAX_CERTS][3][1024];
    size_t n;
    yaml_node_t *at;
} tls_build;

static const char *tls_path(conf_ctx *c, const char *v, char *buf, size_t len)
{
    if (v[0] == '/')
        snprintf(buf, len, "%s", v);
    else
        snprintf(buf, len, "%s/%s", c->dir, v);
    return buf;
}

static int cert_pair(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    tls_build *b = arg;
    int which = strcmp(key, "cert") == 0 ? 0 : strcmp(key, "key") == 0 ? 1
                : strcmp(key, "ocsp") == 0                         ? 2
                                                                   : -1;
    if (which < 0)
        return conf_unknown_key(c, k, "a TLS certificate", "cert, key, ocsp");
    const char *s;
    int rc = conf_string(c, v, key, &s);
    if (rc)
        return rc;
    const char *p = tls_path(c, s, b->paths[b->n][which], sizeof(b->paths[0][0]));
    if (which == 0)
        b->certs[b->n].cert = p;
    else if (which == 1)
        b->certs[b->n].key = p;
    else
        b->certs[b->n].ocsp = p;
    return 0;
}

static int add_cert(conf_ctx *c, tls_build *b, yaml_node_t *n)
{
    if (b->n == MAX_CERTS)
        return conf_error(c, n, "at most %d certificates per listener", MAX_CERTS);
    int rc = conf_mapping(c, n, "a TLS certificate", cert_pair, b);
    if (rc)
        return rc;
    if (!b->certs[b->n].cert || !b->certs[b->n].key)
        return conf_error(c, n, "a TLS certificate needs both cert and key");
    b->n++;
    return 0;
}

static int tls_pair(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    tls_build *b = arg;
    if (strcmp(key, "certificates") == 0) {
        int rc = conf_want(c, v, YAML_SEQUENCE_NODE, "tls.certificates");
        for (yaml_node_item_t *it = v->data.sequence.items.start;
             !rc && it < v->data.sequence.items.top; it++)
            rc = add_cert(c, b, conf_node(c, *it));
        return rc;
    }
    if (strcmp(key, "cert") == 0 || strcmp(key, "key") == 0 || strcmp(key, "ocsp") == 0)
        return 0; /* the first certificate: read by add_cert on the whole mapping */
    return conf_unknown_key(c, k, "tls", "cert, key, ocsp, certificates");
}

/* tls: { cert, key, ocsp, certificates: [{cert, key, ocsp}, ...] }: the
 * certificate given directly (if any) is the default, the list adds more for
 * SNI. */
static int parse_tls(conf_ctx *c, yaml_node_t *n, cel_tls **out)
{
    tls_build *b = calloc(1, sizeof(*b));
    if (!b)
        return conf_error(c, n, "out of memory");
    int rc = conf_want(c, n, YAML_MAPPING_NODE, "tls");
    int direct = 0;
    for (yaml_node_pair_t *p = rc ? NULL : n->data.mapping.pairs.start;
         p && p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = conf_node(c, p->key);
        if (k->type == YAML_SCALAR_NODE && strcmp((const char *)k->data.scalar.value, "cert") == 0)
            direct = 1;
    }
    if (!rc && direct) {
        /* cert_pair on the listener's own keys, ignoring the certificates list */
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; !rc && p < n->data.mapping.pairs.top;
             p++) {
            yaml_node_t *k = conf_node(c, p->key);
            const char *key = (const char *)k->data.scalar.value;
            if (strcmp(key, "certificates") != 0)
                rc = cert_pair(c, b, key, k, conf_node(c, p->value));
        }
        if (!rc && (!b->certs[0].cert || !b->certs[0].key))
            rc = conf_error(c, n, "tls needs both cert and key");
        if (!rc)
            b->n = 1;
    }
    if (!rc)
        rc = conf_mapping(c, n, "tls", tls_pair, b);
    if (!rc && b->n == 0)
        rc = conf_error(c, n, "tls needs a certificate (cert and key, or certificates)");
    if (!rc) {
        char err[512];
        *out = cel_tls_new(b->certs, b->n, err, sizeof(err));
        if (!*out)
            rc = conf_error(c, n, "%s", err);
    }
    free(b);
    return rc;
}

typedef struct listen_build {
    yaml_node_t *address, *tls, *proxy, *trusted, *mode, *owner;
} listen_build;

static int listen_pair(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    listen_build *b = arg;
    if (strcmp(key, "address") == 0)
        b->address = v;
    else if (strcmp(key, "tls") == 0)
        b->tls = v;
    else if (strcmp(key, "proxy_protocol") == 0)
        b->proxy = v;
    else if (strcmp(key, "trusted") == 0)
        b->trusted = v;
    else if (strcmp(key, "mode") == 0)
        b->mode = v;
    else if (strcmp(key, "owner") == 0)
        b->owner = v;
    else
        return conf_unknown_key(c, k, "a listen entry",
                                "address, tls, proxy_protocol, trusted, mode, owner");
    return 0;
}

/* mode: "0660" and owner: "user", "user:group" or ":group" of a unix socket. */
static int parse_unix_opts(conf_ctx *c, const listen_build *b, cel_listen *l)
{
    const char *v;
    int rc;
    if ((b->mode || b->owner) && l->addr.ss_family != AF_UNIX)
        return conf_error(c, b->mode ? b->mode : b->owner,
                          "mode and owner apply to unix: sockets only");
    if (b->mode) {
        if ((rc = conf_string(c, b->mode, "mode", &v)))
            return rc;
        char *end;
        long m = strtol(v, &end, 8);
        if (!*v || *end || m < 0 || m > 0777 || strspn(v, "01234567") != strlen(v))
            return conf_error(c, b->mode,
                              "mode must be octal permissions like \"0660\", not "
                              "\"%s\"",
                              v);
        l->mode = (int)m;
    }
    if (b->owner) {
        if ((rc = conf_string(c, b->owner, "owner", &v)))
            return rc;
        char user[256];
        const char *colon = strchr(v, ':');
        size_t ul = colon ? (size_t)(colon - v) : strlen(v);
        if (ul >= sizeof(user) || (!ul && (!colon || !colon[1])))
            return conf_error(c, b->owner,
                              "owner must be \"user\", \"user:group\" or "
                              "\":group\"");
        memcpy(user, v, ul);
        user[ul] = 0;
        if (ul) {
            struct passwd *pw = getpwnam(user);
            if (!pw)
                return conf_error(c, b->owner, "owner: no user \"%s\"", user);
            l->uid = (long)pw->pw_uid;
        }
        if (colon && colon[1]) {
            struct group *gr = getgrnam(colon + 1);
            if (!gr)
                return conf_error(c, b->owner, "owner: no group \"%s\"", colon + 1);
            l->gid = (long)gr->gr_gid;
        }
    }
    return 0;
}

/* trusted: [CIDR, ...] (proxy_protocol's and real_ip's) into *OUT, *N. */
static int parse_trusted(conf_ctx *c, yaml_node_t *n, cel_cidr **out, size_t *count)
{
    int rc = conf_want(c, n, YAML_SEQUENCE_NODE, "trusted");
    if (rc)
        return rc;
    yaml_node_item_t *it = n->data.sequence.items.start, *top = n->data.sequence.items.top;
    if (it == top)
        return conf_error(c, n, "trusted must list at least one address range");
    free(*out);
    *count = 0;
    *out = calloc((size_t)(top - it), sizeof(cel_cidr));
    if (!*out)
        return conf_error(c, n, "out of memory");
    for (; it < top; it++) {
        yaml_node_t *e = conf_node(c, *it);
        const char *v;
        if ((rc = conf_string(c, e, "trusted", &v)))
            return rc;
        if (cel_cidr_parse(v, &(*out)[*count]))
            return conf_error(c, e,
                              "bad address range \"%s\" (expected \"10.0.0.0/8\", "
                              "\"::1/128\" or an address)",
                              v);
        (*count)++;
    }
    return 0;
}

static int real_ip_pair(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    cel_real_ip *r = arg;
    if (strcmp(key, "trusted") == 0)
        return parse_trusted(c, v, &r->trusted, &r->ntrusted);
    if (strcmp(key, "header") != 0)
        return conf_unknown_key(c, k, "real_ip", "header, trusted");
    const char *s;
    int rc = conf_string(c, v, "real_ip.header", &s);
    if (rc)
        return rc;
    size_t n = strlen(s);
    if (n == 0 ||
        strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") != n)
        return conf_error(c, v, "real_ip.header must be a header name, not \"%s\"", s);
    free(r->header);
    if (!(r->header = strdup(s)))
        return conf_error(c, v, "out of memory");
    for (char *p = r->header; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    r->header_len = n;
    return 0;
}

static void real_ip_free(cel_real_ip *r)
{
    if (!r)
        return;
    free(r->header);
    free(r->trusted);
    free(r);
}

/* real_ip: { header: x-forwarded-for, trusted: [CIDR, ...] } */
static int parse_real_ip(conf_ctx *c, cel_config *cfg, yaml_node_t *n)
{
    cel_real_ip *r = calloc(1, sizeof(*r));
    if (!r)
        return conf_error(c, n, "out of memory");
    real_ip_free(cfg->real_ip);
    cfg->real_ip = r;
    int rc = conf_mapping(c, n, "real_ip", real_ip_pair, r);
    if (!rc && (!r->header || !r->trusted))
        rc = conf_error(c, n, "real_ip needs header and trusted");
    return rc;
}

/* proxy_protocol: BOOL and trusted: [CIDR, ...] of a listen entry. */
static int parse_proxy(conf_ctx *c, const listen_build *b, yaml_node_t *n, cel_listen *l)
{
    if (!b->proxy && !b->trusted)
        return 0;
    if (!b->proxy || !b->trusted)
        return conf_error(c, n,
                          "proxy_protocol and trusted go together: trusted lists the "
                          "balancers whose PROXY header is believed");
    const char *v;
    int rc = conf_string(c, b->proxy, "proxy_protocol", &v);
    if (rc)
        return rc;
    if (strcmp(v, "true") != 0 && strcmp(v, "false") != 0)
        return conf_error(c, b->proxy, "proxy_protocol must be true or false");
    int on = strcmp(v, "true") == 0;
    if ((rc = parse_trusted(c, b->trusted, &l->trusted, &l->ntrusted)))
        return rc;
    l->proxy_protocol = on;
    return 0;
}

static int add_listen(conf_ctx *c, cel_config *cfg, yaml_node_t *n)
{
    const char *s;
    yaml_node_t *addr = n, *tls = NULL;
    listen_build b = {0};
    if (n->type == YAML_MAPPING_NODE) {
        int rc = conf_mapping(c, n, "a listen entry", listen_pair, &b);
        if (rc)
            return rc;
        if (!b.address)
            return conf_error(c, n, "a listen entry needs an address");
        addr = b.address;
        tls = b.tls;
    }
    int rc = conf_string(c, addr, "listen", &s);
    if (rc)
        return rc;
    cel_listen l;
    char msg[256];
    if (cel_listen_parse(s, &l, msg, sizeof(msg)))
        return conf_error(c, addr, "%s", msg);
    l.loc = conf_loc(addr);
    for (size_t i = 0; i < cfg->nlisten; i++)
        if (cfg->listen[i].addrlen == l.addrlen && !memcmp(&cfg->listen[i].addr, &l.addr, l.addrlen))
            return conf_error(c, addr, "listen address \"%s\" is given twice", s);
    if ((rc = parse_unix_opts(c, &b, &l)) || (rc = parse_proxy(c, &b, n, &l))) {
        free(l.trusted);
        return rc;
    }
    if (tls && (rc = parse_tls(c, tls, &l.tls))) {
        free(l.trusted);
        return rc;
    }
    cel_listen *nl = realloc(cfg->listen, (cfg->nlisten + 1) * sizeof(*nl));
    if (!nl) {
        free(l.trusted);
        cel_tls_free(l.tls);
        return conf_error(c, n, "out of memory");
    }
    cfg->listen = nl;
    cfg->listen[cfg->nlisten++] = l;
    return 0;
}

static int parse_listen(conf_ctx *c, cel_config *cfg, yaml_node_t *n)
{
    if (n->type == YAML_SCALAR_NODE || n->type == YAML_MAPPING_NODE)
        return add_listen(c, cfg, n);
    if (n->type != YAML_SEQUENCE_NODE)
        return conf_error(c, n, "listen must be an address or a list of addresses");
    if (n->data.sequence.items.start == n->data.sequence.items.top)
        return conf_error(c, n, "listen must name at least one address");
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++) {
        int rc = add_listen(c, cfg, conf_node(c, *it));
        if (rc)
            return rc;
    }
    return 0;
}

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

static int limit_pair(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    cel_limits *l = arg;
    long long i;
    int rc;
    if (strcmp(key, "max_concurrent_streams") == 0) {
        rc = conf_int(c, v, "limits.max_concurrent_streams", 1, INT32_MAX, &i);
        l->max_concurrent_streams = (uint32_t)i;
    } else if (strcmp(key, "max_header_list_size") == 0) {
        size_t s = 0;
        rc = conf_size(c, v, "limits.max_header_list_size", 1024, 16u << 20, &s);
        l->max_header_list_size = (uint32_t)s;
    } else if (strcmp(key, "max_request_line") == 0 || strcmp(key, "max_header_line") == 0) {
        size_t sz = 0;
        char what[64];
        snprintf(what, sizeof(what), "limits.%s", key);
        rc = conf_size(c, v, what, 64, 1 << 20, &sz);
        *(key[4] == 'r' ? &l->max_request_line : &l->max_header_line) = (uint32_t)sz;
    } else if (strcmp(key, "max_request_body") == 0) {
        rc = conf_size(c, v, "limits.max_request_body", 0, (size_t)1 << 40, &l->max_request_body);
    } else if (strcmp(key, "max_connections") == 0) {
        rc = conf_int(c, v, "limits.max_connections", 1, 10000000, &i);
        l->max_connections = (uint32_t)i;
    } else if (strcmp(key, "idle_timeout") == 0) {
        rc = conf_duration_ms(c, v, "limits.idle_timeout", &l->idle_timeout_ms);
    } else if (strcmp(key, "header_timeout") == 0) {
        rc = conf_duration_ms(c, v, "limits.header_timeout", &l->header_timeout_ms);
    } else if (strcmp(key, "write_timeout") == 0) {
        rc = conf_duration_ms(c, v, "limits.write_timeout", &l->write_timeout_ms);
    } else if (strcmp(key, "initial_window_size") == 0) {
        rc = conf_int(c, v, "limits.initial_window_size", 1, INT32_MAX, &i);
        l->initial_window_size = (uint32_t)i;
    } else if (strcmp(key, "max_output_buffer") == 0) {
        rc = conf_size(c, v, "limits.max_output_buffer", 16384, (size_t)1 << 30,
                       &l->max_output_buffer);
    } else {
        static const struct {
            const char *key;
            size_t off;
            long long min, max;
        } counts[] = {
            {"max_settings_entries", offsetof(cel_limits, max_settings_entries), 6, 1000},
            {"reset_burst", offsetof(cel_limits, reset_burst), 1, 1000000},
            {"reset_rate", offsetof(cel_limits, reset_rate), 1, 1000000},
            {"max_continuations", offsetof(cel_limits, max_continuations), 1, 100000},
            {"max_outbound_ack", offsetof(cel_limits, max_outbound_ack), 1, 1000000},
            {"glitch_burst", offsetof(cel_limits, glitch_burst), 1, 100000000},
            {"glitch_rate", offsetof(cel_limits, glitch_rate), 1, 100000000},
            {"max_headers", offsetof(cel_limits, max_headers), 1, 100},
        };
        for (size_t j = 0; j < CEL_ARRAY_LEN(counts); j++) {
            if (strcmp(key, counts[j].key) != 0)
                continue;
            char what[64];
            snprintf(what, sizeof(what), "limits.%s", key);
            rc = conf_int(c, v, what, counts[j].min, counts[j].max, &i);
            *(uint32_t *)((char *)l + counts[j].off) = (uint32_t)i;
            return rc;
        }
        return conf_unknown_key(c, k, "limits",
                                "max_concurrent_streams, max_header_list_size, max_request_body, "
                                "max_connections, idle_timeout, header_timeout, write_timeout, "
                                "initial_window_size, max_output_buffer, max_settings_entries, "
                                "reset_burst, reset_rate, max_continuations, max_outbound_ack, "
                                "glitch_burst, glitch_rate, max_request_line, max_header_line, "
                                "max_headers");
    }
    return rc;
}

typedef struct access_build {
    yaml_node_t *path, *format;
} access_build;

static int access_pair(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    access_build *b = arg;
    const char *s;
    if (strcmp(key, "path") != 0 && strcmp(key, "format") != 0)
        return conf_unknown_key(c, k, "log.access", "path, format");
    int rc = conf_string(c, v, key[0] == 'p' ? "log.access.path" : "log.access.format", &s);
    if (rc)
        return rc;
    *(key[0] == 'p' ? &b->path : &b->format) = v;
    return 0;
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
        return conf_error(c, strstr(err, "format") && b.format ? b.format : b.path ? b.path : n,
                          "%s", err);
    return 0;
}

static int log_pair(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    cel_config *cfg = arg;
    if (strcmp(key, "access") == 0) {
        c->access = v;
        return 0;
    }
    if (strcmp(key, "level") != 0)
        return conf_unknown_key(c, k, "log", "level, access");
    const char *s;
    int rc = conf_string(c, v, "log.level", &s);
    if (rc)
        return rc;
    cfg->log_level = cel_log_level_parse(s);
    if (cfg->log_level < 0)
        return conf_error(c, v, "log.level must be debug, info, warn or error, not \"%s\"", s);
    return 0;
}

/* ---- routes ---- */

typedef struct route_build {
    cel_route r;
    yaml_node_t *path_node, *handler_node, *handler_key;
    yaml_node_t *methods_node;
} route_build;

static int parse_methods(conf_ctx *c, yaml_node_t *n, unsigned *out)
{
    if (n->type == YAML_SCALAR_NODE) {
        const char *s = (const char *)n->data.scalar.value;
        unsigned bit = cel_method_bit(s, n->data.scalar.length);
        if (!bit)
            return conf_error(c, n, "unknown method \"%s\" (methods are upper case: GET, POST, ...)",
                              s);
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

static int route_pair(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    route_build *b = arg;
    if (strcmp(key, "path") == 0) {
        const char *s;
        int rc = conf_wire_string(c, v, "path", 0, &s);
        if (rc)
            return rc;
        b->path_node = v;
        b->r.pattern = strdup(s);
        return b->r.pattern ? 0 : conf_error(c, v, "out of memory");
    }
    if (strcmp(key, "methods") == 0) {
        b->methods_node = v;
        return parse_methods(c, v, &b->r.methods);
    }
    if (strcmp(key, "access_log") == 0) {
        const char *s;
        int rc = conf_string(c, v, "access_log", &s);
        if (rc)
            return rc;
        if (strcmp(s, "off") && strcmp(s, "on") && strcmp(s, "true") && strcmp(s, "false"))
            return conf_error(c, v, "access_log must be on or off, not \"%s\"", s);
        b->r.access_log = strcmp(s, "off") && strcmp(s, "false");
        return 0;
    }
    if (strcmp(key, "static") == 0 || strcmp(key, "json") == 0 || strcmp(key, "module") == 0 ||
        strcmp(key, "metrics") == 0 || strcmp(key, "status") == 0 ||
        strcmp(key, "readiness") == 0) {
        if (b->handler_key)
            return conf_error(c, k, "a route has one handler; \"%s\" was given at line %u already",
                              (const char *)b->handler_key->data.scalar.value,
                              conf_loc(b->handler_key).line);
        b->handler_key = k;
        b->handler_node = v;
        return 0;
    }
    return conf_unknown_key(c, k, "route",
                            "path, methods, access_log, static, json, module, metrics, status, "
                            "readiness");
}

static int parse_route(conf_ctx *c, cel_config *cfg, yaml_node_t *n)
{
    route_build b;
    memset(&b, 0, sizeof(b));
    b.r.loc = conf_loc(n);
    b.r.access_log = 1;
    int rc = conf_mapping(c, n, "a route", route_pair, &b);
    if (!rc && !b.path_node)
        rc = conf_error(c, n, "route has no path");
    if (!rc && !b.handler_node)
        rc = conf_error(c, n,
                        "route at line %u has no handler (give one of: static, json, module, "
                        "metrics, status, readiness)",
                        b.r.loc.line);
    if (!rc) {
        const char *type = (const char *)b.handler_key->data.scalar.value;
        if (strcmp(type, "static") == 0)
            rc = conf_handler_static(c, b.handler_node, b.r.pattern, &b.r.handler);
        else if (strcmp(type, "json") == 0)
            rc = conf_handler_json(c, b.handler_node, b.r.pattern, &b.r.handler);
        else if (strcmp(type, "module") == 0)
            rc = conf_handler_module(c, b.handler_node, b.r.pattern, &b.r.handler);
        else
            rc = conf_handler_stats(c, b.handler_node,
                                    type[0] == 'r' ? 2 : type[0] == 's' ? 1 : 0, &b.r.handler);
    }
    if (rc) {
        free(b.r.pattern);
        return rc;
    }
    if (!b.r.methods)
        b.r.methods = CEL_M_GET | CEL_M_HEAD;
    if (b.r.methods & CEL_M_GET)
        b.r.methods |= CEL_M_HEAD;
    b.r.stat_id = cel_stats_route_id(b.r.pattern);
    b.r.loc = conf_loc(b.path_node);

    cel_route *nr = realloc(cfg->routes, (cfg->nroutes + 1) * sizeof(*nr));
    if (!nr) {
        b.r.handler->destroy(b.r.handler);
        free(b.r.pattern);
        return conf_error(c, n, "out of memory");
    }
    cfg->routes = nr;
    cfg->routes[cfg->nroutes++] = b.r;
    return 0;
}

static int build_router(conf_ctx *c, cel_config *cfg, yaml_node_t *routes)
{
    cfg->router = cel_router_new();
    if (!cfg->router)
        return conf_error(c, routes, "out of memory");
    for (size_t i = 0; i < cfg->nroutes; i++) {
        cel_route *r = &cfg->routes[i];
        void *conflict = NULL;
        char msg[256];
        int rc = cel_router_add(cfg->router, r->pattern, r->methods, r, &conflict, msg,
                                sizeof(msg));
        if (rc == 0)
            continue;
        /* Errors here point at the route's path value, remembered as loc. */
        yaml_node_t at = {.start_mark = {.line = r->loc.line - 1, .column = r->loc.col - 1}};
        if (rc == CEL_EEXIST) {
            cel_route *o = conflict;
            return conf_error(c, &at, "route \"%s\" collides with route \"%s\" at line %u:%u",
                              r->pattern, o->pattern, o->loc.line, o->loc.col);
        }
        return conf_error(c, &at, "%s", msg);
    }
    return 0;
}

static int parse_routes(conf_ctx *c, cel_config *cfg, yaml_node_t *n)
{
    if (n->type == YAML_SCALAR_NODE && n->data.scalar.length == 0)
        return 0; /* "routes:" with nothing under it */
    int rc = conf_want(c, n, YAML_SEQUENCE_NODE, "routes");
    if (rc)
        return rc;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++)
        if ((rc = parse_route(c, cfg, conf_node(c, *it))))
            return rc;
    return build_router(c, cfg, n);
}

/* ---- top level ---- */

static int top_pair(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    cel_config *cfg = arg;
    if (strcmp(key, "listen") == 0)
        return parse_listen(c, cfg, v);
    if (strcmp(key, "workers") == 0)
        return parse_workers(c, cfg, v);
    if (strcmp(key, "limits") == 0)
        return conf_mapping(c, v, "limits", limit_pair, &cfg->limits);
    if (strcmp(key, "log") == 0)
        return conf_mapping(c, v, "log", log_pair, cfg);
    if (strcmp(key, "shutdown_timeout") == 0)
        return conf_duration_ms(c, v, "shutdown_timeout", &cfg->shutdown_timeout_ms);
    if (strcmp(key, "real_ip") == 0)
        return parse_real_ip(c, cfg, v);
    if (strcmp(key, "drain_time") == 0) {
        /* 0 (the default) is allowed: no drain, SIGTERM stops at once. */
        if (v->type == YAML_SCALAR_NODE && strcmp((const char *)v->data.scalar.value, "0") == 0) {
            cfg->drain_time_ms = 0;
            return 0;
        }
        return conf_duration_ms(c, v, "drain_time", &cfg->drain_time_ms);
    }
    if (strcmp(key, "tls_ticket_rotation") == 0)
        return conf_duration_ms(c, v, "tls_ticket_rotation", &cfg->tls_ticket_rotation_ms);
    if (strcmp(key, "routes") == 0) {
        /* Read last: routes depend on workers and modules_dir wherever they are. */
        c->routes = v;
        return 0;
    }
    if (strcmp(key, "pid_file") == 0) {
        const char *s;
        int rc = conf_string(c, v, "pid_file", &s);
        if (rc)
            return rc;
        free(cfg->pid_file);
        if (s[0] == '/')
            cfg->pid_file = strdup(s);
        else if (asprintf(&cfg->pid_file, "%s/%s", c->dir, s) < 0)
            cfg->pid_file = NULL;
        return cfg->pid_file ? 0 : conf_error(c, v, "out of memory");
    }
    if (strcmp(key, "modules_dir") == 0) {
        const char *s;
        int rc = conf_string(c, v, "modules_dir", &s);
        if (rc)
            return rc;
        free(cfg->modules_dir);
        if (s[0] == '/')
            cfg->modules_dir = strdup(s);
        else if (asprintf(&cfg->modules_dir, "%s/%s", c->dir, s) < 0)
            cfg->modules_dir = NULL;
        return cfg->modules_dir ? 0 : conf_error(c, v, "out of memory");
    }
    return conf_unknown_key(c, k, "the top level",
                            "listen, workers, limits, log, shutdown_timeout, drain_time, real_ip, "
                            "tls_ticket_rotation, modules_dir, pid_file, routes");
}

static void set_defaults(cel_config *cfg)
{
    cfg->log_level = CEL_LOG_INFO;
    cfg->shutdown_timeout_ms = CEL_DEF_SHUTDOWN_TIMEOUT_MS;
    cfg->tls_ticket_rotation_ms = CEL_TLS_TICKET_ROTATION * 1000u;
    cfg->limits = (cel_limits){
        .max_concurrent_streams = CEL_DEF_MAX_CONCURRENT_STREAMS,
        .max_header_list_size = CEL_DEF_MAX_HEADER_LIST_SIZE,
        .max_request_body = CEL_DEF_MAX_REQUEST_BODY,
        .max_connections = CEL_DEF_MAX_CONNECTIONS,
        .idle_timeout_ms = CEL_DEF_IDLE_TIMEOUT_MS,
        .header_timeout_ms = CEL_DEF_HEADER_TIMEOUT_MS,
        .write_timeout_ms = CEL_DEF_WRITE_TIMEOUT_MS,
        .initial_window_size = CEL_DEF_INITIAL_WINDOW_SIZE,
        .max_output_buffer = CEL_DEF_MAX_OUTPUT_BUFFER,
        .max_settings_entries = CEL_DEF_MAX_SETTINGS_ENTRIES,
        .reset_burst = CEL_DEF_RESET_BURST,
        .reset_rate = CEL_DEF_RESET_RATE,
        .max_continuations = CEL_DEF_MAX_CONTINUATIONS,
        .max_outbound_ack = CEL_DEF_MAX_OUTBOUND_ACK,
        .glitch_burst = CEL_DEF_GLITCH_BURST,
        .glitch_rate = CEL_DEF_GLITCH_RATE,
        .max_request_line = CEL_DEF_MAX_REQUEST_LINE,
        .max_header_line = CEL_DEF_MAX_HEADER_LINE,
        .max_headers = CEL_DEF_MAX_HEADERS,
    };
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
    snprintf(err, errlen, "%s:%zu:%zu: YAML syntax error: %s%s%s%s", file, m.line + 1,
             m.column + 1, problem, p->context ? " " : "", p->context ? p->context : "",
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
    conf_ctx c = {.doc = &doc, .file = file, .dir = dir, .err = err, .errlen = errlen,
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
    if (!rc && c.routes)
        rc = parse_routes(&c, cfg, c.routes);
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
        c->routes[i].handler->destroy(c->routes[i].handler);
        free(c->routes[i].pattern);
    }
    free(c->routes);
    for (size_t i = 0; i < c->nlisten; i++) {
        cel_tls_free(c->listen[i].tls);
        free(c->listen[i].trusted);
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
