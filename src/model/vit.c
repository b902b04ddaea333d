/*
 * vit.c - the Vision Transformer forward pass (DINO / timm semantics) on the CPU.
 *
 * A session owns every scratch buffer of the pass, sized for the largest batch seen and
 * grown on demand, so repeated calls with the same sizes never allocate. Activations are
 * kept row-major as [T][D] with T = B * (1 + Np) tokens (CLS first in each image), which
 * turns every Linear layer into one matrix product over all tokens of the batch.
 *
 * Speed (AVX-512 builds; OpenBLAS 0.3.21 drives this CPU family with its AVX2 kernels only,
 * at about half the machine's peak, so the hot loops are our own):
 *  - Linear layers run on an AVX-512 GEMM (gemm_avx512) that reads the immutable weights
 *    in place - no per-call weight packing, a full extra pass over the weights that
 *    weighs most at batch 1 - and transposes only the (smaller) activations; bias, GELU and the residual add happen in its epilogue, and
 *    fc1 writes its output directly in the packed layout fc2 reads.
 *  - Attention runs 48 queries at a time per (image, head) with the same micro-kernel on
 *    strided views of the qkv buffer: S^T = K Q^T, a softmax vectorised across queries,
 *    O = S V; no [heads][Nt][Nt] tensor exists beyond one [Nt][48] tile per thread.
 *  - LayerNorm and the output copies are fused into one parallel pass over the rows.
 * Builds without AVX-512 fall back to OpenBLAS sgemm for both (BLAS calls inside our
 * parallel regions run single-threaded, outside them on uf_get_threads() threads).
 * On the AVX-512 path every output element is summed in the same order whatever the
 * thread count or batch partitioning, so results are bitwise reproducible across both
 * in optimised builds (the tests still allow float rounding, for the BLAS fallback).
 *
 * Exactness: every step follows PyTorch's definition (biased-variance LayerNorm, exact
 * erf GELU, max-subtracted softmax, DINO's bicubic interpolate_pos_encoding computed in
 * double precision), so results match a float64 PyTorch reference to float rounding.
 */
#include "core/internal.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

/* ------------------------------------------------------------------------------------ */
/* Growable, 64-byte aligned scratch buffers                                            */
/* ------------------------------------------------------------------------------------ */

typedef struct buf {
    float *p;   /* [cap] */
    size_t cap; /* floats */
} buf;

/* Make b hold at least n floats. Contents are not preserved. On failure b is unchanged
 * (still valid) and UF_ERR_NOMEM is returned with a message naming the buffer. */
static uf_status buf_need(buf *b, size_t n, const char *what)
{
    if (n <= b->cap) return UF_OK;
    size_t bytes;
    if (!uf__mul_ok(n, sizeof(float), &bytes) || !uf__add_ok(bytes, 63, &bytes))
        return uf__err(UF_ERR_NOMEM, "forward: %s buffer size overflows", what);
    bytes &= ~(size_t)63;
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes) != 0 || !p)
        return uf__err(UF_ERR_NOMEM, "forward: cannot allocate %zu bytes for the %s buffer",
                       bytes, what);
    free(b->p);
    b->p = p;
    b->cap = bytes / sizeof(float);
    return UF_OK;
}

struct uf_session {
    const uf_backbone *bb;
    buf x;      /* [T][D]  residual stream                                      */
    buf h;      /* [T][D]  LayerNorm output (input of qkv / fc1)                */
    buf qkv;    /* [T][3D] q | k | v per token                                  */
    buf ctx;    /* [T][D]  attention output, heads concatenated; also the patch
                           embedding result [B*Np][D]                             */
    buf mlp;    /* [T][M]  MLP hidden activations (AVX-512: packed [T/48][M][48]) */
    buf pk;     /* [ceil(T/48)*48][max(D,M,3PP)] packed GEMM input (AVX-512)  */
    buf col;    /* [B*Np][3*P*P] im2col of the pixels                           */
    buf att;    /* per-thread attention scratch: AVX-512 [threads][(hd + Nt)*48 + 16],
                           BLAS fallback [threads][tile][Nt]                      */
    buf clsatt; /* [B][heads][Nt] CLS query rows of the requested block         */
    buf roll;   /* [B][L][Nt][Nt] head-mean attention (rollout only)           */
    buf rvec;   /* [B][2][Nt] rollout row vectors                              */
    buf pos;    /* [1+Np][D] positional embedding for the cached grid           */
    int pos_gh, pos_gw; /* grid of the cached pos (0: none)                     */
};

uf_status uf_session_new(const uf_backbone *bb, uf_session **out)
{
    if (!out) return uf__err(UF_ERR_ARG, "uf_session_new: out is NULL");
    *out = NULL;
    if (!bb) return uf__err(UF_ERR_ARG, "uf_session_new: backbone is NULL");
    const uf__vit_weights *w = &bb->w;
    if (w->dim < 1 || w->heads < 1 || w->dim % w->heads != 0 || w->depth < 1 ||
        w->patch < 1 || w->mlp_dim < 1 || w->grid_h < 1 || w->grid_w < 1 || !w->blocks)
        return uf__err(UF_ERR_ARG, "uf_session_new: backbone has inconsistent dimensions");
    uf_session *s = calloc(1, sizeof *s);
    if (!s) return uf__err(UF_ERR_NOMEM, "uf_session_new: out of memory");
    s->bb = bb;
    *out = s;
    return UF_OK;
}

void uf_session_free(uf_session *s)
{
    if (!s) return;
    buf *all[] = {&s->x,   &s->h,      &s->qkv,  &s->ctx,  &s->mlp, &s->col, &s->pk,
                  &s->att, &s->clsatt, &s->roll, &s->rvec, &s->pos};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]->p);
    free(s);
}

/* ------------------------------------------------------------------------------------ */
/* Vectorised elementwise kernels: exp, GELU, softmax, LayerNorm                        */
/* ------------------------------------------------------------------------------------ */

/* Coefficients of Numerical Recipes' erfc Chebyshev fit: fractional error < 1.2e-7 for
 * every z >= 0, so GELU keeps full float accuracy even for negative inputs (where it is
 * x * erfc(|x|/sqrt2) / 2 and an erf-based formula would cancel). */
#define ERFC_C0 (-1.26551223f)
#define ERFC_C1 1.00002368f
#define ERFC_C2 0.37409196f
#define ERFC_C3 0.09678418f
#define ERFC_C4 (-0.18628806f)
#define ERFC_C5 0.27886807f
#define ERFC_C6 (-1.13520398f)
#define ERFC_C7 1.48851587f
#define ERFC_C8 (-0.82215223f)
#define ERFC_C9 0.17087277f

