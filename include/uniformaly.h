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
 * (n <= 0 selects the number of online cores, the default). Not thread-safe: call it
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

#ifdef __cplusplus
}
#endif
#endif /* UNIFORMALY_H */
