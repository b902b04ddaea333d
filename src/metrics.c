/*
 * metrics.c - area under the ROC curve (uf_auroc), as scikit-learn's roc_auc_score.
 *
 * The detector is judged by image AUROC (one score per image) and pixel AUROC (one score
 * per pixel: 4-50 million values for an MVTec category), so this must be exact, fast and
 * light on memory.
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
#include "internal.h"

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
