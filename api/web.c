/* web.c - serves the embedded dashboard files. */
#include <string.h>

#include "api/internal.h"
#include "common/err.h"
#include "server/static.h"
#include "common/banned.h"

static const char *content_type(const char *name)
{
    const char *dot = strrchr(name, '.');

    if (dot == NULL)
        return "application/octet-stream";
    if (strcmp(dot, ".html") == 0)
        return "text/html; charset=utf-8";
    if (strcmp(dot, ".js") == 0 || strcmp(dot, ".mjs") == 0)
        return "text/javascript; charset=utf-8";
    if (strcmp(dot, ".css") == 0)
        return "text/css; charset=utf-8";
    if (strcmp(dot, ".svg") == 0)
        return "image/svg+xml";
    if (strcmp(dot, ".png") == 0)
        return "image/png";
    return "application/octet-stream";
}

static void serve(const char *name, struct api_response *resp)
{
    const struct static_file *f;

    for (f = static_files; f->name; f++) {
        if (strcmp(f->name, name) == 0) {
            buf_reset(&resp->body);
            buf_add(&resp->body, f->data, (size_t)(f->end - f->data));
            resp->status = 200;
            resp->content_type = content_type(name);
            return;
        }
    }
    api_error(resp, ERR_NOT_FOUND, NULL, "no such file: %s", name);
}

void api_web_index(struct api_ctx *ctx, struct api_request *req, struct api_response *resp)
{
    (void)ctx;
    (void)req;
    serve("index.html", resp);
}

void api_web_static(struct api_ctx *ctx, struct api_request *req, struct api_response *resp)
{
    (void)ctx;
    serve(req->params[0], resp);
}
