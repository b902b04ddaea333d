/*
 * imgout.c - image output: PNG writing and anomaly-map overlays.
 *
 * uf_image_write_png encodes an 8-bit RGB image with libpng into memory and writes it
 * through atomic.c (an unnamed O_TMPFILE file, fsync'ed and renamed over the target), so a
 * reader sees either the old file or the complete new one, never a half-written PNG, and a
 * failure or a kill leaves nothing behind.
 *
 * uf_heatmap_overlay colours a float map with matplotlib's "jet" colormap and alpha-blends
 * it over an image. The colormap is reproduced bit for bit: matplotlib builds a 256-entry
 * lookup table from jet's piecewise-linear segments (LinearSegmentedColormap with N=256)
 * and indexes it with floor(t * 256) (t == 1 -> 255), so a heatmap drawn here equals
 * `cm.jet(t)[..., :3] * 255` rounded, as a Python user would draw it. The table is
 * computed with the same floating-point operations as matplotlib's _create_lookup_table,
 * so even values that land exactly on .5 round the same way (tests compare against
 * tables made by matplotlib itself).
 */
#include "core/internal.h"

#include <errno.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- PNG writing ---------------------------------------------------------------------- */

/* State shared with libpng's callbacks. It lives in the caller of the function that calls
 * setjmp (uf_image_write_png), so values the callbacks store before longjmp are not
 * "indeterminate" automatic objects of the setjmp frame (C11 7.13.2.1p3). */
typedef struct png_out {
    FILE *fp;      /* the temporary file                               */
    int err;       /* errno of the first failed write, 0 if none       */
    char msg[192]; /* libpng's error text                              */
} png_out;

static void png_out_write(png_structp png, png_bytep data, size_t n)
{
    png_out *o = png_get_io_ptr(png);
    if (fwrite(data, 1, n, o->fp) != n) {
        o->err = errno ? errno : EIO;
        png_error(png, "write failed");
    }
}

static void png_out_flush(png_structp png)
{
    png_out *o = png_get_io_ptr(png);
    if (fflush(o->fp) != 0) {
        o->err = errno ? errno : EIO;
        png_error(png, "write failed");
    }
}

/* Record libpng's message and leave through png_jmpbuf (never return to libpng). */
static void png_out_error(png_structp png, png_const_charp msg)
{
    png_out *o = png_get_error_ptr(png);
    snprintf(o->msg, sizeof o->msg, "%s", msg ? msg : "libpng error");
    png_longjmp(png, 1);
}

/* The library never prints: warnings are dropped. */
static void png_out_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

/* Encode img into o->fp. Returns 0 on success, -1 with o->msg (and maybe o->err) set.
 * setjmp lives here, in a small frame: png and info are assigned before setjmp and not
 * changed until after the last possible longjmp, so they need not be volatile; the row
 * index is volatile only so that nothing in this frame is indeterminate after a jump. */
static int png_encode(png_out *o, const uf_image *img)
{
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, o, png_out_error,
                                              png_out_warning);
    if (!png) {
        snprintf(o->msg, sizeof o->msg, "cannot create libpng writer");
        return -1;
    }
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        snprintf(o->msg, sizeof o->msg, "cannot create libpng info");
        return -1;
    }
    volatile int y = 0;
    if (setjmp(png_jmpbuf(png))) {
        /* o->msg was set by png_out_error; libpng's own allocations go here */
        png_destroy_write_struct(&png, &info);
        return -1;
    }
    png_set_write_fn(png, o, png_out_write, png_out_flush);
    /* libpng refuses widths/heights above 10^6 by default, also when writing */
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
    png_set_IHDR(png, info, (png_uint_32)img->width, (png_uint_32)img->height, 8,
                 PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    /* Row by row from the caller's buffer: no row-pointer table to allocate or leak. */
    const size_t stride = (size_t)img->width * 3; /* bytes per row; checked by caller */
    for (y = 0; y < img->height; y++) png_write_row(png, img->rgb + (size_t)y * stride);
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    return 0;
}

