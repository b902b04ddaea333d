/*
 * kern_bf16.c - the kernel table for AVX-512 CPUs with AVX512_BF16 (Cooper Lake, Sapphire
 * Rapids, Zen 4 and later): the avx512 FP32 kernels plus gemm_bf16, the GEMM of backbones
 * set to BF16 (uf_backbone_set_precision, model/bf16.c).
 *
 * Why a kernel of its own: the ViT's Linear layers are most of a forward, and BF16 halves
 * the weight bytes and packs more multiply-adds per instruction: vdpbf16ps 32 where
 * vfmadd231ps does 16, AMX's tdpbf16ps 8192. Measured on a Sapphire Rapids (2 cores, loaded):
 * vdpbf16ps alone reaches only 0.6-0.8x our FP32 GEMM (it issues at about half the rate of
 * the two FMA ports), AMX tiles 4-14x; so AMX is used whenever Linux grants it, vdpbf16ps
 * for the shapes AMX does not take and on CPUs without AMX (Cooper Lake, Zen 4). On Zen 4
 * (2 cores, loaded, 2026-12-02) vdpbf16ps is worth 1.7-2.0x our FP32 GEMM in thread CPU time
 * (~180 GFLOP/s per core against ~95), see gemm_dp below. The FP32 kernels come from kern_impl.h (included
 * below, so the FP32 half of this level is the avx512 one, compiled again with the BF16
 * target added) and gemm_bf16 reuses its packing and epilogue.
 *
 * gemm_bf16 keeps gemm's data (kern_impl.h): panels of MR = 48 tokens, weights read in
 * place, C^T tiles [columns][48]; on AMX the tiles come from tdpbf16ps (below), else from a
 * vdpbf16ps micro-kernel with the token as the vector dimension (gemm_dp). Attention stays
 * FP32: a vdpbf16ps P V (tried 2026-12-02: ViT-B/8 BF16/FP32 1.62x -> ~1.69x in thread CPU
 * time) moved BF16 scores away from the emulation's, which has no BF16 attention
 * (tests/test_detector_cli.sh: within 1e-3). vdpbf16ps sums pairs of adjacent
 * BF16 elements of each 32-bit lane, so the pair is two consecutive k: a packed FP32 panel
 * [K][48] is converted in place to [K/2][48][2] BF16 (round to nearest even, vcvtne2ps2bf16,
 * then an interleave), and the weights, BF16 [N][K2] row-major, give the matching pair
 * (w[n][k], w[n][k+1]) as one 32-bit broadcast. Sums, bias, GELU and the residual add stay
 * FP32. Products of BF16 values are exact in FP32, so the result differs from the FP32
 * GEMM on BF16-rounded inputs (model/bf16.c's emulation) only by the summation order.
 */
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,avx512bf16")
#define UF_ISA 3
#define KERN_TABLE uf__kern_avx512bf16
#define KERN_NAME "avx512bf16"
#include "kernels/kern.h"
static void gemm_bf16_team(int nth, int M, int N, int K, const float *A, int lda,
                           const uint16_t *W, const float *bias, float *C, int ldc, uf__epi e,
                           float *ap, float *pout);
#define KERN_GEMM_BF16 gemm_bf16_team
#include "kernels/kern_impl.h"

#include <stdlib.h>

/* A packed FP32 panel [K][48] in place into BF16 pairs [ceil(K/2)][48][2] (an odd K gets a
 * zero partner). The pairs of step kp overwrite FP32 row kp, read at step kp/2 or earlier. */
static void panel_to_bf16(float *ap, int K)
{
    /* vcvtne2ps2bf16 gives row k in elements 0..15 and row k+1 in 16..31: interleave */
    const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9,
                                         24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1,
                                         16, 0);
    for (int kp = 0; kp < (K + 1) / 2; kp++) {
        const float *r0 = ap + (size_t)2 * kp * GM_MR, *r1 = r0 + GM_MR;
        __m512i o[3];
        for (int v = 0; v < 3; v++) {
            const __m512 x1 = 2 * kp + 1 < K ? _mm512_load_ps(r1 + 16 * v) : _mm512_setzero_ps();
            o[v] = _mm512_permutexvar_epi16(
                idx, (__m512i)_mm512_cvtne2ps_pbh(x1, _mm512_load_ps(r0 + 16 * v)));
        }
        for (int v = 0; v < 3; v++) _mm512_store_si512(ap + (size_t)kp * GM_MR + 16 * v, o[v]);
    }
}

