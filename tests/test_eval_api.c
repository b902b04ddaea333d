/*
 * test_eval_api.c - the evaluation API (uf_eval_*, uf_draw_shots) called directly, on the
 * small fixture datasets of tests/data/dataset with the tiny golden ViT of
 * tests/data/detector (dim 48, 4 heads, patch 8), so the protocols are checked without the
 * program: ground-truth mapping (both levels, crop and resize geometry), the few-shot draw
 * against an independent implementation of its documented algorithm, the task defaults,
 * one-class / multi-class / low-shot runs (figures recomputed from the returned scores,
 * callbacks in order, cancellation keeping finished rows), and both clustering protocols.
 * Uses the public header only.
 */
#include "harness.h"
#include "uniformaly.h"

#define DS "tests/data/dataset/"
#define VIT "tests/data/detector/vit.safetensors"

/* ---- ground truth in network space --------------------------------------------------- */

static void test_mask_identity_and_crop(void)
{
    /* no resize: the mask is only cropped (centre, 8 -> 4) */
    uint8_t m[8 * 8], out[4 * 4];
    for (int i = 0; i < 64; i++) m[i] = (uint8_t)((i / 8 + i % 8) % 3 == 0);
    uf_preprocess p = uf_preprocess_default();
    p.resize = 0;
    p.crop = 4;
    REQUIRE_OK(uf_eval_mask_to_network(m, 8, 8, &p, 0.5, out));
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) CHECK(out[y * 4 + x] == m[(y + 2) * 8 + x + 2]);
    /* exact level: an unresized mask stays 0/255, so both levels agree */
    uint8_t ex[16];
    REQUIRE_OK(uf_eval_mask_to_network(m, 8, 8, &p, UF_GT_THRESHOLD_EXACT, ex));
    CHECK(memcmp(ex, out, 16) == 0);
    /* crop larger than the image: zero padding around */
    uint8_t big[12 * 12];
    p.crop = 12;
    REQUIRE_OK(uf_eval_mask_to_network(m, 8, 8, &p, 0.5, big));
    int n = 0, nm = 0;
    for (int i = 0; i < 144; i++) n += big[i];
    for (int i = 0; i < 64; i++) nm += m[i];
    CHECK(n == nm && big[0] == 0 && big[2 * 12 + 2] == m[0]);
}

static void test_mask_levels(void)
{
    /* a 4x4 square in a 16x16 mask, enlarged to 32x32 (bilinear): its border becomes grey.
     * Exact keeps the pixels at 255 only, a lower level more; levels nest. */
    uint8_t m[16 * 16] = {0};
    for (int y = 6; y < 10; y++)
        for (int x = 6; x < 10; x++) m[y * 16 + x] = 1;
    uf_preprocess p = uf_preprocess_default();
    p.resize = 32;
    p.crop = 32;
    uint8_t lo[32 * 32], mid[32 * 32], ex[32 * 32];
    REQUIRE_OK(uf_eval_mask_to_network(m, 16, 16, &p, 0.1, lo));
    REQUIRE_OK(uf_eval_mask_to_network(m, 16, 16, &p, 0.5, mid));
    REQUIRE_OK(uf_eval_mask_to_network(m, 16, 16, &p, 1.0, ex));
    int nlo = 0, nmid = 0, nex = 0, nested = 1;
    for (int i = 0; i < 32 * 32; i++) {
        nlo += lo[i];
        nmid += mid[i];
        nex += ex[i];
        nested &= ex[i] <= mid[i] && mid[i] <= lo[i];
    }
    CHECKF(nested && nex < nmid && nmid < nlo, "exact %d, 0.5 %d, 0.1 %d", nex, nmid, nlo);
    CHECKF(nmid == 64, "a 4x4 square doubled: 8x8 pixels at >= 0.5, got %d", nmid);
    CHECK(ex[16 * 32 + 16] == 1 && lo[0] == 0);
    /* the level is compared with the resized value: same figures from the 0/255 image */
    uf_image *im = NULL, *rs = NULL;
    REQUIRE_OK(uf_image_new(16, 16, &im));
    for (int i = 0; i < 256; i++) memset(im->rgb + 3 * i, m[i] ? 255 : 0, 3);
    REQUIRE_OK(uf_image_resize(im, 32, 32, UF_INTERP_BILINEAR, &rs));
    int agree = 1;
    for (int i = 0; i < 32 * 32; i++)
        agree &= ex[i] == (rs->rgb[3 * i] == 255) && mid[i] == (rs->rgb[3 * i] >= 128);
    CHECK(agree);
    uf_image_free(im);
    uf_image_free(rs);
    /* bad arguments */
    CHECK(uf_eval_mask_to_network(m, 16, 16, &p, 0, mid) == UF_ERR_ARG);
    CHECK(uf_eval_mask_to_network(m, 16, 16, &p, 1.5, mid) == UF_ERR_ARG);
    CHECK(uf_eval_mask_to_network(NULL, 16, 16, &p, 0.5, mid) == UF_ERR_ARG);
    CHECK(uf_eval_mask_to_network(m, 0, 16, &p, 0.5, mid) == UF_ERR_ARG);
}

