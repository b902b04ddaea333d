/*
 * test_dataset.c - the dataset readers (src/eval/dataset.c) on small fixture trees and, when
 * present, on real data.
 *
 * Fixtures (tests/data/dataset/, made by scripts/gen_dataset_fixtures.py) hold one tiny tree
 * per layout: MVTec AD (two categories, a stray and a hidden folder, a type folder without
 * images, a missing mask), BTAD (ok/ko, masks named like the image, a BMP RGB mask), MTD
 * (names whose bytewise order differs from a natural sort), generic folder, list files
 * (comments, tabs, a path with a space, CRLF, no final newline, word labels), ImageNet-style
 * class folders, CIFAR-10/100 binary batches and MNIST idx files (plain and .gz in raw/).
 * Their items, order, types, masks (values straddling the 128 threshold) and the pixels of
 * in-memory images (integer formulas shared with the script) are checked exactly. Broken
 * variants must fail with the expected status and a message naming the file.
 *
 * Real data (skipped visibly when absent): MTD and MVTec bottle under ../shared, Debian's
 * Fashion-MNIST under /usr/share/datasets/fashion-mnist.
 */
#include "harness.h"
#include "uniformaly.h"

#include <dirent.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>

#define FIX "tests/data/dataset"

/* ---- helpers ------------------------------------------------------------------------------ */

/* Does s end with suffix? (NULL s: no) */
static int ends_with(const char *s, const char *suffix)
{
    if (!s) return 0;
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* Open or fail the test (the caller returns on NULL). */
static uf_dataset *open_ok(uf_dataset_kind kind, const char *root)
{
    uf_dataset *ds = NULL;
    uf_status s = uf_dataset_open(kind, root, &ds);
    CHECKF(s == UF_OK, "open %s: %s: %s", root, uf_status_str(s), uf_errmsg());
    return ds;
}

/* The items of a split, or NULL with *n = 0 on failure (test marked failed). */
static const uf_dataset_item *split_of(const uf_dataset *ds, int c, uf_split sp, size_t *n)
{
    const uf_dataset_item *it = NULL;
    uf_status s = uf_dataset_split(ds, c, sp, &it, n);
    CHECKF(s == UF_OK, "split %d/%d: %s", c, (int)sp, uf_errmsg());
    if (s != UF_OK) *n = 0;
    return it;
}

/* Check the names of a split, in order. */
static void check_names(const uf_dataset_item *it, size_t n, const char *const *names,
                        size_t expected)
{
    CHECKF(n == expected, "%zu items, expected %zu", n, expected);
    for (size_t i = 0; i < n && i < expected; i++)
        CHECKF(it[i].name && !strcmp(it[i].name, names[i]), "item %zu is %s, expected %s", i,
               it[i].name ? it[i].name : "(null)", names[i]);
}

/* The fixture masks: top half, column x -> [0,127,128,255,200,1,0,255][x % 8] >= 128. */
static void check_fixture_mask(const uint8_t *m, int w, int h)
{
    static const uint8_t on[8] = {0, 0, 1, 1, 1, 0, 0, 1};
    int bad = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t want = y < h / 2 ? on[x % 8] : 0;
            bad += m[y * w + x] != want;
        }
    CHECKF(bad == 0, "%d mask pixels differ from the fixture pattern", bad);
}

/* Load the mask of item (image size w x h) and compare with the fixture pattern, or with
 * all zeros (zero = 1). */
static void check_item_mask(const uf_dataset *ds, const uf_dataset_item *it, int w, int h,
                            int zero)
{
    uint8_t *m = NULL;
    uf_status s = uf_dataset_load_mask(ds, it, w, h, &m);
    CHECKF(s == UF_OK, "mask of %s: %s", it->name, uf_errmsg());
    if (s != UF_OK) return;
    if (zero) {
        size_t ones = 0;
        for (int i = 0; i < w * h; i++) ones += m[i];
        CHECKF(ones == 0, "mask of %s has %zu ones, expected none", it->name, ones);
    } else {
        check_fixture_mask(m, w, h);
    }
    free(m);
}

/* Image of item has size w x h. */
static void check_item_image(const uf_dataset *ds, const uf_dataset_item *it, int w, int h)
{
    uf_image *img = NULL;
    uf_status s = uf_dataset_load_image(ds, it, &img);
    CHECKF(s == UF_OK, "image %s: %s", it->name, uf_errmsg());
    if (s != UF_OK) return;
    CHECKF(img->width == w && img->height == h, "%s is %dx%d, expected %dx%d", it->name,
           img->width, img->height, w, h);
    uf_image_free(img);
}

/* ---- names ------------------------------------------------------------------------------- */

static void test_kind_names(void)
{
    static const struct {
        const char *name;
        uf_dataset_kind kind;
    } ok[] = {{"mvtec", UF_DATASET_MVTEC},          {"MVTec_AD", UF_DATASET_MVTEC},
              {"mvtec-ad", UF_DATASET_MVTEC},       {"btad", UF_DATASET_BTAD},
              {"mtd", UF_DATASET_MTD},              {"folder", UF_DATASET_FOLDER},
              {"list", UF_DATASET_LIST},            {"cifar10", UF_DATASET_CIFAR10},
              {"CIFAR-10", UF_DATASET_CIFAR10},     {"cifar100", UF_DATASET_CIFAR100},
              {"cifar-100", UF_DATASET_CIFAR100},   {"mnist", UF_DATASET_MNIST},
              {"fashion-mnist", UF_DATASET_FASHION_MNIST},
              {"fashion_mnist", UF_DATASET_FASHION_MNIST},
              {"fmnist", UF_DATASET_FASHION_MNIST}, {"imagefolder", UF_DATASET_IMAGEFOLDER},
              {"image-folder", UF_DATASET_IMAGEFOLDER}};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        uf_dataset_kind k = (uf_dataset_kind)-1;
        uf_status s = uf_dataset_kind_from_name(ok[i].name, &k);
        CHECKF(s == UF_OK && k == ok[i].kind, "%s -> %d (%s)", ok[i].name, (int)k, uf_errmsg());
    }
    static const char *const canon[] = {"mvtec",    "btad",  "mtd",           "folder",
                                        "list",     "cifar10", "cifar100",    "mnist",
                                        "fashion-mnist", "imagefolder"};
    for (int k = 0; k < 10; k++) {
        CHECK(!strcmp(uf_dataset_kind_name((uf_dataset_kind)k), canon[k]));
        uf_dataset_kind back;
        CHECK(uf_dataset_kind_from_name(canon[k], &back) == UF_OK && (int)back == k);
    }
    CHECK(!strcmp(uf_dataset_kind_name((uf_dataset_kind)99), "?"));
    uf_dataset_kind k;
    const char *bad[] = {"", "mvtecc", "cifar", "-", "mvtec ad",
                         "a_very_long_name_that_is_longer_than_the_key_buffer_mvtec"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECKF(uf_dataset_kind_from_name(bad[i], &k) == UF_ERR_ARG, "\"%s\" accepted", bad[i]);
        CHECK(strstr(uf_errmsg(), "fashion-mnist") != NULL); /* lists the valid names */
    }
    CHECK(uf_dataset_kind_from_name(NULL, &k) == UF_ERR_ARG);
    CHECK(uf_dataset_kind_from_name("mvtec", NULL) == UF_ERR_ARG);
}

