/*
 * zeroshot.c - zero-shot scoring: a set of test images scored against each other, with no
 * training images (MuSc's mutual scoring, Li et al., ICLR 2024; see uniformaly.h).
 *
 * Why here and this way: a line that starts a new product has no good images yet, but
 * defects are rare, so the other test images serve as the normal references. The features
 * come from the detector's own extraction (a scorer on a model with a one-row dummy bank,
 * only used for uf_scorer_extract and uf__scorer_finish), and the distances from the
 * detector's kNN kernel (uf__knn, k = 1) with one reference image's foreground patches as
 * the bank at a time, so each (patch, other image) minimum is exact and independent of
 * the blocking. Memory: the features of the set, a packed copy of its foreground rows, and
 * the minima of one block of query images against every image ([block * Np][N] floats);
 * never the all-pairs distance matrix.
 */
#include "detector/detector.h"
#include "detector/kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct uf_zeroshot {
    uf_model *m;     /* settings; a one-row dummy bank that is never searched */
    uf_scorer *sc;   /* extraction and the per-image outputs                  */
    double ref_frac; /* fraction of the other images averaged                 */
    int threads;     /* uf_zeroshot_set_threads; 0: uf_get_threads() per call  */
    int Np, D;
    size_t n, cap;   /* images added, images allocated                        */
    float *feats;    /* [cap][Np][D]                                          */
    float *smooth;   /* [cap][Np]                                             */
    uint8_t *mask;   /* [cap][Np]                                             */
};

uf_status uf_zeroshot_new(const uf_backbone *bb, const uf_detector_params *p, double ref_frac,
                          uf_zeroshot **out)
{
    if (!out) return uf__err(UF_ERR_ARG, "uf_zeroshot_new: NULL output");
    *out = NULL;
    if (!bb) return uf__err(UF_ERR_ARG, "uf_zeroshot_new: NULL backbone");
    if (!(ref_frac > 0 && ref_frac <= 1))
        return uf__err(UF_ERR_ARG, "uf_zeroshot_new: ref_frac %g is not in (0, 1]", ref_frac);
    uf_detector_params dp = p ? *p : uf_detector_default_params();
    dp.knn = 1; /* the dummy bank has one row; zero-shot scoring uses k = 1 per image */
    uf_status s = uf_detector_params_check(&dp, bb);
    if (s != UF_OK) return s;
    if (dp.tile > 0) /* its per-patch references assume one row per grid patch */
        return uf__err(UF_ERR_ARG, "zero-shot scoring does not support tiling (tile %d)", dp.tile);
    uf_zeroshot *z = calloc(1, sizeof *z);
    float *bank = calloc((size_t)bb->w.dim, sizeof(float));
    if (!z || !bank) {
        free(z);
        free(bank);
        return uf__err(UF_ERR_NOMEM, "out of memory");
    }
    s = uf__model_new(bb, &dp, bank, 1, 0, 0, &z->m); /* takes bank */
    if (s == UF_OK) s = uf_scorer_new(z->m, &z->sc);
    if (s != UF_OK) {
        uf_zeroshot_free(z);
        return s;
    }
    z->ref_frac = ref_frac;
    uf_model_output_size(z->m, NULL, NULL, NULL, &z->D);
    int gh, gw;
    uf_model_output_size(z->m, &gh, &gw, NULL, NULL);
    z->Np = gh * gw;
    *out = z;
    return UF_OK;
}

void uf_zeroshot_free(uf_zeroshot *z)
{
    if (!z) return;
    uf_scorer_free(z->sc);
    uf_model_free(z->m);
    free(z->feats);
    free(z->smooth);
    free(z->mask);
    free(z);
}

void uf_zeroshot_set_threads(uf_zeroshot *z, int n)
{
    if (!z) return;
    z->threads = n > 0 ? n : 0;
    uf_scorer_set_threads(z->sc, z->threads);
}

size_t uf_zeroshot_count(const uf_zeroshot *z) { return z ? z->n : 0; }

const uf_model *uf_zeroshot_model(const uf_zeroshot *z) { return z ? z->m : NULL; }

