/*
 * http.c - the client's HTTP: one libcurl easy handle per command, reused
 * between its requests so they share a connection, with bounded bodies,
 * timeouts and the server's JSON errors turned into one line on stderr.
 * JSON bodies over CLI_GZIP_MIN bytes are sent gzip-compressed.
 */
#include <curl/curl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "cli/cli.h"
#include "common/err.h"
#include "common/json.h"
#include "common/version.h"
#include "common/xalloc.h"
#include "common/banned.h"

/* What the write callback needs to know about one transfer. */
struct transfer {
    CURL *curl;
    struct cli_response *resp;
    /* Streaming: 2xx bodies go to sink(sink_arg, ...); NULL: keep them. */
    bool (*sink)(void *arg, const char *data, size_t len);
    void *sink_arg;
    size_t copied; /* bytes given to sink */
    bool too_big;
    bool write_failed;
};

void cli_response_init(struct cli_response *r)
{
    r->status = 0;
    buf_init(&r->body);
}

void cli_response_release(struct cli_response *r)
{
    buf_release(&r->body);
}

bool cli_response_ok(const struct cli_response *r)
{
    return r->status >= 200 && r->status < 300;
}

static size_t on_data(char *data, size_t size, size_t nmemb, void *arg)
{
    struct transfer *t = arg;
    size_t n = size * nmemb;
    long status = 0;

    if (t->sink) {
        curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 200 && status < 300) {
            if (!t->sink(t->sink_arg, data, n)) {
                t->write_failed = true;
                return 0;
            }
            t->copied += n;
            return n;
        }
    }
    if (n > CLI_MAX_BODY - t->resp->body.len) {
        /* Any other count than n makes curl stop with CURLE_WRITE_ERROR. */
        t->too_big = true;
        return 0;
    }
    buf_add(&t->resp->body, data, n);
    return n;
}

/* Sets the options every request has; false when curl refused one. */
static bool set_common(struct cli *c, CURL *curl, const char *url, struct transfer *t,
                       long timeout_ms, char *errbuf)
{
    bool ok = true;

    ok &= curl_easy_setopt(curl, CURLOPT_URL, url) == CURLE_OK;
    ok &= curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L) == CURLE_OK;
    ok &= curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, CLI_CONNECT_TIMEOUT_MS) == CURLE_OK;
    ok &= curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms) == CURLE_OK;
    ok &= curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_data) == CURLE_OK;
    ok &= curl_easy_setopt(curl, CURLOPT_WRITEDATA, t) == CURLE_OK;
    ok &= curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf) == CURLE_OK;
    ok &= curl_easy_setopt(curl, CURLOPT_USERAGENT, "trainyard/" TRAINYARD_VERSION) == CURLE_OK;
    ok &= curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK;
    if (c->ca_file)
        ok &= curl_easy_setopt(curl, CURLOPT_CAINFO, c->ca_file) == CURLE_OK;
    /* A quiet stream (a run that prints nothing for a while) stays open. */
    ok &= curl_easy_setopt(curl, CURLOPT_TCP_KEEPALIVE, 1L) == CURLE_OK;
    /* A proxy cannot reach this machine's loopback server. */
    if (c->loopback)
        ok &= curl_easy_setopt(curl, CURLOPT_NOPROXY, "*") == CURLE_OK;
    return ok;
}

static struct curl_slist *add_header(struct curl_slist *list, const char *header)
{
    struct curl_slist *next = curl_slist_append(list, header);

    if (next == NULL) {
        fprintf(stderr, "fatal: out of memory building HTTP headers\n");
        abort();
    }
    return next;
}