#if defined(__AVX512F__)
/* e^(hi + lo) for 16 floats, |lo| <= ~2: hi + lo = n ln2 + r with |r| <= ln2/2
 * (Cody-Waite; lo is added after the exact reduction of hi, so a large argument given as
 * an exact hi plus a correction keeps full relative accuracy), degree-7 Taylor polynomial (truncation < 1e-8 relative),
 * scaled by 2^n with vscalefps (exact, handles underflow). */
static inline __m512 exp16x(__m512 hi, __m512 lo)
{
    hi = _mm512_min_ps(_mm512_max_ps(hi, _mm512_set1_ps(-104.0f)), _mm512_set1_ps(88.7f));
    const __m512 log2e = _mm512_set1_ps(1.44269504088896341f);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(_mm512_add_ps(hi, lo), log2e),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), hi);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f), r);
    r = _mm512_add_ps(r, lo);
    __m512 p = _mm512_set1_ps(1.0f / 5040);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

static inline __m512 exp16(__m512 x) { return exp16x(x, _mm512_setzero_ps()); }

/* Exact GELU x * Phi(x) for 16 floats via erfc (see ERFC_C*). */
static inline __m512 gelu16(__m512 x)
{
    const __m512 one = _mm512_set1_ps(1.0f), half = _mm512_set1_ps(0.5f);
    __m512 z = _mm512_mul_ps(_mm512_abs_ps(x), _mm512_set1_ps(0.70710678118654752f));
    __m512 t = _mm512_div_ps(one, _mm512_fmadd_ps(half, z, one));
    __m512 p = _mm512_set1_ps(ERFC_C9);
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(ERFC_C8));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(ERFC_C7));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(ERFC_C6));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(ERFC_C5));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(ERFC_C4));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(ERFC_C3));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(ERFC_C2));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(ERFC_C1));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(ERFC_C0));
    /* exp(-z^2 + p) with z^2 = x^2/2 split exactly (x*x = xx + xl) so the exponent,
     * up to ~-100, loses no accuracy: relative error stays ~1e-7 in the far tail */
    const __m512 xx = _mm512_mul_ps(x, x), xl = _mm512_fmsub_ps(x, x, xx);
    __m512 e = exp16x(_mm512_mul_ps(xx, _mm512_set1_ps(-0.5f)), _mm512_fnmadd_ps(half, xl, p));
    __m512 hc = _mm512_mul_ps(_mm512_mul_ps(half, t), e); /* erfc(z)/2 */
    /* Phi = 1 - erfc/2 for x >= 0, erfc/2 for x < 0 */
    __mmask16 pos = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GE_OQ);
    __m512 phi = _mm512_mask_sub_ps(hc, pos, one, hc);
    return _mm512_mul_ps(x, phi);
}
#endif

#if !defined(__AVX512F__)
/* v[i] = gelu(v[i] + b[i]) for i < n (b may be NULL), exact erf GELU (the AVX-512 build
 * applies gelu16 in the GEMM epilogue instead). */
static void bias_gelu(float *v, const float *b, int n)
{
    for (int i = 0; i < n; i++) {
        float x = v[i] + (b ? b[i] : 0.0f);
        v[i] = 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    }
}

/* In-place softmax of one row of n scores (max-subtracted, like PyTorch); the AVX-512
 * build does its softmax inside attention_avx512. */
static void softmax_row(float *s, int n)
{
    float mx = -INFINITY, sum = 0;
    for (int i = 0; i < n; i++) mx = s[i] > mx ? s[i] : mx;
    for (int i = 0; i < n; i++) {
        s[i] = expf(s[i] - mx);
        sum += s[i];
    }
    float inv = 1.0f / sum;
    for (int i = 0; i < n; i++) s[i] *= inv;
}
#endif

/* y = LayerNorm(x) * w + b over one row of D (biased variance, two-pass). */
static void layernorm_row(const float *restrict x, const float *restrict w,
                          const float *restrict b, float eps, float *restrict y, int D)
{
    float sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int i = 0; i < D; i++) sum += x[i];
    float mean = sum / (float)D, var = 0;
#pragma omp simd reduction(+ : var)
    for (int i = 0; i < D; i++) {
        float d = x[i] - mean;
        var += d * d;
    }
    float rstd = 1.0f / sqrtf(var / (float)D + eps);
#pragma omp simd
    for (int i = 0; i < D; i++) y[i] = (x[i] - mean) * rstd * w[i] + b[i];
}

/* ------------------------------------------------------------------------------------ */
/* Linear layers                                                                        */
/* ------------------------------------------------------------------------------------ */

enum epi { EPI_SET, EPI_ACC, EPI_GELU };

#if defined(__AVX512F__)
/*
 * Own AVX-512 GEMM for C[M][N] = A[M][K] W[N][K]^T (OpenBLAS 0.3.21 runs only its AVX2
 * kernels on this CPU family, at about half the AVX-512 peak).
 *
 * The vector dimension is the token (row of A) one: A is packed once per call into panels
 * of 48 rows, transposed to [K][48], and the weights W are read in place, unpacked: each
 * k step of the micro-kernel loads 3 vectors of 16 tokens and broadcasts 8 weights (8
 * rows of W, one per output column), accumulating a 48 x 8 tile of C^T in 24 registers.
 * Not packing W saves a full pass over the weights per call, which matters at batch 1.
 * The tile is transposed back to row-major C in the epilogue, which also applies the
 * bias, GELU and the residual add.
 */
#define GM_MR 48  /* tokens per panel (3 vectors)          */
#define GM_NR 8   /* output columns per micro-tile         */
#define GM_KC 768 /* k block: the 8 x KC weight slice (24 KB) stays in L1 */
#define GM_MC 4   /* panels per task: 4 x 147 KB in L2                    */

#define UF_AI static inline __attribute__((always_inline))

/* The micro-kernel: ct[j][i] = sum_k ap[k][i] * w[j*ldw + k*ldk] for j < nr, i < 16*mv.
 * ap: [kc][48] packed tokens; ct: [8][48]. GEMMs read weight rows (ldk = 1); attention
 * reads V in place (ldw = 1, ldk = row stride). Only rows j < nr and vectors v < mv of ct
 * are written. */
