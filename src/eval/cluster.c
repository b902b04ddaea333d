/*
 * cluster.c - anomaly clustering: K-means (k-means++ seeding, Lloyd iterations, restarts)
 * and the agreement measures used to judge a clustering against the true defect types:
 * NMI and ARI (as scikit-learn 1.2) and F1 after Hungarian matching of clusters to types.
 *
 * Sizes here are small (one feature vector per defective image: tens to a few thousand
 * points, a handful of types), so the code favours exactness and determinism over speed:
 * distances in double, sums in a fixed order, integer pair counts. The one parallel loop
 * (nearest centre per point) writes per-point results only, so the output does not depend
 * on the thread count.
 *
 * The Hungarian algorithm is implemented here (O(k^3), shortest augmenting paths with
 * potentials) because Debian ships Munkres only for Perl and Python
 * (libalgorithm-munkres-perl, python3-munkres), no C library, and k is tiny; the
 * matching maximises the number of items whose cluster is matched to their own type.
 */
#include "core/internal.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Labelings must index with 32 bits and be counted in int. */
#define CL_MAX_N ((size_t)1 << 31)
/* Largest contingency table (types x clusters) matched by the Hungarian algorithm. */
#define CL_MAX_CELLS ((size_t)1 << 22)

/* ==================================================================================== */
/* Contingency table                                                                    */
/* ==================================================================================== */

static int cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return (a > b) - (a < b);
}

/* Dense ids of v[n]: id[i] in 0..k-1 numbering the distinct values in increasing order;
 * returns k. tmp[n] is scratch; n < 2^31. */
static uint32_t dense_ids(const int *v, size_t n, uint32_t *id, uint64_t *tmp)
{
    for (size_t i = 0; i < n; i++)
        tmp[i] = (uint64_t)((uint32_t)v[i] ^ 0x80000000u) << 32 | (uint64_t)i;
    qsort(tmp, n, sizeof *tmp, cmp_u64);
    uint32_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || (tmp[i] >> 32) != (tmp[i - 1] >> 32)) k++;
        id[(uint32_t)tmp[i]] = k - 1;
    }
    return k;
}

/* The contingency table of two labelings: its nonzero cells in row-major order. */
typedef struct ctab {
    uint32_t ka, kb;     /* distinct values of a (rows) and b (columns)  */
    uint64_t *asum;      /* [ka] row sums: sizes of a's classes          */
    uint64_t *bsum;      /* [kb] column sums                             */
    size_t nnz;          /* nonzero cells                                */
    uint32_t *ci, *cj;   /* [nnz] row and column of each nonzero cell    */
    uint64_t *cn;        /* [nnz] its count                              */
} ctab;

static void ctab_free(ctab *t)
{
    free(t->asum);
    free(t->bsum);
    free(t->ci);
    free(t->cj);
    free(t->cn);
    memset(t, 0, sizeof *t);
}

/* Build the table of a[n], b[n] (1 <= n < 2^31). Returns 0, or -1 with the message set
 * (out of memory); fn names the caller in messages. */
static int ctab_build(const int *a, const int *b, size_t n, const char *fn, ctab *t)
{
    memset(t, 0, sizeof *t);
    uint32_t *ia = malloc(n * sizeof *ia); /* [n] dense ids of a */
    uint32_t *ib = malloc(n * sizeof *ib); /* [n] dense ids of b */
    uint64_t *tmp = malloc(n * sizeof *tmp); /* [n] sort keys     */
    int ok = ia && ib && tmp;
    if (ok) {
        t->ka = dense_ids(a, n, ia, tmp);
        t->kb = dense_ids(b, n, ib, tmp);
        /* sort the (row, column) pairs: runs are the nonzero cells */
        for (size_t i = 0; i < n; i++) tmp[i] = (uint64_t)ia[i] << 32 | ib[i];
        qsort(tmp, n, sizeof *tmp, cmp_u64);
        size_t nnz = 0;
        for (size_t i = 0; i < n; i++) nnz += i == 0 || tmp[i] != tmp[i - 1];
        t->asum = calloc(t->ka, sizeof *t->asum);
        t->bsum = calloc(t->kb, sizeof *t->bsum);
        t->ci = malloc(nnz * sizeof *t->ci);
        t->cj = malloc(nnz * sizeof *t->cj);
        t->cn = malloc(nnz * sizeof *t->cn);
        ok = t->asum && t->bsum && t->ci && t->cj && t->cn;
        if (ok) {
            size_t c = 0;
            for (size_t i = 0; i < n; i++) {
                if (i == 0 || tmp[i] != tmp[i - 1]) {
                    t->ci[c] = (uint32_t)(tmp[i] >> 32);
                    t->cj[c] = (uint32_t)tmp[i];
                    t->cn[c] = 0;
                    c++;
                }
                t->cn[c - 1]++;
                t->asum[tmp[i] >> 32]++;
                t->bsum[(uint32_t)tmp[i]]++;
            }
            t->nnz = nnz;
        }
    }
    free(ia);
    free(ib);
    free(tmp);
    if (!ok) {
        ctab_free(t);
        uf__err(UF_ERR_NOMEM, "%s: cannot allocate the contingency table of %zu items", fn, n);
        return -1;
    }
    return 0;
}

