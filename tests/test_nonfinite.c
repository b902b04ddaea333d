/*
 * test_nonfinite.c - an image that drives the network to NaN/Inf is reported, not scored
 * (issue 5), in the library and in the `uniformaly fit` / `predict` commands.
 *
 * The backbone is the tiny golden ViT of tests/data/detector with its patch-embedding
 * weights multiplied by 1e30: still finite (the loader accepts it), and harmless for an
 * image that is exactly mid-grey, since preprocessing with mean 128/255 and std 1 turns
 * that into zeros (the patch embedding is then its bias alone). Any other image makes
 * patch tokens of about 1e30, whose features overflow. So one checkpoint gives normal
 * results for the grey images and an overflow for a white one, and a batch mixing them
 * shows that the failure names the right image:
 *  - library: uf_fitter_add, uf_score_images and uf_scorer_extract return
 *    UF_ERR_NONFINITE naming the image's index in the call (nothing added to the bank,
 *    the fitter and scorer stay usable), and features finite but too large to score
 *    (uf_score_features) are refused the same way instead of giving an Inf score;
 *  - CLI (when the runner sets UF_BIN): fit exits 1 with one line naming the white image
 *    and writes no model file; predict prints the grey images' results, one stderr line
 *    naming the white image, no heatmap for it, and exits 1; features (Inf outputs) exits
 *    1 naming it and writes no file.
 */
#include "detector/detector.h"
#include "harness.h"

#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define DATA "tests/data/detector/"

static char g_dir[] = "/tmp/uf_nonfinite_XXXXXX";
static char g_hot[256]; /* patch embedding x 1e30: huge finite features */
static char g_inf[256]; /* patch embedding x 1e38: Inf features */
static const float k_mean = 128.0f / 255.0f;

/* Path of a scratch file in this run's folder. */
#define tpath(name) th_path(g_dir, name)

/* Write the golden ViT with patch_embed.proj.weight scaled by `scale` to path. */
static bool write_scaled(const char *path, float scale)
{
    uf__tensors ts = {0};
    if (uf__safetensors_load(DATA "vit.safetensors", &ts) != UF_OK) return false;
    const char **names = calloc(ts.n, sizeof *names);
    int *nd = calloc(ts.n, sizeof *nd);
    const int64_t **shapes = calloc(ts.n, sizeof *shapes);
    const float **data = calloc(ts.n, sizeof *data);
    bool ok = names && nd && shapes && data, found = false;
    for (size_t i = 0; ok && i < ts.n; i++) {
        uf__tensor *t = &ts.v[i];
        if (!strcmp(t->name, "patch_embed.proj.weight")) {
            for (size_t j = 0; j < t->numel; j++) t->data[j] *= scale;
            found = true;
        }
        names[i] = t->name, nd[i] = t->ndim, shapes[i] = t->shape, data[i] = t->data;
    }
    ok = ok && found &&
         uf_safetensors_write(path, (int)ts.n, names, nd, shapes, data, NULL) == UF_OK;
    free(names), free(nd), free(shapes), free(data);
    uf__tensors_free(&ts);
    return ok;
}

/* A 48x48 image of one grey level. */
static uf_image *flat(int v)
{
    uf_image *img = NULL;
    if (uf_image_new(48, 48, &img) != UF_OK) return NULL;
    memset(img->rgb, v, (size_t)48 * 48 * 3);
    return img;
}

static uf_detector_params params(void)
{
    uf_detector_params p = uf_detector_default_params();
    p.pre.resize = 0;
    p.pre.crop = 48;
    for (int c = 0; c < 3; c++) p.pre.mean[c] = k_mean, p.pre.std[c] = 1.0f;
    p.bpm = 0;
    p.coreset = 1;
    return p;
}

static bool msg_has(const char *s) { return strstr(uf_errmsg(), s) != NULL; }

