/*
 * test_kernels.c - tests of the detector kernels (src/detector/kernels.h): kNN scoring, greedy
 * coreset, Back Patch Masking, top-K image score, bilinear upsampling, Gaussian filter.
 *
 * Golden values come from scripts/gen_kernel_golden.py (PyTorch AvgPool2d / interpolate /
 * topk, scipy.ndimage.gaussian_filter, numpy float64 brute force kNN and a numpy PatchCore
 * coreset) stored as .npy in tests/data/kernels/. kNN and coreset inputs are regenerated
 * here from the same splitmix64 integer grid the script uses. Independent in-test brute
 * forces (double precision) check the kNN and the lazy coreset search on random data, and
 * thread invariance is checked bit for bit.
 *
 * Set UF_BENCH=1 to also run the timing figures (coreset 150000 x 192 -> 10%, kNN GFLOP/s
 * against plain sgemm); they are skipped otherwise.
 */
#include "harness.h"
#include "detector/kernels.h"

#include <cblas.h>
#include <stdint.h>
#include <time.h>

#define DATA "tests/data/kernels/"

/* ---- a minimal .npy reader (v1/v2 headers, C order, <f4 <f8 <i8 |u1) ------------------ */

typedef struct {
    char descr[8];
    int ndim;
    size_t shape[4];
    size_t n;   /* elements */
    void *data; /* malloc'd */
} npy;

static void npy_free(npy *a)
{
    free(a->data);
    a->data = NULL;
}

/* Load DATA name ".npy"; returns 0 on success, prints why not otherwise. */
static int npy_load(const char *name, npy *a)
{
    char path[512];
    snprintf(path, sizeof path, DATA "%s.npy", name);
    memset(a, 0, sizeof *a);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        return -1;
    }
    unsigned char pre[12];
    int ok = fread(pre, 1, 10, f) == 10 && memcmp(pre, "\x93NUMPY", 6) == 0;
    size_t hl = 0;
    if (ok && pre[6] == 1) hl = pre[8] | (size_t)pre[9] << 8;
    else if (ok && fread(pre + 10, 1, 2, f) == 2)
        hl = pre[8] | (size_t)pre[9] << 8 | (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
    char *h = ok && hl < 65536 ? calloc(1, hl + 1) : NULL;
    ok = h && fread(h, 1, hl, f) == hl;
    const char *d = ok ? strstr(h, "'descr': '") : NULL;
    const char *s = ok ? strstr(h, "'shape': (") : NULL;
    ok = d && s && !strstr(h, "'fortran_order': True");
    if (ok) {
        snprintf(a->descr, sizeof a->descr, "%.3s", d + 10);
        s += 10;
        a->n = 1;
        while (*s && *s != ')' && a->ndim < 4) {
            char *e;
            unsigned long v = strtoul(s, &e, 10);
            if (e == s) break;
            a->shape[a->ndim++] = v;
            a->n *= v;
            s = e;
            while (*s == ',' || *s == ' ') s++;
        }
        size_t es = a->descr[2] == '1' ? 1 : a->descr[2] == '4' ? 4 : 8;
        a->data = malloc(a->n * es + 1);
        ok = a->data && fread(a->data, es, a->n, f) == a->n;
    }
    free(h);
    fclose(f);
    if (!ok) {
        fprintf(stderr, "bad npy file %s\n", path);
        npy_free(a);
        return -1;
    }
    return 0;
}

#define LOAD(name, a)                                                                  \
    do {                                                                               \
        if (npy_load(name, a) != 0) {                                                  \
            CHECKF(0, "golden file %s missing: run scripts/gen_kernel_golden.py", name); \
            return;                                                                    \
        }                                                                              \
    } while (0)

/* ---- the script's input generator (th_sm splitmix64, stream 99), reimplemented here -- */

static double tsm_unif(th_sm *r) { return (double)(th_sm_next(r) >> 11) * 0x1.0p-53; }

static double tsm_gauss(th_sm *r)
{
    double u = tsm_unif(r), v = tsm_unif(r);
    return sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v);
}

/* [n][d] grid values (top 11 bits - 1024) / 128, as grid() in the script. */
static float *grid(uint64_t seed, size_t n, int d)
{
    th_sm r = th_sm_new(seed, 99);
    float *x = malloc(n * (size_t)d * sizeof *x);
    for (size_t i = 0; x && i < n * (size_t)d; i++)
        x[i] = (float)(((int64_t)(th_sm_next(&r) >> 53) - 1024) / 128.0);
    return x;
}

