/*
 * rshwire.c - what both clients of /v1/exec share (rsh.h): splitting the
 * command mpirun gives its remote shell into words, the request body and
 * the reply's exit marker. Plain C and libc only: the static helper of images
 * (agent/static/rsh.c) is built from it too.
 */
#include "agent/rsh.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/buf.h"
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

/* Appends s as a JSON string (RFC 8259 escapes; bytes >= 0x80 as is). */
static void add_json_string(struct buf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";

    buf_addc(b, '"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;

        if (ch == '"' || ch == '\\') {
            buf_addc(b, '\\');
            buf_addc(b, (char)ch);
        } else if (ch < 0x20) {
            buf_adds(b, "\\u00");
            buf_addc(b, hex[ch >> 4]);
            buf_addc(b, hex[ch & 15]);
        } else {
            buf_addc(b, (char)ch);
        }
    }
    buf_addc(b, '"');
}

char *rsh_body(int argc, char *const *argv)
{
    struct buf cmd;
    struct buf body;
    char **words;
    char *text;
    int i;

    buf_init(&cmd);
    for (i = 0; i < argc; i++) {
        if (cmd.len)
            buf_addc(&cmd, ' ');
        buf_adds(&cmd, argv[i]);
    }
    words = rsh_split(cmd.len ? cmd.data : "");
    buf_release(&cmd);
    if (words == NULL)
        return NULL;
    buf_init(&body);
    buf_adds(&body, "{\"argv\": [");
    for (i = 0; words[i]; i++) {
        if (i)
            buf_adds(&body, ", ");
        add_json_string(&body, words[i]);
        free(words[i]);
    }
    free(words);
    buf_adds(&body, "]}");
    text = buf_detach(&body, NULL);
    buf_release(&body);
    return text;
}

void rsh_sink_init(struct rsh_sink *s)
{
    buf_init(&s->tail);
    s->exit_code = 255;
    s->ended = false;
}

void rsh_sink_release(struct rsh_sink *s)
{
    buf_release(&s->tail);
}

/* Passes output through, holding back the last line until it is known
 * not to be the exit marker. */
int rsh_sink_feed(struct rsh_sink *s, const char *data, size_t len)
{
    size_t mlen = strlen(EXEC_EXIT_MARKER);
    char *nl;

    buf_add(&s->tail, data, len);
    while ((nl = memchr(s->tail.data, '\n', s->tail.len)) != NULL) {
        size_t line = (size_t)(nl - s->tail.data) + 1;

        if (line > mlen && memcmp(s->tail.data, EXEC_EXIT_MARKER, mlen) == 0) {
            s->exit_code = (int)strtol(s->tail.data + mlen, NULL, 10);
            s->ended = true;
        } else if (fwrite(s->tail.data, 1, line, stdout) != line) {
            return -1;
        }
        memmove(s->tail.data, s->tail.data + line, s->tail.len - line);
        s->tail.len -= line;
        s->tail.data[s->tail.len] = '\0';
    }
    fflush(stdout);
    return 0;
}

int64_t rsh_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
