/*
 * runspec.c - the run spec: what a client may submit and the defaults it
 * gets. Each field is checked in the order of SPEC §3.2 and the first
 * fault is reported with its field name.
 */
#include "api/runspec.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/backend.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/imageref.h"
#include "common/json.h"
#include "common/xalloc.h"
#include "common/banned.h"

static const char *const known_fields[] = {
    "experiment",
    "source",
    "entry_script",
    "script_params",
    "arguments",
    "command",
    "compute_target",
    "use_gpu",
    "gpus_per_process",
    "cpus_per_process",
    "memory_mb_per_process",
    "distributed_backend",
    "node_count",
    "process_count_per_node",
    "worker_count",
    "parameter_server_count",
    "chief",
    "evaluator",
    "pip_packages",
    "conda_packages",
    "environment_variables",
    "max_run_duration_seconds",
    "max_retries",
    "priority",
    "tags",
    "node_selector",
    "image",
    NULL,
};

static int fail(struct runspec_error *err, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct runspec_error *err, const char *field, const char *fmt, ...)
{
    va_list ap;

    snprintf(err->field, sizeof(err->field), "%s", field ? field : "");
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    return ERR_INVALID;
}

static bool is_name_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '.' || ch == '_' || ch == '-';
}

static bool name_ok(const char *s, size_t max)
{
    size_t n;

    for (n = 0; s[n]; n++) {
        if (!is_name_char(s[n]))
            return false;
    }
    return n >= 1 && n <= max;
}

static bool env_name_ok(const char *s)
{
    size_t n;

    if (!((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
        return false;
    for (n = 1; s[n]; n++) {
        char ch = s[n];

        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '_'))
            return false;
    }
    return n <= 256;
}

static bool tag_key_ok(const char *s)
{
    size_t n;

    for (n = 0; s[n]; n++) {
        if (!is_name_char(s[n]) && s[n] != '/')
            return false;
    }
    return n >= 1 && n <= 63;
}

/* A relative path inside the snapshot: no absolute path, no "..". */
static bool rel_path_ok(const char *s)
{
    const char *p = s;
    size_t n = strlen(s);

    if (n == 0 || n > 1024 || s[0] == '/')
        return false;
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);

        if (len == 2 && p[0] == '.' && p[1] == '.')
            return false;
        if (slash == NULL)
            break;
        p = slash + 1;
    }
    return true;
}

/* ---- typed field readers: each returns 0 or fails naming the field ---- */

static int get_int(const cJSON *in, const char *field, int64_t min, int64_t max, int64_t dflt,
                   int64_t *ret, struct runspec_error *err)
{
    const cJSON *item = json_get(in, field);

    if (item == NULL || cJSON_IsNull(item)) {
        *ret = dflt;
        return 0;
    }
    if (!json_int(item, min, max, ret))
        return fail(err, field, "%s must be an integer from %lld to %lld", field, (long long)min,
                    (long long)max);
    return 0;
}

static int get_bool(const cJSON *in, const char *field, bool *ret, struct runspec_error *err)
{
    const cJSON *item = json_get(in, field);

    if (item == NULL || cJSON_IsNull(item)) {
        *ret = false;
        return 0;
    }
    if (!cJSON_IsBool(item))
        return fail(err, field, "%s must be true or false", field);
    *ret = cJSON_IsTrue(item);
    return 0;
}

static bool present(const cJSON *in, const char *field)
{
    const cJSON *item = json_get(in, field);

    return item != NULL && !cJSON_IsNull(item);
}

/*
 * Whether field is given with a value other than the one validation fills
 * in when it is absent (a returned spec carries those defaults and must be
 * accepted back unchanged, SPEC §9). dflt is an integer, a bool (0/1) or,
 * for an object field, -1 for the empty object.
 */
