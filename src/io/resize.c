/*
 * resize.c - Pillow-exact resampling of 8-bit RGB images (Image.resize).
 *
 * torchvision's Resize on a PIL image calls Pillow, so to feed a network the same pixels we
 * replicate Pillow's libImaging/Resample.c bit for bit:
 *  - per output pixel, a window of source pixels with filter weights computed in double
 *    (support scaled by the downscale factor: antialiasing), normalised to sum 1,
 *  - weights converted to fixed point with PRECISION_BITS = 22, accumulated in integers
 *    starting from the rounding constant 1 << 21, then shifted and clipped to 0..255,
 *  - two separable passes, horizontal first, each skipped when its size is unchanged.
 * NEAREST takes Pillow's other path (Geometry.c ImagingScaleAffine): source coordinate
 * (x + 0.5) * scale accumulated in double and truncated.
 *
 * Both run row by row (uf__rowresize): each source row gets its horizontal pass as it
 * arrives and only the rows the vertical pass reads are kept (Pillow's own intermediate
 * image). uf_image_resize feeds it a whole image; the decoders feed it rows as they decode
 * them, so a 16384 x 16384 image shrinks to 256 x 256 holding about 12 MB, not 805 MB.
 *
 * Floating-point expressions must not be contracted into FMAs, or a few weights would differ
 * from Pillow's in the last bit; gcc does not contract in ISO C mode (-std=c11), clang needs
 * the pragma below.
 */
#include "core/internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#define PRECISION_BITS (32 - 8 - 2)

/* ---- filters (Pillow's definitions) -------------------------------------------------- */

typedef struct filter {
    double (*fn)(double x);
    double support;
} filter;

static double bilinear_filter(double x)
{
    if (x < 0.0) x = -x;
    if (x < 1.0) return 1.0 - x;
    return 0.0;
}