uf_status uf_image_write_png(const uf_image *img, const char *path)
{
    if (!img || !img->rgb || !path || !*path)
        return uf__err(UF_ERR_ARG, "uf_image_write_png: NULL image or empty path");
    size_t stride;
    if (img->width <= 0 || img->height <= 0 || !uf__mul_ok((size_t)img->width, 3, &stride))
        return uf__err(UF_ERR_ARG, "%s: invalid image size %dx%d", path, img->width,
                       img->height);

    /* an invisible file in path's folder, made visible by uf__afile_commit (atomic.c) */
    uf__afile af;
    uf_status s = uf__afile_open(&af, path);
    if (s != UF_OK) return s;
    png_out o = {NULL, 0, ""};
    int fd2 = dup(af.fd); /* stdio gets its own descriptor; af.fd stays for the commit */
    o.fp = fd2 >= 0 ? fdopen(fd2, "wb") : NULL;
    if (!o.fp) {
        int e = errno;
        if (fd2 >= 0) close(fd2);
        uf__afile_abort(&af);
        return uf__err(UF_ERR_IO, "%s: cannot open the new file: %s", path, strerror(e));
    }
    const char *what = NULL; /* which step failed, NULL = none */
    int err = 0;             /* its errno, 0 = not a system error */
    if (png_encode(&o, img) != 0) {
        what = o.msg;
        err = o.err;
    } else if (fflush(o.fp) != 0) {
        what = "write failed";
        err = errno;
    }
    /* fclose exactly once, whatever happened; a failing close is a failed write */
    if (fclose(o.fp) != 0 && !what) {
        what = "close failed";
        err = errno;
    }
    if (what) {
        uf__afile_abort(&af);
        if (err) return uf__err(UF_ERR_IO, "%s: %s: %s", path, what, strerror(err));
        return uf__err(UF_ERR_IO, "%s: PNG encoding failed: %s", path, what);
    }
    return uf__afile_commit(&af);
}

uf_status uf_image_encode_png(const uf_image *img, uint8_t **out, size_t *len)
{
    if (out) *out = NULL;
    if (len) *len = 0;
    if (!img || !img->rgb || !out || !len)
        return uf__err(UF_ERR_ARG, "uf_image_encode_png: NULL argument");
    size_t stride;
    if (img->width <= 0 || img->height <= 0 || !uf__mul_ok((size_t)img->width, 3, &stride))
        return uf__err(UF_ERR_ARG, "uf_image_encode_png: invalid image size %dx%d", img->width,
                       img->height);
    char *buf = NULL;
    size_t n = 0;
    png_out o = {open_memstream(&buf, &n), 0, ""};
    if (!o.fp) return uf__err(UF_ERR_NOMEM, "uf_image_encode_png: out of memory");
    int bad = png_encode(&o, img) != 0;
    if (fclose(o.fp) != 0 && !bad) { /* the stream's final flush failed: out of memory */
        bad = 1;
        snprintf(o.msg, sizeof o.msg, "out of memory");
    }
    if (bad) {
        free(buf);
        return uf__err(o.err == ENOMEM || !strcmp(o.msg, "out of memory") ? UF_ERR_NOMEM
                                                                          : UF_ERR_INTERNAL,
                       "uf_image_encode_png: %s", o.msg);
    }
    *out = (uint8_t *)buf;
    *len = n;
    return UF_OK;
}

/* ---- jet colormap and overlay ----------------------------------------------------------- */

/* matplotlib's _jet_data (matplotlib/_cm.py): per channel, control points (x, y) of a
 * piecewise-linear function of t in [0, 1]. jet is continuous (y0 == y1 at every x). */
typedef struct jet_seg {
    int n;           /* control points */
    double x[6], y[6];
} jet_seg;

static const jet_seg jet_data[3] = {
    {5, {0.0, 0.35, 0.66, 0.89, 1.0}, {0.0, 0.0, 1.0, 1.0, 0.5}},                   /* red   */
    {6, {0.0, 0.125, 0.375, 0.64, 0.91, 1.0}, {0.0, 0.0, 1.0, 1.0, 0.0, 0.0}},       /* green */
    {5, {0.0, 0.11, 0.34, 0.65, 1.0}, {0.5, 1.0, 1.0, 0.0, 0.0}},                   /* blue  */
};

#define JET_N 256

/* Fill lut with matplotlib's 256-entry jet table in 8 bits: round(lut_float * 255),
 * rounding half to even like numpy. The operations mirror _create_lookup_table:
 *   x = x_data * (N-1);  xind = (N-1) * linspace(0, 1, N)  (linspace: i * (1/(N-1)),
 *   last = 1);  k = searchsorted(x, xind) (first x[k] >= xind);
 *   lut = (xind - x[k-1]) / (x[k] - x[k-1]) * (y[k] - y[k-1]) + y[k-1];
 *   lut[0] = y[0], lut[N-1] = y[last]; clipped to [0, 1]. */
