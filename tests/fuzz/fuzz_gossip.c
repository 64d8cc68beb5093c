/* fuzz_gossip.c -- gossip packet parsing and the membership state machine
 * on hostile input (gossip/codec.c and the rest of gossip/).
 *
 * The input is a sequence of packets, each [kind u8][len u16 LE][bytes]:
 * kind selects a UDP datagram, a push-pull request, or the reply to a
 * push-pull this node asked for; a tick advances the clock between them.
 * Every packet is also decoded directly (gw_decode_msg / gw_decode_pp) and
 * opened as an authenticated datagram (node/gossip_auth.c: the header, tag,
 * window and replay checks) -- kind bit 4 sends it sealed with the test key,
 * so the state machine sees it through the auth layer as in cairnd. A
 * fresh node (cluster "cairn", one known member) takes each input, so a
 * crash replays from the input alone.
 */
#include "fuzz_util.h"
#include "gossip.h"
#include "gossip_auth.h"
#include "gossip_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_quiet();
    fz_t f = {data, size};
    gossip_config_t cfg;
    gossip_config_init(&cfg);
    cfg.cluster_name = "cairn";
    cfg.replication_factor = 3;
    cfg.seed = 42;
    static const uint64_t toks[] = {1, 1000, 1u << 30};
    gossip_local_t self = {.name = "n1", .node_id = "0123456789abcdef0123456789abcdef",
                           .host = "127.0.0.1", .port = 7071, .client_port = 7070,
                           .admin_port = 7072, .rack = "r1", .generation = 1000,
                           .status = GOSSIP_NORMAL, .tokens = toks, .ntokens = 3};
    uint64_t now = 1000000;
    gossip_t *g;
    if (gossip_create(&cfg, &self, now, &g) != KV_OK) abort();
    gossip_local_t other = self;
    other.name = "n2";
    other.node_id = "";
    other.host = "127.0.0.2";
    other.generation = 0;
    other.ntokens = 0;
    (void)gossip_add_known(g, now, &other);
    gossip_auth_t *auth = gossip_auth_create("fuzz secret 0123456789", 22, "cairn", 30000, 1);
    uint8_t *sealed = kv_malloc(65536 + GOSSIP_AUTH_OVERHEAD);
    uint64_t last_pp = 0;
    bool have_pp = false;
    kv_buf_t reply = {0};
    while (f.n) {
        uint8_t kind = fz_u8(&f);
        uint16_t len = fz_u16(&f);
        kv_slice_t pkt = fz_take(&f, len);
        gw_unpacked_t u;
        gw_unpacked_init(&u);
        gw_msg_t m;
        (void)gw_decode_msg(pkt.data, pkt.len, &u, &m);
        gw_unpacked_release(&u);
        gw_pp_t pp;
        gw_unpacked_init(&u);
        (void)gw_decode_pp(pkt.data, pkt.len, &u, &pp);
        gw_unpacked_release(&u);
        const uint8_t *body;
        size_t blen;
        (void)gossip_auth_open(auth, now, pkt.data, pkt.len, &body, &blen);
        switch (kind % 4) {
        case 0:
            if (kind & 16) {
                size_t sl = gossip_auth_seal(auth, now, pkt.data, pkt.len, sealed);
                if (gossip_auth_open(auth, now, sealed, sl, &body, &blen) != GOSSIP_AUTH_OK ||
                    blen != pkt.len)
                    abort(); /* what was sealed must open, once */
                if (gossip_auth_open(auth, now, sealed, sl, &body, &blen) != GOSSIP_AUTH_REPLAY)
                    abort();
                gossip_on_udp(g, now, body, blen);
            } else {
                gossip_on_udp(g, now, pkt.data, pkt.len);
            }
            break;
        case 1:
            kv_buf_clear(&reply);
            (void)gossip_on_pushpull(g, now, pkt.data, pkt.len, &reply);
            break;
        case 2:
            if (have_pp) (void)gossip_on_pushpull_reply(g, now, last_pp, pkt.data, pkt.len);
            break;
        default:
            now += 1 + (kind >> 2) * 50u;
            gossip_tick(g, now);
            break;
        }
        size_t na, ne;
        const gossip_action_t *acts = gossip_actions(g, &na);
        (void)gossip_events(g, &ne);
        for (size_t i = 0; i < na; i++) {
            if (acts[i].kind == GOSSIP_ACT_PUSHPULL) {
                last_pp = acts[i].id;
                have_pp = true;
            }
        }
        gossip_actions_clear(g);
    }
    size_t n = gossip_member_count(g);
    for (size_t i = 0; i < n; i++) {
        gossip_member_t mem;
        gossip_member_at(g, i, now, &mem);
    }
    kv_buf_deinit(&reply);
    kv_free(sealed);
    gossip_auth_destroy(auth);
    gossip_destroy(g);
    return 0;
}
