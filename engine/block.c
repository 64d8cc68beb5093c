/* block.c -- build and decode prefix-compressed blocks with restart points.
 *
 * DESIGN  Every restart_interval-th entry stores its key whole (shared = 0)
 *         and its offset goes into the restart array, so a seek binary-
 *         searches the restart keys and then scans at most one interval.
 * INVARIANTS (1) the decoder never reads outside [data, data + size) nor
 *            outside the restart array; (2) every key it yields parses as an
 *            ikey (eng_ikey_parse), so callers may compare with eng_ikey_cmp;
 *            (3) a restart offset must point at an entry with shared = 0.
 *            Anything else sets corrupt and clears valid.
 * THREADING  A builder or an iterator belongs to one thread; an eng_block_t
 *            is immutable and shared.
 */
#define KV_LOG_MODULE "engine"
#include "block.h"

#include "coding.h"
#include "format.h"

/* ---- builder ------------------------------------------------------------ */

void eng_block_builder_init(eng_block_builder_t *b, int restart_interval)
{
    memset(b, 0, sizeof *b);
    b->interval = restart_interval > 0 ? restart_interval : 16;
}

void eng_block_builder_deinit(eng_block_builder_t *b)
{
    kv_buf_deinit(&b->buf);
    kv_buf_deinit(&b->restarts);
    kv_buf_deinit(&b->last_key);
}

void eng_block_builder_reset(eng_block_builder_t *b)
{
    kv_buf_clear(&b->buf);
    kv_buf_clear(&b->restarts);
    kv_buf_clear(&b->last_key);
    b->counter = 0;
    b->entries = 0;
}

void eng_block_builder_add(eng_block_builder_t *b, kv_slice_t key, kv_slice_t value)
{
    size_t shared = 0;
    if (b->counter == 0) {
        uint8_t r[4];
        kv_assert(b->buf.len <= UINT32_MAX);
        kv_put_le32(r, (uint32_t)b->buf.len);
        kv_buf_append(&b->restarts, r, 4);
    } else {
        size_t max = KV_MIN(key.len, b->last_key.len);
        while (shared < max && key.data[shared] == b->last_key.data[shared])
            shared++;
    }
    uint8_t hdr[3 * KV_VARINT64_MAX];
    size_t n = kv_put_varint64(hdr, shared);
    n += kv_put_varint64(hdr + n, key.len - shared);
    n += kv_put_varint64(hdr + n, value.len);
    kv_buf_reserve(&b->buf, n + key.len - shared + value.len);
    kv_buf_append(&b->buf, hdr, n);
    kv_buf_append(&b->buf, key.data + shared, key.len - shared);
    kv_buf_append(&b->buf, value.data, value.len);
    kv_buf_clear(&b->last_key);
    kv_buf_append(&b->last_key, key.data, key.len);
    if (++b->counter >= b->interval) b->counter = 0;
    b->entries++;
}

size_t eng_block_builder_size(const eng_block_builder_t *b)
{
    return b->buf.len + b->restarts.len + 4;
}

kv_slice_t eng_block_builder_finish(eng_block_builder_t *b)
{
    uint8_t n[4];
    kv_buf_append(&b->buf, b->restarts.data, b->restarts.len);
    kv_put_le32(n, (uint32_t)(b->restarts.len / 4));
    kv_buf_append(&b->buf, n, 4);
    return kv_buf_slice(&b->buf);
}

/* ---- decoding ----------------------------------------------------------- */

bool eng_block_parse(eng_block_t *b, const uint8_t *p, size_t n)
{
    if (n < 4) return false;
    uint32_t nr = kv_get_le32(p + n - 4);
    if ((uint64_t)nr * 4 > n - 4) return false;
    size_t size = n - 4 - (size_t)nr * 4;
    if (nr == 0 && size != 0) return false; /* entries need a restart */
    b->data = p;
    b->size = size;
    b->restarts = p + size;
    b->nrestarts = nr;
    b->owned = NULL;
    return true;
}

void eng_block_iter_init(eng_block_iter_t *it, const eng_block_t *b)
{
    memset(it, 0, sizeof *it);
    it->b = b;
}

void eng_block_iter_deinit(eng_block_iter_t *it) { kv_buf_deinit(&it->key); }

static void iter_fail(eng_block_iter_t *it)
{
    it->valid = false;
    it->corrupt = true;
}

/* Decode the entry at it->next into key/value. With restart set the entry
 * must store its key whole. */
static bool decode_at(eng_block_iter_t *it, size_t off, bool restart)
{
    const eng_block_t *b = it->b;
    const uint8_t *p = b->data + off, *end = b->data + b->size;
    uint64_t shared, unshared, vlen;
    size_t n;
    if (off >= b->size) goto bad;
    if (!(n = kv_get_varint64(p, end, &shared))) goto bad;
    p += n;
    if (!(n = kv_get_varint64(p, end, &unshared))) goto bad;
    p += n;
    if (!(n = kv_get_varint64(p, end, &vlen))) goto bad;
    p += n;
    if (restart && shared != 0) goto bad;
    if (shared > it->key.len) goto bad;
    if (unshared > (uint64_t)(end - p) || vlen > (uint64_t)(end - p) - unshared)
        goto bad;
    it->key.len = (size_t)shared;
    kv_buf_append(&it->key, p, (size_t)unshared);
    p += unshared;
    eng_ikey_t ik;
    if (!eng_ikey_parse(kv_buf_slice(&it->key), &ik)) goto bad;
    it->value = kv_slice(p, (size_t)vlen);
    it->cur = off;
    it->next = (size_t)(p + vlen - b->data);
    it->valid = true;
    return true;
bad:
    iter_fail(it);
    return false;
}

static bool restart_off(eng_block_iter_t *it, uint32_t i, size_t *off)
{
    uint32_t o = kv_get_le32(it->b->restarts + (size_t)i * 4);
    if (o >= it->b->size) {
        iter_fail(it);
        return false;
    }
    *off = o;
    return true;
}

void eng_block_iter_seek_first(eng_block_iter_t *it)
{
    it->valid = false;
    it->corrupt = false;
    kv_buf_clear(&it->key);
    if (it->b->nrestarts == 0) return; /* empty block */
    size_t off;
    if (!restart_off(it, 0, &off)) return;
    if (off != 0) {
        iter_fail(it);
        return;
    }
    decode_at(it, 0, true);
}

void eng_block_iter_next(eng_block_iter_t *it)
{
    if (!it->valid) return;
    if (it->next >= it->b->size) {
        it->valid = false;
        return;
    }
    decode_at(it, it->next, false);
}

void eng_block_iter_seek(eng_block_iter_t *it, kv_slice_t target)
{
    it->valid = false;
    it->corrupt = false;
    if (it->b->nrestarts == 0) return;
    if (target.len < 8) {
        eng_block_iter_seek_first(it);
        return;
    }
    /* Find the last restart whose key < target (or restart 0). */
    uint32_t lo = 0, hi = it->b->nrestarts - 1;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo + 1) / 2;
        size_t off;
        if (!restart_off(it, mid, &off)) return;
        kv_buf_clear(&it->key);
        if (!decode_at(it, off, true)) return;
        if (eng_ikey_cmp(kv_buf_slice(&it->key), target) < 0) lo = mid;
        else hi = mid - 1;
    }
    size_t off;
    if (!restart_off(it, lo, &off)) return;
    kv_buf_clear(&it->key);
    if (!decode_at(it, off, true)) return;
    while (it->valid && eng_ikey_cmp(kv_buf_slice(&it->key), target) < 0)
        eng_block_iter_next(it);
}
