/*
 * cmd_report.c - `uniformaly report`: the report.html of `eval` for images scored with
 * `predict --json` (a production line's own images), given their labels; so a model can be
 * judged on data that is not in a published dataset layout.
 */
#include "cli.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const help =
    "Usage: uniformaly report --predictions PRED.jsonl --labels LABELS.txt --out REPORT.html\n"
    "\n"
    "Write the report of 'uniformaly eval' (ROC and PR curves, score histograms with the\n"
    "F1-optimal and 1% / 5% false-positive-rate thresholds, most confident mistakes) for\n"
    "images scored by 'uniformaly predict --json' (heatmaps, when written, are the\n"
    "thumbnails). LABELS.txt: one 'PATH LABEL' line per image as for 'calibrate --val'\n"
    "(0|good|normal, 1|bad|anomalous); PATH must be written as predict printed it. Every\n"
    "labelled image must have a prediction.\n";

int cmd_report(int argc, char **argv)
{
    const char *verb = "report", *pred = NULL, *labs = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(help, stdout);
            return 0;
        }
        const char **dst = !strcmp(a, "--predictions") ? &pred : !strcmp(a, "--labels") ? &labs
                           : !strcmp(a, "--out") ? &out : NULL;
        if (!dst) return cli_usage_error(verb, "unknown argument '%s'", a);
        if (i + 1 >= argc) return cli_usage_error(verb, "option %s needs a value", a);
        *dst = argv[++i];
    }
    if (!pred || !labs || !out) return cli_usage_error(verb, "--predictions, --labels and --out are required");
    cli_strings paths = {0};
    uint8_t *y = NULL;
    if (!cli_read_labels(labs, &paths, &y)) return CLI_EXIT_RUNTIME;
    const size_t n = paths.n;
    float *sc = calloc(n, sizeof *sc);
    const char **types = calloc(n, sizeof *types), **thumbs = calloc(n, sizeof *thumbs);
    char **heat = calloc(n, sizeof *heat);
    bool *seen = calloc(n, sizeof *seen);
    int rc = 0;
    FILE *f = sc && types && thumbs && heat && seen ? cli_open_input(pred) : NULL;
    if (!f) rc = CLI_EXIT_RUNTIME;
    char *line = NULL;
    size_t cap = 0, ln = 0;
    while (f && !rc && getline(&line, &cap, f) > 0) {
        ln++;
        cJSON *o = cJSON_Parse(line);
        const cJSON *im = cJSON_GetObjectItemCaseSensitive(o, "image"),
                    *s = cJSON_GetObjectItemCaseSensitive(o, "score"),
                    *h = cJSON_GetObjectItemCaseSensitive(o, "heatmap");
        if (!cJSON_IsString(im) || !cJSON_IsNumber(s)) {
            cli_error("%s:%zu: not a line of 'predict --json' output", pred, ln);
            rc = CLI_EXIT_RUNTIME;
        }
        for (size_t i = 0; !rc && i < n; i++) /* the label list's path, or predict's */
            if (!strcmp(paths.v[i], im->valuestring)) {
                sc[i] = (float)s->valuedouble;
                seen[i] = true;
                if (cJSON_IsString(h) && !heat[i]) heat[i] = strdup(h->valuestring);
            }
        cJSON_Delete(o);
    }
    if (f) fclose(f);
    free(line);
    for (size_t i = 0; !rc && i < n; i++) {
        if (!seen[i]) {
            cli_error("%s: %s is labelled but has no prediction in %s", labs, paths.v[i], pred);
            rc = CLI_EXIT_RUNTIME;
        }
        types[i] = y[i] ? "anomalous" : "good";
        thumbs[i] = heat[i] ? heat[i] : paths.v[i];
    }
    cli_report_set set = {"predictions", n, sc, y, types, (const char *const *)paths.v, thumbs};
    char title[4200];
    snprintf(title, sizeof title, "uniformaly report: %s", pred);
    if (!rc && !cli_write_report(out, title, &set, 1)) rc = CLI_EXIT_RUNTIME;
    for (size_t i = 0; heat && i < n; i++) free(heat[i]);
    free(heat), free(sc), free(types), free(thumbs), free(seen), free(y);
    cli_strings_free(&paths);
    return rc;
}
