/*
 * json.h - typed helpers over cJSON for parsing request bodies and reading
 * numbers safely (cJSON keeps every number as a double). Any thread may
 * call; trees are owned by whoever parsed or built them.
 */
#ifndef TRAINYARD_JSON_H
#define TRAINYARD_JSON_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Parses exactly len bytes of data (which must be followed by a NUL, as
 * struct buf guarantees) as one JSON value with nothing after it but white
 * space; refuses text json_text_ok() refuses, and numbers too large for a
 * double ("1e999", which cJSON reads as infinity). Returns the tree
 * (caller frees with cJSON_Delete) or NULL.
 */
cJSON *json_parse(const char *data, size_t len);
/*
 * True when data is valid UTF-8 with no NUL byte and no "\u0000" escape
 * inside a string (cJSON would silently cut the string there).
 */
bool json_text_ok(const char *data, size_t len);
/* The same, also naming in field (field_size bytes) the top-level member
 * where the fault is, or "" when it is outside any. */
bool json_text_check(const char *data, size_t len, char *field, size_t field_size);
/* True when item is a number with no fraction within [min, max]; sets *ret. */
bool json_int(const cJSON *item, int64_t min, int64_t max, int64_t *ret);
/* The first key that appears twice in object, or NULL (JSON allows
 * duplicates; cJSON keeps both and lookups see the first). */
const char *json_duplicate_key(const cJSON *object);
/* Compact text of item; the caller frees it with free(). */
char *json_print(const cJSON *item);
struct buf;
/* Appends s as a JSON string literal, escaped as json_print() would: for
 * JSON built as text where a tree would only be printed again. */
void json_buf_string(struct buf *b, const char *s);
/* Appends item's compact text, as json_print() writes it. */
void json_buf_value(struct buf *b, const cJSON *item);
/* Looks key up case-sensitively; NULL when absent. */
cJSON *json_get(const cJSON *object, const char *key);
/* The string value of key, or NULL when absent or not a string. */
const char *json_get_string(const cJSON *object, const char *key);
/* Adds a string, or JSON null when value is NULL. */
void json_add_string_or_null(cJSON *object, const char *key, const char *value);
/* Adds an RFC 3339 time, or null when ms is 0. */
void json_add_time(cJSON *object, const char *key, int64_t ms);
/* Parses text that the program wrote itself; aborts if it is not JSON. */
cJSON *json_parse_trusted(const char *text);

#endif
