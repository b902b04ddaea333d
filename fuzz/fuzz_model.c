/*
 * fuzz_model.c - libFuzzer harness for model files (uf_model_load).
 *
 * uf_model_load takes a path, so the input is written to a memfd (no disk traffic) and
 * loaded through /proc/self/fd/N. A model file ends with a SHA-256 of everything before
 * its trailer; left alone, almost every mutation would stop at "checksum mismatch" and
 * the fuzzer would never reach the JSON header and section checks behind it. So when
 * the input ends with the end marker "UFMEND\0\0", the harness writes the correct
 * checksum into the trailer first (inputs without the marker test the unchecked path).
 * Seeds are small models over random backbones (their configuration is in the file, so
 * no checkpoint is needed), embedded and not.
 *
 * Replayed over fuzz/corpus/model and fuzz/regress/model by tests/test_fuzz_regress.c.
 */
#include "uniformaly.h"

#include <openssl/evp.h>

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fuzz_model_fd = -1;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t end_marker[8] = {'U', 'F', 'M', 'E', 'N', 'D', 0, 0};
    if (fuzz_model_fd < 0) {
        fuzz_model_fd = memfd_create("fuzz_model", 0);
        if (fuzz_model_fd < 0) abort();
    }
    uint8_t *buf = malloc(size ? size : 1); /* [size] the input, trailer fixed */
    if (!buf) abort();
    if (size) memcpy(buf, data, size);
    if (size >= 40 && !memcmp(buf + size - 8, end_marker, 8)) {
        unsigned mdlen = 0;
        if (!EVP_Digest(buf, size - 40, buf + size - 40, &mdlen, EVP_sha256(), NULL)) abort();
    }
    if (ftruncate(fuzz_model_fd, 0) != 0) abort();
    for (size_t done = 0; done < size;) {
        ssize_t w = pwrite(fuzz_model_fd, buf + done, size - done, (off_t)done);
        if (w <= 0) abort();
        done += (size_t)w;
    }
    free(buf);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fuzz_model_fd);

    uf_model *m = NULL;
    if (uf_model_load(path, NULL, &m) == UF_OK) {
        uf_model_info info;
        uf_model_get_info(m, &info);
        int gh, gw, S, D;
        uf_model_output_size(m, &gh, &gw, &S, &D);
        if (info.dim <= 0 || gh <= 0 || gw <= 0 || S <= 0 || D <= 0)
            __builtin_trap();
        const float *bank = uf_model_bank(m); /* [bank_size][dim] */
        volatile float sum = 0;
        for (size_t i = 0; i < info.bank_size * (size_t)info.dim; i++) sum += bank[i];
        (void)sum;
    }
    uf_model_free(m);
    return 0;
}
