/* gossip_int.h -- shared inside gossip/ only: the wire codec (codec.c),
 * phi internals (phi.c), the member table and the gossip_t itself
 * (gossip.c, gossip_probe.c, gossip_bcast.c, gossip_pushpull.c).
 *
 * Nothing here is part of the contract other modules code against; tests
 * include it to reach the codec and the validator's view of the state.
 */
#ifndef CAIRN_GOSSIP_INT_H
#define CAIRN_GOSSIP_INT_H

#include <msgpack.h>

#include "gossip.h"

/* ---- wire format (docs/gossip.md) ------------------------------------- */

#define GW_MAGIC 0x43474f53u /* "CGOS": first element of every body */
#define GW_MAX_NODE_ID 64u   /* node ids are 32 hex chars; room to spare */
#define GW_MAX_MESSAGE 1024u /* a refusal's message */
/* Room kept for the updates array header (array 16: 3 bytes). */
#define GW_UPDATES_HDR 3u

typedef enum {
    GW_PING = 1,
    GW_ACK = 2,
    GW_PING_REQ = 3,
    GW_NACK = 4,
    GW_GOSSIP = 5,
} gw_type_t;

typedef enum {
    GW_UPD_ALIVE = 1,
    GW_UPD_SUSPECT = 2,
    GW_UPD_DEAD = 3,
} gw_upd_kind_t;

typedef enum {
    GW_PP_REQUEST = 1,
    GW_PP_REPLY = 2,
    GW_PP_REFUSE = 3,
} gw_pp_kind_t;

/* Why a body was not accepted. */
typedef enum {
    GW_OK = 0,
    GW_MALFORMED = 1,
    GW_VERSION = 2, /* well-formed prefix, another protocol version */
} gw_result_t;

/* Announced state of one member: an alive update, a push-pull record. */
typedef struct gw_state {
    kv_slice_t name, node_id, host, rack;
    uint16_t port, client_port, admin_port;
    uint64_t generation, incarnation;
    uint32_t status;          /* gossip_status_t */
    uint32_t ntokens;
    const uint64_t *tokens;   /* encoding: ntokens values */
    const uint8_t *tokens_be; /* decoding: 8 * ntokens big-endian bytes */
    uint64_t load;
    uint32_t liveness;        /* push-pull records only (gossip_liveness_t) */
    /* A compact alive (updates only): the tokens are left out and only
     * their digest (gw_tokens_digest) travels, for a member whose full
     * alive does not fit a datagram. ntokens is 0 then. */
    bool compact;
    uint64_t tokens_digest;
} gw_state_t;

