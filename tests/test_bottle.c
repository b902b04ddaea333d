/*
 * test_bottle.c - acceptance test of the detector on real data: MVTec AD "bottle".
 *
 * Needs ../shared (weights/vit_tiny_patch16_224.safetensors and data/mvtec_ad/bottle);
 * SKIPs with a message when it is absent. Uses the public API only, plus
 * uf__preprocess_u8 (src/core/internal.h) to bring the ground-truth masks into network-input
 * coordinates with exactly the images' geometry.
 *
 * Protocol (UniFormaly / PatchCore on MVTec AD): fit on all 209 train/good images with
 * the default settings (resize 256, centre crop 224, blocks 3-10, Back Patch Masking,
 * greedy coreset 10 %, 1-NN, top 5 % image score, Gaussian sigma 4) except mean = std =
 * 0.5, which this timm AugReg ViT-Tiny was trained with; score the 83 test images;
 *   image AUROC: image score against "defective" (any folder but test/good);
 *   pixel AUROC: every pixel of the [224][224] pixel map of every test image against its
 *     ground-truth mask (ground_truth/<type>/NNN_mask.png; all zero for good images),
 *     resized bilinearly and centre-cropped like the image, then binarised as
 *     value >= 128. (PatchCore's evaluation keeps only pixels that stay exactly 255 after
 *     resizing - it truncates the [0, 1] float mask to int; >= 128 is the symmetric
 *     choice and moves at most the mask borders.)
 * Required: image AUROC >= 0.99, pixel AUROC >= 0.98. The figures and the timings are
 * printed ("bottle: image AUROC ... pixel AUROC ... bank N fit X s predict Y s").
 *
 * PNG decoding of the 900 x 900 images is a large share of the run time, so each batch of
 * 8 is decoded in parallel (uf_image_load is thread-safe).
 */
#include "harness.h"
#include "core/internal.h"

#include <dirent.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <time.h>

#define BATCH 8
#define PATH_MAX_LEN 4096

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* printf into a PATH_MAX_LEN buffer; returns 0, or -1 (printed) when it does not fit. */
static int path_fmt(char *dst, const char *fmt, ...) UF__PRINTF(2, 3);
static int path_fmt(char *dst, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vsnprintf(dst, PATH_MAX_LEN, fmt, ap);
    va_end(ap);
    if (r >= 0 && r < PATH_MAX_LEN) return 0;
    fprintf(stderr, "    path too long: %.60s...\n", dst);
    return -1;
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names of the *.png files in dir (malloc'd array of malloc'd strings, *n of them);
 * NULL on failure. */
static char **list_png(const char *dir, int *n)
{
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return NULL;
    char **v = NULL;
    int cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 4, ".png") != 0) continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 64;
            char **nv = realloc(v, (size_t)cap * sizeof *v);
            if (!nv) break;
            v = nv;
        }
        v[*n] = strdup(e->d_name);
        if (v[*n]) (*n)++;
    }
    closedir(d);
    if (v) qsort(v, (size_t)*n, sizeof *v, cmp_str);
    return v;
}

