/*
 * test_dinov2.c - DINOv2 backbones (LayerScale, register tokens, SwiGLU, their positional
 * resampling) against golden outputs of an independent float64 PyTorch reference written
 * from facebookresearch/dinov2 and transformers (scripts/gen_dinov2_golden.py).
 *
 * Golden files (tests/data/dinov2/): dinov2_{vits14,vits14_reg4,vitg14_reg4}_pretrain.pth
 * (torch.save of a flat state_dict with the published names and shapes: pos_embed
 * [1,1370,D], mask_token, register_tokens [1,4,D], ls1/ls2.gamma, mlp.w12/w3 for the giant),
 * hf_vits14.safetensors and hf_vitg14_reg4.safetensors (the same weights under transformers'
 * names), and per model and input size <case>_{448,168x560}.safetensors holding "block1",
 * "block3" [1,Np,D], "attn3" and "rollout3" [1,Np] (CLS -> patches, registers excluded) and
 * "cls" [1,D].
 * The input is not stored: pixel i of [1][3][H][W] is ((i * 2654435761 + seed) mod 2^32 >> 8)
 * / 2^23 - 1 (exact in float32), computed here as the generator does.
 * Tiny models: D 12, 2 heads, depth 3, patch 14, 37x37 trained grid.
 *
 * Tolerance: max |ours - golden| <= 1e-4 * max(1, max |golden|), as test_forward.c; for the
 * attention maps (all far below 1) 1e-4 * max |golden|.
 * Also: the architecture read from each file, the official and HF files giving the same
 * weights, and clear errors for inconsistent or damaged files (wrong register, LayerScale
 * and SwiGLU shapes, missing LayerScale, non-finite gamma, every truncation of a .pth).
 */
#include "harness.h"
#include "core/internal.h"

#define DV2 "tests/data/dinov2/"

static uf_backbone *load(const char *file)
{
    uf_backbone_params p = uf_backbone_default_params();
    p.heads = 2; /* D 12: no default head count */
    uf_backbone *bb = NULL;
    uf_status s = uf_backbone_load(file, &p, &bb);
    CHECKF(s == UF_OK, "%s: %s", file, uf_errmsg());
    return bb;
}

/* The input of scripts/gen_dinov2_golden.py (pixels()). */
static float *pixels(int H, int W, uint32_t seed)
{
    size_t n = (size_t)3 * H * W;
    float *px = malloc(n * sizeof *px);
    if (!px) return NULL;
    for (size_t i = 0; i < n; i++) {
        uint32_t h = (uint32_t)((uint64_t)i * 2654435761u + seed);
        px[i] = (float)((double)(h >> 8) / (1 << 23) - 1.0);
    }
    return px;
}

/* max |v - golden| <= 1e-4 * max(1, max |golden|); attention maps (values far below 1):
 * <= 1e-4 * max |golden| (rel). */
static int close_to(const char *label, const uf__tensors *g, const char *name, const float *v,
                    size_t n, int rel)
{
    const uf__tensor *t = uf__tensors_find(g, name);
    if (!t || t->numel != n) {
        fprintf(stderr, "FAIL %s: golden '%s' missing or of %zu values (want %zu)\n", label,
                name, t ? t->numel : 0, n);
        return 0;
    }
    double e = th_max_abs_diff(v, t->data, n), m = th_max_abs(t->data, n);
    double tol = 1e-4 * (rel || m > 1 ? m : 1);
    fprintf(stderr, "    %-28s %-7s max|err| %.3g  max|ref| %.3g\n", label, name, e, m);
    return e <= tol;
}

