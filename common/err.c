/* err.c - names of the ERR_* codes. */
#include <errno.h>

#include "common/err.h"
#include "common/banned.h"

const char *err_str(int code)
{
    switch (code) {
    case ERR_OK:
        return "ok";
    case ERR_INVALID:
        return "invalid_argument";
    case ERR_UNAUTHENTICATED:
        return "unauthenticated";
    case ERR_PERMISSION:
        return "permission_denied";
    case ERR_NOT_FOUND:
        return "not_found";
    case ERR_CONFLICT:
        return "conflict";
    case ERR_TOO_LARGE:
        return "payload_too_large";
    case ERR_MEDIA_TYPE:
        return "unsupported_media_type";
    case ERR_UNAVAILABLE:
        return "unavailable";
    case ERR_NO_SPACE:
        return "insufficient_storage";
    case ERR_TOO_MANY:
        return "too_many_requests";
    default:
        return "internal";
    }
}

int err_from_errno(int errnum)
{
    return errnum == ENOSPC || errnum == EDQUOT ? ERR_NO_SPACE : ERR_INTERNAL;
}
