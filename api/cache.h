/*
 * cache.h - rendered response bodies, valid for one store generation
 * (store_generation): a body cached at generation g is served only while
 * the store is still at g, so no write can be missed. Read latest, render
 * once: GET /api/v1/runs/{id} is the most polled request (dashboards,
 * `trainyard run`, scripts). Any thread.
 */
#ifndef TRAINYARD_API_CACHE_H
#define TRAINYARD_API_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "common/buf.h"

/* Appends to out the body cached under key at generation gen: true, or
 * false when there is none. */
bool api_cache_get(const char *key, uint64_t gen, struct buf *out);
/* Caches body (copied) under key for generation gen, replacing what the
 * key's slot held. gen must have been read before the data behind body. */
void api_cache_put(const char *key, uint64_t gen, const char *body, size_t len);

#endif
