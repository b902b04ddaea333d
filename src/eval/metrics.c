/*
 * metrics.c - detection metrics that must agree with the standard implementations:
 * uf_auroc (scikit-learn's roc_auc_score), uf_f1_max (best F1 over precision_recall_curve)
 * and uf_pixel_metrics (pixel AUROC, MVTec AD's AU-PRO and pixel F1-max over a whole test
 * set in bounded memory; its design is described above its code, further down).
 *
 * uf_auroc. The detector is judged by image AUROC (one score per image) and pixel AUROC
 * (one score per pixel: 4-50 million values for an MVTec category), so this must be exact,
 * fast and light on memory.
 *
 * Method: the AUC equals the Mann-Whitney statistic
 *     AUC = (#{(p, q): s_p > s_q} + 1/2 #{(p, q): s_p == s_q}) / (P * N)
 * over positive p and negative q, which is what roc_auc_score's trapezoidal area
 * computes (ties between a positive and a negative count half; ties within a class do
 * not matter). We
 *   1. turn every score into a 32-bit key whose unsigned order is the float order
 *      (-0.0 folded into +0.0 so the two compare equal, as they do in numpy), storing the
 *      positives' keys in front and the negatives' keys behind: labels need no storage;
 *   2. sort each part with an LSD radix sort (three passes of 11/11/10 bits; a pass whose
 *      digit is the same for every key is skipped, which is common because scores share
 *      their sign and exponent), O(n) time;
 *   3. merge the two sorted runs, and for every run of equal positive keys (count c) add
 *      c * (2 * negatives_below + negatives_equal) to an integer sum U2 = 2 * U.
 * U2 <= 2 P N is exact in uint64 while n <= 2^32 (2 P N <= n^2 / 2); beyond that the
 * sum is kept in long double. AUC = U2 / (2 P N), divided in long double.
 *
 * Memory: 4 bytes per score for the keys plus 4 bytes per score of the larger class for
 * the radix scratch (at most 8 n bytes). 4.2 M scores take ~40 ms on one core (~140 ms
 * when the buffers' pages are touched for the first time); sklearn needs ~2.6 s.
 *
 * Failures return NaN (the function has no status) and leave a message for uf_errmsg():
 * NULL input, an empty class, a NaN score, out of memory.
 */
#include "core/internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Digits of the LSD radix sort: bits [0, 11), [11, 22), [22, 32). */
#define RADIX_PASSES 3
static const int radix_shift[RADIX_PASSES] = {0, 11, 22};
static const uint32_t radix_mask[RADIX_PASSES] = {0x7FF, 0x7FF, 0x3FF};
#define RADIX_BUCKETS 2048

/* Order-preserving key of a non-NaN float: unsigned comparison of keys equals float
 * comparison of values, and -0.0 and +0.0 get the same key. */
