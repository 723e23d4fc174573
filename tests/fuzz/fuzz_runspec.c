/*
 * fuzz_runspec.c - a POST /api/v1/runs body through what api_runs_create
 * does with it before the store: parse_object (UTF-8 and NUL checks, JSON,
 * duplicate keys), runspec_validate and, for a valid spec, runspec_tasks.
 * Properties: a refusal is a 400 or names a message; a valid spec expands
 * to 1..RUNSPEC_MAX_TASKS tasks with distinct names, and its stored text
 * (json_print) parses again.
 */
#include "tests/fuzz/fuzz.h"

#include "api/internal.h"
#include "api/runspec.h"
#include "common/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_text(data, size);
    struct api_request req;
    struct api_response resp;
    struct runspec_error err;
    cJSON *in = NULL;
    struct run_spec spec;

    memset(&req, 0, sizeof(req));
    req.body = text;
    req.body_len = size;
    api_response_init(&resp);
    if (parse_object(&req, &resp, &in)) {
        memset(&err, 0, sizeof(err));
        if (runspec_validate(in, &spec, &err) == 0) {
            struct store_new_task *tasks = NULL;
            char *names = NULL;
            char *stored;
            int count = 0;
            int i;
            int j;

            FUZZ_ASSERT(runspec_tasks(&spec, &tasks, &names, &count) == 0, "runspec_tasks failed");
            FUZZ_ASSERT(count >= 1 && count <= RUNSPEC_MAX_TASKS, "%d tasks", count);
            for (i = 0; i < count; i++) {
                FUZZ_ASSERT(tasks[i].name[0] && tasks[i].type[0], "task %d unnamed", i);
                /* Names are distinct (checked for small runs only: the
                 * check is quadratic). */
                for (j = 0; j < i && count <= 1024; j++)
                    FUZZ_ASSERT(strcmp(tasks[i].name, tasks[j].name) != 0, "task '%s' twice",
                                tasks[i].name);
            }
            free(tasks);
            free(names);
            FUZZ_ASSERT(json_duplicate_key(spec.json) == NULL, "the spec has a key twice");
            FUZZ_ASSERT(json_get_string(spec.json, "experiment") != NULL, "no experiment");
            stored = json_print(spec.json);
            {
                /* What the scheduler reads back is what was validated. */
                struct run_spec back;

                FUZZ_ASSERT(run_spec_parse(stored, &back) == 0,
                            "the stored spec does not read back: %s", stored);
                FUZZ_ASSERT(memcmp(&back.shape, &spec.shape, sizeof(spec.shape)) == 0 &&
                                back.features == spec.features && back.argc == spec.argc &&
                                back.n_env == spec.n_env && back.n_selector == spec.n_selector &&
                                back.priority == spec.priority,
                            "the stored spec reads back otherwise: %s", stored);
                for (i = 0; i < spec.argc; i++)
                    FUZZ_ASSERT(strcmp(back.argv[i], spec.argv[i]) == 0, "argv[%d] differs", i);
                run_spec_release(&back);
            }
            run_spec_release(&spec);
            free(stored);
        } else {
            FUZZ_ASSERT(err.message[0] != '\0', "a refusal without a message");
        }
        cJSON_Delete(in);
    } else {
        FUZZ_ASSERT(resp.status == 400, "status %d", resp.status);
    }
    api_response_release(&resp);
    free(text);
    return 0;
}