/* Random data: nc Gaussian clusters (nc = 0: uniform noise in [0, 1)). */
static float *random_features(uint64_t seed, size_t n, int d, int nc)
{
    th_sm r = th_sm_new(seed, 7);
    float *x = malloc(n * (size_t)d * sizeof *x);
    float *c = malloc(((size_t)(nc ? nc : 1)) * (size_t)d * sizeof *c);
    if (!x || !c) {
        free(x), free(c);
        return NULL;
    }
    for (size_t i = 0; i < (size_t)nc * (size_t)d; i++) c[i] = (float)(3 * tsm_gauss(&r));
    for (size_t i = 0; i < n; i++) {
        int k = nc ? (int)(tsm_unif(&r) * nc) : 0;
        double sd = 0.3 + 0.2 * (k % 5);
        for (int j = 0; j < d; j++)
            x[i * d + j] = nc ? (float)(c[(size_t)k * d + j] + sd * tsm_gauss(&r))
                              : (float)tsm_unif(&r);
    }
    free(c);
    return x;
}

/* ==== Back Patch Masking ================================================================ */

static void test_bpm_golden(void)
{
    static const struct {
        int gh, gw, k;
    } cs[] = {{14, 14, 7}, {14, 14, 3}, {28, 28, 7}, {6, 5, 3}, {6, 5, 7}};
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
        char tag[64], nm[96];
        snprintf(tag, sizeof tag, "bpm_%dx%d_k%d", cs[c].gh, cs[c].gw, cs[c].k);
        npy in, sm, mk;
        snprintf(nm, sizeof nm, "%s_in", tag);
        LOAD(nm, &in);
        snprintf(nm, sizeof nm, "%s_smooth", tag);
        LOAD(nm, &sm);
        snprintf(nm, sizeof nm, "%s_mask", tag);
        LOAD(nm, &mk);
        size_t n = in.n;
        float *smooth = malloc(n * sizeof *smooth);
        uint8_t *mask = malloc(n);
        REQUIRE_OK(uf__bpm(in.data, cs[c].gh, cs[c].gw, cs[c].k, 0.1f, smooth, mask));
        const float *ref = sm.data;
        const uint8_t *rm = mk.data;
        double e = th_max_abs_diff(smooth, ref, n);
        CHECKF(e <= 1e-6, "%s: smooth max abs diff %g", tag, e);
        size_t flips = 0, kept = 0;
        for (size_t i = 0; i < n; i++) {
            kept += rm[i];
            if (mask[i] != rm[i] && fabs(ref[i] - 0.1) > 1e-6) flips++;
        }
        CHECKF(flips == 0, "%s: %zu mask entries differ", tag, flips);
        CHECKF(kept > 0 && kept <= n, "%s: golden keeps %zu of %zu", tag, kept, n);
        free(smooth), free(mask);
        npy_free(&in), npy_free(&sm), npy_free(&mk);
    }
}

static void test_bpm_edge(void)
{
    float z[12] = {0}, sm[12];
    uint8_t mk[12];
    REQUIRE_OK(uf__bpm(z, 3, 4, 7, 0.1f, sm, mk));
    for (int i = 0; i < 12; i++) CHECK(sm[i] == 1.0f && mk[i] == 1);
    /* k = 1: plain division by the max. */
    float a[6] = {0.5f, 1, 2, 4, 0.1f, 0.3f};
    REQUIRE_OK(uf__bpm(a, 2, 3, 1, 0.1f, sm, NULL));
    CHECK(sm[3] == 1.0f && sm[0] == 0.125f && fabsf(sm[4] - 0.025f) < 1e-8f);
    CHECK(uf__bpm(a, 2, 3, 4, 0.1f, sm, mk) == UF_ERR_ARG);
    CHECK(uf__bpm(a, 0, 3, 3, 0.1f, sm, mk) == UF_ERR_ARG);
    a[2] = NAN;
    CHECK(uf__bpm(a, 2, 3, 3, 0.1f, sm, mk) == UF_ERR_NONFINITE);
    CHECK(strstr(uf_errmsg(), "bpm") != NULL);
}

/* ==== top-K mean ========================================================================= */

static void test_topk_golden(void)
{
    for (int c = 0; c < 6; c++) {
        char nm[64];
        npy in, ref;
        snprintf(nm, sizeof nm, "topk_%d_in", c);
        LOAD(nm, &in);
        snprintf(nm, sizeof nm, "topk_%d_ref", c);
        LOAD(nm, &ref);
        const double *r = ref.data; /* frac, K, mean */
        const float *s = in.data;
        int n = (int)in.n, K = -1;
        int *idx = malloc((size_t)n * sizeof *idx);
        float mean = -1;
        REQUIRE_OK(uf__topk_mean(s, n, r[0], &mean, idx, &K));
        CHECKF(K == (int)r[1], "case %d: K %d, expected %d", c, K, (int)r[1]);
        CHECKF(fabs(mean - r[2]) <= 1e-6 * fabs(r[2]) + 1e-7, "case %d: mean %.8g vs %.8g", c,
               mean, r[2]);
        /* Indices: distinct, best first, ties by lower index, nothing better left out. */
        int okord = 1;
        float worst = s[idx[K - 1]];
        for (int j = 0; j + 1 < K; j++)
            if (s[idx[j]] < s[idx[j + 1]] || (s[idx[j]] == s[idx[j + 1]] && idx[j] >= idx[j + 1]))
                okord = 0;
        int better_out = 0;
        char *used = calloc((size_t)n, 1);
        for (int j = 0; j < K; j++) used[idx[j]] = 1;
        for (int i = 0; i < n; i++)
            if (!used[i] && (s[i] > worst || (s[i] == worst && i < idx[K - 1]))) better_out++;
        CHECKF(okord && better_out == 0, "case %d: index order %d, better ones left %d", c,
               okord, better_out);
        free(used), free(idx);
        npy_free(&in), npy_free(&ref);
    }
}

