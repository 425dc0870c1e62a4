#include "dispatch.h"

#include <event2/event.h>
#include <event2/util.h>
#include <string.h>

#include "accesslog.h"
#include "env.h"
#include "log.h"
#include "real_ip.h"
#include "stats.h"

typedef struct err_body {
    int status;
    const char *text; /* "Not Found\n": the reason and a newline */
} err_body;

static const err_body errors[] = {
    {400, "Bad Request\n"},       {404, "Not Found\n"},        {405, "Method Not Allowed\n"},
    {408, "Request Timeout\n"},   {413, "Content Too Large\n"}, {414, "URI Too Long\n"},
    {431, "Request Header Fields Too Large\n"},                 {500, "Internal Server Error\n"},
    {501, "Not Implemented\n"},   {503, "Service Unavailable\n"},
    {505, "HTTP Version Not Supported\n"},
};

const char *cel_status_reason(int status)
{
    static char none[1];
    for (size_t i = 0; i < CEL_ARRAY_LEN(errors); i++)
        if (errors[i].status == status)
            return errors[i].text;
    return none;
}

void cel_response_error(cel_response *res, int status)
{
    const char *text = cel_status_reason(status);
    memset(res, 0, sizeof(*res));
    res->status = status;
    res->content_type = CEL_STR_LIT("text/plain; charset=utf-8");
    res->body = text;
    res->body_len = strlen(text);
    res->body_in_gen = 1; /* static storage outlives every generation */
}

int cel_dispatch(const cel_config *cfg, cel_exchange *x, cel_route_match *m, cel_response *res)
{
    cel_request *req = x->req;
    int rc = cel_router_lookup(cfg->router, req->path.p, req->path.n, req->method_bit, m);
    if (rc == CEL_ROUTE_NOT_FOUND) {
        cel_response_error(res, 404);
        return 0;
    }
    if (rc == CEL_ROUTE_BAD_METHOD) {
        cel_response_error(res, 405);
        cel_kv *allow = cel_arena_alloc(x->arena, sizeof(*allow));
        if (allow) {
            allow->name = CEL_STR_LIT("allow");
            allow->value = (cel_str){m->allow, strlen(m->allow)};
            res->headers = allow;
            res->nheaders = 1;
        }
        return 0;
    }
    req->params = m->params;
    req->nparams = m->nparams;
    const cel_route *route = m->data;
    memset(res, 0, sizeof(*res));
    rc = route->handler->handle(route->handler, x, res);
    if (rc < 0) {
        cel_log(CEL_LOG_ERROR, "%s handler for route \"%s\" failed (%d)", route->handler->type,
                route->pattern, rc);
        cel_response_error(res, 500);
        return 0;
    }
    return rc;
}

void cel_dispatch_log(const cel_env *env, const cel_config *cfg, const cel_request *req,
                      const char *protocol, const char *peer, int status, uint64_t bytes,
                      uint64_t us)
{
    char real[64];
    cel_access e = {
        .req = req,
        .peer = cfg->real_ip ? cel_real_ip_of(cfg->real_ip, req, peer, real, sizeof(real)) : peer,
        .protocol = protocol,
        .status = status,
        .bytes = bytes,
        .duration_us = us,
        .now = env->now.tv_sec,
    };
    cel_accesslog_add(cfg->accesslog, env->worker_id, &e);
}
