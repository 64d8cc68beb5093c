/* coord_int.h -- shared inside coordinator/: the request and coordinator
 * structures (coord.c keeps them; coord_validate.c checks them). The
 * invariants they keep are listed at the top of coord.c.
 *
 * THREADING  loop thread only.
 */
#ifndef CAIRN_COORD_INT_H
#define CAIRN_COORD_INT_H

#include "coord.h"

#include <assert.h>
#include <inttypes.h>

#include "ring.h"

static_assert(COORD_MAX_REPLICAS == RING_MAX_RF + 1,
              "a replica set plus the pending replica of a ring change");
static_assert(COORD_MAX_REPLICAS <= 64, "slot field is 6 bits; slot masks are 64");
static_assert(COORD_MAX_WRITE_ATTEMPTS <= 64, "attempt field is 6 bits");

#define MSG_SLOT_BITS 6
#define MSG_ATTEMPT_BITS 6
#define MSG_SEQ_SHIFT (MSG_SLOT_BITS + MSG_ATTEMPT_BITS)
#define MSG_FIELD_MASK ((1u << MSG_SLOT_BITS) - 1)

/* Reads and background checks: the rounds (msg_id's attempt field). */
#define READ_ROUND_QUERY 0u
#define READ_ROUND_REPAIR 1u

#define PPM_ALWAYS 1000000u

typedef enum {
    REQ_WRITE = 1,
    REQ_READ = 2,
    REQ_BG = 3, /* a background read check: no client, no REPLY */
} req_kind_t;

typedef enum {
    PH_WRITE_SENDING = 1,
    PH_READ_QUERY = 2,
    PH_READ_REPAIR = 3,
    PH_DRAINING = 4, /* replied; waiting for late answers or the deadline */
    PH_BG_QUERY = 5,
    PH_BG_REPAIR = 6,
} req_phase_t;

typedef enum {
    SLOT_IDLE = 0,
    SLOT_PENDING = 1,
    SLOT_DONE = 2,
    SLOT_FAILED = 3,
} slot_state_t;

/* A read answer, copied. */
typedef struct read_slot {
    bool found; /* false: the replica holds nothing */
    eng_cell_t cell;
    kv_buf_t value;
} read_slot_t;

typedef struct req {
    uint64_t seq;
    uint64_t client_req_id; /* REQ_BG: its read's, a label only */
    req_kind_t kind;
    req_phase_t phase;
    coord_cl_t cl;
    uint32_t n, need; /* REQ_BG: need = the extra replicas it reads */
    uint32_t npending; /* writes: the last npending replicas are pending */
    uint32_t replicas[COORD_MAX_REPLICAS];
    bool alive[COORD_MAX_REPLICAS];
    uint8_t slot[COORD_MAX_REPLICAS]; /* slot_state_t, current round */
    uint32_t attempt;                 /* the current round */
    uint32_t acks;        /* write: DONE this attempt; read: query answers */
    uint32_t outstanding; /* PENDING slots */
    uint64_t hinted;      /* write: slots hinted this attempt (bit = slot) */
    uint64_t queried;     /* read, REQ_BG: the read's query set */
    uint32_t failovers;   /* read: queried replicas that failed and were
                             replaced by another live one */
    bool beaten;          /* write: gave up, its stamp superseded */
    uint64_t timeout_ms;
    uint64_t deadline;
    size_t heap_idx;
    struct req *hnext;
    kv_buf_t key;
    /* write: the cell being written; read: the winner once resolved;
     * REQ_BG: the read's winner, then the newest cell seen */
    eng_cell_t cell;
    kv_buf_t value;
    bool have_cell;
    read_slot_t *rs; /* read, REQ_BG: n answers */
} req_t;

struct coord {
    hlc_t *hlc;
    uint64_t next_seq;
    /* requests by seq */
    req_t **buckets;
    size_t nbuckets; /* power of two */
    size_t count;
    /* requests by deadline */
    req_t **heap;
    size_t heap_cap;
    /* output */
    coord_action_t *acts;
    kv_buf_t *act_bufs;
    size_t nacts, acts_cap;
    /* background checks */
    uint32_t ppm[4];
    uint32_t bg_max;
    uint32_t bg_inflight; /* REQ_BG held */
    kv_rng_t rng;
    coord_stats_t st;
};

#define SLOT_BIT(i) (UINT64_C(1) << (i))

static inline uint32_t popcount64(uint64_t x) { return (uint32_t)__builtin_popcountll(x); }

/* coord.c: the deadline heap's order and the request table. */
bool coord_heap_less(const req_t *a, const req_t *b);
size_t coord_bucket_of(const coord_t *c, uint64_t seq);
req_t *coord_table_find(const coord_t *c, uint64_t seq);

#endif /* CAIRN_COORD_INT_H */