/* ---- the few-shot draw ---------------------------------------------------------------- */

/* The documented draw, written independently: swap position j with a uniform pick among
 * j..n-1 (splitmix64 from seed ^ "shots", modulo), keep the first k, sort. */
static void reference_draw(size_t n, size_t k, uint64_t seed, size_t *out)
{
    size_t *a = malloc(n * sizeof *a);
    for (size_t i = 0; i < n; i++) a[i] = i;
    th_sm r = th_sm_new(seed ^ 0x73686f7473ull, 0);
    for (size_t j = 0; j < k; j++) {
        size_t pick = j + (size_t)(th_sm_next(&r) % (uint64_t)(n - j));
        size_t keep = a[pick];
        a[pick] = a[j];
        a[j] = keep;
    }
    for (size_t i = 1; i < k; i++) /* insertion sort of the first k */
        for (size_t j = i; j > 0 && a[j - 1] > a[j]; j--) {
            size_t t = a[j];
            a[j] = a[j - 1];
            a[j - 1] = t;
        }
    memcpy(out, a, k * sizeof *out);
    free(a);
}

static void test_draw_shots(void)
{
    const size_t cases[][2] = {{1, 1}, {10, 3}, {209, 5}, {761, 50}, {1000, 1000}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        for (uint64_t seed = 0; seed < 5; seed++) {
            size_t n = cases[c][0], k = cases[c][1];
            size_t *got = malloc(k * sizeof *got), *want = malloc(k * sizeof *want);
            REQUIRE_OK(uf_draw_shots(n, k, seed, got));
            reference_draw(n, k, seed, want);
            CHECKF(memcmp(got, want, k * sizeof *got) == 0, "n %zu k %zu seed %llu", n, k,
                   (unsigned long long)seed);
            for (size_t i = 1; i < k; i++) CHECK(got[i - 1] < got[i] && got[i] < n);
            free(got);
            free(want);
        }
    }
    size_t o[2];
    CHECK(uf_draw_shots(3, 0, 0, o) == UF_ERR_ARG);
    CHECK(uf_draw_shots(1, 2, 0, o) == UF_ERR_ARG);
}

/* ---- task defaults -------------------------------------------------------------------- */

