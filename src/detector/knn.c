/*
 * knn.c - exact k-nearest-neighbour scoring of query features against a memory bank.
 *
 * The detector scores every test patch by its squared L2 distance to the nearest
 * patch(es) of the memory bank, as faiss.IndexFlatL2 does in the reference; queries and bank
 * rows are the raw patch features (mean of the chosen blocks' tokens), not L2-normalised,
 * as in the PyTorch reference (scripts/ref_detector.py). Like faiss we rank with the
 * expansion ||q||^2 + ||b||^2 - 2 q.b, whose q.b part is a matrix product (our GEMM,
 * kernels/kern.h, at the level chosen at run time) on fixed tiles, keeping a running top
 * list per query and never an nq x nb matrix. Unlike faiss we then recompute the winners'
 * distances directly, so the scores carry no cancellation error (the expansion loses all
 * accuracy for near-duplicates: its absolute error is ~1e-7 (||q||^2 + ||b||^2), which can
 * exceed the true distance).
 *
 * Determinism: the tile grid (UF__KNN_QB queries x UF__KNN_BB bank rows) does not depend
 * on the thread count and each tile is one single-threaded GEMM call, so every
 * (query, bank row) pair gets the same ranking value whatever thread computes it; the
 * top lists use a total order (distance, then index), so merging per-slice lists gives the
 * same candidates as one pass. Results are bit-identical for any thread count (and,
 * since the exact distances decide, equal at every CPU level unless rows tie).
 */
#include "detector/kernels.h"
#include "kernels/kern.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Extra candidates kept beyond k and re-ranked by exact distance. */
#define KNN_EXTRA 4
/* Bound on candidate entries held at once (S slices x chunk rows x kc): 4M = 64 MB. */
#define KNN_MAX_CAND ((size_t)1 << 22)

/* One candidate: ranking distance and bank index. Lists are sorted by (d, i). */
typedef struct {
    float d;
    int64_t i;
} knn_cand;

/* 1 when (d, i) ranks strictly before c. */
static inline int cand_before(float d, int64_t i, knn_cand c)
{
    return d < c.d || (d == c.d && i < c.i);
}

/* Insert (d, i) into the sorted list L [kc] whose last entry ranks after it. */
static inline void cand_insert(knn_cand *L, int kc, float d, int64_t i)
{
    int p = kc - 1;
    while (p > 0 && cand_before(d, i, L[p - 1])) {
        L[p] = L[p - 1];
        p--;
    }
    L[p].d = d;
    L[p].i = i;
}

uf_status uf__knn_bank_norms(const float *B, size_t nb, int D, float *bnorm)
{
    size_t tot;
    if (!B || !bnorm || D < 1) return uf__err(UF_ERR_ARG, "knn: bad bank arguments");
    if (!uf__mul_ok(nb, (size_t)D, &tot)) return uf__err(UF_ERR_ARG, "knn: bank too large");
    for (size_t j = 0; j < nb; j++) {
        const float *b = B + j * (size_t)D; /* [D] */
        double s = 0;
        for (int c = 0; c < D; c++) s += (double)b[c] * b[c];
        bnorm[j] = (float)s;
    }
    return UF_OK;
}

/* Scan one row of a tile of products t = q.b: v = bn[j] - 2 t[j] for j < mb (bank rows
 * b0 + j) into the list L.
 * Blocks of 16 are first reduced to their minimum (vectorisable) and skipped when no
 * entry can enter the list. */
static void scan_row(const float *t, const float *bn, int mb, int64_t b0, knn_cand *L, int kc)
{
    float thr = L[kc - 1].d;
    int j = 0;
    for (; j + 16 <= mb; j += 16) {
        float v[16], mn;
        for (int u = 0; u < 16; u++) v[u] = bn[j + u] - 2.0f * t[j + u];
        mn = v[0];
        for (int u = 1; u < 16; u++) mn = v[u] < mn ? v[u] : mn;
        if (!(mn <= thr)) continue;
        for (int u = 0; u < 16; u++)
            if (cand_before(v[u], b0 + j + u, L[kc - 1])) {
                cand_insert(L, kc, v[u], b0 + j + u);
                thr = L[kc - 1].d;
            }
    }
    for (; j < mb; j++) {
        float v = bn[j] - 2.0f * t[j];
        if (cand_before(v, b0 + j, L[kc - 1])) cand_insert(L, kc, v, b0 + j);
    }
}

