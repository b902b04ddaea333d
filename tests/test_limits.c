/*
 * test_limits.c - every safety limit that a hostile input file runs into (issue 5), and the
 * test that reaches it. Each limit below is reached by a small input built here (in memory,
 * or in a temporary folder; files "larger" than a limit are sparse, so they cost no disk),
 * and each check asserts the specific status and words of the message, so removing or
 * loosening the limit makes the test fail (the input would then be accepted, or fail later
 * with another status or message).
 *
 * Limit (source)                                        status    test
 * ----------------------------------------------------  --------  ---------------------------
 * Images (src/io/image.c)
 *  width*height <= uf_get_max_pixels() (2^28), PNG      LIMIT     test_image.c test_pixel_limit
 *  the same for JPEG, BMP, PNM; settable limit          LIMIT     test_image.c test_pixel_limit
 *  PNG scanlines <= 1032 x file size (deflate bound)    FORMAT    here: test_image_limits
 *  BMP / PNM pixel data against the bytes present       FORMAT    test_image.c test_robustness
 *  uf_image_new: the pixel limit                        LIMIT     here: test_image_limits
 *  image files <= 2 GiB (uf_image_load)                 LIMIT     here: test_file_sizes
 * Checkpoints (src/io/safetensors.c, src/io/pth.c, src/model/checkpoint.c)
 *  safetensors header length <= file and <= 100 MB      FORMAT    here: test_safetensors_limits
 *  shape entries exact integers <= 2^53                 FORMAT    here: test_safetensors_limits
 *  rank <= 8                                            UNSUPP.   here: test_safetensors_limits
 *  numel * element size: overflow-checked               FORMAT    here: test_safetensors_limits
 *  data_offsets inside the data section (file size)     FORMAT    here: test_safetensors_limits
 *  data_offsets span == numel * element size            FORMAT    here: test_safetensors_limits
 *  .pth / checkpoint files <= 64 GiB                    LIMIT     here: test_file_sizes
 *  pickle MARK depth <= 256, stack <= 2^20              LIMIT     test_pth.c test_limit_marks_stack
 *  pickle memo index < 2^20                             LIMIT     test_pth.c test_limit_memo
 *  pickle object memory <= 1 GiB                        LIMIT     test_pth.c test_limit_vm_bytes
 *  dict nesting <= 64 (recursion), visits <= 2^24       LIMIT     test_pth.c test_limit_nesting
 *  tensors <= 2^18                                      LIMIT     test_pth.c test_limit_tensors
 *  strings / opcodes against the pickle's length        FORMAT    test_pth.c test_limit_strings
 *  storage bytes vs its declared elements; views         FORMAT    test_pth.c test_storage_and_views
 *    inside their storage; stride products overflow
 *  float output <= 64 MiB + 4 x file size               LIMIT     test_pth.c test_storage_and_views
 *  a DEFLATE entry's inflated size <= that budget       LIMIT     here: test_pth_limits
 *  tensor rank in a rebuild <= 64                       FORMAT    here: test_pth_limits
 *  embedding dim <= 2^15, patch <= 1024                 LIMIT     here: test_checkpoint_limits
 *  block index < 4096                                   LIMIT     here: test_checkpoint_limits
 *  MLP width <= 2^18                                    LIMIT     here: test_checkpoint_limits
 *  positional grid <= 4096                              FORMAT    here: test_checkpoint_limits
 *  classes <= 2^24                                      LIMIT     here: test_checkpoint_limits
 *  weight block size: overflow-checked sum              LIMIT     unreachable once the above
 *                                                                 hold (guard only)
 *  NaN / Inf weights                                    NONFINITE test_checkpoint.c test_nonfinite
 * Model files (src/detector/modelfile.c)
 *  files <= 64 GiB                                      LIMIT     here: test_file_sizes
 *  header length <= file and <= 1 MiB                   FORMAT    here: test_model_header_limit;
 *                                                                 test_modelfile.c (beyond file)
 *  JSON nesting (cJSON's 1000)                          FORMAT    test_modelfile.c test_hostile_headers
 *  n_bank <= 2^31, dim <= 65536, path < 4096 bytes,     FORMAT    test_modelfile.c test_hostile_headers
 *    counts <= 2^53, knn <= 1024, every field's range
 *  bank rows x dim against the file size                FORMAT    test_modelfile.c ("2^31 x 65536")
 *  embedded checkpoint section inside the file          FORMAT    test_modelfile.c test_hostile_headers
 *  random backbone <= 2^25 parameters                   LIMIT     test_fuzz_regress.c test_model_random_limit
 *  network input: <= 2^24 patches, buffers overflow-    LIMIT     here: test_input_size_limit
 *    checked (a model's crop/pad_to)
 * Datasets (src/eval/dataset.c)
 *  train.txt / test.txt <= 1 GiB                        LIMIT     here: test_file_sizes
 *  class-name files <= 64 KiB                           LIMIT     here: test_file_sizes
 *  list labels <= 255 bytes                             FORMAT    here: test_dataset_limits
 *  idx image side <= 4096                               LIMIT     here: test_dataset_limits
 *  idx payload <= 2^32 bytes (overflow-checked)         LIMIT     here: test_dataset_limits
 *  idx payload vs file size, gzip ratio <= 1032         FORMAT    test_dataset.c test_broken
 *  CIFAR records vs file size                           FORMAT    test_dataset.c test_broken
 *  class folders <= 100000                              LIMIT     here: test_dataset_limits
 *                                                                 (on tmpfs, else skipped)
 *  mask size (uf_dataset_load_mask) vs pixel limit      LIMIT     test_dataset.c test_args
 *  categories < 2^31, records x size overflow           LIMIT     unreachable (guard only)
 * Fitting
 *  bank <= 2^31 patches                                 LIMIT     unreachable in a test (needs
 *                                                                 2^31 patches; guard only)
 * Size arithmetic (src/core/sizes.c)
 *  uf__mul_ok / uf__add_ok at the edges                 -         here: test_size_arithmetic
 */
