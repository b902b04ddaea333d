/*
 * test_simd.c - every kernel table this CPU can run (src/kernels/kern.h), called directly,
 * whatever level the dispatch picked: so one run checks generic, avx2 and avx512 alike
 * (and the ASan/UBSan build executes each of them).
 *  - GEMM against a double-precision reference: odd sizes around the panel and tile
 *    edges, K beyond the k block, the three epilogues with and without bias, the packed
 *    output (fc1 -> fc2) path, strided A and C;
 *  - GELU (through a K = 1 GEMM) against erf in double over [-20, 20];
 *  - attention against a double reference, with the CLS rows and head means;
 *  - the coreset distance bit-identical at every level;
 *  - the BF16 GEMM (uf__lp_gemm: native vdpbf16ps on avx512bf16, emulated below) against a
 *    double reference on the BF16-rounded inputs, native against emulated, its packed
 *    output path, and the rounding (to nearest even, subnormals to zero, NaN kept);
 *  - the dispatch: UF_CPU picks the level it names, the level reported is one the CPU has.
 */
#include "harness.h"
#include "core/internal.h"
#include "kernels/kern.h"
#include "model/bf16.h"

#include <math.h>

typedef struct {
    const uf__kern *k;
    uf__cpu_level lvl;
} table;

/* The tables this CPU can run, lowest first. */
static int tables(table *t)
{
    const uf__cpu_level best = uf__cpu_level_best();
    int n = 0;
    t[n++] = (table){&uf__kern_generic, UF__CPU_GENERIC};
    if (best >= UF__CPU_AVX2) t[n++] = (table){&uf__kern_avx2, UF__CPU_AVX2};
    if (best >= UF__CPU_AVX512) t[n++] = (table){&uf__kern_avx512, UF__CPU_AVX512};
    if (best >= UF__CPU_AVX512BF16) t[n++] = (table){&uf__kern_avx512bf16, UF__CPU_AVX512BF16};
    return n;
}

static float urand(th_sm *r) { return (float)((th_sm_next(r) >> 40) * 0x1p-24) * 2.0f - 1.0f; }

static double gelu_ref(double x) { return 0.5 * x * erfc(-x / sqrt(2.0)); }

static void *amalloc(size_t n)
{
    void *p = NULL;
    return posix_memalign(&p, 64, n ? (n + 63) / 64 * 64 : 64) == 0 ? p : NULL;
}

/* One GEMM case at table k: C = epi(A W^T + bias), A [M][lda], C [M][ldc]. Returns the
 * largest error relative to sum |a w| + |bias| + |C0| (the magnitude of the terms). */
static double gemm_case(const uf__kern *k, int M, int N, int K, uf__epi e, int with_bias,
                        int nth, uint64_t seed)
{
    th_sm r = th_sm_new(seed, 1);
    const int lda = K + 3, ldc = N + 5;
    float *A = malloc(sizeof(float) * (size_t)M * lda), *W = malloc(sizeof(float) * (size_t)N * K);
    float *bias = malloc(sizeof(float) * (size_t)N), *C = malloc(sizeof(float) * (size_t)M * ldc);
    float *C0 = malloc(sizeof(float) * (size_t)M * ldc);
    float *ap = amalloc(sizeof(float) * ((size_t)(M + UF__MR_MAX - 1) / UF__MR_MAX * UF__MR_MAX) * K);
    if (!A || !W || !bias || !C || !C0 || !ap) {
        free(A), free(W), free(bias), free(C), free(C0), free(ap);
        return INFINITY;
    }
    for (size_t i = 0; i < (size_t)M * lda; i++) A[i] = urand(&r);
    for (size_t i = 0; i < (size_t)N * K; i++) W[i] = urand(&r);
    for (int i = 0; i < N; i++) bias[i] = urand(&r);
    for (size_t i = 0; i < (size_t)M * ldc; i++) C[i] = C0[i] = urand(&r);
    k->gemm(nth, M, N, K, A, lda, W, with_bias ? bias : NULL, C, ldc, e, ap, NULL);
    double worst = 0;
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            double s = 0, mag = 0;
            for (int q = 0; q < K; q++) {
                s += (double)A[(size_t)i * lda + q] * W[(size_t)j * K + q];
                mag += fabs((double)A[(size_t)i * lda + q] * W[(size_t)j * K + q]);
            }
            if (with_bias) s += bias[j], mag += fabs(bias[j]);
            if (e == UF__EPI_ACC) s += C0[(size_t)i * ldc + j], mag += fabs(C0[(size_t)i * ldc + j]);
            if (e == UF__EPI_GELU) s = gelu_ref(s);
            double err = fabs(C[(size_t)i * ldc + j] - s) / (mag + 1e-30);
            if (!(err <= worst)) worst = isnan(err) ? INFINITY : err;
        }
        /* the padding between rows is untouched */
        for (int j = N; j < ldc; j++)
            if (C[(size_t)i * ldc + j] != C0[(size_t)i * ldc + j]) worst = INFINITY;
    }
    free(A), free(W), free(bias), free(C), free(C0), free(ap);
    return worst;
}

