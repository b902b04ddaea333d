/*
 * pcamask.c - AnomalyDINO's zero-shot foreground mask (uf_detector_params.pca_mask): the
 * patches of an image projected on the first principal component of that image's own
 * patch features, thresholded, with the sign chosen so the centre of the grid is kept and
 * the mask then dilated and closed. An alternative to Back Patch Masking that needs no
 * attention map: DINOv2's first component separates object from background.
 *
 * Follows DINOv2Wrapper.compute_background_mask of github.com/dammsi/AnomalyDINO
 * (src/backbones.py): PCA(n_components=1).fit_transform(features) > threshold (10); if the
 * central crop [int(0.2 gh):int(0.8 gh), int(0.2 gw):int(0.8 gw)] keeps <= 35% of its
 * patches, -projection > threshold instead; then cv2.dilate and cv2.morphologyEx(CLOSE),
 * both with a 3x3 kernel of ones (pixels outside the grid never count, OpenCV's default
 * border for morphology). The component is computed exactly (the covariance's leading
 * eigenvector, by repeated squaring and power iteration in double) where their randomized
 * solver approximates it; its sign follows scikit-learn's svd_flip on the projections:
 * the projection of largest magnitude is positive.
 */
#include "detector/kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* 3x3 dilation (want = 1) or erosion (want = 0) of m [gh][gw] into o; outside the grid
 * does not count. */
static void morph3(const uint8_t *m, int gh, int gw, int want, uint8_t *o)
{
    for (int y = 0; y < gh; y++)
        for (int x = 0; x < gw; x++) {
            int hit = 0;
            for (int dy = -1; dy <= 1 && !hit; dy++)
                for (int dx = -1; dx <= 1 && !hit; dx++) {
                    int yy = y + dy, xx = x + dx;
                    if (yy < 0 || yy >= gh || xx < 0 || xx >= gw) continue;
                    hit = (m[yy * gw + xx] != 0) == want;
                }
            o[y * gw + x] = (uint8_t)(hit ? want : !want);
        }
}

/* Normalise v [D] to unit length; returns the old length. */
static double unit(double *v, int D)
{
    double s = 0;
    for (int i = 0; i < D; i++) s += v[i] * v[i];
    s = sqrt(s);
    if (s > 0)
        for (int i = 0; i < D; i++) v[i] /= s;
    return s;
}

