/* celerisd: the process lifecycle. Parse the command line, load the config,
 * open listeners, start workers, then wait for signals. */
#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <jansson.h>
#include <nghttp2/nghttp2.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>
#include <yaml.h>

#include "config.h"
#include "drain.h"
#include "h2.h"
#include "accesslog.h"
#include "log.h"
#include "notify.h"
#include "pidfile.h"
#include "reload.h"
#include "stats.h"
#include "version.h"

#ifdef CEL_DEFAULT_CONFIG
#define DEFAULT_CONFIG CEL_DEFAULT_CONFIG
#else
#define DEFAULT_CONFIG "/etc/celerisd/celerisd.yaml"
#endif

typedef struct daemon_state {
    cel_server srv;
    struct event_base *base;
    struct event *tick;
    struct event *drain_end; /* SIGTERM with drain_time: the GOAWAY waits for it */
    uint64_t watchdog_usec;
    struct timespec last_watchdog;
    char *pid_file; /* the one we wrote, NULL for none */
    int stopping;   /* a stop signal came */
} daemon_state;

static void usage(FILE *f)
{
    fprintf(f, "usage: celerisd [-c FILE] [-t] [-V] [-h] [drain]\n"
               "  -c, --config FILE  configuration file (default " DEFAULT_CONFIG ")\n"
               "  -t, --test         check the configuration and exit\n"
               "  -V, --version      print the version and library versions and exit\n"
               "  -h, --help         print this help and exit\n"
               "  drain              make the running daemon (its pid_file) drain: status\n"
               "                     and readiness answer 503, everything else is served\n");
}

static void print_versions(void)
{
    printf("celerisd %s\n", CEL_VERSION);
    printf("libevent %s\n", event_get_version());
    printf("nghttp2 %s\n", nghttp2_version(0)->version_str);
    printf("libyaml %s\n", yaml_get_version_string());
    printf("jansson %s\n", jansson_version_str());
}

static void notify_status(daemon_state *d)
{
    const cel_server *s = &d->srv;
    cel_notify("STATUS=generation %lu, %u workers, %zu connections; reloads %lu ok, %lu "
               "failed%s%s",
               s->cfg->generation, s->nworkers, cel_server_connections(s), s->reloads_ok,
               s->reloads_failed, s->last_error[0] ? "; last reload failed: " : "", s->last_error);
}

/* The pid file the serving generation names: written when it is new, the one
 * written before removed. A failure is logged and keeps the old file. */
static void follow_pid_file(daemon_state *d)
{
    const char *want = d->srv.cfg->pid_file;
    if ((!want && !d->pid_file) || (want && d->pid_file && strcmp(want, d->pid_file) == 0))
        return;
    char err[512];
    char *copy = want ? strdup(want) : NULL;
    if (want && (!copy || cel_pidfile_write(want, err, sizeof(err)))) {
        cel_log(CEL_LOG_ERROR, "%s", copy ? err : "out of memory");
        free(copy);
        return;
    }
    if (d->pid_file)
        cel_pidfile_remove(d->pid_file);
    free(d->pid_file);
    d->pid_file = copy;
}