/* ---- defect layouts ------------------------------------------------------------------------ */

static void test_mvtec(void)
{
    uf_dataset *ds = open_ok(UF_DATASET_MVTEC, FIX "/mvtec");
    if (!ds) return;
    uf_dataset_info info;
    uf_dataset_get_info(ds, &info);
    CHECK(info.kind == UF_DATASET_MVTEC && !info.semantic && info.n_categories == 2);
    CHECK(info.n_images == 13 && info.image_width == 0 && info.image_height == 0);
    CHECK(!strcmp(info.root, FIX "/mvtec"));
    CHECK(uf_dataset_n_categories(ds) == 2);
    CHECK(!strcmp(uf_dataset_category(ds, 0), "cat_a"));
    CHECK(!strcmp(uf_dataset_category(ds, 1), "cat_b"));
    CHECK(uf_dataset_category(ds, 2) == NULL && uf_dataset_category(ds, -1) == NULL);
    CHECK(uf_dataset_find_category(ds, "cat_b") == 1);
    CHECK(uf_dataset_find_category(ds, "stray") == -1);
    CHECK(uf_dataset_find_category(ds, ".hidden") == -1);

    /* cat_a: types good, crack, hole ("empty" holds no image) */
    CHECK(uf_dataset_n_types(ds, 0) == 3);
    CHECK(!strcmp(uf_dataset_type(ds, 0, 0), "good"));
    CHECK(!strcmp(uf_dataset_type(ds, 0, 1), "crack"));
    CHECK(!strcmp(uf_dataset_type(ds, 0, 2), "hole"));
    CHECK(uf_dataset_type(ds, 0, 3) == NULL && uf_dataset_n_types(ds, 5) == 0);
    size_t n;
    const uf_dataset_item *tr = split_of(ds, 0, UF_SPLIT_TRAIN, &n);
    static const char *const a_train[] = {"cat_a/train/good/000.png", "cat_a/train/good/001.png",
                                          "cat_a/train/good/002.png"};
    check_names(tr, n, a_train, 3);
    for (size_t i = 0; i < n; i++) {
        CHECK(tr[i].image_id == i && !tr[i].anomalous && tr[i].type_id == 0);
        CHECK(!strcmp(tr[i].type, "good") && tr[i].mask_path == NULL && tr[i].class_id == 0);
    }
    CHECK(n && !strcmp(tr[0].path, FIX "/mvtec/cat_a/train/good/000.png"));
    const uf_dataset_item *te = split_of(ds, 0, UF_SPLIT_TEST, &n);
    static const char *const a_test[] = {"cat_a/test/good/000.png", "cat_a/test/good/001.png",
                                         "cat_a/test/crack/000.png", "cat_a/test/crack/001.png",
                                         "cat_a/test/hole/000.PNG"};
    check_names(te, n, a_test, 5);
    if (n == 5) {
        static const int anom[5] = {0, 0, 1, 1, 1}, tid[5] = {0, 0, 1, 1, 2};
        for (int i = 0; i < 5; i++) {
            CHECKF(te[i].anomalous == anom[i] && te[i].type_id == tid[i], "item %d", i);
            CHECK(!strcmp(te[i].type, uf_dataset_type(ds, 0, tid[i])));
            CHECK(te[i].image_id == 3 + (size_t)i && te[i].class_id == 0);
            CHECK(te[i].path != NULL);
        }
        CHECK(te[0].mask_path == NULL && te[1].mask_path == NULL);
        CHECK(ends_with(te[2].mask_path, "/mvtec/cat_a/ground_truth/crack/000_mask.png"));
        CHECK(ends_with(te[3].mask_path, "/mvtec/cat_a/ground_truth/crack/001_mask.png"));
        CHECK(ends_with(te[4].mask_path, "/mvtec/cat_a/ground_truth/hole/000_mask.png"));
        check_item_image(ds, &te[4], 8, 6);
        check_item_mask(ds, &te[2], 8, 6, 0);
        check_item_mask(ds, &te[0], 8, 6, 1); /* no mask: all zero */
        check_item_mask(ds, &te[0], 3, 2, 1); /* any size when there is no mask */
    }
    uf_dataset_counts cn;
    REQUIRE_OK(uf_dataset_get_counts(ds, 0, &cn));
    CHECK(cn.n_train == 3 && cn.n_test == 5 && cn.n_test_anomalous == 3 && cn.n_test_masked == 3);

    /* cat_b: 001 of scratch has no mask */
    REQUIRE_OK(uf_dataset_get_counts(ds, 1, &cn));
    CHECK(cn.n_train == 2 && cn.n_test == 3 && cn.n_test_anomalous == 2 && cn.n_test_masked == 1);
    te = split_of(ds, 1, UF_SPLIT_TEST, &n);
    static const char *const b_test[] = {"cat_b/test/good/000.jpg", "cat_b/test/scratch/000.jpg",
                                         "cat_b/test/scratch/001.jpg"};
    check_names(te, n, b_test, 3);
    if (n == 3) {
        CHECK(te[1].mask_path != NULL && te[2].mask_path == NULL);
        CHECK(te[0].class_id == 1 && te[2].image_id == 12 && te[2].type_id == 1);
    }
    uf_dataset_free(ds);

    /* a root that is itself a category, with and without a trailing '/' */
    const char *roots[2] = {FIX "/mvtec/cat_a", FIX "/mvtec/cat_a//"};
    for (int r = 0; r < 2; r++) {
        ds = open_ok(UF_DATASET_MVTEC, roots[r]);
        if (!ds) return;
        CHECK(uf_dataset_n_categories(ds) == 1 && !strcmp(uf_dataset_category(ds, 0), "cat_a"));
        te = split_of(ds, 0, UF_SPLIT_TEST, &n);
        CHECK(n == 5 && !strcmp(te[2].name, "test/crack/000.png"));
        CHECK(n == 5 && !strcmp(te[2].path, FIX "/mvtec/cat_a/test/crack/000.png"));
        uf_dataset_free(ds);
    }
}

