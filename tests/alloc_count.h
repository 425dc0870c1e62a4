/*
 * Counts, and can make fail, the heap calls of a test binary's own objects:
 * link the binary with -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc and
 * include this once (it defines the wrappers). Calls from shared libraries
 * (libc itself, libnghttp2, cmocka) are not seen.
 *
 *   alloc_calls     malloc/calloc/realloc calls counted so far
 *   alloc_fail_at   0: none fails; N: the Nth counted call returns NULL
 *   alloc_fail_rest set: every counted call after the Nth returns NULL too
 *   alloc_counting  calls are counted (and may fail) only while this is set
 */
#ifndef CEL_TESTS_ALLOC_COUNT_H
#define CEL_TESTS_ALLOC_COUNT_H

#include <stddef.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t k, size_t n);
void *__wrap_realloc(void *p, size_t n);

static unsigned long alloc_calls;
static unsigned long alloc_fail_at;
static int alloc_fail_rest;
static int alloc_counting = 1;

/* Counts one call; nonzero when it is one to fail. */
static int alloc_count(void)
{
    if (!alloc_counting)
        return 0;
    ++alloc_calls;
    return alloc_fail_at &&
           (alloc_calls == alloc_fail_at || (alloc_fail_rest && alloc_calls > alloc_fail_at));
}

void *__wrap_malloc(size_t n)
{
    return alloc_count() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t k, size_t n)
{
    return alloc_count() ? NULL : __real_calloc(k, n);
}

void *__wrap_realloc(void *p, size_t n)
{
    return alloc_count() ? NULL : __real_realloc(p, n);
}

#endif
