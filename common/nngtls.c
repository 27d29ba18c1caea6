/*
 * nngtls.c: see nngtls.h. Certificates and keys are read whole (at most
 * NNGTLS_MAX_PEM bytes) and handed to NNG as PEM strings, so the certificate
 * and the key may be two files (nng_tls_config_cert_key_file wants one).
 * Runs at start-up only, on the caller's thread.
 */
#include "nngtls.h"

#include "err.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NNGTLS_MAX_PEM (1u << 20)

bool qb_tls_url(const char *url)
{
    return url != NULL && strncmp(url, "tls+tcp", 7) == 0 && strstr(url, "://") != NULL;
}

bool qb_tls_files_any(const qb_tls_files *f)
{
    return f != NULL && (f->cert != NULL || f->key != NULL || f->ca != NULL);
}

/* The whole of a PEM file as a NUL-terminated string (free()), or NULL
 * (logged). */
static char *nngtls_read(const char *what, const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) {
        QB_ERROR("tls.config_failed", "%s %s: %s", what, path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(NNGTLS_MAX_PEM + 1);
    size_t n = buf != NULL ? fread(buf, 1, NNGTLS_MAX_PEM + 1, fp) : 0;
    int bad = buf == NULL || ferror(fp) || n > NNGTLS_MAX_PEM || n == 0;
    fclose(fp);
    if (bad) {
        QB_ERROR("tls.config_failed", "%s %s: %s", what, path,
                 buf == NULL ? "out of memory"
                 : n == 0    ? "empty or unreadable"
                             : "too large");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

static int nngtls_fail(nng_tls_config *c, const char *what, const char *path, int rv)
{
    QB_ERROR("tls.config_failed", "%s %s: %s", what, path ? path : "(none)", nng_strerror(rv));
    nng_tls_config_free(c);
    /* whatever NNG says, the files the user named were rejected */
    int rc = qb_err_from_nng(rv);
    return rc == QB_ENOMEM ? rc : QB_EINVAL;
}

/* Loads f->cert and f->key as the configuration's own certificate. */
static int nngtls_own(nng_tls_config *c, const qb_tls_files *f)
{
    char *cert = nngtls_read("certificate", f->cert);
    char *key = cert != NULL ? nngtls_read("private key", f->key) : NULL;
    int rv = cert != NULL && key != NULL ? nng_tls_config_own_cert(c, cert, key, NULL) : -1;
    free(cert);
    if (key != NULL) {
        memset(key, 0, strlen(key)); /* no copy of the key left behind in the heap */
    }
    free(key);
    if (rv == -1) {
        nng_tls_config_free(c);
        return QB_EINVAL;
    }
    return rv == 0 ? QB_OK : nngtls_fail(c, "certificate and key", f->cert, rv);
}

/* Allocates a configuration of mode; QB_OK or logged error. */
static int nngtls_alloc(nng_tls_mode mode, nng_tls_config **c)
{
    int rv = nng_tls_config_alloc(c, mode);
    if (rv != 0) {
        QB_ERROR("tls.config_failed", "TLS configuration: %s (engine %s)", nng_strerror(rv),
                 nng_tls_engine_name());
        /* short of memory, this NNG has no TLS engine */
        int rc = qb_err_from_nng(rv);
        return rc == QB_ENOMEM ? rc : QB_EUNSUPPORTED;
    }
    return QB_OK;
}

int qb_tls_server_config(const qb_tls_files *f, nng_tls_config **out)
{
    if (f == NULL || f->cert == NULL || f->key == NULL || f->ca == NULL) {
        QB_ERROR("tls.config_failed", "a TLS listener needs a certificate, its key and the CA "
                                      "of its clients' certificates");
        return QB_EINVAL;
    }
    nng_tls_config *c;
    int rc = nngtls_alloc(NNG_TLS_MODE_SERVER, &c);
    if (rc != QB_OK || (rc = nngtls_own(c, f)) != QB_OK) {
        return rc;
    }
    int rv;
    if ((rv = nng_tls_config_ca_file(c, f->ca)) != 0) {
        return nngtls_fail(c, "CA file", f->ca, rv);
    }
    if ((rv = nng_tls_config_auth_mode(c, NNG_TLS_AUTH_MODE_REQUIRED)) != 0) {
        return nngtls_fail(c, "client authentication", f->ca, rv);
    }
    *out = c;
    return QB_OK;
}

int qb_tls_client_config(const qb_tls_files *f, const char *url, nng_tls_config **out)
{
    if (f == NULL || f->ca == NULL || (f->cert == NULL) != (f->key == NULL)) {
        QB_ERROR("tls.config_failed",
                 "%s: a TLS dial needs the CA of the server's certificate "
                 "(and a certificate with its key, both or neither)",
                 url);
        return QB_EINVAL;
    }
    nng_url *u = NULL;
    int rv = nng_url_parse(&u, url);
    if (rv != 0) {
        QB_ERROR("tls.config_failed", "%s: %s", url, nng_strerror(rv));
        return QB_EINVAL;
    }
    nng_tls_config *c;
    int rc = nngtls_alloc(NNG_TLS_MODE_CLIENT, &c);
    if (rc == QB_OK && f->cert != NULL) {
        rc = nngtls_own(c, f);
    }
    if (rc != QB_OK) {
        nng_url_free(u);
        return rc;
    }
    if ((rv = nng_tls_config_ca_file(c, f->ca)) != 0 ||
        (rv = nng_tls_config_auth_mode(c, NNG_TLS_AUTH_MODE_REQUIRED)) != 0 ||
        (rv = nng_tls_config_server_name(c, u->u_hostname)) != 0) {
        nng_url_free(u);
        return nngtls_fail(c, "CA file", f->ca, rv);
    }
    nng_url_free(u);
    *out = c;
    return QB_OK;
}

int qb_tls_probe_config(const qb_tls_files *f, nng_tls_config **out)
{
    if (f == NULL || f->cert == NULL || f->key == NULL) {
        return QB_EINVAL;
    }
    nng_tls_config *c;
    int rc = nngtls_alloc(NNG_TLS_MODE_CLIENT, &c);
    if (rc != QB_OK || (rc = nngtls_own(c, f)) != QB_OK) {
        return rc;
    }
    int rv = nng_tls_config_auth_mode(c, NNG_TLS_AUTH_MODE_NONE);
    if (rv != 0) {
        return nngtls_fail(c, "probe authentication", f->cert, rv);
    }
    *out = c;
    return QB_OK;
}
