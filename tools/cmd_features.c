/*
 * cmd_features.c - `uniformaly features` (dump chosen block outputs and attention maps of
 * images to a .safetensors file for inspection in numpy/PyTorch) and `uniformaly info`
 * (describe a checkpoint's architecture).
 */
#include "cli.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const help =
    "Usage: uniformaly features --backbone W --out FILE.safetensors [options] IMAGE|DIR|LIST.txt...\n"
    "\n"
    "Run the ViT on the images and write the requested outputs as float32 tensors to a\n"
    ".safetensors file (load with safetensors.numpy.load_file or safetensors.torch.load_file).\n"
    "With N images, Np patches and D channels it holds:\n"
    "  block<i>   [N][Np][D]  patch tokens (CLS excluded) after block i (1-based)\n"
    "  attn       [N][Np]     CLS-to-patch attention of --attn-block, mean over heads\n"
    "  rollout    [N][Np]     attention rollout through --attn-block (with --rollout)\n"
    "  cls        [N][D]      final-norm CLS feature (with --cls)\n"
    "  logits     [N][C]      classification head (with --logits)\n"
    "and metadata: the image paths (in order), the patch grid and the preprocessing.\n"
    "Every image runs on the same S x S input, so one tensor holds them all: with --crop 0\n"
    "(no --pad-to) that is the R x R canvas with the image at its top-left corner and zero\n"
    "padding beside it (not the image's own non-square grid the detector uses: images of\n"
    "different shapes would need one tensor each); --pad-to S centres it instead.\n"
    "If any image cannot be read, nothing is written and the exit status is 1.\n"
    "\n"
    "Options:\n"
    "  --out FILE           output file (written atomically; not one of the inputs; a\n"
    "                       symbolic link is written through)\n"
    "  --layers SPEC        blocks to save, e.g. 3-10 (default) or 1,4,7-9; 'none' for none\n"
    "  --attn-block L       block whose CLS attention to save (default: the last of --layers;\n"
    "                       0 = none)\n"
    "  --rollout            save attention rollout instead of the plain CLS attention\n"
    "  --cls                save the final-norm CLS feature\n"
    "  --logits             save the classification head's logits\n";

/* Parse "3-10", "1,4,7-9" or "none" into a bitmask of 1-based blocks <= 64. */
static bool parse_layers(const char *s, uint64_t *mask)
{
    *mask = 0;
    if (!strcmp(s, "none")) return true;
    const char *p = s;
    while (*p) {
        char *end;
        long a = strtol(p, &end, 10), b;
        if (end == p || a < 1 || a > 64) return false;
        p = end;
        b = a;
        if (*p == '-') {
            p++;
            b = strtol(p, &end, 10);
            if (end == p || b < a || b > 64) return false;
            p = end;
        }
        for (long i = a; i <= b; i++) *mask |= (uint64_t)1 << (i - 1);
        if (*p == ',') p++;
        else if (*p) return false;
    }
    return *mask != 0;
}

/* What `features` was asked for. */
typedef struct features_opts {
    cli_common c;
    const char *out_path;
    uint64_t blocks; /* bit b-1: save block b */
    long attn_block; /* 0: none */
    bool rollout, want_cls, want_logits;
    int npos;
    char **pos;      /* [npos] image, folder and list arguments */
} features_opts;

/* Parse argv into o (o->pos allocated here). Returns -1 to go on, else the exit status
 * (0 after --help; usage errors printed). */
