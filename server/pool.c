/*
 * Size classes step by 1.5x between powers of two (32, 48, 64, 96, ... 65536),
 * which keeps the worst-case waste near a third instead of a half: nghttp2's
 * 16 KiB frame buffers plus their chain header land in 24 KiB rather than 32 KiB,
 * and its ~9 KiB session in 12 KiB rather than 16 KiB.
 *
 * Every block starts with a 16-byte header so that the pointer handed out keeps
 * malloc's 16-byte alignment. The header survives while the block sits in a
 * free list; the list link lives in the (unused) payload.
 */
#include "pool.h"

#include <assert.h>
#include <limits.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define POOL_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define POOL_ASAN 1
#endif

/* Cached blocks are never handed back to libc, so without this ASan could not
 * see a use after cel_pool_release. */
#ifdef POOL_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define NCLASS 23
#define MIN_SHIFT 5 /* smallest class: 32 bytes */
#define MAX_SMALL ((size_t)65536)
#define LARGE UINT32_MAX

typedef struct hdr {
    alignas(16) size_t size; /* usable bytes */
    uint32_t cls;            /* class index, or LARGE */
} hdr;

static_assert(sizeof(hdr) == 16, "block header must keep 16-byte alignment");

#define HDR sizeof(hdr)

static const size_t class_size[NCLASS] = {
    32,   48,   64,   96,   128,  192,   256,   384,   512,   768,   1024,  1536,
    2048, 3072, 4096, 6144, 8192, 12288, 16384, 24576, 32768, 49152, 65536,
};

struct fnode {
    struct fnode *next;
};

struct cel_pool {
    struct fnode *free[NCLASS];
    size_t max_cached;
    cel_pool_stats st;
};

static inline unsigned top_bit(size_t m)
{
#if defined(__GNUC__)
    return (unsigned)(sizeof(unsigned long long) * CHAR_BIT - 1) -
           (unsigned)__builtin_clzll((unsigned long long)m);
#else
    unsigned b = 0;
    while (m >>= 1)
        b++;
    return b;
#endif
}

/* For 2^b < n <= 2^(b+1) the class is 1.5 * 2^b or 2^(b+1); bit b-1 of n-1 says
 * which. Only valid for n <= MAX_SMALL. */
static inline unsigned class_of(size_t n)
{
    if (n <= ((size_t)1 << MIN_SHIFT))
        return 0;
    size_t m = n - 1;
    unsigned b = top_bit(m);
    return 2 * (b - MIN_SHIFT) + 1 + (unsigned)((m >> (b - 1)) & 1);
}

cel_pool *cel_pool_new(size_t max_cached_bytes)
{
    cel_pool *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->max_cached = max_cached_bytes;
    return p;
}

void cel_pool_free(cel_pool *p)
{
    if (!p)
        return;
    for (unsigned c = 0; c < NCLASS; c++) {
        struct fnode *f = p->free[c];
        while (f) {
            struct fnode *next = f->next;
            free((hdr *)(void *)f - 1);
            f = next;
        }
    }
    free(p);
}

static void *get(cel_pool *p, size_t n)
{
    hdr *h;
    if (CEL_LIKELY(n <= MAX_SMALL)) {
        unsigned c = class_of(n);
        struct fnode *f = p->free[c];
        if (CEL_LIKELY(f != NULL)) {
            p->free[c] = f->next;
            p->st.bytes_cached -= class_size[c] + HDR;
            UNPOISON(f, class_size[c]);
            return f;
        }
        h = malloc(HDR + class_size[c]);
        if (!h)
            return NULL;
        h->size = class_size[c];
        h->cls = c;
    } else {
        if (n > SIZE_MAX - HDR)
            return NULL;
        h = malloc(HDR + n);
        if (!h)
            return NULL;
        h->size = n;
        h->cls = LARGE;
    }
    p->st.sys_allocs++;
    return h + 1;
}

void *cel_pool_alloc(cel_pool *p, size_t n)
{
    p->st.allocs++;
    return get(p, n);
}

void *cel_pool_calloc(cel_pool *p, size_t nmemb, size_t size)
{
    p->st.allocs++;
    if (size && nmemb > SIZE_MAX / size)
        return NULL;
    size_t n = nmemb * size;
    void *ptr = get(p, n);
    if (ptr)
        memset(ptr, 0, n);
    return ptr;
}

void cel_pool_release(cel_pool *p, void *ptr)
{
    if (!ptr)
        return;
    hdr *h = (hdr *)ptr - 1;
    size_t bytes = h->size + HDR;
    if (h->cls == LARGE || bytes > p->max_cached - p->st.bytes_cached) {
        free(h);
        p->st.sys_frees++;
        return;
    }
    struct fnode *f = ptr;
    f->next = p->free[h->cls];
    p->free[h->cls] = f;
    p->st.bytes_cached += bytes;
    POISON((char *)ptr + sizeof(*f), h->size - sizeof(*f));
}

void *cel_pool_realloc(cel_pool *p, void *ptr, size_t n)
{
    p->st.allocs++;
    if (!ptr)
        return get(p, n);
    hdr *h = (hdr *)ptr - 1;
    if (h->cls != LARGE) {
        if (n <= MAX_SMALL && class_of(n) == h->cls)
            return ptr;
    } else if (n > MAX_SMALL) {
        /* Large to large: libc may grow in place, which beats a copy. */
        if (n > SIZE_MAX - HDR)
            return NULL;
        hdr *nh = realloc(h, HDR + n);
        if (!nh)
            return NULL;
        p->st.sys_allocs++;
        nh->size = n;
        return nh + 1;
    }
    void *np = get(p, n);
    if (!np)
        return NULL;
    memcpy(np, ptr, h->size < n ? h->size : n);
    cel_pool_release(p, ptr);
    return np;
}

size_t cel_pool_block_size(const void *ptr)
{
    return ((const hdr *)ptr - 1)->size;
}

void cel_pool_get_stats(const cel_pool *p, cel_pool_stats *st)
{
    *st = p->st;
}
