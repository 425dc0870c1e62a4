/*
 * Middleware: what runs around a route's handler, for HTTP/2 and HTTP/1.1
 * alike. The `middleware:` list at the top level of the config runs for every
 * request, a route's own list after it. Each kind (headers, ...) embeds
 * cel_mw as its first member and fills in ops; config builds them (the kinds
 * table in conf_middleware.c) and phase.c calls them, never naming a kind.
 *
 * Middleware objects belong to the configuration generation: immutable once
 * loaded, shared by every worker. Per-request state goes into the exchange's
 * arena or the request; per-worker state is the kind's own business.
 */
#ifndef CEL_MIDDLEWARE_H
#define CEL_MIDDLEWARE_H

#include "common.h"
#include "exchange.h"
#include "handler.h"
#include "request.h"

/* One field of a response head. Name lowercase; what NAME and VALUE point
 * to lives until the response head is sent (the generation, static storage
 * or the exchange's arena). FLAGS is CEL_FIELD_KEPT, which says just that.
 * The layout is nghttp2_nv's, so the HTTP/2 front end hands the head phase's
 * list to nghttp2 as it is (static asserts in h2.c): no copy per field. */
typedef struct cel_field {
    const char *name;
    const char *value;
    size_t name_len, value_len;
    uint8_t flags;
} cel_field;
#define CEL_FIELD_KEPT 6u
/* Or'ed in: a value that will not repeat (a request id), not worth an entry
 * in HTTP/2's header compression table (HPACK "never indexed"). */
#define CEL_FIELD_UNIQUE 1u

static inline cel_field cel_field_of(cel_str name, cel_str value)
{
    return (cel_field){name.p, value.p, name.n, value.n, CEL_FIELD_KEPT};
}

/* The ordered fields of a response head as the response-head phase builds
 * them (phase.h): V has room for CAP, N are used. The first FIXED are the
 * phase's own (server, date, and content-type when the answer has one) as it
 * made them, the handler's follow; FIXED is 0 when another middleware's
 * head phase may have edited the list before. */
typedef struct cel_fields {
    cel_field *v;
    size_t n, cap;
    size_t fixed;
} cel_fields;

/* Appends NAME: VALUE. 0, or CEL_ETOOBIG when the list is full. */
int cel_fields_add(cel_fields *f, cel_str name, cel_str value);
/* The first field NAME gets VALUE and the others named so go; appended when
 * there is none. 0, or CEL_ETOOBIG. */
int cel_fields_set(cel_fields *f, cel_str name, cel_str value);
/* The same, the field's flags being CEL_FIELD_KEPT | EXTRA. */
int cel_fields_set_flags(cel_fields *f, cel_str name, cel_str value, uint8_t extra);
/* Every field NAME goes; the others keep their order. */
void cel_fields_remove(cel_fields *f, cel_str name);

typedef struct cel_mw cel_mw;

/* A middleware answered in the request phase (cel_mw_ops.request). */
#define CEL_MW_ANSWERED 1
/* A middleware holds the request (cel_mw_ops.request): see cel_mw_resume. */
#define CEL_MW_HELD 2

struct cel_route_match;
/* A held request: the middleware that returns CEL_MW_HELD has pointed
 * X->resume at one of these (in X's arena), set X->on_close (it has taken
 * the exchange over: the front end tells it when the client goes) and armed
 * a wake-up on the worker's loop. Dispatch fills in where it stopped; the
 * middleware later clears X->on_close and calls GO(X) once, on the worker,
 * unless on_close ran first. */
typedef struct cel_mw_resume {
    void (*go)(cel_exchange *x); /* cel_dispatch_resume (dispatch.h) */
    struct cel_route_match *match;
    int route_rc;
    size_t next; /* the chain's member after the one that holds */
} cel_mw_resume;

