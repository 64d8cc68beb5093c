/* peer_proto.h -- node-to-node messages on the frame codec (frame.h).
 *
 * Peer traffic runs on its own port (peer_port) over persistent TCP
 * connections. The node that dials a connection sends requests on it; the
 * node that accepted it answers them on the same connection. Every frame is
 *
 *   [type, msg_id, hlc, arg...]
 *
 * where hlc is the sender's hybrid logical clock when it sent the frame: the
 * receiver merges it into its own clock (refusing one too far ahead) before
 * acting, so causality follows every message. msg_id is chosen by the
 * requester and echoed by the reply (0 for the handshake).
 *
 *   PEER_HELLO     [200, 0, hlc, version, cluster, node_name, node_id,
 *                   ring_digest, client_port, admin_port]
 *   PEER_HELLO_OK  [201, 0, hlc, version, cluster, node_name, node_id,
 *                   ring_digest, client_port, admin_port]
 *   PEER_REFUSE    [202, 0, hlc, status, message]        then the sender closes
 *   PEER_PING      [203, msg_id, hlc]
 *   PEER_PONG      [204, msg_id, hlc, load_bytes]
 *   MUTATION       [210, msg_id, hlc, key, ts, tombstone, expire_ms, value|nil]
 *   MUTATION_REPLY [211, msg_id, hlc, status, superseded_by]
 *   READ           [212, msg_id, hlc, key]
 *   READ_REPLY     [213, msg_id, hlc, status, ts, tombstone, expire_ms,
 *                   value|nil]
 *   GOSSIP_PUSHPULL       [220, msg_id, hlc, body]
 *   GOSSIP_PUSHPULL_REPLY [221, msg_id, hlc, body]
 *   HINTS          [230, msg_id, hlc, n, (key, ts, tombstone, expire_ms,
 *                   value|nil) x n]
 *   HINTS_REPLY    [231, msg_id, hlc, status, stored, superseded]
 *   STREAM_REQ     [240, sid, hlc, start, end [, k, (start, end) x k]]
 *   STREAM_CHUNK   [241, sid, hlc, seq, last, checksum, n, (key, ts,
 *                   tombstone, expire_ms, value|nil) x n]
 *   STREAM_ACK     [242, sid, hlc, seq, status]
 *   STREAM_ABORT   [243, sid, hlc, status, message]
 *   FETCH          [244, msg_id, hlc, start, end, n, source name x n
 *                   [, k, (start, end) x k]]
 *   FETCH_REPLY    [245, msg_id, hlc, status, keys, bytes, message]
 *   MERKLE_REQ     [250, msg_id, hlc, start, end, depth]
 *   MERKLE_REPLY   [251, msg_id, hlc, status, depth, cells, leaves]
 *
 * Types 220-229 are kept for gossip, 230-239 for hinted handoff, 240-249 for
 * streaming, 250-259 for repair. key and value are msgpack bin, names and
 * messages str, status a kv_status_t.
 *
 * Handshake: the dialler sends PEER_HELLO first; the acceptor answers
 * PEER_HELLO_OK, or PEER_REFUSE with a reason (KV_DENIED: another cluster
 * name or a node name it does not know; KV_PROTO: another protocol
 * version; KV_INVALID: another ring digest, i.e. the nodes were started with
 * different initial_cluster, num_tokens or replication_factor;
 * KV_CLOCK_SKEW: the hello's clock is too far ahead). Nothing else may be
 * sent before the handshake completes.
 *
 * GOSSIP_PUSHPULL is the one frame that may open a connection without a
 * handshake: gossip's full-state exchange (gossip/gossip.h; body is bin,
 * gossip's own encoding, which carries the cluster name and version and is
 * checked by gossip). The acceptor answers GOSSIP_PUSHPULL_REPLY and closes
 * the connection; nothing else is sent on it.
 *
 * MUTATION stores a cell stamped by the coordinator: ts is the cell's HLC
 * stamp, tombstone marks a delete (value nil), expire_ms is the value's
 * expiry in wall ms (0 = never). Its reply is OK (stored, or the same cell
 * was already held), SUPERSEDED with superseded_by = the newer stamp held,
 * or an error. READ returns the newest cell held (tombstones included): OK
 * with ts/tombstone/expire_ms/value, NOTFOUND with ts 0, or an error.
 *
 * HINTS delivers a batch of hinted writes (writes this node missed while it
 * was down) from a coordinator's hint log, oldest first. The receiver stores
 * them in one engine batch; a cell older than the one it holds is simply
 * not stored (superseded). HINTS_REPLY is OK once every cell is stored or
 * superseded (stored and superseded count them), or the error that stopped
 * the batch -- the sender then keeps the batch and retries later.
 *
 * Streaming copies a token range (start, end] (wrapping when start >= end;
 * start == end is the whole ring) from a source to a destination, all on
 * the destination's outbound link to the source: the destination sends
 * STREAM_REQ with a session id (sid) it chose; the source answers with
 * STREAM_CHUNKs carrying that sid, seq 0, 1, ..., the cells of the range in
 * token order, the last one flagged; the destination answers each chunk,
 * once its cells are stored, with STREAM_ACK (a status other than OK ends
 * the session). The source keeps a few chunks unacknowledged at most (flow
 * control) and paces itself (stream_throughput). checksum is XXH3-64 over
 * the cells (peer_stream_checksum): a chunk that does not match is
 * refused. STREAM_ABORT from the source ends the session with an error. A
 * session dies with its connection; the destination starts it again.
 *
 * FETCH asks a node to pull a range from the named members (each in full,
 * so that it ends up with the union of their data) and answers
 * FETCH_REPLY once every pull is done or one failed: this is how a leaving
 * node or a removenode coordinator has the new owners copy their ranges.
 *
 * MERKLE_REQ asks a replica for its Merkle tree of (start, end] at a depth
 * (replication/merkle.h); MERKLE_REPLY carries the depth it used (smaller
 * for a range narrower than 2^depth tokens), the cells it hashed and the
 * 2^depth leaves as one bin of 8-byte big-endian hashes.
 *
 * Compatibility: receivers ignore arguments past the ones they know.
 */
