/*
 * celeris/module.h - the handler module ABI of celerisd.
 *
 * A module is a shared object that exports one descriptor named
 * `celeris_module_entry` (use CELERIS_MODULE below). celerisd loads it for every route
 * that names it, gives each route its own instance, and calls the module's
 * handler for every request on those routes.
 *
 *     #include <celeris/module.h>
 *
 *     static int handle(void *instance, celeris_req *req)
 *     {
 *         celeris_str name;
 *         celeris_req_param(req, "name", &name);
 *         celeris_resp_header(req, "content-type", "text/plain");
 *         return celeris_resp_printf(req, 200, "Hello, %.*s\n", (int)name.len, name.ptr);
 *     }
 *
 *     CELERIS_MODULE(greet) = {
 *         CELERIS_MODULE_HEADER,
 *         .handle = handle,
 *     };
 *
 * Build:  cc -shared -fPIC $(pkg-config --cflags celeris-module) -o greet.so greet.c
 *
 * Stability. The ABI version below changes only when something a built module
 * relies on changes incompatibly; a module built for another version is refused
 * at load. Within one version, new functions and new descriptor fields (at the
 * end; `size` tells which ones a module knows) may be added, so a module built
 * today keeps loading. Requests and responses are opaque: no struct layout a
 * module could depend on is exposed. A module that calls a function this
 * daemon does not have (it was built against a newer header) is refused at
 * load with an error naming the function and both versions; a function
 * declared weak (`#pragma weak celeris_x`) is left for the module to test
 * for NULL instead.
 *
 * Threads. Every celeris_req and celeris_resp function must be called on the
 * worker thread that runs the request: from the handler itself, or from a
 * callback on that worker's event loop (celeris_req_event_base), or from the
 * function given to celeris_async_resume. The only functions that may be called
 * from any thread are celeris_async_resume, celeris_log, celeris_metric_add and
 * celeris_metric_observe.
 *
 * Memory. Strings celerisd hands out (celeris_str) stay valid until the response
 * is finished or the request is aborted, whichever comes first; they are not
 * NUL-terminated unless stated. Everything a module passes in is copied before
 * the call returns, except what celeris_resp_send_ref says.
 *
 * Out parameters. A call that returns anything but CELERIS_OK leaves its out
 * parameters as they were (*out on CELERIS_NOTFOUND included): initialize
 * what you read after a failed lookup.
 *
 * Statuses and headers. A module answers with a status from 200 to 599
 * (1xx, 101 included, and anything else: CELERIS_ERROR, nothing sent).
 * celeris_resp_header refuses with CELERIS_ERROR a name that is not an HTTP
 * token, a value with CR or LF, a 65th header, and the fields the server
 * writes itself: content-length, date, server, and the connection-specific
 * connection, keep-alive, proxy-connection, transfer-encoding, upgrade
 * (compared case-insensitively); it refuses with CELERIS_STATE any header once
 * the response started. content-type is not among the refused names: the
 * last one given replaces the default, application/octet-stream. Other names
 * may repeat (set-cookie); they go out lowercase, in the order given.
 *
 * Flow control. "A window's worth" is 64 KiB: celeris_resp_write returns
 * CELERIS_AGAIN once more than 64 KiB of the response waits in celerisd
 * (celeris_resp_buffered: written by the module, not yet handed to the
 * socket; on HTTP/2 that includes what waits for the client's flow-control
 * window), and the celeris_resp_on_writable function runs once it is below
 * 16 KiB. The data of the call that returned CELERIS_AGAIN was taken.
 *
 * Tokens. A token from celeris_req_suspend holds the configuration
 * generation the request runs on: after a reload the old generation's route
 * instances (their fini) and the module's .so stay loaded until every token
 * of theirs is resumed and its function has run. A token never resumed keeps
 * its request open (idle_timeout does not end a request only the server
 * holds) until the client goes away or a stop or a reload that drops the
 * worker resets it at shutdown_timeout; on_close and the cleanups run then,
 * but the generation and the .so stay loaded, and fini never runs, until the
 * process exits. Resume every token exactly once, also when the client left.
 *
 * Crashes. A module runs inside celerisd, on its worker threads, with no
 * isolation: a crash in module code (a bad pointer, abort(), an uncaught C++
 * exception, exit()) ends the whole process and every connection of every
 * route. Under the packaged systemd unit (Restart=on-failure, RestartSec=2)
 * systemd starts celerisd again after 2 seconds; requests in flight are lost.
 * A handler that blocks (sleeps, waits on a socket) stalls every connection
 * of its worker: do slow work on the worker's loop or another thread and
 * suspend.
 */
#ifndef CELERIS_MODULE_H
#define CELERIS_MODULE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CELERIS_MODULE_ABI_VERSION 1

/* The celerisd release this header comes with (meson checks it against the
 * project version). A module records it in its descriptor, so a daemon that
 * lacks a function the module calls can name the release the module needs. */
