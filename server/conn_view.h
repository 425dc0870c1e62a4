/*
 * What the handler of a request may learn about the connection it came on,
 * without depending on the connection itself: conn.c fills one per
 * connection, the front ends (h1.c, h2*.c) point each exchange at it. It lives
 * as long as the connection, so as long as any exchange on it.
 */
#ifndef CEL_CONN_VIEW_H
#define CEL_CONN_VIEW_H

#include <stdint.h>

typedef struct cel_conn_view {
    const char *peer; /* the client's address as text ("-": unknown), as the access log shows it */
    int fd;           /* the socket (-1: none) */
    void *ssl;        /* an SSL * on a TLS connection, else NULL */
    uint8_t proxied;  /* peer is a trusted PROXY header's source, not the socket's */
    uint16_t proxy_port; /* that source's port */
    unsigned listen_id;  /* the listener's cel_listen_id (0: unknown), for its own routes */
    /* PEER in binary, network order, when peer_family is AF_INET or AF_INET6
     * (0: only the text is known; parse PEER) */
    uint8_t peer_family;
    uint8_t peer_addr[16];
} cel_conn_view;

#endif
