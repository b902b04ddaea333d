/*
 * test_metrics.c - tests of uf_auroc, uf_f1_max and uf_pixel_metrics against scikit-learn,
 * MVTec AD's AU-PRO definition and brute force.
 *
 * Golden values come from scripts/gen_metrics_golden.py (sklearn 1.2) in
 * tests/data/metrics/: small cases stored in full ("score label" text lines: random,
 * rounded to one decimal, all tied, a single positive / negative, 2 % positives with
 * arbitrary nonzero label bytes, signed zeros and infinities, perfect and inverted
 * separation) and 100k-sample cases regenerated here from the script's splitmix64
 * integer recipe. Agreement is required within 1e-12.
 *
 * Independent references computed here: an O(P N) pair count on random small inputs with
 * many ties, and an exact per-bin count on 5 million quantised scores (the size of a
 * pixel AUROC), in integers. Edge cases: n = 0, one class, NULL, NaN -> NaN.
 * The 5 M case also prints its time (no assertion on it).
 *
 * uf_f1_max: f1.txt (sklearn precision_recall_curve F1-max of the same cases) within
 * 1e-12, and a brute-force loop over thresholds on small tied inputs.
 * uf_pixel_metrics: pixel.txt holds synthetic test sets (regenerated here by
 * pixel_case(), identical to the script's: continuous, 64-level tied, signed with +-0;
 * rectangles, disks, diagonal runs, NULL masks, whole-image masks; up to 4 million
 * pixels) with sklearn's AUROC and F1-max (within 1e-12) and an exact float64 AUPRO
 * (within 1e-10); with forced small memory the merged results must stay within their
 * reported bounds. A brute force over thresholds (own 8-connected labelling) on random
 * small sets, hand-computed cases and the error paths complete it.
 */
#include "harness.h"
#include "uniformaly.h"

#include <stdint.h>
#include <time.h>

#define DATA "tests/data/metrics/"

/* ---- inputs as scripts/gen_metrics_golden.py draws them (th_sm: splitmix64) ---------- */

/* The script's generated cases: kind 'q' (2048 tied levels) or 'c' (24-bit uniform). */
static void gen_case(char kind, uint64_t seed, size_t n, float *s, uint8_t *y)
{
    th_sm r = th_sm_new(seed, 7);
    for (size_t i = 0; i < n; i++) {
        uint64_t a = th_sm_next(&r), b = th_sm_next(&r);
        uint64_t bin = a >> 53;
        s[i] = kind == 'q' ? (float)bin / 64.0f : (float)(a >> 40) / 16777216.0f;
        y[i] = (b >> 32) < 85899345ull + bin * 419430ull;
    }
}

/* Read DATA name ".txt" ("score label" lines) into s[n], y[n]; returns 0 on success. */
static int load_case(const char *name, size_t n, float *s, uint8_t *y)
{
    char path[512];
    snprintf(path, sizeof path, DATA "%s.txt", name);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        return -1;
    }
    size_t i = 0;
    char tok[64];
    int lab;
    while (i < n && fscanf(f, "%63s %d", tok, &lab) == 2) {
        s[i] = strtof(tok, NULL); /* handles "inf", "-inf", "-0" */
        y[i] = (uint8_t)lab;
        i++;
    }
    fclose(f);
    if (i != n) fprintf(stderr, "%s: %zu of %zu samples\n", path, i, n);
    return i == n ? 0 : -1;
}

/* One line of expected.txt / f1.txt: "file NAME N WANT" (a case file) or "gen KIND SEED N
 * WANT" (a generated case). Fills name [64], n, want and malloc'd s [n], y [n] (the caller
 * frees them, also on failure). Returns 1 when the case was built, 0 for a bad line or a
 * case that could not be read. */
static int read_case(const char *line, char *name, size_t *n, double *want, float **s,
                     uint8_t **y)
{
    char what[16];
    unsigned long long seed = 0;
    int file = sscanf(line, "file %63s %zu %lf", name, n, want) == 3;
    if (!file && sscanf(line, "gen %15s %llu %zu %lf", what, &seed, n, want) != 4) {
        snprintf(name, 64, "?");
        return 0;
    }
    *s = malloc(*n * sizeof **s);
    *y = malloc(*n);
    if (!*s || !*y) return 0;
    if (file) return load_case(name, *n, *s, *y) == 0;
    snprintf(name, 64, "gen %s seed %llu", what, seed);
    gen_case(what[0], seed, *n, *s, *y);
    return 1;
}

/* Every case of expected.txt, within 1e-12 of sklearn. */
static void test_golden(void)
{
    FILE *f = fopen(DATA "expected.txt", "r");
    REQUIRE(f != NULL);
    char line[256];
    int n_cases = 0;
    while (fgets(line, sizeof line, f)) {
        char name[64];
        size_t n = 0;
        double want = 0;
        float *s = NULL;
        uint8_t *y = NULL;
        int ok = read_case(line, name, &n, &want, &s, &y);
        CHECKF(ok, "bad line or case in expected.txt: %s", line);
        if (ok) {
            double got = uf_auroc(s, y, n);
            CHECKF(fabs(got - want) <= 1e-12, "%s (n %zu): got %.17g, sklearn %.17g", name, n,
                   got, want);
            n_cases++;
        }
        free(s);
        free(y);
    }
    fclose(f);
    CHECKF(n_cases == 12, "%d cases read", n_cases);
}

/* Against a brute-force pair count on random small inputs with heavy ties (including
 * signed zeros and negative scores). */
