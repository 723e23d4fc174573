/*
 * followers.c - how many log and event streams are open, in all and per
 * run: each costs a connection and a read every poll, so both are capped
 * (--max-followers, --max-followers-per-run).
 */
#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "common/err.h"
#include "common/xalloc.h"
#include "common/banned.h"

struct run_count {
    char *run_id;
    int n;
    struct run_count *next;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct run_count *runs; /* runs with a follower; at most max_followers */
static int total;

bool followers_acquire(struct api_ctx *ctx, const char *run_id, struct api_response *resp)
{
    struct run_count *rc;

    pthread_mutex_lock(&mu);
    if (total >= ctx->max_followers) {
        pthread_mutex_unlock(&mu);
        api_error(resp, ERR_UNAVAILABLE, NULL,
                  "the server already serves %d log and event streams (--max-followers); "
                  "try again later",
                  ctx->max_followers);
        return false;
    }
    for (rc = runs; rc && strcmp(rc->run_id, run_id) != 0; rc = rc->next)
        ;
    if (rc && rc->n >= ctx->max_followers_per_run) {
        pthread_mutex_unlock(&mu);
        api_error(resp, ERR_TOO_MANY, NULL,
                  "run '%s' already has %d log and event streams open "
                  "(--max-followers-per-run); close one first",
                  run_id, ctx->max_followers_per_run);
        return false;
    }
    if (rc == NULL) {
        rc = xcalloc(1, sizeof(*rc));
        rc->run_id = xstrdup(run_id);
        rc->next = runs;
        runs = rc;
    }
    rc->n++;
    total++;
    pthread_mutex_unlock(&mu);
    return true;
}

void followers_release(const char *run_id)
{
    struct run_count **p;

    pthread_mutex_lock(&mu);
    for (p = &runs; *p; p = &(*p)->next) {
        if (strcmp((*p)->run_id, run_id) == 0) {
            struct run_count *rc = *p;

            assert(rc->n > 0 && total > 0);
            total--;
            if (--rc->n == 0) {
                *p = rc->next;
                free(rc->run_id);
                free(rc);
            }
            break;
        }
    }
    pthread_mutex_unlock(&mu);
}
