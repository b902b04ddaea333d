/*
 * tasks.c - what an evaluation run uses before it fits anything: the default settings of
 * each task (uf_eval_resolve), taken from the official scripts rather than one fraction for
 * everything, and the seeded choice of training images (uf_draw_shots).
 *
 * The official scripts (github.com/YoojLee/Uniformaly, run_*.sh) pass the coreset fraction
 * per task: -p 0.1 in run_defect.sh and run_clustering.sh, -p 0.05 in run_cifar10.sh,
 * run_cifar100.sh and every run_*_multi.sh, -p 0.01 in run_imagenet.sh and run_species.sh
 * (ImageNet-30, Species-60: class folders of more than 10,000 training images); the
 * paper itself states no fraction. CIFAR runs also pass --resize 112 --imagesize 224: small
 * images are enlarged to 112 and padded to 224.
 */
#include "core/internal.h"

#include <stdlib.h>
#include <string.h>

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

uf_status uf_draw_shots(size_t n, size_t k, uint64_t seed, size_t *out)
{
    if (!out || k == 0 || k > n)
        return uf__err(UF_ERR_ARG, "uf_draw_shots: need 0 < k <= n and out (k %zu, n %zu)", k, n);
    size_t bytes;
    size_t *perm = NULL; /* [n] */
    if (!uf__mul_ok(n, sizeof *perm, &bytes) || !(perm = malloc(bytes)))
        return uf__err(UF_ERR_NOMEM, "uf_draw_shots: cannot allocate %zu indices", n);
    for (size_t i = 0; i < n; i++) perm[i] = i;
    uint64_t st = seed ^ 0x73686f7473ull; /* "shots" */
    for (size_t j = 0; j < k; j++) {
        size_t r = j + (size_t)(uf_splitmix64(&st) % (n - j));
        size_t t = perm[j];
        perm[j] = perm[r];
        perm[r] = t;
    }
    qsort(perm, k, sizeof *perm, cmp_size);
    memcpy(out, perm, k * sizeof *out);
    free(perm);
    return UF_OK;
}

uf_eval_params uf_eval_default_params(void)
{
    uf_eval_params p;
    memset(&p, 0, sizeof p);
    p.detector = uf_detector_default_params();
    p.cluster_protocol = UF_CLUSTER_OFFICIAL;
    p.cluster_restarts = 10;
    p.cluster_max_iter = 300;
    p.gt_threshold = UF_GT_THRESHOLD_DEFAULT;
    p.max_fpr = 0.3;
    p.batch = 8;
    return p;
}

/* The coreset fraction of the task, and the rule that gives it. */
static double task_coreset(const uf_dataset *ds, const uf_dataset_info *info, const int *cats,
                           int n, const uf_eval_params *p, const char **source)
{
    if (info->kind == UF_DATASET_IMAGEFOLDER) {
        int large = n > 0;
        for (int i = 0; i < n && large; i++) {
            uf_dataset_counts c;
            large = uf_dataset_get_counts(ds, cats[i], &c) == UF_OK && c.n_train > 10000;
        }
        if (large) {
            *source = "task default: class folders with more than 10,000 training images per "
                      "class (official run_imagenet.sh, run_species.sh: -p 0.01)";
            return 0.01;
        }
    }
    if (p->multi_class) {
        *source = "task default: multi-class (official run_mvtec_multi.sh, run_cifar10_multi.sh, "
                  "run_species_multi.sh: -p 0.05)";
        return 0.05;
    }
    if (info->semantic) {
        *source = "task default: semantic one-class (official run_cifar10.sh, run_cifar100.sh: "
                  "-p 0.05; also MNIST, Fashion-MNIST)";
        return 0.05;
    }
    *source = "task default: defect detection and clustering (official run_defect.sh, "
              "run_clustering.sh: -p 0.1)";
    return 0.1;
}