static void test_topk_edge(void)
{
    float z[100] = {0}, m = -1;
    int idx[100], K = 0;
    REQUIRE_OK(uf__topk_mean(z, 100, 0.05, &m, idx, &K));
    CHECK(m == 0 && K == 5 && idx[0] == 0 && idx[4] == 4); /* all masked: score 0 */
    CHECK(uf__topk_count(10, 0.05) == 1);   /* round(0.5) = 0 -> at least 1 */
    CHECK(uf__topk_count(50, 0.05) == 2);   /* 2.5 -> 2 (half to even) */
    CHECK(uf__topk_count(30, 0.05) == 2);   /* 1.5 -> 2 */
    CHECK(uf__topk_count(784, 0.05) == 39); /* 39.2 */
    CHECK(uf__topk_count(7, 5.0) == 7);
    CHECK(uf__topk_count(7, 0) == 0 && uf__topk_count(0, 0.1) == 0);
    float one[1] = {3.5f};
    REQUIRE_OK(uf__topk_mean(one, 1, 0.05, &m, NULL, NULL));
    CHECK(m == 3.5f);
    CHECK(uf__topk_mean(one, 1, -1, &m, NULL, NULL) == UF_ERR_ARG);
    z[7] = NAN;
    CHECK(uf__topk_mean(z, 100, 0.05, &m, idx, &K) == UF_ERR_NONFINITE);
}

/* ==== upsampling and Gaussian filter ===================================================== */

static void check_up(const char *in_name, const char *ref_name, int dh, int dw)
{
    npy in, ref;
    LOAD(in_name, &in);
    LOAD(ref_name, &ref);
    float *out = malloc((size_t)dh * dw * sizeof *out);
    REQUIRE_OK(uf__upsample_bilinear(in.data, (int)in.shape[0], (int)in.shape[1], out, dh, dw));
    double e = th_max_abs_diff(out, ref.data, ref.n), mx = th_max_abs(ref.data, ref.n);
    CHECKF(ref.n == (size_t)dh * dw && e <= 1e-6 * mx, "%s: max abs diff %g (max %g)",
           ref_name, e, mx);
    free(out);
    npy_free(&in), npy_free(&ref);
}

static void test_upsample_golden(void)
{
    check_up("up_14_in", "up_14_224", 224, 224);
    check_up("up_6x5_in", "up_6x5_50x37", 50, 37);
    check_up("up_6x5_50x37", "up_50x37_7x9", 7, 9);
    float one = 2.5f, out[6];
    REQUIRE_OK(uf__upsample_bilinear(&one, 1, 1, out, 2, 3));
    for (int i = 0; i < 6; i++) CHECK(out[i] == 2.5f);
    CHECK(uf__upsample_bilinear(&one, 1, 0, out, 2, 3) == UF_ERR_ARG);
}

static void check_gauss(const char *in_name, const char *ref_name, double sigma)
{
    npy in, ref;
    LOAD(in_name, &in);
    LOAD(ref_name, &ref);
    int H = (int)in.shape[0], W = (int)in.shape[1];
    float *img = malloc(in.n * sizeof *img);
    memcpy(img, in.data, in.n * sizeof *img);
    REQUIRE_OK(uf__gaussian_filter(img, H, W, sigma, NULL));
    double e = th_max_abs_diff(img, ref.data, ref.n), mx = th_max_abs(ref.data, ref.n);
    CHECKF(e <= 1e-5 * mx, "%s: max abs diff %g (max %g)", ref_name, e, mx);
    free(img);
    npy_free(&in), npy_free(&ref);
}

static void test_gaussian_golden(void)
{
    check_gauss("up_14_224", "gauss_224_s4", 4.0);
    check_gauss("gauss_10x7_s4p0_in", "gauss_10x7_s4p0", 4.0);
    check_gauss("gauss_1x5_s4p0_in", "gauss_1x5_s4p0", 4.0);
    check_gauss("gauss_9x13_s1p5_in", "gauss_9x13_s1p5", 1.5);
    check_gauss("gauss_3x2_s0p7_in", "gauss_3x2_s0p7", 0.7);
}

