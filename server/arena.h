/*
 * A bump allocator for memory that lives exactly as long as one stream: header
 * copies, rendered bodies. The first block is caller-provided (inline in the
 * stream object); further blocks come from the worker's pool and go back to it
 * at deinit, so steady-state serving does not touch libc's allocator.
 */
#ifndef CEL_ARENA_H
#define CEL_ARENA_H

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
/* N bytes aligned to 8, or NULL when the pool is out of memory. */
void *cel_arena_alloc(cel_arena *a, size_t n);
/* A copy of the N bytes at P, or NULL. */
char *cel_arena_dup(cel_arena *a, const void *p, size_t n);

#endif
