/*
 * test_image.c - image decoding, Pillow-exact resizing and torchvision-exact preprocessing.
 *
 * References come from scripts/gen_image_golden.py (Pillow 9.4 + torchvision 0.14):
 *  - fixtures: every PNG/JPEG/BMP/PNM variant must decode to Pillow's convert("RGB") bytes
 *    exactly (16-bit grey: our documented high-byte / scaling rule);
 *  - resize: Image.resize of a synthetic image with 4 filters x 7 sizes, exact;
 *  - preprocessing edge cases (padding, banker's-rounded crop offsets, pad_to), exact, and
 *    one float32 ToTensor+Normalize output, exact;
 *  - real images from ../shared (skipped when absent): full pipeline, share of exact and
 *    within-1 pixels reported (acceptance: >= 99% within 1; we expect 100% exact).
 * Robustness: truncations and seeded byte flips of every fixture must fail cleanly (run
 * under ASan+UBSan by `make asan`); oversized headers give UF_ERR_LIMIT without allocating.
 */
#include "harness.h"
#include "core/internal.h"
#include "uniformaly.h"

#include <pthread.h>
#include <stdint.h>
#include <zlib.h>

#define DATA "tests/data/image"

/* Read a whole file; NULL if missing. */
static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
    if (b && n > 0 && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)(n > 0 ? n : 0);
    return b;
}

/* Fixture list: name, width, height. */
#define MAX_FIX 128
static char fix_name[MAX_FIX][64];
static int fix_w[MAX_FIX], fix_h[MAX_FIX], n_fix;

static int load_fixture_list(void)
{
    if (n_fix) return n_fix;
    FILE *f = fopen(DATA "/fixtures.txt", "r");
    if (!f) return 0;
    while (n_fix < MAX_FIX &&
           fscanf(f, "%63s %d %d", fix_name[n_fix], &fix_w[n_fix], &fix_h[n_fix]) == 3)
        n_fix++;
    fclose(f);
    return n_fix;
}

static void test_fixtures(void)
{
    REQUIRE(load_fixture_list() > 50);
    int bad = 0;
    for (int i = 0; i < n_fix; i++) {
        char path[256], epath[256];
        snprintf(path, sizeof path, DATA "/fixtures/%s", fix_name[i]);
        snprintf(epath, sizeof epath, DATA "/fixtures/%s.rgb", fix_name[i]);
        size_t elen = 0;
        uint8_t *exp = read_all(epath, &elen);
        uf_image *img = NULL;
        uf_status st = uf_image_load(path, &img);
        CHECKF(st == UF_OK, "%s: %s", fix_name[i], uf_errmsg());
        if (st == UF_OK && exp) {
            int ok = img->width == fix_w[i] && img->height == fix_h[i] &&
                     elen == (size_t)fix_w[i] * fix_h[i] * 3 && memcmp(img->rgb, exp, elen) == 0;
            if (!ok) {
                size_t nd = 0;
                if (elen == (size_t)img->width * img->height * 3)
                    for (size_t k = 0; k < elen; k++) nd += img->rgb[k] != exp[k];
                fprintf(stderr, "    %s: %dx%d, %zu differing bytes\n", fix_name[i],
                        img->width, img->height, nd);
                bad++;
            }
        }
        uf_image_free(img);
        free(exp);
    }
    CHECKF(bad == 0, "%d of %d fixtures differ from Pillow", bad, n_fix);
    fprintf(stderr, "    %d fixtures decoded, %d equal to Pillow's bytes\n", n_fix, n_fix - bad);
}

static void test_errors(void)
{
    uf_image *img = NULL;
    CHECK(uf_image_decode("hello world", 11, &img) == UF_ERR_FORMAT);
    CHECK(strstr(uf_errmsg(), "unrecognised image format") != NULL);
    CHECK(img == NULL);
    CHECK(uf_image_decode("", 0, &img) == UF_ERR_FORMAT);
    CHECK(uf_image_load("tests/data/image/no_such_file.png", &img) == UF_ERR_IO);
    CHECK(strstr(uf_errmsg(), "no_such_file.png") != NULL);
    CHECK(uf_image_decode("P5 0 7 255\n", 11, &img) == UF_ERR_FORMAT);
    CHECK(uf_image_decode("P6 2 2 255\nabc", 14, &img) == UF_ERR_FORMAT); /* truncated */
    CHECK(uf_image_decode("P2 2 1 10\n3 11\n", 15, &img) == UF_ERR_FORMAT); /* > maxval */
    CHECK(uf_image_decode("P2 2 1 70000\n3 11\n", 18, &img) == UF_ERR_FORMAT);
    CHECK(uf_image_decode(NULL, 5, &img) == UF_ERR_ARG);
    /* a load error names the path and the problem */
    FILE *f = fopen("build/test_image_trunc.png", "wb");
    if (f) {
        size_t len = 0;
        uint8_t *b = read_all(DATA "/fixtures/rgb8.png", &len);
        if (b) fwrite(b, 1, len / 2, f);
        fclose(f);
        free(b);
        CHECK(uf_image_load("build/test_image_trunc.png", &img) == UF_ERR_FORMAT);
        CHECKF(strstr(uf_errmsg(), "test_image_trunc.png: PNG") != NULL, "msg: %s", uf_errmsg());
        remove("build/test_image_trunc.png");
    }
    uf_image_free(NULL);
    CHECK(uf_image_new(0, 5, &img) == UF_ERR_ARG);
    REQUIRE_OK(uf_image_new(3, 2, &img));
    CHECK(img->width == 3 && img->height == 2 && img->rgb[17] == 0);
    uf_image_free(img);
}