static bool given(const cJSON *in, const char *field, int64_t dflt)
{
    const cJSON *item = json_get(in, field);

    if (item == NULL || cJSON_IsNull(item))
        return false;
    if (cJSON_IsBool(item))
        return (int64_t)cJSON_IsTrue(item) != dflt;
    if (cJSON_IsNumber(item))
        return item->valuedouble != (double)dflt;
    if (cJSON_IsObject(item) && dflt == -1)
        return item->child != NULL;
    return true;
}

/* An array of 0..max_items strings of 1..max_len characters; no_dash
 * refuses strings that start with '-' (package names, not options). */
static int get_strings(const cJSON *in, const char *field, int max_items, size_t max_len,
                       bool no_dash, bool allow_empty_string, cJSON **ret,
                       struct runspec_error *err)
{
    const cJSON *item = json_get(in, field);
    const cJSON *s;

    if (item == NULL || cJSON_IsNull(item)) {
        *ret = cJSON_CreateArray();
        return 0;
    }
    if (!cJSON_IsArray(item))
        return fail(err, field, "%s must be an array of strings", field);
    if (cJSON_GetArraySize(item) > max_items)
        return fail(err, field, "%s has more than %d items", field, max_items);
    cJSON_ArrayForEach(s, item) {
        size_t len;

        if (!cJSON_IsString(s))
            return fail(err, field, "%s must be an array of strings", field);
        len = strlen(s->valuestring);
        if ((len == 0 && !allow_empty_string) || len > max_len)
            return fail(err, field, "each item of %s must have 1 to %zu characters", field,
                        max_len);
        if (no_dash && (s->valuestring[0] == '-' || strpbrk(s->valuestring, " \t\r\n")))
            return fail(err, field, "'%s' in %s is not a package name", s->valuestring, field);
    }
    *ret = cJSON_Duplicate(item, 1);
    return 0;
}

static int check_params(const cJSON *params, struct runspec_error *err)
{
    const cJSON *p;

    if (!cJSON_IsObject(params))
        return fail(err, "script_params", "script_params must be an object");
    if (cJSON_GetArraySize(params) > 256)
        return fail(err, "script_params", "script_params has more than 256 entries");
    cJSON_ArrayForEach(p, params) {
        if (p->string[0] == '\0' || strlen(p->string) > 256)
            return fail(err, "script_params", "script_params keys must have 1 to 256 characters");
        if (cJSON_IsString(p)) {
            if (strlen(p->valuestring) > 4096)
                return fail(err, "script_params", "script_params['%s'] is over 4096 characters",
                            p->string);
        } else if (!cJSON_IsNumber(p) && !cJSON_IsBool(p) && !cJSON_IsNull(p)) {
            return fail(err, "script_params",
                        "script_params['%s'] must be a string, number, boolean or null", p->string);
        }
    }
    return 0;
}

static int check_env(const cJSON *env, struct runspec_error *err)
{
    const cJSON *e;

    if (!cJSON_IsObject(env))
        return fail(err, "environment_variables", "environment_variables must be an object");
    if (cJSON_GetArraySize(env) > 256)
        return fail(err, "environment_variables", "environment_variables has over 256 entries");
    cJSON_ArrayForEach(e, env) {
        if (!env_name_ok(e->string))
            return fail(err, "environment_variables",
                        "'%s' is not a valid environment variable name", e->string);
        if (strncmp(e->string, "TRAINYARD_", 10) == 0)
            return fail(err, "environment_variables", "'%s' is reserved (TRAINYARD_*)", e->string);
        if (!cJSON_IsString(e))
            return fail(err, "environment_variables",
                        "environment_variables['%s'] must be a string", e->string);
        if (strlen(e->valuestring) > 32768)
            return fail(err, "environment_variables",
                        "environment_variables['%s'] is over 32768 characters", e->string);
    }
    return 0;
}

