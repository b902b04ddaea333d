/*
 * image.c - image decoding into 8-bit interleaved RGB, matching Pillow's
 * Image.open(p).convert("RGB") so that the network sees the same pixels as a Python user.
 *
 * Formats are detected from magic bytes, never from the file name:
 *  - PNG  via libpng (all bit depths, colour types and interlacing); plain 8-bit files
 *         that fit exactly take a faster path (libdeflate's inflate, rows unfiltered here,
 *         same checks) and everything else, errors included, stays libpng's (png_fast),
 *  - JPEG via libjpeg-turbo with default settings (ISLOW DCT, fancy upsampling), which is
 *    what Pillow uses, so the decoded samples are identical,
 *  - BMP  and PNM with small own parsers (no suitable Debian library), validating every field.
 *
 * Conversions follow Pillow: alpha is dropped (not composited), grey is replicated, palettes
 * are expanded, 16-bit samples keep their high byte. Two deliberate deviations, both for
 * 16-bit *grey* data where Pillow produces mode "I"/"I;16" and convert("RGB") clips values
 * above 255 to white (so almost every real 16-bit grey image becomes white):
 *  - 16-bit grey PNG uses the high byte (v >> 8), as libpng's strip_16 does for colour;
 *  - PGM with maxval > 255 is scaled like Pillow scales PPM colour: round(v/maxval*255).
 *
 * Safety: every decoder checks width*height against uf_get_max_pixels() before allocating
 * pixels, never reads past the input buffer, and reports corrupt or truncated data as
 * UF_ERR_FORMAT. libpng and libjpeg report errors through longjmp; the handlers here never
 * print and never exit.
 *
 * Memory: every decoder writes its rows into a sink: the whole image (uf_image_decode,
 * uf_image_load), or for uf_image_load_shrunk a row resize (resize.c) to the network's
 * resize size, so only one row of the full-size image exists at a time. Full-size buffers
 * that remain (the image when it is not shrunk, an interlaced PNG's plane, the raw data
 * of a PNG on the fast path, at most PNG_FAST_MAX_RAW, an RLE BMP's index plane) are reserved from one process-wide budget (DECODE_BUDGET) first, so threads
 * decoding a batch in parallel hold at most that much at once (one larger image is decoded
 * alone).
 */
#include "core/internal.h"

#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>
#include <libdeflate.h>
#include <png.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* ---- pixel limit and image objects ------------------------------------------------- */

static _Atomic size_t g_max_pixels = UF_DEFAULT_MAX_PIXELS;

void uf_set_max_pixels(size_t max_pixels)
{
    atomic_store_explicit(&g_max_pixels, max_pixels ? max_pixels : UF_DEFAULT_MAX_PIXELS,
                          memory_order_relaxed);
}

size_t uf_get_max_pixels(void)
{
    return atomic_load_explicit(&g_max_pixels, memory_order_relaxed);
}

/* Validate decoded dimensions: zero -> UF_ERR_FORMAT, too many pixels -> UF_ERR_LIMIT.
 * fmt names the format for the message. */
static uf_status check_dims(const char *fmt, uint64_t w, uint64_t h)
{
    if (w == 0 || h == 0)
        return uf__err(UF_ERR_FORMAT, "%s: zero image size %llux%llu", fmt,
                       (unsigned long long)w, (unsigned long long)h);
    size_t maxp = uf_get_max_pixels();
    /* w, h < 2^32 for every format, so the product fits in 64 bits */
    if (w > INT_MAX || h > INT_MAX || w * h > (uint64_t)maxp)
        return uf__err(UF_ERR_LIMIT, "%s: image of %llux%llu pixels exceeds the limit of %zu",
                       fmt, (unsigned long long)w, (unsigned long long)h, maxp);
    return UF_OK;
}

/* ---- the budget of full-size buffers in uf_image_load_shrunk --------------------------- */

#define DECODE_BUDGET ((size_t)192 << 20) /* bytes of full-size images decoded at once */

static pthread_mutex_t g_budget_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_budget_cv = PTHREAD_COND_INITIALIZER;
static size_t g_budget_held; /* bytes reserved by all threads */
/* This thread's reservation; active only inside uf_image_load_shrunk, whose caller never
 * sees the full image (uf_image_load's callers keep theirs as long as they like). */
static _Thread_local struct { bool active; size_t held; } tl_budget;

static void budget_release(void)
{
    if (!tl_budget.held) return;
    pthread_mutex_lock(&g_budget_mu);
    g_budget_held -= tl_budget.held;
    tl_budget.held = 0;
    pthread_cond_broadcast(&g_budget_cv);
    pthread_mutex_unlock(&g_budget_mu);
}

/* Wait until bytes more fit in the budget (or nobody else holds any), then hold them. A
 * thread wanting more gives back what it holds first and waits for the sum, so two threads
 * never wait for each other. */
static void budget_add(size_t bytes)
{
    if (!tl_budget.active || !bytes) return;
    size_t want = tl_budget.held + bytes;
    budget_release();
    pthread_mutex_lock(&g_budget_mu);
    while (g_budget_held > 0 && want > DECODE_BUDGET - (g_budget_held < DECODE_BUDGET
                                                         ? g_budget_held : DECODE_BUDGET))
        pthread_cond_wait(&g_budget_cv, &g_budget_mu);
    g_budget_held += want;
    tl_budget.held = want;
    pthread_mutex_unlock(&g_budget_mu);
}

/* ---- where a decoder puts its rows ------------------------------------------------------ */

/* The whole image, or, when a preprocessing is given and would shrink the image, a row
 * resize (uf__rowresize) that keeps only what the network-size image needs: the decoders
 * never hold a full-size image then, only one row of it. Heap-allocated so that decoders
 * using setjmp keep a pointer that never changes. */
typedef struct target {
    const uf_preprocess *pre; /* shrink to its resize size (NULL: keep the whole image) */
    int w, h;                 /* out: the size the file declares */
} target;

typedef struct sink {
    int w, h;
    uf_image *img;       /* the whole image (NULL while shrinking) */
    uf__rowresize *rr;   /* shrinking */
} sink;

static void sink_free(sink *k)
{
    if (!k) return;
    uf_image_free(k->img);
    uf__rowresize_free(k->rr);
    free(k);
}

/* Allocate where a w x h image goes (t->pre: shrink to its resize size if that is
 * smaller); records the size in t. */
static uf_status sink_open(sink *k, target *t, int w, int h)
{
    k->w = w;
    k->h = h;
    const uf_preprocess *pre = t ? t->pre : NULL;
    if (t) t->w = w, t->h = h;
    int rw = 0, rh = 0;
    if (pre) uf_preprocess_geometry(pre, w, h, &rw, &rh, NULL, NULL);
    if (rw > 0 && rh > 0 && (int64_t)rw * rh < (int64_t)w * h) {
        budget_add(uf__rowresize_bytes(w, h, rw, rh));
        return uf__rowresize_new(w, h, rw, rh, pre->interp, &k->rr);
    }
    budget_add((size_t)w * (size_t)h * 3);
    return uf_image_new(w, h, &k->img);
}