UF_AI void micro(const int nr, const int mv, const float *restrict ap,
                 const float *restrict w, size_t ldw, size_t ldk, int kc, float *restrict ct)
{
    __m512 acc[GM_NR][3];
#pragma GCC unroll 8
    for (int j = 0; j < GM_NR; j++)
#pragma GCC unroll 3
        for (int v = 0; v < 3; v++) acc[j][v] = _mm512_setzero_ps();
    const float *wj[GM_NR];
#pragma GCC unroll 8
    for (int j = 0; j < GM_NR; j++) wj[j] = w + (j < nr ? (size_t)j * ldw : 0);
    for (int k = 0; k < kc; k++) {
        __m512 x[3];
#pragma GCC unroll 3
        for (int v = 0; v < 3; v++)
            if (v < mv) x[v] = _mm512_load_ps(ap + (size_t)k * GM_MR + 16 * v);
#pragma GCC unroll 8
        for (int j = 0; j < GM_NR; j++) {
            if (j >= nr) continue;
            const __m512 b = _mm512_set1_ps(wj[j][(size_t)k * ldk]);
#pragma GCC unroll 3
            for (int v = 0; v < 3; v++)
                if (v < mv) acc[j][v] = _mm512_fmadd_ps(b, x[v], acc[j][v]);
        }
    }
#pragma GCC unroll 8
    for (int j = 0; j < GM_NR; j++)
#pragma GCC unroll 3
        for (int v = 0; v < 3; v++)
            if (j < nr && v < mv) _mm512_store_ps(ct + j * GM_MR + 16 * v, acc[j][v]);
}

typedef void (*micro_fn)(const float *, const float *, size_t, int, float *);
#define GM_DEF(NR, MV)                                                                     \
    static void micro_##NR##_##MV(const float *ap, const float *w, size_t ldw, int kc,     \
                                  float *ct)                                               \
    {                                                                                      \
        micro(NR, MV, ap, w, ldw, 1, kc, ct);                                              \
    }                                                                                      \
    static void microv_##NR##_##MV(const float *ap, const float *w, size_t ldk, int kc,    \
                                   float *ct)                                              \
    {                                                                                      \
        micro(NR, MV, ap, w, 1, ldk, kc, ct);                                              \
    }
#define GM_DEF3(NR) GM_DEF(NR, 1) GM_DEF(NR, 2) GM_DEF(NR, 3)
GM_DEF3(1) GM_DEF3(2) GM_DEF3(3) GM_DEF3(4) GM_DEF3(5) GM_DEF3(6) GM_DEF3(7) GM_DEF3(8)
#define GM_ROW(P, NR) {P##_##NR##_1, P##_##NR##_2, P##_##NR##_3}
/* [nr-1][mv-1]: weight rows (GEMM) */
static const micro_fn micro_tab[GM_NR][3] = {
    GM_ROW(micro, 1), GM_ROW(micro, 2), GM_ROW(micro, 3), GM_ROW(micro, 4),
    GM_ROW(micro, 5), GM_ROW(micro, 6), GM_ROW(micro, 7), GM_ROW(micro, 8)};
/* [nr-1][mv-1]: consecutive columns of strided rows (attention's V) */
static const micro_fn microv_tab[GM_NR][3] = {
    GM_ROW(microv, 1), GM_ROW(microv, 2), GM_ROW(microv, 3), GM_ROW(microv, 4),
    GM_ROW(microv, 5), GM_ROW(microv, 6), GM_ROW(microv, 7), GM_ROW(microv, 8)};

/* Pack rows r0..r0+47 of A [M][K] (stride lda) into ap [K][48], zero past row M. */
static void pack_panel(const float *A, size_t lda, int M, int K, int r0, float *ap)
{
    const __m512i idx = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6,
                                                            5, 4, 3, 2, 1, 0),
                                           _mm512_set1_epi32((int)lda));
    for (int v = 0; v < 3; v++) {
        const int rv = r0 + 16 * v, n = M - rv < 16 ? M - rv : 16;
        float *o = ap + 16 * v;
        if (n <= 0) {
            for (int k = 0; k < K; k++) _mm512_store_ps(o + (size_t)k * GM_MR, _mm512_setzero_ps());
            continue;
        }
        const float *a = A + (size_t)rv * lda;
        const __mmask16 m = (__mmask16)(n == 16 ? 0xFFFF : (1u << n) - 1);
        for (int k = 0; k < K; k++)
            _mm512_store_ps(o + (size_t)k * GM_MR,
                            _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, a + k, 4));
    }
}

/* ct[j][*] = gelu?(ct[j][*] + bias[j]) for j < nr, on the first mv vectors (16 tokens
 * per vector). */
static void ct_bias_gelu(float *ct, int nr, int mv, const float *bias, int gelu)
{
    for (int j = 0; j < nr; j++) {
        const __m512 bj = _mm512_set1_ps(bias ? bias[j] : 0.0f);
        for (int v = 0; v < mv; v++) {
            __m512 x = _mm512_add_ps(_mm512_load_ps(ct + j * GM_MR + 16 * v), bj);
            if (gelu) x = gelu16(x);
            _mm512_store_ps(ct + j * GM_MR + 16 * v, x);
        }
    }
}

/* Finish a [8][48] C^T tile (nr columns, `rows` tokens valid) into row-major C. bias is
 * given on the last k block only; gelu means "the sum is complete here": if the tile holds
 * the whole sum (!acc) bias and GELU are applied in the tile, 16 tokens per vector;
 * otherwise the tile is added to the old C while transposing (acc: residual add or a
 * later k block) and GELU follows the add. The transpose gathers one 8-float C row
 * segment per token. */
static void epilogue(float *ct, int nr, int rows, float *C, size_t ldc, int acc,
                     const float *bias, int gelu)
{
    if (bias || (gelu && !acc)) ct_bias_gelu(ct, nr, (rows + 15) / 16, bias, gelu && !acc);
    const __m256i idx = _mm256_set_epi32(7 * GM_MR, 6 * GM_MR, 5 * GM_MR, 4 * GM_MR, 3 * GM_MR,
                                         2 * GM_MR, GM_MR, 0);
    const __mmask8 m = (__mmask8)((1u << nr) - 1);
    for (int i = 0; i < rows; i++) {
        float *c = C + (size_t)i * ldc;
        __m256 r = _mm256_mmask_i32gather_ps(_mm256_setzero_ps(), m, idx, ct + i, 4);
        if (acc) {
            r = _mm256_add_ps(r, _mm256_maskz_loadu_ps(m, c));
            if (gelu) r = _mm512_castps512_ps256(gelu16(_mm512_zextps256_ps512(r)));
        }
        _mm256_mask_storeu_ps(c, m, r);
    }
}