/* Model file against one golden output at H x W (seed: the generator's). */
static void check_case(const char *model, const char *gold, int H, int W, uint32_t seed)
{
    uf_backbone *bb = load(model);
    uf__tensors g = {0};
    uf_status s = uf__safetensors_load(gold, &g);
    CHECKF(s == UF_OK, "%s: %s", gold, uf_errmsg());
    float *px = pixels(H, W, seed);
    if (!bb || s != UF_OK || !px) {
        uf_backbone_free(bb);
        uf__tensors_free(&g);
        free(px);
        return;
    }
    const int D = bb->w.dim, Np = (H / 14) * (W / 14);
    float *blocks = malloc((size_t)2 * Np * D * sizeof(float));
    float *attn = malloc((size_t)Np * sizeof(float)), *cls = malloc((size_t)D * sizeof(float));
    uf_session *se = NULL;
    REQUIRE_OK(uf_session_new(bb, &se));
    uf_forward_request rq = {.blocks = 0x5, .attn_block = 3, .want_cls = 1};
    uf_forward_output o = {.blocks = blocks, .attn = attn, .cls = cls};
    s = uf_forward(se, px, 1, H, W, &rq, &o);
    CHECKF(s == UF_OK, "%s", uf_errmsg());
    if (s == UF_OK) {
        const char *lab = strrchr(gold, '/') + 1;
        CHECK(close_to(lab, &g, "block1", blocks, (size_t)Np * D, 0));
        CHECK(close_to(lab, &g, "block3", blocks + (size_t)Np * D, (size_t)Np * D, 0));
        CHECK(close_to(lab, &g, "attn3", attn, (size_t)Np, 1));
        CHECK(close_to(lab, &g, "cls", cls, (size_t)D, 0));
        uf_forward_request rr = {.attn_block = 3, .rollout = 1};
        s = uf_forward(se, px, 1, H, W, &rr, &o);
        CHECKF(s == UF_OK, "rollout: %s", uf_errmsg());
        if (s == UF_OK) CHECK(close_to(lab, &g, "rollout3", attn, (size_t)Np, 1));
    }
    uf_session_free(se);
    uf_backbone_free(bb);
    uf__tensors_free(&g);
    free(px);
    free(blocks);
    free(attn);
    free(cls);
}

/* Seeds as in gen_dinov2_golden.py: model seed * 10 + 1 (448) / + 2 (168x560). */
static void test_vits14(void)
{
    check_case(DV2 "dinov2_vits14_pretrain.pth", DV2 "vits14_448.safetensors", 448, 448, 211);
    check_case(DV2 "dinov2_vits14_pretrain.pth", DV2 "vits14_168x560.safetensors", 168, 560, 212);
}

static void test_vits14_reg4(void)
{
    check_case(DV2 "dinov2_vits14_reg4_pretrain.pth", DV2 "vits14_reg4_448.safetensors", 448,
               448, 221);
    check_case(DV2 "dinov2_vits14_reg4_pretrain.pth", DV2 "vits14_reg4_168x560.safetensors",
               168, 560, 222);
}

static void test_vitg14_reg4_swiglu(void)
{
    check_case(DV2 "dinov2_vitg14_reg4_pretrain.pth", DV2 "vitg14_reg4_448.safetensors", 448,
               448, 231);
    check_case(DV2 "dinov2_vitg14_reg4_pretrain.pth", DV2 "vitg14_reg4_168x560.safetensors",
               168, 560, 232);
}

/* Hugging Face files: Dinov2Model resamples to the exact size (its own goldens);
 * Dinov2WithRegistersModel as the official register models (the same goldens). */
static void test_hf(void)
{
    check_case(DV2 "hf_vits14.safetensors", DV2 "hf_vits14_448.safetensors", 448, 448, 211);
    check_case(DV2 "hf_vits14.safetensors", DV2 "hf_vits14_168x560.safetensors", 168, 560, 212);
    check_case(DV2 "hf_vitg14_reg4.safetensors", DV2 "vitg14_reg4_448.safetensors", 448, 448, 231);
    check_case(DV2 "hf_vitg14_reg4.safetensors", DV2 "vitg14_reg4_168x560.safetensors", 168, 560,
               232);
}

/* What each file is read as, and the same weights from both naming schemes. */
static void test_arch(void)
{
    static const struct {
        const char *file;
        int reg, swiglu, mlp, interp;
    } want[] = {
        {DV2 "dinov2_vits14_pretrain.pth", 0, 0, 40, UF__POS_OFFSET},
        {DV2 "dinov2_vits14_reg4_pretrain.pth", 4, 0, 40, UF__POS_EXACT_AA},
        {DV2 "dinov2_vitg14_reg4_pretrain.pth", 4, 1, 32, UF__POS_EXACT_AA},
        {DV2 "hf_vits14.safetensors", 0, 0, 40, UF__POS_EXACT},
        {DV2 "hf_vitg14_reg4.safetensors", 4, 1, 32, UF__POS_EXACT_AA},
    };
    uf_backbone *bb[5] = {0};
    for (int i = 0; i < 5; i++) {
        bb[i] = load(want[i].file);
        if (!bb[i]) continue;
        const uf__vit_weights *w = &bb[i]->w;
        CHECKF(w->n_reg == want[i].reg && w->swiglu == want[i].swiglu && w->layerscale == 1 &&
                   w->mlp_dim == want[i].mlp && w->pos_interp == want[i].interp &&
                   w->grid_h == 37 && w->grid_w == 37 && w->patch == 14 && w->dim == 12 &&
                   w->depth == 3,
               "%s: reg %d swiglu %d ls %d mlp %d interp %d grid %dx%d", want[i].file, w->n_reg,
               w->swiglu, w->layerscale, w->mlp_dim, w->pos_interp, w->grid_h, w->grid_w);
        uf_backbone_info in;
        uf_backbone_get_info(bb[i], &in);
        /* torch: sum(p.numel()) without mask_token (not part of the forward) */
        size_t D = 12, M = (size_t)want[i].mlp, M1 = want[i].swiglu ? 2 * M : M;
        size_t blk = 4 * D + 3 * D * D + 3 * D + D * D + D + M1 * D + M1 + D * M + D + 2 * D;
        size_t np = D * 3 * 14 * 14 + D + D + 1370 * D + (size_t)want[i].reg * D + 3 * blk + 2 * D;
        CHECKF(in.n_params == np, "%s: n_params %zu, want %zu", want[i].file, in.n_params, np);
    }
    /* official and HF names: bit-identical weights */
    for (int k = 0; k < 2; k++) {
        const uf_backbone *a = bb[k ? 2 : 0], *b = bb[k ? 4 : 3];
        if (!a || !b) continue;
        CHECK(a->w.n_floats == b->w.n_floats &&
              memcmp(a->w.mem, b->w.mem, a->w.n_floats * sizeof(float)) == 0);
    }
    for (int i = 0; i < 5; i++) uf_backbone_free(bb[i]);
}

