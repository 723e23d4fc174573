/*
 * auth.c - bearer tokens and roles. Only the SHA-256 of a secret is
 * stored. A request's secret is hashed first and looked up by its hash, so
 * no comparison ever runs over secret bytes: the time a lookup takes says
 * nothing about how close a guess was.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/internal.h"
#include "common/crypto.h"
#include "common/err.h"
#include "common/file.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "store/store.h"
#include "common/banned.h"

/*
 * Tokens seen recently, by hash: every request needs its token, and most
 * come with the same few. An entry is valid while the generation it was
 * filled in is current; deleting or binding a token starts a new one.
 */
#define TOKEN_CACHE_SIZE 256

struct cached_token {
    char hash[CRYPTO_SHA256_HEX_LEN];
    struct store_token token;
    uint64_t generation;
};

static struct cached_token token_cache[TOKEN_CACHE_SIZE];
static pthread_mutex_t token_cache_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t token_generation = 1;

void api_tokens_changed(void)
{
    pthread_mutex_lock(&token_cache_mu);
    token_generation++;
    pthread_mutex_unlock(&token_cache_mu);
}

static unsigned cache_slot(const char *hash)
{
    return (unsigned)strtoul((char[9]){ hash[0], hash[1], hash[2], hash[3], hash[4], hash[5],
                                        hash[6], hash[7], '\0' },
                             NULL, 16) %
           TOKEN_CACHE_SIZE;
}

/* The token whose secret hashes to hash, from the cache or the store. */
static int lookup_token(struct api_ctx *ctx, const char *hash, struct store_token *ret)
{
    struct cached_token *c = &token_cache[cache_slot(hash)];
    uint64_t generation;
    int rc;

    pthread_mutex_lock(&token_cache_mu);
    generation = token_generation;
    if (c->generation == generation && strcmp(c->hash, hash) == 0) {
        *ret = c->token;
        pthread_mutex_unlock(&token_cache_mu);
        return 0;
    }
    pthread_mutex_unlock(&token_cache_mu);
    rc = store_token_lookup(ctx->store, hash, ret);
    if (rc == 0) {
        /* Filled with the generation from before the lookup: a change
         * meanwhile makes it stale at once. */
        pthread_mutex_lock(&token_cache_mu);
        snprintf(c->hash, sizeof(c->hash), "%s", hash);
        c->token = *ret;
        c->generation = generation;
        pthread_mutex_unlock(&token_cache_mu);
    }
    return rc;
}

static enum api_role role_from_name(const char *name)
{
    if (strcmp(name, "admin") == 0)
        return API_ROLE_ADMIN;
    if (strcmp(name, "user") == 0)
        return API_ROLE_USER;
    if (strcmp(name, "viewer") == 0)
        return API_ROLE_VIEWER;
    if (strcmp(name, "agent") == 0)
        return API_ROLE_AGENT;
    if (strcmp(name, "join") == 0)
        return API_ROLE_JOIN;
    return 0;
}

bool api_authenticate(struct api_ctx *ctx, const char *authorization, unsigned roles,
                      struct api_request *req, struct api_response *resp)
{
    struct store_token token;
    char hash[CRYPTO_SHA256_HEX_LEN];
    const char *secret;
    int rc;

    if (roles == API_ROLES_NONE)
        return true;
    if (authorization == NULL || strncmp(authorization, "Bearer ", 7) != 0 ||
        authorization[7] == '\0') {
        api_error(resp, ERR_UNAUTHENTICATED, NULL,
                  "missing credentials: send 'Authorization: Bearer <token>'");
        return false;
    }
    secret = authorization + 7;
    if (strlen(secret) > 256) {
        api_error(resp, ERR_UNAUTHENTICATED, NULL, "invalid token");
        return false;
    }
    crypto_sha256_hex(secret, strlen(secret), hash);
    rc = lookup_token(ctx, hash, &token);
    if (rc == ERR_NOT_FOUND) {
        api_error(resp, ERR_UNAUTHENTICATED, NULL, "invalid token");
        return false;
    }
    if (rc < 0) {
        api_error(resp, ERR_INTERNAL, NULL, "cannot check the token");
        return false;
    }
    req->principal.role = role_from_name(token.role);
    snprintf(req->principal.token_id, sizeof(req->principal.token_id), "%s", token.id);
    snprintf(req->principal.name, sizeof(req->principal.name), "%s", token.name);
    snprintf(req->principal.node, sizeof(req->principal.node), "%s", token.node);
    if ((req->principal.role & roles) == 0) {
        api_error(resp, ERR_PERMISSION, NULL, "a '%s' token may not %s %s", token.role, req->method,
                  req->path);
        return false;
    }
    return true;
}