/* ct[j][i] = sum_k ap[k][i] * w[j*ldw + k] for j < nr, i < 16*mv, over kc2 k pairs.
 * ap: [kc2][48][2] BF16 pairs; w: BF16 rows; ct: [NR][MR] FP32. */
UF_AI void micro_bf(const int nr, const int mv, const uint16_t *restrict ap,
                    const uint16_t *restrict w, size_t ldw, int kc2, float *restrict ct)
{
    __m512 acc[GM_NR][3];
#pragma GCC unroll 8
    for (int j = 0; j < GM_NR; j++)
#pragma GCC unroll 3
        for (int v = 0; v < 3; v++) acc[j][v] = _mm512_setzero_ps();
    const uint16_t *wj[GM_NR];
#pragma GCC unroll 8
    for (int j = 0; j < GM_NR; j++) wj[j] = w + (j < nr ? (size_t)j * ldw : 0);
    for (int kp = 0; kp < kc2; kp++) {
        __m512bh x[3];
#pragma GCC unroll 3
        for (int v = 0; v < 3; v++)
            if (v < mv) x[v] = (__m512bh)_mm512_load_si512(ap + (size_t)kp * 2 * GM_MR + 32 * v);
#pragma GCC unroll 8
        for (int j = 0; j < GM_NR; j++) {
            if (j >= nr) continue;
            int32_t pair;
            memcpy(&pair, wj[j] + 2 * (size_t)kp, sizeof pair);
            const __m512bh b = (__m512bh)_mm512_set1_epi32(pair);
#pragma GCC unroll 3
            for (int v = 0; v < 3; v++)
                if (v < mv) acc[j][v] = _mm512_dpbf16_ps(acc[j][v], x[v], b);
        }
    }
#pragma GCC unroll 8
    for (int j = 0; j < GM_NR; j++)
#pragma GCC unroll 3
        for (int v = 0; v < 3; v++)
            if (j < nr && v < mv) _mm512_store_ps(ct + j * GM_MR + 16 * v, acc[j][v]);
}

typedef void (*micro_bf_fn)(const uint16_t *, const uint16_t *, size_t, int, float *);
#define BF_DEF(NR, MV)                                                                     \
    static void micro_bf_##NR##_##MV(const uint16_t *ap, const uint16_t *w, size_t ldw,    \
                                     int kc2, float *ct)                                   \
    {                                                                                      \
        micro_bf(NR, MV, ap, w, ldw, kc2, ct);                                             \
    }
#define BF_DEF3(NR) BF_DEF(NR, 1) BF_DEF(NR, 2) BF_DEF(NR, 3)
BF_DEF3(1) BF_DEF3(2) BF_DEF3(3) BF_DEF3(4) BF_DEF3(5) BF_DEF3(6) BF_DEF3(7) BF_DEF3(8)
#define BF_ROW(NR) {micro_bf_##NR##_1, micro_bf_##NR##_2, micro_bf_##NR##_3}
/* [nr-1][mv-1]: nr weight rows, mv 16-token vectors */
static const micro_bf_fn micro_bf_tab[GM_NR][3] = {BF_ROW(1), BF_ROW(2), BF_ROW(3), BF_ROW(4),
                                                   BF_ROW(5), BF_ROW(6), BF_ROW(7), BF_ROW(8)};

/* The same product as amx_tile32 below with vdpbf16ps: ct[j][i] (row stride 48) for the
 * ncol <= 32 columns of weight rows w (stride ldw) and the 16 * nb tokens of blocks b. */
static void dp_tile32(int nb, int K, int ncol, const uint16_t *w, size_t ldw,
                      const uint16_t *const b[2], float *ct)
{
    const int kc2 = (K + 1) / 2, joined = nb == 2 && b[1] == b[0] + 32; /* one panel */
    for (int q = 0; 8 * q < ncol; q++) {
        const int nr = ncol - 8 * q < 8 ? ncol - 8 * q : 8;
        const uint16_t *wq = w + (size_t)8 * q * ldw;
        float *cq = ct + (size_t)8 * q * GM_MR;
        if (joined) {
            micro_bf_tab[nr - 1][1](b[0], wq, ldw, kc2, cq);
            continue;
        }
        for (int i = 0; i < nb; i++) micro_bf_tab[nr - 1][0](b[i], wq, ldw, kc2, cq + 16 * i);
    }
}

/* Pack (A given) and convert every panel of ap to BF16 pairs, shared by the calling team
 * (ends with its barrier). */
