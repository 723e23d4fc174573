/* coding.c - streaming gzip and deflate decoding of request bodies. */
#include "server/coding.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/err.h"
#include "common/banned.h"

/* Decoded bytes handed to the sink at a time. */
#define CODING_CHUNK 16384

enum coding_kind coding_parse(const char *header)
{
    size_t len;

    if (header == NULL)
        return CODING_IDENTITY;
    while (*header == ' ' || *header == '\t')
        header++;
    len = strlen(header);
    while (len > 0 && (header[len - 1] == ' ' || header[len - 1] == '\t'))
        len--;
    if (len == 0 || (len == 8 && strncasecmp(header, "identity", 8) == 0))
        return CODING_IDENTITY;
    if ((len == 4 && strncasecmp(header, "gzip", 4) == 0) ||
        (len == 6 && strncasecmp(header, "x-gzip", 6) == 0))
        return CODING_GZIP;
    if (len == 7 && strncasecmp(header, "deflate", 7) == 0)
        return CODING_DEFLATE;
    return CODING_UNKNOWN;
}

void coding_init(struct coding *c, enum coding_kind kind)
{
    memset(c, 0, sizeof(*c));
    c->kind = kind;
}

/* The zlib window bits of the coding: 16 + 15 reads a gzip header, 15 a zlib one. */
static int window_bits(const struct coding *c)
{
    return c->kind == CODING_GZIP ? 16 + MAX_WBITS : MAX_WBITS;
}

int coding_feed(struct coding *c, const char *in, size_t len, coding_sink_fn sink, void *arg)
{
    unsigned char out[CODING_CHUNK];
    bool more_out = false; /* the last call filled out: zlib may hold more */

    c->z.next_in = (unsigned char *)(uintptr_t)in;
    c->z.avail_in = 0;
    for (;;) {
        int zrc;

        /* zlib counts input in uInt: a larger piece goes in parts. */
        if (c->z.avail_in == 0 && len > 0) {
            c->z.avail_in = len > (1u << 30) ? (1u << 30) : (uInt)len;
            len -= c->z.avail_in;
        }
        if (c->z.avail_in == 0 && !more_out)
            return 0;
        if (!c->started) {
            if (inflateInit2(&c->z, window_bits(c)) != Z_OK)
                return ERR_INTERNAL;
            c->started = true;
        } else if (c->ended) {
            /* Input after a stream's end: only gzip goes on, with its next member. */
            if (c->kind != CODING_GZIP || inflateReset2(&c->z, window_bits(c)) != Z_OK)
                return ERR_INVALID;
            c->ended = false;
        }
        c->z.next_out = out;
        c->z.avail_out = sizeof(out);
        zrc = inflate(&c->z, Z_NO_FLUSH);
        if (zrc == Z_MEM_ERROR)
            return ERR_INTERNAL;
        if (zrc != Z_OK && zrc != Z_STREAM_END && zrc != Z_BUF_ERROR)
            return ERR_INVALID;
        c->ended = zrc == Z_STREAM_END;
        more_out = c->z.avail_out == 0;
        if (c->z.avail_out < sizeof(out) &&
            !sink(arg, (const char *)out, sizeof(out) - c->z.avail_out))
            return 0;
        if (zrc == Z_BUF_ERROR && c->z.avail_out == sizeof(out))
            return c->z.avail_in == 0 && len == 0 ? 0 : ERR_INVALID; /* no progress */
    }
}

int coding_finish(const struct coding *c)
{
    return c->started && c->ended ? 0 : ERR_INVALID;
}

void coding_release(struct coding *c)
{
    if (c->started)
        inflateEnd(&c->z);
    c->started = false;
}
