/* ports.c - port spaces shared by the nodes of one host (see ports.h). */
#include "scheduler/ports.h"

#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"
#include "common/banned.h"

static int by_host(const void *a, const void *b, void *arg)
{
    const struct sched_state *state = arg;
    const int *x = a;
    const int *y = b;
    int cmp = strcmp(state->nodes[*x].host, state->nodes[*y].host);

    return cmp ? cmp : *x - *y;
}

static struct port_space *find_space(struct port_spaces *ps, const char *host)
{
    int lo = 0;
    int hi = ps->n - 1;

    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int cmp = strcmp(ps->spaces[mid].host, host);

        if (cmp == 0)
            return &ps->spaces[mid];
        if (cmp < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return NULL;
}

void port_spaces_build(struct port_spaces *ps, const struct sched_state *state)
{
    int *order = xcalloc((size_t)state->n_nodes + 1, sizeof(*order));
    int i;
    int k;

    ps->spaces = xcalloc((size_t)state->n_nodes + 1, sizeof(*ps->spaces));
    ps->of_node = xcalloc((size_t)state->n_nodes + 1, sizeof(*ps->of_node));
    ps->n = 0;
    for (i = 0; i < state->n_nodes; i++)
        order[i] = i;
    qsort_r(order, (size_t)state->n_nodes, sizeof(*order), by_host, (void *)state);
    for (i = 0; i < state->n_nodes; i++) {
        const struct sched_node *n = &state->nodes[order[i]];
        struct port_space *s;

        if (ps->n == 0 || strcmp(ps->spaces[ps->n - 1].host, n->host) != 0)
            ps->spaces[ps->n++].host = n->host;
        s = &ps->spaces[ps->n - 1];
        ps->of_node[order[i]] = s;
        for (k = 0; k < n->n_used_ports; k++)
            port_space_use(s, n->used_ports[k]);
    }
    free(order);
    for (i = 0; i < state->n_other_ports; i++) {
        struct port_space *s = find_space(ps, state->other_ports[i].host);

        if (s)
            port_space_use(s, state->other_ports[i].port);
    }
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
