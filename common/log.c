/* log.c - leveled, line-atomic logging to stderr. */
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/timeutil.h"
#include "common/utf8.h"
#include "common/banned.h"

static enum log_level min_level = LOG_LEVEL_INFO;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

void log_set_level(enum log_level level)
{
    min_level = level;
}

/* Length of the valid UTF-8 sequence at p (n bytes left, p[0] >= 0x80)
 * that is not a C1 control (U+0080..U+009F, 0xc2 0x80..0x9f), or 0. */
static size_t printable_utf8(const unsigned char *p, size_t n)
{
    size_t len = utf8_len(p, n);

    return len == 2 && p[0] == 0xc2 && p[1] < 0xa0 ? 0 : len;
}

size_t log_escape(const char *in, size_t len, char *out, size_t size)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)in;
    size_t o = 0;
    size_t i = 0;

    while (i < len && p[i] != '\0') {
        size_t n = p[i] >= 0x80 ? printable_utf8(p + i, len - i) : 1;

        if (n > 1 || (n == 1 && p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\')) {
            if (o + n >= size)
                break;
            memcpy(out + o, p + i, n);
            o += n;
            i += n;
            continue;
        }
        if (o + 4 >= size)
            break;
        if (p[i] == '\\') {
            out[o++] = '\\';
            out[o++] = '\\';
        } else {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[p[i] >> 4];
            out[o++] = hex[p[i] & 0xf];
        }
        i++;
    }
    if (size > 0)
        out[o] = '\0';
    return o;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    char msg[2048];
    char line[4096];
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
    n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    /* What a client sent (a path, a name) may reach the message: control
     * characters are escaped, so a line is always exactly one event. */
    len += log_escape(msg, (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1, line + len,
                      sizeof(line) - len - 1);
    line[len++] = '\n';
    /* A short write to stderr has nowhere to be reported. */
    if (write(STDERR_FILENO, line, len) < 0)
        return;
}
