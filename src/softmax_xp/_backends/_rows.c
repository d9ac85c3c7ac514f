/*
 * Layer 3, NumPy: fused row kernels in C (module softmax_xp._backends._rows).
 *
 * NumPy cannot fuse exp with the sum that follows it, so its softmax makes five passes over
 * each block. Here a row of C contiguous numbers takes three: the maximum, exp(x - max) written
 * out and summed in the same loop, the scaling (log_softmax: the sum only, then x - max - log s).
 * The second and third passes read the row from cache, so the memory traffic is the copy's:
 * read x once, write y once. The VJP/JVP kernels take two passes over two rows.
 *
 * Every function takes 2-D buffers (rows, C) whose rows are contiguous (any row stride), checks
 * their format, shape and writability, and releases the GIL while it works; the Python layer
 * (_numpy.py) hands out row blocks to threads and keeps every other case (masks, strided rows).
 *
 * Arithmetic matches the generic kernels (softmax_xp._generic), NaN placement included: a row
 * whose maximum is not finite is NaN throughout; a NaN anywhere makes the sum NaN and so the row.
 * Sums and dot products accumulate in blocks whose totals are added in double: at least as
 * accurate as the pairwise float32 sums of the generic code (the short-row code sums its rows
 * of at most 32 numbers as a tree in the row's dtype). exp is our own (below), branch-free so
 * that the loops vectorise; on x86-64 Linux with GCC each kernel is compiled for AVX-512,
 * AVX2+FMA and baseline SSE2, and the loader picks the best the CPU has.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define SXP_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define SXP_CLONES
#endif

/* Vectors of one AVX-512 register (GCC/Clang vector extensions): 16 floats or 8 doubles; the
 * compiler splits them for AVX2 or SSE2 (wider generic vectors of doubles lose their compares to
 * scalar code). Sums accumulate in 16 double lanes. */
#if defined(__GNUC__)
#define SXP_INLINE static inline __attribute__((always_inline))
#else
#define SXP_INLINE static inline
#endif
typedef float f32v __attribute__((vector_size(64)));
typedef float f32vu __attribute__((vector_size(64), aligned(4)));
typedef int32_t f32i __attribute__((vector_size(64)));
typedef uint32_t f32u __attribute__((vector_size(64)));
typedef double f64v __attribute__((vector_size(64)));
typedef double f64vu __attribute__((vector_size(64), aligned(8)));
typedef int64_t f64i __attribute__((vector_size(64)));
typedef uint64_t f64u __attribute__((vector_size(64)));
typedef double f64x4 __attribute__((vector_size(32)));
typedef double f64x2 __attribute__((vector_size(16)));
typedef float f32x8 __attribute__((vector_size(32)));
typedef float f32x4 __attribute__((vector_size(16)));
typedef float f32x2 __attribute__((vector_size(8)));
typedef int32_t i32x8 __attribute__((vector_size(32)));
typedef int32_t i32x4 __attribute__((vector_size(16)));
typedef int32_t i32x2 __attribute__((vector_size(8)));
typedef int64_t i64x4 __attribute__((vector_size(32)));
typedef int64_t i64x2 __attribute__((vector_size(16)));

#define BC(V, c) ((V){0} + (c)) /* broadcast */
#define SEL(V, I, m, a, b) ((V)(((m) & (I)(a)) | (~(m) & (I)(b))))

/* ---------------------------------------------------------------------------------------------
 * exp, branch-free, 16 lanes at a time. x = n ln2 + r with n = round(x / ln2) and |r| <= ln2/2
 * (ln2 split in a high part with trailing zero bits, so that n * LN2_HI is exact, and a low
 * part); exp(r) by its Taylor polynomial (float32: degree 7, truncation error r^8/8! < 5.3e-9
 * relative, under 0.1 ulp; float64: degree 13, r^14/14! < 4.2e-18, under 0.03 ulp); then 2^n as
 * two powers of two 2^(n/2) 2^(n - n/2) built from their bit patterns, so that results in the
 * subnormal range round once. Rounding to an integer adds and subtracts 1.5 * 2^23 (2^52), whose
 * low mantissa bits then hold n: no float-to-int conversion (none is defined for NaN). Inputs
 * are clamped to where the result is 0 or inf anyway; NaN passes through (the polynomial is
 * NaN). Measured against
 * float64 exp over the whole range: at most 1 ulp (tests/test_fastpaths.py).
 * ------------------------------------------------------------------------------------------- */

SXP_INLINE f32v vexp_f32(f32v x) {
    const float shifter = 12582912.0f; /* 1.5 * 2^23 */
    f32v xc = SEL(f32v, f32i, x < -104.0f, BC(f32v, -104.0f), x); /* exp(-104) < 2^-150: 0 */
    xc = SEL(f32v, f32i, xc > 89.0f, BC(f32v, 89.0f), xc);         /* exp(89) > FLT_MAX: inf */
    f32v t = xc * 1.44269504088896341f + shifter;
    f32v n = t - shifter;
    f32v r = xc - n * 0.693145751953125f; /* ln 2 to 16 bits: n * ln2_hi is exact, |n| < 2^8 */
    r = r - n * 1.42860682030941723212e-6f; /* ln 2 - ln2_hi */
    f32v p = BC(f32v, 1.0f / 5040.0f);
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    f32u ni = (f32u)t - (f32u)BC(f32v, shifter); /* n, in [-150, 129], two's complement */
    f32u n1 = (f32u)((f32i)ni >> 1);             /* floor(n / 2) */
    f32u n2 = ni - n1;
    return p * (f32v)((n1 + 127) << 23) * (f32v)((n2 + 127) << 23); /* NaN: p is NaN */
}

