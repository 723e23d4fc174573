/*
 * response.c - responses, errors and the validation helpers every handler
 * uses. api_status_for() is the one mapping from ERR_* to HTTP status.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/internal.h"
#include "common/err.h"
#include "common/json.h"
#include "common/parse.h"
#include "common/xalloc.h"
#include "common/banned.h"

void api_response_init(struct api_response *resp)
{
    resp->stream = NULL;
    resp->status = 500;
    resp->content_type = "application/json";
    buf_init(&resp->body);
    resp->fd = -1;
    resp->fd_size = 0;
    resp->location = NULL;
}

void api_response_release(struct api_response *resp)
{
    buf_release(&resp->body);
    if (resp->fd >= 0)
        close(resp->fd);
    resp->fd = -1;
    if (resp->stream)
        resp->stream->free(resp->stream);
    resp->stream = NULL;
}

int api_status_for(int code)
{
    switch (code) {
    case ERR_INVALID:
        return 400;
    case ERR_UNAUTHENTICATED:
        return 401;
    case ERR_PERMISSION:
        return 403;
    case ERR_NOT_FOUND:
        return 404;
    case ERR_CONFLICT:
        return 409;
    case ERR_TOO_LARGE:
        return 413;
    case ERR_MEDIA_TYPE:
        return 415;
    case ERR_TOO_MANY:
        return 429;
    case ERR_UNAVAILABLE:
        return 503;
    case ERR_NO_SPACE:
        return 507;
    default:
        return 500;
    }
}

void api_error(struct api_response *resp, int code, const char *field, const char *fmt, ...)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *err = cJSON_AddObjectToObject(root, "error");
    va_list ap;
    char *msg;

    va_start(ap, fmt);
    msg = xvasprintf(fmt, ap);
    va_end(ap);
    cJSON_AddStringToObject(err, "code", err_str(code));
    cJSON_AddStringToObject(err, "message", msg);
    if (field)
        cJSON_AddStringToObject(err, "field", field);
    free(msg);
    if (resp->fd >= 0) {
        close(resp->fd);
        resp->fd = -1;
    }
    reply_json(resp, api_status_for(code), root);
}

void reply_json(struct api_response *resp, int status, cJSON *body)
{
    resp->status = status;
    resp->content_type = "application/json";
    buf_reset(&resp->body);
    json_buf_value(&resp->body, body);
    buf_addc(&resp->body, '\n');
    cJSON_Delete(body);
}

bool parse_object(struct api_request *req, struct api_response *resp, cJSON **ret_obj)
{
    char field[64];
    const char *dup;
    cJSON *obj;

    if (req->body == NULL || req->body_len == 0) {
        api_error(resp, ERR_INVALID, NULL, "request body is empty; a JSON object is required");
        return false;
    }
    if (!json_text_check(req->body, req->body_len, field, sizeof(field))) {
        api_error(resp, ERR_INVALID, field[0] ? field : NULL,
                  "%s%s%smust be UTF-8 text without NUL characters", field[0] ? "'" : "", field,
                  field[0] ? "' " : "request body ");
        return false;
    }
    obj = json_parse(req->body, req->body_len);
    if (obj == NULL) {
        api_error(resp, ERR_INVALID, NULL, "request body is not valid JSON");
        return false;
    }
    if (!cJSON_IsObject(obj)) {
        cJSON_Delete(obj);
        api_error(resp, ERR_INVALID, NULL, "request body must be a JSON object");
        return false;
    }
    dup = json_duplicate_key(obj);
    if (dup) {
        api_error(resp, ERR_INVALID, dup, "field '%s' appears twice", dup);
        cJSON_Delete(obj);
        return false;
    }
    *ret_obj = obj;
    return true;
}

void api_error_no_space(const struct api_ctx *ctx, struct api_response *resp)
{
    api_error(resp, ERR_NO_SPACE, NULL, "no space left in the data directory '%s'", ctx->data_dir);
}

void reply_store_error(const struct api_ctx *ctx, struct api_response *resp, int rc,
                       const char *what, const char *id)
{
    if (rc == ERR_NO_SPACE)
        api_error_no_space(ctx, resp);
    else if (rc == ERR_NOT_FOUND)
        api_error(resp, rc, NULL, "%s '%s' not found", what, id);
    else if (rc == ERR_UNAVAILABLE)
        api_error(resp, rc, NULL, "the server is shutting down");
    else
        api_error(resp, ERR_INTERNAL, NULL, "internal error handling %s '%s'", what, id);
}

bool valid_name(const char *s, size_t max)
{
    size_t n = 0;

    if (s == NULL)
        return false;
    for (; s[n]; n++) {
        char ch = s[n];

        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return false;
    }
    return n >= 1 && n <= max;
}

bool parse_paging(struct api_request *req, struct api_response *resp, int *ret_limit,
                  int64_t *ret_cursor)
{
    const char *limit = req->query(req->conn, "limit");
    const char *cursor = req->query(req->conn, "cursor");
    int64_t v = 100;
    int64_t c = 0;

    if (limit && !parse_int64(limit, 1, 1000, &v)) {
        api_error(resp, ERR_INVALID, "limit", "limit must be an integer from 1 to 1000, not '%s'",
                  limit);
        return false;
    }
    if (cursor && *cursor && !parse_int64(cursor, 1, INT64_MAX, &c)) {
        api_error(resp, ERR_INVALID, "cursor", "cursor '%s' is not one this server returned",
                  cursor);
        return false;
    }
    *ret_limit = (int)v;
    *ret_cursor = c;
    return true;
}

bool parse_page(struct api_request *req, struct api_response *resp, struct store_page *ret_page)
{
    const char *limit = req->query(req->conn, "limit");
    const char *cursor = req->query(req->conn, "cursor");
    int64_t v = 100;

    if (limit && !parse_int64(limit, 1, 1000, &v)) {
        api_error(resp, ERR_INVALID, "limit", "limit must be an integer from 1 to 1000, not '%s'",
                  limit);
        return false;
    }
    if (cursor && strlen(cursor) > 256) {
        api_error(resp, ERR_INVALID, "cursor", "cursor is not one this server returned");
        return false;
    }
    ret_page->limit = (int)v;
    ret_page->after = cursor && *cursor ? cursor : NULL;
    return true;
}

bool only_known_fields(const cJSON *obj, const char *const *allowed, struct api_response *resp)
{
    const cJSON *item;

    cJSON_ArrayForEach(item, obj) {
        const char *const *a;
        bool known = false;

        for (a = allowed; *a; a++) {
            if (strcmp(*a, item->string) == 0)
                known = true;
        }
        if (!known) {
            api_error(resp, ERR_INVALID, item->string, "unknown field '%s'", item->string);
            return false;
        }
    }
    return true;
}
