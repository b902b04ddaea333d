/*
 * kernels.h - numerical kernels of the anomaly detector (PatchCore / UniFormaly style).
 *
 * Pure functions on float arrays, independent of the ViT: nearest-neighbour scoring
 * against a memory bank (knn.c), greedy k-center coreset subsampling of the bank
 * (coreset.c), and the patch-map operations - Back Patch Masking, top-K image score,
 * bilinear upsampling and scipy-exact Gaussian smoothing (patchmaps.c).
 *
 * Conventions shared by every function here:
 *  - Shapes are row-major, outermost first: `[nq][D]` is nq rows of D floats.
 *  - Caller-allocated outputs; nothing returned here needs freeing unless stated.
 *  - Failures return a uf_status and set uf_errmsg() via uf__err(); nothing prints.
 *  - Thread-safety: every function is reentrant (no global state); calls on disjoint
 *    outputs may run concurrently. The OpenMP-parallel ones (uf__knn, uf__coreset_greedy)
 *    take their thread count as a parameter (nth; 0 or the functions without it: the
 *    library default uf_get_threads()) and pass it to each region as num_threads: no
 *    process-wide OpenMP or BLAS setting is read or changed.
 */
#ifndef UF_KERNELS_H
#define UF_KERNELS_H

#include "core/internal.h"

#include <stddef.h>
#include <stdint.h>

/* ==== nearest-neighbour scoring (knn.c) ============================================== */

/* Largest k accepted by uf__knn. */
#define UF__KNN_MAX_K 1024

/* Largest squared L2 norm of a query that uf__knn accepts, and of a feature the detector
 * lets into a bank or a score. Real features are far below (ViT patch features: ~1e4);
 * beyond it the network has overflowed. Bank rows need only finite norms (a model file
 * may hold anything finite), so a distance can still overflow: the detector checks. */
#define UF__MAX_SQNORM 1e30

/* bnorm[j] = ||B[j]||^2 (float, summed in double) for the bank B [nb][D].
 * Errors: UF_ERR_ARG (NULL, D < 1, size overflow). Thread-safe. */
uf_status uf__knn_bank_norms(const float *B, size_t nb, int D, float *bnorm /* [nb] */);

/* Nearest-neighbour score of each query against a memory bank, faiss IndexFlatL2 style:
 *   out[i] = mean of the k smallest squared L2 distances ||Q[i] - B[j]||^2 over j
 * (k = 1: the nearest one).
 *  Q     [nq][D]  queries            B [nb][D] bank      bnorm [nb] from uf__knn_bank_norms
 *  out   [nq]     scores, float (>= 0)
 * Method: candidates are ranked by ||b||^2 - 2 q.b computed with our GEMM on fixed
 * tiles (UF__KNN_QB queries x UF__KNN_BB bank rows; never an nq x nb matrix), keeping a
 * running top-(k + 4) per query; the candidates' distances are then recomputed directly
 * as sum (q - b)^2 (accumulated in double) and the k smallest averaged. So scores are
 * exact to float rounding; the expansion's cancellation error (about 1e-7 of
 * ||q||^2 + ||b||^2) can only matter when more than 4 bank rows tie with the k-th
 * neighbour within that error, and then only picks an equally near row.
 * Parallel (OpenMP) over query blocks, or over bank slices when there are few query
 * blocks; the tiling is independent of the thread count, so results are bit-identical
 * for any thread count.
 * Preconditions: nq >= 0 (0 is a no-op), nb >= 1, 1 <= k <= min(nb, UF__KNN_MAX_K), D >= 1.
 * Errors: UF_ERR_ARG, UF_ERR_NOMEM, UF_ERR_NONFINITE (a non-finite query value, or a
 * non-finite bnorm - which catches NaN/Inf bank rows). Thread-safe. */
uf_status uf__knn(const float *Q, size_t nq, const float *B, const float *bnorm, size_t nb,
                  int D, int k, float *out);

