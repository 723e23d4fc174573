/*
 * parse.h - strict number parsing for options and query strings: the
 * whole string must be a decimal integer within [min, max]. Any thread.
 */
#ifndef TRAINYARD_PARSE_H
#define TRAINYARD_PARSE_H

#include <stdbool.h>
#include <stdint.h>

/* True and *ret set when s is exactly an integer in [min, max]; a leading
 * '+' or white space is refused. */
bool parse_int64(const char *s, int64_t min, int64_t max, int64_t *ret);
bool parse_long(const char *s, long min, long max, long *ret);

#endif
