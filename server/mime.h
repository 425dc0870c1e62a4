/*
 * File name extension to media type, for the dir handler: the system's
 * /etc/mime.types (Debian's media-types) plus a route's own entries. Built
 * at config load, read-only afterwards (workers share it without a lock).
 */
#ifndef CEL_MIME_H
#define CEL_MIME_H

#include <stddef.h>

#include "common.h"

typedef struct cel_mime cel_mime;

/* The default for a name without a known extension. */
#define CEL_MIME_DEFAULT "application/octet-stream"

/* A table from FILE (mime.types format: "type ext ext ..." lines, '#'
 * comments); a FILE that does not exist gives an empty table. Text types
 * (text/...) are given "; charset=utf-8". The file's entries are parsed once
 * and shared (under a lock, at load only) by every table made from the same
 * file (path, size, mtime); cel_mime_set entries are the table's own. NULL
 * when out of memory. */
cel_mime *cel_mime_new(const char *file);

/* Sets extension EXT (with or without the leading '.', any case) to TYPE,
 * over what the file said. 0 or CEL_ENOMEM. */
int cel_mime_set(cel_mime *m, const char *ext, const char *type);

/* The type for file name NAME (N bytes): by the text after its last '.',
 * compared without case; CEL_MIME_DEFAULT when none. Memory of M. */
cel_str cel_mime_lookup(const cel_mime *m, const char *name, size_t n);

void cel_mime_free(cel_mime *m);

#endif
