/*
 * test_cluster.c - tests of the clustering measures (uf_nmi, uf_ari, uf_cluster_f1,
 * uf_cluster_f1_macro) and of uf_kmeans.
 *
 * Measures: tests/data/metrics/cluster.txt (scripts/gen_metrics_golden.py, scikit-learn
 * 1.2 and scipy's linear_sum_assignment) holds labelings stored in full (random, noisy,
 * permuted, more or fewer clusters than types, one cluster, all distinct, n = 1, 2,
 * INT_MIN / INT_MAX labels) and two generated ones (100,000 and 5,000 items, regenerated
 * here from splitmix64). NMI, ARI and macro F1 must agree within 1e-12, micro F1 (a ratio
 * of integers) within 1e-15. The Hungarian matching is also checked against brute force
 * over all matchings on random small tables, and symmetry / relabelling invariance.
 *
 * K-means (no golden: scikit-learn's random streams cannot be reproduced): well-separated
 * blobs are recovered exactly (ARI 1), the inertia equals a recomputation from the labels,
 * converged labels are a Lloyd fixed point, more restarts never do worse, results repeat
 * bit for bit for a seed and across thread counts, k = 1, k = n, duplicate points, k above
 * the number of distinct points, and argument errors.
 */
#include "harness.h"
#include "uniformaly.h"

#include <limits.h>
#include <stdint.h>

#define DATA "tests/data/metrics/"

/* ---- inputs as scripts/gen_metrics_golden.py draws them (th_sm: splitmix64) ---------- */