static void test_btad(void)
{
    uf_dataset *ds = open_ok(UF_DATASET_BTAD, FIX "/btad");
    if (!ds) return;
    CHECK(uf_dataset_n_categories(ds) == 2);
    CHECK(!strcmp(uf_dataset_category(ds, 0), "01") && !strcmp(uf_dataset_category(ds, 1), "03"));
    CHECK(uf_dataset_n_types(ds, 0) == 2 && !strcmp(uf_dataset_type(ds, 0, 1), "ko"));
    size_t n;
    const uf_dataset_item *tr = split_of(ds, 0, UF_SPLIT_TRAIN, &n);
    static const char *const a_train[] = {"01/train/ok/0000.bmp", "01/train/ok/0001.bmp"};
    check_names(tr, n, a_train, 2);
    const uf_dataset_item *te = split_of(ds, 0, UF_SPLIT_TEST, &n);
    static const char *const a_test[] = {"01/test/ok/0000.bmp", "01/test/ko/0000.bmp",
                                         "01/test/ko/0001.bmp"};
    check_names(te, n, a_test, 3);
    if (n == 3) {
        CHECK(!strcmp(te[0].type, "good") && !te[0].anomalous); /* "ok" is reported as good */
        CHECK(!strcmp(te[1].type, "ko") && te[1].anomalous && te[1].type_id == 1);
        CHECK(ends_with(te[1].mask_path, "/btad/01/ground_truth/ko/0000.png"));
        check_item_image(ds, &te[1], 8, 6);
        check_item_mask(ds, &te[1], 8, 6, 0);
    }
    te = split_of(ds, 1, UF_SPLIT_TEST, &n);
    CHECK(n == 2);
    if (n == 2) {
        CHECK(ends_with(te[1].mask_path, "/btad/03/ground_truth/ko/0005.bmp"));
        check_item_mask(ds, &te[1], 8, 6, 0); /* RGB BMP mask: red channel carries it */
    }
    uf_dataset_free(ds);
}

static void test_mtd_fixture(void)
{
    uf_dataset *ds = open_ok(UF_DATASET_MTD, FIX "/mtd");
    if (!ds) return;
    CHECK(uf_dataset_n_categories(ds) == 1 && !strcmp(uf_dataset_category(ds, 0), "mtd"));
    CHECK(uf_dataset_n_types(ds, 0) == 3);
    CHECK(!strcmp(uf_dataset_type(ds, 0, 1), "Blowhole") &&
          !strcmp(uf_dataset_type(ds, 0, 2), "Crack"));
    size_t n;
    /* bytewise: Exp2 a b exp0_num_5 exp1_num_10 exp1_num_100 exp1_num_9; 0 and 5 -> test */
    const uf_dataset_item *tr = split_of(ds, 0, UF_SPLIT_TRAIN, &n);
    static const char *const train[] = {"MT_Free/Imgs/a.jpg", "MT_Free/Imgs/b.jpg",
                                        "MT_Free/Imgs/exp0_num_5.jpg",
                                        "MT_Free/Imgs/exp1_num_10.jpg",
                                        "MT_Free/Imgs/exp1_num_9.jpg"};
    check_names(tr, n, train, 5);
    const uf_dataset_item *te = split_of(ds, 0, UF_SPLIT_TEST, &n);
    static const char *const test[] = {"MT_Free/Imgs/Exp2.jpg", "MT_Free/Imgs/exp1_num_100.jpg",
                                       "MT_Blowhole/Imgs/x1.jpg", "MT_Blowhole/Imgs/x2.jpg",
                                       "MT_Crack/Imgs/y.jpg"};
    check_names(te, n, test, 5);
    if (n == 5) {
        static const int tid[5] = {0, 0, 1, 1, 2};
        for (int i = 0; i < 5; i++) {
            CHECK(te[i].type_id == tid[i] && te[i].anomalous == (tid[i] != 0));
            CHECK(te[i].mask_path != NULL); /* MTD: X.png beside every X.jpg */
        }
        CHECK(ends_with(te[4].mask_path, "/mtd/MT_Crack/Imgs/y.png"));
        CHECK(!strcmp(te[4].type, "Crack"));
        check_item_image(ds, &te[4], 8, 6);
        check_item_mask(ds, &te[4], 8, 6, 0);
        check_item_mask(ds, &te[0], 8, 6, 1);
    }
    uf_dataset_counts cn;
    REQUIRE_OK(uf_dataset_get_counts(ds, 0, &cn));
    CHECK(cn.n_train == 5 && cn.n_test == 5 && cn.n_test_anomalous == 3 && cn.n_test_masked == 3);
    uf_dataset_free(ds);
}

static void test_folder(void)
{
    uf_dataset *ds = open_ok(UF_DATASET_FOLDER, FIX "/folder");
    if (!ds) return;
    CHECK(uf_dataset_n_categories(ds) == 1 && !strcmp(uf_dataset_category(ds, 0), "folder"));
    size_t n;
    const uf_dataset_item *tr = split_of(ds, 0, UF_SPLIT_TRAIN, &n);
    static const char *const train[] = {"train/n0.png", "train/n1.png", "train/n2.png"};
    check_names(tr, n, train, 3);
    const uf_dataset_item *te = split_of(ds, 0, UF_SPLIT_TEST, &n);
    static const char *const test[] = {"test/good/g.png", "test/defect/d1.png",
                                       "test/defect/d2.png"};
    check_names(te, n, test, 3);
    if (n == 3) {
        CHECK(ends_with(te[1].mask_path, "/folder/ground_truth/defect/d1_mask.png"));
        CHECK(ends_with(te[2].mask_path, "/folder/ground_truth/defect/d2.bmp"));
        check_item_mask(ds, &te[2], 8, 6, 0);
    }
    uf_dataset_free(ds);
    /* the same tree read as a one-category MVTec root */
    ds = open_ok(UF_DATASET_MVTEC, FIX "/folder");
    if (ds) CHECK(uf_dataset_n_categories(ds) == 1);
    uf_dataset_free(ds);
}

