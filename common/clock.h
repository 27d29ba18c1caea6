/*
 * clock.h: time in uint64 nanoseconds. qb_now_ns() is wall-clock (UTC since
 * the epoch; what goes on the wire), qb_mono_ns() is monotonic (timers,
 * ages, rate limits). Any thread.
 */
#ifndef QB_CLOCK_H
#define QB_CLOCK_H

#include <stdint.h>

uint64_t qb_now_ns(void);
uint64_t qb_mono_ns(void);

#endif
