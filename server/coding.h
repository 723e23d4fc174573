/*
 * coding.h - request bodies sent with Content-Encoding gzip or deflate,
 * decoded as they arrive (RFC 9110 §8.4.1). The decoder owns its zlib
 * stream; whoever holds it calls it from one thread at a time (a
 * request's state, on MHD's threads).
 */
#ifndef TRAINYARD_CODING_H
#define TRAINYARD_CODING_H

#include <stdbool.h>
#include <stddef.h>
#include <zlib.h>

enum coding_kind {
    CODING_IDENTITY, /* no header, or "identity" */
    CODING_GZIP, /* "gzip" or "x-gzip": RFC 1952 members, one after another */
    CODING_DEFLATE, /* "deflate": the zlib format of RFC 1950 */
    CODING_UNKNOWN, /* anything else, a list of codings included */
};

/* The coding a Content-Encoding value names (NULL: none), case-insensitive. */
enum coding_kind coding_parse(const char *header);

/* One body's decoder. Embedded: coding_init() / coding_release(). */
struct coding {
    z_stream z;
    enum coding_kind kind;
    bool started; /* z is initialised */
    bool ended; /* the last stream ended; more input starts a gzip member */
};

/* Takes one decoded piece; false stops the decoding (e.g. over a limit). */
typedef bool (*coding_sink_fn)(void *arg, const char *data, size_t len);

/* kind is CODING_GZIP or CODING_DEFLATE. */
void coding_init(struct coding *c, enum coding_kind kind);
/*
 * Decodes len bytes of in, handing what comes out to sink(arg, ...) in
 * pieces. Returns 0 (also when the sink stopped it), or ERR_INVALID for
 * input that is not of the coding (a bad header or checksum, data after a
 * deflate stream's end).
 */
int coding_feed(struct coding *c, const char *in, size_t len, coding_sink_fn sink, void *arg);
/* After the last input: 0 when the data ended where a stream ends, else
 * ERR_INVALID (truncated, or nothing at all). */
int coding_finish(const struct coding *c);
void coding_release(struct coding *c);

#endif
