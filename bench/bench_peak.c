/*
 * bench_peak.c - the FP32 fused-multiply-add peak of this CPU at a given thread count.
 *
 * Why: issue 11 asks the FP32 ViT forward to run at 1.3x ONNX Runtime's speed. Whether that
 * is possible on the machine at hand depends on how close ONNX Runtime already is to what
 * the cores can compute at all. This program measures that ceiling directly - independent
 * FMA chains in registers, no memory traffic - for each vector width the CPU has, so
 * bench/table.py can print, for every ViT row, the GFLOP/s a 1.3x speed-up would need as a
 * share of the peak. (A GEMM library can only come near the peak, never above it; the ViT's
 * LayerNorms, softmax and GELU are not even counted in its FLOPs.)
 *
 * Output: one JSON line per width to --out (append): {"impl":"peak","isa":"avx512"|"avx2",
 * "threads":N,"gflops":best,"gflops_median":median}. Five timed runs of about a second each (runs of 0.1 s read a third low on a 2-core VM).
 *
 * Usage: bench_peak [--threads N] [--out FILE]
 */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHAINS 12 /* independent accumulators: > FMA latency (4) x pipes (2) */

__attribute__((target("avx512f"))) static float fma512(long iters)
{
    __m512 a[CHAINS];
    const __m512 b = _mm512_set1_ps(0.9999999f), c = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < CHAINS; i++) a[i] = _mm512_set1_ps((float)i);
    for (long k = 0; k < iters; k++) {
#pragma GCC unroll 12
        for (int i = 0; i < CHAINS; i++) a[i] = _mm512_fmadd_ps(a[i], b, c);
    }
    float s = 0;
    for (int i = 0; i < CHAINS; i++) s += _mm512_reduce_add_ps(a[i]);
    return s;
}

__attribute__((target("avx2,fma"))) static float fma256(long iters)
{
    __m256 a[CHAINS];
    const __m256 b = _mm256_set1_ps(0.9999999f), c = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < CHAINS; i++) a[i] = _mm256_set1_ps((float)i);
    for (long k = 0; k < iters; k++) {
#pragma GCC unroll 12
        for (int i = 0; i < CHAINS; i++) a[i] = _mm256_fmadd_ps(a[i], b, c);
    }
    float s = 0, t[8];
    for (int i = 0; i < CHAINS; i++) {
        _mm256_storeu_ps(t, a[i]);
        for (int j = 0; j < 8; j++) s += t[j];
    }
    return s;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* GFLOP/s of `threads` threads each running `iters` rounds at `lanes` floats per vector:
 * best and median of 5 runs (after one warm-up run). */
static void measure(const char *isa, int lanes, int threads, FILE *out)
{
    const long iters = 200000000; /* ~0.7 s a run at 2 x 110 GFLOP/s: short runs read low */
    double g[5];
    volatile float sink = 0;
    for (int rep = -1; rep < 5; rep++) {
        double t0 = omp_get_wtime();
        float s = 0;
#pragma omp parallel num_threads(threads) reduction(+ : s)
        s += lanes == 16 ? fma512(iters) : fma256(iters);
        double t = omp_get_wtime() - t0;
        sink += s;
        if (rep >= 0) g[rep] = 2.0 * lanes * CHAINS * (double)iters * threads / t / 1e9;
    }
    (void)sink;
    qsort(g, 5, sizeof g[0], cmp_d);
    fprintf(out, "{\"impl\":\"peak\",\"isa\":\"%s\",\"threads\":%d,\"gflops\":%.1f,"
                 "\"gflops_median\":%.1f,\"status\":\"ok\"}\n", isa, threads, g[4], g[2]);
    fprintf(stderr, "bench_peak: FP32 FMA peak %s, %d threads: %.1f GFLOP/s (median %.1f)\n",
            isa, threads, g[4], g[2]);
}

int main(int argc, char **argv)
{
    int threads = 2;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--out") && i + 1 < argc) path = argv[++i];
        else {
            fprintf(stderr, "usage: bench_peak [--threads N] [--out FILE]\n");
            return 2;
        }
    }
    if (threads < 1 || threads > 1024) {
        fprintf(stderr, "bench_peak: --threads %d out of range\n", threads);
        return 2;
    }
    FILE *out = path ? fopen(path, "a") : stdout;
    if (!out) {
        fprintf(stderr, "bench_peak: %s: cannot open for appending\n", path);
        return 1;
    }
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) measure("avx512", 16, threads, out);
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        measure("avx2", 8, threads, out);
    if (out != stdout && fclose(out) != 0) {
        fprintf(stderr, "bench_peak: %s: write failed\n", path);
        return 1;
    }
    return 0;
}