static void test_resolve_defaults(void)
{
    uf_dataset *mv = NULL, *mn = NULL, *imf = NULL;
    REQUIRE_OK(uf_dataset_open(UF_DATASET_MVTEC, DS "mvtec", &mv));
    REQUIRE_OK(uf_dataset_open(UF_DATASET_MNIST, DS "mnist", &mn));
    REQUIRE_OK(uf_dataset_open(UF_DATASET_IMAGEFOLDER, DS "imagefolder", &imf));
    int c0[2] = {0, 1};
    uf_eval_params p = uf_eval_default_params();
    CHECK(p.cluster_protocol == UF_CLUSTER_OFFICIAL && p.gt_threshold == 0.5 &&
          p.cluster_restarts == 10 && p.max_fpr == 0.3);
    uf_detector_params d;
    const char *cs = NULL, *ps = NULL;
    REQUIRE_OK(uf_eval_resolve(mv, c0, 2, &p, &d, &cs, &ps));
    CHECK(d.coreset == 0.1 && strstr(cs, "run_defect.sh") && d.pre.resize == 256 && d.pre.crop == 224);
    p.cluster = -1;
    REQUIRE_OK(uf_eval_resolve(mv, c0, 1, &p, &d, &cs, NULL));
    CHECK(d.coreset == 0.1 && strstr(cs, "run_clustering.sh"));
    p.multi_class = 1;
    REQUIRE_OK(uf_eval_resolve(mv, c0, 2, &p, &d, &cs, NULL));
    CHECK(d.coreset == 0.05 && strstr(cs, "multi"));
    p.keep = UF_EVAL_KEEP_CORESET;
    p.detector.coreset = 0.25;
    REQUIRE_OK(uf_eval_resolve(mv, c0, 2, &p, &d, &cs, NULL));
    CHECK(d.coreset == 0.25 && strstr(cs, "caller"));
    /* semantic, small images: 0.05 and the 112 / pad 224 / Lanczos protocol, except the
     * fields kept */
    p = uf_eval_default_params();
    REQUIRE_OK(uf_eval_resolve(mn, c0, 1, &p, &d, &cs, &ps));
    CHECK(d.coreset == 0.05 && strstr(cs, "run_cifar10.sh"));
    CHECK(d.pre.resize == 112 && d.pre.crop == 0 && d.pre.pad_to == 224 &&
          d.pre.interp == UF_INTERP_LANCZOS && strstr(ps, "112"));
    p.keep = UF_EVAL_KEEP_RESIZE;
    p.detector.pre.resize = 100;
    REQUIRE_OK(uf_eval_resolve(mn, c0, 1, &p, &d, NULL, NULL));
    CHECK(d.pre.resize == 100 && d.pre.pad_to == 224);
    /* class folders of a few images: the semantic default, not the > 10,000 one */
    p = uf_eval_default_params();
    REQUIRE_OK(uf_eval_resolve(imf, c0, 2, &p, &d, &cs, &ps));
    CHECK(d.coreset == 0.05 && d.pre.resize == 256 && strstr(ps, "caller"));
    /* refused settings */
    p.shots = 2;
    p.max_train = 3;
    CHECK(uf_eval_resolve(mv, c0, 1, &p, &d, NULL, NULL) == UF_ERR_ARG);
    p = uf_eval_default_params();
    p.repeats = 3;
    CHECK(uf_eval_resolve(mv, c0, 1, &p, &d, NULL, NULL) == UF_ERR_ARG);
    p = uf_eval_default_params();
    p.gt_threshold = 0;
    CHECK(uf_eval_resolve(mv, c0, 1, &p, &d, NULL, NULL) == UF_ERR_ARG);
    int bad = 7;
    p = uf_eval_default_params();
    CHECK(uf_eval_resolve(mv, &bad, 1, &p, &d, NULL, NULL) == UF_ERR_ARG);
    uf_dataset_free(mv);
    uf_dataset_free(mn);
    uf_dataset_free(imf);
}

/* ---- runs ----------------------------------------------------------------------------- */

static uf_backbone *tiny_vit(void)
{
    uf_backbone_params bp = uf_backbone_default_params();
    bp.heads = 4;
    uf_backbone *bb = NULL;
    if (uf_backbone_load(VIT, &bp, &bb) != UF_OK) fprintf(stderr, "    %s: %s\n", VIT, uf_errmsg());
    return bb;
}

