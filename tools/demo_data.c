/*
 * demo_data.c - the procedural dataset behind `uniformaly demo` (see demo_data.h).
 *
 * Images are rendered per pixel from a few analytic ingredients:
 *   - value noise (hashed lattice values, smoothstep-bilinear), used for grain, warps and
 *     fibres, and a per-pixel hash for sensor-like grain;
 *   - "texture": a wood-like grating across a seeded grain direction, domain-warped by
 *     smooth noise, with elongated fibres along the grain, a faint cross weave and fine
 *     noise; per image the phase, warp, noise and brightness change, the family (direction,
 *     period, tint) is fixed per dataset seed;
 *   - "object": a bottle top seen from above (bright lit rim, dark groove, ridged ring,
 *     darker inner disc, bright cap) on a dark, slightly noisy background.
 * Defects are painted over a finished good image and record a mask of exactly the pixels
 * they touched. All randomness comes from splitmix64 streams seeded from (dataset seed,
 * split, defect type, index), never from rand(), so a dataset is reproducible.
 */
#include "demo_data.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEMO_PI 3.14159265358979323846

/* ---- random numbers ------------------------------------------------------------------- */

/* The library's splitmix64 (uf_splitmix64): good enough for pictures and trivially
 * seedable from any 64-bit value. */
#define demo_next uf_splitmix64

/* Uniform in [0, 1) with 53 random bits. */
static double demo_unif(uint64_t *s) { return (double)(demo_next(s) >> 11) * 0x1.0p-53; }

/* Uniform in [a, b). */
static double demo_range(uint64_t *s, double a, double b) { return a + (b - a) * demo_unif(s); }

/* A well-mixed seed from two values (order matters). */
static uint64_t demo_mix(uint64_t a, uint64_t b)
{
    uint64_t s = a ^ (b * 0xD1B54A32D192ED03ull + 0x8CB92BA72F3D8DD7ull);
    demo_next(&s);
    return demo_next(&s);
}

/* Hash of an integer lattice point to [0, 1). */
static double demo_hash01(uint64_t seed, int64_t ix, int64_t iy)
{
    uint64_t s = seed ^ ((uint64_t)ix * 0x9E3779B97F4A7C15ull) ^
                 ((uint64_t)iy * 0xC2B2AE3D27D4EB4Full);
    return demo_unif(&s);
}

/* ---- value noise ------------------------------------------------------------------------ */

static double demo_smooth(double t) { return t * t * (3.0 - 2.0 * t); }

/* Smooth noise in [0, 1) with features of about one unit: hashed values at integer
 * lattice points, blended with smoothstep weights. */
static double demo_vnoise(uint64_t seed, double x, double y)
{
    double fx = floor(x), fy = floor(y);
    int64_t ix = (int64_t)fx, iy = (int64_t)fy;
    double tx = demo_smooth(x - fx), ty = demo_smooth(y - fy);
    double a = demo_hash01(seed, ix, iy), b = demo_hash01(seed, ix + 1, iy);
    double c = demo_hash01(seed, ix, iy + 1), d = demo_hash01(seed, ix + 1, iy + 1);
    return (a + (b - a) * tx) * (1.0 - ty) + (c + (d - c) * tx) * ty;
}

/* smoothstep from e0 to e1 (e0 < e1). */
static double demo_step(double e0, double e1, double x)
{
    double t = (x - e0) / (e1 - e0);
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    return demo_smooth(t);
}

static uint8_t demo_u8(double v)
{
    v = floor(v + 0.5);
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

double demo_luma(const uint8_t *p) { return 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]; }

/* ---- texture --------------------------------------------------------------------------- */

