/*
 * The protocol-neutral request as handlers and templates see it. Each front
 * end (HTTP/2, HTTP/1.1) fills one in; nothing here names nghttp2.
 *
 * Every slice points into memory owned by the stream that carries the request
 * and stays valid until the stream ends. Nothing is NUL-terminated.
 */
#ifndef CEL_REQUEST_H
#define CEL_REQUEST_H

#include "common.h"
#include "router.h"

typedef struct cel_header {
    cel_str name; /* lowercase, as HTTP/2 requires */
    cel_str value;
} cel_header;

typedef struct cel_request {
    unsigned method_bit; /* one CEL_M_* bit, 0 for a method we have no bit for */
    cel_str method;
    cel_str path;  /* :path up to (not including) '?', still percent-encoded */
    cel_str query; /* after '?', without it; empty when there is none */
    cel_str authority;
    cel_str scheme;
    const cel_header *headers; /* regular headers, in arrival order */
    size_t nheaders;
    const cel_param *params; /* route params; offsets are into path */
    unsigned nparams;
    const char *body;
    size_t body_len;
    cel_str id; /* the request id (the request_id middleware); empty: none */
} cel_request;

/* Raw (still percent-encoded) value of route param NAME. 0 or CEL_ENOTFOUND. */
int cel_request_param(const cel_request *req, const char *name, size_t nlen, cel_str *out);

/* Raw value of the first query argument NAME ("a=1&b=2"); an argument with no
 * '=' has an empty value. 0 or CEL_ENOTFOUND. NAME is compared raw. */
int cel_request_query(const cel_request *req, const char *name, size_t nlen, cel_str *out);

/* Value of the first header NAME (NAME lowercase). 0 or CEL_ENOTFOUND. */
int cel_request_header(const cel_request *req, const char *name, size_t nlen, cel_str *out);

#endif
