/*
 * load.c - an HTTP load generator for trainyard's benchmarks: C clients
 * keep-alive connections busy with one kind of request and report
 * throughput and latency percentiles. libcurl multi, one thread, so it can
 * be pinned to one core (taskset) while the server has the other.
 *
 *   load --url URL... --token T [--method POST] [--body FILE] [--type CT]
 *        [--conns 32] [--requests N | --seconds S] [--label B1]
 *        [--header 'Name: value']...
 *
 * --url may be given up to 64 times: connection i asks URL i modulo their
 * count (B12's log readers: eight runs from one process).
 *
 * --header adds a request header (repeatable): Slurm's slurmrestd takes its
 * JWT as X-SLURM-USER-NAME and X-SLURM-USER-TOKEN (bench/peers.sh).
 *
 * Prints one line: "<label> <req/s> req/s p50=<ms>ms p95=<ms>ms p99=<ms>ms ok=<n>
 * err=<n>". An answer counts as ok when its status is 2xx.
 *
 * Metric ingestion (B6): --metrics-tasks FILE (one task id a line) and
 * --points N send POST /api/v1/agent/tasks/ID/metrics batches of N points,
 * connection i reporting for task i (one task per connection) with its own seq.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/banned.h"

struct slot {
    CURL *easy;
    double started;
    char *task;
    long seq;
    long step;
    char *body;
};

static const char *base_url;
static int points = 1000;

/* The next metrics batch of slot s: its own task, seq and steps. */
static void next_batch(struct slot *s)
{
    size_t cap = (size_t)points * 96 + 128;
    char url[1024];
    size_t len;
    int i;

    free(s->body);
    s->body = malloc(cap);
    len = (size_t)snprintf(s->body, cap, "{\"seq\":%ld,\"points\":[", ++s->seq);
    for (i = 0; i < points; i++) {
        len += (size_t)snprintf(s->body + len, cap - len,
                                "%s{\"name\":\"loss\",\"value\":%.6f,\"step\":%ld}", i ? "," : "",
                                1.0 / (double)(s->step + 1), s->step);
        s->step++;
    }
    len += (size_t)snprintf(s->body + len, cap - len, "]}");
    snprintf(url, sizeof(url), "%s/api/v1/agent/tasks/%s/metrics", base_url, s->task);
    curl_easy_setopt(s->easy, CURLOPT_URL, url);
    curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, s->body);
    curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t discard(char *p, size_t s, size_t n, void *u)
{
    (void)p;
    (void)u;
    return s * n;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static char *read_file(const char *path, long *ret_len)
{
    FILE *f = fopen(path, "rb");
    char *data;
    long len;

    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 ||
        fseek(f, 0, SEEK_SET) != 0) {
        perror(path);
        exit(2);
    }
    data = malloc((size_t)len + 1);
    if (data == NULL || fread(data, 1, (size_t)len, f) != (size_t)len) {
        perror(path);
        exit(2);
    }
    fclose(f);
    *ret_len = len;
    return data;
}

