/*
 * cache.c - a direct-mapped table of rendered bodies, one lock per slot
 * group. A slot holds one key; a newer put replaces it.
 */
#include "api/cache.h"

#include <pthread.h>
#include <string.h>

#include "common/banned.h"

#define CACHE_SLOTS 1024
#define CACHE_LOCKS 16
#define CACHE_KEY_MAX 128
#define CACHE_BODY_MAX (32u << 10) /* at most 32 MiB in all */

struct slot {
    char key[CACHE_KEY_MAX];
    uint64_t gen;
    struct buf body;
};

static struct slot slots[CACHE_SLOTS];
static pthread_mutex_t locks[CACHE_LOCKS] = {
    PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER,
    PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER,
    PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER,
    PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER,
    PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER,
    PTHREAD_MUTEX_INITIALIZER,
};

static unsigned slot_of(const char *key)
{
    unsigned h = 2166136261u;

    while (*key)
        h = (h ^ (unsigned char)*key++) * 16777619u;
    return h % CACHE_SLOTS;
}

bool api_cache_get(const char *key, uint64_t gen, struct buf *out)
{
    unsigned i = slot_of(key);
    struct slot *s = &slots[i];
    bool hit;

    pthread_mutex_lock(&locks[i % CACHE_LOCKS]);
    hit = s->gen == gen && s->body.len > 0 && strcmp(s->key, key) == 0;
    if (hit)
        buf_add(out, s->body.data, s->body.len);
    pthread_mutex_unlock(&locks[i % CACHE_LOCKS]);
    return hit;
}

void api_cache_put(const char *key, uint64_t gen, const char *body, size_t len)
{
    unsigned i = slot_of(key);
    struct slot *s = &slots[i];

    if (strlen(key) >= CACHE_KEY_MAX || len == 0 || len > CACHE_BODY_MAX)
        return;
    pthread_mutex_lock(&locks[i % CACHE_LOCKS]);
    /* An older generation never replaces a newer one. */
    if (s->body.len == 0 || gen >= s->gen) {
        memcpy(s->key, key, strlen(key) + 1);
        s->gen = gen;
        /* A slot does not keep a large buffer for a small body. */
        if (s->body.data && s->body.cap > 2 * len + 4096)
            buf_release(&s->body);
        if (s->body.data == NULL)
            buf_init(&s->body);
        buf_reset(&s->body);
        buf_add(&s->body, body, len);
    }
    pthread_mutex_unlock(&locks[i % CACHE_LOCKS]);
}