/* C = epi(A W^T + bias) with the AVX-512 kernels; ap is scratch of ceil(M/48)*48*K
 * floats for the packed A, or A is NULL and ap already holds it. With pout (K <= GM_KC,
 * e != EPI_ACC) the result is written packed, [ceil(M/48)][N][48], ready to be the
 * next GEMM's ap (fc1 -> fc2 without a transpose and a repack). */
static void gemm_avx512(int nth, int M, int N, int K, const float *A, int lda, const float *W,
                        const float *bias, float *C, int ldc, enum epi e, float *ap,
                        float *pout)
{
    const int npan = (M + GM_MR - 1) / GM_MR;
    const int nmb = (npan + GM_MC - 1) / GM_MC, ppm = (npan + nmb - 1) / nmb; /* panels/task */
    const int n8 = (N + GM_NR - 1) / GM_NR;
    int nnb = (4 * nth + nmb - 1) / nmb; /* column chunks: ~4 tasks per thread */
    if (nnb > n8) nnb = n8;
    const int c8 = (n8 + nnb - 1) / nnb; /* 8-column blocks per chunk */
    nnb = (n8 + c8 - 1) / c8;
    const size_t pstride = (size_t)K * GM_MR; /* floats per packed panel */
#pragma omp parallel num_threads(nth)
    {
#pragma omp for schedule(static)
        for (int p = 0; p < npan; p++)
            if (A) pack_panel(A, (size_t)lda, M, K, p * GM_MR, ap + p * pstride);
        float ct[GM_NR * GM_MR] __attribute__((aligned(64))); /* [8][48] C^T tile */
#pragma omp for schedule(dynamic, 1)
        for (int t = 0; t < nmb * nnb; t++) {
            const int pb = (t / nnb) * ppm, pe = pb + ppm < npan ? pb + ppm : npan;
            const int jb = (t % nnb) * c8, je = jb + c8 < n8 ? jb + c8 : n8;
            for (int k0 = 0; k0 < K; k0 += GM_KC) {
                const int kc = K - k0 < GM_KC ? K - k0 : GM_KC, last = k0 + kc == K;
                for (int jj = jb; jj < je; jj++) {
                    const int n0 = jj * GM_NR, nr = N - n0 < GM_NR ? N - n0 : GM_NR;
                    const float *wp = W + (size_t)n0 * K + k0;
                    for (int p = pb; p < pe; p++) {
                        const int m0 = p * GM_MR, rows = M - m0 < GM_MR ? M - m0 : GM_MR;
                        const int mv = (rows + 15) / 16;
                        micro_tab[nr - 1][mv - 1](ap + p * pstride + (size_t)k0 * GM_MR, wp,
                                                  (size_t)K, kc, ct);
                        if (pout) { /* single k block: finish in place, copy packed */
                            ct_bias_gelu(ct, nr, mv, bias ? bias + n0 : NULL, e == EPI_GELU);
                            float *o = pout + ((size_t)p * N + n0) * GM_MR;
                            for (int j = 0; j < nr; j++)
                                for (int v = 0; v < mv; v++)
                                    _mm512_store_ps(o + j * GM_MR + 16 * v,
                                                    _mm512_load_ps(ct + j * GM_MR + 16 * v));
                            continue;
                        }
                        epilogue(ct, nr, rows, C + (size_t)m0 * ldc + n0, (size_t)ldc,
                                 k0 > 0 || e == EPI_ACC, last && bias ? bias + n0 : NULL,
                                 last && e == EPI_GELU);
                    }
                }
            }
        }
    }
}
#endif

/* C[M][N] (row stride ldc) = A[M][K] (stride lda) * W[N][K]^T + bias, then:
 *   EPI_SET: stored; EPI_ACC: added to C (residual); EPI_GELU: GELU applied.
 * bias may be NULL. Runs on nth threads; ap is packing scratch (AVX-512 path). */
static void linear(int nth, int M, int N, int K, const float *A, int lda, const float *W,
                   const float *bias, float *C, int ldc, enum epi e, float *ap)
{
#if defined(__AVX512F__)
    gemm_avx512(nth, M, N, K, A, lda, W, bias, C, ldc, e, ap, NULL);
#else
    (void)ap;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A, lda, W, K,
                e == EPI_ACC ? 1.0f : 0.0f, C, ldc);
    if (!bias && e != EPI_GELU) return;
#pragma omp parallel for schedule(static) num_threads(nth)
    for (int i = 0; i < M; i++) {
        float *c = C + (size_t)i * ldc;
        if (e == EPI_GELU) {
            bias_gelu(c, bias, N);
        } else {
#pragma omp simd
            for (int j = 0; j < N; j++) c[j] += bias[j];
        }
    }
#endif
}

/* ------------------------------------------------------------------------------------ */
/* Positional embedding (DINO interpolate_pos_encoding)                                 */
/* ------------------------------------------------------------------------------------ */

/* PyTorch's cubic convolution kernels, A = -0.75 (upsample_bicubic2d). */
static double cubic1(double x, double A) { return ((A + 2) * x - (A + 3)) * x * x + 1; }
static double cubic2(double x, double A) { return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A; }

/* Taps and weights of one output index along an axis of n_in trained positions resampled
 * to n_out (DINO passes scale_factor = (n_out + 0.1) / n_in, and PyTorch then maps with
 * 1/scale, not n_in/n_out). */
static void cubic_taps(int n_in, int n_out, int o, int idx[4], double wt[4])
{
    double scale = ((double)n_out + 0.1) / (double)n_in;
    double src = ((double)o + 0.5) * (1.0 / scale) - 0.5;
    double f = floor(src), t = src - f;
    const double A = -0.75;
    wt[0] = cubic2(t + 1.0, A);
    wt[1] = cubic1(t, A);
    wt[2] = cubic1(1.0 - t, A);
    wt[3] = cubic2(2.0 - t, A);
    for (int k = 0; k < 4; k++) {
        long v = (long)f - 1 + k;
        idx[k] = (int)(v < 0 ? 0 : v > n_in - 1 ? n_in - 1 : v);
    }
}

/* Point *pos at the positional embedding [1+gh*gw][D] for a gh x gw patch grid of an
 * H x W input: the trained table when DINO uses it as is, else the bicubic resampling,
 * cached in the session for the last grid. */
