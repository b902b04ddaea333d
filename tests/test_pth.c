/*
 * test_pth.c - tests of the PyTorch checkpoint reader (src/io/pth.c).
 *
 * 1. Fixtures written by torch.save (scripts/gen_pth_fixtures.py, torch 1.13) are loaded
 *    and compared exactly (names, order, shapes, float32 bit patterns) with the .ref files
 *    the same script computed by walking the objects in Python.
 * 2. Robustness: every truncation of some fixtures, seeded random byte corruption of whole
 *    files, and seeded mutations of real pickles re-wrapped in valid zips (so that the CRC
 *    check does not hide the pickle VM) must fail cleanly or succeed, never crash or leak
 *    (run under ASan/UBSan with `make asan`).
 * 3. Each safety limit is reached with hand-built pickles wrapped in zips built here:
 *    MARK depth, stack size, memo index, object memory, dict nesting, cycles, shared-dict
 *    explosion, tensor count, string lengths, storage size, views outside their storage,
 *    output size. ZIP64 archives and big-endian storages are built here too.
 */
#include "bytebuf.h"
#include "harness.h"
#include "core/internal.h"

#include <stdint.h>
#include <sys/resource.h>
#include <zlib.h>

#define DIR "tests/data/pth/"

/* Scale the random rounds (e.g. -DFUZZ_MULT=50 for a long local fuzzing run). */
#ifndef FUZZ_MULT
#define FUZZ_MULT 1
#endif

/* ------------------------------------------------------------------------------------ */
/* Zip and pickle builders on bytebuf.h (independent of src/io/pth.c)                       */
/* ------------------------------------------------------------------------------------ */

/* One zip entry to write: its name and bytes (not owned). */
typedef struct {
    const char *name;
    const void *data;
    size_t len;
} zin;

/* Raw deflate of e->data (malloc'd, *clen bytes), or a copy when compress is 0. */
static uint8_t *zip_payload(const zin *e, int compress, size_t *clen)
{
    uLong cap = compressBound((uLong)e->len) + 64;
    uint8_t *out = malloc(cap);
    if (!out) abort();
    if (!compress) {
        memcpy(out, e->data, e->len);
        *clen = e->len;
        return out;
    }
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY) != Z_OK) abort();
    z.next_in = (Bytef *)e->data;
    z.avail_in = (uInt)e->len;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    if (deflate(&z, Z_FINISH) != Z_STREAM_END) abort();
    *clen = z.total_out;
    deflateEnd(&z);
    return out;
}

/* A zip of the entries, STORED as torch.save writes them except entry i when bit i of
 * deflated is set (method 8, as any zip tool may write); zip64 != 0 writes ZIP64 extra
 * fields, record and locator with the classic fields saturated, as large torch
 * checkpoints do. */
static uint8_t *make_zip_ex(const zin *e, int n, int zip64, unsigned deflated, size_t *len)
{
    buf_t b = {0};
    uint64_t off[64];
    size_t clen[64];
    for (int i = 0; i < n; i++) {
        off[i] = b.n;
        uint32_t crc = (uint32_t)crc32(0L, e[i].data, (uInt)e[i].len);
        int dfl = (int)(deflated >> i & 1);
        uint8_t *pay = zip_payload(&e[i], dfl, &clen[i]);
        b_u32(&b, 0x04034b50u);
        b_u16(&b, 45); b_u16(&b, 0); b_u16(&b, dfl ? 8 : 0); b_u16(&b, 0); b_u16(&b, 0);
        b_u32(&b, crc); b_u32(&b, (uint32_t)clen[i]); b_u32(&b, (uint32_t)e[i].len);
        b_u16(&b, (unsigned)strlen(e[i].name)); b_u16(&b, 0);
        b_str(&b, e[i].name);
        b_put(&b, pay, clen[i]);
        free(pay);
    }
    uint64_t cd = b.n;
    for (int i = 0; i < n; i++) {
        uint32_t crc = (uint32_t)crc32(0L, e[i].data, (uInt)e[i].len);
        b_u32(&b, 0x02014b50u);
        b_u16(&b, 45); b_u16(&b, 45); b_u16(&b, 0); b_u16(&b, (deflated >> i & 1) ? 8 : 0);
        b_u16(&b, 0); b_u16(&b, 0);
        b_u32(&b, crc);
        b_u32(&b, zip64 ? 0xFFFFFFFFu : (uint32_t)clen[i]);
        b_u32(&b, zip64 ? 0xFFFFFFFFu : (uint32_t)e[i].len);
        b_u16(&b, (unsigned)strlen(e[i].name)); b_u16(&b, zip64 ? 28 : 0); b_u16(&b, 0);
        b_u16(&b, 0); b_u16(&b, 0); b_u32(&b, 0);
        b_u32(&b, zip64 ? 0xFFFFFFFFu : (uint32_t)off[i]);
        b_str(&b, e[i].name);
        if (zip64) {
            b_u16(&b, 1); b_u16(&b, 24);
            b_u64(&b, e[i].len); b_u64(&b, clen[i]); b_u64(&b, off[i]);
        }
    }
    uint64_t cdsize = b.n - cd;
    if (zip64) {
        uint64_t rec = b.n;
        b_u32(&b, 0x06064b50u); b_u64(&b, 44); b_u16(&b, 45); b_u16(&b, 45);
        b_u32(&b, 0); b_u32(&b, 0); b_u64(&b, (uint64_t)n); b_u64(&b, (uint64_t)n);
        b_u64(&b, cdsize); b_u64(&b, cd);
        b_u32(&b, 0x07064b50u); b_u32(&b, 0); b_u64(&b, rec); b_u32(&b, 1);
    }
    b_u32(&b, 0x06054b50u); b_u16(&b, 0); b_u16(&b, 0);
    b_u16(&b, zip64 ? 0xFFFF : (unsigned)n); b_u16(&b, zip64 ? 0xFFFF : (unsigned)n);
    b_u32(&b, zip64 ? 0xFFFFFFFFu : (uint32_t)cdsize);
    b_u32(&b, zip64 ? 0xFFFFFFFFu : (uint32_t)cd);
    b_u16(&b, 0);
    *len = b.n;
    return b.p;
}

static uint8_t *make_zip(const zin *e, int n, int zip64, size_t *len)
{
    return make_zip_ex(e, n, zip64, 0, len);
}

/* Pickle pieces, written the way CPython's protocol-2 pickler does (BINUNICODE strings,
 * BININT / LONG1 integers, text GLOBAL lines). */
