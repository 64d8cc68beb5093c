/* gossip_glue.c -- gossip (gossip/) on real sockets and real time.
 *
 * DESIGN  The state machine decides; this file carries out:
 *           - one UDP socket on listen_address:peer_port (the same number
 *             as the peer TCP port): every datagram read goes to
 *             gossip_on_udp; every GOSSIP_ACT_UDP is one sendto;
 *           - push-pull over TCP: a GOSSIP_ACT_PUSHPULL opens a fresh
 *             connection to the peer port, sends one GOSSIP_PUSHPULL frame
 *             and feeds the GOSSIP_PUSHPULL_REPLY back (or reports the
 *             failure after PUSHPULL_TIMEOUT_MS); an inbound connection
 *             whose first frame is GOSSIP_PUSHPULL is answered by peer.c
 *             through gossip_glue_on_pushpull, then closed;
 *           - one timer, always set to gossip_next_timer;
 *           - events become log lines, statistics become /metrics, and
 *             after every input cluster_view_refresh brings slots, links
 *             and the ring in line with the view.
 *         Addresses: a member's host is normally an IP literal and is sent
 *         to directly. A name (a seed given as a DNS name, a
 *         docker-compose service) is resolved without blocking: UDP to a
 *         name not yet in the small cache starts a lookup and the datagram
 *         is lost (gossip expects losses); push-pulls resolve at each
 *         attempt, so a seed that moves is found again.
 *         Security: with peer_tls on, push-pulls run over mutual TLS like
 *         the peer links (tls.c). With a cluster secret, every datagram is
 *         sealed with an HMAC tag and a timestamp (gossip_auth.h) and only
 *         datagrams that open are handed to gossip; the others are dropped
 *         and counted (cairn_gossip_dropped_total{reason="auth"|"stale"|
 *         "replay"}).
 *         Joined: a node with seeds or other founders is ready (/ready)
 *         only once it has heard from another member of its cluster, so a
 *         node started before its peers (containers in any order) is not
 *         reported healthy while it is alone. Latched: a node whose peers
 *         all go away later stays ready and serves what it can. A cluster
 *         of one (no seeds, no other founder) is joined from the start.
 *
 * THREADING  Loop thread only.
 */
#define KV_LOG_MODULE "gossip"
#include "cluster_int.h"
#include "gossip_auth.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#define L(...) ((const char *const[]){__VA_ARGS__, NULL})

#define PUSHPULL_TIMEOUT_MS 5000u
#define UDP_BUF 65536u
#define DNS_SLOTS 32u
#define DNS_TTL_MS 30000u
#define REFUSAL_LOG_MS 10000u /* repeat a refusal in the log this often */

typedef struct dns_entry {
    char host[GOSSIP_MAX_NAME + 1];
    struct sockaddr_storage sa;
    socklen_t len;
    uint64_t expires_ms;
    bool pending, ok;
    struct evdns_getaddrinfo_request *req;
} dns_entry_t;

typedef struct pp_conn {
    gossip_glue_t *gl;
    struct pp_conn *prev, *next;
    struct bufferevent *bev;
    kv_frame_decoder_t *dec;
    kv_frame_t frame;
    uint64_t id;
    char addr[GOSSIP_MAX_NAME + 8];
} pp_conn_t;

struct gossip_glue {
    node_cluster_t *cl;
    evutil_socket_t fd;
    struct event *udp_ev, *timer_ev;
    uint8_t *buf;
    uint8_t *sealed;         /* a datagram with its auth header and tag */
    gossip_auth_t *auth;     /* NULL without a cluster secret */
    pp_conn_t *pps;
    dns_entry_t dns[DNS_SLOTS];
    char refusal[256];       /* the refusal last logged */
    uint64_t refusal_logged_ms;
    bool flushing;
    bool joined;             /* heard from another member (latched) */
    gossip_stats_t last;
    struct {
        metric_series_t *alive, *suspect, *dead;
        metric_series_t *raised, *refuted, *deaths, *probes, *probes_failed;
        metric_series_t *sent_udp, *sent_tcp, *recv_udp, *recv_tcp;
        metric_series_t *drop_malformed, *drop_cluster, *drop_version,
            *drop_conflict, *drop_auth, *drop_stale, *drop_replay;
        metric_series_t *pp_refused, *awareness, *stalls;
    } m;
};

