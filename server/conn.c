#include "conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <linux/tcp.h> /* tcp_info with tcpi_bytes_acked (glibc's lacks it) */
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "genref.h"
#include "h1.h"
#include "h2.h"
#include "http.h"
#include "log.h"
#include "proxy_proto.h"
#include "stats.h"
#include "tls.h"
#include "version.h"

/* Reads per read event before yielding to other connections. */
#define READS_PER_EVENT 4
#define LINGER_MS 2000

/* Which timeout applies now; see rearm_timer. */
enum { T_NONE, T_HEADER, T_IDLE, T_BUSY, T_WRITE, T_LINGER };

static void on_read(evutil_socket_t fd, short what, void *arg);
static void on_write(evutil_socket_t fd, short what, void *arg);
static void on_timer(evutil_socket_t fd, short what, void *arg);
static void on_flush(evutil_socket_t fd, short what, void *arg);
static int switch_to_h2(cel_conn *c);

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

/* ---- TLS (OpenSSL) when the kernel does not do it for us ---- */

#define TLS_RECORD 16384

/* Retries the record SSL_write did not take. 0 when it is out, -1 with errno
 * EAGAIN when the socket is full, EIO on an error. */
static int trec_flush(cel_conn *c)
{
    while (c->trec_len) {
        ERR_clear_error();
        int n = SSL_write(c->ssl, c->trec, (int)c->trec_len);
        if (n <= 0) {
            int e = SSL_get_error(c->ssl, n);
            errno = e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ ? EAGAIN : EIO;
            return -1;
        }
        memmove(c->trec, c->trec + n, c->trec_len - (size_t)n);
        c->trec_len -= (size_t)n;
    }
    return 0;
}

/* The output queue's sink on a TLS connection: a record's worth of the
 * iovecs is copied into trec and handed to SSL_write. Bytes in trec count as
 * written for the queue; trec_flush finishes them. */
static ssize_t tls_writev(void *ctx, const struct iovec *iov, int iovcnt)
{
    cel_conn *c = ctx;
    if (c->trec_len && trec_flush(c))
        return -1;
    if (!c->trec && !(c->trec = cel_pool_alloc(c->host->env->pool, TLS_RECORD))) {
        errno = ENOMEM;
        return -1;
    }
    size_t k = 0;
    for (int i = 0; i < iovcnt && k < TLS_RECORD; i++) {
        size_t n = iov[i].iov_len < TLS_RECORD - k ? iov[i].iov_len : TLS_RECORD - k;
        memcpy(c->trec + k, iov[i].iov_base, n);
        k += n;
    }
    c->trec_len = k;
    if (trec_flush(c) && errno != EAGAIN)
        return -1;
    return (ssize_t)k;
}

static int conn_flush(cel_conn *c)
{
    if (!c->ssl || c->ktls)
        return cel_outq_flush(&c->out, sock_writev, c);
    if (c->trec_len && trec_flush(c))
        return errno == EAGAIN ? CEL_EAGAIN : CEL_EIO;
    int rc = cel_outq_flush(&c->out, tls_writev, c);
    if (rc == 0 && c->trec_len)
        return CEL_EAGAIN;
    if (rc == 0 && c->trec) {
        /* All out: an idle connection keeps no record, as the queue keeps
         * no chunk; the pool's free list has it back for the next one. */
        cel_pool_release(c->host->env->pool, c->trec);
        c->trec = NULL;
    }
    return rc;
}

/* read(2), or SSL_read: -1 with errno EAGAIN when nothing is there yet. */
static ssize_t conn_read(cel_conn *c, void *buf, size_t len)
{
    if (!c->ssl)
        return read(c->fd, buf, len);
    ERR_clear_error();
    int n = SSL_read(c->ssl, buf, (int)(len > INT32_MAX ? INT32_MAX : len));
    if (n > 0)
        return n;
    int e = SSL_get_error(c->ssl, n);
    if (e == SSL_ERROR_ZERO_RETURN)
        return 0;
    errno = e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? EAGAIN : EIO;
    return -1;
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
    if (cel_outq_pending(&c->out) || c->trec_len)
        return T_WRITE;
    if (!c->proto)
        return T_HEADER;
    if (!c->proto->served(c->ps) && !c->proto->streams(c->ps))
        return T_HEADER;
    if (c->proto->in_headers(c->ps))
        return T_HEADER;
    size_t n = c->proto->streams(c->ps);
    if (n && c->proto->held(c->ps) == n)
        return T_NONE; /* the server holds every stream: not the client's idle time */
    return n ? T_BUSY : T_IDLE;
}

