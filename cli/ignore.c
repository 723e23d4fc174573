/*
 * ignore.c - .trainyardignore: which paths of a source directory stay out
 * of its snapshot, with the syntax of .gitignore:
 *
 * - blank lines and lines starting with '#' are ignored ("\#" for a
 *   literal '#'); trailing spaces are dropped unless escaped with '\';
 * - a leading '!' re-includes what an earlier pattern excluded ("\!" for a
 *   literal '!'); the last matching pattern decides; nothing inside an
 *   excluded directory can be re-included, because it is never visited;
 * - a trailing '/' makes the pattern match directories only;
 * - a '/' at the start or in the middle anchors the pattern to the root,
 *   where it matches the whole relative path; otherwise it matches the
 *   last component (the base name) at any depth;
 * - '*', '?' and '[...]' never match '/', through fnmatch(3); a component
 *   "**" matches any number of components: "**" + "/x" at any depth,
 *   "a/" + "**" everything inside a (not a itself), "a/" + "**" + "/b"
 *   with zero or more directories between.
 */
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/err.h"
#include "common/xalloc.h"
#include "common/banned.h"

/* A larger file is certainly a mistake (a binary, a log). */
#define IGNORE_FILE_MAX (1 << 20)
/* Components of a pattern or a path considered; deeper ones never match. */
#define MAX_PARTS 128

struct rule {
    char *pattern; /* anchored: the whole path pattern; else a base-name pattern */
    bool negate;
    bool dir_only;
    bool anchored;
};

struct cli_ignore {
    struct rule *rules;
    size_t count;
    size_t cap;
};

/* Splits s (modified in place) at '/' into at most MAX_PARTS parts. */
static size_t split(char *s, char **parts)
{
    size_t n = 0;
    char *p = s;

    for (;;) {
        char *slash = strchr(p, '/');

        if (n == MAX_PARTS)
            return MAX_PARTS + 1;
        parts[n++] = p;
        if (slash == NULL)
            return n;
        *slash = '\0';
        p = slash + 1;
    }
}

/* Matches pattern components against path components, "**" included. */
static bool match_parts(char **pat, size_t np, char **path, size_t ns)
{
    size_t skip;

    if (np == 0)
        return ns == 0;
    if (strcmp(pat[0], "**") == 0) {
        /* A trailing "**" matches what is inside, so at least one part. */
        if (np == 1)
            return ns >= 1;
        for (skip = 0; skip <= ns; skip++) {
            if (match_parts(pat + 1, np - 1, path + skip, ns - skip))
                return true;
        }
        return false;
    }
    if (ns == 0 || fnmatch(pat[0], path[0], FNM_PATHNAME) != 0)
        return false;
    return match_parts(pat + 1, np - 1, path + 1, ns - 1);
}

static bool rule_matches(const struct rule *r, const char *relpath, bool is_dir)
{
    char *pat_copy;
    char *path_copy;
    char *pat[MAX_PARTS];
    char *path[MAX_PARTS];
    size_t np;
    size_t ns;
    bool hit = false;

    if (r->dir_only && !is_dir)
        return false;
    if (!r->anchored) {
        const char *base = strrchr(relpath, '/');

        return fnmatch(r->pattern, base ? base + 1 : relpath, FNM_PATHNAME) == 0;
    }
    if (strstr(r->pattern, "**") == NULL)
        return fnmatch(r->pattern, relpath, FNM_PATHNAME) == 0;
    pat_copy = xstrdup(r->pattern);
    path_copy = xstrdup(relpath);
    np = split(pat_copy, pat);
    ns = split(path_copy, path);
    if (np <= MAX_PARTS && ns <= MAX_PARTS)
        hit = match_parts(pat, np, path, ns);
    free(pat_copy);
    free(path_copy);
    return hit;
}

/* Adds the rule on one line (len bytes, no newline), if it holds one. */
static void add_line(struct cli_ignore *ig, const char *line, size_t len)
{
    struct rule r;
    char *p;
    size_t n;

    memset(&r, 0, sizeof(r));
    if (len > 0 && line[len - 1] == '\r')
        len--;
    /* Trailing spaces go, unless the last one is escaped. */
    while (len > 0 && line[len - 1] == ' ' && !(len > 1 && line[len - 2] == '\\'))
        len--;
    if (len == 0 || line[0] == '#')
        return;
    if (line[0] == '!') {
        r.negate = true;
        line++;
        len--;
    } else if (line[0] == '\\' && len > 1 && (line[1] == '#' || line[1] == '!')) {
        line++;
        len--;
    }
    p = xstrndup(line, len);
    n = len;
    if (n > 0 && p[n - 1] == '/') {
        r.dir_only = true;
        p[--n] = '\0';
    }
    if (strchr(p, '/'))
        r.anchored = true;
    if (p[0] == '/')
        memmove(p, p + 1, n--);
    if (n == 0) {
        free(p);
        return;
    }
    r.pattern = p;
    if (ig->count == ig->cap) {
        ig->cap = ig->cap ? ig->cap * 2 : 16;
        ig->rules = xrealloc(ig->rules, ig->cap * sizeof(*ig->rules));
    }
    ig->rules[ig->count++] = r;
}

struct cli_ignore *cli_ignore_parse(const char *text, size_t len)
{
    struct cli_ignore *ig = xcalloc(1, sizeof(*ig));
    const char *p = text;
    const char *end = text + len;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);

        add_line(ig, p, n);
        p += n + 1;
    }
    return ig;
}

int cli_ignore_load(const char *path, struct cli_ignore **ret)
{
    struct buf text;
    char chunk[8192];
    ssize_t n;
    int fd;
    int rc = 0;

    buf_init(&text);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno != ENOENT) {
            cli_fail("cannot open '%s': %s", path, strerror(errno));
            rc = ERR_INTERNAL;
        }
        goto out;
    }
    for (;;) {
        n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            cli_fail("cannot read '%s': %s", path, strerror(errno));
            rc = ERR_INTERNAL;
            goto err_close_fd;
        }
        if (n == 0)
            break;
        if (text.len + (size_t)n > IGNORE_FILE_MAX) {
            cli_fail("'%s' is larger than %d bytes", path, IGNORE_FILE_MAX);
            rc = ERR_INTERNAL;
            goto err_close_fd;
        }
        buf_add(&text, chunk, (size_t)n);
    }
err_close_fd:
    close(fd);
out:
    if (rc == 0)
        *ret = cli_ignore_parse(text.data, text.len);
    buf_release(&text);
    return rc;
}

bool cli_ignore_match(const struct cli_ignore *ig, const char *relpath, bool is_dir)
{
    size_t i = ig->count;

    /* The last matching rule decides, so look from the end. */
    while (i-- > 0) {
        if (rule_matches(&ig->rules[i], relpath, is_dir))
            return !ig->rules[i].negate;
    }
    return false;
}

void cli_ignore_free(struct cli_ignore *ig)
{
    size_t i;

    if (ig == NULL)
        return;
    for (i = 0; i < ig->count; i++)
        free(ig->rules[i].pattern);
    free(ig->rules);
    free(ig);
}
