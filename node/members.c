/* members.c -- the node's view of the cluster, kept in line with gossip:
 * member slots, the ring built from the members' announced tokens, and
 * this node's saved membership state.
 *
 * DESIGN  Gossip (gossip/) owns membership; this file follows it. After
 *         every gossip input the glue calls cluster_view_refresh, which
 *           - gives each member gossip names a slot (node_peer_t) the
 *             first time, and starts dialling it (peer.c);
 *           - copies address, ports, node id, rack and status into the
 *             slot, redialling when the address changed;
 *           - when gossip's ring version moved, rebuilds the ring from the
 *             members whose status is NORMAL or LEAVING -- DEAD members
 *             keep their tokens: liveness never changes the ring;
 *           - copies each member's "up" (not DEAD, phi below the
 *             threshold) into the slot, which peer_usable combines with
 *             the connection's own state.
 *         A node that joins through seeds (not in initial_cluster) has
 *         no tokens at first. Once it has heard from the cluster for a
 *         second (the seeds' view has had time to arrive), it chooses
 *         tokens against that ring with ring_allocate_tokens, saves them,
 *         and announces them with status JOINING. It stays JOINING -- in
 *         everyone's view, owning no ranges -- until bootstrap streaming
 *         moves it to NORMAL (not built yet).
 *
 *         data_dir/cluster.state holds what must survive a restart: the
 *         last generation (each start takes a larger one, so the cluster
 *         tells a restart from an old message), the status, and the tokens
 *         of a node that chose its own. Written to a temporary file,
 *         synced, renamed, directory synced.
 *
 * INVARIANTS (1) slots are never freed or reordered while the node runs;
 *            (2) cl->ring_slot[i] is the slot of ring node i for the ring
 *            in cl->ring; (3) a slot's gossip_up is gossip's up as of the
 *            last refresh.
 * THREADING  Loop thread only.
 */
#define KV_LOG_MODULE "members"
#include "cluster_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xxhash.h>

#define L(...) ((const char *const[]){__VA_ARGS__, NULL})

#define JOIN_SETTLE_MS 1000u /* view age before a joining node picks tokens */

static uint64_t now_ms(void) { return node_now_ns() / 1000000u; }

static char *dup_str(const char *s) { return kv_strdup(s ? s : ""); }

node_peer_t *cluster_peer_find(node_cluster_t *cl, const char *name)
{
    for (uint32_t i = 0; i < cl->npeers; i++)
        if (!strcmp(cl->peers[i]->name, name)) return cl->peers[i];
    return NULL;
}

static node_peer_t *slot_new(node_cluster_t *cl, const gossip_member_t *m)
{
    if (cl->npeers == cl->peers_cap) {
        cl->peers_cap = cl->peers_cap ? cl->peers_cap * 2 : 8;
        cl->peers = kv_realloc(cl->peers, cl->peers_cap * sizeof *cl->peers);
    }
    node_peer_t *p = kv_calloc(1, sizeof *p);
    p->cl = cl;
    p->idx = cl->npeers;
    p->name = dup_str(m->name);
    p->host = dup_str(m->host);
    p->rack = dup_str(m->rack);
    p->peer_port = m->port;
    p->self = m->self;
    p->gossip_up = m->up;
    cl->peers[cl->npeers++] = p;
    if (m->self) {
        cl->self = p->idx;
        p->up = true;
    } else {
        metrics_t *mt = cl->node->metrics;
        p->m_up = metrics_series(mt, "cairn_peer_up", L(p->name));
        p->m_sent = metrics_series(mt, "cairn_peer_messages_sent_total", L(p->name));
        p->m_recv = metrics_series(mt, "cairn_peer_messages_received_total",
                                   L(p->name));
        p->m_phi = metrics_series(mt, "cairn_gossip_phi", L(p->name));
        metrics_gauge_set(p->m_up, 0);
    }
    return p;
}

