/*
 * Size classes step by 1.5x between powers of two (32, 48, 64, 96, ... 3072),
 * which keeps the worst-case waste near a third instead of a half: nghttp2's
 * ~2.9 KiB session lands in 3 KiB rather than 4 KiB.
 *
 * Every such block starts with a 16-byte header so that the pointer handed out
 * keeps malloc's 16-byte alignment. The header survives while the block sits in
 * a free list; the list link lives in the (unused) payload.
 *
 * Blocks above 3 KiB (up to 64 KiB) are whole pages from a span of address
 * space the pool reserves for itself, without a header: their page counts live
 * in a side table. That is what keeps an idle connection small. nghttp2 calls
 * calloc for a 4 KiB stream map and takes a 16 KiB frame buffer of which small
 * frames touch one page; a page from the span that was never used (or was
 * given back to the kernel) is already zero, so such a calloc touches nothing
 * and the untouched pages never become resident. Without the span (mmap
 * refused it, it is full, or this is an ASan build, where libc's blocks keep
 * their redzones) the big classes come from malloc like the small ones.
 */
#include "pool.h"

#include <assert.h>
#include <limits.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

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

/* The page span: PH_SPAN bytes of address space, pages handed out from the
 * bottom up and recycled through per-length free lists. */
#define PAGE ((size_t)4096)
#define PH_MIN ((size_t)3073)     /* smaller requests use the classes */
#define PH_MAXPAGES 16u           /* 64 KiB: the largest class */
#define PH_SPAN ((size_t)1 << 30) /* per pool; past it, malloc */
#define PH_FRESH 0x80u            /* pages after the first are zero */

