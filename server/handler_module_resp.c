/* The module ABI's response calls (celeris_resp_*): a module's answer, whole
 * or streamed, handed to the exchange. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "handler_module_internal.h"
#include "http.h"

/* ---- the response ---- */

/* Fields the server writes itself, whatever the module says (content-type,
 * also the server's, is taken as the type before this is asked). */
static int reserved_header(const char *lower)
{
    return cel_http_field_owner(lower, strlen(lower)) != 0;
}

int celeris_resp_header(celeris_req *req, const char *name, const char *value)
{
    if (!req->x)
        return CELERIS_STATE;
    if (req->state != R_NEW && req->state != R_SUSPENDED)
        return cel_modh_refuse(req, REF_LATE_HEADER, CELERIS_STATE,
                               "celeris_resp_header(\"%.64s\") after the response started", name);
    if (!cel_http_is_token(name, strlen(name)))
        return cel_modh_refuse(req, REF_HEADER_NAME, CELERIS_ERROR,
                               "celeris_resp_header refused the name \"%.64s\": not an HTTP token",
                               name);
    if (strpbrk(value, "\r\n"))
        return cel_modh_refuse(req, REF_HEADER_VALUE, CELERIS_ERROR,
                               "celeris_resp_header refused the value of \"%.64s\": CR or LF in it",
                               name);
    if (req->nhdrs == MAX_MODULE_HEADERS)
        return cel_modh_refuse(req, REF_HEADER_COUNT, CELERIS_ERROR,
                               "celeris_resp_header refused \"%.64s\": more than %d headers", name,
                               MAX_MODULE_HEADERS);
    size_t n = strlen(name), vn = strlen(value);
    char *nm = cel_arena_alloc(req->x->arena, n + 1);
    char *v = cel_arena_dup(req->x->arena, value, vn);
    if (!nm || !v)
        return CELERIS_NOMEM;
    for (size_t i = 0; i <= n; i++)
        nm[i] = (char)cel_http_lower((unsigned char)name[i]);
    if (strcmp(nm, "content-type") == 0) {
        req->ctype = (cel_str){v, vn};
        return CELERIS_OK;
    }
    if (reserved_header(nm))
        return cel_modh_refuse(req, REF_HEADER_RESERVED, CELERIS_ERROR,
                               "celeris_resp_header refused \"%s\": the server sets it", nm);
    if (!req->hdrs) {
        req->hdrs = cel_arena_alloc(req->x->arena, MAX_MODULE_HEADERS * sizeof(cel_kv));
        if (!req->hdrs)
            return CELERIS_NOMEM;
    }
    req->hdrs[req->nhdrs++] = (cel_kv){{nm, n}, {v, vn}};
    return CELERIS_OK;
}

static void fill_head(const celeris_req *req, int status, cel_response *res)
{
    memset(res, 0, sizeof(*res));
    res->status = status;
    res->content_type = req->ctype.n ? req->ctype : CEL_STR_LIT("application/octet-stream");
    res->headers = req->hdrs;
    res->nheaders = req->nhdrs;
}

static int can_answer(const celeris_req *req, int status)
{
    if (!req->x)
        return CELERIS_STATE;
    if (req->state != R_NEW && req->state != R_SUSPENDED)
        return cel_modh_refuse(req, REF_SECOND_ANSWER, CELERIS_STATE,
                               "a second answer (status %d) after the response started", status);
    if (status < 200 || status > 599)
        return cel_modh_refuse(req, REF_STATUS, CELERIS_ERROR,
                               "status %d refused: only 200 to 599 can be answered", status);
    return CELERIS_OK;
}

int celeris_resp_send(celeris_req *req, int status, const void *body, size_t len)
{
    int rc = can_answer(req, status);
    if (rc)
        return rc;
    char *copy = cel_arena_dup(req->x->arena, body, len);
    if (!copy)
        return CELERIS_NOMEM;
    if (req->in_handle && !req->taken) {
        fill_head(req, status, req->sync_res);
        req->sync_res->body = copy;
        req->sync_res->body_len = len;
        req->state = R_SYNC;
        return CELERIS_OK;
    }
    cel_response res;
    fill_head(req, status, &res);
    res.body = copy;
    res.body_len = len;
    take(req);
    req->state = R_DONE;
    stamp(req);
    return req->x->ops->respond(req->x, &res, NULL) ? CELERIS_ERROR : CELERIS_OK;
}

