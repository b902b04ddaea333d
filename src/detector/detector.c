/*
 * detector.c - the UniFormaly detector: settings, fitting (memory bank of foreground patch
 * features, coreset) and scoring (nearest-neighbour patch scores, top-K image score, pixel
 * map, top-K feature).
 *
 * Both fitting and scoring start with the same extraction (extract() below): preprocess a
 * batch of images, run the backbone once, average the patch tokens of blocks
 * layer_first..layer_last, and turn the CLS attention of block layer_last into the Back
 * Patch Masking map. Fitting appends the foreground rows to a growing bank; scoring runs
 * the blocked kNN (knn.c) on every patch and derives the maps from the distances.
 *
 * Work is done in chunks of at most CHUNK images, so scratch memory is bounded whatever n
 * the caller passes. Results do not depend on the chunking: every per-image step is
 * independent of the other images (BPM normalises each map by its own maximum).
 */
#include "detector/detector.h"
#include "detector/kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK 8      /* images per backbone call                       */
#define TILE_BATCH 8 /* tiles of one image per backbone call (tiling)  */

/* ---- settings ------------------------------------------------------------------------ */

uf_detector_params uf_detector_default_params(void)
{
    uf_detector_params p;
    memset(&p, 0, sizeof p);
    p.layer_first = 3;
    p.layer_last = 10;
    p.bpm = 1;
    p.bpm_kernel = 7;
    p.bpm_lambda = 0.1f;
    p.soft_mask = 0;
    p.rollout = 0;
    p.coreset = 0.1;
    p.sampler = UF_SAMPLER_GREEDY;
    p.seed = 0;
    p.knn = 1;
    p.topk = 0.05;
    p.sigma = 4.0;
    p.pre = uf_preprocess_default();
    p.cosine = 0;
    p.pca_mask = 0;
    p.pca_threshold = 10.0f;
    p.rotations = 1;
    return p;
}

void uf_detector_preset_anomalydino(uf_detector_params *p)
{
    if (!p) return;
    p->layer_first = p->layer_last = UF_LAYER_LAST; /* get_intermediate_layers(x)[0]: n=1 */
    p->cosine = 1;        /* knn_metric "L2_normalized"                                  */
    p->knn = 1;           /* k_neighbors 1                                               */
    p->topk = 0.01;       /* mean_top1p                                                  */
    p->bpm = 0;           /* masking only for the objects of their masking_default       */
    p->soft_mask = 0;
    p->pca_mask = 0;
    p->pca_threshold = 10.0f; /* compute_background_mask(..., threshold=10)              */
    p->coreset = 1.0;     /* the whole memory bank                                       */
    p->rotations = 8;     /* augment_image: angles 0, 45, ..., 315                      */
}

/* The block numbers p asks for on a backbone of `depth` blocks (UF_LAYER_LAST resolved). */
static void resolve_layers(uf_detector_params *p, int depth)
{
    if (p->layer_first == UF_LAYER_LAST && p->layer_last == UF_LAYER_LAST)
        p->layer_first = p->layer_last = depth;
}

/* The whole-image geometry (uf_preprocess: crop 0 without pad_to): each image runs on its
 * own patch grid at the top-left of the [gh][gw] grid; the other patches are padding. */
static bool whole_image(const uf_preprocess *pre) { return pre->crop == 0 && pre->pad_to == 0; }

uf_status uf_detector_params_check(const uf_detector_params *p, const uf_backbone *bb)
{
    if (!p) return uf__err(UF_ERR_ARG, "detector params: NULL");
    const bool last = p->layer_first == UF_LAYER_LAST && p->layer_last == UF_LAYER_LAST;
    if (!last && (p->layer_first < 1 || p->layer_last < p->layer_first || p->layer_last > 64))
        return uf__err(UF_ERR_ARG, "layers %d-%d: need 1 <= first <= last <= 64, or both "
                       "UF_LAYER_LAST (-1)", p->layer_first, p->layer_last);
    if ((p->cosine != 0 && p->cosine != 1) || (p->pca_mask != 0 && p->pca_mask != 1))
        return uf__err(UF_ERR_ARG, "cosine and pca_mask must be 0 or 1");
    if (p->pca_mask && p->bpm)
        return uf__err(UF_ERR_ARG, "pca_mask replaces BPM: turn bpm off to use it");
    if (!isfinite(p->pca_threshold))
        return uf__err(UF_ERR_ARG, "pca threshold %g: must be finite", p->pca_threshold);
    if (p->rotations < 1 || p->rotations > 360)
        return uf__err(UF_ERR_ARG, "rotations %d: must be 1..360", p->rotations);
    if ((p->bpm != 0 && p->bpm != 1) || (p->soft_mask != 0 && p->soft_mask != 1) ||
        (p->rollout != 0 && p->rollout != 1))
        return uf__err(UF_ERR_ARG, "bpm, soft_mask and rollout must be 0 or 1");
    if ((unsigned)p->pre.interp > (unsigned)UF_INTERP_NEAREST)
        return uf__err(UF_ERR_ARG, "preprocessing: unknown filter %d", (int)p->pre.interp);
    if (p->bpm_kernel < 1 || p->bpm_kernel > 63 || p->bpm_kernel % 2 == 0)
        return uf__err(UF_ERR_ARG, "bpm kernel %d: must be odd, 1..63", p->bpm_kernel);
    if (!isfinite(p->bpm_lambda) || p->bpm_lambda < 0 || p->bpm_lambda > 1)
        return uf__err(UF_ERR_ARG, "bpm lambda %g: must be in [0, 1]", p->bpm_lambda);
    if (!isfinite(p->coreset) || p->coreset <= 0 || p->coreset > 1)
        return uf__err(UF_ERR_ARG, "coreset fraction %g: must be in (0, 1]", p->coreset);
    if (p->sampler != UF_SAMPLER_GREEDY && p->sampler != UF_SAMPLER_RANDOM)
        return uf__err(UF_ERR_ARG, "unknown coreset sampler %d", (int)p->sampler);
    if (p->knn < 1 || p->knn > UF__KNN_MAX_K)
        return uf__err(UF_ERR_ARG, "knn %d: must be 1..%d", p->knn, UF__KNN_MAX_K);
    if (!isfinite(p->topk) || p->topk <= 0 || p->topk > 1)
        return uf__err(UF_ERR_ARG, "topk %g: must be in (0, 1]", p->topk);
    if (!isfinite(p->sigma) || p->sigma < 0 || p->sigma > 1000)
        return uf__err(UF_ERR_ARG, "sigma %g: must be in [0, 1000]", p->sigma);
    const int S = uf_preprocess_size(&p->pre);
    if (S < 1 || p->pre.resize < 0 || p->pre.crop < 0 || p->pre.pad_to < 0)
        return uf__err(UF_ERR_ARG, "preprocessing: need a crop, pad_to or resize size > 0");
    if (S > UF__MAX_INPUT_SIDE || p->pre.resize > UF__MAX_INPUT_SIDE)
        return uf__err(UF_ERR_ARG,
                       "preprocessing: %s %d is above the limit of %d pixels (the network "
                       "input is S x S)",
                       p->pre.resize > UF__MAX_INPUT_SIDE ? "resize"
                       : p->pre.pad_to > 0                ? "pad_to"
                                                          : "crop",
                       p->pre.resize > UF__MAX_INPUT_SIDE ? p->pre.resize : S,
                       UF__MAX_INPUT_SIDE);
    for (int c = 0; c < 3; c++)
        if (!isfinite(p->pre.mean[c]) || !isfinite(p->pre.std[c]) || p->pre.std[c] == 0)
            return uf__err(UF_ERR_ARG, "preprocessing: mean/std must be finite, std nonzero");
    if ((unsigned)p->pre.fit > (unsigned)UF_FIT_LONG)
        return uf__err(UF_ERR_ARG, "preprocessing: unknown fit %d", (int)p->pre.fit);
    if (p->pre.fit == UF_FIT_SHORT && whole_image(&p->pre))
        return uf__err(UF_ERR_ARG, "preprocessing: fit short needs a crop or pad_to (crop 0 "
                       "alone fits the longer side to resize)");
    if (p->tile < 0 || p->tile_overlap < 0 || (p->tile == 0 && p->tile_overlap != 0) ||
        (p->tile > 0 && p->tile_overlap >= p->tile))
        return uf__err(UF_ERR_ARG, "tile %d, tile_overlap %d: need tile >= 0 (0 = off) and "
                       "0 <= tile_overlap < tile", p->tile, p->tile_overlap);
    if (p->tile > 0 && !whole_image(&p->pre))
        return uf__err(UF_ERR_ARG, "tile %d: tiling needs the whole-image geometry (crop 0, "
                       "no pad_to)", p->tile);
    if (p->tile > UF__MAX_INPUT_SIDE)
        return uf__err(UF_ERR_ARG, "tile %d is above the limit of %d pixels", p->tile,
                       UF__MAX_INPUT_SIDE);
    if (!bb) return UF_OK;
    if (!last && p->layer_last > bb->w.depth) /* the last block exists in every backbone */
        return uf__err(UF_ERR_ARG,
                       "layers %d-%d need a backbone with at least %d blocks; this one has %d",
                       p->layer_first, p->layer_last, p->layer_last, bb->w.depth);
    if (S < bb->w.patch)
        return uf__err(UF_ERR_ARG, "input size %d is smaller than the patch size %d", S,
                       bb->w.patch);
    if (p->tile % bb->w.patch != 0 || p->tile_overlap % bb->w.patch != 0)
        return uf__err(UF_ERR_ARG, "tile %d, tile_overlap %d: both must be multiples of the "
                       "patch size %d", p->tile, p->tile_overlap, bb->w.patch);
    if (whole_image(&p->pre) && p->pre.resize % bb->w.patch != 0)
        return uf__err(UF_ERR_ARG, "crop 0 (the whole image) needs resize %d to be a multiple "
                       "of the patch size %d", p->pre.resize, bb->w.patch);
    return UF_OK;
}

