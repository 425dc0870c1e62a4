/*
 * fuzz_config: cel_config_load on arbitrary YAML. It must answer a config or an
 * error ("FILE:LINE:COLUMN: message"), never crash, leak or hang; a load that
 * takes more than SLOW_SECONDS (no config of a few KiB comes near) counts as a
 * hang, so that a replay outside libFuzzer catches it too. The loader takes a
 * path: the input goes to one memfd per process, rewritten for each input and
 * loaded as /proc/self/fd/N (a temporary file in $TMPDIR or /tmp, removed at
 * exit, where memfds are missing).
 *
 * Loading may touch the world outside the file: `static: { file: X }` reads X,
 * `module:` routes (and `modules_dir`) dlopen shared objects and run their
 * init, and a listener's `tls:` reads certificate, key and OCSP files (a FIFO
 * or device there would block). A fuzzer must not open arbitrary paths or run
 * code from them, so inputs that could name those keys are skipped (return 0)
 * before loading:
 *   - any input with the bytes "module", "file" or "tls" anywhere;
 *   - any input in which a YAML scalar, as libyaml decodes it, contains one of
 *     those words: that catches them spelt with escapes ("\x6dodule",
 *     "fi\<newline>le") or in UTF-16, which the plain byte search misses.
 * The scan uses the same libyaml as the loader, and the loader parses the whole
 * document before it acts on any of it, so an input the scan could not read to
 * its end is refused by the loader too.
 *
 * `log: { access: { path: P } }` opens (and creates) the file P at load. Inputs
 * where, in the document as libyaml loads it (aliases resolved, as the loader
 * sees them), a log.access mapping has a path other than "stderr", "stdout" or
 * "off" are skipped as well; the access log formats stay fuzzed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <yaml.h>

#include "config.h"
#include "fuzz.h"

#define SLOW_SECONDS 2.0

static char path[64];
static int fd = -1;
static int on_disk; /* a file to remove at exit (no memfd) */

static void cleanup(void)
{
    if (on_disk)
        unlink(path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    if (fd >= 0)
        return 0;
    /* A memfd, named by its /proc path: as fast as tmpfs (a file on disk costs
     * two thirds of the speed) and nothing left behind when a run dies. */
    fd = memfd_create("fuzz_config.yaml", MFD_CLOEXEC);
    if (fd >= 0) {
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        return 0;
    }
    const char *dir = getenv("TMPDIR");
    snprintf(path, sizeof(path), "%s/fuzz_config.XXXXXX.yaml",
             dir && strlen(dir) < 32 ? dir : "/tmp");
    fd = mkstemps(path, 5);
    if (fd < 0) {
        perror("fuzz_config: mkstemps");
        exit(1);
    }
    on_disk = 1;
    atexit(cleanup);
    return 0;
}

static int has(const void *p, size_t n, const char *word)
{
    return memmem(p, n, word, strlen(word)) != NULL;
}

/* Keys whose values name files to read or code to load. */
static const char *const outside_words[] = {"module", "file", "tls"};

static int has_outside_word(const void *p, size_t n)
{
    for (size_t i = 0; i < sizeof(outside_words) / sizeof(outside_words[0]); i++)
        if (has(p, n, outside_words[i]))
            return 1;
    return 0;
}

static int names_outside_world(const uint8_t *data, size_t size)
{
    if (has_outside_word(data, size))
        return 1;
    yaml_parser_t parser;
    yaml_event_t ev;
    int found = 0, done = 0;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, data, size);
    while (!found && !done) {
        if (!yaml_parser_parse(&parser, &ev))
            break;
        if (ev.type == YAML_SCALAR_EVENT)
            found = has_outside_word(ev.data.scalar.value, ev.data.scalar.length);
        done = ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    return found;
}

static yaml_node_t *key_value(yaml_document_t *doc, yaml_node_pair_t *p, const char *name)
{
    yaml_node_t *k = yaml_document_get_node(doc, p->key);
    if (!k || k->type != YAML_SCALAR_NODE || strcmp((const char *)k->data.scalar.value, name))
        return NULL;
    return yaml_document_get_node(doc, p->value);
}

static int is_mapping(const yaml_node_t *n)
{
    return n && n->type == YAML_MAPPING_NODE;
}

/* Whether log.access names a file to open (or create). */
static int opens_access_log(const uint8_t *data, size_t size)
{
    /* without the word, an escape or a UTF-16 byte order mark, no key says "access" */
    int utf16 =
        size >= 2 && ((data[0] == 0xfe && data[1] == 0xff) || (data[0] == 0xff && data[1] == 0xfe));
    if (!has(data, size, "access") && !has(data, size, "\\") && !utf16)
        return 0;
    yaml_parser_t parser;
    yaml_document_t doc;
    int found = 0;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, data, size);
    if (!yaml_parser_load(&parser, &doc)) {
        yaml_parser_delete(&parser);
        return 0; /* the loader refuses it the same way */
    }
    yaml_parser_delete(&parser);
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    for (yaml_node_pair_t *p = is_mapping(root) ? root->data.mapping.pairs.start : NULL;
         p && p < root->data.mapping.pairs.top && !found; p++) {
        yaml_node_t *log = key_value(&doc, p, "log");
        for (yaml_node_pair_t *q = is_mapping(log) ? log->data.mapping.pairs.start : NULL;
             q && q < log->data.mapping.pairs.top && !found; q++) {
            yaml_node_t *acc = key_value(&doc, q, "access");
            for (yaml_node_pair_t *r = is_mapping(acc) ? acc->data.mapping.pairs.start : NULL;
                 r && r < acc->data.mapping.pairs.top && !found; r++) {
                yaml_node_t *v = key_value(&doc, r, "path");
                const char *s = v && v->type == YAML_SCALAR_NODE
                                    ? (const char *)v->data.scalar.value
                                    : "stderr";
                found = v && strcmp(s, "stderr") && strcmp(s, "stdout") && strcmp(s, "off");
            }
        }
    }
    yaml_document_delete(&doc);
    return found;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fd < 0)
        LLVMFuzzerInitialize(NULL, NULL);
    if (names_outside_world(data, size) || opens_access_log(data, size))
        return 0;
    if (ftruncate(fd, 0) || pwrite(fd, data, size, 0) != (ssize_t)size) {
        perror("fuzz_config: writing the input");
        abort();
    }
    char err[512];
    err[0] = '\0';
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cel_config *cfg = cel_config_load(path, err, sizeof(err));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    FUZZ_CHECK(took < SLOW_SECONDS, "cel_config_load took %.1f s for %zu bytes (%s)", took, size,
               cfg ? "loaded" : err);
    if (cfg) {
        FUZZ_CHECK(cfg->router && cfg->nlisten > 0 && cfg->nworkers > 0 && cfg->cpus,
                   "a loaded config lacks router, listen or workers");
        for (size_t i = 0; i < cfg->nroutes; i++)
            FUZZ_CHECK(cfg->routes[i].handler && cfg->routes[i].pattern && cfg->routes[i].methods,
                       "route %zu is incomplete", i);
        cel_config_unref(cfg);
    } else {
        /* every refusal says where: "FILE:LINE:COLUMN: message" */
        size_t n = strlen(path);
        unsigned line = 0, col = 0;
        int used = 0;
        FUZZ_CHECK(strncmp(err, path, n) == 0 &&
                       sscanf(err + n, ":%u:%u: %n", &line, &col, &used) == 2 && used > 0 &&
                       line > 0 && col > 0 && err[n + (size_t)used] != '\0',
                   "error not in FILE:LINE:COLUMN: form: %s", err);
    }
    return 0;
}