static uint64_t now_ms(void) { return node_now_ns() / 1000000u; }

/* Datagram stamps are wall-clock time: they are compared across nodes. */
static uint64_t wall_ms(void)
{
    int64_t w = kv_clock_wall_ms(kv_clock_system());
    return w > 0 ? (uint64_t)w : 0;
}

/* ---- addresses ---------------------------------------------------------- */

static bool parse_literal(const char *host, uint16_t port,
                          struct sockaddr_storage *sa, socklen_t *len)
{
    memset(sa, 0, sizeof *sa);
    struct sockaddr_in *v4 = (struct sockaddr_in *)sa;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)sa;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        *len = sizeof *v4;
        return true;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        *len = sizeof *v6;
        return true;
    }
    return false;
}

static void dns_done(int err, struct evutil_addrinfo *res, void *arg)
{
    dns_entry_t *e = arg;
    e->pending = false;
    e->req = NULL;
    e->ok = false;
    if (err == 0 && res && res->ai_addrlen <= sizeof e->sa) {
        memcpy(&e->sa, res->ai_addr, res->ai_addrlen);
        e->len = (socklen_t)res->ai_addrlen;
        e->ok = true;
        e->expires_ms = now_ms() + DNS_TTL_MS;
    } else if (err != EVUTIL_EAI_CANCEL) {
        KV_LOG(KV_DEBUG, "cannot resolve %s: %s", e->host, evutil_gai_strerror(err));
        e->expires_ms = now_ms() + 1000; /* try again soon */
    }
    if (res) evutil_freeaddrinfo(res);
}

/* The address to send to, or false (a lookup may have started). */
static bool resolve(gossip_glue_t *gl, const char *host, uint16_t port,
                    struct sockaddr_storage *sa, socklen_t *len)
{
    if (parse_literal(host, port, sa, len)) return true;
    uint64_t now = now_ms();
    dns_entry_t *e = NULL, *victim = &gl->dns[0];
    for (uint32_t i = 0; i < DNS_SLOTS; i++) {
        if (!strcmp(gl->dns[i].host, host)) {
            e = &gl->dns[i];
            break;
        }
        if (!gl->dns[i].pending && gl->dns[i].expires_ms < victim->expires_ms)
            victim = &gl->dns[i];
    }
    if (e && e->ok && e->expires_ms > now) {
        *sa = e->sa;
        *len = e->len;
        if (sa->ss_family == AF_INET) ((struct sockaddr_in *)sa)->sin_port = htons(port);
        else ((struct sockaddr_in6 *)sa)->sin6_port = htons(port);
        return true;
    }
    if (e && (e->pending || e->expires_ms > now)) return false;
    if (!e) {
        if (victim->pending) return false;
        e = victim;
        memset(e, 0, sizeof *e);
        snprintf(e->host, sizeof e->host, "%s", host);
    }
    if (!gl->cl->dns) return false;
    struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM};
    e->pending = true;
    e->req = evdns_getaddrinfo(gl->cl->dns, host, NULL, &hints, dns_done, e);
    /* evdns may answer at once (hosts file); dns_done then ran already */
    return false;
}

/* ---- push-pull connections --------------------------------------------- */

static void pp_close(pp_conn_t *c)
{
    gossip_glue_t *gl = c->gl;
    if (c->prev) c->prev->next = c->next;
    else gl->pps = c->next;
    if (c->next) c->next->prev = c->prev;
    bufferevent_free(c->bev);
    kv_frame_decoder_destroy(c->dec);
    kv_frame_release(&c->frame);
    kv_free(c);
}

static void pp_fail(pp_conn_t *c, const char *why)
{
    gossip_glue_t *gl = c->gl;
    KV_LOG(KV_DEBUG, "push-pull with %s failed: %s", c->addr, why);
    gossip_on_pushpull_failed(gl->cl->gossip, now_ms(), c->id);
    pp_close(c);
    gossip_glue_flush(gl->cl);
}