static void test_pairs(void)
{
    th_sm r = th_sm_new(42, 1);
    float s[257];
    uint8_t y[257];
    for (int trial = 0; trial < 300; trial++) {
        size_t n = 2 + (size_t)(th_sm_next(&r) % 256);
        unsigned levels = 1 + (unsigned)(th_sm_next(&r) % 20);
        for (size_t i = 0; i < n; i++) {
            int v = (int)(th_sm_next(&r) % levels) - (int)levels / 2;
            s[i] = v == 0 && (th_sm_next(&r) & 1) ? -0.0f : (float)v * 0.375f;
            y[i] = (uint8_t)(th_sm_next(&r) % 3 == 0 ? 1 + th_sm_next(&r) % 255 : 0);
        }
        y[0] = 7; /* both classes present */
        y[1] = 0;
        uint64_t twice = 0, P = 0, N = 0;
        for (size_t i = 0; i < n; i++) {
            if (!y[i]) continue;
            P++;
            for (size_t j = 0; j < n; j++)
                if (!y[j]) twice += s[i] > s[j] ? 2 : s[i] == s[j] ? 1 : 0;
        }
        N = n - P;
        double want = (double)twice / (2.0 * (double)P * (double)N);
        double got = uf_auroc(s, y, n);
        CHECKF(fabs(got - want) <= 1e-15, "trial %d n %zu: got %.17g, pair count %.17g", trial,
               n, got, want);
    }
}

/* 5 M scores on 1000 levels (a pixel-AUROC size) against an exact per-level count. */
static void test_large_exact(void)
{
    const size_t n = 5000000, L = 1000;
    float *s = malloc(n * sizeof *s);  /* [n] */
    uint8_t *y = malloc(n);            /* [n] */
    uint64_t *pos = calloc(L, sizeof *pos), *neg = calloc(L, sizeof *neg); /* [L] */
    REQUIRE(s && y && pos && neg);
    th_sm r = th_sm_new(5, 3);
    for (size_t i = 0; i < n; i++) {
        uint64_t a = th_sm_next(&r);
        size_t lev = (size_t)((a >> 32) % L);
        /* levels map to increasing floats spanning signs and exponents; level 400 is
         * +0 or -0 at random (equal scores) */
        float d = (float)lev - 400.0f;
        s[i] = lev < 400   ? -d * d * 0.001f
               : lev > 400 ? d * d * d * 1e-6f
                           : ((a & 0x10000) ? -0.0f : 0.0f);
        y[i] = ((a & 0xFFFF) < 1000 + 60 * lev); /* 1.5 % .. 93 % positive */
        (y[i] ? pos : neg)[lev]++;
    }
    /* 2U = sum_l pos_l * (2 * negatives below l + neg_l) */
    uint64_t twice = 0, below = 0, P = 0, N = 0;
    for (size_t l = 0; l < L; l++) {
        twice += pos[l] * (2 * below + neg[l]);
        below += neg[l];
        P += pos[l];
        N += neg[l];
    }
    double want = (double)((long double)twice / (2.0L * (long double)P * (long double)N));
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    double got = uf_auroc(s, y, n);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    fprintf(stderr, "    auroc of %zu scores (%llu positive): %.12f in %.0f ms\n", n,
            (unsigned long long)P, got, ms);
    CHECKF(fabs(got - want) <= 1e-14, "got %.17g, exact %.17g", got, want);

    /* continuous scores (every one distinct or nearly): flips of the label of a single
     * sample move the AUC; the exact value is not known here, only its range */
    for (size_t i = 0; i < n; i++) s[i] = (float)(th_sm_next(&r) >> 40) / 16777216.0f;
    got = uf_auroc(s, y, n);
    CHECKF(fabs(got - 0.5) < 0.01, "uniform noise: %.6f", got);
    free(s);
    free(y);
    free(pos);
    free(neg);
}

static void test_edge_cases(void)
{
    float s[4] = {0.1f, 0.4f, 0.35f, 0.8f};
    uint8_t y[4] = {0, 0, 1, 1};
    CHECK(fabs(uf_auroc(s, y, 4) - 0.75) < 1e-15);
    CHECK(isnan(uf_auroc(s, y, 0)));           /* no samples              */
    CHECK(isnan(uf_auroc(s, y, 2)));           /* negatives only          */
    CHECK(isnan(uf_auroc(s + 2, y + 2, 2)));   /* positives only          */
    CHECK(isnan(uf_auroc(s, y, 1)));
    CHECK(strstr(uf_errmsg(), "one class") != NULL);
    CHECK(isnan(uf_auroc(NULL, y, 4)));
    CHECK(isnan(uf_auroc(s, NULL, 4)));
    CHECK(isnan(uf_auroc(NULL, NULL, 0)));
    CHECK(strstr(uf_errmsg(), "NULL") != NULL);
    s[3] = NAN;
    CHECK(isnan(uf_auroc(s, y, 4)));
    CHECK(strstr(uf_errmsg(), "NaN") != NULL);
    s[3] = 0.8f;
    s[0] = -NAN;
    CHECK(isnan(uf_auroc(s, y, 4)));
    s[0] = INFINITY; /* infinities are fine: a negative at +inf beats both positives */
    CHECK(fabs(uf_auroc(s, y, 4) - 0.25) < 1e-15);
    /* two samples, one each */
    float t[2] = {1.0f, 1.0f};
    uint8_t z[2] = {1, 0};
    CHECK(uf_auroc(t, z, 2) == 0.5);
    t[0] = 2.0f;
    CHECK(uf_auroc(t, z, 2) == 1.0);
    t[0] = 0.0f;
    CHECK(uf_auroc(t, z, 2) == 0.0);
}

