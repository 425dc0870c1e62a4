/*
 * A client connection: its socket, read/write/timer events, the serialized
 * output queue, and the protocol session. It lives its whole life on the worker
 * that accepted it; nothing here is touched by another thread.
 */
#ifndef CEL_CONN_H
#define CEL_CONN_H

#include <event2/event.h>
#include <event2/event_struct.h>

#include "config.h"
#include "conn_view.h"
#include "env.h"
#include "outq.h"
#include "proto.h"

typedef struct cel_conn cel_conn;

/* write_timeouts over which min_send_rate is averaged (see conn.c). */
#define CEL_ACK_WINDOWS 4

/* What the owner (a worker) provides to its connections. */
typedef struct cel_conn_host {
    struct event_base *base;
    cel_env *env;
    /* Called once a connection is closed, just before it is freed. */
    void (*on_close)(struct cel_conn_host *host, cel_conn *c);
    /* Called before a connection reads when a newer generation has been
     * published (cel_genref_behind): the owner takes it now, so a request
     * read after a reload has finished never meets the old configuration. */
    void (*follow)(struct cel_conn_host *host);
} cel_conn_host;

struct cel_conn {
    /* What every request reads or writes comes first, so that a connection
     * woken once a second (its state long out of the cache) misses on as
     * few lines as it can: these, the read event's and the output queue's. */
    cel_conn_host *host;
    const cel_proto *proto; /* NULL until the first bytes say which protocol */
    void *ps;               /* the protocol's session */
    void *ssl;              /* an SSL * on a TLS listener, else NULL */
    uint64_t progress;      /* the protocol's progress count at ACTIVE */
    struct timeval active;  /* loop time of the last progress */
    size_t trec_len;
    int fd;
    unsigned nsniff;
    uint8_t reading, writing, closing, lingering, tkind;
    uint8_t handshaking, ktls;
    uint8_t proxy_wait; /* a PROXY header must come first (a trusted balancer) */
    void *next_ps;      /* an HTTP/2 session an HTTP/1.1 upgrade switches to */
    cel_outq out;
    struct event rev, wev, tev, fev; /* read, write, timer, flush-soon */
    cel_conn *prev, *next;           /* the owner's list */
    cel_limits limits;
    struct timeval accepted; /* loop time of accept */
    uint64_t
        acked[CEL_ACK_WINDOWS]; /* TCP_INFO bytes_acked at the last write checks, oldest first */
    uint8_t nacked;             /* checks since output began to wait (at most CEL_ACK_WINDOWS) */
    char *trec;                 /* TLS: one record's worth of output SSL_write has not taken */
    uint8_t tls_peeked;         /* the first byte on a TLS port was looked at (plain HTTP?) */
    uint8_t proto_id;           /* CEL_PROTO_* of stats.h: what the connection counts as */
    uint8_t sniff[24];          /* first bytes, kept while they do not yet tell the protocol */
    char peer[48];              /* the client's address, as text */
    uint16_t nproxy;            /* bytes of it read so far, kept in proxy_buf */
    uint8_t *proxy_buf;
    cel_conn_view view; /* what handlers see of the connection (conn_view.h) */
};

struct cel_tls;
/* Takes over FD (non-blocking, accepted); TLS when TLS is not NULL. NULL (and
 * FD closed) on failure. */
cel_conn *cel_conn_new(cel_conn_host *host, int fd, struct cel_tls *tls);
/* Starts I/O. The owner links the connection into its list first: on_close may
 * run from here already. */
void cel_conn_start(cel_conn *c);
/* Closes now, dropping whatever is queued. */
void cel_conn_close(cel_conn *c);
/* Graceful end: GOAWAY, let streams in flight finish, then close. */
void cel_conn_shutdown(cel_conn *c);
/* The end of a graceful end (shutdown_timeout): streams in flight are reset
 * and a final GOAWAY (HTTP/2) is written as far as the socket takes it now,
 * then the connection is closed. Handlers hear on_close. */
void cel_conn_abort(cel_conn *c);

#endif