static void pp_read_cb(struct bufferevent *bev, void *arg)
{
    pp_conn_t *c = arg;
    gossip_glue_t *gl = c->gl;
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer_iovec v[16];
    while (evbuffer_get_length(in) > 0) {
        int k = evbuffer_peek(in, -1, NULL, v, 16);
        size_t fed = 0;
        for (int i = 0; i < k && i < 16; i++) {
            (void)kv_frame_decoder_feed(c->dec, v[i].iov_base, v[i].iov_len);
            fed += v[i].iov_len;
        }
        evbuffer_drain(in, fed);
    }
    kv_status_t rc = kv_frame_decoder_next(c->dec, &c->frame);
    if (rc == KV_AGAIN) return;
    peer_head_t head;
    kv_slice_t body;
    if (rc != KV_OK || c->frame.type == PEER_REFUSE ||
        c->frame.type != PEER_GOSSIP_PUSHPULL_REPLY ||
        peer_decode_pushpull(&c->frame, &head, &body) != KV_OK) {
        pp_fail(c, "malformed or unexpected reply");
        return;
    }
    gossip_on_pushpull_reply(gl->cl->gossip, now_ms(), c->id, body.data, body.len);
    pp_close(c);
    gossip_glue_flush(gl->cl);
}

static void pp_event_cb(struct bufferevent *bev, short what, void *arg)
{
    pp_conn_t *c = arg;
    if (what & BEV_EVENT_CONNECTED) return;
    char why[256];
    if (node_tls_bev_is_tls(bev) && *node_tls_error(bev, why, sizeof why)) {
        node_tls_count_failure(c->gl->cl->node, true);
        /* a seed with another CA: say so where the operator looks */
        KV_LOG(KV_WARN, "push-pull with %s failed: %s", c->addr, why);
        pp_fail(c, why);
        return;
    }
    pp_fail(c, what & BEV_EVENT_TIMEOUT ? "timed out"
               : what & BEV_EVENT_EOF   ? "connection closed"
                                        : evutil_socket_error_to_string(
                                              EVUTIL_SOCKET_ERROR()));
}

static void pp_start(gossip_glue_t *gl, const gossip_action_t *a)
{
    node_cluster_t *cl = gl->cl;
    int family;
    evutil_socket_t fd = node_outbound_socket(cl->node, &family);
    struct bufferevent *bev = node_tls_peer_bev(cl->node, fd, false, a->host);
    if (!bev) {
        gossip_on_pushpull_failed(cl->gossip, now_ms(), a->id);
        return;
    }
    pp_conn_t *c = kv_calloc(1, sizeof *c);
    c->gl = gl;
    c->bev = bev;
    c->id = a->id;
    c->dec = kv_frame_decoder_create((uint32_t)cl->node->cfg->max_frame_bytes);
    kv_frame_init(&c->frame);
    snprintf(c->addr, sizeof c->addr, "%s:%u", a->host, a->port);
    c->next = gl->pps;
    if (gl->pps) gl->pps->prev = c;
    gl->pps = c;
    kv_buf_t *b = &cl->node->scratch;
    kv_buf_clear(b);
    if (peer_encode_pushpull(b, PEER_GOSSIP_PUSHPULL, a->id, hlc_last(cl->node->hlc),
                             kv_slice(a->data, a->len),
                             (uint32_t)cl->node->cfg->max_frame_bytes) != KV_OK) {
        kv_buf_clear(b);
        gossip_on_pushpull_failed(cl->gossip, now_ms(), a->id);
        pp_close(c);
        return;
    }
    evbuffer_add(bufferevent_get_output(bev), b->data, b->len);
    kv_buf_clear(b);
    bufferevent_setcb(bev, pp_read_cb, NULL, pp_event_cb, c);
    struct timeval tv = {PUSHPULL_TIMEOUT_MS / 1000, (PUSHPULL_TIMEOUT_MS % 1000) * 1000};
    bufferevent_set_timeouts(bev, &tv, &tv);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    /* The connect may fail at once and run pp_event_cb, which frees c. */
    if (bufferevent_socket_connect_hostname(bev, cl->dns, family, a->host,
                                            a->port) != 0) {
        for (pp_conn_t *x = gl->pps; x; x = x->next)
            if (x == c) {
                gossip_on_pushpull_failed(cl->gossip, now_ms(), c->id);
                pp_close(c);
                break;
            }
    }
}