/* ---- inconsistent files ------------------------------------------------------------- */

/* The official tensors of file, names as published. */
static int load_ts(const char *file, uf__tensors *ts)
{
    memset(ts, 0, sizeof *ts);
    uf_status s = uf__pth_load(file, ts);
    CHECKF(s == UF_OK, "%s: %s", file, uf_errmsg());
    return s == UF_OK;
}

/* Replace tensor name by a zero-filled one of the given shape (ndim 0: remove it). */
static void reshape(uf__tensors *ts, const char *name, int ndim, int64_t a, int64_t b, int64_t c)
{
    uf__tensor *t = uf__tensors_find(ts, name);
    REQUIRE(t);
    if (ndim == 0) {
        size_t i = (size_t)(t - ts->v);
        free(t->name);
        free(t->data);
        ts->v[i] = ts->v[--ts->n];
        return;
    }
    int64_t sh[3] = {a, b, c};
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)sh[i];
    float *d = calloc(n ? n : 1, sizeof *d);
    REQUIRE(d);
    free(t->data);
    t->data = d;
    t->ndim = ndim;
    t->numel = n;
    for (int i = 0; i < ndim; i++) t->shape[i] = sh[i];
}

/* weights from ts must fail with status want and a message containing all of the words. */
static void expect_fail(const uf__tensors *ts, uf_status want, const char *w1, const char *w2,
                        const char *what)
{
    uf_backbone_params p = uf_backbone_default_params();
    p.heads = 2;
    uf__vit_weights w;
    uf_status s = uf__vit_weights_from_tensors(ts, &p, &w);
    const char *m = uf_errmsg();
    CHECKF(s == want && strstr(m, w1) && (!w2 || strstr(m, w2)), "%s: status %s, message '%s'",
           what, uf_status_str(s), m);
    if (s == UF_OK) uf__vit_weights_free(&w);
    else fprintf(stderr, "    %-34s -> %s\n", what, m);
}

