/* cairn.h -- the Cairn C client library (libcairn).
 *
 * A client holds one connection to one node of a Cairn cluster at a time;
 * any node coordinates any request. Requests are pipelined on it and may be
 * issued from any thread, blocking (cairn_get) or as futures
 * (cairn_get_async + cairn_future_wait). When the node cannot be reached or
 * the connection drops, the client moves to the next contact point.
 *
 *   cairn_options_t o;
 *   cairn_options_init(&o);
 *   o.contact_points = "10.0.0.1,10.0.0.2:7071";
 *   cairn_client_t *c;
 *   if (cairn_connect(&o, &c) != CAIRN_OK) ...
 *   cairn_put(c, "k", 1, "v", 1, NULL);
 *   cairn_value_t v;
 *   if (cairn_get(c, "k", 1, NULL, &v) == CAIRN_OK) { use v.data, v.len; }
 *   cairn_value_free(&v);
 *   cairn_close(c);
 *
 * Outcomes. CAIRN_TIMEOUT and CAIRN_CONNECTION (and CAIRN_PROTOCOL once a
 * request was sent) are indeterminate for writes: the write may have been
 * applied, now or later. The library never resends a request on its own.
 *
 * Causality. The client remembers the largest hybrid-logical-clock stamp it
 * has seen from any node and sends it with every request, so a client that
 * moves between nodes still sees its own writes in order.
 *
 * This header is self-contained: it includes only standard headers.
 * Link with `pkg-config --libs cairn`.
 */
#ifndef CAIRN_CLIENT_H
#define CAIRN_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CAIRN_DEFAULT_PORT 7070

typedef enum {
    CAIRN_ONE = 1,    /* one replica answered */
    CAIRN_QUORUM = 2, /* a majority of the replicas answered */
    CAIRN_ALL = 3,    /* every replica answered */
} cairn_consistency_t;

typedef enum {
    CAIRN_OK = 0,
    CAIRN_NOT_FOUND,   /* no such key (or it was deleted / expired) */
    CAIRN_UNAVAILABLE, /* too few live replicas: nothing was attempted */
    CAIRN_TIMEOUT,     /* no answer in time: a write may have been applied */
    CAIRN_INVALID,     /* a bad request: oversized key or value, bad option */
    CAIRN_CONNECTION,  /* no node reachable, or the connection was lost
                          before the reply (a write may have been applied) */
    CAIRN_OVERLOADED,  /* the node shed load (BUSY): retry later */
    CAIRN_CLOCK_SKEW,  /* a clock too far from the node's */
    CAIRN_PROTOCOL,    /* malformed or unexpected data on the wire */
    CAIRN_DENIED,      /* not authorised */
    CAIRN_CLOSED,      /* the node is draining: try another node */
} cairn_status_t;

/* "OK", "NotFound", "Unavailable", "Timeout", "Invalid", "ConnectionError",
 * "Overloaded", "ClockSkew", "ProtocolError", "Denied", "Closed"
 * ("Unknown" for anything else). */
const char *cairn_status_name(cairn_status_t s);

/* "ONE", "QUORUM", "ALL" ("?" for anything else). */
const char *cairn_consistency_name(cairn_consistency_t cl);

/* ---- connecting -------------------------------------------------------- */

