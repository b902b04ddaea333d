/*
 * update.c - adding normal images to a fitted model (uf_model_update, `uniformaly update`)
 * without fitting again: a line that starts making a new normal variant should not need the
 * old training images. The old bank is kept whole and the new foreground patches join it by
 * the rule the fit used: the greedy k-center search continued from the old bank (the old
 * rows count as centres already chosen), in the fit's 128-d random projection.
 */
#include "detector/detector.h"
#include "detector/kernels.h"
#include "kernels/kern.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Pick k of the new points Q [n][d] greedily: m[i] = min squared distance of Q[i] to the
 * old points O [n_old][d] and to the picks so far; each step picks argmax m (first index
 * among ties). out[k] indices into Q, in pick order. Distances: the level's dist2, as the
 * fit's search; nth threads. */
static void greedy_continue(const float *O, size_t n_old, const float *Q, size_t n, int d,
                            size_t k, float *m, size_t *out, int nth)
{
    float (*const pdist2)(const float *, const float *, int) = uf__kern_get()->dist2;
    #pragma omp parallel for schedule(static) num_threads(nth)
    for (size_t i = 0; i < n; i++) {
        float best = INFINITY;
        for (size_t j = 0; j < n_old; j++) {
            float v = pdist2(Q + i * (size_t)d, O + j * (size_t)d, d);
            if (v < best) best = v;
        }
        m[i] = best;
    }
    for (size_t t = 0; t < k; t++) {
        size_t c = 0;
        for (size_t i = 1; i < n; i++)
            if (m[i] > m[c]) c = i;
        out[t] = c;
        #pragma omp parallel for schedule(static) num_threads(nth)
        for (size_t i = 0; i < n; i++) {
            float v = pdist2(Q + i * (size_t)d, Q + c * (size_t)d, d);
            if (v < m[i]) m[i] = v;
        }
    }
}

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

/* The indices of the new patches to add (sorted, distinct), *k of them. */
static uf_status pick_new(const uf_model *m, const float *X, size_t n, size_t *idx, size_t *k,
                          int nth)
{
    const uf_detector_params *p = &m->params;
    const int D = m->dim, d = UF__CORESET_PROJ_DIM;
    if (nth <= 0) nth = uf_get_threads();
    if (*k >= n) {
        for (size_t i = 0; i < n; i++) idx[i] = i;
        *k = n;
        return UF_OK;
    }
    if (p->sampler == UF_SAMPLER_RANDOM) {
        size_t got = 0;
        uf_status s = uf__coreset_random(n, p->coreset, p->seed ^ (uint64_t)m->n_bank_full, idx, &got);
        *k = got;
        if (s == UF_OK) qsort(idx, got, sizeof *idx, cmp_size);
        return s;
    }
    float *PO = malloc(m->n_bank * (size_t)d * sizeof *PO);
    float *PQ = malloc(n * (size_t)d * sizeof *PQ);
    float *md = malloc(n * sizeof *md);
    uf_status s = UF_OK;
    if (!PO || !PQ || !md) {
        s = uf__err(UF_ERR_NOMEM, "update: out of memory for %zu new patches", n);
    } else if ((s = uf__coreset_project(m->bank, m->n_bank, D, p->seed, nth, PO)) == UF_OK &&
               (s = uf__coreset_project(X, n, D, p->seed, nth, PQ)) == UF_OK) { /* the fit's */
        greedy_continue(PO, m->n_bank, PQ, n, d, *k, md, idx, nth);
        qsort(idx, *k, sizeof *idx, cmp_size);
        size_t u = 0; /* distinct (a pick repeats once every m is 0) */
        for (size_t i = 0; i < *k; i++)
            if (u == 0 || idx[i] != idx[u - 1]) idx[u++] = idx[i];
        *k = u;
    }
    free(PO), free(PQ), free(md);
    return s;
}

