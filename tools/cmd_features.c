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
    "If any image cannot be read, nothing is written and the exit status is 1.\n"
    "\n"
    "Options:\n"
    "  --out FILE           output file (written atomically)\n"
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

int cmd_features(int argc, char **argv)
{
    const char *verb = "features";
    cli_common c;
    cli_common_init(&c);
    const char *out_path = NULL;
    uint64_t blocks = 0;
    bool layers_given = false, rollout = false, want_cls = false, want_logits = false;
    long attn_block = -1;
    int npos = 0;
    char **pos = calloc((size_t)argc + 1, sizeof *pos);
    if (!pos) return CLI_EXIT_RUNTIME;
#define USAGE(...) do { free(pos); return cli_usage_error(verb, __VA_ARGS__); } while (0)
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = cli_common_option(&c, verb, argc, argv, &i);
        if (r < 0) { free(pos); return CLI_EXIT_USAGE; }
        if (r > 0) continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("%s\n%s", help, cli_common_help);
            free(pos);
            return 0;
        } else if (!strcmp(a, "--out")) {
            if (i + 1 >= argc) USAGE("option --out needs a value");
            out_path = argv[++i];
        } else if (!strcmp(a, "--layers")) {
            if (i + 1 >= argc || !parse_layers(argv[i + 1], &blocks))
                USAGE("--layers: expected e.g. 3-10, 1,4,7-9 or none (blocks 1..64)");
            layers_given = true;
            i++;
        } else if (!strcmp(a, "--attn-block")) {
            if (i + 1 >= argc || !cli_parse_int(argv[i + 1], 0, 64, &attn_block))
                USAGE("--attn-block: expected an integer in 0..64");
            i++;
        } else if (!strcmp(a, "--rollout")) {
            rollout = true;
        } else if (!strcmp(a, "--cls")) {
            want_cls = true;
        } else if (!strcmp(a, "--logits")) {
            want_logits = true;
        } else if (a[0] == '-' && a[1]) {
            USAGE("unknown option '%s'", a);
        } else {
            pos[npos++] = argv[i];
        }
    }
    if (!c.backbone) USAGE("--backbone is required");
    if (!out_path) USAGE("--out is required");
    if (npos == 0) USAGE("no images given");
    if (!layers_given) blocks = 0x3FCull; /* blocks 3..10 */
    if (attn_block < 0) { /* default: last selected block */
        attn_block = 0;
        for (int b = 64; b >= 1; b--)
            if (blocks >> (b - 1) & 1) { attn_block = b; break; }
    }
    if (rollout && attn_block == 0) USAGE("--rollout needs an attention block (--attn-block L)");
    if (!blocks && !attn_block && !want_cls && !want_logits) USAGE("nothing to compute");
