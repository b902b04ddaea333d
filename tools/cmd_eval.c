/*
 * cmd_eval.c - `uniformaly eval`: every task of the paper, measured with one command.
 *
 * Opens a dataset in its published layout (library dataset readers), fits the detector per
 * category (or one bank over several categories with --multi-class, or N-shot banks repeated
 * over seeds with --shots), scores each category's test set and computes the standard
 * metrics: image AUROC and F1-max, pixel AUROC, AUPRO and pixel F1-max where masks exist,
 * and anomaly clustering (NMI, ARI, Hungarian F1) of the anomalous test images.
 *
 * Work is shared, not repeated: each test image's patch features are computed once
 * (uf_scorer_extract) and scored by every model that needs them (uf_score_features). The
 * models of one run share the backbone and the feature settings, so the scorer of the first
 * model made (kept for the whole run: the "extractor") serves every extraction. Semantic
 * datasets give every class the same test sequence, so its features are extracted once per
 * run; --shots repeats reuse the category's features across the R fits.
 *
 * Pixel metrics are computed in network-input space: each ground-truth mask goes through
 * the image's resize (bilinear) and centre crop, then is binarised at 128 - torchvision's
 * Resize + CenterCrop of the mask followed by >= 0.5.
 *
 * Results are written to the output folder after each finished category (results.json,
 * results.csv, results.md through a temporary file and a rename; scores.csv appended), so
 * an interrupted run keeps every finished category.
 */
#include "cli.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *const help =
    "Usage: uniformaly eval --backbone W --dataset D --root DIR --out DIR [options]\n"
    "\n"
    "Evaluate the detector on a dataset in its published layout: fit per category, score\n"
    "its test set, and write every figure, the settings, versions and timings to DIR:\n"
    "  results.json   per category (\"categories\": {NAME: {...}}) image_auroc, f1_max,\n"
    "                 pixel_auroc, aupro (FPR <= 0.3), pixel_f1_max (null without masks),\n"
    "                 bank size, timings, clustering; their \"mean\" and \"std\"\n"
    "  results.csv    one row per category, then the mean\n"
    "  results.md     the same as a Markdown table\n"
    "  scores.csv     the score of every test image\n"
    "  heatmaps/      with --heatmaps: CATEGORY/NAME.png overlays (defect datasets)\n"
    "The files are rewritten as each category finishes, so an interrupted run keeps every\n"
    "finished category. A table row is printed on stdout as each category finishes.\n"
    "\n"
    "Datasets D: mvtec, btad, mtd, folder, list (defect detection) and cifar10, cifar100,\n"
    "mnist, fashion-mnist, imagefolder (semantic, one-class protocol: a class's training\n"
    "images are normal; every test image is scored and is anomalous iff of another class).\n"
    "Small in-memory images (CIFAR, MNIST) are resized to 112 with Lanczos and zero-padded\n"
    "to 224 (the reference's protocol) unless --resize, --crop or --interp is given.\n"
    "\n"
    "Options:\n"
    "  --dataset D          layout of the dataset (see above)\n"
    "  --root DIR           the dataset's folder\n"
    "  --out DIR            output folder (created if missing; results are overwritten)\n"
    "  --category C         evaluate category C (repeatable; default: all). A class may\n"
    "                       also be given by its index (0-based)\n"
    "  --multi-class        one memory bank from the training images of every selected\n"
    "                       category, scored on each category's test set: AUROC per\n"
    "                       category and overall. Semantic datasets: test images of the\n"
    "                       selected classes are normal, all others anomalous\n"
    "  --cluster [K]        anomaly clustering of the anomalous test images of each\n"
    "                       category: K-means (k-means++, 10 restarts, seeded, 300\n"
    "                       iterations) of their top-K mean features into K clusters\n"
    "                       (default: the number of defect types), scored against the\n"
    "                       types by NMI, ARI and F1 (Hungarian matching); also reported\n"
    "                       for the mean of all patch features and the top patch feature\n"
    "  --shots N            fit on N training images per category, drawn at random\n"
    "  --repeats R          with --shots: R draws, seeded seed..seed+R-1 (default 5);\n"
    "                       each figure is the mean over the draws, with std and values\n"
    "  --max-train N        at most N training images per category (a seeded subset), for\n"
    "                       quick runs; recorded in results.json\n"
    "  --heatmaps           write heatmap overlays of every test image (defect datasets)\n";

/* ------------------------------------------------------------------------------------ */
/* Options, figures and the run's state                                                 */
/* ------------------------------------------------------------------------------------ */

typedef struct opts {
    cli_common c;
    uf_detector_params dp;
    const char *dataset, *root, *out;
    cli_strings cats;  /* --category values as given                    */
    bool multi;        /* --multi-class                                 */
    bool heatmaps;     /* --heatmaps                                    */
    int cluster;       /* 0 off, -1 on with K = number of types, else K */
    long shots;        /* 0: all training images                        */
    long repeats;      /* fits per category (1 unless --shots)          */
    long max_train;    /* 0: no cap                                     */
    bool set_resize, set_crop, set_interp; /* given by the user          */
} opts;

/* Every figure of one fit on one category, as doubles; NaN = null (undefined or not
 * computed). The clustering figures come in three variants: the top-K mean feature (the
 * method's), the mean of all patch features, the single highest-scoring patch. */
enum {
    M_IMG_AUROC, M_PIX_AUROC, M_AUPRO, M_F1, M_PIX_F1, /* metrics                          */
    M_NMI, M_ARI, M_CF1,                               /* clustering, top-K feature         */
    M_NMI_ALL, M_ARI_ALL, M_CF1_ALL,                   /* clustering, all patches          */
    M_NMI_MAX, M_ARI_MAX, M_CF1_MAX,                   /* clustering, max patch            */
    M_NTRAIN, M_BANK, M_BANK_FULL,                     /* sizes                             */
    M_FIT_S, M_EXTRACT_S, M_SCORE_S,                   /* seconds                           */
    NM
};
#define N_METRIC M_NMI     /* keys before this are the flat metrics          */
#define N_QUALITY M_NTRAIN /* keys before this are averaged into "mean"/"std" */
static const char *const mkey[NM] = {
    "image_auroc", "pixel_auroc", "aupro", "f1_max", "pixel_f1_max",
    "nmi", "ari", "f1", "nmi", "ari", "f1", "nmi", "ari", "f1",
    "n_train", "bank_size", "bank_size_full", "fit_seconds", "extract_seconds", "score_seconds"};

typedef struct figs {
    double m[NM];
    int k;            /* clusters asked of K-means (0: no clustering)   */
    size_t n_cluster; /* anomalous images clustered                     */
    uint64_t seed;    /* seed of the fit (the draw of --shots, coreset) */
} figs;
/* figures are averaged as strided arrays of doubles (mean_std over &rep[0].m[i]) */
_Static_assert(sizeof(figs) % sizeof(double) == 0, "figs must be a whole number of doubles");

/* One row of the results: a category (or the multi-class "overall"). */
typedef struct catres {
    const char *name;
    size_t n_test, n_test_anomalous;
    bool pixel;       /* pixel metrics apply (every anomalous test image has a mask) */
    bool clustering;  /* clustering was asked for this row                         */
    int nrep;         /* repeats finished                                          */
    figs *rep;        /* [repeats]                                                 */
} catres;

/* Patch features of a test set, computed once. */
typedef struct featset {
    size_t n;                     /* images                                         */
    const uf_dataset_item *items; /* [n] the split they were computed from          */
    float *feats;                 /* [n][Np][D] patch features                      */
    float *smooth;                /* [n][Np] BPM map (1 without BPM)                */
    uint8_t *mask;                /* [n][Np] 1 = foreground patch                   */
    uint8_t *gt;                  /* [n][S][S] ground truth in network space, or NULL */
    double seconds;               /* extraction time                                */
} featset;

/* The outputs of scoring a featset with one model. */
typedef struct scored {
    float *score; /* [n] image scores                                            */
    float *feat;  /* [n][D] top-K mean feature (clustered images only), or NULL  */
    int *maxp;    /* [n] patch of the highest masked score (clustered), or NULL  */
    float *maps;  /* [n][S][S] pixel maps, or NULL                               */
} scored;

typedef struct ctx {
    opts *o;
    uf_dataset *ds;
    uf_dataset_info info;
    uf_backbone *bb;
    int *sel;             /* [nsel] selected category indices                        */
    int nsel;
    uf_model *xmodel;     /* the first model made, kept for its scorer (extraction)  */
    uf_scorer *xsc;
    int gh, gw, S, D;     /* patch grid, network input side, feature dim            */
    size_t Np;            /* gh * gw                                                 */
    catres *res;          /* [nres] rows in output order                             */
    int nres;
    catres *overall;      /* multi-class: the union row (not in res), else NULL      */
    char *dir;            /* --out                                                   */
    const char *status;   /* "running", "complete", "failed"                         */
    double t0;            /* start of the run                                        */
    double t_load;        /* backbone load seconds                                   */
    int name_w;           /* width of the category column of the stdout table        */
    char *command;        /* the command line                                        */
    char date[32];        /* start time, UTC ISO 8601                                */
    double tot_fit, tot_extract, tot_score; /* seconds spent in each stage            */
} ctx;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* a * b * c bytes, or NULL when the product overflows or malloc fails. */
static void *alloc3(size_t a, size_t b, size_t c)
{
    if (b && a > SIZE_MAX / b) return NULL;
    size_t n = a * b;
    if (c && n > SIZE_MAX / c) return NULL;
    n *= c;
    return malloc(n ? n : 1);
}

static void *calloc3(size_t a, size_t b, size_t c)
{
    if (b && a > SIZE_MAX / b) return NULL;
    size_t n = a * b;
    return calloc(n ? n : 1, c ? c : 1);
}

/* Append to out the items of items[n], or k of them drawn at random with seed (cli_draw_shots,
 * the draw of fit --shots, then in split order). */
