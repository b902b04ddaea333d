/*
 * cmd_demo.c - `uniformaly demo`: the whole flow on a fresh machine with nothing
 * downloaded. For each of two generated categories (a texture and an object on a plain
 * background, tools/demo_data.c) it fits a detector on good images, writes the model file,
 * loads it back, scores the test images, prints image and pixel AUROC against the
 * generated ground truth and writes heatmap overlays. Without --backbone it uses the
 * backbone that ships with the program (the ImageNet ViT-Tiny/16, cli_bundled_backbone),
 * so the figures are real detection; --random-backbone swaps in a seeded random-weight
 * ViT-S/16, and the demo then says its figures show only that the pipeline runs.
 */
#include "cli.h"
#include "demo_data.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static const char *const help =
    "Usage: uniformaly demo [--backbone W | --random-backbone] [--out DIR] [--seed N]\n"
    "                       [--train N] [options]\n"
    "\n"
    "Fit and evaluate the detector on two generated datasets (a texture, and an object on a\n"
    "dark background) with scratch, spot and missing-part defects and exact masks. Prints\n"
    "image and pixel AUROC per dataset and writes to DIR (default uniformaly-demo):\n"
    "  DIR/<dataset>.ufm                 the fitted model\n"
    "  DIR/<dataset>/<image>.png         heatmap overlays of the test images\n"
    "  DIR/<dataset>/<image>_mask.png    their ground-truth masks\n"
    "Without --backbone the bundled ImageNet ViT-Tiny/16 is used (see --backbone below).\n"
    "The paper's backbones are self-supervised, e.g. DINO ViT-S/8\n"
    "(dino_deitsmall8_pretrain.pth from the facebookresearch/dino releases) or an iBOT\n"
    "checkpoint_teacher.pth; see README.md.\n"
    "\n"
    "Options:\n"
    "  --random-backbone    a seeded random-weight ViT-S/16 instead: it shows the whole\n"
    "                       pipeline runs, but its features carry no learned meaning\n"
    "  --out DIR            output folder (default uniformaly-demo)\n"
    "  --seed N             seed of the generated data and of the method (default 0)\n"
    "  --train N            training images per dataset (default 40)\n";

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static bool ensure_dir(const char *d)
{
    if (mkdir(d, 0777) == 0) return true;
    int e = errno;
    struct stat st;
    if (e == EEXIST && stat(d, &st) == 0 && S_ISDIR(st.st_mode)) return true;
    cli_error("%s: cannot create directory: %s", d,
              e == EEXIST ? "a file of that name exists" : strerror(e));
    return false;
}

/* A 0/1 mask as a black/white PNG. */
static bool write_mask(const uint8_t *mask, int w, int h, const char *path)
{
    uf_image *im = NULL;
    if (uf_image_new(w, h, &im) != UF_OK) return false;
    for (size_t i = 0; i < (size_t)w * h; i++) memset(im->rgb + 3 * i, mask[i] ? 255 : 0, 3);
    bool ok = uf_image_write_png(im, path) == UF_OK;
    uf_image_free(im);
    return ok;
}

typedef struct demo_result {
    size_t bank, full;
    double fit_s, pred_s, img_auroc, pix_auroc;
    int n_train, n_test;
} demo_result;

