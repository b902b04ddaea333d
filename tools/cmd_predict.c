/*
 * cmd_predict.c - `uniformaly predict`: score images with a fitted model, one result line
 * per image (text or JSON), optional heatmap overlays (PNG) and raw float maps (.npy) in
 * the original image geometry; and `uniformaly info` on a model file.
 */
#include "cli.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const help =
    "Usage: uniformaly predict MODEL.ufm [options] IMAGE|DIR|LIST.txt...\n"
    "\n"
    "Score images with a model written by 'uniformaly fit'. One line per image on stdout:\n"
    "  PATH<TAB>SCORE<TAB>anomalous|normal|-     ('-' when no threshold is known)\n"
    "Higher scores are more anomalous. Unreadable images are reported on stderr and\n"
    "skipped (exit status 1 at the end). In PATH a backslash, tab, newline or carriage\n"
    "return is written as \\\\, \\t, \\n, \\r; in JSON output every byte of a name that is\n"
    "not valid UTF-8 is replaced by U+FFFD (the JSON stays valid, the name inexact).\n"
    "\n"
    "Options:\n"
    "  --json               one JSON object per line instead: {\"image\": PATH, \"score\": S,\n"
    "                       \"anomalous\": true|false|null, \"threshold\": T|null,\n"
    "                       \"heatmap\": PNG|null, \"map\": NPY|null}\n"
    "  --threshold T        decision threshold on the score (default: the model's, if any)\n"
    "  --heatmap-dir D      write D/NAME.png: the pixel map as a jet colormap over the image\n"
    "                       (NAME is the image path with '/' turned into '_')\n"
    "  --heatmap-range L,H  colour scale of the overlays (default: each map's min..max)\n"
    "  --raw-maps           also write D/NAME.npy: the pixel map as float32 [height][width]\n"
    "                       in the original image's geometry (needs --heatmap-dir)\n"
    "  --backbone W         load this checkpoint instead of the recorded/embedded one\n"
    "                       (must have the recorded sha256 unless --allow-other-backbone)\n"
    "  --allow-other-backbone\n"
    "  --batch N            images per forward pass (default 8)\n"
    "  --threads N          total compute threads (default: $OMP_NUM_THREADS or all cores)\n"
    "  --quiet              no progress output on stderr\n";

/* "a/b/c.png" -> "a_b_c" (leading "./" and "../" dropped), into out[n]. */
static void map_name(const char *path, char *out, size_t n)
{
    while (!strncmp(path, "./", 2) || !strncmp(path, "../", 3)) path += path[1] == '/' ? 2 : 3;
    while (*path == '/') path++;
    size_t j = 0;
    const char *dot = strrchr(path, '.');
    for (const char *p = path; *p && j + 1 < n; p++) {
        if (dot && p == dot && !strchr(p, '/')) break;
        out[j++] = *p == '/' ? '_' : *p;
    }
    out[j] = '\0';
}

/* Write a float32 .npy [h][w] atomically (uf_write_file_atomic). */
static bool write_npy(const char *path, const float *a, int h, int w)
{
    char hdr[128];
    int hl = snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }", h, w);
    int total = 10 + hl + 1, pad = (64 - total % 64) % 64;
    size_t hlen = (size_t)(hl + pad + 1), nbytes = (size_t)h * (size_t)w * sizeof(float);
    uint8_t *buf = malloc(10 + hlen + nbytes); /* magic, header, [h][w] floats */
    if (!buf) {
        cli_error("%s: out of memory", path);
        return false;
    }
    const uint8_t pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (uint8_t)(hlen & 255),
                             (uint8_t)(hlen >> 8)};
    memcpy(buf, pre, 10);
    memcpy(buf + 10, hdr, (size_t)hl);
    memset(buf + 10 + hl, ' ', (size_t)pad);
    buf[10 + hlen - 1] = '\n';
    memcpy(buf + 10 + hlen, a, nbytes);
    bool ok = uf_write_file_atomic(path, buf, 10 + hlen + nbytes) == UF_OK;
    if (!ok) cli_error("%s", uf_errmsg());
    free(buf);
    return ok;
}

