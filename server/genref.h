/*
 * A worker's references to configuration generations: the generation new
 * streams start on and the older ones that still have users (streams, queued
 * body bytes, module completions still out). It sits above config (it names
 * cel_config) and above env, which knows nothing of config and only carries
 * the two lists for it.
 *
 * Counted per worker without atomics: the worker holds one (atomic) reference
 * on each generation it still uses, and counts its own users of it in a plain
 * integer. Everything here runs on the worker's thread.
 */
#ifndef CEL_GENREF_H
#define CEL_GENREF_H

#include <stddef.h>

#include "config.h"
#include "env.h"
#include "exchange.h"

typedef struct cel_genref {
    cel_config *cfg;
    size_t users;
    cel_env *env; /* the worker's env that holds this reference */
    struct cel_genref *next;
} cel_genref;

/* Makes CFG E's current generation (E has none yet). 0 or CEL_ENOMEM. */
int cel_genref_init(cel_env *e, cel_config *cfg);
/* Runs the tasks posted so far, then releases the current generation; retired
 * ones must have no users left. Before cel_env_deinit. */
void cel_genref_deinit(cel_env *e);

/* Switches to CFG if it is newer than the current generation. */
int cel_genref_use(cel_env *e, cel_config *cfg);

/* Whether a generation newer than E's current one has been published. The
 * publisher wakes every worker, but a connection event handled in the same
 * loop pass as that wake-up may come first: readers check this (one atomic
 * load) and switch before they read, so that once a reload is reported done
 * (READY=1) no request is served by the generation it replaced. */
static inline int cel_genref_behind(const cel_env *e)
{
    return cel_config_published_generation() != e->gen->cfg->generation;
}

/* A new user of E's current generation. */
static inline cel_genref *cel_env_hold(cel_env *e)
{
    e->gen->users++;
    return e->gen;
}

/* One more user of R, which the caller already uses. */
static inline cel_genref *cel_genref_take(cel_genref *r)
{
    r->users++;
    return r;
}

void cel_genref_retire(cel_env *e, cel_genref *r);

/* Drops one user of R (which may be retired); frees it when it was the last. */
static inline void cel_genref_drop(cel_genref *r)
{
    if (--r->users == 0 && r != r->env->gen)
        cel_genref_retire(r->env, r);
}

/* cel_body_owner.release for an ARG that is a cel_genref: cel_genref_drop. */
void cel_genref_release(void *arg);

/* The exchange op `hold` of every front end: one more user of X's generation,
 * dropped by HOLD->release. */
void cel_genref_hold_exchange(cel_exchange *x, cel_body_owner *hold);

/* Runs the handlers' worker_init / worker_fini of CFG on this worker. */
void cel_genref_attach(cel_env *e, cel_config *cfg);
void cel_genref_detach(cel_env *e, cel_config *cfg);

/* Writes out this worker's access log buffers of every generation it holds
 * (once a second). */
void cel_genref_flush_logs(cel_env *e);

/* On the worker, as its thread ends with tokens still out: runs the handlers'
 * worker_fini of every generation held, then cel_env_orphan. The generations
 * themselves stay held until cel_genref_deinit. */
void cel_genref_orphan(cel_env *e);

#endif
