/*
 * test_bottle.c - acceptance test of the detector and of the evaluation protocol on real
 * data: MVTec AD "bottle" through the public evaluation API (uf_eval_run).
 *
 * Needs ../shared (weights/vit_tiny_patch16_224.safetensors and data/mvtec_ad/bottle);
 * SKIPs with a message when it is absent. Uses the public header only.
 *
 * Protocol (UniFormaly / PatchCore on MVTec AD): fit on all 209 train/good images with the
 * default settings (resize 256, centre crop 224, blocks 3-10, Back Patch Masking, greedy
 * coreset 10 % - the task default for defect datasets -, 1-NN, top 5 % image score,
 * Gaussian sigma 4) except mean = std = 0.5, which this timm AugReg ViT-Tiny was trained
 * with; score the 83 test images; cluster them under the official protocol (all 83 images
 * into the 4 types, good included).
 *
 * The run's figures are checked against a second path through the API: in the on_maps
 * callback the fitted model scores every test image again with uf_score_images (decoded
 * here with uf_image_load), and the ground-truth masks (ground_truth/<type>/NNN_mask.png,
 * read here) are mapped with uf_eval_mask_to_network at both levels - 0.5 (the default)
 * and exact (only pixels that stay 255 after resizing, the official evaluation).
 * Required: image AUROC >= 0.99, pixel AUROC >= 0.98, clustering NMI >= 0.50 and F1 >= 0.70;
 * the second path's scores equal the run's within float rounding and its pixel figures at
 * 0.5 equal the run's; the exact masks hold fewer anomalous pixels. The figures and timings
 * are printed.
 */
#include "harness.h"
#include "uniformaly.h"

#include <time.h>

#define PATH_MAX_LEN 4096

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* What the second path measured in on_maps. */
typedef struct second {
    int calls;
    double max_score_rel;    /* max |score - run's score| / |run's score|                 */
    double map_err;          /* max |map - run's map| / max |run's map|                   */
    uf_pixel_result px_half; /* pixel figures with masks at 0.5 (the run's maps)          */
    uf_pixel_result px_exact;/* and exact                                                 */
    uint64_t pos_half, pos_exact;
    int ok;
} second;

/* Load the mask file of item it as 0/1 (>= 128) into a new [h][w] array. */
static uint8_t *load_mask01(const uf_dataset_item *it, int w, int h)
{
    uint8_t *m = calloc((size_t)w * (size_t)h, 1);
    if (!m || !it->mask_path) return m;
    uf_image *mi = NULL;
    if (uf_image_load(it->mask_path, &mi) != UF_OK || mi->width != w || mi->height != h) {
        fprintf(stderr, "    %s: %s\n", it->mask_path, mi ? "size differs" : uf_errmsg());
        uf_image_free(mi);
        free(m);
        return NULL;
    }
    for (size_t q = 0; q < (size_t)w * (size_t)h; q++) m[q] = mi->rgb[3 * q] >= 128;
    uf_image_free(mi);
    return m;
}

static int on_maps(void *user, const uf_eval_result *r, const uf_eval_row *row, const uf_model *m,
                   const uf_dataset_item *items, size_t n, const float *maps)
{
    second *sc = user;
    sc->calls++;
    const int S = r->S;
    const size_t SS = (size_t)S * S;
    uf_scorer *scorer = NULL;
    float *map = malloc(SS * sizeof *map);
    uint8_t *gt_half = calloc(n * SS, 1), *gt_exact = calloc(n * SS, 1); /* [n][S][S] */
    const float **mp = malloc(n * sizeof *mp);
    const uint8_t **gh = malloc(n * sizeof *gh), **ge = malloc(n * sizeof *ge);
    int *hw = malloc(n * sizeof *hw);
    sc->ok = map && gt_half && gt_exact && mp && gh && ge && hw && uf_scorer_new(m, &scorer) == UF_OK;
    double mx = 0;
    for (size_t q = 0; q < n * SS; q++) mx = fmax(mx, fabs(maps[q]));
    for (size_t i = 0; i < n && sc->ok; i++) {
        uf_image *img = NULL;
        if (uf_image_load(items[i].path, &img) != UF_OK) {
            fprintf(stderr, "    %s\n", uf_errmsg());
            sc->ok = 0;
            break;
        }
        uf_score out;
        memset(&out, 0, sizeof out);
        out.pixel_map = map;
        sc->ok = uf_score_images(scorer, (const uf_image *const *)&img, 1, &out) == UF_OK;
        float want = row->repeats[0].scores[i];
        sc->max_score_rel = fmax(sc->max_score_rel, fabs(out.score - want) / fabs(want));
        sc->map_err = fmax(sc->map_err, th_max_abs_diff(map, maps + i * SS, SS) / mx);
        uint8_t *m01 = sc->ok ? load_mask01(&items[i], img->width, img->height) : NULL;
        sc->ok = sc->ok && m01 &&
                 uf_eval_mask_to_network(m01, img->width, img->height, &r->params.pre,
                                         UF_GT_THRESHOLD_DEFAULT, gt_half + i * SS) == UF_OK &&
                 uf_eval_mask_to_network(m01, img->width, img->height, &r->params.pre,
                                         UF_GT_THRESHOLD_EXACT, gt_exact + i * SS) == UF_OK;
        free(m01);
        uf_image_free(img);
        mp[i] = maps + i * SS;
        gh[i] = gt_half + i * SS;
        ge[i] = gt_exact + i * SS;
        hw[i] = S;
    }
    if (sc->ok)
        sc->ok = uf_pixel_metrics(mp, gh, hw, hw, (int)n, 0.3, 0, &sc->px_half) == UF_OK &&
                 uf_pixel_metrics(mp, ge, hw, hw, (int)n, 0.3, 0, &sc->px_exact) == UF_OK;
    sc->pos_half = sc->px_half.n_anomalous;
    sc->pos_exact = sc->px_exact.n_anomalous;
    uf_scorer_free(scorer);
    free(map);
    free(gt_half);
    free(gt_exact);
    free(mp);
    free(gh);
    free(ge);
    free(hw);
    return 0;
}

