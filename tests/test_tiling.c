/*
 * test_tiling.c - the whole-image geometries of issue 13 beyond the plain own grid:
 * tiling of large images (uf_detector_params.tile / tile_overlap, detector.c
 * forward_tiles / finish_tiled) and the letterbox (uf_preprocess.fit = UF_FIT_LONG with
 * pad_to, its bar patches left out).
 *
 * Tiling is checked against an independent composition: every tile window cut from the
 * image by hand and scored as an image of its own by an untiled whole-image model holding
 * the same bank (the existing single-pass path). The tiled model's extraction rows must
 * be those tiles' features, BPM maps and masks slot by slot; its patch-score map must be
 * the mean over the covering tiles of their patch scores, stitched by hand here; its image
 * score the top-K mean over every tile's masked patch scores (unused slots as zeros). That
 * fails for a wrong tile position or order, a missing or doubled tile, features averaged
 * before scoring, a max instead of the mean, or one BPM map over the whole image. Also:
 * uf_scorer_extract + uf_score_features equal uf_score_images bit for bit on a tiled model
 * (every output), fitting puts every tile's patches in the bank (the coreset fraction of
 * them), bad values are refused with a message naming them, and the settings
 * survive a model file round trip (tiled models written as format 5; a format-4 tiled
 * file still loads and scores). Images are generated in memory and the backbone is a
 * seeded random ViT, so the test needs no shared data and takes about a second.
 */
#include "harness.h"
#include "detector/detector.h" /* uf__tile_starts */
#include "detector/kernels.h"  /* uf__bpm */
#include "core/internal.h"      /* uf__preprocess_u8 */

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { PATCH = 8, DIM = 32 };

/* A w x h striped texture with seeded noise; defect: a red 12 x 12 square near (x0, y0). */
static uf_image *texture(int w, int h, uint64_t seed, int x0, int y0)
{
    uf_image *im = NULL;
    if (uf_image_new(w, h, &im) != UF_OK) return NULL;
    uint64_t st = seed;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int v = 128 + (int)(50 * sin(0.7 * x) * cos(0.3 * y)) +
                    (int)(uf_splitmix64(&st) % 9) - 4;
            uint8_t *px = im->rgb + 3 * ((size_t)y * w + (size_t)x);
            int red = x0 >= 0 && x >= x0 && x < x0 + 12 && y >= y0 && y < y0 + 12;
            px[0] = (uint8_t)(red ? 255 : v);
            px[1] = (uint8_t)(red ? 0 : v);
            px[2] = (uint8_t)(red ? 0 : v);
        }
    return im;
}

static uf_backbone *backbone(void)
{
    uf_vit_config cfg = {DIM, 2, 2, PATCH, 64, 8, 0, 7};
    uf_backbone *bb = NULL;
    return uf_backbone_random(&cfg, &bb) == UF_OK ? bb : NULL;
}

/* Whole-image params: resize R (the longer side), blocks 1-2, coreset 1, mean/std 0.5. */
static uf_detector_params params(int resize, int tile, int overlap, int bpm)
{
    uf_detector_params p = uf_detector_default_params();
    p.layer_first = 1;
    p.layer_last = 2;
    p.bpm = bpm;
    p.bpm_kernel = 3;
    p.bpm_lambda = 0.3f;
    p.sigma = 0;
    p.coreset = 1.0;
    p.pre.resize = resize;
    p.pre.crop = 0;
    for (int c = 0; c < 3; c++) p.pre.mean[c] = p.pre.std[c] = 0.5f;
    p.tile = tile;
    p.tile_overlap = overlap;
    return p;
}

static uf_model *fit(const uf_backbone *bb, const uf_detector_params *p, uf_image **imgs, int n)
{
    uf_fitter *f = NULL;
    uf_model *m = NULL;
    if (uf_fitter_new(bb, p, &f) != UF_OK) return NULL;
    if (uf_fitter_add(f, (const uf_image *const *)imgs, n) != UF_OK ||
        uf_fitter_finish(f, NULL, NULL, &m) != UF_OK)
        m = NULL;
    uf_fitter_free(f);
    return m;
}

/* ---- tile positions ------------------------------------------------------------------ */