/* One texture image's parameters (lengths in pixels). */
typedef struct demo_tex {
    double ang;         /* grain direction: rings run along it                    */
    double period;      /* ring period across the grain                          */
    double phase;       /* ring phase, radians                                   */
    double warp_amp;    /* domain-warp amplitude (pixels across the grain)       */
    double warp_scale;  /* warp feature size                                     */
    double fib_w;       /* fibre feature size across the grain                   */
    double fib_l;       /* fibre feature size along the grain                    */
    double weave_period;/* faint cross weave period                              */
    double weave_phase;
    double tint[3];     /* colour of luminance 1                                 */
    double bright;      /* per-image brightness factor                           */
    uint64_t nseed;     /* seed of all noise fields                              */
} demo_tex;

/* Family (per dataset) and per-image draws of the texture parameters. */
static void demo_tex_family(uint64_t *fs, demo_tex *fam, int size)
{
    double sc = size / 224.0; /* features scale with the image */
    fam->ang = demo_range(fs, 0.0, DEMO_PI);
    fam->period = sc * demo_range(fs, 15.0, 24.0);
    fam->warp_amp = sc * demo_range(fs, 6.0, 11.0);
    fam->warp_scale = sc * demo_range(fs, 45.0, 70.0);
    fam->fib_w = sc * demo_range(fs, 1.2, 2.0);
    fam->fib_l = sc * demo_range(fs, 14.0, 26.0);
    fam->weave_period = sc * demo_range(fs, 5.0, 7.0);
    /* warm wood-like tints, somewhat varied per dataset */
    fam->tint[0] = 1.0;
    fam->tint[1] = demo_range(fs, 0.66, 0.78);
    fam->tint[2] = demo_range(fs, 0.40, 0.55);
    fam->phase = fam->weave_phase = 0.0;
    fam->bright = 1.0;
    fam->nseed = 0;
}

static void demo_tex_instance(uint64_t *rs, const demo_tex *fam, demo_tex *t)
{
    *t = *fam;
    t->ang = fam->ang + demo_range(rs, -0.05, 0.05); /* about +-3 degrees */
    t->period = fam->period * demo_range(rs, 0.95, 1.05);
    t->phase = demo_range(rs, 0.0, 2.0 * DEMO_PI);
    t->weave_phase = demo_range(rs, 0.0, 2.0 * DEMO_PI);
    t->bright = demo_range(rs, 0.94, 1.06);
    t->nseed = demo_next(rs);
}

/* The texture's colour at pixel (x, y). */
static void demo_tex_pixel(const demo_tex *t, int x, int y, uint8_t rgb[3])
{
    double ca = cos(t->ang), sa = sin(t->ang);
    double u = -sa * x + ca * y; /* across the grain */
    double v = ca * x + sa * y;  /* along the grain  */
    double warp = t->warp_amp * 2.0 *
                  (demo_vnoise(t->nseed, x / t->warp_scale, y / t->warp_scale) - 0.5);
    double ring = 0.5 + 0.5 * sin(2.0 * DEMO_PI * (u + warp) / t->period + t->phase);
    ring = ring * ring; /* narrow dark-to-light late-wood bands */
    double fib = demo_vnoise(t->nseed + 1, u / t->fib_w, v / t->fib_l);
    double weave = sin(2.0 * DEMO_PI * v / t->weave_period + t->weave_phase);
    double fine = demo_vnoise(t->nseed + 2, x / 3.0, y / 3.0);
    double grain = demo_hash01(t->nseed + 3, x, y);
    double L = 0.46 + 0.26 * ring + 0.12 * (fib - 0.5) + 0.025 * weave + 0.06 * (fine - 0.5) +
               0.04 * (grain - 0.5);
    L *= t->bright;
    for (int c = 0; c < 3; c++) rgb[c] = demo_u8(255.0 * L * t->tint[c]);
}

/* ---- object ------------------------------------------------------------------------------ */

/* One object image's parameters. */
typedef struct demo_obj {
    double cx, cy, R;   /* centre and outer radius, pixels                   */
    double light;       /* direction the rim highlight faces, radians          */
    double ridge_phase; /* phase of the concentric ridges                      */
    double bright;      /* per-image brightness factor                         */
    double tint[3];     /* object colour of luminance 1                        */
    uint64_t nseed;     /* noise seed                                          */
} demo_obj;

