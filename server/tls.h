/*
 * TLS for a listener (OpenSSL 3): certificates chosen by SNI, ALPN offering
 * h2 then http/1.1, TLS 1.2 and 1.3 with modern ciphers, session tickets and
 * TLS 1.2 session IDs (keys and cache are the process's: both resume across
 * reloads), an
 * OCSP staple when a file is given, and kernel TLS for sending when OpenSSL
 * and the kernel offer it (then the writev queue goes to the socket as is).
 *
 * A context belongs to a configuration generation: a reload reads the
 * certificates again, and a bad one fails the reload, keeping the old.
 */
#ifndef CEL_TLS_H
#define CEL_TLS_H

#include <stddef.h>

typedef struct cel_tls cel_tls;

/* Session ticket keys rotate this often (seconds); tickets sealed with the two
 * keys before the newest still resume. The YAML knob is tls_ticket_rotation. */
#define CEL_TLS_TICKET_ROTATION (12 * 3600)
void cel_tls_set_ticket_rotation(unsigned seconds);

typedef struct cel_tls_cert {
    const char *cert; /* PEM chain file */
    const char *key;  /* PEM key file */
    const char *ocsp; /* DER OCSP response to staple, or NULL */
} cel_tls_cert;

/* The first certificate is the default; the others answer the names they
 * cover (SNI). NULL with a message in ERR (which file, what is wrong). */
cel_tls *cel_tls_new(const cel_tls_cert *certs, size_t n, char *err, size_t errlen);
void cel_tls_free(cel_tls *t);

/* A new server-side SSL object for socket FD (an SSL *). NULL on failure. */
void *cel_tls_accept(cel_tls *t, int fd);

/* Whether kernel TLS was set up for sending on SSL (after the handshake). */
int cel_tls_ktls_send(void *ssl);

/* The protocol ALPN chose: 2 for h2, 1 for http/1.1 or none. */
int cel_tls_alpn(void *ssl);

/* What a module can ask of a TLS connection (the values of celeris/module.h). */
enum { CEL_TLS_VERSION = 1, CEL_TLS_CIPHER, CEL_TLS_SNI, CEL_TLS_ALPN, CEL_TLS_CLIENT_SUBJECT };
/* Item WHAT of SSL as NUL-terminated text in BUF (LEN bytes); returns its
 * length, 0 when SSL does not have it (no SNI sent, no client certificate,
 * a value longer than LEN - 1). */
size_t cel_tls_info(void *ssl, int what, char *buf, size_t len);

#endif
