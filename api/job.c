/* job.c - writes whose answer waits on their commit, not on an HTTP thread. */
#include "api/internal.h"
#include "scheduler/scheduler.h"
#include "common/banned.h"

void api_job_written(void *arg, int rc)
{
    struct api_job *job = arg;

    job->rc = rc;
    if (rc == 0 && job->kick)
        scheduler_kick(job->ctx->sched);
    /* The last touch: the request may be answered and freed at once. */
    job->req->resume(job->req);
}

void api_job_start(struct api_job *job, struct api_response *resp, api_finish_fn answer,
                   int (*start)(struct api_job *job, bool park))
{
    struct api_request *req = job->req;
    int rc;

    if (req->defer(req, answer, job)) {
        rc = start(job, true);
        if (rc < 0)
            api_job_written(job, rc);
        return;
    }
    job->rc = start(job, false);
    if (job->rc == 0 && job->kick)
        scheduler_kick(job->ctx->sched);
    answer(job->ctx, req, resp, job);
}