void gossip_glue_on_pushpull(node_cluster_t *cl, peer_link_t *l,
                             const kv_frame_t *f)
{
    gossip_glue_t *gl = cl->glue;
    peer_head_t head;
    kv_slice_t body;
    kv_buf_t *b = &cl->node->scratch;
    if (!gl || peer_decode_pushpull(f, &head, &body) != KV_OK) {
        metrics_counter_add(cl->m.refused[PEER_REFUSED_MALFORMED], 1);
        peer_link_reply_close(l, b);
        return;
    }
    kv_buf_t reply;
    kv_buf_init(&reply);
    kv_status_t rc = gossip_on_pushpull(cl->gossip, now_ms(), body.data, body.len,
                                        &reply);
    /* gossip logs the refusal (an event); count it on this side too */
    if (rc != KV_OK) metrics_counter_add(gl->m.pp_refused, 1);
    kv_buf_clear(b);
    if (peer_encode_pushpull(b, PEER_GOSSIP_PUSHPULL_REPLY, head.msg_id,
                             hlc_last(cl->node->hlc), kv_buf_slice(&reply),
                             (uint32_t)cl->node->cfg->max_frame_bytes) != KV_OK)
        kv_buf_clear(b);
    kv_buf_deinit(&reply);
    peer_link_reply_close(l, b);
    gossip_glue_flush(cl);
}

/* ---- UDP ---------------------------------------------------------------- */

static void udp_send(gossip_glue_t *gl, const gossip_action_t *a)
{
    struct sockaddr_storage sa;
    socklen_t len;
    if (!resolve(gl, a->host, a->port, &sa, &len)) return;
    const uint8_t *data = a->data;
    size_t dlen = a->len;
    if (gl->auth) {
        if (dlen + GOSSIP_AUTH_OVERHEAD > UDP_BUF) return;
        dlen = gossip_auth_seal(gl->auth, wall_ms(), data, dlen, gl->sealed);
        data = gl->sealed;
    }
    ssize_t n;
    do {
        n = sendto(gl->fd, data, dlen, MSG_DONTWAIT, (struct sockaddr *)&sa, len);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        KV_LOG(KV_TRACE, "gossip datagram to %s:%u not sent: %s", a->host,
               a->port, strerror(errno));
}

static void udp_read_cb(evutil_socket_t fd, short what, void *arg)
{
    gossip_glue_t *gl = arg;
    (void)what;
    for (int i = 0; i < 256; i++) {
        ssize_t n = recv(fd, gl->buf, UDP_BUF, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            break; /* EAGAIN, or an ICMP error reported on the socket */
        }
        const uint8_t *body = gl->buf;
        size_t blen = (size_t)n;
        if (gl->auth) {
            switch (gossip_auth_open(gl->auth, wall_ms(), gl->buf, (size_t)n, &body, &blen)) {
            case GOSSIP_AUTH_OK: break;
            case GOSSIP_AUTH_BAD: metrics_counter_add(gl->m.drop_auth, 1); continue;
            case GOSSIP_AUTH_STALE: metrics_counter_add(gl->m.drop_stale, 1); continue;
            case GOSSIP_AUTH_REPLAY: metrics_counter_add(gl->m.drop_replay, 1); continue;
            }
        }
        gossip_on_udp(gl->cl->gossip, now_ms(), body, blen);
    }
    gossip_glue_flush(gl->cl);
}

/* ---- timer, events, flush ---------------------------------------------- */

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    gossip_glue_t *gl = arg;
    (void)fd;
    (void)what;
    gossip_tick(gl->cl->gossip, now_ms());
    gossip_glue_flush(gl->cl);
}

