/*
 * checkpoint.c - turn a checkpoint file into ViT weights (uf_backbone_load).
 *
 * Steps: detect the container by content (zip/pickle -> pth.c, JSON header -> safetensors.c),
 * read every float tensor as a flat named list, pick the state dict that holds the ViT
 * (plain, or nested under "teacher", "state_dict", "model", "student", ... as DINO, iBOT,
 * MAE and DeiT release them), strip "module." / "backbone." prefixes, map Hugging Face
 * transformers names onto timm/DINO names (merging separate q/k/v into qkv), then read
 * the architecture from tensor shapes and copy every weight into one 64-byte aligned
 * allocation laid out as uf__vit_weights. DINOv2 (official dinov2_vit*14[_reg4]_pretrain.pth
 * and Hugging Face facebook/dinov2[-with-registers]-*) adds three things the shapes reveal:
 * register tokens (register_tokens [1][R][D]), LayerScale (blocks.N.ls1/ls2.gamma [D],
 * folded into proj and fc2 here) and the giant's SwiGLU MLP (mlp.w12 [2M][D], mlp.w3
 * [D][M]); the positional resampling each file format's own code uses is recorded in
 * pos_interp (see UF__POS_* in core/internal.h). Tensors known to stay outside the forward
 * pass (classifier and projection heads, MAE decoders, mask tokens, poolers) are ignored;
 * any other tensor (BEiT relative positions, distillation tokens, ...) is refused, naming
 * it and the architecture it suggests, because dropping it would load a network that
 * computes something else; missing or mis-shaped ones give an error naming them.
 */
#include "core/internal.h"
#include "model/bf16.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Sanity limits on the architecture read from a file (far above any released ViT). */
#define CK_MAX_DIM (1 << 15)
#define CK_MAX_PATCH 1024
#define CK_MAX_MLP (1 << 18)
#define CK_MAX_DEPTH 4096
#define CK_MAX_GRID 4096
#define CK_MAX_CLASSES (1 << 24)

uf_backbone_params uf_backbone_default_params(void)
{
    uf_backbone_params p;
    p.heads = 0;
    p.ln_eps = 1e-6f;
    return p;
}

static bool starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* ---- choosing and normalising the state dict ------------------------------------------ */

/* Keys under which training scripts nest the model's state dict, in order of preference:
 * a DINO training checkpoint holds both "teacher" and "student"; the teacher is the one
 * DINO evaluates and releases. */
static const char *const k_containers[] = {"teacher.",   "state_dict.",     "model.",
                                           "student.",   "module.",         "model_ema.",
                                           "target_encoder.", "net.",       "params.",
                                           "network."};
#define N_CONTAINERS (sizeof k_containers / sizeof k_containers[0])

static bool has_container_prefix(const char *name)
{
    for (size_t i = 0; i < N_CONTAINERS; i++)
        if (starts(name, k_containers[i])) return true;
    return false;
}

/* The name inside container c ("" = names without any container prefix), or NULL if the
 * tensor is not in it. */
static const char *in_container(const char *name, const char *c)
{
    if (!*c) return has_container_prefix(name) ? NULL : name;
    return starts(name, c) ? name + strlen(c) : NULL;
}

/* Strip wrappers: DataParallel's "module." and DINO's "backbone.", repeatedly; then an
 * optional Hugging Face model prefix ("vit.", "dino.", ...) in front of an HF root name. */
static const char *strip_wrappers(const char *s)
{
    for (;;) {
        if (starts(s, "module.")) s += 7;
        else if (starts(s, "backbone.")) s += 9;
        else break;
    }
    static const char *const hf_prefix[] = {"vit.",  "dino.",          "model.",
                                            "deit.", "encoder_model.", "dinov2.",
                                            "dinov2_with_registers."};
    for (size_t i = 0; i < sizeof hf_prefix / sizeof hf_prefix[0]; i++) {
        size_t l = strlen(hf_prefix[i]);
        if (starts(s, hf_prefix[i]) &&
            (starts(s + l, "embeddings.") || starts(s + l, "encoder.layer.") ||
             starts(s + l, "layernorm.")))
            return s + l;
    }
    return s;
}

/* Hugging Face ViT layer sub-names -> timm names (prefix replacement). */
static const char *const k_hf_layer[][2] = {
    {"layernorm_before.", "norm1."},
    {"layernorm_after.", "norm2."},
    {"attention.attention.query.", "attn.q."},
    {"attention.attention.key.", "attn.k."},
    {"attention.attention.value.", "attn.v."},
    {"attention.output.dense.", "attn.proj."},
    {"intermediate.dense.", "mlp.fc1."},
    {"output.dense.", "mlp.fc2."},
    /* Dinov2Layer / Dinov2WithRegistersLayer */
    {"norm1.", "norm1."},
    {"norm2.", "norm2."},
    {"mlp.fc1.", "mlp.fc1."},
    {"mlp.fc2.", "mlp.fc2."},
    {"mlp.weights_in.", "mlp.w12."},
    {"mlp.weights_out.", "mlp.w3."},
    {"layer_scale1.lambda1", "ls1.gamma"},
    {"layer_scale2.lambda1", "ls2.gamma"},
};

/* Hugging Face top-level names -> timm names (whole-name replacement). */
static const char *const k_hf_top[][2] = {
    {"embeddings.cls_token", "cls_token"},
    {"embeddings.position_embeddings", "pos_embed"},
    {"embeddings.register_tokens", "register_tokens"},
    {"embeddings.patch_embeddings.projection.weight", "patch_embed.proj.weight"},
    {"embeddings.patch_embeddings.projection.bias", "patch_embed.proj.bias"},
    {"layernorm.weight", "norm.weight"},
    {"layernorm.bias", "norm.bias"},
    {"classifier.weight", "head.weight"},
    {"classifier.bias", "head.bias"},
};

