/* make_seeds.c -- cairn-fuzz-seeds OUT_DIR: writes structured seed inputs
 * for every fuzz target into OUT_DIR/<target>/, made with Cairn's own
 * encoders and writers (valid frames of every message type, real tables,
 * logs, hint segments, gossip datagrams and push-pulls), in each target's
 * input layout (see the targets' comments and fuzz_util.h). The committed
 * corpus (tests/fuzz/corpus/) started from this; scripts/fuzz.sh --seeds
 * runs it again.
 */
#include "config.h"
#include "engine.h"
#include "engine_int.h"
#include "format.h"
#include "frame.h"
#include "fuzz_util.h"
#include "gossip.h"
#include "hints.h"
#include "log.h"
#include "peer_proto.h"
#include "proto.h"
#include "sst.h"

static const char *out_dir;

static void seed(const char *target, const char *name, const void *p, size_t n)
{
    char dir[1024], path[1200];
    snprintf(dir, sizeof dir, "%s/%s", out_dir, target);
    mkdir(out_dir, 0755);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/seed-%s", dir, name);
    fz_write_file(path, p, n);
}

/* A frame without its 4-byte length: what the proto targets take. */
static void body_seed(const char *target, const char *name, kv_buf_t *frame)
{
    seed(target, name, frame->data + 4, frame->len - 4);
    kv_buf_clear(frame);
}

static void client_seeds(kv_buf_t *all)
{
    kv_buf_t b = {0};
    proto_hello_t h = {.version = 1, .cluster = kv_slice_str("cairn"),
                       .client_name = kv_slice_str("cli"), .has_auth = true,
                       .user = kv_slice_str("alice"), .password = kv_slice_str("pw")};
    proto_encode_hello(&b, 1, &h, 0);
    kv_buf_append(all, b.data, b.len);
    body_seed("client_proto", "hello", &b);
    proto_hello_ok_t ok = {.version = 1, .cluster = kv_slice_str("cairn"),
                           .node_name = kv_slice_str("n1"),
                           .node_id = kv_slice_str("0123456789abcdef0123456789abcdef"),
                           .hlc = 12345, .user = kv_slice_str("alice"),
                           .role = kv_slice_str("readwrite")};
    proto_encode_hello_ok(&b, 1, &ok, 0);
    body_seed("client_proto", "hello_ok", &b);
    proto_request_t q = {.type = MSG_PUT, .id = 7, .key = kv_slice_str("k"),
                         .value = kv_slice_str("value"), .cl = CL_QUORUM,
                         .timeout_ms = 100, .causality = 5, .ttl_ms = 9};
    proto_encode_request(&b, &q, 0);
    kv_buf_append(all, b.data, b.len);
    body_seed("client_proto", "put", &b);
    q.type = MSG_GET;
    proto_encode_request(&b, &q, 0);
    kv_buf_append(all, b.data, b.len);
    body_seed("client_proto", "get", &b);
    q.type = MSG_DELETE;
    proto_encode_request(&b, &q, 0);
    body_seed("client_proto", "delete", &b);
    proto_reply_t r = {.id = 7, .status = KV_OK, .hlc = 3, .cell_ts = 2, .has_value = true,
                       .value = kv_slice_str("v"), .message = kv_slice_str("m")};
    proto_encode_reply(&b, &r, 0);
    kv_buf_append(all, b.data, b.len);
    body_seed("client_proto", "reply", &b);
    proto_info_item_t items[] = {{"a", "b", 0}, {"n", NULL, 42}};
    proto_encode_info_reply(&b, 3, 99, items, 2, 0);
    body_seed("client_proto", "info_reply", &b);
    kv_slice_t key = kv_slice_str("k");
    proto_encode_ring(&b, 4, &key, 0);
    body_seed("client_proto", "ring", &b);
    proto_encode_admin(&b, 5, kv_slice_str("removenode"), kv_slice_str("n3"), 0);
    body_seed("client_proto", "admin", &b);
    proto_encode_local_get(&b, 8, kv_slice_str("k"), 0);
    body_seed("client_proto", "local_get", &b);
    proto_local_reply_t lr = {.id = 8, .status = KV_OK, .hlc = 9, .ts = 7, .expire_ms = 5,
                              .value = kv_slice_str("v")};
    proto_encode_local_reply(&b, &lr, 0);
    body_seed("client_proto", "local_reply", &b);
    static const uint64_t toks[] = {10, 20, 30};
    proto_ring_node_t nodes[2] = {
        {.name = kv_slice_str("n1"), .node_id = kv_slice_str("id1"),
         .host = kv_slice_str("127.0.0.1"), .rack = kv_slice_str("r1"), .client_port = 7070,
         .admin_port = 7072, .up = true, .load_bytes = 5, .ownership_ppm = 500000,
         .effective_ppm = 1000000, .tokens = toks, .ntokens = 3, .status = 1,
         .liveness = 0, .phi_milli = 10, .generation = 7, .in_ring = true},
        {.name = kv_slice_str("n2"), .node_id = kv_slice_str("id2"),
         .host = kv_slice_str("127.0.0.2"), .rack = kv_slice_str(""), .client_port = 7070,
         .admin_port = 7072, .up = false, .ownership_ppm = 500000,
         .effective_ppm = 1000000, .tokens = toks + 1, .ntokens = 2, .status = 0,
         .liveness = 2, .in_ring = false},
    };
    static const uint32_t reps[] = {1, 0};
    proto_ring_t ring = {.replication_factor = 2, .self = 0, .key_token = 15,
                         .nodes = nodes, .nnodes = 2, .replicas = reps, .nreplicas = 2};
    proto_encode_ring_reply(&b, 6, 77, &ring, 0);
    body_seed("client_proto", "ring_reply", &b);
    kv_buf_deinit(&b);
}

