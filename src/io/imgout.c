/*
 * imgout.c - image output: PNG writing and anomaly-map overlays.
 *
 * uf_image_write_png encodes an 8-bit RGB image into memory (pngfast.c: Sub filter and
 * Huffman coding, chosen for speed) and writes it through atomic.c (an unnamed O_TMPFILE
 * file, fsync'ed and renamed over the target), so a reader sees either the old file or the
 * complete new one, never a half-written PNG, and a failure or a kill leaves nothing behind.
 *
 * uf_heatmap_overlay colours a float map with matplotlib's "jet" colormap and alpha-blends
 * it over an image. The colormap is reproduced bit for bit: matplotlib builds a 256-entry
 * lookup table from jet's piecewise-linear segments (LinearSegmentedColormap with N=256)
 * and indexes it with floor(t * 256) (t == 1 -> 255), so a heatmap drawn here equals
 * `cm.jet(t)[..., :3] * 255` rounded, as a Python user would draw it. The table is
 * computed with the same floating-point operations as matplotlib's _create_lookup_table,
 * so even values that land exactly on .5 round the same way (tests compare against
 * tables made by matplotlib itself).
 */
#include "core/internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* ---- PNG writing ---------------------------------------------------------------------- */

/* Check img and encode it (uf__png_encode, pngfast.c); what names the failure. */
static uf_status encode(const uf_image *img, const char *what, uint8_t **buf, size_t *n)
{
    size_t stride;
    if (img->width <= 0 || img->height <= 0 || !uf__mul_ok((size_t)img->width, 3, &stride))
        return uf__err(UF_ERR_ARG, "%s: invalid image size %dx%d", what, img->width,
                       img->height);
    uf_status s = uf__png_encode(img, buf, n);
    return s == UF_OK ? s : uf__err_prefix(s, what);
}

uf_status uf_image_write_png(const uf_image *img, const char *path)
{
    if (!img || !img->rgb || !path || !*path)
        return uf__err(UF_ERR_ARG, "uf_image_write_png: NULL image or empty path");
    uint8_t *buf = NULL;
    size_t n = 0;
    uf_status s = encode(img, path, &buf, &n);
    if (s == UF_OK) s = uf_write_file_atomic(path, buf, n); /* an invisible file, renamed */
    free(buf);
    return s;
}

uf_status uf_image_encode_png(const uf_image *img, uint8_t **out, size_t *len)
{
    if (out) *out = NULL;
    if (len) *len = 0;
    if (!img || !img->rgb || !out || !len)
        return uf__err(UF_ERR_ARG, "uf_image_encode_png: NULL argument");
    return encode(img, "uf_image_encode_png", out, len);
}

/* ---- jet colormap and overlay ----------------------------------------------------------- */

/* matplotlib's _jet_data (matplotlib/_cm.py): per channel, control points (x, y) of a
 * piecewise-linear function of t in [0, 1]. jet is continuous (y0 == y1 at every x). */
typedef struct jet_seg {
    int n;           /* control points */
    double x[6], y[6];
} jet_seg;

static const jet_seg jet_data[3] = {
    {5, {0.0, 0.35, 0.66, 0.89, 1.0}, {0.0, 0.0, 1.0, 1.0, 0.5}},                   /* red   */
    {6, {0.0, 0.125, 0.375, 0.64, 0.91, 1.0}, {0.0, 0.0, 1.0, 1.0, 0.0, 0.0}},       /* green */
    {5, {0.0, 0.11, 0.34, 0.65, 1.0}, {0.5, 1.0, 1.0, 0.0, 0.0}},                   /* blue  */
};

#define JET_N 256

/* Fill lut with matplotlib's 256-entry jet table in 8 bits: round(lut_float * 255),
 * rounding half to even like numpy. The operations mirror _create_lookup_table:
 *   x = x_data * (N-1);  xind = (N-1) * linspace(0, 1, N)  (linspace: i * (1/(N-1)),
 *   last = 1);  k = searchsorted(x, xind) (first x[k] >= xind);
 *   lut = (xind - x[k-1]) / (x[k] - x[k-1]) * (y[k] - y[k-1]) + y[k-1];
 *   lut[0] = y[0], lut[N-1] = y[last]; clipped to [0, 1]. */