static int parse_features_args(int argc, char **argv, features_opts *o)
{
    const char *verb = "features";
    memset(o, 0, sizeof *o);
    cli_common_init(&o->c);
    o->attn_block = -1;
    bool layers_given = false;
    if (!(o->pos = calloc((size_t)argc + 1, sizeof *o->pos))) return CLI_EXIT_RUNTIME;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = cli_common_option(&o->c, verb, argc, argv, &i);
        if (r < 0) return CLI_EXIT_USAGE;
        if (r > 0) continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("%s\n%s", help, cli_common_help);
            return 0;
        } else if (!strcmp(a, "--out")) {
            if (i + 1 >= argc) return cli_usage_error(verb, "option --out needs a value");
            o->out_path = argv[++i];
        } else if (!strcmp(a, "--layers")) {
            if (i + 1 >= argc || !parse_layers(argv[i + 1], &o->blocks))
                return cli_usage_error(verb, "--layers: expected e.g. 3-10, 1,4,7-9 or none (blocks 1..64)");
            layers_given = true;
            i++;
        } else if (!strcmp(a, "--attn-block")) {
            if (i + 1 >= argc || !cli_parse_int(argv[i + 1], 0, 64, &o->attn_block))
                return cli_usage_error(verb, "--attn-block: expected an integer in 0..64");
            i++;
        } else if (!strcmp(a, "--rollout")) {
            o->rollout = true;
        } else if (!strcmp(a, "--cls")) {
            o->want_cls = true;
        } else if (!strcmp(a, "--logits")) {
            o->want_logits = true;
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error(verb, "unknown option '%s'", a);
        } else {
            o->pos[o->npos++] = argv[i];
        }
    }
    if (!cli_default_backbone(&o->c)) return CLI_EXIT_RUNTIME;
    if (!o->out_path) return cli_usage_error(verb, "--out is required");
    if (o->npos == 0) return cli_usage_error(verb, "no images given");
    if (!layers_given) o->blocks = 0x3FCull; /* blocks 3..10 */
    if (o->attn_block < 0) { /* default: last selected block */
        o->attn_block = 0;
        for (int b = 64; b >= 1; b--)
            if (o->blocks >> (b - 1) & 1) { o->attn_block = b; break; }
    }
    if (o->rollout && o->attn_block == 0)
        return cli_usage_error(verb, "--rollout needs an attention block (--attn-block L)");
    if (!o->blocks && !o->attn_block && !o->want_cls && !o->want_logits)
        return cli_usage_error(verb, "nothing to compute");
    return -1;
}

/* One features run: the images, the network and every output, for all images. */
typedef struct features_run {
    cli_strings images;
    uf_inputs *inputs;
    uf_backbone *bb;
    uf_session *ses;
    uf_backbone_info info;
    int nsel, S, gh, gw;
    size_t N, Np, D, C;
    float *pix;        /* [batch][3][S][S] network inputs */
    float *bout;       /* [nsel][batch][Np][D] block outputs of one batch */
    float *all_blocks; /* [nsel][N][Np][D] */
    float *all_attn;   /* [N][Np] */
    float *all_cls;    /* [N][D] */
    float *all_logits; /* [N][C] */
} features_run;

static void features_run_free(features_run *r)
{
    free(r->pix);
    free(r->bout);
    free(r->all_blocks);
    free(r->all_attn);
    free(r->all_cls);
    free(r->all_logits);
    uf_session_free(r->ses);
    uf_backbone_free(r->bb);
    uf_inputs_free(r->inputs);
    cli_strings_free(&r->images);
}

/* Expand the images, check --out against them, load the backbone, check the request
 * against it and allocate every output; false after printing an error. */
static bool features_setup(const features_opts *o, features_run *r)
{
    const cli_common *c = &o->c;
    if (!cli_expand_images(&o->c, o->npos, o->pos, &r->images)) return false;
    const char *more[1] = {c->backbone};
    if (!(r->inputs = cli_run_inputs(&r->images, o->npos, o->pos, more, 1)) ||
        !cli_check_output(o->out_path, r->inputs))
        return false;
    if (!(r->bb = cli_load_backbone(c))) return false;
    uf_backbone_get_info(r->bb, &r->info);
    if (o->want_logits && r->info.n_classes <= 0) {
        cli_error("%s: checkpoint has no classification head; drop --logits", c->backbone);
        return false;
    }
    int maxb = 0;
    for (int b = 1; b <= 64; b++)
        if (o->blocks >> (b - 1) & 1) { r->nsel++; maxb = b; }
    if (maxb > r->info.depth || o->attn_block > r->info.depth) {
        cli_error("%s has %d blocks; requested block %ld", c->backbone, r->info.depth,
                  maxb > o->attn_block ? (long)maxb : o->attn_block);
        return false;
    }
    if (uf_session_new(r->bb, &r->ses) != UF_OK) { cli_error("%s", uf_errmsg()); return false; }
    uf_session_set_threads(r->ses, c->threads);
    r->S = uf_preprocess_size(&c->pre);
    r->gh = r->gw = r->S / r->info.patch;
    r->N = r->images.n;
    r->Np = (size_t)r->gh * r->gw;
    r->D = (size_t)r->info.dim;
    r->C = (size_t)r->info.n_classes;
    size_t N = r->N, Np = r->Np, D = r->D, per = (size_t)3 * r->S * r->S, nsel = (size_t)r->nsel;
    r->pix = malloc(sizeof(float) * per * (size_t)c->batch);
    r->bout = nsel ? malloc(sizeof(float) * nsel * c->batch * Np * D) : NULL;
    r->all_blocks = nsel ? malloc(sizeof(float) * nsel * N * Np * D) : NULL;
    r->all_attn = o->attn_block ? malloc(sizeof(float) * N * Np) : NULL;
    r->all_cls = o->want_cls ? malloc(sizeof(float) * N * D) : NULL;
    r->all_logits = o->want_logits ? malloc(sizeof(float) * N * r->C) : NULL;
    if (!r->pix || (nsel && (!r->bout || !r->all_blocks)) || (o->attn_block && !r->all_attn) ||
        (o->want_cls && !r->all_cls) || (o->want_logits && !r->all_logits)) {
        cli_error("out of memory for %zu images (try fewer images or layers)", N);
        return false;
    }
    return true;
}

