/*
 * safetensors.c - read and write .safetensors files.
 *
 * Format (huggingface/safetensors): an 8-byte little-endian header length N, N bytes of
 * JSON mapping each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets
 * relative to the data section that follows the header), plus an optional "__metadata__"
 * object of strings. Reading validates every field against the file size before anything
 * is allocated, so a corrupt or hostile file yields UF_ERR_FORMAT, never a crash or a huge
 * allocation. F32, F16, BF16 and F64 tensors are converted to float32; other dtypes
 * (integers, bools, fp8) are skipped. Files are read through mmap so multi-GB checkpoints
 * are not copied twice. Writing produces F32 tensors, atomically (temp file, fsync, rename).
 */
#include "core/internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Largest accepted JSON header (the reference implementation refuses > 100 MB). */
#define ST_MAX_HEADER ((uint64_t)100 << 20)
/* Largest integer a JSON number (a double in cJSON) holds exactly: 2^53. */
#define ST_MAX_INT 9007199254740992.0

/* Element types we know the size of; `conv` says whether we convert it to float32. */
typedef struct st_dtype {
    const char *name;
    size_t size; /* bytes per element */
    int conv;    /* 1: F32, 2: F16, 3: BF16, 4: F64, 0: skipped */
} st_dtype;

static const st_dtype st_dtypes[] = {
    {"F32", 4, 1},  {"F16", 2, 2},  {"BF16", 2, 3}, {"F64", 8, 4},     {"I8", 1, 0},
    {"U8", 1, 0},   {"I16", 2, 0},  {"U16", 2, 0},  {"I32", 4, 0},     {"U32", 4, 0},
    {"I64", 8, 0},  {"U64", 8, 0},  {"BOOL", 1, 0}, {"F8_E4M3", 1, 0}, {"F8_E5M2", 1, 0},
};

static const st_dtype *st_find_dtype(const char *s)
{
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (strcmp(st_dtypes[i].name, s) == 0) return &st_dtypes[i];
    return NULL;
}

/* A JSON number that is an exact non-negative integer <= 2^53, or false. cJSON stores
 * numbers as doubles, so larger values could not be represented exactly anyway; the
 * reference implementation's offsets are u64 but no real file comes near 2^53 bytes. */
static bool json_uint(const cJSON *it, uint64_t *v)
{
    if (!cJSON_IsNumber(it)) return false;
    double d = it->valuedouble;
    if (!(d >= 0.0 && d <= ST_MAX_INT) || d != (double)(uint64_t)d) return false;
    *v = (uint64_t)d;
    return true;
}

/* Convert n elements of a stored dtype at src (any alignment) to float32 dst[n]. */
static void st_convert(int conv, const uint8_t *src, size_t n, float *dst)
{
    switch (conv) {
    case 1:
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        memcpy(dst, src, n * 4); /* host order already matches */
#else
        for (size_t i = 0; i < n; i++) {
            uint32_t u = uf__le32(src + 4 * i);
            memcpy(&dst[i], &u, 4);
        }
#endif
        break;
    case 2:
        for (size_t i = 0; i < n; i++) dst[i] = uf__f16_to_f32(uf__le16(src + 2 * i));
        break;
    case 3:
        for (size_t i = 0; i < n; i++) dst[i] = uf__bf16_to_f32(uf__le16(src + 2 * i));
        break;
    case 4:
        for (size_t i = 0; i < n; i++) {
            uint64_t u = uf__le64(src + 8 * i);
            double d;
            memcpy(&d, &u, 8);
            dst[i] = (float)d; /* may round to +-Inf; the ViT loader rejects non-finite */
        }
        break;
    default:
        break;
    }
}

/* Validate one header entry and, if convert is set and it has a float dtype, append it
 * (converted) to out. `data` is the data section [dlen bytes]. `what` names the file in
 * messages. */
