/* file.c - read a small file whole. */
#include "common/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "common/banned.h"

int file_read(const char *path, size_t max, char **ret_data)
{
    FILE *f = fopen(path, "rb");
    char *data;
    size_t n;

    if (f == NULL) {
        log_error("cannot read '%s': %s", path, strerror(errno));
        return ERR_INVALID;
    }
    data = xmalloc(max + 1);
    n = fread(data, 1, max + 1, f);
    fclose(f);
    if (n > max) {
        log_error("'%s' is larger than %zu bytes", path, max);
        free(data);
        return ERR_INVALID;
    }
    data[n] = '\0';
    *ret_data = data;
    return 0;
}

char *file_read_secret(const char *path, char *why, size_t why_size)
{
    char text[4097];
    size_t len = 0;
    size_t start = 0;
    size_t i;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        snprintf(why, why_size, "cannot read '%s': %s", path, strerror(errno));
        return NULL;
    }
    while (len < sizeof(text) - 1) {
        ssize_t n = read(fd, text + len, sizeof(text) - 1 - len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    if (len == sizeof(text) - 1) {
        snprintf(why, why_size, "'%s' is too long for a token", path);
        return NULL;
    }
    text[len] = '\0';
    while (len > 0 && strchr(" \t\r\n", text[len - 1]))
        text[--len] = '\0';
    while (start < len && strchr(" \t\r\n", text[start]))
        start++;
    if (start == len) {
        snprintf(why, why_size, "'%s' holds no token", path);
        return NULL;
    }
    for (i = start; i < len; i++) {
        if ((unsigned char)text[i] < 0x21 || text[i] == 0x7f) {
            snprintf(why, why_size, "'%s' must hold one token on one line", path);
            return NULL;
        }
    }
    return xstrdup(text + start);
}