/* ==================================================================================== */
/* Image F1-max                                                                         */
/* ==================================================================================== */

/* Every case of f1.txt (the cases of expected.txt), within 1e-12 of scikit-learn's
 * precision_recall_curve-based F1-max. */
static void test_f1_golden(void)
{
    FILE *f = fopen(DATA "f1.txt", "r");
    REQUIRE(f != NULL);
    char line[256];
    int n_cases = 0;
    double worst = 0;
    while (fgets(line, sizeof line, f)) {
        char name[64];
        size_t n = 0;
        double want = 0;
        float *s = NULL;
        uint8_t *y = NULL;
        int ok = read_case(line, name, &n, &want, &s, &y);
        CHECKF(ok, "bad line or case in f1.txt: %s", line);
        if (ok) {
            double got = uf_f1_max(s, y, n);
            CHECKF(fabs(got - want) <= 1e-12, "%s (n %zu): got %.17g, sklearn %.17g", name, n,
                   got, want);
            if (fabs(got - want) > worst) worst = fabs(got - want);
            n_cases++;
        }
        free(s);
        free(y);
    }
    fclose(f);
    CHECKF(n_cases == 12, "%d cases read", n_cases);
    fprintf(stderr, "    f1_max: %d cases, max |diff| to sklearn %.2g\n", n_cases, worst);
}

/* Brute force over thresholds on small tied inputs, and edge cases. */
static void test_f1_small(void)
{
    th_sm r = th_sm_new(77, 2);
    float s[64];
    uint8_t y[64];
    for (int trial = 0; trial < 200; trial++) {
        size_t n = 1 + (size_t)(th_sm_next(&r) % 64);
        unsigned levels = 1 + (unsigned)(th_sm_next(&r) % 8);
        for (size_t i = 0; i < n; i++) {
            s[i] = (float)(th_sm_next(&r) % levels) - 2.0f;
            y[i] = (uint8_t)(th_sm_next(&r) % 3 == 0);
        }
        y[0] = 1;
        size_t P = 0;
        for (size_t i = 0; i < n; i++) P += y[i];
        double want = 0;
        for (size_t t = 0; t < n; t++) { /* threshold s[t] */
            size_t tp = 0, fp = 0;
            for (size_t i = 0; i < n; i++)
                if (s[i] >= s[t]) *(y[i] ? &tp : &fp) += 1;
            double f1 = 2.0 * (double)tp / (double)(tp + fp + P);
            if (f1 > want) want = f1;
        }
        double got = uf_f1_max(s, y, n);
        CHECKF(fabs(got - want) <= 1e-15, "trial %d: got %.17g, brute force %.17g", trial, got,
               want);
    }
    float t[3] = {0.5f, 0.2f, 0.9f};
    uint8_t z[3] = {0, 0, 0};
    CHECK(isnan(uf_f1_max(t, z, 3)));
    CHECK(strstr(uf_errmsg(), "no positive") != NULL);
    CHECK(isnan(uf_f1_max(NULL, z, 3)));
    CHECK(isnan(uf_f1_max(t, z, 0)));
    z[1] = 1;
    CHECK(fabs(uf_f1_max(t, z, 3) - 0.5) < 1e-15); /* threshold 0.2: TP 1, FP 2, P 1 */
    t[0] = NAN;
    CHECK(isnan(uf_f1_max(t, z, 3)));
    CHECK(strstr(uf_errmsg(), "NaN") != NULL);
    z[0] = z[2] = 1; /* all positive: F1 1 */
    t[0] = 0.1f;
    CHECK(uf_f1_max(t, z, 3) == 1.0);
}

/* ==================================================================================== */
/* Pixel metrics                                                                        */
/* ==================================================================================== */

/* A synthetic test set: maps[i] [h][w], masks[i] [h][w] or NULL. */
typedef struct pixset {
    int n, h, w;
    float **maps;
    uint8_t **masks;
    int *hs, *ws;
} pixset;

static void pixset_free(pixset *p)
{
    for (int i = 0; i < p->n; i++) {
        if (p->maps) free(p->maps[i]);
        if (p->masks) free(p->masks[i]);
    }
    free(p->maps);
    free(p->masks);
    free(p->hs);
    free(p->ws);
    memset(p, 0, sizeof *p);
}

