/*
 * pth.c - reader for PyTorch checkpoints written by torch.save (zip format, PyTorch >= 1.6).
 *
 * Such a file is a zip archive holding `<archive>/data.pkl` (a pickle of the saved object),
 * one entry `<archive>/data/<key>` per storage (raw little-endian elements), `version` and
 * maybe `byteorder`. We read it in three steps, all bounded and checked against the input:
 *
 *  1. zip: the end-of-central-directory record (and its ZIP64 variants) locates the central
 *     directory; every entry's local header gives where its data starts. Entries are STORED
 *     by torch, DEFLATE (zlib) is accepted too; CRC-32s are verified on the entries we use.
 *  2. pickle: a small virtual machine runs the opcodes of protocols 0-5 over tagged objects.
 *     Only what torch needs is given meaning (dicts, OrderedDict, _rebuild_tensor_v2,
 *     _rebuild_parameter, persistent ids naming storages); any other global (argparse
 *     Namespace, numpy scalars, ...) becomes an opaque object so that whole training
 *     checkpoints load. Nothing is executed. Objects live in an arena freed at the end.
 *  3. walk: dicts are followed from the root (keys joined with '.'); every float tensor
 *     (f32, f64, f16, bf16) found is copied out as contiguous float32.
 *
 * Why our own pickle VM rather than a library: there is no maintained C unpickler in Debian,
 * and the subset is small. Safety: every length is checked against the bytes left, the
 * stack, marks, memo, object memory, walk depth, tensor count and output size have limits
 * (uf__pth_limits), and tensor views are checked to stay inside their storage.
 */
#include "core/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* ------------------------------------------------------------------------------------ */
/* Limits                                                                               */
/* ------------------------------------------------------------------------------------ */

#define PTH_MAX_FILE ((size_t)64 << 30) /* 64 GiB: refuse bigger files outright */
#define PTH_MAX_NDIM 64                 /* dims accepted in a tensor rebuild    */

uf__pth_limits uf__pth_default_limits(void)
{
    uf__pth_limits l;
    l.max_marks = 256;
    l.max_stack = (size_t)1 << 20;
    l.max_memo = (size_t)1 << 20;
    l.max_vm_bytes = (size_t)1 << 30;
    l.max_depth = 64;
    l.max_visits = (size_t)1 << 24;
    l.max_tensors = (size_t)1 << 18;
    l.max_data_bytes = 0; /* 64 MiB + 4 x input length */
    return l;
}

/* ------------------------------------------------------------------------------------ */
/* Little helpers                                                                       */
/* ------------------------------------------------------------------------------------ */


/* Clamp a length for "%.*s" in messages. */
static int msglen(size_t n) { return n > 200 ? 200 : (int)n; }

/* ------------------------------------------------------------------------------------ */
/* Zip archive                                                                          */
/* ------------------------------------------------------------------------------------ */

typedef struct zent {
    const char *name;  /* points into the input, not NUL-terminated */
    size_t nlen;
    uint16_t method;   /* 0 STORED, 8 DEFLATE, others refused on use */
    uint32_t crc;
    uint64_t csize, usize, data_off; /* data_off: absolute offset of the (compressed) data */
    uint8_t *inflated; /* [usize] owned, DEFLATE entries once used */
    bool checked;      /* CRC verified */
} zent;

typedef struct zipr {
    const uint8_t *buf; /* [len] the whole input */
    size_t len;
    zent *e;            /* [n] sorted by name */
    size_t n;
    const char *prefix; /* "<archive>/" of data.pkl, points into buf */
    size_t plen;
} zipr;

static int zent_cmp_name(const char *a, size_t an, const char *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    if (c) return c;
    return an < bn ? -1 : an > bn;
}

static int zent_cmp(const void *a, const void *b)
{
    const zent *x = a, *y = b;
    return zent_cmp_name(x->name, x->nlen, y->name, y->nlen);
}

/* Entry named prefix + mid + key, or NULL. */
static zent *zip_find(const zipr *z, const char *mid, const char *key, size_t klen)
{
    size_t ml = strlen(mid), n = z->plen + ml + klen;
    char stackbuf[256];
    char *name = n <= sizeof stackbuf ? stackbuf : malloc(n);
    if (!name) return NULL;
    memcpy(name, z->prefix, z->plen);
    memcpy(name + z->plen, mid, ml);
    memcpy(name + z->plen + ml, key, klen);
    size_t lo = 0, hi = z->n;
    zent *hit = NULL;
    while (lo < hi) { /* binary search over the sorted entries */
        size_t mi = lo + (hi - lo) / 2;
        int c = zent_cmp_name(z->e[mi].name, z->e[mi].nlen, name, n);
        if (c == 0) { hit = &z->e[mi]; break; }
        if (c < 0) lo = mi + 1;
        else hi = mi;
    }
    if (name != stackbuf) free(name);
    return hit;
}

static void zip_free(zipr *z)
{
    for (size_t i = 0; i < z->n; i++) free(z->e[i].inflated);
    free(z->e);
    memset(z, 0, sizeof *z);
}

/* Read the zip64 extended-information extra field of a central header: the values
 * saturated (0xFFFFFFFF) in the fixed header follow in this order. */
static uf_status zip64_extra(const uint8_t *x, size_t xlen, uint64_t *usize, uint64_t *csize,
                             uint64_t *lho)
{
    while (xlen >= 4) {
        uint16_t id = uf__le16(x), sz = uf__le16(x + 2);
        if ((size_t)sz > xlen - 4) return uf__err(UF_ERR_FORMAT, "truncated zip extra field");
        if (id == 1) {
            const uint8_t *q = x + 4;
            size_t left = sz;
            uint64_t *fields[3] = {usize, csize, lho};
            for (int i = 0; i < 3; i++) {
                if (*fields[i] != 0xFFFFFFFFu) continue;
                if (left < 8) return uf__err(UF_ERR_FORMAT, "truncated ZIP64 extra field");
                *fields[i] = uf__le64(q);
                q += 8;
                left -= 8;
            }
            return UF_OK;
        }
        x += 4 + sz;
        xlen -= 4 + (size_t)sz;
    }
    return UF_OK;
}

/* Parse the central directory of buf[len] into z (entries sorted by name) and locate
 * data.pkl's folder. Every offset and size is checked against len. */
