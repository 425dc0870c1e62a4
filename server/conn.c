#include "conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "log.h"
#include "stats.h"

/* Reads per read event before yielding to other connections. */
#define READS_PER_EVENT 4
#define LINGER_MS 2000

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
#define PREFACE_LEN (sizeof(preface) - 1)

static const char h1_refusal[] = "HTTP/1.1 505 HTTP Version Not Supported\r\n"
                                 "Content-Type: text/plain; charset=utf-8\r\n"
                                 "Content-Length: 58\r\n"
                                 "Connection: close\r\n"
                                 "\r\n"
                                 "This server speaks HTTP/2 with prior knowledge (h2c) only\n";

/* Which timeout applies now; see rearm_timer. */
enum { T_NONE, T_HEADER, T_IDLE, T_BUSY, T_WRITE, T_LINGER };

static void on_read(evutil_socket_t fd, short what, void *arg);
static void on_write(evutil_socket_t fd, short what, void *arg);
static void on_timer(evutil_socket_t fd, short what, void *arg);
static void on_flush(evutil_socket_t fd, short what, void *arg);

static void want_flush(void *ctx)
{
    cel_conn *c = ctx;
    /* Activating an event that is already active does nothing: one pump. */
    event_active(&c->fev, EV_TIMEOUT, 0);
}

static ssize_t sock_writev(void *ctx, const struct iovec *iov, int iovcnt)
{
    cel_conn *c = ctx;
    return writev(c->fd, iov, iovcnt);
}

static struct timeval ms_tv(uint32_t ms)
{
    return (struct timeval){ms / 1000, (ms % 1000) * 1000};
}

static uint32_t timeout_ms(const cel_conn *c, int kind)
{
    switch (kind) {
    case T_HEADER:
        return c->limits.header_timeout_ms;
    case T_IDLE:
    case T_BUSY:
        return c->limits.idle_timeout_ms;
    case T_WRITE:
        return c->limits.write_timeout_ms;
    default:
        return LINGER_MS;
    }
}

static int current_kind(const cel_conn *c)
{
    if (c->lingering)
        return T_LINGER;
    if (cel_outq_pending(&c->out))
        return T_WRITE;
    if (!cel_h2_served(c->h2) && !cel_h2_streams(c->h2))
        return T_HEADER;
    if (cel_h2_in_headers(c->h2))
        return T_HEADER;
    return cel_h2_streams(c->h2) ? T_BUSY : T_IDLE;
}

/* The timer is only moved when the kind of wait changes; activity within one
 * kind just updates c->active and the timer callback re-arms for the rest. */
static void rearm_timer(cel_conn *c)
{
    int kind = current_kind(c);
    if (kind == c->tkind)
        return;
    c->tkind = (uint8_t)kind;
    struct timeval tv = ms_tv(timeout_ms(c, kind));
    if (kind == T_HEADER && !cel_h2_served(c->h2)) {
        /* Absolute from accept: dribbling bytes does not extend it. Later
         * header blocks count from when they began (the kind changed then). */
        struct timeval now, spent;
        event_base_gettimeofday_cached(c->host->base, &now);
        evutil_timersub(&now, &c->accepted, &spent);
        evutil_timersub(&tv, &spent, &tv);
        if (tv.tv_sec < 0)
            tv = (struct timeval){0, 0};
    }
    event_add(&c->tev, &tv);
}

static void set_reading(cel_conn *c, int on)
{
    if (c->reading == on)
        return;
    c->reading = (uint8_t)on;
    if (on)
        event_add(&c->rev, NULL);
    else
        event_del(&c->rev);
}

static void set_writing(cel_conn *c, int on)
{
    if (c->writing == on)
        return;
    c->writing = (uint8_t)on;
    if (on)
        event_add(&c->wev, NULL);
    else
        event_del(&c->wev);
}

