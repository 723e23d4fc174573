/*
 * spec.c - reading a canonical run spec into struct run_spec (spec.h).
 *
 * The canonical form has every member, in api/runspec.c's order, with
 * defaults filled; this reads it without validating it again, but checks
 * each member's type, so a row written by hand is refused, not trusted.
 */
#include "common/spec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/json.h"
#include "common/xalloc.h"
#include "common/banned.h"

/* A string member, or NULL when it is null and may be. */
static bool get_string(const cJSON *json, const char *key, bool nullable, const char **out)
{
    const cJSON *v = json_get(json, key);

    if (cJSON_IsString(v)) {
        *out = v->valuestring;
        return true;
    }
    *out = NULL;
    return nullable && cJSON_IsNull(v);
}

/* An integer member in [min, max]; null reads as 0 when nullable. */
static bool get_int(const cJSON *json, const char *key, int64_t min, int64_t max, bool nullable,
                    int64_t *out)
{
    const cJSON *v = json_get(json, key);

    *out = 0;
    if (nullable && cJSON_IsNull(v))
        return true;
    return json_int(v, min, max, out);
}

static bool get_bool(const cJSON *json, const char *key, bool *out)
{
    const cJSON *v = json_get(json, key);

    *out = cJSON_IsTrue(v);
    return cJSON_IsBool(v);
}

/* An object of strings as pairs that borrow its strings. */
static bool get_pairs(const cJSON *json, const char *key, struct spec_pair **out, int *n)
{
    const cJSON *obj = json_get(json, key);
    const cJSON *e;
    int i = 0;

    *out = NULL;
    *n = 0;
    if (!cJSON_IsObject(obj))
        return false;
    *n = cJSON_GetArraySize(obj);
    if (*n == 0)
        return true;
    *out = xcalloc((size_t)*n, sizeof(**out));
    cJSON_ArrayForEach(e, obj) {
        if (!cJSON_IsString(e))
            return false;
        (*out)[i].key = e->string;
        (*out)[i].value = e->valuestring;
        i++;
    }
    return true;
}

static bool all_strings(const cJSON *arr)
{
    const cJSON *e;

    if (!cJSON_IsArray(arr))
        return false;
    cJSON_ArrayForEach(e, arr) {
        if (!cJSON_IsString(e))
            return false;
    }
    return true;
}

static void argv_add(struct run_spec *s, int *cap, const char *arg)
{
    if (s->argc == *cap) {
        *cap = *cap ? 2 * *cap : 8;
        s->argv = xrealloc(s->argv, (size_t)*cap * sizeof(*s->argv));
    }
    s->argv[s->argc++] = xstrdup(arg);
}

/* command, or entry_script with script_params and arguments. */
static bool read_argv(const cJSON *json, struct run_spec *s)
{
    const cJSON *command = json_get(json, "command");
    const cJSON *params = json_get(json, "script_params");
    const cJSON *arguments = json_get(json, "arguments");
    const char *entry;
    const cJSON *e;
    int cap = 0;

    if (!cJSON_IsObject(params) || !all_strings(arguments) ||
        !get_string(json, "entry_script", true, &entry))
        return false;
    if (cJSON_IsArray(command)) {
        if (!all_strings(command) || cJSON_GetArraySize(command) == 0 || entry != NULL)
            return false;
        cJSON_ArrayForEach(e, command) {
            argv_add(s, &cap, e->valuestring);
        }
        return true;
    }
    if (!cJSON_IsNull(command) || entry == NULL)
        return false;
    s->use_python = true;
    argv_add(s, &cap, entry);
    /* SPEC §3.2: each key then its value; true or null = the flag alone;
     * false = omitted. Numbers print as JSON does (0.01 -> "0.01"). */
    cJSON_ArrayForEach(e, params) {
        if (cJSON_IsFalse(e))
            continue;
        argv_add(s, &cap, e->string);
        if (cJSON_IsString(e)) {
            argv_add(s, &cap, e->valuestring);
        } else if (cJSON_IsNumber(e)) {
            char *num = json_print(e);

            argv_add(s, &cap, num);
            free(num);
        } else if (!cJSON_IsTrue(e) && !cJSON_IsNull(e)) {
            return false;
        }
    }
    cJSON_ArrayForEach(e, arguments) {
        argv_add(s, &cap, e->valuestring);
    }
    return true;
}

