/* stream.c -- copying token ranges between nodes (bootstrap, decommission,
 * removenode, replace): pulls, the source side of them, and FETCH.
 *
 * DESIGN  A pull copies the range (start, end] of one source into this
 *         node's engine, on this node's outbound link to the source:
 *
 *   dest                                   source
 *   pull --STREAM_REQ(sid, range)---------> send session: a scan job on the
 *                                           stream thread fills a chunk
 *        <--STREAM_CHUNK(sid, seq, cells)--  (at most WINDOW unacknowledged,
 *   write cells (eng_write_async)            paced by stream_bytes_per_sec)
 *        --STREAM_ACK(sid, seq, OK)------->  next chunk ... the last flagged
 *   last chunk stored: the pull is done
 *
 *         Either side's error ends the session (STREAM_ACK with an error,
 *         STREAM_ABORT); so does the link closing. Cells are written with
 *         their own stamps, so a pull that is repeated after a failure only
 *         rewrites what is there (last-write-wins: idempotent); the caller
 *         (ops.c) retries.
 *
 *         FETCH asks a node to pull a range from several sources, one after
 *         the other, and answer once all are done; stream_fetch sends it,
 *         or runs it here when the destination is this node.
 *
 *         Scanning uses eng_iter on the stream thread (a one-thread pool),
 *         one job per session at a time, so an iterator is only ever used
 *         by one thread; the chunk's frame is encoded there too, and the
 *         loop only writes it to the link.
 *
 * INVARIANTS (1) a send session has at most one scan job in flight and at
 *            most one chunk encoded but not yet sent; (2) a pull's chunks
 *            are acknowledged only after their cells are stored; (3) a
 *            session holds a reference on its link until it is freed.
 * THREADING  Loop thread, except scan_work (stream thread) and write_cb
 *            (an engine thread), which only touch their job.
 */
#define KV_LOG_MODULE "stream"
#include "cluster_int.h"

#include <inttypes.h>
#include <stdio.h>

#include <event2/event.h>

#define WINDOW 4u                     /* unacknowledged chunks per session */
#define CHUNK_BYTES (256u * 1024)     /* payload a chunk aims at */
#define CHUNK_CELLS 4096u
#define MAX_SEND_SESSIONS 16u
#define IDLE_TIMEOUT_MS 60000u        /* a pull that hears nothing fails */
#define TICK_MS 100u

typedef struct send_sess send_sess_t;
typedef struct pull pull_t;
typedef struct fetch fetch_t;

/* A chunk scanned and encoded on the stream thread. */
typedef struct scan_job {
    node_job_t job; /* first */
    send_sess_t *s;
    uint64_t seq;   /* the chunk's number: chunks go out in scan order */
    uint64_t hlc;
    uint32_t max_body;
    kv_buf_t frame;
    uint64_t keys, bytes;
    bool last;
    kv_status_t rc;
} scan_job_t;

struct send_sess {
    send_sess_t *next;
    stream_mgr_t *m;
    peer_link_t *link; /* inbound, from the destination */
    uint32_t peer;
    uint64_t sid, start, end; /* the first range's start, the last's end */
    uint64_t *ranges;  /* nranges (start, end) pairs, sent in this order */
    size_t nranges, ri;
    eng_iter_t *it;    /* stream thread only (one job at a time): range ri */
    scan_job_t *job;   /* in flight */
    kv_buf_t ready;    /* encoded, waiting for the window or the pace */
    bool ready_last;
    uint64_t ready_keys, ready_bytes;
    bool scanned_all, sent_last, dead;
    uint64_t seq, acked;
    uint64_t keys, bytes;
    uint64_t started_ms;
};

struct pull {
    pull_t *next;
    stream_mgr_t *m;
    peer_link_t *link; /* our outbound link to the source */
    uint32_t src;
    uint64_t sid, start, end; /* the first range's start, the last's end */
    size_t nranges;
    uint64_t expect_seq;
    uint32_t writing;  /* chunks being stored */
    bool got_last, failed;
    uint64_t keys, bytes;
    uint64_t last_heard_ms, started_ms;
    stream_done_fn done;
    void *arg;
};

/* A chunk's cells on their way into the engine. */
typedef struct write_job {
    node_job_t job; /* first */
    pull_t *p;
    stream_mgr_t *m;
    uint64_t seq;
    uint64_t keys, bytes;
    kv_status_t rc;
} write_job_t;

/* A FETCH: pull from each source in turn. */
struct fetch {
    fetch_t *next;
    stream_mgr_t *m;
    /* here: the ranges and the sources left */
    uint64_t *ranges; /* nranges (start, end) pairs */
    size_t nranges;
    uint32_t src[32];
    uint32_t nsrc, at;
    uint64_t keys, bytes;
    /* answering a remote FETCH: the link and msg_id; else the callback */
    peer_link_t *reply_link;
    uint64_t reply_id;
    /* waiting for a remote node's FETCH_REPLY */
    bool remote;
    uint32_t dest;
    peer_link_t *link;
    uint64_t msg_id;
    stream_done_fn done;
    void *arg;
};