static uint32_t crc32_be(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
    }
    return c ^ 0xffffffffu;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void test_pixel_limit(void)
{
    uf_image *img = NULL;
    /* PNG: valid signature + IHDR claiming 100000 x 100000 */
    uint8_t png[8 + 25] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};
    put_be32(png + 8, 13);
    memcpy(png + 12, "IHDR", 4);
    put_be32(png + 16, 100000);
    put_be32(png + 20, 100000);
    png[24] = 8;
    png[25] = 2;
    put_be32(png + 29, crc32_be(png + 12, 17));
    CHECKF(uf_image_decode(png, sizeof png, &img) == UF_ERR_LIMIT, "%s", uf_errmsg());
    CHECK(img == NULL);
    const char *pnm = "P6 100000 100000 255\n";
    CHECK(uf_image_decode(pnm, strlen(pnm), &img) == UF_ERR_LIMIT);
    CHECK(strstr(uf_errmsg(), "100000x100000") != NULL);
    uint8_t bmp[54] = {'B', 'M'};
    put_le32(bmp + 10, 54);
    put_le32(bmp + 14, 40);
    put_le32(bmp + 18, 100000);
    put_le32(bmp + 22, 100000);
    bmp[26] = 1;
    bmp[28] = 24;
    CHECK(uf_image_decode(bmp, sizeof bmp, &img) == UF_ERR_LIMIT);
    /* JPEG: SOI + SOF0 claiming 60000 x 60000 (3.6 Gpx) + SOS */
    static const uint8_t jpg[] = {0xff, 0xd8, 0xff, 0xc0, 0, 11, 8, 0xea, 0x60, 0xea, 0x60, 1,
                                  1, 0x11, 0, 0xff, 0xda, 0, 8, 1, 1, 0, 0, 63, 0, 0xff, 0xd9};
    CHECKF(uf_image_decode(jpg, sizeof jpg, &img) == UF_ERR_LIMIT, "jpeg: %s", uf_errmsg());
    /* lowering the limit refuses a 13x7 fixture; 0 restores the default */
    CHECK(uf_get_max_pixels() == UF_DEFAULT_MAX_PIXELS);
    uf_set_max_pixels(90);
    CHECK(uf_get_max_pixels() == 90);
    size_t len = 0;
    const char *names[] = {"rgb8.png", "pil_rgb.bmp", "p6.ppm", "pal8.bmp"};
    for (int i = 0; i < 4; i++) {
        char path[256];
        snprintf(path, sizeof path, DATA "/fixtures/%s", names[i]);
        uint8_t *b = read_all(path, &len);
        if (!b) continue;
        CHECKF(uf_image_decode(b, len, &img) == UF_ERR_LIMIT, "%s: %s", names[i], uf_errmsg());
        free(b);
    }
    uf_set_max_pixels(91);
    REQUIRE_OK(uf_image_load(DATA "/fixtures/rgb8.png", &img));
    uf_image_free(img);
    uf_set_max_pixels(0);
    CHECK(uf_get_max_pixels() == UF_DEFAULT_MAX_PIXELS);
}

/* Truncate every fixture at many lengths and flip seeded random bytes: every call must
 * return (error or success) without memory errors; half-length files must be errors. */
