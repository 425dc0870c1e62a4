/* Shared file contents for static routes; see filebuf.h. */
#include "filebuf.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

struct cel_filebuf {
    cel_filebuf *next;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    size_t refs; /* under lock */
    size_t len;
    char data[];
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static cel_filebuf *all;

static int same(const cel_filebuf *b, const struct stat *st)
{
    return b->dev == st->st_dev && b->ino == st->st_ino && b->size == st->st_size &&
           b->mtime.tv_sec == st->st_mtim.tv_sec && b->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

static int read_all(int fd, char *p, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t k = read(fd, p + got, len - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -EIO;
        got += (size_t)k;
    }
    return 0;
}

int cel_filebuf_get(const char *path, cel_filebuf **out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        return -EINVAL;
    }
    pthread_mutex_lock(&lock);
    for (cel_filebuf *b = all; b; b = b->next)
        if (same(b, &st)) {
            b->refs++;
            pthread_mutex_unlock(&lock);
            close(fd);
            *out = b;
            return 0;
        }
    pthread_mutex_unlock(&lock);
    cel_filebuf *b = malloc(sizeof(*b) + (size_t)st.st_size + 1);
    if (!b) {
        close(fd);
        return -ENOMEM;
    }
    int rc = read_all(fd, b->data, (size_t)st.st_size);
    close(fd);
    if (rc) {
        free(b);
        return rc;
    }
    b->dev = st.st_dev;
    b->ino = st.st_ino;
    b->size = st.st_size;
    b->mtime = st.st_mtim;
    b->len = (size_t)st.st_size;
    b->refs = 1;
    pthread_mutex_lock(&lock);
    b->next = all;
    all = b;
    pthread_mutex_unlock(&lock);
    *out = b;
    return 0;
}

const char *cel_filebuf_data(const cel_filebuf *b)
{
    return b->data;
}

size_t cel_filebuf_len(const cel_filebuf *b)
{
    return b->len;
}

void cel_filebuf_unref(cel_filebuf *b)
{
    if (!b)
        return;
    pthread_mutex_lock(&lock);
    int last = --b->refs == 0;
    if (last)
        for (cel_filebuf **p = &all; *p; p = &(*p)->next)
            if (*p == b) {
                *p = b->next;
                break;
            }
    pthread_mutex_unlock(&lock);
    if (last)
        free(b);
}
