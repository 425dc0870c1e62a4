/*
 * Route table: request paths compiled into a tree of path segments.
 *
 * Pattern syntax: "/" separated segments, each one of
 *   literal   matches that exact segment (compared after percent-decoding the request segment)
 *   :name     matches exactly one non-empty segment; the value is a param
 *   *name     matches the rest of the path (zero or more characters, slashes included);
 *             only allowed as the last segment
 * Precedence at every level: literal > param > wildcard, with backtracking, so
 * "/a/:x/c" still matches "/a/b/c" when "/a/b/d" also exists.
 *
 * Lookup allocates nothing and takes no lock; a finished router is read-only and
 * may be shared by any number of threads.
 */
#ifndef CEL_ROUTER_H
#define CEL_ROUTER_H

#include "common.h"

/* Method bits. A route carries a mask of these. */
enum {
    CEL_M_GET = 1u << 0,
    CEL_M_HEAD = 1u << 1,
    CEL_M_POST = 1u << 2,
    CEL_M_PUT = 1u << 3,
    CEL_M_DELETE = 1u << 4,
    CEL_M_PATCH = 1u << 5,
    CEL_M_OPTIONS = 1u << 6,
    CEL_M_CONNECT = 1u << 7,
    CEL_M_TRACE = 1u << 8,
    CEL_M_ALL = (1u << 9) - 1,
};

/* The bit for method name S (case-sensitive, "GET"), or 0 when unknown. */
unsigned cel_method_bit(const char *s, size_t n);
/* The method one CEL_M_* bit stands for ("GET"), in static storage; NULL for
 * anything else. */
const char *cel_method_name(unsigned bit);

#define CEL_MAX_PARAMS 16
#define CEL_ALLOW_MAX 80 /* longest possible allow string, with NUL */

typedef struct cel_param {
    const char *name; /* NUL-terminated, owned by the router */
    uint32_t off;     /* into the path given to lookup */
    uint32_t len;     /* raw (still percent-encoded) length */
} cel_param;

typedef struct cel_route_match {
    void *data;        /* what cel_router_add was given; NULL unless FOUND */
    const char *allow; /* for BAD_METHOD: "GET, HEAD, POST" (router-owned) */
    void *path_data;   /* for BAD_METHOD: DATA of the first route added at the path */
    unsigned nparams;
    cel_param params[CEL_MAX_PARAMS];
} cel_route_match;

enum { CEL_ROUTE_FOUND = 0, CEL_ROUTE_NOT_FOUND = 1, CEL_ROUTE_BAD_METHOD = 2 };

typedef struct cel_router cel_router;

cel_router *cel_router_new(void);
void cel_router_free(cel_router *r);

/*
 * Adds PATTERN for the methods in METHODS (a non-zero mask), answering with DATA.
 * Returns 0; CEL_EINVAL with a message in ERR for a bad pattern (no leading '/',
 * empty param name, wildcard not last, more than CEL_MAX_PARAMS params, two params
 * with one name); CEL_EEXIST when an earlier route has the same shape (param names
 * aside) and shares a method, with *CONFLICT set to that route's DATA.
 * Two routes with the same shape and disjoint methods are fine: one path, several
 * handlers. Must not be called after the first lookup.
 */
int cel_router_add(cel_router *r, const char *pattern, unsigned methods, void *data,
                   void **conflict, char *err, size_t errlen);

/*
 * Looks up PATH (the raw :path without the query) for METHOD (one CEL_M_* bit,
 * or 0 for a method with no bit: that never matches and so yields BAD_METHOD when
 * the path exists). Returns CEL_ROUTE_FOUND with M filled in, CEL_ROUTE_NOT_FOUND,
 * or CEL_ROUTE_BAD_METHOD with M->allow and M->path_data set.
 */
int cel_router_lookup(const cel_router *r, const char *path, size_t len, unsigned method,
                      cel_route_match *m);
/*
 * cel_router_lookup for the one call that every request makes (dispatch.c's
 * common case): a function with one caller, which link-time optimisation
 * inlines there whatever its size (8 to 19 instructions a request under
 * callgrind on the three bench routes). Any other caller takes
 * cel_router_lookup.
 */
int cel_router_lookup_once(const cel_router *r, const char *path, size_t len, unsigned method,
                           cel_route_match *m);

/*
 * Percent-decodes N bytes of SRC into DST (which may equal SRC; it needs N bytes).
 * A '%' not followed by two hex digits is kept as is. When PLUS_IS_SPACE, '+'
 * becomes ' ' (query strings). Returns the decoded length.
 */
size_t cel_pct_decode(char *dst, const char *src, size_t n, int plus_is_space);

#endif
