/*
 * test_tiling.c - the whole-image geometries of issue 13 beyond the plain own grid:
 * tiling of large images (uf_detector_params.tile / tile_overlap, detector.c
 * forward_tiles) and the letterbox (uf_preprocess.fit = UF_FIT_LONG with pad_to).
 *
 * Tiling is checked against an independent composition of public calls: every tile
 * window cut from the preprocessed image by hand, run alone through uf_forward, its BPM map
 * computed by uf__bpm on its own grid, and both averaged where the tiles overlap. The
 * stitched features and BPM maps of uf_scorer_extract must equal that (float rounding),
 * which fails for a wrong tile position, a missing or doubled tile, a max instead of the
 * mean, or one BPM map over the whole image instead of one per tile. A tile covering the
 * whole image must give the single-pass result bit for bit, fitting must put each image
 * location in the bank once, bad values must be refused with a message naming them, and
 * the settings must survive a model file round trip (older files loading as "no tiling,
 * fit auto"). Images are generated in memory and the backbone is a seeded random ViT, so
 * the test needs no shared data and takes well under a second.
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

/* ---- stitched features against tiles run one by one ---------------------------------- */

/* The reference: cut the (th x tw) windows at the tile starts from the own window (the
 * whole canvas rows 0..H-1, columns 0..W-1, H and W multiples of PATCH here), forward each
 * alone, average features and per-tile BPM maps over the tiles covering each patch. */
static void reference(const uf_backbone *bb, const uf_detector_params *p, const uf_image *img,
                      int H, int W, float *F, float *sm)
{
    const int S = p->pre.resize, T = p->tile, th = H < T ? H : T, tw = W < T ? W : T;
    const int gw = W / PATCH, gh = H / PATCH, tgh = th / PATCH, tgw = tw / PATCH;
    float *canvas = malloc(3 * (size_t)S * S * sizeof *canvas);
    float *win = malloc(3 * (size_t)th * tw * sizeof *win);
    float *blk = malloc(2 * (size_t)tgh * tgw * DIM * sizeof *blk);
    float *att = malloc((size_t)tgh * tgw * sizeof *att), *tm = malloc((size_t)tgh * tgw * 4);
    int *cnt = calloc((size_t)gh * gw, sizeof *cnt), ys[64], xs[64];
    uf_session *ss = NULL;
    REQUIRE(canvas && win && blk && att && tm && cnt);
    REQUIRE_OK(uf_preprocess_image(img, &p->pre, canvas));
    REQUIRE_OK(uf_session_new(bb, &ss));
    memset(F, 0, (size_t)gh * gw * DIM * sizeof *F);
    memset(sm, 0, (size_t)gh * gw * sizeof *sm);
    int ny = uf__tile_starts(H, T, p->tile_overlap, ys), nx = uf__tile_starts(W, T, p->tile_overlap, xs);
    for (int ty = 0; ty < ny; ty++)
        for (int tx = 0; tx < nx; tx++) {
            for (int c = 0; c < 3; c++)
                for (int y = 0; y < th; y++)
                    memcpy(win + ((size_t)c * th + y) * tw,
                           canvas + ((size_t)c * S + ys[ty] + y) * S + xs[tx], tw * sizeof *win);
            uf_forward_request req = {0};
            req.blocks = 3;
            req.attn_block = p->bpm ? 2 : 0;
            uf_forward_output out = {.blocks = blk, .attn = p->bpm ? att : NULL};
            REQUIRE_OK(uf_forward(ss, win, 1, th, tw, &req, &out));
            if (p->bpm) REQUIRE_OK(uf__bpm(att, tgh, tgw, p->bpm_kernel, p->bpm_lambda, tm, NULL));
            for (int y = 0; y < tgh; y++)
                for (int x = 0; x < tgw; x++) {
                    int q = (ys[ty] / PATCH + y) * gw + xs[tx] / PATCH + x, r = y * tgw + x;
                    cnt[q]++;
                    sm[q] += p->bpm ? tm[r] : 1.0f;
                    for (int c = 0; c < DIM; c++)
                        F[(size_t)q * DIM + c] +=
                            0.5f * (blk[(size_t)r * DIM + c] + blk[(size_t)(tgh * tgw + r) * DIM + c]);
                }
        }
    for (int q = 0; q < gh * gw; q++) {
        sm[q] /= (float)cnt[q];
        for (int c = 0; c < DIM; c++) F[(size_t)q * DIM + c] /= (float)cnt[q];
    }
    uf_session_free(ss);
    free(canvas);
    free(win);
    free(blk);
    free(att);
    free(tm);
    free(cnt);
}

