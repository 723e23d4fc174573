/* json.c - cJSON helpers: bounded parsing and range-checked integers. */
#include "common/json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/timeutil.h"
#include "common/banned.h"

cJSON *json_parse(const char *data, size_t len)
{
    const char *end = NULL;
    cJSON *root;

    /* cJSON wants to see the terminating NUL inside the length to accept
     * the end of input; the caller guarantees it is there. */
    root = cJSON_ParseWithLengthOpts(data, len + 1, &end, 1);
    if (root == NULL)
        return NULL;
    if (end != data + len) {
        /* An embedded NUL ended parsing early: the rest is garbage. */
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

bool json_int(const cJSON *item, int64_t min, int64_t max, int64_t *ret)
{
    double d;

    if (!cJSON_IsNumber(item))
        return false;
    d = item->valuedouble;
    if (!isfinite(d) || d != floor(d) || d < (double)min || d > (double)max)
        return false;
    *ret = (int64_t)d;
    return true;
}

char *json_print(const cJSON *item)
{
    char *s = cJSON_PrintUnformatted(item);

    if (s == NULL) {
        fprintf(stderr, "fatal: out of memory printing JSON\n");
        abort();
    }
    return s;
}

cJSON *json_get(const cJSON *object, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(object, key);
}

const char *json_get_string(const cJSON *object, const char *key)
{
    cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);

    return cJSON_IsString(item) ? item->valuestring : NULL;
}

void json_add_string_or_null(cJSON *object, const char *key, const char *value)
{
    if (value)
        cJSON_AddStringToObject(object, key, value);
    else
        cJSON_AddNullToObject(object, key);
}

void json_add_time(cJSON *object, const char *key, int64_t ms)
{
    char when[TIME_RFC3339_LEN];

    if (ms == 0) {
        cJSON_AddNullToObject(object, key);
        return;
    }
    time_format_rfc3339(ms, when);
    cJSON_AddStringToObject(object, key, when);
}

cJSON *json_parse_trusted(const char *text)
{
    cJSON *root = cJSON_Parse(text);

    if (root == NULL) {
        fprintf(stderr, "fatal: stored JSON does not parse: %.80s\n", text);
        abort();
    }
    return root;
}
