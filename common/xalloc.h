/*
 * xalloc.h - allocation that never returns NULL.
 *
 * Out of memory is not a per-call-site decision in a service: these abort
 * with a message instead. Any thread may call. Memory is freed with free().
 */
#ifndef TRAINYARD_XALLOC_H
#define TRAINYARD_XALLOC_H

#include <stdarg.h>
#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *ptr, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* printf into a new string; the caller frees it. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *xvasprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

#endif
