#include "listener.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static const char *unix_path(const cel_listen *l)
{
    return ((const struct sockaddr_un *)&l->addr)->sun_path;
}

/* A unix socket: a socket file left by a daemon that is gone is replaced (the
 * probe found nobody accepting on it), then mode and owner are set. */
static int open_unix(const cel_listen *l, char *err, size_t errlen)
{
    const char *path = unix_path(l);
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create a socket for %s: %s", l->text, strerror(errno));
        return -1;
    }
    const char *what = "listen on";
    if (bind(fd, (const struct sockaddr *)&l->addr, l->addrlen) < 0)
        goto fail;
    what = "set the mode of";
    if (l->mode >= 0 && chmod(path, (mode_t)l->mode) < 0)
        goto fail_unlink;
    what = "set the owner of";
    if ((l->uid >= 0 || l->gid >= 0) && chown(path, (uid_t)l->uid, (gid_t)l->gid) < 0)
        goto fail_unlink;
    what = "listen on";
    if (listen(fd, CEL_LISTEN_BACKLOG) < 0)
        goto fail_unlink;
    return fd;
fail_unlink:
    unlink(path);
fail:
    snprintf(err, errlen, "cannot %s %s: %s", what, l->text, strerror(errno));
    close(fd);
    return -1;
}

void cel_listener_unlink(const cel_listen *l)
{
    if (l->addr.ss_family == AF_UNIX)
        unlink(unix_path(l));
}

int cel_listener_open(const cel_listen *l, char *err, size_t errlen)
{
    if (l->addr.ss_family == AF_UNIX)
        return open_unix(l, err, errlen);
    int fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create a socket for %s: %s", l->text, strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) {
        snprintf(err, errlen, "cannot set SO_REUSEPORT on %s: %s", l->text, strerror(errno));
        close(fd);
        return -1;
    }
    if (l->addr.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&l->addr, l->addrlen) < 0 ||
        listen(fd, CEL_LISTEN_BACKLOG) < 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", l->text, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* A unix path is free when nothing is there, or a socket nobody accepts on. */
static int probe_unix(const cel_listen *l, char *err, size_t errlen)
{
    struct stat st;
    if (lstat(unix_path(l), &st) < 0)
        return 0;
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(err, errlen, "cannot listen on %s: the file exists and is not a socket", l->text);
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create a socket for %s: %s", l->text, strerror(errno));
        return -1;
    }
    int rc = connect(fd, (const struct sockaddr *)&l->addr, l->addrlen);
    int e = errno;
    close(fd);
    if (rc < 0 && e == ECONNREFUSED)
        return 0;
    if (rc == 0)
        snprintf(err, errlen,
                 "cannot listen on %s: address already in use (another process, perhaps "
                 "another celerisd, accepts on it)",
                 l->text);
    else
        snprintf(err, errlen, "cannot listen on %s: %s", l->text, strerror(e));
    return -1;
}

int cel_listener_probe(const cel_listen *l, char *err, size_t errlen)
{
    if (l->addr.ss_family == AF_UNIX)
        return probe_unix(l, err, errlen);
    int fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create a socket for %s: %s", l->text, strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (l->addr.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    int rc = bind(fd, (const struct sockaddr *)&l->addr, l->addrlen);
    int e = errno;
    close(fd);
    if (rc == 0)
        return 0;
    if (e == EADDRINUSE)
        snprintf(err, errlen,
                 "cannot listen on %s: address already in use (another process, "
                 "perhaps another celerisd, listens on it)",
                 l->text);
    else
        snprintf(err, errlen, "cannot listen on %s: %s", l->text, strerror(e));
    return -1;
}

int cel_listen_overlap(const cel_listen *a, const cel_listen *b)
{
    if (a->addr.ss_family != b->addr.ss_family)
        return 0;
    if (a->addr.ss_family == AF_UNIX)
        return strcmp(unix_path(a), unix_path(b)) == 0;
    if (a->addr.ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)&a->addr, *y = (const void *)&b->addr;
        return x->sin_port == y->sin_port &&
               (x->sin_addr.s_addr == y->sin_addr.s_addr || x->sin_addr.s_addr == INADDR_ANY ||
                y->sin_addr.s_addr == INADDR_ANY);
    }
    if (a->addr.ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)&a->addr, *y = (const void *)&b->addr;
        return x->sin6_port == y->sin6_port &&
               (IN6_ARE_ADDR_EQUAL(&x->sin6_addr, &y->sin6_addr) ||
                IN6_IS_ADDR_UNSPECIFIED(&x->sin6_addr) || IN6_IS_ADDR_UNSPECIFIED(&y->sin6_addr));
    }
    return 0;
}