static double bicubic_filter(double x)
{
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

static double sinc_filter(double x)
{
    if (x == 0.0) return 1.0;
    x = x * M_PI;
    return sin(x) / x;
}

static double lanczos_filter(double x)
{
    if (-3.0 <= x && x < 3.0) return sinc_filter(x) * sinc_filter(x / 3);
    return 0.0;
}

static const filter F_BILINEAR = {bilinear_filter, 1.0};
static const filter F_BICUBIC = {bicubic_filter, 2.0};
static const filter F_LANCZOS = {lanczos_filter, 3.0};

/* ---- coefficients ------------------------------------------------------------------- */

/* Fixed-point weights of a 1-D resampling from in_size to out_size: for output i, source
 * indices bounds[2i] .. bounds[2i] + bounds[2i+1] - 1 with weights kk[i*ksize ...].
 * The number of taps per output is stored in *ksizep. */
static uf_status precompute_coeffs(int in_size, int out_size, const filter *f, int **boundsp,
                                   int32_t **kkp, int *ksizep)
{
    /* Pillow passes the box as float: in1 - in0 is computed in float, then widened */
    float in0 = 0.0f, in1 = (float)in_size;
    double scale = (double)(in1 - in0) / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = f->support * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    size_t n;
    if (!uf__mul_ok((size_t)out_size, (size_t)ksize, &n) || n > SIZE_MAX / sizeof(double)) {
        return uf__err(UF_ERR_LIMIT, "resize: %d outputs with %d taps is too large", out_size,
                       ksize);
    }
    double *pre = malloc(n * sizeof *pre);         /* [out_size][ksize] */
    int32_t *kk = malloc(n * sizeof *kk);          /* [out_size][ksize] */
    int *bounds = malloc((size_t)out_size * 2 * sizeof *bounds); /* [out_size][2] */
    if (!pre || !kk || !bounds) {
        free(pre);
        free(kk);
        free(bounds);
        return uf__err(UF_ERR_NOMEM, "resize: out of memory for coefficients");
    }
    for (int xx = 0; xx < out_size; xx++) {
        double center = in0 + (xx + 0.5) * scale;
        double ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5); /* rounds like Pillow (truncation) */
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double *k = &pre[(size_t)xx * ksize];
        int x;
        for (x = 0; x < xmax; x++) {
            double w = f->fn((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        for (x = 0; x < xmax; x++)
            if (ww != 0.0) k[x] /= ww;
        for (; x < ksize; x++) k[x] = 0;
        bounds[xx * 2 + 0] = xmin;
        bounds[xx * 2 + 1] = xmax;
    }
    /* normalize_coeffs_8bpc: round half away from zero to 22 fractional bits */
    for (size_t i = 0; i < n; i++)
        kk[i] = pre[i] < 0 ? (int32_t)(-0.5 + pre[i] * (1 << PRECISION_BITS))
                           : (int32_t)(0.5 + pre[i] * (1 << PRECISION_BITS));
    free(pre);
    *boundsp = bounds;
    *kkp = kk;
    *ksizep = ksize;
    return UF_OK;
}

/* Pillow's clip8: drop the fraction bits, clamp to 0..255. 64-bit sums avoid signed
 * overflow (Pillow's int sums never overflow for valid weights, so results agree). */
static inline uint8_t clip8(int64_t v)
{
    v >>= PRECISION_BITS;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* Horizontal pass over rows [y0, y0 + rows) of src (width sw) into dst [rows][dw][3]. */
static void resample_h(const uint8_t *src, int sw, int y0, int rows, uint8_t *dst, int dw,
                       int ksize, const int *bounds, const int32_t *kk)
{
    for (int yy = 0; yy < rows; yy++) {
        const uint8_t *in = src + (size_t)(yy + y0) * sw * 3; /* [sw][3] */
        uint8_t *o = dst + (size_t)yy * dw * 3;              /* [dw][3] */
        for (int xx = 0; xx < dw; xx++) {
            int xmin = bounds[xx * 2], xmax = bounds[xx * 2 + 1];
            const int32_t *k = &kk[(size_t)xx * ksize];
            int64_t s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
            for (int x = 0; x < xmax; x++) {
                const uint8_t *p = in + (size_t)(x + xmin) * 3;
                s0 += (int64_t)p[0] * k[x];
                s1 += (int64_t)p[1] * k[x];
                s2 += (int64_t)p[2] * k[x];
            }
            o[3 * xx] = clip8(s0);
            o[3 * xx + 1] = clip8(s1);
            o[3 * xx + 2] = clip8(s2);
        }
    }
}

/* Vertical pass: src [*][w][3] (bounds already relative to its first row) into
 * dst [dh][w][3]. */
static void resample_v(const uint8_t *src, int w, uint8_t *dst, int dh, int ksize,
                       const int *bounds, const int32_t *kk)
{
    size_t rowb = (size_t)w * 3;
    for (int yy = 0; yy < dh; yy++) {
        int ymin = bounds[yy * 2], ymax = bounds[yy * 2 + 1];
        const int32_t *k = &kk[(size_t)yy * ksize];
        uint8_t *o = dst + (size_t)yy * rowb;
        for (size_t i = 0; i < rowb; i++) {
            int64_t s = 1 << (PRECISION_BITS - 1);
            for (int y = 0; y < ymax; y++) s += (int64_t)src[(size_t)(y + ymin) * rowb + i] * k[y];
            o[i] = clip8(s);
        }
    }
}

/* ---- resizing rows as a decoder delivers them ----------------------------------------- */

struct uf__rowresize {
    int sw, sh, W, H;
    const filter *f;       /* NULL: nearest */
    int need_h, need_v;
    int *bv, *bh;          /* [H][2], [W][2] windows (bv relative to yfirst when need_v) */
    int32_t *kv, *kh;      /* weights */
    int ksv, ksh;
    int yfirst, ylast;     /* source rows the vertical pass reads */
    uint8_t *tmp;          /* [ylast - yfirst][W][3] after the horizontal pass */
    uint8_t *row;          /* [sw][3] the row being delivered */
    int *xin, xmin, xmax;  /* nearest: [W] source column per output column, used range */
    int *yin;              /* nearest: [H] source row per output row (-1, sh: none) */
    uf_image *out;         /* [H][W][3] */
};

void uf__rowresize_free(uf__rowresize *r)
{
    if (!r) return;
    free(r->bv);
    free(r->bh);
    free(r->kv);
    free(r->kh);
    free(r->tmp);
    free(r->row);
    free(r->xin);
    free(r->yin);
    uf_image_free(r->out);
    free(r);
}

/* Pillow's NEAREST (ImagingScaleAffine with a = (sw/W, 0, 0, 0, sh/H, 0)): the source
 * column of each output column and the source row of each output row. */
static uf_status rowresize_nearest(uf__rowresize *r)
{
    r->xin = calloc((size_t)r->W, sizeof *r->xin);
    r->yin = malloc((size_t)r->H * sizeof *r->yin);
    if (!r->xin || !r->yin) return uf__err(UF_ERR_NOMEM, "resize: out of memory");
    double a0 = (double)((float)r->sw - 0.0f) / r->W, a4 = (double)((float)r->sh - 0.0f) / r->H;
    double xo = 0.0 + a0 * 0.5, yo = 0.0 + a4 * 0.5;
    r->xmin = r->W;
    r->xmax = 0;
    for (int x = 0; x < r->W; x++) {
        int xi = xo < 0.0 ? -1 : (int)xo;
        if (xi >= 0 && xi < r->sw) {
            r->xmax = x + 1;
            if (x < r->xmin) r->xmin = x;
            r->xin[x] = xi;
        }
        xo += a0;
    }
    for (int y = 0; y < r->H; y++) {
        int yi = yo < 0.0 ? -1 : (int)yo;
        r->yin[y] = yi < 0 ? -1 : yi < r->sh ? yi : r->sh; /* nondecreasing; -1, sh: none */
        yo += a4;
    }
    return UF_OK;
}

uf_status uf__rowresize_new(int sw, int sh, int W, int H, uf_interp interp, uf__rowresize **out)
{
    *out = NULL;
    if (sw <= 0 || sh <= 0 || W <= 0 || H <= 0)
        return uf__err(UF_ERR_ARG, "resize: invalid sizes %dx%d -> %dx%d", sw, sh, W, H);
    const filter *f = NULL;
    switch (interp) {
    case UF_INTERP_BILINEAR: f = &F_BILINEAR; break;
    case UF_INTERP_BICUBIC: f = &F_BICUBIC; break;
    case UF_INTERP_LANCZOS: f = &F_LANCZOS; break;
    case UF_INTERP_NEAREST: break; /* Pillow's other path: no filter */
    default: return uf__err(UF_ERR_ARG, "resize: unknown filter %d", (int)interp);
    }
    uf__rowresize *r = calloc(1, sizeof *r);
    if (!r) return uf__err(UF_ERR_NOMEM, "resize: out of memory");
    r->sw = sw, r->sh = sh, r->W = W, r->H = H, r->f = f;
    r->need_h = W != sw;
    r->need_v = H != sh;
    uf_status st = uf_image_new(W, H, &r->out);
    if (!st && !(r->row = malloc((size_t)sw * 3))) st = uf__err(UF_ERR_NOMEM, "resize: out of memory");
    if (!st && !f) st = rowresize_nearest(r);
    if (!st && f && r->need_h) st = precompute_coeffs(sw, W, f, &r->bh, &r->kh, &r->ksh);
    if (!st && f && r->need_v) {
        st = precompute_coeffs(sh, H, f, &r->bv, &r->kv, &r->ksv);
        if (!st) {
            r->yfirst = r->bv[0];
            r->ylast = r->bv[H * 2 - 2] + r->bv[H * 2 - 1];
            for (int i = 0; i < H; i++) r->bv[i * 2] -= r->yfirst;
            size_t n = (size_t)(r->ylast - r->yfirst) * (size_t)W * 3;
            if (!(r->tmp = malloc(n ? n : 1))) st = uf__err(UF_ERR_NOMEM, "resize: out of memory");
        }
    }
    if (st) {
        uf__rowresize_free(r);
        return st;
    }
    *out = r;
    return UF_OK;
}

uint8_t *uf__rowresize_row(uf__rowresize *r) { return r->row; }

/* Source row y ([sw][3] at src) goes into the result. */
static void rowresize_feed(uf__rowresize *r, int y, const uint8_t *src)
{
    if (y < 0 || y >= r->sh) return;
    if (!r->f) { /* nearest: every output row showing source row y */
        int lo = 0, hi = r->H; /* first output row showing y or a later row */
        while (lo < hi) {
            int mid = lo + (hi - lo) / 2;
            if (r->yin[mid] < y) lo = mid + 1;
            else hi = mid;
        }
        for (int yy = lo; yy < r->H && r->yin[yy] == y; yy++) {
            uint8_t *o = r->out->rgb + (size_t)yy * r->W * 3;
            for (int x = r->xmin; x < r->xmax; x++) memcpy(o + 3 * x, src + 3 * (size_t)r->xin[x], 3);
        }
        return;
    }
    uint8_t *dst; /* [W][3] */
    if (r->need_v) {
        if (y < r->yfirst || y >= r->ylast) return; /* not read by the vertical pass */
        dst = r->tmp + (size_t)(y - r->yfirst) * r->W * 3;
    } else {
        dst = r->out->rgb + (size_t)y * r->W * 3;
    }
    if (r->need_h) resample_h(src, r->sw, 0, 1, dst, r->W, r->ksh, r->bh, r->kh);
    else memcpy(dst, src, (size_t)r->sw * 3);
}

void uf__rowresize_push(uf__rowresize *r, int y) { rowresize_feed(r, y, r->row); }

uf_status uf__rowresize_finish(uf__rowresize *r, uf_image **out)
{
    if (r->f && r->need_v) resample_v(r->tmp, r->W, r->out->rgb, r->H, r->ksv, r->bv, r->kv);
    *out = r->out;
    r->out = NULL;
    uf__rowresize_free(r);
    return UF_OK;
}

size_t uf__rowresize_bytes(int sw, int sh, int W, int H)
{
    /* the output, the kept rows (at most every source row, W wide) and one source row */
    return (size_t)W * H * 3 + (size_t)W * sh * 3 + (size_t)sw * 3;
}

uf_status uf_image_resize(const uf_image *img, int width, int height, uf_interp interp,
                          uf_image **out)
{
    if (!out) return uf__err(UF_ERR_ARG, "uf_image_resize: out is NULL");
    *out = NULL;
    if (!img || !img->rgb || img->width <= 0 || img->height <= 0)
        return uf__err(UF_ERR_ARG, "uf_image_resize: invalid input image");
    if (width <= 0 || height <= 0)
        return uf__err(UF_ERR_ARG, "uf_image_resize: invalid target size %dx%d", width, height);
    if (width == img->width && height == img->height) { /* Pillow returns a copy */
        uf_status st = uf_image_new(width, height, out);
        if (st == UF_OK) memcpy((*out)->rgb, img->rgb, (size_t)width * height * 3);
        return st;
    }
    uf__rowresize *r = NULL;
    uf_status st = uf__rowresize_new(img->width, img->height, width, height, interp, &r);
    if (st) return st;
    for (int y = 0; y < img->height; y++)
        rowresize_feed(r, y, img->rgb + (size_t)y * img->width * 3);
    return uf__rowresize_finish(r, out);
}

