/*
 * A worker's cache of compression contexts (the compress middleware's): a
 * codec's state is set up once and reused by the answers after it, so an
 * answer compressed per request allocates nothing once the worker has
 * served a few. Belongs to one worker thread; nothing is locked.
 *
 * zlib and zstd contexts are kept whole, at most CEL_CODECS_IDLE idle ones
 * per coding (more streams at once than that: the extra ones are freed when
 * they end). Brotli has no reset: its instances are made anew each time, but
 * through an allocator that takes the blocks the last ones gave back (their
 * sizes repeat for a quality and window), at most CEL_CODECS_BR_BYTES idle.
 *
 * A context taken is as a fresh one would be: its output does not depend on
 * what it compressed before.
 */
#ifndef CEL_CODECS_H
#define CEL_CODECS_H

#include <brotli/encode.h>
#include <zlib.h>
#include <zstd.h>

struct cel_env;

#define CEL_CODECS_IDLE 2
#define CEL_CODECS_BR_BYTES (3u << 20)

typedef struct cel_codecs cel_codecs;

/* The cache of E's worker, made on first use and freed by cel_env_deinit;
 * NULL when E is NULL or memory is short (the calls below then allocate
 * and free contexts each time). */
cel_codecs *cel_codecs_of(struct cel_env *e);

/* A deflate stream at LEVEL (a window of 2^WBITS, +16 for the gzip
 * wrapper, memLevel 8), ready for its first input; NULL: no memory. WBITS
 * is the same for every call on one cache. */
z_stream *cel_codecs_gzip(cel_codecs *c, int level, int wbits);
/* Gives Z back (C may be NULL: Z is freed). */
void cel_codecs_gzip_put(cel_codecs *c, z_stream *z);

/* A zstd context with no parameters set (as ZSTD_createCCtx makes it);
 * NULL: no memory. */
ZSTD_CCtx *cel_codecs_zstd(cel_codecs *c);
void cel_codecs_zstd_put(cel_codecs *c, ZSTD_CCtx *z);

/* A new brotli instance whose memory comes from C's blocks; NULL: no
 * memory. */
BrotliEncoderState *cel_codecs_br(cel_codecs *c);
/* Destroys B (its blocks go back to C). */
void cel_codecs_br_put(cel_codecs *c, BrotliEncoderState *b);

#endif