static inline uint32_t float_key(float f)
{
    uint32_t u;
    if (f == 0.0f) f = 0.0f; /* fold -0.0 into +0.0 */
    memcpy(&u, &f, sizeof u);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/* Sort keys[n] ascending using tmp[n] as scratch; returns the buffer that holds the
 * result (keys or tmp). */
static uint32_t *radix_sort(uint32_t *keys, uint32_t *tmp, size_t n)
{
    if (n < 2) return keys;
    /* hist[p][b]: keys whose digit p is b, then the start of bucket b in pass p */
    size_t(*hist)[RADIX_BUCKETS] = calloc(RADIX_PASSES, sizeof *hist);
    if (!hist) return NULL;
    for (size_t i = 0; i < n; i++) {
        uint32_t k = keys[i];
        for (int p = 0; p < RADIX_PASSES; p++)
            hist[p][(k >> radix_shift[p]) & radix_mask[p]]++;
    }
    uint32_t *src = keys, *dst = tmp;
    for (int p = 0; p < RADIX_PASSES; p++) {
        /* skip a pass whose digit is the same for every key: it would not move anything */
        if (hist[p][(src[0] >> radix_shift[p]) & radix_mask[p]] == n) continue;
        size_t start = 0;
        for (int b = 0; b < RADIX_BUCKETS; b++) {
            size_t c = hist[p][b];
            hist[p][b] = start;
            start += c;
        }
        const int sh = radix_shift[p];
        const uint32_t mk = radix_mask[p];
        size_t *pos = hist[p];
        for (size_t i = 0; i < n; i++) {
            uint32_t k = src[i];
            dst[pos[(k >> sh) & mk]++] = k;
        }
        uint32_t *t = src;
        src = dst;
        dst = t;
    }
    free(hist);
    return src;
}

double uf_auroc(const float *scores, const uint8_t *labels, size_t n)
{
    if (!scores || !labels) {
        uf__err(UF_ERR_ARG, "uf_auroc: NULL scores or labels");
        return NAN;
    }
    /* class sizes, and refuse NaN before allocating anything */
    size_t n_pos = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(scores[i])) {
            uf__err(UF_ERR_NONFINITE, "uf_auroc: score %zu is NaN", i);
            return NAN;
        }
        n_pos += labels[i] != 0;
    }
    size_t n_neg = n - n_pos;
    if (n_pos == 0 || n_neg == 0) {
        uf__err(UF_ERR_ARG, "uf_auroc: only one class (%zu positive, %zu negative of %zu)",
                n_pos, n_neg, n);
        return NAN;
    }

    /* keys[0 .. n_pos) positives, keys[n_pos .. n) negatives; tmp: radix scratch */
    size_t bytes_keys, bytes_tmp;
    size_t n_big = n_pos > n_neg ? n_pos : n_neg;
    if (!uf__mul_ok(n, sizeof(uint32_t), &bytes_keys) ||
        !uf__mul_ok(n_big, sizeof(uint32_t), &bytes_tmp)) {
        uf__err(UF_ERR_LIMIT, "uf_auroc: %zu scores is too many", n);
        return NAN;
    }
    uint32_t *keys = malloc(bytes_keys); /* [n]     */
    uint32_t *tmp = malloc(bytes_tmp);   /* [n_big] */
    if (!keys || !tmp) {
        free(keys);
        free(tmp);
        uf__err(UF_ERR_NOMEM, "uf_auroc: cannot allocate %zu bytes for %zu scores",
                bytes_keys + bytes_tmp, n);
        return NAN;
    }
    size_t ip = 0, in = n_pos;
    for (size_t i = 0; i < n; i++) {
        uint32_t k = float_key(scores[i]);
        if (labels[i]) keys[ip++] = k;
        else keys[in++] = k;
    }

    /* Sort the positives; if the result lands in tmp, copy it back, since tmp is
     * reused for the negatives. */
    uint32_t *pos = radix_sort(keys, tmp, n_pos); /* [n_pos] sorted */
    if (pos == tmp) {
        memcpy(keys, tmp, n_pos * sizeof *keys);
        pos = keys;
    }
    uint32_t *neg = pos ? radix_sort(keys + n_pos, tmp, n_neg) : NULL; /* [n_neg] sorted */
    if (!pos || !neg) {
        free(keys);
        free(tmp);
        uf__err(UF_ERR_NOMEM, "uf_auroc: cannot allocate the sort histograms");
        return NAN;
    }

    /* Merge: for each run of c equal positive keys v, with `below` negatives < v and
     * `eq` negatives == v, the pairs count c * (below + eq / 2); summed doubled. */
    const int exact = (uint64_t)n <= ((uint64_t)1 << 32);
    uint64_t u2 = 0;      /* 2U when exact                */
    long double u2l = 0;  /* 2U otherwise                 */
    size_t j = 0;         /* negatives consumed (= below) */
    for (size_t i = 0; i < n_pos;) {
        uint32_t v = pos[i];
        size_t c = 1;
        while (i + c < n_pos && pos[i + c] == v) c++;
        i += c;
        while (j < n_neg && neg[j] < v) j++;
        size_t below = j;
        while (j < n_neg && neg[j] == v) j++;
        size_t eq = j - below;
        if (exact) u2 += (uint64_t)c * (2 * (uint64_t)below + eq);
        else u2l += (long double)c * (2.0L * (long double)below + (long double)eq);
    }
    free(keys);
    free(tmp);
    if (exact) u2l = (long double)u2;
    return (double)(u2l / (2.0L * (long double)n_pos * (long double)n_neg));
}

/* ==================================================================================== */
/* F1-max of image scores                                                               */
/* ==================================================================================== */

/*
 * The best F1 over the thresholds of precision_recall_curve: at a threshold t (each
 * distinct score), TP and FP count the positives and negatives scoring >= t, and
 * F1 = 2 P R / (P + R) = 2 TP / (TP + FP + n_pos). Computed exactly by sorting
 * (key, label) pairs packed into one uint64 and sweeping the distinct keys downwards.
 */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Decode an order key back to its float (the inverse of float_key). */
