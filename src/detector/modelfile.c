/*
 * modelfile.c - saving and loading fitted models (uf_model_save, uf_model_load).
 *
 * A model file holds everything scoring needs: the settings, the memory bank and the
 * identity of the backbone (optionally the backbone itself), so a model fitted once can be
 * deployed as one file. The format is a small binary frame around a JSON header, so the
 * settings stay readable with `head -c 4096 model.ufm` while the bank is raw float32.
 *
 * Format version 5 (all integers little-endian; version 4 is the same but its tiled
 * banks hold one row per image location, the tiles' features averaged in overlaps, where
 * version 5's hold every tile's own patches: the layout is the same, only what a tiled
 * model's rows mean changed, so version 4 files load and are scored the new way (refit
 * them for a bank of the new kind), while builds from before refuse a version 5 file
 * instead of scoring it the old way; version 3 is the same without params.tile,
 * params.tile_overlap and preprocess.fit, version 2 also without the AnomalyDINO params
 * keys, version 1 also without "calibration"; all still load, the missing keys as their
 * defaults). A model is written with the lowest version that holds it: 5 when tiled, 4
 * with fit set and no tiling, else 3, so builds from before read what they can score:
 *
 *   offset  size  contents
 *   0       8     magic "UFMODEL\0"
 *   8       4     u32 format version (5, 4 or 3: see above)
 *   12      4     u32 reserved, 0
 *   16      8     u64 H: length of the JSON header in bytes
 *   24      H     the JSON header (UTF-8, no NUL)
 *   ...           zero padding up to the next multiple of 64: the "data area" starts there
 *   data area     sections, each at a 64-byte-aligned offset relative to the data area
 *                 start, zero padding between them, in this order:
 *                   bank      float32 LE [n_bank][dim] at offset 0
 *                   backbone  the checkpoint file's bytes verbatim (embedded file
 *                             backbones only) at offset align64(bank length)
 *   trailer 40    32-byte raw SHA-256 of every byte before the trailer,
 *                 then the end marker "UFMEND\0\0"
 *
 * The loader accepts exactly this layout: the recorded offsets and lengths must equal the
 * ones computed from n_bank, dim and the checkpoint size, and the file must end right
 * after the trailer.
 *
 * JSON header (every key required unless noted; u64 values that may exceed 2^53 are
 * decimal strings):
 *   library_version  string, uf_version() of the writer
 *   created          string, ISO 8601 UTC time of saving, e.g. "2025-01-31T12:00:00Z"
 *   params           every field of uf_detector_params: layer_first, layer_last, bpm,
 *                    bpm_kernel, bpm_lambda, soft_mask, rollout, coreset,
 *                    sampler ("greedy" | "random"), seed (string), knn, topk, sigma,
 *                    (version 3; optional, absent = the defaults) cosine, pca_mask,
 *                    pca_threshold, rotations,
 *                    (version 4; optional, 0 when absent) tile, tile_overlap,
 *                    preprocess {resize, crop, pad_to,
 *                                interp ("bilinear" | "bicubic" | "lanczos" | "nearest"),
 *                                mean [3], std [3],
 *                                fit ("auto" | "short" | "long"; optional, "auto")}
 *   threshold        number, or null when no threshold is set (NaN)
 *   calibration      (version 2; optional) null, or {n_images, fpr_target (number or null),
 *                    fpr (number or null), image_min, image_mean, image_std, image_p50,
 *                    image_p95, image_max, patch_min, patch_p50, patch_p99, patch_max}:
 *                    uf_calibration
 *   n_bank, n_bank_full, n_train, dim     counts (integers)
 *   bank             {offset, length}: the bank section
 *   backbone         {format ("pth" | "safetensors" | "random"), path, sha256 (64 hex
 *                     digits, "" for random), file_size, heads, ln_eps, dim, depth, patch,
 *                     mlp_dim, grid_h, grid_w, n_classes, embedded (bool),
 *                     precision ("fp32" | "bf16"; optional, absent = "fp32": the
 *                     uf_precision scoring runs at; readers older than the key ignore
 *                     it and score in FP32, close to BF16's scores, so the key does
 *                     not change the format version),
 *                     data {offset, length}   only when the checkpoint bytes are embedded,
 *                     random {dim, depth, heads, patch, mlp_dim, grid, n_classes,
 *                             seed (string)}  only for format "random"}
 * Numbers are written by cJSON with up to 17 significant digits, so every double (and
 * every float stored as a double) reads back bit-exactly.
 *
 * A random backbone is always stored as its configuration (a few numbers rebuild the
 * same weights on any machine); "embedded" then just records what the caller asked.
 *
 * Loading validates before it trusts: magic, checksum (when the end marker is present, so
 * a damaged version field reads as damage), version, header length against the file, the
 * JSON, every field's type and range, and the section layout against the file size, all
 * before anything sized by the file is allocated. Corrupt or hostile bytes give
 * UF_ERR_FORMAT with a message naming the field; the parser never reads outside the
 * buffer. A random backbone, the one thing whose size the file size does not bound, is
 * limited to MF_MAX_RANDOM_PARAMS parameters (UF_ERR_LIMIT on load, UF_ERR_ARG on save).
 *
 * Which backbone a loaded model runs, in order: the caller's checkpoint
 * (uf_model_load_params.backbone_path), the embedded bytes, the random configuration, the
 * recorded path. A checkpoint whose sha256 differs from the recorded one is refused unless
 * allow_other_backbone. The loaded model keeps the fit-time identity (sha256); its
 * recorded path becomes the caller's path when that file has the recorded bytes (the
 * checkpoint moved), so saving it again records where the checkpoint now is. A model loaded
 * from a file with an embedded checkpoint remembers where those bytes are (file, offset,
 * length) and re-reads them, checking their sha256, when it is saved again with them;
 * embedding a checkpoint other than the fit-time one is refused (UF_ERR_ARG).
 *
 * Saving goes through atomic.c (unnamed temporary file, fsync, rename over path), so path
 * is either the complete new model or untouched; it refuses (UF_ERR_ARG) a model that
 * uf_model_load would refuse.
 */
#include "detector/detector.h"
#include "detector/kernels.h"

#include <cjson/cJSON.h>

#include <errno.h>
#include <float.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MF_VERSION 5u                        /* 5: tiled banks of tile patches; 4: tile,
                                                tile_overlap, fit; 3: AnomalyDINO
                                                params; 2: "calibration"; older still load */
#define MF_PREAMBLE 24                       /* magic + version + reserved + header length */
#define MF_TRAILER 40                        /* sha256 + end marker                        */
#define MF_ALIGN 64                          /* section alignment                          */
#define MF_MAX_FILE ((size_t)64 << 30)       /* refuse model files above 64 GiB            */
#define MF_MAX_HEADER ((size_t)1 << 20)      /* the JSON header is a few KB; 1 MiB cap     */
#define MF_MAX_ROWS ((size_t)1 << 31)        /* bank rows, as the fitter's limit           */
#define MF_MAX_DIM 65536                     /* feature dimension                          */
#define MF_MAX_COUNT 9007199254740992.0      /* 2^53: largest exact integer in a double    */
#define MF_MAX_PATH 4096                     /* recorded checkpoint path length            */
#define MF_MAX_RANDOM_PARAMS ((uint64_t)1 << 25) /* random backbone weights (ViT-S: 22M):
                                                  a few header bytes must not make the
                                                  loader build gigabytes of weights     */

static const uint8_t mf_magic[8] = {'U', 'F', 'M', 'O', 'D', 'E', 'L', 0};
static const uint8_t mf_end[8] = {'U', 'F', 'M', 'E', 'N', 'D', 0, 0};

static const char *const interp_names[] = {"bilinear", "bicubic", "lanczos", "nearest"};
static const char *const fit_names[] = {"auto", "short", "long"};

