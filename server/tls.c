#include "tls.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct entry {
    SSL_CTX *ctx;
    X509 *leaf;
    unsigned char *ocsp; /* DER, OPENSSL_malloc'd */
    long ocsp_len;
} entry;

struct cel_tls {
    entry *e;
    size_t n;
};

/*
 * Session ticket keys: one ring for the whole process, so tickets survive
 * reloads (every generation's contexts use it) and workers share it. The
 * newest key seals new tickets; the ones before it still open theirs (and get
 * a fresh ticket), until they fall off the ring. A handshake, not a request,
 * takes the lock.
 */
#define TICKET_KEYS 3

typedef struct ticket_key {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
    time_t born;
    int live;
} ticket_key;

static pthread_mutex_t ticket_lock = PTHREAD_MUTEX_INITIALIZER;
static ticket_key ticket_ring[TICKET_KEYS]; /* [0] is the newest */
static unsigned ticket_rotation_s = CEL_TLS_TICKET_ROTATION;

void cel_tls_set_ticket_rotation(unsigned seconds)
{
    pthread_mutex_lock(&ticket_lock);
    ticket_rotation_s = seconds ? seconds : 1;
    pthread_mutex_unlock(&ticket_lock);
}

/* With the lock held: a fresh newest key when the newest is too old. */
static int rotate_if_due(time_t now)
{
    if (ticket_ring[0].live && now - ticket_ring[0].born < (time_t)ticket_rotation_s)
        return 0;
    ticket_key k = {.born = now, .live = 1};
    if (RAND_bytes(k.name, sizeof(k.name)) != 1 || RAND_bytes(k.aes, sizeof(k.aes)) != 1 ||
        RAND_bytes(k.hmac, sizeof(k.hmac)) != 1)
        return -1;
    memmove(&ticket_ring[1], &ticket_ring[0], (TICKET_KEYS - 1) * sizeof(ticket_key));
    ticket_ring[0] = k;
    return 0;
}

static int mac_init(EVP_MAC_CTX *hctx, const unsigned char *key)
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    return EVP_MAC_init(hctx, key, 32, params);
}

static int on_ticket_key(SSL *ssl, unsigned char name[16], unsigned char *iv, EVP_CIPHER_CTX *cctx,
                         EVP_MAC_CTX *hctx, int enc)
{
    (void)ssl;
    int rc = 0;
    pthread_mutex_lock(&ticket_lock);
    time_t now = time(NULL);
    if (enc) {
        if (rotate_if_due(now) == 0 && RAND_bytes(iv, EVP_MAX_IV_LENGTH) == 1) {
            const ticket_key *k = &ticket_ring[0];
            memcpy(name, k->name, sizeof(k->name));
            if (EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv) == 1 &&
                mac_init(hctx, k->hmac) == 1)
                rc = 1;
        }
    } else {
        rotate_if_due(now);
        for (int i = 0; i < TICKET_KEYS; i++) {
            const ticket_key *k = &ticket_ring[i];
            if (!k->live || memcmp(name, k->name, sizeof(k->name)) != 0)
                continue;
            if (EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv) == 1 &&
                mac_init(hctx, k->hmac) == 1)
                rc = i == 0 ? 1 : 2; /* 2: accepted, but issue a ticket under the newest key */
            break;
        }
    }
    pthread_mutex_unlock(&ticket_lock);
    return rc; /* 0: no resumption, a full handshake */
}

/*
 * TLS 1.2 session IDs: one cache for the whole process rather than each
 * SSL_CTX's own, which a reload would throw away with its generation, so
 * session-ID resumption survives reloads as tickets do. A fixed table indexed
 * by the (random) ID; a new session takes the slot of whatever was there.
 * Sessions are kept serialized. A handshake, not a request, takes the lock.
 * TLS 1.3 resumes from its tickets alone, so its sessions are not kept.
 */
#define SESS_SLOTS 4096
#define SESS_DER_MAX 4096 /* larger sessions (a long chain) are not kept */

typedef struct sess_slot {
    unsigned char id[SSL_MAX_SSL_SESSION_ID_LENGTH];
    unsigned idlen;
    int derlen;
    unsigned char *der;
    time_t expires;
} sess_slot;

static pthread_mutex_t sess_lock = PTHREAD_MUTEX_INITIALIZER;
static sess_slot sess_cache[SESS_SLOTS];

static sess_slot *sess_slot_of(const unsigned char *id, unsigned len)
{
    uint32_t h = 2166136261u;
    for (unsigned i = 0; i < len; i++)
        h = (h ^ id[i]) * 16777619u;
    return &sess_cache[h % SESS_SLOTS];
}

