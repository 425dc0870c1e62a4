#include "dispatch.h"

#include <event2/event.h>
#include <event2/util.h>
#include <string.h>
#include <strings.h>

#include "accesslog.h"
#include "conn_view.h"
#include "env.h"
#include "http.h"
#include "log.h"
#include "middleware.h"
#include "phase.h"
#include "real_ip.h"
#include "stats.h"

/* The names' entry of the request's host (:authority or Host, without the
 * port, any case, a trailing dot ignored), or NULL. Names are few: a scan. */
static const cel_vhost *vhost_of(const cel_config *cfg, cel_str a)
{
    size_t n = a.n;
    if (n && a.p[0] == '[') {
        const char *end = memchr(a.p, ']', n);
        n = end ? (size_t)(end - a.p) + 1 : n;
    } else if (n) { /* no authority: a NULL pointer, never given to memchr */
        const char *colon = memchr(a.p, ':', n);
        if (colon)
            n = (size_t)(colon - a.p);
    }
    if (n && a.p[n - 1] == '.')
        n--;
    const cel_vhost *wild = NULL;
    size_t wild_len = 0;
    for (size_t i = 0; i < cfg->nvhosts; i++) {
        const cel_vhost *v = &cfg->vhosts[i];
        if (v->name[0] == '*') {
            /* "*.example.com": a name that ends in ".example.com"; the longest wins */
            size_t k = v->len - 1;
            if (n > k && k > wild_len && strncasecmp(a.p + n - k, v->name + 1, k) == 0)
                wild = v, wild_len = k;
        } else if (v->len == n && strncasecmp(a.p, v->name, n) == 0) {
            return v;
        }
    }
    return wild;
}

/* The routes of the connection's listener alone, when it has some; else
 * those of its scheme first, then those of the request's hosts: block (or
 * `default`) alone, or those of its `host:` then those without. Sets X->mw
 * to what a request no route has runs (the global list, or its block's). */
static __attribute__((noinline)) int lookup_vhost(const cel_config *cfg, cel_exchange *x,
                                                  cel_request *req, cel_route_match *m)
{
    x->mw = cfg->mw;
    for (size_t i = 0; cfg->listen_routes && x->conn && i < cfg->nlisten; i++)
        if (cfg->listen[i].router && cfg->listen[i].id == x->conn->listen_id)
            return cel_router_lookup(cfg->listen[i].router, req->path.p, req->path.n,
                                     req->method_bit, m);
    int tls = x->conn && x->conn->ssl;
    const cel_router *sr = cfg->scheme_router[tls ? CEL_SCHEME_HTTPS - 1 : CEL_SCHEME_HTTP - 1];
    if (sr) {
        int rc = cel_router_lookup(sr, req->path.p, req->path.n, req->method_bit, m);
        if (rc != CEL_ROUTE_NOT_FOUND)
            return rc;
    }
    cel_str a = req->authority;
    if (!a.n)
        cel_request_header(req, "host", 4, &a); /* HTTP/2 may send host instead */
    const cel_vhost *v = vhost_of(cfg, a);
    const cel_host_block *b = v ? v->block : cfg->host_default;
    if (b) {
        x->mw = b->mw;
        return cel_router_lookup(b->router, req->path.p, req->path.n, req->method_bit, m);
    }
    if (v) {
        int rc = cel_router_lookup(v->router, req->path.p, req->path.n, req->method_bit, m);
        if (rc != CEL_ROUTE_NOT_FOUND)
            return rc;
    }
    return cel_router_lookup(cfg->router, req->path.p, req->path.n, req->method_bit, m);
}

static inline __attribute__((always_inline)) int lookup(const cel_config *cfg, cel_exchange *x,
                                                        cel_request *req, cel_route_match *m)
{
    return CEL_LIKELY(!cfg->by_conn)
               ? cel_router_lookup(cfg->router, req->path.p, req->path.n, req->method_bit, m)
               : lookup_vhost(cfg, x, req, m);
}

static inline const cel_route *route_of(const cel_route_match *m, int rc)
{
    return CEL_LIKELY(rc == CEL_ROUTE_FOUND) ? m->data
           : rc == CEL_ROUTE_BAD_METHOD      ? m->path_data
                                             : NULL;
}

/* After the request phase: the server's 404 or 405, or the handler. */
static inline __attribute__((always_inline)) int
handled(cel_exchange *x, cel_route_match *m, int rc, const cel_route *route, cel_response *res)
{
    cel_request *req = x->req;
    if (rc == CEL_ROUTE_NOT_FOUND) {
        cel_response_error(res, 404);
        return 0;
    }
    if (rc == CEL_ROUTE_BAD_METHOD) {
        /* counted and logged as the path's route; its handler is not called */
        m->data = m->path_data;
        cel_response_error(res, 405);
        cel_kv *allow = cel_arena_alloc(x->arena, sizeof(*allow));
        if (allow) {
            allow->name = CEL_STR_LIT("allow");
            allow->value = (cel_str){m->allow, strlen(m->allow)};
            res->headers = allow;
            res->nheaders = 1;
        }
        return 0;
    }
    req->params = m->params;
    req->nparams = m->nparams;
    memset(res, 0, sizeof(*res));
    rc = route->handler->handle(route->handler, x, res);
    if (rc < 0) {
        cel_log(CEL_LOG_ERROR, "%s handler for route \"%s\" failed (%d)", route->handler->type,
                route->pattern, rc);
        cel_response_error(res, 500);
        return 0;
    }
    return rc;
}

