/*
 * dockerimage.c - a task's image, before its container (docker.c):
 *
 *   inspect -> (pull when missing, then inspect) -> with pip_packages: the
 *   derived image (inspect its tag, build it when missing) -> create
 *
 * A pull's steps go to the task's log and its progress to the run's
 * events (status reports with a message: "pulling image", "pulled N of M
 * MiB" at most every PULL_EVENT_MS, "pulled image"). A derived image is
 * FROM the image plus a pip install of the run's packages, built by the
 * daemon (POST /build, host network, a tar context of one Dockerfile) and
 * tagged by a hash of the image's id and the package set, so it is built
 * once per node and reused. One build per tag at a time: the tasks that
 * need it wait on the build (struct docker_build) and all see its output.
 */
#include "agent/dockerint.h"

#include <archive.h>
#include <archive_entry.h>
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/crypto.h"
#include "common/imageref.h"
#include "common/json.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "common/banned.h"

/* The daemon's progress lines we keep whole. */
#define MAX_PROGRESS_LINE 65536
/* At most one progress event per this while a pull runs. */
#define PULL_EVENT_MS 5000

/* A derived image being built; the tasks waiting for it. */
struct docker_build {
    struct docker *d;
    struct docker_build *next;
    char *tag;
    char *base; /* the image it is FROM */
    char *base_id;
    cJSON *packages; /* borrowed from the first waiter's assignment: copied */
    cJSON *buildargs; /* {"PIP_...": value} from the first waiter's environment */
    struct task *waiters;
    struct buf line; /* output not yet a whole line */
    char partial[512]; /* the step's output line being written */
    size_t partial_len;
    char last[512]; /* its last line */
    char *error; /* the build's error line */
};

/* ---- a pull's progress ---- */

/* One line of the daemon's JSON lines ("...}\r\n": json_parse wants the
 * text NUL-terminated, and without the CR). */
static cJSON *parse_line(const char *line, size_t len)
{
    char *copy;
    cJSON *j;

    while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == '\n'))
        len--;
    copy = xmalloc(len + 1);
    memcpy(copy, line, len);
    copy[len] = '\0';
    j = json_parse(copy, len);
    free(copy);
    return j;
}

static struct docker_pull_layer *layer(struct docker_pull *p, const char *id)
{
    int i;

    for (i = 0; i < p->n_layers; i++) {
        if (strcmp(p->layers[i].id, id) == 0)
            return &p->layers[i];
    }
    if (p->n_layers == DOCKER_PULL_LAYERS || strlen(id) >= sizeof(p->layers[0].id))
        return NULL;
    snprintf(p->layers[p->n_layers].id, sizeof(p->layers[0].id), "%s", id);
    return &p->layers[p->n_layers++];
}

void docker_pull_feed(struct docker_pull *p, const char *line, size_t len, char *log_line,
                      size_t log_size)
{
    cJSON *j = parse_line(line, len);
    const char *error = json_get_string(j, "error");
    const char *status = json_get_string(j, "status");
    const char *id = json_get_string(j, "id");
    const cJSON *detail = json_get(j, "progressDetail");
    struct docker_pull_layer *l = NULL;
    int64_t current = 0;
    int64_t total = 0;

    log_line[0] = '\0';
    if (error && p->error == NULL)
        p->error = xstrdup(error);
    if (status == NULL) {
        cJSON_Delete(j);
        return;
    }
    /* Layer steps: the ones a layer's id comes with (not "Pulling from"). */
    if (id && strncmp(status, "Pulling from", 12) != 0)
        l = layer(p, id);
    if (l && strcmp(status, "Downloading") == 0 &&
        json_int(json_get(detail, "current"), 0, INT64_MAX, &current) &&
        json_int(json_get(detail, "total"), 0, INT64_MAX, &total)) {
        l->current = current;
        l->total = total;
    } else if (l &&
               (strcmp(status, "Download complete") == 0 || strcmp(status, "Already exists") == 0 ||
                strcmp(status, "Extracting") == 0 || strcmp(status, "Pull complete") == 0)) {
        l->done = true;
        l->current = l->total;
    }
    if (strncmp(status, "Digest: ", 8) == 0 && strlen(status + 8) < sizeof(p->digest))
        snprintf(p->digest, sizeof(p->digest), "%s", status + 8);
    /* Steps, not the byte counts of each layer's download. */
    if (detail == NULL || (json_get(j, "progress") == NULL && id))
        snprintf(log_line, log_size, "trainyard: pull: %.100s%s%.200s\n", id ? id : "",
                 id ? ": " : "", status);
    cJSON_Delete(j);
}