SXP_INLINE f64v vexp_f64(f64v x) {
    const double shifter = 6755399441055744.0; /* 1.5 * 2^52 */
    f64v xc = SEL(f64v, f64i, x < -746.0, BC(f64v, -746.0), x); /* exp(-746) < 2^-1075: 0 */
    xc = SEL(f64v, f64i, xc > 710.0, BC(f64v, 710.0), xc);       /* exp(710) > DBL_MAX: inf */
    f64v t = xc * 1.4426950408889634074 + shifter;
    f64v n = t - shifter;
    f64v r = xc - n * 6.93147180369123816490e-01; /* ln 2 to 32 bits (fdlibm's split) */
    r = r - n * 1.90821492927058770002e-10;
    /* Terms r^4/4! .. r^13/13! as h(r) r^4, h by Estrin's scheme (four multiply-adds deep, not
     * nine: short rows are bound by this chain's latency); the last four steps by Horner's, which
     * keeps the rounding of the large low-order terms as good as plain Horner (h's own rounding
     * is scaled down by r^4/4! < 6e-4). */
    f64v r2 = r * r, r4 = r2 * r2;
    f64v e0 = r * (1.0 / 120.0) + 1.0 / 24.0, e1 = r * (1.0 / 5040.0) + 1.0 / 720.0;
    f64v e2 = r * (1.0 / 362880.0) + 1.0 / 40320.0;
    f64v e3 = r * (1.0 / 39916800.0) + 1.0 / 3628800.0;
    f64v e4 = r * (1.0 / 6227020800.0) + 1.0 / 479001600.0; /* 1/13!, 1/12! */
    f64v h = (e0 + e1 * r2) + (e2 + e3 * r2) * r4 + e4 * (r4 * r4);
    f64v p = h * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    f64u ni = (f64u)t - (f64u)BC(f64v, shifter); /* n, in [-1077, 1025], two's complement */
    f64u n1 = (f64u)((f64i)ni >> 1);
    f64u n2 = ni - n1;
    return p * (f64v)((n1 + 1023) << 52) * (f64v)((n2 + 1023) << 52); /* NaN: p is NaN */
}

#define HALF(v, ...) __builtin_shufflevector(v, v, __VA_ARGS__)

/* Horizontal sums (in double) and maxima by halving: log2(lanes) steps, not a serial chain. */
SXP_INLINE double hsum_f64(f64v a) {
    f64x4 b = HALF(a, 0, 1, 2, 3) + HALF(a, 4, 5, 6, 7);
    f64x2 c = HALF(b, 0, 1) + HALF(b, 2, 3);
    return c[0] + c[1];
}

SXP_INLINE double hsum_f32(f32v a) {
    f64v lo = __builtin_convertvector(HALF(a, 0, 1, 2, 3, 4, 5, 6, 7), f64v);
    f64v hi = __builtin_convertvector(HALF(a, 8, 9, 10, 11, 12, 13, 14, 15), f64v);
    return hsum_f64(lo + hi);
}

/* The same in the vector's own precision: the short-row code's per-row sums of at most 32
 * numbers (a tree of 4 or 5 roundings, as in a pairwise sum). */
SXP_INLINE float hsum_short_f32(f32v a) {
    f32x8 b = HALF(a, 0, 1, 2, 3, 4, 5, 6, 7) + HALF(a, 8, 9, 10, 11, 12, 13, 14, 15);
    f32x4 c = HALF(b, 0, 1, 2, 3) + HALF(b, 4, 5, 6, 7);
    f32x2 d = HALF(c, 0, 1) + HALF(c, 2, 3);
    return d[0] + d[1];
}

SXP_INLINE double hsum_short_f64(f64v a) { return hsum_f64(a); }

SXP_INLINE float hmax_f32(f32v a) {
    f32x8 lo8 = HALF(a, 0, 1, 2, 3, 4, 5, 6, 7), hi8 = HALF(a, 8, 9, 10, 11, 12, 13, 14, 15);
    f32x8 b = SEL(f32x8, i32x8, lo8 > hi8, lo8, hi8);
    f32x4 lo4 = HALF(b, 0, 1, 2, 3), hi4 = HALF(b, 4, 5, 6, 7);
    f32x4 c = SEL(f32x4, i32x4, lo4 > hi4, lo4, hi4);
    f32x2 lo2 = HALF(c, 0, 1), hi2 = HALF(c, 2, 3);
    f32x2 d = SEL(f32x2, i32x2, lo2 > hi2, lo2, hi2);
    return d[0] > d[1] ? d[0] : d[1];
}

