/*
 * cmd_eval.c - `uniformaly eval`: every task of the paper, measured with one command.
 *
 * The protocols live in the library (uf_eval_run, src/eval/protocol.c): this file parses
 * the options into uf_eval_params, opens the dataset, and writes what the run reports -
 * results.json, results.csv and results.md rewritten (through a temporary file and a
 * rename) after each finished category, scores.csv appended, a table row on stdout, and
 * heatmap overlays with --heatmaps - so an interrupted run keeps every finished category.
 */
#include "cli.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

static const char *const help =
    "Usage: uniformaly eval --backbone W --dataset D --root DIR --out DIR [options]\n"
    "\n"
    "Evaluate the detector on a dataset in its published layout: fit per category, score\n"
    "its test set, and write every figure, the settings, versions and timings to DIR:\n"
    "  results.json   per category (\"categories\": {NAME: {...}}) image_auroc, f1_max and\n"
    "                 f1_threshold, pixel_auroc, aupro (FPR <= 0.3), pixel_f1_max and\n"
    "                 pixel_f1_threshold (null without masks), bank size, timings,\n"
    "                 clustering, \"thresholds\": {f1, fpr_1pct, fpr_5pct: {threshold,\n"
    "                 recall, fpr}} (anomalous when score > threshold; F1-optimal and at\n"
    "                 1% / 5% false-positive rate on the test set); their \"mean\" and\n"
    "                 \"std\"; the settings with where the task defaults come from\n"
    "  results.csv    one row per category, then the mean\n"
    "  results.md     the same as a Markdown table, and the thresholds per category\n"
    "  scores.csv     the score of every test image (appended per category, each whole or\n"
    "                 not at all)\n"
    "  report.html    when the run completes: one self-contained page (no network) with\n"
    "                 per category ROC and PR curves, score histograms with the thresholds\n"
    "                 marked, AUROC per defect type and the most confident mistakes\n"
    "  heatmaps/      with --heatmaps: CATEGORY/NAME.png overlays (defect datasets)\n"
    "The files are rewritten as each category finishes, so an interrupted run keeps every\n"
    "finished category. A table row is printed on stdout as each category finishes.\n"
    "\n"
    "Datasets D: mvtec, btad, mtd, folder, list (defect detection) and cifar10, cifar100,\n"
    "mnist, fashion-mnist, imagefolder (semantic, one-class protocol: a class's training\n"
    "images are normal; every test image is scored and is anomalous iff of another class).\n"
    "Small in-memory images (CIFAR, MNIST) are resized to 112 with Lanczos and zero-padded\n"
    "to 224 (the official scripts' protocol) unless --resize, --crop or --interp is given.\n"
    "\n"
    "Task defaults of the official scripts, unless --coreset is given: coreset 0.1 for\n"
    "defect datasets and clustering; 0.05 for CIFAR-10/100, MNIST, Fashion-MNIST, smaller\n"
    "class folders and any --multi-class run; 0.01 for imagefolder classes of more than\n"
    "10,000 training images each. results.json records the value and its source.\n"
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
    "  --zero-shot          no training images: each category's test set is scored against\n"
    "                       itself (as `uniformaly zeroshot`, MuSc's mutual scoring), one\n"
    "                       run; excludes --shots, --max-train, --multi-class, --cluster\n"
    "  --ref-frac F         with --zero-shot: fraction of the other images averaged, in\n"
    "                       (0, 1] (default 0.3, MuSc)\n"
    "  --cluster [K]        anomaly clustering of each category's test images: K-means\n"
    "                       (k-means++, 10 restarts, seeded, 300 iterations) of their top-K\n"
    "                       mean features into K clusters (default: the number of types\n"
    "                       clustered), scored against the types by NMI, ARI and F1\n"
    "                       (Hungarian matching); also reported for the mean of all patch\n"
    "                       features and the top patch feature\n"
    "  --cluster-protocol P official (default): every test image, good ones included, K =\n"
    "                       number of types including good (the official code, the\n"
    "                       paper's Table 7); anomalous: the anomalous images only, K =\n"
    "                       number of defect types (eval's only protocol before)\n"
    "  --gt-threshold T     ground-truth masks, resized and cropped like the images, are\n"
    "                       anomalous where value/255 >= T, T in (0, 1] (default 0.5);\n"
    "                       with --crop 0 the pixel figures cover each whole image (and\n"
    "                       its whole mask), not the canvas padding around it\n"
    "  --gt-mode M          threshold (default: --gt-threshold) or exact: only pixels that\n"
    "                       stay exactly 255 after resizing (the official evaluation)\n"
    "  --shots N            fit on N training images per category, drawn at random\n"
    "  --repeats R          with --shots: R draws, seeded seed..seed+R-1 (default 5);\n"
    "                       each figure is the mean over the draws, with std and values\n"
    "  --max-train N        at most N training images per category (a seeded subset), for\n"
    "                       quick runs; recorded in results.json\n"
    "  --heatmaps           write heatmap overlays of every test image (defect datasets)\n"
    "  --save-models DIR    keep every model the run fits: DIR/CATEGORY.ufm (one-class),\n"
    "                       DIR/multi-class.ufm (--multi-class), with -repN before .ufm\n"
    "                       for repeat N when there are several (--shots); each written\n"
    "                       atomically right after its fit (an existing file is replaced),\n"
    "                       recording the backbone's path and sha256 as `fit` does, no\n"
    "                       threshold (calibrate it: 'uniformaly calibrate')\n";

/* ------------------------------------------------------------------------------------ */
/* Options and the writer's state                                                       */
/* ------------------------------------------------------------------------------------ */

typedef struct opts {
    cli_common c;
    uf_eval_params ep;
    const char *dataset, *root, *out;
    const char *save_models; /* --save-models DIR, or NULL */
    cli_strings cats; /* --category values as given */
    bool heatmaps;    /* --heatmaps                 */
    bool gt_exact;    /* --gt-mode exact            */
    bool zero_shot;   /* --zero-shot                */
} opts;

typedef struct ctx {
    opts *o;
    uf_dataset *ds;
    uf_dataset_info info;
    uf_backbone *bb;
    int *sel;               /* [nsel] selected category indices    */
    int nsel;
    const uf_eval_result *r; /* the run's result as last reported   */
    char *dir;              /* --out                               */
    const char *status;     /* "running", "complete", "failed"     */
    double t0;              /* start of the run                    */
    double t_load;          /* backbone load seconds               */
    int name_w;             /* width of the stdout table's first column */
    char *command;          /* the command line                    */
    char date[32];          /* start time, UTC ISO 8601            */
    bool write_failed;      /* a results file could not be written */
} ctx;