static void peer_seeds(void)
{
    kv_buf_t b = {0};
    peer_hello_t h = {.version = 1, .cluster = kv_slice_str("cairn"),
                      .node_name = kv_slice_str("n1"), .node_id = kv_slice_str("abc"),
                      .ring_digest = 99, .client_port = 7070, .admin_port = 7072};
    peer_encode_hello(&b, PEER_HELLO, 5, &h, 0);
    body_seed("peer_proto", "hello", &b);
    peer_refuse_t rf = {KV_DENIED, kv_slice_str("no")};
    peer_encode_refuse(&b, 5, &rf, 0);
    body_seed("peer_proto", "refuse", &b);
    peer_encode_pong(&b, 3, 5, 1000, 0);
    body_seed("peer_proto", "pong", &b);
    peer_mutation_t m = {.key = kv_slice_str("k"),
                         .cell = {.ts = 9, .expire_ms = 3, .value = kv_slice_str("v")}};
    peer_encode_mutation(&b, 4, 5, &m, 0);
    body_seed("peer_proto", "mutation", &b);
    peer_mutation_reply_t mr = {KV_SUPERSEDED, 77};
    peer_encode_mutation_reply(&b, 4, 5, &mr, 0);
    body_seed("peer_proto", "mutation_reply", &b);
    peer_encode_read(&b, 6, 5, kv_slice_str("k"), 0);
    body_seed("peer_proto", "read", &b);
    peer_read_reply_t rr = {.status = KV_OK, .cell = m.cell};
    peer_encode_read_reply(&b, 6, 5, &rr, 0);
    body_seed("peer_proto", "read_reply", &b);
    peer_encode_pushpull(&b, PEER_GOSSIP_PUSHPULL, 8, 5, kv_slice_str("body"), 0);
    body_seed("peer_proto", "pushpull", &b);
    peer_hint_t hints[2] = {{kv_slice_str("a"), m.cell},
                            {kv_slice_str("b"), {.ts = 4, .tombstone = true}}};
    peer_encode_hints(&b, 9, 5, hints, 2, 0);
    body_seed("peer_proto", "hints", &b);
    peer_hints_reply_t hr = {KV_OK, 2, 1};
    peer_encode_hints_reply(&b, 9, 5, &hr, 0);
    body_seed("peer_proto", "hints_reply", &b);
    peer_encode_stream_req(&b, 11, 5, 100, 200, 0);
    body_seed("peer_proto", "stream_req", &b);
    static const uint64_t se[6] = {100, 200, 300, 400, 900, 50};
    peer_encode_stream_req_ranges(&b, 11, 5, se, 3, 0);
    body_seed("peer_proto", "stream_req_ranges", &b);
    peer_stream_chunk_t ch = {.seq = 0, .last = true, .n = 2};
    peer_encode_stream_chunk(&b, 11, 5, &ch, hints, 0);
    body_seed("peer_proto", "stream_chunk", &b);
    peer_encode_stream_ack(&b, 11, 5, 0, KV_OK, 0);
    body_seed("peer_proto", "stream_ack", &b);
    peer_encode_stream_abort(&b, 11, 5, KV_BUSY, kv_slice_str("busy"), 0);
    body_seed("peer_proto", "stream_abort", &b);
    peer_fetch_t fe = {.start = 1, .end = 2, .nsources = 2,
                       .sources = {kv_slice_str("n2"), kv_slice_str("n3")}};
    peer_encode_fetch(&b, 12, 5, &fe, 0);
    body_seed("peer_proto", "fetch", &b);
    fe.extra = se;
    fe.nextra = 3;
    peer_encode_fetch(&b, 12, 5, &fe, 0);
    body_seed("peer_proto", "fetch_ranges", &b);
    peer_fetch_reply_t fr = {KV_OK, 3, 4, kv_slice_str("")};
    peer_encode_fetch_reply(&b, 12, 5, &fr, 0);
    body_seed("peer_proto", "fetch_reply", &b);
    peer_encode_merkle_req(&b, 13, 5, 0, 1000, 2, 0);
    body_seed("peer_proto", "merkle_req", &b);
    uint64_t leaves[4] = {1, 2, 3, 4};
    peer_encode_merkle_reply(&b, 13, 5, KV_OK, 2, 10, leaves, 0);
    body_seed("peer_proto", "merkle_reply", &b);
    kv_buf_deinit(&b);
}