uf_status uf_eval_resolve(const uf_dataset *ds, const int *cats, int n, const uf_eval_params *p,
                          uf_detector_params *out, const char **coreset_source,
                          const char **preprocess_source)
{
    if (!ds || !cats || n < 1 || !p || !out)
        return uf__err(UF_ERR_ARG, "uf_eval_resolve: NULL argument or no category");
    int nc = uf_dataset_n_categories(ds);
    for (int i = 0; i < n; i++)
        if (cats[i] < 0 || cats[i] >= nc)
            return uf__err(UF_ERR_ARG, "category index %d out of range (0..%d)", cats[i], nc - 1);
    if (p->shots && p->max_train)
        return uf__err(UF_ERR_ARG, "shots and max_train exclude each other");
    if (p->repeats < 0 || p->repeats > 1000)
        return uf__err(UF_ERR_ARG, "repeats %d outside 0..1000", p->repeats);
    if (p->repeats > 1 && !p->shots)
        return uf__err(UF_ERR_ARG, "repeats need shots (the fits would be identical)");
    if (p->cluster < -1 || p->cluster_restarts < 1 || p->cluster_max_iter < 0)
        return uf__err(UF_ERR_ARG, "cluster %d, restarts %d, max_iter %d: out of range",
                       p->cluster, p->cluster_restarts, p->cluster_max_iter);
    if ((unsigned)p->cluster_protocol > UF_CLUSTER_ANOMALOUS)
        return uf__err(UF_ERR_ARG, "unknown clustering protocol %d", (int)p->cluster_protocol);
    if (!(p->gt_threshold > 0 && p->gt_threshold <= 1))
        return uf__err(UF_ERR_ARG, "ground-truth threshold %g outside (0, 1]", p->gt_threshold);
    if (!(p->max_fpr > 0 && p->max_fpr <= 1))
        return uf__err(UF_ERR_ARG, "max_fpr %g outside (0, 1]", p->max_fpr);
    if (p->batch < 1 || p->batch > 256) return uf__err(UF_ERR_ARG, "batch %d outside 1..256", p->batch);
    if (!(p->zero_shot >= 0 && p->zero_shot <= 1))
        return uf__err(UF_ERR_ARG, "zero_shot %g outside [0, 1]", p->zero_shot);
    if (p->zero_shot > 0 && (p->shots || p->max_train || p->repeats > 1 || p->multi_class ||
                             p->cluster))
        return uf__err(UF_ERR_ARG, "zero-shot excludes shots, max_train, repeats, "
                                   "multi-class and clustering (there is no fit)");
    uf_dataset_info info;
    uf_dataset_get_info(ds, &info);
    uf_detector_params d = p->detector;
    const char *cs = "set by the caller", *ps = "set by the caller";
    if (!(p->keep & UF_EVAL_KEEP_CORESET)) d.coreset = task_coreset(ds, &info, cats, n, p, &cs);
    if (p->zero_shot > 0) cs = "unused: zero-shot scoring keeps no memory bank";
    if (info.semantic && info.image_width > 0) {
        /* small in-memory images: the reference's protocol for the fields not chosen */
        if (!(p->keep & UF_EVAL_KEEP_RESIZE)) d.pre.resize = 112;
        if (!(p->keep & UF_EVAL_KEEP_CROP)) {
            d.pre.crop = 0;
            d.pre.pad_to = 224;
        }
        if (!(p->keep & UF_EVAL_KEEP_INTERP)) d.pre.interp = UF_INTERP_LANCZOS;
        if ((p->keep & (UF_EVAL_KEEP_RESIZE | UF_EVAL_KEEP_CROP | UF_EVAL_KEEP_INTERP)) !=
            (UF_EVAL_KEEP_RESIZE | UF_EVAL_KEEP_CROP | UF_EVAL_KEEP_INTERP))
            ps = "task default: small images resized to 112 (Lanczos) and zero-padded to 224 "
                 "(official run_cifar10.sh: --resize 112 --imagesize 224) where not set";
    }
    uf_status s = uf_detector_params_check(&d, NULL);
    if (s) return s;
    *out = d;
    if (coreset_source) *coreset_source = cs;
    if (preprocess_source) *preprocess_source = ps;
    return UF_OK;
}