static void prepare_panels(int npan, const float *A, int lda, int M, int K, float *ap)
{
    const size_t pstride = (size_t)K * GM_MR;
#pragma omp for schedule(static)
    for (int p = 0; p < npan; p++) {
        if (A) pack_panel(A, (size_t)lda, M, K, p * GM_MR, ap + p * pstride);
        panel_to_bf16(ap + p * pstride, K);
    }
}

/* ------------------------------------------------------------------------------------ */
/* AMX                                                                                  */
/* ------------------------------------------------------------------------------------ */

/* AMX tiles (Sapphire Rapids and later): tdpbf16ps multiplies a 16 x 32 BF16 tile by a
 * 16 x 16 pair tile into 16 x 16 FP32 sums, 8192 multiply-adds per instruction. The data
 * need no new layout: the A tile is 16 weight rows read in place (W [N][K2] row-major), the
 * B tile 16 tokens of a converted panel ([K/2][48][2], row stride 192 bytes), so the C tile
 * is C^T [16 columns][16 tokens], the tile gemm's epilogue takes. Linux hands the tile
 * registers to a process only after arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA), a
 * process-wide change (it enlarges every thread's signal frames) that a library must not
 * make behind its host's back: the library only checks whether the process already holds
 * the permission (ARCH_GET_XCOMP_PERM); uf_enable_amx() (the CLI calls it at start) asks
 * for it. Without it, or with UF_AMX=0, or on a kernel that refuses, vdpbf16ps is used. */

/* Palette 1, tiles 0-7 all 16 rows x 64 bytes: 0-3 C, 4-5 weights, 6-7 tokens. */
typedef struct amx_cfg {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} amx_cfg;

/* A constant in memory: GCC 12's _tile_loadconfig tells the compiler it reads only 8 bytes,
 * so a configuration built on the stack could lose its other stores. */
static const amx_cfg amx_config __attribute__((aligned(64))) = {
    .palette = 1,
    .colsb = {64, 64, 64, 64, 64, 64, 64, 64},
    .rows = {16, 16, 16, 16, 16, 16, 16, 16},
};

__attribute__((target("amx-tile"))) static void amx_begin(void) { _tile_loadconfig(&amx_config); }

__attribute__((target("amx-tile"))) static void amx_end(void) { _tile_release(); }

/* ct[j][i] (row stride 48) = sum_k w[j][k] x_i[k] for 32 columns j (weight rows w, stride
 * ldw elements) and 16 * nb tokens i (b[0], b[1]: 16-token blocks of converted panels). */
__attribute__((target("amx-tile,amx-bf16"))) static void amx_tile32(int nb, int K,
                                                                     const uint16_t *w, size_t ldw,
                                                                     const uint16_t *const b[2],
                                                                     float *ct)
{
    const size_t lw = ldw * sizeof(uint16_t), lb = 2 * GM_MR * sizeof(uint16_t);
    const uint16_t *w1 = w + 16 * ldw;
    _tile_zero(0);
    _tile_zero(1);
    if (nb == 2) {
        _tile_zero(2);
        _tile_zero(3);
        for (int k = 0; k < K; k += 32) {
            _tile_loadd(4, w + k, lw);
            _tile_loadd(5, w1 + k, lw);
            _tile_loadd(6, b[0] + (size_t)k * GM_MR, lb);
            _tile_loadd(7, b[1] + (size_t)k * GM_MR, lb);
            _tile_dpbf16ps(0, 4, 6);
            _tile_dpbf16ps(1, 5, 6);
            _tile_dpbf16ps(2, 4, 7);
            _tile_dpbf16ps(3, 5, 7);
        }
        _tile_stored(2, ct + 16, GM_MR * sizeof(float));
        _tile_stored(3, ct + 16 * GM_MR + 16, GM_MR * sizeof(float));
    } else {
        for (int k = 0; k < K; k += 32) {
            _tile_loadd(4, w + k, lw);
            _tile_loadd(5, w1 + k, lw);
            _tile_loadd(6, b[0] + (size_t)k * GM_MR, lb);
            _tile_dpbf16ps(0, 4, 6);
            _tile_dpbf16ps(1, 5, 6);
        }
    }
    _tile_stored(0, ct, GM_MR * sizeof(float));
    _tile_stored(1, ct + 16 * GM_MR, GM_MR * sizeof(float));
}

/* ------------------------------------------------------------------------------------ */
/* GEMM                                                                                 */
/* ------------------------------------------------------------------------------------ */

