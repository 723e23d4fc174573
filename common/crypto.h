/*
 * crypto.h - the little cryptography trainyard needs, from OpenSSL's
 * libcrypto: random identifiers and secrets, SHA-256, and constant-time
 * comparison. Any thread may call.
 */
#ifndef TRAINYARD_CRYPTO_H
#define TRAINYARD_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>

#define CRYPTO_SHA256_HEX_LEN 65 /* 64 hex digits and a NUL */

/* Writes 2*nbytes random lowercase hex digits and a NUL into out. Aborts if
 * the system has no randomness (nothing safe can be done then). */
void crypto_random_hex(size_t nbytes, char *out);
/* SHA-256 of data as lowercase hex into out (CRYPTO_SHA256_HEX_LEN bytes). */
void crypto_sha256_hex(const void *data, size_t len, char *out);
/* Constant-time equality of two NUL-terminated strings of public length. */
bool crypto_equal(const char *a, const char *b);

/* Incremental SHA-256: new, update any number of times, then final (frees). */
struct crypto_sha256;
struct crypto_sha256 *crypto_sha256_new(void);
void crypto_sha256_update(struct crypto_sha256 *h, const void *data, size_t len);
void crypto_sha256_final(struct crypto_sha256 *h, char *out);
/* Frees an unfinished hash; NULL is a no-op. */
void crypto_sha256_free(struct crypto_sha256 *h);

#endif
