/* json.c - cJSON helpers: bounded parsing and range-checked integers. */
#include "common/json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/timeutil.h"
#include "common/utf8.h"
#include "common/xalloc.h"
#include "common/banned.h"

bool json_text_check(const char *data, size_t len, char *field, size_t field_size)
{
    const unsigned char *p = (const unsigned char *)data;
    bool in_string = false;
    int depth = 0;
    size_t string_start = 0;
    size_t i = 0;

    if (field_size > 0)
        field[0] = '\0';
    while (i < len) {
        size_t n = utf8_len(p + i, len - i);

        if (n == 0 || p[i] == '\0')
            return false;
        if (in_string && p[i] == '\\') {
            /* cJSON would cut a string at an escaped NUL: refuse it. */
            if (i + 5 < len && p[i + 1] == 'u' && p[i + 2] == '0' && p[i + 3] == '0' &&
                p[i + 4] == '0' && p[i + 5] == '0')
                return false;
            i += 2;
            continue;
        }
        if (p[i] == '"') {
            in_string = !in_string;
            if (in_string) {
                string_start = i + 1;
            } else if (depth == 1 && field_size > 0) {
                /* Remember the latest string at the top level: when the
                 * fault is found later, it is the member's key. */
                size_t k = i - string_start;
                size_t j = i + 1;

                while (j < len && (p[j] == ' ' || p[j] == '\t' || p[j] == '\n' || p[j] == '\r'))
                    j++;
                if (j < len && p[j] == ':' && k < field_size) {
                    memcpy(field, data + string_start, k);
                    field[k] = '\0';
                }
            }
        } else if (!in_string && (p[i] == '{' || p[i] == '[')) {
            depth++;
        } else if (!in_string && (p[i] == '}' || p[i] == ']')) {
            depth--;
        }
        i += n;
    }
    return true;
}

bool json_text_ok(const char *data, size_t len)
{
    return json_text_check(data, len, NULL, 0);
}

/* True when every number in item is finite: cJSON reads a number past
 * DBL_MAX ("1e999") as infinity, which JSON cannot print back (it becomes
 * null). Recursion is bounded by cJSON's nesting limit. */
static bool all_finite(const cJSON *item)
{
    const cJSON *c;

    if (cJSON_IsNumber(item))
        return isfinite(item->valuedouble);
    for (c = item->child; c; c = c->next) {
        if (!all_finite(c))
            return false;
    }
    return true;
}

