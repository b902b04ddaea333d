/*
 * kern_impl.h - the body of every kernel table (kern.h), written once over simd.h and
 * compiled once per instruction-set level by kern_<level>.c, which sets UF_ISA, its
 * `#pragma GCC target` and KERN_TABLE (the table's name).
 *
 * GEMM C[M][N] = A[M][K] W[N][K]^T (nn.Linear: W is [out][in]). The vector dimension is
 * the token (row of A) one: A is packed once per call into panels of MR = 3 VL rows,
 * transposed to [K][MR], and the weights W are read in place, unpacked: each k step of the
 * micro-kernel loads 3 vectors of tokens and broadcasts NR weights (NR rows of W, one per
 * output column), accumulating an MR x NR tile of C^T in 3 NR registers (AVX-512: 48 x 8
 * in 24 of 32 registers; AVX2 and SSE2: 3 VL x 4 in 12 of 16). Not packing W saves a full
 * pass over the weights per call, which matters at batch 1. The tile is transposed back
 * into row-major C in the epilogue, which also applies the bias, GELU and the residual add.
 * K is cut into KC blocks (the NR x KC weight slice stays in L1 while the task's panels
 * stream from L2); when K > KC a task keeps its C^T tiles in a buffer between the blocks and
 * the micro-kernel resumes each sum from it, so every output is one FMA chain over k, in
 * the same order at any thread count, and C is written once.
 *
 * Attention runs MR queries at a time per (image, head) with the same micro-kernel on
 * strided views of the qkv buffer: S^T = K Q^T, a softmax vectorised across queries,
 * O = S V; no [heads][Nt][Nt] tensor exists beyond one [Nt][MR] tile per thread.
 *
 * Every output element is summed in the same order whatever the thread count or batch
 * partitioning, so results are bitwise reproducible across both at a given level.
 */
#include "kernels/kern.h"
#include "kernels/simd.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define GM_MR (3 * VL)    /* tokens per panel (3 vectors)                           */
#define GM_NR (VL == 16 ? 8 : 4) /* output columns per micro-tile                    */
#define GM_KC 768         /* k block: the NR x KC weight slice stays in L1           */
#define GM_MC (64 / VL)   /* panels per task: 192 tokens, a few hundred KB in L2      */
#define GM_CTB 32768      /* floats of a task's C^T tiles kept across k blocks (L2)  */

/* ------------------------------------------------------------------------------------ */
/* exp and GELU                                                                         */
/* ------------------------------------------------------------------------------------ */

/* Coefficients of Numerical Recipes' erfc Chebyshev fit: fractional error < 1.2e-7 for
 * every z >= 0, so GELU keeps full float accuracy even for negative inputs (where it is
 * x * erfc(|x|/sqrt2) / 2 and an erf-based formula would cancel). */
static const float erfc_c[10] = {-1.26551223f, 1.00002368f, 0.37409196f,  0.09678418f,
                                 -0.18628806f, 0.27886807f, -1.13520398f, 1.48851587f,
                                 -0.82215223f, 0.17087277f};

/* e^(hi + lo) per lane, |lo| <= ~2: hi + lo = n ln2 + r with |r| <= ln2/2 (Cody-Waite; lo
 * is added after the exact reduction of hi, so a large argument given as an exact hi plus
 * a correction keeps full relative accuracy), degree-7 Taylor polynomial (truncation
 * < 1e-8 relative), scaled by 2^n exactly (vscale2 handles underflow). */
UF_AI vf vexpx(vf hi, vf lo)
{
    hi = vmin(vmax(hi, vset1(-104.0f)), vset1(88.7f));
    vf n = vround(vmul(vadd(hi, lo), vset1(1.44269504088896341f)));
    vf r = vfnma(n, vset1(0.693145751953125f), hi);
    r = vfnma(n, vset1(1.428606765330187e-06f), r);
    r = vadd(r, lo);
    vf p = vset1(1.0f / 5040);
    p = vfma(p, r, vset1(1.0f / 720));
    p = vfma(p, r, vset1(1.0f / 120));
    p = vfma(p, r, vset1(1.0f / 24));
    p = vfma(p, r, vset1(1.0f / 6));
    p = vfma(p, r, vset1(0.5f));
    p = vfma(p, r, vset1(1.0f));
    p = vfma(p, r, vset1(1.0f));
    return vscale2(p, n);
}

