/*
 * patchmaps.c - operations on per-patch maps: Back Patch Masking, the top-K image score,
 * bilinear upsampling and scipy-exact Gaussian smoothing.
 *
 * These turn the detector's per-patch numbers into the two outputs UniFormaly reports: an
 * image score (mean of the top-K patch scores, background masked out by BPM) and a pixel
 * anomaly map (patch scores upsampled to the crop and smoothed with sigma 4). Each one
 * replicates the exact semantics of the PyTorch / scipy call the reference uses, so maps
 * and scores agree with it to float rounding (see the golden tests in tests/test_kernels.c).
 */
#include "detector/kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* n = a * b as size_t for two positive ints, or 0 on overflow. */
static size_t area(int a, int b)
{
    size_t r;
    if (a < 1 || b < 1 || !uf__mul_ok((size_t)a, (size_t)b, &r)) return 0;
    return r;
}

/* ---- Back Patch Masking ------------------------------------------------------------- */

uf_status uf__bpm(const float *attn, int gh, int gw, int k, float lambda, float *smooth_out,
                  uint8_t *mask_out)
{
    if (!attn || !smooth_out) return uf__err(UF_ERR_ARG, "bpm: NULL map");
    size_t n = area(gh, gw);
    if (n == 0) return uf__err(UF_ERR_ARG, "bpm: bad map size %d x %d", gh, gw);
    if (k < 1 || k % 2 == 0 || k > 1 << 15)
        return uf__err(UF_ERR_ARG, "bpm: pooling kernel %d must be odd and positive", k);
    if (!isfinite(lambda)) return uf__err(UF_ERR_NONFINITE, "bpm: threshold is not finite");
    for (size_t i = 0; i < n; i++)
        if (!isfinite(attn[i]))
            return uf__err(UF_ERR_NONFINITE, "bpm: attention value %zu is not finite", i);

    /* AvgPool2d(k, 1, k/2, count_include_pad=True): the window sum over in-range cells,
     * divided by k*k whatever the overlap. Sums in double, the mean rounded to float. */
    const int r = k / 2;
    const double inv = 1.0 / ((double)k * (double)k);
    float mx = -INFINITY;
    for (int y = 0; y < gh; y++) {
        int y0 = y - r < 0 ? 0 : y - r, y1 = y + r >= gh ? gh - 1 : y + r;
        for (int x = 0; x < gw; x++) {
            int x0 = x - r < 0 ? 0 : x - r, x1 = x + r >= gw ? gw - 1 : x + r;
            double s = 0;
            for (int yy = y0; yy <= y1; yy++)
                for (int xx = x0; xx <= x1; xx++) s += attn[(size_t)yy * gw + xx];
            float v = (float)(s * inv);
            smooth_out[(size_t)y * gw + x] = v;
            if (v > mx) mx = v;
        }
    }

    /* Degenerate map (no positive value): keep every patch rather than divide by 0. */
    if (!(mx > 0)) {
        for (size_t i = 0; i < n; i++) smooth_out[i] = 1.0f;
        if (mask_out) memset(mask_out, 1, n);
        return UF_OK;
    }
    /* pooled / pooled.max(), then the strict comparison `> thres` done in float32. */
    for (size_t i = 0; i < n; i++) {
        smooth_out[i] = smooth_out[i] / mx;
        if (mask_out) mask_out[i] = smooth_out[i] > lambda;
    }
    return UF_OK;
}

/* ---- top-K mean image score --------------------------------------------------------- */

int uf__topk_count(int n, double frac)
{
    if (n < 1 || !isfinite(frac) || !(frac > 0)) return 0;
    double want = nearbyint(frac * (double)n); /* default rounding mode: half to even */
    if (want >= (double)n) return n;
    return want < 1 ? 1 : (int)want;
}

/* Order for the top-K: larger value first, equal values by lower index first. */
typedef struct {
    float v;
    int i;
} vi_pair;

/* 1 when a ranks strictly after b. */
static int vi_after(vi_pair a, vi_pair b) { return a.v < b.v || (a.v == b.v && a.i > b.i); }

/* Restore the min-heap (root = the entry ranking last) below position p. */
static void vi_sift_down(vi_pair *h, int K, int p)
{
    for (;;) {
        int c = 2 * p + 1;
        if (c >= K) return;
        if (c + 1 < K && vi_after(h[c + 1], h[c])) c++;
        if (!vi_after(h[c], h[p])) return;
        vi_pair t = h[c];
        h[c] = h[p];
        h[p] = t;
        p = c;
    }
}