static void test_list(void)
{
    uf_dataset *ds = open_ok(UF_DATASET_LIST, FIX "/list");
    if (!ds) return;
    CHECK(uf_dataset_n_categories(ds) == 1 && !strcmp(uf_dataset_category(ds, 0), "list"));
    CHECK(uf_dataset_n_types(ds, 0) == 3);
    CHECK(!strcmp(uf_dataset_type(ds, 0, 1), "anomalous") &&
          !strcmp(uf_dataset_type(ds, 0, 2), "crack"));
    size_t n;
    const uf_dataset_item *tr = split_of(ds, 0, UF_SPLIT_TRAIN, &n);
    static const char *const train[] = {"imgs/a.png", "imgs/b.png"};
    check_names(tr, n, train, 2);
    CHECK(n == 2 && !strcmp(tr[1].path, FIX "/list/imgs/b.png"));
    const uf_dataset_item *te = split_of(ds, 0, UF_SPLIT_TEST, &n);
    static const char *const test[] = {"imgs/c.png", "imgs/e.png", "imgs/d.png",
                                       "imgs/with space.png", "imgs/f.png"};
    check_names(te, n, test, 5);
    if (n == 5) {
        static const int tid[5] = {0, 0, 1, 2, 2};
        for (int i = 0; i < 5; i++)
            CHECKF(te[i].type_id == tid[i] && te[i].anomalous == (tid[i] != 0), "item %d", i);
        CHECK(te[2].mask_path == NULL); /* "-" */
        CHECK(te[3].mask_path && !strcmp(te[3].mask_path, FIX "/list/imgs/m.png"));
        CHECK(!strcmp(te[3].path, FIX "/list/imgs/with space.png"));
        CHECK(te[4].mask_path != NULL && !strcmp(te[4].type, "crack"));
        check_item_image(ds, &te[3], 8, 6);
        check_item_mask(ds, &te[3], 8, 6, 0);
    }
    uf_dataset_free(ds);
}

/* ---- semantic datasets --------------------------------------------------------------------- */

static void test_imagefolder(void)
{
    uf_dataset *ds = open_ok(UF_DATASET_IMAGEFOLDER, FIX "/imagefolder");
    if (!ds) return;
    uf_dataset_info info;
    uf_dataset_get_info(ds, &info);
    CHECK(info.semantic && info.n_categories == 3 && info.n_images == 7);
    static const char *const cls[3] = {"cat", "dog", "emu"};
    static const size_t ntrain[3] = {2, 1, 1};
    const uf_dataset_item *first = NULL;
    for (int c = 0; c < 3; c++) {
        CHECK(!strcmp(uf_dataset_category(ds, c), cls[c]));
        CHECK(uf_dataset_n_types(ds, c) == 3 && !strcmp(uf_dataset_type(ds, c, 2), "emu"));
        size_t n;
        const uf_dataset_item *tr = split_of(ds, c, UF_SPLIT_TRAIN, &n);
        CHECKF(n == ntrain[c], "class %s: %zu train images", cls[c], n);
        for (size_t i = 0; i < n; i++) CHECK(tr[i].class_id == c && !tr[i].anomalous);
        const uf_dataset_item *te = split_of(ds, c, UF_SPLIT_TEST, &n);
        static const char *const test[] = {"val/cat/9.png", "val/dog/7.png", "val/dog/8.png"};
        check_names(te, n, test, 3);
        if (n != 3) continue;
        if (!first) first = te;
        for (int i = 0; i < 3; i++) {
            CHECK(te[i].anomalous == (te[i].class_id != c));
            CHECK(te[i].image_id == first[i].image_id && !strcmp(te[i].path, first[i].path));
        }
        /* a second request gives the same array */
        const uf_dataset_item *again = split_of(ds, c, UF_SPLIT_TEST, &n);
        CHECK(again == te);
    }
    size_t n;
    const uf_dataset_item *tr = split_of(ds, 0, UF_SPLIT_TRAIN, &n);
    if (n) check_item_image(ds, &tr[0], 8, 6);
    uf_dataset_free(ds);
}

/* CIFAR byte i of record r in file number f (scripts/gen_dataset_fixtures.py). */
static uint8_t cifar_byte(int f, size_t r, int i)
{
    return (uint8_t)((37 * f + 11 * r + 3 * i + 85 * (i >> 10)) & 255);
}

/* The image of an in-memory CIFAR item equals the fixture's formula (planar -> RGB). */
static void check_cifar_pixels(const uf_dataset *ds, const uf_dataset_item *it, int fileno,
                               size_t record)
{
    uf_image *img = NULL;
    uf_status s = uf_dataset_load_image(ds, it, &img);
    CHECKF(s == UF_OK, "%s", uf_errmsg());
    if (s != UF_OK) return;
    CHECK(img->width == 32 && img->height == 32);
    int bad = 0;
    for (int y = 0; y < 32; y++)
        for (int x = 0; x < 32; x++)
            for (int ch = 0; ch < 3; ch++)
                bad += img->rgb[(y * 32 + x) * 3 + ch] !=
                       cifar_byte(fileno, record, ch * 1024 + y * 32 + x);
    CHECKF(bad == 0, "%s: %d bytes differ", it->name, bad);
    uf_image_free(img);
}