typedef struct cel_mw_ops {
    /* Request phase, before the handler (and before a 404 or 405 is decided):
     * 0 to go on, or CEL_MW_ANSWERED having filled RES (memory as for a
     * handler's answer): the handler is not called, the later middleware of
     * the chain neither, and the answer passes the response phases; or
     * CEL_MW_HELD (cel_mw_resume): the rest of the chain and the handler run
     * when the middleware lets the request go. NULL: the kind has no
     * request phase. */
    int (*request)(const cel_mw *m, cel_exchange *x, cel_response *res);
    /* Response-head phase: edits F, the fields of the answer with STATUS to X
     * (every answer: the handler's, the server's own, a middleware's). X's
     * req is never NULL (for a request refused before its head was read it
     * holds what could be read); new strings go into X's arena. NULL: none. */
    void (*head)(const cel_mw *m, cel_exchange *x, int status, cel_fields *f);
    void (*destroy)(cel_mw *m);
    /* At load, for each route whose chain has M: RES is the route's constant
     * answer (status, content type, a body in the generation every request
     * gets), for a kind that prepares work for it (compress encodes it once).
     * 0 or CEL_ENOMEM. NULL: none. */
    int (*prepare)(cel_mw *m, const cel_response *res);
    unsigned flags; /* CEL_MW_ONE */
    /* The CEL_M_* bits (router.h) of the methods whose requests REQUEST has
     * work for; 0: every method. A chain whose members all leave a method
     * out skips its request phase for that method (a CORS preflight is an
     * OPTIONS: the phase's loop and calls cost the other methods nothing). */
    unsigned request_methods;
    /* The request id M makes (`request_id`), or NULL for none. Such a
     * member's request phase runs when the chain's does but never makes the
     * chain run it: without, the id is made on first use (cel_exchange_id,
     * or the member's head phase). NULL: the kind makes none. */
    const cel_id_source *(*id)(const cel_mw *m);
} cel_mw_ops;

/* cel_mw_ops.flags: one per chain. A route's own member replaces the global
 * list's members of the same kind in the route's chain (compress: a route's
 * settings, or `compress: off`). */
#define CEL_MW_ONE 1u

struct cel_mw {
    const cel_mw_ops *ops;
    const char *kind; /* "headers", ...: for logs */
};

/* The body phase (phase.h): a kind that rewrites bodies sets x->filter to
 * one of these in its request phase. */
/* What a body filter passes its output to: the front end's own write and end. */
typedef struct cel_body_next {
    int (*write)(cel_exchange *x, const void *p, size_t n);
    int (*end)(cel_exchange *x);
} cel_body_next;

typedef struct cel_body_filter {
    /* Before the head of RES goes out. WHOLE: RES's body is the whole body;
     * else it follows through write and end. The filter may change RES (its
     * body, content type, headers: memory from X's arena or its own, living
     * until the exchange closes). 0, or a negative CEL_E*: then the answer
     * becomes a 500 and the filter is dropped. */
    int (*head)(cel_exchange *x, cel_response *res, int whole);
    /* A streamed chunk and the end; what the filter makes goes to NEXT.
     * Returns as the exchange's write and end do. */
    int (*write)(cel_exchange *x, const void *p, size_t n, const cel_body_next *next);
    int (*end)(cel_exchange *x, const cel_body_next *next);
    /* The front end is done with X while X->filter is still set (also when
     * the stream was cut): let go of what the filter holds. */
    void (*close)(cel_exchange *x);
} cel_body_filter;

/* cel_mw_chain.phases: which phases some member of the chain has. */
#define CEL_MW_REQUEST 1u
#define CEL_MW_HEAD 2u

/* The middleware a request runs, in order (the global list, then the
 * route's). OWNS: the chain destroys its members when freed (the lists as
 * configured); else it only points at members another chain owns (a route's
 * global-then-own list). */
typedef struct cel_mw_chain {
    /* First (cel_exchange_id reads it knowing no more): the id source of the
     * last member that has one (whose id the request keeps), or NULL. */
    const cel_id_source *id_src;
    size_t n;
    unsigned phases;
    /* The CEL_M_* bits of the methods no member's request phase has work
     * for (cel_mw_ops.request_methods): dispatch skips the phase for them. A
     * method with no bit (0) always runs it. */
    unsigned request_skip;
    /* The one member with a head phase (cel_phase_head calls it without
     * the loop), or NULL: none, or several. */
    const cel_mw *head1;
    int owns;
    cel_mw *v[];
} cel_mw_chain;

/* A chain with room for N members (n = 0). NULL when out of memory. */
cel_mw_chain *cel_mw_chain_new(size_t n, int owns);
/* Appends M (room was made by cel_mw_chain_new) and notes its phases. */
void cel_mw_chain_push(cel_mw_chain *c, cel_mw *m);
/* GLOBAL then OWN (either may be NULL) as one chain that owns nothing; NULL
 * in *OUT when both are empty, GLOBAL itself when OWN is. A member of OWN
 * flagged CEL_MW_ONE drops GLOBAL's members of its kind; members with no
 * phase (`compress: off`) are left out. 0 or CEL_ENOMEM. */
int cel_mw_chain_join(cel_mw_chain *global, const cel_mw_chain *own, cel_mw_chain **out);
void cel_mw_chain_free(cel_mw_chain *c);

