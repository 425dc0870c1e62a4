#include "notify.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "log.h"

#if defined(HAVE_LIBSYSTEMD)
#include <systemd/sd-daemon.h>
#endif

void cel_notify(const char *fmt, ...)
{
#if defined(HAVE_LIBSYSTEMD)
    if (!getenv("NOTIFY_SOCKET"))
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    int rc = sd_notify(0, msg);
    if (rc < 0)
        cel_log(CEL_LOG_WARN, "sd_notify failed: %d", rc);
#else
    (void)fmt;
#endif
}

void cel_notify_reloading(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    cel_notify("RELOADING=1\nMONOTONIC_USEC=%llu",
               (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000);
}

uint64_t cel_notify_watchdog_usec(void)
{
#if defined(HAVE_LIBSYSTEMD)
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) > 0)
        return usec;
#endif
    return 0;
}

int cel_notify_listen_fds(int *first)
{
#if defined(HAVE_LIBSYSTEMD)
    int n = sd_listen_fds(1);
    if (n > 0) {
        *first = SD_LISTEN_FDS_START;
        return n;
    }
#endif
    *first = -1;
    return 0;
}
