#include "http.h"

#include <stdio.h>

#define IN(c, lo, hi) ((c) >= (lo) && (c) <= (hi))
#define LOWER(c) IN(c, 'a', 'z')
#define ALNUM(c) (LOWER(c) || IN(c, 'A', 'Z') || IN(c, '0', '9'))
#define PUNCT_TCHAR(c)                                                                             \
    ((c) == '!' || (c) == '#' || (c) == '$' || (c) == '%' || (c) == '&' || (c) == '\'' ||          \
     (c) == '*' || (c) == '+' || (c) == '-' || (c) == '.' || (c) == '^' || (c) == '_' ||           \
     (c) == '`' || (c) == '|' || (c) == '~')
#define PUNCT_AUTH(c)                                                                              \
    ((c) == '-' || (c) == '.' || (c) == '_' || (c) == '~' || (c) == '!' || (c) == '$' ||           \
     (c) == '&' || (c) == '\'' || (c) == '(' || (c) == ')' || (c) == '*' || (c) == '+' ||          \
     (c) == ',' || (c) == ';' || (c) == '=' || (c) == ':' || (c) == '@' || (c) == '[' ||           \
     (c) == ']' || (c) == '%')
#define VISIBLE(c) (IN(c, 0x21, 0x7e) || IN(c, 0x80, 0xff))

#define CLASSES(c)                                                                                 \
    ((LOWER(c) || IN(c, '0', '9') || PUNCT_TCHAR(c) ? CEL_HTTP_NAME : 0) |                         \
     (ALNUM(c) || PUNCT_TCHAR(c) ? CEL_HTTP_TCHAR : 0) |                                           \
     (VISIBLE(c) || (c) == ' ' || (c) == '\t' ? CEL_HTTP_VALUE : 0) |                              \
     (VISIBLE(c) ? CEL_HTTP_PATH : 0) | (ALNUM(c) || PUNCT_AUTH(c) ? CEL_HTTP_AUTH : 0) |          \
     (ALNUM(c) || (c) == '+' || (c) == '-' || (c) == '.' ? CEL_HTTP_SCHEME : 0) |                  \
     (ALNUM(c) ? CEL_HTTP_ALNUM : 0))
#define C4(c) CLASSES(c), CLASSES((c) + 1), CLASSES((c) + 2), CLASSES((c) + 3)
#define C16(c) C4(c), C4((c) + 4), C4((c) + 8), C4((c) + 12)
#define C64(c) C16(c), C16((c) + 16), C16((c) + 32), C16((c) + 48)

/* Worked out by the compiler from the definitions above: no locale (isalnum
 * would follow it), no startup code, read-only. */
const unsigned char cel_http_chars[256] = {C64(0), C64(64), C64(128), C64(192)};

/* S (N octets, any case) equals LOW (lowercase). */
static int ieq(const char *s, const char *low, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'A' && c <= 'Z' ? c + 32 : c) != (unsigned char)low[i])
            return 0;
    }
    return 1;
}

int cel_http_conn_specific(const char *name, size_t n)
{
    switch (n) {
    case 7:
        return ieq(name, "upgrade", 7);
    case 10:
        return ieq(name, "connection", 10) || ieq(name, "keep-alive", 10);
    case 16:
        return ieq(name, "proxy-connection", 16);
    case 17:
        return ieq(name, "transfer-encoding", 17);
    default:
        return 0;
    }
}

int cel_http_field_owner(const char *name, size_t n)
{
    if (cel_http_conn_specific(name, n) || (n == 14 && ieq(name, "content-length", 14)))
        return CEL_HTTP_FRAMING;
    if ((n == 6 && ieq(name, "server", 6)) || (n == 4 && ieq(name, "date", 4)) ||
        (n == 12 && ieq(name, "content-type", 12)))
        return CEL_HTTP_SERVER;
    return 0;
}

#define R(code, text)                                                                              \
    {                                                                                              \
        code, sizeof(text) - 1, text "\n"                                                          \
    }

static const struct {
    short status;
    unsigned char len;
    const char *text; /* the reason and a newline */
} reasons[] = {
    R(100, "Continue"),
    R(101, "Switching Protocols"),
    R(200, "OK"),
    R(201, "Created"),
    R(202, "Accepted"),
    R(203, "Non-Authoritative Information"),
    R(204, "No Content"),
    R(206, "Partial Content"),
    R(301, "Moved Permanently"),
    R(302, "Found"),
    R(303, "See Other"),
    R(304, "Not Modified"),
    R(307, "Temporary Redirect"),
    R(308, "Permanent Redirect"),
    R(400, "Bad Request"),
    R(401, "Unauthorized"),
    R(403, "Forbidden"),
    R(404, "Not Found"),
    R(405, "Method Not Allowed"),
    R(406, "Not Acceptable"),
    R(408, "Request Timeout"),
    R(409, "Conflict"),
    R(410, "Gone"),
    R(411, "Length Required"),
    R(412, "Precondition Failed"),
    R(413, "Content Too Large"),
    R(414, "URI Too Long"),
    R(415, "Unsupported Media Type"),
    R(416, "Range Not Satisfiable"),
    R(417, "Expectation Failed"),
    R(421, "Misdirected Request"),
    R(422, "Unprocessable Content"),
    R(426, "Upgrade Required"),
    R(428, "Precondition Required"),
    R(429, "Too Many Requests"),
    R(431, "Request Header Fields Too Large"),
    R(500, "Internal Server Error"),
    R(501, "Not Implemented"),
    R(502, "Bad Gateway"),
    R(503, "Service Unavailable"),
    R(504, "Gateway Timeout"),
    R(505, "HTTP Version Not Supported"),
};

cel_str cel_http_reason(int status)
{
    for (size_t i = 0; i < CEL_ARRAY_LEN(reasons); i++)
        if (reasons[i].status == status)
            return (cel_str){reasons[i].text, reasons[i].len};
    return (cel_str){"", 0};
}

size_t cel_http_date(char *buf, time_t t)
{
    /* names by hand, because strftime's %a and %b follow the locale */
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    if (!gmtime_r(&t, &tm))
        memset(&tm, 0, sizeof(tm));
    snprintf(buf, CEL_HTTP_DATE_LEN + 1, "%.3s, %02u %.3s %04u %02u:%02u:%02u GMT",
             days[(unsigned)tm.tm_wday % 7], (unsigned)tm.tm_mday % 100,
             months[(unsigned)tm.tm_mon % 12], (unsigned)(tm.tm_year + 1900) % 10000,
             (unsigned)tm.tm_hour % 100, (unsigned)tm.tm_min % 100, (unsigned)tm.tm_sec % 100);
    return CEL_HTTP_DATE_LEN;
}
