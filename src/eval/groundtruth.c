/*
 * groundtruth.c - ground-truth masks in network-input space (uf_eval_mask_to_network).
 *
 * Pixel metrics are computed on the [S][S] maps the detector produces, so each mask must
 * follow its image through the same resize and crop. Kept in the library (not in the CLI)
 * so every caller - `uniformaly eval`, the tests, bindings - maps masks the same way, and
 * the binarisation level is an explicit argument: 0.5 (torchvision's Resize + CenterCrop
 * then >= 0.5) or 1.0 (the official evaluation: only pixels that stay exactly 255).
 */
#include "core/internal.h"

#include <math.h>
#include <stdlib.h>

uf_status uf_eval_mask_to_network(const uint8_t *mask, int width, int height,
                                  const uf_preprocess *pre, double threshold, uint8_t *out)
{
    if (!mask || !out || width <= 0 || height <= 0)
        return uf__err(UF_ERR_ARG, "uf_eval_mask_to_network: NULL mask/out or size <= 0");
    if (!(threshold > 0 && threshold <= 1))
        return uf__err(UF_ERR_ARG, "uf_eval_mask_to_network: threshold %g outside (0, 1]",
                       threshold);
    uf_preprocess dflt = uf_preprocess_default();
    if (!pre) pre = &dflt;
    int S = uf_preprocess_size(pre);
    if (S <= 0) return uf__err(UF_ERR_ARG, "uf_eval_mask_to_network: crop, pad_to and resize are 0");
    uf_image *im = NULL, *rs = NULL;
    uf_status s = uf_image_new(width, height, &im);
    if (s) return s;
    for (size_t i = 0; i < (size_t)width * (size_t)height; i++)
        im->rgb[3 * i] = im->rgb[3 * i + 1] = im->rgb[3 * i + 2] = mask[i] ? 255 : 0;
    int rw, rh, left, top;
    uf_preprocess_geometry(pre, width, height, &rw, &rh, &left, &top);
    const uf_image *r = im;
    if (rw != width || rh != height) {
        s = uf_image_resize(im, rw, rh, UF_INTERP_BILINEAR, &rs);
        if (s) {
            uf_image_free(im);
            return s;
        }
        r = rs;
    }
    /* v / 255 >= threshold, decided on integers: v >= ceil(threshold * 255) */
    int level = (int)ceil(threshold * 255.0 - 1e-9);
    for (int y = 0; y < S; y++) {
        int sy = y + top;
        for (int x = 0; x < S; x++) {
            int sx = x + left;
            out[(size_t)y * S + x] = sy >= 0 && sy < rh && sx >= 0 && sx < rw &&
                                     r->rgb[((size_t)sy * rw + sx) * 3] >= level;
        }
    }
    uf_image_free(rs);
    uf_image_free(im);
    return UF_OK;
}