/* Normalised (timm/DINO) name of an already-unwrapped name s, malloc'd; hf selects the
 * Hugging Face mapping. Returns NULL only when out of memory. */
static char *normalize(const char *s, bool hf)
{
    size_t l = strlen(s);
    char *out = malloc(l + 32); /* mapped names are never longer than the original + 8 */
    if (!out) return NULL;
    if (hf) {
        for (size_t i = 0; i < sizeof k_hf_top / sizeof k_hf_top[0]; i++) {
            if (strcmp(s, k_hf_top[i][0]) == 0) {
                strcpy(out, k_hf_top[i][1]);
                return out;
            }
        }
        if (starts(s, "encoder.layer.")) {
            const char *p = s + 14, *d = p;
            while (*d >= '0' && *d <= '9' && d - p < 9) d++;
            if (d > p && *d == '.') {
                for (size_t i = 0; i < sizeof k_hf_layer / sizeof k_hf_layer[0]; i++) {
                    if (starts(d + 1, k_hf_layer[i][0])) {
                        snprintf(out, l + 32, "blocks.%.*s.%s%s", (int)(d - p), p,
                                 k_hf_layer[i][1], d + 1 + strlen(k_hf_layer[i][0]));
                        return out;
                    }
                }
            }
        }
    }
    memcpy(out, s, l + 1);
    return out;
}

/* Does container c hold a ViT? Sets *hf when its names are Hugging Face style. */
static bool container_has_vit(const uf__tensors *ts, const char *c, bool *hf)
{
    /* a ViT is recognised by its patch embedding alone: the strict checks come later,
     * with messages naming whatever else is missing */
    bool timm = false;
    *hf = false;
    for (size_t i = 0; i < ts->n; i++) {
        const char *r = in_container(ts->v[i].name, c);
        if (!r) continue;
        r = strip_wrappers(r);
        if (strcmp(r, "patch_embed.proj.weight") == 0) timm = true;
        if (strcmp(r, "embeddings.patch_embeddings.projection.weight") == 0) *hf = true;
    }
    if (timm) *hf = false; /* timm names win if, oddly, both are present */
    return timm || *hf;
}

/* Merge Hugging Face's separate blocks.N.attn.{q,k,v}.{weight,bias} into
 * blocks.N.attn.qkv.{weight,bias} (rows q, then k, then v), in place in ts. */
static uf_status merge_qkv(uf__tensors *ts)
{
    size_t n0 = ts->n;
    for (size_t i = 0; i < n0; i++) {
        const char *nm = ts->v[i].name;
        size_t l = strlen(nm);
        if (!starts(nm, "blocks.") || l < 14 || strcmp(nm + l - 14, ".attn.q.weight") != 0)
            continue;
        for (int wb = 0; wb < 2; wb++) { /* 0: weight, 1: bias */
            char base[512], name[560];
            if (l - 14 >= sizeof base) return uf__err(UF_ERR_FORMAT, "tensor name too long");
            snprintf(base, sizeof base, "%.*s", (int)(l - 14), nm); /* "blocks.N" */
            uf__tensor *part[3];
            static const char qkv[3] = {'q', 'k', 'v'};
            for (int j = 0; j < 3; j++) {
                snprintf(name, sizeof name, "%s.attn.%c.%s", base, qkv[j], wb ? "bias" : "weight");
                part[j] = uf__tensors_find(ts, name);
                if (!part[j] || !part[j]->data)
                    return uf__err(UF_ERR_FORMAT, "missing tensor '%s' (Hugging Face %s)", name,
                                   j == 0 ? "query" : j == 1 ? "key" : "value");
            }
            /* all three must have the same shape: [D][D] or [D] */
            for (int j = 1; j < 3; j++) {
                bool same = part[j]->ndim == part[0]->ndim;
                for (int k = 0; same && k < part[0]->ndim; k++)
                    same = part[j]->shape[k] == part[0]->shape[k];
                if (!same || part[0]->ndim != 2 - wb)
                    return uf__err(UF_ERR_FORMAT, "%s.attn.{q,k,v}.%s: inconsistent shapes",
                                   base, wb ? "bias" : "weight");
            }
            size_t each = part[0]->numel, total;
            if (!uf__mul_ok(each, 3, &total))
                return uf__err(UF_ERR_FORMAT, "%s: q/k/v too large", base);
            float *d = malloc((total ? total : 1) * sizeof *d); /* [3D][D] or [3D] */
            snprintf(name, sizeof name, "%s.attn.qkv.%s", base, wb ? "bias" : "weight");
            char *nmc = strdup(name);
            if (!d || !nmc) {
                free(d);
                free(nmc);
                return uf__err(UF_ERR_NOMEM, "out of memory merging q/k/v");
            }
            if (uf__tensors_find(ts, name)) {
                free(d);
                free(nmc);
                return uf__err(UF_ERR_FORMAT, "'%s' given both merged and as q/k/v", name);
            }
            int64_t shape[2] = {3 * part[0]->shape[0], wb ? 0 : part[0]->shape[1]};
            for (int j = 0; j < 3; j++) {
                memcpy(d + (size_t)j * each, part[j]->data, each * sizeof *d);
                free(part[j]->data); /* drop the parts right away: bounds peak memory */
                part[j]->data = NULL;
            }
            uf_status s = uf__tensors_push(ts, nmc, 2 - wb, shape, d);
            if (s != UF_OK) return s;
            nm = ts->v[i].name; /* push may have moved the array */
        }
    }
    /* compact: remove the emptied q/k/v entries */
    size_t w = 0;
    for (size_t i = 0; i < ts->n; i++) {
        if (ts->v[i].data) ts->v[w++] = ts->v[i];
        else free(ts->v[i].name);
    }
    ts->n = w;
    return UF_OK;
}

/* Replace *all (every tensor of the file) by the normalised state dict of the ViT it holds;
 * *is_hf tells whether its names were Hugging Face's. Tensors outside the chosen container
 * are freed as soon as they are known to be unused. */
