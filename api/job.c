/* job.c - writes whose answer waits on their commit, not on an HTTP thread. */
#include <pthread.h>

#include "api/internal.h"
#include "scheduler/scheduler.h"
#include "common/banned.h"

/* Guards done for the jobs whose handler waits (not parked). */
static pthread_mutex_t wait_mu = PTHREAD_MUTEX_INITIALIZER;

void api_job_written(void *arg, int rc)
{
    struct api_job *job = arg;

    job->rc = rc;
    if (rc == 0 && job->kick)
        scheduler_kick(job->ctx->sched);
    if (job->parked) {
        /* The last touch: the request may be answered and freed at once. */
        job->req->resume(job->req);
        return;
    }
    pthread_mutex_lock(&wait_mu);
    job->done = true;
    pthread_cond_signal(job->done_cv);
    pthread_mutex_unlock(&wait_mu);
}

void api_job_start(struct api_job *job, struct api_response *resp, api_finish_fn answer,
                   int (*start)(struct api_job *job))
{
    struct api_request *req = job->req;
    pthread_cond_t done_cv = PTHREAD_COND_INITIALIZER;
    int rc;

    if (req->defer(req, answer, job)) {
        job->parked = true;
        if ((rc = start(job)) < 0)
            api_job_written(job, rc);
        return;
    }
    /* Not parked (the server is stopping): this thread waits. */
    job->done_cv = &done_cv;
    if ((rc = start(job)) < 0) {
        job->rc = rc;
    } else {
        pthread_mutex_lock(&wait_mu);
        while (!job->done)
            pthread_cond_wait(&done_cv, &wait_mu);
        pthread_mutex_unlock(&wait_mu);
    }
    pthread_cond_destroy(&done_cv);
    answer(job->ctx, req, resp, job);
}
