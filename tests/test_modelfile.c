/*
 * test_modelfile.c - model files (src/detector/modelfile.c): uf_model_save / uf_model_load.
 *
 * Models here are made directly with uf__model_new from a small random ViT (D 48, depth 4)
 * and a seeded random bank, so the tests exercise the file format alone, quickly:
 *  - round trip: every setting, count, threshold (set and NaN), the bank bit for bit, the
 *    backbone identity, and a rebuilt random backbone giving bit-identical forward output;
 *  - embedded checkpoints: a model that carries its safetensors bytes loads after the
 *    checkpoint is deleted; one that does not fails naming the path; a different
 *    checkpoint is refused unless allowed; a changed checkpoint cannot be embedded;
 *  - every truncation and many single-byte corruptions fail cleanly (ASan/UBSan watch the
 *    parser), and files with a *valid* checksum but hostile headers are refused with
 *    UF_ERR_FORMAT before anything large is allocated;
 *  - saving is atomic: a failing write (RLIMIT_FSIZE in a child process) leaves the old
 *    file byte-identical and no temporary file behind;
 *  - wrong magic, version 0 and a newer version;
 *  - the precision (uf_model_set_precision): recorded, restored on load (scores bit-identical
 *    to the saved model's), overridable after loading; a header without the key (older
 *    files) loads as FP32; an unknown value is refused.
 */
#include "detector/detector.h"
#include "harness.h"

#include <cjson/cJSON.h>
#include <openssl/evp.h>

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define GOLD "tests/data/golden/"

static char tmpdir[64];

/* Path of a scratch file in this run's folder. */
#define tpath(name) th_path(tmpdir, name)

static bool read_all(const char *path, uint8_t **buf, size_t *len)
{
    return uf__read_file(path, (size_t)1 << 30, buf, len) == UF_OK;
}

/* Write a file; an existing one is unlinked first (ext4 flushes a file truncated and
 * rewritten in place on close, which would make the loops below wait on the disk). */
static bool write_all(const char *path, const void *buf, size_t len)
{
    unlink(path);
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = fwrite(buf, 1, len, f) == len;
    return fclose(f) == 0 && ok;
}

static bool copy_file(const char *from, const char *to)
{
    uint8_t *b;
    size_t n;
    if (!read_all(from, &b, &n)) return false;
    bool ok = write_all(to, b, n);
    free(b);
    return ok;
}

/* Names in tmpdir containing needle (e.g. ".tmp."). */
static int count_entries(const char *needle)
{
    DIR *d = opendir(tmpdir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, needle)) n++;
    closedir(d);
    return n;
}

static void rm_tmpdir(void)
{
    DIR *d = opendir(tmpdir);
    if (!d) return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(tmpdir);
}

/* ---- fixtures ------------------------------------------------------------------------- */

static uf_vit_config small_cfg(void)
{
    uf_vit_config c = {.dim = 48, .depth = 4, .heads = 3, .patch = 16, .mlp_dim = 96,
                       .grid = 4, .n_classes = 0, .seed = 1};
    return c;
}

/* Settings with every field away from its default, so a field lost in the file shows. */
static uf_detector_params test_params(void)
{
    uf_detector_params p = uf_detector_default_params();
    p.layer_first = 1;
    p.layer_last = 4;
    p.bpm = 1;
    p.bpm_kernel = 5;
    p.bpm_lambda = 0.123456789f;
    p.soft_mask = 1;
    p.rollout = 1;
    p.coreset = 0.3;
    p.sampler = UF_SAMPLER_RANDOM;
    p.seed = 18446744073709551557ull; /* above 2^63 and 2^53 */
    p.knn = 3;
    p.topk = 0.07;
    p.sigma = 2.5;
    p.pre.resize = 64;
    p.pre.crop = 64;
    p.pre.pad_to = 0;
    p.pre.interp = UF_INTERP_BICUBIC;
    p.pre.mean[0] = 0.1f, p.pre.mean[1] = 0.2f, p.pre.mean[2] = 1.0f / 3.0f;
    p.pre.std[0] = 0.7f, p.pre.std[1] = 0.11f, p.pre.std[2] = 2.0f / 3.0f;
    p.cosine = 1;                  /* format version 3 */
    p.pca_threshold = -2.718281828f;
    p.rotations = 7;
    return p;
}

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return *s;
}

/* A seeded bank [n][D] with values in [-4, 4), subnormals and signed zeros included. */
static float *make_bank(size_t n, int D, uint64_t seed)
{
    float *b = malloc(n * (size_t)D * sizeof(float));
    if (!b) return NULL;
    uint64_t s = seed * 2654435761u + 1;
    for (size_t i = 0; i < n * (size_t)D; i++)
        b[i] = (float)((double)(rng_next(&s) >> 11) / 9007199254740992.0 * 8.0 - 4.0);
    if (n * (size_t)D > 3) /* large, yet with a finite squared norm */
        b[0] = -0.0f, b[1] = 1e-40f, b[2] = -1.5e18f;
    return b;
}

/* A model of n_bank rows over bb (borrowed). */
static uf_status make_model(const uf_backbone *bb, size_t n_bank, uf_model **m)
{
    uf_detector_params p = test_params();
    float *bank = make_bank(n_bank, bb->w.dim, 7);
    if (!bank) return UF_ERR_NOMEM;
    return uf__model_new(bb, &p, bank, n_bank, n_bank * 4 + 1, 13, m);
}

/* Forward output (blocks 2 and 4, CLS attention of block 4) on a fixed 64 x 64 input. */
static float *forward(const uf_backbone *bb, size_t *n)
{
    const int S = 64, Np = (S / 16) * (S / 16), D = bb->w.dim;
    *n = (size_t)2 * Np * D + Np;
    float *px = malloc(3 * S * S * sizeof(float)), *o = calloc(*n, sizeof(float));
    uf_session *s = NULL;
    if (!px || !o || uf_session_new(bb, &s) != UF_OK) goto bad;
    uint64_t r = 99;
    for (int i = 0; i < 3 * S * S; i++)
        px[i] = (float)((double)(rng_next(&r) >> 40) / 16777216.0 - 0.5);
    uf_forward_request req = {.blocks = (1u << 1) | (1u << 3), .attn_block = 4};
    uf_forward_output out = {.blocks = o, .attn = o + (size_t)2 * Np * D};
    if (uf_forward(s, px, 1, S, S, &req, &out) != UF_OK) goto bad;
    uf_session_free(s);
    free(px);
    return o;
bad:
    uf_session_free(s);
    free(px);
    free(o);
    return NULL;
}

/* Forward outputs of two backbones are bit-identical. */
static bool same_forward(const uf_backbone *a, const uf_backbone *b)
{
    size_t na, nb;
    float *x = forward(a, &na), *y = forward(b, &nb);
    bool ok = x && y && na == nb && memcmp(x, y, na * sizeof(float)) == 0;
    free(x);
    free(y);
    return ok;
}

static bool same_bits_f(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }
static bool same_bits_d(double a, double b) { return memcmp(&a, &b, sizeof a) == 0; }

/* Every field of the settings, bit for bit. */
static void check_params(const uf_detector_params *a, const uf_detector_params *b)
{
    CHECK(a->layer_first == b->layer_first);
    CHECK(a->layer_last == b->layer_last);
    CHECK(a->bpm == b->bpm);
    CHECK(a->bpm_kernel == b->bpm_kernel);
    CHECK(same_bits_f(a->bpm_lambda, b->bpm_lambda));
    CHECK(a->soft_mask == b->soft_mask);
    CHECK(a->rollout == b->rollout);
    CHECK(same_bits_d(a->coreset, b->coreset));
    CHECK(a->sampler == b->sampler);
    CHECKF(a->seed == b->seed, "%llu vs %llu", (unsigned long long)a->seed,
           (unsigned long long)b->seed);
    CHECK(a->knn == b->knn);
    CHECK(same_bits_d(a->topk, b->topk));
    CHECK(same_bits_d(a->sigma, b->sigma));
    CHECK(a->cosine == b->cosine);
    CHECK(a->pca_mask == b->pca_mask);
    CHECK(same_bits_f(a->pca_threshold, b->pca_threshold));
    CHECK(a->rotations == b->rotations);
    CHECK(a->pre.resize == b->pre.resize);
    CHECK(a->pre.crop == b->pre.crop);
    CHECK(a->pre.pad_to == b->pre.pad_to);
    CHECK(a->pre.interp == b->pre.interp);
    for (int c = 0; c < 3; c++) {
        CHECK(same_bits_f(a->pre.mean[c], b->pre.mean[c]));
        CHECK(same_bits_f(a->pre.std[c], b->pre.std[c]));
    }
}