static uf_status select_state_dict(uf__tensors *all, bool *is_hf)
{
    /* Top-level names first (a plain state dict), then each container in order; the first
     * that holds a patch embedding wins. This picks DINO's teacher over its student and
     * ignores optimizer state, EMA copies, etc. once a better candidate exists. */
    const char *chosen = NULL;
    bool hf = false;
    if (container_has_vit(all, "", &hf)) chosen = "";
    for (size_t i = 0; !chosen && i < N_CONTAINERS; i++)
        if (container_has_vit(all, k_containers[i], &hf)) chosen = k_containers[i];
    if (!chosen) {
        return uf__err(UF_ERR_FORMAT,
                       "no ViT found: none of the %zu float tensors is a patch embedding "
                       "(patch_embed.proj.weight or embeddings.patch_embeddings.projection."
                       "weight)%s%s%s",
                       all->n, all->n ? "; first tensor: '" : "",
                       all->n ? all->v[0].name : "", all->n ? "'" : "");
    }
    /* Move the chosen tensors (data pointers, no copy) into a new list under their
     * normalised names; everything else is freed immediately. After an error the loop
     * keeps going only to free the remaining data. */
    uf__tensors sel = {0};
    uf_status s = UF_OK;
    for (size_t i = 0; i < all->n; i++) {
        uf__tensor *t = &all->v[i];
        const char *r = in_container(t->name, chosen);
        if (!r || s != UF_OK) { /* unused: free its data now */
            free(t->data);
            t->data = NULL;
            continue;
        }
        char *nm = normalize(strip_wrappers(r), hf);
        if (!nm) {
            s = uf__err(UF_ERR_NOMEM, "out of memory");
            continue;
        }
        if (uf__tensors_find(&sel, nm)) {
            s = uf__err(UF_ERR_FORMAT, "two tensors named '%s' after removing prefixes "
                        "(second: '%s')", nm, t->name);
            free(nm);
            continue;
        }
        s = uf__tensors_push(&sel, nm, t->ndim, t->shape, t->data); /* takes the data */
        t->data = NULL;
    }
    uf__tensors_free(all);
    if (s == UF_OK && hf) s = merge_qkv(&sel);
    if (s != UF_OK) {
        uf__tensors_free(&sel);
        return s;
    }
    *all = sel;
    *is_hf = hf;
    return UF_OK;
}

/* ---- shapes -------------------------------------------------------------------------- */

/* "[a,b,c]" of a shape, into buf (truncated if it does not fit; never overflows), so
 * messages read like PyTorch's: "expected [1152,384], found [1152,380]". */
static const char *shape_str(char *buf, size_t n, int ndim, const int64_t *shape)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, n - o, "[");
    for (int i = 0; i < ndim && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s%lld", i ? "," : "", (long long)shape[i]);
    if (o < n) snprintf(buf + o, n - o, "]");
    return buf;
}

/* Find tensor `name` and check it has exactly the expected shape. On failure the message
 * names the tensor and both shapes; a missing tensor is named with the shape it should
 * have had, which tells the user what kind of checkpoint was expected. */
static uf_status need(const uf__tensors *ts, const char *name, int ndim, const int64_t *want,
                      const uf__tensor **out)
{
    const uf__tensor *t = uf__tensors_find(ts, name);
    char e[160], f[160];
    if (!t) return uf__err(UF_ERR_FORMAT, "missing tensor '%s' (expected %s)", name,
                           shape_str(e, sizeof e, ndim, want));
    bool ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == want[i];
    if (!ok)
        return uf__err(UF_ERR_FORMAT, "%s: expected %s, found %s", name,
                       shape_str(e, sizeof e, ndim, want), shape_str(f, sizeof f, t->ndim, t->shape));
    *out = t;
    return UF_OK;
}

/* Index N of a "blocks.N." name, or -1. At most 9 digits are read, so the value cannot
 * overflow; the caller bounds it by CK_MAX_DEPTH. */
static long block_index(const char *name)
{
    if (!starts(name, "blocks.")) return -1;
    const char *p = name + 7;
    long v = 0;
    int nd = 0;
    while (*p >= '0' && *p <= '9') {
        if (++nd > 9) return -1;
        v = v * 10 + (*p++ - '0');
    }
    return nd && *p == '.' ? v : -1;
}

/* ---- building the weights ------------------------------------------------------------ */

/* One destination of the single allocation: where the pointer goes, what fills it. */
typedef struct slot {
    float **dst;
    const uf__tensor *src;
} slot;

/* Attention heads for embedding dim D when the caller gives none: the standard ViT sizes
 * (Tiny 192, Small 384, Base 768, Large 1024, Huge 1280), else head dim 64 if it divides;
 * 0 means "cannot tell" and the caller must pass heads. */
static int default_heads(int D)
{
    switch (D) {
    case 192: return 3;
    case 384: return 6;
    case 768: return 12;
    case 1024: return 16;
    case 1280: return 16;
    default: return D % 64 == 0 ? D / 64 : 0;
    }
}

/* ---- tensors the forward pass does not use ------------------------------------------ */

/* Tensors a checkpoint may hold beside the backbone that never enter its forward pass:
 * classifier and projection heads (DINO/iBOT "head.*"), MAE decoders ("decoder_*"), mask
 * tokens (MAE/BEiT "mask_token", iBOT "masked_embed", Hugging Face "embeddings.mask_token")
 * and Hugging Face poolers ("pooler.*", "vit.pooler.*"). head.weight/head.bias, when they
 * are a classifier, are used, not ignored. */
static bool outside_forward(const char *name)
{
    static const char *const prefixes[] = {"head.", "decoder", "pooler."};
    static const char *const exact[] = {"mask_token", "masked_embed", "embeddings.mask_token"};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        if (starts(name, prefixes[i])) return true;
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
        if (!strcmp(name, exact[i])) return true;
    const char *dot = strchr(name, '.'); /* a Hugging Face model prefix: "vit.pooler.dense" */
    return dot && starts(dot + 1, "pooler.");
}