/* The test set of scripts/gen_metrics_golden.py pixel_case() (see there). */
static int pixel_case(char mode, uint64_t seed, int n, int h, int w, pixset *p)
{
    p->n = n;
    p->h = h;
    p->w = w;
    p->maps = calloc((size_t)n, sizeof *p->maps);
    p->masks = calloc((size_t)n, sizeof *p->masks);
    p->hs = malloc((size_t)n * sizeof *p->hs);
    p->ws = malloc((size_t)n * sizeof *p->ws);
    if (!p->maps || !p->masks || !p->hs || !p->ws) return -1;
    size_t hw = (size_t)h * (size_t)w;
    for (int i = 0; i < n; i++) {
        th_sm r = th_sm_new(seed, 100 + (uint64_t)i);
        uint8_t *mask = calloc(hw, 1); /* [h][w] */
        float *map = malloc(hw * sizeof *map); /* [h][w] */
        p->maps[i] = map;
        p->hs[i] = h;
        p->ws[i] = w;
        if (!mask || !map) {
            free(mask);
            return -1;
        }
        int has_mask = i % 5 != 4;
        int n_shapes = has_mask ? (int)(th_sm_next(&r) % 4) : 0;
        for (int k = 0; k < n_shapes; k++) {
            int t = (int)(th_sm_next(&r) % 3);
            int64_t y0 = (int64_t)(th_sm_next(&r) % (uint64_t)h);
            int64_t x0 = (int64_t)(th_sm_next(&r) % (uint64_t)w);
            if (t == 0) {
                int64_t hh = 1 + (int64_t)(th_sm_next(&r) % (uint64_t)(h / 3 > 1 ? h / 3 : 1));
                int64_t ww = 1 + (int64_t)(th_sm_next(&r) % (uint64_t)(w / 3 > 1 ? w / 3 : 1));
                for (int64_t y = y0; y < y0 + hh && y < h; y++)
                    for (int64_t x = x0; x < x0 + ww && x < w; x++) mask[y * w + x] = 1;
            } else if (t == 1) {
                int m = (h < w ? h : w) / 5;
                int64_t rad = 1 + (int64_t)(th_sm_next(&r) % (uint64_t)(m > 1 ? m : 1));
                for (int64_t y = 0; y < h; y++)
                    for (int64_t x = 0; x < w; x++)
                        if ((y - y0) * (y - y0) + (x - x0) * (x - x0) <= rad * rad)
                            mask[y * w + x] = 255;
            } else {
                int64_t len = 2 + (int64_t)(th_sm_next(&r) % 6);
                for (int64_t k2 = 0; k2 < len; k2++)
                    if (y0 + k2 < h && x0 + k2 < w) mask[(y0 + k2) * w + x0 + k2] = 7;
            }
        }
        if (has_mask && i % 7 == 6) memset(mask, 1, hw);
        for (size_t q = 0; q < hw; q++) {
            uint64_t a = th_sm_next(&r);
            int64_t y = (int64_t)(q / (size_t)w), x = (int64_t)(q % (size_t)w);
            int64_t v = (int64_t)(a >> 44) + (mask[q] ? 600000 : 0) +
                        ((x * 7 + y * 13 + i * 101) % 1024) * 256;
            float s;
            if (mode == 'c') s = (float)((double)v / 1048576.0);
            else if (mode == 't') s = (float)((double)(v >> 15) / 32.0);
            else {
                s = (float)((double)((v >> 15) - 32) / 32.0);
                if (s == 0.0f && (a & 1)) s = -0.0f;
            }
            map[q] = s;
        }
        if (has_mask) p->masks[i] = mask;
        else free(mask);
    }
    return 0;
}

static uf_status pixset_metrics(const pixset *p, double max_fpr, size_t max_bytes,
                                uf_pixel_result *out)
{
    return uf_pixel_metrics((const float *const *)p->maps, (const uint8_t *const *)p->masks,
                            p->hs, p->ws, p->n, max_fpr, max_bytes, out);
}

/* Flatten into scores[N] and labels[N] for uf_auroc / uf_f1_max. */
static int pixset_flat(const pixset *p, float **s, uint8_t **y, size_t *N)
{
    size_t hw = (size_t)p->h * (size_t)p->w, n = hw * (size_t)p->n;
    *s = malloc(n * sizeof **s);
    *y = malloc(n);
    if (!*s || !*y) return -1;
    for (int i = 0; i < p->n; i++) {
        memcpy(*s + (size_t)i * hw, p->maps[i], hw * sizeof **s);
        for (size_t q = 0; q < hw; q++)
            (*y)[(size_t)i * hw + q] = p->masks[i] ? p->masks[i][q] != 0 : 0;
    }
    *N = n;
    return 0;
}

/* Every case of pixel.txt: scikit-learn's roc_auc_score and F1-max within 1e-12, the
 * exact float64 AUPRO within 1e-10 (the weight sums run in another order), region and
 * pixel counts exactly, exact = 1 at the default memory. Then the same sets with the
 * level-2 memory cut to force merged scores: every figure within its reported bound of
 * the exact one. Prints the achieved differences (the 4-million-pixel case included). */
