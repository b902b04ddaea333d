/*
 * coreset.c - memory-bank subsampling: PatchCore's approximate greedy k-center coreset,
 * random subsampling, and the seeded generators both use.
 *
 * The greedy coreset keeps the points that are farthest from everything kept so far
 * (farthest-point sampling on a random 128-d projection), so a 10% bank still covers
 * the feature distribution. The reference does it with one full pass over all N points
 * per selection (15,000 passes for 150k features: minutes in PyTorch). We compute the
 * same selections lazily: each point's running minimum distance m[i] only decreases, so a
 * value computed against the first t_i centres is an upper bound of the current one. A
 * max-heap of these bounds is popped; a stale top is refreshed against just the centres
 * it has not seen (stopping early once it drops below the runner-up) and sifted down; a
 * current top is the exact argmax. Points far from new centres are never touched again.
 * Distances come from one fixed-order function (dist2), so the lazy search reproduces the
 * naive loop's choices bit for bit, ties included (tests/test_kernels.c checks it).
 */
#include "detector/kernels.h"
#include "kernels/kern.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- seeded generators (documented in kernels.h; mirrored by the golden script) ---- */

typedef struct {
    uint64_t s;
} sm64;

static sm64 sm64_stream(uint64_t seed, uint64_t stream)
{
    sm64 r = {seed ^ (stream * 0xD1B54A32D192ED03ULL)};
    return r;
}

/* splitmix64 (core/random.c). */
static uint64_t sm64_next(sm64 *r) { return uf_splitmix64(&r->s); }

/* Uniform in [0, 1) with 53 random bits. */
static double sm64_unif(sm64 *r) { return (double)(sm64_next(r) >> 11) * 0x1.0p-53; }

/* Integer in [0, m): the high half of draw * m (Lemire's multiply, no rejection). */
static uint64_t sm64_below(sm64 *r, uint64_t m)
{
    __extension__ typedef unsigned __int128 u128;
    return (uint64_t)(((u128)sm64_next(r) * m) >> 64);
}

/* First n entries of a partial Fisher-Yates shuffle of 0..N-1 driven by r; out [n]. */
static uf_status partial_shuffle(sm64 *r, size_t N, size_t n, size_t *out)
{
    size_t bytes;
    if (n > N || !uf__mul_ok(N, sizeof(size_t), &bytes))
        return uf__err(UF_ERR_ARG, "coreset: cannot draw %zu of %zu points", n, N);
    size_t *perm = malloc(bytes ? bytes : 1); /* [N] */
    if (!perm) return uf__err(UF_ERR_NOMEM, "coreset: out of memory (%zu points)", N);
    for (size_t i = 0; i < N; i++) perm[i] = i;
    for (size_t j = 0; j < n; j++) {
        size_t p = j + (size_t)sm64_below(r, (uint64_t)(N - j));
        size_t t = perm[j];
        perm[j] = perm[p];
        perm[p] = t;
        out[j] = perm[j];
    }
    free(perm);
    return UF_OK;
}

void uf__coreset_projection(uint64_t seed, int D, int d, float *W)
{
    sm64 r = sm64_stream(seed, 1);
    const double bound = 1.0 / sqrt((double)D); /* nn.Linear: U(-1/sqrt(fan_in), +) */
    for (size_t e = 0; e < (size_t)d * (size_t)D; e++)
        W[e] = (float)((2.0 * sm64_unif(&r) - 1.0) * bound);
}

uf_status uf__coreset_start_points(uint64_t seed, size_t N, size_t n, size_t *out)
{
    sm64 r = sm64_stream(seed, 2);
    return partial_shuffle(&r, N, n, out);
}

size_t uf__coreset_count(size_t N, double fraction)
{
    if (N == 0 || !isfinite(fraction) || !(fraction > 0)) return 0;
    if (fraction >= 1) return N;
    double want = floor((double)N * fraction);
    if (want >= (double)N) return N;
    return want < 1 ? 1 : (size_t)want;
}

