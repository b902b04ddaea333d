/*
 * dataset.c - readers for the dataset layouts anomaly-detection data comes in on disk.
 *
 * `uniformaly eval` runs every task of the paper on published datasets, so it needs the
 * images of each category's train and test split with their ground truth (normal or
 * anomalous, defect type, pixel mask). This file turns a root folder into that list, once,
 * at open time; nothing is decoded until the caller asks for an image or mask.
 *
 *  - Defect datasets (MVTec AD, BTAD, generic folder): folder scans of
 *    <category>/{train,test,ground_truth}; MTD: MT_Free/Imgs and MT_<Defect>/Imgs with the
 *    standard "every fifth free image is a test image" split; list datasets: train.txt and
 *    test.txt of "path [label [mask]]" lines.
 *  - Semantic datasets (CIFAR-10/100 binary batches, MNIST/Fashion-MNIST idx files, plain
 *    or gzip'ed, and ImageNet-style class folders) under the one-class protocol: category c
 *    trains on class c, and its test split is every test image, anomalous iff its class is
 *    not c. CIFAR and MNIST pixels are kept as their raw bytes (one [N][record] array) and
 *    turned into uf_image on demand.
 *
 * These parsers read outside data (fuzzed in issue 5): every size taken from a file is
 * checked with overflow-safe arithmetic and against the file's own size before anything is
 * allocated from it (CIFAR: size an exact multiple of the record; plain idx: exactly the
 * declared size; gzip'ed idx: the declared size must be reachable at deflate's maximum
 * ratio, and the stream may not inflate beyond it). Errors are one line naming the file.
 *
 * Memory: strings (paths, names) live in one arena per dataset; items in per-category
 * arrays. Semantic test splits are the same images for every category with a different
 * `anomalous` flag; they are materialised on first request under a mutex, so a dataset
 * with many classes only pays for the classes actually evaluated.
 *
 * Thread safety: after uf_dataset_open nothing changes except those lazily built test
 * arrays, which are created and read under ds->lock; everything else is read-only.
 */
#include "core/internal.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

/* ---- limits ----------------------------------------------------------------------------- */

#define MAX_LIST_BYTES ((size_t)1 << 30)    /* a train.txt / test.txt larger is refused   */
#define MAX_NAMES_BYTES ((size_t)1 << 16)   /* batches.meta.txt, coarse_label_names.txt   */
#define MAX_IDX_BYTES ((size_t)1 << 32)     /* decoded idx payload (EMNIST is ~0.7 GB)    */
#define MAX_IDX_SIDE 4096u                  /* rows, cols of an idx image                 */
#define GZ_MAX_RATIO 1032u                  /* deflate cannot expand more than ~1032:1    */
#define MAX_LABEL_LEN 255                   /* a list's label word                        */
#define MAX_CLASSES 100000                  /* class folders of an image folder dataset   */

/* ---- the dataset ---------------------------------------------------------------------- */

/* One block of the string arena. */
typedef struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    char data[]; /* [cap] */
} arena_block;

typedef struct ds_cat {
    const char *name;           /* in the arena                                           */
    const char **types;         /* [n_types] type names (owned array unless types_shared) */
    int n_types;
    int types_shared;           /* semantic: points at ds->class_names                    */
    uf_dataset_item *train;     /* [n_train]; owned unless train_shared                   */
    size_t n_train;
    int train_shared;           /* semantic: a slice of ds->sem_train                     */
    uf_dataset_item *test;      /* [n_test]; owned; semantic: NULL until first request    */
    size_t n_test;
    uf_dataset_counts counts;
} ds_cat;

struct uf_dataset {
    uf_dataset_kind kind;
    char *root;                 /* as given, trailing '/' removed (malloc'd)             */
    int semantic;
    ds_cat *cats;               /* [n_cats]                                               */
    int n_cats;
    size_t n_images;            /* image_id range                                         */
    arena_block *arena;         /* all strings                                            */

    /* in-memory images (CIFAR, MNIST) */
    uint8_t *pix;               /* [n_images][rec_bytes]: CIFAR planar [3][32][32],
                                   MNIST [h][w] grey                                      */
    size_t rec_bytes;
    int img_w, img_h, img_planar_rgb; /* planar_rgb: 1 CIFAR, 0 grey                     */

    /* semantic datasets */
    const char **class_names;   /* [n_cats] (owned array, strings in the arena)          */
    uf_dataset_item *sem_train; /* [n_sem_train] train images sorted by class (stable)    */
    size_t n_sem_train;
    uf_dataset_item *sem_test;  /* [n_sem_test] test images, anomalous = 0                */
    size_t n_sem_test;
    pthread_mutex_t lock;       /* guards cats[c].test of semantic datasets               */
    int lock_inited;
};

/* ---- string arena ------------------------------------------------------------------------ */

/* n bytes from the arena (not aligned: strings only), or NULL when out of memory. Strings
 * go into 64 KiB blocks; a long one gets a block of its own, linked behind the current
 * block so that block keeps filling. */
#define ARENA_BLOCK ((size_t)65536 - sizeof(arena_block))
static char *arena_alloc(uf_dataset *ds, size_t n)
{
    arena_block *b = ds->arena;
    if (b && b->cap - b->used >= n) {
        char *p = b->data + b->used;
        b->used += n;
        return p;
    }
    size_t cap = n > ARENA_BLOCK ? n : ARENA_BLOCK, bytes;
    if (!uf__add_ok(cap, sizeof(arena_block), &bytes)) return NULL;
    arena_block *nb = malloc(bytes);
    if (!nb) return NULL;
    nb->cap = cap;
    nb->used = n;
    if (b && n > ARENA_BLOCK / 4) {
        nb->next = b->next;
        b->next = nb;
    } else {
        nb->next = b;
        ds->arena = nb;
    }
    return nb->data;
}

/* Copy of s[0..len) plus a NUL in the arena. */
static const char *arena_strndup(uf_dataset *ds, const char *s, size_t len)
{
    size_t n;
    if (!uf__add_ok(len, 1, &n)) return NULL;
    char *p = arena_alloc(ds, n);
    if (!p) return NULL;
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

static const char *arena_strdup(uf_dataset *ds, const char *s)
{
    return arena_strndup(ds, s, strlen(s));
}

/* printf into the arena. */
static const char *arena_printf(uf_dataset *ds, const char *fmt, ...) UF__PRINTF(2, 3);
static const char *arena_printf(uf_dataset *ds, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return NULL;
    char *p = arena_alloc(ds, (size_t)n + 1);
    if (!p) return NULL;
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

/* malloc'd printf (temporary strings), NULL when out of memory. */
static char *xprintf(const char *fmt, ...) UF__PRINTF(1, 2);
static char *xprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return NULL;
    char *p = malloc((size_t)n + 1);
    if (!p) return NULL;
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

static uf_status nomem(void) { return uf__err(UF_ERR_NOMEM, "dataset: out of memory"); }

/* ---- growable arrays ---------------------------------------------------------------------- */

typedef struct item_vec {
    uf_dataset_item *v; /* [cap] */
    size_t n, cap;
} item_vec;

static uf_status item_push(item_vec *iv, const uf_dataset_item *it)
{
    if (iv->n == iv->cap) {
        size_t cap = iv->cap ? iv->cap * 2 : 64, bytes;
        if (!uf__mul_ok(cap, sizeof *iv->v, &bytes)) return nomem();
        uf_dataset_item *v = realloc(iv->v, bytes);
        if (!v) return nomem();
        iv->v = v;
        iv->cap = cap;
    }
    iv->v[iv->n++] = *it;
    return UF_OK;
}

/* A list of malloc'd names. */
typedef struct name_list {
    char **v; /* [cap] */
    size_t n, cap;
} name_list;

static void names_free(name_list *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static uf_status names_push(name_list *l, const char *s)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 32, bytes;
        if (!uf__mul_ok(cap, sizeof *l->v, &bytes)) return nomem();
        char **v = realloc(l->v, bytes);
        if (!v) return nomem();
        l->v = v;
        l->cap = cap;
    }
    char *c = strdup(s);
    if (!c) return nomem();
    l->v[l->n++] = c;
    return UF_OK;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b); /* bytewise (unsigned char) */
}

/* Index of s in the sorted list, or -1. */
static long names_find(const name_list *l, const char *s)
{
    size_t lo = 0, hi = l->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(l->v[mid], s);
        if (c == 0) return (long)mid;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

/* ---- file system helpers -------------------------------------------------------------------- */

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* ".png, .jpg, ..." from uf_image_extensions(), for messages about folders without images. */
static const char *image_exts_text(char buf[static 96])
{
    size_t n = 0;
    buf[0] = '\0';
    for (const char *const *e = uf_image_extensions(); *e && n < 96; e++)
        n += (size_t)snprintf(buf + n, 96 - n, "%s.%s", n ? ", " : "", *e);
    return buf;
}

/* Extension of name without the dot ("" if none). */
static const char *ext_of(const char *name)
{
    const char *d = strrchr(name, '.');
    return d && d != name ? d + 1 : "";
}

static int ext_is(const char *name, const char *ext) { return !strcasecmp(ext_of(name), ext); }

enum { LIST_DIRS = 1, LIST_IMAGES = 2 };

/* The entries of folder dir that are folders (LIST_DIRS) or image files (LIST_IMAGES),
 * names starting with '.' skipped, sorted bytewise. Symbolic links are followed. */
static uf_status list_dir(const char *dir, int what, name_list *out)
{
    memset(out, 0, sizeof *out);
    DIR *d = opendir(dir);
    if (!d) return uf__err(UF_ERR_IO, "%s: cannot open folder: %s", dir, strerror(errno));
    uf_status s = UF_OK;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        if (what == LIST_IMAGES && !uf_is_image_name(e->d_name)) continue;
        int ok;
        if (e->d_type == DT_DIR || e->d_type == DT_REG) { /* no stat needed (1.3 M files
                                                              for ImageNet) */
            ok = e->d_type == (what == LIST_DIRS ? DT_DIR : DT_REG);
        } else { /* symbolic link or a file system without d_type: follow it */
            char *p = xprintf("%s/%s", dir, e->d_name);
            if (!p) {
                s = nomem();
                break;
            }
            ok = what == LIST_DIRS ? is_dir(p) : is_file(p);
            free(p);
        }
        if (ok && (s = names_push(out, e->d_name)) != UF_OK) break;
    }
    closedir(d);
    if (s != UF_OK) {
        names_free(out);
        return s;
    }
    if (out->n > 1) qsort(out->v, out->n, sizeof *out->v, cmp_str);
    return UF_OK;
}