UF_AI vf vexp(vf x) { return vexpx(x, vzero()); }

/* Exact GELU x * Phi(x) per lane via erfc (see erfc_c). */
UF_AI vf vgelu(vf x)
{
    const vf one = vset1(1.0f), half = vset1(0.5f);
    vf z = vmul(vabs(x), vset1(0.70710678118654752f));
    vf t = vdiv(one, vfma(half, z, one));
    vf p = vset1(erfc_c[9]);
    for (int i = 8; i >= 0; i--) p = vfma(p, t, vset1(erfc_c[i]));
    /* exp(-z^2 + p) with z^2 = x^2/2 split exactly (x*x = xx + xl) so the exponent, up to
     * ~-100, loses no accuracy: relative error stays ~1e-7 in the far tail */
    const vf xx = vmul(x, x), xl = vsqerr(x, xx);
    vf e = vexpx(vmul(xx, vset1(-0.5f)), vfnma(half, xl, p));
    vf hc = vmul(vmul(half, t), e); /* erfc(z)/2 */
    /* Phi = 1 - erfc/2 for x >= 0, erfc/2 for x < 0 */
    return vmul(x, vsel_ge0(x, vsub(one, hc), hc));
}

/* ------------------------------------------------------------------------------------ */
/* The micro-kernel                                                                     */
/* ------------------------------------------------------------------------------------ */

/* ct[j][i] = (ac ? ct[j][i] : 0) + sum_k ap[k][i] * w[j*ldw + k*ldk] for j < nr, i < VL*mv
 * (ac: continue a sum over an earlier k block, in the same order as one longer call).
 * ap: [kc][MR] packed tokens; ct: [NR][MR]. GEMMs read weight rows (ldk = 1); attention
 * reads V in place (ldw = 1, ldk = row stride). Only rows j < nr and vectors v < mv of ct
 * are written. */
UF_AI void micro(const int nr, const int mv, const float *restrict ap,
                 const float *restrict w, size_t ldw, size_t ldk, int kc, float *restrict ct,
                 int ac)
{
    vf acc[GM_NR][3];
#pragma GCC unroll 8
    for (int j = 0; j < GM_NR; j++)
#pragma GCC unroll 3
        for (int v = 0; v < 3; v++)
            acc[j][v] = ac && j < nr && v < mv ? vload(ct + j * GM_MR + VL * v) : vzero();
    const float *wj[GM_NR];
#pragma GCC unroll 8
    for (int j = 0; j < GM_NR; j++) wj[j] = w + (j < nr ? (size_t)j * ldw : 0);
#define MICRO_STEP(kk)                                                                     \
    do {                                                                                   \
        vf x[3];                                                                           \
        _Pragma("GCC unroll 3") for (int v = 0; v < 3; v++) if (v < mv) x[v] =             \
            vload(ap + (size_t)(kk) * GM_MR + VL * v);                                     \
        _Pragma("GCC unroll 8") for (int j = 0; j < GM_NR; j++)                            \
        {                                                                                  \
            if (j >= nr) continue;                                                         \
            const vf b = vset1(wj[j][(size_t)(kk) * ldk]);                                 \
            _Pragma("GCC unroll 3") for (int v = 0; v < 3; v++) if (v < mv) acc[j][v] =    \
                vfma(b, x[v], acc[j][v]);                                                  \
        }                                                                                  \
    } while (0)
    int k = 0;
#if VL <= 8
    /* AVX2 and SSE2: unrolled by 4 by hand (the loop's own instructions otherwise compete
     * with the 12 FMAs for the front end), the packed tokens of the steps 8 ahead
     * prefetched once per 4 steps, whole cache lines (prefetches never fault, so reading
     * past the panel is harmless) */
    for (; k + 4 <= kc; k += 4) {
        const char *pf = (const char *)(ap + (size_t)(k + 8) * GM_MR);
#pragma GCC unroll 8
        for (int l = 0; l < 4 * GM_MR * 4; l += 64) __builtin_prefetch(pf + l, 0, 3);
        MICRO_STEP(k);
        MICRO_STEP(k + 1);
        MICRO_STEP(k + 2);
        MICRO_STEP(k + 3);
    }
#endif
    for (; k < kc; k++) MICRO_STEP(k);
#undef MICRO_STEP
#pragma GCC unroll 8
    for (int j = 0; j < GM_NR; j++)
#pragma GCC unroll 3
        for (int v = 0; v < 3; v++)
            if (j < nr && v < mv) vstore(ct + j * GM_MR + VL * v, acc[j][v]);
}