uf_status uf__coreset_random(size_t N, double fraction, uint64_t seed, size_t *out_idx,
                             size_t *n_out)
{
    if (!out_idx || !n_out) return uf__err(UF_ERR_ARG, "coreset: NULL output");
    size_t n = uf__coreset_count(N, fraction);
    if (n == 0) return uf__err(UF_ERR_ARG, "coreset: bad size %zu or fraction %g", N, fraction);
    *n_out = 0;
    sm64 r = sm64_stream(seed, 3);
    uf_status st = partial_shuffle(&r, N, n, out_idx);
    if (st == UF_OK) *n_out = n;
    return st;
}

/* ---- the greedy search --------------------------------------------------------------- */

/* Every distance of the search comes from one fixed-order function, the level's dist2
 * (kernels/kern_impl.h: bit-identical at every CPU level), fetched once per function. */
typedef float (*dist_fn)(const float *a, const float *b, int d);

/* 1 when point a ranks strictly before point b: larger m, then lower index (torch.argmax
 * returns the first maximum). */
static inline int ranks_before(const float *m, uint32_t a, uint32_t b)
{
    return m[a] > m[b] || (m[a] == m[b] && a < b);
}

/* Max-heap sift-down from position p. */
static void heap_down(uint32_t *h, size_t n, const float *m, size_t p)
{
    uint32_t x = h[p];
    for (;;) {
        size_t c = 2 * p + 1;
        if (c >= n) break;
        if (c + 1 < n && ranks_before(m, h[c + 1], h[c])) c++;
        if (!ranks_before(m, h[c], x)) break;
        h[p] = h[c];
        p = c;
    }
    h[p] = x;
}

/* Initial m: (mean over starting points of the Euclidean distance)^2, +inf with none. */
static void init_min_dist(const float *P, size_t N, int d, const size_t *start, size_t ns,
                          float *m, int nth)
{
    const dist_fn dist2 = uf__kern_get()->dist2;
#pragma omp parallel for schedule(static) num_threads(nth)
    for (size_t i = 0; i < N; i++) {
        if (ns == 0) {
            m[i] = INFINITY;
            continue;
        }
        double acc = 0;
        for (size_t s = 0; s < ns; s++)
            acc += sqrt((double)dist2(P + i * (size_t)d, P + start[s] * (size_t)d, d));
        double mean = acc / (double)ns;
        m[i] = (float)(mean * mean);
    }
}

/* The reference: one full pass per selection. */
static void greedy_naive(const float *P, size_t N, int d, float *m, size_t n_keep, size_t *out)
{
    const dist_fn dist2 = uf__kern_get()->dist2;
    for (size_t t = 0; t < n_keep; t++) {
        size_t best = 0;
        for (size_t i = 1; i < N; i++)
            if (m[i] > m[best]) best = i;
        out[t] = best;
        const float *c = P + best * (size_t)d; /* [d] */
        for (size_t i = 0; i < N; i++) {
            float v = dist2(P + i * (size_t)d, c, d);
            if (v < m[i]) m[i] = v;
        }
    }
}

