/* peer.c -- node-to-node connections: the handshake, heartbeats and
 * liveness, reconnects with capped exponential backoff, bounded output.
 *
 * DESIGN  Every ordered pair of members has one TCP connection (a "link"):
 *         a node dials each other member and sends its requests (mutations,
 *         reads, pings) on that outbound link; it answers the requests that
 *         arrive on links others dialled to it. So a reply always travels
 *         back on the connection its request came in on, and the two
 *         directions never wait on each other.
 *
 *   outbound:  idle --dial--> connecting --TCP up, send HELLO--> handshaking
 *                ^                                                   |
 *                |  retry after backoff (100 ms doubling to 5 s,     | HELLO_OK
 *                |  jittered; reset by a completed handshake)        v
 *                +------ closed <--error / REFUSE / silence-------- ready (up)
 *
 *   inbound:   accepted --HELLO ok--> ready (requests answered)
 *                       --HELLO refused--> REFUSE sent, closed once flushed
 *
 *         Liveness: each outbound link pings every hb_interval; any frame
 *         received on it counts as hearing from the member. A member is up
 *         while its link is ready and it was heard from within
 *         peer_timeout_ms; past that (a stopped process, a partition) the
 *         link is closed and redialled, and the coordinator stops counting
 *         the member as a live replica. A handshake that does not finish
 *         within peer_timeout_ms is abandoned the same way.
 *
 *         Clocks: every frame carries the sender's HLC and is merged into
 *         ours before it is acted on. One more than max_clock_offset_ms ahead
 *         of our wall clock is refused: a HELLO or HELLO_OK closes the link
 *         (the member stays down, with the reason logged and reported in
 *         UNAVAILABLE errors), a request is answered CLOCK_SKEW, a reply is
 *         dropped (the coordinator times out). Refusals are counted.
 *
 *         Output: a plain-TCP link that is up keeps EV_WRITE off; what a
 *         loop turn writes to it leaves in one writev at the end of the turn
 *         (node_flush_mark, node_int.h). libevent writes only for a link
 *         that is still connecting, is TLS, is closing, or whose socket was
 *         full, until its output drains.
 *
 *         Backpressure: a link whose output buffer holds peer_queue_bytes
 *         or more takes no new request; the coordinator treats the member
 *         as unusable for that request (BUSY when too few remain).
 *
 *         Mutual TLS (peer_tls on, tls.c): every link and push-pull runs
 *         over TLS with a certificate signed by the cluster CA on both
 *         sides. After the handshake each side also checks that the other's
 *         certificate is a node certificate and that its common name is the
 *         node name it claims in PEER_HELLO / PEER_HELLO_OK (the dialler
 *         knows whom it dialled): a node cannot pass itself off as another,
 *         nor a client certificate as a node. Refusals are logged and
 *         counted (cairn_tls_handshake_failures_total{port="peer"},
 *         cairn_peer_certificates_refused_total).
 *
 * INVARIANTS (1) a link lives while referenced: the open list, a replica
 *            operation waiting to answer on it, a callback running on it;
 *            (2) a closed link has no bufferevent and is written to never;
 *            (3) peers[i].out, when set, is an open outbound link to i, and
 *            peers[i].up implies it is ready.
 * THREADING  Loop thread only.
 */
#define KV_LOG_MODULE "peer"
#include "cluster_int.h"
#include "hints.h"

#include <inttypes.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/dns.h>

#define PEER_BACKOFF_MIN_MS 100u
#define PEER_BACKOFF_MAX_MS 5000u
#define NO_PEER UINT32_MAX

struct peer_link {
    node_cluster_t *cl;
    peer_link_t *prev, *next;
    int refs;
    bool outbound;
    uint32_t peer;      /* member index; NO_PEER before an inbound HELLO */
    bool ready;         /* handshake done */
    bool closing;       /* refusal sent: close once the output is flushed */
    bool closed;
    bool processing;
    bool direct;        /* plain TCP: output leaves at the end of the turn */
    bool connected;     /* TCP up (an outbound link dials first) */
    node_flush_t flush;
    struct bufferevent *bev;
    kv_frame_decoder_t *dec;
    kv_frame_t frame;
    uint64_t opened_ns;
    char addr[72];
};

static uint64_t now_ns(void) { return node_now_ns(); }

static uint32_t max_body(const node_cluster_t *cl)
{
    return (uint32_t)cl->node->cfg->max_frame_bytes;
}

static hlc_ts_t hlc_of(const node_cluster_t *cl)
{
    return hlc_last(cl->node->hlc);
}

void peer_link_ref(peer_link_t *l) { l->refs++; }

void peer_link_unref(peer_link_t *l)
{
    kv_assert(l->refs > 0);
    if (--l->refs > 0) return;
    kv_assert(l->closed);
    kv_frame_release(&l->frame);
    kv_free(l);
}

static void schedule_retry(node_cluster_t *cl, node_peer_t *p);

static void peer_set_up(node_peer_t *p, bool up)
{
    if (p->up == up) return;
    p->up = up;
    metrics_gauge_set(p->m_up, up ? 1 : 0);
    if (up) {
        p->last_error[0] = 0;
        KV_LOG(KV_INFO, "peer %s (%s:%u) is up", p->name, p->host, p->peer_port);
    } else {
        KV_LOG(KV_WARN, "peer %s (%s:%u) is down: %s", p->name, p->host,
               p->peer_port, p->last_error[0] ? p->last_error : "connection lost");
    }
}