/* ---- extraction, shared by fitting and scoring --------------------------------------- */

/* Scratch of extract(), grown on demand; one per fitter or scorer. */
typedef struct extractor {
    const uf_backbone *bb;
    uf_detector_params p;
    uf_session *sess;
    int threads;   /* uf_fitter/scorer_set_threads; 0: uf_get_threads() at each call  */
    int S, gh, gw, Np, D, n_sel; /* input side, grid, patches, dim, blocks averaged    */
    int R;         /* patch rows per image of the extraction layout: Np, or for a tiled
                      model ntmax * tnp + 1 (every tile's patches and a header row)    */
    int tg, tnp, ntmax; /* tiled model: tile side in patches, tg * tg, most tiles      */
    float *pixels; /* [CHUNK][3][S][S] */
    float *blocks; /* [n_sel][CHUNK][R][D] */
    float *attn;   /* [CHUNK][Np] */
    float *feats;  /* [CHUNK][R][D]: mean of the selected blocks                       */
    float *smooth; /* [CHUNK][R]: BPM map (smoothed, / max); 1 without BPM; -1 not
                      the image (padding, letterbox bars, unused tile slots, header)   */
    uint8_t *mask; /* [CHUNK][R]: 1 = foreground                                      */
    /* letterbox only (pad_to > 0 with fit long; NULL otherwise) */
    float *lb_attn;  /* [Np] the image's patch rectangle of one attention map          */
    float *lb_map;   /* [Np] its BPM map                                                */
    uint8_t *lb_mask;/* [Np]                                                            */
    int lb[CHUNK][4];/* each image's patch rectangle y0, x0, y1, x1 (end exclusive)     */
    /* whole-image geometry only: one image's own grid at a time (NULL otherwise) */
    float *sub_pixels; /* [3][S][S] the image's window of the canvas                  */
    float *sub_blocks; /* [n_sel][Np][D] its tokens on its own grid                   */
    float *sub_map;    /* [Np] smoothed BPM map on its own grid                       */
    uint8_t *sub_mask; /* [Np]                                                        */
    int sgh[CHUNK], sgw[CHUNK]; /* each image's own grid                             */
    /* tiling only (p.tile > 0; NULL otherwise) */
    float *tile_pixels; /* [TILE_BATCH][3][tile][tile]                                */
    float *tile_blocks; /* [n_sel][TILE_BATCH][tNp][D]                                */
    float *tile_attn;   /* [TILE_BATCH][tNp]                                          */
    int *tile_pos;      /* [2][gh + 1] tile starts along y, then x                     */
    bool tiled[CHUNK];  /* image b ran in tiles: its rows are tile slots (see below)   */
} extractor;

/* The tiled model's layout (p.tile > 0 and smaller than the canvas, whole-image
 * geometry), per image R = ntmax * tnp + 1 rows: tile t (row-major over the image's
 * ny x nx tiles, uf__tile_starts of its own grid) in rows t * tnp .. t * tnp + th * tw - 1
 * (its th x tw patches row-major, th = min(tg, own grid height), tw likewise); the other
 * rows of the slot and the slots of tiles the image does not have are unused (features 0,
 * smooth -1, mask 0); the last row is a header: features [0] and [1] = the image's own
 * grid height and width in patches (the rest 0), smooth -1, mask 0. From the header the
 * tile positions follow, so uf_score_features can stitch the patch scores. ntmax is the
 * most tiles an image can have (its own grid is at most the canvas). */
static void tile_layout(const uf_detector_params *p, int S, int P, int *tg, int *tnp,
                        int *ntmax)
{
    *tg = *tnp = *ntmax = 0;
    if (p->pre.crop != 0 || p->pre.pad_to != 0 || p->tile <= 0 || p->tile >= S || P < 1) return;
    const int n = uf__tile_starts(S, p->tile, p->tile_overlap, NULL);
    *tg = p->tile / P;
    *tnp = *tg * *tg;
    *ntmax = n * n;
}

/* Threads of this fitter's or scorer's calls. */
static int ex_threads(const extractor *e)
{
    return e->threads > 0 ? e->threads : uf_get_threads();
}

static void ex_set_threads(extractor *e, int n)
{
    e->threads = n > 0 ? n : 0;
    uf_session_set_threads(e->sess, e->threads);
}

static void extractor_free(extractor *e)
{
    uf_session_free(e->sess);
    free(e->pixels);
    free(e->blocks);
    free(e->attn);
    free(e->feats);
    free(e->smooth);
    free(e->mask);
    free(e->sub_pixels);
    free(e->sub_blocks);
    free(e->sub_map);
    free(e->sub_mask);
    free(e->tile_pixels);
    free(e->tile_blocks);
    free(e->tile_attn);
    free(e->tile_pos);
    free(e->lb_attn);
    free(e->lb_map);
    free(e->lb_mask);
    memset(e, 0, sizeof *e);
}

static uf_status extractor_init(extractor *e, const uf_backbone *bb, const uf_detector_params *p)
{
    memset(e, 0, sizeof *e);
    e->bb = bb;
    e->p = *p;
    resolve_layers(&e->p, bb->w.depth);
    e->S = uf_preprocess_size(&p->pre);
    e->gh = e->gw = e->S / bb->w.patch;
    e->D = bb->w.dim;
    e->n_sel = p->layer_last - p->layer_first + 1;
    size_t Np = (size_t)e->gh * (size_t)e->gw, D = (size_t)e->D, S = (size_t)e->S;
    tile_layout(p, e->S, bb->w.patch, &e->tg, &e->tnp, &e->ntmax);
    size_t R = e->ntmax ? (size_t)e->ntmax * (size_t)e->tnp + 1 : Np;
    size_t npix, nblk, nfeat, nown;
    if (Np > (size_t)1 << 24 || R > (size_t)1 << 26 || !uf__mul_ok((size_t)CHUNK * 3 * S, S, &npix) ||
        !uf__mul_ok((size_t)CHUNK * R, D, &nfeat) || !uf__mul_ok(nfeat, (size_t)e->n_sel, &nblk) ||
        !uf__mul_ok(Np * D, (size_t)e->n_sel, &nown))
        return uf__err(UF_ERR_LIMIT, "input size %d is too large", e->S);
    e->Np = (int)Np;
    e->R = (int)R;
    uf_status s = uf_session_new(bb, &e->sess);
    if (s != UF_OK) return s;
    e->pixels = malloc(npix * sizeof(float));
    e->blocks = malloc(nblk * sizeof(float));
    e->attn = malloc(CHUNK * Np * sizeof(float));
    e->feats = malloc(nfeat * sizeof(float));
    e->smooth = malloc(CHUNK * R * sizeof(float));
    e->mask = malloc(CHUNK * R);
    /* the letterbox (pad_to with fit long, as --pad-to sets it) leaves its bars out; the
     * reference's small-image protocol (pad_to with the shorter side resized, e.g. 112 on
     * 224 for CIFAR) scores its padding as UniFormaly's code does, and keeps doing so */
    bool lbx = p->pre.pad_to > 0 && p->pre.fit == UF_FIT_LONG;
    if (lbx) {
        e->lb_attn = malloc(Np * sizeof(float));
        e->lb_map = malloc(Np * sizeof(float));
        e->lb_mask = malloc(Np);
    }
    bool sub = whole_image(&p->pre);
    if (sub) {
        e->sub_pixels = malloc(3 * S * S * sizeof(float));
        e->sub_blocks = malloc(nown * sizeof(float));
        e->sub_map = malloc(Np * sizeof(float));
        e->sub_mask = malloc(Np);
    }
    bool tl = e->ntmax > 0;
    if (tl) { /* a tile is at most tile x tile and smaller than the canvas */
        size_t T = (size_t)p->tile, tNp = (size_t)e->tnp;
        e->tile_pixels = malloc((size_t)TILE_BATCH * 3 * T * T * sizeof(float));
        e->tile_blocks = malloc((size_t)TILE_BATCH * tNp * D * (size_t)e->n_sel * sizeof(float));
        e->tile_attn = malloc((size_t)TILE_BATCH * tNp * sizeof(float));
        e->tile_pos = malloc(2 * ((size_t)e->gh + 1) * sizeof(int));
    }
    if (!e->pixels || !e->blocks || !e->attn || !e->feats || !e->smooth || !e->mask ||
        (sub && (!e->sub_pixels || !e->sub_blocks || !e->sub_map || !e->sub_mask)) ||
        (lbx && (!e->lb_attn || !e->lb_map || !e->lb_mask)) ||
        (tl && (!e->tile_pixels || !e->tile_blocks || !e->tile_attn || !e->tile_pos))) {
        extractor_free(e);
        return uf__err(UF_ERR_NOMEM, "out of memory for the detector's buffers");
    }
    return UF_OK;
}

/* "image 9: " naming image idx of a call on total images, for messages; "" when the call
 * holds one image (the caller knows which). buf holds at least 32 bytes. */
static const char *which(char *buf, int idx, int total)
{
    if (total <= 1) return "";
    snprintf(buf, 32, "image %d: ", idx);
    return buf;
}

/* Check the feature rows F [n][Np][D] of n images: every squared norm (summed in double,
 * as the kNN search does) must be finite and at most UF__MAX_SQNORM. The first image at
 * fault gives UF_ERR_NONFINITE naming it (base + its index, of total images); what says
 * where the features come from ("the backbone produced", "uf_score_features: got"). */
