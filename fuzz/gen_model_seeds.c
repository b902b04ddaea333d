/*
 * gen_model_seeds.c - writes the model-file seeds of fuzz/corpus/model/ through the
 * library itself (uf_model_save), so they are exactly what a user's files look like:
 * tiny models over a random backbone (its configuration stored in the file, so no
 * checkpoint is needed), saved plain and "embedded", with and without a threshold, and
 * one over the tiny test checkpoint tests/data/pth/vit_plain.pth with its bytes embedded.
 * Not part of the build; run from the repository root:
 *   cc -std=c11 -D_GNU_SOURCE -Iinclude -Isrc fuzz/gen_model_seeds.c build/libuniformaly.a \
 *      <the Makefile's LDLIBS> -o /tmp/gen_model_seeds && /tmp/gen_model_seeds
 */
#include "uniformaly.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char *what)
{
    fprintf(stderr, "gen_model_seeds: %s: %s\n", what, uf_errmsg());
    exit(1);
}

/* Fit a model over bb on two small noise images. */
static uf_model *fit(const uf_backbone *bb, int S, int layers, double coreset)
{
    uf_detector_params p = uf_detector_default_params();
    p.layer_first = 1;
    p.layer_last = layers;
    p.bpm = 0;
    p.coreset = coreset;
    p.knn = 1;
    p.pre.resize = S;
    p.pre.crop = S;
    uf_fitter *f = NULL;
    if (uf_fitter_new(bb, &p, &f) != UF_OK) die("fitter");
    for (int k = 0; k < 2; k++) {
        uf_image *img = NULL;
        if (uf_image_new(S, S, &img) != UF_OK) die("image");
        for (int i = 0; i < S * S * 3; i++) img->rgb[i] = (unsigned char)(i * 37 + k * 101);
        const uf_image *one = img;
        if (uf_fitter_add(f, &one, 1) != UF_OK) die("add");
        uf_image_free(img);
    }
    uf_model *m = NULL;
    if (uf_fitter_finish(f, NULL, NULL, &m) != UF_OK) die("finish");
    uf_fitter_free(f);
    return m;
}

int main(void)
{
    uf_vit_config c = {.dim = 12, .depth = 2, .heads = 3, .patch = 8, .mlp_dim = 24,
                       .grid = 2, .n_classes = 0, .seed = 7};
    uf_backbone *bb = NULL;
    if (uf_backbone_random(&c, &bb) != UF_OK) die("random backbone");
    uf_model *m = fit(bb, 16, 2, 0.5);
    if (uf_model_save(m, "fuzz/corpus/model/random.ufm", 0) != UF_OK) die("save");
    if (uf_model_save(m, "fuzz/corpus/model/random_embedded.ufm", 1) != UF_OK) die("save");
    uf_model_set_threshold(m, 0.75f);
    if (uf_model_save(m, "fuzz/corpus/model/random_threshold.ufm", 0) != UF_OK) die("save");
    uf_model_free(m);
    uf_backbone_free(bb);

    c.n_classes = 3;
    c.seed = 18446744073709551557ull;
    if (uf_backbone_random(&c, &bb) != UF_OK) die("random backbone");
    m = fit(bb, 16, 1, 1.0);
    if (uf_model_save(m, "fuzz/corpus/model/random_head.ufm", 1) != UF_OK) die("save");
    uf_model_free(m);
    uf_backbone_free(bb);

    uf_backbone_params bp = uf_backbone_default_params();
    bp.heads = 2; /* dim 8: not a standard width, so the heads are given */
    if (uf_backbone_load("tests/data/pth/vit_plain.pth", &bp, &bb) != UF_OK) die("vit_plain");
    uf_backbone_info info;
    uf_backbone_get_info(bb, &info);
    m = fit(bb, info.patch * info.grid_h, info.depth, 1.0);
    if (uf_model_save(m, "fuzz/corpus/model/pth_embedded.ufm", 1) != UF_OK) die("save");
    if (uf_model_save(m, "fuzz/corpus/model/pth_path.ufm", 0) != UF_OK) die("save");
    uf_model_free(m);
    uf_backbone_free(bb);
    printf("model seeds written to fuzz/corpus/model/\n");
    return 0;
}