#define BF_TB 12 /* 16-token blocks per task: 192 tokens */

/* uf__kern.gemm_bf16_team on AMX tiles (amx: K and N multiples of 32) or vdpbf16ps, run by
 * every thread of the caller's team (orphaned work-sharing loops). Tasks: 192
 * tokens x a chunk of 32-column groups (about 4 tasks per thread); each tile of 32 columns
 * x 32 tokens is summed over all of K, then finished 8 columns at a time by gemm's
 * epilogue (kern_impl.h) or copied into fc2's packed panels (pout). */
static void gemm_tiles(int amx, int nth, int M, int N, int K, const float *A, int lda,
                       const uint16_t *W, const float *bias, float *C, int ldc, uf__epi e,
                       float *ap, float *pout)
{
    const int npan = (M + GM_MR - 1) / GM_MR, nblk = (M + 15) / 16;
    const int ntb = (nblk + BF_TB - 1) / BF_TB, ng = (N + 31) / 32;
    int ncc = (4 * nth + ntb - 1) / ntb;
    if (ncc > ng) ncc = ng;
    const int cg = (ng + ncc - 1) / ncc; /* 32-column groups per chunk */
    ncc = (ng + cg - 1) / cg;
    const size_t pstride = (size_t)K * GM_MR, K2 = (size_t)(K + 1) / 2 * 2;
    {
        prepare_panels(npan, A, lda, M, K, ap);
        float ct[32 * GM_MR] __attribute__((aligned(64))); /* C^T [32 columns][48] */
        if (amx) amx_begin();
#pragma omp for schedule(dynamic, 1)
        for (int t = 0; t < ntb * ncc; t++) {
            const int b0 = (t / ncc) * BF_TB, b1 = b0 + BF_TB < nblk ? b0 + BF_TB : nblk;
            const int g0 = (t % ncc) * cg, g1 = g0 + cg < ng ? g0 + cg : ng;
            for (int g = g0; g < g1; g++) {
                const int n0 = 32 * g, ncol = N - n0 < 32 ? N - n0 : 32;
                for (int bk = b0; bk < b1; bk += 2) {
                    const int nb = bk + 1 < b1 ? 2 : 1, m0 = 16 * bk;
                    const int rows = M - m0 < 16 * nb ? M - m0 : 16 * nb;
                    const uint16_t *bp[2] = {NULL, NULL};
                    for (int i = 0; i < nb; i++) {
                        const int tok = m0 + 16 * i;
                        bp[i] = (const uint16_t *)(ap + (size_t)(tok / GM_MR) * pstride) +
                                2 * (tok % GM_MR);
                    }
                    if (amx) amx_tile32(nb, K, W + (size_t)n0 * K2, K2, bp, ct);
                    else dp_tile32(nb, K, ncol, W + (size_t)n0 * K2, K2, bp, ct);
                    for (int q = 0; 8 * q < ncol; q++) { /* 8 columns at a time */
                        const int nr = ncol - 8 * q < 8 ? ncol - 8 * q : 8;
                        float *cq = ct + (size_t)q * GM_NR * GM_MR;
                        const float *bq = bias ? bias + n0 + GM_NR * q : NULL;
                        if (!pout) {
                            epilogue(cq, nr, rows, C + (size_t)m0 * ldc + n0 + GM_NR * q,
                                     (size_t)ldc, e == UF__EPI_ACC, bq, e == UF__EPI_GELU);
                            continue;
                        }
                        ct_bias_gelu(cq, nr, nb, bq, e == UF__EPI_GELU);
                        for (int i = 0; i < nb; i++) { /* into fc2's packed panels */
                            const int tok = m0 + 16 * i;
                            float *o = pout + ((size_t)(tok / GM_MR) * N + n0 + GM_NR * q) * GM_MR +
                                       tok % GM_MR;
                            for (int j = 0; j < nr; j++)
                                vstore(o + (size_t)j * GM_MR, vload(cq + j * GM_MR + 16 * i));
                        }
                    }
                }
            }
        }
        if (amx) amx_end();
    }
}

