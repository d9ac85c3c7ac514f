/*
 * The C row kernels' core: plain C11 with the GNU vector extensions (GCC and Clang), no Python.h.
 *
 * Included once per instruction-set level by a file that defines SXP_TABLE (the name of the table
 * it defines) and is compiled with that level's flags (setup.py): _rows_base.c (the target's
 * baseline: SSE2 on x86-64, NEON/ASIMD on aarch64), _rows_avx2.c (-march=x86-64-v3) and
 * _rows_avx512.c (-march=x86-64-v4). Each compiles every kernel at its own native vector width;
 * the bindings (_rows.c) pick the best table the CPU runs at load time.
 *
 * NumPy cannot fuse exp with the sum that follows it, so its softmax makes five passes over
 * each block. Here a row of C contiguous numbers takes three: the maximum, exp(x - max) written
 * out and summed in the same loop, the scaling (log_softmax: the sum only, then x - max - log s).
 * The second and third passes read the row from cache, so the memory traffic is the copy's:
 * read x once, write y once. The VJP/JVP kernels take two passes over two rows.
 *
 * Arithmetic matches the generic kernels (softmax_xp._generic), NaN placement included: a row
 * whose maximum is not finite is NaN throughout; a NaN anywhere makes the sum NaN and so the row.
 * Sums and dot products accumulate in blocks whose totals are added in double: at least as
 * accurate as the pairwise float32 sums of the generic code (the short-row code sums its rows
 * of at most two vectors as a tree in the row's dtype). exp is our own (below), branch-free so
 * that the loops vectorise.
 *
 * No stack spills in the inner loops: check a build with
 *     so=$(python -c 'import softmax_xp._backends._rows as m; print(m.__file__)')
 *     objdump -d --no-show-raw-insn "$so" | awk '/<forward_f32>:/,/ret/' | grep -cE 'rsp|rbp'
 * (one count per table; likewise pair_f32, exp_f32 and the f64 kernels; for an aarch64 build use
 * aarch64-linux-gnu-objdump and look for `sp`): the vector loops must touch neither the stack
 * pointer nor the frame pointer; only the padded tail copies (a local buffer of one vector) may.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "_rows_kernels.h"

#ifndef SXP_TABLE
#error "define SXP_TABLE (the table's name) before including _rows_core.h"
#endif

#if defined(__AVX512F__)
#define SXP_ISA_NAME "avx512"
#elif defined(__AVX2__)
#define SXP_ISA_NAME "avx2"
#elif defined(__SSE2__)
#define SXP_ISA_NAME "sse2"
#elif defined(__ARM_NEON) || defined(__aarch64__)
#define SXP_ISA_NAME "neon"
#else
#define SXP_ISA_NAME "generic"
#endif

/* Vectors of one native register of the target (GCC/Clang vector extensions): SXP_VBYTES is 64
 * where the translation unit is compiled for AVX-512, 32 for AVX/AVX2, else 16 (SSE2, NEON, and
 * any other target). Every kernel works at that width, so no vector is ever split into halves
 * (split code was measured 3-4x slower on AVX2, and GCC spills wide generic vectors on aarch64).
 * Sums of float32 numbers end in double lanes. */
#if defined(__AVX512F__)
#define SXP_VBYTES 64
#define F32_LANES 16
#define F64_LANES 8
#elif defined(__AVX__)
#define SXP_VBYTES 32
#define F32_LANES 8
#define F64_LANES 4
#else
#define SXP_VBYTES 16
#define F32_LANES 4
#define F64_LANES 2
#endif

#if defined(__GNUC__)
#define SXP_INLINE static inline __attribute__((always_inline))
#else
#define SXP_INLINE static inline
#endif
typedef float f32v __attribute__((vector_size(SXP_VBYTES)));
typedef float f32vu __attribute__((vector_size(SXP_VBYTES), aligned(4)));
typedef int32_t f32i __attribute__((vector_size(SXP_VBYTES)));
typedef uint32_t f32u __attribute__((vector_size(SXP_VBYTES)));
typedef double f64v __attribute__((vector_size(SXP_VBYTES)));
typedef double f64vu __attribute__((vector_size(SXP_VBYTES), aligned(8)));
typedef int64_t f64i __attribute__((vector_size(SXP_VBYTES)));
typedef uint64_t f64u __attribute__((vector_size(SXP_VBYTES)));
/* The halves met by the horizontal reductions (never in a loop). */
typedef double f64x8 __attribute__((vector_size(64)));
typedef double f64x4 __attribute__((vector_size(32)));
typedef double f64x2 __attribute__((vector_size(16)));
typedef float f32x16 __attribute__((vector_size(64)));
typedef float f32x8 __attribute__((vector_size(32)));
typedef float f32x4 __attribute__((vector_size(16)));
typedef float f32x2 __attribute__((vector_size(8)));
typedef int32_t i32x16 __attribute__((vector_size(64)));
typedef int32_t i32x8 __attribute__((vector_size(32)));
typedef int32_t i32x4 __attribute__((vector_size(16)));
typedef int32_t i32x2 __attribute__((vector_size(8)));
typedef int64_t i64x8 __attribute__((vector_size(64)));
typedef int64_t i64x4 __attribute__((vector_size(32)));
typedef int64_t i64x2 __attribute__((vector_size(16)));

#define BC(V, c) ((V){0} + (c)) /* broadcast */
#define SEL(V, I, m, a, b) ((V)(((m) & (I)(a)) | (~(m) & (I)(b))))

/* a > b ? a : b and a < b ? a : b lane by lane (a NaN in b is kept, one in a gives b): one max or
 * min instruction on SSE2 and AVX2 (their maxps is exactly a > b ? a : b), where SEL compiles to
 * a compare and a blend (AVX2, 4 uops) or four logic instructions (SSE2). AVX-512's SEL is already
 * a compare into a mask and a masked move; elsewhere SEL. */