/* Two models agree in everything a file carries. */
static void check_same_model(const uf_model *a, const uf_model *b)
{
    uf_model_info ia, ib;
    uf_model_get_info(a, &ia);
    uf_model_get_info(b, &ib);
    check_params(&ia.params, &ib.params);
    CHECK(ia.bank_size == ib.bank_size);
    CHECK(ia.bank_size_full == ib.bank_size_full);
    CHECK(ia.n_train == ib.n_train);
    CHECK(ia.dim == ib.dim);
    CHECK(same_bits_f(ia.threshold, ib.threshold) || (isnan(ia.threshold) && isnan(ib.threshold)));
    CHECK(ia.backbone.dim == ib.backbone.dim && ia.backbone.depth == ib.backbone.depth &&
          ia.backbone.heads == ib.backbone.heads && ia.backbone.patch == ib.backbone.patch &&
          ia.backbone.mlp_dim == ib.backbone.mlp_dim && ia.backbone.grid_h == ib.backbone.grid_h &&
          ia.backbone.grid_w == ib.backbone.grid_w &&
          ia.backbone.n_classes == ib.backbone.n_classes &&
          ia.backbone.n_params == ib.backbone.n_params);
    CHECKF(!strcmp(ia.backbone.format, ib.backbone.format), "%s vs %s", ia.backbone.format,
           ib.backbone.format);
    CHECK(!strcmp(ia.backbone_sha256, ib.backbone_sha256));
    if (ia.bank_size == ib.bank_size && ia.dim == ib.dim)
        CHECK(memcmp(uf_model_bank(a), uf_model_bank(b),
                     ia.bank_size * (size_t)ia.dim * sizeof(float)) == 0);
}

/* ---- 1. round trip -------------------------------------------------------------------- */

static void test_roundtrip_random(void)
{
    uf_model_load_params lp = uf_model_load_default_params();
    CHECK(lp.backbone_path == NULL && lp.allow_other_backbone == 0);

    uf_vit_config cfg = small_cfg();
    uf_backbone *bb = NULL;
    REQUIRE_OK(uf_backbone_random(&cfg, &bb));
    uf_model *m = NULL, *l = NULL;
    uf_status s = make_model(bb, 300, &m);
    CHECKF(s == UF_OK, "%s", uf_errmsg());
    if (s != UF_OK) goto done;
    uf_model_set_threshold(m, 1.2345678f);

    const char *p1 = tpath("rt.ufm");
    s = uf_model_save(m, p1, 0);
    CHECKF(s == UF_OK, "%s", uf_errmsg());
    s = s == UF_OK ? uf_model_load(p1, NULL, &l) : s;
    CHECKF(s == UF_OK, "%s", uf_errmsg());
    if (s != UF_OK) goto done;
    check_same_model(m, l);
    uf_model_info li;
    uf_model_get_info(l, &li);
    CHECK(same_bits_f(li.threshold, 1.2345678f));
    CHECK(!strcmp(li.backbone_path, "") && !strcmp(li.backbone_sha256, ""));
    CHECK(!strcmp(li.backbone.format, "random"));
    CHECK(li.backbone_embedded == 0);
    CHECK(l->bb_owned && l->bb == l->bb_owned);
    CHECK(l->bb->random_cfg.seed == 1 && l->bb->random_cfg.mlp_dim == 96);
    CHECK(same_forward(bb, l->bb));

    /* the same images score identically with the original and the loaded model */
    {
        uf_image *img = NULL;
        if (uf_image_new(80, 70, &img) == UF_OK) {
            uint64_t r = 5;
            for (size_t i = 0; i < (size_t)80 * 70 * 3; i++) img->rgb[i] = (uint8_t)rng_next(&r);
            uf_scorer *sa = NULL, *sb = NULL;
            uf_score oa = {0}, ob = {0};
            const uf_image *imgs[1] = {img};
            CHECK(uf_scorer_new(m, &sa) == UF_OK && uf_scorer_new(l, &sb) == UF_OK);
            if (sa && sb) {
                CHECK(uf_score_images(sa, imgs, 1, &oa) == UF_OK);
                CHECK(uf_score_images(sb, imgs, 1, &ob) == UF_OK);
                CHECKF(same_bits_f(oa.score, ob.score), "%g vs %g", oa.score, ob.score);
            }
            uf_scorer_free(sa);
            uf_scorer_free(sb);
        }
        uf_image_free(img);
    }

    /* NaN threshold (null), embed flag, and saving a loaded model again */
    uf_model_free(l);
    l = NULL;
    uf_model_set_threshold(m, NAN);
    const char *p2 = tpath("rt2.ufm");
    CHECK(uf_model_save(m, p2, 1) == UF_OK);
    s = uf_model_load(p2, NULL, &l);
    CHECKF(s == UF_OK, "%s", uf_errmsg());
    if (s == UF_OK) {
        uf_model_get_info(l, &li);
        CHECK(isnan(li.threshold));
        CHECK(li.backbone_embedded == 1);
        check_same_model(m, l);
        const char *p3 = tpath("rt3.ufm");
        CHECK(uf_model_save(l, p3, 1) == UF_OK);
        uf_model *l2 = NULL;
        CHECK(uf_model_load(p3, NULL, &l2) == UF_OK);
        if (l2) check_same_model(m, l2);
        uf_model_free(l2);
        unlink(p3);
    }
    /* the header is readable JSON after the 24-byte preamble */
    uint8_t *b = NULL;
    size_t n = 0;
    if (read_all(p2, &b, &n)) {
        CHECK(n > 64 && !memcmp(b, "UFMODEL\0", 8) && b[8] == 3 && b[24] == '{');
        CHECK(!memcmp(b + n - 8, "UFMEND\0\0", 8));
        CHECK(memmem(b, n, "\"seed\":\t\"18446744073709551557\"", 30) != NULL);
        CHECK(memmem(b, n, "\"threshold\":\tnull", 17) != NULL);
    }
    free(b);
    unlink(p1);
    unlink(p2);
done:
    uf_model_free(l);
    uf_model_free(m);
    uf_backbone_free(bb);
}

/* ---- 2. embedded checkpoint, recorded path, override ---------------------------------- */