/* Which architecture an unknown tensor name suggests (NULL: none known). */
static const char *suggested_arch(const char *name)
{
    static const char *const hint[][2] = {
        {".mlp.w12.", "a SwiGLU MLP (mlp.w12 / w3) beside a plain one (mlp.fc1 / fc2)"},
        {".mlp.w3.", "a SwiGLU MLP (mlp.w12 / w3) beside a plain one (mlp.fc1 / fc2)"},
        {"gamma_1", "BEiT / CaiT (LayerScale)"},
        {"gamma_2", "BEiT / CaiT (LayerScale)"},
        {"reg_token", "a ViT with register tokens"},
        {"fc1_g", "a ViT with a gated (SwiGLU) MLP"},
        {"dist_token", "DeiT distilled (distillation token)"},
        {"head_dist", "DeiT distilled (distillation head)"},
        {"q_norm", "a ViT with query/key normalisation"},
        {"k_norm", "a ViT with query/key normalisation"},
        {"relative_position", "BEiT (relative position bias)"},
        {"q_bias", "BEiT (separate query/value biases)"},
        {"pre_logits", "a ViT with a pre-logits layer (ImageNet-21k)"},
        {"fc_norm", "a ViT with global average pooling (fc_norm)"},
        {"norm_pre", "a CLIP-style ViT (pre-norm)"},
        {"attn_pool", "a ViT with attention pooling"},
    };
    for (size_t i = 0; i < sizeof hint / sizeof hint[0]; i++)
        if (strstr(name, hint[i][0])) return hint[i][1];
    return NULL;
}

/* Every tensor of ts must be in one of the ns slots or known to be outside the forward
 * pass: anything else (LayerScale, register tokens, a gated MLP, ...) changes what the
 * network computes, so loading without it would silently compute something else. The
 * message names the first such tensor, preferring one whose architecture is known. */
static uf_status check_all_used(const uf__tensors *ts, const slot *sl, size_t ns)
{
    unsigned char *used = calloc(ts->n ? ts->n : 1, 1); /* [ts->n] */
    if (!used) return uf__err(UF_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < ns; i++) used[sl[i].src - ts->v] = 1;
    const char *first = NULL, *arch = NULL, *named = NULL;
    size_t n_unknown = 0;
    for (size_t i = 0; i < ts->n; i++) {
        const char *nm = ts->v[i].name;
        if (used[i] || outside_forward(nm)) continue;
        n_unknown++;
        if (!first) first = nm;
        if (!arch && (arch = suggested_arch(nm))) named = nm;
    }
    free(used);
    if (!n_unknown) return UF_OK;
    char more[64] = "";
    if (n_unknown > 1) snprintf(more, sizeof more, " (and %zu more unknown tensors)", n_unknown - 1);
    if (arch)
        return uf__err(UF_ERR_UNSUPPORTED,
                       "tensor '%s'%s: %s is not supported yet (a plain ViT without it would "
                       "compute something else)",
                       named, more, arch);
    return uf__err(UF_ERR_UNSUPPORTED,
                   "unknown tensor '%s'%s: not part of a plain ViT, so this is an architecture "
                   "this build does not support (only classifier and projection heads, "
                   "decoders and mask tokens are ignored)",
                   first, more);
}

/* The architecture read from tensor shapes. */
typedef struct vit_arch {
    int64_t D, P, M, g, C; /* embedding dim, patch side, MLP width, trained grid, classes */
    int64_t R;             /* register tokens (DINOv2), 0 if none */
    int depth, heads;
    bool swiglu, ls;       /* SwiGLU MLP (mlp.w12 / mlp.w3), LayerScale (ls1 / ls2) */
    const uf__tensor *pos; /* pos_embed */
    const uf__tensor *reg; /* register_tokens, or NULL */
} vit_arch;

/* Embedding dim D and patch side P from patch_embed.proj.weight [D][3][P][P]. */
static uf_status read_patch_embed(const uf__tensors *ts, vit_arch *a)
{
    const uf__tensor *pw = uf__tensors_find(ts, "patch_embed.proj.weight");
    char f[160];
    if (!pw) return uf__err(UF_ERR_FORMAT, "missing tensor 'patch_embed.proj.weight'");
    if (pw->ndim != 4 || pw->shape[0] < 1 || pw->shape[2] < 1)
        return uf__err(UF_ERR_FORMAT, "patch_embed.proj.weight: expected [D,3,P,P], found %s",
                       shape_str(f, sizeof f, pw->ndim, pw->shape));
    if (pw->shape[1] != 3 || pw->shape[2] != pw->shape[3])
        return uf__err(UF_ERR_UNSUPPORTED,
                       "patch_embed.proj.weight: %s: only square patches of 3-channel images "
                       "are supported",
                       shape_str(f, sizeof f, pw->ndim, pw->shape));
    if (pw->shape[0] > CK_MAX_DIM || pw->shape[2] > CK_MAX_PATCH)
        return uf__err(UF_ERR_LIMIT, "patch_embed.proj.weight: %s exceeds the size limits",
                       shape_str(f, sizeof f, pw->ndim, pw->shape));
    a->D = pw->shape[0];
    a->P = pw->shape[2];
    return UF_OK;
}

