/* sst_build.c -- writing SSTables (sst.h) and the footer/props codecs.
 *
 * DESIGN  Entries stream into a data block builder; once its raw size
 *         reaches block_bytes the block is sealed: compressed when that saves
 *         at least 1/8 (else stored raw), given its type byte and XXH3-64,
 *         appended to the file, and its last ikey and handle go into the
 *         index builder (restart interval 1: index keys are stored whole and
 *         binary-searched directly). The tokens of distinct okeys are kept
 *         for the bloom filter, which is built once at finish. finish then
 *         writes filter, props, index and footer, fdatasyncs and closes.
 *
 *            create --add*--> (data blocks on disk) --finish--> synced file
 *                 \---------------- abandon ------------> file unlinked
 *
 * INVARIANTS (1) ikeys arrive strictly increasing (checked: KV_INVALID);
 *            (2) blocks are contiguous: block i+1 starts where block i's
 *            trailer ends, and the filter starts where the last one ends --
 *            the reader relies on it; (3) after any write error the builder
 *            is dead (sticky status) and only finish/abandon are allowed.
 * THREADING  A builder belongs to one thread.
 */
#define KV_LOG_MODULE "engine"
#include "block.h"
#include "fs.h"
#include "sst_int.h"

#include <stdio.h>
#include <xxhash.h>
#include <zstd.h>

struct eng_sst_builder {
    eng_sst_options_t o;
    eng_file_t *f;
    char *path;
    kv_status_t status; /* sticky first error */
    eng_block_builder_t data, index;
    kv_buf_t last_key;
    kv_buf_t tokens; /* uint64 tokens of distinct okeys, for the filter */
    kv_buf_t scratch;
    ZSTD_CCtx *zc;      /* reused for every block: creating one per call
                           cost more than compressing */
    uint64_t offset;    /* bytes written */
    eng_sst_props_t props;
    bool any;
};

/* ---- footer and props codecs -------------------------------------------- */

static void put_handle(uint8_t *p, sst_handle_t h)
{
    kv_put_le64(p, h.off);
    kv_put_le64(p + 8, h.size);
}

static sst_handle_t get_handle(const uint8_t *p)
{
    sst_handle_t h = {kv_get_le64(p), kv_get_le64(p + 8)};
    return h;
}

void sst_footer_encode(uint8_t out[ENG_SST_FOOTER], const sst_footer_t *f)
{
    put_handle(out, f->filter);
    put_handle(out + 16, f->props);
    put_handle(out + 32, f->index);
    kv_put_le32(out + 48, f->version);
    kv_put_le32(out + 52, (uint32_t)XXH3_64bits(out, 52));
    memcpy(out + 56, ENG_SST_MAGIC, 8);
}

bool sst_footer_decode(const uint8_t in[ENG_SST_FOOTER], sst_footer_t *f,
                       const char **what)
{
    if (memcmp(in + 56, ENG_SST_MAGIC, 8) != 0) {
        *what = "bad footer magic";
        return false;
    }
    if (kv_get_le32(in + 52) != (uint32_t)XXH3_64bits(in, 52)) {
        *what = "footer checksum mismatch";
        return false;
    }
    f->version = kv_get_le32(in + 48);
    if (f->version != SST_VERSION) {
        *what = "unsupported table version";
        return false;
    }
    f->filter = get_handle(in);
    f->props = get_handle(in + 16);
    f->index = get_handle(in + 32);
    return true;
}

static void put_lenbytes(kv_buf_t *b, const kv_buf_t *s)
{
    kv_buf_append_lenbytes(b, s->data, s->len);
}

void sst_props_encode(kv_buf_t *out, const eng_sst_props_t *p, uint64_t data_bytes)
{
    kv_buf_append_varint64(out, p->entries);
    kv_buf_append_varint64(out, p->tombstones);
    kv_buf_append_varint64(out, data_bytes);
    kv_buf_append_varint64(out, p->raw_key_bytes);
    kv_buf_append_varint64(out, p->raw_value_bytes);
    kv_buf_append_varint64(out, p->min_ts);
    kv_buf_append_varint64(out, p->max_ts);
    kv_buf_append_varint64(out, p->min_seq);
    kv_buf_append_varint64(out, p->max_seq);
    put_lenbytes(out, &p->smallest);
    put_lenbytes(out, &p->largest);
}

