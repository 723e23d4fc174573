/* rsh.c - the rsh agent for mpirun: remote launch through trainyard agents. */
#include "agent/rsh.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/json.h"
#include "common/banned.h"

struct reply {
    CURL *curl;
    struct rsh_sink *sink; /* a 200's body */
    struct buf refusal; /* any other's */
};

static size_t on_data(char *data, size_t size, size_t nmemb, void *userp)
{
    struct reply *r = userp;
    size_t n = size * nmemb;
    long status = 0;

    curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200) {
        buf_add(&r->refusal, data, n);
        return n;
    }
    return rsh_sink_feed(r->sink, data, n) == 0 ? n : 0;
}

int rsh_main(int argc, char **argv)
{
    const char *agents_json = getenv("TRAINYARD_MPI_AGENTS");
    const char *secret = getenv("TRAINYARD_MPI_SECRET");
    struct curl_slist *headers = NULL;
    struct rsh_sink sink;
    struct reply reply;
    char header[512];
    char url[2048];
    cJSON *agents;
    char *text;
    const char *base;
    CURLcode res;
    long status = 0;
    int64_t give_up;
    int first = 1;

    if (argc < 3) {
        fprintf(stderr, "usage: trainyard rsh HOST COMMAND...\n"
                        "The remote shell mpirun uses inside a trainyard mpi run.\n");
        return argc == 2 && strcmp(argv[1], "--help") == 0 ? 0 : 255;
    }
    /* mpirun may pass ssh-style options before the host. */
    while (first < argc && argv[first][0] == '-')
        first++;
    if (first + 1 >= argc || agents_json == NULL || secret == NULL) {
        fprintf(stderr, "trainyard rsh: needs HOST COMMAND and TRAINYARD_MPI_AGENTS and "
                        "TRAINYARD_MPI_SECRET (set by trainyard in mpi runs)\n");
        return 255;
    }
    agents = cJSON_Parse(agents_json);
    base = json_get_string(agents, argv[first]);
    if (base == NULL) {
        fprintf(stderr, "trainyard rsh: host '%s' is not a node of this run\n", argv[first]);
        cJSON_Delete(agents);
        return 255;
    }
    snprintf(url, sizeof(url), "%s/v1/exec", base);
    cJSON_Delete(agents);
    text = rsh_body(argc - first - 1, argv + first + 1);
    if (text == NULL) {
        fprintf(stderr, "trainyard rsh: refusing a command that needs a shell\n");
        return 255;
    }

    curl_global_init(CURL_GLOBAL_DEFAULT);
    rsh_sink_init(&sink);
    memset(&reply, 0, sizeof(reply));
    reply.curl = curl_easy_init();
    reply.sink = &sink;
    buf_init(&reply.refusal);
    snprintf(header, sizeof(header), "Authorization: Bearer %s", secret);
    headers = curl_slist_append(headers, header);
    headers = curl_slist_append(headers, "Content-Type: application/json");
    headers = curl_slist_append(headers, "Expect:");
    curl_easy_setopt(reply.curl, CURLOPT_URL, url);
    curl_easy_setopt(reply.curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(reply.curl, CURLOPT_POSTFIELDS, text);
    curl_easy_setopt(reply.curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(reply.curl, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(reply.curl, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(reply.curl, CURLOPT_WRITEDATA, &reply);
    if (getenv("TRAINYARD_CA"))
        curl_easy_setopt(reply.curl, CURLOPT_CAINFO, getenv("TRAINYARD_CA"));
    give_up = rsh_now_ms() + RSH_RETRY_FOR_MS;
    for (;;) {
        buf_reset(&reply.refusal);
        res = curl_easy_perform(reply.curl);
        status = 0;
        curl_easy_getinfo(reply.curl, CURLINFO_RESPONSE_CODE, &status);
        /* The node's worker task is not running yet: ask again. */
        if (res != CURLE_OK || status != RSH_NOT_READY || rsh_now_ms() >= give_up)
            break;
        usleep(RSH_RETRY_MS * 1000);
    }
    if (res != CURLE_OK)
        fprintf(stderr, "trainyard rsh: %s: %s\n", url, curl_easy_strerror(res));
    else if (status != 200)
        fprintf(stderr, "trainyard rsh: the agent refused (HTTP %ld): %s\n", status,
                reply.refusal.data);
    else if (!sink.ended)
        fprintf(stderr, "trainyard rsh: the connection ended before the command did\n");
    curl_slist_free_all(headers);
    curl_easy_cleanup(reply.curl);
    curl_global_cleanup();
    free(text);
    buf_release(&reply.refusal);
    rsh_sink_release(&sink);
    return res == CURLE_OK && status == 200 && sink.ended ? sink.exit_code : 255;
}