static void test_gemm(void)
{
    table t[4];
    const int nt = tables(t);
    static const int Ms[] = {1, 11, 12, 13, 47, 48, 49, 97, 197};
    static const int Ns[] = {1, 3, 4, 5, 8, 9, 31};
    static const int Ks[] = {1, 7, 64, 769};
    for (int l = 0; l < nt; l++) {
        double worst = 0;
        int cases = 0;
        for (size_t a = 0; a < sizeof Ms / sizeof *Ms; a++)
            for (size_t b = 0; b < sizeof Ns / sizeof *Ns; b++)
                for (size_t c = 0; c < sizeof Ks / sizeof *Ks; c++)
                    for (int e = 0; e < 3; e++) {
                        double err = gemm_case(t[l].k, Ms[a], Ns[b], Ks[c], (uf__epi)e,
                                               (int)((a + b + c) & 1), 1 + (int)(a & 1),
                                               1000 * a + 10 * b + c);
                        if (!(err <= worst)) worst = err;
                        cases++;
                        CHECKF(err <= 1e-6, "%s: M %d N %d K %d epi %d: relative error %.3g",
                               t[l].k->name, Ms[a], Ns[b], Ks[c], e, err);
                    }
        fprintf(stderr, "    %-8s %d GEMM cases, worst relative error %.3g\n", t[l].k->name,
                cases, worst);
    }
}

/* GELU over [-20, 20] (and the tails where it is ~0 or x) within 2e-6 relative + 1e-30. */
/* Thread count and the task grid do not change a GEMM's result, bit for bit: K spans
 * several k blocks (the C^T tiles resumed across them), M several panel rows and the
 * column chunks differ with the thread count; every epilogue. */
static void test_gemm_threads(void)
{
    table t[4];
    const int nt = tables(t);
    const int M = 203, N = 45, K = 1700, lda = K + 1, ldc = N + 3;
    float *A = malloc(sizeof(float) * (size_t)M * lda), *W = malloc(sizeof(float) * (size_t)N * K);
    float *bias = malloc(sizeof(float) * N), *C0 = malloc(sizeof(float) * (size_t)M * ldc);
    float *C1 = malloc(sizeof(float) * (size_t)M * ldc), *C3 = malloc(sizeof(float) * (size_t)M * ldc);
    float *ap = amalloc(sizeof(float) * ((size_t)(M + UF__MR_MAX - 1) / UF__MR_MAX * UF__MR_MAX) * K);
    CHECK(A && W && bias && C0 && C1 && C3 && ap);
    if (A && W && bias && C0 && C1 && C3 && ap) {
        th_sm r = th_sm_new(77, 1);
        for (size_t i = 0; i < (size_t)M * lda; i++) A[i] = urand(&r);
        for (size_t i = 0; i < (size_t)N * K; i++) W[i] = urand(&r);
        for (int i = 0; i < N; i++) bias[i] = urand(&r);
        for (size_t i = 0; i < (size_t)M * ldc; i++) C0[i] = urand(&r);
        for (int l = 0; l < nt; l++)
            for (int e = 0; e < 3; e++) {
                memcpy(C1, C0, sizeof(float) * (size_t)M * ldc);
                memcpy(C3, C0, sizeof(float) * (size_t)M * ldc);
                t[l].k->gemm(1, M, N, K, A, lda, W, bias, C1, ldc, (uf__epi)e, ap, NULL);
                t[l].k->gemm(3, M, N, K, A, lda, W, bias, C3, ldc, (uf__epi)e, ap, NULL);
                CHECKF(!memcmp(C1, C3, sizeof(float) * (size_t)M * ldc),
                       "%s epi %d: 1 and 3 threads differ", t[l].k->name, e);
            }
    }
    free(A), free(W), free(bias), free(C0), free(C1), free(C3), free(ap);
}

