#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

int cel_log_level = CEL_LOG_INFO;

static const char *const names[] = {"debug", "info", "warn", "error"};

int cel_log_level_parse(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(name, names[i]) == 0)
            return i;
    return -1;
}

/* stderr is the journal when $JOURNAL_STREAM names its device and inode
 * (systemd.exec(5)): then lines carry a "<N>" priority instead of a time. */
static int to_journal(void)
{
    static int known = -1;
    if (known >= 0)
        return known;
    known = 0;
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    if (js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(2, &st) == 0 &&
        (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino)
        known = 1;
    return known;
}

void cel_log(int level, const char *fmt, ...)
{
    if (level < cel_log_level)
        return;
    char line[2048];
    if (to_journal()) {
        static const int prio[] = {7, 6, 4, 3}; /* debug, info, warning, err */
        int n = snprintf(line, sizeof(line), "<%d>", prio[level]);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
        va_end(ap);
        fprintf(stderr, "%s\n", line);
        return;
    }
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = (int)strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%SZ", &tm);
    n += snprintf(line + n, sizeof(line) - (size_t)n, " [%s] ", names[level]);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", line);
}