/* img must be resized to exactly H x W (longer side = resize) with H, W multiples of 8. */
static void check_stitch(const uf_backbone *bb, const uf_detector_params *p, uf_image *img,
                         int H, int W, const char *what)
{
    const int S = p->pre.resize, G = S / PATCH, gh = H / PATCH, gw = W / PATCH;
    uf_model *m = NULL;
    { /* any bank will do: extraction does not read it */
        uf_image *one[1] = {img};
        m = fit(bb, p, one, 1);
    }
    REQUIRE(m != NULL);
    uf_scorer *sc = NULL;
    REQUIRE_OK(uf_scorer_new(m, &sc));
    float *F = malloc((size_t)G * G * DIM * sizeof *F), *sm = malloc((size_t)G * G * sizeof *sm);
    uint8_t *mk = malloc((size_t)G * G);
    float *rF = malloc((size_t)gh * gw * DIM * sizeof *rF), *rs = malloc((size_t)gh * gw * sizeof *rs);
    REQUIRE(F && sm && mk && rF && rs);
    const uf_image *ci = img;
    REQUIRE_OK(uf_scorer_extract(sc, &ci, 1, F, sm, mk));
    reference(bb, p, img, H, W, rF, rs);
    double ef = 0, es = 0, fmaxv = 0;
    int mask_bad = 0, pad_bad = 0;
    for (int y = 0; y < G; y++)
        for (int x = 0; x < G; x++) {
            int q = y * G + x, inside = y < gh && x < gw, r = y * gw + x;
            if (!inside) {
                pad_bad |= sm[q] != -1.0f || mk[q] != 0;
                continue;
            }
            for (int c = 0; c < DIM; c++) {
                ef = fmax(ef, fabs(F[(size_t)q * DIM + c] - rF[(size_t)r * DIM + c]));
                fmaxv = fmax(fmaxv, fabs(rF[(size_t)r * DIM + c]));
            }
            es = fmax(es, fabs(sm[q] - rs[r]));
            if (fabs(rs[r] - p->bpm_lambda) > 1e-5)
                mask_bad |= mk[q] != (p->bpm ? rs[r] > p->bpm_lambda : 1);
        }
    CHECKF(ef <= 1e-5 * fmax(1.0, fmaxv), "%s: stitched features differ from the tiles' mean "
           "by %g (max %g)", what, ef, fmaxv);
    CHECKF(es <= 1e-6, "%s: stitched BPM map differs by %g", what, es);
    CHECKF(!mask_bad && !pad_bad, "%s: mask %d, padding %d", what, mask_bad, pad_bad);
    free(F);
    free(sm);
    free(mk);
    free(rF);
    free(rs);
    uf_scorer_free(sc);
    uf_model_free(m);
}

static void test_stitch_matches_tiles(void)
{
    uf_backbone *bb = backbone();
    REQUIRE(bb != NULL);
    uf_image *img = texture(96, 48, 7, -1, 0); /* stays 96 x 48 with resize 96 */
    REQUIRE(img != NULL);
    uf_detector_params p = params(96, 32, 0, 1); /* 3 x 2 tiles, no overlap */
    check_stitch(bb, &p, img, 48, 96, "32 px tiles, no overlap");
    p = params(96, 32, 16, 1); /* 5 x 3 tiles, every inner patch seen 2 or 4 times */
    check_stitch(bb, &p, img, 48, 96, "32 px tiles, overlap 16");
    p = params(96, 40, 8, 0); /* 3 x 2 tiles, the last ones moved back; BPM off */
    check_stitch(bb, &p, img, 48, 96, "40 px tiles, overlap 8, no BPM");
    p = params(96, 48, 8, 1); /* one tile row: th = 48 */
    check_stitch(bb, &p, img, 48, 96, "48 px tiles, one row");
    p = params(96, 24, 8, 1); /* more tiles than one backbone call takes (8) */
    check_stitch(bb, &p, img, 48, 96, "24 px tiles, overlap 8 (18 tiles)");
    uf_image_free(img);
    uf_backbone_free(bb);
}

/* ---- a tile covering the image is the single pass; fitting; scoring ------------------ */

static void test_single_tile_and_fit(void)
{
    uf_backbone *bb = backbone();
    REQUIRE(bb != NULL);
    uf_image *train[4], *test[2];
    for (int i = 0; i < 4; i++) REQUIRE((train[i] = texture(96, 48, 100 + (uint64_t)i, -1, 0)));
    REQUIRE((test[0] = texture(96, 48, 200, -1, 0)));
    REQUIRE((test[1] = texture(96, 48, 200, 80, 30))); /* defect in the right tile column */
    float sc[3][2];
    size_t bank[3];
    const int tiles[3][2] = {{0, 0}, {96, 0}, {32, 8}}; /* off, one tile = the image, tiled */
    for (int k = 0; k < 3; k++) {
        uf_detector_params p = params(96, tiles[k][0], tiles[k][1], 0);
        uf_model *m = fit(bb, &p, train, 4);
        REQUIRE(m != NULL);
        uf_model_info in;
        uf_model_get_info(m, &in);
        bank[k] = in.bank_size_full;
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
    CHECKF(sc[1][0] == sc[0][0] && sc[1][1] == sc[0][1],
           "a tile covering the image: %g %g, single pass %g %g", sc[1][0], sc[1][1], sc[0][0],
           sc[0][1]);
    /* every image location is one bank row (BPM off: 12 x 6 patches per image) */
    CHECKF(bank[0] == 4 * 72 && bank[2] == 4 * 72, "bank rows: single pass %zu, tiled %zu "
           "(want %d: overlaps counted once)", bank[0], bank[2], 4 * 72);
    CHECKF(sc[2][1] > 1.5f * sc[2][0], "tiled: defect %g, good %g", sc[2][1], sc[2][0]);
    CHECKF(sc[2][0] != sc[0][0], "tiling changed nothing (%g)", sc[2][0]);
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
        CHECKF(hd[8] == (k == 0 ? 3 : 4), "model %d written as format version %d", k, hd[8]);
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
    for (int i = 0; i < 2; i++) uf_image_free(train[i]);
    uf_backbone_free(bb);
}

int main(void)
{
    RUN(test_tile_starts);
    RUN(test_stitch_matches_tiles);
    RUN(test_single_tile_and_fit);
    RUN(test_bad_values);
    RUN(test_letterbox);
    RUN(test_model_file);
    return TEST_DONE();
}
