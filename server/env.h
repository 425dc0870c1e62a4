/*
 * What a worker lends to the connections it owns: its allocator, its read
 * buffer, the cached date header, its task inbox. Everything here belongs to
 * one worker thread; nothing is locked (but the inbox).
 *
 * A leaf: it knows nothing of configuration. The worker's references to
 * config generations hang off it (gen, retired) but are genref.h's.
 */
#ifndef CEL_ENV_H
#define CEL_ENV_H

#include <pthread.h>
#include <stdint.h>
#include <sys/time.h>
#include <time.h>

#include "common.h"
#include "pool.h"

struct event_base;

/* Work another thread hands to a worker: runs on the worker, then is done with. */
typedef struct cel_task {
    struct cel_task *next;
    void (*run)(struct cel_task *t);
} cel_task;

struct cel_genref;

#define CEL_READ_BUF (64 * 1024)

typedef struct cel_env {
    unsigned worker_id;
    struct event_base *base;
    int efd; /* eventfd that wakes the worker (tasks, commands, new generations) */
    pthread_mutex_t inbox_lock;
    cel_task *inbox;
    size_t tasks_pending; /* tokens out that will post a task */
    /* The worker's thread has ended with tokens still out (cel_env_orphan):
     * whoever owns the env now runs the tasks they post and frees it once
     * tasks_pending is 0. */
    int orphaned;
    cel_pool *pool;
    struct cel_wstats *stats;   /* this worker's counters; NULL when not counting */
    struct cel_genref *gen;     /* the newest generation this worker has seen */
    struct cel_genref *retired; /* older ones that still have users (genref.h) */
    /* Loop time of the connection event being handled (conn.c sets it on each
     * read, write, flush and timer event): the date header and the access
     * log's time, read without a call into libevent per request. */
    struct timeval now;
    /* CEL_CLOCK in microseconds: request start and end times. Read on each
     * read, write and timer event of a connection, and when a module answers
     * outside its handle call; not on flush events, which follow one of
     * those (or a module's answer) within the same loop pass. libevent's cached time is
     * CLOCK_MONOTONIC_COARSE (a kernel tick, 1-10 ms); this one resolves
     * microseconds, at one clock read per event. */
    uint64_t now_us;
    time_t date_sec;
    char date[32]; /* IMF-fixdate of date_sec */
    size_t date_len;
    unsigned char *rbuf; /* CEL_READ_BUF bytes */
    uint64_t rng[4];     /* cel_env_rand's state */
    /* The worker's compression contexts (codecs.h), made on first use;
     * cel_env_deinit frees them with codecs_free. */
    void *codecs;
    void (*codecs_free)(void *codecs);
} cel_env;

/* One step of xoshiro256** over the state S: 64 random bits. */
static inline uint64_t cel_rand_step(uint64_t s[4])
{
    uint64_t x = s[1] * 5, r = (x << 7 | x >> 57) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = s[3] << 45 | s[3] >> 19;
    return r;
}

/* 64 random bits from the worker's own generator, seeded from getrandom(2)
 * once when the worker starts: no system call per use. Fit for request ids,
 * not for keys. */
static inline uint64_t cel_env_rand(cel_env *e)
{
    return cel_rand_step(e->rng);
}

/* Two cel_env_rand in one: the state is loaded and stored once. */
static inline void cel_env_rand2(cel_env *e, uint64_t *r0, uint64_t *r1)
{
    uint64_t s[4] = {e->rng[0], e->rng[1], e->rng[2], e->rng[3]};
    *r0 = cel_rand_step(s);
    *r1 = cel_rand_step(s);
    e->rng[0] = s[0], e->rng[1] = s[1], e->rng[2] = s[2], e->rng[3] = s[3];
}

#define CEL_CLOCK CLOCK_MONOTONIC

/* Microseconds on CEL_CLOCK (the vDSO: no system call). */
static inline uint64_t cel_clock_us(void)
{
    struct timespec ts;
    clock_gettime(CEL_CLOCK, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Sets up E for worker ID on BASE; creates the eventfd. No generation yet:
 * cel_genref_init gives it one. */
int cel_env_init(cel_env *e, unsigned id, struct event_base *base);
/* Runs the tasks posted so far and frees E; cel_genref_deinit went first. */
void cel_env_deinit(cel_env *e);

/* Refreshes the date header if the second has changed. */
void cel_env_tick(cel_env *e, time_t now);

/* The env of the worker running on the calling thread, or NULL: a token
 * resumed on its own worker runs at once, elsewhere it is posted. */
cel_env *cel_env_self(void);
void cel_env_set_self(cel_env *e);

/* On the worker, as its thread ends with tokens still out (after the
 * handlers' worker_fini: cel_genref_orphan): keeps everything (the pool the
 * tokens live in, the generations they hold, the eventfd they post to), so a
 * late completion lands on memory that is still there. From then on the env
 * belongs to the thread that joined the worker: it calls cel_env_run_tasks
 * (each completion finds its request gone), then cel_genref_deinit and
 * cel_env_deinit once tasks_pending is 0. */
void cel_env_orphan(cel_env *e);

/* Hands T to the worker of E: safe from any thread. */
void cel_env_post(cel_env *e, cel_task *t);
/* On the worker: runs the tasks posted so far. */
void cel_env_run_tasks(cel_env *e);

#endif