static bool pick_items(const uf_dataset_item *items, size_t n, size_t k, uint64_t seed,
                       const uf_dataset_item **out, size_t *nout)
{
    if (k == 0 || k >= n) {
        for (size_t i = 0; i < n; i++) out[(*nout)++] = &items[i];
        return true;
    }
    size_t *perm = alloc3(k, sizeof(size_t), 1); /* [k] drawn indices, ascending */
    if (!perm || !cli_draw_shots(n, k, seed, perm)) { free(perm); return false; }
    for (size_t j = 0; j < k; j++) out[(*nout)++] = &items[perm[j]];
    free(perm);
    return true;
}

/* Print a failure about file `who`: the library's message, prefixed with the name unless
 * it already starts with it. */
static void report_named(const char *who, const char *msg)
{
    if (!who) who = "?";
    if (strncmp(msg, who, strlen(who)) == 0) cli_error("%s", msg);
    else cli_error("%s: %s", who, msg);
}

/* The failure of loading an item: files by path, in-memory images by their record. */
static void report_item(const uf_dataset_item *it, const char *msg)
{
    report_named(it->path ? it->path : it->name, msg);
}

static void nan_figs(figs *f)
{
    memset(f, 0, sizeof *f);
    for (int i = 0; i < NM; i++) f->m[i] = NAN;
}

/* ------------------------------------------------------------------------------------ */
/* Output files                                                                         */
/* ------------------------------------------------------------------------------------ */

/* Write data to path atomically (uf_write_file_atomic: an unnamed file renamed into
 * place), so path is always either the previous complete file or the new one, even when
 * the run is interrupted. */
static bool write_atomic(const ctx *x, const char *path, const char *data, size_t len)
{
    (void)x;
    size_t n = 0; /* names are bytes; JSON/CSV readers want UTF-8 (cli.h, issue 12) */
    char *t = cli_utf8_valid(data, len, &n);
    if (t && uf_write_file_atomic(path, t, n) == UF_OK) {
        free(t);
        return true;
    }
    cli_error("%s", t ? uf_errmsg() : "out of memory");
    free(t);
    return false;
}

/* A growable text buffer. */
typedef struct sbuf {
    char *s;
    size_t n, cap;
    bool oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) { b->oom = true; return; }
        if (b->s && b->n + (size_t)k < b->cap) { b->n += (size_t)k; return; }
        size_t nc = b->cap ? b->cap * 2 : 4096;
        while (nc < b->n + (size_t)k + 1) nc *= 2;
        char *ns = realloc(b->s, nc);
        if (!ns) { b->oom = true; return; }
        b->s = ns;
        b->cap = nc;
    }
}

/* A CSV field: quoted when it holds a comma, quote or line break (RFC 4180). */
static void sb_csv(sbuf *b, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) { sb_printf(b, "%s", s); return; }
    sb_printf(b, "\"");
    for (; *s; s++) sb_printf(b, *s == '"' ? "\"\"" : "%c", *s);
    sb_printf(b, "\"");
}

/* mkdir -p */
static bool make_dirs(const char *path)
{
    char buf[PATH_MAX];
    if ((size_t)snprintf(buf, sizeof buf, "%s", path) >= sizeof buf) {
        cli_error("%s: path too long", path);
        return false;
    }
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || !*p) {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
                cli_error("%s: cannot create directory: %s", buf, strerror(errno));
                return false;
            }
            *p = c;
            if (!c) break;
        }
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        cli_error("%s: not a directory", path);
        return false;
    }
    return true;
}

static void json_num(cJSON *o, const char *key, double v)
{
    if (isfinite(v)) cJSON_AddNumberToObject(o, key, v);
    else cJSON_AddNullToObject(o, key);
}

/* Mean and population std (ddof 0) of the finite values of v[i * stride], i < n. */
static void mean_std(const double *v, size_t n, size_t stride, double *mean, double *sd)
{
    double s = 0, s2 = 0;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(v[i * stride])) { s += v[i * stride]; k++; }
    *mean = k ? s / (double)k : NAN;
    if (sd) {
        for (size_t i = 0; i < n; i++)
            if (isfinite(v[i * stride])) s2 += (v[i * stride] - *mean) * (v[i * stride] - *mean);
        *sd = k ? sqrt(s2 / (double)k) : NAN;
    }
}

/* The figures of a row: its single fit, or with --shots the mean (and std) over repeats. */
static void row_figs(const catres *r, figs *mean, figs *sd)
{
    nan_figs(mean);
    if (sd) nan_figs(sd);
    if (r->nrep < 1) return;
    for (int i = 0; i < NM; i++)
        mean_std(&r->rep[0].m[i], (size_t)r->nrep, sizeof(figs) / sizeof(double),
                 &mean->m[i], sd ? &sd->m[i] : NULL);
    mean->k = r->rep[0].k;
    mean->n_cluster = r->rep[0].n_cluster;
    mean->seed = r->rep[0].seed;
}

/* The keys of figures f into o: metrics flat, clustering nested (only when asked),
 * sizes and timings with `sizes`. */
static void figs_json(cJSON *o, const figs *f, bool clustering, bool sizes)
{
    for (int i = 0; i < N_METRIC; i++) json_num(o, mkey[i], f->m[i]);
    if (clustering) {
        if (!isfinite(f->m[M_NMI]) && !isfinite(f->m[M_NMI_ALL]) && !isfinite(f->m[M_NMI_MAX])) {
            cJSON_AddNullToObject(o, "clustering");
        } else {
            cJSON *cl = cJSON_AddObjectToObject(o, "clustering");
            if (f->k > 0) {
                cJSON_AddNumberToObject(cl, "k", f->k);
                cJSON_AddNumberToObject(cl, "n", (double)f->n_cluster);
            }
            for (int i = M_NMI; i <= M_CF1; i++) json_num(cl, mkey[i], f->m[i]);
            cJSON *va = cJSON_AddObjectToObject(cl, "variants");
            cJSON *a = cJSON_AddObjectToObject(va, "all_patches");
            for (int i = M_NMI_ALL; i <= M_CF1_ALL; i++) json_num(a, mkey[i], f->m[i]);
            cJSON *mx = cJSON_AddObjectToObject(va, "max_patch");
            for (int i = M_NMI_MAX; i <= M_CF1_MAX; i++) json_num(mx, mkey[i], f->m[i]);
        }
    }
    if (sizes)
        for (int i = M_NTRAIN; i < NM; i++) json_num(o, mkey[i], f->m[i]);
}

static cJSON *row_json(const ctx *x, const catres *r)
{
    cJSON *o = cJSON_CreateObject();
    figs mean, sd;
    row_figs(r, &mean, &sd);
    figs_json(o, &mean, r->clustering, true);
    cJSON_AddNumberToObject(o, "n_test", (double)r->n_test);
    cJSON_AddNumberToObject(o, "n_test_anomalous", (double)r->n_test_anomalous);
    if (x->o->shots > 0) {
        cJSON *s = cJSON_AddObjectToObject(o, "std");
        figs_json(s, &sd, r->clustering, false);
        cJSON *reps = cJSON_AddArrayToObject(o, "repeats");
        for (int k = 0; k < r->nrep; k++) {
            cJSON *e = cJSON_CreateObject();
            char seed[32];
            snprintf(seed, sizeof seed, "%llu", (unsigned long long)r->rep[k].seed);
            cJSON_AddStringToObject(e, "seed", seed);
            figs_json(e, &r->rep[k], r->clustering, true);
            cJSON_AddItemToArray(reps, e);
        }
    }
    return o;
}



static cJSON *settings_json(const ctx *x)
{
    const opts *o = x->o;
    cJSON *s = cJSON_CreateObject();
    cJSON_AddStringToObject(s, "dataset", uf_dataset_kind_name(x->info.kind));
    cJSON_AddStringToObject(s, "root", x->info.root);
    cJSON_AddBoolToObject(s, "semantic", x->info.semantic);
    cJSON *cats = cJSON_AddArrayToObject(s, "categories");
    for (int i = 0; i < x->nsel; i++)
        cJSON_AddItemToArray(cats, cJSON_CreateString(uf_dataset_category(x->ds, x->sel[i])));
    cJSON_AddBoolToObject(s, "multi_class", o->multi);
    if (o->cluster == 0) cJSON_AddNullToObject(s, "cluster");
    else if (o->cluster < 0) cJSON_AddStringToObject(s, "cluster", "types");
    else cJSON_AddNumberToObject(s, "cluster", o->cluster);
    if (o->shots) cJSON_AddNumberToObject(s, "shots", (double)o->shots);
    else cJSON_AddNullToObject(s, "shots");
    cJSON_AddNumberToObject(s, "repeats", (double)o->repeats);
    if (o->max_train) cJSON_AddNumberToObject(s, "max_train", (double)o->max_train);
    else cJSON_AddNullToObject(s, "max_train");
    cJSON_AddBoolToObject(s, "heatmaps", o->heatmaps);
    cJSON_AddItemToObject(s, "params", cli_params_json(&o->dp));
    cJSON *b = cJSON_AddObjectToObject(s, "backbone");
    cJSON_AddStringToObject(b, "path", o->c.backbone);
    if (x->xmodel) {
        uf_model_info mi;
        uf_model_get_info(x->xmodel, &mi);
        cJSON_AddStringToObject(b, "resolved_path", mi.backbone_path);
        cJSON_AddStringToObject(b, "sha256", mi.backbone_sha256);
    }
    uf_backbone_info bi;
    uf_backbone_get_info(x->bb, &bi);
    cJSON_AddStringToObject(b, "format", bi.format);
    cJSON_AddNumberToObject(b, "dim", bi.dim);
    cJSON_AddNumberToObject(b, "depth", bi.depth);
    cJSON_AddNumberToObject(b, "heads", bi.heads);
    cJSON_AddNumberToObject(b, "patch", bi.patch);
    cJSON_AddNumberToObject(b, "n_params", (double)bi.n_params);
    cJSON_AddNumberToObject(s, "threads", o->c.threads);
    cJSON_AddNumberToObject(s, "batch", o->c.batch);
    cJSON *v = cJSON_AddObjectToObject(s, "versions");
    cJSON_AddStringToObject(v, "uniformaly", uf_version());
    cJSON_AddStringToObject(v, "cjson", cJSON_Version());
    cJSON_AddStringToObject(s, "command", x->command);
    cJSON_AddStringToObject(s, "started", x->date);
    return s;
}

