/*
 * figures.c - the figures of one scored test set (image, pixel, clustering) and their
 * aggregation over repeats and rows, for uf_eval_run (protocol.c). Separate from the run's
 * control flow so each metric's inputs and rules (which images, which K, what is left NaN
 * and why) read in one place.
 */
#include "eval/protocol.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* uf_eval_figures is averaged as an array of doubles */
#define N_FIGS (sizeof(uf_eval_figures) / sizeof(double))
_Static_assert(sizeof(uf_eval_figures) % sizeof(double) == 0, "figures must be doubles only");

double uf__now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

void *uf__alloc3(size_t a, size_t b, size_t c, int zero)
{
    size_t n;
    if (!uf__mul_ok(a, b, &n) || !uf__mul_ok(n, c, &n)) return NULL;
    return zero ? calloc(n ? n : 1, 1) : malloc(n ? n : 1);
}

void uf__figs_nan(uf_eval_figures *f)
{
    double *d = (double *)f;
    for (size_t i = 0; i < N_FIGS; i++) d[i] = NAN;
}

void uf__figs_mean_std(const uf_eval_figures *const *figs, int n, uf_eval_figures *mean,
                       uf_eval_figures *sd)
{
    double *m = (double *)mean, *s = (double *)sd;
    for (size_t k = 0; k < N_FIGS; k++) {
        double sum = 0, s2 = 0;
        int cnt = 0;
        for (int i = 0; i < n; i++) {
            double v = ((const double *)figs[i])[k];
            if (isfinite(v)) { sum += v; cnt++; }
        }
        m[k] = cnt ? sum / cnt : NAN;
        for (int i = 0; i < n; i++) {
            double v = ((const double *)figs[i])[k];
            if (isfinite(v)) s2 += (v - m[k]) * (v - m[k]);
        }
        s[k] = cnt ? sqrt(s2 / cnt) : NAN;
    }
}

void uf__row_note(uf_eval_row *row, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    size_t old = row->notes ? strlen(row->notes) : 0, add = strlen(line);
    char *n = realloc(row->notes, old + add + 2);
    if (!n) return;
    memcpy(n + old, line, add);
    n[old + add] = '\n';
    n[old + add + 1] = '\0';
    row->notes = n;
}

