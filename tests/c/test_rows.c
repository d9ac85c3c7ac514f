/*
 * C test driver of the row kernels' core (src/softmax_xp/_backends/_rows_core.h), without Python.
 *
 * Built and run by `nox -s ckernels`: natively with GCC and with Clang at every instruction-set
 * level the machine runs (the levels it cannot run are named as skipped), and for aarch64 with
 * Debian's cross compiler under qemu-user. Checks, at every level:
 *   - exp: every float32 in [-104, 89] at the best level, every 61st at the others (with --quick,
 *     every 4099th), against double exp rounded to float, and a float64 sample against long double expl: at most 1 ulp; 0, inf and NaN
 *     exactly where the reference has them;
 *   - every kernel (softmax, log_softmax, the three JVP/VJP kinds, both dense Jacobians) against
 *     a scalar long double reference, float32 and float64, row lengths 1..300, five rows apart by
 *     a padded stride (so that the four-row short-row groups and a leftover row both run), and
 *     NaN / +inf / -inf at every position of rows up to 64 long and at every 5th and the last two
 *     beyond (with --quick, at five positions per length, and lengths 1..72, every 9th beyond, and
 *     127..129, 256: what qemu runs in under a minute);
 *   - logsumexp against a long double reference, within 4 ulps at the scale max(|lse|, 1), row
 *     lengths 1..200 and past one and several blocks up to 5000 (uniform, increasing, decreasing
 *     and constant rows; ranges down to exp's underflow), and the edge values of
 *     scipy.special.logsumexp exactly: NaN / +inf / -inf at every position as above, rows of
 *     -inf only, with +inf and NaN, huge (near the largest finite) and tiny (-1e30) values, an
 *     empty row; its VJP, edges included (NaN throughout where lse is not finite);
 *   - the cross-entropy with integer labels: its lse as logsumexp's, its loss within 8 ulps of a
 *     long double reference from that lse (the generic kernel's definition, every edge value
 *     exactly), its VJP likewise, at label smoothing 0, 0.1 and 1, labels at the ends, in the
 *     middle, ignored (-100 and an in-range one) and out of range, on the lengths and rows of
 *     logsumexp's checks and on edge rows: NaN / +inf / -inf at a label and elsewhere, rows of
 *     -inf (with one finite value), huge values (lse - x overflowing), tiny ones, empty rows.
 * Exit status 0 when everything passes; the output names every failure.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "_rows_kernels.h"

static int quick = 0;
static long failures = 0;

#define FAIL(...)                                                                              \
    do {                                                                                       \
        if (failures++ < 20) {                                                                 \
            printf("  FAIL ");                                                                 \
            printf(__VA_ARGS__);                                                               \
            printf("\n");                                                                      \
        }                                                                                      \
    } while (0)

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static double uniform(double lo, double hi) { /* xorshift64*, deterministic */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    uint64_t r = rng_state * 0x2545F4914F6CDD1Dull;
    return lo + (hi - lo) * (double)(r >> 11) * (1.0 / 9007199254740992.0);
}

/* ---- exp ---------------------------------------------------------------------------------- */

static void check_exp_f32(const sxp_kernels *k, uint64_t stride) {
    enum { CHUNK = 1 << 16 };
    static float x[CHUNK], y[CHUNK];
    static double want[CHUNK];
    /* The finite floats of [-104, 89] in order: negative ones by decreasing bit pattern from
     * -104 to -0, then positive ones from +0 to 89. */
    uint32_t lo_neg, hi_pos;
    float f = -104.0f;
    memcpy(&lo_neg, &f, 4);
    f = 89.0f;
    memcpy(&hi_pos, &f, 4);
    uint64_t step = quick ? 4099 : stride, total = (uint64_t)(lo_neg - 0x80000000u) + hi_pos + 2;
    double worst = 0.0;
    long checked = 0;
    for (uint64_t start = 0; start < total; start += (uint64_t)CHUNK * step) {
        int n = 0;
        for (uint64_t j = start; j < total && n < CHUNK; j += step, n++) {
            uint32_t bits = j <= (uint64_t)(lo_neg - 0x80000000u)
                                ? lo_neg - (uint32_t)j
                                : (uint32_t)(j - (lo_neg - 0x80000000u) - 1);
            memcpy(&x[n], &bits, 4);
            want[n] = exp((double)x[n]);
        }
        k->exp_f32(x, y, n);
        for (int i = 0; i < n; i++) {
            float w = (float)want[i];
            if (w == 0.0f) {
                if (y[i] != 0.0f) FAIL("%s exp_f32(%a) = %a, want 0", k->name, x[i], y[i]);
                continue;
            }
            if (isinf(w)) {
                if (!isinf(y[i])) FAIL("%s exp_f32(%a) = %a, want inf", k->name, x[i], y[i]);
                continue;
            }
            double ulp = (double)nextafterf(w, INFINITY) - (double)w;
            double err = fabs((double)y[i] - want[i]) / ulp;
            if (!(err <= 1.0)) FAIL("%s exp_f32(%a) = %a, want %a (%g ulp)", k->name, x[i], y[i], w, err);
            if (err > worst) worst = err;
            checked++;
        }
    }
    float sx[7] = {-INFINITY, INFINITY, NAN, 0.0f, -0.0f, -200.0f, 200.0f}, sy[7];
    k->exp_f32(sx, sy, 7);
    if (!(sy[0] == 0.0f && isinf(sy[1]) && sy[1] > 0 && isnan(sy[2]) && sy[3] == 1.0f &&
          sy[4] == 1.0f && sy[5] == 0.0f && isinf(sy[6])))
        FAIL("%s exp_f32 at the special values", k->name);
    printf("  exp_f32: %ld values, max error %.3f ulp\n", checked, worst);
}