/* The tiny ViT and a fixture dataset; false (after a failed check) when either fails. */
static int open_fixture(uf_dataset_kind kind, const char *root, uf_backbone **bb, uf_dataset **ds)
{
    *ds = NULL;
    *bb = tiny_vit();
    uf_status s = *bb ? uf_dataset_open(kind, root, ds) : UF_ERR_IO;
    CHECKF(s == UF_OK, "%s: %s", root, uf_errmsg());
    return s == UF_OK;
}

static void close_fixture(uf_backbone *bb, uf_dataset *ds)
{
    uf_dataset_free(ds);
    uf_backbone_free(bb);
}

static uf_eval_params tiny_params(void)
{
    uf_eval_params p = uf_eval_default_params();
    p.detector.pre.resize = 56;
    p.detector.pre.crop = 48;
    p.keep = UF_EVAL_KEEP_RESIZE | UF_EVAL_KEEP_CROP;
    return p;
}

/* What the callbacks saw. */
typedef struct seen {
    int updates, first_null, rows_done, maps_calls, progress_calls;
    int cancel_after_rows; /* cancel in on_update once this many rows finished (0: never) */
    size_t maps_n;
    int maps_S;
} seen;

static int cb_update(void *user, const uf_eval_result *r, const uf_eval_row *row)
{
    seen *s = user;
    if (s->updates++ == 0) s->first_null = row == NULL;
    if (row) {
        s->rows_done++;
        CHECK(row->n_done == r->repeats);
    }
    return s->cancel_after_rows && s->rows_done >= s->cancel_after_rows;
}

static int cb_maps(void *user, const uf_eval_result *r, const uf_eval_row *row, const uf_model *m,
                   const uf_dataset_item *items, size_t n, const float *maps)
{
    seen *s = user;
    s->maps_calls++;
    s->maps_n += n;
    s->maps_S = r->S;
    CHECK(m && items && maps && n == row->n_scored);
    return 0;
}

static int cb_progress(void *user, const char *stage, size_t done, size_t total)
{
    seen *s = user;
    s->progress_calls++;
    CHECK(stage && strchr(stage, ':') && done <= total);
    return 0;
}

/* The image figures of a row's repeat recomputed from its scores and labels. */
static void check_image_figures(const uf_eval_row *row, int rep)
{
    const uf_eval_figures *f = &row->repeats[rep].fig;
    const float *s = row->repeats[rep].scores;
    REQUIRE(s != NULL);
    double auc = uf_auroc(s, row->labels, row->n_scored);
    CHECKF(auc == f->image_auroc || (isnan(auc) && isnan(f->image_auroc)), "%s: AUROC %g vs %g",
           row->name, auc, f->image_auroc);
    double t;
    double f1 = uf_f1_max_threshold(s, row->labels, row->n_scored, &t);
    CHECK(f1 == f->f1_max && t == f->f1_threshold);
    size_t tp = 0, fp = 0, pos = 0;
    for (size_t i = 0; i < row->n_scored; i++) {
        pos += row->labels[i];
        tp += s[i] >= t && row->labels[i];
        fp += s[i] >= t && !row->labels[i];
    }
    CHECK(fabs(2.0 * (double)tp / (double)(tp + fp + pos) - f1) < 1e-12);
}

