/*
 * test_fuzz_regress.c - replays the fuzzing corpora through the fuzz harnesses.
 *
 * Every file of fuzz/corpus/<target>/ (seeds: small valid files and hand-made broken
 * ones) and fuzz/regress/<target>/ (inputs that once crashed, leaked, hung or hit
 * undefined behaviour, see fuzz/README.md) is fed to the same entry point libFuzzer
 * calls, LLVMFuzzerTestOneInput of fuzz/fuzz_<target>.c. The harness sources are
 * included here with that function renamed per target, so the replay runs in plain
 * `make test` and, more usefully, under AddressSanitizer + UndefinedBehaviorSanitizer in
 * `make asan`, where a regression shows up as a sanitizer abort (the runner reports the
 * binary as crashed). The harnesses themselves trap on results that break the API's
 * promises (an image with 0 pixels, a tensor whose shape disagrees with its size, ...).
 * Paths are relative to the repository root, the cwd of `make test`.
 */
#include "harness.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* each harness defines LLVMFuzzerTestOneInput; give each its own name */
#define LLVMFuzzerTestOneInput fuzz_one_image
#include "../fuzz/fuzz_image.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_one_pth
#include "../fuzz/fuzz_pth.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_one_safetensors
#include "../fuzz/fuzz_safetensors.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_one_checkpoint
#include "../fuzz/fuzz_checkpoint.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_one_model
#include "../fuzz/fuzz_model.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_one_dataset
#include "../fuzz/fuzz_dataset.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_one_cli
#include "../fuzz/fuzz_cli.c" /* links the CLI archive (build/libufcli.a) */
#undef LLVMFuzzerTestOneInput

typedef int (*fuzz_fn)(const uint8_t *data, size_t size);

/* Read a whole file (NULL on failure). */
static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    uint8_t *buf = NULL; /* [*len] */
    size_t cap = 0, n = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? 2 * cap : 65536;
            uint8_t *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) break;
    }
    fclose(f);
    *len = n;
    return buf;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Feed every regular file of dir to fn, in name order; returns the count, -1 if dir is
 * missing. Sets *bad when a file cannot be read. */
static int replay_dir(const char *dir, fuzz_fn fn, int *bad)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    char **names = NULL; /* [n] */
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **nn = realloc(names, cap * sizeof *names);
            if (!nn) abort();
            names = nn;
        }
        names[n] = strdup(e->d_name);
        if (!names[n]) abort();
        n++;
    }
    closedir(d);
    if (n > 1) qsort(names, n, sizeof *names, cmp_names);
    int count = 0;
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        struct stat st;
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            size_t len = 0;
            uint8_t *buf = slurp(path, &len);
            if (!buf) {
                fprintf(stderr, "    cannot read %s\n", path);
                *bad = 1;
            } else {
                fn(buf, len);
                free(buf);
                count++;
            }
        }
        free(names[i]);
    }
    free(names);
    return count;
}

/* Replay fuzz/corpus/<target> (must exist and hold files) and fuzz/regress/<target>. */
static void replay(const char *target, fuzz_fn fn)
{
    char dir[256];
    int bad = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    snprintf(dir, sizeof dir, "fuzz/corpus/%s", target);
    int nc = replay_dir(dir, fn, &bad);
    CHECKF(nc > 0, "%s: no seed corpus (run from the repository root)", dir);
    snprintf(dir, sizeof dir, "fuzz/regress/%s", target);
    int nr = replay_dir(dir, fn, &bad);
    CHECK(!bad);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fprintf(stderr, "    %s: %d seeds, %d regression inputs replayed (%.2f s)\n", target, nc,
            nr < 0 ? 0 : nr, (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
}

static void test_replay_image(void) { replay("image", fuzz_one_image); }
static void test_replay_pth(void) { replay("pth", fuzz_one_pth); }
static void test_replay_safetensors(void) { replay("safetensors", fuzz_one_safetensors); }
static void test_replay_checkpoint(void) { replay("checkpoint", fuzz_one_checkpoint); }
static void test_replay_model(void) { replay("model", fuzz_one_model); }
static void test_replay_dataset(void) { replay("dataset", fuzz_one_dataset); }
static void test_replay_cli(void) { replay("cli", fuzz_one_cli); }

/* Findings whose fix is a refusal: the input must now give that error, not just not
 * crash. */
static void test_model_random_limit(void)
{
    /* a 1.4 KB model file whose random backbone would have 105M parameters (420 MB, ~20 s
       to generate) before the limit of src/detector/modelfile.c */
    uf_model *m = NULL;
    uf_status s = uf_model_load("fuzz/regress/model/random_105m_params.ufm", NULL, &m);
    CHECKF(s == UF_ERR_LIMIT, "status %d: %s", (int)s, uf_errmsg());
    CHECKF(strstr(uf_errmsg(), "random backbone of 104903788 parameters") != NULL, "%s",
           uf_errmsg());
    uf_model_free(m);
}

int main(void)
{
    RUN(test_replay_image);
    RUN(test_replay_pth);
    RUN(test_replay_safetensors);
    RUN(test_replay_checkpoint);
    RUN(test_replay_model);
    RUN(test_replay_dataset);
    RUN(test_replay_cli);
    RUN(test_model_random_limit);
    return TEST_DONE();
}
