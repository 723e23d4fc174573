/*
 * fuzz.h - what the libFuzzer targets in tests/fuzz/ share. Each
 * fuzz_<target>.c defines LLVMFuzzerTestOneInput; `make fuzz` and `make
 * fuzz-smoke` run them on the seeds in tests/fuzz/<target>/. A target
 * checks properties with FUZZ_ASSERT, which aborts (a crash to libFuzzer)
 * and says what failed.
 */
#ifndef TRAINYARD_FUZZ_H
#define TRAINYARD_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(cond, ...)                                                                     \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: %s: ", __FILE__, __LINE__, #cond);                             \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* A NUL-terminated copy of the input, as the server's body buffers are;
 * the caller frees it. */
static inline char *fuzz_text(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);

    if (s == NULL)
        abort();
    memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

#endif
