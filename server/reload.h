/*
 * The running server as the main thread manages it: the published generation,
 * the listening sockets (per worker, SO_REUSEPORT, or shared ones passed in by
 * systemd), and the workers. Start, reload and stop apply a generation to them;
 * a reload that fails anywhere changes nothing.
 *
 * Main thread only.
 */
#ifndef CEL_RELOAD_H
#define CEL_RELOAD_H

#include "config.h"
#include "worker.h"

typedef struct cel_slot {
    cel_listen addr;
    int shared_fd; /* passed by systemd: every worker accepts on it; -1 otherwise */
    int *fds;      /* per worker (nworkers), when not shared; owned by the workers */
} cel_slot;

typedef struct cel_server {
    cel_config *cfg;
    cel_worker **workers;
    unsigned nworkers;
    cel_worker **retiring; /* stopped by a reload that lowered `workers`, not yet joined */
    unsigned nretiring;
    cel_slot *slots;
    size_t nslots;
    int *inherited; /* LISTEN_FDS from systemd, kept open for the process lifetime */
    size_t ninherited;
    unsigned long reloads_ok, reloads_failed;
    char last_error[512];
} cel_server;

/* Opens the listeners of CFG (takes the reference) and starts its workers.
 * 0, or -1 with the reason logged and nothing left running. */
int cel_server_start(cel_server *s, cel_config *cfg);

/* Loads the config file again and applies it. 0, or -1 with the reason in
 * s->last_error and the old generation still serving. */
int cel_server_reload(cel_server *s);

/* Graceful stop of every worker, bounded by shutdown_timeout; frees everything. */
void cel_server_stop(cel_server *s);

/* Joins retired workers that have finished draining. */
void cel_server_reap(cel_server *s);

/* Connections open right now, over all workers. */
size_t cel_server_connections(const cel_server *s);

/* Whether every worker's loop has ticked since the last call (for the watchdog;
 * workers tick once a second, so call it at most that often). */
int cel_server_alive(cel_server *s);

#endif
