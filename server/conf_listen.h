/*
 * A listen address as the configuration gives it, and the `listen` key's
 * parser (conf_listen.c). Below config.h, which holds a generation's list of
 * them: the parser fills a list it is handed and knows no cel_config, so
 * config.c -> conf_listen.c -> conf.c runs one way (tests/check_includes.py).
 */
#ifndef CEL_CONF_LISTEN_H
#define CEL_CONF_LISTEN_H

#include <stddef.h>
#include <sys/socket.h>

#include "common.h"
#include "conf.h"

struct cel_tls;
struct cel_cidr;
struct cel_router;

typedef struct cel_listen {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char text[128]; /* as written, for logs and the metrics ("unix:" and a whole sun_path fit) */
    cel_loc loc;
    struct cel_tls *tls; /* NULL: cleartext (h2c and HTTP/1.1) */
    /* proxy_protocol: peers in TRUSTED must begin with a PROXY header (v1 or
     * v2), whose client address then stands for the connection's; other
     * peers are served as they are (a PROXY header from them is no request). */
    int proxy_protocol;
    struct cel_cidr *trusted;
    size_t ntrusted;
    /* AF_UNIX ("unix:/path"): the socket file's mode and owner, -1 to leave. */
    int mode;
    long uid, gid;
    unsigned id; /* the address's cel_listen_id */
    /* The entry's `routes` (or `redirect_https`): every request on this
     * address is looked up there alone; NULL: the top level's and the hosts'.
     * Owned by the generation; the nodes are the YAML's, set while loading. */
    struct cel_router *router;
    yaml_node_t *routes_node, *redirect_node;
} cel_listen;

/* Parses "1.2.3.4:80", "[::1]:80", "*:80", "80" or "unix:/path". 0 or CEL_EINVAL
 * with a message. */
int cel_listen_parse(const char *s, cel_listen *out, char *err, size_t errlen);

/* A number for the address ADDR (LEN bytes, as getsockname gives it), the
 * same in every generation and in every thread that asks (config loads, a
 * worker adding a socket), so a connection can name its listener across
 * reloads; never 0. Takes a lock: call it at load or when a listener is
 * added, not per connection. */
unsigned cel_listen_id(const struct sockaddr_storage *addr, socklen_t len);

/* The top level's `listen`: one address, one entry or a list; appends to
 * *LIST (of *NLIST), refusing an address given twice. */
int conf_listen(conf_ctx *c, yaml_node_t *n, cel_listen **list, size_t *nlist);

/* trusted: [CIDR, ...] (proxy_protocol's and real_ip's) into *OUT (malloc'd,
 * replacing what was there) and *COUNT. */
int conf_trusted(conf_ctx *c, yaml_node_t *n, struct cel_cidr **out, size_t *count);

#endif
