/* cache.c -- the block cache: a sharded, reference-counted LRU (cache.h).
 *
 * DESIGN  The key (file, off) is hashed once with a 64-bit mixer; the top
 *         bits pick a shard, the low bits a bucket of that shard's chained
 *         hash table. Each shard has its own mutex, capacity (total / shards,
 *         rounded up) and usage. An entry is in one of three states:
 *
 *           CACHED+IDLE  --lookup/insert-->  CACHED+IN USE
 *                ^   (leaves the LRU list)        |
 *                +---- last handle released ------+
 *           CACHED+IDLE  --evicted / replaced / erased-->  freed now
 *           CACHED+IN USE --replaced / erased-->  DETACHED (freed at the
 *                                                  last release)
 *
 *         Only CACHED+IDLE entries sit on the LRU list (oldest at the head),
 *         so eviction never walks past entries it cannot drop.
 * INVARIANTS (1) refs counts the handles out plus one while the entry is in
 *            the hash table (in_cache); refs == 1 && in_cache <=> on the LRU
 *            list. (2) usage is the sum of the charges of in_cache entries.
 *            (3) After an insert or release, usage <= capacity unless every
 *            remaining entry is in use. (4) The value is deleted exactly once,
 *            when refs reaches 0.
 * THREADING  Any thread; every shard's state is under that shard's mutex.
 *            Deleters run outside the lock.
 */
#define KV_LOG_MODULE "engine"
#include "cache.h"

#include <pthread.h>

typedef struct cache_entry {
    uint64_t file, off, hash;
    void *value;
    size_t charge;
    eng_cache_deleter deleter;
    uint32_t refs;
    bool in_cache;
    struct cache_entry *chain;       /* hash bucket chain */
    struct cache_entry *prev, *next; /* LRU list, when idle */
} cache_entry_t;

typedef struct cache_shard {
    pthread_mutex_t mu;
    cache_entry_t **buckets;
    size_t nbuckets; /* power of two */
    size_t count;
    size_t capacity, usage;
    cache_entry_t lru; /* sentinel: lru.next is the oldest idle entry */
    uint64_t hits, misses, inserts, evictions;
} cache_shard_t;

struct eng_cache {
    size_t capacity;
    int nshards;
    int shard_shift;
    cache_shard_t *shards;
};

struct eng_cache_handle {
    cache_entry_t e; /* a handle is its entry */
};

static uint64_t cache_hash(uint64_t file, uint64_t off)
{
    uint64_t x = file * UINT64_C(0x9e3779b97f4a7c15) ^ off;
    x ^= x >> 30;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x *= UINT64_C(0x94d049bb133111eb);
    x ^= x >> 31;
    return x;
}

static cache_shard_t *shard_of(eng_cache_t *c, uint64_t hash)
{
    return &c->shards[c->shard_shift >= 64 ? 0 : (size_t)(hash >> c->shard_shift)];
}

eng_cache_t *eng_cache_create(size_t capacity, int shards)
{
    if (shards <= 0) shards = 16;
    kv_assert((shards & (shards - 1)) == 0 && shards <= 4096);
    eng_cache_t *c = kv_calloc(1, sizeof *c);
    c->capacity = capacity;
    c->nshards = shards;
    int bits = 0;
    while ((1 << bits) < shards) bits++;
    c->shard_shift = 64 - bits;
    c->shards = kv_calloc((size_t)shards, sizeof *c->shards);
    size_t per = capacity / (size_t)shards + (capacity % (size_t)shards ? 1 : 0);
    for (int i = 0; i < shards; i++) {
        cache_shard_t *s = &c->shards[i];
        pthread_mutex_init(&s->mu, NULL);
        s->nbuckets = 16;
        s->buckets = kv_calloc(s->nbuckets, sizeof *s->buckets);
        s->capacity = per;
        s->lru.next = s->lru.prev = &s->lru;
    }
    return c;
}

static void entry_free(cache_entry_t *e)
{
    if (e->deleter) e->deleter(e->value);
    kv_free(e);
}

void eng_cache_destroy(eng_cache_t *c)
{
    if (!c) return;
    for (int i = 0; i < c->nshards; i++) {
        cache_shard_t *s = &c->shards[i];
        for (size_t b = 0; b < s->nbuckets; b++) {
            cache_entry_t *e = s->buckets[b];
            while (e) {
                cache_entry_t *n = e->chain;
                kv_assert(e->refs == 1); /* every handle released */
                entry_free(e);
                e = n;
            }
        }
        kv_free(s->buckets);
        pthread_mutex_destroy(&s->mu);
    }
    kv_free(c->shards);
    kv_free(c);
}

static void lru_unlink(cache_entry_t *e)
{
    e->prev->next = e->next;
    e->next->prev = e->prev;
    e->prev = e->next = NULL;
}

static void lru_append(cache_shard_t *s, cache_entry_t *e)
{
    e->next = &s->lru;
    e->prev = s->lru.prev;
    e->prev->next = e;
    s->lru.prev = e;
}

static cache_entry_t **bucket_find(cache_shard_t *s, uint64_t hash, uint64_t file,
                                   uint64_t off)
{
    cache_entry_t **p = &s->buckets[hash & (s->nbuckets - 1)];
    while (*p && ((*p)->file != file || (*p)->off != off)) p = &(*p)->chain;
    return p;
}

