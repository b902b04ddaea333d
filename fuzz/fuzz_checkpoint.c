/*
 * fuzz_checkpoint.c - libFuzzer harness for the whole checkpoint path
 * (uf__backbone_load_mem): format sniffing (.pth zip or .safetensors), tensor reading,
 * key renaming (timm, DINO, Hugging Face), architecture inference from shapes and the
 * assembly of a ViT. Each input is loaded twice: with the default parameters (heads
 * inferred from the width, which refuses the tiny non-standard widths of the seeds) and
 * with heads = 2 given (so the seeds' 8-wide ViTs load completely and the fuzzer can
 * explore past the architecture checks).
 *
 * A loaded backbone's description is checked for sanity. Replayed over
 * fuzz/corpus/checkpoint and fuzz/regress/checkpoint by tests/test_fuzz_regress.c.
 */
#include "core/internal.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (int pass = 0; pass < 2; pass++) {
        uf_backbone_params p = uf_backbone_default_params();
        if (pass) p.heads = 2;
        uf_backbone *bb = NULL;
        if (uf__backbone_load_mem(data, size, "fuzz.ckpt", &p, &bb) == UF_OK) {
            uf_backbone_info info;
            uf_backbone_get_info(bb, &info);
            if (info.dim <= 0 || info.depth <= 0 || info.heads <= 0 || info.patch <= 0 ||
                info.grid_h <= 0 || info.grid_w <= 0 || info.dim % info.heads)
                __builtin_trap();
        }
        uf_backbone_free(bb);
    }
    return 0;
}
