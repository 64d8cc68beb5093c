/* proto.h -- Cairn's client protocol messages on top of the frame codec.
 *
 * Every frame is [type, request_id, arg...] (frame.h). A connection opens
 * with HELLO; the node answers HELLO_OK or an ERROR reply and closes. Then
 * requests may be pipelined: each carries a request id chosen by the client
 * and the reply carries it back; replies may come in any order.
 *
 *   HELLO      [1, id, version, cluster_name, client_name]
 *   HELLO_OK   [2, id, version, cluster_name, node_name, node_id, hlc]
 *   GET        [10, id, key, cl, timeout_ms, causality]
 *   PUT        [11, id, key, value, cl, timeout_ms, causality, ttl_ms]
 *   DELETE     [12, id, key, cl, timeout_ms, causality]
 *   INFO       [20, id]
 *   RING       [21, id, key|nil]
 *   LOCAL_GET  [22, id, key]
 *   REPLY      [100, id, status, hlc, cell_ts, value|nil, message|nil]
 *   INFO_REPLY [101, id, hlc, {str: str|uint ...}]
 *   RING_REPLY [102, id, hlc, replication_factor, self, key_token,
 *               [node...], [replica...]]
 *   LOCAL_REPLY [103, id, hlc, status, ts, tombstone, expire_ms, value|nil]
 *     node = [name, node_id, host, client_port, admin_port, rack, up,
 *             load_bytes, ownership_ppm, effective_ppm, [token...],
 *             status, liveness, phi_milli, generation, in_ring]
 *
 * key and value are msgpack bin; names and messages str. cl is a
 * consistency level (1 ONE, 2 QUORUM, 3 ALL); timeout_ms 0 means the node's
 * default; causality is the largest HLC timestamp the client has seen (0 if
 * none): the node advances its clock past it before stamping a write, so a
 * client moving between nodes sees its own writes in order. ttl_ms 0 means
 * the value never expires. status is a kv_status_t: OK, NOTFOUND (GET found
 * nothing or a tombstone), INVALID, PROTO, BUSY (a limit was hit), TIMEOUT
 * (outcome unknown), UNAVAILABLE (nothing was attempted), CLOCK_SKEW,
 * CLOSED (the node is draining), DENIED. hlc is the node's clock after the
 * request; cell_ts is the timestamp of the cell read or written (0 if none).
 *
 * RING asks the node for its view of the cluster: every node of the ring
 * (self is the answering node's index in the list), whether the answering
 * node believes it up, its load (live bytes on disk, as last reported) and
 * its ownership of the token space in parts per million (primary ranges,
 * and effective = as any of the RF replicas). With a key, key_token is its
 * token and replica lists the indices of its replicas, primary first;
 * without one both are 0 / empty. self < the number of nodes, except in an
 * empty list, where it is 0. ownership_ppm is at most 1000000 and
 * effective_ppm at most 1000000 * 32 (the largest replication factor);
 * names, host and rack are str; up is a bool; tokens are unsigned ints.
 *
 * The last five node fields come from gossip and may be missing (a node
 * older than them sends eleven): status is what the node announces
 * (proto_node_status_t, at most LEFT), liveness what the answering node's
 * failure detector says (proto_liveness_t, at most DEAD), phi_milli its
 * phi-accrual value x 1000 (u32, saturated), generation the node's start
 * generation (u64, 0 = not known) and in_ring whether it owns token ranges
 * (bool). When they are missing the decoder fills in status NORMAL,
 * liveness ALIVE if up else DEAD, phi 0, generation 0 and in_ring true:
 * what an older node's answer meant. Each may be missing on its own, from
 * the end. Elements appended to a node's array by a later version are
 * ignored.
 *
 * LOCAL_GET is a debugging and testing aid: the answering node reads its own
 * engine, without coordination or repair, and returns the cell it stores
 * for the key, whether or not it is a replica of it. LOCAL_REPLY's status
 * is OK when the node holds a cell -- a value (tombstone false, value a
 * bin) or a tombstone (true, value nil; an expired value reads as a
 * tombstone at its timestamp) -- with its HLC timestamp ts and expire_ms
 * (absolute wall ms, 0 = never); NOTFOUND when it holds nothing (ts,
 * expire_ms 0, tombstone false, value nil). Errors (draining, a bad key, a
 * failed read) come as a REPLY with the error status.
 *
 * Compatibility: a receiver ignores arguments past the ones it knows, so
 * later versions may append arguments; a request of an unknown type gets a
 * REPLY with status PROTO and the connection stays open. Types 200 and up
 * are reserved for node-to-node messages.
 */
#ifndef CAIRN_PROTO_H
#define CAIRN_PROTO_H

#include "frame.h"
#include "kv.h"

#define CAIRN_PROTO_VERSION 1

