/*
 * test_supervisor.c: the broker's adapter supervision (broker/supervisor.h)
 * on real child processes (/bin/sh, /bin/sleep): restarts with doubling
 * backoff, a stop that sends SIGTERM and then SIGKILL after the grace
 * period, and the binary lookup (next to the running program, then $PATH).
 */
#include "harness.h"

#include "clock.h"
#include "err.h"
#include "log.h"
#include "supervisor.h"

#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void t_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static uint64_t t_ms(void)
{
    return qb_mono_ns() / 1000000u;
}

QB_TEST(supervisor_restarts_a_dying_child_with_doubling_backoff)
{
    qb_super_policy pol = {.backoff_min_ms = 50, .backoff_max_ms = 200, .healthy_ms = 60000};
    qb_super *s = qb_super_new(&pol);
    QB_CHECK(s != NULL);
    const char *dies[] = {"/bin/sh", "-c", "exit 3", NULL};
    QB_CHECK_EQ_INT(qb_super_add(s, "adapter dies", dies), QB_OK);
    const char *bad[] = {NULL};
    QB_CHECK_EQ_INT(qb_super_add(s, "x", bad), QB_EINVAL);
    /* Delays 50, 100, 200, 200 ms: within 700 ms, 5 starts at most (and 4
     * normally; 3 leaves room for a loaded machine). */
    uint64_t t0 = t_ms();
    while (t_ms() - t0 < 700) {
        qb_super_poll(s, t_ms());
        t_sleep_ms(5);
    }
    uint64_t starts = qb_super_starts(s, "adapter");
    QB_CHECK(starts >= 3 && starts <= 5); /* no backoff would be ~100 */
    QB_CHECK_EQ_INT(qb_super_restarts(s, "adapter"), starts - 1);
    QB_CHECK_EQ_INT(qb_super_starts(s, "exsim"), 0);
    qb_super_free(s);
}

QB_TEST(supervisor_stops_children_with_sigterm_then_sigkill)
{
    qb_super *s = qb_super_new(NULL);
    const char *polite[] = {"/bin/sleep", "30", NULL};
    const char *stubborn[] = {"/bin/sh", "-c", "trap '' TERM; exec /bin/sleep 30", NULL};
    QB_CHECK_EQ_INT(qb_super_add(s, "adapter polite", polite), QB_OK);
    QB_CHECK_EQ_INT(qb_super_add(s, "adapter stubborn", stubborn), QB_OK);
    qb_super_poll(s, t_ms());
    QB_CHECK_EQ_INT(qb_super_running(s, ""), 2);
    int p0 = qb_super_pid(s, 0), p1 = qb_super_pid(s, 1);
    QB_CHECK(p0 > 0 && p1 > 0);
    t_sleep_ms(100); /* let sh install its trap */
    uint64_t t0 = t_ms();
    qb_super_stop(s, 300);
    uint64_t took = t_ms() - t0;
    QB_CHECK_EQ_INT(qb_super_running(s, ""), 0);
    QB_CHECK(took >= 300 && took < 3000); /* waited the grace period for the stubborn one */
    QB_CHECK(kill(p0, 0) != 0 && kill(p1, 0) != 0); /* both reaped */
    /* No restart after stop. */
    qb_super_poll(s, t_ms() + 100000);
    QB_CHECK_EQ_INT(qb_super_running(s, ""), 0);
    QB_CHECK_EQ_INT(qb_super_starts(s, ""), 2);
    qb_super_free(s);
}

QB_TEST(supervisor_finds_binaries_next_to_itself_then_on_path)
{
    char out[4096];
    QB_CHECK_EQ_INT(qb_super_find_binary("test_supervisor", out, sizeof out), QB_OK);
    QB_CHECK(strstr(out, "/test_supervisor") != NULL);
    QB_CHECK_EQ_INT(qb_super_find_binary("sh", out, sizeof out), QB_OK);
    QB_CHECK(access(out, X_OK) == 0);
    strcpy(out, "unchanged");
    QB_CHECK_EQ_INT(qb_super_find_binary("no-such-binary-qb", out, sizeof out), QB_ENOTFOUND);
    QB_CHECK_EQ_STR(out, "unchanged");
}

int main(void)
{
    qb_log_set_component("test_supervisor");
    qb_log_set_level(QB_LOG_ERROR);
    return qb_test_run_all();
}
