/* coding.h -- fixed-width and varint integer encodings for on-disk and
 * on-wire formats.
 *
 * Big-endian is used where byte order must sort like the number (tokens in
 * keys, frame lengths); little-endian for the fields of Cairn's own file
 * formats. Decoders never read past the end they are given.
 */
#ifndef CAIRN_CODING_H
#define CAIRN_CODING_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kv.h"

static inline void kv_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline uint32_t kv_get_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
           ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static inline void kv_put_be64(uint8_t *p, uint64_t v)
{
    kv_put_be32(p, (uint32_t)(v >> 32));
    kv_put_be32(p + 4, (uint32_t)v);
}

static inline uint64_t kv_get_be64(const uint8_t *p)
{
    return ((uint64_t)kv_get_be32(p) << 32) | kv_get_be32(p + 4);
}

static inline void kv_put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline uint32_t kv_get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static inline void kv_put_le64(uint8_t *p, uint64_t v)
{
    kv_put_le32(p, (uint32_t)v);
    kv_put_le32(p + 4, (uint32_t)(v >> 32));
}

static inline uint64_t kv_get_le64(const uint8_t *p)
{
    return (uint64_t)kv_get_le32(p) | ((uint64_t)kv_get_le32(p + 4) << 32);
}

#define KV_VARINT64_MAX 10

/* Write v as a LEB128 varint; returns bytes written (1..10). */
static inline size_t kv_put_varint64(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

/* Read a varint from [p, end). Returns the number of bytes consumed, or 0
 * when the input is truncated or longer than 10 bytes / overflows. */
static inline size_t kv_get_varint64(const uint8_t *p, const uint8_t *end,
                                     uint64_t *out)
{
    uint64_t v = 0;
    for (size_t i = 0; i < KV_VARINT64_MAX && p + i < end; i++) {
        uint64_t b = p[i];
        if (i == 9 && b > 1) return 0; /* would overflow 64 bits */
        v |= (b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *out = v;
            return i + 1;
        }
    }
    return 0;
}

static inline size_t kv_varint64_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* Append v as a varint, or a length-prefixed byte string, to a buffer. */
static inline void kv_buf_append_varint64(kv_buf_t *b, uint64_t v)
{
    uint8_t t[KV_VARINT64_MAX];
    kv_buf_append(b, t, kv_put_varint64(t, v));
}

static inline void kv_buf_append_lenbytes(kv_buf_t *b, const void *p, size_t n)
{
    kv_buf_append_varint64(b, n);
    kv_buf_append(b, p, n);
}

#endif /* CAIRN_CODING_H */