static void test_tile_starts(void)
{
    int s[64];
    CHECK(uf__tile_starts(32, 32, 8, s) == 1 && s[0] == 0); /* fits: one tile */
    CHECK(uf__tile_starts(16, 32, 8, s) == 1 && s[0] == 0);
    CHECK(uf__tile_starts(40, 32, 0, s) == 2 && s[0] == 0 && s[1] == 8); /* last moved back */
    CHECK(uf__tile_starts(96, 32, 0, s) == 3 && s[1] == 32 && s[2] == 64); /* exact: no extra */
    CHECK(uf__tile_starts(96, 32, 16, s) == 5 && s[4] == 64);
    CHECK(uf__tile_starts(80, 32, 8, s) == 3 && s[1] == 24 && s[2] == 48);
    CHECK(uf__tile_starts(64, 32, 24, NULL) == 5); /* step 8: every patch column starts one */
    /* every side and overlap: starts rise from 0 by at most the step, the last tile ends at
     * the edge, so every pixel is covered and neighbours share at least the overlap */
    int bad = 0;
    for (int n = 8; n <= 200; n += 8)
        for (int ov = 0; ov < 32; ov += 8) {
            int k = uf__tile_starts(n, 32, ov, s);
            bad |= s[0] != 0 || k < 1 || k > n / (32 - ov) + 2;
            bad |= n > 32 ? s[k - 1] != n - 32 : k != 1;
            for (int i = 1; i < k; i++) bad |= s[i] <= s[i - 1] || s[i] - s[i - 1] > 32 - ov;
        }
    CHECK(!bad);
}

/* ---- tiled scoring against tiles scored one by one ----------------------------------- */

/* The w x h window of img at (x0, y0) as an image of its own. */
static uf_image *cut(const uf_image *img, int x0, int y0, int w, int h)
{
    uf_image *o = NULL;
    if (uf_image_new(w, h, &o) != UF_OK) return NULL;
    for (int y = 0; y < h; y++)
        memcpy(o->rgb + 3 * (size_t)y * w, img->rgb + 3 * ((size_t)(y0 + y) * img->width + x0),
               3 * (size_t)w);
    return o;
}

/* The same bank under other params (the untiled reference model). */
static uf_model *same_bank(const uf_backbone *bb, const uf_model *m, const uf_detector_params *p)
{
    uf_model_info in;
    uf_model_get_info(m, &in);
    float *bank = malloc(in.bank_size * DIM * sizeof *bank);
    if (!bank) return NULL;
    memcpy(bank, uf_model_bank(m), in.bank_size * DIM * sizeof *bank);
    uf_model *r = NULL;
    return uf__model_new(bb, p, bank, in.bank_size, in.bank_size, 1, &r) == UF_OK ? r : NULL;
}

/* img is W x H with the longer side = resize, so preprocessing keeps it as it is (and
 * each tile cut from it, with resize = the tile's longer side). */
