/*
 * For unit tests that drive a protocol session without a socket: a worker
 * environment (cel_env) on a config of one route, `/` answering "OK", whose
 * access log ("%H %s" a line: "HTTP/2.0 200") goes to a memfd the test reads
 * back with take_log(). Include once, after cmocka.h; call one_route_setup
 * from the group's setup.
 */
#ifndef CEL_TESTS_ONE_ROUTE_ENV_H
#define CEL_TESTS_ONE_ROUTE_ENV_H

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "env.h"
#include "genref.h"
#include "h2.h"
#include "log.h"
#include "pool.h"

static cel_env env;
static int logfd;

static int one_route_setup(const char *name)
{
    cel_log_level = CEL_LOG_ERROR + 1;
    logfd = memfd_create(name, MFD_CLOEXEC);
    int fd = memfd_create(name, MFD_CLOEXEC);
    assert_true(logfd >= 0 && fd >= 0);
    char yaml[512], path[64], err[512];
    int n = snprintf(yaml, sizeof(yaml),
                     "workers: 1\n"
                     "log: { access: { path: \"/proc/self/fd/%d\", format: \"%%H %%s\" } }\n"
                     "routes:\n"
                     "  - path: /\n"
                     "    static: { body: \"OK\" }\n",
                     logfd);
    assert_int_equal(write(fd, yaml, (size_t)n), n);
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    assert_int_equal(cel_h2_global_init(), 0);
    cel_config *cfg = cel_config_load(path, err, sizeof(err));
    close(fd);
    if (!cfg)
        fail_msg("config: %s", err);
    struct event_base *base = event_base_new();
    assert_non_null(base);
    assert_int_equal(cel_env_init(&env, 0, base), 0);
    assert_int_equal(cel_genref_init(&env, cfg), 0);
    cel_config_unref(cfg);
    return 0;
}

/* The access log's lines since the last call, as "HTTP/2.0 200\n". */
static char *take_log(void)
{
    cel_genref_flush_logs(&env);
    struct stat st;
    assert_int_equal(fstat(logfd, &st), 0);
    char *buf = calloc(1, (size_t)st.st_size + 1);
    assert_non_null(buf);
    assert_int_equal(pread(logfd, buf, (size_t)st.st_size, 0), st.st_size);
    assert_int_equal(ftruncate(logfd, 0), 0);
    return buf;
}

/* One connection's run gets a pool of its own (so that every heap call it
 * makes is one the test counts); returns the worker's, for run_end. */
static cel_pool *run_begin(void)
{
    cel_pool *saved = env.pool;
    env.pool = cel_pool_new(8u << 20);
    assert_non_null(env.pool);
    return saved;
}

/* After the run's session and queue are freed: no request still holds the
 * generation, the run's pool goes, SAVED is back. The run's log lines. */
static char *run_end(cel_pool *saved)
{
    assert_int_equal(env.gen->users, 0);
    cel_pool_free(env.pool);
    env.pool = saved;
    return take_log();
}

#endif
