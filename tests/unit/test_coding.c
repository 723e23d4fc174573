/* test_coding.c - Content-Encoding decoding, fed in pieces of every size. */
#include "tests/unit/unit.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "common/buf.h"
#include "common/err.h"
#include "server/coding.h"

static bool collect(void *arg, const char *data, size_t len)
{
    buf_add(arg, data, len);
    return true;
}

/* Compresses in with deflateInit2's window bits wbits into *ret. */
static void compress_to(const char *in, size_t len, int wbits, struct buf *ret)
{
    z_stream z;
    size_t bound;

    memset(&z, 0, sizeof(z));
    ASSERT_EQ(deflateInit2(&z, 6, Z_DEFLATED, wbits, 8, Z_DEFAULT_STRATEGY), Z_OK);
    bound = deflateBound(&z, (uLong)len);
    buf_grow(ret, bound);
    z.next_in = (unsigned char *)(uintptr_t)in;
    z.avail_in = (uInt)len;
    z.next_out = (unsigned char *)ret->data + ret->len;
    z.avail_out = (uInt)bound;
    ASSERT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
    ret->len += bound - z.avail_out;
    deflateEnd(&z);
}

/* Decodes enc fed piece bytes at a time; returns the rc, output in *out. */
static int decode(enum coding_kind kind, const struct buf *enc, size_t piece, struct buf *out)
{
    struct coding c;
    size_t off;
    int rc = 0;

    coding_init(&c, kind);
    for (off = 0; off < enc->len && rc == 0; off += piece) {
        size_t n = enc->len - off < piece ? enc->len - off : piece;

        rc = coding_feed(&c, enc->data + off, n, collect, out);
    }
    if (rc == 0)
        rc = coding_finish(&c);
    coding_release(&c);
    return rc;
}

static void parses_the_header(void)
{
    ASSERT_EQ(coding_parse(NULL), CODING_IDENTITY);
    ASSERT_EQ(coding_parse(" identity "), CODING_IDENTITY);
    ASSERT_EQ(coding_parse("GZIP"), CODING_GZIP);
    ASSERT_EQ(coding_parse("x-gzip"), CODING_GZIP);
    ASSERT_EQ(coding_parse("deflate\t"), CODING_DEFLATE);
    ASSERT_EQ(coding_parse("br"), CODING_UNKNOWN);
    ASSERT_EQ(coding_parse("gzip, br"), CODING_UNKNOWN);
    ASSERT_EQ(coding_parse("gzipx"), CODING_UNKNOWN);
}

static void decodes_in_any_pieces(void)
{
    static const size_t pieces[] = { 1, 7, 4096, 1 << 20 };
    size_t n = 200000; /* over the decoder's 16 KiB chunk, compressible */
    char *plain = malloc(n);
    size_t i;
    size_t p;

    for (i = 0; i < n; i++)
        plain[i] = (char)("abcdefgh"[(i * 7 + i / 100) % 8]);
    for (p = 0; p < sizeof(pieces) / sizeof(pieces[0]); p++) {
        struct buf gz;
        struct buf zl;
        struct buf out;

        buf_init(&gz);
        buf_init(&zl);
        buf_init(&out);
        /* two gzip members back to back */
        compress_to(plain, n / 2, 16 + MAX_WBITS, &gz);
        compress_to(plain + n / 2, n - n / 2, 16 + MAX_WBITS, &gz);
        compress_to(plain, n, MAX_WBITS, &zl);
        ASSERT_EQ(decode(CODING_GZIP, &gz, pieces[p], &out), 0);
        ASSERT_EQ(out.len, n);
        ASSERT_TRUE(memcmp(out.data, plain, n) == 0);
        buf_reset(&out);
        ASSERT_EQ(decode(CODING_DEFLATE, &zl, pieces[p], &out), 0);
        ASSERT_EQ(out.len, n);
        ASSERT_TRUE(memcmp(out.data, plain, n) == 0);
        /* a truncated stream, and a deflate stream with more after it */
        gz.len -= 3;
        ASSERT_EQ(decode(CODING_GZIP, &gz, pieces[p], &out), ERR_INVALID);
        buf_add(&zl, "x", 1);
        ASSERT_EQ(decode(CODING_DEFLATE, &zl, pieces[p], &out), ERR_INVALID);
        buf_release(&gz);
        buf_release(&zl);
        buf_release(&out);
    }
    free(plain);
}

static bool stop_at_10k(void *arg, const char *data, size_t len)
{
    size_t *total = arg;

    (void)data;
    *total += len;
    return *total < 10000;
}

static void the_sink_stops_it(void)
{
    size_t n = 1 << 22;
    char *zeros = calloc(1, n);
    struct buf gz;
    struct coding c;
    size_t total = 0;

    buf_init(&gz);
    compress_to(zeros, n, 16 + MAX_WBITS, &gz);
    coding_init(&c, CODING_GZIP);
    ASSERT_EQ(coding_feed(&c, gz.data, gz.len, stop_at_10k, &total), 0);
    ASSERT_TRUE(total >= 10000 && total < 40000);
    coding_release(&c);
    buf_release(&gz);
    free(zeros);
}

UNIT_LIST(coding_tests) = {
    { "coding/parses_the_header", parses_the_header },
    { "coding/decodes_in_any_pieces", decodes_in_any_pieces },
    { "coding/the_sink_stops_it", the_sink_stops_it },
    { NULL, NULL },
};