static void test_gelu(void)
{
    table t[4];
    const int nt = tables(t);
    enum { M = 4001 };
    float *A = malloc(sizeof(float) * M), *C = malloc(sizeof(float) * M);
    float *ap = amalloc(sizeof(float) * (M + UF__MR_MAX));
    const float one = 1.0f;
    REQUIRE(A && C && ap);
    for (int i = 0; i < M; i++) A[i] = -20.0f + 40.0f * (float)i / (M - 1);
    for (int l = 0; l < nt; l++) {
        t[l].k->gemm(1, M, 1, 1, A, 1, &one, NULL, C, 1, UF__EPI_GELU, ap, NULL);
        double worst = 0;
        for (int i = 0; i < M; i++) {
            double ref = gelu_ref(A[i]), err = fabs(C[i] - ref) / (fabs(ref) + 1e-30);
            if (fabs(ref) < 1e-37) err = fabs(C[i] - ref) < 1e-37 ? 0 : err; /* underflow */
            if (!(err <= worst)) worst = err;
        }
        fprintf(stderr, "    %-8s GELU worst relative error %.3g\n", t[l].k->name, worst);
        CHECKF(worst <= 2e-5, "%s: GELU relative error %.3g", t[l].k->name, worst);
    }
    free(A), free(C), free(ap);
}

/* Attention of B images, heads, against double; CLS rows and head means too. */
static void test_attention(void)
{
    table t[4];
    const int nt = tables(t);
    const int B = 2, Nt = 53, H = 3, hd = 12, D = H * hd;
    th_sm r = th_sm_new(11, 1);
    float *qkv = malloc(sizeof(float) * B * Nt * 3 * D), *ctx = malloc(sizeof(float) * B * Nt * D);
    float *cls = malloc(sizeof(float) * B * H * Nt), *mean = malloc(sizeof(float) * B * Nt * Nt);
    double *ref = malloc(sizeof(double) * B * Nt * D), *mref = calloc((size_t)B * Nt * Nt, sizeof(double));
    double *cref = malloc(sizeof(double) * B * H * Nt), *p = malloc(sizeof(double) * Nt);
    REQUIRE(qkv && ctx && cls && mean && ref && mref && cref && p);
    for (int i = 0; i < B * Nt * 3 * D; i++) qkv[i] = 2.0f * urand(&r);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < Nt; i++) {
                const float *q = qkv + ((size_t)b * Nt + i) * 3 * D + h * hd;
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j < Nt; j++) {
                    const float *kk = qkv + ((size_t)b * Nt + j) * 3 * D + D + h * hd;
                    double s = 0;
                    for (int d = 0; d < hd; d++) s += (double)q[d] * kk[d];
                    p[j] = s / sqrt((double)hd);
                    mx = p[j] > mx ? p[j] : mx;
                }
                for (int j = 0; j < Nt; j++) sum += (p[j] = exp(p[j] - mx));
                for (int j = 0; j < Nt; j++) p[j] /= sum;
                if (i == 0)
                    for (int j = 0; j < Nt; j++) cref[((size_t)b * H + h) * Nt + j] = p[j];
                for (int j = 0; j < Nt; j++) mref[((size_t)b * Nt + i) * Nt + j] += p[j] / H;
                for (int d = 0; d < hd; d++) {
                    double o = 0;
                    for (int j = 0; j < Nt; j++)
                        o += p[j] * qkv[((size_t)b * Nt + j) * 3 * D + 2 * D + h * hd + d];
                    ref[((size_t)b * Nt + i) * D + h * hd + d] = o;
                }
            }
    for (int l = 0; l < nt; l++) {
        const uf__kern *k = t[l].k;
        for (int with_mean = 0; with_mean < 2; with_mean++) {
            float *scr = amalloc(sizeof(float) * 2 * k->attn_scratch(Nt, hd));
            REQUIRE(scr);
            uf__attn_job j = {.B = B, .Nt = Nt, .D = D, .heads = H, .nth = 2, .qkv = qkv,
                              .ctx = ctx, .scores = scr, .clsatt = with_mean ? NULL : cls,
                              .mean = with_mean ? mean : NULL, .mean_img = (size_t)Nt * Nt};
            k->attention(&j);
            double e = 0, ec = 0, em = 0;
            for (int i = 0; i < B * Nt * D; i++) e = fmax(e, fabs(ctx[i] - ref[i]));
            if (with_mean)
                for (int i = 0; i < B * Nt * Nt; i++) em = fmax(em, fabs(mean[i] - mref[i]));
            else
                for (int i = 0; i < B * H * Nt; i++) ec = fmax(ec, fabs(cls[i] - cref[i]));
            CHECKF(e <= 1e-5 && ec <= 1e-6 && em <= 1e-6,
                   "%s: attention errors: out %.3g, cls %.3g, mean %.3g", k->name, e, ec, em);
            free(scr);
        }
    }
    free(qkv), free(ctx), free(cls), free(mean), free(ref), free(mref), free(cref), free(p);
}