static void test_embedded_file_backbone(void)
{
    uf_backbone_params bp = uf_backbone_default_params();
    bp.heads = 3;
    char ck[256], ck2[256];
    snprintf(ck, sizeof ck, "%s", tpath("ckpt.safetensors"));
    snprintf(ck2, sizeof ck2, "%s", tpath("ckpt2.safetensors"));
    REQUIRE(copy_file(GOLD "m1.safetensors", ck));
    uf_backbone *bb = NULL;
    REQUIRE_OK(uf_backbone_load(ck, &bp, &bb));
    uf_model *m = NULL, *l = NULL;
    uf_status s = make_model(bb, 200, &m);
    CHECKF(s == UF_OK, "%s", uf_errmsg());
    if (s != UF_OK) goto done;
    uf_model_set_threshold(m, 0.5f);

    const char *pe = tpath("emb.ufm"), *pn = tpath("noemb.ufm");
    CHECK(uf_model_save(m, pe, 1) == UF_OK);
    CHECK(uf_model_save(m, pn, 0) == UF_OK);
    REQUIRE(unlink(ck) == 0); /* the checkpoint is gone */

    /* the embedded model is self-contained */
    s = uf_model_load(pe, NULL, &l);
    CHECKF(s == UF_OK, "%s", uf_errmsg());
    if (s == UF_OK) {
        uf_model_info li;
        uf_model_get_info(l, &li);
        check_same_model(m, l);
        CHECK(li.backbone_embedded == 1);
        CHECK(!strcmp(li.backbone_path, ck));
        CHECK(!strcmp(li.backbone_sha256, bb->sha256));
        CHECK(!strcmp(li.backbone.format, "safetensors"));
        CHECK(same_forward(bb, l->bb));
        /* and can be saved again with its backbone, from the bytes it kept */
        const char *pe2 = tpath("emb2.ufm");
        CHECK(uf_model_save(l, pe2, 1) == UF_OK);
        uf_model *l2 = NULL;
        s = uf_model_load(pe2, NULL, &l2);
        CHECKF(s == UF_OK, "%s", uf_errmsg());
        if (l2) {
            check_same_model(m, l2);
            CHECK(same_forward(bb, l2->bb));
        }
        uf_model_free(l2);
        unlink(pe2);
    }
    uf_model_free(l);
    l = NULL;

    /* not embedded and the checkpoint is gone: an I/O error naming it */
    s = uf_model_load(pn, NULL, &l);
    CHECKF(s == UF_ERR_IO, "%s: %s", uf_status_str(s), uf_errmsg());
    CHECKF(strstr(uf_errmsg(), ck) && strstr(uf_errmsg(), "--backbone"), "%s", uf_errmsg());
    CHECK(l == NULL);

    /* the same bytes elsewhere: accepted, and that is now where the model finds them */
    s = uf_model_load(pn, &(uf_model_load_params){GOLD "m1.safetensors", 0}, &l);
    CHECKF(s == UF_OK, "%s", uf_errmsg());
    if (l) {
        uf_model_info li;
        uf_model_get_info(l, &li);
        CHECK(!strcmp(li.backbone_path, GOLD "m1.safetensors"));
        CHECK(!strcmp(li.backbone_sha256, bb->sha256));
        CHECK(li.backbone_embedded == 0);
        CHECK(same_forward(bb, l->bb));
    }
    uf_model_free(l);
    l = NULL;

    /* different bytes (same weights in F16): refused unless allowed */
    s = uf_model_load(pn, &(uf_model_load_params){GOLD "m1_f16.safetensors", 0}, &l);
    CHECKF(s == UF_ERR_ARG, "%s: %s", uf_status_str(s), uf_errmsg());
    CHECKF(strstr(uf_errmsg(), "m1_f16.safetensors") && strstr(uf_errmsg(), bb->sha256),
           "%s", uf_errmsg());
    CHECK(l == NULL);
    s = uf_model_load(pe, &(uf_model_load_params){GOLD "m1_f16.safetensors", 0}, &l);
    CHECK(s == UF_ERR_ARG && l == NULL); /* the override wins over embedded bytes */
    s = uf_model_load(pn, &(uf_model_load_params){GOLD "m1_f16.safetensors", 1}, &l);
    CHECKF(s == UF_OK, "%s", uf_errmsg());
    if (l) {
        uf_model_info li;
        uf_model_get_info(l, &li);
        CHECK(!strcmp(li.backbone_sha256, bb->sha256)); /* the fit-time identity stays */
        CHECK(strcmp(l->bb->sha256, bb->sha256) != 0);
        /* it cannot embed a checkpoint other than the one it was fitted with */
        s = uf_model_save(l, tpath("other.ufm"), 1);
        CHECKF(s == UF_ERR_ARG, "%s: %s", uf_status_str(s), uf_errmsg());
        CHECK(access(tpath("other.ufm"), F_OK) != 0);
        CHECK(uf_model_save(l, tpath("other.ufm"), 0) == UF_OK);
        unlink(tpath("other.ufm"));
    }
    uf_model_free(l);
    l = NULL;

    /* a checkpoint of another width, even when allowed, does not fit the bank */
    s = uf_model_load(pn, &(uf_model_load_params){GOLD "m2.safetensors", 1}, &l);
    CHECK(s != UF_OK && l == NULL);
    /* a missing override path: the loader's I/O error */
    s = uf_model_load(pn, &(uf_model_load_params){tpath("nope.safetensors"), 1}, &l);
    CHECK(s == UF_ERR_IO && l == NULL);

    /* the recorded checkpoint path now holds other bytes: refused, allowed on request */
    REQUIRE(copy_file(GOLD "m1_f16.safetensors", ck));
    s = uf_model_load(pn, NULL, &l);
    CHECKF(s == UF_ERR_ARG && strstr(uf_errmsg(), "changed"), "%s: %s", uf_status_str(s),
           uf_errmsg());
    s = uf_model_load(pn, &(uf_model_load_params){NULL, 1}, &l);
    CHECK(s == UF_OK);
    uf_model_free(l);
    l = NULL;

    /* embedding a checkpoint that changed on disk since it was loaded: I/O error */
    {
        uf_backbone *bb2 = NULL;
        uf_model *m2 = NULL;
        CHECK(copy_file(GOLD "m1.safetensors", ck2));
        if (uf_backbone_load(ck2, &bp, &bb2) == UF_OK && make_model(bb2, 50, &m2) == UF_OK) {
            CHECK(copy_file(GOLD "m1_bf16.safetensors", ck2));
            s = uf_model_save(m2, tpath("changed.ufm"), 1);
            CHECKF(s == UF_ERR_IO && strstr(uf_errmsg(), ck2) &&
                       strstr(uf_errmsg(), "changed since it was loaded"),
                   "%s: %s", uf_status_str(s), uf_errmsg());
            CHECK(access(tpath("changed.ufm"), F_OK) != 0);
            unlink(ck2);
            s = uf_model_save(m2, tpath("changed.ufm"), 1);
            CHECK(s == UF_ERR_IO);
        } else {
            CHECKF(0, "setup: %s", uf_errmsg());
        }
        uf_model_free(m2);
        uf_backbone_free(bb2);
    }
    /* a backbone built from memory has no file to embed */
    {
        uint8_t *b;
        size_t n;
        uf_backbone *bb3 = NULL;
        uf_model *m3 = NULL;
        if (read_all(GOLD "m1.safetensors", &b, &n)) {
            if (uf__backbone_load_mem(b, n, "mem", &bp, &bb3) == UF_OK &&
                make_model(bb3, 50, &m3) == UF_OK) {
                s = uf_model_save(m3, tpath("mem.ufm"), 1);
                CHECK(s == UF_ERR_ARG);
                CHECK(uf_model_save(m3, tpath("mem.ufm"), 0) == UF_OK);
                uf_model *l3 = NULL;
                s = uf_model_load(tpath("mem.ufm"), NULL, &l3);
                CHECKF(s == UF_ERR_IO && strstr(uf_errmsg(), "--backbone"), "%s",
                       uf_errmsg());
                uf_model_free(l3);
                unlink(tpath("mem.ufm"));
            }
            free(b);
        }
        uf_model_free(m3);
        uf_backbone_free(bb3);
    }
    unlink(ck);
    unlink(pe);
    unlink(pn);
done:
    uf_model_free(l);
    uf_model_free(m);
    uf_backbone_free(bb);
}

/* ---- 3. truncation -------------------------------------------------------------------- */

/* Load every given prefix length of file src; each must fail with UF_ERR_FORMAT. */
static void truncations(const char *src, size_t stride)
{
    uint8_t *b = NULL;
    size_t n = 0;
    REQUIRE(read_all(src, &b, &n));
    const char *p = tpath("trunc.ufm");
    int bad = 0;
    for (size_t k = 0; k < n && bad < 5; k++) {
        if (!(k <= 100 || k + 100 >= n || k % stride == 0)) continue;
        if (!write_all(p, b, k)) {
            CHECK(0);
            break;
        }
        uf_model *m = NULL;
        uf_status s = uf_model_load(p, NULL, &m);
        if (s != UF_ERR_FORMAT || m) {
            bad++;
            CHECKF(0, "prefix %zu of %zu: %s: %s", k, n, uf_status_str(s), uf_errmsg());
        }
        uf_model_free(m);
    }
    unlink(p);
    free(b);
}

static void test_truncation(void)
{
    uf_vit_config cfg = small_cfg();
    uf_backbone *bb = NULL;
    REQUIRE_OK(uf_backbone_random(&cfg, &bb));
    uf_model *m = NULL;
    uf_status s = make_model(bb, 20, &m);
    CHECK(s == UF_OK);
    if (s == UF_OK) {
        CHECK(uf_model_save(m, tpath("small.ufm"), 1) == UF_OK);
        truncations(tpath("small.ufm"), 1); /* every length */
        unlink(tpath("small.ufm"));
    }
    uf_model_free(m);
    uf_backbone_free(bb);

    /* with an embedded checkpoint (~620 KB): 0..100, the last 100 and a stride */
    uf_backbone_params bp = uf_backbone_default_params();
    bp.heads = 3;
    bb = NULL;
    m = NULL;
    REQUIRE_OK(uf_backbone_load(GOLD "m1.safetensors", &bp, &bb));
    if (make_model(bb, 20, &m) == UF_OK && uf_model_save(m, tpath("embt.ufm"), 1) == UF_OK) {
        truncations(tpath("embt.ufm"), 997);
        /* and the full file loads, as a control */
        uf_model *l = NULL;
        CHECK(uf_model_load(tpath("embt.ufm"), NULL, &l) == UF_OK);
        uf_model_free(l);
    } else {
        CHECKF(0, "setup: %s", uf_errmsg());
    }
    unlink(tpath("embt.ufm"));
    uf_model_free(m);
    uf_backbone_free(bb);
}

/* ---- 4. corruption and hostile headers ------------------------------------------------ */

