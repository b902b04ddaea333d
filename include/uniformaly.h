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

/* Version of this header. UF_VERSION_NUMBER is MAJOR * 10000 + MINOR * 100 + PATCH, for
 * compile-time tests (#if UF_VERSION_NUMBER >= 100); uf_version_number() returns the value
 * of the library actually linked, which may be newer than the header (same major).
 *
 * ABI policy. The shared library is libuniformaly.so.<MAJOR> (its SONAME); within one major
 * version the ABI only grows: functions and enum values may be added, nothing is removed
 * or changed. The public structs (uf_image, uf_preprocess, uf_backbone_params,
 * uf_detector_params, uf_model_load_params, uf_score, the *_info and dataset structs) are
 * frozen for a SONAME: a field added to any of them, a changed field or a changed meaning
 * bumps MAJOR (and the SONAME). Always start from the uf_*_default_params() value and change
 * fields, so source code keeps compiling across versions. Every other type is opaque.
 * Only the functions declared here are exported from the shared library (it is built with
 * hidden visibility; everything internal is named uf__ and invisible). The rule holds
 * already for MAJOR 0: any incompatible change bumps MAJOR.
 *
 * 2.0.0: uf_scorer_extract / uf_score_features of a tiled model use a layout of
 * uf_model_patch_rows(m) rows (every tile's own patches) instead of gh * gw, so a program
 * sizing its buffers the 1.x way would overflow them: a changed meaning, hence MAJOR
 * (libuniformaly.so.2). uf_model_patch_rows is new; untiled models are unchanged. */
#define UF_VERSION_MAJOR 2
#define UF_VERSION_MINOR 0
#define UF_VERSION_PATCH 0
#define UF_VERSION_NUMBER (UF_VERSION_MAJOR * 10000 + UF_VERSION_MINOR * 100 + UF_VERSION_PATCH)
#define UF_VERSION_STRING "2.0.0"

/* UF_API marks a function exported from the shared library. The declarations below need no
 * mark: they all sit inside a "visibility default" region; UF_API is for definitions or
 * declarations outside it (e.g. in a binding's own code built into the library). */
#if defined(__GNUC__) || defined(__clang__)
#define UF_API __attribute__((visibility("default")))
#else
#define UF_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC visibility push(default)
#endif

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

/* The linked library's UF_VERSION_NUMBER (MAJOR * 10000 + MINOR * 100 + PATCH). */
int uf_version_number(void);

/* The library's random generator, splitmix64 (Steele, Lea, Flood 2014): advances *state by
 * 0x9E3779B97F4A7C15 and returns the mixed value. Every seeded draw of the library (coreset,
 * k-means++, the few-shot draw) uses it; exposed so tools and bindings reproduce those draws.
 * Any 64-bit seed is a valid state. Thread-safe for distinct states. */
uint64_t uf_splitmix64(uint64_t *state);

/* ------------------------------------------------------------------------------------ */
/* Threads                                                                              */
/* ------------------------------------------------------------------------------------ */

/* The library's compute threads are OpenMP (libgomp) threads. Each session, fitter and
 * scorer has its own thread count (uf_session_set_threads, uf_fitter_set_threads,
 * uf_scorer_set_threads), given to every parallel region it runs as a num_threads clause;
 * the library never changes process-wide settings (omp_set_num_threads, omp_set_dynamic,
 * OpenBLAS's thread count), so a program embedding it keeps its own. Objects without a
 * count use the library default: OMP_NUM_THREADS if set to a positive integer, else the
 * number of online cores. Run programs with OMP_WAIT_POLICY=passive (the uniformaly
 * program sets it for itself), since libgomp's default of spinning while waiting starves
 * the working threads whenever other processes or threads compete for the cores (a
 * ViT-S/16 forward measured 17x slower beside one busy process). To score from many
 * threads at once, give each scorer 1 thread: each call then stays on its own thread.
 *
 * Deprecated (kept for compatibility): set the library default (n <= 0 restores
 * OMP_NUM_THREADS or the cores); it changes no OpenMP or BLAS setting. Prefer the
 * per-object setters. Not thread-safe with calls that read the default. */
void uf_set_threads(int n);

/* The library default thread count (>= 1). Thread-safe. */
int uf_get_threads(void);

/* ------------------------------------------------------------------------------------ */
/* CPU level                                                                            */
/* ------------------------------------------------------------------------------------ */

/* The instruction-set level of the kernels in use: "generic" (baseline x86-64, SSE2),
 * "avx2" (AVX2 + FMA), "avx512" (AVX-512 F/BW/DQ/VL) or "avx512bf16" (AVX-512 with BF16
 * instructions; its FP32 kernels are the avx512 ones). Chosen once per process, on first
 * use, from cpuid: the CPU's best, or the environment variable UF_CPU when it names a
 * level the CPU has. Static string. Thread-safe. */
const char *uf_cpu_level(void);

/* "" normally; a one-line explanation when UF_CPU named an unknown level or one this CPU
 * lacks (the best available level is used instead). Static string. Thread-safe. */
const char *uf_cpu_note(void);

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
 * refused before any pixel buffer is allocated). Files whose data cannot hold the size
 * their header declares are refused before anything big is allocated (UF_ERR_FORMAT): a
 * PNG chunk longer than the bytes left, a JPEG with fewer than one bit per 8x8 block, an
 * RLE BMP whose codes end before its last row (Pillow: "not enough image data"). A
 * progressive JPEG keeps all its coefficients in memory until the last scan: above 256 MB
 * of them (about 85 Mpx of 4:2:0 colour) it is refused (UF_ERR_LIMIT). PNG text, colour
 * profile and other chunks that cannot change the pixels are skipped unread. Messages of
 * uf_image_load start with the path. Thread-safe. */
uf_status uf_image_load(const char *path, uf_image **out);

/* The file-name extensions taken as images when a folder is scanned (by the dataset
 * readers below and by the CLI): "png", "jpg", "jpeg", "bmp", "ppm", "pgm", "pbm", "pnm",
 * lower case, without the dot, NULL-terminated. Static storage: never freed. Thread-safe.
 * (uf_image_load itself detects the format from the contents, not the name.) */
const char *const *uf_image_extensions(void);

/* 1 if the last component of name (a file name or path) ends in "." plus one of
 * uf_image_extensions(), compared case-insensitively, and is not just that extension
 * (".png"); 0 otherwise, also for NULL. Thread-safe. */
int uf_is_image_name(const char *name);

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

/* Which side of the image Resize sets to uf_preprocess.resize (see there). */
typedef enum uf_fit {
    UF_FIT_AUTO = 0,  /* shorter side; longer side in the whole-image mode (crop 0, no pad_to) */
    UF_FIT_SHORT = 1, /* shorter side (torchvision's Resize(int))                        */
    UF_FIT_LONG = 2   /* longer side: the whole image fits a resize x resize square        */
} uf_fit;

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
 * fit:    which side Resize measures (uf_fit): UF_FIT_AUTO (0, the default and what files
 *         written before the field load as) is the shorter side, except in the
 *         whole-image mode below, where it is the longer; UF_FIT_LONG makes the longer
 *         side resize and the shorter int(resize * short / long), so crop = 0 with
 *         pad_to = resize is a letterbox: the whole image centred on the square canvas;
 *         with pad_to and UF_FIT_LONG the detector leaves out the patches lying entirely
 *         in the canvas's bars (smooth -1, mask 0: not in the bank, not scored, the pixel
 *         map's minimum) and gives a patch partly in a bar the image mirrored at its edge
 *         (pad_to with the shorter side resized, the small-image protocol, scores the
 *         padding as the reference does);
 *         UF_FIT_SHORT is torchvision's Resize(int) (refused in the whole-image mode,
 *         whose canvas must hold the longer side).
 * crop = 0 skips cropping. With pad_to > 0 the image is resized by its shorter side
 *         (unless fit says otherwise) and must fit the canvas. With pad_to = 0 it is the
 *         whole-image mode:
 *         the *longer* side becomes resize (the shorter int(resize * short / long)) and
 *         the image is placed at the top-left corner of a resize x resize zero canvas,
 *         so no part of the image is discarded (resize must then be > 0). The detector
 *         runs the ViT on the image's own patch grid there (ceil(w / patch) x
 *         ceil(h / patch) patches, non-square, positional embeddings interpolated, the
 *         image's edge pixels repeated into the part of its last patches beyond it), not
 *         on the padding; resize must be a multiple of the backbone's patch size.        */