/* Common argument checks; returns 0 when the caller may proceed. */
static int check_pair(const int *a, const int *b, size_t n, const char *fn)
{
    if (n > 0 && (!a || !b)) {
        uf__err(UF_ERR_ARG, "%s: NULL labels", fn);
        return -1;
    }
    if (n >= CL_MAX_N) {
        uf__err(UF_ERR_LIMIT, "%s: %zu items is too many", fn, n);
        return -1;
    }
    return 0;
}

/* ==================================================================================== */
/* NMI and ARI                                                                          */
/* ==================================================================================== */

/* Entropy (nats) of class sizes s[k] summing to n, as sklearn's entropy(). */
static double entropy(const uint64_t *s, uint32_t k, double n)
{
    if (k == 1) return 0.0;
    double h = 0, ln = log(n);
    for (uint32_t i = 0; i < k; i++) h += ((double)s[i] / n) * (log((double)s[i]) - ln);
    return -h;
}

double uf_nmi(const int *a, const int *b, size_t n)
{
    if (check_pair(a, b, n, "uf_nmi")) return NAN;
    if (n == 0) return 1.0;
    ctab t;
    if (ctab_build(a, b, n, "uf_nmi", &t)) return NAN;
    double r;
    if (t.ka == 1 && t.kb == 1) {
        r = 1.0; /* neither labeling splits the data: a perfect match */
    } else if (t.ka == 1 || t.kb == 1) {
        r = 0.0; /* mutual information 0 */
    } else {
        /* mutual_info_score term by term: tiny terms are zeroed, the sum clipped at 0 */
        double dn = (double)n, ln = log(dn), mi = 0;
        for (size_t c = 0; c < t.nnz; c++) {
            double nij = (double)t.cn[c], p = nij / dn;
            double outer = (double)t.asum[t.ci[c]] * (double)t.bsum[t.cj[c]];
            double term = p * (log(nij) - ln) + p * (-log(outer) + ln + ln);
            if (fabs(term) < DBL_EPSILON) term = 0.0;
            mi += term;
        }
        if (mi <= 0) {
            r = 0.0;
        } else {
            double ha = entropy(t.asum, t.ka, dn), hb = entropy(t.bsum, t.kb, dn);
            r = mi / ((ha + hb) / 2.0);
        }
    }
    ctab_free(&t);
    return r;
}

double uf_ari(const int *a, const int *b, size_t n)
{
    if (check_pair(a, b, n, "uf_ari")) return NAN;
    if (n == 0) return 1.0;
    ctab t;
    if (ctab_build(a, b, n, "uf_ari", &t)) return NAN;
    /* pair_confusion_matrix in exact integers (ordered pairs): n < 2^31, so every count
     * is below 2^62 and products below 2^124 */
    __extension__ typedef __int128 i128;
    int64_t N = (int64_t)n, ss = 0, sa = 0, sb = 0;
    for (size_t c = 0; c < t.nnz; c++) {
        int64_t v = (int64_t)t.cn[c];
        ss += v * v;
        sa += v * (int64_t)t.asum[t.ci[c]];
        sb += v * (int64_t)t.bsum[t.cj[c]];
    }
    int64_t tp = ss - N, fp = sb - ss, fn = sa - ss, tn = N * N - fp - fn - ss;
    ctab_free(&t);
    if (fn == 0 && fp == 0) return 1.0;
    i128 num = 2 * ((i128)tp * tn - (i128)fn * fp);
    i128 den = (i128)(tp + fn) * (fn + tn) + (i128)(tp + fp) * (fp + tn);
    return (double)((long double)num / (long double)den);
}