static uf_status pos_prepare(uf_session *s, int gh, int gw, int H, int W, const float **pos)
{
    const uf__vit_weights *w = &s->bb->w;
    const int D = w->dim, Gh = w->grid_h, Gw = w->grid_w;
    int as_is;
    if (Gh == Gw) /* DINO: `if npatch == N and w == h: return self.pos_embed` */
        as_is = (size_t)gh * gw == (size_t)Gh * Gw && H == W;
    else
        as_is = gh == Gh && gw == Gw;
    if (as_is) {
        *pos = w->pos;
        return UF_OK;
    }
    if (s->pos_gh == gh && s->pos_gw == gw) {
        *pos = s->pos.p;
        return UF_OK;
    }
    size_t np = (size_t)gh * gw, n;
    if (!uf__mul_ok(np + 1, (size_t)D, &n)) return uf__err(UF_ERR_LIMIT, "forward: grid too large");
    s->pos_gh = s->pos_gw = 0;
    uf_status st = buf_need(&s->pos, n, "positional embedding");
    if (st != UF_OK) return st;
    double *tmp = malloc((size_t)Gw * D * sizeof(double)); /* [Gw][D] one resampled row */
    if (!tmp) return uf__err(UF_ERR_NOMEM, "forward: out of memory for positional embedding");
    float *out = s->pos.p;
    memcpy(out, w->pos, (size_t)D * sizeof(float)); /* CLS position unchanged */
    const float *grid = w->pos + D;                 /* [Gh][Gw][D] */
    for (int oy = 0; oy < gh; oy++) {
        int iy[4];
        double wy[4];
        cubic_taps(Gh, gh, oy, iy, wy);
        /* vertical pass: tmp[x][d] = sum_k wy[k] grid[iy[k]][x][d] */
        for (int x = 0; x < Gw; x++)
            for (int d = 0; d < D; d++) {
                double acc = 0;
                for (int k = 0; k < 4; k++) acc += wy[k] * grid[((size_t)iy[k] * Gw + x) * D + d];
                tmp[(size_t)x * D + d] = acc;
            }
        /* horizontal pass */
        for (int ox = 0; ox < gw; ox++) {
            int ix[4];
            double wx[4];
            cubic_taps(Gw, gw, ox, ix, wx);
            float *o = out + (1 + (size_t)oy * gw + ox) * D;
            for (int d = 0; d < D; d++) {
                double acc = 0;
                for (int k = 0; k < 4; k++) acc += wx[k] * tmp[(size_t)ix[k] * D + d];
                o[d] = (float)acc;
            }
        }
    }
    free(tmp);
    s->pos_gh = gh;
    s->pos_gw = gw;
    *pos = out;
    return UF_OK;
}

/* ------------------------------------------------------------------------------------ */
/* Attention                                                                            */
/* ------------------------------------------------------------------------------------ */

typedef struct attn_job {
    int B, Nt, D, heads, nth;
    int tile;          /* query rows per work item                 */
    int ntile;         /* work items per image                     */
    const float *qkv;  /* [T][3D]                                  */
    float *ctx;        /* [T][D]                                   */
    float *scores;     /* [nth][tile][Nt]                          */
    float *clsatt;     /* [B][heads][Nt] or NULL: save CLS rows    */
    float *mean;       /* [B][Lr][Nt][Nt] slice base or NULL       */
    size_t mean_img;   /* floats between images in mean            */
} attn_job;

#if !defined(__AVX512F__)
/* Multi-head self-attention for every image: ctx = softmax(Q K^T / sqrt(hd)) V per head.
 * Work items are (image, query tile); each loops over the heads so head-mean matrices can
 * be accumulated without races. */
static void attention_blas(const attn_job *j)
{
    const int Nt = j->Nt, D = j->D, hd = D / j->heads, ld = 3 * D;
    const float scale = 1.0f / sqrtf((float)hd), invh = 1.0f / (float)j->heads;
#pragma omp parallel for schedule(dynamic, 1) num_threads(j->nth)
    for (int it = 0; it < j->B * j->ntile; it++) {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        const int b = it / j->ntile, r0 = (it % j->ntile) * j->tile;
        const int nq = Nt - r0 < j->tile ? Nt - r0 : j->tile;
        if (nq <= 0) continue;
        float *S = j->scores + (size_t)tid * j->tile * Nt; /* [nq][Nt] */
        const float *base = j->qkv + (size_t)b * Nt * ld;  /* this image's [Nt][3D] */
        for (int h = 0; h < j->heads; h++) {
            const float *q = base + (size_t)r0 * ld + (size_t)h * hd;
            const float *k = base + D + (size_t)h * hd;
            const float *v = base + 2 * (size_t)D + (size_t)h * hd;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, Nt, hd, scale, q, ld, k,
                        ld, 0.0f, S, Nt);
            for (int i = 0; i < nq; i++) softmax_row(S + (size_t)i * Nt, Nt);
            if (j->clsatt && r0 == 0)
                memcpy(j->clsatt + ((size_t)b * j->heads + h) * Nt, S, (size_t)Nt * sizeof(float));
            if (j->mean) {
                float *m = j->mean + (size_t)b * j->mean_img + (size_t)r0 * Nt;
                size_t n = (size_t)nq * Nt;
                if (h == 0) {
#pragma omp simd
                    for (size_t i = 0; i < n; i++) m[i] = S[i] * invh;
                } else {
#pragma omp simd
                    for (size_t i = 0; i < n; i++) m[i] += S[i] * invh;
                }
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hd, Nt, 1.0f, S, Nt, v,
                        ld, 0.0f, j->ctx + ((size_t)b * Nt + r0) * D + (size_t)h * hd, D);
        }
    }
}

#endif

#if defined(__AVX512F__)
/* Floats of per-thread attention scratch for the AVX-512 path: Q^T [hd][48] and
 * S^T [Nt][48]. */
static size_t attn_scratch(int Nt, int hd) { return (size_t)GM_MR * ((size_t)hd + Nt) + 16; }

/* Attention with the GEMM micro-kernel, 48 queries at a time, vector along queries:
 *   S^T[key][q] = K Q^T (weights = K rows, read in place), softmax along keys done
 *   16 queries per vector (no horizontal reductions), O^T = V^T S^T with V read in
 *   place, normalised by the row sums and transposed into ctx.
 * Work items are (image, head, query tile), or (image, query tile) looping over heads
 * when head-mean matrices are kept (so each thread owns the rows it accumulates). */
