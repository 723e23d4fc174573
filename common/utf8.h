/*
 * utf8.h - checking UTF-8 text a byte sequence at a time (JSON input, log
 * escaping). Pure functions; any thread.
 */
#ifndef TRAINYARD_UTF8_H
#define TRAINYARD_UTF8_H

#include <stddef.h>

/* Length of the valid UTF-8 sequence at p (n > 0 bytes left): 1 for ASCII,
 * 2..4 for a well-formed sequence (no overlong form, surrogate or value
 * past U+10FFFF), 0 when invalid. */
size_t utf8_len(const unsigned char *p, size_t n);

#endif
