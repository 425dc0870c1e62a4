/*
 * From a request's path to a file under a directory, never outside it: the
 * path mapping the `dir:` handler (handler_dir.c) and its fuzz target use.
 *
 * The mapping is pure (cel_fspath_map). Opening (cel_fspath_open) resolves
 * the mapped path under the root's descriptor so that a symlink cannot lead
 * out of the root either, unless the root allows it.
 */
#ifndef CEL_FSPATH_H
#define CEL_FSPATH_H

#include <stddef.h>

#include "common.h"

/* The longest mapped path (bytes, without the NUL) cel_fspath_map writes. */
#define CEL_FSPATH_MAX 1024

/*
 * Maps RAW (N bytes of a URL path below the root, still percent-encoded) to
 * a path relative to the root into OUT (CAP bytes, NUL-terminated), its
 * length in *LEN. Percent-decoded exactly once ("%252e" is the name "%2e");
 * then split at '/': empty and "." segments are dropped, so the result has
 * no leading, trailing or doubled '/'; the root itself is "".
 * Refused with CEL_EINVAL: a ".." segment (also "%2e%2e"), a NUL byte (also
 * "%00"), a backslash (also "%5c"), an escape that is not '%' and two hex
 * digits. CEL_ETOOBIG when the result needs more than CAP - 1 bytes.
 * *SLASH (may be NULL) is 1 when RAW ends in '/' (a directory was asked for).
 */
int cel_fspath_map(const char *raw, size_t n, char *out, size_t cap, size_t *len, int *slash);

/*
 * Does RAW (N bytes) map to itself under cel_fspath_map? 1 when it is not
 * empty, starts with neither '/' nor '.', ends without '/', holds no '%',
 * backslash or NUL, and no '/' in it is followed by '/' or '.': then its
 * segments are neither empty, ".", nor "..", and nothing is decoded. Else 0
 * (cel_fspath_map decides). A check the usual path passes in one short loop.
 */
int cel_fspath_plain(const char *raw, size_t n);

/* A directory files are served from. FOLLOW: symlinks may lead anywhere. */
typedef struct cel_fsroot {
    int fd;     /* O_PATH | O_DIRECTORY descriptor of the root */
    char *real; /* its canonical path (for the check without openat2) */
    size_t real_len;
    int follow;
} cel_fsroot;

/* Opens PATH as a root. 0, or -errno with the root untouched. */
int cel_fsroot_init(cel_fsroot *r, const char *path, int follow);
void cel_fsroot_deinit(cel_fsroot *r);

/*
 * Opens REL (from cel_fspath_map; "" is the root) read-only, non-blocking
 * and close-on-exec. Unless the root follows symlinks, a path that resolves
 * outside the root (through a symlink: relative ones that stay inside are
 * fine, absolute ones are refused) fails with -EXDEV; openat2's
 * RESOLVE_BENEATH decides where the kernel has it, else the opened file's
 * /proc/self/fd link is checked against the root's canonical path.
 * Returns the descriptor (the caller's) or -errno (-ENOENT, -ENOTDIR,
 * -EACCES, -EXDEV, -ELOOP, ...).
 */
int cel_fspath_open(const cel_fsroot *r, const char *rel);

#endif