/* Fit, save, reload, score and write overlays for one generated dataset. */
static bool run_set(const demo_set *ds, const uf_backbone *bb, const uf_detector_params *dp,
                    const char *out, int batch, int threads, demo_result *r)
{
    bool ok = false;
    uf_fitter *fit = NULL;
    uf_model *m = NULL, *m2 = NULL;
    uf_scorer *sc = NULL;
    float *scores = NULL, *pmap = NULL, *full = NULL, *pix_s = NULL;
    uint8_t *labels = NULL, *pix_l = NULL;
    char path[4096];
    memset(r, 0, sizeof *r);
    r->n_train = ds->n_train;
    r->n_test = ds->n_test;
    double t0 = now();
    if (uf_fitter_new(bb, dp, &fit) != UF_OK) goto fail;
    uf_fitter_set_threads(fit, threads);
    for (int b0 = 0; b0 < ds->n_train; b0 += batch) {
        const uf_image *imgs[256];
        int nb = ds->n_train - b0 < batch ? ds->n_train - b0 : batch;
        for (int j = 0; j < nb; j++) imgs[j] = ds->train[b0 + j].img;
        if (uf_fitter_add(fit, imgs, nb) != UF_OK) goto fail;
    }
    r->full = uf_fitter_bank_size(fit);
    if (uf_fitter_finish(fit, NULL, NULL, &m) != UF_OK) goto fail;
    r->fit_s = now() - t0;
    /* through the model file, as a deployment would */
    snprintf(path, sizeof path, "%s/%s.ufm", out, ds->category);
    if (uf_model_save(m, path, 1) != UF_OK || uf_model_load(path, NULL, &m2) != UF_OK) goto fail;
    uf_model_info mi;
    uf_model_get_info(m2, &mi);
    r->bank = mi.bank_size;
    int S;
    uf_model_output_size(m2, NULL, NULL, &S, NULL);
    const int W = ds->test[0].img->width, H = ds->test[0].img->height;
    const size_t npix = (size_t)W * H;
    scores = malloc((size_t)ds->n_test * sizeof *scores);
    labels = malloc((size_t)ds->n_test);
    pmap = malloc((size_t)S * S * sizeof *pmap);
    full = malloc(npix * sizeof *full);
    pix_s = malloc(npix * (size_t)ds->n_test * sizeof *pix_s);
    pix_l = malloc(npix * (size_t)ds->n_test);
    if (!scores || !labels || !pmap || !full || !pix_s || !pix_l) {
        cli_error("out of memory");
        goto done;
    }
    if (uf_scorer_new(m2, &sc) != UF_OK) goto fail;
    uf_scorer_set_threads(sc, threads);
    snprintf(path, sizeof path, "%s/%s", out, ds->category);
    if (!ensure_dir(path)) goto done;
    t0 = now();
    for (int i = 0; i < ds->n_test; i++) {
        const demo_item *it = &ds->test[i];
        uf_score res = {.pixel_map = pmap};
        if (uf_score_images(sc, (const uf_image *const *)&it->img, 1, &res) != UF_OK) goto fail;
        scores[i] = res.score;
        labels[i] = it->mask != NULL;
        if (uf_model_map_to_image(m2, pmap, W, H, full) != UF_OK) goto fail;
        memcpy(pix_s + npix * (size_t)i, full, npix * sizeof *full);
        for (size_t k = 0; k < npix; k++) pix_l[npix * (size_t)i + k] = it->mask ? it->mask[k] : 0;
        uf_image *ov = NULL;
        snprintf(path, sizeof path, "%s/%s/%s.png", out, ds->category, it->name);
        uf_status s = uf_heatmap_overlay(it->img, full, 0, 0, 0.5f, &ov);
        if (s == UF_OK) s = uf_image_write_png(ov, path);
        uf_image_free(ov);
        if (s != UF_OK) goto fail;
        if (it->mask) {
            snprintf(path, sizeof path, "%s/%s/%s_mask.png", out, ds->category, it->name);
            if (!write_mask(it->mask, W, H, path)) goto fail;
        }
    }
    r->pred_s = now() - t0;
    r->img_auroc = uf_auroc(scores, labels, (size_t)ds->n_test);
    r->pix_auroc = uf_auroc(pix_s, pix_l, npix * (size_t)ds->n_test);
    ok = true;
    goto done;
fail:
    cli_error("%s: %s", ds->category, uf_errmsg());
done:
    uf_scorer_free(sc);
    uf_model_free(m2);
    uf_model_free(m);
    uf_fitter_free(fit);
    free(scores);
    free(labels);
    free(pmap);
    free(full);
    free(pix_s);
    free(pix_l);
    return ok;
}