uf_status uf__image_figs(const float *scores, const uint8_t *labels, const size_t *idx,
                         size_t n, uf_eval_figures *f)
{
    const float *s = scores;
    const uint8_t *l = labels;
    float *sb = NULL;   /* [n] the subset's scores */
    uint8_t *lb = NULL; /* [n] the subset's labels */
    if (idx) {
        sb = uf__alloc3(n, sizeof(float), 1, 0);
        lb = uf__alloc3(n, 1, 1, 0);
        if (!sb || !lb) {
            free(sb);
            free(lb);
            return uf__err(UF_ERR_NOMEM, "out of memory for the scores of %zu images", n);
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
    if (pos > 0 && pos < n) f->image_auroc = uf_auroc(s, l, n);
    if (pos > 0) f->f1_max = uf_f1_max_threshold(s, l, n, &f->f1_threshold);
    free(sb);
    free(lb);
    return UF_OK;
}

/* Copy the w x h window at (x0, y0) of the [S][S] maps and masks of image i into the
 * packed buffers at *off, pointing maps[i] / gts[i] there. */
static void take_window(const uf__evalrun *x, const uf__featset *fs, const uf__scored *sd,
                        int i, float *mbuf, uint8_t *gbuf, size_t *off, const float **maps,
                        const uint8_t **gts, int *hh, int *ww)
{
    size_t S = (size_t)x->S, SS = S * S;
    const int *w4 = fs->win + 4 * (size_t)i;
    const float *m = sd->maps + (size_t)i * SS;
    const uint8_t *g = fs->gt + (size_t)i * SS;
    maps[i] = mbuf + *off;
    gts[i] = gbuf + *off;
    hh[i] = w4[3];
    ww[i] = w4[2];
    for (int y = 0; y < w4[3]; y++) {
        size_t src = (size_t)(y + w4[1]) * S + (size_t)w4[0];
        memcpy(mbuf + *off, m + src, (size_t)w4[2] * sizeof(float));
        memcpy(gbuf + *off, g + src, (size_t)w4[2]);
        *off += (size_t)w4[2];
    }
}

uf_status uf__pixel_figs(const uf__evalrun *x, const uf__featset *fs, const uf__scored *sd,
                         uf_eval_figures *f)
{
    size_t SS = (size_t)x->S * (size_t)x->S;
    int n = (int)fs->n;
    const float **maps = uf__alloc3((size_t)n, sizeof *maps, 1, 1);  /* [n] -> [h][w] */
    const uint8_t **gts = uf__alloc3((size_t)n, sizeof *gts, 1, 1);  /* [n] -> [h][w] */
    int *hh = uf__alloc3((size_t)n, sizeof(int), 1, 0);              /* [n] heights   */
    int *ww = uf__alloc3((size_t)n, sizeof(int), 1, 0);              /* [n] widths    */
    /* whole-image geometry: the images' own rectangles, packed (at most n * S * S) */
    float *mbuf = fs->win ? uf__alloc3((size_t)n, SS, sizeof(float), 0) : NULL;
    uint8_t *gbuf = fs->win ? uf__alloc3((size_t)n, SS, 1, 0) : NULL;
    uf_status s = UF_ERR_NOMEM;
    if (!maps || !gts || !hh || !ww || (fs->win && (!mbuf || !gbuf))) {
        uf__err(s, "out of memory for the pixel metrics of %d images", n);
        goto done;
    }
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        if (fs->win) {
            take_window(x, fs, sd, i, mbuf, gbuf, &off, maps, gts, hh, ww);
            continue;
        }
        maps[i] = sd->maps + (size_t)i * SS;
        gts[i] = fs->gt + (size_t)i * SS;
        hh[i] = ww[i] = x->S;
    }
    uf_pixel_result pr;
    s = uf_pixel_metrics(maps, gts, hh, ww, n, x->p->max_fpr, 0, &pr);
    if (s) {
        uf__err_prefix(s, "pixel metrics");
        goto done;
    }
    f->pixel_auroc = pr.auroc;
    f->aupro = pr.aupro;
    f->pixel_f1_max = pr.f1_max;
    f->pixel_f1_threshold = pr.f1_threshold;
done:
    free(maps);
    free(gts);
    free(hh);
    free(ww);
    free(mbuf);
    free(gbuf);
    return s;
}

/* The clustered feature of image i (of fs, scored as sd) for variant v into xi[D]. */
static void cluster_feature(const uf__evalrun *x, const uf__featset *fs, const uf__scored *sd,
                            size_t i, int v, float *xi)
{
    size_t D = (size_t)x->D, Np = x->rows;
    const float *pf = fs->feats + i * Np * D; /* [rows][D] */
    if (v == UF_EVAL_FEATURE_TOPK) {
        memcpy(xi, sd->feat + i * D, D * sizeof(float));
    } else if (v == UF_EVAL_FEATURE_ALL_PATCHES) {
        /* tiled: the tiles' patches (smooth >= 0), not the unused slots nor the header */
        const float *sm = x->rows != x->Np ? fs->smooth + i * Np : NULL;
        size_t cnt = 0;
        for (size_t d = 0; d < D; d++) xi[d] = 0;
        for (size_t p = 0; p < Np; p++) {
            if (sm && sm[p] < 0) continue;
            cnt++;
            for (size_t d = 0; d < D; d++) xi[d] += pf[p * D + d];
        }
        for (size_t d = 0; d < D; d++) xi[d] /= (float)(cnt ? cnt : 1);
    } else if (sd->maxf) {
        memcpy(xi, sd->maxf + i * D, D * sizeof(float));
    } else {
        memcpy(xi, pf + (size_t)sd->maxp[i] * D, D * sizeof(float));
    }
}

uf_status uf__cluster_figs(const uf__evalrun *x, const uf__featset *fs, const uf__scored *sd,
                           const size_t *idx, size_t n, uf_eval_row *row, uf_eval_figures *f)
{
    static const char *const vname[UF_EVAL_N_FEATURES] = {"top-K feature", "all patches",
                                                          "max patch"};
    const uf_eval_params *p = x->p;
    size_t D = (size_t)x->D;
    int *truth = uf__alloc3(n, sizeof(int), 1, 0); /* [n] type ids    */
    int *pred = uf__alloc3(n, sizeof(int), 1, 0);  /* [n] cluster ids */
    float *X = uf__alloc3(n, D, sizeof(float), 0); /* [n][D]          */
    uf_status s = UF_OK;
    row->cluster_n = n;
    if (!truth || !pred || !X) {
        s = uf__err(UF_ERR_NOMEM, "%s: out of memory for clustering %zu images", row->name, n);
        goto done;
    }
    for (size_t i = 0; i < n; i++) truth[i] = fs->items[idx[i]].type_id;
    int k = p->cluster;
    if (k < 0) { /* the number of distinct types */
        k = 0;
        for (size_t i = 0; i < n; i++) {
            bool seen = false;
            for (size_t j = 0; j < i && !seen; j++) seen = truth[j] == truth[i];
            k += !seen;
        }
    }
    row->cluster_k = k;
    if (p->cluster < 0 && k < 2) { /* one type: any clustering is trivially right */
        if (row->n_done == 0)
            uf__row_note(row, "clustering skipped: the clustered images are of %d type%s", k,
                         k == 1 ? "" : "s");
        goto done;
    }
    if (n < 1 || (size_t)k > n) {
        if (row->n_done == 0)
            uf__row_note(row, "clustering skipped: %zu images for %d clusters", n, k);
        goto done;
    }
    for (int v = 0; v < UF_EVAL_N_FEATURES; v++) {
        for (size_t i = 0; i < n; i++) cluster_feature(x, fs, sd, idx[i], v, X + i * D);
        if (uf_kmeans(X, n, (int)D, k, p->cluster_restarts, p->detector.seed,
                      p->cluster_max_iter, pred, NULL) != UF_OK) {
            if (row->n_done == 0)
                uf__row_note(row, "clustering (%s) skipped: %s", vname[v], uf_errmsg());
            continue;
        }
        f->cluster[v].nmi = uf_nmi(truth, pred, n);
        f->cluster[v].ari = uf_ari(truth, pred, n);
        f->cluster[v].f1 = uf_cluster_f1(truth, pred, n);
    }
done:
    free(truth);
    free(pred);
    free(X);
    return s;
}