#define CELERIS_VERSION_MAJOR 0
#define CELERIS_VERSION_MINOR 3
#define CELERIS_VERSION_PATCH 0
#define CELERIS_VERSION_NUM                                                                        \
    ((CELERIS_VERSION_MAJOR << 16) | (CELERIS_VERSION_MINOR << 8) | CELERIS_VERSION_PATCH)

/*
 * Return codes: every int a celeris_* function returns is one of these, and
 * the daemon's log names a module's codes by these names (with the number).
 *
 * A refused call (CELERIS_ERROR or CELERIS_STATE for a mistake in the call)
 * is logged at warn level with the route's path and the reason, the first
 * time each kind of refusal happens on a route: not once per request.
 */
#define CELERIS_OK 0
/* From handle(): the handler failed; the client gets a 500 (a reset once the
 * response started) and the log says "handle returned CELERIS_ERROR (-1)".
 * From a call: refused for its arguments (a status outside 200..599, a header
 * name that is not an HTTP token, a value with CR or LF, a header the server
 * sets itself: content-length, date, server, connection, transfer-encoding,
 * keep-alive, proxy-connection, upgrade; more than 64 headers), or the connection could not
 * take the response (it is going away). */
#define CELERIS_ERROR (-1)
#define CELERIS_NOTFOUND (-2) /* no such param, argument or header (or header index) */
#define CELERIS_AGAIN (-3)    /* write: taken, but slow down: wait for on_writable */
/* Not allowed now: a header or a second answer after the response started,
 * a write, end or on_writable before celeris_resp_start or after end. */
#define CELERIS_STATE (-4)
#define CELERIS_NOMEM (-5)  /* out of memory: the call did nothing */
#define CELERIS_SUSPENDED 1 /* handle() returns this after celeris_req_suspend() */
/* on_request (a middleware's request phase) returns this to let the request
 * go on to the next middleware and the handler. */
#define CELERIS_CONTINUE 2

typedef struct celeris_str {
    const char *ptr;
    size_t len;
} celeris_str;

typedef struct celeris_req celeris_req;       /* one request and its response */
typedef struct celeris_async celeris_async;   /* a suspended request's completion token */
typedef struct celeris_worker celeris_worker; /* a worker thread, for per-worker state */
struct event_base;                            /* libevent */

/* What init() gets. */
typedef struct celeris_init_args {
    uint32_t size;           /* sizeof(celeris_init_args) of the daemon: fields may be added */
    const char *route;       /* the route's path pattern, NUL-terminated */
    const char *config_json; /* the route's `config:` as JSON text, NUL-terminated ("{}") */
    size_t config_len;
    unsigned workers; /* how many worker threads there are */
    /* celerisd 0.2.0 (absent when `size` is smaller): CELERIS_INIT_MIDDLEWARE
     * when this instance is an item of a `middleware:` list (ROUTE is then
     * the route's path pattern for a route's own list, "" for the global one). */
    unsigned flags;
} celeris_init_args;
#define CELERIS_INIT_MIDDLEWARE 1u

/*
 * The descriptor. Fill it with CELERIS_MODULE_HEADER first, then the callbacks;
 * only `handle` is required.
 */
typedef struct celeris_module {
    uint32_t abi_version; /* CELERIS_MODULE_ABI_VERSION the module was built for */
    uint32_t size;        /* sizeof(celeris_module) the module was built with */
    const char *name;     /* for logs */

    /* Once per route instance, on the main thread, at start or reload. Parse the
     * config, set *instance. Return CELERIS_OK, or CELERIS_ERROR with a message
     * in err (errlen bytes): the config is then refused, naming the route. */
    int (*init)(const celeris_init_args *args, void **instance, char *err, size_t errlen);

    /* Once per instance when its configuration generation is released: every
     * request on it has ended and every worker_fini has run. Any thread. */
    void (*fini)(void *instance);

    /* Optional: per worker thread, on that thread, before its first request
     * (worker_init) and when the worker lets go of the generation (worker_fini).
     * *worker_data is what celeris_req_worker_data returns on that worker. */
    int (*worker_init)(void *instance, celeris_worker *worker, void **worker_data);
    void (*worker_fini)(void *instance, celeris_worker *worker, void *worker_data);

    /*
     * Per request, on its worker thread. Either respond (celeris_resp_send and
     * friends, or start a stream) and return CELERIS_OK; or call
     * celeris_req_suspend, or start a timer or watch (celeris_timer_start,
     * celeris_watch_start), and return CELERIS_SUSPENDED; or return CELERIS_ERROR
     * (a 500 if no response has started, else the stream is reset).
     */
    int (*handle)(void *instance, celeris_req *req);

    /* Filled by CELERIS_MODULE_HEADER (absent from modules built before them,
     * which `size` tells): the name given to CELERIS_MODULE, which logs use
     * when `name` is NULL, and the CELERIS_VERSION_NUM of the header. */
    const char *declared_name;
    uint32_t header_version;

    /* celerisd 0.2.0: middleware (see "Middleware" below). Either makes the
     * module usable in a `middleware:` list; a module that has them may leave
     * `handle` NULL (it then cannot be a route's handler). */
    int (*on_request)(void *instance, celeris_req *req);
    void (*on_response_head)(void *instance, celeris_req *req, int status);
} celeris_module;