struct cel_pool {
    struct fnode *free[NCLASS];
    size_t max_cached;
    size_t room; /* max_cached - st.bytes_cached: what the free lists may still take */
    cel_pool_stats st;
    char *ph_base;   /* the span, or NULL */
    size_t ph_size;  /* its length, 0 without one: ph_owns needs no NULL test */
    size_t ph_top;   /* bytes of it handed out at least once */
    uint8_t *ph_len; /* per page: a block's length in pages at its first page, | PH_FRESH */
    struct fnode *ph_free[PH_MAXPAGES + 1];
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

/* class_of for the small sizes that come up on every request, by 16-byte steps
 * (every class up to PH_MIN is a multiple of 16): one load instead of the bit
 * arithmetic. Filled before main(). */
#define SMALL_STEPS ((PH_MIN - 1 + 15) / 16 + 1)
static uint8_t small_class[SMALL_STEPS];

__attribute__((constructor)) static void fill_small_class(void)
{
    for (size_t i = 0; i < SMALL_STEPS; i++)
        small_class[i] = (uint8_t)class_of(i * 16);
}

static inline unsigned small_class_of(size_t n)
{
    return small_class[(n + 15) >> 4];
}

cel_pool *cel_pool_new(size_t max_cached_bytes)
{
    cel_pool *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->max_cached = max_cached_bytes;
    p->room = max_cached_bytes;
#ifndef POOL_ASAN
    /* Address space only: the kernel backs a page once it is touched. */
    int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
    void *span = mmap(NULL, PH_SPAN, PROT_READ | PROT_WRITE, flags, -1, 0);
    void *len = mmap(NULL, PH_SPAN / PAGE, PROT_READ | PROT_WRITE, flags, -1, 0);
    if (span != MAP_FAILED && len != MAP_FAILED) {
        /* Pages, not huge pages, whatever the kernel's THP defaults: a huge
         * page would make resident the untouched pages this span exists for. */
        madvise(span, PH_SPAN, MADV_NOHUGEPAGE);
        madvise(len, PH_SPAN / PAGE, MADV_NOHUGEPAGE);
        p->ph_base = span;
        p->ph_size = PH_SPAN;
        p->ph_len = len;
    } else {
        if (span != MAP_FAILED)
            munmap(span, PH_SPAN);
        if (len != MAP_FAILED)
            munmap(len, PH_SPAN / PAGE);
    }
#endif
    return p;
}

static inline int ph_owns(const cel_pool *p, const void *ptr)
{
    return (uintptr_t)ptr - (uintptr_t)p->ph_base < p->ph_size;
}

/* A block of NP pages, or NULL (the caller falls back to malloc). With ZERO,
 * its first N bytes read as zero, touching no page that already is. */
/* Out of line: the small classes' path stays short enough to inline. */
__attribute__((noinline)) static void *ph_get(cel_pool *p, unsigned np, size_t n, int zero)
{
    struct fnode *f = p->ph_free[np];
    if (f) {
        p->ph_free[np] = f->next;
        size_t i = (size_t)((char *)f - p->ph_base) / PAGE;
        p->room += np * PAGE;
        if (zero)
            memset(f, 0, (p->ph_len[i] & PH_FRESH) && n > PAGE ? PAGE : n);
        p->ph_len[i] = (uint8_t)np;
        return f;
    }
    if (np * PAGE > PH_SPAN - p->ph_top)
        return NULL;
    char *b = p->ph_base + p->ph_top;
    p->ph_len[p->ph_top / PAGE] = (uint8_t)np;
    p->ph_top += np * PAGE;
    return b; /* never touched: zero */
}

__attribute__((noinline)) static void ph_put(cel_pool *p, void *ptr)
{
    size_t i = (size_t)((char *)ptr - p->ph_base) / PAGE;
    unsigned np = p->ph_len[i] & ~PH_FRESH;
    if (np * PAGE > p->room) {
        /* Over the cache: give all but the first page (which holds the list
         * link) back to the kernel; they come back zero. */
        if (np > 1)
            madvise((char *)ptr + PAGE, (np - 1) * PAGE, MADV_DONTNEED);
        p->ph_len[i] = (uint8_t)(np | PH_FRESH);
        p->st.sys_frees++;
    } else {
        p->room -= np * PAGE;
    }
    struct fnode *f = ptr;
    f->next = p->ph_free[np];
    p->ph_free[np] = f;
}

void cel_pool_free(cel_pool *p)
{
    if (!p)
        return;
    if (p->ph_base) {
        munmap(p->ph_base, PH_SPAN);
        munmap(p->ph_len, PH_SPAN / PAGE);
    }
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

/* The first block of class C's free list (not empty), for N bytes. */
static inline void *pop(cel_pool *p, unsigned c, size_t n, int zero)
{
    struct fnode *f = p->free[c];
    p->free[c] = f->next;
    p->room += class_size[c] + HDR;
    UNPOISON(f, class_size[c]);
    if (zero)
        memset(f, 0, n);
    return f;
}

/* Everything but a small block from a free list: pages, a fresh block from
 * malloc, or a large one. */
__attribute__((noinline)) static void *get_slow(cel_pool *p, size_t n, int zero)
{
    hdr *h;
    if (n >= PH_MIN && n <= MAX_SMALL && p->ph_size) {
        void *b = ph_get(p, (unsigned)((n + PAGE - 1) / PAGE), n, zero);
        if (b)
            return b;
    }
    if (n <= MAX_SMALL) {
        unsigned c = class_of(n);
        if (p->free[c])
            return pop(p, c, n, zero);
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
    if (zero)
        memset(h + 1, 0, n);
    return h + 1;
}

/* The hot case inline: a small block off its class's free list. */
static inline void *get(cel_pool *p, size_t n, int zero)
{
    if (CEL_LIKELY(n < PH_MIN)) {
        unsigned c = small_class_of(n);
        if (CEL_LIKELY(p->free[c] != NULL))
            return pop(p, c, n, zero);
    }
    return get_slow(p, n, zero);
}

void *cel_pool_alloc(cel_pool *p, size_t n)
{
    p->st.allocs++;
    return get(p, n, 0);
}

void *cel_pool_calloc(cel_pool *p, size_t nmemb, size_t size)
{
    p->st.allocs++;
    if (size && nmemb > SIZE_MAX / size)
        return NULL;
    return get(p, nmemb * size, 1);
}

void cel_pool_release(cel_pool *p, void *ptr)
{
    if (CEL_UNLIKELY(!ptr))
        return;
    if (CEL_UNLIKELY(ph_owns(p, ptr))) {
        ph_put(p, ptr);
        return;
    }
    hdr *h = (hdr *)ptr - 1;
    size_t bytes = h->size + HDR;
    if (CEL_UNLIKELY(h->cls == LARGE || bytes > p->room)) {
        free(h);
        p->st.sys_frees++;
        return;
    }
    struct fnode *f = ptr;
    f->next = p->free[h->cls];
    p->free[h->cls] = f;
    p->room -= bytes;
    POISON((char *)ptr + sizeof(*f), h->size - sizeof(*f));
}

void *cel_pool_realloc(cel_pool *p, void *ptr, size_t n)
{
    p->st.allocs++;
    if (!ptr)
        return get(p, n, 0);
    size_t have = cel_pool_block_size(p, ptr);
    if (ph_owns(p, ptr)) {
        if (n <= have && n >= PH_MIN)
            return ptr;
        goto move;
    }
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
move:;
    void *np = get(p, n, 0);
    if (!np)
        return NULL;
    memcpy(np, ptr, have < n ? have : n);
    cel_pool_release(p, ptr);
    return np;
}

size_t cel_pool_block_size(const cel_pool *p, const void *ptr)
{
    if (ph_owns(p, ptr))
        return (p->ph_len[(size_t)((const char *)ptr - p->ph_base) / PAGE] & ~PH_FRESH) * PAGE;
    return ((const hdr *)ptr - 1)->size;
}

int cel_pool_uses_pages(const cel_pool *p)
{
    return p->ph_base != NULL;
}

void cel_pool_get_stats(const cel_pool *p, cel_pool_stats *st)
{
    *st = p->st;
    st->bytes_cached = p->max_cached - p->room;
}
