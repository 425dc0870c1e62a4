/*
 * Request dispatch, the same for every protocol front end: route lookup in a
 * generation, the handler call, and the server's own error responses.
 */
#ifndef CEL_DISPATCH_H
#define CEL_DISPATCH_H

#include "arena.h"
#include "config.h"
#include "handler.h"
#include "env.h"
#include "genref.h"
#include "request.h"
#include "stats.h"

/*
 * Routes X->req (method_bit, path, query, headers and body set) through CFG,
 * sets X->mw to the middleware the request runs (the route's chain, or the
 * global one when no route has the path), runs their request phase (a
 * middleware may answer: then the handler is not called, nor is a 404 or 405
 * given) and fills RES, returning 0; or returns CEL_HANDLER_ASYNC when the
 * handler took the exchange over. M is caller storage that the request's params point into;
 * it must live as long as the request. A handler error becomes a 500.
 */
int cel_dispatch(const cel_config *cfg, cel_exchange *x, cel_route_match *m, cel_response *res);

/*
 * A request whose body is still to come, at its headers (X->req without the
 * body): routes it into M and returns the lookup's result (CEL_ROUTE_*), for
 * cel_dispatch_routed to use when the request is dispatched. *LIMIT is then
 * the body's limit (the route's max_request_body, else the GLOBAL given),
 * *STREAM whether the route's handler takes the body as a stream: then
 * dispatch at once, with body_streamed set.
 */
int cel_dispatch_route_body(const cel_config *cfg, cel_exchange *x, cel_route_match *m,
                            size_t global, size_t *limit, int *stream);
/* cel_dispatch for a request cel_dispatch_route_body routed (RC its result). */
int cel_dispatch_routed(const cel_config *cfg, cel_exchange *x, cel_route_match *m, int rc,
                        cel_response *res);

/* X, held by a middleware in its request phase (CEL_MW_HELD, with
 * X->resume), goes on where it stopped: the rest of the request phase, then
 * the server's 404 or 405 or the handler (which may take the exchange over);
 * an answer goes out through X->ops. Once, on the worker, with the holder's
 * X->on_close cleared. */
void cel_dispatch_resume(cel_exchange *x);

/* The access log's part of cel_dispatch_done. */
void cel_dispatch_log(const cel_env *env, const cel_config *cfg, const cel_request *req,
                      const char *protocol, const char *peer, int status, uint64_t bytes,
                      uint64_t duration_us);

/*
 * A request ended with an answer (STATUS, BYTES of body, begun at START_US on
 * the worker's clock, env->now_us): counts it in the worker's stats and writes
 * the access log line when the generation has one and the route wants it. M
 * is the route match: data is the route that answered, or for a 405 the route
 * at the path (cel_dispatch sets it), NULL when no route has the path. A
 * request with an id (REQ->id) becomes its duration bucket's exemplar. Inline:
 * it runs for every request.
 */
static inline void cel_dispatch_done(cel_env *env, const cel_config *cfg, const cel_route_match *m,
                                     const cel_request *req, const char *protocol, const char *peer,
                                     int status, uint64_t bytes, uint64_t start_us)
{
    const cel_route *route = m->data;
    /* start and end come from one clock read per connection event: a request
     * begun and answered in one event takes 0 */
    uint64_t us = env->now_us - start_us;
    if (env->stats) {
        unsigned id = route ? route->stat_id : CEL_STATS_UNMATCHED;
        unsigned b = cel_stats_request(env->stats, id, req->method_bit, status, us);
        cel_count(&env->stats->bytes_out, bytes);
        if (req->id.n) /* the request_id middleware ran: the bucket's exemplar */
            cel_stats_exemplar(env->stats, id, b, req->id.p, req->id.n, us,
                               (uint64_t)env->now.tv_sec * 1000000u + (uint64_t)env->now.tv_usec);
    }
    if (cfg->accesslog && (!route || route->access_log))
        cel_dispatch_log(env, cfg, req, protocol, peer, status, bytes, us);
}

/*
 * A request refused before routing (an HTTP/1.1 400, 413, 414, 431, 501 or
 * 505, an HTTP/2 413 or 431 answered early, an HTTP/2 stream reset as
 * malformed, which is logged as 400): counted under the route "(rejected)"
 * and written to CFG's access log, whatever the routes say. REQ holds what
 * could be read of the request (empty slices for the rest). Not inline: it
 * is not the path of served requests.
 */
void cel_dispatch_rejected(cel_env *env, const cel_config *cfg, const cel_request *req,
                           const char *protocol, const char *peer, int status, uint64_t bytes,
                           uint64_t start_us);

#endif
