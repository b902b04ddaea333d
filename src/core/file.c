/*
 * file.c - reading and mapping whole input files, with a size cap checked before anything
 * is allocated. Checkpoints, model files and dataset index files all come in through here,
 * so the limits and the error messages (always naming the path) are the same everywhere.
 *
 * Every input is opened by uf_open_input: with O_NONBLOCK, so a FIFO (or a device) given
 * where a file is expected cannot block open() forever, and refused unless it is a regular
 * file. The CLI's list and label files go through it too.
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

/* What a non-regular file is, for messages. */
static const char *kind_of(mode_t m)
{
    return S_ISDIR(m) ? "a directory" : S_ISFIFO(m) ? "a FIFO" : S_ISSOCK(m) ? "a socket"
         : S_ISCHR(m) ? "a character device" : S_ISBLK(m) ? "a block device" : "not a file";
}

const char *uf__file_kind(unsigned mode) { return kind_of((mode_t)mode); }

uf_status uf_open_input(const char *path, int *fd)
{
    if (!fd) return uf__err(UF_ERR_ARG, "uf_open_input: fd is NULL");
    *fd = -1;
    if (!path || !*path) return uf__err(UF_ERR_ARG, "uf_open_input: empty path");
    /* O_NONBLOCK: opening a FIFO without a writer would otherwise wait forever */
    int f = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (f < 0) return uf__err(UF_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(f, &st) != 0) {
        int e = errno;
        close(f);
        return uf__err(UF_ERR_IO, "%s: cannot open: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(f);
        return uf__err(UF_ERR_IO, "%s: not a regular file (%s)", path, kind_of(st.st_mode));
    }
    int fl = fcntl(f, F_GETFL);
    if (fl >= 0) (void)fcntl(f, F_SETFL, fl & ~O_NONBLOCK); /* plain reads from here on */
    *fd = f;
    return UF_OK;
}

/* Open an input file (uf_open_input: regular files only, never blocking) and give its
 * size, refusing one above max_bytes before anything is allocated. */
static uf_status open_sized(const char *path, size_t max_bytes, int *fd, size_t *n)
{
    uf_status s = uf_open_input(path, fd);
    if (s != UF_OK) return s;
    struct stat st;
    if (fstat(*fd, &st) != 0) {
        s = uf__err(UF_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        close(*fd);
        return s;
    }
    if ((uint64_t)st.st_size > (uint64_t)max_bytes) {
        close(*fd);
        return uf__err(UF_ERR_LIMIT, "%s: file too large (%lld bytes, limit %zu)", path,
                       (long long)st.st_size, max_bytes);
    }
    *n = (size_t)st.st_size;
    return UF_OK;
}

uf_status uf__read_file(const char *path, size_t max_bytes, uint8_t **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    int fd;
    size_t n;
    uf_status s = open_sized(path, max_bytes, &fd, &n);
    if (s != UF_OK) return s;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return uf__err(UF_ERR_NOMEM, "%s: cannot open: out of memory", path);
    }
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
    int fd;
    size_t n;
    uf_status s = open_sized(path, max_bytes, &fd, &n);
    if (s != UF_OK) return s;
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
    s = uf__read_file(path, max_bytes, &b, len);
    if (s == UF_OK) *buf = b;
    return s;
}

void uf__unmap_file(const uint8_t *buf, size_t len, bool mapped)
{
    if (!buf) return;
    if (mapped) munmap((void *)buf, len);
    else free((void *)buf);
}
