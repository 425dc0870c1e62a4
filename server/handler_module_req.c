/* The module ABI's request calls (celeris_req_*): what a module reads of the
 * request, its connection and its worker. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "conn_view.h"
#include "handler_module_internal.h"
#include "http.h"
#include "module_req.h"
#include "real_ip.h"
#include "tls.h"

/* ---- the request ---- */

static celeris_str to_str(cel_str s)
{
    return (celeris_str){s.n ? s.p : "", s.n};
}

celeris_str celeris_req_method(const celeris_req *req)
{
    return to_str(req->x->req->method);
}

celeris_str celeris_req_path(const celeris_req *req)
{
    return to_str(req->x->req->path);
}

celeris_str celeris_req_query(const celeris_req *req)
{
    return to_str(req->x->req->query);
}

static int decoded(celeris_req *req, cel_str raw, int plus, celeris_str *out)
{
    char *d = cel_arena_alloc(req->x->arena, raw.n + 1);
    if (!d)
        return CELERIS_NOMEM;
    size_t n = cel_pct_decode(d, raw.p, raw.n, plus);
    d[n] = 0;
    *out = (celeris_str){d, n};
    return CELERIS_OK;
}

int celeris_req_param(celeris_req *req, const char *name, celeris_str *out)
{
    cel_str raw;
    if (cel_request_param(req->x->req, name, strlen(name), &raw))
        return CELERIS_NOTFOUND;
    return decoded(req, raw, 0, out);
}

int celeris_req_query_arg(celeris_req *req, const char *name, celeris_str *out)
{
    cel_str raw;
    if (cel_request_query(req->x->req, name, strlen(name), &raw))
        return CELERIS_NOTFOUND;
    return decoded(req, raw, 1, out);
}

int celeris_req_header(const celeris_req *req, const char *name, celeris_str *out)
{
    char low[256];
    size_t n = strlen(name);
    if (n >= sizeof(low))
        return CELERIS_NOTFOUND;
    for (size_t i = 0; i < n; i++)
        low[i] = (char)cel_http_lower((unsigned char)name[i]);
    cel_str v;
    if (cel_request_header(req->x->req, low, n, &v))
        return CELERIS_NOTFOUND;
    *out = to_str(v);
    return CELERIS_OK;
}

size_t celeris_req_header_count(const celeris_req *req)
{
    return req->x->req->nheaders;
}

int celeris_req_header_at(const celeris_req *req, size_t i, celeris_str *name, celeris_str *value)
{
    if (i >= req->x->req->nheaders)
        return CELERIS_NOTFOUND;
    *name = to_str(req->x->req->headers[i].name);
    *value = to_str(req->x->req->headers[i].value);
    return CELERIS_OK;
}

celeris_str celeris_req_body(const celeris_req *req)
{
    return (celeris_str){req->x->req->body_len ? req->x->req->body : "", req->x->req->body_len};
}

celeris_str celeris_req_id(const celeris_req *req)
{
    if (!req->x)
        return (celeris_str){"", 0};
    /* a middleware's on_request sees what the request phase made so far */
    return to_str(req->mw && !req->fields ? req->x->req->id : cel_exchange_id(req->x));
}

/* ---- the connection ---- */

_Static_assert(CELERIS_TLS_VERSION == CEL_TLS_VERSION && CELERIS_TLS_CIPHER == CEL_TLS_CIPHER &&
                   CELERIS_TLS_SNI == CEL_TLS_SNI && CELERIS_TLS_ALPN == CEL_TLS_ALPN &&
                   CELERIS_TLS_CLIENT_SUBJECT == CEL_TLS_CLIENT_SUBJECT,
               "tls.h and celeris/module.h name the same items");

/* A request with no connection behind it (tests) has no addresses and no TLS. */
static const cel_conn_view *conn_of(const celeris_req *req)
{
    static const cel_conn_view none = {"-", -1, NULL, 0, 0, 0, 0, {0}};
    return req->x->conn ? req->x->conn : &none;
}

celeris_str celeris_req_authority(const celeris_req *req)
{
    return to_str(req->x->req->authority);
}

