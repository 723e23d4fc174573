/* rsh.c - the rsh agent for mpirun: remote launch through trainyard agents. */
#include "agent/rsh.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/exec.h"
#include "common/buf.h"
#include "common/json.h"
#include "common/xalloc.h"
#include "common/banned.h"

char **rsh_split(const char *text)
{
    char **words = xcalloc(strlen(text) / 2 + 2, sizeof(*words));
    struct buf w;
    const char *p = text;
    bool in_word = false;
    int n = 0;

    buf_init(&w);
    while (*p) {
        char ch = *p;

        if (ch == ' ' || ch == '\t' || ch == '\n') {
            if (in_word) {
                words[n++] = buf_detach(&w, NULL);
                in_word = false;
            }
            p++;
        } else if (ch == '\'') {
            const char *end = strchr(p + 1, '\'');

            if (end == NULL)
                goto refuse;
            buf_add(&w, p + 1, (size_t)(end - p - 1));
            in_word = true;
            p = end + 1;
        } else if (ch == '"') {
            p++;
            while (*p && *p != '"') {
                if (*p == '\\' && (p[1] == '"' || p[1] == '\\' || p[1] == '$' || p[1] == '`')) {
                    buf_addc(&w, p[1]);
                    p += 2;
                } else if (*p == '$' || *p == '`') {
                    goto refuse; /* an expansion: only a shell could do it */
                } else {
                    buf_addc(&w, *p++);
                }
            }
            if (*p != '"')
                goto refuse;
            in_word = true;
            p++;
        } else if (ch == '\\' && p[1]) {
            buf_addc(&w, p[1]);
            in_word = true;
            p += 2;
        } else if (strchr(";|&<>$`(){}*?[]~#", ch)) {
            goto refuse;
        } else {
            buf_addc(&w, ch);
            in_word = true;
            p++;
        }
    }
    if (in_word)
        words[n++] = buf_detach(&w, NULL);
    buf_release(&w);
    words[n] = NULL;
    if (n == 0)
        goto refuse_empty;
    return words;
refuse:
    buf_release(&w);
refuse_empty:
    while (n > 0)
        free(words[--n]);
    free(words);
    return NULL;
}

struct sink {
    struct buf tail; /* held back: may be the start of the exit marker */
    int exit_code;
    bool ended;
};

/* Passes output through, holding back the last line until it is known
 * not to be the exit marker. */
static size_t on_data(char *data, size_t size, size_t nmemb, void *userp)
{
    struct sink *s = userp;
    size_t n = size * nmemb;
    char *nl;

    buf_add(&s->tail, data, n);
    while ((nl = memchr(s->tail.data, '\n', s->tail.len)) != NULL) {
        size_t line = (size_t)(nl - s->tail.data) + 1;
        size_t mlen = strlen(EXEC_EXIT_MARKER);

        if (line > mlen && memcmp(s->tail.data, EXEC_EXIT_MARKER, mlen) == 0) {
            s->exit_code = (int)strtol(s->tail.data + mlen, NULL, 10);
            s->ended = true;
        } else if (fwrite(s->tail.data, 1, line, stdout) != line) {
            return 0;
        }
        memmove(s->tail.data, s->tail.data + line, s->tail.len - line);
        s->tail.len -= line;
        s->tail.data[s->tail.len] = '\0';
    }
    fflush(stdout);
    return n;
}

int rsh_main(int argc, char **argv)
{
    const char *agents_json = getenv("TRAINYARD_MPI_AGENTS");
    const char *secret = getenv("TRAINYARD_MPI_SECRET");
    struct curl_slist *headers = NULL;
    struct sink sink;
    struct buf cmd;
    char header[512];
    char url[2048];
    cJSON *agents;
    cJSON *body;
    char *text;
    char **words;
    const char *base;
    CURL *curl;
    CURLcode res;
    long status = 0;
    int i;
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

    buf_init(&cmd);
    for (i = first + 1; i < argc; i++) {
        if (cmd.len)
            buf_addc(&cmd, ' ');
        buf_adds(&cmd, argv[i]);
    }
    words = rsh_split(cmd.data);
    if (words == NULL) {
        fprintf(stderr, "trainyard rsh: refusing a command that needs a shell: %s\n", cmd.data);
        buf_release(&cmd);
        return 255;
    }
    buf_release(&cmd);
    body = cJSON_CreateObject();
    {
        cJSON *arr = cJSON_AddArrayToObject(body, "argv");

        for (i = 0; words[i]; i++) {
            cJSON_AddItemToArray(arr, cJSON_CreateString(words[i]));
            free(words[i]);
        }
        free(words);
    }
    text = json_print(body);
    cJSON_Delete(body);

    curl_global_init(CURL_GLOBAL_DEFAULT);
    curl = curl_easy_init();
    memset(&sink, 0, sizeof(sink));
    sink.exit_code = 255;
    buf_init(&sink.tail);
    snprintf(header, sizeof(header), "Authorization: Bearer %s", secret);
    headers = curl_slist_append(headers, header);
    headers = curl_slist_append(headers, "Content-Type: application/json");
    headers = curl_slist_append(headers, "Expect:");
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, text);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &sink);
    if (getenv("TRAINYARD_CA"))
        curl_easy_setopt(curl, CURLOPT_CAINFO, getenv("TRAINYARD_CA"));
    res = curl_easy_perform(curl);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    if (res != CURLE_OK)
        fprintf(stderr, "trainyard rsh: %s: %s\n", url, curl_easy_strerror(res));
    else if (status != 200)
        fprintf(stderr, "trainyard rsh: the agent refused (HTTP %ld): %s\n", status,
                sink.tail.data);
    else if (!sink.ended)
        fprintf(stderr, "trainyard rsh: the connection ended before the command did\n");
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    curl_global_cleanup();
    free(text);
    buf_release(&sink.tail);
    return res == CURLE_OK && status == 200 && sink.ended ? sink.exit_code : 255;
}
