/*
 * uniformaly.h - the public C API of uniformaly.
 *
 * uniformaly is a CPU library for task-agnostic visual anomaly detection after the
 * UniFormaly method: a frozen Vision Transformer turns images into patch features,
 * Back Patch Masking drops background patches, a memory bank of normal patches scores
 * new images by nearest-neighbour distance.
 *
 * This header is the only public one. Conventions (after sqlite, faiss and whisper.cpp):
 *  - Every public symbol starts with `uf_` (types, functions) or `UF_` (macros, enums).
 *  - Every fallible call returns a `uf_status`; on failure `uf_errmsg()` returns a
 *    one-line, human-readable message describing the last failure *of the calling thread*.
 *  - Objects are opaque handles created by `*_load` / `*_new` and released by `*_free`;
 *    `*_free(NULL)` is a no-op.
 *  - An immutable *backbone* (weights) can be shared by any number of threads; a mutable
 *    *session* (scratch buffers) belongs to one thread at a time.
 *  - The library never prints and never calls exit().
 *  - Array shapes are written row-major, outermost first: `[B][3][H][W]` is a batch of B
 *    planar RGB images.
 */
#ifndef UNIFORMALY_H
#define UNIFORMALY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define UF_VERSION_STRING "0.1.0"

/* ------------------------------------------------------------------------------------ */
/* Status codes and errors                                                              */
/* ------------------------------------------------------------------------------------ */

typedef enum uf_status {
    UF_OK = 0,
    UF_ERR_ARG = 1,         /* invalid argument from the caller                        */
    UF_ERR_IO = 2,          /* file missing, unreadable or unwritable                  */
    UF_ERR_FORMAT = 3,      /* file contents corrupt, truncated or not what was expected */
    UF_ERR_UNSUPPORTED = 4, /* valid file, but a variant this library does not handle  */
    UF_ERR_NOMEM = 5,       /* allocation failed                                       */
    UF_ERR_LIMIT = 6,       /* input exceeds a safety limit (pixels, tensor size, ...) */
    UF_ERR_NONFINITE = 7,   /* NaN or Inf found where finite numbers are required      */
    UF_ERR_INTERNAL = 8     /* a bug: please report                                    */
} uf_status;

/* Message of the calling thread's most recent failure ("" if none). The pointer stays
 * valid until the next failing uf_ call on the same thread. Thread-safe. */
const char *uf_errmsg(void);

/* Short constant name of a status code, e.g. "format error". Never NULL. */
const char *uf_status_str(uf_status s);

/* Library version string, e.g. "0.1.0". */
const char *uf_version(void);

/* ------------------------------------------------------------------------------------ */
/* Threads                                                                              */
/* ------------------------------------------------------------------------------------ */

/* Bound the total number of compute threads the library uses, BLAS threads included
 * (n <= 0 selects the number of online cores, the default). The library's threads are
 * OpenMP (libgomp) threads: run programs with OMP_WAIT_POLICY=passive (the uniformaly
 * program sets it for itself), since libgomp's default of spinning while waiting starves
 * the working threads whenever other processes or threads compete for the cores (a
 * ViT-S/16 forward measured 17x slower beside one busy process). To score from many
 * threads at once, call uf_set_threads(1) first: each call then stays on its own thread.
 * Not thread-safe: call it
 * before starting work, not while other threads run uf_ calls. */
void uf_set_threads(int n);

/* The current thread bound (>= 1). */
int uf_get_threads(void);

/* ------------------------------------------------------------------------------------ */
/* Images                                                                               */
/* ------------------------------------------------------------------------------------ */

/* An 8-bit RGB image, interleaved: rgb is [height][width][3]. Owned by whoever
 * created it; release with uf_image_free. Decoded pixels equal Pillow's
 * Image.open(f).convert("RGB"): grey is replicated to three channels, alpha is dropped
 * (not composited), palettes are expanded, 16-bit PNG samples keep their high byte.
 * One deliberate difference: 16-bit *grey* (PNG, and PGM with maxval > 255), which
 * Pillow clips to 0..255 (mostly white), is reduced to the high byte (PNG) or scaled
 * round(v * 255 / maxval) (PGM, as Pillow scales PPM colour). */
typedef struct uf_image {
    int width;
    int height;
    uint8_t *rgb; /* [height][width][3] */
} uf_image;