/* Parameters of the random ViT that c describes (as uf_backbone_random builds it); no
 * overflow for any configuration the header parser accepts (dim <= 2^16, depth <= 64,
 * mlp_dim <= 2^16, patch <= 64, grid <= 256, n_classes <= 100000). */
static uint64_t random_params(const uf_vit_config *c)
{
    const uint64_t D = (uint64_t)c->dim, M = (uint64_t)c->mlp_dim, P = (uint64_t)c->patch,
                   G = (uint64_t)c->grid;
    return D * (2 + G * G) + D * 3 * P * P + D + 2 * D +
           (uint64_t)c->depth * (4 * D * D + 2 * D * M + 9 * D + M) +
           (uint64_t)c->n_classes * (D + 1);
}

/* Round n up to a multiple of MF_ALIGN; false on overflow. */
static bool align64(size_t n, size_t *r)
{
    if (!uf__add_ok(n, MF_ALIGN - 1, r)) return false;
    *r &= ~(size_t)(MF_ALIGN - 1);
    return true;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* The float fields of uf_calibration, as the header names them. */
static const struct {
    const char *key;
    size_t off;
} calib_floats[] = {
    {"image_min", offsetof(uf_calibration, image_min)},
    {"image_mean", offsetof(uf_calibration, image_mean)},
    {"image_std", offsetof(uf_calibration, image_std)},
    {"image_p50", offsetof(uf_calibration, image_p50)},
    {"image_p95", offsetof(uf_calibration, image_p95)},
    {"image_max", offsetof(uf_calibration, image_max)},
    {"patch_min", offsetof(uf_calibration, patch_min)},
    {"patch_p50", offsetof(uf_calibration, patch_p50)},
    {"patch_p99", offsetof(uf_calibration, patch_p99)},
    {"patch_max", offsetof(uf_calibration, patch_max)},
};
#define N_CALIB_FLOATS (sizeof calib_floats / sizeof calib_floats[0])

/* ======================================================================================= */
/* Saving                                                                                  */
/* ======================================================================================= */

/* Writer state: the temporary file, the running checksum and the first error. */
typedef struct mf_writer {
    int fd;
    uf__sha256_ctx *md; /* SHA-256 of every byte written so far */
    int err;        /* errno of the first failure, 0 if none */
} mf_writer;

/* Write n bytes (hashing them); keeps going after EINTR and short writes. */
static void w_bytes(mf_writer *w, const void *buf, size_t n)
{
    if (w->err || n == 0) return;
    if (!uf__sha256_update(w->md, buf, n)) {
        w->err = ENOMEM;
        return;
    }
    if (!uf__write_all(w->fd, buf, n)) w->err = errno;
}

/* n zero bytes (padding, n < MF_ALIGN). */
static void w_zeros(mf_writer *w, size_t n)
{
    static const uint8_t z[MF_ALIGN];
    w_bytes(w, z, n);
}

/* The bank as float32 little-endian, through a bounded conversion buffer. */
static void w_floats_le(mf_writer *w, const float *x, size_t n)
{
    uint8_t buf[1 << 16]; /* [16384][4] */
    const size_t per = sizeof buf / 4;
    for (size_t i = 0; i < n && !w->err; i += per) {
        size_t c = n - i < per ? n - i : per;
        for (size_t j = 0; j < c; j++) {
            uint32_t u;
            memcpy(&u, &x[i + j], 4);
            put_le32(buf + 4 * j, u);
        }
        w_bytes(w, buf, 4 * c);
    }
}

/* cJSON builders that record allocation failures in *ok instead of crashing later. */
static void j_num(cJSON *o, const char *k, double v, bool *ok)
{
    if (!cJSON_AddNumberToObject(o, k, v)) *ok = false;
}
static void j_str(cJSON *o, const char *k, const char *v, bool *ok)
{
    if (!cJSON_AddStringToObject(o, k, v)) *ok = false;
}
static void j_u64(cJSON *o, const char *k, uint64_t v, bool *ok)
{
    char s[24];
    snprintf(s, sizeof s, "%" PRIu64, v);
    j_str(o, k, s, ok);
}
static cJSON *j_obj(cJSON *o, const char *k, bool *ok)
{
    cJSON *c = cJSON_AddObjectToObject(o, k);
    if (!c) *ok = false;
    return c;
}
static void j_arr3(cJSON *o, const char *k, const float v[3], bool *ok)
{
    cJSON *a = cJSON_AddArrayToObject(o, k);
    if (!a) {
        *ok = false;
        return;
    }
    for (int i = 0; i < 3; i++) {
        cJSON *n = cJSON_CreateNumber((double)v[i]);
        if (!n || !cJSON_AddItemToArray(a, n)) {
            cJSON_Delete(n);
            *ok = false;
        }
    }
}
static void j_section(cJSON *o, const char *k, size_t off, size_t len, bool *ok)
{
    cJSON *s = j_obj(o, k, ok);
    if (!s) return;
    j_num(s, "offset", (double)off, ok);
    j_num(s, "length", (double)len, ok);
}

/* What save writes about the backbone, decided before the header is built. */
typedef struct mf_bbrec {
    const char *format;   /* "pth", "safetensors" or "random"                      */
    const char *path;     /* recorded checkpoint path ("" if none)                 */
    const char *sha256;   /* recorded sha256 ("" for random)                       */
    size_t file_size;     /* checkpoint bytes (0 for random)                       */
    const uint8_t *bytes; /* checkpoint bytes to embed, or NULL                    */
    size_t n_bytes;
} mf_bbrec;

/* The JSON header text (cJSON_free it), or NULL on allocation failure. */
static char *build_header(const uf_model *m, const mf_bbrec *r, int embed, size_t bank_len,
                          size_t emb_off)
{
    const uf_detector_params *p = &m->params;
    const uf_backbone *bb = m->bb;
    bool ok = true;
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;

    char created[32] = "";
    time_t now = time(NULL);
    struct tm tmv;
    if (gmtime_r(&now, &tmv)) strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tmv);
    j_str(root, "library_version", uf_version(), &ok);
    j_str(root, "created", created, &ok);

    cJSON *P = j_obj(root, "params", &ok);
    if (P) {
        j_num(P, "layer_first", p->layer_first, &ok);
        j_num(P, "layer_last", p->layer_last, &ok);
        j_num(P, "bpm", p->bpm ? 1 : 0, &ok); /* flags are written as 0 or 1 */
        j_num(P, "bpm_kernel", p->bpm_kernel, &ok);
        j_num(P, "bpm_lambda", (double)p->bpm_lambda, &ok);
        j_num(P, "soft_mask", p->soft_mask ? 1 : 0, &ok);
        j_num(P, "rollout", p->rollout ? 1 : 0, &ok);
        j_num(P, "coreset", p->coreset, &ok);
        j_str(P, "sampler", p->sampler == UF_SAMPLER_RANDOM ? "random" : "greedy", &ok);
        j_u64(P, "seed", p->seed, &ok);
        j_num(P, "knn", p->knn, &ok);
        j_num(P, "topk", p->topk, &ok);
        j_num(P, "sigma", p->sigma, &ok);
        j_num(P, "cosine", p->cosine ? 1 : 0, &ok);
        j_num(P, "pca_mask", p->pca_mask ? 1 : 0, &ok);
        j_num(P, "pca_threshold", (double)p->pca_threshold, &ok);
        j_num(P, "rotations", p->rotations, &ok);
        j_num(P, "tile", p->tile, &ok);
        j_num(P, "tile_overlap", p->tile_overlap, &ok);
        cJSON *Q = j_obj(P, "preprocess", &ok);
        if (Q) {
            j_num(Q, "resize", p->pre.resize, &ok);
            j_num(Q, "crop", p->pre.crop, &ok);
            j_num(Q, "pad_to", p->pre.pad_to, &ok);
            j_str(Q, "interp", interp_names[p->pre.interp], &ok); /* checked by the caller */
            j_arr3(Q, "mean", p->pre.mean, &ok);
            j_arr3(Q, "std", p->pre.std, &ok);
            j_str(Q, "fit", fit_names[p->pre.fit], &ok); /* checked by the caller */
        }
    }
    if (isfinite(m->threshold)) j_num(root, "threshold", (double)m->threshold, &ok);
    else if (!cJSON_AddNullToObject(root, "threshold")) ok = false;
    if (m->calib.n_images == 0) {
        if (!cJSON_AddNullToObject(root, "calibration")) ok = false;
    } else {
        cJSON *C = j_obj(root, "calibration", &ok);
        if (C) {
            const uf_calibration *c = &m->calib;
            j_num(C, "n_images", (double)c->n_images, &ok);
            const double rates[2] = {c->fpr_target, c->fpr};
            for (int i = 0; i < 2; i++) {
                const char *k = i ? "fpr" : "fpr_target";
                if (isfinite(rates[i])) j_num(C, k, rates[i], &ok);
                else if (!cJSON_AddNullToObject(C, k)) ok = false;
            }
            for (size_t i = 0; i < N_CALIB_FLOATS; i++)
                j_num(C, calib_floats[i].key,
                      (double)*(const float *)((const char *)c + calib_floats[i].off), &ok);
        }
    }
    j_num(root, "n_bank", (double)m->n_bank, &ok);
    j_num(root, "n_bank_full", (double)m->n_bank_full, &ok);
    j_num(root, "n_train", (double)m->n_train, &ok);
    j_num(root, "dim", m->dim, &ok);
    j_section(root, "bank", 0, bank_len, &ok);

    cJSON *B = j_obj(root, "backbone", &ok);
    if (B) {
        const uf__vit_weights *w = &bb->w;
        j_str(B, "format", r->format, &ok);
        j_str(B, "path", r->path, &ok);
        j_str(B, "sha256", r->sha256, &ok);
        j_num(B, "file_size", (double)r->file_size, &ok);
        j_num(B, "heads", w->heads, &ok);
        j_num(B, "ln_eps", (double)w->ln_eps, &ok);
        j_num(B, "dim", w->dim, &ok);
        j_num(B, "depth", w->depth, &ok);
        j_num(B, "patch", w->patch, &ok);
        j_num(B, "mlp_dim", w->mlp_dim, &ok);
        j_num(B, "grid_h", w->grid_h, &ok);
        j_num(B, "grid_w", w->grid_w, &ok);
        j_num(B, "n_classes", w->n_classes, &ok);
        if (!cJSON_AddBoolToObject(B, "embedded", embed ? 1 : 0)) ok = false;
        j_str(B, "precision", uf_precision_name(bb->precision), &ok);
        if (r->bytes) j_section(B, "data", emb_off, r->n_bytes, &ok);
        if (!strcmp(r->format, "random")) {
            const uf_vit_config *c = &bb->random_cfg;
            cJSON *R = j_obj(B, "random", &ok);
            if (R) {
                j_num(R, "dim", c->dim, &ok);
                j_num(R, "depth", c->depth, &ok);
                j_num(R, "heads", c->heads, &ok);
                j_num(R, "patch", c->patch, &ok);
                j_num(R, "mlp_dim", c->mlp_dim, &ok);
                j_num(R, "grid", c->grid, &ok);
                j_num(R, "n_classes", c->n_classes, &ok);
                j_u64(R, "seed", c->seed, &ok);
            }
        }
    }
    char *text = ok ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    return text;
}

