/*
 * test_memory.c - small files that declare big things, and the bound on full-size pixels
 * decoded at once (issue 12, point 2). Every hostile file is built here, in memory or in a
 * temporary folder (nothing big is committed):
 *  - a 51-byte PNG whose tEXt (or iTXt) chunk declares 0x7ffffff0 bytes: refused at once,
 *    naming the chunk (it used to take 2.1 GB before "truncated file");
 *  - a progressive JPEG (written here with libjpeg) with its size patched to 16000x16000,
 *    and a 120-byte RLE4 BMP of 16000x16000: refused because the data cannot hold what
 *    the header declares (both used to be decoded and scored, as 0.8-1.5 GB);
 *  - four threads loading a legitimate 6144x6144 PNG (about 120 KB, 113 MB decoded) with
 *    uf_image_load_shrunk at once: rows are shrunk as they are decoded (and full-size
 *    buffers, where a decoder needs them, come from a budget shared by the threads), so the
 *    process grows by far less than the 453 MB four full images take;
 *  - uf_image_load_shrunk + preprocessing equals uf_image_load + preprocessing exactly.
 * Peak-memory bounds are asserted outside sanitizer builds (ru_maxrss growth).
 */
#include "harness.h"
#include "core/internal.h"

#include <jpeglib.h>
#include <pthread.h>
#include <sys/resource.h>
#include <zlib.h>

static char g_dir[] = "/tmp/uf_memory_XXXXXX";

/* Peak resident memory so far, in MB. */
static long peak_mb(void)
{
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return r.ru_maxrss / 1024;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

/* Append a PNG chunk (length, type, data, CRC) to f. */
static void png_chunk(FILE *f, const char *type, const uint8_t *data, uint32_t n)
{
    uint8_t h[8];
    put_be32(h, n);
    memcpy(h + 4, type, 4);
    uLong crc = crc32(0L, (const Bytef *)type, 4);
    if (n) crc = crc32(crc, data, n);
    uint8_t c[4];
    put_be32(c, (uint32_t)crc);
    fwrite(h, 1, 8, f);
    if (n) fwrite(data, 1, n, f);
    fwrite(c, 1, 4, f);
}

static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};

/* 8-bit RGB IHDR data of w x h. */
static void ihdr(uint8_t d[13], uint32_t w, uint32_t h)
{
    put_be32(d, w);
    put_be32(d + 4, h);
    d[8] = 8, d[9] = 2, d[10] = 0, d[11] = 0, d[12] = 0;
}

/* A 51-byte PNG: a 1x1 IHDR, then a `type` chunk declaring 0x7ffffff0 bytes of which 10
 * are present. */
static void test_png_text_bomb(void)
{
    const char *types[] = {"tEXt", "iTXt", "zTXt"};
    for (int t = 0; t < 3; t++) {
        uint8_t b[64], d[13];
        size_t n = 0;
        memcpy(b, png_sig, 8), n = 8;
        ihdr(d, 1, 1);
        put_be32(b + n, 13), memcpy(b + n + 4, "IHDR", 4), memcpy(b + n + 8, d, 13);
        put_be32(b + n + 21, (uint32_t)crc32(crc32(0L, (const Bytef *)"IHDR", 4), d, 13));
        n += 25;
        put_be32(b + n, 0x7ffffff0u), memcpy(b + n + 4, types[t], 4), n += 8;
        memcpy(b + n, "Comment\0ab", 10), n += 10;
        CHECK(n == 51);
        long before = peak_mb();
        uf_image *img = NULL;
        uf_status s = uf_image_decode(b, n, &img);
        long grew = peak_mb() - before;
        CHECKF(s == UF_ERR_FORMAT && strstr(uf_errmsg(), types[t]) &&
                   strstr(uf_errmsg(), "declares"),
               "%s: got %s: %s", types[t], uf_status_str(s), uf_errmsg());
        printf("    PNG %s bomb (51 bytes): %s; peak grew by %ld MB\n", types[t], uf_errmsg(), grew);
#if !TH_ASAN
        CHECKF(grew < 300, "%s: peak memory grew by %ld MB", types[t], grew);
#endif
        uf_image_free(img);
    }
}

/* A w x h JPEG (progressive or baseline) of a smooth gradient, written with libjpeg into a
 * malloc'd buffer. */
