/*
 * simd.h - a small vector abstraction over SSE2, AVX2+FMA and AVX-512, so the kernels in
 * kern_impl.h are written once and compiled per level (see kern.h).
 *
 * Include only from a kern_<level>.c file, after its `#pragma GCC target` and with UF_ISA
 * set to 1 (SSE2, the x86-64 baseline), 2 (AVX2 + FMA) or 3 (AVX-512 F/BW/DQ/VL).
 * vf is one vector of VL floats; loads and stores of vf are aligned to VL * 4 bytes.
 */
#ifndef UF_SIMD_H
#define UF_SIMD_H

#include <immintrin.h>

#define UF_AI static inline __attribute__((always_inline))

#if UF_ISA == 3
typedef __m512 vf;
#define VL 16
UF_AI vf vload(const float *p) { return _mm512_load_ps(p); }
UF_AI vf vloadu(const float *p) { return _mm512_loadu_ps(p); }
UF_AI void vstore(float *p, vf x) { _mm512_store_ps(p, x); }
UF_AI void vstoreu(float *p, vf x) { _mm512_storeu_ps(p, x); }
UF_AI vf vset1(float x) { return _mm512_set1_ps(x); }
UF_AI vf vzero(void) { return _mm512_setzero_ps(); }
UF_AI vf vadd(vf a, vf b) { return _mm512_add_ps(a, b); }
UF_AI vf vsub(vf a, vf b) { return _mm512_sub_ps(a, b); }
UF_AI vf vmul(vf a, vf b) { return _mm512_mul_ps(a, b); }
UF_AI vf vdiv(vf a, vf b) { return _mm512_div_ps(a, b); }
UF_AI vf vmax(vf a, vf b) { return _mm512_max_ps(a, b); }
UF_AI vf vmin(vf a, vf b) { return _mm512_min_ps(a, b); }
UF_AI vf vabs(vf a) { return _mm512_abs_ps(a); }
UF_AI vf vfma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }   /* a*b + c */
UF_AI vf vfnma(vf a, vf b, vf c) { return _mm512_fnmadd_ps(a, b, c); } /* c - a*b */
/* the rounding error of a*a: a*a - fl(a*a) exactly */
UF_AI vf vsqerr(vf a, vf aa) { return _mm512_fmsub_ps(a, a, aa); }
UF_AI vf vround(vf a)
{
    return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
/* p * 2^n for integral n in [-151, 128] */
UF_AI vf vscale2(vf p, vf n) { return _mm512_scalef_ps(p, n); }
/* x >= 0 ? a : b, per lane */
UF_AI vf vsel_ge0(vf x, vf a, vf b)
{
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GE_OQ), b, a);
}
UF_AI float vfirst(vf x) { return _mm512_cvtss_f32(x); }

