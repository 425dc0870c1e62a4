/*
 * A file's bytes read once and shared: every `static: { file: }` route that
 * names the same file (same device, inode, size and mtime), in one
 * configuration or across a reload, holds one copy, not one each.
 *
 * Thread rules: get and unref may run on any thread (config loads on the
 * main thread, a generation may be freed elsewhere); a process-wide table
 * under a mutex finds the copies, which are read-only once made.
 */
#ifndef CEL_FILEBUF_H
#define CEL_FILEBUF_H

#include <stddef.h>

#include "common.h"

typedef struct cel_filebuf cel_filebuf;

/* The bytes of regular file PATH, shared with whoever holds them already.
 * 0 and a reference in *OUT, or -errno (-EINVAL: not a regular file; -EIO: a
 * short read). */
int cel_filebuf_get(const char *path, cel_filebuf **out);
const char *cel_filebuf_data(const cel_filebuf *b);
size_t cel_filebuf_len(const cel_filebuf *b);
/* Drops a reference; the last one frees the bytes. */
void cel_filebuf_unref(cel_filebuf *b);

#endif