#if defined(__AVX__) && !defined(__AVX512F__)
#include <immintrin.h>
#define VMAX_f32(a, b) ((f32v)_mm256_max_ps((__m256)(a), (__m256)(b)))
#define VMIN_f32(a, b) ((f32v)_mm256_min_ps((__m256)(a), (__m256)(b)))
#define VMAX_f64(a, b) ((f64v)_mm256_max_pd((__m256d)(a), (__m256d)(b)))
#define VMIN_f64(a, b) ((f64v)_mm256_min_pd((__m256d)(a), (__m256d)(b)))
#elif defined(__SSE2__) && !defined(__AVX512F__)
#include <emmintrin.h>
#define VMAX_f32(a, b) ((f32v)_mm_max_ps((__m128)(a), (__m128)(b)))
#define VMIN_f32(a, b) ((f32v)_mm_min_ps((__m128)(a), (__m128)(b)))
#define VMAX_f64(a, b) ((f64v)_mm_max_pd((__m128d)(a), (__m128d)(b)))
#define VMIN_f64(a, b) ((f64v)_mm_min_pd((__m128d)(a), (__m128d)(b)))
#else
#define VMAX_f32(a, b) SEL(f32v, f32i, (a) > (b), a, b)
#define VMIN_f32(a, b) SEL(f32v, f32i, (a) < (b), a, b)
#define VMAX_f64(a, b) SEL(f64v, f64i, (a) > (b), a, b)
#define VMIN_f64(a, b) SEL(f64v, f64i, (a) < (b), a, b)
#endif

/* ---------------------------------------------------------------------------------------------
 * exp, branch-free, one vector at a time. x = n ln2 + r with n = round(x / ln2) and |r| <= ln2/2
 * (ln2 split in a high part with trailing zero bits, so that n * LN2_HI is exact, and a low
 * part); exp(r) by its Taylor polynomial (float32: degree 7, truncation error r^8/8! < 5.3e-9
 * relative, under 0.1 ulp; float64: degree 13, r^14/14! < 4.2e-18, under 0.03 ulp); then 2^n as
 * two powers of two 2^(n/2) 2^(n - n/2) built from their bit patterns, so that results in the
 * subnormal range round once. Rounding to an integer adds and subtracts 1.5 * 2^23 (2^52), whose
 * low mantissa bits then hold n: no float-to-int conversion (none is defined for NaN). Inputs
 * are clamped to where the result is 0 or inf anyway; NaN passes through (the polynomial is
 * NaN). Measured against
 * float64 exp over the whole range: at most 1 ulp (tests/test_fastpaths_numpy.py).
 * ------------------------------------------------------------------------------------------- */

/* The last two steps, 1 + r (1 + r q). With fused multiply-adds (AVX2+FMA, AVX-512, aarch64)
 * by Horner's rule, one rounding per step. Without them (baseline SSE2) two roundings per step
 * would take the result past 1 ulp (measured: up to 1.18 ulp in float32), so there the sum is
 * 1 + r + r^2 q with 1 + r split exactly into hi + lo (Fast2Sum, |r| < 1): one final rounding. */
#if defined(__FMA__) || defined(__aarch64__) || defined(__ARM_FEATURE_FMA)
#define SXP_EXP_TAIL(r, q, one) (((q) * (r) + (one)) * (r) + (one))
#else
#define SXP_EXP_TAIL(r, q, one)                                                                   \
    __extension__({                                                                               \
        __typeof__(r) hi_ = (one) + (r);                                                          \
        __typeof__(r) lo_ = ((one) - hi_) + (r);                                                  \
        hi_ + (lo_ + ((r) * (r)) * (q));                                                          \
    })
#endif

SXP_INLINE f32v vexp_f32(f32v x) {
    const float shifter = 12582912.0f; /* 1.5 * 2^23 */
    f32v xc = VMAX_f32(BC(f32v, -104.0f), x); /* x < -104 ? -104 : x; exp(-104) < 2^-150: 0 */
    xc = VMIN_f32(BC(f32v, 89.0f), xc);        /* exp(89) > FLT_MAX: inf; NaN stays NaN */
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
    p = SXP_EXP_TAIL(r, p, 1.0f);
    f32u ni = (f32u)t - (f32u)BC(f32v, shifter); /* n, in [-150, 129], two's complement */
    f32u n1 = (f32u)((f32i)ni >> 1);             /* floor(n / 2) */
    f32u n2 = ni - n1;
    return p * (f32v)((n1 + 127) << 23) * (f32v)((n2 + 127) << 23); /* NaN: p is NaN */
}

SXP_INLINE f64v vexp_f64(f64v x) {
    const double shifter = 6755399441055744.0; /* 1.5 * 2^52 */
    f64v xc = VMAX_f64(BC(f64v, -746.0), x); /* x < -746 ? -746 : x; exp(-746) < 2^-1075: 0 */
    xc = VMIN_f64(BC(f64v, 710.0), xc);       /* exp(710) > DBL_MAX: inf; NaN stays NaN */
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
    p = SXP_EXP_TAIL(r, p, 1.0);
    f64u ni = (f64u)t - (f64u)BC(f64v, shifter); /* n, in [-1077, 1025], two's complement */
    /* floor(n / 2) by a logical shift of n + 2048 >= 0: SSE2 and AVX2 have no 64-bit arithmetic
     * shift, which would otherwise be done one lane at a time. */
    f64u n1 = ((ni + 2048) >> 1) - 1024;
    f64u n2 = ni - n1;
    return p * (f64v)((n1 + 1023) << 52) * (f64v)((n2 + 1023) << 52); /* NaN: p is NaN */
}

#define HALF(v, ...) __builtin_shufflevector(v, v, __VA_ARGS__)
#define SXP_CAT_(a, b) a##b
#define SXP_CAT(a, b) SXP_CAT_(a, b)

/* Horizontal sums and maxima by halving: log2(lanes) steps, not a serial chain. Written for every
 * width; the kernels use the one of their vector (hsum_f32 is hsum_f32_16 for AVX-512, ...). */
SXP_INLINE double hsum_f64_2(f64x2 a) { return a[0] + a[1]; }
SXP_INLINE double hsum_f64_4(f64x4 a) { return hsum_f64_2(HALF(a, 0, 1) + HALF(a, 2, 3)); }
SXP_INLINE double hsum_f64_8(f64x8 a) {
    return hsum_f64_4(HALF(a, 0, 1, 2, 3) + HALF(a, 4, 5, 6, 7));
}

