/*
 * kern.h - the hot numerical kernels, one table per instruction-set level, chosen once at
 * run time (dispatch.c).
 *
 * Why: the default build targets baseline x86-64 so one binary runs on every x86-64 CPU;
 * the kernels that decide the speed (the ViT's GEMM with its fused bias / GELU / residual
 * epilogue, attention, LayerNorm, the kNN distance tiles, the coreset distances) are
 * compiled several times from one source (kern_impl.h), once per level, each file with its
 * own `#pragma GCC target`:
 *   generic  baseline x86-64 (SSE2), 4 lanes          kern_generic.c
 *   avx2     AVX2 + FMA (Haswell, Zen 1-3), 8 lanes    kern_avx2.c
 *   avx512   AVX-512 F/BW/DQ/VL (Skylake-X, Zen 4-5)   kern_avx512.c
 *   avx512bf16  avx512 + AVX512_BF16 (Cooper Lake, Sapphire Rapids, Zen 4)  kern_bf16.c
 * avx512bf16 runs the avx512 FP32 kernels and adds gemm_bf16_team, the GEMM of backbones set to
 * BF16 (model/bf16.c); below it BF16 is emulated on the FP32 GEMM. The environment
 * variable UF_CPU forces a lower level.
 *
 * Results: every level computes the same formulas; they differ only in float rounding
 * (FMA contracts products; the baseline has no FMA), within the
 * tests' tolerances. The coreset distance is bit-identical across levels (fixed 16-lane
 * order, no FMA), so coreset selections do not depend on the CPU.
 */
#ifndef UF_KERN_H
#define UF_KERN_H

#include <stddef.h>
#include <stdint.h>

/* Instruction-set levels, in increasing order. */
typedef enum uf__cpu_level {
    UF__CPU_GENERIC = 0,
    UF__CPU_AVX2 = 1,
    UF__CPU_AVX512 = 2,
    UF__CPU_AVX512BF16 = 3
} uf__cpu_level;

/* Epilogue of a GEMM: EPI_SET stores, EPI_ACC adds to C (residual), EPI_GELU applies GELU. */
typedef enum uf__epi { UF__EPI_SET, UF__EPI_ACC, UF__EPI_GELU } uf__epi;

/* Largest panel height (tokens per packed panel) of any level: buffers sized with it fit
 * every level. */
#define UF__MR_MAX 48

/* One multi-head self-attention over a batch: ctx = softmax(Q K^T / sqrt(hd)) V per head. */
typedef struct uf__attn_job {
    int B, Nt, D, heads, nth;
    const float *qkv; /* [B*Nt][3D] q | k | v per token                     */
    float *ctx;       /* [B*Nt][D] output, heads concatenated                */
    float *scores;    /* [nth][attn_scratch(Nt, hd)] per-thread scratch      */
    float *clsatt;    /* [B][heads][Nt] or NULL: save the CLS query's rows   */
    float *mean;      /* [B][..][Nt][Nt] slice base or NULL: head-mean rows  */
    size_t mean_img;  /* floats between images in mean                       */
} uf__attn_job;