/* Depth: blocks.0 .. blocks.(depth-1), no gaps. */
static uf_status read_depth(const uf__tensors *ts, vit_arch *a)
{
    long maxb = -1;
    for (size_t i = 0; i < ts->n; i++) {
        long b = block_index(ts->v[i].name);
        if (b >= CK_MAX_DEPTH)
            return uf__err(UF_ERR_LIMIT, "%s: block index beyond %d", ts->v[i].name, CK_MAX_DEPTH);
        if (b > maxb) maxb = b;
    }
    if (maxb < 0) return uf__err(UF_ERR_FORMAT, "no transformer blocks (blocks.0.*) found");
    const int depth = (int)maxb + 1;
    unsigned char *seen = calloc((size_t)depth, 1); /* [depth] */
    if (!seen) return uf__err(UF_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < ts->n; i++) {
        long b = block_index(ts->v[i].name);
        if (b >= 0) seen[b] = 1;
    }
    int missing = -1;
    for (int b = 0; b < depth && missing < 0; b++)
        if (!seen[b]) missing = b;
    free(seen);
    if (missing >= 0)
        return uf__err(UF_ERR_FORMAT,
                       "missing block %d: no 'blocks.%d.*' tensors, but blocks up to %d exist",
                       missing, missing, depth - 1);
    a->depth = depth;
    return UF_OK;
}

/* MLP width M from the first block's fc1 [M][D], or, for DINOv2's SwiGLU MLP (the giant:
 * SwiGLUFFNFused, hidden width int(4D * 2/3) rounded up to a multiple of 8), from its w12
 * [2M][D] (the x1 and x2 halves). */
static uf_status read_mlp_width(const uf__tensors *ts, vit_arch *a)
{
    const uf__tensor *fc1 = uf__tensors_find(ts, "blocks.0.mlp.fc1.weight");
    const uf__tensor *w12 = uf__tensors_find(ts, "blocks.0.mlp.w12.weight");
    char f[160];
    a->swiglu = !fc1 && w12;
    if (a->swiglu) fc1 = w12;
    const char *nm = a->swiglu ? "blocks.0.mlp.w12.weight" : "blocks.0.mlp.fc1.weight";
    if (!fc1)
        return uf__err(UF_ERR_FORMAT, "missing tensor 'blocks.0.mlp.fc1.weight' (or "
                       "'blocks.0.mlp.w12.weight' of a SwiGLU MLP)");
    if (fc1->ndim != 2 || fc1->shape[0] < 1 || fc1->shape[1] != a->D ||
        (a->swiglu && fc1->shape[0] % 2))
        return uf__err(UF_ERR_FORMAT, "%s: expected [%s,%lld], found %s", nm,
                       a->swiglu ? "2*M" : "M", (long long)a->D,
                       shape_str(f, sizeof f, fc1->ndim, fc1->shape));
    if (fc1->shape[0] > CK_MAX_MLP)
        return uf__err(UF_ERR_LIMIT, "%s: MLP width %lld too large", nm,
                       (long long)fc1->shape[0]);
    a->M = a->swiglu ? fc1->shape[0] / 2 : fc1->shape[0];
    return UF_OK;
}

/* DINOv2's additions: register tokens [1][R][D] ([R][D] also accepted) and LayerScale,
 * present when any block has a ls1 / ls2 gamma (then every block must have both). */
static uf_status read_dinov2(const uf__tensors *ts, vit_arch *a)
{
    char f[160];
    a->ls = false;
    for (size_t i = 0; i < ts->n && !a->ls; i++)
        a->ls = block_index(ts->v[i].name) >= 0 &&
                (strstr(ts->v[i].name, ".ls1.gamma") || strstr(ts->v[i].name, ".ls2.gamma"));
    a->R = 0;
    a->reg = uf__tensors_find(ts, "register_tokens");
    if (!a->reg) return UF_OK;
    const uf__tensor *r = a->reg;
    bool ok = (r->ndim == 3 && r->shape[0] == 1) || r->ndim == 2;
    if (!ok || r->shape[r->ndim - 1] != a->D || r->shape[r->ndim - 2] < 1)
        return uf__err(UF_ERR_FORMAT, "register_tokens: expected [1,R,%lld] with R >= 1, found %s",
                       (long long)a->D, shape_str(f, sizeof f, r->ndim, r->shape));
    if (r->shape[r->ndim - 2] > CK_MAX_GRID)
        return uf__err(UF_ERR_LIMIT, "register_tokens: %lld registers",
                       (long long)r->shape[r->ndim - 2]);
    a->R = r->shape[r->ndim - 2];
    return UF_OK;
}

/* Trained grid g from pos_embed [1][1+g*g][D] ([1+g*g][D] also accepted). */
static uf_status read_grid(const uf__tensors *ts, vit_arch *a)
{
    const uf__tensor *pe = uf__tensors_find(ts, "pos_embed");
    char f[160];
    if (!pe) return uf__err(UF_ERR_FORMAT, "missing tensor 'pos_embed'");
    bool pe_ok = (pe->ndim == 3 && pe->shape[0] == 1) || pe->ndim == 2;
    int64_t T = pe_ok ? pe->shape[pe->ndim - 2] : 0;
    pe_ok = pe_ok && pe->shape[pe->ndim - 1] == a->D && T >= 2;
    int64_t g = 0;
    if (pe_ok) {
        g = (int64_t)llround(sqrt((double)(T - 1)));
        while (g * g > T - 1) g--;
        while ((g + 1) * (g + 1) <= T - 1) g++;
        pe_ok = g * g == T - 1 && g <= CK_MAX_GRID;
    }
    if (!pe_ok)
        return uf__err(UF_ERR_FORMAT,
                       "pos_embed: expected [1,1+g*g,%lld] (a CLS row plus a square grid), "
                       "found %s",
                       (long long)a->D, shape_str(f, sizeof f, pe->ndim, pe->shape));
    a->g = g;
    a->pos = pe;
    return UF_OK;
}

/* Heads: the caller's (must divide D), else the default for D. */
static uf_status resolve_heads(const uf_backbone_params *par, vit_arch *a)
{
    int heads = par->heads;
    if (heads > 0) {
        if (a->D % heads)
            return uf__err(UF_ERR_ARG, "%d heads do not divide the embedding dim %lld", heads,
                           (long long)a->D);
    } else {
        heads = default_heads((int)a->D);
        if (!heads)
            return uf__err(UF_ERR_UNSUPPORTED, "cannot infer heads for dim %lld; pass --heads",
                           (long long)a->D);
    }
    a->heads = heads;
    return UF_OK;
}