void docker_pull_summary(const struct docker_pull *p, char *out, size_t size)
{
    int64_t current = 0;
    int64_t total = 0;
    int done = 0;
    int i;

    for (i = 0; i < p->n_layers; i++) {
        current += p->layers[i].current;
        total += p->layers[i].total;
        done += p->layers[i].done;
    }
    snprintf(out, size, "pulled %.1f of %.1f MiB (%d of %d layers)", (double)current / 1048576.0,
             (double)total / 1048576.0, done, p->n_layers);
}

/* A step of t worth an event of its run: a status report with a message. */
static void task_event(struct task *t, const char *message)
{
    if (!t->finished)
        task_queue_status(t, TASK_PREPARING, -1, message);
}

/* ---- inspect and pull ---- */

static void inspect(struct task *t);
static void derive(struct task *t, const char *base_id);

static void on_pull_data(void *arg, const char *data, size_t len)
{
    struct task *t = arg;
    struct docker_task *k = t->docker;
    char text[400];
    char *nl;
    uint64_t now;

    buf_add(&k->pull_line, data, len);
    while ((nl = memchr(k->pull_line.data, '\n', k->pull_line.len)) != NULL) {
        size_t n = (size_t)(nl - k->pull_line.data);

        docker_pull_feed(&k->pull, k->pull_line.data, n, text, sizeof(text));
        if (text[0])
            task_log_text(t, text);
        memmove(k->pull_line.data, nl + 1, k->pull_line.len - n - 1);
        k->pull_line.len -= n + 1;
    }
    if (k->pull_line.len > MAX_PROGRESS_LINE)
        buf_reset(&k->pull_line);
    now = uv_now(t->a->loop);
    if (now - k->pull_event_at >= PULL_EVENT_MS) {
        k->pull_event_at = now;
        docker_pull_summary(&k->pull, text, sizeof(text));
        task_event(t, text);
    }
}

static void on_pulled(void *arg, const struct uvcurl_response *resp)
{
    struct task *t = arg;
    struct docker_task *k = t->docker;

    docker_task_call_ended(t);
    if (t->finished) {
        docker_settle(t);
        return;
    }
    if (resp->status != 200 || k->pull.error) {
        docker_fail_step(t, "cannot pull image", resp, k->pull.error);
        return;
    }
    k->pulled = true;
    inspect(t);
}

static void pull(struct task *t)
{
    struct docker_task *k = t->docker;
    const char *image = json_get_string(t->assignment, "image");
    char name[IMAGEREF_MAX + 1];
    char tag[IMAGEREF_MAX + 1];
    char line[400];
    struct buf path;

    imageref_split(image, name, tag);
    buf_init(&path);
    buf_adds(&path, "/images/create?fromImage=");
    docker_url_escape(&path, name);
    if (tag[0]) {
        buf_adds(&path, "&tag=");
        docker_url_escape(&path, tag);
    }
    snprintf(line, sizeof(line), "pulling image '%s'", image);
    task_event(t, line);
    snprintf(line, sizeof(line), "trainyard: pulling image '%s'\n", image);
    task_log_text(t, line);
    k->pull_event_at = uv_now(t->a->loop);
    if (docker_request(k->d, t, NULL, "POST", path.data, NULL, NULL, 0, DOCKER_LONG_TIMEOUT_MS,
                       on_pull_data, on_pulled) < 0)
        docker_end_task(t, TASK_FAILED, -1, "cannot pull the image: the agent is stopping");
    buf_release(&path);
}