static void check_tiled(const uf_backbone *bb, const uf_detector_params *p, uf_image *img,
                        const char *what)
{
    const int W = img->width, H = img->height, T = p->tile, O = p->tile_overlap;
    const int G = p->pre.resize / PATCH, gh = H / PATCH, gw = W / PATCH;
    const int th = H < T ? H : T, tw = W < T ? W : T, tg = T / PATCH;
    const int tgh = th / PATCH, tgw = tw / PATCH;
    uf_image *train[2] = {texture(W, H, 900, -1, 0), texture(W, H, 901, -1, 0)};
    REQUIRE(train[0] && train[1]);
    uf_model *m = fit(bb, p, train, 2);
    REQUIRE(m != NULL);
    uf_detector_params rp = *p; /* the reference: untiled own grid, canvas = one tile */
    rp.tile = rp.tile_overlap = 0;
    rp.pre.resize = th > tw ? th : tw;
    uf_model *rm = same_bank(bb, m, &rp);
    REQUIRE(rm != NULL);
    const int R = uf_model_patch_rows(m), tnp = tg * tg;
    int ys[64], xs[64];
    const int ny = uf__tile_starts(H, T, O, ys), nx = uf__tile_starts(W, T, O, xs);
    const int nmax = uf__tile_starts(p->pre.resize, T, O, NULL);
    CHECKF(R == nmax * nmax * tnp + 1, "%s: %d rows, want %d", what, R, nmax * nmax * tnp + 1);
    float *F = malloc((size_t)R * DIM * sizeof *F), *sm = malloc((size_t)R * sizeof *sm);
    uint8_t *mk = malloc((size_t)R);
    float *ps = malloc((size_t)G * G * sizeof *ps), *acc = calloc((size_t)G * G, sizeof *acc);
    int *cnt = calloc((size_t)G * G, sizeof *cnt);
    float *masked = calloc((size_t)R, sizeof *masked); /* every tile patch; unused: 0 */
    const int RG = rp.pre.resize / PATCH, rN = RG * RG;
    float *rF = malloc((size_t)rN * DIM * sizeof *rF), *rsm = malloc((size_t)rN * sizeof *rsm);
    float *rps = malloc((size_t)rN * sizeof *rps);
    uint8_t *rmk = malloc((size_t)rN);
    REQUIRE(F && sm && mk && ps && acc && cnt && masked && rF && rsm && rps && rmk);
    uf_scorer *sc = NULL, *rsc = NULL;
    REQUIRE_OK(uf_scorer_new(m, &sc));
    REQUIRE_OK(uf_scorer_new(rm, &rsc));
    const uf_image *ci = img;
    REQUIRE_OK(uf_scorer_extract(sc, &ci, 1, F, sm, mk));
    uf_score o = {.patch_scores = ps};
    REQUIRE_OK(uf_score_images(sc, &ci, 1, &o));
    double ef = 0, es = 0, ed = 0;
    int slot_bad = 0, unused_bad = 0;
    for (int t = 0; t < ny * nx; t++) {
        uf_image *ti = cut(img, xs[t % nx], ys[t / nx], tw, th);
        REQUIRE(ti != NULL);
        const uf_image *cti = ti;
        REQUIRE_OK(uf_scorer_extract(rsc, &cti, 1, rF, rsm, rmk));
        uf_score ro = {.patch_scores = rps};
        REQUIRE_OK(uf_score_images(rsc, &cti, 1, &ro));
        for (int y = 0; y < tgh; y++)
            for (int x = 0; x < tgw; x++) {
                const int r = t * tnp + y * tgw + x, q = y * RG + x; /* tiled row, own row */
                for (int c = 0; c < DIM; c++)
                    ef = fmax(ef, fabs(F[(size_t)r * DIM + c] - rF[(size_t)q * DIM + c]));
                es = fmax(es, fabs(sm[r] - rsm[q]));
                slot_bad |= mk[r] != rmk[q];
                const int i = (ys[t / nx] / PATCH + y) * G + xs[t % nx] / PATCH + x;
                acc[i] += rps[q];
                cnt[i]++;
                masked[r] = p->soft_mask ? (rsm[q] > 0 ? rps[q] * rsm[q] : 0.0f)
                                         : (rmk[q] ? rps[q] : 0.0f);
            }
        uf_image_free(ti);
    }
    for (int r = 0; r < R; r++) { /* rows no tile wrote: unused (the header: last row) */
        const int t = r / tnp, k = r % tnp, used = r < R - 1 && t < ny * nx && k < tgh * tgw;
        if (!used) unused_bad |= sm[r] != -1.0f || mk[r] != 0;
    }
    unused_bad |= F[(size_t)(R - 1) * DIM] != (float)gh || F[(size_t)(R - 1) * DIM + 1] != (float)gw;
    CHECKF(ef <= 1e-6 && es <= 1e-7 && !slot_bad, "%s: tile slots differ from the tiles run "
           "alone: features %g, BPM %g, masks %d", what, ef, es, slot_bad);
    CHECKF(!unused_bad, "%s: unused rows or header wrong", what);
    for (int y = 0; y < G; y++) /* the stitched map: the mean of the covering tiles */
        for (int x = 0; x < G; x++) {
            const int i = y * G + x;
            const int in = y < gh && x < gw;
            CHECKF(in ? cnt[i] >= 1 : cnt[i] == 0, "%s: patch %d,%d covered %d times", what, y,
                   x, cnt[i]);
            const float want = cnt[i] ? acc[i] / (float)cnt[i] : 0.0f;
            ed = fmax(ed, fabs(ps[i] - want) / fmax(1.0, fabs(want)));
        }
    CHECKF(ed <= 1e-5, "%s: stitched patch scores differ from the tiles' mean by %g", what, ed);
    /* the image score: the top-K mean over every tile's patches (R - 1 rows) */
    const int N = R - 1, K = uf__topk_count(N, p->topk);
    for (int i = 1; i < N; i++) /* insertion sort, descending (small N) */
        for (int j = i; j > 0 && masked[j] > masked[j - 1]; j--) {
            float tmp = masked[j];
            masked[j] = masked[j - 1];
            masked[j - 1] = tmp;
        }
    double sum = 0;
    for (int k = 0; k < K; k++) sum += masked[k];
    const double want = sum / K;
    CHECKF(fabs(o.score - want) <= 1e-5 * fmax(1.0, want), "%s: image score %g, tiles' top-K "
           "mean %g", what, o.score, want);
    free(F), free(sm), free(mk), free(ps), free(acc), free(cnt), free(masked);
    free(rF), free(rsm), free(rps), free(rmk);
    uf_scorer_free(sc);
    uf_scorer_free(rsc);
    uf_model_free(rm);
    uf_model_free(m);
    uf_image_free(train[0]);
    uf_image_free(train[1]);
}

