#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "pool.h"

#define BIG_CAP ((size_t)64 << 20)
#define LARGEST 65536

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static cel_pool_stats stats(const cel_pool *p)
{
    cel_pool_stats st;
    cel_pool_get_stats(p, &st);
    return st;
}

static void test_reuse(void **state)
{
    (void)state;
    cel_pool *p = cel_pool_new(BIG_CAP);
    assert_non_null(p);
    void *a = cel_pool_alloc(p, 100);
    assert_non_null(a);
    memset(a, 1, 100);
    cel_pool_release(p, a);
    assert_ptr_equal(cel_pool_alloc(p, 100), a);
    cel_pool_release(p, a);
    /* Any size in the same class takes the cached block. */
    size_t bs = cel_pool_block_size(p, a);
    assert_ptr_equal(cel_pool_alloc(p, bs), a);
    cel_pool_release(p, a);
    /* LIFO: the most recently released block comes back first. */
    void *b = cel_pool_alloc(p, 100);
    void *c = cel_pool_alloc(p, 100);
    assert_ptr_not_equal(b, c);
    cel_pool_release(p, b);
    cel_pool_release(p, c);
    assert_ptr_equal(cel_pool_alloc(p, 110), c);
    assert_ptr_equal(cel_pool_alloc(p, 110), b);
    cel_pool_release(p, b);
    cel_pool_release(p, c);
    cel_pool_release(p, NULL);
    cel_pool_free(p);
    cel_pool_free(NULL);
}

/* Walks every size up to the largest class: block sizes only ever grow, change
 * exactly at a class size, waste at most half, and every byte is usable. */
static void test_class_boundaries(void **state)
{
    (void)state;
    cel_pool *p = cel_pool_new(BIG_CAP);
    int paged = cel_pool_uses_pages(p);
    size_t classes[64];
    unsigned ncls = 0;
    size_t prev = 0;
    for (size_t n = 0; n <= LARGEST; n++) {
        unsigned char *b = cel_pool_alloc(p, n);
        assert_non_null(b);
        assert_int_equal((uintptr_t)b % 16, 0);
        size_t bs = cel_pool_block_size(p, b);
        assert_true(bs >= n);
        if (paged && n > 3072) {
            /* whole pages */
            assert_int_equal((uintptr_t)b % 4096, 0);
            assert_int_equal(bs, (n + 4095) / 4096 * 4096);
        } else {
            assert_true(bs <= (n < 32 ? 32 : n + n / 2));
        }
        if (bs != prev) {
            assert_true(n == 0 || prev == n - 1);
            assert_true(ncls < 64);
            classes[ncls++] = bs;
            memset(b, 0xa5, bs);
        }
        prev = bs;
        cel_pool_release(p, b);
    }
    assert_int_equal(ncls, paged ? 14 + 16 : 23);
    assert_int_equal(classes[0], 32);
    assert_int_equal(classes[ncls - 1], LARGEST);

    for (unsigned i = 0; i < ncls; i++) {
        size_t c = classes[i];
        void *a = cel_pool_alloc(p, c);
        assert_int_equal(cel_pool_block_size(p, a), c);
        cel_pool_release(p, a);
        assert_ptr_equal(cel_pool_alloc(p, c), a);
        /* One byte more must leave the class. */
        void *b = cel_pool_alloc(p, c + 1);
        assert_ptr_not_equal(a, b);
        assert_true(cel_pool_block_size(p, b) > c);
        if (i > 0) {
            void *d = cel_pool_alloc(p, classes[i - 1] + 1);
            assert_int_equal(cel_pool_block_size(p, d), c);
            cel_pool_release(p, d);
        }
        cel_pool_release(p, a);
        cel_pool_release(p, b);
    }
    cel_pool_free(p);
}

