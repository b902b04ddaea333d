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
 * used instead and removed on failure. New files get mode 0644 less the umask (mkstemp's
 * fallback: 0644, since reading the umask is not thread-safe); a replaced file keeps its
 * mode.
 *
 * What may be replaced is decided here too (check_target), so no caller can get it wrong:
 * only a regular file with one link. A symbolic link is written through (its target is
 * replaced, the link stays), since a link to the real output is a common way to name it;
 * a hard-linked file is refused, because keeping the links would mean writing in place and
 * losing atomicity. uf_output_check applies the same rules up front, together with "not one
 * of the run's inputs" (device and inode), so a long fit cannot end by destroying its
 * backbone.
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

/* The file that writing path would replace: *real (malloc'd) is path, or for a symbolic
 * link the file it points to; *st is filled and *exists set when that file exists. Refuses
 * a dangling link, anything but a regular file, and a file with several hard links. */
static uf_status check_target(const char *path, char **real, struct stat *st, bool *exists)
{
    *real = NULL;
    *exists = false;
    struct stat lst;
    if (lstat(path, &lst) != 0) { /* missing (or unreachable: creating it will say why) */
        if (!(*real = strdup(path))) return uf__err(UF_ERR_NOMEM, "%s: out of memory", path);
        return UF_OK;
    }
    if (S_ISLNK(lst.st_mode)) {
        char *r = realpath(path, NULL);
        if (!r) {
            int e = errno;
            return e == ENOENT ? uf__err(UF_ERR_IO, "%s: a symbolic link to a missing file; "
                                         "refusing to write through it", path)
                               : uf__err(UF_ERR_IO, "%s: cannot resolve the symbolic link: %s",
                                         path, strerror(e));
        }
        if (stat(r, &lst) != 0) {
            int e = errno;
            free(r);
            return uf__err(UF_ERR_IO, "%s: cannot resolve the symbolic link: %s", path,
                           strerror(e));
        }
        *real = r;
    } else if (!(*real = strdup(path))) {
        return uf__err(UF_ERR_NOMEM, "%s: out of memory", path);
    }
    uf_status s = UF_OK;
    if (!S_ISREG(lst.st_mode))
        s = uf__err(UF_ERR_IO, "%s: exists and is %s, not a regular file; refusing to "
                    "replace it", path, uf__file_kind(lst.st_mode));
    else if (lst.st_nlink > 1)
        s = uf__err(UF_ERR_IO, "%s: has %lu hard links; refusing to replace it (that would "
                    "split the links): remove the other links or choose another name", path,
                    (unsigned long)lst.st_nlink);
    if (s != UF_OK) {
        free(*real);
        *real = NULL;
        return s;
    }
    *st = lst;
    *exists = true;
    return UF_OK;
}

/* Give the new file the mode (and, for root, the owner) of the file it replaces, if any;
 * else mode (0644 for mkstemp's 0600; an O_TMPFILE file already has 0644 less the umask). */
static void keep_mode(int fd, const struct stat *old, mode_t mode)
{
    if (old && geteuid() == 0) (void)fchown(fd, old->st_uid, old->st_gid);
    if (old || mode) (void)fchmod(fd, old ? old->st_mode & 07777 : mode); /* after fchown */
}