static bool get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    size_t n = kv_get_varint64(*p, end, v);
    *p += n;
    return n != 0;
}

static bool get_lenbytes(const uint8_t **p, const uint8_t *end, kv_buf_t *out)
{
    uint64_t n;
    if (!get_varint(p, end, &n) || n > (uint64_t)(end - *p)) return false;
    kv_buf_append(out, *p, (size_t)n);
    *p += n;
    return true;
}

bool sst_props_decode(kv_slice_t in, eng_sst_props_t *p, uint64_t *data_bytes)
{
    const uint8_t *s = in.data, *end = in.data + in.len;
    eng_sst_props_t t;
    memset(&t, 0, sizeof t);
    uint64_t db = 0, min_ts = 0, max_ts = 0;
    bool ok = get_varint(&s, end, &t.entries) &&
              get_varint(&s, end, &t.tombstones) && get_varint(&s, end, &db) &&
              get_varint(&s, end, &t.raw_key_bytes) &&
              get_varint(&s, end, &t.raw_value_bytes) &&
              get_varint(&s, end, &min_ts) && get_varint(&s, end, &max_ts) &&
              get_varint(&s, end, &t.min_seq) && get_varint(&s, end, &t.max_seq) &&
              get_lenbytes(&s, end, &t.smallest) &&
              get_lenbytes(&s, end, &t.largest) && s == end &&
              t.tombstones <= t.entries;
    t.min_ts = (hlc_ts_t)min_ts;
    t.max_ts = (hlc_ts_t)max_ts;
    eng_ikey_t a, b;
    if (ok && t.entries > 0)
        ok = eng_ikey_parse(kv_buf_slice(&t.smallest), &a) &&
             eng_ikey_parse(kv_buf_slice(&t.largest), &b) &&
             eng_ikey_cmp(kv_buf_slice(&t.smallest), kv_buf_slice(&t.largest)) <= 0 &&
             t.min_ts <= t.max_ts && t.min_seq <= t.max_seq;
    if (ok && t.entries == 0) ok = t.smallest.len == 0 && t.largest.len == 0;
    if (!ok) {
        eng_sst_props_deinit(&t);
        return false;
    }
    *p = t;
    *data_bytes = db;
    return true;
}

void eng_sst_props_deinit(eng_sst_props_t *p)
{
    kv_buf_deinit(&p->smallest);
    kv_buf_deinit(&p->largest);
}

/* ---- the builder ------------------------------------------------------- */

kv_status_t eng_sst_builder_create(const char *path, const eng_sst_options_t *o,
                                   eng_sst_builder_t **out)
{
    if (o->bloom_bits_per_key < 0 || o->restart_interval < 0 ||
        o->compression_level < ZSTD_minCLevel() ||
        o->compression_level > ZSTD_maxCLevel()) {
        kv_errmsg_set("%s: bad table options", path);
        return KV_INVALID;
    }
    eng_file_t *f;
    KV_RET(eng_file_create(path, &f));
    eng_sst_builder_t *b = kv_calloc(1, sizeof *b);
    b->o = *o;
    if (b->o.block_bytes == 0) b->o.block_bytes = 4096;
    if (b->o.restart_interval == 0) b->o.restart_interval = 16;
    b->f = f;
    b->path = kv_strdup(path);
    eng_block_builder_init(&b->data, b->o.restart_interval);
    eng_block_builder_init(&b->index, 1);
    b->props.min_ts = UINT64_MAX;
    b->props.min_seq = UINT64_MAX;
    *out = b;
    return KV_OK;
}

static void builder_free(eng_sst_builder_t *b)
{
    if (b->f) eng_file_close(b->f);
    eng_block_builder_deinit(&b->data);
    eng_block_builder_deinit(&b->index);
    kv_buf_deinit(&b->last_key);
    kv_buf_deinit(&b->tokens);
    kv_buf_deinit(&b->scratch);
    ZSTD_freeCCtx(b->zc);
    eng_sst_props_deinit(&b->props);
    kv_free(b->path);
    kv_free(b);
}