static void test_robustness(void)
{
    REQUIRE(load_fixture_list() > 0);
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    int n_calls = 0, n_err = 0, n_half_ok = 0, n_mut = 0;
    for (int i = 0; i < n_fix; i++) {
        char path[256];
        snprintf(path, sizeof path, DATA "/fixtures/%s", fix_name[i]);
        size_t len = 0;
        uint8_t *b = read_all(path, &len);
        if (!b) continue;
        uint8_t *m = malloc(len);
        size_t step = len / 40 + 1;
        for (size_t cut = 0; cut < len; cut += step) {
            uf_image *img = NULL;
            /* a copy of exactly `cut` bytes so ASan sees any over-read */
            uint8_t *t = malloc(cut ? cut : 1);
            memcpy(t, b, cut);
            uf_status st = uf_image_decode(t, cut, &img);
            n_calls++;
            n_err += st != UF_OK;
            CHECK((st == UF_OK) == (img != NULL));
            uf_image_free(img);
            free(t);
        }
        {
            uf_image *img = NULL;
            uf_status st = uf_image_decode(b, len / 2, &img);
            if (st == UF_OK) {
                n_half_ok++;
                fprintf(stderr, "    %s: half of the file decodes without error\n", fix_name[i]);
            }
            uf_image_free(img);
        }
        for (int k = 0; k < 6; k++) { /* 6 mutants per fixture, 1-4 flipped bytes each */
            memcpy(m, b, len);
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            int nflip = 1 + (int)(seed >> 62);
            for (int j = 0; j < nflip; j++) {
                seed = seed * 6364136223846793005ull + 1442695040888963407ull;
                size_t pos = (size_t)(seed >> 33) % len;
                m[pos] ^= (uint8_t)(1 + ((seed >> 20) % 255));
            }
            uf_image *img = NULL;
            uf_status st = uf_image_decode(m, len, &img);
            n_mut++;
            if (st == UF_OK) CHECK(img && img->width > 0 && img->height > 0);
            uf_image_free(img);
        }
        free(m);
        free(b);
    }
    CHECKF(n_half_ok == 0, "%d fixtures decode from half their bytes", n_half_ok);
    fprintf(stderr, "    %d truncations (%d rejected), %d mutants, no crash\n", n_calls, n_err,
            n_mut);
}

static int parse_filter(const char *s)
{
    if (!strcmp(s, "bilinear")) return UF_INTERP_BILINEAR;
    if (!strcmp(s, "bicubic")) return UF_INTERP_BICUBIC;
    if (!strcmp(s, "lanczos")) return UF_INTERP_LANCZOS;
    return UF_INTERP_NEAREST;
}

static uf_image *load_src(void)
{
    size_t len = 0;
    uint8_t *b = read_all(DATA "/resize_src.rgb", &len);
    if (!b || len != 97 * 61 * 3) {
        free(b);
        return NULL;
    }
    uf_image *img = NULL;
    if (uf_image_new(97, 61, &img) != UF_OK) {
        free(b);
        return NULL;
    }
    memcpy(img->rgb, b, len);
    free(b);
    return img;
}

/* The PNG fast path (libdeflate, image.c png_fast) against libpng alone: every fixture, its
 * truncations, and corrupted copies whose chunk CRCs are made valid again (so that the
 * fast path itself meets the damage) must give the same status, message and pixels. */
extern int uf__png_fast_off;

static void fix_crcs(uint8_t *b, size_t len)
{
    for (size_t p = 8; len - p >= 12 && p < len;) {
        uint32_t n = (uint32_t)b[p] << 24 | (uint32_t)b[p + 1] << 16 | (uint32_t)b[p + 2] << 8 | b[p + 3];
        if ((uint64_t)n + 12 > len - p) break;
        uint32_t c = (uint32_t)crc32(0, b + p + 4, n + 4);
        for (int k = 0; k < 4; k++) b[p + 8 + n + (size_t)k] = (uint8_t)(c >> (24 - 8 * k));
        p += (size_t)n + 12;
    }
}

static int same_both_ways(const uint8_t *b, size_t len, const char *what)
{
    uf_image *a = NULL, *c = NULL;
    char ma[512] = "", mc[512] = "";
    uf__png_fast_off = 0;
    uf_status sa = uf_image_decode(b, len, &a);
    if (sa) snprintf(ma, sizeof ma, "%s", uf_errmsg());
    uf__png_fast_off = 1;
    uf_status sc = uf_image_decode(b, len, &c);
    if (sc) snprintf(mc, sizeof mc, "%s", uf_errmsg());
    uf__png_fast_off = 0;
    int same = sa == sc && !strcmp(ma, mc) &&
               (!a || (a->width == c->width && a->height == c->height &&
                       !memcmp(a->rgb, c->rgb, (size_t)a->width * (size_t)a->height * 3)));
    CHECKF(same, "%s: fast path %d '%s', libpng %d '%s'", what, sa, ma, sc, mc);
    uf_image_free(a);
    uf_image_free(c);
    return sa == UF_OK;
}

