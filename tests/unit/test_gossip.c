/* test_gossip.c -- the gossip state machine: wire codec and its limits,
 * hostile datagrams, joining through seeds, failure detection within
 * Lifeguard's bounds, refutation, restarts, placeholders, identity
 * conflicts and refusals, announcements, phi accrual, own stalls and
 * partition healing.
 *
 * A tiny deterministic network drives 2..6 gossip_t instances: datagrams
 * take 1 ms (or are lost, or cut by a partition), push-pulls are delivered
 * at once by calling gossip_on_pushpull and feeding the reply back, and
 * each node is ticked exactly when its gossip_next_timer says. Every step
 * runs gossip_validate on every node. */
#include "test_util.h"

#include "gossip.h"
#include "gossip_int.h"

#include <math.h>

#define CLUSTER "cairn-test"
#define MAXN 8
#define MAXLOG 8192

/* ---- the harness ------------------------------------------------------- */

typedef struct logged {
    gossip_event_kind_t kind;
    char name[64];
    char text[512];
    uint64_t at;
} logged_t;

typedef struct node {
    gossip_t *g;
    char name[32], host[32], id[40], rack[16];
    uint16_t port;
    uint64_t gen;
    uint64_t *tokens; /* room for GOSSIP_MAX_TOKENS */
    uint32_t ntokens;
    bool down;
    bool paused; /* own loop stalled: not ticked, datagrams wait */
    int part;
    logged_t *log;
    size_t nlog;
    uint32_t rf;
} node_t;

typedef struct pkt {
    int to;
    uint64_t at;
    uint8_t *data;
    size_t len;
} pkt_t;

typedef struct net {
    node_t nd[MAXN];
    int n;
    uint64_t now;
    kv_rng_t rng;
    pkt_t *q;
    size_t nq, qcap;
    uint32_t loss_pct;
    bool cut[MAXN][MAXN]; /* datagrams and push-pulls from a to b are lost */
    size_t max_udp_seen;
    uint64_t udp_delivered;
    bool no_seeds;
    uint32_t pushpull_ms; /* 0: the default */
    /* each datagram sent is shown to this, when set */
    void (*inspect)(struct net *net, int from, int to, const uint8_t *p,
                    size_t len);
    uint64_t inspected;
} net_t;

static void check_valid(const gossip_t *g)
{
    kv_status_t rc = gossip_validate(g);
    if (rc != KV_OK) print_error("gossip_validate: %s\n", kv_errmsg());
    assert_int_equal(rc, KV_OK);
}

static void base_config(gossip_config_t *c, uint64_t seed)
{
    gossip_config_init(c);
    c->cluster_name = CLUSTER;
    c->replication_factor = 3;
    c->seed = seed;
}

static void local_of(const node_t *x, gossip_local_t *l)
{
    memset(l, 0, sizeof *l);
    l->name = x->name;
    l->node_id = x->id;
    l->host = x->host;
    l->port = x->port;
    l->client_port = 7070;
    l->admin_port = 7072;
    l->rack = x->rack;
    l->generation = x->gen;
    l->status = GOSSIP_NORMAL;
    l->tokens = x->tokens;
    l->ntokens = x->ntokens;
    l->load_bytes = 1000;
}

static void node_start(net_t *net, int i)
{
    node_t *x = &net->nd[i];
    gossip_config_t c;
    base_config(&c, 1000 + (uint64_t)i * 7919 + x->gen);
    c.replication_factor = x->rf;
    if (net->pushpull_ms) c.pushpull_interval_ms = net->pushpull_ms;
    gossip_local_t l;
    local_of(x, &l);
    assert_int_equal(gossip_create(&c, &l, net->now, &x->g), KV_OK);
    x->down = false;
    if (!net->no_seeds) {
        const char *h[1] = {net->nd[0].host};
        uint16_t p[1] = {net->nd[0].port};
        gossip_set_seeds(x->g, h, p, 1);
    }
    check_valid(x->g);
}

static void net_init(net_t *net, int n, uint64_t seed)
{
    memset(net, 0, sizeof *net);
    net->n = n;
    net->now = 1000;
    kv_rng_seed(&net->rng, seed);
    for (int i = 0; i < n; i++) {
        node_t *x = &net->nd[i];
        snprintf(x->name, sizeof x->name, "n%d", i + 1);
        snprintf(x->host, sizeof x->host, "10.0.0.%d", i + 1);
        snprintf(x->id, sizeof x->id, "%032x", 0xabc00 + i);
        snprintf(x->rack, sizeof x->rack, "r%d", i % 3);
        x->port = 7071;
        x->gen = 1700000000000ULL + (uint64_t)i;
        x->tokens = kv_calloc(GOSSIP_MAX_TOKENS, sizeof *x->tokens);
        x->ntokens = 16;
        for (uint32_t t = 0; t < 16; t++)
            x->tokens[t] = ((uint64_t)t << 60) + (uint64_t)i * 1000 + 1;
        x->rf = 3;
        x->log = kv_calloc(MAXLOG, sizeof *x->log);
    }
}

/* Start every node (the first is the seed). */
static void net_start(net_t *net)
{
    for (int i = 0; i < net->n; i++) node_start(net, i);
}

static void net_free(net_t *net)
{
    for (int i = 0; i < net->n; i++) {
        gossip_destroy(net->nd[i].g);
        kv_free(net->nd[i].log);
        kv_free(net->nd[i].tokens);
    }
    for (size_t i = 0; i < net->nq; i++) kv_free(net->q[i].data);
    kv_free(net->q);
}

static int node_at(const net_t *net, const char *host, uint16_t port)
{
    for (int i = 0; i < net->n; i++)
        if (!strcmp(net->nd[i].host, host) && net->nd[i].port == port) return i;
    return -1;
}

static bool reachable(const net_t *net, int a, int b)
{
    return b >= 0 && !net->nd[b].down && !net->nd[a].down && !net->nd[b].paused &&
           net->nd[a].part == net->nd[b].part && !net->cut[a][b];
}

static void log_events(node_t *x)
{
    size_t n;
    const gossip_event_t *ev = gossip_events(x->g, &n);
    for (size_t i = 0; i < n; i++) {
        assert_non_null(ev[i].text);
        assert_true(strlen(ev[i].text) > 0);
        if (x->nlog == MAXLOG) continue;
        logged_t *l = &x->log[x->nlog++];
        l->kind = ev[i].kind;
        snprintf(l->name, sizeof l->name, "%s", ev[i].name);
        snprintf(l->text, sizeof l->text, "%s", ev[i].text);
        l->at = ev[i].at_ms;
    }
}

static void route(net_t *net, int from);

static void deliver_pushpull(net_t *net, int from, const gossip_action_t *a)
{
    node_t *x = &net->nd[from];
    int to = node_at(net, a->host, a->port);
    if (!reachable(net, from, to)) {
        gossip_on_pushpull_failed(x->g, net->now, a->id);
        return;
    }
    kv_buf_t reply;
    kv_buf_init(&reply);
    gossip_on_pushpull(net->nd[to].g, net->now, a->data, a->len, &reply);
    check_valid(net->nd[to].g);
    gossip_on_pushpull_reply(x->g, net->now, a->id, reply.data, reply.len);
    kv_buf_deinit(&reply);
    check_valid(x->g);
    route(net, to);
}

/* Take a node's actions and events. */
static void route(net_t *net, int from)
{
    node_t *x = &net->nd[from];
    if (!x->g) return;
    size_t n;
    const gossip_action_t *acts = gossip_actions(x->g, &n);
    /* copy: delivering a push-pull may add actions to this node */
    gossip_action_t *copy = n ? kv_malloc(n * sizeof *copy) : NULL;
    uint8_t **bufs = n ? kv_calloc(n, sizeof *bufs) : NULL;
    char **hosts = n ? kv_calloc(n, sizeof *hosts) : NULL;
    for (size_t i = 0; i < n; i++) {
        copy[i] = acts[i];
        bufs[i] = kv_memdup(acts[i].data, acts[i].len ? acts[i].len : 1);
        hosts[i] = kv_strdup(acts[i].host);
        copy[i].data = bufs[i];
        copy[i].host = hosts[i];
        copy[i].target = NULL;
    }
    log_events(x);
    gossip_actions_clear(x->g);
    for (size_t i = 0; i < n; i++) {
        const gossip_action_t *a = &copy[i];
        if (a->kind == GOSSIP_ACT_PUSHPULL) {
            deliver_pushpull(net, from, a);
            continue;
        }
        assert_true(a->len <= GOSSIP_MAX_UDP);
        if (a->len > net->max_udp_seen) net->max_udp_seen = a->len;
        int to = node_at(net, a->host, a->port);
        if (net->inspect) {
            net->inspect(net, from, to, a->data, a->len);
            net->inspected++;
        }
        if (!reachable(net, from, to)) continue;
        if (net->loss_pct && kv_rng_below(&net->rng, 100) < net->loss_pct) continue;
        if (net->nq == net->qcap) {
            net->qcap = net->qcap ? net->qcap * 2 : 64;
            net->q = kv_realloc(net->q, net->qcap * sizeof *net->q);
        }
        pkt_t *p = &net->q[net->nq++];
        p->to = to;
        p->at = net->now + 1;
        p->data = kv_memdup(a->data, a->len);
        p->len = a->len;
    }
    for (size_t i = 0; i < n; i++) {
        kv_free(bufs[i]);
        kv_free(hosts[i]);
    }
    kv_free(copy);
    kv_free(bufs);
    kv_free(hosts);
}

static void route_all(net_t *net)
{
    for (int i = 0; i < net->n; i++)
        if (net->nd[i].g) route(net, i);
}

/* Run the network until `until` (absolute ms). */
static void net_run_to(net_t *net, uint64_t until)
{
    route_all(net);
    for (;;) {
        uint64_t t = until + 1;
        for (int i = 0; i < net->n; i++)
            if (!net->nd[i].down && !net->nd[i].paused && net->nd[i].g)
                t = KV_MIN(t, gossip_next_timer(net->nd[i].g));
        for (size_t i = 0; i < net->nq; i++)
            if (!net->nd[net->q[i].to].paused) t = KV_MIN(t, net->q[i].at);
        if (t > until) break;
        if (t > net->now) net->now = t;
        /* deliver what is due (in order of arrival) */
        size_t k = 0;
        for (size_t i = 0; i < net->nq; i++) {
            pkt_t p = net->q[i];
            if (p.at > net->now || net->nd[p.to].paused) {
                net->q[k++] = p;
                continue;
            }
            node_t *x = &net->nd[p.to];
            if (!x->down && x->g) {
                gossip_on_udp(x->g, net->now, p.data, p.len);
                net->udp_delivered++;
                check_valid(x->g);
            }
            kv_free(p.data);
        }
        net->nq = k;
        for (int i = 0; i < net->n; i++) {
            node_t *x = &net->nd[i];
            if (x->down || x->paused || !x->g) continue;
            if (gossip_next_timer(x->g) <= net->now) {
                gossip_tick(x->g, net->now);
                check_valid(x->g);
            }
        }
        route_all(net);
    }
    net->now = until;
}

static void net_run(net_t *net, uint64_t ms)
{
    net_run_to(net, net->now + ms);
}

/* Crash: the node stops answering (its state is kept for a restart). */
static void node_crash(net_t *net, int i)
{
    net->nd[i].down = true;
}

static void node_restart(net_t *net, int i)
{
    node_t *x = &net->nd[i];
    log_events(x);
    gossip_destroy(x->g);
    x->g = NULL;
    x->gen += 100000;
    node_start(net, i);
}

static bool view(const net_t *net, int at, const char *name, gossip_member_t *m)
{
    return gossip_member_find(net->nd[at].g, name, net->now, m) == KV_OK;
}

static gossip_liveness_t liveness_at(const net_t *net, int at, int of)
{
    gossip_member_t m;
    assert_true(view(net, at, net->nd[of].name, &m));
    return m.liveness;
}

/* Every up node holds every up node ALIVE, known, with its tokens. */
static bool converged(const net_t *net)
{
    for (int a = 0; a < net->n; a++) {
        if (net->nd[a].down) continue;
        for (int b = 0; b < net->n; b++) {
            if (net->nd[b].down || a == b) continue;
            gossip_member_t m;
            if (!view(net, a, net->nd[b].name, &m)) return false;
            if (m.liveness != GOSSIP_ALIVE || !m.known || !m.up) return false;
            if (m.generation != net->nd[b].gen) return false;
        }
    }
    return true;
}