/* Same, also returning the indices of the k nearest bank rows, nearest first (ties: lower
 * index first): idx [nq][k], and their squared distances dist [nq][k] (either may be NULL),
 * on nth threads (0: uf_get_threads()). */
uf_status uf__knn_ex(const float *Q, size_t nq, const float *B, const float *bnorm, size_t nb,
                     int D, int k, float *out, int64_t *idx, float *dist, int nth);

/* Tile sizes of uf__knn (queries x bank rows per GEMM call). */
#define UF__KNN_QB 256
#define UF__KNN_BB 2048

/* ==== coreset subsampling (coreset.c) ================================================ */

/* Number of points a coreset of N points at fraction keeps:
 *   fraction >= 1: N (PatchCore returns the features unchanged);
 *   else max(1, floor(N * fraction)) (PatchCore: int(len(features) * percentage); the
 *   max(1, .) only differs where PatchCore would build an empty memory bank).
 * Returns 0 for N = 0 or a fraction that is not a finite positive number. */
size_t uf__coreset_count(size_t N, double fraction);

/* Dimension PatchCore projects features to before the greedy search. */
#define UF__CORESET_PROJ_DIM 128
/* Random starting points of the approximate greedy search (PatchCore default). */
#define UF__CORESET_N_START 10

/* Approximate greedy k-center coreset, PatchCore's ApproximateGreedyCoresetSampler:
 *  1. If D != 128, project X to 128 dimensions: P = X W^T with W [128][D] drawn
 *     U(-1/sqrt(D), 1/sqrt(D)) (torch.nn.Linear's default init; the generator is ours,
 *     see uf__coreset_projection). If D == 128, P = X, as PatchCore.
 *  2. Pick min(10, N) distinct starting points at random (uf__coreset_start_points).
 *  3. m[i] = mean over the starting points s of ||P[i] - P[s]|| (Euclidean, not squared).
 *  4. n_keep = uf__coreset_count(N, fraction) times: c = argmax m (the first index among
 *     ties, as torch.argmax), output c, m[i] = min(m[i], ||P[i] - P[c]||).
 *     The starting points are not output unless selected in step 4.
 * Output: out_idx [n_keep] in selection order (NOT sorted); *n_out = n_keep. With
 * fraction >= 1 all indices 0..N-1 in order (no search). If every remaining m is 0 (more
 * points requested than distinct points), step 4 keeps selecting index 0 as PatchCore
 * does, so out_idx may repeat an index; deduplicate if that matters.
 * Distances are computed directly (sum of squared differences in float, fixed order;
 * PatchCore uses the cancellation-prone expansion). The search is exact but lazy: m[i]
 * only ever decreases, so a stale m[i] is an upper bound; a max-heap of stale values is
 * popped and refreshed against the centres it has not seen until the top is current.
 * This gives exactly the naive algorithm's selections (tested) at a fraction of its cost.
 * Preconditions: out_idx holds uf__coreset_count(N, fraction) entries; D >= 1; N >= 1;
 * 0 < fraction (finite).
 * Errors: UF_ERR_ARG, UF_ERR_NONFINITE (NaN/Inf in X), UF_ERR_NOMEM, UF_ERR_LIMIT (N above
 * 2^31). Memory: about (N + n_keep) * 128 + 3 N floats. Thread-safe; the projection and
 * the starting distances run in parallel, the search itself on one thread (150000 x 192 ->
 * 15000 takes about 3 s on clustered data, 6 s on uniform noise, on a Zen 5 core). */
uf_status uf__coreset_greedy(const float *X, size_t N, int D, double fraction, uint64_t seed,
                             size_t *out_idx, size_t *n_out);

/* uf__coreset_greedy with progress: progress (may be NULL) is called from the calling
 * thread about 200 times during the search as (user, "coreset", picks so far, n_keep);
 * a nonzero return stops it with UF_ERR_ARG "cancelled" (out_idx then undefined).
 * nth: threads of the projection and the starting distances (0: uf_get_threads()). */