/* ---- masks beside test images ------------------------------------------------------------ */

/* The image files of a ground-truth folder indexed by stem (name without extension),
 * sorted by stem with .png first among equal stems. */
typedef struct mask_entry {
    char *stem; /* malloc'd */
    const char *file; /* in the name list */
} mask_entry;

typedef struct mask_index {
    name_list files;
    mask_entry *e; /* [files.n] */
    size_t n;
} mask_index;

static int cmp_mask_entry(const void *a, const void *b)
{
    const mask_entry *x = a, *y = b;
    int c = strcmp(x->stem, y->stem);
    if (c) return c;
    int px = !ext_is(x->file, "png"), py = !ext_is(y->file, "png");
    if (px != py) return px - py;
    return strcmp(x->file, y->file);
}

static void mask_index_free(mask_index *mi)
{
    for (size_t i = 0; i < mi->n; i++) free(mi->e[i].stem);
    free(mi->e);
    names_free(&mi->files);
    memset(mi, 0, sizeof *mi);
}

/* Index the image files of dir; a missing dir gives an empty index. */
static uf_status mask_index_build(const char *dir, mask_index *mi)
{
    memset(mi, 0, sizeof *mi);
    if (!is_dir(dir)) return UF_OK;
    uf_status s = list_dir(dir, LIST_IMAGES, &mi->files);
    if (s != UF_OK) return s;
    if (mi->files.n == 0) return UF_OK;
    mi->e = calloc(mi->files.n, sizeof *mi->e);
    if (!mi->e) {
        mask_index_free(mi);
        return nomem();
    }
    for (size_t i = 0; i < mi->files.n; i++) {
        const char *f = mi->files.v[i];
        size_t len = (size_t)(ext_of(f) - f) - 1; /* image names always have an extension */
        mi->e[i].stem = strndup(f, len);
        mi->e[i].file = f;
        mi->n = i + 1;
        if (!mi->e[i].stem) {
            mask_index_free(mi);
            return nomem();
        }
    }
    qsort(mi->e, mi->n, sizeof *mi->e, cmp_mask_entry);
    return UF_OK;
}

/* The file whose stem is exactly stem (the preferred one if several), or NULL. */
static const char *mask_index_find(const mask_index *mi, const char *stem)
{
    size_t lo = 0, hi = mi->n;
    while (lo < hi) { /* first entry with entry.stem >= stem */
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(mi->e[mid].stem, stem) < 0) lo = mid + 1;
        else hi = mid;
    }
    return lo < mi->n && !strcmp(mi->e[lo].stem, stem) ? mi->e[lo].file : NULL;
}

/* Mask of test image `file` in the index: "<stem>_mask.<ext>", else "<stem>.<ext>". */
static const char *mask_for(const mask_index *mi, const char *file)
{
    if (mi->n == 0) return NULL;
    size_t len = (size_t)(ext_of(file) - file) - 1;
    char *stem = malloc(len + sizeof "_mask");
    if (!stem) return NULL;
    memcpy(stem, file, len);
    memcpy(stem + len, "_mask", sizeof "_mask");
    const char *m = mask_index_find(mi, stem);
    if (!m) {
        stem[len] = '\0';
        m = mask_index_find(mi, stem);
    }
    free(stem);
    return m;
}

/* ---- categories ---------------------------------------------------------------------------- */

static uf_status add_category(uf_dataset *ds, ds_cat **out)
{
    if (ds->n_cats == INT_MAX) return uf__err(UF_ERR_LIMIT, "%s: too many categories", ds->root);
    ds_cat *c = realloc(ds->cats, ((size_t)ds->n_cats + 1) * sizeof *c);
    if (!c) return nomem();
    ds->cats = c;
    memset(&c[ds->n_cats], 0, sizeof *c);
    *out = &c[ds->n_cats++];
    return UF_OK;
}

/* Counts of a category whose test array is complete. */
static void count_category(ds_cat *c)
{
    c->counts.n_train = c->n_train;
    c->counts.n_test = c->n_test;
    c->counts.n_test_anomalous = c->counts.n_test_masked = 0;
    for (size_t i = 0; i < c->n_test; i++) {
        if (!c->test[i].anomalous) continue;
        c->counts.n_test_anomalous++;
        if (c->test[i].mask_path) c->counts.n_test_masked++;
    }
}

/* Hand the train and test arrays over to c (the vectors are left empty) and count them. */
static void set_splits(ds_cat *c, item_vec *tr, item_vec *te)
{
    c->train = tr->v;
    c->n_train = tr->n;
    c->test = te->v;
    c->n_test = te->n;
    tr->v = te->v = NULL;
    tr->n = tr->cap = te->n = te->cap = 0;
    count_category(c);
}

/* Name of the folder root: its last path component, or (for ".", "..") the last component
 * of its real path. */
static const char *root_name(uf_dataset *ds)
{
    const char *r = ds->root;
    const char *b = strrchr(r, '/');
    b = b ? b + 1 : r;
    if (*b && strcmp(b, ".") && strcmp(b, "..")) return arena_strdup(ds, b);
    char *real = realpath(r, NULL);
    const char *name = NULL;
    if (real) {
        const char *rb = strrchr(real, '/');
        rb = rb ? rb + 1 : real;
        name = arena_strdup(ds, *rb ? rb : "root");
        free(real);
    } else {
        name = arena_strdup(ds, "dataset");
    }
    return name;
}

/* ---- defect layouts: MVTec AD, BTAD, generic folder ---------------------------------------- */

static int is_normal_type(const char *t) { return !strcmp(t, "good") || !strcmp(t, "ok"); }

/* Add one item of a file dataset to iv (strings copied to the arena). */
static uf_status push_file_item(uf_dataset *ds, item_vec *iv, const char *path,
                                const char *name, const char *mask, const char *type,
                                int type_id, int anomalous, int class_id)
{
    uf_dataset_item it = {0};
    it.path = arena_strdup(ds, path);
    it.name = arena_strdup(ds, name);
    it.mask_path = mask ? arena_strdup(ds, mask) : NULL;
    if (!it.path || !it.name || (mask && !it.mask_path)) return nomem();
    it.type = type;
    it.type_id = type_id;
    it.anomalous = anomalous;
    it.class_id = class_id;
    it.image_id = ds->n_images;
    uf_status s = item_push(iv, &it);
    if (s == UF_OK) ds->n_images++;
    return s;
}

/* Scan one category folder dir (display names prefixed by rel, e.g. "bottle/") into c.
 *
 * MVTec AD:  dir/train/good/NNN.png, dir/test/<type>/NNN.png, dir/ground_truth/<type>/NNN_mask.png
 * BTAD:      dir/train/ok/NNNN.bmp, dir/test/{ok,ko}/NNNN.bmp, dir/ground_truth/ko/NNNN.png|bmp
 * folder:    images directly in dir/train/ are accepted as well.
 * The normal test folder ("good" or "ok") becomes type 0 "good"; every other test folder
 * that holds at least one image is a defect type, in bytewise order (an empty folder would
 * otherwise count as a cluster with no members in the clustering task). Items get
 * consecutive image ids: train first, then test in type order. A missing train/ or test/,
 * or a split without images, is an error: evaluating without them would be meaningless. */
