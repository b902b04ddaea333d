/*
 * internal.h - declarations shared between the library's source files; not installed.
 *
 * Sections name the file(s) that implement them: core/ helpers (random numbers, errors,
 * overflow-safe sizes, whole-file reads, threads, atomic writes, SHA-256), the flat tensor
 * list that the checkpoint readers produce (io/), the in-memory layout of ViT weights that
 * the loader fills and the forward pass consumes (model/). The detector's kernels have
 * their own header, detector/kernels.h. Private symbols use the `uf__` prefix (double
 * underscore) so they never collide with the public `uf_` API.
 */
#ifndef UF_INTERNAL_H
#define UF_INTERNAL_H

#include "uniformaly.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define UF__PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define UF__PRINTF(a, b)
#endif

/* ---- random numbers (random.c) ------------------------------------------------------- */

/* Uniform in [0, 1) with 53 random bits of uf_splitmix64(state). */
double uf__unif53(uint64_t *state);

/* ---- errors (error.c) ---------------------------------------------------------------- */

/* Record a failure for uf_errmsg() on this thread and return s, so callers can write
 * `return uf__err(UF_ERR_FORMAT, "%s: bad header", path);`. */
uf_status uf__err(uf_status s, const char *fmt, ...) UF__PRINTF(2, 3);

/* Prefix the current thread's message with "prefix: " (e.g. a file name); returns s. */
uf_status uf__err_prefix(uf_status s, const char *prefix);

/* ---- overflow-safe size arithmetic (core/sizes.c), whole files (core/file.c) --------- */

/* *r = a * b; returns false on overflow. */
bool uf__mul_ok(size_t a, size_t b, size_t *r);
/* *r = a + b; returns false on overflow. */
bool uf__add_ok(size_t a, size_t b, size_t *r);

/* Read a whole file into a new malloc'd buffer (*buf, *len). Refuses files larger than
 * max_bytes with UF_ERR_LIMIT. Errors name the path. */
uf_status uf__read_file(const char *path, size_t max_bytes, uint8_t **buf, size_t *len);

/* Map a whole regular file read-only (falling back to reading it into memory when mmap is
 * not possible, e.g. an empty file). buf and len describe it; release with uf__unmap_file(*buf,
 * *len, *mapped). Files larger than max_bytes give UF_ERR_LIMIT. Errors name the path. */
uf_status uf__map_file(const char *path, size_t max_bytes, const uint8_t **buf, size_t *len,
                       bool *mapped);
void uf__unmap_file(const uint8_t *buf, size_t len, bool mapped);
/* "a directory", "a FIFO", ... for a st_mode that is not a regular file (messages). */
const char *uf__file_kind(unsigned mode);

/* ---- little-endian loads at any alignment, on any host byte order ------------------- */
static inline uint16_t uf__le16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t uf__le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}
static inline uint64_t uf__le64(const uint8_t *p)
{
    return uf__le32(p) | ((uint64_t)uf__le32(p + 4) << 32);
}

/* ---- half-precision conversions (io/tensors.c)---------------------------------------- */
float uf__f16_to_f32(uint16_t h);
float uf__bf16_to_f32(uint16_t h);

/* ---- tensors from checkpoint files (io/tensors.c; filled by io/pth.c, io/safetensors.c) */

#define UF__MAX_DIMS 8

/* One named float tensor, contiguous row-major, converted to float32. */
typedef struct uf__tensor {
    char *name;                   /* owned, NUL-terminated, e.g. "blocks.0.attn.qkv.weight" */
    int ndim;                     /* 0..UF__MAX_DIMS                                        */
    int64_t shape[UF__MAX_DIMS];
    size_t numel;                 /* product of shape (1 for a scalar)                      */
    float *data;                  /* owned, [numel]                                         */
} uf__tensor;

/* A growable list of tensors; zero-initialise before use. */
typedef struct uf__tensors {
    uf__tensor *v;
    size_t n, cap;
} uf__tensors;

/* Append a tensor (takes ownership of name and data on success; frees them on failure). */
uf_status uf__tensors_push(uf__tensors *ts, char *name, int ndim, const int64_t *shape,
                           float *data);
