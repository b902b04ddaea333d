/*
 * bench_detector.c - our side of the detector part of `make bench` (bench/detector.sh):
 * the two kernels that dominate fitting and scoring, each beside a reference measured in
 * the same process run.
 *
 *  --knn NQ,NB,D,K   uf__knn (nearest-neighbour scoring, src/detector/knn.c) of NQ queries against a
 *                    bank of NB rows of D floats, next to OpenBLAS cblas_sgemm of the same
 *                    shape (Q B^T, in query pieces so the product fits in memory) at the
 *                    same thread count. Both get the same FLOP count, 2 NQ NB D, so the
 *                    GFLOP/s ratio is the time ratio: how close the kNN (tiled sgemm plus
 *                    running top lists plus exact re-ranking) gets to the bare product.
 *                    Calls alternate (kNN, sgemm, kNN, ...) so drifting machine load hits
 *                    both alike; the best call of each is the headline, as in bench_vit.c.
 *                    A few queries are checked against a double-precision brute force.
 *  --sgemm N         cblas_sgemm N^3 alone (N = 2048: compute-bound): the machine's peak, for
 *                    context.
 *  --coreset MODE    generates N x D synthetic features (MODE "clustered": 100 Gaussian
 *                    clusters, as tests/test_kernels.c; "uniform": uniform noise in
 *                    [0, 1)), writes them to --data FILE.npy so the PyTorch reference
 *                    (scripts/bench_coreset_ref.py) runs on identical input, and times
 *                    uf__coreset_greedy (src/detector/coreset.c) to --fraction of N, once.
 *
 * Internal functions are used on purpose (this is a kernel benchmark), so it is built with
 * -Isrc like the tests. Output: one JSON line per measurement, appended to --out (or
 * stdout); progress on stderr. Exit status non-zero if OUR kernel fails.
 *
 * Usage:
 *   bench_detector --knn NQ,NB,D,K --name NAME [--threads N] [--budget SEC] [--out FILE]
 *   bench_detector --sgemm N [--threads N] [--out FILE]
 *   bench_detector --coreset clustered|uniform --data F.npy [--n N] [--dim D]
 *                  [--fraction F] [--threads N] [--out FILE]
 */
#include "core/internal.h"
#include "detector/kernels.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Query rows per sgemm call of the reference: the product piece [SGEMM_PIECE][NB] must fit
 * in memory (1024 x 100000 floats = 410 MB). */
#define SGEMM_PIECE 1024
/* Queries checked against the double-precision brute force. */
#define N_CHECK 16
/* Most timed calls per implementation. */
#define MAX_REPS 200

/* ------------------------------------------------------------------------------------ */
/* Small utilities                                                                      */
/* ------------------------------------------------------------------------------------ */

static double now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU seconds of the process, all threads (on a loaded machine, wall / cpu shows how
 * much of the cores a run really had). */
static double cpu_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Best and median of n >= 1 samples (sorts v). */
static void best_median(double *v, int n, double *best, double *med)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    *best = v[0];
    *med = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Seeded generator (splitmix64 streams, the same as tests/test_kernels.c uses). */
typedef struct {
    uint64_t s;
} rng;

static rng rng_new(uint64_t seed, uint64_t stream)
{
    rng r = {seed ^ (stream * 0xD1B54A32D192ED03ULL)};
    return r;
}

static uint64_t rng_next(rng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static double rng_unif(rng *r) { return (double)(rng_next(r) >> 11) * 0x1.0p-53; }

static double rng_gauss(rng *r)
{
    double u = rng_unif(r), v = rng_unif(r);
    return sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v);
}

/* Synthetic patch features [n][d]: nc Gaussian clusters (centres N(0, 9), per-cluster
 * spread 0.3 .. 1.1), or uniform noise in [0, 1) for nc = 0. Same recipe as
 * random_features() in tests/test_kernels.c. NULL if out of memory. */
