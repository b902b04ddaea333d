/*
 * cmd_update.c - `uniformaly update`: add new normal images to a fitted model without the
 * old training images (uf_model_update: the old bank kept, the new foreground patches
 * merged by the coreset rule of the fit); the model file is replaced atomically.
 */
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const help =
    "Usage: uniformaly update MODEL.ufm [options] IMAGE|DIR|LIST.txt...\n"
    "\n"
    "Add new normal (good) images to a fitted model: their foreground patches join the\n"
    "memory bank by the fit's coreset rule (every bank row is kept; of N new patches,\n"
    "coreset x N are added, greedily the farthest from the bank), with the model's own\n"
    "backbone and settings. The model file is replaced atomically (--out writes elsewhere);\n"
    "an unreadable image stops the update and leaves it untouched. The stored threshold and\n"
    "calibration are kept; new normal images usually lower normal scores, so calibrate\n"
    "again when the threshold matters.\n"
    "\n"
    "  --out PATH           write the updated model here instead of over MODEL\n"
    "  --backbone W, --allow-other-backbone, --batch N, --threads N, --quiet\n"
    "  --precision P        fp32 or bf16 (default: the one the model records; the updated\n"
    "                       model records the one used)\n";

int cmd_update(int argc, char **argv)
{
    const char *verb = "update";
    cli_common c;
    cli_common_init(&c);
    uf_model_load_params lp = uf_model_load_default_params();
    const char *model_path = NULL, *out = NULL;
    int npos = 0, rc = 0;
    char **pos = calloc((size_t)argc + 1, sizeof *pos);
    if (!pos) return CLI_EXIT_RUNTIME;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = cli_common_option(&c, verb, argc, argv, &i);
        if (r < 0) { rc = CLI_EXIT_USAGE; goto out; }
        if (r > 0) continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(help, stdout);
            goto out;
        } else if (!strcmp(a, "--allow-other-backbone")) {
            lp.allow_other_backbone = 1;
        } else if (!strcmp(a, "--out")) {
            if (i + 1 >= argc) { rc = cli_usage_error(verb, "option --out needs a value"); goto out; }
            out = argv[++i];
        } else if (a[0] == '-' && a[1]) {
            rc = cli_usage_error(verb, "unknown option '%s'", a);
            goto out;
        } else if (!model_path) {
            model_path = a;
        } else {
            pos[npos++] = argv[i];
        }
    }
    if (!model_path) { rc = cli_usage_error(verb, "no model file given"); goto out; }
    if (npos == 0) { rc = cli_usage_error(verb, "no images given"); goto out; }
    lp.backbone_path = c.backbone;
    cli_threads_init(&c);
    if (!out) out = model_path;

    cli_strings images = {0};
    uf_model *m = NULL, *u = NULL;
    uf_fitter *fit = NULL;
    uf_image **batch = NULL;
    uf_inputs *inputs = NULL;
    const char *more[1] = {c.backbone};
    if (!cli_expand_images(&c, npos, pos, &images) ||
        !(inputs = cli_run_inputs(&images, npos, pos, more, 1)) || !cli_check_output(out, inputs)) {
        rc = CLI_EXIT_RUNTIME;
        goto done;
    }
    uf_model_info mi;
    if (cli_model_load(model_path, &lp, &m) != UF_OK ||
        (c.precision >= 0 && uf_model_set_precision(m, (uf_precision)c.precision) != UF_OK) ||
        (uf_model_get_info(m, &mi), uf_fitter_new(uf_model_backbone(m), &mi.params, &fit)) != UF_OK) {
        cli_error("%s", uf_errmsg());
        rc = CLI_EXIT_RUNTIME;
        goto done;
    }
    uf_fitter_set_threads(fit, c.threads);
    if (!(batch = calloc((size_t)c.batch, sizeof *batch))) { cli_error("out of memory"); rc = CLI_EXIT_RUNTIME; goto done; }
    for (size_t b0 = 0; b0 < images.n; b0 += (size_t)c.batch) {
        int nb = (int)((images.n - b0) < (size_t)c.batch ? images.n - b0 : (size_t)c.batch);
        int ok = cli_load_images_full(images.v + b0, nb, &mi.params.pre,
                                      mi.params.rotations > 1, batch);
        uf_status s = ok == nb ? uf_fitter_add(fit, (const uf_image *const *)batch, nb) : UF_OK;
        for (int j = 0; j < nb; j++) uf_image_free(batch[j]);
        if (ok != nb || s != UF_OK) {
            if (s != UF_OK) cli_error("%s: %s", images.v[b0], uf_errmsg());
            rc = CLI_EXIT_RUNTIME;
            goto done;
        }
        cli_progress(&c, "update: images", b0 + (size_t)nb, images.n);
    }
    size_t added = uf_fitter_bank_size(fit);
    if (uf_model_update(m, fit, &u) != UF_OK || uf_model_save(u, out, mi.backbone_embedded) != UF_OK) {
        cli_error("%s", uf_errmsg());
        rc = CLI_EXIT_RUNTIME;
        goto done;
    }
    uf_model_info ui;
    uf_model_get_info(u, &ui);
    if (!c.quiet)
        fprintf(stderr, "update: %zu new images, %zu foreground patches: bank %zu -> %zu; wrote %s%s\n",
                images.n, added, mi.bank_size, ui.bank_size, out,
                isfinite(mi.threshold) ? " (threshold kept: calibrate again if it matters)" : "");
done:
    uf_model_free(u);
    uf_fitter_free(fit);
    uf_model_free(m);
    uf_inputs_free(inputs);
    free(batch);
    cli_strings_free(&images);
out:
    free(pos);
    return rc;
}