static int on_sess_new(SSL *ssl, SSL_SESSION *sess)
{
    unsigned idlen;
    const unsigned char *id = SSL_SESSION_get_id(sess, &idlen);
    int n = i2d_SSL_SESSION(sess, NULL);
    if (SSL_version(ssl) >= TLS1_3_VERSION || idlen == 0 || idlen > sizeof(sess_cache[0].id) ||
        n <= 0 || n > SESS_DER_MAX)
        return 0;
    unsigned char *der = malloc((size_t)n), *p = der;
    if (!der || i2d_SSL_SESSION(sess, &p) != n) {
        free(der);
        return 0;
    }
    time_t expires = (time_t)SSL_SESSION_get_time(sess) + (time_t)SSL_SESSION_get_timeout(sess);
    pthread_mutex_lock(&sess_lock);
    sess_slot *slot = sess_slot_of(id, idlen);
    free(slot->der);
    memcpy(slot->id, id, idlen);
    slot->idlen = idlen;
    slot->der = der;
    slot->derlen = n;
    slot->expires = expires;
    pthread_mutex_unlock(&sess_lock);
    return 0; /* we keep a copy, not OpenSSL's reference */
}

static SSL_SESSION *on_sess_get(SSL *ssl, const unsigned char *id, int len, int *copy)
{
    (void)ssl;
    *copy = 0;
    SSL_SESSION *sess = NULL;
    if (len <= 0)
        return NULL;
    pthread_mutex_lock(&sess_lock);
    sess_slot *slot = sess_slot_of(id, (unsigned)len);
    if (slot->der && slot->idlen == (unsigned)len && memcmp(slot->id, id, slot->idlen) == 0 &&
        slot->expires > time(NULL)) {
        const unsigned char *p = slot->der;
        sess = d2i_SSL_SESSION(NULL, &p, slot->derlen);
    }
    pthread_mutex_unlock(&sess_lock);
    return sess;
}

static void on_sess_remove(SSL_CTX *ctx, SSL_SESSION *sess)
{
    (void)ctx;
    unsigned idlen;
    const unsigned char *id = SSL_SESSION_get_id(sess, &idlen);
    if (idlen == 0 || idlen > sizeof(sess_cache[0].id))
        return;
    pthread_mutex_lock(&sess_lock);
    sess_slot *slot = sess_slot_of(id, idlen);
    if (slot->der && slot->idlen == idlen && memcmp(slot->id, id, idlen) == 0) {
        free(slot->der);
        slot->der = NULL;
    }
    pthread_mutex_unlock(&sess_lock);
}

/* ALPN wire format: h2 first, then http/1.1. */
static const unsigned char alpn_ours[] = "\x02h2\x08http/1.1";

static void ssl_error(char *err, size_t errlen, const char *what, const char *file)
{
    unsigned long e = ERR_get_error();
    char buf[256] = "";
    if (e)
        ERR_error_string_n(e, buf, sizeof(buf));
    snprintf(err, errlen, "%s \"%s\": %s", what, file, buf[0] ? buf : "unknown error");
    ERR_clear_error();
}