#else
#if UF_ISA == 2
typedef __m256 vf;
typedef __m256i vi;
#define VL 8
UF_AI vf vload(const float *p) { return _mm256_load_ps(p); }
UF_AI vf vloadu(const float *p) { return _mm256_loadu_ps(p); }
UF_AI void vstore(float *p, vf x) { _mm256_store_ps(p, x); }
UF_AI void vstoreu(float *p, vf x) { _mm256_storeu_ps(p, x); }
UF_AI vf vset1(float x) { return _mm256_set1_ps(x); }
UF_AI vf vzero(void) { return _mm256_setzero_ps(); }
UF_AI vf vadd(vf a, vf b) { return _mm256_add_ps(a, b); }
UF_AI vf vsub(vf a, vf b) { return _mm256_sub_ps(a, b); }
UF_AI vf vmul(vf a, vf b) { return _mm256_mul_ps(a, b); }
UF_AI vf vdiv(vf a, vf b) { return _mm256_div_ps(a, b); }
UF_AI vf vmax(vf a, vf b) { return _mm256_max_ps(a, b); }
UF_AI vf vmin(vf a, vf b) { return _mm256_min_ps(a, b); }
UF_AI vf vand(vf a, vf b) { return _mm256_and_ps(a, b); }
UF_AI vf vandnot(vf a, vf b) { return _mm256_andnot_ps(a, b); } /* ~a & b */
UF_AI vf vor(vf a, vf b) { return _mm256_or_ps(a, b); }
UF_AI vf vfma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
UF_AI vf vfnma(vf a, vf b, vf c) { return _mm256_fnmadd_ps(a, b, c); }
UF_AI vf vsqerr(vf a, vf aa) { return _mm256_fmsub_ps(a, a, aa); }
UF_AI vf vround(vf a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
UF_AI vf vge0(vf x) { return _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GE_OQ); }
UF_AI vi vcvti(vf a) { return _mm256_cvtps_epi32(a); }
UF_AI vi vi_srai1(vi a) { return _mm256_srai_epi32(a, 1); }
UF_AI vi vi_sub(vi a, vi b) { return _mm256_sub_epi32(a, b); }
UF_AI vf vi_pow2(vi n) /* 2^n as float, n in [-126, 127] */
{
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n, _mm256_set1_epi32(127)), 23));
}
UF_AI float vfirst(vf x) { return _mm256_cvtss_f32(x); }
#elif UF_ISA == 1
typedef __m128 vf;
typedef __m128i vi;
#define VL 4
UF_AI vf vload(const float *p) { return _mm_load_ps(p); }
UF_AI vf vloadu(const float *p) { return _mm_loadu_ps(p); }
UF_AI void vstore(float *p, vf x) { _mm_store_ps(p, x); }
UF_AI void vstoreu(float *p, vf x) { _mm_storeu_ps(p, x); }
UF_AI vf vset1(float x) { return _mm_set1_ps(x); }
UF_AI vf vzero(void) { return _mm_setzero_ps(); }
UF_AI vf vadd(vf a, vf b) { return _mm_add_ps(a, b); }
UF_AI vf vsub(vf a, vf b) { return _mm_sub_ps(a, b); }
UF_AI vf vmul(vf a, vf b) { return _mm_mul_ps(a, b); }
UF_AI vf vdiv(vf a, vf b) { return _mm_div_ps(a, b); }
UF_AI vf vmax(vf a, vf b) { return _mm_max_ps(a, b); }
UF_AI vf vmin(vf a, vf b) { return _mm_min_ps(a, b); }
UF_AI vf vand(vf a, vf b) { return _mm_and_ps(a, b); }
UF_AI vf vandnot(vf a, vf b) { return _mm_andnot_ps(a, b); }
UF_AI vf vor(vf a, vf b) { return _mm_or_ps(a, b); }
/* no FMA in the baseline: a multiply and an add (one more rounding) */
UF_AI vf vfma(vf a, vf b, vf c) { return _mm_add_ps(_mm_mul_ps(a, b), c); }
UF_AI vf vfnma(vf a, vf b, vf c) { return _mm_sub_ps(c, _mm_mul_ps(a, b)); }
/* without FMA the error of a*a is not recovered: the GELU tail loses ~1e-6 relative */
UF_AI vf vsqerr(vf a, vf aa) { (void)a, (void)aa; return _mm_setzero_ps(); }
/* cvtps2dq rounds to nearest even under the default MXCSR; |a| < 2^31 here */
UF_AI vf vround(vf a) { return _mm_cvtepi32_ps(_mm_cvtps_epi32(a)); }
UF_AI vf vge0(vf x) { return _mm_cmpge_ps(x, _mm_setzero_ps()); }
UF_AI vi vcvti(vf a) { return _mm_cvtps_epi32(a); }
UF_AI vi vi_srai1(vi a) { return _mm_srai_epi32(a, 1); }
UF_AI vi vi_sub(vi a, vi b) { return _mm_sub_epi32(a, b); }
UF_AI vf vi_pow2(vi n)
{
    return _mm_castsi128_ps(_mm_slli_epi32(_mm_add_epi32(n, _mm_set1_epi32(127)), 23));
}
UF_AI float vfirst(vf x) { return _mm_cvtss_f32(x); }
#else
#error "simd.h: set UF_ISA to 1, 2 or 3"
#endif
/* p * 2^n for integral n in [-151, 128]: two normal powers 2^(n>>1) 2^(n - n>>1), so
 * results that are subnormal are still scaled correctly (vscalefps does this in one). */
UF_AI vf vscale2(vf p, vf n)
{
    const vi ni = vcvti(n), n1 = vi_srai1(ni);
    return vmul(vmul(p, vi_pow2(n1)), vi_pow2(vi_sub(ni, n1)));
}
UF_AI vf vabs(vf a) { return vandnot(vset1(-0.0f), a); }
UF_AI vf vsel_ge0(vf x, vf a, vf b)
{
    const vf m = vge0(x);
    return vor(vand(m, a), vandnot(m, b));
}
#endif

#endif /* UF_SIMD_H */
