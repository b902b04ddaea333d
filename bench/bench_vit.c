/*
 * bench_vit.c - our side of `make bench`: ViT forward speed, and the machine's sgemm speed.
 *
 * Loads a ViT checkpoint (the seeded random .safetensors that scripts/bench_ref.py writes,
 * or, when PyTorch was unavailable to write one, uf_backbone_random with the same shape)
 * and times uf_forward exactly as UniFormaly calls it: the patch tokens of blocks 1..10
 * requested into one buffer (req.blocks = 0x3FF), so the pass stops after block 10.
 * Timing: clock_gettime(CLOCK_MONOTONIC), warm-up (at least one call and 0.5 s), then
 * timed calls until at least 3 calls and --budget seconds; the best call is the headline
 * figure (least disturbed by other processes), the median is reported too.
 *
 * --precisions fp32,bf16 times both precisions of the same model (uf_backbone_set_precision)
 * in one run, the calls alternating, so the BF16 / FP32 ratio holds on a busy machine too;
 * every record names its precision.
 *
 * With --check-in/--check-out it also runs the check image and reports the relative error
 * max|ours - ref| / max|ref| against the float64 PyTorch reference, so a fast but wrong
 * forward cannot go unnoticed. With --sgemm it times OpenBLAS cblas_sgemm on 2048^3 at the
 * same thread count: the practical peak that the "% of sgemm" column compares against
 * (run.sh also runs it with OPENBLAS_CORETYPE=Haswell, OpenBLAS's AVX2 kernels). With --gemm
 * it times our own GEMM (src/kernels, C = A W^T) on the same shape at the kernel level in use
 * (UF_CPU), so the levels can be compared with OpenBLAS. Every record names the level.
 *
 * Output: one JSON line per measurement (appended to --out, or stdout), merged into the
 * table by bench/run.sh. Exit status non-zero if our forward fails.
 *
 * Usage:
 *   bench_vit --sgemm|--gemm [--threads N] [--out FILE]
 *   bench_vit --name vit_s16 (--weights F.safetensors | --random D,HEADS,DEPTH,MLP,PATCH)
 *             [--batches 1,8] [--threads N] [--budget SEC] [--check-in F --check-out F]
 *             [--precisions fp32,bf16] [--size S] [--out FILE]
 * --size: input side in pixels (default: the trained one, grid x patch; --random: 224);
 * the DINOv2 models run at 448 on their 37x37 table, resampled once per session.
 */
#include "uniformaly.h"
#include "kernels/kern.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_BATCHES 8
#define FORWARD_BLOCKS 10 /* UniFormaly uses the outputs of blocks 1..10 */
#define SGEMM_N 2048

/* ------------------------------------------------------------------------------------ */
/* Small utilities                                                                      */
/* ------------------------------------------------------------------------------------ */

static double now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Best and median of n samples (sorts v). */
static void best_median(double *v, int n, double *best, double *med)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    *best = v[0];
    *med = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Seeded N(0,1) values (splitmix64 + Box-Muller): input that looks like a normalised
 * image; the exact values only matter in that they are finite and O(1). */
static uint64_t rng_state;
static double rng_uniform(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return ((double)(z >> 11) + 0.5) / 9007199254740992.0; /* (0, 1) */
}
static void fill_normal(float *v, size_t n, uint64_t seed)
{
    rng_state = seed;
    for (size_t i = 0; i < n; i++)
        v[i] = (float)(sqrt(-2.0 * log(rng_uniform())) * cos(6.283185307179586 * rng_uniform()));
}

/* Write s as a JSON string literal (quotes included). */
static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

/* Read exactly n floats (little-endian float32, as numpy's tofile on x86) from path into
 * a new buffer; NULL (with a message on stderr) if the file is missing or the wrong size. */
static float *read_f32(const char *path, size_t n)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "bench_vit: cannot open %s\n", path);
        return NULL;
    }
    float *v = malloc(n * sizeof *v); /* [n] */
    int ok = v && fread(v, sizeof *v, n, f) == n && fgetc(f) == EOF;
    fclose(f);
    if (!ok) {
        fprintf(stderr, "bench_vit: %s is not %zu float32 values\n", path, n);
        free(v);
        return NULL;
    }
    return v;
}

/* ------------------------------------------------------------------------------------ */
/* sgemm: the machine's practical peak                                                  */
/* ------------------------------------------------------------------------------------ */

