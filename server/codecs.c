#include "codecs.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "env.h"

/* Idle brotli blocks kept at most: an encoder of a 2 KB body at the
 * default quality allocates 21 blocks, one that streams frees some as it
 * grows others. */
#define BR_BLOCKS 48
/* Each brotli block starts with its size (brotli's free gives none back). */
#define BR_HDR                                                                                     \
    ((sizeof(size_t) + _Alignof(max_align_t) - 1) / _Alignof(max_align_t) * _Alignof(max_align_t))

/* A deflate stream and the level it was last set to. */
typedef struct gz {
    z_stream z;
    int level;
} gz;

static void gz_free(z_stream *z)
{
    deflateEnd(z);
    free((gz *)(void *)((char *)z - offsetof(gz, z)));
}

struct cel_codecs {
    gz *gz[CEL_CODECS_IDLE];
    size_t ngz;
    ZSTD_CCtx *zs[CEL_CODECS_IDLE];
    size_t nzs;
    unsigned char *br[BR_BLOCKS]; /* their headers */
    size_t nbr, br_bytes;
};

static void codecs_free(void *p)
{
    cel_codecs *c = p;
    for (size_t i = 0; i < c->ngz; i++)
        gz_free(&c->gz[i]->z);
    for (size_t i = 0; i < c->nzs; i++)
        ZSTD_freeCCtx(c->zs[i]);
    for (size_t i = 0; i < c->nbr; i++)
        free(c->br[i]);
    free(c);
}

cel_codecs *cel_codecs_of(cel_env *e)
{
    if (!e)
        return NULL;
    if (!e->codecs) {
        e->codecs = calloc(1, sizeof(cel_codecs));
        e->codecs_free = codecs_free;
    }
    return e->codecs;
}

z_stream *cel_codecs_gzip(cel_codecs *c, int level, int wbits)
{
    if (c && c->ngz) {
        /* one at the same level if there is one: no parameters to change */
        size_t k = c->ngz - 1;
        for (size_t i = 0; i < c->ngz; i++)
            if (c->gz[i]->level == level)
                k = i;
        gz *g = c->gz[k];
        c->gz[k] = c->gz[--c->ngz];
        /* after a reset, deflateParams sets the level before any input
         * (nothing to flush): the stream is as deflateInit2 at LEVEL makes it */
        if (deflateReset(&g->z) == Z_OK &&
            (g->level == level || deflateParams(&g->z, level, Z_DEFAULT_STRATEGY) == Z_OK)) {
            g->level = level;
            return &g->z;
        }
        gz_free(&g->z);
    }
    gz *g = calloc(1, sizeof(*g));
    if (!g || deflateInit2(&g->z, level, Z_DEFLATED, wbits, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        free(g);
        return NULL;
    }
    g->level = level;
    return &g->z;
}

void cel_codecs_gzip_put(cel_codecs *c, z_stream *z)
{
    if (c && c->ngz < CEL_CODECS_IDLE)
        c->gz[c->ngz++] = (gz *)(void *)((char *)z - offsetof(gz, z));
    else
        gz_free(z);
}

ZSTD_CCtx *cel_codecs_zstd(cel_codecs *c)
{
    if (c && c->nzs) {
        ZSTD_CCtx *z = c->zs[--c->nzs];
        ZSTD_CCtx_reset(z, ZSTD_reset_session_and_parameters);
        return z;
    }
    return ZSTD_createCCtx();
}

void cel_codecs_zstd_put(cel_codecs *c, ZSTD_CCtx *z)
{
    if (c && c->nzs < CEL_CODECS_IDLE)
        c->zs[c->nzs++] = z;
    else
        ZSTD_freeCCtx(z);
}

/* The smallest idle block of N bytes or more (up to twice N: a bigger one
 * stays for the call that needs it), else a new one. */
static void *br_alloc(void *opaque, size_t n)
{
    cel_codecs *c = opaque;
    size_t best = c->nbr;
    for (size_t i = 0; i < c->nbr; i++) {
        size_t have;
        memcpy(&have, c->br[i], sizeof(have));
        if (have >= n && have / 2 <= n) {
            size_t cur = 0;
            if (best < c->nbr)
                memcpy(&cur, c->br[best], sizeof(cur));
            if (best == c->nbr || have < cur)
                best = i;
        }
    }
    unsigned char *b;
    if (best < c->nbr) {
        b = c->br[best];
        size_t have;
        memcpy(&have, b, sizeof(have));
        c->br_bytes -= have;
        c->br[best] = c->br[--c->nbr];
    } else {
        if (n > SIZE_MAX - BR_HDR || !(b = malloc(BR_HDR + n)))
            return NULL;
        memcpy(b, &n, sizeof(n));
    }
    return b + BR_HDR;
}

static void br_free(void *opaque, void *p)
{
    cel_codecs *c = opaque;
    if (!p)
        return;
    unsigned char *b = (unsigned char *)p - BR_HDR;
    size_t n;
    memcpy(&n, b, sizeof(n));
    if (c->nbr < BR_BLOCKS && n <= CEL_CODECS_BR_BYTES - c->br_bytes) {
        c->br[c->nbr++] = b;
        c->br_bytes += n;
    } else {
        free(b);
    }
}

BrotliEncoderState *cel_codecs_br(cel_codecs *c)
{
    return c ? BrotliEncoderCreateInstance(br_alloc, br_free, c)
             : BrotliEncoderCreateInstance(NULL, NULL, NULL);
}

void cel_codecs_br_put(cel_codecs *c, BrotliEncoderState *b)
{
    (void)c;
    BrotliEncoderDestroyInstance(b);
}