/* ==================================================================================== */
/* Hungarian matching and clustering F1                                                 */
/* ==================================================================================== */

/*
 * Minimum-cost assignment of the rows of cost[r][m] (r <= m) to distinct columns:
 * shortest augmenting paths with row/column potentials, O(r^2 m) (the e-maxx
 * formulation). col_of[r] receives each row's column. Integer costs, so exact.
 * Returns 0, or -1 when out of memory.
 */
static int hungarian(const int64_t *cost, int r, int m, int *col_of)
{
    int64_t *u = calloc((size_t)r + 1, sizeof *u);          /* [r+1] row potentials    */
    int64_t *v = calloc((size_t)m + 1, sizeof *v);          /* [m+1] column potentials */
    int64_t *minv = malloc(((size_t)m + 1) * sizeof *minv); /* [m+1] slack per column  */
    int *p = calloc((size_t)m + 1, sizeof *p);   /* [m+1] row of each column, 1-based; 0 none */
    int *way = calloc((size_t)m + 1, sizeof *way); /* [m+1] previous column on the path  */
    char *used = malloc((size_t)m + 1);            /* [m+1] column visited               */
    int ok = u && v && minv && p && way && used;
    if (ok) {
        for (int i = 1; i <= r; i++) {
            p[0] = i;
            int j0 = 0;
            for (int j = 0; j <= m; j++) {
                minv[j] = INT64_MAX;
                used[j] = 0;
            }
            do {
                used[j0] = 1;
                int i0 = p[j0], j1 = 0;
                int64_t delta = INT64_MAX;
                for (int j = 1; j <= m; j++) {
                    if (used[j]) continue;
                    int64_t cur =
                        cost[(size_t)(i0 - 1) * (size_t)m + (size_t)(j - 1)] - u[i0] - v[j];
                    if (cur < minv[j]) {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if (minv[j] < delta) {
                        delta = minv[j];
                        j1 = j;
                    }
                }
                for (int j = 0; j <= m; j++) {
                    if (used[j]) {
                        u[p[j]] += delta;
                        v[j] -= delta;
                    } else {
                        minv[j] -= delta;
                    }
                }
                j0 = j1;
            } while (p[j0] != 0);
            /* flip the augmenting path */
            do {
                int j1 = way[j0];
                p[j0] = p[j1];
                j0 = j1;
            } while (j0);
        }
        for (int j = 1; j <= m; j++)
            if (p[j]) col_of[p[j] - 1] = j - 1;
    }
    free(u);
    free(v);
    free(minv);
    free(p);
    free(way);
    free(used);
    return ok ? 0 : -1;
}

/* Match clusters to types maximising the matched items. On success returns 0 and sets
 * *matched (items in a matched (type, cluster) cell) and, when f1c is not NULL, the
 * per-type F1 of the mapping in f1c[kt] (kt = *n_types). */
static int match_clusters(const int *truth, const int *pred, size_t n, const char *fn,
                          uint64_t *matched, double **f1c, uint32_t *n_types)
{
    if (check_pair(truth, pred, n, fn)) return -1;
    if (n == 0) {
        uf__err(UF_ERR_ARG, "%s: no items", fn);
        return -1;
    }
    ctab t;
    if (ctab_build(truth, pred, n, fn, &t)) return -1;
    size_t cells = (size_t)t.ka * t.kb;
    if (cells > CL_MAX_CELLS) {
        uf__err(UF_ERR_LIMIT, "%s: %u types x %u clusters is too many to match", fn, t.ka,
                t.kb);
        ctab_free(&t);
        return -1;
    }
    /* rows = the smaller side; cost = -count */
    int tr = t.ka <= t.kb; /* rows are the types */
    int r = (int)(tr ? t.ka : t.kb), m = (int)(tr ? t.kb : t.ka);
    int64_t *cost = calloc(cells, sizeof *cost); /* [r][m] */
    int *col_of = malloc((size_t)r * sizeof *col_of); /* [r] */
    double *f = f1c ? calloc(t.ka, sizeof *f) : NULL; /* [ka] */
    int rc = -1;
    if (!cost || !col_of || (f1c && !f)) {
        uf__err(UF_ERR_NOMEM, "%s: cannot allocate the %u x %u matching", fn, t.ka, t.kb);
    } else {
        for (size_t c = 0; c < t.nnz; c++) {
            size_t row = tr ? t.ci[c] : t.cj[c], col = tr ? t.cj[c] : t.ci[c];
            cost[row * (size_t)m + col] = -(int64_t)t.cn[c];
        }
        if (hungarian(cost, r, m, col_of)) {
            uf__err(UF_ERR_NOMEM, "%s: cannot allocate the %u x %u matching", fn, t.ka, t.kb);
        } else {
            uint64_t sum = 0;
            for (int i = 0; i < r; i++) {
                uint64_t cnt = (uint64_t)(-cost[(size_t)i * (size_t)m + (size_t)col_of[i]]);
                sum += cnt;
                if (f) {
                    uint32_t type = tr ? (uint32_t)i : (uint32_t)col_of[i];
                    uint32_t clus = tr ? (uint32_t)col_of[i] : (uint32_t)i;
                    f[type] = 2.0 * (double)cnt / (double)(t.asum[type] + t.bsum[clus]);
                }
            }
            *matched = sum;
            *n_types = t.ka;
            if (f1c) *f1c = f;
            f = NULL;
            rc = 0;
        }
    }
    free(cost);
    free(col_of);
    free(f);
    ctab_free(&t);
    return rc;
}

double uf_cluster_f1(const int *truth, const int *pred, size_t n)
{
    uint64_t matched;
    uint32_t kt;
    if (match_clusters(truth, pred, n, "uf_cluster_f1", &matched, NULL, &kt)) return NAN;
    return (double)matched / (double)n;
}

double uf_cluster_f1_macro(const int *truth, const int *pred, size_t n)
{
    uint64_t matched;
    uint32_t kt;
    double *f1c = NULL; /* [kt] */
    if (match_clusters(truth, pred, n, "uf_cluster_f1_macro", &matched, &f1c, &kt))
        return NAN;
    double s = 0;
    for (uint32_t c = 0; c < kt; c++) s += f1c[c];
    free(f1c);
    return s / (double)kt;
}

/* ==================================================================================== */
/* K-means                                                                              */
/* ==================================================================================== */

/* The seeded stream of each restart: splitmix64 (core/random.c), uniform in [0, 1). */
#define sm_next uf_splitmix64
#define sm_unif uf__unif53

/* Squared distance of float point x[d] to double centre c[d], in double. */
static inline double sqdist(const float *x, const double *c, int d)
{
    double s = 0;
    for (int j = 0; j < d; j++) {
        double t = (double)x[j] - c[j];
        s += t * t;
    }
    return s;
}

/* Squared distance between two points, in double (exact differences of floats). */
static inline double sqdist_ff(const float *x, const float *y, int d)
{
    double s = 0;
    for (int j = 0; j < d; j++) {
        double t = (double)x[j] - (double)y[j];
        s += t * t;
    }
    return s;
}

/* Run the nearest-centre loop in parallel only when it is worth a thread team. */
#define KM_PAR(n, k, d) ((double)(n) * (double)(k) * (double)(d) > 2e6)

/* Scratch of one K-means run. */
typedef struct km_work {
    double *C;       /* [k][d] centres                                     */
    size_t *cnt;     /* [k] points per cluster                             */
    double *closest; /* [n] k-means++: squared distance to the nearest centre */
    double *cand;    /* [n] k-means++: the same with a candidate added     */
    double *best;    /* [n] k-means++: the same for the best candidate     */
    double *cum;     /* [n] k-means++: prefix sums of closest              */
    double *dist;    /* [n] Lloyd: squared distance to the assigned centre */
    int *lab;        /* [n] Lloyd: current labels                          */
} km_work;

/* Greedy k-means++ seeding into w->C. Returns the number of centres placed: k, or fewer
 * when the points ran out of distinct values (the potential reached 0). */
static int km_seed(const float *X, size_t n, int d, int k, uint64_t *rng, km_work *w)
{
    int trials = 2 + (int)floor(log((double)k));
    size_t first = (size_t)(sm_unif(rng) * (double)n);
    if (first >= n) first = n - 1;
    const float *x0 = X + first * (size_t)d;
    for (int j = 0; j < d; j++) w->C[j] = x0[j];
    for (size_t i = 0; i < n; i++) w->closest[i] = sqdist_ff(X + i * (size_t)d, x0, d);
    for (int c = 1; c < k; c++) {
        double pot = 0;
        for (size_t i = 0; i < n; i++) w->cum[i] = (pot += w->closest[i]);
        if (!(pot > 0)) return c;
        double best_pot = INFINITY;
        size_t best_id = 0;
        for (int t = 0; t < trials; t++) {
            /* candidate drawn with probability closest[i] / pot: the first i whose prefix
             * sum exceeds r (a point already chosen has closest 0 and is never drawn) */
            double r = sm_unif(rng) * pot;
            size_t lo = 0, hi = n; /* first i in [lo, hi) with cum[i] > r */
            while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (w->cum[mid] > r) hi = mid;
                else lo = mid + 1;
            }
            if (lo == n) { /* r rounded up to pot: take the last point with weight */
                lo = n - 1;
                while (lo > 0 && !(w->closest[lo] > 0)) lo--;
            }
            const float *xc = X + lo * (size_t)d;
            double *cand = w->cand, *closest = w->closest;
#pragma omp parallel for schedule(static) if (KM_PAR(n, 1, d)) num_threads(uf_get_threads())
            for (size_t i = 0; i < n; i++) {
                double e = sqdist_ff(X + i * (size_t)d, xc, d);
                cand[i] = e < closest[i] ? e : closest[i];
            }
            double p = 0;
            for (size_t i = 0; i < n; i++) p += cand[i];
            if (p < best_pot) {
                best_pot = p;
                best_id = lo;
                double *sw = w->best;
                w->best = w->cand;
                w->cand = sw;
            }
        }
        double *sw = w->closest;
        w->closest = w->best;
        w->best = sw;
        const float *xb = X + best_id * (size_t)d;
        for (int j = 0; j < d; j++) w->C[(size_t)c * (size_t)d + (size_t)j] = xb[j];
    }
    return k;
}