static void demo_obj_instance(uint64_t *rs, double tint_g, int size, demo_obj *o)
{
    o->cx = size * (0.5 + demo_range(rs, -0.03, 0.03));
    o->cy = size * (0.5 + demo_range(rs, -0.03, 0.03));
    o->R = size * 0.36 * demo_range(rs, 0.96, 1.04);
    o->light = 1.25 * DEMO_PI + demo_range(rs, -0.2, 0.2); /* from the upper left */
    o->ridge_phase = demo_range(rs, 0.0, 2.0 * DEMO_PI);
    o->bright = demo_range(rs, 0.95, 1.05);
    o->tint[0] = 0.93;
    o->tint[1] = tint_g;
    o->tint[2] = 0.86;
    o->nseed = demo_next(rs);
}

/* Width of the smooth object edge in units of R (about 1.2 px). */
static double demo_obj_edge(const demo_obj *o) { return 1.2 / o->R; }

/* 1 if the object contributes to pixel (x, y) at all (inside the soft outer edge). */
static int demo_obj_covers(const demo_obj *o, int x, int y)
{
    double r = hypot(x - o->cx, y - o->cy) / o->R;
    return r < 1.0 + demo_obj_edge(o);
}

/* The plain dark background at (x, y): slightly cool, slow shading plus sensor grain. */
static void demo_bg_pixel(const demo_obj *o, int x, int y, double out[3])
{
    double slow = demo_vnoise(o->nseed + 10, x / 50.0, y / 50.0);
    double grain = demo_hash01(o->nseed + 11, x, y);
    double L = 0.085 + 0.03 * (slow - 0.5) + 0.02 * (grain - 0.5);
    out[0] = 255.0 * L * 0.95;
    out[1] = 255.0 * L;
    out[2] = 255.0 * L * 1.06;
}

/* The object over the background at (x, y). Radial profile (r in units of R):
 * cap < 0.18 < inner disc < 0.45 < ridged ring < 0.80 < groove < 0.86 < lit rim < 1. */
static void demo_obj_pixel(const demo_obj *o, int x, int y, uint8_t rgb[3])
{
    double dx = x - o->cx, dy = y - o->cy;
    double r = hypot(dx, dy) / o->R, th = atan2(dy, dx), e = demo_obj_edge(o);
    double L = 0.66;                                                /* cap         */
    L += (0.33 + 0.08 * r - L) * demo_step(0.18 - e, 0.18 + e, r);  /* inner disc  */
    double ridges = 0.50 + 0.07 * sin(2.0 * DEMO_PI * r / 0.055 + o->ridge_phase);
    L += (ridges - L) * demo_step(0.45 - e, 0.45 + e, r);           /* ridged ring */
    L += (0.27 - L) * demo_step(0.80 - e, 0.80 + e, r);             /* groove      */
    double rim = 0.74 + 0.14 * cos(th - o->light) + 0.05 * sin(DEMO_PI * (r - 0.86) / 0.14);
    L += (rim - L) * demo_step(0.86 - e, 0.86 + e, r);              /* lit rim     */
    double fine = demo_vnoise(o->nseed + 12, x / 4.0, y / 4.0);
    double grain = demo_hash01(o->nseed + 13, x, y);
    L = (L + 0.04 * (fine - 0.5) + 0.03 * (grain - 0.5)) * o->bright;
    double bg[3];
    demo_bg_pixel(o, x, y, bg);
    double w = 1.0 - demo_step(1.0 - e, 1.0 + e, r); /* object opacity */
    for (int c = 0; c < 3; c++) rgb[c] = demo_u8(w * 255.0 * L * o->tint[c] + (1.0 - w) * bg[c]);
}

/* ---- defects ----------------------------------------------------------------------------- */