/* The vdpbf16ps GEMM (no AMX): gemm_team's loops (kern_impl.h) on the converted panels,
 * whole 48-token panels per micro-kernel call (8 columns x 3 vectors: 24 accumulators, 3
 * token loads and 8 weight-pair broadcasts per 24 vdpbf16ps), each sum over all of K.
 * Tasks: GM_MC panels x a chunk of 8-column blocks, about 4 per thread; within a task the
 * 8 weight rows of a block stay in cache while its panels stream. The 16-token tiles of
 * gemm_tiles left a third of the calls at one vector (a 16-token block whose partner lies
 * in the next panel): 9 loads per 8 vdpbf16ps, load-bound on Zen 4 (measured 2026-12-02,
 * one thread's CPU time on a loaded Zen 4, ViT-B/16 shapes: whole-panel calls took the GEMM
 * from 1.63-1.85x to 1.73-1.97x our FP32 GEMM, ~90 % of vdpbf16ps's peak). */
static void gemm_dp(int nth, int M, int N, int K, const float *A, int lda, const uint16_t *W,
                    const float *bias, float *C, int ldc, uf__epi e, float *ap, float *pout)
{
    const int npan = (M + GM_MR - 1) / GM_MR;
    const int nmb = (npan + GM_MC - 1) / GM_MC, ppm = (npan + nmb - 1) / nmb; /* panels/task */
    const int nn = (N + GM_NR - 1) / GM_NR;
    int nnb = (4 * nth + nmb - 1) / nmb; /* column chunks: ~4 tasks per thread */
    if (nnb > nn) nnb = nn;
    const int cn = (nn + nnb - 1) / nnb; /* NR-column blocks per chunk */
    nnb = (nn + cn - 1) / cn;
    const size_t pstride = (size_t)K * GM_MR, K2 = (size_t)(K + 1) / 2 * 2;
    const int kc2 = (K + 1) / 2;
    prepare_panels(npan, A, lda, M, K, ap);
    float ct[GM_NR * GM_MR] __attribute__((aligned(64))); /* [NR][MR] C^T tile */
#pragma omp for schedule(dynamic, 1)
    for (int t = 0; t < nmb * nnb; t++) {
        const int pb = (t / nnb) * ppm, pe = pb + ppm < npan ? pb + ppm : npan;
        const int jb = (t % nnb) * cn, je = jb + cn < nn ? jb + cn : nn;
        for (int jj = jb; jj < je; jj++) {
            const int n0 = jj * GM_NR, nr = N - n0 < GM_NR ? N - n0 : GM_NR;
            const uint16_t *wp = W + (size_t)n0 * K2;
            const float *bq = bias ? bias + n0 : NULL;
            for (int p = pb; p < pe; p++) {
                const int m0 = p * GM_MR, rows = M - m0 < GM_MR ? M - m0 : GM_MR;
                const int mv = (rows + VL - 1) / VL;
                micro_bf_tab[nr - 1][mv - 1]((const uint16_t *)(ap + p * pstride), wp, K2, kc2,
                                             ct);
                if (pout) { /* finish in place, copy into fc2's packed panels */
                    ct_bias_gelu(ct, nr, mv, bq, e == UF__EPI_GELU);
                    float *o = pout + ((size_t)p * N + n0) * GM_MR;
                    for (int j = 0; j < nr; j++)
                        for (int v = 0; v < mv; v++)
                            vstore(o + j * GM_MR + VL * v, vload(ct + j * GM_MR + VL * v));
                    continue;
                }
                epilogue(ct, nr, rows, C + (size_t)m0 * ldc + n0, (size_t)ldc, e == UF__EPI_ACC,
                         bq, e == UF__EPI_GELU);
            }
        }
    }
}

void uf__gemm_bf16_dp(int nth, int M, int N, int K, const float *A, int lda, const uint16_t *W,
                      const float *bias, float *C, int ldc, uf__epi e, float *ap, float *pout)
{
    gemm_dp(nth, M, N, K, A, lda, W, bias, C, ldc, e, ap, pout);
}

/* See uf__kern.gemm_bf16_team in kern.h: AMX tiles when the OS grants them and the shape fits
 * (K, N multiples of 32: every Linear layer of the usual ViTs, the patch embedding of patch
 * 16 and 8), vdpbf16ps otherwise. */
static void gemm_bf16_team(int nth, int M, int N, int K, const float *A, int lda,
                           const uint16_t *W, const float *bias, float *C, int ldc, uf__epi e,
                           float *ap, float *pout)
{
    if (K % 32 == 0 && N % 32 == 0 && uf__amx_ready())
        gemm_tiles(1, nth, M, N, K, A, lda, W, bias, C, ldc, e, ap, pout);
    else
        gemm_dp(nth, M, N, K, A, lda, W, bias, C, ldc, e, ap, pout);
}