/* Rows whose fits are finished, with --shots every repeat. */
static bool row_done(const ctx *x, const catres *r) { return r->nrep == x->o->repeats; }

/* The mean over finished categories (of their figures, or repeat means) and its std. */
static void mean_over_rows(const ctx *x, figs *mean, figs *sd, int *n)
{
    nan_figs(mean);
    nan_figs(sd);
    figs *rows = calloc3((size_t)x->nres + 1, sizeof(figs), 1); /* [nres] row figures */
    *n = 0;
    if (!rows) return;
    for (int i = 0; i < x->nres; i++)
        if (row_done(x, &x->res[i])) row_figs(&x->res[i], &rows[(*n)++], NULL);
    for (int k = 0; k < NM; k++)
        mean_std(&rows[0].m[k], (size_t)*n, sizeof(figs) / sizeof(double), &mean->m[k], &sd->m[k]);
    if (*n) mean->k = rows[0].k;
    free(rows);
}

/* Rewrite results.json, results.csv and results.md from the finished rows. */
static bool write_results(const ctx *x)
{
    const opts *o = x->o;
    bool clu = o->cluster != 0;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "status", x->status);
    cJSON_AddItemToObject(root, "settings", settings_json(x));
    cJSON *cats = cJSON_AddObjectToObject(root, "categories");
    for (int i = 0; i < x->nres; i++)
        if (row_done(x, &x->res[i]))
            cJSON_AddItemToObject(cats, x->res[i].name, row_json(x, &x->res[i]));
    figs mean, sd;
    int n;
    mean_over_rows(x, &mean, &sd, &n);
    cJSON *m = cJSON_AddObjectToObject(root, "mean");
    cJSON_AddNumberToObject(m, "n_categories", n);
    figs_json(m, &mean, clu, false);
    cJSON *s = cJSON_AddObjectToObject(root, "std");
    figs_json(s, &sd, clu, false);
    if (x->overall) {
        if (row_done(x, x->overall)) cJSON_AddItemToObject(root, "overall", row_json(x, x->overall));
        else cJSON_AddNullToObject(root, "overall");
    }
    cJSON *t = cJSON_AddObjectToObject(root, "timings");
    cJSON_AddNumberToObject(t, "backbone_load_seconds", x->t_load);
    cJSON_AddNumberToObject(t, "fit_seconds", x->tot_fit);
    cJSON_AddNumberToObject(t, "extract_seconds", x->tot_extract);
    cJSON_AddNumberToObject(t, "score_seconds", x->tot_score);
    cJSON_AddNumberToObject(t, "total_seconds", now() - x->t0);
    char *js = cJSON_Print(root);
    cJSON_Delete(root);
    if (!js) {
        cli_error("out of memory");
        return false;
    }
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/results.json", x->dir);
    sbuf jb = {0};
    sb_printf(&jb, "%s\n", js);
    free(js);
    bool ok = !jb.oom && write_atomic(x, path, jb.s, jb.n);
    free(jb.s);

    /* results.csv and results.md: one row per finished category, then mean and overall */
    sbuf cb = {0}, mb = {0};
    sb_printf(&cb, "category");
    for (int i = 0; i < N_METRIC; i++) sb_printf(&cb, ",%s", mkey[i]);
    if (clu) sb_printf(&cb, ",nmi,ari,cluster_f1,nmi_all_patches,ari_all_patches,f1_all_patches,"
                            "nmi_max_patch,ari_max_patch,f1_max_patch");
    sb_printf(&cb, ",n_train,n_test,bank_size,fit_seconds,extract_seconds,score_seconds\n");
    uf_model_info mi;
    if (x->xmodel) uf_model_get_info(x->xmodel, &mi);
    sb_printf(&mb, "# uniformaly eval: %s (%s)\n\n", uf_dataset_kind_name(x->info.kind), x->info.root);
    sb_printf(&mb, "Backbone `%s`%s%.12s%s; %s%s%s.\n\n", o->c.backbone, x->xmodel ? " (sha256 " : "",
              x->xmodel ? mi.backbone_sha256 : "", x->xmodel ? "...)" : "",
              o->multi ? "multi-class" : "one-class",
              o->shots ? ", few-shot (mean ± std over repeats)" : "",
              o->max_train ? ", training images capped" : "");
    sb_printf(&mb, "| category | image AUROC | pixel AUROC | AUPRO | F1-max | pixel F1-max |");
    if (clu) sb_printf(&mb, " NMI | ARI | cluster F1 |");
    sb_printf(&mb, " train | test | bank | fit s | score s |\n|---|---:|---:|---:|---:|---:|");
    if (clu) sb_printf(&mb, "---:|---:|---:|");
    sb_printf(&mb, "---:|---:|---:|---:|---:|\n");
    for (int i = 0; i <= x->nres + 1; i++) {
        const catres *r = NULL;
        figs f, fsd;
        nan_figs(&fsd);
        const char *name;
        bool sizes = true;
        size_t n_test = 0;
        if (i < x->nres) {
            r = &x->res[i];
            if (!row_done(x, r)) continue;
            row_figs(r, &f, &fsd);
            name = r->name;
            n_test = r->n_test;
        } else if (i == x->nres) {
            if (n == 0) continue;
            f = mean;
            name = "mean";
            sizes = false;
        } else {
            if (!x->overall || !row_done(x, x->overall)) continue;
            r = x->overall;
            row_figs(r, &f, &fsd);
            name = "overall";
            n_test = r->n_test;
        }
        sb_csv(&cb, name);
        sb_printf(&mb, "| %s |", name);
        int last = clu ? M_CF1_MAX : M_PIX_F1;
        for (int k = 0; k <= last; k++) {
            if (isfinite(f.m[k])) sb_printf(&cb, ",%.6f", f.m[k]);
            else sb_printf(&cb, ",");
            if (k <= M_CF1) {
                /* few-shot rows: mean ± population std over the repeats */
                if (isfinite(f.m[k]) && o->shots && r && r->nrep > 1 && isfinite(fsd.m[k]))
                    sb_printf(&mb, " %.4f ± %.4f |", f.m[k], fsd.m[k]);
                else if (isfinite(f.m[k])) sb_printf(&mb, " %.4f |", f.m[k]);
                else sb_printf(&mb, " - |");
            }
        }
        if (sizes) {
            sb_printf(&cb, ",%.0f,%zu,%.0f,%.2f,%.2f,%.2f\n", f.m[M_NTRAIN], n_test, f.m[M_BANK],
                      f.m[M_FIT_S], f.m[M_EXTRACT_S], f.m[M_SCORE_S]);
            sb_printf(&mb, " %.0f | %zu | %.0f | %.1f | %.1f |\n", f.m[M_NTRAIN], n_test,
                      f.m[M_BANK], f.m[M_FIT_S], f.m[M_EXTRACT_S] + f.m[M_SCORE_S]);
        } else {
            sb_printf(&cb, ",,,,,,\n");
            sb_printf(&mb, " | | | | |\n");
        }
    }
    if (ok && !cb.oom && !mb.oom) {
        snprintf(path, sizeof path, "%s/results.csv", x->dir);
        ok = write_atomic(x, path, cb.s, cb.n);
        snprintf(path, sizeof path, "%s/results.md", x->dir);
        ok = ok && write_atomic(x, path, mb.s, mb.n);
    } else if (ok) {
        cli_error("out of memory");
        ok = false;
    }
    free(cb.s);
    free(mb.s);
    return ok;
}

/* Append the scores of one scoring pass to scores.csv. */
static bool append_scores(const ctx *x, const char *cat, const uf_dataset_item *items,
                          const uint8_t *labels, const float *scores, size_t n, int rep)
{
    sbuf b = {0};
    for (size_t i = 0; i < n; i++) {
        sb_csv(&b, cat);
        sb_printf(&b, ",");
        sb_csv(&b, items[i].name ? items[i].name : "?");
        sb_printf(&b, ",");
        sb_csv(&b, items[i].type ? items[i].type : "?");
        sb_printf(&b, ",%d,%.9g", labels[i] ? 1 : 0, scores[i]);
        if (x->o->shots) sb_printf(&b, ",%d", rep);
        sb_printf(&b, "\n");
    }
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/scores.csv", x->dir);
    size_t tn = 0; /* names are bytes; CSV readers want UTF-8 (cli.h, issue 12) */
    char *t = b.oom ? NULL : cli_utf8_valid(b.s, b.n, &tn);
    FILE *f = t ? fopen(path, "a") : NULL;
    bool ok = f && fwrite(t, 1, tn, f) == tn;
    if (f) ok = fclose(f) == 0 && ok;
    if (!ok) cli_error("%s: cannot write: %s", path, !t ? "out of memory" : strerror(errno));
    free(t);
    free(b.s);
    return ok;
}

/* ------------------------------------------------------------------------------------ */
/* The stdout table                                                                     */
/* ------------------------------------------------------------------------------------ */

static void print_header(const ctx *x)
{
    printf("%-*s %8s %8s %8s %8s %8s", x->name_w, "category", "img_auc", "pix_auc", "aupro",
           "f1_max", "pix_f1");
    if (x->o->cluster) printf(" %8s %8s %8s", "nmi", "ari", "clu_f1");
    printf(" %7s %6s %8s %8s %8s\n", "train", "test", "bank", "fit_s", "score_s");
    fflush(stdout);
}