static void pk_str(buf_t *b, const char *s)
{
    b_u8(b, 'X');
    b_u32(b, (uint32_t)strlen(s));
    b_str(b, s);
}
static void pk_int(buf_t *b, int64_t v)
{
    if (v >= INT32_MIN && v <= INT32_MAX) {
        b_u8(b, 'J');
        b_u32(b, (uint32_t)(int32_t)v);
    } else {
        b_u8(b, 0x8a); /* LONG1, 8 bytes */
        b_u8(b, 8);
        b_u64(b, (uint64_t)v);
    }
}
static void pk_global(buf_t *b, const char *mod, const char *name)
{
    b_u8(b, 'c');
    b_str(b, mod);
    b_u8(b, '\n');
    b_str(b, name);
    b_u8(b, '\n');
}
/* _rebuild_tensor_v2(('storage', torch.<stype>, key, 'cpu', numel), off, size, stride,
 * False, OrderedDict()) exactly as torch.save writes it. */
static void pk_tensor(buf_t *b, const char *stype, const char *key, int64_t numel, int64_t off,
                      int nd, const int64_t *size, const int64_t *stride)
{
    pk_global(b, "torch._utils", "_rebuild_tensor_v2");
    b_u8(b, '(');
    b_u8(b, '(');
    pk_str(b, "storage");
    pk_global(b, "torch", stype);
    pk_str(b, key);
    pk_str(b, "cpu");
    pk_int(b, numel);
    b_u8(b, 't');
    b_u8(b, 'Q');
    pk_int(b, off);
    b_u8(b, '(');
    for (int i = 0; i < nd; i++) pk_int(b, size[i]);
    b_u8(b, 't');
    b_u8(b, '(');
    for (int i = 0; i < nd; i++) pk_int(b, stride[i]);
    b_u8(b, 't');
    b_u8(b, 0x89);
    pk_global(b, "collections", "OrderedDict");
    b_u8(b, ')');
    b_u8(b, 'R');
    b_u8(b, 't');
    b_u8(b, 'R');
}

/* A checkpoint zip: archive/data.pkl = pk, archive/data/<i> = storages[i], version. */
static uint8_t *make_ckpt(const buf_t *pk, int ns, const zin *storages, const char *byteorder,
                          int zip64, size_t *len)
{
    zin e[16];
    char names[16][32];
    int n = 0;
    e[n++] = (zin){"archive/data.pkl", pk->p, pk->n};
    for (int i = 0; i < ns; i++) {
        snprintf(names[i], sizeof names[i], "archive/data/%s", storages[i].name);
        e[n++] = (zin){names[i], storages[i].data, storages[i].len};
    }
    e[n++] = (zin){"archive/version", "3\n", 2};
    if (byteorder) e[n++] = (zin){"archive/byteorder", byteorder, strlen(byteorder)};
    return make_zip(e, n, zip64, len);
}

/* Load a pickle wrapped with one float32 storage "0" of nfl floats 0,1,2,... */
static uf_status load_pickle(const buf_t *pk, size_t nfl, const uf__pth_limits *lim,
                             uf__tensors *ts)
{
    float *f = calloc(nfl ? nfl : 1, sizeof(float));
    for (size_t i = 0; i < nfl; i++) f[i] = (float)i;
    zin st = {"0", f, nfl * sizeof(float)};
    size_t len;
    uint8_t *z = make_ckpt(pk, 1, &st, NULL, 0, &len);
    uf_status s = uf__pth_load_mem_ex(z, len, "test", lim, ts);
    free(z);
    free(f);
    return s;
}

static void tensor_pickle(buf_t *pk, int64_t numel, int64_t off, int nd, const int64_t *size,
                          const int64_t *stride);
static int msg_has(const char *needle) { return strstr(uf_errmsg(), needle) != NULL; }

/* Read a whole file (test-side). */
static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* ------------------------------------------------------------------------------------ */
/* 1. Fixtures against their references                                                 */
/* ------------------------------------------------------------------------------------ */

/* Compare ts with DIR/<name>.ref; returns the number of mismatches (each printed). */
static int compare_ref(const char *name, const uf__tensors *ts)
{
    char path[256];
    snprintf(path, sizeof path, DIR "%s.ref", name);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "  cannot open %s\n", path);
        return 1;
    }
    int bad = 0;
    size_t count = 0;
    if (fscanf(f, "%zu", &count) != 1) bad++;
    if (count != ts->n) {
        fprintf(stderr, "  %s: %zu tensors, reference has %zu\n", name, ts->n, count);
        bad++;
    }
    for (size_t i = 0; i < count && i < ts->n && !bad; i++) {
        char key[512];
        int nd;
        if (fscanf(f, "%511s %d", key, &nd) != 2) { bad++; break; }
        const uf__tensor *t = &ts->v[i];
        if (strcmp(key, t->name) != 0 || nd != t->ndim) {
            fprintf(stderr, "  %s[%zu]: got %s (%d dims), want %s (%d dims)\n", name, i,
                    t->name, t->ndim, key, nd);
            bad++;
            break;
        }
        size_t numel = 1;
        for (int d = 0; d < nd; d++) {
            long long s;
            if (fscanf(f, "%lld", &s) != 1) bad++;
            if (s != t->shape[d]) {
                fprintf(stderr, "  %s: %s dim %d is %lld, want %lld\n", name, key, d,
                        (long long)t->shape[d], s);
                bad++;
            }
            numel *= (size_t)s;
        }
        if (numel != t->numel) bad++;
        for (size_t k = 0; k < numel && !bad; k++) {
            unsigned v;
            uint32_t got;
            if (fscanf(f, "%x", &v) != 1) { bad++; break; }
            memcpy(&got, &t->data[k], 4);
            if (got != v) {
                fprintf(stderr, "  %s: %s[%zu] = %08x, want %08x\n", name, key, k,
                        (unsigned)got, v);
                bad++;
            }
        }
    }
    fclose(f);
    return bad;
}

static void check_fixture(const char *name)
{
    char path[256];
    snprintf(path, sizeof path, DIR "%s.pth", name);
    uf__tensors ts = {0};
    uf_status s = uf__pth_load(path, &ts);
    CHECKF(s == UF_OK, "%s: %s", path, uf_errmsg());
    if (s == UF_OK) CHECKF(compare_ref(name, &ts) == 0, "%s differs from its reference", name);
    uf__tensors_free(&ts);
}

static void test_fixtures(void)
{
    static const char *const names[] = {"state_dict", "nested", "model_key", "proto4",
                                        "dtypes", "views", "params", "vit_plain",
                                        "vit_teacher", "dino_full", "deflate"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) check_fixture(names[i]);
}

/* Loading from memory gives the same as loading the path (mmap). */
static void test_mem_equals_path(void)
{
    size_t len;
    uint8_t *buf = slurp(DIR "views.pth", &len);
    REQUIRE(buf != NULL);
    uf__tensors a = {0}, b = {0};
    uf_status s1 = uf__pth_load_mem(buf, len, &a), s2 = uf__pth_load(DIR "views.pth", &b);
    CHECK(s1 == UF_OK && s2 == UF_OK);
    CHECK(a.n == b.n && a.n == 9);
    for (size_t i = 0; i < a.n && i < b.n; i++) {
        CHECK(strcmp(a.v[i].name, b.v[i].name) == 0);
        CHECK(a.v[i].numel == b.v[i].numel);
        CHECK(memcmp(a.v[i].data, b.v[i].data, a.v[i].numel * 4) == 0);
    }
    uf__tensors_free(&a);
    uf__tensors_free(&b);
    free(buf);
}