/* [kind][len u16][bytes] records for fuzz_gossip, from two real nodes. */
static void gossip_seeds(void)
{
    gossip_config_t cfg;
    gossip_config_init(&cfg);
    cfg.cluster_name = "cairn";
    cfg.replication_factor = 3;
    static const uint64_t toks[] = {5, 50, 500};
    gossip_local_t a = {.name = "n2", .node_id = "fedcba9876543210fedcba9876543210",
                        .host = "127.0.0.2", .port = 7071, .client_port = 7070,
                        .admin_port = 7072, .rack = "r1", .generation = 2000,
                        .status = GOSSIP_NORMAL, .tokens = toks, .ntokens = 3};
    gossip_local_t b = a;
    b.name = "n3";
    b.node_id = "00000000000000000000000000000003";
    b.host = "127.0.0.3";
    gossip_t *ga, *gb;
    uint64_t now = 1000000;
    gossip_create(&cfg, &a, now, &ga);
    gossip_create(&cfg, &b, now, &gb);
    gossip_local_t n1 = a;
    n1.name = "n1";
    n1.host = "127.0.0.1";
    n1.node_id = "";
    n1.generation = 0;
    n1.ntokens = 0;
    gossip_add_known(ga, now, &n1);
    gossip_add_known(ga, now, &b);
    gossip_add_known(gb, now, &a);
    kv_buf_t out = {0};
    int k = 0;
    for (int round = 0; round < 40 && k < 12; round++) {
        now += 250;
        gossip_tick(ga, now);
        gossip_tick(gb, now);
        size_t na;
        const gossip_action_t *acts = gossip_actions(ga, &na);
        for (size_t i = 0; i < na; i++) {
            uint8_t hdr[3] = {acts[i].kind == GOSSIP_ACT_UDP ? 0 : 1,
                              (uint8_t)acts[i].len, (uint8_t)(acts[i].len >> 8)};
            kv_buf_clear(&out);
            kv_buf_append(&out, hdr, 3);
            kv_buf_append(&out, acts[i].data, acts[i].len);
            if (acts[i].kind == GOSSIP_ACT_UDP) {
                gossip_on_udp(gb, now, acts[i].data, acts[i].len);
            } else {
                kv_buf_t reply = {0};
                gossip_on_pushpull(gb, now, acts[i].data, acts[i].len, &reply);
                gossip_on_pushpull_reply(ga, now, acts[i].id, reply.data, reply.len);
                uint8_t rh[3] = {2, (uint8_t)reply.len, (uint8_t)(reply.len >> 8)};
                kv_buf_append(&out, rh, 3);
                kv_buf_append(&out, reply.data, reply.len);
                kv_buf_deinit(&reply);
            }
            uint8_t tick[3] = {3 | (4 << 2), 0, 0};
            kv_buf_append(&out, tick, 3);
            char name[32];
            snprintf(name, sizeof name, "%02d", k++);
            seed("gossip", name, out.data, out.len);
        }
        gossip_actions_clear(ga);
        acts = gossip_actions(gb, &na);
        for (size_t i = 0; i < na; i++)
            if (acts[i].kind == GOSSIP_ACT_UDP) gossip_on_udp(ga, now, acts[i].data, acts[i].len);
        gossip_actions_clear(gb);
    }
    kv_buf_deinit(&out);
    gossip_destroy(ga);
    gossip_destroy(gb);
}

