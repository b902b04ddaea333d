/*
 * cli_common.c - option parsing, image list expansion, progress and error output shared by
 * all verbs of the `uniformaly` program.
 */
#include "cli.h"

#include <cjson/cJSON.h>
#include <omp.h>
#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("uniformaly: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int cli_usage_error(const char *verb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "uniformaly %s: ", verb);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nTry 'uniformaly %s --help'.\n", verb);
    va_end(ap);
    return CLI_EXIT_USAGE;
}

bool cli_parse_int(const char *s, long lo, long hi, long *out)
{
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

bool cli_parse_float(const char *s, double lo, double hi, double *out)
{
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v) || v < lo || v > hi) return false;
    *out = v;
    return true;
}

bool cli_parse_floats(const char *s, int n, float *out)
{
    if (!s) return false;
    const char *p = s;
    for (int i = 0; i < n; i++) {
        char *end;
        errno = 0;
        double v = strtod(p, &end);
        if (end == p || errno || !isfinite((float)v)) return false; /* within float range */
        out[i] = (float)v;
        p = end;
        if (i < n - 1) {
            if (*p != ',') return false;
            p++;
        }
    }
    return *p == '\0';
}

void cli_common_init(cli_common *c)
{
    memset(c, 0, sizeof *c);
    c->pre = uf_preprocess_default();
    c->bp = uf_backbone_default_params();
    c->threads = 0;
    c->batch = 8;
    c->precision = -1;
}

const char *const cli_common_help =
    "Backbone and preprocessing options:\n"
    "  --backbone PATH      ViT checkpoint: PyTorch .pth (torch.save zip format) or\n"
    "                       .safetensors (timm/DINO or Hugging Face key names): DINO,\n"
    "                       iBOT, MAE, timm and HF ViTs, and DINOv2 S/B/L/g-14 with and\n"
    "                       without registers (dinov2_vit?14[_reg4]_pretrain.pth,\n"
    "                       facebook/dinov2[-with-registers]-* model.safetensors; use\n"
    "                       crops that are multiples of 14, e.g. --resize 512 --crop 448).\n"
    "                       Default: the bundled ImageNet ViT-Tiny/16 (FP16) with its\n"
    "                       own mean/std 0.5 unless --mean/--std are given:\n"
    "                       $UNIFORMALY_BACKBONE if set,\n"
    "                       else " CLI_BUNDLED_NAME "\n"
    "                       in <bin>/../share/uniformaly, <bin>/models or <bin>/../models\n"
    "                       (<bin>: the folder of this program)\n"
    "  --heads N            attention heads (default: from the embedding dim)\n"
    "  --resize R           resize the shorter side to R pixels (default 256; 0 = keep)\n"
    "  --crop S             centre-crop S x S pixels (default 224); 0 keeps the whole\n"
    "                       image: its longer side is resized to R and the ViT runs on\n"
    "                       its own (non-square) patch grid\n"
    "  --pad-to S           letterbox: the whole image, longer side resized to S, centred\n"
    "                       on an S x S zero square (sets --crop 0 --fit long --resize S\n"
    "                       unless those are given); patches entirely in the bars are\n"
    "                       not scored, nor put in the bank (a patch partly in a bar\n"
    "                       gets the image's edge pixels there)\n"
    "  --fit SIDE           which side --resize sets: short (torchvision), long (the whole\n"
    "                       image fits R x R) or auto (default: short, long with --crop 0)\n"
    "  --interp NAME        bilinear (default), bicubic, lanczos or nearest, as Pillow\n"
    "  --mean a,b,c         normalisation mean (default ImageNet 0.485,0.456,0.406)\n"
    "  --std a,b,c          normalisation std (default ImageNet 0.229,0.224,0.225);\n"
    "                       timm's AugReg ViTs (e.g. vit_tiny_patch16_224) want 0.5,0.5,0.5\n"
    "  --include GLOB       folder inputs: keep only files whose path below the folder or\n"
    "                       name matches GLOB (fnmatch; repeatable), e.g. '*.jpg'\n"
    "  --exclude GLOB       folder inputs: drop files matching GLOB (repeatable),\n"
    "                       e.g. '*_mask.png'\n"
    "  --batch N            images per forward pass (default 8)\n"
    "  --threads N          compute threads (default: $OMP_NUM_THREADS or all cores)\n"
    "  --precision P        fp32 (default) or bf16: the backbone's Linear layers with BF16\n"
    "                       weights and inputs, FP32 sums (native on CPUs with AVX512_BF16,\n"
    "                       emulated at FP32 speed elsewhere); a fitted model records it\n"
    "  --quiet              no progress output on stderr\n";

