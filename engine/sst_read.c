/* sst_read.c -- opening, reading, iterating and verifying SSTables (sst.h).
 *
 * DESIGN  Open reads the 64-byte footer, then the index, props and filter
 *         blocks, and keeps them in memory for the table's life: the index
 *         is decoded once into an array (key, handle) so seeks are a binary
 *         search with no I/O, and the filter is the raw bit array. Data
 *         blocks are read on demand through the block cache, keyed by
 *         (file_no, block offset); a miss reads the block, checks its
 *         XXH3-64, decompresses it and (unless asked not to) inserts it.
 *         A get consults the bloom filter, binary-searches the index for the
 *         first block whose last ikey >= (okey, max_seq, KIND_MAX), then
 *         seeks inside that block. The iterator is two-level: a position in
 *         the index array and a block iterator over the current block.
 * INVARIANTS (1) nothing read from the file is trusted: every handle must
 *            match the layout exactly (blocks contiguous from offset 0, then
 *            filter, props, index, footer, with no gaps), and every length
 *            is checked against the file size before anything is allocated;
 *            (2) a decompressed block is at most SST_MAX_RAW_BLOCK bytes;
 *            (3) every failure returns KV_CORRUPT (or the I/O status) with
 *            "<path>: <what> at offset <n>" in kv_errmsg() -- never a crash
 *            and never a wrong answer; (4) the index keys increase strictly,
 *            and the last one equals props.largest.
 * THREADING  An open table is immutable; any number of threads may get and
 *            iterate at once. An iterator belongs to one thread. The stats
 *            are relaxed atomics.
 */
#define KV_LOG_MODULE "engine"
#include "block.h"
#include "fs.h"
#include "sst_int.h"

#include <stdatomic.h>
#include <stdio.h>
#include <xxhash.h>
#include <pthread.h>
#include <zstd.h>

typedef struct sst_idx {
    size_t key_off, key_len; /* into idx_keys */
    uint64_t off, size;      /* the data block's handle */
} sst_idx_t;

struct eng_sst {
    eng_file_t *f;
    const char *path;
    uint64_t file_no;
    eng_cache_t *cache;
    uint64_t size, data_end;
    sst_footer_t footer;
    sst_idx_t *idx;
    size_t nidx;
    kv_buf_t idx_keys;
    uint8_t *filter; /* kv_malloc'd; NULL when the table has none */
    uint64_t filter_bits;
    int filter_k;
    eng_sst_props_t props;
};

static _Atomic uint64_t stat_bloom_checks, stat_bloom_negatives, stat_blocks_read;

/* One decompression context per thread, reused for every block (creating
 * one per block cost more than the decompression itself); freed when the
 * thread exits. */
static pthread_key_t dctx_key;
static pthread_once_t dctx_once = PTHREAD_ONCE_INIT;

static void dctx_free(void *p) { ZSTD_freeDCtx(p); }
static void dctx_key_init(void) { pthread_key_create(&dctx_key, dctx_free); }

static ZSTD_DCtx *thread_dctx(void)
{
    pthread_once(&dctx_once, dctx_key_init);
    ZSTD_DCtx *dc = pthread_getspecific(dctx_key);
    if (!dc && (dc = ZSTD_createDCtx()) != NULL) pthread_setspecific(dctx_key, dc);
    return dc;
}

static kv_status_t sst_corrupt(const char *path, const char *what, uint64_t off)
{
    kv_errmsg_set("%s: %s at offset %llu", path, what, (unsigned long long)off);
    return KV_CORRUPT;
}

static kv_slice_t idx_key(const eng_sst_t *t, size_t i)
{
    return kv_slice(t->idx_keys.data + t->idx[i].key_off, t->idx[i].key_len);
}

/* ---- reading one block -------------------------------------------------- */

/* Read the block at h, which must end (trailer included) at or before
 * limit; check its checksum and return its raw contents in a kv_malloc'd
 * buffer (*out, *len). what names the block in messages. */
