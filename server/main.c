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
#include <unistd.h>
#include <yaml.h>

#include "config.h"
#include "h2.h"
#include "listener.h"
#include "log.h"
#include "version.h"
#include "worker.h"

#define DEFAULT_CONFIG "/etc/celerisd/celerisd.yaml"

typedef struct server {
    cel_config *cfg;
    cel_worker *workers;
    unsigned nworkers;
    struct event_base *base;
} server;

static void usage(FILE *f)
{
    fprintf(f, "usage: celerisd [-c FILE] [-t] [-V] [-h]\n"
               "  -c, --config FILE  configuration file (default " DEFAULT_CONFIG ")\n"
               "  -t, --test         check the configuration and exit\n"
               "  -V, --version      print the version and library versions and exit\n"
               "  -h, --help         print this help and exit\n");
}

static void print_versions(void)
{
    printf("celerisd %s\n", CEL_VERSION);
    printf("libevent %s\n", event_get_version());
    printf("nghttp2 %s\n", nghttp2_version(0)->version_str);
    printf("libyaml %s\n", yaml_get_version_string());
    printf("jansson %s\n", jansson_version_str());
}

/* Opens every listener once per worker. LFDS[w] gets nlisten descriptors. */
static int open_listeners(const cel_config *cfg, int **lfds)
{
    for (unsigned w = 0; w < cfg->nworkers; w++) {
        lfds[w] = malloc(cfg->nlisten * sizeof(int));
        if (!lfds[w])
            return -1;
        for (size_t i = 0; i < cfg->nlisten; i++) {
            char err[256];
            lfds[w][i] = cel_listener_open(&cfg->listen[i], err, sizeof(err));
            if (lfds[w][i] < 0) {
                cel_log(CEL_LOG_ERROR, "%s:%u:%u: %s", cfg->file, cfg->listen[i].loc.line,
                        cfg->listen[i].loc.col, err);
                for (size_t j = 0; j < i; j++)
                    close(lfds[w][j]);
                free(lfds[w]);
                lfds[w] = NULL;
                return -1;
            }
        }
    }
    return 0;
}

static int same_listeners(const cel_config *a, const cel_config *b)
{
    if (a->nlisten != b->nlisten || a->nworkers != b->nworkers)
        return 0;
    for (size_t i = 0; i < a->nlisten; i++)
        if (a->listen[i].addrlen != b->listen[i].addrlen ||
            memcmp(&a->listen[i].addr, &b->listen[i].addr, a->listen[i].addrlen))
            return 0;
    return 1;
}

static void reload(server *s)
{
    char err[1024];
    cel_log(CEL_LOG_INFO, "reloading %s", s->cfg->file);
    cel_config *cfg = cel_config_load(s->cfg->file, err, sizeof(err));
    if (!cfg) {
        cel_log(CEL_LOG_ERROR, "reload failed, keeping generation %lu: %s", s->cfg->generation,
                err);
        return;
    }
    if (!same_listeners(s->cfg, cfg))
        cel_log(CEL_LOG_WARN, "listen and workers changes take effect on restart; routes, "
                              "handlers and limits apply now");
    cel_log_level = cfg->log_level;
    cel_config_publish(cfg);
    cel_config_unref(s->cfg);
    s->cfg = cfg;
    for (unsigned i = 0; i < s->nworkers; i++)
        cel_worker_wake(&s->workers[i]);
    cel_log(CEL_LOG_INFO, "generation %lu is serving", cfg->generation);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    server *s = arg;
    (void)what;
    switch (sig) {
    case SIGHUP:
        reload(s);
        break;
    case SIGUSR1:
        /* No log files of our own yet: stderr belongs to the supervisor. */
        break;
    default:
        cel_log(CEL_LOG_INFO, "%s: stopping gracefully", strsignal((int)sig));
        event_base_loopexit(s->base, NULL);
    }
}

static int start_workers(server *s)
{
    const cel_config *cfg = s->cfg;
    int **lfds = calloc(cfg->nworkers, sizeof(*lfds));
    s->workers = calloc(cfg->nworkers, sizeof(*s->workers));
    if (!lfds || !s->workers || open_listeners(cfg, lfds)) {
        for (unsigned w = 0; lfds && w < cfg->nworkers; w++) {
            for (size_t i = 0; lfds[w] && i < cfg->nlisten; i++)
                close(lfds[w][i]);
            free(lfds[w]);
        }
        free(lfds);
        return -1;
    }
    /* Workers never see signals: the main thread handles them all. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = 0;
    for (unsigned w = 0; w < cfg->nworkers; w++) {
        char err[256];
        if (rc == 0 && cel_worker_start(&s->workers[w], w, cfg->cpus[w], lfds[w], cfg->nlisten,
                                         s->cfg, err, sizeof(err)) == 0) {
            s->nworkers++;
            continue;
        }
        if (rc == 0)
            cel_log(CEL_LOG_ERROR, "%s", err);
        rc = -1;
        for (size_t i = 0; i < cfg->nlisten; i++)
            close(lfds[w][i]);
        free(lfds[w]);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    free(lfds);
    return rc;
}

static void stop_workers(server *s)
{
    for (unsigned i = 0; i < s->nworkers; i++)
        cel_worker_stop(&s->workers[i]);
    for (unsigned i = 0; i < s->nworkers; i++)
        cel_worker_join(&s->workers[i]);
    free(s->workers);
    s->workers = NULL;
    s->nworkers = 0;
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
    if (optind < argc) {
        fprintf(stderr, "celerisd: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    char err[1024];
    server s = {0};
    s.cfg = cel_config_load(file, err, sizeof(err));
    if (!s.cfg) {
        fprintf(stderr, "celerisd: %s\n", err);
        return 1;
    }
    if (test) {
        printf("celerisd: %s: configuration ok (%zu routes, %u workers)\n", file, s.cfg->nroutes,
               s.cfg->nworkers);
        cel_config_unref(s.cfg);
        return 0;
    }
    cel_log_level = s.cfg->log_level;
    signal(SIGPIPE, SIG_IGN);
    if (cel_h2_global_init()) {
        fprintf(stderr, "celerisd: out of memory\n");
        return 1;
    }
    cel_config_publish(s.cfg);
    s.base = event_base_new();
    if (!s.base || start_workers(&s)) {
        if (s.nworkers)
            stop_workers(&s);
        cel_config_publish(NULL);
        cel_config_unref(s.cfg);
        return 1;
    }
    struct event *sigs[4];
    const int signums[4] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1};
    for (int i = 0; i < 4; i++) {
        sigs[i] = evsignal_new(s.base, signums[i], on_signal, &s);
        event_add(sigs[i], NULL);
    }
    for (size_t i = 0; i < s.cfg->nlisten; i++)
        cel_log(CEL_LOG_INFO, "listening on %s", s.cfg->listen[i].text);
    cel_log(CEL_LOG_INFO, "celerisd %s serving generation %lu with %u workers", CEL_VERSION,
            s.cfg->generation, s.nworkers);

    event_base_dispatch(s.base);

    stop_workers(&s);
    for (int i = 0; i < 4; i++)
        event_free(sigs[i]);
    event_base_free(s.base);
    cel_config_publish(NULL);
    cel_config_unref(s.cfg);
    libevent_global_shutdown();
    cel_log(CEL_LOG_INFO, "stopped");
    return 0;
}