typedef struct uf_preprocess {
    int resize;       /* default 256 */
    int crop;         /* default 224 */
    int pad_to;       /* default 0   */
    uf_interp interp; /* default UF_INTERP_BILINEAR */
    float mean[3];    /* default ImageNet 0.485, 0.456, 0.406 */
    float std[3];     /* default ImageNet 0.229, 0.224, 0.225 */
    uf_fit fit;       /* default UF_FIT_AUTO */
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

/* Load an image file shrunk to the size p's Resize step gives (never larger than the
 * file's own size), so a batch holds network-sized images, not full-size ones: the
 * detector and uf_preprocess_image then find no resizing left to do, and their results
 * equal those on uf_image_load's full image bit for bit. The image is shrunk while it is
 * decoded, row by row, so a full-size image is never held (a 16384 x 16384 PNG takes
 * about 15 MB, not 805 MB), except for interlaced PNGs and RLE BMPs, whose decoders need
 * the whole plane; those full-size buffers are bounded across all threads calling this
 * function (about 192 MB at once; one larger image is decoded alone). *width and *height
 * receive the file's own size, e.g. for uf_model_map_to_image. p may be NULL for the
 * defaults. Errors as uf_image_load. Thread-safe. */
uf_status uf_image_load_shrunk(const char *path, const uf_preprocess *p, uf_image **out,
                               int *width, int *height);

/* Side of the square network input produced by uf_preprocess_image:
 * pad_to if > 0, else crop if > 0, else resize (the whole-image mode; 0 when all are 0:
 * an invalid combination). */
int uf_preprocess_size(const uf_preprocess *p);

/* Fraction in [0, 1] of an image's area (width x height) that the network input shows
 * under p: 1 when the geometry keeps the whole image (letterbox, or a crop no smaller
 * than the resized image), e.g. 0.55 for a 2:1 image centre-cropped to a square. 0 for
 * invalid sizes or parameters. p may be NULL for the defaults. Thread-safe. */
double uf_preprocess_coverage(const uf_preprocess *p, int width, int height);

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

/* Arithmetic of the Linear layers of a backbone's blocks (qkv, proj, fc1, fc2; the patch
 * embedding stays FP32). */
typedef enum uf_precision {
    UF_PRECISION_FP32 = 0, /* FP32 weights and inputs (the default)                   */
    UF_PRECISION_BF16 = 1  /* weights and GEMM inputs rounded to BF16 (round to nearest
                              even), products summed in FP32; LayerNorm, attention,
                              softmax, GELU and every other step stay FP32             */
} uf_precision;

/* Set the precision of bb's forward passes. UF_PRECISION_BF16 converts the blocks' Linear
 * weights once, here (the FP32 weights are kept, so going back to FP32 is exact and free):
 * on a CPU with AVX512_BF16 (uf_cpu_level() "avx512bf16") to BF16, extra memory
 * half the FP32 weights; on any other CPU (or a lower UF_CPU) to FP32 copies of the
 * BF16-rounded weights, with the GEMM inputs rounded the same way: the same numbers up to
 * the FP32 summation order, at FP32 speed, extra memory the size of the weights. On CPUs
 * with AMX the GEMMs run on AMX tiles once the process holds the AMX tile state
 * (uf_enable_amx(), which the library never calls by itself; else vdpbf16ps). Measured
 * cost (README): block outputs within 1e-2 relative of FP32; bottle AUROC within 0.0002,
 * MTD image / pixel AUROC +0.0020 / +0.0045. A model records its backbone's precision (uf_model_save) and uf_model_load
 * restores it. Not thread-safe with forward passes of sessions of bb. Errors: UF_ERR_ARG
 * (NULL, unknown precision), UF_ERR_NOMEM (bb unchanged). */
uf_status uf_backbone_set_precision(uf_backbone *bb, uf_precision p);

/* Ask Linux for this process's AMX tile state (arch_prctl ARCH_REQ_XCOMP_PERM,
 * XTILEDATA), so that BF16 forward passes run their GEMMs on AMX tiles (measured 2-3x the
 * FP32 forward on ViT-B/16 here, against 0.6-0.8x for vdpbf16ps alone: README). This is a
 * process-wide change (every thread's signal frames grow by about 8 KiB), which is why the
 * library never makes it by itself: call it once at start-up if your program may use BF16
 * (the uniformaly CLI does). Idempotent; thread-safe; callable on any CPU. Returns UF_OK when
 * AMX is usable afterwards, else UF_ERR_UNSUPPORTED (no AMX-BF16 or AVX512_BF16, the
 * environment variable UF_AMX=0, or a kernel that refuses) and BF16 keeps vdpbf16ps. */
uf_status uf_enable_amx(void);

/* The precision set on bb (UF_PRECISION_FP32 for NULL). Thread-safe. */
uf_precision uf_backbone_precision(const uf_backbone *bb);

/* "fp32" or "bf16" (the CLI's --precision words); NULL for anything else. */
const char *uf_precision_name(uf_precision p);

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

/* Number of threads the session's forward passes use (n <= 0: the library default,
 * uf_get_threads(), read at each call). Only this session is affected: no process-wide
 * OpenMP or BLAS setting is changed. NULL is a no-op. Not thread-safe per session. */
void uf_session_set_threads(uf_session *s, int n);

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

/* Encode img as an 8-bit RGB PNG in memory (the same bytes uf_image_write_png writes):
 * *out is a new buffer of *len bytes, released by the caller with free(). Errors:
 * UF_ERR_ARG, UF_ERR_NOMEM. Thread-safe. */
uf_status uf_image_encode_png(const uf_image *img, uint8_t **out, size_t *len);

/* Write len bytes to path atomically: into an unnamed file in the same folder (a named
 * "<path>.tmp.XXXXXX" where the file system lacks O_TMPFILE), fsync'ed and then renamed
 * over path. path is either the complete new file or untouched, even if the process is
 * killed meanwhile. Every file the library writes (models, PNGs, safetensors) follows the
 * same rules for an existing target:
 *  - a regular file is replaced and keeps its permission bits (a 0600 model stays 0600);
 *    a new file gets mode 0644 less the umask;
 *  - a symbolic link is written through: the file it points to is replaced (in that file's
 *    folder) and the link stays; a link to a missing file is refused;
 *  - anything else (a directory, FIFO, socket or device) is refused, as is a regular file
 *    with more than one hard link (replacing it would split the links; writing in place
 *    would lose atomicity).
 * Errors: UF_ERR_ARG, UF_ERR_IO (naming path and the cause). Thread-safe. */
uf_status uf_write_file_atomic(const char *path, const void *data, size_t len);

/* Open an input file for reading without ever blocking: a FIFO, device, socket or
 * directory is refused ("PATH: not a regular file (a FIFO)") instead of waiting forever in
 * open() or read(). *fd is a blocking O_RDONLY|O_CLOEXEC descriptor owned by the caller
 * (close it). Every file the library reads comes through here. Errors: UF_ERR_ARG,
 * UF_ERR_IO (naming path). Thread-safe. */
uf_status uf_open_input(const char *path, int *fd);

/* The identities (device and inode) of the files a run reads, so that no output replaces
 * one of them (`fit --backbone W --out W`, an output named like a training image). */
typedef struct uf_inputs uf_inputs;
uf_status uf_inputs_new(uf_inputs **out);
/* Record path's identity (following symbolic links). A path that does not exist (yet) is
 * ignored: reading it will report it. Errors: UF_ERR_ARG, UF_ERR_NOMEM. */
uf_status uf_inputs_add(uf_inputs *s, const char *path);
void uf_inputs_free(uf_inputs *s);
/* Check an output target before any work is done, by the rules of uf_write_file_atomic,
 * and that it is not the same file as any of inputs (may be NULL): UF_ERR_IO with one
 * line naming the target and the cause. A target that does not exist passes. inputs is
 * read only: thread-safe once filled. */
uf_status uf_output_check(const char *path, const uf_inputs *inputs);

/* Colour a map and blend it over an image: map is [img->height][img->width] floats;
 * each value v becomes t = (v - lo) / (hi - lo) clipped to [0, 1], coloured with the
 * "jet" colormap (blue 0 -> red 1) and blended as out = alpha * colour + (1 - alpha) * img,
 * rounded. hi <= lo (or non-finite) selects the map's own min and max; a constant map
 * is drawn as t = 0. NaN map values are drawn as t = 0. *out is new, owned by the caller.
 * Errors: UF_ERR_ARG (NULL, alpha outside [0, 1]), UF_ERR_NOMEM. Thread-safe. */
uf_status uf_heatmap_overlay(const uf_image *img, const float *map, float lo, float hi,
                             float alpha, uf_image **out);

/* What uf_heatmap_annotate draws over the overlay of uf_heatmap_overlay(img, map, lo, hi,
 * alpha): the outline of the region where map > outline (NaN: none), a colour bar at the
 * right edge (colorbar nonzero, lo < hi finite) with lo and hi written at its ends and a
 * white tick at mark (NaN: none; e.g. the threshold), and label (ASCII; NULL: none) at the
 * top left in a box coloured by decision (1 red, 0 green, -1 grey). Pixels where
 * inspected ([img->height][img->width]; NULL: none) is 0 are drawn grey (the original's
 * brightness, dimmed and without colour: the part the model never saw,
 * uf_model_inspected). Text uses a built-in 5x7 font scaled with the image. */
typedef struct uf_annotation {
    float lo, hi, alpha;
    float outline;
    int colorbar;
    float mark;
    const char *label;
    int decision;
    const uint8_t *inspected;
} uf_annotation;

/* The overlay of map ([img->height][img->width]) over img with the annotations of a; *out
 * is new, owned by the caller. Errors: those of uf_heatmap_overlay, UF_ERR_ARG (a NULL).
 * Thread-safe. */
uf_status uf_heatmap_annotate(const uf_image *img, const float *map, const uf_annotation *a,
                              uf_image **out);

/* A connected region (4-neighbours) of a map above a level. */
typedef struct uf_region {
    int x, y, w, h; /* bounding box, pixels                                              */
    size_t area;    /* pixels in the region                                              */
    float peak;     /* largest map value in it                                           */
} uf_region;

/* The regions of map ([height][width]) where map > level: the max_regions with the highest
 * peaks go to out[0..*n_out-1], highest first. Errors: UF_ERR_ARG, UF_ERR_NOMEM.
 * Thread-safe. */
uf_status uf_map_regions(const float *map, int width, int height, float level, int max_regions,
                         uf_region *out, int *n_out);

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
    /* The AnomalyDINO parts (Damm et al., WACV 2025; github.com/dammsi/AnomalyDINO), each
     * usable alone; uf_detector_preset_anomalydino below sets them together.           */
    int cosine;        /* L2-normalise every patch feature (bank and queries), so the
                          squared-L2 kNN scores 2 (1 - cos) [0]                            */
    int pca_mask;      /* mask scored images by the first principal component of their
                          patch features instead of BPM (needs bpm = 0), as AnomalyDINO's
                          compute_background_mask: projection > pca_threshold, negated
                          when that keeps <= 35% of the central 60% x 60% of the grid,
                          then a 3x3 dilation and a 3x3 closing; the PC's sign is the one
                          making the largest |projection| positive (scikit-learn's
                          svd_flip). Training images are not masked (their
                          mask_ref_images = False) [0]                                     */
    float pca_threshold; /* PCA mask: foreground = projection > threshold [10]             */
    int rotations;     /* fitting: each training image is added R times, rotated by
                          360 * r / R degrees, r = 0..R-1; 1 = no augmentation [1]; 1..360 */
    int tile;          /* [0] off. > 0: tiling of large images, only in the whole-image
                          geometry (pre.crop = 0, pre.pad_to = 0): an image whose own grid
                          (the resized image, longer side pre.resize) is larger than tile x
                          tile pixels runs through the backbone as overlapping tile x tile
                          windows (batched), each at the backbone's own scale, with its own
                          Back Patch Masking map (computed per window, normalised by the
                          window's maximum). Every tile's patches are patches of their own:
                          fitting puts each tile's foreground patches in the bank (a
                          location in an overlap once per covering tile; the coreset
                          keeps its fraction of all of them); scoring finds
                          each tile patch's nearest bank rows, the image score is the top-K
                          mean over all tiles' patches (K of the layout's fixed count, as
                          padding counts in the own grid), and the patch scores are
                          stitched into one [gh][gw] map of the whole image - the mean over
                          the tiles covering a patch (BPM map and features likewise, the
                          mask 1 if a covering tile finds it foreground) - from which the
                          pixel map is made. An image within one tile runs as one tile. A
                          multiple of the patch size; tiling applies when smaller than the
                          canvas (resize)                                                  */
    int tile_overlap;  /* [0] pixels shared by neighbouring tiles: a multiple of the patch
                          size, 0 <= tile_overlap < tile. Tiles start every tile -
                          tile_overlap pixels; the last tile of a row or column is moved
                          back to end at the image's edge (so it may overlap more)         */
} uf_detector_params;

