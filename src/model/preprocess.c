/*
 * preprocess.c - turn a decoded image into a normalised network input, exactly as
 * torchvision 0.14 does on a PIL image:
 *
 *   Resize(resize, interp) -> CenterCrop(crop) -> ToTensor() -> Normalize(mean, std)
 *
 * followed, optionally, by centring on a zero canvas of pad_to x pad_to (the reference's
 * small-image protocol). Every step is integer-exact against torchvision:
 *  - Resize(int): the shorter side becomes `resize`, the longer int(resize * long / short)
 *    (Python true division, then truncation); an image already of that size is untouched;
 *    resampling is Pillow's (resize.c).
 *  - CenterCrop(crop): a side smaller than crop is first zero-padded by (crop - n) // 2
 *    before and the rest after; the offset along a larger side is
 *    int(round((n - crop) / 2.0)) with Python's round-half-to-even.
 *  - ToTensor/Normalize: out = ((float)v / 255 - mean) / std in float32, as PyTorch does.
 * crop = 0 with pad_to = 0 is the whole-image mode: the *longer* side becomes `resize`
 * (the shorter int(resize * short / long)) and the image is placed at the top-left corner
 * of a zero canvas of resize x resize, so no pixel of the image is discarded (issue 13).
 * The detector runs the ViT on the image's own (non-square) patch grid within that canvas.
 * fit (UF_FIT_SHORT / UF_FIT_LONG) overrides which side Resize measures; fit long with
 * crop 0 and pad_to = resize is the letterbox: the whole image centred on the square.
 * The uint8 stage (after resize, crop and canvas) is exposed to tests as uf__preprocess_u8.
 */
#include "core/internal.h"

#include <math.h>
#include <string.h>

uf_preprocess uf_preprocess_default(void)
{
    uf_preprocess p;
    memset(&p, 0, sizeof p);
    p.resize = 256;
    p.crop = 224;
    p.pad_to = 0;
    p.interp = UF_INTERP_BILINEAR;
    p.mean[0] = 0.485f;
    p.mean[1] = 0.456f;
    p.mean[2] = 0.406f;
    p.std[0] = 0.229f;
    p.std[1] = 0.224f;
    p.std[2] = 0.225f;
    p.fit = UF_FIT_AUTO;
    return p;
}

/* The whole geometry of one preprocessing run. */
typedef struct geom {
    int rw, rh; /* size after Resize                                              */
    int cl, ct; /* top-left of the crop window in resized coordinates (< 0: padded) */
    int cw, ch; /* size after CenterCrop (== crop, or rw/rh without cropping)      */
    int ox, oy; /* where the cropped image sits on the pad_to canvas              */
    int S;      /* side of the square output (pad_to, else crop; 0 if undefined)  */
} geom;

/* int(round(d / 2.0)) for d >= 0 with Python's round half to even. */
static int half_round_even(int d)
{
    int k = d / 2;
    if (d % 2 == 0) return k;
    return k + (k & 1); /* x.5: to the even neighbour */
}

/* The whole-image (letterbox) mode: no crop and no explicit canvas. */
static int whole_mode(const uf_preprocess *p) { return p->crop == 0 && p->pad_to == 0; }

/* Resize sets the longer side: asked for, or the whole-image mode's automatic choice. */
static int fits_long(const uf_preprocess *p)
{
    return p->fit == UF_FIT_LONG || (p->fit != UF_FIT_SHORT && whole_mode(p));
}

/* torchvision's _compute_resized_output_size for Resize(int); 0 keeps the size. With
 * fit_long the longer side becomes resize instead of the shorter. */
static void resized_size(int resize, int fit_long, int w, int h, int *rw, int *rh)
{
    if (resize <= 0) {
        *rw = w;
        *rh = h;
        return;
    }
    int sh = w <= h ? w : h, lg = w <= h ? h : w;
    if (fit_long) {
        int ns = (int)((int64_t)resize * sh / lg); /* int(resize * short / long) */
        if (ns < 1) ns = 1;
        *rw = w >= h ? resize : ns;
        *rh = w >= h ? ns : resize;
        return;
    }
    /* Python computes resize * long exactly, then a correctly rounded true division:
     * both operands are exact doubles, so one IEEE division gives the same value. */
    double q = (double)((int64_t)resize * lg) / (double)sh;
    long long nl = q >= 2147483647.0 ? 2147483647LL : (long long)q;
    if (w <= h) {
        *rw = resize;
        *rh = (int)nl;
    } else {
        *rw = (int)nl;
        *rh = resize;
    }
}

