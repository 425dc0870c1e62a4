#include "pidfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int cel_pidfile_write(const char *path, char *err, size_t errlen)
{
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path) >= sizeof(tmp)) {
        snprintf(err, errlen, "pid file \"%s\": name too long", path);
        return -1;
    }
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "cannot write pid file \"%s\": %s", path, strerror(errno));
        return -1;
    }
    char line[32];
    int n = snprintf(line, sizeof(line), "%ld\n", (long)getpid());
    /* mkostemp makes it 0600; readers (logrotate as another user) need 0644. */
    if (fchmod(fd, 0644) < 0 || write(fd, line, (size_t)n) != n || close(fd) < 0 ||
        rename(tmp, path) < 0) {
        snprintf(err, errlen, "cannot write pid file \"%s\": %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

void cel_pidfile_remove(const char *path)
{
    char buf[32];
    FILE *f = fopen(path, "re");
    if (!f)
        return;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    if (strtol(buf, NULL, 10) == (long)getpid())
        unlink(path);
}