static void test_run_one_class(void)
{
    uf_backbone *bb;
    uf_dataset *ds;
    if (!open_fixture(UF_DATASET_MVTEC, DS "mvtec", &bb, &ds)) return close_fixture(bb, ds);
    uf_eval_params p = tiny_params();
    seen sn = {0};
    p.cluster = -1;
    p.on_update = cb_update;
    p.on_maps = cb_maps;
    p.progress = cb_progress;
    p.user = &sn;
    int cats[2] = {0, 1};
    uf_eval_result *r = NULL;
    uf_status st = uf_eval_run(ds, bb, cats, 2, &p, &r);
    CHECKF(st == UF_OK, "%s", uf_errmsg());
    REQUIRE(r != NULL && st == UF_OK);
    CHECK(r->n_rows == 2 && r->overall == NULL && r->repeats == 1 && r->n_finished == 2);
    CHECK(r->params.coreset == 0.1 && r->S == 48 && r->D == 48 && strlen(r->backbone_sha256) == 64);
    CHECK(sn.first_null && sn.updates == 3 && sn.rows_done == 2 && sn.progress_calls > 0);
    /* maps: cat_a has masks for every defect; cat_b does not (no maps without want_maps) */
    CHECK(sn.maps_calls == 1 && sn.maps_S == 48);
    const uf_eval_row *a = &r->rows[0], *b = &r->rows[1];
    CHECK(!strcmp(a->name, "cat_a") && a->pixel && !b->pixel);
    CHECK(a->n_scored == a->n_test && a->n_test == 5 && a->n_test_anomalous == 3);
    check_image_figures(a, 0);
    check_image_figures(b, 0);
    CHECK(a->mean.pixel_auroc >= 0 && a->mean.pixel_auroc <= 1 && isnan(b->mean.pixel_auroc));
    CHECK(isfinite(a->mean.aupro) && isfinite(a->mean.pixel_f1_threshold));
    /* official clustering: every test image, K = types including good */
    CHECK(a->clustering && a->cluster_n == 5 && a->cluster_k == 3);
    for (int v = 0; v < UF_EVAL_N_FEATURES; v++)
        CHECK(a->mean.cluster[v].nmi >= 0 && a->mean.cluster[v].nmi <= 1 + 1e-12);
    CHECK(a->mean.n_train > 0 && a->mean.bank_size <= a->mean.bank_size_full);
    CHECK(a->mean.extract_seconds > 0 && a->std.image_auroc == 0);
    /* the mean over rows */
    CHECK(fabs(r->mean.image_auroc - (a->mean.image_auroc + b->mean.image_auroc) / 2) < 1e-12);
    uf_eval_result_free(r);

    /* the anomalous-only protocol: K = defect types */
    p.cluster_protocol = UF_CLUSTER_ANOMALOUS;
    p.on_update = NULL;
    p.on_maps = NULL;
    p.progress = NULL;
    REQUIRE_OK(uf_eval_run(ds, bb, cats, 1, &p, &r));
    CHECK(r->rows[0].cluster_n == 3 && r->rows[0].cluster_k == 2);
    uf_eval_result_free(r);
    close_fixture(bb, ds);
}

static void test_run_cancel_and_failure(void)
{
    uf_backbone *bb;
    uf_dataset *ds;
    if (!open_fixture(UF_DATASET_MVTEC, DS "mvtec", &bb, &ds)) return close_fixture(bb, ds);
    uf_eval_params p = tiny_params();
    seen sn = {0};
    sn.cancel_after_rows = 1;
    p.on_update = cb_update;
    p.user = &sn;
    int cats[2] = {0, 1};
    uf_eval_result *r = NULL;
    CHECK(uf_eval_run(ds, bb, cats, 2, &p, &r) == UF_ERR_ARG && strstr(uf_errmsg(), "cancelled"));
    REQUIRE(r != NULL);
    CHECK(r->n_finished == 1 && r->rows[0].n_done == 1 && r->rows[1].n_done == 0);
    uf_eval_result_free(r);
    /* a category selected twice, layers beyond the backbone */
    int twice[2] = {0, 0};
    p = tiny_params();
    CHECK(uf_eval_run(ds, bb, twice, 2, &p, &r) == UF_ERR_ARG && r == NULL);
    p.detector.layer_last = 40;
    CHECK(uf_eval_run(ds, bb, cats, 1, &p, &r) == UF_ERR_ARG);
    uf_eval_result_free(r);
    uf_eval_result_free(NULL);
    close_fixture(bb, ds);
}