/* Convert a log file into fz_build_log's "fixed" layout: mode, flip, cut,
 * then [len u16][payload] per record. */
static void log_to_fz(const char *path, const char *magic, uint8_t mode, kv_buf_t *out)
{
    uint8_t head[5] = {mode, 3, 0, 9, 0};
    kv_buf_append(out, head, sizeof head);
    eng_log_reader_t *r;
    if (eng_log_reader_open(path, magic, false, &r) != KV_OK) {
        fprintf(stderr, "%s: %s\n", path, kv_errmsg());
        exit(1);
    }
    kv_slice_t p;
    while (eng_log_reader_next(r, &p) == KV_OK) {
        if (p.len > 65535) continue;
        uint8_t l[2] = {(uint8_t)p.len, (uint8_t)(p.len >> 8)};
        kv_buf_append(out, l, 2);
        kv_buf_append(out, p.data, p.len);
    }
    eng_log_reader_close(r);
}

static void file_seed(const char *target, const char *name, uint8_t mode, const char *path)
{
    FILE *f = fopen(path, "rb");
    kv_buf_t b = {0};
    kv_buf_append_u8(&b, mode);
    uint8_t buf[4096];
    size_t n;
    while (f && (n = fread(buf, 1, sizeof buf, f)) > 0) kv_buf_append(&b, buf, n);
    if (f) fclose(f);
    seed(target, name, b.data, b.len);
    kv_buf_deinit(&b);
}

