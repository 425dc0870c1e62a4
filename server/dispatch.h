/*
 * Request dispatch, the same for every protocol front end: route lookup in a
 * generation, the handler call, and the server's own error responses.
 */
#ifndef CEL_DISPATCH_H
#define CEL_DISPATCH_H

#include "arena.h"
#include "config.h"
#include "handler.h"
#include "request.h"

/*
 * Routes X->req (method_bit, path, query, headers and body set) through CFG
 * and fills RES, returning 0; or returns CEL_HANDLER_ASYNC when the handler took
 * the exchange over. M is caller storage that the request's params point into;
 * it must live as long as the request. A handler error becomes a 500.
 */
int cel_dispatch(const cel_config *cfg, cel_exchange *x, cel_route_match *m, cel_response *res);

struct cel_env;
struct timeval;

/*
 * A request ended with an answer (STATUS, BYTES of body, begun at START in
 * loop time): counts it in the worker's stats and writes the access log line
 * when the generation has one and the route wants it. M is the route match
 * (data NULL when no route matched).
 */
void cel_dispatch_done(struct cel_env *env, const cel_config *cfg, const cel_route_match *m,
                       const cel_request *req, const char *protocol, const char *peer,
                       int status, uint64_t bytes, const struct timeval *start);

/* Fills RES with the server's plain-text answer for STATUS (404, 413, …). */
void cel_response_error(cel_response *res, int status);

/* The reason phrase for STATUS ("Not Found"), or "" when we have none. */
const char *cel_status_reason(int status);

#endif
