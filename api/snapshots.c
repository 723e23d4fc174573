/*
 * snapshots.c - content-addressed source snapshots. The server spools an
 * upload to a temporary file; this checks it, hashes it and moves it to
 * <data>/snapshots/<hex>.tar.gz. Same bytes, same id, stored once.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/internal.h"
#include "common/archive.h"
#include "common/crypto.h"
#include "common/err.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "store/store.h"
#include "common/banned.h"

static bool snapshot_id_ok(const char *id)
{
    size_t i;

    if (strncmp(id, "sha256:", 7) != 0 || strlen(id) != 7 + 64)
        return false;
    for (i = 7; id[i]; i++) {
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
            return false;
    }
    return true;
}

static int hash_fd(int fd, char *hex)
{
    struct crypto_sha256 *h = crypto_sha256_new();
    char block[65536];
    ssize_t n;

    if (lseek(fd, 0, SEEK_SET) < 0) {
        crypto_sha256_free(h);
        return ERR_INTERNAL;
    }
    while ((n = read(fd, block, sizeof(block))) > 0)
        crypto_sha256_update(h, block, (size_t)n);
    if (n < 0) {
        crypto_sha256_free(h);
        return ERR_INTERNAL;
    }
    crypto_sha256_final(h, hex);
    return 0;
}

void api_snapshots_upload(struct api_ctx *ctx, struct api_request *req, struct api_response *resp)
{
    struct archive_limits limits;
    char hex[CRYPTO_SHA256_HEX_LEN];
    char id[7 + CRYPTO_SHA256_HEX_LEN];
    char final[4096];
    char why[512];
    char owner[sizeof(req->principal.name)];
    cJSON *out;
    int rc;

    if (req->body_size == 0) {
        api_error(resp, ERR_INVALID, NULL, "the body must be a .tar.gz of the source directory");
        return;
    }
    limits.max_bytes = ctx->max_snapshot_unpacked_bytes;
    limits.max_ratio = ctx->max_snapshot_ratio;
    limits.bytes_name = "--max-snapshot-unpacked-mb";
    limits.ratio_name = "--max-snapshot-ratio";
    rc = archive_check(req->body_path, &limits, why, sizeof(why));
    if (rc < 0) {
        api_error(resp, rc, NULL, "%s", why);
        return;
    }
    if (hash_fd(req->body_fd, hex) < 0) {
        api_error(resp, ERR_INTERNAL, NULL, "cannot read the upload");
        return;
    }
    snprintf(id, sizeof(id), "sha256:%s", hex);
    snprintf(final, sizeof(final), "%s/snapshots/%s.tar.gz", ctx->data_dir, hex);
    /* The file is in place before the row that names it is committed. */
    if (fsync(req->body_fd) < 0 || rename(req->body_path, final) < 0) {
        log_error("snapshots: cannot store '%s': %s", final, strerror(errno));
        if (err_from_errno(errno) == ERR_NO_SPACE)
            api_error_no_space(ctx, resp);
        else
            api_error(resp, ERR_INTERNAL, NULL, "cannot store the snapshot");
        return;
    }
    req->body_kept = true;
    rc = store_snapshot_put(ctx->store, id, req->body_size, req->principal.name, time_now_ms(),
                            owner, sizeof(owner));
    if (rc < 0) {
        reply_store_error(ctx, resp, rc, "snapshot", id);
        return;
    }
    out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "id", id);
    cJSON_AddNumberToObject(out, "size", (double)req->body_size);
    /* Content is stored once: the owner is whoever uploaded it first. */
    if (owner[0])
        cJSON_AddStringToObject(out, "owner", owner);
    else
        cJSON_AddNullToObject(out, "owner");
    reply_json(resp, 201, out);
}

void api_snapshots_get(struct api_ctx *ctx, struct api_request *req, struct api_response *resp)
{
    const char *id = req->params[0];
    char path[4096];
    struct stat st;
    int64_t size;
    int fd;
    int rc;

    if (!snapshot_id_ok(id)) {
        api_error(resp, ERR_NOT_FOUND, NULL, "snapshot '%s' not found", id);
        return;
    }
    rc = store_snapshot_get(ctx->store, id, &size);
    if (rc < 0) {
        reply_store_error(ctx, resp, rc, "snapshot", id);
        return;
    }
    snprintf(path, sizeof(path), "%s/snapshots/%s.tar.gz", ctx->data_dir, id + 7);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0) {
        log_error("snapshots: '%s' is recorded but cannot be opened: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        api_error(resp, ERR_INTERNAL, NULL, "snapshot '%s' cannot be read", id);
        return;
    }
    resp->status = 200;
    resp->content_type = "application/gzip";
    resp->fd = fd;
    resp->fd_size = st.st_size;
}