typedef enum {
    MSG_HELLO = 1,
    MSG_HELLO_OK = 2,
    MSG_GET = 10,
    MSG_PUT = 11,
    MSG_DELETE = 12,
    MSG_INFO = 20,
    MSG_RING = 21,
    MSG_ADMIN = 30,
    MSG_LOCAL_GET = 22,
    MSG_PING = 23,
    MSG_REPLY = 100,
    MSG_INFO_REPLY = 101,
    MSG_RING_REPLY = 102,
    MSG_LOCAL_REPLY = 103,
    MSG_PEER_FIRST = 200,
} proto_msg_t;

typedef enum {
    CL_ONE = 1,
    CL_QUORUM = 2,
    CL_ALL = 3,
} proto_cl_t;

/* "ONE", "QUORUM", "ALL"; parse is case-insensitive. */
const char *proto_cl_str(proto_cl_t cl);
kv_status_t proto_cl_parse(const char *s, proto_cl_t *out);

/* HELLO [1, id, version, cluster, client_name, auth]: auth (appended in
 * Cairn 0.2; absent or nil = none) is [user (str), password (str or bin)]. */
typedef struct proto_hello {
    uint32_t version;
    kv_slice_t cluster;
    kv_slice_t client_name;
    bool has_auth;
    kv_slice_t user, password;
} proto_hello_t;

/* HELLO_OK [2, id, version, cluster, node_name, node_id, hlc, user, role]:
 * user and role (appended; sent when the node authenticates clients, ""
 * for none) say who the connection is logged in as. */
typedef struct proto_hello_ok {
    uint32_t version;
    kv_slice_t cluster;
    kv_slice_t node_name;
    kv_slice_t node_id;
    uint64_t hlc;
    kv_slice_t user, role; /* empty: not sent / not authenticated */
} proto_hello_ok_t;

/* GET, PUT or DELETE. value and ttl_ms only for PUT. */
typedef struct proto_request {
    proto_msg_t type;
    uint64_t id;
    kv_slice_t key;
    kv_slice_t value;
    proto_cl_t cl;
    uint32_t timeout_ms;
    uint64_t causality;
    uint64_t ttl_ms;
} proto_request_t;

typedef struct proto_reply {
    uint64_t id;
    kv_status_t status;
    uint64_t hlc;
    uint64_t cell_ts;
    bool has_value;
    kv_slice_t value;
    kv_slice_t message; /* empty when none */
} proto_reply_t;

/* One INFO entry; a string or an unsigned number. */
typedef struct proto_info_item {
    const char *name;
    const char *str; /* NULL: num is the value */
    uint64_t num;
} proto_info_item_t;

/* A node's status as it announces it (gossip_status_t's values). */
typedef enum {
    PROTO_NODE_JOINING = 0,
    PROTO_NODE_NORMAL = 1,
    PROTO_NODE_LEAVING = 2,
    PROTO_NODE_LEFT = 3,
} proto_node_status_t;

/* A node's liveness at the answering node (gossip_liveness_t's values). */
typedef enum {
    PROTO_LIVE_ALIVE = 0,
    PROTO_LIVE_SUSPECT = 1,
    PROTO_LIVE_DEAD = 2,
} proto_liveness_t;

/* phi as the wire carries it: x 1000, rounded, saturated at UINT32_MAX;
 * 0 for a negative value or NaN. */
uint32_t proto_phi_milli(double phi);

/* One node of a RING_REPLY. tokens: ascending. */
typedef struct proto_ring_node {
    kv_slice_t name, node_id, host, rack;
    uint16_t client_port, admin_port;
    bool up;
    uint64_t load_bytes;
    uint32_t ownership_ppm; /* primary ranges, 0..1000000 */
    uint32_t effective_ppm; /* as any replica, 0..1000000 * min(RF, nodes) */
    const uint64_t *tokens;
    size_t ntokens;
    uint8_t status;         /* proto_node_status_t */
    uint8_t liveness;       /* proto_liveness_t */
    uint32_t phi_milli;     /* phi x 1000 (proto_phi_milli) */
    uint64_t generation;    /* 0 = not known */
    bool in_ring;           /* owns token ranges */
} proto_ring_node_t;

typedef struct proto_ring {
    uint32_t replication_factor;
    uint32_t self;       /* index of the answering node in nodes */
    uint64_t key_token;  /* 0 without a key */
    const proto_ring_node_t *nodes;
    size_t nnodes;
    const uint32_t *replicas; /* indices into nodes, primary first */
    size_t nreplicas;
} proto_ring_t;

/* Encoders append one whole frame to buf. They return KV_INVALID when the
 * frame would exceed max_body (0 = KV_FRAME_DEFAULT_MAX), leaving buf as it
 * was. */
kv_status_t proto_encode_hello(kv_buf_t *buf, uint64_t id, const proto_hello_t *h,
                               uint32_t max_body);
kv_status_t proto_encode_hello_ok(kv_buf_t *buf, uint64_t id,
                                  const proto_hello_ok_t *h, uint32_t max_body);
kv_status_t proto_encode_request(kv_buf_t *buf, const proto_request_t *r,
                                 uint32_t max_body);
kv_status_t proto_encode_reply(kv_buf_t *buf, const proto_reply_t *r,
                               uint32_t max_body);