#ifndef CAIRN_PEER_PROTO_H
#define CAIRN_PEER_PROTO_H

#include "frame.h"
#include "kv.h"

#define CAIRN_PEER_PROTO_VERSION 1

typedef enum {
    PEER_HELLO = 200,
    PEER_HELLO_OK = 201,
    PEER_REFUSE = 202,
    PEER_PING = 203,
    PEER_PONG = 204,
    PEER_MUTATION = 210,
    PEER_MUTATION_REPLY = 211,
    PEER_READ = 212,
    PEER_READ_REPLY = 213,
    PEER_GOSSIP_FIRST = 220,    /* 220..229: gossip */
    PEER_GOSSIP_PUSHPULL = 220,
    PEER_GOSSIP_PUSHPULL_REPLY = 221,
    PEER_HINT_FIRST = 230,      /* 230..239: hinted handoff */
    PEER_HINTS = 230,
    PEER_HINTS_REPLY = 231,
    PEER_STREAM_FIRST = 240,    /* 240..249: streaming */
    PEER_STREAM_REQ = 240,
    PEER_STREAM_CHUNK = 241,
    PEER_STREAM_ACK = 242,
    PEER_STREAM_ABORT = 243,
    PEER_FETCH = 244,
    PEER_FETCH_REPLY = 245,
    PEER_REPAIR_FIRST = 250,    /* 250..259: anti-entropy repair */
    PEER_MERKLE_REQ = 250,
    PEER_MERKLE_REPLY = 251,
    PEER_TYPE_LAST = 259,
} peer_msg_t;

/* The fields every peer frame carries. */
typedef struct peer_head {
    peer_msg_t type;
    uint64_t msg_id;
    uint64_t hlc;
} peer_head_t;

