/*
 * ports.h - port spaces for placement: nodes that advertise the same host
 * reach their tasks at the same addresses, so they share one space of
 * used ports (two agents on one machine must never hand out the same
 * host:port). Built per pass from a sched_state; owned by the pass. Any
 * thread; no I/O.
 */
#ifndef TRAINYARD_PORTS_H
#define TRAINYARD_PORTS_H

#include <stdbool.h>

#include "store/store.h"

/* The ports in use at one host. */
struct port_space {
    const char *host; /* borrowed from the sched_state */
    int *used;
    int n_used;
    int cap_used;
    bool in_gang; /* placement's mark: a node at this host is in the gang being placed */
};

struct port_spaces {
    struct port_space *spaces;
    int n;
    struct port_space **of_node; /* of_node[i]: the space of state->nodes[i] */
};

/* Groups state's nodes by host, with the ports their held tasks use and
 * those of state->other_ports at the same hosts. Linear in nodes. */
void port_spaces_build(struct port_spaces *ps, const struct sched_state *state);
void port_spaces_release(struct port_spaces *ps);
bool port_space_used(const struct port_space *s, int port);
/* Records port as used at s. */
void port_space_use(struct port_space *s, int port);

#endif