/* layer_first = layer_last = UF_LAYER_LAST: the backbone's last block, resolved when a
 * fitter, scorer or zero-shot set is made (models record the block number). */
#define UF_LAYER_LAST (-1)

/* The defaults in brackets above. */
uf_detector_params uf_detector_default_params(void);

/* Set the AnomalyDINO method on *p (Damm et al., "AnomalyDINO: Boosting Patch-based
 * Few-shot Anomaly Detection with DINOv2", WACV 2025; defaults of their code,
 * run_anomalydino.py and src/): features of the last block only (layers UF_LAYER_LAST),
 * cosine distance (knn_metric "L2_normalized", k_neighbors 1), image score = mean of the
 * top 1% patch scores (mean_top1p), no BPM and no PCA mask (their "agnostic" default masks
 * only capsule, hazelnut, pill, screw and toothbrush; set pca_mask for such objects), the
 * whole memory bank (coreset 1), 8 rotations (augment_image: 0, 45, ..., 315 degrees).
 * Preprocessing, sigma and seed are left as they are. NULL is a no-op. Thread-safe. */
void uf_detector_preset_anomalydino(uf_detector_params *p);

/* Check params against a backbone (layers within its depth, ranges, preprocessing: resize
 * and the input side, crop or pad_to, at most 8192 pixels, as the CLI accepts);
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
 * UF_ERR_ARG, UF_ERR_NONFINITE (the backbone produced NaN/Inf, or features with a squared
 * norm above 1e30, which the kNN search cannot score; with n > 1 the message starts with
 * "image I: ", I the index of the image at fault),
 * UF_ERR_NOMEM, UF_ERR_LIMIT (bank beyond 2^31 patches). On failure no image of this call
 * is added and the fitter stays usable. Not thread-safe per fitter. */
uf_status uf_fitter_add(uf_fitter *f, const uf_image *const *imgs, int n);

/* Patches in the bank so far (foreground patches of the images added). */
size_t uf_fitter_bank_size(const uf_fitter *f);

/* Number of threads the fitter's calls use (feature extraction, coreset); n <= 0: the
 * library default (uf_get_threads()), read at each call. Nothing process-wide changes.
 * NULL is a no-op. Not thread-safe per fitter. */
void uf_fitter_set_threads(uf_fitter *f, int n);

/* Subsample the bank (coreset) and make the model; *out is owned by the caller and
 * borrows the fitter's backbone. progress may be NULL. The fitter is left empty but
 * must still be freed. Errors: UF_ERR_ARG (no image added, or every patch was background:
 * lower bpm_lambda or turn BPM off; cancelled), UF_ERR_NOMEM. */
uf_status uf_fitter_finish(uf_fitter *f, uf_progress_fn progress, void *user, uf_model **out);

/* Add new normal images to a fitted model (`uniformaly update`): f is a fitter made with
 * m's backbone and settings (uf_fitter_new(bb, &info.params) with the backbone m runs) that
 * has had the new images added. Every row of m's bank is kept; of the fitter's N new
 * foreground patches, max(1, floor(coreset x N)) are added, chosen by the rule the fit
 * used: greedy continues the k-center search from m's bank (in the same 128-d random
 * projection, the seed's), each pick the new patch farthest from everything kept; random
 * draws them. With coreset 1 every new patch is added. *out is a new model (m unchanged)
 * with m's threshold, calibration and backbone identity, n_train and bank_size_full
 * increased; it borrows m's backbone, so it must be freed before m. The fitter is left
 * empty. Errors: UF_ERR_ARG (NULL, settings or dimension differ from m's, no image added,
 * every new patch background), UF_ERR_NOMEM, UF_ERR_LIMIT. Not thread-safe per fitter. */
uf_status uf_model_update(const uf_model *m, uf_fitter *f, uf_model **out);

/* The backbone a model scores with (borrowed: lives as long as m). */
const uf_backbone *uf_model_backbone(const uf_model *m);

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

/* Set the precision m scores with and uf_model_save records: uf_backbone_set_precision on
 * m's backbone (for a fitted model that is the backbone given to uf_fitter_new). A loaded
 * model starts with the precision its file records (FP32 for files written before
 * precisions existed). Not thread-safe with scoring. Errors: those of
 * uf_backbone_set_precision. */
uf_status uf_model_set_precision(uf_model *m, uf_precision p);

/* What calibration learnt about normal images (uf_calibration_compute), stored in the model
 * file beside the threshold. Image statistics are over the image scores of n_images normal
 * images; patch statistics over all their patch scores (uf_score.patch_scores), which is
 * what the pixel maps show: patch_min..threshold is the default colour scale of the
 * overlays. fpr_target is the false-positive rate the threshold was chosen for (NaN when
 * another objective chose it), fpr the rate it gives on those images (anomalous = score >
 * threshold). n_images == 0: no calibration. */
typedef struct uf_calibration {
    size_t n_images;
    double fpr_target, fpr;
    float image_min, image_mean, image_std, image_p50, image_p95, image_max;
    float patch_min, patch_p50, patch_p99, patch_max;
} uf_calibration;

/* The image and patch statistics of normal scores: image_scores[n] (n >= 1) and
 * patch_scores[n_patch] (n_patch >= 1), all finite. fpr_target and fpr are set to NaN.
 * Errors: UF_ERR_ARG (NULL, empty, non-finite), UF_ERR_NOMEM. Thread-safe. */
uf_status uf_calibration_compute(const float *image_scores, size_t n, const float *patch_scores,
                                 size_t n_patch, uf_calibration *out);

/* The smallest threshold t among normal_scores[n] such that at most a fraction fpr of them
 * is above it (anomalous = score > t): with the scores sorted ascending s[0..n-1] and
 * k = floor(fpr * n) allowed false positives, t = s[n-1-k]. The achievable rates are
 * multiples of 1/n (20 images: steps of 5%), so fpr < 1/n gives t = the largest score.
 * *achieved (may be NULL) receives the fraction above t (ties at t count as normal).
 * Returns NaN when n == 0, a score is not finite, fpr is outside [0, 1) or out of memory.
 * Thread-safe. */
double uf_threshold_at_fpr(const float *normal_scores, size_t n, double fpr, double *achieved);

/* Store calibration statistics in the model (NULL or n_images == 0 clears them); saved by
 * uf_model_save. Not thread-safe with scoring. */
void uf_model_set_calibration(uf_model *m, const uf_calibration *c);

