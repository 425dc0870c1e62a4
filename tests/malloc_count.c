/*
 * An LD_PRELOAD library that counts a whole process's heap calls, the
 * libraries' too (zlib, brotli, zstd, libevent): allocations (malloc,
 * calloc, realloc, the aligned ones) and frees of a non-NULL pointer. The
 * counts are two 64-bit words at the start of the file named by
 * $CEL_MALLOC_COUNT_FILE, mapped shared, so that a test reads them while
 * the process runs. glibc only (it forwards to __libc_malloc and kin); not
 * for sanitizer builds, whose own interceptors must come first.
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

void *__libc_malloc(size_t n);
void *__libc_calloc(size_t k, size_t n);
void *__libc_realloc(void *p, size_t n);
void *__libc_memalign(size_t align, size_t n);
void __libc_free(void *p);

static uint64_t *counts;

__attribute__((constructor)) static void setup(void)
{
    const char *path = getenv("CEL_MALLOC_COUNT_FILE");
    if (!path)
        return;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    if (ftruncate(fd, 4096) == 0) {
        void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p != MAP_FAILED)
            counts = p;
    }
    close(fd);
}

static void count(int which)
{
    if (counts)
        __atomic_fetch_add(&counts[which], 1, __ATOMIC_RELAXED);
}

void *malloc(size_t n)
{
    count(0);
    return __libc_malloc(n);
}

void *calloc(size_t k, size_t n)
{
    count(0);
    return __libc_calloc(k, n);
}

void *realloc(void *p, size_t n)
{
    count(0);
    return __libc_realloc(p, n);
}

void *memalign(size_t align, size_t n)
{
    count(0);
    return __libc_memalign(align, n);
}

void *aligned_alloc(size_t align, size_t n)
{
    count(0);
    return __libc_memalign(align, n);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    if (align < sizeof(void *) || (align & (align - 1)))
        return EINVAL;
    count(0);
    void *p = __libc_memalign(align, n);
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}

void free(void *p)
{
    if (p)
        count(1);
    __libc_free(p);
}