/* Bytes the peer has acknowledged, or 0 when the kernel does not say. */
static uint64_t peer_acked(const cel_conn *c)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    if (getsockopt(c->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0 ||
        len < offsetof(struct tcp_info, tcpi_bytes_acked) + sizeof(ti.tcpi_bytes_acked))
        return 0;
    return ti.tcpi_bytes_acked;
}

/* Output waited write_timeout without the socket turning writable. Linux says
 * writable only once about half of a send buffer (up to megabytes) has
 * drained, which a slow reader takes far longer than write_timeout to do, so
 * what the peer acknowledged is the progress. A slow reader's kernel opens its
 * window a few KiB at a time, seconds apart: the rate is averaged over the
 * last CEL_ACK_WINDOWS write_timeouts (fewer while the wait is younger), and must
 * come to min_send_rate (at least a byte). */
static int peer_kept_up(cel_conn *c)
{
    uint64_t now = peer_acked(c);
    if (c->nacked < CEL_ACK_WINDOWS)
        c->nacked++;
    uint64_t then = c->acked[CEL_ACK_WINDOWS - c->nacked];
    uint64_t need =
        (uint64_t)c->limits.min_send_rate * c->nacked * c->limits.write_timeout_ms / 1000;
    int ok = now > then && now - then >= (need ? need : 1);
    memmove(c->acked, c->acked + 1, (CEL_ACK_WINDOWS - 1) * sizeof(c->acked[0]));
    c->acked[CEL_ACK_WINDOWS - 1] = now;
    return ok;
}

/* The timer is only moved when the kind of wait changes; activity within one
 * kind just updates c->active and the timer callback re-arms for the rest. */