typedef struct cairn_options {
    /* "host[:port],host[:port],..." ("[v6addr]:port" for IPv6), tried in
     * order; the port defaults to 7070. Default "127.0.0.1". */
    const char *contact_points;
    const char *cluster_name;           /* default "cairn" */
    const char *client_name;            /* shown by the node; default "libcairn" */
    cairn_consistency_t consistency;    /* default CAIRN_QUORUM */
    uint32_t timeout_ms;                /* per request; default 2000. The node
                                           answers Timeout when it passes; the
                                           client gives up by itself 250 ms
                                           later if the node is silent */
    uint32_t connect_timeout_ms;        /* per node and handshake; default 2000 */

    /* Security (all off by default; appended, so earlier fields keep their
     * offsets). TLS needs the node's client_tls on (or optional). */
    bool tls;                    /* talk TLS to the node */
    const char *tls_ca_file;     /* PEM CA the node's certificate must chain
                                    to; NULL: the system's default CAs */
    bool tls_skip_hostname_check; /* do not match the contact point's host
                                    name or IP against the certificate (the
                                    chain is still verified) */
    const char *tls_cert_file;   /* a client certificate (PEM) and its key, */
    const char *tls_key_file;    /* for nodes with client_auth on: the
                                    certificate's common name is the user */
    const char *username;        /* sent in HELLO when set (client_auth on) */
    const char *password;
} cairn_options_t;

/* Fill *o with the defaults. The strings are not copied until cairn_connect. */
void cairn_options_init(cairn_options_t *o);

typedef struct cairn_client cairn_client_t;

/* Connect to the first contact point that answers the handshake. On success
 * *out is a client to cairn_close; on failure *out is untouched and the
 * status says why: CAIRN_CONNECTION when no node could be reached (a TLS
 * handshake that failed included: a certificate that does not verify, TLS
 * on one side only), or the node's own answer (CAIRN_INVALID for a wrong
 * cluster name, CAIRN_CLOSED, CAIRN_DENIED for missing or wrong
 * credentials ...); CAIRN_INVALID for TLS files that cannot be loaded.
 * cairn_connect_error() has the detail text. */
cairn_status_t cairn_connect(const cairn_options_t *o, cairn_client_t **out);

/* The detail text of the last cairn_connect failure on this thread. */
const char *cairn_connect_error(void);

/* Who the connection is logged in as ("" when the node does not
 * authenticate clients) and the role the node gave ("read", "readwrite",
 * "admin"; "" likewise). Valid until cairn_close. */
const char *cairn_user(cairn_client_t *c);
const char *cairn_role(cairn_client_t *c);

/* Close the connection and free the client. Requests still outstanding
 * complete with CAIRN_CONNECTION ("client closed"); their futures stay valid
 * until cairn_future_free. */
void cairn_close(cairn_client_t *c);

/* The detail text of the last failure seen on this client, e.g. the node's
 * message or "connection refused by 127.0.0.1:7070" ("" when none). The
 * string is copied into thread-local storage: valid on the calling thread
 * until its next call. */
const char *cairn_last_error(cairn_client_t *c);

/* ---- requests ---------------------------------------------------------- */

/* Per-request overrides; pass NULL for all defaults. Zero fields mean the
 * client's default. */
typedef struct cairn_request_opts {
    cairn_consistency_t consistency; /* 0: the client's */
    uint32_t timeout_ms;             /* 0: the client's */
    uint64_t ttl_ms;                 /* puts: expire after this; 0: never */
} cairn_request_opts_t;

/* A value read (or, for a put, just the write's timestamp). data is
 * NUL-terminated for convenience (data[len] == 0) but may hold zero bytes;
 * it is NULL when there is no value. Free with cairn_value_free. */
typedef struct cairn_value {
    uint8_t *data;
    size_t len;
    uint64_t timestamp; /* the cell's HLC timestamp (0 if unknown) */
} cairn_value_t;

void cairn_value_free(cairn_value_t *v);

/* Blocking calls. cairn_get fills *out only on CAIRN_OK (otherwise it is
 * zeroed); keys and values are binary. */
cairn_status_t cairn_get(cairn_client_t *c, const void *key, size_t klen,
                         const cairn_request_opts_t *opts, cairn_value_t *out);
cairn_status_t cairn_put(cairn_client_t *c, const void *key, size_t klen,
                         const void *value, size_t vlen,
                         const cairn_request_opts_t *opts);
cairn_status_t cairn_delete(cairn_client_t *c, const void *key, size_t klen,
                            const cairn_request_opts_t *opts);

