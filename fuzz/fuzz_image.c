/*
 * fuzz_image.c - libFuzzer harness for image decoding (uf_image_decode).
 *
 * Every decoder (PNG through libpng, JPEG through libjpeg, our own BMP and PNM readers)
 * is reached through the one public entry point, which sniffs the format from the bytes.
 * The pixel limit is lowered to 4 Mpx so that inputs declaring huge dimensions are
 * refused (or decoded) cheaply; the fuzzer then spends its time on the parsers rather
 * than on memset. A decoded image is read back in full so that a buffer smaller than
 * width*height*3 shows up under AddressSanitizer.
 *
 * Built by `make fuzz` (clang -fsanitize=fuzzer,address,undefined) and replayed over
 * fuzz/corpus/image and fuzz/regress/image by tests/test_fuzz_regress.c.
 */
#include "uniformaly.h"

#include <stddef.h>
#include <stdint.h>

#define FUZZ_IMAGE_MAX_PIXELS ((size_t)4 << 20) /* 4 Mpx */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t old = uf_get_max_pixels();
    uf_set_max_pixels(FUZZ_IMAGE_MAX_PIXELS);
    uf_image *img = NULL;
    if (uf_image_decode(data, size, &img) == UF_OK) {
        /* a success must be a real image within the limit, every byte readable */
        if (!img || img->width <= 0 || img->height <= 0 || !img->rgb ||
            (size_t)img->width * (size_t)img->height > FUZZ_IMAGE_MAX_PIXELS)
            __builtin_trap();
        size_t n = (size_t)img->width * (size_t)img->height * 3; /* [h][w][3] */
        volatile unsigned sum = 0;
        for (size_t i = 0; i < n; i++) sum += img->rgb[i];
        (void)sum;
    }
    uf_image_free(img);
    uf_set_max_pixels(old);
    return 0;
}