static uf_status scan_defect_category(uf_dataset *ds, const char *dir, const char *rel,
                                      int cat_index, ds_cat *c)
{
    uf_status s = UF_OK;
    char *train = NULL, *train_imgs = NULL, *test = NULL, *p = NULL, *m = NULL;
    char *tdir = NULL, *gdir = NULL;
    name_list imgs = {0}, tdirs = {0}, timgs = {0};
    item_vec tr = {0}, te = {0};
    mask_index mi = {0};
    int *tid = NULL; /* [tdirs.n] type id of each test folder, -1 if it holds no image */

    /* train: train/good, else train/ok (BTAD), else train/ itself */
    if (!(train = xprintf("%s/train", dir))) goto oom;
    if (!is_dir(train)) {
        s = uf__err(UF_ERR_FORMAT, "%s: no train/ folder (expected %s/train/good/)", dir, dir);
        goto done;
    }
    const char *sub = "good";
    if (!(train_imgs = xprintf("%s/good", train))) goto oom;
    if (!is_dir(train_imgs)) {
        free(train_imgs);
        sub = "ok";
        if (!(train_imgs = xprintf("%s/ok", train))) goto oom;
        if (!is_dir(train_imgs)) {
            free(train_imgs);
            sub = NULL;
            if (!(train_imgs = strdup(train))) goto oom;
        }
    }
    if ((s = list_dir(train_imgs, LIST_IMAGES, &imgs)) != UF_OK) goto done;
    if (imgs.n == 0) {
        char exts[96];
        s = uf__err(UF_ERR_FORMAT, "%s: no training images (%s)", train_imgs,
                    image_exts_text(exts));
        goto done;
    }
    for (size_t i = 0; i < imgs.n; i++) {
        free(p);
        free(m);
        m = NULL;
        p = xprintf("%s/%s", train_imgs, imgs.v[i]);
        m = sub ? xprintf("%strain/%s/%s", rel, sub, imgs.v[i])
                : xprintf("%strain/%s", rel, imgs.v[i]);
        if (!p || !m) goto oom;
        if ((s = push_file_item(ds, &tr, p, m, NULL, "good", 0, 0, cat_index)) != UF_OK)
            goto done;
    }
    names_free(&imgs);

    /* test: test/<type>/ folders; images directly in test/ have no label */
    if (!(test = xprintf("%s/test", dir))) goto oom;
    if (!is_dir(test)) {
        s = uf__err(UF_ERR_FORMAT, "%s: no test/ folder (expected %s/test/<type>/)", dir, dir);
        goto done;
    }
    if ((s = list_dir(test, LIST_IMAGES, &imgs)) != UF_OK) goto done;
    if (imgs.n) {
        s = uf__err(UF_ERR_FORMAT,
                    "%s: holds images directly (%s); put them in test/good/ or "
                    "test/<defect type>/",
                    test, imgs.v[0]);
        goto done;
    }
    if ((s = list_dir(test, LIST_DIRS, &tdirs)) != UF_OK) goto done;
    /* type list: "good", then every defect folder that holds images (bytewise) */
    tid = malloc((tdirs.n + 1) * sizeof *tid);
    c->types = malloc((tdirs.n + 1) * sizeof *c->types);
    if (!tid || !c->types) goto oom;
    c->types[0] = "good";
    c->n_types = 1;
    for (size_t t = 0; t < tdirs.n; t++) {
        free(tdir);
        if (!(tdir = xprintf("%s/%s", test, tdirs.v[t]))) goto oom;
        names_free(&timgs);
        if ((s = list_dir(tdir, LIST_IMAGES, &timgs)) != UF_OK) goto done;
        tid[t] = -1;
        if (timgs.n == 0) continue;
        if (is_normal_type(tdirs.v[t])) {
            tid[t] = 0;
        } else {
            tid[t] = c->n_types;
            if (!(c->types[c->n_types++] = arena_strdup(ds, tdirs.v[t]))) goto oom;
        }
    }
    /* items: normal folders first, then the defect types in order */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t t = 0; t < tdirs.n; t++) {
            if (tid[t] < 0 || (pass == 0) != (tid[t] == 0)) continue;
            free(tdir);
            free(gdir);
            gdir = NULL;
            tdir = xprintf("%s/%s", test, tdirs.v[t]);
            gdir = xprintf("%s/ground_truth/%s", dir, tdirs.v[t]);
            if (!tdir || !gdir) goto oom;
            names_free(&timgs);
            mask_index_free(&mi);
            if ((s = list_dir(tdir, LIST_IMAGES, &timgs)) != UF_OK) goto done;
            if ((s = mask_index_build(gdir, &mi)) != UF_OK) goto done;
            for (size_t i = 0; i < timgs.n; i++) {
                const char *mf = mask_for(&mi, timgs.v[i]);
                free(p);
                free(m);
                m = NULL;
                p = xprintf("%s/%s", tdir, timgs.v[i]);
                m = mf ? xprintf("%s/%s", gdir, mf) : NULL;
                if (!p || (mf && !m)) goto oom;
                char *nm = xprintf("%stest/%s/%s", rel, tdirs.v[t], timgs.v[i]);
                if (!nm) goto oom;
                s = push_file_item(ds, &te, p, nm, m, c->types[tid[t]], tid[t], tid[t] != 0,
                                   cat_index);
                free(nm);
                if (s != UF_OK) goto done;
            }
        }
    }
    if (te.n == 0) {
        char exts[96];
        s = uf__err(UF_ERR_FORMAT, "%s: no test images in test/<type>/ folders (%s)", test,
                    image_exts_text(exts));
        goto done;
    }
    set_splits(c, &tr, &te);
    goto done;
oom:
    s = nomem();
done:
    free(train);
    free(train_imgs);
    free(test);
    free(p);
    free(m);
    free(tdir);
    free(gdir);
    free(tid);
    names_free(&imgs);
    names_free(&tdirs);
    names_free(&timgs);
    mask_index_free(&mi);
    free(tr.v);
    free(te.v);
    return s;
}

/* A folder is one category when it holds train/ or test/. */
static int is_category_dir(const char *dir)
{
    char *a = xprintf("%s/train", dir), *b = xprintf("%s/test", dir);
    int r = (a && is_dir(a)) || (b && is_dir(b));
    free(a);
    free(b);
    return r;
}

/* MVTec/BTAD (single = 0): the root is one category if it holds train/ or test/, else
 * every subfolder that does is a category (others, e.g. a license folder, are skipped);
 * folder (single = 1): the root is the category. */
static uf_status open_defect(uf_dataset *ds, int single)
{
    uf_status s;
    ds_cat *c;
    if (single || is_category_dir(ds->root)) {
        if ((s = add_category(ds, &c)) != UF_OK) return s;
        if (!(c->name = root_name(ds))) return nomem();
        return scan_defect_category(ds, ds->root, "", 0, c);
    }
    name_list dirs;
    if ((s = list_dir(ds->root, LIST_DIRS, &dirs)) != UF_OK) return s;
    for (size_t i = 0; i < dirs.n && s == UF_OK; i++) {
        char *d = xprintf("%s/%s", ds->root, dirs.v[i]);
        char *rel = xprintf("%s/", dirs.v[i]);
        if (!d || !rel) s = nomem();
        else if (is_category_dir(d)) {
            if ((s = add_category(ds, &c)) == UF_OK) {
                if (!(c->name = arena_strdup(ds, dirs.v[i]))) s = nomem();
                else s = scan_defect_category(ds, d, rel, ds->n_cats - 1, c);
            }
        }
        free(d);
        free(rel);
    }
    names_free(&dirs);
    if (s == UF_OK && ds->n_cats == 0)
        s = uf__err(UF_ERR_FORMAT,
                    "%s: no category folders (expected %s/<category>/train/good/ and "
                    "test/<type>/)",
                    ds->root, ds->root);
    return s;
}

/* ---- MTD ----------------------------------------------------------------------------------- */

/* Image files of an MTD Imgs folder (every image that is not a .png mask), and its .png
 * files (the masks), both sorted. */
static uf_status mtd_list(const char *dir, name_list *imgs, name_list *pngs)
{
    name_list all;
    memset(imgs, 0, sizeof *imgs);
    memset(pngs, 0, sizeof *pngs);
    uf_status s = list_dir(dir, LIST_IMAGES, &all);
    for (size_t i = 0; s == UF_OK && i < all.n; i++)
        s = names_push(ext_is(all.v[i], "png") ? pngs : imgs, all.v[i]);
    names_free(&all);
    if (s != UF_OK) {
        names_free(imgs);
        names_free(pngs);
    }
    return s;
}

/* Add the items of an MTD Imgs folder: image i goes to `test` when (i % 5 == 0) or when
 * the folder is defective (every_test), else to `train`. */
static uf_status mtd_add(uf_dataset *ds, const char *folder, const char *dir, int every_test,
                         const char *type, int type_id, item_vec *train, item_vec *test)
{
    name_list imgs, pngs;
    uf_status s = mtd_list(dir, &imgs, &pngs);
    if (s != UF_OK) return s;
    if (imgs.n == 0) {
        s = uf__err(UF_ERR_FORMAT, "%s: no images (.jpg)", dir);
        goto done;
    }
    for (size_t i = 0; i < imgs.n && s == UF_OK; i++) {
        const char *f = imgs.v[i];
        size_t len = (size_t)(ext_of(f) - f) - 1;
        char *png = xprintf("%.*s.png", (int)len, f);
        char *p = xprintf("%s/%s", dir, f);
        char *nm = xprintf("%s/Imgs/%s", folder, f);
        int has_mask = png && names_find(&pngs, png) >= 0;
        char *mp = has_mask ? xprintf("%s/%s", dir, png) : NULL;
        if (!png || !p || !nm || (has_mask && !mp)) s = nomem();
        else {
            int to_test = every_test || i % 5 == 0;
            s = push_file_item(ds, to_test ? test : train, p, nm, mp, type, type_id,
                               type_id != 0, 0);
        }
        free(png);
        free(p);
        free(nm);
        free(mp);
    }
done:
    names_free(&imgs);
    names_free(&pngs);
    return s;
}

/* MTD (Huang et al. 2020): the split of the literature, train on 80 % of MT_Free and test
 * on the rest plus every defective image, made reproducible by sorting the MT_Free names
 * bytewise and sending index i % 5 == 0 to test. Folders not starting with "MT_" are
 * ignored; an MT_<Defect> folder without Imgs/ is an error (a damaged copy). */
static uf_status open_mtd(uf_dataset *ds)
{
    uf_status s;
    ds_cat *c;
    item_vec tr = {0}, te = {0};
    name_list dirs = {0};
    char *free_dir = xprintf("%s/MT_Free/Imgs", ds->root);
    if (!free_dir) return nomem();
    if (!is_dir(free_dir)) {
        s = uf__err(UF_ERR_FORMAT, "%s: no MT_Free/Imgs folder (not the MTD layout)", ds->root);
        free(free_dir);
        return s;
    }
    if ((s = add_category(ds, &c)) != UF_OK) goto done;
    if (!(c->name = arena_strdup(ds, "mtd"))) goto oom;
    if ((s = list_dir(ds->root, LIST_DIRS, &dirs)) != UF_OK) goto done;
    if (!(c->types = malloc((dirs.n + 1) * sizeof *c->types))) goto oom;
    c->types[0] = "good";
    c->n_types = 1;
    if ((s = mtd_add(ds, "MT_Free", free_dir, 0, "good", 0, &tr, &te)) != UF_OK) goto done;
    for (size_t i = 0; i < dirs.n; i++) {
        const char *d = dirs.v[i];
        if (strncmp(d, "MT_", 3) || !strcmp(d, "MT_Free")) continue;
        if (!d[3]) continue; /* "MT_": no defect name */
        char *imgs = xprintf("%s/%s/Imgs", ds->root, d);
        if (!imgs) goto oom;
        if (!is_dir(imgs)) {
            s = uf__err(UF_ERR_FORMAT, "%s/%s: no Imgs folder", ds->root, d);
            free(imgs);
            goto done;
        }
        const char *type = arena_strdup(ds, d + 3);
        if (!type) {
            free(imgs);
            goto oom;
        }
        c->types[c->n_types] = type;
        s = mtd_add(ds, d, imgs, 1, type, c->n_types, &tr, &te);
        c->n_types++;
        free(imgs);
        if (s != UF_OK) goto done;
    }
    if (tr.n == 0) {
        s = uf__err(UF_ERR_FORMAT, "%s: too few MT_Free images for a train split", free_dir);
        goto done;
    }
    /* test order: MT_Free's test images, then the defect folders bytewise = type order */
    set_splits(c, &tr, &te);
    goto done;
oom:
    s = nomem();
done:
    free(free_dir);
    names_free(&dirs);
    free(tr.v);
    free(te.v);
    return s;
}

