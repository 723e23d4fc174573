/* imageref.c - Docker image references: Docker's grammar, slightly wider. */
#include "common/imageref.h"

#include <stdio.h>
#include <string.h>

#include "common/banned.h"

static bool is_tag_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '.' || ch == '_' || ch == '-';
}

/* One path component of an image name: lowercase letters and digits,
 * separated by '.', '_' or '-' (Docker's grammar, slightly wider). */
static bool image_component_ok(const char *s, size_t len)
{
    size_t i;

    if (len == 0 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9')) ||
        !((s[len - 1] >= 'a' && s[len - 1] <= 'z') || (s[len - 1] >= '0' && s[len - 1] <= '9')))
        return false;
    for (i = 0; i < len; i++) {
        char ch = s[i];

        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' ||
              ch == '-'))
            return false;
    }
    return true;
}

/* A registry host, optionally with :port. */
static bool image_host_ok(const char *s, size_t len)
{
    size_t i;

    if (len == 0 || s[0] == '-' || s[0] == '.' || s[0] == ':')
        return false;
    for (i = 0; i < len; i++) {
        char ch = s[i];

        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '-' || ch == ':'))
            return false;
    }
    return true;
}

bool imageref_ok(const char *ref)
{
    size_t len = strlen(ref);
    const char *at = strchr(ref, '@');
    const char *end = at ? at : ref + len;
    const char *slash;
    const char *colon;
    const char *p = ref;
    size_t i;

    if (len == 0 || len > IMAGEREF_MAX)
        return false;
    if (at) {
        if (strncmp(at + 1, "sha256:", 7) != 0 || strlen(at + 8) != 64)
            return false;
        for (i = 0; at[8 + i]; i++) {
            if (!((at[8 + i] >= '0' && at[8 + i] <= '9') || (at[8 + i] >= 'a' && at[8 + i] <= 'f')))
                return false;
        }
    }
    /* The tag: after the last ':' that follows the last '/'. */
    slash = NULL;
    colon = NULL;
    for (i = 0; ref + i < end; i++) {
        if (ref[i] == '/')
            slash = ref + i;
        if (ref[i] == ':')
            colon = ref + i;
    }
    if (colon && (slash == NULL || colon > slash)) {
        size_t tag_len = (size_t)(end - colon - 1);

        if (tag_len == 0 || tag_len > 128 || colon[1] == '.' || colon[1] == '-')
            return false;
        for (i = 1; colon + i < end; i++) {
            if (!is_tag_char(colon[i]))
                return false;
        }
        end = colon;
    }
    /* The first component is a registry host when it has '.' or ':' or is localhost. */
    slash = memchr(p, '/', (size_t)(end - p));
    if (slash) {
        size_t n = (size_t)(slash - p);

        if (memchr(p, '.', n) || memchr(p, ':', n) || (n == 9 && memcmp(p, "localhost", 9) == 0)) {
            if (!image_host_ok(p, n))
                return false;
            p = slash + 1;
        }
    }
    while (p <= end) {
        const char *next = memchr(p, '/', (size_t)(end - p));
        size_t n = next ? (size_t)(next - p) : (size_t)(end - p);

        if (!image_component_ok(p, n))
            return false;
        if (next == NULL)
            break;
        p = next + 1;
    }
    return true;
}

/* The ':' that starts ref's tag (after the last '/', before any '@'), or NULL. */
static const char *tag_colon(const char *ref)
{
    const char *at = strchr(ref, '@');
    const char *end = at ? at : ref + strlen(ref);
    const char *slash = NULL;
    const char *colon = NULL;
    const char *p;

    for (p = ref; p < end; p++) {
        if (*p == '/')
            slash = p;
        if (*p == ':')
            colon = p;
    }
    return colon && (slash == NULL || colon > slash) ? colon : NULL;
}

void imageref_split(const char *ref, char *ret_name, char *ret_tag)
{
    const char *colon = tag_colon(ref);
    const char *at = strchr(ref, '@');

    if (at) {
        /* name@digest (a tag beside a digest is dropped: the digest wins) */
        snprintf(ret_name, IMAGEREF_MAX + 1, "%.*s%s", (int)(colon ? colon - ref : at - ref), ref,
                 at);
        ret_tag[0] = '\0';
    } else if (colon) {
        snprintf(ret_name, IMAGEREF_MAX + 1, "%.*s", (int)(colon - ref), ref);
        snprintf(ret_tag, IMAGEREF_MAX + 1, "%s", colon + 1);
    } else {
        snprintf(ret_name, IMAGEREF_MAX + 1, "%s", ref);
        snprintf(ret_tag, IMAGEREF_MAX + 1, "latest");
    }
}