/* PEER_HELLO and PEER_HELLO_OK. */
typedef struct peer_hello {
    uint32_t version;
    kv_slice_t cluster;
    kv_slice_t node_name;
    kv_slice_t node_id;
    uint64_t ring_digest;
    uint16_t client_port;
    uint16_t admin_port;
} peer_hello_t;

typedef struct peer_refuse {
    kv_status_t status;
    kv_slice_t message;
} peer_refuse_t;

/* A cell on the wire: MUTATION's payload and READ_REPLY's answer.
 * value is empty (and sent as nil) for a tombstone. */
typedef struct peer_cell {
    uint64_t ts;
    bool tombstone;
    uint64_t expire_ms;
    kv_slice_t value;
} peer_cell_t;

typedef struct peer_mutation {
    kv_slice_t key;
    peer_cell_t cell;
} peer_mutation_t;

typedef struct peer_mutation_reply {
    kv_status_t status;
    uint64_t superseded_by; /* SUPERSEDED: the newer stamp held; else 0 */
} peer_mutation_reply_t;

typedef struct peer_read_reply {
    kv_status_t status; /* OK: cell is set; NOTFOUND; or an error */
    peer_cell_t cell;
} peer_read_reply_t;

/* Encoders append one whole frame to buf; KV_INVALID (buf unchanged) when
 * the frame would exceed max_body (0 = KV_FRAME_DEFAULT_MAX) or a field is
 * out of range (hello with an empty node name; hello/hello_ok type given
 * as anything else; a status outside kv_status_t; an empty key; a tombstone
 * with a value): an encoder refuses whatever its decoder would refuse. */
kv_status_t peer_encode_hello(kv_buf_t *buf, peer_msg_t type, uint64_t hlc,
                              const peer_hello_t *h, uint32_t max_body);
kv_status_t peer_encode_refuse(kv_buf_t *buf, uint64_t hlc,
                               const peer_refuse_t *r, uint32_t max_body);
kv_status_t peer_encode_ping(kv_buf_t *buf, uint64_t msg_id, uint64_t hlc,
                             uint32_t max_body);
kv_status_t peer_encode_pong(kv_buf_t *buf, uint64_t msg_id, uint64_t hlc,
                             uint64_t load_bytes, uint32_t max_body);
kv_status_t peer_encode_mutation(kv_buf_t *buf, uint64_t msg_id, uint64_t hlc,
                                 const peer_mutation_t *m, uint32_t max_body);
kv_status_t peer_encode_mutation_reply(kv_buf_t *buf, uint64_t msg_id,
                                       uint64_t hlc,
                                       const peer_mutation_reply_t *r,
                                       uint32_t max_body);
kv_status_t peer_encode_read(kv_buf_t *buf, uint64_t msg_id, uint64_t hlc,
                             kv_slice_t key, uint32_t max_body);
kv_status_t peer_encode_read_reply(kv_buf_t *buf, uint64_t msg_id, uint64_t hlc,
                                   const peer_read_reply_t *r,
                                   uint32_t max_body);

/* GOSSIP_PUSHPULL / GOSSIP_PUSHPULL_REPLY (type): body is gossip's bytes. */
kv_status_t peer_encode_pushpull(kv_buf_t *buf, peer_msg_t type, uint64_t msg_id,
                                 uint64_t hlc, kv_slice_t body, uint32_t max_body);
kv_status_t peer_decode_pushpull(const kv_frame_t *f, peer_head_t *head,
                                 kv_slice_t *body);

/* HINTS: one hinted write. */
typedef struct peer_hint {
    kv_slice_t key;
    peer_cell_t cell;
} peer_hint_t;

typedef struct peer_hints_reply {
    kv_status_t status;
    uint64_t stored, superseded;
} peer_hints_reply_t;

/* HINTS with n >= 1 records (KV_INVALID for 0, an empty key, a tombstone
 * with a value, or a frame over max_body). */
kv_status_t peer_encode_hints(kv_buf_t *buf, uint64_t msg_id, uint64_t hlc,
                              const peer_hint_t *h, size_t n, uint32_t max_body);