static uf_status zip_open(zipr *z, const uint8_t *buf, size_t len)
{
    memset(z, 0, sizeof *z);
    z->buf = buf;
    z->len = len;
    if (len < 22) return uf__err(UF_ERR_FORMAT, "truncated zip (%zu bytes)", len);

    /* End-of-central-directory record: scan back over at most a 64 KiB comment. */
    size_t eocd = SIZE_MAX, stop = len - 22 > 65535 ? len - 22 - 65535 : 0;
    for (size_t p = len - 22 + 1; p-- > stop;) {
        if (uf__le32(buf + p) == 0x06054b50u && p + 22 + uf__le16(buf + p + 20) <= len) {
            eocd = p;
            break;
        }
    }
    if (eocd == SIZE_MAX)
        return uf__err(UF_ERR_FORMAT, "truncated zip: no end-of-central-directory record");
    uint64_t n = uf__le16(buf + eocd + 10), cdsize = uf__le32(buf + eocd + 12),
             cdoff = uf__le32(buf + eocd + 16);
    size_t cd_limit = eocd; /* the central directory ends before this */

    /* ZIP64: a locator just before the EOCD points at the ZIP64 EOCD record. */
    if (eocd >= 20 && uf__le32(buf + eocd - 20) == 0x07064b50u) {
        uint64_t r = uf__le64(buf + eocd - 20 + 8);
        if (r > eocd - 20 || eocd - 20 - r < 56 || uf__le32(buf + r) != 0x06064b50u)
            return uf__err(UF_ERR_FORMAT, "bad ZIP64 end-of-central-directory record");
        n = uf__le64(buf + r + 32);
        cdsize = uf__le64(buf + r + 40);
        cdoff = uf__le64(buf + r + 48);
        cd_limit = (size_t)r;
    }
    if (cdoff > cd_limit || cdsize > cd_limit - cdoff)
        return uf__err(UF_ERR_FORMAT, "truncated zip central directory");
    if (n > cdsize / 46)
        return uf__err(UF_ERR_FORMAT, "zip central directory of %llu bytes cannot hold %llu "
                       "entries", (unsigned long long)cdsize, (unsigned long long)n);
    z->e = calloc(n ? (size_t)n : 1, sizeof *z->e); /* [n] */
    if (!z->e) return uf__err(UF_ERR_NOMEM, "out of memory for %llu zip entries",
                              (unsigned long long)n);

    const uint8_t *p = buf + cdoff, *end = buf + cdoff + cdsize;
    const char *pkl = NULL; /* name of the chosen data.pkl entry */
    size_t pkl_len = 0;
    bool pkl_top = false;   /* chosen one is directly under a top-level folder */
    for (uint64_t i = 0; i < n; i++) {
        if ((size_t)(end - p) < 46 || uf__le32(p) != 0x02014b50u)
            return uf__err(UF_ERR_FORMAT, "truncated zip central directory (entry %llu)",
                           (unsigned long long)i);
        size_t nl = uf__le16(p + 28), xl = uf__le16(p + 30), cl = uf__le16(p + 32);
        if ((size_t)(end - p) - 46 < nl + xl + cl)
            return uf__err(UF_ERR_FORMAT, "truncated zip central directory (entry %llu)",
                           (unsigned long long)i);
        zent *e = &z->e[z->n];
        e->name = (const char *)p + 46;
        e->nlen = nl;
        uint16_t flags = uf__le16(p + 8);
        e->method = uf__le16(p + 10);
        e->crc = uf__le32(p + 16);
        e->csize = uf__le32(p + 20);
        e->usize = uf__le32(p + 24);
        uint64_t lho = uf__le32(p + 42);
        uf_status s = zip64_extra(p + 46 + nl, xl, &e->usize, &e->csize, &lho);
        if (s != UF_OK) return s;
        if (flags & 1)
            return uf__err(UF_ERR_UNSUPPORTED, "zip entry %.*s is encrypted", msglen(nl),
                           e->name);
        /* Local header: its own name and extra lengths decide where the data starts
         * (its sizes may be zero when a data descriptor follows: use the central ones). */
        if (lho > len || len - lho < 30 || uf__le32(buf + lho) != 0x04034b50u)
            return uf__err(UF_ERR_FORMAT, "zip entry %.*s: bad local header offset",
                           msglen(nl), e->name);
        uint64_t lnl = uf__le16(buf + lho + 26), lxl = uf__le16(buf + lho + 28);
        e->data_off = lho + 30 + lnl + lxl;
        if (e->data_off > len || e->csize > len - e->data_off)
            return uf__err(UF_ERR_FORMAT, "zip entry %.*s: data (%llu bytes) beyond the end "
                           "of the file", msglen(nl), e->name, (unsigned long long)e->csize);
        if (lnl != nl || memcmp(buf + lho + 30, e->name, nl) != 0)
            return uf__err(UF_ERR_FORMAT, "zip entry %.*s: local header names another file",
                           msglen(nl), e->name);
        if (e->method == 0 && e->csize != e->usize)
            return uf__err(UF_ERR_FORMAT, "zip entry %.*s: stored with different sizes",
                           msglen(nl), e->name);
        /* data.pkl: prefer "<folder>/data.pkl" with one folder, then any ".../data.pkl",
         * then a bare "data.pkl". */
        if (nl >= 8 && memcmp(e->name + nl - 8, "data.pkl", 8) == 0 &&
            (nl == 8 || e->name[nl - 9] == '/')) {
            bool top = nl > 9 && memchr(e->name, '/', nl - 9) == NULL;
            if (!pkl || (top && !pkl_top)) {
                pkl = e->name;
                pkl_len = nl;
                pkl_top = top;
            }
        }
        z->n++;
        p += 46 + nl + xl + cl;
    }
    if (!pkl)
        return uf__err(UF_ERR_FORMAT, "zip archive without data.pkl: not a PyTorch checkpoint");
    z->prefix = pkl;
    z->plen = pkl_len - 8;
    qsort(z->e, z->n, sizeof *z->e, zent_cmp);
    return UF_OK;
}

/* The uncompressed bytes of entry e (*data, e->usize bytes), inflating DEFLATE entries
 * once (charged to *budget) and checking the CRC once. */
static uf_status zip_data(zipr *z, zent *e, size_t *budget, const uint8_t **data)
{
    const uint8_t *src = z->buf + e->data_off;
    if (e->method == 8) {
        if (!e->inflated) {
            if (e->usize > *budget)
                return uf__err(UF_ERR_LIMIT, "zip entry %.*s inflates to %llu bytes, over "
                               "the data limit", msglen(e->nlen), e->name,
                               (unsigned long long)e->usize);
            uint8_t *out = malloc(e->usize ? (size_t)e->usize : 1); /* [usize] */
            if (!out) return uf__err(UF_ERR_NOMEM, "out of memory inflating %.*s",
                                     msglen(e->nlen), e->name);
            z_stream zs;
            memset(&zs, 0, sizeof zs);
            if (inflateInit2(&zs, -15) != Z_OK) {
                free(out);
                return uf__err(UF_ERR_NOMEM, "zlib inflateInit failed");
            }
            uint64_t in_left = e->csize, out_left = e->usize;
            const uint8_t *ip = src;
            uint8_t *op = out;
            int r = Z_OK;
            while (r == Z_OK) { /* feed in chunks: avail_* are 32-bit */
                if (zs.avail_in == 0 && in_left) {
                    uInt c = in_left > (1u << 30) ? (1u << 30) : (uInt)in_left;
                    zs.next_in = (Bytef *)(uintptr_t)ip;
                    zs.avail_in = c;
                    ip += c;
                    in_left -= c;
                }
                if (zs.avail_out == 0 && out_left) {
                    uInt c = out_left > (1u << 30) ? (1u << 30) : (uInt)out_left;
                    zs.next_out = op;
                    zs.avail_out = c;
                    op += c;
                    out_left -= c;
                }
                /* both sides were refilled above, so Z_BUF_ERROR means input or output
                 * ran out for good: the loop ends and the checks below decide */
                r = inflate(&zs, Z_NO_FLUSH);
            }
            bool ok = r == Z_STREAM_END && zs.total_out == e->usize && out_left == 0 &&
                      zs.avail_out == 0;
            inflateEnd(&zs);
            if (!ok) {
                free(out);
                return uf__err(UF_ERR_FORMAT, "zip entry %.*s: corrupt DEFLATE data or wrong "
                               "size", msglen(e->nlen), e->name);
            }
            e->inflated = out;
            *budget -= (size_t)e->usize;
        }
        src = e->inflated;
    } else if (e->method != 0) {
        return uf__err(UF_ERR_UNSUPPORTED, "zip entry %.*s uses compression method %u "
                       "(only STORED and DEFLATE are read)", msglen(e->nlen), e->name,
                       (unsigned)e->method);
    }
    if (!e->checked) {
        if ((uint32_t)crc32_z(0L, src, (z_size_t)e->usize) != e->crc)
            return uf__err(UF_ERR_FORMAT, "zip entry %.*s: CRC-32 mismatch (corrupt file)",
                           msglen(e->nlen), e->name);
        e->checked = true;
    }
    *data = src;
    return UF_OK;
}

/* ------------------------------------------------------------------------------------ */
/* Pickle objects                                                                       */
/* ------------------------------------------------------------------------------------ */

enum { T_NONE, T_BOOL, T_INT, T_FLOAT, T_STR, T_BYTES, T_TUPLE, T_LIST, T_DICT, T_GLOBAL,
       T_STORAGE, T_TENSOR, T_OPAQUE };

/* What a GLOBAL names (only these get meaning; G_OTHER is opaque). */
enum { G_OTHER, G_ODICT, G_REBUILD_TENSOR, G_REBUILD_PARAM, G_REBUILD_FROM_TYPE, G_STORAGE };

/* Storage element types; only the first four are converted. */
enum { D_F32, D_F64, D_F16, D_BF16, D_OTHER, D_UNKNOWN };

/* torch.<Name>Storage classes that name storages in persistent ids: element type and size.
 * Unknown "...Storage" names get size 0 (no size check; their tensors are skipped). */
static const struct {
    const char *name;
    uint8_t dtype, size;
} storage_types[] = {
    {"FloatStorage", D_F32, 4},       {"DoubleStorage", D_F64, 8},
    {"HalfStorage", D_F16, 2},        {"BFloat16Storage", D_BF16, 2},
    {"LongStorage", D_OTHER, 8},      {"IntStorage", D_OTHER, 4},
    {"ShortStorage", D_OTHER, 2},     {"CharStorage", D_OTHER, 1},
    {"ByteStorage", D_OTHER, 1},      {"BoolStorage", D_OTHER, 1},
    {"ComplexFloatStorage", D_OTHER, 8}, {"ComplexDoubleStorage", D_OTHER, 16},
    {"ComplexHalfStorage", D_OTHER, 4},  {"QInt8Storage", D_OTHER, 1},
    {"QUInt8Storage", D_OTHER, 1},    {"QInt32Storage", D_OTHER, 4},
    {"QUInt4x2Storage", D_OTHER, 1},  {"QUInt2x4Storage", D_OTHER, 1},
    {"UInt16Storage", D_OTHER, 2},    {"UInt32Storage", D_OTHER, 4},
    {"UInt64Storage", D_OTHER, 8},    {"Float8_e5m2Storage", D_OTHER, 1},
    {"Float8_e4m3fnStorage", D_OTHER, 1}, {"UntypedStorage", D_OTHER, 1},
};