static size_t count_events(const node_t *x, gossip_event_kind_t kind,
                           const char *name)
{
    size_t c = 0;
    for (size_t i = 0; i < x->nlog; i++)
        if (x->log[i].kind == kind && (!name || !strcmp(x->log[i].name, name)))
            c++;
    return c;
}

static const logged_t *find_event(const node_t *x, gossip_event_kind_t kind,
                                  const char *name)
{
    for (size_t i = 0; i < x->nlog; i++)
        if (x->log[i].kind == kind && (!name || !strcmp(x->log[i].name, name)))
            return &x->log[i];
    return NULL;
}

static gossip_stats_t stats_of(const net_t *net, int i)
{
    gossip_stats_t s;
    gossip_get_stats(net->nd[i].g, &s);
    return s;
}

/* Run until every node sees everyone; fail after `limit` ms. */
static uint64_t run_until_converged(net_t *net, uint64_t limit)
{
    uint64_t start = net->now;
    while (!converged(net)) {
        assert_true(net->now - start < limit);
        net_run(net, 100);
    }
    return net->now - start;
}

/* ---- crafting datagrams ---------------------------------------------- */

typedef struct fake {
    const char *name, *id, *host;
    uint64_t gen;
    uint16_t port;
    const char *cluster;
} fake_t;

static fake_t fake_of(const node_t *f)
{
    fake_t x = {f->name, f->id, f->host, f->gen, f->port, NULL};
    return x;
}

/* A datagram of `type` from `f` carrying raw updates. */
static void craft(kv_buf_t *out, const fake_t *f, gw_msg_t *m,
                  const kv_buf_t *upd, size_t nupd)
{
    m->h.cluster = kv_slice_str(f->cluster ? f->cluster : CLUSTER);
    m->h.name = kv_slice_str(f->name);
    m->h.node_id = kv_slice_str(f->id);
    m->h.generation = f->gen;
    m->h.host = kv_slice_str(f->host);
    m->h.port = f->port;
    msgpack_packer pk;
    gw_packer_init(&pk, out);
    gw_pack_msg_head(&pk, m);
    gw_pack_updates_hdr(&pk, (uint32_t)nupd);
    for (size_t i = 0; i < nupd; i++) kv_buf_append(out, upd[i].data, upd[i].len);
}

static void craft_gossip(kv_buf_t *out, const fake_t *f, const kv_buf_t *upd,
                         size_t nupd)
{
    gw_msg_t m;
    memset(&m, 0, sizeof m);
    m.h.type = GW_GOSSIP;
    craft(out, f, &m, upd, nupd);
}

static void suspect_upd(kv_buf_t *b, uint32_t kind, const char *name,
                        uint64_t gen, uint64_t inc, const char *from)
{
    gw_encode_suspect_dead(b, kind, kv_slice_str(name), gen, inc,
                           kv_slice_str(from));
}

static void state_for(const node_t *x, uint64_t inc, gw_state_t *st)
{
    memset(st, 0, sizeof *st);
    st->name = kv_slice_str(x->name);
    st->node_id = kv_slice_str(x->id);
    st->host = kv_slice_str(x->host);
    st->rack = kv_slice_str(x->rack);
    st->port = x->port;
    st->client_port = 7070;
    st->admin_port = 7072;
    st->generation = x->gen;
    st->incarnation = inc;
    st->status = GOSSIP_NORMAL;
    st->ntokens = x->ntokens;
    st->tokens = x->tokens;
    st->load = 1000;
}

/* ---- config and codec ------------------------------------------------- */

static void test_gossip_config_defaults_are_memberlist_lan_and_akka_phi(void **state)
{
    (void)state;
    gossip_config_t c;
    gossip_config_init(&c);
    assert_int_equal(c.probe_interval_ms, 1000);
    assert_int_equal(c.probe_timeout_ms, 500);
    assert_int_equal(c.indirect_checks, 3);
    assert_int_equal(c.suspicion_mult, 4);
    assert_int_equal(c.suspicion_max_mult, 6);
    assert_int_equal(c.retransmit_mult, 4);
    assert_int_equal(c.gossip_interval_ms, 200);
    assert_int_equal(c.gossip_fanout, 3);
    assert_int_equal(c.pushpull_interval_ms, 30000);
    assert_int_equal(c.seed_interval_ms, 1000);
    assert_int_equal(c.dead_probe_interval_ms, 5000);
    assert_int_equal(c.awareness_max, 8);
    assert_int_equal(c.load_interval_ms, 10000);
    assert_true(c.phi_threshold == 8.0);
    assert_int_equal(c.phi_window, 100);
    assert_int_equal(c.phi_min_std_ms, 100);
    assert_int_equal(c.phi_acceptable_pause_ms, 3000);
    assert_int_equal(c.phi_first_estimate_ms, 1000);
    assert_int_equal(c.phi_min_gap_ms, 50);
    assert_int_equal(c.stall_ms, 2000);
    assert_string_equal(gossip_liveness_str(GOSSIP_SUSPECT), "suspect");
    assert_string_equal(gossip_status_str(GOSSIP_LEAVING), "leaving");
}

static void test_gossip_create_refuses_bad_config_and_local_state(void **state)
{
    (void)state;
    net_t net;
    net_init(&net, 1, 1);
    gossip_config_t c;
    base_config(&c, 1);
    gossip_local_t l;
    local_of(&net.nd[0], &l);
    gossip_t *g = NULL;

    c.cluster_name = NULL;
    assert_int_equal(gossip_create(&c, &l, 0, &g), KV_INVALID);
    assert_true(strstr(kv_errmsg(), "cluster name") != NULL);
    c.cluster_name = CLUSTER;
    c.probe_timeout_ms = 2000;
    assert_int_equal(gossip_create(&c, &l, 0, &g), KV_INVALID);
    c.probe_timeout_ms = 500;
    c.stall_ms = c.gossip_interval_ms;
    assert_int_equal(gossip_create(&c, &l, 0, &g), KV_INVALID);
    assert_true(strstr(kv_errmsg(), "stall_ms") != NULL);
    c.stall_ms = 2000;
    c.gossip_fanout = 65;
    assert_int_equal(gossip_create(&c, &l, 0, &g), KV_INVALID);
    c.gossip_fanout = 3;

    l.node_id = "";
    assert_int_equal(gossip_create(&c, &l, 0, &g), KV_INVALID);
    l.node_id = net.nd[0].id;
    l.generation = 0;
    assert_int_equal(gossip_create(&c, &l, 0, &g), KV_INVALID);
    l.generation = 5;
    uint64_t bad[2] = {9, 3};
    l.tokens = bad;
    l.ntokens = 2;
    assert_int_equal(gossip_create(&c, &l, 0, &g), KV_INVALID);
    assert_true(strstr(kv_errmsg(), "ascending") != NULL);
    l.ntokens = GOSSIP_MAX_TOKENS + 1;
    assert_int_equal(gossip_create(&c, &l, 0, &g), KV_INVALID);
    l.tokens = net.nd[0].tokens;
    l.ntokens = 16;
    assert_null(g);

    assert_int_equal(gossip_create(&c, &l, 0, &g), KV_OK);
    check_valid(g);
    /* name and node id are fixed */
    gossip_local_t l2 = l;
    l2.node_id = "ffff";
    assert_int_equal(gossip_set_local(g, 1, &l2), KV_INVALID);
    l2 = l;
    l2.name = "other";
    assert_int_equal(gossip_set_local(g, 1, &l2), KV_INVALID);
    /* a placeholder under our own name */
    assert_int_equal(gossip_add_known(g, 1, &l), KV_EXISTS);
    gossip_destroy(g);
    net_free(&net);
}

static void test_gossip_codec_round_trips_every_message(void **state)
{
    (void)state;
    net_t net;
    net_init(&net, 2, 2);
    fake_t f = {"n1", net.nd[0].id, "10.0.0.1", 77, 7071, NULL};
    gw_state_t st;
    state_for(&net.nd[1], 9, &st);
    kv_buf_t upd[3];
    for (int i = 0; i < 3; i++) kv_buf_init(&upd[i]);
    gw_encode_alive(&upd[0], &st);
    suspect_upd(&upd[1], GW_UPD_SUSPECT, "n7", 5, 6, "n3");
    suspect_upd(&upd[2], GW_UPD_DEAD, "n8", 0, 0, "n4");

    uint32_t types[] = {GW_PING, GW_ACK, GW_PING_REQ, GW_NACK, GW_GOSSIP};
    for (size_t t = 0; t < KV_ARRAY_LEN(types); t++) {
        gw_msg_t m;
        memset(&m, 0, sizeof m);
        m.h.type = types[t];
        m.seq = 123456789012ULL + t;
        m.target = kv_slice_str("n2");
        m.target_host = kv_slice_str("10.0.0.2");
        m.target_port = 7171;
        if (types[t] == GW_PING) {
            m.has_notice = true;
            m.notice_kind = GW_UPD_DEAD;
            m.notice_gen = 44;
            m.notice_inc = 45;
        }
        kv_buf_t b;
        kv_buf_init(&b);
        craft(&b, &f, &m, upd, 3);
        gw_unpacked_t u;
        gw_unpacked_init(&u);
        gw_msg_t d;
        assert_int_equal(gw_decode_msg(b.data, b.len, &u, &d), GW_OK);
        assert_int_equal(d.h.type, types[t]);
        assert_true(gossip_slice_is(d.h.cluster, CLUSTER));
        assert_true(gossip_slice_is(d.h.name, "n1"));
        assert_true(gossip_slice_is(d.h.node_id, net.nd[0].id));
        assert_true(gossip_slice_is(d.h.host, "10.0.0.1"));
        assert_int_equal(d.h.generation, 77);
        assert_int_equal(d.h.port, 7071);
        if (types[t] != GW_GOSSIP) assert_int_equal(d.seq, m.seq);
        if (types[t] == GW_PING) {
            assert_true(gossip_slice_is(d.target, "n2"));
            assert_true(d.has_notice);
            assert_int_equal(d.notice_kind, GW_UPD_DEAD);
            assert_int_equal(d.notice_gen, 44);
            assert_int_equal(d.notice_inc, 45);
        }
        if (types[t] == GW_PING_REQ) {
            assert_true(gossip_slice_is(d.target, "n2"));
            assert_true(gossip_slice_is(d.target_host, "10.0.0.2"));
            assert_int_equal(d.target_port, 7171);
        }
        assert_int_equal(d.nupdates, 3);
        gw_update_t a, s, x;
        assert_int_equal(gw_update_decode(&d.updates[0], &a), GW_OK);
        assert_int_equal(gw_update_decode(&d.updates[1], &s), GW_OK);
        assert_int_equal(gw_update_decode(&d.updates[2], &x), GW_OK);
        assert_int_equal(a.kind, GW_UPD_ALIVE);
        assert_true(gossip_slice_is(a.st.name, "n2"));
        assert_true(gossip_slice_is(a.st.node_id, net.nd[1].id));
        assert_true(gossip_slice_is(a.st.rack, net.nd[1].rack));
        assert_int_equal(a.st.client_port, 7070);
        assert_int_equal(a.st.admin_port, 7072);
        assert_int_equal(a.st.generation, net.nd[1].gen);
        assert_int_equal(a.st.incarnation, 9);
        assert_int_equal(a.st.status, GOSSIP_NORMAL);
        assert_int_equal(a.st.ntokens, 16);
        for (uint32_t i = 0; i < 16; i++)
            assert_true(gw_token_at(&a.st, i) == net.nd[1].tokens[i]);
        assert_int_equal(a.st.load, 1000);
        assert_int_equal(s.kind, GW_UPD_SUSPECT);
        assert_true(gossip_slice_is(s.name, "n7") && gossip_slice_is(s.from, "n3"));
        assert_int_equal(s.generation, 5);
        assert_int_equal(s.incarnation, 6);
        assert_int_equal(x.kind, GW_UPD_DEAD);
        assert_true(gossip_slice_is(x.name, "n8") && gossip_slice_is(x.from, "n4"));
        gw_unpacked_release(&u);
        kv_buf_deinit(&b);
    }

    /* push-pull request and refusal */
    kv_buf_t pp;
    kv_buf_init(&pp);
    msgpack_packer pk;
    gw_packer_init(&pk, &pp);
    gw_state_t self;
    state_for(&net.nd[0], 3, &self);
    gw_pack_pp_head(&pk, GW_PP_REQUEST, kv_slice_str(CLUSTER), 3, &self, 1);
    st.liveness = GOSSIP_SUSPECT;
    gw_pack_state(&pk, &st, true);
    gw_unpacked_t u;
    gw_unpacked_init(&u);
    gw_pp_t p;
    assert_int_equal(gw_decode_pp(pp.data, pp.len, &u, &p), GW_OK);
    assert_int_equal(p.kind, GW_PP_REQUEST);
    assert_int_equal(p.rf, 3);
    assert_true(gossip_slice_is(p.self.name, "n1"));
    assert_int_equal(p.self.incarnation, 3);
    assert_int_equal(p.nrecords, 1);
    gw_state_t r;
    assert_int_equal(gw_state_decode(&p.records[0], true, &r), GW_OK);
    assert_true(gossip_slice_is(r.name, "n2"));
    assert_int_equal(r.liveness, GOSSIP_SUSPECT);
    assert_int_equal(r.ntokens, 16);
    gw_unpacked_release(&u);
    kv_buf_clear(&pp);
    gw_encode_refusal(&pp, KV_DENIED, "go away");
    assert_int_equal(gw_decode_pp(pp.data, pp.len, &u, &p), GW_OK);
    assert_int_equal(p.kind, GW_PP_REFUSE);
    assert_int_equal(p.status, KV_DENIED);
    assert_true(gossip_slice_is(p.message, "go away"));
    gw_unpacked_release(&u);
    kv_buf_deinit(&pp);
    for (int i = 0; i < 3; i++) kv_buf_deinit(&upd[i]);
    net_free(&net);
}

