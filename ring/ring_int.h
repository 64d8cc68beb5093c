/* ring_int.h -- shared inside ring/ only: the ring struct, the replica walk
 * and the rebuild of derived tables (ring.c), used by the token allocator
 * (ring_alloc.c). */
#ifndef CAIRN_RING_INT_H
#define CAIRN_RING_INT_H

#include "ring.h"

typedef struct ring_node {
    char *name;
    char *rack;
    uint64_t *tokens; /* ascending */
    uint32_t ntokens;
    uint32_t rack_id; /* derived: equal racks <=> equal ids, 0..nracks-1 */
} ring_node_t;

struct ring {
    uint32_t rf;
    uint32_t nnodes;
    uint32_t cap_nodes;
    ring_node_t *nodes;

    /* Derived by ring_rebuild_ after every membership change. */
    size_t nv;          /* vnodes = sum of ntokens */
    uint64_t *vtok;     /* [nv] ascending */
    uint32_t *vown;     /* [nv] owner node of vtok[i] */
    uint32_t *reps;     /* [nv * nrep] replica set of vnode i's range */
    uint32_t *walk;     /* [nv] vnodes inspected to build reps of vnode i */
    uint32_t nrep;      /* min(rf, nactive) */
    uint32_t nactive;   /* nodes holding at least one token */
    uint32_t nracks;    /* distinct racks over all nodes */
    uint32_t nracks_active; /* distinct racks over nodes holding tokens */
    double *own;        /* [nnodes] primary ownership */
    double *eff;        /* [nnodes] effective ownership */
};

/* A view of the vnode owners, optionally with one extra vnode (owner
 * ins_owner) inserted just before position ins: the allocator's "what if". */
typedef struct ring_view {
    const uint32_t *own;
    size_t nv;
    size_t ins; /* SIZE_MAX: no insertion */
    uint32_t ins_owner;
} ring_view_t;

/* Scratch space for replica walks, sized for one ring. */
typedef struct ring_walker {
    uint32_t *node_mark;
    uint32_t *rack_mark;
    uint32_t *skipped;
    uint32_t stamp;
} ring_walker_t;

void ring_walker_init_(ring_walker_t *w, const ring_t *r);
void ring_walker_deinit_(ring_walker_t *w);

/* The replica set for the range of view position `start`, written to out
 * (r->nrep entries); *steps_out = view positions inspected. */
uint32_t ring_walk_(const ring_t *r, ring_walker_t *w, const ring_view_t *v,
                    size_t start, uint32_t *out, uint32_t *steps_out);

/* Recompute every derived field from r->nodes. */
void ring_rebuild_(ring_t *r);

/* Append a node with no tokens (allocator scratch rings only); its index. */
uint32_t ring_append_node_(ring_t *r, const char *name, const char *rack);

/* Size of vnode i's range as a fraction of the ring (1.0 for a lone vnode). */
static inline double ring_range_frac_(const ring_t *r, size_t i)
{
    if (r->nv == 1) return 1.0;
    uint64_t prev = r->vtok[i == 0 ? r->nv - 1 : i - 1];
    return (double)(r->vtok[i] - prev) * 0x1p-64;
}

#endif /* CAIRN_RING_INT_H */
