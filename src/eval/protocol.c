/*
 * protocol.c - uf_eval_run: the paper's evaluation protocols over an opened dataset
 * (one-class, multi-class, low-shot, anomaly clustering), in the library so every caller -
 * `uniformaly eval`, the tests, bindings - measures the same way; the program only parses
 * options and writes files.
 *
 * Work is shared, not repeated: each test image's patch features are computed once
 * (uf_scorer_extract) and scored by every model that needs them (uf_score_features). The
 * models of one run share the backbone and the feature settings, so the scorer of the first
 * model made (kept for the whole run: the "extractor") serves every extraction. Semantic
 * datasets give every class the same test sequence, so its features are extracted once per
 * run; repeats of --shots reuse the category's features across the fits.
 *
 * Pixel metrics are computed in network-input space, the masks mapped by
 * uf_eval_mask_to_network. The figures themselves are computed in figures.c.
 */
#include "eval/protocol.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------ */
/* Callbacks and messages                                                               */
/* ------------------------------------------------------------------------------------ */

static uf_status cancelled(void) { return uf__err(UF_ERR_ARG, "cancelled"); }

static int progress(const uf__evalrun *x, const char *label, const char *stage, size_t done,
                    size_t total)
{
    if (!x->p->progress) return 0;
    char l[320];
    snprintf(l, sizeof l, "%s: %s", label, stage);
    return x->p->progress(x->p->user, l, done, total);
}

/* The coreset's progress, under the row's label. */
typedef struct fitprog {
    const uf__evalrun *x;
    const char *label;
} fitprog;

static int on_fit_progress(void *user, const char *stage, size_t done, size_t total)
{
    const fitprog *fp = user;
    return progress(fp->x, fp->label, stage, done, total);
}

/* The first failure among the images of a parallel batch (uf_errmsg is per thread). */
typedef struct batcherr {
    uf_status s;
    char msg[768];
} batcherr;

/* Record the calling thread's failure s about item it (its file, or `path` when given,
 * named first) unless an earlier one was recorded. Called from parallel loops. */
static void batch_failed(batcherr *e, uf_status s, const uf_dataset_item *it, const char *path)
{
    const char *who = path ? path : it->path ? it->path : it->name ? it->name : "?";
    const char *m = uf_errmsg();
    char line[768];
    if (strncmp(m, who, strlen(who)) == 0) snprintf(line, sizeof line, "%s", m);
    else snprintf(line, sizeof line, "%s: %s", who, m);
#pragma omp critical /* unnamed: a named one would be an exported symbol */
    if (e->s == UF_OK) {
        e->s = s;
        memcpy(e->msg, line, sizeof line);
    }
}

/* After a parallel batch: UF_OK, or the first failure under the label with the batch's
 * images freed. */
static uf_status batch_status(const batcherr *e, uf_image **imgs, int nb, const char *label)
{
    if (e->s == UF_OK) return UF_OK;
    for (int j = 0; j < nb; j++) {
        uf_image_free(imgs[j]);
        imgs[j] = NULL;
    }
    return uf__err(e->s, "%s: %s", label, e->msg);
}

/* ------------------------------------------------------------------------------------ */
/* Fitting, extraction, scoring                                                         */
/* ------------------------------------------------------------------------------------ */

/* The run's thread count: uf_eval_params.threads, or the library default. */
static int eval_threads(const uf__evalrun *x) { return x->p->threads > 0 ? x->p->threads : uf_get_threads(); }

/* Decode items[0..nb) into imgs in parallel. On failure every image is freed and the
 * error names the first failing file. */
static uf_status load_batch(const uf__evalrun *x, const uf_dataset_item *const *items, int nb,
                            uf_image **imgs, const char *label)
{
    batcherr e = {UF_OK, ""};
#pragma omp parallel for schedule(dynamic, 1) num_threads(eval_threads(x))
    for (int j = 0; j < nb; j++) {
        imgs[j] = NULL;
        uf_status s = uf_dataset_load_image(x->ds, items[j], &imgs[j]);
        if (s != UF_OK) batch_failed(&e, s, items[j], NULL);
    }
    return batch_status(&e, imgs, nb, label);
}

/* Fit a model on items[n]; fills the fit figures of f. */
static uf_status fit_model(uf__evalrun *x, const uf_detector_params *dp,
                           const uf_dataset_item *const *items, size_t n, const char *label,
                           uf_model **out, uf_eval_figures *f)
{
    int batch = x->p->batch;
    double t0 = uf__now();
    uf_status s;
    uf_fitter *fit = NULL;
    uf_image **imgs = uf__alloc3((size_t)batch, sizeof *imgs, 1, 1); /* [batch] */
    *out = NULL;
    if (!imgs) { s = uf__err(UF_ERR_NOMEM, "out of memory"); goto done; }
    if (n == 0) { s = uf__err(UF_ERR_ARG, "%s: no training images", label); goto done; }
    if ((s = uf_fitter_new(x->bb, dp, &fit)) != UF_OK) goto done;
    uf_fitter_set_threads(fit, eval_threads(x));
    for (size_t b0 = 0; b0 < n; b0 += (size_t)batch) {
        int nb = (int)(n - b0 < (size_t)batch ? n - b0 : (size_t)batch);
        if ((s = load_batch(x, items + b0, nb, imgs, label)) != UF_OK) goto done;
        s = uf_fitter_add(fit, (const uf_image *const *)imgs, nb);
        for (int j = 0; j < nb; j++) {
            uf_image_free(imgs[j]);
            imgs[j] = NULL;
        }
        if (s != UF_OK) {
            uf__err(s, "%s: training images %zu..%zu (%s ...): %s", label, b0,
                    b0 + (size_t)nb - 1, items[b0]->name, uf_errmsg());
            goto done;
        }
        if (progress(x, label, "fit", b0 + (size_t)nb, n)) { s = cancelled(); goto done; }
    }
    f->bank_size_full = (double)uf_fitter_bank_size(fit);
    fitprog fp = {x, label};
    if ((s = uf_fitter_finish(fit, x->p->progress ? on_fit_progress : NULL, &fp, out)) != UF_OK) {
        uf__err_prefix(s, label);
        goto done;
    }
    uf_model_info mi;
    uf_model_get_info(*out, &mi);
    f->bank_size = (double)mi.bank_size;
    f->n_train = (double)mi.n_train;
done:
    f->fit_seconds = uf__now() - t0;
    x->r->fit_seconds += f->fit_seconds;
    uf_fitter_free(fit);
    free(imgs);
    return s;
}

