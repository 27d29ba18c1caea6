/*
 * err.c: qb_strerror() and the library error converters. Stateless, any
 * thread.
 */
#include "err.h"

#include <nng/nng.h>

const char *qb_strerror(int err)
{
    switch (err) {
#define QB_ERR_STR_(name, value, text)                                                             \
    case value:                                                                                    \
        return text;
        QB_ERRORS(QB_ERR_STR_)
#undef QB_ERR_STR_
    default:
        return "unknown error";
    }
}

const char *qb_errname(int err)
{
    switch (err) {
#define QB_ERR_NAME_(name, value, text)                                                            \
    case value:                                                                                    \
        return #name;
        QB_ERRORS(QB_ERR_NAME_)
#undef QB_ERR_NAME_
    default:
        return "QB_E?";
    }
}

int qb_err_from_nng(int e)
{
    switch (e) {
    case 0:
        return QB_OK;
    case NNG_ENOMEM:
        return QB_ENOMEM;
    case NNG_EINVAL:
    case NNG_EADDRINVAL:
        return QB_EINVAL;
    case NNG_ETIMEDOUT:
        return QB_ETIMEDOUT;
    case NNG_EAGAIN:
        return QB_EAGAIN;
    case NNG_ECLOSED:
        return QB_ECLOSED;
    case NNG_EMSGSIZE:
        return QB_ETOOBIG;
    case NNG_ENOTSUP:
        /* NNG says ENOTSUP for a URL scheme it has no transport for and
         * for an option or protocol a socket lacks: arguments the caller
         * chose. quotebus.h documents QB_EINVAL for a bad URL. */
        return QB_EINVAL;
    case NNG_ENOENT:
        return QB_ENOTFOUND;
    default:
        return QB_ETRANSPORT;
    }
}
