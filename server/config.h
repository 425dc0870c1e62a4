/*
 * A configuration generation: everything one YAML file produced (listen
 * addresses, workers, limits, the compiled route table with its handlers and
 * their bodies and templates). Immutable once loaded and reference counted:
 * workers and streams keep the generation they started with alive, so a reload
 * can publish a new one while responses in flight finish on the old one.
 */
#ifndef CEL_CONFIG_H
#define CEL_CONFIG_H

#include <stdatomic.h>
#include <sys/socket.h>

#include "common.h"
#include "handler.h"
#include "conf_listen.h"
#include "router.h"

/* Defaults for every limit; each has the YAML knob of the same name under `limits`
 * (its row of conf_limits in config.c). */
#define CEL_DEF_MAX_CONCURRENT_STREAMS 128
#define CEL_DEF_MAX_HEADER_LIST_SIZE 65536
#define CEL_DEF_MAX_REQUEST_BODY (1024 * 1024)
#define CEL_DEF_MAX_CONNECTIONS 10000 /* per worker */
#define CEL_DEF_IDLE_TIMEOUT_MS 60000
#define CEL_DEF_HEADER_TIMEOUT_MS 10000
#define CEL_DEF_WRITE_TIMEOUT_MS 30000
#define CEL_DEF_MIN_SEND_RATE 256 /* bytes/s a reader must take within write_timeout */
#define CEL_DEF_SHUTDOWN_TIMEOUT_MS 10000
/* Receive windows. Every stream starts with the protocol's 65,535: what a
 * streamed body may have waiting for its handler. A buffered body holds at
 * most its max_request_body whatever the window, so its stream is opened to
 * the body window, which lets one upload fill a 100 ms, 100 Mbit/s path
 * (1.25 MB in flight; a window is given back once half of it is read, so
 * twice that); uploads share the connection's. */
#define CEL_DEF_INITIAL_WINDOW_SIZE 65535
#define CEL_DEF_BODY_WINDOW (4u << 20)
#define CEL_DEF_CONNECTION_WINDOW (16u << 20)
#define CEL_DEF_MAX_OUTPUT_BUFFER (256 * 1024)
/* TCP_NOTSENT_LOWAT on accepted sockets: bytes the kernel may hold unsent.
 * Left unbounded, a bulk download queues megabytes behind the reader's
 * window, and on loopback the reader's acknowledgements then transmit them
 * in the reader's own context (README, Performance). */
#define CEL_DEF_TCP_NOTSENT_LOWAT (128 * 1024)
#define CEL_DEF_MAX_SETTINGS_ENTRIES 32 /* per SETTINGS frame */
#define CEL_DEF_RESET_BURST 1000        /* RST_STREAMs a client may send at once... */
#define CEL_DEF_RESET_RATE 33           /* ...and per second after that */
#define CEL_DEF_MAX_CONTINUATIONS 8     /* CONTINUATION frames per header block */
#define CEL_DEF_MAX_OUTBOUND_ACK 1000   /* SETTINGS/PING ACKs queued for a client not reading */
#define CEL_DEF_GLITCH_BURST 1000       /* frames that do no work (PRIORITY, empty DATA, ... */
#define CEL_DEF_GLITCH_RATE 100         /* ...unknown types, PING, SETTINGS) at once, per second */
#define CEL_DEF_MAX_REQUEST_LINE 8192   /* HTTP/1.1 request target (414 past it) */
#define CEL_DEF_MAX_HEADER_LINE 8192    /* HTTP/1.1 one header line (431 past it) */
#define CEL_DEF_MAX_HEADERS 100         /* HTTP/1.1 header count (431 past it) */
#ifndef CEL_MODULES_DIR
#define CEL_MODULES_DIR "/usr/lib/celerisd/modules"
#endif

typedef struct cel_limits {
    uint32_t max_concurrent_streams;
    uint32_t max_header_list_size;
    size_t max_request_body;
    uint32_t max_connections;
    uint32_t idle_timeout_ms;
    uint32_t header_timeout_ms;
    uint32_t write_timeout_ms;
    uint32_t min_send_rate;       /* bytes per second */
    uint32_t initial_window_size; /* per stream (SETTINGS_INITIAL_WINDOW_SIZE) */
    uint32_t body_window;         /* a buffered upload's stream, by WINDOW_UPDATE */
    uint32_t connection_window;   /* the connection's, from its first WINDOW_UPDATE */
    size_t max_output_buffer;
    uint32_t tcp_notsent_lowat; /* 0: the kernel's setting */
    uint32_t max_settings_entries;
    uint32_t reset_burst, reset_rate;
    uint32_t max_continuations;
    uint32_t max_outbound_ack;
    uint32_t glitch_burst, glitch_rate;
    uint32_t max_request_line, max_header_line, max_headers;
} cel_limits;