/* Hand a fitted model to on_model; UF_OK, or the cancellation. */
static uf_status model_fitted(uf__evalrun *x, const uf_eval_row *row, int rep, const uf_model *m)
{
    const uf_eval_params *p = x->p;
    if (p->on_model && p->on_model(p->user, x->r, row, rep, m)) return cancelled();
    return UF_OK;
}

/* Make model m the extractor if there is none yet (its scorer computes every test set's
 * features: they depend only on the backbone and the feature settings, shared by all the
 * models of the run). */
static uf_status ensure_extractor(uf__evalrun *x, uf_model *m)
{
    if (x->xmodel) return UF_OK;
    uf_status s = uf_scorer_new(m, &x->xsc);
    if (s) return s;
    uf_scorer_set_threads(x->xsc, eval_threads(x));
    x->xmodel = m;
    int gh, gw;
    uf_model_output_size(m, &gh, &gw, &x->S, &x->D);
    x->Np = (size_t)gh * (size_t)gw;
    x->rows = (size_t)uf_model_patch_rows(m);
    uf_eval_result *r = x->r;
    r->grid_h = gh;
    r->grid_w = gw;
    r->S = x->S;
    r->D = x->D;
    uf_model_info mi;
    uf_model_get_info(m, &mi);
    snprintf(r->backbone_path, sizeof r->backbone_path, "%s", mi.backbone_path);
    snprintf(r->backbone_sha256, sizeof r->backbone_sha256, "%s", mi.backbone_sha256);
    return UF_OK;
}

static void featset_free(uf__featset *fs)
{
    free(fs->feats);
    free(fs->smooth);
    free(fs->mask);
    free(fs->gt);
    free(fs->win);
    memset(fs, 0, sizeof *fs);
}

/* Decode the batch items[0..nb) with, when gt is not NULL, their masks mapped into network
 * space (gt[nb][S][S]). */
static uf_status load_test_batch(const uf__evalrun *x, const uf_dataset_item *items, int nb,
                                 uf_image **imgs, uint8_t *gt, int *win, const char *label)
{
    const uf_dataset_item *ptr[256];
    for (int j = 0; j < nb; j++) ptr[j] = &items[j];
    uf_status s = load_batch(x, ptr, nb, imgs, label);
    if (s || !gt) return s;
    size_t SS = (size_t)x->S * (size_t)x->S;
    batcherr e = {UF_OK, ""};
#pragma omp parallel for schedule(dynamic, 1) num_threads(eval_threads(x))
    for (int j = 0; j < nb; j++) {
        const uf_dataset_item *it = &items[j];
        if (win) { /* the image's rectangle on the canvas (images are shrunk: rw x rh) */
            int rw, rh, left, top, *w4 = win + 4 * (size_t)j;
            uf_preprocess_geometry(&x->r->params.pre, imgs[j]->width, imgs[j]->height, &rw,
                                   &rh, &left, &top);
            w4[0] = -left > 0 ? -left : 0;
            w4[1] = -top > 0 ? -top : 0;
            w4[2] = rw < x->S - w4[0] ? rw : x->S - w4[0];
            w4[3] = rh < x->S - w4[1] ? rh : x->S - w4[1];
        }
        if (!it->mask_path) continue;
        uint8_t *m = NULL; /* [h][w] 0/1 */
        uf_status ms = uf_dataset_load_mask(x->ds, it, imgs[j]->width, imgs[j]->height, &m);
        if (ms == UF_OK)
            ms = uf_eval_mask_to_network(m, imgs[j]->width, imgs[j]->height, &x->r->params.pre,
                                         x->p->gt_threshold, gt + (size_t)j * SS);
        free(m);
        if (ms != UF_OK) batch_failed(&e, ms, it, it->mask_path);
    }
    return batch_status(&e, imgs, nb, label);
}

/* Compute the patch features of items[n] with the extractor (and, with want_gt, their
 * ground truth in network space). */
static uf_status extract_set(uf__evalrun *x, const uf_dataset_item *items, size_t n,
                             bool want_gt, const char *label, uf__featset *fs)
{
    double t0 = uf__now();
    size_t Np = x->rows, D = (size_t)x->D, SS = (size_t)x->S * (size_t)x->S;
    int batch = x->p->batch;
    memset(fs, 0, sizeof *fs);
    fs->n = n;
    fs->items = items;
    fs->feats = uf__alloc3(n, Np, D * sizeof(float), 0);
    fs->smooth = uf__alloc3(n, Np, sizeof(float), 0);
    fs->mask = uf__alloc3(n, Np, 1, 0);
    if (want_gt) fs->gt = uf__alloc3(n, SS, 1, 1);
    /* the whole image kept (no crop: own grid, or letterboxed on a canvas): metrics on the
     * image's rectangle only, not on the canvas around it */
    const uf_preprocess *pre = &x->r->params.pre;
    bool whole = want_gt && pre->crop == 0;
    if (whole) fs->win = uf__alloc3(n, 4, sizeof(int), 1);
    if (!fs->feats || !fs->smooth || !fs->mask || (want_gt && !fs->gt) || (whole && !fs->win)) {
        featset_free(fs);
        return uf__err(UF_ERR_NOMEM, "%s: out of memory for the features of %zu test images "
                                     "(%.1f GB)", label, n, (double)n * (double)Np * (double)D * 4e-9);
    }
    uf_image *imgs[256] = {NULL};
    uf_status s = UF_OK;
    for (size_t b0 = 0; b0 < n && !s; b0 += (size_t)batch) {
        int nb = (int)(n - b0 < (size_t)batch ? n - b0 : (size_t)batch);
        s = load_test_batch(x, items + b0, nb, imgs, fs->gt ? fs->gt + b0 * SS : NULL,
                            fs->win ? fs->win + 4 * b0 : NULL, label);
        if (s) break;
        s = uf_scorer_extract(x->xsc, (const uf_image *const *)imgs, nb, fs->feats + b0 * Np * D,
                              fs->smooth + b0 * Np, fs->mask + b0 * Np);
        for (int j = 0; j < nb && s; j++) { /* name the image: retry one by one */
            size_t i = b0 + (size_t)j;
            if (uf_scorer_extract(x->xsc, (const uf_image *const *)&imgs[j], 1,
                                  fs->feats + i * Np * D, fs->smooth + i * Np,
                                  fs->mask + i * Np) != UF_OK) {
                batcherr e = {UF_OK, ""};
                batch_failed(&e, s, &items[i], NULL);
                uf__err(s, "%s: %s", label, e.msg);
                break;
            }
        }
        if (s && !strstr(uf_errmsg(), label)) uf__err_prefix(s, label);
        for (int j = 0; j < nb; j++) {
            uf_image_free(imgs[j]);
            imgs[j] = NULL;
        }
        if (!s && progress(x, label, "test features", b0 + (size_t)nb, n)) s = cancelled();
    }
    if (s) {
        featset_free(fs);
        return s;
    }
    fs->seconds = uf__now() - t0;
    x->r->extract_seconds += fs->seconds;
    return UF_OK;
}