static void test_large(void **state)
{
    (void)state;
    cel_pool *p = cel_pool_new(BIG_CAP);
    cel_pool_stats s0 = stats(p);
    for (int i = 0; i < 3; i++) {
        size_t n = LARGEST + 1 + (size_t)i * 100000;
        unsigned char *b = cel_pool_alloc(p, n);
        assert_non_null(b);
        assert_int_equal((uintptr_t)b % 16, 0);
        assert_int_equal(cel_pool_block_size(p, b), n);
        memset(b, 0x5a, n);
        cel_pool_release(p, b);
    }
    cel_pool_stats s1 = stats(p);
    /* Large blocks are never cached. */
    assert_int_equal(s1.sys_allocs - s0.sys_allocs, 3);
    assert_int_equal(s1.sys_frees - s0.sys_frees, 3);
    assert_int_equal(s1.bytes_cached, s0.bytes_cached);
    assert_null(cel_pool_alloc(p, SIZE_MAX));
    assert_null(cel_pool_alloc(p, SIZE_MAX - 8));
    cel_pool_free(p);
}

static void test_calloc_zeroes(void **state)
{
    (void)state;
    cel_pool *p = cel_pool_new(BIG_CAP);
    unsigned char *a = cel_pool_alloc(p, 128);
    memset(a, 0xff, cel_pool_block_size(p, a));
    cel_pool_release(p, a);
    unsigned char *b = cel_pool_calloc(p, 10, 12);
    assert_ptr_equal(a, b);
    for (size_t i = 0; i < 120; i++)
        assert_int_equal(b[i], 0);
    cel_pool_release(p, b);

    unsigned char *big = cel_pool_calloc(p, 1000, 100);
    assert_non_null(big);
    for (size_t i = 0; i < 100000; i++)
        assert_int_equal(big[i], 0);
    cel_pool_release(p, big);

    assert_null(cel_pool_calloc(p, SIZE_MAX / 2 + 1, 2));
    assert_null(cel_pool_calloc(p, 2, SIZE_MAX / 2 + 1));
    assert_null(cel_pool_calloc(p, SIZE_MAX, SIZE_MAX));
    void *z = cel_pool_calloc(p, 0, 5);
    assert_non_null(z);
    cel_pool_release(p, z);
    cel_pool_free(p);
}

static void fill(unsigned char *b, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        b[i] = (unsigned char)(i * 31 + seed);
}

static void check(const unsigned char *b, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        if (b[i] != (unsigned char)(i * 31 + seed))
            fail_msg("byte %zu differs", i);
}

static void test_realloc_keeps_data(void **state)
{
    (void)state;
    cel_pool *p = cel_pool_new(BIG_CAP);
    unsigned char *b = cel_pool_realloc(p, NULL, 10);
    assert_non_null(b);
    fill(b, 10, 7);
    /* Same class: same block. */
    unsigned char *same = cel_pool_realloc(p, b, 30);
    assert_ptr_equal(same, b);
    check(b, 10, 7);
    fill(b, 30, 7);

    static const size_t steps[] = {31, 100, 5000, 16400, 65536, 65537, 300000, 70000, 40000, 17, 0};
    size_t have = 30;
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        size_t n = steps[i];
        unsigned char *nb = cel_pool_realloc(p, b, n);
        assert_non_null(nb);
        assert_true(cel_pool_block_size(p, nb) >= n);
        check(nb, have < n ? have : n, 7);
        fill(nb, n, 7);
        b = nb;
        have = n;
    }

    fill(b, 16, 3);
    assert_null(cel_pool_realloc(p, b, SIZE_MAX));
    check(b, 16, 3);
    b = cel_pool_realloc(p, b, 100000);
    assert_null(cel_pool_realloc(p, b, SIZE_MAX - 4));
    check(b, 16, 3);
    cel_pool_release(p, b);
    cel_pool_free(p);
}

