/*
 * cmd_fit.c - `uniformaly fit`: build a detector from normal (good) images and write it to
 * one self-describing model file. Images are decoded in parallel batches and streamed into
 * the library's fitter, so memory holds one batch of images (each shrunk to the network's
 * resize size while it is decoded) plus the growing bank.
 */
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const help =
    "Usage: uniformaly fit --backbone W --out MODEL.ufm [options] TRAIN...\n"
    "\n"
    "Fit an anomaly detector on normal images: every foreground patch feature goes into a\n"
    "memory bank, which a coreset then subsamples. TRAIN is image files, folders (searched\n"
    "recursively for png/jpg/jpeg/bmp/ppm/pgm/pbm/pnm) or .txt/.lst files listing paths.\n"
    "An unreadable training image stops the fit (exit status 1): training data should be\n"
    "exactly what you meant. Progress goes to stderr on a terminal; the model file is\n"
    "written under a temporary name and renamed, so an interrupted fit leaves any previous\n"
    "model file intact. --out must not be one of the inputs (backbone, images, lists); a\n"
    "symbolic link is written through (the file it points to is replaced, keeping its\n"
    "mode); a directory, FIFO, device or a file with several hard links is refused.\n"
    "\n"
    "Options:\n"
    "  --out PATH           model file to write (required)\n"
    "  --embed-backbone     store the checkpoint inside the model file (deployable alone);\n"
    "                       otherwise the file records the checkpoint's path and sha256\n"
    "  --shots N            train on N images drawn at random (seeded by --seed); fewer\n"
    "                       than N training images is an error\n"
    "  --threshold T        store a decision threshold on the image score (predict marks\n"
    "                       images above it anomalous)\n"
    "  --holdout F          keep a fraction F in (0, 1) of the normal images out of the bank\n"
    "                       (evenly spaced in file order) and calibrate on them: the\n"
    "                       threshold at --fpr and the normal score statistics (see\n"
    "                       'uniformaly calibrate')\n"
    "  --fpr F              false-positive rate the --holdout threshold targets (default 0.01)\n";

/* Move an evenly spaced fraction f of imgs into held (image i when floor((i+1)f) >
 * floor(if)), keeping file order in both; false when out of memory. */
static bool split_holdout(cli_strings *imgs, double f, cli_strings *held)
{
    size_t kept = 0;
    for (size_t i = 0; i < imgs->n; i++) {
        if (floor((double)(i + 1) * f) > floor((double)i * f)) {
            if (!cli_strings_push(held, imgs->v[i])) return false;
            free(imgs->v[i]);
        } else {
            imgs->v[kept++] = imgs->v[i];
        }
    }
    imgs->n = kept;
    return true;
}