static void print_row(const ctx *x, const char *name, const catres *r, const figs *fm)
{
    figs f;
    if (r) row_figs(r, &f, NULL);
    else f = *fm;
    printf("%-*s", x->name_w, name);
    int last = x->o->cluster ? M_CF1 : M_PIX_F1;
    for (int k = 0; k <= last; k++) {
        if (isfinite(f.m[k])) printf(" %8.4f", f.m[k]);
        else printf(" %8s", "-");
    }
    if (r)
        printf(" %7.0f %6zu %8.0f %8.1f %8.1f\n", f.m[M_NTRAIN], r->n_test, f.m[M_BANK],
               f.m[M_FIT_S], f.m[M_EXTRACT_S] + f.m[M_SCORE_S]);
    else
        printf("\n");
    fflush(stdout);
}

/* ------------------------------------------------------------------------------------ */
/* Fitting, extraction, scoring                                                         */
/* ------------------------------------------------------------------------------------ */

typedef struct prog {
    const cli_common *c;
    char label[160];
} prog;

static int on_progress(void *user, const char *stage, size_t done, size_t total)
{
    prog *p = user;
    char l[224];
    snprintf(l, sizeof l, "%s: %s", p->label, stage);
    cli_progress(p->c, l, done, total);
    return 0;
}

/* Fit a model on items[n] (decoded in parallel batches); fills the fit figures. */
static int fit_model(ctx *x, const uf_detector_params *dp, const uf_dataset_item *const *items,
                     size_t n, const char *label, uf_model **out, figs *f)
{
    const opts *o = x->o;
    double t0 = now();
    int rc = CLI_EXIT_RUNTIME;
    uf_fitter *fit = NULL;
    uf_image **imgs = calloc3((size_t)o->c.batch, sizeof *imgs, 1); /* [batch] */
    *out = NULL;
    if (!imgs) { cli_error("out of memory"); goto done; }
    if (n == 0) { cli_error("%s: no training images", label); goto done; }
    if (uf_fitter_new(x->bb, dp, &fit) != UF_OK) {
        cli_error("%s: %s", o->c.backbone, uf_errmsg());
        goto done;
    }
    uf_fitter_set_threads(fit, o->c.threads);
    prog pg = {&o->c, ""};
    snprintf(pg.label, sizeof pg.label, "%s: fit", label);
    for (size_t b0 = 0; b0 < n; b0 += (size_t)o->c.batch) {
        int nb = (int)(n - b0 < (size_t)o->c.batch ? n - b0 : (size_t)o->c.batch);
        int ok = 0;
#pragma omp parallel for schedule(dynamic, 1) reduction(+ : ok)
        for (int j = 0; j < nb; j++) {
            imgs[j] = NULL;
            if (uf_dataset_load_image(x->ds, items[b0 + (size_t)j], &imgs[j]) == UF_OK) ok++;
            else report_item(items[b0 + (size_t)j], uf_errmsg());
        }
        uf_status s = UF_OK;
        if (ok == nb) s = uf_fitter_add(fit, (const uf_image *const *)imgs, nb);
        for (int j = 0; j < nb; j++) {
            uf_image_free(imgs[j]);
            imgs[j] = NULL;
        }
        if (ok != nb) {
            cli_error("%s: training image unreadable (see above)", label);
            goto done;
        }
        if (s != UF_OK) {
            cli_error("%s: training images %zu..%zu (%s ...): %s", label, b0, b0 + (size_t)nb - 1,
                      items[b0]->name, uf_errmsg());
            goto done;
        }
        cli_progress(&o->c, pg.label, b0 + (size_t)nb, n);
    }
    f->m[M_BANK_FULL] = (double)uf_fitter_bank_size(fit);
    snprintf(pg.label, sizeof pg.label, "%s", label);
    if (uf_fitter_finish(fit, o->c.quiet ? NULL : on_progress, &pg, out) != UF_OK) {
        cli_error("%s: %s", label, uf_errmsg());
        goto done;
    }
    uf_model_info mi;
    uf_model_get_info(*out, &mi);
    f->m[M_BANK] = (double)mi.bank_size;
    f->m[M_NTRAIN] = (double)mi.n_train;
    f->seed = dp->seed;
    rc = 0;
done:
    f->m[M_FIT_S] = now() - t0;
    x->tot_fit += f->m[M_FIT_S];
    uf_fitter_free(fit);
    free(imgs);
    return rc;
}

/* Make model m the extractor if there is none yet (its scorer computes every test set's
 * features: they depend only on the backbone and the feature settings, shared by all the
 * models of the run). Returns false on failure (printed). */
static bool ensure_extractor(ctx *x, uf_model *m)
{
    if (x->xmodel) return true;
    if (uf_scorer_new(m, &x->xsc) != UF_OK) {
        cli_error("%s", uf_errmsg());
        return false;
    }
    uf_scorer_set_threads(x->xsc, x->o->c.threads);
    x->xmodel = m;
    uf_model_output_size(m, &x->gh, &x->gw, &x->S, &x->D);
    x->Np = (size_t)x->gh * (size_t)x->gw;
    return true;
}

/* A ground-truth mask mask[h][w] (0/1) in network-input space out[S][S]: resized
 * bilinearly to the image's resized size as a 0/255 image, cropped (or padded with 0) as
 * the image is, binarised at 128. */
static uf_status mask_to_net(const uint8_t *mask, int w, int h, const uf_preprocess *pre, int S,
                             uint8_t *out)
{
    uf_image *im = NULL, *rs = NULL;
    uf_status s = uf_image_new(w, h, &im);
    if (s) return s;
    for (size_t i = 0; i < (size_t)w * (size_t)h; i++)
        im->rgb[3 * i] = im->rgb[3 * i + 1] = im->rgb[3 * i + 2] = mask[i] ? 255 : 0;
    int rw, rh, left, top;
    uf_preprocess_geometry(pre, w, h, &rw, &rh, &left, &top);
    const uf_image *r = im;
    if (rw != w || rh != h) {
        s = uf_image_resize(im, rw, rh, UF_INTERP_BILINEAR, &rs);
        if (s) { uf_image_free(im); return s; }
        r = rs;
    }
    for (int y = 0; y < S; y++) {
        int sy = y + top;
        for (int x = 0; x < S; x++) {
            int sx = x + left;
            out[(size_t)y * S + x] = sy >= 0 && sy < rh && sx >= 0 && sx < rw &&
                                     r->rgb[((size_t)sy * rw + sx) * 3] >= 128;
        }
    }
    uf_image_free(rs);
    uf_image_free(im);
    return UF_OK;
}

static void featset_free(featset *fs)
{
    free(fs->feats);
    free(fs->smooth);
    free(fs->mask);
    free(fs->gt);
    memset(fs, 0, sizeof *fs);
}

/* Compute the patch features of items[n] with the extractor (and, with want_gt, their
 * ground-truth masks in network space). */
static int extract_set(ctx *x, const uf_dataset_item *items, size_t n, bool want_gt,
                       const char *label, featset *fs)
{
    const opts *o = x->o;
    double t0 = now();
    size_t Np = x->Np, D = (size_t)x->D, SS = (size_t)x->S * (size_t)x->S;
    memset(fs, 0, sizeof *fs);
    fs->n = n;
    fs->items = items;
    fs->feats = alloc3(n, Np, D * sizeof(float));
    fs->smooth = alloc3(n, Np, sizeof(float));
    fs->mask = alloc3(n, Np, 1);
    if (want_gt) fs->gt = calloc3(n, SS, 1);
    if (!fs->feats || !fs->smooth || !fs->mask || (want_gt && !fs->gt)) {
        cli_error("%s: out of memory for the features of %zu test images (%.1f GB)", label, n,
                  (double)n * (double)Np * (double)D * 4e-9);
        featset_free(fs);
        return CLI_EXIT_RUNTIME;
    }
    uf_image *imgs[256] = {NULL};
    char plabel[200];
    snprintf(plabel, sizeof plabel, "%s: test features", label);
    for (size_t b0 = 0; b0 < n; b0 += (size_t)o->c.batch) {
        int nb = (int)(n - b0 < (size_t)o->c.batch ? n - b0 : (size_t)o->c.batch);
        int bad = 0;
#pragma omp parallel for schedule(dynamic, 1) reduction(+ : bad)
        for (int j = 0; j < nb; j++) {
            const uf_dataset_item *it = &items[b0 + (size_t)j];
            imgs[j] = NULL;
            if (uf_dataset_load_image(x->ds, it, &imgs[j]) != UF_OK) {
                report_item(it, uf_errmsg());
                bad++;
                continue;
            }
            if (want_gt && it->mask_path) {
                uint8_t *m = NULL; /* [h][w] 0/1 */
                uf_status s = uf_dataset_load_mask(x->ds, it, imgs[j]->width, imgs[j]->height, &m);
                if (s == UF_OK)
                    s = mask_to_net(m, imgs[j]->width, imgs[j]->height, &o->dp.pre, x->S,
                                    fs->gt + (b0 + (size_t)j) * SS);
                free(m);
                if (s != UF_OK) {
                    report_named(it->mask_path, uf_errmsg());
                    bad++;
                }
            }
        }
        uf_status s = UF_OK;
        if (!bad)
            s = uf_scorer_extract(x->xsc, (const uf_image *const *)imgs, nb,
                                  fs->feats + b0 * Np * D, fs->smooth + b0 * Np, fs->mask + b0 * Np);
        if (!bad && s != UF_OK) { /* name the image: retry one by one */
            for (int j = 0; j < nb; j++) {
                size_t i = b0 + (size_t)j;
                if (uf_scorer_extract(x->xsc, (const uf_image *const *)&imgs[j], 1,
                                      fs->feats + i * Np * D, fs->smooth + i * Np,
                                      fs->mask + i * Np) != UF_OK) {
                    report_item(&items[i], uf_errmsg());
                    bad++;
                }
            }
            if (!bad) cli_error("%s: %s", label, uf_errmsg());
            bad++;
        }
        for (int j = 0; j < nb; j++) {
            uf_image_free(imgs[j]);
            imgs[j] = NULL;
        }
        if (bad) {
            cli_error("%s: test image unreadable or unusable (see above)", label);
            featset_free(fs);
            return CLI_EXIT_RUNTIME;
        }
        cli_progress(&o->c, plabel, b0 + (size_t)nb, n);
    }
    fs->seconds = now() - t0;
    x->tot_extract += fs->seconds;
    return 0;
}