#include "bytebuf.h"
#include "harness.h"
#include "core/internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <zlib.h>

static char g_dir[] = "/tmp/uf_limits_XXXXXX";

/* Path of a scratch file in this run's folder. */
#define tpath(name) th_path(g_dir, name)

static bool write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = fwrite(data, 1, len, f) == len;
    return fclose(f) == 0 && ok;
}

/* A sparse file of size bytes (no data blocks), or false if the file system refuses. */
static bool sparse_file(const char *path, uint64_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return false;
    bool ok = ftruncate(fd, (off_t)size) == 0;
    close(fd);
    if (!ok) unlink(path);
    return ok;
}

static bool msg_has(const char *needle) { return strstr(uf_errmsg(), needle) != NULL; }

/* The status must be `want` and the message must contain `needle`. */
#define EXPECT(expr, want, needle)                                                       \
    do {                                                                                 \
        uf_status s_ = (expr);                                                           \
        CHECKF(s_ == (want) && msg_has(needle), "%s: got %s \"%s\", expected %s with \"%s\"", \
               #expr, uf_status_str(s_), uf_errmsg(), uf_status_str(want), needle);      \
    } while (0)

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_be32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (24 - 8 * i));
}

/* ---- files larger than the readers accept ---------------------------------------------- */

static void test_file_sizes(void)
{
    uf_image *img = NULL;
    uf_backbone *bb = NULL;
    uf_model *m = NULL;
    uf_dataset *ds = NULL;
    uf__tensors ts = {0};
    const uint64_t GiB = (uint64_t)1 << 30;
    if (!sparse_file(tpath("big.png"), 2 * GiB + 1)) SKIP("cannot make sparse files here");

    EXPECT(uf_image_load(tpath("big.png"), &img), UF_ERR_LIMIT, "big.png: file too large");
    CHECK(img == NULL);
    unlink(tpath("big.png"));

    REQUIRE(sparse_file(tpath("big.safetensors"), 64 * GiB + 1));
    EXPECT(uf_backbone_load(tpath("big.safetensors"), NULL, &bb), UF_ERR_LIMIT,
           "big.safetensors: file too large");
    CHECK(bb == NULL);
    unlink(tpath("big.safetensors"));

    REQUIRE(sparse_file(tpath("big.pth"), 64 * GiB + 1));
    EXPECT(uf__pth_load(tpath("big.pth"), &ts), UF_ERR_LIMIT, "big.pth: file too large");
    CHECK(ts.n == 0);
    unlink(tpath("big.pth"));

    REQUIRE(sparse_file(tpath("big.ufm"), 64 * GiB + 1));
    EXPECT(uf_model_load(tpath("big.ufm"), NULL, &m), UF_ERR_LIMIT, "big.ufm: file too large");
    CHECK(m == NULL);
    unlink(tpath("big.ufm"));

    /* a list dataset whose train.txt is just over 1 GiB */
    REQUIRE(mkdir(tpath("list"), 0755) == 0);
    REQUIRE(sparse_file(tpath("list/train.txt"), GiB + 1));
    REQUIRE(write_file(tpath("list/test.txt"), "x.png 0\n", 8));
    EXPECT(uf_dataset_open(UF_DATASET_LIST, tpath("list"), &ds), UF_ERR_LIMIT,
           "train.txt: file too large");
    CHECK(ds == NULL);
    unlink(tpath("list/train.txt"));
    unlink(tpath("list/test.txt"));
    rmdir(tpath("list"));

    /* CIFAR-10 class names (read before any batch file) just over 64 KiB */
    REQUIRE(mkdir(tpath("cifar"), 0755) == 0);
    REQUIRE(mkdir(tpath("cifar/cifar-10-batches-bin"), 0755) == 0);
    REQUIRE(sparse_file(tpath("cifar/cifar-10-batches-bin/batches.meta.txt"), 65537));
    EXPECT(uf_dataset_open(UF_DATASET_CIFAR10, tpath("cifar"), &ds), UF_ERR_LIMIT,
           "batches.meta.txt: file too large");
    CHECK(ds == NULL);
    unlink(tpath("cifar/cifar-10-batches-bin/batches.meta.txt"));
    rmdir(tpath("cifar/cifar-10-batches-bin"));
    rmdir(tpath("cifar"));
}