#undef USAGE
    uf_set_threads(c.threads);

    int rc = CLI_EXIT_RUNTIME;
    cli_strings images = {0};
    uf_backbone *bb = NULL;
    uf_session *ses = NULL;
    float *pix = NULL, *bout = NULL;
    float *all_blocks = NULL, *all_attn = NULL, *all_cls = NULL, *all_logits = NULL;
    if (!cli_expand_images(npos, pos, &images)) goto done;
    if (!(bb = cli_load_backbone(&c))) goto done;
    uf_backbone_info info;
    uf_backbone_get_info(bb, &info);
    if (want_logits && info.n_classes <= 0) {
        cli_error("%s: checkpoint has no classification head; drop --logits", c.backbone);
        goto done;
    }
    int nsel = 0, maxb = 0;
    for (int b = 1; b <= 64; b++)
        if (blocks >> (b - 1) & 1) { nsel++; maxb = b; }
    if (maxb > info.depth || attn_block > info.depth) {
        cli_error("%s has %d blocks; requested block %ld", c.backbone, info.depth,
                  maxb > attn_block ? (long)maxb : attn_block);
        goto done;
    }
    if (uf_session_new(bb, &ses) != UF_OK) { cli_error("%s", uf_errmsg()); goto done; }

    int S = uf_preprocess_size(&c.pre), gh = S / info.patch, gw = S / info.patch;
    size_t N = images.n, Np = (size_t)gh * gw, D = (size_t)info.dim, C = (size_t)info.n_classes;
    size_t per = (size_t)3 * S * S;
    pix = malloc(sizeof(float) * per * (size_t)c.batch);                   /* [batch][3][S][S] */
    bout = nsel ? malloc(sizeof(float) * (size_t)nsel * c.batch * Np * D) : NULL; /* [nsel][batch][Np][D] */
    all_blocks = nsel ? malloc(sizeof(float) * (size_t)nsel * N * Np * D) : NULL; /* [nsel][N][Np][D] */
    all_attn = attn_block ? malloc(sizeof(float) * N * Np) : NULL;             /* [N][Np] */
    all_cls = want_cls ? malloc(sizeof(float) * N * D) : NULL;                 /* [N][D] */
    all_logits = want_logits ? malloc(sizeof(float) * N * C) : NULL;           /* [N][C] */
    if (!pix || (nsel && (!bout || !all_blocks)) || (attn_block && !all_attn) ||
        (want_cls && !all_cls) || (want_logits && !all_logits)) {
        cli_error("out of memory for %zu images (try fewer images or layers)", N);
        goto done;
    }
    for (size_t b0 = 0; b0 < N; b0 += (size_t)c.batch) {
        int nb = (int)((N - b0) < (size_t)c.batch ? N - b0 : (size_t)c.batch);
        int bad = 0;
#pragma omp parallel for schedule(dynamic) reduction(+ : bad)
        for (int j = 0; j < nb; j++)
            if (!cli_load_image(&c, images.v[b0 + j], pix + per * (size_t)j)) bad++;
        if (bad) goto done; /* errors printed; write nothing */
        uf_forward_request req = {0};
        req.blocks = blocks;
        req.attn_block = (int)attn_block;
        req.rollout = rollout;
        req.want_cls = want_cls;
        req.want_logits = want_logits;
        uf_forward_output out = {0};
        out.blocks = bout;
        out.attn = all_attn ? all_attn + b0 * Np : NULL;
        out.cls = all_cls ? all_cls + b0 * D : NULL;
        out.logits = all_logits ? all_logits + b0 * C : NULL;
        if (uf_forward(ses, pix, nb, S, S, &req, &out) != UF_OK) {
            cli_error("forward pass failed: %s", uf_errmsg());
            goto done;
        }
        /* NaN/Inf outputs (an overflow in the network) are reported, naming the image, and
         * nothing is written */
        for (int j = 0; j < nb; j++) {
            bool fin = true;
            for (int k = 0; k < nsel && fin; k++) {
                const float *v = bout + ((size_t)k * nb + j) * Np * D; /* [Np][D] */
                for (size_t q = 0; q < Np * D && fin; q++) fin = isfinite(v[q]);
            }
            for (size_t q = 0; out.attn && q < Np && fin; q++) fin = isfinite(out.attn[j * Np + q]);
            for (size_t q = 0; out.cls && q < D && fin; q++) fin = isfinite(out.cls[j * D + q]);
            for (size_t q = 0; out.logits && q < C && fin; q++) fin = isfinite(out.logits[j * C + q]);
            if (!fin) {
                cli_error("%s: the backbone produced NaN or Inf outputs (overflow in the network)",
                          images.v[b0 + (size_t)j]);
                goto done;
            }
        }
        /* scatter [nsel][nb][Np][D] into [nsel][N][Np][D] */
        for (int k = 0; k < nsel; k++)
            memcpy(all_blocks + ((size_t)k * N + b0) * Np * D, bout + (size_t)k * nb * Np * D,
                   sizeof(float) * (size_t)nb * Np * D);
        cli_progress(&c, "features", b0 + (size_t)nb, N);
    }

    /* assemble the tensor list and metadata */
    {
        int nt = 0;
        const char *names[70];
        char namebuf[64][24]; /* "block64" needs 8; room silences -Wformat-truncation */
        int ndims[70];
        int64_t shapes[70][3];
        const int64_t *shp[70];
        const float *data[70];
        for (int b = 1, k = 0; b <= 64; b++) {
            if (!(blocks >> (b - 1) & 1)) continue;
            snprintf(namebuf[k], sizeof namebuf[k], "block%d", b);
            names[nt] = namebuf[k];
            ndims[nt] = 3;
            shapes[nt][0] = (int64_t)N; shapes[nt][1] = (int64_t)Np; shapes[nt][2] = (int64_t)D;
            data[nt++] = all_blocks + (size_t)k * N * Np * D;
            k++;
        }
        if (attn_block) {
            names[nt] = rollout ? "rollout" : "attn";
            ndims[nt] = 2;
            shapes[nt][0] = (int64_t)N; shapes[nt][1] = (int64_t)Np;
            data[nt++] = all_attn;
        }
        if (want_cls) {
            names[nt] = "cls";
            ndims[nt] = 2;
            shapes[nt][0] = (int64_t)N; shapes[nt][1] = (int64_t)D;
            data[nt++] = all_cls;
        }
        if (want_logits) {
            names[nt] = "logits";
            ndims[nt] = 2;
            shapes[nt][0] = (int64_t)N; shapes[nt][1] = (int64_t)C;
            data[nt++] = all_logits;
        }
        for (int t = 0; t < nt; t++) shp[t] = shapes[t];

        cJSON *meta = cJSON_CreateObject(), *imgs = cJSON_CreateArray();
        for (size_t i = 0; i < N; i++) cJSON_AddItemToArray(imgs, cJSON_CreateString(images.v[i]));
        char *imgs_s = cJSON_PrintUnformatted(imgs);
        cJSON_Delete(imgs);
        char buf[512];
        cJSON_AddStringToObject(meta, "images", imgs_s ? imgs_s : "[]");
        free(imgs_s);
        snprintf(buf, sizeof buf, "%d,%d", gh, gw);
        cJSON_AddStringToObject(meta, "grid", buf);
        snprintf(buf, sizeof buf, "%ld", attn_block);
        cJSON_AddStringToObject(meta, "attn_block", buf);
        static const char *const interp_names[] = {"bilinear", "bicubic", "lanczos", "nearest"};
        snprintf(buf, sizeof buf,
                 "resize=%d crop=%d interp=%s mean=%g,%g,%g std=%g,%g,%g", c.pre.resize,
                 c.pre.crop, interp_names[c.pre.interp], c.pre.mean[0], c.pre.mean[1],
                 c.pre.mean[2], c.pre.std[0], c.pre.std[1], c.pre.std[2]);
        cJSON_AddStringToObject(meta, "preprocess", buf);
        cJSON_AddStringToObject(meta, "backbone", c.backbone);
        char *meta_s = cli_json_print(meta);
        cJSON_Delete(meta);
        uf_status s = uf_safetensors_write(out_path, nt, names, ndims, shp, data, meta_s);
        free(meta_s);
        if (s != UF_OK) {
            cli_error("%s", uf_errmsg());
            goto done;
        }
    }
    rc = 0;
done:
    free(pix);
    free(bout);
    free(all_blocks);
    free(all_attn);
    free(all_cls);
    free(all_logits);
    uf_session_free(ses);
    uf_backbone_free(bb);
    cli_strings_free(&images);
    free(pos);
    return rc;
}

static const char *const info_help =
    "Usage: uniformaly info [--json] [--heads N] FILE\n"
    "\n"
    "Describe a model file written by 'uniformaly fit' (settings, bank size, memory, backbone\n"
    "identity) or a checkpoint (.pth or .safetensors: architecture read from its tensors).\n"
    "  --json      model files: print one JSON object\n"
    "  --heads N   checkpoints: attention heads when not inferable from the dim\n";

/* True if path starts with the model file magic. */
/* 1: a model file (its magic), 2: a damaged one (its end marker "UFMEND", or 6 of the 8
 * magic bytes), 0: anything else (a checkpoint, or not ours at all). */
static int model_file_kind(const char *path)
{
    static const char magic[8] = "UFMODEL", end[8] = "UFMEND";
    char h[8] = {0}, t[8] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
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
