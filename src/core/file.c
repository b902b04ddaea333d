/*
 * file.c - reading and mapping whole input files, with a size cap checked before anything
 * is allocated. Checkpoints, model files and dataset index files all come in through here,
 * so the limits and the error messages (always naming the path) are the same everywhere.
 */
#include "core/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

uf_status uf__read_file(const char *path, size_t max_bytes, uint8_t **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return uf__err(UF_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return uf__err(UF_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > (uint64_t)max_bytes) {
        fclose(f);
        return uf__err(UF_ERR_LIMIT, "%s: file too large (%lld bytes, limit %zu)", path,
                       (long long)st.st_size, max_bytes);
    }
    size_t n = (size_t)st.st_size;
    uint8_t *b = malloc(n ? n : 1);
    if (!b) {
        fclose(f);
        return uf__err(UF_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, n);
    }
    if (n && fread(b, 1, n, f) != n) {
        free(b);
        fclose(f);
        return uf__err(UF_ERR_IO, "%s: read failed", path);
    }
    fclose(f);
    *buf = b;
    *len = n;
    return UF_OK;
}

uf_status uf__map_file(const char *path, size_t max_bytes, const uint8_t **buf, size_t *len,
                       bool *mapped)
{
    *buf = NULL;
    *len = 0;
    *mapped = false;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return uf__err(UF_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return uf__err(UF_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > (uint64_t)max_bytes) {
        close(fd);
        return uf__err(UF_ERR_LIMIT, "%s: file too large (%lld bytes, limit %zu)", path,
                       (long long)st.st_size, max_bytes);
    }
    size_t n = (size_t)st.st_size;
    /* Map rather than read: checkpoints are hundreds of MB and only the converted float32
     * copies of the tensors we keep need to live in memory. */
    void *map = n ? mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
    close(fd);
    if (map != MAP_FAILED) {
        *buf = map;
        *len = n;
        *mapped = true;
        return UF_OK;
    }
    uint8_t *b;
    uf_status s = uf__read_file(path, max_bytes, &b, len);
    if (s == UF_OK) *buf = b;
    return s;
}

void uf__unmap_file(const uint8_t *buf, size_t len, bool mapped)
{
    if (!buf) return;
    if (mapped) munmap((void *)buf, len);
    else free((void *)buf);
}
