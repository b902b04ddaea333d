/*
 * test_scoring.c - the ways of scoring agree: uf_score_features on features from
 * uf_scorer_extract equals uf_score_images bit for bit (with and without the foreground-only
 * search), and one loaded model scored from 8 threads at once gives exactly the results
 * of scoring serially: the model is immutable and every thread has its own scorer. Also run
 * under ThreadSanitizer by `make tsan` (issue 5), where a data race fails the run.
 *
 * Uses the tiny golden ViT of tests/data/detector (dim 48, 4 heads, depth 10, patch 8) and
 * its PNGs, through a saved and re-loaded model file, so the shared object is exactly what
 * `uniformaly predict` shares.
 */
#include "harness.h"
#include "uniformaly.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>

#define DATA "tests/data/detector/"
#define NT 8     /* threads                */
#define NIMG 3   /* test images            */
#define ROUNDS 4 /* scorings per thread    */

static const char *const k_train[] = {"train_0.png", "train_1.png", "train_2.png", "train_3.png"};
static const char *const k_test[NIMG] = {"test_good.png", "test_blob.png", "test_crack.png"};

typedef struct job {
    const uf_model *m;
    const uf_image *const *imgs;
    int S, D, G;
    float score[NIMG];
    float *maps;  /* [NIMG][S][S] */
    float *feats; /* [NIMG][D]    */
    float *patch; /* [NIMG][G]    */
    int status;   /* UF_OK, or the failure */
    int mismatch; /* rounds whose results differed from the thread's first round */
} job;

/* Score every test image one by one, ROUNDS times; the first round's results are kept and
 * later rounds must repeat them bit for bit. */
static void *work(void *arg)
{
    job *j = arg;
    uf_scorer *sc = NULL;
    j->status = uf_scorer_new(j->m, &sc);
    size_t SS = (size_t)j->S * j->S;
    float *map = malloc(SS * sizeof *map), *feat = malloc((size_t)j->D * sizeof *feat);
    float *pat = malloc((size_t)j->G * sizeof *pat);
    if (!map || !feat || !pat) j->status = UF_ERR_NOMEM;
    for (int r = 0; r < ROUNDS && j->status == UF_OK; r++)
        for (int i = 0; i < NIMG && j->status == UF_OK; i++) {
            uf_score o = {.pixel_map = map, .feature = feat, .patch_scores = pat};
            j->status = uf_score_images(sc, &j->imgs[i], 1, &o);
            if (j->status != UF_OK) break;
            if (r == 0) {
                j->score[i] = o.score;
                memcpy(j->maps + SS * i, map, SS * sizeof *map);
                memcpy(j->feats + (size_t)j->D * i, feat, (size_t)j->D * sizeof *feat);
                memcpy(j->patch + (size_t)j->G * i, pat, (size_t)j->G * sizeof *pat);
            } else {
                j->mismatch += o.score != j->score[i] ||
                               memcmp(map, j->maps + SS * i, SS * sizeof *map) ||
                               memcmp(pat, j->patch + (size_t)j->G * i, (size_t)j->G * sizeof *pat);
            }
        }
    free(map);
    free(feat);
    free(pat);
    uf_scorer_free(sc);
    return NULL;
}

/* A model fitted on the 4 training PNGs, saved and re-loaded; test images in test[]. */
static uf_backbone *g_bb;
static uf_model *g_m0, *g_m;
static uf_image *g_train[4], *g_test[NIMG];

