/*
 * threads.c - the single thread bound that covers both our OpenMP loops and OpenBLAS.
 *
 * We link OpenBLAS's OpenMP build, so BLAS calls share the OpenMP runtime: a BLAS call made
 * inside one of our parallel regions runs single-threaded, one made outside uses the
 * bound. Setting both from one number means `--threads N` really caps the total.
 *
 * The default bound is OMP_NUM_THREADS when that is a positive integer (the OpenMP
 * convention; `make tsan` relies on it to keep libgomp's uninstrumented workers out of the
 * way), else the number of online cores. The bound is read concurrently by every scoring
 * thread, so it is an atomic: resolving the default lazily from several threads at once is
 * then not a data race (they all store the same value).
 */
#include "core/internal.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

extern void openblas_set_num_threads(int num_threads);
extern int openblas_get_num_threads(void);

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
    uf__threads_apply();
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

void uf__threads_apply(void)
{
    int n = uf_get_threads();
#ifdef _OPENMP
    omp_set_num_threads(n); /* the calling thread's own setting */
    omp_set_dynamic(0);
#endif
    /* OpenBLAS's count is one process-wide variable: write it only when it changes, so
     * threads scoring at once do not all store into it. */
    if (openblas_get_num_threads() != n) openblas_set_num_threads(n);
}
