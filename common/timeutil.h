/*
 * timeutil.h - wall-clock time as integer milliseconds since the epoch, and
 * its RFC 3339 UTC form ("2026-11-26T12:00:00.123Z"). Any thread may call.
 */
#ifndef TRAINYARD_TIMEUTIL_H
#define TRAINYARD_TIMEUTIL_H

#include <stdint.h>

#define TIME_RFC3339_LEN 64

int64_t time_now_ms(void);
/* Monotonic microseconds, for durations. */
int64_t time_mono_us(void);
/* Writes ms as RFC 3339 UTC with milliseconds into out (TIME_RFC3339_LEN bytes). */
void time_format_rfc3339(int64_t ms, char *out);
/*
 * Parses an RFC 3339 time ("2026-11-26T12:00:00Z", optional fraction,
 * "Z" or a numeric offset) into ms. Returns 0 or ERR_INVALID.
 */
int time_parse_rfc3339(const char *s, int64_t *ret_ms);

#endif
