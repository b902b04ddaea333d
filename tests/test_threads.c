/*
 * test_threads.c - the library leaves the process's thread settings alone (issue 11).
 *
 * A program embedding the library sets its own OpenMP thread count, dynamic adjustment and
 * OpenBLAS thread count; a forward pass, a kNN search, fitting and scoring must not change
 * any of them (they used to call omp_set_num_threads, omp_set_dynamic(0) and
 * openblas_set_num_threads on every call). The thread counts of sessions, fitters and
 * scorers are their own (uf_*_set_threads), and results do not depend on them. Zero-shot
 * sets (uf_zeroshot_set_threads, used by `uniformaly zeroshot`) likewise.
 */
#include "harness.h"
#include "detector/kernels.h"

#include <omp.h>

extern void openblas_set_num_threads(int num_threads);
extern int openblas_get_num_threads(void);

static int want_max, want_dyn, want_blas;

static void set_process(void)
{
    omp_set_num_threads(3);
    omp_set_dynamic(1);
    openblas_set_num_threads(1);
    want_max = omp_get_max_threads();
    want_dyn = omp_get_dynamic();
    want_blas = openblas_get_num_threads();
}

#define CHECK_UNCHANGED(what)                                                               \
    CHECKF(omp_get_max_threads() == want_max && omp_get_dynamic() == want_dyn &&            \
               openblas_get_num_threads() == want_blas,                                     \
           "%s changed the process settings: omp max threads %d -> %d, dynamic %d -> %d, "  \
           "openblas threads %d -> %d", what, want_max, omp_get_max_threads(), want_dyn,    \
           omp_get_dynamic(), want_blas, openblas_get_num_threads())

static uf_backbone *small_backbone(void)
{
    uf_vit_config cfg = {.dim = 48, .depth = 3, .heads = 3, .patch = 8, .mlp_dim = 96,
                         .grid = 4, .n_classes = 0, .seed = 3};
    uf_backbone *bb = NULL;
    return uf_backbone_random(&cfg, &bb) == UF_OK ? bb : NULL;
}

static void test_forward_and_knn(void)
{
    uf_backbone *bb = small_backbone();
    REQUIRE(bb);
    set_process();
    uf_session *s = NULL;
    REQUIRE_OK(uf_session_new(bb, &s));
    const int B = 2, S = 32, Np = 16, D = 48;
    float *px = malloc(sizeof(float) * B * 3 * S * S), *o1 = malloc(sizeof(float) * B * Np * D);
    float *o2 = malloc(sizeof(float) * B * Np * D);
    REQUIRE(px && o1 && o2);
    th_sm r = th_sm_new(1, 1);
    for (int i = 0; i < B * 3 * S * S; i++) px[i] = (float)((th_sm_next(&r) >> 40) * 0x1p-24);
    uf_forward_request req = {.blocks = 4};
    uf_forward_output out = {.blocks = o1};
    uf_session_set_threads(s, 2);
    REQUIRE_OK(uf_forward(s, px, B, S, S, &req, &out));
    CHECK_UNCHANGED("uf_forward (2 threads)");
    out.blocks = o2;
    uf_session_set_threads(s, 1);
    REQUIRE_OK(uf_forward(s, px, B, S, S, &req, &out));
    CHECK_UNCHANGED("uf_forward (1 thread)");
    CHECK(memcmp(o1, o2, sizeof(float) * B * Np * D) == 0); /* same order of sums */

    /* kNN of the patch features against themselves */
    float *bn = malloc(sizeof(float) * B * Np), *sc = malloc(sizeof(float) * B * Np);
    REQUIRE(bn && sc);
    REQUIRE_OK(uf__knn_bank_norms(o1, (size_t)B * Np, D, bn));
    REQUIRE_OK(uf__knn_ex(o1, (size_t)B * Np, o1, bn, (size_t)B * Np, D, 1, sc, NULL, NULL, 2));
    CHECK_UNCHANGED("uf__knn_ex (2 threads)");
    REQUIRE_OK(uf__knn(o1, (size_t)B * Np, o1, bn, (size_t)B * Np, D, 1, sc));
    CHECK_UNCHANGED("uf__knn (default threads)");
    for (int i = 0; i < B * Np; i++) CHECKF(sc[i] == 0.0f, "row %d: distance to itself %g", i, sc[i]);
    free(px), free(o1), free(o2), free(bn), free(sc);
    uf_session_free(s);
    uf_backbone_free(bb);
}