/* Decide what to record (and embed) for the backbone. *map_* receive a mapping of the
 * checkpoint file when its bytes come from disk (release with uf__unmap_file). */
static uf_status backbone_record(const uf_model *m, const char *path, int embed, mf_bbrec *r,
                                 const uint8_t **map_buf, size_t *map_len, bool *mapped)
{
    const uf_backbone *bb = m->bb;
    memset(r, 0, sizeof *r);
    *map_buf = NULL;
    *map_len = 0;
    *mapped = false;
    if (bb->format && !strcmp(bb->format, "random")) {
        r->format = "random";
        r->path = r->sha256 = "";
        return UF_OK; /* the configuration is always written: nothing else to embed */
    }
    r->format = bb->format && !strcmp(bb->format, "pth") ? "pth" : "safetensors";
    /* the identity the model was fitted with; a model fitted on a random backbone and
     * loaded with another checkpoint (allow_other_backbone) records that checkpoint */
    if (m->backbone_sha256[0]) {
        r->sha256 = m->backbone_sha256;
        r->path = m->backbone_path ? m->backbone_path : "";
    } else {
        r->sha256 = bb->sha256;
        r->path = bb->path ? bb->path : "";
    }
    const bool same = !strcmp(bb->sha256, r->sha256);
    r->file_size = same ? bb->file_size : 0;
    if (!embed) return UF_OK;

    if (!same)
        return uf__err(UF_ERR_ARG,
                       "%s: cannot embed the backbone: the model runs checkpoint %s "
                       "(sha256 %s), not the one it was fitted with (sha256 %s)",
                       path, bb->path ? bb->path : "(from memory)", bb->sha256, r->sha256);
    if (m->embedded_src) { /* a loaded model that embedded its checkpoint: re-read it */
        uf_status s = uf__map_file(m->embedded_src, MF_MAX_FILE, map_buf, map_len, mapped);
        if (s != UF_OK) return s;
        char hex[65] = "";
        bool fits = m->embedded_off <= *map_len && m->embedded_len <= *map_len - m->embedded_off;
        if (fits) uf__sha256_hex(*map_buf + m->embedded_off, m->embedded_len, hex);
        if (!fits || strcmp(hex, r->sha256) != 0) {
            uf__unmap_file(*map_buf, *map_len, *mapped);
            *map_buf = NULL;
            return uf__err(UF_ERR_IO, "%s: model file changed since it was loaded; cannot "
                                      "re-embed its checkpoint", m->embedded_src);
        }
        r->bytes = *map_buf + m->embedded_off;
        r->n_bytes = m->embedded_len;
        r->file_size = m->embedded_len;
        return UF_OK;
    }
    if (!bb->path)
        return uf__err(UF_ERR_ARG,
                       "%s: cannot embed the backbone: it was not loaded from a file", path);
    uf_status s = uf__map_file(bb->path, MF_MAX_FILE, map_buf, map_len, mapped);
    if (s != UF_OK) return s; /* names bb->path */
    char hex[65];
    uf__sha256_hex(*map_buf, *map_len, hex);
    if (strcmp(hex, bb->sha256) != 0) {
        uf__unmap_file(*map_buf, *map_len, *mapped);
        *map_buf = NULL;
        return uf__err(UF_ERR_IO, "%s: checkpoint changed since it was loaded", bb->path);
    }
    r->bytes = *map_buf;
    r->n_bytes = *map_len;
    r->file_size = *map_len;
    return UF_OK;
}