static void attention_avx512(const attn_job *j)
{
    const int Nt = j->Nt, D = j->D, H = j->heads, hd = D / H;
    const size_t ld = 3 * (size_t)D;
    const float scale = 1.0f / sqrtf((float)hd), invh = 1.0f / (float)H;
    const int nqt = (Nt + GM_MR - 1) / GM_MR;
    const int per_head = j->mean == NULL; /* one head per work item */
    const int items = j->B * nqt * (per_head ? H : 1);
    const size_t scr = attn_scratch(Nt, hd);
#pragma omp parallel for schedule(dynamic, 1) num_threads(j->nth)
    for (int it = 0; it < items; it++) {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        float *qp = j->scores + (size_t)tid * scr; /* [hd][48]  (64-byte aligned) */
        float *st = qp + (size_t)hd * GM_MR;       /* [Nt][48] */
        float ct[GM_NR * GM_MR] __attribute__((aligned(64)));
        int b, qt, h0, h1;
        if (per_head) {
            b = it / (nqt * H);
            h0 = it / nqt % H;
            h1 = h0 + 1;
        } else {
            b = it / nqt;
            h0 = 0;
            h1 = H;
        }
        qt = it % nqt;
        const int q0 = qt * GM_MR, nq = Nt - q0 < GM_MR ? Nt - q0 : GM_MR, mv = (nq + 15) / 16;
        const float *img = j->qkv + (size_t)b * Nt * ld; /* [Nt][3D] */
        for (int h = h0; h < h1; h++) {
            /* S^T = K Q^T, 8 keys per micro-tile, with the running max per query taken
             * while the tile is still in L1 */
            pack_panel(img + (size_t)q0 * ld + (size_t)h * hd, ld, nq, hd, 0, qp);
            const float *kh = img + D + (size_t)h * hd;
            __m512 mx[3] = {_mm512_set1_ps(-INFINITY), _mm512_set1_ps(-INFINITY),
                            _mm512_set1_ps(-INFINITY)};
            for (int k0 = 0; k0 < Nt; k0 += GM_NR) {
                const int nr = Nt - k0 < GM_NR ? Nt - k0 : GM_NR;
                float *sk = st + (size_t)k0 * GM_MR;
                micro_tab[nr - 1][mv - 1](qp, kh + (size_t)k0 * ld, ld, hd, sk);
                for (int r = 0; r < nr; r++)
                    for (int v = 0; v < mv; v++)
                        mx[v] = _mm512_max_ps(mx[v], _mm512_load_ps(sk + r * GM_MR + 16 * v));
            }
            /* softmax over keys of scale * S, 16 queries per vector */
            __m512 inv[3];
            const __m512 vs = _mm512_set1_ps(scale);
            for (int v = 0; v < mv; v++) {
                __m512 sum = _mm512_setzero_ps();
                for (int k = 0; k < Nt; k++) {
                    float *p = st + (size_t)k * GM_MR + 16 * v;
                    __m512 e = exp16(_mm512_mul_ps(_mm512_sub_ps(_mm512_load_ps(p), mx[v]), vs));
                    _mm512_store_ps(p, e);
                    sum = _mm512_add_ps(sum, e);
                }
                inv[v] = _mm512_div_ps(_mm512_set1_ps(1.0f), sum);
            }
            /* probabilities wanted as outputs: the CLS query row, head means */
            if (j->clsatt && q0 == 0) {
                const float i0 = _mm512_cvtss_f32(inv[0]);
                float *o = j->clsatt + ((size_t)b * H + h) * Nt;
                for (int k = 0; k < Nt; k++) o[k] = st[(size_t)k * GM_MR] * i0;
            }
            if (j->mean) {
                float iv[GM_MR];
                for (int v = 0; v < mv; v++) _mm512_storeu_ps(iv + 16 * v, _mm512_mul_ps(inv[v], _mm512_set1_ps(invh)));
                for (int i = 0; i < nq; i++) {
                    float *m = j->mean + (size_t)b * j->mean_img + (size_t)(q0 + i) * Nt;
                    if (h == 0)
                        for (int k = 0; k < Nt; k++) m[k] = st[(size_t)k * GM_MR + i] * iv[i];
                    else
                        for (int k = 0; k < Nt; k++) m[k] += st[(size_t)k * GM_MR + i] * iv[i];
                }
            }
            /* O^T = V^T S^T, 8 value dims per micro-tile, then normalise and store */
            const float *vh = img + 2 * (size_t)D + (size_t)h * hd;
            for (int d0 = 0; d0 < hd; d0 += GM_NR) {
                const int nr = hd - d0 < GM_NR ? hd - d0 : GM_NR;
                microv_tab[nr - 1][mv - 1](st, vh + d0, ld, Nt, ct);
                for (int r = 0; r < nr; r++)
                    for (int v = 0; v < mv; v++)
                        _mm512_store_ps(ct + r * GM_MR + 16 * v,
                                        _mm512_mul_ps(_mm512_load_ps(ct + r * GM_MR + 16 * v), inv[v]));
                epilogue(ct, nr, nq, j->ctx + ((size_t)b * Nt + q0) * D + (size_t)h * hd + d0,
                         (size_t)D, 0, NULL, 0);
            }
        }
    }
}
#endif

static void attention(const attn_job *j)
{
#if defined(__AVX512F__)
    attention_avx512(j);
#else
    attention_blas(j);
#endif
}

/* ------------------------------------------------------------------------------------ */
/* Forward                                                                              */
/* ------------------------------------------------------------------------------------ */

/* im2col: col[b*Np + py*gw + px][c*P*P + ky*P + kx] = pixels[b][c][py*P+ky][px*P+kx]. */
static void im2col(int nth, const float *px, int B, int H, int W, int P, int gh, int gw,
                   float *col)
{
    const size_t K = 3 * (size_t)P * P;
#pragma omp parallel for schedule(static) num_threads(nth)
    for (int r = 0; r < B * gh; r++) {
        const int b = r / gh, py = r % gh;
        for (int pxi = 0; pxi < gw; pxi++) {
            float *o = col + (((size_t)b * gh + py) * gw + pxi) * K;
            for (int c = 0; c < 3; c++)
                for (int ky = 0; ky < P; ky++) {
                    const float *src =
                        px + (((size_t)b * 3 + c) * H + (size_t)py * P + ky) * W + (size_t)pxi * P;
                    memcpy(o + ((size_t)c * P + ky) * P, src, (size_t)P * sizeof(float));
                }
        }
    }
}