static void on_inspected(void *arg, const struct uvcurl_response *resp)
{
    struct task *t = arg;
    struct docker_task *k = t->docker;
    cJSON *body = NULL;
    const char *id;
    char line[700];

    docker_task_call_ended(t);
    if (t->finished) {
        docker_settle(t);
        return;
    }
    if (resp->status == 404 && !k->pulled) {
        pull(t);
        return;
    }
    if (resp->status != 200) {
        docker_fail_step(t, "cannot inspect image", resp, NULL);
        return;
    }
    body = json_parse(resp->body->data, resp->body->len);
    id = json_get_string(body, "Id");
    if (k->pulled) {
        char summary[200];

        docker_pull_summary(&k->pull, summary, sizeof(summary));
        snprintf(line, sizeof(line), "pulled image '%s' (%s; %s)", k->run_image,
                 k->pull.digest[0] ? k->pull.digest
                 : id              ? id
                                   : "?",
                 summary);
        task_event(t, line);
    }
    if (cJSON_GetArraySize(json_get(t->assignment, "pip_packages")) == 0)
        docker_create_container(t);
    else if (id == NULL || strlen(id) > 100)
        docker_fail_step(t, "cannot inspect image", resp, "the daemon's answer has no image id");
    else
        derive(t, id);
    cJSON_Delete(body);
}

static void inspect(struct task *t)
{
    struct docker_task *k = t->docker;
    char path[IMAGEREF_MAX + 32];

    /* imageref_ok: only [A-Za-z0-9._:/@-], nothing to escape in a path */
    snprintf(path, sizeof(path), "/images/%s/json", k->run_image);
    if (docker_request(k->d, t, NULL, "GET", path, NULL, NULL, 0, DOCKER_CALL_TIMEOUT_MS, NULL,
                       on_inspected) < 0)
        docker_end_task(t, TASK_FAILED, -1, "the agent is stopping");
}

void docker_image_start(struct task *t)
{
    t->docker->run_image = xstrdup(json_get_string(t->assignment, "image"));
    inspect(t);
}

/* ---- the derived image: what it is ---- */

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The distinct package strings, sorted (NULL-terminated; the strings are
 * borrowed). */
static const char **sorted_packages(const cJSON *packages)
{
    const char **v = xcalloc((size_t)cJSON_GetArraySize(packages) + 1, sizeof(*v));
    const cJSON *p;
    int n = 0;
    int i;
    int m = 0;

    cJSON_ArrayForEach(p, packages) {
        if (cJSON_IsString(p))
            v[n++] = p->valuestring;
    }
    qsort(v, (size_t)n, sizeof(*v), compare_strings);
    for (i = 0; i < n; i++) {
        if (m == 0 || strcmp(v[m - 1], v[i]) != 0)
            v[m++] = v[i];
    }
    v[m] = NULL;
    return v;
}

char *docker_derived_tag(const char *image_id, const cJSON *packages)
{
    const char **v = sorted_packages(packages);
    char hex[CRYPTO_SHA256_HEX_LEN];
    struct buf key;
    int i;

    buf_init(&key);
    buf_adds(&key, "trainyard derived image 1\n");
    buf_adds(&key, image_id);
    for (i = 0; v[i]; i++) {
        buf_addc(&key, '\n');
        buf_adds(&key, v[i]);
    }
    crypto_sha256_hex(key.data, key.len, hex);
    buf_release(&key);
    free(v);
    return xasprintf("trainyard-derived:%.16s", hex);
}

char *docker_dockerfile(const char *base, const cJSON *packages, const char *const *args)
{
    const char **v = sorted_packages(packages);
    struct buf f;
    char *text;
    int i;

    buf_init(&f);
    buf_printf(&f, "FROM %s\n", base);
    for (i = 0; args && args[i]; i++)
        buf_printf(&f, "ARG %s\n", args[i]);
    /* The exec form: each package one JSON string, nothing for a shell to
     * read. Debian's and Ubuntu's Python refuse system-wide installs
     * (PEP 668) unless told; older pips ignore the variable. */
    buf_adds(&f, "RUN [\"env\", \"PIP_BREAK_SYSTEM_PACKAGES=1\", \"python3\", \"-m\", \"pip\", "
                 "\"install\", \"--no-input\", \"--no-cache-dir\", "
                 "\"--disable-pip-version-check\"");
    for (i = 0; v[i]; i++) {
        buf_adds(&f, ", ");
        json_buf_string(&f, v[i]);
    }
    buf_adds(&f, "]\n");
    free(v);
    text = buf_detach(&f, NULL);
    buf_release(&f);
    return text;
}

