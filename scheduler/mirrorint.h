/*
 * mirrorint.h - what the files of the scheduler's state in memory share
 * (mirror.c: rows, sync and the check; mirrorpass.c: what a pass reads
 * from it). Not for other modules; scheduler thread only.
 *
 * Nodes, runs and tasks are hashed by their rowid (uthash); nodes also by
 * name, in an array sorted by pool then name (placement's order: a pass
 * takes the pools its head wants), and in per-node lists
 * of the tasks that hold resources there. The queue is an array of
 * (priority, seq) kept sorted: new queued runs are merged in at the next
 * pass, runs that left the queue are dropped when a pass walks past them.
 * A queued run's spec and pending tasks are read when it reaches the
 * head of the queue; the spec is let go when it leaves the queue, keeping
 * only what its pushes need. A queue of 100,000 runs costs their rows,
 * not their specs or tasks: pending tasks are not kept until placed.
 */
#ifndef TRAINYARD_SCHEDULER_MIRRORINT_H
#define TRAINYARD_SCHEDULER_MIRRORINT_H

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "common/backend.h"
#include "common/spec.h"
#include "common/xalloc.h"
#include "scheduler/mirror.h"

#define uthash_malloc(sz) xmalloc(sz)
#include <uthash.h>
#include <utlist.h>

/* How many queued runs a pass looks at (the head of the queue): at least
 * HEAD_RUNS; twice what the last pass placed while passes place many (a
 * long queue that fits is placed in a few passes, not a pass per
 * thousand), up to HEAD_RUNS_MAX. */
#define HEAD_RUNS 1000
#define HEAD_RUNS_MAX 16384
/* How often the heartbeat times of nodes that may be late are asked. */
#define REFRESH_GAP_MS 100

enum node_state { NODE_READY, NODE_DRAINING, NODE_DOWN };

struct mtask;

struct mnode {
    int64_t rowid;
    char *name, *pool, *host, *url, *secret;
    char *gpus_json, *labels_json, *features_json; /* as stored, for mirror_compare */
    double cpus;
    int64_t memory_mb;
    int n_gpus;
    int gpus[STORE_MAX_GPUS];
    unsigned features;
    char **labels; /* key, value, ... */
    int n_labels;
    int port_min, port_max;
    enum node_state state; /* as stored */
    int64_t last_heartbeat; /* as read, or later as store_nodes_seen() said */
    uint64_t in_pass; /* in the sched_state of that pass (mirror.n_passes) */
    /* What the tasks holding resources here use, kept as they come and go
     * (placement's view of a node is then a copy, not a walk). */
    struct mholds *holds; /* NULL: none */
    double used_cpus;
    int64_t used_memory_mb;
    int gpu_holds[STORE_MAX_GPUS]; /* tasks holding gpus[k] */
    UT_hash_handle hh; /* by rowid */
    UT_hash_handle hn; /* by name */
};

/* The tasks holding resources on a node (by name: a task may hold on a
 * node that is gone). */
struct mholds {
    char *node;
    struct mnode *row; /* that node, NULL while it has no row */
    struct mtask *tasks;
    UT_hash_handle hh;
};

/* What the pushes of a run's tasks need from its spec. */
struct mpush {
    bool use_python;
    enum backend backend;
    char *snapshot, *image;
    char *pip_packages; /* JSON, or NULL */
};

struct mrun {
    int64_t seq;
    char *id, *experiment, *pool, *reason;
    enum run_status status;
    int64_t priority, attempt, unschedulable_since, deadline;
    struct mtask *tasks; /* its tasks in the mirror */
    bool in_queue; /* an entry of the queue array names it */
    struct run_spec *spec; /* while queued, once it reached the head */
    bool bad_spec; /* its stored spec is not one (logged): not placed until its row changes */
    struct mpush *push; /* once it left the queue */
    struct sched_task_in *view; /* while queued, once it reached the head:
                                 * its pending tasks (strings in the same
                                 * block), as placement sees them */
    int n_view;
    UT_hash_handle hh;
};

/* Where a task stands with its agent, as far as the mirror knows. */
enum mbox {
    MBOX_NONE,
    MBOX_PUSH, /* in m->outbox: to push */
    MBOX_STOP, /* in m->stops: to stop */
    MBOX_PUSH_SENT, /* handed to the scheduler: out of the list until its row */
    MBOX_STOP_SENT, /* changes or mirror_again() */
};

struct mtask {
    int64_t rowid;
    struct store_task_row row; /* its strings owned */
    struct mrun *run; /* NULL: its run is not in the mirror */
    struct mholds *holds; /* NULL: holds nothing */
    int n_held_gpus;
    int *held_gpus; /* while held, with GPUs: n_held_gpus of them (most tasks
                     * have none: no room for 64 in each of 100,000) */
    enum mbox box;
    struct mtask *rnext, *rprev; /* in run->tasks */
    struct mtask *hnext, *hprev; /* in holds->tasks */
    struct mtask *onext, *oprev; /* in outbox or stops */
    UT_hash_handle hh; /* by rowid */
    UT_hash_handle hid; /* by id */
};

struct qent {
    int64_t priority, seq;
};

struct mirror {
    struct store *store;
    struct mnode *nodes; /* by rowid */
    struct mnode *nodes_by_name;
    struct mnode **sorted; /* by pool, then name */
    struct mnode **asked; /* scratch for store_nodes_seen(): the nodes, */
    const char **asked_names; /* their names */
    int64_t *seen; /* and their times */
    int n_sorted;
    bool sorted_stale;
    int64_t refreshed_at; /* the last heartbeat times asked, ms; 0: never */
    struct mholds *holds;
    struct mrun *runs;
    struct mtask *tasks;
    struct mtask *tasks_by_id;
    int64_t n_orphans; /* tasks whose run is not in the mirror */
    struct mtask *outbox, *stops;
    int64_t n_unschedulable; /* queued runs with unschedulable_since set */
    int64_t n_deadlines; /* started runs with a deadline */
    int64_t n_sent[2]; /* tasks in MBOX_PUSH_SENT, MBOX_STOP_SENT */
    size_t head_runs; /* the next pass's head: HEAD_RUNS .. HEAD_RUNS_MAX */
    uint64_t n_passes; /* states built */
    struct qent *queue; /* sorted: priority desc, seq asc; in queue_mem */
    size_t n_queue;
    struct qent *queue_mem; /* cap_queue entries: dropped ones before */
    size_t cap_queue; /* the queue, room for merges after it */
    struct qent *adds; /* queued since the last merge, unsorted */
    size_t n_adds, cap_adds;
    bool broken; /* a sync failed: the next one reads everything */
};

/* What the pushes of a run need from its spec. */
struct mpush *mirror_push_of(const struct run_spec *spec);
/* Frees a run's spec, keeping what its pushes need when it has left the
 * queue. */
void mirror_spec_done(struct mrun *r);
/* Sorts rowids and drops repeats. */
void mirror_dedup(int64_t *rows, size_t *n);
/* Merges the runs queued since the last pass into the sorted queue. */
void mirror_queue_merge(struct mirror *m);
/* Sorts the nodes by name when they changed, and brings the last
 * heartbeats that may matter (older than half the timeout) up to date
 * with the store's times in memory. */
void mirror_nodes_refresh(struct mirror *m, int64_t now_ms, int64_t node_timeout_ms);
/* Takes a task of the outbox or stops out of its list: sent. */
void mirror_task_sent(struct mirror *m, struct mtask *t);

#endif
