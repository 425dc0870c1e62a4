/* Listening sockets: one per worker per listen address, with SO_REUSEPORT so
 * the kernel spreads connections over workers and no lock guards accept. */
#ifndef CEL_LISTENER_H
#define CEL_LISTENER_H

#include <stddef.h>

#include "config.h"

#define CEL_LISTEN_BACKLOG 4096

/* A bound, listening, non-blocking socket for L, or -1 with a message in ERR. */
int cel_listener_open(const cel_listen *l, char *err, size_t errlen);

#endif