/* Copy the model's calibration to *c; returns 1 if it has one, else 0 (*c zeroed). */
int uf_model_get_calibration(const uf_model *m, uf_calibration *c);

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
 * UF_ERR_UNSUPPORTED (newer format version), UF_ERR_ARG (checkpoint sha256 mismatch),
 * UF_ERR_LIMIT (a recorded random backbone above 2^25 parameters), plus
 * the backbone loader's errors. Thread-safe. */
uf_status uf_model_load(const char *path, const uf_model_load_params *p, uf_model **out);

/* Per-thread scratch space for scoring with a model. A scorer must not be used by two
 * threads at once; scorers of one model may run concurrently. */
typedef struct uf_scorer uf_scorer;

/* Create a scorer for m (m must outlive it). */
uf_status uf_scorer_new(const uf_model *m, uf_scorer **out);

/* Release a scorer; NULL is a no-op. */
void uf_scorer_free(uf_scorer *s);

/* Number of threads the scorer's calls use (feature extraction, kNN search); n <= 0: the
 * library default (uf_get_threads()), read at each call. Nothing process-wide changes.
 * Several scorers scoring at once from their own threads: give each 1 (or a share of
 * the cores). NULL is a no-op. Not thread-safe per scorer. */
void uf_scorer_set_threads(uf_scorer *s, int n);

/* Size of the outputs of scoring an image with m: the patch grid (gh x gw), the side S of
 * the square network input (the pixel map is [S][S]) and the feature dimension D. */
void uf_model_output_size(const uf_model *m, int *gh, int *gw, int *S, int *D);

/* Patch rows per image of uf_scorer_extract's layout (feats [n][rows][D], smooth and mask
 * [n][rows]) for model m: gh * gw, except for a tiled model (params.tile > 0, smaller than
 * the canvas), whose layout holds every tile's own patches: rows = ntmax * (tile / patch)^2
 * + 1, ntmax the most tiles an image can have (uf_detector_params.tile). 0 for NULL or
 * for a layout beyond the size limits (uf_scorer_new refuses such a model: UF_ERR_LIMIT).
 * Thread-safe. */
int uf_model_patch_rows(const uf_model *m);

/* Result of scoring one image. Set the array pointers the caller wants (caller-allocated,
 * sizes from uf_model_output_size) and leave the others NULL. */
typedef struct uf_score {
    float score;          /* image score (always set)                                     */
    float *patch_scores;  /* [gh][gw] unmasked patch scores (distance to the bank)        */
    uint8_t *mask;        /* [gh][gw] 1 = foreground patch (all 1 without BPM or with the
                             soft mask)                                                  */
    float *pixel_map;     /* [S][S] patch scores upsampled bilinearly (align_corners false)
                             and Gaussian-smoothed, in network-input coordinates         */
    float *patch_features;/* [gh*gw][D] the patch features (mean of the layers' tokens)     */
    float *feature;       /* [D] mean feature of the top-K patches by masked score (anomaly
                             clustering); ties go to the lower patch index, so an image
                             whose patches are all background gets patches 0..K-1       */
} uf_score;

/* Score n images (any sizes) as one batch: out[i] receives image i. Errors: UF_ERR_ARG,
 * UF_ERR_NONFINITE (the backbone produced NaN/Inf or too large features for an image, or
 * its distance to the bank overflowed: nothing is scored; with n > 1 the message starts
 * with "image I: "),
 * UF_ERR_NOMEM. Results do not depend on n or on the thread count beyond float rounding.
 * Not thread-safe per scorer. */
uf_status uf_score_images(uf_scorer *s, const uf_image *const *imgs, int n, uf_score *out);

/* Scoring in two steps, so features computed once serve several models made with the same
 * backbone and the same feature settings (layers, bpm, bpm_kernel, bpm_lambda, rollout,
 * preprocessing, tile, tile_overlap), e.g. the one-class models of every class of a dataset
 * scoring one test set. uf_scorer_extract runs the backbone on n images: feats
 * [n][rows][D] (the patch features), smooth [n][rows] (the BPM map: smoothed attention /
 * its max; 1 without BPM; -1 marks a row that is not the image: a padding patch of the
 * whole-image geometry, crop 0, a letterbox patch lying entirely in the bars, an unused
 * slot of the tiled layout) and mask [n][rows] (1 = foreground), caller-allocated, rows =
 * uf_model_patch_rows(m). Untiled models: rows = gh * gw, one row per patch of the grid.
 * Tiled models: the rows are the tiles' own patches, tile t (row-major over the image's
 * tiles, positions as uf_detector_params.tile says) in rows t * tg^2 .. t * tg^2 + th * tw
 * - 1 (its th x tw patches row-major; tg = tile / patch, th and tw = tg or the image's
 * own grid height / width if smaller), the other rows unused (features 0), and the last
 * row is a header whose features [0] and [1] hold the image's own grid height and width
 * in patches (smooth -1, mask 0): uf_score_features stitches the tiles' patch scores
 * from it. uf_score_features scores such
 * features with the scorer's model, filling out[n] exactly as uf_score_images does on the
 * images (bit-identical results, tiled models included). When no out[i] asks for
 * patch_scores or pixel_map (and the soft mask is off), only foreground patches are
 * searched in the bank, which is much faster for images with much background; rows with
 * smooth -1 are never searched (patch score 0). Errors: UF_ERR_ARG (also: a tiled model's
 * header row without a valid own grid size, when a map is asked for), UF_ERR_NONFINITE,
 * UF_ERR_NOMEM. Not thread-safe per scorer; memory: the caller's arrays only. */
uf_status uf_scorer_extract(uf_scorer *s, const uf_image *const *imgs, int n, float *feats,
                            float *smooth, uint8_t *mask);
uf_status uf_score_features(uf_scorer *s, const float *feats, const float *smooth,
                            const uint8_t *mask, int n, uf_score *out);

/* Map a pixel map ([S][S], network-input coordinates) back onto the geometry of the
 * original image (width x height): out is [height][width]. The map is placed in the
 * resized image where the crop came from and resized bilinearly to the original size;
 * pixels outside the crop get the map's minimum. Errors: UF_ERR_ARG, UF_ERR_NOMEM.
 * Thread-safe. */
uf_status uf_model_map_to_image(const uf_model *m, const float *pixel_map, int width,
                                int height, float *out);

/* Which pixels of an original image (width x height) the model inspects: out
 * ([height][width], caller-allocated) receives 1 where the network input shows the pixel
 * (its centre lies in the part of the resized image that the crop, or the canvas, keeps),
 * 0 where the geometry discards it (e.g. outside the centre crop); all 1 when the geometry
 * keeps the whole image. Overlays grey out the 0s (uf_annotation.inspected). Errors:
 * UF_ERR_ARG, UF_ERR_NOMEM. Thread-safe. */
uf_status uf_model_inspected(const uf_model *m, int width, int height, uint8_t *out);

/* ------------------------------------------------------------------------------------ */
/* Zero-shot scoring (src/detector/zeroshot.c)                                          */
/* ------------------------------------------------------------------------------------ */

/* Score a set of test images with no training images, MuSc's mutual scoring (Li et al.,
 * ICLR 2024, "interval average" of models/modules/_MSM.py): every image's patches are
 * compared with the foreground patches of every OTHER image of the set. For patch p of
 * image i and each other image j, m_j = the squared L2 distance from p to its nearest
 * foreground patch of j (the kNN of uf_score_images with k = 1; squared, as the detector's
 * scores); the patch score is the mean of the K smallest m_j, K = max(1, floor(ref_frac *
 * M)), M = the number of other images with a foreground patch (MuSc: int(0.3 * (N - 1))).
 * A defect is rare among the images, so its patches are far from most of them, while a
 * normal patch finds near matches in most. The image itself never serves as a reference.
 * From the patch scores on, everything is as in uf_score_images (BPM masking - background
 * patches are not scored and not used as references - top-K image score, pixel map).
 * Features come from the same extraction as fitting (layers, BPM, preprocessing of p);
 * knn and coreset of p are not used.
 * Usage: uf_zeroshot_new, uf_zeroshot_add the images (any number of calls; only each
 * image's features, BPM map and mask are kept: (D + 2) * 4 + 1 bytes per patch), then
 * uf_zeroshot_score. */
typedef struct uf_zeroshot uf_zeroshot;

/* MuSc's default fraction of the other images averaged (topmin_max = 0.3). */
#define UF_ZEROSHOT_DEFAULT_REF_FRAC 0.3

/* Start a zero-shot set with backbone bb (borrowed: it must outlive the set) and settings p
 * (NULL: defaults; copied), ref_frac in (0, 1] (see above). Errors: UF_ERR_ARG (params do not
 * fit the backbone, ref_frac out of range), UF_ERR_NOMEM. */
uf_status uf_zeroshot_new(const uf_backbone *bb, const uf_detector_params *p, double ref_frac,
                          uf_zeroshot **out);

/* Extract and keep the features of n more images (any sizes). Errors: as uf_fitter_add;
 * on failure no image of this call is added. Not thread-safe per set. */
uf_status uf_zeroshot_add(uf_zeroshot *z, const uf_image *const *imgs, int n);

/* Number of threads the set's calls use (feature extraction, the kNN searches); n <= 0:
 * the library default (uf_get_threads()), read at each call. Nothing process-wide changes;
 * results do not depend on it. NULL is a no-op. Not thread-safe per set. */