static inline float key_float(uint32_t k)
{
    uint32_t u = (k & 0x80000000u) ? (k & 0x7FFFFFFFu) : ~k;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

double uf_f1_max(const float *scores, const uint8_t *labels, size_t n)
{
    return uf_f1_max_threshold(scores, labels, n, NULL);
}

double uf_f1_max_threshold(const float *scores, const uint8_t *labels, size_t n,
                           double *threshold)
{
    if (threshold) *threshold = NAN;
    if (!scores || !labels) {
        uf__err(UF_ERR_ARG, "uf_f1_max: NULL scores or labels");
        return NAN;
    }
    size_t n_pos = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(scores[i])) {
            uf__err(UF_ERR_NONFINITE, "uf_f1_max: score %zu is NaN", i);
            return NAN;
        }
        n_pos += labels[i] != 0;
    }
    if (n_pos == 0) {
        uf__err(UF_ERR_ARG, "uf_f1_max: no positive among %zu samples", n);
        return NAN;
    }
    size_t bytes;
    uint64_t *v = NULL; /* [n] key << 1 | label, then sorted ascending */
    if (!uf__mul_ok(n, sizeof *v, &bytes) || !(v = malloc(bytes))) {
        uf__err(UF_ERR_NOMEM, "uf_f1_max: cannot allocate %zu scores", n);
        return NAN;
    }
    for (size_t i = 0; i < n; i++)
        v[i] = (uint64_t)float_key(scores[i]) << 1 | (labels[i] != 0);
    qsort(v, n, sizeof *v, cmp_u64);
    double best = 0, thr = NAN;
    size_t tp = 0, fp = 0;
    for (size_t i = n; i > 0;) {
        /* the group of equal keys v[j .. i) */
        size_t j = i;
        uint64_t key = v[i - 1] >> 1;
        while (j > 0 && (v[j - 1] >> 1) == key) {
            j--;
            if (v[j] & 1) tp++;
            else fp++;
        }
        i = j;
        double f1 = 2.0 * (double)tp / ((double)tp + (double)fp + (double)n_pos);
        if (f1 > best) {
            best = f1;
            thr = (double)key_float((uint32_t)key);
        }
    }
    free(v);
    if (threshold) *threshold = thr;
    return best;
}

/* ==================================================================================== */
/* Pixel metrics: AUROC, AUPRO, F1-max over every pixel of a test set                   */
/* ==================================================================================== */

/*
 * Every pixel metric is a function of one sweep over the distinct scores from high to
 * low, given per distinct score s: neg(s) normal pixels, pos(s) anomalous pixels and
 * w(s) = sum over its anomalous pixels of 1 / |region of the pixel|. Sorting every
 * pixel would copy every score; instead the scores are bucketed by the order key:
 *
 *   pass 1  level-1 histogram on the key's top 16 bits (sign, exponent, 7 mantissa
 *           bits: 65536 buckets covering every float, so no range is needed and an
 *           outlier cannot squeeze the rest into a few bins), counting normal and
 *           anomalous pixels per bucket; refuses NaN.
 *   plan    a bucket with one class only ("pure") gets one slot: merging its scores
 *           cannot change any metric (see below). A bucket holding both classes
 *           ("mixed") is resolved on the low 16 key bits, either
 *             sparse: its pixels are stored as (key, region size) and sorted (exact), or
 *             dense:  2^bits slots on the top `bits` of the low 16 key bits (exact at
 *                     bits = 16, quantised below).
 *           All mixed buckets are sparse when 8 bytes per mixed pixel fit max_bytes
 *           (except buckets of >= 2^17 pixels, for which 2^16 dense slots are exact and
 *           cheaper); otherwise each gets 2^ceil(log2(max_bytes / 32 * its share of the
 *           mixed pixels)) slots (capped at 2^16), and stays sparse where that is
 *           cheaper. Memory: sparse costs 8 bytes per pixel, a slot 16 bytes, so the
 *           level 2 stays within max_bytes plus 16 bytes per mixed bucket; plus 2 MiB of
 *           buckets, 16 bytes per pure bucket and a radix scratch of <= 2^17 entries.
 *   pass 2  connected components of each mask (8-connectivity), then every pixel goes
 *           to its slot (counts, weight) or its bucket's sparse list.
 *   sweep   buckets from the top, slots/sorted keys from the top, accumulating TP, FP
 *           and the PRO sum: the AUROC as an integer Mann-Whitney sum, the AUPRO by the
 *           trapezoid rule up to max_fpr, the F1 at every threshold.
 *
 * Why pure slots are exact: within a run of normal-only scores the PRO is constant, so
 * the trapezoid over the run (and its interpolation at max_fpr) is the same with or
 * without the intermediate points, no positive/negative pair is tied, and F1 only
 * falls as normal pixels are added (its max is at the run's start, kept). A run of
 * anomalous-only scores adds no FPR width and F1 rises through it (max at its end,
 * kept: the bucket's smallest key, recorded in pass 1, is the reported threshold).
 * Error therefore comes only from quantised mixed slots; the sweep bounds it:
 *   AUROC: each cross pair tied in a slot is off by at most 1/2: sum pos*neg / (2 P N);
 *   AUPRO: the exact curve through a slot stays in the box spanned by its end points:
 *          sum dFPR * dPRO / max_fpr;
 *   F1:    inside a slot TP <= TP_end and FP >= FP_start, so the missed maximum is at
 *          most max 2 TP_end / (TP_end + FP_start + P).
 */

