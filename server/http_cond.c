/* Conditional and range request helpers (RFC 9110); see http_cond.h. */
#include "http_cond.h"

#include <string.h>

#include "http.h"

/* An ETag's digits: the 32 characters whose HPACK Huffman code (RFC 7541,
 * Appendix B) is 7 bits long. Between its quotes (10 bits each) and with the
 * 'X' (8 bits) between its two numbers, a tag of up to 11 digits (mtime's 7
 * and a size under 1 MiB's 4) is no shorter Huffman-coded than as it is, so
 * HPACK encoders send it as it is: nghttp2, which never indexes an etag,
 * skips Huffman-coding it on every answer, and a client's If-None-Match that
 * carries it back needs no Huffman decoding. Hex digits (5 and 6 bits) made
 * both sides do that work each time. test_dir.py checks the lengths. */
static const char etag_digits[] = ":BCDEFGHIJKLMNOPQRSTUVWYjkqvwxyz";
_Static_assert(sizeof(etag_digits) == 32 + 1, "five bits a digit");

static size_t put_etag_number(char *p, uint64_t v)
{
    char tmp[13];
    size_t n = 0;
    do {
        tmp[n++] = etag_digits[v & 31];
        v >>= 5;
    } while (v);
    for (size_t i = 0; i < n; i++)
        p[i] = tmp[n - 1 - i];
    return n;
}

size_t cel_etag_format(char *buf, int64_t mtime, uint64_t size)
{
    size_t n = 0;
    buf[n++] = '"';
    n += put_etag_number(buf + n, (uint64_t)mtime);
    buf[n++] = 'X';
    n += put_etag_number(buf + n, size);
    buf[n++] = '"';
    return n;
}

static int ows(char c)
{
    return c == ' ' || c == '\t';
}

int cel_etag_list_match(cel_str value, cel_str etag, int weak)
{
    /* the usual revalidation: the one tag the client was given, as it was */
    if (value.n == etag.n && etag.n && etag.p[0] == '"' && cel_eq_small(value.p, etag.p, etag.n))
        return 1;
    const char *p = value.p, *end = value.p + value.n;
    for (;;) {
        while (p < end && (ows(*p) || *p == ','))
            p++;
        if (p == end)
            return 0;
        if (*p == '*')
            return 1;
        int is_weak = 0;
        if (end - p >= 2 && p[0] == 'W' && p[1] == '/') {
            is_weak = 1;
            p += 2;
        }
        const char *tag = p;
        if (p < end && *p == '"') {
            p++;
            while (p < end && *p != '"')
                p++;
            if (p < end)
                p++;
        } else {
            while (p < end && *p != ',' && !ows(*p))
                p++;
        }
        size_t n = (size_t)(p - tag);
        if ((weak || !is_weak) && n == etag.n && memcmp(tag, etag.p, n) == 0)
            return 1;
        while (p < end && *p != ',')
            p++;
    }
}

static int month_of(const char *m)
{
    static const char names[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    for (int i = 0; i < 12; i++)
        if (memcmp(names + 3 * i, m, 3) == 0)
            return i;
    return -1;
}

static int digits(const char *p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return 0;
}

/* Days from 1970-01-01 to Y-M-D (proleptic Gregorian; M 0-based). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    m += 1;
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int hms(const char *p, int *h, int *mi, int *s)
{
    if (p[2] != ':' || p[5] != ':')
        return -1;
    return digits(p, 2, h) || digits(p + 3, 2, mi) || digits(p + 6, 2, s) ? -1 : 0;
}

int cel_http_date_parse(cel_str v, time_t *t)
{
    const char *p = v.p;
    int day, mon, year, h, mi, s;
    if (v.n == 29 && p[3] == ',' && p[4] == ' ' && p[7] == ' ' && p[11] == ' ' && p[16] == ' ' &&
        p[25] == ' ' && memcmp(p + 26, "GMT", 3) == 0) {
        /* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
        if (digits(p + 5, 2, &day) || (mon = month_of(p + 8)) < 0 || digits(p + 12, 4, &year) ||
            hms(p + 17, &h, &mi, &s))
            return CEL_EINVAL;
    } else if (v.n == 24 && p[3] == ' ' && p[7] == ' ' && p[10] == ' ' && p[19] == ' ') {
        /* asctime: Sun Nov  6 08:49:37 1994 */
        char dd[2] = {p[8] == ' ' ? '0' : p[8], p[9]};
        if (digits(dd, 2, &day) || (mon = month_of(p + 4)) < 0 || hms(p + 11, &h, &mi, &s) ||
            digits(p + 20, 4, &year))
            return CEL_EINVAL;
    } else {
        /* RFC 850: Sunday, 06-Nov-94 08:49:37 GMT */
        const char *c = memchr(p, ',', v.n);
        if (!c || (size_t)(p + v.n - c) != 24)
            return CEL_EINVAL;
        c += 2;
        if (c[-1] != ' ' || c[2] != '-' || c[6] != '-' || c[9] != ' ' || c[18] != ' ' ||
            memcmp(c + 19, "GMT", 3) != 0 || digits(c, 2, &day) || (mon = month_of(c + 3)) < 0 ||
            digits(c + 7, 2, &year) || hms(c + 10, &h, &mi, &s))
            return CEL_EINVAL;
        year += year < 70 ? 2000 : 1900;
    }
    if (day < 1 || day > 31 || h > 23 || mi > 59 || s > 60)
        return CEL_EINVAL;
    *t = (time_t)(days_from_civil(year, mon, day) * 86400 + h * 3600 + mi * 60 + s);
    return 0;
}

