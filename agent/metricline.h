/*
 * metricline.h - the "##metric {...}" lines a task prints on stdout: turning
 * one into metric points (SPEC §4). Pure but for the steps object, which
 * the caller keeps per task; one thread at a time per steps object.
 */
#ifndef TRAINYARD_AGENT_METRICLINE_H
#define TRAINYARD_AGENT_METRICLINE_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

struct buf;

/*
 * Parses json, the len bytes after "##metric " (no NUL needed), as one
 * object of finite numeric members with names of 1..128 bytes and an
 * optional integer "step" in [0, 2^53]. Appends to out one JSON line
 * {"name","value","step","time"} per member, time being now_ms; a point
 * without "step" gets one past its name's last step, kept in steps (an
 * object the caller owns; updated here). Returns the number of points, or
 * 0 when the text is malformed: then out and steps are unchanged.
 */
int metricline_parse(const char *json, size_t len, int64_t now_ms, cJSON *steps, struct buf *out);

#endif