uf_status uf__coreset_greedy_progress(const float *X, size_t N, int D, double fraction,
                                      uint64_t seed, size_t *out_idx, size_t *n_out,
                                      uf_progress_fn progress, void *user, int nth);

/* The greedy core on already projected features P [N][d] with given starting points
 * start [n_start] (indices < N, may be empty: then m starts at +inf) selecting n_keep
 * indices into out [n_keep]. naive != 0 runs the plain O(n_keep * N * d) loop (the
 * reference the lazy search is tested against). Errors: UF_ERR_ARG, UF_ERR_NOMEM. */
uf_status uf__coreset_greedy_core(const float *P, size_t N, int d, const size_t *start,
                                  size_t n_start, size_t n_keep, int naive, size_t *out);

/* Random subsampling (PatchCore's RandomSampler): n_keep = uf__coreset_count(N, fraction)
 * distinct indices in draw order (a partial Fisher-Yates shuffle of 0..N-1 driven by
 * the generator's stream 3 (below)). Errors: UF_ERR_ARG, UF_ERR_NOMEM. */
uf_status uf__coreset_random(size_t N, double fraction, uint64_t seed, size_t *out_idx,
                             size_t *n_out);

/* The random generators, exposed so scripts/gen_kernel_golden.py can reproduce them:
 * a splitmix64 stream whose state starts at seed ^ (stream * 0xD1B54A32D192ED03);
 * each draw adds 0x9E3779B97F4A7C15 to the state and mixes it (Steele et al.).
 *  - uniform in [0, 1): (draw >> 11) * 2^-53
 *  - integer in [0, m): high 64 bits of the 128-bit product draw * m
 * Stream 1: the projection, W[r][c] = (float)((2u - 1) / sqrt(D)), row-major, W [d][D].
 * Stream 2: starting points, a partial Fisher-Yates shuffle: for j < n, swap element j
 * with element j + int(N - j) of the identity permutation; the first n elements.
 * Stream 3: random subsampling, the same shuffle. */
void uf__coreset_projection(uint64_t seed, int D, int d, float *W /* [d][D] */);
uf_status uf__coreset_start_points(uint64_t seed, size_t N, size_t n, size_t *out /* [n] */);
/* P [N][UF__CORESET_PROJ_DIM] = X [N][D] projected with uf__coreset_projection(seed) on the
 * level's GEMM with nth threads (0: uf_get_threads()), as the greedy search projects.
 * Errors: UF_ERR_NOMEM. */
uf_status uf__coreset_project(const float *X, size_t N, int D, uint64_t seed, int nth, float *P);

/* ==== patch maps (patchmaps.c) ======================================================= */

/* Back Patch Masking of one CLS attention map attn [gh][gw] (UniFormaly AttentionMask.pool):
 *   smooth = AvgPool2d(k, stride 1, padding k/2, count_include_pad=True)(attn)  [gh][gw]
 *   smooth /= max(smooth);  mask = smooth > lambda
 * smooth_out [gh][gw] receives the normalised map (the soft variant), mask_out [gh][gw]
 * (may be NULL) 1 for kept (foreground) patches, 0 for masked ones. A map whose pooled
 * maximum is <= 0 (e.g. all zero, where PyTorch would produce NaN and mask everything)
 * keeps every patch: smooth_out = 1, mask_out = 1. The maximum is per map; the reference
 * divides by the maximum over its whole batch, which equals this for a batch of one image
 * (its default for testing) and makes scores depend on batch composition otherwise. k must be odd (an even k changes the
 * output size in PyTorch). Errors: UF_ERR_ARG (sizes, even or non-positive k),
 * UF_ERR_NONFINITE (NaN/Inf in attn or lambda). Thread-safe. */