/* Synthetic plain PNGs for the fast path's edges: widths 1..9 and 17 (a 3- or 4-byte
 * Paeth row shorter than one SSE2 load, odd widths, the last pixel of a row), grey, grey+
 * alpha, RGB, RGBA, every filter type on every row (row 0 too: no row above), random
 * samples, the zlib stream split over many IDATs (zero-length ones among them), and a
 * stream that inflates to one byte more or less than the image: same result both ways
 * (under ASan, any read or write past a row or the buffer fails here). */
static size_t put_chunk(uint8_t *o, const char *name, const uint8_t *d, uint32_t n)
{
    put_be32(o, n);
    memcpy(o + 4, name, 4);
    if (n) memcpy(o + 8, d, n);
    put_be32(o + 8 + n, (uint32_t)crc32(0, o + 4, n + 4));
    return (size_t)n + 12;
}

static void test_png_fast_synthetic(void)
{
    static const int ctypes[4] = {0, 4, 2, 6}, chans[4] = {1, 2, 3, 4};
    static const int widths[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 17};
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    int n = 0, n_ok = 0;
    for (int ci = 0; ci < 4; ci++)
        for (size_t wi = 0; wi < sizeof widths / sizeof widths[0]; wi++)
            for (int h = 1; h <= 4; h++)
                for (int var = 0; var < 7; var++) { /* var 5: one byte more, 6: one less */
                    const int w = widths[wi], ch = chans[ci];
                    const size_t row = (size_t)w * (size_t)ch + 1, raw = row * (size_t)h;
                    const size_t rawx = var == 5 ? raw + 1 : var == 6 ? raw - 1 : raw;
                    uint8_t *r = malloc(raw + 1);
                    for (size_t i = 0; i < raw + 1; i++) {
                        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
                        r[i] = (uint8_t)(seed >> 33);
                    }
                    for (int y = 0; y < h; y++) r[(size_t)y * row] = (uint8_t)((y + var) % 5);
                    uLongf zl = compressBound((uLong)rawx);
                    uint8_t *z = malloc(zl);
                    REQUIRE(compress(z, &zl, r, (uLong)rawx) == Z_OK);
                    uint8_t *png = malloc(64 + zl + 12 * (zl + 8));
                    memcpy(png, "\x89PNG\r\n\x1a\n", 8);
                    uint8_t ih[13];
                    put_be32(ih, (uint32_t)w);
                    put_be32(ih + 4, (uint32_t)h);
                    ih[8] = 8, ih[9] = (uint8_t)ctypes[ci], ih[10] = ih[11] = ih[12] = 0;
                    size_t len = 8 + put_chunk(png + 8, "IHDR", ih, 13);
                    /* var 0: one IDAT; 1: 1-byte IDATs; 2: 3-byte IDATs with empty ones
                     * between; 3: an empty first IDAT; 4: 7-byte IDATs */
                    const size_t step = var == 1 ? 1 : var == 2 ? 3 : var == 4 ? 7 : zl;
                    if (var == 3) len += put_chunk(png + len, "IDAT", NULL, 0);
                    for (size_t at = 0; at < zl; at += step) {
                        const size_t m = zl - at < step ? zl - at : step;
                        len += put_chunk(png + len, "IDAT", z + at, (uint32_t)m);
                        if (var == 2) len += put_chunk(png + len, "IDAT", NULL, 0);
                    }
                    len += put_chunk(png + len, "IEND", NULL, 0);
                    char what[64];
                    snprintf(what, sizeof what, "synthetic ctype %d %dx%d var %d", ctypes[ci], w, h, var);
                    n_ok += same_both_ways(png, len, what);
                    n++;
                    free(png);
                    free(z);
                    free(r);
                }
    CHECKF(n_ok >= n * 5 / 7, "only %d of %d synthetic PNGs decoded", n_ok, n);
}

static void test_png_fast_path(void)
{
    REQUIRE(load_fixture_list() > 0);
    uint64_t seed = 0x2545f4914f6cdd1dull;
    int n = 0, n_ok = 0;
    for (int i = 0; i < n_fix; i++) {
        char path[256];
        snprintf(path, sizeof path, DATA "/fixtures/%.63s", fix_name[i]);
        size_t len = 0;
        uint8_t *b = read_all(path, &len);
        if (!b || len < 8 || memcmp(b, "\x89PNG", 4) != 0) {
            free(b);
            continue;
        }
        n_ok += same_both_ways(b, len, fix_name[i]);
        n++;
        uint8_t *m = malloc(len);
        for (size_t cut = 8; cut < len; cut += len / 16 + 1) n += same_both_ways(b, cut, fix_name[i]) >= 0;
        for (int k = 0; k < 40; k++) {
            memcpy(m, b, len);
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            size_t pos = 33 + (size_t)(seed >> 33) % (len > 33 ? len - 33 : 1);
            if (pos < len) m[pos] ^= (uint8_t)(1 + ((seed >> 20) % 255));
            fix_crcs(m, len);
            same_both_ways(m, len, fix_name[i]);
            n++;
        }
        free(m);
        free(b);
    }
    fprintf(stderr, "    %d PNG decodes compared, %d fixtures decoded\n", n, n_ok);
    CHECK(n_ok > 0);
}