/* ---- safetensors ------------------------------------------------------------------------ */

/* A safetensors image: header text, then `data` bytes of zeros. */
static uint8_t *st_image(const char *hdr, size_t data, size_t *len)
{
    size_t hl = strlen(hdr);
    *len = 8 + hl + data;
    uint8_t *b = calloc(1, *len);
    if (!b) return NULL;
    put_le64(b, hl);
    memcpy(b + 8, hdr, hl);
    return b;
}

static void expect_st(const char *hdr, size_t data, uf_status want, const char *needle)
{
    size_t len;
    uint8_t *b = st_image(hdr, data, &len);
    REQUIRE(b != NULL);
    uf__tensors ts = {0};
    uf_status s = uf__safetensors_load_mem_ex(b, len, "h.safetensors", &ts);
    CHECKF(s == want && (s == UF_OK || (msg_has(needle) && msg_has("h.safetensors"))),
           "%s: got %s \"%s\", expected %s with \"%s\"", hdr, uf_status_str(s), uf_errmsg(),
           uf_status_str(want), needle);
    CHECK(s != UF_OK || ts.n == 1);
    uf__tensors_free(&ts);
    free(b);
}

static void test_safetensors_limits(void)
{
    /* control: a valid one-float file loads */
    expect_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, UF_OK, "");
    /* numel overflow: 2^53 x 2^12 elements wraps to 0 in 64 bits, and would match [0, 0] */
    expect_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[9007199254740992,4096],\"data_offsets\":[0,0]}}",
              0, UF_ERR_FORMAT, "tensor 'a': shape overflows");
    /* a shape entry beyond 2^53 (not an exact integer in JSON) */
    expect_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,4]}}", 4,
              UF_ERR_FORMAT, "tensor 'a': bad shape entry");
    expect_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[18014398509481984],\"data_offsets\":[0,4]}}",
              4, UF_ERR_FORMAT, "tensor 'a': bad shape entry");
    /* rank 9 (8 is the most) */
    expect_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}",
              4, UF_ERR_UNSUPPORTED, "9 dimensions (max 8)");
    expect_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}",
              4, UF_OK, "");
    /* a tensor of 2^30 floats in a file of 4 data bytes: refused before any allocation */
    expect_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[1073741824],\"data_offsets\":[0,4294967296]}}",
              4, UF_ERR_FORMAT, "beyond the data section (4 bytes; file truncated?)");
    /* offsets inside the file but not matching shape x dtype */
    expect_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 8,
              UF_ERR_FORMAT, "data_offsets span 4 bytes, shape and dtype F32 need 8");

    /* header length: beyond the file, and above 100 MB in a file that holds it */
    uint8_t f[16] = {0};
    put_le64(f, 9);
    memcpy(f + 8, "{}", 2);
    uf__tensors ts = {0};
    EXPECT(uf__safetensors_load_mem(f, 10, &ts), UF_ERR_FORMAT, "header length 9 does not fit");
    const uint64_t big = ((uint64_t)100 << 20) + 1; /* ST_MAX_HEADER + 1 */
    const char *p = tpath("hdr.safetensors");
    REQUIRE(sparse_file(p, 8 + big + 8));
    int fd = open(p, O_WRONLY);
    REQUIRE(fd >= 0);
    uint8_t h[8];
    put_le64(h, big);
    CHECK(pwrite(fd, h, 8, 0) == 8 && pwrite(fd, "{}", 2, 8) == 2);
    close(fd);
    /* without the cap, the 100 MB of NULs after "{}" would be read as padding and the
     * file accepted */
    EXPECT(uf__safetensors_load(p, &ts), UF_ERR_FORMAT, "header length 104857601");
    CHECK(ts.n == 0);
    unlink(p);
}