static void test_bad_tensors(void)
{
    const char *reg = DV2 "dinov2_vits14_reg4_pretrain.pth", *g = DV2 "dinov2_vitg14_reg4_pretrain.pth";
    uf__tensors ts;
    if (load_ts(reg, &ts)) {
        reshape(&ts, "register_tokens", 3, 1, 4, 13);
        expect_fail(&ts, UF_ERR_FORMAT, "register_tokens", "[1,4,13]", "register width");
        reshape(&ts, "register_tokens", 3, 1, 0, 12);
        expect_fail(&ts, UF_ERR_FORMAT, "register_tokens", "R >= 1", "zero registers");
        reshape(&ts, "register_tokens", 3, 2, 4, 12);
        expect_fail(&ts, UF_ERR_FORMAT, "register_tokens", "[2,4,12]", "register batch dim");
        uf__tensors_free(&ts);
    }
    if (load_ts(reg, &ts)) {
        reshape(&ts, "blocks.2.ls2.gamma", 0, 0, 0, 0);
        expect_fail(&ts, UF_ERR_FORMAT, "missing tensor 'blocks.2.ls2.gamma'", NULL,
                    "missing LayerScale");
        reshape(&ts, "blocks.1.ls1.gamma", 1, 11, 0, 0);
        expect_fail(&ts, UF_ERR_FORMAT, "blocks.1.ls1.gamma", "[11]", "LayerScale width");
        uf__tensors_free(&ts);
    }
    if (load_ts(reg, &ts)) {
        uf__tensor *t = uf__tensors_find(&ts, "blocks.0.ls1.gamma");
        REQUIRE(t);
        t->data[3] = NAN;
        expect_fail(&ts, UF_ERR_NONFINITE, "blocks.0.ls1.gamma", NULL, "NaN LayerScale");
        uf__tensors_free(&ts);
    }
    if (load_ts(g, &ts)) {
        reshape(&ts, "blocks.1.mlp.w3.weight", 2, 12, 31, 0);
        expect_fail(&ts, UF_ERR_FORMAT, "blocks.1.mlp.w3.weight", "[12,32]", "SwiGLU w3 width");
        uf__tensors_free(&ts);
    }
    if (load_ts(g, &ts)) {
        reshape(&ts, "blocks.0.mlp.w12.weight", 2, 63, 12, 0);
        expect_fail(&ts, UF_ERR_FORMAT, "blocks.0.mlp.w12.weight", "2*M", "SwiGLU odd w12");
        uf__tensors_free(&ts);
    }
    if (load_ts(g, &ts)) { /* an MLP in one block, SwiGLU in the others */
        reshape(&ts, "blocks.2.mlp.w12.weight", 0, 0, 0, 0);
        expect_fail(&ts, UF_ERR_FORMAT, "missing tensor 'blocks.2.mlp.w12.weight'", NULL,
                    "SwiGLU missing in a block");
        uf__tensors_free(&ts);
    }
    if (load_ts(reg, &ts)) {
        reshape(&ts, "pos_embed", 3, 1, 1369, 12);
        expect_fail(&ts, UF_ERR_FORMAT, "pos_embed", "[1,1369,12]", "pos_embed without CLS row");
        uf__tensors_free(&ts);
    }
}

/* Truncations of an official .pth and of an HF safetensors file at 64 spread offsets each
 * fail cleanly, naming the file; 200 seeded single-byte corruptions of each load or fail
 * cleanly (a crash or a sanitizer report under make asan would be the failure). */
static void test_damaged_files(void)
{
    static const char *const files[] = {DV2 "dinov2_vitg14_reg4_pretrain.pth",
                                        DV2 "hf_vitg14_reg4.safetensors"};
    for (int f = 0; f < 2; f++) {
        uint8_t *buf = NULL;
        size_t len = 0;
        REQUIRE(uf__read_file(files[f], (size_t)1 << 30, &buf, &len) == UF_OK);
        int tried = 0, failed = 0, named = 0;
        for (int k = 0; k < 64; k++) {
            size_t cut = len * (size_t)k / 64 + (size_t)k * 7 % 13;
            if (cut >= len) continue;
            uf_backbone *bb = NULL;
            uf_status s = uf__backbone_load_mem(buf, cut, "cut.file", NULL, &bb);
            tried++;
            failed += s != UF_OK && !bb;
            named += s != UF_OK && strstr(uf_errmsg(), "cut.file") != NULL;
            uf_backbone_free(bb);
        }
        CHECKF(failed == tried && named == tried, "%s: %d of %d truncations failed, %d named "
               "the file", files[f], failed, tried, named);
        th_sm r = th_sm_new(15, (uint64_t)f);
        int loaded = 0, clean = 0;
        for (int k = 0; k < 200; k++) {
            size_t at = (size_t)(th_sm_next(&r) % len);
            uint8_t old = buf[at];
            buf[at] ^= (uint8_t)(1u << (th_sm_next(&r) % 8));
            uf_backbone_params p = uf_backbone_default_params();
            p.heads = 2;
            uf_backbone *bb = NULL;
            uf_status s = uf__backbone_load_mem(buf, len, "flip.file", &p, &bb);
            loaded += s == UF_OK && bb;
            clean += s != UF_OK && !bb && strstr(uf_errmsg(), "flip.file");
            uf_backbone_free(bb);
            buf[at] = old;
        }
        CHECKF(loaded + clean == 200, "%s: %d corruptions loaded, %d failed cleanly, of 200",
               files[f], loaded, clean);
        fprintf(stderr, "    %s: %d of 200 corruptions still load (tensor data), %d refused\n",
                files[f], loaded, clean);
        free(buf);
    }
}

int main(void)
{
    RUN(test_vits14);
    RUN(test_vits14_reg4);
    RUN(test_vitg14_reg4_swiglu);
    RUN(test_hf);
    RUN(test_arch);
    RUN(test_bad_tensors);
    RUN(test_damaged_files);
    return TEST_DONE();
}
