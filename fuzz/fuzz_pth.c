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
#include "fuzz_tensors.h"
#include "core/internal.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uf__tensors ts = {0};
    if (uf__pth_load_mem_ex(data, size, "fuzz.pth", NULL, &ts) == UF_OK) fuzz_touch_tensors(&ts);
    uf__tensors_free(&ts);
    return 0;
}