static void test_gaussian_edge(void)
{
    float img[35], tmp[35];
    for (int i = 0; i < 35; i++) img[i] = 1.25f;
    REQUIRE_OK(uf__gaussian_filter(img, 5, 7, 4.0, tmp)); /* constant stays constant */
    for (int i = 0; i < 35; i++) CHECK(fabsf(img[i] - 1.25f) < 1e-6f);
    for (int i = 0; i < 35; i++) img[i] = (float)i;
    REQUIRE_OK(uf__gaussian_filter(img, 5, 7, 0.0, NULL)); /* sigma 0: identity */
    for (int i = 0; i < 35; i++) CHECK(img[i] == (float)i);
    CHECK(uf__gaussian_filter(img, 5, 7, -1.0, NULL) == UF_ERR_ARG);
    CHECK(uf__gaussian_filter(img, 5, 7, NAN, NULL) == UF_ERR_ARG);
    CHECK(uf__gaussian_filter(img, 5, 7, 1e9, NULL) == UF_ERR_LIMIT);
}

/* ==== kNN ================================================================================ */

/* The script's knn_inputs(): grid bank and queries, exact and near duplicates. */
static void knn_inputs(uint64_t seed, size_t nq, size_t nb, int D, float **Q, float **B)
{
    *B = grid(seed, nb, D);
    *Q = grid(seed + 1, nq, D);
    for (size_t i = 0; i < nq && i < 20; i++) {
        memcpy(*Q + i * D, *B + (17 * i) % nb * D, (size_t)D * sizeof(float));
        if (i >= 10) (*Q)[i * D + i % D] += 1.0f / 128;
    }
}

static void test_knn_golden(void)
{
    static const struct {
        size_t nq, nb;
        int D;
        uint64_t seed;
    } cs[] = {{300, 5000, 192, 11}, {200, 2100, 7, 12}, {5, 1, 7, 13}};
    for (size_t c = 0; c < 3; c++) {
        float *Q, *B;
        knn_inputs(cs[c].seed, cs[c].nq, cs[c].nb, cs[c].D, &Q, &B);
        float *bn = malloc(cs[c].nb * sizeof *bn), *out = malloc(cs[c].nq * sizeof *out);
        int64_t *idx = malloc(cs[c].nq * 3 * sizeof *idx);
        REQUIRE_OK(uf__knn_bank_norms(B, cs[c].nb, cs[c].D, bn));
        for (int k = 1; k <= 3; k += 2) {
            if ((size_t)k > cs[c].nb) continue;
            char nm[96];
            npy rs, ri;
            snprintf(nm, sizeof nm, "knn_%zu_%zu_%d_k%d_score", cs[c].nq, cs[c].nb, cs[c].D, k);
            LOAD(nm, &rs);
            snprintf(nm, sizeof nm, "knn_%zu_%zu_%d_k%d_idx", cs[c].nq, cs[c].nb, cs[c].D, k);
            LOAD(nm, &ri);
            REQUIRE_OK(uf__knn_ex(Q, cs[c].nq, B, bn, cs[c].nb, cs[c].D, k, out, idx, NULL, 0));
            const double *ref = rs.data;
            const int64_t *rix = ri.data;
            double worst = 0;
            size_t idx_bad = 0;
            for (size_t i = 0; i < cs[c].nq; i++) {
                double e = fabs(out[i] - ref[i]) / (fabs(ref[i]) + 1e-30);
                if (ref[i] == 0) e = out[i] == 0 ? 0 : INFINITY;
                if (e > worst) worst = e;
                for (int u = 0; u < k; u++) idx_bad += idx[i * k + u] != rix[i * k + u];
            }
            CHECKF(worst <= 1e-6, "%s: worst relative error %g", nm, worst);
            CHECKF(idx_bad == 0, "%s: %zu neighbour indices differ", nm, idx_bad);
            if (k == 1 && cs[c].nq >= 20 && cs[c].D == 192) {
                /* exact duplicates score 0, near duplicates (1/128)^2 exactly */
                for (int i = 0; i < 10; i++) CHECK(out[i] == 0.0f);
                for (int i = 10; i < 20; i++) CHECKF(out[i] == 1.0f / 16384, "q %d: %g", i, out[i]);
            }
            npy_free(&rs), npy_free(&ri);
        }
        free(Q), free(B), free(bn), free(out), free(idx);
    }
}

/* Independent double-precision brute force: mean of the k smallest squared distances. */
static void brute_knn(const float *Q, size_t nq, const float *B, size_t nb, int D, int k,
                      double *out)
{
    double *best = malloc((size_t)k * sizeof *best);
    for (size_t i = 0; i < nq; i++) {
        for (int u = 0; u < k; u++) best[u] = INFINITY;
        for (size_t j = 0; j < nb; j++) {
            double s = 0;
            for (int c = 0; c < D; c++) {
                double d = (double)Q[i * D + c] - B[j * D + c];
                s += d * d;
            }
            if (s < best[k - 1]) {
                int p = k - 1;
                while (p > 0 && best[p - 1] > s) {
                    best[p] = best[p - 1];
                    p--;
                }
                best[p] = s;
            }
        }
        double m = 0;
        for (int u = 0; u < k; u++) m += best[u];
        out[i] = m / k;
    }
    free(best);
}