#ifdef __cplusplus
/* C++ (C++20 designated initializers, which must follow the declaration
 * order: name, init, fini, worker_init, worker_fini, handle, on_request,
 * on_response_head): CELERIS_MODULE
 * fills declared_name and header_version in itself. g++ -Wextra warns about
 * each field left out (-Wno-missing-field-initializers quiets it). */
#define CELERIS_MODULE_HEADER                                                                      \
    .abi_version = CELERIS_MODULE_ABI_VERSION, .size = sizeof(celeris_module)
#else
#define CELERIS_MODULE_HEADER                                                                      \
    .abi_version = CELERIS_MODULE_ABI_VERSION, .size = sizeof(celeris_module),                     \
    .declared_name = celeris_module_declared_name_, .header_version = CELERIS_VERSION_NUM
#endif

#if defined(__GNUC__)
#define CELERIS_EXPORT __attribute__((visibility("default")))
#else
#define CELERIS_EXPORT
#endif

/*
 * Defines the exported descriptor: CELERIS_MODULE(name) = { ... }; NAME must be
 * an identifier (a C identifier is checked at compile time) and becomes the
 * descriptor's declared_name through CELERIS_MODULE_HEADER, so the two go
 * together. The exported symbol is always celeris_module_entry: one module
 * per shared object.
 */
#ifdef __cplusplus
/* C++: the braces initialize a hidden constant the exported descriptor is
 * copied from when the shared object is loaded (before celerisd reads it),
 * with declared_name and header_version added. */
