/*
 * hollow.h - `trainyard agent --hollow N`: N simulated nodes in one
 * process (like Kubernetes' kubemark), for testing and benchmarking the
 * scheduler at thousands of nodes. Each hollow node registers, heartbeats,
 * accepts assignments through the real agent API (served at
 * http://HOST:PORT/n/NAME), "runs" each task for a sampled duration
 * without spawning anything, and reports status and a metric point
 * through the real agent-to-server endpoints. Main thread only.
 */
#ifndef TRAINYARD_HOLLOW_H
#define TRAINYARD_HOLLOW_H

struct hollow_opts {
    const char *server;
    const char *token;
    const char *prefix; /* node names: PREFIX-00000 ... */
    const char *pool;
    const char *host; /* listen address */
    unsigned port; /* 0 = pick one */
    const char *advertise;
    int nodes;
    double cpus;
    int gpus;
    double task_seconds; /* mean duration of a task (exponential) */
    /* Appended one line of heartbeat round-trip percentiles on SIGUSR1
     * and at exit, or NULL. */
    const char *heartbeat_stats;
};

/* Runs until SIGINT/SIGTERM; returns the exit code. */
int hollow_main(const struct hollow_opts *opts);

#endif
