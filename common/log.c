/*
 * log.c: formatting and the per-site rate limiter. A line is built in a stack
 * buffer and written with one write(2), so lines from threads never mix.
 */
#include "log.h"

#include "clock.h"
#include "err.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static const char *log_component = "quotebus";
static atomic_int log_level = QB_LOG_INFO;

void qb_log_set_component(const char *component)
{
    log_component = component;
}

void qb_log_set_level(qb_log_level level)
{
    atomic_store(&log_level, (int)level);
}

qb_log_level qb_log_get_level(void)
{
    return (qb_log_level)atomic_load(&log_level);
}

int qb_log_level_parse(const char *text, qb_log_level *out)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(text, names[i]) == 0) {
            *out = (qb_log_level)i;
            return QB_OK;
        }
    }
    return QB_EINVAL;
}

void qb_log(qb_log_level level, const char *id, const char *fmt, ...)
{
    static const char *tags[] = {"ERROR", "WARN", "INFO", "DEBUG"};
    if ((int)level > atomic_load(&log_level)) {
        return;
    }
    char line[2048];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s %s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, tags[level], log_component, id);
    if (n < 0 || (size_t)n >= sizeof line) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0) {
        m = 0;
    }
    size_t len = (size_t)n + (size_t)m;
    if (len > sizeof line - 2) {
        len = sizeof line - 2;
    }
    /* Never let input bytes forge extra lines. */
    for (size_t i = (size_t)n; i < len; i++) {
        if (line[i] == '\n' || line[i] == '\r') {
            line[i] = ' ';
        }
    }
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

int qb_log_rl_allow(qb_log_rl *rl, uint64_t *suppressed_out)
{
    /* Races between threads only blur the count; the bound still holds. */
    uint64_t now = qb_mono_ns();
    if (now - rl->window_start_ns >= 1000000000ull) {
        rl->window_start_ns = now;
        rl->in_window = 0;
    }
    if (rl->in_window >= QB_LOG_RL_BURST) {
        rl->suppressed++;
        return 0;
    }
    rl->in_window++;
    *suppressed_out = rl->suppressed;
    rl->suppressed = 0;
    return 1;
}