/* Where row y ([w][3]) is to be written; sink_push(k, y) once it is complete. */
static uint8_t *sink_row(sink *k, int y)
{
    return k->rr ? uf__rowresize_row(k->rr) : k->img->rgb + (size_t)y * k->w * 3;
}

static void sink_push(sink *k, int y)
{
    if (k->rr) uf__rowresize_push(k->rr, y);
}

/* The decoded (or shrunk) image, once every row was pushed; frees k. */
static uf_status sink_finish(sink *k, uf_image **out)
{
    uf_status st = UF_OK;
    if (k->rr) {
        st = uf__rowresize_finish(k->rr, out);
        k->rr = NULL;
    } else {
        *out = k->img;
        k->img = NULL;
    }
    sink_free(k);
    return st;
}

uf_status uf_image_new(int width, int height, uf_image **out)
{
    if (!out) return uf__err(UF_ERR_ARG, "uf_image_new: out is NULL");
    *out = NULL;
    if (width <= 0 || height <= 0)
        return uf__err(UF_ERR_ARG, "uf_image_new: invalid size %dx%d", width, height);
    uf_status st = check_dims("uf_image_new", (uint64_t)width, (uint64_t)height);
    if (st) return st;
    size_t n;
    if (!uf__mul_ok((size_t)width * (size_t)height, 3, &n))
        return uf__err(UF_ERR_LIMIT, "uf_image_new: %dx%d too large", width, height);
    uf_image *img = calloc(1, sizeof *img);
    if (!img) return uf__err(UF_ERR_NOMEM, "out of memory for image header");
    img->rgb = calloc(n, 1); /* [height][width][3] */
    if (!img->rgb) {
        free(img);
        return uf__err(UF_ERR_NOMEM, "out of memory for a %dx%d image", width, height);
    }
    img->width = width;
    img->height = height;
    *out = img;
    return UF_OK;
}

void uf_image_free(uf_image *img)
{
    if (!img) return;
    free(img->rgb);
    free(img);
}

/* ---- small byte helpers --------------------------------------------------------------- */

static uint32_t rd_le16(const uint8_t *p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8); }
static uint32_t rd_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

/* ---- PNG (libpng) ------------------------------------------------------------------- */

/* Memory source and error text for libpng callbacks. */
typedef struct png_mem {
    const uint8_t *buf;
    size_t len, pos;
    char msg[256];
} png_mem;

static void png_mem_read(png_structp png, png_bytep data, size_t n)
{
    png_mem *m = png_get_io_ptr(png);
    if (n > m->len - m->pos) png_error(png, "truncated file");
    memcpy(data, m->buf + m->pos, n);
    m->pos += n;
}

/* Store the message and jump to png_jmpbuf ourselves: if this returned, libpng would call
 * its default handler, which prints to stderr. */
static void png_on_error(png_structp png, png_const_charp msg)
{
    png_mem *m = png_get_error_ptr(png);
    snprintf(m->msg, sizeof m->msg, "%s", msg ? msg : "unknown libpng error");
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg)
{
    (void)png; /* warnings (bad ancillary chunks, ...) are ignored, as Pillow does */
    (void)msg;
}

/* Every chunk up to the end of the image data must fit in the bytes that follow its
 * header: a length beyond them is a truncated or hostile file, refused before libpng
 * allocates for it (with benign errors on, libpng only warns about a huge ancillary chunk,
 * then allocates it: a 51-byte file declaring a 2 GB tEXt took 2.1 GB). Chunks after the
 * image data are never read, so they are not checked (Pillow ignores them too). */
static uf_status png_check_chunks(const uint8_t *buf, size_t len)
{
    size_t pos = 8;
    bool idat = false;
    while (len - pos >= 8) {
        const uint8_t *c = buf + pos;
        uint32_t n = (uint32_t)c[0] << 24 | (uint32_t)c[1] << 16 | (uint32_t)c[2] << 8 | c[3];
        char name[5];
        for (int k = 0; k < 4; k++) name[k] = (c[4 + k] >= 32 && c[4 + k] < 127) ? (char)c[4 + k] : '?';
        name[4] = '\0';
        bool is_idat = memcmp(c + 4, "IDAT", 4) == 0;
        if (idat && !is_idat) return UF_OK; /* past the image data */
        idat = is_idat;
        if ((uint64_t)n + 12 > len - pos)
            return uf__err(UF_ERR_FORMAT, "PNG: chunk %s declares %lu bytes but only %zu "
                           "remain (truncated or corrupt file)", name, (unsigned long)n,
                           len - pos - 8);
        pos += (size_t)n + 12;
    }
    return UF_OK; /* a file cut between chunks: libpng reports it */
}

/* One decoded row of ch 8-bit channels to RGB: grey is replicated, alpha dropped. */
static void png_row_to_rgb(const uint8_t *src, int ch, int w, uint8_t *dst)
{
    if (ch == 3) {
        memcpy(dst, src, (size_t)w * 3);
        return;
    }
    for (int i = 0; i < w; i++) {
        if (ch <= 2) {
            dst[3 * i] = dst[3 * i + 1] = dst[3 * i + 2] = src[ch * i];
        } else {
            dst[3 * i] = src[4 * i];
            dst[3 * i + 1] = src[4 * i + 1];
            dst[3 * i + 2] = src[4 * i + 2];
        }
    }
}

/* ---- PNG fast path (libdeflate) -------------------------------------------------------- *
 * Most PNGs a detector reads are plain 8-bit grey, grey+alpha, RGB or RGBA, not interlaced,
 * with a few ancillary chunks that cannot change the pixels. For those, the whole zlib
 * stream is inflated at once by libdeflate (Debian's libdeflate0: about twice zlib's speed,
 * with the same checks: the zlib header, the Adler-32 of the data, the exact length) and
 * the rows are unfiltered here; chunk CRCs are checked with libdeflate's CRC-32. Any file
 * that does not fit exactly - another chunk before the image data, a bad CRC, a stream
 * that is short, long, corrupt or followed by extra bytes, an unknown filter type, an
 * image whose raw data would exceed PNG_FAST_MAX_RAW - is left to libpng from the start,
 * so every error, message and lenient case stays libpng's, and a file decoded here is one
 * that libpng decodes to the same pixels (tests/test_image.c compares both paths). */

#define PNG_FAST_MAX_RAW ((size_t)64 << 20) /* larger images: libpng, one row at a time */

/* 1: the fast path is off (white-box tests compare it with libpng) */
int uf__png_fast_off;

