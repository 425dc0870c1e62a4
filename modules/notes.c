/*
 * notes: a small JSON REST resource whose store is a backend service, called
 * over a socket on the worker's loop; the model of a module that validates
 * input, talks to another service without blocking its worker, and maps that
 * service's answers and failures to HTTP.
 *
 *   - path: /notes
 *     methods: [GET, POST]
 *     module: { name: notes, config: { backend: "127.0.0.1:7001", timeout_ms: 2000 } }
 *   - path: /notes/:id
 *     methods: [GET, PUT, DELETE]
 *     module: { name: notes, config: { backend: "unix:/run/notes.sock" } }
 *   - path: /notes/:id/attachment
 *     methods: [GET, PUT]
 *     max_request_body: 256m
 *     module: { name: notes, config: { backend: "...", attachments: /var/lib/notes } }
 *
 *   GET /notes         200 {"notes": [note, ...]}
 *   POST /notes        201 note, location: /notes/ID   (body: a note without id)
 *   GET /notes/ID      200 note, or 404
 *   PUT /notes/ID      200 note, or 404                (body: a note without id)
 *   DELETE /notes/ID   204, or 404
 *   PUT /notes/ID/attachment   201 {"id": ID, "bytes": N}, or 404: any body,
 *                              stored as ATTACHMENTS/ID
 *   GET /notes/ID/attachment   200 the file, or 404
 *
 * A note is {"id": N, "title": "1 to 200 bytes", "text": "up to max_text bytes",
 * "tags": ["up to 16 tags of 1 to 32 bytes"]}; a body must be a JSON object
 * with `title` and nothing but those fields (400 when it is not JSON, 415 when
 * its content-type is not application/json, 422 when it does not fit). Errors
 * are JSON too: {"error": "why"}.
 *
 * The backend speaks one line of JSON each way per connection:
 *   {"op": "list"}                       -> {"notes": [note, ...]}
 *   {"op": "create", "note": {...}}      -> {"note": note}
 *   {"op": "get", "id": N}               -> {"note": note}
 *   {"op": "put", "id": N, "note": {...}} -> {"note": note}
 *   {"op": "delete", "id": N}            -> {"deleted": N}
 * and {"error": "not found"} (404) or {"error": "..."} (502). A backend that
 * cannot be reached is a 502, one that does not answer within timeout_ms a 504.
 *
 * Each request opens its own connection (a production module would keep a
 * few per worker, from worker_init); everything it waits for is a watch or a
 * timer of the request, so the worker serves other requests meanwhile and a
 * client that leaves ends the call: on_close closes the socket.
 *
 * Attachments (a route with `attachments:` takes bodies as a stream): a PUT
 * first asks the backend whether the note exists, the upload held back
 * meanwhile (the client cannot send more than a window); then the body goes
 * to ATTACHMENTS/ID.part piece by piece, never whole in memory, and is
 * renamed to ATTACHMENTS/ID at its end (a cut upload leaves nothing: on_close
 * removes the part). A GET streams the file back as the client reads it.
 * Files are written with plain write(2): local disk, short blocking.
 */
#include <errno.h>
#include <jansson.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <celeris/module.h>

#define MAX_TITLE 200
#define MAX_TAGS 16
#define MAX_TAG 32
#define MAX_REPLY (1024 * 1024)

typedef struct notes {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    unsigned timeout_ms;
    size_t max_text;
    char *attachments; /* the directory, on an attachment route */
} notes;

enum op { OP_LIST, OP_CREATE, OP_GET, OP_PUT, OP_DELETE, OP_ATTACH };

/* One backend call, owned by its request: freed in on_close. */
typedef struct call {
    const notes *n;
    enum op op;
    int fd;
    int connected;
    char *out; /* the request line */
    size_t out_len, out_off;
    char *in; /* the reply as it arrives */
    size_t in_len, in_cap;
    celeris_watch *watch;
    celeris_timer *timer;
    /* an attachment: */
    long long id;
    int file; /* the part being written, or the file being sent */
    size_t bytes;
    char part[4200], path[4200];
} call;

/* ---- configuration ---- */

