/*
 * Worker threads: each owns an event base pinned to one CPU, its own listening
 * sockets (SO_REUSEPORT), and every connection it accepts. The main thread talks
 * to a worker only through cel_worker_stop/cel_worker_wake, which post to the
 * worker's eventfd.
 */
#ifndef CEL_WORKER_H
#define CEL_WORKER_H

#include <pthread.h>
#include <stdatomic.h>

#include "conn.h"

typedef struct cel_worker {
    cel_conn_host host; /* first: conn callbacks get back to the worker from it */
    cel_env env;
    unsigned id;
    int cpu; /* -1: not pinned */
    pthread_t tid;
    int *lfds; /* one listening socket per listen address, owned */
    size_t nlfds;
    struct event *levs;
    int paused; /* accepting paused: connection limit or out of descriptors */
    struct event resume_ev;
    int efd; /* eventfd the main thread writes to */
    struct event wake_ev;
    atomic_int stop;
    int stopping;
    uint32_t shutdown_timeout_ms;
    struct event stop_ev;
    cel_conn *conns;
    size_t nconns;
} cel_worker;

/* Prepares W to serve CFG's listeners (LFDS, owned from now on) and starts its thread. */
int cel_worker_start(cel_worker *w, unsigned id, int cpu, int *lfds, size_t nlfds,
                     cel_config *cfg, char *err, size_t errlen);
/* Asks W to stop gracefully: no more accepts, GOAWAY, drain, exit. */
void cel_worker_stop(cel_worker *w);
/* Nudges W to look at the published generation now. */
void cel_worker_wake(cel_worker *w);
/* Waits for W's thread to end and frees what it owns. */
void cel_worker_join(cel_worker *w);

#endif