static void check_exp_f64(const sxp_kernels *k) {
    enum { N = 4096 };
    static double x[N], y[N];
    int rounds = quick ? 8 : 256;
    double worst = 0.0;
    long checked = 0;
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < N; i++) x[i] = r == 0 ? -750.0 + 1462.0 * i / (N - 1) : uniform(-750.0, 712.0);
        k->exp_f64(x, y, N);
        for (int i = 0; i < N; i++) {
            long double wl = expl((long double)x[i]);
            double w = (double)wl;
            if (w == 0.0 || isinf(w)) {
                if (y[i] != w) FAIL("%s exp_f64(%a) = %a, want %a", k->name, x[i], y[i], w);
                continue;
            }
            double ulp = nextafter(w, INFINITY) - w;
            double err = (double)(fabsl((long double)y[i] - wl) / (long double)ulp);
            if (!(err <= 1.0)) FAIL("%s exp_f64(%a) = %a, want %a (%g ulp)", k->name, x[i], y[i], w, err);
            if (err > worst) worst = err;
            checked++;
        }
    }
    double sx[5] = {-INFINITY, INFINITY, NAN, 0.0, -0.0}, sy[5];
    k->exp_f64(sx, sy, 5);
    if (!(sy[0] == 0.0 && isinf(sy[1]) && isnan(sy[2]) && sy[3] == 1.0 && sy[4] == 1.0))
        FAIL("%s exp_f64 at the special values", k->name);
    printf("  exp_f64: %ld values, max error %.3f ulp\n", checked, worst);
}

/* ---- the kernels against a long double reference -------------------------------------------- */

enum { ROWS = 5, PAD = 3, MAXC = 300 };

/* Reference of one row. Returns the scale of the row's terms (the tolerance is relative to it). */
static long double ref_forward(const long double *x, long double *y, int c, int take_log) {
    long double m = -INFINITY;
    int nan = 0;
    for (int i = 0; i < c; i++) {
        if (isnan(x[i])) nan = 1;
        if (x[i] > m) m = x[i];
    }
    if (nan || !isfinite(m)) {
        for (int i = 0; i < c; i++) y[i] = NAN;
        return 1;
    }
    long double s = 0, scale = 1;
    for (int i = 0; i < c; i++) s += expl(x[i] - m);
    for (int i = 0; i < c; i++) {
        y[i] = take_log ? (x[i] - m) - logl(s) : expl(x[i] - m) / s;
        if (take_log && isfinite(x[i])) scale = fmaxl(scale, fabsl(x[i] - m) + logl(s));
    }
    return scale;
}

static long double ref_pair(int kind, const long double *a, const long double *b, long double *o,
                            int c) {
    long double d = 0, sa = 0, sb = 0;
    for (int i = 0; i < c; i++) {
        long double p = kind == 0 ? a[i] : expl(a[i]);
        d += kind == 1 ? b[i] : p * b[i];
        sa = fmaxl(sa, fabsl(p));
        sb = fmaxl(sb, fabsl(b[i]));
    }
    for (int i = 0; i < c; i++)
        o[i] = kind == 0 ? a[i] * (b[i] - d) : kind == 1 ? b[i] - expl(a[i]) * d : b[i] - d;
    return 1 + sa * (sb + fabsl(d)) + sb + fabsl(d);
}

/* Compare got (float or double, per `dbl`) with want; NaN must be where want is NaN, inf equal. */
static int agree(double got, long double want, long double scale, double eps) {
    if (isnan(want)) return isnan(got);
    if (isinf(want)) return got == (double)want;
    return fabsl((long double)got - want) <= 64 * eps * scale;
}

