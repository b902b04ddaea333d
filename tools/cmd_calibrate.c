/*
 * cmd_calibrate.c - `uniformaly calibrate`: choose a fitted model's decision threshold from
 * data instead of by eye. Either normal images only (--normal: the threshold at a target
 * false-positive rate on them) or a labelled validation list (--val: the F1-optimal
 * threshold, or the one at a false-positive rate, with the recall it gives). The threshold
 * and the normal score statistics are written into the model file atomically.
 */
#include "cli.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const help =
    "Usage: uniformaly calibrate MODEL.ufm --normal IMAGE|DIR|LIST.txt... [--fpr F]\n"
    "       uniformaly calibrate MODEL.ufm --val LABELS.txt --objective f1|fpr=F\n"
    "\n"
    "Set the model's decision threshold on the image score from data and store it, with the\n"
    "statistics of normal image scores and foreground patch scores (the default colour scale\n"
    "of heatmaps), in the model file (replaced atomically; --out writes elsewhere).\n"
    "\n"
    "  --normal             the positional arguments are normal (good) images: the threshold\n"
    "                       is the smallest score with at most a fraction F of them above it.\n"
    "                       With N images the false-positive rate moves in steps of 1/N\n"
    "                       (20 images: 5%), which calibrate says when it limits F.\n"
    "  --fpr F              target false-positive rate in [0, 1) (default 0.01)\n"
    "  --val LABELS.txt     labelled images, one per line: PATH LABEL, LABEL 0|good|normal or\n"
    "                       1|bad|anomalous ('#' comments; relative paths from the list's\n"
    "                       folder); the normal ones give the statistics\n"
    "  --objective O        with --val: f1 (the F1-optimal threshold) or fpr=F (default f1)\n"
    "  --out PATH           write the calibrated model here instead of over MODEL\n"
    "  --backbone W, --allow-other-backbone, --batch N, --threads N, --quiet\n"
    "  --precision P        fp32 or bf16 (default: the one the model records)\n"
    "Images scoring above the threshold are anomalous (predict).\n";

/* Calibrate on a labelled list: statistics of the normal images, threshold by objective
 * (fpr < 0: F1-optimal). */
static bool calibrate_val(const cli_common *c, uf_model *m, const char *list, double fpr)
{
    cli_strings paths = {0};
    uint8_t *y = NULL;
    float *scores = NULL, *patches = NULL, *neg = NULL;
    size_t np = 0, n_neg = 0, n_pos = 0;
    bool ok = cli_read_labels(list, &paths, &y);
    if (ok) ok = (scores = malloc(paths.n * sizeof *scores)) && (neg = malloc(paths.n * sizeof *neg));
    if (ok) ok = cli_score_paths(c, m, paths.v, paths.n, scores, &patches, &np);
    for (size_t i = 0; ok && i < paths.n; i++) {
        if (!y[i]) neg[n_neg++] = scores[i];
        n_pos += y[i];
    }
    if (ok && (n_neg == 0 || n_pos == 0)) {
        cli_error("%s: needs both normal and anomalous images (%zu normal, %zu anomalous)", list,
                  n_neg, n_pos);
        ok = false;
    }
    uf_calibration cal;
    /* the patch statistics are over every image of the list here: patches of anomalous
     * images are mostly normal, and the per-image split is not kept */
    if (ok && uf_calibration_compute(neg, n_neg, patches, np, &cal) != UF_OK) {
        cli_error("%s", uf_errmsg());
        ok = false;
    }
    if (ok) {
        double t, achieved;
        if (fpr < 0) {
            double t1;
            uf_f1_max_threshold(scores, y, paths.n, &t1); /* anomalous when score >= t1 */
            t = nextafterf((float)t1, -INFINITY);          /* the same, as score > t    */
            cal.fpr_target = NAN;
        } else {
            t = uf_threshold_at_fpr(neg, n_neg, fpr, &achieved);
            cal.fpr_target = fpr;
        }
        size_t fp = 0, tp = 0;
        for (size_t i = 0; i < paths.n; i++) {
            fp += !y[i] && scores[i] > t;
            tp += y[i] && scores[i] > t;
        }
        cal.fpr = (double)fp / (double)n_neg;
        uf_model_set_calibration(m, &cal);
        uf_model_set_threshold(m, (float)t);
        double prec = tp + fp ? (double)tp / (double)(tp + fp) : 0, rec = (double)tp / (double)n_pos;
        fprintf(stderr,
                "calibrate: %zu normal and %zu anomalous images; threshold %.6g (%s): "
                "false-positive rate %.3g%%, recall %.3g%%, precision %.3g%%, F1 %.4f\n",
                n_neg, n_pos, t, fpr < 0 ? "F1-optimal" : "target false-positive rate",
                100 * cal.fpr, 100 * rec, 100 * prec,
                prec + rec > 0 ? 2 * prec * rec / (prec + rec) : 0.0);
        if (fpr >= 0) cli_fpr_note(n_neg, fpr);
    }
    free(y);
    free(scores);
    free(neg);
    free(patches);
    cli_strings_free(&paths);
    return ok;
}

