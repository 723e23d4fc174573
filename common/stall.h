/*
 * stall.h - how long this process was itself too busy to listen. Threads
 * that serve requests mark each callback (stall_enter/stall_leave); one
 * that ran STALL_MIN_MS or longer, and a timer that fired that late
 * (stall_record), is a stall. The node liveness rule adds the stall time
 * since a deadline's start to the deadline, so a heartbeat the server
 * failed to read while stalled never marks a node down. Any thread may
 * call; times are CLOCK_MONOTONIC milliseconds (time_mono_us() / 1000).
 */
#ifndef TRAINYARD_STALL_H
#define TRAINYARD_STALL_H

#include <stdint.h>

#define STALL_MIN_MS 1000

/* This thread starts a callback; returns the token for stall_leave(). */
int64_t stall_enter(void);
/* This thread's callback, begun at token, ended. */
void stall_leave(int64_t token);
/* Records a stall from start_ms to end_ms when at least STALL_MIN_MS. */
void stall_record(int64_t start_ms, int64_t end_ms);
/* Milliseconds between since_ms and now during which some marked thread
 * was stalled (the union of the stalls, ongoing ones included). */
int64_t stall_ms_since(int64_t since_ms);

#endif
