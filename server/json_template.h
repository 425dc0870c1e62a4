/*
 * JSON templates: a JSON document whose string values may hold placeholders,
 * compiled once at config load into literal chunks and slots, rendered per
 * request without calling jansson.
 *
 * Placeholders, only inside string values (not in keys):
 *   {{param.NAME}}   route param, percent-decoded
 *   {{query.NAME}}   first query argument NAME, percent-decoded ('+' is a space);
 *                    empty when absent
 *   {{header.NAME}}  first request header NAME (matched case-insensitively);
 *                    empty when absent
 *   {{method}}       request method
 *   {{path}}         request path without the query, raw
 * Whitespace inside the braces is not allowed. A literal "{{" that does not start
 * a valid placeholder is an error, so typos never reach a client.
 * Inserted values are JSON-string escaped: '"' and '\\' escaped, control bytes as
 * \u00XX, bytes that are not valid UTF-8 replaced by \ufffd, so the output is
 * always valid JSON whatever the client sent.
 */
#ifndef CEL_JSON_TEMPLATE_H
#define CEL_JSON_TEMPLATE_H

#include <jansson.h>

#include "common.h"
#include "request.h"

typedef struct cel_tmpl cel_tmpl;

/* Checks the placeholders in one string value. 0, or CEL_EINVAL with a message
 * in ERR naming the bad placeholder. Config calls it on each YAML scalar so the
 * error can carry that scalar's line and column. */
int cel_tmpl_check_string(const char *s, size_t n, char *err, size_t errlen);

/* Compiles ROOT (any JSON value; object key order is kept). NULL with a message in
 * ERR on a bad placeholder or out of memory. The template does not keep ROOT. */
cel_tmpl *cel_tmpl_compile(const json_t *root, char *err, size_t errlen);
void cel_tmpl_free(cel_tmpl *t);

/* Compiles the N bytes at S, a response header value, with the same
 * placeholders. Its literal text is kept as it is (config has refused control
 * bytes in it); inserted values (params and query arguments percent-decoded
 * first) have their control octets, below 0x20 and 0x7f, percent-encoded as
 * %XX, so a rendered value never holds CR, LF or NUL. Render works as for JSON
 * templates. NULL with a message in ERR on a bad placeholder. */
cel_tmpl *cel_tmpl_compile_text(const char *s, size_t n, char *err, size_t errlen);

/* The same for a URL (a redirect's target): inserted values (params, query
 * arguments and the path percent-decoded first) are percent-encoded but for
 * the unreserved octets (RFC 3986 2.3: ALPHA, DIGIT, "-._~") and '/', so a
 * value cannot end the path or add a query, a fragment, a scheme or a host
 * the literal text did not have. */
cel_tmpl *cel_tmpl_compile_url(const char *s, size_t n, char *err, size_t errlen);

/* When T has no placeholders: its whole output, and *LEN set. Otherwise NULL. */
const char *cel_tmpl_constant(const cel_tmpl *t, size_t *len);

/* Whether T (NULL: none) has a {{request_id}} slot: its renders read
 * req->id as it is, so a handler makes the id first (cel_exchange_id). */
int cel_tmpl_uses_id(const cel_tmpl *t);

/* Names of the params T refers to, so config can check them against the route
 * pattern: calls FN(ARG, name, len) for each {{param.NAME}} slot. */
void cel_tmpl_each_param(const cel_tmpl *t, void (*fn)(void *arg, const char *name, size_t len),
                         void *arg);

/* Records where each {{param.NAME}} sits among the params of PATTERN, the path
 * of the one route T serves, so that render reads it by position instead of
 * by name. Unbound templates (and requests with another number of params)
 * look params up by name. */
void cel_tmpl_bind_params(cel_tmpl *t, const char *pattern);

/*
 * Renders T for REQ into BUF of CAP bytes. Returns 0 with *OUTLEN set, or
 * CEL_ETOOBIG with *OUTLEN set to a size that is certain to be enough (then call
 * again with a buffer that large). Allocates nothing.
 */
int cel_tmpl_render(const cel_tmpl *t, const cel_request *req, char *buf, size_t cap,
                    size_t *outlen);

/* JSON-string escapes N bytes of SRC into [W, END) with the rules above (no
 * surrounding quotes). Returns the new write position, or NULL when it does not
 * fit; 6 bytes per input byte always do. */
char *cel_json_escape(char *w, char *end, const char *src, size_t n);

#endif