static void test_library(void)
{
    uf_backbone_params bp = uf_backbone_default_params();
    bp.heads = 4;
    uf_backbone *bb = NULL;
    REQUIRE_OK(uf_backbone_load(g_hot, &bp, &bb)); /* finite weights: accepted */
    uf_image *grey = flat(128), *white = flat(255);
    REQUIRE(grey && white);
    uf_detector_params p = params();
    uf_fitter *f = NULL;
    uf_model *m = NULL;
    uf_scorer *sc = NULL;
    REQUIRE_OK(uf_fitter_new(bb, &p, &f));

    /* fitting: the white image (index 1 of 3) is named; nothing of the call is added */
    const uf_image *mixed[3] = {grey, white, grey};
    uf_status s = uf_fitter_add(f, mixed, 3);
    CHECKF(s == UF_ERR_NONFINITE && msg_has("image 1: the backbone produced"), "fit: %s %s",
           uf_status_str(s), uf_errmsg());
    fprintf(stderr, "    fit, [grey, white, grey]: %s\n", uf_errmsg());
    CHECK(uf_fitter_bank_size(f) == 0);
    s = uf_fitter_add(f, &mixed[1], 1); /* alone: no index in the message */
    CHECKF(s == UF_ERR_NONFINITE && !strncmp(uf_errmsg(), "the backbone produced", 21),
           "fit alone: %s", uf_errmsg());
    REQUIRE_OK(uf_fitter_add(f, mixed, 1)); /* the fitter is still usable */
    REQUIRE_OK(uf_fitter_add(f, mixed + 2, 1));
    REQUIRE_OK(uf_fitter_finish(f, NULL, NULL, &m));

    /* scoring: the grey image scores normally (finite), the white one is refused */
    REQUIRE_OK(uf_scorer_new(m, &sc));
    uf_score r[3];
    memset(r, 0, sizeof r);
    REQUIRE_OK(uf_score_images(sc, mixed, 1, r));
    CHECKF(isfinite(r[0].score), "grey score %g", r[0].score);
    r[0].score = r[1].score = -1;
    s = uf_score_images(sc, mixed, 3, r);
    CHECKF(s == UF_ERR_NONFINITE && msg_has("image 1: the backbone produced"), "score: %s",
           uf_errmsg());
    s = uf_score_images(sc, &mixed[1], 1, r);
    CHECKF(s == UF_ERR_NONFINITE && !strncmp(uf_errmsg(), "the backbone produced", 21),
           "score alone: %s", uf_errmsg());
    int gh, gw, S, D;
    uf_model_output_size(m, &gh, &gw, &S, &D);
    const size_t Np = (size_t)gh * gw;
    float *feats = malloc(3 * Np * D * sizeof(float)), *smooth = malloc(3 * Np * sizeof(float));
    uint8_t *mask = malloc(3 * Np);
    REQUIRE(feats && smooth && mask);
    s = uf_scorer_extract(sc, mixed, 3, feats, smooth, mask);
    CHECKF(s == UF_ERR_NONFINITE && msg_has("image 1:"), "extract: %s", uf_errmsg());

    /* features handed to uf_score_features: finite but too large (their distances could
     * overflow to Inf), or NaN, in image 1 of 2 */
    REQUIRE_OK(uf_scorer_extract(sc, mixed, 1, feats, smooth, mask));
    REQUIRE_OK(uf_score_features(sc, feats, smooth, mask, 1, r));
    CHECK(isfinite(r[0].score));
    memcpy(feats + Np * D, feats, Np * D * sizeof(float));
    memcpy(smooth + Np, smooth, Np * sizeof(float));
    memcpy(mask + Np, mask, Np);
    for (int c = 0; c < D; c++) feats[Np * D + 5 * (size_t)D + c] = 1e19f; /* image 1, patch 5 */
    s = uf_score_features(sc, feats, smooth, mask, 2, r);
    CHECKF(s == UF_ERR_NONFINITE && msg_has("image 1: uf_score_features: got features too large"),
           "huge features: %s %s", uf_status_str(s), uf_errmsg());
    feats[Np * D + 5 * (size_t)D] = NAN;
    s = uf_score_features(sc, feats, smooth, mask, 2, r);
    CHECKF(s == UF_ERR_NONFINITE && msg_has("image 1: uf_score_features: got NaN or Inf"),
           "NaN features: %s %s", uf_status_str(s), uf_errmsg());
    free(feats), free(smooth), free(mask);

    /* a model (file) may hold any finite bank row: one of squared norm 3.4028e38, just
     * below FLT_MAX, and a query pointing away from it put the distance beyond the float
     * range: reported, not scored as Inf */
    float *bank = malloc((size_t)D * sizeof(float)), q[64];
    REQUIRE(bank != NULL && D <= 64);
    for (int c = 0; c < D; c++) bank[c] = (float)sqrt(3.4028e38 / D), q[c] = -(float)sqrt(1e29 / D);
    uf_model *m2 = NULL;
    uf_scorer *sc2 = NULL;
    REQUIRE_OK(uf__model_new(bb, &p, bank, 1, 1, 1, &m2)); /* takes the bank */
    REQUIRE_OK(uf_scorer_new(m2, &sc2));
    float *f2 = calloc(Np * D, sizeof(float)), *s2 = malloc(Np * sizeof(float));
    uint8_t *k2 = malloc(Np);
    REQUIRE(f2 && s2 && k2);
    for (size_t i = 0; i < Np; i++) s2[i] = 1, k2[i] = 1;
    memcpy(f2 + 3 * (size_t)D, q, (size_t)D * sizeof(float)); /* patch 3 */
    s = uf_score_features(sc2, f2, s2, k2, 1, r);
    CHECKF(s == UF_ERR_NONFINITE && msg_has("patch 3: distance to the memory bank beyond the "
                                            "float range"),
           "distance overflow: %s %s (score %g)", uf_status_str(s), uf_errmsg(), r[0].score);
    free(f2), free(s2), free(k2);
    uf_scorer_free(sc2);
    uf_model_free(m2);
    uf_scorer_free(sc);
    uf_model_free(m);
    uf_fitter_free(f);
    uf_image_free(grey);
    uf_image_free(white);
    uf_backbone_free(bb);

    /* a larger scale overflows to Inf: reported as such */
    REQUIRE_OK(uf_backbone_load(g_inf, &bp, &bb));
    grey = flat(128), white = flat(255);
    REQUIRE(grey && white);
    REQUIRE_OK(uf_fitter_new(bb, &p, &f));
    const uf_image *two[2] = {grey, white};
    s = uf_fitter_add(f, two, 2);
    CHECKF(s == UF_ERR_NONFINITE && msg_has("image 1: the backbone produced NaN or Inf features"),
           "Inf: %s %s", uf_status_str(s), uf_errmsg());
    fprintf(stderr, "    fit, [grey, white], x 1e38: %s\n", uf_errmsg());
    REQUIRE_OK(uf_fitter_add(f, two, 1));
    uf_fitter_free(f);
    uf_image_free(grey);
    uf_image_free(white);
    uf_backbone_free(bb);
}

