/*
 * log.h: one line per event, with a level, the process component and a
 * stable event identifier, written to stderr:
 *
 *   2026-11-21T16:30:00.123Z WARN adapter.binance gap_detected sym=BTC-USDT ...
 *
 * The identifier ("gap_detected") never changes between releases, so logs can
 * be grepped and alerted on. QB_LOG_RL() rate-limits one call site (a storm of
 * bad input cannot flood the log): at most QB_LOG_RL_BURST lines per second
 * from that site; the next line that gets through says how many were
 * suppressed. Thread-safe: any thread may log.
 */
#ifndef QB_LOG_H
#define QB_LOG_H

#include <stdint.h>

typedef enum qb_log_level {
    QB_LOG_ERROR = 0,
    QB_LOG_WARN = 1,
    QB_LOG_INFO = 2,
    QB_LOG_DEBUG = 3,
} qb_log_level;

/* Sets the component name printed on every line; the string must outlive
 * all logging (a literal, or argv). */
void qb_log_set_component(const char *component);
void qb_log_set_level(qb_log_level level);
qb_log_level qb_log_get_level(void);
/* Parses "error", "warn", "info", "debug"; returns QB_OK or QB_EINVAL. */
int qb_log_level_parse(const char *text, qb_log_level *out);

void qb_log(qb_log_level level, const char *id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Per call site rate limiter state; zero-initialised static. */
typedef struct qb_log_rl {
    uint64_t window_start_ns;
    uint32_t in_window;
    uint64_t suppressed;
} qb_log_rl;

#define QB_LOG_RL_BURST 10

/* Returns nonzero when a line may be written now; *suppressed_out gets the
 * number of lines dropped since the last one written. */
int qb_log_rl_allow(qb_log_rl *rl, uint64_t *suppressed_out);

#define QB_LOG_RL(level, id, fmt, ...)                                                             \
    do {                                                                                           \
        static qb_log_rl qb_rl_;                                                                   \
        uint64_t qb_sup_;                                                                          \
        if ((level) <= qb_log_get_level() && qb_log_rl_allow(&qb_rl_, &qb_sup_)) {                 \
            if (qb_sup_) {                                                                         \
                qb_log(level, id, fmt " (suppressed=%llu)", ##__VA_ARGS__,                         \
                       (unsigned long long)qb_sup_);                                               \
            } else {                                                                               \
                qb_log(level, id, fmt, ##__VA_ARGS__);                                             \
            }                                                                                      \
        }                                                                                          \
    } while (0)

#define QB_ERROR(id, ...) qb_log(QB_LOG_ERROR, id, __VA_ARGS__)
#define QB_WARN(id, ...) qb_log(QB_LOG_WARN, id, __VA_ARGS__)
#define QB_INFO(id, ...) qb_log(QB_LOG_INFO, id, __VA_ARGS__)
#define QB_DEBUG(id, ...)                                                                          \
    do {                                                                                           \
        if (qb_log_get_level() >= QB_LOG_DEBUG) {                                                  \
            qb_log(QB_LOG_DEBUG, id, __VA_ARGS__);                                                 \
        }                                                                                          \
    } while (0)

#endif