static const char *const dtype_names[] = {"float32", "float64", "float16", "bfloat16",
                                          "non-float", "unknown"};

typedef struct pstorage {
    zent *e;          /* its archive entry */
    const char *key;  /* storage key, e.g. "3" (points into the pickle) */
    size_t klen;
    uint8_t dtype;    /* D_* */
    uint8_t esize;    /* bytes per element, 0 if unknown */
    uint64_t numel;   /* elements */
} pstorage;

typedef struct ptensor {
    pstorage *st;
    uint64_t offset;           /* storage offset, elements */
    int ndim;                  /* may exceed UF__MAX_DIMS: then sizes are not kept */
    int64_t size[UF__MAX_DIMS];
    int64_t stride[UF__MAX_DIMS];
    size_t numel;              /* product of the sizes */
} ptensor;

/* A pickle object: a tag and a small payload. Strings point into the pickle bytes (which
 * outlive the VM) unless decoded from a protocol-0 STRING; containers hold pointers to
 * other objects, which may be shared through the memo (and may even form cycles). */
typedef struct pobj {
    uint8_t type;   /* T_* */
    uint8_t sub;    /* T_GLOBAL: G_*; T_STR/T_BYTES: 1 if the text is owned */
    uint8_t dtype;  /* T_GLOBAL of kind G_STORAGE: D_* */
    uint8_t esize;  /* same: element size */
    union {
        int64_t i;                                     /* T_BOOL, T_INT */
        double f;                                      /* T_FLOAT       */
        struct { const char *p; size_t len; } s;       /* T_STR, T_BYTES */
        struct { struct pobj **v; size_t n, cap; } c;  /* T_TUPLE, T_LIST; T_DICT: [2n] k,v */
        pstorage *st;                                  /* T_STORAGE     */
        ptensor *t;                                    /* T_TENSOR      */
    } u;
} pobj;

#define CHUNK_OBJS 512
typedef struct chunk {
    struct chunk *next;
    size_t used;
    pobj objs[CHUNK_OBJS];
} chunk;

/* The unpickler state. */
typedef struct vm {
    const uf__pth_limits *lim;
    zipr *z;
    const uint8_t *start, *p, *end; /* the pickle */
    pobj **stack;                   /* [scap] */
    size_t sp, scap;
    size_t *marks;                  /* [mcap] stack heights at each open MARK */
    size_t nm, mcap;
    pobj **memo;                    /* [memo_cap], NULL = unset */
    size_t memo_cap, memo_count;
    chunk *chunks;
    size_t bytes;                   /* charged against lim->max_vm_bytes */
    uf_status err;                  /* status of the last failed allocation */
    pobj none, yes, no, empty_tuple; /* shared immutable singletons */
} vm;

/* malloc charged to the VM's memory limit. */
static void *vm_malloc(vm *m, size_t n)
{
    if (n > m->lim->max_vm_bytes - m->bytes) {
        m->err = uf__err(UF_ERR_LIMIT, "pickle objects need more than %zu bytes (the limit "
                         "for this file's size)", m->lim->max_vm_bytes);
        return NULL;
    }
    void *q = malloc(n ? n : 1);
    if (!q) {
        m->err = uf__err(UF_ERR_NOMEM, "out of memory unpickling (%zu bytes)", n);
        return NULL;
    }
    m->bytes += n;
    return q;
}

/* Grow *arr (elements of size el) to hold at least need, within cap_max. */
static uf_status vm_grow(vm *m, void **arr, size_t *cap, size_t need, size_t el, size_t cap_max,
                         const char *what)
{
    if (need <= *cap) return UF_OK;
    if (need > cap_max)
        return uf__err(UF_ERR_LIMIT, "pickle %s exceeds the limit of %zu", what, cap_max);
    size_t nc = *cap ? *cap : 16;
    while (nc < need) nc = nc > cap_max / 2 ? cap_max : nc * 2;
    size_t nb, ob = *cap * el;
    if (!uf__mul_ok(nc, el, &nb) || nb - ob > m->lim->max_vm_bytes - m->bytes)
        return uf__err(UF_ERR_LIMIT, "pickle objects need more than %zu bytes (the limit "
                       "for this file's size)", m->lim->max_vm_bytes);
    void *q = realloc(*arr, nb);
    if (!q) return uf__err(UF_ERR_NOMEM, "out of memory unpickling");
    m->bytes += nb - ob;
    *arr = q;
    *cap = nc;
    return UF_OK;
}

static pobj *vm_new(vm *m, uint8_t type)
{
    if (!m->chunks || m->chunks->used == CHUNK_OBJS) {
        chunk *c = vm_malloc(m, sizeof *c);
        if (!c) return NULL;
        c->next = m->chunks;
        c->used = 0;
        m->chunks = c;
    }
    pobj *o = &m->chunks->objs[m->chunks->used++];
    memset(o, 0, sizeof *o);
    o->type = type;
    return o;
}

static void vm_free(vm *m)
{
    chunk *c = m->chunks;
    while (c) {
        for (size_t i = 0; i < c->used; i++) {
            pobj *o = &c->objs[i];
            switch (o->type) {
            case T_STR:
            case T_BYTES:
                if (o->sub) free((void *)(uintptr_t)o->u.s.p);
                break;
            case T_TUPLE:
            case T_LIST:
            case T_DICT: free(o->u.c.v); break;
            case T_STORAGE: free(o->u.st); break;
            case T_TENSOR: free(o->u.t); break;
            default: break;
            }
        }
        chunk *nx = c->next;
        free(c);
        c = nx;
    }
    free(m->stack);
    free(m->marks);
    free(m->memo);
}

/* Append item to a tuple/list/dict item array. */
static uf_status vm_append(vm *m, pobj *c, pobj *item)
{
    uf_status s = vm_grow(m, (void **)&c->u.c.v, &c->u.c.cap, c->u.c.n + 1, sizeof(pobj *),
                          SIZE_MAX / sizeof(pobj *), "container");
    if (s != UF_OK) return s;
    c->u.c.v[c->u.c.n++] = item;
    return UF_OK;
}

/* ---- stack ------------------------------------------------------------------------ */

static size_t vm_base(const vm *m) { return m->nm ? m->marks[m->nm - 1] : 0; }

static uf_status vm_push(vm *m, pobj *o)
{
    if (!o) return m->err; /* message set by the allocator */
    if (m->sp == m->scap) {
        uf_status s = vm_grow(m, (void **)&m->stack, &m->scap, m->sp + 1, sizeof(pobj *),
                              m->lim->max_stack, "stack");
        if (s != UF_OK) return s;
    }
    m->stack[m->sp++] = o;
    return UF_OK;
}

static uf_status vm_pop(vm *m, pobj **o)
{
    if (m->sp <= vm_base(m))
        return uf__err(UF_ERR_FORMAT, "pickle stack underflow at offset %zu",
                       (size_t)(m->p - m->start - 1));
    *o = m->stack[--m->sp];
    return UF_OK;
}

static uf_status vm_top(vm *m, pobj **o)
{
    if (m->sp <= vm_base(m))
        return uf__err(UF_ERR_FORMAT, "pickle stack empty at offset %zu",
                       (size_t)(m->p - m->start - 1));
    *o = m->stack[m->sp - 1];
    return UF_OK;
}

/* Close the innermost MARK: the marked items are stack[*from .. sp). */
static uf_status vm_pop_mark(vm *m, size_t *from)
{
    if (m->nm == 0)
        return uf__err(UF_ERR_FORMAT, "pickle opcode needs a MARK at offset %zu",
                       (size_t)(m->p - m->start - 1));
    *from = m->marks[--m->nm];
    return UF_OK;
}

/* New tuple/list of stack[from .. sp), which is then popped. */
static uf_status vm_collect(vm *m, uint8_t type, size_t from, pobj **out)
{
    size_t n = m->sp - from;
    if (type == T_TUPLE && n == 0) {
        *out = &m->empty_tuple;
        return UF_OK;
    }
    pobj *o = vm_new(m, type);
    if (!o) return m->err;
    if (n) {
        o->u.c.v = vm_malloc(m, n * sizeof(pobj *));
        if (!o->u.c.v) return m->err;
        memcpy(o->u.c.v, m->stack + from, n * sizeof(pobj *));
        o->u.c.n = o->u.c.cap = n;
    }
    m->sp = from;
    *out = o;
    return UF_OK;
}

/* ---- memo ------------------------------------------------------------------------- */

