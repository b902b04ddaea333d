/*
 * fuzz_dataset.c - libFuzzer harness for the dataset index readers behind uf_dataset_open:
 * CIFAR-10 and CIFAR-100 binary batches with their class-name files, MNIST idx files
 * (plain and gzip'ed) and the list files (train.txt / test.txt) of UF_DATASET_LIST.
 *
 * uf_dataset_open reads a folder, so the input is unpacked into a private temporary
 * folder (made once per process, emptied before every input):
 *   byte 0         format: % 4 -> 0 CIFAR-10, 1 CIFAR-100, 2 MNIST, 3 list
 *   the rest       the files' contents, separated by the 4 bytes "FUZ|", assigned in
 *                  order to the format's file names (see fuzz_ds_names); missing parts
 *                  mean missing files. An MNIST part starting with the gzip magic is
 *                  written as <name>.gz.
 * For the list format three empty files a.png, b.png and m.png exist beside the lists so
 * that entries can name existing images. After a successful open every category's
 * counts and splits are walked (all strings read) and the first image of each split is
 * loaded, which exercises the in-memory stores of CIFAR and MNIST.
 *
 * Replayed over fuzz/corpus/dataset and fuzz/regress/dataset by tests/test_fuzz_regress.c.
 */
#include "uniformaly.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char fuzz_ds_root[64]; /* the temporary folder, "" until made */

/* File names per format, in the order the input's parts fill them. */
static const char *const fuzz_ds_cifar10[] = {"data_batch_1.bin", "data_batch_2.bin",
                                              "data_batch_3.bin", "data_batch_4.bin",
                                              "data_batch_5.bin", "test_batch.bin",
                                              "batches.meta.txt", NULL};
static const char *const fuzz_ds_cifar100[] = {"train.bin", "test.bin",
                                               "coarse_label_names.txt", NULL};
static const char *const fuzz_ds_mnist[] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                            "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
                                            NULL};
static const char *const fuzz_ds_list[] = {"train.txt", "test.txt", NULL};
static const char *const *const fuzz_ds_names[4] = {fuzz_ds_cifar10, fuzz_ds_cifar100,
                                                    fuzz_ds_mnist, fuzz_ds_list};
static const uf_dataset_kind fuzz_ds_kinds[4] = {UF_DATASET_CIFAR10, UF_DATASET_CIFAR100,
                                                 UF_DATASET_MNIST, UF_DATASET_LIST};
static const char *const fuzz_ds_images[] = {"a.png", "b.png", "m.png", NULL};

static void fuzz_ds_path(char *out, size_t n, const char *name, const char *suffix)
{
    snprintf(out, n, "%s/%s%s", fuzz_ds_root, name, suffix);
}

/* Remove every file any format may have written. */
static void fuzz_ds_clean(void)
{
    char p[256];
    for (int k = 0; k < 4; k++)
        for (const char *const *nm = fuzz_ds_names[k]; *nm; nm++) {
            fuzz_ds_path(p, sizeof p, *nm, "");
            unlink(p);
            fuzz_ds_path(p, sizeof p, *nm, ".gz");
            unlink(p);
        }
    for (const char *const *nm = fuzz_ds_images; *nm; nm++) {
        fuzz_ds_path(p, sizeof p, *nm, "");
        unlink(p);
    }
}

static void fuzz_ds_atexit(void)
{
    if (!fuzz_ds_root[0]) return;
    fuzz_ds_clean();
    rmdir(fuzz_ds_root);
}

static void fuzz_ds_write(const char *name, const char *suffix, const uint8_t *d, size_t n)
{
    char p[256];
    fuzz_ds_path(p, sizeof p, name, suffix);
    FILE *f = fopen(p, "wb");
    if (!f) abort();
    if (n && fwrite(d, 1, n, f) != n) abort();
    if (fclose(f) != 0) abort();
}

/* Walk everything a caller could look at in an opened dataset. */
static void fuzz_ds_walk(const uf_dataset *ds)
{
    uf_dataset_info info;
    uf_dataset_get_info(ds, &info);
    volatile size_t sink = 0;
    int nc = uf_dataset_n_categories(ds);
    if (nc < 1) __builtin_trap();
    for (int c = 0; c < nc; c++) {
        sink += strlen(uf_dataset_category(ds, c));
        for (int t = 0; t < uf_dataset_n_types(ds, c); t++) sink += strlen(uf_dataset_type(ds, c, t));
        uf_dataset_counts cnt;
        if (uf_dataset_get_counts(ds, c, &cnt) != UF_OK) __builtin_trap();
        for (int sp = 0; sp < 2; sp++) {
            const uf_dataset_item *items;
            size_t n;
            if (uf_dataset_split(ds, c, sp ? UF_SPLIT_TEST : UF_SPLIT_TRAIN, &items, &n) != UF_OK)
                continue;
            for (size_t i = 0; i < n; i++) {
                sink += strlen(items[i].name) + strlen(items[i].type);
                if (items[i].path) sink += strlen(items[i].path);
                if (items[i].image_id >= info.n_images) __builtin_trap();
            }
            /* in-memory images are cheap (32x32, 28x28 or the idx size); one per split of
               the first category is enough to exercise the store */
            if (n && c == 0) {
                uf_image *img = NULL;
                if (uf_dataset_load_image(ds, &items[n - 1], &img) == UF_OK)
                    sink += img->rgb[(size_t)img->width * (size_t)img->height * 3 - 1];
                uf_image_free(img);
            }
        }
    }
    (void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t sep[4] = {'F', 'U', 'Z', '|'};
    if (!fuzz_ds_root[0]) {
        char tmpl[] = "/tmp/uf_fuzz_ds.XXXXXX";
        if (!mkdtemp(tmpl)) abort();
        snprintf(fuzz_ds_root, sizeof fuzz_ds_root, "%s", tmpl);
        atexit(fuzz_ds_atexit);
    }
    if (size < 1) return 0;
    fuzz_ds_clean();
    const int fmt = data[0] % 4;
    const char *const *names = fuzz_ds_names[fmt];
    const uint8_t *p = data + 1, *end = data + size;
    int more = 1; /* another part follows */
    for (int k = 0; names[k] && more; k++) {
        const uint8_t *q = p;
        while ((size_t)(end - q) >= 4 && memcmp(q, sep, 4) != 0) q++;
        if ((size_t)(end - q) < 4) {
            q = end;
            more = 0;
        }
        size_t n = (size_t)(q - p);
        int gz = fmt == 2 && n >= 2 && p[0] == 0x1f && p[1] == 0x8b;
        fuzz_ds_write(names[k], gz ? ".gz" : "", p, n);
        if (more) p = q + 4; /* past the separator */
    }
    if (fmt == 3)
        for (const char *const *nm = fuzz_ds_images; *nm; nm++) fuzz_ds_write(*nm, "", NULL, 0);

    uf_dataset *ds = NULL;
    if (uf_dataset_open(fuzz_ds_kinds[fmt], fuzz_ds_root, &ds) == UF_OK) fuzz_ds_walk(ds);
    uf_dataset_free(ds);
    return 0;
}