/* The DINO-style names come out as a ViT loader expects them. */
static void test_vit_names(void)
{
    uf__tensors ts = {0};
    REQUIRE_OK(uf__pth_load(DIR "vit_plain.pth", &ts));
    static const char *const want[] = {
        "cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias",
        "blocks.0.norm1.weight", "blocks.0.norm1.bias", "blocks.0.attn.qkv.weight",
        "blocks.0.attn.qkv.bias", "blocks.0.attn.proj.weight", "blocks.0.attn.proj.bias",
        "blocks.0.norm2.weight", "blocks.0.norm2.bias", "blocks.0.mlp.fc1.weight",
        "blocks.0.mlp.fc1.bias", "blocks.0.mlp.fc2.weight", "blocks.0.mlp.fc2.bias"};
    CHECK(ts.n == 30);
    for (size_t i = 0; i < sizeof want / sizeof want[0] && i < ts.n; i++)
        CHECKF(strcmp(ts.v[i].name, want[i]) == 0, "%s vs %s", ts.v[i].name, want[i]);
    CHECK(ts.n >= 2 && strcmp(ts.v[ts.n - 2].name, "norm.weight") == 0);
    const uf__tensor *pe = uf__tensors_find(&ts, "pos_embed");
    CHECK(pe && pe->ndim == 3 && pe->shape[0] == 1 && pe->shape[1] == 5 && pe->shape[2] == 8);
    const uf__tensor *pw = uf__tensors_find(&ts, "patch_embed.proj.weight");
    CHECK(pw && pw->ndim == 4 && pw->shape[1] == 3 && pw->shape[2] == 4);
    uf__tensors_free(&ts);

    REQUIRE_OK(uf__pth_load(DIR "vit_teacher.pth", &ts));
    CHECK(ts.n == 31);
    CHECK(uf__tensors_find(&ts, "teacher.backbone.cls_token") != NULL);
    CHECK(uf__tensors_find(&ts, "teacher.backbone.blocks.1.mlp.fc2.bias") != NULL);
    CHECK(uf__tensors_find(&ts, "teacher.head.mlp.0.weight") != NULL);
    uf__tensors_free(&ts);

    REQUIRE_OK(uf__pth_load(DIR "dino_full.pth", &ts));
    CHECK(uf__tensors_find(&ts, "teacher.backbone.norm.bias") != NULL);
    CHECK(uf__tensors_find(&ts, "student.module.backbone.pos_embed") != NULL);
    CHECK(uf__tensors_find(&ts, "optimizer.state.0.momentum_buffer") != NULL);
    CHECK(uf__tensors_find(&ts, "dino_loss.center") != NULL);
    for (size_t i = 0; i < ts.n; i++) CHECK(strncmp(ts.v[i].name, "args", 4) != 0);
    uf__tensors_free(&ts);
}

/* Non-float tensors are skipped; integer keys, 0-dim and empty tensors are kept. */
static void test_dtypes(void)
{
    uf__tensors ts = {0};
    REQUIRE_OK(uf__pth_load(DIR "dtypes.pth", &ts));
    static const char *const skipped[] = {"i64", "i32", "u8", "bool", "c64"};
    for (size_t i = 0; i < 5; i++) CHECK(uf__tensors_find(&ts, skipped[i]) == NULL);
    const uf__tensor *t = uf__tensors_find(&ts, "7");
    CHECK(t && t->numel == 2 && t->data[1] == 7.0f);
    t = uf__tensors_find(&ts, "scalar");
    CHECK(t && t->ndim == 0 && t->numel == 1 && t->data[0] == 2.75f);
    t = uf__tensors_find(&ts, "empty");
    CHECK(t && t->ndim == 2 && t->shape[0] == 0 && t->shape[1] == 3 && t->numel == 0);
    uf__tensors_free(&ts);
}

/* ------------------------------------------------------------------------------------ */
/* 2. Refusals and robustness                                                           */
/* ------------------------------------------------------------------------------------ */

static void test_legacy(void)
{
    uf__tensors ts = {0};
    uf_status s = uf__pth_load(DIR "legacy.pth", &ts);
    CHECK(s == UF_ERR_UNSUPPORTED);
    CHECKF(msg_has("legacy PyTorch (pre-1.6)") && msg_has("torch.save(torch.load(") &&
               msg_has(DIR "legacy.pth"),
           "message: %s", uf_errmsg());
    CHECK(strchr(uf_errmsg(), '\n') == NULL);
    CHECK(ts.n == 0);
}

static void test_not_checkpoint(void)
{
    uf__tensors ts = {0};
    const char *txt = "hello, this is not a checkpoint\n";
    CHECK(uf__pth_load_mem((const uint8_t *)txt, strlen(txt), &ts) == UF_ERR_FORMAT);
    CHECKF(msg_has("not a PyTorch checkpoint") && msg_has("<memory>"), "%s", uf_errmsg());
    CHECK(uf__pth_load_mem((const uint8_t *)"", 0, &ts) == UF_ERR_FORMAT);
    CHECK(uf__pth_load(DIR "no_such_file.pth", &ts) == UF_ERR_IO);
    CHECK(msg_has("no_such_file.pth"));
    CHECK(uf__pth_load(DIR, &ts) == UF_ERR_IO);
    CHECK(uf__pth_load(DIR "state_dict.ref", &ts) == UF_ERR_FORMAT);
    /* a zip that is not a checkpoint */
    zin e = {"hello.txt", "hi", 2};
    size_t len;
    uint8_t *z = make_zip(&e, 1, 0, &len);
    CHECK(uf__pth_load_mem(z, len, &ts) == UF_ERR_FORMAT);
    CHECKF(msg_has("data.pkl"), "%s", uf_errmsg());
    free(z);
    CHECK(ts.n == 0);
}

/* A failing load leaves previously loaded tensors untouched. */
static void test_rollback(void)
{
    uf__tensors ts = {0};
    REQUIRE_OK(uf__pth_load(DIR "params.pth", &ts));
    REQUIRE(ts.n == 2);
    size_t len;
    uint8_t *buf = slurp(DIR "state_dict.pth", &len);
    REQUIRE(buf != NULL);
    /* the tensor limit is only checked on output: the load fails after appending some */
    uf__pth_limits lim = uf__pth_default_limits();
    lim.max_tensors = 5; /* state_dict has 8 float tensors */
    CHECK(uf__pth_load_mem_ex(buf, len, "x", &lim, &ts) == UF_ERR_LIMIT);
    CHECK(ts.n == 2 && strcmp(ts.v[0].name, "weight") == 0);
    free(buf);
    uf__tensors_free(&ts);
}