/* The flat metrics, in the order of the CSV and Markdown columns. */
static const struct { const char *key; size_t off; } metric[] = {
    {"image_auroc", offsetof(uf_eval_figures, image_auroc)},
    {"pixel_auroc", offsetof(uf_eval_figures, pixel_auroc)},
    {"aupro", offsetof(uf_eval_figures, aupro)},
    {"f1_max", offsetof(uf_eval_figures, f1_max)},
    {"pixel_f1_max", offsetof(uf_eval_figures, pixel_f1_max)},
};
#define N_METRIC 5
/* Per-fit figures beside them in JSON (and at the end of the CSV). */
static const struct { const char *key; size_t off; } extra[] = {
    {"f1_threshold", offsetof(uf_eval_figures, f1_threshold)},
    {"pixel_f1_threshold", offsetof(uf_eval_figures, pixel_f1_threshold)},
};
static const struct { const char *key; size_t off; } sizes[] = {
    {"n_train", offsetof(uf_eval_figures, n_train)},
    {"bank_size", offsetof(uf_eval_figures, bank_size)},
    {"bank_size_full", offsetof(uf_eval_figures, bank_size_full)},
    {"fit_seconds", offsetof(uf_eval_figures, fit_seconds)},
    {"extract_seconds", offsetof(uf_eval_figures, extract_seconds)},
    {"score_seconds", offsetof(uf_eval_figures, score_seconds)},
};
static const char *const variant_key[UF_EVAL_N_FEATURES] = {"top_k", "all_patches", "max_patch"};

static double fig(const uf_eval_figures *f, size_t off) { return *(const double *)((const char *)f + off); }

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static bool row_done(const ctx *x, const uf_eval_row *r) { return r->n_done == x->r->repeats; }

/* ------------------------------------------------------------------------------------ */
/* Output files                                                                         */
/* ------------------------------------------------------------------------------------ */

/* Write data to path atomically, so path is always either the previous complete file or
 * the new one, even when the run is interrupted. */
static bool write_atomic(const char *path, const char *data, size_t len)
{
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

/* A CSV field: quoted when it holds a comma, quote or line break (RFC 4180). */
static void sb_csv(cli_buf *b, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) { cli_buf_printf(b, "%s", s); return; }
    cli_buf_printf(b, "\"");
    for (; *s; s++) cli_buf_printf(b, *s == '"' ? "\"\"" : "%c", *s);
    cli_buf_printf(b, "\"");
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

/* The figures f into o: metrics flat, clustering nested (when asked; K and n from row),
 * per-fit figures (thresholds, sizes, timings) with `fit`. */
static void figs_json(cJSON *o, const uf_eval_figures *f, const uf_eval_row *row, bool clustering,
                      bool fit)
{
    for (int i = 0; i < N_METRIC; i++) json_num(o, metric[i].key, fig(f, metric[i].off));
    if (fit)
        for (size_t i = 0; i < sizeof extra / sizeof *extra; i++) json_num(o, extra[i].key, fig(f, extra[i].off));
    if (clustering) {
        bool any = false;
        for (int v = 0; v < UF_EVAL_N_FEATURES; v++) any |= isfinite(f->cluster[v].nmi);
        if (!any) {
            cJSON_AddNullToObject(o, "clustering");
        } else {
            cJSON *cl = cJSON_AddObjectToObject(o, "clustering");
            if (row && row->cluster_k > 0) {
                cJSON_AddNumberToObject(cl, "k", row->cluster_k);
                cJSON_AddNumberToObject(cl, "n", (double)row->cluster_n);
            }
            json_num(cl, "nmi", f->cluster[0].nmi);
            json_num(cl, "ari", f->cluster[0].ari);
            json_num(cl, "f1", f->cluster[0].f1);
            cJSON *va = cJSON_AddObjectToObject(cl, "variants");
            for (int v = 1; v < UF_EVAL_N_FEATURES; v++) {
                cJSON *a = cJSON_AddObjectToObject(va, variant_key[v]);
                json_num(a, "nmi", f->cluster[v].nmi);
                json_num(a, "ari", f->cluster[v].ari);
                json_num(a, "f1", f->cluster[v].f1);
            }
        }
    }
    if (fit)
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) json_num(o, sizes[i].key, fig(f, sizes[i].off));
}

static cJSON *row_json(const ctx *x, const uf_eval_row *r)
{
    cJSON *o = cJSON_CreateObject();
    figs_json(o, &r->mean, r, r->clustering, true);
    cJSON_AddNumberToObject(o, "n_test", (double)r->n_test);
    cJSON_AddNumberToObject(o, "n_test_anomalous", (double)r->n_test_anomalous);
    cli_decision d[CLI_N_DECISIONS];
    if (r->n_done > 0 && r->repeats[0].scores &&
        cli_decisions(r->repeats[0].scores, r->labels, r->n_scored, d)) {
        cJSON *t = cJSON_AddObjectToObject(o, "thresholds"); /* first repeat's test scores */
        for (int k = 0; k < CLI_N_DECISIONS; k++) {
            cJSON *e = cJSON_AddObjectToObject(t, cli_decision_names[k]);
            json_num(e, "threshold", d[k].threshold);
            json_num(e, "recall", d[k].recall);
            json_num(e, "fpr", d[k].fpr);
        }
    } else {
        cJSON_AddNullToObject(o, "thresholds");
    }
    if (x->o->ep.shots > 0) {
        cJSON *s = cJSON_AddObjectToObject(o, "std");
        figs_json(s, &r->std, NULL, r->clustering, false);
        cJSON *reps = cJSON_AddArrayToObject(o, "repeats");
        for (int k = 0; k < r->n_done; k++) {
            cJSON *e = cJSON_CreateObject();
            char seed[32];
            snprintf(seed, sizeof seed, "%llu", (unsigned long long)r->repeats[k].seed);
            cJSON_AddStringToObject(e, "seed", seed);
            figs_json(e, &r->repeats[k].fig, r, r->clustering, true);
            cJSON_AddItemToArray(reps, e);
        }
    }
    return o;
}

