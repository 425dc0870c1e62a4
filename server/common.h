/* Small types and error codes shared by every unit of the daemon. */
#ifndef CEL_COMMON_H
#define CEL_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Error codes: functions return 0 or one of these (negative). */
#define CEL_OK 0
#define CEL_ENOMEM (-1)
#define CEL_EINVAL (-2)
#define CEL_ETOOBIG (-3)
#define CEL_ENOTFOUND (-4)
#define CEL_EEXIST (-5)
#define CEL_EIO (-6)
#define CEL_EAGAIN (-7)

/* A byte slice that does not own its memory. Not NUL-terminated unless said. */
typedef struct cel_str {
    const char *p;
    size_t n;
} cel_str;

/* Where in the YAML a thing came from, for errors that surface after parsing. */
typedef struct cel_loc {
    unsigned line, col; /* 1-based */
} cel_loc;

#define CEL_STR_LIT(s) ((cel_str){(s), sizeof(s) - 1})
#define CEL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#if defined(__GNUC__)
#define CEL_LIKELY(x) __builtin_expect(!!(x), 1)
#define CEL_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define CEL_LIKELY(x) (x)
#define CEL_UNLIKELY(x) (x)
#endif

/* memcmp(A, B, N) == 0 for a few bytes (a path segment), without a library
 * call: overlapping word compares as in cel_copy_small. */
static inline int cel_eq_small(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;
    if (n > 16)
        return memcmp(x, y, n) == 0;
    if (n >= 8) {
        uint64_t a0, a1, b0, b1;
        memcpy(&a0, x, 8);
        memcpy(&a1, x + n - 8, 8);
        memcpy(&b0, y, 8);
        memcpy(&b1, y + n - 8, 8);
        return ((a0 ^ b0) | (a1 ^ b1)) == 0;
    }
    if (n >= 4) {
        uint32_t a0, a1, b0, b1;
        memcpy(&a0, x, 4);
        memcpy(&a1, x + n - 4, 4);
        memcpy(&b0, y, 4);
        memcpy(&b1, y + n - 4, 4);
        return ((a0 ^ b0) | (a1 ^ b1)) == 0;
    }
    return n == 0 || (x[0] == y[0] && x[n / 2] == y[n / 2] && x[n - 1] == y[n - 1]);
}

/* Eight octets at a time: CEL_ONES * c repeats octet c, CEL_HIGHS marks each
 * octet's high bit. */
#define CEL_ONES 0x0101010101010101ull
#define CEL_HIGHS 0x8080808080808080ull

/* The high bit of each octet of W equal to C. The lowest one marked is always
 * a true match (a borrow can only mark octets above one), so the first match
 * is exact and "none" is exact. */
static inline uint64_t cel_octets_eq(uint64_t w, unsigned char c)
{
    uint64_t x = w ^ (CEL_ONES * c);
    return (x - CEL_ONES) & ~x & CEL_HIGHS;
}

/* The 4 to 8 octets at P as one word: the first four in the low half, the
 * last four in the high half (they overlap when N < 8, and an octet read twice
 * is judged the same both times by the word tests above). */
static inline uint64_t cel_load_halves(const void *p, size_t n)
{
    uint32_t lo, hi;
    memcpy(&lo, p, 4);
    memcpy(&hi, (const unsigned char *)p + n - 4, 4);
    return lo | (uint64_t)hi << 32;
}

/* Writes a cel_load_halves word back as the N octets it was read from. */
static inline void cel_store_halves(void *d, uint64_t w, size_t n)
{
    uint32_t lo = (uint32_t)w, hi = (uint32_t)(w >> 32);
    memcpy(d, &lo, 4);
    memcpy((unsigned char *)d + n - 4, &hi, 4);
}

/* Where octet AT (0-7) of a cel_load_halves word of N octets lies in them.
 * With no match in the low half, the first one marked in the high half is
 * past it. */
static inline size_t cel_halves_at(unsigned at, size_t n)
{
    return at < 4 ? at : n - 8 + at;
}

/* memset(P, 0, N) for a struct's few hundred bytes, N a multiple of 8 known
 * at compile time: 16-byte stores, where GCC would pick `rep stos` (slow to
 * start, and one step per 8 bytes). The empty asm keeps the loop from being
 * turned back into memset. */
static inline void cel_zero(void *p, size_t n)
{
    typedef unsigned char v16 __attribute__((vector_size(16), aligned(1), may_alias));
    unsigned char *b = p;
    size_t i = 0;
#pragma GCC unroll 64
    for (; i + 16 <= n; i += 16) {
        *(v16 *)(b + i) = (v16){0};
        __asm__("" : : "r"(b) : "memory");
    }
    if (n - i >= 8)
        memset(b + i, 0, 8);
}

/* memcpy for the few bytes of a header, a path segment or a frame header,
 * without a library call: two overlapping loads and stores cover 4..16 bytes,
 * four cover 17..32. D and S must not overlap. */
static inline void cel_copy_small(void *d, const void *s, size_t n)
{
    unsigned char *dp = d;
    const unsigned char *sp = s;
    if (n > 32) {
        memcpy(dp, sp, n);
    } else if (n > 16) {
        uint64_t a, b, c, e;
        memcpy(&a, sp, 8);
        memcpy(&b, sp + 8, 8);
        memcpy(&c, sp + n - 16, 8);
        memcpy(&e, sp + n - 8, 8);
        memcpy(dp, &a, 8);
        memcpy(dp + 8, &b, 8);
        memcpy(dp + n - 16, &c, 8);
        memcpy(dp + n - 8, &e, 8);
    } else if (n >= 8) {
        uint64_t a, b;
        memcpy(&a, sp, 8);
        memcpy(&b, sp + n - 8, 8);
        memcpy(dp, &a, 8);
        memcpy(dp + n - 8, &b, 8);
    } else if (n >= 4) {
        cel_store_halves(dp, cel_load_halves(sp, n), n);
    } else if (n) {
        dp[0] = sp[0];
        dp[n / 2] = sp[n / 2];
        dp[n - 1] = sp[n - 1];
    }
}

#endif