#define DEFINE_CHECKS(T, SFX, EPS)                                                              \
    static T x_##SFX[ROWS * (MAXC + PAD)], b_##SFX[ROWS * (MAXC + PAD)];                        \
    static T o_##SFX[ROWS * (MAXC + PAD)], jac_##SFX[ROWS * MAXC * MAXC], scr_##SFX[MAXC];      \
                                                                                                \
    static void fill_##SFX(T *v, int c, double lo, double hi) {                                 \
        for (int r = 0; r < ROWS; r++)                                                          \
            for (int i = 0; i < c + PAD; i++) v[r * (c + PAD) + i] = (T)uniform(lo, hi);         \
    }                                                                                           \
                                                                                                \
    static void run_forward_##SFX(const sxp_kernels *k, int c, int take_log, int only,         \
                                   const char *what) {                                          \
        long double xl[MAXC], yl[MAXC];                                                         \
        int ld = c + PAD;                                                                       \
        k->forward_##SFX((const char *)x_##SFX, ld * (sxp_ssize)sizeof(T), (char *)o_##SFX,     \
                         ld * (sxp_ssize)sizeof(T), ROWS, c, take_log);                         \
        for (int r = 0; r < ROWS; r++) {                                                        \
            if (only >= 0 && r != only) continue; /* the other rows are checked when finite */  \
            for (int i = 0; i < c; i++) xl[i] = x_##SFX[r * ld + i];                            \
            long double s = ref_forward(xl, yl, c, take_log);                                   \
            for (int i = 0; i < c; i++)                                                         \
                if (!agree(o_##SFX[r * ld + i], yl[i], s, EPS)) {                               \
                    FAIL("%s %s_" #SFX " c=%d row %d [%d] (%s): got %a want %La", k->name,     \
                         take_log ? "log_softmax" : "softmax", c, r, i, what,                   \
                         (double)o_##SFX[r * ld + i], yl[i]);                                   \
                    return;                                                                     \
                }                                                                               \
        }                                                                                       \
    }                                                                                           \
                                                                                                \
    static void run_pair_##SFX(const sxp_kernels *k, int kind, int c, const char *what) {       \
        long double al[MAXC], bl[MAXC], ol[MAXC];                                               \
        int ld = c + PAD;                                                                       \
        k->pair_##SFX(kind, (const char *)x_##SFX, ld * (sxp_ssize)sizeof(T),                   \
                      (const char *)b_##SFX, ld * (sxp_ssize)sizeof(T), (char *)o_##SFX,        \
                      ld * (sxp_ssize)sizeof(T), ROWS, c);                                      \
        for (int r = 0; r < ROWS; r++) {                                                        \
            for (int i = 0; i < c; i++) {                                                       \
                al[i] = x_##SFX[r * ld + i];                                                    \
                bl[i] = b_##SFX[r * ld + i];                                                    \
            }                                                                                   \
            long double s = ref_pair(kind, al, bl, ol, c);                                      \
            int nan = 0;                                                                        \
            for (int i = 0; i < c; i++) nan |= isnan(bl[i]);                                    \
            for (int i = 0; i < c; i++) {                                                       \
                long double want = nan ? (long double)NAN : ol[i];                              \
                if (!agree(o_##SFX[r * ld + i], want, s, EPS)) {                                \
                    FAIL("%s pair_" #SFX " kind %d c=%d row %d [%d] (%s): got %a want %La",    \
                         k->name, kind, c, r, i, what, (double)o_##SFX[r * ld + i], want);      \
                    return;                                                                     \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
    }                                                                                           \
                                                                                                \
    static void run_jacobian_##SFX(const sxp_kernels *k, int c, int take_log) {                 \
        int ld = c + PAD;                                                                       \
        k->jacobian_##SFX((const char *)o_##SFX, ld * (sxp_ssize)sizeof(T), (char *)jac_##SFX,  \
                          c * (sxp_ssize)sizeof(T), ROWS, c, take_log, scr_##SFX);              \
        for (int r = 0; r < ROWS; r++)                                                          \
            for (int i = 0; i < c; i++)                                                         \
                for (int j = 0; j < c; j++) {                                                   \
                    long double yi = o_##SFX[r * ld + i], yj = o_##SFX[r * ld + j];             \
                    long double want = take_log ? (i == j) - expl(yj) : yi * ((i == j) - yj);   \
                    T got = jac_##SFX[((sxp_ssize)r * c + i) * c + j];                          \
                    if (!agree(got, want, 1, EPS)) {                                            \
                        FAIL("%s jacobian_" #SFX " log=%d c=%d row %d [%d, %d]: got %a want %La", \
                             k->name, take_log, c, r, i, j, (double)got, want);                 \
                        return;                                                                 \
                    }                                                                           \
                }                                                                               \
    }                                                                                           \
                                                                                                \
    static void check_kernels_##SFX(const sxp_kernels *k) {                                     \
        long before = failures, cases = 0;                                                      \
        const T specials[3] = {(T)NAN, (T)INFINITY, (T)-INFINITY};                              \
        for (int c = 1; c <= MAXC; c++) {                                                       \
            if (quick && c > 72 && c % 9 != 0 && !(c >= 127 && c <= 129) && c != 256)           \
                continue; /* --quick: every length to 72, then every 9th and around 128, 256 */ \
            int ld = c + PAD;                                                                   \
            for (int take_log = 0; take_log < 2; take_log++) {                                  \
                fill_##SFX(x_##SFX, c, -10, 10);                                                \
                run_forward_##SFX(k, c, take_log, -1, "finite");                                    \
                cases++;                                                                        \
                for (int p = 0; p < c; p++) {                                                   \
                    /* every position of rows up to 4 vectors of 16; beyond, every 5th and the  \
                     * last two (the tail) */                                                   \
                    if (quick ? (p > 1 && p != c / 2 && p < c - 2)                              \
                              : (c > 64 && p % 5 != 0 && p < c - 2))                            \
                        continue;                                                               \
                    for (int s = 0; s < 3; s++) {                                               \
                        fill_##SFX(x_##SFX, c, -10, 10);                                        \
                        x_##SFX[(p % ROWS) * ld + p] = specials[s];                             \
                        run_forward_##SFX(k, c, take_log, p % ROWS,                             \
                                          s == 0 ? "nan" : s == 1 ? "+inf" : "-inf");           \
                        cases++;                                                                \
                    }                                                                           \
                }                                                                               \
            }                                                                                   \
            for (int kind = 0; kind < 3; kind++) {                                              \
                /* a: softmax outputs (kind 0) or log_softmax outputs (kinds 1, 2) */           \
                fill_##SFX(x_##SFX, c, -10, 10);                                                \
                k->forward_##SFX((const char *)x_##SFX, ld * (sxp_ssize)sizeof(T),              \
                                 (char *)x_##SFX, ld * (sxp_ssize)sizeof(T), ROWS, c, kind != 0); \
                fill_##SFX(b_##SFX, c, -3, 3);                                                  \
                run_pair_##SFX(k, kind, c, "finite");                                           \
                cases++;                                                                        \
                for (int p = 0; p < c; p++) {                                                   \
                    if (quick ? (p > 0 && p != c - 1) : (p % 7 != 0 && p != c - 1)) continue;   \
                    T keep = b_##SFX[(p % ROWS) * ld + p];                                      \
                    b_##SFX[(p % ROWS) * ld + p] = (T)NAN;                                      \
                    run_pair_##SFX(k, kind, c, "nan");                                          \
                    b_##SFX[(p % ROWS) * ld + p] = keep;                                        \
                    cases++;                                                                    \
                }                                                                               \
            }                                                                                   \
            if (c <= (quick ? 40 : 140) || c % 16 == 0) {                                       \
                for (int take_log = 0; take_log < 2; take_log++) {                              \
                    fill_##SFX(x_##SFX, c, -10, 10);                                            \
                    k->forward_##SFX((const char *)x_##SFX, ld * (sxp_ssize)sizeof(T),          \
                                     (char *)o_##SFX, ld * (sxp_ssize)sizeof(T), ROWS, c,        \
                                     take_log);                                                 \
                    run_jacobian_##SFX(k, c, take_log);                                         \
                    cases++;                                                                    \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
        printf("  kernels " #SFX ": %ld cases, %s\n", cases,                                    \
               failures == before ? "all agree" : "FAILED");                                    \
    }

DEFINE_CHECKS(float, f32, FLT_EPSILON)
DEFINE_CHECKS(double, f64, DBL_EPSILON)

/* ---- logsumexp and its VJP against a long double reference --------------------------------- */

enum { LMAXC = 5000 };
/* Row lengths past 200: both sides of one and several blocks of SUM_BLOCK (64) vectors at every
 * width (the running maximum is rescaled from the second block on). */
static const int long_lengths[] = {255, 256, 257, 511, 512, 513, 1000, 1023, 1024, 1025, 2049, 5000};
/* Finite results within LSE_ULPS ulps of the reference, at the scale max(|reference|, 1): below
 * 1 the error is that of the sum, about eps absolute (x - max and log(sum) cancel). */
#define LSE_ULPS 4.0L

static long double ref_lse(const long double *x, int c) {
    long double m = -INFINITY, s = 0;
    int nan = 0;
    for (int i = 0; i < c; i++) {
        if (isnan(x[i])) nan = 1;
        if (x[i] > m) m = x[i];
    }
    if (nan) return NAN;
    if (!isfinite(m)) return m; /* +inf, or -inf: all -inf or an empty row */
    for (int i = 0; i < c; i++) s += expl(x[i] - m);
    return m + logl(s);
}

static double lse_worst; /* the largest error met, in ulps at that scale */

static int lse_agree(double got, long double want, double eps) {
    if (isnan(want)) return isnan(got);
    if (isinf(want)) return got == (double)want;
    long double scale = fabsl(want) > 1 ? fabsl(want) : 1;
    double err = (double)(fabsl((long double)got - want) / (eps * scale));
    if (err > lse_worst) lse_worst = err;
    return err <= LSE_ULPS;
}

/* kinds of rows: 0 uniform in (lo, hi), 1 increasing (a new maximum in every block), 2
 * decreasing, 3 all equal to lo */
#define DEFINE_LSE_CHECKS(T, SFX, EPS)                                                          \
    static T lx_##SFX[ROWS * (LMAXC + PAD)], lo_##SFX[ROWS * (LMAXC + PAD)];                    \
    static T lg_##SFX[ROWS], ll_##SFX[ROWS], lr_##SFX[ROWS + 1];                                \
                                                                                                \
    static void lse_fill_##SFX(int c, int kind, double lo, double hi) {                         \
        for (int r = 0; r < ROWS; r++)                                                          \
            for (int i = 0; i < c + PAD; i++) {                                                 \
                double t = c > 1 ? (double)i / (c - 1) : 0.5;                                   \
                lx_##SFX[r * (c + PAD) + i] =                                                   \
                    (T)(kind == 0   ? uniform(lo, hi)                                           \
                        : kind == 1 ? lo + (hi - lo) * t + r                                    \
                        : kind == 2 ? hi - (hi - lo) * t - r                                    \
                                    : lo);                                                      \
            }                                                                                   \
    }                                                                                           \
                                                                                                \
    /* Runs logsumexp on the ROWS rows of lx (row stride c + PAD); checks row `only` (all if    \
     * -1), and that no item of out past the ROWS rows is written. */                           \
    static void run_lse_##SFX(const sxp_kernels *k, int c, int only, const char *what) {        \
        static long double xl[LMAXC];                                                           \
        int ld = c + PAD;                                                                       \
        lr_##SFX[ROWS] = (T)12345;                                                              \
        k->logsumexp_##SFX((const char *)lx_##SFX, ld * (sxp_ssize)sizeof(T), (char *)lr_##SFX, \
                           (sxp_ssize)sizeof(T), ROWS, c);                                      \
        if (lr_##SFX[ROWS] != (T)12345) FAIL("%s logsumexp_" #SFX " c=%d wrote past out", k->name, c); \
        for (int r = 0; r < ROWS; r++) {                                                        \
            if (only >= 0 && r != only) continue;                                               \
            for (int i = 0; i < c; i++) xl[i] = lx_##SFX[r * ld + i];                           \
            long double want = ref_lse(xl, c);                                                  \
            if (!lse_agree(lr_##SFX[r], want, EPS)) {                                           \
                FAIL("%s logsumexp_" #SFX " c=%d row %d (%s): got %a want %La", k->name, c, r,  \
                     what, (double)lr_##SFX[r], want);                                          \
                return;                                                                         \
            }                                                                                   \
        }                                                                                       \
    }                                                                                           \
                                                                                                \
    /* The VJP with lse from the reference (or as set in ll) and g in (-3, 3). */               \
    static void run_lse_vjp_##SFX(const sxp_kernels *k, int c, const char *what) {              \
        int ld = c + PAD;                                                                       \
        k->logsumexp_vjp_##SFX((const char *)lx_##SFX, ld * (sxp_ssize)sizeof(T),               \
                               (const char *)ll_##SFX, (sxp_ssize)sizeof(T),                    \
                               (const char *)lg_##SFX, (sxp_ssize)sizeof(T), (char *)lo_##SFX,  \
                               ld * (sxp_ssize)sizeof(T), ROWS, c);                             \
        for (int r = 0; r < ROWS; r++)                                                          \
            for (int i = 0; i < c; i++) {                                                       \
                long double xi = lx_##SFX[r * ld + i], l = ll_##SFX[r], g = lg_##SFX[r];        \
                long double want = isfinite(l) ? g * expl(xi - l) : (long double)NAN;          \
                T got = lo_##SFX[r * ld + i];                                                   \
                /* x - lse is rounded: relative error up to |x - lse| eps, amplified by exp */  \
                long double tol = 4 * EPS * fabsl(want) * (2 + fabsl(xi - l));                  \
                int ok = isnan(want)                 ? isnan(got)                               \
                         : isinf(want) || want == 0 ? got == (T)want                            \
                                                    : fabsl((long double)got - want) <= tol;    \
                if (!ok) {                                                                      \
                    FAIL("%s logsumexp_vjp_" #SFX " c=%d row %d [%d] (%s): got %a want %La",    \
                         k->name, c, r, i, what, (double)got, want);                            \
                    return;                                                                     \
                }                                                                               \
            }                                                                                   \
    }                                                                                           \
                                                                                                \
    static void lse_edges_##SFX(const sxp_kernels *k, int c, long *cases) {                     \
        const T inf = (T)INFINITY, nan = (T)NAN;                                                \
        const T big = (T)(sizeof(T) == 4 ? 3e38 : 1e308);                                       \
        int ld = c + PAD;                                                                       \
        for (int p = 0; p < c; p++) { /* one special value at position p of row p % ROWS */    \
            if (quick ? (p > 1 && p != c / 2 && p < c - 2) : (c > 64 && p % 5 != 0 && p < c - 2)) \
                continue;                                                                       \
            const T specials[3] = {nan, inf, -inf};                                             \
            for (int s = 0; s < 3; s++) {                                                       \
                lse_fill_##SFX(c, 0, -10, 10);                                                  \
                lx_##SFX[(p % ROWS) * ld + p] = specials[s];                                    \
                run_lse_##SFX(k, c, p % ROWS, s == 0 ? "nan" : s == 1 ? "+inf" : "-inf");      \
                ++*cases;                                                                       \
            }                                                                                   \
        }                                                                                       \
        /* whole rows: all -inf; -inf with one +inf, one NaN, or both (+inf first or last);     \
         * huge and tiny values; every row of the group different */                           \
        for (int v = 0; v < 7; v++) {                                                           \
            lse_fill_##SFX(c, 0, -10, 10);                                                      \
            for (int r = 0; r < ROWS; r++) {                                                    \
                T *row = lx_##SFX + r * ld;                                                     \
                for (int i = 0; i < c; i++)                                                     \
                    row[i] = v == 5 ? (T)(big * (T)(1 - 0.01 * (i % 7))) /* near the max */    \
                             : v == 6 ? (T)(-1e30 * (1 + 0.01 * (i % 5)))                       \
                                      : -inf;                                                   \
                int q = (r * 7 + 3) % c;                                                        \
                if (v == 1) row[q] = inf;                                                       \
                if (v == 2) row[q] = nan;                                                       \
                if (v == 3 || v == 4) {                                                         \
                    row[v == 3 ? 0 : c - 1] = inf;                                              \
                    row[v == 3 ? c - 1 : 0] = c > 1 ? nan : row[0];                             \
                }                                                                               \
            }                                                                                   \
            run_lse_##SFX(k, c, -1, v == 0 ? "all -inf" : v == 1 ? "-inf, +inf" : v == 2 ? "-inf, nan" \
                                    : v < 5 ? "+inf, nan" : v == 5 ? "huge" : "tiny");          \
            ++*cases;                                                                           \
        }                                                                                       \
        /* the VJP's edges: a row of -inf (lse -inf: NaN), lse NaN, lse +inf, x +-inf, NaN */  \
        lse_fill_##SFX(c, 0, -10, 10);                                                          \
        for (int r = 0; r < ROWS; r++) lg_##SFX[r] = (T)uniform(-3, 3);                         \
        for (int i = 0; i < c; i++) lx_##SFX[i] = -inf;                                         \
        ll_##SFX[0] = -inf;                                                                     \
        if (c > 1) lx_##SFX[1] = (T)2; /* a finite x under lse = -inf: g * inf */               \
        ll_##SFX[1] = nan;                                                                      \
        ll_##SFX[2] = inf;                                                                      \
        lx_##SFX[2 * ld + (c - 1)] = inf;                                                       \
        ll_##SFX[3] = (T)20;                                                                    \
        lx_##SFX[3 * ld + c / 2] = nan;                                                         \
        lx_##SFX[3 * ld] = -inf;                                                                \
        ll_##SFX[4] = (T)15;                                                                    \
        lg_##SFX[4] = (T)0;                                                                     \
        run_lse_vjp_##SFX(k, c, "edges");                                                       \
        ++*cases;                                                                               \
    }                                                                                           \
                                                                                                \
    static void check_lse_##SFX(const sxp_kernels *k) {                                         \
        long before = failures, cases = 0;                                                      \
        static long double xl[LMAXC];                                                           \
        lse_worst = 0;                                                                          \
        /* an empty row: -inf, and 0 rows: nothing written */                                   \
        lr_##SFX[0] = (T)0;                                                                     \
        k->logsumexp_##SFX((const char *)lx_##SFX, 0, (char *)lr_##SFX, (sxp_ssize)sizeof(T),   \
                           1, 0);                                                               \
        if (lr_##SFX[0] != (T)-INFINITY) FAIL("%s logsumexp_" #SFX " of an empty row", k->name); \
        lr_##SFX[0] = (T)7;                                                                     \
        k->logsumexp_##SFX((const char *)lx_##SFX, 0, (char *)lr_##SFX, (sxp_ssize)sizeof(T),   \
                           0, 5);                                                               \
        if (lr_##SFX[0] != (T)7) FAIL("%s logsumexp_" #SFX " wrote for 0 rows", k->name);      \
        int nlong = (int)(sizeof long_lengths / sizeof long_lengths[0]);                        \
        for (int j = 0; j < 200 + nlong; j++) {                                                 \
            int c = j < 200 ? j + 1 : long_lengths[j - 200];                                    \
            if (quick && c > 72 && c % 9 != 0 && !(c >= 127 && c <= 129) && c != 1025 &&        \
                c != 5000)                                                                      \
                continue;                                                                       \
            int ld = c + PAD;                                                                   \
            double ranges[3][2] = {{-10, 10}, {-1, 1}, {sizeof(T) == 4 ? -80 : -700, 60}};      \
            for (int kind = 0; kind < 4; kind++)                                                \
                for (int g = 0; g < 3; g++) {                                                   \
                    if (kind == 3 && g > 0) continue;                                           \
                    lse_fill_##SFX(c, kind, ranges[g][0], ranges[g][1]);                        \
                    run_lse_##SFX(k, c, -1, kind == 0 ? "uniform" : kind == 1 ? "increasing"    \
                                            : kind == 2 ? "decreasing" : "equal");              \
                    cases++;                                                                    \
                }                                                                               \
            if (c <= 200 || c % 1000 == 0 || c == 1025) lse_edges_##SFX(k, c, &cases);          \
            /* the VJP: lse of the rows (reference, rounded), shifted for rows 3 and 4 */       \
            lse_fill_##SFX(c, 0, -10, 10);                                                      \
            for (int r = 0; r < ROWS; r++) {                                                    \
                for (int i = 0; i < c; i++) xl[i] = lx_##SFX[r * ld + i];                       \
                ll_##SFX[r] = (T)(ref_lse(xl, c) + (r == 3 ? 5 : r == 4 ? -5 : 0));             \
                lg_##SFX[r] = (T)uniform(-3, 3);                                                \
            }                                                                                   \
            run_lse_vjp_##SFX(k, c, "finite");                                                  \
            cases++;                                                                            \
        }                                                                                       \
        printf("  logsumexp " #SFX ": %ld cases, max error %.3f ulp, %s\n", cases, lse_worst,   \
               failures == before ? "all agree" : "FAILED");                                    \
    }

