/*
 * agent.h - `trainyard agent`: the node agent. It registers its node with
 * the server, heartbeats, serves the agent API (SPEC §3.5) to the server
 * only, starts each assigned task as a process group in its own working
 * directory with the environment of SPEC §4, and reports status, logs,
 * metrics and output files back, losing nothing while the server is away.
 *
 * One libuv loop on the main thread owns every task, process, timer and
 * the HTTP client (curl multi on the loop). The agent API runs on
 * libmicrohttpd's thread and hands each request to the loop.
 */
#ifndef TRAINYARD_AGENT_H
#define TRAINYARD_AGENT_H

/* Runs the agent; returns the process exit code (0 ok, 1 failure, 2 usage). */
int agent_main(int argc, char **argv);

#endif