#define PM_BUCKETS 65536
#define PM_DEFAULT_BYTES ((size_t)64 << 20)
#define PM_DENSE_MIN ((uint32_t)131072) /* a mixed bucket this large is cheaper dense at 16 bits */

enum { PM_EMPTY = 0, PM_PURE, PM_DENSE, PM_SPARSE };

/* One slot of aggregated pixels. */
typedef struct pm_slot {
    uint32_t neg, pos; /* normal / anomalous pixels          */
    double w;          /* sum of 1 / region size (anomalous) */
} pm_slot;

/* Per level-1 bucket (index = key >> 16). */
typedef struct pm_bucket {
    uint32_t neg, pos; /* pass-1 counts                                         */
    uint32_t fill;     /* sparse: entries written so far in pass 2              */
    uint32_t kmin;     /* smallest key seen in pass 1 (a real score)            */
    uint8_t mode;      /* PM_EMPTY / PURE / DENSE / SPARSE                      */
    uint8_t bits;      /* dense: slots = 2^bits on the top bits of the low 16   */
    size_t off;        /* first slot (PURE, DENSE) or first entry (SPARSE)      */
} pm_bucket;

/* Sweep state. */
typedef struct pm_sweep {
    uint64_t P, N;            /* anomalous / normal pixels in total          */
    double R;                 /* regions in total                            */
    double max_fpr;
    uint64_t tp, fp;          /* pixels at or above the current threshold    */
    double pro;               /* sum of weights at or above the threshold    */
    double x0, y0;            /* previous (FPR, PRO) point                   */
    int done;                 /* the AUPRO integral has reached max_fpr      */
    double area;              /* AUPRO integral so far                       */
    uint64_t auc2;            /* 2U: Mann-Whitney sum, doubled (exact)       */
    double f1, f1_thr;        /* best F1 and its threshold                   */
    double tie_pairs;         /* sum pos * neg over quantised slots          */
    double pro_err;           /* sum dFPR * dPRO over quantised slots        */
    double f1_hi;             /* upper bound of the F1 missed in those slots */
} pm_sweep;

/* Add one group of pixels whose scores are treated as equal, with lowest key `lo`;
 * `quantised` says the group may merge distinct scores of both classes. */