static int check_tags(const cJSON *tags, struct runspec_error *err)
{
    const cJSON *t;

    if (!cJSON_IsObject(tags))
        return fail(err, "tags", "tags must be an object of strings");
    if (cJSON_GetArraySize(tags) > 64)
        return fail(err, "tags", "tags has more than 64 entries");
    cJSON_ArrayForEach(t, tags) {
        if (!tag_key_ok(t->string))
            return fail(err, "tags", "tag key '%s' must be 1 to 63 of [A-Za-z0-9._/-]", t->string);
        if (!cJSON_IsString(t))
            return fail(err, "tags", "tags['%s'] must be a string", t->string);
        if (strlen(t->valuestring) > 256)
            return fail(err, "tags", "tags['%s'] is over 256 characters", t->string);
    }
    return 0;
}

/* Copies an optional object field (default {}) after check. */
/* Keys as agents' --label keys (api/nodes.c): a selector naming any other
 * key could never match. */
static int check_selector(const cJSON *sel, struct runspec_error *err)
{
    const cJSON *e;

    if (!cJSON_IsObject(sel))
        return fail(err, "node_selector",
                    "node_selector must be an object of label -> value strings");
    if (cJSON_GetArraySize(sel) > RUNSPEC_MAX_SELECTOR)
        return fail(err, "node_selector", "node_selector has more than %d entries",
                    RUNSPEC_MAX_SELECTOR);
    cJSON_ArrayForEach(e, sel) {
        if (!name_ok(e->string, 63))
            return fail(err, "node_selector",
                        "node_selector key '%s' must be 1 to 63 of [A-Za-z0-9._-] (a label key)",
                        e->string);
        if (!cJSON_IsString(e))
            return fail(err, "node_selector", "node_selector['%s'] must be a string", e->string);
        if (strlen(e->valuestring) > 256)
            return fail(err, "node_selector", "node_selector['%s'] is over 256 characters",
                        e->string);
    }
    return 0;
}

static cJSON *object_or_empty(const cJSON *in, const char *field)
{
    const cJSON *item = json_get(in, field);

    return present(in, field) ? cJSON_Duplicate(item, 1) : cJSON_CreateObject();
}

