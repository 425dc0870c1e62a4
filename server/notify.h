/*
 * The systemd notify protocol (sd_notify(3)): readiness, reload and stop
 * states, a STATUS= line a person can read in `systemctl status`, and the
 * watchdog keep-alive. Without $NOTIFY_SOCKET every call does nothing.
 */
#ifndef CEL_NOTIFY_H
#define CEL_NOTIFY_H

#include <stdint.h>

/* Sends one notification: lines "KEY=value" separated by '\n'. */
void cel_notify(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* RELOADING=1 with the MONOTONIC_USEC= systemd wants next to it. */
void cel_notify_reloading(void);

/* The watchdog interval systemd asked for (WATCHDOG_USEC), or 0. */
uint64_t cel_notify_watchdog_usec(void);

/* Listening sockets passed by systemd (LISTEN_FDS): the first descriptor is
 * returned in *FIRST; returns how many (0 when none). */
int cel_notify_listen_fds(int *first);

#endif
