/*
 * test_imgout.c - image output (uf_image_write_png, uf_heatmap_overlay) and the procedural
 * demo dataset (tools/demo_data.c).
 *
 * PNG: round trips through uf_image_load, argument errors, and the atomic-write promise
 * (a missing directory, a target that cannot be replaced and a write that fails half way
 * all leave no file and no "<path>.tmp.*" behind, and an existing target untouched).
 * Overlay: exact comparison with golden outputs made by matplotlib (cm.jet) in
 * scripts/gen_imgout_golden.py, plus the documented special cases (auto range, constant
 * map, NaN, alpha 0 and 1).
 * Demo data: the dataset generator of the CLI, linked from its internal archive
 * (build/libufcli.a); checks determinism, sizes, names and masks.
 */
#include "../tools/demo_data.h"
#include "core/internal.h"
#include "harness.h"
#include "uniformaly.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define GOLD "tests/data/imgout"

/* ---- helpers ----------------------------------------------------------------------------- */

/* A fresh scratch directory under /tmp (path in a static buffer), or NULL. */
static const char *scratch_dir(void)
{
    static char dir[64];
    snprintf(dir, sizeof dir, "/tmp/uf_test_imgout.XXXXXX");
    return mkdtemp(dir);
}

/* Remove the regular files of dir (one level), then dir itself. */
static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char p[512];
        while ((e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            if (unlink(p) != 0) rmdir(p); /* a sub-directory made by a test */
        }
        closedir(d);
    }
    rmdir(dir);
}

/* Number of entries of dir whose name contains needle ("" counts all). */
static int count_entries(const char *dir, const char *needle)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (strstr(e->d_name, needle)) n++;
    }
    closedir(d);
    return n;
}

/* A w x h image of seeded random bytes (NULL on allocation failure). */
static uf_image *random_image(int w, int h, uint64_t seed)
{
    uf_image *img = NULL;
    if (uf_image_new(w, h, &img) != UF_OK) return NULL;
    for (size_t i = 0; i < (size_t)w * h * 3; i++) img->rgb[i] = (uint8_t)(uf_splitmix64(&seed) >> 56);
    return img;
}

static int same_image(const uf_image *a, const uf_image *b)
{
    return a && b && a->width == b->width && a->height == b->height &&
           memcmp(a->rgb, b->rgb, (size_t)a->width * a->height * 3) == 0;
}

/* Read exactly n bytes of a golden file into buf; 0 on success. */
static int read_exact(const char *path, void *buf, size_t n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t got = fread(buf, 1, n, f);
    int extra = fgetc(f) != EOF;
    fclose(f);
    return got == n && !extra ? 0 : -1;
}

/* matplotlib's jet table [256][3] from the golden file; 0 on success. */
static int load_lut(uint8_t lut[256][3]) { return read_exact(GOLD "/jet_lut.u8", lut, 768); }

/* ---- PNG ----------------------------------------------------------------------------------- */

static void test_png_roundtrip(void)
{
    const char *dir = scratch_dir();
    REQUIRE(dir != NULL);
    static const int sizes[][2] = {{1, 1}, {37, 23}, {256, 3}, {3, 256}, {300, 200}};
    char path[256];
    snprintf(path, sizeof path, "%s/out.png", dir);
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        uf_image *a = random_image(sizes[k][0], sizes[k][1], 100 + k), *b = NULL;
        CHECK(a != NULL);
        if (!a) break;
        uf_status s = uf_image_write_png(a, path);
        CHECKF(s == UF_OK, "%dx%d: %s", a->width, a->height, uf_errmsg());
        if (s == UF_OK) {
            s = uf_image_load(path, &b);
            CHECKF(s == UF_OK, "%s", uf_errmsg());
            CHECKF(same_image(a, b), "%dx%d differs after the round trip", a->width,
                   a->height);
            struct stat st;
            CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0644);
        }
        uf_image_free(a);
        uf_image_free(b);
    }
    CHECK(count_entries(dir, "") == 1); /* out.png only */
    remove_dir(dir);
}

/* The encoder's paths (pngfast.c): a smooth image (Huffman blocks, several of them), a
 * constant one (one literal), noise (stored blocks), one that changes between blocks, each
 * decoded back by libpng (which checks the CRCs, zlib the Adler-32) pixel for pixel. */
static void test_png_encoder_paths(void)
{
    enum { W = 700, H = 400 }; /* 2101 bytes a row: ~250 rows a block, two blocks */
    uf_image *a = NULL, *b = NULL;
    REQUIRE_OK(uf_image_new(W, H, &a));
    for (int kind = 0; kind < 4; kind++) {
        uint64_t r = 88172645463325252ull;
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                for (int c = 0; c < 3; c++) {
                    r ^= r << 13, r ^= r >> 7, r ^= r << 17;
                    uint8_t v = kind == 0   ? (uint8_t)(x / 3 + y / 5 + 40 * c + (r & 3))
                                : kind == 1 ? 77
                                : kind == 2 ? (uint8_t)(r >> 24)
                                            : (uint8_t)(y < 249 ? r >> 24 : (uint64_t)(x * 7 + c) & 255); /* stored, then Huffman */
                    a->rgb[3 * ((size_t)y * W + x) + c] = v;
                }
        uint8_t *png = NULL;
        size_t n = 0;
        REQUIRE_OK(uf_image_encode_png(a, &png, &n));
        uf_status s = uf_image_decode(png, n, &b);
        CHECKF(s == UF_OK, "kind %d: %s", kind, uf_errmsg());
        if (s == UF_OK) CHECKF(same_image(a, b), "kind %d differs after the round trip", kind);
        if (kind < 2) CHECKF(n < (size_t)W * H * 3 / (kind ? 50 : 2), "kind %d: %zu bytes, too large", kind, n);
        if (kind == 2) CHECKF(n < (size_t)W * H * 3 + 4096, "noise: %zu bytes", n);
        free(png);
        uf_image_free(b);
        b = NULL;
    }
    uf_image_free(a);
}

