/* format.c -- the token function and the cell codec (see format.h). */
#include "format.h"

#include <xxhash.h>

uint64_t eng_token(kv_slice_t key)
{
    return XXH3_64bits(key.data, key.len);
}

size_t eng_cell_encoded_len(const eng_cell_t *c)
{
    return CELL_HEADER_MIN + (c->expire_ms ? 8 : 0) +
           (c->tombstone ? 0 : c->value.len);
}

void eng_cell_encode(kv_buf_t *out, const eng_cell_t *c)
{
    uint8_t h[CELL_HEADER_MIN + 8];
    size_t n = CELL_HEADER_MIN;
    kv_put_le64(h, c->ts);
    h[8] = (uint8_t)((c->tombstone ? CELL_TOMBSTONE : 0) |
                     (c->expire_ms ? CELL_HAS_EXPIRY : 0));
    if (c->expire_ms) {
        kv_put_le64(h + 9, c->expire_ms);
        n += 8;
    }
    kv_buf_append(out, h, n);
    if (!c->tombstone) kv_buf_append(out, c->value.data, c->value.len);
}

bool eng_cell_decode(kv_slice_t in, eng_cell_t *out)
{
    if (in.len < CELL_HEADER_MIN) return false;
    uint8_t flags = in.data[8];
    if (flags & ~(CELL_TOMBSTONE | CELL_HAS_EXPIRY)) return false;
    size_t off = CELL_HEADER_MIN;
    out->ts = kv_get_le64(in.data);
    out->tombstone = (flags & CELL_TOMBSTONE) != 0;
    out->expire_ms = 0;
    if (flags & CELL_HAS_EXPIRY) {
        if (in.len < off + 8) return false;
        out->expire_ms = kv_get_le64(in.data + off);
        off += 8;
    }
    if (out->tombstone && in.len != off) return false;
    out->value = kv_slice(in.data + off, in.len - off);
    return true;
}

int eng_cell_lww_cmp(const eng_cell_t *a, const eng_cell_t *b)
{
    if (a->ts != b->ts) return a->ts > b->ts ? 1 : -1;
    if (a->tombstone != b->tombstone) return a->tombstone ? 1 : -1;
    int c = kv_slice_cmp(a->value, b->value);
    if (c) return c > 0 ? 1 : -1;
    if (a->expire_ms != b->expire_ms) {
        /* 0 means never expires: the longest-lived wins */
        uint64_t ea = a->expire_ms ? a->expire_ms : UINT64_MAX;
        uint64_t eb = b->expire_ms ? b->expire_ms : UINT64_MAX;
        return ea > eb ? 1 : -1;
    }
    return 0;
}