/* Where a defect may go. demo_place picks a defect centre so that everything within
 * `extent` pixels of it stays in the allowed area: for "texture" the image minus a 2 px
 * frame (so masks never touch the border), for "object" the disc of radius 0.9 R. */
typedef struct demo_area {
    int is_obj;
    int size;
    const demo_obj *obj; /* when is_obj */
} demo_area;

/* Draw a centre such that a defect of the given extent (pixels from its centre) fits. */
static void demo_place(uint64_t *rs, const demo_area *a, double extent, double *cx, double *cy)
{
    if (a->is_obj) {
        /* inside 0.9 R, so the defect sits on the rim/ring, not on the background */
        double room = 0.9 * a->obj->R - extent;
        if (room < 0) room = 0;
        double rad = room * sqrt(demo_unif(rs)), th = demo_range(rs, 0.0, 2.0 * DEMO_PI);
        *cx = a->obj->cx + rad * cos(th);
        *cy = a->obj->cy + rad * sin(th);
    } else {
        double m = extent + 2.0, hi = a->size - 1 - m;
        if (hi < m) hi = m = 0.5 * (a->size - 1);
        *cx = demo_range(rs, m, hi);
        *cy = demo_range(rs, m, hi);
    }
}

/* Bounding box [x0, x1] x [y0, y1] of a disc, clipped to the image. */
static void demo_bbox(int size, double cx, double cy, double ext, int *x0, int *x1, int *y0,
                      int *y1)
{
    *x0 = (int)floor(cx - ext);
    *x1 = (int)ceil(cx + ext);
    *y0 = (int)floor(cy - ext);
    *y1 = (int)ceil(cy + ext);
    if (*x0 < 0) *x0 = 0;
    if (*y0 < 0) *y0 = 0;
    if (*x1 > size - 1) *x1 = size - 1;
    if (*y1 > size - 1) *y1 = size - 1;
}

/* Distance from p to segment a-b. */
static double demo_seg_dist(double px, double py, double ax, double ay, double bx, double by)
{
    double vx = bx - ax, vy = by - ay, wx = px - ax, wy = py - ay;
    double l2 = vx * vx + vy * vy, t = l2 > 0 ? (wx * vx + wy * vy) / l2 : 0.0;
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    return hypot(wx - t * vx, wy - t * vy);
}

#define DEMO_SCRATCH_SEGS 40

/* A scratch: a quadratic Bezier curve, rasterised with hard edges (every pixel within
 * width/2 of the curve), bright on dark surroundings and dark on bright ones. */
static void demo_scratch(uint64_t *rs, const demo_area *a, uf_image *img, uint8_t *mask)
{
    int S = a->size;
    double len = S * demo_range(rs, 0.15, 0.35);
    double width = demo_range(rs, 2.0, 4.0) * (S > 224 ? S / 224.0 : 1.0);
    double ang = demo_range(rs, 0.0, DEMO_PI), bend = demo_range(rs, -0.15, 0.15) * len;
    /* the control polygon lies within 0.53 len of the centre: so does the curve */
    double ext = 0.53 * len + 0.5 * width + 1.0, cx, cy;
    demo_place(rs, a, ext, &cx, &cy);
    double ux = cos(ang), uy = sin(ang);
    double p0x = cx - 0.5 * len * ux, p0y = cy - 0.5 * len * uy;
    double p2x = cx + 0.5 * len * ux, p2y = cy + 0.5 * len * uy;
    double p1x = cx - bend * uy, p1y = cy + bend * ux;
    double px[DEMO_SCRATCH_SEGS + 1], py[DEMO_SCRATCH_SEGS + 1]; /* polyline */
    for (int i = 0; i <= DEMO_SCRATCH_SEGS; i++) {
        double t = (double)i / DEMO_SCRATCH_SEGS, s = 1.0 - t;
        px[i] = s * s * p0x + 2 * s * t * p1x + t * t * p2x;
        py[i] = s * s * p0y + 2 * s * t * p1y + t * t * p2y;
    }
    int x0, x1, y0, y1;
    demo_bbox(S, cx, cy, ext, &x0, &x1, &y0, &y1);
    /* pass 1: mask and the mean luma under it, to pick a contrasting colour */
    double sum = 0;
    long n = 0;
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) {
            double d = INFINITY;
            for (int i = 0; i < DEMO_SCRATCH_SEGS; i++) {
                double di = demo_seg_dist(x, y, px[i], py[i], px[i + 1], py[i + 1]);
                if (di < d) d = di;
            }
            if (d <= 0.5 * width) {
                mask[(size_t)y * S + x] = 1;
                sum += demo_luma(img->rgb + 3 * ((size_t)y * S + x));
                n++;
            }
        }
    int dark = n > 0 && sum / n > 105.0;
    /* pass 2: paint; keep a little of the surface so the line is not a flat stroke */
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) {
            size_t i = (size_t)y * S + x;
            if (!mask[i]) continue;
            uint8_t *p = img->rgb + 3 * i;
            for (int c = 0; c < 3; c++)
                p[c] = dark ? demo_u8(0.22 * p[c] + 8.0) : demo_u8(0.25 * p[c] + 0.75 * 238.0);
        }
}

