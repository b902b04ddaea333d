/*
 * cmd_predict.c - `uniformaly predict`: score images with a fitted model, one result line
 * per image (text or JSON), optional heatmap overlays (PNG) and raw float maps (.npy) in
 * the original image geometry; and `uniformaly info` on a model file. Batches hold images
 * shrunk while decoded, or with overlays at full size (within a memory bound, past which an
 * overlay decodes its image again, alone); a run is a pipeline (predict_pipeline): the next
 * batch is decoded and the previous one's overlays written while a batch is scored. Heatmap
 * names are made unique for the whole run before anything is written, and no output may
 * be an input.
 */
#include "cli.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const help =
    "Usage: uniformaly predict MODEL.ufm [options] IMAGE|DIR|LIST.txt...\n"
    "       uniformaly predict MODEL.ufm --stdin [options] < PATHS\n"
    "\n"
    "Score images with a model written by 'uniformaly fit'. One line per image on stdout:\n"
    "  PATH<TAB>SCORE<TAB>anomalous|normal|-<TAB>NORMALIZED|-   ('-': no threshold known)\n"
    "NORMALIZED is SCORE / threshold: 1.0 is the threshold, above it is anomalous (a model\n"
    "gets its threshold from 'uniformaly calibrate' or 'fit --holdout').\n"
    "Higher scores are more anomalous. Unreadable images are reported on stderr and\n"
    "skipped (exit status 1 at the end). In PATH a backslash, tab, newline or carriage\n"
    "return is written as \\\\, \\t, \\n, \\r; in JSON output every byte of a name that is\n"
    "not valid UTF-8 is replaced by U+FFFD (the JSON stays valid, the name inexact).\n"
    "\n"
    "Options:\n"
    "  --json               one JSON object per line instead: {\"image\": PATH, \"score\": S,\n"
    "                       \"normalized\": S/T|null, \"anomalous\": true|false|null,\n"
    "                       \"threshold\": T|null,\n"
    "                       \"heatmap\": PNG|null, \"map\": NPY|null}\n"
    "  --stdin              read image paths from standard input, one per line, and write\n"
    "                       each image's line as soon as it is scored (flushed); the model\n"
    "                       stays loaded until end of input. An unreadable image gets its\n"
    "                       message on stderr and no line on stdout. Not with --heatmap-dir\n"
    "  --threshold T        decision threshold on the score (default: the model's, if any)\n"
    "  --heatmap-dir D      write D/NAME.png: the pixel map as a jet colormap over the image\n"
    "                       (NAME is the image path with '/' turned into '_', extension kept:\n"
    "                       a/x.jpg -> D/a_x.jpg.png; when two images would get one NAME,\n"
    "                       the later ones get '-' and 8 hex digits of a hash of their path\n"
    "                       added; an output that is one of the inputs is refused)\n"
    "                       The overlay shows the decision and score at the top left, a\n"
    "                       colour bar with its values at the right and, with a threshold,\n"
    "                       the outline of the region above the pixel level (--masks)\n"
    "  --heatmap-range L,H  colour scale of the overlays (default for a calibrated model,\n"
    "                       the same for every image: its median normal patch score blue,\n"
    "                       its largest normal patch score red, the image threshold ticked\n"
    "                       on the bar; else each map's min..max)\n"
    "  --masks              also write D/NAME.mask.png: white where the map is above the\n"
    "                       pixel level (a calibrated model's largest normal patch score,\n"
    "                       else the threshold; needs --heatmap-dir and a threshold); --json\n"
    "                       \"regions\": [{\"bbox\": [x, y, w, h], \"area\": pixels, \"peak\":\n"
    "                       score}] lists the regions above it (highest peak first, at most 8)\n"
    "  --raw-maps           also write D/NAME.npy: the pixel map as float32 [height][width]\n"
    "                       in the original image's geometry (needs --heatmap-dir)\n"
    "  --backbone W         load this checkpoint instead of the recorded/embedded one\n"
    "                       (must have the recorded sha256 unless --allow-other-backbone)\n"
    "  --allow-other-backbone\n"
    "  --batch N            images per forward pass (default 8)\n"
    "  --threads N          total compute threads (default: $OMP_NUM_THREADS or all cores)\n"
    "  --precision P        fp32 or bf16 (default: the precision the model file records,\n"
    "                       fp32 for files without one)\n"
    "  --quiet              no progress output on stderr\n";

/* "a/b/c.png" -> "a_b_c.png" (leading "./", "../" and "/" dropped), malloc'd. */
static char *map_name(const char *path)
{
    while (!strncmp(path, "./", 2) || !strncmp(path, "../", 3)) path += path[1] == '/' ? 2 : 3;
    while (*path == '/') path++;
    char *out = strdup(path);
    for (char *p = out; p && *p; p++)
        if (*p == '/') *p = '_';
    return out;
}

