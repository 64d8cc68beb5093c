/* format.h -- how the engine lays out keys and cells (internal to engine/).
 *
 * ORDERED KEY (okey)   token(8, big-endian) || user key
 *     The token is XXH3-64 of the user key (eng_token). Comparing okeys with
 *     memcmp orders by (token, key), so a token range is one contiguous scan.
 *
 * INTERNAL KEY (ikey)  okey || trailer(8, little-endian)
 *     trailer = seq << 8 | kind. Internal keys sort by okey ascending, then
 *     seq descending, then kind descending: the first entry a scan meets for
 *     a key is its newest. seq is the engine's commit sequence number (56
 *     bits); the write path refuses a cell older (by HLC) than the one held,
 *     so for every key a higher seq also means a higher-or-equal timestamp.
 *
 * CELL (the entry's value)
 *     ts(8, LE) || flags(1) || [expire_ms(8, LE) if flags & CELL_HAS_EXPIRY]
 *     || value bytes (none for a tombstone)
 *     The kind in the trailer says value or tombstone; the flags repeat it so
 *     a cell decodes on its own. A tombstone may carry an expiry: compaction
 *     turns an expired value into a tombstone that keeps it, so gc_grace
 *     counts from the moment the value expired.
 */
#ifndef CAIRN_ENGINE_FORMAT_H
#define CAIRN_ENGINE_FORMAT_H

#include "coding.h"
#include "engine.h"
#include "kv.h"

#define ENG_TOKEN_LEN 8
#define ENG_TRAILER_LEN 8
#define ENG_MAX_SEQ ((UINT64_C(1) << 56) - 1)

typedef enum {
    ENG_KIND_TOMBSTONE = 0,
    ENG_KIND_VALUE = 1,
    ENG_KIND_MAX = ENG_KIND_VALUE, /* for seeks: sorts first at a given seq */
} eng_kind_t;

#define CELL_TOMBSTONE 0x01
#define CELL_HAS_EXPIRY 0x02
#define CELL_HEADER_MIN 9 /* ts + flags */

/* ---- okeys ------------------------------------------------------------- */

/* okey for key: token || key, appended to out. */
static inline void eng_okey_append(kv_buf_t *out, kv_slice_t key)
{
    uint8_t tok[ENG_TOKEN_LEN];
    kv_put_be64(tok, eng_token(key));
    kv_buf_append(out, tok, sizeof tok);
    kv_buf_append(out, key.data, key.len);
}

static inline uint64_t eng_okey_token(kv_slice_t okey)
{
    return kv_get_be64(okey.data);
}

static inline kv_slice_t eng_okey_user(kv_slice_t okey)
{
    return kv_slice(okey.data + ENG_TOKEN_LEN, okey.len - ENG_TOKEN_LEN);
}

/* ---- ikeys ------------------------------------------------------------- */

static inline uint64_t eng_trailer(uint64_t seq, eng_kind_t kind)
{
    return (seq << 8) | (uint64_t)kind;
}

static inline void eng_ikey_append(kv_buf_t *out, kv_slice_t okey, uint64_t seq,
                                   eng_kind_t kind)
{
    uint8_t t[ENG_TRAILER_LEN];
    kv_buf_append(out, okey.data, okey.len);
    kv_put_le64(t, eng_trailer(seq, kind));
    kv_buf_append(out, t, sizeof t);
}

typedef struct eng_ikey {
    kv_slice_t okey;
    uint64_t seq;
    eng_kind_t kind;
} eng_ikey_t;

/* False when ik is too short or carries an unknown kind (corrupt input). */
static inline bool eng_ikey_parse(kv_slice_t ik, eng_ikey_t *out)
{
    if (ik.len < ENG_TOKEN_LEN + ENG_TRAILER_LEN) return false;
    uint64_t t = kv_get_le64(ik.data + ik.len - ENG_TRAILER_LEN);
    if ((t & 0xff) > ENG_KIND_MAX) return false;
    out->okey = kv_slice(ik.data, ik.len - ENG_TRAILER_LEN);
    out->seq = t >> 8;
    out->kind = (eng_kind_t)(t & 0xff);
    return true;
}

/* The okey part of an ikey (caller knows ik is well-formed). */
static inline kv_slice_t eng_ikey_okey(kv_slice_t ik)
{
    return kv_slice(ik.data, ik.len - ENG_TRAILER_LEN);
}

static inline uint64_t eng_ikey_trailer(kv_slice_t ik)
{
    return kv_get_le64(ik.data + ik.len - ENG_TRAILER_LEN);
}

/* Internal-key order: okey ascending, trailer descending. Inputs must be at
 * least ENG_TRAILER_LEN long. */
static inline int eng_ikey_cmp(kv_slice_t a, kv_slice_t b)
{
    int c = kv_slice_cmp(eng_ikey_okey(a), eng_ikey_okey(b));
    if (c) return c;
    uint64_t ta = eng_ikey_trailer(a), tb = eng_ikey_trailer(b);
    return ta > tb ? -1 : ta < tb ? 1 : 0;
}

/* ---- cells ------------------------------------------------------------- */

/* Decoded cell; value points into the encoded bytes. */
typedef struct eng_cell {
    hlc_ts_t ts;
    uint64_t expire_ms; /* 0 = never */
    bool tombstone;
    kv_slice_t value;
} eng_cell_t;

void eng_cell_encode(kv_buf_t *out, const eng_cell_t *c);
size_t eng_cell_encoded_len(const eng_cell_t *c);
/* False when the bytes are not a well-formed cell. */
bool eng_cell_decode(kv_slice_t in, eng_cell_t *out);

/* Last-write-wins: > 0 when a beats b, < 0 when b beats a, 0 when they are
 * the same cell. Higher ts wins; on a tie a tombstone wins, then the larger
 * value bytes, then the later expiry. */
int eng_cell_lww_cmp(const eng_cell_t *a, const eng_cell_t *b);

/* A cell whose expiry has passed reads as a tombstone at its own ts. */
static inline bool eng_cell_live(const eng_cell_t *c, int64_t now_ms)
{
    return !c->tombstone && (c->expire_ms == 0 || (int64_t)c->expire_ms > now_ms);
}

#endif /* CAIRN_ENGINE_FORMAT_H */
