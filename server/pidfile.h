/*
 * The pid file (`pid_file`): for tools that signal the daemon without systemd,
 * such as logrotate's postrotate. Main thread only.
 */
#ifndef CEL_PIDFILE_H
#define CEL_PIDFILE_H

#include <stddef.h>

/* Writes our pid and a newline to PATH atomically: into a temporary file in
 * the same directory, renamed over PATH, so a reader sees the old file or the
 * whole new one, never a partial pid. Mode 0644. 0, or -1 with ERR. */
int cel_pidfile_write(const char *path, char *err, size_t errlen);

/* Removes PATH if it still holds our pid (a file another process wrote since
 * is left alone). */
void cel_pidfile_remove(const char *path);

#endif