static uf_status st_entry(const cJSON *e, const uint8_t *data, size_t dlen, const char *what,
                          bool convert, uf__tensors *out)
{
    const char *name = e->string;
    if (!name || !*name) return uf__err(UF_ERR_FORMAT, "%s: tensor with an empty name", what);
    if (!cJSON_IsObject(e))
        return uf__err(UF_ERR_FORMAT, "%s: tensor '%s': entry is not a JSON object", what, name);
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(jd) || !cJSON_IsArray(js) || !cJSON_IsArray(jo))
        return uf__err(UF_ERR_FORMAT, "%s: tensor '%s': needs dtype, shape and data_offsets",
                       what, name);
    const st_dtype *dt = st_find_dtype(jd->valuestring);
    if (!dt)
        return uf__err(UF_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%s'", what, name,
                       jd->valuestring);

    /* shape: up to UF__MAX_DIMS non-negative integers; numel overflow-checked. A zero
     * dimension is legal (an empty tensor); [] is a scalar with numel 1. */
    int ndim = cJSON_GetArraySize(js);
    if (ndim > UF__MAX_DIMS)
        return uf__err(UF_ERR_UNSUPPORTED, "%s: tensor '%s': %d dimensions (max %d)", what,
                       name, ndim, UF__MAX_DIMS);
    int64_t shape[UF__MAX_DIMS];
    size_t numel = 1;
    int k = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, js) {
        uint64_t v;
        if (!json_uint(it, &v) || v > (uint64_t)INT64_MAX)
            return uf__err(UF_ERR_FORMAT, "%s: tensor '%s': bad shape entry", what, name);
        shape[k++] = (int64_t)v;
        if (v > SIZE_MAX || !uf__mul_ok(numel, (size_t)v, &numel))
            return uf__err(UF_ERR_FORMAT, "%s: tensor '%s': shape overflows", what, name);
    }

    /* data_offsets: [begin, end] within the data section, end - begin == numel * size */
    uint64_t b = 0, en = 0;
    if (cJSON_GetArraySize(jo) != 2 || !json_uint(cJSON_GetArrayItem(jo, 0), &b) ||
        !json_uint(cJSON_GetArrayItem(jo, 1), &en) || b > en)
        return uf__err(UF_ERR_FORMAT, "%s: tensor '%s': bad data_offsets", what, name);
    if (en > (uint64_t)dlen)
        return uf__err(UF_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets [%llu, %llu] beyond the data section "
                       "(%zu bytes; file truncated?)",
                       what, name, (unsigned long long)b, (unsigned long long)en, dlen);
    size_t nbytes;
    if (!uf__mul_ok(numel, dt->size, &nbytes) || (uint64_t)nbytes != en - b)
        return uf__err(UF_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets span %llu bytes, shape and dtype %s "
                       "need %zu",
                       what, name, (unsigned long long)(en - b), dt->name, numel * dt->size);
    if (!dt->conv || !convert) return UF_OK; /* valid; not a float type or validation only */

    /* Reject duplicate names (cJSON keeps both copies of a repeated key): which one a
     * consumer would see is otherwise arbitrary. Linear search, fine for ~1000 tensors. */
    if (uf__tensors_find(out, name))
        return uf__err(UF_ERR_FORMAT, "%s: tensor '%s' appears twice", what, name);

    char *nm = strdup(name);
    float *d = malloc(numel ? numel * sizeof(float) : 1); /* [numel]; numel*4 <= 2*nbytes */
    if (!nm || !d) {
        free(nm);
        free(d);
        return uf__err(UF_ERR_NOMEM, "%s: tensor '%s': out of memory (%zu floats)", what, name,
                       numel);
    }
    st_convert(dt->conv, data + b, numel, d);
    return uf__tensors_push(out, nm, ndim, shape, d);
}

/* Parse a whole safetensors image buf[len]; on failure out is left as it was on entry. */
static uf_status st_parse(const uint8_t *buf, size_t len, const char *what, uf__tensors *out)
{
    if (len < 8) return uf__err(UF_ERR_FORMAT, "%s: too short for a safetensors file", what);
    uint64_t hlen = uf__le64(buf);
    if (hlen < 2 || hlen > ST_MAX_HEADER || hlen > (uint64_t)len - 8)
        return uf__err(UF_ERR_FORMAT,
                       "%s: safetensors header length %llu does not fit the file (%zu bytes)",
                       what, (unsigned long long)hlen, len);
    /* cJSON is told the exact length: the header need not be NUL-terminated and the
     * parser never reads past it. Its nesting limit (1000) bounds the recursion. */
    const char *hdr = (const char *)buf + 8;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(hdr, (size_t)hlen, &end, 0);
    if (!root)
        return uf__err(UF_ERR_FORMAT, "%s: safetensors header is not valid JSON", what);
    /* Only padding (spaces, NULs) may follow the JSON value inside the header. */
    for (const char *p = end ? end : hdr + hlen; p < hdr + hlen; p++) {
        if (*p != ' ' && *p != '\0' && *p != '\n' && *p != '\t' && *p != '\r') {
            cJSON_Delete(root);
            return uf__err(UF_ERR_FORMAT, "%s: garbage after the safetensors JSON header",
                           what);
        }
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return uf__err(UF_ERR_FORMAT, "%s: safetensors header is not a JSON object", what);
    }
    const uint8_t *data = buf + 8 + hlen; /* the data section [dlen] */
    size_t dlen = len - 8 - (size_t)hlen;
    size_t n0 = out->n;
    uf_status s = UF_OK;
    const cJSON *e;
    /* pass 0 validates every entry (cheap), pass 1 converts: a corrupt file fails before
     * any tensor is allocated */
    for (int pass = 0; pass < 2 && s == UF_OK; pass++) {
        cJSON_ArrayForEach(e, root) {
            if (e->string && strcmp(e->string, "__metadata__") == 0) continue;
            s = st_entry(e, data, dlen, what, pass == 1, out);
            if (s != UF_OK) break;
        }
    }
    cJSON_Delete(root);
    if (s != UF_OK) {
        /* drop what this call appended, keep the caller's earlier tensors */
        uf__tensors_truncate(out, n0);
    }
    return s;
}

