/*
 * harness.h: the tiny test harness of the unit tests (header only).
 *
 *   QB_TEST(decimal_parses_exponent) { QB_CHECK(x == 1); QB_CHECK_EQ_STR(a, "b"); }
 *   int main(void) { return qb_test_run_all(); }
 *
 * Tests register themselves through a constructor; qb_test_run_all() runs
 * them in order of definition, prints one line per failed check and a
 * closing line "N passed, N failed", and returns 0 only when all passed.
 * QB_SKIP_ALL("why") exits 77 (CTest reports the test as skipped).
 */
#ifndef QB_TEST_HARNESS_H
#define QB_TEST_HARNESS_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*qb_test_fn)(void);
static struct {
    const char *name;
    qb_test_fn fn;
} qb_tests_[512];
static int qb_ntests_;
static int qb_test_failed_;

#define QB_TEST(fn_)                                                                               \
    static void fn_(void);                                                                         \
    __attribute__((constructor)) static void fn_##_register_(void)                                 \
    {                                                                                              \
        qb_tests_[qb_ntests_].name = #fn_;                                                         \
        qb_tests_[qb_ntests_++].fn = fn_;                                                          \
    }                                                                                              \
    static void fn_(void)

#define QB_CHECK(cond)                                                                             \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            qb_test_failed_ = 1;                                                                   \
        }                                                                                          \
    } while (0)

#define QB_CHECK_EQ_INT(a, b)                                                                      \
    do {                                                                                           \
        long long qa_ = (long long)(a), qb_ = (long long)(b);                                      \
        if (qa_ != qb_) {                                                                          \
            fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, #a, #b,  \
                    qa_, qb_);                                                                     \
            qb_test_failed_ = 1;                                                                   \
        }                                                                                          \
    } while (0)

#define QB_CHECK_EQ_STR(a, b)                                                                      \
    do {                                                                                           \
        const char *sa_ = (a), *sb_ = (b);                                                         \
        if (sa_ == NULL || sb_ == NULL || strcmp(sa_, sb_) != 0) {                                 \
            fprintf(stderr, "%s:%d: %s == %s failed: \"%s\" != \"%s\"\n", __FILE__, __LINE__, #a,  \
                    #b, sa_ ? sa_ : "(null)", sb_ ? sb_ : "(null)");                               \
            qb_test_failed_ = 1;                                                                   \
        }                                                                                          \
    } while (0)

#define QB_SKIP_ALL(why)                                                                           \
    do {                                                                                           \
        printf("SKIP: %s\n", why);                                                                 \
        exit(77);                                                                                  \
    } while (0)

/* Reads a whole file into a NUL-terminated malloc'ed buffer (the caller
 * frees it); *len gets its length. NULL when it cannot be read. */
static inline char *qb_test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n] = '\0';
        *len = (size_t)n;
    }
    return buf;
}

static inline int qb_test_run_all(void)
{
    int passed = 0, failed = 0;
    for (int i = 0; i < qb_ntests_; i++) {
        qb_test_failed_ = 0;
        qb_tests_[i].fn();
        if (qb_test_failed_) {
            printf("FAIL %s\n", qb_tests_[i].name);
            failed++;
        } else {
            printf("ok   %s\n", qb_tests_[i].name);
            passed++;
        }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

#endif