/* Runs one transfer; the shared core of cli_request() and cli_stream(). */
static int perform(struct cli *c, const char *method, const char *path, const char *content_type,
                   bool gzipped, const void *body, size_t body_len, long timeout_ms,
                   bool (*sink)(void *arg, const char *data, size_t len), void *sink_arg,
                   size_t *ret_copied, struct cli_response *ret)
{
    char errbuf[CURL_ERROR_SIZE];
    struct transfer t;
    struct curl_slist *headers = NULL;
    char *url = NULL;
    char *line = NULL;
    CURLcode res;
    int rc = 0;

    if (c->curl == NULL) {
        c->curl = curl_easy_init();
        if (c->curl == NULL) {
            cli_fail("cannot create an HTTP handle");
            return ERR_INTERNAL;
        }
    } else {
        curl_easy_reset(c->curl);
    }
    memset(&t, 0, sizeof(t));
    t.curl = c->curl;
    t.resp = ret;
    t.sink = sink;
    t.sink_arg = sink_arg;
    ret->status = 0;
    buf_reset(&ret->body);
    errbuf[0] = '\0';
    url = xasprintf("%s%s", c->server, path);
    if (!set_common(c, c->curl, url, &t, timeout_ms, errbuf)) {
        rc = ERR_INTERNAL;
        cli_fail("cannot set up the request to %s", url);
        goto out;
    }
    if (c->token) {
        line = xasprintf("Authorization: Bearer %s", c->token);
        headers = add_header(headers, line);
    }
    headers = add_header(headers, "Accept: application/json, text/plain, */*");
    /* A large upload should not wait for "100 Continue". */
    headers = add_header(headers, "Expect:");
    if (strcmp(method, "GET") != 0) {
        /* Without a body curl would still label the request as a form. */
        if (content_type) {
            free(line);
            line = xasprintf("Content-Type: %s", content_type);
            headers = add_header(headers, line);
        } else {
            headers = add_header(headers, "Content-Type:");
        }
        if (gzipped)
            headers = add_header(headers, "Content-Encoding: gzip");
        if (curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len) !=
                CURLE_OK ||
            curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body ? body : "") != CURLE_OK ||
            curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method) != CURLE_OK) {
            rc = ERR_INTERNAL;
            cli_fail("cannot set up the request to %s", url);
            goto out;
        }
    }
    if (curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, headers) != CURLE_OK) {
        rc = ERR_INTERNAL;
        cli_fail("cannot set up the request to %s", url);
        goto out;
    }
    res = curl_easy_perform(c->curl);
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &ret->status);
    if (t.too_big) {
        rc = ERR_UNAVAILABLE;
        cli_fail("the response from %s is larger than %zu MiB", url, CLI_MAX_BODY >> 20);
    } else if (t.write_failed) {
        /* The sink said why. */
        rc = ERR_INTERNAL;
    } else if (res != CURLE_OK) {
        rc = ERR_UNAVAILABLE;
        cli_fail("cannot reach %s: %s", url, errbuf[0] ? errbuf : curl_easy_strerror(res));
    } else if (ret->status == 0) {
        rc = ERR_UNAVAILABLE;
        cli_fail("no HTTP response from %s", url);
    }
    if (ret_copied)
        *ret_copied = t.copied;
out:
    /* The handle keeps pointers to these; drop them before freeing. */
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, NULL);
    curl_slist_free_all(headers);
    free(line);
    free(url);
    return rc;
}

/* Whether an error answer names a field ({"error": {"field": ...}}). */
static bool error_has_field(const struct cli_response *r)
{
    cJSON *root = json_parse(r->body.data, r->body.len);
    bool has = json_get_string(json_get(root, "error"), "field") != NULL;

    cJSON_Delete(root);
    return has;
}