static void table_grow(cache_shard_t *s)
{
    size_t n = s->nbuckets * 2;
    cache_entry_t **nb = kv_calloc(n, sizeof *nb);
    for (size_t b = 0; b < s->nbuckets; b++) {
        cache_entry_t *e = s->buckets[b];
        while (e) {
            cache_entry_t *next = e->chain;
            cache_entry_t **slot = &nb[e->hash & (n - 1)];
            e->chain = *slot;
            *slot = e;
            e = next;
        }
    }
    kv_free(s->buckets);
    s->buckets = nb;
    s->nbuckets = n;
}

/* Take e (already unlinked from its chain) out of the cache. Returns e when
 * the caller must free it (it was idle), NULL when a handle still holds it. */
static cache_entry_t *detach(cache_shard_t *s, cache_entry_t *e)
{
    kv_assert(e->in_cache);
    e->in_cache = false;
    s->count--;
    s->usage -= e->charge;
    if (e->refs == 1) {
        lru_unlink(e);
        e->refs = 0;
        return e;
    }
    e->refs--;
    return NULL;
}

/* Evict idle entries, oldest first, until usage fits. Victims are chained
 * on *dead for freeing outside the lock. */
static void evict(cache_shard_t *s, cache_entry_t **dead)
{
    while (s->usage > s->capacity && s->lru.next != &s->lru) {
        cache_entry_t *e = s->lru.next;
        cache_entry_t **p = bucket_find(s, e->hash, e->file, e->off);
        kv_assert(*p == e);
        *p = e->chain;
        detach(s, e);
        e->chain = *dead;
        *dead = e;
        s->evictions++;
    }
}

static void free_list(cache_entry_t *dead)
{
    while (dead) {
        cache_entry_t *n = dead->chain;
        entry_free(dead);
        dead = n;
    }
}

eng_cache_handle_t *eng_cache_lookup(eng_cache_t *c, uint64_t file, uint64_t off)
{
    uint64_t h = cache_hash(file, off);
    cache_shard_t *s = shard_of(c, h);
    pthread_mutex_lock(&s->mu);
    cache_entry_t *e = *bucket_find(s, h, file, off);
    if (e) {
        if (e->refs == 1) lru_unlink(e);
        e->refs++;
        s->hits++;
    } else {
        s->misses++;
    }
    pthread_mutex_unlock(&s->mu);
    return (eng_cache_handle_t *)e;
}

eng_cache_handle_t *eng_cache_insert(eng_cache_t *c, uint64_t file, uint64_t off,
                                     void *value, size_t charge,
                                     eng_cache_deleter deleter)
{
    uint64_t h = cache_hash(file, off);
    cache_shard_t *s = shard_of(c, h);
    cache_entry_t *e = kv_calloc(1, sizeof *e);
    e->file = file;
    e->off = off;
    e->hash = h;
    e->value = value;
    e->charge = charge;
    e->deleter = deleter;
    e->refs = 1; /* the caller's handle */
    cache_entry_t *dead = NULL;
    pthread_mutex_lock(&s->mu);
    s->inserts++;
    if (s->capacity > 0) {
        cache_entry_t **p = bucket_find(s, h, file, off);
        if (*p) {
            cache_entry_t *old = *p;
            *p = old->chain;
            if (detach(s, old)) {
                old->chain = dead;
                dead = old;
            }
        }
        e->refs++; /* the cache's own reference */
        e->in_cache = true;
        e->chain = s->buckets[h & (s->nbuckets - 1)];
        s->buckets[h & (s->nbuckets - 1)] = e;
        s->count++;
        s->usage += charge;
        if (s->count > s->nbuckets) table_grow(s);
        evict(s, &dead);
    }
    pthread_mutex_unlock(&s->mu);
    free_list(dead);
    return (eng_cache_handle_t *)e;
}

void *eng_cache_value(eng_cache_handle_t *h) { return h->e.value; }

void eng_cache_release(eng_cache_t *c, eng_cache_handle_t *h)
{
    cache_entry_t *e = &h->e;
    cache_shard_t *s = shard_of(c, e->hash);
    cache_entry_t *dead = NULL;
    pthread_mutex_lock(&s->mu);
    kv_assert(e->refs > 0);
    e->refs--;
    if (e->refs == 0) {
        dead = e; /* detached earlier, or never cached */
        e->chain = NULL;
    } else if (e->refs == 1 && e->in_cache) {
        lru_append(s, e);
        evict(s, &dead);
    }
    pthread_mutex_unlock(&s->mu);
    free_list(dead);
}

void eng_cache_erase_file(eng_cache_t *c, uint64_t file)
{
    for (int i = 0; i < c->nshards; i++) {
        cache_shard_t *s = &c->shards[i];
        cache_entry_t *dead = NULL;
        pthread_mutex_lock(&s->mu);
        for (size_t b = 0; b < s->nbuckets; b++) {
            cache_entry_t **p = &s->buckets[b];
            while (*p) {
                cache_entry_t *e = *p;
                if (e->file != file) {
                    p = &e->chain;
                    continue;
                }
                *p = e->chain;
                if (detach(s, e)) {
                    e->chain = dead;
                    dead = e;
                }
            }
        }
        pthread_mutex_unlock(&s->mu);
        free_list(dead);
    }
}

void eng_cache_get_stats(eng_cache_t *c, eng_cache_stats_t *out)
{
    eng_cache_stats_t st = {0};
    for (int i = 0; i < c->nshards; i++) {
        cache_shard_t *s = &c->shards[i];
        pthread_mutex_lock(&s->mu);
        st.hits += s->hits;
        st.misses += s->misses;
        st.inserts += s->inserts;
        st.evictions += s->evictions;
        st.usage += s->usage;
        pthread_mutex_unlock(&s->mu);
    }
    st.capacity = c->capacity;
    *out = st;
}