uf_status uf__safetensors_load_mem(const uint8_t *buf, size_t len, uf__tensors *out)
{
    return uf__safetensors_load_mem_ex(buf, len, "<memory>", out);
}

uf_status uf__safetensors_load_mem_ex(const uint8_t *buf, size_t len, const char *name,
                                      uf__tensors *out)
{
    if ((!buf && len) || !out) return uf__err(UF_ERR_ARG, "safetensors: NULL argument");
    if (len < 8)
        return uf__err(UF_ERR_FORMAT, "%s: too short for a safetensors file (%zu bytes)",
                       name, len);
    return st_parse(buf, len, name, out);
}

uf_status uf__safetensors_load(const char *path, uf__tensors *out)
{
    if (!path || !out) return uf__err(UF_ERR_ARG, "safetensors: NULL argument");
    const uint8_t *buf;
    size_t len;
    bool mapped;
    uf_status s = uf__map_file(path, SIZE_MAX, &buf, &len, &mapped);
    if (s != UF_OK) return s;
    s = uf__safetensors_load_mem_ex(buf, len, path, out);
    uf__unmap_file(buf, len, mapped);
    return s;
}

/* ---- writing ------------------------------------------------------------------------- */

/* Build the JSON header text for the tensors (malloc'd, padded with spaces to a multiple
 * of 8 bytes as the reference writer does). *hlen receives its length. */