/* Free every tensor and the list; leaves ts zeroed. */
void uf__tensors_free(uf__tensors *ts);
/* Free tensors n.. and shrink the list to n (rolls back what a failed load appended). */
void uf__tensors_truncate(uf__tensors *ts, size_t n);
/* Find a tensor by exact name, or NULL. */
uf__tensor *uf__tensors_find(const uf__tensors *ts, const char *name);

/* Read a PyTorch zip checkpoint (torch.save, >= 1.6). Every floating-point tensor reachable
 * from the pickled root object through dicts (nested dicts give dotted names,
 * e.g. "teacher.backbone.blocks.0.norm1.weight") is appended to out as float32
 * (F32, F64, F16, BF16 storages; strided views are made contiguous). Non-float tensors
 * and other objects are ignored. Legacy (non-zip) pickles are refused with UF_ERR_UNSUPPORTED
 * and a conversion hint. */
uf_status uf__pth_load(const char *path, uf__tensors *out);
uf_status uf__pth_load_mem(const uint8_t *buf, size_t len, uf__tensors *out);

/* Safety limits of the .pth reader. uf__pth_load / uf__pth_load_mem use
 * uf__pth_default_limits(); tests pass lower ones to reach every check cheaply. */
typedef struct uf__pth_limits {
    size_t max_marks;      /* MARKs open at once in the pickle                (256)     */
    size_t max_stack;      /* pickle stack entries                            (1<<20)   */
    size_t max_memo;       /* memo indices are < this                         (1<<20)   */
    size_t max_vm_bytes;   /* memory held by unpickled objects (1 GiB), at most
                            * 32 MiB + 64 x the input's length, so a small file
                            * cannot ask for much                                      */
    size_t max_depth;      /* nesting of dicts walked for tensors             (64)      */
    size_t max_visits;     /* objects visited by that walk                    (1<<24)   */
    size_t max_tensors;    /* tensors output                                  (1<<18)   */
    size_t max_data_bytes; /* float32 output + inflated entries; 0: 64 MiB + 4 x input */
} uf__pth_limits;
uf__pth_limits uf__pth_default_limits(void);
/* uf__pth_load_mem with explicit limits (NULL: defaults); name prefixes error messages. */
uf_status uf__pth_load_mem_ex(const uint8_t *buf, size_t len, const char *name,
                              const uf__pth_limits *lim, uf__tensors *out);

/* Read a .safetensors file; F32, F16, BF16 (and F64) tensors are appended as float32,
 * other dtypes skipped. */
uf_status uf__safetensors_load(const char *path, uf__tensors *out);
uf_status uf__safetensors_load_mem(const uint8_t *buf, size_t len, uf__tensors *out);
/* The same, with name prefixing error messages. */
uf_status uf__safetensors_load_mem_ex(const uint8_t *buf, size_t len, const char *name,
                                      uf__tensors *out);

/* Write tensors as a .safetensors file (F32), atomically (temp file + rename). names[i],
 * shapes[i] (ndims[i] dims), data[i]. metadata may be NULL or a JSON object text for
 * "__metadata__" (string values only). */
uf_status uf__safetensors_save(const char *path, int n, const char *const *names,
                               const int *ndims, const int64_t *const *shapes,
                               const float *const *data, const char *metadata_json);

/* ---- ViT weights (checkpoint.c builds them, vit.c uses them) ------------------------- */

typedef struct uf__block_weights {
    float *ln1_w, *ln1_b;   /* [D]        */
    float *qkv_w, *qkv_b;   /* [3D][D], [3D]: rows q (D), k (D), v (D); head h owns rows
                               h*hd..(h+1)*hd-1 of each                                   */
    float *proj_w, *proj_b; /* [D][D], [D] */
    float *ln2_w, *ln2_b;   /* [D]        */
    float *fc1_w, *fc1_b;   /* [M][D], [M]; SwiGLU: [2M][D], [2M] (x1 rows, then x2) */
    float *fc2_w, *fc2_b;   /* [D][M], [D] */
    /* DINOv2 LayerScale (ls1/ls2.gamma) is folded into proj and fc2 at load time:
     * gamma * (W a + b) == (diag(gamma) W) a + gamma b, so the forward needs nothing more */
} uf__block_weights;