/* ---- list files ----------------------------------------------------------------------------- */

/* One parsed line of a list file. */
typedef struct list_entry {
    const char *path, *name, *mask, *label; /* arena; mask NULL if none; label NULL = normal */
    int tid;                                /* type id, set by open_list                   */
} list_entry;

/* Split line[0..len) (no newline) into at most 3 fields; returns the field count, or 4 if
 * there are more. Fields are pointers into line, which is modified: NULs are written, at
 * most at line[len] (the caller provides that byte). */
static int split_fields(char *line, size_t len, char *f[3])
{
    int tab = memchr(line, '\t', len) != NULL, n = 0;
    char *p = line, *end = line + len;
    while (p < end) {
        if (tab) {
            char *q = memchr(p, '\t', (size_t)(end - p));
            if (!q) q = end;
            /* trim spaces around a tab-separated field */
            char *a = p, *b = q;
            while (a < b && (*a == ' ' || *a == '\r')) a++;
            while (b > a && (b[-1] == ' ' || b[-1] == '\r')) b--;
            if (b > a || q < end) {
                if (n == 3) return 4;
                *b = '\0';
                f[n++] = a;
            }
            p = q + 1;
        } else {
            while (p < end && (*p == ' ' || *p == '\r')) p++;
            if (p == end) break;
            char *q = p;
            while (q < end && *q != ' ' && *q != '\r') q++;
            if (n == 3) return 4;
            *q = '\0';
            f[n++] = p;
            p = q + 1;
        }
    }
    return n;
}

/* Read a list file into entries (arena strings). is_train: label optional and normal.
 * The whole file is read (at most MAX_LIST_BYTES) and parsed in place; at most one entry
 * per line is allocated, so memory is bounded by the file size. Every path is checked to
 * exist now, so a typo fails at open time and not hours into an evaluation. */
static uf_status read_list(uf_dataset *ds, const char *file, int is_train, list_entry **out,
                           size_t *n_out)
{
    uint8_t *buf;
    size_t len;
    *out = NULL;
    *n_out = 0;
    uf_status s = uf__read_file(file, MAX_LIST_BYTES, &buf, &len);
    if (s != UF_OK) return s;
    /* one spare byte, so a field ending at the end of the file can be NUL-terminated */
    uint8_t *nb = realloc(buf, len + 1);
    if (!nb) {
        free(buf);
        return nomem();
    }
    buf = nb;
    buf[len] = '\0';
    if (memchr(buf, '\0', len)) {
        free(buf);
        return uf__err(UF_ERR_FORMAT, "%s: holds a NUL byte (not a text list)", file);
    }
    /* one entry per line at most */
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) lines += buf[i] == '\n';
    list_entry *e = calloc(lines, sizeof *e);
    if (!e) {
        free(buf);
        return nomem();
    }
    size_t n = 0, lineno = 0;
    char *p = (char *)buf, *end = p + len;
    while (p < end && s == UF_OK) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *le = nl ? nl : end;
        lineno++;
        char *q = p;
        while (q < le && (*q == ' ' || *q == '\t' || *q == '\r')) q++;
        if (q < le && *q != '#') {
            char *f[3] = {0};
            int nf = split_fields(p, (size_t)(le - p), f);
            if (nf > 3) {
                s = uf__err(UF_ERR_FORMAT,
                            "%s:%zu: more than 3 fields (path label mask); separate them with "
                            "tabs if a path holds spaces",
                            file, lineno);
                break;
            }
            if (nf == 0 || !*f[0]) {
                s = uf__err(UF_ERR_FORMAT, "%s:%zu: empty path", file, lineno);
                break;
            }
            const char *label = nf >= 2 ? f[1] : NULL;
            if (!is_train && !label) {
                s = uf__err(UF_ERR_FORMAT, "%s:%zu: missing label (0 normal, 1 anomalous)",
                            file, lineno);
                break;
            }
            if (label && (!*label || strlen(label) > MAX_LABEL_LEN || strpbrk(label, " \t"))) {
                s = uf__err(UF_ERR_FORMAT, "%s:%zu: bad label", file, lineno);
                break;
            }
            if (label && (!strcmp(label, "0") || !strcmp(label, "good"))) label = NULL;
            if (label && is_train) {
                s = uf__err(UF_ERR_FORMAT,
                            "%s:%zu: label %s: the train list may only hold normal images",
                            file, lineno, label);
                break;
            }
            const char *mask = nf == 3 && *f[2] && strcmp(f[2], "-") ? f[2] : NULL;
            list_entry *x = &e[n];
            x->name = arena_strdup(ds, f[0]);
            x->path = f[0][0] == '/' ? x->name : arena_printf(ds, "%s/%s", ds->root, f[0]);
            x->label = label ? arena_strdup(ds, !strcmp(label, "1") ? "anomalous" : label)
                             : NULL;
            x->mask = !mask          ? NULL
                      : mask[0] == '/' ? arena_strdup(ds, mask)
                                       : arena_printf(ds, "%s/%s", ds->root, mask);
            if (!x->name || !x->path || (label && !x->label) || (mask && !x->mask)) {
                s = nomem();
                break;
            }
            if (!is_file(x->path)) {
                s = uf__err(UF_ERR_IO, "%s:%zu: %s: no such file", file, lineno, x->path);
                break;
            }
            if (x->mask && !is_file(x->mask)) {
                s = uf__err(UF_ERR_IO, "%s:%zu: %s: no such mask file", file, lineno, x->mask);
                break;
            }
            n++;
        }
        p = le + 1;
    }
    free(buf);
    if (s == UF_OK && n == 0) s = uf__err(UF_ERR_FORMAT, "%s: lists no image", file);
    if (s != UF_OK) {
        free(e);
        return s;
    }
    *out = e;
    *n_out = n;
    return UF_OK;
}

static uf_status open_list(uf_dataset *ds)
{
    uf_status s;
    ds_cat *c;
    list_entry *tr = NULL, *te = NULL;
    size_t ntr = 0, nte = 0;
    name_list labels = {0};
    item_vec tv = {0}, ev = {0};
    size_t *first = NULL; /* [n_types + 1] start of each type in the test array */
    char *ftr = xprintf("%s/train.txt", ds->root), *fte = xprintf("%s/test.txt", ds->root);
    if (!ftr || !fte) goto oom;
    if ((s = read_list(ds, ftr, 1, &tr, &ntr)) != UF_OK) goto done;
    if ((s = read_list(ds, fte, 0, &te, &nte)) != UF_OK) goto done;
    if ((s = add_category(ds, &c)) != UF_OK) goto done;
    if (!(c->name = root_name(ds))) goto oom;
    /* types: "good", then the distinct labels of anomalous test lines, bytewise */
    for (size_t i = 0; i < nte; i++)
        if (te[i].label && (s = names_push(&labels, te[i].label)) != UF_OK) goto done;
    if (labels.n > 1) qsort(labels.v, labels.n, sizeof *labels.v, cmp_str);
    size_t u = 0;
    for (size_t i = 0; i < labels.n; i++) {
        if (u && !strcmp(labels.v[u - 1], labels.v[i])) {
            free(labels.v[i]);
            continue;
        }
        labels.v[u++] = labels.v[i];
    }
    labels.n = u;
    if (labels.n >= (size_t)INT_MAX) goto oom;
    if (!(c->types = malloc((labels.n + 1) * sizeof *c->types))) goto oom;
    c->types[0] = "good";
    for (size_t i = 0; i < labels.n; i++)
        if (!(c->types[i + 1] = arena_strdup(ds, labels.v[i]))) goto oom;
    c->n_types = (int)labels.n + 1;
    for (size_t i = 0; i < ntr; i++) {
        uf_dataset_item it = {tr[i].path, tr[i].mask, tr[i].name, "good", 0, 0, 0,
                              ds->n_images++};
        if ((s = item_push(&tv, &it)) != UF_OK) goto done;
    }
    /* test: normal lines first, then by type, each in list order (a stable counting sort
       on the type id, so many distinct labels cost no more than a few) */
    if (!(first = calloc((size_t)c->n_types + 1, sizeof *first))) goto oom;
    for (size_t i = 0; i < nte; i++) {
        te[i].tid = te[i].label ? (int)names_find(&labels, te[i].label) + 1 : 0;
        first[te[i].tid + 1]++;
    }
    for (int t = 0; t < c->n_types; t++) first[t + 1] += first[t];
    if (!(ev.v = malloc((nte ? nte : 1) * sizeof *ev.v))) goto oom;
    ev.n = ev.cap = nte;
    for (size_t i = 0; i < nte; i++) {
        int t = te[i].tid;
        uf_dataset_item it = {te[i].path, te[i].mask, te[i].name, c->types[t], t, t != 0, 0, 0};
        ev.v[first[t]++] = it;
    }
    for (size_t i = 0; i < nte; i++) ev.v[i].image_id = ds->n_images++;
    set_splits(c, &tv, &ev);
    goto done;
oom:
    s = nomem();
done:
    free(ftr);
    free(fte);
    free(tr);
    free(te);
    free(first);
    names_free(&labels);
    free(tv.v);
    free(ev.v);
    return s;
}