/* An irregular blob: radius r0 modulated by two harmonics of the angle, plus (rough != 0)
 * higher ones for a chipped outline. Returns the blob's relative radius of (x, y): < 1 is
 * inside. */
typedef struct demo_blob {
    double cx, cy, r0;
    double a1, f1, a2, f2, a3, f3; /* harmonic amplitudes (relative) and phases */
    int k3;                        /* order of the third harmonic (0: none)      */
} demo_blob;

static double demo_blob_rel(const demo_blob *b, double x, double y)
{
    double dx = x - b->cx, dy = y - b->cy, th = atan2(dy, dx);
    double r = b->r0 * (1.0 + b->a1 * sin(3 * th + b->f1) + b->a2 * sin(5 * th + b->f2) +
                        (b->k3 ? b->a3 * sin(b->k3 * th + b->f3) : 0.0));
    return hypot(dx, dy) / r;
}

/* Draw a blob of radius r0; its extent is at most 1.4 r0. */
static void demo_blob_draw(uint64_t *rs, const demo_area *a, double r0, int rough, demo_blob *b)
{
    b->r0 = r0;
    b->a1 = demo_range(rs, 0.05, 0.18);
    b->f1 = demo_range(rs, 0.0, 2.0 * DEMO_PI);
    b->a2 = demo_range(rs, 0.03, 0.10);
    b->f2 = demo_range(rs, 0.0, 2.0 * DEMO_PI);
    b->k3 = rough ? 11 : 0;
    b->a3 = rough ? demo_range(rs, 0.05, 0.10) : 0.0;
    b->f3 = demo_range(rs, 0.0, 2.0 * DEMO_PI);
    demo_place(rs, a, 1.4 * r0 + 1.0, &b->cx, &b->cy);
}

/* A spot: a stain of a foreign colour, densest in the middle; the surface shows through
 * a little so it reads as a stain rather than a sticker. */
static void demo_spot(uint64_t *rs, const demo_area *a, uf_image *img, uint8_t *mask)
{
    int S = a->size;
    demo_blob b;
    demo_blob_draw(rs, a, S * demo_range(rs, 0.04, 0.08), 0, &b);
    /* texture (warm browns): cool grey-green or deep red stains; object (greys): rust or
     * dark oil */
    static const double tex_cols[2][3] = {{70, 105, 95}, {120, 30, 35}};
    static const double obj_cols[2][3] = {{185, 95, 35}, {55, 42, 30}};
    int k = demo_unif(rs) < 0.5;
    const double *col = a->is_obj ? obj_cols[k] : tex_cols[k];
    int x0, x1, y0, y1;
    demo_bbox(S, b.cx, b.cy, 1.4 * b.r0 + 1.0, &x0, &x1, &y0, &y1);
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) {
            double q = demo_blob_rel(&b, x, y);
            if (q >= 1.0) continue;
            size_t i = (size_t)y * S + x;
            mask[i] = 1;
            uint8_t *p = img->rgb + 3 * i;
            double shade = 0.75 + 0.5 * demo_luma(p) / 255.0; /* keeps some structure */
            double w = 0.60 + 0.30 * (1.0 - q * q);            /* 0.6 at the rim .. 0.9 */
            for (int c = 0; c < 3; c++) p[c] = demo_u8((1.0 - w) * p[c] + w * col[c] * shade);
        }
}

