/*
 * The compress middleware (mw_compress.c): a kind with a body filter
 * (phase.h), so it has its own header rather than a line in middleware.h,
 * which phase.h includes.
 */
#ifndef CEL_MW_COMPRESS_H
#define CEL_MW_COMPRESS_H

#include "middleware.h"

/* `compress`: encodings the client may get, in the configured order. */
enum { CEL_ENC_GZIP, CEL_ENC_BR, CEL_ENC_ZSTD, CEL_ENC_N };
typedef struct cel_compress_conf {
    int order[CEL_ENC_N]; /* CEL_ENC_*, the first NENC */
    size_t nenc;
    int level[CEL_ENC_N]; /* per CEL_ENC_*, for bodies encoded per request */
    size_t min_length;    /* whole bodies shorter go out as they are */
    cel_str *types;       /* media types; a trailing star matches a prefix */
    size_t ntypes;
} cel_compress_conf;

/* `compress`: encodes 200 answers of the media types CONF lists in the
 * coding the request's accept-encoding prefers (never HEAD, ranges, or a
 * body already encoded), adds `vary: accept-encoding` to every 200 or 304 of
 * those types. Constant bodies are encoded at load (prepare), others per
 * request; streamed ones as they stream. CONF NULL: `compress: off`, a
 * member without phases that drops the global list's compress. */
cel_mw *cel_mw_compress_new(const cel_compress_conf *conf);

#endif