uf_status uf_model_save(const uf_model *m, const char *path, int embed_backbone)
{
    if (!m || !m->bb || !m->bank || !path || !*path)
        return uf__err(UF_ERR_ARG, "uf_model_save: NULL model or empty path");
    /* never write a file that uf_model_load would refuse */
    if ((unsigned)m->params.pre.interp > UF_INTERP_NEAREST)
        return uf__err(UF_ERR_ARG, "%s: unknown resampling filter %d", path,
                       (int)m->params.pre.interp);
    if ((unsigned)m->params.pre.fit > UF_FIT_LONG)
        return uf__err(UF_ERR_ARG, "%s: unknown fit %d", path, (int)m->params.pre.fit);
    if (uf_detector_params_check(&m->params, m->bb) != UF_OK)
        return uf__err_prefix(UF_ERR_ARG, path);
    if (m->n_bank < 1 || m->n_bank < (size_t)m->params.knn || m->n_bank > MF_MAX_ROWS ||
        m->n_bank_full < m->n_bank || m->dim < 1 || m->dim > MF_MAX_DIM ||
        m->dim != m->bb->w.dim)
        return uf__err(UF_ERR_ARG, "%s: inconsistent model (bank %zu of %zu rows, dim %d, "
                                   "knn %d)",
                       path, m->n_bank, m->n_bank_full, m->dim, m->params.knn);

    if (m->bb->format && !strcmp(m->bb->format, "random") &&
        random_params(&m->bb->random_cfg) > MF_MAX_RANDOM_PARAMS)
        return uf__err(UF_ERR_ARG, "%s: random backbone too large for a model file (above %"
                                   PRIu64 " parameters)",
                       path, MF_MAX_RANDOM_PARAMS);

    /* sizes of the sections */
    size_t bank_len, emb_off = 0;
    if (!uf__mul_ok(m->n_bank, (size_t)m->dim, &bank_len) ||
        !uf__mul_ok(bank_len, sizeof(float), &bank_len) || !align64(bank_len, &emb_off))
        return uf__err(UF_ERR_LIMIT, "%s: bank too large", path);

    mf_bbrec rec;
    const uint8_t *map_buf;
    size_t map_len;
    bool mapped;
    uf_status s = backbone_record(m, path, embed_backbone, &rec, &map_buf, &map_len, &mapped);
    if (s != UF_OK) return s;

    char *hdr = build_header(m, &rec, embed_backbone, bank_len, emb_off);
    if (!hdr) {
        uf__unmap_file(map_buf, map_len, mapped);
        return uf__err(UF_ERR_NOMEM, "%s: out of memory for the model header", path);
    }
    const size_t hlen = strlen(hdr);
    size_t data_start = 0;
    align64(MF_PREAMBLE + hlen, &data_start); /* hlen is a few KB: cannot overflow */

    /* an invisible file in path's folder, made visible by uf__afile_commit (atomic.c) */
    uf__sha256_ctx *md = uf__sha256_new();
    if (!md) {
        cJSON_free(hdr);
        uf__unmap_file(map_buf, map_len, mapped);
        return uf__err(UF_ERR_NOMEM, "%s: out of memory", path);
    }
    uf__afile af;
    s = uf__afile_open(&af, path);
    if (s != UF_OK) {
        uf__sha256_free(md);
        cJSON_free(hdr);
        uf__unmap_file(map_buf, map_len, mapped);
        return s;
    }
    mf_writer w = {af.fd, md, 0};

    /* preamble, header, padding, bank, padding, checkpoint bytes */
    uint8_t pre[MF_PREAMBLE];
    memcpy(pre, mf_magic, 8);
    /* version 4 or 5 only when their settings are used: older builds read the rest */
    const bool v4 = m->params.tile > 0 || m->params.pre.fit != UF_FIT_AUTO;
    put_le32(pre + 8, m->params.tile > 0 ? 5u : v4 ? 4u : 3u);
    put_le32(pre + 12, 0);
    put_le64(pre + 16, hlen);
    w_bytes(&w, pre, sizeof pre);
    w_bytes(&w, hdr, hlen);
    w_zeros(&w, data_start - MF_PREAMBLE - hlen);
    w_floats_le(&w, m->bank, m->n_bank * (size_t)m->dim);
    if (rec.bytes) {
        w_zeros(&w, emb_off - bank_len);
        w_bytes(&w, rec.bytes, rec.n_bytes);
    }
    cJSON_free(hdr);
    uf__unmap_file(map_buf, map_len, mapped);

    /* trailer: checksum of everything so far, then the end marker (not hashed) */
    uint8_t trailer[MF_TRAILER];
    if (!w.err && !uf__sha256_final(md, trailer)) w.err = ENOMEM;
    uf__sha256_free(md);
    memcpy(trailer + 32, mf_end, 8);
    /* the trailer is not hashed: written directly */
    if (!w.err && !uf__write_all(w.fd, trailer, sizeof trailer)) w.err = errno;
    if (w.err) {
        s = uf__err(w.err == ENOMEM ? UF_ERR_NOMEM : UF_ERR_IO, "%s: write failed: %s", path,
                    strerror(w.err));
        uf__afile_abort(&af);
        return s;
    }
    return uf__afile_commit(&af); /* durable, then visible under path */
}

/* ======================================================================================= */
/* Loading                                                                                 */
/* ======================================================================================= */

uf_model_load_params uf_model_load_default_params(void)
{
    uf_model_load_params p;
    memset(&p, 0, sizeof p);
    return p;
}

/* ---- typed access to JSON fields: false when missing, mistyped or out of range ------- */

/* A number that is an integer in [lo, hi]. */
static bool jget_int(const cJSON *o, const char *k, double lo, double hi, double *v)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(it)) return false;
    double x = it->valuedouble;
    if (!isfinite(x) || x != floor(x) || x < lo || x > hi) return false;
    *v = x;
    return true;
}

/* A finite number in [lo, hi]. */
static bool jget_num(const cJSON *o, const char *k, double lo, double hi, double *v)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble)) return false;
    if (it->valuedouble < lo || it->valuedouble > hi) return false;
    *v = it->valuedouble;
    return true;
}

/* A string (never NULL on success). */
static bool jget_str(const cJSON *o, const char *k, const char **v)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsString(it) || !it->valuestring) return false;
    *v = it->valuestring;
    return true;
}

/* A u64 written as a decimal string: digits only, no sign, no overflow. */
static bool jget_u64(const cJSON *o, const char *k, uint64_t *v)
{
    const char *s;
    if (!jget_str(o, k, &s) || !*s || strlen(s) > 20) return false;
    uint64_t x = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return false;
        unsigned d = (unsigned)(*s - '0');
        if (x > (UINT64_MAX - d) / 10) return false;
        x = x * 10 + d;
    }
    *v = x;
    return true;
}

/* An array of exactly three finite numbers that fit a float. */
static bool jget_arr3(const cJSON *o, const char *k, float v[3])
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != 3) return false;
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, a)
    {
        if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble) || fabs(it->valuedouble) > FLT_MAX)
            return false;
        v[i++] = (float)it->valuedouble;
    }
    return i == 3;
}

/* Index of s in names[n], or -1. */
static int lookup(const char *s, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(s, names[i])) return i;
    return -1;
}

/* Everything the header says, validated field by field. */
typedef struct mf_header {
    uf_detector_params params;
    float threshold;
    uf_calibration calib;           /* n_images == 0: none                              */
    size_t n_bank, n_bank_full, n_train;
    int dim;
    size_t bank_off, bank_len;      /* relative to the data area                        */
    const char *bb_format;          /* points into the cJSON tree                       */
    const char *bb_path;
    const char *bb_sha256;
    size_t bb_file_size;
    uf_backbone_params bb_params;   /* recorded heads and ln_eps                        */
    int bb_depth;
    int embedded;                   /* the "embedded" flag                              */
    uf_precision precision;         /* "precision" (FP32 when absent)                   */
    int has_data;                   /* checkpoint bytes present                         */
    size_t data_off, data_len;      /* relative to the data area                        */
    int is_random;
    uf_vit_config random_cfg;
} mf_header;

/* In the header parsers below: leave with UF_ERR_FORMAT naming the field unless cond. */
#define NEED(cond, field)                                                                 \
    do {                                                                                 \
        if (!(cond))                                                                     \
            return uf__err(UF_ERR_FORMAT, "%s: header field '%s' missing or invalid", path, \
                           field);                                                       \
    } while (0)

