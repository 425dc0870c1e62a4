/*
 * A bump allocator for memory that lives exactly as long as one stream: header
 * copies, rendered bodies. The first block is caller-provided (inline in the
 * stream object); further blocks come from the worker's pool and go back to it
 * at deinit, so steady-state serving does not touch libc's allocator.
 */
#ifndef CEL_ARENA_H
#define CEL_ARENA_H

#include <string.h>

#include "common.h"
#include "pool.h"

typedef struct cel_arena {
    cel_pool *pool;
    char *cur;
    size_t left;
    void *blocks; /* pool blocks, linked through their first word */
} cel_arena;

void cel_arena_init(cel_arena *a, cel_pool *pool, void *first, size_t first_len);
void cel_arena_deinit(cel_arena *a);
/* The slow path of those below: a fresh block from the pool. */
void *cel_arena_grow(cel_arena *a, size_t n);

/* N bytes aligned to 8, or NULL when the pool is out of memory. */
static inline void *cel_arena_alloc(cel_arena *a, size_t n)
{
    size_t pad = (size_t)(-(uintptr_t)a->cur & 7);
    if (CEL_UNLIKELY(a->left < n + pad))
        return cel_arena_grow(a, n);
    char *p = a->cur + pad;
    a->cur = p + n;
    a->left -= n + pad;
    return p;
}

/* N bytes with no alignment (text) from the current block, or NULL when it
 * has fewer left: no call, so a caller on the hot path saves no register
 * for the rare case, which it leaves to a slower path. */
static inline char *cel_arena_take(cel_arena *a, size_t n)
{
    if (CEL_UNLIKELY(a->left < n))
        return NULL;
    char *d = a->cur;
    a->cur += n;
    a->left -= n;
    return d;
}

/* A copy of the N bytes at P (byte-aligned: strings need no more), or NULL. */
static inline char *cel_arena_dup(cel_arena *a, const void *p, size_t n)
{
    size_t need = n ? n : 1; /* an empty copy still gets its own address */
    char *d;
    if (CEL_LIKELY(a->left >= need)) {
        d = a->cur;
        a->cur += need;
        a->left -= need;
    } else if (!(d = cel_arena_grow(a, need))) {
        return NULL;
    }
    cel_copy_small(d, p, n);
    return d;
}

#endif