static uf_status check_rows(const float *F, int n, int Np, int D, int base, int total,
                            const char *what, int nth)
{
    const size_t rows = (size_t)n * (size_t)Np;
    int bad = 0;
#pragma omp parallel for schedule(static) reduction(| : bad) num_threads(nth)
    for (size_t r = 0; r < rows; r++) {
        const float *x = F + r * (size_t)D; /* [D] */
        double sq = 0;
        for (int c = 0; c < D; c++) sq += (double)x[c] * x[c];
        bad |= !(sq <= UF__MAX_SQNORM);
    }
    for (size_t r = 0; r < rows && bad; r++) { /* find the first row at fault */
        const float *x = F + r * (size_t)D; /* [D] */
        double sq = 0;
        int nonfin = 0;
        for (int c = 0; c < D; c++) sq += (double)x[c] * x[c], nonfin |= !isfinite(x[c]);
        if (sq <= UF__MAX_SQNORM) continue;
        char wb[32];
        return uf__err(UF_ERR_NONFINITE,
                       nonfin ? "%s%s NaN or Inf features (overflow in the network)"
                              : "%s%s features too large to score (squared norm %.3g, above "
                                "1e30: overflow in the network)",
                       which(wb, base + (int)(r / (size_t)Np), total), what, sq);
    }
    return UF_OK;
}

int uf__tile_starts(int n, int tile, int overlap, int *starts)
{
    if (n <= tile) {
        if (starts) starts[0] = 0;
        return 1;
    }
    const int step = tile - overlap;
    int k = 0;
    for (int s0 = 0;; s0 += step) {
        if (s0 + tile >= n) { /* the last tile ends at the edge */
            if (starts) starts[k] = n - tile;
            return k + 1;
        }
        if (starts) starts[k] = s0;
        k++;
    }
}

/* Tiling (p.tile): image b's own window e->sub_pixels ([3][H][W], H x W) runs as
 * tile x tile windows (th x tw when a side is shorter; one window when the image fits in
 * a tile), TILE_BATCH per backbone call, each window at the backbone's own scale. Each
 * window's patch tokens go to its slot of the image's rows of e->blocks (the tiled layout,
 * tile_layout above; the rest zeroed) and its BPM map, computed on the window's own grid
 * and normalised by the window's maximum, to the same rows of e->smooth / e->mask. Nothing
 * is merged here: every tile patch stays a patch of its own (a bank row when fitting, a
 * query when scoring); scoring stitches the tiles' patch SCORES (finish_tiled). */
static uf_status forward_tiles(extractor *e, int b, int n, int H, int W,
                               const uf_forward_request *req)
{
    const int P = e->bb->w.patch, T = e->p.tile, O = e->p.tile_overlap, D = e->D;
    const int th = H < T ? H : T, tw = W < T ? W : T, tgh = th / P, tgw = tw / P;
    const int tNp = tgh * tgw, R = e->R;
    int *ys = e->tile_pos, *xs = e->tile_pos + e->gh + 1;
    const int ny = uf__tile_starts(H, T, O, ys), nx = uf__tile_starts(W, T, O, xs);
    const size_t per_img = (size_t)R * (size_t)D, blk_stride = per_img * (size_t)n;
    const size_t tplane = 3 * (size_t)th * (size_t)tw, trow = (size_t)tNp * (size_t)D;
    float *sm = e->smooth + (size_t)b * R;
    uint8_t *mk = e->mask + (size_t)b * R;
    for (int l = 0; l < e->n_sel; l++)
        memset(e->blocks + (size_t)l * blk_stride + (size_t)b * per_img, 0,
               per_img * sizeof(float));
    for (int i = 0; i < R; i++) sm[i] = -1.0f, mk[i] = 0;
    for (int t0 = 0; t0 < nx * ny; t0 += TILE_BATCH) {
        const int nt = nx * ny - t0 < TILE_BATCH ? nx * ny - t0 : TILE_BATCH;
        for (int t = 0; t < nt; t++) { /* cut the windows, row-major tile order */
            const int y0 = ys[(t0 + t) / nx], x0 = xs[(t0 + t) % nx];
            for (int c = 0; c < 3; c++)
                for (int y = 0; y < th; y++)
                    memcpy(e->tile_pixels + t * tplane + ((size_t)c * th + y) * tw,
                           e->sub_pixels + ((size_t)c * H + y0 + y) * W + x0,
                           (size_t)tw * sizeof(float));
        }
        uf_forward_output out = {.blocks = e->tile_blocks,
                                 .attn = req->attn_block ? e->tile_attn : NULL};
        /* blocks come back as [n_sel][nt][tNp][D] */
        uf_status st = uf_forward(e->sess, e->tile_pixels, nt, th, tw, req, &out);
        if (st != UF_OK) return st;
        for (int t = 0; t < nt; t++) {
            const size_t slot = (size_t)(t0 + t) * (size_t)e->tnp; /* first row of the tile */
            for (int l = 0; l < e->n_sel; l++)
                memcpy(e->blocks + (size_t)l * blk_stride + (size_t)b * per_img + slot * D,
                       e->tile_blocks + ((size_t)l * nt + t) * trow, trow * sizeof(float));
            if (req->attn_block) { /* BPM of this window, on its own grid */
                st = uf__bpm(e->tile_attn + (size_t)t * tNp, tgh, tgw, e->p.bpm_kernel,
                             e->p.bpm_lambda, sm + slot, mk + slot);
                if (st != UF_OK) return st;
                if (e->p.soft_mask) memset(mk + slot, 1, (size_t)tNp);
            } else {
                for (int i = 0; i < tNp; i++) sm[slot + i] = 1.0f, mk[slot + i] = 1;
            }
        }
    }
    e->tiled[b] = true;
    return UF_OK;
}

/* The whole-image geometry: run the backbone on each image's own patch grid (ceil(w / P) x
 * ceil(h / P) patches of its window at the canvas's top-left, edge pixels repeated into the
 * part of the last patches beyond the image; a non-square grid, with the
 * positional embeddings interpolated by uf_forward) and put its tokens at the top-left of
 * the [gh][gw] grid of e->blocks, zero elsewhere; its attention goes compactly to
 * e->attn[b][0 .. gh_b * gw_b). One forward per image: the grids differ. */
static uf_status forward_own_grids(extractor *e, const uf_image *const *imgs, int n,
                                   const uf_forward_request *req)
{
    const int P = e->bb->w.patch, S = e->S, Np = e->Np, D = e->D;
    const size_t plane = 3 * (size_t)S * (size_t)S, per_img = (size_t)e->R * (size_t)D;
    const size_t blk_stride = per_img * (size_t)n; /* blocks is [n_sel][n][Np][D] */
    for (int b = 0; b < n; b++) {
        e->tiled[b] = false;
        int rw, rh;
        uf_preprocess_geometry(&e->p.pre, imgs[b]->width, imgs[b]->height, &rw, &rh, NULL, NULL);
        rw = rw < 1 ? 1 : rw > S ? S : rw;
        rh = rh < 1 ? 1 : rh > S ? S : rh;
        int gw = (rw + P - 1) / P, gh = (rh + P - 1) / P;
        gw = gw < 1 ? 1 : gw > e->gw ? e->gw : gw;
        gh = gh < 1 ? 1 : gh > e->gh ? e->gh : gh;
        e->sgh[b] = gh;
        e->sgw[b] = gw;
        const int H = gh * P, W = gw * P;
        const float *src = e->pixels + (size_t)b * plane; /* [3][S][S] */
        /* the window; where the last column or row of patches runs past the image (w or h
         * not a multiple of P), the image's edge pixels are repeated instead of the zero
         * canvas, so a border patch looks like the part and not like a black bar */
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < H; y++) {
                float *row = e->sub_pixels + ((size_t)c * H + y) * W;
                const int sy = y < rh ? y : rh - 1;
                memcpy(row, src + ((size_t)c * S + sy) * S, (size_t)rw * sizeof(float));
                for (int x = rw; x < W; x++) row[x] = row[rw - 1];
            }
        if (e->ntmax) { /* a tiled model: every image in the tiled layout */
            uf_status st = forward_tiles(e, b, n, H, W, req);
            if (st != UF_OK) return st;
            continue;
        }
        uf_forward_output out = {.blocks = e->sub_blocks,
                                 .attn = req->attn_block ? e->attn + (size_t)b * Np : NULL};
        uf_status st = uf_forward(e->sess, e->sub_pixels, 1, H, W, req, &out);
        if (st != UF_OK) return st;
        const size_t own = (size_t)gh * (size_t)gw * (size_t)D; /* sub_blocks: [n_sel][gh*gw][D] */
        for (int l = 0; l < e->n_sel; l++) {
            float *dst = e->blocks + (size_t)l * blk_stride + (size_t)b * per_img;
            memset(dst, 0, per_img * sizeof(float));
            for (int y = 0; y < gh; y++)
                memcpy(dst + (size_t)y * e->gw * D, e->sub_blocks + l * own + (size_t)y * gw * D,
                       (size_t)gw * D * sizeof(float));
        }
    }
    return UF_OK;
}

/* BPM map and mask of image b on its own grid, spread onto the [gh][gw] grid; a padding
 * patch gets smooth -1 (uf_scorer_extract's mark of "not the image") and mask 0. */
static uf_status own_grid_masks(extractor *e, int b, float *sm, uint8_t *mk)
{
    const int gh = e->sgh[b], gw = e->sgw[b];
    if (e->tiled[b]) return UF_OK; /* forward_tiles wrote the tiles' maps and masks */
    if (e->p.bpm) {
        uf_status st = uf__bpm(e->attn + (size_t)b * e->Np, gh, gw, e->p.bpm_kernel,
                               e->p.bpm_lambda, e->sub_map, e->sub_mask);
        if (st != UF_OK) return st;
    }
    for (int y = 0; y < e->gh; y++)
        for (int x = 0; x < e->gw; x++) {
            int i = y * e->gw + x, inside = y < gh && x < gw;
            sm[i] = !inside ? -1.0f : e->p.bpm ? e->sub_map[y * gw + x] : 1.0f;
            mk[i] = inside && (!e->p.bpm || e->p.soft_mask || e->sub_mask[y * gw + x]);
        }
    return UF_OK;
}

