/*
 * harness.h - the tiny in-house test harness.
 *
 * A test file defines `static void test_name(void)` functions and a main() that calls
 * RUN(test_name) for each, then returns TEST_DONE(). A test passes when none of its
 * CHECKs failed; SKIP(reason) ends it as skipped, printing the reason. Each binary ends with
 * a "#SUMMARY passed failed skipped" line that tests/run_tests.sh adds up.
 */
#ifndef UF_TEST_HARNESS_H
#define UF_TEST_HARNESS_H

#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* TH_TSAN: 1 in a ThreadSanitizer build (`make tsan`). libgomp is not instrumented, so a
 * test that deliberately runs OpenMP teams of several threads (uf_set_threads(2)) would
 * report false races there; such tests SKIP under it. */
#if defined(__SANITIZE_THREAD__)
#define TH_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TH_TSAN 1
#endif
#endif
#ifndef TH_TSAN
#define TH_TSAN 0
#endif
/* TH_ASAN: 1 under AddressSanitizer, whose shadow memory and quarantine make peak-memory
 * figures meaningless; memory bounds are then not asserted. */
#if defined(__SANITIZE_ADDRESS__)
#define TH_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TH_ASAN 1
#endif
#endif
#ifndef TH_ASAN
#define TH_ASAN 0
#endif

static int th_pass, th_fail, th_skip; /* tests */
static int th_cur_failed, th_cur_skipped;
static const char *th_cur_name;

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            th_cur_failed = 1;                                                         \
            fprintf(stderr, "FAIL %s [%s:%d]: %s\n", th_cur_name, __FILE__, __LINE__,  \
                    #cond);                                                            \
        }                                                                              \
    } while (0)

/* CHECK with a printf-style explanation printed on failure. */
#define CHECKF(cond, ...)                                                              \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            th_cur_failed = 1;                                                         \
            fprintf(stderr, "FAIL %s [%s:%d]: %s: ", th_cur_name, __FILE__, __LINE__,  \
                    #cond);                                                            \
            fprintf(stderr, __VA_ARGS__);                                              \
            fputc('\n', stderr);                                                       \
        }                                                                              \
    } while (0)

/* Require a status of UF_OK; on failure print uf_errmsg() and leave the test. */
#define REQUIRE_OK(expr)                                                               \
    do {                                                                               \
        uf_status th_s_ = (expr);                                                      \
        if (th_s_ != UF_OK) {                                                          \
            th_cur_failed = 1;                                                         \
            fprintf(stderr, "FAIL %s [%s:%d]: %s -> %s: %s\n", th_cur_name, __FILE__,  \
                    __LINE__, #expr, uf_status_str(th_s_), uf_errmsg());               \
            return;                                                                    \
        }                                                                              \
    } while (0)

/* Leave the current test if a previous check failed. */
#define REQUIRE(cond)                                                                  \
    do {                                                                               \
        CHECK(cond);                                                                   \
        if (th_cur_failed) return;                                                     \
    } while (0)

#define SKIP(...)                                                                      \
    do {                                                                               \
        th_cur_skipped = 1;                                                            \
        fprintf(stderr, "SKIP %s: ", th_cur_name);                                     \
        fprintf(stderr, __VA_ARGS__);                                                  \
        fputc('\n', stderr);                                                           \
        return;                                                                        \
    } while (0)

#define RUN(fn)                                                                        \
    do {                                                                               \
        th_cur_name = #fn;                                                             \
        th_cur_failed = th_cur_skipped = 0;                                            \
        fn();                                                                          \
        if (th_cur_failed) th_fail++;                                                  \
        else if (th_cur_skipped) th_skip++;                                            \
        else th_pass++;                                                                \
        fprintf(stderr, "  %-4s %s\n",                                                 \
                th_cur_failed ? "FAIL" : th_cur_skipped ? "skip" : "ok", #fn);         \
    } while (0)

#define TEST_DONE() \
    (printf("#SUMMARY %d %d %d\n", th_pass, th_fail, th_skip), th_fail ? 1 : 0)

/* Directory holding the shared real data (UF_SHARED, default ../shared relative to the
 * project root), or NULL when absent: the caller then SKIPs. With UF_REQUIRE_SHARED=1 (CI,
 * where the data must be there) an absent folder also fails the current test, so the skip
 * counts as a failure. */
static inline const char *th_shared_dir(void)
{
    const char *d = getenv("UF_SHARED");
    if (!d || !*d) d = "../shared";
    char probe[4096];
    snprintf(probe, sizeof probe, "%s/README.md", d);
    FILE *f = fopen(probe, "rb");
    if (!f) {
        const char *req = getenv("UF_REQUIRE_SHARED");
        if (req && !strcmp(req, "1")) {
            th_cur_failed = 1;
            fprintf(stderr, "FAIL %s: %s not found, and UF_REQUIRE_SHARED=1 says the shared "
                            "data must be there\n", th_cur_name, probe);
        }
        return NULL;
    }
    fclose(f);
    return d;
}

/* splitmix64 streams as the golden scripts (scripts/gen_*_golden.py) generate their inputs:
 * state starts at seed ^ (stream * 0xD1B54A32D192ED03). Written here independently of the
 * library's own copy in src/detector/coreset.c, so a test does not borrow what it checks. */
typedef struct {
    uint64_t s;
} th_sm;

static inline th_sm th_sm_new(uint64_t seed, uint64_t stream)
{
    th_sm r = {seed ^ (stream * 0xD1B54A32D192ED03ull)};
    return r;
}

static inline uint64_t th_sm_next(th_sm *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* "dir/name" in one of 8 rotating static buffers (scratch files of a test run; not
 * thread-safe; a result stays valid for the next 7 calls). */
static inline const char *th_path(const char *dir, const char *name)
{
    static char buf[8][1024];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

/* Remove dir and everything under it (scratch folders of tests; symlinks are not followed). */
static inline void th_rm_tree(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[4096];
    while (d && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (snprintf(p, sizeof p, "%s/%s", dir, e->d_name) >= (int)sizeof p) continue;
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) th_rm_tree(p);
        else unlink(p);
    }
    if (d) closedir(d);
    rmdir(dir);
}

/* Max |a-b| over n floats. */
static inline double th_max_abs_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > m || d != d) m = d != d ? INFINITY : d;
    }
    return m;
}

/* Max |a| over n floats. */
static inline double th_max_abs(const float *a, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs(a[i]) > m) m = fabs(a[i]);
    return m;
}

#endif