bool cli_parse_precision(const char *verb, const char *v, int *p)
{
    for (int k = 0; k <= UF_PRECISION_BF16; k++)
        if (!strcmp(v, uf_precision_name((uf_precision)k))) {
            *p = k;
            return true;
        }
    cli_usage_error(verb, "--precision: expected fp32 or bf16, got '%s'", v);
    return false;
}

/* --threads resolved (0: the library default) and applied to the program's own OpenMP loops;
 * each verb hands c->threads to its library objects (uf_*_set_threads). */
void cli_threads_init(cli_common *c)
{
    if (c->threads <= 0) c->threads = uf_get_threads();
    omp_set_num_threads(c->threads); /* the program's own loops; the library takes its own */
}

/* Fetch the value of option argv[*i]; prints a usage error if it is missing. */
static const char *opt_value(const char *verb, int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        cli_usage_error(verb, "option %s needs a value", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

int cli_common_option(cli_common *c, const char *verb, int argc, char **argv, int *i)
{
    const char *a = argv[*i], *v;
    long n;
    if (!strcmp(a, "--backbone")) {
        if (!(v = opt_value(verb, argc, argv, i))) return -1;
        c->backbone = v;
    } else if (!strcmp(a, "--heads")) {
        if (!(v = opt_value(verb, argc, argv, i))) return -1;
        if (!cli_parse_int(v, 1, 256, &n)) {
            cli_usage_error(verb, "--heads: expected an integer in 1..256, got '%s'", v);
            return -1;
        }
        c->bp.heads = (int)n;
    } else if (!strcmp(a, "--resize")) {
        if (!(v = opt_value(verb, argc, argv, i))) return -1;
        if (!cli_parse_int(v, 0, 8192, &n)) {
            cli_usage_error(verb, "--resize: expected an integer in 0..8192, got '%s'", v);
            return -1;
        }
        c->pre.resize = (int)n;
        c->pre_given |= CLI_GIVEN_RESIZE;
    } else if (!strcmp(a, "--pad-to")) {
        if (!(v = opt_value(verb, argc, argv, i))) return -1;
        if (!cli_parse_int(v, 0, 8192, &n)) {
            cli_usage_error(verb, "--pad-to: expected an integer in 0..8192, got '%s'", v);
            return -1;
        }
        c->pre.pad_to = (int)n;
        if (n > 0 && !(c->pre_given & CLI_GIVEN_CROP)) c->pre.crop = 0;
        if (n > 0 && !(c->pre_given & CLI_GIVEN_FIT)) c->pre.fit = UF_FIT_LONG;
        if (n > 0 && !(c->pre_given & CLI_GIVEN_RESIZE)) c->pre.resize = (int)n;
    } else if (!strcmp(a, "--fit")) {
        if (!(v = opt_value(verb, argc, argv, i))) return -1;
        if (!strcmp(v, "auto")) c->pre.fit = UF_FIT_AUTO;
        else if (!strcmp(v, "short")) c->pre.fit = UF_FIT_SHORT;
        else if (!strcmp(v, "long")) c->pre.fit = UF_FIT_LONG;
        else {
            cli_usage_error(verb, "--fit: expected short, long or auto, got '%s'", v);
            return -1;
        }
        c->pre_given |= CLI_GIVEN_FIT;
    } else if (!strcmp(a, "--crop")) {
        if (!(v = opt_value(verb, argc, argv, i))) return -1;
        if (!cli_parse_int(v, 0, 8192, &n)) {
            cli_usage_error(verb, "--crop: expected an integer in 0..8192, got '%s'", v);
            return -1;
        }
        c->pre.crop = (int)n;
        c->pre_given |= CLI_GIVEN_CROP;
    } else if (!strcmp(a, "--include") || !strcmp(a, "--exclude")) {
        static cli_patterns inc, exc; /* one command line per process */
        cli_patterns **l = a[2] == 'i' ? &c->include : &c->exclude;
        if (!(v = opt_value(verb, argc, argv, i))) return -1;
        if (!*l) *l = a[2] == 'i' ? &inc : &exc;
        if ((*l)->n == CLI_MAX_PATTERNS) {
            cli_usage_error(verb, "%s: at most %d patterns", a, CLI_MAX_PATTERNS);
            return -1;
        }
        (*l)->v[(*l)->n++] = v;
    } else if (!strcmp(a, "--interp")) {
        if (!(v = opt_value(verb, argc, argv, i))) return -1;
        if (!strcmp(v, "bilinear")) c->pre.interp = UF_INTERP_BILINEAR;
        else if (!strcmp(v, "bicubic")) c->pre.interp = UF_INTERP_BICUBIC;
        else if (!strcmp(v, "lanczos")) c->pre.interp = UF_INTERP_LANCZOS;
        else if (!strcmp(v, "nearest")) c->pre.interp = UF_INTERP_NEAREST;
        else {
            cli_usage_error(verb, "--interp: expected bilinear, bicubic, lanczos or nearest, got '%s'", v);
            return -1;
        }
    } else if (!strcmp(a, "--mean") || !strcmp(a, "--std")) {
        bool is_std = a[2] == 's';
        if (!(v = opt_value(verb, argc, argv, i))) return -1;
        float f[3];
        if (!cli_parse_floats(v, 3, f)) {
            cli_usage_error(verb, "%s: expected three comma-separated numbers, got '%s'", a, v);
            return -1;
        }
        for (int k = 0; k < 3; k++) {
            if (is_std && !(f[k] > 0)) {
                cli_usage_error(verb, "--std: values must be > 0, got '%s'", v);
                return -1;
            }
            (is_std ? c->pre.std : c->pre.mean)[k] = f[k];
        }
        c->norm_given |= is_std ? 2u : 1u;
    } else if (!strcmp(a, "--threads")) {
        if (!(v = opt_value(verb, argc, argv, i))) return -1;
        if (!cli_parse_int(v, 0, 1024, &n)) {
            cli_usage_error(verb, "--threads: expected an integer in 0..1024, got '%s'", v);
            return -1;
        }
        c->threads = (int)n;
    } else if (!strcmp(a, "--batch")) {
        if (!(v = opt_value(verb, argc, argv, i))) return -1;
        if (!cli_parse_int(v, 1, 256, &n)) {
            cli_usage_error(verb, "--batch: expected an integer in 1..256, got '%s'", v);
            return -1;
        }
        c->batch = (int)n;
    } else if (!strcmp(a, "--precision")) {
        if (!(v = opt_value(verb, argc, argv, i)) || !cli_parse_precision(verb, v, &c->precision))
            return -1;
    } else if (!strcmp(a, "--quiet")) {
        c->quiet = true;
    } else {
        return 0;
    }
    return 1;
}

bool cli_strings_push(cli_strings *l, const char *s)
{
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 16;
        char **nv = realloc(l->v, nc * sizeof *nv);
        if (!nv) return false;
        l->v = nv;
        l->cap = nc;
    }
    char *d = strdup(s);
    if (!d) return false;
    l->v[l->n++] = d;
    return true;
}

void cli_strings_free(cli_strings *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static bool has_ext(const char *name, const char *const *exts)
{
    const char *dot = strrchr(name, '.');
    if (!dot) return false;
    for (; *exts; exts++)
        if (!strcasecmp(dot + 1, *exts)) return true;
    return false;
}

static const char *const list_exts[] = {"txt", "lst", NULL};

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The folders from the scanned root down to the one being read, by identity, so a
 * symlink back to one of them is recognised as a loop. */
#define SCAN_MAX_DEPTH 32
typedef struct scan_chain {
    dev_t dev[SCAN_MAX_DEPTH + 1];
    ino_t ino[SCAN_MAX_DEPTH + 1];
} scan_chain;

/* Append image files under dir (recursively, unsorted) to out. A subfolder that cannot be
 * read, that loops back to a folder above it (a symlink), or that lies deeper than
 * SCAN_MAX_DEPTH is skipped with a warning naming it: one bad corner of a tree does not
 * stop a run over the rest. Only the top folder's failure is an error. */
static bool scan_dir(const char *dir, cli_strings *out, int depth, scan_chain *chain)
{
    DIR *d = opendir(dir);
    struct stat st;
    if (!d || fstat(dirfd(d), &st) != 0) {
        if (depth == 0) cli_error("%s: cannot open directory: %s", dir, strerror(errno));
        else fprintf(stderr, "uniformaly: warning: %s: cannot open directory (%s); skipped\n",
                     dir, strerror(errno));
        if (d) closedir(d);
        return depth > 0;
    }
    chain->dev[depth] = st.st_dev;
    chain->ino[depth] = st.st_ino;
    struct dirent *e;
    bool ok = true;
    while (ok && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue; /* ., .., hidden files */
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        char *p = malloc(len);
        if (!p) { ok = false; break; }
        snprintf(p, len, "%s/%s", dir, e->d_name);
        const bool exists = stat(p, &st) == 0;
        if (exists && S_ISDIR(st.st_mode)) {
            int up = -1;
            for (int k = 0; k <= depth && up < 0; k++)
                if (chain->dev[k] == st.st_dev && chain->ino[k] == st.st_ino) up = k;
            if (up >= 0)
                fprintf(stderr, "uniformaly: warning: %s: loops back to the folder %d level%s "
                                "above (a symlink); skipped\n",
                        p, depth + 1 - up, depth + 1 - up == 1 ? "" : "s");
            else if (depth + 1 > SCAN_MAX_DEPTH)
                fprintf(stderr, "uniformaly: warning: %s: folders nested deeper than %d levels; "
                                "skipped\n", p, SCAN_MAX_DEPTH);
            else ok = scan_dir(p, out, depth + 1, chain);
        } else if (exists && S_ISREG(st.st_mode) && uf_is_image_name(e->d_name)) {
            ok = cli_strings_push(out, p);
        }
        free(p);
    }
    closedir(d);
    return ok;
}

FILE *cli_open_input(const char *path)
{
    int fd;
    if (uf_open_input(path, &fd) != UF_OK) {
        cli_error("%s", uf_errmsg());
        return NULL;
    }
    FILE *f = fdopen(fd, "r");
    if (!f) {
        cli_error("%s: cannot open: %s", path, strerror(errno));
        close(fd);
    }
    return f;
}

uf_inputs *cli_run_inputs(const cli_strings *images, int npos, char *const *pos,
                          const char *const *more, int nmore)
{
    uf_inputs *in = NULL;
    bool ok = uf_inputs_new(&in) == UF_OK;
    for (size_t i = 0; ok && i < images->n; i++) ok = uf_inputs_add(in, images->v[i]) == UF_OK;
    for (int i = 0; ok && i < npos; i++) ok = uf_inputs_add(in, pos[i]) == UF_OK;
    for (int i = 0; ok && i < nmore; i++) ok = !more[i] || uf_inputs_add(in, more[i]) == UF_OK;
    if (ok) return in;
    cli_error("%s", uf_errmsg());
    uf_inputs_free(in);
    return NULL;
}

bool cli_check_output(const char *path, const uf_inputs *in)
{
    if (uf_output_check(path, in) == UF_OK) return true;
    cli_error("%s", uf_errmsg());
    return false;
}

/* Read a list file: one path per line; blank lines and '#' comments skipped. */
static bool read_list(const char *path, cli_strings *out)
{
    FILE *f = cli_open_input(path);
    if (!f) return false;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    bool ok = true;
    const char *slash = strrchr(path, '/');
    size_t dirlen = slash ? (size_t)(slash - path) : 0;
    size_t lineno = 0;
    while (ok && (len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (memchr(line, '\0', (size_t)len)) { /* C strings would end there: a.jpg<NUL>b.jpg */
            cli_error("%s: line %zu contains a NUL byte", path, lineno);
            ok = false;
            break;
        }
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' ||
                           line[len - 1] == ' ' || line[len - 1] == '\t'))
            line[--len] = '\0';
        char *s = line;
        while (*s == ' ' || *s == '\t') s++;
        if (!*s || *s == '#') continue;
        /* first whitespace-separated field is the path (labels may follow) */
        char *sp = strpbrk(s, " \t");
        if (sp) *sp = '\0';
        if (s[0] != '/' && dirlen) {
            size_t n = dirlen + strlen(s) + 2;
            char *p = malloc(n);
            if (!p) { ok = false; break; }
            snprintf(p, n, "%.*s/%s", (int)dirlen, path, s);
            ok = cli_strings_push(out, p);
            free(p);
        } else {
            ok = cli_strings_push(out, s);
        }
    }
    free(line);
    fclose(f);
    return ok;
}

static bool pattern_hit(const cli_patterns *l, const char *rel)
{
    const char *base = strrchr(rel, '/');
    base = base ? base + 1 : rel;
    for (int k = 0; l && k < l->n; k++)
        if (fnmatch(l->v[k], rel, 0) == 0 || fnmatch(l->v[k], base, 0) == 0) return true;
    return false;
}

/* Keep out->v[first..] that pass c's --include / --exclude (paths relative to root). */
static void filter_found(const cli_common *c, const char *root, cli_strings *out, size_t first)
{
    if (!c || (!c->include && !c->exclude)) return;
    size_t keep = first, skip = strlen(root) + 1; /* scan_dir wrote root + "/" + ... */
    for (size_t k = first; k < out->n; k++) {
        const char *rel = out->v[k] + skip;
        if ((c->include && !pattern_hit(c->include, rel)) || pattern_hit(c->exclude, rel))
            free(out->v[k]);
        else
            out->v[keep++] = out->v[k];
    }
    out->n = keep;
}

bool cli_expand_images(const cli_common *c, int n, char **args, cli_strings *out)
{
    for (int i = 0; i < n; i++) {
        struct stat st;
        if (stat(args[i], &st) != 0) {
            cli_error("%s: %s", args[i], strerror(errno));
            return false;
        }
        if (S_ISDIR(st.st_mode)) {
            size_t first = out->n;
            scan_chain chain;
            if (!scan_dir(args[i], out, 0, &chain)) return false;
            filter_found(c, args[i], out, first);
            if (out->n > first) /* (out->v may still be NULL: qsort must not see it) */
                qsort(out->v + first, out->n - first, sizeof *out->v, cmp_str);
            if (out->n == first) {
                cli_error("%s: no images found in this directory%s", args[i],
                          c && (c->include || c->exclude) ? " (after --include/--exclude)" : "");
                return false;
            }
        } else if (has_ext(args[i], list_exts)) {
            if (!read_list(args[i], out)) return false;
        } else if (!cli_strings_push(out, args[i])) {
            cli_error("out of memory");
            return false;
        }
    }
    return true;
}

/* On a terminal: one line rewritten in place. Otherwise (a log file, a pipe): a full line at
 * most every CLI_PROGRESS_EVERY_S seconds, so long unattended runs show they are alive
 * without flooding the log, and short runs print nothing. Called from the main thread only. */
#define CLI_PROGRESS_EVERY_S 15.0
void cli_progress(const cli_common *c, const char *label, size_t i, size_t n)
{
    static double last = -1; /* monotonic seconds of the last line (or of the first call) */
    if (c->quiet) return;
    if (isatty(2)) {
        fprintf(stderr, "\r%s %zu/%zu", label, i, n);
        if (i == n) fputc('\n', stderr);
        fflush(stderr);
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double t = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
    if (last < 0) last = t;
    if (t - last < CLI_PROGRESS_EVERY_S) return;
    last = t;
    fprintf(stderr, "%s %zu/%zu\n", label, i, n);
    fflush(stderr);
}

const char *cli_bundled_backbone(void)
{
    static char found[4096];
    const char *env = getenv("UNIFORMALY_BACKBONE");
    if (env && *env) return env;
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return NULL;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash) return NULL;
    *slash = '\0';
    static const char *const where[] = {"../share/uniformaly", "models", "../models"};
    for (size_t i = 0; i < sizeof where / sizeof *where; i++) {
        struct stat st;
        int k = snprintf(found, sizeof found, "%s/%s/" CLI_BUNDLED_NAME, exe, where[i]);
        if (k > 0 && (size_t)k < sizeof found && stat(found, &st) == 0 && S_ISREG(st.st_mode))
            return found;
    }
    return NULL;
}

bool cli_default_backbone(cli_common *c)
{
    if (c->backbone) return true;
    if (!(c->backbone = cli_bundled_backbone())) {
        cli_error("no --backbone given and the bundled backbone " CLI_BUNDLED_NAME " is not "
                  "in ../share/uniformaly, models or ../models beside this program (and "
                  "$UNIFORMALY_BACKBONE is not set); pass a checkpoint with --backbone");
        return false;
    }
    c->bundled = true;
    for (int k = 0; k < 3; k++) {
        if (!(c->norm_given & 1u)) c->pre.mean[k] = 0.5f;
        if (!(c->norm_given & 2u)) c->pre.std[k] = 0.5f;
    }
    return true;
}

uf_status cli_model_load(const char *path, const uf_model_load_params *lp, uf_model **out)
{
    uf_model_load_params d = uf_model_load_default_params();
    if (!lp) lp = &d;
    uf_status s = uf_model_load(path, lp, out);
    const char *bundled;
    if (s != UF_ERR_IO || lp->backbone_path || !(bundled = cli_bundled_backbone())) return s;
    uf_model_load_params q = *lp;
    q.backbone_path = bundled;
    q.allow_other_backbone = 0;
    if (uf_model_load(path, &q, out) == UF_OK) return UF_OK;
    return uf_model_load(path, lp, out); /* fails again, with the first attempt's message */
}

uf_backbone *cli_load_backbone(const cli_common *c)
{
    uf_backbone *bb = NULL;
    uf_status s = uf_backbone_load(c->backbone, &c->bp, &bb);
    if (s == UF_OK && c->precision >= 0)
        s = uf_backbone_set_precision(bb, (uf_precision)c->precision);
    if (s != UF_OK) {
        cli_error("%s", uf_errmsg());
        uf_backbone_free(bb);
        return NULL;
    }
    return bb;
}

bool cli_load_image(const cli_common *c, const char *path, float *out)
{
    uf_image *img = NULL;
    int w, h;
    uf_status s = uf_image_load_shrunk(path, &c->pre, &img, &w, &h);
    if (s == UF_OK) s = uf_preprocess_image(img, &c->pre, out);
    uf_image_free(img);
    if (s != UF_OK) {
        const char *m = uf_errmsg();
        /* uf_image_load names the path itself; preprocessing errors do not */
        if (strncmp(m, path, strlen(path)) == 0) cli_error("%s", m);
        else cli_error("%s: %s", path, m);
        return false;
    }
    return true;
}

/* ---- text outputs: names are bytes, JSON is UTF-8 ---------------------------------- */

/* Length of the valid UTF-8 sequence at s (n bytes available), or 0 if none starts there
 * (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF). */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t len = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (!len || len > n) return 0;
    /* the second byte's range depends on the first; the others are 80..BF */
    unsigned char lo = 0x80, hi = 0xBF;
    if (c == 0xE0) lo = 0xA0;
    else if (c == 0xED) hi = 0x9F;
    else if (c == 0xF0) lo = 0x90;
    else if (c == 0xF4) hi = 0x8F;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return len;
}

