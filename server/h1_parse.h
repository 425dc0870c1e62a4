/*
 * HTTP/1.1 wire format (RFC 9112): request heads, chunked request bodies and
 * response heads. Pure functions over caller memory: nothing here allocates,
 * keeps global state or takes a lock, so a worker may call them on any buffer.
 *
 * Line endings: a line ends at LF, and one CR right before it is dropped. RFC
 * 9112 section 2.2 lets a recipient accept a bare LF, and netcat scripts and
 * some embedded clients send them. It opens no request-smuggling gap because a
 * CR anywhere else is refused and no field value may hold an LF, so a
 * conforming peer either splits the line where we do or rejects the message.
 * The same rule holds in chunked bodies.
 *
 * Strictness: we are an origin server, so anything RFC 9112 lets a server
 * either repair or reject is rejected (obs-fold, whitespace before a colon,
 * several spaces in the request line, conflicting Content-Length, Transfer-
 * Encoding in HTTP/1.0), because a repaired message is one a proxy in front
 * of us may have read differently. The request target may hold any visible
 * ASCII but '#' (clients do send a raw '|' or '{'); control bytes, spaces and
 * non-ASCII bytes in it are refused.
 */
#ifndef CEL_H1_PARSE_H
#define CEL_H1_PARSE_H

#include <time.h>

#include "common.h"
#include "request.h"

/*
 * Errors, each mapped to the status to answer with by cel_h1_error_status. After
 * any of them the connection cannot be trusted to be in step and must close
 * once the error response is written.
 */
#define CEL_EH1_REQLINE (-100)     /* 400 malformed request line or request target */
#define CEL_EH1_HEADER (-101)      /* 400 bad field name or value, or no colon */
#define CEL_EH1_OBSFOLD (-102)     /* 400 line folding, or whitespace before the first field */
#define CEL_EH1_COLONSPACE (-103)  /* 400 whitespace between field name and colon */
#define CEL_EH1_HOST (-104)        /* 400 Host missing in HTTP/1.1, repeated or malformed */
#define CEL_EH1_LENGTH (-105)      /* 400 Content-Length not a number, or values disagree */
#define CEL_EH1_FRAMING (-106)     /* 400 Content-Length with Transfer-Encoding, TE in 1.0, ... */
#define CEL_EH1_TARGET_LONG (-107) /* 414 request target longer than max_target */
#define CEL_EH1_LINE_LONG (-108)   /* 431 a field line longer than max_line */
#define CEL_EH1_HEAD_LONG (-109)   /* 431 head longer than max_head */
#define CEL_EH1_TOO_MANY (-110)    /* 431 more than max_headers fields */
#define CEL_EH1_CODING (-111)      /* 501 a transfer coding other than chunked */
#define CEL_EH1_METHOD (-112)      /* 501 method longer than CEL_H1_MAX_METHOD */
#define CEL_EH1_VERSION (-113)     /* 505 well-formed version other than 1.0 or 1.1 */
#define CEL_EH1_CHUNKED (-114)     /* 400 malformed chunked body or trailer section */

/*
 * The status for ERR: the CEL_EH1_* codes as listed, CEL_ETOOBIG 413 (the
 * caller's body limit), 0 for CEL_EAGAIN and for values >= 0, 500 otherwise.
 */
int cel_h1_error_status(int err);
/* A short English description of ERR for logs; never NULL. */
const char *cel_h1_strerror(int err);

#define CEL_H1_MAX_HEADERS 100 /* field lines a head can hold; max_headers is capped to it */
#define CEL_H1_MAX_METHOD 32   /* no method we could implement is longer */

/* Every field 0 means its default (cel_h1_default_limits). */
typedef struct cel_h1_limits {
    size_t max_head;    /* the whole head, leading empty lines and final empty line included */
    size_t max_line;    /* one field line, without its line ending */
    size_t max_target;  /* the request target */
    size_t max_headers; /* field lines */
} cel_h1_limits;

/* 64k head, 8k field line, 8k target, 100 fields. */
extern const cel_h1_limits cel_h1_default_limits;

/*
 * A parsed head. Every slice points into the buffer given to the parser (the
 * single exception: an absolute-form target with no path gets path "/" from
 * static memory), so it lives as long as those bytes stay put.
 */
typedef struct cel_h1_head {
    cel_str method;
    unsigned method_bit; /* cel_method_bit(method), 0 when unknown */
    cel_str target;      /* as sent */
    cel_str path;  /* up to '?', still percent-encoded; "*" for OPTIONS *; empty for CONNECT */
    cel_str query; /* after '?', without it; empty when none */
    cel_str host;  /* authority of an absolute-form target, else the Host value */
    int minor;     /* HTTP/1.<minor>: 0 or 1 */
    int64_t content_length; /* -1 when absent */
    unsigned chunked : 1;   /* Transfer-Encoding: chunked; the body is cel_h1_chunked */
    unsigned keep_alive : 1;
    unsigned expect_continue : 1; /* HTTP/1.1 with Expect: 100-continue */
    unsigned upgrade_h2c : 1;     /* HTTP/1.1, Upgrade lists h2c, Connection lists upgrade,
                                     and exactly one base64url HTTP2-Settings (no padding,
                                     no length of 4k + 1) */
    cel_str http2_settings;       /* the HTTP2-Settings value (base64url) when upgrade_h2c */
    size_t nheaders;
    cel_header headers[CEL_H1_MAX_HEADERS]; /* names as sent, not lowercased */
} cel_h1_head;