/* dist2 is bit-identical at every level (coreset selections do not depend on the CPU). */
static void test_dist2(void)
{
    table t[4];
    const int nt = tables(t);
    th_sm r = th_sm_new(5, 1);
    float a[300], b[300];
    for (int i = 0; i < 300; i++) a[i] = 3.0f * urand(&r), b[i] = 3.0f * urand(&r);
    static const int ds[] = {1, 15, 16, 17, 31, 32, 33, 128, 192, 300};
    for (size_t c = 0; c < sizeof ds / sizeof *ds; c++) {
        double ref = 0;
        for (int i = 0; i < ds[c]; i++) ref += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        const float d0 = t[0].k->dist2(a, b, ds[c]);
        CHECKF(fabs(d0 - ref) <= 1e-5 * ref, "d %d: %g vs %g", ds[c], d0, ref);
        for (int l = 1; l < nt; l++) {
            const float d = t[l].k->dist2(a, b, ds[c]);
            CHECKF(memcmp(&d, &d0, sizeof d) == 0, "%s: d %d: %.9g vs generic %.9g",
                   t[l].k->name, ds[c], d, d0);
        }
    }
}

/* W [N][K] as table k's BF16 GEMM takes it (see model/bf16.h), malloc'd. */
static void *bf16_weights(const uf__kern *k, const float *W, int N, int K)
{
    const size_t K2 = (size_t)(K + 1) / 2 * 2;
    if (k->gemm_bf16_team) {
        uint16_t *o = calloc((size_t)N * K2, sizeof *o);
        if (o)
            for (int n = 0; n < N; n++)
                for (int q = 0; q < K; q++) o[n * K2 + q] = uf__bf16_round(W[(size_t)n * K + q]);
        return o;
    }
    float *o = malloc(sizeof(float) * (size_t)N * K);
    if (o)
        for (size_t i = 0; i < (size_t)N * K; i++) o[i] = uf__bf16_float(uf__bf16_round(W[i]));
    return o;
}

/* tables(), plus the avx512bf16 table with vdpbf16ps alone (its gemm_bf16 takes AMX
 * tiles for K, N multiples of 32 when the OS grants them). */
static uf__kern dp_table;
static int bf16_tables(table *t)
{
    int n = tables(t);
    if (uf__cpu_level_best() >= UF__CPU_AVX512BF16) {
        dp_table = uf__kern_avx512bf16;
        dp_table.name = "avx512bf16 (vdpbf16ps only)";
        dp_table.gemm_bf16_team = uf__gemm_bf16_dp;
        t[n++] = (table){&dp_table, UF__CPU_AVX512BF16};
        static int said;
        if (!said++)
            fprintf(stderr, "    AMX tiles %s\n", uf__amx_enable() ? "in use" : "not available");
    }
    return n;
}

