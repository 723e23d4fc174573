/*
 * log.h - one line per event on stderr, with a time and a level.
 *
 *   2026-11-26T12:00:00.123Z info server: listening on http://127.0.0.1:8080
 *
 * Any thread may call; a line is written with one write(2), so lines of
 * different threads never interleave.
 */
#ifndef TRAINYARD_LOG_H
#define TRAINYARD_LOG_H

#include <stddef.h>

enum log_level {
    LOG_LEVEL_DEBUG,
    LOG_LEVEL_INFO,
    LOG_LEVEL_WARN,
    LOG_LEVEL_ERROR,
};

/*
 * Copies len bytes of in (up to a NUL) into out (size bytes, always
 * terminated), escaping control characters, DEL, C1 controls and bytes
 * that are not UTF-8 as \xNN and a backslash as \\; returns the length
 * written. log_msg() passes every message through it.
 */
size_t log_escape(const char *in, size_t len, char *out, size_t size);
/* Lines below level are dropped (default LOG_LEVEL_INFO). */
void log_set_level(enum log_level level);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)

#endif