static void scored_free(uf__scored *sd)
{
    free(sd->score);
    free(sd->feat);
    free(sd->maxp);
    free(sd->maxf);
    free(sd->maps);
    memset(sd, 0, sizeof *sd);
}

/* Score the features of fs with model sc; clu[i] nonzero asks for image i's clustering
 * features (clu may be NULL), maps for the pixel maps of all. */
static uf_status score_set(const uf__evalrun *x, uf_scorer *sc, const uf__featset *fs,
                           const uint8_t *clu, bool maps, const char *label, uf__scored *sd)
{
    enum { CH = 32 };
    size_t n = fs->n, Np = x->Np, R = x->rows, D = (size_t)x->D;
    size_t SS = (size_t)x->S * (size_t)x->S;
    bool soft = x->r->params.soft_mask, tiled = R != Np;
    float *ps = NULL; /* [CH][Np] patch scores of the chunk */
    uint8_t *pm = NULL; /* [CH][Np] tiled: the stitched masks */
    float *pf = NULL; /* [CH][Np][D] tiled: the stitched features */
    uf_status s = UF_OK;
    memset(sd, 0, sizeof *sd);
    sd->score = uf__alloc3(n, sizeof(float), 1, 0);
    if (clu) {
        sd->feat = uf__alloc3(n, D, sizeof(float), 1);
        sd->maxp = uf__alloc3(n, sizeof(int), 1, 1);
        ps = uf__alloc3(CH, Np, sizeof(float), 0);
        if (tiled) {
            sd->maxf = uf__alloc3(n, D, sizeof(float), 1);
            pm = uf__alloc3(CH, Np, 1, 0);
            pf = uf__alloc3(CH, Np, D * sizeof(float), 0);
        }
    }
    if (maps) sd->maps = uf__alloc3(n, SS, sizeof(float), 0);
    if (!sd->score || (clu && (!sd->feat || !sd->maxp || !ps)) || (maps && !sd->maps) ||
        (clu && tiled && (!sd->maxf || !pm || !pf))) {
        s = uf__err(UF_ERR_NOMEM, "%s: out of memory for scoring %zu images", label, n);
        goto fail;
    }
    for (size_t i0 = 0; i0 < n; i0 += CH) {
        int nb = (int)(n - i0 < CH ? n - i0 : CH);
        uf_score res[CH];
        memset(res, 0, sizeof res);
        for (int j = 0; j < nb; j++) {
            size_t i = i0 + (size_t)j;
            if (clu && clu[i]) {
                res[j].feature = sd->feat + i * D;
                res[j].patch_scores = ps + (size_t)j * Np;
                if (tiled) {
                    res[j].mask = pm + (size_t)j * Np;
                    res[j].patch_features = pf + (size_t)j * Np * D;
                }
            }
            if (maps) res[j].pixel_map = sd->maps + i * SS;
        }
        s = uf_score_features(sc, fs->feats + i0 * R * D, fs->smooth + i0 * R,
                              fs->mask + i0 * R, nb, res);
        if (s != UF_OK) {
            uf__err(s, "%s: scoring test images %zu..%zu: %s", label, i0, i0 + (size_t)nb - 1,
                    uf_errmsg());
            goto fail;
        }
        for (int j = 0; j < nb; j++) {
            size_t i = i0 + (size_t)j;
            sd->score[i] = res[j].score;
            if (!res[j].patch_scores) continue;
            /* the single highest patch under the masked score (background 0, or weighted
             * by the BPM map with the soft mask); ties go to the lower index */
            const uint8_t *mk = tiled ? res[j].mask : fs->mask + i * Np;
            const float *sm = tiled ? NULL : fs->smooth + i * Np; /* tiled: mask only */
            int best = 0;
            float bv = -INFINITY;
            for (size_t q = 0; q < Np; q++) {
                float v = mk[q] ? res[j].patch_scores[q] * (soft && sm ? sm[q] : 1.0f) : 0.0f;
                if (v > bv) { bv = v; best = (int)q; }
            }
            sd->maxp[i] = best;
            if (tiled)
                memcpy(sd->maxf + i * D, res[j].patch_features + (size_t)best * D,
                       D * sizeof(float));
        }
    }
    free(ps);
    free(pm);
    free(pf);
    return UF_OK;
fail:
    free(ps);
    free(pm);
    free(pf);
    scored_free(sd);
    return s;
}

/* Indices of the images clustered under the protocol: all n, or those with lab[i] != 0. */
static size_t *cluster_index(const uf__evalrun *x, const uint8_t *lab, size_t n, size_t *k)
{
    size_t *idx = uf__alloc3(n, sizeof(size_t), 1, 0);
    *k = 0;
    if (!idx) return NULL;
    bool all = x->p->cluster_protocol == UF_CLUSTER_OFFICIAL;
    for (size_t i = 0; i < n; i++)
        if (all || lab[i]) idx[(*k)++] = i;
    return idx;
}

