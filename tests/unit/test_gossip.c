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
    uint64_t tokens[16];
    uint32_t ntokens;
    bool down;
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
    size_t max_udp_seen;
    uint64_t udp_delivered;
    bool no_seeds;
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

__attribute__((unused)) static int node_named(const net_t *net, const char *name)
{
    for (int i = 0; i < net->n; i++)
        if (!strcmp(net->nd[i].name, name)) return i;
    return -1;
}

static bool reachable(const net_t *net, int a, int b)
{
    return b >= 0 && !net->nd[b].down && !net->nd[a].down &&
           net->nd[a].part == net->nd[b].part;
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
            if (!net->nd[i].down && net->nd[i].g)
                t = KV_MIN(t, gossip_next_timer(net->nd[i].g));
        for (size_t i = 0; i < net->nq; i++) t = KV_MIN(t, net->q[i].at);
        if (t > until) break;
        if (t > net->now) net->now = t;
        /* deliver what is due (in order of arrival) */
        size_t k = 0;
        for (size_t i = 0; i < net->nq; i++) {
            pkt_t p = net->q[i];
            if (p.at > net->now) {
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
            if (x->down || !x->g) continue;
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

__attribute__((unused)) static void node_restart(net_t *net, int i)
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

__attribute__((unused)) static void craft_gossip(kv_buf_t *out, const fake_t *f, const kv_buf_t *upd,
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
    while (liveness_at(&net, 0, 4) == GOSSIP_ALIVE) {
        assert_true(net.now - crash < 15000);
        net_run(&net, 10);
    }
    uint64_t suspected = net.now;
    print_message("suspected %" PRIu64 " ms after the crash\n", suspected - crash);
    while (liveness_at(&net, 0, 4) != GOSSIP_DEAD) {
        assert_int_equal(liveness_at(&net, 0, 4), GOSSIP_SUSPECT);
        net_run(&net, 10);
        assert_true(net.now - suspected < 30000);
    }
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        kv_unit_test(test_gossip_config_defaults_are_memberlist_lan_and_akka_phi),
        kv_unit_test(test_gossip_create_refuses_bad_config_and_local_state),
        kv_unit_test(test_gossip_codec_round_trips_every_message),
        kv_unit_test(test_gossip_nodes_join_through_a_seed_and_converge),
        kv_unit_test(test_gossip_crashed_node_is_suspected_then_dead_in_lifeguard_bounds),
    };
    return cmocka_run_group_tests_name("gossip", tests, NULL, NULL);
}
