/* test_docker.c - image references and the container create request the
 * agent sends (agent/docker.c; the daemon itself is exercised by
 * tests/integration/test_docker_tasks.py). */
#include "tests/unit/unit.h"

#include <stdlib.h>

#include "agent/docker.h"
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
    cJSON *spec = NULL;
    int rc;

    memset(&err, 0, sizeof(err));
    rc = runspec_validate(in, &spec, &err);
    cJSON_Delete(in);
    if (rc == 0 && image_out) {
        const char *img = json_get_string(spec, "image");

        ASSERT_TRUE(json_get(spec, "image") != NULL);
        snprintf(image_out, size, "%s", img ? img : "(null)");
    }
    cJSON_Delete(spec);
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
                             NULL, 0),
                  "pip_packages");
    ASSERT_STR_EQ(spec_field("{\"experiment\": \"e\", \"command\": [\"true\"], \"image\": "
                             "\"debian:12\", \"distributed_backend\": \"mpi\"}",
                             NULL, 0),
                  "distributed_backend");
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

UNIT_LIST(docker_tests) = {
    { "docker/image_references", image_references },
    { "docker/spec_image_field", spec_image_field },
    { "docker/create_body", create_body },
    { NULL, NULL },
};