uf_status uf__afile_open(uf__afile *a, const char *path)
{
    memset(a, 0, sizeof *a);
    a->fd = -1;
    if (!path || !*path) return uf__err(UF_ERR_ARG, "empty output path");
    struct stat old;
    bool exists;
    uf_status s = check_target(path, &a->path, &old, &exists);
    if (s != UF_OK) return s;
    char *dir = dir_of(a->path); /* through a symbolic link: its target's folder */
    if (!dir) {
        free(a->path);
        a->path = NULL;
        return uf__err(UF_ERR_NOMEM, "%s: out of memory", path);
    }
#ifdef O_TMPFILE
    a->fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
#endif
    int e = errno;
    free(dir);
    if (a->fd >= 0) {
        keep_mode(a->fd, exists ? &old : NULL, 0);
        return UF_OK;
    }
    if (e == ENOENT || e == ENOTDIR || e == EACCES || e == EROFS) { /* no use trying mkstemp */
        free(a->path);
        a->path = NULL;
        return uf__err(UF_ERR_IO, "%s: cannot create: %s", path, strerror(e));
    }
    /* O_TMPFILE unsupported here: a named temporary file */
    if (!(a->tmp = tmp_name(a->path))) {
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
    keep_mode(a->fd, exists ? &old : NULL, 0644); /* mkstemp creates 0600 */
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

/* ---- outputs that would replace an input ------------------------------------------------ */

typedef struct file_id {
    dev_t dev;
    ino_t ino;
} file_id;

/* An open-addressing hash set of identities (linear probing, at most half full). */
struct uf_inputs {
    file_id *v;  /* [cap] identities; path[i] == NULL marks a free slot */
    char **path; /* [cap] the path each identity came from, for messages */
    size_t n, cap;
};

uf_status uf_inputs_new(uf_inputs **out)
{
    if (!out) return uf__err(UF_ERR_ARG, "uf_inputs_new: out is NULL");
    *out = calloc(1, sizeof **out);
    return *out ? UF_OK : uf__err(UF_ERR_NOMEM, "out of memory");
}

void uf_inputs_free(uf_inputs *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->cap; i++) free(s->path[i]);
    free(s->path);
    free(s->v);
    free(s);
}

/* The slot holding k, or the free slot where it would go (cap > n, a power of two). */
static size_t id_slot(const file_id *v, char *const *path, size_t cap, file_id k)
{
    uint64_t h = ((uint64_t)k.dev * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)k.ino * 0xBF58476D1CE4E5B9ull);
    size_t i = (size_t)(h ^ h >> 29) & (cap - 1);
    while (path[i] && (v[i].dev != k.dev || v[i].ino != k.ino)) i = (i + 1) & (cap - 1);
    return i;
}

uf_status uf_inputs_add(uf_inputs *s, const char *path)
{
    if (!s || !path) return uf__err(UF_ERR_ARG, "uf_inputs_add: NULL argument");
    struct stat st;
    if (stat(path, &st) != 0) return UF_OK; /* reading it will report it */
    if (2 * (s->n + 1) > s->cap) { /* grow and rehash */
        size_t nc = s->cap ? 2 * s->cap : 64;
        file_id *nv = calloc(nc, sizeof *nv);
        char **np = calloc(nc, sizeof *np);
        if (!nv || !np) {
            free(nv);
            free(np);
            return uf__err(UF_ERR_NOMEM, "out of memory");
        }
        for (size_t i = 0; i < s->cap; i++)
            if (s->path[i]) {
                size_t j = id_slot(nv, np, nc, s->v[i]);
                nv[j] = s->v[i];
                np[j] = s->path[i];
            }
        free(s->v);
        free(s->path);
        s->v = nv;
        s->path = np;
        s->cap = nc;
    }
    file_id k = {st.st_dev, st.st_ino};
    size_t j = id_slot(s->v, s->path, s->cap, k);
    if (s->path[j]) return UF_OK; /* already known */
    if (!(s->path[j] = strdup(path))) return uf__err(UF_ERR_NOMEM, "out of memory");
    s->v[j] = k;
    s->n++;
    return UF_OK;
}

uf_status uf_output_check(const char *path, const uf_inputs *inputs)
{
    if (!path || !*path) return uf__err(UF_ERR_ARG, "empty output path");
    char *real;
    struct stat st;
    bool exists;
    uf_status s = check_target(path, &real, &st, &exists);
    if (s != UF_OK) return s;
    free(real);
    if (!exists || !inputs || !inputs->n) return UF_OK;
    file_id k = {st.st_dev, st.st_ino};
    size_t j = id_slot(inputs->v, inputs->path, inputs->cap, k);
    if (inputs->path[j])
        return uf__err(UF_ERR_IO, "%s: is the input %s; refusing to overwrite it", path,
                       inputs->path[j]);
    return UF_OK;
}