static void rearm_timer(cel_conn *c)
{
    int kind = current_kind(c);
    if (kind == c->tkind)
        return;
    if (c->tkind == T_NONE)
        event_base_gettimeofday_cached(c->host->base, &c->active); /* the wait starts now */
    c->tkind = (uint8_t)kind;
    if (kind == T_NONE) {
        event_del(&c->tev);
        return;
    }
    if (kind == T_WRITE) {
        uint64_t a = peer_acked(c);
        for (int i = 0; i < CEL_ACK_WINDOWS; i++)
            c->acked[i] = a;
        c->nacked = 0;
    }
    struct timeval tv = ms_tv(timeout_ms(c, kind));
    if (kind == T_HEADER && (!c->proto || !c->proto->served(c->ps))) {
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

/* The write event persists: it stays in epoll for as long as output waits,
 * and only a change between waiting and not costs an epoll_ctl. A one-shot
 * event cost two a wake-up (libevent's removal as it fired, our re-add). */
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
    if (c->ssl) {
        SSL_free(c->ssl);
        cel_pool_release(c->host->env->pool, c->trec);
    }
    if (c->proto)
        c->proto->free(c->ps);
    if (c->next_ps)
        cel_h2_free(c->next_ps);
    cel_outq_deinit(&c->out);
    cel_pool_release(c->host->env->pool, c->proxy_buf);
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
    if (c->ssl && !c->handshaking) {
        ERR_clear_error();
        SSL_shutdown(c->ssl); /* close_notify, best effort */
    }
    shutdown(c->fd, SHUT_WR);
    set_writing(c, 0);
    set_reading(c, 1);
    rearm_timer(c);
}

/* Moves frames to the socket until it is full or nothing is left, then decides
 * what to wait for. Returns -1 when the connection was closed. */
/* Requests or responses moved: the idle and busy timeouts count from now. */
static void note_progress(cel_conn *c)
{
    if (!c->proto)
        return;
    uint64_t p = c->proto->progress(c->ps);
    if (p != c->progress) {
        c->progress = p;
        event_base_gettimeofday_cached(c->host->base, &c->active);
    }
}

static int pump(cel_conn *c)
{
    note_progress(c);
    for (;;) {
        if (c->proto && !c->closing && c->proto->send(c->ps)) {
            cel_conn_close(c);
            return -1;
        }
        /* HTTP/1.1 takes a pipelined request once the answer before it is
         * finished, in send: an h2c upgrade can happen here, not only in recv. */
        if (c->next_ps && !c->closing) {
            /* the new session's SETTINGS and answer on stream 1: next round */
            if (switch_to_h2(c) == 0)
                continue;
            c->proto->send(c->ps); /* its GOAWAY, then the close */
            c->closing = 1;
        }
        int rc = conn_flush(c);
        if (rc == CEL_EIO) {
            cel_log_debug("conn %d: write failed: %s", c->fd, strerror(errno));
            cel_conn_close(c);
            return -1;
        }
        if (rc == CEL_EAGAIN) {
            set_writing(c, 1);
            /* Back-pressure: stop reading until the queue drains. */
            set_reading(c, cel_outq_pending(&c->out) < c->limits.max_output_buffer &&
                               (!c->proto || !c->proto->can_read || c->proto->can_read(c->ps)));
            rearm_timer(c);
            return 0;
        }
        if (c->closing || !c->proto || !c->proto->want_write(c->ps))
            break;
    }
    set_writing(c, 0);
    if (c->closing || (c->proto && !c->proto->want_read(c->ps) && !c->proto->want_write(c->ps))) {
        start_linger(c);
        return 0;
    }
    set_reading(c, !c->proto || !c->proto->can_read || c->proto->can_read(c->ps));
    rearm_timer(c);
    return 0;
}

/* Does P[0..N) begin an HTTP/1 request line: an upper-case method, a space and
 * a request target in origin form ("/..."), asterisk form ("*"), absolute form
 * ("http://..."), or for CONNECT authority form? 1 yes, 0 no, -1 too few bytes
 * to tell. Upper-case words that are none of these ("INVALID CONNECTION
 * PREFACE") are a broken HTTP/2 preface, answered with a GOAWAY. */
static int looks_like_h1(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n && p[i] >= 'A' && p[i] <= 'Z')
        i++;
    if (i == 0 || (i < n && p[i] != ' '))
        return 0;
    if (i + 1 >= n)
        return -1;
    uint8_t t = p[i + 1];
    if (t == '/' || t == '*' || (i == 7 && memcmp(p, "CONNECT", 7) == 0))
        return 1;
    static const char scheme[] = "http";
    for (size_t k = 0; k < 4; k++) {
        if (i + 1 + k >= n)
            return -1;
        if ((p[i + 1 + k] | 0x20) != scheme[k])
            return 0;
    }
    return 1;
}

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/* Which protocol do the first bytes speak? The HTTP/2 preface, an HTTP/1 request
 * line, or (undecided) too few bytes to tell. Anything else goes to HTTP/2,
 * whose answer to a bad preface is a GOAWAY. */
static const cel_proto *sniff(const uint8_t *p, size_t n, int *undecided)
{
    size_t k = n < sizeof(preface) - 1 ? n : sizeof(preface) - 1;
    *undecided = 0;
    if (n >= 4 && memcmp(p, "PRI ", 4) == 0)
        return &cel_h2_proto; /* a preface, good or bad: no HTTP/1 method is PRI */
    if (memcmp(p, preface, k) == 0) {
        *undecided = 1;
        return NULL;
    }
    int h1 = looks_like_h1(p, n);
    if (h1 > 0)
        return &cel_h1_proto;
    if (h1 < 0 && n < sizeof(((cel_conn *)0)->sniff)) {
        *undecided = 1;
        return NULL;
    }
    return &cel_h2_proto;
}