static void test_cap(void **state)
{
    (void)state;
    const size_t cap = 50000;
    cel_pool *p = cel_pool_new(cap);
    void *blocks[40];
    for (int i = 0; i < 40; i++)
        blocks[i] = cel_pool_alloc(p, 4000);
    cel_pool_stats s0 = stats(p);
    for (int i = 0; i < 40; i++) {
        cel_pool_release(p, blocks[i]);
        assert_true(stats(p).bytes_cached <= cap);
    }
    cel_pool_stats s1 = stats(p);
    assert_true(s1.bytes_cached > 0);
    assert_true(s1.bytes_cached > cap - 8192);
    assert_true(s1.sys_frees > s0.sys_frees);
    /* Mixed sizes never push it over either. */
    rng_state = 42;
    void *mix[200];
    for (int i = 0; i < 200; i++)
        mix[i] = cel_pool_alloc(p, rnd() % 20000);
    for (int i = 0; i < 200; i++) {
        cel_pool_release(p, mix[i]);
        assert_true(stats(p).bytes_cached <= cap);
    }
    cel_pool_free(p);

    p = cel_pool_new(0);
    void *a = cel_pool_alloc(p, 64);
    cel_pool_release(p, a);
    assert_int_equal(stats(p).bytes_cached, 0);
    assert_int_equal(stats(p).sys_frees, 1);
    cel_pool_free(p);
}

static void test_counts(void **state)
{
    (void)state;
    cel_pool *p = cel_pool_new(BIG_CAP);
    void *a = cel_pool_alloc(p, 10);
    void *b = cel_pool_calloc(p, 3, 3);
    a = cel_pool_realloc(p, a, 1000);
    cel_pool_stats st = stats(p);
    assert_int_equal(st.allocs, 3);
    assert_int_equal(st.sys_allocs, 3);
    assert_int_equal(st.sys_frees, 0);
    cel_pool_release(p, a);
    cel_pool_release(p, b);
    st = stats(p);
    assert_int_equal(st.bytes_cached, 1024 + 16 + 32 + 16 + 32 + 16);
    cel_pool_free(p);
}

/* Sizes shaped like nghttp2's traffic: many small objects, a few session-sized
 * and frame-buffer-sized ones, and an occasional big one from any class. */
static size_t workload_size(void)
{
    unsigned r = (unsigned)(rnd() % 100);
    if (r < 70)
        return 16 + rnd() % 300;
    if (r < 80)
        return 9000 + rnd() % 500;
    if (r < 90)
        return 16384 + rnd() % 64;
    return rnd() % (LARGEST + 1);
}

static void test_steady_state(void **state)
{
    (void)state;
    enum { SLOTS = 64 };
    cel_pool *p = cel_pool_new(BIG_CAP);
    void *slot[SLOTS] = {0};
    /* Warm-up: every class cached SLOTS deep covers any mix of SLOTS live blocks. */
    for (size_t n = 1, bs; n <= LARGEST; n = bs + 1) {
        for (int i = 0; i < SLOTS; i++)
            slot[i] = cel_pool_alloc(p, n);
        bs = cel_pool_block_size(p, slot[0]);
        for (int i = 0; i < SLOTS; i++)
            cel_pool_release(p, slot[i]);
    }
    memset(slot, 0, sizeof(slot));
    cel_pool_stats s0 = stats(p);

    rng_state = 0x1234567;
    for (int i = 0; i < 100000; i++) {
        unsigned k = (unsigned)(rnd() % SLOTS);
        if (slot[k] && rnd() % 4 == 0) {
            slot[k] = cel_pool_realloc(p, slot[k], workload_size());
            assert_non_null(slot[k]);
        } else if (slot[k]) {
            cel_pool_release(p, slot[k]);
            slot[k] = NULL;
        } else {
            slot[k] = rnd() % 3 ? cel_pool_alloc(p, workload_size())
                                : cel_pool_calloc(p, 1, workload_size());
            assert_non_null(slot[k]);
            *(unsigned char *)slot[k] = 1;
        }
    }
    cel_pool_stats s1 = stats(p);
    assert_int_equal(s1.sys_allocs, s0.sys_allocs);
    assert_int_equal(s1.sys_frees, s0.sys_frees);
    assert_true(s1.allocs > s0.allocs + 50000);
    for (int i = 0; i < SLOTS; i++)
        cel_pool_release(p, slot[i]);
    assert_int_equal(stats(p).bytes_cached, s0.bytes_cached);
    cel_pool_free(p);
}

