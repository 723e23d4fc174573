/*
 * runspec.h - validation of a submitted run spec (SPEC §3.2) and the task
 * list it expands to (docs/API-NOTES.md). Pure functions of their input:
 * any thread may call.
 */
#ifndef TRAINYARD_API_RUNSPEC_H
#define TRAINYARD_API_RUNSPEC_H

#include <cjson/cJSON.h>

#include "common/spec.h"
#include "store/store.h"

/* The most tasks one run may have. */
#define RUNSPEC_MAX_TASKS 16384
/* The most entries a run's node_selector may have. */
#define RUNSPEC_MAX_SELECTOR 32

struct runspec_error {
    char field[64]; /* "" when no single field is at fault */
    char message[256];
};

/*
 * Checks in (the request body) and fills *out: every field validated, and
 * out->json the canonical spec (defaults filled, members in a fixed
 * order) that the store keeps. Returns 0, or ERR_INVALID with *err filled
 * and nothing allocated. The caller releases *out (run_spec_release()).
 * Existence checks against the store (snapshot, pool) are the caller's.
 */
int runspec_validate(const cJSON *in, struct run_spec *out, struct runspec_error *err);

/*
 * The tasks of a validated spec, in order. *ret_tasks is an array the
 * caller frees with free(); the names point into *ret_names, which the
 * caller frees with free() too.
 */
int runspec_tasks(const struct run_spec *spec, struct store_new_task **ret_tasks, char **ret_names,
                  int *ret_count);

#endif
