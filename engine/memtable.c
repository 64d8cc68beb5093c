/* memtable.c -- the in-memory table: a skiplist over an arena.
 *
 * DESIGN  Entries live in skiplist nodes carved from an arena: blocks of
 *         MT_BLOCK_BYTES taken from kv_malloc, handed out front to back and
 *         freed all at once when the last reference goes. An entry larger
 *         than a quarter block gets a block of its own, so one 1 MiB value
 *         does not waste most of a shared block. A node is
 *
 *             mt_node_t header (tok, trailer, lengths, height)
 *             next[height]                      atomic links, level 0 first
 *             okey || trailer(8, LE)            the ikey, as format.h lays it
 *             cell bytes
 *
 *         so key() and value() hand out slices straight into the node. The
 *         header repeats the first eight okey bytes as a big-endian integer
 *         (tok) and the trailer as an integer: tokens are hashes, so almost
 *         every comparison during a search is decided by one integer compare
 *         on the cache line that also holds the links; memcmp runs only when
 *         tokens tie (same key, or a hash collision). Heights are drawn with
 *         branching 4 from a per-memtable xorshift generator (writer only).
 *
 * INVARIANTS
 *   (1) At every level the list is strictly increasing in internal-key
 *       order (eng_ikey_cmp): okey ascending, trailer descending.
 *   (2) A node is fully written (header, ikey, cell, its own next links)
 *       before any link to it is published; links only ever change from
 *       "points at B" to "points at A" where A was inserted between.
 *   (3) Nodes are never removed or modified after publication, so a pointer
 *       a reader has loaded stays valid while it holds a reference.
 *   (4) bytes counts every arena byte handed out plus the abandoned tails of
 *       retired blocks; it only grows.
 *
 * THREADING  One writer (eng_memtable_add) at a time, serialised by the
 *            caller. Readers (get, iterators) take no locks: they read links
 *            with acquire loads that pair with the writer's release stores,
 *            which makes the node contents written before the store visible.
 *            max_height is read relaxed: a reader that sees a new height but
 *            still a NULL head link at that level just descends. bytes and
 *            count are relaxed atomics, readable from any thread. The
 *            refcount is atomic; the thread dropping it to zero frees the
 *            arena (acq_rel so every prior use happens-before the free).
 */
#include "memtable.h"

#include <stdalign.h>
#include <stdatomic.h>

#define MT_MAX_HEIGHT ENG_MT_MAX_HEIGHT /* 4^12 = 16M entries before heights saturate */
#define MT_BLOCK_BYTES (1u << 20)
#define MT_ALIGN (sizeof(void *))

typedef struct mt_node mt_node_t;
struct mt_node {
    uint64_t tok;      /* okey[0..8) as a big-endian integer (zero padded) */
    uint64_t trailer;  /* seq << 8 | kind */
    uint32_t klen;     /* okey length; the ikey is klen + ENG_TRAILER_LEN */
    uint32_t vlen;     /* cell length */
    uint32_t height;
    uint32_t unused_;
    _Atomic(mt_node_t *) next[]; /* height links, then ikey, then cell */
};

typedef struct mt_block mt_block_t;
struct mt_block {
    mt_block_t *next;
    alignas(16) uint8_t data[];
};

struct eng_memtable {
    mt_node_t *head;           /* MT_MAX_HEIGHT links, no key */
    _Atomic int max_height;    /* levels in use, >= 1 */
    atomic_uint refs;
    _Atomic size_t bytes;      /* relaxed; see INVARIANT (4) */
    _Atomic uint64_t count;    /* relaxed */
    uint64_t rng;              /* writer only */
    /* a bloom filter over the tokens of every key added, so a get for a key
     * the memtable does not hold (most of the write path's last-write-wins
     * checks) skips the skiplist descent and its cache misses */
    _Atomic uint64_t *filter;
    uint64_t filter_mask;      /* bits - 1; bits is a power of two */
    /* arena, writer only */
    mt_block_t *blocks;
    uint8_t *cur;
    size_t avail;
};

