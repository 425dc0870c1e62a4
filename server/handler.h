/*
 * The handler interface. Every handler type embeds cel_handler as its first
 * member and fills in the function table; dispatch calls through the table and
 * never names a handler type. Config is the one place that builds handlers.
 */
#ifndef CEL_HANDLER_H
#define CEL_HANDLER_H

#include "arena.h"
#include "common.h"
#include "exchange.h"
#include "request.h"

struct cel_env;

/* handle() returns this when it took the exchange over (answers later). */
#define CEL_HANDLER_ASYNC 1

typedef struct cel_kv {
    cel_str name; /* lowercase */
    cel_str value;
} cel_kv;

/* What a handler answers. Memory it points to must stay valid until the stream
 * ends: generation memory (set body_in_gen) or the stream's arena. */
typedef struct cel_response {
    int status;
    cel_str content_type;
    const cel_kv *headers; /* extra headers */
    size_t nheaders;
    const char *body;
    size_t body_len;
    int body_in_gen; /* body lives in the config generation: may be sent by reference */
    /* For start(): the body that write() will give is exactly body_len bytes,
     * announced as content-length (else HTTP/1.1 chunks it and HTTP/2 ends it
     * with the stream). A handler that cannot deliver them all calls fail(). */
    int sized;
} cel_response;

typedef struct cel_handler cel_handler;

struct cel_handler {
    const char *type; /* "static", "json", "module": for logs */
    /* Answers X->req: fills RES (memory it points to from the generation or
     * X->arena) and returns 0; or returns CEL_HANDLER_ASYNC having taken the
     * exchange over; or a negative CEL_E* code: the stream then answers 500. */
    int (*handle)(cel_handler *h, cel_exchange *x, cel_response *res);
    void (*destroy)(cel_handler *h);
    /* Optional: 1 having filled RES's status, content type and body when
     * every answer has that body (held by the generation, body_in_gen), else
     * 0. At load, for middleware that prepares work (cel_mw_ops.prepare). */
    int (*constant)(cel_handler *h, cel_response *res);
    /* Optional, on each worker thread that adopts / lets go of the generation. */
    int (*worker_init)(cel_handler *h, struct cel_env *env);
    void (*worker_fini)(cel_handler *h, struct cel_env *env);
    /* Takes request bodies as a stream: a request with a body is handled as
     * soon as its headers are in, and its body comes through the exchange's
     * on_body (exchange.h), never buffered whole. */
    int body_stream;
};

struct cel_tmpl;

/* The fixed part of a response (status, content type, extra headers), copied
 * into memory the handler owns. Shared by the handler types. A header value
 * with placeholders has a template, rendered per request by
 * cel_resp_head_render; the others are constants, sent by reference. */
typedef struct cel_resp_head {
    int status;
    cel_str content_type;
    cel_kv *headers;
    size_t nheaders;
    char *strings;
    struct cel_tmpl **tmpls; /* per header, its template or NULL; NULL when none has one */
} cel_resp_head;

/* TMPLS (NULL, or N templates or NULLs, from cel_tmpl_compile_text) become
 * the head's, also on failure. */
int cel_resp_head_init(cel_resp_head *h, int status, const char *content_type, const cel_kv *hdrs,
                       size_t n, struct cel_tmpl *const *tmpls);
void cel_resp_head_deinit(cel_resp_head *h);

/* cel_resp_head_apply, then the headers with templates rendered for X's
 * request, into X's arena. 0, or CEL_ENOMEM. For heads with tmpls only: the
 * others apply, which costs nothing per header. */
int cel_resp_head_render(const cel_resp_head *h, cel_exchange *x, cel_response *res);
/* Whether a template of H has a {{request_id}} slot: then the handler makes
 * the id (cel_exchange_id) before it renders. */
int cel_resp_head_uses_id(const cel_resp_head *h);

static inline void cel_resp_head_apply(const cel_resp_head *h, cel_response *res)
{
    res->status = h->status;
    res->content_type = h->content_type;
    res->headers = h->headers;
    res->nheaders = h->nheaders;
}

/* Fills RES with the server's plain-text answer for STATUS (404, 413, …):
 * dispatch's, the front ends' and a handler's that fails before answering. */
void cel_response_error(cel_response *res, int status);

/* Built by config (see conf_handlers.c). TMPLS as for cel_resp_head_init. */
cel_handler *cel_handler_static_new(int status, const char *content_type, const cel_kv *headers,
                                    size_t nheaders, struct cel_tmpl *const *tmpls, char *body,
                                    size_t body_len);
struct cel_filebuf;
/* As cel_handler_static_new, with FB's bytes (filebuf.h: shared with the
 * other routes that name the same file) as the body. Takes the reference to
 * FB (also on failure). */
cel_handler *cel_handler_static_new_shared(int status, const char *content_type,
                                           const cel_kv *headers, size_t nheaders,
                                           struct cel_tmpl *const *tmpls, struct cel_filebuf *fb);
struct cel_module_image;
/* Creates a route instance of a loaded module, running its init with
 * CONFIG_JSON. Takes the image reference (also on failure). NULL with ERR. */
cel_handler *cel_handler_module_new(struct cel_module_image *img, const char *route,
                                    const char *config_json, unsigned nworkers, char *err,
                                    size_t errlen);

/* Prometheus metrics and a JSON status, from stats.c; readiness: 200 "ready",
 * or 503 "draining" (drain.h), as status also answers 503 while draining. */
cel_handler *cel_handler_metrics_new(void);
cel_handler *cel_handler_status_new(void);
cel_handler *cel_handler_readiness_new(void);

/* Answers STATUS (301, 302, 303, 307 or 308) with `location` TO rendered for
 * the request (from cel_tmpl_compile_url, bound to the route) and no body.
 * Takes ownership of TO (also on failure). */
cel_handler *cel_handler_redirect_new(int status, struct cel_tmpl *to);
/* Answers STATUS with `location: https://HOST[:PORT]PATH[?QUERY]` of the
 * request: its host without the port, lowercase (400 when it has none, or not a DNS name
 * or an IP address), PORT (0 or 443: none), its path and query as they came
 * (octets a URL cannot hold raw percent-encoded). */
cel_handler *cel_handler_redirect_https_new(int status, unsigned port);

/* Takes ownership of TMPL and TMPLS (also on failure). */
cel_handler *cel_handler_json_new(int status, const char *content_type, const cel_kv *headers,
                                  size_t nheaders, struct cel_tmpl *const *tmpls,
                                  struct cel_tmpl *tmpl);

#endif