/* Clustering flags per image for score_set: the images the protocol clusters. */
static uint8_t *cluster_flags(const uf__evalrun *x, const uint8_t *lab, size_t n)
{
    uint8_t *f = uf__alloc3(n, 1, 1, 0);
    if (!f) return NULL;
    bool all = x->p->cluster_protocol == UF_CLUSTER_OFFICIAL;
    for (size_t i = 0; i < n; i++) f[i] = all || lab[i];
    return f;
}

/* Keep a copy of one repeat's scores in the row. */
static uf_status keep_scores(uf_eval_row *row, int rep, const float *scores)
{
    if (!row->n_scored) return UF_OK;
    float *c = uf__alloc3(row->n_scored, sizeof(float), 1, 0);
    if (!c) return uf__err(UF_ERR_NOMEM, "out of memory");
    memcpy(c, scores, row->n_scored * sizeof(float));
    free(row->repeats[rep].scores);
    row->repeats[rep].scores = c;
    return UF_OK;
}

/* Everything about one row scored by one model: image figures, pixel figures (when the
 * featset has ground truth), clustering, the scores, maps for on_maps on the first repeat.
 * labels[n] = anomalous. */
static uf_status evaluate(uf__evalrun *x, uf_model *m, const uf__featset *fs,
                          const uint8_t *labels, uf_eval_row *row, int rep, uf_eval_figures *f)
{
    const uf_eval_params *p = x->p;
    double t0 = uf__now();
    uf_status s;
    uf_scorer *sc = NULL;
    uf__scored sd = {0};
    size_t nc = 0, *cidx = NULL;  /* [nc] images clustered */
    uint8_t *clu = NULL;          /* [n] clustering flags   */
    bool maps = fs->gt || (p->want_maps && !x->info.semantic); /* maps: [n][S][S] floats */
    if (m == x->xmodel) sc = x->xsc;
    else if ((s = uf_scorer_new(m, &sc)) != UF_OK) goto done;
    else uf_scorer_set_threads(sc, eval_threads(x));
    if (row->clustering && (!(cidx = cluster_index(x, labels, fs->n, &nc)) ||
                            !(clu = cluster_flags(x, labels, fs->n)))) {
        s = uf__err(UF_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((s = score_set(x, sc, fs, clu, maps, row->name, &sd)) != UF_OK) goto done;
    if ((s = uf__image_figs(sd.score, labels, NULL, fs->n, f)) != UF_OK) goto done;
    if ((s = keep_scores(row, rep, sd.score)) != UF_OK) goto done;
    if (fs->gt && (s = uf__pixel_figs(x, fs, &sd, f)) != UF_OK) {
        uf__err_prefix(s, row->name);
        goto done;
    }
    if (row->clustering && (s = uf__cluster_figs(x, fs, &sd, cidx, nc, row, f)) != UF_OK) goto done;
    if (rep == 0 && maps && p->on_maps &&
        p->on_maps(p->user, x->r, row, m, fs->items, fs->n, sd.maps))
        s = cancelled();
done:
    f->score_seconds = uf__now() - t0;
    x->r->score_seconds += f->score_seconds;
    if (sc != x->xsc) uf_scorer_free(sc);
    scored_free(&sd);
    free(cidx);
    free(clu);
    return s;
}

/* ------------------------------------------------------------------------------------ */
/* Rows and the protocols                                                               */
/* ------------------------------------------------------------------------------------ */

/* Training items of the categories cats[ncat] for repeat rep into *out (malloc'd). */
static uf_status train_items(uf__evalrun *x, const int *cats, int ncat, int rep,
                             const uf_dataset_item ***out, size_t *n)
{
    const uf_eval_params *p = x->p;
    size_t total = 0;
    *out = NULL;
    *n = 0;
    uf_status s;
    for (int i = 0; i < ncat; i++) {
        uf_dataset_counts cn;
        if ((s = uf_dataset_get_counts(x->ds, cats[i], &cn)) != UF_OK) return s;
        total += cn.n_train;
    }
    const uf_dataset_item **v = uf__alloc3(total, sizeof *v, 1, 1); /* [total] */
    size_t *perm = uf__alloc3(total, sizeof(size_t), 1, 0);         /* [k] drawn indices */
    if (!v || !perm) {
        free(v);
        free(perm);
        return uf__err(UF_ERR_NOMEM, "out of memory");
    }
    size_t k = p->shots ? p->shots : p->max_train;
    uint64_t seed = p->detector.seed + (p->shots ? (uint64_t)rep : 0);
    for (int i = 0; i < ncat; i++) {
        const uf_dataset_item *items;
        size_t ni;
        if ((s = uf_dataset_split(x->ds, cats[i], UF_SPLIT_TRAIN, &items, &ni)) != UF_OK) break;
        if (p->shots && p->shots > ni) { /* as fit --shots: never fewer shots than asked */
            s = uf__err(UF_ERR_ARG, "%s: %zu shots asked, but the category has only %zu training "
                        "images", uf_dataset_category(x->ds, cats[i]), (size_t)p->shots, ni);
            break;
        }
        if (k == 0 || k >= ni) {
            for (size_t j = 0; j < ni; j++) v[(*n)++] = &items[j];
        } else {
            if ((s = uf_draw_shots(ni, k, seed, perm)) != UF_OK) break;
            for (size_t j = 0; j < k; j++) v[(*n)++] = &items[perm[j]];
        }
    }
    free(perm);
    if (s) {
        free(v);
        *n = 0;
        return s;
    }
    *out = v;
    return UF_OK;
}

/* The row's mean and std over its finished repeats. */
static void row_stats(uf_eval_row *row)
{
    const uf_eval_figures *f[1000];
    int n = row->n_done < 1000 ? row->n_done : 1000;
    for (int i = 0; i < n; i++) f[i] = &row->repeats[i].fig;
    uf__figs_mean_std(f, n, &row->mean, &row->std);
}

/* A row has finished: its statistics, the run's mean over rows, the caller's callback. */
static uf_status row_finished(uf__evalrun *x, uf_eval_row *row)
{
    uf_eval_result *r = x->r;
    row_stats(row);
    if (row != r->overall) {
        r->n_finished = 0;
        const uf_eval_figures **f = uf__alloc3((size_t)r->n_rows, sizeof *f, 1, 0);
        if (!f) return uf__err(UF_ERR_NOMEM, "out of memory");
        for (int i = 0; i < r->n_rows; i++)
            if (r->rows[i].n_done == r->repeats) f[r->n_finished++] = &r->rows[i].mean;
        uf__figs_mean_std(f, r->n_finished, &r->mean, &r->std);
        free(f);
    }
    if (x->p->on_update && x->p->on_update(x->p->user, r, row)) return cancelled();
    return UF_OK;
}

/* A row's test split and counts. */
static uf_status category_test(uf__evalrun *x, int c, const uf_dataset_item **items, size_t *n,
                               uf_eval_row *row)
{
    uf_dataset_counts cn;
    uf_status s;
    if ((s = uf_dataset_get_counts(x->ds, c, &cn)) != UF_OK ||
        (s = uf_dataset_split(x->ds, c, UF_SPLIT_TEST, items, n)) != UF_OK)
        return s;
    row->n_test = cn.n_test;
    row->n_test_anomalous = cn.n_test_anomalous;
    row->pixel = !x->info.semantic && cn.n_test_anomalous > 0 &&
                 cn.n_test_masked == cn.n_test_anomalous;
    return UF_OK;
}

/* The label of repeat rep of a row, for messages and progress. */
static void rep_label(const uf__evalrun *x, const char *name, int rep, char *out, size_t n)
{
    if (x->p->shots) snprintf(out, n, "%s [%d/%d]", name, rep + 1, x->r->repeats);
    else snprintf(out, n, "%s", name);
}

/* Own scoring pass of a row over items[n] with labels (copied). */
static uf_status row_scored(uf_eval_row *row, const uf_dataset_item *items, size_t n,
                            const uint8_t *labels)
{
    row->n_scored = n;
    row->items = items;
    row->labels = uf__alloc3(n, 1, 1, 0);
    if (!row->labels) return uf__err(UF_ERR_NOMEM, "out of memory");
    memcpy(row->labels, labels, n);
    return UF_OK;
}

/* One repeat of a one-class row: fit on the category, score its test set (features of fs,
 * extracted on first use). */
static uf_status one_class_repeat(uf__evalrun *x, int c, uf_eval_row *row, int rep,
                                  const uf_dataset_item *test, size_t ntest,
                                  const uint8_t *labels, uf__featset *fs)
{
    uf_eval_figures *f = &row->repeats[rep].fig;
    uf__figs_nan(f);
    const uf_dataset_item **train = NULL;
    size_t ntrain = 0;
    uf_model *m = NULL;
    char label[200];
    rep_label(x, row->name, rep, label, sizeof label);
    uf_detector_params dp = x->r->params;
    dp.seed = x->r->params.seed + (uint64_t)rep;
    row->repeats[rep].seed = dp.seed;
    uf_status s = train_items(x, &c, 1, rep, &train, &ntrain);
    if (!s) s = fit_model(x, &dp, train, ntrain, label, &m, f);
    free(train);
    if (!s) s = model_fitted(x, row, rep, m);
    if (!s) s = ensure_extractor(x, m);
    f->extract_seconds = 0;
    if (!s && fs->n == 0 && (s = extract_set(x, test, ntest, row->pixel, label, fs)) == UF_OK)
        f->extract_seconds = fs->seconds;
    bool same = !s && fs->n == ntest;
    for (size_t i = 0; same && i < ntest; i++) same = fs->items[i].image_id == test[i].image_id;
    if (!s && !same)
        s = uf__err(UF_ERR_FORMAT, "%s: test split differs from the other classes' (%zu vs %zu "
                                   "images)", row->name, ntest, fs->n);
    if (!s) {
        uf__featset view = *fs; /* the cached features under this category's items */
        view.items = test;
        s = evaluate(x, m, &view, labels, row, rep, f);
    }
    if (m != x->xmodel) uf_model_free(m);
    if (!s) row->n_done++;
    return s;
}

/* One-class: a model per category (per repeat), scored on the category's test set. */
static uf_status run_one_class(uf__evalrun *x)
{
    uf_eval_result *r = x->r;
    uf_status s = UF_OK;
    uf__featset shared = {0}; /* semantic datasets: the one test sequence */
    for (int ci = 0; ci < x->nsel && !s; ci++) {
        uf_eval_row *row = &r->rows[ci];
        const uf_dataset_item *test;
        size_t ntest;
        uf__featset own = {0};
        uf__featset *fs = x->info.semantic ? &shared : &own;
        uint8_t *labels = NULL; /* [ntest] */
        if ((s = category_test(x, x->sel[ci], &test, &ntest, row)) != UF_OK) break;
        if (!(labels = uf__alloc3(ntest, 1, 1, 0))) {
            s = uf__err(UF_ERR_NOMEM, "out of memory");
            break;
        }
        for (size_t i = 0; i < ntest; i++) labels[i] = (uint8_t)(test[i].anomalous != 0);
        s = row_scored(row, test, ntest, labels);
        for (int rep = 0; rep < r->repeats && !s; rep++)
            s = one_class_repeat(x, x->sel[ci], row, rep, test, ntest, labels, fs);
        free(labels);
        featset_free(&own);
        if (!s) s = row_finished(x, row);
    }
    featset_free(&shared);
    return s;
}

/* Zero-shot: each category's test set scored against itself (uf_zeroshot_*), no fit.
 * Features are kept by the zero-shot set, not in a featset: fs carries the ground truth
 * and the windows only. */
static uf_status zero_shot_row(uf__evalrun *x, int c, uf_eval_row *row)
{
    uf_eval_figures *f = &row->repeats[0].fig;
    uf__figs_nan(f);
    const uf_dataset_item *test;
    size_t n;
    uf_status s = category_test(x, c, &test, &n, row);
    if (s) return s;
    double t0 = uf__now();
    uint8_t *labels = uf__alloc3(n ? n : 1, 1, 1, 0);
    uf_zeroshot *z = NULL;
    uf__featset fs = {0};
    uf__scored sd = {0};
    uf_score *res = NULL;
    uf_image *imgs[256] = {NULL};
    if (!labels) { s = uf__err(UF_ERR_NOMEM, "out of memory"); goto done; }
    for (size_t i = 0; i < n; i++) labels[i] = (uint8_t)(test[i].anomalous != 0);
    if ((s = row_scored(row, test, n, labels)) != UF_OK) goto done;
    if ((s = uf_zeroshot_new(x->bb, &x->r->params, x->p->zero_shot, &z)) != UF_OK) goto done;
    uf_eval_result *r = x->r;
    int gh, gw;
    uf_model_output_size(uf_zeroshot_model(z), &gh, &gw, &x->S, &x->D);
    x->Np = x->rows = (size_t)gh * (size_t)gw;
    r->grid_h = gh, r->grid_w = gw, r->S = x->S, r->D = x->D;
    uf_model_info mi;
    uf_model_get_info(uf_zeroshot_model(z), &mi);
    snprintf(r->backbone_path, sizeof r->backbone_path, "%s", mi.backbone_path);
    snprintf(r->backbone_sha256, sizeof r->backbone_sha256, "%s", mi.backbone_sha256);
    const size_t SS = (size_t)x->S * (size_t)x->S;
    const uf_preprocess *pre = &r->params.pre;
    const bool gt = row->pixel, whole = gt && pre->crop == 0 && pre->pad_to == 0;
    const bool maps = gt || (x->p->want_maps && !x->info.semantic);
    fs.n = n;
    fs.items = test;
    if (gt) fs.gt = uf__alloc3(n, SS, 1, 1);
    if (whole) fs.win = uf__alloc3(n, 4, sizeof(int), 1);
    sd.score = uf__alloc3(n ? n : 1, sizeof(float), 1, 0);
    if (maps) sd.maps = uf__alloc3(n, SS, sizeof(float), 0);
    res = uf__alloc3(n ? n : 1, sizeof *res, 1, 1);
    if ((gt && !fs.gt) || (whole && !fs.win) || !sd.score || (maps && !sd.maps) || !res) {
        s = uf__err(UF_ERR_NOMEM, "%s: out of memory for %zu test images", row->name, n);
        goto done;
    }
    const int batch = x->p->batch;
    for (size_t b0 = 0; b0 < n && !s; b0 += (size_t)batch) {
        int nb = (int)(n - b0 < (size_t)batch ? n - b0 : (size_t)batch);
        s = load_test_batch(x, test + b0, nb, imgs, fs.gt ? fs.gt + b0 * SS : NULL,
                            fs.win ? fs.win + 4 * b0 : NULL, row->name);
        if (s) break;
        s = uf_zeroshot_add(z, (const uf_image *const *)imgs, nb);
        if (s) uf__err(s, "%s: test images %zu..%zu (%s ...): %s", row->name, b0,
                       b0 + (size_t)nb - 1, test[b0].name, uf_errmsg());
        for (int j = 0; j < nb; j++) {
            uf_image_free(imgs[j]);
            imgs[j] = NULL;
        }
        if (!s && progress(x, row->name, "test features", b0 + (size_t)nb, n)) s = cancelled();
    }
    if (s) goto done;
    f->extract_seconds = uf__now() - t0;
    r->extract_seconds += f->extract_seconds;
    t0 = uf__now();
    for (size_t i = 0; i < n; i++)
        if (maps) res[i].pixel_map = sd.maps + i * SS;
    if ((s = uf_zeroshot_score(z, 0, n, 0, res)) != UF_OK) {
        uf__err_prefix(s, row->name);
        goto done;
    }
    for (size_t i = 0; i < n; i++) sd.score[i] = res[i].score;
    f->n_train = 0;
    if ((s = uf__image_figs(sd.score, labels, NULL, n, f)) != UF_OK) goto done;
    if ((s = keep_scores(row, 0, sd.score)) != UF_OK) goto done;
    if (gt && (s = uf__pixel_figs(x, &fs, &sd, f)) != UF_OK) {
        uf__err_prefix(s, row->name);
        goto done;
    }
    if (maps && x->p->on_maps &&
        x->p->on_maps(x->p->user, r, row, uf_zeroshot_model(z), test, n, sd.maps))
        s = cancelled();
    f->score_seconds = uf__now() - t0;
    r->score_seconds += f->score_seconds;
    if (!s) row->n_done = 1;
done:
    free(labels);
    free(res);
    featset_free(&fs);
    scored_free(&sd);
    uf_zeroshot_free(z);
    return s;
}

static uf_status run_zero_shot(uf__evalrun *x)
{
    uf_status s = UF_OK;
    for (int ci = 0; ci < x->nsel && !s; ci++) {
        s = zero_shot_row(x, x->sel[ci], &x->r->rows[ci]);
        if (!s) s = row_finished(x, &x->r->rows[ci]);
    }
    return s;
}

/* Multi-class state: the test sets and the overall labels. */
typedef struct multi {
    uf__featset *fsc;      /* [nsel] defect datasets: per category                  */
    uf__featset shared;    /* semantic datasets: the one test sequence              */
    float *all_s;          /* [n_all] overall scores (defect: union of the test sets) */
    uint8_t *all_l;        /* [n_all] overall labels                                 */
    size_t n_all;
} multi;

/* Lay out the multi-class rows: counts of each category and of the union. */
static uf_status multi_layout(uf__evalrun *x, multi *mc)
{
    uf_eval_row *ov = x->r->overall;
    uf_status s;
    for (int i = 0; i < x->nsel; i++) {
        const uf_dataset_item *t;
        size_t nt;
        if ((s = category_test(x, x->sel[i], &t, &nt, &x->r->rows[i])) != UF_OK) return s;
        if (x->info.semantic) {
            x->r->rows[i].clustering = 0; /* clustered once, in "overall" */
        } else {
            ov->n_test += nt;
            ov->n_test_anomalous += x->r->rows[i].n_test_anomalous;
            mc->n_all += nt;
        }
    }
    if (!x->info.semantic) {
        mc->all_s = uf__alloc3(mc->n_all, sizeof(float), 1, 0);
        mc->all_l = uf__alloc3(mc->n_all, 1, 1, 0);
        return mc->all_s && mc->all_l ? UF_OK : uf__err(UF_ERR_NOMEM, "out of memory");
    }
    /* semantic: normal = test images of the selected classes; the test sequence is that of
     * the first selected class (identical for all) */
    int nc = uf_dataset_n_categories(x->ds);
    uint8_t *sel_class = uf__alloc3((size_t)nc, 1, 1, 1);
    const uf_dataset_item *t;
    if (!sel_class) return uf__err(UF_ERR_NOMEM, "out of memory");
    for (int i = 0; i < x->nsel; i++) sel_class[x->sel[i]] = 1;
    s = uf_dataset_split(x->ds, x->sel[0], UF_SPLIT_TEST, &t, &mc->n_all);
    if (!s && !(mc->all_l = uf__alloc3(mc->n_all, 1, 1, 0))) s = uf__err(UF_ERR_NOMEM, "out of memory");
    if (s) {
        free(sel_class);
        return s;
    }
    ov->n_test = mc->n_all;
    for (size_t i = 0; i < mc->n_all; i++) {
        int cid = t[i].class_id;
        mc->all_l[i] = !(cid >= 0 && cid < nc && sel_class[cid]);
        ov->n_test_anomalous += mc->all_l[i];
    }
    free(sel_class);
    for (int i = 0; i < x->nsel; i++) {
        size_t nn = 0;
        for (size_t j = 0; j < mc->n_all; j++) nn += t[j].class_id == x->sel[i];
        x->r->rows[i].n_test = nn + ov->n_test_anomalous;
        x->r->rows[i].n_test_anomalous = ov->n_test_anomalous;
    }
    mc->shared.items = t;
    return row_scored(ov, t, mc->n_all, mc->all_l);
}

/* The multi-class model's figures (sizes, fit time; with `scoring` also the extraction and
 * scoring times of its one pass) from the overall row's fo into a category row's f. */
static void model_figs(uf_eval_figures *f, const uf_eval_figures *fo, bool scoring)
{
    f->n_train = fo->n_train;
    f->bank_size = fo->bank_size;
    f->bank_size_full = fo->bank_size_full;
    f->fit_seconds = fo->fit_seconds;
    if (!scoring) return;
    f->extract_seconds = fo->extract_seconds;
    f->score_seconds = fo->score_seconds;
}

/* Semantic multi-class, one repeat: one scoring pass over the test sequence; per class its
 * normal images against every anomalous image; overall all of them. */
static uf_status multi_semantic_repeat(uf__evalrun *x, multi *mc, uf_model *m, int rep,
                                       const char *label)
{
    uf_eval_result *r = x->r;
    uf_eval_row *ov = r->overall;
    uf_eval_figures *fo = &ov->repeats[rep].fig;
    uf_status s = UF_OK;
    const uf_dataset_item *t = mc->shared.items;
    fo->extract_seconds = 0;
    if (mc->shared.n == 0 && (s = extract_set(x, t, mc->n_all, false, label, &mc->shared)) == UF_OK)
        fo->extract_seconds = mc->shared.seconds;
    if (s) return s;
    /* the overall row: scores, image figures, clustering */
    s = evaluate(x, m, &mc->shared, mc->all_l, ov, rep, fo);
    size_t *idx = uf__alloc3(mc->n_all, sizeof(size_t), 1, 0);
    if (!s && !idx) s = uf__err(UF_ERR_NOMEM, "out of memory");
    for (int i = 0; i < x->nsel && !s; i++) {
        uf_eval_row *row = &r->rows[i];
        uf_eval_figures *f = &row->repeats[rep].fig;
        uf__figs_nan(f);
        size_t k = 0;
        for (size_t j = 0; j < mc->n_all; j++)
            if (mc->all_l[j] || t[j].class_id == x->sel[i]) idx[k++] = j;
        s = uf__image_figs(ov->repeats[rep].scores, mc->all_l, idx, k, f);
        model_figs(f, fo, true);
        row->repeats[rep].seed = ov->repeats[rep].seed;
        row->n_done++;
        if (!s && rep == r->repeats - 1) s = row_finished(x, row);
    }
    free(idx);
    return s;
}

/* Defect multi-class, one repeat: the model scores each category's test set; overall is the
 * union of their scores. */
static uf_status multi_defect_repeat(uf__evalrun *x, multi *mc, uf_model *m, int rep)
{
    uf_eval_result *r = x->r;
    uf_eval_figures *fo = &r->overall->repeats[rep].fig;
    uf_status s = UF_OK;
    size_t off = 0;
    for (int i = 0; i < x->nsel && !s; i++) {
        uf_eval_row *row = &r->rows[i];
        uf_eval_figures *f = &row->repeats[rep].fig;
        uf__figs_nan(f);
        const uf_dataset_item *t;
        size_t nt;
        if ((s = uf_dataset_split(x->ds, x->sel[i], UF_SPLIT_TEST, &t, &nt)) != UF_OK) break;
        f->extract_seconds = 0;
        if (mc->fsc[i].n == 0) {
            if ((s = extract_set(x, t, nt, row->pixel, row->name, &mc->fsc[i])) != UF_OK) break;
            f->extract_seconds = mc->fsc[i].seconds;
        }
        uint8_t *lab = mc->all_l + off;
        for (size_t j = 0; j < nt; j++) lab[j] = (uint8_t)(t[j].anomalous != 0);
        if (rep == 0 && (s = row_scored(row, t, nt, lab)) != UF_OK) break;
        if ((s = evaluate(x, m, &mc->fsc[i], lab, row, rep, f)) != UF_OK) break;
        memcpy(mc->all_s + off, row->repeats[rep].scores, nt * sizeof(float));
        model_figs(f, fo, false); /* the model's figures belong to every row */
        row->repeats[rep].seed = r->overall->repeats[rep].seed;
        off += nt;
        if (r->repeats == 1) featset_free(&mc->fsc[i]); /* not needed again */
        row->n_done++;
        if (rep == r->repeats - 1) s = row_finished(x, row);
    }
    if (!s) s = uf__image_figs(mc->all_s, mc->all_l, NULL, off, fo);
    return s;
}

/* Multi-class: one model per repeat from the training images of every selected category. */
static uf_status run_multi_class(uf__evalrun *x)
{
    uf_eval_result *r = x->r;
    uf_eval_row *ov = r->overall;
    multi mc;
    memset(&mc, 0, sizeof mc);
    uf_status s = UF_OK;
    if (!(mc.fsc = uf__alloc3((size_t)x->nsel, sizeof *mc.fsc, 1, 1)))
        return uf__err(UF_ERR_NOMEM, "out of memory");
    s = multi_layout(x, &mc);
    for (int rep = 0; rep < r->repeats && !s; rep++) {
        uf_eval_figures *fo = &ov->repeats[rep].fig;
        uf__figs_nan(fo);
        const uf_dataset_item **train = NULL;
        size_t ntrain = 0;
        uf_model *m = NULL;
        char label[64];
        rep_label(x, "multi-class", rep, label, sizeof label);
        uf_detector_params dp = r->params;
        dp.seed = r->params.seed + (uint64_t)rep;
        ov->repeats[rep].seed = dp.seed;
        s = train_items(x, x->sel, x->nsel, rep, &train, &ntrain);
        if (!s) s = fit_model(x, &dp, train, ntrain, label, &m, fo);
        free(train);
        if (!s) s = model_fitted(x, ov, rep, m);
        if (!s) s = ensure_extractor(x, m);
        if (!s) s = x->info.semantic ? multi_semantic_repeat(x, &mc, m, rep, label)
                                     : multi_defect_repeat(x, &mc, m, rep);
        if (m != x->xmodel) uf_model_free(m);
        if (!s) ov->n_done++;
    }
    if (!s) s = row_finished(x, ov);
    for (int i = 0; i < x->nsel; i++) featset_free(&mc.fsc[i]);
    free(mc.fsc);
    featset_free(&mc.shared);
    free(mc.all_s);
    free(mc.all_l);
    return s;
}

/* ------------------------------------------------------------------------------------ */
/* The run                                                                              */
/* ------------------------------------------------------------------------------------ */

static void row_free(uf_eval_row *row, int repeats)
{
    if (row->repeats)
        for (int k = 0; k < repeats; k++) free(row->repeats[k].scores);
    free(row->repeats);
    free(row->labels);
    free(row->notes);
}

void uf_eval_result_free(uf_eval_result *r)
{
    if (!r) return;
    for (int i = 0; r->rows && i < r->n_rows; i++) row_free(&r->rows[i], r->repeats);
    free(r->rows);
    if (r->overall) row_free(r->overall, r->repeats);
    free(r->overall);
    free(r);
}

/* A row for category c (or "overall" when c < 0) with room for the repeats. */
static uf_status row_init(uf__evalrun *x, uf_eval_row *row, int c)
{
    row->name = c >= 0 ? uf_dataset_category(x->ds, c) : "overall";
    row->category = c;
    row->clustering = x->p->cluster != 0 && (c >= 0 || x->info.semantic);
    row->repeats = uf__alloc3((size_t)x->r->repeats, sizeof *row->repeats, 1, 1);
    if (!row->repeats) return uf__err(UF_ERR_NOMEM, "out of memory");
    for (int k = 0; k < x->r->repeats; k++) uf__figs_nan(&row->repeats[k].fig);
    uf__figs_nan(&row->mean);
    uf__figs_nan(&row->std);
    return UF_OK;
}

/* The result with its settings resolved and its rows laid out. */
static uf_status result_new(uf__evalrun *x, int n)
{
    const uf_eval_params *p = x->p;
    uf_eval_result *r = calloc(1, sizeof *r);
    if (!r) return uf__err(UF_ERR_NOMEM, "out of memory");
    x->r = r;
    uf__figs_nan(&r->mean);
    uf__figs_nan(&r->std);
    uf_status s = uf_eval_resolve(x->ds, x->sel, n, p, &r->params, &r->coreset_source,
                                  &r->preprocess_source);
    if (s) return s;
    if ((s = uf_detector_params_check(&r->params, x->bb)) != UF_OK) return s;
    if (p->multi_class && x->info.semantic && n == x->info.n_categories)
        return uf__err(UF_ERR_ARG, "multi-class on a semantic dataset needs a selection of "
                                   "classes: the selected classes are normal, the others "
                                   "anomalous");
    r->repeats = p->repeats ? p->repeats : p->shots ? 5 : 1;
    r->rows = uf__alloc3((size_t)n, sizeof *r->rows, 1, 1);
    if (!r->rows) return uf__err(UF_ERR_NOMEM, "out of memory");
    r->n_rows = n;
    for (int i = 0; i < n; i++)
        if ((s = row_init(x, &r->rows[i], x->sel[i])) != UF_OK) return s;
    if (p->multi_class) {
        if (!(r->overall = calloc(1, sizeof *r->overall))) return uf__err(UF_ERR_NOMEM, "out of memory");
        if ((s = row_init(x, r->overall, -1)) != UF_OK) return s;
    }
    return UF_OK;
}

uf_status uf_eval_run(const uf_dataset *ds, const uf_backbone *bb, const int *cats, int n,
                      const uf_eval_params *p, uf_eval_result **out)
{
    if (out) *out = NULL;
    if (!ds || !bb || !cats || n < 1 || !p || !out)
        return uf__err(UF_ERR_ARG, "uf_eval_run: NULL argument or no category");
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++)
            if (cats[i] == cats[j])
                return uf__err(UF_ERR_ARG, "category %d selected twice", cats[i]);
    uf__evalrun x;
    memset(&x, 0, sizeof x);
    x.ds = ds;
    x.bb = bb;
    x.p = p;
    x.sel = cats;
    x.nsel = n;
    uf_dataset_get_info(ds, &x.info);
    uf_status s = result_new(&x, n);
    if (!s && p->on_update && p->on_update(p->user, x.r, NULL)) s = cancelled();
    if (!s) s = p->zero_shot > 0 ? run_zero_shot(&x)
                : p->multi_class ? run_multi_class(&x) : run_one_class(&x);
    uf_scorer_free(x.xsc);
    uf_model_free(x.xmodel);
    *out = x.r;
    return s;
}