static uf_status st_header(int n, const char *const *names, const int *ndims,
                           const int64_t *const *shapes, const char *metadata_json,
                           char **text, size_t *hlen)
{
    cJSON *root = cJSON_CreateObject();
    if (!root) return uf__err(UF_ERR_NOMEM, "safetensors: out of memory");
    uf_status s = UF_OK;
    if (metadata_json) {
        cJSON *m = cJSON_Parse(metadata_json);
        bool ok = cJSON_IsObject(m);
        const cJSON *it;
        if (ok) cJSON_ArrayForEach(it, m) ok = ok && cJSON_IsString(it);
        if (!ok) {
            cJSON_Delete(m);
            cJSON_Delete(root);
            return uf__err(UF_ERR_ARG,
                           "safetensors: metadata must be a JSON object of string values");
        }
        if (!cJSON_AddItemToObject(root, "__metadata__", m)) {
            cJSON_Delete(m);
            cJSON_Delete(root);
            return uf__err(UF_ERR_NOMEM, "safetensors: out of memory");
        }
    }
    size_t off = 0; /* running byte offset in the data section */
    for (int i = 0; i < n && s == UF_OK; i++) {
        const char *nm = names[i];
        if (!nm || !*nm || strcmp(nm, "__metadata__") == 0 ||
            cJSON_GetObjectItemCaseSensitive(root, nm)) {
            s = uf__err(UF_ERR_ARG, "safetensors: tensor %d: empty, reserved or repeated name '%s'",
                        i, nm ? nm : "(null)");
            break;
        }
        if (ndims[i] < 0 || ndims[i] > UF__MAX_DIMS || (ndims[i] > 0 && !shapes[i])) {
            s = uf__err(UF_ERR_ARG, "safetensors: tensor '%s': bad rank %d", nm, ndims[i]);
            break;
        }
        size_t numel = 1, nbytes, end;
        cJSON *t = cJSON_AddObjectToObject(root, nm);
        cJSON *sh = t ? cJSON_AddArrayToObject(t, "shape") : NULL;
        cJSON *of = sh ? cJSON_AddArrayToObject(t, "data_offsets") : NULL;
        if (!of || !cJSON_AddStringToObject(t, "dtype", "F32")) {
            s = uf__err(UF_ERR_NOMEM, "safetensors: out of memory for the header");
            break;
        }
        for (int k = 0; k < ndims[i]; k++) {
            int64_t d = shapes[i][k];
            if (d < 0 || (double)d > ST_MAX_INT || (uint64_t)d > SIZE_MAX ||
                !uf__mul_ok(numel, (size_t)d, &numel)) {
                s = uf__err(UF_ERR_ARG, "safetensors: tensor '%s': bad shape", nm);
                break;
            }
            cJSON *num = cJSON_CreateNumber((double)d);
            if (!num || !cJSON_AddItemToArray(sh, num)) {
                cJSON_Delete(num);
                s = uf__err(UF_ERR_NOMEM, "safetensors: out of memory for the header");
                break;
            }
        }
        if (s != UF_OK) break;
        if (!uf__mul_ok(numel, 4, &nbytes) || !uf__add_ok(off, nbytes, &end) ||
            (double)end > ST_MAX_INT) {
            s = uf__err(UF_ERR_ARG, "safetensors: tensor '%s': too large", nm);
            break;
        }
        cJSON *jb = cJSON_CreateNumber((double)off), *je = cJSON_CreateNumber((double)end);
        bool ok_b = jb && cJSON_AddItemToArray(of, jb);
        if (!ok_b) cJSON_Delete(jb);
        bool ok_e = je && cJSON_AddItemToArray(of, je);
        if (!ok_e) cJSON_Delete(je);
        if (!ok_b || !ok_e) {
            s = uf__err(UF_ERR_NOMEM, "safetensors: out of memory for the header");
            break;
        }
        off = end;
    }
    char *js = s == UF_OK ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (s != UF_OK) return s;
    if (!js) return uf__err(UF_ERR_NOMEM, "safetensors: out of memory for the header");
    size_t l = strlen(js), padded = (l + 7) / 8 * 8;
    char *t = realloc(js, padded + 1);
    if (!t) {
        free(js);
        return uf__err(UF_ERR_NOMEM, "safetensors: out of memory for the header");
    }
    memset(t + l, ' ', padded - l);
    t[padded] = '\0';
    *text = t;
    *hlen = padded;
    return UF_OK;
}

uf_status uf__safetensors_save(const char *path, int n, const char *const *names,
                               const int *ndims, const int64_t *const *shapes,
                               const float *const *data, const char *metadata_json)
{
    if (!path || !*path || n < 0 || (n > 0 && (!names || !ndims || !shapes || !data)))
        return uf__err(UF_ERR_ARG, "safetensors: invalid arguments");
    for (int i = 0; i < n; i++)
        if (!data[i]) return uf__err(UF_ERR_ARG, "safetensors: tensor %d has no data", i);
    char *hdr = NULL;
    size_t hlen = 0;
    uf_status s = st_header(n, names, ndims, shapes, metadata_json, &hdr, &hlen);
    if (s != UF_OK) return s;

    /* readers see either the old file or the complete new one (atomic.c) */
    uf__afile af;
    s = uf__afile_open(&af, path);
    if (s != UF_OK) {
        free(hdr);
        return s;
    }
    uint8_t lenb[8]; /* header length, little-endian */
    for (int i = 0; i < 8; i++) lenb[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    bool ok = uf__write_all(af.fd, lenb, 8) && uf__write_all(af.fd, hdr, hlen);
    free(hdr);
    for (int i = 0; i < n && ok; i++) {
        size_t numel = 1;
        for (int k = 0; k < ndims[i]; k++) numel *= (size_t)shapes[i][k]; /* checked above */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        ok = uf__write_all(af.fd, data[i], numel * sizeof(float));
#else
        for (size_t j = 0; j < numel && ok; j++) {
            uint32_t u;
            memcpy(&u, &data[i][j], 4);
            uint8_t b4[4] = {(uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16), (uint8_t)(u >> 24)};
            ok = uf__write_all(af.fd, b4, 4);
        }
#endif
    }
    if (!ok) {
        s = uf__err(UF_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        uf__afile_abort(&af);
        return s;
    }
    return uf__afile_commit(&af);
}
