/*
 * protocol.h - private pieces shared by the evaluation run (protocol.c) and its figures
 * (figures.c): the patch features of a test set computed once, the outputs of scoring them
 * with one model, and the run's state. Not part of the public API.
 */
#ifndef UF_EVAL_PROTOCOL_H
#define UF_EVAL_PROTOCOL_H

#include "core/internal.h"

/* Patch features of a test set, computed once and scored by every model of the run. */
typedef struct uf__featset {
    size_t n;                     /* images                                            */
    const uf_dataset_item *items; /* [n] the split they were computed from             */
    float *feats;                 /* [n][Np][D] patch features                         */
    float *smooth;                /* [n][Np] BPM map (1 without BPM)                   */
    uint8_t *mask;                /* [n][Np] 1 = foreground patch                      */
    uint8_t *gt;                  /* [n][S][S] ground truth in network space, or NULL  */
    int *win;                     /* [n][4] x, y, w, h: where the whole image lies on
                                     the [S][S] canvas when the geometry keeps the whole
                                     image (pixel metrics are taken there only, not on
                                     the letterbox padding); NULL otherwise           */
    double seconds;               /* extraction time                                   */
} uf__featset;

/* The outputs of scoring a featset with one model. */
typedef struct uf__scored {
    float *score; /* [n] image scores                                                 */
    float *feat;  /* [n][D] top-K mean feature (clustered images only), or NULL       */
    int *maxp;    /* [n] patch of the highest masked score (clustered), or NULL       */
    float *maxf;  /* [n][D] its feature for a tiled model (stitched: the mean over the
                     covering tiles; clustered images only), else NULL: row maxp       */
    float *maps;  /* [n][S][S] pixel maps, or NULL                                    */
} uf__scored;

/* A run of uf_eval_run. */
typedef struct uf__evalrun {
    const uf_dataset *ds;
    const uf_backbone *bb;
    const uf_eval_params *p;
    uf_dataset_info info;
    uf_eval_result *r;
    const int *sel;        /* [nsel] selected categories                               */
    int nsel;
    uf_model *xmodel;      /* the first model made, kept for its scorer (extraction)   */
    uf_scorer *xsc;
    size_t Np;             /* patches per image (the [gh][gw] grid of the maps)        */
    size_t rows;           /* rows per image of the features (uf_model_patch_rows: Np,
                              or a tiled model's tile patches)                          */
    int S, D;
} uf__evalrun;

double uf__now(void);

/* a * b * c bytes (zeroed with zero), or NULL on overflow or out of memory. */
void *uf__alloc3(size_t a, size_t b, size_t c, int zero);

/* Figures (figures.c). All NaN. */
void uf__figs_nan(uf_eval_figures *f);
/* Mean and population std of the finite values of figs[i], i < n (NaN where none). */
void uf__figs_mean_std(const uf_eval_figures *const *figs, int n, uf_eval_figures *mean,
                       uf_eval_figures *sd);
/* Image AUROC, F1-max and its threshold of scores/labels over the subset idx[n] (all n when
 * idx is NULL); NaN where undefined. UF_ERR_NOMEM only. */
uf_status uf__image_figs(const float *scores, const uint8_t *labels, const size_t *idx,
                         size_t n, uf_eval_figures *f);
/* Pixel figures of the maps of fs against its ground truth. */
uf_status uf__pixel_figs(const uf__evalrun *x, const uf__featset *fs, const uf__scored *sd,
                         uf_eval_figures *f);
/* Clustering of the images idx[n] of fs by their types; figures into f, K and n into row,
 * reasons for skipped figures into row->notes. UF_ERR_NOMEM only. */
uf_status uf__cluster_figs(const uf__evalrun *x, const uf__featset *fs, const uf__scored *sd,
                           const size_t *idx, size_t n, uf_eval_row *row, uf_eval_figures *f);
/* Append a line to row->notes (dropped when out of memory). */
void uf__row_note(uf_eval_row *row, const char *fmt, ...) UF__PRINTF(2, 3);

#endif
