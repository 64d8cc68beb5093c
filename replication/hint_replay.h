/* hint_replay.h -- when and how fast to deliver each target's hints (no I/O).
 *
 * The dispatcher decides, per target node, when to read the next batch of
 * hints from the hint log, when to send it, and when to acknowledge it in the
 * log; the glue (node/) does the reading, sending and acknowledging and feeds
 * the outcomes back. One batch per target is in flight at a time, so a
 * target receives its hints in the order they were written.
 *
 *   IDLE --(up && pending && bucket >= 0)--> READ(max_bytes)
 *   READING --on_read(n > 0)--> SEND          --on_read(n == 0)--> ACK, IDLE
 *   SENDING --on_sent(ok)--> ACK, bucket -= bytes, then READ again when the
 *                            bucket allows (or IDLE when nothing is left)
 *           --on_sent(fail) or ack_timeout--> DISCARD the batch, IDLE;
 *                            retry after retry_ms (backing off to 30 s)
 *   any state --target down--> the batch in flight is discarded on return
 *
 * THROTTLE  A token bucket per target: bytes_per_sec, burst one batch.
 *           Sending a batch of B bytes takes B tokens (the bucket may go
 *           negative); the next READ waits until it is back to >= 0. A
 *           batch is at most batch_bytes (and at most one second's worth).
 *
 * THREADING  One thread (the loop); not shared.
 */
#ifndef CAIRN_HINT_REPLAY_H
#define CAIRN_HINT_REPLAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kv.h"

typedef struct hint_replay hint_replay_t;

typedef struct hint_replay_options {
    uint64_t bytes_per_sec;  /* per target; default 1 MiB; >= 1 KiB */
    uint64_t batch_bytes;    /* default 64 KiB */
    uint64_t ack_timeout_ms; /* a sent batch not acked by then failed; 10 s */
    uint64_t retry_ms;       /* first retry after a failure; 1 s (x2, <= 30 s) */
} hint_replay_options_t;

void hint_replay_options_init(hint_replay_options_t *o);
kv_status_t hint_replay_create(const hint_replay_options_t *o,
                               hint_replay_t **out);
void hint_replay_destroy(hint_replay_t *r);

typedef enum {
    HINT_ACT_READ = 1,    /* read up to max_bytes of target's hints */
    HINT_ACT_SEND = 2,    /* send the batch that was read */
    HINT_ACT_ACK = 3,     /* acknowledge the batch in the log (consume it) */
    HINT_ACT_DISCARD = 4, /* forget the batch; it will be read again */
} hint_act_kind_t;

typedef struct hint_act {
    hint_act_kind_t kind;
    uint32_t target;
    uint64_t max_bytes; /* READ */
} hint_act_t;

/* What the glue knows about a target (any time it may have changed): up =
 * gossip says alive and a request could be sent to it now; pending = the
 * hint log holds records for it. Targets are small integers chosen by the
 * caller (node slots); they are created on first mention. */
void hint_replay_set(hint_replay_t *r, uint64_t now_ms, uint32_t target,
                     bool up, bool pending);
/* The READ finished: n records, bytes payload bytes, more = records remain
 * after this batch; ok = false on a read error (retried later). */
void hint_replay_on_read(hint_replay_t *r, uint64_t now_ms, uint32_t target,
                         bool ok, size_t n, uint64_t bytes, bool more);
/* The SEND finished: ok = the target stored every record of the batch. */
void hint_replay_on_sent(hint_replay_t *r, uint64_t now_ms, uint32_t target,
                         bool ok);
void hint_replay_tick(hint_replay_t *r, uint64_t now_ms);
/* The earliest time hint_replay_tick has something to do; false if never. */
bool hint_replay_next_deadline(const hint_replay_t *r, uint64_t *out_ms);

const hint_act_t *hint_replay_actions(const hint_replay_t *r, size_t *n);
void hint_replay_actions_clear(hint_replay_t *r);

typedef struct hint_replay_stats {
    uint64_t batches_sent, batches_acked, batches_failed;
    uint64_t records_sent, bytes_sent;
    uint64_t throttled_ms; /* time READs waited for the bucket */
} hint_replay_stats_t;

void hint_replay_get_stats(const hint_replay_t *r, hint_replay_stats_t *out);
/* Whether a batch for target is being read or sent. */
bool hint_replay_busy(const hint_replay_t *r, uint32_t target);
kv_status_t hint_replay_validate(const hint_replay_t *r);

#endif /* CAIRN_HINT_REPLAY_H */
