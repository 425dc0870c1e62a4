/*
 * echo: answers with the request body, streamed back in chunks with the
 * request's content type.
 *
 *   - path: /echo
 *     methods: [POST, PUT]
 *     module: { name: echo, config: { chunk: 16384 } }
 *
 * It writes until celerisd says CELERIS_AGAIN (the client is not reading as
 * fast), then waits for on_writable: back-pressure reaches the module instead
 * of piling up memory.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <celeris/module.h>

typedef struct echo {
    size_t chunk;
} echo;

typedef struct job {
    celeris_str body;
    size_t off;
    size_t chunk;
} job;

static int init(const celeris_init_args *args, void **instance, char *err, size_t errlen)
{
    json_error_t je;
    json_int_t chunk = 16384;
    json_t *cfg = json_loadb(args->config_json, args->config_len, 0, &je);
    /* JSON_STRICT: a key echo does not know is an error, not ignored. */
    if (!cfg || json_unpack_ex(cfg, &je, JSON_STRICT, "{s?I}", "chunk", &chunk) != 0) {
        snprintf(err, errlen, "%s (echo knows: chunk, an integer)", je.text);
        json_decref(cfg);
        return CELERIS_ERROR;
    }
    json_decref(cfg);
    if (chunk < 1 || chunk > (1 << 24)) {
        snprintf(err, errlen, "chunk must be between 1 and 16777216");
        return CELERIS_ERROR;
    }
    echo *e = calloc(1, sizeof(*e));
    if (!e)
        return CELERIS_ERROR;
    e->chunk = (size_t)chunk;
    *instance = e;
    return CELERIS_OK;
}

static void fini(void *instance)
{
    free(instance);
}

static void pump(celeris_req *req, void *arg)
{
    job *j = arg;
    while (j->off < j->body.len) {
        size_t n = j->body.len - j->off;
        if (n > j->chunk)
            n = j->chunk;
        int rc = celeris_resp_write(req, j->body.ptr + j->off, n);
        if (rc != CELERIS_OK && rc != CELERIS_AGAIN)
            return; /* the request is gone or failed: nothing more to do */
        j->off += n;
        if (rc == CELERIS_AGAIN && j->off < j->body.len) {
            celeris_resp_on_writable(req, pump, j);
            return;
        }
    }
    celeris_resp_end(req);
}

/* celerisd is done with the request, answered or not: the one place the job
 * is freed. */
static void closed(void *arg, int finished)
{
    (void)finished;
    free(arg);
}

static int handle(void *instance, celeris_req *req)
{
    echo *e = instance;
    job *j = calloc(1, sizeof(*j));
    if (!j)
        return CELERIS_ERROR;
    j->body = celeris_req_body(req);
    j->chunk = e->chunk;
    celeris_str ct;
    if (celeris_req_header(req, "content-type", &ct) == CELERIS_OK) {
        char type[256];
        snprintf(type, sizeof(type), "%.*s", (int)ct.len, ct.ptr);
        celeris_resp_header(req, "content-type", type);
    }
    if (celeris_req_on_close(req, closed, j) != CELERIS_OK) {
        free(j);
        return CELERIS_ERROR;
    }
    if (celeris_resp_start(req, 200) != CELERIS_OK)
        return CELERIS_ERROR;
    pump(req, j);
    return CELERIS_OK;
}

/* One field a line: clang-format would set these out in columns. */
/* clang-format off */
CELERIS_MODULE(echo) = {
    CELERIS_MODULE_HEADER,
    .name = "echo",
    .init = init,
    .fini = fini,
    .handle = handle,
};
/* clang-format on */