/* params.preprocess into pre. */
static uf_status parse_preprocess(const char *path, const cJSON *P, uf_preprocess *pre)
{
    double v;
    const char *s;
    int k;
    const cJSON *Q = cJSON_GetObjectItemCaseSensitive(P, "preprocess");
    NEED(cJSON_IsObject(Q), "params.preprocess");
    NEED(jget_int(Q, "resize", 0, INT_MAX, &v), "params.preprocess.resize");
    pre->resize = (int)v;
    NEED(jget_int(Q, "crop", 0, INT_MAX, &v), "params.preprocess.crop");
    pre->crop = (int)v;
    NEED(jget_int(Q, "pad_to", 0, INT_MAX, &v), "params.preprocess.pad_to");
    pre->pad_to = (int)v;
    NEED(jget_str(Q, "interp", &s) && (k = lookup(s, interp_names, 4)) >= 0,
         "params.preprocess.interp");
    pre->interp = (uf_interp)k;
    NEED(jget_arr3(Q, "mean", pre->mean), "params.preprocess.mean");
    NEED(jget_arr3(Q, "std", pre->std) && pre->std[0] != 0 && pre->std[1] != 0 &&
             pre->std[2] != 0,
         "params.preprocess.std");
    pre->fit = UF_FIT_AUTO; /* absent before format version 3 */
    if (cJSON_GetObjectItemCaseSensitive(Q, "fit")) {
        NEED(jget_str(Q, "fit", &s) && (k = lookup(s, fit_names, 3)) >= 0,
             "params.preprocess.fit");
        pre->fit = (uf_fit)k;
    }
    return UF_OK;
}

/* The detector settings ("params") into p, each field and then their combination. */
static uf_status parse_params(const char *path, const cJSON *root, uf_detector_params *p)
{
    double v;
    const char *s;
    const cJSON *P = cJSON_GetObjectItemCaseSensitive(root, "params");
    NEED(cJSON_IsObject(P), "params");
    *p = uf_detector_default_params();
    NEED(jget_int(P, "layer_first", 1, 64, &v), "params.layer_first");
    p->layer_first = (int)v;
    NEED(jget_int(P, "layer_last", 1, 64, &v), "params.layer_last");
    p->layer_last = (int)v;
    NEED(jget_int(P, "bpm", 0, 1, &v), "params.bpm");
    p->bpm = (int)v;
    NEED(jget_int(P, "bpm_kernel", 1, 63, &v), "params.bpm_kernel");
    p->bpm_kernel = (int)v;
    NEED(jget_num(P, "bpm_lambda", 0, 1, &v), "params.bpm_lambda");
    p->bpm_lambda = (float)v;
    NEED(jget_int(P, "soft_mask", 0, 1, &v), "params.soft_mask");
    p->soft_mask = (int)v;
    NEED(jget_int(P, "rollout", 0, 1, &v), "params.rollout");
    p->rollout = (int)v;
    NEED(jget_num(P, "coreset", 0, 1, &v) && v > 0, "params.coreset");
    p->coreset = v;
    static const char *const samplers[] = {"greedy", "random"};
    int k;
    NEED(jget_str(P, "sampler", &s) && (k = lookup(s, samplers, 2)) >= 0, "params.sampler");
    p->sampler = k == 1 ? UF_SAMPLER_RANDOM : UF_SAMPLER_GREEDY;
    NEED(jget_u64(P, "seed", &p->seed), "params.seed");
    NEED(jget_int(P, "knn", 1, UF__KNN_MAX_K, &v), "params.knn");
    p->knn = (int)v;
    NEED(jget_num(P, "topk", 0, 1, &v) && v > 0, "params.topk");
    p->topk = v;
    NEED(jget_num(P, "sigma", 0, 1000, &v), "params.sigma");
    p->sigma = v;
    /* version 3 keys; a file without them was fitted without these options */
    if (cJSON_GetObjectItemCaseSensitive(P, "cosine")) {
        NEED(jget_int(P, "cosine", 0, 1, &v), "params.cosine");
        p->cosine = (int)v;
    }
    if (cJSON_GetObjectItemCaseSensitive(P, "pca_mask")) {
        NEED(jget_int(P, "pca_mask", 0, 1, &v), "params.pca_mask");
        p->pca_mask = (int)v;
    }
    if (cJSON_GetObjectItemCaseSensitive(P, "pca_threshold")) {
        NEED(jget_num(P, "pca_threshold", -FLT_MAX, FLT_MAX, &v), "params.pca_threshold");
        p->pca_threshold = (float)v;
    }
    if (cJSON_GetObjectItemCaseSensitive(P, "rotations")) {
        NEED(jget_int(P, "rotations", 1, 360, &v), "params.rotations");
        p->rotations = (int)v;
    }
    if (cJSON_GetObjectItemCaseSensitive(P, "tile")) { /* format version 4 */
        NEED(jget_int(P, "tile", 0, UF__MAX_INPUT_SIDE, &v), "params.tile");
        p->tile = (int)v;
    }
    if (cJSON_GetObjectItemCaseSensitive(P, "tile_overlap")) {
        NEED(jget_int(P, "tile_overlap", 0, UF__MAX_INPUT_SIDE, &v), "params.tile_overlap");
        p->tile_overlap = (int)v;
    }
    uf_status st = parse_preprocess(path, P, &p->pre);
    if (st != UF_OK) return st;
    /* the combinations (layer order, crop or pad_to present) */
    if (uf_detector_params_check(p, NULL) != UF_OK) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s", uf_errmsg());
        return uf__err(UF_ERR_FORMAT, "%s: header params invalid: %s", path, msg);
    }
    return UF_OK;
}

/* The threshold, the counts and the bank section. */
static uf_status parse_counts(const char *path, const cJSON *root, mf_header *h)
{
    double v;
    /* threshold: a float, or null for none */
    const cJSON *T = cJSON_GetObjectItemCaseSensitive(root, "threshold");
    if (cJSON_IsNull(T)) h->threshold = NAN;
    else {
        NEED(jget_num(root, "threshold", -FLT_MAX, FLT_MAX, &v), "threshold");
        h->threshold = (float)v;
    }
    NEED(jget_int(root, "dim", 1, MF_MAX_DIM, &v), "dim");
    h->dim = (int)v;
    NEED(jget_int(root, "n_bank", 1, (double)MF_MAX_ROWS, &v), "n_bank");
    h->n_bank = (size_t)v;
    NEED(jget_int(root, "n_bank_full", (double)h->n_bank, MF_MAX_COUNT, &v), "n_bank_full");
    h->n_bank_full = (size_t)v;
    NEED(jget_int(root, "n_train", 0, MF_MAX_COUNT, &v), "n_train");
    h->n_train = (size_t)v;
    if (h->n_bank < (size_t)h->params.knn)
        return uf__err(UF_ERR_FORMAT, "%s: the bank has %zu rows, fewer than knn = %d", path,
                       h->n_bank, h->params.knn);
    const cJSON *S = cJSON_GetObjectItemCaseSensitive(root, "bank");
    NEED(cJSON_IsObject(S), "bank");
    NEED(jget_int(S, "offset", 0, MF_MAX_COUNT, &v), "bank.offset");
    h->bank_off = (size_t)v;
    NEED(jget_int(S, "length", 0, MF_MAX_COUNT, &v), "bank.length");
    h->bank_len = (size_t)v;
    return UF_OK;
}