static void log_event(gossip_glue_t *gl, const gossip_event_t *e)
{
    const char *t = e->text ? e->text : "";
    switch (e->kind) {
    case GOSSIP_EV_JOINED:
    case GOSSIP_EV_UPDATED:
    case GOSSIP_EV_RESTARTED:
    case GOSSIP_EV_ALIVE:
    case GOSSIP_EV_UP:
        KV_LOG(KV_INFO, "%s", t);
        break;
    case GOSSIP_EV_SUSPECT:
        KV_LOG(KV_INFO, "%s", t);
        break;
    case GOSSIP_EV_DEAD:
    case GOSSIP_EV_DOWN:
    case GOSSIP_EV_REFUTED:
        KV_LOG(KV_WARN, "%s", t);
        break;
    case GOSSIP_EV_CONFLICT:
        KV_LOG(KV_ERROR, "%s", t);
        break;
    case GOSSIP_EV_REFUSED: {
        /* a refused node retries every second: say it again only when the
         * reason changes, or every REFUSAL_LOG_MS */
        uint64_t now = now_ms();
        if (strcmp(gl->refusal, t) != 0 ||
            now - gl->refusal_logged_ms >= REFUSAL_LOG_MS) {
            KV_LOG(KV_ERROR, "%s", t);
            gl->refusal_logged_ms = now;
            snprintf(gl->refusal, sizeof gl->refusal, "%s", t);
        }
        break;
    }
    }
}

static void schedule(gossip_glue_t *gl)
{
    uint64_t due = gossip_next_timer(gl->cl->gossip), now = now_ms();
    uint64_t d = due > now ? due - now : 0;
    struct timeval tv = {(long)(d / 1000), (long)(d % 1000) * 1000};
    evtimer_add(gl->timer_ev, &tv);
}

/* Latch joined once any other member is known from a real announcement
 * (a placeholder from initial_cluster is not). */
static void check_joined(gossip_glue_t *gl)
{
    if (gl->joined) return;
    node_cluster_t *cl = gl->cl;
    uint64_t now = now_ms();
    size_t n = gossip_member_count(cl->gossip);
    for (size_t i = 0; i < n; i++) {
        gossip_member_t m;
        gossip_member_at(cl->gossip, i, now, &m);
        if (m.self || !m.known) continue;
        gl->joined = true;
        KV_LOG(KV_INFO, "joined: heard from %s (%s:%u), %" PRIu64 " ms after start; "
               "ready", m.name, m.host, (unsigned)m.port,
               (node_now_ns() - cl->node->start_ns) / 1000000u);
        return;
    }
}

void gossip_glue_flush(node_cluster_t *cl)
{
    gossip_glue_t *gl = cl->glue;
    if (!gl || gl->flushing) return;
    gl->flushing = true;
    /* Refreshing the view may change what this node announces (a joining
     * node's tokens), which makes more actions: go round until quiet. */
    for (int round = 0; round < 4; round++) {
        size_t na, ne;
        const gossip_action_t *acts = gossip_actions(cl->gossip, &na);
        const gossip_event_t *evs = gossip_events(cl->gossip, &ne);
        for (size_t i = 0; i < ne; i++) log_event(gl, &evs[i]);
        for (size_t i = 0; i < na; i++) {
            if (acts[i].kind == GOSSIP_ACT_UDP) udp_send(gl, &acts[i]);
            else pp_start(gl, &acts[i]);
        }
        gossip_actions_clear(cl->gossip);
        cluster_view_refresh(cl);
        gossip_actions(cl->gossip, &na);
        gossip_events(cl->gossip, &ne);
        if (na == 0 && ne == 0) break;
    }
    gl->flushing = false;
    check_joined(gl);
    schedule(gl);
}

bool node_cluster_joined(node_t *n)
{
    return !n->cluster || !n->cluster->glue || n->cluster->glue->joined;
}

const char *gossip_glue_refusal(const node_cluster_t *cl)
{
    return cl->gossip ? gossip_refusal(cl->gossip) : "";
}

/* ---- metrics ------------------------------------------------------------ */

