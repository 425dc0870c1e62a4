/*
 * The `dir:` handler: files under a root directory, answered as nginx and
 * h2o answer them (RFC 9110): index files, listings, a fallback for
 * single-page apps, ETag / Last-Modified and the conditional requests on
 * them, byte ranges (multipart/byteranges for several), HEAD, precompressed
 * siblings (x.br, x.zst, x.gz) chosen by Accept-Encoding, and an open-file
 * cache per worker that also keeps hot small files' bytes. Bodies larger than a small file are
 * streamed through the exchange in bounded chunks (pread), so memory per download is bounded
 * whatever the file's size and the reader's speed.
 *
 * The path under the root is the route's wildcard param (`*name`) when the
 * pattern has one, else the whole request path; it goes through
 * cel_fspath_map (fspath.h) and cel_fspath_open, so it never reaches a file
 * outside the root. A client's path never causes a 500: 404 for what is not
 * there, 403 for what is refused.
 */
#ifndef CEL_HANDLER_DIR_H
#define CEL_HANDLER_DIR_H

#include <stddef.h>

#include "handler.h"

/* Precompressed codings, in the order a route lists them. */
typedef enum { CEL_ENC_BR, CEL_ENC_ZSTD, CEL_ENC_GZIP, CEL_ENC_COUNT } cel_encoding;

/* Entries of the open-file cache of each worker, per route, by default
 * (`open_file_cache:`; 0 turns it off). */
#define CEL_DIR_CACHE_DEFAULT 256
#define CEL_DIR_CACHE_MAX 1048576
/* Bytes of small files the cache of each worker keeps, per route, by
 * default (`open_file_cache_bytes:`; 0 keeps none), and the largest file
 * whose bytes are kept. */
#define CEL_DIR_BYTES_DEFAULT (256 * 1024)
#define CEL_DIR_BYTES_MAX ((size_t)1 << 30)
#define CEL_DIR_BODY_MAX (16 * 1024)

typedef struct cel_dir_conf {
    const char *root;
    const char *const *index; /* file names tried in a directory, in order */
    size_t nindex;
    int listing;           /* a directory without index is listed (else 403) */
    int etag;              /* send ETag (and answer If-Match / If-None-Match) */
    int follow_symlinks;   /* symlinks may lead out of root */
    const char *fallback;  /* mapped path under root answered for a missing file, or NULL */
    long long max_age;     /* seconds for cache-control: max-age, or -1 */
    const cel_kv *headers; /* extra response headers (names lowercase) */
    size_t nheaders;
    cel_encoding precompressed[CEL_ENC_COUNT];
    size_t nprecompressed;
    const cel_kv *mime; /* extension (".x" or "x") -> type, over /etc/mime.types */
    size_t nmime;
    const char *mime_file; /* the system table: normally /etc/mime.types */
    const char *param;     /* the route's wildcard param name, or NULL: the whole path */
    unsigned param_idx;    /* its place among the route's params (cel_request.params) */
    unsigned nparams;      /* the route's params */
    size_t cache_entries;
    size_t cache_bytes; /* kept bytes of small files per worker */
    unsigned nworkers;
} cel_dir_conf;

/* A handler for C (copied; nothing of C is kept). NULL with a message in ERR. */
cel_handler *cel_handler_dir_new(const cel_dir_conf *c, char *err, size_t errlen);

#endif