/* HTTP/1.1 asked to become HTTP/2 (RFC 7540 3.2): the new session is ready. */
static void on_upgrade(void *ctx, void *h2)
{
    cel_conn *c = ctx;
    c->next_ps = h2;
}

/* Moves the connection's count from one protocol to another. */
static void count_as(cel_conn *c, uint8_t id)
{
    cel_wstats *ws = c->host->env->stats;
    if (ws) {
        cel_uncount(&ws->connections_open[c->proto_id], 1);
        cel_count(&ws->connections_open[id], 1);
    }
    c->proto_id = id;
}

static int start_proto(cel_conn *c, const cel_proto *p)
{
    cel_env *env = c->host->env;
    c->proto = p;
    count_as(c, p == &cel_h2_proto ? CEL_PROTO_H2 : CEL_PROTO_H1);
    if (p == &cel_h2_proto)
        c->ps = cel_h2_new(env, &c->out, want_flush, c, &c->view);
    else
        c->ps = cel_h1_new(env, &c->out, want_flush, c, &c->view, on_upgrade, c);
    if (!c->ps) {
        c->proto = NULL;
        return -1;
    }
    return 0;
}

/* An HTTP/1.1 upgrade made an HTTP/2 session (c->next_ps): switch to it, and
 * feed it all that followed the upgrading request, straight from the HTTP/1.1
 * side's buffer, which is freed after. 0, or its recv's CEL_EIO. */
static int switch_to_h2(cel_conn *c)
{
    size_t rest = 0;
    void *h1 = c->ps;
    const uint8_t *left = cel_h1_leftover(h1, &rest);
    c->proto = &cel_h2_proto;
    count_as(c, CEL_PROTO_H2);
    c->ps = c->next_ps;
    c->next_ps = NULL;
    int rc = rest ? c->proto->recv(c->ps, left, rest) : 0;
    cel_h1_proto.free(h1);
    return rc;
}

/* Feeds bytes to the protocol; an HTTP/1.1 upgrade switches to HTTP/2 in the
 * middle, and what followed the upgrading request goes to the new session. */
static int feed(cel_conn *c, const uint8_t *p, size_t n)
{
    int rc = c->proto->recv(c->ps, p, n);
    if (c->next_ps)
        rc = switch_to_h2(c);
    return rc;
}

/* The TLS handshake, on the worker's loop. 1 when done, 0 to wait, -1 on failure. */
static int handshake(cel_conn *c)
{
    ERR_clear_error();
    int rc = SSL_do_handshake(c->ssl);
    if (rc == 1) {
        c->handshaking = 0;
        c->ktls = (uint8_t)cel_tls_ktls_send(c->ssl);
        if (c->ktls)
            cel_outq_set_sendfile(&c->out, c->fd); /* the kernel encrypts what sendfile sends */
        /* ALPN h2 decides; otherwise the first bytes do (HTTP/1.1, or HTTP/2
         * with prior knowledge). */
        if (cel_tls_alpn(c->ssl) == 2 && start_proto(c, &cel_h2_proto))
            return -1;
        return 1;
    }
    int e = SSL_get_error(c->ssl, rc);
    if (e == SSL_ERROR_WANT_READ) {
        set_writing(c, 0); /* persistent: it would fire while the socket is writable */
        return 0;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        set_writing(c, 1);
        return 0;
    }
    cel_log_debug("conn %d: TLS handshake failed", c->fd);
    return -1;
}

/* A TLS record starts with its content type (22 for the ClientHello), never
 * with the capital letter of an HTTP method: such a first byte is plain HTTP
 * sent to a TLS port. */
static int plain_on_tls(cel_conn *c)
{
    uint8_t b;
    return recv(c->fd, &b, 1, MSG_PEEK) == 1 && b >= 'A' && b <= 'Z';
}

#define PLAIN_BODY "This port speaks HTTPS (TLS): use https:// to reach it.\n"

/* Answers plain HTTP on a TLS port with a 400 that says why, in plain text
 * (as nginx does) rather than a TLS alert the client cannot read, then closes. */
