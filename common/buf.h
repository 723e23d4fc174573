/*
 * buf.h - a growable byte buffer, always NUL-terminated.
 *
 * struct buf is embedded: buf_init() / buf_release(). data is never NULL
 * after buf_init(). One thread at a time per buffer.
 */
#ifndef TRAINYARD_BUF_H
#define TRAINYARD_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
    char *data;
    size_t len;
    size_t cap;
};

void buf_init(struct buf *b);
void buf_release(struct buf *b);
/* Empties the buffer, keeping its memory. */
void buf_reset(struct buf *b);
void buf_grow(struct buf *b, size_t extra);
void buf_add(struct buf *b, const void *data, size_t len);
void buf_adds(struct buf *b, const char *s);
void buf_addc(struct buf *b, char c);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hands the data to the caller (free() it) and leaves b initialised and empty. */
char *buf_detach(struct buf *b, size_t *ret_len);

#endif