SXP_INLINE double hmax_f64(f64v a) {
    f64x4 lo4 = HALF(a, 0, 1, 2, 3), hi4 = HALF(a, 4, 5, 6, 7);
    f64x4 b = SEL(f64x4, i64x4, lo4 > hi4, lo4, hi4);
    f64x2 lo2 = HALF(b, 0, 1), hi2 = HALF(b, 2, 3);
    f64x2 c = SEL(f64x2, i64x2, lo2 > hi2, lo2, hi2);
    return c[0] > c[1] ? c[0] : c[1];
}

/* ---------------------------------------------------------------------------------------------
 * Row kernels, written once for float (suffix f32) and double (f64).
 *
 * Reductions run over blocks of SUM_BLOCK vectors: within a block two vector accumulators of the
 * row's own dtype (independent chains, in registers); each block's total is added in double. A
 * float32 lane so sums at most 32 numbers before its total moves to double: as accurate as a
 * pairwise sum, at the speed of plain vector adds. A row's last c % LANES numbers go through the
 * same vector code from a padded local copy (padding that adds 0).
 * ------------------------------------------------------------------------------------------- */
#define SUM_BLOCK 64
#define SHORT_GROUP 4

/* The loop shared by the reductions: for each vector of the row (two per step), OP(..., i, acc)
 * adds its contribution to acc; TAIL(..., i, k, acc) adds that of the last k < LANES numbers. */
#define BLOCKED_SUM(T, SFX, V, VU, LANES, c, OP, TAIL)                                           \
    double total = 0.0;                                                                           \
    for (Py_ssize_t b0 = 0; b0 < (c); b0 += SUM_BLOCK * LANES) {                                  \
        Py_ssize_t end = (c) - b0 < SUM_BLOCK * LANES ? (c) : b0 + SUM_BLOCK * LANES;             \
        V s0 = BC(V, (T)0), s1 = s0;                                                              \
        Py_ssize_t i = b0;                                                                        \
        for (; i + 2 * LANES <= end; i += 2 * LANES) {                                            \
            OP(SFX, T, V, VU, i, s0);                                                             \
            OP(SFX, T, V, VU, i + LANES, s1);                                                     \
        }                                                                                         \
        if (i + LANES <= end) {                                                                   \
            OP(SFX, T, V, VU, i, s0);                                                             \
            i += LANES;                                                                           \
        }                                                                                         \
        if (i < end) TAIL(SFX, T, V, VU, i, end - i, s1);                                         \
        total += hsum_##SFX(s0 + s1);                                                             \
    }

