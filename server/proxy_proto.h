/*
 * The PROXY protocol (versions 1 and 2, as HAProxy specifies them): the header
 * a load balancer puts before a connection's first byte to say which client it
 * carries. Also the CIDR lists (`trusted`) that say from whom such a header is
 * believed. Pure functions: no I/O, no allocation.
 */
#ifndef CEL_PROXY_PROTO_H
#define CEL_PROXY_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* The longest header accepted: a version 1 line is at most 107 bytes; a
 * version 2 header is 16 bytes plus its address block (216 for AF_UNIX) plus
 * TLVs, which we skip but bound. */
#define CEL_PROXY_MAX 512

typedef struct cel_proxy_info {
    int has_addr;     /* 0: LOCAL (a balancer's own health check) or
                         UNKNOWN/UNSPEC: keep the socket's address */
    int family;       /* AF_INET or AF_INET6 when has_addr */
    uint8_t addr[16]; /* the client's address, network order */
    uint16_t port;    /* the client's port, host order */
} cel_proxy_info;

/*
 * Parses the header at the start of P[0..N). Returns its length in bytes
 * (> 0) and fills OUT when it is complete; 0 when the N bytes are a valid
 * beginning but too few (every one of them belongs to the header); CEL_EINVAL
 * when they are no PROXY header, a malformed one, or one longer than
 * CEL_PROXY_MAX.
 */
int cel_proxy_parse(const uint8_t *p, size_t n, cel_proxy_info *out);

/* Writes INFO's address as text ("192.0.2.1", "2001:db8::1") into BUF. */
void cel_proxy_addr_text(const cel_proxy_info *info, char *buf, size_t len);

typedef struct cel_cidr {
    int family; /* AF_INET, AF_INET6 */
    uint8_t addr[16];
    unsigned bits;
} cel_cidr;

/* Parses "10.0.0.0/8", "::1/128" or a bare address (a host). 0 or CEL_EINVAL;
 * host bits set below the prefix are refused (a typo, most likely). */
int cel_cidr_parse(const char *s, cel_cidr *out);

/* Whether the address FAMILY/ADDR (4 or 16 bytes, network order) is in one
 * of the N ranges. An IPv4-mapped IPv6 address matches IPv4 ranges. */
int cel_cidr_match(const cel_cidr *list, size_t n, int family, const uint8_t *addr);

/* The same for a socket address (AF_INET, AF_INET6; anything else: 0). */
int cel_cidr_match_sa(const cel_cidr *list, size_t n, const struct sockaddr *sa);

#endif