static void test_corruption(void)
{
    uf_vit_config cfg = small_cfg();
    uf_backbone *bb = NULL;
    REQUIRE_OK(uf_backbone_random(&cfg, &bb));
    uf_model *m = NULL;
    uint8_t *b = NULL;
    size_t n = 0;
    if (make_model(bb, 20, &m) != UF_OK || uf_model_save(m, tpath("c.ufm"), 0) != UF_OK ||
        !read_all(tpath("c.ufm"), &b, &n)) {
        CHECKF(0, "setup: %s", uf_errmsg());
        goto done;
    }
    const char *p = tpath("cx.ufm");
    int bad = 0;
    for (size_t k = 0; k < n && bad < 5; k++) { /* every byte */
        b[k] ^= 0x5a;
        uf_model *l = NULL;
        uf_status s = write_all(p, b, n) ? uf_model_load(p, NULL, &l) : UF_ERR_INTERNAL;
        b[k] ^= 0x5a;
        const char *msg = uf_errmsg();
        bool ok;
        /* the checksum is verified before any field is trusted, the version included */
        if (k < 8) ok = s == UF_ERR_FORMAT && strstr(msg, "not a uniformaly model file");
        else if (k < n - 8) ok = s == UF_ERR_FORMAT && strstr(msg, "checksum mismatch");
        else ok = s == UF_ERR_FORMAT;
        if (!ok || l) {
            bad++;
            CHECKF(0, "byte %zu of %zu: %s: %s", k, n, uf_status_str(s), msg);
        }
        uf_model_free(l);
    }
    /* the pristine bytes still load */
    uf_model *l = NULL;
    CHECK(write_all(p, b, n) && uf_model_load(p, NULL, &l) == UF_OK);
    uf_model_free(l);
    unlink(p);
    unlink(tpath("c.ufm"));
done:
    free(b);
    uf_model_free(m);
    uf_backbone_free(bb);
}

/* The pieces of a valid saved file, to rebuild variants with a valid checksum. */
typedef struct parts {
    cJSON *hdr;       /* parsed JSON header      */
    uint8_t *data;    /* [n_data] the data area  */
    size_t n_data;
} parts;

static bool split_file(const uint8_t *b, size_t n, parts *pt)
{
    uint64_t hlen = uf__le64(b + 16);
    size_t ds = (24 + (size_t)hlen + 63) & ~(size_t)63;
    char *t = malloc(hlen + 1);
    if (!t) return false;
    memcpy(t, b + 24, hlen);
    t[hlen] = 0;
    pt->hdr = cJSON_Parse(t);
    free(t);
    pt->n_data = n - 40 - ds;
    pt->data = malloc(pt->n_data);
    if (!pt->hdr || !pt->data) return false;
    memcpy(pt->data, b + ds, pt->n_data);
    return true;
}

/* Assemble a file: preamble (version, reserved, header length as given, or the real one
 * when hlen == UINT64_MAX), header text, zero padding to 64 (or pad_byte), data area,
 * correct SHA-256 and end marker. */
static void assemble(const char *path, const char *json, size_t jlen, uint32_t version,
                     uint32_t reserved, uint64_t hlen, const uint8_t *data, size_t n_data,
                     uint8_t pad_byte)
{
    size_t ds = (24 + jlen + 63) & ~(size_t)63, n = ds + n_data + 40;
    uint8_t *f = calloc(1, n);
    if (!f) return;
    memcpy(f, "UFMODEL\0", 8);
    for (int i = 0; i < 4; i++) f[8 + i] = (uint8_t)(version >> (8 * i));
    for (int i = 0; i < 4; i++) f[12 + i] = (uint8_t)(reserved >> (8 * i));
    uint64_t h = hlen == UINT64_MAX ? jlen : hlen;
    for (int i = 0; i < 8; i++) f[16 + i] = (uint8_t)(h >> (8 * i));
    memcpy(f + 24, json, jlen);
    memset(f + 24 + jlen, pad_byte, ds - 24 - jlen);
    if (n_data) memcpy(f + ds, data, n_data);
    unsigned int mdlen;
    EVP_Digest(f, n - 40, f + n - 40, &mdlen, EVP_sha256(), NULL);
    memcpy(f + n - 8, "UFMEND\0\0", 8);
    write_all(path, f, n);
    free(f);
}

/* Load a rebuilt file; expect status want, and the message to contain needle if given. */
static void expect_load(const char *what, uf_status want, const char *needle)
{
    uf_model *m = NULL;
    uf_status s = uf_model_load(tpath("h.ufm"), NULL, &m);
    CHECKF(s == want && (!needle || strstr(uf_errmsg(), needle)) && (s != UF_OK) == !m,
           "%s: %s: %s", what, uf_status_str(s), s ? uf_errmsg() : "ok");
    uf_model_free(m);
}

/* Write the header tree hdr with the data area of pt, then expect_load. */
static void try_hdr(const parts *pt, cJSON *hdr, const char *what, uf_status want,
                    const char *needle)
{
    char *j = cJSON_Print(hdr);
    if (!j) return;
    assemble(tpath("h.ufm"), j, strlen(j), 1, 0, UINT64_MAX, pt->data, pt->n_data, 0);
    free(j);
    expect_load(what, want, needle);
}

/* Replace key k of the object at path (dot-separated, "" for the root) with item
 * (NULL: delete it), on a copy of the header; then try it. */
static void mutate(const parts *pt, const char *obj_path, const char *k, cJSON *item,
                   const char *what, const char *needle)
{
    cJSON *h = cJSON_Duplicate(pt->hdr, 1);
    cJSON *o = h;
    char buf[128];
    snprintf(buf, sizeof buf, "%s", obj_path);
    for (char *tok = strtok(buf, "."); tok && o; tok = strtok(NULL, "."))
        o = cJSON_GetObjectItemCaseSensitive(o, tok);
    if (!o) {
        CHECKF(0, "%s: no object %s", what, obj_path);
        cJSON_Delete(h);
        cJSON_Delete(item);
        return;
    }
    if (item) {
        if (cJSON_GetObjectItemCaseSensitive(o, k))
            cJSON_ReplaceItemInObjectCaseSensitive(o, k, item);
        else cJSON_AddItemToObject(o, k, item);
    } else {
        cJSON_DeleteItemFromObjectCaseSensitive(o, k);
    }
    try_hdr(pt, h, what, UF_ERR_FORMAT, needle);
    cJSON_Delete(h);
}