/* ---- semantic datasets: shared construction ------------------------------------------------- */

/* Finish a semantic dataset from its class names (ds->class_names, ds->n_cats set) and its
 * train and test items in file order (taken over): sort train by class (stable), make one
 * category per class whose train split is its slice. */
static uf_status sem_finish(uf_dataset *ds, item_vec *train, item_vec *test)
{
    int nc = ds->n_cats;
    ds->n_cats = 0;
    ds->cats = calloc((size_t)nc, sizeof *ds->cats);
    size_t *start = calloc((size_t)nc + 1, sizeof *start); /* [nc+1] class offsets */
    size_t *tcount = calloc((size_t)nc, sizeof *tcount);   /* [nc] test images per class */
    ds->sem_train = train->n ? malloc(train->n * sizeof *ds->sem_train) : NULL;
    if (!ds->cats || !start || !tcount || (train->n && !ds->sem_train)) {
        free(start);
        free(tcount);
        return nomem();
    }
    ds->n_cats = nc;
    for (size_t i = 0; i < train->n; i++) start[train->v[i].class_id + 1]++;
    for (int k = 0; k < nc; k++) start[k + 1] += start[k];
    size_t *pos = tcount; /* reuse as write positions, then recount */
    for (int k = 0; k < nc; k++) pos[k] = start[k];
    for (size_t i = 0; i < train->n; i++) ds->sem_train[pos[train->v[i].class_id]++] = train->v[i];
    memset(tcount, 0, (size_t)nc * sizeof *tcount);
    for (size_t i = 0; i < test->n; i++) tcount[test->v[i].class_id]++;
    ds->n_sem_train = train->n;
    ds->sem_test = test->v;
    ds->n_sem_test = test->n;
    test->v = NULL;
    for (int k = 0; k < nc; k++) {
        ds_cat *c = &ds->cats[k];
        c->name = ds->class_names[k];
        c->types = ds->class_names;
        c->n_types = nc;
        c->types_shared = 1;
        c->train = ds->sem_train ? ds->sem_train + start[k] : NULL;
        c->n_train = start[k + 1] - start[k];
        c->train_shared = 1;
        c->n_test = ds->n_sem_test;
        c->counts.n_train = c->n_train;
        c->counts.n_test = ds->n_sem_test;
        c->counts.n_test_anomalous = ds->n_sem_test - tcount[k];
    }
    free(start);
    free(tcount);
    if (train->n == 0) return uf__err(UF_ERR_FORMAT, "%s: no training images", ds->root);
    if (ds->n_sem_test == 0) return uf__err(UF_ERR_FORMAT, "%s: no test images", ds->root);
    return UF_OK;
}

/* Set ds->class_names (n of them) from a static table. */
static uf_status set_class_names(uf_dataset *ds, const char *const *names, int n)
{
    ds->class_names = malloc((size_t)n * sizeof *ds->class_names);
    if (!ds->class_names) return nomem();
    for (int i = 0; i < n; i++)
        if (!(ds->class_names[i] = arena_strdup(ds, names[i]))) return nomem();
    ds->n_cats = n;
    return UF_OK;
}

/* Class names from a text file of one name per line (blank lines ignored, spaces trimmed);
 * there must be exactly n. A missing file keeps the defaults. */
static uf_status read_class_names(uf_dataset *ds, const char *file, const char *const *defaults,
                                  int n)
{
    if (!is_file(file)) return set_class_names(ds, defaults, n);
    uint8_t *buf;
    size_t len;
    uf_status s = uf__read_file(file, MAX_NAMES_BYTES, &buf, &len);
    if (s != UF_OK) return s;
    ds->class_names = calloc((size_t)n, sizeof *ds->class_names);
    if (!ds->class_names) {
        free(buf);
        return nomem();
    }
    int k = 0;
    char *p = (char *)buf, *end = p + len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *le = nl ? nl : end, *a = p, *b = le;
        while (a < b && isspace((unsigned char)*a)) a++;
        while (b > a && isspace((unsigned char)b[-1])) b--;
        if (b > a) {
            if (k == n || memchr(a, '\0', (size_t)(b - a))) {
                k = n + 1;
                break;
            }
            if (!(ds->class_names[k++] = arena_strndup(ds, a, (size_t)(b - a)))) {
                free(buf);
                return nomem();
            }
        }
        p = le + 1;
    }
    free(buf);
    if (k != n)
        return uf__err(UF_ERR_FORMAT, "%s: expected %d class names, one per line, found %s%d",
                       file, n, k > n ? "more than " : "", k > n ? n : k);
    ds->n_cats = n;
    return UF_OK;
}

/* Allocate the in-memory store for n images of rec bytes each. */
static uf_status store_alloc(uf_dataset *ds, size_t n, size_t rec)
{
    size_t bytes;
    if (!uf__mul_ok(n, rec, &bytes))
        return uf__err(UF_ERR_LIMIT, "%s: dataset too large", ds->root);
    ds->pix = malloc(bytes ? bytes : 1);
    if (!ds->pix) return uf__err(UF_ERR_NOMEM, "%s: cannot allocate %zu bytes", ds->root, bytes);
    ds->rec_bytes = rec;
    return UF_OK;
}

/* An in-memory item. */
static uf_status push_mem_item(uf_dataset *ds, item_vec *iv, const char *file, size_t record,
                               int cls, size_t image_id)
{
    const char *b = strrchr(file, '/');
    uf_dataset_item it = {0};
    it.name = arena_printf(ds, "%s#%zu", b ? b + 1 : file, record);
    if (!it.name) return nomem();
    it.type = ds->class_names[cls];
    it.type_id = cls;
    it.class_id = cls;
    it.image_id = image_id;
    return item_push(iv, &it);
}

/* ---- CIFAR-10 / CIFAR-100 binary batches -------------------------------------------------- */

static const char *const cifar10_names[10] = {"airplane", "automobile", "bird",  "cat",  "deer",
                                              "dog",      "frog",       "horse", "ship", "truck"};
static const char *const cifar100_coarse[20] = {
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores", "medium_mammals", "non-insect_invertebrates", "people",
    "reptiles", "small_mammals", "trees", "vehicles_1", "vehicles_2"};

#define CIFAR_PIXELS 3072 /* [3][32][32] */

/* CIFAR binary version: each file is a sequence of records
 *   CIFAR-10:  [label (1 byte)][R plane 1024][G plane 1024][B plane 1024]
 *   CIFAR-100: [coarse label][fine label][R][G][B]
 * with no header, so the only integrity check available is that the file size is an exact
 * multiple of the record size and that labels are in range. The pixels are copied into one
 * [n][3072] store (the label bytes dropped) and the files unmapped again. */
static uf_status open_cifar(uf_dataset *ds, int hundred)
{
    const int label_bytes = hundred ? 2 : 1, n_classes = hundred ? 20 : 10;
    const size_t rec = (size_t)label_bytes + CIFAR_PIXELS;
    const char *probe = hundred ? "test.bin" : "test_batch.bin";
    const char *subdir = hundred ? "cifar-100-binary" : "cifar-10-batches-bin";
    char *files[6] = {0}; /* train files then the test file */
    int nfiles = hundred ? 2 : 6, ntrainf = nfiles - 1;
    size_t counts[6] = {0}; /* records per file */
    item_vec tr = {0}, te = {0};
    char *dir = NULL, *meta = NULL;
    uf_status s = UF_OK;

    char *p = xprintf("%s/%s", ds->root, probe);
    if (!p) return nomem();
    if (is_file(p)) dir = strdup(ds->root);
    else dir = xprintf("%s/%s", ds->root, subdir);
    free(p);
    if (!dir) return nomem();
    for (int i = 0; i < nfiles; i++) {
        if (hundred) files[i] = xprintf("%s/%s", dir, i == 0 ? "train.bin" : "test.bin");
        else if (i < 5) files[i] = xprintf("%s/data_batch_%d.bin", dir, i + 1);
        else files[i] = xprintf("%s/test_batch.bin", dir);
        if (!files[i]) goto oom;
    }
    meta = xprintf("%s/%s", dir, hundred ? "coarse_label_names.txt" : "batches.meta.txt");
    if (!meta) goto oom;
    if ((s = read_class_names(ds, meta, hundred ? cifar100_coarse : cifar10_names, n_classes)) !=
        UF_OK)
        goto done;

    /* sizes first: the store is allocated from what the files can hold */
    size_t total = 0;
    for (int i = 0; i < nfiles; i++) {
        struct stat st;
        errno = 0;
        if (stat(files[i], &st) != 0 || !S_ISREG(st.st_mode)) {
            s = uf__err(UF_ERR_IO, "%s: cannot open: %s", files[i],
                        errno ? strerror(errno) : "not a regular file");
            goto done;
        }
        if (st.st_size <= 0 || (uint64_t)st.st_size % rec != 0 ||
            (uint64_t)st.st_size > (uint64_t)SIZE_MAX) {
            s = uf__err(UF_ERR_FORMAT,
                        "%s: size %lld is not a positive multiple of the %zu-byte CIFAR-%d "
                        "record (truncated?)",
                        files[i], (long long)st.st_size, rec, hundred ? 100 : 10);
            goto done;
        }
        counts[i] = (size_t)st.st_size / rec;
        if (!uf__add_ok(total, counts[i], &total)) goto oom;
    }
    if ((s = store_alloc(ds, total, CIFAR_PIXELS)) != UF_OK) goto done;
    ds->img_w = ds->img_h = 32;
    ds->img_planar_rgb = 1;

    size_t id = 0;
    for (int i = 0; i < nfiles; i++) {
        const uint8_t *buf;
        size_t len;
        bool mapped;
        if ((s = uf__map_file(files[i], SIZE_MAX, &buf, &len, &mapped)) != UF_OK) goto done;
        if (len != counts[i] * rec) {
            uf__unmap_file(buf, len, mapped);
            s = uf__err(UF_ERR_FORMAT, "%s: changed while being read", files[i]);
            goto done;
        }
        for (size_t r = 0; r < counts[i] && s == UF_OK; r++, id++) {
            const uint8_t *recp = buf + r * rec;
            int cls = recp[0];
            if (hundred && recp[1] >= 100) {
                s = uf__err(UF_ERR_FORMAT, "%s: record %zu: fine label %d out of range 0..99",
                            files[i], r, recp[1]);
                break;
            }
            if (cls >= n_classes) {
                s = uf__err(UF_ERR_FORMAT, "%s: record %zu: label %d out of range 0..%d",
                            files[i], r, cls, n_classes - 1);
                break;
            }
            memcpy(ds->pix + id * CIFAR_PIXELS, recp + label_bytes, CIFAR_PIXELS);
            s = push_mem_item(ds, i < ntrainf ? &tr : &te, files[i], r, cls, id);
        }
        uf__unmap_file(buf, len, mapped);
        if (s != UF_OK) goto done;
    }
    ds->n_images = total;
    s = sem_finish(ds, &tr, &te);
    goto done;
oom:
    s = nomem();
done:
    for (int i = 0; i < nfiles; i++) free(files[i]);
    free(dir);
    free(meta);
    free(tr.v);
    free(te.v);
    return s;
}

