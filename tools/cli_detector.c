/*
 * cli_detector.c - the method flags shared by every verb that fits a detector (fit, demo,
 * and later eval): --layers, --no-bpm, --bpm-kernel, --bpm-lambda, --soft-mask, --rollout,
 * --coreset, --sampler, --seed, --knn, --topk, --sigma, and the AnomalyDINO parts
 * (--preset anomalydino, --last-block, --cosine, --pca-mask, --pca-threshold, --rotations);
 * plus parallel image decoding.
 * Defaults come from uf_detector_default_params(), so the help text and the library agree.
 */
#include "cli.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const cli_detector_help =
    "Method options:\n"
    "  --layers A-B         average the patch tokens of blocks A..B, 1-based (default 3-10)\n"
    "  --no-bpm             keep every patch (turn Back Patch Masking off)\n"
    "  --bpm-kernel K       side of the mean filter over the CLS attention, odd (default 7)\n"
    "  --bpm-lambda L       foreground: smoothed attention / max > L (default 0.1)\n"
    "  --soft-mask          weight patch scores by the smoothed attention instead of\n"
    "                       dropping background patches (ablation)\n"
    "  --rollout            attention rollout instead of the last block's CLS attention\n"
    "                       (for supervised backbones)\n"
    "  --coreset P          keep a fraction P of the bank, (0, 1]; 1 keeps all (default 0.1;\n"
    "                       eval: the task default, see above)\n"
    "  --sampler NAME       greedy (k-center, default) or random\n"
    "  --seed N             seed of the coreset and of --shots (default 0)\n"
    "  --knn K              patch score: mean squared distance to the K nearest (default 1)\n"
    "  --topk F             image score: mean of the top F fraction of patches (default 0.05)\n"
    "  --sigma S            Gaussian smoothing of the pixel map in pixels (default 4; 0 none)\n"
    "  --tile T             with --crop 0: an image larger than T x T pixels after resizing\n"
    "                       runs through the ViT as overlapping T x T tiles (a multiple of\n"
    "                       the patch size), each with its own BPM map; every tile's\n"
    "                       patches are scored, the image score taken over all of them,\n"
    "                       and their patch scores averaged where tiles overlap into\n"
    "                       one map of the whole image\n"
    "  --tile-overlap O     pixels shared by neighbouring tiles, a multiple of the patch\n"
    "                       size below T (default 0)\n"
    "AnomalyDINO (Damm et al., WACV 2025; defaults of github.com/dammsi/AnomalyDINO):\n"
    "  --preset anomalydino --last-block --cosine --topk 0.01 --no-bpm --coreset 1\n"
    "                       --knn 1 --rotations 8 (their run_anomalydino.py defaults:\n"
    "                       knn_metric L2_normalized, k_neighbors 1, mean_top1p, the\n"
    "                       \"agnostic\" preprocess: rotation on, PCA masking off for bottle\n"
    "                       and textures); options after it override its parts\n"
    "  --last-block         features of the backbone's last block only\n"
    "  --cosine             L2-normalise the patch features: scores are 2 (1 - cos)\n"
    "  --pca-mask           mask test patches by the first principal component of the\n"
    "                       image's features instead of BPM (implies --no-bpm); they use it\n"
    "                       for capsule, hazelnut, pill, screw and toothbrush only\n"
    "  --pca-threshold T    PCA mask: foreground = projection > T (default 10, their\n"
    "                       value for DINOv2 features; other backbones need their own)\n"
    "  --rotations R        fit on each training image rotated by 360 r / R degrees,\n"
    "                       r = 0..R-1 (default 1 = off; their augment_image: 8)\n";

