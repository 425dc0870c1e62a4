#include "middleware.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "router.h"

_Static_assert(offsetof(cel_mw_chain, id_src) == 0, "cel_exchange_id reads the chain's first word");

/* Names differ in length or first octet far more often than not: those two
 * tests spare most memcmp calls. */
static inline int same(const cel_field *f, cel_str name)
{
    return f->name_len == name.n && f->name[0] == name.p[0] && memcmp(f->name, name.p, name.n) == 0;
}

int cel_fields_add(cel_fields *f, cel_str name, cel_str value)
{
    if (f->n == f->cap)
        return CEL_ETOOBIG;
    f->v[f->n++] = cel_field_of(name, value);
    return 0;
}

int cel_fields_set_flags(cel_fields *f, cel_str name, cel_str value, uint8_t extra)
{
    for (size_t i = 0; i < f->n; i++) {
        if (!same(&f->v[i], name))
            continue;
        f->v[i].value = value.p;
        f->v[i].value_len = value.n;
        f->v[i].flags = CEL_FIELD_KEPT | extra;
        size_t k = i + 1;
        for (size_t j = i + 1; j < f->n; j++)
            if (!same(&f->v[j], name))
                f->v[k++] = f->v[j];
        f->n = k;
        return 0;
    }
    if (f->n == f->cap)
        return CEL_ETOOBIG;
    f->v[f->n] = cel_field_of(name, value);
    f->v[f->n++].flags |= extra;
    return 0;
}

int cel_fields_set(cel_fields *f, cel_str name, cel_str value)
{
    return cel_fields_set_flags(f, name, value, 0);
}

void cel_fields_remove(cel_fields *f, cel_str name)
{
    size_t k = 0;
    for (size_t j = 0; j < f->n; j++)
        if (!same(&f->v[j], name))
            f->v[k++] = f->v[j];
    f->n = k;
}

cel_mw_chain *cel_mw_chain_new(size_t n, int owns)
{
    cel_mw_chain *c = calloc(1, sizeof(*c) + n * sizeof(c->v[0]));
    if (c) {
        c->owns = owns;
        c->request_skip = CEL_M_ALL;
    }
    return c;
}

void cel_mw_chain_push(cel_mw_chain *c, cel_mw *m)
{
    c->v[c->n++] = m;
    if (m->ops->request) {
        c->phases |= CEL_MW_REQUEST;
        if (!m->ops->id)
            c->request_skip &= ~(m->ops->request_methods ? m->ops->request_methods : CEL_M_ALL);
    }
    if (m->ops->head) {
        c->head1 = c->phases & CEL_MW_HEAD ? NULL : m;
        c->phases |= CEL_MW_HEAD;
    }
    if (m->ops->id)
        c->id_src = m->ops->id(m);
}

static int replaced(const cel_mw *g, const cel_mw_chain *own)
{
    for (size_t i = 0; i < own->n; i++)
        if ((own->v[i]->ops->flags & CEL_MW_ONE) && strcmp(own->v[i]->kind, g->kind) == 0)
            return 1;
    return 0;
}

int cel_mw_chain_join(cel_mw_chain *global, const cel_mw_chain *own, cel_mw_chain **out)
{
    size_t ng = global ? global->n : 0, no = own ? own->n : 0;
    *out = NULL;
    if (no == 0) {
        *out = ng ? global : NULL;
        return 0;
    }
    cel_mw_chain *c = cel_mw_chain_new(ng + no, 0);
    if (!c)
        return CEL_ENOMEM;
    for (size_t i = 0; i < ng; i++)
        if (!replaced(global->v[i], own))
            cel_mw_chain_push(c, global->v[i]);
    for (size_t i = 0; i < no; i++)
        if (own->v[i]->ops->request || own->v[i]->ops->head)
            cel_mw_chain_push(c, own->v[i]);
    if (c->n == 0) {
        free(c);
        c = NULL;
    }
    *out = c;
    return 0;
}

void cel_mw_chain_free(cel_mw_chain *c)
{
    if (!c)
        return;
    if (c->owns)
        for (size_t i = 0; i < c->n; i++)
            c->v[i]->ops->destroy(c->v[i]);
    free(c);
}