/* Append one block (payload, trailer) and return its handle. compress:
 * try zstd when the options ask for it. */
static kv_status_t write_block(eng_sst_builder_t *b, kv_slice_t raw, bool compress,
                               sst_handle_t *h)
{
    kv_buf_t *s = &b->scratch;
    kv_buf_clear(s);
    uint8_t type = SST_BLOCK_RAW;
    if (compress && b->o.compression_level != 0 && raw.len >= 64) {
        size_t bound = ZSTD_compressBound(raw.len);
        kv_buf_reserve(s, KV_VARINT64_MAX + bound + SST_TRAILER);
        size_t n = kv_put_varint64(s->data, raw.len);
        if (!b->zc) b->zc = ZSTD_createCCtx();
        size_t z = b->zc ? ZSTD_compressCCtx(b->zc, s->data + n, bound, raw.data,
                                             raw.len, b->o.compression_level)
                         : (size_t)-1;
        if (!ZSTD_isError(z) && n + z <= raw.len - raw.len / 8) {
            s->len = n + z;
            type = SST_BLOCK_ZSTD;
        }
    }
    if (type == SST_BLOCK_RAW) kv_buf_append(s, raw.data, raw.len);
    h->off = b->offset;
    h->size = s->len;
    kv_buf_append_u8(s, type);
    uint8_t sum[8];
    kv_put_le64(sum, XXH3_64bits(s->data, s->len));
    kv_buf_append(s, sum, 8);
    kv_status_t rc = eng_file_append(b->f, s->data, s->len);
    if (rc != KV_OK) return rc;
    b->offset += s->len;
    return KV_OK;
}

static kv_status_t flush_data(eng_sst_builder_t *b)
{
    if (b->data.entries == 0) return KV_OK;
    sst_handle_t h;
    KV_RET(write_block(b, eng_block_builder_finish(&b->data), true, &h));
    uint8_t v[2 * KV_VARINT64_MAX];
    size_t n = kv_put_varint64(v, h.off);
    n += kv_put_varint64(v + n, h.size);
    eng_block_builder_add(&b->index, kv_buf_slice(&b->last_key), kv_slice(v, n));
    eng_block_builder_reset(&b->data);
    return KV_OK;
}

kv_status_t eng_sst_builder_add(eng_sst_builder_t *b, kv_slice_t ikey,
                                kv_slice_t cell)
{
    KV_RET(b->status);
    eng_ikey_t ik;
    if (!eng_ikey_parse(ikey, &ik)) {
        kv_errmsg_set("%s: malformed internal key added", b->path);
        return KV_INVALID;
    }
    bool new_okey = true;
    if (b->any) {
        if (eng_ikey_cmp(kv_buf_slice(&b->last_key), ikey) >= 0) {
            kv_errmsg_set("%s: internal keys added out of order", b->path);
            return KV_INVALID;
        }
        new_okey = !kv_slice_eq(eng_ikey_okey(kv_buf_slice(&b->last_key)), ik.okey);
    }
    if (new_okey && b->o.bloom_bits_per_key > 0) {
        uint64_t tok = eng_okey_token(ik.okey);
        kv_buf_append(&b->tokens, &tok, sizeof tok);
    }
    eng_block_builder_add(&b->data, ikey, cell);
    kv_buf_clear(&b->last_key);
    kv_buf_append(&b->last_key, ikey.data, ikey.len);

    eng_sst_props_t *p = &b->props;
    if (!b->any) kv_buf_append(&p->smallest, ikey.data, ikey.len);
    b->any = true;
    p->entries++;
    if (ik.kind == ENG_KIND_TOMBSTONE) p->tombstones++;
    p->raw_key_bytes += ikey.len;
    p->raw_value_bytes += cell.len;
    p->min_seq = KV_MIN(p->min_seq, ik.seq);
    p->max_seq = KV_MAX(p->max_seq, ik.seq);
    if (cell.len >= 8) {
        hlc_ts_t ts = kv_get_le64(cell.data);
        p->min_ts = KV_MIN(p->min_ts, ts);
        p->max_ts = KV_MAX(p->max_ts, ts);
    }
    if (eng_block_builder_size(&b->data) >= b->o.block_bytes)
        b->status = flush_data(b);
    return b->status;
}

