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

struct cel_wlistener;

typedef struct cel_worker {
    cel_conn_host host; /* first: conn callbacks get back to the worker from it */
    cel_env env;
    unsigned id;
    int cpu; /* -1: not pinned */
    pthread_t tid;
    struct cel_wlistener *listeners;
    atomic_size_t conns_now;    /* for status lines; written by the worker only */
    atomic_uint_fast64_t beats; /* heartbeat: the loop is alive */
    uint64_t beats_seen;        /* main thread's last reading of beats */
    struct event beat_ev;
    int paused; /* accepting paused: connection limit or out of descriptors */
    struct event resume_ev;
    time_t accept_logged;          /* when an accept failure was last logged */
    unsigned long accept_failures; /* since then */
    int env_live;                  /* env set up and not yet torn down (the thread tears it down) */
    struct event wake_ev;          /* on env.efd: commands, tasks, new generations */
    atomic_int stop;
    int stopping;
    struct event stop_ev;
    cel_conn *conns;
    size_t nconns;
    int joined;                        /* its thread has been joined */
    struct cel_worker *next_abandoned; /* see cel_worker_abandon */
} cel_worker;

/* Sets W up on generation CFG and starts its thread, accepting on nothing yet. */
int cel_worker_start(cel_worker *w, unsigned id, int cpu, cel_config *cfg, char *err,
                     size_t errlen);
/* Makes W accept on listening socket FD (non-blocking). When OWNED, W closes it
 * when it is removed or W stops; otherwise FD is shared and the caller closes it
 * after every worker has let go of it (see cel_worker_remove_listener). */
void cel_worker_add_listener(cel_worker *w, int fd, int owned);
/* Makes W stop accepting on FD: it first accepts what is queued on it. */
void cel_worker_remove_listener(cel_worker *w, int fd);
/* Re-pins W to CPU (-1: no pinning). */
void cel_worker_pin(cel_worker *w, int cpu);
/* Asks W to stop gracefully: no more accepts, GOAWAY, drain, exit. */
void cel_worker_stop(cel_worker *w);
/* Tells W, before a generation without a place for it is published, that it
 * is leaving: it keeps the generation it has (its connections look for a newer
 * one before they read). cel_worker_stop follows. */
void cel_worker_mark_leaving(cel_worker *w);
/* Nudges W to look at the published generation now. */
void cel_worker_wake(cel_worker *w);
/* Waits for W's thread to end and frees what it owns: 1. A stopped worker
 * does not wait for module threads that still hold tokens of its (closed)
 * requests; while some are out W is kept and this returns 0: call
 * cel_worker_try_join again later (it runs the completions that came back,
 * on the calling thread, each finding its request gone), or hand W to
 * cel_worker_abandon when the process ends. */
int cel_worker_join(cel_worker *w);
/* Like cel_worker_join when W has ended already; 0 when it has not, or when
 * tokens are still out. */
int cel_worker_try_join(cel_worker *w);
/* Keeps W, which still has tokens out, for the rest of the process's life:
 * the completions they post are never run. Main thread. */
void cel_worker_abandon(cel_worker *w);

#endif
