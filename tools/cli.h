/*
 * cli.h - shared pieces of the `uniformaly` command-line program: option parsing helpers,
 * the preprocessing/backbone flags every image-reading verb accepts, image list expansion
 * and error reporting. The program talks to the user; the library never does.
 *
 * Exit statuses: 0 success, 1 runtime failure (a file could not be read, a model is
 * wrong, ...), 2 usage error (unknown flag, missing or out-of-range value).
 */
#ifndef UF_CLI_H
#define UF_CLI_H

#include "uniformaly.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define CLI_EXIT_RUNTIME 1
#define CLI_EXIT_USAGE 2

/* Print "uniformaly: <msg>" on stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Print "uniformaly <verb>: <msg>" and "Try 'uniformaly <verb> --help'." and return 2. */
int cli_usage_error(const char *verb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Parse a decimal integer in [lo, hi]; false on junk or out of range. */
bool cli_parse_int(const char *s, long lo, long hi, long *out);
/* Parse a finite float in [lo, hi]. */
bool cli_parse_float(const char *s, double lo, double hi, double *out);
/* Parse exactly n comma-separated finite floats. */
bool cli_parse_floats(const char *s, int n, float *out);

/* Glob patterns (fnmatch) of --include / --exclude, a fixed-size list: a pattern matches
 * a file found in a folder input when it matches the file's path relative to that folder
 * or its name alone. */
#define CLI_MAX_PATTERNS 32
typedef struct cli_patterns {
    const char *v[CLI_MAX_PATTERNS];
    int n;
} cli_patterns;

#define CLI_GIVEN_RESIZE 1u
#define CLI_GIVEN_CROP 2u
#define CLI_GIVEN_FIT 4u

/* Options shared by every verb that runs a backbone on images. */
typedef struct cli_common {
    const char *backbone;  /* --backbone PATH (cli_default_backbone fills it in) */
    bool bundled;          /* backbone is the bundled one, not --backbone  */
    unsigned norm_given;   /* bit 0: --mean given, bit 1: --std given      */
    uf_preprocess pre;     /* --resize --crop --pad-to --fit --interp --mean --std */
    unsigned pre_given;    /* CLI_GIVEN_*: which of them the command line set, so
                              --pad-to's letterbox defaults never override them */
    uf_backbone_params bp; /* --heads                                  */
    int threads;           /* --threads (0 = all cores)                */
    int batch;             /* --batch                                  */
    int precision;         /* --precision: a uf_precision, or -1 when not given (a
                              checkpoint then runs FP32, a model file as it records) */
    bool quiet;            /* --quiet: no progress on stderr           */
    cli_patterns *include; /* --include GLOB (repeatable): folder inputs keep only
                              matching files; NULL = all                */
    cli_patterns *exclude; /* --exclude GLOB (repeatable): folder inputs drop them */
} cli_common;

void cli_common_init(cli_common *c);

/* Resolve c->threads (0: the library default, $OMP_NUM_THREADS or all cores) and make it
 * the thread count of the program's own OpenMP loops (decoding images in parallel); the
 * library's objects get it through uf_*_set_threads. Call after parsing the options. */
void cli_threads_init(cli_common *c);

/* If argv[*i] is one of the common options, consume it (and its value, advancing *i) and
 * return 1; return 0 if it is not a common option; return -1 after printing a usage error
 * (bad or missing value). */
int cli_common_option(cli_common *c, const char *verb, int argc, char **argv, int *i);

/* Parse --precision's value: fp32 or bf16 into *p; false (usage error printed) otherwise. */
bool cli_parse_precision(const char *verb, const char *v, int *p);

/* Help text for the common options (printed by each verb's --help). */
extern const char *const cli_common_help;

/* A growable list of strings. */
typedef struct cli_strings {
    char **v;
    size_t n, cap;
} cli_strings;
bool cli_strings_push(cli_strings *l, const char *s);
void cli_strings_free(cli_strings *l);

/* Expand command-line image arguments into files: a directory is searched recursively for
 * files whose names uf_is_image_name accepts (png jpg jpeg bmp ppm pgm pbm pnm), sorted
 * bytewise; a file ending in .txt/.lst is read as a list of paths (one per line, '#'
 * comments, relative paths resolved against the list's folder); anything else is taken as
 * an image path. Files found in a directory are filtered by c's --include / --exclude
 * patterns (c may be NULL: no filter); a directory left with no image is an error.
 * Returns false after printing an error (missing path, unreadable list). */
bool cli_expand_images(const cli_common *c, int n, char **args, cli_strings *out);

/* Progress on stderr, nothing with --quiet: on a terminal one line "\r<label> i/n" rewritten
 * in place and finished with a newline when i == n; otherwise (a log, a pipe) a full line
 * at most every 15 s. Main thread only. */
void cli_progress(const cli_common *c, const char *label, size_t i, size_t n);

/* Open an input text file (a list, a labels file) with uf_open_input, so a FIFO or a
 * device is refused instead of blocking; NULL after printing one line naming it. */
FILE *cli_open_input(const char *path);

/* The files a run reads (uf_inputs), so no output replaces one: the expanded images, the
 * arguments that named them (list files) and more[0..nmore-1] (checkpoints, models; NULL
 * entries skipped). NULL after printing an error (out of memory). Free with
 * uf_inputs_free. */
uf_inputs *cli_run_inputs(const cli_strings *images, int npos, char *const *pos,
                          const char *const *more, int nmore);

/* uf_output_check(path, in), printing its one-line error; false when path must not be
 * written. */
bool cli_check_output(const char *path, const uf_inputs *in);

/* The backbone that ships with the program: the ImageNet ViT-Tiny/16 of timm, FP16
 * (models/ in the source tree, $(PREFIX)/share/uniformaly once installed; see NOTICE).
 * Its path: $UNIFORMALY_BACKBONE if set (used as is), else the first existing of
 * <dir>/../share/uniformaly/NAME, <dir>/models/NAME and <dir>/../models/NAME, where <dir>
 * is the folder of the running program. NULL if none exists. Static storage. */
#define CLI_BUNDLED_NAME "vit_tiny_patch16_224.fp16.safetensors"
const char *cli_bundled_backbone(void);

/* When --backbone was not given: use the bundled backbone, with its own normalisation
 * (mean and std 0.5, unless --mean / --std were given). False after printing where it
 * looked when it is not there. */
bool cli_default_backbone(cli_common *c);

/* uf_model_load, and, when the backbone recorded in the model cannot be read (UF_ERR_IO)
 * and lp names none, again with the bundled backbone: the library accepts it only if its
 * sha256 is the recorded one, so a model fitted with the bundled backbone loads wherever
 * the program finds it (another machine, another install prefix). On failure
 * uf_errmsg() holds the first attempt's message. */
uf_status cli_model_load(const char *path, const uf_model_load_params *lp, uf_model **out);

/* Load the backbone given by --backbone (error printed on failure). */
uf_backbone *cli_load_backbone(const cli_common *c);

/* Load and preprocess one image into out ([3][S][S]); prints the error naming the path
 * and returns false on failure. */
bool cli_load_image(const cli_common *c, const char *path, float *out);

/* Method flags (cli_detector.c): consume argv[*i] if it is one, as cli_common_option
 * does (1 consumed, 0 not a method flag, -1 usage error printed). */
int cli_detector_option(uf_detector_params *p, const char *verb, int argc, char **argv, int *i);
extern const char *const cli_detector_help;

/* Every setting as a JSON object (floats printed with the fewest digits that read back as
 * the same float); owned by the caller (cJSON_Delete). */
struct cJSON;
struct cJSON *cli_params_json(const uf_detector_params *p);

/* One result line of `predict --json` (also the body of serve's /v1/predict):
 * {"image", "score", "anomalous" (score > threshold; null if threshold is not finite),
 * "threshold", "heatmap", "map"} (heatmap / map null when NULL). Caller owns it. */
struct cJSON *cli_result_json(const char *image, float score, double threshold,
                              const char *heatmap, const char *map);

/* A model described as `info --json` prints it (also serve's /v1/model). Caller owns it. */
struct cJSON *cli_model_json(const char *path, const uf_model *m);

/* Decode n images in parallel into imgs[0..n-1] (NULL where decoding failed; each failure
 * is printed as one line naming the file), each shrunk to pre's resize size while it is
 * decoded (uf_image_load_shrunk), so a batch holds network-sized images. Returns the
 * number decoded. */
int cli_load_images(char *const *paths, int n, const uf_preprocess *pre, uf_image **imgs);
/* The same; full != 0 keeps each image at its file's size (the fitter's rotations must turn
 * the original image, as AnomalyDINO does, before the resize). */
int cli_load_images_full(char *const *paths, int n, const uf_preprocess *pre, int full,
                         uf_image **imgs);
/* As cli_load_images, but an image is kept at its full decoded size (full[j] true) while the
 * full-size images of the call stay within max_bytes of pixels; past that it is loaded
 * shrunk (full[j] false). For overlays, drawn on the same decoded pixels that were scored
 * (the detector shrinks a full-size image itself, with the same results). */
int cli_load_images_keep(char *const *paths, int n, const uf_preprocess *pre, uf_image **imgs,
                         bool *full, size_t max_bytes);
/* The bound of cli_load_images_keep used by predict: 256 MB of originals per batch. */
#define CLI_KEEP_BYTES ((size_t)256 << 20)

/* Text outputs. File and folder names are bytes, and JSON must be UTF-8 (cJSON copies
 * whatever it is given), so every JSON document the program writes goes through
 * cli_utf8_valid: each byte that is not part of valid UTF-8 becomes U+FFFD, the Unicode
 * replacement character (the name stays readable but is no longer exact; the plain-text
 * outputs keep the bytes). Plain tab-separated output escapes its fields with
 * cli_tsv_field: backslash, tab, newline and carriage return are written as \\, \t, \n
 * and \r, so one line is one record whatever the names hold. */

/* s[0..n) with invalid UTF-8 bytes replaced by U+FFFD, NUL-terminated, malloc'd (NULL when
 * out of memory); *out_n (if not NULL) receives its length. */
char *cli_utf8_valid(const char *s, size_t n, size_t *out_n);
/* cJSON_PrintUnformatted(o) through cli_utf8_valid; free() the result (NULL: out of memory). */
char *cli_json_print(const struct cJSON *o);
/* Write s to f with \, tab, newline and CR escaped as \\ \t \n \r. */
void cli_tsv_field(FILE *f, const char *s);

/* Calibration (cli_calib.c). Score paths[n] with m (batches of c->batch, progress on
 * stderr): scores[n] the image scores; with patches non-NULL, *patches (malloc'd) receives
 * the foreground patch scores of all images, *n_patch their count. False after printing an
 * error (an unreadable image, a scoring failure). */
bool cli_score_paths(const cli_common *c, uf_model *m, char *const *paths, size_t n,
                     float *scores, float **patches, size_t *n_patch);
/* Calibrate m on the normal images paths[n]: threshold at false-positive rate fpr and the
 * statistics (uf_calibration) stored in m; a summary line on stderr. */
bool cli_calibrate_normal(const cli_common *c, uf_model *m, char *const *paths, size_t n,
                          double fpr);
/* On stderr: how few images (n) limit a false-positive-rate target fpr, when they do. */
void cli_fpr_note(size_t n, double fpr);
/* score / threshold (1.0 = at the threshold), NaN without a positive threshold. */
double cli_normalised(float score, double threshold);
/* Decision thresholds of labelled scores (anomalous = score > threshold): [0] the
 * F1-optimal one, [1] and [2] the thresholds at 1% and 5% false-positive rate among the
 * normal scores (uf_threshold_at_fpr), each with the recall and false-positive rate it
 * gives. False (all NaN) without both normal and anomalous scores. */
#define CLI_N_DECISIONS 3
typedef struct cli_decision {
    double threshold, recall, fpr;
} cli_decision;
extern const char *const cli_decision_names[CLI_N_DECISIONS]; /* f1, fpr_1pct, fpr_5pct */
bool cli_decisions(const float *scores, const uint8_t *labels, size_t n,
                   cli_decision d[CLI_N_DECISIONS]);
/* A labelled list (calibrate --val, report --labels): lines "PATH LABEL", LABEL
 * 0|good|normal or 1|bad|anomalous, '#' comments, relative paths resolved against the
 * list's folder. paths and *labels (malloc'd) filled; false after printing an error naming
 * the line. */
bool cli_read_labels(const char *list, cli_strings *paths, uint8_t **labels);
/* report.html (cli_report.c): one section per set of labelled image scores. */
typedef struct cli_report_set {
    const char *name;           /* category                                        */
    size_t n;
    const float *scores;        /* [n] image scores                                */
    const uint8_t *labels;      /* [n] 1 = anomalous                               */
    const char *const *types;   /* [n] defect type ("good" for normal), or NULL    */
    const char *const *names;   /* [n] display names                               */
    const char *const *thumbs;  /* [n] PNG/JPEG file shown for a mistake (entries or
                                   the array may be NULL)                          */
} cli_report_set;
/* Write the self-contained page atomically; false after printing an error. */
bool cli_write_report(const char *path, const char *title, const cli_report_set *sets, int n);
/* Shared by predict and zeroshot (cmd_predict.c). One heatmap name per image path, unique
 * within the run; *out [n] malloc'd names; false after printing an error. */
bool cli_heatmap_names(char *const *paths, size_t n, char ***out);
/* How overlays look for one run: the colour scale and the pixel level of the outline,
 * masks and regions, and the image threshold for the label. */
typedef struct cli_overlay_style {
    float lo, hi;     /* lo >= hi: each map's own min..max            */
    float level;      /* outline / mask / region level, NaN: none     */
    double thr;       /* image threshold (NaN: none)                  */
    bool masks;       /* --masks: NAME.mask.png                       */
    bool regions;     /* find the regions (for --json); init: true    */
} cli_overlay_style;
/* The style from --heatmap-range range (0,0: none), the image threshold thr (NaN: none) and
 * the calibration of m (NULL or uncalibrated: none; zeroshot has none): a calibrated model
 * draws every image on its scale (median normal patch score .. largest normal patch score,
 * the latter also the pixel level), else the level is thr. */
void cli_overlay_style_init(cli_overlay_style *st, const float range[2], double thr, bool masks,
                            const uf_model *m);
/* The annotated overlay of the pixel map pmap [S][S] of model m on img (the image as
 * decoded), scored score, in style st (label with score and decision, colour bar, outline,
 * the part m does not inspect greyed): *ov, and with full_out the map at the image's size
 * (*full_out [h][w], malloc'd). Thread-safe. On error (message in uf_errmsg(), "out of
 * memory" for UF_ERR_NOMEM) nothing is returned. */
uf_status cli_annotated_overlay(const uf_model *m, const float *pmap, const uf_image *img,
                                const cli_overlay_style *st, float score, float **full_out,
                                uf_image **ov);
#define CLI_MAX_REGIONS 8
/* What one image's outputs gave: the files written ("" when not asked for) and the
 * regions above the level (for --json). */
typedef struct cli_map_out {
    uf_region reg[CLI_MAX_REGIONS];
    int n_reg;
    bool wrote;
    char png[4200], npy[4200], mask[4200];
} cli_map_out;
/* Write dir/name.png (annotated overlay of the pixel map pmap [S][S] of model m on the image
 * at img_path - orig, its full-size decoded pixels, or NULL to decode it here - scored
 * score, in style st, the part m does not inspect greyed), with raw dir/name.npy, with
 * st->masks dir/name.mask.png; the paths and regions go to mo (mo->wrote = the result);
 * outputs that are inputs are refused; false after printing an error. Thread-safe (one mo
 * each). */
bool cli_write_maps(const uf_model *m, const float *pmap, const char *dir, const char *img_path,
                    const uf_image *orig, const char *name, const cli_overlay_style *st,
                    float score, bool raw, const uf_inputs *inputs, cli_map_out *mo);
/* The result line of one image, text (PATH TAB SCORE TAB anomalous|normal|- TAB
 * NORMALIZED|-) or JSON ("normalized", and with mo: "heatmap", "map", "mask", "regions");
 * mo NULL when no maps were asked for; thr NaN when unknown. */
void cli_print_result(bool json, const char *path, float score, double thr,
                      const cli_map_out *mo);

/* fit's warnings about the training set (fit_checks.c), each printed once on stderr:
 * cli_fit_check_names - files that look like masks beside images (names only);
 * cli_fit_check_new(n) / _image(k, i, img) for each decoded training image i / _report -
 * constant (single-colour) images and exact duplicates (same decoded pixels). A NULL
 * checker (out of memory) does nothing: warnings never fail a fit. */
typedef struct cli_fit_check cli_fit_check;
void cli_fit_check_names(const cli_strings *images);
cli_fit_check *cli_fit_check_new(size_t n);
void cli_fit_check_image(cli_fit_check *k, size_t idx, const uf_image *img);
void cli_fit_check_report(const cli_fit_check *k, const cli_strings *images);
void cli_fit_check_free(cli_fit_check *k);

/* A growable text buffer (eval's result files, report.html): cli_buf_printf appends; after
 * an allocation failure oom is set and further appends do nothing. Zero-initialise; free(s). */
typedef struct cli_buf {
    char *s;
    size_t n, cap;
    bool oom;
} cli_buf;
void cli_buf_printf(cli_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Verbs. */
int cmd_zeroshot(int argc, char **argv);
int cmd_classify(int argc, char **argv);
int cmd_features(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_fit(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_calibrate(int argc, char **argv);
int cmd_update(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_serve(int argc, char **argv);
/* `info` on a model file (cmd_predict.c); cmd_inspect calls it for .ufm files. */
int cmd_model_info(const char *path, bool json);

#endif