/* Copy gossip's record into the slot; true when the address changed. */
static bool slot_update(node_peer_t *p, const gossip_member_t *m)
{
    bool moved = strcmp(p->host, m->host) != 0 || p->peer_port != m->port;
    if (moved) {
        kv_free(p->host);
        p->host = dup_str(m->host);
        p->peer_port = m->port;
    }
    if (strcmp(p->rack, m->rack) != 0) {
        kv_free(p->rack);
        p->rack = dup_str(m->rack);
    }
    if (m->node_id && m->node_id[0])
        snprintf(p->node_id, sizeof p->node_id, "%s", m->node_id);
    if (m->client_port) p->client_port = m->client_port;
    if (m->admin_port) p->admin_port = m->admin_port;
    if (!p->self) p->load_bytes = m->load_bytes;
    p->status = m->status;
    return moved;
}

static uint64_t ring_digest_of(const ring_t *ring)
{
    XXH3_state_t *st = XXH3_createState();
    XXH3_64bits_reset(st);
    uint32_t rf = ring_replication_factor(ring);
    XXH3_64bits_update(st, &rf, sizeof rf);
    for (uint32_t i = 0; i < ring_node_count(ring); i++) {
        const char *name = ring_node_name(ring, i), *rack = ring_node_rack(ring, i);
        XXH3_64bits_update(st, name, strlen(name) + 1);
        XXH3_64bits_update(st, rack, strlen(rack) + 1);
        const uint64_t *t;
        size_t nt = ring_node_tokens(ring, i, &t);
        XXH3_64bits_update(st, t, nt * sizeof *t);
    }
    uint64_t d = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    return d;
}

/* A member that was seen LEFT and comes back under the same node id (a
 * decommissioned or removed node restarted with its old data) is kept out
 * of the ring: its data is stale and its ranges belong to others now. */
static bool came_back(node_peer_t *p, const gossip_member_t *m)
{
    if (m->status == GOSSIP_LEFT) {
        if (m->node_id && m->node_id[0])
            snprintf(p->left_id, sizeof p->left_id, "%s", m->node_id);
        return false;
    }
    return p->left_id[0] && m->node_id && !strcmp(p->left_id, m->node_id);
}

static bool owns_ranges(const gossip_member_t *m)
{
    return (m->status == GOSSIP_NORMAL || m->status == GOSSIP_LEAVING) &&
           m->ntokens > 0;
}

/* Members by generation, newest first: a node that took over a dead one's
 * tokens (--replace) started after it, so it wins them. */
static int by_generation(const void *a, const void *b)
{
    const uint64_t *x = a, *y = b; /* [generation, member index] */
    if (x[0] != y[0]) return x[0] > y[0] ? -1 : 1;
    return x[1] < y[1] ? -1 : x[1] > y[1];
}

/* Build the ring from the members that own ranges. A member whose tokens
 * collide with another's is left out: the newer generation keeps them
 * (a replacement), otherwise loudly. */
