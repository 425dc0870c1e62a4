/*
 * The request checks of RFC 9113 section 8 that nghttp2 would otherwise make
 * itself (its "HTTP messaging", which h2.c turns off: done here, they cost a
 * fraction and run in the same pass that reads each field).
 *
 * One cel_h2_fields per stream, zeroed and then cel_h2_fields_init. Every
 * decoded field goes through cel_h2_field; at the end of the request's header
 * block cel_h2_fields_request_end, at the end of the stream
 * cel_h2_fields_body_end. Any failure makes the request malformed (8.1.1): the
 * caller resets the stream with PROTOCOL_ERROR.
 */
#ifndef CEL_H2_FIELDS_H
#define CEL_H2_FIELDS_H

#include <stddef.h>
#include <stdint.h>

enum {
    /* pseudo-header fields seen (cel_h2_field returns one of these for them) */
    CEL_HF_METHOD = 1u << 0,
    CEL_HF_PATH = 1u << 1,
    CEL_HF_SCHEME = 1u << 2,
    CEL_HF_AUTHORITY = 1u << 3,
    /* other state */
    CEL_HF_HOST = 1u << 4,      /* a host field */
    CEL_HF_REGULAR = 1u << 5,   /* a regular field: no pseudo-header may follow */
    CEL_HF_CONNECT = 1u << 6,   /* :method CONNECT */
    CEL_HF_OPTIONS = 1u << 7,   /* :method OPTIONS */
    CEL_HF_HTTP = 1u << 8,      /* :scheme http or https */
    CEL_HF_SLASH = 1u << 9,     /* :path begins with '/' */
    CEL_HF_ASTERISK = 1u << 10, /* :path is "*" */
    CEL_HF_TRAILERS = 1u << 11, /* the fields now arriving are trailers */
    /* returned (never kept in seen) for valid regular fields named priority
     * and content-length */
    CEL_HF_PRIORITY = 1u << 12,
    CEL_HF_LENGTH = 1u << 13,
};

#define CEL_HF_PSEUDO (CEL_HF_METHOD | CEL_HF_PATH | CEL_HF_SCHEME | CEL_HF_AUTHORITY)

typedef struct cel_h2_fields {
    uint32_t seen;          /* CEL_HF_* */
    int64_t content_length; /* -1 when the request has none */
    uint64_t received;      /* DATA octets so far */
} cel_h2_fields;

static inline void cel_h2_fields_init(cel_h2_fields *f)
{
    f->seen = 0;
    f->content_length = -1;
    f->received = 0;
}

/* Checks one field (8.2, 8.2.1, 8.2.2, 8.3). Returns -1 when it makes the
 * request malformed, 0 for a valid regular field, CEL_HF_PRIORITY or
 * CEL_HF_LENGTH for a valid priority (RFC 9218) or content-length field, or the
 * CEL_HF_* bit of a valid :method, :path, :scheme or :authority. */
int cel_h2_field(cel_h2_fields *f, const uint8_t *name, size_t nlen, const uint8_t *value,
                 size_t vlen);

/* cel_h2_field for a NAME from HPACK's static table (RFC 7541 Appendix A),
 * whose octets are known to be valid: only what the name means and the value
 * are checked. */
int cel_h2_field_static_name(cel_h2_fields *f, const uint8_t *name, size_t nlen,
                             const uint8_t *value, size_t vlen);

/* cel_h2_field for a regular field whose name has no rule of its own (not
 * host, te, priority, content-length nor a connection field), known valid:
 * only the value is checked. */
int cel_h2_field_plain(cel_h2_fields *f, const uint8_t *value, size_t vlen);
/* The same, copying VALUE to D (VLEN octets) on the way; D's octets are
 * written even when the field is refused. */
int cel_h2_plain_copy(cel_h2_fields *f, char *d, const uint8_t *value, size_t vlen);

/* A :path field with value V[0..N): what cel_h2_field does for it. */
int cel_h2_path(cel_h2_fields *f, const uint8_t *v, size_t n);
/* The same, copying V to D (N octets) on the way; *QUERY is the offset of the
 * first '?', or N when there is none. D's octets are written even when the
 * field is refused. */
int cel_h2_path_copy(cel_h2_fields *f, char *d, const uint8_t *v, size_t n, size_t *query);

/* The same field again, for another request: KIND is what cel_h2_field
 * returned for it (not -1, not CEL_HF_LENGTH, whose value it keeps) and BITS
 * what that call added to f->seen, with CEL_HF_REGULAR for a regular field.
 * Only the checks that depend on the request's other fields are made again:
 * the octets passed before. */
static inline int cel_h2_field_again(cel_h2_fields *f, int kind, uint32_t bits)
{
    if (kind & CEL_HF_PSEUDO) {
        if (f->seen & (CEL_HF_TRAILERS | CEL_HF_REGULAR | (uint32_t)kind))
            return -1;
    } else if (bits & f->seen & CEL_HF_HOST) {
        return -1;
    }
    f->seen |= bits;
    return kind;
}

/* The request's header block ended (8.3.1, 8.5): 0 or -1. */
int cel_h2_fields_request_end(cel_h2_fields *f);

/* N more DATA octets: -1 once they exceed content-length (8.1.1). */
static inline int cel_h2_fields_data(cel_h2_fields *f, size_t n)
{
    f->received += n;
    return f->content_length >= 0 && f->received > (uint64_t)f->content_length ? -1 : 0;
}

/* The stream ended (END_STREAM): -1 if content-length disagrees (8.1.1). */
static inline int cel_h2_fields_body_end(const cel_h2_fields *f)
{
    return f->content_length >= 0 && f->received != (uint64_t)f->content_length ? -1 : 0;
}

/* RFC 9218 4: a priority field line (a Structured Fields dictionary, RFC 8941)
 * applied over *URGENCY (0-7) and *INCREMENTAL (0 or 1): its "u" and "i"
 * members set them, other members and parameters are passed over, values of
 * the wrong type or out of range are ignored. -1 (and nothing set) when the
 * line does not parse, which makes the client's signal void (RFC 8941 4.2). */
int cel_h2_priority(const uint8_t *v, size_t n, uint8_t *urgency, uint8_t *incremental);

#endif