static void test_knn_random_and_threads(void)
{
    const size_t nb = 9000;
    const int D = 384;
    float *B = random_features(41, nb, D, 30);
    float *Q = random_features(42, 700, D, 30);
    REQUIRE(B && Q);
    float *bn = malloc(nb * sizeof *bn);
    REQUIRE_OK(uf__knn_bank_norms(B, nb, D, bn));
    const size_t nqs[] = {700, 3}; /* many query blocks; and one (bank split in slices) */
    for (int t = 0; t < 2; t++) {
        size_t nq = nqs[t];
        for (int k = 1; k <= 5; k += 4) {
            double *ref = malloc(nq * sizeof *ref);
            float *o1 = malloc(nq * sizeof *o1), *o2 = malloc(nq * sizeof *o2);
            brute_knn(Q, nq, B, nb, D, k, ref);
            uf_set_threads(1);
            REQUIRE_OK(uf__knn(Q, nq, B, bn, nb, D, k, o1));
            uf_set_threads(2);
            REQUIRE_OK(uf__knn(Q, nq, B, bn, nb, D, k, o2));
            uf_set_threads(0);
            double worst = 0;
            for (size_t i = 0; i < nq; i++) {
                double e = fabs(o1[i] - ref[i]) / ref[i];
                if (e > worst) worst = e;
            }
            CHECKF(worst <= 1e-6, "nq %zu k %d: worst relative error %g", nq, k, worst);
            CHECKF(memcmp(o1, o2, nq * sizeof *o1) == 0, "nq %zu k %d: 1 vs 2 threads differ",
                   nq, k);
            free(ref), free(o1), free(o2);
        }
    }
    free(B), free(Q), free(bn);
}

static void test_knn_errors(void)
{
    float B[14] = {0}, Q[7] = {0}, bn[2], out[1];
    REQUIRE_OK(uf__knn_bank_norms(B, 2, 7, bn));
    CHECK(uf__knn(Q, 1, B, bn, 2, 7, 3, out) == UF_ERR_ARG); /* k > nb */
    CHECK(uf__knn(Q, 1, B, bn, 2, 7, 0, out) == UF_ERR_ARG);
    CHECK(uf__knn(Q, 1, B, bn, 0, 7, 1, out) == UF_ERR_ARG);
    CHECK(uf__knn(Q, 0, B, bn, 2, 7, 1, out) == UF_OK); /* no queries: nothing to do */
    REQUIRE_OK(uf__knn(Q, 1, B, bn, 2, 7, 2, out));
    CHECK(out[0] == 0);
    Q[3] = NAN;
    CHECK(uf__knn(Q, 1, B, bn, 2, 7, 1, out) == UF_ERR_NONFINITE);
    Q[3] = 0;
    B[9] = INFINITY;
    REQUIRE_OK(uf__knn_bank_norms(B, 2, 7, bn));
    CHECK(uf__knn(Q, 1, B, bn, 2, 7, 1, out) == UF_ERR_NONFINITE);
    CHECK(strstr(uf_errmsg(), "bank row 1") != NULL);
}

/* ==== coreset ============================================================================ */

static void test_coreset_golden(void)
{
    static const struct {
        size_t N;
        int D;
        double frac;
        uint64_t seed;
    } cs[] = {{600, 192, 0.1, 21}, {500, 128, 0.2, 22}, {40, 7, 0.5, 23}};
    for (size_t c = 0; c < 3; c++) {
        char nm[96];
        npy ri, rs;
        snprintf(nm, sizeof nm, "coreset_%zu_%d_idx", cs[c].N, cs[c].D);
        LOAD(nm, &ri);
        snprintf(nm, sizeof nm, "coreset_%zu_%d_start", cs[c].N, cs[c].D);
        LOAD(nm, &rs);
        float *X = grid(cs[c].seed, cs[c].N, cs[c].D);
        if (cs[c].D == 128) memcpy(X + 5 * 128, X, 5 * 128 * sizeof *X); /* duplicates */
        size_t *idx = malloc(cs[c].N * sizeof *idx), n = 0, start[10];
        REQUIRE_OK(uf__coreset_greedy(X, cs[c].N, cs[c].D, cs[c].frac, cs[c].seed, idx, &n));
        CHECKF(n == ri.n, "N %zu: %zu picks, expected %zu", cs[c].N, n, ri.n);
        size_t bad = 0;
        for (size_t i = 0; i < n && i < ri.n; i++) bad += idx[i] != (size_t)((int64_t *)ri.data)[i];
        CHECKF(bad == 0, "N %zu D %d: %zu of %zu picks differ from numpy", cs[c].N, cs[c].D, bad,
               n);
        REQUIRE_OK(uf__coreset_start_points(cs[c].seed, cs[c].N, rs.n, start));
        for (size_t i = 0; i < rs.n; i++) CHECK(start[i] == (size_t)((int64_t *)rs.data)[i]);
        if (cs[c].D != 128) {
            npy rw;
            snprintf(nm, sizeof nm, "coreset_%zu_%d_w16", cs[c].N, cs[c].D);
            LOAD(nm, &rw);
            float *W = malloc(128 * (size_t)cs[c].D * sizeof *W);
            uf__coreset_projection(cs[c].seed, cs[c].D, 128, W);
            CHECK(memcmp(W, rw.data, 16 * sizeof *W) == 0);
            free(W);
            npy_free(&rw);
        }
        free(X), free(idx);
        npy_free(&ri), npy_free(&rs);
    }
    npy rr;
    LOAD("coreset_random_1000_0p1_seed5", &rr);
    size_t r[100], n = 0;
    REQUIRE_OK(uf__coreset_random(1000, 0.1, 5, r, &n));
    CHECK(n == 100);
    for (size_t i = 0; i < 100; i++) CHECK(r[i] == (size_t)((int64_t *)rr.data)[i]);
    npy_free(&rr);
}