#define DEFINE_KERNELS(T, SFX, V, VU, I, LANES)                                                   \
    SXP_INLINE V load_pad_##SFX(const T *p, Py_ssize_t k, T pad) {                                \
        T buf[LANES];                                                                             \
        for (int j = 0; j < LANES; j++) buf[j] = j < k ? p[j] : pad;                              \
        return *(const VU *)buf;                                                                  \
    }                                                                                             \
                                                                                                  \
    SXP_INLINE void store_part_##SFX(T *p, V v, Py_ssize_t k) {                                   \
        for (int j = 0; j < k; j++) p[j] = v[j];                                                  \
    }                                                                                             \
                                                                                                  \
    /* Rows of at most 2 * LANES numbers are nv = 1 or 2 vectors each (the last one padded);      \
     * SHORT_GROUP rows at a time, so that the short dependency chains of several rows (maximum,  \
     * exp, sum, scale) overlap. nv is a constant at each (inlined) call. */                      \
    SXP_INLINE V load_row_##SFX(const T *p, Py_ssize_t c, T pad) {                                \
        return c == LANES ? *(const VU *)p : load_pad_##SFX(p, c, pad);                           \
    }                                                                                             \
                                                                                                  \
    SXP_INLINE void store_row_##SFX(T *p, V v, Py_ssize_t c) {                                    \
        if (c == LANES)                                                                           \
            *(VU *)p = v;                                                                         \
        else                                                                                      \
            store_part_##SFX(p, v, c);                                                            \
    }                                                                                             \
                                                                                                  \
    /* The row's vectors: v0 (full when nv == 2) and v1 (its last c - LANES numbers). */          \
    SXP_INLINE void load_short_##SFX(const char *p, Py_ssize_t c, int nv, T pad, V *v0, V *v1) {  \
        if (nv == 1) {                                                                            \
            *v0 = load_row_##SFX((const T *)p, c, pad);                                           \
        } else {                                                                                  \
            *v0 = *(const VU *)p;                                                                 \
            *v1 = load_row_##SFX((const T *)p + LANES, c - LANES, pad);                           \
        }                                                                                         \
    }                                                                                             \
                                                                                                  \
    SXP_INLINE void store_short_##SFX(char *p, Py_ssize_t c, int nv, V v0, V v1) {                \
        if (nv == 1) {                                                                            \
            store_row_##SFX((T *)p, v0, c);                                                       \
        } else {                                                                                  \
            *(VU *)p = v0;                                                                        \
            store_row_##SFX((T *)p + LANES, v1, c - LANES);                                       \
        }                                                                                         \
    }                                                                                             \
                                                                                                  \
    SXP_INLINE void forward_short_##SFX(const char *x, Py_ssize_t ldx, char *y, Py_ssize_t ldy,   \
                                        Py_ssize_t c, int take_log, int nv) {                     \
        V v0[SHORT_GROUP], v1[SHORT_GROUP], o0[SHORT_GROUP], o1[SHORT_GROUP];                     \
        T m[SHORT_GROUP];                                                                         \
        for (int r = 0; r < SHORT_GROUP; r++) {                                                   \
            load_short_##SFX(x + r * ldx, c, nv, (T)-INFINITY, &v0[r], &v1[r]);                   \
            m[r] = (T)hmax_##SFX(nv == 1 ? v0[r] : SEL(V, I, v1[r] > v0[r], v1[r], v0[r]));       \
        }                                                                                         \
        for (int r = 0; r < SHORT_GROUP; r++) {                                                   \
            V e0 = vexp_##SFX(v0[r] - m[r]), e1 = e0;                                             \
            if (nv == 2) e1 = vexp_##SFX(v1[r] - m[r]);                                           \
            double s = hsum_short_##SFX(nv == 1 ? e0 : e0 + e1);                                  \
            if (take_log) {                                                                       \
                T ls = (T)log(s);                                                                 \
                o0[r] = (v0[r] - m[r]) - ls;                                                      \
                o1[r] = (v1[r] - m[r]) - ls;                                                      \
            } else {                                                                              \
                T inv = (T)(1.0 / s);                                                             \
                o0[r] = e0 * inv;                                                                 \
                o1[r] = e1 * inv;                                                                 \
            }                                                                                     \
            if (!isfinite(m[r])) o0[r] = o1[r] = BC(V, (T)NAN);                                   \
        }                                                                                         \
        for (int r = 0; r < SHORT_GROUP; r++) store_short_##SFX(y + r * ldy, c, nv, o0[r], o1[r]);\
    }                                                                                             \
                                                                                                  \
    /* kind 0: y * (v - <y, v>); 1: g - exp(l) sum(g); 2: v - <exp(l), v>. */                     \
    SXP_INLINE void pair_short_##SFX(int kind, const char *a, Py_ssize_t lda, const char *b,      \
                                     Py_ssize_t ldb, char *o, Py_ssize_t ldo, Py_ssize_t c,       \
                                     int nv) {                                                    \
        V a0[SHORT_GROUP], a1[SHORT_GROUP], b0[SHORT_GROUP], b1[SHORT_GROUP];                     \
        V o0[SHORT_GROUP], o1[SHORT_GROUP];                                                       \
        for (int r = 0; r < SHORT_GROUP; r++) {                                                   \
            load_short_##SFX(a + r * lda, c, nv, kind == 2 ? (T)-INFINITY : (T)0, &a0[r], &a1[r]);\
            load_short_##SFX(b + r * ldb, c, nv, (T)0, &b0[r], &b1[r]);                           \
        }                                                                                         \
        for (int r = 0; r < SHORT_GROUP; r++) {                                                   \
            if (kind == 0) {                                                                      \
                V p = a0[r] * b0[r];                                                              \
                if (nv == 2) p += a1[r] * b1[r];                                                  \
                T d = (T)hsum_short_##SFX(p);                                                     \
                o0[r] = a0[r] * (b0[r] - d);                                                      \
                o1[r] = a1[r] * (b1[r] - d);                                                      \
            } else if (kind == 1) {                                                               \
                T s = (T)hsum_short_##SFX(nv == 1 ? b0[r] : b0[r] + b1[r]);                       \
                o0[r] = b0[r] - vexp_##SFX(a0[r]) * s;                                            \
                if (nv == 2) o1[r] = b1[r] - vexp_##SFX(a1[r]) * s;                               \
            } else {                                                                              \
                V p = vexp_##SFX(a0[r]) * b0[r];                                                  \
                if (nv == 2) p += vexp_##SFX(a1[r]) * b1[r];                                      \
                T d = (T)hsum_short_##SFX(p);                                                     \
                o0[r] = b0[r] - d;                                                                \
                o1[r] = b1[r] - d;                                                                \
            }                                                                                     \
        }                                                                                         \
        for (int r = 0; r < SHORT_GROUP; r++) store_short_##SFX(o + r * ldo, c, nv, o0[r], o1[r]);\
    }                                                                                             \
                                                                                                  \
    SXP_INLINE T row_max_##SFX(const T *x, Py_ssize_t c) {                                        \
        V m0 = BC(V, (T)-INFINITY), m1 = m0;                                                      \
        Py_ssize_t i = 0;                                                                         \
        for (; i + 2 * LANES <= c; i += 2 * LANES) {                                              \
            V u = *(const VU *)(x + i), v = *(const VU *)(x + i + LANES);                         \
            m0 = SEL(V, I, u > m0, u, m0);                                                        \
            m1 = SEL(V, I, v > m1, v, m1);                                                        \
        }                                                                                         \
        if (i + LANES <= c) {                                                                     \
            V u = *(const VU *)(x + i);                                                           \
            m0 = SEL(V, I, u > m0, u, m0);                                                        \
            i += LANES;                                                                           \
        }                                                                                         \
        T m = (T)hmax_##SFX(SEL(V, I, m1 > m0, m1, m0));                                          \
        for (; i < c; i++) m = x[i] > m ? x[i] : m;                                               \
        return m;                                                                                 \
    }                                                                                             \
                                                                                                  \
    /* Sum of exp(x - m), with exp(x - m) stored in y (padding -inf: exp gives 0). */             \
    SXP_INLINE double row_expsum_store_##SFX(const T *x, T m, T *y, Py_ssize_t c) {               \
        BLOCKED_SUM(T, SFX, V, VU, LANES, c, EXPSUM_STORE_OP, EXPSUM_STORE_TAIL)                  \
        return total;                                                                             \
    }                                                                                             \
                                                                                                  \
    SXP_INLINE double row_expsum_##SFX(const T *x, T m, Py_ssize_t c) {                           \
        BLOCKED_SUM(T, SFX, V, VU, LANES, c, EXPSUM_OP, EXPSUM_TAIL)                              \
        return total;                                                                             \
    }                                                                                             \
                                                                                                  \
    /* sum(a * b) (padding 0), sum(exp(a) * b) (padding -inf, 0), sum(a) (padding 0). */          \
    SXP_INLINE double row_dot_##SFX(const T *a, const T *b, Py_ssize_t c) {                       \
        BLOCKED_SUM(T, SFX, V, VU, LANES, c, DOT_OP, DOT_TAIL)                                    \
        return total;                                                                             \
    }                                                                                             \
                                                                                                  \
    SXP_INLINE double row_expdot_##SFX(const T *a, const T *b, Py_ssize_t c) {                    \
        BLOCKED_SUM(T, SFX, V, VU, LANES, c, EXPDOT_OP, EXPDOT_TAIL)                              \
        return total;                                                                             \
    }                                                                                             \
                                                                                                  \
    SXP_INLINE double row_sum_##SFX(const T *a, Py_ssize_t c) {                                   \
        BLOCKED_SUM(T, SFX, V, VU, LANES, c, SUM_OP, SUM_TAIL)                                    \
        return total;                                                                             \
    }                                                                                             \
                                                                                                  \
    SXP_CLONES static void forward_##SFX(const char *x, Py_ssize_t ldx, char *y, Py_ssize_t ldy,  \
                                         Py_ssize_t n, Py_ssize_t c, int take_log) {              \
        Py_ssize_t row = 0;                                                                       \
        if (c <= LANES)                                                                           \
            for (; row + SHORT_GROUP <= n; row += SHORT_GROUP)                                    \
                forward_short_##SFX(x + row * ldx, ldx, y + row * ldy, ldy, c, take_log, 1);      \
        else if (c <= 2 * LANES)                                                                  \
            for (; row + SHORT_GROUP <= n; row += SHORT_GROUP)                                    \
                forward_short_##SFX(x + row * ldx, ldx, y + row * ldy, ldy, c, take_log, 2);      \
        for (; row < n; row++) {                                                                  \
            const T *xr = (const T *)(x + row * ldx);                                             \
            T *yr = (T *)(y + row * ldy);                                                         \
            T m = row_max_##SFX(xr, c);                                                           \
            if (!isfinite(m)) { /* +-inf or all NaN: NaN throughout, as in torch and JAX */       \
                for (Py_ssize_t i = 0; i < c; i++) yr[i] = (T)NAN;                                \
                continue;                                                                         \
            }                                                                                     \
            Py_ssize_t i = 0;                                                                     \
            if (take_log) {                                                                       \
                T ls = (T)log(row_expsum_##SFX(xr, m, c));                                        \
                for (; i + LANES <= c; i += LANES)                                                \
                    *(VU *)(yr + i) = (*(const VU *)(xr + i) - m) - ls;                           \
                for (; i < c; i++) yr[i] = (xr[i] - m) - ls;                                      \
            } else {                                                                              \
                /* s is in [1, c] (the maximum contributes exp(0) = 1) or NaN: 1/s is safe */     \
                T inv = (T)(1.0 / row_expsum_store_##SFX(xr, m, yr, c));                          \
                for (; i + LANES <= c; i += LANES) *(VU *)(yr + i) *= inv;                        \
                for (; i < c; i++) yr[i] *= inv;                                                  \
            }                                                                                     \
        }                                                                                         \
    }                                                                                             \
                                                                                                  \
    /* The JVP/VJP kernels on n rows, each a reduction then an elementwise pass:                  \
     *   kind 0: y * (v - <y, v>), the softmax JVP and VJP (J is symmetric);                      \
     *   kind 1: g - exp(l) * sum(g), the log_softmax VJP;                                        \
     *   kind 2: v - <exp(l), v>, the log_softmax JVP.                                            \
     * Rows of at most two vectors go four at a time (kind 0: one vector only; its rows of two    \
     * were measured faster in the general loop). */                                              \
    SXP_CLONES static void pair_##SFX(int kind, const char *a, Py_ssize_t lda, const char *b,     \
                                      Py_ssize_t ldb, char *o, Py_ssize_t ldo, Py_ssize_t n,      \
                                      Py_ssize_t c) {                                             \
        Py_ssize_t row = 0;                                                                       \
        if (c <= LANES)                                                                           \
            for (; row + SHORT_GROUP <= n; row += SHORT_GROUP)                                    \
                pair_short_##SFX(kind, a + row * lda, lda, b + row * ldb, ldb, o + row * ldo, ldo,\
                                 c, 1);                                                           \
        else if (c <= 2 * LANES && kind != 0)                                                     \
            for (; row + SHORT_GROUP <= n; row += SHORT_GROUP)                                    \
                pair_short_##SFX(kind, a + row * lda, lda, b + row * ldb, ldb, o + row * ldo, ldo,\
                                 c, 2);                                                           \
        for (; row < n; row++) {                                                                  \
            const T *ar = (const T *)(a + row * lda);                                             \
            const T *br = (const T *)(b + row * ldb);                                             \
            T *or_ = (T *)(o + row * ldo);                                                        \
            Py_ssize_t i = 0;                                                                     \
            if (kind == 0) {                                                                      \
                T d = (T)row_dot_##SFX(ar, br, c);                                                \
                for (; i + LANES <= c; i += LANES)                                                \
                    *(VU *)(or_ + i) = *(const VU *)(ar + i) * (*(const VU *)(br + i) - d);       \
                for (; i < c; i++) or_[i] = ar[i] * (br[i] - d);                                  \
            } else if (kind == 1) {                                                               \
                T s = (T)row_sum_##SFX(br, c);                                                    \
                for (; i + LANES <= c; i += LANES)                                                \
                    *(VU *)(or_ + i) =                                                            \
                        *(const VU *)(br + i) - vexp_##SFX(*(const VU *)(ar + i)) * s;            \
                if (i < c) {                                                                      \
                    V e = vexp_##SFX(load_pad_##SFX(ar + i, c - i, (T)0));                        \
                    store_part_##SFX(or_ + i, load_pad_##SFX(br + i, c - i, (T)0) - e * s, c - i);\
                }                                                                                 \
            } else {                                                                              \
                T d = (T)row_expdot_##SFX(ar, br, c);                                             \
                for (; i + LANES <= c; i += LANES) *(VU *)(or_ + i) = *(const VU *)(br + i) - d;  \
                for (; i < c; i++) or_[i] = br[i] - d;                                            \
            }                                                                                     \
        }                                                                                         \
    }                                                                                             \
                                                                                                  \
    SXP_CLONES static void exp_##SFX(const T *x, T *y, Py_ssize_t c) {                            \
        Py_ssize_t i = 0;                                                                         \
        for (; i + LANES <= c; i += LANES) *(VU *)(y + i) = vexp_##SFX(*(const VU *)(x + i));     \
        if (i < c) store_part_##SFX(y + i, vexp_##SFX(load_pad_##SFX(x + i, c - i, 0)), c - i);   \
    }                                                                                             \
                                                                                                  \
    /* Dense Jacobians of n rows: out row (r, i) = y_i (delta_ij - y_j) (softmax) or              \
     * delta_ij - p_j with p = exp(l) (log_softmax; p in scratch, c numbers). */                  \
    SXP_CLONES static void jacobian_##SFX(const char *y, Py_ssize_t ldy, char *o, Py_ssize_t ldo, \
                                          Py_ssize_t n, Py_ssize_t c, int take_log, T *scratch) { \
        for (Py_ssize_t row = 0; row < n; row++) {                                                \
            const T *yr = (const T *)(y + row * ldy);                                             \
            const T *p = yr;                                                                      \
            if (take_log) {                                                                       \
                exp_##SFX(yr, scratch, c);                                                        \
                p = scratch;                                                                      \
            }                                                                                     \
            for (Py_ssize_t i = 0; i < c; i++) {                                                  \
                T *or_ = (T *)(o + (row * c + i) * ldo);                                          \
                T s = take_log ? (T)1 : p[i];                                                     \
                Py_ssize_t j = 0;                                                                 \
                for (; j + LANES <= c; j += LANES) *(VU *)(or_ + j) = -(*(const VU *)(p + j) * s);\
                for (; j < c; j++) or_[j] = -(p[j] * s);                                          \
                or_[i] = take_log ? 1 - p[i] : p[i] * (1 - p[i]);                                 \
            }                                                                                     \
        }                                                                                         \
    }