/* Copy m's threshold, calibration and backbone identity into u. */
static uf_status copy_identity(const uf_model *m, uf_model *u)
{
    u->threshold = m->threshold;
    u->calib = m->calib;
    u->embedded = m->embedded;
    snprintf(u->backbone_sha256, sizeof u->backbone_sha256, "%s", m->backbone_sha256);
    char *bp = strdup(m->backbone_path ? m->backbone_path : "");
    char *es = m->embedded_src ? strdup(m->embedded_src) : NULL;
    if (!bp || (m->embedded_src && !es)) {
        free(bp), free(es);
        return uf__err(UF_ERR_NOMEM, "out of memory");
    }
    free(u->backbone_path);
    u->backbone_path = bp;
    free(u->embedded_src);
    u->embedded_src = es;
    u->embedded_off = m->embedded_off;
    u->embedded_len = m->embedded_len;
    return UF_OK;
}

uf_status uf_model_update(const uf_model *m, uf_fitter *f, uf_model **out)
{
    if (out) *out = NULL;
    if (!m || !f || !out) return uf__err(UF_ERR_ARG, "uf_model_update: NULL argument");
    float *X = NULL;
    size_t n = 0, n_img = 0;
    const uf_detector_params *fp;
    const uf_backbone *fbb;
    int nth;
    uf__fitter_take(f, &X, &n, &n_img, &fp, &fbb, &nth);
    uf_status s = UF_OK;
    const uf_detector_params *p = &m->params;
    if (fbb->w.dim != m->dim || fp->layer_first != p->layer_first ||
        fp->layer_last != p->layer_last || fp->bpm != p->bpm || fp->bpm_kernel != p->bpm_kernel ||
        fp->bpm_lambda != p->bpm_lambda || fp->rollout != p->rollout || fp->cosine != p->cosine ||
        fp->tile != p->tile || fp->tile_overlap != p->tile_overlap ||
        memcmp(&fp->pre, &p->pre, sizeof p->pre) != 0)
        s = uf__err(UF_ERR_ARG, "uf_model_update: the fitter's features are not the model's "
                                "(make it with the model's backbone and settings)");
    else if (n_img == 0)
        s = uf__err(UF_ERR_ARG, "uf_model_update: no image was added");
    else if (n == 0)
        s = uf__err(UF_ERR_ARG, "every patch of the %zu new images was background", n_img);
    size_t k = s == UF_OK ? uf__coreset_count(n, p->coreset) : 0, *idx = NULL, rows, bytes;
    float *bank = NULL;
    if (s == UF_OK && (!uf__add_ok(m->n_bank, k, &rows) || rows > ((size_t)1 << 31) ||
                       !uf__mul_ok(rows, (size_t)m->dim * sizeof(float), &bytes)))
        s = uf__err(UF_ERR_LIMIT, "update: memory bank beyond 2^31 patches");
    if (s == UF_OK && (!(idx = malloc((k ? k : 1) * sizeof *idx)) || !(bank = malloc(bytes))))
        s = uf__err(UF_ERR_NOMEM, "update: out of memory");
    if (s == UF_OK) s = pick_new(m, X, n, idx, &k, nth);
    if (s == UF_OK) {
        const size_t D = (size_t)m->dim;
        memcpy(bank, m->bank, m->n_bank * D * sizeof(float));
        for (size_t i = 0; i < k; i++)
            memcpy(bank + (m->n_bank + i) * D, X + idx[i] * D, D * sizeof(float));
        uf_model *u = NULL;
        s = uf__model_new(m->bb, p, bank, m->n_bank + k, m->n_bank_full + n, m->n_train + n_img, &u);
        bank = NULL; /* taken over */
        if (s == UF_OK && (s = copy_identity(m, u)) != UF_OK) uf_model_free(u);
        else if (s == UF_OK) *out = u;
    }
    free(bank);
    free(idx);
    free(X);
    return s;
}