/* "calibration": absent (version 1 files) or null for none, else every field. */
static uf_status parse_calibration(const char *path, const cJSON *root, uf_calibration *c)
{
    double v;
    memset(c, 0, sizeof *c);
    const cJSON *C = cJSON_GetObjectItemCaseSensitive(root, "calibration");
    if (!C || cJSON_IsNull(C)) return UF_OK;
    NEED(cJSON_IsObject(C), "calibration");
    NEED(jget_int(C, "n_images", 1, MF_MAX_COUNT, &v), "calibration.n_images");
    c->n_images = (size_t)v;
    double *rates[2] = {&c->fpr_target, &c->fpr};
    for (int i = 0; i < 2; i++) {
        const char *k = i ? "fpr" : "fpr_target";
        if (cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(C, k))) *rates[i] = NAN;
        else NEED(jget_num(C, k, 0, 1, rates[i]), i ? "calibration.fpr" : "calibration.fpr_target");
    }
    for (size_t i = 0; i < N_CALIB_FLOATS; i++) {
        NEED(jget_num(C, calib_floats[i].key, -FLT_MAX, FLT_MAX, &v), calib_floats[i].key);
        *(float *)((char *)c + calib_floats[i].off) = (float)v;
    }
    return UF_OK;
}

/* True when s is 64 lowercase hex digits. */
static bool is_sha256_hex(const char *s)
{
    size_t n = strlen(s);
    bool hex = n == 64;
    for (size_t i = 0; i < n && hex; i++)
        hex = (s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f');
    return hex;
}

/* backbone.data (embedded checkpoints only) and backbone.random (random backbones only). */
static uf_status parse_backbone_sections(const char *path, const cJSON *B, mf_header *h)
{
    double v;
    const cJSON *D = cJSON_GetObjectItemCaseSensitive(B, "data");
    if (h->is_random || !h->embedded) {
        NEED(D == NULL, "backbone.data"); /* only embedded checkpoints have bytes */
    } else {
        NEED(cJSON_IsObject(D), "backbone.data");
        NEED(jget_int(D, "offset", 0, MF_MAX_COUNT, &v), "backbone.data.offset");
        h->data_off = (size_t)v;
        NEED(jget_int(D, "length", 1, (double)MF_MAX_FILE, &v) &&
                 (size_t)v == h->bb_file_size,
             "backbone.data.length");
        h->data_len = (size_t)v;
        h->has_data = 1;
    }

    const cJSON *R = cJSON_GetObjectItemCaseSensitive(B, "random");
    if (!h->is_random) {
        NEED(R == NULL, "backbone.random");
        return UF_OK;
    }
    uf_vit_config *c = &h->random_cfg;
    NEED(cJSON_IsObject(R), "backbone.random");
    NEED(jget_int(R, "dim", h->dim, h->dim, &v), "backbone.random.dim");
    c->dim = (int)v;
    NEED(jget_int(R, "depth", h->bb_depth, h->bb_depth, &v), "backbone.random.depth");
    c->depth = (int)v;
    NEED(jget_int(R, "heads", h->bb_params.heads, h->bb_params.heads, &v),
         "backbone.random.heads");
    c->heads = (int)v;
    NEED(jget_int(R, "patch", 1, 64, &v), "backbone.random.patch");
    c->patch = (int)v;
    NEED(jget_int(R, "mlp_dim", 1, 65536, &v), "backbone.random.mlp_dim");
    c->mlp_dim = (int)v;
    NEED(jget_int(R, "grid", 1, 256, &v), "backbone.random.grid");
    c->grid = (int)v;
    NEED(jget_int(R, "n_classes", 0, 100000, &v), "backbone.random.n_classes");
    c->n_classes = (int)v;
    NEED(jget_u64(R, "seed", &c->seed), "backbone.random.seed");
    return UF_OK;
}

/* The backbone's record: identity, architecture, how it is stored. */
static uf_status parse_backbone(const char *path, const cJSON *root, mf_header *h)
{
    double v;
    const cJSON *B = cJSON_GetObjectItemCaseSensitive(root, "backbone");
    NEED(cJSON_IsObject(B), "backbone");
    static const char *const formats[] = {"pth", "safetensors", "random"};
    NEED(jget_str(B, "format", &h->bb_format) && lookup(h->bb_format, formats, 3) >= 0,
         "backbone.format");
    h->is_random = !strcmp(h->bb_format, "random");
    NEED(jget_str(B, "path", &h->bb_path) && strlen(h->bb_path) < MF_MAX_PATH,
         "backbone.path");
    NEED(jget_str(B, "sha256", &h->bb_sha256) &&
             (h->is_random ? !h->bb_sha256[0] : is_sha256_hex(h->bb_sha256)),
         "backbone.sha256");
    NEED(jget_int(B, "file_size", 0, (double)MF_MAX_FILE, &v), "backbone.file_size");
    h->bb_file_size = (size_t)v;
    NEED(jget_int(B, "heads", 1, MF_MAX_DIM, &v), "backbone.heads");
    h->bb_params.heads = (int)v;
    NEED(jget_num(B, "ln_eps", 0, 1, &v) && v > 0 && (float)v > 0, "backbone.ln_eps");
    h->bb_params.ln_eps = (float)v;
    NEED(jget_int(B, "dim", h->dim, h->dim, &v), "backbone.dim");
    NEED(jget_int(B, "depth", 1, 64, &v), "backbone.depth");
    h->bb_depth = (int)v;
    if (h->params.layer_last > h->bb_depth)
        return uf__err(UF_ERR_FORMAT,
                       "%s: header params.layer_last %d is beyond the backbone's %d blocks "
                       "(backbone.depth)",
                       path, h->params.layer_last, h->bb_depth);
    NEED(jget_int(B, "patch", 1, 1024, &v), "backbone.patch");
    NEED(jget_int(B, "mlp_dim", 1, 1 << 20, &v), "backbone.mlp_dim");
    NEED(jget_int(B, "grid_h", 1, 1 << 16, &v), "backbone.grid_h");
    NEED(jget_int(B, "grid_w", 1, 1 << 16, &v), "backbone.grid_w");
    NEED(jget_int(B, "n_classes", 0, 1 << 24, &v), "backbone.n_classes");
    const cJSON *E = cJSON_GetObjectItemCaseSensitive(B, "embedded");
    NEED(cJSON_IsBool(E), "backbone.embedded");
    h->embedded = cJSON_IsTrue(E) ? 1 : 0;
    const char *prec = "fp32";
    NEED(!cJSON_HasObjectItem(B, "precision") ||
             (jget_str(B, "precision", &prec) &&
              (!strcmp(prec, "fp32") || !strcmp(prec, "bf16"))),
         "backbone.precision");
    h->precision = strcmp(prec, "bf16") ? UF_PRECISION_FP32 : UF_PRECISION_BF16;
    return parse_backbone_sections(path, B, h);
}

/* Parse the validated-length header text; on failure an error naming the field. */
static uf_status parse_header(const char *path, const cJSON *root, mf_header *h)
{
    const char *s;
    memset(h, 0, sizeof *h);
    NEED(cJSON_IsObject(root), "(root object)");
    NEED(jget_str(root, "library_version", &s), "library_version");
    NEED(jget_str(root, "created", &s), "created");
    uf_status st = parse_params(path, root, &h->params);
    if (st == UF_OK) st = parse_counts(path, root, h);
    if (st == UF_OK) st = parse_calibration(path, root, &h->calib);
    if (st == UF_OK) st = parse_backbone(path, root, h);
    return st;
}
#undef NEED

/* Load the backbone the header describes (or the caller's override). *other is set when
 * the backbone is not the recorded one (its sha256 differs). */
static uf_status load_backbone(const char *path, const mf_header *h, const uint8_t *data,
                               const uf_model_load_params *lp, uf_backbone **out, bool *other)
{
    uf_backbone *bb = NULL;
    uf_status s;
    *out = NULL;
    *other = false;
    if (lp->backbone_path) {
        s = uf_backbone_load(lp->backbone_path, &h->bb_params, &bb);
        if (s != UF_OK) return s; /* the message names the checkpoint */
        if (strcmp(bb->sha256, h->bb_sha256) != 0) {
            if (!lp->allow_other_backbone) {
                s = uf__err(UF_ERR_ARG,
                            "%s: checkpoint %s (sha256 %s) is not the one the model was "
                            "fitted with (%s%ssha256 %s); allow another backbone to use it "
                            "anyway",
                            path, lp->backbone_path, bb->sha256,
                            h->is_random ? "a random backbone" : h->bb_path,
                            h->is_random ? "" : ", ", h->is_random ? "-" : h->bb_sha256);
                uf_backbone_free(bb);
                return s;
            }
            *other = true;
        }
    } else if (h->has_data) {
        char name[MF_MAX_PATH + 64];
        snprintf(name, sizeof name, "%s: embedded backbone", path);
        s = uf__backbone_load_mem(data, h->data_len, name, &h->bb_params, &bb);
        if (s != UF_OK) return s; /* the message starts with name */
        if (strcmp(bb->sha256, h->bb_sha256) != 0) {
            uf_backbone_free(bb);
            return uf__err(UF_ERR_FORMAT, "%s: embedded backbone does not match its recorded "
                                          "sha256", path);
        }
    } else if (h->is_random) {
        if (random_params(&h->random_cfg) > MF_MAX_RANDOM_PARAMS)
            return uf__err(UF_ERR_LIMIT,
                           "%s: random backbone of %" PRIu64 " parameters, above the limit %"
                           PRIu64 " for model files",
                           path, random_params(&h->random_cfg), MF_MAX_RANDOM_PARAMS);
        s = uf_backbone_random(&h->random_cfg, &bb);
        if (s != UF_OK)
            return s == UF_ERR_NOMEM ? s
                                     : uf__err(UF_ERR_FORMAT,
                                               "%s: header field 'backbone.random' invalid",
                                               path);
    } else {
        if (!h->bb_path[0])
            return uf__err(UF_ERR_IO, "%s: the model records no checkpoint path and does not "
                                      "embed its backbone; pass the checkpoint with --backbone",
                           path);
        s = uf_backbone_load(h->bb_path, &h->bb_params, &bb);
        if (s == UF_ERR_IO) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", uf_errmsg());
            return uf__err(UF_ERR_IO, "%s: cannot load the backbone it was fitted with (%s); "
                                      "pass the checkpoint with --backbone",
                           path, msg);
        }
        if (s != UF_OK) return s;
        if (strcmp(bb->sha256, h->bb_sha256) != 0) {
            if (!lp->allow_other_backbone) {
                s = uf__err(UF_ERR_ARG, "%s: checkpoint %s changed since the model was fitted "
                                        "(sha256 %s, recorded %s)",
                            path, h->bb_path, bb->sha256, h->bb_sha256);
                uf_backbone_free(bb);
                return s;
            }
            *other = true;
        }
    }
    *out = bb;
    return UF_OK;
}