/* The letterbox (pad_to > 0, fit long): the rectangle of network pixels [*a, *b) along one side
 * that show the image (not the zero canvas, nor torchvision's padding of a crop larger than
 * the image): network pixel u shows resized pixel u + off (uf_preprocess_geometry), the
 * image (or crop, cw wide) is placed at (pad_to - cw) / 2. */
static void letterbox_span(const uf_preprocess *p, int S, int off, int rn, int *a, int *b)
{
    const int cw = p->crop > 0 ? p->crop : rn, n0 = (p->pad_to - cw) / 2, n1 = n0 + cw;
    int lo = n0 > -off ? n0 : -off, hi = n1 < rn - off ? n1 : rn - off;
    lo = lo < 0 ? 0 : lo > S ? S : lo;
    hi = hi < lo ? lo : hi > S ? S : hi;
    *a = lo;
    *b = hi;
}

/* The letterbox of image b (its preprocessed canvas px [3][S][S]): e->lb[b] = the patches
 * that show some of the image (y0, x0, y1, x1, end exclusive; all of them if none does).
 * A patch lying entirely in the bars is not the image: it gets smooth -1 and mask 0
 * (letterbox_masks), as the whole-image geometry's padding patches, so it is neither put in
 * a bank nor scored. A patch partly on the image stays, and the part of it in the bar gets
 * the image's edge pixels repeated (as the own grid's last patches do) instead of black:
 * a bar of a pixel or two would otherwise change the border patches' features enough to
 * flag an image that is a few pixels off square (measured: a bottle good image scored
 * 20.0 square, 337 cut to 900 x 896 pixels, on a model fitted on squares). */
static void letterbox_prepare(extractor *e, int b, const uf_image *img, float *px)
{
    const int S = e->S, P = e->bb->w.patch;
    int rw, rh, left, top, x0, x1, y0, y1;
    uf_preprocess_geometry(&e->p.pre, img->width, img->height, &rw, &rh, &left, &top);
    letterbox_span(&e->p.pre, S, left, rw, &x0, &x1);
    letterbox_span(&e->p.pre, S, top, rh, &y0, &y1);
    int *r = e->lb[b];
    if (x1 <= x0 || y1 <= y0) { /* nothing shown: keep the whole grid */
        r[0] = r[1] = 0, r[2] = e->gh, r[3] = e->gw;
        return;
    }
    r[0] = y0 / P, r[1] = x0 / P, r[2] = (y1 + P - 1) / P, r[3] = (x1 + P - 1) / P;
    for (int c = 0; c < 3; c++) {
        float *pl = px + (size_t)c * S * S; /* [S][S] */
        for (int y = r[0] * P; y < r[2] * P; y++) {
            const int sy = y < y0 ? y0 : y >= y1 ? y1 - 1 : y;
            float *row = pl + (size_t)y * S;
            const float *src = pl + (size_t)sy * S;
            for (int x = r[1] * P; x < r[3] * P; x++)
                if (y != sy || x < x0 || x >= x1) row[x] = src[x < x0 ? x0 : x >= x1 ? x1 - 1 : x];
        }
    }
}

/* BPM map and mask of letterboxed image b: BPM on the image's patch rectangle e->lb[b]
 * only (pooled and normalised there, as the own grid's), the bar patches outside it marked
 * smooth -1, mask 0. For a square image the rectangle is the grid: as without bars. */
static uf_status letterbox_masks(extractor *e, int b, float *sm, uint8_t *mk)
{
    const int *r = e->lb[b], h = r[2] - r[0], w = r[3] - r[1];
    if (e->p.bpm) {
        const float *at = e->attn + (size_t)b * e->Np;
        for (int y = 0; y < h; y++)
            memcpy(e->lb_attn + (size_t)y * w, at + (size_t)(r[0] + y) * e->gw + r[1],
                   (size_t)w * sizeof(float));
        uf_status st = uf__bpm(e->lb_attn, h, w, e->p.bpm_kernel, e->p.bpm_lambda, e->lb_map,
                               e->lb_mask);
        if (st != UF_OK) return st;
    }
    for (int y = 0; y < e->gh; y++)
        for (int x = 0; x < e->gw; x++) {
            const int i = y * e->gw + x, in = y >= r[0] && y < r[2] && x >= r[1] && x < r[3];
            const int j = (y - r[0]) * w + (x - r[1]);
            sm[i] = !in ? -1.0f : e->p.bpm ? e->lb_map[j] : 1.0f;
            mk[i] = in && (!e->p.bpm || e->p.soft_mask || e->lb_mask[j]);
        }
    return UF_OK;
}

/* Features, BPM maps and masks of n <= CHUNK images into e->feats/smooth/mask. base is
 * the index of imgs[0] among the caller's total images, for the messages. An image whose
 * features are NaN, Inf or absurdly large (check_rows) is refused with UF_ERR_NONFINITE
 * naming it: it would otherwise be scored (or put in a bank) as Inf or NaN. fit: the
 * images are training images (the PCA mask, which AnomalyDINO applies to test images
 * only, is then not computed). The masks come from the raw features; with cosine the
 * features are L2-normalised after that (AnomalyDINO masks, then faiss.normalize_L2). */
static uf_status extract(extractor *e, const uf_image *const *imgs, int n, int base,
                         int total, bool fit)
{
    char wb[32];
    const size_t plane = 3 * (size_t)e->S * (size_t)e->S;
    uf_status st = UF_OK;
    for (int b = 0; b < n; b++)
        if (!imgs[b]) return uf__err(UF_ERR_ARG, "image %d is NULL", base + b);
    /* preprocessing is independent per image; each thread's error message is its own, so
     * the first failure is re-raised on this thread after the loop */
    uf_status stb[CHUNK];
    char msg[CHUNK][256];
    const int nth = ex_threads(e);
#pragma omp parallel for schedule(dynamic, 1) num_threads(n < nth ? n : nth)
    for (int b = 0; b < n; b++) {
        stb[b] = uf_preprocess_image(imgs[b], &e->p.pre, e->pixels + (size_t)b * plane);
        if (stb[b] != UF_OK) snprintf(msg[b], sizeof msg[b], "%s", uf_errmsg());
    }
    for (int b = 0; b < n; b++)
        if (stb[b] != UF_OK) return uf__err(stb[b], "%s%s", which(wb, base + b, total), msg[b]);
    if (e->lb_map)
        for (int b = 0; b < n; b++) letterbox_prepare(e, b, imgs[b], e->pixels + (size_t)b * plane);

    uf_forward_request req = {0};
    for (int l = e->p.layer_first; l <= e->p.layer_last; l++) req.blocks |= (uint64_t)1 << (l - 1);
    const int need_attn = e->p.bpm;
    req.attn_block = need_attn ? e->p.layer_last : 0;
    req.rollout = need_attn && e->p.rollout;
    if (e->sub_pixels) {
        st = forward_own_grids(e, imgs, n, &req);
    } else {
        uf_forward_output out = {.blocks = e->blocks, .attn = need_attn ? e->attn : NULL};
        st = uf_forward(e->sess, e->pixels, n, e->S, e->S, &req, &out);
    }
    if (st != UF_OK) return st;

    /* feats = mean of the selected blocks, summed in block order (deterministic) */
    const size_t R = (size_t)e->R, per_img = R * (size_t)e->D, n_vals = per_img * (size_t)n;
    const size_t blk_stride = per_img * (size_t)n; /* blocks is [n_sel][n][R][D] */
    const float inv = 1.0f / (float)e->n_sel;
#pragma omp parallel for schedule(static) num_threads(nth)
    for (size_t i = 0; i < n_vals; i++) {
        float acc = e->blocks[i];
        for (int l = 1; l < e->n_sel; l++) acc += e->blocks[(size_t)l * blk_stride + i];
        e->feats[i] = acc * inv;
    }
    st = check_rows(e->feats, n, e->R, e->D, base, total, "the backbone produced", nth);
    if (st != UF_OK) return st;

    for (int b = 0; b < n; b++) {
        float *sm = e->smooth + (size_t)b * R;
        uint8_t *mk = e->mask + (size_t)b * R;
        if (e->sub_pixels) {
            st = own_grid_masks(e, b, sm, mk);
            if (st != UF_OK) return st;
            continue;
        }
        if (e->lb_map) {
            st = letterbox_masks(e, b, sm, mk);
            if (st != UF_OK) return st;
            continue;
        }
        if (!e->p.bpm) {
            for (int i = 0; i < e->Np; i++) sm[i] = 1.0f, mk[i] = 1;
            continue;
        }
        st = uf__bpm(e->attn + (size_t)b * e->Np, e->gh, e->gw, e->p.bpm_kernel,
                     e->p.bpm_lambda, sm, mk);
        if (st != UF_OK) return st;
        if (e->p.soft_mask) memset(mk, 1, (size_t)e->Np); /* soft: nothing is dropped */
    }
    if (e->p.pca_mask && !fit) {
        uf_status stp[CHUNK];
#pragma omp parallel for schedule(dynamic, 1) num_threads(n < nth ? n : nth)
        for (int b = 0; b < n; b++) {
            float *F = e->feats + (size_t)b * per_img;
            uint8_t *mk = e->mask + (size_t)b * R;
            if (e->ntmax) { /* each tile on its own grid */
                const int th = e->sgh[b] < e->tg ? e->sgh[b] : e->tg;
                const int tw = e->sgw[b] < e->tg ? e->sgw[b] : e->tg;
                const int P = e->bb->w.patch, T = e->p.tile, O = e->p.tile_overlap;
                const int nt = uf__tile_starts(e->sgh[b] * P, T, O, NULL) *
                               uf__tile_starts(e->sgw[b] * P, T, O, NULL);
                stp[b] = UF_OK;
                for (int t = 0; t < nt && stp[b] == UF_OK; t++)
                    stp[b] = uf__pca_mask(F + (size_t)t * e->tnp * e->D, th, tw, tw, e->D,
                                          e->p.pca_threshold, mk + (size_t)t * e->tnp);
                continue;
            }
            /* the image's own grid in the whole-image geometry */
            stp[b] = uf__pca_mask(F, e->sub_pixels ? e->sgh[b] : e->gh,
                                  e->sub_pixels ? e->sgw[b] : e->gw, e->gw, e->D,
                                  e->p.pca_threshold, mk);
            if (e->lb_map) /* the letterbox's bar patches stay out */
                for (int i = 0; i < e->Np; i++) mk[i] &= e->smooth[(size_t)b * R + i] >= 0;
        }
        for (int b = 0; b < n; b++)
            if (stp[b] != UF_OK) return uf__err(stp[b], "%s%s", which(wb, base + b, total),
                                                "out of memory for the PCA mask");
    }
    if (e->p.cosine) {
        const size_t rows = (size_t)n * R;
#pragma omp parallel for schedule(static) num_threads(nth)
        for (size_t r = 0; r < rows; r++) uf__l2_normalize(e->feats + r * (size_t)e->D, e->D);
    }
    for (int b = 0; b < n; b++) /* the tiled layout's header row: the own grid's size */
        if (e->ntmax) {
            float *h = e->feats + (size_t)b * per_img + (R - 1) * (size_t)e->D;
            h[0] = (float)e->sgh[b];
            h[1] = (float)e->sgw[b];
        }
    return UF_OK;
}