/* Every proper prefix of a file is an error, never a crash. */
static void truncate_all(const char *path, size_t step)
{
    size_t len;
    uint8_t *buf = slurp(path, &len);
    REQUIRE(buf != NULL);
    int ok = 0;
    for (size_t n = 0; n < len; n += step) {
        uint8_t *cut = malloc(n ? n : 1); /* exact size so ASan sees overreads */
        memcpy(cut, buf, n);
        uf__tensors ts = {0};
        if (uf__pth_load_mem(cut, n, &ts) == UF_OK) ok++;
        CHECK(ts.n == 0 || ok);
        uf__tensors_free(&ts);
        free(cut);
    }
    CHECKF(ok == 0, "%s: %d truncations loaded", path, ok);
    free(buf);
}

/* Small fixtures are cut at every length, the DINO one at every 13th. */
static void test_truncation(void)
{
    truncate_all(DIR "state_dict.pth", 1);
    truncate_all(DIR "deflate.pth", 1);
    truncate_all(DIR "views.pth", 1);
    truncate_all(DIR "dino_full.pth", 13);
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* A success must give consistent tensors. */
static void check_sane(const uf__tensors *ts)
{
    for (size_t i = 0; i < ts->n; i++) {
        size_t n = 1;
        for (int d = 0; d < ts->v[i].ndim; d++) n *= (size_t)ts->v[i].shape[d];
        CHECK(n == ts->v[i].numel && ts->v[i].name && ts->v[i].data);
        volatile float sum = 0; /* touch every value (ASan checks the allocation) */
        for (size_t k = 0; k < n; k++) sum += ts->v[i].data[k];
        (void)sum;
    }
}

/* Seeded random damage to 1-4 bytes of a whole file, rounds times. Most copies fail the
 * CRC or header checks; the rest (damage in padding, timestamps, version) must still give
 * consistent tensors. */
static void corrupt_file(const char *path, int rounds)
{
    size_t len;
    uint8_t *buf = slurp(path, &len);
    REQUIRE(buf != NULL);
    uint8_t *m = malloc(len);
    int ok = 0;
    for (int r = 0; r < rounds; r++) {
        memcpy(m, buf, len);
        int k = 1 + (int)(rng() % 4);
        for (int j = 0; j < k; j++) {
            size_t at = (size_t)(rng() % len);
            uint64_t v = rng();
            /* mostly random bytes, sometimes 0x00/0xFF (size fields love those) */
            m[at] = (uint8_t)((v & 3) == 0 ? 0xFF : (v & 3) == 1 ? 0 : (v >> 8));
        }
        uf__tensors ts = {0};
        if (uf__pth_load_mem(m, len, &ts) == UF_OK) {
            ok++;
            check_sane(&ts);
        } else {
            CHECK(ts.n == 0);
            CHECK(uf_errmsg()[0] != '\0');
        }
        uf__tensors_free(&ts);
    }
    fprintf(stderr, "    %s: %d of %d corrupted copies still loaded\n", path, ok, rounds);
    free(m);
    free(buf);
}

static void test_corruption(void)
{
    corrupt_file(DIR "state_dict.pth", 300 * FUZZ_MULT);
    corrupt_file(DIR "deflate.pth", 200 * FUZZ_MULT);
    corrupt_file(DIR "views.pth", 200 * FUZZ_MULT);
}

/* Entries of a STORED zip written by torch/zipfile, read with a minimal test-side parser
 * (central directory without comment; sizes from it). */
static int list_entries(const uint8_t *b, size_t len, zin *e, char names[][128], int max)
{
    if (len < 22) return -1;
    const uint8_t *q = b + len - 22;
    uint32_t n = q[10] | (q[11] << 8), cd = q[16] | (q[17] << 8) | (q[18] << 16) |
                 ((uint32_t)q[19] << 24);
    int k = 0;
    const uint8_t *p = b + cd;
    for (uint32_t i = 0; i < n && k < max; i++) {
        uint32_t cs = p[20] | (p[21] << 8) | (p[22] << 16) | ((uint32_t)p[23] << 24);
        unsigned nl = p[28] | (p[29] << 8), xl = p[30] | (p[31] << 8), cl = p[32] | (p[33] << 8);
        uint32_t lho = p[42] | (p[43] << 8) | (p[44] << 16) | ((uint32_t)p[45] << 24);
        const uint8_t *lh = b + lho;
        unsigned lnl = lh[26] | (lh[27] << 8), lxl = lh[28] | (lh[29] << 8);
        snprintf(names[k], 128, "%.*s", (int)nl, (const char *)p + 46);
        e[k] = (zin){names[k], lh + 30 + lnl + lxl, cs};
        k++;
        p += 46 + nl + xl + cl;
    }
    return k;
}

/* Mutate the real pickle of a torch fixture and re-wrap it with valid CRCs, so the pickle
 * VM (not the CRC check) sees the damage. */
static void fuzz_pickle_of(const char *path, int rounds)
{
    size_t len;
    uint8_t *buf = slurp(path, &len);
    REQUIRE(buf != NULL);
    zin e[64];
    static char names[64][128];
    int n = list_entries(buf, len, e, names, 64);
    REQUIRE(n > 1 && strstr(e[0].name, "data.pkl") != NULL);
    size_t plen = e[0].len;
    uint8_t *pk = malloc(plen);
    int ok = 0;
    for (int r = 0; r < rounds; r++) {
        memcpy(pk, e[0].data, plen);
        size_t use = plen;
        int k = 1 + (int)(rng() % 3);
        for (int j = 0; j < k; j++) {
            uint64_t v = rng();
            size_t at = (size_t)(v % plen);
            switch ((v >> 32) % 4) {
            case 0: pk[at] = (uint8_t)(v >> 40); break;             /* random byte */
            case 1: pk[at] = (uint8_t)(pk[at] ^ (1u << ((v >> 40) % 8))); break; /* bit */
            case 2: pk[at] = (uint8_t)"(tRQqhuse.}]0)"[(v >> 40) % 14]; break; /* opcode */
            default: use = at; break;                              /* truncate */
            }
        }
        zin e2[64];
        memcpy(e2, e, (size_t)n * sizeof *e);
        e2[0].data = pk;
        e2[0].len = use;
        size_t zl;
        uint8_t *z = make_zip(e2, n, (int)(r & 1), &zl);
        uf__tensors ts = {0};
        if (uf__pth_load_mem(z, zl, &ts) == UF_OK) {
            ok++;
            check_sane(&ts);
        } else {
            CHECK(ts.n == 0);
        }
        uf__tensors_free(&ts);
        free(z);
    }
    fprintf(stderr, "    %s: %d of %d mutated pickles still loaded\n", path, ok, rounds);
    free(pk);
    free(buf);
}

static void test_pickle_fuzz(void)
{
    fuzz_pickle_of(DIR "views.pth", 400 * FUZZ_MULT);
    fuzz_pickle_of(DIR "dtypes.pth", 300 * FUZZ_MULT);
    fuzz_pickle_of(DIR "proto4.pth", 300 * FUZZ_MULT);
}

/* ------------------------------------------------------------------------------------ */
/* 3. Hand-built archives: formats and limits                                           */
/* ------------------------------------------------------------------------------------ */

/* {'w': 2x3 tensor on storage 0} in a ZIP64 archive and a normal one. */
static void test_zip64(void)
{
    buf_t pk = {0};
    b_u8(&pk, 0x80); b_u8(&pk, 2); b_u8(&pk, '}'); b_u8(&pk, '(');
    pk_str(&pk, "w");
    int64_t size[2] = {2, 3}, stride[2] = {3, 1};
    pk_tensor(&pk, "FloatStorage", "0", 6, 0, 2, size, stride);
    b_u8(&pk, 'u'); b_u8(&pk, '.');
    float f[6] = {1, 2, 3, 4, 5, 6};
    zin st = {"0", f, sizeof f};
    for (int z64 = 0; z64 < 2; z64++) {
        size_t len;
        uint8_t *z = make_ckpt(&pk, 1, &st, NULL, z64, &len);
        uf__tensors ts = {0};
        uf_status s = uf__pth_load_mem(z, len, &ts);
        CHECKF(s == UF_OK, "zip64=%d: %s", z64, uf_errmsg());
        CHECK(ts.n == 1 && strcmp(ts.v[0].name, "w") == 0 && ts.v[0].ndim == 2);
        CHECK(ts.n == 1 && memcmp(ts.v[0].data, f, sizeof f) == 0);
        uf__tensors_free(&ts);
        free(z);
    }
    free(pk.p);
}

/* Offset of the first central-directory header (data.pkl's in make_ckpt archives). */
static size_t central_of(const uint8_t *z, size_t len)
{
    for (size_t i = len - 22; i-- > 0;)
        if (z[i] == 'P' && z[i + 1] == 'K' && z[i + 2] == 1 && z[i + 3] == 2 &&
            (i < 4 || !(z[i - 4] == 'P' && z[i - 3] == 'K' && z[i - 2] == 1 && z[i - 1] == 2)))
            if (memcmp(z + i + 46, "archive/data.pkl", 16) == 0) return i;
    return 0;
}

/* Damaged or unusual archives give specific errors. */
static void test_zip_errors(void)
{
    buf_t pk = {0};
    int64_t sz = 2, sd = 1;
    tensor_pickle(&pk, 2, 0, 1, &sz, &sd);
    float f[2] = {1, 2};
    zin st = {"0", f, sizeof f};
    size_t len;
    uint8_t *z0 = make_ckpt(&pk, 1, &st, NULL, 0, &len), *z = malloc(len);
    size_t cd = central_of(z0, len);
    REQUIRE(cd > 0);
    /* storage 0's data follows its local header's name */
    const uint8_t *d0 = memmem(z0, len, "archive/data/0", 14);
    REQUIRE(d0 != NULL);
    uf__tensors ts = {0};
    struct { size_t at; uint8_t v; uf_status st; const char *msg; } cases[] = {
        {cd + 10, 12, UF_ERR_UNSUPPORTED, "compression method 12"}, /* bzip2 */
        {cd + 8, 1, UF_ERR_UNSUPPORTED, "encrypted"},
        {cd + 42, 0xEE, UF_ERR_FORMAT, "local header"},              /* offset */
        {cd + 20, 0x7F, UF_ERR_FORMAT, "stored with different sizes"},
        {len - 6, 0xFF, UF_ERR_FORMAT, "central directory"},         /* cd offset */
        {len - 10, 0x7F, UF_ERR_FORMAT, "central directory"},        /* cd size */
        {len - 22 + 10, 0x40, UF_ERR_FORMAT, "entries"},             /* entry count */
        {0, 0x55, UF_ERR_FORMAT, "CRC"},                             /* storage bytes */
    };
    cases[7].at = (size_t)(d0 - z0) + 14 + 3;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(z, z0, len);
        z[cases[i].at] = cases[i].v;
        uf_status s = uf__pth_load_mem(z, len, &ts);
        CHECKF(s == cases[i].st && msg_has(cases[i].msg), "case %zu: %s: %s", i,
               uf_status_str(s), uf_errmsg());
        CHECK(ts.n == 0);
    }
    memcpy(z, z0, len);
    CHECKF(uf__pth_load_mem(z, len, &ts) == UF_OK && ts.n == 1, "%s", uf_errmsg());
    uf__tensors_free(&ts);
    free(z);
    free(z0);
    free(pk.p);
}

