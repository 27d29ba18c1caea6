/*
 * rest.c: one HTTP GET through libwebsockets' HTTP client (REST snapshots).
 *
 * lws_client_connect_via_info() with method "GET" and HTTP/1.1; the body
 * arrives through LWS_CALLBACK_RECEIVE_CLIENT_HTTP -> lws_http_client_read()
 * -> LWS_CALLBACK_RECEIVE_CLIENT_HTTP_READ and is collected in a buffer
 * capped at max_body (a larger body aborts the request: "body too large").
 * Retry-After is read from the response headers (seconds).
 *
 * Lifetime: the request object belongs to its wsi; lws's last word about a
 * wsi is LWS_CALLBACK_WSI_DESTROY, where the object is freed. The user
 * callback fires exactly once (at completion, error, or at the latest at
 * destroy), never inside qb__rest_get(), and never after qb__rest_cancel().
 * Lws service thread only.
 */
#include "adapter_int.h"

#include "err.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct qb_rest_req {
    qb_lws_obj obj;
    qb_rest_cb cb;
    void *user;
    struct lws *wsi;
    char *url;  /* cut up in place by lws_parse_uri */
    char *path; /* "/" + path */
    qb_buf body;
    size_t max_body;
    int status;
    uint32_t retry_after_ms;
    bool in_connect;
    bool destroyed;
    bool done;
    bool canceled;
    bool too_big;
    char err[160];
};

static void rest_free(qb_rest_req *r)
{
    qb_buf_fini(&r->body);
    free(r->url);
    free(r->path);
    free(r);
}

static void rest_finish(qb_rest_req *r, const char *err)
{
    if (r->done) {
        return;
    }
    if (err && !r->err[0]) {
        snprintf(r->err, sizeof r->err, "%s", err);
    }
    if (r->in_connect) {
        return; /* reported after lws_client_connect_via_info returns */
    }
    r->done = true;
    if (!r->canceled && r->cb) {
        if (r->err[0]) {
            r->cb(r->user, 0, NULL, 0, r->retry_after_ms, r->err);
        } else {
            r->cb(r->user, r->status, (const char *)r->body.data, r->body.len, r->retry_after_ms,
                  NULL);
        }
    }
}

qb_rest_req *qb__rest_get(struct lws_context *ctx, const char *url, size_t max_body, qb_rest_cb cb,
                          void *user, char *err, size_t errcap)
{
    qb_rest_req *r = calloc(1, sizeof *r);
    if (r == NULL || (r->url = strdup(url)) == NULL) {
        snprintf(err, errcap, "out of memory");
        free(r);
        return NULL;
    }
    r->obj.kind = QB_LWS_REST;
    r->cb = cb;
    r->user = user;
    r->max_body = max_body;
    const char *prot, *ads, *path;
    int port;
    if (lws_parse_uri(r->url, &prot, &ads, &port, &path) || ads[0] == '\0') {
        snprintf(err, errcap, "bad URL '%s'", url);
        rest_free(r);
        return NULL;
    }
    bool tls = strcmp(prot, "https") == 0;
    if (!tls && strcmp(prot, "http") != 0) {
        snprintf(err, errcap, "unsupported scheme '%s' in '%s'", prot, url);
        rest_free(r);
        return NULL;
    }
    size_t pl = strlen(path);
    if ((r->path = malloc(pl + 2)) == NULL) {
        snprintf(err, errcap, "out of memory");
        rest_free(r);
        return NULL;
    }
    r->path[0] = '/';
    memcpy(r->path + 1, path, pl + 1);

    struct lws_client_connect_info i;
    memset(&i, 0, sizeof i);
    i.context = ctx;
    i.address = ads;
    i.port = port;
    i.path = r->path;
    i.host = ads;
    i.origin = ads;
    i.method = "GET";
    i.alpn = "http/1.1";
    i.ssl_connection = tls ? LCCSCF_USE_SSL : 0;
    i.protocol = "qb-http";
    i.local_protocol_name = "qb-http";
    i.opaque_user_data = r;
    i.pwsi = &r->wsi;
    r->in_connect = true;
    struct lws *wsi = lws_client_connect_via_info(&i);
    r->in_connect = false;
    if (wsi == NULL) {
        snprintf(err, errcap, "connect to %s:%d failed%s%s", ads, port, r->err[0] ? ": " : "",
                 r->err);
        /* lws destroyed the wsi (if any) before returning NULL: nobody
         * references r any more. */
        rest_free(r);
        return NULL;
    }
    r->wsi = wsi;
    if (r->err[0] && !r->done) {
        /* The error came synchronously; WSI_DESTROY will report it. */
        QB_DEBUG("rest_early_error", "%s", r->err);
    }
    return r;
}

void qb__rest_cancel(qb_rest_req *r)
{
    if (r == NULL) {
        return;
    }
    r->canceled = true;
    if (r->wsi && !r->done) {
        lws_set_timeout(r->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    }
}

static uint32_t rest_retry_after(struct lws *wsi)
{
    char v[32];
    int n = lws_hdr_copy(wsi, v, sizeof v, WSI_TOKEN_HTTP_RETRY_AFTER);
    if (n <= 0) {
        return 0;
    }
    /* delta-seconds only; an HTTP date is ignored (the backoff applies). */
    uint64_t s = 0;
    for (int k = 0; k < n; k++) {
        if (v[k] < '0' || v[k] > '9') {
            return 0;
        }
        s = s * 10 + (uint64_t)(v[k] - '0');
        if (s > 3 * 86400) {
            s = 3 * 86400; /* Binance 418 bans last from 2 min up to 3 days: honoured */
        }
    }
    return (uint32_t)(s * 1000);
}

int qb__rest_lws_cb(struct lws *wsi, enum lws_callback_reasons reason, qb_rest_req *r, void *in,
                    size_t len)
{
    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        rest_finish(r, in ? (const char *)in : "connection error");
        return 0;
    case LWS_CALLBACK_ESTABLISHED_CLIENT_HTTP:
        r->status = (int)lws_http_client_http_response(wsi);
        r->retry_after_ms = rest_retry_after(wsi);
        return 0;
    case LWS_CALLBACK_RECEIVE_CLIENT_HTTP: {
        char buf[LWS_PRE + 4096];
        char *p = buf + LWS_PRE;
        int n = (int)sizeof buf - LWS_PRE;
        if (lws_http_client_read(wsi, &p, &n) < 0) {
            return -1;
        }
        return 0;
    }
    case LWS_CALLBACK_RECEIVE_CLIENT_HTTP_READ:
        if (r->canceled || r->too_big) {
            return -1;
        }
        if (r->body.len + len > r->max_body) {
            r->too_big = true;
            char e[96];
            snprintf(e, sizeof e, "body larger than %zu bytes", r->max_body);
            rest_finish(r, e);
            return -1;
        }
        if (qb_buf_append(&r->body, in, len) != QB_OK) {
            rest_finish(r, "out of memory");
            return -1;
        }
        return 0;
    case LWS_CALLBACK_COMPLETED_CLIENT_HTTP:
        rest_finish(r, NULL);
        /* One request per connection: close it now rather than keep an idle
         * keep-alive socket. */
        return -1;
    case LWS_CALLBACK_CLOSED_CLIENT_HTTP:
        rest_finish(r, "connection closed before the response completed");
        return 0;
    case LWS_CALLBACK_WSI_DESTROY:
        if (r->in_connect) {
            r->destroyed = true;
            return 0;
        }
        rest_finish(r, "connection closed");
        rest_free(r);
        return 0;
    default:
        return 0;
    }
}
