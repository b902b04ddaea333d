/*
 * cmd_classify.c - `uniformaly classify`: top-k ImageNet-style classification with a
 * checkpoint's classification head. It is the quickest end-to-end check that a checkpoint,
 * the preprocessing and the forward pass are right: a wrong weight layout or resampling
 * shows up as wrong classes.
 */
#include "cli.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const help =
    "Usage: uniformaly classify --backbone W [options] IMAGE|DIR|LIST.txt...\n"
    "\n"
    "Print the top classes of each image using the checkpoint's classification head\n"
    "(a supervised ViT such as timm's vit_*_224; self-supervised DINO/iBOT checkpoints have\n"
    "no classifier). Images that cannot be read are reported and skipped (exit status 1).\n"
    "The head was trained on square inputs (resize + centre crop); --crop 0 classifies the\n"
    "R x R canvas with the image at its top-left corner (zero padding beside it), --pad-to\n"
    "S the image centred on an S x S canvas: neither is the detector's own-grid geometry.\n"
    "\n"
    "Options:\n"
    "  --labels FILE        class names, one per line, line 1 = class 0\n"
    "  --top K              number of classes to print (default 5)\n"
    "  --json               one JSON object per line:\n"
    "                       {\"image\": PATH, \"top5\": [{\"index\": I, \"name\": S, \"prob\": P}, ...]}\n"
    "                       (\"name\" is null without --labels; the key is \"top<K>\")\n"
    "In the plain output a backslash, tab, newline or carriage return of PATH is written as\n"
    "\\\\, \\t, \\n, \\r; in JSON every byte of a name that is not valid UTF-8 is replaced by\n"
    "U+FFFD (the JSON stays valid, the name inexact).\n";

/* Read one label per line; returns the count, or -1 after printing an error. */
static int read_labels(const char *path, cli_strings *out)
{
    FILE *f = cli_open_input(path);
    if (!f) return -1;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (!cli_strings_push(out, line)) {
            free(line);
            fclose(f);
            cli_error("out of memory");
            return -1;
        }
    }
    free(line);
    fclose(f);
    return (int)out->n;
}

/* Softmax of logits [C] in double precision, then indices of the k largest (descending). */
static void top_k(const float *logits, int C, int k, int *idx, double *prob)
{
    double mx = -INFINITY, sum = 0;
    for (int c = 0; c < C; c++)
        if (logits[c] > mx) mx = logits[c];
    for (int c = 0; c < C; c++) sum += exp((double)logits[c] - mx);
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int c = 0; c < C; c++) {
            bool taken = false;
            for (int t = 0; t < j; t++) taken |= idx[t] == c;
            if (!taken && (best < 0 || logits[c] > logits[best])) best = c;
        }
        idx[j] = best;
        prob[j] = exp((double)logits[best] - mx) / sum;
    }
}

static void print_result(const char *path, const float *logits, int C, int k,
                         const cli_strings *labels, bool json)
{
    int idx[64];
    double prob[64];
    top_k(logits, C, k, idx, prob);
    if (json) {
        cJSON *o = cJSON_CreateObject(), *arr = cJSON_CreateArray();
        char key[32];
        snprintf(key, sizeof key, "top%d", k);
        cJSON_AddStringToObject(o, "image", path);
        for (int j = 0; j < k; j++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddNumberToObject(e, "index", idx[j]);
            if (labels->n) cJSON_AddStringToObject(e, "name", labels->v[idx[j]]);
            else cJSON_AddNullToObject(e, "name");
            /* round to 6 decimals so output is stable and compact */
            cJSON_AddNumberToObject(e, "prob", round(prob[j] * 1e6) / 1e6);
            cJSON_AddItemToArray(arr, e);
        }
        cJSON_AddItemToObject(o, key, arr);
        char *s = cli_json_print(o);
        if (s) puts(s);
        free(s);
        cJSON_Delete(o);
    } else {
        cli_tsv_field(stdout, path); /* one line whatever the name holds */
        putchar('\n');
        for (int j = 0; j < k; j++)
            printf("  %8.4f  %4d  %s\n", prob[j], idx[j],
                   labels->n ? labels->v[idx[j]] : "");
    }
}

