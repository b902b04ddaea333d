/*
 * kern_avx512.c - the kernel table for AVX-512 F/BW/DQ/VL (Skylake-X, Ice
 * Lake, Zen 4 and later): twice the vector width.
 * The body is kernels/kern_impl.h (one source for every level, see kernels/kern.h); this
 * file only selects the instruction set, so the rest of the library can stay baseline.
 */
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")
#define UF_ISA 3
#define KERN_TABLE uf__kern_avx512
#define KERN_NAME "avx512"
#include "kernels/kern_impl.h"