/* body as one gzip member in *ret (caller frees); false when zlib fails. */
static bool gzip_body(const void *body, size_t len, struct buf *ret)
{
    z_stream z;
    size_t bound;
    bool ok;

    memset(&z, 0, sizeof(z));
    if (len > UINT32_MAX / 2 || deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS,
                                             8, Z_DEFAULT_STRATEGY) != Z_OK)
        return false;
    bound = deflateBound(&z, (uLong)len);
    buf_init(ret);
    buf_grow(ret, bound);
    z.next_in = (unsigned char *)(uintptr_t)body;
    z.avail_in = (uInt)len;
    z.next_out = (unsigned char *)ret->data;
    z.avail_out = (uInt)bound;
    ok = deflate(&z, Z_FINISH) == Z_STREAM_END;
    ret->len = bound - z.avail_out;
    deflateEnd(&z);
    if (!ok)
        buf_release(ret);
    return ok;
}

int cli_request(struct cli *c, const char *method, const char *path, const char *content_type,
                const void *body, size_t body_len, long timeout_ms, struct cli_response *ret)
{
    struct buf gz;
    int rc;

    /* A large JSON body (a spec with many parameters or variables) goes
     * compressed; a server that refuses the coding (415, or 400 naming no
     * field: an older one reads gzip as bad JSON) gets it again as is. */
    if (body_len > CLI_GZIP_MIN && content_type && strcmp(content_type, "application/json") == 0 &&
        gzip_body(body, body_len, &gz)) {
        rc = perform(c, method, path, content_type, true, gz.data, gz.len, timeout_ms, NULL, NULL,
                     NULL, ret);
        buf_release(&gz);
        if (rc < 0 || !(ret->status == 415 || (ret->status == 400 && !error_has_field(ret))))
            return rc;
    }
    return perform(c, method, path, content_type, false, body, body_len, timeout_ms, NULL, NULL,
                   NULL, ret);
}

/* cli_stream()'s sink: the bytes go to a FILE as they come. */
static bool file_sink(void *arg, const char *data, size_t len)
{
    FILE *out = arg;

    if (fwrite(data, 1, len, out) != len || fflush(out) != 0) {
        cli_fail("cannot write to %s", out == stdout ? "stdout" : "the file");
        return false;
    }
    return true;
}

int cli_stream_to(struct cli *c, const char *path, long timeout_ms,
                  bool (*sink)(void *arg, const char *data, size_t len), void *arg,
                  size_t *ret_bytes, struct cli_response *ret)
{
    size_t copied = 0;
    int rc;

    rc = perform(c, "GET", path, NULL, false, NULL, 0, timeout_ms, sink, arg, &copied, ret);
    *ret_bytes = copied;
    return rc;
}

int cli_stream(struct cli *c, const char *path, FILE *out, long timeout_ms, size_t *ret_bytes,
               struct cli_response *ret)
{
    return cli_stream_to(c, path, timeout_ms, file_sink, out, ret_bytes, ret);
}

int cli_report_error(const struct cli *c, const struct cli_response *r)
{
    cJSON *root = json_parse(r->body.data, r->body.len);
    const cJSON *err = root ? json_get(root, "error") : NULL;
    const char *message = err ? json_get_string(err, "message") : NULL;
    const char *field = err ? json_get_string(err, "field") : NULL;

    if (message && field && *field)
        cli_fail("%s (field: %s)", message, field);
    else if (message)
        cli_fail("%s", message);
    else
        cli_fail("the server at %s answered HTTP %ld", c->server, r->status);
    cJSON_Delete(root);
    return CLI_EXIT_FAILED;
}

void cli_print_body(const struct cli_response *r)
{
    fwrite(r->body.data, 1, r->body.len, stdout);
    if (r->body.len == 0 || r->body.data[r->body.len - 1] != '\n')
        fputc('\n', stdout);
}

char *cli_escape(struct cli *c, const char *s)
{
    char *e = NULL;
    char *copy;

    if (c->curl == NULL)
        c->curl = curl_easy_init();
    if (c->curl)
        e = curl_easy_escape(c->curl, s, 0);
    if (e == NULL) {
        fprintf(stderr, "fatal: out of memory escaping a URL\n");
        abort();
    }
    copy = xstrdup(e);
    curl_free(e);
    return copy;
}
