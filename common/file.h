/*
 * file.h - reading a small file whole (certificates, keys). Any thread.
 */
#ifndef TRAINYARD_FILE_H
#define TRAINYARD_FILE_H

#include <stddef.h>

/* Reads path (at most max bytes) into a NUL-terminated buffer the caller
 * frees with free(). Returns 0 or ERR_INVALID (missing, unreadable or too
 * large; logged). */
int file_read(const char *path, size_t max, char **ret_data);

#endif