/* The frame around the header: magic, version, checksum (when the end marker is there),
 * reserved field, header length. Sets *hlen and *has_end. */
static uf_status check_frame(const char *path, const uint8_t *buf, size_t len, size_t *hlen,
                             bool *has_end)
{
    if (len < 8)
        return len == 0 || memcmp(buf, mf_magic, len) != 0
                   ? uf__err(UF_ERR_FORMAT, "%s: %s", path,
                             len == 0 ? "empty file" : "not a uniformaly model file")
                   : uf__err(UF_ERR_FORMAT, "%s: truncated (%zu bytes)", path, len);
    if (memcmp(buf, mf_magic, 8) != 0)
        return uf__err(UF_ERR_FORMAT, "%s: not a uniformaly model file", path);
    if (len < MF_PREAMBLE + MF_TRAILER)
        return uf__err(UF_ERR_FORMAT, "%s: truncated (%zu bytes)", path, len);
    /* the checksum before any field is trusted, the version included, when the end marker
     * is there: damage anywhere (a flipped bit in the version too) reads as damage */
    *has_end = memcmp(buf + len - 8, mf_end, 8) == 0;
    if (*has_end) {
        uint8_t md[32];
        if (!uf__sha256_raw(buf, len - MF_TRAILER, md))
            return uf__err(UF_ERR_NOMEM, "%s: out of memory for the checksum", path);
        if (memcmp(md, buf + len - MF_TRAILER, 32) != 0)
            return uf__err(UF_ERR_FORMAT, "%s: checksum mismatch (file damaged)", path);
    }
    const uint32_t version = uf__le32(buf + 8);
    if (version > MF_VERSION)
        return uf__err(UF_ERR_UNSUPPORTED,
                       "%s: format version %u is newer than this build supports (%u)", path,
                       version, MF_VERSION);
    if (version == 0) return uf__err(UF_ERR_FORMAT, "%s: invalid format version 0", path);
    if (uf__le32(buf + 12) != 0)
        return uf__err(UF_ERR_FORMAT, "%s: reserved field is not zero", path);
    const uint64_t hlen64 = uf__le64(buf + 16);
    if (hlen64 > len - MF_PREAMBLE)
        return uf__err(UF_ERR_FORMAT,
                       "%s: truncated: header needs %" PRIu64 " bytes, file has %zu", path,
                       hlen64, len - MF_PREAMBLE);
    if (hlen64 < 2 || hlen64 > MF_MAX_HEADER)
        return uf__err(UF_ERR_FORMAT, "%s: header length %" PRIu64 " out of range", path,
                       hlen64);
    *hlen = (size_t)hlen64;
    return UF_OK;
}

/* Parse the hlen header bytes at text into *root (owned by the caller): one JSON value,
 * nothing but whitespace after it. */
static uf_status read_json_header(const char *path, const uint8_t *text, size_t hlen,
                                  cJSON **root)
{
    *root = NULL;
    char *htext = malloc(hlen + 1); /* [hlen + 1] NUL-terminated copy of the header */
    if (!htext) return uf__err(UF_ERR_NOMEM, "%s: out of memory", path);
    memcpy(htext, text, hlen);
    htext[hlen] = '\0';
    const char *end = NULL;
    uf_status s = UF_OK;
    cJSON *r = cJSON_ParseWithOpts(htext, &end, 0);
    if (!r) {
        size_t at = end && end >= htext && end <= htext + hlen ? (size_t)(end - htext) : 0;
        s = uf__err(UF_ERR_FORMAT, "%s: header is not valid JSON (near byte %zu)", path,
                    MF_PREAMBLE + at);
    } else { /* an embedded NUL stops the parser early */
        for (const char *q = end; q < htext + hlen && s == UF_OK; q++)
            if (*q != ' ' && *q != '\t' && *q != '\n' && *q != '\r')
                s = uf__err(UF_ERR_FORMAT, "%s: unexpected bytes after the JSON header", path);
    }
    free(htext);
    if (s != UF_OK) cJSON_Delete(r);
    else *root = r;
    return s;
}

/* Where the sections are, computed from the header and checked against the file. */
typedef struct mf_layout {
    size_t data_start; /* absolute offset of the data area             */
    size_t bank_len;   /* bytes of the bank                            */
    size_t emb_off;    /* embedded checkpoint, relative to data_start  */
} mf_layout;

/* Check the section layout the header records against the file (offsets, lengths,
 * trailer, zero padding) and fill *L. */