static double bf(float x) { return uf__bf16_float(uf__bf16_round(x)); }

/* One BF16 GEMM case at table k (C = epi(A W^T + bias), A [M][lda]) against a double
 * reference on the rounded A and W: the products are exact, so only FP32 summation
 * separates them. Returns the largest error relative to the magnitude of the terms; the
 * result goes to Cout [M][N]. */
static double bf16_case(const uf__kern *k, int M, int N, int K, uf__epi e, int nth, uint64_t seed,
                        float *Cout)
{
    th_sm r = th_sm_new(seed, 1);
    const int lda = K + 3;
    float *A = malloc(sizeof(float) * (size_t)M * lda), *W = malloc(sizeof(float) * (size_t)N * K);
    float *bias = malloc(sizeof(float) * (size_t)N), *C = malloc(sizeof(float) * (size_t)M * N);
    float *C0 = malloc(sizeof(float) * (size_t)M * N);
    float *ap = amalloc(sizeof(float) * ((size_t)(M + UF__MR_MAX - 1) / UF__MR_MAX * UF__MR_MAX) * K);
    void *Wl = NULL;
    double worst = INFINITY;
    if (A && W && bias && C && C0 && ap) {
        for (size_t i = 0; i < (size_t)M * lda; i++) A[i] = urand(&r);
        for (size_t i = 0; i < (size_t)N * K; i++) W[i] = urand(&r);
        for (int i = 0; i < N; i++) bias[i] = urand(&r);
        for (size_t i = 0; i < (size_t)M * N; i++) C[i] = C0[i] = urand(&r);
        Wl = bf16_weights(k, W, N, K);
    }
    if (Wl) {
        const uf__lp lp = {.native = k->gemm_bf16_team != NULL};
        uf__lp_gemm(k, &lp, nth, M, N, K, A, lda, Wl, bias, C, N, e, ap, NULL);
        worst = 0;
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                double s = bias[j], mag = fabs(bias[j]);
                for (int q = 0; q < K; q++) {
                    const double t = bf(A[(size_t)i * lda + q]) * bf(W[(size_t)j * K + q]);
                    s += t, mag += fabs(t);
                }
                if (e == UF__EPI_ACC) s += C0[(size_t)i * N + j], mag += fabs(C0[(size_t)i * N + j]);
                if (e == UF__EPI_GELU) s = gelu_ref(s);
                double err = fabs(C[(size_t)i * N + j] - s) / (mag + 1e-30);
                if (!(err <= worst)) worst = isnan(err) ? INFINITY : err;
            }
        memcpy(Cout, C, sizeof(float) * (size_t)M * N);
    }
    free(A), free(W), free(bias), free(C), free(C0), free(ap), free(Wl);
    return worst;
}