/* Default limit on width*height of a decoded image (refused above it). */
#define UF_DEFAULT_MAX_PIXELS ((size_t)1 << 28) /* 268 Mpx */

/* Set the pixel limit used by all decoders (0 restores the default). Not thread-safe
 * with concurrent decoding. */
void uf_set_max_pixels(size_t max_pixels);
size_t uf_get_max_pixels(void);

/* Decode a PNG (1-16 bit; grey, grey+alpha, RGB, RGBA, palette, with or without tRNS,
 * interlaced or not), JPEG (grey, YCbCr/RGB, CMYK/YCCK; baseline or progressive), BMP
 * (core/V3/V4/V5 headers, bottom-up or top-down; 1/4/8-bit palette, RLE4/RLE8, 16-bit
 * 5-5-5, 24-bit, 32-bit, and 16/24/32-bit bit fields) or PNM (P1-P6, maxval up to 65535)
 * file. The format is detected from the contents, not the name. On success *out is a
 * new image owned by the caller. Errors: UF_ERR_IO (cannot open/read), UF_ERR_FORMAT
 * (corrupt, truncated - including JPEGs that end early -, zero size, or
 * "unrecognised image format"), UF_ERR_UNSUPPORTED (a valid variant not handled, e.g.
 * BMP with embedded JPEG), UF_ERR_LIMIT (width*height above uf_get_max_pixels(),
 * refused before any pixel buffer is allocated). Messages of uf_image_load start with
 * the path. Thread-safe. */
uf_status uf_image_load(const char *path, uf_image **out);

/* Same as uf_image_load on a memory buffer (buf is not retained). Thread-safe. */
uf_status uf_image_decode(const void *buf, size_t len, uf_image **out);

/* Allocate a zero-filled image of the given size (for callers that build images). */
uf_status uf_image_new(int width, int height, uf_image **out);

/* Release an image; NULL is a no-op. */
void uf_image_free(uf_image *img);

/* Resampling filters, with Pillow's exact semantics (antialiased when downscaling). */
typedef enum uf_interp {
    UF_INTERP_BILINEAR = 0, /* Pillow Image.BILINEAR (torchvision's default)   */
    UF_INTERP_BICUBIC = 1,  /* Pillow Image.BICUBIC (a = -0.5)                 */
    UF_INTERP_LANCZOS = 2,  /* Pillow Image.LANCZOS (3 lobes)                  */
    UF_INTERP_NEAREST = 3   /* Pillow Image.NEAREST                            */
} uf_interp;

/* Resize with Pillow's Image.resize((w, h), filter) semantics on 8-bit data, including
 * its fixed-point rounding, so results equal Pillow's. *out is new, owned by the caller.
 * Thread-safe. */
uf_status uf_image_resize(const uf_image *img, int width, int height, uf_interp interp,
                          uf_image **out);

/* How an image becomes a network input, after torchvision's
 *   Resize(resize, interp) -> CenterCrop(crop) -> ToTensor() -> Normalize(mean, std)
 * resize: length of the shorter side after resizing (the longer side keeps the aspect
 *         ratio, truncated as torchvision does); 0 skips resizing.
 * crop:   side of the centred square crop; a resized side shorter than crop is
 *         zero-padded first, exactly as torchvision's CenterCrop does.
 * pad_to: if > 0, the resized (and cropped, if crop > 0) image is centred on a zero
 *         canvas of pad_to x pad_to *before* normalisation (the reference's small-image
 *         protocol: resize 112 Lanczos, pad to 224). 0 disables. The image goes to
 *         ((pad_to - w) / 2, (pad_to - h) / 2), floor, and must not exceed pad_to;
 *         padded pixels become (0 - mean) / std.
 * crop = 0 skips cropping (then pad_to must be > 0).                                 */
typedef struct uf_preprocess {
    int resize;       /* default 256 */
    int crop;         /* default 224 */
    int pad_to;       /* default 0   */
    uf_interp interp; /* default UF_INTERP_BILINEAR */
    float mean[3];    /* default ImageNet 0.485, 0.456, 0.406 */
    float std[3];     /* default ImageNet 0.229, 0.224, 0.225 */
} uf_preprocess;

/* The defaults above. */
uf_preprocess uf_preprocess_default(void);

