/* client_int.h -- libcairn's internals shared by client.c (the API,
 * futures, submission, connect/close) and client_io.c (the I/O thread:
 * the in-flight map, connections, the poll loop). Not installed. */
#ifndef CAIRN_CLIENT_INT_H
#define CAIRN_CLIENT_INT_H

/* How long past a request's timeout_ms the client waits for the node's own
 * Timeout answer before giving up locally. */
#define CLIENT_TIMEOUT_GRACE_MS 250u

#define KV_LOG_MODULE "client"
#include "cairn.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "clock.h"
#include "kv.h"
#include "proto.h"

#define ERRLEN 512
#define READ_CHUNK 65536
#define MAX_POLL_MS 1000

typedef enum {
    REQ_GET, REQ_PUT, REQ_DELETE, REQ_INFO, REQ_RING, REQ_ADMIN, REQ_LOCAL_GET, REQ_PING
} req_kind_t;

struct cairn_future {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs; /* under mu: the caller's and, until completion, the client's */
    bool done;
    req_kind_t kind;
    cairn_status_t status;
    bool has_value;
    uint8_t *value; /* NUL-terminated copy */
    size_t vlen;
    uint64_t ts;
    char *message;  /* NULL when none */
    kv_buf_t info;  /* INFO: "name\0value\0" ... */
    cairn_ring_t ring; /* RING: the converted reply, until cairn_ring takes it */
    bool tombstone;    /* LOCAL_GET: the cell is a tombstone */
    uint64_t expire_ms; /* LOCAL_GET: the cell's expiry */
    /* Owned by the client: under c->mu while queued, I/O thread after. */
    uint64_t id;
    uint64_t deadline_ns;
    uint32_t timeout_ms;
    kv_buf_t frame;           /* the encoded request until it is written */
    cairn_future_t *qnext;    /* the client's queue */
    cairn_future_t *hnext;    /* an in-flight map chain */
};

typedef struct point {
    char host[256];
    char port[8];
    char desc[272]; /* host:port for messages */
} point_t;

struct cairn_client {
    /* Set at connect, then read-only. */
    char *cluster;
    char *client_name;
    point_t *points;
    size_t npoints;
    proto_cl_t default_cl;
    uint32_t timeout_ms;
    uint32_t connect_timeout_ms;
    const kv_clock_t *clock;
    int wake_fd;
    SSL_CTX *ssl_ctx;             /* NULL: plain TCP */
    bool tls_check_host;
    char *username, *password;    /* NULL: none sent */
    pthread_t thread;

    _Atomic uint64_t max_hlc;
    _Atomic uint64_t next_id;

    pthread_mutex_t mu;
    pthread_cond_t started_cv;
    bool started;                 /* the first round finished */
    cairn_status_t start_status;
    bool closing;
    cairn_future_t *qhead, *qtail;
    char last_error[ERRLEN];

    /* Set by the I/O thread at the first successful handshake, under mu. */
    char user[72], role[16];

    /* I/O thread only. */
    int fd;                       /* -1: DOWN */
    SSL *ssl;                     /* with fd, when TLS */
    bool ssl_want_write;          /* the last SSL_read needs POLLOUT */
    bool draining;
    size_t cur;                   /* index of the current/last point */
    kv_frame_decoder_t *dec;
    kv_buf_t wbuf;
    size_t woff;
    cairn_future_t **buckets;
    size_t nbuckets;              /* a power of two */
    size_t ninflight;
    uint64_t next_deadline;       /* no in-flight deadline is earlier */
    char round_err[ERRLEN];       /* why the last round failed */
};

/* Format a message into an ERRLEN buffer. */
KV_PRINTF(2, 3) static inline void errf(char *dst, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, ERRLEN, fmt, ap);
    va_end(ap);
}

/* client.c */
cairn_status_t client_status_from_kv(kv_status_t s);
void client_complete(cairn_client_t *c, cairn_future_t *f, cairn_status_t st, const char *msg, const kv_slice_t *value, uint64_t ts);
void client_drain_wake(cairn_client_t *c);
uint64_t client_now_ns(const cairn_client_t *c);

/* client_io.c */
cairn_future_t *client_take_queue(cairn_client_t *c, bool *closing);
void client_fail_list(cairn_client_t *c, cairn_future_t *q, cairn_status_t st, const char *msg);
void *client_io_main(void *arg);

#endif /* CAIRN_CLIENT_INT_H */
