/*
 * The figures every Prometheus exporter gives about its own process (the
 * process_* metrics), read from /proc when they are asked for: a scrape pays
 * for them, requests never do.
 */
#ifndef CEL_PROCSTAT_H
#define CEL_PROCSTAT_H

#include <stdint.h>

typedef struct cel_procstat {
    double cpu_seconds;      /* user + system time of all threads */
    double start_time;       /* seconds since the Unix epoch */
    uint64_t resident_bytes; /* VmRSS */
    uint64_t virtual_bytes;  /* VmSize */
    uint64_t open_fds;       /* descriptors open now */
    uint64_t max_fds;        /* RLIMIT_NOFILE, soft */
} cel_procstat;

/* Fills P from /proc/self and /proc/stat. 0, or CEL_EIO when /proc cannot be
 * read (P is then all zero). Any thread; a few system calls. */
int cel_procstat_read(cel_procstat *p);

#endif
