/* sst_int.h -- pieces of the SSTable format shared by sst_build.c and
 * sst_read.c (internal to those two files). The layout itself is in sst.h.
 */
#ifndef CAIRN_ENGINE_SST_INT_H
#define CAIRN_ENGINE_SST_INT_H

#include "coding.h"
#include "sst.h"

#define SST_TRAILER 9        /* type(1) + XXH3-64(8) */
#define SST_BLOCK_RAW 0
#define SST_BLOCK_ZSTD 1
#define SST_VERSION 1
#define SST_MAX_RAW_BLOCK (64u << 20) /* decompressed size limit */
#define SST_MAX_BLOOM_K 30

/* A block's place in the file: payload bytes, trailer not included. */
typedef struct sst_handle {
    uint64_t off, size;
} sst_handle_t;

typedef struct sst_footer {
    sst_handle_t filter, props, index;
    uint32_t version;
} sst_footer_t;

/* Footer codec. Decode checks magic, checksum and version and reports
 * which one failed (as a static string) through *what. */
void sst_footer_encode(uint8_t out[ENG_SST_FOOTER], const sst_footer_t *f);
bool sst_footer_decode(const uint8_t in[ENG_SST_FOOTER], sst_footer_t *f,
                       const char **what);

/* Props block payload (all varints; the two ikeys length-prefixed). The
 * data_bytes field is the on-disk size of all data blocks, trailers
 * included. Decode fails on any short, long or inconsistent input. */
void sst_props_encode(kv_buf_t *out, const eng_sst_props_t *p, uint64_t data_bytes);
bool sst_props_decode(kv_slice_t in, eng_sst_props_t *p, uint64_t *data_bytes);

/* Bloom: the number of probes for a bits-per-key setting, and the bit
 * positions for a token (double hashing; the token is already a hash). */
static inline int sst_bloom_k(int bits_per_key)
{
    int k = (int)(bits_per_key * 0.69);
    return k < 1 ? 1 : k > SST_MAX_BLOOM_K ? SST_MAX_BLOOM_K : k;
}

static inline uint64_t sst_bloom_delta(uint64_t token)
{
    /* high half, forced odd so successive probes never coincide */
    return (token >> 32) | 1;
}

#endif /* CAIRN_ENGINE_SST_INT_H */
