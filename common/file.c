/* file.c - read a small file whole. */
#include "common/file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
