/* Listening sockets: one per worker per listen address, with SO_REUSEPORT so
 * the kernel spreads connections over workers and no lock guards accept. */
#ifndef CEL_LISTENER_H
#define CEL_LISTENER_H

#include <stddef.h>

#include "config.h"

#define CEL_LISTEN_BACKLOG 4096

/* A bound, listening, non-blocking socket for L, or -1 with a message in ERR.
 * A unix socket (one per address, which the workers share through dup) gets
 * L's mode and owner; a stale socket file at its path is replaced. */
int cel_listener_open(const cel_listen *l, char *err, size_t errlen);

/* Removes a unix socket's file (at stop, or when a reload drops it); else nothing. */
void cel_listener_unlink(const cel_listen *l);

/*
 * Whether another socket already holds L's address (any process, any user,
 * our own included): 0 when free, -1 with "address already in use" in ERR.
 * SO_REUSEPORT, which our per-worker sockets need, would otherwise let a
 * second celerisd of the same user join the first one's group and split its
 * traffic. The probe binds a socket without SO_REUSEPORT (SO_REUSEADDR, so
 * connections of an earlier process in TIME_WAIT do not count) and closes it.
 * Call it only for addresses this process does not hold yet (cel_listen_overlap).
 * Two daemons started in the same instant can both pass it: it catches the
 * running one, not a race.
 */
int cel_listener_probe(const cel_listen *l, char *err, size_t errlen);

/* Whether A and B cannot both be bound by different processes: the same family
 * and port, and the same address or either one the wildcard. */
int cel_listen_overlap(const cel_listen *a, const cel_listen *b);

#endif