/* How the trained positional grid is resampled to another grid (vit.c, pos_prepare):
 * DINO / DINOv2 without registers: bicubic (A = -0.75), scale factor (g + 0.1) / G;
 * Hugging Face Dinov2Model: bicubic to the exact size; DINOv2 with registers (official and
 * Hugging Face): antialiased bicubic (a = -0.5, PyTorch antialias=True) to the exact size. */
enum { UF__POS_OFFSET = 0, UF__POS_EXACT = 1, UF__POS_EXACT_AA = 2 };

typedef struct uf__vit_weights {
    int dim;          /* D                                   */
    int depth;        /* number of blocks                    */
    int heads;        /* attention heads, D % heads == 0     */
    int patch;        /* P                                   */
    int mlp_dim;      /* M                                   */
    int grid_h, grid_w; /* trained positional grid           */
    int n_classes;    /* 0 if no head                        */
    float ln_eps;
    int n_reg;        /* register tokens (DINOv2 with registers), 0 if none */
    int swiglu;       /* 1: the MLP is SwiGLU, hidden = silu(x1) * x2 (DINOv2 giant) */
    int layerscale;   /* 1: the file had LayerScale (folded into proj and fc2) */
    int pos_interp;   /* UF__POS_* */
    float *mem;       /* the single allocation every pointer below points into */
    size_t n_floats;  /* floats in mem */
    float *patch_w;   /* [D][3][P][P] */
    float *patch_b;   /* [D]          */
    float *cls;       /* [D]          */
    float *pos;       /* [1 + grid_h*grid_w][D], row 0 for CLS */
    float *reg;       /* [n_reg][D] register tokens (no positional embedding), or NULL */
    uf__block_weights *blocks; /* [depth], separate small allocation */
    float *norm_w, *norm_b;    /* [D] final LayerNorm */
    float *head_w, *head_b;    /* [n_classes][D], [n_classes], NULL if no head */
} uf__vit_weights;

/* Build ViT weights from a tensor list (names already normalised to timm/DINO names by
 * the checkpoint loader, model/checkpoint.c). Copies into one allocation; does not modify
 * ts. The message of a failure names the missing or mis-shaped tensor. */
uf_status uf__vit_weights_from_tensors(const uf__tensors *ts, const uf_backbone_params *p,
                                       uf__vit_weights *w);
void uf__vit_weights_free(uf__vit_weights *w);

/* The backbone handle (public opaque type), with the identity a model file records. */
struct uf_backbone {
    uf__vit_weights w;
    const char *format;        /* "pth", "safetensors" or "random" (static)            */
    uf_backbone_params params; /* what it was loaded with (heads, ln_eps)              */
    char *path;                /* checkpoint path given to uf_backbone_load, or NULL   */
    char sha256[65];           /* hex sha256 of the checkpoint bytes ("" for random)   */
    size_t file_size;          /* bytes of the checkpoint (0 for random)               */
    uf_vit_config random_cfg;  /* for format "random": the configuration it came from  */
    uf_precision precision;    /* uf_backbone_set_precision [FP32]                     */
    struct uf__lp *lp;         /* the BF16 weights (model/bf16.h) when precision is BF16 */
};

/* Build a backbone from checkpoint bytes (.pth zip or safetensors, sniffed from the
 * contents); name prefixes error messages. Sets format, params, sha256 and file_size;
 * path stays NULL. */
uf_status uf__backbone_load_mem(const uint8_t *buf, size_t len, const char *name,
                                const uf_backbone_params *p, uf_backbone **out);

/* ---- files that appear complete or not at all (atomic.c) ----------------------------- */

/* write() all of buf, retrying on EINTR and short writes; false with errno set. */
bool uf__write_all(int fd, const void *buf, size_t n);

/* A file being written to replace path atomically: write to fd, then uf__afile_commit
 * (durable, then visible under path) or uf__afile_abort (nothing left, path untouched).
 * Exactly one of the two must be called after a successful open. */
typedef struct uf__afile {
    int fd;     /* write here                                                   */
    char *path; /* the target                                                   */
    char *tmp;  /* the temporary name, NULL while the file is unnamed (O_TMPFILE) */
} uf__afile;
uf_status uf__afile_open(uf__afile *a, const char *path);
uf_status uf__afile_commit(uf__afile *a);
void uf__afile_abort(uf__afile *a);

/* ---- resizing rows as a decoder delivers them (resize.c) ------------------------------ */