static void pm_add(pm_sweep *s, uint32_t neg, uint32_t pos, double w, uint32_t lo,
                   int quantised)
{
    if (neg == 0 && pos == 0) return;
    uint64_t fp0 = s->fp;
    s->auc2 += (uint64_t)neg * (2 * s->tp + pos);
    s->tp += pos;
    s->fp += neg;
    s->pro += w;
    if (s->P > 0 && s->tp > 0) {
        double f1 = 2.0 * (double)s->tp / ((double)s->tp + (double)s->fp + (double)s->P);
        if (f1 > s->f1) {
            s->f1 = f1;
            float t = key_float(lo);
            s->f1_thr = isnan(t) ? -INFINITY : (double)t;
        }
        if (quantised && neg && pos) {
            double hi = 2.0 * (double)s->tp / ((double)s->tp + (double)fp0 + (double)s->P);
            if (hi > s->f1_hi) s->f1_hi = hi;
        }
    }
    if (quantised && neg && pos) s->tie_pairs += (double)neg * (double)pos;
    if (s->N > 0 && s->R > 0 && !s->done) {
        double x1 = (double)s->fp / (double)s->N;
        double y1 = s->pro / s->R;
        if (y1 > 1.0) y1 = 1.0; /* rounding of the weight sum, as the reference clips */
        if (x1 <= s->max_fpr) {
            s->area += 0.5 * (x1 - s->x0) * (s->y0 + y1);
        } else {
            /* the curve crosses max_fpr in this step: interpolate, as MVTec's trapezoid */
            double yi = s->y0 + (y1 - s->y0) * (s->max_fpr - s->x0) / (x1 - s->x0);
            s->area += 0.5 * (s->max_fpr - s->x0) * (s->y0 + yi);
            s->done = 1;
        }
        if (quantised && neg && pos) s->pro_err += (x1 - s->x0) * (y1 - s->y0);
        s->x0 = x1;
        s->y0 = y1;
    }
}

/* Label the 8-connected components of mask[h][w] != 0 (scipy.ndimage.label with a 3x3
 * structure of ones, as MVTec's evaluation does): lab[h*w] receives 0 for background and
 * region ids 1..R, size[r] the pixel count of region r (size[R + 1 ..] untouched),
 * stack[h*w] is scratch. Returns R. h*w < 2^32. */
static uint32_t pm_label(const uint8_t *mask, int h, int w, uint32_t *lab, uint32_t *size,
                         uint32_t *stack)
{
    size_t hw = (size_t)h * (size_t)w;
    memset(lab, 0, hw * sizeof *lab);
    uint32_t R = 0;
    for (size_t p = 0; p < hw; p++) {
        if (!mask[p] || lab[p]) continue;
        /* flood-fill a new region; a pixel is labelled when pushed, so the stack never
         * holds more than h*w entries */
        R++;
        uint32_t count = 0;
        size_t top = 0;
        lab[p] = R;
        stack[top++] = (uint32_t)p;
        while (top) {
            uint32_t q = stack[--top];
            count++;
            int y = (int)(q / (uint32_t)w), x = (int)(q % (uint32_t)w);
            for (int dy = -1; dy <= 1; dy++) {
                int ny = y + dy;
                if (ny < 0 || ny >= h) continue;
                for (int dx = -1; dx <= 1; dx++) {
                    int nx = x + dx;
                    if (nx < 0 || nx >= w) continue;
                    size_t r = (size_t)ny * (size_t)w + (size_t)nx;
                    if (mask[r] && !lab[r]) {
                        lab[r] = R;
                        stack[top++] = (uint32_t)r;
                    }
                }
            }
        }
        size[R] = count;
    }
    return R;
}

/* Sort a[n] (entries key << 32 | payload whose keys share their top 16 bits) by key:
 * insertion sort when short, else two 8-bit LSD radix passes on the key's low 16 bits
 * through tmp[n]. Entries with equal keys may end in any order. */
static void pm_sort_slice(uint64_t *a, uint64_t *tmp, size_t n)
{
    if (n < 48) {
        for (size_t i = 1; i < n; i++) {
            uint64_t v = a[i];
            size_t j = i;
            while (j > 0 && (a[j - 1] >> 32) > (v >> 32)) {
                a[j] = a[j - 1];
                j--;
            }
            a[j] = v;
        }
        return;
    }
    size_t cnt[2][256]; /* digit histograms, then bucket starts */
    memset(cnt, 0, sizeof cnt);
    for (size_t i = 0; i < n; i++) {
        cnt[0][(a[i] >> 32) & 255]++;
        cnt[1][(a[i] >> 40) & 255]++;
    }
    for (int p = 0; p < 2; p++) {
        size_t start = 0;
        for (int b = 0; b < 256; b++) {
            size_t c = cnt[p][b];
            cnt[p][b] = start;
            start += c;
        }
    }
    for (size_t i = 0; i < n; i++) tmp[cnt[0][(a[i] >> 32) & 255]++] = a[i];
    for (size_t i = 0; i < n; i++) a[cnt[1][(tmp[i] >> 40) & 255]++] = tmp[i];
}

