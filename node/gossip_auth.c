/* gossip_auth.c -- HMAC-SHA256 tags, a timestamp window and a replay cache
 * for gossip datagrams (format and rules in gossip_auth.h).
 *
 * DESIGN  The tag covers the header and the body, so the timestamp cannot
 *         be moved without the key. The replay cache is a direct-mapped
 *         table of (first 8 tag bytes, sent_ms) indexed by those tag bytes:
 *         a tag already there with a time inside the window is a replay. A
 *         collision evicts the older entry; the window bounds what an
 *         evicted entry could allow. Comparison of tags is constant time.
 * THREADING  One thread.
 */
#define KV_LOG_MODULE "gossip"
#include "gossip_auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

#include "coding.h"

static const uint8_t MAGIC[4] = {'C', 'G', 'A', '1'};

typedef struct slot {
    uint64_t tag;
    uint64_t sent_ms;
} slot_t;

struct gossip_auth {
    uint8_t key[32];
    uint32_t window_ms;
    uint64_t nonce;
    slot_t cache[GOSSIP_AUTH_CACHE];
};

gossip_auth_t *gossip_auth_create(const void *secret, size_t secret_len,
                                  const char *cluster_name, uint32_t window_ms,
                                  uint64_t nonce_seed)
{
    gossip_auth_t *a = kv_calloc(1, sizeof *a);
    kv_buf_t info = {0};
    kv_buf_append(&info, "cairn gossip v1", 16); /* with its NUL */
    kv_buf_append(&info, cluster_name, strlen(cluster_name));
    unsigned len = sizeof a->key;
    HMAC(EVP_sha256(), secret, (int)secret_len, info.data, info.len, a->key, &len);
    kv_buf_deinit(&info);
    a->window_ms = window_ms;
    a->nonce = nonce_seed;
    return a;
}

void gossip_auth_destroy(gossip_auth_t *a)
{
    if (!a) return;
    OPENSSL_cleanse(a->key, sizeof a->key);
    kv_free(a);
}

static void tag_of(const gossip_auth_t *a, const uint8_t *p, size_t n,
                   uint8_t out[GOSSIP_AUTH_TAG])
{
    uint8_t mac[32];
    unsigned len = sizeof mac;
    HMAC(EVP_sha256(), a->key, sizeof a->key, p, n, mac, &len);
    memcpy(out, mac, GOSSIP_AUTH_TAG);
}

size_t gossip_auth_seal(gossip_auth_t *a, uint64_t now_wall_ms, const uint8_t *body,
                        size_t len, uint8_t *out)
{
    memcpy(out, MAGIC, 4);
    kv_put_be64(out + 4, now_wall_ms);
    /* xorshift: the nonce only has to differ between datagrams sent in the
     * same millisecond, not be secret */
    a->nonce ^= a->nonce << 13;
    a->nonce ^= a->nonce >> 7;
    a->nonce ^= a->nonce << 17;
    kv_put_be32(out + 12, (uint32_t)a->nonce);
    if (len) memcpy(out + GOSSIP_AUTH_HEAD, body, len);
    tag_of(a, out, GOSSIP_AUTH_HEAD + len, out + GOSSIP_AUTH_HEAD + len);
    return len + GOSSIP_AUTH_OVERHEAD;
}

gossip_auth_result_t gossip_auth_open(gossip_auth_t *a, uint64_t now_wall_ms,
                                      const uint8_t *in, size_t len,
                                      const uint8_t **body, size_t *blen)
{
    if (len < GOSSIP_AUTH_OVERHEAD || memcmp(in, MAGIC, 4) != 0) return GOSSIP_AUTH_BAD;
    size_t n = len - GOSSIP_AUTH_TAG;
    uint8_t want[GOSSIP_AUTH_TAG];
    tag_of(a, in, n, want);
    if (CRYPTO_memcmp(want, in + n, GOSSIP_AUTH_TAG) != 0) return GOSSIP_AUTH_BAD;
    uint64_t sent = kv_get_be64(in + 4);
    uint64_t skew = sent > now_wall_ms ? sent - now_wall_ms : now_wall_ms - sent;
    if (skew > a->window_ms) return GOSSIP_AUTH_STALE;
    uint64_t t = kv_get_le64(want);
    slot_t *s = &a->cache[t & (GOSSIP_AUTH_CACHE - 1)];
    if (s->tag == t && s->sent_ms == sent) return GOSSIP_AUTH_REPLAY;
    s->tag = t;
    s->sent_ms = sent;
    *body = in + GOSSIP_AUTH_HEAD;
    *blen = n - GOSSIP_AUTH_HEAD;
    return GOSSIP_AUTH_OK;
}
