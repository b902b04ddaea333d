/*
 * test_zeroshot.c - zero-shot scoring (src/detector/zeroshot.c), why: its results must be
 * MuSc's mutual scores and nothing near them by accident. Synthetic features (every patch
 * position has its prototype, every image adds noise, one image has one far-off patch)
 * are scored through uf__zeroshot_add_features and compared with a brute-force reference
 * written here from the definition; the odd image must rank first; the image's own patches
 * and background patches must never serve as references (each test would fail if they
 * did); the results must not depend on the block size, the thread count or on which
 * outputs are asked for; and the image path (uf_zeroshot_add) must give what its features
 * give.
 */
#include "detector/detector.h"
#include "harness.h"

#include <uniformaly.h>

enum { N = 12, GH = 4, NP = GH * GH, D = 16, ODD_IMG = 5, ODD_PATCH = 7 };

static uf_backbone *g_bb;
static uf_detector_params g_p;
static float g_feats[N][NP][D], g_smooth[N][NP];
static uint8_t g_mask[N][NP];

/* splitmix64 normal-ish noise: sum of 4 uniforms, centred */
static uint64_t g_state = 12345;
static double rnd(void)
{
    double acc = 0;
    for (int k = 0; k < 4; k++) {
        uint64_t z = (g_state += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        acc += (double)(z >> 11) * 0x1.0p-53;
    }
    return acc - 2.0;
}

/* A random backbone of dim D with a 4 x 4 grid (its settings are what the set uses) and
 * the synthetic features. */
static int setup(void)
{
    uf_vit_config cfg = {D, 1, 2, 8, 32, 2, 0, 1};
    if (uf_backbone_random(&cfg, &g_bb) != UF_OK) return 0;
    g_p = uf_detector_default_params();
    g_p.layer_first = g_p.layer_last = 1;
    g_p.pre.resize = g_p.pre.crop = 8 * GH;
    g_p.bpm = 0;
    g_p.sigma = 0;
    float proto[NP][D];
    for (int p = 0; p < NP; p++)
        for (int c = 0; c < D; c++) proto[p][c] = (float)(3.0 * rnd());
    for (int i = 0; i < N; i++)
        for (int p = 0; p < NP; p++) {
            for (int c = 0; c < D; c++) g_feats[i][p][c] = proto[p][c] + (float)(0.1 * rnd());
            g_smooth[i][p] = 1.0f;
            g_mask[i][p] = 1;
        }
    for (int c = 0; c < D; c++) g_feats[ODD_IMG][ODD_PATCH][c] += (float)(4.0 * rnd());
    return 1;
}

/* g_split: score images 0..g_split-1 and g_split..N-1 in two calls (0: one call). */
static size_t g_split;

/* A set of the synthetic features (mask mk) scored with ref_frac and block: image scores
 * sc [N] and patch scores ps [N][NP] (ps may be NULL: then only foreground patches are
 * searched). Returns the status. */
static uf_status run(const float (*F)[NP][D], const uint8_t (*mk)[NP], double ref_frac,
                     int block, float *sc, float (*ps)[NP])
{
    uf_zeroshot *z = NULL;
    uf_status s = uf_zeroshot_new(g_bb, &g_p, ref_frac, &z);
    if (s == UF_OK) s = uf__zeroshot_add_features(z, &F[0][0][0], &g_smooth[0][0], &mk[0][0], N);
    uf_score out[N];
    memset(out, 0, sizeof out);
    for (int i = 0; ps && i < N; i++) out[i].patch_scores = ps[i];
    if (s == UF_OK && g_split) s = uf_zeroshot_score(z, 0, g_split, block, out);
    if (s == UF_OK) s = uf_zeroshot_score(z, g_split, N - g_split, block, out + g_split);
    for (int i = 0; s == UF_OK && i < N; i++) sc[i] = out[i].score;
    uf_zeroshot_free(z);
    return s;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The definition, in double: for patch p of image i, m_j = min over foreground q of j of
 * ||F[i][p] - F[j][q]||^2 for every other image j with a foreground patch; the mean of
 * the max(1, floor(ref_frac * M)) smallest. */
static double reference(const float (*F)[NP][D], const uint8_t (*mk)[NP], double ref_frac,
                        int i, int p)
{
    double m[N];
    int M = 0;
    for (int j = 0; j < N; j++) {
        if (j == i) continue;
        double best = INFINITY;
        for (int q = 0; q < NP; q++) {
            if (!mk[j][q]) continue;
            double d = 0;
            for (int c = 0; c < D; c++) {
                double t = (double)F[i][p][c] - F[j][q][c];
                d += t * t;
            }
            best = d < best ? d : best;
        }
        if (isfinite(best)) m[M++] = best;
    }
    qsort(m, (size_t)M, sizeof *m, cmp_double);
    int K = (int)floor(ref_frac * M);
    if (K < 1) K = 1;
    double acc = 0;
    for (int k = 0; k < K; k++) acc += m[k];
    return acc / K;
}

/* Patch scores equal the definition; the odd image ranks first and its odd patch is its
 * highest. */
static void test_matches_definition(void)
{
    static float ps[N][NP];
    float sc[N];
    REQUIRE_OK(run(g_feats, g_mask, UF_ZEROSHOT_DEFAULT_REF_FRAC, 0, sc, ps));
    double worst = 0;
    for (int i = 0; i < N; i++)
        for (int p = 0; p < NP; p++) {
            double want = reference(g_feats, g_mask, UF_ZEROSHOT_DEFAULT_REF_FRAC, i, p);
            worst = fmax(worst, fabs(ps[i][p] - want) / fmax(want, 1e-3));
        }
    CHECKF(worst <= 1e-5, "max relative error %g against the definition", worst);
    int top = 0;
    for (int i = 1; i < N; i++) top = sc[i] > sc[top] ? i : top;
    CHECKF(top == ODD_IMG, "image %d ranked first, not %d", top, ODD_IMG);
    int tp = 0;
    for (int p = 1; p < NP; p++) tp = ps[ODD_IMG][p] > ps[ODD_IMG][tp] ? p : tp;
    CHECK(tp == ODD_PATCH);
}

/* With K = 1 (ref_frac 0.05 of 11 others), an image's own patches as references would
 * give every patch score 0 (each patch is its own nearest neighbour). */
static void test_self_excluded(void)
{
    static float ps[N][NP];
    float sc[N];
    REQUIRE_OK(run(g_feats, g_mask, 0.05, 0, sc, ps));
    float lo = INFINITY;
    for (int i = 0; i < N; i++)
        for (int p = 0; p < NP; p++) lo = ps[i][p] < lo ? ps[i][p] : lo;
    CHECKF(lo > 1e-3, "a patch scored %g: its own image served as reference", lo);
    CHECK(ps[ODD_IMG][ODD_PATCH] > 50.0f);
    CHECK(fabs(ps[ODD_IMG][ODD_PATCH] - reference(g_feats, g_mask, 0.05, ODD_IMG, ODD_PATCH)) <=
          1e-5 * ps[ODD_IMG][ODD_PATCH]);
}

/* A background patch is no reference: a copy of the odd patch in image 3, masked, leaves
 * the odd patch's score unchanged (K = 1); unmasked it would bring it near 0. Background
 * patches are not scored either: they score 0 in the image score. */
static void test_background_not_reference(void)
{
    static float F[N][NP][D], ps0[N][NP], ps1[N][NP], ps2[N][NP];
    static uint8_t mk[N][NP];
    float sc[N];
    memcpy(F, g_feats, sizeof F);
    memcpy(mk, g_mask, sizeof mk);
    REQUIRE_OK(run(F, mk, 0.05, 0, sc, ps0));
    memcpy(F[3][0], g_feats[ODD_IMG][ODD_PATCH], sizeof F[3][0]);
    mk[3][0] = 0;
    REQUIRE_OK(run(F, mk, 0.05, 0, sc, ps1));
    CHECKF(ps1[ODD_IMG][ODD_PATCH] == ps0[ODD_IMG][ODD_PATCH], "%g vs %g",
           ps1[ODD_IMG][ODD_PATCH], ps0[ODD_IMG][ODD_PATCH]);
    CHECK(fabs(ps1[3][0] - reference(F, mk, 0.05, 3, 0)) <= 1e-5 * ps1[3][0]);
    mk[3][0] = 1; /* the same copy as a reference: the test can fail */
    REQUIRE_OK(run(F, mk, 0.05, 0, sc, ps2));
    CHECK(ps2[ODD_IMG][ODD_PATCH] < 1e-3f);
    /* every patch of image 0 but one in the background: its score is that patch's */
    memcpy(mk, g_mask, sizeof mk);
    memset(mk[0], 0, NP);
    mk[0][9] = 1;
    g_p.topk = 1.0; /* mean of all patches: background ones count 0 */
    uf_status s = run(g_feats, mk, 0.3, 0, sc, ps1);
    g_p.topk = uf_detector_default_params().topk;
    REQUIRE_OK(s);
    CHECK(fabs(sc[0] - ps1[0][9] / NP) <= 1e-6 * ps1[0][9]);
}

/* The same results (bit for bit) for every block size, thread count, split of the set into
 * ranges, and whether patch scores are asked for (all patches searched) or not
 * (foreground only). */
static void test_invariance(void)
{
    static float ps[4][N][NP];
    float sc[5][N];
    static uint8_t mk[N][NP];
    memcpy(mk, g_mask, sizeof mk);
    for (int i = 0; i < N; i++) mk[i][(i * 5) % NP] = 0; /* some background */
    const int blocks[4] = {0, 1, 5, N};
    for (int b = 0; b < 4; b++) REQUIRE_OK(run(g_feats, mk, 0.3, blocks[b], sc[b], ps[b]));
    REQUIRE_OK(run(g_feats, mk, 0.3, 2, sc[4], NULL));
    g_split = 5; /* images 0-4, then 5-11 */
    static float psr[N][NP];
    float scr[N];
    uf_status sr = run(g_feats, mk, 0.3, 2, scr, psr);
    g_split = 0;
    REQUIRE_OK(sr);
    CHECK(!memcmp(scr, sc[0], sizeof scr) && !memcmp(psr, ps[0], sizeof psr));
    for (int b = 1; b < 4; b++) {
        CHECKF(!memcmp(sc[b], sc[0], sizeof sc[0]), "block %d: image scores differ", blocks[b]);
        CHECKF(!memcmp(ps[b], ps[0], sizeof ps[0]), "block %d: patch scores differ", blocks[b]);
    }
    CHECK(!memcmp(sc[4], sc[0], sizeof sc[0]));
    if (TH_TSAN) SKIP("OpenMP teams under ThreadSanitizer");
    int t0 = uf_get_threads();
    float st[2][N];
    uf_set_threads(1);
    uf_status s1 = run(g_feats, mk, 0.3, 3, st[0], NULL);
    uf_set_threads(2);
    uf_status s2 = run(g_feats, mk, 0.3, 3, st[1], NULL);
    uf_set_threads(t0);
    REQUIRE_OK(s1);
    REQUIRE_OK(s2);
    CHECK(!memcmp(st[0], sc[0], sizeof st[0]));
    CHECK(!memcmp(st[1], sc[0], sizeof st[1]));
}

/* uf_zeroshot_add on images gives what their extracted features give; the errors. */
static void test_images_and_errors(void)
{
    enum { n = 5 };
    uf_image *img[n] = {0};
    for (int i = 0; i < n; i++) {
        REQUIRE_OK(uf_image_new(40 + i, 36, &img[i]));
        for (int k = 0; k < img[i]->width * img[i]->height * 3; k++)
            img[i]->rgb[k] = (uint8_t)((k * 7 + i) & 0x3f);
    }
    for (int k = 0; k < 300; k++) img[2]->rgb[k] = 255; /* a bright band */
    uf_zeroshot *z = NULL, *z2 = NULL;
    uf_model *m = NULL;
    uf_scorer *scr = NULL;
    uf_status s = uf_zeroshot_new(g_bb, &g_p, 0.5, &z);
    if (s == UF_OK) s = uf_zeroshot_add(z, (const uf_image *const *)img, n);
    CHECK(uf_zeroshot_count(z) == n);
    const uf_image *bad[2] = {img[0], NULL};
    CHECK(uf_zeroshot_add(z, bad, 2) == UF_ERR_ARG);
    CHECK(uf_zeroshot_count(z) == n); /* nothing of a refused call is added */
    static float F[n][NP][D], sm[n][NP];
    static uint8_t mk[n][NP];
    float *bank = calloc(D, sizeof(float));
    if (s == UF_OK) s = uf__model_new(g_bb, &g_p, bank, 1, 1, 1, &m);
    if (s == UF_OK) s = uf_scorer_new(m, &scr);
    if (s == UF_OK) s = uf_scorer_extract(scr, (const uf_image *const *)img, n, &F[0][0][0], &sm[0][0], &mk[0][0]);
    if (s == UF_OK) s = uf_zeroshot_new(g_bb, &g_p, 0.5, &z2);
    if (s == UF_OK) s = uf__zeroshot_add_features(z2, &F[0][0][0], &sm[0][0], &mk[0][0], n);
    uf_score a[n], b[n];
    memset(a, 0, sizeof a);
    memset(b, 0, sizeof b);
    if (s == UF_OK) s = uf_zeroshot_score(z, 0, n, 0, a);
    if (s == UF_OK) s = uf_zeroshot_score(z2, 0, n, 1, b);
    CHECKF(s == UF_OK, "%s", uf_errmsg());
    for (int i = 0; s == UF_OK && i < n; i++) CHECK(a[i].score == b[i].score && a[i].score > 0);
    uf_zeroshot_free(z);
    uf_zeroshot_free(z2);
    uf_scorer_free(scr);
    uf_model_free(m);
    for (int i = 0; i < n; i++) uf_image_free(img[i]);

    /* too few images, or too few with a foreground patch; bad arguments */
    z = NULL;
    REQUIRE_OK(uf_zeroshot_new(g_bb, &g_p, 0.3, &z));
    uf_score o[N];
    memset(o, 0, sizeof o);
    CHECK(uf_zeroshot_score(z, 0, 0, 0, o) == UF_ERR_ARG);
    static uint8_t none[N][NP];
    none[4][2] = 1; /* one image with a foreground patch */
    s = uf__zeroshot_add_features(z, &g_feats[0][0][0], &g_smooth[0][0], &none[0][0], N);
    CHECK(s == UF_OK && uf_zeroshot_score(z, 0, N, 0, o) == UF_ERR_ARG);
    CHECK(strstr(uf_errmsg(), "foreground") != NULL);
    CHECK(uf_zeroshot_score(z, 0, N, -1, o) == UF_ERR_ARG);
    CHECK(uf_zeroshot_score(z, 3, N - 2, 0, o) == UF_ERR_ARG); /* beyond the set */
    CHECK(uf_zeroshot_score(z, N + 1, 0, 0, o) == UF_ERR_ARG);
    uf_zeroshot_free(z);
    uf_zeroshot *zz = NULL;
    CHECK(uf_zeroshot_new(g_bb, &g_p, 0.0, &zz) == UF_ERR_ARG && !zz);
    CHECK(uf_zeroshot_new(g_bb, &g_p, 1.5, &zz) == UF_ERR_ARG && !zz);
    CHECK(uf_zeroshot_new(NULL, &g_p, 0.3, &zz) == UF_ERR_ARG);
    uf_detector_params bp = g_p;
    bp.layer_last = 7; /* the backbone has one block */
    CHECK(uf_zeroshot_new(g_bb, &bp, 0.3, &zz) == UF_ERR_ARG);
    CHECK(uf_zeroshot_count(NULL) == 0 && uf_zeroshot_model(NULL) == NULL);
    uf_zeroshot_free(NULL);
}

int main(void)
{
    if (!setup()) {
        fprintf(stderr, "setup failed: %s\n", uf_errmsg());
        return 1;
    }
    RUN(test_matches_definition);
    RUN(test_self_excluded);
    RUN(test_background_not_reference);
    RUN(test_invariance);
    RUN(test_images_and_errors);
    uf_backbone_free(g_bb);
    return TEST_DONE();
}
