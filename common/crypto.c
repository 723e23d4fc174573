/* crypto.c - random hex, SHA-256 and constant-time compare over libcrypto. */
#include "common/crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/banned.h"

struct crypto_sha256 {
    EVP_MD_CTX *ctx;
};

static void to_hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

void crypto_random_hex(size_t nbytes, char *out)
{
    unsigned char raw[64];

    if (nbytes > sizeof(raw) || RAND_bytes(raw, (int)nbytes) != 1) {
        fprintf(stderr, "fatal: no random bytes available\n");
        abort();
    }
    to_hex(raw, nbytes, out);
}

/* SHA-256, fetched once: OpenSSL 3 looks the algorithm up again at every
 * EVP_sha256() digest, which was 5 % of serving a cached GET. */
static EVP_MD *sha256_md;

static void sha256_fetch(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static const EVP_MD *sha256(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;

    pthread_once(&once, sha256_fetch);
    if (sha256_md == NULL) {
        fprintf(stderr, "fatal: SHA-256 is not available\n");
        abort();
    }
    return sha256_md;
}

struct crypto_sha256 *crypto_sha256_new(void)
{
    struct crypto_sha256 *h = malloc(sizeof(*h));

    if (h == NULL || (h->ctx = EVP_MD_CTX_new()) == NULL ||
        EVP_DigestInit_ex(h->ctx, sha256(), NULL) != 1) {
        fprintf(stderr, "fatal: cannot start a SHA-256 digest\n");
        abort();
    }
    return h;
}

void crypto_sha256_update(struct crypto_sha256 *h, const void *data, size_t len)
{
    if (EVP_DigestUpdate(h->ctx, data, len) != 1)
        abort();
}

void crypto_sha256_final(struct crypto_sha256 *h, char *out)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;

    if (EVP_DigestFinal_ex(h->ctx, md, &n) != 1)
        abort();
    to_hex(md, n, out);
    crypto_sha256_free(h);
}

void crypto_sha256_free(struct crypto_sha256 *h)
{
    if (h == NULL)
        return;
    EVP_MD_CTX_free(h->ctx);
    free(h);
}

void crypto_sha256_hex(const void *data, size_t len, char *out)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;

    if (EVP_Digest(data, len, md, &n, sha256(), NULL) != 1)
        abort();
    to_hex(md, n, out);
}

bool crypto_equal(const char *a, const char *b)
{
    size_t la = strlen(a);
    size_t lb = strlen(b);

    if (la != lb)
        return false;
    return CRYPTO_memcmp(a, b, la) == 0;
}
