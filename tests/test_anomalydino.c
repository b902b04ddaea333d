/*
 * test_anomalydino.c - the AnomalyDINO parts of the detector (issue 15), why: each is a
 * small change in the pipeline whose effect is easy to lose silently (a bank that is not
 * augmented, features not normalised, the mask computed on the wrong features). On a
 * random ViT and synthetic images: the rotation of an image (uf__image_rotate) against
 * the definition of cv2.warpAffine about (w/2, h/2) with BORDER_REFLECT_101; the bank
 * multiplied by the rotations, its rows those of the explicitly rotated images; cosine
 * features of unit norm and patch scores equal to 2 (1 - cos) against a brute-force
 * search; the last block resolved; the PCA mask of scoring equal to uf__pca_mask on the
 * image's features and never applied to training images; bad settings refused.
 */
#include "detector/detector.h"
#include "detector/kernels.h"
#include "harness.h"

#include <uniformaly.h>

enum { DIM = 24, DEPTH = 3, PATCH = 8, GRID = 10, S = PATCH * GRID, NP = GRID * GRID };

static uf_backbone *g_bb;

static uf_image *synthetic(int w, int h, uint64_t seed)
{
    uf_image *im = NULL;
    if (uf_image_new(w, h, &im) != UF_OK) return NULL;
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 7;
    for (size_t i = 0; i < (size_t)w * h * 3; i++) {
        s += 0x9E3779B97F4A7C15ull;
        uint64_t z = (s ^ (s >> 30)) * 0xBF58476D1CE4E5B9ull;
        z ^= z >> 27;
        /* smooth-ish content: a gradient plus noise, so rotations differ visibly */
        size_t px = i / 3, x = px % (size_t)w, y = px / (size_t)w;
        im->rgb[i] = (uint8_t)((x * 7 + y * 3 + (i % 3) * 40 + (z & 31)) & 255);
    }
    return im;
}

static uf_detector_params base_params(void)
{
    uf_detector_params p = uf_detector_default_params();
    p.layer_first = 1;
    p.layer_last = DEPTH;
    p.pre.resize = p.pre.crop = S;
    p.bpm = 0;
    p.coreset = 1.0;
    p.sigma = 0;
    return p;
}

static int reflect101(int i, int n)
{
    while (i < 0 || i >= n) i = i < 0 ? -i : 2 * (n - 1) - i;
    return i;
}

/* Multiples of 90 degrees land on pixels: dst(x, y) = src(R^-1 ((x, y) - c) + c) with
 * c = (w/2, h/2), reflected at the border; 360 is the identity; 45 interpolates. */
static void test_rotate(void)
{
    uf_image *a = synthetic(6, 6, 1), *r = NULL;
    REQUIRE(a != NULL);
    REQUIRE_OK(uf__image_rotate(a, 90.0, &r));
    int bad = 0;
    for (int y = 0; y < 6; y++)
        for (int x = 0; x < 6; x++) {
            /* angle 90: sx = cx + cy - y, sy = x - cx + cy (cx = cy = 3) */
            int sx = reflect101(6 - y, 6), sy = reflect101(x, 6);
            for (int c = 0; c < 3; c++)
                bad += r->rgb[(y * 6 + x) * 3 + c] != a->rgb[(sy * 6 + sx) * 3 + c];
        }
    CHECKF(bad == 0, "90 degrees: %d bytes differ", bad);
    uf_image_free(r);
    uf_image *b = synthetic(7, 4, 2);
    REQUIRE_OK(uf__image_rotate(b, 180.0, &r));
    bad = 0;
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 7; x++) {
            /* 180: s = 2c - (x, y) = (7 - x, 4 - y) */
            int sx = reflect101(7 - x, 7), sy = reflect101(4 - y, 4);
            for (int c = 0; c < 3; c++)
                bad += r->rgb[(y * 7 + x) * 3 + c] != b->rgb[(sy * 7 + sx) * 3 + c];
        }
    CHECKF(bad == 0, "180 degrees: %d bytes differ", bad);
    uf_image_free(r);
    REQUIRE_OK(uf__image_rotate(b, 360.0, &r));
    CHECK(r->width == 7 && r->height == 4 && !memcmp(r->rgb, b->rgb, 7 * 4 * 3));
    uf_image_free(r);
    REQUIRE_OK(uf__image_rotate(a, 45.0, &r));
    CHECK(memcmp(r->rgb, a->rgb, 6 * 6 * 3) != 0);
    /* the centre pixel area stays near: dst(3, 3) samples src at the centre itself */
    for (int c = 0; c < 3; c++) CHECK(r->rgb[(3 * 6 + 3) * 3 + c] == a->rgb[(3 * 6 + 3) * 3 + c]);
    uf_image_free(r);
    CHECK(uf__image_rotate(NULL, 10, &r) == UF_ERR_ARG);
    CHECK(uf__image_rotate(a, NAN, &r) == UF_ERR_ARG && r == NULL);
    uf_image_free(a);
    uf_image_free(b);
}