static int bench_sgemm(FILE *out, int threads)
{
    const int n = SGEMM_N, reps = 5;
    size_t nn = (size_t)n * n;
    float *a = malloc(nn * sizeof *a), *b = malloc(nn * sizeof *b); /* [n][n] each */
    float *c = malloc(nn * sizeof *c);                               /* [n][n]       */
    if (!a || !b || !c) {
        free(a), free(b), free(c);
        fprintf(stderr, "bench_vit: out of memory for sgemm\n");
        return 1;
    }
    fill_normal(a, nn, 1);
    fill_normal(b, nn, 2);
    double t[5];
    /* one untimed call: thread pool start-up, page faults of c */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.f, a, n, b, n, 0.f, c, n);
    for (int r = 0; r < reps; r++) {
        double t0 = now_sec();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.f, a, n, b, n, 0.f,
                    c, n);
        t[r] = now_sec() - t0;
    }
    double best, med, flop = 2.0 * n * (double)n * n;
    best_median(t, reps, &best, &med);
    fprintf(out,
            "{\"impl\":\"sgemm\",\"status\":\"ok\",\"n\":%d,\"threads\":%d,\"reps\":%d,"
            "\"gflops\":%.2f,\"gflops_median\":%.2f,\"blas_core\":",
            n, threads, reps, flop / best * 1e-9, flop / med * 1e-9);
    json_str(out, openblas_get_corename()); /* kernel set OpenBLAS picked, e.g. Haswell */
    fprintf(out, "}\n");
    fflush(out);
    fprintf(stderr, "bench_vit: sgemm %d^3: %.1f GFLOP/s (median %.1f)\n", n,
            flop / best * 1e-9, flop / med * 1e-9);
    free(a), free(b), free(c);
    return 0;
}

