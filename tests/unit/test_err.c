/*
 * test_err.c: common/err.c. qb_err_from_nng, the one place NNG errors are
 * mapped (each code NNG can hand us, and NNG_ENOTSUP: QB_EINVAL, as
 * libquotebus documents for a bad URL); qb_strerror / qb_errname for every
 * code of the table and an unknown one.
 */
#include "harness.h"

#include "err.h"

#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>

QB_TEST(nng_errors_mapped_once)
{
    static const struct {
        int nng, qb;
    } map[] = {
        {0, QB_OK},
        {NNG_ENOMEM, QB_ENOMEM},
        {NNG_EINVAL, QB_EINVAL},
        {NNG_EADDRINVAL, QB_EINVAL},
        {NNG_ENOTSUP, QB_EINVAL},
        {NNG_ETIMEDOUT, QB_ETIMEDOUT},
        {NNG_EAGAIN, QB_EAGAIN},
        {NNG_ECLOSED, QB_ECLOSED},
        {NNG_EMSGSIZE, QB_ETOOBIG},
        {NNG_ENOENT, QB_ENOTFOUND},
        {NNG_ECONNREFUSED, QB_ETRANSPORT},
        {NNG_EADDRINUSE, QB_ETRANSPORT},
        {NNG_ECANCELED, QB_ETRANSPORT},
        {NNG_ECRYPTO, QB_ETRANSPORT},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        QB_CHECK_EQ_INT(qb_err_from_nng(map[i].nng), map[i].qb);
    }
}

QB_TEST(nng_dial_of_unknown_scheme_is_einval)
{
    /* what NNG really returns for the URLs a user can mistype */
    nng_socket s;
    QB_CHECK_EQ_INT(nng_sub0_open(&s), 0);
    QB_CHECK_EQ_INT(qb_err_from_nng(nng_dial(s, "bogus://x", NULL, NNG_FLAG_NONBLOCK)), QB_EINVAL);
    QB_CHECK_EQ_INT(qb_err_from_nng(nng_dial(s, "tcp://", NULL, NNG_FLAG_NONBLOCK)), QB_EINVAL);
    nng_close(s);
}

QB_TEST(strerror_and_names_cover_the_table)
{
#define T_ERR_(name, value, text)                                                                  \
    QB_CHECK_EQ_STR(qb_strerror(value), text);                                                     \
    QB_CHECK_EQ_STR(qb_errname(value), #name);
    QB_ERRORS(T_ERR_)
#undef T_ERR_
    QB_CHECK_EQ_STR(qb_strerror(9999), "unknown error");
    QB_CHECK_EQ_STR(qb_errname(-1), "QB_E?");
}

int main(void)
{
    return qb_test_run_all();
}