static void jet_table(uint8_t lut[JET_N][3])
{
    const double step = 1.0 / (JET_N - 1);
    for (int c = 0; c < 3; c++) {
        const jet_seg *s = &jet_data[c];
        double xs[6]; /* control points scaled to [0, N-1] */
        for (int k = 0; k < s->n; k++) xs[k] = s->x[k] * (JET_N - 1);
        for (int i = 0; i < JET_N; i++) {
            double v;
            if (i == 0) {
                v = s->y[0];
            } else if (i == JET_N - 1) {
                v = s->y[s->n - 1];
            } else {
                double xi = (JET_N - 1) * ((double)i * step);
                int k = 0;
                while (k < s->n - 1 && xs[k] < xi) k++; /* searchsorted, side="left" */
                if (k == 0) k = 1;                      /* not reached for jet */
                double d = (xi - xs[k - 1]) / (xs[k] - xs[k - 1]);
                v = d * (s->y[k] - s->y[k - 1]) + s->y[k - 1];
            }
            v = v < 0 ? 0 : v > 1 ? 1 : v;
            lut[i][c] = (uint8_t)nearbyint(v * 255.0); /* default mode: half to even */
        }
    }
}

/* The lookup index of t in [0, 1] as matplotlib's Colormap.__call__ computes it:
 * floor(t * N), with t == 1 (and anything rounding to N) mapped to N-1. */
static int jet_index(double t)
{
    double xa = t * JET_N;
    if (!(xa > 0)) return 0; /* also NaN (callers pass none) */
    if (xa >= JET_N) return JET_N - 1;
    return (int)xa;
}

uf_status uf_heatmap_overlay(const uf_image *img, const float *map, float lo, float hi,
                             float alpha, uf_image **out)
{
    if (out) *out = NULL;
    if (!img || !img->rgb || !map || !out)
        return uf__err(UF_ERR_ARG, "uf_heatmap_overlay: NULL argument");
    if (!(alpha >= 0.0f && alpha <= 1.0f)) /* also refuses NaN */
        return uf__err(UF_ERR_ARG, "uf_heatmap_overlay: alpha %g outside [0, 1]",
                       (double)alpha);
    uf_image *o = NULL;
    uf_status s = uf_image_new(img->width, img->height, &o);
    if (s != UF_OK) return uf__err_prefix(s, "uf_heatmap_overlay");
    const size_t npx = (size_t)img->width * (size_t)img->height; /* fits: image exists */

    /* Range: the caller's, or the finite min/max of the map. A map with no spread (or no
     * finite value) draws every pixel at t = 0. */
    double dlo = lo, dhi = hi;
    int flat = 0; /* 1: every t is 0 */
    if (!(isfinite(dlo) && isfinite(dhi) && dhi > dlo)) {
        double mn = INFINITY, mx = -INFINITY;
        for (size_t i = 0; i < npx; i++) {
            double v = map[i];
            if (!isfinite(v)) continue;
            if (v < mn) mn = v;
            if (v > mx) mx = v;
        }
        dlo = mn;
        dhi = mx;
        flat = !(mx > mn);
    }

    uint8_t lut[JET_N][3]; /* [256][rgb] */
    jet_table(lut);
    const double a = alpha, b = 1.0 - a; /* colour and image weights */
    const double span = dhi - dlo;        /* > 0 unless flat; double: no overflow */
    const uint8_t *src = img->rgb;        /* [h][w][3] */
    uint8_t *dst = o->rgb;                /* [h][w][3] */
    for (size_t i = 0; i < npx; i++) {
        double v = map[i], t = 0.0;
        if (!flat && !isnan(v)) {
            t = (v - dlo) / span;
            t = t < 0 ? 0 : t > 1 ? 1 : t; /* +-Inf clip to the ends */
        }
        const uint8_t *c = lut[jet_index(t)];
        for (int k = 0; k < 3; k++) {
            /* round half up; the blend is in [0, 255] as a convex combination */
            double m = a * c[k] + b * src[3 * i + k];
            dst[3 * i + k] = (uint8_t)floor(m + 0.5);
        }
    }
    *out = o;
    return UF_OK;
}