/* Geometry of the preprocessing for an image of size (width, height): the size after
 * resizing (*rw, *rh) and the position in the resized image of network input pixel
 * (0, 0) (*left, *top): the crop's top-left corner, minus the pad_to placement offset.
 * Negative when torchvision pads (crop larger than the image) or with pad_to.
 * Network pixel (x, y) shows resized pixel (x + left, y + top) when that lies inside
 * the resized image and the crop window, else zero padding. The crop offset along a
 * side n >= crop is int(round((n - crop) / 2.0)) with round-half-to-even; a side
 * n < crop is padded with (crop - n) / 2 zeros before (floor); pad_to places the image
 * at ((pad_to - w) / 2, (pad_to - h) / 2), floor. Lets callers map network-space maps
 * back onto the original image. p may be NULL for the defaults. Any NULL output
 * pointer is skipped. */
void uf_preprocess_geometry(const uf_preprocess *p, int width, int height, int *rw, int *rh,
                            int *left, int *top);

/* Side of the square network input produced by uf_preprocess_image:
 * pad_to if > 0, else crop (0 when both are 0: an invalid combination). */
int uf_preprocess_size(const uf_preprocess *p);

/* Preprocess one image into out, planar and normalised: out is [3][S][S] floats with
 * S = uf_preprocess_size(p), caller-allocated; out = ((float)v / 255 - mean) / std in
 * float32, bit-identical to torchvision's ToTensor + Normalize. p may be NULL for the
 * defaults. Errors: UF_ERR_ARG (negative sizes, unknown filter, std 0 or non-finite
 * mean/std, crop = 0 without pad_to, image after resize/crop larger than pad_to),
 * UF_ERR_LIMIT / UF_ERR_NOMEM (absurd sizes). Thread-safe. */
uf_status uf_preprocess_image(const uf_image *img, const uf_preprocess *p, float *out);

/* ------------------------------------------------------------------------------------ */
/* Backbone: a Vision Transformer loaded from a checkpoint                              */
/* ------------------------------------------------------------------------------------ */

typedef struct uf_backbone uf_backbone;

typedef struct uf_backbone_params {
    int heads;    /* attention heads; 0 (default) infers from the embedding dim:
                     192:3, 384:6, 768:12, 1024:16, 1280:16                          */
    float ln_eps; /* LayerNorm epsilon; default 1e-6                                     */
} uf_backbone_params;

uf_backbone_params uf_backbone_default_params(void);

/* Load a ViT from a checkpoint file:
 *  - PyTorch .pth/.pt written by torch.save (zip format, PyTorch >= 1.6): a plain
 *    state_dict, or one nested under "state_dict", "model", "teacher" or "student";
 *    "module." and "backbone." prefixes are stripped. Legacy (pre-1.6) files are refused
 *    with a message saying how to convert them.
 *  - .safetensors with F32, F16 or BF16 tensors, with timm/DINO key names
 *    (blocks.N.attn.qkv.weight ...) or Hugging Face transformers ViT names
 *    (vit.encoder.layer.N.attention.attention.query.weight ...).
 * The architecture (dim, depth, patch size, trained grid, MLP width, head) is read from
 * tensor shapes. Weights are held in one allocation. p may be NULL for defaults.
 * Errors: UF_ERR_IO, UF_ERR_FORMAT (corrupt file, missing or mis-shaped tensor: the
 * message names it), UF_ERR_UNSUPPORTED, UF_ERR_NONFINITE (NaN/Inf weights), UF_ERR_NOMEM.
 * On success *out is owned by the caller. Thread-safe. */
uf_status uf_backbone_load(const char *path, const uf_backbone_params *p, uf_backbone **out);

/* Release a backbone; NULL is a no-op. All sessions made from it must be freed first. */
void uf_backbone_free(uf_backbone *bb);

typedef struct uf_backbone_info {
    int dim;        /* embedding dimension D                                */
    int depth;      /* number of transformer blocks                         */
    int heads;      /* attention heads                                      */
    int patch;      /* patch side in pixels                                 */
    int mlp_dim;    /* hidden width of the MLP                              */
    int grid_h;     /* trained positional grid (patches)                    */
    int grid_w;
    int n_classes;  /* classes of the classification head, 0 if none       */
    size_t n_params;  /* number of float parameters                          */
    const char *format; /* "pth", "safetensors"; static string               */
} uf_backbone_info;

/* Fill *info. Thread-safe. */
void uf_backbone_get_info(const uf_backbone *bb, uf_backbone_info *info);

