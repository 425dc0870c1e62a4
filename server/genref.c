#include "genref.h"

#include <stdlib.h>

#include "accesslog.h"
#include "log.h"

static cel_genref *genref_new(cel_env *e, cel_config *cfg)
{
    cel_genref *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->env = e;
    cel_config_ref(cfg);
    r->cfg = cfg;
    return r;
}

static void genref_free(cel_env *e, cel_genref *r)
{
    if (!e->orphaned)
        cel_genref_detach(e, r->cfg);
    cel_config_unref(r->cfg);
    free(r);
}

int cel_genref_init(cel_env *e, cel_config *cfg)
{
    e->retired = NULL;
    e->gen = genref_new(e, cfg);
    return e->gen ? 0 : CEL_ENOMEM;
}

void cel_genref_deinit(cel_env *e)
{
    /* Tasks still queued may drop the last user of a retired generation. */
    cel_env_run_tasks(e);
    if (e->gen) {
        genref_free(e, e->gen);
        e->gen = NULL;
    }
    while (e->retired) {
        cel_genref *r = e->retired;
        e->retired = r->next;
        genref_free(e, r);
    }
}

int cel_genref_use(cel_env *e, cel_config *cfg)
{
    if (cfg == e->gen->cfg || cfg->generation < e->gen->cfg->generation)
        return 0;
    cel_genref *r = genref_new(e, cfg);
    if (!r)
        return CEL_ENOMEM;
    cel_genref_attach(e, cfg);
    cel_genref *old = e->gen;
    e->gen = r;
    if (old->users == 0) {
        genref_free(e, old);
    } else {
        old->next = e->retired;
        e->retired = old;
    }
    return 0;
}

void cel_genref_retire(cel_env *e, cel_genref *r)
{
    for (cel_genref **p = &e->retired; *p; p = &(*p)->next) {
        if (*p == r) {
            *p = r->next;
            genref_free(e, r);
            return;
        }
    }
}

void cel_genref_release(void *arg)
{
    cel_genref_drop(arg);
}

void cel_genref_hold_exchange(cel_exchange *x, cel_body_owner *hold)
{
    hold->release = cel_genref_release;
    hold->arg = cel_genref_take(x->gen);
}

void cel_genref_orphan(cel_env *e)
{
    cel_genref_detach(e, e->gen->cfg);
    for (cel_genref *r = e->retired; r; r = r->next)
        cel_genref_detach(e, r->cfg);
    cel_env_orphan(e);
}

void cel_genref_attach(cel_env *e, cel_config *cfg)
{
    for (size_t i = 0; i < cfg->nroutes; i++) {
        cel_handler *h = cfg->routes[i].handler;
        if (h->worker_init && h->worker_init(h, e))
            cel_log(CEL_LOG_ERROR, "worker %u: %s handler of route \"%s\": worker init failed",
                    e->worker_id, h->type, cfg->routes[i].pattern);
    }
}

void cel_genref_detach(cel_env *e, cel_config *cfg)
{
    for (size_t i = 0; i < cfg->nroutes; i++) {
        cel_handler *h = cfg->routes[i].handler;
        if (h->worker_fini)
            h->worker_fini(h, e);
    }
}

void cel_genref_flush_logs(cel_env *e)
{
    if (e->gen && e->gen->cfg->accesslog)
        cel_accesslog_flush(e->gen->cfg->accesslog, e->worker_id);
    for (cel_genref *r = e->retired; r; r = r->next)
        if (r->cfg->accesslog)
            cel_accesslog_flush(r->cfg->accesslog, e->worker_id);
}