static float *random_features(uint64_t seed, size_t n, int d, int nc)
{
    rng r = rng_new(seed, 7);
    float *x = malloc(n * (size_t)d * sizeof *x);                       /* [n][d]  */
    float *c = malloc((size_t)(nc ? nc : 1) * (size_t)d * sizeof *c);  /* [nc][d] */
    if (!x || !c) {
        free(x), free(c);
        return NULL;
    }
    for (size_t i = 0; i < (size_t)nc * (size_t)d; i++) c[i] = (float)(3 * rng_gauss(&r));
    for (size_t i = 0; i < n; i++) {
        int k = nc ? (int)(rng_unif(&r) * nc) : 0;
        double sd = 0.3 + 0.2 * (k % 5);
        for (int j = 0; j < d; j++)
            x[i * (size_t)d + j] = nc ? (float)(c[(size_t)k * d + j] + sd * rng_gauss(&r))
                                      : (float)rng_unif(&r);
    }
    free(c);
    return x;
}

/* Write x [n][d] as a NumPy .npy file (format 1.0, little-endian float32, C order).
 * Returns 0 on success. */
static int write_npy(const char *path, const float *x, size_t n, int d)
{
    char hdr[128];
    int len = snprintf(hdr, sizeof hdr,
                       "{'descr': '<f4', 'fortran_order': False, 'shape': (%zu, %d), }", n, d);
    /* magic (6) + version (2) + header length (2) + header + padding + '\n' = k * 64 */
    int total = 10 + len + 1;
    int pad = (64 - total % 64) % 64;
    FILE *f = fopen(path, "wb");
    if (!f) return 1;
    unsigned short hl = (unsigned short)(len + pad + 1); /* x86: already little-endian */
    int ok = fwrite("\x93NUMPY\x01\x00", 1, 8, f) == 8 && fwrite(&hl, 2, 1, f) == 1 &&
             fwrite(hdr, 1, (size_t)len, f) == (size_t)len;
    for (int i = 0; ok && i < pad; i++) ok = fputc(' ', f) != EOF;
    ok = ok && fputc('\n', f) != EOF;
    ok = ok && fwrite(x, sizeof *x * (size_t)d, n, f) == n;
    return (fclose(f) != 0 || !ok) ? 1 : 0;
}

/* Print a failure line for our kernel and return 1. */
static int fail(FILE *out, const char *bench, const char *name, const char *what)
{
    char msg[512];
    snprintf(msg, sizeof msg, "%s: %s", what, uf_errmsg());
    for (char *p = msg; *p; p++) /* keep the JSON string simple */
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20) *p = '\'';
    fprintf(out, "{\"bench\":\"%s\",\"name\":\"%s\",\"impl\":\"ours\",\"status\":\"failed\","
            "\"reason\":\"%s\"}\n", bench, name, msg);
    fflush(out);
    fprintf(stderr, "bench_detector: %s %s: %s\n", bench, name, msg);
    return 1;
}

/* ------------------------------------------------------------------------------------ */
/* kNN against sgemm                                                                    */
/* ------------------------------------------------------------------------------------ */

/* Largest relative error of uf__knn's scores out [nq] over the first N_CHECK queries,
 * against sum (q - b)^2 in double over the whole bank (k = 1: the minimum; k > 1: the mean
 * of the k smallest, by partial selection). */
static double knn_check(const float *Q, const float *B, size_t nb, int D, int k,
                        const float *out, size_t nq)
{
    double worst = 0;
    double *best = malloc((size_t)k * sizeof *best); /* [k] smallest distances, ascending */
    if (!best) return -1;
    for (size_t i = 0; i < nq && i < N_CHECK; i++) {
        for (int j = 0; j < k; j++) best[j] = INFINITY;
        for (size_t b = 0; b < nb; b++) {
            double s = 0;
            for (int c = 0; c < D; c++) {
                double t = (double)Q[i * (size_t)D + c] - B[b * (size_t)D + c];
                s += t * t;
            }
            if (s < best[k - 1]) { /* insertion into the sorted top list */
                int p = k - 1;
                while (p > 0 && best[p - 1] > s) {
                    best[p] = best[p - 1];
                    p--;
                }
                best[p] = s;
            }
        }
        double ref = 0;
        for (int j = 0; j < k; j++) ref += best[j];
        ref /= k;
        double e = fabs(out[i] - ref) / (ref > 1e-30 ? ref : 1e-30);
        if (!(e <= worst)) worst = e; /* NaN propagates */
    }
    free(best);
    return worst;
}

