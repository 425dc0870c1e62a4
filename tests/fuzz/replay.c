/*
 * Runs a fuzz target over files without libFuzzer, so that the checked-in seed
 * corpus and saved crash inputs are regression tests in every build (gcc, with
 * or without sanitizers): tests/fuzz/meson.build links each target with this.
 *
 *   fuzz_NAME_replay [--prefix P] [--allow-empty] PATH...
 *
 * Each PATH is a file or a directory (its regular files, in name order; with
 * --prefix only those whose name starts with P). A broken invariant aborts, as
 * under libFuzzer; an input that runs longer than FUZZ_REPLAY_TIMEOUT seconds
 * (default 10, libFuzzer's -timeout in scripts/fuzz) ends the process by
 * SIGALRM. Otherwise prints "N inputs" and exits 0. A PATH that does not exist
 * fails, and so does a run of no input unless --allow-empty says that none is
 * fine (tests/fuzz/crashes/ may hold nothing for a target; a seed corpus may not).
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

/* Targets without setup do not define it. */
#if defined(__GNUC__)
#pragma weak LLVMFuzzerInitialize
#endif

static size_t ran;
static unsigned timeout = 10;

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t cap = 4096, n = 0;
    unsigned char *buf = malloc(cap);
    for (size_t k; buf && (k = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += k;
        if (n == cap) {
            unsigned char *b = realloc(buf, cap *= 2);
            if (!b)
                free(buf);
            buf = b;
        }
    }
    fclose(f);
    if (!buf) {
        fprintf(stderr, "replay: %s: out of memory\n", path);
        return -1;
    }
    /* an exact-size copy, as libFuzzer hands it over: reads past the end show */
    unsigned char *in = malloc(n ? n : 1);
    if (!in)
        abort();
    memcpy(in, buf, n);
    free(buf);
    fprintf(stderr, "replay: %s (%zu bytes)\n", path, n);
    alarm(timeout);
    LLVMFuzzerTestOneInput(in, n);
    alarm(0);
    free(in);
    ran++;
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_dir(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.' || (prefix && strncmp(e->d_name, prefix, strlen(prefix))))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            names = realloc(names, cap * sizeof(*names));
            if (!names)
                abort();
        }
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    if (n)
        qsort(names, n, sizeof(*names), by_name);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && run_file(path))
            rc = -1;
        free(names[i]);
    }
    free(names);
    return rc;
}

int main(int argc, char **argv)
{
    const char *prefix = NULL;
    int rc = 0, allow_empty = 0;
    const char *t = getenv("FUZZ_REPLAY_TIMEOUT");
    if (t && atoi(t) > 0)
        timeout = (unsigned)atoi(t);
    if (LLVMFuzzerInitialize)
        LLVMFuzzerInitialize(&argc, &argv);
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (!strcmp(argv[i], "--prefix") && i + 1 < argc) {
            prefix = argv[++i];
            continue;
        }
        if (!strcmp(argv[i], "--allow-empty")) {
            allow_empty = 1;
            continue;
        }
        if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode))
            rc |= run_dir(argv[i], prefix);
        else
            rc |= run_file(argv[i]);
    }
    printf("%zu inputs\n", ran);
    if (!ran && !allow_empty) {
        fprintf(stderr, "replay: no input ran: a corpus must not be empty\n");
        rc = -1;
    }
    return rc ? 1 : 0;
}
