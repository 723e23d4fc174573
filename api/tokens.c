/* tokens.c - creating, listing and revoking API tokens (admin only). */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "api/internal.h"
#include "common/crypto.h"
#include "common/err.h"
#include "common/json.h"
#include "common/timeutil.h"
#include "store/store.h"
#include "common/banned.h"

void api_tokens_create(struct api_ctx *ctx, struct api_request *req, struct api_response *resp)
{
    static const char *const fields[] = { "name", "role", "node", NULL };
    char secret[3 + 64 + 1];
    char hash[CRYPTO_SHA256_HEX_LEN];
    char id[4 + 12 + 1];
    const char *name;
    const char *role;
    const char *node = NULL;
    /* A join token makes only agent tokens for new node names (an agent
     * joining the cluster); an admin makes any. */
    bool joining = req->principal.role == API_ROLE_JOIN;
    const cJSON *item;
    cJSON *in;
    cJSON *out;
    int rc;

    if (!parse_object(req, resp, &in))
        return;
    if (!only_known_fields(in, fields, resp))
        goto out;
    name = json_get_string(in, "name");
    if (!valid_name(name, 128)) {
        api_error(resp, ERR_INVALID, "name", "name is required: 1 to 128 of [A-Za-z0-9._-]");
        goto out;
    }
    role = json_get_string(in, "role");
    if (role == NULL ||
        (strcmp(role, "admin") != 0 && strcmp(role, "user") != 0 && strcmp(role, "viewer") != 0 &&
         strcmp(role, "agent") != 0 && strcmp(role, "join") != 0)) {
        api_error(resp, ERR_INVALID, "role", "role must be admin, user, viewer, agent or join");
        goto out;
    }
    item = json_get(in, "node");
    if (joining && (strcmp(role, "agent") != 0 || item == NULL || cJSON_IsNull(item))) {
        api_error(resp, ERR_PERMISSION, "role",
                  "a join token may only create agent tokens bound to a node");
        goto out;
    }
    if (item && !cJSON_IsNull(item)) {
        if (strcmp(role, "agent") != 0) {
            api_error(resp, ERR_INVALID, "node", "only an agent token is bound to a node");
            goto out;
        }
        if (!cJSON_IsString(item) || !valid_name(item->valuestring, 128)) {
            api_error(resp, ERR_INVALID, "node", "node must be 1 to 128 of [A-Za-z0-9._-]");
            goto out;
        }
        node = item->valuestring;
    }
    memcpy(secret, "ty_", 3);
    crypto_random_hex(32, secret + 3);
    memcpy(id, "tok-", 4);
    crypto_random_hex(6, id + 4);
    crypto_sha256_hex(secret, strlen(secret), hash);
    if (joining)
        rc = store_token_claim(ctx->store, id, name, node, hash, time_now_ms());
    else
        rc = store_token_create(ctx->store, id, name, role, node, hash, time_now_ms());
    if (rc == ERR_PERMISSION) {
        api_error(resp, ERR_PERMISSION, "node",
                  "node '%s' belongs to another token or exists already; a join token may "
                  "only claim a new node name",
                  node);
        goto out;
    }
    if (rc == 0)
        rc = store_token_get(ctx->store, id, &out);
    if (rc < 0) {
        reply_store_error(ctx, resp, rc, "token", id);
        goto out;
    }
    cJSON_AddStringToObject(out, "secret", secret);
    reply_json(resp, 201, out);
out:
    cJSON_Delete(in);
}

void api_tokens_list(struct api_ctx *ctx, struct api_request *req, struct api_response *resp)
{
    cJSON *list;
    int rc;

    struct store_page page;

    if (!parse_page(req, resp, &page))
        return;
    rc = store_token_list(ctx->store, &page, &list);
    if (rc < 0) {
        api_error(resp, rc, NULL, "cannot list tokens");
        return;
    }
    reply_json(resp, 200, list);
}

void api_tokens_delete(struct api_ctx *ctx, struct api_request *req, struct api_response *resp)
{
    int rc = store_token_delete(ctx->store, req->params[0]);

    api_tokens_changed();
    if (rc == ERR_CONFLICT) {
        api_error(resp, rc, NULL,
                  "token '%s' is the last admin token; create another admin token before "
                  "deleting it",
                  req->params[0]);
        return;
    }
    if (rc < 0) {
        reply_store_error(ctx, resp, rc, "token", req->params[0]);
        return;
    }
    resp->status = 204;
    resp->content_type = NULL;
}
