/* The row kernels for the target's baseline (SSE2 on x86-64, NEON on aarch64), compiled with no -m flag. */
#define SXP_TABLE sxp_kernels_base
#include "_rows_core.h"

/* Which tables the running CPU can execute (this file is compiled for the baseline, so the
 * checks run anywhere). x86-64-v4 is AVX-512 F/BW/DQ/VL (and CD); x86-64-v3 is AVX2, FMA, BMI2
 * and the rest of Haswell's set, which every CPU with AVX2, FMA and BMI2 has. */
int sxp_usable_kernels(const sxp_kernels **out) {
    int n = 0;
#if defined(SXP_X86_LEVELS) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        out[n++] = &sxp_kernels_avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
        __builtin_cpu_supports("bmi2"))
        out[n++] = &sxp_kernels_avx2;
#endif
    out[n++] = &sxp_kernels_base;
    return n;
}