static la_ssize_t context_write(struct archive *ar, void *arg, const void *data, size_t len)
{
    (void)ar;
    buf_add(arg, data, len);
    return (la_ssize_t)len;
}

int docker_build_context(const char *dockerfile, struct buf *out)
{
    struct archive *ar = archive_write_new();
    struct archive_entry *e = archive_entry_new();
    size_t len = strlen(dockerfile);
    int rc = -1;

    if (ar == NULL || e == NULL)
        goto out;
    archive_entry_set_pathname(e, "Dockerfile");
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, (la_int64_t)len);
    archive_entry_set_mtime(e, time(NULL), 0);
    if (archive_write_set_format_pax_restricted(ar) == ARCHIVE_OK &&
        archive_write_set_bytes_in_last_block(ar, 1) == ARCHIVE_OK &&
        archive_write_open(ar, out, NULL, context_write, NULL) == ARCHIVE_OK &&
        archive_write_header(ar, e) == ARCHIVE_OK &&
        archive_write_data(ar, dockerfile, len) == (la_ssize_t)len &&
        archive_write_close(ar) == ARCHIVE_OK)
        rc = 0;
out:
    archive_entry_free(e);
    archive_write_free(ar);
    return rc;
}

void docker_build_feed(const char *line, size_t len, char *log_line, size_t log_size, char **error)
{
    cJSON *j = parse_line(line, len);
    const char *s = json_get_string(j, "stream");
    const char *status = json_get_string(j, "status");
    const char *e = json_get_string(j, "error");

    log_line[0] = '\0';
    if (e && *error == NULL)
        *error = xstrdup(e);
    if (s)
        snprintf(log_line, log_size, "%s", s);
    else if (status)
        snprintf(log_line, log_size, "%s\n", status);
    else if (e)
        snprintf(log_line, log_size, "%s\n", e);
    cJSON_Delete(j);
}

/* ---- the derived image: building it once ---- */

static void build_free(struct docker_build *b)
{
    free(b->tag);
    free(b->base);
    free(b->base_id);
    free(b->error);
    cJSON_Delete(b->packages);
    cJSON_Delete(b->buildargs);
    buf_release(&b->line);
    free(b);
}

/* The build ended: its waiters go on with the image (error NULL) or fail. */
static void build_done(struct docker_build *b, const char *error, const char *how)
{
    struct docker_build **p;
    struct task *t;
    struct task *next;
    char line[600];

    for (p = &b->d->builds; *p != b; p = &(*p)->next)
        assert(*p != NULL);
    *p = b->next;
    for (t = b->waiters; t; t = next) {
        next = t->docker->build_next;
        t->docker->build = NULL;
        t->docker->build_next = NULL;
        if (t->finished) {
            docker_settle(t);
        } else if (error) {
            docker_fail_step(t, "cannot install pip_packages in image", NULL, error);
        } else {
            snprintf(line, sizeof(line), "%s image %s (pip_packages on '%s')", how, b->tag,
                     b->base);
            task_event(t, line);
            snprintf(line, sizeof(line), "trainyard: %s image %s (pip_packages on '%s')\n", how,
                     b->tag, b->base);
            task_log_text(t, line);
            docker_create_container(t);
        }
    }
    build_free(b);
}

/* The line being written ends: it is the last line when it has more
 * than blanks. */
static void end_line(struct docker_build *b)
{
    size_t i;

    b->partial[b->partial_len] = '\0';
    for (i = 0; i < b->partial_len && b->partial[i] == ' '; i++)
        ;
    if (i < b->partial_len)
        memcpy(b->last, b->partial, b->partial_len + 1);
    b->partial_len = 0;
}