/* uf_image_encode_png gives the bytes uf_image_write_png writes, which decode back */
static void test_png_in_memory(void)
{
    const char *dir = scratch_dir();
    REQUIRE(dir != NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/mem.png", dir);
    static const int sizes[][2] = {{1, 1}, {37, 23}, {300, 200}};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        uf_image *a = random_image(sizes[k][0], sizes[k][1], 200 + k), *b = NULL;
        REQUIRE(a != NULL);
        uint8_t *buf = NULL, file[1 << 18];
        size_t len = 0;
        REQUIRE_OK(uf_image_encode_png(a, &buf, &len));
        REQUIRE_OK(uf_image_write_png(a, path));
        FILE *f = fopen(path, "rb");
        size_t flen = f ? fread(file, 1, sizeof file, f) : 0;
        if (f) fclose(f);
        CHECKF(flen == len && len > 8 && !memcmp(buf, file, len), "%dx%d: %zu bytes in memory, %zu in the file",
               a->width, a->height, len, flen);
        CHECK(uf_image_decode(buf, len, &b) == UF_OK && same_image(a, b));
        free(buf);
        uf_image_free(a);
        uf_image_free(b);
    }
    uint8_t *buf = (uint8_t *)1;
    size_t len = 1;
    CHECK(uf_image_encode_png(NULL, &buf, &len) == UF_ERR_ARG && buf == NULL && len == 0);
    uf_image nopix = {4, 4, NULL};
    CHECK(uf_image_encode_png(&nopix, &buf, &len) == UF_ERR_ARG);
    remove_dir(dir);
}

static void test_png_args(void)
{
    uf_image *img = random_image(4, 4, 1);
    REQUIRE(img != NULL);
    CHECK(uf_image_write_png(NULL, "/tmp/x.png") == UF_ERR_ARG);
    CHECK(uf_image_write_png(img, NULL) == UF_ERR_ARG);
    CHECK(uf_image_write_png(img, "") == UF_ERR_ARG);
    uf_image bad = {0, 4, img->rgb};
    CHECK(uf_image_write_png(&bad, "/tmp/uf_never_written.png") == UF_ERR_ARG);
    uf_image nopix = {4, 4, NULL};
    CHECK(uf_image_write_png(&nopix, "/tmp/uf_never_written.png") == UF_ERR_ARG);
    CHECK(access("/tmp/uf_never_written.png", F_OK) != 0);
    uf_image_free(img);
}

