/* gossip_auth.h -- authenticated gossip datagrams: an HMAC keyed from the
 * cluster secret, a timestamp window and a replay cache.
 *
 * DATAGRAM  magic "CGA1" (4) || sent_ms (u64 BE) || nonce (u32, random) ||
 *           gossip body || tag (16)
 *           tag = HMAC-SHA256(key, everything before it), first 16 bytes;
 *           key = HMAC-SHA256(cluster_secret, "cairn gossip v1\0" || cluster_name).
 * ACCEPTED  only with a valid tag, a sent_ms within window_ms of the
 *           receiver's wall clock (either way), and a tag not seen before
 *           (the last GOSSIP_AUTH_CACHE tags are remembered; older ones are
 *           outside the window by then in any cluster of sane size).
 * The key depends on the cluster name too, so two clusters that share a
 * secret by mistake still cannot talk. Pure: no I/O, the caller gives the
 * time. THREADING one thread (the node's loop).
 */
#ifndef CAIRN_NODE_GOSSIP_AUTH_H
#define CAIRN_NODE_GOSSIP_AUTH_H

#include "kv.h"

#define GOSSIP_AUTH_HEAD 16
#define GOSSIP_AUTH_TAG 16
#define GOSSIP_AUTH_OVERHEAD (GOSSIP_AUTH_HEAD + GOSSIP_AUTH_TAG)
#define GOSSIP_AUTH_CACHE 8192

typedef struct gossip_auth gossip_auth_t;

typedef enum {
    GOSSIP_AUTH_OK,
    GOSSIP_AUTH_BAD,    /* no header, or the tag does not match: forged,
                           tampered, or another secret */
    GOSSIP_AUTH_STALE,  /* sent_ms outside the window */
    GOSSIP_AUTH_REPLAY, /* this exact datagram was accepted before */
} gossip_auth_result_t;

gossip_auth_t *gossip_auth_create(const void *secret, size_t secret_len,
                                  const char *cluster_name, uint32_t window_ms,
                                  uint64_t nonce_seed);
void gossip_auth_destroy(gossip_auth_t *a);

/* Write the sealed datagram for body into out (len + GOSSIP_AUTH_OVERHEAD
 * bytes); returns its length. */
size_t gossip_auth_seal(gossip_auth_t *a, uint64_t now_wall_ms, const uint8_t *body,
                        size_t len, uint8_t *out);

/* Check a received datagram; on GOSSIP_AUTH_OK, body and blen give the gossip
 * body inside it (pointing into in). */
gossip_auth_result_t gossip_auth_open(gossip_auth_t *a, uint64_t now_wall_ms,
                                      const uint8_t *in, size_t len,
                                      const uint8_t **body, size_t *blen);

#endif /* CAIRN_NODE_GOSSIP_AUTH_H */