/* Keep `shots` of the images (uf_draw_shots, the draw of eval --shots), in file order. */
static bool pick_shots(cli_strings *imgs, size_t shots, uint64_t seed)
{
    if (shots >= imgs->n) return true;
    size_t *perm = malloc(shots * sizeof *perm); /* [shots] kept indices, ascending */
    if (!perm || uf_draw_shots(imgs->n, shots, seed, perm) != UF_OK) { free(perm); return false; }
    char **keep = malloc(shots * sizeof *keep);
    if (!keep) { free(perm); return false; }
    for (size_t j = 0; j < shots; j++) {
        keep[j] = imgs->v[perm[j]];
        imgs->v[perm[j]] = NULL;
    }
    for (size_t i = 0; i < imgs->n; i++) free(imgs->v[i]);
    for (size_t j = 0; j < shots; j++) imgs->v[j] = keep[j];
    imgs->n = shots;
    free(keep);
    free(perm);
    return true;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Coreset progress from the library. */
static int on_progress(void *user, const char *stage, size_t done, size_t total)
{
    cli_progress((const cli_common *)user, stage, done, total);
    return 0;
}

int cmd_fit(int argc, char **argv)
{
    const char *verb = "fit";
    cli_common c;
    cli_common_init(&c);
    uf_detector_params dp = uf_detector_default_params();
    const char *out_path = NULL;
    bool embed = false;
    long shots = 0;
    double threshold = NAN, holdout = 0, fpr = 0.01;
    int npos = 0;
    char **pos = calloc((size_t)argc + 1, sizeof *pos);
    if (!pos) return CLI_EXIT_RUNTIME;
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = cli_common_option(&c, verb, argc, argv, &i);
        if (r == 0) r = cli_detector_option(&dp, verb, argc, argv, &i);
        if (r < 0) { rc = CLI_EXIT_USAGE; goto out; }
        if (r > 0) continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("%s\n%s\n%s", help, cli_detector_help, cli_common_help);
            goto out;
        } else if (!strcmp(a, "--out")) {
            if (i + 1 >= argc) { rc = cli_usage_error(verb, "option --out needs a value"); goto out; }
            out_path = argv[++i];
        } else if (!strcmp(a, "--embed-backbone")) {
            embed = true;
        } else if (!strcmp(a, "--shots")) {
            if (i + 1 >= argc || !cli_parse_int(argv[i + 1], 1, 100000000, &shots)) {
                rc = cli_usage_error(verb, "--shots: expected a positive integer");
                goto out;
            }
            i++;
        } else if (!strcmp(a, "--holdout") || !strcmp(a, "--fpr")) {
            double *v = a[2] == 'h' ? &holdout : &fpr;
            if (i + 1 >= argc || !cli_parse_float(argv[i + 1], 0, 1, v) || *v >= 1 ||
                (v == &holdout && *v <= 0)) {
                rc = cli_usage_error(verb, "%s: expected a fraction in %s", a,
                                     v == &holdout ? "(0, 1)" : "[0, 1)");
                goto out;
            }
            i++;
        } else if (!strcmp(a, "--threshold")) {
            if (i + 1 >= argc || !cli_parse_float(argv[i + 1], -1e30, 1e30, &threshold)) {
                rc = cli_usage_error(verb, "--threshold: expected a number");
                goto out;
            }
            i++;
        } else if (a[0] == '-' && a[1]) {
            rc = cli_usage_error(verb, "unknown option '%s'", a);
            goto out;
        } else {
            pos[npos++] = argv[i];
        }
    }
    if (!cli_default_backbone(&c)) { rc = CLI_EXIT_RUNTIME; goto out; }
    if (!out_path) { rc = cli_usage_error(verb, "--out is required"); goto out; }
    if (npos == 0) { rc = cli_usage_error(verb, "no training images given"); goto out; }
    dp.pre = c.pre;
    if (uf_detector_params_check(&dp, NULL) != UF_OK) {
        rc = cli_usage_error(verb, "%s", uf_errmsg());
        goto out;
    }
    if (holdout > 0 && isfinite(threshold)) {
        rc = cli_usage_error(verb, "--threshold and --holdout both set the threshold");
        goto out;
    }
    cli_threads_init(&c);

    cli_strings images = {0}, held = {0};
    uf_backbone *bb = NULL;
    uf_fitter *fit = NULL;
    uf_model *model = NULL;
    uf_image **batch = NULL;
    uf_inputs *inputs = NULL;
    cli_fit_check *check = NULL;
    double t0 = now();
    if (!cli_expand_images(&c, npos, pos, &images)) { rc = CLI_EXIT_RUNTIME; goto done; }
    if (shots > 0 && (size_t)shots > images.n) { /* fitting fewer than asked is refused */
        cli_error("--shots %ld: only %zu training image%s found in %s%s", shots, images.n,
                  images.n == 1 ? "" : "s", pos[0], npos > 1 ? " and the other inputs" : "");
        rc = CLI_EXIT_RUNTIME;
        goto done;
    }
    if (shots > 0 && !pick_shots(&images, (size_t)shots, dp.seed)) {
        cli_error("out of memory");
        rc = CLI_EXIT_RUNTIME;
        goto done;
    }
    /* refuse an --out that is not replaceable or is one of the inputs before any work */
    const char *more[1] = {c.backbone};
    if (!(inputs = cli_run_inputs(&images, npos, pos, more, 1)) ||
        !cli_check_output(out_path, inputs)) {
        rc = CLI_EXIT_RUNTIME;
        goto done;
    }
    cli_fit_check_names(&images);
    if (holdout > 0 && (!split_holdout(&images, holdout, &held) || held.n == 0 || images.n == 0)) {
        cli_error("--holdout %g: %zu images cannot be split into training and held-out "
                  "images (held out %zu)", holdout, images.n + held.n, held.n);
        rc = CLI_EXIT_RUNTIME;
        goto done;
    }
    check = cli_fit_check_new(images.n);
    if (!(bb = cli_load_backbone(&c))) { rc = CLI_EXIT_RUNTIME; goto done; }
    if (uf_fitter_new(bb, &dp, &fit) != UF_OK) {
        cli_error("%s: %s", c.backbone, uf_errmsg());
        rc = CLI_EXIT_RUNTIME;
        goto done;
    }
    uf_fitter_set_threads(fit, c.threads);
    batch = calloc((size_t)c.batch, sizeof *batch);
    if (!batch) { cli_error("out of memory"); rc = CLI_EXIT_RUNTIME; goto done; }
    for (size_t b0 = 0; b0 < images.n; b0 += (size_t)c.batch) {
        int nb = (int)((images.n - b0) < (size_t)c.batch ? images.n - b0 : (size_t)c.batch);
        int ok = cli_load_images_full(images.v + b0, nb, &dp.pre, dp.rotations > 1, batch);
        uf_status s = UF_OK;
        int bad = 0; /* the image at fault within the batch */
        if (ok == nb) s = uf_fitter_add(fit, (const uf_image *const *)batch, nb);
        if (s != UF_OK && nb > 1) {
            /* e.g. NaN/Inf features: the fit stops anyway, so add the batch's images one by
             * one to find the one to name (its own message has no batch index) */
            while (bad < nb && uf_fitter_add(fit, (const uf_image *const *)&batch[bad], 1) == UF_OK)
                bad++;
            if (bad == nb) bad = 0; /* not reproducible alone: name the batch's first */
        }
        for (int j = 0; j < nb; j++) {
            cli_fit_check_image(check, b0 + (size_t)j, batch[j]);
            uf_image_free(batch[j]);
        }
        if (ok != nb) { /* cli_load_images printed one line naming each unreadable image */
            rc = CLI_EXIT_RUNTIME;
            goto done;
        }
        if (s != UF_OK) {
            cli_error("%s: %s", images.v[b0 + (size_t)bad], uf_errmsg());
            rc = CLI_EXIT_RUNTIME;
            goto done;
        }
        cli_progress(&c, "fit: images", b0 + (size_t)nb, images.n);
    }
    cli_fit_check_report(check, &images);
    double t1 = now();
    size_t full = uf_fitter_bank_size(fit);
    if (uf_fitter_finish(fit, c.quiet ? NULL : on_progress, &c, &model) != UF_OK) {
        cli_error("%s", uf_errmsg());
        rc = CLI_EXIT_RUNTIME;
        goto done;
    }
    uf_model_set_threshold(model, (float)threshold);
    if (held.n && !cli_calibrate_normal(&c, model, held.v, held.n, fpr)) {
        rc = CLI_EXIT_RUNTIME;
        goto done;
    }
    if (uf_model_save(model, out_path, embed) != UF_OK) {
        cli_error("%s", uf_errmsg());
        rc = CLI_EXIT_RUNTIME;
        goto done;
    }
    uf_model_info mi;
    uf_model_get_info(model, &mi);
    if (!c.quiet)
        fprintf(stderr,
                "fit: %zu images (%.1f s, %.1f images/s), %zu foreground patches -> bank %zu x %d "
                "(%.1f MB, coreset %.1f s); wrote %s\n",
                images.n, t1 - t0, (double)images.n / (t1 - t0), full, mi.bank_size, mi.dim,
                (double)mi.bank_bytes / 1e6, now() - t1, out_path);
done:
    cli_fit_check_free(check);
    uf_inputs_free(inputs);
    free(batch);
    uf_model_free(model);
    uf_fitter_free(fit);
    uf_backbone_free(bb);
    cli_strings_free(&images);
    cli_strings_free(&held);
out:
    free(pos);
    return rc;
}