static void test_resize_golden(void)
{
    uf_image *src = load_src();
    REQUIRE(src != NULL);
    FILE *f = fopen(DATA "/resize.txt", "r");
    REQUIRE(f != NULL);
    char fname[32], file[128];
    int w, h, n = 0, bad = 0;
    size_t total = 0, diff = 0, diff1 = 0;
    while (fscanf(f, "%31s %d %d %127s", fname, &w, &h, file) == 4) {
        char path[256];
        snprintf(path, sizeof path, DATA "/%s", file);
        size_t len = 0;
        uint8_t *exp = read_all(path, &len);
        uf_image *o = NULL;
        uf_status st = uf_image_resize(src, w, h, (uf_interp)parse_filter(fname), &o);
        CHECKF(st == UF_OK, "%s", uf_errmsg());
        if (st == UF_OK && exp && len == (size_t)w * h * 3) {
            size_t d = 0;
            for (size_t i = 0; i < len; i++) {
                int e = abs((int)o->rgb[i] - (int)exp[i]);
                d += e != 0;
                diff1 += e > 1;
            }
            if (d) {
                bad++;
                fprintf(stderr, "    %s %dx%d: %zu of %zu values differ\n", fname, w, h, d, len);
            }
            diff += d;
            total += len;
        } else {
            bad++;
        }
        n++;
        uf_image_free(o);
        free(exp);
    }
    fclose(f);
    uf_image_free(src);
    CHECK(n == 28);
    CHECKF(diff == 0, "%zu of %zu values differ (%zu by more than 1)", diff, total, diff1);
    CHECK(bad == 0);
    fprintf(stderr, "    %d resizes, %zu values, %zu differ from Pillow\n", n, total, diff);
}

static void test_resize_args(void)
{
    uf_image *src = load_src(), *o = NULL;
    REQUIRE(src != NULL);
    CHECK(uf_image_resize(src, 0, 5, UF_INTERP_BILINEAR, &o) == UF_ERR_ARG);
    CHECK(uf_image_resize(src, 5, 5, (uf_interp)9, &o) == UF_ERR_ARG);
    CHECK(uf_image_resize(NULL, 5, 5, UF_INTERP_BILINEAR, &o) == UF_ERR_ARG);
    REQUIRE_OK(uf_image_resize(src, 97, 61, UF_INTERP_LANCZOS, &o));
    CHECK(memcmp(o->rgb, src->rgb, 97 * 61 * 3) == 0);
    uf_image_free(o);
    /* a constant image stays constant under every filter (weights sum to 1 in fixed point) */
    memset(src->rgb, 200, 97 * 61 * 3);
    for (int fi = 0; fi < 4; fi++) {
        REQUIRE_OK(uf_image_resize(src, 31, 101, (uf_interp)fi, &o));
        int okc = 1;
        for (size_t i = 0; i < 31 * 101 * 3; i++) okc &= o->rgb[i] == 200;
        CHECKF(okc, "filter %d", fi);
        uf_image_free(o);
    }
    uf_image_free(src);
}