/* float32 lanes are summed in double. */
SXP_INLINE double hsum_f32_4(f32x4 a) {
    return hsum_f64_2(__builtin_convertvector(HALF(a, 0, 1), f64x2) +
                      __builtin_convertvector(HALF(a, 2, 3), f64x2));
}
SXP_INLINE double hsum_f32_8(f32x8 a) {
    return hsum_f64_4(__builtin_convertvector(HALF(a, 0, 1, 2, 3), f64x4) +
                      __builtin_convertvector(HALF(a, 4, 5, 6, 7), f64x4));
}
SXP_INLINE double hsum_f32_16(f32x16 a) {
    return hsum_f64_8(__builtin_convertvector(HALF(a, 0, 1, 2, 3, 4, 5, 6, 7), f64x8) +
                      __builtin_convertvector(HALF(a, 8, 9, 10, 11, 12, 13, 14, 15), f64x8));
}

/* The same in the vector's own precision: the short-row code's per-row sums of at most
 * 2 * lanes numbers (a tree of log2 roundings, as in a pairwise sum). */
SXP_INLINE float hsum_short_f32_2(f32x2 a) { return a[0] + a[1]; }
SXP_INLINE float hsum_short_f32_4(f32x4 a) {
    return hsum_short_f32_2(HALF(a, 0, 1) + HALF(a, 2, 3));
}
SXP_INLINE float hsum_short_f32_8(f32x8 a) {
    return hsum_short_f32_4(HALF(a, 0, 1, 2, 3) + HALF(a, 4, 5, 6, 7));
}
SXP_INLINE float hsum_short_f32_16(f32x16 a) {
    return hsum_short_f32_8(HALF(a, 0, 1, 2, 3, 4, 5, 6, 7) + HALF(a, 8, 9, 10, 11, 12, 13, 14, 15));
}
#define hsum_short_f64_2 hsum_f64_2
#define hsum_short_f64_4 hsum_f64_4
#define hsum_short_f64_8 hsum_f64_8

#define MAX2(V, I, a, b) SEL(V, I, (a) > (b), a, b)
SXP_INLINE float hmax_f32_2(f32x2 a) { return a[0] > a[1] ? a[0] : a[1]; }
SXP_INLINE float hmax_f32_4(f32x4 a) {
    return hmax_f32_2(MAX2(f32x2, i32x2, HALF(a, 0, 1), HALF(a, 2, 3)));
}
SXP_INLINE float hmax_f32_8(f32x8 a) {
    return hmax_f32_4(MAX2(f32x4, i32x4, HALF(a, 0, 1, 2, 3), HALF(a, 4, 5, 6, 7)));
}
SXP_INLINE float hmax_f32_16(f32x16 a) {
    return hmax_f32_8(MAX2(f32x8, i32x8, HALF(a, 0, 1, 2, 3, 4, 5, 6, 7),
                           HALF(a, 8, 9, 10, 11, 12, 13, 14, 15)));
}
SXP_INLINE double hmax_f64_2(f64x2 a) { return a[0] > a[1] ? a[0] : a[1]; }
SXP_INLINE double hmax_f64_4(f64x4 a) {
    return hmax_f64_2(MAX2(f64x2, i64x2, HALF(a, 0, 1), HALF(a, 2, 3)));
}
SXP_INLINE double hmax_f64_8(f64x8 a) {
    return hmax_f64_4(MAX2(f64x4, i64x4, HALF(a, 0, 1, 2, 3), HALF(a, 4, 5, 6, 7)));
}