static uf_model *fit(const uf_detector_params *p, uf_image **imgs, int n)
{
    uf_fitter *f = NULL;
    uf_model *m = NULL;
    if (uf_fitter_new(g_bb, p, &f) != UF_OK) return NULL;
    if (uf_fitter_add(f, (const uf_image *const *)imgs, n) == UF_OK)
        uf_fitter_finish(f, NULL, NULL, &m);
    uf_fitter_free(f);
    return m;
}

/* R rotations put R times the rows in the bank, rotation r of image i at rows
 * (i R + r) Np..: the rows of the image rotated by 360 r / R explicitly. */
static void test_rotation_bank(void)
{
    uf_image *imgs[2] = {synthetic(40, 36, 3), synthetic(32, 32, 4)};
    REQUIRE(imgs[0] && imgs[1]);
    uf_detector_params p = base_params();
    uf_model *m1 = fit(&p, imgs, 2);
    p.rotations = 4;
    uf_model *m4 = fit(&p, imgs, 2);
    REQUIRE(m1 && m4);
    uf_model_info i1, i4;
    uf_model_get_info(m1, &i1);
    uf_model_get_info(m4, &i4);
    CHECKF(i1.bank_size == 2 * NP && i4.bank_size == 8 * NP, "banks %zu and %zu",
           i1.bank_size, i4.bank_size);
    CHECK(i4.n_train == 2 && i4.params.rotations == 4);
    /* image 1 rotated by 270 degrees (r = 3) */
    uf_image *rot = NULL;
    REQUIRE_OK(uf__image_rotate(imgs[1], 270.0, &rot));
    p.rotations = 1;
    uf_model *mr = fit(&p, &rot, 1);
    REQUIRE(mr != NULL);
    const float *b4 = uf_model_bank(m4), *br = uf_model_bank(mr);
    double e = 0;
    for (size_t i = 0; i < (size_t)NP * DIM; i++)
        e = fmax(e, fabs(b4[(size_t)(1 * 4 + 3) * NP * DIM + i] - br[i]));
    CHECKF(e == 0, "rotated rows differ by %g", e);
    /* and rotation 0 of image 0 is the image itself */
    CHECK(!memcmp(b4, uf_model_bank(m1), (size_t)NP * DIM * sizeof(float)));
    uf_model_free(m1), uf_model_free(m4), uf_model_free(mr);
    uf_image_free(rot), uf_image_free(imgs[0]), uf_image_free(imgs[1]);
}

/* Cosine: bank rows of unit norm, patch scores = min over the bank of 2 (1 - cos), the
 * image score = mean of the top round(0.01 * 16) = 1 patch scores (the max). The last
 * block resolved to the backbone's depth, with its features those of layers D..D. */