/* Assign every point to its nearest centre (ties: the lower index); returns how many
 * labels changed. */
static size_t km_assign(const float *X, size_t n, int d, int k, km_work *w)
{
    size_t changed = 0;
    const double *C = w->C;
    int *lab = w->lab;
    double *dist = w->dist;
#pragma omp parallel for schedule(static) reduction(+ : changed) if (KM_PAR(n, k, d)) \
    num_threads(uf_get_threads())
    for (size_t i = 0; i < n; i++) {
        const float *x = X + i * (size_t)d;
        int bj = 0;
        double bd = sqdist(x, C, d);
        for (int j = 1; j < k; j++) {
            double e = sqdist(x, C + (size_t)j * (size_t)d, d);
            if (e < bd) {
                bd = e;
                bj = j;
            }
        }
        changed += lab[i] != bj;
        lab[i] = bj;
        dist[i] = bd;
    }
    return changed;
}

/* Centres = means of the current labels. An empty cluster takes the point farthest
 * from its centre among clusters of two or more points (ties: the lower index). */
static void km_update(const float *X, size_t n, int d, int k, km_work *w)
{
    double *C = w->C;
    memset(C, 0, (size_t)k * (size_t)d * sizeof *C);
    memset(w->cnt, 0, (size_t)k * sizeof *w->cnt);
    for (size_t i = 0; i < n; i++) {
        const float *x = X + i * (size_t)d;
        double *c = C + (size_t)w->lab[i] * (size_t)d;
        for (int j = 0; j < d; j++) c[j] += x[j];
        w->cnt[w->lab[i]]++;
    }
    for (int e = 0; e < k; e++) {
        if (w->cnt[e]) continue;
        size_t far = n;
        double fd = -1;
        for (size_t i = 0; i < n; i++)
            if (w->cnt[w->lab[i]] > 1 && w->dist[i] > fd) {
                fd = w->dist[i];
                far = i;
            }
        if (far == n) break; /* cannot happen while k <= n */
        const float *x = X + far * (size_t)d;
        double *from = C + (size_t)w->lab[far] * (size_t)d, *to = C + (size_t)e * (size_t)d;
        for (int j = 0; j < d; j++) {
            from[j] -= x[j];
            to[j] = x[j];
        }
        w->cnt[w->lab[far]]--;
        w->cnt[e] = 1;
        w->lab[far] = e;
        w->dist[far] = -1; /* not moved twice */
    }
    for (int c = 0; c < k; c++) {
        if (!w->cnt[c]) continue;
        double inv = 1.0 / (double)w->cnt[c];
        for (int j = 0; j < d; j++) C[(size_t)c * (size_t)d + (size_t)j] *= inv;
    }
}

