/* parse.c - strict decimal integers. */
#include "common/parse.h"

#include <errno.h>
#include <stdlib.h>

#include "common/banned.h"

bool parse_int64(const char *s, int64_t min, int64_t max, int64_t *ret)
{
    char *end;
    long long v;

    /* strtoll() would skip any leading white space ("\r5", "\v5") and a
     * sign: only a '-' or a digit may start the number. */
    if (s == NULL || (*s != '-' && (*s < '0' || *s > '9')))
        return false;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return false;
    *ret = v;
    return true;
}

bool parse_long(const char *s, long min, long max, long *ret)
{
    int64_t v;

    if (!parse_int64(s, min, max, &v))
        return false;
    *ret = (long)v;
    return true;
}