/* Architecture of a randomly initialised ViT (for demos, tests and benchmarks). */
typedef struct uf_vit_config {
    int dim;       /* embedding dim D, e.g. 384                           */
    int depth;     /* blocks, e.g. 12                                     */
    int heads;     /* heads, D % heads == 0                               */
    int patch;     /* patch side P, e.g. 16                               */
    int mlp_dim;   /* MLP width, e.g. 4 * D                               */
    int grid;      /* trained grid side (patches), e.g. 14                */
    int n_classes; /* classification head size, 0 for none               */
    uint64_t seed; /* same seed, same weights on every machine            */
} uf_vit_config;

/* Build a backbone with seeded pseudo-random weights (linear layers ~ N(0, 1/fan_in),
 * LayerNorm weight 1 and bias 0, cls/pos ~ N(0, 0.02^2)). Not a trained model: its
 * features carry no semantics; it exists so the whole pipeline can run without a
 * download. Errors: UF_ERR_ARG (inconsistent sizes), UF_ERR_NOMEM. Thread-safe. */
uf_status uf_backbone_random(const uf_vit_config *cfg, uf_backbone **out);

/* ------------------------------------------------------------------------------------ */
/* Forward pass                                                                         */
/* ------------------------------------------------------------------------------------ */

/* Per-thread scratch space for running a backbone. One session must not be used by two
 * threads at once; sessions of the same backbone may run concurrently. */
typedef struct uf_session uf_session;

/* Create a session for bb (bb must outlive it). Buffers grow on demand. */
uf_status uf_session_new(const uf_backbone *bb, uf_session **out);

/* Release a session; NULL is a no-op. */
void uf_session_free(uf_session *s);

/* What a forward pass should produce. Blocks are numbered from 1. The pass stops after
 * the last block that is needed. */
typedef struct uf_forward_request {
    uint64_t blocks;  /* bit (i-1) set: output the patch tokens (CLS excluded) after block
                         i, for i = 1..depth                                           */
    int attn_block;   /* > 0: output the CLS-to-patch attention (softmax row of the CLS
                         query, patch columns) of this block, averaged over heads      */
    int rollout;      /* nonzero with attn_block: output attention rollout through block
                         attn_block instead: R = A'_L ... A'_1 with
                         A'_l = (mean_heads(A_l) + I) / 2, the CLS row, patch columns   */
    int want_cls;     /* output the final-norm CLS feature (runs every block)           */
    int want_logits;  /* output the classification head's logits (needs a head)         */
} uf_forward_request;

/* Caller-allocated outputs; NULL where not requested. With Np = (H/patch)*(W/patch):
 *   blocks: [n_sel][B][Np][D], selected blocks in increasing order
 *   attn:   [B][Np]
 *   cls:    [B][D]
 *   logits: [B][n_classes]                                                           */
typedef struct uf_forward_output {
    float *blocks;
    float *attn;
    float *cls;
    float *logits;
} uf_forward_output;

/* Run the backbone on a batch of B preprocessed images, pixels [B][3][H][W]. H and W
 * need not equal the trained size: the positional embedding is bicubically interpolated
 * (as DINO's interpolate_pos_encoding); pixels beyond a multiple of the patch size are
 * ignored, as a strided convolution does. Errors: UF_ERR_ARG (bad request or sizes),
 * UF_ERR_NONFINITE (NaN or Inf pixels), UF_ERR_LIMIT (sizes beyond addressable buffers),
 * UF_ERR_NOMEM (the session stays usable). Not thread-safe per session. */
uf_status uf_forward(uf_session *s, const float *pixels, int B, int H, int W,
                     const uf_forward_request *req, uf_forward_output *out);

/* ------------------------------------------------------------------------------------ */
/* Tensor files                                                                         */
/* ------------------------------------------------------------------------------------ */

/* Write n float32 tensors to a .safetensors file (readable by the `safetensors` Python
 * package and numpy). names[i] is the key, ndims[i] its rank (0..8), shapes[i] its dims,
 * data[i] its row-major values. metadata_json may be NULL or a JSON object whose values are
 * strings (stored as "__metadata__"). The file is written under a temporary name and renamed
 * into place, so an existing file is replaced only by a complete new one. Errors: UF_ERR_ARG,
 * UF_ERR_IO. Thread-safe. */
uf_status uf_safetensors_write(const char *path, int n, const char *const *names,
                               const int *ndims, const int64_t *const *shapes,
                               const float *const *data, const char *metadata_json);