static void test_gemm_bf16(void)
{
    table t[5];
    const int nt = bf16_tables(t);
    static const int Ms[] = {1, 49, 97};
    static const int Ns[] = {1, 9, 31, 32, 64}; /* K, N multiples of 32: AMX tiles */
    static const int Ks[] = {1, 7, 64, 800};
    const size_t cmax = 97 * 64;
    float *c0 = malloc(sizeof(float) * cmax), *c1 = malloc(sizeof(float) * cmax);
    REQUIRE(c0 && c1);
    int n_native = 0;
    for (int l = 0; l < nt; l++) n_native += t[l].k->gemm_bf16_team != NULL;
    for (int l = 0; l < nt; l++) {
        double worst = 0, vs = 0;
        int cases = 0;
        for (size_t a = 0; a < sizeof Ms / sizeof *Ms; a++)
            for (size_t b = 0; b < sizeof Ns / sizeof *Ns; b++)
                for (size_t c = 0; c < sizeof Ks / sizeof *Ks; c++)
                    for (int e = 0; e < 3; e++) {
                        const int M = Ms[a], N = Ns[b], K = Ks[c];
                        const uint64_t seed = 1000 * a + 10 * b + c;
                        double err = bf16_case(t[l].k, M, N, K, (uf__epi)e, 1 + (int)(a & 1),
                                               seed, c0);
                        if (!(err <= worst)) worst = err;
                        cases++;
                        CHECKF(err <= 1e-6, "%s bf16: M %d N %d K %d epi %d: relative error %.3g",
                               t[l].k->name, M, N, K, e, err);
                        /* native against the emulation on the FP32 avx512 table */
                        if (t[l].k->gemm_bf16_team) {
                            bf16_case(&uf__kern_avx512, M, N, K, (uf__epi)e, 1, seed, c1);
                            const double mx = th_max_abs(c1, (size_t)M * N);
                            const double d = th_max_abs_diff(c0, c1, (size_t)M * N) /
                                             (mx > 1 ? mx : 1);
                            if (!(d <= vs)) vs = d;
                        }
                    }
        fprintf(stderr, "    %-10s %s: %d BF16 GEMM cases, worst relative error %.3g", t[l].k->name,
                t[l].k->gemm_bf16_team ? "native" : "emulated", cases, worst);
        if (t[l].k->gemm_bf16_team) fprintf(stderr, ", vs emulated %.3g", vs);
        fprintf(stderr, "\n");
        if (t[l].k->gemm_bf16_team) CHECKF(vs <= 1e-5, "native vs emulated BF16 GEMM: %.3g", vs);
    }
    if (!n_native) fprintf(stderr, "    (no avx512bf16 table on this CPU: native path not run)\n");
    free(c0), free(c1);
}

/* One GEMM of table k: the FP32 gemm (lp NULL, w the FP32 weights) or uf__lp_gemm (w in
 * lp's layout). */
static void gm(const uf__kern *k, const uf__lp *lp, int M, int N, int K, const float *A, int lda,
               const void *w, const float *bias, float *C, int ldc, uf__epi e, float *ap,
               float *pout)
{
    if (lp) uf__lp_gemm(k, lp, 2, M, N, K, A, lda, w, bias, C, ldc, e, ap, pout);
    else k->gemm(2, M, N, K, A, lda, w, bias, C, ldc, e, ap, pout);
}

/* fc1 with GELU written packed, then fc2 reading it, equals the unpacked pair: FP32 at
 * every table, or (bf16) BF16 at every table (native, vdpbf16ps alone, emulated). */
static void packed_pair(int M, int D, int H, int bf16)
{
    table t[5];
    const int nt = bf16 ? bf16_tables(t) : tables(t);
    th_sm r = th_sm_new(7, 1);
    float *X = malloc(sizeof(float) * M * D), *W1 = malloc(sizeof(float) * H * D);
    float *W2 = malloc(sizeof(float) * D * H), *b1 = malloc(sizeof(float) * H);
    float *b2 = malloc(sizeof(float) * D), *Y1 = malloc(sizeof(float) * M * D);
    float *Y2 = malloc(sizeof(float) * M * D), *Hd = malloc(sizeof(float) * M * H);
    const size_t pk = (size_t)(M + UF__MR_MAX - 1) / UF__MR_MAX * UF__MR_MAX * H;
    float *ap = amalloc(sizeof(float) * pk), *hp = amalloc(sizeof(float) * pk);
    REQUIRE(X && W1 && W2 && b1 && b2 && Y1 && Y2 && Hd && ap && hp);
    for (int i = 0; i < M * D; i++) X[i] = urand(&r);
    for (int i = 0; i < H * D; i++) W1[i] = urand(&r), W2[i] = urand(&r);
    for (int i = 0; i < H; i++) b1[i] = urand(&r);
    for (int i = 0; i < D; i++) b2[i] = urand(&r);
    for (int l = 0; l < nt; l++) {
        const uf__kern *k = t[l].k;
        const uf__lp lpv = {.native = k->gemm_bf16_team != NULL}, *lp = bf16 ? &lpv : NULL;
        void *w1 = bf16 ? bf16_weights(k, W1, H, D) : W1, *w2 = bf16 ? bf16_weights(k, W2, D, H) : W2;
        REQUIRE(w1 && w2);
        for (int i = 0; i < M * D; i++) Y1[i] = Y2[i] = X[i];
        gm(k, lp, M, H, D, X, D, w1, b1, Hd, H, UF__EPI_GELU, ap, NULL);
        gm(k, lp, M, D, H, Hd, H, w2, b2, Y1, D, UF__EPI_ACC, ap, NULL);
        gm(k, lp, M, H, D, X, D, w1, b1, NULL, 0, UF__EPI_GELU, ap, hp);
        gm(k, lp, M, D, H, NULL, 0, w2, b2, Y2, D, UF__EPI_ACC, hp, NULL);
        int same = 1;
        for (int i = 0; i < M * D; i++) same &= Y1[i] == Y2[i];
        CHECKF(same, "%s%s: packed fc1 -> fc2 differs from the unpacked pair (M %d D %d H %d)",
               k->name, bf16 ? " bf16" : "", M, D, H);
        if (bf16) free(w1), free(w2);
    }
    free(X), free(W1), free(W2), free(b1), free(b2), free(Y1), free(Y2), free(Hd), free(ap), free(hp);
}