static int validate(const cJSON *in, cJSON *spec, struct runspec_error *err)
{
    const cJSON *item;
    const char *backend = NULL;
    const char *dup;
    int64_t node_count, ppn, workers, ps, gpp, mem, duration, retries, priority;
    double cpus = 1;
    bool use_gpu, chief, evaluator, is_ps;
    enum backend kind;
    cJSON *arr;
    int64_t tasks;
    int rc;

    dup = json_duplicate_key(in);
    if (dup)
        return fail(err, dup, "field '%s' appears twice", dup);
    {
        static const char *const objects[] = { "script_params", "environment_variables", "tags",
                                               "node_selector", NULL };
        const char *const *o;

        for (o = objects; *o; o++) {
            dup = json_duplicate_key(json_get(in, *o));
            if (dup)
                return fail(err, *o, "%s has the key '%s' twice", *o, dup);
        }
    }
    cJSON_ArrayForEach(item, in) {
        const char *const *k;
        bool known = false;

        for (k = known_fields; *k; k++) {
            if (strcmp(*k, item->string) == 0)
                known = true;
        }
        if (!known)
            return fail(err, item->string, "unknown field '%s'", item->string);
    }

    item = json_get(in, "experiment");
    if (item == NULL || cJSON_IsNull(item))
        return fail(err, "experiment", "experiment is required");
    if (!cJSON_IsString(item) || !name_ok(item->valuestring, 128))
        return fail(err, "experiment", "experiment must be 1 to 128 of [A-Za-z0-9._-]");
    cJSON_AddStringToObject(spec, "experiment", item->valuestring);

    item = json_get(in, "source");
    if (present(in, "source")) {
        const char *s = cJSON_IsString(item) ? item->valuestring : "";
        size_t i;

        if (strncmp(s, "sha256:", 7) != 0 || strlen(s) != 7 + 64)
            return fail(err, "source", "source must be a snapshot id 'sha256:<64 hex digits>'");
        for (i = 7; s[i]; i++) {
            if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                return fail(err, "source", "source must be a snapshot id 'sha256:<64 hex digits>'");
        }
        cJSON_AddStringToObject(spec, "source", s);
    } else {
        cJSON_AddNullToObject(spec, "source");
    }

    item = json_get(in, "entry_script");
    if (present(in, "entry_script")) {
        if (!cJSON_IsString(item) || !rel_path_ok(item->valuestring))
            return fail(err, "entry_script",
                        "entry_script must be a relative path inside the source, without '..'");
        if (!present(in, "source"))
            return fail(err, "entry_script", "entry_script needs a source snapshot");
        if (present(in, "command"))
            return fail(err, "command", "give either entry_script or command, not both");
        cJSON_AddStringToObject(spec, "entry_script", item->valuestring);
    } else {
        cJSON_AddNullToObject(spec, "entry_script");
    }

    item = json_get(in, "script_params");
    if (present(in, "script_params")) {
        if ((rc = check_params(item, err)) < 0)
            return rc;
        if (!present(in, "entry_script") && given(in, "script_params", -1))
            return fail(err, "script_params", "script_params go with entry_script");
    }
    cJSON_AddItemToObject(spec, "script_params", object_or_empty(in, "script_params"));

    if ((rc = get_strings(in, "arguments", 1024, 4096, false, true, &arr, err)) < 0)
        return rc;
    cJSON_AddItemToObject(spec, "arguments", arr);

    item = json_get(in, "command");
    if (present(in, "command")) {
        if ((rc = get_strings(in, "command", 1024, 4096, false, true, &arr, err)) < 0)
            return rc;
        if (cJSON_GetArraySize(arr) == 0 || cJSON_GetArrayItem(arr, 0)->valuestring[0] == '\0') {
            cJSON_Delete(arr);
            return fail(err, "command", "command must start with a program name");
        }
        cJSON_AddItemToObject(spec, "command", arr);
    } else {
        if (!present(in, "entry_script"))
            return fail(err, "entry_script", "one of entry_script or command is required");
        cJSON_AddNullToObject(spec, "command");
    }

    item = json_get(in, "compute_target");
    if (present(in, "compute_target")) {
        if (!cJSON_IsString(item) || !name_ok(item->valuestring, 64))
            return fail(err, "compute_target", "compute_target must be 1 to 64 of [A-Za-z0-9._-]");
        cJSON_AddStringToObject(spec, "compute_target", item->valuestring);
    } else {
        cJSON_AddStringToObject(spec, "compute_target", "default");
    }

    if ((rc = get_bool(in, "use_gpu", &use_gpu, err)) < 0)
        return rc;
    cJSON_AddBoolToObject(spec, "use_gpu", use_gpu);
    /* Without a GPU the spec reads back gpus_per_process 0, taken as given. */
    if (!use_gpu && given(in, "gpus_per_process", 0))
        return fail(err, "gpus_per_process", "gpus_per_process needs use_gpu: true");
    if ((rc = get_int(in, "gpus_per_process", use_gpu ? 1 : 0, use_gpu ? 64 : 0, use_gpu ? 1 : 0,
                      &gpp, err)) < 0)
        return rc;
    cJSON_AddNumberToObject(spec, "gpus_per_process", (double)gpp);

    item = json_get(in, "cpus_per_process");
    if (present(in, "cpus_per_process")) {
        if (!cJSON_IsNumber(item) || !(item->valuedouble > 0) || item->valuedouble > 1024)
            return fail(err, "cpus_per_process",
                        "cpus_per_process must be a number above 0 "
                        "and at most 1024");
        cpus = item->valuedouble;
    }
    cJSON_AddNumberToObject(spec, "cpus_per_process", cpus);
    if ((rc = get_int(in, "memory_mb_per_process", 0, 16777216, 0, &mem, err)) < 0)
        return rc;
    cJSON_AddNumberToObject(spec, "memory_mb_per_process", (double)mem);

    item = json_get(in, "distributed_backend");
    if (present(in, "distributed_backend")) {
        if (!cJSON_IsString(item) || backend_parse(item->valuestring) <= BACKEND_NONE)
            return fail(err, "distributed_backend",
                        "distributed_backend must be null, \"ps\", \"mpi\" or \"pytorch\"");
        backend = item->valuestring;
        cJSON_AddStringToObject(spec, "distributed_backend", backend);
    } else {
        cJSON_AddNullToObject(spec, "distributed_backend");
    }
    kind = (enum backend)backend_parse(backend);
    is_ps = kind == BACKEND_PS;

    if ((rc = get_int(in, "node_count", 1, 10000, 1, &node_count, err)) < 0)
        return rc;
    if (node_count > 1 && kind == BACKEND_NONE)
        return fail(err, "node_count", "node_count above 1 needs a distributed_backend");
    cJSON_AddNumberToObject(spec, "node_count", (double)node_count);

    if (given(in, "process_count_per_node", 1) && (kind == BACKEND_NONE || is_ps))
        return fail(err, "process_count_per_node",
                    "process_count_per_node goes with the mpi and pytorch backends");
    if ((rc = get_int(in, "process_count_per_node", 1, 1024, 1, &ppn, err)) < 0)
        return rc;
    cJSON_AddNumberToObject(spec, "process_count_per_node", (double)ppn);

    if (!is_ps) {
        /* Their values when absent: null for the counts, false for the flags. */
        const char *const ps_only[] = { "worker_count", "parameter_server_count", "chief",
                                        "evaluator", NULL };
        const char *const *f;

        for (f = ps_only; *f; f++) {
            const cJSON *v = json_get(in, *f);

            if (present(in, *f) && !cJSON_IsFalse(v))
                return fail(err, *f, "%s goes with distributed_backend \"ps\"", *f);
        }
    }
    if ((rc = get_int(in, "worker_count", 1, 10000, node_count, &workers, err)) < 0 ||
        (rc = get_int(in, "parameter_server_count", 0, 10000, 1, &ps, err)) < 0 ||
        (rc = get_bool(in, "chief", &chief, err)) < 0 ||
        (rc = get_bool(in, "evaluator", &evaluator, err)) < 0)
        return rc;
    {
        struct run_shape shape = { .backend = kind,
                                   .node_count = (int)node_count,
                                   .process_count_per_node = (int)ppn,
                                   .worker_count = (int)workers,
                                   .parameter_server_count = (int)ps,
                                   .chief = chief,
                                   .evaluator = evaluator };

        tasks = backend_rules(kind)->task_count(&shape);
    }
    if (is_ps) {
        if (tasks < node_count)
            return fail(err, "node_count",
                        "node_count %lld is more than the run's %lld tasks; each node needs one",
                        (long long)node_count, (long long)tasks);
        cJSON_AddNumberToObject(spec, "worker_count", (double)workers);
        cJSON_AddNumberToObject(spec, "parameter_server_count", (double)ps);
    } else {
        cJSON_AddNullToObject(spec, "worker_count");
        cJSON_AddNullToObject(spec, "parameter_server_count");
    }
    if (tasks > RUNSPEC_MAX_TASKS)
        return fail(err, "node_count", "the run would have %lld tasks; at most %d are allowed",
                    (long long)tasks, RUNSPEC_MAX_TASKS);
    cJSON_AddBoolToObject(spec, "chief", chief);
    cJSON_AddBoolToObject(spec, "evaluator", evaluator);

    if ((rc = get_strings(in, "pip_packages", 256, 256, true, false, &arr, err)) < 0)
        return rc;
    cJSON_AddItemToObject(spec, "pip_packages", arr);
    if ((rc = get_strings(in, "conda_packages", 256, 256, true, false, &arr, err)) < 0)
        return rc;
    cJSON_AddItemToObject(spec, "conda_packages", arr);

    item = json_get(in, "image");
    if (present(in, "image")) {
        if (!cJSON_IsString(item) || !imageref_ok(item->valuestring))
            return fail(err, "image",
                        "image must be a Docker image reference such as 'debian:12' or "
                        "'registry.example.com/team/train:1.0' (lowercase name, optional tag "
                        "and @sha256 digest, at most 255 characters)");
        /* pip_packages go into an image derived from it on the node
         * (agent/dockerimage.c). conda has no such step: refused rather
         * than run without the packages. */
        if (cJSON_GetArraySize(json_get(spec, "conda_packages")) > 0)
            return fail(err, "conda_packages",
                        "conda_packages cannot be combined with image: the agent installs no "
                        "conda packages in images; install them in the image, or use "
                        "pip_packages");
        cJSON_AddStringToObject(spec, "image", item->valuestring);
    } else {
        cJSON_AddNullToObject(spec, "image");
    }

    if (present(in, "environment_variables") &&
        (rc = check_env(json_get(in, "environment_variables"), err)) < 0)
        return rc;
    cJSON_AddItemToObject(spec, "environment_variables",
                          object_or_empty(in, "environment_variables"));

    if ((rc = get_int(in, "max_run_duration_seconds", 0, 31536000, 0, &duration, err)) < 0 ||
        (rc = get_int(in, "max_retries", 0, 100, 0, &retries, err)) < 0 ||
        (rc = get_int(in, "priority", -1000000, 1000000, 0, &priority, err)) < 0)
        return rc;
    cJSON_AddNumberToObject(spec, "max_run_duration_seconds", (double)duration);
    cJSON_AddNumberToObject(spec, "max_retries", (double)retries);
    cJSON_AddNumberToObject(spec, "priority", (double)priority);

    if (present(in, "tags") && (rc = check_tags(json_get(in, "tags"), err)) < 0)
        return rc;
    cJSON_AddItemToObject(spec, "tags", object_or_empty(in, "tags"));

    if (present(in, "node_selector") &&
        (rc = check_selector(json_get(in, "node_selector"), err)) < 0)
        return rc;
    cJSON_AddItemToObject(spec, "node_selector", object_or_empty(in, "node_selector"));
    return 0;
}