void uf_zeroshot_set_threads(uf_zeroshot *z, int n);

/* Images added so far. */
size_t uf_zeroshot_count(const uf_zeroshot *z);

/* The model whose settings the set scores with (an empty bank), owned by the set: for
 * uf_model_output_size (sizes of the uf_score arrays) and uf_model_map_to_image. */
const uf_model *uf_zeroshot_model(const uf_zeroshot *z);

/* Score the added images first..first+count-1 against all the added images: out [count],
 * out[k] for image first + k (in the order added), with the array pointers the caller wants
 * set, as for uf_score_images. Scoring the set in several ranges gives the same results as
 * in one, so a caller can bound the memory of its outputs (pixel maps). block = query
 * images per pass (0: as many as fit in 64 MB of distances); the distances held at once
 * are block * gh*gw * uf_zeroshot_count(z) floats, never the all-pairs matrix. Cost:
 * count * uf_zeroshot_count(z) * (gh*gw)^2 * D multiply-adds. Results do not depend on
 * the ranges, block or the thread count (each m_j comes from an exact recomputation of the
 * nearest candidate's distance). Errors: UF_ERR_ARG (range beyond the set, fewer than 2
 * images, or fewer than 2 with a foreground patch), UF_ERR_NOMEM, UF_ERR_LIMIT. May be
 * called again (e.g. after adding more images, which changes the references). Not
 * thread-safe per set. */
uf_status uf_zeroshot_score(uf_zeroshot *z, size_t first, size_t count, int block,
                            uf_score *out);

/* Release a set; NULL is a no-op. */
void uf_zeroshot_free(uf_zeroshot *z);

/* ------------------------------------------------------------------------------------ */
/* Metrics                                                                              */
/* ------------------------------------------------------------------------------------ */

/* Area under the ROC curve of scores[n] against labels[n] (nonzero = positive/anomalous),
 * exactly as scikit-learn's roc_auc_score: tied scores count half. Returns NaN (with a
 * message for uf_errmsg()) when either class is empty, on NULL or NaN input, or when out
 * of memory. Infinities are ordered as usual. A radix sort: O(n) time, at most 8 bytes per
 * score of extra memory (4.2 million scores in about 0.1 s). Thread-safe. */
double uf_auroc(const float *scores, const uint8_t *labels, size_t n);

/* ------------------------------------------------------------------------------------ */
/* Pixel metrics and clustering (src/eval/metrics.c, src/eval/cluster.c)                */
/* ------------------------------------------------------------------------------------ */

/* Pixel-level results of uf_pixel_metrics. */
typedef struct uf_pixel_result {
    double auroc;        /* pixel AUROC as roc_auc_score over every pixel (ties count half);
                            NaN unless both normal and anomalous pixels exist            */
    double aupro;        /* area under the per-region-overlap curve for FPR in [0, max_fpr],
                            divided by max_fpr (MVTec AD's AU-PRO); NaN without normal
                            pixels or without anomalous regions                          */
    double f1_max;       /* best F1 over all thresholds (precision_recall_curve points);
                            NaN without anomalous pixels                                 */
    double f1_threshold; /* a threshold reaching f1_max: predict anomalous if score >= it */
    double auroc_err;    /* bounds on |figure - exact figure| caused by merging scores;  */
    double aupro_err;    /* 0 when exact (f1_err: the exact F1-max lies in               */
    double f1_err;       /* [f1_max, f1_max + f1_err])                                   */
    int exact;           /* 1: no scores were merged (exact up to float rounding)         */
    uint64_t n_pixels;    /* pixels in all maps                                           */
    uint64_t n_anomalous; /* pixels with a nonzero mask value                             */
    uint64_t n_regions;   /* 8-connected anomalous regions over all masks                 */
} uf_pixel_result;

/* Pixel AUROC, AUPRO and F1-max over a test set of n_images anomaly maps, without copying
 * the scores. maps[i] is [heights[i]][widths[i]] floats (any values but NaN; +-Inf are
 * ordered as usual, -0 equals +0); masks[i] the same shape, nonzero = anomalous pixel;
 * masks, or any masks[i], may be NULL for an all-normal image. All arrays are read only
 * and stay owned by the caller.
 *
 * Definitions (scikit-learn / MVTec AD evaluation code):
 *  - auroc: roc_auc_score(all mask pixels != 0, all scores).
 *  - aupro: regions are the 8-connected components of each mask (scipy.ndimage.label with
 *    a 3x3 structure of ones, as MVTec's compute_pro). At every distinct score t (pixels
 *    >= t predicted anomalous), FPR(t) = predicted normal pixels / normal pixels and
 *    PRO(t) = mean over all regions of the fraction of the region predicted. The curve
 *    (0,0), (FPR, PRO) at decreasing t, is integrated with the trapezoid rule up to
 *    max_fpr (interpolating linearly at max_fpr) and divided by max_fpr. max_fpr is in
 *    (0, 1]; MVTec AD uses 0.3.
 *  - f1_max: max over t of 2 TP / (TP + FP + P) (= 2 precision recall / (precision +
 *    recall)), P the anomalous pixels.
 * Memory: at most max_bytes (0: 64 MiB) plus 5 MiB, plus 12 bytes per pixel of the
 * largest masked image, however many pixels there are. The results are exact (exact = 1)
 * when the pixels of the score bins (2^-7 relative width) holding both classes fit 8 bytes
 * each in max_bytes (64 MiB: 8 million such pixels, i.e. every pixel of 160 maps of
 * 224 x 224); beyond that, scores of both classes within narrow bins are merged and the
 * *_err fields bound the effect (MVTec bottle's 83 test maps at full 900 x 900
 * resolution, 67 million pixels, default memory: errors 6e-8 AUROC, 1e-10 AUPRO, 2e-7 F1
 * within bounds 5e-6, 3e-7, 8e-7; 1.4 s). O(pixels) time (4 million pixels: 0.15 s), two
 * passes over the maps, single-threaded.
 * Errors: UF_ERR_ARG (NULL out/maps/heights/widths, n_images < 1, a NULL map, a size
 * < 1, max_fpr outside (0, 1]), UF_ERR_NONFINITE (a NaN score: the message names the map
 * and pixel), UF_ERR_LIMIT (2^32 pixels or more), UF_ERR_NOMEM. Undefined figures are NaN
 * with status UF_OK (e.g. no masks at all). out is always written. Thread-safe. */
uf_status uf_pixel_metrics(const float *const *maps, const uint8_t *const *masks,
                           const int *heights, const int *widths, int n_images,
                           double max_fpr, size_t max_bytes, uf_pixel_result *out);

/* Best F1 of scores[n] against labels[n] (nonzero = positive) over all thresholds, i.e.
 * the max of 2 P R / (P + R) over the points of scikit-learn's precision_recall_curve;
 * exact (sorting). Returns NaN with a message for uf_errmsg() on NULL input, a NaN score,
 * no positive sample, or out of memory. Thread-safe. */
double uf_f1_max(const float *scores, const uint8_t *labels, size_t n);

/* uf_f1_max that also gives a threshold reaching the best F1: *threshold (may be NULL) is
 * the lowest score of the best cut (predict anomalous if score >= it); NaN on failure. */
double uf_f1_max_threshold(const float *scores, const uint8_t *labels, size_t n,
                           double *threshold);

/* Clustering agreement between two labelings a[n], b[n] of the same n items (any int
 * values; only equality matters), as scikit-learn 1.2:
 *  uf_nmi: normalized_mutual_info_score (arithmetic mean of the entropies; natural log).
 *  uf_ari: adjusted_rand_score.
 * n = 0 gives 1.0 (as scikit-learn). NaN on NULL input with n > 0, n >= 2^31 or out of
 * memory, with a message for uf_errmsg(). O(n log n). Thread-safe. */
double uf_nmi(const int *a, const int *b, size_t n);
double uf_ari(const int *a, const int *b, size_t n);

/* F1 of a clustering pred[n] against true types truth[n] after matching clusters to types
 * one-to-one with the Hungarian algorithm so that the number of items whose cluster is
 * matched to their own type is maximal (rectangular when the counts of clusters and types
 * differ; unmatched clusters predict no type).
 *  uf_cluster_f1: micro-averaged F1 = matched items / n, i.e. the Hungarian clustering
 *    accuracy; what UniFormaly's evaluation reports (f1_score(average='micro') after
 *    Munkres matching). Independent of which optimal matching is used.
 *  uf_cluster_f1_macro: macro F1 over the true types, mean over types c of
 *    2 |c and matched cluster| / (|c| + |matched cluster|) (0 if c has no cluster), i.e.
 *    f1_score(truth, mapped, labels=unique(truth), average='macro'); when several
 *    matchings reach the maximum the first found is used.
 * NaN with a message for uf_errmsg() on NULL input, n = 0, n >= 2^31, more than 2^22
 * (type, cluster) pairs, or out of memory. O(n log n + k^3). Thread-safe. */
double uf_cluster_f1(const int *truth, const int *pred, size_t n);
double uf_cluster_f1_macro(const int *truth, const int *pred, size_t n);