static void engine_seeds(const char *tmp)
{
    char dir[512], path[700];
    /* tables: raw blocks (fixed mode), zstd, and one as-is */
    for (int z = 0; z < 2; z++) {
        snprintf(path, sizeof path, "%s/t%d.sst", tmp, z);
        eng_sst_options_t so = {.block_bytes = 256, .restart_interval = 4,
                                .compression_level = z, .bloom_bits_per_key = 10};
        eng_sst_builder_t *sb;
        eng_sst_builder_create(path, &so, &sb);
        kv_buf_t ik = {0}, okey = {0}, cell = {0};
        /* ascending (token, key): sort by building okeys and inserting in order */
        kv_buf_t keys[24];
        for (int i = 0; i < 24; i++) {
            char k[16];
            snprintf(k, sizeof k, "key%02d", i);
            keys[i] = (kv_buf_t){0};
            eng_okey_append(&keys[i], kv_slice_str(k));
        }
        for (int i = 0; i < 24; i++)
            for (int j = i + 1; j < 24; j++)
                if (kv_slice_cmp(kv_buf_slice(&keys[j]), kv_buf_slice(&keys[i])) < 0) {
                    kv_buf_t t = keys[i];
                    keys[i] = keys[j];
                    keys[j] = t;
                }
        for (int i = 0; i < 24; i++) {
            kv_buf_clear(&ik);
            kv_buf_clear(&cell);
            eng_ikey_append(&ik, kv_buf_slice(&keys[i]), 100 + (uint64_t)i,
                            i % 5 ? ENG_KIND_VALUE : ENG_KIND_TOMBSTONE);
            eng_cell_t c = {.ts = 1000 + (uint64_t)i, .tombstone = i % 5 == 0,
                            .expire_ms = i % 3 ? 0 : 99999,
                            .value = i % 5 ? kv_slice_str("some value bytes") : kv_slice(NULL, 0)};
            eng_cell_encode(&cell, &c);
            eng_sst_builder_add(sb, kv_buf_slice(&ik), kv_buf_slice(&cell));
            kv_buf_deinit(&keys[i]);
        }
        eng_sst_props_t props;
        if (eng_sst_builder_finish(sb, &props) != KV_OK) {
            fprintf(stderr, "sst: %s\n", kv_errmsg());
            exit(1);
        }
        eng_sst_props_deinit(&props);
        file_seed("sst", z ? "zstd" : "raw-blocks", 1, path);
        if (z) file_seed("sst", "as-is", 0, path);
        kv_buf_deinit(&ik);
        kv_buf_deinit(&okey);
        kv_buf_deinit(&cell);
    }
    /* a real store: WAL and manifest */
    snprintf(dir, sizeof dir, "%s/store", tmp);
    eng_options_t o;
    eng_options_init(&o);
    o.dir = dir;
    o.background_threads = 1;
    eng_t *e;
    if (eng_open(&o, &e) != KV_OK) {
        fprintf(stderr, "engine: %s\n", kv_errmsg());
        exit(1);
    }
    for (int i = 0; i < 20; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%d", i);
        if (i % 4 == 3) eng_delete(e, kv_slice_str(k), 2000 + (uint64_t)i, NULL);
        else eng_put(e, kv_slice_str(k), kv_slice_str("value"), 2000 + (uint64_t)i,
                     i % 2 ? 0 : 99999999, NULL);
        if (i == 9) eng_flush(e);
    }
    eng_close(e);
    /* the WAL(s) and the manifest, as records */
    DIR *d = opendir(dir);
    struct dirent *de;
    kv_buf_t wal = {0}, man = {0};
    while ((de = readdir(d)) != NULL) {
        if (snprintf(path, sizeof path, "%s/%s", dir, de->d_name) >= (int)sizeof path) continue;
        if (strstr(de->d_name, ".wal") && !wal.len) log_to_fz(path, ENG_WAL_MAGIC, 1, &wal);
        if (!strncmp(de->d_name, "MANIFEST-", 9) && !man.len)
            log_to_fz(path, ENG_MANIFEST_MAGIC, 1, &man);
    }
    closedir(d);
    seed("wal", "records", wal.data, wal.len);
    wal.data[0] = 3; /* the same, with a byte flipped */
    seed("wal", "flipped", wal.data, wal.len);
    wal.data[0] = 1;
    /* manifest target: opts (2: with a WAL), manifest length, manifest, WAL */
    kv_buf_t m = {0};
    uint8_t hd[3] = {2, (uint8_t)man.len, (uint8_t)(man.len >> 8)};
    kv_buf_append(&m, hd, 3);
    kv_buf_append(&m, man.data, man.len);
    kv_buf_append(&m, wal.data, wal.len);
    seed("manifest", "store-with-tables", m.data, m.len);
    /* a manifest with no tables (opens): log number, next file, last seq */
    kv_buf_clear(&m);
    uint8_t edit[] = {1, 2, 2, 3, 3, 0};
    uint8_t hd2[3] = {2, 5 + 2 + sizeof edit, 0};
    kv_buf_append(&m, hd2, 3);
    uint8_t mh[5] = {1, 0, 0, 0, 0};
    kv_buf_append(&m, mh, 5);
    uint8_t el[2] = {sizeof edit, 0};
    kv_buf_append(&m, el, 2);
    kv_buf_append(&m, edit, sizeof edit);
    kv_buf_append(&m, wal.data, wal.len);
    seed("manifest", "no-tables-wal", m.data, m.len);
    kv_buf_deinit(&m);
    kv_buf_deinit(&wal);
    kv_buf_deinit(&man);
}