uf_status uf__pca_first(const float *F, int gh, int gw, int stride, int D, double *proj)
{
    if (!F || !proj || gh < 1 || gw < 1 || stride < gw || D < 1 || D > 65536)
        return uf__err(UF_ERR_ARG, "pca mask: bad arguments");
    const size_t n = (size_t)gh * (size_t)gw, DD = (size_t)D * (size_t)D;
    double *mu = calloc((size_t)D, sizeof *mu);   /* [D] */
    double *C = calloc(DD, sizeof *C);            /* [D][D] covariance (unnormalised) */
    double *T = malloc(DD * sizeof *T);           /* [D][D] powers of C, */
    double *B = malloc(DD * sizeof *B);           /* [D][D] alternating with T        */
    double *v = malloc((size_t)D * sizeof *v), *w = malloc((size_t)D * sizeof *w);
    double *xc = malloc((size_t)D * sizeof *xc);
    uf_status st = UF_OK;
    if (!mu || !C || !T || !B || !v || !w || !xc) {
        st = uf__err(UF_ERR_NOMEM, "pca mask: out of memory");
        goto done;
    }
#define ROW(r) (F + ((size_t)((r) / (size_t)gw) * (size_t)stride + (r) % (size_t)gw) * (size_t)D)
    for (size_t r = 0; r < n; r++)
        for (int j = 0; j < D; j++) mu[j] += ROW(r)[j];
    for (int j = 0; j < D; j++) mu[j] /= (double)n;
    for (size_t r = 0; r < n; r++) {
        const float *x = ROW(r);
        for (int j = 0; j < D; j++) xc[j] = x[j] - mu[j];
        for (int i = 0; i < D; i++) {
            const double xi = xc[i];
            double *Ci = C + (size_t)i * D;
            for (int j = i; j < D; j++) Ci[j] += xi * xc[j];
        }
    }
    for (int i = 0; i < D; i++)
        for (int j = 0; j < i; j++) C[(size_t)i * D + j] = C[(size_t)j * D + i];
    /* start: the covariance's row of largest norm (never orthogonal to the leading
     * eigenvector unless C is 0); then power iteration on C^64 (six squarings, each
     * rescaled by its largest entry), which shrinks the other components by
     * (lambda2 / lambda1)^64 per step, and a final polish on C itself */
    memcpy(T, C, DD * sizeof *T);
    double *A = T, *Z = B;
    for (int sq = 0; sq < 6; sq++) {
        double mx = 0;
        for (size_t k = 0; k < DD; k++) mx = fabs(A[k]) > mx ? fabs(A[k]) : mx;
        if (!(mx > 0)) break;
        for (size_t k = 0; k < DD; k++) A[k] /= mx;
        for (int i = 0; i < D; i++) { /* B = A A (A symmetric: rows times rows) */
            const double *Ai = A + (size_t)i * D;
            for (int j = i; j < D; j++) {
                const double *Aj = A + (size_t)j * D;
                double s = 0;
                for (int k = 0; k < D; k++) s += Ai[k] * Aj[k];
                Z[(size_t)i * D + j] = Z[(size_t)j * D + i] = s;
            }
        }
        double *t = A;
        A = Z;
        Z = t;
    }
    int best = 0;
    double bn = -1;
    for (int i = 0; i < D; i++) {
        double s = 0;
        for (int j = 0; j < D; j++) s += C[(size_t)i * D + j] * C[(size_t)i * D + j];
        if (s > bn) bn = s, best = i;
    }
    memcpy(v, C + (size_t)best * D, (size_t)D * sizeof *v);
    if (unit(v, D) > 0) {
        for (int pass = 0; pass < 2; pass++) { /* pass 0: on C^64; pass 1: on C */
            const double *M = pass ? C : A;
            for (int it = 0; it < (pass ? 50 : 200); it++) {
                for (int i = 0; i < D; i++) {
                    double s = 0;
                    for (int j = 0; j < D; j++) s += M[(size_t)i * D + j] * v[j];
                    w[i] = s;
                }
                if (!(unit(w, D) > 0)) break;
                double diff = 0;
                for (int i = 0; i < D; i++) diff += fabs(w[i] - v[i]);
                memcpy(v, w, (size_t)D * sizeof *v);
                if (diff < 1e-15 * D) break;
            }
        }
    } else {
        memset(v, 0, (size_t)D * sizeof *v); /* every patch the same: projections 0 */
    }
    /* projections, sign: the largest magnitude positive (first one on ties) */
    double big = -1, sgn = 1;
    for (size_t r = 0; r < n; r++) {
        const float *x = ROW(r);
        double s = 0;
        for (int j = 0; j < D; j++) s += (x[j] - mu[j]) * v[j];
        proj[r] = s;
        if (fabs(s) > big) big = fabs(s), sgn = s < 0 ? -1 : 1;
    }
    for (size_t r = 0; r < n; r++) proj[r] *= sgn;
#undef ROW
done:
    free(mu);
    free(C);
    free(T);
    free(B);
    free(v);
    free(w);
    free(xc);
    return st;
}

uf_status uf__pca_mask(const float *F, int gh, int gw, int stride, int D, float threshold,
                       uint8_t *mask)
{
    if (!mask || !isfinite(threshold)) return uf__err(UF_ERR_ARG, "pca mask: bad arguments");
    const size_t n = (size_t)gh * (size_t)gw;
    double *proj = malloc((n ? n : 1) * sizeof *proj);
    uint8_t *m = malloc(n ? n : 1), *t = malloc(n ? n : 1);
    uf_status st = proj && m && t ? UF_OK : uf__err(UF_ERR_NOMEM, "pca mask: out of memory");
    if (st == UF_OK) st = uf__pca_first(F, gh, gw, stride, D, proj);
    if (st == UF_OK) {
        for (size_t r = 0; r < n; r++) m[r] = proj[r] > threshold;
        const int y0 = (int)(gh * 0.2), y1 = (int)(gh * (1 - 0.2));
        const int x0 = (int)(gw * 0.2), x1 = (int)(gw * (1 - 0.2));
        size_t kept = 0, size = 0;
        for (int y = y0; y < y1; y++)
            for (int x = x0; x < x1; x++) kept += m[(size_t)y * gw + x], size++;
        if ((double)kept <= (double)size * 0.35)
            for (size_t r = 0; r < n; r++) m[r] = -proj[r] > threshold;
        morph3(m, gh, gw, 1, t); /* dilate */
        morph3(t, gh, gw, 1, m); /* close = dilate, then erode */
        morph3(m, gh, gw, 0, t);
        for (int y = 0; y < gh; y++) memcpy(mask + (size_t)y * stride, t + (size_t)y * gw, (size_t)gw);
    }
    free(proj);
    free(m);
    free(t);
    return st;
}