static void test_eight_threads_equal_serial(void)
{
    uf_backbone_params bp = uf_backbone_default_params();
    bp.heads = 4;
    uf_backbone *bb = NULL;
    REQUIRE_OK(uf_backbone_load(DATA "vit.safetensors", &bp, &bb));
    uf_image *train[4] = {0}, *test[NIMG] = {0};
    char path[256];
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, DATA "%s", k_train[i]);
        REQUIRE_OK(uf_image_load(path, &train[i]));
    }
    for (int i = 0; i < NIMG; i++) {
        snprintf(path, sizeof path, DATA "%s", k_test[i]);
        REQUIRE_OK(uf_image_load(path, &test[i]));
    }
    uf_detector_params p = uf_detector_default_params();
    p.pre.resize = 56;
    p.pre.crop = 48;
    p.coreset = 0.5;
    uf_fitter *f = NULL;
    uf_model *m0 = NULL, *m = NULL;
    REQUIRE_OK(uf_fitter_new(bb, &p, &f));
    REQUIRE_OK(uf_fitter_add(f, (const uf_image *const *)train, 4));
    REQUIRE_OK(uf_fitter_finish(f, NULL, NULL, &m0));
    char tmpl[] = "/tmp/uf_threads_XXXXXX";
    int fd = mkstemp(tmpl);
    REQUIRE(fd >= 0);
    close(fd);
    REQUIRE_OK(uf_model_save(m0, tmpl, 1));
    REQUIRE_OK(uf_model_load(tmpl, NULL, &m));
    unlink(tmpl);

    int gh, gw, S, D;
    uf_model_output_size(m, &gh, &gw, &S, &D);
    job serial = {.m = m, .imgs = (const uf_image *const *)test, .S = S, .D = D, .G = gh * gw};
    job jobs[NT];
    size_t SS = (size_t)S * S;
    serial.maps = malloc(NIMG * SS * sizeof(float));
    serial.feats = malloc((size_t)NIMG * D * sizeof(float));
    serial.patch = malloc((size_t)NIMG * gh * gw * sizeof(float));
    REQUIRE(serial.maps && serial.feats && serial.patch);
    work(&serial); /* the reference, on this thread alone */
    CHECKF(serial.status == UF_OK && serial.mismatch == 0, "serial: %s", uf_errmsg());

    pthread_t th[NT];
    for (int t = 0; t < NT; t++) {
        jobs[t] = serial;
        jobs[t].maps = malloc(NIMG * SS * sizeof(float));
        jobs[t].feats = malloc((size_t)NIMG * D * sizeof(float));
        jobs[t].patch = malloc((size_t)NIMG * gh * gw * sizeof(float));
        jobs[t].mismatch = 0;
        REQUIRE(jobs[t].maps && jobs[t].feats && jobs[t].patch);
        REQUIRE(pthread_create(&th[t], NULL, work, &jobs[t]) == 0);
    }
    for (int t = 0; t < NT; t++) pthread_join(th[t], NULL);
    int same = 0;
    for (int t = 0; t < NT; t++) {
        CHECKF(jobs[t].status == UF_OK, "thread %d failed with status %d", t, jobs[t].status);
        CHECKF(jobs[t].mismatch == 0, "thread %d: results changed between rounds", t);
        bool eq = !memcmp(jobs[t].score, serial.score, sizeof serial.score) &&
                  !memcmp(jobs[t].maps, serial.maps, NIMG * SS * sizeof(float)) &&
                  !memcmp(jobs[t].feats, serial.feats, (size_t)NIMG * D * sizeof(float)) &&
                  !memcmp(jobs[t].patch, serial.patch, (size_t)NIMG * gh * gw * sizeof(float));
        CHECKF(eq, "thread %d: results differ from serial scoring", t);
        same += eq;
        free(jobs[t].maps);
        free(jobs[t].feats);
        free(jobs[t].patch);
    }
    fprintf(stderr, "  %d threads x %d rounds x %d images: %d/%d threads bit-identical to serial "
                    "(scores %.6g %.6g %.6g)\n", NT, ROUNDS, NIMG, same, NT, serial.score[0],
            serial.score[1], serial.score[2]);
    /* the ranking is sane: defective images above the good one */
    CHECK(serial.score[1] > serial.score[0] && serial.score[2] > serial.score[0]);
    free(serial.maps);
    free(serial.feats);
    free(serial.patch);
    uf_fitter_free(f);
    /* kept for the next test */
    g_bb = bb, g_m0 = m0, g_m = m;
    memcpy(g_train, train, sizeof train);
    memcpy(g_test, test, sizeof test);
}

/* extract + score_features == score_images, bitwise; the foreground-only search (no maps
 * requested) gives the same image scores and features. */