uf_status uf__topk_mean(const float *s, int n, double frac, float *mean_out, int *idx_out,
                        int *K_out)
{
    if (!s || !mean_out) return uf__err(UF_ERR_ARG, "topk_mean: NULL argument");
    int K = uf__topk_count(n, frac);
    if (K < 1) return uf__err(UF_ERR_ARG, "topk_mean: bad size %d or fraction %g", n, frac);
    for (int i = 0; i < n; i++)
        if (!isfinite(s[i]))
            return uf__err(UF_ERR_NONFINITE, "topk_mean: score %d is not finite", i);

    /* Keep the K best in a heap whose root is the worst kept: O(n log K). */
    vi_pair *h = malloc((size_t)K * sizeof *h); /* [K] */
    if (!h) return uf__err(UF_ERR_NOMEM, "topk_mean: out of memory (K = %d)", K);
    for (int i = 0; i < K; i++) h[i] = (vi_pair){s[i], i};
    for (int p = K / 2 - 1; p >= 0; p--) vi_sift_down(h, K, p);
    for (int i = K; i < n; i++) {
        vi_pair c = {s[i], i};
        if (vi_after(h[0], c)) {
            h[0] = c;
            vi_sift_down(h, K, 0);
        }
    }
    /* Pop worst-first into the tail: h ends up best-first. */
    double sum = 0;
    for (int m = K; m > 0; m--) {
        vi_pair worst = h[0];
        h[0] = h[m - 1];
        vi_sift_down(h, m - 1, 0);
        h[m - 1] = worst;
        sum += worst.v;
    }
    if (idx_out)
        for (int i = 0; i < K; i++) idx_out[i] = h[i].i;
    *mean_out = (float)(sum / K);
    if (K_out) *K_out = K;
    free(h);
    return UF_OK;
}

/* ---- bilinear upsampling ------------------------------------------------------------ */

/* PyTorch's source index and weights along one axis (align_corners=False, no scale
 * factor): scale = in / out in float; src = max(0, scale * (o + 0.5) - 0.5) evaluated in
 * double and rounded to float (area_pixel_compute_source_index's arithmetic). */
static void linear_axis(int in, int out, int o, int *i0, int *i1, float *w0, float *w1)
{
    float scale = (float)in / (float)out;
    float src = (float)((double)scale * ((double)o + 0.5) - 0.5);
    if (src < 0) src = 0;
    int i = (int)src;
    if (i > in - 1) i = in - 1;
    *i0 = i;
    *i1 = i + (i < in - 1 ? 1 : 0);
    *w1 = src - (float)i;
    *w0 = 1.0f - *w1;
}

uf_status uf__upsample_bilinear(const float *src, int sh, int sw, float *dst, int dh, int dw)
{
    if (!src || !dst) return uf__err(UF_ERR_ARG, "upsample: NULL buffer");
    if (area(sh, sw) == 0 || area(dh, dw) == 0)
        return uf__err(UF_ERR_ARG, "upsample: bad sizes %d x %d -> %d x %d", sh, sw, dh, dw);
    /* the columns' sources and weights, once for all rows (the same values each time) */
    int *xi = malloc((size_t)dw * 2 * sizeof *xi);
    float *xw = malloc((size_t)dw * 2 * sizeof *xw);
    if (!xi || !xw) {
        free(xi);
        free(xw);
        return uf__err(UF_ERR_NOMEM, "upsample: out of memory");
    }
    for (int x = 0; x < dw; x++)
        linear_axis(sw, dw, x, &xi[2 * x], &xi[2 * x + 1], &xw[2 * x], &xw[2 * x + 1]);
    for (int y = 0; y < dh; y++) {
        int y0, y1;
        float wy0, wy1;
        linear_axis(sh, dh, y, &y0, &y1, &wy0, &wy1);
        const float *r0 = src + (size_t)y0 * sw, *r1 = src + (size_t)y1 * sw; /* [sw] */
        float *o = dst + (size_t)y * dw;                                      /* [dw] */
        for (int x = 0; x < dw; x++) {
            const int x0 = xi[2 * x], x1 = xi[2 * x + 1];
            const float wx0 = xw[2 * x], wx1 = xw[2 * x + 1];
            o[x] = wy0 * (wx0 * r0[x0] + wx1 * r0[x1]) + wy1 * (wx0 * r1[x0] + wx1 * r1[x1]);
        }
    }
    free(xi);
    free(xw);
    return UF_OK;
}

/* ---- Gaussian filter (scipy.ndimage.gaussian_filter) -------------------------------- */

/* numpy's pairwise summation (umath loops, PW_BLOCKSIZE 128), so the kernel's
 * normalisation divides by the same sum numpy computes. */
