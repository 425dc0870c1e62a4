/*
 * HTTP helpers every front end and the config share: token characters
 * (RFC 9110 5.6.2), connection-specific field names (RFC 9113 8.2.2), reason
 * phrases, the IMF-fixdate of a Date field, and decimal numbers. Nothing here
 * depends on the locale. The character checks and the decimal writer are on
 * the request path, so they are inline.
 */
#ifndef CEL_HTTP_H
#define CEL_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "common.h"

/* Classes of cel_http_chars, one entry per octet (RFC 9110 5.6.2 and 5.5,
 * RFC 3986 3.1 and 3.2). */
#define CEL_HTTP_NAME 0x01u   /* lowercase tchar: an HTTP/2 field name octet */
#define CEL_HTTP_TCHAR 0x02u  /* tchar: ALPHA / DIGIT / "!#$%&'*+-.^_`|~" */
#define CEL_HTTP_VALUE 0x04u  /* field-vchar, SP or HTAB */
#define CEL_HTTP_PATH 0x08u   /* VCHAR or obs-text */
#define CEL_HTTP_AUTH 0x10u   /* unreserved, sub-delims, pct-encoded, ':', '@', '[' and ']' */
#define CEL_HTTP_SCHEME 0x20u /* ALPHA, DIGIT, '+', '-' or '.' */
#define CEL_HTTP_ALNUM 0x40u  /* ALPHA or DIGIT (ASCII, whatever the locale) */

extern const unsigned char cel_http_chars[256];

static inline int cel_http_is_alnum(unsigned char c)
{
    return (cel_http_chars[c] & CEL_HTTP_ALNUM) != 0;
}

static inline int cel_http_is_tchar(unsigned char c)
{
    return (cel_http_chars[c] & CEL_HTTP_TCHAR) != 0;
}

/* C with A-Z made lowercase; every other octet as it is (tolower follows the
 * locale, and a module may set one). */
static inline unsigned char cel_http_lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + ('a' - 'A')) : c;
}

/* 1 when the N octets at S are a token (1*tchar), else 0 (also when N is 0). */
static inline int cel_http_is_token(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!cel_http_is_tchar((unsigned char)s[i]))
            return 0;
    return 1;
}

/* 1 when NAME (N octets, any case) is one of the connection-specific fields
 * HTTP/2 forbids (RFC 9113 8.2.2: connection, keep-alive, proxy-connection,
 * transfer-encoding, upgrade), else 0. The one list of them: the config, the
 * module API and both front ends ask here. */
int cel_http_conn_specific(const char *name, size_t n);

/* Who writes response field NAME (N octets, any case): the one list the
 * config, the module API, middleware and both front ends ask.
 * CEL_HTTP_FRAMING: the front ends alone (content-length and the
 * connection-specific fields above: the protocol's framing);
 * CEL_HTTP_SERVER: the response-head phase (phase.h: server, date,
 * content-type), which handlers may not set but middleware may change;
 * 0: anyone. */
#define CEL_HTTP_FRAMING 1
#define CEL_HTTP_SERVER 2
int cel_http_field_owner(const char *name, size_t n);

/* The reason phrase of STATUS: P is "Not Found" (N octets), and P[N] is '\n',
 * so P with N + 1 octets is the text of the server's error bodies. {"", 0}
 * for a status without one. Static storage. */
cel_str cel_http_reason(int status);

/* The IMF-fixdate of T (RFC 9110 5.6.7), "Sun, 06 Nov 1994 08:49:37 GMT",
 * into BUF (CEL_HTTP_DATE_LEN + 1 octets, NUL-terminated); returns
 * CEL_HTTP_DATE_LEN. Years past 9999 and times gmtime cannot convert are
 * written as their digits modulo the field's width, never past BUF. */
#define CEL_HTTP_DATE_LEN 29
size_t cel_http_date(char *buf, time_t t);

/* Decimal digits of V into BUF (at least 20 bytes, not NUL-terminated);
 * returns the length. The hot path's replacement for snprintf, which costs
 * ~700 instructions a call: the digits are counted, then written from the
 * last. */
static inline size_t cel_http_utoa(char *buf, uint64_t v)
{
    /* most bodies' lengths: one or two digits straight from a table */
    static const char two[] = "00010203040506070809101112131415161718192021222324252627282930313233"
                              "34353637383940414243444546474849505152535455565758596061626364656667"
                              "6869707172737475767778798081828384858687888990919293949596979899";
    if (v < 10) {
        buf[0] = (char)('0' + v);
        return 1;
    }
    if (v < 100) {
        memcpy(buf, two + 2 * v, 2);
        return 2;
    }
    size_t n = 1;
    for (uint64_t p = 10; n < 20 && v >= p; p *= 10)
        n++;
    for (size_t i = n; i-- > 0; v /= 10)
        buf[i] = (char)('0' + v % 10);
    return n;
}

#endif