/* Decimal digits at *P (at most 19, so no overflow); -1 when there are none. */
static int64_t number(const char **p, const char *end)
{
    const char *s = *p;
    int64_t v = 0;
    while (*p < end && **p >= '0' && **p <= '9') {
        if (*p - s == 18)
            return -1;
        v = v * 10 + (**p - '0');
        (*p)++;
    }
    return *p == s ? -1 : v;
}

int cel_range_parse(cel_str value, uint64_t size, cel_range *out, int max)
{
    const char *p = value.p, *end = value.p + value.n;
    if (value.n < 6 || memcmp(p, "bytes", 5) != 0)
        return CEL_ENOTFOUND;
    p += 5;
    while (p < end && ows(*p))
        p++;
    if (p == end || *p != '=')
        return CEL_ENOTFOUND;
    p++;
    int n = 0, specs = 0;
    for (;;) {
        while (p < end && (ows(*p) || *p == ','))
            p++;
        if (p == end)
            break;
        if (++specs > max)
            return CEL_ENOTFOUND;
        int64_t first = -1, last = -1;
        if (*p == '-') {
            p++;
            int64_t suffix = number(&p, end);
            if (suffix < 0)
                return CEL_ENOTFOUND;
            if (suffix > 0 && size > 0) {
                uint64_t len = (uint64_t)suffix < size ? (uint64_t)suffix : size;
                out[n++] = (cel_range){size - len, len};
            }
        } else {
            if ((first = number(&p, end)) < 0 || p == end || *p != '-')
                return CEL_ENOTFOUND;
            p++;
            if (p < end && *p >= '0' && *p <= '9') {
                if ((last = number(&p, end)) < 0 || last < first)
                    return CEL_ENOTFOUND;
            }
            if ((uint64_t)first < size) {
                uint64_t l = last < 0 || (uint64_t)last >= size ? size - 1 : (uint64_t)last;
                out[n++] = (cel_range){(uint64_t)first, l - (uint64_t)first + 1};
            }
        }
        while (p < end && ows(*p))
            p++;
        if (p < end && *p != ',')
            return CEL_ENOTFOUND;
    }
    return specs ? n : CEL_ENOTFOUND;
}

/* A q-value "q=0.5" from P (after the ';'); 1000 when there is none. */
static int qvalue(const char *p, const char *end)
{
    while (p < end && ows(*p))
        p++;
    if (end - p < 3 || (p[0] != 'q' && p[0] != 'Q') || p[1] != '=')
        return 1000;
    p += 2;
    int q = 0;
    if (*p == '1')
        return 1000;
    if (*p != '0')
        return 0;
    p++;
    if (p < end && *p == '.') {
        p++;
        for (int i = 0, scale = 100; i < 3 && p < end && *p >= '0' && *p <= '9'; i++, p++)
            q += (*p - '0') * scale, scale /= 10;
    }
    return q;
}

int cel_accept_q(cel_str value, const char *name, size_t nlen)
{
    const char *p = value.p, *end = value.p + value.n;
    int star = -1;
    while (p < end) {
        while (p < end && (ows(*p) || *p == ','))
            p++;
        const char *tok = p;
        while (p < end && *p != ',' && *p != ';' && !ows(*p))
            p++;
        size_t tn = (size_t)(p - tok);
        const char *params = p;
        while (p < end && *p != ',')
            p++;
        const char *semi = memchr(params, ';', (size_t)(p - params));
        int q = semi ? qvalue(semi + 1, p) : 1000;
        if (tn == nlen) {
            size_t i = 0;
            while (i < tn && cel_http_lower((unsigned char)tok[i]) == (unsigned char)name[i])
                i++;
            if (i == tn)
                return q;
        }
        if (tn == 1 && tok[0] == '*')
            star = q;
    }
    return star;
}
