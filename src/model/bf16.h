/*
 * bf16.h - the BF16 copies of a backbone's Linear weights and the GEMM that uses them
 * (uf_backbone_set_precision; bf16.c).
 *
 * Why a separate copy: the FP32 weights stay as loaded, so a backbone can go back to FP32
 * exactly, and the forward (vit.c) only swaps the weight pointer and the GEMM it calls.
 * The blocks' qkv, proj, fc1 and fc2 run in BF16; the patch embedding stays FP32: rounding
 * the pixels to BF16 added ~30 % to the block outputs' error (tests/test_forward.c's golden
 * models) for 1-2 % of a ViT-B/16's multiply-adds.
 */
#ifndef UF_BF16_H
#define UF_BF16_H

#include "core/internal.h"
#include "kernels/kern.h"

/* The Linear weights of one block, in the layout uf__lp_gemm takes. */
typedef struct uf__lp_block {
    const void *qkv, *proj, *fc1, *fc2;
} uf__lp_block;

/* BF16 weights: native (the kernel table has gemm_bf16_team): uint16_t [N][K2] BF16, K2 = K
 * rounded up to even, zero padding; emulated: float [N][K], the BF16-rounded values. */
typedef struct uf__lp {
    int native;
    void *mem;            /* the one allocation everything points into */
    uf__lp_block *blocks; /* [depth] */
} uf__lp;

/* x rounded to BF16, to nearest even, as vcvtneps2bf16 does: subnormals flush to zero,
 * NaN stays a quiet NaN. */
uint16_t uf__bf16_round(float x);
/* The float a BF16 value stands for. */
float uf__bf16_float(uint16_t b);

/* Build the BF16 copy of w for kernel table kn (native when kn->gemm_bf16_team exists). */
uf_status uf__lp_new(const uf__vit_weights *w, const uf__kern *kn, uf__lp **out);
void uf__lp_free(uf__lp *lp);

/* kn->gemm_team's contract (kern.h: every thread of the caller's team calls it, or one
 * thread outside any parallel region) with W a layer of lp: native, kn->gemm_bf16_team;
 * emulated, the inputs rounded to BF16 in the packed buffer ap, then kn->gemm_team on the
 * rounded weights. */
void uf__lp_gemm(const uf__kern *kn, const uf__lp *lp, int nth, int M, int N, int K,
                 const float *A, int lda, const void *W, const float *bias, float *C, int ldc,
                 uf__epi e, float *ap, float *pout);

#endif /* UF_BF16_H */