/* Optional classifier: head.weight [C][D] (+ head.bias [C]); C = 0 without one. */
static uf_status read_classes(const uf__tensors *ts, vit_arch *a)
{
    const uf__tensor *hw = uf__tensors_find(ts, "head.weight");
    char f[160];
    a->C = 0;
    if (!hw) return UF_OK;
    if (hw->ndim != 2 || hw->shape[1] != a->D || hw->shape[0] < 1)
        return uf__err(UF_ERR_FORMAT, "head.weight: expected [C,%lld], found %s",
                       (long long)a->D, shape_str(f, sizeof f, hw->ndim, hw->shape));
    if (hw->shape[0] > CK_MAX_CLASSES)
        return uf__err(UF_ERR_LIMIT, "head.weight: %lld classes", (long long)hw->shape[0]);
    a->C = hw->shape[0];
    return UF_OK;
}

/* cls_token [1][1][D] (any leading singleton dims accepted). */
static uf_status find_cls_token(const uf__tensors *ts, int64_t D, const uf__tensor **out)
{
    const uf__tensor *ct = uf__tensors_find(ts, "cls_token");
    char f[160];
    if (!ct)
        return uf__err(UF_ERR_FORMAT, "missing tensor 'cls_token' (expected [1,1,%lld])",
                       (long long)D);
    if (ct->ndim < 1 || ct->shape[ct->ndim - 1] != D || ct->numel != (size_t)D)
        return uf__err(UF_ERR_FORMAT, "cls_token: expected [1,1,%lld], found %s", (long long)D,
                       shape_str(f, sizeof f, ct->ndim, ct->shape));
    *out = ct;
    return UF_OK;
}

/* List every tensor that goes into the weight block as a slot (pointer to fill in w,
 * source tensor; a NULL pointer: used but not copied, LayerScale), checking its shape: the
 * copy comes after, so a bad file fails before the big allocation. sl holds
 * 5 + 14 * depth + 4 slots; *ns is set to the number used. */
static uf_status list_slots(const uf__tensors *ts, const vit_arch *a, uf__vit_weights *w,
                            slot *sl, size_t *ns)
{
    const int64_t D = a->D, P = a->P, M = a->M, C = a->C;
    uf_status s = UF_OK;
    size_t n = 0;
#define NEED(ptr, name, nd, ...)                                                       \
    do {                                                                               \
        const int64_t want_[] = {__VA_ARGS__};                                         \
        if (s == UF_OK) {                                                              \
            s = need(ts, name, nd, want_, &sl[n].src);                                 \
            sl[n++].dst = (ptr);                                                       \
        }                                                                              \
    } while (0)
    NEED(&w->patch_w, "patch_embed.proj.weight", 4, D, 3, P, P);
    NEED(&w->patch_b, "patch_embed.proj.bias", 1, D);
    if (s == UF_OK) {
        s = find_cls_token(ts, D, &sl[n].src);
        sl[n++].dst = &w->cls;
    }
    if (s == UF_OK) {
        sl[n].src = a->pos;
        sl[n++].dst = &w->pos;
    }
    if (s == UF_OK && a->reg) {
        sl[n].src = a->reg;
        sl[n++].dst = &w->reg;
    }
    const int64_t M1 = a->swiglu ? 2 * M : M; /* rows of fc1 / w12 */
    const char *fc1 = a->swiglu ? "mlp.w12" : "mlp.fc1", *fc2 = a->swiglu ? "mlp.w3" : "mlp.fc2";
    char nm[64], sub[32];
    for (int b = 0; b < a->depth && s == UF_OK; b++) {
        uf__block_weights *bw = &w->blocks[b];
#define BNEED(ptr, suffix, nd, ...)                                                    \
    do {                                                                               \
        snprintf(nm, sizeof nm, "blocks.%d.%s", b, suffix);                            \
        NEED(ptr, nm, nd, __VA_ARGS__);                                                \
    } while (0)
        BNEED(&bw->ln1_w, "norm1.weight", 1, D);
        BNEED(&bw->ln1_b, "norm1.bias", 1, D);
        BNEED(&bw->qkv_w, "attn.qkv.weight", 2, 3 * D, D);
        BNEED(&bw->qkv_b, "attn.qkv.bias", 1, 3 * D);
        BNEED(&bw->proj_w, "attn.proj.weight", 2, D, D);
        BNEED(&bw->proj_b, "attn.proj.bias", 1, D);
        BNEED(&bw->ln2_w, "norm2.weight", 1, D);
        BNEED(&bw->ln2_b, "norm2.bias", 1, D);
        snprintf(sub, sizeof sub, "%s.weight", fc1);
        BNEED(&bw->fc1_w, sub, 2, M1, D);
        snprintf(sub, sizeof sub, "%s.bias", fc1);
        BNEED(&bw->fc1_b, sub, 1, M1);
        snprintf(sub, sizeof sub, "%s.weight", fc2);
        BNEED(&bw->fc2_w, sub, 2, D, M);
        snprintf(sub, sizeof sub, "%s.bias", fc2);
        BNEED(&bw->fc2_b, sub, 1, D);
        if (a->ls) { /* checked and used, but folded into proj / fc2, not copied */
            BNEED(NULL, "ls1.gamma", 1, D);
            BNEED(NULL, "ls2.gamma", 1, D);
        }
#undef BNEED
    }
    NEED(&w->norm_w, "norm.weight", 1, D);
    NEED(&w->norm_b, "norm.bias", 1, D);
    if (C > 0) {
        NEED(&w->head_w, "head.weight", 2, C, D);
        NEED(&w->head_b, "head.bias", 1, C);
    }
#undef NEED
    *ns = n;
    return s;
}