struct stream_mgr {
    node_cluster_t *cl;
    node_pool_t *pool;
    struct event *tick;
    send_sess_t *sends;
    pull_t *pulls;
    fetch_t *fetches;
    uint64_t next_sid, next_fetch_id;
    /* pacing: a token bucket over every session's chunks */
    uint64_t bytes_per_sec;
    int64_t tokens;
    uint64_t refill_ms;
    bool stopping;
    struct {
        uint64_t bytes_in, bytes_out, keys_in, keys_out;
        uint64_t pulls_done, pulls_failed, sends_done, sends_failed;
        uint64_t throttled_ms;
    } st;
    struct {
        metric_series_t *bytes_in, *bytes_out, *keys_in, *keys_out;
        metric_series_t *pulls_ok, *pulls_failed, *active_in, *active_out;
        uint64_t last_bytes_in, last_bytes_out, last_keys_in, last_keys_out;
        uint64_t last_ok, last_failed;
    } mt;
};

static uint64_t now_ms(void) { return node_now_ns() / 1000000u; }

static uint32_t max_body(const stream_mgr_t *m)
{
    return (uint32_t)m->cl->node->cfg->max_frame_bytes;
}

static hlc_ts_t hlc_of(const stream_mgr_t *m) { return hlc_last(m->cl->node->hlc); }

/* The eng_iter bounds of the range (start, end]. */
static void iter_bounds(uint64_t start, uint64_t end, uint64_t *lo, uint64_t *hi)
{
    if (start == end) {
        *lo = 0;
        *hi = UINT64_MAX;
    } else {
        *lo = start + 1; /* wraps to 0 past UINT64_MAX, as the range does */
        *hi = end;
    }
}

/* ---- the source side ------------------------------------------------------- */

static void send_pump(send_sess_t *s);