/* 32 bits of FNV-1a 64 of s, salted. */
static uint32_t name_hash(const char *s, uint64_t salt)
{
    uint64_t h = 0xcbf29ce484222325ull ^ salt;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return (uint32_t)(h ^ h >> 32);
}

typedef struct named {
    char *name;
    size_t i; /* index of the image */
} named;

static int cmp_named(const void *a, const void *b)
{
    const named *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->i > y->i) - (x->i < y->i);
}

/* One output name per image, unique within the run (map_name, and for every image after the
 * first with a given name "-XXXXXXXX" from its path's hash). *out is [n], malloc'd names;
 * false after printing an error (out of memory, or two names that stay equal). */
bool cli_heatmap_names(char *const *paths, size_t n, char ***out)
{
    named *v = calloc(n ? n : 1, sizeof *v);
    char **names = calloc(n ? n : 1, sizeof *names);
    bool ok = v && names;
    for (size_t i = 0; ok && i < n; i++) ok = (v[i].name = map_name(paths[i])) != NULL, v[i].i = i;
    for (int pass = 0; ok && pass < 3; pass++) { /* rehash with a new salt if still equal */
        qsort(v, n, sizeof *v, cmp_named);
        bool clash = false;
        for (size_t k = 1; ok && k < n; k++) {
            if (strcmp(v[k].name, v[k - 1].name) != 0) continue;
            if (pass == 2) {
                cli_error("%s and %s: cannot give their heatmaps distinct names", paths[v[k - 1].i],
                          paths[v[k].i]);
                ok = false;
                break;
            }
            clash = true;
            char *base = map_name(paths[v[k].i]);
            size_t len = base ? strlen(base) + 10 : 0;
            char *nm = base ? malloc(len) : NULL;
            if (nm) snprintf(nm, len, "%s-%08x", base, (unsigned)name_hash(paths[v[k].i], (uint64_t)pass));
            free(base);
            if (!nm) { cli_error("out of memory"); ok = false; break; }
            free(v[k].name);
            v[k].name = nm;
        }
        if (!clash) break;
    }
    for (size_t k = 0; k < n && v; k++) {
        if (ok) names[v[k].i] = v[k].name;
        else free(v[k].name);
    }
    free(v);
    if (!ok) {
        free(names);
        names = NULL;
    }
    *out = names;
    return ok;
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

/* A binary PNG (255 where map > level) of [h][w]. */
static bool write_mask(const char *path, const float *map, int w, int h, float level)
{
    uf_image *im = NULL;
    if (uf_image_new(w, h, &im) != UF_OK) return false;
    for (size_t i = 0; i < (size_t)w * (size_t)h; i++)
        memset(im->rgb + 3 * i, map[i] > level ? 255 : 0, 3);
    bool ok = uf_image_write_png(im, path) == UF_OK;
    uf_image_free(im);
    return ok;
}

void cli_overlay_style_init(cli_overlay_style *st, const float range[2], double thr, bool masks,
                            const uf_model *m)
{
    uf_calibration cal;
    st->thr = thr;
    st->masks = masks;
    st->regions = true;
    st->lo = range[0];
    st->hi = range[1];
    st->level = isfinite(thr) ? (float)thr : NAN;
    /* A calibrated model draws every image on one scale: the median normal patch score
     * blue, red from the largest normal patch score seen in calibration, which is also the
     * pixel level of outlines, masks and regions (the image threshold, a mean of the top
     * patches, is lower than the peaks of normal maps: outlined, good parts looked
     * defective). The bar marks the image threshold. */
    if (m && uf_model_get_calibration(m, &cal) && cal.patch_max > cal.patch_p50) {
        st->level = cal.patch_max;
        if (!(st->hi > st->lo)) {
            st->lo = cal.patch_p50;
            st->hi = cal.patch_max;
        }
    }
}

uf_status cli_annotated_overlay(const uf_model *m, const float *pmap, const uf_image *img,
                                const cli_overlay_style *st, float score, float **full_out,
                                uf_image **ov)
{
    const size_t npx = (size_t)img->width * (size_t)img->height;
    float *full = malloc(npx * sizeof(float));
    uint8_t *seen = malloc(npx); /* the part the model inspects; the rest is greyed */
    char label[96];
    const int anom = isfinite(st->thr) ? score > st->thr : -1;
    const double norm = cli_normalised(score, st->thr);
    if (anom < 0) snprintf(label, sizeof label, "SCORE %.4g", score);
    else snprintf(label, sizeof label, "%s %.2f (SCORE %.4g)", anom ? "ANOMALOUS" : "NORMAL",
                  norm, score);
    uf_annotation a = {.lo = st->lo, .hi = st->hi, .alpha = 0.5f, .outline = st->level,
                       .colorbar = st->hi > st->lo, .mark = (float)st->thr, .label = label,
                       .decision = anom, .inspected = seen};
    uf_status s = !full || !seen ? UF_ERR_NOMEM
                                 : uf_model_map_to_image(m, pmap, img->width, img->height, full);
    if (s == UF_OK) s = uf_model_inspected(m, img->width, img->height, seen);
    if (s == UF_OK) s = uf_heatmap_annotate(img, full, &a, ov);
    free(seen);
    if (s == UF_OK && full_out) *full_out = full;
    else free(full);
    return s;
}

/* Heatmap overlay (and raw map, mask) of one scored image, named name.png / name.npy /
 * name.mask.png in dir, drawn over orig, the image as decoded; NULL: decode it again here
 * and release it at once. Outputs that are inputs are refused. Called from several
 * threads at once (one image each); errors are printed as one line each. */
bool cli_write_maps(const uf_model *m, const float *pmap, const char *dir, const char *img_path,
                    const uf_image *orig, const char *name, const cli_overlay_style *st,
                    float score, bool raw, const uf_inputs *inputs, cli_map_out *mo)
{
    mo->wrote = false;
    mo->n_reg = 0;
    mo->npy[0] = mo->mask[0] = '\0';
    snprintf(mo->png, sizeof mo->png, "%s/%s.png", dir, name);
    if (raw) snprintf(mo->npy, sizeof mo->npy, "%s/%s.npy", dir, name);
    if (st->masks) snprintf(mo->mask, sizeof mo->mask, "%s/%s.mask.png", dir, name);
    if (!cli_check_output(mo->png, inputs) || (raw && !cli_check_output(mo->npy, inputs)) ||
        (st->masks && !cli_check_output(mo->mask, inputs)))
        return false;
    uf_image *own = NULL;
    if (!orig && uf_image_load(img_path, &own) != UF_OK) {
        cli_error("%s", uf_errmsg());
        return false;
    }
    const uf_image *img = orig ? orig : own;
    float *full = NULL;
    uf_image *ov = NULL;
    uf_status s = cli_annotated_overlay(m, pmap, img, st, score, &full, &ov);
    if (s == UF_OK) s = uf_image_write_png(ov, mo->png);
    bool ok = s == UF_OK;
    if (!ok) cli_error("%s: %s", mo->png, s == UF_ERR_NOMEM ? "out of memory" : uf_errmsg());
    if (ok && raw) ok = write_npy(mo->npy, full, img->height, img->width);
    if (ok && st->masks && !(ok = write_mask(mo->mask, full, img->width, img->height, st->level)))
        cli_error("%s: %s", mo->mask, uf_errmsg());
    if (ok && st->regions && isfinite(st->level) &&
        uf_map_regions(full, img->width, img->height, st->level, CLI_MAX_REGIONS, mo->reg,
                       &mo->n_reg) != UF_OK) {
        cli_error("%s: %s", img_path, uf_errmsg());
        ok = false;
    }
    uf_image_free(ov);
    uf_image_free(own);
    free(full);
    mo->wrote = ok;
    return ok;
}

int cmd_model_info(const char *path, bool json)
{
    uf_model *m = NULL;
    /* describing a model needs no backbone weights, but loading checks them; a missing
     * checkpoint is reported like any other failure */
    if (cli_model_load(path, NULL, &m) != UF_OK) {
        cli_error("%s", uf_errmsg());
        return CLI_EXIT_RUNTIME;
    }
    uf_model_info in;
    uf_model_get_info(m, &in);
    const uf_detector_params *p = &in.params;
    if (json) {
        cJSON *o = cli_model_json(path, m);
        char *s = o ? cli_json_print(o) : NULL;
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
        printf("precision:    %s\n", uf_precision_name(uf_backbone_precision(uf_model_backbone(m))));
        printf("preprocess:   resize %d, crop %d%s, %s, mean %g,%g,%g, std %g,%g,%g\n",
               p->pre.resize, p->pre.crop,
               p->pre.pad_to && p->pre.crop == 0 && p->pre.fit == UF_FIT_LONG
                   ? " (letterboxed: the whole image, longer side to resize, padded)"
               : p->pre.pad_to    ? " (padded)"
               : p->pre.crop == 0 ? " (the whole image, longer side to resize)"
                                  : "",
               (unsigned)p->pre.interp < 4 ? interp[p->pre.interp] : "?", p->pre.mean[0],
               p->pre.mean[1], p->pre.mean[2], p->pre.std[0], p->pre.std[1], p->pre.std[2]);
        if (p->pre.pad_to) printf("canvas:       %d x %d\n", p->pre.pad_to, p->pre.pad_to);
        if (p->tile)
            printf("tiling:       %d x %d tiles, overlap %d pixels\n", p->tile, p->tile,
                   p->tile_overlap);
        printf("features:     mean of blocks %d-%d\n", p->layer_first, p->layer_last);
        if (p->bpm)
            printf("bpm:          %s, kernel %d, lambda %g%s\n", p->soft_mask ? "soft" : "on",
                   p->bpm_kernel, p->bpm_lambda, p->rollout ? ", rollout" : "");
        else
            printf("bpm:          off\n");
        if (p->pca_mask) printf("pca mask:     threshold %g\n", p->pca_threshold);
        if (p->cosine || p->rotations > 1)
            printf("anomalydino:  %s, %d rotation%s of each training image\n",
                   p->cosine ? "cosine distance (2 (1 - cos))" : "squared L2", p->rotations,
                   p->rotations == 1 ? "" : "s");
        printf("coreset:      %g (%s, seed %llu)\n", p->coreset,
               p->sampler == UF_SAMPLER_RANDOM ? "random" : "greedy", (unsigned long long)p->seed);
        printf("scoring:      knn %d, top %g of patches, sigma %g\n", p->knn, p->topk, p->sigma);
        printf("training:     %zu images, %zu foreground patches\n", in.n_train, in.bank_size_full);
        printf("bank:         %zu x %d (%.1f MB)\n", in.bank_size, in.dim, in.bank_bytes / 1e6);
        if (isfinite(in.threshold)) printf("threshold:    %g\n", in.threshold);
        else printf("threshold:    none\n");
        uf_calibration cal;
        if (uf_model_get_calibration(m, &cal))
            printf("calibration:  %zu normal images, scores %g..%g (mean %g, sd %g), "
                   "false-positive rate %.3g%% (target %s), patch scores %g..%g (p99 %g)\n",
                   cal.n_images, cal.image_min, cal.image_max, cal.image_mean, cal.image_std,
                   100 * cal.fpr, isfinite(cal.fpr_target) ? "set" : "F1", cal.patch_min,
                   cal.patch_max, cal.patch_p99);
        else
            printf("calibration:  none\n");
    }
    uf_model_free(m);
    return 0;
}

/* Everything `predict` was asked to do. */
typedef struct predict_opts {
    cli_common c;
    uf_model_load_params lp;
    bool json, raw, masks;
    bool from_stdin;  /* --stdin: paths from standard input, one result line each */
    double thr;       /* NAN: the model's */
    float range[2];   /* --heatmap-range (0, 0: each map's own) */
    const char *heat_dir, *model_path;
    int npos;
    char **pos;       /* [npos] image, folder and list arguments */
} predict_opts;

/* Parse argv into o (o->pos allocated here). Returns -1 to go on, else the exit status
 * (0 after --help; usage errors printed). */
static int parse_predict_args(int argc, char **argv, predict_opts *o)
{
    const char *verb = "predict";
    memset(o, 0, sizeof *o);
    cli_common_init(&o->c);
    o->lp = uf_model_load_default_params();
    o->thr = NAN;
    if (!(o->pos = calloc((size_t)argc + 1, sizeof *o->pos))) return CLI_EXIT_RUNTIME;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        long n;
        bool has = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(help, stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            o->json = true;
        } else if (!strcmp(a, "--raw-maps")) {
            o->raw = true;
        } else if (!strcmp(a, "--masks")) {
            o->masks = true;
        } else if (!strcmp(a, "--stdin")) {
            o->from_stdin = true;
        } else if (!strcmp(a, "--quiet")) {
            o->c.quiet = true;
        } else if (!strcmp(a, "--allow-other-backbone")) {
            o->lp.allow_other_backbone = 1;
        } else if (!strcmp(a, "--threshold")) {
            if (!has || !cli_parse_float(argv[i + 1], -1e30, 1e30, &o->thr))
                return cli_usage_error(verb, "--threshold: expected a number");
            i++;
        } else if (!strcmp(a, "--heatmap-dir") || !strcmp(a, "--backbone")) {
            if (!has) return cli_usage_error(verb, "option %s needs a value", a);
            if (a[2] == 'h') o->heat_dir = argv[++i];
            else o->lp.backbone_path = argv[++i];
        } else if (!strcmp(a, "--heatmap-range")) {
            if (!has || !cli_parse_floats(argv[i + 1], 2, o->range) || !(o->range[1] > o->range[0]))
                return cli_usage_error(verb, "--heatmap-range: expected L,H with L < H");
            i++;
        } else if (!strcmp(a, "--precision")) {
            if (!has) return cli_usage_error(verb, "option %s needs a value", a);
            if (!cli_parse_precision(verb, argv[++i], &o->c.precision)) return CLI_EXIT_USAGE;
        } else if (!strcmp(a, "--batch") || !strcmp(a, "--threads")) {
            long hi = a[2] == 'b' ? 256 : 1024, lo = a[2] == 'b' ? 1 : 0;
            if (!has || !cli_parse_int(argv[i + 1], lo, hi, &n))
                return cli_usage_error(verb, "%s: expected an integer in %ld..%ld", a, lo, hi);
            if (a[2] == 'b') o->c.batch = (int)n;
            else o->c.threads = (int)n;
            i++;
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error(verb, "unknown option '%s'", a);
        } else if (!o->model_path) {
            o->model_path = a;
        } else {
            o->pos[o->npos++] = argv[i];
        }
    }
    if (!o->model_path) return cli_usage_error(verb, "no model file given");
    if (o->npos == 0 && !o->from_stdin) return cli_usage_error(verb, "no images given");
    if (o->npos && o->from_stdin) return cli_usage_error(verb, "--stdin takes no image arguments");
    if (o->from_stdin && o->heat_dir)
        return cli_usage_error(verb, "--stdin writes no heatmaps (--heatmap-dir): use serve's overlay=1");
    if (o->from_stdin) o->c.batch = 1; /* each result as soon as its image arrives */
    if (o->raw && !o->heat_dir) return cli_usage_error(verb, "--raw-maps needs --heatmap-dir");
    if (o->masks && !o->heat_dir) return cli_usage_error(verb, "--masks needs --heatmap-dir");
    return -1;
}