/* A search target, decoded once per search. */
typedef struct mt_skey {
    uint64_t tok;
    uint64_t trailer;
    const uint8_t *okey;
    size_t len;
} mt_skey_t;

/* ---- arena ------------------------------------------------------------- */

static void mt_bytes_add(eng_memtable_t *m, size_t n)
{
    atomic_store_explicit(&m->bytes,
                          atomic_load_explicit(&m->bytes, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static void *mt_arena_alloc(eng_memtable_t *m, size_t n)
{
    n = (n + MT_ALIGN - 1) & ~(MT_ALIGN - 1);
    if (KV_LIKELY(n <= m->avail)) {
        void *p = m->cur;
        m->cur += n;
        m->avail -= n;
        mt_bytes_add(m, n);
        return p;
    }
    if (n > MT_BLOCK_BYTES / 4) {
        /* A dedicated block; the current block keeps serving small ones. */
        mt_block_t *b = kv_malloc(sizeof *b + n);
        b->next = m->blocks;
        m->blocks = b;
        mt_bytes_add(m, sizeof *b + n);
        return b->data;
    }
    mt_block_t *b = kv_malloc(sizeof *b + MT_BLOCK_BYTES);
    b->next = m->blocks;
    m->blocks = b;
    mt_bytes_add(m, sizeof *b + m->avail); /* header + abandoned tail */
    m->cur = b->data + n;
    m->avail = MT_BLOCK_BYTES - n;
    mt_bytes_add(m, n);
    return b->data;
}

/* ---- keys -------------------------------------------------------------- */

static inline uint64_t mt_tok(const uint8_t *okey, size_t len)
{
    if (KV_LIKELY(len >= ENG_TOKEN_LEN)) return kv_get_be64(okey);
    uint8_t pad[ENG_TOKEN_LEN] = {0};
    if (len) memcpy(pad, okey, len);
    return kv_get_be64(pad);
}

static inline mt_skey_t mt_skey(kv_slice_t okey, uint64_t trailer)
{
    mt_skey_t k = {mt_tok(okey.data, okey.len), trailer, okey.data, okey.len};
    return k;
}

static inline uint8_t *mt_node_ikey(const mt_node_t *n)
{
    return (uint8_t *)&n->next[n->height];
}

/* <0, 0, >0 as node n sorts before, equal to, after k. Zero-padded tokens
 * compare like the okeys they start: when they differ the okeys differ the
 * same way, so only a tie needs the full memcmp. */
static inline int mt_cmp(const mt_node_t *n, const mt_skey_t *k)
{
    if (n->tok != k->tok) return n->tok < k->tok ? -1 : 1;
    size_t l = KV_MIN((size_t)n->klen, k->len);
    int c = l ? memcmp(mt_node_ikey(n), k->okey, l) : 0;
    if (c) return c;
    if (n->klen != k->len) return n->klen < k->len ? -1 : 1;
    if (n->trailer != k->trailer) return n->trailer > k->trailer ? -1 : 1;
    return 0;
}

static inline mt_node_t *mt_next(mt_node_t *n, int level)
{
    return atomic_load_explicit(&n->next[level], memory_order_acquire);
}

/* First node >= k, or NULL. When prev is given, prev[l] is the last node
 * < k at level l, for every level below max_height. */
static mt_node_t *mt_find_ge(eng_memtable_t *m, const mt_skey_t *k,
                             mt_node_t **prev)
{
    mt_node_t *x = m->head;
    mt_node_t *known_ge = NULL; /* already compared >= k at a higher level */
    int level = atomic_load_explicit(&m->max_height, memory_order_relaxed) - 1;
    for (;;) {
        mt_node_t *nx = mt_next(x, level);
        if (nx && nx != known_ge && mt_cmp(nx, k) < 0) {
            x = nx;
            continue;
        }
        known_ge = nx;
        if (prev) prev[level] = x;
        if (level == 0) return nx;
        level--;
    }
}

/* ---- lifetime ---------------------------------------------------------- */

#define MT_FILTER_PROBES 3

static void mt_filter_add(eng_memtable_t *m, uint64_t tok)
{
    uint64_t h2 = (tok >> 32) | 1;
    for (int i = 0; i < MT_FILTER_PROBES; i++) {
        uint64_t bit = (tok + (uint64_t)i * h2) & m->filter_mask;
        atomic_fetch_or_explicit(&m->filter[bit >> 6], UINT64_C(1) << (bit & 63),
                                 memory_order_relaxed);
    }
}

static bool mt_filter_may_contain(eng_memtable_t *m, uint64_t tok)
{
    uint64_t h2 = (tok >> 32) | 1;
    for (int i = 0; i < MT_FILTER_PROBES; i++) {
        uint64_t bit = (tok + (uint64_t)i * h2) & m->filter_mask;
        uint64_t w = atomic_load_explicit(&m->filter[bit >> 6], memory_order_relaxed);
        if (!(w & (UINT64_C(1) << (bit & 63)))) return false;
    }
    return true;
}

eng_memtable_t *eng_memtable_create(void)
{
    return eng_memtable_create_sized(1u << 20);
}

eng_memtable_t *eng_memtable_create_sized(size_t budget)
{
    eng_memtable_t *m = kv_calloc(1, sizeof *m);
    /* about one filter bit per 16 bytes of memtable: ~10 bits per entry */
    uint64_t bits = 1u << 16;
    while (bits < budget / 16 && bits < (UINT64_C(1) << 32)) bits <<= 1;
    m->filter = kv_calloc((size_t)(bits / 64), sizeof *m->filter);
    m->filter_mask = bits - 1;
    atomic_init(&m->refs, 1);
    atomic_init(&m->max_height, 1);
    atomic_init(&m->bytes, 0);
    atomic_init(&m->count, 0);
    m->rng = UINT64_C(0x9e3779b97f4a7c15);
    size_t hs = sizeof(mt_node_t) + MT_MAX_HEIGHT * sizeof(m->head->next[0]);
    m->head = mt_arena_alloc(m, hs);
    memset(m->head, 0, sizeof *m->head);
    m->head->height = MT_MAX_HEIGHT;
    for (int i = 0; i < MT_MAX_HEIGHT; i++) atomic_init(&m->head->next[i], NULL);
    return m;
}

void eng_memtable_ref(eng_memtable_t *m)
{
    atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
}

void eng_memtable_unref(eng_memtable_t *m)
{
    if (!m) return;
    unsigned prev = atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel);
    kv_assert(prev > 0);
    if (prev != 1) return;
    mt_block_t *b = m->blocks;
    while (b) {
        mt_block_t *nb = b->next;
        kv_free(b);
        b = nb;
    }
    kv_free(m->filter);
    kv_free(m);
}

/* ---- writer ------------------------------------------------------------ */

static int mt_random_height(eng_memtable_t *m)
{
    uint64_t x = m->rng; /* xorshift64* */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    m->rng = x;
    uint64_t r = x * UINT64_C(0x2545f4914f6cdd1d);
    int h = 1;
    while (h < MT_MAX_HEIGHT && (r & 3) == 0) { /* p = 1/4 per level */
        h++;
        r >>= 2;
    }
    return h;
}

/* prev[] for k from a remembered position: at each level, from the node
 * the lookup stopped at (still before k: nodes are never removed), forward
 * past whatever was inserted since and sorts before k. Levels that did not
 * exist then start at the head. Returns the first node >= k. */
static mt_node_t *mt_catch_up(eng_memtable_t *m, const mt_skey_t *k,
                              const eng_mt_pos_t *pos, mt_node_t **prev)
{
    int top = atomic_load_explicit(&m->max_height, memory_order_relaxed);
    mt_node_t *nx = NULL;
    for (int level = top - 1; level >= 0; level--) {
        mt_node_t *x = level < pos->height ? pos->prev[level] : m->head;
        for (;;) {
            nx = mt_next(x, level);
            if (!nx || mt_cmp(nx, k) >= 0) break;
            x = nx;
        }
        prev[level] = x;
    }
    return nx;
}

void eng_memtable_add(eng_memtable_t *m, uint64_t seq, eng_kind_t kind,
                      kv_slice_t okey, kv_slice_t cell)
{
    eng_memtable_add_at(m, seq, kind, okey, cell, NULL);
}

void eng_memtable_add_at(eng_memtable_t *m, uint64_t seq, eng_kind_t kind,
                         kv_slice_t okey, kv_slice_t cell, const eng_mt_pos_t *pos)
{
    kv_assert(seq <= ENG_MAX_SEQ && (unsigned)kind <= ENG_KIND_MAX);
    kv_assert(okey.len <= UINT32_MAX - ENG_TRAILER_LEN && cell.len <= UINT32_MAX);
    uint64_t trailer = eng_trailer(seq, kind);
    mt_skey_t k = mt_skey(okey, trailer);
    mt_filter_add(m, k.tok); /* before the node is published */
    mt_node_t *prev[MT_MAX_HEIGHT];
    mt_node_t *ge = pos && pos->m == m ? mt_catch_up(m, &k, pos, prev)
                                       : mt_find_ge(m, &k, prev);
    /* (okey, seq) must be new: the same pair twice would make get ambiguous */
    kv_assert(!ge || ge->tok != k.tok || ge->klen != okey.len ||
              (ge->trailer >> 8) != seq ||
              memcmp(mt_node_ikey(ge), okey.data, okey.len) != 0);

    int h = mt_random_height(m);
    int cur_h = atomic_load_explicit(&m->max_height, memory_order_relaxed);
    if (h > cur_h) {
        for (int i = cur_h; i < h; i++) prev[i] = m->head;
        atomic_store_explicit(&m->max_height, h, memory_order_relaxed);
    }

    size_t links = (size_t)h * sizeof(m->head->next[0]);
    size_t ilen = okey.len + ENG_TRAILER_LEN;
    mt_node_t *n = mt_arena_alloc(m, sizeof *n + links + ilen + cell.len);
    n->tok = k.tok;
    n->trailer = trailer;
    n->klen = (uint32_t)okey.len;
    n->vlen = (uint32_t)cell.len;
    n->height = (uint32_t)h;
    n->unused_ = 0;
    uint8_t *p = mt_node_ikey(n);
    if (okey.len) memcpy(p, okey.data, okey.len);
    kv_put_le64(p + okey.len, trailer);
    if (cell.len) memcpy(p + ilen, cell.data, cell.len);

    for (int i = 0; i < h; i++) {
        /* The new node's own link first (nobody can see it yet), then the
         * release store that publishes it together with everything above. */
        atomic_store_explicit(
            &n->next[i],
            atomic_load_explicit(&prev[i]->next[i], memory_order_relaxed),
            memory_order_relaxed);
        atomic_store_explicit(&prev[i]->next[i], n, memory_order_release);
    }
    atomic_store_explicit(&m->count,
                          atomic_load_explicit(&m->count, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

/* ---- readers ----------------------------------------------------------- */

/* n (the first node >= k) when it holds k's okey: its kind, seq, cell. */
static bool mt_entry_of(const mt_node_t *n, const mt_skey_t *k, eng_kind_t *kind,
                        uint64_t *seq, kv_slice_t *cell)
{
    if (!n || n->tok != k->tok || n->klen != k->len) return false;
    const uint8_t *ik = mt_node_ikey(n);
    if (k->len && memcmp(ik, k->okey, k->len) != 0) return false;
    if (kind) *kind = (eng_kind_t)(n->trailer & 0xff);
    if (seq) *seq = n->trailer >> 8;
    if (cell) *cell = kv_slice(ik + n->klen + ENG_TRAILER_LEN, n->vlen);
    return true;
}

bool eng_memtable_get(eng_memtable_t *m, kv_slice_t okey, uint64_t max_seq,
                      eng_kind_t *kind, uint64_t *seq, kv_slice_t *cell)
{
    if (max_seq > ENG_MAX_SEQ) max_seq = ENG_MAX_SEQ;
    mt_skey_t k = mt_skey(okey, eng_trailer(max_seq, ENG_KIND_MAX));
    if (!mt_filter_may_contain(m, k.tok)) return false;
    return mt_entry_of(mt_find_ge(m, &k, NULL), &k, kind, seq, cell);
}

bool eng_memtable_get_pos(eng_memtable_t *m, kv_slice_t okey, eng_kind_t *kind,
                          uint64_t *seq, kv_slice_t *cell, eng_mt_pos_t *pos)
{
    mt_skey_t k = mt_skey(okey, eng_trailer(ENG_MAX_SEQ, ENG_KIND_MAX));
    mt_node_t *prev[MT_MAX_HEIGHT];
    /* no filter shortcut: the insert that follows needs the walk anyway */
    mt_node_t *n = mt_find_ge(m, &k, prev);
    pos->m = m;
    pos->height = atomic_load_explicit(&m->max_height, memory_order_relaxed);
    for (int l = 0; l < pos->height; l++) pos->prev[l] = prev[l];
    return mt_entry_of(n, &k, kind, seq, cell);
}

size_t eng_memtable_bytes(eng_memtable_t *m)
{
    return atomic_load_explicit(&m->bytes, memory_order_relaxed);
}

uint64_t eng_memtable_count(eng_memtable_t *m)
{
    return atomic_load_explicit(&m->count, memory_order_relaxed);
}

/* ---- iterator ---------------------------------------------------------- */

typedef struct mt_iter {
    eng_iiter_t base;
    eng_memtable_t *m;
    mt_node_t *cur;
} mt_iter_t;

static bool mt_iter_valid(eng_iiter_t *it) { return ((mt_iter_t *)it)->cur != NULL; }

static void mt_iter_seek_first(eng_iiter_t *it)
{
    mt_iter_t *i = (mt_iter_t *)it;
    i->cur = mt_next(i->m->head, 0);
}

static void mt_iter_seek(eng_iiter_t *it, kv_slice_t ikey)
{
    mt_iter_t *i = (mt_iter_t *)it;
    mt_skey_t k;
    if (KV_LIKELY(ikey.len >= ENG_TRAILER_LEN))
        k = mt_skey(eng_ikey_okey(ikey), eng_ikey_trailer(ikey));
    else /* not an ikey: treat it as a bare okey, before all its versions */
        k = mt_skey(ikey, UINT64_MAX);
    i->cur = mt_find_ge(i->m, &k, NULL);
}

static void mt_iter_next(eng_iiter_t *it)
{
    mt_iter_t *i = (mt_iter_t *)it;
    kv_assert(i->cur);
    i->cur = mt_next(i->cur, 0);
}

static kv_slice_t mt_iter_key(eng_iiter_t *it)
{
    const mt_node_t *n = ((mt_iter_t *)it)->cur;
    return kv_slice(mt_node_ikey(n), (size_t)n->klen + ENG_TRAILER_LEN);
}

static kv_slice_t mt_iter_value(eng_iiter_t *it)
{
    const mt_node_t *n = ((mt_iter_t *)it)->cur;
    return kv_slice(mt_node_ikey(n) + n->klen + ENG_TRAILER_LEN, n->vlen);
}

static kv_status_t mt_iter_status(eng_iiter_t *it)
{
    KV_UNUSED(it);
    return KV_OK;
}

static void mt_iter_destroy(eng_iiter_t *it)
{
    mt_iter_t *i = (mt_iter_t *)it;
    eng_memtable_unref(i->m);
    kv_free(i);
}

static const eng_iiter_ops_t mt_iter_ops = {
    .valid = mt_iter_valid,
    .seek_first = mt_iter_seek_first,
    .seek = mt_iter_seek,
    .next = mt_iter_next,
    .key = mt_iter_key,
    .value = mt_iter_value,
    .status = mt_iter_status,
    .destroy = mt_iter_destroy,
};

eng_iiter_t *eng_memtable_iter_create(eng_memtable_t *m)
{
    mt_iter_t *i = kv_malloc(sizeof *i);
    i->base.ops = &mt_iter_ops;
    eng_memtable_ref(m);
    i->m = m;
    i->cur = NULL;
    return &i->base;
}