static void test_tiles_scored_alone(void)
{
    uf_backbone *bb = backbone();
    REQUIRE(bb != NULL);
    uf_image *img = texture(96, 48, 7, 60, 20); /* stays 96 x 48 with resize 96; a defect */
    REQUIRE(img != NULL);
    uf_detector_params p = params(96, 32, 0, 1); /* 3 x 2 tiles, no overlap */
    check_tiled(bb, &p, img, "32 px tiles, no overlap");
    p = params(96, 32, 16, 1); /* 5 x 3 tiles, every inner patch seen 2 or 4 times */
    check_tiled(bb, &p, img, "32 px tiles, overlap 16");
    p = params(96, 40, 8, 0); /* 3 x 2 tiles, the last ones moved back; BPM off */
    check_tiled(bb, &p, img, "40 px tiles, overlap 8, no BPM");
    p = params(96, 48, 8, 1); /* one tile row: th = 48 */
    check_tiled(bb, &p, img, "48 px tiles, one row");
    p = params(96, 24, 8, 1); /* more tiles than one backbone call takes (8) */
    check_tiled(bb, &p, img, "24 px tiles, overlap 8 (18 tiles)");
    p = params(96, 32, 16, 1);
    p.soft_mask = 1;
    check_tiled(bb, &p, img, "32 px tiles, overlap 16, soft mask");
    uf_image_free(img);
    img = texture(40, 96, 8, 10, 70); /* portrait, narrower than a tile */
    REQUIRE(img != NULL);
    p = params(96, 48, 16, 1);
    check_tiled(bb, &p, img, "portrait 40 x 96, 48 px tiles");
    uf_image_free(img);
    uf_backbone_free(bb);
}

/* ---- two-step scoring, fitting, detection -------------------------------------------- */

static int same_bits(const void *a, const void *b, size_t n) { return memcmp(a, b, n) == 0; }