static cJSON *settings_json(const ctx *x)
{
    const opts *o = x->o;
    const uf_eval_params *ep = &o->ep;
    const uf_eval_result *r = x->r;
    cJSON *s = cJSON_CreateObject();
    cJSON_AddStringToObject(s, "dataset", uf_dataset_kind_name(x->info.kind));
    cJSON_AddStringToObject(s, "root", x->info.root);
    cJSON_AddBoolToObject(s, "semantic", x->info.semantic);
    cJSON *cats = cJSON_AddArrayToObject(s, "categories");
    for (int i = 0; i < x->nsel; i++)
        cJSON_AddItemToArray(cats, cJSON_CreateString(uf_dataset_category(x->ds, x->sel[i])));
    cJSON_AddBoolToObject(s, "multi_class", ep->multi_class);
    if (ep->zero_shot > 0) cJSON_AddNumberToObject(s, "zero_shot_ref_frac", ep->zero_shot);
    else cJSON_AddNullToObject(s, "zero_shot_ref_frac");
    if (ep->cluster == 0) cJSON_AddNullToObject(s, "cluster");
    else if (ep->cluster < 0) cJSON_AddStringToObject(s, "cluster", "types");
    else cJSON_AddNumberToObject(s, "cluster", ep->cluster);
    cJSON_AddStringToObject(s, "cluster_protocol",
                            ep->cluster_protocol == UF_CLUSTER_OFFICIAL ? "official" : "anomalous");
    cJSON_AddStringToObject(s, "gt_mode", o->gt_exact ? "exact" : "threshold");
    cJSON_AddNumberToObject(s, "gt_threshold", ep->gt_threshold);
    if (ep->shots) cJSON_AddNumberToObject(s, "shots", (double)ep->shots);
    else cJSON_AddNullToObject(s, "shots");
    cJSON_AddNumberToObject(s, "repeats", r->repeats);
    if (ep->max_train) cJSON_AddNumberToObject(s, "max_train", (double)ep->max_train);
    else cJSON_AddNullToObject(s, "max_train");
    cJSON_AddBoolToObject(s, "heatmaps", o->heatmaps);
    cJSON_AddItemToObject(s, "params", cli_params_json(&r->params));
    cJSON *src = cJSON_AddObjectToObject(s, "defaults");
    cJSON_AddStringToObject(src, "coreset", r->coreset_source);
    cJSON_AddStringToObject(src, "preprocess", r->preprocess_source);
    cJSON *b = cJSON_AddObjectToObject(s, "backbone");
    cJSON_AddStringToObject(b, "path", o->c.backbone);
    if (r->backbone_sha256[0]) {
        cJSON_AddStringToObject(b, "resolved_path", r->backbone_path);
        cJSON_AddStringToObject(b, "sha256", r->backbone_sha256);
    }
    uf_backbone_info bi;
    uf_backbone_get_info(x->bb, &bi);
    cJSON_AddStringToObject(b, "format", bi.format);
    cJSON_AddNumberToObject(b, "dim", bi.dim);
    cJSON_AddNumberToObject(b, "depth", bi.depth);
    cJSON_AddNumberToObject(b, "heads", bi.heads);
    cJSON_AddNumberToObject(b, "patch", bi.patch);
    cJSON_AddNumberToObject(b, "n_params", (double)bi.n_params);
    cJSON_AddStringToObject(b, "precision", uf_precision_name(uf_backbone_precision(x->bb)));
    cJSON_AddStringToObject(b, "kernels", uf_cpu_level());
    cJSON_AddNumberToObject(s, "threads", uf_get_threads());
    cJSON_AddNumberToObject(s, "batch", o->c.batch);
    cJSON *v = cJSON_AddObjectToObject(s, "versions");
    cJSON_AddStringToObject(v, "uniformaly", uf_version());
    cJSON_AddStringToObject(v, "cjson", cJSON_Version());
    cJSON_AddStringToObject(s, "command", x->command);
    cJSON_AddStringToObject(s, "started", x->date);
    return s;
}

/* results.json from the finished rows. */
static bool write_json(const ctx *x)
{
    const uf_eval_result *r = x->r;
    bool clu = x->o->ep.cluster != 0;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "status", x->status);
    cJSON_AddItemToObject(root, "settings", settings_json(x));
    cJSON *cats = cJSON_AddObjectToObject(root, "categories");
    for (int i = 0; i < r->n_rows; i++)
        if (row_done(x, &r->rows[i])) cJSON_AddItemToObject(cats, r->rows[i].name, row_json(x, &r->rows[i]));
    cJSON *m = cJSON_AddObjectToObject(root, "mean");
    cJSON_AddNumberToObject(m, "n_categories", r->n_finished);
    figs_json(m, &r->mean, NULL, clu, false);
    cJSON *s = cJSON_AddObjectToObject(root, "std");
    figs_json(s, &r->std, NULL, clu, false);
    if (r->overall) {
        if (row_done(x, r->overall)) cJSON_AddItemToObject(root, "overall", row_json(x, r->overall));
        else cJSON_AddNullToObject(root, "overall");
    }
    cJSON *t = cJSON_AddObjectToObject(root, "timings");
    cJSON_AddNumberToObject(t, "backbone_load_seconds", x->t_load);
    cJSON_AddNumberToObject(t, "fit_seconds", r->fit_seconds);
    cJSON_AddNumberToObject(t, "extract_seconds", r->extract_seconds);
    cJSON_AddNumberToObject(t, "score_seconds", r->score_seconds);
    cJSON_AddNumberToObject(t, "total_seconds", now() - x->t0);
    char *js = cJSON_Print(root);
    cJSON_Delete(root);
    if (!js) {
        cli_error("out of memory");
        return false;
    }
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/results.json", x->dir);
    cli_buf jb = {0};
    cli_buf_printf(&jb, "%s\n", js);
    free(js);
    bool ok = !jb.oom && write_atomic(path, jb.s, jb.n);
    free(jb.s);
    return ok;
}

