/*
 * C test driver of the row kernels' thread pool (src/softmax_xp/_backends/_rows_pool.c), without
 * Python. Built and run by `nox -s ckernels` with GCC and Clang (and for aarch64 under qemu-user),
 * with -fsanitize=thread where the compiler has it. Checks that:
 *   - every row of [0, n) runs exactly once, for row counts 0..300 and 100000, pieces of 1, 3,
 *     64 and more than n rows, and 1..SXP_POOL_MAX + 4 threads, and that the call reports the
 *     number of threads that took part (1 when it ran serially; never more than asked, than
 *     SXP_POOL_MAX or than there are pieces) and passes slots below it;
 *   - a call from inside the work function of a split call runs serially (no deadlock) and still
 *     runs every row;
 *   - calls from four program threads at once each get all their rows (those that find the pool
 *     busy run serially);
 *   - a child process after fork() starts a pool of its own and runs a split call (skipped with
 *     --no-fork: qemu-user 7.2 itself aborts in the child of a multi-threaded process).
 * Exit status 0 when everything passes; the output names every failure.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "_rows_pool.h"

static int failures = 0;

#define CHECK(cond, ...)                                                                          \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            failures++;                                                                           \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                 \
            fprintf(stderr, __VA_ARGS__);                                                         \
            fputc('\n', stderr);                                                                  \
        }                                                                                         \
    } while (0)

typedef struct {
    atomic_int *hits;  /* per row: how many times it ran */
    int max_slot;      /* slots must stay below this */
    atomic_int bad_slot;
    int nested;        /* run a nested call from inside (rows [0, nested)) */
    atomic_int nested_threads;
} work;

static void count(void *ctx, int slot, ptrdiff_t r0, ptrdiff_t r1) {
    work *w = (work *)ctx;
    if (slot < 0 || slot >= w->max_slot) atomic_store(&w->bad_slot, 1);
    for (ptrdiff_t r = r0; r < r1; r++) atomic_fetch_add(&w->hits[r], 1);
}

/* count, then about 20 microseconds of waiting per row: long enough for a worker to wake. */
static void count_slowly(void *ctx, int slot, ptrdiff_t r0, ptrdiff_t r1) {
    count(ctx, slot, r0, r1);
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do clock_gettime(CLOCK_MONOTONIC, &t);
    while ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) < 20000L * (r1 - r0));
}

static void count_nested(void *ctx, int slot, ptrdiff_t r0, ptrdiff_t r1) {
    work *w = (work *)ctx;
    count(ctx, slot, r0, r1);
    atomic_int inner[8];
    for (int i = 0; i < 8; i++) atomic_init(&inner[i], 0);
    work v = {inner, 1, 0, 0, 0};
    int used = sxp_pool_run(4, 8, 1, count, &v);
    atomic_fetch_add(&w->nested_threads, used);
    for (int i = 0; i < 8; i++)
        if (atomic_load(&inner[i]) != 1) atomic_store(&w->bad_slot, 1);
}

/* Run n rows on `threads` threads in pieces of `piece`; 0 when every row ran once. */
static int run_once(ptrdiff_t n, ptrdiff_t piece, int threads, int nested) {
    atomic_int *hits = calloc((size_t)(n > 0 ? n : 1), sizeof *hits);
    int asked = threads < 1 ? 1 : threads;
    ptrdiff_t pieces = n > 0 ? (n - 1) / (piece < 1 ? 1 : piece) + 1 : 0;
    int cap = asked > SXP_POOL_MAX ? SXP_POOL_MAX : asked;
    if (pieces < cap) cap = pieces > 0 ? (int)pieces : 1;
    work w = {hits, cap, 0, nested, 0};
    int used = sxp_pool_run(threads, n, piece, nested ? count_nested : count, &w);
    int bad = 0;
    for (ptrdiff_t r = 0; r < n; r++)
        if (atomic_load(&hits[r]) != 1) bad++;
    CHECK(bad == 0, "n=%td piece=%td threads=%d: %d rows not run exactly once", n, piece, threads,
          bad);
    CHECK(used >= 1 && used <= cap, "n=%td piece=%td threads=%d: %d threads reported (cap %d)",
          n, piece, threads, used, cap);
    CHECK(!atomic_load(&w.bad_slot), "n=%td threads=%d: a slot out of range, or a nested call "
          "missed rows", n, threads);
    if (nested && used > 1) /* the outer call holds the pool: the inner ones run serially */
        CHECK(atomic_load(&w.nested_threads) == (int)pieces,
              "n=%td: a nested call ran on more than one thread", n);
    free(hits);
    return bad;
}

static void *caller(void *arg) {
    (void)arg;
    for (int k = 0; k < 200; k++) run_once(5000 + k, 7, 3, 0);
    return NULL;
}

int main(int argc, char **argv) {
    int fork_check = !(argc > 1 && strcmp(argv[1], "--no-fork") == 0);
    static const ptrdiff_t pieces[] = {1, 3, 64, 1000000};
    for (ptrdiff_t n = 0; n <= 300; n++)
        for (size_t p = 0; p < sizeof pieces / sizeof *pieces; p++)
            for (int t = 0; t <= SXP_POOL_MAX + 4; t += (t < 4 ? 1 : 5)) run_once(n, pieces[p], t, 0);
    run_once(100000, 1, 4, 0);
    run_once(100000, 333, SXP_POOL_MAX, 0);
    /* more than one thread took part where there are several pieces and threads */
    int seen_split = 0;
    for (int k = 0; k < 50 && !seen_split; k++) {
        atomic_int hits[64];
        for (int i = 0; i < 64; i++) atomic_init(&hits[i], 0);
        work w = {hits, 2, 0, 0, 0};
        seen_split = sxp_pool_run(2, 64, 1, count_slowly, &w) == 2;
    }
    CHECK(seen_split, "a call for 2 threads over 64 pieces never ran on 2");
    CHECK(sxp_pool_workers() >= 1, "no worker was started");
    for (ptrdiff_t n = 1; n <= 40; n += 13) run_once(n, 1, 4, 1);

    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, caller, NULL);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);

    fflush(stderr);
    pid_t pid = fork_check ? fork() : -2;
    if (pid == -2) printf("pool: the fork() check skipped (--no-fork)\n");
    if (pid == 0) {
        int before = failures;
        atomic_int hits[1000];
        for (int i = 0; i < 1000; i++) atomic_init(&hits[i], 0);
        work w = {hits, 3, 0, 0, 0};
        int split = 0;
        for (int k = 0; k < 50 && !split; k++) {
            for (int i = 0; i < 1000; i++) atomic_store(&hits[i], 0);
            split = sxp_pool_run(3, 1000, 10, count_slowly, &w) > 1;
            for (int i = 0; i < 1000; i++) CHECK(atomic_load(&hits[i]) == 1, "child: row %d", i);
        }
        CHECK(split, "the child after fork() never split a call");
        _exit(failures == before ? 0 : 1);
    }
    int status = 0;
    CHECK(pid == -2 || (pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
                          WEXITSTATUS(status) == 0),
          "the child after fork() failed");

    printf("pool: %s (%d workers started)\n", failures ? "FAILED" : "all checks passed",
           sxp_pool_workers());
    return failures ? 1 : 0;
}