/* Sum of squared distances of the points to the means of their clusters in w->lab
 * (the means are recomputed into w->C). */
static double km_inertia(const float *X, size_t n, int d, int k, km_work *w)
{
    double *C = w->C;
    memset(C, 0, (size_t)k * (size_t)d * sizeof *C);
    memset(w->cnt, 0, (size_t)k * sizeof *w->cnt);
    for (size_t i = 0; i < n; i++) {
        double *c = C + (size_t)w->lab[i] * (size_t)d;
        for (int j = 0; j < d; j++) c[j] += X[i * (size_t)d + (size_t)j];
        w->cnt[w->lab[i]]++;
    }
    for (int c = 0; c < k; c++)
        for (int j = 0; j < d && w->cnt[c]; j++)
            C[(size_t)c * (size_t)d + (size_t)j] /= (double)w->cnt[c];
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += sqdist(X + i * (size_t)d, C + (size_t)w->lab[i] * (size_t)d, d);
    return s;
}

uf_status uf_kmeans(const float *X, size_t n, int d, int k, int restarts, uint64_t seed,
                    int max_iter, int *labels, double *inertia)
{
    if (!X || !labels) return uf__err(UF_ERR_ARG, "uf_kmeans: NULL points or labels");
    if (n < 1 || d < 1)
        return uf__err(UF_ERR_ARG, "uf_kmeans: %zu points of dimension %d", n, d);
    if (n >= CL_MAX_N) return uf__err(UF_ERR_LIMIT, "uf_kmeans: %zu points is too many", n);
    if (k < 1 || (size_t)k > n)
        return uf__err(UF_ERR_ARG, "uf_kmeans: k = %d is not in [1, %zu points]", k, n);
    if (restarts < 1) return uf__err(UF_ERR_ARG, "uf_kmeans: restarts = %d", restarts);
    if (max_iter < 0) return uf__err(UF_ERR_ARG, "uf_kmeans: max_iter = %d", max_iter);
    size_t nd, kd;
    if (!uf__mul_ok(n, (size_t)d, &nd) || !uf__mul_ok((size_t)k, (size_t)d, &kd) ||
        nd > SIZE_MAX / sizeof(double))
        return uf__err(UF_ERR_LIMIT, "uf_kmeans: %zu x %d points is too many", n, d);
    for (size_t i = 0; i < nd; i++)
        if (!isfinite(X[i]))
            return uf__err(UF_ERR_NONFINITE, "uf_kmeans: point %zu coordinate %zu is %s",
                           i / (size_t)d, i % (size_t)d, isnan(X[i]) ? "NaN" : "infinite");

    km_work w;
    w.C = malloc(kd * sizeof *w.C);
    w.cnt = malloc((size_t)k * sizeof *w.cnt);
    w.closest = malloc(n * sizeof(double));
    w.cand = malloc(n * sizeof(double));
    w.best = malloc(n * sizeof(double));
    w.cum = malloc(n * sizeof(double));
    w.dist = malloc(n * sizeof(double));
    w.lab = malloc(n * sizeof(int));
    uf_status st = UF_OK;
    if (!w.C || !w.cnt || !w.closest || !w.cand || !w.best || !w.cum || !w.dist || !w.lab) {
        st = uf__err(UF_ERR_NOMEM, "uf_kmeans: cannot allocate for %zu points", n);
        goto done;
    }

    double best = INFINITY;
    for (int r = 0; r < restarts; r++) {
        /* restart r's stream: independent of every other restart and of threads */
        uint64_t rng = seed ^ ((uint64_t)(r + 1) * 0xD1B54A32D192ED03ull);
        sm_next(&rng);
        int placed = km_seed(X, n, d, k, &rng, &w);
        if (placed < k) {
            st = uf__err(UF_ERR_ARG,
                         "uf_kmeans: k = %d but the points have only %d distinct values", k,
                         placed);
            goto done;
        }
        for (size_t i = 0; i < n; i++) w.lab[i] = -1;
        km_assign(X, n, d, k, &w);
        for (int it = 0; it < max_iter; it++) {
            km_update(X, n, d, k, &w);
            if (km_assign(X, n, d, k, &w) == 0) break;
        }
        double in = km_inertia(X, n, d, k, &w);
        if (r == 0 || in < best) {
            best = in;
            memcpy(labels, w.lab, n * sizeof *labels);
        }
    }
    if (inertia) *inertia = best;
done:
    free(w.C);
    free(w.cnt);
    free(w.closest);
    free(w.cand);
    free(w.best);
    free(w.cum);
    free(w.dist);
    free(w.lab);
    return st;
}