/* The buffers of one batch: its images as decoded, their results and overlays. A run
 * has PRED_SLOTS of them, so that the next batch is decoded while this one is scored and
 * the previous one's overlays are drawn and written (see predict_pipeline). */
typedef struct pred_slot {
    uf_image **batch;   /* [batch] */
    bool *full;         /* [batch] batch[j] is the image as decoded, kept for its overlay */
    uf_score *res;      /* [batch] */
    float *maps;        /* [batch][S][S] pixel maps (with --heatmap-dir) */
    cli_map_out *mo;    /* [batch] (with --heatmap-dir) */
    int idx[256];       /* res[k] is the image batch[idx[k]] */
    size_t b0;          /* the batch: images b0 .. b0 + nb - 1 */
    int nb, nok;
    bool ok;            /* every image decoded, scored and written so far */
    int state;          /* SLOT_FREE, SLOT_LOADED, SLOT_SCORED (pipeline) */
} pred_slot;

#define PRED_SLOTS 3
enum { SLOT_FREE, SLOT_LOADED, SLOT_SCORED };

/* One predict run: the images, the model and the batch buffers. */
typedef struct predict_run {
    cli_strings images;
    char **names;       /* [images.n] heatmap names (with --heatmap-dir), else NULL */
    uf_inputs *inputs;  /* every file read, so no output replaces one */
    uf_model *m;
    uf_scorer *sc;
    uf_preprocess pre;  /* the model's: images are shrunk to its resize size */
    double thr;
    cli_overlay_style style;
    pred_slot slot[PRED_SLOTS];
    size_t plane;       /* S * S */
} predict_run;

