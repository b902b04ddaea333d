/*
 * error.c - per-thread error messages, status names, overflow-safe size arithmetic,
 * whole-file reading, half-float conversion and the tensor list used by checkpoint readers.
 *
 * Errors follow sqlite's model: a call returns a status, and a message for the calling
 * thread is kept in thread-local storage so concurrent sessions never see each other's
 * messages.
 */
#include "core/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <fcntl.h>

static _Thread_local char tl_msg[1024];

uf_status uf__err(uf_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tl_msg, sizeof tl_msg, fmt, ap);
    va_end(ap);
    return s;
}

uf_status uf__err_prefix(uf_status s, const char *prefix)
{
    char tmp[sizeof tl_msg];
    size_t lp = strlen(prefix), lm = strlen(tl_msg);
    if (lp > sizeof tmp - 3) lp = sizeof tmp - 3;
    if (lm > sizeof tmp - 3 - lp) lm = sizeof tmp - 3 - lp;
    memcpy(tmp, prefix, lp);
    memcpy(tmp + lp, ": ", 2);
    memcpy(tmp + lp + 2, tl_msg, lm);
    tmp[lp + 2 + lm] = '\0';
    memcpy(tl_msg, tmp, sizeof tl_msg);
    return s;
}

const char *uf_errmsg(void) { return tl_msg; }

const char *uf_version(void) { return UF_VERSION_STRING; }

const char *uf_status_str(uf_status s)
{
    switch (s) {
    case UF_OK: return "ok";
    case UF_ERR_ARG: return "invalid argument";
    case UF_ERR_IO: return "i/o error";
    case UF_ERR_FORMAT: return "format error";
    case UF_ERR_UNSUPPORTED: return "unsupported";
    case UF_ERR_NOMEM: return "out of memory";
    case UF_ERR_LIMIT: return "limit exceeded";
    case UF_ERR_NONFINITE: return "non-finite value";
    case UF_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

bool uf__mul_ok(size_t a, size_t b, size_t *r)
{
    if (a != 0 && b > SIZE_MAX / a) return false;
    *r = a * b;
    return true;
}

bool uf__add_ok(size_t a, size_t b, size_t *r)
{
    if (b > SIZE_MAX - a) return false;
    *r = a + b;
    return true;
}

uf_status uf__read_file(const char *path, size_t max_bytes, uint8_t **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return uf__err(UF_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return uf__err(UF_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > (uint64_t)max_bytes) {
        fclose(f);
        return uf__err(UF_ERR_LIMIT, "%s: file too large (%lld bytes, limit %zu)", path,
                       (long long)st.st_size, max_bytes);
    }
    size_t n = (size_t)st.st_size;
    uint8_t *b = malloc(n ? n : 1);
    if (!b) {
        fclose(f);
        return uf__err(UF_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, n);
    }
    if (n && fread(b, 1, n, f) != n) {
        free(b);
        fclose(f);
        return uf__err(UF_ERR_IO, "%s: read failed", path);
    }
    fclose(f);
    *buf = b;
    *len = n;
    return UF_OK;
}

uf_status uf__map_file(const char *path, size_t max_bytes, const uint8_t **buf, size_t *len,
                       bool *mapped)
{
    *buf = NULL;
    *len = 0;
    *mapped = false;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return uf__err(UF_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return uf__err(UF_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > (uint64_t)max_bytes) {
        close(fd);
        return uf__err(UF_ERR_LIMIT, "%s: file too large (%lld bytes, limit %zu)", path,
                       (long long)st.st_size, max_bytes);
    }
    size_t n = (size_t)st.st_size;
    /* Map rather than read: checkpoints are hundreds of MB and only the converted float32
     * copies of the tensors we keep need to live in memory. */
    void *map = n ? mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
    close(fd);
    if (map != MAP_FAILED) {
        *buf = map;
        *len = n;
        *mapped = true;
        return UF_OK;
    }
    uint8_t *b;
    uf_status s = uf__read_file(path, max_bytes, &b, len);
    if (s == UF_OK) *buf = b;
    return s;
}

void uf__unmap_file(const uint8_t *buf, size_t len, bool mapped)
{
    if (!buf) return;
    if (mapped) munmap((void *)buf, len);
    else free((void *)buf);
}

float uf__f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do { e++; man <<= 1; } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

float uf__bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uf_status uf__tensors_push(uf__tensors *ts, char *name, int ndim, const int64_t *shape,
                           float *data)
{
    if (ndim < 0 || ndim > UF__MAX_DIMS) {
        free(name);
        free(data);
        return uf__err(UF_ERR_FORMAT, "tensor with %d dimensions", ndim);
    }
    if (ts->n == ts->cap) {
        size_t nc = ts->cap ? ts->cap * 2 : 64;
        uf__tensor *nv = realloc(ts->v, nc * sizeof *nv);
        if (!nv) {
            free(name);
            free(data);
            return uf__err(UF_ERR_NOMEM, "out of memory for tensor list");
        }
        ts->v = nv;
        ts->cap = nc;
    }
    uf__tensor *t = &ts->v[ts->n++];
    memset(t, 0, sizeof *t);
    t->name = name;
    t->ndim = ndim;
    t->numel = 1;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        t->numel *= (size_t)shape[i];
    }
    t->data = data;
    return UF_OK;
}

void uf__tensors_free(uf__tensors *ts)
{
    if (!ts) return;
    for (size_t i = 0; i < ts->n; i++) {
        free(ts->v[i].name);
        free(ts->v[i].data);
    }
    free(ts->v);
    memset(ts, 0, sizeof *ts);
}

void uf__tensors_truncate(uf__tensors *ts, size_t n)
{
    for (size_t i = n; i < ts->n; i++) {
        free(ts->v[i].name);
        free(ts->v[i].data);
    }
    if (n < ts->n) ts->n = n;
}

uf__tensor *uf__tensors_find(const uf__tensors *ts, const char *name)
{
    for (size_t i = 0; i < ts->n; i++)
        if (strcmp(ts->v[i].name, name) == 0) return &ts->v[i];
    return NULL;
}