static void test_cosine_last_block(void)
{
    uf_image *train[2] = {synthetic(32, 32, 5), synthetic(48, 40, 6)};
    uf_image *test = synthetic(36, 32, 7);
    REQUIRE(train[0] && train[1] && test);
    uf_detector_params p = base_params();
    uf_detector_preset_anomalydino(&p);
    p.rotations = 1;
    p.pre.resize = p.pre.crop = S;
    p.sigma = 0;
    uf_model *m = fit(&p, train, 2);
    REQUIRE(m != NULL);
    uf_model_info mi;
    uf_model_get_info(m, &mi);
    CHECK(mi.params.layer_first == DEPTH && mi.params.layer_last == DEPTH);
    const float *bank = uf_model_bank(m);
    double worst = 0;
    for (size_t r = 0; r < mi.bank_size; r++) {
        double sq = 0;
        for (int c = 0; c < DIM; c++) sq += (double)bank[r * DIM + c] * bank[r * DIM + c];
        worst = fmax(worst, fabs(sq - 1));
    }
    CHECKF(worst < 1e-5, "bank norms off by %g", worst);
    /* raw features of the last block, normalised here, searched by brute force */
    uf_detector_params q = base_params();
    q.layer_first = q.layer_last = DEPTH;
    uf_model *mq = fit(&q, train, 2);
    uf_scorer *sq = NULL, *sc = NULL;
    REQUIRE(mq && uf_scorer_new(mq, &sq) == UF_OK && uf_scorer_new(m, &sc) == UF_OK);
    float raw[NP * DIM], sm[NP], ps[NP];
    uint8_t mk[NP];
    REQUIRE_OK(uf_scorer_extract(sq, (const uf_image *const *)&test, 1, raw, sm, mk));
    uf_score o = {.patch_scores = ps};
    REQUIRE_OK(uf_score_images(sc, (const uf_image *const *)&test, 1, &o));
    const float *rb = uf_model_bank(mq);
    double e = 0, top = -1;
    for (int i = 0; i < NP; i++) {
        double qn = 0, best = INFINITY;
        for (int c = 0; c < DIM; c++) qn += (double)raw[i * DIM + c] * raw[i * DIM + c];
        for (size_t r = 0; r < mi.bank_size; r++) {
            double bn = 0, dot = 0;
            for (int c = 0; c < DIM; c++) {
                bn += (double)rb[r * DIM + c] * rb[r * DIM + c];
                dot += (double)raw[i * DIM + c] * rb[r * DIM + c];
            }
            best = fmin(best, 2 * (1 - dot / sqrt(qn * bn)));
        }
        e = fmax(e, fabs(ps[i] - best));
        top = fmax(top, best);
    }
    CHECKF(e < 1e-4, "patch scores differ from 2 (1 - cos) by %g", e);
    CHECKF(fabs(o.score - top) < 1e-4, "image score %g, top patch %g", o.score, top);
    uf_scorer_free(sq), uf_scorer_free(sc), uf_model_free(m), uf_model_free(mq);
    uf_image_free(train[0]), uf_image_free(train[1]), uf_image_free(test);
}

/* The PCA mask: scoring masks with uf__pca_mask of the image's raw features; training
 * keeps every patch (AnomalyDINO's mask_ref_images = False). */
