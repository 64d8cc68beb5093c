/* batch.c -- write batches and the WAL record payload.
 *
 * DESIGN  A batch stores each operation already in engine form: the okey
 *         (token || key) and the encoded cell, so the commit leader does no
 *         encoding work while other writers wait. The WAL payload of a group
 *         is a flat list of accepted operations with consecutive sequence
 *         numbers; replay decodes it strictly and refuses anything that does
 *         not parse to the last byte.
 * THREADING  A batch is built by one thread; the engine reads it while the
 *            caller waits (eng_write) or from its own copy (eng_write_async).
 */
#include "engine_int.h"

eng_batch_t *eng_batch_create(void)
{
    return kv_calloc(1, sizeof(eng_batch_t));
}

void eng_batch_destroy(eng_batch_t *b)
{
    if (!b) return;
    kv_buf_deinit(&b->data);
    kv_free(b->ops);
    kv_free(b);
}

void eng_batch_clear(eng_batch_t *b)
{
    kv_buf_clear(&b->data);
    b->n = 0;
    b->invalid = false;
}

size_t eng_batch_count(const eng_batch_t *b) { return b->n; }

size_t eng_batch_bytes(const eng_batch_t *b) { return b->data.len; }

static void add_op(eng_batch_t *b, kv_slice_t key, const eng_cell_t *cell)
{
    if (key.len > ENG_MAX_KEY_LEN || b->data.len > UINT32_MAX / 2) {
        b->invalid = true;
        return;
    }
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 8;
        b->ops = kv_realloc(b->ops, b->cap * sizeof *b->ops);
    }
    eng_op_t *op = &b->ops[b->n++];
    op->kind = cell->tombstone ? ENG_KIND_TOMBSTONE : ENG_KIND_VALUE;
    op->okey_off = (uint32_t)b->data.len;
    eng_okey_append(&b->data, key);
    op->okey_len = (uint32_t)(b->data.len - op->okey_off);
    op->cell_off = (uint32_t)b->data.len;
    eng_cell_encode(&b->data, cell);
    op->cell_len = (uint32_t)(b->data.len - op->cell_off);
}

void eng_batch_put(eng_batch_t *b, kv_slice_t key, kv_slice_t value,
                   hlc_ts_t ts, uint64_t expire_ms)
{
    /* value limits are the engine's option: checked at write time */
    eng_cell_t c = {.ts = ts, .expire_ms = expire_ms, .tombstone = false,
                    .value = value};
    if (value.len > UINT32_MAX / 4) {
        b->invalid = true;
        return;
    }
    add_op(b, key, &c);
}

void eng_batch_delete(eng_batch_t *b, kv_slice_t key, hlc_ts_t ts)
{
    eng_cell_t c = {.ts = ts, .tombstone = true};
    add_op(b, key, &c);
}

eng_batch_t *eng_batch_clone(const eng_batch_t *b)
{
    eng_batch_t *c = eng_batch_create();
    kv_buf_append(&c->data, b->data.data, b->data.len);
    if (b->n) {
        c->ops = kv_memdup(b->ops, b->n * sizeof *b->ops);
        c->n = c->cap = b->n;
    }
    c->invalid = b->invalid;
    return c;
}

/* ---- WAL payload ------------------------------------------------------- */

#define COUNT_FIELD (ENG_WAL_HEADER - 8) /* a count as a fixed-width varint */

void eng_wal_enc_begin(eng_wal_enc_t *w, kv_buf_t *out, uint64_t seq_base)
{
    uint8_t h[8 + COUNT_FIELD];
    kv_put_le64(h, seq_base);
    memset(h + 8, 0, COUNT_FIELD);
    w->out = out;
    w->count_pos = out->len + 8;
    w->count = 0;
    kv_buf_append(out, h, sizeof h);
}

void eng_wal_enc_add(eng_wal_enc_t *w, eng_kind_t kind, kv_slice_t okey,
                     kv_slice_t cell)
{
    uint8_t h[1 + 2 * KV_VARINT64_MAX];
    size_t n = 0;
    h[n++] = (uint8_t)kind;
    n += kv_put_varint64(h + n, okey.len);
    kv_buf_append(w->out, h, n);
    kv_buf_append(w->out, okey.data, okey.len);
    n = kv_put_varint64(h, cell.len);
    kv_buf_append(w->out, h, n);
    kv_buf_append(w->out, cell.data, cell.len);
    w->count++;
}

uint64_t eng_wal_enc_end(eng_wal_enc_t *w)
{
    /* a fixed-width varint: continuation bits on the first 4 bytes */
    uint8_t *p = w->out->data + w->count_pos;
    uint64_t c = w->count;
    kv_assert(c < (UINT64_C(1) << 35));
    for (int i = 0; i < COUNT_FIELD; i++) {
        p[i] = (uint8_t)(c & 0x7f) | (i < COUNT_FIELD - 1 ? 0x80 : 0);
        c >>= 7;
    }
    return w->count;
}

static kv_status_t wal_walk(kv_slice_t payload, eng_wal_op_fn fn, void *arg,
                            uint64_t *last_seq)
{
    const uint8_t *p = payload.data, *end = p + payload.len;
    if (payload.len < 8) return KV_CORRUPT;
    uint64_t seq = kv_get_le64(p);
    p += 8;
    uint64_t count;
    size_t n = kv_get_varint64(p, end, &count);
    if (!n || count > payload.len || seq == 0 || seq > ENG_MAX_SEQ - count)
        return KV_CORRUPT;
    p += n;
    for (uint64_t i = 0; i < count; i++, seq++) {
        uint64_t klen, clen;
        if (p >= end || *p > ENG_KIND_MAX) return KV_CORRUPT;
        eng_kind_t kind = (eng_kind_t)*p++;
        if (!(n = kv_get_varint64(p, end, &klen))) return KV_CORRUPT;
        p += n;
        if (klen < ENG_TOKEN_LEN || klen > (uint64_t)(end - p)) return KV_CORRUPT;
        kv_slice_t okey = kv_slice(p, (size_t)klen);
        p += klen;
        if (!(n = kv_get_varint64(p, end, &clen))) return KV_CORRUPT;
        p += n;
        if (clen > (uint64_t)(end - p)) return KV_CORRUPT;
        kv_slice_t cell = kv_slice(p, (size_t)clen);
        p += clen;
        eng_cell_t c;
        if (!eng_cell_decode(cell, &c) ||
            c.tombstone != (kind == ENG_KIND_TOMBSTONE))
            return KV_CORRUPT;
        if (fn) fn(arg, seq, kind, okey, cell);
        if (last_seq) *last_seq = seq;
    }
    return p == end ? KV_OK : KV_CORRUPT;
}

kv_status_t eng_wal_decode(kv_slice_t payload, eng_wal_op_fn fn, void *arg,
                           uint64_t *last_seq)
{
    /* validate the whole record before applying any of it */
    uint64_t last = 0;
    KV_RET(wal_walk(payload, NULL, NULL, &last));
    KV_RET(wal_walk(payload, fn, arg, NULL));
    if (last_seq && last) *last_seq = last;
    return KV_OK;
}