/* Check the arguments of uf_pixel_metrics; *total receives the pixels of all images (below
 * 2^32, so every count fits uint32) and *max_hw those of the largest masked image. */
static uf_status pm_check(const float *const *maps, const uint8_t *const *masks,
                          const int *heights, const int *widths, int n_images, double max_fpr,
                          size_t *total, size_t *max_hw)
{
    if (!maps || !heights || !widths)
        return uf__err(UF_ERR_ARG, "uf_pixel_metrics: NULL maps, heights or widths");
    if (n_images <= 0)
        return uf__err(UF_ERR_ARG, "uf_pixel_metrics: %d images", n_images);
    if (!(max_fpr > 0 && max_fpr <= 1))
        return uf__err(UF_ERR_ARG, "uf_pixel_metrics: max_fpr %g is not in (0, 1]", max_fpr);
    *total = *max_hw = 0;
    for (int i = 0; i < n_images; i++) {
        size_t hw;
        if (!maps[i]) return uf__err(UF_ERR_ARG, "uf_pixel_metrics: map %d is NULL", i);
        if (heights[i] <= 0 || widths[i] <= 0)
            return uf__err(UF_ERR_ARG, "uf_pixel_metrics: map %d has size %d x %d", i,
                           heights[i], widths[i]);
        if (!uf__mul_ok((size_t)heights[i], (size_t)widths[i], &hw) ||
            !uf__add_ok(*total, hw, total) || (uint64_t)*total >= ((uint64_t)1 << 32))
            return uf__err(UF_ERR_LIMIT, "uf_pixel_metrics: 2^32 pixels or more (at map %d)",
                           i);
        if (masks && masks[i] && hw > *max_hw) *max_hw = hw;
    }
    return UF_OK;
}

/* Pass 1: level-1 counts per class and each bucket's smallest key, into bk[PM_BUCKETS]
 * (zeroed by the caller); refuses NaN. */
static uf_status pm_count(pm_bucket *bk, const float *const *maps, const uint8_t *const *masks,
                          const int *heights, const int *widths, int n_images)
{
    for (int i = 0; i < n_images; i++) {
        const float *m = maps[i];                      /* [h][w] */
        const uint8_t *mk = masks ? masks[i] : NULL;   /* [h][w] or NULL */
        size_t hw = (size_t)heights[i] * (size_t)widths[i];
        for (size_t p = 0; p < hw; p++) {
            if (isnan(m[p]))
                return uf__err(UF_ERR_NONFINITE, "uf_pixel_metrics: map %d pixel (%zu, %zu) is NaN",
                               i, p / (size_t)widths[i], p % (size_t)widths[i]);
            uint32_t key = float_key(m[p]);
            pm_bucket *q = &bk[key >> 16];
            if ((q->pos | q->neg) == 0 || key < q->kmin) q->kmin = key;
            if (mk && mk[p]) q->pos++;
            else q->neg++;
        }
    }
    return UF_OK;
}

/* The level-2 plan: the sizes of the buffers pass 2 fills. */
typedef struct pm_plan {
    uint64_t P, N;    /* anomalous / normal pixels                           */
    size_t n_slots;   /* pm_slot entries (pure and dense buckets)            */
    size_t n_entries; /* sparse entries, one per pixel of a sparse bucket    */
    size_t max_slice; /* largest sparse bucket (the sort's scratch)          */
    int exact;        /* no dense bucket has fewer than 16 bits              */
} pm_plan;

/* Choose each bucket's mode (PURE, DENSE with its bits, SPARSE) and offset within a memory
 * budget of max_bytes (0: PM_DEFAULT_BYTES), as described above. */
