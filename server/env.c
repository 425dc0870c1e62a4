#include "env.h"

#include <stdio.h>
#include <stdlib.h>

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

int cel_env_init(cel_env *e, cel_config *cfg)
{
    e->pool = cel_pool_new(8u << 20);
    e->rbuf = malloc(CEL_READ_BUF);
    e->gen = genref_new(e, cfg);
    e->retired = NULL;
    e->date_sec = 0;
    if (!e->pool || !e->rbuf || !e->gen) {
        cel_env_deinit(e);
        return CEL_ENOMEM;
    }
    cel_env_tick(e, time(NULL));
    return 0;
}

void cel_env_deinit(cel_env *e)
{
    if (e->gen) {
        cel_config_unref(e->gen->cfg);
        free(e->gen);
        e->gen = NULL;
    }
    while (e->retired) {
        cel_genref *r = e->retired;
        e->retired = r->next;
        cel_config_unref(r->cfg);
        free(r);
    }
    free(e->rbuf);
    e->rbuf = NULL;
    if (e->pool)
        cel_pool_free(e->pool);
    e->pool = NULL;
}

int cel_env_use(cel_env *e, cel_config *cfg)
{
    if (cfg == e->gen->cfg || cfg->generation < e->gen->cfg->generation)
        return 0;
    cel_genref *r = genref_new(e, cfg);
    if (!r)
        return CEL_ENOMEM;
    cel_genref *old = e->gen;
    e->gen = r;
    if (old->users == 0) {
        cel_config_unref(old->cfg);
        free(old);
    } else {
        old->next = e->retired;
        e->retired = old;
    }
    return 0;
}

void cel_env_retire(cel_env *e, cel_genref *r)
{
    for (cel_genref **p = &e->retired; *p; p = &(*p)->next) {
        if (*p == r) {
            *p = r->next;
            cel_config_unref(r->cfg);
            free(r);
            return;
        }
    }
}

void cel_env_tick(cel_env *e, time_t now)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    if (now == e->date_sec)
        return;
    struct tm tm;
    gmtime_r(&now, &tm);
    int n = snprintf(e->date, sizeof(e->date), "%s, %02d %s %04d %02d:%02d:%02d GMT",
                     days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900,
                     tm.tm_hour, tm.tm_min, tm.tm_sec);
    e->date_len = n > 0 ? (size_t)n : 0;
    e->date_sec = now;
}