static void jet_table(uint8_t lut[JET_N][3])
{
    const double step = 1.0 / (JET_N - 1);
    for (int c = 0; c < 3; c++) {
        const jet_seg *s = &jet_data[c];
        double xs[6]; /* control points scaled to [0, N-1] */
        for (int k = 0; k < s->n; k++) xs[k] = s->x[k] * (JET_N - 1);
        for (int i = 0; i < JET_N; i++) {
            double v;
            if (i == 0) {
                v = s->y[0];
            } else if (i == JET_N - 1) {
                v = s->y[s->n - 1];
            } else {
                double xi = (JET_N - 1) * ((double)i * step);
                int k = 0;
                while (k < s->n - 1 && xs[k] < xi) k++; /* searchsorted, side="left" */
                if (k == 0) k = 1;                      /* not reached for jet */
                double d = (xi - xs[k - 1]) / (xs[k] - xs[k - 1]);
                v = d * (s->y[k] - s->y[k - 1]) + s->y[k - 1];
            }
            v = v < 0 ? 0 : v > 1 ? 1 : v;
            lut[i][c] = (uint8_t)nearbyint(v * 255.0); /* default mode: half to even */
        }
    }
}

/* The lookup index of t in [0, 1] as matplotlib's Colormap.__call__ computes it:
 * floor(t * N), with t == 1 (and anything rounding to N) mapped to N-1. */
static int jet_index(double t)
{
    double xa = t * JET_N;
    if (!(xa > 0)) return 0; /* also NaN (callers pass none) */
    if (xa >= JET_N) return JET_N - 1;
    return (int)xa;
}

void uf__jet_colors(const double *t, int n, uint8_t *rgb)
{
    uint8_t lut[JET_N][3]; /* [256][rgb] */
    jet_table(lut);
    for (int i = 0; i < n; i++)
        memcpy(rgb + 3 * i, lut[jet_index(t[i] < 0 ? 0 : t[i] > 1 ? 1 : t[i])], 3);
}