static inline uint64_t gw_token_at(const gw_state_t *s, uint32_t i)
{
    if (s->tokens) return s->tokens[i];
    uint64_t v;
    memcpy(&v, s->tokens_be + 8u * i, sizeof v);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

/* One piggybacked update. ALIVE: st (name, generation, incarnation are
 * st's). SUSPECT/DEAD: name, generation, incarnation, from. */
typedef struct gw_update {
    uint32_t kind; /* gw_upd_kind_t */
    kv_slice_t name, from;
    uint64_t generation, incarnation;
    gw_state_t st;
} gw_update_t;

/* Every datagram's header: who sent it and where to answer. */
typedef struct gw_head {
    uint32_t type; /* gw_type_t */
    kv_slice_t cluster, name, node_id, host;
    uint64_t generation;
    uint16_t port;
} gw_head_t;

/* A whole datagram, decoded. */
typedef struct gw_msg {
    gw_head_t h;
    uint64_t seq;                 /* PING, ACK, PING_REQ, NACK */
    kv_slice_t target;            /* PING, PING_REQ */
    kv_slice_t target_host;       /* PING_REQ */
    uint16_t target_port;         /* PING_REQ */
    bool has_notice;              /* PING: the sender holds the target as */
    uint32_t notice_kind;         /* GW_UPD_SUSPECT or GW_UPD_DEAD */
    uint64_t notice_gen, notice_inc; /* at this (generation, incarnation) */
    const msgpack_object *updates; /* raw; gw_update_decode each */
    uint32_t nupdates;
} gw_msg_t;

/* A push-pull body, decoded. */
typedef struct gw_pp {
    uint32_t kind; /* gw_pp_kind_t */
    uint32_t version;
    kv_slice_t cluster;        /* REQUEST, REPLY */
    uint32_t rf;
    gw_state_t self;
    const msgpack_object *records; /* raw; gw_state_decode each */
    uint32_t nrecords;
    uint32_t status;           /* REFUSE: kv_status_t */
    kv_slice_t message;        /* REFUSE */
} gw_pp_t;

/* Holds what a decoded body points into (besides the input bytes). */
typedef struct gw_unpacked {
    msgpack_unpacked up;
    bool live;
} gw_unpacked_t;

void gw_unpacked_init(gw_unpacked_t *u);
void gw_unpacked_release(gw_unpacked_t *u);

/* Decode a datagram (every update is checked too). The result points into
 * data and u; release u when done. */
gw_result_t gw_decode_msg(const uint8_t *data, size_t len, gw_unpacked_t *u,
                          gw_msg_t *out);
gw_result_t gw_update_decode(const msgpack_object *o, gw_update_t *out);
gw_result_t gw_decode_pp(const uint8_t *data, size_t len, gw_unpacked_t *u,
                         gw_pp_t *out);
/* One push-pull record (with liveness). */
gw_result_t gw_state_decode(const msgpack_object *o, bool with_liveness,
                            gw_state_t *out);

/* Encoding. A datagram is written as: gw_pack_msg_head (array header, the
 * header and the type's fields), then gw_pack_updates_hdr(k) and k raw
 * updates from gw_encode_update_*. */
void gw_pack_msg_head(msgpack_packer *pk, const gw_msg_t *m);
void gw_pack_updates_hdr(msgpack_packer *pk, uint32_t n);
void gw_encode_alive(kv_buf_t *b, const gw_state_t *st);
void gw_encode_alive_compact(kv_buf_t *b, const gw_state_t *st);
/* XXH3-64 of the tokens as 8-byte big-endian values, back to back. */
uint64_t gw_tokens_digest(const uint64_t *tokens, uint32_t n);
void gw_encode_suspect_dead(kv_buf_t *b, uint32_t kind, kv_slice_t name,
                            uint64_t generation, uint64_t incarnation,
                            kv_slice_t from);
/* Whole push-pull bodies: request/reply start (records follow with
 * gw_pack_state(..., true)), and a refusal. */
void gw_pack_pp_head(msgpack_packer *pk, uint32_t kind, kv_slice_t cluster,
                     uint32_t rf, const gw_state_t *self, uint32_t nrecords);
void gw_pack_state(msgpack_packer *pk, const gw_state_t *st, bool with_liveness);
void gw_encode_refusal(kv_buf_t *b, kv_status_t status, const char *message);

/* A packer writing into a kv_buf_t. */
void gw_packer_init(msgpack_packer *pk, kv_buf_t *b);

/* ---- phi internals ------------------------------------------------------ */

/* phi of a standardised gap z: -log10(P(Z > z)), finite, monotone. */
double gossip_phi_of_z(double z);
/* The z at which gossip_phi_of_z reaches phi. */
double gossip_phi_z_for(double phi);
/* Record an arrival without taking the gap as a sample (the gap spans
 * this node's own stall). */
void gossip_phi_mark(gossip_phi_t *p, uint64_t now_ms);
/* Gaps in the window now. */
uint32_t gossip_phi_gaps(const gossip_phi_t *p);
/* Change the mean assumed before the first gap (used until samples come). */
void gossip_phi_set_first_estimate(gossip_phi_t *p, uint32_t first_estimate_ms);
/* The time at which phi reaches the z from gossip_phi_z_for (no sample
 * yet: +inf). */
double gossip_phi_cross_ms(const gossip_phi_t *p, double z);
bool gossip_phi_has_sample(const gossip_phi_t *p);

/* ---- the member table --------------------------------------------------- */

typedef struct member {
    char *name, *node_id, *host, *rack;
    size_t name_len;
    uint16_t port, client_port, admin_port;
    uint64_t generation, incarnation;
    gossip_status_t status;
    uint64_t *tokens;
    uint32_t ntokens;
    uint64_t load_bytes;
    gossip_liveness_t liveness;
    bool self;
    bool up;        /* as last reported by an event */
    bool phi_hold;  /* own stall: phi convicts nobody until the next sample */
    bool heard;     /* a datagram or push-pull came from it */
    uint64_t last_heard_ms;
    gossip_phi_t *phi;
    double down_at; /* phi reaches the threshold at this time (+inf: never) */
    /* suspicion (liveness == SUSPECT) */
    uint64_t susp_start;          /* local time; pushed back by stalls */
    uint64_t susp_min, susp_max;  /* ms */
    uint32_t susp_k, susp_n;      /* confirmations counted / received */
    uint64_t susp_first;          /* hash of the first suspector's name */
    uint64_t *susp_from;          /* hashes of the confirmers (susp_k cap) */
    /* dissemination */
    int32_t bq;                   /* broadcast queue entry, -1 = none */
    uint64_t conflict_seen;       /* hash of the last conflicting node id */
} member_t;

/* ---- broadcast queue ---------------------------------------------------- */

typedef struct bq_ent {
    uint32_t member;    /* the member the update is about */
    uint32_t transmits;
    int32_t prev, next; /* within the bucket of its transmit count */
    kv_buf_t bytes;     /* the encoded update */
} bq_ent_t;

typedef struct bq {
    bq_ent_t *ents;
    uint32_t n, cap;     /* slots used (live + free) and allocated */
    int32_t free_head;   /* free slots chained by next */
    uint32_t live;
    int32_t *head;       /* per transmit count */
    uint32_t nbuckets;
} bq_t;

/* ---- probes, relays, push-pulls ---------------------------------------- */

/* Members in a random order, taken in turn, reshuffled on every pass
 * (probe targets, gossip targets). */
typedef struct rr {
    uint32_t *v;
    uint32_t len, pos, cap;
} rr_t;

typedef struct probe {
    bool active;
    bool acked;
    bool indirect_sent;
    uint32_t member;
    uint64_t seq;
    uint64_t gen, inc;      /* the target's record when probed */
    uint64_t indirect_at, end_at;
    uint32_t reqs_sent, nacks;
} probe_t;

#define GOSSIP_MAX_RELAYS 32u
typedef struct relay {
    bool used;
    uint64_t seq;        /* our ping to the target */
    uint64_t origin_seq; /* the origin's probe */
    uint64_t deadline;   /* nack then */
    char *origin_host;
    uint16_t origin_port;
    char *origin_name;
} relay_t;

#define GOSSIP_PP_PENDING 32u
typedef struct pp_pending {
    uint64_t id; /* 0 = free */
    char *host;
    uint16_t port;
    char *target;
} pp_pending_t;

#define GOSSIP_DISCOVERY_SLOTS 16u
/* Recent discovery push-pulls: at most one per name and
 * GOSSIP_DISCOVERY_SLOTS in all per seed_interval. */
typedef struct discovery {
    bool used;
    uint64_t name_hash;
    uint64_t at;
} discovery_t;

typedef struct seed {
    char *host;
    uint16_t port;
} seed_t;

struct gossip {
    gossip_config_t cfg;
    uint32_t phi_first;  /* phi's first estimate now: grows with N */
    char *cluster;
    kv_rng_t rng;
    double z_thr; /* phi_threshold as a standardised gap */
    double scan_at; /* no up member's phi can cross the threshold before */

    member_t **m; /* m[0] is this node */
    uint32_t n, mcap;
    uint32_t cnt[3]; /* other members by liveness */
    uint32_t *hidx; /* open addressing over names: index + 1, 0 = empty */
    uint32_t hcap;

    /* probing */
    rr_t probe_rr;
    probe_t probe;
    uint64_t next_probe_at;
    uint64_t next_dead_probe_at;
    uint32_t dead_cursor;
    uint32_t awareness;
    uint64_t seq;
    relay_t relays[GOSSIP_MAX_RELAYS];

    /* dissemination */
    bq_t bq;
    rr_t gossip_rr;
    uint64_t next_gossip_at;

    /* push-pull */
    uint64_t next_pushpull_at;
    uint64_t next_seed_at;
    uint64_t pp_next_id;
    pp_pending_t pend[GOSSIP_PP_PENDING];
    uint32_t pend_pos;
    discovery_t disc[GOSSIP_DISCOVERY_SLOTS];
    seed_t *seeds;
    size_t nseeds;
    char *refusal;

    /* load announcements */
    uint64_t load_now;
    uint64_t load_announced_at;

    /* own stalls */
    uint64_t last_seen;

    /* outputs */
    gossip_action_t *acts;
    void **act_mem; /* what acts[i] points into */
    size_t nacts, acts_cap;
    gossip_event_t *evs;
    void **ev_mem;
    size_t nevs, evs_cap;
    kv_buf_t scratch;
    uint64_t next_timer;

    gossip_stats_t st;
    uint64_t ring_version, liveness_version;
};

/* ---- shared between the gossip_*.c files ------------------------------- */

static inline bool gossip_slice_is(kv_slice_t s, const char *c)
{
    return kv_slice_eq(s, kv_slice_str(c));
}

static inline char *gossip_dup_slice(kv_slice_t s)
{
    char *p = kv_malloc(s.len + 1);
    if (s.len) memcpy(p, s.data, s.len);
    p[s.len] = '\0';
    return p;
}

/* gossip.c */
uint64_t gossip_hash(const void *p, size_t n);
/* Every input and tick starts with gossip_enter (own-stall detection) and
 * ends with gossip_timers_update. */
void gossip_enter(gossip_t *g, uint64_t now);
void gossip_timers_update(gossip_t *g);
/* A push-pull with member i went through: it is heard from. */
void gossip_heard_tcp(gossip_t *g, uint32_t i, uint64_t now);
member_t *gossip_find(const gossip_t *g, kv_slice_t name, uint32_t *idx);
void gossip_event(gossip_t *g, uint64_t now, gossip_event_kind_t kind,
                  const char *name, const char *fmt, ...) KV_PRINTF(5, 6);
void gossip_act_udp(gossip_t *g, const char *host, uint16_t port,
                    const char *target, const kv_buf_t *data);
void gossip_act_pushpull(gossip_t *g, const char *host, uint16_t port,
                         const char *target, const kv_buf_t *data, uint64_t id);
void gossip_state_of(const gossip_t *g, const member_t *m, gw_state_t *out);
/* Append a member with just a name; the caller fills the rest. */
uint32_t gossip_member_add(gossip_t *g, kv_slice_t name, bool self);
/* Adopt an announced state (not the name); true if anything that shapes
 * the ring changed. */
bool gossip_member_set_state(member_t *m, const gw_state_t *st);
void gossip_set_liveness(gossip_t *g, member_t *m, gossip_liveness_t l);

/* gossip_merge.c */
/* Apply one update or record. st is the announced state (NULL for a
 * suspect/dead update); from names who reported a suspect/dead. */
void gossip_apply(gossip_t *g, uint64_t now, kv_slice_t name, uint64_t gen,
                  uint64_t inc, gossip_liveness_t live, const gw_state_t *st,
                  kv_slice_t from, bool from_pushpull);
/* Re-evaluate member i's up flag (events, liveness_version). */
void gossip_check_up(gossip_t *g, uint32_t i, uint64_t now);
/* Members counted for timeouts and retransmits (self included). */
uint32_t gossip_count_live(const gossip_t *g);
void gossip_suspect_raise(gossip_t *g, uint64_t now, uint32_t i, uint64_t gen,
                          uint64_t inc);
void gossip_announce_self(gossip_t *g, uint64_t now);
/* An announcement of member m's name by another node id: counted, reported
 * once per offending id. */
void gossip_conflict(gossip_t *g, uint64_t now, member_t *m, kv_slice_t node_id,
                     kv_slice_t host, uint16_t port);
/* Ask a node whose state we lack for it by push-pull, at most once per
 * seed_interval per name. */
void gossip_discover(gossip_t *g, uint64_t now, kv_slice_t name,
                     kv_slice_t host, uint16_t port);

/* gossip.c */
const char *gossip_addr(const char *host, uint16_t port, char *buf, size_t cap);

/* gossip_bcast.c */
void gossip_bq_init(bq_t *q);
void gossip_bq_deinit(bq_t *q);
/* Queue an encoded update about member i, replacing the one queued. */
void gossip_bq_put(gossip_t *g, uint32_t i, const kv_buf_t *upd);
void gossip_bq_drop(gossip_t *g, uint32_t i);
uint32_t gossip_retransmit_limit(const gossip_t *g);
/* Send one datagram (m's header is filled in here) to host:port with
 * piggybacked updates. */
void gossip_send(gossip_t *g, gw_msg_t *m, const char *host, uint16_t port,
                 const char *target);
void gossip_queue_alive(gossip_t *g, uint32_t i);
void gossip_queue_suspect_dead(gossip_t *g, uint32_t i, uint32_t kind,
                               const char *from);
void gossip_gossip_round(gossip_t *g, uint64_t now);
kv_status_t gossip_bq_validate(const gossip_t *g);

/* gossip_probe.c */
void gossip_probe_tick(gossip_t *g, uint64_t now);
void gossip_probe_on_msg(gossip_t *g, uint64_t now, const gw_msg_t *msg);
void gossip_probe_stall(gossip_t *g, uint64_t now);
/* Member i joined or came back from the dead: into what is left of the
 * current probe and gossip passes. */
void gossip_probe_added(gossip_t *g, uint32_t i);
/* The next member of r's pass that is not DEAD (-1: none). */
int64_t gossip_rr_next(gossip_t *g, rr_t *r);
void gossip_rr_free(rr_t *r);
void gossip_suspicion_tick(gossip_t *g, uint64_t now);
void gossip_suspicion_start(gossip_t *g, uint64_t now, uint32_t i,
                            kv_slice_t from);
/* Count an independent confirmation; true if it was one (new reporter,
 * fewer than k so far). */
bool gossip_suspicion_confirm(gossip_t *g, uint64_t now, uint32_t i,
                              kv_slice_t from);
uint64_t gossip_suspicion_deadline(const gossip_t *g, const member_t *m);
void gossip_probe_timers(const gossip_t *g, uint64_t *next);
void gossip_relays_free(gossip_t *g);

/* gossip_pushpull.c */
void gossip_pushpull_tick(gossip_t *g, uint64_t now);
void gossip_pushpull_start(gossip_t *g, uint64_t now, const char *host,
                           uint16_t port, const char *target);
void gossip_pushpull_seeds(gossip_t *g, uint64_t now);
void gossip_pushpull_free(gossip_t *g);
bool gossip_alone(const gossip_t *g);

#endif /* CAIRN_GOSSIP_INT_H */
