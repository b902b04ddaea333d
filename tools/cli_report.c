/*
 * cli_report.c - report.html: one self-contained page (inline SVG and CSS, thumbnails as
 * base64 data URIs, no script, no network) that shows what the tables cannot: per category
 * the ROC and precision-recall curves, the score histograms of normal and anomalous images
 * with the decision thresholds marked, the AUROC of each defect type and the most confident
 * mistakes. Written by `eval` and by `uniformaly report` (predict --json plus labels).
 */
#include "cli.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Text with &, <, >, " escaped (names are bytes; invalid UTF-8 is fixed by the caller). */
static void hb_text(cli_buf *b, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&': cli_buf_printf(b, "&amp;"); break;
        case '<': cli_buf_printf(b, "&lt;"); break;
        case '>': cli_buf_printf(b, "&gt;"); break;
        case '"': cli_buf_printf(b, "&quot;"); break;
        default: cli_buf_printf(b, "%c", *s);
        }
    }
}

/* bytes[n] as a base64 data URI of type mime in an <img>. */
static void hb_data_uri(cli_buf *b, const char *mime, const unsigned char *d, size_t n)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    cli_buf_printf(b, "<img alt=\"\" src=\"data:%s;base64,", mime);
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)d[i] << 16 | (i + 1 < n ? (unsigned)d[i + 1] << 8 : 0) |
                     (i + 2 < n ? d[i + 2] : 0);
        cli_buf_printf(b, "%c%c%c%c", b64[v >> 18 & 63], b64[v >> 12 & 63],
                       i + 1 < n ? b64[v >> 6 & 63] : '=', i + 2 < n ? b64[v & 63] : '=');
    }
    cli_buf_printf(b, "\">");
}

/* Longest side of a thumbnail: the page shows them 180 px wide; full-size overlays made
 * bottle's page about 7 MB. */
#define THUMB_SIDE 240

/* An image file as an inline PNG thumbnail (no side above THUMB_SIDE), or nothing when it
 * cannot be read (the caption still names it). */
static void hb_image(cli_buf *b, const char *path)
{
    uf_image *img = NULL, *small = NULL;
    if (!path || uf_image_load(path, &img) != UF_OK) return;
    const int w = img->width, h = img->height, big = w > h ? w : h;
    if (big > THUMB_SIDE) {
        int tw = (int)((long)w * THUMB_SIDE / big), th = (int)((long)h * THUMB_SIDE / big);
        if (uf_image_resize(img, tw < 1 ? 1 : tw, th < 1 ? 1 : th, UF_INTERP_BILINEAR, &small) != UF_OK)
            small = NULL;
    }
    uint8_t *png = NULL;
    size_t n = 0;
    if ((big <= THUMB_SIDE || small) && uf_image_encode_png(small ? small : img, &png, &n) == UF_OK)
        hb_data_uri(b, "image/png", png, n);
    free(png);
    uf_image_free(small);
    uf_image_free(img);
}

typedef struct sidx {
    float s;
    size_t i;
} sidx;

static int cmp_desc(const void *a, const void *b)
{
    const sidx *x = a, *y = b;
    return (x->s < y->s) - (x->s > y->s);
}

#define PW 260 /* plot side in pixels */
#define PM 36  /* margin for the axes */

static void svg_axes(cli_buf *b, const char *xl, const char *yl)
{
    cli_buf_printf(b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\">"
                 "<rect x=\"%d\" y=\"4\" width=\"%d\" height=\"%d\" fill=\"#fff\" stroke=\"#888\"/>"
                 "<text x=\"%d\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\">%s</text>"
                 "<text x=\"10\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\" "
                 "transform=\"rotate(-90 10 %d)\">%s</text>",
              PW + PM + 8, PW + PM, PM, PW, PW, PM + PW / 2, PW + PM - 8, xl, PW / 2, PW / 2, yl);
}

/* ROC and PR curves of the sorted scores. */
static void curves(cli_buf *b, const sidx *o, const uint8_t *y, size_t n, size_t np, size_t nn)
{
    for (int pr = 0; pr < 2; pr++) {
        svg_axes(b, pr ? "recall" : "false-positive rate", pr ? "precision" : "true-positive rate");
        cli_buf_printf(b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"",
                  pr ? "#c0392b" : "#2c3e50");
        size_t tp = 0, fp = 0;
        if (!pr) cli_buf_printf(b, "%d,%d ", PM, 4 + PW);
        for (size_t k = 0; k < n; k++) {
            tp += y[o[k].i] != 0;
            fp += y[o[k].i] == 0;
            if (k + 1 < n && o[k + 1].s == o[k].s) continue; /* ties: one point */
            double xv = pr ? (double)tp / np : (double)fp / nn,
                   yv = pr ? (double)tp / (double)(tp + fp) : (double)tp / np;
            cli_buf_printf(b, "%.1f,%.1f ", PM + xv * PW, 4 + (1 - yv) * PW);
        }
        cli_buf_printf(b, "\"/></svg>\n");
    }
}