cJSON *json_parse(const char *data, size_t len)
{
    const char *end = NULL;
    cJSON *root;

    if (!json_text_ok(data, len))
        return NULL;

    /* cJSON wants to see the terminating NUL inside the length to accept
     * the end of input; the caller guarantees it is there. */
    root = cJSON_ParseWithLengthOpts(data, len + 1, &end, 1);
    if (root == NULL)
        return NULL;
    if (end != data + len || !all_finite(root)) {
        /* An embedded NUL ended parsing early (the rest is garbage), or a
         * number is out of range. */
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

struct key_ref {
    const char *key;
    size_t pos;
};

static int key_ref_cmp(const void *a, const void *b)
{
    const struct key_ref *x = a;
    const struct key_ref *y = b;
    int c = strcmp(x->key, y->key);

    if (c != 0)
        return c;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* Sorts the keys with their positions (O(n log n); pairwise comparison
 * held an HTTP thread 20 s on a 1 MB body of 87,000 keys): in each run of
 * equal keys the first has the lowest position, and the answer is the run
 * that starts earliest in the object. */
const char *json_duplicate_key(const cJSON *object)
{
    const cJSON *c;
    struct key_ref *refs;
    const char *found = NULL;
    size_t found_pos = SIZE_MAX;
    size_t n = 0;
    size_t i;

    if (object == NULL)
        return NULL;
    for (c = object->child; c; c = c->next)
        n++;
    if (n < 2)
        return NULL;
    refs = xcalloc(n, sizeof(*refs));
    n = 0;
    for (c = object->child; c; c = c->next) {
        if (c->string) {
            refs[n].key = c->string;
            refs[n].pos = n;
            n++;
        }
    }
    qsort(refs, n, sizeof(*refs), key_ref_cmp);
    for (i = 1; i < n; i++) {
        if (strcmp(refs[i - 1].key, refs[i].key) == 0 &&
            (i == 1 || strcmp(refs[i - 2].key, refs[i].key) != 0) && refs[i - 1].pos < found_pos) {
            found = refs[i - 1].key;
            found_pos = refs[i - 1].pos;
        }
    }
    free(refs);
    return found;
}

/* A number as cJSON prints it: integral values below 10^15 without the
 * "%1.15g" and sscanf() round trip (most numbers here are counts and
 * sizes); the others as cJSON does, except that "%1.17g" is used whenever
 * "%1.15g" does not read back as exactly d: cJSON accepts an error of an
 * epsilon (9007199254740992 came back as ...990) and, past DBL_MAX, of
 * infinity (1.7976931348623157e308 came back as null). */
static void print_number(struct buf *b, double d)
{
    char num[32];
    double back;

    if (isnan(d) || isinf(d)) {
        buf_adds(b, "null");
        return;
    }
    if (d > -1e15 && d < 1e15 && d == (double)(long long)d && !(d == 0 && signbit(d))) {
        buf_printf(b, "%lld", (long long)d);
        return;
    }
    snprintf(num, sizeof(num), "%1.15g", d);
    back = strtod(num, NULL);
    if (back != d)
        snprintf(num, sizeof(num), "%1.17g", d);
    buf_adds(b, num);
}

void json_buf_value(struct buf *b, const cJSON *item)
{
    const cJSON *c;

    switch (item->type & 0xff) {
    case cJSON_NULL:
        buf_adds(b, "null");
        return;
    case cJSON_False:
        buf_adds(b, "false");
        return;
    case cJSON_True:
        buf_adds(b, "true");
        return;
    case cJSON_Number:
        print_number(b, item->valuedouble);
        return;
    case cJSON_String:
        json_buf_string(b, item->valuestring ? item->valuestring : "");
        return;
    case cJSON_Raw:
        buf_adds(b, item->valuestring ? item->valuestring : "");
        return;
    case cJSON_Array:
        buf_addc(b, '[');
        for (c = item->child; c; c = c->next) {
            if (c != item->child)
                buf_addc(b, ',');
            json_buf_value(b, c);
        }
        buf_addc(b, ']');
        return;
    case cJSON_Object:
        buf_addc(b, '{');
        for (c = item->child; c; c = c->next) {
            if (c != item->child)
                buf_addc(b, ',');
            json_buf_string(b, c->string ? c->string : "");
            buf_addc(b, ':');
            json_buf_value(b, c);
        }
        buf_addc(b, '}');
        return;
    default:
        /* cJSON_Invalid: cJSON prints nothing and fails. */
        fprintf(stderr, "fatal: printing an invalid JSON item\n");
        abort();
    }
}

char *json_print(const cJSON *item)
{
    struct buf b;
    /* cJSON_PrintUnformatted's output, written into one growing buffer:
     * printing was an eighth of a submission's cost. */
    char *text;

    buf_init(&b);
    json_buf_value(&b, item);
    text = buf_detach(&b, NULL);
    buf_release(&b);
    return text;
}

void json_buf_string(struct buf *b, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    const unsigned char *run = p;

    buf_addc(b, '"');
    for (; *p; p++) {
        char esc = 0;

        switch (*p) {
        case '"':
            esc = '"';
            break;
        case '\\':
            esc = '\\';
            break;
        case '\b':
            esc = 'b';
            break;
        case '\f':
            esc = 'f';
            break;
        case '\n':
            esc = 'n';
            break;
        case '\r':
            esc = 'r';
            break;
        case '\t':
            esc = 't';
            break;
        default:
            if (*p >= 0x20)
                continue;
        }
        buf_add(b, run, (size_t)(p - run));
        if (esc) {
            buf_addc(b, '\\');
            buf_addc(b, esc);
        } else {
            buf_printf(b, "\\u%04x", *p);
        }
        run = p + 1;
    }
    buf_add(b, run, (size_t)(p - run));
    buf_addc(b, '"');
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