static void test_two_steps_bitwise(void)
{
    uf_backbone *bb = backbone();
    REQUIRE(bb != NULL);
    uf_image *train[3], *test[4];
    for (int i = 0; i < 3; i++) REQUIRE((train[i] = texture(96, 64, 40 + (uint64_t)i, -1, 0)));
    REQUIRE((test[0] = texture(96, 64, 50, 70, 40)));
    REQUIRE((test[1] = texture(48, 96, 51, -1, 0)));
    REQUIRE((test[2] = texture(30, 20, 52, -1, 0))); /* within one tile */
    REQUIRE((test[3] = texture(96, 96, 53, 8, 8)));
    for (int soft = 0; soft < 2; soft++) {
        uf_detector_params p = params(96, 40, 16, 1);
        p.soft_mask = soft;
        p.sigma = 2;
        uf_model *m = fit(bb, &p, train, 3);
        REQUIRE(m != NULL);
        int gh, gw, S, D;
        uf_model_output_size(m, &gh, &gw, &S, &D);
        const size_t R = (size_t)uf_model_patch_rows(m), Np = (size_t)gh * gw;
        float *F = malloc(4 * R * D * sizeof *F), *sm = malloc(4 * R * sizeof *sm);
        uint8_t *mk = malloc(4 * R);
        float *buf[2];
        uint8_t *mb[2];
        uf_score o[2][4];
        for (int k = 0; k < 2; k++) {
            buf[k] = malloc(4 * (Np + (size_t)S * S + Np * D + D) * sizeof(float));
            mb[k] = malloc(4 * Np);
            REQUIRE(buf[k] && mb[k]);
            for (int i = 0; i < 4; i++) {
                float *b0 = buf[k] + i * (Np + (size_t)S * S + Np * D + D);
                o[k][i] = (uf_score){.patch_scores = b0, .pixel_map = b0 + Np,
                                     .patch_features = b0 + Np + (size_t)S * S,
                                     .feature = b0 + Np + (size_t)S * S + Np * D,
                                     .mask = mb[k] + i * Np};
            }
        }
        REQUIRE(F && sm && mk);
        uf_scorer *sc = NULL;
        REQUIRE_OK(uf_scorer_new(m, &sc));
        REQUIRE_OK(uf_score_images(sc, (const uf_image *const *)test, 4, o[0]));
        REQUIRE_OK(uf_scorer_extract(sc, (const uf_image *const *)test, 4, F, sm, mk));
        REQUIRE_OK(uf_score_features(sc, F, sm, mk, 4, o[1]));
        int same = 1;
        for (int i = 0; i < 4; i++) same &= same_bits(&o[0][i].score, &o[1][i].score, 4);
        same &= same_bits(buf[0], buf[1], 4 * (Np + (size_t)S * S + Np * D + D) * sizeof(float));
        same &= same_bits(mb[0], mb[1], 4 * Np);
        CHECKF(same, "soft %d: extract + score_features differ from score_images", soft);
        /* score alone (no maps: the foreground-only search) gives the same image scores */
        uf_score bare[4];
        memset(bare, 0, sizeof bare);
        REQUIRE_OK(uf_score_features(sc, F, sm, mk, 4, bare));
        for (int i = 0; i < 4; i++)
            CHECKF(same_bits(&bare[i].score, &o[0][i].score, 4), "soft %d image %d: %g vs %g",
                   soft, i, bare[i].score, o[0][i].score);
        /* the pixel map: the padding (outside the 48 x 96 image's grid) at the map's minimum */
        const float *pm = o[0][1].pixel_map;
        float lo = pm[0];
        for (int i = 1; i < S * S; i++) lo = pm[i] < lo ? pm[i] : lo;
        CHECKF(pm[(size_t)10 * S + 80] == lo && o[0][1].patch_scores[2 * gw + 10] == 0.0f,
               "portrait image: padding not at the minimum");
        /* a damaged header is refused when maps are asked for */
        F[(R - 1) * D] = 99;
        CHECK(uf_score_features(sc, F, sm, mk, 1, o[1]) == UF_ERR_ARG);
        uf_scorer_free(sc);
        for (int k = 0; k < 2; k++) free(buf[k]), free(mb[k]);
        free(F), free(sm), free(mk);
        uf_model_free(m);
    }
    for (int i = 0; i < 3; i++) uf_image_free(train[i]);
    for (int i = 0; i < 4; i++) uf_image_free(test[i]);
    uf_backbone_free(bb);
}

static void test_fit_and_detect(void)
{
    uf_backbone *bb = backbone();
    REQUIRE(bb != NULL);
    uf_image *train[4], *test[2];
    for (int i = 0; i < 4; i++) REQUIRE((train[i] = texture(96, 48, 100 + (uint64_t)i, -1, 0)));
    REQUIRE((test[0] = texture(96, 48, 200, -1, 0)));
    REQUIRE((test[1] = texture(96, 48, 200, 80, 30))); /* defect in the right tile column */
    float sc[3][2];
    size_t bank[3], full[3];
    const double cs[3] = {1.0, 1.0, 0.5};
    for (int k = 0; k < 3; k++) {
        uf_detector_params p = params(96, k == 0 ? 0 : 32, k == 0 ? 0 : 8, 0);
        p.coreset = cs[k];
        uf_model *m = fit(bb, &p, train, 4);
        REQUIRE(m != NULL);
        uf_model_info in;
        uf_model_get_info(m, &in);
        bank[k] = in.bank_size;
        full[k] = in.bank_size_full;
        uf_scorer *s = NULL;
        REQUIRE_OK(uf_scorer_new(m, &s));
        uf_score out[2];
        memset(out, 0, sizeof out);
        REQUIRE_OK(uf_score_images(s, (const uf_image *const *)test, 2, out));
        sc[k][0] = out[0].score;
        sc[k][1] = out[1].score;
        uf_scorer_free(s);
        uf_model_free(m);
    }
    /* BPM off: 12 x 6 locations per image; 32 px tiles, overlap 8 -> 4 x 2 tiles of 4 x 4
     * patches: every tile patch is a bank row (overlaps twice), 128 per image */
    CHECKF(full[0] == 4 * 72 && full[1] == 4 * 128 && bank[1] == 4 * 128,
           "bank rows: single pass %zu, tiled %zu / %zu (want 288, 512)", full[0], full[1], bank[1]);
    /* coreset 0.5 of the 512 tile patches offered */
    CHECKF(full[2] == 512 && bank[2] == 256, "tiled coreset 0.5: %zu of %zu (want 256)",
           bank[2], full[2]);
    CHECKF(sc[1][1] > 1.5f * sc[1][0], "tiled: defect %g, good %g", sc[1][1], sc[1][0]);
    CHECKF(sc[1][0] != sc[0][0], "tiling changed nothing (%g)", sc[1][0]);
    for (int i = 0; i < 4; i++) uf_image_free(train[i]);
    uf_image_free(test[0]);
    uf_image_free(test[1]);
    uf_backbone_free(bb);
}

