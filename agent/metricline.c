/* metricline.c - "##metric {...}" lines into metric points. */
#include "agent/metricline.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/json.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "common/banned.h"

int metricline_parse(const char *json, size_t len, int64_t now_ms, cJSON *steps, struct buf *out)
{
    char *copy = xstrndup(json, len); /* json_parse wants a NUL after the text */
    cJSON *obj = json_parse(copy, len);
    const cJSON *item;
    const cJSON *step_item;
    int64_t step = -1;
    int n = 0;
    char when[TIME_RFC3339_LEN];

    free(copy);
    if (obj == NULL || !cJSON_IsObject(obj)) {
        cJSON_Delete(obj);
        return 0;
    }
    step_item = json_get(obj, "step");
    if (step_item && !json_int(step_item, 0, INT64_C(1) << 53, &step)) {
        cJSON_Delete(obj);
        return 0;
    }
    cJSON_ArrayForEach(item, obj) {
        if (strcmp(item->string, "step") == 0)
            continue;
        if (!cJSON_IsNumber(item) || !isfinite(item->valuedouble) || item->string[0] == '\0' ||
            strlen(item->string) > 128) {
            cJSON_Delete(obj);
            return 0;
        }
        n++;
    }
    if (n == 0) {
        cJSON_Delete(obj);
        return 0;
    }
    time_format_rfc3339(now_ms, when);
    cJSON_ArrayForEach(item, obj) {
        cJSON *last;
        cJSON *point;
        char *text;
        int64_t s = step;

        if (strcmp(item->string, "step") == 0)
            continue;
        last = json_get(steps, item->string);
        if (s < 0)
            s = last ? (int64_t)last->valuedouble + 1 : 0;
        if (last)
            cJSON_SetNumberValue(last, (double)s);
        else
            cJSON_AddNumberToObject(steps, item->string, (double)s);
        point = cJSON_CreateObject();
        cJSON_AddStringToObject(point, "name", item->string);
        cJSON_AddNumberToObject(point, "value", item->valuedouble);
        cJSON_AddNumberToObject(point, "step", (double)s);
        cJSON_AddStringToObject(point, "time", when);
        text = json_print(point);
        buf_adds(out, text);
        buf_addc(out, '\n');
        free(text);
        cJSON_Delete(point);
    }
    cJSON_Delete(obj);
    return n;
}
