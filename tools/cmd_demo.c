/*
 * cmd_demo.c - `uniformaly demo`: runs the pipeline end to end on a fresh machine with
 * nothing downloaded. Without --backbone it builds a seeded random-weight ViT-S/16 and a few
 * seeded procedural images (textures with an object, some with a scratch), extracts the
 * UniFormaly features (blocks 3..10) and the CLS attention of block 10, and reports the
 * speed. With --backbone it uses that checkpoint.
 *
 * The anomaly detector itself (fit / predict) is the next milestone; the demo says so.
 */
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static const char *const help =
    "Usage: uniformaly demo [--backbone W] [--out DIR] [--seed N] [options]\n"
    "\n"
    "Run the feature extractor on generated images. Without --backbone a seeded\n"
    "random-weight ViT-S/16 stands in for a pretrained one (its features carry no meaning;\n"
    "it shows the pipeline and the speed). With --out DIR the features are written to\n"
    "DIR/features.safetensors.\n"
    "\n"
    "Real use needs a pretrained checkpoint, e.g. DINO ViT-S/8\n"
    "(dino_deitsmall8_pretrain.pth from the facebookresearch/dino releases) or an iBOT\n"
    "checkpoint_teacher.pth; see README.md.\n";

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}
static double rng_unif(uint64_t *s) { return (rng_next(s) >> 11) * (1.0 / 9007199254740992.0); }

/* A W x H procedural image: a sinusoidal texture with noise, a bright disc (the "object")
 * and, if defect, a dark scratch across the disc. */