/* The lazy search (see the file comment). C [n_keep][d] receives the centres. */
static int greedy_lazy(const float *P, size_t N, int d, float *m, size_t n_keep, size_t *out,
                       uint32_t *heap, uint32_t *stamp, float *C, uf_progress_fn progress,
                       void *user)
{
    const dist_fn dist2 = uf__kern_get()->dist2;
    /* progress: about 200 reports over the search; nonzero from it stops the search */
    const size_t step = n_keep / 200 > 0 ? n_keep / 200 : 1;
    size_t next = step;
    size_t hn = N;
    for (size_t i = 0; i < N; i++) {
        heap[i] = (uint32_t)i;
        stamp[i] = 0;
    }
    for (size_t p = N / 2; p-- > 0;) heap_down(heap, hn, m, p);

    size_t t = 0; /* centres selected so far */
    while (t < n_keep) {
        uint32_t i = hn ? heap[0] : 0;
        if (hn && stamp[i] < t) {
            /* Refresh the stale top against centres stamp[i]..t-1; stop as soon as it
             * ranks after the runner-up (then its m is still a valid upper bound). */
            uint32_t ru = 0;
            int has_ru = hn > 1;
            if (hn > 1) ru = heap[1];
            if (hn > 2 && ranks_before(m, heap[2], ru)) ru = heap[2];
            const float *p = P + (size_t)i * d; /* [d] */
            float mi = m[i];
            size_t j = stamp[i];
            for (; j < t; j++) {
                float v = dist2(p, C + j * (size_t)d, d);
                if (v < mi) {
                    mi = v;
                    if (has_ru && (mi < m[ru] || (mi == m[ru] && ru < i))) {
                        j++;
                        break;
                    }
                }
            }
            m[i] = mi;
            stamp[i] = (uint32_t)j;
            heap_down(heap, hn, m, 0);
            continue;
        }
        if (hn == 0 || !(m[i] > 0)) {
            /* Every m is 0: argmax over all points is index 0, for every remaining pick. */
            while (t < n_keep) out[t++] = 0;
            break;
        }
        /* Current top: the exact argmax. It becomes a centre (its m turns to 0). */
        out[t] = i;
        memcpy(C + t * (size_t)d, P + (size_t)i * d, (size_t)d * sizeof *C);
        t++;
        heap[0] = heap[--hn];
        if (hn) heap_down(heap, hn, m, 0);
        if (progress && t >= next && t < n_keep) {
            next = t + step;
            if (progress(user, "coreset", t, n_keep)) return 1;
        }
    }
    return 0;
}

/* The core with progress reports (see kernels.h). */
static uf_status greedy_core(const float *P, size_t N, int d, const size_t *start,
                             size_t n_start, size_t n_keep, int naive, size_t *out,
                             uf_progress_fn progress, void *user, int nth)
{
    size_t bytes;
    if (!P || !out || (n_start && !start) || d < 1 || N == 0)
        return uf__err(UF_ERR_ARG, "coreset: bad arguments");
    if (N > UINT32_MAX / 2 || n_keep > N)
        return uf__err(UF_ERR_LIMIT, "coreset: %zu points / %zu picks exceed the limit", N,
                       n_keep);
    for (size_t s = 0; s < n_start; s++)
        if (start[s] >= N) return uf__err(UF_ERR_ARG, "coreset: start point out of range");
    if (n_keep == 0) return UF_OK;
    if (!uf__mul_ok(n_keep, (size_t)d * sizeof(float), &bytes))
        return uf__err(UF_ERR_LIMIT, "coreset: too many picks");

    float *m = malloc(N * sizeof *m); /* [N] */
    uint32_t *heap = naive ? NULL : malloc(N * sizeof *heap);  /* [N] */
    uint32_t *stamp = naive ? NULL : malloc(N * sizeof *stamp); /* [N] */
    float *C = naive ? NULL : malloc(bytes);                    /* [n_keep][d] */
    if (!m || (!naive && (!heap || !stamp || !C))) {
        free(m), free(heap), free(stamp), free(C);
        return uf__err(UF_ERR_NOMEM, "coreset: out of memory (%zu points)", N);
    }
    init_min_dist(P, N, d, start, n_start, m, nth > 0 ? nth : uf_get_threads());
    int cancelled = 0;
    if (naive)
        greedy_naive(P, N, d, m, n_keep, out);
    else
        cancelled = greedy_lazy(P, N, d, m, n_keep, out, heap, stamp, C, progress, user);
    free(m), free(heap), free(stamp), free(C);
    if (cancelled) return uf__err(UF_ERR_ARG, "cancelled");
    return UF_OK;
}

uf_status uf__coreset_greedy_core(const float *P, size_t N, int d, const size_t *start,
                                  size_t n_start, size_t n_keep, int naive, size_t *out)
{
    return greedy_core(P, N, d, start, n_start, n_keep, naive, out, NULL, NULL, 0);
}