/* True if every output of image j (of nb in the batch) is finite. */
static bool outputs_finite(const features_run *r, const uf_forward_output *out, int nb, int j)
{
    size_t Np = r->Np, D = r->D, C = r->C;
    for (int k = 0; k < r->nsel; k++) {
        const float *v = r->bout + ((size_t)k * nb + j) * Np * D; /* [Np][D] */
        for (size_t q = 0; q < Np * D; q++)
            if (!isfinite(v[q])) return false;
    }
    for (size_t q = 0; out->attn && q < Np; q++)
        if (!isfinite(out->attn[j * Np + q])) return false;
    for (size_t q = 0; out->cls && q < D; q++)
        if (!isfinite(out->cls[j * D + q])) return false;
    for (size_t q = 0; out->logits && q < C; q++)
        if (!isfinite(out->logits[j * C + q])) return false;
    return true;
}

/* Decode and run one batch of nb images starting at b0 into the outputs; false after
 * printing an error (an unreadable image, NaN/Inf outputs). */
static bool features_batch(const features_opts *o, features_run *r, size_t b0, int nb)
{
    size_t per = (size_t)3 * r->S * r->S, Np = r->Np, D = r->D, N = r->N;
    int bad = 0;
#pragma omp parallel for schedule(dynamic) reduction(+ : bad)
    for (int j = 0; j < nb; j++)
        if (!cli_load_image(&o->c, r->images.v[b0 + j], r->pix + per * (size_t)j)) bad++;
    if (bad) return false; /* errors printed; write nothing */
    uf_forward_request req = {0};
    req.blocks = o->blocks;
    req.attn_block = (int)o->attn_block;
    req.rollout = o->rollout;
    req.want_cls = o->want_cls;
    req.want_logits = o->want_logits;
    uf_forward_output out = {0};
    out.blocks = r->bout;
    out.attn = r->all_attn ? r->all_attn + b0 * Np : NULL;
    out.cls = r->all_cls ? r->all_cls + b0 * D : NULL;
    out.logits = r->all_logits ? r->all_logits + b0 * r->C : NULL;
    if (uf_forward(r->ses, r->pix, nb, r->S, r->S, &req, &out) != UF_OK) {
        cli_error("forward pass failed: %s", uf_errmsg());
        return false;
    }
    /* NaN/Inf outputs (an overflow in the network) are reported, naming the image, and
     * nothing is written */
    for (int j = 0; j < nb; j++)
        if (!outputs_finite(r, &out, nb, j)) {
            cli_error("%s: the backbone produced NaN or Inf outputs (overflow in the network)",
                      r->images.v[b0 + (size_t)j]);
            return false;
        }
    /* scatter [nsel][nb][Np][D] into [nsel][N][Np][D] */
    for (int k = 0; k < r->nsel; k++)
        memcpy(r->all_blocks + ((size_t)k * N + b0) * Np * D, r->bout + (size_t)k * nb * Np * D,
               sizeof(float) * (size_t)nb * Np * D);
    return true;
}

/* The metadata of the file: image paths (in order), grid, attention block, preprocessing
 * and backbone, as a JSON string (malloc'd; NULL when out of memory). */