void uf__l2_normalize(float *x, int D)
{
    double sq = 0;
    for (int c = 0; c < D; c++) sq += (double)x[c] * x[c];
    if (!(sq > 0)) return; /* a zero row (padding) stays zero */
    const double inv = 1.0 / sqrt(sq);
    for (int c = 0; c < D; c++) x[c] = (float)(x[c] * inv);
}

/* ---- fitting ------------------------------------------------------------------------- */

struct uf_fitter {
    extractor ex;
    float *bank;     /* [cap][D], rows 0..n-1 used */
    size_t n, cap;   /* rows used, rows allocated  */
    size_t n_train;  /* images added               */
};

uf_status uf_fitter_new(const uf_backbone *bb, const uf_detector_params *p, uf_fitter **out)
{
    if (!out) return uf__err(UF_ERR_ARG, "uf_fitter_new: NULL output");
    *out = NULL;
    if (!bb) return uf__err(UF_ERR_ARG, "uf_fitter_new: NULL backbone");
    uf_detector_params dp = p ? *p : uf_detector_default_params();
    uf_status s = uf_detector_params_check(&dp, bb);
    if (s != UF_OK) return s;
    uf_fitter *f = calloc(1, sizeof *f);
    if (!f) return uf__err(UF_ERR_NOMEM, "out of memory");
    s = extractor_init(&f->ex, bb, &dp);
    if (s != UF_OK) {
        free(f);
        return s;
    }
    *out = f;
    return UF_OK;
}

/* Make room for extra more bank rows (growth by half: realloc of large blocks is an
 * mremap on glibc, so growing costs no copy and no second bank in memory). */
static uf_status bank_reserve(uf_fitter *f, size_t extra)
{
    size_t need;
    if (!uf__add_ok(f->n, extra, &need) || need > ((size_t)1 << 31))
        return uf__err(UF_ERR_LIMIT, "memory bank beyond 2^31 patches");
    if (need <= f->cap) return UF_OK;
    size_t cap = f->cap + f->cap / 2;
    if (cap < need) cap = need;
    if (cap < 4096) cap = 4096;
    size_t bytes;
    if (!uf__mul_ok(cap, (size_t)f->ex.D * sizeof(float), &bytes))
        return uf__err(UF_ERR_LIMIT, "memory bank too large");
    float *nb = realloc(f->bank, bytes);
    if (!nb) return uf__err(UF_ERR_NOMEM, "out of memory growing the bank to %zu patches", cap);
    f->bank = nb;
    f->cap = cap;
    return UF_OK;
}

/* Extract c <= CHUNK images and append their foreground rows to the bank. */
static uf_status add_chunk(uf_fitter *f, const uf_image *const *imgs, int c, int base, int total)
{
    const size_t D = (size_t)f->ex.D, R = (size_t)f->ex.R;
    uf_status s = extract(&f->ex, imgs, c, base, total, true);
    if (s == UF_OK) s = bank_reserve(f, (size_t)c * R);
    if (s != UF_OK) return s;
    /* tiled: every tile's foreground patches go in (a location in an overlap, seen in two
     * tiles' contexts, gives two rows: a test patch there is scored in each context too) */
    for (int b = 0; b < c; b++)
        for (size_t i = 0; i < R; i++)
            if (f->ex.mask[(size_t)b * R + i])
                memcpy(f->bank + f->n++ * D, f->ex.feats + ((size_t)b * R + i) * D,
                       D * sizeof(float));
    return UF_OK;
}

/* Image i with its rotations (rotate.c; AnomalyDINO's augment_image):
 * the image itself, then rotated by 360 r / R degrees for r = 1..R-1, in that order. */
static uf_status add_rotated(uf_fitter *f, const uf_image *img, int i, int total)
{
    const int R = f->ex.p.rotations;
    uf_status s = UF_OK;
    for (int r0 = 0; r0 < R && s == UF_OK; r0 += CHUNK) {
        const int c = R - r0 < CHUNK ? R - r0 : CHUNK;
        uf_image *rot[CHUNK] = {NULL};
        const uf_image *v[CHUNK];
        for (int k = 0; k < c && s == UF_OK; k++) {
            const int r = r0 + k;
            if (r == 0) v[k] = img;
            else if ((s = uf__image_rotate(img, 360.0 * r / R, &rot[k])) == UF_OK) v[k] = rot[k];
        }
        if (s == UF_OK) s = add_chunk(f, v, c, 0, 1); /* messages name image i below */
        for (int k = 0; k < c; k++) uf_image_free(rot[k]);
    }
    if (s != UF_OK && total > 1) {
        char pre[32];
        snprintf(pre, sizeof pre, "image %d", i);
        uf__err_prefix(s, pre);
    }
    return s;
}

uf_status uf_fitter_add(uf_fitter *f, const uf_image *const *imgs, int n)
{
    if (!f || (n > 0 && !imgs) || n < 0) return uf__err(UF_ERR_ARG, "uf_fitter_add: bad arguments");
    const size_t n0 = f->n; /* rolled back to on failure */
    uf_status s = UF_OK;
    if (f->ex.p.rotations > 1) {
        for (int i = 0; i < n && s == UF_OK; i++) {
            if (!imgs[i]) s = uf__err(UF_ERR_ARG, "image %d is NULL", i);
            else s = add_rotated(f, imgs[i], i, n);
        }
    } else {
        for (int c0 = 0; c0 < n && s == UF_OK; c0 += CHUNK)
            s = add_chunk(f, imgs + c0, n - c0 < CHUNK ? n - c0 : CHUNK, c0, n);
    }
    if (s != UF_OK) {
        f->n = n0;
        return s;
    }
    f->n_train += (size_t)n;
    return UF_OK;
}

size_t uf_fitter_bank_size(const uf_fitter *f) { return f ? f->n : 0; }

void uf_fitter_set_threads(uf_fitter *f, int n)
{
    if (f) ex_set_threads(&f->ex, n);
}

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

uf_status uf_fitter_finish(uf_fitter *f, uf_progress_fn progress, void *user, uf_model **out)
{
    if (!out) return uf__err(UF_ERR_ARG, "uf_fitter_finish: NULL output");
    *out = NULL;
    if (!f) return uf__err(UF_ERR_ARG, "uf_fitter_finish: NULL fitter");
    if (f->n_train == 0) return uf__err(UF_ERR_ARG, "no training image was added");
    if (f->n == 0)
        return uf__err(UF_ERR_ARG, "every patch of the %zu training images was background; "
                                   "lower the BPM threshold or turn BPM off", f->n_train);
    const uf_detector_params *p = &f->ex.p;
    const size_t D = (size_t)f->ex.D, N = f->n;
    /* tiled: the fraction is of every tile's foreground patches, overlap duplicates
     * included (a location in an overlap, seen in two tiles' contexts, is two rows). The
     * greedy k-center search is not drawn to near-duplicates (it picks the farthest point
     * each time), and a bank kept at the size of the image locations instead (tried: the
     * fraction times locations / tile patches) scored MTD lower (320/224/64: image AUROC
     * 0.9263 vs 0.9390 with the tile patches' count), since it must cover every tile
     * context with the same budget. The cost: the bank, and the search's n_keep x N,
     * grow with the tiles' coverage. */
    const double frac = p->coreset;
    size_t n_keep = uf__coreset_count(N, frac);
    if (n_keep < (size_t)p->knn)
        return uf__err(UF_ERR_ARG, "the bank would hold %zu patches, fewer than knn = %d",
                       n_keep, p->knn);
    if (progress && progress(user, "coreset", 0, n_keep))
        return uf__err(UF_ERR_ARG, "cancelled");
    float *bank = NULL;
    if (n_keep >= N) { /* keep all, in training order: hand the buffer over */
        bank = realloc(f->bank, N * D * sizeof(float));
        if (!bank) bank = f->bank;
        f->bank = NULL;
    } else {
        size_t *idx = malloc(n_keep * sizeof *idx);
        if (!idx) return uf__err(UF_ERR_NOMEM, "out of memory");
        size_t got = 0;
        uf_status s = p->sampler == UF_SAMPLER_RANDOM
                          ? uf__coreset_random(N, frac, p->seed, idx, &got)
                          : uf__coreset_greedy_progress(f->bank, N, (int)D, frac, p->seed,
                                                        idx, &got, progress, user,
                                                        ex_threads(&f->ex));
        if (s != UF_OK) {
            free(idx);
            return s;
        }
        /* training order, duplicates dropped (the greedy search repeats index 0 once
         * every remaining point coincides with a selected one) */
        qsort(idx, got, sizeof *idx, cmp_size);
        size_t m = 0;
        for (size_t i = 0; i < got; i++)
            if (m == 0 || idx[i] != idx[m - 1]) idx[m++] = idx[i];
        bank = malloc(m * D * sizeof(float));
        if (!bank) {
            free(idx);
            return uf__err(UF_ERR_NOMEM, "out of memory");
        }
        for (size_t i = 0; i < m; i++) memcpy(bank + i * D, f->bank + idx[i] * D, D * sizeof(float));
        free(idx);
        n_keep = m;
        free(f->bank);
        f->bank = NULL;
    }
    f->n = f->cap = 0;
    uf_status s = uf__model_new(f->ex.bb, p, bank, n_keep, N, f->n_train, out);
    if (s == UF_OK && progress) progress(user, "coreset", n_keep, n_keep);
    f->n_train = 0;
    return s;
}

