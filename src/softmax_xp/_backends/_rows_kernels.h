/*
 * The C row kernels' interface: one table of kernels per instruction-set level. Plain C (no
 * Python.h): included by the kernel core (_rows_core.h), by the Python bindings (_rows.c) and by
 * the C test driver (tests/c/test_rows.c).
 *
 * Every kernel takes rows of C contiguous numbers, n rows whose starts are ld bytes apart.
 */
#ifndef SXP_ROWS_KERNELS_H
#define SXP_ROWS_KERNELS_H
#include <stddef.h>

typedef ptrdiff_t sxp_ssize;

/* The integer labels of the cross-entropy kernels and their options: n int64 class indices, ld
 * bytes apart (a row's label is valid in [0, c) unless it is the ignored one); eps, the label
 * smoothing in [0, 1]; ignore, the label whose rows count for nothing, where has_ignore. */
typedef struct {
    const char *labels;
    sxp_ssize ld;
    double eps;
    long long ignore;
    int has_ignore;
} sxp_labels;

typedef struct {
    const char *name;  /* "avx512", "avx2", "sse2", "neon" or "generic" */
    int vector_bytes;  /* the width every kernel of this table works at */
    /* softmax (log_softmax if take_log) of n rows of c numbers: x (row stride ldx) into y. */
    void (*forward_f32)(const char *x, sxp_ssize ldx, char *y, sxp_ssize ldy, sxp_ssize n,
                        sxp_ssize c, int take_log);
    void (*forward_f64)(const char *x, sxp_ssize ldx, char *y, sxp_ssize ldy, sxp_ssize n,
                        sxp_ssize c, int take_log);
    /* kind 0: a * (b - <a, b>); 1: b - exp(a) sum(b); 2: b - <exp(a), b>; per row, into o. */
    void (*pair_f32)(int kind, const char *a, sxp_ssize lda, const char *b, sxp_ssize ldb, char *o,
                     sxp_ssize ldo, sxp_ssize n, sxp_ssize c);
    void (*pair_f64)(int kind, const char *a, sxp_ssize lda, const char *b, sxp_ssize ldb, char *o,
                     sxp_ssize ldo, sxp_ssize n, sxp_ssize c);
    /* The kernels' own exp of c numbers. */
    void (*exp_f32)(const float *x, float *y, sxp_ssize c);
    void (*exp_f64)(const double *x, double *y, sxp_ssize c);
    /* Dense Jacobians of n rows of y (n, c) into o (n * c rows of c); scratch: c numbers (log). */
    void (*jacobian_f32)(const char *y, sxp_ssize ldy, char *o, sxp_ssize ldo, sxp_ssize n,
                         sxp_ssize c, int take_log, float *scratch);
    void (*jacobian_f64)(const char *y, sxp_ssize ldy, char *o, sxp_ssize ldo, sxp_ssize n,
                         sxp_ssize c, int take_log, double *scratch);
    /* logsumexp of n rows of c numbers of x into out[r] (out's items ldo bytes apart). */
    void (*logsumexp_f32)(const char *x, sxp_ssize ldx, char *out, sxp_ssize ldo, sxp_ssize n,
                          sxp_ssize c);
    void (*logsumexp_f64)(const char *x, sxp_ssize ldx, char *out, sxp_ssize ldo, sxp_ssize n,
                          sxp_ssize c);
    /* Its VJP: o[r, j] = g[r] * exp(x[r, j] - lse[r]), a row of NaN where lse[r] is not finite
     * (lse and g: n items, ldl / ldg apart). */
    void (*logsumexp_vjp_f32)(const char *x, sxp_ssize ldx, const char *lse, sxp_ssize ldl,
                              const char *g, sxp_ssize ldg, char *o, sxp_ssize ldo, sxp_ssize n,
                              sxp_ssize c);
    void (*logsumexp_vjp_f64)(const char *x, sxp_ssize ldx, const char *lse, sxp_ssize ldl,
                              const char *g, sxp_ssize ldg, char *o, sxp_ssize ldo, sxp_ssize n,
                              sxp_ssize c);
    /* The softmax cross-entropy with integer labels, reading each row once: lse[r] as
     * logsumexp, loss[r] = (1 - eps) (lse - x[label]) + (eps / c) sum_j (lse - x_j) for a valid
     * label (NaN where lse is not finite; +inf for a -inf logit under a positive target), 0 for
     * the ignored label, NaN for one out of range (loss and lse: n items, ldloss / ldlse apart). */
    void (*ce_labels_f32)(const char *x, sxp_ssize ldx, const sxp_labels *labels, char *loss,
                          sxp_ssize ldloss, char *lse, sxp_ssize ldlse, sxp_ssize n, sxp_ssize c);
    void (*ce_labels_f64)(const char *x, sxp_ssize ldx, const sxp_labels *labels, char *loss,
                          sxp_ssize ldloss, char *lse, sxp_ssize ldlse, sxp_ssize n, sxp_ssize c);
    /* Its VJP in one pass: o[r, j] = (g[r] S + h[r]) p_j - g[r] t_j with p = exp(x - lse[r])
     * (a row of NaN where lse[r] is not finite), t the smoothed one-hot target of a valid label
     * (else 0) and S its sum (1, else 0); g and h are the cotangents of the loss and the lse. */
    void (*ce_labels_vjp_f32)(const char *x, sxp_ssize ldx, const sxp_labels *labels,
                              const char *lse, sxp_ssize ldl, const char *g, sxp_ssize ldg,
                              const char *h, sxp_ssize ldh, char *o, sxp_ssize ldo, sxp_ssize n,
                              sxp_ssize c);
    void (*ce_labels_vjp_f64)(const char *x, sxp_ssize ldx, const sxp_labels *labels,
                              const char *lse, sxp_ssize ldl, const char *g, sxp_ssize ldg,
                              const char *h, sxp_ssize ldh, char *o, sxp_ssize ldo, sxp_ssize n,
                              sxp_ssize c);
} sxp_kernels;

/* The baseline table (SSE2 on x86-64, NEON/ASIMD on aarch64, 16-byte generic vectors elsewhere),
 * always built; on x86-64 also the AVX2+FMA (x86-64-v3) and AVX-512 (x86-64-v4) tables. */
extern const sxp_kernels sxp_kernels_base;
#if defined(__x86_64__) || defined(_M_X64)
#define SXP_X86_LEVELS 1
extern const sxp_kernels sxp_kernels_avx2;
extern const sxp_kernels sxp_kernels_avx512;
#endif

/* The tables this build holds that the running CPU can execute, best first; returns how many
 * (at most 3) were written to out. */
int sxp_usable_kernels(const sxp_kernels **out);

#endif
