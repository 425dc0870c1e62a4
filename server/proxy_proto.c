#include "proxy_proto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

static const uint8_t v2sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                  0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
#define V1_MAX 107

/* "PROXY TCP4 SRC DST SPORT DPORT" (the CRLF already cut off). */
static int parse_v1(char *line, cel_proxy_info *out)
{
    char *save = NULL;
    char *w[7];
    int nw = 0;
    for (char *t = strtok_r(line, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
        if (nw == 7)
            return CEL_EINVAL;
        w[nw++] = t;
    }
    if (nw < 2 || strcmp(w[0], "PROXY") != 0)
        return CEL_EINVAL;
    memset(out, 0, sizeof(*out));
    if (strcmp(w[1], "UNKNOWN") == 0)
        return 0; /* the rest of the line, if any, is to be ignored */
    if (nw != 6)
        return CEL_EINVAL;
    int fam;
    if (strcmp(w[1], "TCP4") == 0)
        fam = AF_INET;
    else if (strcmp(w[1], "TCP6") == 0)
        fam = AF_INET6;
    else
        return CEL_EINVAL;
    uint8_t dst[16];
    if (inet_pton(fam, w[2], out->addr) != 1 || inet_pton(fam, w[3], dst) != 1)
        return CEL_EINVAL;
    for (int i = 4; i < 6; i++) {
        size_t len = strlen(w[i]);
        if (len == 0 || len > 5 || strspn(w[i], "0123456789") != len || (len > 1 && w[i][0] == '0'))
            return CEL_EINVAL;
        long v = strtol(w[i], NULL, 10);
        if (v > 65535)
            return CEL_EINVAL;
        if (i == 4)
            out->port = (uint16_t)v;
    }
    out->family = fam;
    out->has_addr = 1;
    return 0;
}

static int v1(const uint8_t *p, size_t n, cel_proxy_info *out)
{
    size_t lim = n < V1_MAX ? n : V1_MAX;
    for (size_t i = 0; i < lim; i++) {
        if (p[i] == '\n')
            return CEL_EINVAL; /* a bare LF */
        if (p[i] != '\r')
            continue;
        if (i + 1 == n)
            return 0;
        if (p[i + 1] != '\n')
            return CEL_EINVAL;
        char line[V1_MAX];
        memcpy(line, p, i);
        line[i] = 0;
        if (memchr(line, 0, i) || parse_v1(line, out))
            return CEL_EINVAL;
        return (int)(i + 2);
    }
    return n < V1_MAX ? 0 : CEL_EINVAL;
}

static int v2(const uint8_t *p, size_t n, cel_proxy_info *out)
{
    if (n < 16)
        return 0;
    if ((p[12] >> 4) != 2)
        return CEL_EINVAL;
    int cmd = p[12] & 0x0f;
    size_t len = (size_t)p[14] << 8 | p[15];
    if (16 + len > CEL_PROXY_MAX || cmd > 1)
        return CEL_EINVAL;
    if (n < 16 + len)
        return 0;
    memset(out, 0, sizeof(*out));
    const uint8_t *a = p + 16;
    int fam = p[13] >> 4, proto = p[13] & 0x0f;
    if (cmd == 0)
        return (int)(16 + len); /* LOCAL: the address block is to be ignored */
    if (fam > 3 || proto > 2)
        return CEL_EINVAL;
    if (fam == 0 || proto == 0 || fam == 3)
        return (int)(16 + len); /* UNSPEC, AF_UNIX: the socket's address stands */
    if (fam == 1) {
        if (len < 12)
            return CEL_EINVAL;
        memcpy(out->addr, a, 4);
        out->port = (uint16_t)(a[8] << 8 | a[9]);
        out->family = AF_INET;
    } else {
        if (len < 36)
            return CEL_EINVAL;
        memcpy(out->addr, a, 16);
        out->port = (uint16_t)(a[32] << 8 | a[33]);
        out->family = AF_INET6;
    }
    out->has_addr = 1;
    return (int)(16 + len);
}

int cel_proxy_parse(const uint8_t *p, size_t n, cel_proxy_info *out)
{
    static const char v1sig[] = "PROXY ";
    if (n == 0)
        return 0;
    size_t k = n < sizeof(v2sig) ? n : sizeof(v2sig);
    if (memcmp(p, v2sig, k) == 0)
        return v2(p, n, out);
    k = n < sizeof(v1sig) - 1 ? n : sizeof(v1sig) - 1;
    if (memcmp(p, v1sig, k) != 0)
        return CEL_EINVAL;
    return k < sizeof(v1sig) - 1 ? 0 : v1(p, n, out);
}

void cel_proxy_addr_text(const cel_proxy_info *info, char *buf, size_t len)
{
    if (!info->has_addr || !inet_ntop(info->family, info->addr, buf, (socklen_t)len))
        snprintf(buf, len, "-");
}

int cel_cidr_parse(const char *s, cel_cidr *out)
{
    char host[64];
    const char *slash = strchr(s, '/');
    size_t hl = slash ? (size_t)(slash - s) : strlen(s);
    if (hl == 0 || hl >= sizeof(host))
        return CEL_EINVAL;
    memcpy(host, s, hl);
    host[hl] = 0;
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, host, out->addr) == 1)
        out->family = AF_INET;
    else if (inet_pton(AF_INET6, host, out->addr) == 1)
        out->family = AF_INET6;
    else
        return CEL_EINVAL;
    unsigned max = out->family == AF_INET ? 32 : 128;
    out->bits = max;
    if (slash) {
        const char *b = slash + 1;
        size_t bl = strlen(b);
        if (bl == 0 || bl > 3 || strspn(b, "0123456789") != bl || (bl > 1 && b[0] == '0'))
            return CEL_EINVAL;
        out->bits = (unsigned)strtoul(b, NULL, 10);
        if (out->bits > max)
            return CEL_EINVAL;
    }
    for (unsigned i = out->bits; i < max; i++)
        if (out->addr[i / 8] & (0x80 >> (i % 8)))
            return CEL_EINVAL;
    return 0;
}

static int in_range(const cel_cidr *c, const uint8_t *addr)
{
    unsigned full = c->bits / 8, rest = c->bits % 8;
    if (memcmp(c->addr, addr, full) != 0)
        return 0;
    if (!rest)
        return 1;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (c->addr[full] & mask) == (addr[full] & mask);
}

int cel_cidr_match(const cel_cidr *list, size_t n, int family, const uint8_t *addr)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    const uint8_t *v4 = family == AF_INET ? addr : NULL;
    if (family == AF_INET6 && memcmp(addr, mapped, 12) == 0)
        v4 = addr + 12;
    for (size_t i = 0; i < n; i++) {
        if (list[i].family == AF_INET6 && family == AF_INET6 && in_range(&list[i], addr))
            return 1;
        if (list[i].family == AF_INET && v4 && in_range(&list[i], v4))
            return 1;
    }
    return 0;
}

int cel_cidr_match_sa(const cel_cidr *list, size_t n, const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return cel_cidr_match(list, n, AF_INET,
                              (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr);
    if (sa->sa_family == AF_INET6)
        return cel_cidr_match(list, n, AF_INET6,
                              (const uint8_t *)&((const struct sockaddr_in6 *)sa)->sin6_addr);
    return 0;
}
