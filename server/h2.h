/*
 * The HTTP/2 front end: one nghttp2 server session per connection, its streams,
 * and the translation between frames and the protocol-neutral request/response.
 * It reads bytes it is given and writes frames into the connection's output
 * queue; it never touches a socket. Owned by the connection's worker thread.
 */
#ifndef CEL_H2_H
#define CEL_H2_H

#include <nghttp2/nghttp2.h>

#include "common.h"
#include "conn_view.h"
#include "env.h"
#include "outq.h"
#include "proto.h"

/* The HTTP/2 front end as a connection's protocol (the functions below). */
extern const cel_proto cel_h2_proto;

typedef struct cel_h2 cel_h2;

/* Once per process, before any session: builds the shared callback table. */
int cel_h2_global_init(void);

/* Fills *MEM so that nghttp2 allocates from POOL (what every session of ours
 * does; tests/perf uses it for its floor measurement too). */
void cel_h2_pool_mem(nghttp2_mem *mem, cel_pool *pool);

/* A new server session writing into OUT. Queues our SETTINGS. WANT_FLUSH(CTX)
 * is called when a handler produced output outside the connection's own I/O
 * (an async completion): the connection should run cel_h2_send and flush soon.
 * CONN (the connection as handlers see it; its peer goes to the access log)
 * must outlive the session; NULL: none ("-" in the log). NULL on ENOMEM. */
cel_h2 *cel_h2_new(cel_env *env, cel_outq *out, void (*want_flush)(void *ctx), void *ctx,
                   const cel_conn_view *conn);
struct cel_request;
/* A session that starts as the upgrade of an HTTP/1.1 request (RFC 7540 3.2):
 * SETTINGS is the decoded HTTP2-Settings payload, and RQ (copied) is answered on
 * stream 1. NULL when the upgrade cannot be made; *DISPATCHED then says
 * whether RQ already went to its route (the handler ran, and then the session
 * failed, out of memory): such a request must not be answered again over
 * HTTP/1.1, which would run its handler a second time. */
cel_h2 *cel_h2_new_upgraded(cel_env *env, cel_outq *out, void (*want_flush)(void *ctx), void *ctx,
                            const cel_conn_view *conn, const uint8_t *settings, size_t slen,
                            const struct cel_request *rq, int *dispatched);

/* Frees the session and every stream still open (releasing their generations). */
void cel_h2_free(cel_h2 *h);

/* Feeds N received bytes. 0, or CEL_EIO when the connection must end (a GOAWAY
 * may be queued: flush with cel_h2_send first). */
int cel_h2_recv(cel_h2 *h, const uint8_t *p, size_t n);

/* Moves frames nghttp2 has ready into the output queue, until none are left or
 * the queue holds limits.max_output_buffer bytes. 0 or CEL_EIO. */
int cel_h2_send(cel_h2 *h);

/* Whether nghttp2 has frames ready that cel_h2_send has not taken yet. */
int cel_h2_want_write(const cel_h2 *h);
/* 0 once the session is over: GOAWAY exchanged and no streams left. */
int cel_h2_want_read(const cel_h2 *h);
/* Streams currently open. */
size_t cel_h2_streams(const cel_h2 *h);
/* Whether any request has completed on this connection. */
int cel_h2_served(const cel_h2 *h);
/* Whether a header block has begun and not ended (HEADERS without END_HEADERS). */
int cel_h2_in_headers(const cel_h2 *h);
/* Grows whenever request or response bytes move (not for PING, SETTINGS...). */
uint64_t cel_h2_progress(const cel_h2 *h);
/* Streams waiting on the server alone: a handler that took the exchange and
 * has not answered, or a streamed body with nothing written yet. */
size_t cel_h2_held(const cel_h2 *h);
/* Before a forced close: RST_STREAM CANCEL on every stream in flight (their
 * handlers hear on_close when the stream goes) and a final GOAWAY NO_ERROR
 * with the last stream we processed, even after a graceful one. */
void cel_h2_expire(cel_h2 *h);

/* Graceful end: GOAWAY with the last stream we processed; streams in flight
 * finish. Idempotent. */
void cel_h2_goaway(cel_h2 *h);

#endif