int cmd_calibrate(int argc, char **argv)
{
    const char *verb = "calibrate";
    cli_common c;
    cli_common_init(&c);
    uf_model_load_params lp = uf_model_load_default_params();
    const char *model_path = NULL, *out = NULL, *val = NULL;
    bool normal = false;
    double fpr = 0.01, obj_fpr = -1; /* obj_fpr < 0: F1 */
    int npos = 0, rc = 0;
    char **pos = calloc((size_t)argc + 1, sizeof *pos);
    if (!pos) return CLI_EXIT_RUNTIME;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = cli_common_option(&c, verb, argc, argv, &i);
        if (r < 0) { rc = CLI_EXIT_USAGE; goto out; }
        if (r > 0) continue;
        bool has = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(help, stdout);
            goto out;
        } else if (!strcmp(a, "--normal")) {
            normal = true;
        } else if (!strcmp(a, "--allow-other-backbone")) {
            lp.allow_other_backbone = 1;
        } else if (!strcmp(a, "--fpr")) {
            if (!has || !cli_parse_float(argv[i + 1], 0, 1, &fpr) || fpr >= 1) {
                rc = cli_usage_error(verb, "--fpr: expected a rate in [0, 1)");
                goto out;
            }
            i++;
        } else if (!strcmp(a, "--objective")) {
            const char *v = has ? argv[++i] : "";
            if (!strcmp(v, "f1")) obj_fpr = -1;
            else if (strncmp(v, "fpr=", 4) || !cli_parse_float(v + 4, 0, 1, &obj_fpr) || obj_fpr >= 1) {
                rc = cli_usage_error(verb, "--objective: expected f1 or fpr=F with F in [0, 1)");
                goto out;
            }
        } else if (!strcmp(a, "--val") || !strcmp(a, "--out")) {
            if (!has) { rc = cli_usage_error(verb, "option %s needs a value", a); goto out; }
            if (a[2] == 'v') val = argv[++i];
            else out = argv[++i];
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
    if (normal == !!val) { rc = cli_usage_error(verb, "give either --normal IMAGES or --val LIST"); goto out; }
    if (normal && npos == 0) { rc = cli_usage_error(verb, "--normal: no images given"); goto out; }
    if (val && npos > 0) { rc = cli_usage_error(verb, "--val takes no image arguments"); goto out; }
    lp.backbone_path = c.backbone;
    cli_threads_init(&c);

    cli_strings images = {0};
    uf_model *m = NULL;
    uf_inputs *inputs = NULL;
    if (!out) out = model_path;
    if (normal && !cli_expand_images(&c, npos, pos, &images)) { rc = CLI_EXIT_RUNTIME; goto done; }
    const char *more[2] = {val, c.backbone};
    if (!(inputs = cli_run_inputs(&images, npos, pos, more, 2)) || !cli_check_output(out, inputs)) {
        rc = CLI_EXIT_RUNTIME;
        goto done;
    }
    if (cli_model_load(model_path, &lp, &m) != UF_OK ||
        (c.precision >= 0 && uf_model_set_precision(m, (uf_precision)c.precision) != UF_OK)) {
        cli_error("%s", uf_errmsg());
        rc = CLI_EXIT_RUNTIME;
        goto done;
    }
    uf_model_info mi;
    uf_model_get_info(m, &mi);
    bool ok = normal ? cli_calibrate_normal(&c, m, images.v, images.n, fpr)
                     : calibrate_val(&c, m, val, obj_fpr);
    if (ok && uf_model_save(m, out, mi.backbone_embedded) != UF_OK) {
        cli_error("%s", uf_errmsg());
        ok = false;
    }
    if (!ok) rc = CLI_EXIT_RUNTIME;
done:
    uf_inputs_free(inputs);
    uf_model_free(m);
    cli_strings_free(&images);
out:
    free(pos);
    return rc;
}