uf_status uf__coreset_greedy(const float *X, size_t N, int D, double fraction, uint64_t seed,
                             size_t *out_idx, size_t *n_out)
{
    return uf__coreset_greedy_progress(X, N, D, fraction, seed, out_idx, n_out, NULL, NULL, 0);
}

uf_status uf__coreset_project(const float *X, size_t N, int D, uint64_t seed, int nth, float *P)
{
    const int d = UF__CORESET_PROJ_DIM;
    float *W = malloc((size_t)d * (size_t)D * sizeof *W); /* [d][D] */
    /* P = X W^T in chunks of rows, so the packed copy of X stays small */
    const size_t rows = 40 * UF__MR_MAX;
    float *ap = aligned_alloc(64, rows * (size_t)D * sizeof(float)); /* [rows][D] */
    if (!W || !ap) {
        free(W), free(ap);
        return uf__err(UF_ERR_NOMEM, "coreset: out of memory projecting %zu features", N);
    }
    uf__coreset_projection(seed, D, d, W);
    const uf__kern *kn = uf__kern_get();
    for (size_t r0 = 0; r0 < N; r0 += rows)
        kn->gemm(nth > 0 ? nth : uf_get_threads(), (int)(N - r0 < rows ? N - r0 : rows), d, D,
                 X + r0 * D, D, W, NULL, P + r0 * d, d, UF__EPI_SET, ap, NULL);
    free(ap);
    free(W);
    return UF_OK;
}

uf_status uf__coreset_greedy_progress(const float *X, size_t N, int D, double fraction,
                                      uint64_t seed, size_t *out_idx, size_t *n_out,
                                      uf_progress_fn progress, void *user, int nth)
{
    size_t nx, np;
    if (!X || !out_idx || !n_out || D < 1) return uf__err(UF_ERR_ARG, "coreset: bad arguments");
    *n_out = 0;
    size_t n_keep = uf__coreset_count(N, fraction);
    if (n_keep == 0)
        return uf__err(UF_ERR_ARG, "coreset: bad size %zu or fraction %g", N, fraction);
    if (!uf__mul_ok(N, (size_t)D, &nx) || !uf__mul_ok(N, UF__CORESET_PROJ_DIM, &np) ||
        N > UINT32_MAX / 2)
        return uf__err(UF_ERR_LIMIT, "coreset: %zu x %d features exceed the limit", N, D);
    for (size_t e = 0; e < nx; e++)
        if (!isfinite(X[e]))
            return uf__err(UF_ERR_NONFINITE, "coreset: feature %zu, dim %zu is not finite",
                           e / (size_t)D, e % (size_t)D);
    if (n_keep == N) { /* PatchCore returns the features unchanged */
        for (size_t i = 0; i < N; i++) out_idx[i] = i;
        *n_out = N;
        return UF_OK;
    }

    /* Project to 128 dims unless already 128 (P = X W^T, W [128][D]). */
    const int d = UF__CORESET_PROJ_DIM;
    float *P = NULL; /* [N][d] */
    if (D != d) {
        if (!(P = malloc(np * sizeof *P)))
            return uf__err(UF_ERR_NOMEM, "coreset: out of memory projecting %zu features", N);
        uf_status sp = uf__coreset_project(X, N, D, seed, nth, P);
        if (sp != UF_OK) {
            free(P);
            return sp;
        }
    }
    size_t start[UF__CORESET_N_START]; /* [ns] */
    size_t ns = N < UF__CORESET_N_START ? N : UF__CORESET_N_START;
    uf_status st = uf__coreset_start_points(seed, N, ns, start);
    if (st == UF_OK)
        st = greedy_core(P ? P : X, N, d, start, ns, n_keep, 0, out_idx, progress, user, nth);
    free(P);
    if (st == UF_OK) *n_out = n_keep;
    return st;
}
