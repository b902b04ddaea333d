/*
 * kern_avx2.c - the kernel table for AVX2 + FMA (Haswell and later, Zen 1
 * and later): most industrial PCs have it and no AVX-512.
 * The body is kernels/kern_impl.h (one source for every level, see kernels/kern.h); this
 * file only selects the instruction set, so the rest of the library can stay baseline.
 */
#pragma GCC target("avx2,fma")
#define UF_ISA 2
#define KERN_TABLE uf__kern_avx2
#define KERN_NAME "avx2"
#include "kernels/kern_impl.h"