static uf_status memo_put(vm *m, uint64_t idx)
{
    pobj *o = NULL;
    uf_status s = vm_top(m, &o);
    if (s != UF_OK) return s;
    if (idx >= m->lim->max_memo)
        return uf__err(UF_ERR_LIMIT, "pickle memo index %llu exceeds the limit of %zu",
                       (unsigned long long)idx, m->lim->max_memo);
    size_t old = m->memo_cap;
    s = vm_grow(m, (void **)&m->memo, &m->memo_cap, (size_t)idx + 1, sizeof(pobj *),
                m->lim->max_memo, "memo");
    if (s != UF_OK) return s;
    if (m->memo_cap > old) memset(m->memo + old, 0, (m->memo_cap - old) * sizeof(pobj *));
    if (!m->memo[idx]) m->memo_count++;
    m->memo[idx] = o;
    return UF_OK;
}

static uf_status memo_get(vm *m, uint64_t idx)
{
    if (idx >= m->memo_cap || !m->memo[idx])
        return uf__err(UF_ERR_FORMAT, "pickle memo entry %llu used before it was set",
                       (unsigned long long)idx);
    return vm_push(m, m->memo[idx]);
}

/* ---- reading the opcode stream ------------------------------------------------------ */

static uf_status need(vm *m, uint64_t n)
{
    if ((uint64_t)(m->end - m->p) < n)
        return uf__err(UF_ERR_FORMAT, "pickle truncated at offset %zu (needs %llu more bytes)",
                       (size_t)(m->p - m->start), (unsigned long long)n);
    return UF_OK;
}

/* A text argument ending in '\n' (protocol 0 opcodes); *line excludes the newline. */
static uf_status read_line(vm *m, const char **line, size_t *n)
{
    const uint8_t *nl = memchr(m->p, '\n', (size_t)(m->end - m->p));
    if (!nl) return uf__err(UF_ERR_FORMAT, "pickle truncated in a text argument at offset %zu",
                            (size_t)(m->p - m->start));
    *line = (const char *)m->p;
    *n = (size_t)(nl - m->p);
    m->p = nl + 1;
    return UF_OK;
}

/* Parse a decimal integer line (optional sign, optional trailing 'L'). */
static bool parse_int(const char *s, size_t n, int64_t *v, bool *big)
{
    char tmp[32];
    *big = false;
    if (n && s[n - 1] == 'L') n--;
    if (n == 0) return false;
    if (n >= sizeof tmp) { /* more digits than an int64 holds */
        for (size_t i = 0; i < n; i++)
            if (!((s[i] >= '0' && s[i] <= '9') || (i == 0 && (s[i] == '-' || s[i] == '+'))))
                return false;
        *big = true;
        return true;
    }
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    char *e;
    errno = 0;
    long long x = strtoll(tmp, &e, 10);
    if (*e != '\0' || e == tmp) return false;
    if (errno == ERANGE) *big = true;
    *v = x;
    return true;
}

/* Push an int, or an opaque object for values beyond int64 (LONG1/LONG4 bytes). */
static uf_status push_long_bytes(vm *m, const uint8_t *b, size_t n)
{
    if (n > 8) return vm_push(m, vm_new(m, T_OPAQUE));
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) v |= (uint64_t)b[i] << (8 * i);
    if (n && n < 8 && (b[n - 1] & 0x80)) v |= ~(uint64_t)0 << (8 * n); /* sign-extend */
    pobj *o = vm_new(m, T_INT);
    if (o) o->u.i = (int64_t)v;
    return vm_push(m, o);
}

static uf_status push_int(vm *m, int64_t v)
{
    pobj *o = vm_new(m, T_INT);
    if (o) o->u.i = v;
    return vm_push(m, o);
}

/* Push a string/bytes object of n bytes at m->p (not copied: the pickle outlives it). */
static uf_status push_text(vm *m, uint8_t type, uint64_t n)
{
    uf_status s = need(m, n);
    if (s != UF_OK) return s;
    pobj *o = vm_new(m, type);
    if (o) {
        o->u.s.p = (const char *)m->p;
        o->u.s.len = (size_t)n;
    }
    m->p += n;
    return vm_push(m, o);
}

/* Protocol-0 STRING: a quoted Python literal; simple escapes are decoded. */
static uf_status push_quoted(vm *m, const char *s, size_t n)
{
    if (n < 2 || (s[0] != '\'' && s[0] != '"') || s[n - 1] != s[0])
        return uf__err(UF_ERR_FORMAT, "pickle STRING argument is not quoted");
    s++;
    n -= 2;
    char *d = vm_malloc(m, n + 1); /* [n+1] decoded text */
    if (!d) return m->err;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '\\' && i + 1 < n) {
            c = s[++i];
            if (c == 'n') c = '\n';
            else if (c == 't') c = '\t';
            else if (c == 'r') c = '\r';
            else if (c == 'x' && i + 2 < n) {
                char h[3] = {s[i + 1], s[i + 2], 0};
                c = (char)strtol(h, NULL, 16);
                i += 2;
            }
        }
        d[k++] = c;
    }
    d[k] = '\0';
    pobj *o = vm_new(m, T_STR);
    if (!o) {
        free(d);
        return m->err;
    }
    o->sub = 1;
    o->u.s.p = d;
    o->u.s.len = k;
    return vm_push(m, o);
}

static bool str_is(const char *s, size_t n, const char *lit)
{
    return strlen(lit) == n && memcmp(s, lit, n) == 0;
}

/* A GLOBAL object for module.name, recognising what torch checkpoints need. */
static uf_status push_global(vm *m, const char *mod, size_t ml, const char *name, size_t nl)
{
    pobj *o = vm_new(m, T_GLOBAL);
    if (!o) return m->err;
    o->sub = G_OTHER;
    bool torch = ml >= 5 && memcmp(mod, "torch", 5) == 0 && (ml == 5 || mod[5] == '.');
    if ((str_is(mod, ml, "collections") && str_is(name, nl, "OrderedDict")) ||
        ((str_is(mod, ml, "builtins") || str_is(mod, ml, "__builtin__")) &&
         str_is(name, nl, "dict"))) {
        o->sub = G_ODICT;
    } else if (torch && (str_is(name, nl, "_rebuild_tensor_v2") ||
                         str_is(name, nl, "_rebuild_tensor"))) {
        o->sub = G_REBUILD_TENSOR;
    } else if (torch && (str_is(name, nl, "_rebuild_parameter") ||
                         str_is(name, nl, "_rebuild_parameter_with_state"))) {
        o->sub = G_REBUILD_PARAM;
    } else if (torch && str_is(name, nl, "_rebuild_from_type_v2")) {
        o->sub = G_REBUILD_FROM_TYPE;
    } else if (torch && nl > 7 && memcmp(name + nl - 7, "Storage", 7) == 0) {
        o->sub = G_STORAGE;
        o->dtype = D_UNKNOWN;
        o->esize = 0;
        for (size_t i = 0; i < sizeof storage_types / sizeof storage_types[0]; i++) {
            if (str_is(name, nl, storage_types[i].name)) {
                o->dtype = storage_types[i].dtype;
                o->esize = storage_types[i].size;
                break;
            }
        }
    }
    return vm_push(m, o);
}

/* ---- torch semantics ------------------------------------------------------------------ */

static const char *tuple_item_int(const pobj *t, size_t i, int64_t *v)
{
    if (i >= t->u.c.n || t->u.c.v[i]->type != T_INT) return "not an integer";
    *v = t->u.c.v[i]->u.i;
    return NULL;
}

/* persistent_load: ('storage', StorageType, key, location, numel) -> T_STORAGE whose
 * entry exists and is large enough; any other id -> opaque. */