/* Missing material: a chipped region 8-15% of the side across. On "texture" it is filled
 * with a foreign texture (other direction, finer, greyer) derived from tex; on "object"
 * (tex NULL) with background, as if broken out, and the mask keeps only pixels where
 * there was object. */
static void demo_missing(uint64_t *rs, const demo_area *a, const demo_tex *tex, uf_image *img,
                         uint8_t *mask)
{
    int S = a->size;
    double r0 = 0.5 * S * demo_range(rs, 0.08, 0.15);
    demo_blob b;
    demo_blob_draw(rs, a, r0, 1, &b);
    demo_tex wrong;
    memset(&wrong, 0, sizeof wrong);
    if (!a->is_obj) {
        wrong = *tex;
        wrong.ang = tex->ang + demo_range(rs, 0.35, 0.65) * DEMO_PI;
        wrong.period = tex->period * demo_range(rs, 0.35, 0.5);
        wrong.fib_l = tex->fib_l * 0.4;
        wrong.tint[1] = 0.5 * (tex->tint[1] + 0.9);
        wrong.tint[2] = 0.5 * (tex->tint[2] + 0.85);
        wrong.bright = tex->bright * 0.85;
        wrong.nseed = demo_next(rs);
    }
    int x0, x1, y0, y1;
    demo_bbox(S, b.cx, b.cy, 1.4 * b.r0 + 1.0, &x0, &x1, &y0, &y1);
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) {
            if (demo_blob_rel(&b, x, y) >= 1.0) continue;
            size_t i = (size_t)y * S + x;
            uint8_t *p = img->rgb + 3 * i;
            if (a->is_obj) {
                if (!demo_obj_covers(a->obj, x, y)) continue; /* background stays */
                double bg[3];
                demo_bg_pixel(a->obj, x, y, bg);
                for (int c = 0; c < 3; c++) p[c] = demo_u8(bg[c]);
            } else {
                demo_tex_pixel(&wrong, x, y, p);
            }
            mask[i] = 1;
        }
}

/* ---- dataset ----------------------------------------------------------------------------- */

enum { DEMO_GOOD, DEMO_SCRATCH, DEMO_SPOT, DEMO_MISSING };
static const char *const demo_type_names[4] = {"good", "scratch", "spot", "missing"};

/* Everything shared by the images of one dataset. */
typedef struct demo_family {
    int is_obj;
    int size;
    uint64_t seed;
    demo_tex tex;  /* texture family ("texture")            */
    double tint_g; /* green of the object tint ("object")   */
} demo_family;

static void demo_item_free(demo_item *it)
{
    uf_image_free(it->img);
    free(it->mask);
    memset(it, 0, sizeof *it);
}