/* ---- bad values, the letterbox, model files ----------------------------------------- */

static void expect_refused(const uf_backbone *bb, uf_detector_params p, const char *needle)
{
    uf_status s = uf_detector_params_check(&p, bb);
    CHECKF(s == UF_ERR_ARG && strstr(uf_errmsg(), needle), "want '%s', got %d '%s'", needle,
           (int)s, s ? uf_errmsg() : "");
}

static void test_bad_values(void)
{
    uf_backbone *bb = backbone();
    REQUIRE(bb != NULL);
    uf_detector_params p = params(96, 32, 8, 1);
    REQUIRE_OK(uf_detector_params_check(&p, bb));
    expect_refused(bb, params(96, 30, 0, 1), "multiples of the patch size 8");
    expect_refused(bb, params(96, 32, 12, 1), "multiples of the patch size 8");
    expect_refused(bb, params(96, 32, 32, 1), "0 <= tile_overlap < tile");
    expect_refused(bb, params(96, -8, 0, 1), "need tile >= 0");
    expect_refused(bb, params(96, 0, 8, 1), "0 <= tile_overlap < tile");
    p = params(96, 32, 0, 1);
    p.pre.crop = 64;
    expect_refused(bb, p, "tiling needs the whole-image geometry");
    p = params(96, 32, 0, 1);
    p.pre.pad_to = 96;
    expect_refused(bb, p, "tiling needs the whole-image geometry");
    p = params(96, 0, 0, 1);
    p.pre.fit = UF_FIT_SHORT;
    expect_refused(bb, p, "fit short needs a crop or pad_to");
    p.pre.fit = (uf_fit)7;
    expect_refused(bb, p, "unknown fit 7");
    uf_backbone_free(bb);
}

static void test_letterbox(void)
{
    uf_preprocess pre = uf_preprocess_default();
    pre.resize = 64;
    pre.crop = 0;
    pre.pad_to = 64;
    pre.fit = UF_FIT_LONG;
    int rw, rh, l, t;
    uf_preprocess_geometry(&pre, 200, 100, &rw, &rh, &l, &t);
    CHECKF(rw == 64 && rh == 32 && l == 0 && t == -16, "letterbox 200x100: %dx%d at %d,%d", rw,
           rh, l, t);
    CHECK(uf_preprocess_coverage(&pre, 200, 100) == 1.0);
    uf_preprocess_geometry(&pre, 90, 300, &rw, &rh, &l, &t); /* portrait: int(64*90/300) = 19 */
    CHECKF(rw == 19 && rh == 64 && l == -22 && t == 0, "letterbox 90x300: %dx%d at %d,%d", rw,
           rh, l, t);
    uf_image *img = texture(200, 100, 3, -1, 0), *u8 = NULL;
    REQUIRE(img != NULL);
    REQUIRE_OK(uf__preprocess_u8(img, &pre, &u8));
    int zero_band = 1, image_band = 0;
    for (int y = 0; y < 64; y++)
        for (int x = 0; x < 64; x++) {
            const uint8_t *px = u8->rgb + 3 * ((size_t)y * 64 + x);
            if (y < 16 || y >= 48) zero_band &= px[0] == 0 && px[1] == 0 && px[2] == 0;
            else image_band += px[0] != 0;
        }
    CHECKF(zero_band && image_band > 32 * 60, "letterbox canvas: bands %d, image pixels %d",
           zero_band, image_band);
    uf_image_free(u8);
    /* fit short (the default with pad_to) keeps the small-image protocol: shorter side */
    pre.fit = UF_FIT_AUTO;
    pre.resize = 32;
    uf_preprocess_geometry(&pre, 64, 32, &rw, &rh, &l, &t);
    CHECKF(rw == 64 && rh == 32 && l == 0 && t == -16, "pad_to, fit auto: %dx%d at %d,%d", rw,
           rh, l, t);
    pre.resize = 64; /* 128 x 64 does not fit the canvas */
    float *out = malloc(3 * 64 * 64 * sizeof *out);
    REQUIRE(out != NULL);
    CHECK(uf_preprocess_image(img, &pre, out) == UF_ERR_ARG);
    free(out);
    uf_image_free(img);
}