/* K-means of n points X[n][d] into k clusters: k-means++ seeding (greedy, as scikit-learn:
 * 2 + floor(ln k) candidates per centre, the one lowering the potential most is kept),
 * then Lloyd iterations until no label changes or max_iter updates (an emptied cluster
 * takes the point farthest from its centre); the best of `restarts` runs by inertia.
 * labels[n] receives cluster ids 0..k-1; *inertia (may be NULL) the sum of squared
 * distances of the points to the means of their clusters. Distances are computed in
 * double. Deterministic for a given seed and independent of the thread count (but not
 * equal to scikit-learn's random streams).
 * Errors: UF_ERR_ARG (NULL X/labels, n < 1, d < 1, k < 1 or k > n, restarts < 1,
 * max_iter < 0, or fewer than k distinct points: the message says how many),
 * UF_ERR_NONFINITE (NaN/Inf in X), UF_ERR_LIMIT (n >= 2^31), UF_ERR_NOMEM. Thread-safe. */
uf_status uf_kmeans(const float *X, size_t n, int d, int k, int restarts, uint64_t seed,
                    int max_iter, int *labels, double *inertia);

/* ------------------------------------------------------------------------------------ */
/* Datasets (src/eval/dataset.c)                                                        */
/* ------------------------------------------------------------------------------------ */

/* Datasets: readers for the layouts anomaly-detection data comes in on disk, so `uniformaly
 * eval` (and any caller) can run every task of the paper on published datasets.
 *
 * An opened dataset is a list of *categories*, each with a train split (normal images to
 * fit on) and a test split (normal and anomalous images, with ground truth):
 *  - Defect datasets (MVTec AD, BTAD, MTD, generic folder, list): a category is a product
 *    (MVTec's "bottle", BTAD's "01"); test items carry their defect type and mask.
 *  - Semantic datasets (CIFAR-10/100, MNIST, Fashion-MNIST, ImageNet-style class folders):
 *    a category is a class, under the one-class protocol: category c's train split is the
 *    training images of class c; its test split is EVERY test image, anomalous iff its class
 *    is not c. The test splits of all categories hold the same images in the same order
 *    (only `anomalous` differs), so a caller can compute each test image's features once
 *    and reuse them for every class (cache by index or by image_id). Multi-class settings
 *    union the train splits of several categories and label test items by class_id.
 *
 * Layouts (image files: .png .jpg .jpeg .bmp .ppm .pgm .pbm .pnm, any letter case; names
 * starting with '.' are ignored; all listings sorted bytewise):
 *  UF_DATASET_MVTEC, UF_DATASET_BTAD: <root>/<category>/train/good/ (BTAD: train/ok/) and
 *      <root>/<category>/test/<type>/, where type "good" (or "ok") is normal and any other
 *      folder is a defect type; masks in <root>/<category>/ground_truth/<type>/ named
 *      "<stem>_mask.<ext>" (MVTec) or "<stem>.<ext>" (BTAD), any image extension, for test
 *      image "<stem>.<ext>". Categories are the subfolders holding train/ or test/; a root
 *      that itself holds train/ or test/ is one category named after the folder. The two
 *      kinds read the same layouts (they differ only in name).
 *  UF_DATASET_MTD: <root>/MT_Free/Imgs/ and <root>/MT_<Defect>/Imgs/ holding X.jpg with its
 *      mask X.png beside it (images: every image file that is not .png). The standard split:
 *      MT_Free's images sorted bytewise by name, index i (0-based) with i % 5 == 0 is a test
 *      image, the others train; every defective image is a test image of type <Defect>.
 *      One category, "mtd".
 *  UF_DATASET_FOLDER: <root>/train/good/ (or, without train/good, <root>/train/ holding the
 *      images directly) and <root>/test/<type>/ with masks in <root>/ground_truth/<type>/,
 *      named as for MVTec/BTAD. One category named after the root folder.
 *  UF_DATASET_LIST: root is a folder holding train.txt and test.txt, one image per line:
 *          path [label [mask]]
 *      fields separated by a tab if the line has one (so paths may hold spaces), otherwise by
 *      spaces; relative paths are taken against root; blank lines and lines whose first
 *      non-blank character is '#' are skipped. label: "0" or "good" is normal; "1" is
 *      anomalous of type "anomalous"; any other word is anomalous with that word as its
 *      type. mask: a mask file, or "-" for none. The label is required in test.txt and
 *      optional (normal) in train.txt, which must hold normal images only. Every listed
 *      file must exist. One category named after the root folder.
 *  UF_DATASET_CIFAR10: the binary version: data_batch_1.bin .. data_batch_5.bin and
 *      test_batch.bin (records of 1 label byte + 3072 bytes: R, G, B planes of 32x32) in root
 *      or in root/cifar-10-batches-bin/; class names from batches.meta.txt (the standard
 *      ten when the file is absent).
 *  UF_DATASET_CIFAR100: train.bin and test.bin (records of 2 label bytes, coarse and fine,
 *      + 3072) in root or root/cifar-100-binary/; categories are the 20 superclasses (coarse
 *      labels), named from coarse_label_names.txt (the standard names when absent).
 *  UF_DATASET_MNIST, UF_DATASET_FASHION_MNIST: train-images-idx3-ubyte,
 *      train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each plain
 *      or gzip-compressed (.gz; also the "train-images.idx3-ubyte" spelling), in root or
 *      root/raw/. Classes "0".."9", or Fashion-MNIST's "T-shirt/top", "Trouser", ...,
 *      "Ankle boot". Grey images are replicated to RGB.
 *  UF_DATASET_IMAGEFOLDER: <root>/train/<class>/ and <root>/val/<class>/ (or test/<class>/);
 *      classes are the train subfolders; a val class missing from train is an error.
 * In-memory datasets (CIFAR, MNIST) keep only the raw pixel bytes (about 184 MB for
 * CIFAR-10, 55 MB for MNIST); images are built on demand by uf_dataset_load_image.
 *
 * Robustness: every size read from a file is checked (CIFAR file sizes must be exact
 * multiples of the record size; idx magic, dimensions and counts must agree, plain idx
 * files must have exactly the declared size and a .gz must inflate to exactly it, complete
 * with its trailer; labels must be in range) before anything is allocated from it. Errors
 * are one line naming the file: UF_ERR_IO (root or a required file missing or
 * unreadable), UF_ERR_FORMAT (layout not as described - e.g. "bottle: no train/ folder" -,
 * a truncated or corrupt file, a label out of range, a list line that does not parse),
 * UF_ERR_LIMIT, UF_ERR_NOMEM. */
typedef enum uf_dataset_kind {
    UF_DATASET_MVTEC = 0,
    UF_DATASET_BTAD = 1,
    UF_DATASET_MTD = 2,
    UF_DATASET_FOLDER = 3,
    UF_DATASET_LIST = 4,
    UF_DATASET_CIFAR10 = 5,
    UF_DATASET_CIFAR100 = 6,
    UF_DATASET_MNIST = 7,
    UF_DATASET_FASHION_MNIST = 8,
    UF_DATASET_IMAGEFOLDER = 9
} uf_dataset_kind;

/* Parse a dataset name, case-insensitively: "mvtec" (also "mvtec_ad", "mvtec-ad"), "btad",
 * "mtd", "folder", "list", "cifar10" ("cifar-10"), "cifar100" ("cifar-100"), "mnist",
 * "fashion-mnist" ("fashion_mnist", "fmnist"), "imagefolder" ("image-folder").
 * Errors: UF_ERR_ARG, with a message listing the valid names. Thread-safe. */
uf_status uf_dataset_kind_from_name(const char *name, uf_dataset_kind *out);

/* Canonical name of a kind ("mvtec", ..., "fashion-mnist"); "?" if out of range. */
const char *uf_dataset_kind_name(uf_dataset_kind kind);

/* An opened dataset. Immutable after uf_dataset_open as far as callers can tell: every
 * function below may be called from any number of threads at once. */
typedef struct uf_dataset uf_dataset;

/* One image of a split. All pointers point into the dataset and live as long as it. */
typedef struct uf_dataset_item {
    const char *path;      /* image file, or NULL for images held in memory (CIFAR, MNIST) */
    const char *mask_path; /* ground-truth mask file, or NULL if there is none            */
    const char *name;      /* short display name: the path relative to root for files,
                              "<file>#<record>" (e.g. "test_batch.bin#17") in memory       */
    const char *type;      /* defect datasets: "good" for normal images (whatever their
                              folder is called, e.g. BTAD's "ok"), else the defect type
                              (its folder name, or the list label); semantic datasets:
                              the class name                                             */
    int type_id;           /* index of type in the category's type list
                              (uf_dataset_type): defect datasets 0 = "good", then the
                              defect types bytewise; semantic datasets: the class index  */
    int anomalous;         /* 1 anomalous, 0 normal                                        */
    int class_id;          /* semantic datasets: the class index; defect datasets: the
                              index of the category the item belongs to                  */
    size_t image_id;       /* the image's identity within the dataset, in
                              0..n_images-1: two items show the same image iff equal     */
} uf_dataset_item;

/* Which part of a category. */
typedef enum uf_split { UF_SPLIT_TRAIN = 0, UF_SPLIT_TEST = 1 } uf_split;

/* Open the dataset of the given kind at root (a folder; see the layouts above). Scans the
 * folders (or reads the binary files) once; nothing is decoded. *out is owned by the
 * caller; release with uf_dataset_free. Errors: UF_ERR_ARG, UF_ERR_IO, UF_ERR_FORMAT,
 * UF_ERR_LIMIT, UF_ERR_NOMEM (see above). Thread-safe. */