/* byteorder "big": f32, f16 and f64 storages are byte-swapped. */
static void test_big_endian(void)
{
    buf_t pk = {0};
    b_u8(&pk, 0x80); b_u8(&pk, 2); b_u8(&pk, '}'); b_u8(&pk, '(');
    int64_t sz = 2, sd = 1;
    pk_str(&pk, "a"); pk_tensor(&pk, "FloatStorage", "0", 2, 0, 1, &sz, &sd);
    pk_str(&pk, "b"); pk_tensor(&pk, "HalfStorage", "1", 2, 0, 1, &sz, &sd);
    pk_str(&pk, "c"); pk_tensor(&pk, "DoubleStorage", "2", 2, 0, 1, &sz, &sd);
    b_u8(&pk, 'u'); b_u8(&pk, '.');
    const uint8_t f32be[8] = {0x3f, 0xc0, 0, 0, 0xc0, 0x20, 0, 0};  /* 1.5, -2.5 */
    const uint8_t f16be[4] = {0x3c, 0x00, 0xc5, 0x00};              /* 1.0, -5.0 */
    const uint8_t f64be[16] = {0x40, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18,
                               0xbf, 0xf0, 0, 0, 0, 0, 0, 0};       /* pi, -1   */
    zin st[3] = {{"0", f32be, 8}, {"1", f16be, 4}, {"2", f64be, 16}};
    size_t len;
    uint8_t *z = make_ckpt(&pk, 3, st, "big", 0, &len);
    uf__tensors ts = {0};
    uf_status s = uf__pth_load_mem(z, len, &ts);
    CHECKF(s == UF_OK, "%s", uf_errmsg());
    if (s == UF_OK && ts.n == 3) {
        CHECK(ts.v[0].data[0] == 1.5f && ts.v[0].data[1] == -2.5f);
        CHECK(ts.v[1].data[0] == 1.0f && ts.v[1].data[1] == -5.0f);
        CHECK(ts.v[2].data[0] == (float)3.141592653589793 && ts.v[2].data[1] == -1.0f);
    }
    uf__tensors_free(&ts);
    free(z);
    /* an unknown byte order is refused */
    z = make_ckpt(&pk, 3, st, "middle", 0, &len);
    CHECK(uf__pth_load_mem(z, len, &ts) == UF_ERR_FORMAT && msg_has("byteorder"));
    free(z);
    free(pk.p);
}

