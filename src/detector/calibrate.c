/*
 * calibrate.c - turning normal scores into a decision: the threshold at a target
 * false-positive rate and the statistics of normal image and patch scores that a model
 * keeps (uf_calibration). Raw scores are squared feature distances whose scale differs per
 * model and category, so a user cannot pick a threshold by eye; these statistics give the
 * threshold, the normalised score (score / threshold) and the overlays' colour scale.
 */
#include "detector/detector.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* A sorted copy of v[n] (malloc'd), or NULL when out of memory or a value is not finite. */
static float *sorted_copy(const float *v, size_t n)
{
    float *s = malloc(n * sizeof *s);
    if (!s) return NULL;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(v[i])) {
            free(s);
            return NULL;
        }
        s[i] = v[i];
    }
    qsort(s, n, sizeof *s, cmp_float);
    return s;
}

/* Quantile q of sorted s[n] by linear interpolation (numpy's default). */
static float quantile(const float *s, size_t n, double q)
{
    double pos = q * (double)(n - 1);
    size_t i = (size_t)pos;
    if (i + 1 >= n) return s[n - 1];
    double f = pos - (double)i;
    return (float)((double)s[i] + f * ((double)s[i + 1] - (double)s[i]));
}

double uf_threshold_at_fpr(const float *normal_scores, size_t n, double fpr, double *achieved)
{
    if (achieved) *achieved = NAN;
    if (!normal_scores || n == 0 || !(fpr >= 0 && fpr < 1)) return NAN;
    float *s = sorted_copy(normal_scores, n);
    if (!s) return NAN;
    size_t k = (size_t)floor(fpr * (double)n + 1e-9); /* false positives allowed */
    if (k > n - 1) k = n - 1;
    double t = s[n - 1 - k];
    size_t above = 0;
    for (size_t i = 0; i < n; i++) above += s[i] > t;
    if (achieved) *achieved = (double)above / (double)n;
    free(s);
    return t;
}

uf_status uf_calibration_compute(const float *image_scores, size_t n, const float *patch_scores,
                                 size_t n_patch, uf_calibration *out)
{
    if (!out) return uf__err(UF_ERR_ARG, "uf_calibration_compute: NULL output");
    memset(out, 0, sizeof *out);
    if (!image_scores || !patch_scores || n == 0 || n_patch == 0)
        return uf__err(UF_ERR_ARG, "uf_calibration_compute: no scores");
    float *si = sorted_copy(image_scores, n), *sp = si ? sorted_copy(patch_scores, n_patch) : NULL;
    if (!si || !sp) {
        bool nomem = true;
        for (size_t i = 0; i < n; i++) nomem = nomem && isfinite(image_scores[i]);
        for (size_t i = 0; i < n_patch; i++) nomem = nomem && isfinite(patch_scores[i]);
        free(si);
        free(sp);
        return nomem ? uf__err(UF_ERR_NOMEM, "uf_calibration_compute: out of memory")
                     : uf__err(UF_ERR_ARG, "uf_calibration_compute: a score is not finite");
    }
    double sum = 0, sq = 0;
    for (size_t i = 0; i < n; i++) sum += si[i];
    const double mean = sum / (double)n;
    for (size_t i = 0; i < n; i++) sq += ((double)si[i] - mean) * ((double)si[i] - mean);
    out->n_images = n;
    out->fpr_target = out->fpr = NAN;
    out->image_min = si[0];
    out->image_max = si[n - 1];
    out->image_mean = (float)mean;
    out->image_std = (float)sqrt(sq / (double)n);
    out->image_p50 = quantile(si, n, 0.5);
    out->image_p95 = quantile(si, n, 0.95);
    out->patch_min = sp[0];
    out->patch_p50 = quantile(sp, n_patch, 0.5);
    out->patch_p99 = quantile(sp, n_patch, 0.99);
    out->patch_max = sp[n_patch - 1];
    free(si);
    free(sp);
    return UF_OK;
}

void uf_model_set_calibration(uf_model *m, const uf_calibration *c)
{
    if (!m) return;
    if (c && c->n_images > 0) m->calib = *c;
    else memset(&m->calib, 0, sizeof m->calib);
}

int uf_model_get_calibration(const uf_model *m, uf_calibration *c)
{
    if (!c) return m && m->calib.n_images > 0;
    memset(c, 0, sizeof *c);
    if (!m || m->calib.n_images == 0) return 0;
    *c = m->calib;
    return 1;
}
