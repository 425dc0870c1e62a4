#include "phase.h"

#include "config.h"
#include "errors.h"
#include "genref.h"

int cel_phase_request(cel_exchange *x, size_t from, cel_response *res)
{
    const cel_mw_chain *c = x->mw;
    for (size_t i = from; i < c->n; i++) {
        const cel_mw *m = c->v[i];
        int rc;
        if (m->ops->request && (rc = m->ops->request(m, x, res)) != 0) {
            if (rc == CEL_MW_HELD)
                x->resume->next = i + 1;
            return rc;
        }
    }
    return 0;
}

size_t cel_phase_head_mw(cel_exchange *x, int status, cel_field *out, size_t n, size_t cap)
{
    cel_fields f = {out, n, cap, 0};
    const cel_mw_chain *c = x->mw;
    for (size_t i = 0; i < c->n; i++) {
        const cel_mw *m = c->v[i];
        if (m->ops->head)
            m->ops->head(m, x, status, &f);
    }
    return f.n;
}

const cel_response *cel_phase_body_filter(cel_exchange *x, const cel_response *res,
                                          cel_response *tmp, int whole)
{
    *tmp = *res;
    if (res->status >= 400 && whole) {
        /* an answer refused before its request was read runs on the newest generation */
        const cel_config *cfg = (x->gen ? x->gen : x->env->gen)->cfg;
        if (cfg->errors)
            cel_errors_apply(cfg->errors, x, tmp);
    }
    if (x->filter && x->filter->head(x, tmp, whole) < 0) {
        x->filter = NULL;
        cel_response_error(tmp, 500);
    }
    return tmp;
}