uf_status uf_heatmap_overlay(const uf_image *img, const float *map, float lo, float hi,
                             float alpha, uf_image **out)
{
    if (out) *out = NULL;
    if (!img || !img->rgb || !map || !out)
        return uf__err(UF_ERR_ARG, "uf_heatmap_overlay: NULL argument");
    if (!(alpha >= 0.0f && alpha <= 1.0f)) /* also refuses NaN */
        return uf__err(UF_ERR_ARG, "uf_heatmap_overlay: alpha %g outside [0, 1]",
                       (double)alpha);
    uf_image *o = NULL;
    uf_status s = uf_image_new(img->width, img->height, &o);
    if (s != UF_OK) return uf__err_prefix(s, "uf_heatmap_overlay");
    const size_t npx = (size_t)img->width * (size_t)img->height; /* fits: image exists */

    /* Range: the caller's, or the finite min/max of the map. A map with no spread (or no
     * finite value) draws every pixel at t = 0. */
    double dlo = lo, dhi = hi;
    int flat = 0; /* 1: every t is 0 */
    if (!(isfinite(dlo) && isfinite(dhi) && dhi > dlo)) {
        double mn = INFINITY, mx = -INFINITY;
        for (size_t i = 0; i < npx; i++) {
            double v = map[i];
            if (!isfinite(v)) continue;
            if (v < mn) mn = v;
            if (v > mx) mx = v;
        }
        dlo = mn;
        dhi = mx;
        flat = !(mx > mn);
    }

    uint8_t lut[JET_N][3]; /* [256][rgb] */
    jet_table(lut);
    const double a = alpha, b = 1.0 - a; /* colour and image weights */
    const double span = dhi - dlo;        /* > 0 unless flat; double: no overflow */
    const uint8_t *src = img->rgb;        /* [h][w][3] */
    uint8_t *dst = o->rgb;                /* [h][w][3] */
    /* every blend of a colour value c with an image value v, computed once (overlays are
     * drawn by the hundred: a table lookup instead of three double blends per pixel);
     * round half up; the blend is in [0, 255] as a convex combination */
    uint8_t *blend = malloc(256 * 256); /* [c][v] */
    if (!blend) {
        uf_image_free(o);
        return uf__err(UF_ERR_NOMEM, "uf_heatmap_overlay: out of memory");
    }
    for (int c = 0; c < 256; c++)
        for (int v = 0; v < 256; v++) blend[c * 256 + v] = (uint8_t)floor(a * c + b * v + 0.5);
    /* the colours' rows of the blend table: pix[ix][k] blends channel k of colour ix */
    const uint8_t *pix[JET_N][3];
    for (int i = 0; i < JET_N; i++)
        for (int k = 0; k < 3; k++) pix[i][k] = blend + lut[i][k] * 256;
    /* in strips: first every pixel's colour index, jet_index(clipped t) with the same
     * double operations (a NaN pixel fails t > 0 and gets t = 0 as before), two at a time
     * with SSE2, then the blend */
    enum { STRIP = 2048 };
    uint8_t ix[STRIP], crow[3 * STRIP + 1], lut4[JET_N][4];
    /* alpha 0.5 (annotated overlays): blend[c][v] = floor(c / 2 + v / 2 + 0.5), exactly
     * (c + v + 1) >> 1 in double arithmetic, so the colours go through SIMD averages */
    const int half = alpha == 0.5f;
    for (int i = 0; i < JET_N; i++) memcpy(lut4[i], lut[i], 3), lut4[i][3] = 0;
    for (size_t i0 = 0; i0 < npx; i0 += STRIP) {
        const size_t n = npx - i0 < STRIP ? npx - i0 : STRIP;
        if (flat) {
            memset(ix, 0, n);
        } else {
            const float *mp = map + i0;
            size_t j = 0;
#ifdef __SSE2__
            /* two pixels at a time: MAXPD(t, 0) is t > 0 ? t : 0 (NaN gives 0), MINPD(t, 1)
             * is t < 1 ? t : 1, CVTTPD2DQ truncates like (int) */
            const __m128d vlo = _mm_set1_pd(dlo), vspan = _mm_set1_pd(span), zero = _mm_setzero_pd(),
                          one = _mm_set1_pd(1.0), n256 = _mm_set1_pd(JET_N);
            for (; j + 2 <= n; j += 2) {
                const __m128d v = _mm_cvtps_pd(_mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)(mp + j))));
                __m128d t = _mm_div_pd(_mm_sub_pd(v, vlo), vspan);
                t = _mm_min_pd(_mm_max_pd(t, zero), one);
                const __m128i k = _mm_cvttpd_epi32(_mm_mul_pd(t, n256));
                const int k0 = _mm_cvtsi128_si32(k), k1 = _mm_cvtsi128_si32(_mm_srli_si128(k, 4));
                ix[j] = (uint8_t)(k0 < JET_N - 1 ? k0 : JET_N - 1);
                ix[j + 1] = (uint8_t)(k1 < JET_N - 1 ? k1 : JET_N - 1);
            }
#endif
            for (; j < n; j++) {
                double t = ((double)mp[j] - dlo) / span;
                t = t > 0 ? t : 0; /* NaN too */
                t = t < 1 ? t : 1; /* +-Inf clip to the ends */
                const int k = (int)(t * JET_N);
                ix[j] = (uint8_t)(k < JET_N - 1 ? k : JET_N - 1);
            }
        }
        const uint8_t *s3 = src + 3 * i0;
        uint8_t *d3 = dst + 3 * i0;
        if (half) { /* alpha 0.5: the blend is (c + v + 1) >> 1, PAVGB */
            for (size_t j = 0; j < n; j++) memcpy(crow + 3 * j, lut4[ix[j]], 4);
            size_t q = 0;
#ifdef __SSE2__
            for (; q + 16 <= 3 * n; q += 16)
                _mm_storeu_si128((__m128i *)(d3 + q),
                                 _mm_avg_epu8(_mm_loadu_si128((const __m128i *)(crow + q)),
                                              _mm_loadu_si128((const __m128i *)(s3 + q))));
#endif
            for (; q < 3 * n; q++) d3[q] = (uint8_t)((crow[q] + s3[q] + 1) >> 1);
            continue;
        }
        for (size_t j = 0; j < n; j++) {
            const uint8_t *const *c = pix[ix[j]];
            d3[3 * j] = c[0][s3[3 * j]];
            d3[3 * j + 1] = c[1][s3[3 * j + 1]];
            d3[3 * j + 2] = c[2][s3[3 * j + 2]];
        }
    }
    free(blend);
    *out = o;
    return UF_OK;
}