static void reply_plain(cel_conn *c)
{
    static const char head[] = "HTTP/1.1 400 Bad Request\r\n"
                               "server: " CEL_SERVER_NAME "\r\n"
                               "date: ";
    static const char tail[] = "\r\ncontent-type: text/plain\r\n"
                               "content-length: %zu\r\n"
                               "connection: close\r\n\r\n" PLAIN_BODY;
    char rest[sizeof(tail) + 16];
    int n = snprintf(rest, sizeof(rest), tail, sizeof(PLAIN_BODY) - 1);
    cel_env *env = c->host->env;
    struct timeval now;
    event_base_gettimeofday_cached(c->host->base, &now);
    cel_env_tick(env, now.tv_sec);
    struct iovec iov[3] = {
        {(void *)head, sizeof(head) - 1}, {env->date, env->date_len}, {rest, (size_t)n}};
    /* An empty socket buffer takes these few hundred bytes whole; if not,
     * the client gets what fits, then the close. */
    if (writev(c->fd, iov, 3) < 0)
        cel_log_debug("conn %d: plain HTTP answer: %s", c->fd, strerror(errno));
    SSL_free(c->ssl);
    c->ssl = c->view.ssl = NULL;
    c->handshaking = 0;
    c->closing = 1;
    start_linger(c);
}

/* Reads the PROXY header, and not one byte past it: what follows may be a
 * TLS ClientHello, left in the socket for OpenSSL. Peeks, then takes the
 * header's bytes (all of them when it is still incomplete: every byte of an
 * incomplete header belongs to it). 1 when done, 0 to wait, -1 to close. */
static int proxy_header(cel_conn *c)
{
    if (!c->proxy_buf && !(c->proxy_buf = cel_pool_alloc(c->host->env->pool, CEL_PROXY_MAX)))
        return -1;
    ssize_t n = recv(c->fd, c->proxy_buf + c->nproxy, CEL_PROXY_MAX - c->nproxy, MSG_PEEK);
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
    if (n == 0)
        return -1;
    cel_proxy_info info;
    int rc = cel_proxy_parse(c->proxy_buf, c->nproxy + (size_t)n, &info);
    if (rc < 0) {
        cel_log_debug("conn %d: no valid PROXY header from a trusted peer", c->fd);
        return -1;
    }
    size_t take = rc > 0 ? (size_t)rc - c->nproxy : (size_t)n;
    if (recv(c->fd, c->proxy_buf + c->nproxy, take, 0) != (ssize_t)take)
        return -1;
    c->nproxy = (uint16_t)(c->nproxy + take);
    if (rc == 0)
        return 0;
    if (info.has_addr) {
        cel_proxy_addr_text(&info, c->peer, sizeof(c->peer));
        c->view.peer_family = (uint8_t)info.family;
        memcpy(c->view.peer_addr, info.addr, sizeof(c->view.peer_addr));
        c->view.proxied = 1;
        c->view.proxy_port = info.port;
    }
    cel_pool_release(c->host->env->pool, c->proxy_buf);
    c->proxy_buf = NULL;
    c->proxy_wait = 0;
    return 1;
}

/* For the steps before a protocol (PROXY header, TLS handshake), which return
 * -1 (close), 0 (wait for more) or 1 (done): whether on_read stops here. */