void uf_fitter_free(uf_fitter *f)
{
    if (!f) return;
    extractor_free(&f->ex);
    free(f->bank);
    free(f);
}

/* ---- the model ----------------------------------------------------------------------- */

uf_status uf__model_new(const uf_backbone *bb, const uf_detector_params *p, float *bank,
                        size_t n_bank, size_t n_bank_full, size_t n_train, uf_model **out)
{
    *out = NULL;
    uf_model *m = calloc(1, sizeof *m);
    const char *path = bb && bb->path ? bb->path : "";
    char *pcopy = strdup(path);
    float *norm = n_bank ? malloc(n_bank * sizeof(float)) : NULL;
    uf_status s = UF_OK;
    if (!m || !pcopy || !norm)
        s = uf__err(UF_ERR_NOMEM, "out of memory");
    else if (!bb || !p || !bank)
        s = uf__err(UF_ERR_ARG, "uf__model_new: NULL argument");
    else
        s = uf__knn_bank_norms(bank, n_bank, bb->w.dim, norm);
    if (s == UF_OK) {
        for (size_t i = 0; i < n_bank; i++)
            if (!isfinite(norm[i])) {
                s = uf__err(UF_ERR_NONFINITE, "memory bank row %zu is not finite", i);
                break;
            }
    }
    if (s != UF_OK) {
        free(m);
        free(pcopy);
        free(norm);
        free(bank);
        return s;
    }
    m->params = *p;
    resolve_layers(&m->params, bb->w.depth);
    m->bb = bb;
    m->dim = bb->w.dim;
    m->n_bank = n_bank;
    m->n_bank_full = n_bank_full;
    m->n_train = n_train;
    m->bank = bank;
    m->bank_norm = norm;
    m->threshold = NAN;
    m->backbone_path = pcopy;
    memcpy(m->backbone_sha256, bb->sha256, sizeof m->backbone_sha256);
    m->backbone_sha256[64] = '\0';
    *out = m;
    return UF_OK;
}

void uf_model_free(uf_model *m)
{
    if (!m) return;
    free(m->embedded_src);
    free(m->bank);
    free(m->bank_norm);
    free(m->backbone_path);
    uf_backbone_free(m->bb_owned);
    free(m);
}

void uf_model_get_info(const uf_model *m, uf_model_info *info)
{
    if (!info) return;
    memset(info, 0, sizeof *info);
    if (!m) return;
    info->params = m->params;
    info->bank_size = m->n_bank;
    info->bank_size_full = m->n_bank_full;
    info->n_train = m->n_train;
    info->dim = m->dim;
    info->bank_bytes = m->n_bank * (size_t)m->dim * sizeof(float);
    info->threshold = m->threshold;
    uf_backbone_get_info(m->bb, &info->backbone);
    info->backbone_path = m->backbone_path ? m->backbone_path : "";
    info->backbone_sha256 = m->backbone_sha256;
    info->backbone_embedded = m->embedded;
}

void uf_model_set_threshold(uf_model *m, float threshold)
{
    if (m) m->threshold = isfinite(threshold) ? threshold : NAN;
}

uf_status uf_model_set_precision(uf_model *m, uf_precision p)
{
    if (!m) return uf__err(UF_ERR_ARG, "uf_model_set_precision: model is NULL");
    /* the model's backbone: owned (loaded models) or the fitter's, which the caller owns */
    return uf_backbone_set_precision((uf_backbone *)m->bb, p);
}

const float *uf_model_bank(const uf_model *m) { return m ? m->bank : NULL; }

void uf_model_output_size(const uf_model *m, int *gh, int *gw, int *S, int *D)
{
    int s = m ? uf_preprocess_size(&m->params.pre) : 0;
    int g = m && m->bb->w.patch ? s / m->bb->w.patch : 0;
    if (gh) *gh = g;
    if (gw) *gw = g;
    if (S) *S = s;
    if (D) *D = m ? m->dim : 0;
}

/* ---- scoring ------------------------------------------------------------------------- */

struct uf_scorer {
    const uf_model *m;
    extractor ex;
    float *dist;   /* [CHUNK][R] unmasked patch scores  */
    float *fgq;    /* [CHUNK * R][D] queries searched    */
    float *fgd;    /* [CHUNK * R] their distances       */
    float *masked; /* [max(R, Np)] scores after masking  */
    int *topidx;   /* [R] top-K positions                 */
    float *tmp;    /* [S][S] Gaussian scratch              */
    /* tiled models: the stitched maps of one image (NULL otherwise) */
    float *st_d;   /* [Np] patch scores, combined over the tiles covering each patch */
    float *st_sm;  /* [Np] BPM map, likewise; -1 outside the image                   */
    int *st_cnt;   /* [Np] tiles covering each patch                                  */
    uint8_t *st_mk;/* [Np] 1 = foreground in a covering tile                         */
    int *st_pos;   /* [2][gh + 1] tile starts along y, then x                         */
};

int uf_model_patch_rows(const uf_model *m)
{
    if (!m) return 0;
    const int S = uf_preprocess_size(&m->params.pre), P = m->bb->w.patch;
    int tg, tnp, ntmax;
    tile_layout(&m->params, S, P, &tg, &tnp, &ntmax);
    return ntmax ? ntmax * tnp + 1 : (S / P) * (S / P);
}

uf_status uf_scorer_new(const uf_model *m, uf_scorer **out)
{
    if (!out) return uf__err(UF_ERR_ARG, "uf_scorer_new: NULL output");
    *out = NULL;
    if (!m) return uf__err(UF_ERR_ARG, "uf_scorer_new: NULL model");
    uf_scorer *s = calloc(1, sizeof *s);
    if (!s) return uf__err(UF_ERR_NOMEM, "out of memory");
    uf_status st = extractor_init(&s->ex, m->bb, &m->params);
    if (st != UF_OK) {
        free(s);
        return st;
    }
    s->m = m;
    size_t Np = (size_t)s->ex.Np, S = (size_t)s->ex.S, R = (size_t)s->ex.R;
    s->dist = malloc(CHUNK * R * sizeof(float));
    s->fgq = malloc(CHUNK * R * (size_t)s->ex.D * sizeof(float));
    s->fgd = malloc(CHUNK * R * sizeof(float));
    s->masked = malloc((R > Np ? R : Np) * sizeof(float));
    s->topidx = malloc(R * sizeof(int));
    s->tmp = malloc(S * S * sizeof(float));
    bool tl = s->ex.ntmax > 0, bad = false;
    if (tl) {
        s->st_d = malloc(Np * sizeof(float));
        s->st_sm = malloc(Np * sizeof(float));
        s->st_cnt = malloc(Np * sizeof(int));
        s->st_mk = malloc(Np);
        s->st_pos = malloc(2 * ((size_t)s->ex.gh + 1) * sizeof(int));
        bad = !s->st_d || !s->st_sm || !s->st_cnt || !s->st_mk || !s->st_pos;
    }
    if (!s->dist || !s->fgq || !s->fgd || !s->masked || !s->topidx || !s->tmp || bad) {
        uf_scorer_free(s);
        return uf__err(UF_ERR_NOMEM, "out of memory for the scorer's buffers");
    }
    *out = s;
    return UF_OK;
}

void uf_scorer_set_threads(uf_scorer *s, int n)
{
    if (s) ex_set_threads(&s->ex, n);
}

void uf_scorer_free(uf_scorer *s)
{
    if (!s) return;
    extractor_free(&s->ex);
    free(s->dist);
    free(s->fgq);
    free(s->fgd);
    free(s->masked);
    free(s->topidx);
    free(s->tmp);
    free(s->st_d);
    free(s->st_sm);
    free(s->st_cnt);
    free(s->st_mk);
    free(s->st_pos);
    free(s);
}

/* The [S][S] pixel map of patch scores d [gh][gw]: upsampled bilinearly and smoothed.
 * When some patches are not the image (smooth < 0: the whole-image geometry's padding,
 * the letterbox's bars), only the rectangle of the image's patches is upsampled and
 * smoothed, as a map of its own size, so what is not the image does not bleed into the
 * image's border; the other pixels get that map's minimum. */