static void send_free(send_sess_t *s)
{
    stream_mgr_t *m = s->m;
    for (send_sess_t **pp = &m->sends; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    if (s->it) eng_iter_destroy(s->it);
    kv_buf_deinit(&s->ready);
    peer_link_unref(s->link);
    kv_free(s->ranges);
    kv_free(s);
}

/* End a send session; the scan job in flight (if any) frees it. */
static void send_end(send_sess_t *s, kv_status_t rc, const char *why)
{
    if (s->dead) return;
    s->dead = true;
    stream_mgr_t *m = s->m;
    node_peer_t *p = m->cl->peers[s->peer];
    if (rc == KV_OK) {
        m->st.sends_done++;
        KV_LOG(KV_INFO, "streamed (%016" PRIx64 ", %016" PRIx64 "] to %s: %" PRIu64
               " keys, %" PRIu64 " bytes in %" PRIu64 " ms", s->start, s->end,
               p->name, s->keys, s->bytes, now_ms() - s->started_ms);
    } else {
        m->st.sends_failed++;
        KV_LOG(KV_WARN, "streaming (%016" PRIx64 ", %016" PRIx64 "] to %s failed: %s",
               s->start, s->end, p->name, why);
        if (!peer_link_closed(s->link)) {
            kv_buf_t *b = &m->cl->node->scratch;
            if (peer_encode_stream_abort(b, s->sid, hlc_of(m), rc, kv_slice_str(why),
                                         max_body(m)) == KV_OK)
                peer_link_write(s->link, b);
            kv_buf_clear(b);
        }
    }
    if (!s->job) send_free(s);
}

static void scan_work(node_job_t *nj)
{
    scan_job_t *j = (scan_job_t *)nj;
    send_sess_t *s = j->s;
    eng_t *e = s->m->cl->node->eng;
    peer_hint_t *cells = kv_malloc(CHUNK_CELLS * sizeof *cells);
    kv_buf_t data;
    kv_buf_init(&data);
    uint32_t n = 0;
    /* First gather the bytes (keys and values are copied: the iterator's
     * slices die on the next step), then point the cells into them. */
    size_t *off = kv_malloc(CHUNK_CELLS * 2 * sizeof *off);
    for (;;) {
        if (!s->it) {
            uint64_t lo, hi;
            iter_bounds(s->ranges[2 * s->ri], s->ranges[2 * s->ri + 1], &lo, &hi);
            s->it = eng_iter_create(e, NULL, lo, hi);
            eng_iter_seek_first(s->it);
        }
        for (; eng_iter_valid(s->it) && n < CHUNK_CELLS && data.len < CHUNK_BYTES;
             eng_iter_next(s->it)) {
            kv_slice_t k = eng_iter_key(s->it), v = eng_iter_value(s->it);
            bool tomb = eng_iter_tombstone(s->it);
            if (!tomb && data.len > 0 &&
                data.len + k.len + v.len + 256 > j->max_body / 2)
                break; /* the next cell goes in the next chunk */
            off[2 * n] = data.len;
            kv_buf_append(&data, k.data, k.len);
            off[2 * n + 1] = data.len;
            if (!tomb) kv_buf_append(&data, v.data, v.len);
            cells[n].key = kv_slice(NULL, k.len);
            cells[n].cell.ts = eng_iter_ts(s->it);
            cells[n].cell.tombstone = tomb;
            cells[n].cell.expire_ms = eng_iter_expire_ms(s->it);
            cells[n].cell.value = kv_slice(NULL, tomb ? 0 : v.len);
            n++;
        }
        if (eng_iter_status(s->it) != KV_OK || eng_iter_valid(s->it) ||
            s->ri + 1 >= s->nranges)
            break; /* an error, a full chunk, or the last range done */
        eng_iter_destroy(s->it); /* the next range */
        s->it = NULL;
        s->ri++;
        if (n >= CHUNK_CELLS || data.len >= CHUNK_BYTES) break;
    }
    j->rc = s->it ? eng_iter_status(s->it) : KV_OK;
    j->last = j->rc == KV_OK && s->it && !eng_iter_valid(s->it) && s->ri + 1 >= s->nranges;
    for (uint32_t i = 0; i < n; i++) {
        cells[i].key.data = data.data + off[2 * i];
        cells[i].cell.value.data = data.data + off[2 * i + 1];
    }
    j->keys = n;
    j->bytes = data.len;
    if (j->rc == KV_OK) {
        peer_stream_chunk_t c = {.seq = j->seq, .last = j->last, .n = n};
        j->rc = peer_encode_stream_chunk(&j->frame, s->sid, j->hlc, &c, cells,
                                         j->max_body);
    }
    kv_free(off);
    kv_free(cells);
    kv_buf_deinit(&data);
}

static void scan_done(node_job_t *nj)
{
    scan_job_t *j = (scan_job_t *)nj;
    send_sess_t *s = j->s;
    s->job = NULL;
    if (s->dead || s->m->stopping) {
        kv_buf_deinit(&j->frame);
        kv_free(j);
        if (s->dead) send_free(s);
        return;
    }
    if (j->rc != KV_OK) {
        kv_buf_deinit(&j->frame);
        kv_free(j);
        send_end(s, KV_IO, "reading the range failed");
        return;
    }
    kv_assert(s->ready.len == 0);
    kv_buf_t tmp = s->ready;
    s->ready = j->frame;
    j->frame = tmp;
    s->ready_last = j->last;
    s->ready_keys = j->keys;
    s->ready_bytes = j->bytes;
    s->scanned_all = j->last;
    s->seq++; /* the next chunk's number */
    kv_buf_deinit(&j->frame);
    kv_free(j);
    send_pump(s);
}

static void scan_start(send_sess_t *s)
{
    stream_mgr_t *m = s->m;
    if (s->job || s->dead || s->scanned_all || s->ready.len) return;
    scan_job_t *j = kv_calloc(1, sizeof *j);
    j->job.work = scan_work;
    j->job.done = scan_done;
    j->s = s;
    j->seq = s->seq;
    j->hlc = hlc_of(m);
    j->max_body = max_body(m);
    kv_buf_init(&j->frame);
    s->job = j;
    if (node_pool_submit(m->pool, &j->job) != KV_OK) {
        s->job = NULL;
        kv_free(j);
        send_end(s, KV_BUSY, "the stream thread's queue is full");
    }
}

/* Refill the pacing bucket; true when a chunk of `bytes` may go now. */
static bool pace_allows(stream_mgr_t *m, uint64_t bytes)
{
    uint64_t now = now_ms();
    if (now > m->refill_ms) {
        m->tokens += (int64_t)((now - m->refill_ms) * m->bytes_per_sec / 1000);
        int64_t cap = (int64_t)KV_MAX(m->bytes_per_sec, 2 * CHUNK_BYTES);
        if (m->tokens > cap) m->tokens = cap;
        m->refill_ms = now;
    }
    (void)bytes;
    return m->tokens >= 0;
}

/* Send the ready chunk if the window and the pace allow; scan the next. */
static void send_pump(send_sess_t *s)
{
    stream_mgr_t *m = s->m;
    if (s->dead) return;
    if (peer_link_closed(s->link)) {
        send_end(s, KV_CLOSED, "the connection closed");
        return;
    }
    if (s->ready.len && s->seq - s->acked <= WINDOW && pace_allows(m, s->ready.len)) {
        m->tokens -= (int64_t)s->ready.len;
        m->st.bytes_out += s->ready_bytes;
        m->st.keys_out += s->ready_keys;
        s->keys += s->ready_keys;
        s->bytes += s->ready_bytes;
        s->sent_last = s->ready_last;
        peer_link_write(s->link, &s->ready);
        kv_buf_clear(&s->ready);
    }
    scan_start(s);
}

void stream_on_req(node_cluster_t *cl, peer_link_t *l, uint32_t from, uint64_t sid,
                   uint64_t *ranges, size_t nranges)
{
    stream_mgr_t *m = cl->stream;
    size_t active = 0;
    for (send_sess_t *s = m->sends; s; s = s->next) active += !s->dead;
    const char *why = NULL;
    kv_status_t rc = KV_OK;
    if (m->stopping || cl->node->state != NODE_SERVING) {
        rc = KV_CLOSED;
        why = "this node is shutting down";
    } else if (active >= MAX_SEND_SESSIONS) {
        rc = KV_BUSY;
        why = "too many streams from this node at once";
    }
    if (rc != KV_OK) {
        kv_buf_t *b = &cl->node->scratch;
        if (peer_encode_stream_abort(b, sid, hlc_of(m), rc, kv_slice_str(why),
                                     max_body(m)) == KV_OK)
            peer_link_write(l, b);
        kv_buf_clear(b);
        kv_free(ranges);
        return;
    }
    send_sess_t *s = kv_calloc(1, sizeof *s);
    s->m = m;
    s->link = l;
    peer_link_ref(l);
    s->peer = from;
    s->sid = sid;
    s->ranges = ranges;
    s->nranges = nranges;
    s->start = ranges[0];
    s->end = ranges[2 * nranges - 1];
    s->started_ms = now_ms();
    kv_buf_init(&s->ready);
    s->next = m->sends;
    m->sends = s;
    KV_LOG(KV_DEBUG, "%s pulls %zu range(s) from (%016" PRIx64 " to %016" PRIx64
           "] from this node", cl->peers[from]->name, nranges, s->start, s->end);
    send_pump(s);
}

void stream_on_ack(node_cluster_t *cl, peer_link_t *l, uint64_t sid, uint64_t seq,
                   kv_status_t st)
{
    stream_mgr_t *m = cl->stream;
    send_sess_t *s = m->sends;
    while (s && (s->link != l || s->sid != sid || s->dead)) s = s->next;
    if (!s) return;
    if (st != KV_OK) {
        s->dead = true; /* the destination gave up: no ABORT back */
        m->st.sends_failed++;
        KV_LOG(KV_WARN, "%s stopped its pull of (%016" PRIx64 ", %016" PRIx64 "]: %s",
               cl->peers[s->peer]->name, s->start, s->end, kv_status_str(st));
        if (!s->job) send_free(s);
        return;
    }
    if (seq + 1 > s->acked) s->acked = seq + 1;
    if (s->sent_last && s->acked == s->seq) {
        send_end(s, KV_OK, NULL);
        return;
    }
    send_pump(s);
}

/* ---- the destination side: pulls ------------------------------------------ */

static void pull_free(pull_t *p)
{
    stream_mgr_t *m = p->m;
    for (pull_t **pp = &m->pulls; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    if (p->link) peer_link_unref(p->link);
    kv_free(p);
}

/* The pull is over: tell its owner; freed once no write is in flight. */
static void pull_finish(pull_t *p, kv_status_t rc, const char *why)
{
    if (p->failed || (p->got_last && rc == KV_OK && p->writing)) return;
    stream_mgr_t *m = p->m;
    node_peer_t *src = m->cl->peers[p->src];
    stream_done_fn done = p->done;
    void *arg = p->arg;
    p->done = NULL;
    p->failed = true; /* no further chunk is taken */
    if (rc == KV_OK) {
        m->st.pulls_done++;
        KV_LOG(KV_INFO, "pulled (%016" PRIx64 ", %016" PRIx64 "] from %s: %" PRIu64
               " keys, %" PRIu64 " bytes in %" PRIu64 " ms", p->start, p->end,
               src->name, p->keys, p->bytes, now_ms() - p->started_ms);
    } else {
        m->st.pulls_failed++;
        KV_LOG(KV_WARN, "pulling (%016" PRIx64 ", %016" PRIx64 "] from %s failed: %s",
               p->start, p->end, src->name, why);
        if (p->link && !peer_link_closed(p->link)) {
            kv_buf_t *b = &m->cl->node->scratch;
            if (peer_encode_stream_ack(b, p->sid, hlc_of(m), p->expect_seq, rc,
                                       max_body(m)) == KV_OK)
                peer_link_write(p->link, b);
            kv_buf_clear(b);
        }
    }
    uint64_t keys = p->keys, bytes = p->bytes;
    if (!p->writing) pull_free(p);
    if (done) done(arg, rc, keys, bytes, why);
}

static void write_cb(void *arg, kv_status_t status, const eng_result_t *res, size_t n)
{
    (void)res;
    (void)n;
    write_job_t *w = arg;
    w->rc = status;
    node_done_push(w->m->cl->node, &w->job);
}

static void write_done(node_job_t *nj)
{
    write_job_t *w = (write_job_t *)nj;
    pull_t *p = w->p;
    stream_mgr_t *m = w->m;
    p->writing--;
    if (p->failed) {
        if (!p->writing) pull_free(p);
        kv_free(w);
        return;
    }
    if (w->rc != KV_OK) {
        char why[96];
        snprintf(why, sizeof why, "storing a chunk failed: %s", kv_status_str(w->rc));
        pull_finish(p, w->rc, why);
        kv_free(w);
        return;
    }
    p->keys += w->keys;
    p->bytes += w->bytes;
    m->st.keys_in += w->keys;
    m->st.bytes_in += w->bytes;
    if (p->link && !peer_link_closed(p->link)) {
        kv_buf_t *b = &m->cl->node->scratch;
        if (peer_encode_stream_ack(b, p->sid, hlc_of(m), w->seq, KV_OK, max_body(m)) ==
            KV_OK)
            peer_link_write(p->link, b);
        kv_buf_clear(b);
    }
    kv_free(w);
    if (p->got_last && !p->writing) pull_finish(p, KV_OK, NULL);
}

void stream_on_chunk(node_cluster_t *cl, peer_link_t *l, uint64_t sid,
                     const kv_frame_t *f, const peer_stream_chunk_t *c)
{
    stream_mgr_t *m = cl->stream;
    pull_t *p = m->pulls;
    while (p && (p->link != l || p->sid != sid)) p = p->next;
    if (!p || p->failed) return; /* over already */
    p->last_heard_ms = now_ms();
    if (c->seq != p->expect_seq) {
        pull_finish(p, KV_PROTO, "a chunk arrived out of order");
        return;
    }
    peer_hint_t *cells = kv_malloc((c->n ? c->n : 1) * sizeof *cells);
    const node_config_t *cfg = cl->node->cfg;
    eng_batch_t *b = eng_batch_create();
    uint64_t bytes = 0;
    kv_status_t rc = KV_OK;
    for (uint32_t i = 0; i < c->n && rc == KV_OK; i++) {
        rc = peer_decode_stream_cell_at(f, i, &cells[i]);
        if (rc != KV_OK) break;
        const peer_hint_t *h = &cells[i];
        bytes += h->key.len + h->cell.value.len;
        if (h->key.len > cfg->max_key_bytes || h->cell.value.len > cfg->max_value_bytes)
            continue; /* this node could never have taken it: skip */
        if (h->cell.tombstone) eng_batch_delete(b, h->key, h->cell.ts);
        else eng_batch_put(b, h->key, h->cell.value, h->cell.ts, h->cell.expire_ms);
    }
    if (rc == KV_OK && peer_stream_checksum(cells, c->n) != c->checksum)
        rc = KV_CORRUPT;
    kv_free(cells);
    if (rc != KV_OK) {
        eng_batch_destroy(b);
        pull_finish(p, rc, rc == KV_CORRUPT ? "a chunk failed its checksum"
                                            : "a malformed chunk");
        return;
    }
    p->expect_seq++;
    if (c->last) p->got_last = true;
    write_job_t *w = kv_calloc(1, sizeof *w);
    w->job.done = write_done;
    w->p = p;
    w->m = m;
    w->seq = c->seq;
    w->keys = c->n;
    w->bytes = bytes;
    p->writing++;
    if (eng_batch_count(b) == 0) {
        eng_batch_destroy(b);
        node_done_push(cl->node, &w->job);
        return;
    }
    rc = eng_write_async(cl->node->eng, b, write_cb, w);
    eng_batch_destroy(b);
    if (rc != KV_OK) {
        p->writing--;
        kv_free(w);
        pull_finish(p, rc, "the engine refused the chunk");
    }
}

void stream_on_abort(node_cluster_t *cl, peer_link_t *l, uint64_t sid,
                     kv_status_t st, kv_slice_t msg)
{
    stream_mgr_t *m = cl->stream;
    pull_t *p = m->pulls;
    while (p && (p->link != l || p->sid != sid)) p = p->next;
    if (!p || p->failed) return;
    char why[200];
    snprintf(why, sizeof why, "the source stopped: %s: %.*s", kv_status_str(st),
             (int)KV_MIN(msg.len, 150), (const char *)msg.data);
    pull_finish(p, st, why);
}

kv_status_t stream_pull_ranges(node_cluster_t *cl, uint32_t src, const uint64_t *se,
                               size_t n, stream_done_fn done, void *arg)
{
    stream_mgr_t *m = cl->stream;
    if (m->stopping) return KV_CLOSED;
    if (src >= cl->npeers || src == cl->self || n == 0 || n > PEER_STREAM_MAX_RANGES)
        return KV_INVALID;
    peer_link_t *l = peer_out_link(cl, src);
    if (!l) return KV_UNAVAILABLE;
    pull_t *p = kv_calloc(1, sizeof *p);
    p->m = m;
    p->link = l;
    peer_link_ref(l);
    p->src = src;
    p->sid = ++m->next_sid;
    p->start = se[0];
    p->end = se[2 * n - 1];
    p->nranges = n;
    p->done = done;
    p->arg = arg;
    p->started_ms = p->last_heard_ms = now_ms();
    p->next = m->pulls;
    m->pulls = p;
    kv_buf_t *b = &cl->node->scratch;
    kv_status_t rc = peer_encode_stream_req_ranges(b, p->sid, hlc_of(m), se, n, max_body(m));
    if (rc == KV_OK) peer_link_write(l, b);
    kv_buf_clear(b);
    if (rc != KV_OK) {
        p->done = NULL;
        p->failed = true;
        pull_free(p);
        return rc;
    }
    return KV_OK;
}

kv_status_t stream_pull(node_cluster_t *cl, uint32_t src, uint64_t start,
                        uint64_t end, stream_done_fn done, void *arg)
{
    uint64_t se[2] = {start, end};
    return stream_pull_ranges(cl, src, se, 1, done, arg);
}

/* ---- FETCH ------------------------------------------------------------------ */

static void fetch_free(fetch_t *fe)
{
    stream_mgr_t *m = fe->m;
    for (fetch_t **pp = &m->fetches; *pp; pp = &(*pp)->next)
        if (*pp == fe) {
            *pp = fe->next;
            break;
        }
    if (fe->reply_link) peer_link_unref(fe->reply_link);
    if (fe->link) peer_link_unref(fe->link);
    kv_free(fe->ranges);
    kv_free(fe);
}

static void fetch_finish(fetch_t *fe, kv_status_t rc, const char *why)
{
    stream_mgr_t *m = fe->m;
    if (fe->reply_link) {
        if (!peer_link_closed(fe->reply_link)) {
            peer_fetch_reply_t r = {.status = rc, .keys = fe->keys, .bytes = fe->bytes,
                                    .message = kv_slice_str(why ? why : "")};
            kv_buf_t *b = &m->cl->node->scratch;
            if (peer_encode_fetch_reply(b, fe->reply_id, hlc_of(m), &r, max_body(m)) ==
                KV_OK)
                peer_link_write(fe->reply_link, b);
            kv_buf_clear(b);
        }
    }
    stream_done_fn done = fe->done;
    void *arg = fe->arg;
    uint64_t keys = fe->keys, bytes = fe->bytes;
    fetch_free(fe);
    if (done) done(arg, rc, keys, bytes, why);
}

static void fetch_next(fetch_t *fe);

static void fetch_pulled(void *arg, kv_status_t rc, uint64_t keys, uint64_t bytes,
                         const char *why)
{
    fetch_t *fe = arg;
    fe->keys += keys;
    fe->bytes += bytes;
    if (rc != KV_OK) {
        char msg[240];
        snprintf(msg, sizeof msg, "from %s: %s", fe->m->cl->peers[fe->src[fe->at]]->name,
                 why ? why : kv_status_str(rc));
        fetch_finish(fe, rc, msg);
        return;
    }
    fe->at++;
    fetch_next(fe);
}

static void fetch_next(fetch_t *fe)
{
    node_cluster_t *cl = fe->m->cl;
    while (fe->at < fe->nsrc && fe->src[fe->at] == cl->self) fe->at++;
    if (fe->at == fe->nsrc) {
        fetch_finish(fe, KV_OK, NULL);
        return;
    }
    uint32_t src = fe->src[fe->at];
    kv_status_t rc = stream_pull_ranges(cl, src, fe->ranges, fe->nranges, fetch_pulled, fe);
    if (rc != KV_OK) {
        char msg[200];
        snprintf(msg, sizeof msg, "cannot pull from %s: %s", cl->peers[src]->name,
                 rc == KV_UNAVAILABLE ? "not connected" : kv_status_str(rc));
        fetch_finish(fe, rc, msg);
    }
}

void stream_on_fetch(node_cluster_t *cl, peer_link_t *l, uint64_t msg_id,
                     const kv_frame_t *f, const peer_fetch_t *req)
{
    stream_mgr_t *m = cl->stream;
    fetch_t *fe = kv_calloc(1, sizeof *fe);
    fe->m = m;
    fe->nranges = 1 + req->nextra;
    fe->ranges = kv_malloc(2 * fe->nranges * sizeof *fe->ranges);
    fe->ranges[0] = req->start;
    fe->ranges[1] = req->end;
    for (size_t i = 0; i < req->nextra; i++)
        peer_fetch_extra_at(f, req, i, &fe->ranges[2 + 2 * i], &fe->ranges[3 + 2 * i]);
    fe->reply_link = l;
    peer_link_ref(l);
    fe->reply_id = msg_id;
    fe->next = m->fetches;
    m->fetches = fe;
    for (uint32_t i = 0; i < req->nsources; i++) {
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)KV_MIN(req->sources[i].len, 255),
                 (const char *)req->sources[i].data);
        node_peer_t *p = cluster_peer_find(cl, name);
        if (!p) {
            char msg[300];
            snprintf(msg, sizeof msg, "no member named %s", name);
            fetch_finish(fe, KV_NOTFOUND, msg);
            return;
        }
        fe->src[fe->nsrc++] = p->idx;
    }
    KV_LOG(KV_INFO, "fetching %zu range(s) from (%016" PRIx64 " to %016" PRIx64
           "] from %u source(s) as %s asked", fe->nranges, fe->ranges[0],
           fe->ranges[2 * fe->nranges - 1], fe->nsrc,
           cl->peers[peer_link_peer(l)]->name);
    fetch_next(fe);
}