static kv_status_t read_block(eng_file_t *f, const char *path, sst_handle_t h,
                              uint64_t limit, const char *what, uint8_t **out,
                              size_t *len)
{
    char msg[96];
    if (h.off > limit || h.size > limit - h.off ||
        limit - h.off - h.size < SST_TRAILER) {
        snprintf(msg, sizeof msg, "%s block handle out of bounds", what);
        return sst_corrupt(path, msg, h.off);
    }
    size_t n = (size_t)h.size + SST_TRAILER;
    uint8_t *buf = kv_try_malloc(n);
    if (!buf) {
        kv_errmsg_set("%s: no memory for a %zu-byte %s block at offset %llu",
                      path, n, what, (unsigned long long)h.off);
        return KV_NOMEM;
    }
    kv_status_t rc = eng_file_pread(f, h.off, buf, n);
    if (rc != KV_OK) {
        kv_free(buf);
        return rc;
    }
    if (XXH3_64bits(buf, (size_t)h.size + 1) != kv_get_le64(buf + h.size + 1)) {
        kv_free(buf);
        snprintf(msg, sizeof msg, "%s block checksum mismatch", what);
        return sst_corrupt(path, msg, h.off);
    }
    uint8_t type = buf[h.size];
    if (type == SST_BLOCK_RAW) {
        *out = buf;
        *len = (size_t)h.size;
        return KV_OK;
    }
    uint64_t raw;
    size_t vn = kv_get_varint64(buf, buf + h.size, &raw);
    if (type != SST_BLOCK_ZSTD) {
        snprintf(msg, sizeof msg, "%s block of unknown type %u", what, type);
    } else if (vn == 0 || raw > SST_MAX_RAW_BLOCK) {
        snprintf(msg, sizeof msg, "%s block with a bad raw size", what);
    } else {
        uint8_t *dst = kv_try_malloc(raw ? (size_t)raw : 1);
        if (!dst) {
            kv_free(buf);
            kv_errmsg_set("%s: no memory to decompress %s block at offset %llu",
                          path, what, (unsigned long long)h.off);
            return KV_NOMEM;
        }
        ZSTD_DCtx *dc = thread_dctx();
        size_t r = dc ? ZSTD_decompressDCtx(dc, dst, (size_t)raw, buf + vn,
                                            (size_t)h.size - vn)
                      : (size_t)-1;
        kv_free(buf);
        if (!ZSTD_isError(r) && r == raw) {
            *out = dst;
            *len = (size_t)raw;
            return KV_OK;
        }
        kv_free(dst);
        snprintf(msg, sizeof msg, "%s block does not decompress", what);
        return sst_corrupt(path, msg, h.off);
    }
    kv_free(buf);
    return sst_corrupt(path, msg, h.off);
}

static void block_delete(void *v)
{
    eng_block_t *b = v;
    kv_free(b->owned);
    kv_free(b);
}

/* Read data block i from disk and decode its restart array. */
static kv_status_t read_data_block(const eng_sst_t *t, size_t i, eng_block_t **out)
{
    const sst_idx_t *e = &t->idx[i];
    sst_handle_t h = {e->off, e->size};
    uint8_t *raw;
    size_t n;
    KV_RET(read_block(t->f, t->path, h, t->data_end, "data", &raw, &n));
    atomic_fetch_add_explicit(&stat_blocks_read, 1, memory_order_relaxed);
    eng_block_t *b = kv_malloc(sizeof *b);
    if (!eng_block_parse(b, raw, n) || b->nrestarts == 0) {
        kv_free(raw);
        kv_free(b);
        return sst_corrupt(t->path, "bad data block restart array", e->off);
    }
    b->owned = raw;
    *out = b;
    return KV_OK;
}

/* A data block in use: from the cache (h set) or private (h NULL). */
typedef struct sst_blkref {
    eng_block_t *blk;
    eng_cache_handle_t *h;
} sst_blkref_t;