static void ring_rebuild(node_cluster_t *cl, uint64_t now)
{
    ring_t *ring = ring_create(ring_replication_factor(cl->ring));
    size_t n = gossip_member_count(cl->gossip);
    uint32_t *slot_of = kv_calloc(n ? n : 1, sizeof *slot_of);
    uint64_t (*order)[2] = kv_calloc(n ? n : 1, sizeof *order);
    uint32_t nr = 0;
    for (uint32_t i = 0; i < cl->npeers; i++) cl->peers[i]->in_ring = false;
    for (size_t i = 0; i < n; i++) {
        gossip_member_t m;
        gossip_member_at(cl->gossip, i, now, &m);
        order[i][0] = m.generation;
        order[i][1] = i;
    }
    qsort(order, n, sizeof *order, by_generation);
    for (size_t k = 0; k < n; k++) {
        gossip_member_t m;
        gossip_member_at(cl->gossip, (size_t)order[k][1], now, &m);
        node_peer_t *p = cluster_peer_find(cl, m.name);
        if (!p) continue;
        bool back = came_back(p, &m);
        if (!owns_ranges(&m)) continue;
        if (back) {
            KV_LOG(KV_ERROR, "ring: %s (node id %s) left the ring and came back "
                   "with its old data; it stays out (wipe its data_dir to add it "
                   "again)", m.name, m.node_id);
            continue;
        }
        kv_status_t rc = ring_add_node(ring, m.name, m.rack, m.tokens, m.ntokens);
        if (rc == KV_EXISTS && m.liveness == GOSSIP_DEAD) {
            KV_LOG(KV_INFO, "ring: dead %s's tokens belong to a newer node now", m.name);
            continue;
        }
        if (rc != KV_OK) {
            KV_LOG(KV_ERROR, "ring: cannot place %s (%u tokens): %s; it owns "
                   "no ranges on this node until that is resolved", m.name,
                   m.ntokens, kv_status_str(rc));
            continue;
        }
        slot_of[nr++] = p->idx;
        p->in_ring = true;
    }
    kv_free(order);
    /* ring_add_node appended in that order: ring index i is slot_of[i] */
    uint64_t digest = ring_digest_of(ring);
    bool changed = digest != cl->ring_digest;
    ring_destroy(cl->ring);
    cl->ring = ring;
    kv_free(cl->ring_slot);
    cl->ring_slot = slot_of;
    cl->ring_digest = digest;
    if (changed)
        KV_LOG(KV_INFO, "ring: %u node(s) own ranges, replication factor %u, "
               "%zu tokens, digest %016" PRIx64, ring_node_count(ring),
               ring_replica_count(ring), ring_vnode_count(ring), digest);
}

/* The ring once every change announced now is done: joining nodes added
 * (or swapped for the dead node whose tokens they took), leaving ones
 * removed. NULL when nothing is changing. */
static void future_rebuild(node_cluster_t *cl, uint64_t now)
{
    if (cl->future) ring_destroy(cl->future);
    kv_free(cl->future_slot);
    cl->future = NULL;
    cl->future_slot = NULL;
    ring_t *f = ring_clone(cl->ring);
    bool any = false;
    size_t n = gossip_member_count(cl->gossip);
    for (size_t i = 0; i < n; i++) {
        gossip_member_t m;
        gossip_member_at(cl->gossip, i, now, &m);
        uint32_t idx;
        bool in_cur = ring_node_find(cl->ring, m.name, &idx) == KV_OK;
        if (m.status == GOSSIP_LEAVING && in_cur) {
            ring_remove_node(f, m.name);
            any = true;
        } else if (m.status == GOSSIP_JOINING && m.ntokens > 0 && !in_cur) {
            node_peer_t *p = cluster_peer_find(cl, m.name);
            if (p && came_back(p, &m)) continue;
            /* taking a dead node's tokens: that node goes */
            uint32_t owner = ring_primary(f, m.tokens[0]);
            const uint64_t *ot;
            size_t no = owner != RING_NO_NODE ? ring_node_tokens(f, owner, &ot) : 0;
            if (no == m.ntokens && !memcmp(ot, m.tokens, no * sizeof *ot))
                ring_remove_node(f, ring_node_name(f, owner));
            kv_status_t rc = ring_add_node(f, m.name, m.rack, m.tokens, m.ntokens);
            if (rc != KV_OK) {
                KV_LOG(KV_ERROR, "ring: joining %s's tokens do not fit the ring (%s)",
                       m.name, kv_status_str(rc));
                continue;
            }
            any = true;
        }
    }
    if (!any) {
        ring_destroy(f);
        return;
    }
    uint32_t nf = ring_node_count(f);
    cl->future_slot = kv_calloc(nf ? nf : 1, sizeof *cl->future_slot);
    for (uint32_t i = 0; i < nf; i++) {
        node_peer_t *p = cluster_peer_find(cl, ring_node_name(f, i));
        cl->future_slot[i] = p ? p->idx : UINT32_MAX;
    }
    cl->future = f;
    KV_LOG(KV_INFO, "ring: a change is in progress: writes also go to the %u node(s) "
           "of the ring it leads to", nf);
}