/*
 * Makes a token of role (named as the role) and writes its secret to path
 * (0600). The file is written under a fresh name next to it (O_EXCL, 0600)
 * and renamed into place: in a directory others may write to, a link
 * planted as path is replaced, never followed. The file comes first: a
 * token that is stored but was never written down would lock its user out.
 */
static int new_token_file(struct api_ctx *ctx, const char *role, const char *path)
{
    char secret[3 + 64 + 1];
    char hash[CRYPTO_SHA256_HEX_LEN];
    char id[4 + 12 + 1];
    char tmp[4096];
    char line[sizeof(secret) + 1];
    int fd;

    memcpy(secret, "ty_", 3);
    crypto_random_hex(32, secret + 3);
    memcpy(id, "tok-", 4);
    crypto_random_hex(6, id + 4);
    crypto_sha256_hex(secret, strlen(secret), hash);
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path) >= sizeof(tmp)) {
        log_error("server: the path '%s' is too long", path);
        return ERR_INTERNAL;
    }
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        log_error("server: cannot write '%s': %s", path, strerror(errno));
        return ERR_INTERNAL;
    }
    snprintf(line, sizeof(line), "%s\n", secret);
    if (fchmod(fd, 0600) < 0 || write(fd, line, strlen(line)) != (ssize_t)strlen(line) ||
        fsync(fd) < 0 || rename(tmp, path) < 0) {
        log_error("server: cannot write '%s': %s", path, strerror(errno));
        close(fd);
        unlink(tmp);
        return ERR_INTERNAL;
    }
    close(fd);
    if (store_token_create(ctx->store, id, role, role, NULL, hash, time_now_ms()) < 0) {
        unlink(path);
        return ERR_INTERNAL;
    }
    return 0;
}

/* Makes a new admin token and writes its secret to <data>/admin.token. */
static int new_admin_token(struct api_ctx *ctx, char *ret_path, size_t size)
{
    snprintf(ret_path, size, "%s/admin.token", ctx->data_dir);
    return new_token_file(ctx, "admin", ret_path);
}

int api_bootstrap_admin(struct api_ctx *ctx)
{
    char path[4096];
    int64_t count;

    if (store_token_count(ctx->store, &count) < 0)
        return ERR_INTERNAL;
    snprintf(path, sizeof(path), "%s/admin.token", ctx->data_dir);
    if (count > 0) {
        log_info("server: admin token in '%s' (created at first start)", path);
        return 0;
    }
    if (new_admin_token(ctx, path, sizeof(path)) < 0)
        return ERR_INTERNAL;
    log_info("server: created the admin token; it is in '%s' (mode 0600)", path);
    return 0;
}

int api_reset_admin_token(struct api_ctx *ctx, char *ret_path, size_t size)
{
    return new_admin_token(ctx, ret_path, size);
}

int api_keep_join_token(struct api_ctx *ctx, const char *path)
{
    char why[512];
    char *secret = file_read_secret(path, why, sizeof(why));

    if (secret) {
        char hash[CRYPTO_SHA256_HEX_LEN];
        struct store_token token;
        int rc;

        crypto_sha256_hex(secret, strlen(secret), hash);
        free(secret);
        rc = store_token_lookup(ctx->store, hash, &token);
        if (rc == 0 && strcmp(token.role, "join") == 0) {
            log_info("server: the join token is in '%s'", path);
            return 0;
        }
        if (rc < 0 && rc != ERR_NOT_FOUND)
            return ERR_INTERNAL;
        log_warn("server: '%s' holds no join token of this server; writing a new one", path);
    }
    if (new_token_file(ctx, "join", path) < 0)
        return ERR_INTERNAL;
    log_info("server: created a join token; it is in '%s' (mode 0600)", path);
    return 0;
}