static kv_status_t block_acquire(eng_sst_t *t, size_t i, bool no_io,
                                 bool fill_cache, sst_blkref_t *out)
{
    if (t->cache) {
        eng_cache_handle_t *h = eng_cache_lookup(t->cache, t->file_no, t->idx[i].off);
        if (h) {
            out->blk = eng_cache_value(h);
            out->h = h;
            return KV_OK;
        }
    }
    if (no_io) return KV_AGAIN;
    eng_block_t *b;
    KV_RET(read_data_block(t, i, &b));
    out->blk = b;
    out->h = NULL;
    if (t->cache && fill_cache)
        out->h = eng_cache_insert(t->cache, t->file_no, t->idx[i].off, b,
                                  sizeof *b + b->size + 4 * (size_t)b->nrestarts,
                                  block_delete);
    return KV_OK;
}

static void block_release(eng_sst_t *t, sst_blkref_t *r)
{
    if (r->h) eng_cache_release(t->cache, r->h);
    else if (r->blk) block_delete(r->blk);
    r->blk = NULL;
    r->h = NULL;
}

/* ---- open --------------------------------------------------------------- */

static kv_status_t load_index(eng_sst_t *t)
{
    uint8_t *raw = NULL;
    size_t n;
    eng_block_t blk;
    eng_block_iter_t it;
    uint64_t at = t->footer.index.off;
    kv_status_t rc;
    KV_RET(read_block(t->f, t->path, t->footer.index, t->size - ENG_SST_FOOTER,
                      "index", &raw, &n));
    eng_block_iter_init(&it, &blk);
    if (!eng_block_parse(&blk, raw, n)) {
        rc = sst_corrupt(t->path, "bad index block restart array", at);
        goto err;
    }
    size_t cap = 0;
    uint64_t expect = 0;
    for (eng_block_iter_seek_first(&it); it.valid; eng_block_iter_next(&it)) {
        kv_slice_t k = kv_buf_slice(&it.key);
        uint64_t off, size;
        const uint8_t *v = it.value.data, *end = v + it.value.len;
        size_t a = kv_get_varint64(v, end, &off), b = 0;
        if (a) b = kv_get_varint64(v + a, end, &size);
        if (!a || !b || a + b != it.value.len) {
            rc = sst_corrupt(t->path, "bad index entry", at);
            goto err;
        }
        if (off != expect || size > t->data_end - off ||
            t->data_end - off - size < SST_TRAILER) {
            rc = sst_corrupt(t->path, "index entry with a bad block handle", at);
            goto err;
        }
        expect = off + size + SST_TRAILER;
        if (t->nidx > 0 && eng_ikey_cmp(idx_key(t, t->nidx - 1), k) >= 0) {
            rc = sst_corrupt(t->path, "index keys out of order", at);
            goto err;
        }
        if (t->nidx == cap) {
            cap = cap ? cap * 2 : 64;
            t->idx = kv_realloc(t->idx, cap * sizeof *t->idx);
        }
        sst_idx_t *e = &t->idx[t->nidx++];
        e->key_off = t->idx_keys.len;
        e->key_len = k.len;
        e->off = off;
        e->size = size;
        kv_buf_append(&t->idx_keys, k.data, k.len);
    }
    if (it.corrupt) {
        rc = sst_corrupt(t->path, "bad index block entry", at);
        goto err;
    }
    if (expect != t->data_end) {
        rc = sst_corrupt(t->path, "index does not cover the data blocks", at);
        goto err;
    }
    rc = KV_OK;
err:
    eng_block_iter_deinit(&it);
    kv_free(raw);
    return rc;
}

static kv_status_t load_props(eng_sst_t *t)
{
    uint8_t *raw;
    size_t n;
    uint64_t data_bytes, at = t->footer.props.off;
    KV_RET(read_block(t->f, t->path, t->footer.props, t->size - ENG_SST_FOOTER,
                      "props", &raw, &n));
    bool ok = sst_props_decode(kv_slice(raw, n), &t->props, &data_bytes);
    kv_free(raw);
    if (!ok) return sst_corrupt(t->path, "bad props block", at);
    t->props.file_size = t->size;
    if (data_bytes != t->data_end || (t->props.entries == 0) != (t->nidx == 0) ||
        t->props.entries < t->nidx ||
        (t->nidx > 0 &&
         !kv_slice_eq(kv_buf_slice(&t->props.largest), idx_key(t, t->nidx - 1))))
        return sst_corrupt(t->path, "props disagree with the index", at);
    return KV_OK;
}