/* Futures. The key and value are copied: the caller's buffers may be
 * reused at once. Every future must be freed with cairn_future_free, which
 * may be called before it is ready (the result is then discarded). */
typedef struct cairn_future cairn_future_t;

cairn_future_t *cairn_get_async(cairn_client_t *c, const void *key, size_t klen,
                                const cairn_request_opts_t *opts);
cairn_future_t *cairn_put_async(cairn_client_t *c, const void *key, size_t klen,
                                const void *value, size_t vlen,
                                const cairn_request_opts_t *opts);
cairn_future_t *cairn_delete_async(cairn_client_t *c, const void *key,
                                   size_t klen, const cairn_request_opts_t *opts);

/* True once the result is in; never blocks. */
bool cairn_future_ready(cairn_future_t *f);

/* Block until the result is in and return its status. The result is kept:
 * waiting again returns the same. out (may be NULL) receives a copy of the
 * value read (gets) or the write's timestamp (puts, deletes); free it with
 * cairn_value_free. */
cairn_status_t cairn_future_wait(cairn_future_t *f, cairn_value_t *out);

/* Detail text of a failed future ("" on success); valid until it is freed. */
const char *cairn_future_error(cairn_future_t *f);

void cairn_future_free(cairn_future_t *f);

/* ---- node information -------------------------------------------------- */

/* PING: the null request. The node answers it at once, touching neither
 * its coordinator nor its engine, so the time it takes is the round trip
 * to the node (the floor under every other request's latency). */
cairn_future_t *cairn_ping_async(cairn_client_t *c);
cairn_status_t cairn_ping(cairn_client_t *c);

/* Ask the node this client is connected to for its INFO items and call fn
 * once per item, in the node's order. Strings are valid during the call. */
typedef void (*cairn_info_fn)(const char *name, const char *value, void *arg);
cairn_status_t cairn_info(cairn_client_t *c, cairn_info_fn fn, void *arg);

/* A cluster operation on the connected node, for operators (what `cairn
 * decommission`, `removenode` and `cleanup` send): op is "decommission",
 * "removenode" (arg: a node name or node id) or "cleanup". On success
 * *result (if not NULL; free with cairn_value_free) holds a sentence saying
 * what was started; the operation then runs on the node, and its progress
 * shows in INFO (ring_change, ring_change_state, ring_change_ranges_done,
 * cleanup). Errors: CAIRN_OVERLOADED for another change in progress,
 * CAIRN_INVALID for one that cannot be done (the message says why). */
cairn_status_t cairn_admin(cairn_client_t *c, const char *op, const char *arg,
                           cairn_value_t *result);

/* What a node announces about its place in the cluster. */
typedef enum {
    CAIRN_NODE_JOINING = 0, /* a member, not yet owning ranges */
    CAIRN_NODE_NORMAL = 1,  /* owns its ranges */
    CAIRN_NODE_LEAVING = 2, /* handing its ranges over */
    CAIRN_NODE_LEFT = 3,    /* gone from the ring for good */
} cairn_node_status_t;

/* What the answering node's failure detector says about a node. */
typedef enum {
    CAIRN_ALIVE = 0,
    CAIRN_SUSPECT = 1, /* missed its probes; may still refute */
    CAIRN_DEAD = 2,
} cairn_liveness_t;

/* "joining", "normal", "leaving", "left" ("?" for anything else). */
const char *cairn_node_status_name(cairn_node_status_t s);
/* "alive", "suspect", "dead" ("?" for anything else). */
const char *cairn_liveness_name(cairn_liveness_t l);

