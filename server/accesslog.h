/*
 * The access log: one line per finished request, in a named or custom format,
 * written without slowing the request path: each worker appends to a buffer of
 * its own, written out (one write(2) of whole lines, O_APPEND) when it fills or
 * once a second. No lock, no syscall per request.
 *
 * An access log belongs to a configuration generation; its per-worker buffers
 * are written out when the generation is released.
 */
#ifndef CEL_ACCESSLOG_H
#define CEL_ACCESSLOG_H

#include <stdint.h>
#include <time.h>

#include "request.h"

typedef struct cel_accesslog cel_accesslog;

typedef struct cel_access {
    const cel_request *req; /* method, path, query, headers, authority */
    const char *peer;       /* client address, NUL-terminated */
    const char *protocol;   /* "HTTP/2.0" */
    int status;
    uint64_t bytes;       /* response body bytes sent */
    uint64_t duration_us; /* from the first header to the end of the response */
    time_t now;
} cel_access;

/*
 * PATH is a file (opened O_APPEND, created 0640), "stderr" or "stdout".
 * CHECK_ONLY (celerisd -t): the file is not opened for writing nor created;
 * it must open for appending, or, when it does not exist, its directory must
 * let us create it. The result then writes nowhere and is only to be freed.
 * FORMAT is "combined", "common", "json", or a custom format of:
 *   %h client  %t time [10/Oct/2026:13:55:36 +0000]  %r request line  %m method
 *   %U path  %q query (with '?')  %H protocol  %s status  %b body bytes ("-" for 0)
 *   %B body bytes  %D microseconds  %T seconds  %v host  %{name}i request header
 *   %%
 * A custom format needs at least one directive other than %%, so a misspelt
 * name is refused rather than logged as the line's text.
 * NULL with a message in ERR for a bad format or a file that cannot be opened.
 */
cel_accesslog *cel_accesslog_new(const char *path, const char *format, unsigned nworkers,
                                 int check_only, char *err, size_t errlen);
/* Writes out every buffer, closes the file. */
void cel_accesslog_free(cel_accesslog *l);

/* Worker WORKER: formats E into its buffer (written out when nearly full). */
void cel_accesslog_add(cel_accesslog *l, unsigned worker, const cel_access *e);
/* Worker WORKER: writes out its buffer (once a second). */
void cel_accesslog_flush(cel_accesslog *l, unsigned worker);

/* Main thread, SIGUSR1: opens the file again (after logrotate moved it) and
 * puts it in place of the old one under the same descriptor. 0 or -1 (ERR). */
int cel_accesslog_reopen(cel_accesslog *l, char *err, size_t errlen);

#endif