static uf_status check_layout(const char *path, const uint8_t *buf, size_t len, size_t hlen,
                              bool has_end, const mf_header *h, mf_layout *L)
{
    size_t bank_end, data_end, need, emb_end = 0;
    memset(L, 0, sizeof *L);
    align64(MF_PREAMBLE + hlen, &L->data_start); /* hlen <= 1 MiB */
    const size_t data_start = L->data_start;
    if (!uf__mul_ok(h->n_bank, (size_t)h->dim, &L->bank_len) ||
        !uf__mul_ok(L->bank_len, sizeof(float), &L->bank_len) || h->bank_off != 0 ||
        h->bank_len != L->bank_len)
        return uf__err(UF_ERR_FORMAT, "%s: header field 'bank' inconsistent with n_bank x dim",
                       path);
    if (!uf__add_ok(data_start, L->bank_len, &bank_end))
        return uf__err(UF_ERR_FORMAT, "%s: bank too large", path);
    data_end = bank_end;
    if (h->has_data) {
        if (!align64(L->bank_len, &L->emb_off) || h->data_off != L->emb_off ||
            !uf__add_ok(data_start, L->emb_off, &emb_end) ||
            !uf__add_ok(emb_end, h->data_len, &emb_end))
            return uf__err(UF_ERR_FORMAT, "%s: header field 'backbone.data' offset invalid",
                           path);
        data_end = emb_end;
    }
    if (!uf__add_ok(data_end, MF_TRAILER, &need)) need = SIZE_MAX;
    if (bank_end > len)
        return uf__err(UF_ERR_FORMAT,
                       "%s: truncated: bank needs %zu bytes at offset %zu, file has %zu", path,
                       L->bank_len, data_start, len);
    if (h->has_data && emb_end > len)
        return uf__err(UF_ERR_FORMAT,
                       "%s: truncated: embedded backbone needs %zu bytes at offset %zu, file "
                       "has %zu",
                       path, h->data_len, data_start + L->emb_off, len);
    if (need > len) return uf__err(UF_ERR_FORMAT, "%s: truncated: checksum trailer missing", path);
    if (!has_end) return uf__err(UF_ERR_FORMAT, "%s: end marker missing (file damaged)", path);
    if (need < len)
        return uf__err(UF_ERR_FORMAT, "%s: %zu unexpected bytes before the checksum trailer",
                       path, len - need);
    /* padding is zero (header to data area, bank to embedded checkpoint) */
    bool zero = true;
    for (size_t i = MF_PREAMBLE + hlen; i < data_start; i++) zero = zero && !buf[i];
    if (h->has_data)
        for (size_t i = bank_end; i < data_start + L->emb_off; i++) zero = zero && !buf[i];
    return zero ? UF_OK : uf__err(UF_ERR_FORMAT, "%s: nonzero padding", path);
}

/* Copy the bank ([n_bank][dim] float32 LE at src, validated against the file size) into a
 * new array *out (owned by the caller); every value must be finite. */
static uf_status read_bank(const char *path, const uint8_t *src, const mf_header *h,
                           size_t bank_len, float **out)
{
    float *bank = malloc(bank_len);
    *out = NULL;
    if (!bank)
        return uf__err(UF_ERR_NOMEM, "%s: cannot allocate %zu bytes for the bank", path,
                       bank_len);
    const size_t n = h->n_bank * (size_t)h->dim;
    for (size_t i = 0; i < n; i++) {
        uint32_t u = uf__le32(src + 4 * i);
        memcpy(&bank[i], &u, 4);
        if (!isfinite(bank[i])) {
            free(bank);
            return uf__err(UF_ERR_FORMAT, "%s: bank row %zu is not finite", path,
                           i / (size_t)h->dim);
        }
    }
    *out = bank;
    return UF_OK;
}

/* The loaded backbone must fit the model (dim, layers, input size); a mismatch is the
 * file's fault unless the caller chose the backbone. */
static uf_status check_backbone_fits(const char *path, const mf_header *h, const uf_backbone *bb,
                                     bool chosen)
{
    const uf_status mism = chosen ? UF_ERR_ARG : UF_ERR_FORMAT;
    if (bb->w.dim != h->dim)
        return uf__err(mism, "%s: the backbone has dim %d, the model's bank %d", path,
                       bb->w.dim, h->dim);
    if (uf_detector_params_check(&h->params, bb) != UF_OK) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s", uf_errmsg());
        return uf__err(mism, "%s: %s", path, msg);
    }
    return UF_OK;
}

/* Build the model from its parts; bb and bank are taken over (freed on failure too). The
 * model keeps the fit-time identity (sha256); a checkpoint given by the caller with the
 * same bytes becomes the recorded path (it is where the checkpoint lives now). */
static uf_status model_from_parts(const char *path, const mf_header *h,
                                  const uf_model_load_params *lp, bool other, uf_backbone *bb,
                                  float *bank, const mf_layout *L, uf_model **out)
{
    uf_model *m = NULL;
    uf_status s = uf__model_new(bb, &h->params, bank, h->n_bank, h->n_bank_full, h->n_train, &m);
    if (s != UF_OK) {
        uf_backbone_free(bb);
        return s;
    }
    m->bb_owned = bb;
    m->threshold = h->threshold;
    m->calib = h->calib;
    m->embedded = h->embedded;
    const char *rec_path = lp->backbone_path && !other ? lp->backbone_path : h->bb_path;
    char *pc = strdup(rec_path);
    if (!pc) {
        uf_model_free(m);
        return uf__err(UF_ERR_NOMEM, "out of memory");
    }
    free(m->backbone_path);
    m->backbone_path = pc;
    snprintf(m->backbone_sha256, sizeof m->backbone_sha256, "%s", h->bb_sha256);
    if (h->has_data) { /* where the checkpoint bytes are, so the model can be saved again
                        * (re-read then, not held: they are as large as the weights) */
        if (!(m->embedded_src = strdup(path))) {
            uf_model_free(m);
            return uf__err(UF_ERR_NOMEM, "out of memory");
        }
        m->embedded_off = L->data_start + L->emb_off;
        m->embedded_len = h->data_len;
    }
    *out = m;
    return UF_OK;
}

uf_status uf_model_load(const char *path, const uf_model_load_params *p, uf_model **out)
{
    if (!out) return uf__err(UF_ERR_ARG, "uf_model_load: NULL output");
    *out = NULL;
    if (!path) return uf__err(UF_ERR_ARG, "uf_model_load: NULL path");
    const uf_model_load_params lp = p ? *p : uf_model_load_default_params();

    const uint8_t *buf = NULL; /* [len] the whole file, mapped (or read if mmap fails) */
    size_t len = 0, hlen = 0;
    bool mapped = false, has_end = false, other = false;
    uf_status s = uf__map_file(path, MF_MAX_FILE, &buf, &len, &mapped);
    if (s != UF_OK) return s;
    cJSON *root = NULL;
    float *bank = NULL; /* [n_bank][dim] */
    uf_backbone *bb = NULL;
    mf_header h;
    mf_layout L;
    s = check_frame(path, buf, len, &hlen, &has_end);
    if (s == UF_OK) s = read_json_header(path, buf + MF_PREAMBLE, hlen, &root);
    if (s == UF_OK) s = parse_header(path, root, &h);
    if (s == UF_OK) s = check_layout(path, buf, len, hlen, has_end, &h, &L);
    if (s == UF_OK) s = read_bank(path, buf + L.data_start, &h, L.bank_len, &bank);
    if (s == UF_OK)
        s = load_backbone(path, &h, buf + L.data_start + L.emb_off, &lp, &bb, &other);
    if (s == UF_OK) s = check_backbone_fits(path, &h, bb, other || lp.backbone_path);
    if (s == UF_OK) s = uf_backbone_set_precision(bb, h.precision); /* as recorded */
    if (s == UF_OK) {
        s = model_from_parts(path, &h, &lp, other, bb, bank, &L, out);
        bb = NULL; /* taken over, on failure too */
        bank = NULL;
    }
    uf_backbone_free(bb);
    free(bank);
    cJSON_Delete(root); /* h's strings point into it: used up by now */
    uf__unmap_file(buf, len, mapped);
    return s;
}