static void test_fit_and_score(void)
{
    uf_backbone *bb = small_backbone();
    REQUIRE(bb);
    set_process();
    uf_detector_params p = uf_detector_default_params();
    p.layer_first = 1, p.layer_last = 3, p.bpm = 0, p.coreset = 0.5;
    p.pre.resize = 0, p.pre.crop = 32;
    uf_image img[3];
    uint8_t px[3][40 * 40 * 3];
    th_sm r = th_sm_new(2, 1);
    for (int i = 0; i < 3; i++) {
        for (int j = 0; j < 40 * 40 * 3; j++) px[i][j] = (uint8_t)(th_sm_next(&r) >> 56);
        img[i] = (uf_image){.width = 40, .height = 40, .rgb = px[i]};
    }
    const uf_image *imgs[3] = {&img[0], &img[1], &img[2]};
    uf_fitter *f = NULL;
    uf_model *m = NULL;
    uf_scorer *sc = NULL;
    REQUIRE_OK(uf_fitter_new(bb, &p, &f));
    uf_fitter_set_threads(f, 2);
    REQUIRE_OK(uf_fitter_add(f, imgs, 2));
    REQUIRE_OK(uf_fitter_finish(f, NULL, NULL, &m));
    CHECK_UNCHANGED("fitting (2 threads)");
    REQUIRE_OK(uf_scorer_new(m, &sc));
    float s1 = 0, s2 = 0;
    uf_score o = {0};
    uf_scorer_set_threads(sc, 2);
    REQUIRE_OK(uf_score_images(sc, imgs + 2, 1, &o));
    s1 = o.score;
    CHECK_UNCHANGED("scoring (2 threads)");
    uf_scorer_set_threads(sc, 1);
    REQUIRE_OK(uf_score_images(sc, imgs + 2, 1, &o));
    s2 = o.score;
    CHECK_UNCHANGED("scoring (1 thread)");
    CHECKF(s1 == s2 && s1 > 0, "scores %g (2 threads) and %g (1 thread)", s1, s2);
    uf_scorer_free(sc);
    uf_model_free(m);
    uf_fitter_free(f);
    uf_backbone_free(bb);
}

/* A zero-shot set extracts and searches with its own thread count: the process settings
 * stay, and 1 and 2 threads give the same scores. */
static void test_zeroshot(void)
{
    uf_backbone *bb = small_backbone();
    REQUIRE(bb);
    set_process();
    uf_detector_params p = uf_detector_default_params();
    p.layer_first = 1, p.layer_last = 3, p.bpm = 0;
    p.pre.resize = 0, p.pre.crop = 32;
    enum { N = 3 };
    uf_image img[N];
    uint8_t px[N][40 * 40 * 3];
    th_sm r = th_sm_new(3, 1);
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < 40 * 40 * 3; j++) px[i][j] = (uint8_t)(th_sm_next(&r) >> 56);
        img[i] = (uf_image){.width = 40, .height = 40, .rgb = px[i]};
    }
    const uf_image *imgs[N] = {&img[0], &img[1], &img[2]};
    float sc[2][N];
    for (int t = 0; t < 2; t++) {
        uf_zeroshot *z = NULL;
        REQUIRE_OK(uf_zeroshot_new(bb, &p, 0.5, &z));
        uf_zeroshot_set_threads(z, 2 - t);
        uf_score o[N] = {{0}};
        uf_status st = uf_zeroshot_add(z, imgs, N);
        if (st == UF_OK) st = uf_zeroshot_score(z, 0, N, 0, o);
        uf_zeroshot_free(z);
        REQUIRE_OK(st);
        CHECK_UNCHANGED(t ? "zero-shot scoring (1 thread)" : "zero-shot scoring (2 threads)");
        for (int i = 0; i < N; i++) sc[t][i] = o[i].score;
    }
    for (int i = 0; i < N; i++)
        CHECKF(sc[0][i] == sc[1][i] && sc[0][i] > 0, "image %d: zero-shot score %g (2 threads) "
               "and %g (1 thread)", i, sc[0][i], sc[1][i]);
    uf_zeroshot_set_threads(NULL, 2); /* no-op */
    uf_backbone_free(bb);
}

int main(void)
{
    RUN(test_forward_and_knn);
    RUN(test_fit_and_score);
    RUN(test_zeroshot);
    return TEST_DONE();
}