static uf_image *make_image(int W, int H, uint64_t seed, bool defect)
{
    uf_image *img = NULL;
    if (uf_image_new(W, H, &img) != UF_OK) return NULL;
    uint64_t s = seed * 2654435761u + 1;
    double fx = 0.05 + 0.1 * rng_unif(&s), fy = 0.05 + 0.1 * rng_unif(&s);
    double cx = W * (0.35 + 0.3 * rng_unif(&s)), cy = H * (0.35 + 0.3 * rng_unif(&s));
    double r = 0.22 * (W < H ? W : H);
    double ang = 3.14159 * rng_unif(&s);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            double v = 90 + 30 * sin(fx * x) * cos(fy * y) + 20 * (rng_unif(&s) - 0.5);
            double dx = x - cx, dy = y - cy;
            bool in_disc = dx * dx + dy * dy < r * r;
            if (in_disc) v = 200 + 15 * sin(0.3 * (dx + dy));
            if (defect && in_disc) {
                double dist = fabs(-sin(ang) * dx + cos(ang) * dy);
                if (dist < 2.5) v = 40;
            }
            uint8_t *p = img->rgb + ((size_t)y * W + x) * 3;
            p[0] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            p[1] = (uint8_t)(p[0] * 0.9);
            p[2] = (uint8_t)(p[0] * 0.8);
        }
    return img;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int cmd_demo(int argc, char **argv)
{
    const char *verb = "demo";
    cli_common c;
    cli_common_init(&c);
    const char *out_dir = NULL;
    long seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = cli_common_option(&c, verb, argc, argv, &i);
        if (r < 0) return CLI_EXIT_USAGE;
        if (r > 0) continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("%s\n%s", help, cli_common_help);
            return 0;
        } else if (!strcmp(a, "--out")) {
            if (i + 1 >= argc) return cli_usage_error(verb, "option --out needs a value");
            out_dir = argv[++i];
        } else if (!strcmp(a, "--seed")) {
            if (i + 1 >= argc || !cli_parse_int(argv[i + 1], 0, 1L << 30, &seed))
                return cli_usage_error(verb, "--seed: expected an integer in 0..2^30");
            i++;
        } else {
            return cli_usage_error(verb, "unknown option '%s'", a);
        }
    }
    uf_set_threads(c.threads);

    int rc = CLI_EXIT_RUNTIME;
    uf_backbone *bb = NULL;
    uf_session *ses = NULL;
    float *pix = NULL, *feat = NULL, *attn = NULL;
    enum { NIMG = 8 };
    uf_image *imgs[NIMG] = {0};

    if (c.backbone) {
        if (!(bb = cli_load_backbone(&c))) goto done;
        printf("backbone: %s\n", c.backbone);
    } else {
        uf_vit_config cfg = {384, 12, 6, 16, 1536, 14, 0, (uint64_t)seed};
        if (uf_backbone_random(&cfg, &bb) != UF_OK) {
            cli_error("%s", uf_errmsg());
            goto done;
        }
        printf("backbone: random-weight ViT-S/16 (seed %ld) - a stand-in: its features mean\n"
               "          nothing; real use needs a pretrained checkpoint (see README.md)\n",
               seed);
    }
    uf_backbone_info info;
    uf_backbone_get_info(bb, &info);
    if (info.depth < 10) {
        cli_error("the demo needs a backbone with at least 10 blocks (this one has %d)", info.depth);
        goto done;
    }
    int S = uf_preprocess_size(&c.pre), g = S / info.patch, Np = g * g, D = info.dim;
    pix = malloc(sizeof(float) * NIMG * 3 * S * S);   /* [NIMG][3][S][S]     */
    feat = malloc(sizeof(float) * 8 * NIMG * Np * D); /* [8][NIMG][Np][D]    */
    attn = malloc(sizeof(float) * NIMG * Np);         /* [NIMG][Np]          */
    if (!pix || !feat || !attn) { cli_error("out of memory"); goto done; }
    printf("images:   %d generated 320x256 textures with an object, %d of them scratched\n",
           NIMG, NIMG / 2);
    for (int i = 0; i < NIMG; i++) {
        imgs[i] = make_image(320, 256, (uint64_t)seed * 100 + i, i % 2 == 1);
        if (!imgs[i] || uf_preprocess_image(imgs[i], &c.pre, pix + (size_t)i * 3 * S * S) != UF_OK) {
            cli_error("preprocessing failed: %s", uf_errmsg());
            goto done;
        }
    }
    if (uf_session_new(bb, &ses) != UF_OK) { cli_error("%s", uf_errmsg()); goto done; }
    uf_forward_request req = {0};
    req.blocks = 0x3FCull; /* blocks 3..10 */
    req.attn_block = 10;
    uf_forward_output out = {0};
    out.blocks = feat;
    out.attn = attn;
    double t0 = now_s();
    if (uf_forward(ses, pix, NIMG, S, S, &req, &out) != UF_OK) {
        cli_error("forward pass failed: %s", uf_errmsg());
        goto done;
    }
    double dt = now_s() - t0;
    printf("features: blocks 3..10 of %d images, %d patches x %d dims each: %.1f ms/image "
           "with %d threads\n", NIMG, Np, D, 1e3 * dt / NIMG, uf_get_threads());
    for (int i = 0; i < NIMG; i++) {
        /* share of patches the Back Patch Mask would keep: smoothing comes with the detector;
         * here the raw CLS attention of block 10, divided by its max, against 0.1 */
        float mx = 0;
        for (int p = 0; p < Np; p++) mx = attn[(size_t)i * Np + p] > mx ? attn[(size_t)i * Np + p] : mx;
        int fg = 0;
        for (int p = 0; p < Np; p++) fg += attn[(size_t)i * Np + p] > 0.1f * mx;
        double mean = 0;
        for (size_t k = 0; k < (size_t)Np * D; k++) mean += feat[(size_t)i * Np * D + k];
        printf("  image %d (%s): mean feature %+.4f, raw attention above 0.1*max: %d/%d patches\n",
               i, i % 2 ? "scratched" : "clean", mean / ((double)Np * D), fg, Np);
    }
    if (out_dir) {
        mkdir(out_dir, 0777);
        char path[4096];
        snprintf(path, sizeof path, "%s/features.safetensors", out_dir);
        const char *names[2] = {"block10", "attn"};
        int ndims[2] = {3, 2};
        int64_t s0[3] = {NIMG, Np, D}, s1[2] = {NIMG, Np};
        const int64_t *shp[2] = {s0, s1};
        const float *data[2] = {feat + (size_t)7 * NIMG * Np * D, attn};
        if (uf_safetensors_write(path, 2, names, ndims, shp, data, NULL) != UF_OK) {
            cli_error("%s", uf_errmsg());
            goto done;
        }
        printf("wrote %s (block10 [%d,%d,%d], attn [%d,%d])\n", path, NIMG, Np, D, NIMG, Np);
    }
    printf("\nThe anomaly detector (fit / predict) is the next milestone. Today you can run\n"
           "'uniformaly classify' and 'uniformaly features' with a real checkpoint.\n");
    rc = 0;
done:
    for (int i = 0; i < NIMG; i++) uf_image_free(imgs[i]);
    free(pix);
    free(feat);
    free(attn);
    uf_session_free(ses);
    uf_backbone_free(bb);
    return rc;
}