void stream_on_fetch_reply(node_cluster_t *cl, peer_link_t *l, uint64_t msg_id,
                           const peer_fetch_reply_t *r)
{
    stream_mgr_t *m = cl->stream;
    fetch_t *fe = m->fetches;
    while (fe && !(fe->remote && fe->link == l && fe->msg_id == msg_id)) fe = fe->next;
    if (!fe) return;
    fe->keys = r->keys;
    fe->bytes = r->bytes;
    char why[240];
    snprintf(why, sizeof why, "%.*s", (int)KV_MIN(r->message.len, 230),
             (const char *)r->message.data);
    fetch_finish(fe, r->status, r->status == KV_OK ? NULL : why);
}

kv_status_t stream_fetch_ranges(node_cluster_t *cl, uint32_t dest, const uint64_t *se,
                                size_t n, const uint32_t *src, uint32_t nsrc,
                                stream_done_fn done, void *arg)
{
    stream_mgr_t *m = cl->stream;
    if (m->stopping) return KV_CLOSED;
    if (nsrc == 0 || nsrc > 32 || dest >= cl->npeers || n == 0 ||
        n > PEER_STREAM_MAX_RANGES)
        return KV_INVALID;
    fetch_t *fe = kv_calloc(1, sizeof *fe);
    fe->m = m;
    fe->ranges = kv_memdup(se, 2 * n * sizeof *se);
    fe->nranges = n;
    memcpy(fe->src, src, nsrc * sizeof *src);
    fe->nsrc = nsrc;
    fe->done = done;
    fe->arg = arg;
    fe->next = m->fetches;
    m->fetches = fe;
    if (dest == cl->self) {
        fetch_next(fe);
        return KV_OK;
    }
    peer_link_t *l = peer_out_link(cl, dest);
    if (!l) {
        fe->done = NULL;
        fetch_free(fe);
        return KV_UNAVAILABLE;
    }
    fe->remote = true;
    fe->dest = dest;
    fe->link = l;
    peer_link_ref(l);
    fe->msg_id = ++m->next_fetch_id;
    peer_fetch_t req = {.start = se[0], .end = se[1], .nsources = nsrc,
                        .nextra = n - 1, .extra = se + 2};
    for (uint32_t i = 0; i < nsrc; i++) req.sources[i] = kv_slice_str(cl->peers[src[i]]->name);
    kv_buf_t *b = &cl->node->scratch;
    kv_status_t rc = peer_encode_fetch(b, fe->msg_id, hlc_of(m), &req, max_body(m));
    if (rc == KV_OK) peer_link_write(l, b);
    kv_buf_clear(b);
    if (rc != KV_OK) {
        fe->done = NULL;
        fetch_free(fe);
    }
    return rc;
}

