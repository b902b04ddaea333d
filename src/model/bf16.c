/*
 * bf16.c - BF16 weights for a backbone (uf_backbone_set_precision) and the GEMM entry the
 * forward calls with them: native vdpbf16ps (kernels/kern_bf16.c) on CPUs with
 * AVX512_BF16, an emulation on the FP32 GEMM everywhere else.
 *
 * Why an emulation rather than a refusal: a model fitted in BF16 must score on any x86-64
 * (an AVX2 line PC), with the numbers it was fitted with. Rounding the weights (once) and
 * the GEMM inputs (per call) to BF16 and multiplying them in FP32 gives exact products,
 * as vdpbf16ps does; only the order of the FP32 sums differs from the native path.
 */
#include "model/bf16.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

uint16_t uf__bf16_round(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7F800000u) == 0x7F800000u && (u & 0x007FFFFFu)) /* NaN: quiet, keep sign */
        return (uint16_t)((u >> 16) | 0x0040u);
    if ((u & 0x7F800000u) == 0) return (uint16_t)((u >> 16) & 0x8000u); /* zero, subnormal */
    u += 0x7FFFu + ((u >> 16) & 1u); /* to nearest, ties to even (overflow gives Inf) */
    return (uint16_t)(u >> 16);
}

float uf__bf16_float(uint16_t b)
{
    const uint32_t u = (uint32_t)b << 16;
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* ------------------------------------------------------------------------------------ */
/* Weights                                                                              */
/* ------------------------------------------------------------------------------------ */

/* Bytes of one converted [N][K] layer, rounded up to 64. */
static size_t layer_bytes(int native, int N, int K)
{
    const size_t per = native ? (size_t)(K + 1) / 2 * 2 * sizeof(uint16_t) : (size_t)K * sizeof(float);
    return ((size_t)N * per + 63) & ~(size_t)63;
}

/* Convert W [N][K] into dst (layer_bytes(native, N, K) bytes). */
static void convert_layer(int native, const float *W, int N, int K, void *dst)
{
    const size_t K2 = (size_t)(K + 1) / 2 * 2;
    const int nth = uf_get_threads();
#pragma omp parallel for schedule(static) num_threads(nth) if (nth > 1 && (size_t)N * K > 65536)
    for (int n = 0; n < N; n++) {
        const float *w = W + (size_t)n * K;
        if (native) {
            uint16_t *o = (uint16_t *)dst + (size_t)n * K2;
            for (int k = 0; k < K; k++) o[k] = uf__bf16_round(w[k]);
            if (K2 > (size_t)K) o[K] = 0;
        } else {
            float *o = (float *)dst + (size_t)n * K;
            for (int k = 0; k < K; k++) o[k] = uf__bf16_float(uf__bf16_round(w[k]));
        }
    }
}

uf_status uf__lp_new(const uf__vit_weights *w, const uf__kern *kn, uf__lp **out)
{
    *out = NULL;
    const int native = kn->gemm_bf16_team != NULL, D = w->dim, M = w->mlp_dim;
    const int M1 = w->swiglu ? 2 * M : M; /* fc1 rows: SwiGLU's fc1 holds both halves */
    /* sizes are bounded by the FP32 weights already in memory: no overflow */
    const size_t per_block = layer_bytes(native, 3 * D, D) + layer_bytes(native, D, D) +
                             layer_bytes(native, M1, D) + layer_bytes(native, D, M);
    uf__lp *lp = calloc(1, sizeof *lp);
    uf__lp_block *blocks = calloc((size_t)w->depth, sizeof *blocks);
    void *mem = NULL;
    if (!lp || !blocks ||
        posix_memalign(&mem, 64, (size_t)w->depth * per_block) != 0 || !mem) {
        free(lp);
        free(blocks);
        return uf__err(UF_ERR_NOMEM, "uf_backbone_set_precision: out of memory for the BF16 "
                                     "weights");
    }
    char *p = mem;
    lp->native = native;
    lp->mem = mem;
    lp->blocks = blocks;
    for (int l = 0; l < w->depth; l++) {
        const uf__block_weights *bw = &w->blocks[l];
        const struct { const float *src; int N, K; const void **dst; } layers[4] = {
            {bw->qkv_w, 3 * D, D, &blocks[l].qkv},
            {bw->proj_w, D, D, &blocks[l].proj},
            {bw->fc1_w, M1, D, &blocks[l].fc1},
            {bw->fc2_w, D, M, &blocks[l].fc2},
        };
        for (int i = 0; i < 4; i++) {
            convert_layer(native, layers[i].src, layers[i].N, layers[i].K, p);
            *layers[i].dst = p;
            p += layer_bytes(native, layers[i].N, layers[i].K);
        }
    }
    *out = lp;
    return UF_OK;
}

void uf__lp_free(uf__lp *lp)
{
    if (!lp) return;
    free(lp->mem);
    free(lp->blocks);
    free(lp);
}

/* ------------------------------------------------------------------------------------ */
/* GEMM                                                                                 */
/* ------------------------------------------------------------------------------------ */

void uf__lp_gemm(const uf__kern *kn, const uf__lp *lp, int nth, int M, int N, int K,
                 const float *A, int lda, const void *W, const float *bias, float *C, int ldc,
                 uf__epi e, float *ap, float *pout)
{
    if (lp->native) {
        kn->gemm_bf16_team(nth, M, N, K, A, lda, W, bias, C, ldc, e, ap, pout);
        return;
    }
    /* emulation: pack (when A is given) and round the packed input, then the FP32 GEMM */
    const int mr = kn->mr, npan = (M + mr - 1) / mr;
    const size_t ps = (size_t)K * mr;
#pragma omp for schedule(static)
    for (int p = 0; p < npan; p++) {
        float *a = ap + p * ps;
        if (A) kn->pack(A, (size_t)lda, M, K, p * mr, a);
        for (size_t i = 0; i < ps; i++) a[i] = uf__bf16_float(uf__bf16_round(a[i]));
    }
    kn->gemm_team(nth, M, N, K, NULL, 0, W, bias, C, ldc, e, ap, pout);
}

/* ------------------------------------------------------------------------------------ */
/* Public                                                                               */
/* ------------------------------------------------------------------------------------ */

const char *uf_precision_name(uf_precision p)
{
    return p == UF_PRECISION_FP32 ? "fp32" : p == UF_PRECISION_BF16 ? "bf16" : NULL;
}

uf_status uf_backbone_set_precision(uf_backbone *bb, uf_precision p)
{
    if (!bb) return uf__err(UF_ERR_ARG, "uf_backbone_set_precision: backbone is NULL");
    if (!uf_precision_name(p))
        return uf__err(UF_ERR_ARG, "uf_backbone_set_precision: unknown precision %d", (int)p);
    if (p == UF_PRECISION_BF16 && !bb->lp) {
        uf_status st = uf__lp_new(&bb->w, uf__kern_get(), &bb->lp);
        if (st != UF_OK) return st;
    }
    if (p == UF_PRECISION_FP32) {
        uf__lp_free(bb->lp);
        bb->lp = NULL;
    }
    bb->precision = p;
    return UF_OK;
}

uf_precision uf_backbone_precision(const uf_backbone *bb)
{
    return bb ? bb->precision : UF_PRECISION_FP32;
}