/* One line of results.csv and results.md: a row (r), or the mean (r NULL). */
static void table_line(const ctx *x, cli_buf *cb, cli_buf *mb, const char *name, const uf_eval_row *r,
                       const uf_eval_figures *f)
{
    bool clu = x->o->ep.cluster != 0, shots = x->o->ep.shots > 0;
    sb_csv(cb, name);
    cli_buf_printf(mb, "| %s |", name);
    double v[N_METRIC + 3 * UF_EVAL_N_FEATURES], sd[N_METRIC + 3];
    int nv = 0;
    for (int k = 0; k < N_METRIC; k++) {
        sd[nv] = r ? fig(&r->std, metric[k].off) : NAN;
        v[nv++] = fig(f, metric[k].off);
    }
    if (clu) {
        sd[nv] = r ? r->std.cluster[0].nmi : NAN;
        sd[nv + 1] = r ? r->std.cluster[0].ari : NAN;
        sd[nv + 2] = r ? r->std.cluster[0].f1 : NAN;
        for (int q = 0; q < UF_EVAL_N_FEATURES; q++) {
            v[nv++] = f->cluster[q].nmi;
            v[nv++] = f->cluster[q].ari;
            v[nv++] = f->cluster[q].f1;
        }
    }
    for (int k = 0; k < nv; k++) {
        if (isfinite(v[k])) cli_buf_printf(cb, ",%.6f", v[k]);
        else cli_buf_printf(cb, ",");
        if (k >= N_METRIC + 3) continue; /* Markdown: the top-K clustering only */
        /* few-shot rows: mean ± population std over the repeats */
        if (isfinite(v[k]) && shots && r && r->n_done > 1 && isfinite(sd[k]))
            cli_buf_printf(mb, " %.4f ± %.4f |", v[k], sd[k]);
        else if (isfinite(v[k])) cli_buf_printf(mb, " %.4f |", v[k]);
        else cli_buf_printf(mb, " - |");
    }
    if (r) {
        cli_buf_printf(cb, ",%.0f,%zu,%.0f,%.2f,%.2f,%.2f", f->n_train, r->n_test, f->bank_size,
                  f->fit_seconds, f->extract_seconds, f->score_seconds);
        for (size_t k = 0; k < sizeof extra / sizeof *extra; k++) {
            double e = fig(f, extra[k].off);
            if (isfinite(e)) cli_buf_printf(cb, ",%.9g", e);
            else cli_buf_printf(cb, ",");
        }
        cli_buf_printf(cb, "\n");
        cli_buf_printf(mb, " %.0f | %zu | %.0f | %.1f | %.1f |\n", f->n_train, r->n_test, f->bank_size,
                  f->fit_seconds, f->extract_seconds + f->score_seconds);
    } else {
        cli_buf_printf(cb, ",,,,,,,,\n");
        cli_buf_printf(mb, " | | | | |\n");
    }
}

/* results.md: the thresholds a production line would pick per category (anomalous = score
 * > threshold), from the first repeat's test scores: F1-optimal, 1% and 5% FPR. */
static void decision_table(const ctx *x, cli_buf *mb)
{
    const uf_eval_result *r = x->r;
    bool head = false;
    for (int i = 0; i < r->n_rows; i++) {
        const uf_eval_row *row = &r->rows[i];
        cli_decision d[CLI_N_DECISIONS];
        if (!row_done(x, row) || !row->n_done || !row->repeats[0].scores ||
            !cli_decisions(row->repeats[0].scores, row->labels, row->n_scored, d))
            continue;
        if (!head)
            cli_buf_printf(mb, "\nDecision thresholds on the image score (anomalous when score > "
                          "threshold; measured on the test set, so optimistic):\n\n"
                          "| category | F1-optimal | recall (FPR) | at 1%% FPR | recall (FPR) | "
                          "at 5%% FPR | recall (FPR) |\n|---|---:|---:|---:|---:|---:|---:|\n");
        head = true;
        cli_buf_printf(mb, "| %s |", row->name);
        for (int k = 0; k < CLI_N_DECISIONS; k++)
            cli_buf_printf(mb, " %.5g | %.1f%% (%.1f%%) |", d[k].threshold, 100 * d[k].recall,
                      100 * d[k].fpr);
        cli_buf_printf(mb, "\n");
    }
}

/* results.csv and results.md: one row per finished category, then mean and overall. */
static bool write_tables(const ctx *x)
{
    const opts *o = x->o;
    const uf_eval_result *r = x->r;
    bool clu = o->ep.cluster != 0;
    cli_buf cb = {0}, mb = {0};
    cli_buf_printf(&cb, "category");
    for (int i = 0; i < N_METRIC; i++) cli_buf_printf(&cb, ",%s", metric[i].key);
    if (clu) cli_buf_printf(&cb, ",nmi,ari,cluster_f1,nmi_all_patches,ari_all_patches,f1_all_patches,"
                            "nmi_max_patch,ari_max_patch,f1_max_patch");
    cli_buf_printf(&cb, ",n_train,n_test,bank_size,fit_seconds,extract_seconds,score_seconds,"
                   "f1_threshold,pixel_f1_threshold\n");
    cli_buf_printf(&mb, "# uniformaly eval: %s (%s)\n\n", uf_dataset_kind_name(x->info.kind), x->info.root);
    cli_buf_printf(&mb, "Backbone `%s`%s%.12s%s; %s%s%s; coreset %g (%s)%s%s%s.\n\n", o->c.backbone,
              r->backbone_sha256[0] ? " (sha256 " : "", r->backbone_sha256,
              r->backbone_sha256[0] ? "...)" : "",
              o->zero_shot ? "zero-shot (no fit)" : o->ep.multi_class ? "multi-class" : "one-class",
              o->ep.shots ? ", few-shot (mean ± std over repeats)" : "",
              o->ep.max_train ? ", training images capped" : "", r->params.coreset,
              r->coreset_source, clu ? "; clustering protocol " : "",
              clu ? (o->ep.cluster_protocol == UF_CLUSTER_OFFICIAL ? "official (all test images)"
                                                                   : "anomalous images only")
                  : "",
              x->info.semantic ? "" : o->gt_exact ? "; ground truth exact (255 after resizing)"
                                                  : "; ground truth >= threshold after resizing");
    cli_buf_printf(&mb, "| category | image AUROC | pixel AUROC | AUPRO | F1-max | pixel F1-max |");
    if (clu) cli_buf_printf(&mb, " NMI | ARI | cluster F1 |");
    cli_buf_printf(&mb, " train | test | bank | fit s | score s |\n|---|---:|---:|---:|---:|---:|");
    if (clu) cli_buf_printf(&mb, "---:|---:|---:|");
    cli_buf_printf(&mb, "---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < r->n_rows; i++)
        if (row_done(x, &r->rows[i])) table_line(x, &cb, &mb, r->rows[i].name, &r->rows[i], &r->rows[i].mean);
    if (r->n_finished > 0) table_line(x, &cb, &mb, "mean", NULL, &r->mean);
    if (r->overall && row_done(x, r->overall)) table_line(x, &cb, &mb, "overall", r->overall, &r->overall->mean);
    decision_table(x, &mb);
    bool ok = false;
    if (!cb.oom && !mb.oom) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/results.csv", x->dir);
        ok = write_atomic(path, cb.s, cb.n);
        snprintf(path, sizeof path, "%s/results.md", x->dir);
        ok = ok && write_atomic(path, mb.s, mb.n);
    } else {
        cli_error("out of memory");
    }
    free(cb.s);
    free(mb.s);
    return ok;
}