/* ---- joining ----------------------------------------------------------- */

static void test_gossip_nodes_join_through_a_seed_and_converge(void **state)
{
    (void)state;
    net_t net;
    net_init(&net, 5, 3);
    net_start(&net);
    uint64_t took = run_until_converged(&net, 10000);
    print_message("five nodes converged in %" PRIu64 " ms\n", took);
    for (int a = 0; a < net.n; a++) {
        assert_int_equal(gossip_member_count(net.nd[a].g), 5);
        gossip_stats_t s = stats_of(&net, a);
        assert_int_equal(s.members_alive, 4);
        assert_int_equal(s.members_suspect + s.members_dead, 0);
        /* every other member joined exactly once here */
        for (int b = 0; b < net.n; b++)
            if (a != b)
                assert_int_equal(count_events(&net.nd[a], GOSSIP_EV_JOINED,
                                              net.nd[b].name), 1);
        for (int b = 0; b < net.n; b++) {
            gossip_member_t m;
            assert_true(view(&net, a, net.nd[b].name, &m));
            assert_string_equal(m.node_id, net.nd[b].id);
            assert_string_equal(m.host, net.nd[b].host);
            assert_string_equal(m.rack, net.nd[b].rack);
            assert_int_equal(m.ntokens, 16);
            assert_memory_equal(m.tokens, net.nd[b].tokens, 16 * sizeof(uint64_t));
            assert_int_equal(m.self, a == b);
        }
    }
    /* and it stays that way: no false suspicion over a quiet minute */
    net_run(&net, 60000);
    assert_true(converged(&net));
    for (int a = 0; a < net.n; a++) {
        gossip_stats_t s = stats_of(&net, a);
        assert_int_equal(s.suspicions_raised, 0);
        assert_int_equal(s.probes_failed, 0);
        assert_true(s.probes >= 50);
        assert_int_equal(s.awareness, 0);
        assert_int_equal(count_events(&net.nd[a], GOSSIP_EV_DOWN, NULL), 0);
    }
    assert_true(net.max_udp_seen <= GOSSIP_MAX_UDP);
    net_free(&net);
}

static uint64_t last_sent[MAXN][MAXN], max_send_gap[MAXN][MAXN];

static void inspect_gaps(net_t *net, int from, int to, const uint8_t *p, size_t len)
{
    (void)p;
    (void)len;
    if (to < 0) return;
    if (last_sent[from][to]) {
        uint64_t gap = net->now - last_sent[from][to];
        if (gap > max_send_gap[from][to]) max_send_gap[from][to] = gap;
    }
    last_sent[from][to] = net->now;
}

static void test_gossip_steady_cluster_with_loss_has_no_false_deaths_or_downs(void **state)
{
    (void)state;
    net_t net;
    net_init(&net, MAXN, 25);
    net_start(&net);
    run_until_converged(&net, 10000);
    net_run(&net, 5000);
    memset(last_sent, 0, sizeof last_sent);
    memset(max_send_gap, 0, sizeof max_send_gap);
    net.inspect = inspect_gaps;
    net.loss_pct = 3;
    net_run(&net, 180000);
    uint64_t suspected = 0, worst = 0;
    for (int a = 0; a < net.n; a++) {
        assert_int_equal(count_events(&net.nd[a], GOSSIP_EV_DEAD, NULL), 0);
        assert_int_equal(count_events(&net.nd[a], GOSSIP_EV_DOWN, NULL), 0);
        suspected += stats_of(&net, a).suspicions_raised;
        for (int b = 0; b < net.n; b++) {
            if (a == b) continue;
            /* gossip targets go round-robin: a pass is ceil(7 / 3) = 3
             * rounds of 200 ms, and two sends to one member are at most
             * two passes apart */
            assert_true(max_send_gap[a][b] > 0);
            assert_true(max_send_gap[a][b] <= 1200);
            worst = KV_MAX(worst, max_send_gap[a][b]);
        }
    }
    print_message("3%% loss for 3 min: %" PRIu64 " suspicions raised; longest gap "
                  "between two sends to one member %" PRIu64 " ms\n", suspected, worst);
    net.loss_pct = 0;
    net_run(&net, 10000);
    assert_true(converged(&net));
    net_free(&net);
}

/* ---- failure detection ------------------------------------------------- */

static void test_gossip_crashed_node_is_suspected_then_dead_in_lifeguard_bounds(void **state)
{
    (void)state;
    net_t net;
    net_init(&net, 5, 4);
    net_start(&net);
    run_until_converged(&net, 10000);
    net_run(&net, 5000);
    uint64_t crash = net.now;
    node_crash(&net, 4);
    /* detected (first suspicion) within a few probe periods */
    uint32_t max_awareness = 0;
    while (liveness_at(&net, 0, 4) == GOSSIP_ALIVE) {
        assert_true(net.now - crash < 15000);
        net_run(&net, 10);
        for (int a = 0; a < 4; a++)
            max_awareness = KV_MAX(max_awareness, stats_of(&net, a).awareness);
    }
    uint64_t suspected = net.now;
    print_message("suspected %" PRIu64 " ms after the crash\n", suspected - crash);
    while (liveness_at(&net, 0, 4) != GOSSIP_DEAD) {
        assert_int_equal(liveness_at(&net, 0, 4), GOSSIP_SUSPECT);
        net_run(&net, 10);
        assert_true(net.now - suspected < 30000);
        for (int a = 0; a < 4; a++)
            max_awareness = KV_MAX(max_awareness, stats_of(&net, a).awareness);
    }
    /* every failed probe of the dead node came back with the
     * intermediaries' nacks, in time: the fault was not the prober's */
    assert_int_equal(max_awareness, 0);
    uint64_t dead = net.now;
    print_message("dead %" PRIu64 " ms after the suspicion\n", dead - suspected);
    /* N = 5: min = 4 x 1 x 1000 ms, max = 6 x min, k = 2; with the other
     * three confirming, the timer ends between min and max. */
    assert_true(dead - suspected >= 4000 - 20);
    assert_true(dead - suspected <= 24000 + 20);
    net_run(&net, 10000);
    int declared = 0;
    for (int a = 0; a < 4; a++) {
        assert_int_equal(liveness_at(&net, a, 4), GOSSIP_DEAD);
        gossip_member_t m;
        assert_true(view(&net, a, "n5", &m));
        assert_false(m.up);
        assert_int_equal(m.ntokens, 16); /* a dead member keeps its tokens */
        assert_non_null(find_event(&net.nd[a], GOSSIP_EV_DEAD, "n5"));
        assert_non_null(find_event(&net.nd[a], GOSSIP_EV_DOWN, "n5"));
        gossip_stats_t s = stats_of(&net, a);
        assert_int_equal(s.members_dead, 1);
        assert_int_equal(s.members_alive, 3);
        declared += (int)s.deaths_declared;
        /* nobody else was accused */
        for (int b = 0; b < 4; b++)
            assert_int_equal(liveness_at(&net, a, b), GOSSIP_ALIVE);
    }
    assert_true(declared >= 1);
    net_free(&net);
}

/* ---- datagram size ----------------------------------------------------- */

static void fill(char *buf, size_t n, char c)
{
    memset(buf, c, n);
    buf[n] = '\0';
}

static void test_gossip_largest_bare_message_fits_a_datagram(void **state)
{
    (void)state;
    char cluster[GOSSIP_MAX_NAME + 1], name[GOSSIP_MAX_NAME + 1],
        host[GOSSIP_MAX_NAME + 1], id[GW_MAX_NODE_ID + 1],
        tname[GOSSIP_MAX_NAME + 1], thost[GOSSIP_MAX_NAME + 1];
    fill(cluster, GOSSIP_MAX_NAME, 'c');
    fill(name, GOSSIP_MAX_NAME, 'n');
    fill(host, GOSSIP_MAX_NAME, 'h');
    fill(id, GW_MAX_NODE_ID, 'f');
    fill(tname, GOSSIP_MAX_NAME, 't');
    fill(thost, GOSSIP_MAX_NAME, 'u');
    fake_t f = {name, id, host, UINT64_MAX, 65535, cluster};
    uint32_t types[] = {GW_PING, GW_ACK, GW_PING_REQ, GW_NACK, GW_GOSSIP};
    for (size_t t = 0; t < KV_ARRAY_LEN(types); t++) {
        gw_msg_t m;
        memset(&m, 0, sizeof m);
        m.h.type = types[t];
        m.seq = UINT64_MAX;
        m.target = kv_slice_str(tname);
        m.target_host = kv_slice_str(thost);
        m.target_port = 65535;
        m.has_notice = true;
        m.notice_kind = GW_UPD_SUSPECT;
        m.notice_gen = m.notice_inc = UINT64_MAX;
        kv_buf_t b;
        kv_buf_init(&b);
        craft(&b, &f, &m, NULL, 0);
        /* room left for the updates array header */
        assert_true(b.len - 1 + GW_UPDATES_HDR <= GOSSIP_MAX_UDP);
        kv_buf_deinit(&b);
    }

    /* A node with the longest names probing, gossiping and ping-req-ing
     * a member with the longest name and host never goes past the limit
     * (gossip_send asserts it). */
    gossip_config_t c;
    base_config(&c, 5);
    c.cluster_name = cluster;
    uint64_t tok[16];
    for (int i = 0; i < 16; i++) tok[i] = (uint64_t)i * 77 + 1;
    gossip_local_t l = {.name = name, .node_id = id, .host = host, .port = 1,
                        .rack = cluster, .generation = 9, .tokens = tok,
                        .ntokens = 16};
    gossip_t *g;
    assert_int_equal(gossip_create(&c, &l, 0, &g), KV_OK);
    /* four members with the longest names and hosts, known (so they
     * also serve as ping-req intermediaries) */
    kv_buf_t req, reply;
    kv_buf_init(&req);
    kv_buf_init(&reply);
    msgpack_packer pk;
    gw_packer_init(&pk, &req);
    char pn[4][GOSSIP_MAX_NAME + 1];
    gw_state_t st[4];
    for (int k = 0; k < 4; k++) {
        fill(pn[k], GOSSIP_MAX_NAME, (char)('p' + k));
        memset(&st[k], 0, sizeof st[k]);
        st[k].name = kv_slice_str(pn[k]);
        st[k].node_id = kv_slice_str(id);
        st[k].host = kv_slice_str(thost);
        st[k].rack = kv_slice_str(cluster);
        st[k].port = (uint16_t)(2 + k);
        st[k].generation = 3;
        st[k].ntokens = 16;
        st[k].tokens = tok;
    }
    gw_pack_pp_head(&pk, GW_PP_REQUEST, kv_slice_str(cluster), 0, &st[0], 3);
    for (int k = 1; k < 4; k++) gw_pack_state(&pk, &st[k], true);
    assert_int_equal(gossip_on_pushpull(g, 0, req.data, req.len, &reply), KV_OK);
    assert_int_equal(gossip_member_count(g), 5);
    kv_buf_deinit(&req);
    kv_buf_deinit(&reply);
    gossip_actions_clear(g);
    size_t types_seen[6] = {0};
    for (uint64_t now = 0; now < 20000; now += 50) {
        gossip_tick(g, now);
        size_t n;
        const gossip_action_t *a = gossip_actions(g, &n);
        for (size_t i = 0; i < n; i++) {
            if (a[i].kind != GOSSIP_ACT_UDP) continue;
            assert_true(a[i].len <= GOSSIP_MAX_UDP);
            gw_unpacked_t u;
            gw_unpacked_init(&u);
            gw_msg_t d;
            assert_int_equal(gw_decode_msg(a[i].data, a[i].len, &u, &d), GW_OK);
            types_seen[d.h.type]++;
            gw_unpacked_release(&u);
        }
        gossip_actions_clear(g);
        check_valid(g);
    }
    assert_true(types_seen[GW_PING] > 0 && types_seen[GW_PING_REQ] > 0 &&
                types_seen[GW_GOSSIP] > 0);
    gossip_destroy(g);
}