/* Follows the step's output (its pieces need not be whole lines) for its
 * last line, without the terminal's colour codes (ESC [ ... final byte:
 * the builder colours a step's stderr) and control characters. */
static void track_output(struct docker_build *b, const char *text)
{
    const char *p;

    for (p = text; *p; p++) {
        if (*p == '\n' || *p == '\r') {
            end_line(b);
        } else if (*p == '\x1b' && p[1] == '[') {
            for (p += 2; *p && !(*p >= '@' && *p <= '~'); p++)
                ;
            if (*p == '\0')
                return;
        } else if ((unsigned char)*p >= 0x20 && b->partial_len < sizeof(b->partial) - 1) {
            b->partial[b->partial_len++] = *p;
        }
    }
}

/* Output of the build into its waiters' logs; the step's own (not the
 * error line, nor the builder's lines) is followed for its last line. */
static void build_output(struct docker_build *b, const char *text, bool is_error)
{
    struct task *t;

    for (t = b->waiters; t; t = t->docker->build_next)
        task_log_text(t, text);
    if (is_error || (b->partial_len == 0 &&
                     (strncmp(text, " ---> ", 6) == 0 || strncmp(text, "Step ", 5) == 0 ||
                      strncmp(text, "Removing intermediate", 21) == 0 ||
                      strncmp(text, "trainyard: ", 11) == 0)))
        return;
    track_output(b, text);
}

static void on_build_data(void *arg, const char *data, size_t len)
{
    struct docker_build *b = arg;
    char text[4096];
    char *nl;

    buf_add(&b->line, data, len);
    while ((nl = memchr(b->line.data, '\n', b->line.len)) != NULL) {
        size_t n = (size_t)(nl - b->line.data);

        bool had_error = b->error != NULL;

        docker_build_feed(b->line.data, n, text, sizeof(text), &b->error);
        if (text[0])
            build_output(b, text, b->error && !had_error);
        memmove(b->line.data, nl + 1, b->line.len - n - 1);
        b->line.len -= n + 1;
    }
    if (b->line.len > MAX_PROGRESS_LINE)
        buf_reset(&b->line);
}

static void on_built(void *arg, const struct uvcurl_response *resp)
{
    struct docker_build *b = arg;
    char msg[1200];

    docker_call_ended(b->d);
    end_line(b);
    if (resp->status != 200 || b->error) {
        if (b->error)
            snprintf(msg, sizeof(msg), "the build of %s failed: %.400s%s%s", b->tag, b->error,
                     b->last[0] ? "; its last output: " : "", b->last);
        else {
            char why[512];

            docker_daemon_message(resp, why, sizeof(why));
            snprintf(msg, sizeof(msg), "the build of %s failed: %s", b->tag, why);
        }
        build_done(b, msg, NULL);
        return;
    }
    build_done(b, NULL, "built");
}

static void build(struct docker_build *b)
{
    const char **args = xcalloc((size_t)cJSON_GetArraySize(b->buildargs) + 1, sizeof(*args));
    const cJSON *x;
    struct buf path;
    struct buf context;
    struct buf labels;
    char *dockerfile;
    char *text;
    char line[600];
    struct task *t;
    int n = 0;

    cJSON_ArrayForEach(x, b->buildargs) {
        args[n++] = x->string;
    }
    dockerfile = docker_dockerfile(b->base, b->packages, args);
    free(args);
    buf_init(&context);
    buf_init(&path);
    buf_init(&labels);
    snprintf(line, sizeof(line), "building image %s: pip_packages on '%s'", b->tag, b->base);
    for (t = b->waiters; t; t = t->docker->build_next)
        task_event(t, line);
    build_output(b, "trainyard: building an image for pip_packages:\n", false);
    build_output(b, dockerfile, false);
    buf_adds(&labels, "{\"trainyard.base\":");
    json_buf_string(&labels, b->base);
    buf_adds(&labels, ",\"trainyard.base-id\":");
    json_buf_string(&labels, b->base_id);
    buf_adds(&labels, "}");
    text = json_print(b->buildargs);
    buf_adds(&path, "/build?networkmode=host&rm=1&forcerm=1&t=");
    docker_url_escape(&path, b->tag);
    buf_adds(&path, "&labels=");
    docker_url_escape(&path, labels.data);
    buf_adds(&path, "&buildargs=");
    docker_url_escape(&path, text);
    free(text);
    if (docker_build_context(dockerfile, &context) < 0)
        build_done(b, "cannot make the build's context", NULL);
    else if (docker_request(b->d, NULL, b, "POST", path.data, "application/x-tar", context.data,
                            context.len, DOCKER_LONG_TIMEOUT_MS, on_build_data, on_built) < 0)
        build_done(b, "the agent is stopping", NULL);
    free(dockerfile);
    buf_release(&context);
    buf_release(&path);
    buf_release(&labels);
}

