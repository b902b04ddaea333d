/*
 * cli_calib.c - calibration as the program does it, shared by `calibrate` and
 * `fit --holdout`: score normal images with a model, keep their image scores and foreground
 * patch scores, and store the threshold at a target false-positive rate with the statistics
 * (uf_calibration) in the model. Also the small helpers predict needs to show a decision:
 * the normalised score.
 */
#include "cli.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool cli_score_paths(const cli_common *c, uf_model *m, char *const *paths, size_t n,
                     float *scores, float **patches, size_t *n_patch)
{
    int gh, gw;
    uf_model_output_size(m, &gh, &gw, NULL, NULL);
    const size_t G = (size_t)gh * (size_t)gw, nb = (size_t)c->batch;
    uf_model_info mi;
    uf_model_get_info(m, &mi);
    uf_scorer *sc = NULL;
    uf_image **batch = calloc(nb, sizeof *batch);
    uf_score *res = calloc(nb, sizeof *res);
    float *ps = patches ? malloc((n ? n : 1) * G * sizeof *ps) : NULL; /* [n][G] foreground */
    uint8_t *mask = malloc(nb * G);                                     /* [nb][G]         */
    float *pbuf = malloc(nb * G * sizeof *pbuf);                        /* [nb][G]         */
    size_t np = 0;
    bool ok = batch && res && mask && pbuf && (!patches || ps);
    if (!ok) cli_error("out of memory");
    if (ok && uf_scorer_new(m, &sc) != UF_OK) {
        cli_error("%s", uf_errmsg());
        ok = false;
    }
    if (ok) uf_scorer_set_threads(sc, c->threads);
    for (size_t b0 = 0; ok && b0 < n; b0 += nb) {
        int k = (int)(n - b0 < nb ? n - b0 : nb);
        ok = cli_load_images(paths + b0, k, &mi.params.pre, batch) == k;
        for (int j = 0; j < k; j++) {
            memset(&res[j], 0, sizeof res[j]);
            res[j].patch_scores = pbuf + G * (size_t)j;
            res[j].mask = mask + G * (size_t)j;
        }
        if (ok && uf_score_images(sc, (const uf_image *const *)batch, k, res) != UF_OK) {
            cli_error("%s: %s", paths[b0], uf_errmsg());
            ok = false;
        }
        for (int j = 0; ok && j < k; j++) {
            scores[b0 + (size_t)j] = res[j].score;
            for (size_t g = 0; ps && g < G; g++)
                if (res[j].mask[g]) ps[np++] = res[j].patch_scores[g];
        }
        for (int j = 0; j < k; j++) {
            uf_image_free(batch[j]);
            batch[j] = NULL;
        }
        cli_progress(c, "scoring", b0 + (size_t)k, n);
    }
    uf_scorer_free(sc);
    free(batch);
    free(res);
    free(mask);
    free(pbuf);
    if (!ok) {
        free(ps);
        ps = NULL;
    }
    if (patches) *patches = ps;
    if (n_patch) *n_patch = np;
    return ok;
}

void cli_fpr_note(size_t n, double fpr)
{
    if (n == 0) return;
    const double step = 1.0 / (double)n;
    if (fpr < step)
        fprintf(stderr,
                "calibrate: note: with %zu normal images the smallest false-positive-rate step "
                "is %.3g%%, so a target of %.3g%% means 'above every normal score'; use at "
                "least %.0f images to resolve it\n",
                n, 100 * step, 100 * fpr, fpr > 0 ? ceil(1 / fpr) : 100.0);
}

bool cli_calibrate_normal(const cli_common *c, uf_model *m, char *const *paths, size_t n,
                          double fpr)
{
    float *scores = malloc((n ? n : 1) * sizeof *scores), *patches = NULL;
    size_t np = 0;
    bool ok = scores && cli_score_paths(c, m, paths, n, scores, &patches, &np);
    if (!scores) cli_error("out of memory");
    uf_calibration cal;
    if (ok && np == 0) {
        cli_error("calibrate: the normal images have no foreground patch");
        ok = false;
    }
    if (ok && uf_calibration_compute(scores, n, patches, np, &cal) != UF_OK) {
        cli_error("%s", uf_errmsg());
        ok = false;
    }
    if (ok) {
        double achieved;
        const double t = uf_threshold_at_fpr(scores, n, fpr, &achieved);
        cal.fpr_target = fpr;
        cal.fpr = achieved;
        uf_model_set_calibration(m, &cal);
        uf_model_set_threshold(m, (float)t);
        fprintf(stderr,
                "calibrate: %zu normal images, scores %.4g..%.4g (median %.4g); threshold %.6g "
                "(target false-positive rate %.3g%%, %.3g%% on these images)\n",
                n, cal.image_min, cal.image_max, cal.image_p50, t, 100 * fpr, 100 * achieved);
        cli_fpr_note(n, fpr);
    }
    free(scores);
    free(patches);
    return ok;
}