/* Histogram of normal and anomalous scores with the thresholds marked. */
static void histogram(cli_buf *b, const float *s, const uint8_t *y, size_t n, const cli_decision *d)
{
    enum { NB = 30 };
    float lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < lo) lo = s[i];
        if (s[i] > hi) hi = s[i];
    }
    if (!(hi > lo)) hi = lo + 1;
    int cnt[2][NB] = {{0}}, mx = 1; /* bar heights: log(1 + count), so a handful of
                                        images beside a tall bar still shows */
    for (size_t i = 0; i < n; i++) {
        int k = (int)((s[i] - lo) / (hi - lo) * NB);
        k = k < 0 ? 0 : k >= NB ? NB - 1 : k;
        if (++cnt[y[i] != 0][k] > mx) mx = cnt[y[i] != 0][k];
    }
    const int W = 2 * PW;
    cli_buf_printf(b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\">"
                 "<rect x=\"%d\" y=\"4\" width=\"%d\" height=\"%d\" fill=\"#fff\" stroke=\"#888\"/>",
              W + PM + 8, PW + PM, PM, W, PW);
    for (int c = 0; c < 2; c++)
        for (int k = 0; k < NB; k++)
            if (cnt[c][k])
                cli_buf_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                             "fill=\"%s\" fill-opacity=\"0.55\"/>",
                          PM + (double)k * W / NB, 4 + PW - log1p(cnt[c][k]) * (PW - 20) / log1p(mx),
                          (double)W / NB, log1p(cnt[c][k]) * (PW - 20) / log1p(mx),
                          c ? "#c0392b" : "#2980b9");
    static const char *const col[CLI_N_DECISIONS] = {"#27ae60", "#8e44ad", "#d35400"};
    static const char *const lab[CLI_N_DECISIONS] = {"F1-optimal", "1% FPR", "5% FPR"};
    for (int k = 0; d && k < CLI_N_DECISIONS; k++) {
        if (!isfinite(d[k].threshold)) continue;
        double x = PM + (d[k].threshold - lo) / (hi - lo) * W;
        x = x < PM ? PM : x > PM + W ? PM + W : x;
        cli_buf_printf(b, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"4\" y2=\"%d\" stroke=\"%s\" "
                     "stroke-width=\"2\" stroke-dasharray=\"5,3\"/><text x=\"%.1f\" y=\"%d\" "
                     "font-size=\"10\" fill=\"%s\">%s</text>",
                  x, x, 4 + PW, col[k], x + 3, 16 + 12 * k, col[k], lab[k]);
    }
    cli_buf_printf(b, "<text x=\"%d\" y=\"%d\" font-size=\"11\">%.4g</text><text x=\"%d\" y=\"%d\" "
                 "font-size=\"11\" text-anchor=\"end\">%.4g</text><text x=\"%d\" y=\"%d\" "
                 "font-size=\"11\" text-anchor=\"middle\">image score (blue normal, red "
                 "anomalous; counts on a log scale)</text></svg>\n",
              PM, PW + 20, lo, PM + W, PW + 20, hi, PM + W / 2, PW + PM - 4);
}