/* ------------------------------------------------------------------------------------ */
/* Image output                                                                         */
/* ------------------------------------------------------------------------------------ */

/* Write img as an 8-bit RGB PNG (libpng, default compression). The file is written under a
 * temporary name in the same folder and renamed into place, so path is either the complete
 * new image or untouched. Errors: UF_ERR_ARG, UF_ERR_IO (message names the path).
 * Thread-safe. */
uf_status uf_image_write_png(const uf_image *img, const char *path);

/* Colour a map and blend it over an image: map is [img->height][img->width] floats;
 * each value v becomes t = (v - lo) / (hi - lo) clipped to [0, 1], coloured with the
 * "jet" colormap (blue 0 -> red 1) and blended as out = alpha * colour + (1 - alpha) * img,
 * rounded. hi <= lo (or non-finite) selects the map's own min and max; a constant map
 * is drawn as t = 0. NaN map values are drawn as t = 0. *out is new, owned by the caller.
 * Errors: UF_ERR_ARG (NULL, alpha outside [0, 1]), UF_ERR_NOMEM. Thread-safe. */
uf_status uf_heatmap_overlay(const uf_image *img, const float *map, float lo, float hi,
                             float alpha, uf_image **out);

/* ------------------------------------------------------------------------------------ */
/* The detector: Back Patch Masking, memory bank, nearest-neighbour scoring             */
/* ------------------------------------------------------------------------------------ */

/* How the memory bank is subsampled. */
typedef enum uf_sampler {
    UF_SAMPLER_GREEDY = 0, /* approximate greedy k-center (PatchCore): seeded random
                              projection to 128 dims, 10 random start points, then the
                              point farthest from the selected set, repeatedly          */
    UF_SAMPLER_RANDOM = 1  /* a seeded uniform random subset                           */
} uf_sampler;

/* Every setting of the method. Obtain the defaults with uf_detector_default_params() and
 * change fields; the same defaults serve every task (defect detection, semantic anomaly
 * detection, multi-class, clustering, low-shot). */
typedef struct uf_detector_params {
    int layer_first;   /* patch features = mean of the patch tokens after blocks          */
    int layer_last;    /* layer_first..layer_last (1-based, inclusive) [3, 10]             */
    int bpm;           /* Back Patch Masking on [1]                                        */
    int bpm_kernel;    /* side k of the k x k mean filter over the CLS attention (zero
                          padding counted, as AvgPool2d(k, 1, k/2, count_include_pad))
                          [7]; odd, >= 1                                                   */
    float bpm_lambda;  /* foreground: smoothed attention / its max > lambda [0.1]          */
    int soft_mask;     /* ablation [0]: keep every patch in the bank and multiply test
                          patch scores by the smoothed, max-normalised attention instead
                          of thresholding it                                              */
    int rollout;       /* use attention rollout through layer_last instead of the raw CLS
                          attention of layer_last (supervised backbones) [0]              */
    double coreset;    /* fraction of the bank kept, in (0, 1]; 1 keeps all [0.1]          */
    uf_sampler sampler;/* [UF_SAMPLER_GREEDY]                                              */
    uint64_t seed;     /* seed of the coreset projection, start points and sampling [0]    */
    int knn;           /* patch score = squared L2 distance to the nearest bank vector,
                          or the mean over the knn nearest [1]; 1..1024                   */
    double topk;       /* image score = mean of the top K patch scores, K =
                          max(1, round(topk * N)) over the N patches [0.05]; (0, 1]       */
    double sigma;      /* Gaussian smoothing of the pixel map, in pixels [4]; 0 = none     */
    uf_preprocess pre; /* image preprocessing [resize 256, crop 224, bilinear, ImageNet
                          mean/std]; use mean = std = 0.5 for timm AugReg ViTs            */
} uf_detector_params;

/* The defaults in brackets above. */
uf_detector_params uf_detector_default_params(void);

/* Check params against a backbone (layers within its depth, ranges, preprocessing);
 * bb may be NULL to check only what does not depend on it. Errors: UF_ERR_ARG with a
 * message naming the field. Thread-safe. */
uf_status uf_detector_params_check(const uf_detector_params *p, const uf_backbone *bb);

/* A fitted detector: settings, backbone and memory bank. Immutable once made: any number
 * of threads may score with it at once, each through its own uf_scorer. */