/* The letterbox's bars: a 64 x 40 image on the 64 x 64 canvas (rows 12..51) has patch
 * rows 0 and 7 entirely in the bars - not the image: smooth -1, mask 0, patch score 0,
 * the pixel map's minimum there - and rows 1 and 6 partly on it, which stay, their bar
 * pixels filled with the image's edge rows: so the 64 x 40 image gives exactly what the
 * same image with its edge rows repeated to 64 x 48 (rows 8..55, no partial patch) gives.
 * Before, the partial patches held black rows and every bar patch was scored. */
static void test_letterbox_bars(void)
{
    uf_backbone *bb = backbone();
    REQUIRE(bb != NULL);
    uf_image *train[3], *img = texture(64, 40, 77, 20, 14), *ext = NULL;
    for (int i = 0; i < 3; i++) REQUIRE((train[i] = texture(64, 64, 70 + (uint64_t)i, -1, 0)));
    REQUIRE(img && uf_image_new(64, 48, &ext) == UF_OK);
    for (int y = 0; y < 48; y++) {
        const int sy = y < 4 ? 0 : y >= 44 ? 39 : y - 4;
        memcpy(ext->rgb + 3 * (size_t)y * 64, img->rgb + 3 * (size_t)sy * 64, 3 * 64);
    }
    uf_detector_params p = params(64, 0, 0, 1);
    p.pre.pad_to = 64;
    p.pre.fit = UF_FIT_LONG;
    p.sigma = 2;
    uf_model *m = fit(bb, &p, train, 3);
    REQUIRE(m != NULL);
    REQUIRE(uf_model_patch_rows(m) == 64);
    uf_scorer *sc = NULL;
    REQUIRE_OK(uf_scorer_new(m, &sc));
    float ps[2][64], pm[2][64 * 64], F[2][64 * DIM], sm[2][64];
    uint8_t mk[2][64], om[2][64];
    uf_score o[2] = {{.patch_scores = ps[0], .pixel_map = pm[0], .mask = om[0]},
                     {.patch_scores = ps[1], .pixel_map = pm[1], .mask = om[1]}};
    const uf_image *both[2] = {img, ext};
    REQUIRE_OK(uf_score_images(sc, both, 2, o));
    REQUIRE_OK(uf_scorer_extract(sc, both, 2, &F[0][0], &sm[0][0], &mk[0][0]));
    int bars = 1, kept = 1;
    for (int y = 0; y < 8; y++)
        for (int x = 0; x < 8; x++) {
            const int i = y * 8 + x;
            if (y == 0 || y == 7) bars &= sm[0][i] == -1.0f && mk[0][i] == 0 && ps[0][i] == 0.0f;
            else kept &= sm[0][i] >= 0;
        }
    float lo = pm[0][0];
    for (int i = 1; i < 64 * 64; i++) lo = pm[0][i] < lo ? pm[0][i] : lo;
    int map_lo = 1;
    for (int x = 0; x < 64; x++) map_lo &= pm[0][3 * 64 + x] == lo && pm[0][60 * 64 + x] == lo;
    CHECKF(bars && kept && map_lo, "bar patches: marked %d, image patches kept %d, map "
           "minimum in the bars %d", bars, kept, map_lo);
    CHECKF(o[0].score == o[1].score && !memcmp(F[0], F[1], sizeof F[0]) &&
               !memcmp(pm[0], pm[1], sizeof pm[0]),
           "64 x 40 letterboxed (score %g) differs from its edge rows repeated to 64 x 48 (%g)",
           o[0].score, o[1].score);
    uf_scorer_free(sc);
    uf_model_free(m);
    for (int i = 0; i < 3; i++) uf_image_free(train[i]);
    uf_image_free(img);
    uf_image_free(ext);
    uf_backbone_free(bb);
}

