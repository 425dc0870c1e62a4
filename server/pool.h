/*
 * A per-worker allocator: size classes with free lists, so that steady-state
 * serving never calls the libc allocator. One pool belongs to one thread; it is
 * not thread-safe and never takes a lock.
 *
 * Small blocks carry a header recording their class, blocks of 3-64 KiB are
 * whole pages of the pool's own address space (see pool.c), so release needs
 * no size. Requests above 64 KiB go to malloc directly (and are counted).
 * Each class keeps at most a bounded number of free bytes cached; the excess is
 * returned to libc so an idle worker shrinks back.
 */
#ifndef CEL_POOL_H
#define CEL_POOL_H

#include "common.h"

typedef struct cel_pool cel_pool;

typedef struct cel_pool_stats {
    uint64_t sys_allocs; /* calls into malloc/calloc/realloc made by the pool */
    uint64_t sys_frees;
    uint64_t allocs;     /* calls to cel_pool_alloc/calloc/realloc */
    size_t bytes_cached; /* free bytes held in free lists */
} cel_pool_stats;

cel_pool *cel_pool_new(size_t max_cached_bytes);
/* Frees every cached block. Blocks still handed out must have been released. */
void cel_pool_free(cel_pool *p);

void *cel_pool_alloc(cel_pool *p, size_t n);
void *cel_pool_calloc(cel_pool *p, size_t nmemb, size_t size);
void *cel_pool_realloc(cel_pool *p, void *ptr, size_t n);
void cel_pool_release(cel_pool *p, void *ptr); /* NULL is fine */
/* Usable size of a block from this pool (at least what was asked for). */
size_t cel_pool_block_size(const cel_pool *p, const void *ptr);
void cel_pool_get_stats(const cel_pool *p, cel_pool_stats *st);
/* Whether blocks of 3-64 KiB are whole pages (not in ASan builds, or when the
 * address space could not be reserved). */
int cel_pool_uses_pages(const cel_pool *p);

#endif
