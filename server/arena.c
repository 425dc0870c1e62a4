#include "arena.h"

#include <string.h>

#define BLOCK_MIN 4096

void cel_arena_init(cel_arena *a, cel_pool *pool, void *first, size_t first_len)
{
    a->pool = pool;
    a->cur = first;
    a->left = first ? first_len : 0;
    a->blocks = NULL;
}

void cel_arena_deinit(cel_arena *a)
{
    void *b = a->blocks;
    while (b) {
        void *next = *(void **)b;
        cel_pool_release(a->pool, b);
        b = next;
    }
    a->blocks = NULL;
    a->left = 0;
}

void *cel_arena_grow(cel_arena *a, size_t n)
{
    size_t want = n + sizeof(void *) + 8;
    if (want < BLOCK_MIN)
        want = BLOCK_MIN;
    char *b = cel_pool_alloc(a->pool, want);
    if (!b)
        return NULL;
    *(void **)b = a->blocks;
    a->blocks = b;
    a->cur = b + 16 + n;
    a->left = cel_pool_block_size(a->pool, b) - 16 - n;
    return b + 16;
}