static kv_status_t load_filter(eng_sst_t *t)
{
    if (t->footer.filter.size == 0) return KV_OK;
    uint8_t *raw;
    size_t n;
    KV_RET(read_block(t->f, t->path, t->footer.filter, t->size - ENG_SST_FOOTER,
                      "filter", &raw, &n));
    int k = n >= 2 ? raw[n - 1] : 0;
    if (k < 1 || k > SST_MAX_BLOOM_K) {
        kv_free(raw);
        return sst_corrupt(t->path, "bad filter block", t->footer.filter.off);
    }
    t->filter = raw;
    t->filter_bits = (uint64_t)(n - 1) * 8;
    t->filter_k = k;
    return KV_OK;
}

kv_status_t eng_sst_open(const char *path, uint64_t file_no, eng_cache_t *cache,
                         eng_sst_t **out)
{
    kv_status_t rc;
    eng_sst_t *t = kv_calloc(1, sizeof *t);
    t->file_no = file_no;
    t->cache = cache;
    KV_ERR(rc = eng_file_open_read(path, &t->f));
    t->path = eng_file_path(t->f);
    t->size = eng_file_size(t->f);
    if (t->size < ENG_SST_FOOTER) {
        rc = sst_corrupt(path, "file too short for a table footer", t->size);
        goto err;
    }
    uint64_t fo = t->size - ENG_SST_FOOTER;
    uint8_t foot[ENG_SST_FOOTER];
    const char *what = NULL;
    KV_ERR(rc = eng_file_pread(t->f, fo, foot, sizeof foot));
    if (!sst_footer_decode(foot, &t->footer, &what)) {
        rc = sst_corrupt(path, what, fo);
        goto err;
    }
    /* The layout is exact: data | filter | props | index | footer. */
    const sst_footer_t *ft = &t->footer;
    uint64_t tr = SST_TRAILER;
    bool ok = ft->index.off <= fo && ft->index.size <= fo - ft->index.off &&
              fo - ft->index.off - ft->index.size == tr &&
              ft->props.off <= ft->index.off &&
              ft->props.size <= ft->index.off - ft->props.off &&
              ft->index.off - ft->props.off - ft->props.size == tr &&
              ft->filter.off <= ft->props.off;
    if (ok && ft->filter.size == 0) ok = ft->filter.off == ft->props.off;
    else if (ok)
        ok = ft->filter.size <= ft->props.off - ft->filter.off &&
             ft->props.off - ft->filter.off - ft->filter.size == tr;
    if (!ok) {
        rc = sst_corrupt(path, "footer block handles do not match the layout", fo);
        goto err;
    }
    t->data_end = ft->filter.off;
    KV_ERR(rc = load_index(t));
    KV_ERR(rc = load_props(t));
    KV_ERR(rc = load_filter(t));
    *out = t;
    return KV_OK;
err:
    eng_sst_close(t);
    return rc;
}

void eng_sst_close(eng_sst_t *t)
{
    if (!t) return;
    if (t->f) eng_file_close(t->f);
    kv_free(t->idx);
    kv_buf_deinit(&t->idx_keys);
    kv_free(t->filter);
    eng_sst_props_deinit(&t->props);
    kv_free(t);
}

const eng_sst_props_t *eng_sst_props(const eng_sst_t *t) { return &t->props; }
uint64_t eng_sst_file_no(const eng_sst_t *t) { return t->file_no; }

/* ---- point reads -------------------------------------------------------- */

static bool bloom_test(const eng_sst_t *t, kv_slice_t okey)
{
    uint64_t tok = eng_okey_token(okey);
    uint64_t x = tok & 0xffffffffu, d = sst_bloom_delta(tok);
    for (int j = 0; j < t->filter_k; j++, x += d) {
        uint64_t bit = x % t->filter_bits;
        if (!(t->filter[bit / 8] & (1u << (bit % 8)))) return false;
    }
    return true;
}