static void predict_run_free(predict_run *r, int batch)
{
    for (int s = 0; s < PRED_SLOTS; s++) {
        pred_slot *q = &r->slot[s];
        if (q->batch)
            for (int j = 0; j < batch; j++) uf_image_free(q->batch[j]);
        free(q->batch);
        free(q->full);
        free(q->res);
        free(q->maps);
        free(q->mo);
    }
    for (size_t i = 0; r->names && i < r->images.n; i++) free(r->names[i]);
    free(r->names);
    uf_scorer_free(r->sc);
    uf_model_free(r->m);
    uf_inputs_free(r->inputs);
    cli_strings_free(&r->images);
}

/* Expand the images, name their heatmaps, load the model, allocate the batches. */
static bool predict_setup(const predict_opts *o, predict_run *r)
{
    if (!o->from_stdin && !cli_expand_images(&o->c, o->npos, o->pos, &r->images)) return false;
    if (o->heat_dir) {
        if (!cli_heatmap_names(r->images.v, r->images.n, &r->names)) return false;
        struct stat st;
        if (stat(o->heat_dir, &st) != 0 && mkdir(o->heat_dir, 0777) != 0) {
            cli_error("%s: cannot create directory: %s", o->heat_dir, strerror(errno));
            return false;
        }
    }
    if (cli_model_load(o->model_path, &o->lp, &r->m) != UF_OK ||
        (o->c.precision >= 0 &&
         uf_model_set_precision(r->m, (uf_precision)o->c.precision) != UF_OK) ||
        uf_scorer_new(r->m, &r->sc) != UF_OK) {
        cli_error("%s", uf_errmsg());
        return false;
    }
    uf_scorer_set_threads(r->sc, o->c.threads);
    uf_model_info mi;
    uf_model_get_info(r->m, &mi);
    /* the inputs of the run: images, their arguments, the model and its backbone */
    const char *more[3] = {o->model_path, o->lp.backbone_path,
                           mi.backbone_path[0] ? mi.backbone_path : NULL};
    if (!(r->inputs = cli_run_inputs(&r->images, o->npos, o->pos, more, 3))) return false;
    r->pre = mi.params.pre;
    r->thr = isfinite(o->thr) ? o->thr : mi.threshold;
    int S;
    uf_model_output_size(r->m, NULL, NULL, &S, NULL);
    r->plane = (size_t)S * (size_t)S;
    size_t nb = (size_t)o->c.batch;
    /* one batch at a time with --stdin; else a batch decoding, one scoring, one writing */
    const int ns = o->from_stdin ? 1 : o->heat_dir ? 3 : 2;
    bool mem = true;
    for (int s = 0; s < ns; s++) {
        pred_slot *q = &r->slot[s];
        q->batch = calloc(nb, sizeof *q->batch);
        q->full = calloc(nb, sizeof *q->full);
        q->res = calloc(nb, sizeof *q->res);
        q->maps = o->heat_dir ? malloc(r->plane * nb * sizeof(float)) : NULL;
        q->mo = o->heat_dir ? calloc(nb, sizeof *q->mo) : NULL;
        mem = mem && q->batch && q->full && q->res && (!o->heat_dir || (q->maps && q->mo));
    }
    if (o->masks && !isfinite(r->thr)) {
        cli_error("%s: --masks needs a threshold (calibrate the model or pass --threshold)",
                  o->model_path);
        return false;
    }
    cli_overlay_style_init(&r->style, o->range, r->thr, o->masks, r->m);
    r->style.regions = o->json; /* only the JSON lines show them */
    if (!mem) {
        cli_error("out of memory");
        return false;
    }
    return true;
}

