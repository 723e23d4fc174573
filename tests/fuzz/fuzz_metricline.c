/*
 * fuzz_metricline.c - the agent's "##metric {...}" parser. The input is the
 * text after "##metric "; it is parsed twice against one steps object, as
 * two lines of a task. Properties: a refusal appends nothing and leaves the
 * steps alone; each point is one JSON line {"name","value","step","time"}
 * with a finite value, a name of 1..128 bytes and an integer step >= 0.
 */
#include "tests/fuzz/fuzz.h"

#include <math.h>

#include "agent/metricline.h"
#include "common/buf.h"
#include "common/json.h"

#define NOW_MS INT64_C(1767225600000) /* 2026-01-01T00:00:00Z */

static int check_points(const char *text)
{
    const char *line = text;
    int n = 0;

    while (*line) {
        const char *nl = strchr(line, '\n');
        cJSON *point;
        const cJSON *value;
        const char *name;
        int64_t step;

        char *copy;

        FUZZ_ASSERT(nl != NULL, "unterminated line: %s", line);
        copy = fuzz_text((const uint8_t *)line, (size_t)(nl - line));
        point = json_parse(copy, (size_t)(nl - line));
        FUZZ_ASSERT(point != NULL && cJSON_GetArraySize(point) == 4, "bad point: %s", copy);
        free(copy);
        name = json_get_string(point, "name");
        value = json_get(point, "value");
        FUZZ_ASSERT(name && name[0] && strlen(name) <= 128, "bad name");
        FUZZ_ASSERT(cJSON_IsNumber(value) && isfinite(value->valuedouble), "bad value");
        FUZZ_ASSERT(json_int(json_get(point, "step"), 0, INT64_C(1) << 53, &step), "bad step");
        FUZZ_ASSERT(strcmp(json_get_string(point, "time"), "2026-01-01T00:00:00.000Z") == 0,
                    "bad time %s", json_get_string(point, "time"));
        cJSON_Delete(point);
        n++;
        line = nl + 1;
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cJSON *steps = cJSON_CreateObject();
    int round;

    for (round = 0; round < 2; round++) {
        char *before = json_print(steps);
        struct buf out;
        int n;

        buf_init(&out);
        /* Not NUL-terminated: the agent hands over part of a line. */
        n = metricline_parse((const char *)data, size, NOW_MS, steps, &out);
        FUZZ_ASSERT(n >= 0, "%d points", n);
        if (n == 0) {
            char *after = json_print(steps);

            FUZZ_ASSERT(out.len == 0, "a refused line wrote %zu bytes", out.len);
            FUZZ_ASSERT(strcmp(before, after) == 0, "a refused line changed the steps");
            free(after);
        } else {
            char *copy = fuzz_text((const uint8_t *)data, size);
            cJSON *in = json_parse(copy, size);

            FUZZ_ASSERT(check_points(out.data) == n, "%d points announced", n);
            FUZZ_ASSERT(in != NULL, "accepted text that is not JSON");
            cJSON_Delete(in);
            free(copy);
        }
        buf_release(&out);
        free(before);
    }
    cJSON_Delete(steps);
    return 0;
}