/* Protocol-0 text opcodes: INT, LONG, FLOAT, STRING, PUT/GET, DICT, LIST, INST. */
static void test_protocol0(void)
{
    buf_t pk = {0};
    b_str(&pk, "(dp0\n");                 /* {} memo 0 */
    b_str(&pk, "S'w'\np1\n");             /* 'w' */
    int64_t sz = 3, sd = 2;
    pk_tensor(&pk, "FloatStorage", "0", 6, 0, 1, &sz, &sd);
    b_str(&pk, "s");                      /* d['w'] = tensor */
    b_str(&pk, "S'n'\n(I1\nL12345678901234567890L\nF0.5\nI01\nlp2\ns");
    b_str(&pk, "V\\u00e9t\xc3\xa9\n(dp3\nS'x'\ng1\nsS'k'\n");
    b_str(&pk, "(iargparse\nNamespace\n");  /* INST -> opaque */
    b_str(&pk, "ss");
    b_str(&pk, "g0\n0.");                 /* push memo 0, POP it, STOP with the dict */
    uf__tensors ts = {0};
    uf_status s = load_pickle(&pk, 6, NULL, &ts);
    CHECKF(s == UF_OK, "%s", uf_errmsg());
    CHECK(ts.n == 1 && strcmp(ts.v[0].name, "w") == 0 && ts.v[0].numel == 3);
    CHECK(ts.n == 1 && ts.v[0].data[0] == 0 && ts.v[0].data[1] == 2 && ts.v[0].data[2] == 4);
    uf__tensors_free(&ts);
    free(pk.p);
}

/* Helper: expect status st from pickle pk (with limits lim), message containing needle. */
#define EXPECT_PICKLE(pk, nfl, lim, st, needle)                                          \
    do {                                                                                 \
        uf__tensors ts_ = {0};                                                           \
        uf_status s_ = load_pickle(pk, nfl, lim, &ts_);                                  \
        CHECKF(s_ == (st) && msg_has(needle), "got %s: %s", uf_status_str(s_),           \
               uf_errmsg());                                                             \
        CHECK(ts_.n == 0);                                                               \
        uf__tensors_free(&ts_);                                                          \
    } while (0)

/* 1000 open MARKs (limit 256) and 2^20 + 1 stack entries (limit 2^20), defaults. */
static void test_limit_marks_stack(void)
{
    buf_t pk = {0};
    b_u8(&pk, 0x80); b_u8(&pk, 2);
    for (int i = 0; i < 1000; i++) b_u8(&pk, '(');
    b_u8(&pk, '.');
    EXPECT_PICKLE(&pk, 1, NULL, UF_ERR_LIMIT, "MARK");
    pk.n = 2;
    for (int i = 0; i < (1 << 20) + 1; i++) b_u8(&pk, 'N');
    b_u8(&pk, '.');
    EXPECT_PICKLE(&pk, 1, NULL, UF_ERR_LIMIT, "stack");
    /* underflow and missing MARK are format errors */
    pk.n = 2;
    b_str(&pk, "N\x86.");
    EXPECT_PICKLE(&pk, 1, NULL, UF_ERR_FORMAT, "underflow");
    pk.n = 2;
    b_str(&pk, "N00.");
    EXPECT_PICKLE(&pk, 1, NULL, UF_ERR_FORMAT, "MARK");
    pk.n = 2;
    b_str(&pk, "Nu.");
    EXPECT_PICKLE(&pk, 1, NULL, UF_ERR_FORMAT, "MARK");
    free(pk.p);
}

/* Memo indices at and beyond the 2^20 limit; reading an unset entry. */
static void test_limit_memo(void)
{
    buf_t pk = {0};
    b_u8(&pk, 0x80); b_u8(&pk, 2); b_u8(&pk, 'N');
    b_u8(&pk, 'r'); b_u32(&pk, 1u << 20); b_u8(&pk, '.');
    EXPECT_PICKLE(&pk, 1, NULL, UF_ERR_LIMIT, "memo");
    pk.n = 3;
    b_u8(&pk, 'r'); b_u32(&pk, 0xFFFFFFFFu); b_u8(&pk, '.');
    EXPECT_PICKLE(&pk, 1, NULL, UF_ERR_LIMIT, "memo");
    pk.n = 3;
    b_u8(&pk, 'r'); b_u32(&pk, (1u << 20) - 1); b_u8(&pk, '.'); /* largest index: fine */
    uf__tensors ts = {0};
    CHECKF(load_pickle(&pk, 1, NULL, &ts) == UF_OK, "%s", uf_errmsg());
    pk.n = 3;
    b_u8(&pk, 'j'); b_u32(&pk, 7); b_u8(&pk, '.');
    EXPECT_PICKLE(&pk, 1, NULL, UF_ERR_FORMAT, "memo entry 7");
    free(pk.p);
}

/* 5000 throw-away dicts: fine by default, over a 64 KiB object-memory limit. */
static void test_limit_vm_bytes(void)
{
    buf_t pk = {0};
    b_u8(&pk, 0x80); b_u8(&pk, 2);
    for (int i = 0; i < 5000; i++) b_str(&pk, "}0");
    b_str(&pk, "}.");
    uf__pth_limits lim = uf__pth_default_limits();
    uf__tensors ts = {0};
    CHECKF(load_pickle(&pk, 1, &lim, &ts) == UF_OK, "%s", uf_errmsg());
    lim.max_vm_bytes = 64 << 10;
    EXPECT_PICKLE(&pk, 1, &lim, UF_ERR_LIMIT, "bytes");
    free(pk.p);
}

/* A pickle bomb: 15 M throw-away dicts ("}0") deflate to a file of a few tens of KB but
 * would take about a gigabyte of objects under the fixed 1 GiB limit. The object memory
 * allowed scales with the file's size (32 MiB + 64 x its length), so it stops early: the
 * message says so, and (outside sanitizer builds) the process grows by far less than
 * 300 MB. Fails if the limit does not scale. */