#define CELERIS_MODULE(modname)                                                                    \
    enum { celeris_module_name_must_be_an_identifier_##modname = 0 };                              \
    static const char celeris_module_declared_name_[] = #modname;                                  \
    extern const celeris_module celeris_module_given_ __attribute__((visibility("hidden")));       \
    static celeris_module celeris_module_complete_()                                               \
    {                                                                                              \
        celeris_module m = celeris_module_given_;                                                  \
        m.declared_name = celeris_module_declared_name_;                                           \
        m.header_version = CELERIS_VERSION_NUM;                                                    \
        return m;                                                                                  \
    }                                                                                              \
    extern "C" CELERIS_EXPORT const celeris_module celeris_module_entry =                          \
        celeris_module_complete_();                                                                \
    const celeris_module celeris_module_given_
#else
#define CELERIS_MODULE(modname)                                                                    \
    enum { celeris_module_name_must_be_an_identifier_##modname = 0 };                              \
    static const char celeris_module_declared_name_[] = #modname;                                  \
    CELERIS_EXPORT const celeris_module celeris_module_entry
#endif
#define CELERIS_MODULE_SYMBOL "celeris_module_entry"

/* ---- the request ---- */

celeris_str celeris_req_method(const celeris_req *req);
/* The path without the query, as sent (percent-encoded). */
celeris_str celeris_req_path(const celeris_req *req);
/* The raw query after '?', without it; empty when there is none. */
celeris_str celeris_req_query(const celeris_req *req);
/* Route param NAME (":name" or "*name" in the route), percent-decoded. */
int celeris_req_param(celeris_req *req, const char *name, celeris_str *out);
/* First query argument NAME, percent-decoded ('+' is a space). */
int celeris_req_query_arg(celeris_req *req, const char *name, celeris_str *out);
/* First request header NAME (case-insensitive). */
int celeris_req_header(const celeris_req *req, const char *name, celeris_str *out);
/* Header I (0-based) of celeris_req_header_count, names lowercase. */
size_t celeris_req_header_count(const celeris_req *req);
int celeris_req_header_at(const celeris_req *req, size_t i, celeris_str *name, celeris_str *value);
/* The whole request body, buffered up to the route's max_request_body (else
 * limits.max_request_body). Empty on a route that takes bodies as a stream
 * (celeris_init_body_stream, below). */
celeris_str celeris_req_body(const celeris_req *req);

/* ---- the connection ----
 * Computed when called, into memory that lives as long as the request's
 * other strings; a module that never calls these pays nothing. A module that
 * must also load on a celerisd built before them declares them weak. */

/* The authority the request names: HTTP/2's :authority, HTTP/1.1's Host (or
 * an absolute-form target's). Empty when there is none. */
celeris_str celeris_req_authority(const celeris_req *req);
/* "http" or "https": HTTP/2's :scheme as sent; HTTP/1.1's from the
 * connection (TLS: "https"). */
celeris_str celeris_req_scheme(const celeris_req *req);
/* "HTTP/1.1" (also for an HTTP/1.0 request), "h2" (over TLS, by ALPN) or
 * "h2c" (cleartext: prior knowledge or an Upgrade). NUL-terminated. */
celeris_str celeris_req_protocol(const celeris_req *req);

/* Which address celeris_req_addr gives. */
#define CELERIS_ADDR_CLIENT 0 /* the client: what the access log shows (below) */
#define CELERIS_ADDR_PEER 1   /* the socket's peer (a balancer, behind one) */
#define CELERIS_ADDR_LOCAL 2  /* the socket's own address: the listener's */
/*
 * Address WHICH as text ("192.0.2.1", "2001:db8::1", no brackets) into *IP
 * and its port into *PORT (PORT may be NULL). The client is the socket's
 * peer, or on a proxy_protocol listener the PROXY header's source, and then,
 * when `real_ip` is configured and the peer is trusted, the address its header
 * names (port 0: a header carries none). CELERIS_OK, CELERIS_NOTFOUND (no
 * such WHICH, or a socket that is not IP), CELERIS_NOMEM.
 */
int celeris_req_addr(celeris_req *req, int which, celeris_str *ip, unsigned *port);

/* What celeris_req_tls gives; each is empty on a cleartext connection. */
#define CELERIS_TLS_VERSION 1        /* "TLSv1.3", "TLSv1.2" */
#define CELERIS_TLS_CIPHER 2         /* OpenSSL's name: "TLS_AES_256_GCM_SHA384" */
#define CELERIS_TLS_SNI 3            /* the server name the client sent; empty: none */
#define CELERIS_TLS_ALPN 4           /* "h2", "http/1.1"; empty: none agreed */
#define CELERIS_TLS_CLIENT_SUBJECT 5 /* "/CN=..." of the client's certificate */
/* Item WHAT of the connection's TLS session; NUL-terminated. Empty when there
 * is none or WHAT is unknown. celerisd does not ask clients for a certificate
 * yet, so CELERIS_TLS_CLIENT_SUBJECT is empty until it does. */
celeris_str celeris_req_tls(celeris_req *req, int what);

/* This instance's per-worker data (from worker_init), or NULL. */
void *celeris_req_worker_data(const celeris_req *req);
/* The worker's libevent base, for a module that drives libevent itself (it
 * then builds with libevent too: celeris-module.pc's `libevent` variable
 * names the package). celeris_timer_* and celeris_watch_* below need none. */
struct event_base *celeris_req_event_base(const celeris_req *req);
/* Which worker runs the request (0-based; stable for the worker's life). */
unsigned celeris_worker_id(const celeris_worker *worker);
unsigned celeris_req_worker_id(const celeris_req *req);

/* ---- the response ---- */

/* Adds a response header (copied). Before the response starts: in handle, or in
 * the completion of a suspended request (on its worker). The server sets
 * date, server and content-length itself; content-type defaults to
 * application/octet-stream. */
int celeris_resp_header(celeris_req *req, const char *name, const char *value);
/* The whole response: status and body (copied). Finishes the request. */
int celeris_resp_send(celeris_req *req, int status, const void *body, size_t len);
/* The same with a formatted body. */
int celeris_resp_printf(celeris_req *req, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The whole response with BODY sent without copying: RELEASE(ARG) runs (on the
 * worker) once celerisd no longer needs BODY, also when the request aborts. */
int celeris_resp_send_ref(celeris_req *req, int status, const void *body, size_t len,
                          void (*release)(void *arg), void *arg);

/* Streaming: start sends the status and headers, then write sends chunks
 * (copied) as they become ready, and end finishes. write returns CELERIS_AGAIN
 * when more than a window's worth is waiting for the client: the data was
 * taken, but write no more until the on_writable callback runs.
 *
 * HEAD (and a 204 or 304 status): start sends the headers a GET would get
 * (HTTP/1.1: transfer-encoding: chunked; never a content-length), every write
 * is accepted and discarded (CELERIS_OK, never CELERIS_AGAIN), and the request
 * stays valid until end, exactly as on a GET: one code path serves both. A
 * module that would rather not produce the body tests celeris_req_method. */
int celeris_resp_start(celeris_req *req, int status);
int celeris_resp_write(celeris_req *req, const void *data, size_t len);
int celeris_resp_end(celeris_req *req);
/* Bytes written and not yet handed to the connection. */
size_t celeris_resp_buffered(const celeris_req *req);
/* FN(REQ, ARG) runs once, when buffered data falls below the low-water mark. */
int celeris_resp_on_writable(celeris_req *req, void (*fn)(celeris_req *req, void *arg), void *arg);

/* ---- asynchronous completion ---- */

/* Suspends REQ: handle() then returns CELERIS_SUSPENDED and the response comes
 * later through the token, which must be resumed exactly once. */
celeris_async *celeris_req_suspend(celeris_req *req);
/* FN(REQ, ARG) runs on REQ's worker thread: soon when called from another
 * thread, at once when called on that worker. FN responds (or suspends again).
 * When the client went away first REQ is NULL: FN only cleans up. Any thread.
 * A token may be resumed after its worker has ended (a reload that lowered
 * `workers`, the end of shutdown_timeout; on_close has run by then): FN then
 * gets NULL on the main thread, within about a second; when the process is
 * exiting it never runs. The module's code stays loaded while a token of its
 * generation is out. */
void celeris_async_resume(celeris_async *a, void (*fn)(celeris_req *req, void *arg), void *arg);
/* FN(ARG, FINISHED) runs once, on the worker, when celerisd is done with REQ:
 * FINISHED is 1 when the whole response went out, 0 when the client reset the
 * stream or the connection closed first. The place to free per-request state.
 * REQ is dead from then on (a token still has to be resumed; its function
 * then gets NULL). */
int celeris_req_on_close(celeris_req *req, void (*fn)(void *arg, int finished), void *arg);

/* ---- timers and file descriptors on the worker's loop ----
 *
 * For work on the request's own worker without libevent: a timer, or a file
 * descriptor (a socket to a backend) watched for reading or writing. Each
 * belongs to one request and runs its function on that request's worker
 * with the request alive: never after the request ends. Worker thread only.
 *
 * Waiting. Started on a request that has no answer yet, a timer or watch
 * makes handle()'s return of CELERIS_SUSPENDED legal without a token: the
 * answer then comes from one of their functions (or through a token). Once
 * such a function returns with the request still unanswered, no token out
 * and no timer or watch left that can call back, the request is ended with a
 * 500 and the log says so: it cannot hang.
 *
 * The end of the request. When the request ends (answered and sent, the
 * client gone, the connection closed), celerisd stops every timer and watch
 * of it right after the module's on_close function (celeris_req_on_close)
 * returns: on_close may still cancel them or close their descriptors; their
 * functions never run again. A handle is memory of the request: valid until
 * then, cancelling it twice or after a one-shot fired is harmless, and using
 * it after on_close is not allowed. Each start takes a little of the
 * request's memory until the request ends: a request that waits again and
 * again re-arms one timer (celeris_timer_restart) rather than starting new
 * ones. A descriptor is the module's: celerisd never reads, writes or closes
 * it, and the module closes it (at the latest in on_close).
 *
 * Errors: CELERIS_STATE when the request is over (from a late token:
 * celeris_async_resume's REQ is NULL then anyway), CELERIS_ERROR for the
 * arguments, CELERIS_NOMEM; *OUT is left alone on error.
 */

typedef struct celeris_timer celeris_timer;
typedef struct celeris_watch celeris_watch;

#define CELERIS_TIMER_REPEAT 1u /* run every MS until cancelled, not once */

/* FN(REQ, ARG) runs on REQ's worker MS milliseconds from now (0: on the next
 * pass of the loop, never inside this call), then every MS with
 * CELERIS_TIMER_REPEAT (MS 0 is refused there). OUT may be NULL. */
int celeris_timer_start(celeris_req *req, uint64_t ms, unsigned flags,
                        void (*fn)(celeris_req *req, void *arg), void *arg, celeris_timer **out);
/* Re-arms T (pending, fired or cancelled) to run MS milliseconds from now,
 * and every MS after that when it repeats; its function and flags stay. */
int celeris_timer_restart(celeris_timer *t, uint64_t ms);
/* T does not run again (until restarted). Also from its own function. */
int celeris_timer_cancel(celeris_timer *t);

#define CELERIS_WATCH_READ 1u  /* FD is readable, or at end of file, or failed */
#define CELERIS_WATCH_WRITE 2u /* FD is writable (a connect finished, or failed) */
/* FN(REQ, FD, EVENTS, ARG) runs on REQ's worker whenever FD is ready for one
 * of EVENTS (level-triggered: again on the next pass while it stays ready);
 * EVENTS in the call says which are ready. FD must be non-blocking. OUT may
 * be NULL. */
int celeris_watch_start(celeris_req *req, int fd, unsigned events,
                        void (*fn)(celeris_req *req, int fd, unsigned events, void *arg), void *arg,
                        celeris_watch **out);
/* Watches for EVENTS from now on; 0 pauses the watch, which still counts as
 * something the request waits for (above). Not after celeris_watch_cancel. */
int celeris_watch_set(celeris_watch *w, unsigned events);
/* W does not call back again; the descriptor stays open. Also from its own
 * function. */
int celeris_watch_cancel(celeris_watch *w);

/* ---- the request body as a stream ----
 *
 * For bodies a module should not hold whole (an upload stored to disk,
 * passed to a backend): it takes them piece by piece, and how fast it takes
 * them is how fast the client may send (HTTP/2: the stream's flow-control
 * window is opened only by what the module took; HTTP/1.1: the connection's
 * socket is not read while the module holds back). Worker thread only.
 */

/* From init() only (ARGS is init's): this route instance takes request
 * bodies as a stream. A request with a body then comes to handle() as soon as
 * its headers are in, its body still to come (celeris_req_body is empty);
 * handle() reads it with celeris_req_body_on_data. Requests without a body
 * come as before. CELERIS_STATE outside init. */
int celeris_init_body_stream(const celeris_init_args *args);

/*
 * FN(REQ, DATA, LEN, END, ARG) receives the body in order: LEN bytes at DATA
 * (valid during the call only), END 1 when they are the last (LEN may be 0:
 * an empty or chunked body's end). FN returns how many of LEN it took from
 * the front: all of them, and FN comes again with what follows; fewer, and
 * the rest is held (the client sends no more meanwhile) until
 * celeris_req_body_resume, which offers it again. Once FN has taken the end,
 * it is not called again. A call with LEN 0 and END 1 is taken by any return
 * (there is nothing to hold back), so a function that is holding back must
 * still act on that END; HTTP/2 gives the end this way whenever it comes
 * after the last bytes were offered, HTTP/1.1 for a chunked body.
 *
 * FN runs from the worker's loop, never inside this call. Setting it (or a
 * new FN) lets handle() return CELERIS_SUSPENDED without a token while the
 * body is coming: the answer may come from FN or later, and a request left
 * unanswered with the whole body taken and nothing else to wait for gets a
 * 500 (see "Waiting" above). Also on a request whose body was buffered (a
 * route without celeris_init_body_stream, or no body): FN then gets it all at
 * once, with END 1, so one code path serves both.
 *
 * The answer may begin before the body ends (a response streamed while the
 * upload goes on). Once the answer is complete, FN is not called again and
 * what is left of the body is dropped: HTTP/2 reads and discards it (up to
 * max_request_body), HTTP/1.1 closes the connection after the answer.
 *
 * A body that passes the route's max_request_body gets the client a 413
 * (when no answer has begun; else the HTTP/2 stream is reset, the HTTP/1.1
 * connection closed): FN is not called again, the module's own answer calls
 * get CELERIS_STATE, and on_close runs. A client that goes away ends the
 * request as usual (on_close, FINISHED 0).
 *
 * What celerisd holds for a module that holds back is bounded: one stream
 * window (limits.initial_window_size) over HTTP/2, the connection's input
 * buffer (what one read event brings past 64 KiB, at most 320 KiB) over
 * HTTP/1.1. FN may call celeris_req_body_resume itself before it returns
 * fewer: the rest then comes again from the loop. CELERIS_STATE when the
 * request is over or its body was all taken.
 */
int celeris_req_body_on_data(celeris_req *req,
                             size_t (*fn)(celeris_req *req, const void *data, size_t len, int end,
                                          void *arg),
                             void *arg);
/* FN took less than it was offered and can take more now: the held bytes
 * (and what follows) come again, from the loop. */
int celeris_req_body_resume(celeris_req *req);
/* 1 when REQ's body comes as a stream (still arriving), 0 when it was
 * buffered or there is none. */
int celeris_req_body_streamed(const celeris_req *req);

/* ---- logging (any thread) ---- */

#define CELERIS_LOG_DEBUG 0
#define CELERIS_LOG_INFO 1
#define CELERIS_LOG_WARN 2
#define CELERIS_LOG_ERROR 3
void celeris_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ==== celerisd 0.2.0: per-request memory, cleanups, abort, cookies, forms,
 * module metrics ====
 * A module that must also load on celerisd 0.1.0 declares what it uses of
 * this block weak (#pragma weak celeris_req_alloc) and tests it for NULL. */

/* ---- per-request memory and cleanups ---- */

/*
 * N bytes (N 0 counts as 1) from REQ's own memory, aligned to 16, not
 * zeroed. They stay valid until REQ ends and are freed with it: never free()
 * them. The on_close function and the cleanups below still see them; nothing
 * after that does. No system allocation per call on the usual sizes: the
 * request's memory grows in blocks from the worker's pool. NULL when out of
 * memory or when REQ is ending (called from its on_close function).
 */
void *celeris_req_alloc(celeris_req *req, size_t n);

/*
 * FN(ARG) runs once, when REQ ends, however it ends: the response went out,
 * celeris_resp_abort, the client reset the stream or closed the connection,
 * or the worker stopped with REQ still open (shutdown or a reload that
 * lowered `workers`: the connection is closed at `shutdown_timeout`; a
 * suspended request whose token is never resumed ends then, too). It runs on
 * REQ's worker thread, after the on_close function, in the reverse order of
 * registration; celeris_req_alloc memory is still valid, but REQ is not: it
 * must not be used. The cleanup node itself comes from REQ's memory.
 * CELERIS_OK, CELERIS_NOMEM (FN will not run), CELERIS_STATE (REQ ended).
 * A process that is killed, or crashes, runs no cleanup (below: a crash).
 */
int celeris_req_on_cleanup(celeris_req *req, void (*fn)(void *arg), void *arg);

/* ---- ending a response the module cannot finish ---- */

/*
 * Gives up on REQ's response, from handle or from any callback on REQ's
 * worker (a timer, a socket, celeris_resp_on_writable, a resumed token's
 * function):
 *   - before the response started: the client gets a 500 (none of the
 *     module's headers), as if handle had returned CELERIS_ERROR; HTTP/1.1
 *     then closes the connection;
 *   - after celeris_resp_start: HTTP/2 resets the stream (RST_STREAM
 *     INTERNAL_ERROR; other streams of the connection go on; the head and
 *     data not yet sent are dropped with it, so a reset in the same turn of
 *     the loop as the start may be all the client sees), HTTP/1.1 sends the
 *     bytes already written and closes the connection, without the last
 *     chunk: either way the client sees a cut body, never a complete one.
 * Nothing is logged (the module logs its reason itself). Afterwards every
 * response call on REQ (celeris_resp_*) answers CELERIS_STATE, while the
 * request's accessors still work until REQ ends; the on_close function runs
 * (FINISHED 0 after
 * a start; before a start FINISHED says whether the 500 went out) and then
 * the cleanups. A suspended REQ's token must still be resumed; its function
 * gets REQ until REQ ends and NULL after. CELERIS_OK, or CELERIS_STATE when
 * the response had already ended (celeris_resp_send, _end) or REQ ended.
 */
int celeris_resp_abort(celeris_req *req);

/* ---- cookies and forms ---- */

/*
 * Cookie NAME (compared exactly, case-sensitive) of the request's Cookie
 * header fields (HTTP/2 clients may split them into several: every one is
 * searched; the first NAME wins). *OUT gets the value as sent, without the
 * double quotes around it if it had them, not decoded (cookies carry no
 * percent-encoding by standard; decode it yourself if your cookies do),
 * NUL-terminated in REQ's memory. CELERIS_OK, CELERIS_NOTFOUND (no such
 * cookie), CELERIS_NOMEM, CELERIS_STATE (REQ ended).
 *
 * Query arguments by name: celeris_req_query_arg (above).
 */
int celeris_req_cookie(celeris_req *req, const char *name, celeris_str *out);

/*
 * Field NAME of an application/x-www-form-urlencoded request body (the
 * content-type's media type compared case-insensitively, parameters such as
 * charset ignored): the first field whose percent-decoded name is NAME, its
 * value percent-decoded ('+' is a space), NUL-terminated, in REQ's memory
 * (computed on each call: a module that reads many fields may keep them).
 * A field without '=' has an empty value. CELERIS_NOTFOUND also when the
 * body is not such a form (another or no content-type). CELERIS_NOMEM,
 * CELERIS_STATE (REQ ended).
 *
 * JSON bodies are the module's business: jansson is installed with celerisd
 * (libjansson, `pkg-config --cflags --libs jansson`), and
 * json_loadb(body.ptr, body.len, 0, &err) on celeris_req_body parses one.
 * multipart/form-data is not parsed.
 */
int celeris_req_form(celeris_req *req, const char *name, celeris_str *out);

/* ---- module metrics ----
 * Series a module declares appear in the `metrics` route (Prometheus text)
 * as MODULE_NAME{route="PATH"}: MODULE is the module's name as logs show it
 * (every character outside [A-Za-z0-9_] made '_'), NAME the declared one,
 * PATH the route's path pattern; one family (HELP, TYPE) per MODULE_NAME
 * across routes. Each worker thread writes its own slot, with
 * no lock and no atomic read-modify-write; a scrape sums the slots. Threads
 * that are not workers (a module's own) share one slot updated atomically. */

typedef struct celeris_metric celeris_metric;

#define CELERIS_METRIC_COUNTER 1   /* only goes up: _add with v >= 0 */
#define CELERIS_METRIC_GAUGE 2     /* goes up and down: _add with +v, -v */
#define CELERIS_METRIC_HISTOGRAM 3 /* _observe: NAME_bucket{le=..}, _sum, _count */
#define CELERIS_METRIC_MAX_BOUNDS 32

/*
 * Declares a series for this route instance: in init only (ARGS is init's),
 * on the main thread. NAME matches [A-Za-z_][A-Za-z0-9_]* (with the module's
 * name and '_' before it, at most 128 bytes); a counter's name should end in
 * _total. HELP is text for the HELP line (may be NULL; a newline is escaped;
 * the newest declaration's is shown). A histogram takes NBOUNDS
 * (1 to CELERIS_METRIC_MAX_BOUNDS) finite upper bounds in increasing order
 * (+Inf is added); other types take NULL, 0.
 *
 * The series belongs to the route instance (no free call): it stays in the
 * output while an instance that declared it exists. A reload that keeps the route with a module
 * of the same name declaring the same NAME, type and bounds continues the
 * series (its values are not reset); a changed type or bounds starts it again
 * from zero. A gauge is the sum of what every thread added, so it fits levels
 * that move by steps (requests in flight, items cached), not values set
 * absolutely.
 *
 * NULL, logged with the reason, for a bad argument (name, type, bounds, the
 * same NAME twice on one instance, a call outside init) or out of memory:
 * init then usually fails with a message.
 */
celeris_metric *celeris_metric_declare(const celeris_init_args *args, int type, const char *name,
                                       const char *help, const double *bounds, size_t nbounds);
/* Adds V to a counter (V < 0 is ignored) or a gauge. Any thread; wait-free on
 * a worker. M NULL, a histogram, or V NaN: nothing. */
void celeris_metric_add(celeris_metric *m, double v);
/* Counts V in the first bucket whose bound is >= V and adds it to the sum.
 * Any thread. M NULL, not a histogram, or V NaN: nothing. */
void celeris_metric_observe(celeris_metric *m, double v);

/* ---- middleware ----
 *
 * A module whose descriptor has on_request or on_response_head may be an
 * item of a `middleware:` list (the global one or a route's):
 *
 *     middleware:
 *       - module: { name: auth, config: { header: x-token } }
 *
 * Each item is an instance of its own: init (ARGS->flags has
 * CELERIS_INIT_MIDDLEWARE; ARGS->config_json is the item's `config:`) when
 * the configuration is loaded, fini when its generation is released, as for
 * a route. worker_init and worker_fini are not called for a middleware
 * instance (celeris_req_worker_data gives NULL). A reload builds new
 * instances; a changed .so is loaded anew as for handlers.
 *
 * on_request(INSTANCE, REQ) runs on the worker, in the list's order, before
 * the handler (and before a 404 or 405 is decided). REQ is a request as a
 * handler sees it: every celeris_req_* getter works. It returns
 * CELERIS_CONTINUE to let the request go on, or answers it and returns
 * CELERIS_OK: celeris_resp_header, then celeris_resp_send or
 * celeris_resp_printf, synchronously, inside on_request. The handler and the
 * later middleware are then not called, and the answer passes the response
 * head phase of the whole chain like any other. Only a synchronous answer is
 * allowed: celeris_req_suspend (NULL), celeris_resp_start,
 * celeris_resp_send_ref, celeris_resp_abort, timers, watches, body streams,
 * celeris_req_on_close and celeris_req_on_cleanup answer CELERIS_STATE.
 * CELERIS_OK without an answer, CELERIS_ERROR or any other code: the client
 * gets a 500, logged once per instance. celeris_req_alloc memory lives until
 * the request ends.
 *
 * on_response_head(INSTANCE, REQ, STATUS) runs, in the list's order, for the
 * head of every answer the request gets: the handler's, the server's own
 * (404, 405, 413, 500...) and a middleware's. It edits the head's fields with
 * the calls below (the getters of REQ work too; a request refused before its
 * head was read shows what could be read). The head holds server, date,
 * content-type, the answer's headers and what earlier middleware changed;
 * content-length and the connection's framing fields are the server's and
 * never shown. It cannot answer (celeris_resp_* other than these:
 * CELERIS_STATE). Names are HTTP tokens, compared case-insensitively and
 * written lowercase; values may not hold CR or LF; content-length,
 * transfer-encoding, connection, keep-alive, proxy-connection and upgrade
 * are refused (CELERIS_ERROR); server, date and content-type may be changed.
 * A head holds at most 96 fields: an add or set past that is CELERIS_ERROR.
 * Outside on_response_head these calls answer CELERIS_STATE (the count 0).
 */

/* The first field NAME of the head into *OUT. CELERIS_OK, CELERIS_NOTFOUND. */
int celeris_resp_field_get(const celeris_req *req, const char *name, celeris_str *out);
/* How many fields the head has, and field I of them (names lowercase). */
size_t celeris_resp_field_count(const celeris_req *req);
int celeris_resp_field_at(const celeris_req *req, size_t i, celeris_str *name, celeris_str *value);
/* NAME: VALUE (copied): the first field NAME gets VALUE and the others named
 * so go; appended when there is none. */
int celeris_resp_field_set(celeris_req *req, const char *name, const char *value);
/* NAME: VALUE (copied) appended, also when NAME is there already. */
int celeris_resp_field_add(celeris_req *req, const char *name, const char *value);
/* Every field NAME goes. CELERIS_OK, or CELERIS_NOTFOUND when there was none. */
int celeris_resp_field_remove(celeris_req *req, const char *name);

/* ==== celerisd 0.3.0: the request id ====
 * A module that must also load on celerisd 0.2.0 or older declares it weak
 * (#pragma weak celeris_req_id) and tests it for NULL. */

/*
 * REQ's id as the `request_id` middleware gave it: the text its response
 * field (x-request-id unless configured otherwise) and the access log's
 * %{request_id} carry, 32 lowercase hex digits of 128 random bits (22
 * base64url characters with `format: base64url`), or with `trust_incoming`
 * the id the request brought (1 to 128 visible ASCII octets). A route's
 * request_id after a global one replaces the id before the handler runs, so
 * handle() sees the final one.
 *
 * Empty (LEN 0, PTR "" and never NULL) when no request_id middleware runs
 * for REQ (none in the global list nor the route's), and in a middleware
 * module's on_request placed before the request_id item of its chain. In
 * on_response_head of an answer given before the request was routed (an
 * HTTP/1.1 400, a 413), the id exists once request_id's own head phase has
 * run: for a module placed after it in the list.
 *
 * Not NUL-terminated. Valid as long as REQ's other strings (until the
 * response is finished or REQ is aborted); copy it to keep it longer. The
 * same pointer on every call for one request. Worker thread only.
 */
celeris_str celeris_req_id(const celeris_req *req);

#ifdef __cplusplus
}
#endif

#endif
