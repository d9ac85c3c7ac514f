/*
 * A small pool of worker threads for the C row kernels. Plain C (pthreads, no Python.h): used by
 * the Python bindings (_rows.c) and by the C test driver (tests/c/test_pool.c).
 *
 * sxp_pool_run splits the rows [0, n) into pieces of `piece` rows and runs fn on them on up to
 * `threads` threads, the calling thread one of them. Pieces are taken dynamically from a shared
 * counter, so a thread slowed by another process on its core takes fewer of them, and a worker
 * that wakes after the caller has taken the last piece is not waited for. The workers
 * are started on first use and sleep on a condition variable between calls (no spinning: the
 * machines this runs on are often shared). One call uses the pool at a time: a call that finds it
 * busy (another thread's call, or a call from inside fn) runs serially in its own thread, so
 * nothing deadlocks and the results are the same. After fork() the child starts a new pool.
 */
#ifndef SXP_ROWS_POOL_H
#define SXP_ROWS_POOL_H
#include <stddef.h>

/* The work on rows [r0, r1), run by thread `slot` of the call (0 the caller, 1.. the workers;
 * slot < threads), so that per-thread scratch can be set aside up front. */
typedef void (*sxp_range_fn)(void *ctx, int slot, ptrdiff_t r0, ptrdiff_t r1);

/* The most threads one call can use (the caller and SXP_POOL_MAX - 1 workers). */
#define SXP_POOL_MAX 16

/* Run fn over [0, n) on up to `threads` threads (values < 1 mean 1; more than SXP_POOL_MAX or
 * than there are pieces are cut down). Returns the number of threads that took part (1 when it
 * ran serially, or when the caller ran every piece before a worker woke). Every row is run
 * exactly once whatever the return value. */
int sxp_pool_run(int threads, ptrdiff_t n, ptrdiff_t piece, sxp_range_fn fn, void *ctx);

/* The number of worker threads started so far (for tests). */
int sxp_pool_workers(void);

#endif