static uint32_t rd_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The ancillary chunks libpng is told to skip (decode_png's list): the only ones besides
 * IHDR and IDAT the fast path accepts. */
static bool png_skipped_chunk(const uint8_t *name)
{
    static const char list[][5] = {"bKGD", "cHRM", "eXIf", "gAMA", "hIST", "iCCP",
                                   "iTXt", "oFFs", "pCAL", "pHYs", "sBIT", "sCAL",
                                   "sPLT", "sRGB", "sTER", "tEXt", "tIME", "zTXt"};
    for (size_t i = 0; i < sizeof list / sizeof list[0]; i++)
        if (memcmp(name, list[i], 4) == 0) return true;
    return false;
}

static inline uint8_t paeth_pred(int a, int b, int c)
{
    int pa = abs(b - c), pb = abs(a - c), pc = abs(a + b - 2 * c);
    return (uint8_t)(pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
}

/* Undo PNG filter type f (1..4) on row x[n] (bpp bytes a pixel), prev the row above,
 * already unfiltered (NULL for the first row: zeros). */
static void png_unfilter(int f, uint8_t *x, const uint8_t *prev, size_t n, int bpp)
{
    static const uint8_t zeros[8];
    size_t i;
    switch (f) {
    case 1: /* Sub */
        for (i = (size_t)bpp; i < n; i++) x[i] = (uint8_t)(x[i] + x[i - (size_t)bpp]);
        return;
    case 2: /* Up */
        if (prev)
            for (i = 0; i < n; i++) x[i] = (uint8_t)(x[i] + prev[i]);
        return;
    case 3: /* Average */
        for (i = 0; i < n; i++) {
            int a = i >= (size_t)bpp ? x[i - (size_t)bpp] : 0, b = prev ? prev[i] : 0;
            x[i] = (uint8_t)(x[i] + ((a + b) >> 1));
        }
        return;
    case 4: /* Paeth */
        if (!prev) { /* the row above is zeros: Paeth is Sub */
            png_unfilter(1, x, zeros, n, bpp);
            return;
        }
#ifdef __SSE2__
        if (bpp == 3 || bpp == 4) { /* one pixel at a time, its channels in 16-bit lanes */
            const __m128i z = _mm_setzero_si128();
            __m128i a = z, c = z; /* left and upper left: zero before the first pixel */
            const __m128i keep = _mm_cvtsi32_si128(bpp == 3 ? 0x00ffffff : -1);
            uint32_t wv;
            __m128i xv = z; /* x[i .. i + 3], read before x[i - bpp ..] is stored: a load
                             * overlapping that store would wait for it */
            if (n >= 4) memcpy(&wv, x, 4), xv = _mm_cvtsi32_si128((int)wv);
            for (i = 0; i + 4 <= n; i += (size_t)bpp) { /* reads 4 bytes from i */
                memcpy(&wv, prev + i, 4);
                const __m128i b = _mm_unpacklo_epi8(_mm_cvtsi32_si128((int)wv), z);
                const __m128i pa0 = _mm_sub_epi16(b, c), pb0 = _mm_sub_epi16(a, c);
                const __m128i pc0 = _mm_add_epi16(pa0, pb0);
                /* |v| = max(v, -v) in 16 bits */
                const __m128i pa = _mm_max_epi16(pa0, _mm_sub_epi16(z, pa0));
                const __m128i pb = _mm_max_epi16(pb0, _mm_sub_epi16(z, pb0));
                const __m128i pc = _mm_max_epi16(pc0, _mm_sub_epi16(z, pc0));
                /* pa <= pb && pa <= pc: a; else pb <= pc: b; else c */
                const __m128i use_a = _mm_andnot_si128(_mm_or_si128(_mm_cmpgt_epi16(pa, pb),
                                                                    _mm_cmpgt_epi16(pa, pc)),
                                                       _mm_set1_epi16(-1));
                const __m128i use_b = _mm_andnot_si128(_mm_cmpgt_epi16(pb, pc), _mm_set1_epi16(-1));
                __m128i pred = _mm_or_si128(_mm_and_si128(use_b, b), _mm_andnot_si128(use_b, c));
                pred = _mm_or_si128(_mm_and_si128(use_a, a), _mm_andnot_si128(use_a, pred));
                /* bpp 3: no prediction in the 4th lane, so the 4th byte (the next pixel's)
                 * is stored back unchanged with the pixel */
                const __m128i r = _mm_add_epi8(xv, _mm_and_si128(_mm_packus_epi16(pred, z), keep));
                const uint32_t rv = (uint32_t)_mm_cvtsi128_si32(r);
                if (i + (size_t)bpp + 4 <= n) memcpy(&wv, x + i + (size_t)bpp, 4);
                xv = _mm_cvtsi32_si128((int)wv);
                memcpy(x + i, &rv, 4);
                a = _mm_unpacklo_epi8(r, z);
                c = b;
            }
            for (; i < n; i++) { /* the last pixel of a 3-byte row */
                int aa = i >= (size_t)bpp ? x[i - (size_t)bpp] : 0;
                int cc = i >= (size_t)bpp ? prev[i - (size_t)bpp] : 0;
                x[i] = (uint8_t)(x[i] + paeth_pred(aa, prev[i], cc));
            }
            return;
        }
#endif
        for (i = 0; i < (size_t)bpp && i < n; i++) x[i] = (uint8_t)(x[i] + prev[i]);
        for (; i < n; i++)
            x[i] = (uint8_t)(x[i] + paeth_pred(x[i - (size_t)bpp], prev[i], prev[i - (size_t)bpp]));
        return;
    default: /* 0: None */
        return;
    }
}

/* Decode buf as a plain PNG into the sink of t. Returns false (nothing kept, *st unset)
 * when the file is not one the fast path takes, for libpng to decode from the start;
 * else true with *st the result (UF_OK and *out, or a memory or resize error). */
static bool png_fast(const uint8_t *buf, size_t len, target *t, uf_image **out, uf_status *st)
{
    if (uf__png_fast_off || len < 8 + 25 + 12) return false;
    const uint8_t *ih = buf + 8;
    if (rd_be32(ih) != 13 || memcmp(ih + 4, "IHDR", 4) != 0 ||
        libdeflate_crc32(0, ih + 4, 17) != rd_be32(ih + 21))
        return false;
    const uint32_t w = rd_be32(ih + 8), h = rd_be32(ih + 12);
    const int depth = ih[16], ctype = ih[17];
    if (!w || !h || w > 0x7fffffffu || h > 0x7fffffffu || depth != 8 ||
        (ctype != 0 && ctype != 2 && ctype != 4 && ctype != 6) || ih[18] || ih[19] || ih[20])
        return false;
    if (check_dims("PNG", w, h) != UF_OK) return false; /* libpng's path reports it */
    const int ch = ctype == 0 ? 1 : ctype == 4 ? 2 : ctype == 2 ? 3 : 4;
    const size_t row = (size_t)w * (size_t)ch + 1; /* filter byte + samples */
    if ((size_t)h > PNG_FAST_MAX_RAW / row) return false;
    const size_t raw = row * (size_t)h;
    if ((double)raw > 1032.0 * (double)len + 65536.0) return false;
    /* libpng's own limit of one IDAT's length (png_check_chunk_length) */
    const size_t rf = row < 32566 ? row : 32566, idat_max = raw + 6 + 5 * (raw / rf + 1);
    /* the chunks: IHDR, skipped ancillary ones, then the IDATs; every CRC checked */
    size_t pos = 8 + 25, first = 0, total = 0, nidat = 0;
    while (len - pos >= 12) {
        const uint8_t *c = buf + pos;
        const uint32_t n = rd_be32(c);
        if (n > 0x7fffffffu || (uint64_t)n + 12 > len - pos) return false;
        const bool idat = memcmp(c + 4, "IDAT", 4) == 0;
        if (!idat && nidat) break; /* past the image data: never read */
        if (idat ? n > idat_max : (!png_skipped_chunk(c + 4) || n > ((size_t)8 << 20)))
            return false;
        if (libdeflate_crc32(0, c + 4, (size_t)n + 4) != rd_be32(c + 8 + n)) return false;
        if (idat) {
            if (!nidat++) first = pos;
            total += n;
        }
        pos += (size_t)n + 12;
    }
    if (!nidat || !total) return false;
    /* the zlib stream: in place when in one chunk, else gathered */
    uint8_t *gather = NULL;
    const uint8_t *zs = buf + first + 8;
    if (nidat > 1) {
        if (!(gather = malloc(total))) return false;
        size_t at = 0;
        for (size_t p = first; at < total;) {
            const uint32_t n = rd_be32(buf + p);
            memcpy(gather + at, buf + p + 8, n);
            at += n;
            p += (size_t)n + 12;
        }
        zs = gather;
    }
    budget_add(raw);
    uint8_t *px = malloc(raw);
    struct libdeflate_decompressor *dz = px ? libdeflate_alloc_decompressor() : NULL;
    size_t in_used = 0, out_used = 0;
    const bool inflated = dz && libdeflate_zlib_decompress_ex(dz, zs, total, px, raw, &in_used,
                                                              &out_used) == LIBDEFLATE_SUCCESS &&
                          in_used == total && out_used == raw;
    libdeflate_free_decompressor(dz);
    free(gather);
    bool filters_ok = inflated;
    for (size_t y = 0; filters_ok && y < h; y++) filters_ok = px[y * row] <= 4;
    if (!filters_ok) {
        free(px);
        return false;
    }
    sink *k = calloc(1, sizeof *k);
    *st = k ? sink_open(k, t, (int)w, (int)h) : uf__err(UF_ERR_NOMEM, "PNG: out of memory");
    for (size_t y = 0; *st == UF_OK && y < h; y++) {
        uint8_t *x = px + y * row + 1;
        png_unfilter(px[y * row], x, y ? x - row : NULL, row - 1, ch);
        png_row_to_rgb(x, ch, (int)w, sink_row(k, (int)y));
        sink_push(k, (int)y);
    }
    free(px);
    if (*st == UF_OK) *st = sink_finish(k, out);
    else sink_free(k);
    return true;
}

static uf_status decode_png(const uint8_t *buf, size_t len, target *t,
                            uf_image **out)
{
    /* Check the IHDR size first, so that a bare header claiming a huge image is refused as
     * too large rather than as truncated (libpng would read on to the first IDAT). */
    if (len >= 24 && memcmp(buf + 12, "IHDR", 4) == 0) {
        uint32_t w = (uint32_t)buf[16] << 24 | (uint32_t)buf[17] << 16 | (uint32_t)buf[18] << 8 | buf[19];
        uint32_t h = (uint32_t)buf[20] << 24 | (uint32_t)buf[21] << 16 | (uint32_t)buf[22] << 8 | buf[23];
        if (w && h) { /* zero sizes are reported by libpng */
            uf_status st0 = check_dims("PNG", w, h);
            if (st0) return st0;
        }
    }
    uf_status chk = png_check_chunks(buf, len);
    if (chk) return chk;
    uf_status fst;
    if (png_fast(buf, len, t, out, &fst)) return fst;
    sink *const k = calloc(1, sizeof *k);
    if (!k) return uf__err(UF_ERR_NOMEM, "PNG: out of memory");
    png_mem m = {buf, len, 0, "unknown error"};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &m, png_on_error,
                                             png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        free(k);
        return uf__err(UF_ERR_NOMEM, "PNG: cannot create libpng reader");
    }
    /* Everything allocated after setjmp is volatile so the handler sees current values. */
    uint8_t *volatile tmp = NULL;     /* [h][w][ch] interlaced images, else one row [w][ch] */
    png_bytep *volatile rows = NULL;  /* [h] row pointers (interlaced)                  */
    if (setjmp(png_jmpbuf(png))) {
        free(rows);
        free(tmp);
        sink_free(k);
        png_destroy_read_struct(&png, &info, NULL);
        return uf__err(UF_ERR_FORMAT, "PNG: %s", m.msg);
    }
    png_set_read_fn(png, &m, png_mem_read);
    /* libpng's own limits; the pixel limit is checked below with the exact product. */
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
    png_set_chunk_cache_max(png, 1000);
    png_set_chunk_malloc_max(png, (png_alloc_size_t)8 << 20); /* e.g. a decompressed iCCP */
    png_set_benign_errors(png, 1); /* lenient like Pillow on harmless oddities */
    /* Chunks that cannot change the decoded pixels (Pillow's convert("RGB") applies no
     * gamma, colour profile or background) are skipped unread: no text is inflated. */
    static const png_byte skip[] = "bKGD\0cHRM\0eXIf\0gAMA\0hIST\0iCCP\0iTXt\0oFFs\0pCAL\0"
                                   "pHYs\0sBIT\0sCAL\0sPLT\0sRGB\0sTER\0tEXt\0tIME\0zTXt";
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, skip, (int)(sizeof skip / 5));

    png_read_info(png, info);
    png_uint_32 w = 0, h = 0;
    int depth = 0, ctype = 0, interlace = 0;
    png_get_IHDR(png, info, &w, &h, &depth, &ctype, &interlace, NULL, NULL);
    uf_status st = check_dims("PNG", w, h);
    if (st) goto fail;
    {
        /* Deflate cannot expand by more than 1032:1, so the raw scanlines must fit in
         * 1032 * len bytes: larger claims are truncated files (caught before allocating). */
        double chans = (ctype == PNG_COLOR_TYPE_RGB) ? 3 : (ctype == PNG_COLOR_TYPE_RGBA) ? 4
                     : (ctype == PNG_COLOR_TYPE_GRAY_ALPHA) ? 2 : 1;
        double raw = (double)h * (ceil((double)w * chans * depth / 8.0) + 1.0);
        if (raw > 1032.0 * (double)len + 65536.0) {
            st = uf__err(UF_ERR_FORMAT, "PNG: truncated (%ux%u image in %zu bytes)",
                         (unsigned)w, (unsigned)h, len);
            goto fail;
        }
    }
    /* Transformations towards 8-bit samples; alpha is removed by hand below. */
    if (depth == 16) png_set_strip_16(png); /* keep the high byte */
    if (ctype == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if ((ctype == PNG_COLOR_TYPE_GRAY || ctype == PNG_COLOR_TYPE_GRAY_ALPHA) && depth < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    (void)png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int ch = png_get_channels(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    if (ch < 1 || ch > 4 || png_get_bit_depth(png, info) != 8 || rowbytes != (size_t)w * ch) {
        st = uf__err(UF_ERR_INTERNAL, "PNG: unexpected layout after transforms (%d channels)",
                     ch);
        goto fail;
    }
    if ((st = sink_open(k, t, (int)w, (int)h))) goto fail;
    if (interlace == PNG_INTERLACE_NONE) { /* row by row: only one row is ever held */
        if (!(tmp = malloc(rowbytes))) {
            st = uf__err(UF_ERR_NOMEM, "PNG: out of memory");
            goto fail;
        }
        for (int y = 0; y < (int)h; y++) {
            png_read_row(png, tmp, NULL);
            png_row_to_rgb(tmp, ch, (int)w, sink_row(k, y));
            sink_push(k, y);
        }
    } else { /* Adam7 fills rows over seven passes: the whole image is needed */
        budget_add((size_t)h * rowbytes);
        tmp = malloc((size_t)h * rowbytes);
        rows = malloc((size_t)h * sizeof *rows);
        if (!tmp || !rows) {
            st = uf__err(UF_ERR_NOMEM, "PNG: out of memory for %ux%u", (unsigned)w, (unsigned)h);
            goto fail;
        }
        for (size_t y = 0; y < h; y++) rows[y] = tmp + y * rowbytes;
        png_read_image(png, rows);
        for (int y = 0; y < (int)h; y++) {
            png_row_to_rgb(rows[y], ch, (int)w, sink_row(k, y));
            sink_push(k, y);
        }
    }
    free(rows);
    free(tmp);
    png_destroy_read_struct(&png, &info, NULL);
    return sink_finish(k, out);

fail:
    free(rows);
    free(tmp);
    sink_free(k);
    png_destroy_read_struct(&png, &info, NULL);
    return st;
}

/* ---- JPEG (libjpeg-turbo) -------------------------------------------------------------- */

typedef struct jpeg_err {
    struct jpeg_error_mgr pub; /* must be first: libjpeg casts to it */
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
} jpeg_err;

/* Replaces the default error_exit, which would print and call exit(). */
static void jpeg_on_error(j_common_ptr c)
{
    jpeg_err *e = (jpeg_err *)c->err;
    c->err->format_message(c, e->msg);
    longjmp(e->jb, 1);
}

/* Warnings are counted silently, except premature end of data: libjpeg would pad the
 * image with grey, Pillow raises "image file is truncated", and so do we. */
static void jpeg_on_message(j_common_ptr c, int level)
{
    if (level < 0) {
        if (c->err->msg_code == JWRN_JPEG_EOF) jpeg_on_error(c);
        c->err->num_warnings++;
    }
}

static void jpeg_on_output(j_common_ptr c) { (void)c; /* never print */ }

#define JPEG_MAX_MEMORY ((long)256 << 20) /* libjpeg's working memory, coefficients included */

/* Before anything big is allocated: every 8x8 block of every component costs at least one
 * bit of entropy-coded data (a Huffman code has at least one bit; baseline needs two, a
 * DC symbol and an end-of-block), so a file smaller than blocks / 8 bytes cannot hold the
 * size its header declares (Pillow refuses such files as truncated); and a progressive
 * image keeps all its coefficients (2 bytes each) in memory until the last scan. */
static uf_status jpeg_check_size(const struct jpeg_decompress_struct *ci, size_t len)
{
    uint64_t blocks = 0;
    for (int c = 0; c < ci->num_components; c++)
        blocks += (uint64_t)ci->comp_info[c].width_in_blocks * ci->comp_info[c].height_in_blocks;
    if (blocks / 8 > (uint64_t)len)
        return uf__err(UF_ERR_FORMAT, "JPEG: %zu bytes cannot hold a %ux%u image (at least "
                       "%llu bytes of data; truncated or corrupt header)", len,
                       (unsigned)ci->image_width, (unsigned)ci->image_height,
                       (unsigned long long)(blocks / 8));
    if (ci->progressive_mode && blocks * 128 > (uint64_t)JPEG_MAX_MEMORY)
        return uf__err(UF_ERR_LIMIT, "JPEG: a progressive %ux%u image needs %llu MB of "
                       "coefficients, over the limit of %ld MB", (unsigned)ci->image_width,
                       (unsigned)ci->image_height, (unsigned long long)(blocks * 128 >> 20),
                       JPEG_MAX_MEMORY >> 20);
    return UF_OK;
}

static uf_status decode_jpeg(const uint8_t *buf, size_t len, target *t,
                             uf_image **out)
{
    struct jpeg_decompress_struct cinfo;
    jpeg_err jerr;
    sink *const k = calloc(1, sizeof *k);
    if (!k) return uf__err(UF_ERR_NOMEM, "JPEG: out of memory");
    uint8_t *volatile row = NULL; /* [w][components] one scanline */
    volatile uf_status st = UF_OK;
    memset(&cinfo, 0, sizeof cinfo);
    cinfo.err = jpeg_std_error(&jerr.pub);
    jerr.pub.error_exit = jpeg_on_error;
    jerr.pub.emit_message = jpeg_on_message;
    jerr.pub.output_message = jpeg_on_output;
    snprintf(jerr.msg, sizeof jerr.msg, "unknown error");
    if (setjmp(jerr.jb)) {
        jpeg_destroy_decompress(&cinfo);
        free(row);
        sink_free(k);
        return uf__err(UF_ERR_FORMAT, "JPEG: %s", jerr.msg);
    }
    jpeg_create_decompress(&cinfo);
    if (len > (size_t)ULONG_MAX) {
        st = uf__err(UF_ERR_LIMIT, "JPEG: input too large");
        goto done;
    }
    jpeg_mem_src(&cinfo, buf, (unsigned long)len);
    /* libjpeg's own bound: a progressive image's coefficients would need backing store
     * above it, which this build refuses (checked below first, to say so plainly) */
    cinfo.mem->max_memory_to_use = JPEG_MAX_MEMORY;
    jpeg_read_header(&cinfo, TRUE);
    st = check_dims("JPEG", cinfo.image_width, cinfo.image_height);
    if (st) goto done;
    if ((st = jpeg_check_size(&cinfo, len))) goto done;
    /* Output space by component count, like Pillow's modes L / RGB / CMYK. */
    int ncomp = cinfo.num_components;
    if (ncomp == 1) cinfo.out_color_space = JCS_GRAYSCALE;
    else if (ncomp == 3) cinfo.out_color_space = JCS_RGB;
    else if (ncomp == 4) cinfo.out_color_space = JCS_CMYK; /* YCCK is converted to CMYK */
    else {
        st = uf__err(UF_ERR_UNSUPPORTED, "JPEG: %d colour components not supported", ncomp);
        goto done;
    }
    jpeg_start_decompress(&cinfo);
    int w = (int)cinfo.output_width, h = (int)cinfo.output_height;
    int oc = cinfo.output_components;
    if (oc != ncomp || w != (int)cinfo.image_width || h != (int)cinfo.image_height) {
        st = uf__err(UF_ERR_INTERNAL, "JPEG: unexpected output layout");
        goto done;
    }
    if ((st = sink_open(k, t, w, h))) goto done;
    row = malloc((size_t)w * oc);
    if (!row) {
        st = uf__err(UF_ERR_NOMEM, "JPEG: out of memory");
        goto done;
    }
    while ((int)cinfo.output_scanline < h) {
        int y = (int)cinfo.output_scanline;
        uint8_t *dst = sink_row(k, y); /* [w][3] */
        JSAMPROW rp = row;
        if (jpeg_read_scanlines(&cinfo, &rp, 1) != 1) {
            st = uf__err(UF_ERR_FORMAT, "JPEG: decoder stalled");
            goto done;
        }
        if (oc == 3) {
            memcpy(dst, row, (size_t)w * 3);
        } else if (oc == 1) {
            for (int x = 0; x < w; x++) dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = row[x];
        } else {
            /* Pillow reads CMYK JPEGs as "CMYK;I" (Adobe's inverted convention), then
             * converts with out = nk - nk*c/255 (rounded as MULDIV255), nk = 255 - k. */
            for (int x = 0; x < w; x++) {
                const uint8_t *p = row + 4 * x;
                int nk = p[3]; /* 255 - (255 - raw k) */
                for (int c = 0; c < 3; c++) {
                    int cv = 255 - p[c];
                    int q = cv * nk + 128;
                    int v = nk - (((q >> 8) + q) >> 8);
                    dst[3 * x + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
                }
            }
        }
        sink_push(k, y);
    }
done:
    /* jpeg_finish_decompress is skipped on purpose: trailing garbage is not an error. */
    jpeg_destroy_decompress(&cinfo);
    free(row);
    if (st) {
        sink_free(k);
        return st;
    }
    return sink_finish(k, out);
}

/* ---- BMP (own parser) ---------------------------------------------------------------- */

/* One channel of a BI_BITFIELDS layout: value = (pixel & mask) >> shift, scaled to 8 bits
 * by v * 255 / max with integer division (Pillow's BGR;15 / BGR;16 unpackers). */
typedef struct bmp_field {
    uint32_t mask;
    int shift;
    uint32_t max;
} bmp_field;

static int bmp_field_init(bmp_field *f, uint32_t mask, int bits)
{
    f->mask = mask;
    f->shift = 0;
    f->max = 0;
    if (mask == 0) return 1; /* channel absent: reads as 0 */
    if (bits < 32 && (mask >> bits) != 0) return 0; /* mask outside the pixel */
    while (!((mask >> f->shift) & 1)) f->shift++;
    uint32_t v = mask >> f->shift;
    if (v & (v + 1)) return 0; /* not a contiguous run of bits */
    f->max = v;
    return 1;
}

static uint8_t bmp_field_get(const bmp_field *f, uint32_t px)
{
    if (!f->max) return 0;
    uint64_t v = (px & f->mask) >> f->shift;
    return (uint8_t)(f->max == 255 ? v : v * 255 / f->max);
}

/* RLE8 / RLE4 into an index plane [h][w] (file row order). Pixels not written stay 0.
 * Runs longer than the row are clipped; data that ends, or an end-of-bitmap code, before
 * every row is reached is an error (Pillow reports "not enough image data"). With idx
 * NULL nothing is written: the data is only checked, before the plane is allocated, so a
 * few bytes cannot claim a huge bitmap. */
static uf_status bmp_rle(const uint8_t *p, size_t n, int w, int h, int rle4, uint8_t *idx)
{
    size_t i = 0;
    int x = 0, y = 0;
    while (y < h && !(y == h - 1 && x >= w)) {
        if (n - i < 2) return uf__err(UF_ERR_FORMAT, "BMP: truncated RLE data");
        int cnt = p[i], c = p[i + 1];
        i += 2;
        if (cnt) { /* encoded run */
            for (int k = 0; idx && k < cnt && x + k < w; k++)
                idx[(size_t)y * w + x + k] = (uint8_t)(rle4 ? (k & 1 ? c & 15 : c >> 4) : c);
            x += cnt;
            if (x > w) x = w;
        } else if (c == 0) { /* end of line */
            x = 0;
            y++;
        } else if (c == 1) { /* end of bitmap */
            if (y < h - 1 || x < w)
                return uf__err(UF_ERR_FORMAT, "BMP: RLE data ends at row %d of %d (not enough "
                               "image data)", y + 1, h);
            break;
        } else if (c == 2) { /* delta */
            if (n - i < 2) return uf__err(UF_ERR_FORMAT, "BMP: truncated RLE delta");
            x += p[i];
            y += p[i + 1];
            i += 2;
            if (x > w) x = w; /* keeps x bounded whatever the number of deltas */
        } else { /* absolute run of c pixels, padded to 16 bits */
            size_t nb = rle4 ? (size_t)(c + 1) / 2 : (size_t)c;
            if (n - i < nb) return uf__err(UF_ERR_FORMAT, "BMP: truncated RLE run");
            for (int k = 0; idx && k < c && x + k < w; k++) {
                int v = rle4 ? (k & 1 ? p[i + k / 2] & 15 : p[i + k / 2] >> 4) : p[i + k];
                idx[(size_t)y * w + x + k] = (uint8_t)v;
            }
            x += c;
            i += nb + (nb & 1);
            if (i > n) i = n;
            if (x > w) x = w;
        }
    }
    return UF_OK;
}

static uf_status decode_bmp(const uint8_t *b, size_t len, target *t,
                            uf_image **out)
{
    if (len < 18) return uf__err(UF_ERR_FORMAT, "BMP: truncated header");
    uint32_t off = rd_le32(b + 10);
    uint32_t hsz = rd_le32(b + 14);
    if (hsz != 12 && hsz != 40 && hsz != 52 && hsz != 56 && hsz != 64 && hsz != 108 &&
        hsz != 124)
        return uf__err(UF_ERR_UNSUPPORTED, "BMP: unsupported header size %u", (unsigned)hsz);
    if (len < 14 + (size_t)hsz) return uf__err(UF_ERR_FORMAT, "BMP: truncated header");
    const uint8_t *hd = b + 14;
    int64_t w, h;
    int bits, topdown = 0;
    uint32_t comp = 0, colors = 0;
    size_t pal_entry = 4, pos = 14 + (size_t)hsz; /* pos: end of header (+ masks) */
    uint32_t masks[3] = {0, 0, 0};
    if (hsz == 12) { /* OS/2 1.x core header: unsigned 16-bit sizes, BGR palette */
        w = rd_le16(hd + 4);
        h = rd_le16(hd + 6);
        bits = (int)rd_le16(hd + 10);
        pal_entry = 3;
    } else {
        w = (int32_t)rd_le32(hd + 4);
        h = (int32_t)rd_le32(hd + 8);
        bits = (int)rd_le16(hd + 14);
        comp = rd_le32(hd + 16);
        colors = rd_le32(hd + 32);
        if (h < 0) {
            topdown = 1;
            h = -h;
        }
        if (comp == 3) {
            if (hsz >= 52) {
                for (int k = 0; k < 3; k++) masks[k] = rd_le32(hd + 40 + 4 * k);
            } else { /* 40-byte header: three masks follow it */
                if (len - pos < 12) return uf__err(UF_ERR_FORMAT, "BMP: truncated bit masks");
                for (int k = 0; k < 3; k++) masks[k] = rd_le32(b + pos + 4 * k);
                pos += 12;
            }
        }
    }
    if (w <= 0) return uf__err(UF_ERR_FORMAT, "BMP: invalid width %lld", (long long)w);
    uf_status st = check_dims("BMP", (uint64_t)w, (uint64_t)h);
    if (st) return st;
    if (bits != 1 && bits != 4 && bits != 8 && bits != 16 && bits != 24 && bits != 32)
        return uf__err(UF_ERR_UNSUPPORTED, "BMP: unsupported bit depth %d", bits);
    /* compression must fit the depth */
    if (!(comp == 0 || (comp == 1 && bits == 8) || (comp == 2 && bits == 4) ||
          (comp == 3 && bits >= 16)))
        return uf__err(UF_ERR_UNSUPPORTED, "BMP: unsupported compression %u for %d-bit",
                       (unsigned)comp, bits);
    if ((comp == 1 || comp == 2) && topdown)
        return uf__err(UF_ERR_FORMAT, "BMP: top-down bitmaps cannot be RLE compressed");

    /* Palette: entries beyond the file's stay a grey ramp, as in Pillow. */
    uint8_t pal[256][3];
    for (int i = 0; i < 256; i++) pal[i][0] = pal[i][1] = pal[i][2] = (uint8_t)i;
    if (bits <= 8) {
        uint64_t nc = colors ? colors : (1u << bits);
        if (nc > 65536) return uf__err(UF_ERR_FORMAT, "BMP: palette of %llu colours",
                                       (unsigned long long)nc);
        if ((uint64_t)(len - pos) < nc * pal_entry)
            return uf__err(UF_ERR_FORMAT, "BMP: truncated palette");
        for (uint64_t i = 0; i < nc && i < 256; i++) {
            const uint8_t *e = b + pos + i * pal_entry; /* B, G, R[, X] */
            pal[i][0] = e[2];
            pal[i][1] = e[1];
            pal[i][2] = e[0];
        }
        /* Pillow's fix-up for writers that omit the palette from the offset */
        if (off == 14 + hsz) off = (uint32_t)(off + 4 * nc);
    }
    if (off < 14 + hsz || off > len)
        return uf__err(UF_ERR_FORMAT, "BMP: pixel data offset %u outside the file",
                       (unsigned)off);

    bmp_field fr = {0, 0, 0}, fg = {0, 0, 0}, fb = {0, 0, 0};
    if (bits == 16 && comp == 0) { /* 5-5-5 */
        masks[0] = 0x7c00;
        masks[1] = 0x03e0;
        masks[2] = 0x001f;
    } else if (bits >= 24 && (comp == 0 || (!masks[0] && !masks[1] && !masks[2]))) {
        masks[0] = 0xff0000; /* BGR / BGRX; all-zero masks read as BGRX like Pillow */
        masks[1] = 0xff00;
        masks[2] = 0xff;
    }
    if (bits >= 16 && (!bmp_field_init(&fr, masks[0], bits) ||
                       !bmp_field_init(&fg, masks[1], bits) ||
                       !bmp_field_init(&fb, masks[2], bits)))
        return uf__err(UF_ERR_UNSUPPORTED, "BMP: unsupported bit masks %08x %08x %08x",
                       (unsigned)masks[0], (unsigned)masks[1], (unsigned)masks[2]);

    int W = (int)w, H = (int)h;
    const uint8_t *data = b + off;
    size_t avail = len - off;
    sink *k = calloc(1, sizeof *k);
    if (!k) return uf__err(UF_ERR_NOMEM, "BMP: out of memory");
    if (comp == 1 || comp == 2) {
        if ((st = bmp_rle(data, avail, W, H, comp == 2, NULL))) { /* enough data? */
            free(k);
            return st;
        }
        budget_add((size_t)W * H);
        uint8_t *idx = calloc((size_t)W * H, 1); /* [H][W] palette indices, file row order */
        if (!idx) {
            free(k);
            return uf__err(UF_ERR_NOMEM, "BMP: out of memory");
        }
        st = bmp_rle(data, avail, W, H, comp == 2, idx);
        if (!st) st = sink_open(k, t, W, H);
        if (st) {
            free(idx);
            sink_free(k);
            return st;
        }
        for (int y = 0; y < H; y++) {
            const uint8_t *ir = idx + (size_t)y * W;
            uint8_t *dst = sink_row(k, H - 1 - y); /* bottom-up */
            for (int x = 0; x < W; x++) memcpy(dst + 3 * x, pal[ir[x]], 3);
            sink_push(k, H - 1 - y);
        }
        free(idx);
        return sink_finish(k, out);
    }
    /* Uncompressed: rows padded to 4 bytes. */
    size_t stride = (((size_t)W * (size_t)bits + 31) / 32) * 4;
    size_t need;
    if (!uf__mul_ok(stride, (size_t)H, &need) || need > avail) {
        free(k);
        return uf__err(UF_ERR_FORMAT, "BMP: truncated pixel data (%zu of %zu bytes)", avail,
                       stride * (size_t)H);
    }
    if ((st = sink_open(k, t, W, H))) {
        sink_free(k);
        return st;
    }
    int bpp = bits / 8;
    for (int y = 0; y < H; y++) {
        const uint8_t *s = data + (size_t)y * stride;
        int oy = topdown ? y : H - 1 - y;
        uint8_t *dst = sink_row(k, oy); /* [W][3] */
        for (int x = 0; x < W; x++, dst += 3) {
            if (bits <= 8) {
                int per = 8 / bits; /* pixels per byte, most significant first */
                int v = (s[x / per] >> ((per - 1 - x % per) * bits)) & ((1 << bits) - 1);
                memcpy(dst, pal[v], 3);
            } else {
                const uint8_t *q = s + (size_t)x * bpp;
                uint32_t px = bits == 16 ? rd_le16(q)
                            : bits == 24 ? (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16
                                         : rd_le32(q);
                dst[0] = bmp_field_get(&fr, px);
                dst[1] = bmp_field_get(&fg, px);
                dst[2] = bmp_field_get(&fb, px);
            }
        }
        sink_push(k, oy);
    }
    return sink_finish(k, out);
}

/* ---- PNM (own parser) ---------------------------------------------------------------- */

typedef struct pnm_rd {
    const uint8_t *b;
    size_t len, pos;
} pnm_rd;

static int pnm_space(int c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* Skip whitespace and '#' comments (to end of line). */
static void pnm_skip(pnm_rd *r)
{
    while (r->pos < r->len) {
        int c = r->b[r->pos];
        if (c == '#') {
            while (r->pos < r->len && r->b[r->pos] != '\n' && r->b[r->pos] != '\r') r->pos++;
        } else if (pnm_space(c)) {
            r->pos++;
        } else {
            break;
        }
    }
}

/* Read an unsigned decimal token; -1 if absent, malformed or larger than 10^9. */
static long pnm_uint(pnm_rd *r)
{
    pnm_skip(r);
    long v = 0;
    size_t start = r->pos;
    while (r->pos < r->len && r->b[r->pos] >= '0' && r->b[r->pos] <= '9') {
        v = v * 10 + (r->b[r->pos] - '0');
        r->pos++;
        if (v > 1000000000L) return -1;
    }
    if (r->pos == start) return -1;
    if (r->pos < r->len && !pnm_space(r->b[r->pos]) && r->b[r->pos] != '#') return -1;
    return v;
}

/* Pillow's scaling for maxval != 255: min(255, round(v / maxval * 255)), ties to even. */
static uint8_t pnm_scale(long v, long maxval)
{
    if (maxval == 255) return (uint8_t)(v > 255 ? 255 : v);
    double t = nearbyint((double)v / (double)maxval * 255.0);
    return (uint8_t)(t > 255.0 ? 255 : t);
}

static uf_status decode_pnm(const uint8_t *b, size_t len, target *t,
                            uf_image **out)
{
    int kind = b[1] - '0'; /* 1..6 checked by the caller */
    pnm_rd r = {b, len, 2};
    long w = pnm_uint(&r), h = pnm_uint(&r), maxval = 1;
    if (w < 0 || h < 0) return uf__err(UF_ERR_FORMAT, "PNM: bad width/height in header");
    if (kind != 1 && kind != 4) {
        maxval = pnm_uint(&r);
        if (maxval < 1 || maxval > 65535)
            return uf__err(UF_ERR_FORMAT, "PNM: maxval %ld outside 1..65535", maxval);
    }
    uf_status st = check_dims("PNM", (uint64_t)w, (uint64_t)h);
    if (st) return st;
    int chans = (kind == 3 || kind == 6) ? 3 : 1;
    size_t npx = (size_t)w * (size_t)h;

    if (kind >= 4) { /* binary: exactly one whitespace byte ends the header */
        if (r.pos >= len || !pnm_space(b[r.pos]))
            return uf__err(UF_ERR_FORMAT, "PNM: missing whitespace after header");
        r.pos++;
        size_t avail = len - r.pos, need;
        size_t bps = maxval > 255 ? 2 : 1; /* bytes per sample */
        size_t rowb = kind == 4 ? ((size_t)w + 7) / 8 : (size_t)w * chans * bps;
        if (!uf__mul_ok(rowb, (size_t)h, &need) || need > avail)
            return uf__err(UF_ERR_FORMAT, "PNM: truncated pixel data (%zu of %zu bytes)",
                           avail, rowb * (size_t)h);
        sink *k = calloc(1, sizeof *k);
        if (!k) return uf__err(UF_ERR_NOMEM, "PNM: out of memory");
        if ((st = sink_open(k, t, (int)w, (int)h))) {
            sink_free(k);
            return st;
        }
        const uint8_t *d = b + r.pos;
        for (long y = 0; y < h; y++) {
            const uint8_t *s = d + (size_t)y * rowb;
            uint8_t *dst = sink_row(k, (int)y); /* [w][3] */
            for (long x = 0; x < w; x++) {
                if (kind == 4) { /* 1 = black */
                    uint8_t v = (s[x / 8] >> (7 - x % 8) & 1) ? 0 : 255;
                    dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = v;
                    continue;
                }
                for (int c = 0; c < chans; c++) {
                    size_t o8 = ((size_t)x * chans + c) * bps;
                    long v = bps == 2 ? (long)s[o8] << 8 | s[o8 + 1] : s[o8];
                    uint8_t o = pnm_scale(v, maxval);
                    if (chans == 1) dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = o;
                    else dst[3 * x + c] = o;
                }
            }
            sink_push(k, (int)y);
        }
        return sink_finish(k, out);
    }

    /* Plain (ASCII) formats; samples must not exceed maxval (as in Pillow). Every sample
     * takes at least one byte (P1) or a digit and a separator (P2/P3): check before
     * allocating, so a short file cannot claim a huge image. */
    size_t rest = len - r.pos, nsamp = npx * (size_t)chans;
    if ((kind == 1 && nsamp > rest) || (kind != 1 && nsamp > rest / 2 + 1))
        return uf__err(UF_ERR_FORMAT, "PNM: truncated (%zu samples cannot fit in %zu bytes)",
                       nsamp, rest);
    sink *k = calloc(1, sizeof *k);
    if (!k) return uf__err(UF_ERR_NOMEM, "PNM: out of memory");
    if ((st = sink_open(k, t, (int)w, (int)h))) {
        sink_free(k);
        return st;
    }
    for (size_t i = 0; i < npx; i++) {
        int y = (int)(i / (size_t)w), x = (int)(i % (size_t)w);
        uint8_t *dst = sink_row(k, y) + 3 * (size_t)x;
        if (kind == 1) { /* single-character tokens, whitespace optional */
            pnm_skip(&r);
            if (r.pos >= len || (b[r.pos] != '0' && b[r.pos] != '1')) {
                sink_free(k);
                return uf__err(UF_ERR_FORMAT, "PNM: %s at pixel %zu",
                               r.pos >= len ? "truncated data" : "invalid P1 token", i);
            }
            dst[0] = dst[1] = dst[2] = b[r.pos++] == '1' ? 0 : 255;
        } else {
            for (int c = 0; c < chans; c++) {
                long v = pnm_uint(&r);
                if (v < 0 || v > maxval) {
                    sink_free(k);
                    return uf__err(UF_ERR_FORMAT, "PNM: %s at pixel %zu",
                                   v < 0 ? "missing or bad sample" : "sample above maxval", i);
                }
                uint8_t o = pnm_scale(v, maxval);
                if (chans == 1) dst[0] = dst[1] = dst[2] = o;
                else dst[c] = o;
            }
        }
        if (x == (int)w - 1) sink_push(k, y);
    }
    return sink_finish(k, out);
}

/* ---- dispatch ------------------------------------------------------------------------- */

/* Decode buf by its magic bytes (t: see target). */
static uf_status decode_any(const uint8_t *b, size_t len, target *t, uf_image **out)
{
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};
    if (len >= 8 && memcmp(b, png_sig, 8) == 0) return decode_png(b, len, t, out);
    if (len >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff) return decode_jpeg(b, len, t, out);
    if (len >= 2 && b[0] == 'B' && b[1] == 'M') return decode_bmp(b, len, t, out);
    if (len >= 3 && b[0] == 'P' && b[1] >= '1' && b[1] <= '6' && (pnm_space(b[2]) || b[2] == '#'))
        return decode_pnm(b, len, t, out);
    return uf__err(UF_ERR_FORMAT, "unrecognised image format");
}

uf_status uf_image_decode(const void *buf, size_t len, uf_image **out)
{
    if (!out) return uf__err(UF_ERR_ARG, "uf_image_decode: out is NULL");
    *out = NULL;
    if (!buf && len) return uf__err(UF_ERR_ARG, "uf_image_decode: buf is NULL");
    return decode_any(buf, len, NULL, out);
}

/* Read path and decode it (t: see target); errors name the path. */
static uf_status load(const char *path, target *t, uf_image **out)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    uf_status st = uf__read_file(path, (size_t)1 << 31, &buf, &len); /* names the path */
    if (st) return st;
    st = decode_any(buf, len, t, out);
    free(buf);
    return st ? uf__err_prefix(st, path) : UF_OK;
}

uf_status uf_image_load(const char *path, uf_image **out)
{
    if (!out) return uf__err(UF_ERR_ARG, "uf_image_load: out is NULL");
    *out = NULL;
    if (!path) return uf__err(UF_ERR_ARG, "uf_image_load: path is NULL");
    return load(path, NULL, out);
}

uf_status uf_image_load_shrunk(const char *path, const uf_preprocess *p, uf_image **out,
                               int *width, int *height)
{
    if (!out || !width || !height || !path)
        return uf__err(UF_ERR_ARG, "uf_image_load_shrunk: NULL argument");
    *out = NULL;
    *width = *height = 0;
    uf_preprocess d = uf_preprocess_default();
    target t = {p ? p : &d, 0, 0};
    tl_budget.active = true;
    uf_status st = load(path, &t, out);
    tl_budget.active = false;
    budget_release();
    if (st) return st;
    *width = t.w;
    *height = t.h;
    return UF_OK;
}