/* Heatmap overlay (and raw map) of one scored image; names written into png/npy. */
static bool write_maps(const uf_model *m, const uf_image *img, const float *pmap,
                       const char *dir, const char *img_path, const float range[2], bool raw,
                       char *png, char *npy, size_t n)
{
    char name[2048];
    map_name(img_path, name, sizeof name);
    snprintf(png, n, "%s/%s.png", dir, name);
    snprintf(npy, n, "%s/%s.npy", dir, name);
    float *full = malloc((size_t)img->width * (size_t)img->height * sizeof(float));
    uf_image *ov = NULL;
    bool ok = full && uf_model_map_to_image(m, pmap, img->width, img->height, full) == UF_OK &&
              uf_heatmap_overlay(img, full, range[0], range[1], 0.5f, &ov) == UF_OK &&
              uf_image_write_png(ov, png) == UF_OK;
    if (!ok) cli_error("%s: %s", png, full ? uf_errmsg() : "out of memory");
    if (ok && raw) ok = write_npy(npy, full, img->height, img->width);
    uf_image_free(ov);
    free(full);
    return ok;
}


int cmd_model_info(const char *path, bool json)
{
    uf_model *m = NULL;
    /* describing a model needs no backbone weights, but loading checks them; a missing
     * checkpoint is reported like any other failure */
    if (uf_model_load(path, NULL, &m) != UF_OK) {
        cli_error("%s", uf_errmsg());
        return CLI_EXIT_RUNTIME;
    }
    uf_model_info in;
    uf_model_get_info(m, &in);
    const uf_detector_params *p = &in.params;
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "file", path);
        cJSON_AddItemToObject(o, "params", cli_params_json(p));
        cJSON_AddNumberToObject(o, "bank_size", (double)in.bank_size);
        cJSON_AddNumberToObject(o, "bank_size_full", (double)in.bank_size_full);
        cJSON_AddNumberToObject(o, "n_train", (double)in.n_train);
        cJSON_AddNumberToObject(o, "dim", in.dim);
        cJSON_AddNumberToObject(o, "bank_bytes", (double)in.bank_bytes);
        if (isfinite(in.threshold)) cJSON_AddNumberToObject(o, "threshold", in.threshold);
        else cJSON_AddNullToObject(o, "threshold");
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
        char *s = cli_json_print(o);
        if (s) puts(s);
        free(s);
        cJSON_Delete(o);
    } else {
        static const char *const interp[] = {"bilinear", "bicubic", "lanczos", "nearest"};
        printf("file:         %s\n", path);
        printf("backbone:     ViT patch %d, dim %d, depth %d, heads %d (%s, %.1f MB)\n",
               in.backbone.patch, in.backbone.dim, in.backbone.depth, in.backbone.heads,
               in.backbone.format, in.backbone.n_params * 4.0 / 1e6);
        printf("checkpoint:   %s%s\n", in.backbone_path[0] ? in.backbone_path : "(random weights)",
               in.backbone_embedded ? " (embedded in the model file)" : "");
        if (in.backbone_sha256[0]) printf("sha256:       %s\n", in.backbone_sha256);
        printf("preprocess:   resize %d, crop %d%s, %s, mean %g,%g,%g, std %g,%g,%g\n",
               p->pre.resize, p->pre.crop, p->pre.pad_to ? " (padded)" : "",
               (unsigned)p->pre.interp < 4 ? interp[p->pre.interp] : "?", p->pre.mean[0],
               p->pre.mean[1], p->pre.mean[2], p->pre.std[0], p->pre.std[1], p->pre.std[2]);
        printf("features:     mean of blocks %d-%d\n", p->layer_first, p->layer_last);
        if (p->bpm)
            printf("bpm:          %s, kernel %d, lambda %g%s\n", p->soft_mask ? "soft" : "on",
                   p->bpm_kernel, p->bpm_lambda, p->rollout ? ", rollout" : "");
        else
            printf("bpm:          off\n");
        printf("coreset:      %g (%s, seed %llu)\n", p->coreset,
               p->sampler == UF_SAMPLER_RANDOM ? "random" : "greedy", (unsigned long long)p->seed);
        printf("scoring:      knn %d, top %g of patches, sigma %g\n", p->knn, p->topk, p->sigma);
        printf("training:     %zu images, %zu foreground patches\n", in.n_train, in.bank_size_full);
        printf("bank:         %zu x %d (%.1f MB)\n", in.bank_size, in.dim, in.bank_bytes / 1e6);
        if (isfinite(in.threshold)) printf("threshold:    %g\n", in.threshold);
        else printf("threshold:    none\n");
    }
    uf_model_free(m);
    return 0;
}