int cmd_demo(int argc, char **argv)
{
    const char *verb = "demo";
    cli_common c;
    cli_common_init(&c);
    uf_detector_params dp = uf_detector_default_params();
    const char *out = "uniformaly-demo";
    long n_train = 40;
    bool random_bb = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = cli_common_option(&c, verb, argc, argv, &i);
        if (r == 0) r = cli_detector_option(&dp, verb, argc, argv, &i);
        if (r < 0) return CLI_EXIT_USAGE;
        if (r > 0) continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("%s\n%s\n%s", help, cli_detector_help, cli_common_help);
            return 0;
        } else if (!strcmp(a, "--out")) {
            if (i + 1 >= argc) return cli_usage_error(verb, "option --out needs a value");
            out = argv[++i];
        } else if (!strcmp(a, "--random-backbone")) {
            random_bb = true;
        } else if (!strcmp(a, "--train")) {
            if (i + 1 >= argc || !cli_parse_int(argv[i + 1], 1, 10000, &n_train))
                return cli_usage_error(verb, "--train: expected an integer in 1..10000");
            i++;
        } else {
            return cli_usage_error(verb, "unexpected argument '%s'", a);
        }
    }
    if (random_bb && c.backbone)
        return cli_usage_error(verb, "--backbone and --random-backbone exclude each other");
    if (!random_bb && !cli_default_backbone(&c)) return CLI_EXIT_RUNTIME;
    dp.pre = c.pre;
    if (uf_detector_params_check(&dp, NULL) != UF_OK)
        return cli_usage_error(verb, "%s", uf_errmsg());
    cli_threads_init(&c);
    if (!ensure_dir(out)) return CLI_EXIT_RUNTIME;

    uf_backbone *bb = NULL;
    if (c.backbone) {
        if (!(bb = cli_load_backbone(&c))) return CLI_EXIT_RUNTIME;
    } else {
        uf_vit_config vc = {.dim = 384, .depth = 12, .heads = 6, .patch = 16, .mlp_dim = 1536,
                            .grid = 14, .n_classes = 0, .seed = dp.seed};
        if (uf_backbone_random(&vc, &bb) != UF_OK) {
            cli_error("%s", uf_errmsg());
            return CLI_EXIT_RUNTIME;
        }
    }
    uf_backbone_info bi;
    uf_backbone_get_info(bb, &bi);
    printf("uniformaly demo: backbone %s%s (ViT patch %d, dim %d, depth %d)%s\n",
           c.backbone ? c.backbone : "random-weight ViT-S/16",
           c.bundled ? " (bundled ImageNet ViT-Tiny/16)" : "", bi.patch, bi.dim, bi.depth,
           c.backbone ? "" : " - NOT a trained model");
    printf("%-8s %6s %6s %9s %8s %8s %10s %10s\n", "dataset", "train", "test", "bank", "fit s",
           "img/s", "image AUC", "pixel AUC");
    int rc = 0;
    static const char *const cats[] = {"texture", "object"};
    for (int k = 0; k < 2; k++) {
        demo_set ds;
        if (demo_make(cats[k], dp.seed, 224, (int)n_train, 10, 6, &ds) != 0) {
            cli_error("cannot generate the %s dataset (out of memory)", cats[k]);
            rc = CLI_EXIT_RUNTIME;
            break;
        }
        demo_result r;
        bool ok = run_set(&ds, bb, &dp, out, c.batch, c.threads, &r);
        demo_free(&ds);
        if (!ok) {
            rc = CLI_EXIT_RUNTIME;
            break;
        }
        printf("%-8s %6d %6d %9zu %8.2f %8.1f %10.4f %10.4f\n", cats[k], r.n_train, r.n_test,
               r.bank, r.fit_s, r.n_test / (r.pred_s > 0 ? r.pred_s : 1e-9), r.img_auroc,
               r.pix_auroc);
        fflush(stdout);
    }
    uf_backbone_free(bb);
    if (rc) return rc;
    printf("\nWrote the models and heatmap overlays to %s/.\n", out);
    if (!c.backbone)
        printf("These figures come from RANDOM weights: they show the pipeline runs end to end,\n"
               "not what UniFormaly achieves. Drop --random-backbone to use the bundled\n"
               "ViT-Tiny/16, or pass a pretrained checkpoint with --backbone.\n");
    else
        printf("Next, on your own images:\n"
               "  uniformaly fit --out m.ufm good_images/\n"
               "  uniformaly predict m.ufm --heatmap-dir maps new_images/\n");
    return 0;
}