static void test_png_missing_dir(void)
{
    const char *dir = scratch_dir();
    REQUIRE(dir != NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/no_such_dir/out.png", dir);
    uf_image *img = random_image(8, 8, 2);
    REQUIRE(img != NULL);
    uf_status s = uf_image_write_png(img, path);
    CHECK(s == UF_ERR_IO);
    CHECKF(strstr(uf_errmsg(), path) != NULL, "message does not name the path: %s",
           uf_errmsg());
    CHECK(access(path, F_OK) != 0);
    CHECK(count_entries(dir, "") == 0);
    uf_image_free(img);
    remove_dir(dir);
}

/* Replacing an existing file: the new image lands, no temporary file remains. */
static void test_png_overwrite(void)
{
    const char *dir = scratch_dir();
    REQUIRE(dir != NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/img.png", dir);
    uf_image *a = random_image(20, 10, 3), *b = random_image(13, 17, 4), *r = NULL;
    REQUIRE(a && b);
    REQUIRE_OK(uf_image_write_png(a, path));
    REQUIRE_OK(uf_image_write_png(b, path));
    REQUIRE_OK(uf_image_load(path, &r));
    CHECK(same_image(b, r));
    CHECK(count_entries(dir, ".tmp.") == 0);
    CHECK(count_entries(dir, "") == 1);
    uf_image_free(a);
    uf_image_free(b);
    uf_image_free(r);
    remove_dir(dir);
}

/* The target is a directory: rename() fails after the PNG was written; the temporary file
 * must be removed and the directory left alone. */
static void test_png_rename_fails(void)
{
    const char *dir = scratch_dir();
    REQUIRE(dir != NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/target", dir);
    REQUIRE(mkdir(path, 0755) == 0);
    uf_image *img = random_image(8, 8, 5);
    REQUIRE(img != NULL);
    uf_status s = uf_image_write_png(img, path);
    CHECK(s == UF_ERR_IO);
    CHECKF(strstr(uf_errmsg(), path) != NULL, "message: %s", uf_errmsg());
    struct stat st;
    CHECK(stat(path, &st) == 0 && S_ISDIR(st.st_mode));
    CHECK(count_entries(dir, ".tmp.") == 0);
    uf_image_free(img);
    remove_dir(dir);
}

/* A write that fails half way (file size limit, EFBIG): UF_ERR_IO, old file intact, no
 * temporary left (ASan checks for leaks). */
static void test_png_write_error(void)
{
    const char *dir = scratch_dir();
    REQUIRE(dir != NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/keep.png", dir);
    uf_image *old = random_image(4, 4, 6), *big = random_image(256, 256, 7), *r = NULL;
    REQUIRE(old && big);
    REQUIRE_OK(uf_image_write_png(old, path));

    struct rlimit saved, lim;
    REQUIRE(getrlimit(RLIMIT_FSIZE, &saved) == 0);
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN); /* get EFBIG instead of a signal */
    lim = saved;
    lim.rlim_cur = 32768; /* the random 256x256 image needs ~197 kB */
    if (setrlimit(RLIMIT_FSIZE, &lim) != 0) {
        signal(SIGXFSZ, prev);
        uf_image_free(old);
        uf_image_free(big);
        remove_dir(dir);
        SKIP("cannot lower RLIMIT_FSIZE");
    }
    uf_status s = uf_image_write_png(big, path);
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", uf_errmsg());
    setrlimit(RLIMIT_FSIZE, &saved);
    signal(SIGXFSZ, prev);

    CHECKF(s == UF_ERR_IO, "status %s", uf_status_str(s));
    CHECKF(strstr(msg, path) != NULL, "message: %s", msg);
    CHECK(count_entries(dir, ".tmp.") == 0);
    CHECK(uf_image_load(path, &r) == UF_OK && same_image(old, r));
    uf_image_free(r);
    uf_image_free(old);
    uf_image_free(big);
    remove_dir(dir);
}

/* ---- overlay --------------------------------------------------------------------------------- */

#define GW 16
#define GH 8

/* Every golden case of cases.txt, compared byte for byte. */
static void test_overlay_golden(void)
{
    uf_image *img = NULL;
    REQUIRE_OK(uf_image_new(GW, GH, &img));
    float map[GH * GW]; /* [8][16] */
    uint8_t exp[GH * GW * 3];
    if (read_exact(GOLD "/img.u8", img->rgb, sizeof exp) != 0 ||
        read_exact(GOLD "/map.f32", map, sizeof map) != 0) {
        uf_image_free(img);
        CHECKF(0, "missing golden files in %s (run scripts/gen_imgout_golden.py)", GOLD);
        return;
    }
    FILE *f = fopen(GOLD "/cases.txt", "r");
    if (!f) uf_image_free(img);
    REQUIRE(f != NULL);
    char name[64], slo[64], shi[64], sal[64], file[64], path[256];
    int ncase = 0;
    while (fscanf(f, "%63s %63s %63s %63s %63s", name, slo, shi, sal, file) == 5) {
        float lo = strtof(slo, NULL), hi = strtof(shi, NULL), al = strtof(sal, NULL);
        snprintf(path, sizeof path, GOLD "/%s", file);
        if (read_exact(path, exp, sizeof exp) != 0) {
            CHECKF(0, "cannot read %s", path);
            continue;
        }
        uf_image *o = NULL;
        uf_status s = uf_heatmap_overlay(img, map, lo, hi, al, &o);
        CHECKF(s == UF_OK, "%s: %s", name, uf_errmsg());
        if (s != UF_OK) continue;
        int bad = 0, maxd = 0;
        for (size_t i = 0; i < sizeof exp; i++) {
            int d = abs((int)o->rgb[i] - (int)exp[i]);
            bad += d != 0;
            if (d > maxd) maxd = d;
        }
        CHECKF(bad == 0, "case %s: %d of %zu bytes differ from matplotlib (max %d)", name, bad,
               sizeof exp, maxd);
        uf_image_free(o);
        ncase++;
    }
    fclose(f);
    CHECKF(ncase >= 7, "only %d golden cases", ncase);
    uf_image_free(img);
}

/* alpha 1 over a ramp hitting every bin once reproduces matplotlib's whole table. */
static void test_overlay_lut(void)
{
    uint8_t lut[256][3];
    REQUIRE(load_lut(lut) == 0);
    /* jet's ends: dark blue (0, 0, 128) at 0, dark red (128, 0, 0) at 1 */
    CHECK(lut[0][0] == 0 && lut[0][1] == 0 && lut[0][2] == 128);
    CHECK(lut[255][0] == 128 && lut[255][1] == 0 && lut[255][2] == 0);
    uf_image *img = random_image(256, 1, 8), *o = NULL;
    REQUIRE(img != NULL);
    float map[256];
    for (int i = 0; i < 256; i++) map[i] = (i + 0.5f) / 256.0f;
    uf_status s = uf_heatmap_overlay(img, map, 0.0f, 1.0f, 1.0f, &o);
    CHECKF(s == UF_OK, "%s", uf_errmsg());
    if (s == UF_OK) {
        int bad = 0;
        for (int i = 0; i < 256; i++) bad += memcmp(o->rgb + 3 * i, lut[i], 3) != 0;
        CHECKF(bad == 0, "%d of 256 colormap entries differ from matplotlib", bad);
    }
    uf_image_free(o);
    /* t exactly 1 (and above) is the last entry, t exactly 0 (and below) the first */
    float ends[4] = {1.0f, 0.0f, 5.0f, -5.0f};
    uf_image *img4 = random_image(4, 1, 9);
    REQUIRE(img4 != NULL);
    s = uf_heatmap_overlay(img4, ends, 0.0f, 1.0f, 1.0f, &o);
    CHECK(s == UF_OK);
    if (s == UF_OK) {
        CHECK(!memcmp(o->rgb, lut[255], 3) && !memcmp(o->rgb + 3, lut[0], 3));
        CHECK(!memcmp(o->rgb + 6, lut[255], 3) && !memcmp(o->rgb + 9, lut[0], 3));
    }
    uf_image_free(o);
    uf_image_free(img4);
    uf_image_free(img);
}

/* hi <= lo or non-finite bounds use the map's finite min and max. */
static void test_overlay_auto_range(void)
{
    enum { W = 23, H = 11 };
    uf_image *img = random_image(W, H, 10);
    REQUIRE(img != NULL);
    float map[W * H];
    uint64_t s = 77;
    float mn = INFINITY, mx = -INFINITY;
    for (int i = 0; i < W * H; i++) {
        map[i] = (float)(uf__unif53(&s) * 7.0 - 2.0);
        if (map[i] < mn) mn = map[i];
        if (map[i] > mx) mx = map[i];
    }
    uf_image *ref = NULL, *o = NULL;
    REQUIRE_OK(uf_heatmap_overlay(img, map, mn, mx, 0.55f, &ref));
    const float bounds[][2] = {{0, 0}, {3, -3}, {NAN, 1}, {0, INFINITY}, {-INFINITY, 2}};
    for (size_t k = 0; k < sizeof bounds / sizeof *bounds; k++) {
        CHECK(uf_heatmap_overlay(img, map, bounds[k][0], bounds[k][1], 0.55f, &o) == UF_OK);
        CHECKF(same_image(o, ref), "bounds #%zu differ from the explicit min/max", k);
        uf_image_free(o);
        o = NULL;
    }
    /* Inf values in the map do not enter the automatic range; they clip to the ends */
    map[5] = INFINITY;
    map[6] = -INFINITY;
    CHECK(uf_heatmap_overlay(img, map, 0, 0, 1.0f, &o) == UF_OK);
    uint8_t lut[256][3];
    if (o && load_lut(lut) == 0) {
        CHECK(!memcmp(o->rgb + 15, lut[255], 3));
        CHECK(!memcmp(o->rgb + 18, lut[0], 3));
        /* the old extremes still reach both ends of the colormap */
        int has_lo = 0, has_hi = 0;
        for (int i = 0; i < W * H; i++) {
            if (i == 5 || i == 6) continue;
            if (map[i] == mn) has_lo = !memcmp(o->rgb + 3 * i, lut[0], 3);
            if (map[i] == mx) has_hi = !memcmp(o->rgb + 3 * i, lut[255], 3);
        }
        CHECK(has_lo && has_hi);
    }
    uf_image_free(o);
    uf_image_free(ref);
    uf_image_free(img);
}

/* A constant map (auto range) is drawn as t = 0; with a range it takes its own colour. */
static void test_overlay_constant(void)
{
    uint8_t lut[256][3];
    REQUIRE(load_lut(lut) == 0);
    enum { W = 9, H = 7 };
    uf_image *img = random_image(W, H, 11), *o = NULL;
    REQUIRE(img != NULL);
    float map[W * H];
    for (int i = 0; i < W * H; i++) map[i] = 3.7f;
    CHECK(uf_heatmap_overlay(img, map, 0, 0, 1.0f, &o) == UF_OK);
    int bad = 0;
    for (int i = 0; o && i < W * H; i++) bad += memcmp(o->rgb + 3 * i, lut[0], 3) != 0;
    CHECK(o && bad == 0);
    uf_image_free(o);
    o = NULL;
    /* t = 0.5 -> bin 128 */
    CHECK(uf_heatmap_overlay(img, map, 2.7f, 4.7f, 1.0f, &o) == UF_OK);
    bad = 0;
    for (int i = 0; o && i < W * H; i++) bad += memcmp(o->rgb + 3 * i, lut[128], 3) != 0;
    CHECK(o && bad == 0);
    uf_image_free(o);
    uf_image_free(img);
}

/* NaN map values are drawn as t = 0 and ignored by the automatic range. */
static void test_overlay_nan(void)
{
    uint8_t lut[256][3];
    REQUIRE(load_lut(lut) == 0);
    enum { W = 8, H = 8 };
    uf_image *img = random_image(W, H, 12), *o = NULL, *ref = NULL;
    REQUIRE(img != NULL);
    float map[W * H];
    for (int i = 0; i < W * H; i++) map[i] = (i % 3 == 0) ? NAN : (float)i;
    /* explicit range and auto range agree (finite min 1, max 62) */
    REQUIRE_OK(uf_heatmap_overlay(img, map, 1.0f, 62.0f, 1.0f, &ref));
    REQUIRE_OK(uf_heatmap_overlay(img, map, 0, 0, 1.0f, &o));
    CHECK(same_image(o, ref));
    int bad = 0;
    for (int i = 0; i < W * H; i += 3) bad += memcmp(o->rgb + 3 * i, lut[0], 3) != 0;
    CHECKF(bad == 0, "%d NaN pixels not drawn as t = 0", bad);
    CHECK(!memcmp(o->rgb + 3 * 62, lut[255], 3));
    uf_image_free(o);
    o = NULL;
    /* all NaN: every pixel t = 0 */
    for (int i = 0; i < W * H; i++) map[i] = NAN;
    REQUIRE_OK(uf_heatmap_overlay(img, map, 0, 0, 1.0f, &o));
    bad = 0;
    for (int i = 0; i < W * H; i++) bad += memcmp(o->rgb + 3 * i, lut[0], 3) != 0;
    CHECK(bad == 0);
    uf_image_free(o);
    uf_image_free(ref);
    uf_image_free(img);
}

/* alpha 0 returns the image unchanged; alpha 1 the pure colormap, whatever the image. */
static void test_overlay_alpha_ends(void)
{
    enum { W = 31, H = 17 };
    uf_image *a = random_image(W, H, 13), *b = random_image(W, H, 14), *o = NULL, *p = NULL;
    REQUIRE(a && b);
    float map[W * H];
    uint64_t s = 5;
    for (int i = 0; i < W * H; i++) map[i] = (float)uf__unif53(&s);
    REQUIRE_OK(uf_heatmap_overlay(a, map, 0, 1, 0.0f, &o));
    CHECK(same_image(o, a));
    CHECK(o->rgb != a->rgb); /* a new image */
    uf_image_free(o);
    o = NULL;
    REQUIRE_OK(uf_heatmap_overlay(a, map, 0, 1, 1.0f, &o));
    REQUIRE_OK(uf_heatmap_overlay(b, map, 0, 1, 1.0f, &p));
    CHECK(same_image(o, p));
    uint8_t lut[256][3];
    if (load_lut(lut) == 0) {
        int bad = 0;
        for (int i = 0; i < W * H; i++) {
            int k = (int)(map[i] * 256.0);
            k = k > 255 ? 255 : k;
            bad += memcmp(o->rgb + 3 * i, lut[k], 3) != 0;
        }
        CHECK(bad == 0);
    }
    uf_image_free(o);
    uf_image_free(p);
    uf_image_free(a);
    uf_image_free(b);
}

/* NULL arguments and alpha outside [0, 1] (NaN included) are caller errors. */
static void test_overlay_args(void)
{
    uf_image *img = random_image(2, 2, 15), *o = (uf_image *)1;
    REQUIRE(img != NULL);
    float map[4] = {0, 1, 2, 3};
    CHECK(uf_heatmap_overlay(NULL, map, 0, 1, 0.5f, &o) == UF_ERR_ARG && o == NULL);
    CHECK(uf_heatmap_overlay(img, NULL, 0, 1, 0.5f, &o) == UF_ERR_ARG);
    CHECK(uf_heatmap_overlay(img, map, 0, 1, 0.5f, NULL) == UF_ERR_ARG);
    CHECK(uf_heatmap_overlay(img, map, 0, 1, -0.01f, &o) == UF_ERR_ARG && o == NULL);
    CHECK(uf_heatmap_overlay(img, map, 0, 1, 1.01f, &o) == UF_ERR_ARG);
    CHECK(uf_heatmap_overlay(img, map, 0, 1, NAN, &o) == UF_ERR_ARG);
    CHECK(strstr(uf_errmsg(), "alpha") != NULL);
    uf_image_free(img);
}

/* ---- demo dataset ------------------------------------------------------------------------- */

/* 1 if the two sets hold identical images, masks, types and names. */
static int demo_same(const demo_set *a, const demo_set *b)
{
    if (a->n_train != b->n_train || a->n_test != b->n_test) return 0;
    for (int i = 0; i < a->n_train + a->n_test; i++) {
        const demo_item *x = i < a->n_train ? &a->train[i] : &a->test[i - a->n_train];
        const demo_item *y = i < b->n_train ? &b->train[i] : &b->test[i - b->n_train];
        if (!same_image(x->img, y->img) || strcmp(x->name, y->name) || x->type != y->type)
            return 0;
        if (!x->mask != !y->mask) return 0;
        size_t n = (size_t)x->img->width * x->img->height;
        if (x->mask && memcmp(x->mask, y->mask, n)) return 0;
    }
    return 1;
}

/* Same seed: identical bytes, masks and names; another seed: other images. Each image
 * has its own random stream, so asking for more images leaves the first ones unchanged. */
static void test_demo_deterministic(void)
{
    const char *cats[2] = {"texture", "object"};
    for (int c = 0; c < 2; c++) {
        demo_set a, b, d;
        REQUIRE(demo_make(cats[c], 42, 96, 2, 1, 1, &a) == 0);
        REQUIRE(demo_make(cats[c], 42, 96, 2, 1, 1, &b) == 0);
        REQUIRE(demo_make(cats[c], 43, 96, 2, 1, 1, &d) == 0);
        CHECKF(demo_same(&a, &b), "%s: same seed, different data", cats[c]);
        CHECKF(!same_image(a.train[0].img, d.train[0].img) &&
                   !same_image(a.test[1].img, d.test[1].img),
               "%s: seeds 42 and 43 give the same images", cats[c]);
        /* images do not depend on how many others were requested */
        demo_set e;
        REQUIRE(demo_make(cats[c], 42, 96, 3, 1, 2, &e) == 0);
        CHECK(same_image(a.train[1].img, e.train[1].img));
        CHECK(same_image(a.test[1].img, e.test[1].img)); /* test_scratch_000 */
        /* every good image is different */
        CHECK(!same_image(a.train[0].img, a.train[1].img));
        CHECK(!same_image(a.train[0].img, a.test[0].img));
        demo_free(&a);
        demo_free(&b);
        demo_free(&d);
        demo_free(&e);
    }
}

/* Unknown category, tiny size, negative counts or NULL out: -1 and an empty set. */
static void test_demo_bad_args(void)
{
    demo_set s;
    CHECK(demo_make("carpet", 1, 64, 1, 1, 1, &s) == -1 && s.train == NULL && s.n_test == 0);
    CHECK(demo_make("texture", 1, 8, 1, 1, 1, &s) == -1);
    CHECK(demo_make("object", 1, 64, -1, 1, 1, &s) == -1);
    CHECK(demo_make(NULL, 1, 64, 1, 1, 1, &s) == -1);
    CHECK(demo_make("object", 1, 64, 1, 1, 1, NULL) == -1);
    /* empty splits are fine */
    REQUIRE(demo_make("object", 1, 64, 0, 0, 0, &s) == 0);
    CHECK(s.n_train == 0 && s.n_test == 0);
    demo_free(&s);
    demo_free(&s); /* twice: the set was zeroed */
    demo_free(NULL);
}

/* Sizes, names, order, and masks: non-empty exactly for defects, 0/1, clear of the image
 * border, a visible but modest area; on "object" inside the object's disc. */
static void demo_check_set(const char *cat, int S, int ntr, int ngood, int nper)
{
    demo_set s;
    REQUIRE(demo_make(cat, 2024, S, ntr, ngood, nper, &s) == 0);
    CHECK(strcmp(s.category, cat) == 0);
    CHECK(s.n_train == ntr && s.n_test == ngood + 3 * nper);
    static const char *const order[3] = {"scratch", "spot", "missing"};
    for (int i = 0; i < s.n_train + s.n_test; i++) {
        const demo_item *it = i < s.n_train ? &s.train[i] : &s.test[i - s.n_train];
        int ti = i - s.n_train; /* index into test */
        const char *want = (i < s.n_train || ti < ngood) ? "good" : order[(ti - ngood) / nper];
        CHECKF(it->img && it->img->width == S && it->img->height == S, "%s: size", it->name);
        CHECKF(it->type && !strcmp(it->type, want), "%s: type %s, want %s", it->name,
               it->type ? it->type : "(null)", want);
        char nm[64];
        int idx = i < s.n_train ? i : ti < ngood ? ti : (ti - ngood) % nper;
        snprintf(nm, sizeof nm, "%s_%s_%03d", i < s.n_train ? "train" : "test", want, idx);
        CHECKF(!strcmp(it->name, nm), "name %s, want %s", it->name, nm);
        int is_def = strcmp(want, "good") != 0;
        CHECKF(!it->mask == !is_def, "%s: mask %s", it->name, it->mask ? "set" : "NULL");
        if (!it->mask || !it->img) continue;

        /* mask statistics */
        long area = 0, border = 0, nonbin = 0;
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) {
                uint8_t m = it->mask[(size_t)y * S + x];
                if (m > 1) nonbin++;
                if (!m) continue;
                area++;
                if (x == 0 || y == 0 || x == S - 1 || y == S - 1) border++;
            }
        double frac = (double)area / ((double)S * S);
        CHECKF(nonbin == 0, "%s: mask values other than 0/1", it->name);
        CHECKF(border == 0, "%s: defect touches the image border", it->name);
        CHECKF(frac > 0.0005 && frac < 0.04, "%s: mask covers %.4f of the image", it->name,
               frac);

        if (!strcmp(cat, "object")) {
            /* Estimate the object from the image: pixels brighter than the dark background
             * (luma <= ~32) plus the defect itself; centroid and radius of that region. */
            double sx = 0, sy = 0, n = 0;
            for (int y = 0; y < S; y++)
                for (int x = 0; x < S; x++) {
                    size_t k = (size_t)y * S + x;
                    if (demo_luma(it->img->rgb + 3 * k) > 40 || it->mask[k]) {
                        sx += x;
                        sy += y;
                        n++;
                    }
                }
            double cx = sx / n, cy = sy / n, r = sqrt(n / M_PI);
            CHECKF(fabs(cx - S / 2.0) < 0.05 * S && fabs(cy - S / 2.0) < 0.05 * S &&
                       r > 0.3 * S && r < 0.42 * S,
                   "%s: object at (%.1f, %.1f) radius %.1f", it->name, cx, cy, r);
            long outside = 0;
            for (int y = 0; y < S; y++)
                for (int x = 0; x < S; x++)
                    if (it->mask[(size_t)y * S + x] && hypot(x - cx, y - cy) > r + 2.0)
                        outside++;
            CHECKF(outside == 0, "%s: %ld defect pixels off the object", it->name, outside);
        }
        /* the defect is visible: the mean colour under the mask differs from the mean
         * colour of the unmasked pixels within 6 px of its bounding box */
        int bx0 = S, bx1 = -1, by0 = S, by1 = -1;
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++)
                if (it->mask[(size_t)y * S + x]) {
                    if (x < bx0) bx0 = x;
                    if (x > bx1) bx1 = x;
                    if (y < by0) by0 = y;
                    if (y > by1) by1 = y;
                }
        double min_[3] = {0, 0, 0}, mout[3] = {0, 0, 0};
        long nin = 0, nout = 0;
        for (int y = by0 - 6; y <= by1 + 6; y++)
            for (int x = bx0 - 6; x <= bx1 + 6; x++) {
                if (x < 0 || y < 0 || x >= S || y >= S) continue;
                size_t k = (size_t)y * S + x;
                double *acc = it->mask[k] ? min_ : mout;
                for (int c = 0; c < 3; c++) acc[c] += it->img->rgb[3 * k + c];
                if (it->mask[k]) nin++;
                else nout++;
            }
        double dist = 0;
        for (int c = 0; c < 3; c++) {
            double d = min_[c] / (nin ? nin : 1) - mout[c] / (nout ? nout : 1);
            dist += d * d;
        }
        dist = sqrt(dist);
        if (getenv("UF_DEMO_VERBOSE"))
            fprintf(stderr, "    %s %s area %.4f contrast %.1f\n", cat, it->name, frac, dist);
        CHECKF(nin > 0 && nout > 0 && dist > 12.0,
               "%s: defect barely visible (mean colour distance %.1f)", it->name, dist);
    }
    demo_free(&s);
}

/* The default size and a bigger/smaller one (feature sizes scale with the side). */
static void test_demo_texture(void) { demo_check_set("texture", 224, 3, 2, 3); }
static void test_demo_object(void) { demo_check_set("object", 224, 3, 2, 3); }
static void test_demo_other_size(void)
{
    demo_check_set("texture", 320, 1, 1, 1);
    demo_check_set("object", 160, 1, 1, 1);
}

/* ---- annotated overlays and regions (issue 13) ------------------------------------------ */

/* Regions of a map with three blobs against a brute-force labelling of the same map. */
static void test_regions(void)
{
    enum { W = 40, H = 30 };
    static float map[H][W];
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            float v = 0;
            if (x >= 2 && x < 8 && y >= 3 && y < 7) v = 5 + (float)x;   /* 6 x 4, peak 12 */
            if ((x - 25) * (x - 25) + (y - 15) * (y - 15) <= 9) v = 20;  /* disc r 3, 29 px */
            if (x == 39 && y >= 20) v = 3;                              /* 1 x 10 at the edge */
            map[y][x] = v;
        }
    map[15][25] = 30; /* the disc's peak */
    uf_region r[4];
    int n = -1;
    REQUIRE_OK(uf_map_regions(&map[0][0], W, H, 1.0f, 4, r, &n));
    CHECKF(n == 3, "%d regions", n);
    if (n == 3) { /* highest peak first */
        CHECK(r[0].peak == 30 && r[0].area == 29 && r[0].x == 22 && r[0].y == 12 && r[0].w == 7 && r[0].h == 7);
        CHECK(r[1].peak == 12 && r[1].area == 24 && r[1].x == 2 && r[1].y == 3 && r[1].w == 6 && r[1].h == 4);
        CHECK(r[2].peak == 3 && r[2].area == 10 && r[2].x == 39 && r[2].y == 20 && r[2].w == 1 && r[2].h == 10);
    }
    REQUIRE_OK(uf_map_regions(&map[0][0], W, H, 1.0f, 1, r, &n));
    CHECK(n == 1 && r[0].peak == 30); /* only the best kept */
    REQUIRE_OK(uf_map_regions(&map[0][0], W, H, 4.0f, 4, r, &n));
    CHECK(n == 2); /* the edge line is below 4 */
    REQUIRE_OK(uf_map_regions(&map[0][0], W, H, 100.0f, 4, r, &n));
    CHECK(n == 0);
    CHECK(uf_map_regions(NULL, W, H, 1.0f, 4, r, &n) == UF_ERR_ARG);
    CHECK(uf_map_regions(&map[0][0], W, H, 1.0f, 4, NULL, &n) == UF_ERR_ARG);
}

