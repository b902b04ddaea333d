/*
 * detector.h - the model, fitter and scorer structures shared by detector.c (fit and score)
 * and modelfile.c (save and load). Not installed.
 */
#ifndef UF_DETECTOR_H
#define UF_DETECTOR_H

#include "core/internal.h"

/* Largest network input side (crop or pad_to) and resize target, as the CLI accepts: a
 * model header asking for more is refused on load, naming the field, instead of failing
 * later at scoring time. */
#define UF__MAX_INPUT_SIDE 8192

/* A fitted model. Immutable after construction, hence shareable across threads. */
struct uf_model {
    uf_detector_params params;
    const uf_backbone *bb;  /* the backbone scoring runs                               */
    uf_backbone *bb_owned;  /* == bb when the model owns it (loaded models), else NULL  */
    int dim;                /* D                                                       */
    size_t n_bank;          /* bank rows after the coreset                             */
    size_t n_bank_full;     /* foreground patches before the coreset                   */
    size_t n_train;         /* training images                                         */
    float *bank;            /* [n_bank][D]                                              */
    float *bank_norm;       /* [n_bank] squared L2 norms of the bank rows (uf__knn)     */
    float threshold;        /* decision threshold on the image score, NaN if none      */
    uf_calibration calib;   /* normal-score statistics, n_images == 0 if none          */
    char *backbone_path;    /* recorded checkpoint path ("" for a random backbone)     */
    char backbone_sha256[65]; /* recorded checkpoint sha256 ("" for random)            */
    int embedded;           /* loaded from a file that embeds the backbone             */
    char *embedded_src;     /* model file holding the embedded checkpoint (so a loaded
                               model can be saved again with it), or NULL              */
    size_t embedded_off;    /* its byte range in that file                             */
    size_t embedded_len;
};

/* Make a model from parts: takes ownership of bank (malloc'd, [n_bank][D]) on success and
 * on failure alike; computes the bank norms; copies p and the backbone identity of bb.
 * bb is borrowed (set m->bb_owned afterwards to hand it over). */
uf_status uf__model_new(const uf_backbone *bb, const uf_detector_params *p, float *bank,
                        size_t n_bank, size_t n_bank_full, size_t n_train, uf_model **out);

/* Tiling (uf_detector_params.tile): the starts of the tiles along a side of n pixels,
 * tile and overlap as in the params (n, tile and overlap multiples of the patch size):
 * 0, step, 2 step, ... (step = tile - overlap) while a tile ends inside the side, then one
 * tile ending at the edge (n - tile); a side n <= tile is one tile at 0. Writes starts
 * (may be NULL; at most n / step + 2 entries) and returns their number. */
int uf__tile_starts(int n, int tile, int overlap, int *starts);

/* Hand a fitter's patches over (see detector.c). */
void uf__fitter_take(uf_fitter *f, float **bank, size_t *n, size_t *n_train,
                     const uf_detector_params **p, const uf_backbone **bb, int *threads);

/* Everything scoring derives from one image's patch scores d [Np], with the scorer's
 * settings: masking, top-K image score, and the outputs o asks for (patch scores, mask,
 * features, top-K feature, pixel map); F [Np][D], sm [Np], mk [Np] are that image's
 * features, BPM map and mask. For scores computed elsewhere (zeroshot.c). Not thread-safe
 * per scorer. Errors: as uf__topk_mean, uf__gaussian_filter. */
uf_status uf__scorer_finish(uf_scorer *s, const float *d, const float *F, const float *sm,
                            const uint8_t *mk, uf_score *o);

/* Add n images to a zero-shot set from their features feats [n][Np][D], BPM maps smooth
 * [n][Np] and masks [n][Np] (as uf_scorer_extract makes them) instead of images: for tests
 * on synthetic features. Errors: UF_ERR_ARG, UF_ERR_NOMEM, UF_ERR_LIMIT. */
uf_status uf__zeroshot_add_features(uf_zeroshot *z, const float *feats, const float *smooth,
                                    const uint8_t *mask, int n);

#endif /* UF_DETECTOR_H */