uf_status uf_dataset_open(uf_dataset_kind kind, const char *root, uf_dataset **out);

/* Release a dataset and everything it handed out; NULL is a no-op. */
void uf_dataset_free(uf_dataset *ds);

/* What a dataset is. */
typedef struct uf_dataset_info {
    uf_dataset_kind kind;
    const char *root;     /* the root as given, trailing '/' removed                   */
    int semantic;         /* 1: categories are classes (one-class protocol)            */
    int n_categories;     /* >= 1                                                      */
    size_t n_images;      /* distinct images (the range of image_id)                   */
    int image_width;      /* in-memory images: their size (CIFAR 32x32, MNIST 28x28);  */
    int image_height;     /* 0 for datasets of files                                   */
} uf_dataset_info;

/* Fill *info. Thread-safe. */
void uf_dataset_get_info(const uf_dataset *ds, uf_dataset_info *info);

/* Number of categories (>= 1) and the name of category c (0 <= c < n; NULL otherwise).
 * Defect datasets: categories sorted bytewise; semantic: classes in label order. */
int uf_dataset_n_categories(const uf_dataset *ds);
const char *uf_dataset_category(const uf_dataset *ds, int c);

/* Index of the category called name (exact match), or -1. */
int uf_dataset_find_category(const uf_dataset *ds, const char *name);

/* The type list of category c that item.type_id indexes: defect datasets "good" and then
 * the defect types of the category (bytewise); semantic datasets the class names. n_types
 * returns 0 and type returns NULL for an index out of range. */
int uf_dataset_n_types(const uf_dataset *ds, int c);
const char *uf_dataset_type(const uf_dataset *ds, int c, int t);

/* Counts of category c: train images, test images, anomalous test images and anomalous
 * test images that have a mask. Pixel-level metrics are meaningful for a category when
 * n_test_masked == n_test_anomalous > 0. */
typedef struct uf_dataset_counts {
    size_t n_train, n_test, n_test_anomalous, n_test_masked;
} uf_dataset_counts;

/* Fill *counts for category c. Errors: UF_ERR_ARG (c out of range). Thread-safe. */
uf_status uf_dataset_get_counts(const uf_dataset *ds, int c, uf_dataset_counts *counts);

/* The items of one split of category c: *items is an array of *n items owned by ds
 * (valid until uf_dataset_free). Order: train as listed (MTD: bytewise); test by type
 * (normal first, then the defect types bytewise), then by file name; semantic datasets
 * keep the files' order (CIFAR/MNIST: record order; imagefolder: class, then name), and
 * the test split is the same sequence of images for every category. A semantic test
 * split is built on its first request (n_test items, ~56 bytes each). Errors: UF_ERR_ARG
 * (bad index or split), UF_ERR_NOMEM. Thread-safe. */
uf_status uf_dataset_split(const uf_dataset *ds, int c, uf_split split,
                           const uf_dataset_item **items, size_t *n);

/* The image of an item of ds, as uf_image_load gives it (in-memory images: RGB, grey
 * replicated to three channels). *out is owned by the caller. Errors: those of
 * uf_image_load; UF_ERR_ARG (item not of ds). Thread-safe. */
uf_status uf_dataset_load_image(const uf_dataset *ds, const uf_dataset_item *item,
                                uf_image **out);

/* The ground-truth mask of an item as *mask, [height][width] bytes 0/1, malloc'd (the
 * caller frees it): pixel 1 where the mask file's value is >= 128 (the largest of its
 * three channels after uf_image_load), all 0 when the item has no mask. width and height
 * are the item's image size; a mask of another size is an error (UF_ERR_FORMAT naming the
 * mask file and both sizes). Errors: UF_ERR_ARG (NULL, sizes <= 0), UF_ERR_LIMIT (more
 * pixels than uf_get_max_pixels()), those of uf_image_load. Thread-safe. */
uf_status uf_dataset_load_mask(const uf_dataset *ds, const uf_dataset_item *item, int width,
                               int height, uint8_t **mask);

/* ------------------------------------------------------------------------------------ */
/* Evaluation: the paper's protocols over a dataset                                     */
/* ------------------------------------------------------------------------------------ */

/* A ground-truth mask in network-input space: mask[height][width] (0/1, as
 * uf_dataset_load_mask gives it) goes through the image's geometry under pre - resized
 * bilinearly (Pillow's filter, as a 0/255 grey image) to the resized size, centre-cropped
 * or padded with zeros as the image is (uf_preprocess_geometry) - and out[S][S]
 * (S = uf_preprocess_size(pre), caller-allocated) receives 1 where the resized value v
 * satisfies v / 255 >= threshold, else 0. threshold in (0, 1]: 0.5 (UF_GT_THRESHOLD_DEFAULT)
 * is torchvision's Resize + CenterCrop of the mask followed by >= 0.5; 1.0
 * (UF_GT_THRESHOLD_EXACT) keeps only pixels that stay exactly 255 after resizing, as the
 * official UniFormaly / PatchCore evaluation does (it truncates the [0, 1] mask to int).
 * pre may be NULL for the defaults. Errors: UF_ERR_ARG (NULL, sizes <= 0, threshold out of
 * range, invalid pre), UF_ERR_NOMEM, UF_ERR_LIMIT. Thread-safe. */
#define UF_GT_THRESHOLD_DEFAULT 0.5
#define UF_GT_THRESHOLD_EXACT 1.0
uf_status uf_eval_mask_to_network(const uint8_t *mask, int width, int height,
                                  const uf_preprocess *pre, double threshold, uint8_t *out);

/* The few-shot draw: k of n indices by a partial Fisher-Yates shuffle driven by
 * uf_splitmix64 from state seed ^ 0x73686f7473 ("shots"), sorted ascending into out[k]
 * (caller-allocated). `uniformaly fit --shots` and uf_eval_run draw with it, so the same
 * seed gives the same images. Requires 0 < k <= n. Errors: UF_ERR_ARG, UF_ERR_NOMEM.
 * Thread-safe. */
uf_status uf_draw_shots(size_t n, size_t k, uint64_t seed, size_t *out);

/* Which test images anomaly clustering groups. */
typedef enum uf_cluster_protocol {
    UF_CLUSTER_OFFICIAL = 0,  /* every test image of the category, good ones included, into
                                 K = the number of types including "good" (the official
                                 UniFormaly code; comparable with the paper's Table 7)     */
    UF_CLUSTER_ANOMALOUS = 1  /* the anomalous test images only, into K = the number of
                                 defect types (what `uniformaly eval` measured before the
                                 official protocol became its default)                    */
} uf_cluster_protocol;

/* The three image features clustered, indices of uf_eval_figures.cluster. */
enum {
    UF_EVAL_FEATURE_TOPK = 0,        /* mean feature of the top-K patches (the method's)    */
    UF_EVAL_FEATURE_ALL_PATCHES = 1, /* mean of all patch features                          */
    UF_EVAL_FEATURE_MAX_PATCH = 2,   /* feature of the highest-scoring (masked) patch       */
    UF_EVAL_N_FEATURES = 3
};

/* Bits of uf_eval_params.keep: fields of uf_eval_params.detector the caller chose, which the
 * task defaults (uf_eval_resolve) must then leave alone. */
#define UF_EVAL_KEEP_RESIZE 1u  /* detector.pre.resize                  */
#define UF_EVAL_KEEP_CROP 2u    /* detector.pre.crop and pre.pad_to     */
#define UF_EVAL_KEEP_INTERP 4u  /* detector.pre.interp                  */
#define UF_EVAL_KEEP_CORESET 8u /* detector.coreset                     */

typedef struct uf_eval_result uf_eval_result;
typedef struct uf_eval_row uf_eval_row;