int main(int argc, char **argv)
{
    const char *urls[64];
    int n_urls = 0;
    const char *url = NULL;
    const char *token = NULL;
    const char *method = "GET";
    const char *body_file = NULL;
    const char *type = "application/json";
    const char *label = "load";
    const char *tasks_file = NULL;
    char **task_ids = NULL;
    int n_tasks = 0;
    long conns = 32;
    long requests = 0;
    double seconds = 5;
    char *body = NULL;
    long body_len = 0;
    struct curl_slist *headers = NULL;
    char auth[512];
    char ct[256];
    struct slot *slots;
    double *lat;
    long cap;
    long done = 0;
    long ok = 0;
    long err = 0;
    long started = 0;
    double t0;
    double t1;
    CURLM *multi;
    int running;
    int i;

    for (i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--url") == 0 && n_urls == 64) {
            fprintf(stderr, "load: at most 64 --url\n");
            return 2;
        }
        if (strcmp(argv[i], "--url") == 0)
            urls[n_urls++] = argv[i + 1];
        else if (strcmp(argv[i], "--token") == 0)
            token = argv[i + 1];
        else if (strcmp(argv[i], "--method") == 0)
            method = argv[i + 1];
        else if (strcmp(argv[i], "--body") == 0)
            body_file = argv[i + 1];
        else if (strcmp(argv[i], "--type") == 0)
            type = argv[i + 1];
        else if (strcmp(argv[i], "--conns") == 0)
            conns = strtol(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--requests") == 0)
            requests = strtol(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--seconds") == 0)
            seconds = strtod(argv[i + 1], NULL);
        else if (strcmp(argv[i], "--label") == 0)
            label = argv[i + 1];
        else if (strcmp(argv[i], "--metrics-tasks") == 0)
            tasks_file = argv[i + 1];
        else if (strcmp(argv[i], "--points") == 0)
            points = (int)strtol(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--header") == 0)
            headers = curl_slist_append(headers, argv[i + 1]);
        else {
            fprintf(stderr, "load: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    url = n_urls > 0 ? urls[0] : NULL;
    if (url == NULL || conns < 1) {
        fprintf(stderr, "usage: load --url URL... [--token T] [--method M] [--body FILE] "
                        "[--conns N] [--requests N | --seconds S] [--label L] "
                        "[--header 'Name: value']...\n");
        return 2;
    }
    if (body_file)
        body = read_file(body_file, &body_len);
    if (tasks_file) {
        long len;
        char *text = read_file(tasks_file, &len);
        char *line;
        char *save = NULL;

        task_ids = calloc((size_t)len + 1, sizeof(*task_ids));
        for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
            task_ids[n_tasks++] = line;
        base_url = url;
        method = "POST";
        if (n_tasks < conns) {
            fprintf(stderr, "load: --metrics-tasks needs one task per connection\n");
            return 2;
        }
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (token) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
        headers = curl_slist_append(headers, auth);
    }
    snprintf(ct, sizeof(ct), "Content-Type: %s", type);
    headers = curl_slist_append(headers, ct);
    headers = curl_slist_append(headers, "Expect:");
    multi = curl_multi_init();
    curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, conns);
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, conns);
    cap = requests > 0 ? requests : 10000000;
    lat = malloc((size_t)cap * sizeof(*lat));
    slots = calloc((size_t)conns, sizeof(*slots));
    t0 = now_s();
    for (i = 0; i < conns && (requests == 0 || started < requests); i++) {
        CURL *e = curl_easy_init();

        curl_easy_setopt(e, CURLOPT_URL, urls[i % n_urls]);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
        if (body) {
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        }
        curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)&slots[i]);
        slots[i].easy = e;
        if (n_tasks) {
            /* A task's seq must only grow: one task per connection. */
            slots[i].task = task_ids[i];
            next_batch(&slots[i]);
        }
        slots[i].started = now_s();
        curl_multi_add_handle(multi, e);
        started++;
    }
    do {
        CURLMsg *msg;
        int left;

        curl_multi_perform(multi, &running);
        while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
            struct slot *s;
            long status = 0;
            double t;

            if (msg->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
            curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
            t = now_s();
            if (msg->data.result == CURLE_OK && status >= 200 && status < 300)
                ok++;
            else
                err++;
            if (done < cap)
                lat[done] = t - s->started;
            done++;
            curl_multi_remove_handle(multi, s->easy);
            if ((requests > 0 && started < requests) || (requests == 0 && t - t0 < seconds)) {
                if (n_tasks)
                    next_batch(s);
                s->started = now_s();
                curl_multi_add_handle(multi, s->easy);
                started++;
            }
        }
        if (running)
            curl_multi_poll(multi, NULL, 0, 100, NULL);
    } while (running || done < started);
    t1 = now_s();
    qsort(lat, (size_t)(done < cap ? done : cap), sizeof(*lat), cmp_double);
    printf("%s %.0f req/s p50=%.2fms p95=%.2fms p99=%.2fms ok=%ld err=%ld conns=%ld", label,
           (double)done / (t1 - t0), done ? lat[done / 2] * 1000 : 0,
           done ? lat[(long)((double)done * 0.95)] * 1000 : 0,
           done ? lat[(long)((double)done * 0.99)] * 1000 : 0, ok, err, conns);
    if (n_tasks)
        printf(" points/s=%.0f", (double)ok * points / (t1 - t0));
    printf("\n");
    for (i = 0; i < conns; i++) {
        if (slots[i].easy)
            curl_easy_cleanup(slots[i].easy);
        free(slots[i].body);
    }
    curl_multi_cleanup(multi);
    curl_slist_free_all(headers);
    curl_global_cleanup();
    free(body);
    free(lat);
    free(slots);
    return err > 0 && ok == 0;
}
