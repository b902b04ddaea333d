/*
 * api_io.c - public wrappers over internal file writers, so the CLI and users reach them
 * through the public header only.
 */
#include "core/internal.h"

uf_status uf_safetensors_write(const char *path, int n, const char *const *names,
                               const int *ndims, const int64_t *const *shapes,
                               const float *const *data, const char *metadata_json)
{
    if (!path || n < 0 || (n > 0 && (!names || !ndims || !shapes || !data)))
        return uf__err(UF_ERR_ARG, "uf_safetensors_write: invalid arguments");
    return uf__safetensors_save(path, n, names, ndims, shapes, data, metadata_json);
}