/* A push-pull request from `sender` listing `nmem` made-up members. */
static void crowd_request(kv_buf_t *out, const node_t *sender, uint32_t nmem,
                          uint64_t *tok)
{
    msgpack_packer pk;
    gw_packer_init(&pk, out);
    gw_state_t self;
    state_for(sender, 0, &self);
    gw_pack_pp_head(&pk, GW_PP_REQUEST, kv_slice_str(CLUSTER), 3, &self, nmem);
    for (uint32_t i = 0; i < nmem; i++) {
        char name[32], host[32], id[40];
        snprintf(name, sizeof name, "crowd-%u", i);
        snprintf(host, sizeof host, "10.7.%u.%u", i / 200, i % 200 + 1);
        snprintf(id, sizeof id, "%032x", 0x77000 + i);
        gw_state_t st;
        memset(&st, 0, sizeof st);
        st.name = kv_slice_str(name);
        st.node_id = kv_slice_str(id);
        st.host = kv_slice_str(host);
        st.rack = kv_slice_str("r1");
        st.port = 7071;
        st.generation = 1000 + i;
        st.status = GOSSIP_NORMAL;
        st.ntokens = 16;
        st.tokens = tok;
        st.liveness = GOSSIP_ALIVE;
        gw_pack_state(&pk, &st, true);
    }
}

static void test_gossip_datagrams_pack_updates_fewest_sent_first_under_1400_bytes(void **state)
{
    (void)state;
    net_t net;
    net_init(&net, 2, 6);
    /* only gossip rounds: no probes, no push-pulls */
    gossip_config_t c;
    base_config(&c, 6);
    c.probe_interval_ms = 1000000;
    c.dead_probe_interval_ms = 0;
    c.pushpull_interval_ms = 0;
    gossip_local_t l;
    local_of(&net.nd[0], &l);
    gossip_t *g;
    assert_int_equal(gossip_create(&c, &l, net.now, &g), KV_OK);
    net.nd[0].g = g;
    uint64_t tok[16];
    for (int i = 0; i < 16; i++) tok[i] = (uint64_t)i << 58 | 5;
    kv_buf_t req, reply;
    kv_buf_init(&req);
    kv_buf_init(&reply);
    crowd_request(&req, &net.nd[1], 60, tok);
    assert_int_equal(gossip_on_pushpull(g, net.now, req.data, req.len, &reply),
                     KV_OK);
    assert_int_equal(gossip_member_count(g), 62);
    /* the reply holds everyone, far above a datagram's size */
    assert_true(reply.len > 60 * 128);
    check_valid(g);
    gossip_actions_clear(g);

    uint32_t limit = gossip_retransmit_limit(g);
    assert_int_equal(limit, 4 * 2); /* 4 x ceil(log10(63)) */
    size_t datagrams = 0, max_updates = 0;
    uint32_t sent_crowd[60] = {0}, sent_leaving = 0, sent_n2 = 0;
    int news_round = -1;
    bool fresh_first = false;
    for (int round = 0; round < 400; round++) {
        net.now += 50;
        if (round == 100) {
            /* news: it must ride on the very next datagram */
            local_of(&net.nd[0], &l);
            l.status = GOSSIP_LEAVING;
            assert_int_equal(gossip_set_local(g, net.now, &l), KV_OK);
            news_round = round;
        }
        gossip_tick(g, net.now);
        size_t n;
        const gossip_action_t *a = gossip_actions(g, &n);
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(a[i].kind, GOSSIP_ACT_UDP);
            assert_true(a[i].len <= GOSSIP_MAX_UDP);
            gw_unpacked_t u;
            gw_unpacked_init(&u);
            gw_msg_t d;
            assert_int_equal(gw_decode_msg(a[i].data, a[i].len, &u, &d), GW_OK);
            assert_int_equal(d.h.type, GW_GOSSIP);
            datagrams++;
            if (d.nupdates > max_updates) max_updates = d.nupdates;
            for (uint32_t k = 0; k < d.nupdates; k++) {
                gw_update_t up;
                assert_int_equal(gw_update_decode(&d.updates[k], &up), GW_OK);
                assert_int_equal(up.kind, GW_UPD_ALIVE);
                unsigned idx;
                if (sscanf((const char *)up.name.data, "crowd-%u", &idx) == 1 &&
                    idx < 60)
                    sent_crowd[idx]++;
                else if (gossip_slice_is(up.name, "n2"))
                    sent_n2++;
                else if (gossip_slice_is(up.name, "n1") &&
                         up.st.status == GOSSIP_LEAVING)
                    sent_leaving++;
                if (news_round >= 0 && gossip_slice_is(up.name, "n1") &&
                    up.st.status == GOSSIP_LEAVING && sent_leaving == 1 && i == 0)
                    fresh_first = true;
            }
            if (news_round >= 0 && !fresh_first && i == 0 && n > 0)
                assert_true(fresh_first); /* first datagram after the news */
            if (news_round >= 0) news_round = -2;
            gw_unpacked_release(&u);
        }
        gossip_actions_clear(g);
        check_valid(g);
    }
    print_message("%zu datagrams, up to %zu updates each\n", datagrams, max_updates);
    assert_true(max_updates >= 4); /* several alives of ~190 bytes fit */
    assert_true(max_updates <= 7); /* ...but not more than 1400 bytes hold */
    assert_true(fresh_first);
    /* every update was sent exactly `limit` times, then left the queue */
    for (int i = 0; i < 60; i++) assert_int_equal(sent_crowd[i], limit);
    assert_int_equal(sent_n2, limit);
    assert_int_equal(sent_leaving, limit);
    assert_int_equal(g->bq.live, 0);
    kv_buf_deinit(&req);
    kv_buf_deinit(&reply);
    net_free(&net);
}

static const char *big_name;
static uint64_t big_compact_seen;

/* The big member's alive only ever travels compact in a datagram. */
static void inspect_big(net_t *net, int from, int to, const uint8_t *p, size_t len)
{
    (void)net;
    (void)from;
    (void)to;
    gw_unpacked_t u;
    gw_unpacked_init(&u);
    gw_msg_t d;
    assert_int_equal(gw_decode_msg(p, len, &u, &d), GW_OK);
    for (uint32_t k = 0; k < d.nupdates; k++) {
        gw_update_t up;
        assert_int_equal(gw_update_decode(&d.updates[k], &up), GW_OK);
        if (up.kind == GW_UPD_ALIVE && gossip_slice_is(up.name, big_name)) {
            assert_true(up.st.compact);
            big_compact_seen++;
        } else if (up.kind == GW_UPD_ALIVE) {
            assert_false(up.st.compact);
        }
    }
    gw_unpacked_release(&u);
}

static void test_gossip_alive_too_big_for_a_datagram_travels_by_pushpull(void **state)
{
    (void)state;
    net_t net;
    net_init(&net, 4, 7);
    net.pushpull_ms = 10000000; /* no periodic push-pull: only seeds and discovery */
    node_t *big = &net.nd[3];
    big->ntokens = GOSSIP_MAX_TOKENS;
    for (uint32_t t = 0; t < GOSSIP_MAX_TOKENS; t++)
        big->tokens[t] = (uint64_t)t * 4503599627370495ULL + 17;
    big_name = big->name;
    big_compact_seen = 0;
    net.inspect = inspect_big;
    net_start(&net);
    run_until_converged(&net, 20000);
    for (int a = 0; a < 3; a++) {
        gossip_member_t m;
        assert_true(view(&net, a, big->name, &m));
        assert_int_equal(m.ntokens, GOSSIP_MAX_TOKENS);
        assert_true(m.tokens[GOSSIP_MAX_TOKENS - 1] == big->tokens[GOSSIP_MAX_TOKENS - 1]);
    }
    net_run(&net, 5000);

    /* a suspicion about it is refuted in time, over UDP: its compact
     * alive (digest of the tokens everyone holds) carries the refutation */
    gossip_member_t m;
    assert_true(view(&net, 0, big->name, &m));
    uint64_t inc = m.incarnation;
    kv_buf_t upd, b;
    kv_buf_init(&upd);
    kv_buf_init(&b);
    suspect_upd(&upd, GW_UPD_SUSPECT, big->name, big->gen, inc, "n2");
    fake_t f = fake_of(&net.nd[1]);
    craft_gossip(&b, &f, &upd, 1);
    uint64_t pp_before = stats_of(&net, 0).pushpull_sent;
    gossip_on_udp(net.nd[0].g, net.now, b.data, b.len);
    net_run(&net, 30000);
    assert_int_equal(stats_of(&net, 3).suspicions_refuted, 1);
    for (int a = 0; a < 3; a++) {
        assert_true(view(&net, a, big->name, &m));
        assert_int_equal(m.liveness, GOSSIP_ALIVE);
        assert_int_equal(m.incarnation, inc + 1);
        assert_int_equal(m.ntokens, GOSSIP_MAX_TOKENS);
        assert_int_equal(count_events(&net.nd[a], GOSSIP_EV_DEAD, big->name), 0);
    }
    assert_int_equal(stats_of(&net, 0).pushpull_sent, pp_before);
    assert_true(big_compact_seen > 0);

    /* its tokens change: the digest no longer matches, so the others
     * fetch the new state by push-pull */
    for (uint32_t t = 0; t < GOSSIP_MAX_TOKENS; t++) big->tokens[t] += 3;
    gossip_local_t l;
    local_of(big, &l);
    l.status = GOSSIP_LEAVING;
    assert_int_equal(gossip_set_local(big->g, net.now, &l), KV_OK);
    net_run(&net, 5000);
    for (int a = 0; a < 3; a++) {
        assert_true(view(&net, a, big->name, &m));
        assert_int_equal(m.status, GOSSIP_LEAVING);
        assert_int_equal(m.incarnation, inc + 2);
        assert_memory_equal(m.tokens, big->tokens, GOSSIP_MAX_TOKENS * sizeof(uint64_t));
        assert_non_null(find_event(&net.nd[a], GOSSIP_EV_UPDATED, big->name));
    }
    assert_true(net.inspected > 100);
    assert_true(net.max_udp_seen <= GOSSIP_MAX_UDP);
    kv_buf_deinit(&upd);
    kv_buf_deinit(&b);
    net_free(&net);
}

/* ---- hostile input ------------------------------------------------------ */

static uint64_t dropped(const gossip_stats_t *s)
{
    return s->dropped_malformed + s->dropped_cluster + s->dropped_version +
           s->dropped_conflict;
}

static void mutate(kv_rng_t *r, kv_buf_t *b)
{
    int ops = 1 + (int)kv_rng_below(r, 4);
    for (int k = 0; k < ops && b->len > 0; k++) {
        size_t at = kv_rng_below(r, b->len);
        switch (kv_rng_below(r, 6)) {
        case 0: b->data[at] ^= (uint8_t)(1u << kv_rng_below(r, 8)); break;
        case 1: b->data[at] = (uint8_t)kv_rng_next(r); break;
        case 2: b->len = at; break; /* truncate */
        case 3: /* a length or count byte made huge */
            b->data[at] = (uint8_t)(0xdc + kv_rng_below(r, 4));
            break;
        case 4: { /* duplicate a span */
            size_t n = KV_MIN(b->len - at, (size_t)kv_rng_below(r, 16));
            uint8_t tmp[16];
            memcpy(tmp, b->data + at, n);
            kv_buf_append(b, tmp, n);
            break;
        }
        default: b->data[at] = (uint8_t)(kv_rng_below(r, 2) ? 0xff : 0x00); break;
        }
    }
}

static kv_buf_t fuzz_corpus[64];
static size_t fuzz_ncorpus;