int cmd_classify(int argc, char **argv)
{
    const char *verb = "classify";
    cli_common c;
    cli_common_init(&c);
    const char *labels_path = NULL;
    bool json = false;
    long topk = 5;
    int first_pos = -1, npos = 0;
    char **pos = calloc((size_t)argc + 1, sizeof *pos);
    if (!pos) return CLI_EXIT_RUNTIME;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = cli_common_option(&c, verb, argc, argv, &i);
        if (r < 0) { free(pos); return CLI_EXIT_USAGE; }
        if (r > 0) continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("%s\n%s", help, cli_common_help);
            free(pos);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = true;
        } else if (!strcmp(a, "--labels")) {
            if (i + 1 >= argc) { free(pos); return cli_usage_error(verb, "option --labels needs a value"); }
            labels_path = argv[++i];
        } else if (!strcmp(a, "--top")) {
            if (i + 1 >= argc || !cli_parse_int(argv[i + 1], 1, 64, &topk)) {
                free(pos);
                return cli_usage_error(verb, "--top: expected an integer in 1..64");
            }
            i++;
        } else if (a[0] == '-' && a[1]) {
            free(pos);
            return cli_usage_error(verb, "unknown option '%s'", a);
        } else {
            if (first_pos < 0) first_pos = i;
            pos[npos++] = argv[i];
        }
    }
    if (!cli_default_backbone(&c)) { free(pos); return CLI_EXIT_RUNTIME; }
    if (npos == 0) { free(pos); return cli_usage_error(verb, "no images given"); }
    cli_threads_init(&c);

    int rc = 0;
    cli_strings images = {0}, labels = {0};
    uf_backbone *bb = NULL;
    uf_session *ses = NULL;
    float *pix = NULL, *logits = NULL;
    bool *ok = NULL;
    if (!cli_expand_images(&c, npos, pos, &images)) { rc = CLI_EXIT_RUNTIME; goto done; }
    if (!(bb = cli_load_backbone(&c))) { rc = CLI_EXIT_RUNTIME; goto done; }
    uf_backbone_info info;
    uf_backbone_get_info(bb, &info);
    if (info.n_classes <= 0) {
        cli_error("%s: checkpoint has no classification head (head.weight); classify needs a "
                  "supervised ViT", c.backbone);
        rc = CLI_EXIT_RUNTIME;
        goto done;
    }
    if (topk > info.n_classes) topk = info.n_classes;
    if (labels_path) {
        int nl = read_labels(labels_path, &labels);
        if (nl < 0) { rc = CLI_EXIT_RUNTIME; goto done; }
        if (nl != info.n_classes) {
            cli_error("%s: %d names, but the classification head has %d classes", labels_path,
                      nl, info.n_classes);
            rc = CLI_EXIT_RUNTIME;
            goto done;
        }
    }
    if (uf_session_new(bb, &ses) == UF_OK) uf_session_set_threads(ses, c.threads);
    else {
        cli_error("%s", uf_errmsg());
        rc = CLI_EXIT_RUNTIME;
        goto done;
    }
    int S = uf_preprocess_size(&c.pre);
    size_t per = (size_t)3 * S * S;
    pix = malloc(sizeof(float) * per * (size_t)c.batch);         /* [batch][3][S][S] */
    logits = malloc(sizeof(float) * (size_t)info.n_classes * (size_t)c.batch); /* [batch][C] */
    ok = calloc((size_t)c.batch, sizeof *ok);
    if (!pix || !logits || !ok) { cli_error("out of memory"); rc = CLI_EXIT_RUNTIME; goto done; }

    for (size_t b0 = 0; b0 < images.n; b0 += (size_t)c.batch) {
        int nb = (int)((images.n - b0) < (size_t)c.batch ? images.n - b0 : (size_t)c.batch);
        /* decode + preprocess in parallel; failed images are reported and left out */
#pragma omp parallel for schedule(dynamic)
        for (int j = 0; j < nb; j++)
            ok[j] = cli_load_image(&c, images.v[b0 + j], pix + per * (size_t)j);
        int nok = 0;
        for (int j = 0; j < nb; j++) {
            if (!ok[j]) { rc = CLI_EXIT_RUNTIME; continue; }
            if (nok != j) memmove(pix + per * (size_t)nok, pix + per * (size_t)j, per * sizeof(float));
            nok++;
        }
        if (nok) {
            uf_forward_request req = {0};
            req.want_logits = 1;
            uf_forward_output out = {0};
            out.logits = logits;
            if (uf_forward(ses, pix, nok, S, S, &req, &out) != UF_OK) {
                cli_error("forward pass failed: %s", uf_errmsg());
                rc = CLI_EXIT_RUNTIME;
                goto done;
            }
        }
        for (int j = 0, k = 0; j < nb; j++) {
            if (!ok[j]) continue;
            /* NaN/Inf logits (an overflow in the network): reported, not ranked */
            const float *lg = logits + (size_t)info.n_classes * k;
            bool finite = true;
            for (int q = 0; q < info.n_classes; q++) finite = finite && isfinite(lg[q]);
            if (!finite) {
                cli_error("%s: the backbone produced NaN or Inf logits (overflow in the network)",
                          images.v[b0 + j]);
                rc = CLI_EXIT_RUNTIME;
                k++;
                continue;
            }
            print_result(images.v[b0 + j], logits + (size_t)info.n_classes * k, info.n_classes,
                         (int)topk, &labels, json);
            k++;
        }
        fflush(stdout);
        cli_progress(&c, "classify", b0 + (size_t)nb, images.n);
    }
done:
    free(pix);
    free(logits);
    free(ok);
    uf_session_free(ses);
    uf_backbone_free(bb);
    cli_strings_free(&images);
    cli_strings_free(&labels);
    free(pos);
    return rc;
}