typedef struct uf_model uf_model;

/* Optional progress report of long operations: stage is a static string ("coreset"),
 * done and total count its units. Return nonzero to cancel (the call then fails with
 * UF_ERR_ARG, "cancelled"). Called from the calling thread. */
typedef int (*uf_progress_fn)(void *user, const char *stage, size_t done, size_t total);

/* Fitting is streaming: create a fitter, add training images in any number of calls
 * (each image's foreground patch features are appended to the bank; nothing else of the
 * image is kept), then finish to subsample the bank and get the model. */
typedef struct uf_fitter uf_fitter;

/* Start fitting with backbone bb (borrowed: it must outlive the fitter and the model made
 * from it) and settings p (NULL: defaults; copied). Errors: UF_ERR_ARG (params do not fit
 * the backbone; the message names the field), UF_ERR_NOMEM. */
uf_status uf_fitter_new(const uf_backbone *bb, const uf_detector_params *p, uf_fitter **out);

/* Add n training images (any sizes; each is preprocessed with p->pre). The images are run
 * through the backbone as one batch, so n of 4-16 is fastest; n = 1 is fine. Errors:
 * UF_ERR_ARG, UF_ERR_NONFINITE (the backbone produced NaN/Inf: the image is not added),
 * UF_ERR_NOMEM, UF_ERR_LIMIT (bank beyond 2^31 patches). On failure no image of this call
 * is added and the fitter stays usable. Not thread-safe per fitter. */
uf_status uf_fitter_add(uf_fitter *f, const uf_image *const *imgs, int n);

/* Patches in the bank so far (foreground patches of the images added). */
size_t uf_fitter_bank_size(const uf_fitter *f);

/* Subsample the bank (coreset) and make the model; *out is owned by the caller and
 * borrows the fitter's backbone. progress may be NULL. The fitter is left empty but
 * must still be freed. Errors: UF_ERR_ARG (no image added, or every patch was background:
 * lower bpm_lambda or turn BPM off; cancelled), UF_ERR_NOMEM. */
uf_status uf_fitter_finish(uf_fitter *f, uf_progress_fn progress, void *user, uf_model **out);

/* Release a fitter; NULL is a no-op. */
void uf_fitter_free(uf_fitter *f);

/* Release a model (and, for a loaded model, its backbone); NULL is a no-op. Every scorer
 * made from it must be freed first. */
void uf_model_free(uf_model *m);

/* What a model is; strings point into the model and live as long as it. */
typedef struct uf_model_info {
    uf_detector_params params; /* the settings it was fitted with                     */
    size_t bank_size;          /* patches in the memory bank (after the coreset)      */
    size_t bank_size_full;     /* foreground patches before the coreset               */
    size_t n_train;            /* training images                                     */
    int dim;                   /* feature dimension D                                  */
    size_t bank_bytes;         /* bytes of the bank in memory                          */
    float threshold;           /* stored decision threshold on the image score, NaN
                                  if none                                             */
    uf_backbone_info backbone; /* architecture                                        */
    const char *backbone_path; /* checkpoint path recorded at fit time ("" if random)  */
    const char *backbone_sha256; /* 64 hex digits of the checkpoint file ("" if random) */
    int backbone_embedded;     /* 1 if the weights are inside the model file           */
} uf_model_info;

/* Fill *info. Thread-safe. */
void uf_model_get_info(const uf_model *m, uf_model_info *info);

/* Set the stored decision threshold (NaN clears it). Not thread-safe with scoring. */
void uf_model_set_threshold(uf_model *m, float threshold);

/* The memory bank, [bank_size][dim] floats, owned by the model (read-only). */
const float *uf_model_bank(const uf_model *m);

/* Save a model to path: magic "UFMODEL\0", format version, the settings, the backbone
 * identity (architecture, checkpoint path and sha256) and the bank, with a checksum.
 * embed_backbone nonzero also stores the checkpoint file's bytes (or, for a random
 * backbone, its seed and shape), so the file alone is deployable. Written under a
 * temporary name and renamed: path is either the complete new model or untouched.
 * Errors: UF_ERR_ARG, UF_ERR_IO (checkpoint no longer readable when embedding, or
 * unwritable path). Thread-safe with scoring. */
uf_status uf_model_save(const uf_model *m, const char *path, int embed_backbone);