static uf_status pixel_map(uf_scorer *s, const float *d, const float *sm, float *map)
{
    const extractor *e = &s->ex;
    const int S = e->S, P = e->bb->w.patch;
    int y0 = e->gh, y1 = 0, x0 = e->gw, x1 = 0;
    for (int y = 0; y < e->gh; y++)
        for (int x = 0; x < e->gw; x++)
            if (sm[(size_t)y * e->gw + x] >= 0) {
                y0 = y < y0 ? y : y0, y1 = y + 1 > y1 ? y + 1 : y1;
                x0 = x < x0 ? x : x0, x1 = x + 1 > x1 ? x + 1 : x1;
            }
    if (y1 <= y0 || x1 <= x0) y0 = x0 = 0, y1 = e->gh, x1 = e->gw; /* features from elsewhere */
    const int gh = y1 - y0, gw = x1 - x0;
    if (gh == e->gh && gw == e->gw) {
        uf_status st = uf__upsample_bilinear(d, gh, gw, map, S, S);
        if (st == UF_OK && e->p.sigma > 0) st = uf__gaussian_filter(map, S, S, e->p.sigma, s->tmp);
        return st;
    }
    const int H = gh * P, W = gw * P; /* the image's patches' pixels, < S x S */
    float *own = s->masked;           /* [gh][gw] compact (masked is free again here) */
    for (int y = 0; y < gh; y++)
        memcpy(own + y * gw, d + (size_t)(y0 + y) * e->gw + x0, gw * sizeof(float));
    uf_status st = uf__upsample_bilinear(own, gh, gw, map, H, W); /* [H][W] at map's start */
    if (st == UF_OK && e->p.sigma > 0) st = uf__gaussian_filter(map, H, W, e->p.sigma, s->tmp);
    if (st != UF_OK) return st;
    float lo = map[0];
    for (size_t i = 1; i < (size_t)H * W; i++) lo = map[i] < lo ? map[i] : lo;
    memcpy(s->tmp, map, (size_t)H * W * sizeof(float)); /* tmp is free after the filter */
    for (size_t i = 0; i < (size_t)S * S; i++) map[i] = lo;
    for (int y = 0; y < H; y++)
        memcpy(map + (size_t)(y0 * P + y) * S + (size_t)x0 * P, s->tmp + (size_t)y * W,
               (size_t)W * sizeof(float));
    return UF_OK;
}

/* The image score of n masked patch scores (s->masked) and, if o asks, the top-K feature
 * from the rows F [n][D]. */
static uf_status image_score(uf_scorer *s, int n, const float *F, uf_score *o)
{
    const int D = s->ex.D;
    int K = 0;
    uf_status st = uf__topk_mean(s->masked, n, s->ex.p.topk, &o->score, s->topidx, &K);
    if (st != UF_OK) return st;
    if (o->feature) { /* mean of the top-K patches' features, summed in double */
        for (int j = 0; j < D; j++) {
            double acc = 0;
            for (int k = 0; k < K; k++) acc += F[(size_t)s->topidx[k] * D + j];
            o->feature[j] = (float)(acc / K);
        }
    }
    return UF_OK;
}

/* The masked score of patch i: background 0 (hard mask) or the score weighted by the BPM
 * map (soft mask); smooth < 0 (not the image) 0 either way. */
static void mask_scores(const extractor *e, const float *d, const float *sm, const uint8_t *mk,
                        int n, float *out)
{
    for (int i = 0; i < n; i++)
        out[i] = e->p.bpm && e->p.soft_mask ? (sm[i] > 0 ? d[i] * sm[i] : 0.0f)
                                            : (mk[i] ? d[i] : 0.0f);
}

/* Everything derived from one image's patch scores d [Np] into *o; F [Np][D], sm [Np],
 * mk [Np] are that image's features, BPM map and mask. */
static uf_status finish_image(uf_scorer *s, const float *d, const float *F, const float *sm,
                              const uint8_t *mk, uf_score *o)
{
    const extractor *e = &s->ex;
    const int Np = e->Np, D = e->D;
    mask_scores(e, d, sm, mk, Np, s->masked);
    uf_status st = image_score(s, Np, F, o);
    if (st != UF_OK) return st;
    if (o->patch_scores) memcpy(o->patch_scores, d, (size_t)Np * sizeof(float));
    if (o->mask) memcpy(o->mask, mk, (size_t)Np);
    if (o->patch_features) memcpy(o->patch_features, F, (size_t)Np * D * sizeof(float));
    if (o->pixel_map) st = pixel_map(s, d, sm, o->pixel_map);
    return st;
}

/* A tiled model's image (the layout of tile_layout; d [R] the rows' patch scores, F [R][D],
 * sm [R], mk [R]): the image score is the top-K mean over every tile's patches (R - 1
 * rows, the header left out; unused slots score 0 like the own grid's padding), the top-K
 * feature likewise; the maps on the [gh][gw] grid are stitched from the tiles: each
 * location's patch score (and BPM value, and features) is the MEAN over the tiles
 * covering it, its mask 1 if a covering tile found it foreground; the pixel map is made
 * from the stitched scores. Mean rather than max: every tile's score of a location is an
 * estimate of the same kind (a distance to the bank, which holds every tile's context of
 * normal locations), and a max of two or more such estimates is biased upwards in the
 * overlap bands only, drawing a grid of raised scores on a normal image's map; a defect
 * in an overlap is still seen at full score by the image score, which takes every tile's
 * patch, not the stitched map. */
static uf_status finish_tiled(uf_scorer *s, const float *d, const float *F, const float *sm,
                              const uint8_t *mk, uf_score *o)
{
    const extractor *e = &s->ex;
    const int R = e->R, N = R - 1, D = e->D, P = e->bb->w.patch;
    mask_scores(e, d, sm, mk, N, s->masked);
    uf_status st = image_score(s, N, F, o);
    if (st != UF_OK) return st;
    if (!o->patch_scores && !o->mask && !o->patch_features && !o->pixel_map) return UF_OK;
    const float hh = F[(size_t)N * D], hw = F[(size_t)N * D + 1];
    if (!(hh >= 1 && hh <= e->gh && hw >= 1 && hw <= e->gw) || hh != (float)(int)hh ||
        hw != (float)(int)hw)
        return uf__err(UF_ERR_ARG, "tiled features: header row %d holds no own grid size "
                       "(got %g x %g, want whole numbers up to %d x %d)", N, hh, hw, e->gh, e->gw);
    const int gh = (int)hh, gw = (int)hw, T = e->p.tile, O = e->p.tile_overlap;
    const int th = gh < e->tg ? gh : e->tg, tw = gw < e->tg ? gw : e->tg;
    int *ys = s->st_pos, *xs = s->st_pos + e->gh + 1;
    const int ny = uf__tile_starts(gh * P, T, O, ys), nx = uf__tile_starts(gw * P, T, O, xs);
    const size_t Np = (size_t)e->Np;
    memset(s->st_d, 0, Np * sizeof(float));
    memset(s->st_sm, 0, Np * sizeof(float));
    memset(s->st_cnt, 0, Np * sizeof(int));
    memset(s->st_mk, 0, Np);
    if (o->patch_features) memset(o->patch_features, 0, Np * (size_t)D * sizeof(float));
    for (int t = 0; t < ny * nx; t++) {
        const int py = ys[t / nx] / P, px = xs[t % nx] / P;
        for (int y = 0; y < th; y++)
            for (int x = 0; x < tw; x++) {
                const size_t r = (size_t)t * e->tnp + (size_t)y * tw + x;
                const size_t i = (size_t)(py + y) * e->gw + px + x;
                s->st_d[i] += d[r];
                s->st_sm[i] += sm[r];
                s->st_cnt[i]++;
                s->st_mk[i] |= mk[r];
                if (o->patch_features)
                    for (int j = 0; j < D; j++) o->patch_features[i * D + j] += F[r * D + j];
            }
    }
    for (size_t i = 0; i < Np; i++) {
        const int c = s->st_cnt[i];
        if (c == 0) { /* outside the image's own grid: as the own grid's padding */
            s->st_sm[i] = -1.0f;
            continue;
        }
        s->st_d[i] /= (float)c;
        s->st_sm[i] /= (float)c;
        if (o->patch_features && c > 1)
            for (int j = 0; j < D; j++) o->patch_features[i * D + j] /= (float)c;
    }
    if (o->patch_scores) memcpy(o->patch_scores, s->st_d, Np * sizeof(float));
    if (o->mask) memcpy(o->mask, s->st_mk, Np);
    if (o->pixel_map) st = pixel_map(s, s->st_d, s->st_sm, o->pixel_map);
    return st;
}

uf_status uf__scorer_finish(uf_scorer *s, const float *d, const float *F, const float *sm,
                            const uint8_t *mk, uf_score *o)
{
    return finish_image(s, d, F, sm, mk, o);
}

/* Score n <= CHUNK images from their features (feats [n][R][D], smooth and mask
 * [n][R]). Every patch of the image (smooth >= 0) gets its distance when an output needs
 * all of them (patch scores, pixel map, soft mask); otherwise only foreground patches are
 * searched (background ones score 0 in the image score whatever their distance), which
 * saves the kNN work of the background: most of it for small objects or padded small
 * images. A row that is not the image (padding, letterbox bars, unused tile slots, the
 * tiled layout's header) is never searched: its patch score is 0. */
