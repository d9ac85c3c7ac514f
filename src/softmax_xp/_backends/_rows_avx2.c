/* The row kernels for AVX2 + FMA, compiled with -march=x86-64-v3 (setup.py). */
#define SXP_TABLE sxp_kernels_avx2
#include "_rows_core.h"
