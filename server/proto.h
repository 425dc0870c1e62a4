/*
 * What a connection needs from the protocol spoken on it (HTTP/2 or HTTP/1.1):
 * bytes in, frames out into the connection's output queue, and enough state to
 * pick the right timeout and know when the conversation is over. Each protocol
 * front end (h2*.c, h1.c) provides one of these tables.
 */
#ifndef CEL_PROTO_H
#define CEL_PROTO_H

#include <stddef.h>
#include <stdint.h>

typedef struct cel_proto {
    const char *name; /* "h2", "http/1.1" */
    /* Bytes from the client. 0, or CEL_EIO: the connection must end after what
     * is queued (an error answer, a GOAWAY) is written. */
    int (*recv)(void *s, const uint8_t *p, size_t n);
    /* Moves output that is ready into the output queue. 0 or CEL_EIO. */
    int (*send)(void *s);
    int (*want_read)(const void *s);  /* 0 once the conversation is over */
    int (*can_read)(const void *s);   /* optional: 0 to pause reading for now */
    int (*want_write)(const void *s); /* output ready that send has not taken */
    size_t (*streams)(const void *s); /* requests in flight */
    int (*served)(const void *s);     /* whether any request has completed */
    int (*in_headers)(const void *s); /* a request head has begun and not ended */
    void (*goaway)(void *s);          /* graceful end: finish what is in flight */
    /* Streams in flight that wait on the server alone (a handler that has not
     * answered, a streamed body with nothing to send yet): the client is not
     * idle while every stream is one of these. */
    size_t (*held)(const void *s);
    /* A timeout or the end of shutdown_timeout closes the connection: queue
     * what the protocol says before a close (HTTP/2: RST_STREAM CANCEL for
     * each stream in flight and a final GOAWAY; HTTP/1.1: 408 to a request
     * not yet whole). send then moves it to the output queue. */
    void (*expire)(void *s);
    /* Grows whenever request or response bytes move: idleness is measured by
     * it, so control frames (PING) do not keep a connection alive. */
    uint64_t (*progress)(const void *s);
    void (*free)(void *s);
} cel_proto;

#endif