static void test_bottle(void)
{
    const char *shared = th_shared_dir();
    char root[PATH_MAX_LEN], wpath[PATH_MAX_LEN + 64], probe[PATH_MAX_LEN + 64];
    const char *env = getenv("UF_SHARED"); /* the folder th_shared_dir probed */
    const char *base = shared ? shared : env && *env ? env : "../shared";
    snprintf(root, sizeof root, "%s/data/mvtec_ad", base);
    snprintf(probe, sizeof probe, "%s/bottle/train/good", root);
    struct stat st;
    if (!shared || stat(probe, &st) != 0)
        SKIP("needs the real data: %s not found (run from the repo root with ../shared)", probe);
    snprintf(wpath, sizeof wpath, "%s/weights/vit_tiny_patch16_224.safetensors", shared);

    uf_backbone *bb = NULL;
    uf_dataset *ds = NULL;
    uf_eval_result *r = NULL;
    uf_status s = uf_backbone_load(wpath, NULL, &bb);
    CHECKF(s == UF_OK, "%s: %s", wpath, uf_errmsg());
    if (s == UF_OK) s = uf_dataset_open(UF_DATASET_MVTEC, root, &ds);
    CHECKF(s == UF_OK, "%s: %s", root, uf_errmsg());
    int cat = ds ? uf_dataset_find_category(ds, "bottle") : -1;
    if (s != UF_OK || cat < 0) goto done;

    uf_eval_params p = uf_eval_default_params();
    for (int c = 0; c < 3; c++) p.detector.pre.mean[c] = p.detector.pre.std[c] = 0.5f;
    p.cluster = -1;
    second sc = {0};
    p.on_maps = on_maps;
    p.user = &sc;
    double t0 = now_s();
    s = uf_eval_run(ds, bb, &cat, 1, &p, &r);
    double t_run = now_s() - t0;
    CHECKF(s == UF_OK, "uf_eval_run: %s", uf_errmsg());
    if (s != UF_OK) goto done;
    const uf_eval_row *row = &r->rows[0];
    const uf_eval_figures *f = &row->mean;
    fprintf(stderr,
            "    bottle: image AUROC %.4f pixel AUROC %.4f AUPRO %.4f (exact masks: %.4f %.4f) "
            "clustering NMI %.3f ARI %.3f F1 %.3f, bank %.0f of %.0f, fit %.1f s, run %.1f s\n",
            f->image_auroc, f->pixel_auroc, f->aupro, sc.px_exact.auroc, sc.px_exact.aupro,
            f->cluster[0].nmi, f->cluster[0].ari, f->cluster[0].f1, f->bank_size,
            f->bank_size_full, f->fit_seconds, t_run);
    CHECKF(row->n_test == 83 && f->n_train == 209, "%zu test, %.0f train images", row->n_test,
           f->n_train);
    CHECKF(r->params.coreset == 0.1, "coreset %g", r->params.coreset);
    CHECKF(f->image_auroc >= 0.99, "image AUROC %.4f < 0.99", f->image_auroc);
    CHECKF(f->pixel_auroc >= 0.98, "pixel AUROC %.4f < 0.98", f->pixel_auroc);
    CHECKF(row->cluster_k == 4 && row->cluster_n == 83, "clustering K %d of %zu images",
           row->cluster_k, row->cluster_n);
    CHECKF(f->cluster[0].nmi >= 0.50 && f->cluster[0].f1 >= 0.70, "clustering NMI %.3f F1 %.3f",
           f->cluster[0].nmi, f->cluster[0].f1);
    /* the second path */
    CHECKF(sc.calls == 1 && sc.ok, "on_maps: %d calls, ok %d", sc.calls, sc.ok);
    CHECKF(sc.max_score_rel < 1e-5, "uf_score_images vs the run: relative error %.2e",
           sc.max_score_rel);
    CHECKF(sc.map_err < 1e-5, "pixel maps: error %.2e of the maximum", sc.map_err);
    CHECKF(sc.px_half.auroc == f->pixel_auroc && sc.px_half.aupro == f->aupro,
           "pixel figures from the public mask mapping %.6f %.6f vs the run's %.6f %.6f",
           sc.px_half.auroc, sc.px_half.aupro, f->pixel_auroc, f->aupro);
    CHECKF(sc.pos_exact > 0 && sc.pos_exact < sc.pos_half,
           "anomalous pixels: exact %llu, 0.5 %llu", (unsigned long long)sc.pos_exact,
           (unsigned long long)sc.pos_half);
    CHECKF(sc.px_exact.auroc >= 0.98, "pixel AUROC with exact masks %.4f", sc.px_exact.auroc);
done:
    uf_eval_result_free(r);
    uf_dataset_free(ds);
    uf_backbone_free(bb);
}

int main(void)
{
    RUN(test_bottle);
    return TEST_DONE();
}