/* One 64-byte aligned allocation w->mem holding every slot's tensor, each starting on a
 * 16-float boundary, padding zeroed; *total is its size in floats. A non-finite value in
 * any used weight would poison every output, so it is refused here, naming the tensor. */
static uf_status copy_slots(uf__vit_weights *w, const slot *sl, size_t ns, size_t *total)
{
    size_t nf = 0, bytes = 0;
    for (size_t i = 0; i < ns; i++) {
        size_t r = sl[i].dst ? (sl[i].src->numel + 15) / 16 * 16 : 0;
        if (!uf__add_ok(nf, r, &nf)) return uf__err(UF_ERR_LIMIT, "model too large");
    }
    if (!uf__mul_ok(nf, sizeof(float), &bytes)) return uf__err(UF_ERR_LIMIT, "model too large");
    w->mem = aligned_alloc(64, bytes ? bytes : 64);
    if (!w->mem) return uf__err(UF_ERR_NOMEM, "cannot allocate %zu bytes for the weights", bytes);
    memset(w->mem, 0, bytes); /* padding zeroed: the whole block is deterministic */
    size_t off = 0;
    for (size_t i = 0; i < ns; i++) {
        const uf__tensor *t = sl[i].src;
        float *d = sl[i].dst ? w->mem + off : NULL;
        for (size_t j = 0; j < t->numel; j++) {
            if (!isfinite(t->data[j]))
                return uf__err(UF_ERR_NONFINITE, "%s: non-finite value (%g) at element %zu",
                               t->name, (double)t->data[j], j);
            if (d) d[j] = t->data[j];
        }
        if (!d) continue;
        *sl[i].dst = d;
        off += (t->numel + 15) / 16 * 16;
    }
    *total = nf;
    return UF_OK;
}

/* LayerScale into the weights: x + gamma * (W a + b) == x + (diag(gamma) W) a + gamma b, for
 * the attention projection (ls1) and the MLP output (ls2) of every block. The shapes were
 * checked by list_slots. */
static void fold_layerscale(const uf__tensors *ts, uf__vit_weights *w, int depth, int D, int M)
{
    char nm[64];
    for (int b = 0; b < depth; b++) {
        uf__block_weights *bw = &w->blocks[b];
        for (int k = 0; k < 2; k++) {
            snprintf(nm, sizeof nm, "blocks.%d.ls%d.gamma", b, k + 1);
            const float *g = uf__tensors_find(ts, nm)->data; /* [D] */
            float *W = k ? bw->fc2_w : bw->proj_w, *bias = k ? bw->fc2_b : bw->proj_b;
            const int K = k ? M : D; /* [D][K] */
            for (int i = 0; i < D; i++) {
                for (int j = 0; j < K; j++) W[(size_t)i * K + j] *= g[i];
                bias[i] *= g[i];
            }
        }
    }
}

/* The architecture from the tensor shapes and the caller's parameters. */
static uf_status read_arch(const uf__tensors *ts, const uf_backbone_params *par, vit_arch *a)
{
    memset(a, 0, sizeof *a);
    uf_status s = read_patch_embed(ts, a);
    if (s == UF_OK) s = read_depth(ts, a);
    if (s == UF_OK) s = read_mlp_width(ts, a);
    if (s == UF_OK) s = read_dinov2(ts, a);
    if (s == UF_OK) s = read_grid(ts, a);
    if (s == UF_OK) s = resolve_heads(par, a);
    if (s == UF_OK) s = read_classes(ts, a);
    return s;
}

uf_status uf__vit_weights_from_tensors(const uf__tensors *ts, const uf_backbone_params *p,
                                       uf__vit_weights *w)
{
    if (!ts || !w) return uf__err(UF_ERR_ARG, "uf__vit_weights_from_tensors: NULL argument");
    memset(w, 0, sizeof *w);
    uf_backbone_params par = p ? *p : uf_backbone_default_params();
    /* a zero-initialised params struct means "defaults" rather than an eps of 0 */
    if (par.ln_eps == 0.0f) par.ln_eps = 1e-6f;
    if (!(par.ln_eps > 0.0f) || !isfinite(par.ln_eps) || par.heads < 0)
        return uf__err(UF_ERR_ARG, "invalid backbone parameters (heads %d, ln_eps %g)",
                       par.heads, (double)par.ln_eps);
    vit_arch a;
    uf_status s = read_arch(ts, &par, &a);
    if (s != UF_OK) return s;

    /* 5 embedding + 14 per block + 2 norm + 2 head slots at most */
    w->blocks = calloc((size_t)a.depth, sizeof *w->blocks); /* [depth] */
    slot *sl = calloc(5 + 14 * (size_t)a.depth + 4, sizeof *sl);
    size_t ns = 0, total = 0;
    s = !w->blocks || !sl ? uf__err(UF_ERR_NOMEM, "out of memory") : UF_OK;
    if (s == UF_OK) s = list_slots(ts, &a, w, sl, &ns);
    if (s == UF_OK) s = check_all_used(ts, sl, ns);
    if (s == UF_OK) s = copy_slots(w, sl, ns, &total);
    if (s == UF_OK && a.ls) fold_layerscale(ts, w, a.depth, (int)a.D, (int)a.M);
    free(sl);
    if (s != UF_OK) {
        uf__vit_weights_free(w);
        return s;
    }
    w->dim = (int)a.D;
    w->depth = a.depth;
    w->heads = a.heads;
    w->patch = (int)a.P;
    w->mlp_dim = (int)a.M;
    w->grid_h = w->grid_w = (int)a.g;
    w->n_classes = (int)a.C;
    w->n_reg = (int)a.R;
    w->swiglu = a.swiglu;
    w->layerscale = a.ls;
    /* dinov2/hub/backbones.py: the register models interpolate to the exact size with
     * antialiasing (interpolate_offset 0, interpolate_antialias True), the others with
     * DINO's 0.1 offset; uf__backbone_load_mem switches Hugging Face's Dinov2Model */
    w->pos_interp = a.R > 0 ? UF__POS_EXACT_AA : UF__POS_OFFSET;
    w->ln_eps = par.ln_eps;
    w->n_floats = total;
    return UF_OK;
}