static void test_pixel_golden(void)
{
    FILE *f = fopen(DATA "pixel.txt", "r");
    REQUIRE(f != NULL);
    char line[512];
    int n_cases = 0;
    double worst_auroc = 0, worst_aupro = 0, worst_f1 = 0, worst_official = 0;
    while (fgets(line, sizeof line, f)) {
        char mode;
        unsigned long long seed, n_anom, n_reg;
        int n, h, w;
        double max_fpr, auroc, aupro, f1, official;
        if (sscanf(line, "pixel %c %llu %d %d %d %lf %lf %lf %lf %llu %llu %lf", &mode, &seed,
                   &n, &h, &w, &max_fpr, &auroc, &aupro, &f1, &n_anom, &n_reg,
                   &official) != 12) {
            CHECKF(0, "bad line in pixel.txt: %s", line);
            continue;
        }
        pixset p;
        memset(&p, 0, sizeof p);
        if (pixel_case(mode, seed, n, h, w, &p)) {
            CHECKF(0, "out of memory building case %c %llu", mode, seed);
            pixset_free(&p);
            continue;
        }
        n_cases++;
        uf_pixel_result r;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        uf_status st = pixset_metrics(&p, max_fpr, 0, &r);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        CHECKF(st == UF_OK, "case %c %llu: %s", mode, seed, uf_errmsg());
        double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
        CHECKF(fabs(r.auroc - auroc) <= 1e-12, "case %c %llu auroc %.17g, sklearn %.17g", mode,
               seed, r.auroc, auroc);
        CHECKF(fabs(r.aupro - aupro) <= 1e-10, "case %c %llu aupro %.17g, exact %.17g", mode,
               seed, r.aupro, aupro);
        CHECKF(fabs(r.f1_max - f1) <= 1e-12, "case %c %llu f1 %.17g, sklearn %.17g", mode, seed,
               r.f1_max, f1);
        CHECKF(r.n_anomalous == n_anom && r.n_regions == n_reg,
               "case %c %llu: %llu anomalous pixels in %llu regions, expected %llu in %llu",
               mode, seed, (unsigned long long)r.n_anomalous,
               (unsigned long long)r.n_regions, n_anom, n_reg);
        CHECK(r.n_pixels == (uint64_t)n * (uint64_t)h * (uint64_t)w);
        CHECK(r.exact == 1 && r.auroc_err == 0 && r.aupro_err == 0 && r.f1_err == 0);
        if (fabs(r.auroc - auroc) > worst_auroc) worst_auroc = fabs(r.auroc - auroc);
        if (fabs(r.aupro - aupro) > worst_aupro) worst_aupro = fabs(r.aupro - aupro);
        if (fabs(r.f1_max - f1) > worst_f1) worst_f1 = fabs(r.f1_max - f1);
        if (fabs(r.aupro - official) > worst_official) worst_official = fabs(r.aupro - official);

        /* the F1 threshold reproduces the F1 when applied */
        float *fs;
        uint8_t *fy;
        size_t N;
        if (pixset_flat(&p, &fs, &fy, &N) == 0) {
            size_t tp = 0, fp = 0, P = 0;
            for (size_t q = 0; q < N; q++) {
                P += fy[q];
                if (fs[q] >= r.f1_threshold) *(fy[q] ? &tp : &fp) += 1;
            }
            double f1t = 2.0 * (double)tp / (double)(tp + fp + P);
            CHECKF(fabs(f1t - r.f1_max) <= 1e-15, "case %c %llu: threshold %.9g gives F1 %.17g",
                   mode, seed, r.f1_threshold, f1t);
            double a = uf_auroc(fs, fy, N);
            CHECKF(fabs(a - r.auroc) <= 1e-15, "case %c %llu: uf_auroc %.17g", mode, seed, a);
        }
        free(fs);
        free(fy);

        /* merged scores: 4 KiB, 64 KiB, 1 MiB of level-2 memory */
        static const size_t budgets[3] = {4096, 65536, 1 << 20};
        for (int b = 0; b < 3; b++) {
            uf_pixel_result q;
            REQUIRE_OK(pixset_metrics(&p, max_fpr, budgets[b], &q));
            double ea = fabs(q.auroc - auroc), ep = fabs(q.aupro - aupro);
            double ef = f1 - q.f1_max;
            CHECKF(ea <= q.auroc_err + 1e-12 && ep <= q.aupro_err + 1e-10 &&
                       ef >= -1e-12 && ef <= q.f1_err + 1e-12,
                   "case %c %llu, %zu bytes: errors %.3g %.3g %.3g beyond bounds %.3g %.3g %.3g",
                   mode, seed, budgets[b], ea, ep, ef, q.auroc_err, q.aupro_err, q.f1_err);
            CHECK(q.n_regions == n_reg && q.n_anomalous == n_anom);
            if (q.exact) CHECK(ea <= 1e-12 && ep <= 1e-10 && fabs(ef) <= 1e-12);
            if ((size_t)n * (size_t)h * (size_t)w > 1000000)
                fprintf(stderr,
                        "    %d x %d x %d pixels, %7zu bytes: |error| auroc %.2g (bound %.2g) "
                        "aupro %.2g (bound %.2g) f1 %.2g (bound %.2g)%s\n",
                        n, h, w, budgets[b], ea, q.auroc_err, ep, q.aupro_err, ef, q.f1_err,
                        q.exact ? " exact" : "");
            if (b == 2 && (size_t)n * (size_t)h * (size_t)w > 1000000)
                CHECKF(q.auroc_err <= 1e-4 && q.aupro_err <= 1e-3 && q.f1_err <= 1e-3,
                       "1 MiB bounds %.3g %.3g %.3g", q.auroc_err, q.aupro_err, q.f1_err);
        }
        if ((size_t)n * (size_t)h * (size_t)w > 1000000)
            fprintf(stderr,
                    "    %d x %d x %d pixels: exact in %.0f ms; auroc %.6f aupro %.6f f1 %.6f\n",
                    n, h, w, ms, r.auroc, r.aupro, r.f1_max);
        pixset_free(&p);
    }
    fclose(f);
    CHECKF(n_cases == 7, "%d cases", n_cases);
    fprintf(stderr,
            "    pixel golden: max |diff| auroc %.2g, aupro %.2g (vs MVTec's float32 code %.2g), "
            "f1 %.2g\n",
            worst_auroc, worst_aupro, worst_official, worst_f1);
}

/* 8-connected labelling by repeated min-propagation (independent of the library's flood
 * fill): lab[q] = 1 + smallest index of the region, 0 for background. Returns regions. */