/* Record why a member is unreachable; log a change of reason once. */
static void peer_note_error(node_peer_t *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void peer_note_error(node_peer_t *p, const char *fmt, ...)
{
    char msg[sizeof p->last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (strcmp(msg, p->last_error) != 0 && !p->up)
        KV_LOG(KV_WARN, "peer %s (%s:%u): %s", p->name, p->host, p->peer_port, msg);
    snprintf(p->last_error, sizeof p->last_error, "%s", msg);
}

static void link_close(peer_link_t *l)
{
    node_cluster_t *cl = l->cl;
    if (l->closed) return;
    l->closed = true;
    bufferevent_free(l->bev);
    l->bev = NULL;
    kv_frame_decoder_destroy(l->dec);
    l->dec = NULL;
    if (l->prev) l->prev->next = l->next;
    else cl->links = l->next;
    if (l->next) l->next->prev = l->prev;
    stream_on_link_closed(cl, l);
    if (l->outbound && l->peer != NO_PEER) {
        node_peer_t *p = cl->peers[l->peer];
        if (p->out == l) {
            p->out = NULL;
            peer_set_up(p, false);
            if (cl->node->state != NODE_STOPPED) {
                schedule_retry(cl, p);
                if (l->ready) cluster_on_peer_lost(cl, l->peer);
            }
        }
    }
    peer_link_unref(l);
}

/* Close once the output (a REFUSE) has gone out. */
static void link_close_after_flush(peer_link_t *l)
{
    if (l->closed) return;
    l->closing = true;
    bufferevent_disable(l->bev, EV_READ);
    if (evbuffer_get_length(bufferevent_get_output(l->bev)) == 0) link_close(l);
    else bufferevent_enable(l->bev, EV_WRITE); /* link_write_cb closes it */
}

/* The end-of-turn flush (node_int.h). */
static void link_flush_run(node_flush_t *f)
{
    peer_link_t *l = (peer_link_t *)((char *)f - offsetof(peer_link_t, flush));
    if (!l->closed && !(bufferevent_get_enabled(l->bev) & EV_WRITE))
        (void)node_bev_write_now(l->bev);
    peer_link_unref(l);
}

static void link_write(peer_link_t *l, kv_buf_t *frame)
{
    if (!l->closed && !l->closing) {
        evbuffer_add(bufferevent_get_output(l->bev), frame->data, frame->len);
        if (l->direct && l->connected && !(bufferevent_get_enabled(l->bev) & EV_WRITE) &&
            node_flush_mark(l->cl->node, &l->flush))
            peer_link_ref(l);
    }
    kv_buf_clear(frame);
}

void peer_link_write(peer_link_t *l, kv_buf_t *frame)
{
    if (!l->closed && !l->closing && l->peer != NO_PEER)
        metrics_counter_add(l->cl->peers[l->peer]->m_sent, 1);
    link_write(l, frame);
}

bool peer_link_closed(const peer_link_t *l) { return l->closed || l->closing; }

uint32_t peer_link_peer(const peer_link_t *l) { return l->peer; }

peer_link_t *peer_out_link(node_cluster_t *cl, uint32_t idx)
{
    if (idx >= cl->npeers) return NULL;
    node_peer_t *p = cl->peers[idx];
    return p->out && p->up && !p->out->closed && !p->out->closing ? p->out : NULL;
}

static bool link_full(const peer_link_t *l)
{
    return evbuffer_get_length(bufferevent_get_output(l->bev)) >=
           l->cl->node->cfg->peer_queue_bytes;
}

static void refuse(peer_link_t *l, int reason, kv_status_t st, const char *msg)
{
    node_cluster_t *cl = l->cl;
    metrics_counter_add(cl->m.refused[reason], 1);
    KV_LOG(KV_WARN, "refused peer connection from %s: %s", l->addr, msg);
    peer_refuse_t r = {.status = st, .message = kv_slice_str(msg)};
    kv_buf_t *b = &cl->node->scratch;
    if (peer_encode_refuse(b, hlc_of(cl), &r, max_body(cl)) == KV_OK)
        link_write(l, b);
    link_close_after_flush(l);
}

/* With peer_tls: is the other side's certificate a node certificate for
 * the node called name (a slice from a HELLO)? true without peer_tls. */
static bool cert_names(peer_link_t *l, kv_slice_t name, char *msg, size_t cap)
{
    if (!node_tls_peer_on(l->cl->node)) return true;
    char cn[RING_MAX_NAME + 2];
    if (!node_tls_peer_is_node(l->bev)) {
        snprintf(msg, cap, "its certificate is not a node certificate (no "
                 "serverAuth and clientAuth usage): a client certificate?");
        return false;
    }
    if (!node_tls_peer_cn(l->bev, cn, sizeof cn) ||
        !kv_slice_eq(name, kv_slice_str(cn))) {
        snprintf(msg, cap, "its certificate is for '%.64s', but it says it is "
                 "'%.*s' (a node certificate's common name must be its node_name)",
                 cn, (int)KV_MIN(name.len, 64), (const char *)name.data);
        return false;
    }
    return true;
}

/* Refuse an inbound link whose certificate does not fit (cert_names). */
static void refuse_cert(peer_link_t *l, const char *msg)
{
    node_cluster_t *cl = l->cl;
    node_tls_count_peer_refused(cl->node);
    KV_LOG(KV_WARN, "refused peer connection from %s: %s", l->addr, msg);
    peer_refuse_t r = {.status = KV_DENIED, .message = kv_slice_str(msg)};
    kv_buf_t *b = &cl->node->scratch;
    if (peer_encode_refuse(b, hlc_of(cl), &r, max_body(cl)) == KV_OK) link_write(l, b);
    link_close_after_flush(l);
}

static void fill_hello(node_cluster_t *cl, peer_hello_t *h)
{
    const node_config_t *cfg = cl->node->cfg;
    *h = (peer_hello_t){
        .version = CAIRN_PEER_PROTO_VERSION,
        .cluster = kv_slice_str(cfg->cluster_name),
        .node_name = kv_slice_str(cfg->node_name),
        .node_id = kv_slice_str(cl->node->node_id),
        .ring_digest = cl->cfg_digest,
        .client_port = cfg->client_port,
        .admin_port = cfg->admin_port,
    };
}

/* Merge a frame's clock. False (and counted) when it is too far ahead. */
static bool merge_clock(node_cluster_t *cl, uint64_t remote, int64_t *ahead_ms)
{
    hlc_ts_t ts;
    kv_status_t rc = hlc_update(cl->node->hlc, remote, &ts);
    if (rc == KV_OK) return true;
    *ahead_ms = (int64_t)hlc_wall_ms(remote) -
                (int64_t)(kv_clock_wall_ms(kv_clock_system()));
    if (rc == KV_CLOCK_SKEW) metrics_counter_add(cl->m.skew_refused, 1);
    return false;
}

/* A clock disagreement with member idx, either way: it refused our clock,
 * or we refused its. Enough of them make this node the outlier
 * (cluster_clock_outlier). */
static void note_skew(node_cluster_t *cl, uint32_t idx)
{
    if (idx < cl->npeers) cl->peers[idx]->skew_ns = now_ns();
}

/* Check a HELLO / HELLO_OK against this node. KV_OK, or the refusal reason
 * index and status with msg filled. */
static int hello_check(node_cluster_t *cl, const peer_hello_t *h,
                       uint32_t *member, kv_status_t *st, char *msg, size_t cap)
{
    const node_config_t *cfg = cl->node->cfg;
    if (h->version != CAIRN_PEER_PROTO_VERSION) {
        snprintf(msg, cap, "peer protocol version %u is not supported (this "
                 "node speaks %d)", h->version, CAIRN_PEER_PROTO_VERSION);
        *st = KV_PROTO;
        return PEER_REFUSED_VERSION;
    }
    if (!kv_slice_eq(h->cluster, kv_slice_str(cfg->cluster_name))) {
        snprintf(msg, cap, "cluster name mismatch: this node is in '%s', the "
                 "peer in '%.*s'", cfg->cluster_name,
                 (int)KV_MIN(h->cluster.len, 64), (const char *)h->cluster.data);
        *st = KV_DENIED;
        return PEER_REFUSED_CLUSTER;
    }
    char name[RING_MAX_NAME + 1];
    size_t nl = KV_MIN(h->node_name.len, RING_MAX_NAME);
    memcpy(name, h->node_name.data, nl);
    name[nl] = 0;
    /* the whole name must match: not a prefix cut at a NUL or the limit */
    node_peer_t *p = NULL;
    if (h->node_name.len <= RING_MAX_NAME && !memchr(name, 0, nl))
        p = cluster_peer_find(cl, name);
    if (!p || p->self) {
        snprintf(msg, cap, "node '%.64s' is not a member this node knows of "
                 "(gossip has not announced it)", name);
        *st = KV_DENIED;
        return PEER_REFUSED_UNKNOWN_NODE;
    }
    if (p->node_id[0] && !kv_slice_eq(h->node_id, kv_slice_str(p->node_id))) {
        snprintf(msg, cap, "node name '%.64s' belongs to node id %s, not %.*s: "
                 "two nodes share a name", name, p->node_id,
                 (int)KV_MIN(h->node_id.len, 32), (const char *)h->node_id.data);
        *st = KV_DENIED;
        return PEER_REFUSED_DUPLICATE;
    }
    if (h->ring_digest != cl->cfg_digest) {
        snprintf(msg, cap, "node '%.*s' has another cluster config: "
                 "replication_factor differs (digest %016" PRIx64 ", ours %016"
                 PRIx64 ")", (int)KV_MIN(h->node_name.len, 64),
                 (const char *)h->node_name.data, h->ring_digest, cl->cfg_digest);
        *st = KV_INVALID;
        return PEER_REFUSED_CONFIG;
    }
    *member = p->idx;
    return -1;
}

/* ---- inbound handshake and requests ------------------------------------ */

static void inbound_hello(peer_link_t *l, const kv_frame_t *f)
{
    node_cluster_t *cl = l->cl;
    peer_head_t head;
    peer_hello_t h;
    char msg[320];
    if (f->type == PEER_GOSSIP_PUSHPULL) {
        if (node_tls_peer_on(cl->node) && !node_tls_peer_is_node(l->bev)) {
            refuse_cert(l, "push-pull with a certificate that is not a node certificate");
            return;
        }
        gossip_glue_on_pushpull(cl, l, f);
        return;
    }
    if (f->type != PEER_HELLO || peer_decode_hello(f, &head, &h) != KV_OK) {
        snprintf(msg, sizeof msg, "expected PEER_HELLO first, got a malformed "
                 "frame or type %u", f->type);
        refuse(l, PEER_REFUSED_MALFORMED, KV_PROTO, msg);
        return;
    }
    uint32_t member;
    kv_status_t st;
    int why = hello_check(cl, &h, &member, &st, msg, sizeof msg);
    if (why >= 0) {
        refuse(l, why, st, msg);
        return;
    }
    if (!cert_names(l, h.node_name, msg, sizeof msg)) {
        refuse_cert(l, msg);
        return;
    }
    int64_t ahead;
    if (!merge_clock(cl, head.hlc, &ahead)) {
        snprintf(msg, sizeof msg, "clock of node '%s' is %" PRId64 " ms ahead "
                 "of this node's (max_clock_offset_ms %" PRIu64 ")",
                 cl->peers[member]->name, ahead, cl->node->cfg->max_clock_offset_ms);
        note_skew(cl, member);
        refuse(l, PEER_REFUSED_CLOCK, KV_CLOCK_SKEW, msg);
        return;
    }
    l->peer = member;
    l->ready = true;
    peer_hello_t ok;
    fill_hello(cl, &ok);
    kv_buf_t *b = &cl->node->scratch;
    peer_encode_hello(b, PEER_HELLO_OK, hlc_of(cl), &ok, max_body(cl));
    link_write(l, b);
    KV_LOG(KV_DEBUG, "peer %s connected from %s", cl->peers[member]->name, l->addr);
}

static void inbound_frame(peer_link_t *l, const kv_frame_t *f)
{
    node_cluster_t *cl = l->cl;
    if (!l->ready) {
        inbound_hello(l, f);
        return;
    }
    node_peer_t *p = cl->peers[l->peer];
    metrics_counter_add(p->m_recv, 1);
    peer_head_t head;
    if (peer_decode_head(f, &head) != KV_OK) {
        KV_LOG(KV_WARN, "malformed frame from peer %s; closing", p->name);
        link_close(l);
        return;
    }
    int64_t ahead;
    bool clock_ok = merge_clock(cl, head.hlc, &ahead);
    if (!clock_ok) note_skew(cl, l->peer);
    kv_buf_t *b = &cl->node->scratch;
    switch (f->type) {
    case PEER_PING:
        if (clock_ok) {
            eng_stats_t s;
            eng_get_stats(cl->node->eng, &s);
            peer_encode_pong(b, head.msg_id, hlc_of(cl), s.live_bytes, 0);
            link_write(l, b);
        }
        return;
    case PEER_MUTATION: {
        peer_mutation_t m;
        if (peer_decode_mutation(f, &head, &m) != KV_OK) break;
        if (!clock_ok) peer_reply_mutation(l, head.msg_id, KV_CLOCK_SKEW, 0);
        else cluster_on_mutation(cl, l, head.msg_id, &m);
        return;
    }
    case PEER_HINTS: {
        uint32_t n;
        if (peer_decode_hints(f, &head, &n) != KV_OK) break;
        peer_hints_reply_t r = {.status = KV_CLOCK_SKEW};
        if (!clock_ok) peer_reply_hints(l, head.msg_id, &r);
        else cluster_on_hints(cl, l, head.msg_id, f, n);
        return;
    }
    case PEER_READ: {
        kv_slice_t key;
        if (peer_decode_read(f, &head, &key) != KV_OK) break;
        if (!clock_ok) peer_reply_read(l, head.msg_id, KV_CLOCK_SKEW, NULL);
        else cluster_on_read(cl, l, head.msg_id, key);
        return;
    }
    case PEER_STREAM_REQ: {
        uint64_t *ranges;
        size_t nranges;
        if (peer_decode_stream_req_ranges(f, &head, &ranges, &nranges) != KV_OK) break;
        if (clock_ok) stream_on_req(cl, l, l->peer, head.msg_id, ranges, nranges);
        else kv_free(ranges);
        return;
    }
    case PEER_STREAM_ACK: {
        uint64_t seq;
        kv_status_t st;
        if (peer_decode_stream_ack(f, &head, &seq, &st) != KV_OK) break;
        stream_on_ack(cl, l, head.msg_id, seq, st);
        return;
    }
    case PEER_FETCH: {
        peer_fetch_t fe;
        if (peer_decode_fetch(f, &head, &fe) != KV_OK) break;
        stream_on_fetch(cl, l, head.msg_id, f, &fe);
        return;
    }
    case PEER_MERKLE_REQ: {
        uint64_t start, end;
        uint32_t depth;
        if (peer_decode_merkle_req(f, &head, &start, &end, &depth) != KV_OK) break;
        repair_on_merkle_req(cl, l, head.msg_id, start, end, depth);
        return;
    }
    default:
        /* A later version's message this node does not know: ignore it. */
        KV_LOG(KV_DEBUG, "ignoring peer message type %u from %s", f->type, p->name);
        return;
    }
    KV_LOG(KV_WARN, "malformed %u message from peer %s; closing", f->type, p->name);
    link_close(l);
}

/* ---- outbound ---------------------------------------------------------- */

static void outbound_frame(peer_link_t *l, const kv_frame_t *f)
{
    node_cluster_t *cl = l->cl;
    node_peer_t *p = cl->peers[l->peer];
    peer_head_t head;
    int64_t ahead = 0;
    if (f->type == PEER_REFUSE) {
        peer_refuse_t r;
        if (peer_decode_refuse(f, &head, &r) == KV_OK) {
            if (r.status == KV_CLOCK_SKEW) note_skew(cl, l->peer);
            peer_note_error(p, "refused our connection: %.*s",
                            (int)KV_MIN(r.message.len, 120),
                            (const char *)r.message.data);
        } else
            peer_note_error(p, "refused our connection");
        link_close(l);
        return;
    }
    if (!l->ready) {
        peer_hello_t h;
        uint32_t member;
        kv_status_t st;
        char msg[320];
        if (f->type != PEER_HELLO_OK || peer_decode_hello(f, &head, &h) != KV_OK) {
            peer_note_error(p, "answered the handshake with a malformed frame");
            link_close(l);
            return;
        }
        int why = hello_check(cl, &h, &member, &st, msg, sizeof msg);
        if (why < 0 && member != l->peer) {
            snprintf(msg, sizeof msg, "the node at %s:%u is '%.*s', not '%s'",
                     p->host, p->peer_port, (int)KV_MIN(h.node_name.len, 64),
                     (const char *)h.node_name.data, p->name);
            why = PEER_REFUSED_UNKNOWN_NODE;
        }
        if (why < 0 && !merge_clock(cl, head.hlc, &ahead)) {
            snprintf(msg, sizeof msg, "its clock is %" PRId64 " ms ahead of "
                     "this node's (max_clock_offset_ms %" PRIu64 ")", ahead,
                     cl->node->cfg->max_clock_offset_ms);
            why = PEER_REFUSED_CLOCK;
            note_skew(cl, l->peer);
        }
        if (why >= 0) {
            metrics_counter_add(cl->m.refused[why], 1);
            peer_note_error(p, "%s", msg);
            link_close(l);
            return;
        }
        if (!cert_names(l, kv_slice_str(p->name), msg, sizeof msg)) {
            node_tls_count_peer_refused(cl->node);
            peer_note_error(p, "%s", msg);
            link_close(l);
            return;
        }
        l->ready = true;
        p->client_port = h.client_port;
        p->admin_port = h.admin_port;
        snprintf(p->node_id, sizeof p->node_id, "%.*s",
                 (int)KV_MIN(h.node_id.len, 32), (const char *)h.node_id.data);
        p->backoff_ms = PEER_BACKOFF_MIN_MS;
        p->last_heard_ns = now_ns();
        p->next_ping_ns = p->last_heard_ns;
        peer_set_up(p, true);
        return;
    }
    metrics_counter_add(p->m_recv, 1);
    if (peer_decode_head(f, &head) != KV_OK) {
        peer_note_error(p, "sent a malformed frame");
        link_close(l);
        return;
    }
    if (!merge_clock(cl, head.hlc, &ahead)) {
        note_skew(cl, l->peer);
        KV_LOG(KV_WARN, "dropped a reply from %s: its clock is %" PRId64
               " ms ahead (max_clock_offset_ms %" PRIu64 ")", p->name, ahead,
               cl->node->cfg->max_clock_offset_ms);
        return;
    }
    /* heard from only when its clock is acceptable: a peer whose every
     * reply is dropped for skew goes down, and requests stop waiting on it */
    p->last_heard_ns = now_ns();
    switch (f->type) {
    case PEER_PONG: {
        uint64_t load;
        if (peer_decode_pong(f, &head, &load) == KV_OK) p->load_bytes = load;
        return;
    }
    case PEER_MUTATION_REPLY: {
        peer_mutation_reply_t r;
        if (peer_decode_mutation_reply(f, &head, &r) != KV_OK) break;
        cluster_on_mutation_reply(cl, l->peer, head.msg_id, &r);
        return;
    }
    case PEER_READ_REPLY: {
        peer_read_reply_t r;
        if (peer_decode_read_reply(f, &head, &r) != KV_OK) break;
        cluster_on_read_reply(cl, l->peer, head.msg_id, &r);
        return;
    }
    case PEER_HINTS_REPLY: {
        peer_hints_reply_t r;
        if (peer_decode_hints_reply(f, &head, &r) != KV_OK) break;
        hints_glue_on_reply(cl, l->peer, head.msg_id, &r);
        return;
    }
    case PEER_STREAM_CHUNK: {
        peer_stream_chunk_t c;
        if (peer_decode_stream_chunk(f, &head, &c) != KV_OK) break;
        stream_on_chunk(cl, l, head.msg_id, f, &c);
        return;
    }
    case PEER_STREAM_ABORT: {
        kv_status_t st;
        kv_slice_t msg;
        if (peer_decode_stream_abort(f, &head, &st, &msg) != KV_OK) break;
        stream_on_abort(cl, l, head.msg_id, st, msg);
        return;
    }
    case PEER_MERKLE_REPLY: {
        peer_merkle_reply_t r;
        if (peer_decode_merkle_reply(f, &head, &r) != KV_OK) break;
        repair_on_merkle_reply(cl, l->peer, head.msg_id, &r);
        return;
    }
    case PEER_FETCH_REPLY: {
        peer_fetch_reply_t r;
        if (peer_decode_fetch_reply(f, &head, &r) != KV_OK) break;
        stream_on_fetch_reply(cl, l, head.msg_id, &r);
        return;
    }
    default:
        return;
    }
    peer_note_error(p, "sent a malformed reply of type %u", f->type);
    link_close(l);
}

/* ---- bufferevent callbacks --------------------------------------------- */

static void link_process(peer_link_t *l)
{
    if (l->processing) return;
    l->processing = true;
    peer_link_ref(l);
    while (!l->closed && !l->closing) {
        kv_status_t rc = kv_frame_decoder_next(l->dec, &l->frame);
        if (rc == KV_AGAIN) break;
        if (rc != KV_OK) {
            const char *why = kv_frame_decoder_error(l->dec);
            KV_LOG(KV_WARN, "peer connection %s: %s; closing", l->addr,
                   why ? why : "malformed frame");
            if (l->outbound) peer_note_error(l->cl->peers[l->peer], "%s",
                                             why ? why : "malformed frame");
            link_close(l);
            break;
        }
        if (l->outbound) outbound_frame(l, &l->frame);
        else inbound_frame(l, &l->frame);
    }
    kv_frame_release(&l->frame);
    l->processing = false;
    peer_link_unref(l);
}

static void link_read_cb(struct bufferevent *bev, void *arg)
{
    peer_link_t *l = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer_iovec v[16];
    while (evbuffer_get_length(in) > 0) {
        int k = evbuffer_peek(in, -1, NULL, v, 16);
        size_t fed = 0;
        for (int i = 0; i < k && i < 16; i++) {
            (void)kv_frame_decoder_feed(l->dec, v[i].iov_base, v[i].iov_len);
            fed += v[i].iov_len;
        }
        evbuffer_drain(in, fed);
    }
    link_process(l);
}

static void link_write_cb(struct bufferevent *bev, void *arg)
{
    peer_link_t *l = arg;
    size_t left = evbuffer_get_length(bufferevent_get_output(bev));
    if (l->closing && left == 0)
        link_close(l);
    else if (l->direct && l->connected && left == 0) /* back to end-of-turn writes */
        bufferevent_disable(bev, EV_WRITE);
}

static void link_event_cb(struct bufferevent *bev, short what, void *arg)
{
    peer_link_t *l = arg;
    node_cluster_t *cl = l->cl;
    (void)bev;
    if (what & BEV_EVENT_CONNECTED) {
        /* TCP up (or, with TLS, the handshake done); an accepted TLS link
         * reports its handshake too: the dialler speaks first. */
        if (!l->outbound) return;
        l->connected = true; /* EV_WRITE stays on until the HELLO is out */
        int one = 1;
        setsockopt(bufferevent_getfd(l->bev), IPPROTO_TCP, TCP_NODELAY, &one,
                   sizeof one);
        peer_hello_t h;
        fill_hello(cl, &h);
        kv_buf_t *b = &cl->node->scratch;
        peer_encode_hello(b, PEER_HELLO, hlc_of(cl), &h, max_body(cl));
        link_write(l, b);
        return;
    }
    char tls_why[256];
    bool tls_failed = node_tls_bev_is_tls(l->bev) && !l->ready &&
                      *node_tls_error(l->bev, tls_why, sizeof tls_why);
    if (tls_failed) node_tls_count_failure(cl->node, true);
    if (!l->outbound && tls_failed)
        KV_LOG(KV_WARN, "peer connection from %s: %s", l->addr, tls_why);
    if (l->outbound) {
        node_peer_t *p = cl->peers[l->peer];
        int err = EVUTIL_SOCKET_ERROR();
        if (tls_failed) {
            peer_note_error(p, "%s", tls_why);
        } else if (what & BEV_EVENT_ERROR) {
            int dns = bufferevent_socket_get_dns_error(l->bev);
            if (dns)
                peer_note_error(p, "cannot resolve %s: %s", p->host,
                                evutil_gai_strerror(dns));
            else
                peer_note_error(p, "%s", evutil_socket_error_to_string(err));
        } else {
            peer_note_error(p, "connection closed by the peer");
        }
    }
    link_close(l);
}

static peer_link_t *link_new(node_cluster_t *cl, struct bufferevent *bev,
                             bool outbound, uint32_t peer, const char *addr)
{
    peer_link_t *l = kv_calloc(1, sizeof *l);
    l->cl = cl;
    l->refs = 1; /* the open list */
    l->outbound = outbound;
    l->peer = peer;
    l->bev = bev;
    l->dec = kv_frame_decoder_create(max_body(cl));
    l->opened_ns = now_ns();
    kv_frame_init(&l->frame);
    snprintf(l->addr, sizeof l->addr, "%s", addr);
    l->next = cl->links;
    if (cl->links) cl->links->prev = l;
    cl->links = l;
    l->direct = !node_tls_bev_is_tls(bev);
    l->connected = !outbound;
    l->flush.run = link_flush_run;
    bufferevent_setcb(bev, link_read_cb, link_write_cb, link_event_cb, l);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    if (l->direct && l->connected) /* on by default in libevent */
        bufferevent_disable(bev, EV_WRITE);
    return l;
}

static void dial(node_cluster_t *cl, node_peer_t *p)
{
    kv_assert(!p->out && !p->self);
    int family;
    evutil_socket_t fd = node_outbound_socket(cl->node, &family);
    struct bufferevent *bev = node_tls_peer_bev(cl->node, fd, false, p->host);
    if (!bev) {
        peer_note_error(p, "cannot create a socket");
        schedule_retry(cl, p);
        return;
    }
    char addr[72];
    snprintf(addr, sizeof addr, "%s:%u", p->host, p->peer_port);
    metrics_counter_add(cl->m.connects, 1);
    peer_link_t *l = link_new(cl, bev, true, p->idx, addr);
    p->out = l;
    /* May fail at once (and call the event callback, closing the link). */
    peer_link_ref(l);
    if (bufferevent_socket_connect_hostname(bev, cl->dns, family, p->host,
                                            p->peer_port) != 0 && !l->closed) {
        peer_note_error(p, "cannot connect to %s", addr);
        link_close(l);
    }
    peer_link_unref(l);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    node_peer_t *p = arg;
    (void)fd;
    (void)what;
    if (!p->out && p->cl->node->state != NODE_STOPPED) dial(p->cl, p);
}

static void schedule_retry(node_cluster_t *cl, node_peer_t *p)
{
    uint32_t d = p->backoff_ms ? p->backoff_ms : PEER_BACKOFF_MIN_MS;
    p->backoff_ms = KV_MIN(d * 2, PEER_BACKOFF_MAX_MS);
    /* +-20% jitter so members do not redial in lockstep */
    uint32_t jitter = (uint32_t)(kv_rng_below(&cl->rng, d / 5 * 2 + 1));
    d = d - d / 5 + jitter;
    struct timeval tv = {d / 1000, (d % 1000) * 1000};
    evtimer_add(p->retry_ev, &tv);
}

/* ---- heartbeats and liveness ------------------------------------------- */

static void heartbeat_cb(evutil_socket_t fd, short what, void *arg)
{
    node_cluster_t *cl = arg;
    (void)fd;
    (void)what;
    uint64_t now = now_ns();
    uint64_t timeout_ns = (uint64_t)cl->node->cfg->peer_timeout_ms * 1000000u;
    /* An inbound connection must introduce itself within peer_timeout_ms:
     * a silent or half-sent handshake does not hold a socket and a frame
     * buffer forever. */
    for (peer_link_t *l = cl->links, *next; l; l = next) {
        next = l->next;
        if (!l->outbound && !l->ready && now - l->opened_ns > timeout_ns) {
            KV_LOG(KV_WARN, "peer connection from %s sent no handshake within "
                   "peer_timeout_ms (%u ms); closing", l->addr,
                   cl->node->cfg->peer_timeout_ms);
            metrics_counter_add(cl->m.refused[PEER_REFUSED_TIMEOUT], 1);
            link_close(l);
        }
    }
    for (uint32_t i = 0; i < cl->npeers; i++) {
        node_peer_t *p = cl->peers[i];
        peer_link_t *l = p->out;
        if (p->self || !l) continue;
        if (!l->ready) {
            if (now - l->opened_ns > timeout_ns) {
                peer_note_error(p, "no handshake answer within peer_timeout_ms "
                                "(%u ms)", cl->node->cfg->peer_timeout_ms);
                link_close(l);
            }
            continue;
        }
        if (now - p->last_heard_ns > timeout_ns) {
            snprintf(p->last_error, sizeof p->last_error,
                     "silent for more than peer_timeout_ms (%u ms)",
                     cl->node->cfg->peer_timeout_ms);
            link_close(l);
            continue;
        }
        if (now >= p->next_ping_ns && !link_full(l)) {
            kv_buf_t *b = &cl->node->scratch;
            peer_encode_ping(b, 0, hlc_of(cl), 0);
            link_write(l, b);
            metrics_counter_add(p->m_sent, 1);
            p->next_ping_ns = now + cl->hb_interval_ms * 1000000u;
        }
    }
}

/* ---- accept ------------------------------------------------------------ */

static void accept_cb(struct evconnlistener *lis, evutil_socket_t fd,
                      struct sockaddr *sa, int socklen, void *arg)
{
    node_cluster_t *cl = arg;
    (void)lis;
    (void)socklen;
    char addr[72];
    node_addr_str(sa, addr, sizeof addr);
    if (cl->node->state == NODE_STOPPED) {
        evutil_closesocket(fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct bufferevent *bev = node_tls_peer_bev(cl->node, fd, true, NULL);
    if (!bev) return; /* fd closed */
    link_new(cl, bev, false, NO_PEER, addr);
}

static void accept_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    node_cluster_t *cl = arg;
    (void)fd;
    (void)what;
    if (cl->listener) evconnlistener_enable(cl->listener);
}

/* accept() failed (EMFILE ...): pause for a moment rather than spin. */
static void accept_error_cb(struct evconnlistener *lis, void *arg)
{
    node_cluster_t *cl = arg;
    KV_LOG(KV_WARN, "peer accept failed: %s; pausing the peer listener for "
           "100 ms", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    evconnlistener_disable(lis);
    struct timeval tv = {0, 100000};
    evtimer_add(cl->accept_retry, &tv);
}

void peer_add(node_cluster_t *cl, node_peer_t *p)
{
    if (p->self || p->retry_ev) return;
    p->retry_ev = evtimer_new(cl->node->base, retry_cb, p);
    p->backoff_ms = PEER_BACKOFF_MIN_MS;
    snprintf(p->last_error, sizeof p->last_error, "not connected yet");
    struct timeval now = {0, 0};
    evtimer_add(p->retry_ev, &now);
}

void peer_readdress(node_cluster_t *cl, node_peer_t *p)
{
    if (p->self) return;
    if (p->out) {
        snprintf(p->last_error, sizeof p->last_error, "address changed to %s:%u",
                 p->host, p->peer_port);
        p->backoff_ms = PEER_BACKOFF_MIN_MS;
        link_close(p->out);
    } else if (p->retry_ev) {
        p->backoff_ms = PEER_BACKOFF_MIN_MS;
        struct timeval now = {0, 0};
        evtimer_add(p->retry_ev, &now);
    }
}

void peer_link_reply_close(peer_link_t *l, kv_buf_t *frame)
{
    if (l->closed || l->closing) return;
    link_write(l, frame);
    link_close_after_flush(l);
}

kv_status_t peer_start(node_cluster_t *cl)
{
    node_t *n = cl->node;
    const node_config_t *cfg = n->cfg;
    kv_rng_seed(&cl->rng, now_ns() ^ (uint64_t)(uintptr_t)cl);
    cl->hb_interval_ms = KV_MAX(20u, cfg->peer_timeout_ms / 5);
    KV_RET(node_listen(n, "peer_port", cfg->peer_port, accept_cb, cl,
                       &cl->listener));
    evconnlistener_set_error_cb(cl->listener, accept_error_cb);
    cl->accept_retry = evtimer_new(n->base, accept_retry_cb, cl);
    /* Names (docker-compose service names) resolve without blocking the
     * loop; numeric addresses need no resolver at all. */
    cl->dns = evdns_base_new(n->base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
    if (!cl->dns) cl->dns = evdns_base_new(n->base, 0);
    if (cl->dns) evdns_base_load_hosts(cl->dns, NULL);
    cl->heartbeat_ev = event_new(n->base, -1, EV_PERSIST, heartbeat_cb, cl);
    uint64_t tick = KV_MAX(10u, cl->hb_interval_ms / 2);
    struct timeval tv = {(long)(tick / 1000), (long)(tick % 1000) * 1000};
    event_add(cl->heartbeat_ev, &tv);
    return KV_OK;
}

void peer_stop(node_cluster_t *cl)
{
    if (cl->heartbeat_ev) event_free(cl->heartbeat_ev);
    cl->heartbeat_ev = NULL;
    for (uint32_t i = 0; i < cl->npeers; i++) {
        if (cl->peers[i]->retry_ev) event_free(cl->peers[i]->retry_ev);
        cl->peers[i]->retry_ev = NULL;
    }
    while (cl->links) link_close(cl->links);
    if (cl->accept_retry) event_free(cl->accept_retry);
    cl->accept_retry = NULL;
    if (cl->listener) evconnlistener_free(cl->listener);
    cl->listener = NULL;
    if (cl->dns) evdns_base_free(cl->dns, 0);
    cl->dns = NULL;
}

/* ---- sending ----------------------------------------------------------- */

bool peer_usable(node_cluster_t *cl, uint32_t idx, bool *full)
{
    node_peer_t *p = cl->peers[idx];
    *full = false;
    if (p->self) return true;
    if (!p->up || !p->out || !p->gossip_up) return false;
    if (link_full(p->out)) {
        *full = true;
        return false;
    }
    return true;
}

static kv_status_t send_check(node_cluster_t *cl, uint32_t idx, peer_link_t **out)
{
    node_peer_t *p = cl->peers[idx];
    kv_assert(!p->self);
    if (!p->up || !p->out || !p->out->ready || !p->gossip_up)
        return KV_UNAVAILABLE;
    if (link_full(p->out)) {
        metrics_counter_add(cl->m.queue_full, 1);
        return KV_BUSY;
    }
    *out = p->out;
    return KV_OK;
}

kv_status_t peer_send_mutation(node_cluster_t *cl, uint32_t idx, uint64_t msg_id,
                               kv_slice_t key, const eng_cell_t *cell)
{
    peer_link_t *l;
    KV_RET(send_check(cl, idx, &l));
    peer_mutation_t m = {
        .key = key,
        .cell = {.ts = cell->ts, .tombstone = cell->tombstone,
                 .expire_ms = cell->expire_ms,
                 .value = cell->tombstone ? kv_slice(NULL, 0) : cell->value},
    };
    kv_buf_t *b = &cl->node->scratch;
    KV_RET(peer_encode_mutation(b, msg_id, hlc_of(cl), &m, max_body(cl)));
    link_write(l, b);
    metrics_counter_add(cl->peers[idx]->m_sent, 1);
    return KV_OK;
}

kv_status_t peer_send_read(node_cluster_t *cl, uint32_t idx, uint64_t msg_id,
                           kv_slice_t key)
{
    peer_link_t *l;
    KV_RET(send_check(cl, idx, &l));
    kv_buf_t *b = &cl->node->scratch;
    KV_RET(peer_encode_read(b, msg_id, hlc_of(cl), key, max_body(cl)));
    link_write(l, b);
    metrics_counter_add(cl->peers[idx]->m_sent, 1);
    return KV_OK;
}

kv_status_t peer_send_hints(node_cluster_t *cl, uint32_t idx, uint64_t msg_id,
                            const hint_batch_t *b)
{
    peer_link_t *l;
    KV_RET(send_check(cl, idx, &l));
    if (b->n == 0) return KV_INVALID;
    peer_hint_t *h = kv_calloc(b->n, sizeof *h);
    for (size_t i = 0; i < b->n; i++) {
        const eng_cell_t *c = &b->recs[i].cell;
        h[i].key = b->recs[i].key;
        h[i].cell = (peer_cell_t){.ts = c->ts, .tombstone = c->tombstone,
                                  .expire_ms = c->tombstone ? 0 : c->expire_ms,
                                  .value = c->tombstone ? kv_slice(NULL, 0) : c->value};
    }
    kv_buf_t *buf = &cl->node->scratch;
    kv_status_t rc = peer_encode_hints(buf, msg_id, hlc_of(cl), h, b->n, max_body(cl));
    kv_free(h);
    KV_RET(rc);
    link_write(l, buf);
    metrics_counter_add(cl->peers[idx]->m_sent, 1);
    return KV_OK;
}

void peer_reply_hints(peer_link_t *l, uint64_t msg_id, const peer_hints_reply_t *r)
{
    if (l->closed || l->closing) return;
    node_cluster_t *cl = l->cl;
    kv_buf_t *b = &cl->node->scratch;
    if (peer_encode_hints_reply(b, msg_id, hlc_of(cl), r, 0) == KV_OK)
        link_write(l, b);
    metrics_counter_add(cl->peers[l->peer]->m_sent, 1);
}

void peer_reply_mutation(peer_link_t *l, uint64_t msg_id, kv_status_t st,
                         hlc_ts_t superseded_by)
{
    if (l->closed || l->closing) return;
    node_cluster_t *cl = l->cl;
    peer_mutation_reply_t r = {.status = st, .superseded_by = superseded_by};
    kv_buf_t *b = &cl->node->scratch;
    if (peer_encode_mutation_reply(b, msg_id, hlc_of(cl), &r, 0) == KV_OK)
        link_write(l, b);
    metrics_counter_add(cl->peers[l->peer]->m_sent, 1);
}

void peer_reply_read(peer_link_t *l, uint64_t msg_id, kv_status_t st,
                     const eng_value_t *v)
{
    if (l->closed || l->closing) return;
    node_cluster_t *cl = l->cl;
    peer_read_reply_t r = {.status = st};
    if (st == KV_OK && v) {
        r.cell.ts = v->ts;
        r.cell.tombstone = v->tombstone;
        r.cell.expire_ms = v->tombstone ? 0 : v->expire_ms;
        r.cell.value = v->tombstone ? kv_slice(NULL, 0) : kv_buf_slice(&v->value);
    }
    kv_buf_t *b = &cl->node->scratch;
    kv_status_t rc = peer_encode_read_reply(b, msg_id, hlc_of(cl), &r, max_body(cl));
    if (rc != KV_OK) {
        peer_read_reply_t e = {.status = KV_INVALID};
        peer_encode_read_reply(b, msg_id, hlc_of(cl), &e, 0);
    }
    link_write(l, b);
    metrics_counter_add(cl->peers[l->peer]->m_sent, 1);
}