/* Score the decoded images of slot q (q->batch[0..nb-1], NULL = unreadable): their
 * indices go to q->idx[0..q->nok-1], their results to q->res. An image that cannot be
 * scored gets a NaN score and its message; q->ok becomes false if any failed. */
static void score_batch(predict_run *r, pred_slot *q)
{
    const uf_image *ok[256];
    int n = 0;
    for (int j = 0; j < q->nb; j++)
        if (q->batch[j]) {
            memset(&q->res[n], 0, sizeof q->res[n]);
            q->res[n].pixel_map = q->maps ? q->maps + r->plane * (size_t)n : NULL;
            q->idx[n] = j;
            ok[n++] = q->batch[j];
        }
    q->nok = n;
    if (!n || uf_score_images(r->sc, ok, n, q->res) == UF_OK) return;
    for (int k = 0; k < n; k++) { /* e.g. NaN features: one by one to name the image */
        if (uf_score_images(r->sc, &ok[k], 1, &q->res[k]) != UF_OK) {
            cli_error("%s: %s", r->images.v[q->b0 + (size_t)q->idx[k]], uf_errmsg());
            q->res[k].score = NAN;
            q->ok = false;
        }
    }
}

/* The result line of one image (text or JSON), with the files and regions of mo. */
void cli_print_result(bool json, const char *path, float score, double thr,
                      const cli_map_out *mo)
{
    int anom = isfinite(thr) ? score > thr : -1;
    const double norm = cli_normalised(score, thr);
    const bool wrote = mo && mo->wrote;
    if (!json) {
        cli_tsv_field(stdout, path); /* one line whatever the name holds */
        printf("\t%.6g\t%s", score, anom < 0 ? "-" : anom ? "anomalous" : "normal");
        if (isfinite(norm)) printf("\t%.4f\n", norm);
        else printf("\t-\n");
        return;
    }
    cJSON *obj = cli_result_json(path, score, thr, wrote ? mo->png : NULL,
                                 wrote && mo->npy[0] ? mo->npy : NULL);
    if (obj && wrote && mo->mask[0]) cJSON_AddStringToObject(obj, "mask", mo->mask);
    if (obj && wrote && isfinite(thr)) { /* regions above the pixel level, original pixels */
        cJSON *rs = cJSON_AddArrayToObject(obj, "regions");
        for (int k = 0; k < mo->n_reg; k++) {
            const uf_region *g = &mo->reg[k];
            cJSON *e = cJSON_CreateObject();
            cJSON *bb = cJSON_AddArrayToObject(e, "bbox"); /* x, y, width, height */
            const int v[4] = {g->x, g->y, g->w, g->h};
            for (int j = 0; j < 4; j++) cJSON_AddItemToArray(bb, cJSON_CreateNumber(v[j]));
            cJSON_AddNumberToObject(e, "area", (double)g->area);
            cJSON_AddNumberToObject(e, "peak", g->peak);
            cJSON_AddItemToArray(rs, e);
        }
    }
    char *str = obj ? cli_json_print(obj) : NULL;
    if (str) puts(str);
    free(str);
    cJSON_Delete(obj);
}

