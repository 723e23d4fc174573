/*
 * internal.h - helpers the handler files of api/ share: JSON responses,
 * body parsing and field validation that names the field at fault.
 */
#ifndef TRAINYARD_API_INTERNAL_H
#define TRAINYARD_API_INTERNAL_H

#include <cjson/cJSON.h>
#include <pthread.h>

#include "api/api.h"
#include "store/store.h"

/* Sets a JSON response; takes ownership of body (deleted here). */
void reply_json(struct api_response *resp, int status, cJSON *body);
/* Parses req's body as a JSON object; false with a 400 in resp otherwise.
 * The caller deletes *ret_obj. */
bool parse_object(struct api_request *req, struct api_response *resp, cJSON **ret_obj);
/* Replies with the error for a store failure: not found names what, a
 * full disk names the data directory (507). */
void reply_store_error(const struct api_ctx *ctx, struct api_response *resp, int rc,
                       const char *what, const char *id);

/* True when s is 1..max characters of [A-Za-z0-9._-]. */
bool valid_name(const char *s, size_t max);
/* Parses the limit and cursor query parameters; false with a 400 set. */
bool parse_paging(struct api_request *req, struct api_response *resp, int *ret_limit,
                  int64_t *ret_cursor);
/* Parses limit and an opaque string cursor; false with a 400 set. */
bool parse_page(struct api_request *req, struct api_response *resp, struct store_page *ret_page);
/* Checks that every key of obj is one of allowed (NULL-terminated);
 * false with a 400 naming the first unknown key. */
bool only_known_fields(const cJSON *obj, const char *const *allowed, struct api_response *resp);

/*
 * A write whose answer waits on its commit without holding an HTTP thread
 * (api_request.defer): the first member of a handler's job.
 */
struct api_job {
    struct api_ctx *ctx;
    struct api_request *req;
    int rc; /* how the write ended */
    bool kick; /* kick the scheduler once it is committed */
    /* api_job_start's own: */
    bool parked;
    bool done;
    pthread_cond_t *done_cv;
};
/*
 * Starts job's write with start(job), which queues it with
 * store_*_async(..., api_job_written, job) and returns that call's result.
 * The connection is parked meanwhile; when it cannot be (the server is
 * stopping), this thread waits instead. Either way answer(ctx, req, resp,
 * job) runs once, with job->rc set, and frees the job.
 */
void api_job_start(struct api_job *job, struct api_response *resp, api_finish_fn answer,
                   int (*start)(struct api_job *job));
/* store_done_fn of a job's write (the writer thread). */
void api_job_written(void *arg, int rc);

/*
 * Counts a new log or event stream of run_id against ctx's caps: false
 * with a 503 (all streams taken) or 429 (the run's) in resp. Any thread.
 */
bool followers_acquire(struct api_ctx *ctx, const char *run_id, struct api_response *resp);
/* A stream of run_id that followers_acquire() counted has ended. */
void followers_release(const char *run_id);

#endif