static void test_hostile_headers(void)
{
    uf_vit_config cfg = small_cfg();
    uf_backbone *bb = NULL;
    REQUIRE_OK(uf_backbone_random(&cfg, &bb));
    uf_model *m = NULL;
    uint8_t *b = NULL;
    size_t n = 0;
    parts pt = {0};
    if (make_model(bb, 20, &m) != UF_OK || uf_model_save(m, tpath("v.ufm"), 1) != UF_OK ||
        !read_all(tpath("v.ufm"), &b, &n) || !split_file(b, n, &pt)) {
        CHECKF(0, "setup: %s", uf_errmsg());
        goto done;
    }
    /* control: the rebuilt, unchanged file loads */
    try_hdr(&pt, pt.hdr, "unchanged", UF_OK, NULL);

    /* missing fields, wrong types, out-of-range values, each named in the message */
    mutate(&pt, "params", "sigma", NULL, "sigma missing", "'params.sigma'");
    mutate(&pt, "backbone", "precision", cJSON_CreateString("fp16"), "precision fp16",
           "'backbone.precision'");
    mutate(&pt, "backbone", "precision", cJSON_CreateNumber(1), "precision 1",
           "'backbone.precision'");
    mutate(&pt, "params", "knn", cJSON_CreateNumber(-1), "knn -1", "'params.knn'");
    mutate(&pt, "params", "knn", cJSON_CreateNumber(2.5), "knn 2.5", "'params.knn'");
    mutate(&pt, "params", "knn", cJSON_CreateNumber(1e300), "knn 1e300", "'params.knn'");
    mutate(&pt, "params", "knn", cJSON_CreateNumber(21), "knn > n_bank", "knn");
    mutate(&pt, "params", "layer_first", cJSON_CreateString("1"), "layer as string",
           "'params.layer_first'");
    mutate(&pt, "params", "layer_first", cJSON_CreateNumber(5), "layer_first > last",
           "header params invalid");
    /* the real cause, not a missing field (issue 12) */
    mutate(&pt, "params", "layer_last", cJSON_CreateNumber(5), "layer_last > depth",
           "h.ufm: header params.layer_last 5 is beyond the backbone's 4 blocks");
    mutate(&pt, "params", "bpm_kernel", cJSON_CreateNumber(4), "even kernel", NULL);
    mutate(&pt, "params", "cosine", cJSON_CreateNumber(2), "cosine 2", "'params.cosine'");
    mutate(&pt, "params", "rotations", cJSON_CreateNumber(0), "rotations 0", "'params.rotations'");
    mutate(&pt, "params", "rotations", cJSON_CreateNumber(361), "rotations 361",
           "'params.rotations'");
    mutate(&pt, "params", "pca_threshold", cJSON_CreateString("10"), "pca_threshold string",
           "'params.pca_threshold'");
    /* pca_mask with BPM on (the test model has BPM): refused as a combination */
    mutate(&pt, "params", "pca_mask", cJSON_CreateNumber(1), "pca_mask with bpm",
           "header params invalid");
    mutate(&pt, "params", "coreset", cJSON_CreateNumber(0), "coreset 0", "'params.coreset'");
    mutate(&pt, "params", "topk", cJSON_CreateNull(), "topk null", "'params.topk'");
    mutate(&pt, "params", "sampler", cJSON_CreateString("fast"), "sampler", "'params.sampler'");
    mutate(&pt, "params", "seed", cJSON_CreateNumber(5), "seed as number", "'params.seed'");
    mutate(&pt, "params", "seed", cJSON_CreateString("-1"), "seed -1", "'params.seed'");
    mutate(&pt, "params", "seed", cJSON_CreateString("18446744073709551616"), "seed 2^64",
           "'params.seed'");
    mutate(&pt, "params", "seed", cJSON_CreateString(""), "seed empty", "'params.seed'");
    mutate(&pt, "params.preprocess", "interp", cJSON_CreateString("box"), "interp",
           "'params.preprocess.interp'");
    mutate(&pt, "params.preprocess", "mean", cJSON_CreateIntArray((const int[]){1, 2}, 2),
           "mean of 2", "'params.preprocess.mean'");
    mutate(&pt, "params.preprocess", "std", cJSON_CreateIntArray((const int[]){1, 0, 1}, 3),
           "std 0", "'params.preprocess.std'");
    mutate(&pt, "params.preprocess", "crop", cJSON_CreateNumber(-64), "crop -64",
           "'params.preprocess.crop'");
    { /* crop 0 is the whole-image geometry (letterbox to resize): it needs resize > 0 */
        cJSON *h = cJSON_Duplicate(pt.hdr, 1);
        cJSON *q = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(h, "params"), "preprocess");
        cJSON_ReplaceItemInObjectCaseSensitive(q, "crop", cJSON_CreateNumber(0));
        try_hdr(&pt, h, "crop 0 (whole image)", UF_OK, NULL);
        cJSON_ReplaceItemInObjectCaseSensitive(q, "resize", cJSON_CreateNumber(0));
        try_hdr(&pt, h, "crop 0 and resize 0", UF_ERR_FORMAT, "header params invalid");
        cJSON_Delete(h);
    }
    mutate(&pt, "params.preprocess", "crop", cJSON_CreateNumber(100000), "crop 100000",
           "h.ufm: header params invalid: preprocessing: crop 100000 is above the limit");
    mutate(&pt, "params.preprocess", "resize", cJSON_CreateNumber(20000), "resize 20000",
           "h.ufm: header params invalid: preprocessing: resize 20000 is above the limit");
    mutate(&pt, "params.preprocess", "crop", cJSON_CreateNumber(8), "crop < patch", NULL);
    mutate(&pt, "", "params", cJSON_CreateArray(), "params array", "'params'");
    mutate(&pt, "", "threshold", cJSON_CreateString("x"), "threshold string", "'threshold'");
    mutate(&pt, "", "threshold", cJSON_CreateNumber(1e39), "threshold beyond float",
           "'threshold'");
    mutate(&pt, "", "dim", cJSON_CreateNumber(0), "dim 0", "'dim'");
    mutate(&pt, "", "dim", cJSON_CreateNumber(64), "dim 64", NULL);
    mutate(&pt, "", "dim", cJSON_CreateNumber(65537), "dim 65537 (limit 65536)", "'dim'");
    {
        static char longpath[4097]; /* a recorded checkpoint path of 4096 bytes (limit 4095) */
        memset(longpath, 'p', 4096);
        mutate(&pt, "backbone", "path", cJSON_CreateString(longpath), "path of 4096 bytes",
               "'backbone.path'");
    }
    mutate(&pt, "", "n_bank", cJSON_CreateNumber(1e15), "n_bank 1e15", "'n_bank'");
    mutate(&pt, "", "n_bank", cJSON_CreateNumber(-20), "n_bank -20", "'n_bank'");
    mutate(&pt, "", "n_bank", cJSON_CreateNumber(0), "n_bank 0", "'n_bank'");
    mutate(&pt, "", "n_bank", cJSON_CreateNumber(19), "n_bank 19", "'bank'");
    mutate(&pt, "", "n_bank_full", cJSON_CreateNumber(19), "n_bank_full < n_bank",
           "'n_bank_full'");
    mutate(&pt, "", "n_train", cJSON_CreateTrue(), "n_train bool", "'n_train'");
    mutate(&pt, "", "library_version", NULL, "no version", "'library_version'");
    mutate(&pt, "bank", "offset", cJSON_CreateNumber(64), "bank offset", "'bank'");
    mutate(&pt, "bank", "length", cJSON_CreateNumber(3840 * 2), "bank length", "'bank'");
    mutate(&pt, "backbone", "format", cJSON_CreateString("onnx"), "format onnx",
           "'backbone.format'");
    mutate(&pt, "backbone", "sha256", cJSON_CreateString("ab"), "sha for random",
           "'backbone.sha256'");
    mutate(&pt, "backbone", "embedded", cJSON_CreateNumber(1), "embedded number",
           "'backbone.embedded'");
    mutate(&pt, "backbone", "data", cJSON_CreateObject(), "data for random", "'backbone.data'");
    mutate(&pt, "backbone", "random", NULL, "random missing", "'backbone.random'");
    mutate(&pt, "backbone.random", "dim", cJSON_CreateNumber(96), "random dim",
           "'backbone.random.dim'");
    mutate(&pt, "backbone.random", "heads", cJSON_CreateNumber(5), "random heads",
           "'backbone.random.heads'");
    mutate(&pt, "backbone.random", "mlp_dim", cJSON_CreateNumber(1e9), "random mlp",
           "'backbone.random.mlp_dim'");
    mutate(&pt, "backbone.random", "seed", cJSON_CreateString("1x"), "random seed",
           "'backbone.random.seed'");
    mutate(&pt, "backbone.random", "patch", cJSON_CreateNumber(0), "random patch",
           "'backbone.random.patch'");
    mutate(&pt, "backbone", "ln_eps", cJSON_CreateNumber(0), "ln_eps 0", "'backbone.ln_eps'");
    /* a file backbone without the bytes' section and without a path */
    {
        cJSON *h = cJSON_Duplicate(pt.hdr, 1);
        cJSON *B = cJSON_GetObjectItemCaseSensitive(h, "backbone");
        cJSON_ReplaceItemInObjectCaseSensitive(B, "format", cJSON_CreateString("pth"));
        cJSON_DeleteItemFromObjectCaseSensitive(B, "random");
        cJSON_ReplaceItemInObjectCaseSensitive(B, "embedded", cJSON_CreateFalse());
        try_hdr(&pt, h, "pth with bad sha", UF_ERR_FORMAT, "'backbone.sha256'");
        cJSON_ReplaceItemInObjectCaseSensitive(
            B, "sha256", cJSON_CreateString("0123456789abcdef0123456789abcdef"
                                            "0123456789abcdef0123456789abcdef"));
        try_hdr(&pt, h, "pth without path", UF_ERR_IO, "--backbone");
        /* embedded, but the data section would lie beyond the file */
        cJSON_ReplaceItemInObjectCaseSensitive(B, "embedded", cJSON_CreateTrue());
        cJSON_ReplaceItemInObjectCaseSensitive(B, "file_size", cJSON_CreateNumber(1e10));
        cJSON *D = cJSON_AddObjectToObject(B, "data");
        cJSON_AddNumberToObject(D, "offset", 3840);
        cJSON_AddNumberToObject(D, "length", 1e10);
        try_hdr(&pt, h, "huge embedded section", UF_ERR_FORMAT, "truncated");
        cJSON_ReplaceItemInObjectCaseSensitive(D, "offset", cJSON_CreateNumber(100));
        try_hdr(&pt, h, "misaligned embedded section", UF_ERR_FORMAT, "'backbone.data'");
        /* small embedded section of garbage: the checkpoint loader refuses it */
        cJSON_ReplaceItemInObjectCaseSensitive(B, "file_size", cJSON_CreateNumber(64));
        cJSON_ReplaceItemInObjectCaseSensitive(D, "offset", cJSON_CreateNumber(3840));
        cJSON_ReplaceItemInObjectCaseSensitive(D, "length", cJSON_CreateNumber(64));
        {
            uint8_t *d2 = calloc(1, pt.n_data + 64);
            if (d2) {
                memcpy(d2, pt.data, pt.n_data);
                char *j = cJSON_Print(h);
                assemble(tpath("h.ufm"), j, strlen(j), 1, 0, UINT64_MAX, d2, pt.n_data + 64, 0);
                free(j);
                expect_load("garbage checkpoint", UF_ERR_FORMAT, "embedded backbone");
                free(d2);
            }
        }
        cJSON_Delete(h);
    }
    /* a bank whose rows are huge but consistent: sized against the file, no allocation */
    {
        cJSON *h = cJSON_Duplicate(pt.hdr, 1);
        cJSON_ReplaceItemInObjectCaseSensitive(h, "n_bank", cJSON_CreateNumber(2147483648.0));
        cJSON_ReplaceItemInObjectCaseSensitive(h, "n_bank_full", cJSON_CreateNumber(2147483648.0));
        cJSON_ReplaceItemInObjectCaseSensitive(h, "dim", cJSON_CreateNumber(65536));
        cJSON *B = cJSON_GetObjectItemCaseSensitive(h, "backbone");
        cJSON_ReplaceItemInObjectCaseSensitive(B, "dim", cJSON_CreateNumber(65536));
        cJSON *R = cJSON_GetObjectItemCaseSensitive(B, "random");
        cJSON_ReplaceItemInObjectCaseSensitive(R, "dim", cJSON_CreateNumber(65536));
        cJSON *S = cJSON_GetObjectItemCaseSensitive(h, "bank");
        cJSON_ReplaceItemInObjectCaseSensitive(S, "length",
                                               cJSON_CreateNumber(2147483648.0 * 65536 * 4));
        try_hdr(&pt, h, "2^31 x 65536 bank", UF_ERR_FORMAT, "truncated: bank needs");
        cJSON_Delete(h);
    }

    /* not JSON, not an object, trailing bytes, a NUL, deep nesting */
    {
        struct {
            const char *j;
            size_t n;
            const char *what;
        } bad[] = {
            {"{", 1, "open brace"},
            {"[1, 2]", 6, "array root"},
            {"{}", 2, "empty object"},
            {"{} x", 4, "trailing text"},
            {"{\"a\":\"b\0c\"}", 11, "NUL inside"},
            {"\"just a string\"", 15, "string root"},
            {"nul", 3, "bad literal"},
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            assemble(tpath("h.ufm"), bad[i].j, bad[i].n, 1, 0, UINT64_MAX, pt.data, pt.n_data, 0);
            expect_load(bad[i].what, UF_ERR_FORMAT, NULL);
        }
        size_t deep = 200000;
        char *j = malloc(2 * deep);
        if (j) {
            memset(j, '[', deep);
            memset(j + deep, ']', deep);
            assemble(tpath("h.ufm"), j, 2 * deep, 1, 0, UINT64_MAX, pt.data, pt.n_data, 0);
            expect_load("deep nesting", UF_ERR_FORMAT, NULL);
            free(j);
        }
    }

    /* the frame: header length beyond the file or zero, reserved field, padding, extra
     * bytes, a non-finite bank value -- all with valid checksums */
    {
        char *j = cJSON_Print(pt.hdr);
        size_t jl = j ? strlen(j) : 0;
        if (j) {
            assemble(tpath("h.ufm"), j, jl, 1, 0, (uint64_t)1 << 62, pt.data, pt.n_data, 0);
            expect_load("hlen 2^62", UF_ERR_FORMAT, "truncated: header");
            assemble(tpath("h.ufm"), j, jl, 1, 0, UINT64_MAX - 1, pt.data, pt.n_data, 0);
            expect_load("hlen 2^64-2", UF_ERR_FORMAT, "truncated: header");
            assemble(tpath("h.ufm"), j, jl, 1, 0, 0, pt.data, pt.n_data, 0);
            expect_load("hlen 0", UF_ERR_FORMAT, NULL);
            assemble(tpath("h.ufm"), j, jl, 1, 0, jl - 1, pt.data, pt.n_data, 0);
            expect_load("hlen short by one", UF_ERR_FORMAT, NULL);
            assemble(tpath("h.ufm"), j, jl, 1, 7, UINT64_MAX, pt.data, pt.n_data, 0);
            expect_load("reserved 7", UF_ERR_FORMAT, "reserved");
            if ((24 + jl) % 64)
                assemble(tpath("h.ufm"), j, jl, 1, 0, UINT64_MAX, pt.data, pt.n_data, ' ');
            expect_load("padding", UF_ERR_FORMAT, NULL);
            uint8_t *d2 = calloc(1, pt.n_data + 8);
            if (d2) {
                memcpy(d2, pt.data, pt.n_data);
                assemble(tpath("h.ufm"), j, jl, 1, 0, UINT64_MAX, d2, pt.n_data + 8, 0);
                expect_load("extra bytes", UF_ERR_FORMAT, "unexpected");
                const float bads[3] = {NAN, INFINITY, -INFINITY};
                for (int i = 0; i < 3; i++) {
                    memcpy(d2, pt.data, pt.n_data);
                    memcpy(d2 + 4 * 48 * 7 + 12, &bads[i], 4); /* row 7 (little-endian host) */
                    assemble(tpath("h.ufm"), j, jl, 1, 0, UINT64_MAX, d2, pt.n_data, 0);
                    expect_load("non-finite bank", UF_ERR_FORMAT, "row 7");
                }
                free(d2);
            }
            /* newer and zero versions, with valid checksums */
            assemble(tpath("h.ufm"), j, jl, 6, 0, UINT64_MAX, pt.data, pt.n_data, 0);
            expect_load("version 6", UF_ERR_UNSUPPORTED, "format version 6 is newer than this "
                                                         "build supports (5)");
            assemble(tpath("h.ufm"), j, jl, 0, 0, UINT64_MAX, pt.data, pt.n_data, 0);
            expect_load("version 0", UF_ERR_FORMAT, "version 0");
            free(j);
        }
    }
    unlink(tpath("h.ufm"));
    unlink(tpath("v.ufm"));
