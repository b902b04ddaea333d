/*
 * fuzz_pth.c - libFuzzer harness for the PyTorch checkpoint reader
 * (uf__pth_load_mem_ex: the zip container, the pickle virtual machine and the tensor
 * walk), with the default limits.
 *
 * Every tensor returned is read in full (numel floats) and its shape product is checked
 * against numel, so a tensor whose data is shorter than it claims shows up under
 * AddressSanitizer. Replayed over fuzz/corpus/pth and fuzz/regress/pth by
 * tests/test_fuzz_regress.c.
 */
#include "internal.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Check and read every tensor of ts (shared with fuzz_safetensors.c by copy: each
 * harness is one file). */
static void fuzz_pth_touch(const uf__tensors *ts)
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
    if (uf__pth_load_mem_ex(data, size, "fuzz.pth", NULL, &ts) == UF_OK) fuzz_pth_touch(&ts);
    uf__tensors_free(&ts);
    return 0;
}
