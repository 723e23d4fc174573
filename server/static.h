/*
 * static.h - the dashboard's files (web/ and the npm packages it uses),
 * built into the binary by the Makefile and served at "/" and
 * "/static/NAME". They hold no secrets: the page asks for a token and
 * sends it with every API call. Read-only data: any thread.
 */
#ifndef TRAINYARD_STATIC_H
#define TRAINYARD_STATIC_H

#include <stddef.h>

struct static_file {
    const char *name; /* "index.html", "app.js", "uPlot.min.css", ... */
    const char *data;
    const char *end;
};

/* Generated: every embedded file, ended by a {NULL} entry. */
extern const struct static_file static_files[];

#endif