/* One category's section. */
static void section(cli_buf *b, const cli_report_set *r)
{
    size_t np = 0, nn;
    for (size_t i = 0; i < r->n; i++) np += r->labels[i] != 0;
    nn = r->n - np;
    cli_buf_printf(b, "<section><h2>");
    hb_text(b, r->name);
    cli_buf_printf(b, "</h2>");
    if (!np || !nn) {
        cli_buf_printf(b, "<p>%zu normal and %zu anomalous images: no curves.</p></section>\n", nn, np);
        return;
    }
    sidx *o = malloc(r->n * sizeof *o);
    if (!o) { b->oom = true; return; }
    for (size_t i = 0; i < r->n; i++) o[i] = (sidx){r->scores[i], i};
    qsort(o, r->n, sizeof *o, cmp_desc);
    cli_decision d[CLI_N_DECISIONS];
    bool hasd = cli_decisions(r->scores, r->labels, r->n, d);
    cli_buf_printf(b, "<p>%zu normal, %zu anomalous images; image AUROC <b>%.4f</b></p><div class=\"row\">",
              nn, np, uf_auroc(r->scores, r->labels, r->n));
    curves(b, o, r->labels, r->n, np, nn);
    cli_buf_printf(b, "</div><div class=\"row\">");
    histogram(b, r->scores, r->labels, r->n, hasd ? d : NULL);
    cli_buf_printf(b, "</div><table><tr><th>threshold (anomalous if score &gt;)</th><th>value</th>"
                 "<th>recall</th><th>false-positive rate</th></tr>");
    static const char *const lab[CLI_N_DECISIONS] = {"F1-optimal", "at 1% FPR", "at 5% FPR"};
    for (int k = 0; hasd && k < CLI_N_DECISIONS; k++)
        cli_buf_printf(b, "<tr><td>%s</td><td>%.5g</td><td>%.1f%%</td><td>%.1f%%</td></tr>", lab[k],
                  d[k].threshold, 100 * d[k].recall, 100 * d[k].fpr);
    cli_buf_printf(b, "</table>");
    if (r->types) { /* AUROC of each defect type against the normal images */
        cli_buf_printf(b, "<table><tr><th>defect type</th><th>images</th><th>AUROC vs normal</th></tr>");
        float *s = malloc(r->n * sizeof *s);
        uint8_t *y = malloc(r->n);
        for (size_t t = 0; s && y && t < r->n; t++) {
            if (!r->labels[t]) continue;
            bool first = true; /* each type once, at its first image */
            for (size_t u = 0; u < t && first; u++)
                first = !(r->labels[u] && !strcmp(r->types[u], r->types[t]));
            if (!first) continue;
            size_t m = 0, k = 0;
            for (size_t i = 0; i < r->n; i++)
                if (!r->labels[i] || !strcmp(r->types[i], r->types[t])) {
                    s[m] = r->scores[i];
                    y[m++] = r->labels[i] != 0;
                    k += r->labels[i] != 0;
                }
            cli_buf_printf(b, "<tr><td>");
            hb_text(b, r->types[t]);
            cli_buf_printf(b, "</td><td>%zu</td><td>%.4f</td></tr>", k, uf_auroc(s, y, m));
        }
        free(s);
        free(y);
        cli_buf_printf(b, "</table>");
    }
    /* the most confident mistakes at the F1-optimal threshold: the highest-scoring normal
     * and the lowest-scoring anomalous images, whether or not they cross it */
    for (int fn = 0; hasd && fn < 2; fn++) {
        cli_buf_printf(b, "<h3>%s</h3><div class=\"row\">",
                  fn ? "Lowest-scoring anomalous images (false negatives when below the "
                       "F1-optimal threshold)"
                     : "Highest-scoring normal images (false positives when above the "
                       "F1-optimal threshold)");
        int shown = 0;
        for (size_t k = 0; k < r->n && shown < 4; k++) {
            const sidx *e = &o[fn ? r->n - 1 - k : k];
            if ((r->labels[e->i] != 0) != fn) continue;
            bool wrong = fn ? !(e->s > d[0].threshold) : e->s > d[0].threshold;
            shown++;
            cli_buf_printf(b, "<figure>");
            if (r->thumbs && r->thumbs[e->i]) hb_image(b, r->thumbs[e->i]);
            cli_buf_printf(b, "<figcaption>");
            hb_text(b, r->names[e->i]);
            cli_buf_printf(b, "<br>score %.5g%s</figcaption></figure>", e->s,
                      wrong ? (fn ? " <b>false negative</b>" : " <b>false positive</b>") : "");
        }
        cli_buf_printf(b, "</div>");
    }
    cli_buf_printf(b, "</section>\n");
    free(o);
}

bool cli_write_report(const char *path, const char *title, const cli_report_set *sets, int n)
{
    cli_buf b = {0};
    cli_buf_printf(&b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>");
    hb_text(&b, title);
    cli_buf_printf(&b, "</title><style>body{font-family:sans-serif;margin:20px;color:#222}"
                  "section{border-top:2px solid #ccc;margin-top:16px}"
                  ".row{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}"
                  "table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #bbb;"
                  "padding:2px 8px;text-align:right}figure{margin:0;width:180px}"
                  "figure img{width:180px;height:auto;display:block}"
                  "figcaption{font-size:11px;word-break:break-all}</style></head><body><h1>");
    hb_text(&b, title);
    cli_buf_printf(&b, "</h1><p>Thresholds are measured on these scores, so they are optimistic "
                  "for new data; calibrate a model on held-out normal images "
                  "(<code>uniformaly calibrate</code>).</p>\n");
    for (int k = 0; k < n; k++) section(&b, &sets[k]);
    cli_buf_printf(&b, "</body></html>\n");
    size_t tn = 0;
    char *t = b.oom ? NULL : cli_utf8_valid(b.s, b.n, &tn);
    bool ok = t && uf_write_file_atomic(path, t, tn) == UF_OK;
    if (!ok) cli_error("%s: %s", path, t ? uf_errmsg() : "out of memory");
    free(t);
    free(b.s);
    return ok;
}
