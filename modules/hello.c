/*
 * hello: a greeting from the route's config and a path param.
 *
 *   - path: /greet/:name
 *     module: { name: hello, config: { greeting: "Hello" } }
 *
 * GET /greet/world  ->  "Hello, world!\n"
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <celeris/module.h>

typedef struct hello {
    char greeting[128];
    size_t len;
} hello;

/* The config is JSON text: parse it with a JSON parser (jansson, which
 * celerisd links too), never by searching the text, and refuse what does not
 * fit with a message init's caller puts beside the route's file:line. */
static int init(const celeris_init_args *args, void **instance, char *err, size_t errlen)
{
    json_error_t je;
    json_t *cfg = json_loadb(args->config_json, args->config_len, 0, &je);
    if (!cfg) {
        snprintf(err, errlen, "config is not JSON: %s", je.text);
        return CELERIS_ERROR;
    }
    if (!json_is_object(cfg)) {
        snprintf(err, errlen, "config must be a mapping");
        json_decref(cfg);
        return CELERIS_ERROR;
    }
    const char *greeting = "Hello";
    size_t len = 5;
    json_t *g = json_object_get(cfg, "greeting");
    const char *key;
    json_t *value;
    json_object_foreach(cfg, key, value)
    {
        if (strcmp(key, "greeting") != 0) {
            snprintf(err, errlen, "unknown key \"%.64s\" (hello knows: greeting)", key);
            json_decref(cfg);
            return CELERIS_ERROR;
        }
    }
    if (g) {
        if (!json_is_string(g) || json_string_length(g) == 0 ||
            json_string_length(g) >= sizeof(((hello *)0)->greeting)) {
            snprintf(err, errlen, "greeting must be a string of 1 to %zu bytes",
                     sizeof(((hello *)0)->greeting) - 1);
            json_decref(cfg);
            return CELERIS_ERROR;
        }
        greeting = json_string_value(g);
        len = json_string_length(g);
    }
    if (strcmp(greeting, "fail") == 0) {
        snprintf(err, errlen, "greeting \"fail\" is refused (route %s)", args->route);
        json_decref(cfg);
        return CELERIS_ERROR;
    }
    hello *h = calloc(1, sizeof(*h));
    if (!h) {
        json_decref(cfg);
        return CELERIS_ERROR;
    }
    memcpy(h->greeting, greeting, len);
    h->len = len;
    json_decref(cfg);
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