/* ---- MNIST / Fashion-MNIST idx files ------------------------------------------------------ */

static const char *const mnist_names[10] = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
static const char *const fashion_names[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress",
                                              "Coat",        "Sandal",  "Shirt",    "Sneaker",
                                              "Bag",         "Ankle boot"};

/* An open idx file (plain or gzip'ed) whose header has been checked. */
typedef struct idx_file {
    gzFile gz;
    const char *path;
    uint32_t dims[3];  /* [ndims] */
    int ndims;
    size_t payload;    /* product of dims: bytes after the header */
} idx_file;

static void idx_close(idx_file *f)
{
    if (f->gz) gzclose(f->gz);
    f->gz = NULL;
}

/* gzread of exactly n bytes into dst (in chunks: gzread counts in unsigned int); returns
 * the bytes read, or (size_t)-1 on a zlib error. */
static size_t gz_read_all(gzFile gz, uint8_t *dst, size_t n)
{
    size_t got = 0;
    while (got < n) {
        size_t want = n - got > (1u << 30) ? (1u << 30) : n - got;
        int r = gzread(gz, dst + got, (unsigned)want);
        if (r < 0) return (size_t)-1;
        if (r == 0) break;
        got += (size_t)r;
    }
    return got;
}

static uf_status gz_error(idx_file *f)
{
    int errnum = 0;
    const char *m = gzerror(f->gz, &errnum);
    if (errnum == Z_ERRNO)
        return uf__err(UF_ERR_IO, "%s: read failed: %s", f->path, strerror(errno));
    /* zlib's message starts with "<path>: "; keep only what follows */
    if (errnum == Z_BUF_ERROR)
        return uf__err(UF_ERR_FORMAT, "%s: truncated (the gzip stream ends early)", f->path);
    size_t pl = strlen(f->path);
    if (m && !strncmp(m, f->path, pl) && !strncmp(m + pl, ": ", 2)) m += pl + 2;
    return uf__err(UF_ERR_FORMAT, "%s: corrupt gzip data (%s)", f->path, m && *m ? m : "?");
}

/* Open an idx file of ndims dimensions (magic 0x0000080<ndims>: unsigned bytes), read and
 * check its header. The idx format (LeCun's MNIST page): a big-endian 32-bit magic whose
 * third byte is the element type (0x08 = unsigned byte) and fourth the number of
 * dimensions, then one big-endian 32-bit size per dimension, then the data row-major.
 * zlib's gzopen reads both gzip'ed and plain files (plain ones "transparently"), so one code
 * path serves both; gzdirect() tells which it was, which selects the size check. */