kv_status_t stream_fetch(node_cluster_t *cl, uint32_t dest, uint64_t start,
                         uint64_t end, const uint32_t *src, uint32_t nsrc,
                         stream_done_fn done, void *arg)
{
    uint64_t se[2] = {start, end};
    return stream_fetch_ranges(cl, dest, se, 1, src, nsrc, done, arg);
}

/* ---- links closing, the tick ---------------------------------------------- */

void stream_on_link_closed(node_cluster_t *cl, peer_link_t *l)
{
    stream_mgr_t *m = cl->stream;
    if (!m) return;
    for (pull_t *p = m->pulls, *next; p; p = next) {
        next = p->next;
        if (p->link == l && !p->failed) pull_finish(p, KV_CLOSED, "the connection closed");
    }
    for (send_sess_t *s = m->sends, *next; s; s = next) {
        next = s->next;
        if (s->link == l && !s->dead) send_end(s, KV_CLOSED, "the connection closed");
    }
    for (fetch_t *fe = m->fetches, *next; fe; fe = next) {
        next = fe->next;
        if (fe->remote && fe->link == l)
            fetch_finish(fe, KV_UNAVAILABLE, "the connection to it closed");
    }
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    stream_mgr_t *m = arg;
    uint64_t now = now_ms();
    for (pull_t *p = m->pulls, *next; p; p = next) {
        next = p->next;
        if (!p->failed && !p->writing && now - p->last_heard_ms > IDLE_TIMEOUT_MS)
            pull_finish(p, KV_TIMEOUT, "the source sent nothing for 60 s");
    }
    for (send_sess_t *s = m->sends, *next; s; s = next) {
        next = s->next;
        if (!s->dead && s->ready.len) {
            if (m->tokens < 0) m->st.throttled_ms += TICK_MS;
            send_pump(s);
        }
    }
    struct timeval tv = {0, TICK_MS * 1000};
    evtimer_add(m->tick, &tv);
}