/* Our GEMM at the level in use, same shape and counting as bench_sgemm. */
static int bench_gemm(FILE *out, int threads)
{
    const int n = SGEMM_N, reps = 5;
    size_t nn = (size_t)n * n;
    float *a = malloc(nn * sizeof *a), *w = malloc(nn * sizeof *w), *c = malloc(nn * sizeof *c);
    float *ap = NULL;
    /* the packed A holds whole panels: ceil(n / mr) * mr rows */
    const size_t np = ((size_t)n + UF__MR_MAX) * (size_t)n;
    if (!a || !w || !c || posix_memalign((void **)&ap, 64, np * sizeof *ap) != 0) {
        free(a), free(w), free(c);
        fprintf(stderr, "bench_vit: out of memory for gemm\n");
        return 1;
    }
    fill_normal(a, nn, 1);
    fill_normal(w, nn, 2);
    const uf__kern *k = uf__kern_get();
    double t[5];
    k->gemm(threads, n, n, n, a, n, w, NULL, c, n, UF__EPI_SET, ap, NULL);
    for (int r = 0; r < reps; r++) {
        double t0 = now_sec();
        k->gemm(threads, n, n, n, a, n, w, NULL, c, n, UF__EPI_SET, ap, NULL);
        t[r] = now_sec() - t0;
    }
    double best, med, flop = 2.0 * n * (double)n * n;
    best_median(t, reps, &best, &med);
    fprintf(out,
            "{\"impl\":\"gemm\",\"status\":\"ok\",\"n\":%d,\"threads\":%d,\"reps\":%d,"
            "\"gflops\":%.2f,\"gflops_median\":%.2f,\"level\":\"%s\"}\n",
            n, threads, reps, flop / best * 1e-9, flop / med * 1e-9, uf_cpu_level());
    fflush(out);
    fprintf(stderr, "bench_vit: our gemm (%s) %d^3: %.1f GFLOP/s (median %.1f)\n",
            uf_cpu_level(), n, flop / best * 1e-9, flop / med * 1e-9);
    free(a), free(w), free(c), free(ap);
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* ViT forward                                                                          */
/* ------------------------------------------------------------------------------------ */

/* FLOPs of one image's forward through `blocks` blocks (multiply-add = 2), the same
 * formula as scripts/bench_ref.py: patch embedding + per block qkv, Q K^T and A V,
 * projection, MLP. LayerNorm, softmax, GELU and additions are not counted. */
static double vit_flops(const uf_backbone_info *in, int H, int W, int blocks)
{
    double D = in->dim, M = in->mlp_dim, P = in->patch, heads = in->heads, hd = D / heads;
    double Np = (double)(H / in->patch) * (W / in->patch), Nt = Np + 1;
    double patch = 2 * Np * (3 * P * P) * D;
    double block = 2 * Nt * D * 3 * D      /* qkv          */
                   + 2 * 2 * heads * Nt * Nt * hd /* QK^T, AV */
                   + 2 * Nt * D * D        /* proj         */
                   + 2 * 2 * Nt * D * M;   /* fc1 + fc2    */
    return patch + blocks * block;
}

/* Print a failure line for our forward and return 1. */
static int fail(FILE *out, const char *name, int batch, const char *what)
{
    fprintf(out, "{\"impl\":\"ours\",\"model\":");
    json_str(out, name);
    fprintf(out, ",\"batch\":%d,\"status\":\"failed\",\"reason\":", batch);
    char msg[512];
    snprintf(msg, sizeof msg, "%s: %s", what, uf_errmsg());
    json_str(out, msg);
    fprintf(out, "}\n");
    fflush(out);
    fprintf(stderr, "bench_vit: %s (batch %d): %s\n", name, batch, msg);
    return 1;
}

typedef struct opts {
    const char *name, *weights, *random, *check_in, *check_out, *out;
    int batches[MAX_BATCHES], n_batches;
    int threads, sgemm, gemm, size;
    double budget;
    uf_precision prec[2]; /* --precisions, timed interleaved */
    int n_prec;
} opts;

/* Relative error of our batch-1 forward on the check image, or -1 if no check files. */
static double check_error(const opts *o, uf_session *s, const uf_backbone_info *in, int S,
                          uint64_t mask, int n_sel, int *failed)
{
    *failed = 0;
    if (!o->check_in || !o->check_out) return -1;
    size_t Np = (size_t)(S / in->patch) * (size_t)(S / in->patch);
    size_t n_out = (size_t)n_sel * Np * (size_t)in->dim;
    float *x = read_f32(o->check_in, (size_t)3 * S * S); /* [1][3][S][S]      */
    float *ref = read_f32(o->check_out, n_out);          /* [n_sel][1][Np][D] */
    float *y = malloc(n_out * sizeof *y);                /* [n_sel][1][Np][D] */
    double err = -1;
    if (x && ref && y) {
        uf_forward_request req = {0};
        req.blocks = mask;
        uf_forward_output fo = {0};
        fo.blocks = y;
        if (uf_forward(s, x, 1, S, S, &req, &fo) != UF_OK) {
            *failed = 1;
        } else {
            double md = 0, mr = 0;
            for (size_t i = 0; i < n_out; i++) {
                double d = fabs((double)y[i] - ref[i]);
                if (!(d <= md)) md = d; /* NaN propagates as the maximum */
                if (fabs((double)ref[i]) > mr) mr = fabs((double)ref[i]);
            }
            err = md / (mr > 0 ? mr : 1e-30);
        }
    }
    free(x), free(ref), free(y);
    return err;
}

/* Load the model o names, at precision p. NULL after printing a failure record. */
static uf_backbone *open_model(const opts *o, FILE *out, uf_precision p, const char **source)
{
    uf_backbone *bb = NULL;
    if (o->weights) {
        if (uf_backbone_load(o->weights, NULL, &bb) != UF_OK) {
            fail(out, o->name, 0, "uf_backbone_load");
            return NULL;
        }
        *source = "safetensors";
    } else {
        uf_vit_config c = {0};
        if (sscanf(o->random, "%d,%d,%d,%d,%d", &c.dim, &c.heads, &c.depth, &c.mlp_dim,
                   &c.patch) != 5 || c.patch <= 0) {
            fprintf(stderr, "bench_vit: --random wants D,HEADS,DEPTH,MLP,PATCH\n");
            return NULL;
        }
        c.grid = (o->size > 0 ? o->size : 224) / c.patch;
        c.seed = 1234;
        if (uf_backbone_random(&c, &bb) != UF_OK) {
            fail(out, o->name, 0, "uf_backbone_random");
            return NULL;
        }
        *source = "random";
    }
    if (uf_backbone_set_precision(bb, p) != UF_OK) {
        fail(out, o->name, 0, "uf_backbone_set_precision");
        uf_backbone_free(bb);
        return NULL;
    }
    return bb;
}

/* Every precision of o on the same model, one backbone and session each; the timed calls
 * alternate between them (fp32, bf16, fp32, ...), so a busy machine slows both alike and
 * their ratio stays meaningful. */
static int bench_model(const opts *o, FILE *out)
{
    const int np = o->n_prec;
    uf_backbone *bb[2] = {NULL, NULL};
    uf_session *s[2] = {NULL, NULL};
    const char *source = "";
    int rc = 0;
    for (int q = 0; q < np && rc == 0; q++) {
        if (!(bb[q] = open_model(o, out, o->prec[q], &source))) rc = 1;
        else if (uf_session_new(bb[q], &s[q]) != UF_OK) rc = fail(out, o->name, 0, "uf_session_new");
        else uf_session_set_threads(s[q], o->threads);
    }
    uf_backbone_info in;
    uf_backbone_get_info(bb[0], &in);
    const int S = o->size > 0 ? o->size : in.grid_h * in.patch; /* default: trained side */
    const int n_sel = in.depth < FORWARD_BLOCKS ? in.depth : FORWARD_BLOCKS;
    const uint64_t mask = (n_sel >= 64) ? ~0ull : ((1ull << n_sel) - 1); /* blocks 1..n_sel */
    const size_t Np = (size_t)(S / in.patch) * (size_t)(S / in.patch);
    const double flop = vit_flops(&in, S, S, n_sel);

    double err[2] = {-1, -1};
    for (int q = 0; q < np && rc == 0; q++) {
        int check_failed = 0;
        err[q] = check_error(o, s[q], &in, S, mask, n_sel, &check_failed);
        if (check_failed) rc = fail(out, o->name, 1, "uf_forward (check image)");
    }

    for (int bi = 0; bi < o->n_batches && rc == 0; bi++) {
        const int B = o->batches[bi];
        size_t n_px = (size_t)B * 3 * S * S;                      /* [B][3][S][S]      */
        size_t n_out = (size_t)n_sel * B * Np * (size_t)in.dim;   /* [n_sel][B][Np][D] */
        float *px = malloc(n_px * sizeof *px);
        float *y = malloc(n_out * sizeof *y);
        double *t = malloc(2 * 1000 * sizeof *t); /* per-call seconds [precision][call] */
        if (!px || !y || !t) {
            fprintf(stderr, "bench_vit: out of memory for batch %d\n", B);
            rc = 1;
        } else {
            fill_normal(px, n_px, 11 + (uint64_t)B);
            uf_forward_request req = {0};
            req.blocks = mask;
            uf_forward_output fo = {0};
            fo.blocks = y;
            /* warm-up: at least one call and 0.5 s (buffers grow, caches and pools warm) */
            double t_end = now_sec() + 0.5;
            do {
                for (int q = 0; q < np && rc == 0; q++)
                    if (uf_forward(s[q], px, B, S, S, &req, &fo) != UF_OK)
                        rc = fail(out, o->name, B, "uf_forward");
            } while (rc == 0 && now_sec() < t_end);
            int n = 0;
            double spent = 0;
            while (rc == 0 && n < 1000 && (n < 3 || spent < o->budget)) {
                for (int q = 0; q < np && rc == 0; q++) {
                    double t0 = now_sec();
                    if (uf_forward(s[q], px, B, S, S, &req, &fo) != UF_OK) {
                        rc = fail(out, o->name, B, "uf_forward");
                        break;
                    }
                    t[q * 1000 + n] = now_sec() - t0;
                    spent += t[q * 1000 + n];
                }
                n++;
            }
            for (int q = 0; q < np && rc == 0; q++) {
                double best, med;
                best_median(t + q * 1000, n, &best, &med);
                best /= B, med /= B;
                const char *pn = uf_precision_name(o->prec[q]);
                fprintf(out, "{\"impl\":\"ours\",\"model\":");
                json_str(out, o->name);
                fprintf(out,
                        ",\"batch\":%d,\"status\":\"ok\",\"threads\":%d,\"reps\":%d,"
                        "\"ms_per_img\":%.3f,\"ms_per_img_median\":%.3f,\"gflop_per_img\":%.3f,"
                        "\"gflops\":%.2f,\"blocks\":%d,\"weights\":\"%s\",\"level\":\"%s\","
                        "\"precision\":\"%s\",\"interleaved\":%d,\"rel_err\":",
                        B, o->threads, n, best * 1e3, med * 1e3, flop * 1e-9,
                        flop / best * 1e-9, n_sel, source, uf_cpu_level(), pn, np);
                if (isnan(err[q])) fprintf(out, "\"NaN\"}\n"); /* JSON has no NaN */
                else if (err[q] >= 0) fprintf(out, "%.3g}\n", err[q]);
                else fprintf(out, "null}\n");            /* no check files */
                fflush(out);
                fprintf(stderr, "bench_vit: %s b%d %s %s: %.1f ms/img (median %.1f, %d reps), "
                        "%.1f GFLOP/s\n", o->name, B, uf_cpu_level(), pn, best * 1e3, med * 1e3,
                        n, flop / best * 1e-9);
            }
        }
        free(px), free(y), free(t);
    }
    for (int q = 0; q < np; q++) {
        uf_session_free(s[q]);
        uf_backbone_free(bb[q]);
    }
    return rc;
}

/* ------------------------------------------------------------------------------------ */
/* Command line                                                                         */
/* ------------------------------------------------------------------------------------ */

static int usage(void)
{
    fprintf(stderr,
            "usage: bench_vit --sgemm|--gemm [--threads N] [--out FILE]\n"
            "       bench_vit --name NAME (--weights F.safetensors | --random D,H,DEPTH,MLP,P)\n"
            "                 [--batches 1,8] [--threads N] [--budget SEC]\n"
            "                 [--check-in F --check-out F] [--precisions fp32,bf16]\n"
            "                 [--size S] [--out FILE]\n");
    return 2;
}

int main(int argc, char **argv)
{
    opts o = {.name = "vit", .threads = 2, .budget = 6.0, .n_batches = 2, .batches = {1, 8},
              .n_prec = 1, .prec = {UF_PRECISION_FP32}};
    /* as the CLI: BF16 on AMX tiles where the CPU has them (a process-wide setting the
     * library leaves to its host; UF_AMX=0 keeps vdpbf16ps) */
    (void)uf_enable_amx();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--sgemm")) { o.sgemm = 1; continue; }
        if (!strcmp(a, "--gemm")) { o.gemm = 1; continue; }
        if (!v) return usage();
        i++;
        if (!strcmp(a, "--threads")) o.threads = atoi(v);
        else if (!strcmp(a, "--budget")) o.budget = atof(v);
        else if (!strcmp(a, "--name")) o.name = v;
        else if (!strcmp(a, "--weights")) o.weights = v;
        else if (!strcmp(a, "--random")) o.random = v;
        else if (!strcmp(a, "--check-in")) o.check_in = v;
        else if (!strcmp(a, "--check-out")) o.check_out = v;
        else if (!strcmp(a, "--out")) o.out = v;
        else if (!strcmp(a, "--precisions")) {
            o.n_prec = 0;
            for (const char *p = v; *p;) {
                const size_t len = strcspn(p, ",");
                int q = -1;
                for (int k = 0; k < 2; k++)
                    if (len == 4 && !strncmp(p, uf_precision_name((uf_precision)k), 4)) q = k;
                if (q < 0 || o.n_prec == 2) return usage();
                o.prec[o.n_prec++] = (uf_precision)q;
                p += len + (p[len] == ',');
            }
            if (o.n_prec == 0) return usage();
        }
        else if (!strcmp(a, "--size")) o.size = atoi(v);
        else if (!strcmp(a, "--batches")) {
            o.n_batches = 0;
            for (const char *p = v; *p && o.n_batches < MAX_BATCHES;) {
                char *end;
                long b = strtol(p, &end, 10);
                if (end == p || b < 1 || b > 256) return usage();
                o.batches[o.n_batches++] = (int)b;
                p = *end == ',' ? end + 1 : end;
                if (*end && *end != ',') return usage();
            }
            if (o.n_batches == 0) return usage();
        } else {
            return usage();
        }
    }
    if (!o.sgemm && !o.gemm && !o.weights == !o.random) return usage(); /* one source */
    if (o.threads < 1) return usage();
    if (*uf_cpu_note()) fprintf(stderr, "bench_vit: %s\n", uf_cpu_note());

    FILE *out = stdout;
    if (o.out && !(out = fopen(o.out, "a"))) {
        fprintf(stderr, "bench_vit: cannot open %s\n", o.out);
        return 1;
    }
    openblas_set_num_threads(o.threads); /* this program's own setting, for the sgemm */
    int rc = o.sgemm ? bench_sgemm(out, o.threads)
             : o.gemm ? bench_gemm(out, o.threads) : bench_model(&o, out);
    if (out != stdout) fclose(out);
    return rc;
}
