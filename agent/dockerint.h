/*
 * dockerint.h - what docker.c (the client and a task's container) and
 * dockerimage.c (a task's image: inspect, pull, derived image) share.
 * Loop thread only.
 */
#ifndef TRAINYARD_AGENT_DOCKERINT_H
#define TRAINYARD_AGENT_DOCKERINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/docker.h"
#include "agent/task.h"
#include "common/buf.h"
#include "common/uvcurl.h"

/* A pull or a build may take long; anything else answers quickly. */
#define DOCKER_LONG_TIMEOUT_MS (30L * 60 * 1000)
#define DOCKER_CALL_TIMEOUT_MS 60000L

struct docker_build;

struct docker {
    struct agent *a;
    struct uvcurl *http;
    int pending; /* requests in flight */
    bool closing;
    uv_timer_t close_timer;
    struct docker_build *builds; /* derived images being built */
};

enum docker_step {
    STEP_IMAGE, /* inspecting, pulling, building its image */
    STEP_CREATE,
    STEP_START,
    STEP_RUN,
    STEP_DONE,
};

struct docker_task {
    struct docker *d;
    enum docker_step step;
    char *container; /* its id once created */
    int pending; /* requests about it in flight */
    bool waited; /* the wait returned */
    bool logs_ended; /* the log stream ended */
    bool stop_sent;
    bool remove_sent;
    bool killed; /* removed by force at agent stop */
    int exit_code;
    /* the outcome, reported once the container is removed */
    bool has_outcome;
    enum task_status outcome_status;
    int outcome_code;
    char *outcome_message;
    struct buf frames; /* log stream bytes not yet a whole frame */
    /* the image (dockerimage.c) */
    bool pulled; /* a pull ran: the next inspect reports it */
    struct docker_pull pull;
    struct buf pull_line; /* a progress line not yet ended */
    uint64_t pull_event_at; /* when the last progress event went (loop ms) */
    char *run_image; /* what the container runs: the image, or its derived image */
    struct docker_build *build; /* the build it waits for */
    struct task *build_next; /* the build's next waiter */
};

/* Starts a request about t (arg NULL: t, or d when t is NULL, is the
 * callback's argument); 0, or -1 when it cannot start (cb is then not
 * called). A request about t keeps t from being freed. */
int docker_request(struct docker *d, struct task *t, void *arg, const char *method,
                   const char *path, const char *content_type, const void *body, size_t body_len,
                   long timeout_ms, void (*on_data)(void *arg, const char *data, size_t len),
                   uvcurl_cb cb);
/* A request of d (about no task) ended. */
void docker_call_ended(struct docker *d);
/* A request about t ended. */
void docker_task_call_ended(struct task *t);
/* Releases t when it has finished and nothing about it is in flight. */
void docker_settle(struct task *t);
/* The daemon's error message from a reply, or the transport error. */
void docker_daemon_message(const struct uvcurl_response *resp, char *out, size_t size);
/* Appends s percent-encoded. */
void docker_url_escape(struct buf *b, const char *s);
/* t ends failed with "<what> '<image>': " and the daemon's message (or
 * detail when given). */
void docker_fail_step(struct task *t, const char *what, const struct uvcurl_response *resp,
                      const char *detail);
/* Ends t with this outcome once its container (if any) is gone. */
void docker_end_task(struct task *t, enum task_status status, int code, const char *message);
/* The image is there (t->docker->run_image): creates the container. */
void docker_create_container(struct task *t);

/* What a task's container runs; owned, docker_spec_release() frees. */
struct docker_spec {
    char **argv; /* NULL-terminated */
    char **env; /* NULL-terminated "K=V" */
    char *binds[6]; /* NULL-terminated "host:container[:ro]" */
    const char *workdir; /* borrowed */
    const cJSON *gpus; /* borrowed: the GPU indices it gets */
};

void docker_spec_release(struct docker_spec *spec);

/* A frame of Docker's multiplexed stream (stdout or stderr). */
typedef void (*docker_frame_fn)(void *arg, bool is_stderr, const char *data, size_t len);
/* Feeds bytes of a multiplexed stream (logs, an exec's output): each
 * whole frame goes to fn, a partial one waits in frames. */
void docker_demux(struct buf *frames, const char *data, size_t len, docker_frame_fn fn, void *arg);

/* dockermpi.c: fills spec for an mpi launcher (mpirun, in its node's
 * worker-0 directory and environment) or an mpi worker (an idle holder
 * for /v1/exec) and returns true; false for any other task. */
bool docker_mpi_spec(struct task *t, struct docker_spec *spec);

/* dockerimage.c: the first step of a task, ending in
 * docker_create_container() or a failure. */
void docker_image_start(struct task *t);
/* t no longer waits for a build (it is freed). */
void docker_image_forget(struct task *t);

#endif