kv_status_t proto_encode_info(kv_buf_t *buf, uint64_t id, uint32_t max_body);
/* PING [23, id]: the null request, answered by a REPLY with status OK. */
kv_status_t proto_encode_ping(kv_buf_t *buf, uint64_t id, uint32_t max_body);
kv_status_t proto_encode_info_reply(kv_buf_t *buf, uint64_t id, uint64_t hlc,
                                    const proto_info_item_t *items, size_t n,
                                    uint32_t max_body);

/* RING: key NULL for the cluster view without a key. */
kv_status_t proto_encode_ring(kv_buf_t *buf, uint64_t id, const kv_slice_t *key,
                              uint32_t max_body);
/* RING_REPLY: also KV_INVALID (buf unchanged) for a reply the decoder
 * would refuse: self or a replica index out of range, a ppm above its
 * bound, a status above LEFT or a liveness above DEAD. Every node is sent
 * with all sixteen fields. */
kv_status_t proto_encode_ring_reply(kv_buf_t *buf, uint64_t id, uint64_t hlc,
                                    const proto_ring_t *r, uint32_t max_body);

/* Decoders read a frame of the matching type; KV_PROTO when an argument is
 * missing or of the wrong type, or a value is out of range (a bad cl, a
 * status outside kv_status_t). Slices point into the frame. */
kv_status_t proto_decode_hello(const kv_frame_t *f, proto_hello_t *out);
kv_status_t proto_decode_hello_ok(const kv_frame_t *f, proto_hello_ok_t *out);
kv_status_t proto_decode_request(const kv_frame_t *f, proto_request_t *out);
kv_status_t proto_decode_reply(const kv_frame_t *f, proto_reply_t *out);
/* Calls fn for each entry of an INFO_REPLY (str is NULL for numbers; name
 * and str are not NUL-terminated: use the lengths). */
typedef void (*proto_info_fn)(void *arg, kv_slice_t name, bool is_str,
                              kv_slice_t str, uint64_t num);
kv_status_t proto_decode_info_reply(const kv_frame_t *f, uint64_t *hlc,
                                    proto_info_fn fn, void *arg);

/* ADMIN [30, id, op, arg]: a cluster operation on the node that receives
 * it ("decommission", "removenode" NODE, "cleanup"); answered by a REPLY
 * whose value is a sentence saying what was started, or an error. */
kv_status_t proto_encode_admin(kv_buf_t *buf, uint64_t id, kv_slice_t op,
                               kv_slice_t arg, uint32_t max_body);
kv_status_t proto_decode_admin(const kv_frame_t *f, kv_slice_t *op, kv_slice_t *arg);

/* RING: *has_key false when the key is nil. */
kv_status_t proto_decode_ring(const kv_frame_t *f, kv_slice_t *key,
                              bool *has_key);
/* RING_REPLY: fills *out; nodes, their tokens and replicas are allocated
 * with kv_malloc (slices point into the frame) and released with
 * proto_ring_free. KV_PROTO on a bad shape, self or a replica index out of
 * range, a ppm above its bound, a port above 65535, a status, liveness or
 * phi_milli out of range; then nothing is
 * allocated, *out is zeroed (proto_ring_free on it is harmless) and *hlc
 * is untouched. Tokens are passed on in the order received. */
kv_status_t proto_decode_ring_reply(const kv_frame_t *f, uint64_t *hlc,
                                    proto_ring_t *out);
void proto_ring_free(proto_ring_t *r);

/* LOCAL_REPLY: one node's own cell for a key (see LOCAL_GET above). */
typedef struct proto_local_reply {
    uint64_t id;
    kv_status_t status;  /* KV_OK (a cell) or KV_NOTFOUND (none) */
    uint64_t hlc;        /* the node's clock */
    uint64_t ts;         /* the cell's HLC timestamp */
    bool tombstone;
    uint64_t expire_ms;  /* absolute wall ms; 0 = never */
    kv_slice_t value;    /* a value cell's bytes; empty otherwise */
} proto_local_reply_t;

kv_status_t proto_encode_local_get(kv_buf_t *buf, uint64_t id, kv_slice_t key,
                                   uint32_t max_body);
kv_status_t proto_decode_local_get(const kv_frame_t *f, kv_slice_t *key);
/* KV_INVALID (buf unchanged) for a reply the decoder would refuse: a
 * status other than OK or NOTFOUND, or a NOTFOUND with a cell's fields. */
kv_status_t proto_encode_local_reply(kv_buf_t *buf, const proto_local_reply_t *r,
                                     uint32_t max_body);
/* KV_PROTO on a bad shape, a status other than OK or NOTFOUND, a value
 * cell without a value, a tombstone or NOTFOUND with one, or a NOTFOUND
 * with a timestamp, expiry or tombstone. The value points into the frame. */
kv_status_t proto_decode_local_reply(const kv_frame_t *f, proto_local_reply_t *out);

#endif /* CAIRN_PROTO_H */
