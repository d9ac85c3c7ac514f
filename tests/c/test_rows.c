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
 *     127..129, 256: what qemu runs in under a minute).
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
        printf("  (%.1f s for exp_f32, %.1f s for the rest)\n", (double)(t1 - t0) / CLOCKS_PER_SEC,
               (double)(clock() - t1) / CLOCKS_PER_SEC);
    }
    if (failures) printf("%ld failures\n", failures);
    else printf("all passed at %d level%s\n", n, n == 1 ? "" : "s");
    return failures ? 1 : 0;
}