/* The per-vector steps of the reductions (the row pointers x, y, a, b and the maximum m are
 * those of the function they expand in). */
#define EXPSUM_STORE_OP(SFX, T, V, VU, i, acc)                                                    \
    do {                                                                                          \
        V e_ = vexp_##SFX(*(const VU *)(x + (i)) - m);                                            \
        *(VU *)(y + (i)) = e_;                                                                    \
        acc += e_;                                                                                \
    } while (0)
#define EXPSUM_STORE_TAIL(SFX, T, V, VU, i, k, acc)                                               \
    do {                                                                                          \
        V e_ = vexp_##SFX(load_pad_##SFX(x + (i), (k), (T)-INFINITY) - m);                        \
        store_part_##SFX(y + (i), e_, (k));                                                       \
        acc += e_;                                                                                \
    } while (0)
#define EXPSUM_OP(SFX, T, V, VU, i, acc) acc += vexp_##SFX(*(const VU *)(x + (i)) - m)
#define EXPSUM_TAIL(SFX, T, V, VU, i, k, acc)                                                     \
    acc += vexp_##SFX(load_pad_##SFX(x + (i), (k), (T)-INFINITY) - m)
#define DOT_OP(SFX, T, V, VU, i, acc) acc += *(const VU *)(a + (i)) * *(const VU *)(b + (i))
#define DOT_TAIL(SFX, T, V, VU, i, k, acc)                                                        \
    acc += load_pad_##SFX(a + (i), (k), (T)0) * load_pad_##SFX(b + (i), (k), (T)0)