static void compute_geom(const uf_preprocess *p, int w, int h, geom *g)
{
    memset(g, 0, sizeof *g);
    resized_size(p->resize, fits_long(p), w, h, &g->rw, &g->rh);
    if (p->crop > 0) {
        int c = p->crop;
        g->cl = c > g->rw ? -((c - g->rw) / 2) : half_round_even(g->rw - c);
        g->ct = c > g->rh ? -((c - g->rh) / 2) : half_round_even(g->rh - c);
        g->cw = g->ch = c;
    } else {
        g->cw = g->rw;
        g->ch = g->rh;
    }
    if (whole_mode(p)) { /* top-left, so the patch grid starts at the image's corner */
        g->S = p->resize > 0 ? p->resize : 0;
    } else if (p->pad_to > 0) {
        g->S = p->pad_to;
        g->ox = (p->pad_to - g->cw) / 2; /* may be negative: rejected by validate() */
        g->oy = (p->pad_to - g->ch) / 2;
    } else {
        g->S = p->crop > 0 ? p->crop : 0;
    }
}

/* Check parameters and the geometry they give for this image. */
static uf_status validate(const uf_preprocess *p, const uf_image *img, geom *g)
{
    if (!img || !img->rgb || img->width <= 0 || img->height <= 0)
        return uf__err(UF_ERR_ARG, "preprocess: invalid image");
    if (p->resize < 0 || p->crop < 0 || p->pad_to < 0)
        return uf__err(UF_ERR_ARG, "preprocess: negative size (resize %d, crop %d, pad_to %d)",
                       p->resize, p->crop, p->pad_to);
    if ((unsigned)p->interp > UF_INTERP_NEAREST)
        return uf__err(UF_ERR_ARG, "preprocess: unknown filter %d", (int)p->interp);
    if ((unsigned)p->fit > UF_FIT_LONG)
        return uf__err(UF_ERR_ARG, "preprocess: unknown fit %d (0 auto, 1 short, 2 long)",
                       (int)p->fit);
    if (p->fit == UF_FIT_SHORT && whole_mode(p))
        return uf__err(UF_ERR_ARG, "preprocess: fit short with crop 0 and no pad_to: the "
                       "whole-image canvas (resize x resize) holds the longer side only; use "
                       "fit long (or auto), or pad_to");
    for (int c = 0; c < 3; c++)
        if (!isfinite(p->mean[c]) || !isfinite(p->std[c]) || p->std[c] == 0.0f)
            return uf__err(UF_ERR_ARG, "preprocess: mean/std of channel %d invalid "
                           "(mean %g, std %g)", c, p->mean[c], p->std[c]);
    compute_geom(p, img->width, img->height, g);
    if (g->rw <= 0 || g->rh <= 0 || g->rw >= 2147483647 || g->rh >= 2147483647)
        return uf__err(UF_ERR_ARG, "preprocess: resize %d of a %dx%d image gives %dx%d",
                       p->resize, img->width, img->height, g->rw, g->rh);
    /* a thin image (1x10000) resized by its shorter side grows by its aspect ratio: say so
     * here, in the user's terms, rather than let the resampler's allocation refuse it */
    if ((uint64_t)g->rw * (uint64_t)g->rh > (uint64_t)uf_get_max_pixels())
        return uf__err(UF_ERR_LIMIT,
                       "image of %dx%d pixels is too elongated: resizing its %s side to %d "
                       "would make it %dx%d, above the limit of %zu pixels",
                       img->width, img->height, fits_long(p) ? "longer" : "shorter", p->resize,
                       g->rw, g->rh, uf_get_max_pixels());
    if (g->S <= 0)
        return uf__err(UF_ERR_ARG, "preprocess: crop = 0 needs resize > 0 or pad_to > 0 to fix "
                       "the output size");
    if (g->cw > g->S || g->ch > g->S)
        return uf__err(UF_ERR_ARG, "preprocess: image of %dx%d after resize/crop does not fit "
                       "pad_to %d", g->cw, g->ch, p->pad_to);
    return UF_OK;
}

void uf_preprocess_geometry(const uf_preprocess *p, int width, int height, int *rw, int *rh,
                            int *left, int *top)
{
    uf_preprocess d = uf_preprocess_default();
    if (!p) p = &d;
    geom g;
    memset(&g, 0, sizeof g);
    if (width > 0 && height > 0) compute_geom(p, width, height, &g); /* else all zero */
    if (rw) *rw = g.rw;
    if (rh) *rh = g.rh;
    /* resized-image coordinates of network input pixel (0, 0) */
    if (left) *left = g.cl - g.ox;
    if (top) *top = g.ct - g.oy;
}