/* Validate a request; sets *nrun to the number of blocks to run. */
static uf_status check_request(const uf__vit_weights *w, const float *pixels, int B, int H,
                               int W, const uf_forward_request *req,
                               const uf_forward_output *out, int *nrun)
{
    if (!pixels || !req || !out) return uf__err(UF_ERR_ARG, "uf_forward: NULL argument");
    if (B < 1) return uf__err(UF_ERR_ARG, "uf_forward: batch size %d < 1", B);
    if (H < w->patch || W < w->patch)
        return uf__err(UF_ERR_ARG, "uf_forward: input %dx%d smaller than the patch size %d", H,
                       W, w->patch);
    const int L = w->depth;
    if (L < 64 && (req->blocks >> L) != 0)
        return uf__err(UF_ERR_ARG, "uf_forward: block mask 0x%llx selects blocks beyond depth %d",
                       (unsigned long long)req->blocks, L);
    if (req->attn_block < 0 || req->attn_block > L)
        return uf__err(UF_ERR_ARG, "uf_forward: attn_block %d outside 0..%d", req->attn_block, L);
    if (req->rollout && req->attn_block == 0)
        return uf__err(UF_ERR_ARG, "uf_forward: rollout requested without attn_block");
    if (!req->blocks && !req->attn_block && !req->want_cls && !req->want_logits)
        return uf__err(UF_ERR_ARG, "uf_forward: nothing requested");
    if (req->want_logits && (w->n_classes <= 0 || !w->head_w))
        return uf__err(UF_ERR_ARG, "uf_forward: logits requested but the model has no head");
    if ((req->blocks && !out->blocks) || (req->attn_block && !out->attn) ||
        (req->want_cls && !out->cls) || (req->want_logits && !out->logits))
        return uf__err(UF_ERR_ARG, "uf_forward: output buffer missing for a requested output");
    int n = 0;
    for (int i = 0; i < L && i < 64; i++)
        if (req->blocks >> i & 1) n = i + 1;
    if (req->attn_block > n) n = req->attn_block;
    if (req->want_cls || req->want_logits) n = L;
    *nrun = n;
    return UF_OK;
}