/* Render item `index` of split (0 train, 1 test) with defect `type`. 0 ok, -1 no memory. */
static int demo_item_make(const demo_family *f, int split, int type, int index, demo_item *it)
{
    memset(it, 0, sizeof *it);
    int S = f->size;
    uint64_t rs = demo_mix(f->seed, ((uint64_t)split << 40) | ((uint64_t)type << 32) |
                                        (uint32_t)index);
    if (uf_image_new(S, S, &it->img) != UF_OK) return -1;
    it->type = demo_type_names[type];
    snprintf(it->name, sizeof it->name, "%s_%s_%03d", split ? "test" : "train",
             it->type, index);

    demo_tex tex;
    demo_obj obj;
    memset(&tex, 0, sizeof tex);
    memset(&obj, 0, sizeof obj);
    if (f->is_obj) demo_obj_instance(&rs, f->tint_g, S, &obj);
    else demo_tex_instance(&rs, &f->tex, &tex);
    uint8_t *p = it->img->rgb; /* [S][S][3] */
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++, p += 3) {
            if (f->is_obj) demo_obj_pixel(&obj, x, y, p);
            else demo_tex_pixel(&tex, x, y, p);
        }
    if (type == DEMO_GOOD) return 0;

    it->mask = calloc((size_t)S * S, 1); /* [S][S] */
    if (!it->mask) {
        demo_item_free(it);
        return -1;
    }
    demo_area a = {f->is_obj, S, f->is_obj ? &obj : NULL};
    uint64_t ds = demo_next(&rs); /* the defect's own stream */
    if (type == DEMO_SCRATCH) demo_scratch(&ds, &a, it->img, it->mask);
    else if (type == DEMO_SPOT) demo_spot(&ds, &a, it->img, it->mask);
    else demo_missing(&ds, &a, f->is_obj ? NULL : &tex, it->img, it->mask);
    return 0;
}

int demo_make(const char *category, uint64_t seed, int size, int n_train, int n_test_good,
              int n_test_per_defect, demo_set *out)
{
    if (!out) return -1;
    memset(out, 0, sizeof *out);
    if (!category || size < 32 || size > 4096 || n_train < 0 || n_test_good < 0 ||
        n_test_per_defect < 0 || n_test_per_defect > (1 << 20) || n_train > (1 << 20) ||
        n_test_good > (1 << 20))
        return -1;
    demo_family f;
    memset(&f, 0, sizeof f);
    if (strcmp(category, "texture") == 0) {
        out->category = "texture";
    } else if (strcmp(category, "object") == 0) {
        out->category = "object";
        f.is_obj = 1;
    } else {
        return -1;
    }
    f.size = size;
    f.seed = seed;
    uint64_t fs = demo_mix(seed, 0xFA311E5ull); /* family stream */
    demo_tex_family(&fs, &f.tex, size);
    f.tint_g = demo_range(&fs, 0.90, 0.97);

    int n_test = n_test_good + 3 * n_test_per_defect;
    out->train = calloc(n_train ? (size_t)n_train : 1, sizeof *out->train);
    out->test = calloc(n_test ? (size_t)n_test : 1, sizeof *out->test);
    if (!out->train || !out->test) goto fail;
    /* every image has its own stream, so they are drawn in parallel; the counts are set
     * afterwards so demo_free sees every slot (calloc'd slots of failures are empty) */
    int failed = 0;
#pragma omp parallel for schedule(dynamic, 1) reduction(| : failed)
    for (int i = 0; i < n_train + n_test; i++) {
        if (i < n_train) {
            failed |= demo_item_make(&f, 0, DEMO_GOOD, i, &out->train[i]) != 0;
            continue;
        }
        /* test: goods, then each defect type in turn, each numbered from 0 */
        int t = i - n_train;
        int type = t < n_test_good ? DEMO_GOOD : 1 + (t - n_test_good) / n_test_per_defect;
        int index = t < n_test_good ? t : (t - n_test_good) % n_test_per_defect;
        failed |= demo_item_make(&f, 1, type, index, &out->test[t]) != 0;
    }
    out->n_train = n_train;
    out->n_test = n_test;
    if (failed) goto fail;
    return 0;
fail:
    demo_free(out);
    return -1;
}

void demo_free(demo_set *s)
{
    if (!s) return;
    for (int i = 0; i < s->n_train; i++) demo_item_free(&s->train[i]);
    for (int i = 0; i < s->n_test; i++) demo_item_free(&s->test[i]);
    free(s->train);
    free(s->test);
    memset(s, 0, sizeof *s);
}