#define hsum_f32 SXP_CAT(hsum_f32_, F32_LANES)
#define hsum_f64 SXP_CAT(hsum_f64_, F64_LANES)
#define hsum_short_f32 SXP_CAT(hsum_short_f32_, F32_LANES)
#define hsum_short_f64 SXP_CAT(hsum_short_f64_, F64_LANES)
#define hmax_f32 SXP_CAT(hmax_f32_, F32_LANES)
#define hmax_f64 SXP_CAT(hmax_f64_, F64_LANES)

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
    for (sxp_ssize b0 = 0; b0 < (c); b0 += SUM_BLOCK * LANES) {                                  \
        sxp_ssize end = (c) - b0 < SUM_BLOCK * LANES ? (c) : b0 + SUM_BLOCK * LANES;             \
        V s0 = BC(V, (T)0), s1 = s0;                                                              \
        sxp_ssize i = b0;                                                                        \
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
    SXP_INLINE V load_pad_##SFX(const T *p, sxp_ssize k, T pad) {                                \
        T buf[LANES];                                                                             \
        for (int j = 0; j < LANES; j++) buf[j] = j < k ? p[j] : pad;                              \
        return *(const VU *)buf;                                                                  \
    }                                                                                             \
                                                                                                  \
    SXP_INLINE void store_part_##SFX(T *p, V v, sxp_ssize k) {                                   \
        for (int j = 0; j < k; j++) p[j] = v[j];                                                  \
    }                                                                                             \
                                                                                                  \
    /* Rows of at most 2 * LANES numbers are nv = 1 or 2 vectors each (the last one padded);      \
     * SHORT_GROUP rows at a time, so that the short dependency chains of several rows (maximum,  \
     * exp, sum, scale) overlap. nv is a constant at each (inlined) call. */                      \
    SXP_INLINE V load_row_##SFX(const T *p, sxp_ssize c, T pad) {                                \
        return c == LANES ? *(const VU *)p : load_pad_##SFX(p, c, pad);                           \
    }                                                                                             \
                                                                                                  \
    SXP_INLINE void store_row_##SFX(T *p, V v, sxp_ssize c) {                                    \
        if (c == LANES)                                                                           \
            *(VU *)p = v;                                                                         \
        else                                                                                      \
            store_part_##SFX(p, v, c);                                                            \
    }                                                                                             \
                                                                                                  \
    /* The row's vectors: v0 (full when nv == 2) and v1 (its last c - LANES numbers). */          \
    SXP_INLINE void load_short_##SFX(const char *p, sxp_ssize c, int nv, T pad, V *v0, V *v1) {  \
        if (nv == 1) {                                                                            \
            *v0 = load_row_##SFX((const T *)p, c, pad);                                           \
        } else {                                                                                  \
            *v0 = *(const VU *)p;                                                                 \
            *v1 = load_row_##SFX((const T *)p + LANES, c - LANES, pad);                           \
        }                                                                                         \
    }                                                                                             \
                                                                                                  \
    SXP_INLINE void store_short_##SFX(char *p, sxp_ssize c, int nv, V v0, V v1) {                \
        if (nv == 1) {                                                                            \
            store_row_##SFX((T *)p, v0, c);                                                       \
        } else {                                                                                  \
            *(VU *)p = v0;                                                                        \
            store_row_##SFX((T *)p + LANES, v1, c - LANES);                                       \
        }                                                                                         \
    }                                                                                             \
                                                                                                  \
    SXP_INLINE void forward_short_##SFX(const char *x, sxp_ssize ldx, char *y, sxp_ssize ldy,   \
                                        sxp_ssize c, int take_log, int nv) {                     \
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
    SXP_INLINE void pair_short_##SFX(int kind, const char *a, sxp_ssize lda, const char *b,      \
                                     sxp_ssize ldb, char *o, sxp_ssize ldo, sxp_ssize c,       \
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
    SXP_INLINE T row_max_##SFX(const T *x, sxp_ssize c) {                                        \
        V m0 = BC(V, (T)-INFINITY), m1 = m0;                                                      \
        sxp_ssize i = 0;                                                                         \
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
    SXP_INLINE double row_expsum_store_##SFX(const T *x, T m, T *y, sxp_ssize c) {               \
        BLOCKED_SUM(T, SFX, V, VU, LANES, c, EXPSUM_STORE_OP, EXPSUM_STORE_TAIL)                  \
        return total;                                                                             \
    }                                                                                             \
                                                                                                  \
    SXP_INLINE double row_expsum_##SFX(const T *x, T m, sxp_ssize c) {                           \
        BLOCKED_SUM(T, SFX, V, VU, LANES, c, EXPSUM_OP, EXPSUM_TAIL)                              \
        return total;                                                                             \
    }                                                                                             \
                                                                                                  \
    /* sum(a * b) (padding 0), sum(exp(a) * b) (padding -inf, 0), sum(a) (padding 0). */          \
    SXP_INLINE double row_dot_##SFX(const T *a, const T *b, sxp_ssize c) {                       \
        BLOCKED_SUM(T, SFX, V, VU, LANES, c, DOT_OP, DOT_TAIL)                                    \
        return total;                                                                             \
    }                                                                                             \
                                                                                                  \
    SXP_INLINE double row_expdot_##SFX(const T *a, const T *b, sxp_ssize c) {                    \
        BLOCKED_SUM(T, SFX, V, VU, LANES, c, EXPDOT_OP, EXPDOT_TAIL)                              \
        return total;                                                                             \
    }                                                                                             \
                                                                                                  \
    SXP_INLINE double row_sum_##SFX(const T *a, sxp_ssize c) {                                   \
        BLOCKED_SUM(T, SFX, V, VU, LANES, c, SUM_OP, SUM_TAIL)                                    \
        return total;                                                                             \
    }                                                                                             \
                                                                                                  \
    static void forward_##SFX(const char *x, sxp_ssize ldx, char *y, sxp_ssize ldy,  \
                                         sxp_ssize n, sxp_ssize c, int take_log) {              \
        sxp_ssize row = 0;                                                                       \
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
                for (sxp_ssize i = 0; i < c; i++) yr[i] = (T)NAN;                                \
                continue;                                                                         \
            }                                                                                     \
            sxp_ssize i = 0;                                                                     \
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
    static void pair_##SFX(int kind, const char *a, sxp_ssize lda, const char *b,     \
                                      sxp_ssize ldb, char *o, sxp_ssize ldo, sxp_ssize n,      \
                                      sxp_ssize c) {                                             \
        sxp_ssize row = 0;                                                                       \
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
            sxp_ssize i = 0;                                                                     \
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
    static void exp_##SFX(const T *x, T *y, sxp_ssize c) {                            \
        sxp_ssize i = 0;                                                                         \
        for (; i + 2 * LANES <= c; i += 2 * LANES) { /* two independent chains per step */      \
            V u = *(const VU *)(x + i), v = *(const VU *)(x + i + LANES);                         \
            *(VU *)(y + i) = vexp_##SFX(u);                                                       \
            *(VU *)(y + i + LANES) = vexp_##SFX(v);                                               \
        }                                                                                         \
        for (; i + LANES <= c; i += LANES) *(VU *)(y + i) = vexp_##SFX(*(const VU *)(x + i));     \
        if (i < c) store_part_##SFX(y + i, vexp_##SFX(load_pad_##SFX(x + i, c - i, 0)), c - i);   \
    }                                                                                             \
                                                                                                  \
    /* Dense Jacobians of n rows: out row (r, i) = y_i (delta_ij - y_j) (softmax) or              \
     * delta_ij - p_j with p = exp(l) (log_softmax; p in scratch, c numbers). */                  \
    static void jacobian_##SFX(const char *y, sxp_ssize ldy, char *o, sxp_ssize ldo, \
                                          sxp_ssize n, sxp_ssize c, int take_log, T *scratch) { \
        for (sxp_ssize row = 0; row < n; row++) {                                                \
            const T *yr = (const T *)(y + row * ldy);                                             \
            const T *p = yr;                                                                      \
            if (take_log) {                                                                       \
                exp_##SFX(yr, scratch, c);                                                        \
                p = scratch;                                                                      \
            }                                                                                     \
            for (sxp_ssize i = 0; i < c; i++) {                                                  \
                T *or_ = (T *)(o + (row * c + i) * ldo);                                          \
                T s = take_log ? (T)1 : p[i];                                                     \
                sxp_ssize j = 0;                                                                 \
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

DEFINE_KERNELS(float, f32, f32v, f32vu, f32i, F32_LANES)
DEFINE_KERNELS(double, f64, f64v, f64vu, f64i, F64_LANES)

/* ---------------------------------------------------------------------------------------------
 * logsumexp: out[r] = log(sum_j exp(x[r, j])), reading each row from memory once.
 *
 * A row is streamed in blocks of SUM_BLOCK vectors. Each block is read twice, the second time
 * from L1: its maximum b (vector lanes, then across them), then sum exp(x - M) into vector
 * accumulators of the row's dtype whose total is added in double, as the other reductions do.
 * M is the running maximum of the row so far: when a block's maximum exceeds it, the double
 * total so far is rescaled by exp(M - b) first (online max-and-sum). The running maximum is
 * the row's, the lanes combined once per block (a horizontal maximum per SUM_BLOCK vectors is
 * cheap), not one per lane: every exp is then of x - M <= 0 for the row's M, and the edge values
 * below need no per-lane care. The result is M + log(total) in double (lse_finish), rounded once
 * to the row's dtype; total >= 1 when M is finite (the maximum contributes exp(0) = 1 exactly).
 * Rows of at most two vectors go SHORT_GROUP at a time, as in forward.
 *
 * Edge values are those of scipy.special.logsumexp, with no test on them in the loops: the
 * maximum ignores NaN (no comparison with it holds), and while M is not finite the shift is 0
 * instead of M, so that exp(x - shift) is 0 for -inf, +inf for +inf and NaN for NaN:
 *   - a NaN anywhere makes its block's sum NaN, and so the total (rescaling multiplies it);
 *   - +inf (and no NaN): M = +inf, the total is +inf; the result inf + log(inf) = +inf;
 *   - all -inf, or an empty row (c == 0): M = -inf, the total is 0; -inf + log(0) = -inf.
 * The rescale factor exp(M - b) needs M < b, so it is never inf - inf: 0 when M is -inf (the
 * total is then 0 or NaN, which a factor of 0 leaves as it is: skipped) or b is +inf.
 * Floating-point exceptions (overflow of x - M, log(0)) are raised and meant to be ignored.
 * ------------------------------------------------------------------------------------------- */

/* M + log(s), s >= 1 the sum of exp(x - M) (else the edge values: s 0, inf or NaN, M not finite).
 * For M < 0, log(s) = k ln2 + log(f) with s = 2^k f, f in [sqrt(1/2), sqrt(2)): where M and
 * k ln2 cancel, M + k ln2_hi is exact (Sterbenz; ln2_hi has 32 significant bits, |k| < 2^11),
 * so a result near 0 keeps the accuracy of the small log(f), not the absolute error of a
 * rounded log(s) (half an ulp of log(c): a few ulps of such a result). */
SXP_INLINE double lse_finish(double m, double s) {
    /* m >= 0: no cancellation, the plain sum is within an ulp (log(s) <= the result) */
    if (m >= 0 || !(s >= 1.0 && s < INFINITY && isfinite(m))) return m + log(s);
    /* s = 2^k f with no branch (one on f would be mispredicted half the time): k is the
     * exponent of s / sqrt(1/2), taken from the bit patterns (s >= 1 is normal, positive) */
    uint64_t bits;
    double f;
    memcpy(&bits, &s, sizeof bits);
    int k = (int)((int64_t)(bits - 0x3FE6A09E667F3BCDull) >> 52); /* the bits of sqrt(1/2) */
    bits -= (uint64_t)k << 52;
    memcpy(&f, &bits, sizeof f);
    return (m + k * 6.93147180369123816490e-01) + (log(f) + k * 1.90821492927058770002e-10);
}

#define DEFINE_LSE_KERNELS(T, SFX, V, VU, I, LANES)                                               \
    /* next: the next row (c numbers), or NULL; its first block is prefetched with the last. */  \
    SXP_INLINE T lse_row_##SFX(const T *x, sxp_ssize c, const T *next) {                         \
        double total = 0.0;                                                                       \
        T M = (T)-INFINITY;                                                                       \
        for (sxp_ssize b0 = 0; b0 < c; b0 += SUM_BLOCK * LANES) {                                \
            sxp_ssize end = c - b0 < SUM_BLOCK * LANES ? c : b0 + SUM_BLOCK * LANES;             \
            V m0 = BC(V, (T)-INFINITY), m1 = m0;                                                  \
            sxp_ssize i = b0;                                                                    \
            for (; i + 2 * LANES <= end; i += 2 * LANES) { /* (NaN never wins) */                 \
                m0 = VMAX_##SFX(*(const VU *)(x + i), m0);                                        \
                m1 = VMAX_##SFX(*(const VU *)(x + i + LANES), m1);                                \
            }                                                                                     \
            if (i + LANES <= end) {                                                               \
                m0 = VMAX_##SFX(*(const VU *)(x + i), m0);                                        \
                i += LANES;                                                                       \
            }                                                                                     \
            if (i < end) m1 = VMAX_##SFX(load_pad_##SFX(x + i, end - i, (T)-INFINITY), m1);       \
            T b = (T)hmax_##SFX(SEL(V, I, m1 > m0, m1, m0));                                      \
            if (b > M) {                                                                          \
                if (M != (T)-INFINITY) total *= exp((double)M - (double)b);                       \
                M = b;                                                                            \
            }                                                                                     \
            T m = isfinite(M) ? M : (T)0; /* the shift (EXPSUM_OP's name for it) */               \
            /* the next block (of this row or the next one) is fetched while this one's exps   \
             * are computed, a cache line a step: else the reads and the exps alternate */       \
            const T *ahead = end < c ? x + end : next;                                            \
            sxp_ssize avail = end < c ? c - end : next != NULL ? c : 0;                          \
            V s0 = BC(V, (T)0), s1 = s0;                                                          \
            i = b0;                                                                               \
            for (; i + 2 * LANES <= end; i += 2 * LANES) {                                        \
                if (i - b0 + 2 * LANES <= avail) {                                                \
                    __builtin_prefetch(ahead + (i - b0));                                         \
                    if (SXP_VBYTES == 64) __builtin_prefetch(ahead + (i - b0) + LANES);           \
                }                                                                                 \
                EXPSUM_OP(SFX, T, V, VU, i, s0);                                                  \
                EXPSUM_OP(SFX, T, V, VU, i + LANES, s1);                                          \
            }                                                                                     \
            if (i + LANES <= end) {                                                               \
                EXPSUM_OP(SFX, T, V, VU, i, s0);                                                  \
                i += LANES;                                                                       \
            }                                                                                     \
            if (i < end) EXPSUM_TAIL(SFX, T, V, VU, i, end - i, s1);                              \
            total += hsum_##SFX(s0 + s1);                                                         \
        }                                                                                         \
        return (T)lse_finish((double)M, total);                                                   \
    }                                                                                             \
                                                                                                  \
    /* Rows of at most nv = 1 or 2 vectors, SHORT_GROUP at a time (their chains overlap); the    \
     * lanes are summed in double (hsum), one rounding fewer than the short forward's tree. */    \
    SXP_INLINE void lse_short_##SFX(const char *x, sxp_ssize ldx, char *o, sxp_ssize ldo,      \
                                    sxp_ssize c, int nv) {                                       \
        V v0[SHORT_GROUP], v1[SHORT_GROUP];                                                       \
        T m[SHORT_GROUP];                                                                         \
        for (int r = 0; r < SHORT_GROUP; r++) {                                                   \
            load_short_##SFX(x + r * ldx, c, nv, (T)-INFINITY, &v0[r], &v1[r]);                   \
            m[r] = (T)hmax_##SFX(nv == 1 ? v0[r] : SEL(V, I, v1[r] > v0[r], v1[r], v0[r]));       \
        }                                                                                         \
        for (int r = 0; r < SHORT_GROUP; r++) {                                                   \
            T sh = isfinite(m[r]) ? m[r] : (T)0;                                                  \
            V e = vexp_##SFX(v0[r] - sh);                                                         \
            if (nv == 2) e += vexp_##SFX(v1[r] - sh);                                             \
            *(T *)(o + r * ldo) = (T)lse_finish((double)m[r], hsum_##SFX(e));                     \
        }                                                                                         \
    }                                                                                             \
                                                                                                  \
    static void logsumexp_##SFX(const char *x, sxp_ssize ldx, char *o, sxp_ssize ldo,          \
                                sxp_ssize n, sxp_ssize c) {                                      \
        sxp_ssize row = 0;                                                                       \
        if (c >= 1 && c <= LANES)                                                                 \
            for (; row + SHORT_GROUP <= n; row += SHORT_GROUP)                                    \
                lse_short_##SFX(x + row * ldx, ldx, o + row * ldo, ldo, c, 1);                    \
        else if (c > LANES && c <= 2 * LANES)                                                     \
            for (; row + SHORT_GROUP <= n; row += SHORT_GROUP)                                    \
                lse_short_##SFX(x + row * ldx, ldx, o + row * ldo, ldo, c, 2);                    \
        for (; row < n; row++) {                                                                  \
            const T *next = row + 1 < n ? (const T *)(x + (row + 1) * ldx) : NULL;                \
            *(T *)(o + row * ldo) = lse_row_##SFX((const T *)(x + row * ldx), c, next);           \
        }                                                                                         \
    }                                                                                             \
                                                                                                  \
    /* The VJP: o[r, j] = g[r] * exp(x[r, j] - lse[r]), g times the softmax, with softmax's edge  \
     * values (as the generic kernel): NaN throughout a row whose lse is not finite (a +inf or   \
     * NaN in the row, or only -inf); elsewhere IEEE arithmetic of the formula. */                \
    static void logsumexp_vjp_##SFX(const char *x, sxp_ssize ldx, const char *l, sxp_ssize ldl, \
                                    const char *g, sxp_ssize ldg, char *o, sxp_ssize ldo,       \
                                    sxp_ssize n, sxp_ssize c) {                                  \
        for (sxp_ssize row = 0; row < n; row++) {                                                \
            const T *xr = (const T *)(x + row * ldx);                                             \
            T *or_ = (T *)(o + row * ldo);                                                        \
            T lr = *(const T *)(l + row * ldl), gr = *(const T *)(g + row * ldg);                 \
            sxp_ssize i = 0;                                                                     \
            if (!isfinite(lr)) {                                                                  \
                for (; i < c; i++) or_[i] = (T)NAN;                                               \
                continue;                                                                         \
            }                                                                                     \
            for (; i + 2 * LANES <= c; i += 2 * LANES) {                                          \
                V u = *(const VU *)(xr + i), v = *(const VU *)(xr + i + LANES);                   \
                *(VU *)(or_ + i) = vexp_##SFX(u - lr) * gr;                                       \
                *(VU *)(or_ + i + LANES) = vexp_##SFX(v - lr) * gr;                               \
            }                                                                                     \
            if (i + LANES <= c) {                                                                 \
                *(VU *)(or_ + i) = vexp_##SFX(*(const VU *)(xr + i) - lr) * gr;                   \
                i += LANES;                                                                       \
            }                                                                                     \
            if (i < c)                                                                            \
                store_part_##SFX(or_ + i, vexp_##SFX(load_pad_##SFX(xr + i, c - i, (T)0) - lr) * gr,\
                                 c - i);                                                          \
        }                                                                                         \
    }