static void test_preprocess_golden(void)
{
    uf_image *src = load_src();
    REQUIRE(src != NULL);
    uf_image *tall = NULL; /* transposed source, as PIL's Image.TRANSPOSE */
    REQUIRE_OK(uf_image_new(61, 97, &tall));
    for (int y = 0; y < 61; y++)
        for (int x = 0; x < 97; x++) memcpy(tall->rgb + ((size_t)x * 61 + y) * 3,
                                            src->rgb + ((size_t)y * 97 + x) * 3, 3);
    FILE *f = fopen(DATA "/prep.txt", "r");
    REQUIRE(f != NULL);
    char name[32], filt[32], file[128];
    int resize, crop, pad_to, S, n = 0;
    while (fscanf(f, "%31s %d %d %d %31s %d %127s", name, &resize, &crop, &pad_to, filt, &S,
                  file) == 7) {
        uf_preprocess p = uf_preprocess_default();
        p.resize = resize;
        p.crop = crop;
        p.pad_to = pad_to;
        p.interp = (uf_interp)parse_filter(filt);
        CHECK(uf_preprocess_size(&p) == S);
        char path[256];
        snprintf(path, sizeof path, DATA "/%s", file);
        size_t len = 0;
        uint8_t *exp = read_all(path, &len);
        uf_image *o = NULL;
        uf_status st = uf__preprocess_u8(strcmp(name, "tall") ? src : tall, &p, &o);
        CHECKF(st == UF_OK, "%s: %s", name, uf_errmsg());
        if (st == UF_OK) {
            CHECKF(exp && o->width == S && o->height == S && len == (size_t)S * S * 3 &&
                   memcmp(o->rgb, exp, len) == 0, "case %s differs from torchvision", name);
        }
        uf_image_free(o);
        free(exp);
        n++;
    }
    fclose(f);
    CHECK(n == 7);

    /* geometry by hand: 97x61 -> Resize(64): 101x64 (int(64*97/61) = 101);
     * CenterCrop(80): left = round(10.5) = 10 (half to even), top = -(16 // 2) = -8 */
    uf_preprocess p = uf_preprocess_default();
    p.resize = 64;
    p.crop = 80;
    int rw, rh, left, top;
    uf_preprocess_geometry(&p, 97, 61, &rw, &rh, &left, &top);
    CHECKF(rw == 101 && rh == 64 && left == 10 && top == -8, "%d %d %d %d", rw, rh, left, top);
    p.resize = 0;
    p.crop = 58; /* (97-58)/2 = 19.5 -> 20, (61-58)/2 = 1.5 -> 2 */
    uf_preprocess_geometry(&p, 97, 61, &rw, &rh, &left, &top);
    CHECKF(rw == 97 && rh == 61 && left == 20 && top == 2, "%d %d %d %d", rw, rh, left, top);
    p.resize = 45; /* 71x45 on a 96 canvas: placed at (12, 25) */
    p.crop = 0;
    p.pad_to = 96;
    uf_preprocess_geometry(&p, 97, 61, &rw, &rh, &left, &top);
    CHECKF(rw == 71 && rh == 45 && left == -12 && top == -25, "%d %d %d %d", rw, rh, left, top);

    /* whole image (crop 0, no pad_to): the longer side 97 -> 64, 61 -> int(64*61/97) = 40,
     * at the top-left of a 64 x 64 canvas; nothing discarded */
    p.resize = 64;
    p.crop = 0;
    p.pad_to = 0;
    uf_preprocess_geometry(&p, 97, 61, &rw, &rh, &left, &top);
    CHECKF(rw == 64 && rh == 40 && left == 0 && top == 0, "%d %d %d %d", rw, rh, left, top);
    CHECK(uf_preprocess_size(&p) == 64);
    uf_preprocess_geometry(&p, 30, 97, &rw, &rh, &left, &top); /* tall: 19 x 64 */
    CHECKF(rw == 19 && rh == 64 && left == 0 && top == 0, "%d %d %d %d", rw, rh, left, top);
    CHECK(uf_preprocess_coverage(&p, 97, 61) == 1.0 && uf_preprocess_coverage(&p, 30, 97) == 1.0);
    {
        uf_image *u8 = NULL; /* rows 40..63 are the zero canvas, the rest the image */
        REQUIRE_OK(uf__preprocess_u8(src, &p, &u8));
        uf_image *rs = NULL;
        REQUIRE_OK(uf_image_resize(src, 64, 40, UF_INTERP_BILINEAR, &rs));
        int bad = u8->width != 64 || u8->height != 64;
        for (int y = 0; y < 64 && !bad; y++)
            for (int x = 0; x < 64 * 3; x++) {
                int want = y >= 40 ? 0 : rs->rgb[(size_t)y * 64 * 3 + x];
                bad |= u8->rgb[(size_t)y * 64 * 3 + x] != want;
            }
        CHECK(!bad);
        uf_image_free(rs);
        uf_image_free(u8);
    }
    /* centre crop: 97x61 -> 101x64, crop 64 keeps 64 of 101 columns */
    p.crop = 64;
    CHECKF(fabs(uf_preprocess_coverage(&p, 97, 61) - 64.0 / 101.0) < 1e-12, "coverage %g",
           uf_preprocess_coverage(&p, 97, 61));
    p.crop = 80; /* a crop larger than the image keeps all of it (padding) */
    CHECK(uf_preprocess_coverage(&p, 97, 61) == 64.0 * 80.0 / (101.0 * 64.0));
    CHECK(uf_preprocess_coverage(&p, 0, 61) == 0.0);

    /* float output of the pad_w case vs torchvision ToTensor+Normalize, exactly */
    p = uf_preprocess_default();
    p.resize = 64;
    p.crop = 80;
    size_t len = 0;
    float *exp = (float *)read_all(DATA "/prep/pad_w.f32", &len);
    float *out = malloc(3 * 80 * 80 * sizeof *out); /* [3][80][80] */
    REQUIRE(exp && out && len == sizeof(float) * 3 * 80 * 80);
    REQUIRE_OK(uf_preprocess_image(src, &p, out));
    double md = th_max_abs_diff(out, exp, 3 * 80 * 80);
    CHECKF(md == 0.0, "float output max |diff| %g", md);
    fprintf(stderr, "    7 torchvision cases exact; float output max |diff| %g\n", md);
    free(out);
    free(exp);
    uf_image_free(tall);
    uf_image_free(src);
}