static void on_derived_inspected(void *arg, const struct uvcurl_response *resp)
{
    struct docker_build *b = arg;
    char msg[600];

    docker_call_ended(b->d);
    if (resp->status == 200) {
        build_done(b, NULL, "using the cached");
    } else if (resp->status == 404 && !b->d->closing) {
        build(b);
    } else {
        docker_daemon_message(resp, msg, sizeof(msg));
        build_done(b, msg, NULL);
    }
}

/* What of the run's environment the build sees: pip's settings (an index,
 * find-links, trusted hosts...) and proxies (Docker's predefined ARGs). */
static cJSON *build_args(const cJSON *env)
{
    static const char *const proxies[] = { "HTTP_PROXY",  "HTTPS_PROXY", "NO_PROXY", "http_proxy",
                                           "https_proxy", "no_proxy",    NULL };
    cJSON *args = cJSON_CreateObject();
    const cJSON *x;
    int i;

    cJSON_ArrayForEach(x, env) {
        bool pass = strncmp(x->string, "PIP_", 4) == 0 &&
                    strspn(x->string, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") == strlen(x->string);

        for (i = 0; proxies[i] && !pass; i++)
            pass = strcmp(x->string, proxies[i]) == 0;
        if (pass && cJSON_IsString(x))
            cJSON_AddStringToObject(args, x->string, x->valuestring);
    }
    return args;
}

/* The image is there with this id; t runs in its derived image. */
static void derive(struct task *t, const char *base_id)
{
    struct docker_task *k = t->docker;
    struct docker *d = k->d;
    char *tag = docker_derived_tag(base_id, json_get(t->assignment, "pip_packages"));
    struct docker_build *b;
    char path[IMAGEREF_MAX + 32];
    char *base = k->run_image;

    /* From here on t runs in the derived image. */
    k->run_image = tag;
    for (b = d->builds; b && strcmp(b->tag, tag) != 0; b = b->next)
        ;
    k->build_next = NULL;
    if (b) {
        struct task **p;

        for (p = &b->waiters; *p; p = &(*p)->docker->build_next)
            ;
        *p = t;
        k->build = b;
        task_log_text(t, "trainyard: waiting for another task's build of the same image\n");
    } else {
        b = xcalloc(1, sizeof(*b));
        b->d = d;
        b->tag = xstrdup(tag);
        b->base = xstrdup(base);
        b->base_id = xstrdup(base_id);
        b->packages = cJSON_Duplicate(json_get(t->assignment, "pip_packages"), 1);
        b->buildargs = build_args(json_get(t->assignment, "env"));
        buf_init(&b->line);
        b->waiters = t;
        k->build = b;
        b->next = d->builds;
        d->builds = b;
        snprintf(path, sizeof(path), "/images/%s/json", tag);
        if (docker_request(d, NULL, b, "GET", path, NULL, NULL, 0, DOCKER_CALL_TIMEOUT_MS, NULL,
                           on_derived_inspected) < 0)
            build_done(b, "the agent is stopping", NULL);
    }
    free(base);
}

void docker_image_forget(struct task *t)
{
    struct docker_task *k = t->docker;
    struct task **p;

    if (k->build == NULL)
        return;
    for (p = &k->build->waiters; *p != t; p = &(*p)->docker->build_next)
        assert(*p != NULL);
    *p = k->build_next;
    k->build = NULL;
    k->build_next = NULL;
}