static void register_metrics(gossip_glue_t *gl)
{
    metrics_t *m = gl->cl->node->metrics;
    metrics_register(m, "cairn_gossip_members", "Other members by gossip "
                     "liveness, as this node sees them.", METRIC_GAUGE, L("state"));
    metrics_register(m, "cairn_gossip_suspicions_raised_total",
                     "Members this node began to suspect.", METRIC_COUNTER, NULL);
    metrics_register(m, "cairn_gossip_suspicions_refuted_total",
                     "Suspicions about this node that it refuted.",
                     METRIC_COUNTER, NULL);
    metrics_register(m, "cairn_gossip_deaths_declared_total",
                     "Suspect members this node declared dead.", METRIC_COUNTER,
                     NULL);
    metrics_register(m, "cairn_gossip_probes_total", "SWIM probes sent.",
                     METRIC_COUNTER, NULL);
    metrics_register(m, "cairn_gossip_probes_failed_total",
                     "SWIM probes that got no ack, direct or indirect.",
                     METRIC_COUNTER, NULL);
    metrics_register(m, "cairn_gossip_bytes_sent_total", "Gossip bytes sent.",
                     METRIC_COUNTER, L("transport"));
    metrics_register(m, "cairn_gossip_bytes_received_total",
                     "Gossip bytes received.", METRIC_COUNTER, L("transport"));
    metrics_register(m, "cairn_gossip_dropped_total", "Gossip datagrams "
                     "dropped, by reason.", METRIC_COUNTER, L("reason"));
    metrics_register(m, "cairn_gossip_pushpull_refused_total",
                     "Gossip exchanges refused, by this node or its peer.",
                     METRIC_COUNTER, NULL);
    metrics_register(m, "cairn_gossip_awareness", "Lifeguard local health "
                     "score (0 = healthy; probes stretch by score + 1).",
                     METRIC_GAUGE, NULL);
    metrics_register(m, "cairn_gossip_stalls_total", "Times this node's own "
                     "loop stalled long enough to distrust its timers.",
                     METRIC_COUNTER, NULL);
    gl->m.alive = metrics_series(m, "cairn_gossip_members", L("alive"));
    gl->m.suspect = metrics_series(m, "cairn_gossip_members", L("suspect"));
    gl->m.dead = metrics_series(m, "cairn_gossip_members", L("dead"));
    gl->m.raised = metrics_series(m, "cairn_gossip_suspicions_raised_total", NULL);
    gl->m.refuted = metrics_series(m, "cairn_gossip_suspicions_refuted_total", NULL);
    gl->m.deaths = metrics_series(m, "cairn_gossip_deaths_declared_total", NULL);
    gl->m.probes = metrics_series(m, "cairn_gossip_probes_total", NULL);
    gl->m.probes_failed = metrics_series(m, "cairn_gossip_probes_failed_total", NULL);
    gl->m.sent_udp = metrics_series(m, "cairn_gossip_bytes_sent_total", L("udp"));
    gl->m.sent_tcp = metrics_series(m, "cairn_gossip_bytes_sent_total", L("tcp"));
    gl->m.recv_udp = metrics_series(m, "cairn_gossip_bytes_received_total", L("udp"));
    gl->m.recv_tcp = metrics_series(m, "cairn_gossip_bytes_received_total", L("tcp"));
    gl->m.drop_malformed = metrics_series(m, "cairn_gossip_dropped_total", L("malformed"));
    gl->m.drop_cluster = metrics_series(m, "cairn_gossip_dropped_total", L("cluster"));
    gl->m.drop_version = metrics_series(m, "cairn_gossip_dropped_total", L("version"));
    gl->m.drop_conflict = metrics_series(m, "cairn_gossip_dropped_total", L("conflict"));
    gl->m.drop_auth = metrics_series(m, "cairn_gossip_dropped_total", L("auth"));
    gl->m.drop_stale = metrics_series(m, "cairn_gossip_dropped_total", L("stale"));
    gl->m.drop_replay = metrics_series(m, "cairn_gossip_dropped_total", L("replay"));
    gl->m.pp_refused = metrics_series(m, "cairn_gossip_pushpull_refused_total", NULL);
    gl->m.awareness = metrics_series(m, "cairn_gossip_awareness", NULL);
    gl->m.stalls = metrics_series(m, "cairn_gossip_stalls_total", NULL);
}

