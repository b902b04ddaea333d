/*
 * rotate.c - rotation of an 8-bit RGB image about its centre, for the few-shot
 * augmentation of AnomalyDINO (uf_detector_params.rotations): their src/utils.py
 * rotate_image is cv2.warpAffine(image, cv2.getRotationMatrix2D((w/2, h/2), angle, 1),
 * (w, h), INTER_LINEAR, BORDER_DEFAULT), so the output keeps the input's size, the
 * rotation is counter-clockwise on screen for a positive angle, and what falls outside
 * the source is filled by reflection without repeating the edge (BORDER_REFLECT_101:
 * gfedcb|abcdefgh|gfedcba).
 *
 * Sampling is bilinear in float on pixel centres at integer coordinates, rounded to the
 * nearest byte. OpenCV quantises the source position to 1/32 pixel and the weights to
 * fixed point, so its bytes differ from these by a level or two at most; multiples of 90
 * degrees land on exact pixel positions and need no interpolation at all.
 */
#include "core/internal.h"

#include <math.h>
#include <stdlib.h>

/* Index i reflected into 0..n-1 without repeating the edge (BORDER_REFLECT_101). */
static int reflect101(int i, int n)
{
    if (n == 1) return 0;
    const int period = 2 * (n - 1);
    i %= period;
    if (i < 0) i += period;
    return i < n ? i : period - i;
}

uf_status uf__image_rotate(const uf_image *img, double degrees, uf_image **out)
{
    if (!out) return uf__err(UF_ERR_ARG, "uf__image_rotate: NULL output");
    *out = NULL;
    if (!img || !img->rgb || img->width < 1 || img->height < 1 || !isfinite(degrees))
        return uf__err(UF_ERR_ARG, "uf__image_rotate: bad arguments");
    const int W = img->width, H = img->height;
    uf_status s = uf_image_new(W, H, out);
    if (s != UF_OK) return s;
    /* cv2.getRotationMatrix2D: M = [[a, b, (1-a) cx - b cy], [-b, a, b cx + (1-a) cy]],
     * a = cos, b = sin; warpAffine samples src(M^-1 (x, y)). Exact values at multiples of
     * 90 degrees, as OpenCV's own trigonometry gives there. */
    double rad = degrees * (M_PI / 180.0), a = cos(rad), b = sin(rad);
    double q = fmod(degrees, 90.0);
    if (q == 0.0) {
        a = round(a);
        b = round(b);
    }
    const double cx = W / 2.0, cy = H / 2.0;
    const double tx = (1 - a) * cx - b * cy, ty = b * cx + (1 - a) * cy;
    /* inverse of [[a, b], [-b, a]] is [[a, -b], [b, a]] (a rotation) */
    const uint8_t *src = img->rgb;
    uint8_t *dst = (*out)->rgb;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            const double u = x - tx, v = y - ty;
            const double sx = a * u - b * v, sy = b * u + a * v;
            const double fx = floor(sx), fy = floor(sy);
            const double wx = sx - fx, wy = sy - fy;
            const int x0 = (int)fx, y0 = (int)fy;
            const int xa = reflect101(x0, W), xb = reflect101(x0 + 1, W);
            const int ya = reflect101(y0, H), yb = reflect101(y0 + 1, H);
            for (int c = 0; c < 3; c++) {
                const double p00 = src[((size_t)ya * W + xa) * 3 + c];
                const double p01 = src[((size_t)ya * W + xb) * 3 + c];
                const double p10 = src[((size_t)yb * W + xa) * 3 + c];
                const double p11 = src[((size_t)yb * W + xb) * 3 + c];
                const double t = (1 - wy) * ((1 - wx) * p00 + wx * p01) +
                                 wy * ((1 - wx) * p10 + wx * p11);
                dst[((size_t)y * W + x) * 3 + c] = (uint8_t)(t < 0 ? 0 : t > 255 ? 255 : t + 0.5);
            }
        }
    return UF_OK;
}