typedef void (*micro_fn)(const float *, const float *, size_t, int, float *, int);
#define GM_DEF(NR, MV)                                                                     \
    static void micro_##NR##_##MV(const float *ap, const float *w, size_t ldw, int kc,     \
                                  float *ct, int ac)                                       \
    {                                                                                      \
        micro(NR, MV, ap, w, ldw, 1, kc, ct, ac);                                          \
    }                                                                                      \
    static void microv_##NR##_##MV(const float *ap, const float *w, size_t ldk, int kc,    \
                                   float *ct, int ac)                                      \
    {                                                                                      \
        micro(NR, MV, ap, w, 1, ldk, kc, ct, ac);                                          \
    }
#define GM_DEF3(NR) GM_DEF(NR, 1) GM_DEF(NR, 2) GM_DEF(NR, 3)
#define GM_ROW(P, NR) {P##_##NR##_1, P##_##NR##_2, P##_##NR##_3}
GM_DEF3(1) GM_DEF3(2) GM_DEF3(3) GM_DEF3(4)
#if VL == 16
GM_DEF3(5) GM_DEF3(6) GM_DEF3(7) GM_DEF3(8)
#define GM_TAB(P) {GM_ROW(P, 1), GM_ROW(P, 2), GM_ROW(P, 3), GM_ROW(P, 4), \
                   GM_ROW(P, 5), GM_ROW(P, 6), GM_ROW(P, 7), GM_ROW(P, 8)}
#else
#define GM_TAB(P) {GM_ROW(P, 1), GM_ROW(P, 2), GM_ROW(P, 3), GM_ROW(P, 4)}
#endif
/* [nr-1][mv-1]: weight rows (GEMM) */
static const micro_fn micro_tab[GM_NR][3] = GM_TAB(micro);
/* [nr-1][mv-1]: consecutive columns of strided rows (attention's V) */
static const micro_fn microv_tab[GM_NR][3] = GM_TAB(microv);

/* ------------------------------------------------------------------------------------ */
/* Packing and epilogue                                                                 */
/* ------------------------------------------------------------------------------------ */

/* Pack rows r0..r0+MR-1 of A [M][K] (stride lda) into ap [K][MR], zero past row M. */
static void pack_panel(const float *A, size_t lda, int M, int K, int r0, float *ap)
{
#if UF_ISA == 3
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
#else
    /* 4 rows at a time: four sequential read streams, one 16-byte store per k */
    const int rows = M - r0 < GM_MR ? M - r0 : GM_MR;
    for (int i = 0; i < GM_MR; i += 4) {
        const float *a[4];
        int n = rows - i < 4 ? rows - i : 4;
        if (n < 0) n = 0;
        static const float zeros[1] = {0};
        for (int u = 0; u < 4; u++) a[u] = u < n ? A + (size_t)(r0 + i + u) * lda : zeros;
        const size_t inc[4] = {n > 0, n > 1, n > 2, n > 3};
        float *o = ap + i;
        for (int k = 0; k < K; k++)
            _mm_store_ps(o + (size_t)k * GM_MR, _mm_setr_ps(a[0][k * inc[0]], a[1][k * inc[1]],
                                                             a[2][k * inc[2]], a[3][k * inc[3]]));
    }
#endif
}

/* ct[j][*] = gelu?(ct[j][*] + bias[j]) for j < nr, on the first mv vectors. */
static void ct_bias_gelu(float *ct, int nr, int mv, const float *bias, int gelu)
{
    for (int j = 0; j < nr; j++) {
        const vf bj = vset1(bias ? bias[j] : 0.0f);
        for (int v = 0; v < mv; v++) {
            vf x = vadd(vload(ct + j * GM_MR + VL * v), bj);
            if (gelu) x = vgelu(x);
            vstore(ct + j * GM_MR + VL * v, x);
        }
    }
}