/* Exact squared distance, accumulated in double. */
static double exact_d2(const float *q, const float *b, int D)
{
    double s = 0;
    for (int c = 0; c < D; c++) {
        double d = (double)q[c] - (double)b[c];
        s += d * d;
    }
    return s;
}

uf_status uf__knn(const float *Q, size_t nq, const float *B, const float *bnorm, size_t nb,
                  int D, int k, float *out)
{
    return uf__knn_ex(Q, nq, B, bnorm, nb, D, k, out, NULL, NULL, 0);
}

uf_status uf__knn_ex(const float *Q, size_t nq, const float *B, const float *bnorm, size_t nb,
                     int D, int k, float *out, int64_t *idx, float *dist, int nth)
{
    size_t tmp;
    if (nq == 0) return UF_OK;
    if (!Q || !B || !bnorm || !out) return uf__err(UF_ERR_ARG, "knn: NULL argument");
    if (D < 1 || nb < 1) return uf__err(UF_ERR_ARG, "knn: empty bank or dimension %d", D);
    if (k < 1 || k > UF__KNN_MAX_K || (size_t)k > nb)
        return uf__err(UF_ERR_ARG, "knn: k = %d outside 1..min(bank size %zu, %d)", k, nb,
                       UF__KNN_MAX_K);
    if (!uf__mul_ok(nq, (size_t)D, &tmp) || !uf__mul_ok(nb, (size_t)D, &tmp) ||
        nb > (size_t)INT64_MAX / 2 || !uf__mul_ok(nq, (size_t)k, &tmp))
        return uf__err(UF_ERR_ARG, "knn: sizes overflow (nq %zu, nb %zu, D %d)", nq, nb, D);
    for (size_t j = 0; j < nb; j++)
        if (!isfinite(bnorm[j]))
            return uf__err(UF_ERR_NONFINITE, "knn: bank row %zu is not finite (norm %g)", j,
                           (double)bnorm[j]);
    for (size_t i = 0; i < nq; i++) {
        double s = 0;
        const float *q = Q + i * (size_t)D; /* [D] */
        for (int c = 0; c < D; c++) s += (double)q[c] * q[c];
        if (!(s <= UF__MAX_SQNORM))
            return uf__err(UF_ERR_NONFINITE, "knn: query %zu is not finite or too large", i);
    }

    const int T = nth > 0 ? nth : uf_get_threads();
    const uf__kern *kn = uf__kern_get();
    /* packed query block of the GEMM: whole panels of the widest level */
    const size_t apn = (size_t)(UF__KNN_QB + UF__MR_MAX - 1) / UF__MR_MAX * UF__MR_MAX * D;
    const int kc = (size_t)k + KNN_EXTRA <= nb ? k + KNN_EXTRA : (int)nb; /* list length */
    const size_t nbb = (nb + UF__KNN_BB - 1) / UF__KNN_BB;                /* bank blocks */

    /* Query chunk: a multiple of QB, sized so candidate lists stay under KNN_MAX_CAND. */
    size_t S_max = (size_t)4 * (size_t)T < nbb ? (size_t)4 * (size_t)T : nbb;
    size_t chunk = KNN_MAX_CAND / (S_max * (size_t)kc);
    chunk = chunk / UF__KNN_QB * UF__KNN_QB;
    if (chunk < UF__KNN_QB) chunk = UF__KNN_QB;
    if (chunk > nq) chunk = nq;
    knn_cand *cand = malloc(S_max * chunk * (size_t)kc * sizeof *cand); /* [S][chunk][kc] */
    if (!cand) return uf__err(UF_ERR_NOMEM, "knn: out of memory for candidate lists");
    int failed = 0; /* 1: tile allocation failed, 2: overflowed distances */

    for (size_t c0 = 0; c0 < nq && !failed; c0 += chunk) {
        const size_t cn = nq - c0 < chunk ? nq - c0 : chunk; /* queries in this chunk */
        const size_t nqb = (cn + UF__KNN_QB - 1) / UF__KNN_QB;
        /* Few query blocks: split the bank into S slices of whole bank blocks as well, so
         * there are at least 4 work items per thread (the dynamic schedule then balances
         * uneven blocks: 784 queries = 3 full blocks + 16 rows left one of 2 threads with
         * 512 rows and the other 272, 70% of sgemm speed instead of 90%). */
        size_t S = nqb >= (size_t)4 * T ? 1 : ((size_t)4 * T + nqb - 1) / nqb;
        if (S > S_max) S = S_max;
        for (size_t e = 0; e < S * cn * (size_t)kc; e++) {
            cand[e].d = INFINITY;
            cand[e].i = INT64_MAX;
        }

#pragma omp parallel num_threads(T)
        {
            float *tile = malloc((size_t)UF__KNN_QB * UF__KNN_BB * sizeof *tile); /* [QB][BB] */
            float *ap = aligned_alloc(64, (apn * sizeof(float) + 63) / 64 * 64); /* packed Q */
            if (!tile || !ap) {
                free(tile), free(ap);
                tile = NULL, ap = NULL;
#pragma omp atomic write
                failed = 1;
            }
#pragma omp for schedule(dynamic, 1)
            for (size_t w = 0; w < nqb * S; w++) {
                if (!tile) continue;
                const size_t qb = w / S, s = w % S;
                const size_t q0 = qb * UF__KNN_QB; /* chunk-relative first query */
                const int mq = (int)(cn - q0 < UF__KNN_QB ? cn - q0 : UF__KNN_QB);
                const size_t bb0 = s * nbb / S, bb1 = (s + 1) * nbb / S; /* bank blocks */
                knn_cand *Ls = cand + (s * cn + q0) * (size_t)kc;       /* [mq][kc] */
                for (size_t bb = bb0; bb < bb1; bb++) {
                    const size_t b0 = bb * UF__KNN_BB;
                    const int mb = (int)(nb - b0 < UF__KNN_BB ? nb - b0 : UF__KNN_BB);
                    /* tile [mq][mb] = Q_blk B_blk^T (Q_blk packed on the first block) */
                    kn->gemm(1, mq, mb, D, bb == bb0 ? Q + (c0 + q0) * (size_t)D : NULL, D,
                             B + b0 * (size_t)D, NULL, tile, mb, UF__EPI_SET, ap, NULL);
                    for (int r = 0; r < mq; r++)
                        scan_row(tile + (size_t)r * mb, bnorm + b0, mb, (int64_t)b0,
                                 Ls + (size_t)r * kc, kc);
                }
            }
            free(tile);
            free(ap);
        }
        if (failed) break;

        /* Merge the slices' lists, recompute exact distances, keep the k best. */
#pragma omp parallel for schedule(static) num_threads(T)
        for (size_t r = 0; r < cn; r++) {
            knn_cand L[UF__KNN_MAX_K + KNN_EXTRA]; /* [kc] merged, then exact */
            memcpy(L, cand + r * (size_t)kc, (size_t)kc * sizeof *L);
            for (size_t s = 1; s < S; s++) {
                const knn_cand *o = cand + (s * cn + r) * (size_t)kc; /* [kc] */
                for (int u = 0; u < kc && cand_before(o[u].d, o[u].i, L[kc - 1]); u++)
                    cand_insert(L, kc, o[u].d, o[u].i);
            }
            const float *q = Q + (c0 + r) * (size_t)D; /* [D] */
            int bad = 0;
            for (int u = 0; u < kc; u++) {
                if (L[u].i < 0 || (size_t)L[u].i >= nb) { bad = 1; break; }
                L[u].d = (float)exact_d2(q, B + (size_t)L[u].i * D, D);
            }
            if (bad) {
#pragma omp atomic write
                failed = 2;
                continue;
            }
            /* Re-rank by exact distance (insertion sort, kc is small). */
            for (int u = 1; u < kc; u++) {
                knn_cand x = L[u];
                int p = u;
                while (p > 0 && cand_before(x.d, x.i, L[p - 1])) {
                    L[p] = L[p - 1];
                    p--;
                }
                L[p] = x;
            }
            double sum = 0;
            for (int u = 0; u < k; u++) sum += L[u].d;
            out[c0 + r] = (float)(sum / k);
            for (int u = 0; u < k; u++) {
                if (idx) idx[(c0 + r) * (size_t)k + u] = L[u].i;
                if (dist) dist[(c0 + r) * (size_t)k + u] = L[u].d;
            }
        }
    }
    free(cand);
    if (failed == 1) return uf__err(UF_ERR_NOMEM, "knn: out of memory for a distance tile");
    if (failed == 2)
        return uf__err(UF_ERR_NONFINITE, "knn: distances overflow float (values too large)");
    return UF_OK;
}
