/*
 * cmd_zeroshot.c - `uniformaly zeroshot`: score a set of test images with no training
 * images, each against all the others (uf_zeroshot_*, MuSc's mutual scoring). Why a verb of
 * its own: there is no model file to load, the whole set must be read before the first
 * score exists, and the set itself is the reference. The images are decoded in batches and
 * only their features are kept; they are scored 64 at a time (so the pixel maps held stay
 * bounded), each group's lines written as it is done; the output lines, JSON and heatmaps
 * are predict's.
 */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const help =
    "Usage: uniformaly zeroshot --backbone W [options] IMAGE|DIR|LIST.txt...\n"
    "\n"
    "Score a set of test images with no training images: every image's foreground patches\n"
    "are compared with those of all the OTHER images (MuSc's mutual scoring, Li et al.,\n"
    "ICLR 2024): for each other image, the squared L2 distance to its nearest foreground\n"
    "patch; a patch's score is the mean of the smallest --ref-frac of these (MuSc: 0.3).\n"
    "Defects are assumed rare in the set; then the image score, masking and maps are as\n"
    "predict's. Needs at least 2 images; an unreadable image stops the run (exit 1).\n"
    "Output: one line per image, in input order, as predict:\n"
    "  PATH<TAB>SCORE<TAB>anomalous|normal|-<TAB>NORMALIZED|-  (SCORE / --threshold)\n"
    "Cost grows with the square of the number of images; memory with their number.\n"
    "\n"
    "Options:\n"
    "  --json               one JSON object per line (predict's fields)\n"
    "  --threshold T        decision threshold on the score (default: none, '-')\n"
    "  --ref-frac F         fraction of the other images averaged, in (0, 1] [0.3]\n"
    "  --block N            query images per pass (0: as many as 64 MB allow) [0];\n"
    "                       results do not depend on it\n"
    "  --heatmap-dir D      write D/NAME.png overlays (named as predict does)\n"
    "  --heatmap-range L,H  colour scale of the overlays (default: each map's min..max)\n"
    "  --raw-maps           also write D/NAME.npy (needs --heatmap-dir)\n";

typedef struct zs_opts {
    cli_common c;
    uf_detector_params dp;
    bool json, raw;
    double thr, ref_frac;
    long block;
    float range[2];
    const char *heat_dir;
    int npos;
    char **pos;
} zs_opts;

/* Parse argv into o (o->pos allocated). Returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, zs_opts *o)
{
    const char *verb = "zeroshot";
    memset(o, 0, sizeof *o);
    cli_common_init(&o->c);
    o->dp = uf_detector_default_params();
    o->thr = NAN;
    o->ref_frac = UF_ZEROSHOT_DEFAULT_REF_FRAC;
    if (!(o->pos = calloc((size_t)argc + 1, sizeof *o->pos))) return CLI_EXIT_RUNTIME;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        int r = cli_common_option(&o->c, verb, argc, argv, &i);
        if (r == 0) r = cli_detector_option(&o->dp, verb, argc, argv, &i);
        if (r < 0) return CLI_EXIT_USAGE;
        if (r > 0) continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("%s\n%s\n%s", help, cli_detector_help, cli_common_help);
            return 0;
        } else if (!strcmp(a, "--json")) {
            o->json = true;
        } else if (!strcmp(a, "--raw-maps")) {
            o->raw = true;
        } else if (!strcmp(a, "--threshold")) {
            if (!has || !cli_parse_float(argv[i + 1], -1e30, 1e30, &o->thr))
                return cli_usage_error(verb, "--threshold: expected a number");
            i++;
        } else if (!strcmp(a, "--ref-frac")) {
            if (!has || !cli_parse_float(argv[i + 1], 1e-9, 1, &o->ref_frac))
                return cli_usage_error(verb, "--ref-frac: expected a number in (0, 1]");
            i++;
        } else if (!strcmp(a, "--block")) {
            if (!has || !cli_parse_int(argv[i + 1], 0, 1000000, &o->block))
                return cli_usage_error(verb, "--block: expected an integer in 0..1000000");
            i++;
        } else if (!strcmp(a, "--heatmap-dir")) {
            if (!has) return cli_usage_error(verb, "option %s needs a value", a);
            o->heat_dir = argv[++i];
        } else if (!strcmp(a, "--heatmap-range")) {
            if (!has || !cli_parse_floats(argv[i + 1], 2, o->range) || !(o->range[1] > o->range[0]))
                return cli_usage_error(verb, "--heatmap-range: expected L,H with L < H");
            i++;
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error(verb, "unknown option '%s'", a);
        } else {
            o->pos[o->npos++] = argv[i];
        }
    }
    if (!cli_default_backbone(&o->c)) return CLI_EXIT_RUNTIME;
    if (o->npos == 0) return cli_usage_error(verb, "no images given");
    if (o->raw && !o->heat_dir) return cli_usage_error(verb, "--raw-maps needs --heatmap-dir");
    o->dp.pre = o->c.pre;
    if (uf_detector_params_check(&o->dp, NULL) != UF_OK)
        return cli_usage_error(verb, "%s", uf_errmsg());
    return -1;
}

/* Decode the images in batches into the set; false after printing an error. */
static bool add_images(const zs_opts *o, const cli_strings *images, uf_zeroshot *z)
{
    uf_image **batch = calloc((size_t)o->c.batch, sizeof *batch);
    if (!batch) { cli_error("out of memory"); return false; }
    bool ok = true;
    for (size_t b0 = 0; ok && b0 < images->n; b0 += (size_t)o->c.batch) {
        int nb = (int)((images->n - b0) < (size_t)o->c.batch ? images->n - b0 : (size_t)o->c.batch);
        ok = cli_load_images(images->v + b0, nb, &o->dp.pre, batch) == nb;
        for (int j = 0; ok && j < nb; j++) /* one at a time: a failure names its image */
            if (uf_zeroshot_add(z, (const uf_image *const *)&batch[j], 1) != UF_OK) {
                cli_error("%s: %s", images->v[b0 + (size_t)j], uf_errmsg());
                ok = false;
            }
        for (int j = 0; j < nb; j++) uf_image_free(batch[j]);
        cli_progress(&o->c, "zeroshot: images", b0 + (size_t)nb, images->n);
    }
    free(batch);
    return ok;
}