#define EXPDOT_OP(SFX, T, V, VU, i, acc)                                                          \
    acc += vexp_##SFX(*(const VU *)(a + (i))) * *(const VU *)(b + (i))
#define EXPDOT_TAIL(SFX, T, V, VU, i, k, acc)                                                     \
    acc += vexp_##SFX(load_pad_##SFX(a + (i), (k), (T)-INFINITY)) *                               \
           load_pad_##SFX(b + (i), (k), (T)0)
#define SUM_OP(SFX, T, V, VU, i, acc) acc += *(const VU *)(a + (i))
#define SUM_TAIL(SFX, T, V, VU, i, k, acc) acc += load_pad_##SFX(a + (i), (k), (T)0)

DEFINE_KERNELS(float, f32, f32v, f32vu, f32i, 16)
DEFINE_KERNELS(double, f64, f64v, f64vu, f64i, 8)

/* ---------------------------------------------------------------------------------------------
 * Python bindings
 * ------------------------------------------------------------------------------------------- */

/* 0: float32, 1: float64, -1: anything else. */
static int kind_of(const Py_buffer *b) {
    const char *f = b->format;
    if (f[0] == '<' || f[0] == '=' || f[0] == '@') f++;
    if (f[1] != '\0') return -1;
    if (f[0] == 'f' && b->itemsize == 4) return 0;
    if (f[0] == 'd' && b->itemsize == 8) return 1;
    return -1;
}

