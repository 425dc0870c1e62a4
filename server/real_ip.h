/*
 * `real_ip`: the client address from a header a trusted balancer adds
 * (X-Forwarded-For), for balancers that do not speak the PROXY protocol. The
 * rule is the right-most untrusted one: the header's addresses are read from
 * the right, skipping those in `trusted` (our balancers and proxies); the first
 * that is not trusted is the client. A client can write anything at the left of
 * the header, never past the hop that appended its real address.
 */
#ifndef CEL_REAL_IP_H
#define CEL_REAL_IP_H

#include <stddef.h>

#include "request.h"

struct cel_cidr;

typedef struct cel_real_ip {
    char *header; /* lowercase */
    size_t header_len;
    struct cel_cidr *trusted;
    size_t ntrusted;
} cel_real_ip;

/*
 * The client address of REQ, which came on a connection from PEER (text, as
 * the access log shows it). PEER itself unless PEER is trusted and the header
 * (every instance of it, in order, as one list) names an address: then the
 * right-most untrusted address in it, or the left-most one when all are
 * trusted. An element that is not an address ends the walk at the last good
 * one. The text goes to BUF (LEN >= 46); returns BUF or PEER. No allocation.
 */
const char *cel_real_ip_of(const cel_real_ip *r, const cel_request *req, const char *peer,
                           char *buf, size_t len);

#endif
