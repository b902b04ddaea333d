/*
 * fuzz_safetensors.c - libFuzzer harness for the .safetensors reader
 * (uf__safetensors_load_mem: 8-byte header length, JSON header, F32/F16/BF16/F64 data).
 *
 * Every tensor returned is read in full and its shape product checked against numel.
 * Replayed over fuzz/corpus/safetensors and fuzz/regress/safetensors by
 * tests/test_fuzz_regress.c.
 */
#include "internal.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_st_touch(const uf__tensors *ts)
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uf__tensors ts = {0};
    if (uf__safetensors_load_mem(data, size, &ts) == UF_OK) fuzz_st_touch(&ts);
    uf__tensors_free(&ts);
    return 0;
}