/* Acquire the n 2-D buffers objs[i] (the last one writable), each (rows, C) with contiguous
 * rows, all of the same shape and floating dtype. Returns the dtype kind, or -1 with an
 * exception set (and every buffer released). */
static int get_rows(PyObject **objs, Py_buffer *bufs, int n) {
    int got = 0, kind = -1;
    for (; got < n; got++) {
        int flags = PyBUF_STRIDES | PyBUF_FORMAT | (got == n - 1 ? PyBUF_WRITABLE : 0);
        if (PyObject_GetBuffer(objs[got], &bufs[got], flags) < 0) goto fail;
    }
    kind = kind_of(&bufs[0]);
    for (int i = 0; i < n; i++) {
        Py_buffer *b = &bufs[i];
        if (b->ndim != 2 || kind_of(b) != kind || kind < 0 || b->shape[0] != bufs[0].shape[0] ||
            b->shape[1] != bufs[0].shape[1] ||
            (b->shape[1] > 1 && b->strides[1] != b->itemsize)) {
            PyErr_Format(PyExc_ValueError,
                         "operand %d: expected a 2-D float32/float64 buffer with contiguous rows "
                         "and the shape of operand 0",
                         i);
            goto fail;
        }
    }
    return kind;
fail:
    for (int i = 0; i < got; i++) PyBuffer_Release(&bufs[i]);
    return -1;
}

static void release(Py_buffer *bufs, int n) {
    for (int i = 0; i < n; i++) PyBuffer_Release(&bufs[i]);
}

static PyObject *py_forward(PyObject *self, PyObject *args) {
    PyObject *objs[2];
    int log;
    if (!PyArg_ParseTuple(args, "OOp:forward", &objs[0], &objs[1], &log)) return NULL;
    Py_buffer b[2];
    int kind = get_rows(objs, b, 2);
    if (kind < 0) return NULL;
    Py_BEGIN_ALLOW_THREADS;
    if (kind == 0)
        forward_f32(b[0].buf, b[0].strides[0], b[1].buf, b[1].strides[0], b[0].shape[0],
                    b[0].shape[1], log);
    else
        forward_f64(b[0].buf, b[0].strides[0], b[1].buf, b[1].strides[0], b[0].shape[0],
                    b[0].shape[1], log);
    Py_END_ALLOW_THREADS;
    release(b, 2);
    Py_RETURN_NONE;
}

static PyObject *run_pair(PyObject *args, const char *fmt, int kind) {
    PyObject *objs[3];
    if (!PyArg_ParseTuple(args, fmt, &objs[0], &objs[1], &objs[2])) return NULL;
    Py_buffer b[3];
    int dtype = get_rows(objs, b, 3);
    if (dtype < 0) return NULL;
    Py_BEGIN_ALLOW_THREADS;
    if (dtype == 0)
        pair_f32(kind, b[0].buf, b[0].strides[0], b[1].buf, b[1].strides[0], b[2].buf,
                 b[2].strides[0], b[0].shape[0], b[0].shape[1]);
    else
        pair_f64(kind, b[0].buf, b[0].strides[0], b[1].buf, b[1].strides[0], b[2].buf,
                 b[2].strides[0], b[0].shape[0], b[0].shape[1]);
    Py_END_ALLOW_THREADS;
    release(b, 3);
    Py_RETURN_NONE;
}

static PyObject *py_prod(PyObject *self, PyObject *args) { return run_pair(args, "OOO:prod", 0); }

static PyObject *py_log_vjp(PyObject *self, PyObject *args) {
    return run_pair(args, "OOO:log_vjp", 1);
}

