/*
 * spec.h - a run spec as C (SPEC §3.2): what the server acts on, typed,
 * read once from the canonical JSON that api/runspec.c's validation
 * writes and the store keeps. Past the API edge the scheduler, the store's
 * completion rules and the task expansion read this struct, never the
 * JSON's members.
 *
 * A struct run_spec owns its canonical tree (json) and borrows its strings
 * from it. Pure functions: any thread; one spec is not shared between
 * threads while it is written.
 */
#ifndef TRAINYARD_COMMON_SPEC_H
#define TRAINYARD_COMMON_SPEC_H

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "common/backend.h"

/* A key and its value (environment_variables, node_selector). */
struct spec_pair {
    const char *key;
    const char *value;
};

struct run_spec {
    cJSON *json; /* the canonical spec, owned: what the store keeps */
    const char *experiment;
    const char *source; /* snapshot id; NULL: none */
    const char *compute_target; /* the pool */
    const char *image; /* NULL: the node's own environment */
    struct run_shape shape; /* backend, counts, what each process holds */
    bool use_gpu;
    unsigned features; /* FEATURE_* its nodes need */
    /* What each task runs: command as given, or entry_script, then
     * script_params (a flag for true, none for false) and arguments. */
    char **argv;
    int argc;
    bool use_python; /* argv[0] is entry_script, run by the node's python */
    struct spec_pair *env; /* environment_variables, in order */
    int n_env;
    struct spec_pair *selector; /* node_selector, in order */
    int n_selector;
    const cJSON *pip_packages; /* array of strings, in json */
    int n_conda_packages;
    int64_t max_run_duration_s; /* 0: none */
    int64_t max_retries;
    int64_t priority;
};

/*
 * Reads a canonical spec (what runspec_validate() wrote) into *out, which
 * takes json over (also on failure, when it is deleted). Returns 0, or
 * ERR_INVALID when json is not a canonical spec (a row written behind the
 * server's back): *out is then empty.
 */
int run_spec_read(cJSON *json, struct run_spec *out);
/* The same from the stored text. */
int run_spec_parse(const char *text, struct run_spec *out);
void run_spec_release(struct run_spec *spec);
/* Releases spec but for its canonical tree, which the caller then owns. */
cJSON *run_spec_take_json(struct run_spec *spec);
/* The value of environment variable name that the spec sets, or NULL. */
const char *run_spec_env(const struct run_spec *spec, const char *name);

#endif