static uf_status idx_open(const char *path, int ndims, idx_file *f)
{
    memset(f, 0, sizeof *f);
    f->path = path;
    f->ndims = ndims;
    struct stat st;
    errno = 0;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return uf__err(UF_ERR_IO, "%s: cannot open: %s", path,
                       errno ? strerror(errno) : "not a regular file");
    f->gz = gzopen(path, "rb"); /* reads plain files as they are ("transparent") */
    if (!f->gz) return uf__err(UF_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    uint8_t hdr[16]; /* magic + up to 3 dims */
    size_t hlen = 4 + 4 * (size_t)ndims;
    size_t got = gz_read_all(f->gz, hdr, hlen);
    uf_status s;
    if (got == (size_t)-1) {
        s = gz_error(f);
        goto fail;
    }
    if (got < hlen) {
        s = uf__err(UF_ERR_FORMAT, "%s: truncated header (%zu of %zu bytes)", path, got, hlen);
        goto fail;
    }
    uint32_t magic = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 |
                     hdr[3];
    uint32_t want = 0x00000800u | (uint32_t)ndims;
    if (magic != want) {
        s = uf__err(UF_ERR_FORMAT, "%s: bad magic 0x%08x (expected 0x%08x: an idx%d-ubyte file)",
                    path, magic, want, ndims);
        goto fail;
    }
    size_t payload = 1;
    for (int i = 0; i < ndims; i++) {
        const uint8_t *d = hdr + 4 + 4 * i;
        f->dims[i] = (uint32_t)d[0] << 24 | (uint32_t)d[1] << 16 | (uint32_t)d[2] << 8 | d[3];
        if (f->dims[i] == 0) {
            s = uf__err(UF_ERR_FORMAT, "%s: dimension %d is 0", path, i);
            goto fail;
        }
        if (i > 0 && f->dims[i] > MAX_IDX_SIDE) {
            s = uf__err(UF_ERR_LIMIT, "%s: image side %u above the limit %u", path, f->dims[i],
                        MAX_IDX_SIDE);
            goto fail;
        }
        if (!uf__mul_ok(payload, f->dims[i], &payload) || payload > MAX_IDX_BYTES) {
            s = uf__err(UF_ERR_LIMIT, "%s: header declares more than %zu bytes", path,
                        MAX_IDX_BYTES);
            goto fail;
        }
    }
    f->payload = payload;
    /* the file must be able to hold what the header declares, before we allocate for it */
    uint64_t fsize = (uint64_t)st.st_size, need = (uint64_t)hlen + payload;
    if (gzdirect(f->gz)) {
        if (fsize != need) {
            s = uf__err(UF_ERR_FORMAT, "%s: size %llu, but its header declares %llu bytes%s",
                        path, (unsigned long long)fsize, (unsigned long long)need,
                        fsize < need ? " (truncated?)" : "");
            goto fail;
        }
    } else if (need > fsize * GZ_MAX_RATIO + 1024) {
        s = uf__err(UF_ERR_FORMAT,
                    "%s: header declares %llu bytes, more than %llu compressed bytes can hold "
                    "(truncated?)",
                    path, (unsigned long long)need, (unsigned long long)fsize);
        goto fail;
    }
    return UF_OK;
fail:
    idx_close(f);
    return s;
}

/* Read the payload into dst[f->payload] and check that nothing follows it. */
static uf_status idx_read(idx_file *f, uint8_t *dst)
{
    size_t got = gz_read_all(f->gz, dst, f->payload);
    if (got == (size_t)-1) return gz_error(f);
    if (got < f->payload)
        return uf__err(UF_ERR_FORMAT,
                       "%s: truncated: %zu of the %zu data bytes its header declares", f->path,
                       got, f->payload);
    uint8_t extra;
    size_t more = gz_read_all(f->gz, &extra, 1);
    if (more == (size_t)-1) return gz_error(f);
    if (more)
        return uf__err(UF_ERR_FORMAT, "%s: data beyond the %zu bytes its header declares",
                       f->path, f->payload);
    /* zlib reports a gzip stream that stops early (a cut download: trailer or last block
       missing) not through gzread's return value but as a pending Z_BUF_ERROR */
    int errnum = Z_OK;
    gzerror(f->gz, &errnum);
    if (errnum != Z_OK) return gz_error(f);
    return UF_OK;
}

/* Path of idx file `base` ("train-images-idx3-ubyte") in dir: the plain name, with .gz, or
 * spelled with a dot ("train-images.idx3-ubyte"), or NULL (malloc'd). */
static char *idx_find(const char *dir, const char *base)
{
    char alt[64];
    snprintf(alt, sizeof alt, "%s", base);
    char *dash = strstr(alt, "-idx");
    if (dash) *dash = '.';
    const char *names[2] = {base, alt};
    for (int k = 0; k < 2; k++) {
        for (int gz = 0; gz < 2; gz++) {
            char *p = xprintf("%s/%s%s", dir, names[k], gz ? ".gz" : "");
            if (!p || is_file(p)) return p;
            free(p);
        }
    }
    return NULL;
}

/* MNIST / Fashion-MNIST: four idx files. All four headers are checked (magics, counts of
 * images against labels, train and test image sizes equal) before the single [n][h][w]
 * store is allocated, then the payloads are read straight into it. */
static uf_status open_mnist(uf_dataset *ds, int fashion)
{
    static const char *const bases[4] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
    char *paths[4] = {0};
    idx_file f[4] = {{0}}; /* train images, train labels, test images, test labels */
    uint8_t *labels = NULL; /* [n_train + n_test] */
    item_vec tr = {0}, te = {0};
    uf_status s;
    char *raw = xprintf("%s/raw", ds->root);
    if (!raw) return nomem();
    for (int i = 0; i < 4; i++) {
        paths[i] = idx_find(ds->root, bases[i]);
        if (!paths[i]) paths[i] = idx_find(raw, bases[i]);
        if (!paths[i]) {
            s = uf__err(UF_ERR_IO, "%s: no %s[.gz] (nor in raw/)", ds->root, bases[i]);
            goto done;
        }
    }
    if ((s = set_class_names(ds, fashion ? fashion_names : mnist_names, 10)) != UF_OK) goto done;
    for (int i = 0; i < 4; i++)
        if ((s = idx_open(paths[i], i % 2 ? 1 : 3, &f[i])) != UF_OK) goto done;
    for (int i = 0; i < 4; i += 2) {
        if (f[i].dims[0] != f[i + 1].dims[0]) {
            s = uf__err(UF_ERR_FORMAT, "%s holds %u images but %s holds %u labels", paths[i],
                        f[i].dims[0], paths[i + 1], f[i + 1].dims[0]);
            goto done;
        }
    }
    if (f[0].dims[1] != f[2].dims[1] || f[0].dims[2] != f[2].dims[2]) {
        s = uf__err(UF_ERR_FORMAT, "%s: images are %ux%u but those of %s are %ux%u", paths[2],
                    f[2].dims[2], f[2].dims[1], paths[0], f[0].dims[2], f[0].dims[1]);
        goto done;
    }
    size_t ntr = f[0].dims[0], nte = f[2].dims[0], total = ntr + nte;
    ds->img_h = (int)f[0].dims[1];
    ds->img_w = (int)f[0].dims[2];
    if ((s = store_alloc(ds, total, (size_t)ds->img_w * (size_t)ds->img_h)) != UF_OK) goto done;
    if (!(labels = malloc(total))) goto oom;
    if ((s = idx_read(&f[0], ds->pix)) != UF_OK) goto done;
    if ((s = idx_read(&f[1], labels)) != UF_OK) goto done;
    if ((s = idx_read(&f[2], ds->pix + ntr * ds->rec_bytes)) != UF_OK) goto done;
    if ((s = idx_read(&f[3], labels + ntr)) != UF_OK) goto done;
    for (size_t i = 0; i < total; i++) {
        int test = i >= ntr;
        size_t r = test ? i - ntr : i;
        if (labels[i] >= 10) {
            s = uf__err(UF_ERR_FORMAT, "%s: label of image %zu is %d, out of range 0..9",
                        paths[test ? 3 : 1], r, labels[i]);
            goto done;
        }
        if ((s = push_mem_item(ds, test ? &te : &tr, paths[test ? 2 : 0], r, labels[i], i)) !=
            UF_OK)
            goto done;
    }
    ds->n_images = total;
    s = sem_finish(ds, &tr, &te);
    goto done;
oom:
    s = nomem();
done:
    for (int i = 0; i < 4; i++) {
        idx_close(&f[i]);
        free(paths[i]);
    }
    free(raw);
    free(labels);
    free(tr.v);
    free(te.v);
    return s;
}

/* ---- ImageNet-style class folders -------------------------------------------------------- */

/* ImageNet-style class folders (torchvision's ImageFolder layout): classes are the
 * subfolders of train/, in bytewise order (the class index); the test images come from
 * val/ (or test/) subfolders, each of which must name a training class, since a test class
 * without training images could never be "normal" under the one-class protocol. */
static uf_status open_imagefolder(uf_dataset *ds)
{
    uf_status s;
    name_list classes = {0}, vclasses = {0}, imgs = {0};
    item_vec tr = {0}, te = {0};
    char *train = xprintf("%s/train", ds->root), *val = NULL, *d = NULL, *p = NULL, *nm = NULL;
    const char *vname = "val";
    if (!train) return nomem();
    if (!is_dir(train)) {
        s = uf__err(UF_ERR_FORMAT, "%s: no train/ folder (expected train/<class>/)", ds->root);
        goto done;
    }
    if (!(val = xprintf("%s/val", ds->root))) goto oom;
    if (!is_dir(val)) {
        free(val);
        vname = "test";
        if (!(val = xprintf("%s/test", ds->root))) goto oom;
        if (!is_dir(val)) {
            s = uf__err(UF_ERR_FORMAT, "%s: no val/ or test/ folder (expected val/<class>/)",
                        ds->root);
            goto done;
        }
    }
    if ((s = list_dir(train, LIST_DIRS, &classes)) != UF_OK) goto done;
    if (classes.n == 0 || classes.n > MAX_CLASSES) {
        s = uf__err(classes.n ? UF_ERR_LIMIT : UF_ERR_FORMAT,
                    "%s: %zu class folders (expected 1..%d)", train, classes.n, MAX_CLASSES);
        goto done;
    }
    if ((s = list_dir(val, LIST_IMAGES, &imgs)) != UF_OK) goto done;
    if (imgs.n) {
        s = uf__err(UF_ERR_FORMAT, "%s: holds images directly (%s); sort them into %s/<class>/",
                    val, imgs.v[0], vname);
        goto done;
    }
    names_free(&imgs);
    if ((s = list_dir(val, LIST_DIRS, &vclasses)) != UF_OK) goto done;
    for (size_t i = 0; i < vclasses.n; i++)
        if (names_find(&classes, vclasses.v[i]) < 0) {
            s = uf__err(UF_ERR_FORMAT, "%s/%s: class not in train/", val, vclasses.v[i]);
            goto done;
        }
    if (!(ds->class_names = malloc(classes.n * sizeof *ds->class_names))) goto oom;
    for (size_t k = 0; k < classes.n; k++)
        if (!(ds->class_names[k] = arena_strdup(ds, classes.v[k]))) goto oom;
    ds->n_cats = (int)classes.n;
    /* train images first (image ids 0..), then test, each by class then name */
    for (int split = 0; split < 2; split++) {
        const name_list *cl = split ? &vclasses : &classes;
        const char *base = split ? val : train, *sname = split ? vname : "train";
        for (size_t k = 0; k < cl->n; k++) {
            int cls = (int)names_find(&classes, cl->v[k]);
            free(d);
            if (!(d = xprintf("%s/%s", base, cl->v[k]))) goto oom;
            names_free(&imgs);
            if ((s = list_dir(d, LIST_IMAGES, &imgs)) != UF_OK) goto done;
            for (size_t i = 0; i < imgs.n; i++) {
                free(p);
                free(nm);
                p = xprintf("%s/%s", d, imgs.v[i]);
                nm = xprintf("%s/%s/%s", sname, cl->v[k], imgs.v[i]);
                if (!p || !nm) goto oom;
                if ((s = push_file_item(ds, split ? &te : &tr, p, nm, NULL,
                                        ds->class_names[cls], cls, 0, cls)) != UF_OK)
                    goto done;
            }
        }
    }
    s = sem_finish(ds, &tr, &te);
    goto done;
oom:
    s = nomem();
done:
    free(train);
    free(val);
    free(d);
    free(p);
    free(nm);
    names_free(&classes);
    names_free(&vclasses);
    names_free(&imgs);
    free(tr.v);
    free(te.v);
    return s;
}

/* ---- public API ------------------------------------------------------------------------------ */

static const char *const kind_names[] = {"mvtec",   "btad",     "mtd",   "folder",
                                         "list",    "cifar10",  "cifar100", "mnist",
                                         "fashion-mnist", "imagefolder"};
#define N_KINDS ((int)(sizeof kind_names / sizeof *kind_names))

const char *uf_dataset_kind_name(uf_dataset_kind kind)
{
    return (int)kind >= 0 && (int)kind < N_KINDS ? kind_names[kind] : "?";
}

uf_status uf_dataset_kind_from_name(const char *name, uf_dataset_kind *out)
{
    static const struct {
        const char *key; /* lower case, '-' and '_' removed */
        uf_dataset_kind kind;
    } table[] = {{"mvtec", UF_DATASET_MVTEC},       {"mvtecad", UF_DATASET_MVTEC},
                 {"btad", UF_DATASET_BTAD},         {"mtd", UF_DATASET_MTD},
                 {"folder", UF_DATASET_FOLDER},     {"list", UF_DATASET_LIST},
                 {"cifar10", UF_DATASET_CIFAR10},   {"cifar100", UF_DATASET_CIFAR100},
                 {"mnist", UF_DATASET_MNIST},       {"fashionmnist", UF_DATASET_FASHION_MNIST},
                 {"fmnist", UF_DATASET_FASHION_MNIST}, {"imagefolder", UF_DATASET_IMAGEFOLDER}};
    if (!name || !out) return uf__err(UF_ERR_ARG, "uf_dataset_kind_from_name: NULL argument");
    char key[32];
    size_t n = 0;
    for (const char *p = name; *p && n < sizeof key; p++)
        if (*p != '-' && *p != '_') key[n++] = (char)tolower((unsigned char)*p);
    if (n == sizeof key) n = 0; /* too long: no match */
    key[n] = '\0';
    for (size_t i = 0; n && i < sizeof table / sizeof *table; i++)
        if (!strcmp(table[i].key, key)) {
            *out = table[i].kind;
            return UF_OK;
        }
    return uf__err(UF_ERR_ARG,
                   "unknown dataset \"%s\" (expected mvtec, btad, mtd, folder, list, cifar10, "
                   "cifar100, mnist, fashion-mnist or imagefolder)",
                   name);
}

void uf_dataset_free(uf_dataset *ds)
{
    if (!ds) return;
    for (int c = 0; c < ds->n_cats && ds->cats; c++) {
        ds_cat *k = &ds->cats[c];
        if (!k->types_shared) free(k->types);
        if (!k->train_shared) free(k->train);
        free(k->test);
    }
    free(ds->cats);
    free(ds->class_names);
    free(ds->sem_train);
    free(ds->sem_test);
    free(ds->pix);
    while (ds->arena) {
        arena_block *n = ds->arena->next;
        free(ds->arena);
        ds->arena = n;
    }
    if (ds->lock_inited) pthread_mutex_destroy(&ds->lock);
    free(ds->root);
    free(ds);
}

uf_status uf_dataset_open(uf_dataset_kind kind, const char *root, uf_dataset **out)
{
    if (!out) return uf__err(UF_ERR_ARG, "uf_dataset_open: NULL out");
    *out = NULL;
    if (!root || !*root) return uf__err(UF_ERR_ARG, "uf_dataset_open: no root folder");
    if ((int)kind < 0 || (int)kind >= N_KINDS)
        return uf__err(UF_ERR_ARG, "uf_dataset_open: unknown dataset kind %d", (int)kind);
    uf_dataset *ds = calloc(1, sizeof *ds);
    if (!ds || !(ds->root = strdup(root))) {
        free(ds);
        return nomem();
    }
    size_t rl = strlen(ds->root);
    while (rl > 1 && ds->root[rl - 1] == '/') ds->root[--rl] = '\0';
    ds->kind = kind;
    if (pthread_mutex_init(&ds->lock, NULL) != 0) {
        uf_dataset_free(ds);
        return uf__err(UF_ERR_NOMEM, "uf_dataset_open: cannot create a mutex");
    }
    ds->lock_inited = 1;
    uf_status s;
    struct stat st;
    if (stat(ds->root, &st) != 0) {
        s = uf__err(UF_ERR_IO, "%s: %s", ds->root, strerror(errno));
    } else if (!S_ISDIR(st.st_mode)) {
        s = uf__err(UF_ERR_IO, "%s: not a folder", ds->root);
    } else {
        switch (kind) {
        case UF_DATASET_MVTEC:
        case UF_DATASET_BTAD: s = open_defect(ds, 0); break;
        case UF_DATASET_FOLDER: s = open_defect(ds, 1); break;
        case UF_DATASET_MTD: s = open_mtd(ds); break;
        case UF_DATASET_LIST: s = open_list(ds); break;
        case UF_DATASET_CIFAR10: s = open_cifar(ds, 0); break;
        case UF_DATASET_CIFAR100: s = open_cifar(ds, 1); break;
        case UF_DATASET_MNIST: s = open_mnist(ds, 0); break;
        case UF_DATASET_FASHION_MNIST: s = open_mnist(ds, 1); break;
        case UF_DATASET_IMAGEFOLDER: s = open_imagefolder(ds); break;
        default: s = uf__err(UF_ERR_ARG, "uf_dataset_open: unknown kind"); break;
        }
        ds->semantic = kind >= UF_DATASET_CIFAR10;
    }
    if (s != UF_OK) {
        uf_dataset_free(ds);
        return s;
    }
    *out = ds;
    return UF_OK;
}

void uf_dataset_get_info(const uf_dataset *ds, uf_dataset_info *info)
{
    if (!info) return;
    memset(info, 0, sizeof *info);
    if (!ds) return;
    info->kind = ds->kind;
    info->root = ds->root;
    info->semantic = ds->semantic;
    info->n_categories = ds->n_cats;
    info->n_images = ds->n_images;
    info->image_width = ds->pix ? ds->img_w : 0;
    info->image_height = ds->pix ? ds->img_h : 0;
}

int uf_dataset_n_categories(const uf_dataset *ds) { return ds ? ds->n_cats : 0; }

const char *uf_dataset_category(const uf_dataset *ds, int c)
{
    return ds && c >= 0 && c < ds->n_cats ? ds->cats[c].name : NULL;
}

int uf_dataset_find_category(const uf_dataset *ds, const char *name)
{
    if (!ds || !name) return -1;
    for (int c = 0; c < ds->n_cats; c++)
        if (!strcmp(ds->cats[c].name, name)) return c;
    return -1;
}

int uf_dataset_n_types(const uf_dataset *ds, int c)
{
    return ds && c >= 0 && c < ds->n_cats ? ds->cats[c].n_types : 0;
}

const char *uf_dataset_type(const uf_dataset *ds, int c, int t)
{
    if (!ds || c < 0 || c >= ds->n_cats || t < 0 || t >= ds->cats[c].n_types) return NULL;
    return ds->cats[c].types[t];
}

uf_status uf_dataset_get_counts(const uf_dataset *ds, int c, uf_dataset_counts *counts)
{
    if (!ds || !counts) return uf__err(UF_ERR_ARG, "uf_dataset_get_counts: NULL argument");
    if (c < 0 || c >= ds->n_cats)
        return uf__err(UF_ERR_ARG, "%s: category %d out of range 0..%d", ds->root, c,
                       ds->n_cats - 1);
    *counts = ds->cats[c].counts;
    return UF_OK;
}

uf_status uf_dataset_split(const uf_dataset *ds, int c, uf_split split,
                           const uf_dataset_item **items, size_t *n)
{
    if (!ds || !items || !n) return uf__err(UF_ERR_ARG, "uf_dataset_split: NULL argument");
    *items = NULL;
    *n = 0;
    if (c < 0 || c >= ds->n_cats)
        return uf__err(UF_ERR_ARG, "%s: category %d out of range 0..%d", ds->root, c,
                       ds->n_cats - 1);
    if (split != UF_SPLIT_TRAIN && split != UF_SPLIT_TEST)
        return uf__err(UF_ERR_ARG, "uf_dataset_split: split must be UF_SPLIT_TRAIN or "
                                   "UF_SPLIT_TEST");
    ds_cat *k = &ds->cats[c];
    if (split == UF_SPLIT_TRAIN) {
        *items = k->train;
        *n = k->n_train;
        return UF_OK;
    }
    if (!ds->semantic) {
        *items = k->test;
        *n = k->n_test;
        return UF_OK;
    }
    /* semantic: the shared test images with this category's anomalous flags, built once */
    uf_dataset *mds = (uf_dataset *)ds; /* only the lock and k->test change, under the lock */
    uf_status s = UF_OK;
    pthread_mutex_lock(&mds->lock);
    if (!k->test) {
        size_t bytes;
        uf_dataset_item *t = NULL;
        if (uf__mul_ok(ds->n_sem_test, sizeof *t, &bytes)) t = malloc(bytes ? bytes : 1);
        if (!t) {
            s = nomem();
        } else {
            memcpy(t, ds->sem_test, bytes);
            for (size_t i = 0; i < ds->n_sem_test; i++) t[i].anomalous = t[i].class_id != c;
            k->test = t;
        }
    }
    if (s == UF_OK) {
        *items = k->test;
        *n = ds->n_sem_test;
    }
    pthread_mutex_unlock(&mds->lock);
    return s;
}

uf_status uf_dataset_load_image(const uf_dataset *ds, const uf_dataset_item *item,
                                uf_image **out)
{
    if (!ds || !item || !out) return uf__err(UF_ERR_ARG, "uf_dataset_load_image: NULL argument");
    *out = NULL;
    if (item->path) return uf_image_load(item->path, out);
    if (!ds->pix || item->image_id >= ds->n_images)
        return uf__err(UF_ERR_ARG, "uf_dataset_load_image: item %s is not of dataset %s",
                       item->name ? item->name : "?", ds->root);
    uf_image *img;
    uf_status s = uf_image_new(ds->img_w, ds->img_h, &img);
    if (s != UF_OK) return s;
    const uint8_t *src = ds->pix + item->image_id * ds->rec_bytes; /* [rec_bytes] */
    size_t np = (size_t)ds->img_w * (size_t)ds->img_h;
    for (size_t i = 0; i < np; i++) {
        if (ds->img_planar_rgb) { /* CIFAR: planes R, G, B */
            img->rgb[3 * i + 0] = src[i];
            img->rgb[3 * i + 1] = src[np + i];
            img->rgb[3 * i + 2] = src[2 * np + i];
        } else { /* grey */
            img->rgb[3 * i + 0] = img->rgb[3 * i + 1] = img->rgb[3 * i + 2] = src[i];
        }
    }
    *out = img;
    return UF_OK;
}

uf_status uf_dataset_load_mask(const uf_dataset *ds, const uf_dataset_item *item, int width,
                               int height, uint8_t **mask)
{
    if (!ds || !item || !mask) return uf__err(UF_ERR_ARG, "uf_dataset_load_mask: NULL argument");
    *mask = NULL;
    if (width <= 0 || height <= 0)
        return uf__err(UF_ERR_ARG, "uf_dataset_load_mask: size %dx%d", width, height);
    size_t np = (size_t)width * (size_t)height;
    if (np > uf_get_max_pixels())
        return uf__err(UF_ERR_LIMIT, "uf_dataset_load_mask: %dx%d pixels above the limit %zu",
                       width, height, uf_get_max_pixels());
    if (!item->mask_path) {
        *mask = calloc(np, 1);
        return *mask ? UF_OK : nomem();
    }
    uf_image *m;
    uf_status s = uf_image_load(item->mask_path, &m);
    if (s != UF_OK) return s;
    if (m->width != width || m->height != height) {
        s = uf__err(UF_ERR_FORMAT, "%s: mask is %dx%d but its image is %dx%d", item->mask_path,
                    m->width, m->height, width, height);
        uf_image_free(m);
        return s;
    }
    uint8_t *out = malloc(np); /* [height][width] */
    if (!out) {
        uf_image_free(m);
        return nomem();
    }
    for (size_t i = 0; i < np; i++) {
        const uint8_t *px = m->rgb + 3 * i;
        out[i] = px[0] >= 128 || px[1] >= 128 || px[2] >= 128;
    }
    uf_image_free(m);
    *mask = out;
    return UF_OK;
}
