/*
 * imageref.h - Docker image references ("debian:12",
 * "registry.example.com:5000/team/train:1.0@sha256:..."): checking one and
 * splitting it for a pull. Pure functions: any thread.
 */
#ifndef TRAINYARD_IMAGEREF_H
#define TRAINYARD_IMAGEREF_H

#include <stdbool.h>
#include <stddef.h>

#define IMAGEREF_MAX 255

/* Whether ref is [host[:port]/]name[/name...][:tag][@sha256:<64 hex>]:
 * name components lowercase [a-z0-9] separated by '.', '_' or '-', a tag
 * of 1 to 128 of [A-Za-z0-9._-] not starting with '.' or '-', at most
 * IMAGEREF_MAX characters in all. */
bool imageref_ok(const char *ref);

/* Splits a valid ref into what the Engine API's pull takes: fromImage
 * (the name, with the digest when there is one) and tag ("" with a
 * digest, "latest" when none is given). Both buffers hold
 * IMAGEREF_MAX + 1. */
void imageref_split(const char *ref, char *ret_name, char *ret_tag);

#endif