/* Value of option argv[*i]; prints a usage error when missing. */
static const char *value(const char *verb, int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        cli_usage_error(verb, "option %s needs a value", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

int cli_detector_option(uf_detector_params *p, const char *verb, int argc, char **argv, int *i)
{
    const char *a = argv[*i], *v;
    long n;
    double d;
    if (!strcmp(a, "--no-bpm")) {
        p->bpm = 0;
    } else if (!strcmp(a, "--soft-mask")) {
        p->soft_mask = 1;
    } else if (!strcmp(a, "--rollout")) {
        p->rollout = 1;
    } else if (!strcmp(a, "--last-block")) {
        p->layer_first = p->layer_last = UF_LAYER_LAST;
    } else if (!strcmp(a, "--cosine")) {
        p->cosine = 1;
    } else if (!strcmp(a, "--pca-mask")) {
        p->pca_mask = 1;
        p->bpm = 0;
    } else if (!strcmp(a, "--preset")) {
        if (!(v = value(verb, argc, argv, i))) return -1;
        if (strcmp(v, "anomalydino")) {
            cli_usage_error(verb, "--preset: expected anomalydino, got '%s'", v);
            return -1;
        }
        uf_detector_preset_anomalydino(p);
    } else if (!strcmp(a, "--pca-threshold")) {
        if (!(v = value(verb, argc, argv, i))) return -1;
        if (!cli_parse_float(v, -1e30, 1e30, &d)) {
            cli_usage_error(verb, "--pca-threshold: expected a number, got '%s'", v);
            return -1;
        }
        p->pca_threshold = (float)d;
    } else if (!strcmp(a, "--rotations")) {
        if (!(v = value(verb, argc, argv, i))) return -1;
        if (!cli_parse_int(v, 1, 360, &n)) {
            cli_usage_error(verb, "--rotations: expected an integer in 1..360, got '%s'", v);
            return -1;
        }
        p->rotations = (int)n;
    } else if (!strcmp(a, "--layers")) {
        if (!(v = value(verb, argc, argv, i))) return -1;
        int x, y, used = 0;
        if (sscanf(v, "%d-%d%n", &x, &y, &used) != 2 || v[used] || x < 1 || y < x || y > 64) {
            cli_usage_error(verb, "--layers: expected A-B with 1 <= A <= B <= 64, got '%s'", v);
            return -1;
        }
        p->layer_first = x;
        p->layer_last = y;
    } else if (!strcmp(a, "--bpm-kernel")) {
        if (!(v = value(verb, argc, argv, i))) return -1;
        if (!cli_parse_int(v, 1, 63, &n) || n % 2 == 0) {
            cli_usage_error(verb, "--bpm-kernel: expected an odd integer in 1..63, got '%s'", v);
            return -1;
        }
        p->bpm_kernel = (int)n;
    } else if (!strcmp(a, "--bpm-lambda")) {
        if (!(v = value(verb, argc, argv, i))) return -1;
        if (!cli_parse_float(v, 0, 1, &d)) {
            cli_usage_error(verb, "--bpm-lambda: expected a number in [0, 1], got '%s'", v);
            return -1;
        }
        p->bpm_lambda = (float)d;
    } else if (!strcmp(a, "--coreset")) {
        if (!(v = value(verb, argc, argv, i))) return -1;
        if (!cli_parse_float(v, 0, 1, &d) || d <= 0) {
            cli_usage_error(verb, "--coreset: expected a fraction in (0, 1], got '%s'", v);
            return -1;
        }
        p->coreset = d;
    } else if (!strcmp(a, "--sampler")) {
        if (!(v = value(verb, argc, argv, i))) return -1;
        if (!strcmp(v, "greedy")) p->sampler = UF_SAMPLER_GREEDY;
        else if (!strcmp(v, "random")) p->sampler = UF_SAMPLER_RANDOM;
        else {
            cli_usage_error(verb, "--sampler: expected greedy or random, got '%s'", v);
            return -1;
        }
    } else if (!strcmp(a, "--seed")) {
        if (!(v = value(verb, argc, argv, i))) return -1;
        char *end;
        errno = 0;
        unsigned long long s = strtoull(v, &end, 10);
        if (!*v || *end || v[0] == '-' || errno) { /* errno: beyond 2^64 - 1 */
            cli_usage_error(verb, "--seed: expected a non-negative integer, got '%s'", v);
            return -1;
        }
        p->seed = (uint64_t)s;
    } else if (!strcmp(a, "--knn")) {
        if (!(v = value(verb, argc, argv, i))) return -1;
        if (!cli_parse_int(v, 1, 1024, &n)) {
            cli_usage_error(verb, "--knn: expected an integer in 1..1024, got '%s'", v);
            return -1;
        }
        p->knn = (int)n;
    } else if (!strcmp(a, "--topk")) {
        if (!(v = value(verb, argc, argv, i))) return -1;
        if (!cli_parse_float(v, 0, 1, &d) || d <= 0) {
            cli_usage_error(verb, "--topk: expected a fraction in (0, 1], got '%s'", v);
            return -1;
        }
        p->topk = d;
    } else if (!strcmp(a, "--sigma")) {
        if (!(v = value(verb, argc, argv, i))) return -1;
        if (!cli_parse_float(v, 0, 1000, &d)) {
            cli_usage_error(verb, "--sigma: expected a number in [0, 1000], got '%s'", v);
            return -1;
        }
        p->sigma = d;
    } else if (!strcmp(a, "--tile") || !strcmp(a, "--tile-overlap")) {
        if (!(v = value(verb, argc, argv, i))) return -1;
        if (!cli_parse_int(v, 0, 8192, &n)) {
            cli_usage_error(verb, "%s: expected an integer in 0..8192, got '%s'", a, v);
            return -1;
        }
        *(a[6] ? &p->tile_overlap : &p->tile) = (int)n;
    } else {
        return 0;
    }
    return 1;
}

/* Say once per run, on the first image whose geometry discards more than 5% of its area,
 * that part of the images is never inspected (issue 13). */
static void warn_coverage(const char *path, int w, int h, const uf_preprocess *pre)
{
    static int said; /* one warning per process */
    double kept = uf_preprocess_coverage(pre, w, h);
    if (kept >= 0.95) return;
    int first;
#pragma omp atomic capture
    first = said++;
    if (first) return;
    fprintf(stderr, "uniformaly: warning: %s (%dx%d): the centre crop keeps %.0f%% of the "
                    "image's area, the rest is never inspected (--crop 0 keeps the whole image)\n",
            path, w, h, 100.0 * kept);
}

/* Decode paths[j] into *img: at full size while *kept (shared by the threads) stays within
 * max_bytes (*full true), else shrunk. uf_image_load_shrunk's status. */
static uf_status load_one(const char *path, const uf_preprocess *pre, uf_image **img, int *w,
                          int *h, bool *full, size_t max_bytes, size_t *kept)
{
    *full = false;
    if (max_bytes) {
        uf_status s = uf_image_load(path, img);
        if (s != UF_OK) return s;
        *w = (*img)->width;
        *h = (*img)->height;
        size_t bytes = (size_t)*w * (size_t)*h * 3, now;
#pragma omp atomic capture
        now = *kept += bytes;
        if (now <= max_bytes) {
            *full = true;
            return UF_OK;
        }
#pragma omp atomic
        *kept -= bytes;
        uf_image_free(*img); /* over the bound: shrunk, as without overlays */
        *img = NULL;
    }
    return uf_image_load_shrunk(path, pre, img, w, h);
}

/* cli_load_images (max_bytes 0), cli_load_images_full (SIZE_MAX: every image at full size)
 * and cli_load_images_keep. */
static int load_images(char *const *paths, int n, const uf_preprocess *pre, uf_image **imgs,
                       bool *full, size_t max_bytes)
{
    int ok = 0;
    size_t kept = 0;
#pragma omp parallel for schedule(dynamic, 1) reduction(+ : ok)
    for (int j = 0; j < n; j++) {
        imgs[j] = NULL;
        int w = 0, h = 0; /* the file's own size */
        bool f;
        if (load_one(paths[j], pre, &imgs[j], &w, &h, &f, max_bytes, &kept) == UF_OK) {
            ok++;
            if (full) full[j] = f;
            warn_coverage(paths[j], w, h, pre);
        } else {
            if (full) full[j] = false;
            const char *m = uf_errmsg();
            /* uf_image_load's messages start with the path */
            if (strncmp(m, paths[j], strlen(paths[j])) == 0) cli_error("%s", m);
            else cli_error("%s: %s", paths[j], m);
        }
    }
    return ok;
}

int cli_load_images(char *const *paths, int n, const uf_preprocess *pre, uf_image **imgs)
{
    return load_images(paths, n, pre, imgs, NULL, 0);
}

int cli_load_images_full(char *const *paths, int n, const uf_preprocess *pre, int full,
                         uf_image **imgs)
{
    return load_images(paths, n, pre, imgs, NULL, full ? SIZE_MAX : 0);
}

int cli_load_images_keep(char *const *paths, int n, const uf_preprocess *pre, uf_image **imgs,
                         bool *full, size_t max_bytes)
{
    return load_images(paths, n, pre, imgs, full, max_bytes);
}

/* A float as the shortest decimal that reads back to it (0.1f prints as 0.1). */
static double fl(float v)
{
    char b[32];
    snprintf(b, sizeof b, "%.9g", v);
    for (int d = 6; d <= 9; d++) {
        snprintf(b, sizeof b, "%.*g", d, v);
        if ((float)strtod(b, NULL) == v) break;
    }
    return strtod(b, NULL);
}

cJSON *cli_params_json(const uf_detector_params *p)
{
    static const char *const interp[] = {"bilinear", "bicubic", "lanczos", "nearest"};
    cJSON *o = cJSON_CreateObject();
    char buf[32];
    if (p->layer_first == UF_LAYER_LAST) snprintf(buf, sizeof buf, "last");
    else snprintf(buf, sizeof buf, "%d-%d", p->layer_first, p->layer_last);
    cJSON_AddStringToObject(o, "layers", buf);
    cJSON_AddBoolToObject(o, "bpm", p->bpm);
    cJSON_AddNumberToObject(o, "bpm_kernel", p->bpm_kernel);
    cJSON_AddNumberToObject(o, "bpm_lambda", fl(p->bpm_lambda));
    cJSON_AddBoolToObject(o, "soft_mask", p->soft_mask);
    cJSON_AddBoolToObject(o, "rollout", p->rollout);
    cJSON_AddNumberToObject(o, "coreset", p->coreset);
    cJSON_AddStringToObject(o, "sampler", p->sampler == UF_SAMPLER_RANDOM ? "random" : "greedy");
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)p->seed);
    cJSON_AddStringToObject(o, "seed", buf);
    cJSON_AddNumberToObject(o, "knn", p->knn);
    cJSON_AddNumberToObject(o, "topk", p->topk);
    cJSON_AddNumberToObject(o, "sigma", p->sigma);
    cJSON_AddNumberToObject(o, "tile", p->tile);
    cJSON_AddNumberToObject(o, "tile_overlap", p->tile_overlap);
    cJSON_AddBoolToObject(o, "cosine", p->cosine);
    cJSON_AddBoolToObject(o, "pca_mask", p->pca_mask);
    cJSON_AddNumberToObject(o, "pca_threshold", fl(p->pca_threshold));
    cJSON_AddNumberToObject(o, "rotations", p->rotations);
    cJSON *pre = cJSON_AddObjectToObject(o, "preprocess");
    cJSON_AddNumberToObject(pre, "resize", p->pre.resize);
    cJSON_AddNumberToObject(pre, "crop", p->pre.crop);
    cJSON_AddNumberToObject(pre, "pad_to", p->pre.pad_to);
    static const char *const fits[] = {"auto", "short", "long"};
    cJSON_AddStringToObject(pre, "fit", (unsigned)p->pre.fit < 3 ? fits[p->pre.fit] : "?");
    cJSON_AddStringToObject(pre, "interp", (unsigned)p->pre.interp < 4 ? interp[p->pre.interp] : "?");
    double mean[3] = {fl(p->pre.mean[0]), fl(p->pre.mean[1]), fl(p->pre.mean[2])};
    double stdv[3] = {fl(p->pre.std[0]), fl(p->pre.std[1]), fl(p->pre.std[2])};
    cJSON_AddItemToObject(pre, "mean", cJSON_CreateDoubleArray(mean, 3));
    cJSON_AddItemToObject(pre, "std", cJSON_CreateDoubleArray(stdv, 3));
    return o;
}