/* ---- checkpoint architecture ----------------------------------------------------------- */

/* Append a zero tensor (calloc: large ones cost no memory until touched). */
static bool push(uf__tensors *ts, const char *name, int ndim, const int64_t *shape)
{
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    float *d = calloc(n ? n : 1, sizeof(float));
    char *nm = strdup(name);
    return d && nm && uf__tensors_push(ts, nm, ndim, shape, d) == UF_OK;
}

/* Build the tensors of a minimal ViT description and run the architecture reader: patch
 * [D][3][P][P], fc1 [M][D], pos_embed [1][1+g*g][D], optional head [C][D] and one extra
 * tensor name (e.g. a far block index). */
static uf_status arch(int64_t D, int64_t P, int64_t M, int64_t g, int64_t C, const char *extra)
{
    uf__tensors ts = {0};
    bool ok = push(&ts, "patch_embed.proj.weight", 4, (const int64_t[]){D, 3, P, P}) &&
              push(&ts, "blocks.0.mlp.fc1.weight", 2, (const int64_t[]){M, D}) &&
              push(&ts, "pos_embed", 3, (const int64_t[]){1, 1 + g * g, D}) &&
              (!C || push(&ts, "head.weight", 2, (const int64_t[]){C, D})) &&
              (!extra || push(&ts, extra, 1, (const int64_t[]){1}));
    uf_status s = UF_ERR_NOMEM;
    if (ok) {
        uf_backbone_params p = uf_backbone_default_params();
        p.heads = 1;
        uf__vit_weights w;
        s = uf__vit_weights_from_tensors(&ts, &p, &w);
        if (s == UF_OK) uf__vit_weights_free(&w);
    }
    uf__tensors_free(&ts);
    return s;
}

static void test_checkpoint_limits(void)
{
    /* at each limit the reader goes on (and fails later, on the first tensor this minimal
     * set lacks); one past it, it stops with the limit's message */
    EXPECT(arch(1, 1, 1, 1, 0, NULL), UF_ERR_FORMAT, "missing tensor 'patch_embed.proj.bias'");
    EXPECT(arch(32768, 1, 1, 1, 0, NULL), UF_ERR_FORMAT, "missing tensor 'patch_embed.proj.bias'");
    EXPECT(arch(32769, 1, 1, 1, 0, NULL), UF_ERR_LIMIT,
           "patch_embed.proj.weight: [32769,3,1,1] exceeds the size limits");
    EXPECT(arch(1, 1024, 1, 1, 0, NULL), UF_ERR_FORMAT, "missing tensor 'patch_embed.proj.bias'");
    EXPECT(arch(1, 1025, 1, 1, 0, NULL), UF_ERR_LIMIT, "exceeds the size limits");
    EXPECT(arch(1, 1, 1, 1, 0, "blocks.4095.norm1.weight"), UF_ERR_FORMAT, "missing block 1");
    EXPECT(arch(1, 1, 1, 1, 0, "blocks.4096.norm1.weight"), UF_ERR_LIMIT,
           "blocks.4096.norm1.weight: block index beyond 4096");
    EXPECT(arch(1, 1, 262144, 1, 0, NULL), UF_ERR_FORMAT, "missing tensor 'patch_embed.proj.bias'");
    EXPECT(arch(1, 1, 262145, 1, 0, NULL), UF_ERR_LIMIT,
           "blocks.0.mlp.fc1.weight: MLP width 262145 too large");
    EXPECT(arch(1, 1, 1, 4096, 0, NULL), UF_ERR_FORMAT, "missing tensor 'patch_embed.proj.bias'");
    EXPECT(arch(1, 1, 1, 4097, 0, NULL), UF_ERR_FORMAT, "pos_embed: expected [1,1+g*g,1]");
    EXPECT(arch(1, 1, 1, 1, 16777216, NULL), UF_ERR_FORMAT, "missing tensor 'patch_embed.proj.bias'");
    EXPECT(arch(1, 1, 1, 1, 16777217, NULL), UF_ERR_LIMIT, "head.weight: 16777217 classes");
}

/* ---- .pth --------------------------------------------------------------------------------- */

/* One zip entry: name, uncompressed bytes, and whether to DEFLATE them. */
typedef struct {
    const char *name;
    const void *data;
    size_t len;
    int deflate;
} zin;