void cel_conn_close(cel_conn *c)
{
    event_del(&c->rev);
    event_del(&c->wev);
    event_del(&c->tev);
    event_del(&c->fev);
    if (c->h2)
        cel_h2_free(c->h2);
    cel_outq_deinit(&c->out);
    close(c->fd);
    cel_pool *pool = c->host->env->pool;
    c->host->on_close(c->host, c);
    cel_pool_release(pool, c);
}

/* Half-closes and reads until the peer closes too (or LINGER_MS), so the
 * kernel does not answer unread input with a RST that destroys our reply. */
static void start_linger(cel_conn *c)
{
    c->lingering = 1;
    shutdown(c->fd, SHUT_WR);
    set_writing(c, 0);
    set_reading(c, 1);
    rearm_timer(c);
}

/* Moves frames to the socket until it is full or nothing is left, then decides
 * what to wait for. Returns -1 when the connection was closed. */
static int pump(cel_conn *c)
{
    for (;;) {
        if (c->h2 && !c->closing && cel_h2_send(c->h2)) {
            cel_conn_close(c);
            return -1;
        }
        int rc = cel_outq_flush(&c->out, sock_writev, c);
        if (rc == CEL_EIO) {
            cel_log_debug("conn %d: write failed: %s", c->fd, strerror(errno));
            cel_conn_close(c);
            return -1;
        }
        if (rc == CEL_EAGAIN) {
            set_writing(c, 1);
            /* Back-pressure: stop reading until the queue drains. */
            set_reading(c, cel_outq_pending(&c->out) < c->limits.max_output_buffer);
            rearm_timer(c);
            return 0;
        }
        if (c->closing || !c->h2 || !cel_h2_want_write(c->h2))
            break;
    }
    set_writing(c, 0);
    if (c->closing || !c->h2 || (!cel_h2_want_read(c->h2) && !cel_h2_want_write(c->h2))) {
        start_linger(c);
        return 0;
    }
    set_reading(c, 1);
    rearm_timer(c);
    return 0;
}

/* An HTTP/1 request line: an upper-case method, a space, and (when the line
 * is all here) " HTTP/1." in it. Anything else is left to nghttp2. */
static int looks_like_h1(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n && p[i] >= 'A' && p[i] <= 'Z')
        i++;
    if (i == 0 || i >= n || p[i] != ' ')
        return 0;
    const uint8_t *eol = memchr(p, '\n', n);
    if (!eol)
        return 1; /* a long request line: the method is evidence enough */
    size_t len = (size_t)(eol - p);
    return memmem(p, len, " HTTP/1.", 8) != NULL;
}

/* Before the preface is complete: is this HTTP/2 at all? */
static int check_preface(cel_conn *c, const uint8_t *p, size_t n)
{
    size_t want = PREFACE_LEN - c->preface_seen;
    size_t k = n < want ? n : want;
    if (memcmp(p, preface + c->preface_seen, k) == 0) {
        c->preface_seen += (unsigned)k;
        return 0;
    }
    if (c->preface_seen == 0 && looks_like_h1(p, n)) {
        cel_log_debug("conn %d: HTTP/1 request refused", c->fd);
        cel_outq_copy(&c->out, h1_refusal, sizeof(h1_refusal) - 1);
        c->closing = 1;
        return -1;
    }
    /* Not HTTP/1 either: nghttp2 rejects the preface with a GOAWAY. */
    c->preface_seen = PREFACE_LEN;
    return 0;
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    cel_conn *c = arg;
    cel_env *env = c->host->env;
    (void)what;
    for (int i = 0; i < READS_PER_EVENT; i++) {
        ssize_t n = read(fd, env->rbuf, CEL_READ_BUF);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            cel_log_debug("conn %d: read failed: %s", c->fd, strerror(errno));
            cel_conn_close(c);
            return;
        }
        if (n == 0) {
            cel_conn_close(c);
            return;
        }
        event_base_gettimeofday_cached(c->host->base, &c->active);
        cel_env_tick(env, c->active.tv_sec);
        if (env->stats)
            cel_count(&env->stats->bytes_in, (uint64_t)n);
        if (c->lingering || c->closing)
            continue;
        if (c->preface_seen < PREFACE_LEN && check_preface(c, env->rbuf, (size_t)n))
            break;
        if (cel_h2_recv(c->h2, env->rbuf, (size_t)n)) {
            /* Let nghttp2's GOAWAY out, then close. */
            cel_h2_send(c->h2);
            c->closing = 1;
            break;
        }
        if ((size_t)n < CEL_READ_BUF || !c->reading)
            break;
    }
    if (!c->lingering)
        pump(c);
}