typedef struct cel_route {
    char *pattern;
    unsigned methods;
    cel_handler *handler;
    cel_loc loc;
    int access_log; /* 0: `access_log: off` on this route */
    /* The route's `max_request_body`; CEL_ROUTE_BODY_GLOBAL: limits' (the
     * generation's), resolved when a request comes (cel_route_body_limit). */
    size_t max_request_body;
    unsigned stat_id;            /* the route's counters (stats.h), stable across reloads */
    struct cel_mw_chain *mw_own; /* the route's `middleware:` list (owns it), or NULL */
    struct cel_mw_chain *mw;     /* what its requests run: the global list (its hosts:
                                    block's, then), then mw_own */
    int mw_joined;               /* mw was made for this route (freed with it) */
    char **hosts;                /* `host:` names, lowercase ("*.example.com" too); NULL: any */
    size_t nhosts;
    int scheme; /* `scheme:` CEL_SCHEME_HTTP or _HTTPS: only connections of that kind; 0: any */
} cel_route;
#define CEL_SCHEME_HTTP 1
#define CEL_SCHEME_HTTPS 2

/* A block of `hosts:`: the routes of its names, which answer alone for them. */
typedef struct cel_host_block {
    cel_router *router;
    struct cel_mw_chain *mw_own; /* the block's `middleware:` (owns it), or NULL */
    struct cel_mw_chain *mw;     /* the global list, then mw_own: its routes' base, and what a
                                    request for a path none of them has runs */
    char **names;                /* lowercase, as cel_vhost.name points at them */
    size_t nnames;
} cel_host_block;

/* The routes of one name: a route's `host:` (tried before the routes without
 * `host:`) or a `hosts:` block's (BLOCK set: tried alone). */
typedef struct cel_vhost {
    const char *name; /* "*.example.com" matches below example.com */
    size_t len;
    cel_router *router; /* BLOCK's, or owned */
    const cel_host_block *block;
    cel_loc loc; /* where a block gave the name */
} cel_vhost;

#define CEL_ROUTE_BODY_GLOBAL SIZE_MAX

/* The body limit of a request on ROUTE (NULL: no route), GLOBAL being the
 * connection's limits.max_request_body. */
static inline size_t cel_route_body_limit(const cel_route *route, size_t global)
{
    return route && route->max_request_body != CEL_ROUTE_BODY_GLOBAL ? route->max_request_body
                                                                     : global;
}

struct cel_accesslog;

typedef struct cel_config {
    atomic_uint refs;
    unsigned long generation; /* 1, 2, … in load order */
    char *file;

    cel_listen *listen;
    size_t nlisten;
    unsigned nworkers;
    int *cpus; /* nworkers CPU ids to pin to, -1 for "don't pin" */
    uint32_t shutdown_timeout_ms;
    uint32_t drain_time_ms; /* SIGTERM: readiness 503 this long before the GOAWAY */
    uint32_t tls_ticket_rotation_ms;
    int no_sendfile; /* `sendfile: false`: cleartext file ranges are read and written */
    int log_level;
    cel_limits limits;
    char *modules_dir;               /* where `module: {name: X}` finds X.so */
    char *pid_file;                  /* NULL: none; main.c writes it (pidfile.h) */
    struct cel_accesslog *accesslog; /* NULL: off */
    struct cel_real_ip *real_ip;     /* NULL: off (real_ip.h) */
    struct cel_mw_chain *mw;         /* the global `middleware:` list (owns it), or NULL */
    struct cel_errors *errors;       /* the `errors:` block (errors.h), or NULL */

    cel_router *router; /* the routes without `host:` */
    cel_vhost *vhosts;  /* one per name of a route's `host:` or of `hosts:`; NULL: none */
    size_t nvhosts;
    cel_host_block *blocks; /* `hosts:` (nblocks), or NULL */
    size_t nblocks;
    const cel_host_block *host_default; /* `hosts: { default: … }`, or NULL */
    cel_router *scheme_router[2];       /* `scheme:` routes per CEL_SCHEME_* - 1, tried first */
    int listen_routes; /* some listen entry has its own routes (tried before all) */
    int by_conn;       /* some route has `host:` or `scheme:`, or hosts: or listen routes exist */
    cel_route *routes;
    size_t nroutes;
} cel_config;

/*
 * Loads FILE. On error returns NULL with "FILE:LINE:COL: message" in ERR.
 * The result holds one reference.
 */
cel_config *cel_config_load(const char *file, char *err, size_t errlen);
/* The same for `celerisd -t`, which must leave nothing behind: files the
 * configuration writes (the access log) are checked, not created, and the
 * result only describes the configuration (it is not to be served). */
cel_config *cel_config_check(const char *file, char *err, size_t errlen);

void cel_config_ref(cel_config *c);
void cel_config_unref(cel_config *c);

/*
 * The published generation: the one new streams start on. The main thread
 * publishes; workers compare the published number with theirs on each event
 * (one atomic load) and only take the lock to pick up a new generation.
 */
void cel_config_publish(cel_config *c); /* takes its own reference */
unsigned long cel_config_published_generation(void);
cel_config *cel_config_acquire(void); /* a new reference to the published one, or NULL */

#endif