void gossip_glue_metrics(node_cluster_t *cl)
{
    gossip_glue_t *gl = cl->glue;
    if (!gl) return;
    gossip_stats_t s;
    gossip_get_stats(cl->gossip, &s);
    gossip_stats_t *l = &gl->last;
    metrics_gauge_set(gl->m.alive, s.members_alive);
    metrics_gauge_set(gl->m.suspect, s.members_suspect);
    metrics_gauge_set(gl->m.dead, s.members_dead);
    metrics_gauge_set(gl->m.awareness, s.awareness);
    metrics_counter_mirror(gl->m.raised, s.suspicions_raised, &l->suspicions_raised);
    metrics_counter_mirror(gl->m.refuted, s.suspicions_refuted, &l->suspicions_refuted);
    metrics_counter_mirror(gl->m.deaths, s.deaths_declared, &l->deaths_declared);
    metrics_counter_mirror(gl->m.probes, s.probes, &l->probes);
    metrics_counter_mirror(gl->m.probes_failed, s.probes_failed, &l->probes_failed);
    metrics_counter_mirror(gl->m.sent_udp, s.udp_bytes_sent, &l->udp_bytes_sent);
    metrics_counter_mirror(gl->m.recv_udp, s.udp_bytes_received, &l->udp_bytes_received);
    metrics_counter_mirror(gl->m.sent_tcp, s.pushpull_bytes_sent, &l->pushpull_bytes_sent);
    metrics_counter_mirror(gl->m.recv_tcp, s.pushpull_bytes_received,
                           &l->pushpull_bytes_received);
    metrics_counter_mirror(gl->m.drop_malformed, s.dropped_malformed, &l->dropped_malformed);
    metrics_counter_mirror(gl->m.drop_cluster, s.dropped_cluster, &l->dropped_cluster);
    metrics_counter_mirror(gl->m.drop_version, s.dropped_version, &l->dropped_version);
    metrics_counter_mirror(gl->m.drop_conflict, s.dropped_conflict, &l->dropped_conflict);
    metrics_counter_mirror(gl->m.pp_refused, s.pushpull_refused, &l->pushpull_refused);
    metrics_counter_mirror(gl->m.stalls, s.stalls, &l->stalls);
    uint64_t now = now_ms();
    for (uint32_t i = 0; i < cl->npeers; i++) {
        node_peer_t *p = cl->peers[i];
        gossip_member_t m;
        if (p->m_phi && gossip_member_find(cl->gossip, p->name, now, &m) == KV_OK)
            metrics_gauge_set(p->m_phi, m.phi);
    }
}

/* ---- start / stop ------------------------------------------------------- */

/* seeds "host[:port],..." -> gossip; empty: the other founders. */
static void set_seeds(node_cluster_t *cl, const node_member_t *mem, size_t nm)
{
    const node_config_t *cfg = cl->node->cfg;
    size_t cap = nm + 1;
    for (const char *q = cfg->seeds; q && *q; q++) cap += *q == ',';
    char **hosts = kv_calloc(cap, sizeof *hosts);
    uint16_t *ports = kv_calloc(cap, sizeof *ports);
    size_t n = 0;
    if (cfg->seeds && *cfg->seeds) {
        for (const char *p = cfg->seeds; *p && n < cap;) {
            size_t len = strcspn(p, ",");
            char item[GOSSIP_MAX_NAME + 8];
            snprintf(item, sizeof item, "%.*s", (int)KV_MIN(len, sizeof item - 1), p);
            uint16_t port = cfg->peer_port;
            char *colon = strrchr(item, ':');
            /* host:port, [v6]:port; a bare IPv6 address has several colons */
            if (colon && (item[0] == '[' || strchr(item, ':') == colon)) {
                port = (uint16_t)strtoul(colon + 1, NULL, 10);
                *colon = 0;
            }
            char *h = item;
            if (h[0] == '[') {
                h++;
                h[strcspn(h, "]")] = 0;
            }
            hosts[n] = kv_strdup(h);
            ports[n++] = port;
            p += len;
            if (*p == ',') p++;
        }
    } else {
        for (size_t i = 0; i < nm; i++) {
            if (!strcmp(mem[i].name, cfg->node_name)) continue;
            hosts[n] = kv_strdup(mem[i].host);
            ports[n++] = mem[i].peer_port;
        }
    }
    gossip_set_seeds(cl->gossip, (const char *const *)hosts, ports, n);
    for (size_t i = 0; i < n; i++) kv_free(hosts[i]);
    kv_free(hosts);
    kv_free(ports);
}