static void heat_name(const char *cat, const char *name, char *out, size_t n);
static void file_name(const char *name, char *out, size_t n);

/* The thumbnail of a row's item: its overlay from --heatmaps when written, else the image.
 * *own receives a malloc'd path to free (NULL when the image's own path is used). */
static const char *thumb_path(const ctx *x, const uf_eval_row *row, const uf_dataset_item *it,
                              char **own)
{
    *own = NULL;
    if (!x->o->heatmaps || row->category < 0) return it->path;
    char cname[256], name[1024], path[PATH_MAX + 1400];
    file_name(row->name, cname, sizeof cname);
    heat_name(row->name, it->name ? it->name : "image", name, sizeof name);
    snprintf(path, sizeof path, "%s/heatmaps/%s/%s.png", x->dir, cname, name);
    if (access(path, R_OK) != 0 || !(*own = strdup(path))) return it->path;
    return *own;
}

/* report.html (cli_report.c) from the first repeat's scores of every finished row. */
static bool write_report(const ctx *x)
{
    const uf_eval_result *r = x->r;
    int n = 0;
    cli_report_set *sets = calloc((size_t)r->n_rows + 1, sizeof *sets);
    const char **strs = NULL; /* [rows][3][n_scored]: names, types, thumbnails */
    size_t total = 0;
    for (int i = 0; i < r->n_rows; i++) total += r->rows[i].n_scored;
    if (r->overall) total += r->overall->n_scored;
    strs = calloc(3 * (total ? total : 1), sizeof *strs);
    char **owned = calloc(total ? total : 1, sizeof *owned); /* [total] thumbnail paths made here */
    bool ok = sets && strs && owned;
    size_t no = 0;
    size_t at = 0;
    for (int i = 0; ok && i <= r->n_rows; i++) {
        const uf_eval_row *row = i < r->n_rows ? &r->rows[i] : r->overall;
        if (!row || !row_done(x, row) || !row->n_scored || !row->n_done || !row->repeats[0].scores)
            continue;
        const char **nm = strs + at, **ty = nm + row->n_scored, **th = ty + row->n_scored;
        at += 3 * row->n_scored;
        for (size_t k = 0; k < row->n_scored; k++) {
            nm[k] = row->items[k].name ? row->items[k].name : "?";
            ty[k] = row->items[k].type ? row->items[k].type : "?";
            th[k] = thumb_path(x, row, &row->items[k], &owned[no]);
            if (owned[no]) no++;
        }
        sets[n++] = (cli_report_set){row->name, row->n_scored, row->repeats[0].scores, row->labels,
                                     ty, nm, th};
    }
    char path[PATH_MAX], title[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/report.html", x->dir);
    snprintf(title, sizeof title, "uniformaly eval: %s (%s)", uf_dataset_kind_name(x->info.kind),
             x->info.root);
    if (!ok) cli_error("out of memory");
    ok = ok && cli_write_report(path, title, sets, n);
    for (size_t k = 0; owned && k < no; k++) free(owned[k]);
    free(owned);
    free(sets);
    free(strs);
    return ok;
}

static bool write_results(const ctx *x)
{
    return write_json(x) && write_tables(x) &&
           (strcmp(x->status, "complete") != 0 || write_report(x));
}

/* Append the scores of a finished row (every repeat) to scores.csv. */
/* Append data[n] to path as a whole or not at all: a write that fails part way (disk
 * full, file size limit) is cut back to the file's previous length, so scores.csv only
 * ever holds whole categories. (Rewriting the file atomically for every category would
 * copy it quadratically: a CIFAR-100 run scores 10,000 images per class.) A kill during
 * the write itself can still leave a partial last line; results.json, written after, then
 * does not list that category. false with errno set. */
static bool append_whole(const char *path, const char *data, size_t n)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
    struct stat st;
    if (fd < 0) return false;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return false;
    }
    size_t done = 0;
    while (done < n) {
        ssize_t k = write(fd, data + done, n - done);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        done += (size_t)k;
    }
    int e = done < n ? (errno ? errno : EIO) : 0;
    if (e && ftruncate(fd, st.st_size) != 0) { /* the cut failed too: say the first cause */ }
    if (close(fd) != 0 && !e) e = errno;
    errno = e;
    return !e;
}

static bool append_scores(const ctx *x, const uf_eval_row *row)
{
    if (!row->n_scored) return true;
    /* the semantic multi-class pass covers every test image: category "all" */
    const char *cat = row->category < 0 ? "all" : row->name;
    cli_buf b = {0};
    for (int rep = 0; rep < row->n_done; rep++) {
        const float *sc = row->repeats[rep].scores;
        for (size_t i = 0; sc && i < row->n_scored; i++) {
            const uf_dataset_item *it = &row->items[i];
            sb_csv(&b, cat);
            cli_buf_printf(&b, ",");
            sb_csv(&b, it->name ? it->name : "?");
            cli_buf_printf(&b, ",");
            sb_csv(&b, it->type ? it->type : "?");
            cli_buf_printf(&b, ",%d,%.9g", row->labels[i] ? 1 : 0, sc[i]);
            if (x->o->ep.shots) cli_buf_printf(&b, ",%d", rep);
            cli_buf_printf(&b, "\n");
        }
    }
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/scores.csv", x->dir);
    size_t tn = 0; /* names are bytes; CSV readers want UTF-8 (cli.h, issue 12) */
    char *t = b.oom ? NULL : cli_utf8_valid(b.s, b.n, &tn);
    bool ok = t && append_whole(path, t, tn);
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
    if (x->o->ep.cluster) printf(" %8s %8s %8s", "nmi", "ari", "clu_f1");
    printf(" %7s %6s %8s %8s %8s\n", "train", "test", "bank", "fit_s", "score_s");
    fflush(stdout);
}