static int stalled(cel_conn *c, int rc)
{
    if (rc < 0)
        cel_conn_close(c);
    else if (rc == 0)
        rearm_timer(c);
    return rc <= 0;
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    cel_conn *c = arg;
    cel_env *env = c->host->env;
    (void)what, (void)fd;
    if (cel_genref_behind(env))
        c->host->follow(c->host);
    if (c->proxy_wait && stalled(c, proxy_header(c)))
        return;
    if (c->handshaking) {
        if (!c->tls_peeked) {
            c->tls_peeked = 1;
            if (plain_on_tls(c)) {
                reply_plain(c);
                return;
            }
        }
        if (stalled(c, handshake(c)))
            return;
    }
    for (int i = 0; i < READS_PER_EVENT; i++) {
        ssize_t n = conn_read(c, env->rbuf, CEL_READ_BUF);
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
        struct timeval now;
        event_base_gettimeofday_cached(c->host->base, &now);
        env->now = now;
        env->now_us = cel_clock_us();
        cel_env_tick(env, now.tv_sec);
        if (env->stats)
            cel_count(&env->stats->bytes_in, (uint64_t)n);
        if (c->lingering || c->closing)
            continue;
        const uint8_t *p = env->rbuf;
        size_t len = (size_t)n;
        if (!c->proto) {
            size_t k = len < sizeof(c->sniff) - c->nsniff ? len : sizeof(c->sniff) - c->nsniff;
            memcpy(c->sniff + c->nsniff, p, k);
            int undecided;
            const cel_proto *pr = sniff(c->sniff, c->nsniff + k, &undecided);
            if (undecided) {
                c->nsniff += (unsigned)k;
                continue;
            }
            if (start_proto(c, pr)) {
                cel_conn_close(c);
                return;
            }
        }
        /* What was kept from earlier reads first, then this read whole. */
        unsigned kept = c->nsniff;
        c->nsniff = 0;
        if ((kept && feed(c, c->sniff, kept)) || feed(c, p, len)) {
            /* Let the protocol's last word (a GOAWAY, an error answer) out, then close. */
            c->proto->send(c->ps);
            c->closing = 1;
            break;
        }
        /* OpenSSL returns a record at a time and may hold more already read
         * from the socket: drain it, as no read event will say so. */
        if ((!c->ssl && (size_t)n < CEL_READ_BUF) || !c->reading)
            break;
    }
    if (c->ssl && !c->lingering && !c->closing && c->reading && SSL_pending(c->ssl) > 0)
        event_active(&c->rev, EV_READ, 0);
    if (!c->lingering)
        pump(c);
}

void cel_conn_start(cel_conn *c)
{
    /* The protocol (and our SETTINGS, for HTTP/2) waits for the client's first
     * bytes: an HTTP/1.1 client must not get a binary frame. */
    set_reading(c, 1);
    rearm_timer(c);
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
    cel_conn *c = arg;
    (void)fd, (void)what;
    event_base_gettimeofday_cached(c->host->base, &c->active);
    c->host->env->now = c->active;
    c->host->env->now_us = cel_clock_us();
    if (c->handshaking) {
        on_read(fd, EV_READ, c); /* the handshake wanted to write */
        return;
    }
    pump(c);
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    cel_conn *c = arg;
    (void)fd, (void)what;
    event_base_gettimeofday_cached(c->host->base, &c->host->env->now);
    if (!c->lingering && !c->closing)
        pump(c);
}

/* A timeout ends the connection: the protocol's last word (a GOAWAY and
 * RST_STREAMs, a 408) goes out first, then the close (lingering). */
