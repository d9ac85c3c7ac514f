/* The row kernels for AVX-512 (F, BW, DQ, VL), compiled with -march=x86-64-v4 (setup.py). */
#define SXP_TABLE sxp_kernels_avx512
#include "_rows_core.h"