/* ---- the command-line program -------------------------------------------------------- */

/* Read a whole small text file ("" if missing). */
static char *slurp(const char *path)
{
    static char buf[4][8192];
    static int k;
    k = (k + 1) % 4;
    buf[k][0] = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return buf[k];
    size_t n = fread(buf[k], 1, sizeof buf[k] - 1, f);
    buf[k][n] = 0;
    fclose(f);
    return buf[k];
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* Run the CLI with arguments args (a shell fragment), stdout and stderr to files; exit
 * status, or -1 if it did not exit normally. */
static int run_cli(const char *bin, const char *args)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s %s >%s 2>%s", bin, args, tpath("out.txt"), tpath("err.txt"));
    int st = system(cmd);
    return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli(void)
{
    const char *bin = getenv("UF_BIN");
    if (!bin || !*bin) SKIP("UF_BIN not set (run through make test)");
    uf_image *grey = flat(128), *white = flat(255);
    REQUIRE(grey && white);
    REQUIRE_OK(uf_image_write_png(grey, tpath("grey1.png")));
    REQUIRE_OK(uf_image_write_png(grey, tpath("grey2.png")));
    REQUIRE_OK(uf_image_write_png(white, tpath("white.png")));
    uf_image_free(grey);
    uf_image_free(white);
    char common[1024], args[4096];
    snprintf(common, sizeof common,
             "--backbone %s --heads 4 --resize 0 --crop 48 --mean %.9g,%.9g,%.9g "
             "--std 1,1,1 --no-bpm --coreset 1 --batch 3 --quiet",
             g_hot, k_mean, k_mean, k_mean);

    /* fit with the white image among the training images: exit 1, one line naming it,
     * no model file */
    snprintf(args, sizeof args, "fit %s --out %s %s %s %s", common, tpath("m.ufm"),
             tpath("grey1.png"), tpath("white.png"), tpath("grey2.png"));
    int rc = run_cli(bin, args);
    const char *err = slurp(tpath("err.txt"));
    fprintf(stderr, "    fit: exit %d: %s", rc, err);
    CHECKF(rc == 1, "fit exit %d", rc);
    CHECKF(count_lines(err) == 1 && strstr(err, "white.png: the backbone produced") &&
               !strstr(err, "grey"),
           "fit stderr: %s", err);
    struct stat st;
    CHECK(stat(tpath("m.ufm"), &st) != 0);

    /* a model from the grey images, then predict on grey, white, grey */
    snprintf(args, sizeof args, "fit %s --out %s %s %s", common, tpath("m.ufm"),
             tpath("grey1.png"), tpath("grey2.png"));
    rc = run_cli(bin, args);
    REQUIRE(rc == 0);
    for (int json = 0; json < 2; json++) {
        snprintf(args, sizeof args, "predict %s %s--quiet --heatmap-dir %s %s %s %s",
                 tpath("m.ufm"), json ? "--json " : "", tpath(json ? "heat_j" : "heat"),
                 tpath("grey1.png"), tpath("white.png"), tpath("grey2.png"));
        rc = run_cli(bin, args);
        const char *out = slurp(tpath("out.txt"));
        err = slurp(tpath("err.txt"));
        fprintf(stderr, "    predict%s: exit %d: %s", json ? " --json" : "", rc, err);
        CHECKF(rc == 1, "predict exit %d", rc);
        CHECKF(count_lines(out) == 2 && strstr(out, "grey1.png") && strstr(out, "grey2.png") &&
                   !strstr(out, "white") && !strstr(out, "inf") && !strstr(out, "nan"),
               "predict stdout: %s", out);
        CHECKF(count_lines(err) == 1 && strstr(err, "white.png: the backbone produced"),
               "predict stderr: %s", err);
        /* heatmaps for the grey images only */
        int n = 0, w = 0;
        DIR *d = opendir(tpath(json ? "heat_j" : "heat"));
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            n++;
            w += strstr(e->d_name, "white") != NULL;
        }
        if (d) closedir(d);
        CHECKF(n == 2 && w == 0, "heatmaps: %d files, %d for the white image", n, w);
    }

    /* features: Inf block outputs (the x 1e38 checkpoint) name the image; nothing written */
    snprintf(args, sizeof args,
             "features --backbone %s --heads 4 --resize 0 --crop 48 --mean %.9g,%.9g,%.9g "
             "--std 1,1,1 --layers 1-2 --quiet --out %s %s %s", g_inf, k_mean, k_mean, k_mean,
             tpath("f.safetensors"), tpath("grey1.png"), tpath("white.png"));
    rc = run_cli(bin, args);
    err = slurp(tpath("err.txt"));
    fprintf(stderr, "    features: exit %d: %s", rc, err);
    CHECKF(rc == 1 && count_lines(err) == 1 && strstr(err, "white.png: the backbone produced NaN"),
           "features: exit %d: %s", rc, err);
    CHECK(stat(tpath("f.safetensors"), &st) != 0);
}

int main(void)
{
    if (!mkdtemp(g_dir)) return 1;
    snprintf(g_hot, sizeof g_hot, "%s/hot.safetensors", g_dir);
    snprintf(g_inf, sizeof g_inf, "%s/inf.safetensors", g_dir);
    if (!write_scaled(g_hot, 1e30f) || !write_scaled(g_inf, 1e38f)) {
        fprintf(stderr, "cannot write %s: %s\n", g_hot, uf_errmsg());
        return 1;
    }
    RUN(test_library);
    RUN(test_cli);
    th_rm_tree(g_dir);
    return TEST_DONE();
}