static uf_status persistent_load(vm *m, pobj *pid, pobj **out)
{
    *out = NULL;
    if ((pid->type != T_TUPLE && pid->type != T_LIST) || pid->u.c.n < 3 ||
        pid->u.c.v[0]->type != T_STR || !str_is(pid->u.c.v[0]->u.s.p, pid->u.c.v[0]->u.s.len,
                                                "storage")) {
        *out = vm_new(m, T_OPAQUE);
        return *out ? UF_OK : m->err;
    }
    pobj *ty = pid->u.c.v[1], *key = pid->u.c.v[2];
    char kbuf[24];
    const char *k;
    size_t kl;
    if (key->type == T_STR) {
        k = key->u.s.p;
        kl = key->u.s.len;
    } else if (key->type == T_INT) {
        kl = (size_t)snprintf(kbuf, sizeof kbuf, "%lld", (long long)key->u.i);
        k = kbuf;
    } else {
        return uf__err(UF_ERR_FORMAT, "storage key is not a string");
    }
    zent *e = zip_find(m->z, "data/", k, kl);
    if (!e)
        return uf__err(UF_ERR_FORMAT, "storage data/%.*s is missing from the archive",
                       msglen(kl), k);
    pobj *o = vm_new(m, T_STORAGE);
    if (!o) return m->err;
    pstorage *st = vm_malloc(m, sizeof *st);
    if (!st) return m->err;
    o->u.st = st;
    st->e = e;
    /* the key must outlive the VM's objects: keys from text are in the pickle or owned by
     * an object in the arena; an integer key is re-read from the entry name */
    st->key = key->type == T_STR ? k : e->name + e->nlen - kl;
    st->klen = kl;
    bool typed = ty->type == T_GLOBAL && ty->sub == G_STORAGE;
    st->dtype = typed ? ty->dtype : D_UNKNOWN;
    st->esize = typed ? ty->esize : 0;
    uint64_t nbytes = e->usize;
    if (pid->u.c.n >= 5 && pid->u.c.v[4]->type == T_INT) {
        if (pid->u.c.v[4]->u.i < 0)
            return uf__err(UF_ERR_FORMAT, "storage data/%.*s has a negative size",
                           msglen(kl), k);
        st->numel = (uint64_t)pid->u.c.v[4]->u.i;
        if (st->esize) {
            uint64_t want = st->numel * st->esize;
            if (st->numel > UINT64_MAX / st->esize || want > nbytes)
                return uf__err(UF_ERR_FORMAT, "storage data/%.*s is %llu bytes, its %llu %s "
                               "elements need %llu", msglen(kl), k,
                               (unsigned long long)nbytes, (unsigned long long)st->numel,
                               dtype_names[st->dtype],
                               st->numel > UINT64_MAX / st->esize ? UINT64_MAX
                                                                   : (unsigned long long)want);
        }
    } else {
        st->numel = st->esize ? nbytes / st->esize : nbytes;
    }
    *out = o;
    return UF_OK;
}

/* _rebuild_tensor_v2(storage, offset, size, stride, ...) -> T_TENSOR checked to lie
 * inside its storage. Arguments of the wrong kind are a format error; a storage that is
 * not one of ours gives an opaque object. */
static uf_status rebuild_tensor(vm *m, pobj *args, pobj **out)
{
    *out = NULL;
    if (args->type != T_TUPLE || args->u.c.n < 4)
        return uf__err(UF_ERR_FORMAT, "_rebuild_tensor_v2 needs at least 4 arguments");
    pobj **a = args->u.c.v;
    if (a[0]->type != T_STORAGE) {
        *out = vm_new(m, T_OPAQUE);
        return *out ? UF_OK : m->err;
    }
    pstorage *st = a[0]->u.st;
    int64_t off;
    pobj *size = a[2], *stride = a[3];
    if (tuple_item_int(args, 1, &off) || off < 0)
        return uf__err(UF_ERR_FORMAT, "tensor on storage data/%.*s: bad storage offset",
                       msglen(st->klen), st->key);
    if ((size->type != T_TUPLE && size->type != T_LIST) ||
        (stride->type != T_TUPLE && stride->type != T_LIST) || size->u.c.n != stride->u.c.n)
        return uf__err(UF_ERR_FORMAT, "tensor on storage data/%.*s: size and stride are not "
                       "tuples of one length", msglen(st->klen), st->key);
    size_t nd = size->u.c.n;
    if (nd > PTH_MAX_NDIM)
        return uf__err(UF_ERR_FORMAT, "tensor on storage data/%.*s has %zu dimensions",
                       msglen(st->klen), st->key, nd);
    ptensor *t = vm_malloc(m, sizeof *t);
    if (!t) return m->err;
    pobj *o = vm_new(m, T_TENSOR);
    if (!o) {
        free(t);
        return m->err;
    }
    memset(t, 0, sizeof *t);
    o->u.t = t;
    t->st = st;
    t->offset = (uint64_t)off;
    t->ndim = (int)nd;
    /* numel = prod(size); last = offset + sum((size-1)*stride), overflow-checked */
    size_t numel = 1;
    uint64_t last = (uint64_t)off;
    bool ovf = false;
    for (size_t d = 0; d < nd; d++) {
        int64_t sz, sd;
        if (tuple_item_int(size, d, &sz) || tuple_item_int(stride, d, &sd) || sz < 0 || sd < 0)
            return uf__err(UF_ERR_FORMAT, "tensor on storage data/%.*s: size/stride %zu is "
                           "not a non-negative integer", msglen(st->klen), st->key, d);
        if (d < UF__MAX_DIMS) {
            t->size[d] = sz;
            t->stride[d] = sd;
        }
        if (!uf__mul_ok(numel, (size_t)sz, &numel)) ovf = true;
        if (sz > 0) {
            uint64_t span = (uint64_t)(sz - 1);
            if (span && (uint64_t)sd > UINT64_MAX / span) ovf = true;
            else if (span * (uint64_t)sd > UINT64_MAX - last) ovf = true;
            else last += span * (uint64_t)sd;
        }
    }
    if (numel == 0) ovf = false; /* an empty view touches nothing */
    if (ovf)
        return uf__err(UF_ERR_FORMAT, "tensor on storage data/%.*s: size/stride overflow",
                       msglen(st->klen), st->key);
    t->numel = numel;
    if (numel > 0 && last >= st->numel)
        return uf__err(UF_ERR_FORMAT, "tensor view reaches element %llu of storage data/%.*s, "
                       "which holds %llu", (unsigned long long)last, msglen(st->klen), st->key,
                       (unsigned long long)st->numel);
    *out = o;
    return UF_OK;
}

/* REDUCE / NEWOBJ: callable(args). Unknown callables give opaque objects. */
static uf_status call(vm *m, pobj *fn, pobj *args, int depth, pobj **out)
{
    *out = NULL;
    int kind = fn->type == T_GLOBAL ? fn->sub : G_OTHER;
    switch (kind) {
    case G_ODICT:
        *out = vm_new(m, T_DICT);
        return *out ? UF_OK : m->err;
    case G_REBUILD_TENSOR: return rebuild_tensor(m, args, out);
    case G_REBUILD_PARAM:
        /* _rebuild_parameter(data, requires_grad, backward_hooks[, state]) -> data */
        if (args->type == T_TUPLE && args->u.c.n >= 1 && args->u.c.v[0]->type == T_TENSOR) {
            *out = args->u.c.v[0];
            return UF_OK;
        }
        break;
    case G_REBUILD_FROM_TYPE:
        /* _rebuild_from_type_v2(func, new_type, args, state) -> func(*args) */
        if (depth == 0 && args->type == T_TUPLE && args->u.c.n >= 3 &&
            args->u.c.v[2]->type == T_TUPLE)
            return call(m, args->u.c.v[0], args->u.c.v[2], depth + 1, out);
        break;
    default: break;
    }
    *out = vm_new(m, T_OPAQUE);
    return *out ? UF_OK : m->err;
}

/* ---- the interpreter ---------------------------------------------------------------- */

/* Run the pickle from m->p to its STOP; *root is the unpickled object.
 *
 * Semantics follow CPython's pickle.py (_Unpickler.load_*): MARK saves the stack height,
 * the opcodes that consume "marked" items take everything above the innermost mark;
 * items below it are invisible to POP and friends (an underflow is a format error, as
 * CPython raises). Every argument is checked against the bytes left before it is read;
 * every object comes from the arena, so an early return leaks nothing. The loop is flat:
 * nesting in the data never turns into recursion here. */