int cmd_predict(int argc, char **argv)
{
    const char *verb = "predict";
    cli_common c;
    cli_common_init(&c);
    uf_model_load_params lp = uf_model_load_default_params();
    bool json = false, raw = false;
    double thr = NAN;
    float range[2] = {0, 0};
    const char *heat_dir = NULL, *model_path = NULL;
    int npos = 0, rc = 0;
    char **pos = calloc((size_t)argc + 1, sizeof *pos);
    if (!pos) return CLI_EXIT_RUNTIME;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        long n;
        bool has = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(help, stdout);
            goto out;
        } else if (!strcmp(a, "--json")) {
            json = true;
        } else if (!strcmp(a, "--raw-maps")) {
            raw = true;
        } else if (!strcmp(a, "--quiet")) {
            c.quiet = true;
        } else if (!strcmp(a, "--allow-other-backbone")) {
            lp.allow_other_backbone = 1;
        } else if (!strcmp(a, "--threshold")) {
            if (!has || !cli_parse_float(argv[i + 1], -1e30, 1e30, &thr)) {
                rc = cli_usage_error(verb, "--threshold: expected a number");
                goto out;
            }
            i++;
        } else if (!strcmp(a, "--heatmap-dir") || !strcmp(a, "--backbone")) {
            if (!has) { rc = cli_usage_error(verb, "option %s needs a value", a); goto out; }
            if (a[2] == 'h') heat_dir = argv[++i];
            else lp.backbone_path = argv[++i];
        } else if (!strcmp(a, "--heatmap-range")) {
            if (!has || !cli_parse_floats(argv[i + 1], 2, range) || !(range[1] > range[0])) {
                rc = cli_usage_error(verb, "--heatmap-range: expected L,H with L < H");
                goto out;
            }
            i++;
        } else if (!strcmp(a, "--batch") || !strcmp(a, "--threads")) {
            long hi = a[2] == 'b' ? 256 : 1024, lo = a[2] == 'b' ? 1 : 0;
            if (!has || !cli_parse_int(argv[i + 1], lo, hi, &n)) {
                rc = cli_usage_error(verb, "%s: expected an integer in %ld..%ld", a, lo, hi);
                goto out;
            }
            if (a[2] == 'b') c.batch = (int)n;
            else c.threads = (int)n;
            i++;
        } else if (a[0] == '-' && a[1]) {
            rc = cli_usage_error(verb, "unknown option '%s'", a);
            goto out;
        } else if (!model_path) {
            model_path = a;
        } else {
            pos[npos++] = argv[i];
        }
    }
    if (!model_path) { rc = cli_usage_error(verb, "no model file given"); goto out; }
    if (npos == 0) { rc = cli_usage_error(verb, "no images given"); goto out; }
    if (raw && !heat_dir) { rc = cli_usage_error(verb, "--raw-maps needs --heatmap-dir"); goto out; }
    uf_set_threads(c.threads);

    cli_strings images = {0};
    uf_model *m = NULL;
    uf_scorer *sc = NULL;
    uf_image **batch = NULL;
    uf_score *res = NULL;
    float *maps = NULL;
    if (!cli_expand_images(npos, pos, &images)) { rc = CLI_EXIT_RUNTIME; goto done; }
    if (heat_dir) {
        struct stat st;
        if (stat(heat_dir, &st) != 0 && mkdir(heat_dir, 0777) != 0) {
            cli_error("%s: cannot create directory: %s", heat_dir, strerror(errno));
            rc = CLI_EXIT_RUNTIME;
            goto done;
        }
    }
    if (uf_model_load(model_path, &lp, &m) != UF_OK || uf_scorer_new(m, &sc) != UF_OK) {
        cli_error("%s", uf_errmsg());
        rc = CLI_EXIT_RUNTIME;
        goto done;
    }
    if (!isfinite(thr)) {
        uf_model_info mi;
        uf_model_get_info(m, &mi);
        thr = mi.threshold;
    }
    int S;
    uf_model_output_size(m, NULL, NULL, &S, NULL);
    size_t plane = (size_t)S * (size_t)S;
    batch = calloc((size_t)c.batch, sizeof *batch);
    res = calloc((size_t)c.batch, sizeof *res);
    maps = heat_dir ? malloc(plane * (size_t)c.batch * sizeof(float)) : NULL; /* [batch][S][S] */
    if (!batch || !res || (heat_dir && !maps)) { cli_error("out of memory"); rc = CLI_EXIT_RUNTIME; goto done; }
    for (size_t b0 = 0; b0 < images.n; b0 += (size_t)c.batch) {
        int nb = (int)((images.n - b0) < (size_t)c.batch ? images.n - b0 : (size_t)c.batch);
        if (cli_load_images(images.v + b0, nb, batch) != nb) rc = CLI_EXIT_RUNTIME;
        /* score the decoded ones as one batch */
        const uf_image *ok[256];
        int idx[256], nok = 0;
        for (int j = 0; j < nb; j++)
            if (batch[j]) {
                memset(&res[nok], 0, sizeof res[nok]);
                res[nok].pixel_map = maps ? maps + plane * (size_t)nok : NULL;
                idx[nok] = j;
                ok[nok++] = batch[j];
            }
        uf_status s = nok ? uf_score_images(sc, ok, nok, res) : UF_OK;
        if (s != UF_OK) { /* e.g. NaN features: retry one by one to name the image */
            for (int k = 0; k < nok; k++) {
                if (uf_score_images(sc, &ok[k], 1, &res[k]) != UF_OK) {
                    cli_error("%s: %s", images.v[b0 + (size_t)idx[k]], uf_errmsg());
                    rc = CLI_EXIT_RUNTIME;
                    res[k].score = NAN;
                }
            }
        }
        for (int k = 0; k < nok; k++) {
            const char *path = images.v[b0 + (size_t)idx[k]];
            if (isnan(res[k].score)) continue;
            char png[4200] = "", npy[4200] = "";
            bool wrote = false;
            if (heat_dir) {
                wrote = write_maps(m, ok[k], res[k].pixel_map, heat_dir, path, range, raw, png,
                                   npy, sizeof png);
                if (!wrote) rc = CLI_EXIT_RUNTIME;
            }
            int anom = isfinite(thr) ? res[k].score > thr : -1;
            if (json) {
                cJSON *o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "image", path);
                cJSON_AddNumberToObject(o, "score", res[k].score);
                if (anom < 0) cJSON_AddNullToObject(o, "anomalous");
                else cJSON_AddBoolToObject(o, "anomalous", anom);
                if (isfinite(thr)) cJSON_AddNumberToObject(o, "threshold", thr);
                else cJSON_AddNullToObject(o, "threshold");
                if (wrote) cJSON_AddStringToObject(o, "heatmap", png);
                else cJSON_AddNullToObject(o, "heatmap");
                if (wrote && raw) cJSON_AddStringToObject(o, "map", npy);
                else cJSON_AddNullToObject(o, "map");
                char *str = cli_json_print(o);
                if (str) puts(str);
                free(str);
                cJSON_Delete(o);
            } else {
                cli_tsv_field(stdout, path);
                printf("\t%.6g\t%s\n", res[k].score,
                       anom < 0 ? "-" : anom ? "anomalous" : "normal");
            }
        }
        fflush(stdout);
        for (int j = 0; j < nb; j++) uf_image_free(batch[j]);
        memset(batch, 0, (size_t)nb * sizeof *batch);
        cli_progress(&c, "predict", b0 + (size_t)nb, images.n);
    }
done:
    if (batch)
        for (int j = 0; j < c.batch; j++) uf_image_free(batch[j]);
    free(batch);
    free(res);
    free(maps);
    uf_scorer_free(sc);
    uf_model_free(m);
    cli_strings_free(&images);
out:
    free(pos);
    return rc;
}