/* Finish an [NR][MR] C^T tile (nr columns, `rows` tokens valid) into row-major C. bias is
 * given on the last k block only; gelu means "the sum is complete here": if the tile holds
 * the whole sum (!acc) bias and GELU are applied in the tile, VL tokens per vector;
 * otherwise the tile is added to the old C while transposing (acc: residual add or a
 * later k block) and GELU follows the add. */
static void epilogue(float *ct, int nr, int rows, float *C, size_t ldc, int acc,
                     const float *bias, int gelu)
{
    if (bias || (gelu && !acc)) ct_bias_gelu(ct, nr, (rows + VL - 1) / VL, bias, gelu && !acc);
#if UF_ISA == 3
    /* one masked 8-float gather per token */
    const __m256i idx = _mm256_set_epi32(7 * GM_MR, 6 * GM_MR, 5 * GM_MR, 4 * GM_MR, 3 * GM_MR,
                                         2 * GM_MR, GM_MR, 0);
    const __mmask8 m = (__mmask8)((1u << nr) - 1);
    for (int i = 0; i < rows; i++) {
        float *c = C + (size_t)i * ldc;
        __m256 r = _mm256_mmask_i32gather_ps(_mm256_setzero_ps(), m, idx, ct + i, 4);
        if (acc) {
            r = _mm256_add_ps(r, _mm256_maskz_loadu_ps(m, c));
            if (gelu) r = _mm512_castps512_ps256(vgelu(_mm512_zextps256_ps512(r)));
        }
        _mm256_mask_storeu_ps(c, m, r);
    }
#else
    int i0 = 0;
    if (nr == GM_NR && GM_NR == 4 && !(acc && gelu)) {
        /* 4 tokens at a time: a 4 x 4 transpose in registers, 16-byte row stores (the
         * scalar loop below cost ~7% of a large GEMM at this level) */
        for (; i0 + 4 <= rows; i0 += 4) {
            __m128 r0 = _mm_load_ps(ct + i0), r1 = _mm_load_ps(ct + GM_MR + i0);
            __m128 r2 = _mm_load_ps(ct + 2 * GM_MR + i0), r3 = _mm_load_ps(ct + 3 * GM_MR + i0);
            _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
            float *c = C + (size_t)i0 * ldc;
            if (acc) {
                r0 = _mm_add_ps(r0, _mm_loadu_ps(c));
                r1 = _mm_add_ps(r1, _mm_loadu_ps(c + ldc));
                r2 = _mm_add_ps(r2, _mm_loadu_ps(c + 2 * ldc));
                r3 = _mm_add_ps(r3, _mm_loadu_ps(c + 3 * ldc));
            }
            _mm_storeu_ps(c, r0);
            _mm_storeu_ps(c + ldc, r1);
            _mm_storeu_ps(c + 2 * ldc, r2);
            _mm_storeu_ps(c + 3 * ldc, r3);
        }
    }
    for (int i = i0; i < rows; i++) {
        float *c = C + (size_t)i * ldc;
        if (!acc) {
            for (int j = 0; j < nr; j++) c[j] = ct[j * GM_MR + i];
            continue;
        }
        float r[GM_NR > VL ? GM_NR : VL] __attribute__((aligned(64))) = {0};
        for (int j = 0; j < nr; j++) r[j] = ct[j * GM_MR + i] + c[j];
        if (gelu)
            for (int v = 0; v < GM_NR; v += VL) vstore(r + v, vgelu(vload(r + v)));
        for (int j = 0; j < nr; j++) c[j] = r[j];
    }
#endif
}

/* ------------------------------------------------------------------------------------ */
/* GEMM                                                                                 */
/* ------------------------------------------------------------------------------------ */

/* See uf__kern.gemm_team in kern.h: orphaned work-sharing loops, so every thread of the
 * caller's team runs this with the same arguments; gemm below gives it a team of its own. */