/* Settings of an evaluation run; defaults in brackets (uf_eval_default_params). */
typedef struct uf_eval_params {
    uf_detector_params detector; /* the method [uf_detector_default_params()]; the task
                                    defaults replace coreset and, for small in-memory
                                    images, the preprocessing, unless kept (see keep)     */
    unsigned keep;               /* UF_EVAL_KEEP_* bits [0]                               */
    int multi_class;             /* one bank from the training images of every selected
                                    category, scored on each category's test set [0].
                                    Semantic datasets: test images of the selected
                                    classes are normal, all others anomalous             */
    int cluster;                 /* anomaly clustering: 0 off [0]; -1 K = the number of
                                    types clustered; K >= 1 that many clusters            */
    uf_cluster_protocol cluster_protocol; /* [UF_CLUSTER_OFFICIAL]                        */
    int cluster_restarts;        /* k-means restarts (k-means++ seeding) [10]             */
    int cluster_max_iter;        /* Lloyd iterations per restart [300]                    */
    size_t shots;                /* fit on this many training images per category, drawn
                                    with uf_draw_shots; 0 = all [0]                       */
    int repeats;                 /* fits per category, repeat r with seed detector.seed + r
                                    (draw and coreset); 0 = 5 with shots, else 1 [0]     */
    size_t max_train;            /* at most this many training images per category (a
                                    uf_draw_shots subset, seed detector.seed); 0 = all
                                    [0]; excludes shots                                   */
    double gt_threshold;         /* ground-truth level, see uf_eval_mask_to_network [0.5] */
    double max_fpr;              /* AUPRO integration limit [0.3]                         */
    int batch;                   /* images decoded and run per batch [8]                  */
    int threads;                 /* compute threads of the run's fitters, scorers and
                                    decoding loops (uf_fitter_set_threads, ...); <= 0 =
                                    the library default, see uf_get_threads [0]           */
    int want_maps;               /* compute pixel maps of defect categories without masks
                                    too, for on_maps [0]                                  */
    /* Callbacks (each may be NULL), called from the calling thread with `user`; a nonzero
     * return cancels the run (uf_eval_run then fails with UF_ERR_ARG, "cancelled").
     *  progress:  stage is "<row label>: fit" (images added), "<row label>: coreset" or
     *             "<row label>: test features" (images extracted); the string lives for
     *             the call only.
     *  on_update: once when the run has resolved its settings and laid out its rows (row
     *             NULL), then each time a row finishes (all its repeats scored), so a
     *             caller can write results incrementally.
     *  on_maps:   defect datasets, first repeat: the pixel maps [n][S][S] of a scored test
     *             set (items[n], model m), when the row has masks or want_maps is set;
     *             maps and m live for the call only.
     *  on_model:  each model the run fits, right after its fit (before it is scored): row
     *             is its category's row (one-class) or the overall row (multi-class),
     *             repeat its index; m lives for the call only (e.g. uf_model_save it).     */
    uf_progress_fn progress;
    int (*on_update)(void *user, const uf_eval_result *r, const uf_eval_row *row);
    int (*on_maps)(void *user, const uf_eval_result *r, const uf_eval_row *row,
                   const uf_model *m, const uf_dataset_item *items, size_t n,
                   const float *maps);
    void *user;
    double zero_shot;            /* > 0: no fit; each category's test set is scored
                                    against itself with uf_zeroshot_* (MuSc), this being
                                    its ref_frac in (0, 1] (UF_ZEROSHOT_DEFAULT_REF_FRAC
                                    = 0.3); one repeat, the detector's feature settings
                                    (coreset and knn unused). Excludes shots, max_train,
                                    repeats, multi_class and cluster [0]               */
    /* (after zero_shot, so the struct only grows at its end; see on_model above) */
    int (*on_model)(void *user, const uf_eval_result *r, const uf_eval_row *row, int repeat,
                    const uf_model *m);
} uf_eval_params;

/* The defaults in brackets above. */
uf_eval_params uf_eval_default_params(void);

/* Every figure of one fit scored on one row's test set; NaN where undefined or not computed
 * (e.g. pixel figures without masks, clustering not asked). Sizes and seconds are doubles
 * because rows average them over repeats. */
typedef struct uf_eval_figures {
    double image_auroc;        /* image score against anomalous                          */
    double f1_max;             /* best image F1 over thresholds (uf_f1_max)              */
    double f1_threshold;       /* an image score reaching it (anomalous if score >= it)   */
    double pixel_auroc;        /* uf_pixel_metrics over the [S][S] maps and masks        */
    double aupro;              /* FPR <= max_fpr                                          */
    double pixel_f1_max;
    double pixel_f1_threshold;
    struct {
        double nmi, ari, f1;   /* uf_nmi, uf_ari, uf_cluster_f1 against the types        */
    } cluster[UF_EVAL_N_FEATURES];
    double n_train;            /* training images of the fit                              */
    double bank_size;          /* after the coreset                                       */
    double bank_size_full;     /* before it                                               */
    double fit_seconds;        /* decoding, features, coreset                             */
    double extract_seconds;    /* test features (0 when shared with an earlier fit)       */
    double score_seconds;      /* scoring, metrics, clustering                            */
} uf_eval_figures;

/* One fit of a row. */
typedef struct uf_eval_repeat {
    uf_eval_figures fig;
    uint64_t seed;   /* detector.seed + repeat index                                      */
    float *scores;   /* [row n_scored] image scores of the row's test items, or NULL when
                        the row has no scoring pass of its own (semantic multi-class
                        classes: see "overall")                                           */
} uf_eval_repeat;

/* One row of the results: a selected category, or the multi-class "overall". */
struct uf_eval_row {
    const char *name;        /* category name, or "overall"                               */
    int category;            /* index in the dataset, -1 for overall                      */
    size_t n_test;           /* test images the row's figures cover                       */
    size_t n_test_anomalous;
    int pixel;               /* pixel figures apply (every anomalous image has a mask)    */
    int clustering;          /* clustering was asked for this row                         */
    int cluster_k;           /* clusters asked of k-means (0: none)                       */
    size_t cluster_n;        /* images clustered                                          */
    int n_done;              /* repeats finished; the row is finished when it equals
                                uf_eval_result.repeats                                    */
    uf_eval_repeat *repeats; /* [result repeats], the first n_done filled                 */
    uf_eval_figures mean;    /* over the finished repeats (NaN-valued figures skipped)     */
    uf_eval_figures std;     /* population std over them (0 with one repeat)              */
    size_t n_scored;         /* images of the row's own scoring pass (0: none)            */
    const uf_dataset_item *items; /* [n_scored] those images, owned by the dataset        */
    uint8_t *labels;         /* [n_scored] 1 = anomalous for this row                     */
    char *notes;             /* NULL, or lines (each ending in '\n') about figures left
                                out, e.g. "clustering skipped: one type"                  */
};

/* Everything an evaluation run measured. Owned by the caller: uf_eval_result_free. */
struct uf_eval_result {
    uf_detector_params params;  /* the settings used, task defaults applied               */
    const char *coreset_source; /* where params.coreset comes from (static string)        */
    const char *preprocess_source; /* where params.pre comes from (static string)         */
    int repeats;                /* fits per row                                           */
    int n_rows;                 /* selected categories, in the order given                */
    uf_eval_row *rows;          /* [n_rows]                                               */
    uf_eval_row *overall;       /* multi-class: the union of the test sets, else NULL     */
    int n_finished;             /* rows finished                                          */
    uf_eval_figures mean;       /* over the finished rows' means                          */
    uf_eval_figures std;        /* population std over them                               */
    int grid_h, grid_w, S, D;   /* patch grid, network input side, feature dim (0 before
                                   the first fit)                                        */
    char backbone_path[1024];   /* recorded by the first model ("" before it)              */
    char backbone_sha256[65];
    double fit_seconds, extract_seconds, score_seconds; /* totals over the run            */
};

/* The task defaults of the official scripts (github.com/YoojLee/Uniformaly, run_*.sh),
 * applied to p->detector unless p->keep says the caller chose the field:
 *  coreset: 0.01 for an imagefolder dataset whose selected classes all have more than
 *    10,000 training images (run_imagenet.sh, run_species.sh); 0.05 for any multi-class run
 *    (run_*_multi.sh) and for semantic one-class runs (run_cifar10.sh, run_cifar100.sh; also
 *    MNIST, Fashion-MNIST and smaller class folders); 0.1 for defect datasets, clustering
 *    included (run_defect.sh, run_clustering.sh).
 *  preprocessing of small in-memory images (CIFAR, MNIST): resize 112 with Lanczos, no
 *    crop, zero pad to 224 (run_cifar10.sh's --resize 112 --imagesize 224).
 * cats[n] are the selected category indices. *out receives the resolved settings; the
 * sources (may be NULL) static strings saying which rule set coreset and preprocessing.
 * Errors: UF_ERR_ARG (NULL, bad index, shots with max_train, out-of-range fields, settings
 * refused by uf_detector_params_check without a backbone). Thread-safe. */
uf_status uf_eval_resolve(const uf_dataset *ds, const int *cats, int n, const uf_eval_params *p,
                          uf_detector_params *out, const char **coreset_source,
                          const char **preprocess_source);

/* Run the evaluation of categories cats[n] of ds with backbone bb (borrowed). One-class:
 * a model per category (per repeat) scored on the category's test set; multi-class: one
 * model per repeat from every selected category's training images; zero-shot
 * (p->zero_shot > 0): no model, each category's test set scored against itself
 * (uf_zeroshot_*; n_train 0, bank sizes NaN; on_maps gets uf_zeroshot_model's model). Each test image's
 * features are computed once and reused by every model of the run (semantic datasets share
 * one test sequence across classes). Figures: image AUROC and F1-max; pixel AUROC, AUPRO
 * and pixel F1-max where every anomalous test image has a mask (masks mapped by
 * uf_eval_mask_to_network at p->gt_threshold); clustering (k-means, restarts and seed
 * p->detector.seed) of the images chosen by the protocol, scored against their types. *out
 * is set whenever the result could be allocated, also on failure and cancellation, and then
 * holds every row finished before (for writing partial results); free it with
 * uf_eval_result_free. Errors: those of uf_eval_resolve, of the dataset, image, fitter and
 * scorer (the message names the row and the file), UF_ERR_ARG "cancelled", UF_ERR_NOMEM.
 * Uses up to uf_get_threads() threads. Thread-safe: ds and bb are only read, so several
 * runs may share them. */
uf_status uf_eval_run(const uf_dataset *ds, const uf_backbone *bb, const int *cats, int n,
                      const uf_eval_params *p, uf_eval_result **out);

/* Release a result; NULL is a no-op. */
void uf_eval_result_free(uf_eval_result *r);

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif
#endif /* UNIFORMALY_H */