void cel_conn_start(cel_conn *c)
{
    /* Our SETTINGS wait for the first bytes from the client: an HTTP/1 client
     * must get a plain HTTP/1 refusal, not a binary frame. */
    set_reading(c, 1);
    rearm_timer(c);
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
    cel_conn *c = arg;
    (void)fd, (void)what;
    event_base_gettimeofday_cached(c->host->base, &c->active);
    c->writing = 0; /* one-shot event */
    pump(c);
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    cel_conn *c = arg;
    (void)fd, (void)what;
    if (!c->lingering && !c->closing)
        pump(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    cel_conn *c = arg;
    (void)fd, (void)what;
    int kind = c->tkind;
    struct timeval now, left = {0, 0};
    event_base_gettimeofday_cached(c->host->base, &now);
    if (kind == T_IDLE || kind == T_BUSY || kind == T_WRITE) {
        /* Activity since the timer was set pushes the deadline. */
        struct timeval deadline, span = ms_tv(timeout_ms(c, kind));
        evutil_timeradd(&c->active, &span, &deadline);
        if (evutil_timercmp(&deadline, &now, >)) {
            evutil_timersub(&deadline, &now, &left);
            event_add(&c->tev, &left);
            return;
        }
    }
    switch (kind) {
    case T_IDLE:
        cel_log_debug("conn %d: idle timeout", c->fd);
        cel_conn_shutdown(c);
        return;
    case T_HEADER:
        cel_log_debug("conn %d: no request within the header timeout", c->fd);
        break;
    case T_BUSY:
        cel_log_debug("conn %d: client silent with streams open", c->fd);
        break;
    case T_WRITE:
        cel_log_debug("conn %d: write stalled", c->fd);
        break;
    default:
        break;
    }
    cel_conn_close(c);
}

void cel_conn_shutdown(cel_conn *c)
{
    if (c->closing || c->lingering)
        return;
    if (c->h2)
        cel_h2_goaway(c->h2);
    c->tkind = T_NONE; /* rearm for the new state */
    pump(c);
}

static void peer_text(int fd, char *buf, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    snprintf(buf, len, "-");
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) < 0)
        return;
    if (ss.ss_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, buf, (socklen_t)len);
    else if (ss.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, buf, (socklen_t)len);
}

cel_conn *cel_conn_new(cel_conn_host *host, int fd)
{
    cel_env *env = host->env;
    cel_conn *c = cel_pool_alloc(env->pool, sizeof(*c));
    if (!c) {
        close(fd);
        return NULL;
    }
    memset(c, 0, sizeof(*c));
    c->host = host;
    c->fd = fd;
    c->limits = env->gen->cfg->limits;
    cel_outq_init(&c->out, env->pool);
    event_base_gettimeofday_cached(host->base, &c->accepted);
    c->active = c->accepted;
    event_assign(&c->rev, host->base, fd, EV_READ | EV_PERSIST, on_read, c);
    event_assign(&c->wev, host->base, fd, EV_WRITE, on_write, c);
    event_assign(&c->tev, host->base, -1, 0, on_timer, c);
    event_assign(&c->fev, host->base, -1, 0, on_flush, c);
    peer_text(fd, c->peer, sizeof(c->peer));
    c->h2 = cel_h2_new(env, &c->out, want_flush, c, c->peer);
    if (!c->h2) {
        cel_outq_deinit(&c->out);
        close(fd);
        cel_pool_release(env->pool, c);
        return NULL;
    }
    return c;
}
