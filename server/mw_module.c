/* The `module` middleware: a module's on_request and on_response_head around
 * the handler, and the celeris_resp_field_* calls that edit a response head. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handler_internal.h"
#include "http.h"
#include "module.h"
#include "mw_module.h"

typedef struct mw_module {
    cel_mw base;
    cel_mw_ops ops; /* only the phases the module has: the chain's phase bits say so */
    cel_handler *inst;
} mw_module;

static int request(const cel_mw *m, cel_exchange *x, cel_response *res)
{
    return cel_module_mw_request(((const mw_module *)m)->inst, x, res) ? CEL_MW_ANSWERED : 0;
}

static void head(const cel_mw *m, cel_exchange *x, int status, cel_fields *f)
{
    cel_module_mw_head(((const mw_module *)m)->inst, x, status, f);
}

static void destroy(cel_mw *m)
{
    mw_module *mm = (mw_module *)m;
    mm->inst->destroy(mm->inst);
    free(mm);
}

cel_mw *cel_mw_module_new(struct cel_module_image *img, const char *route, const char *config_json,
                          unsigned nworkers, char *err, size_t errlen)
{
    const celeris_module *d = cel_module_desc(img);
    int has_req = CEL_MODULE_HAS(d, on_request) && d->on_request;
    int has_head = CEL_MODULE_HAS(d, on_response_head) && d->on_response_head;
    if (!has_req && !has_head) {
        snprintf(err, errlen,
                 "module \"%s\" has no middleware functions (on_request, on_response_head: "
                 "celeris/module.h of celerisd 0.2.0 or later)",
                 cel_module_path(img));
        cel_module_unref(img);
        return NULL;
    }
    mw_module *mm = calloc(1, sizeof(*mm));
    if (!mm) {
        snprintf(err, errlen, "out of memory");
        cel_module_unref(img);
        return NULL;
    }
    if (!(mm->inst = cel_module_mw_instance_new(img, route, config_json, nworkers, err, errlen))) {
        free(mm);
        return NULL;
    }
    mm->ops = (cel_mw_ops){
        .request = has_req ? request : NULL, .head = has_head ? head : NULL, .destroy = destroy};
    mm->base = (cel_mw){&mm->ops, "module"};
    return &mm->base;
}

/* ---- the head's fields ---- */

#define MAX_NAME 256

/* NAME lowercased into LOW (MAX_NAME), or a refusal: not a token, or (WRITE)
 * a field of the protocol's framing. */
static int field_name(const celeris_req *req, const char *call, const char *name, int write,
                      char *low, size_t *n)
{
    size_t len = strlen(name);
    if (len == 0 || len >= MAX_NAME || !cel_http_is_token(name, len))
        return cel_module_req_refuse_field(
            req, CELERIS_ERROR, "%s refused the name \"%.64s\": not an HTTP token", call, name);
    for (size_t i = 0; i < len; i++)
        low[i] = (char)cel_http_lower((unsigned char)name[i]);
    low[len] = 0;
    if (write && cel_http_field_owner(low, len) == CEL_HTTP_FRAMING)
        return cel_module_req_refuse_field(
            req, CELERIS_ERROR, "%s refused \"%s\": the protocol's framing, the server writes it",
            call, low);
    *n = len;
    return CELERIS_OK;
}

static cel_fields *fields_of(const celeris_req *req)
{
    return cel_module_req_fields(req);
}

int celeris_resp_field_get(const celeris_req *req, const char *name, celeris_str *out)
{
    cel_fields *f = fields_of(req);
    char low[MAX_NAME];
    size_t n;
    if (!f)
        return CELERIS_STATE;
    int rc = field_name(req, "celeris_resp_field_get", name, 0, low, &n);
    if (rc)
        return rc;
    for (size_t i = 0; i < f->n; i++)
        if (f->v[i].name_len == n && memcmp(f->v[i].name, low, n) == 0) {
            *out = (celeris_str){f->v[i].value, f->v[i].value_len};
            return CELERIS_OK;
        }
    return CELERIS_NOTFOUND;
}

size_t celeris_resp_field_count(const celeris_req *req)
{
    cel_fields *f = fields_of(req);
    return f ? f->n : 0;
}

int celeris_resp_field_at(const celeris_req *req, size_t i, celeris_str *name, celeris_str *value)
{
    cel_fields *f = fields_of(req);
    if (!f)
        return CELERIS_STATE;
    if (i >= f->n)
        return CELERIS_NOTFOUND;
    *name = (celeris_str){f->v[i].name, f->v[i].name_len};
    *value = (celeris_str){f->v[i].value, f->v[i].value_len};
    return CELERIS_OK;
}

/* NAME and VALUE checked and copied into REQ's memory, for a set or an add. */
static int field_of(celeris_req *req, const char *call, const char *name, const char *value,
                    cel_str *nm, cel_str *v)
{
    char low[MAX_NAME];
    size_t n;
    int rc = field_name(req, call, name, 1, low, &n);
    if (rc)
        return rc;
    if (strpbrk(value, "\r\n"))
        return cel_module_req_refuse_field(
            req, CELERIS_ERROR, "%s refused the value of \"%s\": CR or LF in it", call, low);
    size_t vn = strlen(value);
    char *pn = celeris_req_alloc(req, n), *pv = celeris_req_alloc(req, vn);
    if (!pn || !pv)
        return CELERIS_NOMEM;
    memcpy(pn, low, n);
    memcpy(pv, value, vn);
    *nm = (cel_str){pn, n};
    *v = (cel_str){pv, vn};
    return CELERIS_OK;
}

static int full(const celeris_req *req, const char *call, const char *name)
{
    return cel_module_req_refuse_field(req, CELERIS_ERROR,
                                       "%s refused \"%.64s\": the head is full (%zu fields)", call,
                                       name, fields_of(req)->cap);
}

int celeris_resp_field_set(celeris_req *req, const char *name, const char *value)
{
    cel_fields *f = fields_of(req);
    cel_str nm, v;
    if (!f)
        return CELERIS_STATE;
    int rc = field_of(req, "celeris_resp_field_set", name, value, &nm, &v);
    if (rc)
        return rc;
    return cel_fields_set(f, nm, v) ? full(req, "celeris_resp_field_set", name) : CELERIS_OK;
}

int celeris_resp_field_add(celeris_req *req, const char *name, const char *value)
{
    cel_fields *f = fields_of(req);
    cel_str nm, v;
    if (!f)
        return CELERIS_STATE;
    int rc = field_of(req, "celeris_resp_field_add", name, value, &nm, &v);
    if (rc)
        return rc;
    return cel_fields_add(f, nm, v) ? full(req, "celeris_resp_field_add", name) : CELERIS_OK;
}

int celeris_resp_field_remove(celeris_req *req, const char *name)
{
    cel_fields *f = fields_of(req);
    char low[MAX_NAME];
    size_t n;
    if (!f)
        return CELERIS_STATE;
    int rc = field_name(req, "celeris_resp_field_remove", name, 1, low, &n);
    if (rc)
        return rc;
    size_t before = f->n;
    cel_fields_remove(f, (cel_str){low, n});
    return f->n < before ? CELERIS_OK : CELERIS_NOTFOUND;
}
