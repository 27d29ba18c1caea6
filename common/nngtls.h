/*
 * nngtls.h: NNG TLS configurations (tls+tcp:// addresses) from PEM files,
 * for mutual TLS between adapters and the broker.
 *
 * NNG 1.5.2 as Debian builds it uses mbedTLS 2.28. Three roles:
 *
 *   server  the broker's tls+tcp:// listeners: presents its certificate and
 *           requires every client to present one signed by the CA file
 *           (NNG_TLS_AUTH_MODE_REQUIRED): a client without one is refused in
 *           the TLS handshake, before any NNG message.
 *   client  adapters (and subscribers) dialing tls+tcp://: verify the
 *           broker's certificate against the CA file and the host of the
 *           URL, and present their own certificate when given one.
 *   probe   the broker dialing its own listener (listeners.h): presents the
 *           broker's certificate, verifies nothing (it knows whom it dials).
 *
 * mbedTLS 2.28 matches the host name only against the certificate's DNS
 * names (and CN), never against IP address entries, so a server certificate
 * for tls+tcp://127.0.0.1:... must carry "DNS:127.0.0.1" too
 * (scripts/make-certs.sh does). An NNG TLS configuration cannot change once
 * in use: each is built whole here and then only held and freed.
 *
 * Errors are logged here (id tls.config_failed, naming the file and
 * mbedTLS's reason as NNG reports it). Any thread.
 */
#ifndef QB_NNGTLS_H
#define QB_NNGTLS_H

#include <nng/nng.h>
#include <nng/supplemental/tls/tls.h>
#include <stdbool.h>

/* PEM file paths; NULL when not given. */
typedef struct qb_tls_files {
    const char *cert; /* own certificate (or chain, leaf first) */
    const char *key;  /* its private key (unencrypted) */
    const char *ca;   /* CA certificate(s) the peer's certificate must chain to */
} qb_tls_files;

/* True for the TLS transports' URLs: tls+tcp://, tls+tcp4://, tls+tcp6://. */
bool qb_tls_url(const char *url);

/* True when any of f's paths is set (f may be NULL). */
bool qb_tls_files_any(const qb_tls_files *f);

/* A server configuration: f->cert, f->key and f->ca are all required (the
 * CA signs the clients' certificates). QB_OK and *out (the caller owns one
 * hold: nng_tls_config_free), QB_EINVAL (missing or unusable file, logged),
 * QB_ENOMEM. */
int qb_tls_server_config(const qb_tls_files *f, nng_tls_config **out);

/* A client configuration for dialing url: f->ca is required (the server is
 * verified against it and the URL's host); f->cert and f->key, both or
 * neither, are the client certificate. Same results as
 * qb_tls_server_config. */
int qb_tls_client_config(const qb_tls_files *f, const char *url, nng_tls_config **out);

/* The broker's probe of its own listener: a client configuration that
 * presents f->cert and f->key and does not verify the server. Same results
 * as qb_tls_server_config. */
int qb_tls_probe_config(const qb_tls_files *f, nng_tls_config **out);

#endif
