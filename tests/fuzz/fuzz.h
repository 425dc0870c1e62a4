/*
 * What every fuzz target shares. A target defines LLVMFuzzerTestOneInput (and,
 * when it needs one-time setup, LLVMFuzzerInitialize) and is linked either with
 * libFuzzer (scripts/fuzz: clang, -fsanitize=fuzzer) or with replay.c (meson:
 * any compiler, replays the checked-in corpus and crash inputs as a test).
 *
 * A broken invariant calls fuzz_fail, which aborts: libFuzzer then saves the
 * input, and a replay test fails.
 */
#ifndef CEL_FUZZ_H
#define CEL_FUZZ_H

#include <stddef.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

__attribute__((noreturn, format(printf, 1, 2))) static inline void fuzz_fail(const char *fmt, ...);

static inline void fuzz_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fuzz invariant broken: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fuzz_fail(__VA_ARGS__);                                                                \
    } while (0)

/* A heap copy of exactly N bytes (plus a NUL that is not part of it when Z), so
 * that ASan sees a read past the end of a field instead of the next field. */
static inline char *fuzz_dup(const void *p, size_t n, int z)
{
    char *d = malloc(n + (z ? 1 : 0) + (n == 0 && !z));
    if (!d)
        abort();
    if (n)
        memcpy(d, p, n);
    if (z)
        d[n] = '\0';
    return d;
}

#endif
