/*
 * annotate.c - what turns an overlay into something a person on a production line can read
 * (issue 13): text drawn with a built-in 5x7 bitmap font (no font library), a colour bar
 * with the values of its ends, the outline of the region above a level, and the defect
 * regions of a map (connected components above a level: bounding box, area, peak). The
 * colours of the bar are the overlay's own jet table (uf__jet_colors in imgout.c).
 */
#include "core/internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 5x7 glyphs, one byte per row, bit 4 = leftmost column. Only what labels need. */
static const struct {
    char c;
    uint8_t row[7];
} font[] = {
    {'0', {14, 17, 19, 21, 25, 17, 14}}, {'1', {4, 12, 4, 4, 4, 4, 14}},
    {'2', {14, 17, 1, 2, 4, 8, 31}},     {'3', {31, 2, 4, 2, 1, 17, 14}},
    {'4', {2, 6, 10, 18, 31, 2, 2}},     {'5', {31, 16, 30, 1, 1, 17, 14}},
    {'6', {6, 8, 16, 30, 17, 17, 14}},   {'7', {31, 1, 2, 4, 8, 8, 8}},
    {'8', {14, 17, 17, 14, 17, 17, 14}}, {'9', {14, 17, 17, 15, 1, 2, 12}},
    {'A', {14, 17, 17, 31, 17, 17, 17}}, {'B', {30, 17, 17, 30, 17, 17, 30}},
    {'C', {14, 17, 16, 16, 16, 17, 14}}, {'D', {28, 18, 17, 17, 17, 18, 28}},
    {'E', {31, 16, 16, 30, 16, 16, 31}}, {'F', {31, 16, 16, 30, 16, 16, 16}},
    {'G', {14, 17, 16, 23, 17, 17, 15}}, {'H', {17, 17, 17, 31, 17, 17, 17}},
    {'I', {14, 4, 4, 4, 4, 4, 14}},      {'J', {7, 2, 2, 2, 2, 18, 12}},
    {'K', {17, 18, 20, 24, 20, 18, 17}}, {'L', {16, 16, 16, 16, 16, 16, 31}},
    {'M', {17, 27, 21, 21, 17, 17, 17}}, {'N', {17, 17, 25, 21, 19, 17, 17}},
    {'O', {14, 17, 17, 17, 17, 17, 14}}, {'P', {30, 17, 17, 30, 16, 16, 16}},
    {'Q', {14, 17, 17, 17, 21, 18, 13}}, {'R', {30, 17, 17, 30, 20, 18, 17}},
    {'S', {15, 16, 16, 14, 1, 1, 30}},   {'T', {31, 4, 4, 4, 4, 4, 4}},
    {'U', {17, 17, 17, 17, 17, 17, 14}}, {'V', {17, 17, 17, 17, 17, 10, 4}},
    {'W', {17, 17, 17, 21, 21, 21, 10}}, {'X', {17, 17, 10, 4, 10, 17, 17}},
    {'Y', {17, 17, 10, 4, 4, 4, 4}},     {'Z', {31, 1, 2, 4, 8, 16, 31}},
    {'.', {0, 0, 0, 0, 0, 12, 12}},      {'-', {0, 0, 0, 31, 0, 0, 0}},
    {'+', {0, 4, 4, 31, 4, 4, 0}},       {':', {0, 12, 12, 0, 12, 12, 0}},
    {'=', {0, 0, 31, 0, 31, 0, 0}},      {'%', {24, 25, 2, 4, 8, 19, 3}},
    {'/', {0, 1, 2, 4, 8, 16, 0}},       {'(', {2, 4, 8, 8, 8, 4, 2}},
    {')', {8, 4, 2, 2, 2, 4, 8}},        {'x', {0, 0, 17, 10, 4, 10, 17}},
};

static const uint8_t *glyph(char c)
{
    if (c >= 'a' && c <= 'z' && c != 'x') c = (char)(c - 'a' + 'A');
    for (size_t i = 0; i < sizeof font / sizeof font[0]; i++)
        if (font[i].c == c) return font[i].row;
    return NULL; /* space and anything unknown: blank */
}

static void put_px(uf_image *im, int x, int y, const uint8_t rgb[3])
{
    if (x < 0 || y < 0 || x >= im->width || y >= im->height) return;
    memcpy(im->rgb + 3 * ((size_t)y * (size_t)im->width + (size_t)x), rgb, 3);
}

/* The grey that stands for an uninspected pixel p (RGB): its luma squeezed into 80..144,
 * so it reads as the image, is never mistaken for a jet colour, and text stays legible. */
static uint8_t grey_of(const uint8_t *p)
{
    const int luma = (77 * p[0] + 150 * p[1] + 29 * p[2]) >> 8; /* 0..255 */
    return (uint8_t)(80 + luma / 4);
}