static void test_preprocess_args(void)
{
    uf_image *src = load_src();
    REQUIRE(src != NULL);
    float *out = malloc(3 * 256 * 256 * sizeof *out);
    uf_preprocess p = uf_preprocess_default();
    CHECK(p.resize == 256 && p.crop == 224 && p.pad_to == 0 && p.interp == UF_INTERP_BILINEAR);
    CHECK(uf_preprocess_size(&p) == 224 && uf_preprocess_size(NULL) == 224);
    REQUIRE_OK(uf_preprocess_image(src, NULL, out)); /* NULL: defaults */
    p.crop = 0; /* the whole-image geometry: resize x resize */
    CHECK(uf_preprocess_size(&p) == 256);
    CHECK(uf_preprocess_image(src, &p, out) == UF_OK);
    p.resize = 0; /* ... which needs a resize size */
    CHECK(uf_preprocess_size(&p) == 0);
    CHECK(uf_preprocess_image(src, &p, out) == UF_ERR_ARG);
    p = uf_preprocess_default();
    p.std[1] = 0;
    CHECK(uf_preprocess_image(src, &p, out) == UF_ERR_ARG);
    p = uf_preprocess_default();
    p.pad_to = 100; /* 224 crop does not fit */
    CHECK(uf_preprocess_image(src, &p, out) == UF_ERR_ARG);
    p = uf_preprocess_default();
    p.resize = -1;
    CHECK(uf_preprocess_image(src, &p, out) == UF_ERR_ARG);
    free(out);
    uf_image_free(src);
}

static void test_real_images(void)
{
    const char *shared = th_shared_dir();
    if (!shared) SKIP("../shared absent: real-image preprocessing not checked");
    FILE *f = fopen(DATA "/real.txt", "r");
    if (!f) SKIP("tests/data/image/real.txt missing (run scripts/gen_image_golden.py)");
    char rel[256], filt[32], file[128];
    int resize, n = 0;
    float mean[3], sd[3];
    double rsum, rsq;
    size_t total = 0, exact = 0, within1 = 0;
    while (fscanf(f, "%255s %d %31s %f %f %f %f %f %f %127s %lf %lf", rel, &resize, filt,
                  &mean[0], &mean[1], &mean[2], &sd[0], &sd[1], &sd[2], file, &rsum,
                  &rsq) == 12) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", shared, rel);
        uf_image *img = NULL, *u8 = NULL;
        uf_status st = uf_image_load(path, &img);
        CHECKF(st == UF_OK, "%s", uf_errmsg());
        if (st) continue;
        uf_preprocess p = uf_preprocess_default();
        p.resize = resize;
        p.crop = 224;
        p.interp = (uf_interp)parse_filter(filt);
        memcpy(p.mean, mean, sizeof mean);
        memcpy(p.std, sd, sizeof sd);
        REQUIRE_OK(uf__preprocess_u8(img, &p, &u8));
        snprintf(path, sizeof path, DATA "/%s", file);
        size_t len = 0;
        uint8_t *exp = read_all(path, &len);
        REQUIRE(exp && len == 224 * 224 * 3 && u8->width == 224);
        size_t e = 0, w1 = 0;
        for (size_t i = 0; i < len; i++) {
            int d = abs((int)u8->rgb[i] - (int)exp[i]);
            e += d == 0;
            w1 += d <= 1;
        }
        fprintf(stderr, "    %-48s %s%d: %.4f%% exact, %.4f%% within 1\n", rel, filt, resize,
                100.0 * e / len, 100.0 * w1 / len);
        CHECKF(w1 >= len * 99 / 100, "%s: only %zu of %zu within 1 level", rel, w1, len);
        total += len;
        exact += e;
        within1 += w1;
        /* float output: equal to (u8/255 - mean)/std of our u8, sums match torchvision */
        float *out = malloc(3 * 224 * 224 * sizeof *out); /* [3][224][224] */
        REQUIRE_OK(uf_preprocess_image(img, &p, out));
        double s = 0, sq = 0;
        int fbad = 0;
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < 224 * 224; i++) {
                float v = out[c * 224 * 224 + i];
                float ref = ((float)u8->rgb[3 * i + c] / 255.0f - mean[c]) / sd[c];
                fbad += v != ref;
                s += v;
                sq += (double)v * v;
            }
        CHECK(fbad == 0);
        CHECKF(fabs(s - rsum) <= 1e-3 * (1 + fabs(rsum)) && fabs(sq - rsq) <= 1e-6 * rsq,
               "%s: float sums %.6f %.6f vs torchvision %.6f %.6f", rel, s, sq, rsum, rsq);
        free(out);
        free(exp);
        uf_image_free(u8);
        uf_image_free(img);
        n++;
    }
    fclose(f);
    CHECK(n == 8);
    if (total)
        fprintf(stderr, "    overall: %zu values, %.4f%% exact, %.4f%% within 1\n", total,
                100.0 * exact / total, 100.0 * within1 / total);
}