celeris_str celeris_req_scheme(const celeris_req *req)
{
    if (req->x->http2)
        return to_str(req->x->req->scheme);
    return conn_of(req)->ssl ? (celeris_str){"https", 5} : (celeris_str){"http", 4};
}

celeris_str celeris_req_protocol(const celeris_req *req)
{
    if (!req->x->http2)
        return (celeris_str){"HTTP/1.1", 8};
    return conn_of(req)->ssl ? (celeris_str){"h2", 2} : (celeris_str){"h2c", 3};
}

/* The address of FD's peer (LOCAL: its own) into the request's arena. */
static int sock_addr(celeris_req *req, int fd, int local, celeris_str *ip, unsigned *port)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if ((local ? getsockname(fd, (struct sockaddr *)&ss, &sl)
               : getpeername(fd, (struct sockaddr *)&ss, &sl)) < 0)
        return CELERIS_NOTFOUND;
    char *buf = cel_arena_alloc(req->x->arena, INET6_ADDRSTRLEN);
    if (!buf)
        return CELERIS_NOMEM;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, buf, INET6_ADDRSTRLEN);
        *port = ntohs(a->sin_port);
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &a->sin6_addr, buf, INET6_ADDRSTRLEN);
        *port = ntohs(a->sin6_port);
    } else {
        return CELERIS_NOTFOUND;
    }
    *ip = (celeris_str){buf, strlen(buf)};
    return CELERIS_OK;
}

int celeris_req_addr(celeris_req *req, int which, celeris_str *ip, unsigned *port)
{
    const cel_conn_view *c = conn_of(req);
    unsigned p = 0;
    if (which == CELERIS_ADDR_PEER || which == CELERIS_ADDR_LOCAL) {
        int rc = sock_addr(req, c->fd, which == CELERIS_ADDR_LOCAL, ip, &p);
        if (rc == CELERIS_OK && port)
            *port = p;
        return rc;
    }
    if (which != CELERIS_ADDR_CLIENT)
        return CELERIS_NOTFOUND;
    /* What the access log shows: the PROXY header's source, then real_ip's. */
    char real[64];
    const char *addr = c->peer;
    if (req->x->real_ip)
        addr = cel_real_ip_of(req->x->real_ip, req->x->req, c->peer, real, sizeof(real));
    if (addr != c->peer) {
        p = 0; /* a forwarding header names no port */
    } else if (c->proxied) {
        p = c->proxy_port;
    } else {
        celeris_str sip;
        int rc = sock_addr(req, c->fd, 0, &sip, &p);
        if (rc != CELERIS_OK)
            return rc;
    }
    char *d = cel_arena_dup(req->x->arena, addr, strlen(addr));
    if (!d)
        return CELERIS_NOMEM;
    *ip = (celeris_str){d, strlen(addr)};
    if (port)
        *port = p;
    return CELERIS_OK;
}

celeris_str celeris_req_tls(celeris_req *req, int what)
{
    const cel_conn_view *c = conn_of(req);
    char buf[512];
    size_t n;
    if (!c->ssl || !(n = cel_tls_info(c->ssl, what, buf, sizeof(buf))))
        return (celeris_str){"", 0};
    char *d = cel_arena_dup(req->x->arena, buf, n);
    return d ? (celeris_str){d, n} : (celeris_str){"", 0};
}

void *celeris_req_worker_data(const celeris_req *req)
{
    unsigned id = req->x->env->worker_id;
    return id < req->mh->nworkers ? req->mh->wdata[id] : NULL;
}

struct event_base *celeris_req_event_base(const celeris_req *req)
{
    return req->x->env->base;
}

unsigned celeris_worker_id(const celeris_worker *worker)
{
    return ((const cel_env *)worker)->worker_id;
}

unsigned celeris_req_worker_id(const celeris_req *req)
{
    return req->x->env->worker_id;
}

/* ---- cookies and forms (module_req.c) ---- */

int celeris_req_cookie(celeris_req *req, const char *name, celeris_str *out)
{
    return req->x ? cel_module_cookie(req, req->x->req, name, out) : CELERIS_STATE;
}

int celeris_req_form(celeris_req *req, const char *name, celeris_str *out)
{
    return req->x ? cel_module_form(req, req->x->req, name, out) : CELERIS_STATE;
}