static bool read_shape(const cJSON *json, struct run_shape *r)
{
    const char *backend;
    const cJSON *cpus = json_get(json, "cpus_per_process");
    int64_t nodes, ppn, workers, ps, gpus, mem;
    int b;

    if (!get_string(json, "distributed_backend", true, &backend) ||
        (b = backend_parse(backend)) < 0)
        return false;
    if (!get_int(json, "node_count", 1, 10000, false, &nodes) ||
        !get_int(json, "process_count_per_node", 1, 1024, false, &ppn) ||
        !get_int(json, "worker_count", 1, 10000, b != BACKEND_PS, &workers) ||
        !get_int(json, "parameter_server_count", 0, 10000, b != BACKEND_PS, &ps) ||
        !get_int(json, "gpus_per_process", 0, 64, false, &gpus) ||
        !get_int(json, "memory_mb_per_process", 0, 16777216, false, &mem) ||
        !get_bool(json, "chief", &r->chief) || !get_bool(json, "evaluator", &r->evaluator) ||
        !cJSON_IsNumber(cpus) || !(cpus->valuedouble > 0) || cpus->valuedouble > 1024)
        return false;
    r->backend = (enum backend)b;
    r->node_count = (int)nodes;
    r->process_count_per_node = (int)ppn;
    r->worker_count = (int)workers;
    r->parameter_server_count = (int)ps;
    r->cpus_per_process = cpus->valuedouble;
    r->memory_mb_per_process = mem;
    r->gpus_per_process = (int)gpus;
    return true;
}

static bool read_spec(const cJSON *json, struct run_spec *s)
{
    const cJSON *conda = json_get(json, "conda_packages");

    if (!get_string(json, "experiment", false, &s->experiment) ||
        !get_string(json, "source", true, &s->source) ||
        !get_string(json, "compute_target", false, &s->compute_target) ||
        !get_string(json, "image", true, &s->image) || !read_shape(json, &s->shape) ||
        !get_bool(json, "use_gpu", &s->use_gpu) || !read_argv(json, s) ||
        !get_pairs(json, "environment_variables", &s->env, &s->n_env) ||
        !get_pairs(json, "node_selector", &s->selector, &s->n_selector) ||
        !get_int(json, "max_run_duration_seconds", 0, 31536000, false, &s->max_run_duration_s) ||
        !get_int(json, "max_retries", 0, 100, false, &s->max_retries) ||
        !get_int(json, "priority", -1000000, 1000000, false, &s->priority) ||
        !all_strings(json_get(json, "pip_packages")) || !all_strings(conda))
        return false;
    s->pip_packages = json_get(json, "pip_packages");
    s->n_conda_packages = cJSON_GetArraySize(conda);
    s->features = backend_rules(s->shape.backend)->features;
    if (s->n_conda_packages > 0)
        s->features |= FEATURE_CONDA;
    /* In an image, mpirun and orted are the image's: the host's (the mpi
     * feature) are not needed. */
    if (s->image != NULL)
        s->features = (s->features & ~(unsigned)FEATURE_MPI) | FEATURE_DOCKER;
    return true;
}

int run_spec_read(cJSON *json, struct run_spec *out)
{
    memset(out, 0, sizeof(*out));
    out->json = json;
    if (!cJSON_IsObject(json) || !read_spec(json, out)) {
        run_spec_release(out);
        return ERR_INVALID;
    }
    return 0;
}

int run_spec_parse(const char *text, struct run_spec *out)
{
    cJSON *json = text ? json_parse(text, strlen(text)) : NULL;

    if (json == NULL) {
        memset(out, 0, sizeof(*out));
        return ERR_INVALID;
    }
    return run_spec_read(json, out);
}

void run_spec_release(struct run_spec *spec)
{
    int i;

    for (i = 0; i < spec->argc; i++)
        free(spec->argv[i]);
    free(spec->argv);
    free(spec->env);
    free(spec->selector);
    cJSON_Delete(spec->json);
    memset(spec, 0, sizeof(*spec));
}

cJSON *run_spec_take_json(struct run_spec *spec)
{
    cJSON *json = spec->json;

    spec->json = NULL;
    run_spec_release(spec);
    return json;
}

const char *run_spec_env(const struct run_spec *spec, const char *name)
{
    int i;

    for (i = 0; i < spec->n_env; i++) {
        if (strcmp(spec->env[i].key, name) == 0)
            return spec->env[i].value;
    }
    return NULL;
}