static void test_features_path(void)
{
    if (!g_m) SKIP("no model (previous test failed)");
    int gh, gw, S, D;
    uf_model_output_size(g_m, &gh, &gw, &S, &D);
    const size_t Np = (size_t)gh * gw;
    uf_scorer *sc = NULL;
    REQUIRE_OK(uf_scorer_new(g_m, &sc));
    float *feats = malloc(NIMG * Np * D * sizeof(float)), *smooth = malloc(NIMG * Np * sizeof(float));
    uint8_t *mask = malloc(NIMG * Np);
    float *m1 = malloc(NIMG * (size_t)S * S * sizeof(float)), *m2 = malloc(NIMG * (size_t)S * S * sizeof(float));
    float *f1 = malloc(NIMG * (size_t)D * sizeof(float)), *f2 = malloc(NIMG * (size_t)D * sizeof(float));
    float *f3 = malloc(NIMG * (size_t)D * sizeof(float)), *pf = malloc(NIMG * Np * D * sizeof(float));
    REQUIRE(feats && smooth && mask && m1 && m2 && f1 && f2 && f3 && pf);
    uf_score a[NIMG], b[NIMG], c[NIMG];
    for (int i = 0; i < NIMG; i++) {
        a[i] = (uf_score){.pixel_map = m1 + (size_t)i * S * S, .feature = f1 + (size_t)i * D,
                          .patch_features = pf + i * Np * D};
        b[i] = (uf_score){.pixel_map = m2 + (size_t)i * S * S, .feature = f2 + (size_t)i * D};
        c[i] = (uf_score){.feature = f3 + (size_t)i * D}; /* foreground-only search */
    }
    REQUIRE_OK(uf_score_images(sc, (const uf_image *const *)g_test, NIMG, a));
    REQUIRE_OK(uf_scorer_extract(sc, (const uf_image *const *)g_test, NIMG, feats, smooth, mask));
    REQUIRE_OK(uf_score_features(sc, feats, smooth, mask, NIMG, b));
    REQUIRE_OK(uf_score_features(sc, feats, smooth, mask, NIMG, c));
    CHECK(!memcmp(pf, feats, NIMG * Np * D * sizeof(float)));
    CHECK(!memcmp(m1, m2, NIMG * (size_t)S * S * sizeof(float)));
    CHECK(!memcmp(f1, f2, NIMG * (size_t)D * sizeof(float)));
    CHECK(!memcmp(f1, f3, NIMG * (size_t)D * sizeof(float)));
    for (int i = 0; i < NIMG; i++) {
        CHECKF(a[i].score == b[i].score && a[i].score == c[i].score, "image %d: %.9g %.9g %.9g",
               i, a[i].score, b[i].score, c[i].score);
    }
    size_t nfg = 0;
    for (size_t i = 0; i < NIMG * Np; i++) nfg += mask[i];
    fprintf(stderr, "  %zu of %zu test patches foreground\n", nfg, NIMG * Np);
    /* non-finite features are refused */
    feats[5] = NAN;
    CHECK(uf_score_features(sc, feats, smooth, mask, NIMG, b) == UF_ERR_NONFINITE);
    free(feats), free(smooth), free(mask), free(m1), free(m2), free(f1), free(f2), free(f3), free(pf);
    uf_scorer_free(sc);
}

/* The same with a BPM threshold that drops most patches (foreground-only search matters). */
static void test_features_path_sparse(void)
{
    if (!g_bb) SKIP("no backbone (previous test failed)");
    uf_detector_params p = uf_detector_default_params();
    p.pre.resize = 56;
    p.pre.crop = 48;
    p.bpm_lambda = 0.6f;
    p.coreset = 1;
    uf_fitter *f = NULL;
    uf_model *m = NULL;
    uf_scorer *sc = NULL;
    REQUIRE_OK(uf_fitter_new(g_bb, &p, &f));
    REQUIRE_OK(uf_fitter_add(f, (const uf_image *const *)g_train, 4));
    REQUIRE_OK(uf_fitter_finish(f, NULL, NULL, &m));
    REQUIRE_OK(uf_scorer_new(m, &sc));
    int gh, gw, S, D;
    uf_model_output_size(m, &gh, &gw, &S, &D);
    const size_t Np = (size_t)gh * gw;
    float ps[NIMG][64], fa[NIMG][64], fb[NIMG][64];
    uint8_t mk[NIMG][64];
    REQUIRE(Np <= 64 && D <= 64);
    uf_score a[NIMG], b[NIMG];
    for (int i = 0; i < NIMG; i++) {
        a[i] = (uf_score){.patch_scores = ps[i], .feature = fa[i], .mask = mk[i]};
        b[i] = (uf_score){.feature = fb[i]};
    }
    REQUIRE_OK(uf_score_images(sc, (const uf_image *const *)g_test, NIMG, a));
    REQUIRE_OK(uf_score_images(sc, (const uf_image *const *)g_test, NIMG, b));
    size_t nfg = 0;
    for (int i = 0; i < NIMG; i++) {
        for (size_t j = 0; j < Np; j++) nfg += mk[i][j];
        CHECKF(a[i].score == b[i].score, "image %d: all %.9g fg-only %.9g", i, a[i].score, b[i].score);
        CHECK(!memcmp(fa[i], fb[i], (size_t)D * sizeof(float)));
    }
    fprintf(stderr, "  lambda 0.6: %zu of %zu test patches foreground\n", nfg, NIMG * Np);
    CHECK(nfg > 0 && nfg < NIMG * Np);
    uf_scorer_free(sc);
    uf_model_free(m);
    uf_fitter_free(f);
}

int main(void)
{
    RUN(test_eight_threads_equal_serial);
    RUN(test_features_path);
    RUN(test_features_path_sparse);
    uf_model_free(g_m);
    uf_model_free(g_m0);
    for (int i = 0; i < 4; i++) uf_image_free(g_train[i]);
    for (int i = 0; i < NIMG; i++) uf_image_free(g_test[i]);
    uf_backbone_free(g_bb);
    return TEST_DONE();
}