static int brute_label(const uint8_t *m, int h, int w, int *lab)
{
    for (int q = 0; q < h * w; q++) lab[q] = m[q] ? q + 1 : 0;
    for (int changed = 1; changed;) {
        changed = 0;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                int q = y * w + x;
                if (!lab[q]) continue;
                for (int dy = -1; dy <= 1; dy++)
                    for (int dx = -1; dx <= 1; dx++) {
                        int ny = y + dy, nx = x + dx;
                        if (ny < 0 || ny >= h || nx < 0 || nx >= w) continue;
                        int l = lab[ny * w + nx];
                        if (l && l < lab[q]) {
                            lab[q] = l;
                            changed = 1;
                        }
                    }
            }
    }
    int R = 0;
    for (int q = 0; q < h * w; q++) R += lab[q] == q + 1;
    return R;
}

/* AUROC / AUPRO / F1-max straight from their definitions, threshold by threshold. */
static void brute_pixel(const pixset *p, double max_fpr, double *auroc, double *aupro,
                        double *f1, int *regions)
{
    int hw = p->h * p->w, n = p->n * hw;
    float *s = malloc((size_t)n * sizeof *s);
    int *reg = malloc((size_t)n * sizeof *reg);     /* global region id + 1, 0 normal */
    int *lab = malloc((size_t)hw * sizeof *lab);
    int *size = calloc((size_t)n + 1, sizeof *size);
    float *thr = malloc((size_t)n * sizeof *thr);
    int R = 0, P = 0;
    for (int i = 0; i < p->n; i++) {
        memcpy(s + i * hw, p->maps[i], (size_t)hw * sizeof *s);
        if (p->masks[i]) {
            brute_label(p->masks[i], p->h, p->w, lab);
            for (int q = 0; q < hw; q++) reg[i * hw + q] = lab[q] ? i * hw + lab[q] : 0;
        } else {
            for (int q = 0; q < hw; q++) reg[i * hw + q] = 0;
        }
    }
    for (int q = 0; q < n; q++) {
        if (reg[q]) {
            P++;
            if (size[reg[q]]++ == 0) R++;
        }
    }
    int N = n - P;
    /* distinct thresholds, descending */
    int nt = 0;
    for (int q = 0; q < n; q++) {
        int seen = 0;
        for (int t = 0; t < nt && !seen; t++) seen = thr[t] == s[q];
        if (!seen) thr[nt++] = s[q];
    }
    for (int a = 1; a < nt; a++)
        for (int b = a; b > 0 && thr[b - 1] < thr[b]; b--) {
            float t = thr[b];
            thr[b] = thr[b - 1];
            thr[b - 1] = t;
        }
    double x0 = 0, y0 = 0, area = 0, best = 0;
    int done = 0;
    for (int t = 0; t <= nt; t++) {
        double x1 = 1, y1 = 1;
        if (t < nt) {
            int tp = 0, fp = 0;
            double pro = 0;
            for (int q = 0; q < n; q++)
                if (s[q] >= thr[t]) {
                    if (reg[q]) {
                        tp++;
                        pro += 1.0 / size[reg[q]];
                    } else {
                        fp++;
                    }
                }
            double f = 2.0 * tp / (double)(tp + fp + P);
            if (f > best) best = f;
            x1 = (double)fp / N;
            y1 = pro / R > 1 ? 1 : pro / R;
        }
        if (!done) {
            if (x1 <= max_fpr) {
                area += 0.5 * (x1 - x0) * (y0 + y1);
            } else {
                double yi = y0 + (y1 - y0) * (max_fpr - x0) / (x1 - x0);
                area += 0.5 * (max_fpr - x0) * (y0 + yi);
                done = 1;
            }
        }
        x0 = x1;
        y0 = y1;
    }
    /* AUROC by pair counting */
    double pairs = 0;
    for (int a = 0; a < n; a++)
        if (reg[a])
            for (int b = 0; b < n; b++)
                if (!reg[b]) pairs += s[a] > s[b] ? 1 : s[a] == s[b] ? 0.5 : 0;
    *auroc = pairs / ((double)P * N);
    *aupro = area / max_fpr;
    *f1 = best;
    *regions = R;
    free(s);
    free(reg);
    free(lab);
    free(size);
    free(thr);
}

/* Random small sets (heavy ties, random blobs of anomalous pixels, some images without a
 * mask) against the brute force, exact and with merged scores. */
