/*
 * random_vit.c - a seeded random-weight ViT, so demos, tests and benchmarks can run the
 * whole pipeline on a fresh machine where no pretrained checkpoint can be downloaded.
 *
 * The weights are produced as a named tensor list (timm/DINO names) and handed to the same
 * uf__vit_weights_from_tensors() that real checkpoints go through, so this path exercises the
 * real loader's shape checks too. The generator is splitmix64 + Box-Muller: identical on
 * every platform for a given seed.
 */
#include "core/internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Uniform in (0, 1) (never 0, for Box-Muller's log), from splitmix64 (core/random.c). */
static double unif(uint64_t *s) { return ((uf_splitmix64(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

/* Append tensor `name` of the given shape filled with N(0, std^2) (or `fill` if std == 0). */
static uf_status add(uf__tensors *ts, uint64_t *rng, const char *name, int ndim,
                     const int64_t *shape, double std, float fill)
{
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
        if (!uf__mul_ok(n, (size_t)shape[i], &n)) return uf__err(UF_ERR_ARG, "tensor too large");
    float *d = malloc(n * sizeof *d);
    char *nm = strdup(name);
    if (!d || !nm) {
        free(d);
        free(nm);
        return uf__err(UF_ERR_NOMEM, "out of memory for random weights");
    }
    for (size_t i = 0; i < n; i++) {
        if (std == 0) {
            d[i] = fill;
        } else {
            double u1 = unif(rng), u2 = unif(rng);
            d[i] = (float)(std * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
        }
    }
    return uf__tensors_push(ts, nm, ndim, shape, d);
}

uf_status uf_backbone_random(const uf_vit_config *c, uf_backbone **out)
{
    if (!c || !out) return uf__err(UF_ERR_ARG, "uf_backbone_random: NULL argument");
    *out = NULL;
    if (c->dim < 1 || c->depth < 1 || c->depth > 64 || c->heads < 1 || c->dim % c->heads ||
        c->patch < 1 || c->patch > 64 || c->mlp_dim < 1 || c->grid < 1 || c->grid > 256 ||
        c->n_classes < 0 || c->dim > 8192 || c->mlp_dim > 65536 || c->n_classes > 100000)
        return uf__err(UF_ERR_ARG, "uf_backbone_random: inconsistent configuration");
    uint64_t rng = c->seed ^ 0x756e69666f726d61ull; /* "uniforma" */
    const int64_t D = c->dim, M = c->mlp_dim, P = c->patch, G = c->grid;
    uf__tensors ts = {0};
    uf_status s = UF_OK;
    char nm[96];
#define ADD(name, nd, std, fill, ...)                                                   \
    do {                                                                               \
        const int64_t shp_[] = {__VA_ARGS__};                                          \
        if (s == UF_OK) s = add(&ts, &rng, name, nd, shp_, std, fill);                 \
    } while (0)
    ADD("cls_token", 3, 0.02, 0, 1, 1, D);
    ADD("pos_embed", 3, 0.02, 0, 1, 1 + G * G, D);
    ADD("patch_embed.proj.weight", 4, 1.0 / sqrt(3.0 * P * P), 0, D, 3, P, P);
    ADD("patch_embed.proj.bias", 1, 0.02, 0, D);
    for (int b = 0; b < c->depth && s == UF_OK; b++) {
#define BLK(suffix, nd, std, fill, ...)                                                 \
    do {                                                                               \
        snprintf(nm, sizeof nm, "blocks.%d.%s", b, suffix);                            \
        ADD(nm, nd, std, fill, __VA_ARGS__);                                           \
    } while (0)
        BLK("norm1.weight", 1, 0, 1.0f, D);
        BLK("norm1.bias", 1, 0, 0.0f, D);
        BLK("attn.qkv.weight", 2, 1.0 / sqrt((double)D), 0, 3 * D, D);
        BLK("attn.qkv.bias", 1, 0.02, 0, 3 * D);
        BLK("attn.proj.weight", 2, 1.0 / sqrt((double)D), 0, D, D);
        BLK("attn.proj.bias", 1, 0.02, 0, D);
        BLK("norm2.weight", 1, 0, 1.0f, D);
        BLK("norm2.bias", 1, 0, 0.0f, D);
        BLK("mlp.fc1.weight", 2, 1.0 / sqrt((double)D), 0, M, D);
        BLK("mlp.fc1.bias", 1, 0.02, 0, M);
        BLK("mlp.fc2.weight", 2, 1.0 / sqrt((double)M), 0, D, M);
        BLK("mlp.fc2.bias", 1, 0.02, 0, D);
#undef BLK
    }
    ADD("norm.weight", 1, 0, 1.0f, D);
    ADD("norm.bias", 1, 0, 0.0f, D);
    if (c->n_classes > 0) {
        ADD("head.weight", 2, 1.0 / sqrt((double)D), 0, c->n_classes, D);
        ADD("head.bias", 1, 0, 0.0f, c->n_classes);
    }
#undef ADD
    if (s != UF_OK) {
        uf__tensors_free(&ts);
        return s;
    }
    uf_backbone *bb = calloc(1, sizeof *bb);
    if (!bb) {
        uf__tensors_free(&ts);
        return uf__err(UF_ERR_NOMEM, "out of memory");
    }
    uf_backbone_params p = uf_backbone_default_params();
    p.heads = c->heads;
    s = uf__vit_weights_from_tensors(&ts, &p, &bb->w);
    uf__tensors_free(&ts);
    if (s != UF_OK) {
        free(bb);
        return s;
    }
    bb->format = "random";
    bb->params = p;
    bb->random_cfg = *c;
    *out = bb;
    return UF_OK;
}