static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void test_pca_mask_pipeline(void)
{
    uf_image *train = synthetic(S, S, 8), *test = synthetic(S, S, 9);
    REQUIRE(train && test);
    /* an "object": a bright square of 4 x 4 patches amid a dark, flat background (more
     * than 35% of the central crop, so the mask keeps it and not its negation) */
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++)
            for (int c = 0; c < 3; c++) {
                uint8_t *v = &test->rgb[(y * S + x) * 3 + c];
                bool in = x >= 3 * PATCH && x < 7 * PATCH && y >= 3 * PATCH && y < 7 * PATCH;
                *v = (uint8_t)(in ? 200 + (*v & 15) : 20 + (*v & 3));
            }
    uf_detector_params p = base_params();
    p.pca_mask = 1;
    uf_model *m = fit(&p, &train, 1);
    REQUIRE(m != NULL);
    uf_model_info mi;
    uf_model_get_info(m, &mi);
    CHECKF(mi.bank_size == NP, "training image masked: %zu rows", mi.bank_size);
    uf_scorer *sc = NULL;
    float F[NP * DIM], sm[NP];
    uint8_t mk[NP], ref[NP];
    double proj[NP];
    REQUIRE_OK(uf_scorer_new(m, &sc));
    REQUIRE_OK(uf_scorer_extract(sc, (const uf_image *const *)&test, 1, F, sm, mk));
    uf_scorer_free(sc);
    uf_model_free(m);
    /* a threshold whose mask keeps some patches, not all (the default 10 is for DINOv2's
     * feature scale), then the model that uses it */
    REQUIRE_OK(uf__pca_first(F, GRID, GRID, GRID, DIM, proj));
    qsort(proj, NP, sizeof *proj, cmp_double);
    int found = 0;
    for (int k = NP - 1; k > 0 && !found; k--) {
        p.pca_threshold = (float)(0.5 * (proj[k] + proj[k - 1]));
        REQUIRE_OK(uf__pca_mask(F, GRID, GRID, GRID, DIM, p.pca_threshold, ref));
        int n = 0;
        for (int i = 0; i < NP; i++) n += ref[i];
        found = n > 0 && n < NP;
    }
    REQUIRE(found);
    m = fit(&p, &train, 1);
    REQUIRE(m != NULL && uf_scorer_new(m, &sc) == UF_OK);
    REQUIRE_OK(uf_scorer_extract(sc, (const uf_image *const *)&test, 1, F, sm, mk));
    REQUIRE_OK(uf__pca_mask(F, GRID, GRID, GRID, DIM, p.pca_threshold, ref));
    int kept = 0, diff = 0;
    for (int i = 0; i < NP; i++) kept += mk[i], diff += mk[i] != ref[i];
    CHECKF(diff == 0, "%d mask entries differ from uf__pca_mask", diff);
    CHECKF(kept > 0 && kept < NP, "the mask keeps %d of %d (no test)", kept, NP);
    /* the masked patches score 0 in the image score: a mask of nothing gives 0 */
    uf_score o = {0};
    REQUIRE_OK(uf_score_images(sc, (const uf_image *const *)&test, 1, &o));
    CHECK(o.score > 0);
    uf_scorer_free(sc);
    uf_model_free(m);
    uf_image_free(train), uf_image_free(test);
}

static void test_bad_params(void)
{
    uf_detector_params p = base_params();
    p.bpm = 1;
    p.pca_mask = 1;
    CHECK(uf_detector_params_check(&p, g_bb) == UF_ERR_ARG && strstr(uf_errmsg(), "pca_mask"));
    p = base_params();
    p.rotations = 0;
    CHECK(uf_detector_params_check(&p, g_bb) == UF_ERR_ARG && strstr(uf_errmsg(), "rotations"));
    p.rotations = 361;
    CHECK(uf_detector_params_check(&p, NULL) == UF_ERR_ARG);
    p = base_params();
    p.cosine = 2;
    CHECK(uf_detector_params_check(&p, NULL) == UF_ERR_ARG);
    p = base_params();
    p.pca_threshold = NAN;
    CHECK(uf_detector_params_check(&p, NULL) == UF_ERR_ARG);
    p = base_params();
    p.layer_first = UF_LAYER_LAST; /* only both at once */
    CHECK(uf_detector_params_check(&p, NULL) == UF_ERR_ARG);
    p.layer_last = UF_LAYER_LAST;
    CHECK(uf_detector_params_check(&p, g_bb) == UF_OK);
    uf_detector_preset_anomalydino(NULL); /* no-op */
}

int main(void)
{
    uf_vit_config cfg = {DIM, DEPTH, 3, PATCH, 48, GRID, 0, 11};
    if (uf_backbone_random(&cfg, &g_bb) != UF_OK) {
        fprintf(stderr, "random backbone: %s\n", uf_errmsg());
        return 1;
    }
    RUN(test_rotate);
    RUN(test_rotation_bank);
    RUN(test_cosine_last_block);
    RUN(test_pca_mask_pipeline);
    RUN(test_bad_params);
    uf_backbone_free(g_bb);
    return TEST_DONE();
}