static void scored_free(scored *sd)
{
    free(sd->score);
    free(sd->feat);
    free(sd->maxp);
    free(sd->maps);
    memset(sd, 0, sizeof *sd);
}

/* Score the features of fs with model sc; clu[i] nonzero asks for image i's clustering
 * features (clu may be NULL), maps for the pixel maps of all. */
static int score_set(ctx *x, uf_scorer *sc, const featset *fs, const uint8_t *clu, bool maps,
                     const char *label, scored *sd)
{
    enum { CH = 32 };
    size_t n = fs->n, Np = x->Np, D = (size_t)x->D, SS = (size_t)x->S * (size_t)x->S;
    bool soft = x->o->dp.soft_mask;
    float *ps = NULL; /* [CH][Np] patch scores of the chunk */
    memset(sd, 0, sizeof *sd);
    sd->score = alloc3(n, sizeof(float), 1);
    if (clu) {
        sd->feat = calloc3(n, D, sizeof(float));
        sd->maxp = alloc3(n, sizeof(int), 1);
        ps = alloc3(CH, Np, sizeof(float));
    }
    if (maps) sd->maps = alloc3(n, SS, sizeof(float));
    if (!sd->score || (clu && (!sd->feat || !sd->maxp || !ps)) || (maps && !sd->maps)) {
        cli_error("%s: out of memory for scoring %zu images", label, n);
        goto fail;
    }
    for (size_t i0 = 0; i0 < n; i0 += CH) {
        int nb = (int)(n - i0 < CH ? n - i0 : CH);
        uf_score res[CH];
        memset(res, 0, sizeof res);
        for (int j = 0; j < nb; j++) {
            size_t i = i0 + (size_t)j;
            if (clu && clu[i]) {
                res[j].feature = sd->feat + i * D;
                res[j].patch_scores = ps + (size_t)j * Np;
            }
            if (maps) res[j].pixel_map = sd->maps + i * SS;
        }
        if (uf_score_features(sc, fs->feats + i0 * Np * D, fs->smooth + i0 * Np,
                              fs->mask + i0 * Np, nb, res) != UF_OK) {
            cli_error("%s: scoring test images %zu..%zu: %s", label, i0, i0 + (size_t)nb - 1,
                      uf_errmsg());
            goto fail;
        }
        for (int j = 0; j < nb; j++) {
            size_t i = i0 + (size_t)j;
            sd->score[i] = res[j].score;
            if (!res[j].patch_scores) continue;
            /* the single highest patch under the masked score (background 0, or weighted
             * by the BPM map with the soft mask); ties go to the lower index */
            const uint8_t *mk = fs->mask + i * Np;
            const float *sm = fs->smooth + i * Np;
            int best = 0;
            float bv = -INFINITY;
            for (size_t p = 0; p < Np; p++) {
                float v = mk[p] ? res[j].patch_scores[p] * (soft ? sm[p] : 1.0f) : 0.0f;
                if (v > bv) { bv = v; best = (int)p; }
            }
            sd->maxp[i] = best;
        }
    }
    free(ps);
    return 0;
fail:
    free(ps);
    scored_free(sd);
    return CLI_EXIT_RUNTIME;
}

/* Image-level figures of scores/labels over the subset idx[n] (all when idx is NULL). */
static void image_figs(const float *scores, const uint8_t *labels, const size_t *idx, size_t n,
                       figs *f)
{
    const float *s = scores;
    const uint8_t *l = labels;
    float *sb = NULL;   /* [n] the subset's scores */
    uint8_t *lb = NULL; /* [n] the subset's labels */
    if (idx) {
        sb = alloc3(n, sizeof(float), 1);
        lb = alloc3(n, 1, 1);
        if (!sb || !lb) {
            cli_error("out of memory");
            free(sb);
            free(lb);
            return;
        }
        for (size_t i = 0; i < n; i++) {
            sb[i] = scores[idx[i]];
            lb[i] = labels[idx[i]];
        }
        s = sb;
        l = lb;
    }
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) pos += l[i] != 0;
    if (pos > 0 && pos < n) f->m[M_IMG_AUROC] = uf_auroc(s, l, n);
    if (pos > 0) f->m[M_F1] = uf_f1_max(s, l, n);
    free(sb);
    free(lb);
}

/* Pixel AUROC, AUPRO and pixel F1-max over the maps of a test set. */
static int pixel_figs(ctx *x, const featset *fs, const scored *sd, const char *label, figs *f)
{
    size_t SS = (size_t)x->S * (size_t)x->S;
    int n = (int)fs->n;
    const float **maps = calloc3((size_t)n, sizeof *maps, 1);  /* [n] -> [S][S] */
    const uint8_t **gts = calloc3((size_t)n, sizeof *gts, 1);  /* [n] -> [S][S] */
    int *hw = alloc3((size_t)n, sizeof(int), 1);               /* [n] all S     */
    int rc = CLI_EXIT_RUNTIME;
    if (!maps || !gts || !hw) { cli_error("out of memory"); goto done; }
    for (int i = 0; i < n; i++) {
        maps[i] = sd->maps + (size_t)i * SS;
        gts[i] = fs->gt + (size_t)i * SS;
        hw[i] = x->S;
    }
    uf_pixel_result pr;
    if (uf_pixel_metrics(maps, gts, hw, hw, n, 0.3, 0, &pr) != UF_OK) {
        cli_error("%s: pixel metrics: %s", label, uf_errmsg());
        goto done;
    }
    f->m[M_PIX_AUROC] = pr.auroc;
    f->m[M_AUPRO] = pr.aupro;
    f->m[M_PIX_F1] = pr.f1_max;
    rc = 0;
done:
    free(maps);
    free(gts);
    free(hw);
    return rc;
}

/* Anomaly clustering of the images idx[na] of fs (their types from items): K-means on
 * three features per image, scored against the types. Failures of K-means (e.g. fewer
 * distinct points than clusters) leave the figures null, with a note on stderr. */
static void cluster_figs(ctx *x, const featset *fs, const scored *sd, const size_t *idx, size_t na,
                         const char *label, figs *f)
{
    size_t D = (size_t)x->D, Np = x->Np;
    int *truth = alloc3(na, sizeof(int), 1); /* [na] type ids */
    int *pred = alloc3(na, sizeof(int), 1);  /* [na] cluster ids */
    float *X = alloc3(na, D, sizeof(float)); /* [na][D] */
    f->n_cluster = na;
    if (!truth || !pred || !X) {
        cli_error("%s: clustering: out of memory", label);
        goto done;
    }
    int k = x->o->cluster;
    for (size_t i = 0; i < na; i++) truth[i] = fs->items[idx[i]].type_id;
    if (k < 0) { /* the number of distinct types */
        k = 0;
        for (size_t i = 0; i < na; i++) {
            bool seen = false;
            for (size_t j = 0; j < i && !seen; j++) seen = truth[j] == truth[i];
            k += !seen;
        }
    }
    f->k = k;
    if (x->o->cluster < 0 && k < 2) { /* one type: any clustering is trivially right */
        if (!x->o->c.quiet)
            cli_error("%s: clustering skipped: the anomalous images are of %d type%s", label, k,
                      k == 1 ? "" : "s");
        goto done;
    }
    if (na < 1 || k < 1 || (size_t)k > na) {
        if (!x->o->c.quiet)
            cli_error("%s: clustering skipped: %zu anomalous images for %d clusters", label, na, k);
        goto done;
    }
    for (int v = 0; v < 3; v++) {
        for (size_t i = 0; i < na; i++) {
            float *xi = X + i * D;
            const float *pf = fs->feats + idx[i] * Np * D; /* [Np][D] */
            if (v == 0) {
                memcpy(xi, sd->feat + idx[i] * D, D * sizeof(float));
            } else if (v == 1) { /* mean of all patch features */
                for (size_t d = 0; d < D; d++) xi[d] = 0;
                for (size_t p = 0; p < Np; p++)
                    for (size_t d = 0; d < D; d++) xi[d] += pf[p * D + d];
                for (size_t d = 0; d < D; d++) xi[d] /= (float)Np;
            } else {
                memcpy(xi, pf + (size_t)sd->maxp[idx[i]] * D, D * sizeof(float));
            }
        }
        if (uf_kmeans(X, na, (int)D, k, 10, x->o->dp.seed, 300, pred, NULL) != UF_OK) {
            cli_error("%s: clustering (%s) skipped: %s", label,
                      v == 0 ? "top-K feature" : v == 1 ? "all patches" : "max patch", uf_errmsg());
            continue;
        }
        int base = v == 0 ? M_NMI : v == 1 ? M_NMI_ALL : M_NMI_MAX;
        f->m[base] = uf_nmi(truth, pred, na);
        f->m[base + 1] = uf_ari(truth, pred, na);
        f->m[base + 2] = uf_cluster_f1(truth, pred, na);
    }
done:
    free(truth);
    free(pred);
    free(X);
}

/* "cat/test/broken_large/000.png" -> "broken_large_000" for category "cat". */
static void heat_name(const char *cat, const char *name, char *out, size_t n)
{
    size_t cl = strlen(cat);
    if (!strncmp(name, cat, cl) && name[cl] == '/') name += cl + 1;
    if (!strncmp(name, "test/", 5)) name += 5;
    const char *dot = strrchr(name, '.');
    if (dot && strchr(dot, '/')) dot = NULL;
    size_t j = 0;
    for (const char *p = name; *p && p != dot && j + 1 < n; p++)
        out[j++] = (*p == '/' || *p == '#') ? '_' : *p;
    out[j] = '\0';
}

/* Heatmap overlays of a scored test set: DIR/heatmaps/<cat>/<name>.png, one colour scale
 * per category (its maps' min..max) so images compare. */