/* The annotations change the plain overlay only where they are drawn: the label box at the
 * top left in the decision's colour, the bar at the right with jet's ends, the outline. */
static void test_annotate(void)
{
    enum { W = 200, H = 160 };
    uf_image *img = NULL, *plain = NULL, *ann = NULL, *bare = NULL;
    REQUIRE_OK(uf_image_new(W, H, &img));
    float *map = malloc(sizeof(float) * W * H);
    REQUIRE(map != NULL);
    for (int i = 0; i < W * H; i++) {
        img->rgb[3 * i] = img->rgb[3 * i + 1] = img->rgb[3 * i + 2] = 128;
        int x = i % W, y = i / W;
        map[i] = (x - 80) * (x - 80) + (y - 90) * (y - 90) < 400 ? 10.0f : 1.0f;
    }
    REQUIRE_OK(uf_heatmap_overlay(img, map, 0, 10, 0.5f, &plain));
    /* the model inspects only x < 150: the rest is grey */
    uint8_t *seen = malloc((size_t)W * H);
    REQUIRE(seen != NULL);
    for (int i = 0; i < W * H; i++) seen[i] = i % W < 150;
    uf_annotation a = {0, 10, 0.5f, 5.0f, 1, 7.0f, "ANOMALOUS 1.23", 1, seen};
    REQUIRE_OK(uf_heatmap_annotate(img, map, &a, &ann));
    uf_annotation none = {0, 10, 0.5f, NAN, 0, NAN, NULL, -1, NULL};
    REQUIRE_OK(uf_heatmap_annotate(img, map, &none, &bare));
    CHECK(memcmp(bare->rgb, plain->rgb, (size_t)W * H * 3) == 0); /* nothing asked, nothing drawn */
    /* label box: scale 1 at this size; the box starts at (2, 2) in red (220, 20, 20) */
    const uint8_t *p = ann->rgb + 3 * (3 * W + 2);
    CHECKF(p[0] == 220 && p[1] == 20 && p[2] == 20, "label box %d %d %d", p[0], p[1], p[2]);
    /* some of the box is text (white) */
    int white = 0;
    for (int y = 2; y < 11; y++)
        for (int x = 2; x < 90; x++) white += !memcmp(ann->rgb + 3 * (y * W + x), "\xff\xff\xff", 3);
    CHECKF(white > 30, "%d white label pixels", white);
    /* bar: 6 px wide at x W-8..W-3, rows H/4..3H/4-1: top is jet's red end, bottom its blue */
    const uint8_t *top = ann->rgb + 3 * ((H / 4) * W + W - 6), *bot = ann->rgb + 3 * ((3 * H / 4 - 1) * W + W - 6);
    CHECKF(top[0] == 128 && top[1] == 0 && top[2] == 0, "bar top %d %d %d", top[0], top[1], top[2]);
    CHECKF(bot[0] == 0 && bot[1] == 0 && bot[2] == 128, "bar bottom %d %d %d", bot[0], bot[1], bot[2]);
    /* outline: white on the disc's edge (x = 80 + 19, y = 90), the disc's inside untouched */
    const uint8_t *e = ann->rgb + 3 * (90 * W + 99), *in = ann->rgb + 3 * (90 * W + 80);
    CHECK(e[0] == 255 && e[1] == 255 && e[2] == 255);
    CHECK(!memcmp(in, plain->rgb + 3 * (90 * W + 80), 3));
    /* uninspected (x = 170, below the label, left of the bar): grey; inspected: jet */
    const uint8_t *g = ann->rgb + 3 * (150 * W + 170), *c = ann->rgb + 3 * (150 * W + 120);
    CHECKF(g[0] == g[1] && g[1] == g[2] && g[0] != plain->rgb[3 * (150 * W + 170)],
           "uninspected pixel %d %d %d", g[0], g[1], g[2]);
    CHECKF(!memcmp(c, plain->rgb + 3 * (150 * W + 120), 3) && c[2] != c[0], "inspected pixel %d %d %d",
           c[0], c[1], c[2]);
    free(seen);
    /* a narrow image: the label wraps onto lines that fit it, the score is not lost */
    uf_image *narrow = NULL, *nar = NULL;
    REQUIRE_OK(uf_image_new(100, 160, &narrow));
    memset(narrow->rgb, 128, 100 * 160 * 3);
    uf_annotation lab = {0, 10, 0.5f, NAN, 0, NAN, "ANOMALOUS 1.40 (SCORE 39.43)", 1, NULL};
    REQUIRE_OK(uf_heatmap_annotate(narrow, map, &lab, &nar)); /* map: >= 100 x 160 values */
    int lines = 0;
    for (int y = 2; y < 60; y += 9) /* each line's box starts red at x = 2 */
        lines += !memcmp(nar->rgb + 3 * (y * 100 + 2), "\xdc\x14\x14", 3);
    CHECKF(lines == 2, "%d label lines on a 100 px wide image (want 2 of at most 16 characters)", lines);
    uf_image_free(narrow);
    uf_image_free(nar);
    uf_image_free(img);
    uf_image_free(plain);
    uf_image_free(ann);
    uf_image_free(bare);
    free(map);
}

int main(void)
{
    RUN(test_png_roundtrip);
    RUN(test_png_in_memory);
    RUN(test_png_encoder_paths);
    RUN(test_png_args);
    RUN(test_png_missing_dir);
    RUN(test_png_overwrite);
    RUN(test_png_rename_fails);
    RUN(test_png_write_error);
    RUN(test_overlay_golden);
    RUN(test_overlay_lut);
    RUN(test_overlay_auto_range);
    RUN(test_overlay_constant);
    RUN(test_overlay_nan);
    RUN(test_overlay_alpha_ends);
    RUN(test_overlay_args);
    RUN(test_regions);
    RUN(test_annotate);
    RUN(test_demo_deterministic);
    RUN(test_demo_bad_args);
    RUN(test_demo_texture);
    RUN(test_demo_object);
    RUN(test_demo_other_size);
    return TEST_DONE();
}
