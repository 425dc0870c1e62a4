/*
 * What a file answer needs of a request's header values (RFC 9110): entity
 * tags and their lists (8.8.3, 13.1.1-2), HTTP dates (5.6.7), byte ranges
 * (14.1-14.2) and Accept-Encoding's q-values (12.5.3). Pure functions on
 * byte slices, used by the dir handler and its tests; nothing allocates.
 */
#ifndef CEL_HTTP_COND_H
#define CEL_HTTP_COND_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "common.h"

/* A strong ETag from a file's mtime and size, into BUF (at least
 * CEL_ETAG_MAX bytes): both numbers in base 32, most significant digit
 * first, with digits chosen so that HPACK sends the tag as it is rather
 * than Huffman-coded (see http_cond.c), an 'X' between them, in quotes.
 * Returns the length. */
#define CEL_ETAG_MAX 40
size_t cel_etag_format(char *buf, int64_t mtime, uint64_t size);

/* Does the If-Match / If-None-Match list VALUE hold "*" or ETAG (quoted)?
 * WEAK: W/"x" matches "x" (If-None-Match's weak comparison); else a weak
 * tag never matches (If-Match's strong comparison). */
int cel_etag_list_match(cel_str value, cel_str etag, int weak);

/* An IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), or the obsolete RFC 850
 * and asctime forms, into *T. 0, or CEL_EINVAL (then the header is ignored,
 * as RFC 9110 13.1.3 says). */
int cel_http_date_parse(cel_str value, time_t *t);

typedef struct cel_range {
    uint64_t off, len;
} cel_range;

/*
 * The Range value VALUE against a representation of SIZE bytes. Returns the
 * number of satisfiable ranges written to OUT (at most MAX, in the order
 * asked), 0 when none is satisfiable (416), or CEL_ENOTFOUND when the value
 * is not a bytes range set or asks for more than MAX ranges: then the whole
 * representation is sent (a server may ignore Range).
 */
int cel_range_parse(cel_str value, uint64_t size, cel_range *out, int max);

/* The q-value (0..1000) Accept-Encoding VALUE gives to coding NAME ("br",
 * "gzip"): its own entry, else "*"'s, else -1 (not mentioned). */
int cel_accept_q(cel_str value, const char *name, size_t nlen);

#endif