typedef struct uf__kern {
    const char *name; /* "generic", "avx2", "avx512"                         */
    int mr;           /* tokens per packed panel (3 vectors)                 */
    int kc;           /* k block of the GEMM: gemm's pout needs K <= kc       */
    /* C[M][N] (row stride ldc) = epi(A[M][K] (stride lda) W[N][K]^T + bias) on nth threads
     * (nth 1: no parallel region, so it may run inside the caller's). bias may be NULL.
     * ap: scratch of ceil(M/mr)*mr*K floats (64-byte aligned) for the packed A; A NULL
     * means ap already holds it packed. pout non-NULL (K <= kc, e != ACC): the result is
     * written packed, [ceil(M/mr)][N][mr], ready to be the next gemm's ap; C unused. */
    void (*gemm)(int nth, int M, int N, int K, const float *A, int lda, const float *W,
                 const float *bias, float *C, int ldc, uf__epi e, float *ap, float *pout);
    /* gemm's work for a team that already exists: called by EVERY thread of the caller's
     * OpenMP parallel region with the same arguments (its loops are orphaned work-sharing
     * constructs binding to that team; nth = the team's size, which only sets the task
     * grid); it ends with the team's barrier. Lets a caller run many steps in one region
     * instead of starting a team per call (uf_forward). */
    void (*gemm_team)(int nth, int M, int N, int K, const float *A, int lda, const float *W,
                      const float *bias, float *C, int ldc, uf__epi e, float *ap, float *pout);
    /* Pack rows r0..r0+mr-1 of A [M][K] (stride lda) into ap [K][mr], zero past row M:
     * one panel of gemm's packed input. */
    void (*pack)(const float *A, size_t lda, int M, int K, int r0, float *ap);
    /* gemm_team with BF16 weights W [N][K2] (K2 = K rounded up to even; uf__bf16_round values,
     * zero in the padding column) and the inputs rounded to BF16 (round to nearest even),
     * products accumulated in FP32 (AMX or vdpbf16ps). Same arguments, team rule and packed
     * layouts as gemm_team;
     * ap is consumed: its panels are converted to BF16 pairs in place. NULL below
     * avx512bf16. */
    void (*gemm_bf16_team)(int nth, int M, int N, int K, const float *A, int lda,
                           const uint16_t *W, const float *bias, float *C, int ldc, uf__epi e, float *ap, float *pout);
    /* Floats of per-thread attention scratch (a multiple of 16, so slices stay aligned). */
    size_t (*attn_scratch)(int Nt, int hd);
    void (*attention)(const uf__attn_job *j);
    /* attention's work for an existing team, as gemm_team (j->nth: the team's size, which
     * must match the scratch: scores holds j->nth slices, indexed by omp_get_thread_num). */
    void (*attention_team)(const uf__attn_job *j);
    /* Squared L2 distance in a fixed order, bit-identical at every level (coreset). */
    float (*dist2)(const float *a, const float *b, int d);
} uf__kern;

/* The tables (kern_<level>.c). */
extern const uf__kern uf__kern_generic, uf__kern_avx2, uf__kern_avx512, uf__kern_avx512bf16;

/* The avx512bf16 table's gemm_bf16_team runs on AMX tiles when uf__amx_ready() (AMX-BF16 CPU,
 * UF_AMX not 0, and the process holds the tile state: uf__amx_enable(), behind the public
 * uf_enable_amx(), asks Linux for it; the library never asks by itself) and the shape fits
 * (K, N multiples of 32), else on uf__gemm_bf16_dp (vdpbf16ps; a team function like
 * gemm_team). Thread-safe; in dispatch.c (baseline code: callable on any CPU). */
int uf__amx_ready(void);
int uf__amx_enable(void); /* 1 when AMX is usable afterwards */
void uf__gemm_bf16_dp(int nth, int M, int N, int K, const float *A, int lda, const uint16_t *W,
                      const float *bias, float *C, int ldc, uf__epi e, float *ap, float *pout);

/* The level in use: the CPU's best, or UF_CPU's when set to a level the CPU has (read
 * once, on the first call; a level the CPU lacks or an unknown name is clamped to the
 * best available and explained by uf__cpu_note()). Thread-safe. */
uf__cpu_level uf__cpu_level_get(void);
const uf__kern *uf__kern_get(void);
/* The best level this CPU (and OS) supports, ignoring UF_CPU. */
uf__cpu_level uf__cpu_level_best(void);
/* "generic", "avx2", "avx512", "avx512bf16". */
const char *uf__cpu_level_name(uf__cpu_level l);
/* Non-empty when UF_CPU asked for something that could not be honoured. */
const char *uf__cpu_note(void);

#endif /* UF_KERN_H */