static void test_pixel_brute(void)
{
    th_sm r = th_sm_new(2024, 5);
    double worst = 0;
    for (int trial = 0; trial < 60; trial++) {
        pixset p;
        memset(&p, 0, sizeof p);
        p.n = 1 + (int)(th_sm_next(&r) % 4);
        p.h = 1 + (int)(th_sm_next(&r) % 12);
        p.w = 1 + (int)(th_sm_next(&r) % 12);
        p.maps = calloc((size_t)p.n, sizeof *p.maps);
        p.masks = calloc((size_t)p.n, sizeof *p.masks);
        p.hs = malloc((size_t)p.n * sizeof *p.hs);
        p.ws = malloc((size_t)p.n * sizeof *p.ws);
        REQUIRE(p.maps && p.masks && p.hs && p.ws);
        int hw = p.h * p.w;
        unsigned levels = 2 + (unsigned)(th_sm_next(&r) % 30);
        for (int i = 0; i < p.n; i++) {
            p.hs[i] = p.h;
            p.ws[i] = p.w;
            p.maps[i] = malloc((size_t)hw * sizeof(float));
            REQUIRE(p.maps[i]);
            if (i == 0 || th_sm_next(&r) % 3) {
                p.masks[i] = calloc((size_t)hw, 1);
                REQUIRE(p.masks[i]);
                unsigned dens = (unsigned)(th_sm_next(&r) % 60);
                for (int q = 0; q < hw; q++) p.masks[i][q] = (th_sm_next(&r) % 100) < dens;
            }
            for (int q = 0; q < hw; q++) {
                int a = p.masks[i] && p.masks[i][q];
                p.maps[i][q] = (float)((th_sm_next(&r) % levels) + (a ? levels / 3 : 0)) * 0.25f;
            }
        }
        /* both classes present */
        p.masks[0][0] = 1;
        p.masks[0][hw - 1] = hw > 1 ? 0 : 1;
        int has_neg = 0;
        for (int i = 0; i < p.n && !has_neg; i++)
            for (int q = 0; q < hw; q++) has_neg |= !(p.masks[i] && p.masks[i][q]);
        if (!has_neg) {
            pixset_free(&p);
            continue;
        }
        double max_fpr = (trial % 3 == 0) ? 0.3 : (trial % 3 == 1) ? 1.0 : 0.1;
        double ba, bp, bf;
        int br;
        brute_pixel(&p, max_fpr, &ba, &bp, &bf, &br);
        uf_pixel_result q;
        REQUIRE_OK(pixset_metrics(&p, max_fpr, 0, &q));
        CHECKF(fabs(q.auroc - ba) <= 1e-12 && fabs(q.aupro - bp) <= 1e-12 &&
                   fabs(q.f1_max - bf) <= 1e-12 && q.n_regions == (uint64_t)br,
               "trial %d (%d x %d x %d): got %.15f %.15f %.15f %llu, brute %.15f %.15f %.15f %d",
               trial, p.n, p.h, p.w, q.auroc, q.aupro, q.f1_max,
               (unsigned long long)q.n_regions, ba, bp, bf, br);
        if (fabs(q.aupro - bp) > worst) worst = fabs(q.aupro - bp);
        /* with a tiny budget: one slot per level-1 bucket */
        REQUIRE_OK(pixset_metrics(&p, max_fpr, 1, &q));
        CHECKF(fabs(q.auroc - ba) <= q.auroc_err + 1e-12 &&
                   fabs(q.aupro - bp) <= q.aupro_err + 1e-12 && bf - q.f1_max >= -1e-12 &&
                   bf - q.f1_max <= q.f1_err + 1e-12,
               "trial %d merged: %.15f %.15f %.15f (bounds %.3g %.3g %.3g), "
               "brute %.15f %.15f %.15f",
               trial, q.auroc, q.aupro, q.f1_max, q.auroc_err, q.aupro_err, q.f1_err, ba, bp, bf);
        pixset_free(&p);
    }
    fprintf(stderr, "    brute force: max |aupro diff| %.2g\n", worst);
}