/* A zip archive of the entries (STORED or raw DEFLATE), as torch.save's reader expects. */
static buf_t make_zip(const zin *e, int n)
{
    buf_t b = {0};
    uint32_t off[8], crc[8], csz[8];
    uint8_t *cdata[8];
    for (int i = 0; i < n; i++) {
        crc[i] = (uint32_t)crc32(0L, e[i].data, (uInt)e[i].len);
        cdata[i] = (uint8_t *)e[i].data;
        csz[i] = (uint32_t)e[i].len;
        if (e[i].deflate) {
            uLong cap = compressBound((uLong)e[i].len) + 64;
            cdata[i] = malloc(cap);
            z_stream zs;
            memset(&zs, 0, sizeof zs);
            if (!cdata[i] || deflateInit2(&zs, 9, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
                abort();
            zs.next_in = (Bytef *)e[i].data;
            zs.avail_in = (uInt)e[i].len;
            zs.next_out = cdata[i];
            zs.avail_out = (uInt)cap;
            if (deflate(&zs, Z_FINISH) != Z_STREAM_END) abort();
            csz[i] = (uint32_t)zs.total_out;
            deflateEnd(&zs);
        }
        off[i] = (uint32_t)b.n;
        b_u32(&b, 0x04034b50u);
        b_u16(&b, 20); b_u16(&b, 0); b_u16(&b, e[i].deflate ? 8 : 0); b_u16(&b, 0); b_u16(&b, 0);
        b_u32(&b, crc[i]); b_u32(&b, csz[i]); b_u32(&b, (uint32_t)e[i].len);
        b_u16(&b, (unsigned)strlen(e[i].name)); b_u16(&b, 0);
        b_str(&b, e[i].name);
        b_put(&b, cdata[i], csz[i]);
    }
    uint32_t cd = (uint32_t)b.n;
    for (int i = 0; i < n; i++) {
        b_u32(&b, 0x02014b50u);
        b_u16(&b, 20); b_u16(&b, 20); b_u16(&b, 0); b_u16(&b, e[i].deflate ? 8 : 0);
        b_u16(&b, 0); b_u16(&b, 0);
        b_u32(&b, crc[i]); b_u32(&b, csz[i]); b_u32(&b, (uint32_t)e[i].len);
        b_u16(&b, (unsigned)strlen(e[i].name)); b_u16(&b, 0); b_u16(&b, 0);
        b_u16(&b, 0); b_u16(&b, 0); b_u32(&b, 0); b_u32(&b, off[i]);
        b_str(&b, e[i].name);
        if (e[i].deflate) free(cdata[i]);
    }
    uint32_t cds = (uint32_t)b.n - cd;
    b_u32(&b, 0x06054b50u); b_u16(&b, 0); b_u16(&b, 0); b_u16(&b, (unsigned)n);
    b_u16(&b, (unsigned)n); b_u32(&b, cds); b_u32(&b, cd); b_u16(&b, 0);
    return b;
}

/* Pickle (protocol 2) of {"w": tensor of `nd` dims of size 1 on FloatStorage "0" of
 * `numel` elements}, as torch.save writes it. */
static buf_t pk_dict_tensor(int nd, int64_t numel)
{
    buf_t b = {0};
    b_u8(&b, 0x80); b_u8(&b, 2); b_u8(&b, '}');
    b_u8(&b, 'X'); b_u32(&b, 1); b_str(&b, "w");
    b_str(&b, "ctorch._utils\n_rebuild_tensor_v2\n");
    b_u8(&b, '('); b_u8(&b, '(');
    b_u8(&b, 'X'); b_u32(&b, 7); b_str(&b, "storage");
    b_str(&b, "ctorch\nFloatStorage\n");
    b_u8(&b, 'X'); b_u32(&b, 1); b_str(&b, "0");
    b_u8(&b, 'X'); b_u32(&b, 3); b_str(&b, "cpu");
    b_u8(&b, 'J'); b_u32(&b, (uint32_t)numel);
    b_u8(&b, 't'); b_u8(&b, 'Q');
    b_u8(&b, 'J'); b_u32(&b, 0); /* storage offset */
    for (int t = 0; t < 2; t++) { /* size, then stride: all ones */
        b_u8(&b, '(');
        for (int i = 0; i < nd; i++) { b_u8(&b, 'J'); b_u32(&b, 1); }
        b_u8(&b, 't');
    }
    b_u8(&b, 0x89); /* requires_grad False */
    b_str(&b, "ccollections\nOrderedDict\n");
    b_u8(&b, ')'); b_u8(&b, 'R'); b_u8(&b, 't'); b_u8(&b, 'R');
    b_str(&b, "s.");
    return b;
}

static uf_status load_pth(int nd, size_t storage_floats, int deflate, size_t max_data,
                          uf__tensors *ts)
{
    buf_t pk = pk_dict_tensor(nd, (int64_t)storage_floats);
    float *st = calloc(storage_floats, sizeof(float));
    if (!st) abort();
    st[0] = 1.5f;
    zin e[3] = {{"archive/data.pkl", pk.p, pk.n, 0},
                {"archive/data/0", st, storage_floats * sizeof(float), deflate},
                {"archive/version", "3\n", 2, 0}};
    buf_t z = make_zip(e, 3);
    uf__pth_limits lim = uf__pth_default_limits();
    lim.max_data_bytes = max_data;
    uf_status s = uf__pth_load_mem_ex(z.p, z.n, "h.pth", &lim, ts);
    free(z.p);
    free(st);
    free(pk.p);
    return s;
}

static void test_pth_limits(void)
{
    uf__tensors ts = {0};
    /* control: the DEFLATE'd storage of 1 Mi floats (4 MiB) loads within a 5 MiB budget */
    uf_status s = load_pth(2, (size_t)1 << 20, 1, (size_t)5 << 20, &ts);
    CHECKF(s == UF_OK && ts.n == 1 && ts.v[0].numel == 1 && ts.v[0].data[0] == 1.5f, "%s",
           uf_errmsg());
    uf__tensors_free(&ts);
    /* a zip bomb: a few KB that inflate to 4 MiB, over a 1 MiB budget - refused before
     * inflating, although the tensor itself is one float */
    EXPECT(load_pth(2, (size_t)1 << 20, 1, (size_t)1 << 20, &ts), UF_ERR_LIMIT,
           "zip entry archive/data/0 inflates to 4194304 bytes, over the data limit");
    CHECK(ts.n == 0);
    /* tensor rank: 64 passes the rebuild (and is refused later, as above 8), 65 does not */
    EXPECT(load_pth(64, 4, 0, 0, &ts), UF_ERR_UNSUPPORTED, "tensor w has 64 dimensions (at most 8)");
    uf__tensors_free(&ts);
    EXPECT(load_pth(65, 4, 0, 0, &ts), UF_ERR_FORMAT,
           "tensor on storage data/0 has 65 dimensions");
    CHECK(ts.n == 0);
}

/* ---- model files ------------------------------------------------------------------------ */

/* A model file whose header length field is 1 MiB + 1 (inside the file, which holds it):
 * refused as out of range without reading it. */
static void test_model_header_limit(void)
{
    const size_t hl = ((size_t)1 << 20) + 1, len = 24 + hl + 40;
    uint8_t *b = calloc(1, len);
    REQUIRE(b != NULL);
    memcpy(b, "UFMODEL", 8);
    put_le32(b + 8, 1);
    put_le64(b + 16, hl);
    memset(b + 24, ' ', hl);
    b[24] = '{', b[25] = '}'; /* valid JSON followed by blanks: only the cap refuses it */
    bool ok = write_file(tpath("hdr.ufm"), b, len);
    free(b);
    REQUIRE(ok);
    uf_model *m = NULL;
    EXPECT(uf_model_load(tpath("hdr.ufm"), NULL, &m), UF_ERR_FORMAT,
           "hdr.ufm: header length 1048577 out of range");
    CHECK(m == NULL);
    unlink(tpath("hdr.ufm"));
}

/* A crop (from a model's header, or the caller) whose patch grid or buffers exceed what
 * the extractor allows: refused before allocating. */
static void test_input_size_limit(void)
{
    uf_vit_config c = {.dim = 8, .depth = 2, .heads = 2, .patch = 2, .mlp_dim = 16, .grid = 2,
                       .seed = 1};
    uf_backbone *bb = NULL;
    REQUIRE_OK(uf_backbone_random(&c, &bb));
    uf_detector_params p = uf_detector_default_params();
    p.layer_first = 1, p.layer_last = 2;
    p.pre.resize = 0;
    uf_fitter *f = NULL;
    p.pre.crop = 8194; /* above the input side limit (and (8194 / 2)^2 patches > 2^24) */
    EXPECT(uf_fitter_new(bb, &p, &f), UF_ERR_ARG, "crop 8194 is above the limit of 8192");
    CHECK(f == NULL);
    uf_fitter_free(f);
    p.pre.crop = 16; /* control */
    REQUIRE_OK(uf_fitter_new(bb, &p, &f));
    uf_fitter_free(f);
    uf_backbone_free(bb);
}

/* ---- datasets --------------------------------------------------------------------------- */

/* MNIST layout in folder dir whose train-images file has the given idx3 dims. */
static uf_status open_idx(const char *dir, uint32_t n, uint32_t rows, uint32_t cols)
{
    static const char *const names[4] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
    char p[600];
    mkdir(dir, 0755);
    for (int i = 0; i < 4; i++) {
        uint8_t h[16] = {0};
        put_be32(h, i % 2 ? 0x801u : 0x803u);
        put_be32(h + 4, i == 0 ? n : 1);
        put_be32(h + 8, i == 0 ? rows : 28);
        put_be32(h + 12, i == 0 ? cols : 28);
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        if (!write_file(p, h, i % 2 ? 9 : 16)) return UF_ERR_IO;
    }
    uf_dataset *ds = NULL;
    uf_status s = uf_dataset_open(UF_DATASET_MNIST, dir, &ds);
    uf_dataset_free(ds);
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
    return s;
}

static void test_dataset_limits(void)
{
    /* idx: an image side of 4097 (rows or cols); 2^20 images of 4096 x 4096 (2^44 bytes) */
    EXPECT(open_idx(tpath("idx1"), 1, 28, 4097), UF_ERR_LIMIT,
           "train-images-idx3-ubyte: image side 4097 above the limit 4096");
    EXPECT(open_idx(tpath("idx2"), (uint32_t)1 << 20, 4096, 4096), UF_ERR_LIMIT,
           "train-images-idx3-ubyte: header declares more than 4294967296 bytes");
    /* control: within the limits, the (too short) file is refused for its size instead */
    EXPECT(open_idx(tpath("idx3"), 256, 4096, 4096), UF_ERR_FORMAT,
           "train-images-idx3-ubyte: size 16, but its header declares");

    /* list labels: 255 bytes is a label (a defect type), 256 is refused */
    char cwd[512], line[1024], lab[300];
    REQUIRE(getcwd(cwd, sizeof cwd) != NULL);
    REQUIRE(mkdir(tpath("lst"), 0755) == 0);
    snprintf(line, sizeof line, "%s/tests/data/dataset/list/imgs/c.png\n", cwd);
    REQUIRE(write_file(tpath("lst/train.txt"), line, strlen(line)));
    for (int n = 255; n <= 256; n++) {
        memset(lab, 'x', (size_t)n);
        lab[n] = 0;
        snprintf(line, sizeof line, "%s/tests/data/dataset/list/imgs/d.png %s\n", cwd, lab);
        REQUIRE(write_file(tpath("lst/test.txt"), line, strlen(line)));
        uf_dataset *ds = NULL;
        uf_status s = uf_dataset_open(UF_DATASET_LIST, tpath("lst"), &ds);
        if (n == 255) CHECKF(s == UF_OK, "label of 255 bytes: %s", uf_errmsg());
        else EXPECT(s, UF_ERR_FORMAT, "test.txt:1: bad label");
        uf_dataset_free(ds);
    }
    unlink(tpath("lst/train.txt"));
    unlink(tpath("lst/test.txt"));
    rmdir(tpath("lst"));

    /* 100001 class folders: made on tmpfs (/dev/shm), where that takes about 2 s; on a disk
     * it would take much longer, so the check is skipped without tmpfs */
    struct statvfs vs;
    char root[] = "/dev/shm/uf_limits_XXXXXX";
    if (statvfs("/dev/shm", &vs) != 0 || vs.f_favail < 300000 || !mkdtemp(root)) {
        fprintf(stderr, "    (no usable /dev/shm: the 100000 class folders limit is not "
                        "checked)\n");
        return;
    }
    char p[600];
    snprintf(p, sizeof p, "%s/train", root);
    bool ok = mkdir(p, 0755) == 0;
    snprintf(p, sizeof p, "%s/val", root);
    ok = ok && mkdir(p, 0755) == 0;
    for (int i = 0; i < 100001 && ok; i++) {
        snprintf(p, sizeof p, "%s/train/c%06d", root, i);
        ok = mkdir(p, 0755) == 0;
    }
    if (ok) {
        uf_dataset *ds = NULL;
        EXPECT(uf_dataset_open(UF_DATASET_IMAGEFOLDER, root, &ds), UF_ERR_LIMIT,
               "train: 100001 class folders (expected 1..100000)");
        CHECK(ds == NULL);
        snprintf(p, sizeof p, "%s/train/c100000", root);
        rmdir(p);
        /* at 100000 the folders are accepted (and the empty ones refused later) */
        uf_status s = uf_dataset_open(UF_DATASET_IMAGEFOLDER, root, &ds);
        CHECKF(s != UF_ERR_LIMIT, "100000 classes: %s", uf_errmsg());
        uf_dataset_free(ds);
    } else {
        fprintf(stderr, "    (cannot make 100001 folders in %s: %s)\n", root, strerror(errno));
    }
    th_rm_tree(root);
}

/* ---- images ------------------------------------------------------------------------------ */

static void test_image_limits(void)
{
    uf_image *img = NULL;
    /* uf_image_new obeys the pixel limit */
    EXPECT(uf_image_new(32768, 16384, &img), UF_ERR_LIMIT, "32768x16384 pixels exceeds the limit");
    CHECK(img == NULL);
    uf_set_max_pixels(100);
    REQUIRE_OK(uf_image_new(10, 10, &img));
    uf_image_free(img);
    img = NULL;
    EXPECT(uf_image_new(10, 11, &img), UF_ERR_LIMIT, "10x11 pixels exceeds the limit of 100");
    uf_set_max_pixels(0);

    /* a 1x10000 image resized by its shorter side to 256 would be 256x2560000: the message
     * gives the real size and cause, not the resampler's internal allocation (issue 12) */
    REQUIRE_OK(uf_image_new(1, 10000, &img));
    float *px = malloc(3 * 224 * 224 * sizeof *px);
    REQUIRE(px != NULL);
    EXPECT(uf_preprocess_image(img, NULL, px), UF_ERR_LIMIT,
           "image of 1x10000 pixels is too elongated: resizing its shorter side to 256 would "
           "make it 256x2560000");
    free(px);
    uf_image_free(img);
    img = NULL;

    /* a PNG claiming 16000 x 16000 RGB (256 Mpx, under the pixel limit) in 57 bytes: the
     * scanlines could never come out of so little deflate data, so it is refused as
     * truncated before the 768 MB image is allocated */
    uint8_t png[57] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};
    put_be32(png + 8, 13);
    memcpy(png + 12, "IHDR", 4);
    put_be32(png + 16, 16000);
    put_be32(png + 20, 16000);
    png[24] = 8, png[25] = 2;
    put_be32(png + 29, (uint32_t)crc32(0L, png + 12, 17));
    put_be32(png + 33, 0); /* an empty IDAT */
    memcpy(png + 37, "IDAT", 4);
    put_be32(png + 41, (uint32_t)crc32(0L, png + 37, 4));
    put_be32(png + 45, 0);
    memcpy(png + 49, "IEND", 4);
    put_be32(png + 53, (uint32_t)crc32(0L, png + 49, 4));
    EXPECT(uf_image_decode(png, sizeof png, &img), UF_ERR_FORMAT,
           "PNG: truncated (16000x16000 image in 57 bytes)");
    CHECK(img == NULL);
}

/* ---- overflow-safe size arithmetic -------------------------------------------------------- */

static void test_size_arithmetic(void)
{
    size_t r = 0;
    CHECK(uf__mul_ok(0, SIZE_MAX, &r) && r == 0);
    CHECK(uf__mul_ok(SIZE_MAX, 1, &r) && r == SIZE_MAX);
    CHECK(uf__mul_ok((size_t)1 << 32, ((size_t)1 << 32) - 1, &r));
    CHECK(!uf__mul_ok((size_t)1 << 32, (size_t)1 << 32, &r));
    CHECK(!uf__mul_ok(SIZE_MAX / 3 + 1, 3, &r));
    CHECK(uf__mul_ok(SIZE_MAX / 3, 3, &r) && r == SIZE_MAX / 3 * 3);
    CHECK(uf__add_ok(SIZE_MAX - 1, 1, &r) && r == SIZE_MAX);
    CHECK(!uf__add_ok(SIZE_MAX, 1, &r));
    CHECK(!uf__add_ok(SIZE_MAX / 2 + 1, SIZE_MAX / 2 + 1, &r));
}

int main(void)
{
    if (!mkdtemp(g_dir)) {
        fprintf(stderr, "cannot create %s\n", g_dir);
        return 1;
    }
    RUN(test_file_sizes);
    RUN(test_safetensors_limits);
    RUN(test_checkpoint_limits);
    RUN(test_pth_limits);
    RUN(test_model_header_limit);
    RUN(test_input_size_limit);
    RUN(test_dataset_limits);
    RUN(test_image_limits);
    RUN(test_size_arithmetic);
    th_rm_tree(g_dir);
    return TEST_DONE();
}