static uint8_t *make_jpeg(int w, int h, int progressive, size_t *len)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    unsigned char *out = NULL;
    unsigned long n = 0;
    jpeg_mem_dest(&c, &out, &n);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = 3;
    c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 90, TRUE);
    if (progressive) jpeg_simple_progression(&c);
    jpeg_start_compress(&c, TRUE);
    uint8_t *row = malloc((size_t)w * 3);
    while (c.next_scanline < c.image_height) {
        for (int x = 0; x < w; x++) {
            row[3 * x] = (uint8_t)(x * 4);
            row[3 * x + 1] = (uint8_t)(c.next_scanline * 4);
            row[3 * x + 2] = (uint8_t)((x + (int)c.next_scanline) * 2);
        }
        JSAMPROW rp = row;
        jpeg_write_scanlines(&c, &rp, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    free(row);
    *len = n;
    return out;
}

/* Patch the frame header (SOF0 or SOF2) of a JPEG to h x w. */
static int patch_sof(uint8_t *b, size_t n, int w, int h)
{
    for (size_t i = 2; i + 9 < n; i++)
        if (b[i] == 0xff && (b[i + 1] == 0xc0 || b[i + 1] == 0xc2)) {
            b[i + 5] = (uint8_t)(h >> 8), b[i + 6] = (uint8_t)h;
            b[i + 7] = (uint8_t)(w >> 8), b[i + 8] = (uint8_t)w;
            return 1;
        }
    return 0;
}

static void test_jpeg_size_bomb(void)
{
    for (int prog = 1; prog >= 0; prog--) {
        size_t n;
        uint8_t *j = make_jpeg(256, 256, prog, &n);
        uf_image *img = NULL;
        REQUIRE_OK(uf_image_decode(j, n, &img)); /* the honest file decodes */
        CHECK(img->width == 256 && img->height == 256);
        uf_image_free(img);
        img = NULL;
        CHECK(patch_sof(j, n, 16000, 16000));
        long before = peak_mb();
        uf_status s = uf_image_decode(j, n, &img);
        long grew = peak_mb() - before;
        CHECKF(s == UF_ERR_FORMAT && strstr(uf_errmsg(), "cannot hold"), "%s: got %s: %s",
               prog ? "progressive" : "baseline", uf_status_str(s), uf_errmsg());
        printf("    %s JPEG patched to 16000x16000 (%zu bytes): %s; peak grew by %ld MB\n",
               prog ? "progressive" : "baseline", n, uf_errmsg(), grew);
#if !TH_ASAN
        CHECKF(grew < 300, "peak memory grew by %ld MB", grew);
#endif
        uf_image_free(img);
        free(j);
    }
}

/* A progressive JPEG large enough for its data but whose coefficients exceed libjpeg's
 * memory limit (12000 x 12000: 432 MB of coefficients) is refused as over the limit. */
static void test_jpeg_progressive_limit(void)
{
    size_t n;
    uint8_t *j = make_jpeg(64, 64, 1, &n);
    CHECK(patch_sof(j, n, 12000, 12000));
    /* pad with a comment-free tail of zeros so the data-size check passes */
    size_t big = 3u << 20;
    uint8_t *b = calloc(big, 1);
    memcpy(b, j, n);
    uf_image *img = NULL;
    uf_status s = uf_image_decode(b, big, &img);
    CHECKF(s == UF_ERR_LIMIT && strstr(uf_errmsg(), "coefficients"), "got %s: %s",
           uf_status_str(s), uf_errmsg());
    uf_image_free(img);
    free(b);
    free(j);
}

/* A 120-byte RLE4 BMP declaring 16000 x 16000 whose data ends at once (end of bitmap). */
static void test_bmp_rle_bomb(void)
{
    uint8_t b[120];
    memset(b, 0, sizeof b);
    b[0] = 'B', b[1] = 'M';
    b[2] = 120;                    /* file size */
    b[10] = 14 + 40 + 64;          /* pixel data offset: after a 16-colour palette */
    b[14] = 40;                    /* BITMAPINFOHEADER */
    b[18] = 0x80, b[19] = 0x3e;    /* width 16000 */
    b[22] = 0x80, b[23] = 0x3e;    /* height 16000 */
    b[26] = 1;                     /* planes */
    b[28] = 4;                     /* 4 bits per pixel */
    b[30] = 2;                     /* BI_RLE4 */
    b[46] = 16;                    /* colours used */
    for (int i = 0; i < 16; i++) b[54 + 4 * i] = b[55 + 4 * i] = b[56 + 4 * i] = (uint8_t)(i * 16);
    b[118] = 0, b[119] = 1;        /* end of bitmap */
    long before = peak_mb();
    uf_image *img = NULL;
    uf_status s = uf_image_decode(b, sizeof b, &img);
    long grew = peak_mb() - before;
    CHECKF(s == UF_ERR_FORMAT && strstr(uf_errmsg(), "not enough image data"), "got %s: %s",
           uf_status_str(s), uf_errmsg());
    printf("    RLE4 BMP of 16000x16000 in 120 bytes: %s; peak grew by %ld MB\n", uf_errmsg(), grew);
#if !TH_ASAN
    CHECKF(grew < 300, "peak memory grew by %ld MB", grew);
#endif
    uf_image_free(img);
}

/* Write a w x h 8-bit RGB PNG of one colour to path (deflated row by row). */
static void write_flat_png(const char *path, uint32_t w, uint32_t h, const uint8_t rgb[3])
{
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    fwrite(png_sig, 1, 8, f);
    uint8_t d[13];
    ihdr(d, w, h);
    png_chunk(f, "IHDR", d, 13);
    size_t rowb = 1 + (size_t)w * 3, cap = 1 << 20, used = 0;
    uint8_t *row = malloc(rowb), *z = malloc(cap);
    row[0] = 0;
    for (uint32_t x = 0; x < w; x++) memcpy(row + 1 + 3 * (size_t)x, rgb, 3);
    z_stream s;
    memset(&s, 0, sizeof s);
    deflateInit(&s, 9);
    for (uint32_t y = 0; y <= h; y++) {
        s.next_in = row;
        s.avail_in = y < h ? (uInt)rowb : 0;
        do {
            if (cap - used < 65536) z = realloc(z, cap *= 2);
            s.next_out = z + used;
            s.avail_out = (uInt)(cap - used);
            deflate(&s, y < h ? Z_NO_FLUSH : Z_FINISH);
            used = cap - s.avail_out;
        } while (s.avail_in || (y == h && s.avail_out == 0));
    }
    deflateEnd(&s);
    png_chunk(f, "IDAT", z, (uint32_t)used);
    png_chunk(f, "IEND", NULL, 0);
    fclose(f);
    free(row);
    free(z);
}

typedef struct shrink_job {
    const char *path;
    uf_image *img;
    int w, h;
    uf_status st;
} shrink_job;

static void *shrink_thread(void *arg)
{
    shrink_job *j = arg;
    j->st = uf_image_load_shrunk(j->path, NULL, &j->img, &j->w, &j->h);
    return NULL;
}

/* Four threads shrink a 6144 x 6144 PNG (113 MB decoded) at once. */
static void test_budget_across_threads(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/big.png", g_dir);
    const uint8_t colour[3] = {10, 200, 30};
    write_flat_png(path, 6144, 6144, colour);
    struct stat st;
    CHECK(stat(path, &st) == 0 && st.st_size < 400000);
    long before = peak_mb();
    shrink_job jobs[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (shrink_job){path, NULL, 0, 0, UF_OK};
        pthread_create(&th[i], NULL, shrink_thread, &jobs[i]);
    }
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    long grew = peak_mb() - before;
    for (int i = 0; i < 4; i++) {
        CHECKF(jobs[i].st == UF_OK, "%s", uf_status_str(jobs[i].st));
        if (!jobs[i].img) continue;
        CHECK(jobs[i].w == 6144 && jobs[i].h == 6144); /* the file's own size */
        CHECK(jobs[i].img->width == 256 && jobs[i].img->height == 256);
        CHECK(memcmp(jobs[i].img->rgb + 3 * (128 * 256 + 128), colour, 3) == 0);
        uf_image_free(jobs[i].img);
    }
    printf("    four threads shrinking a 6144x6144 PNG (%lld bytes): peak grew by %ld MB "
           "(453 MB if all were held at once)\n", (long long)st.st_size, grew);
#if !TH_ASAN
    CHECKF(grew < 300, "peak memory grew by %ld MB", grew);
#endif
    unlink(path);
}

/* Preprocessing img-from-path loaded whole and shrunk while decoding gives the same
 * network input, bit for bit; returns false (after a CHECK failure) when not. */
static bool same_input(const char *path, const uf_preprocess *p, bool must_shrink)
{
    uf_image *full = NULL, *small = NULL;
    int w, h;
    if (uf_image_load(path, &full) != UF_OK) return true; /* fixtures that fail on purpose */
    CHECKF(uf_image_load_shrunk(path, p, &small, &w, &h) == UF_OK, "%s: %s", path, uf_errmsg());
    bool ok = small && w == full->width && h == full->height;
    CHECKF(ok, "%s: sizes", path);
    if (ok && must_shrink)
        CHECKF((int64_t)small->width * small->height < (int64_t)w * h, "%s: not shrunk", path);
    int S = uf_preprocess_size(p);
    float *a = malloc(sizeof(float) * 3 * S * S), *b = malloc(sizeof(float) * 3 * S * S);
    if (ok) ok = uf_preprocess_image(full, p, a) == UF_OK && uf_preprocess_image(small, p, b) == UF_OK &&
                 memcmp(a, b, sizeof(float) * 3 * S * S) == 0;
    CHECKF(ok, "%s: resize %d crop %d pad %d interp %d differs", path, p->resize, p->crop,
           p->pad_to, (int)p->interp);
    free(a);
    free(b);
    uf_image_free(full);
    uf_image_free(small);
    return ok;
}

/* Shrinking while decoding changes nothing: every decoder (PNG plain and interlaced, every
 * colour type; JPEG grey, colour, CMYK; BMP of every depth, RLE; PNM plain and binary) and
 * every filter gives bit-identical network inputs. */
static void test_shrunk_equals_full(void)
{
    uf_preprocess ps[4] = {uf_preprocess_default(), uf_preprocess_default(),
                           uf_preprocess_default(), uf_preprocess_default()};
    ps[0].resize = 4, ps[0].crop = 4;
    ps[1].resize = 5, ps[1].crop = 3, ps[1].interp = UF_INTERP_NEAREST;
    ps[2].resize = 3, ps[2].crop = 0, ps[2].pad_to = 8, ps[2].interp = UF_INTERP_LANCZOS;
    ps[3].resize = 6, ps[3].crop = 6, ps[3].interp = UF_INTERP_BICUBIC;
    const char *dir = "tests/data/image/fixtures";
    DIR *d = opendir(dir);
    REQUIRE(d != NULL);
    struct dirent *e;
    int files = 0;
    while ((e = readdir(d))) {
        const char *dot = strrchr(e->d_name, '.');
        if (e->d_name[0] == '.' || !dot || !strcmp(dot, ".rgb")) continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        for (int k = 0; k < 4; k++) same_input(path, &ps[k], false);
        files++;
    }
    closedir(d);
    CHECK(files >= 60);
    /* a 666 x 500 image with detail in every channel, where every setting shrinks */
    char path[128];
    snprintf(path, sizeof path, "%s/detail.png", g_dir);
    uf_image *src = NULL;
    REQUIRE_OK(uf_image_new(666, 500, &src));
    uint64_t r = 12345;
    for (size_t i = 0; i < (size_t)666 * 500 * 3; i++) src->rgb[i] = (uint8_t)(uf_splitmix64(&r) >> 56);
    REQUIRE_OK(uf_image_write_png(src, path));
    uf_image_free(src);
    uf_preprocess big[3] = {uf_preprocess_default(), uf_preprocess_default(), uf_preprocess_default()};
    big[1].resize = 72, big[1].crop = 64, big[1].interp = UF_INTERP_BICUBIC;
    big[2].resize = 112, big[2].crop = 0, big[2].pad_to = 224, big[2].interp = UF_INTERP_NEAREST;
    for (int k = 0; k < 3; k++) same_input(path, &big[k], true);
    unlink(path);
}

int main(void)
{
    if (!mkdtemp(g_dir)) return 1;
    /* first: peaks are measured as growth of the process's high-water mark */
    RUN(test_budget_across_threads);
    RUN(test_png_text_bomb);
    RUN(test_jpeg_size_bomb);
    RUN(test_bmp_rle_bomb);
    RUN(test_jpeg_progressive_limit);
    RUN(test_shrunk_equals_full);
    rmdir(g_dir);
    return TEST_DONE();
}
