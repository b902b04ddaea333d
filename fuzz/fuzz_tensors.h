/*
 * fuzz_tensors.h - the check shared by the tensor-file harnesses (fuzz_pth.c,
 * fuzz_safetensors.c): every tensor a reader returns is read in full (numel floats) and its
 * shape product is checked against numel, so a tensor whose data is shorter than it claims
 * shows up under AddressSanitizer and an inconsistent one traps. Header-only, guarded, so
 * tests/test_fuzz_regress.c can include both harnesses in one file.
 */
#ifndef UF_FUZZ_TENSORS_H
#define UF_FUZZ_TENSORS_H

#include "core/internal.h"

static void fuzz_touch_tensors(const uf__tensors *ts)
{
    volatile float sum = 0;
    for (size_t t = 0; t < ts->n; t++) {
        const uf__tensor *x = &ts->v[t]; /* one tensor, data [numel] */
        if (!x->name || x->ndim < 0 || x->ndim > UF__MAX_DIMS) __builtin_trap();
        size_t numel = 1;
        for (int d = 0; d < x->ndim; d++) {
            if (x->shape[d] < 0) __builtin_trap();
            numel *= (size_t)x->shape[d];
        }
        if (numel != x->numel) __builtin_trap();
        for (size_t i = 0; i < x->numel; i++) sum += x->data[i];
    }
    (void)sum;
}

#endif
