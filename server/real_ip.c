#include "real_ip.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "proxy_proto.h"

/* Parses T[0..N) (spaces around it allowed) as an address. 1 with FAMILY and
 * ADDR, 0 when it is none. */
static int parse_addr(const char *t, size_t n, int *family, uint8_t *addr)
{
    while (n && (*t == ' ' || *t == '\t'))
        t++, n--;
    while (n && (t[n - 1] == ' ' || t[n - 1] == '\t'))
        n--;
    char s[INET6_ADDRSTRLEN];
    if (n == 0 || n >= sizeof(s))
        return 0;
    memcpy(s, t, n);
    s[n] = 0;
    if (inet_pton(AF_INET, s, addr) == 1) {
        *family = AF_INET;
        return 1;
    }
    if (inet_pton(AF_INET6, s, addr) == 1) {
        *family = AF_INET6;
        return 1;
    }
    return 0;
}

static int trusted(const cel_real_ip *r, int family, const uint8_t *addr)
{
    return cel_cidr_match(r->trusted, r->ntrusted, family, addr);
}

const char *cel_real_ip_of(const cel_real_ip *r, const cel_request *req, const char *peer,
                           char *buf, size_t len)
{
    int fam;
    uint8_t a[16];
    if (!r || !parse_addr(peer, strlen(peer), &fam, a) || !trusted(r, fam, a))
        return peer;
    int have = 0, best_fam = 0;
    uint8_t best[16];
    /* Instances from the last one back, each read right to left. */
    for (size_t i = req->nheaders; i-- > 0;) {
        const cel_header *h = &req->headers[i];
        if (h->name.n != r->header_len || memcmp(h->name.p, r->header, h->name.n) != 0)
            continue;
        size_t end = h->value.n;
        for (;;) {
            size_t start = end;
            while (start > 0 && h->value.p[start - 1] != ',')
                start--;
            if (!parse_addr(h->value.p + start, end - start, &fam, a))
                goto done;
            memcpy(best, a, sizeof(a));
            best_fam = fam;
            have = 1;
            if (!trusted(r, fam, a))
                goto done;
            if (start == 0)
                break;
            end = start - 1;
        }
    }
done:
    if (!have || !inet_ntop(best_fam, best, buf, (socklen_t)len))
        return peer;
    return buf;
}
