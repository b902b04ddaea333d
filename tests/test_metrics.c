/*
 * test_metrics.c - tests of uf_auroc against scikit-learn's roc_auc_score.
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
 */
#include "harness.h"
#include "uniformaly.h"

#include <stdint.h>
#include <time.h>

#define DATA "tests/data/metrics/"

/* ---- splitmix64, as in scripts/gen_metrics_golden.py ---------------------------------- */

typedef struct {
    uint64_t s;
} splitmix;

static splitmix sm_new(uint64_t seed, uint64_t stream)
{
    splitmix r = {seed ^ (stream * 0xD1B54A32D192ED03ull)};
    return r;
}

static uint64_t sm_next(splitmix *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The script's generated cases: kind 'q' (2048 tied levels) or 'c' (24-bit uniform). */
static void gen_case(char kind, uint64_t seed, size_t n, float *s, uint8_t *y)
{
    splitmix r = sm_new(seed, 7);
    for (size_t i = 0; i < n; i++) {
        uint64_t a = sm_next(&r), b = sm_next(&r);
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

/* Every case of expected.txt, within 1e-12 of sklearn. */
static void test_golden(void)
{
    FILE *f = fopen(DATA "expected.txt", "r");
    REQUIRE(f != NULL);
    char line[256];
    int n_cases = 0;
    while (fgets(line, sizeof line, f)) {
        char what[16], name[64];
        size_t n = 0;
        double want = 0;
        unsigned long long seed = 0;
        float *s = NULL;
        uint8_t *y = NULL;
        int ok = 0;
        if (sscanf(line, "file %63s %zu %lf", name, &n, &want) == 3) {
            s = malloc(n * sizeof *s);
            y = malloc(n);
            ok = s && y && load_case(name, n, s, y) == 0;
        } else if (sscanf(line, "gen %15s %llu %zu %lf", what, &seed, &n, &want) == 4) {
            snprintf(name, sizeof name, "gen %s seed %llu", what, seed);
            s = malloc(n * sizeof *s);
            y = malloc(n);
            ok = s && y;
            if (ok) gen_case(what[0], seed, n, s, y);
        } else {
            CHECKF(0, "bad line in expected.txt: %s", line);
        }
        if (ok) {
            double got = uf_auroc(s, y, n);
            CHECKF(fabs(got - want) <= 1e-12, "%s (n %zu): got %.17g, sklearn %.17g", name, n,
                   got, want);
            n_cases++;
        } else {
            CHECKF(ok, "cannot build case %s", name);
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
    splitmix r = sm_new(42, 1);
    float s[257];
    uint8_t y[257];
    for (int trial = 0; trial < 300; trial++) {
        size_t n = 2 + (size_t)(sm_next(&r) % 256);
        unsigned levels = 1 + (unsigned)(sm_next(&r) % 20);
        for (size_t i = 0; i < n; i++) {
            int v = (int)(sm_next(&r) % levels) - (int)levels / 2;
            s[i] = v == 0 && (sm_next(&r) & 1) ? -0.0f : (float)v * 0.375f;
            y[i] = (uint8_t)(sm_next(&r) % 3 == 0 ? 1 + sm_next(&r) % 255 : 0);
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
    splitmix r = sm_new(5, 3);
    for (size_t i = 0; i < n; i++) {
        uint64_t a = sm_next(&r);
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
    for (size_t i = 0; i < n; i++) s[i] = (float)(sm_next(&r) >> 40) / 16777216.0f;
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

int main(void)
{
    RUN(test_golden);
    RUN(test_pairs);
    RUN(test_large_exact);
    RUN(test_edge_cases);
    return TEST_DONE();
}
