/*
 * hello: a greeting from the route's config and a path param.
 *
 *   - path: /greet/:name
 *     module: { name: hello, config: { greeting: "Hello" } }
 *
 * GET /greet/world  ->  "Hello, world!\n"
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <celeris/module.h>

typedef struct hello {
    char greeting[128];
    size_t len;
} hello;

/* The config is JSON text; this module needs one string, so it reads it by
 * hand rather than pulling in a JSON library. */
static int find_string(const char *json, const char *key, char *out, size_t outlen)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":\"", key);
    const char *p = strstr(json, pat);
    if (!p)
        return -1;
    p += strlen(pat);
    size_t n = 0;
    while (*p && *p != '"' && n + 1 < outlen) {
        if (*p == '\\' && p[1])
            p++;
        out[n++] = *p++;
    }
    out[n] = 0;
    return *p == '"' ? 0 : -1;
}

static int init(const celeris_init_args *args, void **instance, char *err, size_t errlen)
{
    hello *h = calloc(1, sizeof(*h));
    if (!h)
        return CELERIS_ERROR;
    if (find_string(args->config_json, "greeting", h->greeting, sizeof(h->greeting)) != 0)
        strcpy(h->greeting, "Hello");
    h->len = strlen(h->greeting);
    if (strcmp(h->greeting, "fail") == 0) {
        snprintf(err, errlen, "greeting \"fail\" is refused (route %s)", args->route);
        free(h);
        return CELERIS_ERROR;
    }
    *instance = h;
    return CELERIS_OK;
}

static void fini(void *instance)
{
    free(instance);
}

static int handle(void *instance, celeris_req *req)
{
    hello *h = instance;
    celeris_str name;
    if (celeris_req_param(req, "name", &name) != CELERIS_OK)
        name = (celeris_str){"world", 5};
    celeris_resp_header(req, "content-type", "text/plain; charset=utf-8");
    /* Assembled by hand: a printf per request would cost more than the rest
     * of this handler (celeris_resp_printf is there when that does not matter). */
    char buf[512];
    if (h->len + name.len + 4 > sizeof(buf))
        return celeris_resp_printf(req, 200, "%s, %.*s!\n", h->greeting, (int)name.len, name.ptr);
    memcpy(buf, h->greeting, h->len);
    memcpy(buf + h->len, ", ", 2);
    memcpy(buf + h->len + 2, name.ptr, name.len);
    memcpy(buf + h->len + 2 + name.len, "!\n", 2);
    return celeris_resp_send(req, 200, buf, h->len + name.len + 4);
}

/* One field a line: clang-format would set these out in columns. */
/* clang-format off */
CELERIS_MODULE(hello) = {
    CELERIS_MODULE_HEADER,
    .name = "hello",
    .init = init,
    .fini = fini,
    .handle = handle,
};
/* clang-format on */