/* Independent brute force farthest-point selection in double (PatchCore semantics). */
static void brute_greedy(const float *P, size_t N, int d, const size_t *st, size_t ns,
                         size_t n_keep, size_t *out)
{
    double *m = malloc(N * sizeof *m);
    for (size_t i = 0; i < N; i++) {
        double acc = 0;
        for (size_t s = 0; s < ns; s++) {
            double q = 0;
            for (int c = 0; c < d; c++) {
                double t = (double)P[i * d + c] - P[st[s] * d + c];
                q += t * t;
            }
            acc += sqrt(q);
        }
        m[i] = ns ? acc / ns : INFINITY;
    }
    for (size_t t = 0; t < n_keep; t++) {
        size_t b = 0;
        for (size_t i = 1; i < N; i++)
            if (m[i] > m[b]) b = i;
        out[t] = b;
        for (size_t i = 0; i < N; i++) {
            double q = 0;
            for (int c = 0; c < d; c++) {
                double u = (double)P[i * d + c] - P[b * d + c];
                q += u * u;
            }
            if (sqrt(q) < m[i]) m[i] = sqrt(q);
        }
    }
    free(m);
}

static void test_coreset_lazy_vs_naive(void)
{
    static const struct {
        size_t N;
        int d, nc;
        size_t keep, ns;
    } cs[] = {{3000, 128, 12, 300, 10}, {2000, 20, 0, 400, 10}, {1500, 5, 4, 700, 0},
              {800, 128, 0, 80, 3}};
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
        float *P = random_features(100 + c, cs[c].N, cs[c].d, cs[c].nc);
        REQUIRE(P != NULL);
        size_t st[10];
        REQUIRE_OK(uf__coreset_start_points(c, cs[c].N, cs[c].ns, st));
        size_t *a = malloc(cs[c].keep * sizeof *a), *b = malloc(cs[c].keep * sizeof *b);
        size_t *r = malloc(cs[c].keep * sizeof *r);
        REQUIRE_OK(uf__coreset_greedy_core(P, cs[c].N, cs[c].d, st, cs[c].ns, cs[c].keep, 0, a));
        REQUIRE_OK(uf__coreset_greedy_core(P, cs[c].N, cs[c].d, st, cs[c].ns, cs[c].keep, 1, b));
        brute_greedy(P, cs[c].N, cs[c].d, st, cs[c].ns, cs[c].keep, r);
        CHECKF(memcmp(a, b, cs[c].keep * sizeof *a) == 0, "case %zu: lazy != naive", c);
        size_t bad = 0;
        for (size_t i = 0; i < cs[c].keep; i++) bad += a[i] != r[i];
        CHECKF(bad == 0, "case %zu: %zu picks differ from the double brute force", c, bad);
        free(P), free(a), free(b), free(r);
    }
    /* 6 distinct points, each 5 times: after 6 picks every m is 0 and the argmax is index
     * 0 for every further pick, in both searches. */
    float P[30 * 3];
    for (int i = 0; i < 30; i++)
        for (int c = 0; c < 3; c++) P[i * 3 + c] = (float)((i % 6) * (c + 1) + (i % 6 == 2));
    size_t st[2] = {4, 17}, a[12], b[12];
    REQUIRE_OK(uf__coreset_greedy_core(P, 30, 3, st, 2, 12, 0, a));
    REQUIRE_OK(uf__coreset_greedy_core(P, 30, 3, st, 2, 12, 1, b));
    CHECK(memcmp(a, b, sizeof a) == 0);
    for (int i = 6; i < 12; i++) CHECK(a[i] == 0);
    for (int i = 0; i < 6; i++) CHECK(a[i] < 6); /* first copies win ties */
}