static void inspect_collect(net_t *net, int from, int to, const uint8_t *p,
                            size_t len)
{
    (void)net;
    (void)from;
    (void)to;
    if (fuzz_ncorpus == KV_ARRAY_LEN(fuzz_corpus)) return;
    kv_buf_init(&fuzz_corpus[fuzz_ncorpus]);
    kv_buf_append(&fuzz_corpus[fuzz_ncorpus++], p, len);
}

static void test_gossip_decoders_survive_garbage_and_mutated_input(void **state)
{
    (void)state;
    kv_rng_t r;
    kv_rng_seed(&r, test_seed("gossip fuzz"));
    net_t net;
    net_init(&net, 3, 8);
    net_start(&net);
    run_until_converged(&net, 10000);
    gossip_t *g = net.nd[0].g;

    /* valid datagrams and push-pull bodies to mutate: what the nodes send */
    fuzz_ncorpus = 0;
    net.inspect = inspect_collect;
    net_run(&net, 3000);
    net.inspect = NULL;
    kv_buf_t *corpus = fuzz_corpus;
    size_t ncorpus = fuzz_ncorpus;
    assert_true(ncorpus >= 32);
    uint64_t tok[16];
    for (int i = 0; i < 16; i++) tok[i] = (uint64_t)i * 3 + 1;
    kv_buf_clear(&corpus[ncorpus - 1]);
    crowd_request(&corpus[ncorpus - 1], &net.nd[1], 3, tok);
    gossip_stats_t before;
    gossip_get_stats(g, &before);
    size_t garbage = 3000, mutations = 20000;
    kv_buf_t b;
    kv_buf_init(&b);
    for (size_t i = 0; i < garbage; i++) {
        kv_buf_clear(&b);
        size_t len = kv_rng_below(&r, 1500);
        for (size_t k = 0; k < len; k++) kv_buf_append_u8(&b, (uint8_t)kv_rng_next(&r));
        gossip_on_udp(g, net.now, b.data, b.len);
    }
    gossip_stats_t mid;
    gossip_get_stats(g, &mid);
    assert_int_equal(mid.udp_received - before.udp_received, garbage);
    assert_int_equal(dropped(&mid) - dropped(&before), garbage);
    for (size_t i = 0; i < mutations; i++) {
        kv_buf_clear(&b);
        const kv_buf_t *src = &corpus[kv_rng_below(&r, ncorpus)];
        kv_buf_append(&b, src->data, src->len);
        mutate(&r, &b);
        gossip_on_udp(g, net.now, b.data, b.len);
        /* the push-pull decoders too */
        kv_buf_t reply;
        kv_buf_init(&reply);
        kv_status_t rc = gossip_on_pushpull(g, net.now, b.data, b.len, &reply);
        gw_unpacked_t u;
        gw_unpacked_init(&u);
        gw_pp_t p;
        /* whatever came in, the reply is a body the peer can read */
        assert_int_equal(gw_decode_pp(reply.data, reply.len, &u, &p), GW_OK);
        assert_int_equal(p.kind == GW_PP_REFUSE, rc != KV_OK);
        gw_unpacked_release(&u);
        kv_buf_deinit(&reply);
        if (i % 500 == 0) check_valid(g);
        gossip_actions_clear(g);
    }
    gossip_stats_t after;
    gossip_get_stats(g, &after);
    assert_int_equal(after.udp_received - before.udp_received, garbage + mutations);
    uint64_t mdrops = dropped(&after) - dropped(&mid);
    print_message("%zu mutated datagrams: %" PRIu64 " dropped (%" PRIu64
                  " malformed)\n", mutations, mdrops,
                  after.dropped_malformed - mid.dropped_malformed);
    assert_true(mdrops > mutations / 4);
    assert_true(mdrops < mutations);
    check_valid(g);
    /* and the node still works */
    net_run(&net, 5000);
    check_valid(g);
    kv_buf_deinit(&b);
    for (size_t i = 0; i < ncorpus; i++) kv_buf_deinit(&corpus[i]);
    fuzz_ncorpus = 0;
    net_free(&net);
}

static void test_gossip_other_cluster_and_version_are_dropped_and_counted(void **state)
{
    (void)state;
    net_t net;
    net_init(&net, 2, 9);
    net.no_seeds = true;
    node_start(&net, 0);
    gossip_t *g = net.nd[0].g;
    gw_state_t st;
    state_for(&net.nd[1], 0, &st);
    kv_buf_t upd, b;
    kv_buf_init(&upd);
    kv_buf_init(&b);
    gw_encode_alive(&upd, &st);

    fake_t other = {"n2", net.nd[1].id, "10.0.0.2", net.nd[1].gen, 7071, "elsewhere"};
    craft_gossip(&b, &other, &upd, 1);
    gossip_on_udp(g, net.now, b.data, b.len);
    gossip_stats_t s;
    gossip_get_stats(g, &s);
    assert_int_equal(s.dropped_cluster, 1);
    assert_int_equal(gossip_member_count(g), 1); /* nothing learned */

    /* version 2: [magic, 2, type, ...whatever follows] */
    kv_buf_clear(&b);
    msgpack_packer pk;
    gw_packer_init(&pk, &b);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint32(&pk, GW_MAGIC);
    msgpack_pack_uint32(&pk, GOSSIP_PROTO_VERSION + 1);
    msgpack_pack_uint32(&pk, GW_GOSSIP);
    msgpack_pack_str(&pk, 3);
    msgpack_pack_str_body(&pk, "new", 3);
    gossip_on_udp(g, net.now, b.data, b.len);
    gossip_get_stats(g, &s);
    assert_int_equal(s.dropped_version, 1);
    assert_int_equal(s.dropped_malformed, 0);

    /* the same datagram in our cluster is accepted */
    kv_buf_clear(&b);
    fake_t same = other;
    same.cluster = NULL;
    craft_gossip(&b, &same, &upd, 1);
    gossip_on_udp(g, net.now, b.data, b.len);
    gossip_get_stats(g, &s);
    assert_int_equal(dropped(&s), 2);
    assert_int_equal(gossip_member_count(g), 2);

    /* push-pull: other version is KV_PROTO, other cluster KV_DENIED, and
     * either way the reply is a refusal the sender can read */
    kv_buf_t reply;
    kv_buf_init(&reply);
    msgpack_packer pk2;
    kv_buf_clear(&b);
    gw_packer_init(&pk2, &b);
    msgpack_pack_array(&pk2, 3);
    msgpack_pack_uint32(&pk2, GW_MAGIC);
    msgpack_pack_uint32(&pk2, GOSSIP_PROTO_VERSION + 1);
    msgpack_pack_uint32(&pk2, GW_PP_REQUEST);
    assert_int_equal(gossip_on_pushpull(g, net.now, b.data, b.len, &reply), KV_PROTO);
    assert_true(strstr(kv_errmsg(), "version 2") != NULL);
    gw_unpacked_t u;
    gw_unpacked_init(&u);
    gw_pp_t p;
    assert_int_equal(gw_decode_pp(reply.data, reply.len, &u, &p), GW_OK);
    assert_int_equal(p.kind, GW_PP_REFUSE);
    assert_int_equal(p.status, KV_PROTO);
    gw_unpacked_release(&u);

    kv_buf_clear(&b);
    kv_buf_clear(&reply);
    gw_packer_init(&pk2, &b);
    gw_pack_pp_head(&pk2, GW_PP_REQUEST, kv_slice_str("elsewhere"), 3, &st, 0);
    assert_int_equal(gossip_on_pushpull(g, net.now, b.data, b.len, &reply), KV_DENIED);
    assert_true(strstr(kv_errmsg(), "elsewhere") != NULL);
    assert_int_equal(gw_decode_pp(reply.data, reply.len, &u, &p), GW_OK);
    assert_int_equal(p.status, KV_DENIED);
    gw_unpacked_release(&u);
    check_valid(g);
    kv_buf_deinit(&reply);
    kv_buf_deinit(&upd);
    kv_buf_deinit(&b);
    net_free(&net);
}

static void test_gossip_unknown_senders_are_asked_for_their_state_but_never_in_a_flood(void **state)
{
    (void)state;
    net_t net;
    net_init(&net, 1, 27);
    net.no_seeds = true;
    node_start(&net, 0);
    gossip_t *g = net.nd[0].g;
    gossip_actions_clear(g);
    kv_buf_t b;
    kv_buf_init(&b);
    /* one unknown sender: asked once, not again within seed_interval */
    fake_t f = {"stranger", "00112233445566778899aabbccddeeff", "10.3.0.1", 42, 7071, NULL};
    for (int k = 0; k < 3; k++) {
        kv_buf_clear(&b);
        craft_gossip(&b, &f, NULL, 0);
        gossip_on_udp(g, net.now, b.data, b.len);
    }
    size_t n;
    const gossip_action_t *a = gossip_actions(g, &n);
    size_t pp = 0;
    for (size_t i = 0; i < n; i++)
        if (a[i].kind == GOSSIP_ACT_PUSHPULL) {
            pp++;
            assert_string_equal(a[i].host, "10.3.0.1");
            assert_string_equal(a[i].target, "stranger");
        }
    assert_int_equal(pp, 1);
    gossip_actions_clear(g);
    /* a thousand made-up names at once: a bounded number of push-pulls */
    uint64_t before = stats_of(&net, 0).pushpull_sent;
    for (int k = 0; k < 1000; k++) {
        char name[32];
        snprintf(name, sizeof name, "ghost-%d", k);
        fake_t x = {name, "00112233445566778899aabbccddeeff", "10.3.0.2", 42, 7071, NULL};
        kv_buf_clear(&b);
        craft_gossip(&b, &x, NULL, 0);
        gossip_on_udp(g, net.now, b.data, b.len);
        gossip_actions_clear(g);
    }
    uint64_t sent = stats_of(&net, 0).pushpull_sent - before;
    assert_true(sent <= GOSSIP_DISCOVERY_SLOTS);
    /* and a second later, the stranger may be asked again */
    net.now += 1000;
    kv_buf_clear(&b);
    craft_gossip(&b, &f, NULL, 0);
    gossip_on_udp(g, net.now, b.data, b.len);
    assert_int_equal(stats_of(&net, 0).pushpull_sent - before, sent + 1);
    check_valid(g);
    kv_buf_deinit(&b);
    net_free(&net);
}

/* ---- suspicion ---------------------------------------------------------- */

#define NFAKE 6

/* One gossip_t among NFAKE made-up members that answer every ping (so it
 * never suspects anyone itself) and never answer push-pulls. */
typedef struct lone {
    net_t net;
    gossip_t *g;
    node_t fakes[NFAKE];
} lone_t;

static void lone_init(lone_t *l, uint64_t seed)
{
    net_init(&l->net, 1, seed);
    l->net.no_seeds = true;
    node_start(&l->net, 0);
    l->g = l->net.nd[0].g;
    msgpack_packer pk;
    kv_buf_t req, reply;
    kv_buf_init(&req);
    kv_buf_init(&reply);
    for (int i = 0; i < NFAKE; i++) {
        node_t *f = &l->fakes[i];
        memset(f, 0, sizeof *f);
        snprintf(f->name, sizeof f->name, "m%d", i + 1);
        snprintf(f->host, sizeof f->host, "10.9.0.%d", i + 1);
        snprintf(f->id, sizeof f->id, "%032x", 0xfa4e00 + i);
        f->port = 7071;
        f->gen = 500 + (uint64_t)i;
    }
    gw_packer_init(&pk, &req);
    gw_state_t st;
    state_for(&l->fakes[0], 0, &st);
    gw_pack_pp_head(&pk, GW_PP_REQUEST, kv_slice_str(CLUSTER), 3, &st, NFAKE - 1);
    for (int i = 1; i < NFAKE; i++) {
        state_for(&l->fakes[i], 0, &st);
        st.liveness = GOSSIP_ALIVE;
        gw_pack_state(&pk, &st, true);
    }
    assert_int_equal(gossip_on_pushpull(l->g, l->net.now, req.data, req.len, &reply),
                     KV_OK);
    assert_int_equal(gossip_member_count(l->g), NFAKE + 1);
    kv_buf_deinit(&req);
    kv_buf_deinit(&reply);
}

static int lone_fake_at(const lone_t *l, const char *host)
{
    for (int i = 0; i < NFAKE; i++)
        if (!strcmp(l->fakes[i].host, host)) return i;
    return -1;
}