static int write_heatmaps(ctx *x, const uf_model *m, const featset *fs, const scored *sd,
                          const char *cat)
{
    char dir[PATH_MAX], cname[256];
    snprintf(cname, sizeof cname, "%s", cat); /* a folder name: no '/', no leading '.' */
    for (char *p = cname; *p; p++)
        if (*p == '/' || (p == cname && *p == '.')) *p = '_';
    snprintf(dir, sizeof dir, "%s/heatmaps/%s", x->dir, cname);
    if (!make_dirs(dir)) return CLI_EXIT_RUNTIME;
    size_t SS = (size_t)x->S * (size_t)x->S, total = fs->n * SS;
    float lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < total; i++) {
        if (sd->maps[i] < lo) lo = sd->maps[i];
        if (sd->maps[i] > hi) hi = sd->maps[i];
    }
    int bad = 0;
    int n = (int)fs->n;
#pragma omp parallel for schedule(dynamic, 1) reduction(+ : bad)
    for (int i = 0; i < n; i++) {
        const uf_dataset_item *it = &fs->items[i];
        char name[1024], path[PATH_MAX + 1100];
        heat_name(cat, it->name ? it->name : "image", name, sizeof name);
        snprintf(path, sizeof path, "%s/%s.png", dir, name);
        uf_image *img = NULL, *ov = NULL;
        float *full = NULL; /* [h][w] */
        uf_status s = uf_dataset_load_image(x->ds, it, &img);
        if (s == UF_OK) {
            full = alloc3((size_t)img->width, (size_t)img->height, sizeof(float));
            s = full ? uf_model_map_to_image(m, sd->maps + (size_t)i * SS, img->width,
                                             img->height, full)
                     : UF_ERR_NOMEM;
        }
        if (s == UF_OK) s = uf_heatmap_overlay(img, full, lo, hi, 0.5f, &ov);
        if (s == UF_OK) s = uf_image_write_png(ov, path);
        if (s != UF_OK) {
            report_named(path, s == UF_ERR_NOMEM && !full ? "out of memory" : uf_errmsg());
            bad++;
        }
        free(full);
        uf_image_free(ov);
        uf_image_free(img);
    }
    return bad ? CLI_EXIT_RUNTIME : 0;
}

/* Indices i < n with lab[i] != 0, into a new array of *k. */
static size_t *index_where(const uint8_t *lab, size_t n, size_t *k)
{
    size_t *idx = alloc3(n, sizeof(size_t), 1);
    *k = 0;
    if (!idx) return NULL;
    for (size_t i = 0; i < n; i++)
        if (lab[i]) idx[(*k)++] = i;
    return idx;
}

/* Everything about one category scored by one model: image figures, pixel figures (when
 * the featset has ground truth), clustering (over the anomalous images), scores.csv, and
 * heatmaps on the first repeat. labels[n] = anomalous; the image scores are copied to
 * scores_out[n] unless it is NULL. */
static int evaluate(ctx *x, uf_model *m, const featset *fs, const uint8_t *labels,
                    const char *cat, bool clustering, int rep, figs *f, float *scores_out)
{
    const opts *o = x->o;
    double t0 = now();
    int rc = CLI_EXIT_RUNTIME;
    uf_scorer *sc = NULL;
    scored sd = {0};
    size_t na = 0, *aidx = NULL; /* [na] anomalous images */
    bool maps = fs->gt || (o->heatmaps && !x->info.semantic); /* maps: [n][S][S] floats */
    if (m == x->xmodel) sc = x->xsc;
    else if (uf_scorer_new(m, &sc) != UF_OK) {
        cli_error("%s", uf_errmsg());
        goto done;
    }
    uf_scorer_set_threads(sc, o->c.threads);
    if (!(aidx = index_where(labels, fs->n, &na))) { cli_error("out of memory"); goto done; }
    if (score_set(x, sc, fs, clustering ? labels : NULL, maps, cat, &sd)) goto done;
    image_figs(sd.score, labels, NULL, fs->n, f);
    if (scores_out) memcpy(scores_out, sd.score, fs->n * sizeof(float));
    if (fs->gt && pixel_figs(x, fs, &sd, cat, f)) goto done;
    if (clustering) cluster_figs(x, fs, &sd, aidx, na, cat, f);
    if (!append_scores(x, cat, fs->items, labels, sd.score, fs->n, rep)) goto done;
    if (rep == 0 && o->heatmaps && !x->info.semantic && write_heatmaps(x, m, fs, &sd, cat)) goto done;
    rc = 0;
done:
    f->m[M_SCORE_S] = now() - t0;
    x->tot_score += f->m[M_SCORE_S];
    if (sc != x->xsc) uf_scorer_free(sc);
    scored_free(&sd);
    free(aidx);
    return rc;
}

/* ------------------------------------------------------------------------------------ */
/* The protocols                                                                        */
/* ------------------------------------------------------------------------------------ */

/* Training items of the selected categories cats[ncat] for repeat rep into *out. */
static int train_items(ctx *x, const int *cats, int ncat, int rep,
                       const uf_dataset_item ***out, size_t *n)
{
    const opts *o = x->o;
    size_t total = 0;
    *out = NULL;
    *n = 0;
    for (int i = 0; i < ncat; i++) {
        uf_dataset_counts cn;
        if (uf_dataset_get_counts(x->ds, cats[i], &cn) != UF_OK) {
            cli_error("%s", uf_errmsg());
            return CLI_EXIT_RUNTIME;
        }
        total += cn.n_train;
    }
    const uf_dataset_item **v = calloc3(total, sizeof *v, 1); /* [total] */
    if (!v) { cli_error("out of memory"); return CLI_EXIT_RUNTIME; }
    for (int i = 0; i < ncat; i++) {
        const uf_dataset_item *items;
        size_t ni;
        if (uf_dataset_split(x->ds, cats[i], UF_SPLIT_TRAIN, &items, &ni) != UF_OK) {
            cli_error("%s", uf_errmsg());
            free(v);
            return CLI_EXIT_RUNTIME;
        }
        size_t k = o->shots ? (size_t)o->shots : (size_t)o->max_train;
        uint64_t seed = o->dp.seed + (o->shots ? (uint64_t)rep : 0);
        if (*n + (ni < k || k == 0 ? ni : k) > total || !pick_items(items, ni, k, seed, v, n)) {
            cli_error("out of memory");
            free(v);
            return CLI_EXIT_RUNTIME;
        }
    }
    *out = v;
    return 0;
}

/* Finish a row: write the results and print its line. */
static int row_finished(ctx *x, const catres *r)
{
    print_row(x, r->name, r, NULL);
    return write_results(x) ? 0 : CLI_EXIT_RUNTIME;
}

static int category_test(ctx *x, int c, const uf_dataset_item **items, size_t *n, catres *r)
{
    uf_dataset_counts cn;
    if (uf_dataset_get_counts(x->ds, c, &cn) != UF_OK ||
        uf_dataset_split(x->ds, c, UF_SPLIT_TEST, items, n) != UF_OK) {
        cli_error("%s", uf_errmsg());
        return CLI_EXIT_RUNTIME;
    }
    r->n_test = cn.n_test;
    r->n_test_anomalous = cn.n_test_anomalous;
    r->pixel = !x->info.semantic && cn.n_test_anomalous > 0 && cn.n_test_masked == cn.n_test_anomalous;
    return 0;
}

/* One-class: a model per category (per repeat), scored on the category's test set. */
static int run_one_class(ctx *x)
{
    const opts *o = x->o;
    int rc = 0;
    featset shared = {0}; /* semantic datasets: the one test sequence */
    for (int ci = 0; ci < x->nsel && !rc; ci++) {
        int c = x->sel[ci];
        catres *r = &x->res[ci];
        const uf_dataset_item *test;
        size_t ntest;
        featset own = {0};
        featset *fs = x->info.semantic ? &shared : &own;
        uint8_t *labels = NULL; /* [ntest] */
        if ((rc = category_test(x, c, &test, &ntest, r))) break;
        if (!(labels = alloc3(ntest, 1, 1))) {
            cli_error("out of memory");
            rc = CLI_EXIT_RUNTIME;
            break;
        }
        for (size_t i = 0; i < ntest; i++) labels[i] = (uint8_t)(test[i].anomalous != 0);
        for (int rep = 0; rep < o->repeats && !rc; rep++) {
            figs *f = &r->rep[rep];
            nan_figs(f);
            const uf_dataset_item **train = NULL;
            size_t ntrain = 0;
            uf_model *m = NULL;
            char label[200];
            if (o->shots) snprintf(label, sizeof label, "%s [%d/%ld]", r->name, rep + 1, o->repeats);
            else snprintf(label, sizeof label, "%s", r->name);
            uf_detector_params dp = o->dp;
            dp.seed = o->dp.seed + (uint64_t)rep;
            rc = train_items(x, &c, 1, rep, &train, &ntrain);
            if (!rc) rc = fit_model(x, &dp, train, ntrain, label, &m, f);
            free(train);
            if (!rc && !ensure_extractor(x, m)) rc = CLI_EXIT_RUNTIME;
            if (!rc && fs->n == 0) {
                rc = extract_set(x, test, ntest, r->pixel, label, fs);
                if (!rc) f->m[M_EXTRACT_S] = fs->seconds;
            } else if (!rc) {
                f->m[M_EXTRACT_S] = 0;
            }
            bool same = !rc && fs->n == ntest;
            for (size_t i = 0; same && i < ntest; i++) same = fs->items[i].image_id == test[i].image_id;
            if (!rc && !same) {
                cli_error("%s: test split differs from the other classes' (%zu vs %zu images)",
                          r->name, ntest, fs->n);
                rc = CLI_EXIT_RUNTIME;
            }
            if (!rc) {
                featset view = *fs; /* the cached features under this category's items */
                view.items = test;
                rc = evaluate(x, m, &view, labels, r->name, r->clustering, rep, f, NULL);
            }
            if (m != x->xmodel) uf_model_free(m);
            if (!rc) r->nrep++;
        }
        free(labels);
        featset_free(&own);
        if (!rc) rc = row_finished(x, r);
    }
    featset_free(&shared);
    return rc;
}

