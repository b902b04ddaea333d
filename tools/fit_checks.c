/*
 * fit_checks.c - warnings about training sets that are probably not what the user meant
 * (issue 13): `fit ../shared/data/mtd/MT_Free/Imgs` used to take the 952 all-black mask
 * PNGs lying beside the JPEGs into the bank without a word. fit now says, once per kind:
 *  - files that look like ground-truth masks beside images (a name with "mask" or "_gt",
 *    or the same name as another image of the folder with a different extension);
 *  - constant images (every pixel the same colour, e.g. an all-black mask);
 *  - exact duplicates (the same decoded pixels as an earlier training image).
 * Warnings only: the user may mean it. The pixel checks look at the images as fit decodes
 * them (shrunk to the resize size), so they cost one pass over data already in memory.
 */
#include "cli.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- names -------------------------------------------------------------------------- */

/* Length of the path without its extension. */
static size_t stem_len(const char *p)
{
    const char *dot = strrchr(p, '.'), *slash = strrchr(p, '/');
    return dot && (!slash || dot > slash) ? (size_t)(dot - p) : strlen(p);
}

static int cmp_path(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* True when base (a file name) names a mask by its words. */
static bool mask_word(const char *base)
{
    return strcasestr(base, "mask") || strcasestr(base, "_gt.") || strcasestr(base, "_gt_");
}

void cli_fit_check_names(const cli_strings *images)
{
    size_t n = images->n, hits = 0;
    const char *example = NULL, *twin = NULL;
    char **v = malloc((n ? n : 1) * sizeof *v);
    if (!v) return; /* a warning is not worth failing the fit */
    memcpy(v, images->v, n * sizeof *v);
    qsort(v, n, sizeof *v, cmp_path);
    for (size_t i = 0; i < n; i++) {
        const char *slash = strrchr(v[i], '/');
        const char *base = slash ? slash + 1 : v[i];
        bool hit = mask_word(base);
        const char *other = NULL;
        /* same stem as a neighbour in sorted order: img.jpg beside img.png - the PNG (the
         * lossless format masks are saved in) is taken for the mask */
        size_t sl = stem_len(v[i]);
        for (int d = -1; d <= 1 && !hit; d += 2) {
            if ((d < 0 && i == 0) || (d > 0 && i + 1 >= n)) continue;
            const char *o = v[i + (size_t)d];
            if (stem_len(o) == sl && !strncmp(o, v[i], sl) && !strcasecmp(v[i] + sl, ".png") &&
                strcasecmp(o + sl, ".png")) {
                hit = true;
                other = o;
            }
        }
        if (hit && !hits++) {
            example = v[i];
            twin = other;
        }
    }
    if (hits)
        fprintf(stderr,
                "uniformaly: warning: %zu of the %zu training files look like masks beside "
                "images (e.g. %s%s%s); leave them out with --exclude (e.g. --exclude '%s')\n",
                hits, n, example, twin ? ", named like " : "", twin ? twin : "",
                twin ? "*.png" : "*mask*");
    free(v);
}

/* ---- pixels ------------------------------------------------------------------------- */

struct cli_fit_check {
    size_t n;
    uint64_t *hash; /* [n] FNV-1a of size and pixels; 0 for images never seen */
    size_t constant;
    size_t first_constant;
};

cli_fit_check *cli_fit_check_new(size_t n)
{
    cli_fit_check *k = calloc(1, sizeof *k);
    if (!k) return NULL;
    k->n = n;
    k->hash = calloc(n ? n : 1, sizeof *k->hash);
    if (!k->hash) {
        free(k);
        return NULL;
    }
    return k;
}

void cli_fit_check_image(cli_fit_check *k, size_t idx, const uf_image *img)
{
    if (!k || !img || idx >= k->n) return;
    size_t np = (size_t)img->width * (size_t)img->height;
    const uint8_t *p = img->rgb;
    uint64_t h = 1469598103934665603ull;
    h = (h ^ (uint64_t)img->width) * 1099511628211ull;
    h = (h ^ (uint64_t)img->height) * 1099511628211ull;
    bool flat = true;
    for (size_t i = 0; i < 3 * np; i++) {
        h = (h ^ p[i]) * 1099511628211ull;
        flat = flat && p[i] == p[i % 3];
    }
    k->hash[idx] = h ? h : 1;
    if (flat && !k->constant++) k->first_constant = idx;
}

static int cmp_u64_idx(const void *a, const void *b)
{
    const uint64_t *x = a, *y = b;
    if (x[0] != y[0]) return x[0] < y[0] ? -1 : 1;
    return x[1] < y[1] ? -1 : x[1] > y[1];
}

void cli_fit_check_report(const cli_fit_check *k, const cli_strings *images)
{
    if (!k) return;
    if (k->constant)
        fprintf(stderr,
                "uniformaly: warning: %zu training image%s a single colour (e.g. %s): blank "
                "frames or masks, not parts\n",
                k->constant, k->constant == 1 ? " is" : "s are", images->v[k->first_constant]);
    uint64_t *pairs = malloc((k->n ? k->n : 1) * 2 * sizeof *pairs); /* (hash, index) */
    if (!pairs) return;
    size_t m = 0;
    for (size_t i = 0; i < k->n; i++)
        if (k->hash[i]) {
            pairs[2 * m] = k->hash[i];
            pairs[2 * m + 1] = i;
            m++;
        }
    qsort(pairs, m, 2 * sizeof *pairs, cmp_u64_idx);
    size_t dups = 0, ex = 0, of = 0, group = 0; /* group: first entry of equal hashes */
    for (size_t i = 1; i < m; i++) {
        if (pairs[2 * i] != pairs[2 * group]) {
            group = i;
            continue;
        }
        if (!dups++) {
            ex = (size_t)pairs[2 * i + 1];
            of = (size_t)pairs[2 * group + 1];
        }
    }
    if (dups)
        fprintf(stderr,
                "uniformaly: warning: %zu training image%s an exact duplicate of another "
                "(e.g. %s = %s)\n",
                dups, dups == 1 ? " is" : "s are", images->v[ex], images->v[of]);
    free(pairs);
}

void cli_fit_check_free(cli_fit_check *k)
{
    if (!k) return;
    free(k->hash);
    free(k);
}
