/*
 * main.c - entry point of the `uniformaly` program: sets up the process (OpenMP wait
 * policy, SIGXFSZ) and dispatches to the verbs, cmd_<verb> in tools/cmd_*.c (`info` is
 * cmd_inspect in cmd_features.c, which hands model files to cmd_model_info in
 * cmd_predict.c).
 */
#include "cli.h"

#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>
#include <stdio.h>
#include <string.h>

static const char *const usage =
    "uniformaly " UF_VERSION_STRING " - visual anomaly detection with Vision Transformers on CPU\n"
    "\n"
    "Usage: uniformaly VERB [options] ...\n"
    "\n"
    "Verbs:\n"
    "  demo       the whole flow (fit, predict, AUROC, heatmaps) on generated images\n"
    "  fit        fit a detector on normal images and write a model file\n"
    "  predict    score images with a model file, optionally writing heatmaps\n"
    "  calibrate  set a model's decision threshold from normal or labelled images\n"
    "  update     add new normal images to a fitted model\n"
    "  report     report.html from predict --json output and labels\n"
    "  zeroshot   score a set of images against each other, no training images\n"
    "  eval       every task measured on a dataset: AUROC, pixel metrics, clustering\n"
    "  info       describe a model file or a checkpoint (.pth or .safetensors)\n"
    "  classify   top-k classes of images with a supervised ViT checkpoint\n"
    "  features   write block outputs / attention maps of images to a .safetensors file\n"
    "  serve      score images sent over HTTP with a model kept loaded\n"
    "\n"
    "'uniformaly VERB --help' describes each verb. Exit status: 0 ok, 1 runtime error,\n"
    "2 usage error.\n";

/* OMP_NUM_THREADS must be a positive integer or a comma-separated list of them (OpenMP's
 * nested levels). libgomp parses it while the program loads, before main, and prints its
 * own "Invalid value" line for anything else (twice here, once more after the re-exec
 * below). So the check runs earlier still: a function in .preinit_array runs before any
 * shared library's constructor, and there it removes an invalid value from the environment
 * (libc is not initialised yet, so envp is edited directly). main then warns once, in our
 * words, and the thread count falls back to the default (all cores). */
static const char *g_bad_omp_threads; /* the value removed, or NULL */

static bool valid_omp_threads(const char *v)
{
    const char *p = v;
    for (;;) { /* one entry: blanks, 1..999999 (leading zeros allowed), blanks */
        while (*p == ' ' || *p == '\t') p++;
        const char *d = p;
        while (*p == '0') p++;
        const char *sig = p;
        while (*p >= '0' && *p <= '9') p++;
        if (p == d || p == sig || p - sig > 6) return false;
        while (*p == ' ' || *p == '\t') p++;
        if (!*p) return true;
        if (*p++ != ',') return false;
    }
}

static void drop_invalid_omp_threads(int argc, char **argv, char **envp)
{
    (void)argc;
    (void)argv;
    static const char key[] = "OMP_NUM_THREADS=";
    for (char **e = envp; e && *e; e++) {
        if (strncmp(*e, key, sizeof key - 1) || valid_omp_threads(*e + sizeof key - 1)) continue;
        g_bad_omp_threads = *e + sizeof key - 1;
        for (char **d = e; *d; d++) d[0] = d[1]; /* shift the rest down, NULL included */
        e--;
    }
}
__attribute__((section(".preinit_array"), used)) static void (*const uf_preinit)(
    int, char **, char **) = drop_invalid_omp_threads;

int main(int argc, char **argv)
{
    if (g_bad_omp_threads)
        fprintf(stderr, "uniformaly: warning: ignoring OMP_NUM_THREADS='%s' (not a positive "
                        "integer up to 999999); using the default thread count\n",
                g_bad_omp_threads);
    if (argc < 2) {
        fputs(usage, stderr);
        return CLI_EXIT_USAGE;
    }
    /* OpenMP threads that spin while waiting (libgomp's default) steal the cores from the
     * threads doing the work whenever anything else runs on the machine: measured here, a
     * ViT-S/16 forward took 880 ms instead of 50 ms beside one other busy process. libgomp
     * reads the policy once, before main, so the program re-executes itself with the
     * passive policy unless the user chose one. */
    if (!getenv("OMP_WAIT_POLICY") && setenv("OMP_WAIT_POLICY", "passive", 1) == 0)
        execv("/proc/self/exe", argv); /* returns only on failure: then carry on */
    /* a write beyond the file size limit (ulimit -f) then fails with EFBIG, which the
     * library handles (removing its temporary file), instead of killing the process */
    signal(SIGXFSZ, SIG_IGN);
    /* BF16 GEMMs run on AMX tiles only once the process holds the tile state, a
     * process-wide setting the library leaves to its host program (uf_enable_amx) */
    const int amx = uf_enable_amx() == UF_OK;
    const char *verb = argv[1];
    if (!strcmp(verb, "--help") || !strcmp(verb, "-h") || !strcmp(verb, "help")) {
        fputs(usage, stdout);
        return 0;
    }
    /* UF_CPU naming a level this CPU lacks (or no level): say which one runs instead */
    if (*uf_cpu_note()) fprintf(stderr, "uniformaly: %s\n", uf_cpu_note());
    if (!strcmp(verb, "--version")) {
        const char *lv = uf_cpu_level();
        /* --precision bf16 runs vdpbf16ps only at the avx512bf16 level; below it, emulated */
        printf("uniformaly %s\nkernels: %s\nbf16: %s\n", uf_version(), lv,
               strcmp(lv, "avx512bf16") == 0
                   ? (amx ? "native (AMX tiles, else AVX512_BF16 vdpbf16ps; FP32 kernels as avx512)"
                          : "native (AVX512_BF16 vdpbf16ps; FP32 kernels as avx512)")
                   : "emulated (no AVX512_BF16 at this level: BF16-rounded weights and inputs "
                     "on the FP32 kernels, FP32 speed)");
        return 0;
    }
    if (!strcmp(verb, "classify")) return cmd_classify(argc - 1, argv + 1);
    if (!strcmp(verb, "features")) return cmd_features(argc - 1, argv + 1);
    if (!strcmp(verb, "info")) return cmd_inspect(argc - 1, argv + 1);
    if (!strcmp(verb, "fit")) return cmd_fit(argc - 1, argv + 1);
    if (!strcmp(verb, "predict")) return cmd_predict(argc - 1, argv + 1);
    if (!strcmp(verb, "calibrate")) return cmd_calibrate(argc - 1, argv + 1);
    if (!strcmp(verb, "update")) return cmd_update(argc - 1, argv + 1);
    if (!strcmp(verb, "report")) return cmd_report(argc - 1, argv + 1);
    if (!strcmp(verb, "zeroshot")) return cmd_zeroshot(argc - 1, argv + 1);
    if (!strcmp(verb, "demo")) return cmd_demo(argc - 1, argv + 1);
    if (!strcmp(verb, "eval")) return cmd_eval(argc - 1, argv + 1);
    if (!strcmp(verb, "serve")) return cmd_serve(argc - 1, argv + 1);
    fprintf(stderr, "uniformaly: unknown verb '%s'\n\n%s", verb, usage);
    return CLI_EXIT_USAGE;
}