/* Multi-class: one model per repeat from the training images of every selected category. */
static int run_multi_class(ctx *x)
{
    const opts *o = x->o;
    int rc = 0;
    bool sem = x->info.semantic;
    featset *fsc = calloc3((size_t)x->nsel, sizeof *fsc, 1); /* [nsel] defect: per category */
    featset shared = {0};
    float *all_s = NULL;   /* [n_all] overall scores (defect: union of the test sets) */
    uint8_t *all_l = NULL; /* [n_all] overall labels                                 */
    uint8_t *sel_class = NULL;
    size_t n_all = 0;
    catres *ov = x->overall;
    if (!fsc) { cli_error("out of memory"); return CLI_EXIT_RUNTIME; }
    for (int i = 0; i < x->nsel; i++) {
        const uf_dataset_item *t;
        size_t nt;
        if ((rc = category_test(x, x->sel[i], &t, &nt, &x->res[i]))) goto done;
        if (sem) {
            x->res[i].clustering = false; /* clustered once, in "overall" */
        } else {
            ov->n_test += nt;
            ov->n_test_anomalous += x->res[i].n_test_anomalous;
        }
    }
    if (sem) {
        /* normal: test images of the selected classes; the test sequence is that of the
         * first selected class (identical for all) */
        int nc = uf_dataset_n_categories(x->ds);
        if (!(sel_class = calloc3((size_t)nc, 1, 1))) { cli_error("out of memory"); rc = CLI_EXIT_RUNTIME; goto done; }
        for (int i = 0; i < x->nsel; i++) sel_class[x->sel[i]] = 1;
        const uf_dataset_item *t;
        if (uf_dataset_split(x->ds, x->sel[0], UF_SPLIT_TEST, &t, &n_all) != UF_OK) {
            cli_error("%s", uf_errmsg());
            rc = CLI_EXIT_RUNTIME;
            goto done;
        }
        ov->n_test = n_all;
        all_l = alloc3(n_all, 1, 1);
        if (!all_l) { cli_error("out of memory"); rc = CLI_EXIT_RUNTIME; goto done; }
        for (size_t i = 0; i < n_all; i++) {
            int cid = t[i].class_id;
            all_l[i] = !(cid >= 0 && cid < nc && sel_class[cid]);
            ov->n_test_anomalous += all_l[i];
        }
        for (int i = 0; i < x->nsel; i++) {
            size_t nn = 0;
            for (size_t j = 0; j < n_all; j++) nn += t[j].class_id == x->sel[i];
            x->res[i].n_test = nn + ov->n_test_anomalous;
            x->res[i].n_test_anomalous = ov->n_test_anomalous;
        }
        shared.items = t;
    } else {
        all_s = alloc3(ov->n_test, sizeof(float), 1);
        all_l = alloc3(ov->n_test, 1, 1);
        if (!all_s || !all_l) { cli_error("out of memory"); rc = CLI_EXIT_RUNTIME; goto done; }
    }
    for (int rep = 0; rep < o->repeats && !rc; rep++) {
        figs *fo = &ov->rep[rep];
        nan_figs(fo);
        const uf_dataset_item **train = NULL;
        size_t ntrain = 0;
        uf_model *m = NULL;
        char label[64];
        if (o->shots) snprintf(label, sizeof label, "multi-class [%d/%ld]", rep + 1, o->repeats);
        else snprintf(label, sizeof label, "multi-class");
        uf_detector_params dp = o->dp;
        dp.seed = o->dp.seed + (uint64_t)rep;
        rc = train_items(x, x->sel, x->nsel, rep, &train, &ntrain);
        if (!rc) rc = fit_model(x, &dp, train, ntrain, label, &m, fo);
        free(train);
        if (!rc && !ensure_extractor(x, m)) rc = CLI_EXIT_RUNTIME;
        if (rc) { if (m != x->xmodel) uf_model_free(m); break; }
        if (sem) {
            /* one scoring pass over the test sequence; per class: its normal images against
             * every anomalous image; overall: all */
            const uf_dataset_item *t = shared.items;
            if (shared.n == 0) {
                rc = extract_set(x, t, n_all, false, label, &shared);
                if (!rc) fo->m[M_EXTRACT_S] = shared.seconds;
            } else {
                fo->m[M_EXTRACT_S] = 0;
            }
            scored sd = {0};
            uf_scorer *sc = NULL;
            double t0 = now();
            if (!rc && m != x->xmodel && uf_scorer_new(m, &sc) != UF_OK) {
                cli_error("%s", uf_errmsg());
                rc = CLI_EXIT_RUNTIME;
            }
            uf_scorer_set_threads(sc, o->c.threads);
            if (!rc) rc = score_set(x, sc ? sc : x->xsc, &shared, ov->clustering ? all_l : NULL,
                                    false, label, &sd);
            uf_scorer_free(sc);
            if (!rc) {
                image_figs(sd.score, all_l, NULL, n_all, fo);
                size_t na = 0, *aidx = index_where(all_l, n_all, &na);
                size_t *idx = alloc3(n_all, sizeof(size_t), 1);
                if (!aidx || !idx) { cli_error("out of memory"); rc = CLI_EXIT_RUNTIME; }
                if (!rc && ov->clustering) cluster_figs(x, &shared, &sd, aidx, na, "overall", fo);
                for (int i = 0; i < x->nsel && !rc; i++) {
                    figs *f = &x->res[i].rep[rep];
                    nan_figs(f);
                    size_t k = 0;
                    for (size_t j = 0; j < n_all; j++)
                        if (all_l[j] || t[j].class_id == x->sel[i]) idx[k++] = j;
                    image_figs(sd.score, all_l, idx, k, f);
                    for (int q = M_NTRAIN; q <= M_EXTRACT_S; q++) f->m[q] = fo->m[q];
                    f->seed = fo->seed;
                }
                if (!rc && !append_scores(x, "all", t, all_l, sd.score, n_all, rep)) rc = CLI_EXIT_RUNTIME;
                free(aidx);
                free(idx);
            }
            fo->m[M_SCORE_S] = now() - t0;
            x->tot_score += fo->m[M_SCORE_S];
            scored_free(&sd);
            for (int i = 0; i < x->nsel && !rc; i++) {
                x->res[i].rep[rep].m[M_SCORE_S] = fo->m[M_SCORE_S];
                x->res[i].nrep++;
                if (rep == o->repeats - 1) rc = row_finished(x, &x->res[i]);
            }
        } else {
            size_t off = 0;
            for (int i = 0; i < x->nsel && !rc; i++) {
                catres *r = &x->res[i];
                figs *f = &r->rep[rep];
                nan_figs(f);
                const uf_dataset_item *t;
                size_t nt;
                uf_dataset_split(x->ds, x->sel[i], UF_SPLIT_TEST, &t, &nt);
                if (fsc[i].n == 0) {
                    rc = extract_set(x, t, nt, r->pixel, r->name, &fsc[i]);
                    if (!rc) f->m[M_EXTRACT_S] = fsc[i].seconds;
                } else {
                    f->m[M_EXTRACT_S] = 0;
                }
                uint8_t *lab = all_l + off;
                for (size_t j = 0; j < nt; j++) lab[j] = (uint8_t)(t[j].anomalous != 0);
                if (!rc) rc = evaluate(x, m, &fsc[i], lab, r->name, r->clustering, rep, f, all_s + off);
                if (rc) break;
                /* the model's figures belong to every row */
                for (int q = M_NTRAIN; q <= M_FIT_S; q++) f->m[q] = fo->m[q];
                f->seed = fo->seed;
                off += nt;
                if (o->repeats == 1) featset_free(&fsc[i]); /* not needed again */
                r->nrep++;
                if (rep == o->repeats - 1) rc = row_finished(x, r);
            }
            /* overall: the union of the categories' test sets */
            if (!rc) image_figs(all_s, all_l, NULL, off, fo);
        }
        if (m != x->xmodel) uf_model_free(m);
        if (!rc) ov->nrep++;
    }
    if (!rc) {
        print_row(x, "overall", ov, NULL);
        rc = write_results(x) ? 0 : CLI_EXIT_RUNTIME;
    }
done:
    for (int i = 0; i < x->nsel; i++) featset_free(&fsc[i]);
    free(fsc);
    featset_free(&shared);
    free(all_s);
    free(all_l);
    free(sel_class);
    return rc;
}

/* ------------------------------------------------------------------------------------ */
/* The command                                                                          */
/* ------------------------------------------------------------------------------------ */

/* Category by exact name, or by index for semantic datasets' classes. */
static int find_category(const uf_dataset *ds, const char *name)
{
    int c = uf_dataset_find_category(ds, name);
    long k;
    if (c < 0 && cli_parse_int(name, 0, uf_dataset_n_categories(ds) - 1, &k)) c = (int)k;
    return c;
}