static uf_status vm_run(vm *m, pobj **root)
{
    uf_status s = UF_OK;
    pobj *a = NULL, *b = NULL, *c = NULL, *o = NULL;
    size_t from = 0, n = 0;
    const char *line = NULL, *line2 = NULL;
    for (;;) {
        if (m->p >= m->end) return uf__err(UF_ERR_FORMAT, "pickle ends without STOP");
        size_t at = (size_t)(m->p - m->start);
        uint8_t op = *m->p++;
        switch (op) {
        case 0x80: /* PROTO */
            if ((s = need(m, 1))) return s;
            if (*m->p > 5)
                return uf__err(UF_ERR_UNSUPPORTED, "pickle protocol %u", (unsigned)*m->p);
            m->p++;
            break;
        case 0x95: /* FRAME: framing is only a hint for buffered readers */
            if ((s = need(m, 8))) return s;
            m->p += 8;
            break;
        case '.': /* STOP */
            if ((s = vm_pop(m, root))) return s;
            return UF_OK;
        case '(': /* MARK */
            if (m->nm >= m->lim->max_marks)
                return uf__err(UF_ERR_LIMIT, "pickle nests more than %zu MARKs",
                               m->lim->max_marks);
            if ((s = vm_grow(m, (void **)&m->marks, &m->mcap, m->nm + 1, sizeof(size_t),
                             m->lim->max_marks, "MARK depth")))
                return s;
            m->marks[m->nm++] = m->sp;
            break;
        case '0': /* POP: an item, or an empty MARK */
            if (m->sp > vm_base(m)) m->sp--;
            else if ((s = vm_pop_mark(m, &from))) return s;
            break;
        case '1': /* POP_MARK */
            if ((s = vm_pop_mark(m, &from))) return s;
            m->sp = from;
            break;
        case '2': /* DUP */
            if ((s = vm_top(m, &a)) || (s = vm_push(m, a))) return s;
            break;
        case 'N': if ((s = vm_push(m, &m->none))) return s; break;
        case 0x88: if ((s = vm_push(m, &m->yes))) return s; break;
        case 0x89: if ((s = vm_push(m, &m->no))) return s; break;
        case 'K': /* BININT1 */
            if ((s = need(m, 1)) || (s = push_int(m, m->p[0]))) return s;
            m->p += 1;
            break;
        case 'M': /* BININT2 */
            if ((s = need(m, 2)) || (s = push_int(m, uf__le16(m->p)))) return s;
            m->p += 2;
            break;
        case 'J': /* BININT: signed 32-bit */
            if ((s = need(m, 4)) || (s = push_int(m, (int32_t)uf__le32(m->p)))) return s;
            m->p += 4;
            break;
        case 0x8a: /* LONG1 */
            if ((s = need(m, 1))) return s;
            n = *m->p++;
            if ((s = need(m, n)) || (s = push_long_bytes(m, m->p, n))) return s;
            m->p += n;
            break;
        case 0x8b: /* LONG4 */
            if ((s = need(m, 4))) return s;
            if ((int32_t)uf__le32(m->p) < 0)
                return uf__err(UF_ERR_FORMAT, "pickle LONG4 with a negative length");
            n = uf__le32(m->p);
            m->p += 4;
            if ((s = need(m, n)) || (s = push_long_bytes(m, m->p, n))) return s;
            m->p += n;
            break;
        case 'I': /* INT (text); "00"/"01" are False/True */
        case 'L': { /* LONG (text) */
            int64_t v = 0;
            bool big;
            if ((s = read_line(m, &line, &n))) return s;
            if (op == 'I' && str_is(line, n, "00")) s = vm_push(m, &m->no);
            else if (op == 'I' && str_is(line, n, "01")) s = vm_push(m, &m->yes);
            else if (!parse_int(line, n, &v, &big))
                return uf__err(UF_ERR_FORMAT, "pickle: bad integer text at offset %zu", at);
            else if (big) s = vm_push(m, vm_new(m, T_OPAQUE));
            else s = push_int(m, v);
            if (s) return s;
            break;
        }
        case 'F': { /* FLOAT (text) */
            char tmp[64];
            if ((s = read_line(m, &line, &n))) return s;
            if (n >= sizeof tmp) n = sizeof tmp - 1;
            memcpy(tmp, line, n);
            tmp[n] = '\0';
            if (!(o = vm_new(m, T_FLOAT))) return m->err;
            o->u.f = strtod(tmp, NULL);
            if ((s = vm_push(m, o))) return s;
            break;
        }
        case 'G': { /* BINFLOAT: big-endian double */
            if ((s = need(m, 8))) return s;
            uint64_t bits = 0;
            for (int i = 0; i < 8; i++) bits = (bits << 8) | m->p[i];
            m->p += 8;
            if (!(o = vm_new(m, T_FLOAT))) return m->err;
            memcpy(&o->u.f, &bits, 8);
            if ((s = vm_push(m, o))) return s;
            break;
        }
        /* strings and bytes: lengths are checked against the bytes left before use */
        case 'X': /* BINUNICODE */
        case 'B': /* BINBYTES */
            if ((s = need(m, 4))) return s;
            n = uf__le32(m->p);
            m->p += 4;
            if ((s = push_text(m, op == 'X' ? T_STR : T_BYTES, n))) return s;
            break;
        case 'T': /* BINSTRING: signed length */
            if ((s = need(m, 4))) return s;
            if ((int32_t)uf__le32(m->p) < 0)
                return uf__err(UF_ERR_FORMAT, "pickle BINSTRING with a negative length");
            n = uf__le32(m->p);
            m->p += 4;
            if ((s = push_text(m, T_STR, n))) return s;
            break;
        case 0x8c: /* SHORT_BINUNICODE */
        case 'U':  /* SHORT_BINSTRING */
        case 'C':  /* SHORT_BINBYTES */
            if ((s = need(m, 1))) return s;
            n = *m->p++;
            if ((s = push_text(m, op == 'C' ? T_BYTES : T_STR, n))) return s;
            break;
        case 0x8d: /* BINUNICODE8 */
        case 0x8e: /* BINBYTES8 */
        case 0x96: { /* BYTEARRAY8 */
            if ((s = need(m, 8))) return s;
            uint64_t n8 = uf__le64(m->p);
            m->p += 8;
            if ((s = push_text(m, op == 0x8d ? T_STR : T_BYTES, n8))) return s;
            break;
        }
        case 'V': /* UNICODE (raw-unicode-escape text; kept as written) */
            if ((s = read_line(m, &line, &n))) return s;
            if (!(o = vm_new(m, T_STR))) return m->err;
            o->u.s.p = line;
            o->u.s.len = n;
            if ((s = vm_push(m, o))) return s;
            break;
        case 'S': /* STRING (quoted text) */
            if ((s = read_line(m, &line, &n)) || (s = push_quoted(m, line, n))) return s;
            break;
        /* containers */
        case ')': if ((s = vm_push(m, &m->empty_tuple))) return s; break;
        case ']': if ((s = vm_push(m, vm_new(m, T_LIST)))) return s; break;
        case '}': if ((s = vm_push(m, vm_new(m, T_DICT)))) return s; break;
        case 0x8f: /* EMPTY_SET: sets are not needed */
            if ((s = vm_push(m, vm_new(m, T_OPAQUE)))) return s;
            break;
        case 't': /* TUPLE */
        case 'l': /* LIST */
            if ((s = vm_pop_mark(m, &from)) ||
                (s = vm_collect(m, op == 't' ? T_TUPLE : T_LIST, from, &o)) ||
                (s = vm_push(m, o)))
                return s;
            break;
        case 0x85: case 0x86: case 0x87: /* TUPLE1..3 */
            n = (size_t)(op - 0x84);
            if (m->sp - vm_base(m) < n)
                return uf__err(UF_ERR_FORMAT, "pickle stack underflow at offset %zu", at);
            if ((s = vm_collect(m, T_TUPLE, m->sp - n, &o)) || (s = vm_push(m, o))) return s;
            break;
        case 'd': /* DICT from marked key, value pairs */
            if ((s = vm_pop_mark(m, &from))) return s;
            if ((m->sp - from) % 2)
                return uf__err(UF_ERR_FORMAT, "pickle DICT with an odd item count");
            if ((s = vm_collect(m, T_LIST, from, &o))) return s;
            o->type = T_DICT; /* same item layout: k0, v0, k1, v1 ... */
            if ((s = vm_push(m, o))) return s;
            break;
        case 0x91: /* FROZENSET */
            if ((s = vm_pop_mark(m, &from))) return s;
            m->sp = from;
            if ((s = vm_push(m, vm_new(m, T_OPAQUE)))) return s;
            break;
        case 'a': /* APPEND */
            if ((s = vm_pop(m, &b)) || (s = vm_top(m, &a))) return s;
            if (a->type == T_LIST && (s = vm_append(m, a, b))) return s;
            if (a->type != T_LIST && a->type != T_OPAQUE)
                return uf__err(UF_ERR_FORMAT, "pickle APPEND to a non-list at offset %zu", at);
            break;
        case 'e':  /* APPENDS */
        case 'u':  /* SETITEMS */
        case 0x90: /* ADDITEMS */
            if ((s = vm_pop_mark(m, &from))) return s;
            if (from <= vm_base(m))
                return uf__err(UF_ERR_FORMAT, "pickle stack underflow at offset %zu", at);
            a = m->stack[from - 1];
            n = m->sp - from;
            if (op == 'u' && n % 2)
                return uf__err(UF_ERR_FORMAT, "pickle SETITEMS with an odd item count");
            if ((op == 'e' && a->type == T_LIST) || (op == 'u' && a->type == T_DICT)) {
                for (size_t i = from; i < m->sp; i++)
                    if ((s = vm_append(m, a, m->stack[i]))) return s;
            } else if (a->type != T_OPAQUE) {
                return uf__err(UF_ERR_FORMAT, "pickle %s on the wrong kind of object at "
                               "offset %zu", op == 'u' ? "SETITEMS" : "APPENDS", at);
            }
            m->sp = from;
            break;
        case 's': /* SETITEM */
            if ((s = vm_pop(m, &c)) || (s = vm_pop(m, &b)) || (s = vm_top(m, &a))) return s;
            if (a->type == T_DICT) {
                if ((s = vm_append(m, a, b)) || (s = vm_append(m, a, c))) return s;
            } else if (a->type != T_OPAQUE) {
                return uf__err(UF_ERR_FORMAT, "pickle SETITEM on a non-dict at offset %zu", at);
            }
            break;
        /* globals and calls */
        case 'c': /* GLOBAL "module\nname\n" */
            if ((s = read_line(m, &line, &n)) || (s = read_line(m, &line2, &from)) ||
                (s = push_global(m, line, n, line2, from)))
                return s;
            break;
        case 0x93: /* STACK_GLOBAL */
            if ((s = vm_pop(m, &b)) || (s = vm_pop(m, &a))) return s;
            if (a->type != T_STR || b->type != T_STR)
                return uf__err(UF_ERR_FORMAT, "pickle STACK_GLOBAL needs two strings");
            if ((s = push_global(m, a->u.s.p, a->u.s.len, b->u.s.p, b->u.s.len))) return s;
            break;
        case 'R': /* REDUCE */
            if ((s = vm_pop(m, &b)) || (s = vm_pop(m, &a)) || (s = call(m, a, b, 0, &o)) ||
                (s = vm_push(m, o)))
                return s;
            break;
        case 0x81: /* NEWOBJ cls args */
        case 0x92: /* NEWOBJ_EX cls args kwargs */
            if (op == 0x92 && (s = vm_pop(m, &c))) return s;
            if ((s = vm_pop(m, &b)) || (s = vm_pop(m, &a))) return s;
            o = vm_new(m, a->type == T_GLOBAL && a->sub == G_ODICT ? T_DICT : T_OPAQUE);
            if ((s = vm_push(m, o))) return s;
            break;
        case 'i': /* INST "module\nname\n" + marked args */
            if ((s = read_line(m, &line, &n)) || (s = read_line(m, &line2, &from))) return s;
            /* fall through */
        case 'o': { /* OBJ: marked cls, args */
            bool is_dict = op == 'i' && str_is(line, n, "collections") &&
                           str_is(line2, from, "OrderedDict");
            if ((s = vm_pop_mark(m, &from))) return s;
            if (op == 'o') {
                if (m->sp == from)
                    return uf__err(UF_ERR_FORMAT, "pickle OBJ without a class");
                a = m->stack[from];
                is_dict = a->type == T_GLOBAL && a->sub == G_ODICT;
            }
            m->sp = from;
            if ((s = vm_push(m, vm_new(m, is_dict ? T_DICT : T_OPAQUE)))) return s;
            break;
        }
        case 'b': /* BUILD: state is ignored (OrderedDict _metadata, object __dict__) */
            if ((s = vm_pop(m, &b)) || (s = vm_top(m, &a))) return s;
            break;
        case 'Q': /* BINPERSID */
            if ((s = vm_pop(m, &a)) || (s = persistent_load(m, a, &o)) || (s = vm_push(m, o)))
                return s;
            break;
        case 'P': /* PERSID (text id): not a storage */
            if ((s = read_line(m, &line, &n)) || (s = vm_push(m, vm_new(m, T_OPAQUE)))) return s;
            break;
        case 0x82: case 0x83: case 0x84: /* EXT1/2/4: extension registry codes */
            n = op == 0x82 ? 1 : op == 0x83 ? 2 : 4;
            if ((s = need(m, n))) return s;
            m->p += n;
            if ((s = vm_push(m, vm_new(m, T_OPAQUE)))) return s;
            break;
        case 0x97: /* NEXT_BUFFER: out-of-band data is never used by torch */
            if ((s = vm_push(m, vm_new(m, T_OPAQUE)))) return s;
            break;
        case 0x98: /* READONLY_BUFFER */
            if ((s = vm_top(m, &a))) return s;
            break;
        /* memo */
        case 'q': /* BINPUT */
            if ((s = need(m, 1)) || (s = memo_put(m, m->p[0]))) return s;
            m->p += 1;
            break;
        case 'r': /* LONG_BINPUT */
            if ((s = need(m, 4)) || (s = memo_put(m, uf__le32(m->p)))) return s;
            m->p += 4;
            break;
        case 0x94: /* MEMOIZE */
            if ((s = memo_put(m, m->memo_count))) return s;
            break;
        case 'h': /* BINGET */
            if ((s = need(m, 1)) || (s = memo_get(m, m->p[0]))) return s;
            m->p += 1;
            break;
        case 'j': /* LONG_BINGET */
            if ((s = need(m, 4)) || (s = memo_get(m, uf__le32(m->p)))) return s;
            m->p += 4;
            break;
        case 'p': /* PUT (text) */
        case 'g': { /* GET (text) */
            int64_t v;
            bool big;
            if ((s = read_line(m, &line, &n))) return s;
            if (!parse_int(line, n, &v, &big) || big || v < 0)
                return uf__err(UF_ERR_FORMAT, "pickle: bad memo index text at offset %zu", at);
            if ((s = op == 'p' ? memo_put(m, (uint64_t)v) : memo_get(m, (uint64_t)v))) return s;
            break;
        }
        default:
            return uf__err(UF_ERR_FORMAT, "unknown pickle opcode 0x%02x at offset %zu",
                           (unsigned)op, at);
        }
    }
}