uf_status uf_forward(uf_session *s, const float *pixels, int B, int H, int W,
                     const uf_forward_request *req, uf_forward_output *out)
{
    if (!s) return uf__err(UF_ERR_ARG, "uf_forward: session is NULL");
    const uf__vit_weights *w = &s->bb->w;
    int nrun = 0;
    uf_status st = check_request(w, pixels, B, H, W, req, out, &nrun);
    if (st != UF_OK) return st;

    const int D = w->dim, P = w->patch, M = w->mlp_dim, heads = w->heads;
    const int gh = H / P, gw = W / P;
    /* sizes, overflow-checked; every BLAS dimension must also fit an int */
    size_t Np = (size_t)gh * gw, Nt = Np + 1, T, tmp, big;
    if (!uf__mul_ok((size_t)B, Nt, &T) || T > (size_t)INT32_MAX / 4 ||
        !uf__mul_ok(T, (size_t)(3 * D > M ? 3 * D : M), &big) ||
        !uf__mul_ok(T, (size_t)3 * P * P, &tmp))
        return uf__err(UF_ERR_LIMIT, "uf_forward: batch of %d images of %dx%d is too large", B, H,
                       W);

    uf__threads_apply();
    const int nth = uf_get_threads();

    /* non-finite pixels would silently poison every output */
    size_t npx;
    if (!uf__mul_ok((size_t)B * 3, (size_t)H * (size_t)W, &npx))
        return uf__err(UF_ERR_LIMIT, "uf_forward: input too large");
    int bad = 0;
#pragma omp parallel for reduction(| : bad) schedule(static) num_threads(nth)
    for (size_t i = 0; i < npx; i++) bad |= !isfinite(pixels[i]);
    if (bad) return uf__err(UF_ERR_NONFINITE, "uf_forward: input pixels contain NaN or Inf");

    /* attention tiling: at least two work items per thread when the batch is small */
    int ntile = (int)((Nt + 63) / 64);
    if ((size_t)B * ntile < 2 * (size_t)nth) ntile = (2 * nth + B - 1) / B;
    if ((size_t)ntile > Nt) ntile = (int)Nt;
    int tile = (int)((Nt + ntile - 1) / ntile);
    ntile = (int)((Nt + tile - 1) / tile);

    /* packed GEMM input: whole 48-row panels of the widest K */
    size_t kmax = (size_t)(D > M ? D : M), npk;
    if (kmax < (size_t)3 * P * P) kmax = (size_t)3 * P * P;
    if (!uf__mul_ok((T + 47) / 48 * 48, kmax, &npk))
        return uf__err(UF_ERR_LIMIT, "uf_forward: batch too large");
    const int L_att = req->rollout ? req->attn_block : 0; /* blocks whose mean we keep */
    size_t n_att, n_roll = 0, nn;
#if defined(__AVX512F__)
    const size_t att_per = attn_scratch((int)Nt, D / heads);
#else
    const size_t att_per = (size_t)tile * Nt;
#endif
    if (!uf__mul_ok((size_t)nth, att_per, &n_att) || !uf__mul_ok(Nt, Nt, &nn) ||
        (L_att && (!uf__mul_ok(nn, (size_t)B * L_att, &n_roll))))
        return uf__err(UF_ERR_LIMIT, "uf_forward: attention buffers too large");

    if ((st = buf_need(&s->x, T * D, "token")) || (st = buf_need(&s->h, T * D, "norm")) ||
        (st = buf_need(&s->qkv, T * 3 * D, "qkv")) || (st = buf_need(&s->ctx, T * D, "context")) ||
        (st = buf_need(&s->mlp, (T + 47) / 48 * 48 * M, "mlp")) || (st = buf_need(&s->col, B * Np * 3 * P * P, "im2col")) ||
        (st = buf_need(&s->pk, npk, "packing")) || (st = buf_need(&s->att, n_att, "attention")) ||
        (st = buf_need(&s->clsatt, (size_t)B * heads * Nt, "cls attention")) ||
        (L_att && (st = buf_need(&s->roll, n_roll, "rollout"))) ||
        (L_att && (st = buf_need(&s->rvec, (size_t)B * 2 * Nt, "rollout vector"))))
        return st;
    const float *pos;
    if ((st = pos_prepare(s, gh, gw, H, W, &pos)) != UF_OK) return st;

    float *x = s->x.p, *h = s->h.p, *qkv = s->qkv.p, *ctx = s->ctx.p, *mlp = s->mlp.p;
    const int iNt = (int)Nt, iNp = (int)Np, iT = (int)T;

    /* patch embedding: ctx[B*Np][D] = im2col(pixels) * patch_w^T + patch_b */
    im2col(nth, pixels, B, H, W, P, gh, gw, s->col.p);
    linear(nth, B * iNp, D, 3 * P * P, s->col.p, 3 * P * P, w->patch_w, w->patch_b, ctx, D,
           EPI_SET, s->pk.p);

    /* tokens = [CLS; patches] + pos, then the first block's LayerNorm */
    const uf__block_weights *bw0 = &w->blocks[0];
#pragma omp parallel for schedule(static) num_threads(nth)
    for (int t = 0; t < iT; t++) {
        const int b = t / iNt, i = t % iNt;
        const float *src = i == 0 ? w->cls : ctx + ((size_t)b * Np + i - 1) * D;
        const float *pp = pos + (size_t)i * D;
        float *xr = x + (size_t)t * D;
#pragma omp simd
        for (int d = 0; d < D; d++) xr[d] = src[d] + pp[d];
        layernorm_row(xr, bw0->ln1_w, bw0->ln1_b, w->ln_eps, h + (size_t)t * D, D);
    }

    attn_job aj = {.B = B, .Nt = iNt, .D = D, .heads = heads, .nth = nth, .tile = tile,
                   .ntile = ntile, .qkv = qkv, .ctx = ctx, .scores = s->att.p};
    int sel = 0; /* index of the next selected block output */
    for (int l = 0; l < nrun; l++) {
        const uf__block_weights *bw = &w->blocks[l];
        /* attention half */
        linear(nth, iT, 3 * D, D, h, D, bw->qkv_w, bw->qkv_b, qkv, 3 * D, EPI_SET, s->pk.p);
        aj.clsatt = (!req->rollout && req->attn_block == l + 1) ? s->clsatt.p : NULL;
        aj.mean = l < L_att ? s->roll.p + (size_t)l * nn : NULL;
        aj.mean_img = (size_t)L_att * nn;
        attention(&aj);
        linear(nth, iT, D, D, ctx, D, bw->proj_w, bw->proj_b, x, D, EPI_ACC, s->pk.p);
#pragma omp parallel for schedule(static) num_threads(nth)
        for (int t = 0; t < iT; t++)
            layernorm_row(x + (size_t)t * D, bw->ln2_w, bw->ln2_b, w->ln_eps, h + (size_t)t * D, D);
        /* MLP half */
#if defined(__AVX512F__)
        if (D <= GM_KC) { /* fc1 writes fc2's packed input directly (mlp is packed) */
            gemm_avx512(nth, iT, M, D, h, D, bw->fc1_w, bw->fc1_b, NULL, 0, EPI_GELU, s->pk.p, mlp);
            gemm_avx512(nth, iT, D, M, NULL, 0, bw->fc2_w, bw->fc2_b, x, D, EPI_ACC, mlp, NULL);
        } else
#endif
        {
            linear(nth, iT, M, D, h, D, bw->fc1_w, bw->fc1_b, mlp, M, EPI_GELU, s->pk.p);
            linear(nth, iT, D, M, mlp, M, bw->fc2_w, bw->fc2_b, x, D, EPI_ACC, s->pk.p);
        }
        /* outputs of this block, then the next block's LayerNorm */
        float *ob = (req->blocks >> l & 1) ? out->blocks + (size_t)sel++ * B * Np * D : NULL;
        const uf__block_weights *nb = l + 1 < nrun ? &w->blocks[l + 1] : NULL;
        if (ob || nb) {
#pragma omp parallel for schedule(static) num_threads(nth)
            for (int t = 0; t < iT; t++) {
                const int b = t / iNt, i = t % iNt;
                const float *xr = x + (size_t)t * D;
                if (ob && i > 0) memcpy(ob + ((size_t)b * Np + i - 1) * D, xr, (size_t)D * sizeof(float));
                if (nb) layernorm_row(xr, nb->ln1_w, nb->ln1_b, w->ln_eps, h + (size_t)t * D, D);
            }
        }
    }

    /* CLS attention of one block, mean over heads, patch columns */
    if (req->attn_block && !req->rollout) {
        for (int b = 0; b < B; b++)
            for (size_t p = 0; p < Np; p++) {
                float acc = 0;
                for (int hh = 0; hh < heads; hh++)
                    acc += s->clsatt.p[((size_t)b * heads + hh) * Nt + 1 + p];
                out->attn[(size_t)b * Np + p] = acc / (float)heads;
            }
    }
    /* rollout: r = e0^T A'_L, then r <- r A'_l for l = L-1..1, A' = (A + I) / 2 */
    if (L_att) {
#pragma omp parallel for schedule(static) num_threads(nth)
        for (int b = 0; b < B; b++) {
            float *r = s->rvec.p + (size_t)b * 2 * Nt, *r2 = r + Nt;
            const float *A = s->roll.p + (size_t)b * L_att * nn + (size_t)(L_att - 1) * nn;
            for (size_t j = 0; j < Nt; j++) r[j] = 0.5f * (A[j] + (j == 0));
            for (int l = L_att - 2; l >= 0; l--) {
                A = s->roll.p + (size_t)b * L_att * nn + (size_t)l * nn;
                for (size_t j = 0; j < Nt; j++) r2[j] = 0.5f * r[j];
                for (size_t i = 0; i < Nt; i++) {
                    const float ri = 0.5f * r[i];
                    const float *Ai = A + i * Nt;
#pragma omp simd
                    for (size_t j = 0; j < Nt; j++) r2[j] += ri * Ai[j];
                }
                float *t2 = r;
                r = r2;
                r2 = t2;
            }
            memcpy(out->attn + (size_t)b * Np, r + 1, Np * sizeof(float));
        }
    }
    /* final LayerNorm of CLS, head */
    if (req->want_cls || req->want_logits) {
        float *cls = req->want_cls ? out->cls : h; /* [B][D] */
        for (int b = 0; b < B; b++)
            layernorm_row(x + (size_t)b * Nt * D, w->norm_w, w->norm_b, w->ln_eps,
                          cls + (size_t)b * D, D);
        if (req->want_logits) {
            const int C = w->n_classes;
            for (int b = 0; b < B; b++)
                for (int c = 0; c < C; c++) {
                    const float *hw = w->head_w + (size_t)c * D, *cb = cls + (size_t)b * D;
                    float acc = 0;
#pragma omp simd reduction(+ : acc)
                    for (int d = 0; d < D; d++) acc += hw[d] * cb[d];
                    out->logits[(size_t)b * C + c] = acc + w->head_b[c];
                }
        }
    }
    return UF_OK;
}