int uf__text_width(const char *s, int scale) { return (int)strlen(s) * 6 * scale; }

void uf__draw_text(uf_image *im, int x, int y, int scale, const char *s, const uint8_t fg[3],
                   const uint8_t bg[3])
{
    const int w = uf__text_width(s, scale) + 2 * scale, h = 9 * scale;
    for (int yy = 0; bg && yy < h; yy++)
        for (int xx = 0; xx < w; xx++) put_px(im, x + xx, y + yy, bg);
    for (int i = 0; s[i]; i++) {
        const uint8_t *g = glyph(s[i]);
        for (int r = 0; g && r < 7; r++)
            for (int c = 0; c < 5; c++)
                if (g[r] >> (4 - c) & 1)
                    for (int dy = 0; dy < scale; dy++)
                        for (int dx = 0; dx < scale; dx++)
                            put_px(im, x + scale * (1 + 6 * i + c) + dx, y + scale * (1 + r) + dy, fg);
    }
}

void uf__draw_outline(uf_image *im, const float *map, float level, int thick, const uint8_t rgb[3])
{
    const int W = im->width, H = im->height;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            if (!(map[(size_t)y * W + x] > level)) continue;
            bool edge = false;
            for (int d = 0; d < 4 && !edge; d++) {
                int nx = x + (d == 0) - (d == 1), ny = y + (d == 2) - (d == 3);
                edge = nx < 0 || ny < 0 || nx >= W || ny >= H || !(map[(size_t)ny * W + nx] > level);
            }
            if (!edge) continue;
            for (int dy = -(thick / 2); dy <= (thick - 1) / 2; dy++)
                for (int dx = -(thick / 2); dx <= (thick - 1) / 2; dx++) put_px(im, x + dx, y + dy, rgb);
        }
}

void uf__draw_colorbar(uf_image *im, float lo, float hi, float mark, int scale)
{
    const int W = im->width, H = im->height;
    const int bw = 6 * scale, bh = H / 2, x0 = W - bw - 2 * scale, y0 = H / 4;
    static const uint8_t white[3] = {255, 255, 255}, black[3] = {0, 0, 0};
    if (bh < 2) return;
    double *t = malloc((size_t)bh * sizeof *t);
    uint8_t *col = malloc((size_t)bh * 3);
    if (!t || !col) {
        free(t);
        free(col);
        return; /* out of memory: no bar (the overlay itself is complete) */
    }
    for (int y = 0; y < bh; y++) t[y] = 1.0 - (double)y / (bh - 1);
    uf__jet_colors(t, bh, col);
    for (int y = -1; y <= bh; y++)
        for (int x = -1; x <= bw; x++)
            put_px(im, x0 + x, y0 + y,
                   y < 0 || y == bh || x < 0 || x == bw ? black : col + 3 * y);
    free(t);
    free(col);
    char s[32];
    snprintf(s, sizeof s, "%.3g", (double)hi);
    uf__draw_text(im, x0 - uf__text_width(s, scale) - 3 * scale, y0 - 4 * scale, scale, s, white, black);
    snprintf(s, sizeof s, "%.3g", (double)lo);
    uf__draw_text(im, x0 - uf__text_width(s, scale) - 3 * scale, y0 + bh - 5 * scale, scale, s, white, black);
    if (isfinite(mark) && mark > lo && mark < hi) { /* a tick at the threshold */
        int ym = y0 + (int)lround((1.0 - ((double)mark - lo) / ((double)hi - lo)) * (bh - 1));
        for (int k = 0; k < scale; k++)
            for (int x = -3 * scale; x < bw + 3 * scale; x++) put_px(im, x0 + x, ym + k, white);
    }
}

