/* test_docker.c - image references and the container create request the
 * agent sends (agent/docker.c; the daemon itself is exercised by
 * tests/integration/test_docker_tasks.py). */
#include "tests/unit/unit.h"

#include <archive.h>
#include <archive_entry.h>
#include <stdlib.h>
#include <string.h>

#include "agent/docker.h"
#include "agent/dockerint.h"
#include "common/backend.h"
#include "api/runspec.h"
#include "common/err.h"
#include "common/imageref.h"
#include "common/json.h"

static void image_references(void)
{
    static const char *const good[] = {
        "debian:12",
        "debian",
        "library/debian:bookworm-slim",
        "registry.example.com/team/train:1.0",
        "localhost:5000/train",
        "localhost/train:v_1.2-rc",
        "ghcr.io/a/b/c@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "nvcr.io/nvidia/pytorch:24.01-py3",
        NULL,
    };
    static const char *const bad[] = {
        "",           "Debian:12",    "debian:",           "debian:-x",
        "a b",        "-debian",      "debian/",           "/debian",
        "debian//x",  "debian:12:13", "debian@sha256:abc", "debian:12;rm",
        "debian?x=1", "../debian",    "debian:.x",         NULL,
    };
    char name[IMAGEREF_MAX + 1];
    char tag[IMAGEREF_MAX + 1];
    int i;

    for (i = 0; good[i]; i++) {
        if (!imageref_ok(good[i]))
            UNIT_FAIL("rejected '%s'", good[i]);
    }
    for (i = 0; bad[i]; i++) {
        if (imageref_ok(bad[i]))
            UNIT_FAIL("accepted '%s'", bad[i]);
    }
    imageref_split("debian:12", name, tag);
    ASSERT_STR_EQ(name, "debian");
    ASSERT_STR_EQ(tag, "12");
    imageref_split("localhost:5000/train", name, tag);
    ASSERT_STR_EQ(name, "localhost:5000/train");
    ASSERT_STR_EQ(tag, "latest");
    imageref_split("a/b:1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                   name, tag);
    ASSERT_STR_EQ(name,
                  "a/b@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
    ASSERT_STR_EQ(tag, "");
}

/* The spec: image is kept, null by default, and named when wrong or
 * combined with what does not run in images yet. */
static const char *spec_field(const char *text, char *image_out, size_t size)
{
    static struct runspec_error err;
    cJSON *in = cJSON_Parse(text);
    struct run_spec spec;
    int rc;

    memset(&err, 0, sizeof(err));
    rc = runspec_validate(in, &spec, &err);
    cJSON_Delete(in);
    if (rc == 0 && image_out) {
        const char *img = json_get_string(spec.json, "image");

        ASSERT_TRUE(json_get(spec.json, "image") != NULL);
        ASSERT_TRUE(img == spec.image);
        snprintf(image_out, size, "%s", img ? img : "(null)");
    }
    if (rc == 0)
        run_spec_release(&spec);
    return rc == 0 ? "" : err.field;
}

static void spec_image_field(void)
{
    char image[300];

    ASSERT_STR_EQ(
        spec_field("{\"experiment\": \"e\", \"command\": [\"true\"]}", image, sizeof(image)), "");
    ASSERT_STR_EQ(image, "(null)");
    ASSERT_STR_EQ(spec_field("{\"experiment\": \"e\", \"command\": [\"true\"], \"image\": "
                             "\"debian:12\"}",
                             image, sizeof(image)),
                  "");
    ASSERT_STR_EQ(image, "debian:12");
    ASSERT_STR_EQ(spec_field("{\"experiment\": \"e\", \"command\": [\"true\"], \"image\": "
                             "\"Debian 12\"}",
                             NULL, 0),
                  "image");
    ASSERT_STR_EQ(
        spec_field("{\"experiment\": \"e\", \"command\": [\"true\"], \"image\": 12}", NULL, 0),
        "image");
    ASSERT_STR_EQ(spec_field("{\"experiment\": \"e\", \"command\": [\"true\"], \"image\": "
                             "\"debian:12\", \"pip_packages\": [\"numpy\"]}",
                             image, sizeof(image)),
                  "");
    ASSERT_STR_EQ(spec_field("{\"experiment\": \"e\", \"command\": [\"true\"], \"image\": "
                             "\"debian:12\", \"conda_packages\": [\"numpy\"]}",
                             NULL, 0),
                  "conda_packages");
    /* mpi runs in images (agent/dockermpi.c): mpirun and orted are the
     * image's, so the nodes need docker, not the host's mpi feature. */
    ASSERT_STR_EQ(spec_field("{\"experiment\": \"e\", \"command\": [\"true\"], \"image\": "
                             "\"debian:12\", \"distributed_backend\": \"mpi\"}",
                             image, sizeof(image)),
                  "");
    ASSERT_STR_EQ(image, "debian:12");
}

static unsigned features_needed(const char *text)
{
    cJSON *in = cJSON_Parse(text);
    struct run_spec spec;
    struct runspec_error err;
    unsigned need;

    ASSERT_EQ(runspec_validate(in, &spec, &err), 0);
    need = spec.features;
    cJSON_Delete(in);
    run_spec_release(&spec);
    return need;
}

static void mpi_in_an_image_needs_docker_only(void)
{
    ASSERT_EQ(features_needed("{\"experiment\": \"e\", \"command\": [\"true\"], "
                              "\"distributed_backend\": \"mpi\"}"),
              FEATURE_MPI);
    ASSERT_EQ(features_needed("{\"experiment\": \"e\", \"command\": [\"true\"], "
                              "\"distributed_backend\": \"mpi\", \"image\": \"debian:12\"}"),
              FEATURE_DOCKER);
}

struct frames_seen {
    char text[256];
    int n;
};

static void on_frame(void *arg, bool is_stderr, const char *data, size_t len)
{
    struct frames_seen *seen = arg;

    snprintf(seen->text + strlen(seen->text), sizeof(seen->text) - strlen(seen->text), "%s:%.*s|",
             is_stderr ? "err" : "out", (int)len, data);
    seen->n++;
}

/* Docker's multiplexed stream, cut anywhere (headers included): whole
 * frames only, in order, each with its stream. */
static void demux_frames(void)
{
    static const char stream[] = "\x01\0\0\0\0\0\0\x06hello\n"
                                 "\x02\0\0\0\0\0\0\x04oops"
                                 "\x01\0\0\0\0\0\0\x00"
                                 "\x01\0\0\0\0\0\0\x03\0b\n";
    size_t len = sizeof(stream) - 1;
    size_t cut;

    for (cut = 0; cut <= len; cut++) {
        struct frames_seen seen;
        struct buf frames;

        memset(&seen, 0, sizeof(seen));
        buf_init(&frames);
        docker_demux(&frames, stream, cut, on_frame, &seen);
        docker_demux(&frames, stream + cut, len - cut, on_frame, &seen);
        ASSERT_EQ(seen.n, 4);
        ASSERT_EQ(frames.len, 0);
        ASSERT_STR_EQ(seen.text, "out:hello\n|err:oops|out:|out:|");
        buf_release(&frames);
    }
}

/* Exactly the task's GPUs, by index, for the nvidia driver; none without. */
static void create_body(void)
{
    char *argv[] = { "python3", "train.py", NULL };
    char *env[] = { "A=1", "CUDA_VISIBLE_DEVICES=0,1", NULL };
    const char *binds[] = { "/w/t/src:/w/t/src", NULL };
    cJSON *gpus = cJSON_Parse("[1, 3]");
    struct docker_create c = {
        .image = "debian:12",
        .argv = argv,
        .env = env,
        .workdir = "/w/t/src",
        .user = "2000000001:2000000001",
        .binds = binds,
        .run = "run-1",
        .task = "run-1-a1-main",
        .node = "n1",
        .gpus = gpus,
    };
    cJSON *body = docker_create_body(&c);
    char *text = json_print(json_get(json_get(body, "HostConfig"), "DeviceRequests"));

    ASSERT_STR_EQ(text, "[{\"DeviceIDs\":[\"1\",\"3\"],\"Capabilities\":[[\"gpu\"]],"
                        "\"Driver\":\"nvidia\"}]");
    free(text);
    ASSERT_STR_EQ(json_get_string(json_get(body, "HostConfig"), "NetworkMode"), "host");
    ASSERT_STR_EQ(json_get_string(body, "User"), "2000000001:2000000001");
    ASSERT_STR_EQ(json_get_string(body, "WorkingDir"), "/w/t/src");
    ASSERT_STR_EQ(json_get_string(json_get(body, "Labels"), "trainyard.run"), "run-1");
    ASSERT_STR_EQ(json_get_string(json_get(body, "Labels"), "trainyard.task"), "run-1-a1-main");
    ASSERT_STR_EQ(json_get_string(json_get(body, "Labels"), "trainyard.node"), "n1");
    ASSERT_STR_EQ(cJSON_GetArrayItem(json_get(body, "Entrypoint"), 1)->valuestring, "train.py");
    ASSERT_STR_EQ(
        cJSON_GetArrayItem(json_get(json_get(body, "HostConfig"), "Binds"), 0)->valuestring,
        "/w/t/src:/w/t/src");
    cJSON_Delete(body);

    cJSON_Delete(gpus);
    gpus = cJSON_CreateArray();
    c.gpus = gpus;
    c.user = NULL;
    body = docker_create_body(&c);
    ASSERT_TRUE(json_get(json_get(body, "HostConfig"), "DeviceRequests") == NULL);
    ASSERT_TRUE(json_get(body, "User") == NULL);
    cJSON_Delete(body);
    cJSON_Delete(gpus);
}

/* A pull's progress stream as the daemon sends it (Engine API 1.41,
 * POST /images/create; two layers, one already there; lines as the
 * daemon writes them, the "progress" bars shortened). */
static const char *const pull_stream[] = {
    "{\"status\":\"Pulling from team/train\",\"id\":\"1.0\"}",
    "{\"status\":\"Already exists\",\"progressDetail\":{},\"id\":\"a1b2c3d4e5f6\"}",
    "{\"status\":\"Pulling fs layer\",\"progressDetail\":{},\"id\":\"0f1e2d3c4b5a\"}",
    "{\"status\":\"Pulling fs layer\",\"progressDetail\":{},\"id\":\"99aa88bb77cc\"}",
    "{\"status\":\"Waiting\",\"progressDetail\":{},\"id\":\"99aa88bb77cc\"}",
    "{\"status\":\"Downloading\",\"progressDetail\":{\"current\":1048576,\"total\":4194304},"
    "\"progress\":\"[=====>   ]  1.049MB/4.194MB\",\"id\":\"0f1e2d3c4b5a\"}",
    "{\"status\":\"Downloading\",\"progressDetail\":{\"current\":524288,\"total\":2097152},"
    "\"progress\":\"[==>      ]  524.3kB/2.097MB\",\"id\":\"99aa88bb77cc\"}",
    NULL,
};
static const char *const pull_stream_end[] = {
    "{\"status\":\"Downloading\",\"progressDetail\":{\"current\":4194304,\"total\":4194304},"
    "\"progress\":\"[=========>]  4.194MB/4.194MB\",\"id\":\"0f1e2d3c4b5a\"}",
    "{\"status\":\"Verifying Checksum\",\"progressDetail\":{},\"id\":\"0f1e2d3c4b5a\"}",
    "{\"status\":\"Download complete\",\"progressDetail\":{},\"id\":\"0f1e2d3c4b5a\"}",
    "{\"status\":\"Extracting\",\"progressDetail\":{\"current\":32768,\"total\":4194304},"
    "\"progress\":\"[>         ]  32.77kB/4.194MB\",\"id\":\"0f1e2d3c4b5a\"}",
    "{\"status\":\"Pull complete\",\"progressDetail\":{},\"id\":\"0f1e2d3c4b5a\"}",
    "{\"status\":\"Download complete\",\"progressDetail\":{},\"id\":\"99aa88bb77cc\"}",
    "{\"status\":\"Pull complete\",\"progressDetail\":{},\"id\":\"99aa88bb77cc\"}",
    "{\"status\":\"Digest: sha256:"
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"}",
    "{\"status\":\"Status: Downloaded newer image for team/train:1.0\"}",
    NULL,
};

static int feed_all(struct docker_pull *p, const char *const *lines, struct buf *log)
{
    char line[400];
    int n = 0;
    int i;

    for (i = 0; lines[i]; i++) {
        /* as it arrives: "\r\n" after each, and more bytes after that */
        char *raw = malloc(strlen(lines[i]) + 8);

        snprintf(raw, strlen(lines[i]) + 8, "%s\r\n{\"x", lines[i]);
        docker_pull_feed(p, raw, strlen(lines[i]) + 2, line, sizeof(line));
        free(raw);
        if (line[0]) {
            buf_adds(log, line);
            n++;
        }
    }
    return n;
}

static void pull_progress(void)
{
    struct docker_pull *p = calloc(1, sizeof(*p));
    struct buf log;
    char text[200];
    const char *err = "{\"errorDetail\":{\"message\":\"manifest unknown\"},"
                      "\"error\":\"manifest for team/train:9 not found: manifest unknown\"}";

    buf_init(&log);
    feed_all(p, pull_stream, &log);
    docker_pull_summary(p, text, sizeof(text));
    /* 1 of 4 MiB and 0.5 of 2 MiB; the layer already there counts done */
    ASSERT_STR_EQ(text, "pulled 1.5 of 6.0 MiB (1 of 3 layers)");
    /* the steps are logged, the byte counts are not */
    ASSERT_TRUE(strstr(log.data, "trainyard: pull: 1.0: Pulling from team/train\n") != NULL);
    ASSERT_TRUE(strstr(log.data, "0f1e2d3c4b5a: Pulling fs layer\n") != NULL);
    ASSERT_TRUE(strstr(log.data, "Downloading") == NULL);
    feed_all(p, pull_stream_end, &log);
    docker_pull_summary(p, text, sizeof(text));
    ASSERT_STR_EQ(text, "pulled 6.0 of 6.0 MiB (3 of 3 layers)");
    ASSERT_STR_EQ(p->digest,
                  "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
    ASSERT_TRUE(strstr(log.data, "Status: Downloaded newer image") != NULL);
    ASSERT_TRUE(p->error == NULL);
    docker_pull_feed(p, err, strlen(err), text, sizeof(text));
    ASSERT_STR_EQ(p->error, "manifest for team/train:9 not found: manifest unknown");
    /* not JSON: nothing */
    docker_pull_feed(p, "garbage", 7, text, sizeof(text));
    ASSERT_STR_EQ(text, "");
    free(p->error);
    free(p);
    buf_release(&log);
}

/* The derived image: one tag per (image id, package set), whatever the
 * order and repeats; a Dockerfile that installs exactly those packages. */
static void derived_image(void)
{
    cJSON *a = cJSON_Parse("[\"torch==2.1\", \"numpy\", \"numpy\"]");
    cJSON *b = cJSON_Parse("[\"numpy\", \"torch==2.1\"]");
    cJSON *c = cJSON_Parse("[\"numpy\"]");
    cJSON *odd = cJSON_Parse("[\"a\\\"]\\nRUN rm -rf /\"]");
    const char *args[] = { "PIP_INDEX_URL", "PIP_NO_INDEX", NULL };
    const char *id1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const char *id2 = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
    char *t1 = docker_derived_tag(id1, a);
    char *t2 = docker_derived_tag(id1, b);
    char *t3 = docker_derived_tag(id1, c);
    char *t4 = docker_derived_tag(id2, b);
    char *f;

    ASSERT_STR_EQ(t1, t2);
    ASSERT_TRUE(strcmp(t1, t3) != 0 && strcmp(t1, t4) != 0);
    ASSERT_TRUE(strncmp(t1, "trainyard-derived:", 18) == 0 && strlen(t1) == 18 + 16);
    ASSERT_TRUE(imageref_ok(t1));
    f = docker_dockerfile("debian:12", a, args);
    ASSERT_STR_EQ(f, "FROM debian:12\nARG PIP_INDEX_URL\nARG PIP_NO_INDEX\n"
                     "RUN [\"env\", \"PIP_BREAK_SYSTEM_PACKAGES=1\", \"python3\", \"-m\", \"pip\", "
                     "\"install\", \"--no-input\", \"--no-cache-dir\", "
                     "\"--disable-pip-version-check\", \"numpy\", \"torch==2.1\"]\n");
    free(f);
    /* a package string stays one JSON string: no second instruction */
    f = docker_dockerfile("debian:12", odd, NULL);
    ASSERT_TRUE(strstr(f, "\nRUN rm") == NULL);
    ASSERT_TRUE(strstr(f, "\"a\\\"]\\nRUN rm -rf /\"]\n") != NULL);
    free(f);
    free(t1);
    free(t2);
    free(t3);
    free(t4);
    cJSON_Delete(a);
    cJSON_Delete(b);
    cJSON_Delete(c);
    cJSON_Delete(odd);
}

/* The build context is a tar holding only the Dockerfile. */
static void build_context(void)
{
    const char *dockerfile = "FROM debian:12\nRUN [\"true\"]\n";
    struct buf tar;
    struct archive *ar = archive_read_new();
    struct archive_entry *e;
    char data[256];
    la_ssize_t n;

    buf_init(&tar);
    ASSERT_TRUE(docker_build_context(dockerfile, &tar) == 0);
    ASSERT_TRUE(tar.len >= 1024 && tar.len % 512 == 0);
    archive_read_support_format_tar(ar);
    ASSERT_TRUE(archive_read_open_memory(ar, tar.data, tar.len) == ARCHIVE_OK);
    ASSERT_TRUE(archive_read_next_header(ar, &e) == ARCHIVE_OK);
    ASSERT_STR_EQ(archive_entry_pathname(e), "Dockerfile");
    n = archive_read_data(ar, data, sizeof(data) - 1);
    ASSERT_TRUE(n == (la_ssize_t)strlen(dockerfile));
    data[n] = '\0';
    ASSERT_STR_EQ(data, dockerfile);
    ASSERT_TRUE(archive_read_next_header(ar, &e) == ARCHIVE_EOF);
    archive_read_free(ar);
    buf_release(&tar);
}

/* A build's output stream: text for the log, the first error kept. */
static void build_output(void)
{
    static const char *const lines[] = {
        "{\"stream\":\"Step 1/3 : FROM debian:12\\n\"}",
        "{\"stream\":\" ---\\u003e 5f1bb1b9a4f2\\n\"}",
        "{\"aux\":{\"ID\":\"sha256:5f1bb1b9\"}}",
        "{\"stream\":\"ERROR: No matching distribution found for nosuch\\n\"}",
        "{\"errorDetail\":{\"code\":1,\"message\":\"The command 'env ...' returned a non-zero "
        "code: 1\"},\"error\":\"The command 'env ...' returned a non-zero code: 1\"}",
        NULL,
    };
    static const char *const logged[] = {
        "Step 1/3 : FROM debian:12\n",
        " ---> 5f1bb1b9a4f2\n",
        "",
        "ERROR: No matching distribution found for nosuch\n",
        "The command 'env ...' returned a non-zero code: 1\n",
    };
    char text[400];
    char *error = NULL;
    int i;

    for (i = 0; lines[i]; i++) {
        docker_build_feed(lines[i], strlen(lines[i]), text, sizeof(text), &error);
        ASSERT_STR_EQ(text, logged[i]);
    }
    ASSERT_STR_EQ(error, "The command 'env ...' returned a non-zero code: 1");
    free(error);
}

UNIT_LIST(docker_tests) = {
    { "docker/pull_progress", pull_progress },
    { "docker/derived_image", derived_image },
    { "docker/build_context", build_context },
    { "docker/build_output", build_output },
    { "docker/image_references", image_references },
    { "docker/spec_image_field", spec_image_field },
    { "docker/create_body", create_body },
    { "docker/mpi_in_an_image_needs_docker_only", mpi_in_an_image_needs_docker_only },
    { "docker/demux_frames", demux_frames },
    { NULL, NULL },
};