static void test_gemm_packed(void) { packed_pair(61, 40, 72, 0); }

static void test_gemm_bf16_packed(void)
{
    packed_pair(61, 40, 73, 1);
    packed_pair(113, 64, 96, 1); /* AMX shapes */
}

/* Rounding to BF16: nearest, ties to even, subnormals to zero, Inf and NaN kept. */
static void test_bf16_round(void)
{
    CHECK(uf__bf16_round(1.0f) == 0x3F80);
    CHECK(uf__bf16_round(1.0f + 0x1p-8f) == 0x3F80);          /* tie, even stays      */
    CHECK(uf__bf16_round(1.0f + 3 * 0x1p-8f) == 0x3F82);      /* tie, odd rounds up   */
    CHECK(uf__bf16_round(1.0f + 0x1p-8f + 0x1p-20f) == 0x3F81); /* above the tie      */
    CHECK(uf__bf16_round(-2.5f) == 0xC020);
    CHECK(uf__bf16_round(0x1p-130f) == 0x0000);                /* subnormal flushes    */
    CHECK(uf__bf16_round(-0x1p-130f) == 0x8000);
    CHECK(uf__bf16_round(INFINITY) == 0x7F80);
    CHECK(uf__bf16_round(3.4e38f) == 0x7F80);                  /* rounds up to Inf     */
    CHECK(isnan(uf__bf16_float(uf__bf16_round(NAN))));
    CHECK(uf__bf16_float(0x4049) == 3.140625f);
}

/* The level in use is the one UF_CPU names when the CPU has it, never above the best. */
static void test_dispatch(void)
{
    const uf__cpu_level best = uf__cpu_level_best(), cur = uf__cpu_level_get();
    CHECK(cur <= best);
    const char *e = getenv("UF_CPU");
    fprintf(stderr, "    best level %s, in use %s (UF_CPU=%s)%s%s\n", uf__cpu_level_name(best),
            uf__cpu_level_name(cur), e ? e : "", *uf__cpu_note() ? ": " : "", uf__cpu_note());
    if (e && *e) {
        int known = 0;
        for (int l = 0; l <= UF__CPU_AVX512BF16; l++)
            if (!strcmp(e, uf__cpu_level_name((uf__cpu_level)l))) {
                known = 1;
                CHECK(cur == ((uf__cpu_level)l <= best ? (uf__cpu_level)l : best));
                CHECK((*uf__cpu_note() != 0) == ((uf__cpu_level)l > best));
            }
        if (!known) CHECK(cur == best && *uf__cpu_note());
    } else {
        CHECK(cur == best && !*uf__cpu_note());
    }
    CHECK(!strcmp(uf_cpu_level(), uf__cpu_level_name(cur)));
}

int main(void)
{
    RUN(test_gemm);
    RUN(test_gemm_threads);
    RUN(test_gemm_packed);
    RUN(test_gemm_bf16);
    RUN(test_gemm_bf16_packed);
    RUN(test_bf16_round);
    RUN(test_gelu);
    RUN(test_attention);
    RUN(test_dist2);
    RUN(test_dispatch);
    return TEST_DONE();
}