void uf__vit_weights_free(uf__vit_weights *w)
{
    if (!w) return;
    free(w->mem);
    free(w->blocks);
    memset(w, 0, sizeof *w);
}

/* ---- the public API ------------------------------------------------------------------ */

/* Which reader handles the bytes: 1 pth, 2 safetensors, 0 neither. */
static int sniff(const uint8_t *h, size_t n)
{
    uint64_t hlen = n >= 8 ? uf__le64(h) : 0;
    /* safetensors before the pickle test: a header length's low byte may well be 0x80,
     * while a pickle's first 8 bytes never read as a length that fits the file */
    if (n >= 4 && memcmp(h, "PK\x03\x04", 4) == 0) return 1;
    if (n >= 9 && hlen >= 2 && hlen <= n - 8 && h[8] == '{') return 2;
    if (n >= 1 && h[0] == 0x80) return 1; /* legacy pickle: pth.c explains */
    return 0;
}

uf_status uf__backbone_load_mem(const uint8_t *buf, size_t len, const char *name,
                                const uf_backbone_params *p, uf_backbone **out)
{
    *out = NULL;
    int kind = sniff(buf, len);
    if (!kind)
        return uf__err(UF_ERR_FORMAT, "%s: not a .pth or .safetensors checkpoint", name);
    /* read all float tensors, keep the ViT's (freeing the rest), build, free the list:
     * peak memory is about twice the model, never the whole training checkpoint twice */
    uf__tensors ts = {0};
    uf_status s = kind == 1 ? uf__pth_load_mem_ex(buf, len, name, NULL, &ts)
                            : uf__safetensors_load_mem_ex(buf, len, name, &ts);
    if (s != UF_OK) {
        uf__tensors_free(&ts);
        return s; /* the readers' messages already name the file */
    }
    bool hf = false;
    s = select_state_dict(&ts, &hf);
    uf_backbone *bb = s == UF_OK ? calloc(1, sizeof *bb) : NULL;
    if (s == UF_OK && !bb) s = uf__err(UF_ERR_NOMEM, "out of memory");
    if (s == UF_OK) s = uf__vit_weights_from_tensors(&ts, p, &bb->w);
    /* transformers' Dinov2Model (LayerScale, no registers) resamples to the exact size,
     * unlike the official code's 0.1 offset; Dinov2WithRegisters matches the official one */
    if (s == UF_OK && hf && bb->w.layerscale && !bb->w.n_reg) bb->w.pos_interp = UF__POS_EXACT;
    uf__tensors_free(&ts);
    if (s != UF_OK) {
        free(bb);
        return uf__err_prefix(s, name);
    }
    bb->format = kind == 1 ? "pth" : "safetensors";
    bb->params = p ? *p : uf_backbone_default_params();
    uf__sha256_hex(buf, len, bb->sha256);
    bb->file_size = len;
    *out = bb;
    return UF_OK;
}

uf_status uf_backbone_load(const char *path, const uf_backbone_params *p, uf_backbone **out)
{
    if (!out) return uf__err(UF_ERR_ARG, "uf_backbone_load: NULL output");
    *out = NULL;
    if (!path) return uf__err(UF_ERR_ARG, "uf_backbone_load: NULL path");
    const uint8_t *buf;
    size_t len;
    bool mapped;
    uf_status s = uf__map_file(path, (size_t)64 << 30, &buf, &len, &mapped);
    if (s != UF_OK) return s;
    s = uf__backbone_load_mem(buf, len, path, p, out);
    uf__unmap_file(buf, len, mapped);
    /* the absolute path, so a model file records a checkpoint findable from anywhere */
    char *abs = s == UF_OK ? realpath(path, NULL) : NULL;
    if (s == UF_OK && !((*out)->path = abs ? abs : strdup(path))) {
        uf_backbone_free(*out);
        *out = NULL;
        s = uf__err(UF_ERR_NOMEM, "out of memory");
    }
    return s;
}

void uf_backbone_free(uf_backbone *bb)
{
    if (!bb) return;
    uf__vit_weights_free(&bb->w);
    uf__lp_free(bb->lp);
    free(bb->path);
    free(bb);
}

/* The parameter count is derived from the architecture (not from n_floats, which includes
 * alignment padding), so it matches PyTorch's sum(p.numel() for p in model.parameters()). */
void uf_backbone_get_info(const uf_backbone *bb, uf_backbone_info *info)
{
    if (!info) return;
    memset(info, 0, sizeof *info);
    if (!bb) return;
    const uf__vit_weights *w = &bb->w;
    size_t D = (size_t)w->dim, M = (size_t)w->mlp_dim, P = (size_t)w->patch;
    size_t C = (size_t)w->n_classes, T = 1 + (size_t)w->grid_h * (size_t)w->grid_w;
    size_t M1 = w->swiglu ? 2 * M : M; /* fc1 (w12) rows */
    size_t per_block = 4 * D + 3 * D * D + 3 * D + D * D + D + M1 * D + M1 + D * M + D +
                       (w->layerscale ? 2 * D : 0);
    T += (size_t)w->n_reg; /* register tokens: D parameters each, like a position */
    info->dim = w->dim;
    info->depth = w->depth;
    info->heads = w->heads;
    info->patch = w->patch;
    info->mlp_dim = w->mlp_dim;
    info->grid_h = w->grid_h;
    info->grid_w = w->grid_w;
    info->n_classes = w->n_classes;
    info->n_params = D * 3 * P * P + D + D + T * D + (size_t)w->depth * per_block + 2 * D +
                     C * D + C;
    info->format = bb->format ? bb->format : "";
}
