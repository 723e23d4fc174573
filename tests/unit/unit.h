/*
 * unit.h - the unit test harness: assertion macros that print both values,
 * and the TEST() registration used by runner.c. Each test runs in its own
 * process with a timeout, so a crash or hang fails only that test.
 */
#ifndef TRAINYARD_UNIT_H
#define TRAINYARD_UNIT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UNIT_FAIL(...)                                                                             \
    do {                                                                                           \
        fprintf(stderr, "  %s:%d: ", __FILE__, __LINE__);                                          \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        exit(1);                                                                                   \
    } while (0)

#define ASSERT_TRUE(x)                                                                             \
    do {                                                                                           \
        if (!(x))                                                                                  \
            UNIT_FAIL("expected true: %s", #x);                                                    \
    } while (0)

#define ASSERT_EQ(a, b)                                                                            \
    do {                                                                                           \
        long long a_ = (long long)(a);                                                             \
        long long b_ = (long long)(b);                                                             \
        if (a_ != b_)                                                                              \
            UNIT_FAIL("%s == %s: %lld != %lld", #a, #b, a_, b_);                                   \
    } while (0)

#define ASSERT_STR_EQ(a, b)                                                                        \
    do {                                                                                           \
        const char *a_ = (a);                                                                      \
        const char *b_ = (b);                                                                      \
        if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0)                                       \
            UNIT_FAIL("%s == %s: \"%s\" != \"%s\"", #a, #b, a_ ? a_ : "(null)",                    \
                      b_ ? b_ : "(null)");                                                         \
    } while (0)

struct unit_test {
    const char *name;
    void (*fn)(void);
};

/* Each test file defines its list: UNIT_LIST(name) { {"t", fn}, ..., {NULL, NULL} }; */
#define UNIT_LIST(name) const struct unit_test name[]

#endif