static void print_row(const ctx *x, const char *name, const uf_eval_row *r, const uf_eval_figures *f)
{
    printf("%-*s", x->name_w, name);
    for (int k = 0; k < N_METRIC; k++) {
        double v = fig(f, metric[k].off);
        if (isfinite(v)) printf(" %8.4f", v);
        else printf(" %8s", "-");
    }
    if (x->o->ep.cluster) {
        double c[3] = {f->cluster[0].nmi, f->cluster[0].ari, f->cluster[0].f1};
        for (int k = 0; k < 3; k++) {
            if (isfinite(c[k])) printf(" %8.4f", c[k]);
            else printf(" %8s", "-");
        }
    }
    if (r)
        printf(" %7.0f %6zu %8.0f %8.1f %8.1f\n", f->n_train, r->n_test, f->bank_size,
               f->fit_seconds, f->extract_seconds + f->score_seconds);
    else
        printf("\n");
    fflush(stdout);
}

/* ------------------------------------------------------------------------------------ */
/* Callbacks of the run                                                                 */
/* ------------------------------------------------------------------------------------ */

static int on_progress(void *user, const char *stage, size_t done, size_t total)
{
    const ctx *x = user;
    cli_progress(&x->o->c, stage, done, total);
    return 0;
}

/* Settings resolved (row NULL) or a row finished: print it and rewrite the files. */
static int on_update(void *user, const uf_eval_result *r, const uf_eval_row *row)
{
    ctx *x = user;
    x->r = r;
    if (row) {
        if (row->notes && !x->o->c.quiet) {
            for (const char *l = row->notes; *l;) {
                const char *e = strchr(l, '\n');
                cli_error("%s: %.*s", row->name, (int)(e - l), l);
                l = e + 1;
            }
        }
        print_row(x, row->name, row, &row->mean);
        if (!append_scores(x, row)) x->write_failed = true;
    }
    if (!x->write_failed && !write_results(x)) x->write_failed = true;
    return x->write_failed;
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

/* A row's name as one file or folder name: no '/', no leading '.'. */
static void file_name(const char *name, char *out, size_t n)
{
    snprintf(out, n, "%s", name);
    for (char *p = out; *p; p++)
        if (*p == '/' || (p == out && *p == '.')) *p = '_';
}

/* --save-models: DIR/<category>[-rep<N>].ufm, or multi-class[-rep<N>].ufm, as fitted. */
static int on_model(void *user, const uf_eval_result *r, const uf_eval_row *row, int repeat,
                    const uf_model *m)
{
    ctx *x = user;
    if (!x->o->save_models) return 0;
    char base[256], rep[32] = "", path[PATH_MAX];
    file_name(row->category < 0 ? "multi-class" : row->name, base, sizeof base);
    if (r->repeats > 1) snprintf(rep, sizeof rep, "-rep%d", repeat);
    if ((size_t)snprintf(path, sizeof path, "%s/%s%s.ufm", x->o->save_models, base, rep) >= sizeof path) {
        cli_error("%s: path too long", x->o->save_models);
        x->write_failed = true;
        return 1;
    }
    if (uf_model_save(m, path, 0) != UF_OK) {
        cli_error("%s", uf_errmsg());
        x->write_failed = true;
        return 1;
    }
    return 0;
}

/* Heatmap overlays of a scored test set: DIR/heatmaps/<cat>/<name>.png, one colour scale
 * per category (its maps' min..max) so images compare. */
static int on_maps(void *user, const uf_eval_result *r, const uf_eval_row *row, const uf_model *m,
                   const uf_dataset_item *items, size_t n, const float *maps)
{
    ctx *x = user;
    if (!x->o->heatmaps) return 0;
    char dir[PATH_MAX], cname[256];
    file_name(row->name, cname, sizeof cname);
    snprintf(dir, sizeof dir, "%s/heatmaps/%s", x->dir, cname);
    if (!make_dirs(dir)) { x->write_failed = true; return 1; }
    size_t SS = (size_t)r->S * (size_t)r->S, total = n * SS;
    float lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < total; i++) {
        if (maps[i] < lo) lo = maps[i];
        if (maps[i] > hi) hi = maps[i];
    }
    int bad = 0;
#pragma omp parallel for schedule(dynamic, 1) reduction(+ : bad)
    for (int i = 0; i < (int)n; i++) {
        const uf_dataset_item *it = &items[i];
        char name[1024], path[PATH_MAX + 1100];
        heat_name(row->name, it->name ? it->name : "image", name, sizeof name);
        snprintf(path, sizeof path, "%s/%s.png", dir, name);
        uf_image *img = NULL, *ov = NULL;
        float *full = NULL;   /* [h][w] */
        uint8_t *seen = NULL; /* [h][w] what the model inspects; the rest is greyed */
        uf_status s = uf_dataset_load_image(x->ds, it, &img);
        if (s == UF_OK) {
            full = malloc((size_t)img->width * (size_t)img->height * sizeof(float));
            seen = malloc((size_t)img->width * (size_t)img->height);
            s = full && seen ? uf_model_map_to_image(m, maps + (size_t)i * SS, img->width, img->height, full)
                             : UF_ERR_NOMEM;
        }
        if (s == UF_OK) s = uf_model_inspected(m, img->width, img->height, seen);
        uf_annotation an = {.lo = lo, .hi = hi, .alpha = 0.5f, .outline = NAN, .mark = NAN,
                            .decision = -1, .inspected = seen};
        if (s == UF_OK) s = uf_heatmap_annotate(img, full, &an, &ov);
        if (s == UF_OK) s = uf_image_write_png(ov, path);
        if (s != UF_OK) {
            const char *msg = s == UF_ERR_NOMEM && !(full && seen) ? "out of memory" : uf_errmsg();
            if (strncmp(msg, path, strlen(path)) == 0) cli_error("%s", msg);
            else cli_error("%s: %s", path, msg);
            bad++;
        }
        free(full);
        free(seen);
        uf_image_free(ov);
        uf_image_free(img);
    }
    if (bad) x->write_failed = true;
    return bad != 0;
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

/* One eval-specific option at argv[*i] (consumed, 1), not one (0), usage error (-1). */
static int eval_option(opts *o, const char *verb, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    bool has = *i + 1 < argc;
    uf_eval_params *ep = &o->ep;
    if (!strcmp(a, "--dataset") || !strcmp(a, "--root") || !strcmp(a, "--out") ||
        !strcmp(a, "--category") || !strcmp(a, "--save-models")) {
        if (!has) return cli_usage_error(verb, "option %s needs a value", a), -1;
        const char *v = argv[++*i];
        if (a[2] == 's') o->save_models = v;
        else if (a[2] == 'd') o->dataset = v;
        else if (a[2] == 'r') o->root = v;
        else if (a[2] == 'o') o->out = v;
        else {
            for (size_t k = 0; k < o->cats.n; k++)
                if (!strcmp(o->cats.v[k], v))
                    return cli_usage_error(verb, "--category '%s' given twice", v), -1;
            if (!cli_strings_push(&o->cats, v)) return cli_error("out of memory"), -1;
        }
    } else if (!strcmp(a, "--multi-class")) {
        ep->multi_class = 1;
    } else if (!strcmp(a, "--zero-shot")) {
        if (!(ep->zero_shot > 0)) ep->zero_shot = UF_ZEROSHOT_DEFAULT_REF_FRAC;
        o->zero_shot = true;
    } else if (!strcmp(a, "--ref-frac")) {
        double f;
        if (!has || !cli_parse_float(argv[*i + 1], 1e-9, 1, &f))
            return cli_usage_error(verb, "--ref-frac: expected a number in (0, 1]"), -1;
        ep->zero_shot = f;
        ++*i;
    } else if (!strcmp(a, "--heatmaps")) {
        o->heatmaps = true;
        ep->want_maps = 1;
    } else if (!strcmp(a, "--cluster")) {
        long k;
        ep->cluster = -1;
        if (has && argv[*i + 1][0] != '-') {
            if (!cli_parse_int(argv[*i + 1], 1, 100000, &k))
                return cli_usage_error(verb, "--cluster: expected a number of clusters >= 1, "
                                             "got '%s'", argv[*i + 1]), -1;
            ep->cluster = (int)k;
            ++*i;
        }
    } else if (!strcmp(a, "--cluster-protocol") || !strcmp(a, "--gt-mode")) {
        if (!has) return cli_usage_error(verb, "option %s needs a value", a), -1;
        const char *v = argv[++*i];
        bool proto = a[2] == 'c';
        const char *x0 = proto ? "official" : "threshold", *x1 = proto ? "anomalous" : "exact";
        if (strcmp(v, x0) && strcmp(v, x1))
            return cli_usage_error(verb, "%s: expected %s or %s, got '%s'", a, x0, x1, v), -1;
        if (proto) ep->cluster_protocol = strcmp(v, x0) ? UF_CLUSTER_ANOMALOUS : UF_CLUSTER_OFFICIAL;
        else o->gt_exact = strcmp(v, x0) != 0;
    } else if (!strcmp(a, "--gt-threshold")) {
        double t;
        if (!has || !cli_parse_float(argv[*i + 1], 0, 1, &t) || t <= 0)
            return cli_usage_error(verb, "--gt-threshold: expected a number in (0, 1]"), -1;
        ep->gt_threshold = t;
        ++*i;
    } else if (!strcmp(a, "--shots") || !strcmp(a, "--repeats") || !strcmp(a, "--max-train")) {
        long v;
        if (!has || !cli_parse_int(argv[*i + 1], 1, 100000000, &v))
            return cli_usage_error(verb, "%s: expected a positive integer", a), -1;
        ++*i;
        if (a[2] == 's') ep->shots = (size_t)v;
        else if (a[2] == 'r') ep->repeats = v > 1000 ? 1001 : (int)v;
        else ep->max_train = (size_t)v;
    } else {
        return 0;
    }
    return 1;
}

/* Parse the command line into o; returns 0, or the exit status after a printed error, or
 * -1 after --help. */
static int parse(opts *o, int argc, char **argv)
{
    const char *verb = "eval";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--resize")) o->ep.keep |= UF_EVAL_KEEP_RESIZE;
        if (!strcmp(a, "--crop") || !strcmp(a, "--pad-to")) o->ep.keep |= UF_EVAL_KEEP_CROP;
        if (!strcmp(a, "--pad-to")) o->ep.keep |= UF_EVAL_KEEP_RESIZE; /* it sets resize */
        if (!strcmp(a, "--interp")) o->ep.keep |= UF_EVAL_KEEP_INTERP;
        if (!strcmp(a, "--coreset") || !strcmp(a, "--preset")) o->ep.keep |= UF_EVAL_KEEP_CORESET;
        int r = cli_common_option(&o->c, verb, argc, argv, &i);
        if (r == 0) r = cli_detector_option(&o->ep.detector, verb, argc, argv, &i);
        if (r == 0) r = eval_option(o, verb, argc, argv, &i);
        if (r < 0) return CLI_EXIT_USAGE;
        if (r > 0) continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("%s\n%s\n%s", help, cli_detector_help, cli_common_help);
            return -1;
        }
        if (a[0] == '-' && a[1]) return cli_usage_error(verb, "unknown option '%s'", a);
        return cli_usage_error(verb, "unexpected argument '%s'", a);
    }
    if (!cli_default_backbone(&o->c)) return CLI_EXIT_RUNTIME;
    if (!o->dataset) return cli_usage_error(verb, "--dataset is required");
    if (!o->root) return cli_usage_error(verb, "--root is required");
    if (!o->out) return cli_usage_error(verb, "--out is required");
    if (o->ep.repeats && !o->ep.shots) return cli_usage_error(verb, "--repeats needs --shots");
    if (o->ep.shots && o->ep.max_train)
        return cli_usage_error(verb, "--shots and --max-train exclude each other");
    if (o->ep.repeats > 1000) return cli_usage_error(verb, "--repeats: at most 1000");
    if (o->ep.zero_shot > 0 && !o->zero_shot)
        return cli_usage_error(verb, "--ref-frac needs --zero-shot");
    if (o->zero_shot && (o->ep.shots || o->ep.max_train || o->ep.multi_class || o->ep.cluster))
        return cli_usage_error(verb, "--zero-shot excludes --shots, --max-train, --multi-class "
                                     "and --cluster (there is no fit)");
    if (o->zero_shot && o->save_models)
        return cli_usage_error(verb, "--save-models: --zero-shot fits no model");
    if (o->gt_exact) o->ep.gt_threshold = UF_GT_THRESHOLD_EXACT;
    o->ep.detector.pre = o->c.pre;
    o->ep.batch = o->c.batch;
    return 0;
}