/* Advance to `until` in 100 ms ticks; fakes ack pings, push-pulls fail. */
static void lone_run_to(lone_t *l, uint64_t until)
{
    while (l->net.now < until) {
        l->net.now = KV_MIN(until, l->net.now + 100);
        gossip_tick(l->g, l->net.now);
        check_valid(l->g);
        size_t n;
        const gossip_action_t *a = gossip_actions(l->g, &n);
        size_t nacks = 0;
        kv_buf_t acks[64];
        for (size_t i = 0; i < n; i++) {
            int f = lone_fake_at(l, a[i].host);
            if (a[i].kind == GOSSIP_ACT_PUSHPULL || f < 0) continue;
            gw_unpacked_t u;
            gw_unpacked_init(&u);
            gw_msg_t d;
            assert_int_equal(gw_decode_msg(a[i].data, a[i].len, &u, &d), GW_OK);
            if (d.h.type == GW_PING && nacks < KV_ARRAY_LEN(acks)) {
                gw_msg_t ack;
                memset(&ack, 0, sizeof ack);
                ack.h.type = GW_ACK;
                ack.seq = d.seq;
                fake_t fx = fake_of(&l->fakes[f]);
                kv_buf_init(&acks[nacks]);
                craft(&acks[nacks++], &fx, &ack, NULL, 0);
            }
            gw_unpacked_release(&u);
        }
        uint64_t ids[64];
        size_t nids = 0;
        for (size_t i = 0; i < n && nids < 64; i++)
            if (a[i].kind == GOSSIP_ACT_PUSHPULL) ids[nids++] = a[i].id;
        log_events(&l->net.nd[0]);
        gossip_actions_clear(l->g);
        for (size_t i = 0; i < nids; i++)
            gossip_on_pushpull_failed(l->g, l->net.now, ids[i]);
        for (size_t i = 0; i < nacks; i++) {
            gossip_on_udp(l->g, l->net.now, acks[i].data, acks[i].len);
            kv_buf_deinit(&acks[i]);
        }
    }
}

/* Fake `by` tells the node that fake `who` is suspect. */
static void lone_suspect(lone_t *l, int by, int who)
{
    kv_buf_t upd, b;
    kv_buf_init(&upd);
    kv_buf_init(&b);
    suspect_upd(&upd, GW_UPD_SUSPECT, l->fakes[who].name, l->fakes[who].gen, 0,
                l->fakes[by].name);
    fake_t f = fake_of(&l->fakes[by]);
    craft_gossip(&b, &f, &upd, 1);
    gossip_on_udp(l->g, l->net.now, b.data, b.len);
    check_valid(l->g);
    kv_buf_deinit(&upd);
    kv_buf_deinit(&b);
}

static uint64_t lone_death_time(lone_t *l, int who, uint64_t limit)
{
    uint64_t start = l->net.now;
    gossip_member_t m;
    for (;;) {
        assert_int_equal(gossip_member_find(l->g, l->fakes[who].name, l->net.now, &m),
                         KV_OK);
        if (m.liveness == GOSSIP_DEAD) return l->net.now;
        assert_int_equal(m.liveness, GOSSIP_SUSPECT);
        assert_true(l->net.now - start < limit);
        lone_run_to(l, l->net.now + 100);
    }
}

static void test_gossip_broken_direct_link_is_bridged_by_ping_req(void **state)
{
    (void)state;
    net_t net;
    net_init(&net, 4, 26);
    net_start(&net);
    run_until_converged(&net, 10000);
    net_run(&net, 3000);
    gossip_stats_t s0 = stats_of(&net, 0);
    /* n1 and n4 cannot reach each other; everyone else can */
    net.cut[0][3] = net.cut[3][0] = true;
    net_run(&net, 60000);
    gossip_stats_t s1 = stats_of(&net, 0);
    print_message("n1: %" PRIu64 " probes, %" PRIu64 " went to ping-req, %" PRIu64
                  " failed\n", s1.probes - s0.probes,
                  s1.indirect_probes - s0.indirect_probes,
                  s1.probes_failed - s0.probes_failed);
    /* n1's probes of n4 needed ping-req and all succeeded through it */
    assert_true(s1.indirect_probes - s0.indirect_probes >= 5);
    assert_int_equal(s1.probes_failed, s0.probes_failed);
    assert_int_equal(s1.suspicions_raised, s0.suspicions_raised);
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++)
            if (a != b) assert_int_equal(liveness_at(&net, a, b), GOSSIP_ALIVE);
    assert_int_equal(count_events(&net.nd[0], GOSSIP_EV_SUSPECT, "n4"), 0);
    net_free(&net);
}

static void test_gossip_confirmations_shrink_the_suspicion_timeout(void **state)
{
    (void)state;
    /* N = 7: min = 4 x max(1, log10 7) x 1000 = 4000 ms, max = 24000 ms,
     * k = 4 - 2 = 2. */
    const uint64_t min = 4000, max = 24000;
    uint64_t one = (uint64_t)floor((double)max - log(2.0) / log(3.0) * (double)(max - min));

    /* no confirmation: the whole max */
    lone_t l;
    lone_init(&l, 10);
    lone_run_to(&l, l.net.now + 3000);
    uint64_t t0 = l.net.now;
    lone_suspect(&l, 1, 5);
    uint64_t d = lone_death_time(&l, 5, 40000);
    print_message("no confirmation: dead after %" PRIu64 " ms\n", d - t0);
    assert_true(d - t0 >= max && d - t0 <= max + 100);
    gossip_stats_t s;
    gossip_get_stats(l.g, &s);
    assert_int_equal(s.deaths_declared, 1);
    assert_int_equal(s.suspicions_raised, 0);
    assert_non_null(find_event(&l.net.nd[0], GOSSIP_EV_DEAD, "m6"));
    gossip_destroy(l.g);
    l.net.nd[0].g = NULL;
    net_free(&l.net);

    /* one independent confirmation (the first reporter repeating itself
     * and a duplicate do not count) */
    lone_init(&l, 11);
    lone_run_to(&l, l.net.now + 3000);
    t0 = l.net.now;
    lone_suspect(&l, 1, 5);
    lone_suspect(&l, 1, 5);
    lone_run_to(&l, t0 + 500);
    lone_suspect(&l, 2, 5);
    lone_suspect(&l, 2, 5);
    d = lone_death_time(&l, 5, 40000);
    print_message("one confirmation: dead after %" PRIu64 " ms (expected %" PRIu64
                  ")\n", d - t0, one);
    assert_true(d - t0 >= one && d - t0 <= one + 100);
    gossip_destroy(l.g);
    l.net.nd[0].g = NULL;
    net_free(&l.net);

    /* k confirmations: min */
    lone_init(&l, 12);
    lone_run_to(&l, l.net.now + 3000);
    t0 = l.net.now;
    lone_suspect(&l, 1, 5);
    lone_suspect(&l, 2, 5);
    lone_suspect(&l, 3, 5);
    lone_suspect(&l, 4, 5); /* past k: changes nothing */
    d = lone_death_time(&l, 5, 40000);
    print_message("k confirmations: dead after %" PRIu64 " ms\n", d - t0);
    assert_true(d - t0 >= min && d - t0 <= min + 100);
    /* nobody else suffered */
    for (int i = 0; i < 5; i++) {
        gossip_member_t m;
        assert_int_equal(gossip_member_find(l.g, l.fakes[i].name, l.net.now, &m), KV_OK);
        assert_int_equal(m.liveness, GOSSIP_ALIVE);
    }
    gossip_destroy(l.g);
    l.net.nd[0].g = NULL;
    net_free(&l.net);
}

static void test_gossip_suspected_node_refutes_and_is_never_declared_dead(void **state)
{
    (void)state;
    net_t net;
    net_init(&net, 3, 13);
    net_start(&net);
    run_until_converged(&net, 10000);
    net_run(&net, 2000);
    gossip_member_t m;
    assert_true(view(&net, 0, "n3", &m));
    uint64_t inc = m.incarnation;
    /* n2 (falsely) tells n1 that n3 is suspect */
    kv_buf_t upd, b;
    kv_buf_init(&upd);
    kv_buf_init(&b);
    suspect_upd(&upd, GW_UPD_SUSPECT, "n3", net.nd[2].gen, inc, "n2");
    fake_t f = {"n2", net.nd[1].id, "10.0.0.2", net.nd[1].gen, 7071, NULL};
    craft_gossip(&b, &f, &upd, 1);
    gossip_on_udp(net.nd[0].g, net.now, b.data, b.len);
    assert_int_equal(liveness_at(&net, 0, 2), GOSSIP_SUSPECT);
    net_run(&net, 30000);
    /* n3 heard it and refuted with a higher incarnation */
    gossip_stats_t s = stats_of(&net, 2);
    assert_int_equal(s.suspicions_refuted, 1);
    assert_non_null(find_event(&net.nd[2], GOSSIP_EV_REFUTED, "n3"));
    assert_true(strstr(find_event(&net.nd[2], GOSSIP_EV_REFUTED, "n3")->text,
                       "refuted") != NULL);
    for (int a = 0; a < 3; a++) {
        assert_true(view(&net, a, "n3", &m));
        assert_int_equal(m.liveness, GOSSIP_ALIVE);
        assert_int_equal(m.incarnation, inc + 1);
        assert_int_equal(count_events(&net.nd[a], GOSSIP_EV_DEAD, "n3"), 0);
    }
    assert_non_null(find_event(&net.nd[0], GOSSIP_EV_SUSPECT, "n3"));
    assert_non_null(find_event(&net.nd[0], GOSSIP_EV_ALIVE, "n3"));
    /* refuting counted against n3's own health, which then recovered */
    assert_int_equal(s.awareness, 0);
    kv_buf_deinit(&upd);
    kv_buf_deinit(&b);
    net_free(&net);
}

static void test_gossip_ping_to_a_dead_node_carries_the_notice_so_it_refutes_at_once(void **state)
{
    (void)state;
    net_t net;
    net_init(&net, 2, 14);
    net.no_seeds = true;
    node_start(&net, 0);
    gossip_t *g = net.nd[0].g;
    /* n1 believes n2 (generation G, incarnation 4) is dead */
    gw_state_t st;
    state_for(&net.nd[1], 4, &st);
    kv_buf_t upd, b;
    kv_buf_init(&upd);
    kv_buf_init(&b);
    gw_encode_alive(&upd, &st);
    fake_t f = fake_of(&net.nd[1]);
    craft_gossip(&b, &f, &upd, 1);
    gossip_on_udp(g, net.now, b.data, b.len);
    kv_buf_clear(&upd);
    kv_buf_clear(&b);
    suspect_upd(&upd, GW_UPD_DEAD, "n2", net.nd[1].gen, 4, "n9");
    craft_gossip(&b, &f, &upd, 1);
    gossip_on_udp(g, net.now, b.data, b.len);
    assert_int_equal(liveness_at(&net, 0, 1), GOSSIP_DEAD);
    gossip_actions_clear(g);
    /* the next dead probe pings n2 with the notice */
    bool seen = false;
    for (int i = 0; i < 200 && !seen; i++) {
        net.now += 50;
        gossip_tick(g, net.now);
        size_t n;
        const gossip_action_t *a = gossip_actions(g, &n);
        for (size_t k = 0; k < n; k++) {
            gw_unpacked_t u;
            gw_unpacked_init(&u);
            gw_msg_t d;
            if (a[k].kind == GOSSIP_ACT_UDP &&
                gw_decode_msg(a[k].data, a[k].len, &u, &d) == GW_OK &&
                d.h.type == GW_PING && gossip_slice_is(d.target, "n2")) {
                assert_true(d.has_notice);
                assert_int_equal(d.notice_kind, GW_UPD_DEAD);
                assert_int_equal(d.notice_gen, net.nd[1].gen);
                assert_int_equal(d.notice_inc, 4);
                seen = true;
            }
            gw_unpacked_release(&u);
        }
        gossip_actions_clear(g);
    }
    assert_true(seen);
    kv_buf_deinit(&upd);
    kv_buf_deinit(&b);
    net_free(&net);
}

/* ---- restarts, placeholders, identity --------------------------------- */