static void test_model_file(void)
{
    uf_backbone *bb = backbone();
    REQUIRE(bb != NULL);
    uf_image *train[2];
    for (int i = 0; i < 2; i++) REQUIRE((train[i] = texture(96, 48, 300 + (uint64_t)i, -1, 0)));
    char path[64];
    snprintf(path, sizeof path, "/tmp/uf_tiling_%d.ufm", (int)getpid());
    for (int k = 0; k < 3; k++) {
        uf_detector_params p = params(96, k == 0 ? 0 : 32, k == 0 ? 0 : 16, 1);
        if (k == 2) { /* the letterbox */
            p.tile = p.tile_overlap = 0;
            p.pre.pad_to = 96;
            p.pre.fit = UF_FIT_LONG;
        }
        uf_model *m = fit(bb, &p, train, 2), *l = NULL;
        REQUIRE(m != NULL);
        REQUIRE_OK(uf_model_save(m, path, 0));
        FILE *f = fopen(path, "rb");
        unsigned char hd[12] = {0};
        REQUIRE(f != NULL);
        CHECK(fread(hd, 1, 12, f) == 12);
        fclose(f);
        /* tiled: 5 (older builds refuse its bank of tile patches); fit long alone: 4 */
        CHECKF(hd[8] == (k == 0 ? 3 : k == 1 ? 5 : 4), "model %d written as format version %d",
               k, hd[8]);
        REQUIRE_OK(uf_model_load(path, NULL, &l));
        uf_model_info a, b;
        uf_model_get_info(m, &a);
        uf_model_get_info(l, &b);
        CHECKF(b.params.tile == p.tile && b.params.tile_overlap == p.tile_overlap &&
                   b.params.pre.fit == p.pre.fit && b.params.pre.pad_to == p.pre.pad_to,
               "model %d: tile %d/%d overlap %d fit %d/%d", k, b.params.tile, p.tile,
               b.params.tile_overlap, (int)b.params.pre.fit, (int)p.pre.fit);
        uf_model_free(l);
        uf_model_free(m);
    }
    unlink(path);
    uf_model *old = NULL; /* a version-1 file from before these settings */
    uf_model_load_params lp = uf_model_load_default_params();
    lp.backbone_path = "tests/data/golden/m1.safetensors"; /* its recorded path is absolute */
    REQUIRE_OK(uf_model_load("tests/data/detector/model_v1.ufm", &lp, &old));
    uf_model_info oi;
    uf_model_get_info(old, &oi);
    CHECK(oi.params.tile == 0 && oi.params.tile_overlap == 0 && oi.params.pre.fit == UF_FIT_AUTO);
    uf_model_free(old);
    /* a format-4 tiled model (written by the build before tile patches were scored one by
     * one: its bank holds the tiles' features averaged in overlaps) loads and scores */
    REQUIRE_OK(uf_model_load("tests/data/detector/model_v4_tiled.ufm", &lp, &old));
    uf_model_get_info(old, &oi);
    CHECK(oi.params.tile == 64 && oi.params.tile_overlap == 32 && oi.params.pre.resize == 128);
    uf_image *t4 = NULL;
    REQUIRE_OK(uf_image_load("tests/data/detector/test_blob.png", &t4));
    uf_scorer *s4 = NULL;
    REQUIRE_OK(uf_scorer_new(old, &s4));
    uf_score o4 = {0};
    REQUIRE_OK(uf_score_images(s4, (const uf_image *const *)&t4, 1, &o4));
    CHECKF(isfinite(o4.score) && o4.score > 0, "format-4 tiled model: score %g", o4.score);
    uf_scorer_free(s4);
    uf_image_free(t4);
    uf_model_free(old);
    for (int i = 0; i < 2; i++) uf_image_free(train[i]);
    uf_backbone_free(bb);
}

int main(void)
{
    RUN(test_tile_starts);
    RUN(test_tiles_scored_alone);
    RUN(test_two_steps_bitwise);
    RUN(test_fit_and_detect);
    RUN(test_bad_values);
    RUN(test_letterbox);
    RUN(test_letterbox_bars);
    RUN(test_model_file);
    return TEST_DONE();
}
