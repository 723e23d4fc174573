/*
 * server.h - `trainyard server`: the control plane process. Parses its
 * options, opens the store, serves the REST API with libmicrohttpd (its
 * own thread pool, epoll) and shuts down cleanly on SIGINT/SIGTERM.
 * Main thread only.
 */
#ifndef TRAINYARD_SERVER_H
#define TRAINYARD_SERVER_H

/* Runs the server; returns the process exit code (0 ok, 1 failure, 2 usage). */
int server_main(int argc, char **argv);

#endif