static int bench_knn(FILE *out, const char *name, const char *shape, double budget)
{
    unsigned long long nq_, nb_;
    int D, k;
    if (sscanf(shape, "%llu,%llu,%d,%d", &nq_, &nb_, &D, &k) != 4 || nq_ < 1 || nb_ < 1 ||
        D < 1 || k < 1 || nb_ > (1ull << 31) || nq_ > (1ull << 31) || D > 65536) {
        fprintf(stderr, "bench_detector: --knn wants NQ,NB,D,K (positive)\n");
        return 2;
    }
    const size_t nq = (size_t)nq_, nb = (size_t)nb_;
    const size_t piece = nq < SGEMM_PIECE ? nq : SGEMM_PIECE;
    float *Q = random_features(7, nq, D, 50);          /* [nq][D] queries       */
    float *B = random_features(6, nb, D, 50);          /* [nb][D] bank          */
    float *bn = malloc(nb * sizeof *bn);               /* [nb] ||B[j]||^2       */
    float *sc = malloc(nq * sizeof *sc);               /* [nq] kNN scores       */
    float *C = malloc(piece * nb * sizeof *C);         /* [piece][nb] Q B^T     */
    double *tk = malloc(MAX_REPS * sizeof *tk), *ts = malloc(MAX_REPS * sizeof *ts);
    int rc = 0;
    if (!Q || !B || !bn || !sc || !C || !tk || !ts) {
        fprintf(stderr, "bench_detector: out of memory for kNN %s\n", shape);
        rc = 1;
        goto done;
    }
    memset(C, 0, piece * nb * sizeof *C); /* page faults outside the timing */
    if (uf__knn_bank_norms(B, nb, D, bn) != UF_OK) {
        rc = fail(out, "knn", name, "uf__knn_bank_norms");
        goto done;
    }
    const double flop = 2.0 * (double)nq * (double)nb * (double)D;
    /* Short shapes get one untimed call of each first (thread pools, caches); calls of a
     * second or more are their own warm-up. */
    int warm = flop < 2e11;
    int nk = 0, ns = 0;
    double spent = 0;
    for (int it = 0; nk < MAX_REPS && (nk < 2 + warm || spent < 2 * budget); it++) {
        double t0 = now_sec();
        if (uf__knn(Q, nq, B, bn, nb, D, k, sc) != UF_OK) {
            rc = fail(out, "knn", name, "uf__knn");
            goto done;
        }
        double t1 = now_sec();
        for (size_t q0 = 0; q0 < nq; q0 += piece) {
            size_t m = nq - q0 < piece ? nq - q0 : piece;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)nb, D, 1.0f,
                        Q + q0 * (size_t)D, D, B, D, 0.0f, C, (int)nb);
        }
        double t2 = now_sec();
        if (it == 0 && warm) continue;
        tk[nk++] = t1 - t0;
        ts[ns++] = t2 - t1;
        spent += t2 - t0;
    }
    double err = knn_check(Q, B, nb, D, k, sc, nq);
    double kb, km, sb, sm;
    best_median(tk, nk, &kb, &km);
    best_median(ts, ns, &sb, &sm);
    fprintf(out,
            "{\"bench\":\"knn\",\"name\":\"%s\",\"impl\":\"ours\",\"status\":\"ok\","
            "\"nq\":%zu,\"nb\":%zu,\"dim\":%d,\"k\":%d,\"threads\":%d,\"reps\":%d,"
            "\"gflop\":%.3f,\"knn_s\":%.5f,\"knn_s_median\":%.5f,\"knn_gflops\":%.2f,"
            "\"sgemm_s\":%.5f,\"sgemm_s_median\":%.5f,\"sgemm_gflops\":%.2f,"
            "\"sgemm_piece\":%zu,\"ratio\":%.4f,\"check_rel_err\":%.3g,\"blas_core\":\"%s\"}\n",
            name, nq, nb, D, k, uf_get_threads(), nk, flop * 1e-9, kb, km, flop / kb * 1e-9,
            sb, sm, flop / sb * 1e-9, piece, sb / kb, err, openblas_get_corename());
    fflush(out);
    fprintf(stderr, "bench_detector: knn %s (%zu x %zu x %d, k=%d): %.1f GFLOP/s, sgemm "
            "%.1f GFLOP/s, ratio %.2f (%d reps, check err %.2g)\n", name, nq, nb, D, k,
            flop / kb * 1e-9, flop / sb * 1e-9, sb / kb, nk, err);
    if (!(err >= 0 && err < 1e-4)) {
        fprintf(stderr, "bench_detector: knn %s: scores disagree with the brute force\n",
                name);
        rc = 1;
    }