static void test_gossip_restart_with_a_new_generation_resets_phi_and_is_alive(void **state)
{
    (void)state;
    net_t net;
    net_init(&net, 3, 15);
    net_start(&net);
    run_until_converged(&net, 10000);
    net_run(&net, 5000);
    node_crash(&net, 2);
    net_run(&net, 60000);
    assert_int_equal(liveness_at(&net, 0, 2), GOSSIP_DEAD);
    uint64_t old_gen = net.nd[2].gen;
    uint64_t lv = gossip_liveness_version(net.nd[0].g);
    node_restart(&net, 2);
    uint64_t restart = net.now;
    run_until_converged(&net, 15000);
    net_run(&net, 10000);
    for (int a = 0; a < 2; a++) {
        gossip_member_t m;
        assert_true(view(&net, a, "n3", &m));
        assert_true(m.generation > old_gen);
        assert_int_equal(m.liveness, GOSSIP_ALIVE);
        assert_true(m.up);
        const logged_t *e = find_event(&net.nd[a], GOSSIP_EV_RESTARTED, "n3");
        assert_non_null(e);
        assert_true(e->at >= restart);
        assert_non_null(find_event(&net.nd[a], GOSSIP_EV_ALIVE, "n3"));
        assert_non_null(find_event(&net.nd[a], GOSSIP_EV_UP, "n3"));
        /* the phi window restarted: only the new run's short gaps, so 4 s
         * of silence already convicts (a window still holding the 60 s
         * outage would not) */
        gossip_member_t later;
        assert_int_equal(gossip_member_find(net.nd[a].g, "n3",
                                            m.last_heard_ms + 4000, &later), KV_OK);
        assert_true(later.phi > 8.0);
        assert_false(later.up);
    }
    assert_true(gossip_liveness_version(net.nd[0].g) > lv);
    net_free(&net);
}

static void test_gossip_placeholders_are_probed_and_replaced_by_real_announcements(void **state)
{
    (void)state;
    net_t net;
    net_init(&net, 3, 16);
    net.no_seeds = true;
    node_start(&net, 0);
    node_start(&net, 1);
    net.nd[2].down = true; /* n3 not running yet */
    /* each running node knows the others only from configuration */
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 3; b++) {
            if (a == b) continue;
            gossip_local_t l;
            local_of(&net.nd[b], &l);
            l.node_id = NULL;
            l.generation = 0;
            l.ntokens = 0;
            assert_int_equal(gossip_add_known(net.nd[a].g, net.now, &l), KV_OK);
            assert_int_equal(gossip_add_known(net.nd[a].g, net.now, &l), KV_EXISTS);
        }
    gossip_member_t m;
    assert_true(view(&net, 0, "n2", &m));
    assert_false(m.known);
    assert_int_equal(m.generation, 0);
    assert_string_equal(m.node_id, "");
    assert_int_equal(m.liveness, GOSSIP_ALIVE);

    net_run(&net, 10000);
    /* n1 and n2 found each other through their probes */
    assert_true(view(&net, 0, "n2", &m));
    assert_true(m.known);
    assert_string_equal(m.node_id, net.nd[1].id);
    assert_int_equal(m.generation, net.nd[1].gen);
    assert_int_equal(m.ntokens, 16);
    assert_int_equal(count_events(&net.nd[0], GOSSIP_EV_JOINED, "n2"), 1);
    assert_int_equal(count_events(&net.nd[1], GOSSIP_EV_JOINED, "n1"), 1);
    /* n3 never answered: suspect, then dead */
    net_run(&net, 20000);
    assert_int_equal(liveness_at(&net, 0, 2), GOSSIP_DEAD);
    assert_true(view(&net, 0, "n3", &m));
    assert_false(m.known);
    /* n3 comes up (it knows nobody): dead probes find it */
    net.no_seeds = true;
    node_start(&net, 2);
    net_run(&net, 30000);
    assert_true(converged(&net));
    assert_true(view(&net, 0, "n3", &m));
    assert_true(m.known);
    assert_int_equal(count_events(&net.nd[0], GOSSIP_EV_JOINED, "n3"), 1);
    net_free(&net);
}

static void test_gossip_duplicate_node_name_is_refused_with_a_clear_message(void **state)
{
    (void)state;
    net_t net;
    net_init(&net, 4, 17);
    /* nd[3] is an impostor: named n2, its own node id and address */
    snprintf(net.nd[3].name, sizeof net.nd[3].name, "n2");
    for (int i = 0; i < 3; i++) node_start(&net, i);
    net.nd[3].down = true;
    run_until_converged(&net, 10000);
    net.nd[3].down = false;
    node_start(&net, 3);
    net_run(&net, 5000);

    node_t *imp = &net.nd[3];
    const char *why = gossip_refusal(imp->g);
    print_message("impostor's refusal: %s\n", why);
    char expect[256];
    snprintf(expect, sizeof expect,
             "node name n2 is already used by node id %s at 10.0.0.2:7071",
             net.nd[1].id);
    assert_non_null(strstr(why, expect));
    assert_non_null(strstr(why, "DENIED"));
    gossip_stats_t s;
    gossip_get_stats(imp->g, &s);
    assert_true(s.pushpull_refused >= 1);
    assert_non_null(find_event(imp, GOSSIP_EV_REFUSED, NULL));
    const logged_t *e = find_event(&net.nd[0], GOSSIP_EV_REFUSED, "n2");
    assert_non_null(e);
    assert_non_null(strstr(e->text, expect));
    /* the impostor joined nobody's view */
    assert_int_equal(gossip_member_count(imp->g), 1);
    for (int a = 0; a < 3; a++) {
        gossip_member_t m;
        assert_true(view(&net, a, "n2", &m));
        assert_string_equal(m.node_id, net.nd[1].id);
        assert_string_equal(m.host, "10.0.0.2");
    }
    /* its datagrams, and announcements of it relayed by others, are
     * dropped and reported once */
    gossip_stats_t before = stats_of(&net, 0);
    kv_buf_t b, upd;
    kv_buf_init(&b);
    kv_buf_init(&upd);
    fake_t f = fake_of(imp);
    craft_gossip(&b, &f, NULL, 0);
    gossip_on_udp(net.nd[0].g, net.now, b.data, b.len);
    gossip_on_udp(net.nd[0].g, net.now, b.data, b.len);
    gw_state_t st;
    state_for(imp, 7, &st);
    gw_encode_alive(&upd, &st);
    kv_buf_clear(&b);
    fake_t n3 = fake_of(&net.nd[2]);
    craft_gossip(&b, &n3, &upd, 1);
    gossip_on_udp(net.nd[0].g, net.now, b.data, b.len);
    gossip_stats_t after = stats_of(&net, 0);
    assert_int_equal(after.dropped_conflict - before.dropped_conflict, 3);
    route(&net, 0);
    e = find_event(&net.nd[0], GOSSIP_EV_CONFLICT, "n2");
    assert_non_null(e);
    assert_non_null(strstr(e->text, imp->id));
    assert_int_equal(count_events(&net.nd[0], GOSSIP_EV_CONFLICT, "n2"), 1);
    gossip_member_t m;
    assert_true(view(&net, 0, "n2", &m));
    assert_string_equal(m.node_id, net.nd[1].id);
    /* the real n2 is untouched */
    net_run(&net, 10000);
    for (int a = 0; a < 3; a++)
        for (int x = 0; x < 3; x++) assert_int_equal(liveness_at(&net, a, x), GOSSIP_ALIVE);
    kv_buf_deinit(&b);
    kv_buf_deinit(&upd);
    net_free(&net);
}

static void test_gossip_other_replication_factor_is_refused(void **state)
{
    (void)state;
    net_t net;
    net_init(&net, 3, 18);
    net.nd[1].rf = 5;
    net.nd[2].rf = 0; /* not checked */
    net_start(&net);
    net_run(&net, 5000);
    const char *why = gossip_refusal(net.nd[1].g);
    print_message("rf 5 node's refusal: %s\n", why);
    assert_non_null(strstr(why, "replication factor 5 differs from this cluster's 3"));
    assert_non_null(strstr(why, "INVALID"));
    assert_int_equal(gossip_member_count(net.nd[1].g), 1);
    assert_int_equal(stats_of(&net, 1).members_alive, 0);
    assert_non_null(find_event(&net.nd[0], GOSSIP_EV_REFUSED, "n2"));
    /* rf 0 is accepted */
    gossip_member_t m;
    assert_true(view(&net, 0, "n3", &m));
    assert_true(view(&net, 2, "n1", &m));
    assert_string_equal(gossip_refusal(net.nd[2].g), "");
    net_free(&net);
}

/* ---- announcements ----------------------------------------------------- */

static void test_gossip_status_and_token_changes_are_disseminated(void **state)
{
    (void)state;
    net_t net;
    net_init(&net, 5, 19);
    net_start(&net);
    run_until_converged(&net, 10000);
    net_run(&net, 3000);
    uint64_t rv[5];
    for (int a = 0; a < 5; a++) rv[a] = gossip_ring_version(net.nd[a].g);
    node_t *x = &net.nd[1];
    gossip_member_t before;
    assert_true(view(&net, 1, "n2", &before));
    for (uint32_t t = 0; t < 16; t++) x->tokens[t] += 99;
    gossip_local_t l;
    local_of(x, &l);
    l.status = GOSSIP_LEAVING;
    l.client_port = 9090;
    assert_int_equal(gossip_set_local(x->g, net.now, &l), KV_OK);
    gossip_member_t self;
    assert_true(view(&net, 1, "n2", &self));
    assert_int_equal(self.incarnation, before.incarnation + 1);
    assert_int_equal(self.status, GOSSIP_LEAVING);
    /* everyone has it within a couple of gossip rounds */
    net_run(&net, 2000);
    for (int a = 0; a < 5; a++) {
        gossip_member_t m;
        assert_true(view(&net, a, "n2", &m));
        assert_int_equal(m.status, GOSSIP_LEAVING);
        assert_int_equal(m.client_port, 9090);
        assert_int_equal(m.incarnation, before.incarnation + 1);
        assert_memory_equal(m.tokens, x->tokens, 16 * sizeof(uint64_t));
        assert_true(gossip_ring_version(net.nd[a].g) > rv[a]);
        if (a != 1) assert_non_null(find_event(&net.nd[a], GOSSIP_EV_UPDATED, "n2"));
    }
    /* setting the same state again announces nothing */
    assert_int_equal(gossip_set_local(x->g, net.now, &l), KV_OK);
    assert_true(view(&net, 1, "n2", &self));
    assert_int_equal(self.incarnation, before.incarnation + 1);
    net_free(&net);
}

static void test_gossip_load_alone_is_announced_at_most_every_load_interval(void **state)
{
    (void)state;
    net_t net;
    net_init(&net, 2, 20);
    net_start(&net);
    run_until_converged(&net, 10000);
    node_t *x = &net.nd[1];
    gossip_member_t m0;
    assert_true(view(&net, 1, "n2", &m0));
    uint64_t rv = gossip_ring_version(net.nd[0].g);
    uint64_t start = net.now, load = 5000, changes_seen = 0, last_load = 0;
    uint64_t last_change_at = 0, min_gap = UINT64_MAX;
    while (net.now - start < 60000) {
        gossip_local_t l;
        local_of(x, &l);
        l.load_bytes = ++load;
        assert_int_equal(gossip_set_local(x->g, net.now, &l), KV_OK);
        net_run(&net, 100);
        gossip_member_t m;
        assert_true(view(&net, 0, "n2", &m));
        if (m.load_bytes != last_load) {
            if (last_load && last_change_at)
                min_gap = KV_MIN(min_gap, net.now - last_change_at);
            if (last_load) last_change_at = net.now;
            last_load = m.load_bytes;
            changes_seen++;
        }
    }
    gossip_member_t self;
    assert_true(view(&net, 1, "n2", &self));
    print_message("load seen changing %" PRIu64 " times in 60 s; own incarnation "
                  "%" PRIu64 " -> %" PRIu64 "\n", changes_seen, m0.incarnation,
                  self.incarnation);
    /* 600 changes; announced every 10 s: 6 (+1 for the initial value) */
    assert_true(changes_seen >= 5 && changes_seen <= 8);
    assert_true(self.incarnation - m0.incarnation >= 5 &&
                self.incarnation - m0.incarnation <= 7);
    assert_true(min_gap >= 9900);
    assert_int_equal(self.load_bytes, load);
    /* load is not ring state */
    assert_int_equal(gossip_ring_version(net.nd[0].g), rv);
    assert_int_equal(count_events(&net.nd[0], GOSSIP_EV_UPDATED, "n2"), 0);
    /* unchanged load is not re-announced */
    uint64_t inc = self.incarnation;
    net_run(&net, 30000);
    assert_true(view(&net, 1, "n2", &self));
    assert_true(self.incarnation <= inc + 1);
    net_run(&net, 30000);
    gossip_member_t again;
    assert_true(view(&net, 1, "n2", &again));
    assert_int_equal(again.incarnation, self.incarnation);
    net_free(&net);
}

/* ---- phi ---------------------------------------------------------------- */