/* A joining node chooses its tokens once it has seen the cluster. */
static void maybe_choose_tokens(node_cluster_t *cl, uint64_t now)
{
    if (!cl->need_tokens) return;
    gossip_stats_t s;
    gossip_get_stats(cl->gossip, &s);
    if (s.members_alive == 0) return;
    if (!cl->view_since_ms) cl->view_since_ms = now;
    if (now - cl->view_since_ms < JOIN_SETTLE_MS) return;
    const node_config_t *cfg = cl->node->cfg;
    /* one ring change at a time: wait for another node's to finish */
    for (size_t i = 0; i < gossip_member_count(cl->gossip); i++) {
        gossip_member_t m;
        gossip_member_at(cl->gossip, i, now, &m);
        if (m.self || !((m.status == GOSSIP_JOINING && m.ntokens) ||
                        m.status == GOSSIP_LEAVING))
            continue;
        if (now >= cl->join_wait_log_ms) {
            KV_LOG(KV_WARN, "joining: waiting for %s's ring change (%s) to finish "
                   "first", m.name, gossip_status_str(m.status));
            cl->join_wait_log_ms = now + 10000;
        }
        return;
    }
    const char *replace = cfg->replace_node && *cfg->replace_node ? cfg->replace_node
                                                                  : NULL;
    const char *replaced = NULL;
    uint32_t ntokens = cfg->num_tokens;
    uint64_t *tokens = NULL;
    kv_status_t rc;
    if (replace) {
        /* take a dead member's tokens: it must be in the ring and dead */
        gossip_member_t x;
        bool found = false;
        for (size_t i = 0; i < gossip_member_count(cl->gossip) && !found; i++) {
            gossip_member_at(cl->gossip, i, now, &x);
            found = !x.self && (!strcmp(x.name, replace) ||
                                (x.node_id && !strcmp(x.node_id, replace)));
        }
        uint32_t idx;
        if (!found || !x.known || ring_node_find(cl->ring, x.name, &idx) != KV_OK) {
            if (now >= cl->join_wait_log_ms) {
                KV_LOG(KV_WARN, "replace_node %s: no such member in the ring (yet); "
                       "waiting", replace);
                cl->join_wait_log_ms = now + 10000;
            }
            return;
        }
        if (x.liveness != GOSSIP_DEAD) {
            char why[400];
            snprintf(why, sizeof why, "cannot replace %s: it is %s, not dead (stop it "
                     "and wait until cairn status shows it DN)", x.name,
                     gossip_liveness_str(x.liveness));
            if (strcmp(ops_refusal(cl), why)) KV_LOG(KV_ERROR, "%s", why);
            ops_refuse(cl, why);
            return;
        }
        ops_refuse(cl, "");
        ntokens = x.ntokens;
        tokens = kv_memdup(x.tokens, ntokens * sizeof *tokens);
        replaced = cluster_peer_find(cl, x.name)->name;
    } else {
        tokens = kv_calloc(ntokens, sizeof *tokens);
        rc = ring_allocate_tokens(cl->ring, cfg->cluster_name, cfg->node_name,
                                  cfg->rack, ntokens, tokens);
        if (rc != KV_OK) {
            KV_LOG(KV_ERROR, "cannot choose tokens against the cluster's ring: %s",
                   kv_status_str(rc));
            kv_free(tokens);
            return;
        }
    }
    /* without bootstrap the node owns its ranges at once, empty */
    bool stream = replaced || strcmp(cfg->auto_bootstrap, "off") != 0;
    gossip_status_t status = stream ? GOSSIP_JOINING : GOSSIP_NORMAL;
    node_saved_t sv = {.generation = cl->generation, .status = status,
                       .tokens = tokens, .ntokens = ntokens};
    rc = node_saved_store(cl->node, &sv);
    if (rc != KV_OK) {
        KV_LOG(KV_ERROR, "cannot save the chosen tokens: %s; will retry",
               kv_errmsg());
        kv_free(tokens);
        return;
    }
    gossip_member_t self;
    gossip_member_find(cl->gossip, cfg->node_name, now, &self);
    gossip_local_t loc = {
        .name = self.name, .node_id = self.node_id, .host = self.host,
        .port = self.port, .client_port = self.client_port,
        .admin_port = self.admin_port, .rack = self.rack,
        .generation = self.generation, .status = status,
        .tokens = tokens, .ntokens = ntokens,
        .load_bytes = self.load_bytes,
    };
    rc = gossip_set_local(cl->gossip, now, &loc);
    kv_free(tokens);
    if (rc != KV_OK) {
        KV_LOG(KV_ERROR, "gossip refused this node's tokens: %s", kv_errmsg());
        return;
    }
    cl->need_tokens = false;
    if (replaced)
        KV_LOG(KV_INFO, "joining: took dead %s's %u tokens; status JOINING until its "
               "ranges are streamed from the surviving replicas", replaced, ntokens);
    else if (stream)
        KV_LOG(KV_INFO, "joining: chose %u tokens against a ring of %u node(s); "
               "status JOINING until the ranges it will own are streamed to it",
               ntokens, ring_node_count(cl->ring));
    else
        KV_LOG(KV_WARN, "joining: chose %u tokens; auto_bootstrap is off, so this "
               "node owns its ranges now, without their data", ntokens);
    if (stream) ops_joined(cl, replaced);
}