DEFINE_LSE_KERNELS(float, f32, f32v, f32vu, f32i, F32_LANES)
DEFINE_LSE_KERNELS(double, f64, f64v, f64vu, f64i, F64_LANES)

/* ---------------------------------------------------------------------------------------------
 * The softmax cross-entropy with integer labels, reading each row from memory once.
 *
 * Per row of c classes with label l, and weights as the generic kernel rounds them in the row's
 * dtype, w = eps / c at every class and tl = (1 - eps) + w at the label (w = 0, tl = 1 without
 * smoothing), the loss is sum_j t_j (lse - x_j), a term of target 0 contributing 0:
 *   - without smoothing (w == 0): lse - x[l], rounded once in the row's dtype, lse from lse_row
 *     (or SHORT_GROUP rows at a time from lse_short) and x[l] one load of the row just read;
 *   - with smoothing: (tl - w)(lse - x[l]) + w sum_j (lse - x_j), every term >= 0 (no
 *     cancellation), in double, rounded once. The sum comes from the same streaming pass as the
 *     lse (ce_row): with the shift m (the running maximum where finite, else 0; the final one is
 *     the row's maximum M), D = sum_j w (m - x_j) is accumulated with the exp sum, and moved to
 *     a new shift as the lse total is rescaled (D += n_before w (m_new - m_old)); then
 *     w sum_j (lse - x_j) = w c (lse - M) + D.
 * lse - x_j is taken with the rounded lse that is returned, as the generic kernel takes it, so
 * the loss is that of the lse beside it. Edge values (those of the generic kernel):
 *   - an ignored label: 0; a label out of [0, c) (and not the ignored one): NaN;
 *   - lse not finite (a +inf or NaN logit, only -inf logits): NaN, every target being
 *     positive at the label at least (lse - x is NaN there);
 *   - else without smoothing x[l] = -inf gives +inf, and other -inf logits do not matter;
 *   - else with smoothing every class has a positive target: +inf where lse - x_j overflows in
 *     the row's dtype for some j (a -inf logit, or finite logits further apart than the largest
 *     number), found as lse - min_j x_j, the row's minimum taken in the maximum's loop.
 * The VJP (ce_labels_vjp) is one pass: o_j = a exp(x_j - lse) - g w with a = g S + h, then the
 * label's entry a exp(x_l - lse) - g tl; S = 1 for a valid label, else S = 0 and no target
 * (g S and g 0 are kept as products, so that a g of inf or NaN gives NaN as in the generic
 * kernel). A row whose lse is not finite is NaN throughout (softmax's edge values).
 * ------------------------------------------------------------------------------------------- */