static void test_coreset_edge(void)
{
    float X[5 * 3] = {0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 4, 4, 4};
    size_t idx[5], n = 0;
    REQUIRE_OK(uf__coreset_greedy(X, 5, 3, 1.0, 1, idx, &n)); /* keep all */
    CHECK(n == 5 && idx[0] == 0 && idx[4] == 4);
    REQUIRE_OK(uf__coreset_greedy(X, 5, 3, 0.01, 1, idx, &n)); /* at least one */
    CHECK(n == 1 && idx[0] < 5);
    REQUIRE_OK(uf__coreset_greedy(X, 1, 3, 0.5, 1, idx, &n));
    CHECK(n == 1 && idx[0] == 0);
    CHECK(uf__coreset_count(150000, 0.1) == 15000 && uf__coreset_count(7, 0.5) == 3);
    CHECK(uf__coreset_count(10, 0) == 0 && uf__coreset_count(10, NAN) == 0);
    CHECK(uf__coreset_greedy(X, 5, 3, 0.0, 1, idx, &n) == UF_ERR_ARG);
    CHECK(uf__coreset_greedy(X, 0, 3, 0.5, 1, idx, &n) == UF_ERR_ARG);
    X[7] = NAN;
    CHECK(uf__coreset_greedy(X, 5, 3, 0.5, 1, idx, &n) == UF_ERR_NONFINITE);
    CHECK(strstr(uf_errmsg(), "feature 2") != NULL);
    /* random sampler: distinct indices */
    size_t r[60];
    REQUIRE_OK(uf__coreset_random(60, 0.9, 3, r, &n));
    CHECK(n == 54);
    int dup = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < i; j++) dup += r[i] == r[j];
    CHECK(dup == 0);
}

static void test_coreset_threads(void)
{
    const size_t N = 4000;
    float *X = random_features(77, N, 192, 20);
    REQUIRE(X != NULL);
    size_t a[400], b[400], na = 0, nb = 0;
    uf_set_threads(1);
    REQUIRE_OK(uf__coreset_greedy(X, N, 192, 0.1, 9, a, &na));
    uf_set_threads(2);
    REQUIRE_OK(uf__coreset_greedy(X, N, 192, 0.1, 9, b, &nb));
    uf_set_threads(0);
    CHECK(na == 400 && nb == 400 && memcmp(a, b, sizeof a) == 0);
    free(X);
}

/* Progress reports of the greedy search: increasing, within (0, n_keep), not changing the
 * selection; a nonzero return cancels. */
typedef struct {
    size_t calls, last, total, cancel_at;
    int increasing;
} prog_rec;

static int prog_cb(void *user, const char *stage, size_t done, size_t total)
{
    prog_rec *r = user;
    if (strcmp(stage, "coreset") != 0 || done <= r->last || done >= total) r->increasing = 0;
    r->calls++, r->last = done, r->total = total;
    return r->cancel_at && done >= r->cancel_at;
}

static void test_coreset_progress(void)
{
    const size_t N = 4000;
    float *X = random_features(78, N, 192, 20);
    REQUIRE(X != NULL);
    size_t a[400], b[400], na = 0, nb = 0;
    REQUIRE_OK(uf__coreset_greedy(X, N, 192, 0.1, 5, a, &na));
    prog_rec r = {.increasing = 1};
    REQUIRE_OK(uf__coreset_greedy_progress(X, N, 192, 0.1, 5, b, &nb, prog_cb, &r, 0));
    CHECK(na == 400 && nb == 400 && memcmp(a, b, sizeof a) == 0);
    CHECKF(r.calls >= 150 && r.calls <= 400 && r.increasing && r.total == 400,
           "calls %zu increasing %d total %zu", r.calls, r.increasing, r.total);
    prog_rec c = {.increasing = 1, .cancel_at = 100};
    CHECK(uf__coreset_greedy_progress(X, N, 192, 0.1, 5, b, &nb, prog_cb, &c, 0) == UF_ERR_ARG);
    CHECK(strstr(uf_errmsg(), "cancelled") != NULL);
    CHECKF(c.last >= 100 && c.last < 110, "cancelled at %zu", c.last);
    free(X);
}

/* ==== timing (UF_BENCH=1) ================================================================ */


/* AnomalyDINO's PCA mask against scripts/gen_kernel_golden.py (sklearn PCA + scipy
 * morphology written after their compute_background_mask): projections to float
 * rounding, the mask exactly (the fixtures keep every projection 0.01 away from the
 * threshold), also with the grid embedded in a wider row stride (the whole-image
 * geometry's own grid). */
