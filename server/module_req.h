/*
 * Cookies and form fields for modules: what celeris_req_cookie and
 * celeris_req_form (celeris/module.h, whose contracts these follow) do once
 * the module handler has found the request behind a celeris_req.
 */
#ifndef CEL_MODULE_REQ_H
#define CEL_MODULE_REQ_H

#include "celeris/module.h"
#include "request.h"

/* Cookie NAME of R, copied into REQ's memory. */
int cel_module_cookie(celeris_req *req, const cel_request *r, const char *name, celeris_str *out);
/* Field NAME of R's form body, decoded into REQ's memory. */
int cel_module_form(celeris_req *req, const cel_request *r, const char *name, celeris_str *out);

#endif
