/*
 * err.h - the one error vocabulary of trainyard.
 *
 * Actions return 0 or a negative ERR_* value; only api/ turns these into
 * HTTP statuses. err_str() names a code for logs. Any thread may call.
 */
#ifndef TRAINYARD_ERR_H
#define TRAINYARD_ERR_H

enum err {
    ERR_OK = 0,
    ERR_INVALID = -1, /* bad input: 400 invalid_argument */
    ERR_UNAUTHENTICATED = -2, /* no or unknown credentials: 401 */
    ERR_PERMISSION = -3, /* credentials lack the role: 403 */
    ERR_NOT_FOUND = -4, /* 404 */
    ERR_CONFLICT = -5, /* the state forbids it: 409 */
    ERR_TOO_LARGE = -6, /* 413 */
    ERR_MEDIA_TYPE = -7, /* 415 */
    ERR_UNAVAILABLE = -8, /* shutting down or a peer is away: 503 */
    ERR_INTERNAL = -9, /* a bug or an I/O failure: 500 */
    ERR_NO_SPACE = -10, /* the disk (or quota) is full: 507 insufficient_storage */
    ERR_TOO_MANY = -11, /* a limit on what one client or run may hold: 429 */
};

/* Returns a static lowercase name for code ("invalid_argument", ...). */
const char *err_str(int code);
/* The code for a failed file operation's errno: ERR_NO_SPACE for ENOSPC and
 * EDQUOT, else ERR_INTERNAL. */
int err_from_errno(int errnum);

#endif