static void test_pca_mask_golden(void)
{
    static const struct {
        const char *tag;
        int gh, gw, D;
    } cs[] = {{"pca_14x14_disc", 14, 14, 24}, {"pca_14x14_large", 14, 14, 24},
              {"pca_9x7_small", 9, 7, 8}};
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
        char nm[96];
        npy in, pr, mk, th;
        snprintf(nm, sizeof nm, "%s_in", cs[c].tag);
        LOAD(nm, &in);
        snprintf(nm, sizeof nm, "%s_proj", cs[c].tag);
        LOAD(nm, &pr);
        snprintf(nm, sizeof nm, "%s_mask", cs[c].tag);
        LOAD(nm, &mk);
        snprintf(nm, sizeof nm, "%s_thr", cs[c].tag);
        LOAD(nm, &th);
        const int gh = cs[c].gh, gw = cs[c].gw, D = cs[c].D, n = gh * gw;
        const float thr = ((const float *)th.data)[0];
        double *proj = malloc((size_t)n * sizeof *proj);
        REQUIRE_OK(uf__pca_first(in.data, gh, gw, gw, D, proj));
        const double *rp = pr.data;
        double e = 0, scale = 0;
        for (int i = 0; i < n; i++) {
            e = fmax(e, fabs(proj[i] - rp[i]));
            scale = fmax(scale, fabs(rp[i]));
        }
        CHECKF(e <= 1e-4 * scale, "%s: projections differ by %g (scale %g)", cs[c].tag, e, scale);
        /* the same grid inside rows of gw + 3 patches; the padding's mask is left alone */
        const int st = gw + 3;
        float *wide = malloc((size_t)gh * st * D * sizeof *wide);
        uint8_t *mask = malloc((size_t)gh * st);
        memset(mask, 7, (size_t)gh * st);
        for (int y = 0; y < gh; y++)
            for (int x = 0; x < st; x++)
                for (int d = 0; d < D; d++)
                    wide[((size_t)y * st + x) * D + d] =
                        x < gw ? ((const float *)in.data)[((size_t)y * gw + x) * D + d] : 1e6f;
        REQUIRE_OK(uf__pca_mask(wide, gh, gw, st, D, thr, mask));
        const uint8_t *rm = mk.data;
        int diff = 0, pad = 0, kept = 0;
        for (int y = 0; y < gh; y++)
            for (int x = 0; x < st; x++) {
                if (x >= gw) pad += mask[y * st + x] != 7;
                else diff += mask[y * st + x] != rm[y * gw + x], kept += rm[y * gw + x];
            }
        CHECKF(diff == 0, "%s: %d mask entries differ from the reference", cs[c].tag, diff);
        CHECKF(pad == 0, "%s: %d padding entries written", cs[c].tag, pad);
        CHECKF(kept > 0 && kept < n, "%s: the fixture keeps %d of %d", cs[c].tag, kept, n);
        free(proj), free(wide), free(mask);
        npy_free(&in), npy_free(&pr), npy_free(&mk), npy_free(&th);
    }
    uint8_t m1[4];
    float one[4 * 3] = {0};
    REQUIRE_OK(uf__pca_mask(one, 2, 2, 2, 3, 0.5f, m1)); /* constant features: projections 0 */
    CHECK(m1[0] == 0 && m1[3] == 0);
    CHECK(uf__pca_mask(one, 2, 2, 1, 3, 0.5f, m1) == UF_ERR_ARG); /* stride < gw */
    CHECK(uf__pca_mask(one, 2, 2, 2, 3, NAN, m1) == UF_ERR_ARG);
}

/* The cosine option's normalisation: unit norm, direction kept, zero rows stay zero. */
static void test_l2_normalize(void)
{
    float x[4] = {3, 0, -4, 0}, z[3] = {0, 0, 0};
    uf__l2_normalize(x, 4);
    CHECK(fabsf(x[0] - 0.6f) < 1e-7f && fabsf(x[2] + 0.8f) < 1e-7f && x[1] == 0);
    uf__l2_normalize(z, 3);
    CHECK(z[0] == 0 && z[1] == 0 && z[2] == 0);
    /* squared L2 of unit vectors = 2 (1 - cos): what --cosine scores */
    float a[2] = {1, 0}, b[2] = {1, 1};
    uf__l2_normalize(b, 2);
    float d = (a[0] - b[0]) * (a[0] - b[0]) + (a[1] - b[1]) * (a[1] - b[1]);
    CHECKF(fabsf(d - 2.0f * (1.0f - 0.70710678f)) < 1e-6f, "d = %g", d);
}

/* The image score of --preset anomalydino: the top 1% of the patches; with 196 patches
 * (ViT-Tiny/16 at 224) that is round(1.96) = 2 of them, with 1024 (a 32 x 32 grid) 10. */
static void test_top1p(void)
{
    CHECK(uf__topk_count(196, 0.01) == 2);
    CHECK(uf__topk_count(1024, 0.01) == 10);
    CHECK(uf__topk_count(49, 0.01) == 1);
    float s[196];
    for (int i = 0; i < 196; i++) s[i] = (float)(i % 50);
    s[17] = 100, s[60] = 90;
    float mean;
    int K;
    REQUIRE_OK(uf__topk_mean(s, 196, 0.01, &mean, NULL, &K));
    CHECKF(K == 2 && mean == 95.0f, "K %d mean %g", K, mean);
}

int main(void)
{
    RUN(test_bpm_golden);
    RUN(test_pca_mask_golden);
    RUN(test_l2_normalize);
    RUN(test_top1p);
    RUN(test_bpm_edge);
    RUN(test_topk_golden);
    RUN(test_topk_edge);
    RUN(test_upsample_golden);
    RUN(test_gaussian_golden);
    RUN(test_gaussian_edge);
    RUN(test_knn_golden);
    RUN(test_knn_random_and_threads);
    RUN(test_knn_errors);
    RUN(test_coreset_golden);
    RUN(test_coreset_lazy_vs_naive);
    RUN(test_coreset_edge);
    RUN(test_coreset_threads);
    RUN(test_coreset_progress);
    return TEST_DONE();
}