void cluster_view_refresh(node_cluster_t *cl)
{
    uint64_t now = now_ms();
    uint64_t rv = gossip_ring_version(cl->gossip);
    size_t n = gossip_member_count(cl->gossip);
    bool ring_moved = rv != cl->ring_version_seen;
    bool liveness_moved = false;
    if (n > cl->ngossip_slot) {
        cl->gossip_slot = kv_realloc(cl->gossip_slot, n * sizeof *cl->gossip_slot);
        for (size_t i = cl->ngossip_slot; i < n; i++) cl->gossip_slot[i] = UINT32_MAX;
        cl->ngossip_slot = (uint32_t)n;
    }
    for (size_t i = 0; i < n; i++) {
        gossip_member_t m;
        gossip_member_at(cl->gossip, i, now, &m);
        uint32_t si = cl->gossip_slot[i];
        node_peer_t *p = si != UINT32_MAX ? cl->peers[si] : cluster_peer_find(cl, m.name);
        bool fresh = !p;
        if (fresh) p = slot_new(cl, &m);
        cl->gossip_slot[i] = p->idx;
        if (ring_moved || fresh) {
            bool moved = slot_update(p, &m);
            if (fresh) peer_add(cl, p);
            else if (moved) peer_readdress(cl, p);
        } else if (!p->self) {
            p->load_bytes = m.load_bytes;
        }
        if (p->gossip_up != m.up || (!m.up && !p->down_since_ms)) {
            p->down_since_ms = m.up ? 0 : KV_MAX(now, 1);
            liveness_moved = true;
        }
        p->gossip_up = m.up;
        p->generation = m.generation;
    }
    if (ring_moved) {
        cl->ring_version_seen = rv;
        ring_rebuild(cl, now);
        future_rebuild(cl, now);
    }
    cl->live_version_seen = gossip_liveness_version(cl->gossip);
    maybe_choose_tokens(cl, now);
    if (liveness_moved || ring_moved) hints_glue_poke(cl);
}

/* ---- saved state -------------------------------------------------------- */

static char *state_path(const node_t *n, const char *name)
{
    size_t len = strlen(n->cfg->data_dir) + strlen(name) + 2;
    char *p = kv_malloc(len);
    snprintf(p, len, "%s/%s", n->cfg->data_dir, name);
    return p;
}

void node_saved_free(node_saved_t *s)
{
    kv_free(s->tokens);
    memset(s, 0, sizeof *s);
}

