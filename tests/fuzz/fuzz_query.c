/*
 * fuzz_query.c - query strings. The input is a query string; it is split
 * and unescaped as libmicrohttpd does for the server (at '&' and the first
 * '=', then MHD_http_unescape), and the values go through what handlers
 * do with them: parse_paging and parse_page (limit, cursor), parse_int64
 * and parse_long for numeric parameters, valid_name for names.
 * Properties: a number is accepted only when it is exactly -?[0-9]+ and
 * in range; a refusal is a 400 with a message; an accepted name is 1..max
 * of [A-Za-z0-9._-].
 */
#include "tests/fuzz/fuzz.h"

#include <microhttpd.h>

#include "api/internal.h"
#include "common/parse.h"

#define MAX_ARGS 32

struct query {
    char *keys[MAX_ARGS];
    char *values[MAX_ARGS];
    int n;
};

/* The first value of key, as MHD_lookup_connection_value gives it. */
static const char *lookup(void *conn, const char *key)
{
    struct query *q = conn;
    int i;

    for (i = 0; i < q->n; i++) {
        if (strcmp(q->keys[i], key) == 0)
            return q->values[i];
    }
    return NULL;
}

static bool plain_integer(const char *s)
{
    size_t i = s[0] == '-' ? 1 : 0;

    if (s[i] == '\0')
        return false;
    for (; s[i]; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
    }
    return true;
}

static void check_number(const char *s)
{
    static const int64_t ranges[][2] = {
        { 0, INT64_MAX }, { 1, 1000 }, { INT64_MIN, INT64_MAX }, { -5, 5 }, { 1, 1000000 },
    };
    size_t i;

    for (i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
        int64_t v = 12345;
        long l = 12345;

        if (parse_int64(s, ranges[i][0], ranges[i][1], &v)) {
            FUZZ_ASSERT(plain_integer(s), "'%s' accepted as a number", s);
            FUZZ_ASSERT(v >= ranges[i][0] && v <= ranges[i][1], "%lld out of range", (long long)v);
        } else {
            FUZZ_ASSERT(v == 12345, "ret_ written on failure");
        }
        if (parse_long(s, (long)ranges[i][0], (long)ranges[i][1], &l))
            FUZZ_ASSERT(plain_integer(s), "'%s' accepted as a long", s);
    }
}

static void check_name(const char *s)
{
    size_t i;

    if (!valid_name(s, 128))
        return;
    FUZZ_ASSERT(strlen(s) >= 1 && strlen(s) <= 128, "name of %zu bytes", strlen(s));
    for (i = 0; s[i]; i++)
        FUZZ_ASSERT(strchr("._-", s[i]) || (s[i] >= 'a' && s[i] <= 'z') ||
                        (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9'),
                    "name '%s' accepted", s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_text(data, size);
    struct query q;
    struct api_request req;
    struct api_response resp;
    struct store_page page;
    char *p = text;
    int limit;
    int64_t cursor;
    int i;

    /* MHD stops at the first NUL of the URL. */
    memset(&q, 0, sizeof(q));
    while (p && *p && q.n < MAX_ARGS) {
        char *amp = strchr(p, '&');
        char *eq;

        if (amp)
            *amp = '\0';
        eq = strchr(p, '=');
        if (eq)
            *eq = '\0';
        MHD_http_unescape(p);
        if (eq)
            MHD_http_unescape(eq + 1);
        q.keys[q.n] = p;
        q.values[q.n] = eq ? eq + 1 : p + strlen(p); /* "key" alone: an empty value */
        q.n++;
        p = amp ? amp + 1 : NULL;
    }
    memset(&req, 0, sizeof(req));
    req.query = lookup;
    req.conn = &q;

    api_response_init(&resp);
    if (parse_paging(&req, &resp, &limit, &cursor))
        FUZZ_ASSERT(limit >= 1 && limit <= 1000 && cursor >= 0, "limit %d cursor %lld", limit,
                    (long long)cursor);
    else
        FUZZ_ASSERT(resp.status == 400 && resp.body.len > 0, "status %d", resp.status);
    api_response_release(&resp);

    api_response_init(&resp);
    if (parse_page(&req, &resp, &page))
        FUZZ_ASSERT(page.limit >= 1 && page.limit <= 1000 &&
                        (page.after == NULL || strlen(page.after) <= 256),
                    "limit %d", page.limit);
    else
        FUZZ_ASSERT(resp.status == 400 && resp.body.len > 0, "status %d", resp.status);
    api_response_release(&resp);

    for (i = 0; i < q.n; i++) {
        check_number(q.values[i]);
        check_name(q.values[i]);
    }
    free(text);
    return 0;
}