/* Pages of the pool's span: a calloc from pages never used costs no resident
 * memory (nghttp2's stream map on an idle connection); a reused block is
 * zeroed; over the cache, pages go back to the kernel and still read zero. */
static void test_pages(void **state)
{
    (void)state;
    cel_pool *p = cel_pool_new(64 << 10);
    /* ASan builds keep libc blocks (and their redzones); the rest of the test
     * holds either way. */
    int paged = cel_pool_uses_pages(p);
#if defined(__SANITIZE_ADDRESS__)
    assert_false(paged);
#else
    assert_true(paged);
#endif
    unsigned char *a = cel_pool_calloc(p, 1, 4096);
    unsigned char *b = cel_pool_calloc(p, 1, 16394); /* nghttp2's frame buffer */
    assert_non_null(a);
    assert_non_null(b);
    if (paged) {
        assert_int_equal(cel_pool_block_size(p, b), 5 * 4096);
        unsigned char vec[5];
        assert_int_equal(mincore(b, 5 * 4096, vec), 0);
        for (int i = 0; i < 5; i++)
            assert_int_equal(vec[i] & 1, 0); /* not resident: never touched */
    }
    for (size_t i = 0; i < 16394; i++)
        assert_int_equal(b[i], 0);
    memset(a, 0xee, 4096);
    memset(b, 0xee, cel_pool_block_size(p, b));
    cel_pool_release(p, a);
    cel_pool_release(p, b);
    /* reused, zeroed on calloc */
    unsigned char *c = cel_pool_calloc(p, 1, 4000);
    assert_ptr_equal(c, a);
    for (size_t i = 0; i < 4000; i++)
        assert_int_equal(c[i], 0);
    /* realloc within the block keeps it, past it moves the bytes */
    memset(c, 7, 4000);
    assert_ptr_equal(cel_pool_realloc(p, c, 4096), c);
    unsigned char *d = cel_pool_realloc(p, c, 9000);
    assert_non_null(d);
    assert_ptr_not_equal(d, c);
    for (size_t i = 0; i < 4000; i++)
        assert_int_equal(d[i], 7);
    cel_pool_release(p, d);
    /* a 64 KiB cache holds few of these: the rest are given back, and come back zero */
    cel_pool_stats s0 = stats(p);
    unsigned char *big[8];
    for (int i = 0; i < 8; i++) {
        big[i] = cel_pool_alloc(p, 60000);
        memset(big[i], 0xcc, 60000);
    }
    for (int i = 0; i < 8; i++)
        cel_pool_release(p, big[i]);
    cel_pool_stats s1 = stats(p);
    assert_true(s1.bytes_cached <= 64 << 10);
    assert_true(s1.sys_frees > s0.sys_frees); /* given back: madvise, or free() */
    for (int i = 0; i < 8; i++) {
        unsigned char *z = cel_pool_calloc(p, 1, 60000);
        for (size_t k = 0; k < 60000; k += 97)
            assert_int_equal(z[k], 0);
        big[i] = z;
    }
    for (int i = 0; i < 8; i++)
        cel_pool_release(p, big[i]);
    cel_pool_free(p);
}

int main(void)
{
    cmocka_set_message_output(CM_OUTPUT_TAP);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reuse),
        cmocka_unit_test(test_class_boundaries),
        cmocka_unit_test(test_large),
        cmocka_unit_test(test_calloc_zeroes),
        cmocka_unit_test(test_realloc_keeps_data),
        cmocka_unit_test(test_cap),
        cmocka_unit_test(test_counts),
        cmocka_unit_test(test_steady_state),
        cmocka_unit_test(test_pages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