kv_status_t node_saved_load(const node_t *n, node_saved_t *out)
{
    memset(out, 0, sizeof *out);
    out->status = GOSSIP_NORMAL;
    char *path = state_path(n, "cluster.state");
    FILE *f = fopen(path, "r");
    if (!f) {
        kv_status_t rc = errno == ENOENT ? KV_OK : kv_status_from_errno(errno);
        if (rc != KV_OK) kv_errmsg_set("%s: %s", path, strerror(errno));
        kv_free(path);
        return rc;
    }
    char line[65536];
    kv_status_t rc = KV_OK;
    while (rc == KV_OK && fgets(line, sizeof line, f)) {
        char *v = strchr(line, ' ');
        if (!v) continue;
        *v++ = 0;
        if (!strcmp(line, "generation")) {
            out->generation = strtoull(v, NULL, 10);
        } else if (!strcmp(line, "status")) {
            v[strcspn(v, "\n")] = 0;
            if (!strcmp(v, "joining")) out->status = GOSSIP_JOINING;
            else if (!strcmp(v, "normal")) out->status = GOSSIP_NORMAL;
            else if (!strcmp(v, "leaving")) out->status = GOSSIP_LEAVING;
            else if (!strcmp(v, "left")) out->status = GOSSIP_LEFT;
            else rc = KV_CORRUPT;
        } else if (!strcmp(line, "tokens")) {
            uint32_t cap = 1;
            for (char *q = v; *q; q++) cap += *q == ',';
            if (cap > GOSSIP_MAX_TOKENS) {
                rc = KV_CORRUPT;
                break;
            }
            kv_free(out->tokens);
            out->tokens = kv_calloc(cap, sizeof *out->tokens);
            out->ntokens = 0;
            for (char *q = v; *q && *q != '\n';) {
                char *end;
                errno = 0;
                uint64_t t = strtoull(q, &end, 10);
                if (end == q || errno) {
                    rc = KV_CORRUPT;
                    break;
                }
                out->tokens[out->ntokens++] = t;
                q = *end == ',' ? end + 1 : end;
            }
        }
    }
    fclose(f);
    if (rc != KV_OK) {
        kv_errmsg_set("%s: malformed (expected lines 'generation N', 'status "
                      "joining|normal|leaving|left', 'tokens t1,t2,...')", path);
        node_saved_free(out);
    }
    kv_free(path);
    return rc;
}

kv_status_t node_saved_store(const node_t *n, const node_saved_t *s)
{
    char *path = state_path(n, "cluster.state");
    char *tmp = state_path(n, "cluster.state.tmp");
    kv_buf_t b;
    kv_buf_init(&b);
    char num[32];
    int len = snprintf(num, sizeof num, "%" PRIu64, s->generation);
    kv_buf_append(&b, "generation ", 11);
    kv_buf_append(&b, num, (size_t)len);
    kv_buf_append(&b, "\nstatus ", 8);
    const char *st = gossip_status_str(s->status);
    kv_buf_append(&b, st, strlen(st));
    kv_buf_append(&b, "\n", 1);
    if (s->ntokens) {
        kv_buf_append(&b, "tokens ", 7);
        for (uint32_t i = 0; i < s->ntokens; i++) {
            len = snprintf(num, sizeof num, "%s%" PRIu64, i ? "," : "", s->tokens[i]);
            kv_buf_append(&b, num, (size_t)len);
        }
        kv_buf_append(&b, "\n", 1);
    }
    kv_status_t rc = KV_OK;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, b.data, b.len) != (ssize_t)b.len || fsync(fd) != 0 ||
        rename(tmp, path) != 0) {
        kv_errmsg_set("%s: %s", path, strerror(errno));
        rc = kv_status_from_errno(errno);
    }
    if (fd >= 0) close(fd);
    if (rc == KV_OK) {
        fd = open(n->cfg->data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) {
            fsync(fd);
            close(fd);
        }
    }
    kv_buf_deinit(&b);
    kv_free(path);
    kv_free(tmp);
    return rc;
}