/* Room for extra more images (growth by half). */
static uf_status reserve(uf_zeroshot *z, size_t extra)
{
    size_t need, cap, fb;
    const size_t Np = (size_t)z->Np, D = (size_t)z->D;
    if (!uf__add_ok(z->n, extra, &need) || need > ((size_t)1 << 31) / Np)
        return uf__err(UF_ERR_LIMIT, "zero-shot set beyond 2^31 patches");
    if (need <= z->cap) return UF_OK;
    cap = z->cap + z->cap / 2;
    if (cap < need) cap = need;
    if (cap < 16) cap = 16;
    if (!uf__mul_ok(cap * Np, D * sizeof(float), &fb))
        return uf__err(UF_ERR_LIMIT, "zero-shot set too large");
    float *f = realloc(z->feats, fb);
    if (f) z->feats = f;
    float *sm = f ? realloc(z->smooth, cap * Np * sizeof(float)) : NULL;
    if (sm) z->smooth = sm;
    uint8_t *mk = sm ? realloc(z->mask, cap * Np) : NULL;
    if (mk) z->mask = mk;
    if (!mk) return uf__err(UF_ERR_NOMEM, "out of memory for %zu images' features", cap);
    z->cap = cap;
    return UF_OK;
}

uf_status uf_zeroshot_add(uf_zeroshot *z, const uf_image *const *imgs, int n)
{
    if (!z || n < 0 || (n > 0 && !imgs)) return uf__err(UF_ERR_ARG, "uf_zeroshot_add: bad arguments");
    uf_status s = reserve(z, (size_t)n);
    if (s != UF_OK) return s;
    const size_t Np = (size_t)z->Np, D = (size_t)z->D;
    s = uf_scorer_extract(z->sc, imgs, n, z->feats + z->n * Np * D, z->smooth + z->n * Np,
                          z->mask + z->n * Np);
    if (s != UF_OK) return s;
    z->n += (size_t)n;
    return UF_OK;
}