static void gemm_team(int nth, int M, int N, int K, const float *A, int lda, const float *W,
                      const float *bias, float *C, int ldc, uf__epi e, float *ap, float *pout)
{
    const int npan = (M + GM_MR - 1) / GM_MR;
    const int nmb = (npan + GM_MC - 1) / GM_MC, ppm = (npan + nmb - 1) / nmb; /* panels/task */
    const int nn = (N + GM_NR - 1) / GM_NR;
    /* column chunks: at least ~8 tasks per thread, so the dynamic schedule balances the
     * threads (2048^3 at avx2 gave 11 row blocks and one chunk: 6 tasks against 5) */
    int nnb = (8 * nth + nmb - 1) / nmb;
    /* K > KC: the task's C^T tiles stay in a buffer between k blocks (the micro-kernel
     * resumes its sums from it), so C is written once, finished, instead of read and
     * rewritten per k block with strided 16-byte accesses (~15% of a 2048^3 GEMM at the
     * avx2 level); the buffer bounds the task's columns */
    const int nk = (K + GM_KC - 1) / GM_KC;
    if (nk > 1) {
        int cmax = GM_CTB / (ppm * GM_NR * GM_MR);
        if (cmax < 1) cmax = 1;
        if (nnb < (nn + cmax - 1) / cmax) nnb = (nn + cmax - 1) / cmax;
    }
    if (nnb > nn) nnb = nn;
    const int cn = (nn + nnb - 1) / nnb; /* NR-column blocks per chunk */
    nnb = (nn + cn - 1) / cn;
    const size_t pstride = (size_t)K * GM_MR; /* floats per packed panel */
    {
        if (A) { /* (A NULL: already packed, no pass and no barrier) */
#pragma omp for schedule(static)
            for (int p = 0; p < npan; p++)
                pack_panel(A, (size_t)lda, M, K, p * GM_MR, ap + p * pstride);
        }
        float ct[GM_NR * GM_MR] __attribute__((aligned(64))); /* [NR][MR] C^T tile */
        float *ctb = NULL; /* [ppm][cn][NR][MR] when K > KC (if the allocation fails: C
                              accumulated per k block instead, the slower way) */
        if (nk > 1 &&
            posix_memalign((void **)&ctb, 64, (size_t)ppm * cn * GM_NR * GM_MR * sizeof(float)))
            ctb = NULL;
#pragma omp for schedule(dynamic, 1)
        for (int t = 0; t < nmb * nnb; t++) {
            const int pb = (t / nnb) * ppm, pe = pb + ppm < npan ? pb + ppm : npan;
            const int jb = (t % nnb) * cn, je = jb + cn < nn ? jb + cn : nn;
            for (int k0 = 0; k0 < K; k0 += GM_KC) {
                const int kc = K - k0 < GM_KC ? K - k0 : GM_KC, last = k0 + kc == K;
                for (int jj = jb; jj < je; jj++) {
                    const int n0 = jj * GM_NR, nr = N - n0 < GM_NR ? N - n0 : GM_NR;
                    const float *wp = W + (size_t)n0 * K + k0;
                    for (int p = pb; p < pe; p++) {
                        const int m0 = p * GM_MR, rows = M - m0 < GM_MR ? M - m0 : GM_MR;
                        const int mv = (rows + VL - 1) / VL;
                        float *tl = ctb ? ctb + ((size_t)(p - pb) * cn + (jj - jb)) * GM_NR * GM_MR
                                        : ct;
                        micro_tab[nr - 1][mv - 1](ap + p * pstride + (size_t)k0 * GM_MR, wp,
                                                  (size_t)K, kc, tl, ctb && k0 > 0);
                        if (ctb && !last) continue;
                        if (pout) { /* whole sum: finish in place, copy packed */
                            ct_bias_gelu(tl, nr, mv, bias ? bias + n0 : NULL, e == UF__EPI_GELU);
                            float *o = pout + ((size_t)p * N + n0) * GM_MR;
                            for (int j = 0; j < nr; j++)
                                for (int v = 0; v < mv; v++)
                                    vstore(o + j * GM_MR + VL * v, vload(tl + j * GM_MR + VL * v));
                            continue;
                        }
                        epilogue(tl, nr, rows, C + (size_t)m0 * ldc + n0, (size_t)ldc,
                                 (!ctb && k0 > 0) || e == UF__EPI_ACC,
                                 last && bias ? bias + n0 : NULL, last && e == UF__EPI_GELU);
                    }
                }
            }
        }
        free(ctb);
    }
}