static void test_cifar10(void)
{
    uf_dataset *ds = open_ok(UF_DATASET_CIFAR10, FIX "/cifar10"); /* finds the subfolder */
    if (!ds) return;
    uf_dataset_info info;
    uf_dataset_get_info(ds, &info);
    CHECK(info.semantic && info.n_categories == 10 && info.n_images == 15);
    CHECK(info.image_width == 32 && info.image_height == 32);
    CHECK(!strcmp(uf_dataset_category(ds, 0), "airplane"));
    CHECK(!strcmp(uf_dataset_category(ds, 9), "truck"));
    CHECK(uf_dataset_find_category(ds, "cat") == 3);
    /* data_batch_k holds labels 2(k-1), 2(k-1)+1: one train image per class */
    for (int c = 0; c < 10; c++) {
        size_t n;
        const uf_dataset_item *tr = split_of(ds, c, UF_SPLIT_TRAIN, &n);
        CHECKF(n == 1, "class %d: %zu train images", c, n);
        if (n != 1) continue;
        CHECK(tr[0].path == NULL && tr[0].mask_path == NULL && tr[0].class_id == c);
        char name[64];
        snprintf(name, sizeof name, "data_batch_%d.bin#%d", c / 2 + 1, c % 2);
        CHECKF(!strcmp(tr[0].name, name), "%s vs %s", tr[0].name, name);
        CHECK(tr[0].image_id == (size_t)c);
        check_cifar_pixels(ds, &tr[0], c / 2, (size_t)(c % 2));
    }
    /* test labels 3 3 0 9 5; category cat (3) */
    size_t n;
    const uf_dataset_item *te = split_of(ds, 3, UF_SPLIT_TEST, &n);
    CHECK(n == 5);
    if (n == 5) {
        static const int cls[5] = {3, 3, 0, 9, 5};
        for (int i = 0; i < 5; i++) {
            CHECK(te[i].class_id == cls[i] && te[i].type_id == cls[i]);
            CHECK(te[i].anomalous == (cls[i] != 3) && te[i].image_id == 10 + (size_t)i);
        }
        CHECK(!strcmp(te[3].type, "truck") && !strcmp(te[4].name, "test_batch.bin#4"));
        check_cifar_pixels(ds, &te[4], 5, 4);
        check_item_mask(ds, &te[4], 32, 32, 1); /* no masks: zeros */
    }
    uf_dataset_counts cn;
    REQUIRE_OK(uf_dataset_get_counts(ds, 3, &cn));
    CHECK(cn.n_train == 1 && cn.n_test == 5 && cn.n_test_anomalous == 3 && cn.n_test_masked == 0);
    uf_dataset_free(ds);
    /* root pointing at the folder of the .bin files works too */
    ds = open_ok(UF_DATASET_CIFAR10, FIX "/cifar10/cifar-10-batches-bin");
    if (ds) CHECK(uf_dataset_n_categories(ds) == 10);
    uf_dataset_free(ds);
}

static void test_cifar100(void)
{
    uf_dataset *ds = open_ok(UF_DATASET_CIFAR100, FIX "/cifar100");
    if (!ds) return;
    CHECK(uf_dataset_n_categories(ds) == 20);
    CHECK(!strcmp(uf_dataset_category(ds, 0), "aquatic mammals")); /* from the names file */
    CHECK(!strcmp(uf_dataset_category(ds, 19), "vehicles 2"));
    /* train coarse labels 0 19 0 7 19 3; test 19 0 5 0 */
    static const size_t ntrain[20] = {[0] = 2, [3] = 1, [7] = 1, [19] = 2};
    for (int c = 0; c < 20; c++) {
        size_t n;
        split_of(ds, c, UF_SPLIT_TRAIN, &n);
        CHECKF(n == ntrain[c], "class %d: %zu train images", c, n);
    }
    size_t n;
    const uf_dataset_item *tr = split_of(ds, 0, UF_SPLIT_TRAIN, &n);
    if (n == 2) { /* records 0 and 2, in file order */
        CHECK(!strcmp(tr[0].name, "train.bin#0") && !strcmp(tr[1].name, "train.bin#2"));
        check_cifar_pixels(ds, &tr[1], 0, 2);
    }
    const uf_dataset_item *te = split_of(ds, 0, UF_SPLIT_TEST, &n);
    CHECK(n == 4);
    if (n == 4) {
        static const int anom[4] = {1, 0, 1, 0};
        for (int i = 0; i < 4; i++) CHECK(te[i].anomalous == anom[i]);
        check_cifar_pixels(ds, &te[2], 1, 2);
    }
    uf_dataset_free(ds);
}

/* idx byte i of image r in file number f (scripts/gen_dataset_fixtures.py). */
static uint8_t idx_byte(int f, size_t r, int i)
{
    return (uint8_t)((29 * f + 13 * r + 7 * i) & 255);
}

static void check_mnist_fixture(uf_dataset_kind kind, const char *root, const char *name3)
{
    uf_dataset *ds = open_ok(kind, root);
    if (!ds) return;
    uf_dataset_info info;
    uf_dataset_get_info(ds, &info);
    CHECK(info.semantic && info.n_images == 18);
    CHECK(info.image_width == 5 && info.image_height == 4); /* 4 rows x 5 columns */
    CHECK(!strcmp(uf_dataset_category(ds, 3), name3));
    /* train labels i % 10 for i < 12: classes 0, 1 have two images */
    for (int c = 0; c < 10; c++) {
        size_t n;
        const uf_dataset_item *tr = split_of(ds, c, UF_SPLIT_TRAIN, &n);
        CHECKF(n == (c < 2 ? 2u : 1u), "class %d: %zu", c, n);
        for (size_t i = 0; i < n; i++) CHECK(tr[i].image_id == (size_t)c + 10 * i);
    }
    size_t n;
    const uf_dataset_item *te = split_of(ds, 3, UF_SPLIT_TEST, &n);
    CHECK(n == 6);
    if (n == 6) {
        static const int cls[6] = {3, 3, 0, 9, 1, 2};
        for (int i = 0; i < 6; i++) CHECK(te[i].class_id == cls[i] && te[i].anomalous == (i > 1));
        uf_image *img = NULL;
        uf_status s = uf_dataset_load_image(ds, &te[5], &img);
        CHECKF(s == UF_OK, "%s", uf_errmsg());
        if (s == UF_OK) {
            int bad = 0;
            for (int i = 0; i < 20; i++)
                for (int ch = 0; ch < 3; ch++) bad += img->rgb[3 * i + ch] != idx_byte(1, 5, i);
            CHECKF(img->width == 5 && img->height == 4 && bad == 0, "%d bytes differ", bad);
            uf_image_free(img);
        }
    }
    uf_dataset_free(ds);
}

static void test_mnist(void)
{
    check_mnist_fixture(UF_DATASET_MNIST, FIX "/mnist", "3");
    check_mnist_fixture(UF_DATASET_FASHION_MNIST, FIX "/fashion", "Dress"); /* raw/ + .gz */
}

/* ---- errors -------------------------------------------------------------------------------- */