kv_status_t peer_encode_hints_reply(kv_buf_t *buf, uint64_t msg_id, uint64_t hlc,
                                    const peer_hints_reply_t *r,
                                    uint32_t max_body);
/* HINTS: the head and the record count (checked against the arguments
 * present: KV_PROTO when n is 0 or they do not match); then each record by
 * index with peer_decode_hint_at (KV_PROTO when malformed). */
kv_status_t peer_decode_hints(const kv_frame_t *f, peer_head_t *head,
                              uint32_t *n);
kv_status_t peer_decode_hint_at(const kv_frame_t *f, uint32_t i,
                                peer_hint_t *out);
kv_status_t peer_decode_hints_reply(const kv_frame_t *f, peer_head_t *head,
                                    peer_hints_reply_t *out);

/* ---- streaming (see the protocol above) ---------------------------------- */

typedef struct peer_stream_chunk {
    uint64_t seq;
    bool last;
    uint64_t checksum; /* decode: as sent; encode: computed */
    uint32_t n;        /* cells; read each with peer_decode_stream_cell_at */
} peer_stream_chunk_t;

#define PEER_STREAM_MAX_RANGES 16384u /* ranges one STREAM_REQ or FETCH names */

typedef struct peer_fetch {
    uint64_t start, end;
    uint32_t nsources;          /* 1..32 */
    kv_slice_t sources[32];     /* member names */
    /* more ranges after (start, end]: encode from extra (2 * nextra
     * tokens); decode: read each with peer_fetch_extra_at */
    size_t nextra;
    const uint64_t *extra;
    uint32_t extra_arg;
} peer_fetch_t;

typedef struct peer_fetch_reply {
    kv_status_t status;
    uint64_t keys, bytes; /* cells and payload bytes stored */
    kv_slice_t message;   /* why, when status is not OK */
} peer_fetch_reply_t;

/* XXH3-64 over the cells' fields (key, ts, tombstone, expiry, value). */
uint64_t peer_stream_checksum(const peer_hint_t *cells, size_t n);

kv_status_t peer_encode_stream_req(kv_buf_t *buf, uint64_t sid, uint64_t hlc,
                                   uint64_t start, uint64_t end, uint32_t max_body);
kv_status_t peer_decode_stream_req(const kv_frame_t *f, peer_head_t *head,
                                   uint64_t *start, uint64_t *end);
/* STREAM_REQ naming n ranges (se: n (start, end) pairs, n >= 1): the first
 * as above, the others as trailing [n - 1, s1, e1, ...]. Decoding returns
 * every pair in a kv_malloc'd array. */
kv_status_t peer_encode_stream_req_ranges(kv_buf_t *buf, uint64_t sid, uint64_t hlc,
                                          const uint64_t *se, size_t n, uint32_t max_body);
kv_status_t peer_decode_stream_req_ranges(const kv_frame_t *f, peer_head_t *head,
                                          uint64_t **se, size_t *n);
/* c->n cells (0 allowed: an empty range's last chunk); checksum computed. */
kv_status_t peer_encode_stream_chunk(kv_buf_t *buf, uint64_t sid, uint64_t hlc,
                                     const peer_stream_chunk_t *c,
                                     const peer_hint_t *cells, uint32_t max_body);
kv_status_t peer_decode_stream_chunk(const kv_frame_t *f, peer_head_t *head,
                                     peer_stream_chunk_t *out);
kv_status_t peer_decode_stream_cell_at(const kv_frame_t *f, uint32_t i,
                                       peer_hint_t *out);
kv_status_t peer_encode_stream_ack(kv_buf_t *buf, uint64_t sid, uint64_t hlc,
                                   uint64_t seq, kv_status_t status,
                                   uint32_t max_body);
kv_status_t peer_decode_stream_ack(const kv_frame_t *f, peer_head_t *head,
                                   uint64_t *seq, kv_status_t *status);
/* status must not be OK. */
kv_status_t peer_encode_stream_abort(kv_buf_t *buf, uint64_t sid, uint64_t hlc,
                                     kv_status_t status, kv_slice_t message,
                                     uint32_t max_body);
