/* log.c - leveled, line-atomic logging to stderr. */
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#include "common/timeutil.h"
#include "common/banned.h"

static enum log_level min_level = LOG_LEVEL_INFO;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

void log_set_level(enum log_level level)
{
    min_level = level;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    char line[2048];
    char when[TIME_RFC3339_LEN];
    va_list ap;
    int n;
    size_t len;

    if (level < min_level)
        return;
    time_format_rfc3339(time_now_ms(), when);
    n = snprintf(line, sizeof(line), "%s %s ", when, level_names[level]);
    if (n < 0)
        return;
    len = (size_t)n;
    va_start(ap, fmt);
    n = vsnprintf(line + len, sizeof(line) - len - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    len += (size_t)n;
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    /* A short write to stderr has nowhere to be reported. */
    if (write(STDERR_FILENO, line, len) < 0)
        return;
}