/* Decoding and preprocessing are thread-safe: 4 threads decode every fixture 3 times and
 * compare with the expected bytes; errors must not leak between threads' messages. */
static void *thread_body(void *arg)
{
    int *bad = arg;
    for (int rep = 0; rep < 3; rep++)
        for (int i = 0; i < n_fix; i++) {
            char path[256], epath[256];
            snprintf(path, sizeof path, DATA "/fixtures/%s", fix_name[i]);
            snprintf(epath, sizeof epath, DATA "/fixtures/%s.rgb", fix_name[i]);
            size_t elen = 0;
            uint8_t *exp = read_all(epath, &elen);
            uf_image *img = NULL;
            if (uf_image_load(path, &img) != UF_OK || !exp ||
                elen != (size_t)img->width * img->height * 3 || memcmp(img->rgb, exp, elen))
                (*bad)++;
            uf_image_free(img);
            img = NULL;
            if (uf_image_decode("junk", 4, &img) != UF_ERR_FORMAT ||
                !strstr(uf_errmsg(), "unrecognised"))
                (*bad)++;
            uf_image_free(img);
            free(exp);
        }
    return NULL;
}

static void test_threads(void)
{
    REQUIRE(load_fixture_list() > 0);
    pthread_t th[4];
    int bad[4] = {0, 0, 0, 0}, started = 0;
    for (int t = 0; t < 4; t++)
        if (pthread_create(&th[t], NULL, thread_body, &bad[t]) == 0) started++;
        else break;
    for (int t = 0; t < started; t++) pthread_join(th[t], NULL);
    CHECK(started == 4);
    CHECKF(bad[0] + bad[1] + bad[2] + bad[3] == 0, "%d failures across threads",
           bad[0] + bad[1] + bad[2] + bad[3]);
}

/* The one list of image extensions (folder scans of the library and the CLI use it). */
static void test_image_names(void)
{
    const char *const *e = uf_image_extensions();
    REQUIRE(e != NULL);
    const char *want[] = {"png", "jpg", "jpeg", "bmp", "ppm", "pgm", "pbm", "pnm"};
    size_t n = 0;
    for (; e[n]; n++) CHECKF(n < 8 && !strcmp(e[n], want[n]), "extension %zu: %s", n, e[n]);
    CHECK(n == 8);
    const char *yes[] = {"a.png", "A.PNG", "x/y.z/b.JpEg", "dir.d/c.pnm", "..bmp", "a.b.ppm"};
    const char *no[] = {"a.txt", "png", ".png", "dir/.png", "a.png/", "a.png.bak", "a.",
                        "dir.png/file", "", "a.tif"};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++)
        CHECKF(uf_is_image_name(yes[i]) == 1, "%s not taken as an image", yes[i]);
    for (size_t i = 0; i < sizeof no / sizeof *no; i++)
        CHECKF(uf_is_image_name(no[i]) == 0, "%s taken as an image", no[i]);
    CHECK(uf_is_image_name(NULL) == 0);
}

int main(void)
{
    RUN(test_image_names);
    RUN(test_fixtures);
    RUN(test_errors);
    RUN(test_pixel_limit);
    RUN(test_robustness);
    RUN(test_png_fast_path);
    RUN(test_png_fast_synthetic);
    RUN(test_threads);
    RUN(test_resize_golden);
    RUN(test_resize_args);
    RUN(test_preprocess_golden);
    RUN(test_preprocess_args);
    RUN(test_real_images);
    return TEST_DONE();
}