uf_status uf_map_regions(const float *map, int width, int height, float level, int max_regions,
                         uf_region *out, int *n_out)
{
    if (n_out) *n_out = 0;
    if (!map || !n_out || width <= 0 || height <= 0 || max_regions < 0 || (max_regions && !out))
        return uf__err(UF_ERR_ARG, "uf_map_regions: invalid argument");
    const size_t N = (size_t)width * (size_t)height;
    int32_t *lab = malloc(N * sizeof *lab), *stack = malloc(N * sizeof *stack);
    if (!lab || !stack) {
        free(lab);
        free(stack);
        return uf__err(UF_ERR_NOMEM, "uf_map_regions: out of memory");
    }
    for (size_t i = 0; i < N; i++) lab[i] = -1;
    int n = 0, total = 0;
    for (size_t s0 = 0; s0 < N; s0++) {
        if (lab[s0] != -1 || !(map[s0] > level)) continue;
        uf_region r = {(int)(s0 % (size_t)width), (int)(s0 / (size_t)width), 0, 0, 0, -INFINITY};
        int x1 = r.x, y1 = r.y;
        size_t sp = 0;
        stack[sp++] = (int32_t)s0;
        lab[s0] = total;
        while (sp) { /* 4-connected flood fill */
            size_t p = (size_t)stack[--sp];
            int x = (int)(p % (size_t)width), y = (int)(p / (size_t)width);
            r.area++;
            if (map[p] > r.peak) r.peak = map[p];
            if (x < r.x) r.x = x;
            if (y < r.y) r.y = y;
            if (x > x1) x1 = x;
            if (y > y1) y1 = y;
            const int nx[4] = {x - 1, x + 1, x, x}, ny[4] = {y, y, y - 1, y + 1};
            for (int d = 0; d < 4; d++) {
                if (nx[d] < 0 || ny[d] < 0 || nx[d] >= width || ny[d] >= height) continue;
                size_t q = (size_t)ny[d] * (size_t)width + (size_t)nx[d];
                if (lab[q] == -1 && map[q] > level) {
                    lab[q] = total;
                    stack[sp++] = (int32_t)q;
                }
            }
        }
        r.w = x1 - r.x + 1;
        r.h = y1 - r.y + 1;
        total++;
        /* keep the max_regions with the highest peaks, sorted by peak (first found wins ties) */
        int at;
        if (n < max_regions) at = n++;
        else if (max_regions > 0 && r.peak > out[max_regions - 1].peak) at = max_regions - 1;
        else continue;
        while (at > 0 && out[at - 1].peak < r.peak) {
            out[at] = out[at - 1];
            at--;
        }
        out[at] = r;
    }
    free(lab);
    free(stack);
    *n_out = n;
    return UF_OK;
}

/* The label at the top left, white on bg, wrapped at spaces into lines that fit the
 * image's width (a narrow image, e.g. a 130 px wide tile, showed "ANOMALOUS 1.40 (SCORE"
 * and lost the score); a word wider than the image is cut at the border. */
static void draw_label(uf_image *o, int scale, const char *label, const uint8_t bg[3])
{
    static const uint8_t white[3] = {255, 255, 255};
    /* the font is monospaced: uf__text_width is 6 * scale a character */
    size_t cols = (size_t)((o->width - 4 * scale) / uf__text_width("x", scale));
    char line[256];
    if (cols < 1) cols = 1;
    if (cols > sizeof line - 1) cols = sizeof line - 1;
    int y = 2 * scale;
    for (const char *p = label; *p && y < o->height; y += 9 * scale) {
        while (*p == ' ') p++;
        size_t n = strlen(p), take = n;
        if (n > cols) { /* the last space within cols, else the whole word */
            take = 0;
            for (size_t k = 1; k <= cols; k++)
                if (p[k] == ' ') take = k;
            if (!take) {
                take = strcspn(p, " ");
                if (take > sizeof line - 1) take = sizeof line - 1;
            }
        }
        if (!take) break;
        memcpy(line, p, take);
        line[take] = '\0';
        uf__draw_text(o, 2 * scale, y, scale, line, white, bg);
        p += take;
    }
}

uf_status uf_heatmap_annotate(const uf_image *img, const float *map, const uf_annotation *a,
                              uf_image **out)
{
    if (out) *out = NULL;
    if (!a) return uf__err(UF_ERR_ARG, "uf_heatmap_annotate: NULL annotation");
    uf_image *o = NULL;
    uf_status s = uf_heatmap_overlay(img, map, a->lo, a->hi, a->alpha, &o);
    if (s != UF_OK) return s;
    const int scale = 1 + (img->width < img->height ? img->width : img->height) / 300;
    if (a->inspected) { /* what the model never saw: the original, dimmed and colourless */
        const size_t npx = (size_t)img->width * (size_t)img->height;
        for (size_t i = 0; i < npx; i++) {
            if (a->inspected[i]) continue;
            const uint8_t *p = img->rgb + 3 * i;
            memset(o->rgb + 3 * i, grey_of(p), 3);
        }
    }
    static const uint8_t white[3] = {255, 255, 255}, black[3] = {0, 0, 0},
                         red[3] = {220, 20, 20}, green[3] = {20, 160, 60}, grey[3] = {90, 90, 90};
    if (isfinite(a->outline)) uf__draw_outline(o, map, a->outline, 1 + scale, white);
    if (a->colorbar && isfinite(a->lo) && isfinite(a->hi) && a->hi > a->lo)
        uf__draw_colorbar(o, a->lo, a->hi, a->mark, scale);
    if (a->label && *a->label)
        draw_label(o, scale, a->label, a->decision > 0 ? red : a->decision == 0 ? green : grey);
    (void)black;
    *out = o;
    return UF_OK;
}