char *cli_utf8_valid(const char *s, size_t n, size_t *out_n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t need = 0;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq(u + i, n - i);
        need += k ? k : 3;
        i += k ? k : 1;
    }
    char *o = malloc(need + 1);
    if (!o) return NULL;
    size_t w = 0;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq(u + i, n - i);
        if (k) memcpy(o + w, s + i, k);
        else memcpy(o + w, "\xEF\xBF\xBD", 3); /* U+FFFD REPLACEMENT CHARACTER */
        w += k ? k : 3;
        i += k ? k : 1;
    }
    o[w] = '\0';
    if (out_n) *out_n = w;
    return o;
}

char *cli_json_print(const cJSON *o)
{
    char *raw = cJSON_PrintUnformatted(o);
    if (!raw) return NULL;
    char *t = cli_utf8_valid(raw, strlen(raw), NULL);
    cJSON_free(raw);
    return t;
}

void cli_tsv_field(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '\\': fputs("\\\\", f); break;
        case '\t': fputs("\\t", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        default: fputc(*s, f);
        }
    }
}

void cli_buf_printf(cli_buf *b, const char *fmt, ...)
{
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) { b->oom = true; return; }
        if (b->s && b->n + (size_t)k < b->cap) { b->n += (size_t)k; return; }
        size_t nc = b->cap ? b->cap * 2 : 4096;
        while (nc < b->n + (size_t)k + 1) nc *= 2;
        char *ns = realloc(b->s, nc);
        if (!ns) { b->oom = true; return; }
        b->s = ns;
        b->cap = nc;
    }
}
