/*
 * workers.h - fixed pools of threads that run the handlers that may block
 * (uploads, list and series reads, writes that wait on their commit), so
 * that the few libmicrohttpd threads never wait on them. Agents' requests
 * (heartbeats, reports, snapshot downloads) have a pool of their own, so
 * no amount of slow user requests delays them.
 */
#ifndef TRAINYARD_WORKERS_H
#define TRAINYARD_WORKERS_H

enum workers_pool {
    WORKERS_USER,
    WORKERS_AGENT,
};

/* Starts n_user and n_agent threads. 0, or ERR_INTERNAL when a pool has
 * none (the other is stopped then). */
int workers_start(int n_user, int n_agent);
/* Runs fn(arg) on a thread of pool, in submission order. */
void workers_submit(enum workers_pool pool, void (*fn)(void *arg), void *arg);
/* Runs what is queued, then joins the threads. After the HTTP daemon stops. */
void workers_stop(void);

#endif