uint64_t eng_sst_builder_size(const eng_sst_builder_t *b)
{
    return b->offset + (b->data.entries ? eng_block_builder_size(&b->data) : 0);
}

uint64_t eng_sst_builder_entries(const eng_sst_builder_t *b)
{
    return b->props.entries;
}

static kv_status_t write_filter(eng_sst_builder_t *b, sst_handle_t *h)
{
    h->off = b->offset;
    h->size = 0;
    if (b->o.bloom_bits_per_key <= 0) return KV_OK;
    size_t n = b->tokens.len / 8;
    uint64_t bits = (uint64_t)n * (uint64_t)b->o.bloom_bits_per_key;
    if (bits < 64) bits = 64;
    size_t bytes = (size_t)((bits + 7) / 8);
    bits = (uint64_t)bytes * 8;
    int k = sst_bloom_k(b->o.bloom_bits_per_key);
    uint8_t *f = kv_calloc(1, bytes + 1);
    for (size_t i = 0; i < n; i++) {
        uint64_t tok;
        memcpy(&tok, b->tokens.data + i * 8, 8);
        uint64_t x = tok & 0xffffffffu, d = sst_bloom_delta(tok);
        for (int j = 0; j < k; j++, x += d) {
            uint64_t bit = x % bits;
            f[bit / 8] |= (uint8_t)(1u << (bit % 8));
        }
    }
    f[bytes] = (uint8_t)k;
    kv_status_t rc = write_block(b, kv_slice(f, bytes + 1), false, h);
    kv_free(f);
    return rc;
}

kv_status_t eng_sst_builder_finish(eng_sst_builder_t *b, eng_sst_props_t *props)
{
    kv_status_t rc = b->status;
    sst_footer_t ft = {.version = SST_VERSION};
    kv_buf_t pb = {0};
    if (rc != KV_OK) goto err;
    KV_ERR(rc = flush_data(b));
    uint64_t data_bytes = b->offset;
    KV_ERR(rc = write_filter(b, &ft.filter));
    eng_sst_props_t *p = &b->props;
    if (p->entries == 0) p->min_ts = p->max_ts = p->min_seq = p->max_seq = 0;
    if (p->min_ts == UINT64_MAX) p->min_ts = 0; /* no cell carried a ts */
    kv_buf_clear(&p->largest);
    kv_buf_append(&p->largest, b->last_key.data, b->any ? b->last_key.len : 0);
    sst_props_encode(&pb, p, data_bytes);
    KV_ERR(rc = write_block(b, kv_buf_slice(&pb), false, &ft.props));
    KV_ERR(rc = write_block(b, eng_block_builder_finish(&b->index), true, &ft.index));
    uint8_t foot[ENG_SST_FOOTER];
    sst_footer_encode(foot, &ft);
    KV_ERR(rc = eng_file_append(b->f, foot, sizeof foot));
    b->offset += sizeof foot;
    KV_ERR(rc = eng_file_sync(b->f));
    eng_file_close(b->f);
    b->f = NULL;
    p->file_size = b->offset;
    *props = *p;
    memset(p, 0, sizeof *p); /* ownership of smallest/largest moved out */
    kv_buf_deinit(&pb);
    builder_free(b);
    return KV_OK;
err:
    kv_buf_deinit(&pb);
    eng_sst_builder_abandon(b);
    return rc;
}

void eng_sst_builder_abandon(eng_sst_builder_t *b)
{
    if (!b) return;
    if (b->f) {
        eng_file_close(b->f);
        b->f = NULL;
    }
    /* keep the first error's message: the unlink's status is not useful */
    char *path = b->path;
    b->path = NULL;
    builder_free(b);
    char msg[512];
    snprintf(msg, sizeof msg, "%s", kv_errmsg());
    (void)eng_fs_unlink(path);
    kv_errmsg_set("%s", msg);
    kv_free(path);
}