static void test_limit_vm_scaled(void)
{
    buf_t pk = {0};
    b_u8(&pk, 0x80); b_u8(&pk, 2);
    for (int i = 0; i < 15000000; i++) b_put(&pk, "}0", 2);
    b_str(&pk, "}.");
    zin e[2] = {{"archive/data.pkl", pk.p, pk.n}, {"archive/version", "3\n", 2}};
    size_t len;
    uint8_t *z = make_zip_ex(e, 2, 0, 1u, &len);
    free(pk.p);
    CHECKF(len < 100000, "the bomb is %zu bytes", len);
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    uf__tensors ts = {0};
    uf_status s = uf__pth_load_mem_ex(z, len, "bomb.pth", NULL, &ts);
    getrusage(RUSAGE_SELF, &r1);
    CHECKF(s == UF_ERR_LIMIT && msg_has("limit for this file's size"), "got %s: %s",
           uf_status_str(s), uf_errmsg());
    long grew_mb = (r1.ru_maxrss - r0.ru_maxrss) / 1024;
    printf("    pickle bomb: %zu-byte file, peak memory grew by %ld MB\n", len, grew_mb);
#if !TH_ASAN
    CHECKF(grew_mb < 300, "peak memory grew by %ld MB", grew_mb);
#endif
    uf__tensors_free(&ts);
    free(z);
}

/* Deep, cyclic and exponentially shared dict structures stop the walk, not the stack. */
static void test_limit_nesting(void)
{
    /* 5000 nested dicts {'k': {'k': ...}} */
    buf_t pk = {0};
    b_u8(&pk, 0x80); b_u8(&pk, 2); b_u8(&pk, '}');
    for (int i = 0; i < 5000; i++) { pk_str(&pk, "k"); b_u8(&pk, '}'); }
    for (int i = 0; i < 5000; i++) b_u8(&pk, 's');
    b_u8(&pk, '.');
    EXPECT_PICKLE(&pk, 1, NULL, UF_ERR_LIMIT, "nested");
    /* a dict that contains itself */
    pk.n = 2;
    b_str(&pk, "}q"); b_u8(&pk, 0);
    pk_str(&pk, "self");
    b_u8(&pk, 'h'); b_u8(&pk, 0); b_str(&pk, "s.");
    EXPECT_PICKLE(&pk, 1, NULL, UF_ERR_LIMIT, "nested");
    /* 40 levels of {'a': d, 'b': d}: 2^40 paths through shared dicts */
    pk.n = 2;
    b_str(&pk, "}q"); b_u8(&pk, 0);
    for (int i = 1; i <= 40; i++) {
        b_str(&pk, "}(");
        pk_str(&pk, "a"); b_u8(&pk, 'h'); b_u8(&pk, (unsigned)(i - 1));
        pk_str(&pk, "b"); b_u8(&pk, 'h'); b_u8(&pk, (unsigned)(i - 1));
        b_u8(&pk, 'u'); b_u8(&pk, 'q'); b_u8(&pk, (unsigned)i); b_u8(&pk, '0');
    }
    b_u8(&pk, 'h'); b_u8(&pk, 40); b_u8(&pk, '.');
    uf__pth_limits lim = uf__pth_default_limits();
    lim.max_visits = 100000;
    EXPECT_PICKLE(&pk, 1, &lim, UF_ERR_LIMIT, "visit");
    free(pk.p);
}

/* 11 names for one memoized tensor: fine by default, over a limit of 10 tensors. */
static void test_limit_tensors(void)
{
    buf_t pk = {0};
    b_u8(&pk, 0x80); b_u8(&pk, 2); b_u8(&pk, '}'); b_u8(&pk, '(');
    int64_t sz = 1, sd = 1;
    pk_str(&pk, "t0");
    pk_tensor(&pk, "FloatStorage", "0", 1, 0, 1, &sz, &sd);
    b_str(&pk, "q\x01");
    for (int i = 1; i < 11; i++) {
        char key[16];
        snprintf(key, sizeof key, "t%d", i);
        pk_str(&pk, key);
        b_str(&pk, "h\x01");
    }
    b_str(&pk, "u.");
    uf__pth_limits lim = uf__pth_default_limits();
    uf__tensors ts = {0};
    CHECKF(load_pickle(&pk, 1, &lim, &ts) == UF_OK && ts.n == 11, "%s", uf_errmsg());
    uf__tensors_free(&ts);
    lim.max_tensors = 10;
    EXPECT_PICKLE(&pk, 1, &lim, UF_ERR_LIMIT, "tensors");
    free(pk.p);
}

/* Length fields larger than the bytes left, and other malformed streams. */
static void test_limit_strings(void)
{
    buf_t pk = {0};
    b_u8(&pk, 0x80); b_u8(&pk, 2);
    b_u8(&pk, 'X'); b_u32(&pk, 0xFFFFFFF0u); b_str(&pk, "abc.");
    EXPECT_PICKLE(&pk, 1, NULL, UF_ERR_FORMAT, "truncated");
    pk.n = 2;
    b_u8(&pk, 0x8d); b_u64(&pk, (uint64_t)1 << 62); b_str(&pk, "abc.");
    EXPECT_PICKLE(&pk, 1, NULL, UF_ERR_FORMAT, "truncated");
    pk.n = 2;
    b_u8(&pk, 0x8e); b_u64(&pk, UINT64_MAX); b_str(&pk, "abc.");
    EXPECT_PICKLE(&pk, 1, NULL, UF_ERR_FORMAT, "truncated");
    pk.n = 2;
    b_u8(&pk, 0x8b); b_u32(&pk, 0x7FFFFFFFu); b_str(&pk, "abc.");
    EXPECT_PICKLE(&pk, 1, NULL, UF_ERR_FORMAT, "truncated");
    pk.n = 2;
    b_u8(&pk, 0x8c); b_u8(&pk, 200); b_str(&pk, "abc.");
    EXPECT_PICKLE(&pk, 1, NULL, UF_ERR_FORMAT, "truncated");
    pk.n = 2;
    b_str(&pk, "cno_newline");
    EXPECT_PICKLE(&pk, 1, NULL, UF_ERR_FORMAT, "text");
    pk.n = 2;
    b_str(&pk, "N\xff.");
    EXPECT_PICKLE(&pk, 1, NULL, UF_ERR_FORMAT, "opcode 0xff");
    pk.n = 0;
    b_u8(&pk, 0x80); b_u8(&pk, 6); b_str(&pk, "N.");
    EXPECT_PICKLE(&pk, 1, NULL, UF_ERR_UNSUPPORTED, "protocol 6");
    pk.n = 0;
    b_u8(&pk, 0x80); b_u8(&pk, 2); b_str(&pk, "NN");
    EXPECT_PICKLE(&pk, 1, NULL, UF_ERR_FORMAT, "STOP");
    free(pk.p);
}

/* One-tensor pickle {'w': tensor(size, stride, offset) on FloatStorage "0" of numel}. */
static void tensor_pickle(buf_t *pk, int64_t numel, int64_t off, int nd, const int64_t *size,
                          const int64_t *stride)
{
    pk->n = 0;
    b_u8(pk, 0x80); b_u8(pk, 2); b_u8(pk, '}');
    pk_str(pk, "w");
    pk_tensor(pk, "FloatStorage", "0", numel, off, nd, size, stride);
    b_str(pk, "s.");
}

