/*
 * threads.c - the library's default thread count.
 *
 * Every parallel region of the library names its thread count (an OpenMP num_threads
 * clause) from the object doing the work: a session, fitter or scorer set with
 * uf_*_set_threads, else this default. Nothing here or elsewhere calls
 * omp_set_num_threads, omp_set_dynamic or openblas_set_num_threads: a program that embeds
 * the library keeps its own OpenMP and BLAS settings (tests/test_threads.c checks it). The
 * library's own GEMM replaced every BLAS call, so OpenBLAS's thread count plays no part.
 *
 * The default is OMP_NUM_THREADS when that is a positive integer (the OpenMP convention;
 * `make tsan` relies on it to keep libgomp's uninstrumented workers out of the way), else
 * the number of online cores; uf_set_threads (deprecated) overrides it. It is read
 * concurrently by every scoring thread, so it is an atomic: resolving it lazily from
 * several threads at once is then not a data race (they all store the same value).
 */
#include "core/internal.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

static _Atomic int g_threads = 0; /* 0: not yet resolved */

/* OMP_NUM_THREADS if it is a positive integer (the first entry of a list "4,2"), else the
 * online cores. */
static int default_threads(void)
{
    const char *e = getenv("OMP_NUM_THREADS");
    if (e && *e) {
        char *end;
        long v = strtol(e, &end, 10);
        if (end != e && (*end == 0 || *end == ',') && v > 0 && v <= 4096) return (int)v;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

void uf_set_threads(int n)
{
    atomic_store_explicit(&g_threads, n > 0 ? n : default_threads(), memory_order_relaxed);
}

int uf_get_threads(void)
{
    int n = atomic_load_explicit(&g_threads, memory_order_relaxed);
    if (n <= 0) {
        n = default_threads();
        atomic_store_explicit(&g_threads, n, memory_order_relaxed);
    }
    return n;
}