bool eng_sst_may_contain(eng_sst_t *t, kv_slice_t okey)
{
    if (!t->filter || okey.len < ENG_TOKEN_LEN) return true;
    atomic_fetch_add_explicit(&stat_bloom_checks, 1, memory_order_relaxed);
    if (bloom_test(t, okey)) return true;
    atomic_fetch_add_explicit(&stat_bloom_negatives, 1, memory_order_relaxed);
    return false;
}

/* Index of the first block whose last key >= target (nidx if none). */
static size_t index_seek(const eng_sst_t *t, kv_slice_t target)
{
    size_t lo = 0, hi = t->nidx;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (eng_ikey_cmp(idx_key(t, mid), target) < 0) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* A cell must decode and agree with the kind in its key. */
static bool cell_ok(eng_kind_t kind, kv_slice_t cell)
{
    eng_cell_t c;
    return eng_cell_decode(cell, &c) && c.tombstone == (kind == ENG_KIND_TOMBSTONE);
}

kv_status_t eng_sst_get(eng_sst_t *t, kv_slice_t okey, uint64_t max_seq,
                        bool no_io, eng_kind_t *kind, uint64_t *seq,
                        kv_buf_t *cell)
{
    if (okey.len < ENG_TOKEN_LEN) return KV_NOTFOUND;
    if (!eng_sst_may_contain(t, okey)) return KV_NOTFOUND;
    if (max_seq > ENG_MAX_SEQ) max_seq = ENG_MAX_SEQ;
    kv_status_t rc = KV_NOTFOUND;
    kv_buf_t target = {0};
    eng_block_iter_t it;
    sst_blkref_t ref = {0};
    eng_block_iter_init(&it, NULL);
    eng_ikey_append(&target, okey, max_seq, ENG_KIND_MAX);
    size_t first = index_seek(t, kv_buf_slice(&target));
    for (size_t i = first; i < t->nidx; i++) {
        block_release(t, &ref);
        KV_ERR(rc = block_acquire(t, i, no_io, true, &ref));
        rc = KV_NOTFOUND;
        it.b = ref.blk;
        if (i == first) eng_block_iter_seek(&it, kv_buf_slice(&target));
        else eng_block_iter_seek_first(&it);
        if (it.corrupt) {
            rc = sst_corrupt(t->path, "bad data block entry", t->idx[i].off);
            goto err;
        }
        if (!it.valid) continue; /* only when the index is stale: go on */
        eng_ikey_t ik;
        if (!eng_ikey_parse(kv_buf_slice(&it.key), &ik)) { /* checked: NEVER */
            rc = sst_corrupt(t->path, "bad data block entry", t->idx[i].off);
            goto err;
        }
        if (!kv_slice_eq(ik.okey, okey)) break;
        if (ik.seq > max_seq || !cell_ok(ik.kind, it.value)) {
            rc = sst_corrupt(t->path, "bad data block entry", t->idx[i].off);
            goto err;
        }
        kv_buf_clear(cell);
        kv_buf_append(cell, it.value.data, it.value.len);
        *kind = ik.kind;
        *seq = ik.seq;
        rc = KV_OK;
        break;
    }
err:
    block_release(t, &ref);
    eng_block_iter_deinit(&it);
    kv_buf_deinit(&target);
    return rc;
}

/* ---- the two-level iterator --------------------------------------------- */

typedef struct sst_iter {
    eng_iiter_t base;
    eng_sst_t *t;
    bool fill_cache;
    size_t bi; /* current block; t->nidx = none */
    sst_blkref_t ref;
    eng_block_iter_t bit;
    kv_status_t status;
} sst_iter_t;

/* Make block i current (positioned nowhere yet). False at the end or on
 * an error (status set). */
static bool it_load(sst_iter_t *it, size_t i)
{
    block_release(it->t, &it->ref);
    it->bit.valid = false;
    it->bi = i;
    if (i >= it->t->nidx) return false;
    kv_status_t rc = block_acquire(it->t, i, false, it->fill_cache, &it->ref);
    if (rc != KV_OK) {
        it->status = rc;
        it->bi = it->t->nidx;
        return false;
    }
    it->bit.b = it->ref.blk;
    return true;
}

/* After the block iterator ran off its block: check the block ended where
 * the index says, then move to the next non-exhausted block. */
static void it_settle(sst_iter_t *it)
{
    while (!it->bit.valid && it->bi < it->t->nidx) {
        uint64_t off = it->t->idx[it->bi].off;
        if (it->bit.corrupt) {
            it->status = sst_corrupt(it->t->path, "bad data block entry", off);
        } else if (!kv_slice_eq(kv_buf_slice(&it->bit.key), idx_key(it->t, it->bi))) {
            it->status = sst_corrupt(it->t->path,
                                     "data block does not end at its index key", off);
        }
        if (it->status != KV_OK) {
            block_release(it->t, &it->ref);
            it->bi = it->t->nidx;
            return;
        }
        if (!it_load(it, it->bi + 1)) return;
        eng_block_iter_seek_first(&it->bit);
    }
}

static bool sst_it_valid(eng_iiter_t *b)
{
    sst_iter_t *it = (sst_iter_t *)b;
    return it->status == KV_OK && it->bi < it->t->nidx && it->bit.valid;
}

static void sst_it_seek_first(eng_iiter_t *b)
{
    sst_iter_t *it = (sst_iter_t *)b;
    it->status = KV_OK;
    if (!it_load(it, 0)) return;
    eng_block_iter_seek_first(&it->bit);
    it_settle(it);
}

static void sst_it_seek(eng_iiter_t *b, kv_slice_t ikey)
{
    sst_iter_t *it = (sst_iter_t *)b;
    it->status = KV_OK;
    if (ikey.len < ENG_TRAILER_LEN) {
        sst_it_seek_first(b);
        return;
    }
    if (!it_load(it, index_seek(it->t, ikey))) return;
    eng_block_iter_seek(&it->bit, ikey);
    it_settle(it);
}

static void sst_it_next(eng_iiter_t *b)
{
    sst_iter_t *it = (sst_iter_t *)b;
    if (!sst_it_valid(b)) return;
    eng_block_iter_next(&it->bit);
    it_settle(it);
}

static kv_slice_t sst_it_key(eng_iiter_t *b)
{
    return kv_buf_slice(&((sst_iter_t *)b)->bit.key);
}

static kv_slice_t sst_it_value(eng_iiter_t *b) { return ((sst_iter_t *)b)->bit.value; }

static kv_status_t sst_it_status(eng_iiter_t *b) { return ((sst_iter_t *)b)->status; }

static void sst_it_destroy(eng_iiter_t *b)
{
    sst_iter_t *it = (sst_iter_t *)b;
    block_release(it->t, &it->ref);
    eng_block_iter_deinit(&it->bit);
    kv_free(it);
}

static const eng_iiter_ops_t sst_iter_ops = {
    .valid = sst_it_valid,
    .seek_first = sst_it_seek_first,
    .seek = sst_it_seek,
    .next = sst_it_next,
    .key = sst_it_key,
    .value = sst_it_value,
    .status = sst_it_status,
    .destroy = sst_it_destroy,
};

eng_iiter_t *eng_sst_iter_create(eng_sst_t *t, bool fill_cache)
{
    sst_iter_t *it = kv_calloc(1, sizeof *it);
    it->base.ops = &sst_iter_ops;
    it->t = t;
    it->fill_cache = fill_cache;
    it->bi = t->nidx;
    eng_block_iter_init(&it->bit, NULL);
    return &it->base;
}

/* ---- stats and verify --------------------------------------------------- */

void eng_sst_get_stats(eng_sst_stats_t *out)
{
    out->bloom_checks = atomic_load_explicit(&stat_bloom_checks, memory_order_relaxed);
    out->bloom_negatives =
        atomic_load_explicit(&stat_bloom_negatives, memory_order_relaxed);
    out->blocks_read = atomic_load_explicit(&stat_blocks_read, memory_order_relaxed);
}

typedef struct verify_acc {
    eng_sst_props_t p;
    kv_buf_t prev;
} verify_acc_t;

/* Check every entry of block i (read from disk, bypassing the cache). */
static kv_status_t verify_block(eng_sst_t *t, size_t i, verify_acc_t *a)
{
    eng_block_t *b;
    eng_block_iter_t it;
    uint64_t off = t->idx[i].off;
    kv_status_t rc = KV_OK;
    KV_RET(read_data_block(t, i, &b));
    eng_block_iter_init(&it, b);
    for (eng_block_iter_seek_first(&it); it.valid; eng_block_iter_next(&it)) {
        kv_slice_t k = kv_buf_slice(&it.key);
        eng_ikey_t ik;
        eng_cell_t c;
        if (!eng_ikey_parse(k, &ik)) { /* the iterator checked it: NEVER */
            rc = sst_corrupt(t->path, "bad data block entry", off);
            goto err;
        }
        if (a->prev.len && eng_ikey_cmp(kv_buf_slice(&a->prev), k) >= 0) {
            rc = sst_corrupt(t->path, "entries out of order", off);
            goto err;
        }
        if (!cell_ok(ik.kind, it.value) || !eng_cell_decode(it.value, &c)) {
            rc = sst_corrupt(t->path, "malformed cell", off);
            goto err;
        }
        if (t->filter && !bloom_test(t, ik.okey)) {
            rc = sst_corrupt(t->path, "filter misses a key of the table",
                             t->footer.filter.off);
            goto err;
        }
        eng_sst_props_t *p = &a->p;
        if (p->entries == 0) kv_buf_append(&p->smallest, k.data, k.len);
        p->entries++;
        p->tombstones += ik.kind == ENG_KIND_TOMBSTONE;
        p->raw_key_bytes += k.len;
        p->raw_value_bytes += it.value.len;
        p->min_ts = KV_MIN(p->min_ts, c.ts);
        p->max_ts = KV_MAX(p->max_ts, c.ts);
        p->min_seq = KV_MIN(p->min_seq, ik.seq);
        p->max_seq = KV_MAX(p->max_seq, ik.seq);
        kv_buf_clear(&a->prev);
        kv_buf_append(&a->prev, k.data, k.len);
    }
    if (it.corrupt) rc = sst_corrupt(t->path, "bad data block entry", off);
    else if (!kv_slice_eq(kv_buf_slice(&it.key), idx_key(t, i)))
        rc = sst_corrupt(t->path, "data block does not end at its index key", off);
err:
    eng_block_iter_deinit(&it);
    block_delete(b);
    return rc;
}

kv_status_t eng_sst_verify(eng_sst_t *t)
{
    kv_status_t rc = KV_OK;
    verify_acc_t a;
    memset(&a, 0, sizeof a);
    a.p.min_ts = UINT64_MAX;
    a.p.min_seq = UINT64_MAX;
    for (size_t i = 0; i < t->nidx; i++) KV_ERR(rc = verify_block(t, i, &a));
    const eng_sst_props_t *p = &t->props, *q = &a.p;
    if (q->entries == 0) a.p.min_ts = a.p.max_ts = a.p.min_seq = a.p.max_seq = 0;
    if (p->entries != q->entries || p->tombstones != q->tombstones ||
        p->raw_key_bytes != q->raw_key_bytes ||
        p->raw_value_bytes != q->raw_value_bytes || p->min_ts != q->min_ts ||
        p->max_ts != q->max_ts || p->min_seq != q->min_seq ||
        p->max_seq != q->max_seq ||
        !kv_slice_eq(kv_buf_slice(&p->smallest), kv_buf_slice(&q->smallest)))
        rc = sst_corrupt(t->path, "props disagree with the data", t->footer.props.off);
err:
    eng_sst_props_deinit(&a.p);
    kv_buf_deinit(&a.prev);
    return rc;
}