/* Images scored (and their maps held) per library call: bounds the pixel maps in memory. */
#define OUT_CHUNK 64

/* Score the set and print one line per image (and its heatmap), OUT_CHUNK images at a
 * time, each chunk's lines as soon as it is scored; false after errors. */
static bool score_and_print(const zs_opts *o, const cli_strings *images, char **names,
                            const uf_inputs *inputs, uf_zeroshot *z)
{
    const uf_model *m = uf_zeroshot_model(z);
    int S;
    uf_model_output_size(m, NULL, NULL, &S, NULL);
    const size_t n = images->n, plane = (size_t)S * (size_t)S;
    uf_score res[OUT_CHUNK];
    float *maps = o->heat_dir ? malloc(OUT_CHUNK * plane * sizeof(float)) : NULL;
    cli_map_out *mo = o->heat_dir ? malloc(sizeof *mo) : NULL;
    bool ok = !o->heat_dir || (maps && mo);
    if (!ok) cli_error("out of memory for the pixel maps");
    cli_overlay_style style; /* no calibration: the threshold is the pixel level */
    cli_overlay_style_init(&style, o->range, o->thr, false, NULL);
    for (size_t c0 = 0; ok && c0 < n; c0 += OUT_CHUNK) {
        size_t nc = n - c0 < OUT_CHUNK ? n - c0 : OUT_CHUNK;
        memset(res, 0, sizeof res);
        for (size_t k = 0; maps && k < nc; k++) res[k].pixel_map = maps + k * plane;
        if (uf_zeroshot_score(z, c0, nc, (int)o->block, res) != UF_OK) {
            cli_error("%s", uf_errmsg());
            ok = false;
        }
        for (size_t k = 0; ok && k < nc; k++) {
            size_t i = c0 + k;
            if (o->heat_dir)
                ok = cli_write_maps(m, res[k].pixel_map, o->heat_dir, images->v[i], NULL, names[i],
                                    &style, res[k].score, o->raw, inputs, mo);
            cli_print_result(o->json, images->v[i], res[k].score, o->thr,
                             o->heat_dir ? mo : NULL);
        }
        fflush(stdout);
        cli_progress(&o->c, "zeroshot: scored", c0 + nc, n);
    }
    free(maps);
    free(mo);
    return ok;
}

int cmd_zeroshot(int argc, char **argv)
{
    zs_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0) {
        free(o.pos);
        return rc;
    }
    rc = CLI_EXIT_RUNTIME;
    cli_threads_init(&o.c);
    cli_strings images = {0};
    char **names = NULL;
    uf_inputs *inputs = NULL;
    uf_backbone *bb = NULL;
    uf_zeroshot *z = NULL;
    const char *more[1] = {o.c.backbone};
    if (!cli_expand_images(&o.c, o.npos, o.pos, &images) ||
        !(inputs = cli_run_inputs(&images, o.npos, o.pos, more, 1)))
        goto done;
    if (o.heat_dir) {
        struct stat st;
        if (!cli_heatmap_names(images.v, images.n, &names)) goto done;
        if (stat(o.heat_dir, &st) != 0 && mkdir(o.heat_dir, 0777) != 0) {
            cli_error("%s: cannot create directory: %s", o.heat_dir, strerror(errno));
            goto done;
        }
    }
    if (!(bb = cli_load_backbone(&o.c))) goto done;
    if (uf_zeroshot_new(bb, &o.dp, o.ref_frac, &z) != UF_OK) {
        cli_error("%s: %s", o.c.backbone, uf_errmsg());
        goto done;
    }
    uf_zeroshot_set_threads(z, o.c.threads);
    if (add_images(&o, &images, z) && score_and_print(&o, &images, names, inputs, z)) rc = 0;
done:
    for (size_t i = 0; names && i < images.n; i++) free(names[i]);
    free(names);
    uf_zeroshot_free(z);
    uf_backbone_free(bb);
    uf_inputs_free(inputs);
    cli_strings_free(&images);
    free(o.pos);
    return rc;
}