static pm_plan pm_plan_buckets(pm_bucket *bk, size_t max_bytes)
{
    pm_plan pl = {0, 0, 0, 0, 0, 1};
    uint64_t n_mixed = 0;
    for (size_t b = 0; b < PM_BUCKETS; b++) {
        pl.P += bk[b].pos;
        pl.N += bk[b].neg;
        if (bk[b].pos && bk[b].neg) n_mixed += (uint64_t)bk[b].pos + bk[b].neg;
    }
    size_t budget = max_bytes ? max_bytes : PM_DEFAULT_BYTES;
    int all_sparse = n_mixed <= budget / 8;
    double target = (double)(budget / 32); /* dense slots to share among mixed pixels */
    for (size_t b = 0; b < PM_BUCKETS; b++) {
        pm_bucket *q = &bk[b];
        uint32_t c = q->pos + q->neg;
        if (c == 0) continue;
        if (!q->pos || !q->neg) {
            q->mode = PM_PURE;
            q->off = pl.n_slots++;
            continue;
        }
        int bits = 16;
        if (!all_sparse) {
            double want = (double)c * target / (double)n_mixed;
            bits = 0;
            while (bits < 16 && ldexp(1.0, bits) < want) bits++;
        }
        int sparse = all_sparse ? c < PM_DENSE_MIN : (uint64_t)c * 8 <= ((uint64_t)16 << bits);
        if (sparse) {
            q->mode = PM_SPARSE;
            q->off = pl.n_entries;
            pl.n_entries += c;
            if (c > pl.max_slice) pl.max_slice = c;
        } else {
            q->mode = PM_DENSE;
            q->bits = (uint8_t)bits;
            q->off = pl.n_slots;
            pl.n_slots += (size_t)1 << bits;
            if (bits < 16) pl.exact = 0;
        }
    }
    return pl;
}

/* Pass 2: label each mask's regions (lab [max_hw], rsize [max_hw + 1], stack [max_hw]
 * scratch), then put every pixel into its slot (counts, weight) or its bucket's sparse list
 * ent (key << 32 | region size, 0 for normal pixels). Returns the number of regions. */
static uint64_t pm_distribute(pm_bucket *bk, pm_slot *slots, uint64_t *ent,
                              const float *const *maps, const uint8_t *const *masks,
                              const int *heights, const int *widths, int n_images,
                              uint32_t *lab, uint32_t *rsize, uint32_t *stack)
{
    uint64_t R = 0;
    for (int i = 0; i < n_images; i++) {
        const float *m = maps[i];
        const uint8_t *mk = masks ? masks[i] : NULL;
        size_t hw = (size_t)heights[i] * (size_t)widths[i];
        if (mk) R += pm_label(mk, heights[i], widths[i], lab, rsize, stack);
        for (size_t p = 0; p < hw; p++) {
            uint32_t key = float_key(m[p]);
            pm_bucket *q = &bk[key >> 16];
            uint32_t sz = (mk && mk[p]) ? rsize[lab[p]] : 0; /* region size; 0: normal */
            if (q->mode == PM_SPARSE) {
                ent[q->off + q->fill++] = (uint64_t)key << 32 | sz;
                continue;
            }
            pm_slot *sl = slots + q->off;
            if (q->mode == PM_DENSE) sl += (key & 0xFFFFu) >> (16 - q->bits);
            if (sz) {
                sl->pos++;
                sl->w += 1.0 / (double)sz;
            } else {
                sl->neg++;
            }
        }
    }
    return R;
}

/* Sweep one sparse bucket's entries a[c] from the highest key down, one group per distinct
 * key (exact); tmp [c] is the sort's scratch. */
static void pm_sweep_sparse(pm_sweep *s, uint64_t *a, size_t c, uint64_t *tmp)
{
    pm_sort_slice(a, tmp, c);
    for (size_t i = c; i > 0;) {
        uint32_t key = (uint32_t)(a[i - 1] >> 32);
        uint32_t neg = 0, pos = 0;
        double w = 0;
        while (i > 0 && (uint32_t)(a[i - 1] >> 32) == key) {
            uint32_t sz = (uint32_t)a[--i];
            if (sz) {
                pos++;
                w += 1.0 / (double)sz;
            } else {
                neg++;
            }
        }
        pm_add(s, neg, pos, w, key, 0);
    }
}

/* Sweep every bucket from the highest score down into s. */
static void pm_sweep_buckets(pm_sweep *s, pm_bucket *bk, pm_slot *slots, uint64_t *ent,
                             uint64_t *tmp)
{
    for (size_t b = PM_BUCKETS; b-- > 0;) {
        pm_bucket *q = &bk[b];
        uint32_t base = (uint32_t)b << 16; /* lowest key of the bucket */
        if (q->mode == PM_PURE) {
            pm_slot *sl = slots + q->off;
            pm_add(s, sl->neg, sl->pos, sl->w, q->kmin, 0);
        } else if (q->mode == PM_DENSE) {
            int bits = q->bits;
            for (size_t j = (size_t)1 << bits; j-- > 0;) {
                pm_slot *sl = slots + q->off + j;
                uint32_t lo = base | (uint32_t)(j << (16 - bits)); /* slot's lowest key */
                pm_add(s, sl->neg, sl->pos, sl->w, lo > q->kmin ? lo : q->kmin, bits < 16);
            }
        } else if (q->mode == PM_SPARSE) {
            pm_sweep_sparse(s, ent + q->off, q->fill, tmp);
        }
    }
}