/* ---- figures ----------------------------------------------------------------- */

size_t stream_info(node_cluster_t *cl, proto_info_item_t *it, size_t cap,
                   char (*names)[96], char (*vals)[160], size_t nbuf)
{
    stream_mgr_t *m = cl->stream;
    if (!m) return 0;
    size_t k = 0;
#define U(nm, v) do { if (k < cap) it[k++] = (proto_info_item_t){nm, NULL, (uint64_t)(v)}; } while (0)
    U("stream_bytes_in", m->st.bytes_in);
    U("stream_bytes_out", m->st.bytes_out);
    U("stream_keys_in", m->st.keys_in);
    U("stream_keys_out", m->st.keys_out);
    U("stream_pulls_done", m->st.pulls_done);
    U("stream_pulls_failed", m->st.pulls_failed);
#undef U
    size_t b = 0;
    uint64_t now = now_ms();
    for (pull_t *p = m->pulls; p && k < cap && b < nbuf; p = p->next, b++) {
        if (p->failed) continue;
        snprintf(names[b], sizeof names[b], "stream_in:%s:%" PRIu64,
                 cl->peers[p->src]->name, p->sid);
        snprintf(vals[b], sizeof vals[b], "range=(%016" PRIx64 ",%016" PRIx64 "] keys=%"
                 PRIu64 " bytes=%" PRIu64 " seconds=%" PRIu64, p->start, p->end, p->keys,
                 p->bytes, (now - p->started_ms) / 1000);
        it[k++] = (proto_info_item_t){names[b], vals[b], 0};
    }
    for (send_sess_t *s = m->sends; s && k < cap && b < nbuf; s = s->next, b++) {
        if (s->dead) continue;
        snprintf(names[b], sizeof names[b], "stream_out:%s:%" PRIu64,
                 cl->peers[s->peer]->name, s->sid);
        snprintf(vals[b], sizeof vals[b], "range=(%016" PRIx64 ",%016" PRIx64 "] keys=%"
                 PRIu64 " bytes=%" PRIu64 " seconds=%" PRIu64, s->start, s->end, s->keys,
                 s->bytes, (now - s->started_ms) / 1000);
        it[k++] = (proto_info_item_t){names[b], vals[b], 0};
    }
    return k;
}