/* See uf__kern.gemm in kern.h. (With nth 1 the region is inactive, a team of the calling
 * thread alone, so gemm_team's loops bind to it even inside a caller's region.) */
static void gemm(int nth, int M, int N, int K, const float *A, int lda, const float *W,
                 const float *bias, float *C, int ldc, uf__epi e, float *ap, float *pout)
{
#pragma omp parallel num_threads(nth) if (nth > 1)
    gemm_team(nth, M, N, K, A, lda, W, bias, C, ldc, e, ap, pout);
}

/* ------------------------------------------------------------------------------------ */
/* Attention                                                                            */
/* ------------------------------------------------------------------------------------ */

/* Floats of per-thread attention scratch: Q^T [hd][MR] and S^T [Nt][MR], plus padding to
 * a multiple of 16 floats. */
static size_t attn_scratch(int Nt, int hd)
{
    return ((size_t)GM_MR * ((size_t)hd + Nt) + 31) / 16 * 16;
}

/* Attention with the GEMM micro-kernel, MR queries at a time, vector along queries:
 *   S^T[key][q] = K Q^T (weights = K rows, read in place), softmax along keys done
 *   VL queries per vector (no horizontal reductions), O^T = V^T S^T with V read in
 *   place, normalised by the row sums and transposed into ctx.
 * Work items are (image, head, query tile), or (image, query tile) looping over heads
 * when head-mean matrices are kept (so each thread owns the rows it accumulates). */
static void attention_team(const uf__attn_job *j)
{
    const int Nt = j->Nt, D = j->D, H = j->heads, hd = D / H;
    const size_t ld = 3 * (size_t)D;
    const float scale = 1.0f / sqrtf((float)hd), invh = 1.0f / (float)H;
    const int nqt = (Nt + GM_MR - 1) / GM_MR;
    const int per_head = j->mean == NULL; /* one head per work item */
    const int items = j->B * nqt * (per_head ? H : 1);
    const size_t scr = attn_scratch(Nt, hd);
#pragma omp for schedule(dynamic, 1)
    for (int it = 0; it < items; it++) {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        float *qp = j->scores + (size_t)tid * scr; /* [hd][MR]  (64-byte aligned) */
        float *st = qp + (size_t)hd * GM_MR;       /* [Nt][MR] */
        float ct[GM_NR * GM_MR] __attribute__((aligned(64)));
        int b, h0, h1;
        if (per_head) {
            b = it / (nqt * H);
            h0 = it / nqt % H;
            h1 = h0 + 1;
        } else {
            b = it / nqt;
            h0 = 0;
            h1 = H;
        }
        const int q0 = (it % nqt) * GM_MR, nq = Nt - q0 < GM_MR ? Nt - q0 : GM_MR;
        const int mv = (nq + VL - 1) / VL;
        const float *img = j->qkv + (size_t)b * Nt * ld; /* [Nt][3D] */
        for (int h = h0; h < h1; h++) {
            /* S^T = K Q^T, NR keys per micro-tile, with the running max per query taken
             * while the tile is still in L1 */
            pack_panel(img + (size_t)q0 * ld + (size_t)h * hd, ld, nq, hd, 0, qp);
            const float *kh = img + D + (size_t)h * hd;
            vf mx[3] = {vset1(-INFINITY), vset1(-INFINITY), vset1(-INFINITY)};
            for (int k0 = 0; k0 < Nt; k0 += GM_NR) {
                const int nr = Nt - k0 < GM_NR ? Nt - k0 : GM_NR;
                float *sk = st + (size_t)k0 * GM_MR;
                micro_tab[nr - 1][mv - 1](qp, kh + (size_t)k0 * ld, ld, hd, sk, 0);
                for (int r = 0; r < nr; r++)
                    for (int v = 0; v < mv; v++)
                        mx[v] = vmax(mx[v], vload(sk + r * GM_MR + VL * v));
            }
            /* softmax over keys of scale * S, VL queries per vector */
            vf inv[3];
            const vf vs = vset1(scale);
            for (int v = 0; v < mv; v++) {
                vf sum = vzero();
                for (int k = 0; k < Nt; k++) {
                    float *p = st + (size_t)k * GM_MR + VL * v;
                    vf ex = vexp(vmul(vsub(vload(p), mx[v]), vs));
                    vstore(p, ex);
                    sum = vadd(sum, ex);
                }
                inv[v] = vdiv(vset1(1.0f), sum);
            }
            /* probabilities wanted as outputs: the CLS query row, head means */
            if (j->clsatt && q0 == 0) {
                const float i0 = vfirst(inv[0]);
                float *o = j->clsatt + ((size_t)b * H + h) * Nt;
                for (int k = 0; k < Nt; k++) o[k] = st[(size_t)k * GM_MR] * i0;
            }
            if (j->mean) {
                float iv[GM_MR];
                for (int v = 0; v < mv; v++) vstoreu(iv + VL * v, vmul(inv[v], vset1(invh)));
                for (int i = 0; i < nq; i++) {
                    float *m = j->mean + (size_t)b * j->mean_img + (size_t)(q0 + i) * Nt;
                    if (h == 0)
                        for (int k = 0; k < Nt; k++) m[k] = st[(size_t)k * GM_MR + i] * iv[i];
                    else
                        for (int k = 0; k < Nt; k++) m[k] += st[(size_t)k * GM_MR + i] * iv[i];
                }
            }
            /* O^T = V^T S^T, NR value dims per micro-tile, then normalise and store */
            const float *vh = img + 2 * (size_t)D + (size_t)h * hd;
            for (int d0 = 0; d0 < hd; d0 += GM_NR) {
                const int nr = hd - d0 < GM_NR ? hd - d0 : GM_NR;
                microv_tab[nr - 1][mv - 1](st, vh + d0, ld, Nt, ct, 0);
                for (int r = 0; r < nr; r++)
                    for (int v = 0; v < mv; v++)
                        vstore(ct + r * GM_MR + VL * v,
                               vmul(vload(ct + r * GM_MR + VL * v), inv[v]));
                epilogue(ct, nr, nq, j->ctx + ((size_t)b * Nt + q0) * D + (size_t)h * hd + d0,
                         (size_t)D, 0, NULL, 0);
            }
        }
    }
}