int cmd_eval(int argc, char **argv)
{
    const char *verb = "eval";
    opts o;
    memset(&o, 0, sizeof o);
    cli_common_init(&o.c);
    o.dp = uf_detector_default_params();
    o.repeats = 0;
    int rc = 0;
    ctx x;
    memset(&x, 0, sizeof x);
    x.o = &o;
    x.t0 = now();
    x.status = "running";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--resize")) o.set_resize = true;
        if (!strcmp(a, "--crop")) o.set_crop = true;
        if (!strcmp(a, "--interp")) o.set_interp = true;
        int r = cli_common_option(&o.c, verb, argc, argv, &i);
        if (r == 0) r = cli_detector_option(&o.dp, verb, argc, argv, &i);
        if (r < 0) { rc = CLI_EXIT_USAGE; goto out; }
        if (r > 0) continue;
        bool has = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("%s\n%s\n%s", help, cli_detector_help, cli_common_help);
            goto out;
        } else if (!strcmp(a, "--dataset") || !strcmp(a, "--root") || !strcmp(a, "--out") ||
                   !strcmp(a, "--category")) {
            if (!has) { rc = cli_usage_error(verb, "option %s needs a value", a); goto out; }
            const char *v = argv[++i];
            if (a[2] == 'd') o.dataset = v;
            else if (a[2] == 'r') o.root = v;
            else if (a[2] == 'o') o.out = v;
            else {
                for (size_t k = 0; k < o.cats.n; k++)
                    if (!strcmp(o.cats.v[k], v)) {
                        rc = cli_usage_error(verb, "--category '%s' given twice", v);
                        goto out;
                    }
                if (!cli_strings_push(&o.cats, v)) { cli_error("out of memory"); rc = CLI_EXIT_RUNTIME; goto out; }
            }
        } else if (!strcmp(a, "--multi-class")) {
            o.multi = true;
        } else if (!strcmp(a, "--heatmaps")) {
            o.heatmaps = true;
        } else if (!strcmp(a, "--cluster")) {
            long k;
            o.cluster = -1;
            if (has && argv[i + 1][0] != '-') {
                if (!cli_parse_int(argv[i + 1], 1, 100000, &k)) {
                    rc = cli_usage_error(verb, "--cluster: expected a number of clusters >= 1, "
                                               "got '%s'", argv[i + 1]);
                    goto out;
                }
                o.cluster = (int)k;
                i++;
            }
        } else if (!strcmp(a, "--shots") || !strcmp(a, "--repeats") || !strcmp(a, "--max-train")) {
            long v;
            if (!has || !cli_parse_int(argv[i + 1], 1, 100000000, &v)) {
                rc = cli_usage_error(verb, "%s: expected a positive integer", a);
                goto out;
            }
            i++;
            if (a[2] == 's') o.shots = v;
            else if (a[2] == 'r') o.repeats = v;
            else o.max_train = v;
        } else if (a[0] == '-' && a[1]) {
            rc = cli_usage_error(verb, "unknown option '%s'", a);
            goto out;
        } else {
            rc = cli_usage_error(verb, "unexpected argument '%s'", a);
            goto out;
        }
    }
    if (!o.c.backbone) { rc = cli_usage_error(verb, "--backbone is required"); goto out; }
    if (!o.dataset) { rc = cli_usage_error(verb, "--dataset is required"); goto out; }
    if (!o.root) { rc = cli_usage_error(verb, "--root is required"); goto out; }
    if (!o.out) { rc = cli_usage_error(verb, "--out is required"); goto out; }
    if (o.repeats && !o.shots) { rc = cli_usage_error(verb, "--repeats needs --shots"); goto out; }
    if (o.shots && o.max_train) {
        rc = cli_usage_error(verb, "--shots and --max-train exclude each other");
        goto out;
    }
    if (!o.repeats) o.repeats = o.shots ? 5 : 1;
    if (o.repeats > 1000) { rc = cli_usage_error(verb, "--repeats: at most 1000"); goto out; }
    uf_dataset_kind kind;
    if (uf_dataset_kind_from_name(o.dataset, &kind) != UF_OK) {
        rc = cli_usage_error(verb, "--dataset: %s", uf_errmsg());
        goto out;
    }

    /* a command line for the record */
    sbuf cmd = {0};
    sb_printf(&cmd, "uniformaly");
    for (int i = 0; i < argc; i++) sb_printf(&cmd, " %s", argv[i]);
    x.command = cmd.s;
    if (cmd.oom) { cli_error("out of memory"); rc = CLI_EXIT_RUNTIME; goto done; }
    time_t tt = time(NULL);
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(x.date, sizeof x.date, "%Y-%m-%dT%H:%M:%SZ", &tm);

    if (uf_dataset_open(kind, o.root, &x.ds) != UF_OK) {
        cli_error("%s", uf_errmsg());
        rc = CLI_EXIT_RUNTIME;
        goto done;
    }
    uf_dataset_get_info(x.ds, &x.info);
    /* categories */
    int ncat = uf_dataset_n_categories(x.ds);
    x.sel = calloc3((size_t)ncat, sizeof(int), 1);
    if (!x.sel) { cli_error("out of memory"); rc = CLI_EXIT_RUNTIME; goto done; }
    if (o.cats.n == 0) {
        for (int c = 0; c < ncat; c++) x.sel[x.nsel++] = c;
    } else {
        for (size_t k = 0; k < o.cats.n; k++) {
            int c = find_category(x.ds, o.cats.v[k]);
            for (int j = 0; j < x.nsel && c >= 0; j++)
                if (x.sel[j] == c) {
                    rc = cli_usage_error(verb, "--category '%s' names a category given before",
                                         o.cats.v[k]);
                    goto done;
                }
            if (c < 0) {
                sbuf l = {0};
                for (int j = 0; j < ncat && j < 40; j++)
                    sb_printf(&l, "%s'%s'", j ? ", " : "", uf_dataset_category(x.ds, j));
                if (ncat > 40) sb_printf(&l, ", ... (%d in all)", ncat);
                rc = cli_usage_error(verb, "%s: no category '%s'; valid: %s", o.root, o.cats.v[k],
                                     l.s ? l.s : "");
                free(l.s);
                goto done;
            }
            x.sel[x.nsel++] = c;
        }
    }
    if (o.multi && x.info.semantic && x.nsel == ncat) {
        rc = cli_usage_error(verb, "--multi-class on a semantic dataset needs --category: the "
                                   "selected classes are normal, the others anomalous");
        goto done;
    }
    if (o.heatmaps && x.info.semantic && !o.c.quiet)
        cli_error("--heatmaps: none for a semantic dataset (no defect locations)");
    /* small in-memory images: the reference's protocol unless the user chose otherwise */
    o.dp.pre = o.c.pre;
    if (x.info.semantic && x.info.image_width > 0) {
        if (!o.set_resize) o.dp.pre.resize = 112;
        if (!o.set_crop) {
            o.dp.pre.crop = 0;
            o.dp.pre.pad_to = 224;
        }
        if (!o.set_interp) o.dp.pre.interp = UF_INTERP_LANCZOS;
    }
    if (uf_detector_params_check(&o.dp, NULL) != UF_OK) {
        rc = cli_usage_error(verb, "%s", uf_errmsg());
        goto done;
    }
    cli_threads_init(&o.c);

    /* result rows */
    x.nres = x.nsel;
    x.res = calloc3((size_t)x.nres, sizeof *x.res, 1);
    if (!x.res) { cli_error("out of memory"); rc = CLI_EXIT_RUNTIME; goto done; }
    x.name_w = 8;
    for (int i = 0; i < x.nres; i++) {
        x.res[i].name = uf_dataset_category(x.ds, x.sel[i]);
        x.res[i].clustering = o.cluster != 0;
        if (!(x.res[i].rep = calloc3((size_t)o.repeats, sizeof(figs), 1))) {
            cli_error("out of memory");
            rc = CLI_EXIT_RUNTIME;
            goto done;
        }
        int w = (int)strlen(x.res[i].name);
        if (w > x.name_w) x.name_w = w < 40 ? w : 40;
    }
    if (o.multi) {
        x.overall = calloc(1, sizeof *x.overall);
        if (!x.overall || !(x.overall->rep = calloc3((size_t)o.repeats, sizeof(figs), 1))) {
            cli_error("out of memory");
            rc = CLI_EXIT_RUNTIME;
            goto done;
        }
        x.overall->name = "overall";
        x.overall->clustering = o.cluster != 0 && x.info.semantic;
    }

    /* output folder, fresh scores.csv */
    x.dir = strdup(o.out);
    if (!x.dir || !make_dirs(x.dir)) { rc = CLI_EXIT_RUNTIME; goto done; }
    {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/scores.csv", x.dir);
        const char *hdr = o.shots ? "category,image,type,anomalous,score,repeat\n"
                                  : "category,image,type,anomalous,score\n";
        if (!write_atomic(&x, path, hdr, strlen(hdr))) { rc = CLI_EXIT_RUNTIME; goto done; }
    }

    double tl = now();
    if (!(x.bb = cli_load_backbone(&o.c))) { rc = CLI_EXIT_RUNTIME; goto done; }
    x.t_load = now() - tl;
    if (uf_detector_params_check(&o.dp, x.bb) != UF_OK) {
        cli_error("%s: %s", o.c.backbone, uf_errmsg());
        rc = CLI_EXIT_RUNTIME;
        goto done;
    }
    if (!write_results(&x)) { rc = CLI_EXIT_RUNTIME; goto done; }
    if (!o.c.quiet) {
        const char *what = x.info.semantic ? (x.nsel == 1 ? "class" : "classes")
                                           : (x.nsel == 1 ? "category" : "categories");
        fprintf(stderr, "eval: %s at %s: %d %s, %s%s\n", uf_dataset_kind_name(kind), x.info.root,
                x.nsel, what, o.multi ? "multi-class" : "one-class", o.shots ? " few-shot" : "");
    }
    print_header(&x);
    rc = o.multi ? run_multi_class(&x) : run_one_class(&x);
    if (!rc) {
        figs mean, sd;
        int n;
        mean_over_rows(&x, &mean, &sd, &n);
        if (n > 1) print_row(&x, "mean", NULL, &mean);
    }
    x.status = rc ? "failed" : "complete";
    if (!write_results(&x) && !rc) rc = CLI_EXIT_RUNTIME;
    if (!rc && !o.c.quiet)
        fprintf(stderr, "eval: wrote %s/results.json (%.1f s)\n", x.dir, now() - x.t0);
done:
    if (x.res)
        for (int i = 0; i < x.nres; i++) free(x.res[i].rep);
    free(x.res);
    if (x.overall) free(x.overall->rep);
    free(x.overall);
    uf_scorer_free(x.xsc);
    uf_model_free(x.xmodel);
    uf_backbone_free(x.bb);
    uf_dataset_free(x.ds);
    free(x.sel);
    free(x.dir);
    free(x.command);
out:
    cli_strings_free(&o.cats);
    return rc;
}
