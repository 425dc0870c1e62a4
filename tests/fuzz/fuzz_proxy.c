/*
 * fuzz_proxy: cel_proxy_parse (PROXY protocol v1/v2) and the CIDR lists.
 *
 * The input is raw bytes as a balancer's connection would start. Checked:
 *   - the whole input gives a length L (> 0), "need more" (0) or CEL_EINVAL;
 *     L is at most the input and CEL_PROXY_MAX;
 *   - every prefix shorter than L says "need more" (the contract conn.c's
 *     byte-exact read relies on: an incomplete header's bytes all belong to
 *     it), and every longer prefix gives the same L and the same address;
 *   - "need more" on the whole input happens only below CEL_PROXY_MAX bytes;
 *   - an address that comes out is IPv4 or IPv6 and prints as text;
 *   - the input's first line as a CIDR: when it parses, its own address
 *     matches it.
 */
#include <arpa/inet.h>
#include <netinet/in.h>

#include "common.h"
#include "fuzz.h"
#include "proxy_proto.h"

static void same(const cel_proxy_info *a, const cel_proxy_info *b, size_t k)
{
    FUZZ_CHECK(a->has_addr == b->has_addr && a->family == b->family && a->port == b->port &&
                   memcmp(a->addr, b->addr, sizeof(a->addr)) == 0,
               "prefix %zu parses to another address", k);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cel_proxy_info whole;
    int r = cel_proxy_parse(data, size, &whole);
    FUZZ_CHECK(r == 0 || r == CEL_EINVAL || (r > 0 && (size_t)r <= size && r <= CEL_PROXY_MAX),
               "length %d for %zu bytes", r, size);
    FUZZ_CHECK(r != 0 || size < CEL_PROXY_MAX, "need more after %zu bytes", size);
    if (r > 0) {
        for (size_t k = 0; k < (size_t)r; k++) {
            cel_proxy_info info;
            FUZZ_CHECK(cel_proxy_parse(data, k, &info) == 0,
                       "prefix %zu of a %d-byte header is not \"need more\"", k, r);
        }
        for (size_t k = (size_t)r; k <= size; k++) {
            cel_proxy_info info;
            FUZZ_CHECK(cel_proxy_parse(data, k, &info) == r, "prefix %zu changes the length", k);
            same(&whole, &info, k);
        }
        if (whole.has_addr) {
            FUZZ_CHECK(whole.family == AF_INET || whole.family == AF_INET6, "family %d",
                       whole.family);
            char text[64];
            cel_proxy_addr_text(&whole, text, sizeof(text));
            FUZZ_CHECK(strcmp(text, "-") != 0, "address does not print");
        }
    }
    char line[80];
    size_t n = 0;
    while (n < size && n < sizeof(line) - 1 && data[n] != '\n' && data[n])
        n++;
    memcpy(line, data, n);
    line[n] = 0;
    cel_cidr c;
    if (cel_cidr_parse(line, &c) == 0) {
        FUZZ_CHECK(c.family == AF_INET || c.family == AF_INET6, "cidr family");
        FUZZ_CHECK(cel_cidr_match(&c, 1, c.family, c.addr), "\"%s\" does not match itself", line);
    }
    return 0;
}