static void test_run_shots_and_multi(void)
{
    uf_backbone *bb;
    uf_dataset *ds;
    if (!open_fixture(UF_DATASET_MVTEC, DS "mvtec", &bb, &ds)) return close_fixture(bb, ds);
    int cats[2] = {0, 1};
    uf_eval_params p = tiny_params();
    p.shots = 1;
    p.repeats = 3;
    uf_eval_result *r = NULL;
    REQUIRE_OK(uf_eval_run(ds, bb, cats, 1, &p, &r));
    const uf_eval_row *a = &r->rows[0];
    CHECK(r->repeats == 3 && a->n_done == 3);
    double m = 0;
    for (int k = 0; k < 3; k++) {
        CHECK(a->repeats[k].seed == (uint64_t)k && a->repeats[k].fig.n_train == 1);
        check_image_figures(a, k);
        m += a->repeats[k].fig.image_auroc;
    }
    CHECK(fabs(a->mean.image_auroc - m / 3) < 1e-12 && a->std.image_auroc >= 0);
    /* later repeats reuse the test features */
    CHECK(a->repeats[0].fig.extract_seconds > 0 && a->repeats[1].fig.extract_seconds == 0);
    uf_eval_result_free(r);

    /* multi-class: one bank for both categories, the union as overall */
    p = tiny_params();
    p.multi_class = 1;
    REQUIRE_OK(uf_eval_run(ds, bb, cats, 2, &p, &r));
    REQUIRE(r->overall != NULL);
    const uf_eval_row *o = r->overall;
    CHECK(r->params.coreset == 0.05 && o->n_done == 1 && o->n_scored == 0);
    CHECK(o->n_test == r->rows[0].n_test + r->rows[1].n_test);
    CHECK(r->rows[0].mean.bank_size == o->mean.bank_size && isfinite(o->mean.image_auroc));
    uf_eval_result_free(r);
    close_fixture(bb, ds);
}

static void test_run_semantic(void)
{
    uf_backbone *bb;
    uf_dataset *ds;
    if (!open_fixture(UF_DATASET_MNIST, DS "mnist", &bb, &ds)) return close_fixture(bb, ds);
    uf_eval_params p = uf_eval_default_params();
    int cats[2] = {0, 3};
    uf_eval_result *r = NULL;
    REQUIRE_OK(uf_eval_run(ds, bb, cats, 2, &p, &r));
    CHECK(r->params.pre.pad_to == 224 && r->S == 224 && r->params.coreset == 0.05);
    for (int i = 0; i < 2; i++) check_image_figures(&r->rows[i], 0);
    /* one test sequence: the second class reuses the features */
    CHECK(r->rows[1].repeats[0].fig.extract_seconds == 0 && r->rows[0].n_scored == r->rows[1].n_scored);
    for (size_t i = 0; i < r->rows[0].n_scored; i++)
        CHECK(r->rows[0].items[i].image_id == r->rows[1].items[i].image_id);
    uf_eval_result_free(r);
    /* multi-class with clustering: the overall row scores and clusters every test image */
    p.multi_class = 1;
    p.cluster = -1;
    REQUIRE_OK(uf_eval_run(ds, bb, cats, 2, &p, &r));
    const uf_eval_row *o = r->overall;
    CHECK(o->n_scored == o->n_test && o->cluster_n == o->n_test && r->rows[0].n_scored == 0);
    check_image_figures(o, 0);
    uf_eval_result_free(r);
    /* every class selected: refused */
    int all[10];
    for (int i = 0; i < 10; i++) all[i] = i;
    int nc = uf_dataset_n_categories(ds);
    REQUIRE(nc == 10);
    CHECK(uf_eval_run(ds, bb, all, nc, &p, &r) == UF_ERR_ARG);
    uf_eval_result_free(r);
    close_fixture(bb, ds);
}

int main(void)
{
    uf_set_threads(2);
    RUN(test_mask_identity_and_crop);
    RUN(test_mask_levels);
    RUN(test_draw_shots);
    RUN(test_resolve_defaults);
    RUN(test_run_one_class);
    RUN(test_run_cancel_and_failure);
    RUN(test_run_shots_and_multi);
    RUN(test_run_semantic);
    return TEST_DONE();
}