/* Row `row`'s label into *l; returns 0 for a valid one, 1 for the ignored one, 2 out of range. */
SXP_INLINE int label_state(const sxp_labels *lab, sxp_ssize row, sxp_ssize c, int64_t *l) {
    int64_t v = *(const int64_t *)(lab->labels + row * lab->ld);
    *l = v;
    if (lab->has_ignore && v == (int64_t)lab->ignore) return 1;
    return v >= 0 && v < c ? 0 : 2;
}

#define DEFINE_CE_KERNELS(T, SFX, V, VU, I, LANES)                                                \
    /* w = eps / c and tl = (1 - eps) + w, rounded in T as the generic kernel rounds them. */     \
    SXP_INLINE void ce_weights_##SFX(double eps, sxp_ssize c, T *w, T *tl) {                     \
        *w = (T)0;                                                                                \
        *tl = (T)1;                                                                               \
        if (eps != 0 && c > 0) {                                                                  \
            *w = (T)eps / (T)c;                                                                   \
            *tl = (T)(1.0 - eps) + *w;                                                            \
        }                                                                                         \
    }                                                                                             \
                                                                                                  \
    /* The loss without smoothing (or of a row whose label does not count), from its lse. */     \
    SXP_INLINE T ce_plain_##SFX(int state, T lse, const T *xr, int64_t l) {                      \
        if (state != 0) return state == 1 ? (T)0 : (T)NAN;                                        \
        return isfinite(lse) ? lse - xr[l] : (T)NAN;                                              \
    }                                                                                             \
                                                                                                  \
    /* lse_row's lse, and with it *d = sum_j w (m - x_j) for the final shift *m (the row's       \
     * maximum where finite, else 0) and the row's minimum *lo. */                                \
    SXP_INLINE T ce_row_##SFX(const T *x, sxp_ssize c, const T *next, T w, double *d, T *m,     \
                              T *lo) {                                                            \
        double total = 0.0, dtotal = 0.0;                                                         \
        T M = (T)-INFINITY, sh = (T)0;                                                            \
        const V wv = BC(V, w);                                                                    \
        V lo0 = BC(V, (T)INFINITY), lo1 = lo0;                                                    \
        for (sxp_ssize b0 = 0; b0 < c; b0 += SUM_BLOCK * LANES) {                                \
            sxp_ssize end = c - b0 < SUM_BLOCK * LANES ? c : b0 + SUM_BLOCK * LANES;             \
            V m0 = BC(V, (T)-INFINITY), m1 = m0;                                                  \
            sxp_ssize i = b0;                                                                    \
            for (; i + 2 * LANES <= end; i += 2 * LANES) { /* (NaN never wins) */                 \
                V u = *(const VU *)(x + i), v = *(const VU *)(x + i + LANES);                     \
                m0 = VMAX_##SFX(u, m0);                                                           \
                m1 = VMAX_##SFX(v, m1);                                                           \
                lo0 = VMIN_##SFX(u, lo0);                                                         \
                lo1 = VMIN_##SFX(v, lo1);                                                         \
            }                                                                                     \
            if (i + LANES <= end) {                                                               \
                V u = *(const VU *)(x + i);                                                       \
                m0 = VMAX_##SFX(u, m0);                                                           \
                lo0 = VMIN_##SFX(u, lo0);                                                         \
                i += LANES;                                                                       \
            }                                                                                     \
            if (i < end) {                                                                        \
                m1 = VMAX_##SFX(load_pad_##SFX(x + i, end - i, (T)-INFINITY), m1);                \
                lo1 = VMIN_##SFX(load_pad_##SFX(x + i, end - i, (T)INFINITY), lo1);               \
            }                                                                                     \
            T b = (T)hmax_##SFX(SEL(V, I, m1 > m0, m1, m0));                                      \
            if (b > M) {                                                                          \
                if (M != (T)-INFINITY) total *= exp((double)M - (double)b);                       \
                M = b;                                                                            \
            }                                                                                     \
            T mn = isfinite(M) ? M : (T)0;                                                        \
            if (mn != sh) { /* the b0 terms so far move to the new shift (both finite) */         \
                dtotal += ((double)b0 * (double)w) * ((double)mn - (double)sh);                   \
                sh = mn;                                                                          \
            }                                                                                     \
            const V shv = BC(V, sh);                                                              \
            const T *ahead = end < c ? x + end : next;                                            \
            sxp_ssize avail = end < c ? c - end : next != NULL ? c : 0;                          \
            V s0 = BC(V, (T)0), s1 = s0, d0 = s0, d1 = s0;                                        \
            i = b0;                                                                               \
            for (; i + 2 * LANES <= end; i += 2 * LANES) {                                        \
                if (i - b0 + 2 * LANES <= avail) {                                                \
                    __builtin_prefetch(ahead + (i - b0));                                         \
                    if (SXP_VBYTES == 64) __builtin_prefetch(ahead + (i - b0) + LANES);           \
                }                                                                                 \
                V u = *(const VU *)(x + i), v = *(const VU *)(x + i + LANES);                     \
                s0 += vexp_##SFX(u - shv);                                                        \
                s1 += vexp_##SFX(v - shv);                                                        \
                d0 += (shv - u) * wv;                                                             \
                d1 += (shv - v) * wv;                                                             \
            }                                                                                     \
            if (i + LANES <= end) {                                                               \
                V u = *(const VU *)(x + i);                                                       \
                s0 += vexp_##SFX(u - shv);                                                        \
                d0 += (shv - u) * wv;                                                             \
                i += LANES;                                                                       \
            }                                                                                     \
            if (i < end) { /* padding: -inf adds exp(-inf) = 0, the shift adds 0 to D */         \
                s1 += vexp_##SFX(load_pad_##SFX(x + i, end - i, (T)-INFINITY) - shv);             \
                d1 += (shv - load_pad_##SFX(x + i, end - i, sh)) * wv;                            \
            }                                                                                     \
            total += hsum_##SFX(s0 + s1);                                                         \
            dtotal += hsum_##SFX(d0 + d1);                                                        \
        }                                                                                         \
        *d = dtotal;                                                                              \
        *m = sh;                                                                                  \
        *lo = -(T)hmax_##SFX(-SEL(V, I, lo1 < lo0, lo1, lo0));                                    \
        return (T)lse_finish((double)M, total);                                                   \
    }                                                                                             \
                                                                                                  \
    /* The loss with smoothing, from ce_row's results (a valid label). */                        \
    SXP_INLINE T ce_smooth_##SFX(T lse, T xl, T w, T tl, sxp_ssize c, double d, T m, T lo) {     \
        if (!isfinite(lse)) return (T)NAN;                                                        \
        T widest = lse - lo; /* the largest lse - x_j, rounded as the generic kernel's */         \
        if (isinf(widest)) return (T)INFINITY;                                                    \
        double gap = (double)lse - (double)xl;                                                    \
        return (T)(((double)tl - (double)w) * gap +                                               \
                   ((double)w * (double)c) * ((double)lse - (double)m) + d);                      \
    }                                                                                             \
                                                                                                  \
    static void ce_labels_##SFX(const char *x, sxp_ssize ldx, const sxp_labels *lab, char *lo,  \
                                sxp_ssize ldlo, char *ls, sxp_ssize ldls, sxp_ssize n,         \
                                sxp_ssize c) {                                                   \
        T w, tl;                                                                                  \
        ce_weights_##SFX(lab->eps, c, &w, &tl);                                                   \
        sxp_ssize row = 0;                                                                       \
        if (w == (T)0 && c >= 1 && c <= 2 * LANES) {                                              \
            for (; row + SHORT_GROUP <= n; row += SHORT_GROUP) {                                  \
                if (c <= LANES)                                                                   \
                    lse_short_##SFX(x + row * ldx, ldx, ls + row * ldls, ldls, c, 1);             \
                else                                                                              \
                    lse_short_##SFX(x + row * ldx, ldx, ls + row * ldls, ldls, c, 2);             \
                for (int r = 0; r < SHORT_GROUP; r++) {                                           \
                    int64_t l;                                                                    \
                    int st = label_state(lab, row + r, c, &l);                                    \
                    T lse = *(const T *)(ls + (row + r) * ldls);                                  \
                    *(T *)(lo + (row + r) * ldlo) =                                               \
                        ce_plain_##SFX(st, lse, (const T *)(x + (row + r) * ldx), l);             \
                }                                                                                 \
            }                                                                                     \
        }                                                                                         \
        for (; row < n; row++) {                                                                  \
            const T *xr = (const T *)(x + row * ldx);                                             \
            const T *next = row + 1 < n ? (const T *)(x + (row + 1) * ldx) : NULL;                \
            int64_t l;                                                                            \
            int st = label_state(lab, row, c, &l);                                                \
            T lse, loss;                                                                          \
            if (w != (T)0 && st == 0) {                                                           \
                double d;                                                                         \
                T m, mn;                                                                          \
                lse = ce_row_##SFX(xr, c, next, w, &d, &m, &mn);                                  \
                loss = ce_smooth_##SFX(lse, xr[l], w, tl, c, d, m, mn);                           \
            } else {                                                                              \
                lse = lse_row_##SFX(xr, c, next);                                                 \
                loss = ce_plain_##SFX(st, lse, xr, l);                                            \
            }                                                                                     \
            *(T *)(ls + row * ldls) = lse;                                                        \
            *(T *)(lo + row * ldlo) = loss;                                                       \
        }                                                                                         \
    }                                                                                             \
                                                                                                  \
    static void ce_labels_vjp_##SFX(const char *x, sxp_ssize ldx, const sxp_labels *lab,        \
                                    const char *l, sxp_ssize ldl, const char *g, sxp_ssize ldg, \
                                    const char *h, sxp_ssize ldh, char *o, sxp_ssize ldo,       \
                                    sxp_ssize n, sxp_ssize c) {                                  \
        T w, tl;                                                                                  \
        ce_weights_##SFX(lab->eps, c, &w, &tl);                                                   \
        for (sxp_ssize row = 0; row < n; row++) {                                                \
            const T *xr = (const T *)(x + row * ldx);                                             \
            T *or_ = (T *)(o + row * ldo);                                                        \
            T lr = *(const T *)(l + row * ldl), gr = *(const T *)(g + row * ldg);                 \
            T hr = *(const T *)(h + row * ldh);                                                   \
            int64_t lb;                                                                           \
            int valid = label_state(lab, row, c, &lb) == 0;                                       \
            sxp_ssize i = 0;                                                                     \
            if (!isfinite(lr)) {                                                                  \
                for (; i < c; i++) or_[i] = (T)NAN;                                               \
                continue;                                                                         \
            }                                                                                     \
            T a = gr * (valid ? (T)1 : (T)0) + hr, gw = gr * (valid ? w : (T)0);                  \
            for (; i + 2 * LANES <= c; i += 2 * LANES) {                                          \
                V u = *(const VU *)(xr + i), v = *(const VU *)(xr + i + LANES);                   \
                *(VU *)(or_ + i) = vexp_##SFX(u - lr) * a - gw;                                   \
                *(VU *)(or_ + i + LANES) = vexp_##SFX(v - lr) * a - gw;                           \
            }                                                                                     \
            if (i + LANES <= c) {                                                                 \
                *(VU *)(or_ + i) = vexp_##SFX(*(const VU *)(xr + i) - lr) * a - gw;               \
                i += LANES;                                                                       \
            }                                                                                     \
            if (i < c)                                                                            \
                store_part_##SFX(                                                                 \
                    or_ + i, vexp_##SFX(load_pad_##SFX(xr + i, c - i, (T)0) - lr) * a - gw, c - i); \
            if (valid) /* the label's entry, its p as the loop computed it */                     \
                or_[lb] = vexp_##SFX(BC(V, xr[lb] - lr))[0] * a - gr * tl;                        \
        }                                                                                         \
    }

DEFINE_CE_KERNELS(float, f32, f32v, f32vu, f32i, F32_LANES)
DEFINE_CE_KERNELS(double, f64, f64v, f64vu, f64i, F64_LANES)

const sxp_kernels SXP_TABLE = {
    SXP_ISA_NAME,      SXP_VBYTES,        forward_f32,  forward_f64,
    pair_f32,          pair_f64,          exp_f32,      exp_f64,
    jacobian_f32,      jacobian_f64,      logsumexp_f32, logsumexp_f64,
    logsumexp_vjp_f32, logsumexp_vjp_f64, ce_labels_f32, ce_labels_f64,
    ce_labels_vjp_f32, ce_labels_vjp_f64,
};
