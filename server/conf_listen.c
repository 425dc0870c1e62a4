/*
 * The `listen` key: addresses (cel_listen_parse) and each entry's `tls` block.
 * Split from config.c so each file holds one part of the configuration.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "conf.h"
#include "conf_listen.h"
#include "proxy_proto.h"
#include "tls.h"

/* ---- listen addresses ---- */

/* The text of a unix address is never cut: the metrics' listen label of two
 * long paths must not become one. */
_Static_assert(sizeof(((cel_listen *)0)->text) >=
                   sizeof("unix:") + sizeof(((struct sockaddr_un *)0)->sun_path) - 1,
               "cel_listen.text holds any unix address");

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
        snprintf(err, errlen, "port %ld in listen address \"%s\" is out of range (1-65535)", p, s);
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

/* Addresses ever given, in the order first seen: an id is its index + 1.
 * Never shrunk (an id names one address in every generation, also for the
 * connections of an old one), so the table holds one entry per distinct
 * address any configuration named; it doubles as it fills, and the slots, an
 * open-addressing index of ids by address (twice as many as ids, at least),
 * keep a lookup at one probe or so however many there are (before: a scan of
 * every address, per listen entry at load and per worker listener added). */
typedef struct listen_addr {
    struct sockaddr_storage addr;
    socklen_t len;
} listen_addr;

static pthread_mutex_t ids_lock = PTHREAD_MUTEX_INITIALIZER;
static listen_addr *ids;
static unsigned nids, ids_cap;
static unsigned *id_slots; /* ids (0: empty), a power of two of them */
static unsigned nslots;

static uint32_t addr_hash(const struct sockaddr_storage *addr, socklen_t len)
{
    const unsigned char *p = (const unsigned char *)addr;
    uint32_t h = 2166136261u; /* FNV-1a */
    for (socklen_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

/* The slot of ADDR: the one holding its id, or the empty one it would take. */
static unsigned *id_slot(const struct sockaddr_storage *addr, socklen_t len)
{
    for (uint32_t i = addr_hash(addr, len) & (nslots - 1);; i = (i + 1) & (nslots - 1)) {
        unsigned id = id_slots[i];
        if (!id || (ids[id - 1].len == len && memcmp(&ids[id - 1].addr, addr, len) == 0))
            return &id_slots[i];
    }
}

/* Room for one more id: the table doubled, the index rebuilt at twice the
 * ids. 0, or -1 when out of memory (nothing changed then). */
static int ids_grow(void)
{
    if (nids == ids_cap) {
        if (ids_cap > UINT_MAX / 4)
            return -1;
        unsigned cap = ids_cap ? ids_cap * 2 : 16;
        listen_addr *a = realloc(ids, (size_t)cap * sizeof(*a));
        if (!a)
            return -1;
        ids = a;
        ids_cap = cap;
    }
    if ((size_t)(nids + 1) * 2 <= nslots)
        return 0;
    unsigned n = nslots ? nslots * 2 : 32;
    unsigned *slots = calloc(n, sizeof(*slots));
    if (!slots)
        return -1;
    free(id_slots);
    id_slots = slots;
    nslots = n;
    for (unsigned i = 0; i < nids; i++)
        *id_slot(&ids[i].addr, ids[i].len) = i + 1;
    return 0;
}

unsigned cel_listen_id(const struct sockaddr_storage *addr, socklen_t len)
{
    if (len > sizeof(*addr))
        return 0;
    unsigned id = 0;
    pthread_mutex_lock(&ids_lock);
    if (nslots)
        id = *id_slot(addr, len);
    if (!id && ids_grow() == 0) {
        memset(&ids[nids].addr, 0, sizeof(ids[nids].addr));
        memcpy(&ids[nids].addr, addr, len);
        ids[nids].len = len;
        id = ++nids;
        *id_slot(addr, len) = id;
    }
    pthread_mutex_unlock(&ids_lock);
    return id; /* 0 only when out of memory: then no listener routes match */
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
    int which = strcmp(key, "cert") == 0   ? 0
                : strcmp(key, "key") == 0  ? 1
                : strcmp(key, "ocsp") == 0 ? 2
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
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start;
             !rc && p < n->data.mapping.pairs.top; p++) {
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
    yaml_node_t *address, *tls, *proxy, *trusted, *mode, *owner, *routes, *redirect;
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
    else if (strcmp(key, "routes") == 0)
        b->routes = v;
    else if (strcmp(key, "redirect_https") == 0)
        b->redirect = v;
    else
        return conf_unknown_key(c, k, "a listen entry",
                                "address, tls, proxy_protocol, trusted, mode, owner, routes, "
                                "redirect_https");
    if (b->routes && b->redirect)
        return conf_error(c, k, "a listen entry has routes or redirect_https, not both");
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

int conf_trusted(conf_ctx *c, yaml_node_t *n, cel_cidr **out, size_t *count)
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
    if ((rc = conf_trusted(c, b->trusted, &l->trusted, &l->ntrusted)))
        return rc;
    l->proxy_protocol = on;
    return 0;
}

static int add_listen(conf_ctx *c, cel_listen **list, size_t *nlist, yaml_node_t *n)
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
    l.routes_node = b.routes;
    l.redirect_node = b.redirect;
    if (!(l.id = cel_listen_id(&l.addr, l.addrlen)))
        return conf_error(c, addr, "out of memory");
    for (size_t i = 0; i < *nlist; i++) /* one address, one id */
        if ((*list)[i].id == l.id)
            return conf_error(c, addr, "listen address \"%s\" is given twice", s);
    if ((rc = parse_unix_opts(c, &b, &l)) || (rc = parse_proxy(c, &b, n, &l))) {
        free(l.trusted);
        return rc;
    }
    if (tls && (rc = parse_tls(c, tls, &l.tls))) {
        free(l.trusted);
        return rc;
    }
    cel_listen *nl = realloc(*list, (*nlist + 1) * sizeof(*nl));
    if (!nl) {
        free(l.trusted);
        cel_tls_free(l.tls);
        return conf_error(c, n, "out of memory");
    }
    *list = nl;
    nl[(*nlist)++] = l;
    return 0;
}

int conf_listen(conf_ctx *c, yaml_node_t *n, cel_listen **list, size_t *nlist)
{
    if (n->type == YAML_SCALAR_NODE || n->type == YAML_MAPPING_NODE)
        return add_listen(c, list, nlist, n);
    if (n->type != YAML_SEQUENCE_NODE)
        return conf_error(c, n, "listen must be an address or a list of addresses");
    if (n->data.sequence.items.start == n->data.sequence.items.top)
        return conf_error(c, n, "listen must name at least one address");
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++) {
        int rc = add_listen(c, list, nlist, conf_node(c, *it));
        if (rc)
            return rc;
    }
    return 0;
}