int uf_preprocess_size(const uf_preprocess *p)
{
    uf_preprocess d = uf_preprocess_default();
    if (!p) p = &d;
    if (p->pad_to > 0) return p->pad_to;
    if (whole_mode(p)) return p->resize > 0 ? p->resize : 0;
    return p->crop > 0 ? p->crop : 0;
}

double uf_preprocess_coverage(const uf_preprocess *p, int width, int height)
{
    uf_preprocess d = uf_preprocess_default();
    if (!p) p = &d;
    if (width <= 0 || height <= 0) return 0.0;
    geom g;
    compute_geom(p, width, height, &g);
    if (g.rw <= 0 || g.rh <= 0 || g.S <= 0) return 0.0;
    /* the crop window, clipped to the resized image and to the canvas */
    int x0 = g.cl > 0 ? g.cl : 0, x1 = g.cl + g.cw < g.rw ? g.cl + g.cw : g.rw;
    int y0 = g.ct > 0 ? g.ct : 0, y1 = g.ct + g.ch < g.rh ? g.ct + g.ch : g.rh;
    int cx0 = g.cl - g.ox, cy0 = g.ct - g.oy; /* canvas (0, 0) in resized coordinates */
    if (x0 < cx0) x0 = cx0;
    if (y0 < cy0) y0 = cy0;
    if (x1 > cx0 + g.S) x1 = cx0 + g.S;
    if (y1 > cy0 + g.S) y1 = cy0 + g.S;
    if (x1 <= x0 || y1 <= y0) return 0.0;
    return (double)(x1 - x0) * (double)(y1 - y0) / ((double)g.rw * (double)g.rh);
}

uf_status uf__preprocess_u8(const uf_image *img, const uf_preprocess *p, uf_image **out)
{
    if (!out) return uf__err(UF_ERR_ARG, "preprocess: out is NULL");
    *out = NULL;
    uf_preprocess d = uf_preprocess_default();
    if (!p) p = &d;
    geom g;
    uf_status st = validate(p, img, &g);
    if (st) return st;

    /* Resize (skipped when the size does not change, as torchvision returns the input) */
    uf_image *rs = NULL;
    const uf_image *r = img;
    if (g.rw != img->width || g.rh != img->height) {
        st = uf_image_resize(img, g.rw, g.rh, p->interp, &rs);
        if (st) return st;
        r = rs;
    }
    /* Output canvas [S][S][3], zero = torchvision's padding fill and the pad_to canvas. */
    uf_image *o = NULL;
    st = uf_image_new(g.S, g.S, &o);
    if (st) {
        uf_image_free(rs);
        return st;
    }
    /* Resized pixel (x, y) lands at (x - cl + ox, y - ct + oy) if inside the crop window. */
    int x0 = g.cl > 0 ? g.cl : 0, x1 = g.cl + g.cw < g.rw ? g.cl + g.cw : g.rw;
    int y0 = g.ct > 0 ? g.ct : 0, y1 = g.ct + g.ch < g.rh ? g.ct + g.ch : g.rh;
    for (int y = y0; y < y1 && x1 > x0; y++) {
        const uint8_t *s = r->rgb + ((size_t)y * g.rw + x0) * 3;
        uint8_t *dst = o->rgb + ((size_t)(y - g.ct + g.oy) * g.S + (x0 - g.cl + g.ox)) * 3;
        memcpy(dst, s, (size_t)(x1 - x0) * 3);
    }
    uf_image_free(rs);
    *out = o;
    return UF_OK;
}

uf_status uf_preprocess_image(const uf_image *img, const uf_preprocess *p, float *out)
{
    if (!out) return uf__err(UF_ERR_ARG, "preprocess: out is NULL");
    uf_preprocess d = uf_preprocess_default();
    if (!p) p = &d;
    uf_image *u8 = NULL;
    uf_status st = uf__preprocess_u8(img, p, &u8);
    if (st) return st;
    size_t n = (size_t)u8->width * u8->height;
    /* ToTensor + Normalize in float32: out is [3][S][S] */
    for (int c = 0; c < 3; c++) {
        float m = p->mean[c], sd = p->std[c];
        float *o = out + (size_t)c * n;
        for (size_t i = 0; i < n; i++) {
            float v = (float)u8->rgb[3 * i + c] / 255.0f;
            o[i] = (v - m) / sd;
        }
    }
    uf_image_free(u8);
    return UF_OK;
}