/* A Pillow-exact resize of an sw x sh image to W x H whose source rows arrive one at a time,
 * in any order: write row y ([sw][3]) into uf__rowresize_row(r), then call
 * uf__rowresize_push(r, y). Only the rows the result needs are kept, after their horizontal
 * pass, so the result of uf__rowresize_finish (after every row was pushed; frees r) equals
 * uf_image_resize of the whole image bit for bit. uf__rowresize_bytes bounds the memory.
 * Errors: UF_ERR_ARG, UF_ERR_LIMIT, UF_ERR_NOMEM. */
typedef struct uf__rowresize uf__rowresize;
uf_status uf__rowresize_new(int sw, int sh, int W, int H, uf_interp interp, uf__rowresize **out);
uint8_t *uf__rowresize_row(uf__rowresize *r);
void uf__rowresize_push(uf__rowresize *r, int y);
uf_status uf__rowresize_finish(uf__rowresize *r, uf_image **out);
void uf__rowresize_free(uf__rowresize *r);
size_t uf__rowresize_bytes(int sw, int sh, int W, int H);

/* ---- sha256 (sha256.c, OpenSSL's libcrypto; no other file calls OpenSSL) ------------- */

/* hex receives 64 lowercase hex digits and a NUL ("" if OpenSSL fails to allocate). */
void uf__sha256_hex(const void *buf, size_t len, char hex[65]);
/* md receives the 32-byte digest of buf[len]; false only if OpenSSL fails to allocate. */
bool uf__sha256_raw(const void *buf, size_t len, uint8_t md[32]);

/* Incremental SHA-256: _new (NULL on allocation failure), _update any number of times,
 * _final once, _free (NULL is a no-op). _update and _final return false on failure. */
typedef struct uf__sha256_ctx uf__sha256_ctx;
uf__sha256_ctx *uf__sha256_new(void);
bool uf__sha256_update(uf__sha256_ctx *c, const void *buf, size_t len);
bool uf__sha256_final(uf__sha256_ctx *c, uint8_t md[32]);
void uf__sha256_free(uf__sha256_ctx *c);

/* ---- images (preprocess.c) ---------------------------------------------------------- */

/* The uint8 stage of uf_preprocess_image: resize, centre crop (with torchvision's zero
 * padding) and the pad_to canvas, as a new [S][S][3] image; p may be NULL for defaults.
 * uf_preprocess_image's output is ((float)v / 255 - mean) / std of this. */
uf_status uf__preprocess_u8(const uf_image *img, const uf_preprocess *p, uf_image **out);

/* A PNG of img (8-bit RGB) in memory (src/io/pngfast.c): *out malloc'd, *len bytes.
 * Errors: UF_ERR_LIMIT, UF_ERR_NOMEM. Thread-safe. */
uf_status uf__png_encode(const uf_image *img, uint8_t **out, size_t *len);

/* img rotated by `degrees` about its centre into a new image of the same size (*out, free
 * with uf_image_free), as AnomalyDINO's rotate_image (cv2.warpAffine, bilinear,
 * BORDER_REFLECT_101; see rotate.c). Errors: UF_ERR_ARG, UF_ERR_NOMEM. Thread-safe. */
uf_status uf__image_rotate(const uf_image *img, double degrees, uf_image **out);

/* Overlay drawing (src/io/imgout.c, src/io/annotate.c). uf__jet_colors: rgb[n][3] the
 * overlay's jet colours of t[n] in [0, 1]. The drawing calls clip at the image border. */
void uf__jet_colors(const double *t, int n, uint8_t *rgb);
int uf__text_width(const char *s, int scale);
/* text at (x, y), glyphs 5x7 scaled by scale, on a filled box of colour bg (NULL: none) */
void uf__draw_text(uf_image *im, int x, int y, int scale, const char *s, const uint8_t fg[3],
                   const uint8_t bg[3]);
/* pixels of map ([h][w], the image's size) above level that touch one not above it */
void uf__draw_outline(uf_image *im, const float *map, float level, int thick, const uint8_t rgb[3]);
/* a vertical jet bar at the right edge, lo at the bottom and hi at the top with their
 * values, a white tick at mark (when inside) */
void uf__draw_colorbar(uf_image *im, float lo, float hi, float mark, int scale);

#endif /* UF_INTERNAL_H */
