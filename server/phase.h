/*
 * The phases every exchange passes, whatever its protocol: the one place
 * where what a response carries besides the handler's answer is decided.
 *
 *   request phase   dispatch (dispatch.c) runs the exchange's middleware
 *                   (x->mw: the global list, then the route's) before the
 *                   handler; one may answer instead of it (403, 401, 429, a
 *                   CORS preflight).
 *   head phase      cel_phase_head turns an answer (the handler's, a
 *                   middleware's, the server's own 404/413/500...) into the
 *                   ordered fields of its head: server, date, content-type,
 *                   the answer's headers, then what middleware sets, adds or
 *                   removes. The front ends serialize that list and add
 *                   only the protocol's framing (:status, content-length,
 *                   transfer-encoding, connection), so `server` and `date`
 *                   are written here and nowhere else.
 *   body phase      a middleware that rewrites bodies sets x->filter; the
 *                   front ends then pass whole bodies (cel_phase_body) and
 *                   streamed chunks (exchange write and end) through it. With
 *                   no filter the cost is the test of x->filter.
 *
 * Which response fields the phases and the front ends own is
 * cel_http_field_owner (http.h). Everything here runs on the worker thread;
 * nothing allocates but from the exchange's arena.
 */
#ifndef CEL_PHASE_H
#define CEL_PHASE_H

#include "common.h"
#include "env.h"
#include "exchange.h"
#include "handler.h"
#include "middleware.h"
#include "version.h"

/* Fields one response head may carry (the front ends' buffers): the three
 * of the head phase, a handler's (64 at most, config and modules alike) and
 * room for middleware. */
#define CEL_PHASE_MAX_FIELDS 96

/* The request phase of X's chain from its member FROM on; see cel_dispatch.
 * CEL_MW_ANSWERED with RES filled when a middleware answered, CEL_MW_HELD
 * when one holds the request (X->resume->next then names the member after
 * it), else 0. */
int cel_phase_request(cel_exchange *x, size_t from, cel_response *res);

/* The middleware part of cel_phase_head. */
size_t cel_phase_head_mw(cel_exchange *x, int status, cel_field *out, size_t n, size_t cap);

/*
 * The head phase: the fields of RES's head into OUT (CAP >= 3, usually
 * CEL_PHASE_MAX_FIELDS), returning how many. X->env gives the date, X->mw
 * the middleware; X->req and X->arena as cel_mw_ops.head says. Fields past
 * CAP are dropped. Inline: it runs for every response.
 */
static inline size_t cel_phase_head(cel_exchange *x, const cel_response *res, cel_field *out,
                                    size_t cap)
{
    size_t n = 0;
    out[n++] = cel_field_of(CEL_STR_LIT("server"), CEL_STR_LIT(CEL_SERVER_NAME));
    out[n++] = cel_field_of(CEL_STR_LIT("date"), (cel_str){x->env->date, x->env->date_len});
    if (res->content_type.n)
        out[n++] = cel_field_of(CEL_STR_LIT("content-type"), res->content_type);
    size_t k = res->nheaders < cap - n ? res->nheaders : cap - n;
    for (size_t i = 0; i < k; i++)
        out[n++] = cel_field_of(res->headers[i].name, res->headers[i].value);
    const cel_mw_chain *c = x->mw;
    if (CEL_UNLIKELY(c != NULL) && (c->phases & CEL_MW_HEAD)) {
        if (!c->head1)
            return cel_phase_head_mw(x, res->status, out, n, cap);
        /* one member has a head phase: no loop, no test of each member */
        cel_fields f = {out, n, cap, n - k};
        c->head1->ops->head(c->head1, x, res->status, &f);
        return f.n;
    }
    return n;
}

/* The body phase of an answer about to be sent: RES itself when X has no
 * filter and RES no error status, else TMP, a copy of RES the generation's
 * `errors:` block (errors.h: whole answers only) and then the filter
 * changed. WHOLE as for cel_body_filter.head. */
const cel_response *cel_phase_body_filter(cel_exchange *x, const cel_response *res,
                                          cel_response *tmp, int whole);
static inline const cel_response *cel_phase_body(cel_exchange *x, const cel_response *res,
                                                 cel_response *tmp, int whole)
{
    if (CEL_LIKELY(x->filter == NULL) && CEL_LIKELY(res->status < 400))
        return res;
    return cel_phase_body_filter(x, res, tmp, whole);
}

/* A streamed chunk and the end of X's body, through X's filter when it has
 * one, else straight to NEXT (the front end's own write and end): the
 * exchange's write and end ops of both front ends. */
static inline int cel_phase_write(cel_exchange *x, const void *p, size_t n,
                                  const cel_body_next *next)
{
    if (CEL_UNLIKELY(x->filter != NULL))
        return x->filter->write(x, p, n, next);
    return next->write(x, p, n);
}

static inline int cel_phase_end(cel_exchange *x, const cel_body_next *next)
{
    if (CEL_UNLIKELY(x->filter != NULL))
        return x->filter->end(x, next);
    return next->end(x);
}

#endif
