/* workers.c - the handler thread pools (see workers.h). */
#include "server/workers.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "common/err.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "common/banned.h"

struct job {
    void (*fn)(void *arg);
    void *arg;
    struct job *next;
};

struct pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct job *head;
    struct job *tail;
    bool stopping;
    pthread_t *threads;
    int n_threads;
};

static struct pool pools[2] = {
    { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, NULL, false, NULL, 0 },
    { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, NULL, false, NULL, 0 },
};

static void *worker_main(void *arg)
{
    struct pool *p = arg;

    pthread_setname_np(pthread_self(), p == &pools[WORKERS_USER] ? "ty-user" : "ty-agent");

    pthread_mutex_lock(&p->mu);
    for (;;) {
        struct job *j;

        while (p->head == NULL && !p->stopping)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->head == NULL)
            break;
        j = p->head;
        p->head = j->next;
        if (p->head == NULL)
            p->tail = NULL;
        pthread_mutex_unlock(&p->mu);
        j->fn(j->arg);
        free(j);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static int pool_start(struct pool *p, int n)
{
    int i;

    p->threads = xcalloc((size_t)n, sizeof(*p->threads));
    p->stopping = false;
    for (i = 0; i < n; i++) {
        if (pthread_create(&p->threads[i], NULL, worker_main, p) != 0) {
            log_error("workers: cannot start thread %d of %d", i + 1, n);
            break;
        }
        p->n_threads++;
    }
    if (p->n_threads == 0) {
        free(p->threads);
        p->threads = NULL;
        return ERR_INTERNAL;
    }
    return 0;
}

static void pool_stop(struct pool *p)
{
    int i;

    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (i = 0; i < p->n_threads; i++)
        pthread_join(p->threads[i], NULL);
    free(p->threads);
    p->threads = NULL;
    p->n_threads = 0;
}

int workers_start(int n_user, int n_agent)
{
    if (pool_start(&pools[WORKERS_USER], n_user) < 0)
        return ERR_INTERNAL;
    if (pool_start(&pools[WORKERS_AGENT], n_agent) < 0) {
        pool_stop(&pools[WORKERS_USER]);
        return ERR_INTERNAL;
    }
    return 0;
}

void workers_submit(enum workers_pool pool, void (*fn)(void *arg), void *arg)
{
    struct pool *p = &pools[pool];
    struct job *j = xcalloc(1, sizeof(*j));

    j->fn = fn;
    j->arg = arg;
    pthread_mutex_lock(&p->mu);
    if (p->tail)
        p->tail->next = j;
    else
        p->head = j;
    p->tail = j;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void workers_stop(void)
{
    pool_stop(&pools[WORKERS_USER]);
    pool_stop(&pools[WORKERS_AGENT]);
}
