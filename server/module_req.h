/*
 * What the request helpers of the module ABI that are written on top of the
 * others (module_req.c: cookies, forms) need from the module handler.
 */
#ifndef CEL_MODULE_REQ_H
#define CEL_MODULE_REQ_H

#include "celeris/module.h"
#include "request.h"

/* REQ's request, or NULL once REQ has ended. */
const cel_request *cel_module_req_request(const celeris_req *req);

#endif
