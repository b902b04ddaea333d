/*
 * kern_generic.c - the kernel table for baseline x86-64 (SSE2): every x86-64 CPU;
 * the fallback of the dispatch.
 * The body is kernels/kern_impl.h (one source for every level, see kernels/kern.h); this
 * file only selects the instruction set, so the rest of the library can stay baseline.
 */
#pragma GCC target("sse2")
#define UF_ISA 1
#define KERN_TABLE uf__kern_generic
#define KERN_NAME "generic"
#include "kernels/kern_impl.h"