double cli_normalised(float score, double threshold)
{
    return isfinite(threshold) && threshold > 0 ? (double)score / threshold : NAN;
}

const char *const cli_decision_names[CLI_N_DECISIONS] = {"f1", "fpr_1pct", "fpr_5pct"};

bool cli_decisions(const float *scores, const uint8_t *labels, size_t n,
                   cli_decision d[CLI_N_DECISIONS])
{
    for (int k = 0; k < CLI_N_DECISIONS; k++) d[k].threshold = d[k].recall = d[k].fpr = NAN;
    float *neg = malloc((n ? n : 1) * sizeof *neg);
    size_t nn = 0, np = 0;
    for (size_t i = 0; neg && i < n; i++) {
        if (!labels[i]) neg[nn++] = scores[i];
        np += labels[i] != 0;
    }
    if (!neg || nn == 0 || np == 0) {
        free(neg);
        return false;
    }
    double t1;
    uf_f1_max_threshold(scores, labels, n, &t1);           /* anomalous when score >= t1 */
    d[0].threshold = nextafterf((float)t1, -INFINITY);      /* the same rule as score > t */
    d[1].threshold = uf_threshold_at_fpr(neg, nn, 0.01, NULL);
    d[2].threshold = uf_threshold_at_fpr(neg, nn, 0.05, NULL);
    for (int k = 0; k < CLI_N_DECISIONS; k++) {
        size_t tp = 0, fp = 0;
        for (size_t i = 0; i < n; i++) {
            tp += labels[i] && scores[i] > d[k].threshold;
            fp += !labels[i] && scores[i] > d[k].threshold;
        }
        d[k].recall = (double)tp / (double)np;
        d[k].fpr = (double)fp / (double)nn;
    }
    free(neg);
    return true;
}

/* A labelled list: paths (resolved against the list's folder) and labels. */
bool cli_read_labels(const char *list, cli_strings *paths, uint8_t **labels)
{
    FILE *f = cli_open_input(list);
    if (!f) return false;
    size_t cap = 0, ln = 0;
    *labels = NULL;
    char line[8192];
    const char *slash = strrchr(list, '/');
    int dirlen = slash ? (int)(slash - list) : 0;
    bool ok = true;
    while (ok && fgets(line, sizeof line, f)) {
        ln++;
        size_t L = strlen(line);
        while (L && isspace((unsigned char)line[L - 1])) line[--L] = 0;
        char *p = line;
        while (isspace((unsigned char)*p)) p++;
        if (!*p || *p == '#') continue;
        char *sp = p + strlen(p);
        while (sp > p && !isspace((unsigned char)sp[-1])) sp--;
        const char *lab = sp;
        while (sp > p && isspace((unsigned char)sp[-1])) sp--;
        *sp = 0;
        int y = !strcmp(lab, "0") || !strcmp(lab, "good") || !strcmp(lab, "normal")      ? 0
                : !strcmp(lab, "1") || !strcmp(lab, "bad") || !strcmp(lab, "anomalous") ? 1
                                                                                         : -1;
        if (y < 0 || !*p) {
            cli_error("%s:%zu: expected 'PATH LABEL' with LABEL 0|good|normal|1|bad|anomalous",
                      list, ln);
            ok = false;
            break;
        }
        char full[8300];
        if (p[0] != '/' && dirlen) snprintf(full, sizeof full, "%.*s/%s", dirlen, list, p);
        else snprintf(full, sizeof full, "%s", p);
        if (paths->n == cap) {
            cap = cap ? 2 * cap : 64;
            uint8_t *nl = realloc(*labels, cap);
            if (!nl) { ok = false; cli_error("out of memory"); break; }
            *labels = nl;
        }
        (*labels)[paths->n] = (uint8_t)y;
        if (!cli_strings_push(paths, full)) { ok = false; cli_error("out of memory"); }
    }
    fclose(f);
    if (ok && paths->n == 0) {
        cli_error("%s: no labelled images", list);
        ok = false;
    }
    return ok;
}

