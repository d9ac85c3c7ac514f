/*
 * The C row kernels' thread pool (see _rows_pool.h for what it promises).
 *
 * State, all under `m` except the piece counter: the workers started, the generation of the
 * current call (each worker remembers the last one it saw), how many workers may join it, whether
 * it still accepts them, how many have joined in all and how many have not yet left. A call takes
 * `run` with trylock, so one call at a time uses the workers; a worker never takes `run`, so a
 * call from inside fn runs serially. The caller stops accepting workers when it has run out of
 * pieces itself and then waits only for those that joined: a worker still waking up (tens of
 * microseconds on a virtual machine) costs a call that was over before it arrived nothing.
 */
#include "_rows_pool.h"

#if defined(_WIN32)

int sxp_pool_run(int threads, ptrdiff_t n, ptrdiff_t piece, sxp_range_fn fn, void *ctx) {
    (void)threads;
    (void)piece;
    if (n > 0) fn(ctx, 0, 0, n);
    return 1;
}

int sxp_pool_workers(void) { return 0; }

#else

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>

static pthread_mutex_t run = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static pthread_cond_t done = PTHREAD_COND_INITIALIZER;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static int n_workers;                        /* started */
static unsigned long generation;             /* of the current (or last) call */
static unsigned long seen[SXP_POOL_MAX];     /* per worker: the last generation it looked at */
static int may_join, accepting, joined, took; /* of the current call; took: joined in all */

/* The current call (written under m before the generation changes, read after it). */
static sxp_range_fn job_fn;
static void *job_ctx;
static ptrdiff_t job_n, job_piece;
static atomic_llong next_piece;

static void drain(int slot) {
    for (;;) {
        long long p = atomic_fetch_add_explicit(&next_piece, 1, memory_order_relaxed);
        ptrdiff_t r0 = (ptrdiff_t)p * job_piece;
        if (p < 0 || r0 >= job_n) return;
        ptrdiff_t r1 = job_n - r0 > job_piece ? r0 + job_piece : job_n;
        job_fn(job_ctx, slot, r0, r1);
    }
}

static void *worker(void *arg) {
    int id = (int)(intptr_t)arg; /* 0-based: call slot id + 1 */
    pthread_mutex_lock(&m);
    for (;;) {
        while (seen[id] == generation) pthread_cond_wait(&wake, &m);
        seen[id] = generation;
        if (!accepting || id >= may_join) continue;
        joined++;
        took++;
        pthread_mutex_unlock(&m);
        drain(id + 1);
        pthread_mutex_lock(&m);
        if (--joined == 0 && !accepting) pthread_cond_signal(&done);
    }
    return NULL;
}

/* In a child after fork() only the forking thread exists: forget the workers and start afresh
 * (the locks may have been held by threads that are gone). */
static void after_fork_child(void) {
    pthread_mutex_init(&run, NULL);
    pthread_mutex_init(&m, NULL);
    pthread_cond_init(&wake, NULL);
    pthread_cond_init(&done, NULL);
    n_workers = 0;
    generation = 0;
    may_join = accepting = joined = took = 0;
}

static void register_fork_handler(void) { pthread_atfork(NULL, NULL, after_fork_child); }

/* Start workers until there are `want` (under m); returns how many there are. Workers block
 * every signal, so that signals (Ctrl-C) go to the threads of the program. */
static int start_workers(int want) {
    if (n_workers >= want) return n_workers;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    while (n_workers < want) {
        pthread_t t;
        seen[n_workers] = generation;
        if (pthread_create(&t, &attr, worker, (void *)(intptr_t)n_workers) != 0) break;
        n_workers++;
    }
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return n_workers;
}

int sxp_pool_run(int threads, ptrdiff_t n, ptrdiff_t piece, sxp_range_fn fn, void *ctx) {
    if (n <= 0) return 1;
    if (piece < 1) piece = 1;
    ptrdiff_t pieces = (n - 1) / piece + 1;
    if (threads > SXP_POOL_MAX) threads = SXP_POOL_MAX;
    if (pieces < threads) threads = (int)pieces;
    if (threads <= 1 || pthread_mutex_trylock(&run) != 0) {
        fn(ctx, 0, 0, n);
        return 1;
    }
    pthread_once(&once, register_fork_handler);
    pthread_mutex_lock(&m);
    int helpers = start_workers(threads - 1);
    if (helpers > threads - 1) helpers = threads - 1;
    if (helpers == 0) { /* no thread could be started */
        pthread_mutex_unlock(&m);
        pthread_mutex_unlock(&run);
        fn(ctx, 0, 0, n);
        return 1;
    }
    job_fn = fn;
    job_ctx = ctx;
    job_n = n;
    job_piece = piece;
    atomic_store_explicit(&next_piece, 0, memory_order_relaxed);
    may_join = helpers;
    accepting = 1;
    joined = took = 0;
    generation++;
    pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&m);
    drain(0);
    pthread_mutex_lock(&m);
    accepting = 0;
    while (joined > 0) pthread_cond_wait(&done, &m);
    int took_part = took;
    pthread_mutex_unlock(&m);
    pthread_mutex_unlock(&run);
    return took_part + 1;
}

int sxp_pool_workers(void) {
    pthread_mutex_lock(&m);
    int n = n_workers;
    pthread_mutex_unlock(&m);
    return n;
}

#endif