static void test_broken(void)
{
    static const struct {
        uf_dataset_kind kind;
        const char *dir;
        uf_status want;
        const char *in_msg; /* must appear in the message (the file at fault) */
    } cases[] = {
        {UF_DATASET_CIFAR10, "cifar_trunc", UF_ERR_FORMAT, "test_batch.bin: size 2973"},
        {UF_DATASET_CIFAR10, "cifar_label", UF_ERR_FORMAT, "data_batch_3.bin: record 0: label 10"},
        {UF_DATASET_CIFAR10, "cifar_missing", UF_ERR_IO, "data_batch_3.bin"},
        {UF_DATASET_CIFAR10, "cifar_meta", UF_ERR_FORMAT,
         "batches.meta.txt: expected 10 class names, one per line, found 9"},
        {UF_DATASET_CIFAR10, "cifar_meta_long", UF_ERR_FORMAT,
         "batches.meta.txt: expected 10 class names, one per line, found more than 10"},
        {UF_DATASET_CIFAR100, "cifar100_label", UF_ERR_FORMAT, "train.bin: record 1"},
        {UF_DATASET_MNIST, "idx_magic", UF_ERR_FORMAT, "train-images-idx3-ubyte: bad magic"},
        {UF_DATASET_MNIST, "idx_count", UF_ERR_FORMAT, "train-labels-idx1-ubyte holds 11 labels"},
        {UF_DATASET_MNIST, "idx_extra", UF_ERR_FORMAT, "t10k-images-idx3-ubyte: size 137"},
        {UF_DATASET_MNIST, "idx_short", UF_ERR_FORMAT, "t10k-images-idx3-ubyte: size 135"},
        {UF_DATASET_MNIST, "idx_label_range", UF_ERR_FORMAT, "t10k-labels-idx1-ubyte: label"},
        {UF_DATASET_MNIST, "idx_dims", UF_ERR_FORMAT, "t10k-images-idx3-ubyte: images are"},
        {UF_DATASET_MNIST, "idx_gz_trunc", UF_ERR_FORMAT, "train-images-idx3-ubyte.gz: truncated"},
        {UF_DATASET_MNIST, "idx_gz_trailer", UF_ERR_FORMAT,
         "t10k-labels-idx1-ubyte.gz: truncated (the gzip stream ends early)"},
        {UF_DATASET_MNIST, "idx_gz_extra", UF_ERR_FORMAT, "idx3-ubyte.gz: data beyond"},
        {UF_DATASET_MNIST, "idx_gz_bomb", UF_ERR_FORMAT, "idx3-ubyte.gz: header declares"},
        {UF_DATASET_MNIST, "idx_gz_garbage", UF_ERR_FORMAT, "idx3-ubyte.gz: corrupt gzip"},
        {UF_DATASET_MVTEC, "no_train", UF_ERR_FORMAT, "cat_x: no train/ folder"},
        {UF_DATASET_FOLDER, "no_test_images", UF_ERR_FORMAT, "no_test_images/test: no test"},
        {UF_DATASET_FOLDER, "test_direct", UF_ERR_FORMAT, "test: holds images directly"},
        {UF_DATASET_FOLDER, "no_train_images", UF_ERR_FORMAT, "train/good: no training images "
         "(.png, .jpg, .jpeg, .bmp, .ppm, .pgm, .pbm, .pnm)"},
        {UF_DATASET_LIST, "list_fields", UF_ERR_FORMAT, "test.txt:1: more than 3 fields"},
        {UF_DATASET_LIST, "list_missing", UF_ERR_IO, "test.txt:2:"},
        {UF_DATASET_LIST, "list_nolabel", UF_ERR_FORMAT, "test.txt:1: missing label"},
        {UF_DATASET_LIST, "list_train_anom", UF_ERR_FORMAT, "train.txt:1:"},
        {UF_DATASET_IMAGEFOLDER, "imagefolder_val", UF_ERR_FORMAT, "val/cow: class not in train"},
        {UF_DATASET_MTD, "mtd_noimgs", UF_ERR_FORMAT, "MT_Crack: no Imgs folder"},
        /* wrong kind for a tree: each names what it looked for */
        {UF_DATASET_MTD, "../mvtec", UF_ERR_FORMAT, "no MT_Free/Imgs"},
        {UF_DATASET_CIFAR10, "../mnist", UF_ERR_IO, "data_batch_1.bin"},
        {UF_DATASET_MNIST, "../cifar10", UF_ERR_IO, "train-images-idx3-ubyte"},
        {UF_DATASET_LIST, "../mvtec", UF_ERR_IO, "train.txt"},
        {UF_DATASET_IMAGEFOLDER, "../mtd", UF_ERR_FORMAT, "no train/ folder"},
        {UF_DATASET_MVTEC, "../mtd", UF_ERR_FORMAT, "no category folders"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char root[256];
        snprintf(root, sizeof root, FIX "/broken/%s", cases[i].dir);
        uf_dataset *ds = (uf_dataset *)&ds; /* must be reset to NULL on failure */
        uf_status s = uf_dataset_open(cases[i].kind, root, &ds);
        CHECKF(s == cases[i].want, "%s: got %s (%s), expected %s", root, uf_status_str(s),
               uf_errmsg(), uf_status_str(cases[i].want));
        CHECKF(strstr(uf_errmsg(), cases[i].in_msg) != NULL, "%s: message \"%s\" lacks \"%s\"",
               root, uf_errmsg(), cases[i].in_msg);
        CHECKF(strchr(uf_errmsg(), '\n') == NULL, "%s: multi-line message", root);
        if (s == UF_OK) uf_dataset_free(ds);
        else CHECK(ds == NULL);
    }
}

static void test_mask_size(void)
{
    uf_dataset *ds = open_ok(UF_DATASET_FOLDER, FIX "/broken/mask_size");
    if (!ds) return;
    size_t n;
    const uf_dataset_item *te = split_of(ds, 0, UF_SPLIT_TEST, &n);
    REQUIRE(n == 1);
    uf_image *img = NULL;
    REQUIRE_OK(uf_dataset_load_image(ds, &te[0], &img));
    uint8_t *m = (uint8_t *)&m;
    uf_status s = uf_dataset_load_mask(ds, &te[0], img->width, img->height, &m);
    CHECK(s == UF_ERR_FORMAT && m == NULL);
    CHECKF(strstr(uf_errmsg(), "x_mask.png: mask is 7x6 but its image is 8x6") != NULL, "%s",
           uf_errmsg());
    uf_image_free(img);
    uf_dataset_free(ds);
}

static void test_args(void)
{
    uf_dataset *ds = (uf_dataset *)&ds;
    CHECK(uf_dataset_open(UF_DATASET_MVTEC, NULL, &ds) == UF_ERR_ARG && ds == NULL);
    CHECK(uf_dataset_open(UF_DATASET_MVTEC, "", &ds) == UF_ERR_ARG);
    CHECK(uf_dataset_open(UF_DATASET_MVTEC, FIX, NULL) == UF_ERR_ARG);
    CHECK(uf_dataset_open((uf_dataset_kind)42, FIX "/mvtec", &ds) == UF_ERR_ARG);
    CHECK(uf_dataset_open(UF_DATASET_MVTEC, FIX "/no/such/dir", &ds) == UF_ERR_IO);
    CHECK(strstr(uf_errmsg(), FIX "/no/such/dir") != NULL);
    CHECK(uf_dataset_open(UF_DATASET_FOLDER, FIX "/list/train.txt", &ds) == UF_ERR_IO);
    CHECK(strstr(uf_errmsg(), "not a folder") != NULL);
    uf_dataset_free(NULL);
    CHECK(uf_dataset_n_categories(NULL) == 0 && uf_dataset_category(NULL, 0) == NULL);

    ds = open_ok(UF_DATASET_MVTEC, FIX "/mvtec");
    if (!ds) return;
    const uf_dataset_item *it;
    size_t n;
    CHECK(uf_dataset_split(ds, 2, UF_SPLIT_TRAIN, &it, &n) == UF_ERR_ARG);
    CHECK(uf_dataset_split(ds, -1, UF_SPLIT_TEST, &it, &n) == UF_ERR_ARG);
    CHECK(uf_dataset_split(ds, 0, (uf_split)2, &it, &n) == UF_ERR_ARG);
    CHECK(uf_dataset_split(ds, 0, UF_SPLIT_TEST, NULL, &n) == UF_ERR_ARG);
    uf_dataset_counts cn;
    CHECK(uf_dataset_get_counts(ds, 7, &cn) == UF_ERR_ARG);
    REQUIRE_OK(uf_dataset_split(ds, 0, UF_SPLIT_TEST, &it, &n));
    uint8_t *m;
    CHECK(uf_dataset_load_mask(ds, &it[2], 0, 6, &m) == UF_ERR_ARG);
    CHECK(uf_dataset_load_mask(ds, &it[2], 8, -1, &m) == UF_ERR_ARG);
    CHECK(uf_dataset_load_mask(ds, &it[2], 9, 6, &m) == UF_ERR_FORMAT);
    CHECK(uf_dataset_load_mask(ds, &it[2], 1 << 20, 1 << 20, &m) == UF_ERR_LIMIT);
    uf_image *img;
    CHECK(uf_dataset_load_image(ds, NULL, &img) == UF_ERR_ARG);
    uf_dataset_item fake = it[0];
    fake.path = NULL; /* an in-memory item of a dataset of files */
    CHECK(uf_dataset_load_image(ds, &fake, &img) == UF_ERR_ARG);
    uf_dataset_free(ds);
}

/* ---- threads: semantic test splits are built lazily under a lock --------------------------- */

typedef struct thread_arg {
    const uf_dataset *ds;
    const uf_dataset_item *got[10]; /* test split of each class */
    int fail;
} thread_arg;

static void *split_worker(void *p)
{
    thread_arg *a = p;
    for (int c = 9; c >= 0; c--) {
        size_t n;
        if (uf_dataset_split(a->ds, c, UF_SPLIT_TEST, &a->got[c], &n) != UF_OK || n != 6)
            a->fail = 1;
        else
            for (size_t i = 0; i < n; i++)
                if (a->got[c][i].anomalous != (a->got[c][i].class_id != c)) a->fail = 1;
    }
    return NULL;
}

static void test_threads(void)
{
    uf_dataset *ds = open_ok(UF_DATASET_MNIST, FIX "/mnist");
    if (!ds) return;
    enum { NT = 6 };
    pthread_t th[NT];
    thread_arg args[NT];
    memset(args, 0, sizeof args);
    int started = 0;
    for (int t = 0; t < NT; t++) {
        args[t].ds = ds;
        if (pthread_create(&th[t], NULL, split_worker, &args[t]) == 0) started++;
        else break;
    }
    for (int t = 0; t < started; t++) pthread_join(th[t], NULL);
    CHECK(started == NT);
    for (int t = 0; t < started; t++) {
        CHECK(!args[t].fail);
        for (int c = 0; c < 10; c++) CHECK(args[t].got[c] == args[0].got[c]); /* built once */
    }
    uf_dataset_free(ds);
}

/* ---- real data ------------------------------------------------------------------------------ */

static int cmp_cstr(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_real_mtd(void)
{
    const char *sh = th_shared_dir();
    if (!sh) SKIP("../shared not found: real MTD check not run");
    char root[512];
    snprintf(root, sizeof root, "%s/data/mtd", sh);
    uf_dataset *ds = open_ok(UF_DATASET_MTD, root);
    if (!ds) return;
    uf_dataset_counts cn;
    REQUIRE_OK(uf_dataset_get_counts(ds, 0, &cn));
    /* 952 free: 191 test (i % 5 == 0) + 761 train; defective 115+85+57+32+103 = 392 */
    CHECKF(cn.n_train == 761 && cn.n_test == 191 + 392 && cn.n_test_anomalous == 392 &&
               cn.n_test_masked == 392,
           "train %zu test %zu anomalous %zu masked %zu", cn.n_train, cn.n_test,
           cn.n_test_anomalous, cn.n_test_masked);
    static const char *const types[6] = {"good", "Blowhole", "Break", "Crack", "Fray", "Uneven"};
    static const size_t per_type[6] = {191, 115, 85, 57, 32, 103};
    REQUIRE(uf_dataset_n_types(ds, 0) == 6);
    size_t count[6] = {0}, n, ntr;
    const uf_dataset_item *te = split_of(ds, 0, UF_SPLIT_TEST, &n);
    const uf_dataset_item *tr = split_of(ds, 0, UF_SPLIT_TRAIN, &ntr);
    for (int t = 0; t < 6; t++) CHECK(!strcmp(uf_dataset_type(ds, 0, t), types[t]));
    for (size_t i = 0; i < n; i++)
        if (te[i].type_id >= 0 && te[i].type_id < 6) count[te[i].type_id]++;
    for (int t = 0; t < 6; t++)
        CHECKF(count[t] == per_type[t], "%s: %zu test images", types[t], count[t]);
    /* the split is the bytewise order of MT_Free's .jpg names, every fifth to test */
    char dir[600];
    snprintf(dir, sizeof dir, "%s/MT_Free/Imgs", root);
    DIR *d = opendir(dir);
    REQUIRE(d != NULL);
    char **names = NULL;
    size_t nn = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l < 4 || strcmp(e->d_name + l - 4, ".jpg")) continue;
        if (nn == cap) names = realloc(names, (cap = cap ? 2 * cap : 1024) * sizeof *names);
        names[nn++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, nn, sizeof *names, cmp_cstr);
    CHECK(nn == 952);
    size_t it = 0, itr = 0;
    int bad = 0;
    for (size_t i = 0; i < nn; i++) {
        char want[512];
        snprintf(want, sizeof want, "MT_Free/Imgs/%s", names[i]);
        const uf_dataset_item *x = i % 5 == 0 ? (it < n ? &te[it++] : NULL)
                                              : (itr < ntr ? &tr[itr++] : NULL);
        bad += !x || strcmp(x->name, want) != 0;
        free(names[i]);
    }
    free(names);
    CHECKF(bad == 0, "%d MT_Free images in the wrong split or order", bad);
    /* one defective image and its mask */
    const uf_dataset_item *last = n ? &te[n - 1] : NULL;
    if (last) {
        uf_image *img = NULL;
        REQUIRE_OK(uf_dataset_load_image(ds, last, &img));
        uint8_t *m = NULL;
        uf_status s = uf_dataset_load_mask(ds, last, img->width, img->height, &m);
        CHECKF(s == UF_OK, "%s", uf_errmsg());
        size_t ones = 0;
        for (int i = 0; m && i < img->width * img->height; i++) ones += m[i];
        CHECKF(ones > 0, "%s: empty mask", last->name);
        free(m);
        uf_image_free(img);
    }
    uf_dataset_free(ds);
}

static void test_real_mvtec(void)
{
    const char *sh = th_shared_dir();
    if (!sh) SKIP("../shared not found: real MVTec check not run");
    char root[512];
    snprintf(root, sizeof root, "%s/data/mvtec_ad", sh);
    uf_dataset *ds = open_ok(UF_DATASET_MVTEC, root);
    if (!ds) return;
    int c = uf_dataset_find_category(ds, "bottle");
    REQUIRE(c >= 0);
    uf_dataset_counts cn;
    REQUIRE_OK(uf_dataset_get_counts(ds, c, &cn));
    CHECKF(cn.n_train == 209 && cn.n_test == 83 && cn.n_test_anomalous == 63 &&
               cn.n_test_masked == 63,
           "train %zu test %zu anomalous %zu masked %zu", cn.n_train, cn.n_test,
           cn.n_test_anomalous, cn.n_test_masked);
    CHECK(uf_dataset_n_types(ds, c) == 4);
    size_t n;
    const uf_dataset_item *te = split_of(ds, c, UF_SPLIT_TEST, &n);
    if (n == 83) {
        CHECK(!strcmp(te[20].name, "bottle/test/broken_large/000.png"));
        CHECK(ends_with(te[20].mask_path, "/bottle/ground_truth/broken_large/000_mask.png"));
        uf_image *img = NULL;
        REQUIRE_OK(uf_dataset_load_image(ds, &te[20], &img));
        CHECK(img->width == 900 && img->height == 900);
        uint8_t *m = NULL;
        REQUIRE_OK(uf_dataset_load_mask(ds, &te[20], img->width, img->height, &m));
        size_t ones = 0;
        for (int i = 0; i < 900 * 900; i++) ones += m[i];
        CHECKF(ones > 1000 && ones < 900 * 900 / 2, "%zu mask pixels", ones);
        free(m);
        uf_image_free(img);
    }
    uf_dataset_free(ds);
}

static void test_real_fashion_mnist(void)
{
    const char *root = "/usr/share/datasets/fashion-mnist";
    struct stat st;
    if (stat(root, &st) != 0)
        SKIP("%s not found (Debian package dataset-fashion-mnist): real check not run", root);
    uf_dataset *ds = open_ok(UF_DATASET_FASHION_MNIST, root);
    if (!ds) return;
    uf_dataset_info info;
    uf_dataset_get_info(ds, &info);
    CHECK(info.n_images == 70000 && info.image_width == 28 && info.image_height == 28);
    CHECK(!strcmp(uf_dataset_category(ds, 0), "T-shirt/top"));
    CHECK(!strcmp(uf_dataset_category(ds, 9), "Ankle boot"));
    /* balanced: 6000 train and 1000 test images per class */
    for (int c = 0; c < 10; c++) {
        uf_dataset_counts cn;
        REQUIRE_OK(uf_dataset_get_counts(ds, c, &cn));
        CHECKF(cn.n_train == 6000 && cn.n_test == 10000 && cn.n_test_anomalous == 9000,
               "class %d: %zu %zu %zu", c, cn.n_train, cn.n_test, cn.n_test_anomalous);
    }
    size_t n;
    const uf_dataset_item *te = split_of(ds, 9, UF_SPLIT_TEST, &n);
    CHECK(n == 10000);
    if (n == 10000) {
        /* the first images of the published files: test 9 2 1 1 6, train (class 9 first) */
        static const int first[5] = {9, 2, 1, 1, 6};
        for (int i = 0; i < 5; i++) CHECKF(te[i].class_id == first[i], "test %d", i);
        CHECK(!te[0].anomalous && te[1].anomalous);
        uf_image *img = NULL;
        REQUIRE_OK(uf_dataset_load_image(ds, &te[0], &img));
        CHECK(img->width == 28 && img->height == 28);
        uf_image_free(img);
    }
    const uf_dataset_item *tr = split_of(ds, 9, UF_SPLIT_TRAIN, &n);
    CHECK(n == 6000 && tr[0].image_id == 0 && !strcmp(tr[0].name, "train-images-idx3-ubyte.gz#0"));
    uf_dataset_free(ds);
}

int main(void)
{
    RUN(test_kind_names);
    RUN(test_mvtec);
    RUN(test_btad);
    RUN(test_mtd_fixture);
    RUN(test_folder);
    RUN(test_list);
    RUN(test_imagefolder);
    RUN(test_cifar10);
    RUN(test_cifar100);
    RUN(test_mnist);
    RUN(test_broken);
    RUN(test_mask_size);
    RUN(test_args);
    RUN(test_threads);
    RUN(test_real_mtd);
    RUN(test_real_mvtec);
    RUN(test_real_fashion_mnist);
    return TEST_DONE();
}
