/*
 * fuzz_json.c - common/json.c against cJSON. The input is parsed by
 * json_parse (which adds UTF-8, NUL and trailing-garbage checks to cJSON's
 * parser); what it accepts is printed by json_print, whose text must read
 * back as the very same tree (numbers equal to the bit, keys in order) and
 * print the same again, and must be what cJSON_PrintUnformatted writes,
 * but where cJSON's own text does not read back the same (json_print is
 * right where cJSON is not). json_text_check, json_int and
 * json_duplicate_key run on the way.
 */
#include "tests/fuzz/fuzz.h"

#include <stdbool.h>

#include "common/json.h"

/* a and b are the same tree, in order; numbers compared exactly. */
static bool same(const cJSON *a, const cJSON *b)
{
    if ((a->type & 0xff) != (b->type & 0xff))
        return false;
    if ((a->string == NULL) != (b->string == NULL) ||
        (a->string && strcmp(a->string, b->string) != 0))
        return false;
    if (cJSON_IsNumber(a))
        return a->valuedouble == b->valuedouble ||
               (a->valuedouble != a->valuedouble && b->valuedouble != b->valuedouble);
    if (cJSON_IsString(a))
        return strcmp(a->valuestring, b->valuestring) == 0;
    for (a = a->child, b = b->child; a && b; a = a->next, b = b->next) {
        if (!same(a, b))
            return false;
    }
    return a == NULL && b == NULL;
}

/* Checks json_int and json_duplicate_key on every item. */
static void visit(const cJSON *item)
{
    const cJSON *c;
    int64_t v;

    if (json_int(item, INT64_MIN, INT64_MAX, &v))
        FUZZ_ASSERT((double)v == item->valuedouble, "json_int changed %.17g", item->valuedouble);
    if (cJSON_IsObject(item)) {
        const char *dup = json_duplicate_key(item);

        if (dup)
            FUZZ_ASSERT(json_get(item, dup) != NULL, "duplicate '%s' not found", dup);
    }
    for (c = item->child; c; c = c->next)
        visit(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_text(data, size);
    char field[64];
    bool ok = json_text_check(text, size, field, sizeof(field));
    cJSON *root = json_parse(text, size);

    FUZZ_ASSERT(ok == json_text_ok(text, size), "json_text_check and json_text_ok disagree");
    FUZZ_ASSERT(strlen(field) < sizeof(field), "field not terminated");
    if (root) {
        char *ours = json_print(root);
        char *theirs = cJSON_PrintUnformatted(root);
        cJSON *again;
        char *twice;

        FUZZ_ASSERT(ok, "json_parse accepted text json_text_ok refuses");
        visit(root);
        FUZZ_ASSERT(theirs != NULL, "cJSON cannot print what it parsed");
        again = json_parse(ours, strlen(ours));
        FUZZ_ASSERT(again != NULL, "json_print wrote text json_parse refuses: %s", ours);
        FUZZ_ASSERT(same(root, again), "json_print's text reads back different: %s", ours);
        if (strcmp(ours, theirs) != 0) {
            cJSON *cjsons = cJSON_Parse(theirs);

            FUZZ_ASSERT(cjsons == NULL || !same(root, cjsons),
                        "json_print differs from cJSON, which is right:\n%s\n%s", ours, theirs);
            cJSON_Delete(cjsons);
        }
        twice = json_print(again);
        FUZZ_ASSERT(strcmp(ours, twice) == 0, "printing is not stable:\n%s\n%s", ours, twice);
        free(twice);
        cJSON_Delete(again);
        free(theirs);
        free(ours);
        cJSON_Delete(root);
    }
    free(text);
    return 0;
}