/* Storage sizes against their entries, views against their storages, output size. */
static void test_storage_and_views(void)
{
    buf_t pk = {0};
    int64_t sz[2] = {3, 3}, sd[2] = {3, 1};
    /* the storage claims 200 floats, its entry has 9 */
    tensor_pickle(&pk, 200, 0, 2, sz, sd);
    EXPECT_PICKLE(&pk, 9, NULL, UF_ERR_FORMAT, "storage data/0 is 36 bytes");
    /* fits exactly */
    tensor_pickle(&pk, 9, 0, 2, sz, sd);
    uf__tensors ts = {0};
    CHECKF(load_pickle(&pk, 9, NULL, &ts) == UF_OK && ts.n == 1, "%s", uf_errmsg());
    uf__tensors_free(&ts);
    /* offset 1 pushes the last element out */
    tensor_pickle(&pk, 9, 1, 2, sz, sd);
    EXPECT_PICKLE(&pk, 9, NULL, UF_ERR_FORMAT, "reaches element 9");
    /* a stride too long by one */
    int64_t sd2[2] = {4, 1};
    tensor_pickle(&pk, 9, 0, 2, sz, sd2);
    EXPECT_PICKLE(&pk, 9, NULL, UF_ERR_FORMAT, "reaches element");
    /* negative stride, negative size, negative offset */
    int64_t sdn[2] = {3, -1}, szn[2] = {-3, 3};
    tensor_pickle(&pk, 9, 0, 2, sz, sdn);
    EXPECT_PICKLE(&pk, 9, NULL, UF_ERR_FORMAT, "non-negative");
    tensor_pickle(&pk, 9, 0, 2, szn, sd);
    EXPECT_PICKLE(&pk, 9, NULL, UF_ERR_FORMAT, "non-negative");
    tensor_pickle(&pk, 9, -1, 2, sz, sd);
    EXPECT_PICKLE(&pk, 9, NULL, UF_ERR_FORMAT, "offset");
    /* strides whose products overflow 64 bits */
    int64_t szb[2] = {(int64_t)1 << 40, 3}, sdb[2] = {(int64_t)1 << 40, 1};
    tensor_pickle(&pk, 9, 0, 2, szb, sdb);
    EXPECT_PICKLE(&pk, 9, NULL, UF_ERR_FORMAT, "overflow");
    int64_t szc[3] = {(int64_t)1 << 31, (int64_t)1 << 31, (int64_t)1 << 31}, sdc[3] = {0, 0, 0};
    tensor_pickle(&pk, 9, 0, 3, szc, sdc);
    EXPECT_PICKLE(&pk, 9, NULL, UF_ERR_FORMAT, "overflow");
    /* stride 0 makes a tiny storage look huge: the output limit stops it */
    int64_t sze = (int64_t)1 << 25, sde = 0;
    tensor_pickle(&pk, 1, 0, 1, &sze, &sde);
    EXPECT_PICKLE(&pk, 1, NULL, UF_ERR_LIMIT, "data limit");
    /* the same with a small allowance, and an empty view anywhere is fine */
    sze = 1000;
    tensor_pickle(&pk, 1, 0, 1, &sze, &sde);
    CHECKF(load_pickle(&pk, 1, NULL, &ts) == UF_OK && ts.n == 1 && ts.v[0].data[999] == 0,
           "%s", uf_errmsg());
    uf__tensors_free(&ts);
    uf__pth_limits lim = uf__pth_default_limits();
    lim.max_data_bytes = 3000;
    EXPECT_PICKLE(&pk, 1, &lim, UF_ERR_LIMIT, "data limit");
    int64_t sz0[2] = {0, 5}, sd0[2] = {1000, 1000};
    tensor_pickle(&pk, 1, 500, 2, sz0, sd0);
    CHECKF(load_pickle(&pk, 1, NULL, &ts) == UF_OK && ts.n == 1 && ts.v[0].numel == 0, "%s",
           uf_errmsg());
    uf__tensors_free(&ts);
    /* a storage missing from the archive */
    pk.n = 0;
    b_u8(&pk, 0x80); b_u8(&pk, 2); b_u8(&pk, '}');
    pk_str(&pk, "w");
    pk_tensor(&pk, "FloatStorage", "5", 1, 0, 1, &sze, &sde);
    b_str(&pk, "s.");
    EXPECT_PICKLE(&pk, 1, NULL, UF_ERR_FORMAT, "data/5 is missing");
    free(pk.p);
}

/* Opaque objects (argparse.Namespace, unknown reducers) never fail a load. */
static void test_opaque(void)
{
    buf_t pk = {0};
    b_u8(&pk, 0x80); b_u8(&pk, 2); b_u8(&pk, '}'); b_u8(&pk, '(');
    pk_str(&pk, "args");
    pk_global(&pk, "argparse", "Namespace");
    b_str(&pk, ")\x81}(");
    pk_str(&pk, "lr"); b_u8(&pk, 'G'); b_u64(&pk, 0);
    b_str(&pk, "ub");
    pk_str(&pk, "weird");
    pk_global(&pk, "os", "system");
    b_u8(&pk, '('); pk_str(&pk, "rm -rf /"); b_str(&pk, "tR");
    b_str(&pk, "(I1\nNtb"); /* BUILD on the opaque */
    pk_str(&pk, "w");
    int64_t sz = 2, sd = 1;
    pk_tensor(&pk, "FloatStorage", "0", 2, 0, 1, &sz, &sd);
    b_str(&pk, "u.");
    uf__tensors ts = {0};
    uf_status s = load_pickle(&pk, 2, NULL, &ts);
    CHECKF(s == UF_OK, "%s", uf_errmsg());
    CHECK(ts.n == 1 && strcmp(ts.v[0].name, "w") == 0);
    uf__tensors_free(&ts);
    free(pk.p);
}

int main(void)
{
    RUN(test_fixtures);
    RUN(test_mem_equals_path);
    RUN(test_vit_names);
    RUN(test_dtypes);
    RUN(test_legacy);
    RUN(test_not_checkpoint);
    RUN(test_rollback);
    RUN(test_truncation);
    RUN(test_corruption);
    RUN(test_pickle_fuzz);
    RUN(test_zip64);
    RUN(test_zip_errors);
    RUN(test_big_endian);
    RUN(test_protocol0);
    RUN(test_limit_marks_stack);
    RUN(test_limit_memo);
    RUN(test_limit_vm_bytes);
    RUN(test_limit_vm_scaled);
    RUN(test_limit_nesting);
    RUN(test_limit_tensors);
    RUN(test_limit_strings);
    RUN(test_storage_and_views);
    RUN(test_opaque);
    return TEST_DONE();
}