static void last_word(cel_conn *c)
{
    if (!c->proto || c->handshaking) {
        cel_conn_close(c); /* nothing said yet, nothing to say */
        return;
    }
    if (!c->closing && !c->lingering) {
        c->proto->expire(c->ps);
        if (c->proto->send(c->ps)) {
            cel_conn_close(c);
            return;
        }
    }
    c->closing = 1;
    c->tkind = T_NONE;
    pump(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    cel_conn *c = arg;
    (void)fd, (void)what;
    int kind = c->tkind;
    struct timeval now, left = {0, 0};
    event_base_gettimeofday_cached(c->host->base, &now);
    c->host->env->now = now;
    c->host->env->now_us = cel_clock_us();
    if (kind == T_IDLE || kind == T_BUSY || kind == T_WRITE) {
        /* Activity since the timer was set pushes the deadline. */
        struct timeval deadline, span = ms_tv(timeout_ms(c, kind));
        evutil_timeradd(&c->active, &span, &deadline);
        if (evutil_timercmp(&deadline, &now, >)) {
            evutil_timersub(&deadline, &now, &left);
            event_add(&c->tev, &left);
            return;
        }
        if (kind == T_WRITE && peer_kept_up(c)) {
            c->active = now;
            event_add(&c->tev, &span);
            return;
        }
    }
    switch (kind) {
    case T_NONE:
        return;
    case T_IDLE:
        cel_log_debug("conn %d: idle timeout", c->fd);
        cel_conn_shutdown(c);
        return;
    case T_HEADER:
        cel_log_debug("conn %d: no request within the header timeout", c->fd);
        last_word(c);
        return;
    case T_BUSY:
        cel_log_debug("conn %d: client silent with streams open", c->fd);
        last_word(c);
        return;
    case T_WRITE:
        cel_log_debug("conn %d: write stalled", c->fd);
        break;
    default:
        break;
    }
    cel_conn_close(c);
}

void cel_conn_abort(cel_conn *c)
{
    if (c->proto && !c->closing && !c->lingering) {
        c->proto->expire(c->ps);
        c->proto->send(c->ps);
    }
    /* What the socket takes now; the rest is dropped. Unread input would turn
     * the close into a RST that can destroy what we just wrote. */
    if (!c->lingering)
        conn_flush(c);
    shutdown(c->fd, SHUT_WR);
    while (!c->ssl && read(c->fd, c->host->env->rbuf, CEL_READ_BUF) > 0)
        ;
    cel_conn_close(c);
}

void cel_conn_shutdown(cel_conn *c)
{
    if (c->closing || c->lingering)
        return;
    if (!c->proto) {
        start_linger(c);
        return;
    }
    c->proto->goaway(c->ps);
    c->tkind = T_NONE; /* rearm for the new state */
    pump(c);
}

/* BUF holds "255.255.255.255" and cel_http_utoa's 20 bytes past its 12th. */
_Static_assert(sizeof(((cel_conn *)0)->peer) >= 12 + 20, "peer_text writes IPv4 in place");

/* The peer's address as text into BUF and in binary into V. */
static void peer_text(int fd, char *buf, size_t len, cel_conn_view *v)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    memcpy(buf, "-", 2);
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) < 0)
        return;
    if (ss.ss_family == AF_INET) {
        memcpy(v->peer_addr, &((struct sockaddr_in *)&ss)->sin_addr, 4);
        v->peer_family = AF_INET;
        /* glibc's inet_ntop writes IPv4 with sprintf: ~1,300 instructions a
         * connection, a tenth of a connection: close request's. */
        const uint8_t *a = (const uint8_t *)&((struct sockaddr_in *)&ss)->sin_addr;
        size_t n = cel_http_utoa(buf, a[0]);
        for (int i = 1; i < 4; i++) {
            buf[n++] = '.';
            n += cel_http_utoa(buf + n, a[i]);
        }
        buf[n] = '\0';
    } else if (ss.ss_family == AF_INET6) {
        memcpy(v->peer_addr, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
        v->peer_family = AF_INET6;
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, buf, (socklen_t)len);
    }
}

cel_conn *cel_conn_new(cel_conn_host *host, int fd, cel_tls *tls)
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
    if (!tls && !env->gen->cfg->no_sendfile)
        cel_outq_set_sendfile(&c->out, fd); /* file ranges go out by sendfile */
    event_base_gettimeofday_cached(host->base, &c->accepted);
    c->active = c->accepted;
    event_assign(&c->rev, host->base, fd, EV_READ | EV_PERSIST, on_read, c);
    event_assign(&c->wev, host->base, fd, EV_WRITE | EV_PERSIST, on_write, c);
    event_assign(&c->tev, host->base, -1, 0, on_timer, c);
    event_assign(&c->fev, host->base, -1, 0, on_flush, c);
    c->view = (cel_conn_view){c->peer, fd, NULL, 0, 0, 0, 0, {0}};
    peer_text(fd, c->peer, sizeof(c->peer), &c->view);
    if (tls) {
        c->ssl = cel_tls_accept(tls, fd);
        if (!c->ssl) {
            cel_outq_deinit(&c->out);
            close(fd);
            cel_pool_release(env->pool, c);
            return NULL;
        }
        c->handshaking = 1;
    }
    c->view.ssl = c->ssl;
    return c;
}