static int parse_backend(notes *n, const char *s, char *err, size_t errlen)
{
    if (strncmp(s, "unix:", 5) == 0) {
        struct sockaddr_un *un = (struct sockaddr_un *)&n->addr;
        if (strlen(s + 5) == 0 || strlen(s + 5) >= sizeof(un->sun_path)) {
            snprintf(err, errlen, "backend \"%s\": the socket path is empty or too long", s);
            return -1;
        }
        un->sun_family = AF_UNIX;
        strcpy(un->sun_path, s + 5);
        n->addrlen = sizeof(*un);
        return 0;
    }
    /* HOST:PORT with a numeric host ([v6]:port): resolved once, here, never
     * on a worker. */
    char host[256];
    const char *colon = strrchr(s, ':');
    size_t hl = colon ? (size_t)(colon - s) : 0;
    if (hl >= 2 && s[0] == '[' && s[hl - 1] == ']')
        s++, hl -= 2;
    if (!colon || hl == 0 || hl >= sizeof(host)) {
        snprintf(err, errlen, "backend must be \"HOST:PORT\" or \"unix:PATH\"");
        return -1;
    }
    memcpy(host, s, hl);
    host[hl] = 0;
    struct addrinfo hints = {0}, *ai;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    int rc = getaddrinfo(host, colon + 1, &hints, &ai);
    if (rc) {
        snprintf(err, errlen, "backend \"%s\": %s (a numeric address is needed)", host,
                 gai_strerror(rc));
        return -1;
    }
    memcpy(&n->addr, ai->ai_addr, ai->ai_addrlen);
    n->addrlen = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

static int init(const celeris_init_args *args, void **instance, char *err, size_t errlen)
{
    json_error_t je;
    json_t *cfg = json_loadb(args->config_json, args->config_len, 0, &je);
    notes *n = calloc(1, sizeof(*n));
    const char *backend = NULL;
    json_int_t timeout = 2000, max_text = 4096;
    const char *key;
    json_t *v;
    if (!n || !cfg || !json_is_object(cfg)) {
        snprintf(err, errlen, "config must be a mapping");
        goto fail;
    }
    json_object_foreach(cfg, key, v)
    {
        if (strcmp(key, "backend") == 0 && json_is_string(v)) {
            backend = json_string_value(v);
        } else if (strcmp(key, "timeout_ms") == 0 && json_is_integer(v)) {
            timeout = json_integer_value(v);
        } else if (strcmp(key, "max_text") == 0 && json_is_integer(v)) {
            max_text = json_integer_value(v);
        } else if (strcmp(key, "attachments") == 0 && json_is_string(v) &&
                   json_string_length(v) > 0 && json_string_length(v) < 4000) {
            free(n->attachments);
            n->attachments = strdup(json_string_value(v));
        } else {
            snprintf(err, errlen,
                     "\"%.64s\": unknown key or wrong type (notes knows: backend and "
                     "attachments, strings; timeout_ms and max_text, integers)",
                     key);
            goto fail;
        }
    }
    if (!backend) {
        snprintf(err, errlen, "backend is required (\"HOST:PORT\" or \"unix:PATH\")");
        goto fail;
    }
    if (timeout < 1 || timeout > 600000 || max_text < 0 || max_text > 1000000) {
        snprintf(err, errlen, "timeout_ms must be 1 to 600000 and max_text 0 to 1000000");
        goto fail;
    }
    if (parse_backend(n, backend, err, errlen))
        goto fail;
    if (n->attachments) {
        struct stat st;
        if (stat(n->attachments, &st) < 0 || !S_ISDIR(st.st_mode)) {
            snprintf(err, errlen, "attachments: \"%s\" is not a directory", n->attachments);
            goto fail;
        }
        if (!strstr(args->route, ":id")) {
            snprintf(err, errlen, "attachments: the route must have an :id param");
            goto fail;
        }
        /* uploads come as a stream, not buffered whole */
        if (celeris_init_body_stream(args) != CELERIS_OK) {
            snprintf(err, errlen, "this celerisd cannot stream request bodies");
            goto fail;
        }
    }
    n->timeout_ms = (unsigned)timeout;
    n->max_text = (size_t)max_text;
    json_decref(cfg);
    *instance = n;
    return CELERIS_OK;
fail:
    json_decref(cfg);
    if (n)
        free(n->attachments);
    free(n);
    return CELERIS_ERROR;
}

static void fini(void *instance)
{
    notes *n = instance;
    free(n->attachments);
    free(n);
}

/* ---- answers ---- */

/* Sends VALUE (taken) as the JSON body. */
static int send_json(celeris_req *req, int status, json_t *value)
{
    char *text = value ? json_dumps(value, JSON_COMPACT) : NULL;
    json_decref(value);
    if (!text)
        return celeris_resp_send(req, 500, "", 0);
    celeris_resp_header(req, "content-type", "application/json");
    size_t len = strlen(text);
    text[len] = '\n';
    int rc = celeris_resp_send(req, status, text, len + 1);
    free(text);
    return rc;
}

static int send_error(celeris_req *req, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int send_error(celeris_req *req, int status, const char *fmt, ...)
{
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    return send_json(req, status, json_pack("{s:s}", "error", why));
}

/* ---- validation ---- */

static int string_fits(json_t *v, size_t min, size_t max)
{
    return json_is_string(v) && json_string_length(v) >= min && json_string_length(v) <= max;
}

/* The note in the request's body, normalized (every field present), or NULL
 * with the answer already sent. */
static json_t *note_of_body(celeris_req *req, const notes *n)
{
    celeris_str ct;
    if (celeris_req_header(req, "content-type", &ct) != CELERIS_OK || ct.len < 16 ||
        strncasecmp(ct.ptr, "application/json", 16) != 0 ||
        (ct.len > 16 && ct.ptr[16] != ';' && ct.ptr[16] != ' ')) {
        send_error(req, 415, "the body must be application/json");
        return NULL;
    }
    celeris_str body = celeris_req_body(req);
    json_error_t je;
    json_t *in = json_loadb(body.ptr, body.len, JSON_REJECT_DUPLICATES, &je);
    if (!in) {
        send_error(req, 400, "the body is not JSON: %s (line %d, column %d)", je.text, je.line,
                   je.column);
        return NULL;
    }
    json_t *title = NULL, *text = NULL, *tags = NULL, *v;
    const char *key;
    if (!json_is_object(in)) {
        send_error(req, 422, "the body must be a JSON object");
        goto bad;
    }
    json_object_foreach(in, key, v)
    {
        if (strcmp(key, "title") == 0) {
            title = v;
        } else if (strcmp(key, "text") == 0) {
            text = v;
        } else if (strcmp(key, "tags") == 0) {
            tags = v;
        } else {
            send_error(req, 422, "unknown field \"%.64s\" (a note has title, text and tags)", key);
            goto bad;
        }
    }
    if (!string_fits(title, 1, MAX_TITLE)) {
        send_error(req, 422, "title: a string of 1 to %d bytes is required", MAX_TITLE);
        goto bad;
    }
    if (text && !string_fits(text, 0, n->max_text)) {
        send_error(req, 422, "text: a string of at most %zu bytes", n->max_text);
        goto bad;
    }
    if (tags && (!json_is_array(tags) || json_array_size(tags) > MAX_TAGS)) {
        send_error(req, 422, "tags: a list of at most %d strings", MAX_TAGS);
        goto bad;
    }
    size_t i;
    json_array_foreach(tags, i, v)
    {
        if (!string_fits(v, 1, MAX_TAG)) {
            send_error(req, 422, "tags[%zu]: a string of 1 to %d bytes", i, MAX_TAG);
            goto bad;
        }
    }
    json_t *note = json_pack("{s:O,s:o,s:o}", "title", title, "text",
                             text ? json_incref(text) : json_string(""), "tags",
                             tags ? json_incref(tags) : json_array());
    json_decref(in);
    if (!note)
        send_error(req, 500, "out of memory");
    return note;
bad:
    json_decref(in);
    return NULL;
}

/* ---- the backend call ---- */

static void end_call(call *c)
{
    if (c->watch)
        celeris_watch_cancel(c->watch);
    if (c->timer)
        celeris_timer_cancel(c->timer);
    c->watch = NULL;
    c->timer = NULL;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

static void on_close(void *arg, int finished)
{
    call *c = arg;
    (void)finished;
    end_call(c);
    if (c->file >= 0) {
        close(c->file);
        if (c->op == OP_ATTACH)
            unlink(c->part); /* cut short: nothing is left behind */
    }
    free(c->out);
    free(c->in);
    free(c);
}

static void start_upload(celeris_req *req, call *c);

/* The backend's reply line, as HTTP. */
static void answer(celeris_req *req, call *c)
{
    json_error_t je;
    json_t *r = json_loadb(c->in, c->in_len, 0, &je);
    json_t *err = json_object_get(r, "error");
    json_t *note = json_object_get(r, "note");
    json_t *list = json_object_get(r, "notes");
    if (!r || !json_is_object(r)) {
        send_error(req, 502, "the backend's reply is not a JSON object");
    } else if (json_is_string(err) && strcmp(json_string_value(err), "not found") == 0) {
        send_error(req, 404, "no such note");
    } else if (err) {
        send_error(req, 502, "backend: %.200s", json_is_string(err) ? json_string_value(err) : "?");
    } else if (c->op == OP_ATTACH && json_is_object(note)) {
        start_upload(req, c);
    } else if (c->op == OP_DELETE) {
        celeris_resp_send(req, 204, "", 0);
    } else if (c->op == OP_LIST && json_is_array(list)) {
        send_json(req, 200, json_pack("{s:O}", "notes", list));
    } else if (c->op != OP_LIST && json_is_object(note) &&
               json_is_integer(json_object_get(note, "id"))) {
        if (c->op == OP_CREATE) {
            char loc[320];
            celeris_str path = celeris_req_path(req);
            snprintf(loc, sizeof(loc), "%.*s/%lld", (int)(path.len > 256 ? 256 : path.len),
                     path.ptr, (long long)json_integer_value(json_object_get(note, "id")));
            celeris_resp_header(req, "location", loc);
        }
        send_json(req, c->op == OP_CREATE ? 201 : 200, json_incref(note));
    } else {
        send_error(req, 502, "the backend's reply lacks %s", c->op == OP_LIST ? "notes" : "note");
    }
    json_decref(r);
}

static void on_backend(celeris_req *req, int fd, unsigned events, void *arg);

static void on_timeout(celeris_req *req, void *arg)
{
    call *c = arg;
    end_call(c);
    send_error(req, 504, "the backend did not answer within %u ms", c->n->timeout_ms);
}

/* Writes what it can; the whole line sent, waits for the reply. */
static void send_some(celeris_req *req, call *c)
{
    while (c->out_off < c->out_len) {
        ssize_t k = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (k < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (k < 0) {
            int e = errno;
            end_call(c);
            send_error(req, 502, "backend: %s", strerror(e));
            return;
        }
        c->out_off += (size_t)k;
    }
    celeris_watch_set(c->watch, CELERIS_WATCH_READ);
}

static void receive_some(celeris_req *req, call *c)
{
    for (;;) {
        if (c->in_cap - c->in_len < 4096) {
            size_t cap = c->in_cap ? c->in_cap * 2 : 16384;
            char *p = cap <= MAX_REPLY ? realloc(c->in, cap) : NULL;
            if (!p) {
                end_call(c);
                send_error(req, 502, "the backend's reply is too long");
                return;
            }
            c->in = p;
            c->in_cap = cap;
        }
        ssize_t k = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
        if (k < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (k <= 0) {
            int e = k < 0 ? errno : 0;
            end_call(c);
            send_error(req, 502, "backend: %s", e ? strerror(e) : "closed without a reply");
            return;
        }
        char *nl = memchr(c->in + c->in_len, '\n', (size_t)k);
        c->in_len += (size_t)k;
        if (nl) {
            c->in_len = (size_t)(nl - c->in);
            end_call(c);
            answer(req, c);
            return;
        }
    }
}

static void on_backend(celeris_req *req, int fd, unsigned events, void *arg)
{
    call *c = arg;
    (void)fd;
    if (!c->connected) {
        int e = 0;
        socklen_t l = sizeof(e);
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &l) < 0)
            e = errno;
        if (e) {
            end_call(c);
            send_error(req, 502, "backend unreachable: %s", strerror(e));
            return;
        }
        c->connected = 1;
    }
    if (events & CELERIS_WATCH_WRITE)
        send_some(req, c);
    else if (events & CELERIS_WATCH_READ)
        receive_some(req, c);
}

/* Starts the call: the answer comes from on_backend or on_timeout. */
static int call_backend(celeris_req *req, const notes *n, enum op op, json_t *msg)
{
    call *c = calloc(1, sizeof(*c));
    char *line = json_dumps(msg, JSON_COMPACT);
    if (c)
        c->id = json_integer_value(json_object_get(msg, "id"));
    json_decref(msg);
    if (!c || !line) {
        free(c);
        free(line);
        return send_error(req, 500, "out of memory");
    }
    c->n = n;
    c->op = op;
    c->file = -1;
    c->out_len = strlen(line);
    line[c->out_len++] = '\n'; /* json_dumps leaves room: it NUL-terminates */
    c->out = line;
    c->fd = socket(n->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (celeris_req_on_close(req, on_close, c) != CELERIS_OK) {
        if (c->fd >= 0)
            close(c->fd);
        free(c->out);
        free(c);
        return CELERIS_ERROR;
    }
    if (c->fd < 0 ||
        (connect(c->fd, (struct sockaddr *)&n->addr, n->addrlen) < 0 && errno != EINPROGRESS)) {
        int e = errno;
        end_call(c);
        return send_error(req, 502, "backend unreachable: %s", strerror(e));
    }
    if (celeris_watch_start(req, c->fd, CELERIS_WATCH_WRITE, on_backend, c, &c->watch) ||
        celeris_timer_start(req, n->timeout_ms, 0, on_timeout, c, &c->timer)) {
        end_call(c);
        return send_error(req, 500, "cannot wait for the backend");
    }
    return CELERIS_SUSPENDED;
}

/* ---- attachments ---- */

/* The upload, piece by piece, into the part file; at its end, renamed. */
static size_t on_upload(celeris_req *req, const void *data, size_t len, int end, void *arg)
{
    call *c = arg;
    size_t off = 0;
    while (off < len) {
        ssize_t k = write(c->file, (const char *)data + off, len - off);
        if (k < 0) {
            send_error(req, 500, "cannot store the attachment: %s", strerror(errno));
            return len; /* answered: the rest of the body is dropped */
        }
        off += (size_t)k;
    }
    c->bytes += len;
    if (end) {
        int ok = close(c->file) == 0 && rename(c->part, c->path) == 0;
        c->file = -1;
        if (!ok) {
            unlink(c->part);
            send_error(req, 500, "cannot store the attachment: %s", strerror(errno));
        } else {
            send_json(req, 201, json_pack("{s:I,s:I}", "id", c->id, "bytes", (json_int_t)c->bytes));
        }
    }
    return len;
}

/* The note exists: the body, held back until now, may come. */
static void start_upload(celeris_req *req, call *c)
{
    snprintf(c->part, sizeof(c->part), "%s/%lld.part", c->n->attachments, c->id);
    snprintf(c->path, sizeof(c->path), "%s/%lld", c->n->attachments, c->id);
    c->file = open(c->part, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (c->file < 0) {
        send_error(req, 500, "cannot store the attachment: %s", strerror(errno));
        return;
    }
    if (celeris_req_body_on_data(req, on_upload, c) != CELERIS_OK)
        send_error(req, 500, "cannot read the body");
}

static void send_file(celeris_req *req, void *arg)
{
    call *c = arg;
    char buf[65536];
    for (;;) {
        ssize_t k = read(c->file, buf, sizeof(buf));
        if (k <= 0) {
            celeris_resp_end(req); /* a read error can only cut the stream short */
            return;
        }
        if (celeris_resp_write(req, buf, (size_t)k) == CELERIS_AGAIN) {
            celeris_resp_on_writable(req, send_file, c);
            return;
        }
    }
}

static int attachment(celeris_req *req, const notes *n, long long id)
{
    celeris_str method = celeris_req_method(req);
    if (method.len == 3 && memcmp(method.ptr, "PUT", 3) == 0) {
        /* The body waits (nothing takes it) while the backend is asked. */
        return call_backend(req, n, OP_ATTACH, json_pack("{s:s,s:I}", "op", "get", "id", id));
    }
    call *c = calloc(1, sizeof(*c));
    if (!c)
        return send_error(req, 500, "out of memory");
    c->n = n;
    c->fd = -1;
    snprintf(c->path, sizeof(c->path), "%s/%lld", n->attachments, id);
    c->file = open(c->path, O_RDONLY | O_CLOEXEC);
    if (c->file < 0) {
        int e = errno;
        free(c);
        return e == ENOENT ? send_error(req, 404, "no attachment")
                           : send_error(req, 500, "cannot read the attachment: %s", strerror(e));
    }
    if (celeris_req_on_close(req, on_close, c) != CELERIS_OK) {
        close(c->file);
        free(c);
        return CELERIS_ERROR;
    }
    celeris_resp_header(req, "content-type", "application/octet-stream");
    if (celeris_resp_start(req, 200) != CELERIS_OK)
        return CELERIS_ERROR;
    send_file(req, c);
    return CELERIS_OK;
}

/* ---- the handler ---- */

static int is(celeris_str s, const char *lit)
{
    return s.len == strlen(lit) && memcmp(s.ptr, lit, s.len) == 0;
}

static int handle(void *instance, celeris_req *req)
{
    const notes *n = instance;
    celeris_str method = celeris_req_method(req), id;
    long long num = -1;
    if (celeris_req_param(req, "id", &id) == CELERIS_OK) {
        char digits[16];
        if (id.len == 0 || id.len >= sizeof(digits) || strspn(id.ptr, "0123456789") < id.len)
            return send_error(req, 404, "no such note");
        memcpy(digits, id.ptr, id.len);
        digits[id.len] = 0;
        num = strtoll(digits, NULL, 10);
    }
    json_t *note = NULL;
    if (n->attachments) {
        if (num < 0)
            return send_error(req, 404, "no such note");
        if (!is(method, "PUT") && !is(method, "GET") && !is(method, "HEAD")) {
            celeris_resp_header(req, "allow", "GET, HEAD, PUT");
            return send_error(req, 405, "method not allowed here");
        }
        return attachment(req, n, num);
    }
    if (num < 0 && (is(method, "GET") || is(method, "HEAD")))
        return call_backend(req, n, OP_LIST, json_pack("{s:s}", "op", "list"));
    if (num < 0 && is(method, "POST")) {
        if (!(note = note_of_body(req, n)))
            return CELERIS_OK;
        return call_backend(req, n, OP_CREATE,
                            json_pack("{s:s,s:o}", "op", "create", "note", note));
    }
    if (num >= 0 && (is(method, "GET") || is(method, "HEAD")))
        return call_backend(req, n, OP_GET, json_pack("{s:s,s:I}", "op", "get", "id", num));
    if (num >= 0 && is(method, "PUT")) {
        if (!(note = note_of_body(req, n)))
            return CELERIS_OK;
        return call_backend(req, n, OP_PUT,
                            json_pack("{s:s,s:I,s:o}", "op", "put", "id", num, "note", note));
    }
    if (num >= 0 && is(method, "DELETE"))
        return call_backend(req, n, OP_DELETE, json_pack("{s:s,s:I}", "op", "delete", "id", num));
    celeris_resp_header(req, "allow", num < 0 ? "GET, HEAD, POST" : "GET, HEAD, PUT, DELETE");
    return send_error(req, 405, "method not allowed here");
}

/* One field a line: clang-format would set these out in columns. */
/* clang-format off */
CELERIS_MODULE(notes) = {
    CELERIS_MODULE_HEADER,
    .name = "notes",
    .init = init,
    .fini = fini,
    .handle = handle,
};
/* clang-format on */
