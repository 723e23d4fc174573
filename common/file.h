/*
 * file.h - reading a small file whole (certificates, keys, tokens). Any thread.
 */
#ifndef TRAINYARD_FILE_H
#define TRAINYARD_FILE_H

#include <stddef.h>

/* Reads path (at most max bytes) into a NUL-terminated buffer the caller
 * frees with free(). Returns 0 or ERR_INVALID (missing, unreadable or too
 * large; logged). */
int file_read(const char *path, size_t max, char **ret_data);

/* Reads a secret (a token) from a one-line file: surrounding white space
 * is dropped; the rest must be non-empty, printable and one line. Returns
 * the secret (caller frees) or NULL with why (a sentence) filled in. */
char *file_read_secret(const char *path, char *why, size_t why_size);

#endif