done:
    cJSON_Delete(pt.hdr);
    free(pt.data);
    free(b);
    uf_model_free(m);
    uf_backbone_free(bb);
}

/* ---- 5. atomic save ------------------------------------------------------------------- */

static void test_atomic_save(void)
{
    uf_vit_config cfg = small_cfg();
    uf_backbone *bb = NULL;
    REQUIRE_OK(uf_backbone_random(&cfg, &bb));
    uf_model *a = NULL, *big = NULL;
    uint8_t *before = NULL, *after = NULL;
    size_t nb = 0, na = 0;
    if (make_model(bb, 20, &a) != UF_OK || make_model(bb, 300, &big) != UF_OK) {
        CHECKF(0, "setup: %s", uf_errmsg());
        goto done;
    }
    /* a directory that does not exist */
    char p[300];
    snprintf(p, sizeof p, "%s/no/such/dir/m.ufm", tmpdir);
    uf_status s = uf_model_save(a, p, 0);
    CHECKF(s == UF_ERR_IO && strstr(uf_errmsg(), p), "%s: %s", uf_status_str(s), uf_errmsg());
    CHECK(access(tpath("no"), F_OK) != 0);
    /* a path that is a directory: the rename fails, the temporary file goes */
    CHECK(mkdir(tpath("adir"), 0755) == 0);
    s = uf_model_save(a, tpath("adir"), 0);
    CHECKF(s == UF_ERR_IO, "%s: %s", uf_status_str(s), uf_errmsg());
    CHECK(count_entries(".tmp.") == 0);
    rmdir(tpath("adir"));
    /* bad arguments */
    CHECK(uf_model_save(NULL, tpath("x.ufm"), 0) == UF_ERR_ARG);
    CHECK(uf_model_save(a, "", 0) == UF_ERR_ARG);
    CHECK(uf_model_save(a, NULL, 0) == UF_ERR_ARG);
    /* models that could not be loaded back are not written */
    {
        uf_model *tiny = NULL; /* 2 rows, knn 3 */
        if (make_model(bb, 2, &tiny) == UF_OK) {
            s = uf_model_save(tiny, tpath("tiny.ufm"), 0);
            CHECKF(s == UF_ERR_ARG && strstr(uf_errmsg(), "knn 3"), "%s", uf_errmsg());
            tiny->params.knn = 1;
            tiny->params.pre.interp = (uf_interp)9;
            CHECK(uf_model_save(tiny, tpath("tiny.ufm"), 0) == UF_ERR_ARG);
            tiny->params.pre.interp = UF_INTERP_LANCZOS;
            tiny->params.bpm_kernel = 4;
            CHECK(uf_model_save(tiny, tpath("tiny.ufm"), 0) == UF_ERR_ARG);
            CHECK(access(tpath("tiny.ufm"), F_OK) != 0);
            tiny->params.bpm_kernel = 3;
            CHECK(uf_model_save(tiny, tpath("tiny.ufm"), 0) == UF_OK);
            uf_model *l = NULL;
            CHECK(uf_model_load(tpath("tiny.ufm"), NULL, &l) == UF_OK);
            if (l) check_same_model(tiny, l);
            uf_model_free(l);
            unlink(tpath("tiny.ufm"));
        }
        uf_model_free(tiny);
    }

    /* replacing a model when the write fails half way leaves the old one intact */
    const char *target = tpath("keep.ufm");
    REQUIRE_OK(uf_model_save(a, target, 0));
    REQUIRE(read_all(target, &before, &nb));
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) { /* child: files are limited to 16 KB; the big model needs ~60 KB */
        struct rlimit rl = {16384, 16384};
        signal(SIGXFSZ, SIG_IGN);
        if (setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(3);
        uf_status cs = uf_model_save(big, target, 0);
        if (cs != UF_ERR_IO) _exit(1);
        if (!strstr(uf_errmsg(), target) || !strstr(uf_errmsg(), "write failed")) _exit(2);
        _exit(0);
    }
    REQUIRE(pid > 0);
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
    REQUIRE(read_all(target, &after, &na));
    CHECK(na == nb && memcmp(before, after, nb) == 0);
    CHECK(count_entries(".tmp.") == 0);
    /* and without the limit the replacement succeeds */
    CHECK(uf_model_save(big, target, 0) == UF_OK);
    uf_model *l = NULL;
    CHECK(uf_model_load(target, NULL, &l) == UF_OK);
    if (l) check_same_model(big, l);
    uf_model_free(l);
    CHECK(count_entries(".tmp.") == 0);
    /* the new file has the usual permissions, not mkstemp's 0600 */
    struct stat st;
    CHECK(stat(target, &st) == 0 && (st.st_mode & 0777) == 0644);
    unlink(target);
done:
    free(before);
    free(after);
    uf_model_free(a);
    uf_model_free(big);
    uf_backbone_free(bb);
}