/* The selected categories into x->sel (all when none was given). */
static int select_categories(ctx *x)
{
    const char *verb = "eval";
    const opts *o = x->o;
    int ncat = uf_dataset_n_categories(x->ds);
    if (!(x->sel = calloc((size_t)ncat, sizeof(int)))) {
        cli_error("out of memory");
        return CLI_EXIT_RUNTIME;
    }
    if (o->cats.n == 0)
        for (int c = 0; c < ncat; c++) x->sel[x->nsel++] = c;
    for (size_t k = 0; k < o->cats.n; k++) {
        int c = find_category(x->ds, o->cats.v[k]);
        for (int j = 0; j < x->nsel && c >= 0; j++)
            if (x->sel[j] == c)
                return cli_usage_error(verb, "--category '%s' names a category given before",
                                       o->cats.v[k]);
        if (c < 0) {
            cli_buf l = {0};
            for (int j = 0; j < ncat && j < 40; j++)
                cli_buf_printf(&l, "%s'%s'", j ? ", " : "", uf_dataset_category(x->ds, j));
            if (ncat > 40) cli_buf_printf(&l, ", ... (%d in all)", ncat);
            int rc = cli_usage_error(verb, "%s: no category '%s'; valid: %s", o->root, o->cats.v[k],
                                     l.s ? l.s : "");
            free(l.s);
            return rc;
        }
        x->sel[x->nsel++] = c;
    }
    for (int i = 0; i < x->nsel; i++) {
        int w = (int)strlen(uf_dataset_category(x->ds, x->sel[i]));
        if (w > x->name_w) x->name_w = w < 40 ? w : 40;
    }
    return 0;
}

