/*
 * err.h: the one error enum of quotebus, and qb_strerror().
 *
 * Every function that can fail returns an int from this table: QB_OK (0) on
 * success, a positive QB_E* code otherwise. The enum and the strings come
 * from one X-macro so they never drift. Errors from libraries (NNG, lws,
 * zlib, msgpack) are converted at the boundary, one function per library
 * (see qb_err_from_nng()).
 */
#ifndef QB_ERR_H
#define QB_ERR_H

/* X(name, value, text) */
#define QB_ERRORS(X)                                                                               \
    X(QB_OK, 0, "success")                                                                         \
    X(QB_EINVAL, 1, "invalid argument")                                                            \
    X(QB_ENOMEM, 2, "out of memory")                                                               \
    X(QB_ERANGE, 3, "value out of range")                                                          \
    X(QB_EPARSE, 4, "malformed input")                                                             \
    X(QB_EVERSION, 5, "unsupported schema version")                                                \
    X(QB_ETOOBIG, 6, "too large")                                                                  \
    X(QB_ENOTFOUND, 7, "not found")                                                                \
    X(QB_EGAP, 8, "sequence gap")                                                                  \
    X(QB_ECROSSED, 9, "crossed book")                                                              \
    X(QB_ETRANSPORT, 10, "transport error")                                                        \
    X(QB_ECLOSED, 11, "closed")                                                                    \
    X(QB_ETIMEDOUT, 12, "timed out")                                                               \
    X(QB_EAGAIN, 13, "try again")                                                                  \
    X(QB_ESTATE, 14, "invalid state")                                                              \
    X(QB_EIO, 15, "I/O error")                                                                     \
    X(QB_EEOF, 16, "end of data")                                                                  \
    X(QB_EUNSUPPORTED, 17, "not supported")                                                        \
    X(QB_ENOINSTRUMENT, 18, "no such instrument")

typedef enum qb_err {
#define QB_ERR_ENUM_(name, value, text) name = value,
    QB_ERRORS(QB_ERR_ENUM_)
#undef QB_ERR_ENUM_
} qb_err;

/* Returns a static string for any int; unknown codes get "unknown error". */
const char *qb_strerror(int err);

/* Returns the stable identifier of a code ("QB_EPARSE"), for logs. */
const char *qb_errname(int err);

/* Converts an NNG error number (NNG_E*) to a qb_err: 0 is QB_OK; ENOMEM,
 * ETIMEDOUT, EAGAIN, ECLOSED keep their meaning; EINVAL, EADDRINVAL and
 * ENOTSUP (an unknown URL scheme, an unsupported option) are QB_EINVAL;
 * EMSGSIZE is QB_ETOOBIG; ENOENT is QB_ENOTFOUND; anything else is
 * QB_ETRANSPORT. The one place NNG errors are mapped. Pure, any thread. */
int qb_err_from_nng(int nng_err);

#endif