/* Standard normal from two uniforms (Box-Muller). */
static double sm_normal(th_sm *r)
{
    double u = ((double)(th_sm_next(r) >> 11) + 0.5) * 0x1.0p-53;
    double v = (double)(th_sm_next(r) >> 11) * 0x1.0p-53;
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* cluster_gen() of the script. */
static void cluster_gen(uint64_t seed, size_t n, int kt, int kp, int *t, int *p)
{
    th_sm r = th_sm_new(seed, 9);
    for (size_t i = 0; i < n; i++) {
        t[i] = (int)(th_sm_next(&r) % (uint64_t)kt);
        if (th_sm_next(&r) % 4 != 0) p[i] = (5 * t[i] + 1) % kp;
        else p[i] = (int)(th_sm_next(&r) % (uint64_t)kp);
    }
}

static int read_ints(FILE *f, int *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (fscanf(f, "%d", &v[i]) != 1) return -1;
    return 0;
}

/* Compare the four measures of one case with the golden values. */
static void check_case(const char *name, const int *t, const int *p, size_t n, double nmi,
                       double ari, double f1, double f1m, double *worst)
{
    double g_nmi = uf_nmi(t, p, n), g_ari = uf_ari(t, p, n);
    double g_f1 = uf_cluster_f1(t, p, n), g_f1m = uf_cluster_f1_macro(t, p, n);
    CHECKF(fabs(g_nmi - nmi) <= 1e-12, "%s: nmi %.17g, sklearn %.17g", name, g_nmi, nmi);
    CHECKF(fabs(g_ari - ari) <= 1e-12, "%s: ari %.17g, sklearn %.17g", name, g_ari, ari);
    CHECKF(fabs(g_f1 - f1) <= 1e-15, "%s: f1 %.17g, sklearn %.17g", name, g_f1, f1);
    if (!isnan(f1m))
        CHECKF(fabs(g_f1m - f1m) <= 1e-12, "%s: macro f1 %.17g, sklearn %.17g", name, g_f1m,
               f1m);
    double d[4] = {fabs(g_nmi - nmi), fabs(g_ari - ari), fabs(g_f1 - f1),
                   isnan(f1m) ? 0 : fabs(g_f1m - f1m)};
    for (int i = 0; i < 4; i++)
        if (d[i] > worst[i]) worst[i] = d[i];
    /* symmetric measures */
    CHECKF(fabs(uf_nmi(p, t, n) - g_nmi) <= 1e-14 && fabs(uf_ari(p, t, n) - g_ari) <= 1e-14,
           "%s: not symmetric", name);
}

static void test_golden(void)
{
    FILE *f = fopen(DATA "cluster.txt", "r");
    REQUIRE(f != NULL);
    char line[256];
    int n_cases = 0;
    double worst[4] = {0, 0, 0, 0};
    while (fgets(line, sizeof line, f)) {
        char name[64];
        size_t n;
        unsigned long long seed;
        int kt, kp;
        double nmi, ari, f1, f1m;
        if (sscanf(line, "case %63s %zu %lf %lf %lf %lf", name, &n, &nmi, &ari, &f1, &f1m) == 6) {
            int *t = malloc(n * sizeof *t), *p = malloc(n * sizeof *p);
            int ok = t && p && read_ints(f, t, n) == 0 && read_ints(f, p, n) == 0;
            CHECKF(ok, "cannot read case %s", name);
            if (ok) check_case(name, t, p, n, nmi, ari, f1, f1m, worst);
            free(t);
            free(p);
            n_cases++;
            if (!fgets(line, sizeof line, f)) break; /* rest of the last label line */
        } else if (sscanf(line, "gen %llu %zu %d %d %lf %lf %lf %lf", &seed, &n, &kt, &kp, &nmi,
                          &ari, &f1, &f1m) == 8) {
            int *t = malloc(n * sizeof *t), *p = malloc(n * sizeof *p);
            REQUIRE(t && p);
            cluster_gen(seed, n, kt, kp, t, p);
            snprintf(name, sizeof name, "gen %llu", seed);
            check_case(name, t, p, n, nmi, ari, f1, f1m, worst);
            free(t);
            free(p);
            n_cases++;
        }
    }
    fclose(f);
    CHECKF(n_cases == 15, "%d cases read", n_cases);
    fprintf(stderr, "    %d cases: max |diff| nmi %.2g ari %.2g f1 %.2g macro f1 %.2g\n", n_cases,
            worst[0], worst[1], worst[2], worst[3]);
}

/* Max matched count over all one-to-one matchings of the kt x kp table C (brute force:
 * every injective map of the smaller side); also the range of macro F1 over the optimal
 * matchings. */
static void brute_match(const int *C, int kt, int kp, const int *tsize, const int *psize,
                        int *best, double *mlo, double *mhi)
{
    int small = kt < kp ? kt : kp, big = kt < kp ? kp : kt;
    int perm[8], used[8] = {0};
    *best = -1;
    /* iterate over injective maps small -> big by odometer recursion made iterative */
    int depth = 0;
    perm[0] = -1;
    while (depth >= 0) {
        if (depth == small) {
            int tot = 0;
            double f[8] = {0};
            for (int i = 0; i < small; i++) {
                int a = kt <= kp ? i : perm[i], b = kt <= kp ? perm[i] : i;
                tot += C[a * kp + b];
                f[a] = 2.0 * C[a * kp + b] / (double)(tsize[a] + psize[b]);
            }
            double m = 0;
            for (int a = 0; a < kt; a++) m += f[a];
            m /= kt;
            if (tot > *best) {
                *best = tot;
                *mlo = *mhi = m;
            } else if (tot == *best) {
                if (m < *mlo) *mlo = m;
                if (m > *mhi) *mhi = m;
            }
            depth--;
            continue;
        }
        if (perm[depth] >= 0) used[perm[depth]] = 0;
        int next = perm[depth] + 1;
        while (next < big && used[next]) next++;
        if (next >= big) {
            perm[depth] = -1;
            depth--;
            continue;
        }
        perm[depth] = next;
        used[next] = 1;
        depth++;
        if (depth < small) perm[depth] = -1;
    }
}

/* Hungarian matching against brute force on random tables (up to 7 x 7), plus
 * relabelling invariance. */
static void test_matching_brute(void)
{
    th_sm r = th_sm_new(31, 4);
    int t[300], p[300], t2[300], p2[300];
    for (int trial = 0; trial < 400; trial++) {
        int kt = 1 + (int)(th_sm_next(&r) % 7), kp = 1 + (int)(th_sm_next(&r) % 7);
        size_t n = (size_t)(kt > kp ? kt : kp) + (size_t)(th_sm_next(&r) % 250);
        int C[64] = {0}, ts[8] = {0}, ps[8] = {0};
        for (size_t i = 0; i < n; i++) {
            /* every type and cluster used at least once */
            t[i] = i < (size_t)kt ? (int)i : (int)(th_sm_next(&r) % (uint64_t)kt);
            p[i] = i < (size_t)kp ? (int)i
                   : th_sm_next(&r) % 3 ? (t[i] * 2 + trial) % kp
                                     : (int)(th_sm_next(&r) % (uint64_t)kp);
            C[t[i] * kp + p[i]]++;
            ts[t[i]]++;
            ps[p[i]]++;
        }
        int best;
        double mlo = 0, mhi = 0;
        brute_match(C, kt, kp, ts, ps, &best, &mlo, &mhi);
        double f1 = uf_cluster_f1(t, p, n), f1m = uf_cluster_f1_macro(t, p, n);
        CHECKF(f1 == (double)best / (double)n, "trial %d (%d x %d, n %zu): f1 %.17g, best %d",
               trial, kt, kp, n, f1, best);
        CHECKF(f1m >= mlo - 1e-12 && f1m <= mhi + 1e-12,
               "trial %d: macro f1 %.17g outside the optimal matchings' [%.17g, %.17g]", trial,
               f1m, mlo, mhi);
        /* relabel both sides with arbitrary values: nothing changes */
        for (size_t i = 0; i < n; i++) {
            t2[i] = t[i] * -1000003 + 17;
            p2[i] = p[i] == 0 ? INT_MIN : p[i] * 99991;
        }
        CHECK(uf_cluster_f1(t2, p2, n) == f1);
        CHECK(fabs(uf_nmi(t2, p2, n) - uf_nmi(t, p, n)) <= 1e-15);
        CHECK(fabs(uf_ari(t2, p2, n) - uf_ari(t, p, n)) <= 1e-15);
    }
}

static void test_measure_edges(void)
{
    int a[4] = {0, 0, 1, 1}, b[4] = {1, 1, 0, 0};
    CHECK(uf_nmi(a, b, 4) == 1.0 && uf_ari(a, b, 4) == 1.0 && uf_cluster_f1(a, b, 4) == 1.0 &&
          uf_cluster_f1_macro(a, b, 4) == 1.0);
    CHECK(uf_nmi(NULL, NULL, 0) == 1.0 && uf_ari(NULL, NULL, 0) == 1.0); /* as sklearn */
    CHECK(isnan(uf_cluster_f1(NULL, NULL, 0)) && isnan(uf_cluster_f1_macro(a, b, 0)));
    CHECK(isnan(uf_nmi(a, NULL, 4)) && isnan(uf_ari(NULL, b, 4)));
    CHECK(isnan(uf_cluster_f1(a, NULL, 4)));
    CHECK(strstr(uf_errmsg(), "NULL") != NULL);
    /* more clusters than types: an unmatched cluster counts as wrong for micro F1 and
     * adds nothing to the types' macro F1 */
    int t[6] = {0, 0, 0, 1, 1, 1}, p[6] = {0, 0, 2, 1, 1, 3};
    CHECK(fabs(uf_cluster_f1(t, p, 6) - 4.0 / 6.0) < 1e-15);
    /* type 0: 2 * 2 / (3 + 2); type 1: 2 * 2 / (3 + 2) */
    CHECK(fabs(uf_cluster_f1_macro(t, p, 6) - 0.8) < 1e-15);
    /* fewer clusters than types: type 2 has no cluster (F1 0) */
    int t3[6] = {0, 0, 1, 1, 2, 2}, p3[6] = {5, 5, 6, 6, 6, 5};
    CHECK(fabs(uf_cluster_f1(t3, p3, 6) - 4.0 / 6.0) < 1e-15);
    CHECK(fabs(uf_cluster_f1_macro(t3, p3, 6) - (0.8 + 0.8 + 0) / 3.0) < 1e-15);
}

/* ==================================================================================== */
/* K-means                                                                              */
/* ==================================================================================== */

/* Inertia recomputed from labels: sum of squared distances to the cluster means. */
static double brute_inertia(const float *X, size_t n, int d, int k, const int *lab)
{
    double *mu = calloc((size_t)k * (size_t)d, sizeof *mu);
    size_t *cnt = calloc((size_t)k, sizeof *cnt);
    for (size_t i = 0; i < n; i++) {
        cnt[lab[i]]++;
        for (int j = 0; j < d; j++) mu[lab[i] * d + j] += X[i * (size_t)d + (size_t)j];
    }
    for (int c = 0; c < k; c++)
        for (int j = 0; j < d; j++)
            if (cnt[c]) mu[c * d + j] /= (double)cnt[c];
    double s = 0;
    for (size_t i = 0; i < n; i++)
        for (int j = 0; j < d; j++) {
            double t = X[i * (size_t)d + (size_t)j] - mu[lab[i] * d + j];
            s += t * t;
        }
    free(mu);
    free(cnt);
    return s;
}

/* k Gaussian blobs (sigma 1) with centres 40 apart per axis, points shuffled. */
static void blobs(uint64_t seed, size_t n, int d, int k, float *X, int *truth)
{
    th_sm r = th_sm_new(seed, 3);
    double *ctr = malloc((size_t)k * (size_t)d * sizeof *ctr);
    for (int c = 0; c < k; c++)
        for (int j = 0; j < d; j++) ctr[c * d + j] = 40.0 * (double)(th_sm_next(&r) % 9) - 160.0;
    /* make centres distinct: offset each along axis c % d */
    for (int c = 0; c < k; c++) ctr[c * d + c % d] += 400.0 * (c + 1);
    for (size_t i = 0; i < n; i++) {
        int c = (int)(th_sm_next(&r) % (uint64_t)k);
        truth[i] = c;
        for (int j = 0; j < d; j++)
            X[i * (size_t)d + (size_t)j] = (float)(ctr[c * d + j] + sm_normal(&r));
    }
    free(ctr);
}

static void test_kmeans_blobs(void)
{
    enum { N = 600, D = 8, K = 6 };
    float *X = malloc(N * D * sizeof *X);
    int *truth = malloc(N * sizeof *truth), *lab = malloc(N * sizeof *lab);
    int *lab1 = malloc(N * sizeof *lab1);
    REQUIRE(X && truth && lab && lab1);
    int perfect_single = 0;
    for (uint64_t seed = 1; seed <= 6; seed++) {
        blobs(seed, N, D, K, X, truth);
        double in10, in1;
        REQUIRE_OK(uf_kmeans(X, N, D, K, 10, seed, 300, lab, &in10));
        CHECKF(uf_ari(truth, lab, N) == 1.0, "seed %llu: ARI %.6f", (unsigned long long)seed,
               uf_ari(truth, lab, N));
        CHECK(uf_cluster_f1(truth, lab, N) == 1.0);
        double bi = brute_inertia(X, N, D, K, lab);
        CHECKF(fabs(in10 - bi) <= 1e-9 * bi, "seed %llu: inertia %.17g, recomputed %.17g",
               (unsigned long long)seed, in10, bi);
        /* labels are a Lloyd fixed point: each point is nearest to its own cluster mean */
        double mu[K * D] = {0};
        int cnt[K] = {0};
        for (int i = 0; i < N; i++) {
            cnt[lab[i]]++;
            for (int j = 0; j < D; j++) mu[lab[i] * D + j] += X[i * D + j];
        }
        for (int c = 0; c < K; c++) {
            CHECK(cnt[c] > 0);
            for (int j = 0; j < D; j++) mu[c * D + j] /= cnt[c] ? cnt[c] : 1;
        }
        int not_nearest = 0;
        for (int i = 0; i < N; i++) {
            double own = 0;
            for (int j = 0; j < D; j++) own += pow(X[i * D + j] - mu[lab[i] * D + j], 2);
            for (int c = 0; c < K; c++) {
                double e = 0;
                for (int j = 0; j < D; j++) e += pow(X[i * D + j] - mu[c * D + j], 2);
                not_nearest += e < own - 1e-9;
            }
        }
        CHECKF(not_nearest == 0, "seed %llu: %d points nearer another mean",
               (unsigned long long)seed, not_nearest);
        /* restart 0 is the same run with one restart: more restarts never do worse */
        REQUIRE_OK(uf_kmeans(X, N, D, K, 1, seed, 300, lab1, &in1));
        CHECKF(in10 <= in1, "seed %llu: 10 restarts %.17g > 1 restart %.17g",
               (unsigned long long)seed, in10, in1);
        perfect_single += uf_ari(truth, lab1, N) == 1.0;
        /* inertia may be NULL */
        REQUIRE_OK(uf_kmeans(X, N, D, K, 2, seed, 300, lab1, NULL));
    }
    fprintf(stderr, "    blobs: 10 restarts recover 6/6; a single restart %d/6\n", perfect_single);
    free(X);
    free(truth);
    free(lab);
    free(lab1);
}

/* Same seed: identical output; 1 thread vs 2 threads: identical (a size that runs the
 * parallel loops); another seed: still valid. */
static void test_kmeans_determinism(void)
{
    enum { N = 8000, D = 32, K = 8 }; /* N * D * K > 2e6: the parallel path */
    float *X = malloc((size_t)N * D * sizeof *X);
    int *truth = malloc(N * sizeof *truth), *a = malloc(N * sizeof *a), *b = malloc(N * sizeof *b);
    REQUIRE(X && truth && a && b);
    /* overlapping blobs (noise 30x larger) so that Lloyd needs many iterations */
    blobs(99, N, D, K, X, truth);
    th_sm r = th_sm_new(5, 5);
    for (size_t i = 0; i < (size_t)N * D; i++) X[i] += (float)(300.0 * sm_normal(&r));
    int saved = uf_get_threads();
    double ia, ib;
    uf_set_threads(1);
    REQUIRE_OK(uf_kmeans(X, N, D, K, 2, 12345, 15, a, &ia));
    uf_set_threads(2);
    REQUIRE_OK(uf_kmeans(X, N, D, K, 2, 12345, 15, b, &ib));
    CHECK(memcmp(a, b, N * sizeof *a) == 0);
    CHECKF(ia == ib, "1 thread %.17g, 2 threads %.17g", ia, ib);
    REQUIRE_OK(uf_kmeans(X, N, D, K, 2, 12345, 15, b, &ib));
    CHECK(memcmp(a, b, N * sizeof *a) == 0 && ia == ib);
    REQUIRE_OK(uf_kmeans(X, N, D, K, 2, 777, 15, b, &ib));
    CHECK(fabs(ib - brute_inertia(X, N, D, K, b)) <= 1e-9 * ib);
    fprintf(stderr, "    8000 x 32, k 8: inertia %.6g (seed 12345), %.6g (seed 777)\n", ia, ib);
    uf_set_threads(saved);
    free(X);
    free(truth);
    free(a);
    free(b);
}

static void test_kmeans_edges(void)
{
    float X[10 * 2];
    int lab[12];
    double in;
    th_sm r = th_sm_new(8, 8);
    for (int i = 0; i < 20; i++) X[i] = (float)(th_sm_next(&r) % 1000) / 10.0f;
    /* k = 1: everything in cluster 0, inertia = scatter around the mean */
    REQUIRE_OK(uf_kmeans(X, 10, 2, 1, 3, 1, 50, lab, &in));
    int all0 = 1;
    for (int i = 0; i < 10; i++) all0 &= lab[i] == 0;
    CHECK(all0);
    CHECK(fabs(in - brute_inertia(X, 10, 2, 1, lab)) <= 1e-12 * in);
    /* k = n (distinct points): one point per cluster, inertia 0 */
    REQUIRE_OK(uf_kmeans(X, 10, 2, 10, 2, 1, 50, lab, &in));
    int seen[10] = {0}, distinct = 1;
    for (int i = 0; i < 10; i++) {
        CHECK(lab[i] >= 0 && lab[i] < 10);
        if (lab[i] >= 0 && lab[i] < 10 && seen[lab[i]]++) distinct = 0;
    }
    CHECK(distinct && in == 0.0);
    /* duplicates: 3 distinct points, each repeated; k = 3 separates them exactly */
    float Y[12 * 2];
    int truth[12];
    for (int i = 0; i < 12; i++) {
        truth[i] = i % 3;
        Y[2 * i] = (float)(i % 3) * 5.0f;
        Y[2 * i + 1] = (float)(i % 3 == 2);
    }
    REQUIRE_OK(uf_kmeans(Y, 12, 2, 3, 4, 3, 50, lab, &in));
    CHECK(in == 0.0 && uf_ari(truth, lab, 12) == 1.0);
    /* k = 2 on 3 distinct values: fine; k = 4: refused with the count */
    REQUIRE_OK(uf_kmeans(Y, 12, 2, 2, 4, 3, 50, lab, &in));
    CHECK(fabs(in - brute_inertia(Y, 12, 2, 2, lab)) <= 1e-12);
    CHECK(uf_kmeans(Y, 12, 2, 4, 4, 3, 50, lab, &in) == UF_ERR_ARG);
    CHECKF(strstr(uf_errmsg(), "only 3 distinct") != NULL, "%s", uf_errmsg());
    /* all points equal, k = 1 */
    float Z[5 * 3] = {0};
    REQUIRE_OK(uf_kmeans(Z, 5, 3, 1, 1, 0, 10, lab, &in));
    CHECK(in == 0.0);
    /* max_iter 0: the nearest k-means++ centres */
    REQUIRE_OK(uf_kmeans(X, 10, 2, 3, 1, 5, 0, lab, &in));
    CHECK(fabs(in - brute_inertia(X, 10, 2, 3, lab)) <= 1e-12 * in);
    /* argument errors */
    CHECK(uf_kmeans(NULL, 10, 2, 3, 1, 0, 10, lab, &in) == UF_ERR_ARG);
    CHECK(uf_kmeans(X, 10, 2, 3, 1, 0, 10, NULL, &in) == UF_ERR_ARG);
    CHECK(uf_kmeans(X, 0, 2, 1, 1, 0, 10, lab, &in) == UF_ERR_ARG);
    CHECK(uf_kmeans(X, 10, 0, 3, 1, 0, 10, lab, &in) == UF_ERR_ARG);
    CHECK(uf_kmeans(X, 10, 2, 0, 1, 0, 10, lab, &in) == UF_ERR_ARG);
    CHECK(uf_kmeans(X, 10, 2, 11, 1, 0, 10, lab, &in) == UF_ERR_ARG);
    CHECK(uf_kmeans(X, 10, 2, 3, 0, 0, 10, lab, &in) == UF_ERR_ARG);
    CHECK(uf_kmeans(X, 10, 2, 3, 1, 0, -1, lab, &in) == UF_ERR_ARG);
    X[7] = NAN;
    CHECK(uf_kmeans(X, 10, 2, 3, 1, 0, 10, lab, &in) == UF_ERR_NONFINITE);
    CHECKF(strstr(uf_errmsg(), "point 3 coordinate 1") != NULL, "%s", uf_errmsg());
    X[7] = INFINITY;
    CHECK(uf_kmeans(X, 10, 2, 3, 1, 0, 10, lab, &in) == UF_ERR_NONFINITE);
}

int main(void)
{
    RUN(test_golden);
    RUN(test_matching_brute);
    RUN(test_measure_edges);
    RUN(test_kmeans_blobs);
    RUN(test_kmeans_determinism);
    RUN(test_kmeans_edges);
    return TEST_DONE();
}