static void attention(const uf__attn_job *j)
{
#pragma omp parallel num_threads(j->nth) if (j->nth > 1)
    attention_team(j);
}

/* ------------------------------------------------------------------------------------ */
/* Coreset distance                                                                     */
/* ------------------------------------------------------------------------------------ */

typedef float v16f __attribute__((vector_size(64)));

/* Squared distance in a fixed summation order: two 16-lane accumulators over 32-float
 * steps, a 16-float step, lanes summed in order, then the scalar tail. GCC's generic
 * vectors split into as many registers as the level has, with the same lane order, and
 * -std=c11 keeps multiplies and adds separate: the result is bit-identical at every
 * level, so the coreset's choices do not depend on the CPU. */
static float dist2(const float *a, const float *b, int d)
{
    v16f acc0 = {0}, acc1 = {0};
    int c = 0;
    for (; c + 32 <= d; c += 32) {
        v16f x0, y0, x1, y1;
        memcpy(&x0, a + c, sizeof x0);
        memcpy(&y0, b + c, sizeof y0);
        memcpy(&x1, a + c + 16, sizeof x1);
        memcpy(&y1, b + c + 16, sizeof y1);
        x0 -= y0;
        x1 -= y1;
        acc0 += x0 * x0;
        acc1 += x1 * x1;
    }
    for (; c + 16 <= d; c += 16) {
        v16f x0, y0;
        memcpy(&x0, a + c, sizeof x0);
        memcpy(&y0, b + c, sizeof y0);
        x0 -= y0;
        acc0 += x0 * x0;
    }
    acc0 += acc1;
    float s = 0;
    for (int u = 0; u < 16; u++) s += acc0[u];
    for (; c < d; c++) {
        float t = a[c] - b[c];
        s += t * t;
    }
    return s;
}

const uf__kern KERN_TABLE = {
    .name = KERN_NAME,
    .mr = GM_MR,
    .kc = GM_KC,
    .gemm = gemm,
    .gemm_team = gemm_team,
    .pack = pack_panel,
#ifdef KERN_GEMM_BF16
    .gemm_bf16_team = KERN_GEMM_BF16,
#endif
    .attn_scratch = attn_scratch,
    .attention = attention,
    .attention_team = attention_team,
    .dist2 = dist2,
};
