/* pool.c -- jobs that run off the loop and complete on it: a small thread
 * pool with a bounded queue, and the one completion queue every worker
 * (pool threads, engine threads) hands finished jobs back through.
 *
 * DESIGN  nginx's thread pool: the loop submits a job; a worker runs
 *         job->work; the worker pushes the job onto the node's completion
 *         list under done_mu and, if the list was empty, activates one
 *         libevent event (thread-safe because evthread_use_pthreads() ran
 *         before the base was made). The loop's callback swaps the whole
 *         list out under the lock and runs each job->done on the loop.
 *         A full pool queue answers KV_BUSY instead of growing.
 * INVARIANTS (1) a job is owned by exactly one side at a time: the loop
 *            until submit, the pool queue, one worker, the completion list,
 *            then the loop again; (2) workers never touch loop-owned state
 *            (connections, metrics, the clock); (3) the notify event is
 *            activated whenever the completion list goes from empty to
 *            non-empty, so no completion waits for an unrelated wake-up.
 * THREADING  node_pool_submit/create/destroy on the loop thread;
 *            node_done_push from any thread.
 */
#define KV_LOG_MODULE "node"
#include "node_int.h"

struct node_pool {
    node_t *node;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    node_job_t *head, *tail;
    size_t queued, max_queued;
    bool stopping;
    int nthreads;
    pthread_t *threads;
};

void node_done_push(node_t *n, node_job_t *j)
{
    j->next = NULL;
    pthread_mutex_lock(&n->done_mu);
    bool was_empty = n->done_head == NULL;
    if (n->done_tail) n->done_tail->next = j;
    else n->done_head = j;
    n->done_tail = j;
    pthread_mutex_unlock(&n->done_mu);
    if (was_empty) event_active(n->done_ev, EV_READ, 0);
}

static void *pool_main(void *arg)
{
    node_pool_t *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        node_job_t *j = p->head;
        if (!j) {
            if (p->stopping) break;
            pthread_cond_wait(&p->cv, &p->mu);
            continue;
        }
        p->head = j->next;
        if (!p->head) p->tail = NULL;
        p->queued--;
        pthread_mutex_unlock(&p->mu);
        if (j->work) j->work(j);
        node_done_push(p->node, j);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

node_pool_t *node_pool_create(node_t *n, int threads, size_t max_queued)
{
    node_pool_t *p = kv_calloc(1, sizeof *p);
    p->node = n;
    p->max_queued = max_queued;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->threads = kv_calloc((size_t)threads, sizeof *p->threads);
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&p->threads[i], NULL, pool_main, p) != 0)
            kv_panic("node: cannot start a reader thread");
        p->nthreads++;
    }
    return p;
}

kv_status_t node_pool_submit(node_pool_t *p, node_job_t *j)
{
    j->next = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->stopping || p->queued >= p->max_queued) {
        pthread_mutex_unlock(&p->mu);
        return p->stopping ? KV_CLOSED : KV_BUSY;
    }
    if (p->tail) p->tail->next = j;
    else p->head = j;
    p->tail = j;
    p->queued++;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return KV_OK;
}

void node_pool_destroy(node_pool_t *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nthreads; i++) pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    kv_free(p->threads);
    kv_free(p);
}