/* ---- precision ------------------------------------------------------------------------ */

/* The score of one fixed random image with model m. */
static float score_of(const uf_model *m)
{
    float out = NAN;
    uf_image *img = NULL;
    uf_scorer *sc = NULL;
    uf_score o = {0};
    if (uf_image_new(80, 70, &img) == UF_OK && uf_scorer_new(m, &sc) == UF_OK) {
        uint64_t r = 9;
        for (size_t i = 0; i < (size_t)80 * 70 * 3; i++) img->rgb[i] = (uint8_t)rng_next(&r);
        const uf_image *imgs[1] = {img};
        if (uf_score_images(sc, imgs, 1, &o) == UF_OK) out = o.score;
    }
    uf_scorer_free(sc);
    uf_image_free(img);
    return out;
}

static void test_precision(void)
{
    uf_vit_config cfg = small_cfg();
    uf_backbone *bb = NULL;
    REQUIRE_OK(uf_backbone_random(&cfg, &bb));
    uf_model *m = NULL, *l = NULL;
    uint8_t *b = NULL;
    size_t n = 0;
    parts pt = {0};
    if (make_model(bb, 50, &m) != UF_OK) {
        CHECKF(0, "setup: %s", uf_errmsg());
        goto done;
    }
    const float s32 = score_of(m);
    CHECK(uf_model_set_precision(NULL, UF_PRECISION_BF16) == UF_ERR_ARG);
    REQUIRE_OK(uf_model_set_precision(m, UF_PRECISION_BF16));
    CHECK(uf_backbone_precision(bb) == UF_PRECISION_BF16); /* the fitted model's backbone */
    const float s16 = score_of(m);
    fprintf(stderr, "    score fp32 %.7g, bf16 %.7g\n", s32, s16);
    CHECK(isfinite(s32) && isfinite(s16) && s16 != s32 && fabsf(s16 - s32) <= 0.05f * fabsf(s32));
    const char *p = tpath("prec.ufm");
    uf_status s = uf_model_save(m, p, 0);
    if (s == UF_OK) s = uf_model_load(p, NULL, &l);
    CHECKF(s == UF_OK, "%s", uf_errmsg());
    if (s != UF_OK) goto done;
    CHECK(uf_backbone_precision(uf_model_backbone(l)) == UF_PRECISION_BF16);
    CHECKF(same_bits_f(score_of(l), s16), "loaded bf16 model scores %.7g, saved one %.7g",
           score_of(l), s16);
    CHECK(uf_model_set_precision(l, UF_PRECISION_FP32) == UF_OK);
    CHECK(same_bits_f(score_of(l), s32));
    uf_model_free(l);
    l = NULL;
    /* the header without "precision" (a file from before the key): FP32 */
    if (!read_all(p, &b, &n) || !split_file(b, n, &pt)) {
        CHECKF(0, "cannot split %s", p);
        goto done;
    }
    const cJSON *B = cJSON_GetObjectItemCaseSensitive(pt.hdr, "backbone");
    CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(B, "precision")) &&
          !strcmp(cJSON_GetObjectItemCaseSensitive(B, "precision")->valuestring, "bf16"));
    cJSON_DeleteItemFromObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(pt.hdr, "backbone"),
                                            "precision");
    char *j = cJSON_Print(pt.hdr);
    if (j) assemble(tpath("h.ufm"), j, strlen(j), 2, 0, UINT64_MAX, pt.data, pt.n_data, 0);
    free(j);
    s = uf_model_load(tpath("h.ufm"), NULL, &l);
    CHECKF(s == UF_OK, "%s", uf_errmsg());
    if (l) {
        CHECK(uf_backbone_precision(uf_model_backbone(l)) == UF_PRECISION_FP32);
        CHECK(same_bits_f(score_of(l), s32));
    }
    unlink(p);
    unlink(tpath("h.ufm"));
done:
    cJSON_Delete(pt.hdr);
    free(pt.data);
    free(b);
    uf_model_free(l);
    uf_model_free(m);
    uf_backbone_free(bb);
}

/* ---- 6. not a model, versions --------------------------------------------------------- */

static void test_magic_version(void)
{
    uf_model *m = NULL;
    uf_status s = uf_model_load(tpath("missing.ufm"), NULL, &m);
    CHECKF(s == UF_ERR_IO && strstr(uf_errmsg(), "missing.ufm"), "%s", uf_errmsg());
    CHECK(uf_model_load(NULL, NULL, &m) == UF_ERR_ARG);
    CHECK(uf_model_load(tpath("x"), NULL, NULL) == UF_ERR_ARG);

    /* a checkpoint is not a model */
    s = uf_model_load(GOLD "m1.safetensors", NULL, &m);
    CHECKF(s == UF_ERR_FORMAT && strstr(uf_errmsg(), "not a uniformaly model file"), "%s",
           uf_errmsg());
    /* empty, magic prefix only, short garbage */
    CHECK(write_all(tpath("e.ufm"), "", 0));
    s = uf_model_load(tpath("e.ufm"), NULL, &m);
    CHECKF(s == UF_ERR_FORMAT && strstr(uf_errmsg(), "empty"), "%s", uf_errmsg());
    CHECK(write_all(tpath("e.ufm"), "UFMOD", 5));
    s = uf_model_load(tpath("e.ufm"), NULL, &m);
    CHECKF(s == UF_ERR_FORMAT && strstr(uf_errmsg(), "truncated"), "%s", uf_errmsg());
    CHECK(write_all(tpath("e.ufm"), "GIF89a", 6));
    s = uf_model_load(tpath("e.ufm"), NULL, &m);
    CHECKF(s == UF_ERR_FORMAT && strstr(uf_errmsg(), "not a uniformaly model file"), "%s",
           uf_errmsg());
    /* a newer version with nothing else valid after it */
    uint8_t hdr[64] = "UFMODEL\0\x07\0\0\0";
    CHECK(write_all(tpath("e.ufm"), hdr, sizeof hdr));
    s = uf_model_load(tpath("e.ufm"), NULL, &m);
    CHECKF(s == UF_ERR_UNSUPPORTED &&
               strstr(uf_errmsg(), "format version 7 is newer than this build supports (5)"),
           "%s: %s", uf_status_str(s), uf_errmsg());
    CHECK(m == NULL);
    unlink(tpath("e.ufm"));
}