/* ------------------------------------------------------------------------------------ */
/* Walking the result and copying tensors out                                           */
/* ------------------------------------------------------------------------------------ */

/* State of the walk from the root object to the tensors. The data budget covers both the
 * float32 copies and inflated DEFLATE entries: a stride-0 view or a highly compressed entry
 * cannot make a small file allocate without bound. */
typedef struct walker {
    const uf__pth_limits *lim;
    zipr *z;
    uf__tensors *out;
    size_t n0;       /* tensors in out before this load */
    size_t visits;
    size_t budget;   /* bytes left for float32 output and inflated entries */
    bool swap;       /* storage bytes are of the other endianness */
} walker;

static void bswap_n(uint8_t *b, int n)
{
    for (int i = 0; i < n / 2; i++) {
        uint8_t t = b[i];
        b[i] = b[n - 1 - i];
        b[n - 1 - i] = t;
    }
}

/* dst[i] = float(element start + i*step), i < n, of a storage of the given type. */
static void convert_run(float *dst, const uint8_t *base, uint64_t start, size_t n,
                        uint64_t step, int dtype, bool swap)
{
    if (dtype == D_F32 && step == 1 && !swap) {
        memcpy(dst, base + start * 4, n * 4);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t k = start + i * step;
        uint8_t b[8];
        switch (dtype) {
        case D_F32:
            memcpy(b, base + k * 4, 4);
            if (swap) bswap_n(b, 4);
            memcpy(&dst[i], b, 4);
            break;
        case D_F64: {
            double d;
            memcpy(b, base + k * 8, 8);
            if (swap) bswap_n(b, 8);
            memcpy(&d, b, 8);
            dst[i] = (float)d;
            break;
        }
        default: { /* F16, BF16 */
            uint16_t h;
            memcpy(b, base + k * 2, 2);
            if (swap) bswap_n(b, 2);
            memcpy(&h, b, 2);
            dst[i] = dtype == D_F16 ? uf__f16_to_f32(h) : uf__bf16_to_f32(h);
            break;
        }
        }
    }
}

/* A contiguous float32 copy of tensor t (already checked to lie in its storage). */
static uf_status materialize(walker *w, const ptensor *t, const char *name, float **res)
{
    *res = NULL;
    pstorage *st = t->st;
    size_t bytes;
    if (!uf__mul_ok(t->numel, sizeof(float), &bytes) || bytes > w->budget)
        return uf__err(UF_ERR_LIMIT, "tensor %s: %zu elements exceed the data limit", name,
                       t->numel);
    const uint8_t *data;
    uf_status s = zip_data(w->z, st->e, &w->budget, &data);
    if (s != UF_OK) return s;
    if (bytes > w->budget)
        return uf__err(UF_ERR_LIMIT, "tensor %s: %zu elements exceed the data limit", name,
                       t->numel);
    float *dst = malloc(bytes ? bytes : sizeof(float)); /* [numel] */
    if (!dst) return uf__err(UF_ERR_NOMEM, "tensor %s: cannot allocate %zu bytes", name, bytes);
    w->budget -= bytes;
    int nd = t->ndim;
    if (t->numel == 0) {
        /* nothing to copy */
    } else if (nd == 0) {
        convert_run(dst, data, t->offset, 1, 1, st->dtype, w->swap);
    } else {
        /* is it row-major contiguous? */
        bool contig = true;
        int64_t expect = 1;
        for (int d = nd - 1; d >= 0; d--) {
            if (t->size[d] != 1 && t->stride[d] != expect) contig = false;
            expect *= t->size[d];
        }
        if (contig) {
            convert_run(dst, data, t->offset, t->numel, 1, st->dtype, w->swap);
        } else {
            /* odometer over the outer dims; the innermost dim is one strided run */
            int64_t idx[UF__MAX_DIMS] = {0};
            size_t inner = (size_t)t->size[nd - 1], rows = t->numel / inner;
            float *o = dst;
            for (size_t r = 0; r < rows; r++) {
                uint64_t k = t->offset;
                for (int d = 0; d < nd - 1; d++) k += (uint64_t)idx[d] * (uint64_t)t->stride[d];
                convert_run(o, data, k, inner, (uint64_t)t->stride[nd - 1], st->dtype, w->swap);
                o += inner;
                for (int d = nd - 2; d >= 0; d--) {
                    if (++idx[d] < t->size[d]) break;
                    idx[d] = 0;
                }
            }
        }
    }
    *res = dst;
    return UF_OK;
}