/* Hand-computed figures, 8-connectivity, NULL masks, outliers, and the errors. */
static void test_pixel_cases(void)
{
    /* one 1 x 4 image: anomalous pixels 0 and 2 (two regions of one pixel) */
    float m0[4] = {0.9f, 0.8f, 0.1f, 0.2f};
    uint8_t k0[4] = {1, 0, 1, 0};
    const float *maps[3] = {m0};
    const uint8_t *masks[3] = {k0};
    int hs[3] = {1}, ws[3] = {4};
    uf_pixel_result r;
    REQUIRE_OK(uf_pixel_metrics(maps, masks, hs, ws, 1, 0.3, 0, &r));
    /* curve (0,0) (0,.5) (.5,.5) (1,.5) (1,1): at FPR 0.3 the area is 0.15 -> 0.5 */
    CHECKF(fabs(r.aupro - 0.5) < 1e-15, "aupro %.17g", r.aupro);
    CHECKF(fabs(r.auroc - 0.5) < 1e-15, "auroc %.17g", r.auroc);
    CHECKF(fabs(r.f1_max - 2.0 / 3.0) < 1e-15 && r.f1_threshold == 0.9f, "f1 %.17g at %g",
           r.f1_max, r.f1_threshold);
    CHECK(r.n_regions == 2 && r.n_anomalous == 2 && r.n_pixels == 4 && r.exact);
    REQUIRE_OK(uf_pixel_metrics(maps, masks, hs, ws, 1, 1.0, 0, &r));
    CHECKF(fabs(r.aupro - 0.5) < 1e-15, "aupro to FPR 1: %.17g", r.aupro); /* 0.5 * 1 */

    /* connectivity: two 2x2 squares touching at a corner are one region; a third square
     * one pixel apart is another */
    float m1[36];
    uint8_t k1[36] = {
        1, 1, 0, 0, 0, 0,
        1, 1, 0, 0, 0, 0,
        0, 0, 9, 9, 0, 0,
        0, 0, 9, 9, 0, 1,
        0, 0, 0, 0, 0, 1,
        0, 0, 0, 0, 0, 0,
    };
    for (int q = 0; q < 36; q++) m1[q] = k1[q] ? 1.0f + (float)q : 0.5f; /* separable */
    maps[0] = m1;
    masks[0] = k1;
    hs[0] = ws[0] = 6;
    REQUIRE_OK(uf_pixel_metrics(maps, masks, hs, ws, 1, 0.3, 0, &r));
    CHECKF(r.n_regions == 2, "%llu regions", (unsigned long long)r.n_regions);
    CHECK(r.auroc == 1.0 && r.aupro == 1.0 && r.f1_max == 1.0);

    /* masks NULL altogether, and images without a mask next to one with */
    REQUIRE_OK(uf_pixel_metrics(maps, NULL, hs, ws, 1, 0.3, 0, &r));
    CHECK(isnan(r.auroc) && isnan(r.aupro) && isnan(r.f1_max) && r.n_anomalous == 0);
    maps[1] = m0;
    masks[1] = NULL;
    hs[1] = 2;
    ws[1] = 2;
    REQUIRE_OK(uf_pixel_metrics(maps, masks, hs, ws, 2, 0.3, 0, &r));
    CHECK(r.n_pixels == 40 && r.n_regions == 2 && r.n_anomalous == 10);
    CHECK(r.auroc == 1.0 && r.aupro == 1.0);

    /* all pixels anomalous: AUROC and AUPRO undefined, F1 1 */
    uint8_t all[4] = {1, 1, 1, 1};
    maps[0] = m0;
    masks[0] = all;
    hs[0] = 1;
    ws[0] = 4;
    REQUIRE_OK(uf_pixel_metrics(maps, masks, hs, ws, 1, 0.3, 0, &r));
    CHECK(isnan(r.auroc) && isnan(r.aupro) && r.f1_max == 1.0 && r.n_regions == 1);

    /* outliers and extreme values keep exact order: scores spread over 1e-30 .. 1e30,
     * +-inf, signed zeros; equal to uf_auroc, also when merged */
    enum { NO = 5000 };
    float *mo = malloc(NO * sizeof *mo);
    uint8_t *ko = malloc(NO);
    REQUIRE(mo && ko);
    th_sm g = th_sm_new(9, 9);
    for (int q = 0; q < NO; q++) {
        uint64_t a = th_sm_next(&g);
        ko[q] = (a & 7) == 0;
        mo[q] = (float)((double)(a >> 40) / 16777216.0 + (ko[q] ? 0.3 : 0.0));
    }
    mo[0] = 1e30f;
    mo[1] = -1e30f;
    mo[2] = INFINITY;
    mo[3] = -INFINITY;
    mo[4] = 1e-30f;
    mo[5] = -0.0f;
    mo[6] = 0.0f;
    maps[0] = mo;
    masks[0] = ko;
    hs[0] = 50;
    ws[0] = 100;
    double want = uf_auroc(mo, ko, NO), wf = uf_f1_max(mo, ko, NO);
    REQUIRE_OK(uf_pixel_metrics(maps, masks, hs, ws, 1, 0.3, 0, &r));
    CHECKF(r.auroc == want && fabs(r.f1_max - wf) < 1e-15,
           "auroc %.17g vs %.17g, f1 %.17g vs %.17g", r.auroc, want, r.f1_max, wf);
    REQUIRE_OK(uf_pixel_metrics(maps, masks, hs, ws, 1, 0.3, 1, &r));
    CHECKF(!r.exact && fabs(r.auroc - want) <= r.auroc_err && r.auroc_err < 0.01,
           "merged auroc %.17g vs %.17g (bound %.3g)", r.auroc, want, r.auroc_err);

    /* errors */
    maps[0] = m0;
    masks[0] = k0;
    hs[0] = 1;
    ws[0] = 4;
    CHECK(uf_pixel_metrics(maps, masks, hs, ws, 1, 0.3, 0, NULL) == UF_ERR_ARG);
    CHECK(uf_pixel_metrics(NULL, masks, hs, ws, 1, 0.3, 0, &r) == UF_ERR_ARG);
    CHECK(isnan(r.auroc));
    CHECK(uf_pixel_metrics(maps, masks, hs, ws, 0, 0.3, 0, &r) == UF_ERR_ARG);
    CHECK(uf_pixel_metrics(maps, masks, hs, ws, 1, 0.0, 0, &r) == UF_ERR_ARG);
    CHECK(uf_pixel_metrics(maps, masks, hs, ws, 1, 1.5, 0, &r) == UF_ERR_ARG);
    CHECK(uf_pixel_metrics(maps, masks, hs, ws, 1, NAN, 0, &r) == UF_ERR_ARG);
    CHECK(strstr(uf_errmsg(), "max_fpr") != NULL);
    hs[0] = 0;
    CHECK(uf_pixel_metrics(maps, masks, hs, ws, 1, 0.3, 0, &r) == UF_ERR_ARG);
    hs[0] = 1;
    maps[1] = NULL;
    CHECK(uf_pixel_metrics(maps, masks, hs, ws, 2, 0.3, 0, &r) == UF_ERR_ARG);
    CHECK(strstr(uf_errmsg(), "map 1") != NULL);
    hs[1] = 65536;
    ws[1] = 65536;
    maps[1] = m0; /* never read: the size is refused first */
    CHECK(uf_pixel_metrics(maps, masks, hs, ws, 2, 0.3, 0, &r) == UF_ERR_LIMIT);
    float mn[6] = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f};
    mn[5] = NAN;
    maps[1] = mn;
    hs[1] = 2;
    ws[1] = 3;
    CHECK(uf_pixel_metrics(maps, masks, hs, ws, 2, 0.3, 0, &r) == UF_ERR_NONFINITE);
    CHECKF(strstr(uf_errmsg(), "map 1 pixel (1, 2)") != NULL, "%s", uf_errmsg());
    free(mo);
    free(ko);
}

int main(void)
{
    RUN(test_golden);
    RUN(test_pairs);
    RUN(test_large_exact);
    RUN(test_edge_cases);
    RUN(test_f1_golden);
    RUN(test_f1_small);
    RUN(test_pixel_golden);
    RUN(test_pixel_brute);
    RUN(test_pixel_cases);
    return TEST_DONE();
}