static char *features_metadata(const features_opts *o, const features_run *r)
{
    const uf_preprocess *pre = &o->c.pre;
    cJSON *meta = cJSON_CreateObject(), *imgs = cJSON_CreateArray();
    for (size_t i = 0; i < r->N; i++) cJSON_AddItemToArray(imgs, cJSON_CreateString(r->images.v[i]));
    char *imgs_s = cJSON_PrintUnformatted(imgs);
    cJSON_Delete(imgs);
    char buf[512];
    cJSON_AddStringToObject(meta, "images", imgs_s ? imgs_s : "[]");
    free(imgs_s);
    snprintf(buf, sizeof buf, "%d,%d", r->gh, r->gw);
    cJSON_AddStringToObject(meta, "grid", buf);
    snprintf(buf, sizeof buf, "%ld", o->attn_block);
    cJSON_AddStringToObject(meta, "attn_block", buf);
    static const char *const interp_names[] = {"bilinear", "bicubic", "lanczos", "nearest"};
    static const char *const fit_names[] = {"auto", "short", "long"};
    snprintf(buf, sizeof buf,
             "resize=%d crop=%d pad_to=%d fit=%s interp=%s mean=%g,%g,%g std=%g,%g,%g",
             pre->resize, pre->crop, pre->pad_to,
             (unsigned)pre->fit < 3 ? fit_names[pre->fit] : "?", interp_names[pre->interp],
             pre->mean[0], pre->mean[1], pre->mean[2], pre->std[0], pre->std[1], pre->std[2]);
    cJSON_AddStringToObject(meta, "preprocess", buf);
    cJSON_AddStringToObject(meta, "backbone", o->c.backbone);
    char *meta_s = cli_json_print(meta);
    cJSON_Delete(meta);
    return meta_s;
}

/* Write every requested output as one .safetensors file; false after printing an error. */
static bool write_features(const features_opts *o, const features_run *r)
{
    int nt = 0;
    const char *names[70];
    char namebuf[64][24]; /* "block64" needs 8; room silences -Wformat-truncation */
    int ndims[70];
    int64_t shapes[70][3];
    const int64_t *shp[70];
    const float *data[70];
    int64_t N = (int64_t)r->N, Np = (int64_t)r->Np, D = (int64_t)r->D, C = (int64_t)r->C;
    for (int b = 1, k = 0; b <= 64; b++) {
        if (!(o->blocks >> (b - 1) & 1)) continue;
        snprintf(namebuf[k], sizeof namebuf[k], "block%d", b);
        names[nt] = namebuf[k];
        ndims[nt] = 3;
        shapes[nt][0] = N; shapes[nt][1] = Np; shapes[nt][2] = D;
        data[nt++] = r->all_blocks + (size_t)k * r->N * r->Np * r->D;
        k++;
    }
    if (o->attn_block) {
        names[nt] = o->rollout ? "rollout" : "attn";
        ndims[nt] = 2;
        shapes[nt][0] = N; shapes[nt][1] = Np;
        data[nt++] = r->all_attn;
    }
    if (o->want_cls) {
        names[nt] = "cls";
        ndims[nt] = 2;
        shapes[nt][0] = N; shapes[nt][1] = D;
        data[nt++] = r->all_cls;
    }
    if (o->want_logits) {
        names[nt] = "logits";
        ndims[nt] = 2;
        shapes[nt][0] = N; shapes[nt][1] = C;
        data[nt++] = r->all_logits;
    }
    for (int t = 0; t < nt; t++) shp[t] = shapes[t];
    char *meta_s = features_metadata(o, r);
    uf_status s = uf_safetensors_write(o->out_path, nt, names, ndims, shp, data, meta_s);
    free(meta_s);
    if (s != UF_OK) cli_error("%s", uf_errmsg());
    return s == UF_OK;
}

int cmd_features(int argc, char **argv)
{
    features_opts o;
    int rc = parse_features_args(argc, argv, &o);
    if (rc >= 0) {
        free(o.pos);
        return rc;
    }
    cli_threads_init(&o.c);
    features_run r;
    memset(&r, 0, sizeof r);
    bool ok = features_setup(&o, &r);
    for (size_t b0 = 0; ok && b0 < r.N; b0 += (size_t)o.c.batch) {
        int nb = (int)((r.N - b0) < (size_t)o.c.batch ? r.N - b0 : (size_t)o.c.batch);
        ok = features_batch(&o, &r, b0, nb);
        if (ok) cli_progress(&o.c, "features", b0 + (size_t)nb, r.N);
    }
    ok = ok && write_features(&o, &r);
    features_run_free(&r);
    free(o.pos);
    return ok ? 0 : CLI_EXIT_RUNTIME;
}