static void reload(daemon_state *d)
{
    cel_notify_reloading();
    cel_log(CEL_LOG_INFO, "reloading %s", d->srv.cfg->file);
    int ok = cel_server_reload(&d->srv) == 0;
    cel_stats_reload(ok, d->srv.cfg->generation, d->srv.nworkers);
    if (ok) {
        follow_pid_file(d);
        cel_log(CEL_LOG_INFO, "generation %lu is serving", d->srv.cfg->generation);
        cel_notify("READY=1");
    } else {
        cel_log(CEL_LOG_ERROR, "reload failed, generation %lu keeps serving: %s",
                d->srv.cfg->generation, d->srv.last_error);
        cel_notify("READY=1\nERRNO=%d", EINVAL);
    }
    notify_status(d);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    daemon_state *d = arg;
    (void)what;
    switch (sig) {
    case SIGHUP:
        reload(d);
        break;
    case SIGUSR1: {
        char err[512];
        if (d->srv.cfg->accesslog && cel_accesslog_reopen(d->srv.cfg->accesslog, err, sizeof(err)))
            cel_log(CEL_LOG_ERROR, "%s", err);
        else
            cel_log(CEL_LOG_INFO, "log files reopened");
        break;
    }
    case SIGUSR2:
        if (!cel_drain_start())
            cel_log(CEL_LOG_INFO, "draining: status and readiness answer 503, serving goes on");
        break;
    default: {
        uint32_t ms = d->srv.cfg->drain_time_ms;
        /* A second signal during the drain time does not wait for its end. */
        if (ms && d->drain_end && !d->stopping) {
            d->stopping = 1;
            cel_drain_start();
            cel_log(CEL_LOG_INFO, "%s: draining for %u ms, then stopping gracefully",
                    strsignal((int)sig), ms);
            cel_notify("STOPPING=1\nSTATUS=stopping: readiness 503 for %u ms", ms);
            struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
            event_add(d->drain_end, &tv);
            break;
        }
        cel_log(CEL_LOG_INFO, "%s: stopping gracefully", strsignal((int)sig));
        cel_notify("STOPPING=1\nSTATUS=stopping: draining %zu connections",
                   cel_server_connections(&d->srv));
        event_base_loopexit(d->base, NULL);
    }
    }
}

static void on_drain_end(evutil_socket_t fd, short what, void *arg)
{
    daemon_state *d = arg;
    (void)fd, (void)what;
    cel_log(CEL_LOG_INFO, "drain time over: stopping gracefully");
    cel_notify("STATUS=stopping: draining %zu connections", cel_server_connections(&d->srv));
    event_base_loopexit(d->base, NULL);
}

/* Once a second: join drained workers, refresh the status, feed the watchdog
 * (only while every worker's loop is ticking). */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    daemon_state *d = arg;
    (void)fd, (void)what;
    cel_server_reap(&d->srv);
    notify_status(d);
    if (d->watchdog_usec) {
        if (cel_server_alive(&d->srv))
            cel_notify("WATCHDOG=1");
        else
            cel_log(CEL_LOG_ERROR, "a worker's event loop has not run for a second; "
                                   "not feeding the watchdog");
    }
}

