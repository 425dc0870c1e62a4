/*
 * Modules as middleware (the `module` kind of a middleware: list): what the
 * module handler, which knows a celeris_req, offers the kind (mw_module.c),
 * which holds one instance per list item and edits response heads for the
 * celeris_resp_field_* calls. The head is a cel_fields (middleware.h) the
 * handler only passes along: middleware depends on handlers, not the reverse.
 */
#ifndef CEL_HANDLER_INTERNAL_H
#define CEL_HANDLER_INTERNAL_H

#include "celeris/module.h"
#include "handler.h"

struct cel_module_image;
struct cel_fields;

/* A middleware instance of IMG, its init run with CONFIG_JSON and
 * CELERIS_INIT_MIDDLEWARE; ROUTE is the route's pattern for a route's list,
 * "" for the global one. Takes the image reference (also on failure); the
 * handler's destroy runs fini. Main thread. NULL with ERR. */
cel_handler *cel_module_mw_instance_new(struct cel_module_image *img, const char *route,
                                        const char *config_json, unsigned nworkers, char *err,
                                        size_t errlen);
/* on_request of H's module for X: 1 with RES filled (the module's answer,
 * or a 500 when it returned anything but CELERIS_CONTINUE without
 * answering), else 0. */
int cel_module_mw_request(cel_handler *h, cel_exchange *x, cel_response *res);
/* on_response_head of H's module for X's answer with STATUS, F its head. */
void cel_module_mw_head(cel_handler *h, cel_exchange *x, int status, struct cel_fields *f);

/* The head REQ's on_response_head edits, or NULL outside one. */
struct cel_fields *cel_module_req_fields(const celeris_req *req);
/* Returns RC, logging why the first time the instance refuses a field call. */
int cel_module_req_refuse_field(const celeris_req *req, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