static double np_pairwise_sum(const double *a, size_t n)
{
    if (n < 8) {
        double res = 0.;
        for (size_t i = 0; i < n; i++) res += a[i];
        return res;
    }
    if (n <= 128) {
        double r[8];
        for (int j = 0; j < 8; j++) r[j] = a[j];
        size_t i;
        for (i = 8; i < n - (n % 8); i += 8)
            for (int j = 0; j < 8; j++) r[j] += a[i + j];
        double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) res += a[i];
        return res;
    }
    size_t n2 = n / 2;
    n2 -= n2 % 8;
    return np_pairwise_sum(a, n2) + np_pairwise_sum(a + n2, n - n2);
}

/* Index into [0, n) of position i under 'reflect' (half-sample symmetric, period 2n). */
static int reflect_index(long i, int n)
{
    long p = 2L * n;
    long m = i % p;
    if (m < 0) m += p;
    return (int)(m >= n ? p - 1 - m : m);
}

/* Correlate one line: out[t] = line[t] w0 + sum_{j=r..1} (line[t-j] + line[t+j]) w_j,
 * scipy's symmetric-kernel loop (NI_Correlate1D) on a double line extended by r on both
 * sides. ext [n + 2r] holds the extended line, w [r + 1] the half kernel. */
static void correlate_line(const double *ext, int n, int r, const double *w, double *out)
{
    for (int t = 0; t < n; t++) {
        const double *c = ext + r + t;
        double acc = c[0] * w[0];
        for (int j = r; j >= 1; j--) acc += (c[-j] + c[j]) * w[j];
        out[t] = acc;
    }
}

uf_status uf__gaussian_filter(float *img, int H, int W, double sigma, float *tmp)
{
    if (!img) return uf__err(UF_ERR_ARG, "gaussian_filter: NULL image");
    size_t n = area(H, W);
    if (n == 0) return uf__err(UF_ERR_ARG, "gaussian_filter: bad size %d x %d", H, W);
    if (!isfinite(sigma) || sigma < 0)
        return uf__err(UF_ERR_ARG, "gaussian_filter: bad sigma %g", sigma);
    double rr = 4.0 * sigma + 0.5; /* truncate = 4.0 */
    if (rr > (double)(1 << 20))
        return uf__err(UF_ERR_LIMIT, "gaussian_filter: sigma %g is too large", sigma);
    const int r = (int)rr;
    if (r == 0) return UF_OK; /* kernel [1]: identity */

    /* Half kernel w [r+1]: phi(x) = exp(-0.5 / sigma^2 * x^2), normalised over -r..r. */
    int L = H > W ? H : W;
    double *full = malloc((size_t)(2 * r + 1) * sizeof *full);   /* [2r+1] */
    double *w = malloc((size_t)(r + 1) * sizeof *w);             /* [r+1] */
    double *ext = malloc((size_t)(L + 2 * r) * sizeof *ext);     /* [L+2r] */
    double *line = malloc((size_t)L * sizeof *line);             /* [L] */
    float *own = tmp ? NULL : malloc(n * sizeof *own);           /* [H][W] */
    if (!full || !w || !ext || !line || (!tmp && !own)) {
        free(full), free(w), free(ext), free(line), free(own);
        return uf__err(UF_ERR_NOMEM, "gaussian_filter: out of memory (%d x %d)", H, W);
    }
    float *t = tmp ? tmp : own; /* [H][W] result of the axis-0 pass */
    const double c = -0.5 / (sigma * sigma);
    for (int x = -r; x <= r; x++) full[x + r] = exp(c * (double)((long)x * x));
    double sum = np_pairwise_sum(full, (size_t)(2 * r + 1));
    for (int j = 0; j <= r; j++) w[j] = full[r + j] / sum;

    /* Axis 0 (down the columns), rounded to float32 into t, as scipy's intermediate. */
    for (int x = 0; x < W; x++) {
        for (int i = -r; i < H + r; i++) ext[i + r] = img[(size_t)reflect_index(i, H) * W + x];
        correlate_line(ext, H, r, w, line);
        for (int y = 0; y < H; y++) t[(size_t)y * W + x] = (float)line[y];
    }
    /* Axis 1 (along the rows), back into img. */
    for (int y = 0; y < H; y++) {
        const float *row = t + (size_t)y * W; /* [W] */
        for (int i = -r; i < W + r; i++) ext[i + r] = row[reflect_index(i, W)];
        correlate_line(ext, W, r, w, line);
        for (int x = 0; x < W; x++) img[(size_t)y * W + x] = (float)line[x];
    }
    free(full), free(w), free(ext), free(line), free(own);
    return UF_OK;
}