/* The figures of a finished sweep (NaN where a class or the regions are missing). */
static void pm_results(const pm_sweep *s, const pm_plan *pl, uint64_t R, size_t total,
                       double max_fpr, uf_pixel_result *out)
{
    const uint64_t P = pl->P, N = pl->N;
    out->n_pixels = total;
    out->n_anomalous = P;
    out->n_regions = R;
    out->exact = pl->exact;
    if (P && N) {
        double pn2 = 2.0 * (double)P * (double)N;
        out->auroc = (double)((long double)s->auc2 / (2.0L * (long double)P * (long double)N));
        out->auroc_err = s->tie_pairs / pn2;
    }
    if (N && R) {
        out->aupro = s->area / max_fpr;
        out->aupro_err = s->pro_err / max_fpr;
    }
    if (P) {
        out->f1_max = s->f1;
        out->f1_threshold = s->f1_thr;
        out->f1_err = s->f1_hi > s->f1 ? s->f1_hi - s->f1 : 0;
    }
}

uf_status uf_pixel_metrics(const float *const *maps, const uint8_t *const *masks,
                           const int *heights, const int *widths, int n_images,
                           double max_fpr, size_t max_bytes, uf_pixel_result *out)
{
    if (!out) return uf__err(UF_ERR_ARG, "uf_pixel_metrics: NULL result");
    out->auroc = out->aupro = out->f1_max = out->f1_threshold = NAN;
    out->auroc_err = out->aupro_err = out->f1_err = 0;
    out->exact = 1;
    out->n_pixels = out->n_anomalous = out->n_regions = 0;
    size_t total = 0, max_hw = 0; /* pixels in all images; of the largest masked image */
    uf_status st = pm_check(maps, masks, heights, widths, n_images, max_fpr, &total, &max_hw);
    if (st != UF_OK) return st;

    pm_bucket *bk = calloc(PM_BUCKETS, sizeof *bk); /* [65536] level-1 buckets */
    if (!bk) return uf__err(UF_ERR_NOMEM, "uf_pixel_metrics: cannot allocate the histogram");
    if ((st = pm_count(bk, maps, masks, heights, widths, n_images)) != UF_OK) {
        free(bk);
        return st;
    }
    const pm_plan pl = pm_plan_buckets(bk, max_bytes);

    /* slots [n_slots]; ent [n_entries] key << 32 | region size; tmp [max_slice] scratch */
    pm_slot *slots = calloc(pl.n_slots ? pl.n_slots : 1, sizeof *slots);
    uint64_t *ent = malloc((pl.n_entries ? pl.n_entries : 1) * sizeof *ent);
    uint64_t *tmp = malloc((pl.max_slice ? pl.max_slice : 1) * sizeof *tmp);
    uint32_t *lab = NULL, *rsize = NULL, *stack = NULL; /* [max_hw], [max_hw + 1], [max_hw] */
    if (max_hw) {
        lab = malloc(max_hw * sizeof *lab);
        rsize = malloc((max_hw + 1) * sizeof *rsize);
        stack = malloc(max_hw * sizeof *stack);
    }
    if (!slots || !ent || !tmp || (max_hw && (!lab || !rsize || !stack))) {
        st = uf__err(UF_ERR_NOMEM, "uf_pixel_metrics: cannot allocate %zu slots, %zu entries",
                     pl.n_slots, pl.n_entries);
    } else {
        uint64_t R = pm_distribute(bk, slots, ent, maps, masks, heights, widths, n_images, lab,
                                   rsize, stack);
        pm_sweep s;
        memset(&s, 0, sizeof s);
        s.P = pl.P;
        s.N = pl.N;
        s.R = (double)R;
        s.max_fpr = max_fpr;
        s.f1_thr = NAN;
        pm_sweep_buckets(&s, bk, slots, ent, tmp);
        pm_results(&s, &pl, R, total, max_fpr, out);
    }
    free(bk);
    free(slots);
    free(ent);
    free(tmp);
    free(lab);
    free(rsize);
    free(stack);
    return st;
}