/* Options of uf_model_load. */
typedef struct uf_model_load_params {
    const char *backbone_path; /* NULL: use the embedded weights if present, else the
                                  path recorded at fit time. Non-NULL: load this
                                  checkpoint instead (must have the recorded sha256
                                  unless allow_other_backbone)                         */
    int allow_other_backbone;  /* accept a checkpoint whose sha256 differs [0]          */
} uf_model_load_params;

uf_model_load_params uf_model_load_default_params(void);

/* Load a model saved by uf_model_save, with its backbone. Checks the magic, version,
 * every size against the file size and the checksum before use; the message names what
 * is wrong ("...: checksum mismatch (file damaged)", "...: truncated: bank needs N bytes").
 * p may be NULL for defaults. *out owns its backbone. Errors: UF_ERR_IO, UF_ERR_FORMAT,
 * UF_ERR_UNSUPPORTED (newer format version), UF_ERR_ARG (checkpoint sha256 mismatch), plus
 * the backbone loader's errors. Thread-safe. */
uf_status uf_model_load(const char *path, const uf_model_load_params *p, uf_model **out);

/* Per-thread scratch space for scoring with a model. A scorer must not be used by two
 * threads at once; scorers of one model may run concurrently. */
typedef struct uf_scorer uf_scorer;

/* Create a scorer for m (m must outlive it). */
uf_status uf_scorer_new(const uf_model *m, uf_scorer **out);

/* Release a scorer; NULL is a no-op. */
void uf_scorer_free(uf_scorer *s);

/* Size of the outputs of scoring an image with m: the patch grid (gh x gw), the side S of
 * the square network input (the pixel map is [S][S]) and the feature dimension D. */
void uf_model_output_size(const uf_model *m, int *gh, int *gw, int *S, int *D);

/* Result of scoring one image. Set the array pointers the caller wants (caller-allocated,
 * sizes from uf_model_output_size) and leave the others NULL. */
typedef struct uf_score {
    float score;          /* image score (always set)                                     */
    float *patch_scores;  /* [gh][gw] unmasked patch scores (distance to the bank)        */
    uint8_t *mask;        /* [gh][gw] 1 = foreground patch (all 1 without BPM or with the
                             soft mask)                                                  */
    float *pixel_map;     /* [S][S] patch scores upsampled bilinearly (align_corners false)
                             and Gaussian-smoothed, in network-input coordinates         */
    float *feature;       /* [D] mean feature of the top-K patches by masked score (anomaly
                             clustering); ties go to the lower patch index, so an image
                             whose patches are all background gets patches 0..K-1       */
} uf_score;

/* Score n images (any sizes) as one batch: out[i] receives image i. Errors: UF_ERR_ARG,
 * UF_ERR_NONFINITE (the backbone produced NaN/Inf for an image: nothing is scored),
 * UF_ERR_NOMEM. Results do not depend on n or on the thread count beyond float rounding.
 * Not thread-safe per scorer. */
uf_status uf_score_images(uf_scorer *s, const uf_image *const *imgs, int n, uf_score *out);

/* Map a pixel map ([S][S], network-input coordinates) back onto the geometry of the
 * original image (width x height): out is [height][width]. The map is placed in the
 * resized image where the crop came from and resized bilinearly to the original size;
 * pixels outside the crop get the map's minimum. Errors: UF_ERR_ARG, UF_ERR_NOMEM.
 * Thread-safe. */
uf_status uf_model_map_to_image(const uf_model *m, const float *pixel_map, int width,
                                int height, float *out);

/* ------------------------------------------------------------------------------------ */
/* Metrics                                                                              */
/* ------------------------------------------------------------------------------------ */

/* Area under the ROC curve of scores[n] against labels[n] (nonzero = positive/anomalous),
 * exactly as scikit-learn's roc_auc_score: tied scores count half. Returns NaN (with a
 * message for uf_errmsg()) when either class is empty, on NULL or NaN input, or when out
 * of memory. Infinities are ordered as usual. A radix sort: O(n) time, at most 8 bytes per
 * score of extra memory (4.2 million scores in about 0.1 s). Thread-safe. */
double uf_auroc(const float *scores, const uint8_t *labels, size_t n);

/* @@ evaluation metrics (metrics.c, cluster.c) @@ */

/* @@ datasets (dataset.c) @@ */

#ifdef __cplusplus
}
#endif
#endif /* UNIFORMALY_H */
