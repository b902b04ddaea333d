/*
 * threads.c - the single thread bound that covers both our OpenMP loops and OpenBLAS.
 *
 * We link OpenBLAS's OpenMP build, so BLAS calls share the OpenMP runtime: a BLAS call made
 * inside one of our parallel regions runs single-threaded, one made outside uses the
 * bound. Setting both from one number means `--threads N` really caps the total.
 */
#include "internal.h"

#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

extern void openblas_set_num_threads(int num_threads);

static int g_threads = 0; /* 0: not yet resolved */

static int online_cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

void uf_set_threads(int n)
{
    g_threads = n > 0 ? n : online_cores();
    uf__threads_apply();
}

int uf_get_threads(void)
{
    if (g_threads <= 0) g_threads = online_cores();
    return g_threads;
}

void uf__threads_apply(void)
{
    int n = uf_get_threads();
#ifdef _OPENMP
    omp_set_num_threads(n);
    omp_set_dynamic(0);
#endif
    openblas_set_num_threads(n);
}