void stream_metrics(node_cluster_t *cl)
{
    stream_mgr_t *m = cl->stream;
    if (!m) return;
    metrics_counter_mirror(m->mt.bytes_in, m->st.bytes_in, &m->mt.last_bytes_in);
    metrics_counter_mirror(m->mt.bytes_out, m->st.bytes_out, &m->mt.last_bytes_out);
    metrics_counter_mirror(m->mt.keys_in, m->st.keys_in, &m->mt.last_keys_in);
    metrics_counter_mirror(m->mt.keys_out, m->st.keys_out, &m->mt.last_keys_out);
    metrics_counter_mirror(m->mt.pulls_ok, m->st.pulls_done, &m->mt.last_ok);
    metrics_counter_mirror(m->mt.pulls_failed, m->st.pulls_failed, &m->mt.last_failed);
    double in = 0, out = 0;
    for (pull_t *p = m->pulls; p; p = p->next) in += !p->failed;
    for (send_sess_t *s = m->sends; s; s = s->next) out += !s->dead;
    metrics_gauge_set(m->mt.active_in, in);
    metrics_gauge_set(m->mt.active_out, out);
}

#define L(...) ((const char *const[]){__VA_ARGS__, NULL})

static void metrics_setup(stream_mgr_t *m)
{
    metrics_t *mt = m->cl->node->metrics;
    metrics_register(mt, "cairn_stream_bytes_total", "Key and value bytes streamed "
                     "between nodes for ring changes, by direction.", METRIC_COUNTER,
                     L("direction"));
    metrics_register(mt, "cairn_stream_keys_total", "Cells streamed between nodes "
                     "for ring changes, by direction.", METRIC_COUNTER, L("direction"));
    metrics_register(mt, "cairn_stream_pulls_total", "Range pulls this node "
                     "finished, by result.", METRIC_COUNTER, L("result"));
    metrics_register(mt, "cairn_stream_sessions", "Streams running now, by "
                     "direction.", METRIC_GAUGE, L("direction"));
    m->mt.bytes_in = metrics_series(mt, "cairn_stream_bytes_total", L("in"));
    m->mt.bytes_out = metrics_series(mt, "cairn_stream_bytes_total", L("out"));
    m->mt.keys_in = metrics_series(mt, "cairn_stream_keys_total", L("in"));
    m->mt.keys_out = metrics_series(mt, "cairn_stream_keys_total", L("out"));
    m->mt.pulls_ok = metrics_series(mt, "cairn_stream_pulls_total", L("ok"));
    m->mt.pulls_failed = metrics_series(mt, "cairn_stream_pulls_total", L("failed"));
    m->mt.active_in = metrics_series(mt, "cairn_stream_sessions", L("in"));
    m->mt.active_out = metrics_series(mt, "cairn_stream_sessions", L("out"));
}