uf_status uf__bpm(const float *attn, int gh, int gw, int k, float lambda,
                  float *smooth_out, uint8_t *mask_out);

/* Number of top patches averaged by uf__topk_mean: max(1, min(n, round(frac * n))) with
 * round-half-to-even on the double product, as Python's round() (UniFormaly's PatchScorer:
 * int(round(k * N)), where 0 would give NaN). 0 if n < 1 or frac is not a finite positive number. */
int uf__topk_count(int n, double frac);

/* Image score: the mean of the K = uf__topk_count(n, frac) largest values of s [n]
 * (background patches are expected to hold 0). *mean_out is the mean (summed in double,
 * rounded to float); idx_out [K] (may be NULL) the positions of the K values, largest first,
 * ties broken by lower index first (torch.topk leaves tie order unspecified); *K_out = K
 * (may be NULL). Errors: UF_ERR_ARG, UF_ERR_NONFINITE (NaN/Inf in s), UF_ERR_NOMEM.
 * Thread-safe. */
uf_status uf__topk_mean(const float *s, int n, double frac, float *mean_out, int *idx_out,
                        int *K_out);

/* Bilinear resize src [sh][sw] -> dst [dh][dw] with the semantics of
 * torch.nn.functional.interpolate(mode='bilinear', align_corners=False) without a scale
 * factor: source coordinate (x + 0.5) * sw / dw - 0.5 clamped at 0, float arithmetic.
 * Agrees with PyTorch to a few float ulp (PyTorch's own rounding order is not reproduced
 * bit for bit). NaN propagates. Errors: UF_ERR_ARG (sizes < 1, NULL, overflow). Thread-safe. */
uf_status uf__upsample_bilinear(const float *src, int sh, int sw, float *dst, int dh, int dw);

/* In-place Gaussian smoothing of img [H][W], exactly as scipy.ndimage.gaussian_filter(img,
 * sigma) on float32 (truncate 4.0: radius int(4 sigma + 0.5); mode 'reflect', i.e.
 * half-sample symmetric d c b a | a b c d | d c b a, repeated when the radius exceeds the
 * image; axis 0 then axis 1, each in double and rounded to float32 in between, as scipy;
 * bit-identical to scipy 1.10 on the golden tests).
 * tmp [H][W] is scratch (may be NULL: allocated internally). sigma = 0 is the identity.
 * Errors: UF_ERR_ARG (sizes, sigma < 0 or not finite), UF_ERR_LIMIT (radius > 2^20),
 * UF_ERR_NOMEM. Thread-safe on distinct buffers. */
uf_status uf__gaussian_filter(float *img, int H, int W, double sigma, float *tmp);

/* x [D] scaled to unit L2 norm (norm in double); a zero row stays zero. The cosine
 * option's normalisation (detector.c). Thread-safe. */
void uf__l2_normalize(float *x, int D);

/* ==== PCA masking (pcamask.c) ======================================================== */

/* Projections proj [gh*gw] (row-major over the grid) of the patch features on the first
 * principal component of those patches: F holds gh rows of stride patches of D floats
 * each, the first gw patches of each row used. Centred, sign: the projection of largest
 * magnitude positive. Errors: UF_ERR_ARG, UF_ERR_NOMEM. Thread-safe. */
uf_status uf__pca_first(const float *F, int gh, int gw, int stride, int D, double *proj);

/* AnomalyDINO's foreground mask of one image from its features (layout as uf__pca_first):
 * projection > threshold (negated when the central 60% keeps <= 35%), 3x3 dilation, 3x3
 * closing; into mask [gh][stride] (the first gw of each row written). Errors: UF_ERR_ARG,
 * UF_ERR_NOMEM. Thread-safe. */
uf_status uf__pca_mask(const float *F, int gh, int gw, int stride, int D, float threshold,
                       uint8_t *mask);

#endif /* UF_KERNELS_H */
