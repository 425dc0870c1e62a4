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

typedef struct cel_listen {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char text[64]; /* as written, for logs */
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
} cel_listen;

/* Parses "1.2.3.4:80", "[::1]:80", "*:80", "80" or "unix:/path". 0 or CEL_EINVAL
 * with a message. */
int cel_listen_parse(const char *s, cel_listen *out, char *err, size_t errlen);

/* The top level's `listen`: one address, one entry or a list; appends to
 * *LIST (of *NLIST), refusing an address given twice. */
int conf_listen(conf_ctx *c, yaml_node_t *n, cel_listen **list, size_t *nlist);

/* trusted: [CIDR, ...] (proxy_protocol's and real_ip's) into *OUT (malloc'd,
 * replacing what was there) and *COUNT. */
int conf_trusted(conf_ctx *c, yaml_node_t *n, struct cel_cidr **out, size_t *count);

#endif