/* Decode the images of slot q's batch (b0, nb set). With overlays they are decoded once
 * at full size (within a memory bound shared by the slots) and kept to draw on; scoring
 * shrinks them itself, with the same results. */
static void load_batch(const predict_opts *o, predict_run *r, pred_slot *q, int nslots)
{
    q->ok = (o->heat_dir ? cli_load_images_keep(r->images.v + q->b0, q->nb, &r->pre, q->batch,
                                                q->full, CLI_KEEP_BYTES / (size_t)nslots)
                         : cli_load_images(r->images.v + q->b0, q->nb, &r->pre, q->batch)) == q->nb;
}

/* Draw and write the overlays of scored slot q (in parallel, one image a thread), print
 * its result lines in order and release its images. */
static void write_batch(const predict_opts *o, predict_run *r, pred_slot *q)
{
    bool wrote_all = true;
    const int nok = q->nok;
    if (o->heat_dir) {
#pragma omp parallel for schedule(dynamic, 1) reduction(&& : wrote_all)
        for (int k = 0; k < nok; k++) {
            size_t i = q->b0 + (size_t)q->idx[k];
            cli_map_out *mo = &q->mo[k];
            mo->wrote = false;
            if (isnan(q->res[k].score)) continue;
            wrote_all = cli_write_maps(r->m, q->res[k].pixel_map, o->heat_dir, r->images.v[i],
                                       q->full[q->idx[k]] ? q->batch[q->idx[k]] : NULL,
                                       r->names[i], &r->style, q->res[k].score, o->raw,
                                       r->inputs, mo) &&
                        wrote_all;
        }
    }
    q->ok = q->ok && wrote_all;
    for (int k = 0; k < nok; k++) {
        size_t i = q->b0 + (size_t)q->idx[k];
        if (isnan(q->res[k].score)) continue;
        cli_print_result(o->json, r->images.v[i], q->res[k].score, r->thr,
                         o->heat_dir ? &q->mo[k] : NULL);
    }
    fflush(stdout);
    for (int j = 0; j < q->nb; j++) {
        uf_image_free(q->batch[j]);
        q->batch[j] = NULL;
    }
}