static void test_gossip_phi_follows_the_normal_model_of_heartbeats(void **state)
{
    (void)state;
    gossip_phi_t *p = gossip_phi_new(100, 100, 3000, 1000, 50);
    assert_true(gossip_phi_value(p, 12345) == 0.0);
    assert_int_equal(gossip_phi_last(p), 0);
    /* one arrival: first estimate, mean 1000, std 250 */
    gossip_phi_sample(p, 10000);
    assert_int_equal(gossip_phi_last(p), 10000);
    assert_true(fabs(gossip_phi_value(p, 10000 + 4000) - log10(2.0)) < 1e-9);
    assert_true(gossip_phi_value(p, 10000 + 1000) < 1e-6);
    /* z = 2 at 4000 + 2 x 250 */
    double z2 = -log10(0.5 * erfc(2.0 / sqrt(2.0)));
    assert_true(fabs(gossip_phi_value(p, 10000 + 4500) - z2) < 1e-9);
    /* regular 1 s heartbeats: std floored at 100 */
    uint64_t t = 10000;
    for (int i = 0; i < 30; i++) gossip_phi_sample(p, t += 1000);
    assert_true(gossip_phi_value(p, t + 1000) < 1e-6);
    assert_true(fabs(gossip_phi_value(p, t + 4000) - log10(2.0)) < 1e-9);
    double cross = 4000 + gossip_phi_z_for(8.0) * 100;
    print_message("phi reaches 8 after %.0f ms of silence (1 s heartbeats)\n", cross);
    assert_true(cross > 4500 && cross < 4600);
    assert_true(gossip_phi_value(p, t + (uint64_t)cross - 2) < 8.0);
    assert_true(gossip_phi_value(p, t + (uint64_t)cross + 2) > 8.0);
    /* min_gap: an arrival 10 ms after the last is not a sample */
    gossip_phi_sample(p, t + 10);
    assert_int_equal(gossip_phi_last(p), t);
    assert_true(fabs(gossip_phi_value(p, t + 4000) - log10(2.0)) < 1e-9);
    /* irregular arrivals widen the distribution: less suspicious */
    gossip_phi_t *q = gossip_phi_new(100, 100, 3000, 1000, 50);
    uint64_t u = 0;
    for (int i = 0; i < 30; i++) gossip_phi_sample(q, u += (i % 2 ? 200 : 1800));
    assert_true(gossip_phi_value(q, u + 4500) < gossip_phi_value(p, t + 4500));
    gossip_phi_free(q);
    /* reset forgets everything */
    gossip_phi_reset(p);
    assert_int_equal(gossip_phi_last(p), 0);
    assert_true(gossip_phi_value(p, t + 100000) == 0.0);
    gossip_phi_free(p);
}

static void test_gossip_phi_is_monotone_and_finite_for_any_gap(void **state)
{
    (void)state;
    gossip_phi_t *p = gossip_phi_new(100, 100, 3000, 1000, 50);
    uint64_t t = 1000;
    for (int i = 0; i < 20; i++) gossip_phi_sample(p, t += 200);
    double prev = -1;
    for (uint64_t dt = 0; dt < 100000; dt += 7) {
        double v = gossip_phi_value(p, t + dt);
        assert_true(isfinite(v) && v >= 0);
        assert_true(v >= prev);
        prev = v;
    }
    /* across the switch to the asymptotic form (z = 30 at 6200 ms here) */
    prev = -1;
    for (uint64_t dt = 5000; dt < 9000; dt++) {
        double v = gossip_phi_value(p, t + dt);
        assert_true(v >= prev);
        prev = v;
    }
    uint64_t huge[] = {1ULL << 32, 1ULL << 40, 1ULL << 50, UINT64_MAX - t};
    for (size_t i = 0; i < KV_ARRAY_LEN(huge); i++) {
        double v = gossip_phi_value(p, t + huge[i]);
        assert_true(isfinite(v));
        assert_true(v >= prev);
        prev = v;
    }
    print_message("phi after 2^50 ms of silence: %g\n", gossip_phi_value(p, t + (1ULL << 50)));
    /* the asymptotic tail agrees with erfc where both are exact */
    for (double z = 5; z < 30; z += 0.5) {
        double exact = -log10(0.5 * erfc(z / sqrt(2.0)));
        assert_true(fabs(gossip_phi_of_z(z) - exact) < 1e-6);
    }
    /* continuous where the two forms meet */
    assert_true(fabs(gossip_phi_of_z(30.0 + 1e-9) - gossip_phi_of_z(30.0 - 1e-9)) < 1e-6);
    assert_true(gossip_phi_of_z(30.0 + 1e-9) >= gossip_phi_of_z(30.0 - 1e-9));
    gossip_phi_free(p);
}

/* ---- own stalls -------------------------------------------------------- */

static void test_gossip_own_stall_convicts_nobody(void **state)
{
    (void)state;
    net_t net;
    net_init(&net, 3, 21);
    net_start(&net);
    run_until_converged(&net, 10000);
    net_run(&net, 10000);
    /* n1's loop stops for 30 s; datagrams to it wait in its socket */
    net.nd[0].paused = true;
    net_run(&net, 30000);
    net.nd[0].paused = false;
    net_run(&net, 30000);
    gossip_stats_t s = stats_of(&net, 0);
    assert_int_equal(s.stalls, 1);
    assert_int_equal(s.suspicions_raised, 0);
    assert_int_equal(s.probes_failed, 0);
    assert_int_equal(count_events(&net.nd[0], GOSSIP_EV_DOWN, "n2"), 0);
    assert_int_equal(count_events(&net.nd[0], GOSSIP_EV_DOWN, "n3"), 0);
    assert_int_equal(count_events(&net.nd[0], GOSSIP_EV_SUSPECT, "n2"), 0);
    assert_int_equal(count_events(&net.nd[0], GOSSIP_EV_SUSPECT, "n3"), 0);
    /* the others did see n1 go quiet; n1 refuted and all is well again */
    assert_true(count_events(&net.nd[1], GOSSIP_EV_SUSPECT, "n1") >= 1);
    assert_true(stats_of(&net, 0).suspicions_refuted >= 1);
    assert_true(converged(&net));

    /* and a bare late tick: the suspicion timer is pushed back */
    lone_t l;
    lone_init(&l, 22);
    lone_run_to(&l, l.net.now + 3000);
    uint64_t t0 = l.net.now;
    lone_suspect(&l, 1, 5); /* dies at t0 + 24 s unless pushed back */
    lone_run_to(&l, t0 + 10000);
    gossip_tick(l.g, t0 + 25000); /* a 15 s stall */
    gossip_member_t m;
    assert_int_equal(gossip_member_find(l.g, "m6", t0 + 25000, &m), KV_OK);
    assert_int_equal(m.liveness, GOSSIP_SUSPECT);
    assert_true(m.up);
    l.net.now = t0 + 25000;
    uint64_t d = lone_death_time(&l, 5, 40000);
    print_message("suspicion after a 15 s stall ended %" PRIu64 " ms after it began\n",
                  d - t0);
    assert_true(d - t0 >= 24000 + 15000 && d - t0 <= 24000 + 15000 + 100);
    gossip_stats_t ls;
    gossip_get_stats(l.g, &ls);
    assert_int_equal(ls.stalls, 1);
    gossip_destroy(l.g);
    l.net.nd[0].g = NULL;
    net_free(&l.net);
    net_free(&net);
}

/* ---- partitions ---------------------------------------------------------- */

static void test_gossip_dead_members_are_probed_and_a_healed_partition_merges(void **state)
{
    (void)state;
    net_t net;
    net_init(&net, 4, 23);
    net_start(&net);
    run_until_converged(&net, 10000);
    net_run(&net, 5000);
    net.nd[2].part = net.nd[3].part = 1;
    net_run(&net, 60000);
    /* each side holds the other dead, itself alive */
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++) {
            if (a == b) continue;
            bool same = net.nd[a].part == net.nd[b].part;
            assert_int_equal(liveness_at(&net, a, b), same ? GOSSIP_ALIVE : GOSSIP_DEAD);
        }
    net.nd[2].part = net.nd[3].part = 0;
    uint64_t took = run_until_converged(&net, 30000);
    print_message("the healed partition merged in %" PRIu64 " ms\n", took);
    size_t refuted = 0;
    for (int a = 0; a < 4; a++) {
        refuted += stats_of(&net, a).suspicions_refuted;
        for (int b = 0; b < 4; b++)
            if (a != b && net.nd[a].part == net.nd[b].part) continue;
    }
    assert_true(refuted >= 4);
    assert_non_null(find_event(&net.nd[0], GOSSIP_EV_ALIVE, "n3"));
    assert_non_null(find_event(&net.nd[0], GOSSIP_EV_UP, "n3"));
    net_run(&net, 20000);
    assert_true(converged(&net));
    net_free(&net);
}

static void test_gossip_isolated_node_loses_health_and_regains_it(void **state)
{
    (void)state;
    net_t net;
    net_init(&net, 4, 24);
    net_start(&net);
    run_until_converged(&net, 10000);
    net_run(&net, 5000);
    gossip_stats_t s0 = stats_of(&net, 0);
    net.nd[0].part = 1; /* n1 alone: no acks, no nacks */
    net_run(&net, 30000);
    gossip_stats_t s1 = stats_of(&net, 0);
    print_message("isolated: awareness %u, %" PRIu64 " probes in 30 s\n",
                  s1.awareness, s1.probes - s0.probes);
    /* it rose with each probe whose ping-reqs got no nack, until nobody
     * was left ALIVE to ask */
    assert_true(s1.awareness >= 2);
    /* the probe period stretched: fewer than 30 probes */
    assert_true(s1.probes - s0.probes < 20);
    assert_true(s1.indirect_probes > s0.indirect_probes);
    net.nd[0].part = 0;
    run_until_converged(&net, 60000);
    net_run(&net, 30000);
    assert_int_equal(stats_of(&net, 0).awareness, 0);
    net_free(&net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        kv_unit_test(test_gossip_config_defaults_are_memberlist_lan_and_akka_phi),
        kv_unit_test(test_gossip_create_refuses_bad_config_and_local_state),
        kv_unit_test(test_gossip_codec_round_trips_every_message),
        kv_unit_test(test_gossip_nodes_join_through_a_seed_and_converge),
        kv_unit_test(test_gossip_crashed_node_is_suspected_then_dead_in_lifeguard_bounds),
        kv_unit_test(test_gossip_steady_cluster_with_loss_has_no_false_deaths_or_downs),
        kv_unit_test(test_gossip_largest_bare_message_fits_a_datagram),
        kv_unit_test(test_gossip_datagrams_pack_updates_fewest_sent_first_under_1400_bytes),
        kv_unit_test(test_gossip_alive_too_big_for_a_datagram_travels_by_pushpull),
        kv_unit_test(test_gossip_decoders_survive_garbage_and_mutated_input),
        kv_unit_test(test_gossip_other_cluster_and_version_are_dropped_and_counted),
        kv_unit_test(test_gossip_unknown_senders_are_asked_for_their_state_but_never_in_a_flood),
        kv_unit_test(test_gossip_broken_direct_link_is_bridged_by_ping_req),
        kv_unit_test(test_gossip_confirmations_shrink_the_suspicion_timeout),
        kv_unit_test(test_gossip_suspected_node_refutes_and_is_never_declared_dead),
        kv_unit_test(test_gossip_ping_to_a_dead_node_carries_the_notice_so_it_refutes_at_once),
        kv_unit_test(test_gossip_restart_with_a_new_generation_resets_phi_and_is_alive),
        kv_unit_test(test_gossip_placeholders_are_probed_and_replaced_by_real_announcements),
        kv_unit_test(test_gossip_duplicate_node_name_is_refused_with_a_clear_message),
        kv_unit_test(test_gossip_other_replication_factor_is_refused),
        kv_unit_test(test_gossip_status_and_token_changes_are_disseminated),
        kv_unit_test(test_gossip_load_alone_is_announced_at_most_every_load_interval),
        kv_unit_test(test_gossip_phi_follows_the_normal_model_of_heartbeats),
        kv_unit_test(test_gossip_phi_is_monotone_and_finite_for_any_gap),
        kv_unit_test(test_gossip_own_stall_convicts_nobody),
        kv_unit_test(test_gossip_dead_members_are_probed_and_a_healed_partition_merges),
        kv_unit_test(test_gossip_isolated_node_loses_health_and_regains_it),
    };
    return cmocka_run_group_tests_name("gossip", tests, NULL, NULL);
}