/* ---- life cycle -------------------------------------------------------------- */

kv_status_t stream_start(node_cluster_t *cl)
{
    stream_mgr_t *m = kv_calloc(1, sizeof *m);
    m->cl = cl;
    m->pool = node_pool_create(cl->node, 1, 1024);
    m->bytes_per_sec = cl->node->cfg->stream_bytes_per_sec;
    m->refill_ms = now_ms();
    m->tokens = (int64_t)CHUNK_BYTES;
    m->tick = evtimer_new(cl->node->base, tick_cb, m);
    struct timeval tv = {0, TICK_MS * 1000};
    evtimer_add(m->tick, &tv);
    cl->stream = m;
    metrics_setup(m);
    return KV_OK;
}

/* The loop has stopped: finish the stream thread's jobs and let go of the
 * engine's iterators (the engine closes next). Completions still queued
 * run afterwards and only free their jobs. */
void stream_quiesce(node_cluster_t *cl)
{
    stream_mgr_t *m = cl->stream;
    if (!m || m->stopping) return;
    m->stopping = true;
    node_pool_destroy(m->pool);
    m->pool = NULL;
    for (send_sess_t *s = m->sends; s; s = s->next) {
        if (s->it) eng_iter_destroy(s->it);
        s->it = NULL;
    }
}

/* Free everything (after stream_quiesce and the last completions). */
void stream_stop(node_cluster_t *cl)
{
    stream_mgr_t *m = cl->stream;
    if (!m) return;
    stream_quiesce(cl);
    while (m->fetches) {
        fetch_t *fe = m->fetches;
        fe->done = NULL;
        fetch_free(fe);
    }
    while (m->pulls) {
        pull_t *p = m->pulls;
        p->done = NULL;
        pull_free(p);
    }
    while (m->sends) {
        send_sess_t *s = m->sends;
        if (s->job) { /* its completion never ran: free it here */
            kv_buf_deinit(&s->job->frame);
            kv_free(s->job);
        }
        send_free(s);
    }
    if (m->tick) event_free(m->tick);
    kv_free(m);
    cl->stream = NULL;
}
