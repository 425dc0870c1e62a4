/*
 * The HTTP/1.1 front end: keep-alive and pipelining (one request at a time,
 * answers in request order), bounded heads and bodies (Content-Length or
 * chunked), Expect: 100-continue, chunked or close-delimited streamed answers,
 * and the h2c upgrade of RFC 7540 3.2. It feeds the same dispatch, handlers and
 * modules as HTTP/2 and writes into the connection's output queue; it never
 * touches a socket. Owned by the connection's worker thread.
 */
#ifndef CEL_H1_H
#define CEL_H1_H

#include "conn_view.h"
#include "env.h"
#include "outq.h"
#include "proto.h"

typedef struct cel_h1 cel_h1;

extern const cel_proto cel_h1_proto;

/* Called during recv when a request asked for h2c and got 101: H2 is the new
 * HTTP/2 session (its stream 1 answering that request). The caller switches to
 * it once recv returns, feeding it cel_h1_leftover first. */
typedef void (*cel_h1_upgrade_fn)(void *ctx, void *h2);

/* See cel_h2_new for WANT_FLUSH and CONN. NULL on ENOMEM. */
cel_h1 *cel_h1_new(cel_env *env, cel_outq *out, void (*want_flush)(void *ctx), void *ctx,
                   const cel_conn_view *conn, cel_h1_upgrade_fn upgrade, void *uctx);

/* After an upgrade: the bytes that followed the upgrading request (the start of
 * the client's HTTP/2 preface, perhaps). Valid until the session is freed. */
const uint8_t *cel_h1_leftover(void *h1, size_t *n);

#endif