int runspec_validate(const cJSON *in, struct run_spec *out, struct runspec_error *err)
{
    cJSON *spec;
    int rc;

    if (!cJSON_IsObject(in))
        return fail(err, NULL, "the run spec must be a JSON object");
    spec = cJSON_CreateObject();
    rc = validate(in, spec, err);
    if (rc < 0) {
        cJSON_Delete(spec);
        return rc;
    }
    rc = run_spec_read(spec, out);
    assert(rc == 0); /* the canonical form is what run_spec_read() reads */
    return rc;
}

/* ---- tasks ---- */

int runspec_tasks(const struct run_spec *spec, struct store_new_task **ret_tasks, char **ret_names,
                  int *ret_count)
{
    const struct run_shape *shape = &spec->shape;
    const struct backend_rules *rules;
    struct store_new_task *tasks;
    size_t *offsets;
    struct buf names;
    int total;
    int i;

    rules = backend_rules(shape->backend);
    total = rules->task_count(shape);
    assert(total >= 1 && total <= RUNSPEC_MAX_TASKS);
    tasks = xcalloc((size_t)total, sizeof(*tasks));
    offsets = xcalloc((size_t)total, sizeof(*offsets));
    buf_init(&names);
    for (i = 0; i < total; i++) {
        struct task_slot slot;
        char name[64];

        rules->slot(shape, i, &slot);
        task_name(slot.type, slot.index, name, sizeof(name));
        tasks[i].type = task_type_name(slot.type);
        tasks[i].index = slot.index;
        offsets[i] = names.len;
        buf_adds(&names, name);
        buf_addc(&names, '\0');
    }
    /* Names were appended to one buffer that may have moved: point at it last. */
    *ret_names = buf_detach(&names, NULL);
    for (i = 0; i < total; i++)
        tasks[i].name = *ret_names + offsets[i];
    free(offsets);
    buf_release(&names);
    *ret_tasks = tasks;
    *ret_count = total;
    return 0;
}
