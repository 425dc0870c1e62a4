/*
 * The `errors:` block: the bodies of answers with an error status (400-599),
 * whoever gave them (the server's own 404, 405, 413, 431, 500..., a
 * middleware's, a module's, a route's). Each status has at most one body,
 * made by a handler (static or json) built from the block; the answer keeps
 * its status and headers and takes the body, its content type and the
 * handler's headers. Built by config (conf_errors.c), applied by the body
 * phase (phase.c) to whole answers; immutable once loaded.
 */
#ifndef CEL_ERRORS_H
#define CEL_ERRORS_H

#include "handler.h"

#define CEL_ERRORS_FIRST 400
#define CEL_ERRORS_N 200

typedef struct cel_errors {
    cel_handler *by_status[CEL_ERRORS_N]; /* status - 400; NULL: the answer's own body */
    cel_handler **owned;                  /* each handler once, for destroy */
    size_t nowned;
} cel_errors;

/* Gives RES (a whole answer to X with RES->status) the configured body, if
 * E has one for its status. Memory from X's arena or the generation; when
 * the body cannot be made, RES stays as it was. */
void cel_errors_apply(const cel_errors *e, cel_exchange *x, cel_response *res);
void cel_errors_free(cel_errors *e);

#endif
