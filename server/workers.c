/* workers.c - the handler thread pool (see workers.h). */
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

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static struct job *head;
static struct job *tail;
static bool stopping;
static pthread_t *threads;
static int n_threads;

static void *worker_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&mu);
    for (;;) {
        struct job *j;

        while (head == NULL && !stopping)
            pthread_cond_wait(&cv, &mu);
        if (head == NULL)
            break;
        j = head;
        head = j->next;
        if (head == NULL)
            tail = NULL;
        pthread_mutex_unlock(&mu);
        j->fn(j->arg);
        free(j);
        pthread_mutex_lock(&mu);
    }
    pthread_mutex_unlock(&mu);
    return NULL;
}

int workers_start(int n)
{
    int i;

    threads = xcalloc((size_t)n, sizeof(*threads));
    stopping = false;
    for (i = 0; i < n; i++) {
        if (pthread_create(&threads[i], NULL, worker_main, NULL) != 0) {
            log_error("workers: cannot start thread %d of %d", i + 1, n);
            break;
        }
        n_threads++;
    }
    if (n_threads == 0) {
        free(threads);
        threads = NULL;
        return ERR_INTERNAL;
    }
    return 0;
}

void workers_submit(void (*fn)(void *arg), void *arg)
{
    struct job *j = xcalloc(1, sizeof(*j));

    j->fn = fn;
    j->arg = arg;
    pthread_mutex_lock(&mu);
    if (tail)
        tail->next = j;
    else
        head = j;
    tail = j;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
}

void workers_stop(void)
{
    int i;

    pthread_mutex_lock(&mu);
    stopping = true;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    for (i = 0; i < n_threads; i++)
        pthread_join(threads[i], NULL);
    free(threads);
    threads = NULL;
    n_threads = 0;
}
