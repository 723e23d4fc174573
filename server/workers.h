/*
 * workers.h - a fixed pool of threads that run the handlers that may
 * block (uploads, list and series reads, writes that wait on their commit),
 * so that the few libmicrohttpd threads never wait on them.
 */
#ifndef TRAINYARD_WORKERS_H
#define TRAINYARD_WORKERS_H

/* Starts n threads. 0, or ERR_INTERNAL when none could be started. */
int workers_start(int n);
/* Runs fn(arg) on a worker, in submission order. */
void workers_submit(void (*fn)(void *arg), void *arg);
/* Runs what is queued, then joins the threads. After the HTTP daemon stops. */
void workers_stop(void);

#endif