done:
    free(Q), free(B), free(bn), free(sc), free(C), free(tk), free(ts);
    return rc;
}

/* Compute-bound sgemm n^3 (2048^3: output 16 MB), best of 5 calls after one untimed call: the
 * machine's practical peak, as bench_vit --sgemm, for context beside the same-shape
 * figure (a product of the kNN shapes writes its whole nq x nb output to memory). */
static int bench_sgemm_peak(FILE *out, int n)
{
    const int reps = 5;
    const size_t nn = (size_t)n * n;
    float *A = random_features(3, (size_t)n, n, 0); /* [n][n] */
    float *Bm = random_features(4, (size_t)n, n, 0); /* [n][n] */
    float *C = calloc(nn, sizeof *C);               /* [n][n] */
    double t[5];
    if (!A || !Bm || !C) {
        free(A), free(Bm), free(C);
        fprintf(stderr, "bench_detector: out of memory for sgemm\n");
        return 1;
    }
    for (int r = -1; r < reps; r++) {
        double t0 = now_sec();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.f, A, n, Bm, n, 0.f,
                    C, n);
        if (r >= 0) t[r] = now_sec() - t0;
    }
    double best, med, flop = 2.0 * n * (double)n * n;
    best_median(t, reps, &best, &med);
    fprintf(out, "{\"bench\":\"sgemm\",\"name\":\"%d^3\",\"impl\":\"openblas\","
            "\"status\":\"ok\",\"n\":%d,\"threads\":%d,\"reps\":%d,\"gflops\":%.2f,"
            "\"gflops_median\":%.2f,\"blas_core\":\"%s\"}\n",
            n, n, uf_get_threads(), reps, flop / best * 1e-9, flop / med * 1e-9,
            openblas_get_corename());
    fflush(out);
    fprintf(stderr, "bench_detector: sgemm %d^3: %.1f GFLOP/s (median %.1f)\n", n,
            flop / best * 1e-9, flop / med * 1e-9);
    free(A), free(Bm), free(C);
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* Coreset                                                                              */
/* ------------------------------------------------------------------------------------ */

