/*
 * atomic.c - files that appear complete or not at all. Every file the library writes (model
 * files, PNGs, safetensors, and through uf_write_file_atomic the CLI's outputs) goes
 * through here, so "a crash or a full disk never leaves a half-written file" holds in one
 * place.
 *
 * The bytes go to an unnamed file in the target's directory (Linux O_TMPFILE): a process
 * killed while writing, even by SIGKILL, leaves nothing behind. Commit fsyncs it, gives it
 * a temporary name with linkat() and renames that over the target, then fsyncs the
 * directory; so readers see the old file or the complete new one. Where O_TMPFILE is not
 * supported (some file systems, old kernels) a named "<path>.tmp.XXXXXX" from mkstemp is
 * used instead and removed on failure. New files get mode 0644 (reading the umask is not
 * thread-safe, so the common default is used).
 */
#include "core/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

bool uf__write_all(int fd, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    while (n > 0) { /* at most 1 GiB per call: Linux caps a single write near 2 GiB */
        ssize_t w = write(fd, p, n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            if (w == 0) errno = EIO;
            return false;
        }
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* The directory part of path ("." when there is none), malloc'd. */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    char *d = malloc((size_t)(slash - path) + 1);
    if (d) {
        memcpy(d, path, (size_t)(slash - path));
        d[slash - path] = '\0';
    }
    return d;
}

/* "<path>.tmp.XXXXXX" for mkstemp, malloc'd. */
static char *tmp_name(const char *path)
{
    size_t n = strlen(path) + sizeof ".tmp.XXXXXX";
    char *t = malloc(n);
    if (t) snprintf(t, n, "%s.tmp.XXXXXX", path);
    return t;
}

uf_status uf__afile_open(uf__afile *a, const char *path)
{
    memset(a, 0, sizeof *a);
    a->fd = -1;
    if (!path || !*path) return uf__err(UF_ERR_ARG, "empty output path");
    char *dir = dir_of(path);
    if (!(a->path = strdup(path)) || !dir) {
        free(dir);
        free(a->path);
        a->path = NULL;
        return uf__err(UF_ERR_NOMEM, "%s: out of memory", path);
    }
#ifdef O_TMPFILE
    a->fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
#endif
    int e = errno;
    free(dir);
    if (a->fd >= 0) return UF_OK;
    if (e == ENOENT || e == ENOTDIR || e == EACCES || e == EROFS) { /* no use trying mkstemp */
        free(a->path);
        a->path = NULL;
        return uf__err(UF_ERR_IO, "%s: cannot create: %s", path, strerror(e));
    }
    /* O_TMPFILE unsupported here: a named temporary file */
    if (!(a->tmp = tmp_name(path))) {
        free(a->path);
        a->path = NULL;
        return uf__err(UF_ERR_NOMEM, "%s: out of memory", path);
    }
    a->fd = mkstemp(a->tmp);
    if (a->fd < 0) {
        e = errno;
        uf__afile_abort(a);
        return uf__err(UF_ERR_IO, "%s: cannot create: %s", path, strerror(e));
    }
    (void)fchmod(a->fd, 0644); /* mkstemp creates 0600 */
    return UF_OK;
}

void uf__afile_abort(uf__afile *a)
{
    if (a->fd >= 0) close(a->fd);
    if (a->tmp) unlink(a->tmp);
    free(a->tmp);
    free(a->path);
    memset(a, 0, sizeof *a);
    a->fd = -1;
}

uf_status uf__afile_commit(uf__afile *a)
{
    const char *what = NULL;
    int e = 0;
    if (fsync(a->fd) != 0) what = "fsync failed", e = errno;
    if (!what && !a->tmp) { /* unnamed: give it a temporary name first */
        char proc[64];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", a->fd);
        for (int attempt = 0; attempt < 100 && !what; attempt++) {
            char *t = tmp_name(a->path);
            if (!t) {
                what = "out of memory", e = ENOMEM;
                break;
            }
            /* a unique name: mkstemp's pattern filled in without creating the file */
            size_t n = strlen(t);
            static const char al[] = "abcdefghijklmnopqrstuvwxyz0123456789";
            uint64_t r = (uint64_t)getpid() * 0x9E3779B97F4A7C15ull ^ (uint64_t)(uintptr_t)a ^
                         (uint64_t)attempt * 0xBF58476D1CE4E5B9ull;
            for (size_t i = n - 6; i < n; i++, r /= 36) t[i] = al[r % 36];
            if (linkat(AT_FDCWD, proc, AT_FDCWD, t, AT_SYMLINK_FOLLOW) == 0) {
                a->tmp = t;
                break;
            }
            e = errno;
            free(t);
            if (e != EEXIST) what = "cannot link the new file";
        }
        if (!what && !a->tmp) what = "cannot link the new file";
    }
    if (close(a->fd) != 0 && !what) what = "close failed", e = errno;
    a->fd = -1;
    if (!what && rename(a->tmp, a->path) != 0) what = "cannot rename into place", e = errno;
    if (what) {
        uf_status s = uf__err(UF_ERR_IO, "%s: %s: %s", a->path, what, strerror(e));
        uf__afile_abort(a);
        return s;
    }
    free(a->tmp);
    a->tmp = NULL; /* renamed: nothing to remove */
    /* make the rename durable too (best effort: not every file system allows it) */
    char *dir = dir_of(a->path);
    int dfd = dir ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    free(dir);
    uf__afile_abort(a); /* frees the names; fd already closed */
    return UF_OK;
}

uf_status uf_write_file_atomic(const char *path, const void *data, size_t len)
{
    if (!path || (!data && len)) return uf__err(UF_ERR_ARG, "uf_write_file_atomic: NULL argument");
    uf__afile a;
    uf_status s = uf__afile_open(&a, path);
    if (s != UF_OK) return s;
    if (!uf__write_all(a.fd, data, len)) {
        s = uf__err(UF_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        uf__afile_abort(&a);
        return s;
    }
    return uf__afile_commit(&a);
}