static void hint_seeds(const char *tmp)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/hints", tmp);
    hint_log_options_t o;
    hint_log_options_init(&o);
    o.dir = dir;
    hint_log_t *h;
    if (hint_log_open(&o, &h) != KV_OK) {
        fprintf(stderr, "hints: %s\n", kv_errmsg());
        exit(1);
    }
    const char *target = "0123456789abcdef0123456789abcdef";
    for (int i = 0; i < 12; i++) {
        eng_cell_t c = {.ts = 500 + (uint64_t)i, .tombstone = i % 4 == 0,
                        .expire_ms = i % 3 ? 0 : 7777,
                        .value = i % 4 ? kv_slice_str("hinted") : kv_slice(NULL, 0)};
        char k[16];
        snprintf(k, sizeof k, "h%d", i);
        hint_log_append(h, target, 900 + (uint64_t)i, kv_slice_str(k), &c);
    }
    hint_log_sync(h);
    hint_log_close(h);
    char tdir[700];
    snprintf(tdir, sizeof tdir, "%s/%s", dir, target);
    DIR *d = opendir(tdir);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!strstr(de->d_name, ".hints")) continue;
        char path[1000];
        if (snprintf(path, sizeof path, "%s/%s", tdir, de->d_name) >= (int)sizeof path) continue;
        kv_buf_t b = {0};
        kv_buf_append_u8(&b, 8); /* opts: ack each batch, no cursor */
        log_to_fz(path, "CAIRNHNT", 1, &b);
        seed("hint_log", "segment", b.data, b.len);
        b.data[0] = 2 | 8; /* with expiry */
        seed("hint_log", "segment-expiring", b.data, b.len);
        kv_buf_deinit(&b);
        break;
    }
    closedir(d);
}

static void config_seeds(void)
{
    static const char *const yamls[] = {
        ("cluster_name: cairn\nreplication_factor: 3\ninitial_cluster:\n"
         "  - node1=node1:7071\n  - node2=node2:7071@r2\n  - node3=node3:7071\n"
         "node_name: node1\ndrain_timeout_ms: 10000\nlog_level: info\n"),
        ("node_name: n1\nlisten_address: 127.0.0.1\nclient_port: 7070\npeer_port: 7071\n"
         "admin_port: 7072\nseeds: [10.0.0.1, \"10.0.0.2:7071\"]\nmax_value_bytes: 1MiB\n"
         "max_frame_bytes: 4MiB\nsync: periodic\nsync_period_ms: 50\n"),
        ("node_name: n1\nmemtable_bytes: 8m\ncache_bytes: 0\ngc_grace_seconds: 60\n"
         "hinted_handoff: off\nread_repair_chance: 0\nring_delay_ms: 100\n"),
        "",
    };
    for (size_t i = 0; i < KV_ARRAY_LEN(yamls); i++) {
        char name[16];
        snprintf(name, sizeof name, "%zu.yaml", i);
        seed("config", name, yamls[i], strlen(yamls[i]));
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: cairn-fuzz-seeds OUT_DIR\n");
        return 2;
    }
    out_dir = argv[1];
    char tmp[] = "/tmp/cairn-seeds-XXXXXX";
    if (!mkdtemp(tmp)) return 1;
    kv_buf_t frames = {0};
    client_seeds(&frames);
    /* frame target: limit index (5: 1 MiB), split (0: whole), the frames */
    kv_buf_t fb = {0};
    uint8_t ctl[2] = {5, 0};
    kv_buf_append(&fb, ctl, 2);
    kv_buf_append(&fb, frames.data, frames.len);
    seed("frame", "frames-whole", fb.data, fb.len);
    fb.data[1] = 7; /* the same, fed in small pieces */
    seed("frame", "frames-split", fb.data, fb.len);
    fb.data[0] = 1; /* limit 16: refused at once */
    seed("frame", "frames-over-limit", fb.data, fb.len);
    kv_buf_deinit(&fb);
    kv_buf_deinit(&frames);
    peer_seeds();
    gossip_seeds();
    engine_seeds(tmp);
    hint_seeds(tmp);
    config_seeds();
    fz_rm_tree(tmp);
    printf("seeds written to %s\n", out_dir);
    return 0;
}