/* The request phase from member FROM of X's chain: 1 when it ended the
 * request's dispatch (answered, *OUT 0; or held, *OUT CEL_HANDLER_ASYNC). */
static inline __attribute__((always_inline)) int request_phase(cel_exchange *x, cel_route_match *m,
                                                               int rc, const cel_route *route,
                                                               size_t from, cel_response *res,
                                                               int *out)
{
    if (rc == CEL_ROUTE_FOUND) {
        x->req->params = m->params;
        x->req->nparams = m->nparams;
    }
    memset(res, 0, sizeof(*res));
    int mrc = cel_phase_request(x, from, res);
    if (mrc == CEL_MW_ANSWERED) {
        m->data = (void *)route; /* counted and logged as the route that has the path */
        x->id_as_is = 1;         /* a request_id after the one that answered made no id */
        *out = 0;
        return 1;
    }
    if (mrc == CEL_MW_HELD) {
        x->resume->go = cel_dispatch_resume;
        x->resume->match = m;
        x->resume->route_rc = rc;
        *out = CEL_HANDLER_ASYNC;
        return 1;
    }
    return 0;
}

static inline __attribute__((always_inline)) int
routed(const cel_config *cfg, cel_exchange *x, cel_route_match *m, int rc, cel_response *res)
{
    const cel_route *route;
    /* a route found is never NULL: no test on that path (4 Ir a request) */
    if (CEL_LIKELY(rc == CEL_ROUTE_FOUND)) {
        route = m->data;
        x->mw = route->mw;
    } else {
        route = rc == CEL_ROUTE_BAD_METHOD ? m->path_data : NULL;
        /* without a route: the global list, or the hosts: block's lookup_vhost chose */
        x->mw = route ? route->mw : CEL_UNLIKELY(cfg->by_conn) ? x->mw : cfg->mw;
    }
    int out;
    /* no member has work for the method (a method with no bit runs the loop) */
    if (CEL_UNLIKELY(x->mw != NULL) && !(x->mw->request_skip & x->req->method_bit) &&
        request_phase(x, m, rc, route, 0, res, &out))
        return out;
    return handled(x, m, rc, route, res);
}

void cel_dispatch_resume(cel_exchange *x)
{
    cel_mw_resume at = *x->resume;
    x->resume = NULL;
    const cel_route *route = route_of(at.match, at.route_rc);
    cel_response res;
    int rc;
    if (!request_phase(x, at.match, at.route_rc, route, at.next, &res, &rc))
        rc = handled(x, at.match, at.route_rc, route, &res);
    /* held again, or the handler took over (one that takes a streamed body
     * sets on_body and calls body_resume for what came meanwhile) */
    if (rc != CEL_HANDLER_ASYNC)
        x->ops->respond(x, &res, NULL);
}

int cel_dispatch(const cel_config *cfg, cel_exchange *x, cel_route_match *m, cel_response *res)
{
    cel_request *req = x->req;
    /* lookup's common case, with the lookup inlined (router.h) */
    int rc = CEL_LIKELY(!cfg->by_conn)
                 ? cel_router_lookup_once(cfg->router, req->path.p, req->path.n, req->method_bit, m)
                 : lookup_vhost(cfg, x, req, m);
    return routed(cfg, x, m, rc, res);
}

int cel_dispatch_route_body(const cel_config *cfg, cel_exchange *x, cel_route_match *m,
                            size_t global, size_t *limit, int *stream)
{
    cel_request *req = x->req;
    int rc = lookup(cfg, x, req, m);
    const cel_route *route = rc == CEL_ROUTE_FOUND ? m->data : NULL;
    *limit = cel_route_body_limit(route, global);
    *stream = route && route->handler->body_stream;
    return rc;
}

int cel_dispatch_routed(const cel_config *cfg, cel_exchange *x, cel_route_match *m, int rc,
                        cel_response *res)
{
    return routed(cfg, x, m, rc, res);
}

void cel_dispatch_log(const cel_env *env, const cel_config *cfg, const cel_request *req,
                      const char *protocol, const char *peer, int status, uint64_t bytes,
                      uint64_t us)
{
    char real[64];
    cel_access e = {
        .req = req,
        .peer = cfg->real_ip ? cel_real_ip_of(cfg->real_ip, req, peer, real, sizeof(real)) : peer,
        .protocol = protocol,
        .status = status,
        .bytes = bytes,
        .duration_us = us,
        .now = env->now.tv_sec,
    };
    cel_accesslog_add(cfg->accesslog, env->worker_id, &e);
}

void cel_dispatch_rejected(cel_env *env, const cel_config *cfg, const cel_request *req,
                           const char *protocol, const char *peer, int status, uint64_t bytes,
                           uint64_t start_us)
{
    uint64_t us = env->now_us - start_us;
    if (env->stats) {
        cel_stats_request(env->stats, CEL_STATS_REJECTED, req->method_bit, status, us);
        cel_count(&env->stats->bytes_out, bytes);
    }
    if (cfg->accesslog)
        cel_dispatch_log(env, cfg, req, protocol, peer, status, bytes, us);
}
