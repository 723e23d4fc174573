/*
 * fuzz_coding.c - Content-Encoding decoding of request bodies. The first
 * input byte picks the coding (bit 0: gzip or deflate) and a piece size
 * (the rest); the remaining bytes are the body. Properties: fed whole or in
 * pieces, the decoder gives the same result (and, when it is taken, the
 * same bytes), and a sink that stops at a limit is never handed more.
 */
#include "tests/fuzz/fuzz.h"

#include "common/buf.h"
#include "common/err.h"
#include "server/coding.h"

#define LIMIT 65536

struct sink {
    struct buf out;
    size_t over; /* bytes handed after the sink said stop */
    bool stopped;
};

static bool take(void *arg, const char *data, size_t len)
{
    struct sink *s = arg;

    if (s->stopped)
        s->over += len;
    buf_add(&s->out, data, len);
    if (s->out.len > LIMIT)
        s->stopped = true;
    return !s->stopped;
}

static int decode(enum coding_kind kind, const uint8_t *data, size_t size, size_t piece,
                  struct sink *s)
{
    struct coding c;
    size_t off = 0;
    int rc = 0;

    coding_init(&c, kind);
    while (rc == 0 && off < size && !s->stopped) {
        size_t n = size - off < piece ? size - off : piece;

        rc = coding_feed(&c, (const char *)data + off, n, take, s);
        off += n;
    }
    if (rc == 0 && !s->stopped)
        rc = coding_finish(&c);
    coding_release(&c);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    enum coding_kind kind;
    size_t piece;
    struct sink whole;
    struct sink parts;
    int rc_whole;
    int rc_parts;

    if (size < 1)
        return 0;
    kind = data[0] & 1 ? CODING_GZIP : CODING_DEFLATE;
    piece = (size_t)(data[0] >> 1) + 1;
    memset(&whole, 0, sizeof(whole));
    memset(&parts, 0, sizeof(parts));
    buf_init(&whole.out);
    buf_init(&parts.out);
    rc_whole = decode(kind, data + 1, size - 1, size, &whole);
    rc_parts = decode(kind, data + 1, size - 1, piece, &parts);
    FUZZ_ASSERT(rc_whole == 0 || rc_whole == ERR_INVALID, "rc %d", rc_whole);
    FUZZ_ASSERT(whole.over == 0 && parts.over == 0, "handed %zu/%zu bytes past a stop", whole.over,
                parts.over);
    FUZZ_ASSERT(whole.out.len <= LIMIT + 16384, "%zu bytes past the limit", whole.out.len);
    if (!whole.stopped && !parts.stopped) {
        FUZZ_ASSERT(rc_whole == rc_parts, "whole %d, in pieces of %zu %d", rc_whole, piece,
                    rc_parts);
        /* A refused body's partial output is thrown away: not compared. */
        FUZZ_ASSERT(rc_whole != 0 || (whole.out.len == parts.out.len &&
                                      (whole.out.len == 0 ||
                                       memcmp(whole.out.data, parts.out.data, whole.out.len) == 0)),
                    "whole and in pieces of %zu decode differently", piece);
    }
    buf_release(&whole.out);
    buf_release(&parts.out);
    return 0;
}