/* ---- 7. calibration: saved and loaded bit-exactly; version 1 files still load ---------- */

static void test_calibration(void)
{
    uf_vit_config cfg = small_cfg();
    uf_backbone *bb = NULL;
    REQUIRE_OK(uf_backbone_random(&cfg, &bb));
    uf_model *m = NULL, *l = NULL;
    uf_status s = make_model(bb, 50, &m);
    CHECKF(s == UF_OK, "%s", uf_errmsg());
    if (s != UF_OK) goto done;
    uf_calibration c = {0}, r;
    CHECK(uf_model_get_calibration(m, &r) == 0 && r.n_images == 0);
    const float img[5] = {3.5f, 1.25f, 2.0f, 9.75f, 4.0f}, pat[4] = {0.5f, 7.0f, 0.1f, 2.0f};
    REQUIRE_OK(uf_calibration_compute(img, 5, pat, 4, &c));
    CHECK(c.n_images == 5 && c.image_min == 1.25f && c.image_max == 9.75f);
    CHECK(c.image_p50 == 3.5f && c.patch_min == 0.1f && c.patch_max == 7.0f);
    CHECKF(fabsf(c.image_mean - 4.1f) < 1e-6f, "%g", c.image_mean);
    c.fpr_target = 0.2;
    c.fpr = 0.2;
    uf_model_set_calibration(m, &c);
    const char *p1 = tpath("cal.ufm");
    s = uf_model_save(m, p1, 0);
    CHECKF(s == UF_OK, "%s", uf_errmsg());
    s = s == UF_OK ? uf_model_load(p1, NULL, &l) : s;
    CHECKF(s == UF_OK, "%s", uf_errmsg());
    if (s == UF_OK) {
        CHECK(uf_model_get_calibration(l, &r) == 1);
        CHECK(memcmp(&r, &c, sizeof r) == 0);
    }
    uf_model_free(l);
    l = NULL;
    /* cleared again: saved as null, loads as none */
    uf_model_set_calibration(m, NULL);
    CHECK(uf_model_save(m, p1, 0) == UF_OK && uf_model_load(p1, NULL, &l) == UF_OK);
    CHECK(l && uf_model_get_calibration(l, &r) == 0);
    uf_model_free(l);
    l = NULL;
    /* a file written by the version-1 writer (before calibration existed) */
    uf_model_load_params v1p = uf_model_load_default_params();
    v1p.backbone_path = "tests/data/golden/m1.safetensors"; /* the recorded path is absolute */
    s = uf_model_load("tests/data/detector/model_v1.ufm", &v1p, &l);
    CHECKF(s == UF_OK, "%s", uf_errmsg());
    if (l) {
        uf_model_info li;
        uf_model_get_info(l, &li);
        CHECK(li.threshold == 5.0f && li.n_train == 4 && uf_model_get_calibration(l, &r) == 0);
    }
done:
    uf_model_free(l);
    uf_model_free(m);
    uf_backbone_free(bb);
}

/* The PCA mask (which needs BPM off) and the last block survive a save and load; a
 * version-3 file declares its version. */
static void test_anomalydino_params(void)
{
    uf_vit_config cfg = small_cfg();
    uf_backbone *bb = NULL;
    REQUIRE_OK(uf_backbone_random(&cfg, &bb));
    uf_detector_params p = test_params();
    uf_detector_preset_anomalydino(&p);
    p.pca_mask = 1;
    p.pca_threshold = 0.5f;
    uf_model *m = NULL, *l = NULL;
    float *bank = make_bank(40, cfg.dim, 3);
    uf_status s = uf__model_new(bb, &p, bank, 40, 40, 2, &m);
    CHECKF(s == UF_OK, "%s", uf_errmsg());
    if (s != UF_OK) goto done;
    uf_model_info mi;
    uf_model_get_info(m, &mi);
    CHECKF(mi.params.layer_first == 4 && mi.params.layer_last == 4, "last block %d-%d",
           mi.params.layer_first, mi.params.layer_last); /* UF_LAYER_LAST resolved */
    const char *p1 = tpath("adino.ufm");
    s = uf_model_save(m, p1, 0);
    s = s == UF_OK ? uf_model_load(p1, NULL, &l) : s;
    CHECKF(s == UF_OK, "%s", uf_errmsg());
    if (s != UF_OK) goto done;
    check_same_model(m, l);
    uf_model_info li;
    uf_model_get_info(l, &li);
    CHECK(li.params.pca_mask == 1 && li.params.bpm == 0 && li.params.cosine == 1);
    CHECK(li.params.rotations == 8 && li.params.topk == 0.01 && li.params.coreset == 1.0);
    uint8_t *b = NULL;
    size_t n = 0;
    CHECK(read_all(p1, &b, &n) && n > 12 && b[8] == 3 && b[9] == 0);
    free(b);
    uf_model_free(l);
    l = NULL;
    /* a version-1 file (older than these keys) loads with their defaults; its recorded
     * checkpoint path is the writer's, so the checkpoint is given */
    uf_model_load_params lp = uf_model_load_default_params();
    lp.backbone_path = "tests/data/golden/m1.safetensors";
    s = uf_model_load("tests/data/detector/model_v1.ufm", &lp, &l);
    CHECKF(s == UF_OK, "%s", uf_errmsg());
    if (l) {
        const uf_detector_params d = uf_detector_default_params();
        uf_model_get_info(l, &li);
        CHECK(li.params.cosine == 0 && li.params.pca_mask == 0 && li.params.rotations == 1);
        CHECK(same_bits_f(li.params.pca_threshold, d.pca_threshold));
    }
done:
    uf_model_free(l);
    uf_model_free(m);
    uf_backbone_free(bb);
}

/* uf_threshold_at_fpr against a brute-force count, and its edges. */
static void test_threshold_at_fpr(void)
{
    uint64_t r = 11;
    for (int trial = 0; trial < 200; trial++) {
        size_t n = 1 + (size_t)(rng_next(&r) % 40);
        float v[40];
        for (size_t i = 0; i < n; i++) v[i] = (float)(rng_next(&r) % 10); /* many ties */
        double fpr = (double)(rng_next(&r) % 100) / 100.0, got;
        double t = uf_threshold_at_fpr(v, n, fpr, &got);
        size_t above = 0, above_lower = 0;
        for (size_t i = 0; i < n; i++) above += v[i] > t;
        CHECK((double)above / (double)n == got);
        CHECKF(got <= fpr + 1e-12, "n %zu fpr %g got %g", n, fpr, got);
        /* the smallest such value among the scores: the next lower score breaks the rate */
        float lower = -INFINITY;
        for (size_t i = 0; i < n; i++) if (v[i] < t && v[i] > lower) lower = v[i];
        if (isfinite(lower)) {
            for (size_t i = 0; i < n; i++) above_lower += v[i] > lower;
            CHECKF((double)above_lower / (double)n > fpr, "n %zu fpr %g t %g", n, fpr, t);
        }
    }
    const float v[4] = {1, 2, 3, 4};
    double got;
    CHECK(uf_threshold_at_fpr(v, 4, 0.0, &got) == 4 && got == 0);
    CHECK(uf_threshold_at_fpr(v, 4, 0.25, &got) == 3 && got == 0.25);
    CHECK(uf_threshold_at_fpr(v, 4, 0.24, &got) == 4);
    CHECK(isnan(uf_threshold_at_fpr(v, 0, 0.1, &got)) && isnan(got));
    CHECK(isnan(uf_threshold_at_fpr(v, 4, 1.0, NULL)));
    const float bad[2] = {1, NAN};
    CHECK(isnan(uf_threshold_at_fpr(bad, 2, 0.1, NULL)));
    uf_calibration c;
    CHECK(uf_calibration_compute(bad, 2, v, 4, &c) == UF_ERR_ARG);
    CHECK(uf_calibration_compute(v, 0, v, 4, &c) == UF_ERR_ARG);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/uf_modelfile_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_roundtrip_random);
    RUN(test_embedded_file_backbone);
    RUN(test_truncation);
    RUN(test_corruption);
    RUN(test_hostile_headers);
    RUN(test_atomic_save);
    RUN(test_precision);
    RUN(test_magic_version);
    RUN(test_calibration);
    RUN(test_anomalydino_params);
    RUN(test_threshold_at_fpr);
    rm_tmpdir();
    return TEST_DONE();
}