/* The command line and start time for the record. */
static bool record_command(ctx *x, int argc, char **argv)
{
    cli_buf cmd = {0};
    cli_buf_printf(&cmd, "uniformaly");
    for (int i = 0; i < argc; i++) cli_buf_printf(&cmd, " %s", argv[i]);
    x->command = cmd.s;
    time_t tt = time(NULL);
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(x->date, sizeof x->date, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (cmd.oom) cli_error("out of memory");
    return !cmd.oom;
}

/* Open the dataset, select, check the settings (usage errors before anything is written),
 * create the output folder with a fresh scores.csv, load the backbone. */
static int prepare(ctx *x)
{
    const char *verb = "eval";
    opts *o = x->o;
    uf_dataset_kind kind;
    if (uf_dataset_kind_from_name(o->dataset, &kind) != UF_OK)
        return cli_usage_error(verb, "--dataset: %s", uf_errmsg());
    if (uf_dataset_open(kind, o->root, &x->ds) != UF_OK) {
        cli_error("%s", uf_errmsg());
        return CLI_EXIT_RUNTIME;
    }
    uf_dataset_get_info(x->ds, &x->info);
    int rc = select_categories(x);
    if (rc) return rc;
    if (o->ep.multi_class && x->info.semantic && x->nsel == x->info.n_categories)
        return cli_usage_error(verb, "--multi-class on a semantic dataset needs --category: the "
                                     "selected classes are normal, the others anomalous");
    if (o->heatmaps && x->info.semantic && !o->c.quiet)
        cli_error("--heatmaps: none for a semantic dataset (no defect locations)");
    uf_detector_params dp;
    if (uf_eval_resolve(x->ds, x->sel, x->nsel, &o->ep, &dp, NULL, NULL) != UF_OK)
        return cli_usage_error(verb, "%s", uf_errmsg());
    o->ep.threads = o->c.threads;
    x->dir = strdup(o->out);
    if (!x->dir || !make_dirs(x->dir)) return CLI_EXIT_RUNTIME;
    if (o->save_models && !make_dirs(o->save_models)) return CLI_EXIT_RUNTIME;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/scores.csv", x->dir);
    const char *hdr = o->ep.shots ? "category,image,type,anomalous,score,repeat\n"
                                  : "category,image,type,anomalous,score\n";
    if (!write_atomic(path, hdr, strlen(hdr))) return CLI_EXIT_RUNTIME;
    double tl = now();
    if (!(x->bb = cli_load_backbone(&o->c))) return CLI_EXIT_RUNTIME;
    x->t_load = now() - tl;
    if (uf_detector_params_check(&dp, x->bb) != UF_OK) {
        cli_error("%s: %s", o->c.backbone, uf_errmsg());
        return CLI_EXIT_RUNTIME;
    }
    return 0;
}

int cmd_eval(int argc, char **argv)
{
    opts o;
    memset(&o, 0, sizeof o);
    cli_common_init(&o.c);
    o.ep = uf_eval_default_params();
    ctx x;
    memset(&x, 0, sizeof x);
    x.o = &o;
    x.t0 = now();
    x.status = "running";
    x.name_w = 8;
    uf_eval_result *res = NULL;
    int rc = parse(&o, argc, argv);
    if (rc) {
        rc = rc < 0 ? 0 : rc;
        goto done;
    }
    if (!record_command(&x, argc, argv)) { rc = CLI_EXIT_RUNTIME; goto done; }
    if ((rc = prepare(&x)) != 0) goto done;
    if (!o.c.quiet) {
        const char *what = x.info.semantic ? (x.nsel == 1 ? "class" : "classes")
                                           : (x.nsel == 1 ? "category" : "categories");
        fprintf(stderr, "eval: %s at %s: %d %s, %s%s\n", uf_dataset_kind_name(x.info.kind),
                x.info.root, x.nsel, what,
                o.zero_shot ? "zero-shot" : o.ep.multi_class ? "multi-class" : "one-class",
                o.ep.shots ? " few-shot" : "");
    }
    print_header(&x);
    o.ep.progress = o.c.quiet ? NULL : on_progress;
    o.ep.on_update = on_update;
    o.ep.on_maps = on_maps;
    o.ep.on_model = on_model;
    o.ep.user = &x;
    uf_status s = uf_eval_run(x.ds, x.bb, x.sel, x.nsel, &o.ep, &res);
    if (s != UF_OK) {
        if (!x.write_failed) cli_error("%s", uf_errmsg());
        rc = CLI_EXIT_RUNTIME;
    }
    x.r = res;
    if (!rc && res->n_finished > 1) print_row(&x, "mean", NULL, &res->mean);
    x.status = rc ? "failed" : "complete";
    if (res && res->rows && !write_results(&x) && !rc) rc = CLI_EXIT_RUNTIME;
    if (!rc && !o.c.quiet)
        fprintf(stderr, "eval: wrote %s/results.json (%.1f s)\n", x.dir, now() - x.t0);
done:
    uf_eval_result_free(res);
    uf_backbone_free(x.bb);
    uf_dataset_free(x.ds);
    free(x.sel);
    free(x.dir);
    free(x.command);
    cli_strings_free(&o.cats);
    return rc;
}