kv_status_t gossip_glue_start(node_cluster_t *cl, const node_member_t *mem,
                              size_t nm)
{
    node_t *n = cl->node;
    const node_config_t *cfg = n->cfg;
    gossip_glue_t *gl = kv_calloc(1, sizeof *gl);
    gl->cl = cl;
    gl->fd = -1;
    cl->glue = gl;
    register_metrics(gl);
    struct sockaddr_storage sa;
    socklen_t len;
    if (!parse_literal(cfg->listen_address, cfg->peer_port, &sa, &len)) {
        struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC,
                                        .ai_socktype = SOCK_DGRAM,
                                        .ai_flags = EVUTIL_AI_ADDRCONFIG};
        struct evutil_addrinfo *res = NULL;
        char port[8];
        snprintf(port, sizeof port, "%u", cfg->peer_port);
        if (evutil_getaddrinfo(cfg->listen_address, port, &hints, &res) != 0 ||
            !res) {
            kv_errmsg_set("listen_address: cannot resolve '%s' for the gossip "
                          "port", cfg->listen_address);
            return KV_INVALID;
        }
        memcpy(&sa, res->ai_addr, res->ai_addrlen);
        len = (socklen_t)res->ai_addrlen;
        evutil_freeaddrinfo(res);
    }
    gl->fd = socket(sa.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (gl->fd < 0 || bind(gl->fd, (struct sockaddr *)&sa, len) != 0) {
        kv_errmsg_set("peer_port: cannot bind the gossip UDP socket on %s:%u: %s",
                      cfg->listen_address, cfg->peer_port, strerror(errno));
        return KV_IO;
    }
    int rcvbuf = 1 << 20;
    setsockopt(gl->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    gl->buf = kv_malloc(UDP_BUF);
    size_t slen;
    const uint8_t *secret = node_sec_cluster_secret(n, &slen);
    if (secret) {
        gl->auth = gossip_auth_create(secret, slen, cfg->cluster_name,
                                      cfg->gossip_replay_window_ms,
                                      node_now_ns() ^ (uint64_t)(uintptr_t)gl);
        gl->sealed = kv_malloc(UDP_BUF);
    }
    gl->udp_ev = event_new(n->base, gl->fd, EV_READ | EV_PERSIST, udp_read_cb, gl);
    gl->timer_ev = evtimer_new(n->base, timer_cb, gl);
    event_add(gl->udp_ev, NULL);
    gl->joined = nm <= 1 && !(cfg->seeds && *cfg->seeds); /* a cluster of one */
    set_seeds(cl, mem, nm);
    gossip_glue_flush(cl);
    return KV_OK;
}

void gossip_glue_stop(node_cluster_t *cl)
{
    gossip_glue_t *gl = cl->glue;
    if (!gl) return;
    while (gl->pps) pp_close(gl->pps);
    for (uint32_t i = 0; i < DNS_SLOTS; i++)
        if (gl->dns[i].req) evdns_getaddrinfo_cancel(gl->dns[i].req);
    if (gl->udp_ev) event_free(gl->udp_ev);
    if (gl->timer_ev) event_free(gl->timer_ev);
    if (gl->fd >= 0) close(gl->fd);
    kv_free(gl->buf);
    kv_free(gl->sealed);
    gossip_auth_destroy(gl->auth);
    kv_free(gl);
    cl->glue = NULL;
}
