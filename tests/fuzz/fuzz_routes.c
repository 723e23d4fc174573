/*
 * fuzz_routes.c - the route table's matcher. The input is "METHOD PATH"
 * (no space: a GET of the whole input). Properties of a match: the method
 * is the route's; every parameter is non-empty, only a "{x*}" one holds a
 * '/', and putting the parameters back into the pattern gives the path.
 */
#include "tests/fuzz/fuzz.h"

#include "common/buf.h"
#include "server/routes.h"

/* The pattern with each "{x}" replaced by the next parameter. */
static void fill(struct buf *out, const char *pattern, char *params[API_MAX_PARAMS], int n)
{
    const char *p = pattern;
    int i = 0;

    while (*p) {
        if (*p == '{') {
            const char *close = strchr(p, '}');
            bool rest = close[-1] == '*';

            FUZZ_ASSERT(i < n, "pattern '%s' has more parameters than %d", pattern, n);
            FUZZ_ASSERT(params[i][0] != '\0', "empty parameter %d", i);
            FUZZ_ASSERT(rest || strchr(params[i], '/') == NULL, "'/' in parameter '%s'", params[i]);
            buf_adds(out, params[i++]);
            p = close + 1;
        } else {
            buf_addc(out, *p++);
        }
    }
    FUZZ_ASSERT(i == n, "%d parameters for a pattern of %d", n, i);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_text(data, size);
    char *space = strchr(text, ' ');
    const char *method = "GET";
    const char *path = text;
    char *params[API_MAX_PARAMS];
    const struct route *r;
    int n = -1;
    int i;

    if (space) {
        *space = '\0';
        method = text;
        path = space + 1;
    }
    r = routes_match(method, path, params, &n);
    if (r) {
        struct buf back;

        FUZZ_ASSERT(strcmp(r->method, method) == 0, "%s matched a %s route", method, r->method);
        FUZZ_ASSERT(n >= 0 && n <= API_MAX_PARAMS, "%d parameters", n);
        buf_init(&back);
        fill(&back, r->pattern, params, n);
        FUZZ_ASSERT(strcmp(back.data, path) == 0, "'%s' matched '%s' as '%s'", path, r->pattern,
                    back.data);
        buf_release(&back);
        for (i = 0; i < n; i++)
            free(params[i]);
    } else {
        FUZZ_ASSERT(n == -1, "ret_n_params written without a match");
    }
    free(text);
    return 0;
}