/*
 * Parses the request head at the start of BUF (LEN bytes read so far). Returns
 * the head's length (all of it, final empty line included; what follows is body
 * or the next request) when complete, CEL_EAGAIN when more bytes are needed, or
 * a CEL_EH1_* error. LIM may be NULL for the defaults. Up to two empty lines
 * before the request line are skipped (RFC 9112 section 2.2) and counted in the
 * length. Errors within lines are found in byte order, and those between
 * fields (count, Host, framing) once the head is complete, so feeding a head
 * in pieces gives the same error as giving it whole, often sooner. OUT is only
 * meaningful after a complete head.
 */
int cel_h1_parse_head(const char *buf, size_t len, cel_h1_head *out, const cel_h1_limits *lim);

/*
 * The same, for a caller that re-parses as bytes arrive: *SCANNED (0 before the
 * first call) remembers where the first incomplete line starts, every line
 * before it already checked, so a call looks only at the line still arriving
 * and what came after it; the completing call walks the head once more to fill
 * OUT. The front of BUF must be the same bytes each time, though BUF itself may
 * move (the hint is an offset). *SCANNED is reset to 0 on any result but
 * CEL_EAGAIN, ready for the next request; a hint that is not at a line start
 * within BUF is ignored.
 */
int cel_h1_parse_head_resume(const char *buf, size_t len, cel_h1_head *out,
                             const cel_h1_limits *lim, size_t *scanned);

/* The first field named LOWERNAME (ASCII case-insensitive), or NULL. */
const cel_header *cel_h1_find(const cel_h1_head *h, const char *lowername);

/*
 * Lowercases the field names of H in place, so that cel_request_header (which
 * compares exactly, as HTTP/2 names are lowercase) finds them. BUF is the
 * writable buffer H was parsed from.
 */
void cel_h1_lowercase_names(const cel_h1_head *h, char *buf);

/*
 * Chunked body decoder. It keeps its place between calls, so input may be cut
 * anywhere. Extensions are ignored (at most CEL_H1_MAX_CHUNK_EXT bytes of them
 * over the whole body, so they cannot cost unbounded work per body byte) and
 * trailer fields are checked for stray control bytes and dropped.
 */
#define CEL_H1_MAX_CHUNK_EXT 16384
#define CEL_H1_MAX_TRAILER 8192 /* default trailer section size */

typedef struct cel_h1_chunked {
    uint64_t remaining; /* data bytes still due in the current chunk: a caller may
                           refuse a too-large chunk as soon as its size line is read */
    uint64_t total;     /* decoded bytes so far: the caller enforces its body limit */
    size_t ext_bytes, trailer_bytes, max_trailer; /* budgets spent, and the trailer limit */
    int state;                                    /* private */
} cel_h1_chunked;

/* MAX_TRAILER bounds the trailer section (0: CEL_H1_MAX_TRAILER). */
void cel_h1_chunked_init(cel_h1_chunked *st, size_t max_trailer);

/*
 * Decodes LEN bytes of IN into OUT, which needs room for LEN bytes and may equal
 * IN (output never runs ahead of input). Sets *OUTLEN to the data bytes written
 * and *CONSUMED to the input bytes used. Returns 0 when the body ended (the
 * bytes after *CONSUMED belong to the next request; later calls return 0 and
 * use nothing), CEL_EAGAIN when all of IN was used and more is due, or
 * CEL_EH1_CHUNKED, also on every later call.
 */
int cel_h1_chunked_decode(cel_h1_chunked *st, const char *in, size_t len, char *out, size_t *outlen,
                          size_t *consumed);

/* Response heads. */
enum {
    CEL_H1_BODY_LENGTH,  /* content-length: content_length */
    CEL_H1_BODY_CHUNKED, /* transfer-encoding: chunked */
    CEL_H1_BODY_NONE,    /* no framing field: 304, or a body ended by closing */
};
enum { CEL_H1_CONN_DEFAULT, CEL_H1_CONN_CLOSE, CEL_H1_CONN_KEEP_ALIVE };

typedef struct cel_h1_resp {
    int status; /* 100..999 */
    const cel_header *headers;
    size_t nheaders;
    int body;                /* CEL_H1_BODY_*; ignored for 1xx and 204, which have none. Never
                                chunked to an HTTP/1.0 client: it gets a length, or NONE and close */
    uint64_t content_length; /* for CEL_H1_BODY_LENGTH */
    int connection;          /* CEL_H1_CONN_*: which connection field, if any */
} cel_h1_resp;

/* "HTTP/1.1 200 OK\r\n" into BUF. Bytes written, CEL_EINVAL, or CEL_ETOOBIG. */
int cel_h1_write_status_line(char *buf, size_t cap, int status);

/*
 * The whole response head, final empty line included: the status line,
 * R->headers in order (the head phase's list, phase.h: server and date come
 * from there), then the framing. The framing fields among R->headers
 * (cel_http_field_owner's CEL_HTTP_FRAMING) are dropped: framing and the
 * connection are this function's job, and a second, stale value would desynchronise the
 * connection. Bytes written; CEL_EINVAL for a bad status or a field with a
 * name that is not a token or a value holding CR, LF or NUL (response
 * splitting); CEL_ETOOBIG when CAP is too small.
 */
int cel_h1_write_head(char *buf, size_t cap, const cel_h1_resp *r);

/* "1a2b\r\n": the size line of an N-byte chunk. Bytes written or CEL_ETOOBIG. */
int cel_h1_write_chunk_size(char *buf, size_t cap, uint64_t n);

#define CEL_H1_LAST_CHUNK "0\r\n\r\n"
#define CEL_H1_CONTINUE "HTTP/1.1 100 Continue\r\n\r\n"
#define CEL_H1_SWITCH_H2C                                                                          \
    "HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n"

#endif
