/*
 * tensors.c - the flat list of named float32 tensors that the checkpoint readers (pth.c,
 * safetensors.c) produce and the ViT loader consumes, and the half-precision conversions
 * they share (F16, BF16 storages are widened to float32 on load).
 */
#include "core/internal.h"

#include <stdlib.h>
#include <string.h>

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