kv_status_t peer_decode_stream_abort(const kv_frame_t *f, peer_head_t *head,
                                     kv_status_t *status, kv_slice_t *message);
kv_status_t peer_encode_fetch(kv_buf_t *buf, uint64_t msg_id, uint64_t hlc,
                              const peer_fetch_t *fe, uint32_t max_body);
kv_status_t peer_decode_fetch(const kv_frame_t *f, peer_head_t *head,
                              peer_fetch_t *out);
/* The i-th extra range of a decoded FETCH (i < nextra). */
void peer_fetch_extra_at(const kv_frame_t *f, const peer_fetch_t *fe, size_t i,
                         uint64_t *start, uint64_t *end);
kv_status_t peer_encode_fetch_reply(kv_buf_t *buf, uint64_t msg_id, uint64_t hlc,
                                    const peer_fetch_reply_t *r, uint32_t max_body);
kv_status_t peer_decode_fetch_reply(const kv_frame_t *f, peer_head_t *head,
                                    peer_fetch_reply_t *out);

/* ---- repair ----------------------------------------------------------------- */

typedef struct peer_merkle_reply {
    kv_status_t status;
    uint32_t depth;       /* <= 16 */
    uint64_t cells;
    kv_slice_t leaves;    /* 8 * 2^depth bytes, big-endian (OK only) */
} peer_merkle_reply_t;

kv_status_t peer_encode_merkle_req(kv_buf_t *buf, uint64_t msg_id, uint64_t hlc,
                                   uint64_t start, uint64_t end, uint32_t depth,
                                   uint32_t max_body);
kv_status_t peer_decode_merkle_req(const kv_frame_t *f, peer_head_t *head,
                                   uint64_t *start, uint64_t *end, uint32_t *depth);
/* leaves: 2^depth hashes (ignored unless status is OK). */
kv_status_t peer_encode_merkle_reply(kv_buf_t *buf, uint64_t msg_id, uint64_t hlc,
                                     kv_status_t status, uint32_t depth, uint64_t cells,
                                     const uint64_t *leaves, uint32_t max_body);
kv_status_t peer_decode_merkle_reply(const kv_frame_t *f, peer_head_t *head,
                                     peer_merkle_reply_t *out);
/* Leaf i of a decoded reply. */
uint64_t peer_merkle_leaf(const peer_merkle_reply_t *r, size_t i);

/* The head of any peer frame: KV_PROTO when the type is outside
 * 200..PEER_TYPE_LAST or the hlc argument is missing or not an unsigned
 * integer. Decoders below call it too and check f->type matches. */
kv_status_t peer_decode_head(const kv_frame_t *f, peer_head_t *out);

/* Decoders: KV_PROTO when the type does not match, an argument is missing,
 * of the wrong type or out of range (a status outside kv_status_t, a port
 * above 65535, a version above UINT32_MAX, a tombstone with a value or a
 * live cell with a nil one, an empty key or node name). Slices point into
 * the frame. *head and the result are written only on success. */
kv_status_t peer_decode_hello(const kv_frame_t *f, peer_head_t *head,
                              peer_hello_t *out); /* HELLO or HELLO_OK */
kv_status_t peer_decode_refuse(const kv_frame_t *f, peer_head_t *head,
                               peer_refuse_t *out);
kv_status_t peer_decode_pong(const kv_frame_t *f, peer_head_t *head,
                             uint64_t *load_bytes);
kv_status_t peer_decode_mutation(const kv_frame_t *f, peer_head_t *head,
                                 peer_mutation_t *out);
kv_status_t peer_decode_mutation_reply(const kv_frame_t *f, peer_head_t *head,
                                       peer_mutation_reply_t *out);
kv_status_t peer_decode_read(const kv_frame_t *f, peer_head_t *head,
                             kv_slice_t *key);
kv_status_t peer_decode_read_reply(const kv_frame_t *f, peer_head_t *head,
                                   peer_read_reply_t *out);

#endif /* CAIRN_PEER_PROTO_H */