static PyObject *py_log_jvp(PyObject *self, PyObject *args) {
    return run_pair(args, "OOO:log_jvp", 2);
}

static PyObject *py_jacobian(PyObject *self, PyObject *args) {
    PyObject *objs[2];
    int take_log;
    if (!PyArg_ParseTuple(args, "OOp:jacobian", &objs[0], &objs[1], &take_log)) return NULL;
    Py_buffer b[2];
    if (PyObject_GetBuffer(objs[0], &b[0], PyBUF_STRIDES | PyBUF_FORMAT) < 0) return NULL;
    if (PyObject_GetBuffer(objs[1], &b[1], PyBUF_STRIDES | PyBUF_FORMAT | PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&b[0]);
        return NULL;
    }
    int kind = kind_of(&b[0]);
    Py_ssize_t n = b[0].ndim == 2 ? b[0].shape[0] : -1, c = b[0].ndim == 2 ? b[0].shape[1] : -1;
    if (kind < 0 || b[0].ndim != 2 || b[1].ndim != 2 || kind_of(&b[1]) != kind ||
        b[1].shape[0] != n * c || b[1].shape[1] != c ||
        (c > 1 && (b[0].strides[1] != b[0].itemsize || b[1].strides[1] != b[1].itemsize))) {
        PyErr_SetString(PyExc_ValueError,
                        "jacobian: expected y (n, c) and out (n * c, c), float32/float64, with "
                        "contiguous rows");
        release(b, 2);
        return NULL;
    }
    size_t scratch_bytes = (size_t)(c > 0 ? c : 1) * (size_t)b[0].itemsize;
    void *scratch = take_log ? PyMem_RawMalloc(scratch_bytes) : NULL;
    if (take_log && scratch == NULL) {
        release(b, 2);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS;
    if (kind == 0)
        jacobian_f32(b[0].buf, b[0].strides[0], b[1].buf, b[1].strides[0], n, c, take_log,
                     (float *)scratch);
    else
        jacobian_f64(b[0].buf, b[0].strides[0], b[1].buf, b[1].strides[0], n, c, take_log,
                     (double *)scratch);
    Py_END_ALLOW_THREADS;
    PyMem_RawFree(scratch);
    release(b, 2);
    Py_RETURN_NONE;
}

static PyObject *py_exp(PyObject *self, PyObject *args) {
    PyObject *objs[2];
    if (!PyArg_ParseTuple(args, "OO:exp", &objs[0], &objs[1])) return NULL;
    Py_buffer b[2];
    int kind = get_rows(objs, b, 2);
    if (kind < 0) return NULL;
    Py_BEGIN_ALLOW_THREADS;
    for (Py_ssize_t r = 0; r < b[0].shape[0]; r++) {
        const char *x = (const char *)b[0].buf + r * b[0].strides[0];
        char *y = (char *)b[1].buf + r * b[1].strides[0];
        if (kind == 0)
            exp_f32((const float *)x, (float *)y, b[0].shape[1]);
        else
            exp_f64((const double *)x, (double *)y, b[0].shape[1]);
    }
    Py_END_ALLOW_THREADS;
    release(b, 2);
    Py_RETURN_NONE;
}

/* madvise(MADV_HUGEPAGE) on the whole pages inside [address, address + nbytes): what NumPy does
 * for its own large allocations. Called on a fresh, untouched output buffer, it lets the kernel
 * fault it in 2 MiB pages instead of 4 KiB ones (512 times fewer page faults). Advice only: it
 * changes no result, and a kernel without transparent huge pages ignores it (errors ignored). */
static PyObject *py_advise_hugepages(PyObject *self, PyObject *args) {
    unsigned long long address;
    Py_ssize_t nbytes;
    if (!PyArg_ParseTuple(args, "Kn:advise_hugepages", &address, &nbytes)) return NULL;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = ((uintptr_t)address + page - 1) & ~(page - 1);
    uintptr_t hi = ((uintptr_t)address + (uintptr_t)nbytes) & ~(page - 1);
    if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
#endif
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"advise_hugepages", py_advise_hugepages, METH_VARARGS,
     "advise_hugepages(address, nbytes): madvise(MADV_HUGEPAGE) on a fresh buffer (Linux)."},
    {"forward", py_forward, METH_VARARGS,
     "forward(x, out, log): softmax (log_softmax if log) of each row of x into out."},
    {"prod", py_prod, METH_VARARGS, "prod(y, v, out): out = y * (v - <y, v>) per row."},
    {"log_vjp", py_log_vjp, METH_VARARGS,
     "log_vjp(l, g, out): out = g - exp(l) * sum(g) per row."},
    {"log_jvp", py_log_jvp, METH_VARARGS, "log_jvp(l, v, out): out = v - <exp(l), v> per row."},
    {"jacobian", py_jacobian, METH_VARARGS,
     "jacobian(y, out, log): dense Jacobians of the rows of y (n, c) into out (n * c, c)."},
    {"exp", py_exp, METH_VARARGS, "exp(x, out): the kernels' own exp, elementwise (for tests)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "_rows",
    "Fused softmax row kernels in C for the NumPy fast path (private).", -1, methods,
};

PyMODINIT_FUNC PyInit__rows(void) { return PyModule_Create(&moduledef); }
