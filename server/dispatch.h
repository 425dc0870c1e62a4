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
#include "request.h"
#include "stats.h"

/*
 * Routes X->req (method_bit, path, query, headers and body set) through CFG
 * and fills RES, returning 0; or returns CEL_HANDLER_ASYNC when the handler took
 * the exchange over. M is caller storage that the request's params point into;
 * it must live as long as the request. A handler error becomes a 500.
 */
int cel_dispatch(const cel_config *cfg, cel_exchange *x, cel_route_match *m, cel_response *res);

/* The access log's part of cel_dispatch_done. */
void cel_dispatch_log(const cel_env *env, const cel_config *cfg, const cel_request *req,
                      const char *protocol, const char *peer, int status, uint64_t bytes,
                      uint64_t duration_us);

/*
 * A request ended with an answer (STATUS, BYTES of body, begun at START in
 * loop time): counts it in the worker's stats and writes the access log line
 * when the generation has one and the route wants it. M is the route match
 * (data NULL when no route matched). Inline: it runs for every request.
 */
static inline void cel_dispatch_done(cel_env *env, const cel_config *cfg, const cel_route_match *m,
                                     const cel_request *req, const char *protocol,
                                     const char *peer, int status, uint64_t bytes,
                                     const struct timeval *start)
{
    const cel_route *route = m->data;
    int64_t us = (int64_t)(env->now.tv_sec - start->tv_sec) * 1000000 +
                 (int64_t)(env->now.tv_usec - start->tv_usec);
    if (us < 0)
        us = 0;
    if (env->stats) {
        cel_stats_request(env->stats, route ? route->stat_id : 0, req->method_bit, status,
                          (uint64_t)us);
        cel_count(&env->stats->bytes_out, bytes);
    }
    if (cfg->accesslog && (!route || route->access_log))
        cel_dispatch_log(env, cfg, req, protocol, peer, status, bytes, (uint64_t)us);
}

/* Fills RES with the server's plain-text answer for STATUS (404, 413, …). */
void cel_response_error(cel_response *res, int status);

/* The reason phrase for STATUS ("Not Found"), or "" when we have none. */
const char *cel_status_reason(int status);

#endif