/* ---- the pipeline: decode batch k+1 and write batch k-1 while batch k is scored -------- *
 * Three stages, each in its own thread with its own OpenMP team: a loader decodes batches
 * into free slots, the main thread scores them in order, and (with --heatmap-dir) a writer
 * draws, encodes and writes the overlays and prints the lines, in order; without overlays
 * the main thread prints. The machine's cores are shared by the stages (OpenMP threads
 * wait passively, see main.c), so decoding and PNG encoding fill the gaps of the forward
 * passes instead of running between them. Every result is the same as one batch at a
 * time: each image is decoded, scored and drawn by the same code. */
typedef struct pipe_state {
    const predict_opts *o;
    predict_run *r;
    int ns;               /* slots used */
    size_t nbatch;        /* batches in the run */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool all_ok;
    bool stop;            /* the pipeline could not start: a waiting stage returns */
} pipe_state;

static pred_slot *slot_of(pipe_state *p, size_t k) { return &p->r->slot[k % (size_t)p->ns]; }

/* Wait until batch k's slot is in state want; NULL when the pipeline is stopped. */
static pred_slot *pipe_wait(pipe_state *p, size_t k, int want)
{
    pred_slot *q = slot_of(p, k);
    pthread_mutex_lock(&p->mu);
    while (q->state != want && !p->stop) pthread_cond_wait(&p->cv, &p->mu);
    if (p->stop) q = NULL;
    pthread_mutex_unlock(&p->mu);
    return q;
}