cJSON *cli_result_json(const char *image, float score, double threshold, const char *heatmap,
                       const char *map)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "image", image);
    cJSON_AddNumberToObject(o, "score", score);
    const double norm = cli_normalised(score, threshold); /* 1.0 = the threshold */
    if (isfinite(norm)) cJSON_AddNumberToObject(o, "normalized", norm);
    else cJSON_AddNullToObject(o, "normalized");
    if (!isfinite(threshold)) cJSON_AddNullToObject(o, "anomalous");
    else cJSON_AddBoolToObject(o, "anomalous", score > threshold);
    if (isfinite(threshold)) cJSON_AddNumberToObject(o, "threshold", threshold);
    else cJSON_AddNullToObject(o, "threshold");
    if (heatmap) cJSON_AddStringToObject(o, "heatmap", heatmap);
    else cJSON_AddNullToObject(o, "heatmap");
    if (map) cJSON_AddStringToObject(o, "map", map);
    else cJSON_AddNullToObject(o, "map");
    return o;
}

cJSON *cli_model_json(const char *path, const uf_model *m)
{
    uf_model_info in;
    uf_model_get_info(m, &in);
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "file", path);
    cJSON_AddItemToObject(o, "params", cli_params_json(&in.params));
    cJSON_AddNumberToObject(o, "bank_size", (double)in.bank_size);
    cJSON_AddNumberToObject(o, "bank_size_full", (double)in.bank_size_full);
    cJSON_AddNumberToObject(o, "n_train", (double)in.n_train);
    cJSON_AddNumberToObject(o, "dim", in.dim);
    cJSON_AddNumberToObject(o, "bank_bytes", (double)in.bank_bytes);
    if (isfinite(in.threshold)) cJSON_AddNumberToObject(o, "threshold", in.threshold);
    else cJSON_AddNullToObject(o, "threshold");
    uf_calibration cal;
    if (uf_model_get_calibration(m, &cal)) {
        cJSON *k = cJSON_AddObjectToObject(o, "calibration");
        const struct { const char *name; double v; } f[] = {
            {"n_images", (double)cal.n_images}, {"fpr_target", cal.fpr_target},
            {"fpr", cal.fpr}, {"image_min", cal.image_min}, {"image_mean", cal.image_mean},
            {"image_std", cal.image_std}, {"image_p50", cal.image_p50},
            {"image_p95", cal.image_p95}, {"image_max", cal.image_max},
            {"patch_min", cal.patch_min}, {"patch_p50", cal.patch_p50},
            {"patch_p99", cal.patch_p99}, {"patch_max", cal.patch_max}};
        for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
            if (isfinite(f[i].v)) cJSON_AddNumberToObject(k, f[i].name, f[i].v);
            else cJSON_AddNullToObject(k, f[i].name);
    } else {
        cJSON_AddNullToObject(o, "calibration");
    }
    cJSON *b = cJSON_AddObjectToObject(o, "backbone");
    cJSON_AddStringToObject(b, "format", in.backbone.format);
    cJSON_AddStringToObject(b, "path", in.backbone_path);
    cJSON_AddStringToObject(b, "sha256", in.backbone_sha256);
    cJSON_AddBoolToObject(b, "embedded", in.backbone_embedded);
    cJSON_AddNumberToObject(b, "dim", in.backbone.dim);
    cJSON_AddNumberToObject(b, "depth", in.backbone.depth);
    cJSON_AddNumberToObject(b, "heads", in.backbone.heads);
    cJSON_AddNumberToObject(b, "patch", in.backbone.patch);
    cJSON_AddNumberToObject(b, "n_params", (double)in.backbone.n_params);
    cJSON_AddStringToObject(b, "precision", uf_precision_name(uf_backbone_precision(uf_model_backbone(m))));
    return o;
}