DEFINE_LSE_CHECKS(float, f32, FLT_EPSILON)
DEFINE_LSE_CHECKS(double, f64, DBL_EPSILON)

/* ---- the cross-entropy with integer labels and its VJP against a long double reference ---- */

/* A finite loss is within CE_ULPS ulps (relative: every term of the loss is >= 0) of the
 * reference computed from the lse the kernel returned beside it (that lse is checked as
 * logsumexp's, within LSE_ULPS of its own reference). */
#define CE_ULPS 8.0L
/* A VJP entry (g S + h) p - g t: exp carries the rounding of x - lse (as in logsumexp's VJP),
 * and the difference may cancel: VJP_ULPS eps times (|a p| (2 + |x - lse|) + |g t|). */
#define CE_VJP_ULPS 4.0L
static double ce_worst;
static const double ce_smoothing[3] = {0.0, 0.1, 1.0};

/* A row's label: 0 counts, 1 ignored, 2 out of range. */
static int ref_state(int64_t l, int c, int has_ignore, long long ignore) {
    if (has_ignore && l == ignore) return 1;
    return l >= 0 && l < c ? 0 : 2;
}

#define DEFINE_CE_CHECKS(T, SFX, EPS, TINY)                                                     \
    static T ch_##SFX[ROWS], closs_##SFX[ROWS + 1], clse_##SFX[ROWS + 1];                       \
    static int64_t clab_##SFX[ROWS];                                                            \
                                                                                                \
    /* The loss of a row x of c numbers whose label state is st, from the kernel's lse: the    \
     * generic kernel's definition, sum_j t_j (lse - x_j) with no term where t_j = 0, +inf     \
     * where some lse - x_j of a positive target overflows in T. */                             \
    static long double ref_ce_##SFX(const T *x, int c, int64_t l, int st, T lse, double eps) {  \
        if (st != 0) return st == 1 ? 0 : (long double)NAN;                                     \
        if (!isfinite(lse)) return NAN;                                                         \
        if (eps == 0) return isinf((T)(lse - x[l])) ? INFINITY : (long double)lse - x[l];       \
        long double w = (long double)eps / c, s = (1 - (long double)eps) * ((long double)lse - x[l]); \
        for (int j = 0; j < c; j++) {                                                           \
            T gap = lse - x[j];                                                                 \
            if (isinf(gap)) return INFINITY;                                                    \
            s += w * ((long double)lse - x[j]);                                                 \
        }                                                                                       \
        return s;                                                                               \
    }                                                                                           \
                                                                                                \
    /* ce_labels and then ce_labels_vjp (on the lse it returned) on the ROWS rows of lx with    \
     * the labels in clab; every row checked. */                                                \
    static void run_ce_##SFX(const sxp_kernels *k, int c, double eps, int has_ignore,           \
                             long long ignore, const char *what) {                              \
        static long double xl[LMAXC];                                                           \
        int ld = c + PAD;                                                                       \
        sxp_labels lab = {(const char *)clab_##SFX, (sxp_ssize)sizeof(int64_t), eps, ignore,    \
                          has_ignore};                                                          \
        closs_##SFX[ROWS] = clse_##SFX[ROWS] = (T)12345;                                        \
        k->ce_labels_##SFX((const char *)lx_##SFX, ld * (sxp_ssize)sizeof(T), &lab,             \
                           (char *)closs_##SFX, (sxp_ssize)sizeof(T), (char *)clse_##SFX,       \
                           (sxp_ssize)sizeof(T), ROWS, c);                                      \
        if (closs_##SFX[ROWS] != (T)12345 || clse_##SFX[ROWS] != (T)12345)                      \
            FAIL("%s ce_labels_" #SFX " c=%d wrote past its outputs", k->name, c);              \
        for (int r = 0; r < ROWS; r++) {                                                        \
            const T *xr = lx_##SFX + r * ld;                                                    \
            for (int i = 0; i < c; i++) xl[i] = xr[i];                                          \
            int st = ref_state(clab_##SFX[r], c, has_ignore, ignore);                           \
            if (!lse_agree(clse_##SFX[r], ref_lse(xl, c), EPS)) {                               \
                FAIL("%s ce_labels_" #SFX " c=%d eps=%g row %d (%s): lse %a want %La", k->name, \
                     c, eps, r, what, (double)clse_##SFX[r], ref_lse(xl, c));                   \
                return;                                                                         \
            }                                                                                   \
            long double want = ref_ce_##SFX(xr, c, clab_##SFX[r], st, clse_##SFX[r], eps);      \
            T got = closs_##SFX[r];                                                             \
            int ok;                                                                             \
            if (isnan(want) || isinf(want) || want == 0) {                                      \
                ok = isnan(want) ? isnan(got) : got == (T)want;                                 \
            } else {                                                                            \
                double err = (double)(fabsl((long double)got - want) / (EPS * fabsl(want)));    \
                if (err > ce_worst) ce_worst = err;                                             \
                ok = err <= CE_ULPS;                                                            \
            }                                                                                   \
            if (!ok) {                                                                          \
                FAIL("%s ce_labels_" #SFX " c=%d eps=%g row %d label %lld (%s): got %a want %La", \
                     k->name, c, eps, r, (long long)clab_##SFX[r], what, (double)got, want);    \
                return;                                                                         \
            }                                                                                   \
        }                                                                                       \
        for (int r = 0; r < ROWS; r++) {                                                        \
            lg_##SFX[r] = (T)uniform(-3, 3);                                                    \
            ch_##SFX[r] = (T)uniform(-1, 1);                                                    \
        }                                                                                       \
        k->ce_labels_vjp_##SFX((const char *)lx_##SFX, ld * (sxp_ssize)sizeof(T), &lab,         \
                               (const char *)clse_##SFX, (sxp_ssize)sizeof(T),                  \
                               (const char *)lg_##SFX, (sxp_ssize)sizeof(T),                    \
                               (const char *)ch_##SFX, (sxp_ssize)sizeof(T), (char *)lo_##SFX,  \
                               ld * (sxp_ssize)sizeof(T), ROWS, c);                             \
        for (int r = 0; r < ROWS; r++) {                                                        \
            int st = ref_state(clab_##SFX[r], c, has_ignore, ignore);                           \
            long double l = clse_##SFX[r], g = lg_##SFX[r], h = ch_##SFX[r];                    \
            long double a = g * (st == 0 ? 1 : 0) + h, w = eps == 0 ? 0 : (long double)eps / c; \
            for (int i = 0; i < c; i++) {                                                       \
                long double xi = lx_##SFX[r * ld + i];                                          \
                long double t = st != 0 ? 0 : i == clab_##SFX[r] ? (1 - (long double)eps) + w : w; \
                long double p = isfinite(l) ? expl(xi - l) : (long double)NAN;                  \
                long double want = a * p - g * t;                                               \
                T got = lo_##SFX[r * ld + i];                                                   \
                long double tol = CE_VJP_ULPS * EPS *                                           \
                                  ((p == 0 ? 0 : fabsl(a * p) * (2 + fabsl(xi - l))) + fabsl(g * t)) \
                                  + TINY * (1 + fabsl(a)); /* p may underflow */                \
                int ok = isnan(want)   ? isnan(got)                                             \
                         : isinf(want) ? got == (T)want                                         \
                                       : fabsl((long double)got - want) <= tol;                 \
                if (!ok) {                                                                      \
                    FAIL("%s ce_labels_vjp_" #SFX " c=%d eps=%g row %d [%d] label %lld (%s): "  \
                         "got %a want %La",                                                     \
                         k->name, c, eps, r, i, (long long)clab_##SFX[r], what, (double)got,    \
                         want);                                                                 \
                    return;                                                                     \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
    }                                                                                           \
                                                                                                \
    /* Labels at the ends, in the middle, and one per row chosen by `kind`: 0 a valid one,     \
     * 1 the ignored -100, 2 out of range (c, -1 or a huge one), 3 an in-range ignored one. */ \
    static void ce_labels_set_##SFX(int c, int kind) {                                          \
        clab_##SFX[0] = 0;                                                                      \
        clab_##SFX[1] = c - 1;                                                                  \
        clab_##SFX[2] = c / 2;                                                                  \
        clab_##SFX[3] = (c * 2) / 3;                                                            \
        clab_##SFX[4] = kind == 0   ? c / 3                                                     \
                        : kind == 1 ? -100                                                      \
                        : kind == 2 ? (c % 3 == 0 ? c : c % 3 == 1 ? -1 : INT64_MAX)            \
                                    : c - 1;                                                    \
    }                                                                                           \
                                                                                                \
    /* Every eps, and the ignore options: none, -100, and (kind 3) the label c - 1 (unless    \
     * full, one of them per eps). */                                                           \
    static void run_ce_all_##SFX(const sxp_kernels *k, int c, const char *what, long *cases,    \
                                 int full) {                                                    \
        for (int e = 0; e < 3; e++)                                                             \
            for (int kind = 0; kind < 4; kind++) {                                              \
                if (!full && kind != e + 1) continue; /* one per eps */                         \
                ce_labels_set_##SFX(c, kind);                                                   \
                run_ce_##SFX(k, c, ce_smoothing[e], kind == 1 || kind == 3,                     \
                             kind == 3 ? c - 1 : -100, what);                                   \
                ++*cases;                                                                       \
            }                                                                                   \
    }                                                                                           \
                                                                                                \
    /* (every ignore option at every eps up to 64 numbers a row, one per eps beyond) */        \
    static void ce_edges_##SFX(const sxp_kernels *k, int c, long *cases) {                      \
        const int full = !quick && c <= 64;                                                     \
        const T inf = (T)INFINITY, nan = (T)NAN;                                                \
        const T big = (T)(sizeof(T) == 4 ? 3e38 : 1e308);                                       \
        int ld = c + PAD;                                                                       \
        const T specials[3] = {nan, inf, -inf};                                                 \
        /* one special value at the same position p of every row, at the label of some */      \
        int pos[4] = {0, c / 2, c - 1, (c * 2) / 3};                                            \
        for (int q = 0; q < 4; q++)                                                             \
            for (int s = 0; s < 3; s++) {                                                       \
                lse_fill_##SFX(c, 0, -10, 10);                                                  \
                for (int r = 0; r < ROWS; r++) lx_##SFX[r * ld + pos[q]] = specials[s];         \
                run_ce_all_##SFX(k, c, s == 0 ? "nan" : s == 1 ? "+inf" : "-inf", cases, full); \
            }                                                                                   \
        /* whole rows: all -inf; -inf with one finite value (at a label, or not); huge values  \
         * near the largest finite; huge ones of both signs (lse - x overflows); tiny ones */  \
        for (int v = 0; v < 6; v++) {                                                           \
            lse_fill_##SFX(c, 0, -10, 10);                                                      \
            for (int r = 0; r < ROWS; r++) {                                                    \
                T *row = lx_##SFX + r * ld;                                                     \
                for (int i = 0; i < c; i++)                                                     \
                    row[i] = v <= 2  ? -inf                                                     \
                             : v == 3 ? (T)(big * (T)(1 - 0.01 * (i % 7)))                      \
                             : v == 4 ? (i % 2 ? -big : big)                                    \
                                      : (T)(-1e30 * (1 + 0.01 * (i % 5)));                      \
                if (v == 1) row[c / 2] = (T)2.5;                                                \
                if (v == 2) row[(c * 2) / 3] = (T)-3;                                           \
            }                                                                                   \
            run_ce_all_##SFX(k, c, v == 0 ? "all -inf" : v <= 2 ? "-inf and one finite" : v == 3 \
                                   ? "huge" : v == 4 ? "huge of both signs" : "tiny", cases,    \
                             full);                                                             \
        }                                                                                       \
    }                                                                                           \
                                                                                                \
    static void check_ce_##SFX(const sxp_kernels *k) {                                          \
        long before = failures, cases = 0;                                                      \
        ce_worst = 0;                                                                           \
        /* rows of no classes: every label out of range (NaN) or ignored (0), lse -inf; no     \
         * rows: nothing written */                                                             \
        sxp_labels lab = {(const char *)clab_##SFX, (sxp_ssize)sizeof(int64_t), 0.1, 0, 1};     \
        clab_##SFX[0] = 0;                                                                      \
        clab_##SFX[1] = 1;                                                                      \
        closs_##SFX[0] = closs_##SFX[1] = clse_##SFX[0] = clse_##SFX[1] = (T)7;                 \
        k->ce_labels_##SFX((const char *)lx_##SFX, 0, &lab, (char *)closs_##SFX,                \
                           (sxp_ssize)sizeof(T), (char *)clse_##SFX, (sxp_ssize)sizeof(T), 2, 0); \
        if (!(closs_##SFX[0] == 0 && isnan(closs_##SFX[1]) && clse_##SFX[0] == -INFINITY &&     \
              clse_##SFX[1] == -INFINITY))                                                      \
            FAIL("%s ce_labels_" #SFX " of empty rows", k->name);                               \
        closs_##SFX[0] = clse_##SFX[0] = (T)7;                                                  \
        k->ce_labels_##SFX((const char *)lx_##SFX, 0, &lab, (char *)closs_##SFX,                \
                           (sxp_ssize)sizeof(T), (char *)clse_##SFX, (sxp_ssize)sizeof(T), 0, 5); \
        if (closs_##SFX[0] != (T)7 || clse_##SFX[0] != (T)7)                                    \
            FAIL("%s ce_labels_" #SFX " wrote for 0 rows", k->name);                            \
        int nlong = (int)(sizeof long_lengths / sizeof long_lengths[0]);                        \
        for (int j = 0; j < 200 + nlong; j++) {                                                 \
            int c = j < 200 ? j + 1 : long_lengths[j - 200];                                    \
            if (quick && c > 72 && c % 9 != 0 && !(c >= 127 && c <= 129) && c != 1025 &&        \
                c != 5000)                                                                      \
                continue;                                                                       \
            double ranges[3][2] = {{-10, 10}, {-1, 1}, {sizeof(T) == 4 ? -80 : -700, 60}};      \
            for (int kind = 0; kind < 4; kind++)                                                \
                for (int g = 0; g < 3; g++) {                                                   \
                    if (kind == 3 && g > 0) continue;                                           \
                    if (quick && kind != 0 && g != 0) continue;                                 \
                    lse_fill_##SFX(c, kind, ranges[g][0], ranges[g][1]);                        \
                    run_ce_all_##SFX(k, c, kind == 0 ? "uniform" : kind == 1 ? "increasing"     \
                                           : kind == 2 ? "decreasing" : "equal", &cases,        \
                                     !quick && c <= 200);                                       \
                }                                                                               \
            if (c <= 200 || c == 1025) ce_edges_##SFX(k, c, &cases);                            \
        }                                                                                       \
        printf("  ce_labels " #SFX ": %ld cases, max loss error %.3f ulp, %s\n", cases,         \
               ce_worst, failures == before ? "all agree" : "FAILED");                          \
    }

DEFINE_CE_CHECKS(float, f32, FLT_EPSILON, FLT_TRUE_MIN)
DEFINE_CE_CHECKS(double, f64, DBL_EPSILON, DBL_TRUE_MIN)

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--quick") == 0) quick = 1;
    const sxp_kernels *levels[3];
    int n = sxp_usable_kernels(levels);
    const char *built[] = {
#if defined(SXP_X86_LEVELS)
        "avx512", "avx2",
#endif
        NULL};
    for (int b = 0; built[b] != NULL; b++) {
        int have = 0;
        for (int i = 0; i < n; i++) have |= strcmp(levels[i]->name, built[b]) == 0;
        if (!have) printf("level %s: skipped (this CPU does not run it)\n", built[b]);
    }
    for (int i = 0; i < n; i++) {
        const sxp_kernels *k = levels[i];
        printf("level %s (%d-byte vectors)%s\n", k->name, k->vector_bytes, quick ? ", quick" : "");
        clock_t t0 = clock();
        check_exp_f32(k, i == 0 ? 1 : 61);
        clock_t t1 = clock();
        check_exp_f64(k);
        check_kernels_f32(k);
        check_kernels_f64(k);
        check_lse_f32(k);
        check_lse_f64(k);
        check_ce_f32(k);
        check_ce_f64(k);
        printf("  (%.1f s for exp_f32, %.1f s for the rest)\n", (double)(t1 - t0) / CLOCKS_PER_SEC,
               (double)(clock() - t1) / CLOCKS_PER_SEC);
    }
    if (failures) printf("%ld failures\n", failures);
    else printf("all passed at %d level%s\n", n, n == 1 ? "" : "s");
    return failures ? 1 : 0;
}