/* `celerisd drain`: SIGUSR2 to the daemon the configuration's pid_file names. */
static int send_drain(const char *file)
{
    char err[1024];
    cel_config *cfg = cel_config_check(file, err, sizeof(err));
    if (!cfg) {
        fprintf(stderr, "celerisd: %s\n", err);
        return 1;
    }
    int rc = 1;
    long pid = 0;
    FILE *f = cfg->pid_file ? fopen(cfg->pid_file, "re") : NULL;
    if (!cfg->pid_file)
        fprintf(stderr, "celerisd: %s sets no pid_file: cannot find the daemon\n", file);
    else if (!f)
        fprintf(stderr, "celerisd: cannot read %s: %s\n", cfg->pid_file, strerror(errno));
    else if (fscanf(f, "%ld", &pid) != 1 || pid <= 1)
        fprintf(stderr, "celerisd: %s holds no pid\n", cfg->pid_file);
    else if (kill((pid_t)pid, SIGUSR2) < 0)
        fprintf(stderr, "celerisd: cannot signal pid %ld: %s\n", pid, strerror(errno));
    else {
        printf("celerisd: pid %ld is draining\n", pid);
        rc = 0;
    }
    if (f)
        fclose(f);
    cel_config_unref(cfg);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"test", no_argument, NULL, 't'},
                                         {"version", no_argument, NULL, 'V'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *file = DEFAULT_CONFIG;
    int test = 0, ch;
    while ((ch = getopt_long(argc, argv, "c:tVh", opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            file = optarg;
            break;
        case 't':
            test = 1;
            break;
        case 'V':
            print_versions();
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind + 1 == argc && strcmp(argv[optind], "drain") == 0 && !test)
        return send_drain(file);
    if (optind < argc) {
        fprintf(stderr, "celerisd: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    char err[1024];
    cel_config *cfg =
        test ? cel_config_check(file, err, sizeof(err)) : cel_config_load(file, err, sizeof(err));
    if (!cfg) {
        fprintf(stderr, "celerisd: %s\n", err);
        return 1;
    }
    if (test) {
        printf("celerisd: %s: configuration ok (%zu routes, %u workers)\n", file, cfg->nroutes,
               cfg->nworkers);
        cel_config_unref(cfg);
        return 0;
    }
    cel_log_level = cfg->log_level;
    signal(SIGPIPE, SIG_IGN);
    /* A kernel that backs anonymous memory with huge pages by default (THP
     * "always", or mTHP sizes enabled) would fault whole 16 KiB-2 MiB folios
     * into the sparse pages of the workers' pools and arenas: an idle
     * connection's cost would depend on the machine (30 KiB instead of 10.7
     * when the pool's span is huge-page backed). Without THP every kernel
     * behaves as with THP "madvise", the setting the figures were measured with. */
    prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0);
    /* Our signals wait (pending, not fatal) until the loop handles them, and
     * again from the end of the loop on: a SIGTERM in either window must not
     * kill the process with the default action. */
    sigset_t ours;
    sigemptyset(&ours);
    sigaddset(&ours, SIGTERM);
    sigaddset(&ours, SIGINT);
    sigaddset(&ours, SIGHUP);
    sigaddset(&ours, SIGUSR1);
    sigaddset(&ours, SIGUSR2);
    sigprocmask(SIG_BLOCK, &ours, NULL);
    if (cel_h2_global_init()) {
        fprintf(stderr, "celerisd: out of memory\n");
        return 1;
    }
    daemon_state d;
    memset(&d, 0, sizeof(d));
    d.base = event_base_new();
    if (!d.base || cel_server_start(&d.srv, cfg)) {
        if (d.base)
            event_base_free(d.base);
        return 1;
    }
    /* After the listeners: a second daemon that cannot bind must not take
     * over the first one's pid file. */
    if (d.srv.cfg->pid_file) {
        d.pid_file = strdup(d.srv.cfg->pid_file);
        if (!d.pid_file || cel_pidfile_write(d.pid_file, err, sizeof(err))) {
            cel_log(CEL_LOG_ERROR, "%s", d.pid_file ? err : "out of memory");
            free(d.pid_file);
            cel_server_stop(&d.srv);
            event_base_free(d.base);
            return 1;
        }
    }
    struct event *sigs[5];
    const int signums[5] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2};
    d.drain_end = evtimer_new(d.base, on_drain_end, &d);
    for (int i = 0; i < 5; i++) {
        sigs[i] = evsignal_new(d.base, signums[i], on_signal, &d);
        event_add(sigs[i], NULL);
    }
    sigprocmask(SIG_UNBLOCK, &ours, NULL);
    d.watchdog_usec = cel_notify_watchdog_usec();
    /* The tick feeds the watchdog, so it runs at least twice per interval. */
    struct timeval tick = {1, 0};
    if (d.watchdog_usec && d.watchdog_usec < 2000000)
        tick = (struct timeval){0, (suseconds_t)(d.watchdog_usec / 2)};
    d.tick = event_new(d.base, -1, EV_PERSIST, on_tick, &d);
    event_add(d.tick, &tick);
    cel_log(CEL_LOG_INFO, "celerisd %s serving generation %lu with %u workers", CEL_VERSION,
            d.srv.cfg->generation, d.srv.nworkers);
    cel_notify("READY=1\nMAINPID=%ld", (long)getpid());
    notify_status(&d);

    event_base_dispatch(d.base);

    sigprocmask(SIG_BLOCK, &ours, NULL);
    cel_server_stop(&d.srv);
    for (int i = 0; i < 5; i++)
        event_free(sigs[i]);
    event_free(d.drain_end);
    event_free(d.tick);
    event_base_free(d.base);
    libevent_global_shutdown();
    if (d.pid_file)
        cel_pidfile_remove(d.pid_file);
    free(d.pid_file);
    cel_log(CEL_LOG_INFO, "stopped");
    return 0;
}