static int bench_coreset(FILE *out, const char *mode, const char *data, size_t N, int D,
                         double fraction)
{
    int nc;
    if (!strcmp(mode, "clustered")) nc = 100;
    else if (!strcmp(mode, "uniform")) nc = 0;
    else {
        fprintf(stderr, "bench_detector: --coreset wants clustered or uniform\n");
        return 2;
    }
    size_t n_keep = uf__coreset_count(N, fraction);
    float *X = random_features(nc ? 5 : 8, N, D, nc);   /* [N][D] features    */
    size_t *idx = malloc((n_keep ? n_keep : 1) * sizeof *idx); /* [n_keep] selection */
    int rc = 0;
    if (!X || !idx) {
        fprintf(stderr, "bench_detector: out of memory for the coreset data\n");
        rc = 1;
        goto done;
    }
    if (data && write_npy(data, X, N, D) != 0) {
        fprintf(stderr, "bench_detector: cannot write %s\n", data);
        rc = 1;
        goto done;
    }
    size_t n_out = 0;
    double c0 = cpu_sec(), t0 = now_sec();
    if (uf__coreset_greedy(X, N, D, fraction, 1, idx, &n_out) != UF_OK) {
        rc = fail(out, "coreset", mode, "uf__coreset_greedy");
        goto done;
    }
    double t = now_sec() - t0, tc = cpu_sec() - c0;
    fprintf(out,
            "{\"bench\":\"coreset\",\"name\":\"%s\",\"impl\":\"ours\",\"status\":\"ok\","
            "\"n\":%zu,\"dim\":%d,\"fraction\":%g,\"n_keep\":%zu,\"threads\":%d,"
            "\"seconds\":%.4f,\"cpu_s\":%.4f,\"data\":\"%s\"}\n",
            mode, N, D, fraction, n_out, uf_get_threads(), t, tc, data ? data : "");
    fflush(out);
    fprintf(stderr, "bench_detector: coreset %s %zu x %d -> %zu: %.2f s\n", mode, N, D, n_out,
            t);
done:
    free(X), free(idx);
    return rc;
}

/* ------------------------------------------------------------------------------------ */

static void usage(void)
{
    fprintf(stderr,
            "usage: bench_detector --knn NQ,NB,D,K --name NAME [--threads N] [--budget SEC]\n"
            "                      [--out FILE]\n"
            "       bench_detector --sgemm N [--threads N] [--out FILE]\n"
            "       bench_detector --coreset clustered|uniform [--data F.npy] [--n N]\n"
            "                      [--dim D] [--fraction F] [--threads N] [--out FILE]\n");
}

int main(int argc, char **argv)
{
    const char *knn = NULL, *sgemm = NULL, *name = "knn", *coreset = NULL, *data = NULL;
    const char *outp = NULL;
    int threads = 2, D = 192;
    double budget = 4, fraction = 0.1;
    unsigned long long N = 150000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            usage();
            return 2;
        }
        i++;
        if (!strcmp(a, "--knn")) knn = v;
        else if (!strcmp(a, "--sgemm")) sgemm = v;
        else if (!strcmp(a, "--name")) name = v;
        else if (!strcmp(a, "--coreset")) coreset = v;
        else if (!strcmp(a, "--data")) data = v;
        else if (!strcmp(a, "--out")) outp = v;
        else if (!strcmp(a, "--threads")) threads = atoi(v);
        else if (!strcmp(a, "--dim")) D = atoi(v);
        else if (!strcmp(a, "--budget")) budget = atof(v);
        else if (!strcmp(a, "--fraction")) fraction = atof(v);
        else if (!strcmp(a, "--n")) N = strtoull(v, NULL, 10);
        else {
            usage();
            return 2;
        }
    }
    if ((knn != NULL) + (coreset != NULL) + (sgemm != NULL) != 1 ||
        (sgemm && (atoi(sgemm) < 1 || atoi(sgemm) > 16384)) || threads < 1 || D < 1 || N < 1 ||
        !(fraction > 0)) {
        usage();
        return 2;
    }
    uf_set_threads(threads);           /* our default (this benchmark has no objects) */
    openblas_set_num_threads(threads); /* the OpenBLAS anchor, the same count */
    FILE *out = outp ? fopen(outp, "a") : stdout;
    if (!out) {
        fprintf(stderr, "bench_detector: cannot open %s\n", outp);
        return 1;
    }
    int rc = knn       ? bench_knn(out, name, knn, budget)
             : coreset ? bench_coreset(out, coreset, data, (size_t)N, D, fraction)
                       : bench_sgemm_peak(out, atoi(sgemm));
    if (out != stdout) fclose(out);
    return rc;
}
