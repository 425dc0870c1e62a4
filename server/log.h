/*
 * The error log: one line per event on stderr, with a timestamp and a level.
 * Not for the per-request path. Thread-safe (one fprintf per line).
 */
#ifndef CEL_LOG_H
#define CEL_LOG_H

enum { CEL_LOG_DEBUG = 0, CEL_LOG_INFO, CEL_LOG_WARN, CEL_LOG_ERROR };

extern int cel_log_level;

/* The level for NAME ("debug", "info", "warn", "error"), or -1. */
int cel_log_level_parse(const char *name);

void cel_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define cel_log_debug(...)                                                                         \
    do {                                                                                           \
        if (cel_log_level <= CEL_LOG_DEBUG)                                                        \
            cel_log(CEL_LOG_DEBUG, __VA_ARGS__);                                                   \
    } while (0)

#endif