static uf_status score_chunk(uf_scorer *s, const float *feats, const float *smooth,
                             const uint8_t *mask, int n, int base, int total, uf_score *out)
{
    char wb[32];
    const uf_model *m = s->m;
    const size_t R = (size_t)s->ex.R, D = (size_t)m->dim, rows = (size_t)n * R;
    bool all = m->params.bpm && m->params.soft_mask;
    for (int b = 0; b < n; b++) all |= out[b].patch_scores || out[b].pixel_map;
    size_t nq = 0;
    for (size_t i = 0; i < rows; i++) nq += all ? smooth[i] >= 0 : mask[i] != 0;
    uf_status st;
    if (nq == rows) {
        st = uf__knn_ex(feats, rows, m->bank, m->bank_norm, m->n_bank, m->dim,
                        m->params.knn, s->dist, NULL, NULL, ex_threads(&s->ex));
    } else { /* gather the rows searched, search, scatter */
        size_t nf = 0;
        for (size_t i = 0; i < rows; i++)
            if (all ? smooth[i] >= 0 : mask[i] != 0)
                memcpy(s->fgq + nf++ * D, feats + i * D, D * sizeof(float));
        st = uf__knn_ex(s->fgq, nf, m->bank, m->bank_norm, m->n_bank, m->dim, m->params.knn,
                        s->fgd, NULL, NULL, ex_threads(&s->ex));
        for (size_t i = 0, k = 0; st == UF_OK && i < rows; i++)
            s->dist[i] = (all ? smooth[i] >= 0 : mask[i] != 0) ? s->fgd[k++] : 0.0f;
    }
    /* queries are capped (UF__MAX_SQNORM) but a model file's bank rows need only be
     * finite, so a distance can overflow: such an image is reported, not scored as Inf */
    for (size_t i = 0; st == UF_OK && i < rows; i++)
        if (!isfinite(s->dist[i]))
            return uf__err(UF_ERR_NONFINITE, "%spatch %zu: distance to the memory bank "
                           "beyond the float range", which(wb, base + (int)(i / R), total),
                           i % R);
    for (int b = 0; b < n && st == UF_OK; b++)
        st = (s->ex.ntmax ? finish_tiled : finish_image)(s, s->dist + b * R, feats + b * R * D,
                                                          smooth + b * R, mask + b * R, &out[b]);
    return st;
}

uf_status uf_score_images(uf_scorer *s, const uf_image *const *imgs, int n, uf_score *out)
{
    if (!s || n < 0 || (n > 0 && (!imgs || !out)))
        return uf__err(UF_ERR_ARG, "uf_score_images: bad arguments");
    for (int c0 = 0; c0 < n; c0 += CHUNK) {
        int c = n - c0 < CHUNK ? n - c0 : CHUNK;
        uf_status st = extract(&s->ex, imgs + c0, c, c0, n, false);
        if (st == UF_OK)
            st = score_chunk(s, s->ex.feats, s->ex.smooth, s->ex.mask, c, c0, n, out + c0);
        if (st != UF_OK) return n > CHUNK ? uf__err_prefix(st, "scoring") : st;
    }
    return UF_OK;
}

uf_status uf_scorer_extract(uf_scorer *s, const uf_image *const *imgs, int n, float *feats,
                            float *smooth, uint8_t *mask)
{
    if (!s || n < 0 || (n > 0 && (!imgs || !feats || !smooth || !mask)))
        return uf__err(UF_ERR_ARG, "uf_scorer_extract: bad arguments");
    const size_t R = (size_t)s->ex.R, D = (size_t)s->ex.D;
    for (int c0 = 0; c0 < n; c0 += CHUNK) {
        int c = n - c0 < CHUNK ? n - c0 : CHUNK;
        uf_status st = extract(&s->ex, imgs + c0, c, c0, n, false);
        if (st != UF_OK) return st;
        memcpy(feats + (size_t)c0 * R * D, s->ex.feats, (size_t)c * R * D * sizeof(float));
        memcpy(smooth + (size_t)c0 * R, s->ex.smooth, (size_t)c * R * sizeof(float));
        memcpy(mask + (size_t)c0 * R, s->ex.mask, (size_t)c * R);
    }
    return UF_OK;
}

uf_status uf_score_features(uf_scorer *s, const float *feats, const float *smooth,
                            const uint8_t *mask, int n, uf_score *out)
{
    if (!s || n < 0 || (n > 0 && (!feats || !smooth || !mask || !out)))
        return uf__err(UF_ERR_ARG, "uf_score_features: bad arguments");
    const size_t R = (size_t)s->ex.R, D = (size_t)s->ex.D;
    uf_status cs = check_rows(feats, n, (int)R, (int)D, 0, n, "uf_score_features: got",
                              ex_threads(&s->ex));
    if (cs != UF_OK) return cs;
    for (int c0 = 0; c0 < n; c0 += CHUNK) {
        int c = n - c0 < CHUNK ? n - c0 : CHUNK;
        uf_status st = score_chunk(s, feats + (size_t)c0 * R * D, smooth + (size_t)c0 * R,
                                   mask + (size_t)c0 * R, c, c0, n, out + c0);
        if (st != UF_OK) return st;
    }
    return UF_OK;
}

/* ---- maps back onto the original image ----------------------------------------------- */

uf_status uf_model_map_to_image(const uf_model *m, const float *pixel_map, int width,
                                int height, float *out)
{
    if (!m || !pixel_map || !out || width < 1 || height < 1)
        return uf__err(UF_ERR_ARG, "uf_model_map_to_image: bad arguments");
    const int S = uf_preprocess_size(&m->params.pre);
    int rw, rh, left, top;
    uf_preprocess_geometry(&m->params.pre, width, height, &rw, &rh, &left, &top);
    size_t n;
    if (rw < 1 || rh < 1 || !uf__mul_ok((size_t)rw, (size_t)rh, &n))
        return uf__err(UF_ERR_ARG, "uf_model_map_to_image: bad geometry");
    float lo = pixel_map[0];
    for (size_t i = 1; i < (size_t)S * S; i++) lo = pixel_map[i] < lo ? pixel_map[i] : lo;
    /* the map in resized-image coordinates; what the crop cut away gets the minimum */
    float *r = malloc(n * sizeof(float)); /* [rh][rw] */
    if (!r) return uf__err(UF_ERR_NOMEM, "out of memory");
    for (int y = 0; y < rh; y++)
        for (int x = 0; x < rw; x++) {
            int u = x - left, v = y - top;
            r[(size_t)y * rw + x] =
                u >= 0 && u < S && v >= 0 && v < S ? pixel_map[(size_t)v * S + u] : lo;
        }
    uf_status st = uf__upsample_bilinear(r, rh, rw, out, height, width);
    free(r);
    return st;
}

/* The part of the resized image (rw x rh) that network input pixels show, [*a, *b) along one
 * side, by the public geometry (uf_preprocess_geometry): network pixel u shows resized pixel
 * u + off; with pad_to only the placed crop (or image) of width cw, from (pad_to - cw) / 2. */
static void shown_span(const uf_preprocess *p, int S, int off, int rn, int *a, int *b)
{
    int n0 = 0, n1 = S; /* network pixels holding the image (or the crop) */
    if (p->pad_to > 0) {
        const int cw = p->crop > 0 ? p->crop : rn;
        n0 = (p->pad_to - cw) / 2;
        n1 = n0 + cw;
    }
    *a = n0 + off > 0 ? n0 + off : 0;
    *b = n1 + off < rn ? n1 + off : rn;
}

/* 1 for the original pixels along one side (n of them, rn after resizing) whose centre
 * falls in the shown span [a, b) of the resized side. */
static void shown_pixels(int n, int rn, int a, int b, uint8_t *out)
{
    for (int i = 0; i < n; i++) {
        const double c = ((double)i + 0.5) * rn / n; /* centre, resized coordinates */
        out[i] = c >= a && c < b;
    }
}

uf_status uf_model_inspected(const uf_model *m, int width, int height, uint8_t *out)
{
    if (!m || !out || width < 1 || height < 1)
        return uf__err(UF_ERR_ARG, "uf_model_inspected: bad arguments");
    const uf_preprocess *p = &m->params.pre;
    const int S = uf_preprocess_size(p);
    int rw, rh, left, top, x0, x1, y0, y1;
    uf_preprocess_geometry(p, width, height, &rw, &rh, &left, &top);
    if (rw < 1 || rh < 1 || S < 1) return uf__err(UF_ERR_ARG, "uf_model_inspected: bad geometry");
    shown_span(p, S, left, rw, &x0, &x1);
    shown_span(p, S, top, rh, &y0, &y1);
    uint8_t *col = malloc((size_t)width + (size_t)height);
    if (!col) return uf__err(UF_ERR_NOMEM, "out of memory");
    uint8_t *row = col + width;
    shown_pixels(width, rw, x0, x1, col);
    shown_pixels(height, rh, y0, y1, row);
    for (int y = 0; y < height; y++) {
        uint8_t *o = out + (size_t)y * (size_t)width;
        if (row[y]) memcpy(o, col, (size_t)width);
        else memset(o, 0, (size_t)width);
    }
    free(col);
    return UF_OK;
}

/* The patches a fitter collected, handed over for uf_model_update (update.c): *bank
 * ([*n][D], malloc'd, the caller frees it) and the images added; the fitter is left empty.
 * *p, *bb, *threads: its settings, backbone and thread count. */
void uf__fitter_take(uf_fitter *f, float **bank, size_t *n, size_t *n_train,
                     const uf_detector_params **p, const uf_backbone **bb, int *threads)
{
    *threads = ex_threads(&f->ex);
    *p = &f->ex.p;
    *bb = f->ex.bb;
    *bank = f->bank;
    *n = f->n;
    *n_train = f->n_train;
    f->bank = NULL;
    f->n = f->cap = f->n_train = 0;
}

const uf_backbone *uf_model_backbone(const uf_model *m) { return m ? m->bb : NULL; }