/* The kinds, built by config (conf_middleware.c); NULL when out of memory.
 * Strings are copied. */

/* `headers`: in the head phase of every answer, removes the fields named
 * in REMOVE, then sets those of SET (cel_fields_set), then appends those of
 * ADD. Names lowercase. */
cel_mw *cel_mw_headers_new(const cel_kv *set, size_t nset, const cel_kv *add, size_t nadd,
                           const cel_str *remove, size_t nremove);

/* `request_id`: X->req->id is the request's id, 128 random bits
 * (cel_env_rand) as 32 lowercase hex digits, or with BASE64URL as 22
 * base64url characters; or with TRUST the value of the request's field
 * HEADER when it has one of 1 to 128 visible ASCII octets. The answer
 * carries it as HEADER (lowercase). Made in the request phase when the
 * chain's runs, else on first use (cel_exchange_id, or the head phase);
 * answers given before dispatch or by the request phase before the member
 * (X->id_as_is) get a fresh one in the head phase. */
cel_mw *cel_mw_request_id_new(cel_str header, int trust, int base64url);

/* `cors` (the Fetch standard's CORS protocol), as config read it. Origins,
 * methods and header names as they are to be compared: origins exact, methods
 * case-sensitive, header names lowercase. */
typedef struct cel_cors_conf {
    const cel_str *origins;
    size_t norigins;
    int any_origin; /* origins: "*" */
    const cel_str *methods;
    size_t nmethods;
    const cel_str *headers; /* request headers a preflight may name */
    size_t nheaders;
    int any_header; /* headers: "*": whatever the preflight names */
    const cel_str *expose;
    size_t nexpose;
    int credentials;
    long long max_age_s; /* -1: no access-control-max-age */
} cel_cors_conf;
/* Request phase: answers a preflight (OPTIONS with Origin and
 * Access-Control-Request-Method): 204 with the allowed methods and headers
 * (and max-age) when the origin, method and headers are allowed, else 403.
 * Head phase of every answer: access-control-allow-origin (and -credentials,
 * -expose-headers) when the request's Origin is allowed; vary: origin unless
 * any origin is allowed without credentials. */
cel_mw *cel_mw_cors_new(const cel_cors_conf *c);

/* `rate_limit` as config read it. */
typedef struct cel_rate_limit_conf {
    cel_str header;    /* key: header.NAME (lowercase); empty: the client's address */
    double rate;       /* requests per second, for the whole daemon */
    unsigned burst;    /* requests past the rate taken */
    unsigned delay;    /* of those, served at once (nodelay: burst); the rest held */
    int status;        /* the answer past the limit */
    size_t max_keys;   /* keys remembered, the whole daemon */
    unsigned nworkers; /* the rate, burst and keys are shared out among them */
} cel_rate_limit_conf;
/* Request phase: a token bucket (GCRA) per key, nginx limit_req with
 * burst and delay: per worker, rate / nworkers, burst / nworkers and
 * delay / nworkers, so the daemon as a whole holds the configured rate with
 * no lock. A request past the rate by at most delay goes on at once; by at
 * most burst it is held (CEL_MW_HELD: a timer on the worker's loop, in the
 * exchange's arena) until its turn at the rate; past the
 * limit it gets STATUS with retry-after and ratelimit-* fields. Each worker
 * remembers max_keys / nworkers keys, the least recently seen evicted first.
 * A request without the key's header is not limited. NULL: out of memory. */
cel_mw *cel_mw_rate_limit_new(const cel_rate_limit_conf *c);

/* `basic_auth`: a user of the N (at least 1) users (names and crypt(3) hashes as
 * htpasswd writes them, checked with crypt_checksalt by config) must be given
 * in an Authorization: Basic field, else 401 with www-authenticate naming
 * REALM. Hashes are checked with crypt_rn and compared in constant time;
 * each worker remembers verified credentials for CACHE_MS (a small table).
 * NWORKERS: one cache each. Everything is copied. */
cel_mw *cel_mw_basic_auth_new(cel_str realm, const cel_str *users, const cel_str *hashes, size_t n,
                              uint32_t cache_ms, unsigned nworkers);

struct cel_cidr;
/* `access`: the client's address (the real one behind real_ip or the PROXY
 * protocol) in ALLOW passes; else in DENY gets 403; else passes unless ALLOW
 * is given and DENY is not. *_ALL: `all` was listed (every address, also an
 * unknown one). The lists are copied. */
cel_mw *cel_mw_access_new(const struct cel_cidr *allow, size_t nallow, int allow_all,
                          const struct cel_cidr *deny, size_t ndeny, int deny_all);

#endif