uf_status uf__zeroshot_add_features(uf_zeroshot *z, const float *feats, const float *smooth,
                                   const uint8_t *mask, int n)
{
    if (!z || n < 0 || (n > 0 && (!feats || !smooth || !mask)))
        return uf__err(UF_ERR_ARG, "uf__zeroshot_add_features: bad arguments");
    uf_status s = reserve(z, (size_t)n);
    if (s != UF_OK) return s;
    const size_t Np = (size_t)z->Np, D = (size_t)z->D, rows = (size_t)n * Np;
    memcpy(z->feats + z->n * Np * D, feats, rows * D * sizeof(float));
    memcpy(z->smooth + z->n * Np, smooth, rows * sizeof(float));
    memcpy(z->mask + z->n * Np, mask, rows);
    z->n += (size_t)n;
    return UF_OK;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* The packed foreground rows of every image: ref [total][D], their norms, and where image
 * j's rows start (off [N + 1]). */
typedef struct refs {
    float *ref, *norm;
    size_t *off;
} refs;

static void refs_free(refs *r)
{
    free(r->ref);
    free(r->norm);
    free(r->off);
}

static uf_status refs_make(const uf_zeroshot *z, refs *r)
{
    const size_t Np = (size_t)z->Np, D = (size_t)z->D, N = z->n;
    size_t total = 0;
    for (size_t i = 0; i < N * Np; i++) total += z->mask[i] != 0;
    r->ref = malloc((total ? total : 1) * D * sizeof(float));
    r->norm = malloc((total ? total : 1) * sizeof(float));
    r->off = malloc((N + 1) * sizeof(size_t));
    if (!r->ref || !r->norm || !r->off) return uf__err(UF_ERR_NOMEM, "out of memory");
    size_t k = 0;
    for (size_t j = 0; j < N; j++) {
        r->off[j] = k;
        for (size_t p = 0; p < Np; p++)
            if (z->mask[j * Np + p])
                memcpy(r->ref + k++ * D, z->feats + (j * Np + p) * D, D * sizeof(float));
    }
    r->off[N] = k;
    return total ? uf__knn_bank_norms(r->ref, total, (int)D, r->norm) : UF_OK;
}

/* Patch scores of the query rows Q [nq][D] (row q belongs to image img[q]) into d [nq];
 * V [nq][N] is scratch for the per-image minima. */
static uf_status score_block(const uf_zeroshot *z, const refs *r, const float *Q,
                             const size_t *img, size_t nq, float *V, float *d)
{
    const size_t N = z->n;
    const int nth = z->threads > 0 ? z->threads : uf_get_threads();
    for (size_t j = 0; j < N; j++) {
        size_t nb = r->off[j + 1] - r->off[j];
        if (nb == 0) {
            for (size_t q = 0; q < nq; q++) V[q * N + j] = INFINITY;
            continue;
        }
        uf_status s = uf__knn_ex(Q, nq, r->ref + r->off[j] * (size_t)z->D, r->norm + r->off[j],
                                 nb, z->D, 1, d, NULL, NULL, nth);
        if (s != UF_OK) return s;
        for (size_t q = 0; q < nq; q++) V[q * N + j] = img[q] == j ? INFINITY : d[q];
    }
    /* M (other images with a foreground patch) depends on whether the query's own image
     * has one; K from it, the K smallest minima averaged in double, in sorted order */
    size_t with_fg = 0;
    for (size_t j = 0; j < N; j++) with_fg += r->off[j + 1] > r->off[j];
#pragma omp parallel for schedule(static) num_threads(nth)
    for (size_t q = 0; q < nq; q++) {
        float *v = V + q * N;
        size_t M = with_fg - (r->off[img[q] + 1] > r->off[img[q]]);
        size_t K = (size_t)floor(z->ref_frac * (double)M);
        if (K < 1) K = 1;
        qsort(v, N, sizeof *v, cmp_float);
        double acc = 0;
        for (size_t k = 0; k < K; k++) acc += v[k];
        d[q] = (float)(acc / (double)K);
    }
    return UF_OK;
}

uf_status uf_zeroshot_score(uf_zeroshot *z, size_t first, size_t count, int block,
                            uf_score *out)
{
    if (!z || block < 0 || (count > 0 && !out) || first > z->n || count > z->n - first)
        return uf__err(UF_ERR_ARG, "uf_zeroshot_score: bad arguments");
    const size_t N = z->n, Np = (size_t)z->Np, D = (size_t)z->D;
    if (N < 2) return uf__err(UF_ERR_ARG, "zero-shot scoring needs at least 2 images, got %zu", N);
    refs r = {0};
    uf_status s = refs_make(z, &r);
    size_t with_fg = 0;
    for (size_t j = 0; s == UF_OK && j < N; j++) with_fg += r.off[j + 1] > r.off[j];
    if (s == UF_OK && with_fg < 2)
        s = uf__err(UF_ERR_ARG, "zero-shot scoring needs at least 2 images with a foreground "
                    "patch, got %zu (lower bpm_lambda or turn BPM off)", with_fg);
    size_t B = (size_t)block;
    if (B == 0) { /* 64 MB of minima */
        B = ((size_t)64 << 20) / (Np * N * sizeof(float));
        if (B < 1) B = 1;
    }
    if (B > count) B = count ? count : 1;
    size_t vcount;
    if (s == UF_OK && !uf__mul_ok(B * Np, N, &vcount))
        s = uf__err(UF_ERR_LIMIT, "zero-shot block too large");
    float *Q = NULL, *V = NULL, *tmp = NULL, *d = NULL;
    size_t *img = NULL;
    if (s == UF_OK) {
        Q = malloc(B * Np * D * sizeof(float));
        V = malloc(vcount * sizeof(float));
        tmp = malloc(B * Np * sizeof(float));
        d = malloc(B * Np * sizeof(float)); /* [B][Np] patch scores, 0 where not searched */
        img = malloc(B * Np * sizeof(size_t));
        if (!Q || !V || !tmp || !d || !img) s = uf__err(UF_ERR_NOMEM, "out of memory");
    }
    const uf_detector_params *p = &z->m->params;
    const size_t end = first + count;
    for (size_t q0 = first; s == UF_OK && q0 < end; q0 += B) {
        size_t nimg = end - q0 < B ? end - q0 : B;
        /* as uf_score_images: every patch when an output needs all distances, else only
         * the foreground ones (background patches score 0 in the image score) */
        bool all = p->bpm && p->soft_mask;
        for (size_t i = q0; i < q0 + nimg; i++)
            all |= out[i - first].patch_scores || out[i - first].pixel_map;
        size_t nq = 0;
        for (size_t i = q0; i < q0 + nimg; i++)
            for (size_t pp = 0; pp < Np; pp++)
                if (all || z->mask[i * Np + pp]) {
                    memcpy(Q + nq * D, z->feats + (i * Np + pp) * D, D * sizeof(float));
                    img[nq++] = i;
                }
        s = nq ? score_block(z, &r, Q, img, nq, V, tmp) : UF_OK;
        for (size_t i = q0, k = 0; s == UF_OK && i < q0 + nimg; i++) /* scatter */
            for (size_t pp = 0; pp < Np; pp++)
                d[(i - q0) * Np + pp] = all || z->mask[i * Np + pp] ? tmp[k++] : 0.0f;
        for (size_t i = q0; s == UF_OK && i < q0 + nimg; i++)
            s = uf__scorer_finish(z->sc, d + (i - q0) * Np, z->feats + i * Np * D,
                                  z->smooth + i * Np, z->mask + i * Np, &out[i - first]);
    }
    free(Q);
    free(V);
    free(tmp);
    free(d);
    free(img);
    refs_free(&r);
    return s;
}