int celeris_resp_printf(celeris_req *req, int status, const char *fmt, ...)
{
    if (!req->x)
        return CELERIS_STATE;
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return CELERIS_ERROR;
    if ((size_t)n < sizeof(small))
        return celeris_resp_send(req, status, small, (size_t)n);
    char *big = cel_arena_alloc(req->x->arena, (size_t)n + 1);
    if (!big)
        return CELERIS_NOMEM;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return celeris_resp_send(req, status, big, (size_t)n);
}

int celeris_resp_send_ref(celeris_req *req, int status, const void *body, size_t len,
                          void (*release)(void *arg), void *arg)
{
    int rc = CEL_UNLIKELY(req->mw) ? cel_modh_sync_only(req, "celeris_resp_send_ref")
                                   : can_answer(req, status);
    if (rc) {
        if (release)
            release(arg);
        return rc;
    }
    cel_response res;
    fill_head(req, status, &res);
    res.body = body;
    res.body_len = len;
    cel_body_owner owner = {release, arg};
    take(req);
    req->state = R_DONE;
    stamp(req);
    return req->x->ops->respond(req->x, &res, release ? &owner : NULL) ? CELERIS_ERROR : CELERIS_OK;
}

int celeris_resp_start(celeris_req *req, int status)
{
    int rc = CEL_UNLIKELY(req->mw) ? cel_modh_sync_only(req, "celeris_resp_start")
                                   : can_answer(req, status);
    if (rc)
        return rc;
    cel_response res;
    fill_head(req, status, &res);
    take(req);
    req->state = R_STARTED;
    return req->x->ops->start(req->x, &res) ? CELERIS_ERROR : CELERIS_OK;
}

/* Why a stream call is not allowed now, once per route. */
static int not_streaming(const celeris_req *req, const char *call)
{
    if (!req->x)
        return CELERIS_STATE;
    return cel_modh_refuse(req, REF_NOT_STREAMING, CELERIS_STATE, "%s %s", call,
                           req->state == R_DONE ? "after the response ended"
                                                : "before celeris_resp_start");
}

int celeris_resp_write(celeris_req *req, const void *data, size_t len)
{
    if (!req->x || req->state != R_STARTED)
        return not_streaming(req, "celeris_resp_write");
    int rc = req->x->ops->write(req->x, data, len);
    return rc == CEL_EAGAIN   ? CELERIS_AGAIN
           : rc == CEL_ENOMEM ? CELERIS_NOMEM
           : rc               ? CELERIS_ERROR
                              : CELERIS_OK;
}

int celeris_resp_end(celeris_req *req)
{
    if (!req->x || req->state != R_STARTED)
        return not_streaming(req, "celeris_resp_end");
    req->state = R_DONE;
    stamp(req);
    return req->x->ops->end(req->x) ? CELERIS_ERROR : CELERIS_OK;
}

size_t celeris_resp_buffered(const celeris_req *req)
{
    return req->x && req->state == R_STARTED ? req->x->ops->buffered(req->x) : 0;
}

static void writable(cel_exchange *x)
{
    celeris_req *r = x->hdata;
    void (*fn)(celeris_req *, void *) = r->writable_fn;
    r->writable_fn = NULL;
    if (fn)
        fn(r, r->writable_arg);
}

int celeris_resp_on_writable(celeris_req *req, void (*fn)(celeris_req *req, void *arg), void *arg)
{
    if (!req->x || req->state != R_STARTED)
        return not_streaming(req, "celeris_resp_on_writable");
    req->writable_fn = fn;
    req->writable_arg = arg;
    req->x->on_writable = writable;
    return CELERIS_OK;
}

int celeris_resp_abort(celeris_req *req)
{
    if (!req->x || req->state == R_DONE || req->state == R_SYNC)
        return CELERIS_STATE;
    if (CEL_UNLIKELY(req->mw))
        return cel_modh_sync_only(req, "celeris_resp_abort");
    take(req);
    req->state = R_DONE;
    req->aborted = 1;
    stamp(req);
    req->x->ops->fail(req->x);
    return CELERIS_OK;
}