static const char *const info_help =
    "Usage: uniformaly info [--json] [--heads N] FILE\n"
    "\n"
    "Describe a model file written by 'uniformaly fit' (settings, bank size, memory, backbone\n"
    "identity) or a checkpoint (.pth or .safetensors: architecture read from its tensors).\n"
    "  --json      model files: print one JSON object\n"
    "  --heads N   checkpoints: attention heads when not inferable from the dim\n";

/* 1: a model file (its magic), 2: a damaged one (its end marker "UFMEND", or 6 of the 8
 * magic bytes), 0: anything else (a checkpoint, or not ours at all). */
static int model_file_kind(const char *path)
{
    static const char magic[8] = "UFMODEL", end[8] = "UFMEND";
    char h[8] = {0}, t[8] = {0};
    int fd;
    if (uf_open_input(path, &fd) != UF_OK) return 0; /* loading will say why */
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return 0;
    }
    size_t n = fread(h, 1, sizeof h, f);
    bool has_end = fseek(f, -8, SEEK_END) == 0 && fread(t, 1, sizeof t, f) == 8 &&
                   !memcmp(t, end, 8);
    fclose(f);
    int same = 0;
    for (size_t i = 0; i < n; i++) same += h[i] == magic[i];
    if (same == 8) return 1;
    return has_end || same >= 6 ? 2 : 0;
}

int cmd_inspect(int argc, char **argv)
{
    const char *verb = "info";
    const char *path = NULL;
    uf_backbone_params bp = uf_backbone_default_params();
    bool json = false;
    for (int i = 1; i < argc; i++) {
        long n;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(info_help, stdout);
            return 0;
        } else if (!strcmp(argv[i], "--json")) {
            json = true;
        } else if (!strcmp(argv[i], "--heads")) {
            if (i + 1 >= argc || !cli_parse_int(argv[i + 1], 1, 256, &n))
                return cli_usage_error(verb, "--heads: expected an integer in 1..256");
            bp.heads = (int)n;
            i++;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return cli_usage_error(verb, "unknown option '%s'", argv[i]);
        } else if (path) {
            return cli_usage_error(verb, "one file at a time");
        } else {
            path = argv[i];
        }
    }
    if (!path) return cli_usage_error(verb, "no file given");
    const int kind = model_file_kind(path);
    if (kind == 1) return cmd_model_info(path, json);
    if (kind == 2) {
        cli_error("%s: damaged uniformaly model file (its first bytes are not the model "
                  "magic \"UFMODEL\")", path);
        return CLI_EXIT_RUNTIME;
    }
    if (json) return cli_usage_error(verb, "--json is for model files");
    uf_backbone *bb = NULL;
    if (uf_backbone_load(path, &bp, &bb) != UF_OK) {
        /* info takes both kinds of file: say the file is neither */
        const char *m = uf_errmsg(), *tail = strstr(m, ": not a .pth or .safetensors checkpoint");
        if (tail && !tail[strlen(": not a .pth or .safetensors checkpoint")])
            cli_error("%s: neither a uniformaly model file nor a .pth or .safetensors "
                      "checkpoint", path);
        else cli_error("%s", m);
        return CLI_EXIT_RUNTIME;
    }
    uf_backbone_info in;
    uf_backbone_get_info(bb, &in);
    printf("file:        %s\n", path);
    printf("format:      %s\n", in.format);
    printf("model:       ViT, patch %d, dim %d, depth %d, heads %d, mlp %d\n", in.patch, in.dim,
           in.depth, in.heads, in.mlp_dim);
    printf("trained at:  %dx%d patches (%dx%d pixels)\n", in.grid_h, in.grid_w,
           in.grid_h * in.patch, in.grid_w * in.patch);
    if (in.n_classes) printf("head:        %d classes\n", in.n_classes);
    else printf("head:        none (self-supervised backbone)\n");
    printf("parameters:  %zu (%.1f MB as float32)\n", in.n_params, in.n_params * 4.0 / 1e6);
    uf_backbone_free(bb);
    return 0;
}