static void pipe_set(pipe_state *p, pred_slot *q, int state)
{
    pthread_mutex_lock(&p->mu);
    q->state = state;
    if (state == SLOT_FREE && !q->ok) p->all_ok = false;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static void *pipe_loader(void *arg)
{
    pipe_state *p = arg;
    omp_set_num_threads(p->o->c.threads); /* a new thread starts with the default */
    for (size_t k = 0; k < p->nbatch; k++) {
        pred_slot *q = pipe_wait(p, k, SLOT_FREE);
        if (!q) break;
        q->b0 = k * (size_t)p->o->c.batch;
        size_t left = p->r->images.n - q->b0;
        q->nb = (int)(left < (size_t)p->o->c.batch ? left : (size_t)p->o->c.batch);
        load_batch(p->o, p->r, q, p->ns);
        pipe_set(p, q, SLOT_LOADED);
    }
    return NULL;
}

static void *pipe_writer(void *arg)
{
    pipe_state *p = arg;
    omp_set_num_threads(p->o->c.threads);
    for (size_t k = 0; k < p->nbatch; k++) {
        pred_slot *q = pipe_wait(p, k, SLOT_SCORED);
        if (!q) break;
        write_batch(p->o, p->r, q);
        cli_progress(&p->o->c, "predict", q->b0 + (size_t)q->nb, p->r->images.n);
        pipe_set(p, q, SLOT_FREE);
    }
    return NULL;
}

/* The whole run through the pipeline; false if any image failed. */
static bool predict_pipeline(const predict_opts *o, predict_run *r)
{
    pipe_state p = {.o = o, .r = r, .ns = o->heat_dir ? 3 : 2, .all_ok = true};
    p.nbatch = (r->images.n + (size_t)o->c.batch - 1) / (size_t)o->c.batch;
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.cv, NULL);
    pthread_t lt, wt;
    /* the writer first, and the loader only if it started: a stage that started while
     * another could not is stopped before it touched a slot (it waits for batch 0),
     * so the fallback below has the slots to itself */
    const bool writer = o->heat_dir && pthread_create(&wt, NULL, pipe_writer, &p) == 0;
    const bool loader = (!o->heat_dir || writer) &&
                        pthread_create(&lt, NULL, pipe_loader, &p) == 0;
    if (!loader || (o->heat_dir && !writer)) { /* no thread: one batch at a time here */
        if (writer) {
            pthread_mutex_lock(&p.mu);
            p.stop = true;
            pthread_cond_broadcast(&p.cv);
            pthread_mutex_unlock(&p.mu);
            pthread_join(wt, NULL);
        }
        pthread_mutex_destroy(&p.mu);
        pthread_cond_destroy(&p.cv);
        bool ok = true;
        for (size_t b0 = 0; b0 < r->images.n; b0 += (size_t)o->c.batch) {
            pred_slot *q = &r->slot[0];
            q->b0 = b0;
            q->nb = (int)((r->images.n - b0) < (size_t)o->c.batch ? r->images.n - b0 : (size_t)o->c.batch);
            load_batch(o, r, q, 1);
            score_batch(r, q);
            write_batch(o, r, q);
            ok = ok && q->ok;
            cli_progress(&o->c, "predict", b0 + (size_t)q->nb, r->images.n);
        }
        return ok;
    }
    for (size_t k = 0; k < p.nbatch; k++) {
        pred_slot *q = pipe_wait(&p, k, SLOT_LOADED);
        score_batch(r, q);
        if (writer) {
            pipe_set(&p, q, SLOT_SCORED);
        } else {
            write_batch(o, r, q);
            cli_progress(&o->c, "predict", q->b0 + (size_t)q->nb, r->images.n);
            pipe_set(&p, q, SLOT_FREE);
        }
    }
    pthread_join(lt, NULL);
    if (writer) pthread_join(wt, NULL);
    pthread_mutex_destroy(&p.mu);
    pthread_cond_destroy(&p.cv);
    return p.all_ok;
}

/* --stdin: replace the one-path list with the next non-empty line of standard input
 * ("\n" or "\r\n" ended) and restart the batch index; false at end of input. */
static bool next_stdin_path(cli_strings *images, size_t *b0)
{
    static char *line;
    static size_t cap;
    ssize_t len;
    while ((len = getline(&line, &cap, stdin)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (len == 0) continue;
        cli_strings_free(images);
        *b0 = 0;
        if (cli_strings_push(images, line)) return true;
        cli_error("out of memory");
        break;
    }
    free(line);
    line = NULL;
    cap = 0;
    return false;
}

int cmd_predict(int argc, char **argv)
{
    predict_opts o;
    int rc = parse_predict_args(argc, argv, &o);
    if (rc >= 0) {
        free(o.pos);
        return rc;
    }
    rc = 0;
    cli_threads_init(&o.c);
    /* overlays allocate and free several MB per image (the image, its full-size map, the
     * PNG): kept by malloc for the next image instead of returned to the system and
     * faulted in again, zeroed, page by page */
    if (o.heat_dir) {
        mallopt(M_MMAP_THRESHOLD, 64 << 20);
        mallopt(M_TRIM_THRESHOLD, 256 << 20);
    }
    predict_run r;
    memset(&r, 0, sizeof r);
    bool ready = predict_setup(&o, &r);
    if (!ready) rc = CLI_EXIT_RUNTIME;
    if (ready && !o.from_stdin && r.images.n > 0 && !predict_pipeline(&o, &r))
        rc = CLI_EXIT_RUNTIME;
    for (size_t b0 = 0; ready && o.from_stdin && next_stdin_path(&r.images, &b0);) {
        pred_slot *q = &r.slot[0]; /* one image a batch, its line as soon as it is scored */
        q->b0 = b0;
        q->nb = 1;
        load_batch(&o, &r, q, 1);
        score_batch(&r, q);
        write_batch(&o, &r, q);
        if (!q->ok) rc = CLI_EXIT_RUNTIME;
    }
    /* the result lines are the output: one that could not be written (a full disk, a
     * closed stdout) is an error, not a silent exit 0 */
    if (fflush(stdout) != 0 || ferror(stdout)) {
        cli_error("standard output: %s", strerror(errno ? errno : EIO));
        rc = CLI_EXIT_RUNTIME;
    }
    predict_run_free(&r, o.c.batch);
    free(o.pos);
    return rc;
}
