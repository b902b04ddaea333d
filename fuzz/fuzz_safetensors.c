/*
 * fuzz_safetensors.c - libFuzzer harness for the .safetensors reader
 * (uf__safetensors_load_mem: 8-byte header length, JSON header, F32/F16/BF16/F64 data).
 *
 * Every tensor returned is read in full and its shape product checked against numel.
 * Replayed over fuzz/corpus/safetensors and fuzz/regress/safetensors by
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
    if (uf__safetensors_load_mem(data, size, &ts) == UF_OK) fuzz_touch_tensors(&ts);
    uf__tensors_free(&ts);
    return 0;
}
