/*
 * demo_data.h - a seeded, procedural anomaly-detection dataset for `uniformaly demo`.
 *
 * A new user should see the whole flow (fit on good images, score test images, look at
 * heatmaps against ground-truth masks) without downloading anything. demo_make draws a
 * small MVTec-AD-like dataset in memory:
 *   - category "texture": a stationary wood/fabric-like texture; every image differs but
 *     all good images come from the same distribution;
 *   - category "object": a centred bottle-top-like object (rim, groove, concentric ridges)
 *     on a plain dark background, with slight position/scale jitter, so Back Patch
 *     Masking has background to drop.
 * Test sets hold good images plus three defect types drawn on top with exact pixel masks
 * (the mask is 1 exactly where the defect changed the image):
 *   "scratch" a thin bright or dark curved line (length 15-35% of the side, 2-4 px wide at
 *             224 px), "spot" a stain of a foreign colour (radius 4-8% of the side),
 *   "missing" a region 8-15% of the side across, painted with a wrong texture ("texture")
 *             or with background, as if broken off ("object").
 * On "object" every defect lies on the object. Everything is deterministic given the seed
 * (the library's uf_splitmix64; each image has its own stream, so image k of a split does
 * not depend on how many images were requested).
 */
#ifndef UF_DEMO_DATA_H
#define UF_DEMO_DATA_H

#include <stdint.h>

#include "uniformaly.h"

typedef struct demo_item {
    uf_image *img;    /* size x size RGB image, owned by the set                      */
    uint8_t *mask;    /* [h][w], 1 = defect pixel; NULL for good images                */
    const char *type; /* "good", "scratch", "spot" or "missing" (static string)         */
    char name[64];    /* e.g. "train_good_007", "test_scratch_003"                       */
} demo_item;

typedef struct demo_set {
    const char *category; /* "texture" or "object" (static string)                      */
    demo_item *train;     /* [n_train] good images                                       */
    int n_train;
    demo_item *test;      /* [n_test]: n_test_good good images, then n_test_per_defect   */
    int n_test;           /*  each of scratch, spot, missing (in that order)             */
} demo_set;

/* Build a dataset of category "texture" or "object" with square images of side size
 * (32..4096; 224 is the natural choice), n_train good training images, n_test_good good
 * test images and n_test_per_defect test images of each defect type. Counts must be >= 0.
 * Returns 0 on success (*out filled, release with demo_free), -1 on invalid arguments or
 * allocation failure (*out is then empty and need not be freed). */
int demo_make(const char *category, uint64_t seed, int size, int n_train, int n_test_good,
              int n_test_per_defect, demo_set *out);

/* Release everything demo_make allocated and zero *s; NULL or an empty set is fine. */
void demo_free(demo_set *s);

/* Rec. 601 luma of an RGB pixel p[3], 0..255. */
double demo_luma(const uint8_t *p);

#endif