static void free_list(char **v, int n)
{
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

/* Decode paths[0..n) into imgs[0..n) in parallel. Returns 0, or -1 after printing the
 * first failure (every image decoded so far is freed). */
static int load_batch(char paths[][PATH_MAX_LEN], int n, uf_image **imgs)
{
    char msg[BATCH][256]; /* per-image error message (uf_errmsg is per thread) */
    int bad = 0;
#pragma omp parallel for schedule(dynamic) reduction(| : bad)
    for (int b = 0; b < n; b++) {
        imgs[b] = NULL;
        msg[b][0] = 0;
        if (uf_image_load(paths[b], &imgs[b]) != UF_OK) {
            snprintf(msg[b], sizeof msg[b], "%s", uf_errmsg());
            bad = 1;
        }
    }
    if (!bad) return 0;
    for (int b = 0; b < n; b++) {
        if (msg[b][0]) fprintf(stderr, "    cannot load %s: %s\n", paths[b], msg[b]);
        uf_image_free(imgs[b]);
        imgs[b] = NULL;
    }
    return -1;
}

/* The test folders in a fixed order; index 0 is the good one. */
static const char *const test_types[] = {"good", "broken_large", "broken_small",
                                         "contamination"};
#define N_TYPES 4

static void test_bottle(void)
{
    const char *shared = th_shared_dir();
    char root[PATH_MAX_LEN], wpath[PATH_MAX_LEN], dir[PATH_MAX_LEN];
    const char *env = getenv("UF_SHARED"); /* the folder th_shared_dir probed */
    const char *base = shared ? shared : env && *env ? env : "../shared";
    if (path_fmt(root, "%s/data/mvtec_ad/bottle", base) != 0) {
        CHECK(0);
        return;
    }
    if (!shared || !is_dir(root))
        SKIP("needs the real data: %s not found (run from the repo root with ../shared)", root);
    if (path_fmt(wpath, "%s/weights/vit_tiny_patch16_224.safetensors", shared) != 0) {
        CHECK(0);
        return;
    }

    uf_backbone *bb = NULL;
    uf_fitter *fit = NULL;
    uf_model *model = NULL;
    uf_scorer *sc = NULL;
    char **train = NULL;
    int n_train = 0;
    char **tests[N_TYPES] = {NULL};
    int n_test[N_TYPES] = {0};
    float *img_score = NULL;   /* [n_all]            image scores          */
    uint8_t *img_label = NULL; /* [n_all]            1 = defective         */
    float *pix = NULL;         /* [n_all][S][S]      pixel maps            */
    uint8_t *pix_label = NULL; /* [n_all][S][S]      binarised masks       */
    static char paths[BATCH][PATH_MAX_LEN], mpaths[BATCH][PATH_MAX_LEN];
    uf_image *imgs[BATCH] = {NULL}, *masks[BATCH] = {NULL};

    uf_status st = uf_backbone_load(wpath, NULL, &bb);
    CHECKF(st == UF_OK, "%s: %s", wpath, uf_errmsg());
    if (st != UF_OK) goto done;
    uf_detector_params p = uf_detector_default_params();
    for (int c = 0; c < 3; c++) p.pre.mean[c] = p.pre.std[c] = 0.5f;

    /* ---- fit on train/good ----------------------------------------------------------- */
    double t0 = now_s();
    if (path_fmt(dir, "%s/train/good", root) != 0) {
        CHECK(0);
        goto done;
    }
    train = list_png(dir, &n_train);
    CHECKF(n_train == 209, "%s: %d PNG files, expected 209", dir, n_train);
    if (n_train == 0) goto done;
    st = uf_fitter_new(bb, &p, &fit);
    CHECKF(st == UF_OK, "uf_fitter_new: %s", uf_errmsg());
    if (st != UF_OK) goto done;
    for (int i0 = 0; i0 < n_train; i0 += BATCH) {
        int nb = n_train - i0 < BATCH ? n_train - i0 : BATCH;
        int bad = 0;
        for (int b = 0; b < nb; b++) bad |= path_fmt(paths[b], "%s/%s", dir, train[i0 + b]);
        if (bad || load_batch(paths, nb, imgs) != 0) {
            CHECK(0);
            goto done;
        }
        st = uf_fitter_add(fit, (const uf_image *const *)imgs, nb);
        for (int b = 0; b < nb; b++) {
            uf_image_free(imgs[b]);
            imgs[b] = NULL;
        }
        CHECKF(st == UF_OK, "uf_fitter_add (images %d..): %s", i0, uf_errmsg());
        if (st != UF_OK) goto done;
    }
    size_t bank_full = uf_fitter_bank_size(fit);
    st = uf_fitter_finish(fit, NULL, NULL, &model);
    CHECKF(st == UF_OK, "uf_fitter_finish: %s", uf_errmsg());
    if (st != UF_OK) goto done;
    double t_fit = now_s() - t0;
    uf_model_info info;
    uf_model_get_info(model, &info);
    CHECKF(info.n_train == (size_t)n_train, "model says %zu training images", info.n_train);
    CHECKF(info.bank_size_full == bank_full && info.bank_size > 0 &&
               info.bank_size <= info.bank_size_full,
           "bank %zu of %zu (fitter had %zu)", info.bank_size, info.bank_size_full, bank_full);

    /* ---- score test/<type> ------------------------------------------------------------ */
    t0 = now_s();
    int gh, gw, S, D;
    uf_model_output_size(model, &gh, &gw, &S, &D);
    CHECKF(S == 224 && gh == 14 && gw == 14, "output size %dx%d grid, S %d", gh, gw, S);
    int n_all = 0;
    for (int t = 0; t < N_TYPES; t++) {
        if (path_fmt(dir, "%s/test/%s", root, test_types[t]) != 0) {
            CHECK(0);
            goto done;
        }
        tests[t] = list_png(dir, &n_test[t]);
        CHECKF(n_test[t] > 0, "%s: no PNG files", dir);
        n_all += n_test[t];
    }
    CHECKF(n_all == 83, "%d test images, expected 83", n_all);
    if (n_all == 0 || S <= 0) goto done;
    const size_t SS = (size_t)S * S;
    img_score = malloc((size_t)n_all * sizeof *img_score);
    img_label = malloc((size_t)n_all);
    pix = malloc((size_t)n_all * SS * sizeof *pix);
    pix_label = calloc((size_t)n_all * SS, 1);
    CHECK(img_score && img_label && pix && pix_label);
    if (!img_score || !img_label || !pix || !pix_label) goto done;
    st = uf_scorer_new(model, &sc);
    CHECKF(st == UF_OK, "uf_scorer_new: %s", uf_errmsg());
    if (st != UF_OK) goto done;
    int k = 0; /* test images scored so far */
    size_t n_pos_pix = 0;
    for (int t = 0; t < N_TYPES; t++) {
        for (int i0 = 0; i0 < n_test[t]; i0 += BATCH) {
            int nb = n_test[t] - i0 < BATCH ? n_test[t] - i0 : BATCH;
            int bad = 0;
            for (int b = 0; b < nb; b++) {
                const char *name = tests[t][i0 + b];
                bad |= path_fmt(paths[b], "%s/test/%s/%s", root, test_types[t], name);
                /* NNN.png -> ground_truth/<type>/NNN_mask.png */
                bad |= path_fmt(mpaths[b], "%s/ground_truth/%s/%.*s_mask.png", root,
                                test_types[t], (int)(strlen(name) - 4), name);
            }
            if (bad || load_batch(paths, nb, imgs) != 0 ||
                (t > 0 && load_batch(mpaths, nb, masks) != 0)) {
                CHECK(0);
                goto done;
            }
            uf_score out[BATCH];
            memset(out, 0, sizeof out);
            for (int b = 0; b < nb; b++) out[b].pixel_map = pix + (size_t)(k + b) * SS;
            st = uf_score_images(sc, (const uf_image *const *)imgs, nb, out);
            CHECKF(st == UF_OK, "uf_score_images (%s %d..): %s", test_types[t], i0, uf_errmsg());
            for (int b = 0; b < nb && st == UF_OK; b++) {
                img_score[k + b] = out[b].score;
                img_label[k + b] = t > 0;
                if (t == 0) continue; /* good: all-zero mask (calloc) */
                /* the mask, through the image's resize + crop, binarised at 128 */
                CHECKF(masks[b]->width == imgs[b]->width && masks[b]->height == imgs[b]->height,
                       "%s: mask %dx%d, image %dx%d", mpaths[b], masks[b]->width,
                       masks[b]->height, imgs[b]->width, imgs[b]->height);
                uf_image *m8 = NULL;
                uf_status ms = uf__preprocess_u8(masks[b], &p.pre, &m8);
                CHECKF(ms == UF_OK && m8->width == S && m8->height == S, "%s: %s", mpaths[b],
                       ms == UF_OK ? "wrong size" : uf_errmsg());
                if (ms == UF_OK && m8->width == S && m8->height == S) {
                    uint8_t *lab = pix_label + (size_t)(k + b) * SS;
                    size_t npos = 0;
                    for (size_t q = 0; q < SS; q++) {
                        lab[q] = m8->rgb[3 * q] >= 128;
                        npos += lab[q];
                    }
                    CHECKF(npos > 0, "%s: empty mask after preprocessing", mpaths[b]);
                    n_pos_pix += npos;
                }
                uf_image_free(m8);
            }
            for (int b = 0; b < nb; b++) {
                uf_image_free(imgs[b]);
                uf_image_free(masks[b]);
                imgs[b] = masks[b] = NULL;
            }
            if (st != UF_OK) goto done;
            k += nb;
        }
    }
    double t_pred = now_s() - t0;

    /* ---- metrics ---------------------------------------------------------------------- */
    double auc_img = uf_auroc(img_score, img_label, (size_t)n_all);
    double auc_pix = uf_auroc(pix, pix_label, (size_t)n_all * SS);
    fprintf(stderr,
            "    bottle: image AUROC %.4f pixel AUROC %.4f bank %zu (of %zu) fit %.1f s "
            "predict %.1f s (%d train, %d test images, %zu of %zu pixels defective)\n",
            auc_img, auc_pix, info.bank_size, info.bank_size_full, t_fit, t_pred, n_train,
            n_all, n_pos_pix, (size_t)n_all * SS);
    for (int t = 0, i = 0; t < N_TYPES; t++) { /* mean image score per folder, for the log */
        double m = 0;
        for (int j = 0; j < n_test[t]; j++) m += img_score[i + j];
        fprintf(stderr, "      %-14s %2d images, mean score %.4f\n", test_types[t], n_test[t],
                n_test[t] ? m / n_test[t] : 0.0);
        i += n_test[t];
    }
    CHECKF(auc_img >= 0.99, "image AUROC %.4f < 0.99", auc_img);
    CHECKF(auc_pix >= 0.98, "pixel AUROC %.4f < 0.98", auc_pix);

done:
    for (int b = 0; b < BATCH; b++) {
        uf_image_free(imgs[b]);
        uf_image_free(masks[b]);
    }
    free(img_score);
    free(img_label);
    free(pix);
    free(pix_label);
    uf_scorer_free(sc);
    uf_model_free(model);
    uf_fitter_free(fit);
    uf_backbone_free(bb);
    free_list(train, n_train);
    for (int t = 0; t < N_TYPES; t++) free_list(tests[t], n_test[t]);
}

int main(void)
{
    RUN(test_bottle);
    return TEST_DONE();
}