/* One node of the cluster as the connected node sees it. The strings are
 * NUL-terminated copies owned by the ring; rack is "" when the node has
 * none. host and client_port are where clients reach the node.
 *
 * The fields from status on came with gossip membership and are appended,
 * so every earlier field keeps its offset; the struct grew, so a program
 * built against the older header must be rebuilt (libcairn is a static
 * library: it always is). A node older than them answers without them and
 * the library fills in what its answer meant: status NORMAL, liveness
 * ALIVE if up else DEAD, phi 0, generation 0, in_ring true. */
typedef struct cairn_ring_node {
    char *name, *node_id, *host, *rack;
    uint16_t client_port, admin_port;
    bool up;                    /* the answering node believes it up */
    uint64_t load_bytes;        /* live bytes on its disk, as last reported */
    double ownership;           /* fraction of the token space it is primary for */
    double effective_ownership; /* fraction it holds as any replica */
    uint64_t *tokens;           /* ascending */
    size_t ntokens;
    cairn_node_status_t status; /* as the node announces it */
    cairn_liveness_t liveness;  /* at the answering node */
    double phi;                 /* phi-accrual suspicion at the answering
                                   node (resolution 0.001); 0 for itself and
                                   before any heartbeat */
    uint64_t generation;        /* the node's current start; larger after a
                                   restart; 0 = not known */
    bool in_ring;               /* owns token ranges (false while joining) */
} cairn_ring_node_t;

typedef struct cairn_ring {
    uint32_t replication_factor;
    size_t self;            /* index of the node that answered (0 if no nodes) */
    uint64_t key_token;     /* the key's token (0 without a key) */
    cairn_ring_node_t *nodes;
    size_t nnodes;
    size_t *replicas;       /* with a key: indices into nodes, primary first */
    size_t nreplicas;
} cairn_ring_t;

/* Ask the connected node for the ring: every node it knows (members that
 * do not own ranges yet included: see in_ring) with its tokens, status,
 * liveness, load and ownership; with key non-NULL also the key's token and
 * replicas (klen may be 0: the empty key). A blocking call with the
 * client's default timeout. On CAIRN_OK *out holds the ring, to release
 * with cairn_ring_free; otherwise *out is zeroed (cairn_ring_free on it is
 * harmless) and cairn_last_error() says why. A node too old to know RING
 * answers CAIRN_PROTOCOL. ownership and effective_ownership come from the
 * node in parts per million (a resolution of 1e-6). */
cairn_status_t cairn_ring(cairn_client_t *c, const void *key, size_t klen,
                          cairn_ring_t *out);
void cairn_ring_free(cairn_ring_t *r);

/* ---- debugging: one node's own copy ------------------------------------ */

/* The cell one node stores for a key: a value, or a tombstone (a delete,
 * or an expired value, at its timestamp). data is NULL for a tombstone;
 * for a value it is a NUL-terminated copy (data[len] == 0). */
typedef struct cairn_cell {
    uint8_t *data;
    size_t len;
    bool tombstone;
    uint64_t timestamp; /* the cell's HLC timestamp */
    uint64_t expire_ms; /* absolute wall-clock ms it expires at; 0 = never */
} cairn_cell_t;

/* Ask the node this client is connected to for the cell it stores itself
 * for key, read from its own engine without coordination or read repair
 * (the LOCAL_GET request: for debugging and tests, e.g. checking that the
 * replicas of a key converged -- connect to each one with a single contact
 * point). The node need not be a replica of the key. CAIRN_OK: *out holds
 * the cell, to release with cairn_cell_free; CAIRN_NOT_FOUND: the node
 * stores nothing for the key; otherwise an error, cairn_last_error() says
 * why. *out is zeroed unless CAIRN_OK. A node too old to know LOCAL_GET
 * answers CAIRN_PROTOCOL. Uses the client's default timeout. */
cairn_status_t cairn_local_get(cairn_client_t *c, const void *key, size_t klen,
                               cairn_cell_t *out);
void cairn_cell_free(cairn_cell_t *cell);

#ifdef __cplusplus
}
#endif

#endif /* CAIRN_CLIENT_H */