/* Visit o, reached by the dotted name[nlen]: a float tensor is copied out, a dict is
 * followed (depth-bounded: recursion at most max_depth deep; cycles and shared dicts end
 * at max_depth / max_visits), anything else is ignored. */
static uf_status walk(walker *w, const pobj *o, const char *name, size_t nlen, size_t depth)
{
    if (++w->visits > w->lim->max_visits)
        return uf__err(UF_ERR_LIMIT, "more than %zu objects to visit (shared dicts?)",
                       w->lim->max_visits);
    if (o->type == T_TENSOR) {
        const ptensor *t = o->u.t;
        if (t->st->dtype > D_BF16) return UF_OK; /* not a float tensor: skipped */
        if (t->ndim > UF__MAX_DIMS)
            return uf__err(UF_ERR_UNSUPPORTED, "tensor %s has %d dimensions (at most %d)",
                           name, t->ndim, UF__MAX_DIMS);
        if (w->out->n - w->n0 >= w->lim->max_tensors)
            return uf__err(UF_ERR_LIMIT, "more than %zu tensors", w->lim->max_tensors);
        float *data;
        uf_status s = materialize(w, t, name, &data);
        if (s != UF_OK) return s;
        char *nm = malloc(nlen + 1);
        if (!nm) {
            free(data);
            return uf__err(UF_ERR_NOMEM, "out of memory for a tensor name");
        }
        memcpy(nm, name, nlen + 1);
        return uf__tensors_push(w->out, nm, t->ndim, t->size, data);
    }
    if (o->type != T_DICT) return UF_OK;
    if (depth >= w->lim->max_depth)
        return uf__err(UF_ERR_LIMIT, "dicts nested deeper than %zu (at '%.*s')",
                       w->lim->max_depth, msglen(nlen), name);
    for (size_t i = 0; i + 1 < o->u.c.n; i += 2) {
        const pobj *k = o->u.c.v[i], *v = o->u.c.v[i + 1];
        if (v->type != T_DICT && v->type != T_TENSOR) continue; /* nothing to find there */
        char ibuf[24];
        const char *ks;
        size_t kl;
        if (k->type == T_STR) {
            ks = k->u.s.p;
            kl = k->u.s.len;
        } else if (k->type == T_INT) {
            kl = (size_t)snprintf(ibuf, sizeof ibuf, "%lld", (long long)k->u.i);
            ks = ibuf;
        } else {
            continue; /* other keys cannot name a tensor */
        }
        size_t cl = nlen + (nlen ? 1 : 0) + kl;
        char *child = malloc(cl + 1); /* "name.key" */
        if (!child) return uf__err(UF_ERR_NOMEM, "out of memory for a tensor name");
        memcpy(child, name, nlen);
        if (nlen) child[nlen] = '.';
        memcpy(child + nlen + (nlen ? 1 : 0), ks, kl);
        child[cl] = '\0';
        uf_status s = walk(w, v, child, cl, depth + 1);
        free(child);
        if (s != UF_OK) return s;
    }
    return UF_OK;
}

/* ------------------------------------------------------------------------------------ */
/* Entry points                                                                         */
/* ------------------------------------------------------------------------------------ */

/* The whole pipeline on a buffer known to start with "PK": zip -> byteorder -> pickle ->
 * walk. Everything allocated here is released before returning; tensors already pushed
 * to out on a failure are removed by the caller. */
static uf_status load_zip(const uint8_t *buf, size_t len, const uf__pth_limits *lim,
                          uf__tensors *out)
{
    zipr z;
    vm m;
    memset(&m, 0, sizeof m);
    uf_status s = zip_open(&z, buf, len);
    if (s != UF_OK) goto done;

    walker w = {lim, &z, out, out->n, 0, lim->max_data_bytes, false};
    if (!w.budget) {
        size_t four = len > (SIZE_MAX - ((size_t)64 << 20)) / 4 ? SIZE_MAX : 4 * len;
        w.budget = four + ((size_t)64 << 20);
        if (w.budget < four) w.budget = SIZE_MAX;
    }

    /* byteorder: absent (torch < 2.1) means little-endian */
    zent *bo = zip_find(&z, "", "byteorder", 9);
    if (bo) {
        const uint8_t *d;
        if ((s = zip_data(&z, bo, &w.budget, &d))) goto done;
        size_t n = (size_t)bo->usize;
        while (n && (d[n - 1] == '\n' || d[n - 1] == '\r' || d[n - 1] == ' ')) n--;
        const uint16_t one = 1;
        bool host_little = *(const uint8_t *)&one == 1;
        if (n == 6 && memcmp(d, "little", 6) == 0) w.swap = !host_little;
        else if (n == 3 && memcmp(d, "big", 3) == 0) w.swap = host_little;
        else {
            s = uf__err(UF_ERR_FORMAT, "unknown byteorder '%.*s'", msglen(n), (const char *)d);
            goto done;
        }
    }

    zent *pk = zip_find(&z, "", "data.pkl", 8);
    const uint8_t *pkl;
    if (!pk) {
        s = uf__err(UF_ERR_INTERNAL, "data.pkl vanished");
        goto done;
    }
    if ((s = zip_data(&z, pk, &w.budget, &pkl))) goto done;

    /* Objects may take 64 bytes per byte of the file: a real checkpoint's pickle is a
     * few KB of names beside megabytes of tensors, while a pickle of millions of tiny
     * opcodes deflates to almost nothing (a 58 KB file holding 30 M opcodes). */
    uf__pth_limits vml = *lim;
    size_t scaled = len > (SIZE_MAX - ((size_t)32 << 20)) / 64 ? SIZE_MAX
                                                                : ((size_t)32 << 20) + 64 * len;
    if (scaled < vml.max_vm_bytes) vml.max_vm_bytes = scaled;
    m.lim = &vml;
    m.z = &z;
    m.start = m.p = pkl;
    m.end = pkl + pk->usize;
    m.none.type = T_NONE;
    m.yes.type = m.no.type = T_BOOL;
    m.yes.u.i = 1;
    m.empty_tuple.type = T_TUPLE;
    pobj *root;
    if ((s = vm_run(&m, &root))) goto done;
    s = walk(&w, root, "", 0, 0);
done:
    vm_free(&m);
    zip_free(&z);
    return s;
}

uf_status uf__pth_load_mem_ex(const uint8_t *buf, size_t len, const char *name,
                              const uf__pth_limits *lim, uf__tensors *out)
{
    if (!name) name = "<memory>";
    if ((!buf && len) || !out) return uf__err(UF_ERR_ARG, "%s: NULL buffer or output", name);
    uf__pth_limits def = uf__pth_default_limits();
    if (!lim) lim = &def;
    size_t n0 = out->n;
    uf_status s;
    if (len >= 2 && buf[0] == 'P' && buf[1] == 'K') {
        s = load_zip(buf, len, lim, out);
    } else if (len >= 1 && buf[0] == 0x80) {
        /* a bare pickle: torch.save before 1.6 (or _use_new_zipfile_serialization=False) */
        return uf__err(UF_ERR_UNSUPPORTED,
                       "%s: legacy PyTorch (pre-1.6) checkpoint; convert it with: python -c "
                       "\"import torch; torch.save(torch.load('%s', map_location='cpu'), "
                       "'converted.pth')\"", name, name);
    } else {
        return uf__err(UF_ERR_FORMAT, "%s: not a PyTorch checkpoint (neither a zip archive "
                       "nor a pickle)", name);
    }
    if (s != UF_OK) {
        /* leave out as it was: drop the tensors this call appended */
        uf__tensors_truncate(out, n0);
        uf__err_prefix(s, name);
    }
    return s;
}

uf_status uf__pth_load_mem(const uint8_t *buf, size_t len, uf__tensors *out)
{
    return uf__pth_load_mem_ex(buf, len, NULL, NULL, out);
}

uf_status uf__pth_load(const char *path, uf__tensors *out)
{
    if (!path || !out) return uf__err(UF_ERR_ARG, "uf__pth_load: NULL argument");
    const uint8_t *buf;
    size_t len;
    bool mapped;
    uf_status s = uf__map_file(path, PTH_MAX_FILE, &buf, &len, &mapped);
    if (s != UF_OK) return s;
    s = uf__pth_load_mem_ex(buf, len, path, NULL, out);
    uf__unmap_file(buf, len, mapped);
    return s;
}
