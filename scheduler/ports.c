/* ports.c - port spaces shared by the nodes of one host (see ports.h). */
#include "scheduler/ports.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"
#include "common/banned.h"

/* FNV-1a of a host name. */
static uint32_t host_hash(const char *host)
{
    uint32_t h = 2166136261u;

    for (; *host; host++)
        h = (h ^ (unsigned char)*host) * 16777619u;
    return h;
}

/*
 * The slot of host in an open-addressing table of mask + 1 slots (space
 * indexes, -1 = empty): where it is, or the empty slot where it goes. A
 * pass builds this table every time, so it is a hash (linear in nodes),
 * not a sort.
 */
static int *slot_of(const struct port_spaces *ps, int *slots, uint32_t mask, const char *host)
{
    uint32_t i = host_hash(host) & mask;

    while (slots[i] >= 0 && strcmp(ps->spaces[slots[i]].host, host) != 0)
        i = (i + 1) & mask;
    return &slots[i];
}

void port_spaces_build(struct port_spaces *ps, const struct sched_state *state)
{
    uint32_t size = 16;
    int *slots;
    uint32_t k;
    int i;

    while (size < 2 * (uint32_t)state->n_nodes)
        size *= 2;
    slots = xmalloc(size * sizeof(*slots));
    for (k = 0; k < size; k++)
        slots[k] = -1;
    ps->spaces = xcalloc((size_t)state->n_nodes + 1, sizeof(*ps->spaces));
    ps->of_node = xcalloc((size_t)state->n_nodes + 1, sizeof(*ps->of_node));
    ps->n = 0;
    for (i = 0; i < state->n_nodes; i++) {
        const struct sched_node *n = &state->nodes[i];
        int *slot = slot_of(ps, slots, size - 1, n->host);
        struct port_space *s;
        int j;

        if (*slot < 0) {
            *slot = ps->n;
            ps->spaces[ps->n++].host = n->host;
        }
        s = &ps->spaces[*slot];
        ps->of_node[i] = s;
        for (j = 0; j < n->n_used_ports; j++)
            port_space_use(s, n->used_ports[j]);
    }
    for (i = 0; i < state->n_other_ports; i++) {
        int *slot = slot_of(ps, slots, size - 1, state->other_ports[i].host);

        if (*slot >= 0)
            port_space_use(&ps->spaces[*slot], state->other_ports[i].port);
    }
    free(slots);
}

void port_spaces_release(struct port_spaces *ps)
{
    int i;

    for (i = 0; i < ps->n; i++)
        free(ps->spaces[i].used);
    free(ps->spaces);
    free(ps->of_node);
    memset(ps, 0, sizeof(*ps));
}

bool port_space_used(const struct port_space *s, int port)
{
    int i;

    for (i = 0; i < s->n_used; i++) {
        if (s->used[i] == port)
            return true;
    }
    return false;
}

void port_space_use(struct port_space *s, int port)
{
    if (s->n_used == s->cap_used) {
        s->cap_used = s->cap_used ? 2 * s->cap_used : 4;
        s->used = xrealloc(s->used, (size_t)s->cap_used * sizeof(int));
    }
    s->used[s->n_used++] = port;
}