static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl, (void)arg;
    unsigned char *sel;
    if (SSL_select_next_proto(&sel, outlen, alpn_ours, sizeof(alpn_ours) - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK; /* no common protocol: go on without ALPN */
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static int on_status(SSL *ssl, void *arg)
{
    entry *e = arg;
    /* The context in force after SNI holds the staple for its certificate. */
    SSL_CTX *ctx = SSL_get_SSL_CTX(ssl);
    entry *cur = SSL_CTX_get_app_data(ctx);
    if (cur)
        e = cur;
    if (!e->ocsp)
        return SSL_TLSEXT_ERR_NOACK;
    unsigned char *copy = OPENSSL_malloc((size_t)e->ocsp_len);
    if (!copy)
        return SSL_TLSEXT_ERR_NOACK;
    memcpy(copy, e->ocsp, (size_t)e->ocsp_len);
    SSL_set_tlsext_status_ocsp_resp(ssl, copy, e->ocsp_len);
    return SSL_TLSEXT_ERR_OK;
}

static int on_servername(SSL *ssl, int *alert, void *arg)
{
    cel_tls *t = arg;
    (void)alert;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!name)
        return SSL_TLSEXT_ERR_OK;
    for (size_t i = 1; i < t->n; i++)
        if (X509_check_host(t->e[i].leaf, name, 0, 0, NULL) == 1) {
            SSL_set_SSL_CTX(ssl, t->e[i].ctx);
            return SSL_TLSEXT_ERR_OK;
        }
    return SSL_TLSEXT_ERR_OK; /* the default certificate answers the rest */
}

static int read_ocsp(entry *e, const char *file, char *err, size_t errlen)
{
    FILE *f = fopen(file, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open OCSP response \"%s\"", file);
        return -1;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    e->ocsp = n > 0 ? OPENSSL_malloc((size_t)n) : NULL;
    if (!e->ocsp || fread(e->ocsp, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        snprintf(err, errlen, "cannot read OCSP response \"%s\"", file);
        return -1;
    }
    fclose(f);
    e->ocsp_len = n;
    return 0;
}

static int make_ctx(cel_tls *t, entry *e, const cel_tls_cert *c, char *err, size_t errlen)
{
    e->ctx = SSL_CTX_new(TLS_server_method());
    if (!e->ctx) {
        ssl_error(err, errlen, "cannot create a TLS context for", c->cert);
        return -1;
    }
    SSL_CTX_set_min_proto_version(e->ctx, TLS1_2_VERSION);
    /* TLS 1.2: forward-secret AEAD suites only (TLS 1.3's defaults are). */
    SSL_CTX_set_cipher_list(e->ctx, "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!MD5:!SHA1");
    SSL_CTX_set_options(e->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                    SSL_OP_ENABLE_KTLS);
    SSL_CTX_set_mode(e->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(e->ctx, SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL);
    SSL_CTX_sess_set_new_cb(e->ctx, on_sess_new);
    SSL_CTX_sess_set_get_cb(e->ctx, on_sess_get);
    SSL_CTX_sess_set_remove_cb(e->ctx, on_sess_remove);
    SSL_CTX_set_session_id_context(e->ctx, (const unsigned char *)"celerisd", 8);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(e->ctx, on_ticket_key);
    if (SSL_CTX_use_certificate_chain_file(e->ctx, c->cert) != 1) {
        ssl_error(err, errlen, "cannot load certificate", c->cert);
        return -1;
    }
    if (SSL_CTX_use_PrivateKey_file(e->ctx, c->key, SSL_FILETYPE_PEM) != 1) {
        ssl_error(err, errlen, "cannot load key", c->key);
        return -1;
    }
    if (SSL_CTX_check_private_key(e->ctx) != 1) {
        ssl_error(err, errlen, "key does not match certificate", c->cert);
        return -1;
    }
    e->leaf = SSL_CTX_get0_certificate(e->ctx);
    if (c->ocsp && read_ocsp(e, c->ocsp, err, errlen))
        return -1;
    SSL_CTX_set_app_data(e->ctx, e);
    SSL_CTX_set_alpn_select_cb(e->ctx, on_alpn, NULL);
    SSL_CTX_set_tlsext_status_cb(e->ctx, on_status);
    SSL_CTX_set_tlsext_status_arg(e->ctx, e);
    SSL_CTX_set_tlsext_servername_callback(e->ctx, on_servername);
    SSL_CTX_set_tlsext_servername_arg(e->ctx, t);
    return 0;
}

cel_tls *cel_tls_new(const cel_tls_cert *certs, size_t n, char *err, size_t errlen)
{
    cel_tls *t = calloc(1, sizeof(*t));
    if (!t || !(t->e = calloc(n, sizeof(entry)))) {
        free(t);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    t->n = n;
    for (size_t i = 0; i < n; i++)
        if (make_ctx(t, &t->e[i], &certs[i], err, errlen)) {
            cel_tls_free(t);
            return NULL;
        }
    return t;
}

void cel_tls_free(cel_tls *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++) {
        if (t->e[i].ctx)
            SSL_CTX_free(t->e[i].ctx); /* connections still open hold their own reference */
        OPENSSL_free(t->e[i].ocsp);
    }
    free(t->e);
    free(t);
}

void *cel_tls_accept(cel_tls *t, int fd)
{
    SSL *ssl = SSL_new(t->e[0].ctx);
    if (!ssl)
        return NULL;
    if (SSL_set_fd(ssl, fd) != 1) {
        SSL_free(ssl);
        return NULL;
    }
    SSL_set_accept_state(ssl);
    return ssl;
}

int cel_tls_ktls_send(void *ssl)
{
    return BIO_get_ktls_send(SSL_get_wbio(ssl)) ? 1 : 0;
}

int cel_tls_alpn(void *ssl)
{
    const unsigned char *p;
    unsigned int n;
    SSL_get0_alpn_selected(ssl, &p, &n);
    return n == 2 && memcmp(p, "h2", 2) == 0 ? 2 : 1;
}

size_t cel_tls_info(void *ssl, int what, char *buf, size_t len)
{
    const char *s = NULL;
    size_t n = 0;
    buf[0] = 0;
    switch (what) {
    case CEL_TLS_VERSION:
        s = SSL_get_version(ssl);
        break;
    case CEL_TLS_CIPHER:
        s = SSL_get_cipher_name(ssl);
        break;
    case CEL_TLS_SNI:
        s = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
        break;
    case CEL_TLS_ALPN: {
        const unsigned char *p;
        unsigned int an = 0;
        SSL_get0_alpn_selected(ssl, &p, &an);
        if (an && an < len) {
            memcpy(buf, p, an);
            buf[an] = 0;
        }
        return strlen(buf);
    }
    case CEL_TLS_CLIENT_SUBJECT: {
        X509 *cert = SSL_get0_peer_certificate(ssl);
        if (cert)
            X509_NAME_oneline(X509_get_subject_name(cert), buf, (int)len);
        return strlen(buf);
    }
    default:
        return 0;
    }
    if (s && (n = strlen(s)) < len)
        memcpy(buf, s, n + 1);
    else
        n = 0;
    return n;
}
