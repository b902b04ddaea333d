/*
 * vit.c - the Vision Transformer forward pass (DINO / timm semantics) on the CPU.
 *
 * A session owns every scratch buffer of the pass, sized for the largest batch seen and
 * grown on demand, so repeated calls with the same sizes never allocate. Activations are
 * kept row-major as [T][D] with T = B * (1 + R + Np) tokens (CLS first in each image, then
 * DINOv2's R register tokens, then the patches), which turns every Linear layer into one
 * matrix product over all tokens of the batch. DINOv2's LayerScale is folded into the
 * weights at load time (checkpoint.c); its SwiGLU MLP (the giant) is fc1 without an
 * epilogue, silu(x1) * x2 in place, then fc2 on the x1 half.
 *
 * Speed: the Linear layers and attention run on our own kernels (kernels/kern.h), compiled
 * for baseline x86-64, AVX2+FMA and AVX-512 and chosen once at run time from cpuid:
 *  - the GEMM reads the immutable weights in place (no per-call weight packing, a full
 *    extra pass over the weights that weighs most at batch 1) and transposes only the
 *    (smaller) activations; bias, GELU and the residual add happen in its epilogue, and
 *    fc1 writes its output directly in the packed layout fc2 reads;
 *  - attention runs a panel of queries at a time per (image, head) with the same
 *    micro-kernel on strided views of the qkv buffer; no [heads][Nt][Nt] tensor exists;
 *  - LayerNorm and the output copies are fused into one parallel pass over the rows.
 * Every output element is summed in the same order whatever the thread count or batch
 * partitioning, so results are bitwise reproducible across both at a given level.
 * Threads: each session has its own count (uf_session_set_threads), passed to every
 * OpenMP region as a num_threads clause; nothing process-wide is changed. The blocks run
 * in one parallel region per call (the kernels' *_team entry points), so a step costs a
 * barrier, not the start of a team: with OMP_WAIT_POLICY=passive each start woke the
 * sleeping threads again, many times per block.
 *
 * Exactness: every step follows PyTorch's definition (biased-variance LayerNorm, exact
 * erf GELU, max-subtracted softmax, DINO's bicubic interpolate_pos_encoding computed in
 * double precision), so results match a float64 PyTorch reference to float rounding.
 */
#include "core/internal.h"
#include "kernels/kern.h"
#include "model/bf16.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------ */
/* Growable, 64-byte aligned scratch buffers                                            */
/* ------------------------------------------------------------------------------------ */

typedef struct buf {
    float *p;   /* [cap] */
    size_t cap; /* floats */
} buf;

/* Make b hold at least n floats. Contents are not preserved. On failure b is unchanged
 * (still valid) and UF_ERR_NOMEM is returned with a message naming the buffer. */
static uf_status buf_need(buf *b, size_t n, const char *what)
{
    if (n <= b->cap) return UF_OK;
    size_t bytes;
    if (!uf__mul_ok(n, sizeof(float), &bytes) || !uf__add_ok(bytes, 63, &bytes))
        return uf__err(UF_ERR_NOMEM, "forward: %s buffer size overflows", what);
    bytes &= ~(size_t)63;
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes) != 0 || !p)
        return uf__err(UF_ERR_NOMEM, "forward: cannot allocate %zu bytes for the %s buffer",
                       bytes, what);
    free(b->p);
    b->p = p;
    b->cap = bytes / sizeof(float);
    return UF_OK;
}

struct uf_session {
    const uf_backbone *bb;
    buf x;      /* [T][D]  residual stream                                      */
    buf h;      /* [T][D]  LayerNorm output (input of qkv / fc1)                */
    buf qkv;    /* [T][3D] q | k | v per token                                  */
    buf ctx;    /* [T][D]  attention output, heads concatenated; also the patch
                           embedding result [B*Np][D]                             */
    buf mlp;    /* [T][M]  MLP hidden activations (packed [T/mr][M][mr])      */
    buf pk;     /* [ceil(T/48)*48][max(D,M,3PP)] packed GEMM input            */
    buf col;    /* [B*Np][3*P*P] im2col of the pixels                           */
    buf att;    /* per-thread attention scratch [threads][attn_scratch(Nt, hd)] */
    buf clsatt; /* [B][heads][Nt] CLS query rows of the requested block         */
    buf roll;   /* [B][L][Nt][Nt] head-mean attention (rollout only)           */
    buf rvec;   /* [B][2][Nt] rollout row vectors                              */
    buf pos;    /* [1+Np][D] positional embedding for the cached grid           */
    int pos_gh, pos_gw; /* grid of the cached pos (0: none)                     */
    int threads;        /* uf_session_set_threads; 0: uf_get_threads()          */
};

void uf_session_set_threads(uf_session *s, int n)
{
    if (s) s->threads = n > 0 ? n : 0;
}

uf_status uf_session_new(const uf_backbone *bb, uf_session **out)
{
    if (!out) return uf__err(UF_ERR_ARG, "uf_session_new: out is NULL");
    *out = NULL;
    if (!bb) return uf__err(UF_ERR_ARG, "uf_session_new: backbone is NULL");
    const uf__vit_weights *w = &bb->w;
    if (w->dim < 1 || w->heads < 1 || w->dim % w->heads != 0 || w->depth < 1 ||
        w->patch < 1 || w->mlp_dim < 1 || w->grid_h < 1 || w->grid_w < 1 || !w->blocks)
        return uf__err(UF_ERR_ARG, "uf_session_new: backbone has inconsistent dimensions");
    uf_session *s = calloc(1, sizeof *s);
    if (!s) return uf__err(UF_ERR_NOMEM, "uf_session_new: out of memory");
    s->bb = bb;
    *out = s;
    return UF_OK;
}

void uf_session_free(uf_session *s)
{
    if (!s) return;
    buf *all[] = {&s->x,   &s->h,      &s->qkv,  &s->ctx,  &s->mlp, &s->col, &s->pk,
                  &s->att, &s->clsatt, &s->roll, &s->rvec, &s->pos};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]->p);
    free(s);
}

/* ------------------------------------------------------------------------------------ */
/* LayerNorm                                                                            */
/* ------------------------------------------------------------------------------------ */

/* y = LayerNorm(x) * w + b over one row of D (biased variance, two-pass). */
static void layernorm_row(const float *restrict x, const float *restrict w,
                          const float *restrict b, float eps, float *restrict y, int D)
{
    float sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int i = 0; i < D; i++) sum += x[i];
    float mean = sum / (float)D, var = 0;
#pragma omp simd reduction(+ : var)
    for (int i = 0; i < D; i++) {
        float d = x[i] - mean;
        var += d * d;
    }
    float rstd = 1.0f / sqrtf(var / (float)D + eps);
#pragma omp simd
    for (int i = 0; i < D; i++) y[i] = (x[i] - mean) * rstd * w[i] + b[i];
}

/* Row r of a GEMM input written straight into the packed layout the kernels read,
 * [panel][K][mr] (kernels/kern.h), so the GEMM that follows runs without its own packing
 * pass and the barrier after it. */
static void pack_row(const float *src, int K, int mr, size_t r, float *ap)
{
    float *o = ap + r / (size_t)mr * (size_t)K * (size_t)mr + r % (size_t)mr;
    for (int k = 0; k < K; k++) o[(size_t)k * mr] = src[k];
}

/* Zero the rows T.. of the last panel of a packed [panel][K][mr] input (never stored, but
 * computed: they must hold numbers). */
static void pack_pad(int K, int mr, size_t T, float *ap)
{
    float *o = ap + T / (size_t)mr * (size_t)K * (size_t)mr;
    for (size_t r = T % (size_t)mr; r > 0 && r < (size_t)mr; r++)
        for (int k = 0; k < K; k++) o[(size_t)k * mr + r] = 0.0f;
}

/* ------------------------------------------------------------------------------------ */
/* Positional embedding (DINO interpolate_pos_encoding)                                 */
/* ------------------------------------------------------------------------------------ */

/* PyTorch's cubic convolution kernels (upsample_bicubic2d: A = -0.75; the antialiased
 * _upsample_bicubic2d_aa: a = -0.5, as Pillow). */
static double cubic1(double x, double A) { return ((A + 2) * x - (A + 3)) * x * x + 1; }
static double cubic2(double x, double A) { return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A; }
static double cubic_aa(double x)
{
    x = fabs(x);
    return x < 1.0 ? cubic1(x, -0.5) : x < 2.0 ? cubic2(x, -0.5) : 0.0;
}

/* Row o of the [n_out][n_in] resampling matrix wt (zeroed by the caller) of one axis, as
 * PyTorch's bicubic F.interpolate(align_corners=False) computes it for the mode:
 *  - UF__POS_OFFSET: DINO passes scale_factor = (n_out + 0.1) / n_in and PyTorch maps
 *    with 1/scale_factor, not n_in/n_out; 4 taps, clamped at the borders;
 *  - UF__POS_EXACT: size = n_out, scale n_in / n_out; 4 taps, clamped;
 *  - UF__POS_EXACT_AA: antialias=True: a filter widened by the scale when shrinking
 *    (support 2 * scale), taps inside the input only, weights normalised to sum 1. */
static void interp_row(int mode, int n_in, int n_out, int o, double *wt)
{
    if (mode == UF__POS_EXACT_AA) {
        const double scale = (double)n_in / n_out, center = scale * (o + 0.5);
        const double support = scale >= 1.0 ? 2.0 * scale : 2.0;
        const double inv = scale >= 1.0 ? 1.0 / scale : 1.0;
        long lo = (long)(center - support + 0.5), hi = (long)(center + support + 0.5);
        lo = lo < 0 ? 0 : lo;
        hi = hi > n_in ? n_in : hi;
        double total = 0;
        for (long j = lo; j < hi; j++) total += wt[j] = cubic_aa((j - center + 0.5) * inv);
        if (total != 0.0)
            for (long j = lo; j < hi; j++) wt[j] /= total;
        return;
    }
    const double inv = mode == UF__POS_OFFSET ? 1.0 / (((double)n_out + 0.1) / (double)n_in)
                                              : (double)n_in / (double)n_out;
    const double src = ((double)o + 0.5) * inv - 0.5;
    const double f = floor(src), t = src - f, A = -0.75;
    const double w4[4] = {cubic2(t + 1.0, A), cubic1(t, A), cubic1(1.0 - t, A),
                          cubic2(2.0 - t, A)};
    for (int k = 0; k < 4; k++) {
        long v = (long)f - 1 + k;
        wt[v < 0 ? 0 : v > n_in - 1 ? n_in - 1 : v] += w4[k];
    }
}

/* Point *pos at the positional embedding [1+gh*gw][D] for a gh x gw patch grid of an
 * H x W input: the trained table when the model uses it as is, else its bicubic
 * resampling in the backbone's mode (w->pos_interp), separable, in double precision,
 * cached in the session for the last grid. */
static uf_status pos_prepare(uf_session *s, int gh, int gw, int H, int W, const float **pos)
{
    const uf__vit_weights *w = &s->bb->w;
    const int D = w->dim, Gh = w->grid_h, Gw = w->grid_w;
    int as_is;
    if (Gh == Gw) /* DINO, DINOv2: `if npatch == N and w == h: return self.pos_embed` */
        as_is = (size_t)gh * gw == (size_t)Gh * Gw && H == W;
    else
        as_is = gh == Gh && gw == Gw;
    if (as_is) {
        *pos = w->pos;
        return UF_OK;
    }
    if (s->pos_gh == gh && s->pos_gw == gw) {
        *pos = s->pos.p;
        return UF_OK;
    }
    size_t np = (size_t)gh * gw, n;
    if (!uf__mul_ok(np + 1, (size_t)D, &n)) return uf__err(UF_ERR_LIMIT, "forward: grid too large");
    s->pos_gh = s->pos_gw = 0;
    uf_status st = buf_need(&s->pos, n, "positional embedding");
    if (st != UF_OK) return st;
    /* tmp [Gw][D] one row resampled vertically; wy [gh][Gh], wx [gw][Gw] */
    double *tmp = malloc((size_t)Gw * D * sizeof(double));
    double *wy = calloc((size_t)gh * Gh, sizeof(double)), *wx = calloc((size_t)gw * Gw, sizeof(double));
    if (!tmp || !wy || !wx) {
        free(tmp);
        free(wy);
        free(wx);
        return uf__err(UF_ERR_NOMEM, "forward: out of memory for positional embedding");
    }
    for (int oy = 0; oy < gh; oy++) interp_row(w->pos_interp, Gh, gh, oy, wy + (size_t)oy * Gh);
    for (int ox = 0; ox < gw; ox++) interp_row(w->pos_interp, Gw, gw, ox, wx + (size_t)ox * Gw);
    float *out = s->pos.p;
    memcpy(out, w->pos, (size_t)D * sizeof(float)); /* CLS position unchanged */
    const float *grid = w->pos + D;                 /* [Gh][Gw][D] */
    for (int oy = 0; oy < gh; oy++) {
        const double *ry = wy + (size_t)oy * Gh;
        /* vertical pass: tmp[x][d] = sum_y wy[oy][y] grid[y][x][d] */
        for (size_t i = 0; i < (size_t)Gw * D; i++) tmp[i] = 0;
        for (int y = 0; y < Gh; y++) {
            if (ry[y] == 0.0) continue;
            const float *g = grid + (size_t)y * Gw * D;
            for (size_t i = 0; i < (size_t)Gw * D; i++) tmp[i] += ry[y] * g[i];
        }
        /* horizontal pass */
        for (int ox = 0; ox < gw; ox++) {
            const double *rx = wx + (size_t)ox * Gw;
            float *o = out + (1 + (size_t)oy * gw + ox) * D;
            for (int d = 0; d < D; d++) {
                double acc = 0;
                for (int x = 0; x < Gw; x++) acc += rx[x] * tmp[(size_t)x * D + d];
                o[d] = (float)acc;
            }
        }
    }
    free(tmp);
    free(wy);
    free(wx);
    s->pos_gh = gh;
    s->pos_gw = gw;
    *pos = out;
    return UF_OK;
}

/* ------------------------------------------------------------------------------------ */
/* Forward                                                                              */
/* ------------------------------------------------------------------------------------ */

/* im2col: col[b*Np + py*gw + px][c*P*P + ky*P + kx] = pixels[b][c][py*P+ky][px*P+kx].
 * Called by every thread of the forward's team. */
static void im2col(const float *px, int B, int H, int W, int P, int gh, int gw, float *col)
{
    const size_t K = 3 * (size_t)P * P;
#pragma omp for schedule(static)
    for (int r = 0; r < B * gh; r++) {
        const int b = r / gh, py = r % gh;
        for (int pxi = 0; pxi < gw; pxi++) {
            float *o = col + (((size_t)b * gh + py) * gw + pxi) * K;
            for (int c = 0; c < 3; c++)
                for (int ky = 0; ky < P; ky++) {
                    const float *src =
                        px + (((size_t)b * 3 + c) * H + (size_t)py * P + ky) * W + (size_t)pxi * P;
                    memcpy(o + ((size_t)c * P + ky) * P, src, (size_t)P * sizeof(float));
                }
        }
    }
}

/* Validate a request; sets *nrun to the number of blocks to run. */
static uf_status check_request(const uf__vit_weights *w, const float *pixels, int B, int H,
                               int W, const uf_forward_request *req,
                               const uf_forward_output *out, int *nrun)
{
    if (!pixels || !req || !out) return uf__err(UF_ERR_ARG, "uf_forward: NULL argument");
    if (B < 1) return uf__err(UF_ERR_ARG, "uf_forward: batch size %d < 1", B);
    if (H < w->patch || W < w->patch)
        return uf__err(UF_ERR_ARG, "uf_forward: input %dx%d smaller than the patch size %d", H,
                       W, w->patch);
    const int L = w->depth;
    if (L < 64 && (req->blocks >> L) != 0)
        return uf__err(UF_ERR_ARG, "uf_forward: block mask 0x%llx selects blocks beyond depth %d",
                       (unsigned long long)req->blocks, L);
    if (req->attn_block < 0 || req->attn_block > L)
        return uf__err(UF_ERR_ARG, "uf_forward: attn_block %d outside 0..%d", req->attn_block, L);
    if (req->rollout && req->attn_block == 0)
        return uf__err(UF_ERR_ARG, "uf_forward: rollout requested without attn_block");
    if (!req->blocks && !req->attn_block && !req->want_cls && !req->want_logits)
        return uf__err(UF_ERR_ARG, "uf_forward: nothing requested");
    if (req->want_logits && (w->n_classes <= 0 || !w->head_w))
        return uf__err(UF_ERR_ARG, "uf_forward: logits requested but the model has no head");
    if ((req->blocks && !out->blocks) || (req->attn_block && !out->attn) ||
        (req->want_cls && !out->cls) || (req->want_logits && !out->logits))
        return uf__err(UF_ERR_ARG, "uf_forward: output buffer missing for a requested output");
    int n = 0;
    for (int i = 0; i < L && i < 64; i++)
        if (req->blocks >> i & 1) n = i + 1;
    if (req->attn_block > n) n = req->attn_block;
    if (req->want_cls || req->want_logits) n = L;
    *nrun = n;
    return UF_OK;
}

/* The state of one forward call: sizes and the session's buffers, shared by its steps. */
typedef struct fwd {
    uf_session *s;
    const uf__vit_weights *w;
    const uf__kern *kn;
    const uf__lp *lp; /* the BF16 weights when the backbone runs in BF16, else NULL */
    int B, D, P, M, heads, nth, mr, nrun, L_att; /* L_att: blocks whose attention mean is kept */
    int M1;                                      /* fc1 rows: M, or 2M for SwiGLU              */
    int R;                                       /* register tokens, after CLS                 */
    int iNt, iNp, iT;                            /* tokens per image, patches per image, B * Nt */
    size_t Np, Nt, T, nn;                        /* nn = Nt * Nt                               */
    const float *pos;                            /* [Nt][D] positional embeddings for the grid */
} fwd;

/* Check the request, size every buffer (overflow-checked; every GEMM dimension must fit an
 * int) and prepare the positional embeddings of the grid. */
static uf_status fwd_prepare(uf_session *s, const float *pixels, int B, int H, int W,
                             const uf_forward_request *req, uf_forward_output *out, fwd *f)
{
    const uf__vit_weights *w = &s->bb->w;
    uf_status st = check_request(w, pixels, B, H, W, req, out, &f->nrun);
    if (st != UF_OK) return st;
    f->s = s;
    f->w = w;
    f->B = B;
    const int D = f->D = w->dim, P = f->P = w->patch, M = f->M = w->mlp_dim;
    const int M1 = f->M1 = w->swiglu ? 2 * M : M;
    f->heads = w->heads;
    f->R = w->n_reg;
    const int gh = H / P, gw = W / P;
    size_t Np = f->Np = (size_t)gh * gw, Nt = f->Nt = Np + 1 + (size_t)f->R, T, tmp, big;
    if (!uf__mul_ok((size_t)B, Nt, &T) || T > (size_t)INT32_MAX / 4 ||
        !uf__mul_ok(T, (size_t)(3 * D > M1 ? 3 * D : M1), &big) ||
        !uf__mul_ok(T, (size_t)3 * P * P, &tmp))
        return uf__err(UF_ERR_LIMIT, "uf_forward: batch of %d images of %dx%d is too large", B, H,
                       W);
    f->T = T;
    const int nth = f->nth = s->threads > 0 ? s->threads : uf_get_threads();
    const uf__kern *kn = f->kn = uf__kern_get();
    f->lp = s->bb->precision == UF_PRECISION_BF16 ? s->bb->lp : NULL;

    /* non-finite pixels would silently poison every output */
    size_t npx;
    if (!uf__mul_ok((size_t)B * 3, (size_t)H * (size_t)W, &npx))
        return uf__err(UF_ERR_LIMIT, "uf_forward: input too large");
    int bad = 0;
#pragma omp parallel for reduction(| : bad) schedule(static) num_threads(nth)
    for (size_t i = 0; i < npx; i++) bad |= !isfinite(pixels[i]);
    if (bad) return uf__err(UF_ERR_NONFINITE, "uf_forward: input pixels contain NaN or Inf");

    /* packed GEMM input: whole 48-row panels of the widest K */
    size_t kmax = (size_t)(D > M ? D : M), npk;
    if (kmax < (size_t)3 * P * P) kmax = (size_t)3 * P * P;
    if (!uf__mul_ok((T + UF__MR_MAX - 1) / UF__MR_MAX * UF__MR_MAX, kmax, &npk))
        return uf__err(UF_ERR_LIMIT, "uf_forward: batch too large");
    const int L_att = f->L_att = req->rollout ? req->attn_block : 0;
    size_t n_att, n_roll = 0, nn;
    const size_t att_per = kn->attn_scratch((int)Nt, D / f->heads);
    if (!uf__mul_ok((size_t)nth, att_per, &n_att) || !uf__mul_ok(Nt, Nt, &nn) ||
        (L_att && (!uf__mul_ok(nn, (size_t)B * L_att, &n_roll))))
        return uf__err(UF_ERR_LIMIT, "uf_forward: attention buffers too large");
    f->nn = nn;

    if ((st = buf_need(&s->x, T * D, "token")) || (st = buf_need(&s->h, T * D, "norm")) ||
        (st = buf_need(&s->qkv, T * 3 * D, "qkv")) || (st = buf_need(&s->ctx, T * D, "context")) ||
        (st = buf_need(&s->mlp, (T + UF__MR_MAX - 1) / UF__MR_MAX * UF__MR_MAX * M1, "mlp")) ||
        (st = buf_need(&s->col, B * Np * 3 * P * P, "im2col")) ||
        (st = buf_need(&s->pk, npk, "packing")) || (st = buf_need(&s->att, n_att, "attention")) ||
        (st = buf_need(&s->clsatt, (size_t)B * f->heads * Nt, "cls attention")) ||
        (L_att && (st = buf_need(&s->roll, n_roll, "rollout"))) ||
        (L_att && (st = buf_need(&s->rvec, (size_t)B * 2 * Nt, "rollout vector"))))
        return st;
    if ((st = pos_prepare(s, gh, gw, H, W, &f->pos)) != UF_OK) return st;
    f->mr = kn->mr;
    f->iNt = (int)Nt;
    f->iNp = (int)Np;
    f->iT = (int)T;
    (void)out;
    return UF_OK;
}

/* The steps below run inside the forward's one parallel region (uf_forward), called by
 * every thread of its team: their loops are orphaned work-sharing constructs, and each
 * ends with the team's barrier where the next step needs all of its output (a region per
 * step cost a wake-up of the sleeping threads per step with OMP_WAIT_POLICY=passive). */

/* One Linear layer, kn->gemm_team's contract (kernels/kern.h, every thread of the team):
 * on the FP32 weights w, or on lw, their BF16 copy (model/bf16.h), when the backbone runs in
 * BF16 and lw is given. (The patch embedding stays FP32: rounding the pixels to BF16 cost
 * more accuracy than its 1-2 % of the FLOPs are worth.) */
static void linear(const fwd *f, int M, int N, int K, const float *A, int lda, const float *w,
                   const void *lw, const float *bias, float *C, int ldc, uf__epi e, float *ap,
                   float *pout)
{
    if (f->lp && lw)
        uf__lp_gemm(f->kn, f->lp, f->nth, M, N, K, A, lda, lw, bias, C, ldc, e, ap, pout);
    else
        f->kn->gemm_team(f->nth, M, N, K, A, lda, w, bias, C, ldc, e, ap, pout);
}

/* Patch embedding, tokens = [CLS + pos[0]; registers; patches + pos[1..]] (DINOv2's
 * registers carry no positional embedding), and the first block's LayerNorm (packed for
 * the first qkv GEMM). */
static void fwd_embed(const fwd *f, const float *pixels, int H, int W)
{
    uf_session *s = f->s;
    const uf__vit_weights *w = f->w;
    const int D = f->D, P = f->P, nth = f->nth, iNt = f->iNt, iNp = f->iNp, R = f->R;
    float *x = s->x.p, *h = s->h.p, *ctx = s->ctx.p, *pk = s->pk.p;
    /* patch embedding: ctx[B*Np][D] = im2col(pixels) * patch_w^T + patch_b */
    im2col(pixels, f->B, H, W, P, H / P, W / P, s->col.p);
    f->kn->gemm_team(nth, f->B * iNp, D, 3 * P * P, s->col.p, 3 * P * P, w->patch_w,
                     w->patch_b, ctx, D, UF__EPI_SET, s->pk.p, NULL);
    const uf__block_weights *bw0 = &w->blocks[0];
#pragma omp single nowait
    pack_pad(D, f->mr, f->T, pk);
#pragma omp for schedule(static)
    for (int t = 0; t < f->iT; t++) {
        const int b = t / iNt, i = t % iNt;
        float *xr = x + (size_t)t * D;
        if (i >= 1 && i <= R) {
            memcpy(xr, w->reg + (size_t)(i - 1) * D, (size_t)D * sizeof(float));
        } else {
            const int pi = i == 0 ? 0 : i - R; /* row of pos */
            const float *src = i == 0 ? w->cls : ctx + ((size_t)b * f->Np + pi - 1) * D;
            const float *pp = f->pos + (size_t)pi * D;
#pragma omp simd
            for (int d = 0; d < D; d++) xr[d] = src[d] + pp[d];
        }
        layernorm_row(xr, bw0->ln1_w, bw0->ln1_b, w->ln_eps, h + (size_t)t * D, D);
        pack_row(h + (size_t)t * D, D, f->mr, (size_t)t, pk);
    }
}

/* Block l: attention and MLP halves, the block's output into ob ([B][Np][D], or NULL), and
 * the next block's LayerNorm (packed) when there is one. */
static void fwd_block(const fwd *f, int l, const uf_forward_request *req, uf__attn_job *aj,
                      float *ob)
{
    uf_session *s = f->s;
    const uf__vit_weights *w = f->w;
    const uf__kern *kn = f->kn;
    const int D = f->D, M = f->M, iT = f->iT, iNt = f->iNt, mr = f->mr;
    float *x = s->x.p, *h = s->h.p, *qkv = s->qkv.p, *ctx = s->ctx.p, *mlp = s->mlp.p;
    float *pk = s->pk.p;
    const uf__block_weights *bw = &w->blocks[l];
    const uf__lp_block *lb = f->lp ? &f->lp->blocks[l] : &(const uf__lp_block){0};
    aj->clsatt = (!req->rollout && req->attn_block == l + 1) ? s->clsatt.p : NULL;
    aj->mean = l < f->L_att ? s->roll.p + (size_t)l * f->nn : NULL;
    /* attention half; qkv and fc1 read h packed by the LayerNorm passes (A NULL). BF16: a
     * block whose attention probabilities are outputs (Back Patch Masking's CLS row,
     * rollout) computes its qkv in FP32: rounded q and k move every logit before the
     * exponential, and the map is thresholded (measured on MTD: README, BF16 accuracy) */
    linear(f, iT, 3 * D, D, NULL, 0, bw->qkv_w, aj->clsatt || aj->mean ? NULL : lb->qkv,
           bw->qkv_b, qkv, 3 * D, UF__EPI_SET, pk, NULL);
    aj->mean_img = (size_t)f->L_att * f->nn;
    kn->attention_team(aj);
    linear(f, iT, D, D, ctx, D, bw->proj_w, lb->proj, bw->proj_b, x, D, UF__EPI_ACC, pk, NULL);
#pragma omp single nowait
    pack_pad(D, mr, f->T, pk);
#pragma omp for schedule(static)
    for (int t = 0; t < iT; t++) {
        layernorm_row(x + (size_t)t * D, bw->ln2_w, bw->ln2_b, w->ln_eps, h + (size_t)t * D, D);
        pack_row(h + (size_t)t * D, D, mr, (size_t)t, pk);
    }
    /* MLP half */
    if (w->swiglu) { /* hidden = silu(x1) * x2 into the x1 half, fc2 reads it with stride 2M */
        linear(f, iT, 2 * M, D, NULL, 0, bw->fc1_w, lb->fc1, bw->fc1_b, mlp, 2 * M, UF__EPI_SET,
               pk, NULL);
#pragma omp for schedule(static)
        for (int t = 0; t < iT; t++) {
            float *r = mlp + (size_t)t * 2 * M;
            for (int k = 0; k < M; k++) r[k] = r[k] / (1.0f + expf(-r[k])) * r[M + k];
        }
        linear(f, iT, D, M, mlp, 2 * M, bw->fc2_w, lb->fc2, bw->fc2_b, x, D, UF__EPI_ACC, pk,
               NULL);
    } else if (D <= kn->kc) { /* fc1 writes fc2's packed input directly (mlp is packed) */
        linear(f, iT, M, D, NULL, 0, bw->fc1_w, lb->fc1, bw->fc1_b, NULL, 0, UF__EPI_GELU, pk,
               mlp);
        linear(f, iT, D, M, NULL, 0, bw->fc2_w, lb->fc2, bw->fc2_b, x, D, UF__EPI_ACC, mlp, NULL);
    } else {
        linear(f, iT, M, D, NULL, 0, bw->fc1_w, lb->fc1, bw->fc1_b, mlp, M, UF__EPI_GELU, pk,
               NULL);
        linear(f, iT, D, M, mlp, M, bw->fc2_w, lb->fc2, bw->fc2_b, x, D, UF__EPI_ACC, pk, NULL);
    }
    /* outputs of this block, then the next block's LayerNorm */
    const uf__block_weights *nb = l + 1 < f->nrun ? &w->blocks[l + 1] : NULL;
    if (!ob && !nb) return;
    if (nb) {
#pragma omp single nowait
        pack_pad(D, mr, f->T, pk);
    }
#pragma omp for schedule(static)
    for (int t = 0; t < iT; t++) {
        const int b = t / iNt, i = t % iNt;
        const float *xr = x + (size_t)t * D;
        if (ob && i > f->R)
            memcpy(ob + ((size_t)b * f->Np + i - 1 - f->R) * D, xr, (size_t)D * sizeof(float));
        if (nb) {
            layernorm_row(xr, nb->ln1_w, nb->ln1_b, w->ln_eps, h + (size_t)t * D, D);
            pack_row(h + (size_t)t * D, D, mr, (size_t)t, pk);
        }
    }
}

/* CLS attention of one block, mean over heads, patch columns (not CLS, not the registers):
 * out->attn [B][Np]. */
static void fwd_cls_attention(const fwd *f, uf_forward_output *out)
{
    const float *ca = f->s->clsatt.p; /* [B][heads][Nt] */
    for (int b = 0; b < f->B; b++)
        for (size_t p = 0; p < f->Np; p++) {
            float acc = 0;
            for (int hh = 0; hh < f->heads; hh++)
                acc += ca[((size_t)b * f->heads + hh) * f->Nt + 1 + f->R + p];
            out->attn[(size_t)b * f->Np + p] = acc / (float)f->heads;
        }
}

/* Rollout: r = e0^T A'_L, then r <- r A'_l for l = L-1..1, A' = (A + I) / 2; the patch
 * columns of r into out->attn [B][Np]. */
static void fwd_rollout(const fwd *f, uf_forward_output *out)
{
    const size_t Nt = f->Nt, nn = f->nn, Np = f->Np;
    const int L_att = f->L_att;
    uf_session *s = f->s;
#pragma omp parallel for schedule(static) num_threads(f->nth)
    for (int b = 0; b < f->B; b++) {
        float *r = s->rvec.p + (size_t)b * 2 * Nt, *r2 = r + Nt;
        const float *A = s->roll.p + (size_t)b * L_att * nn + (size_t)(L_att - 1) * nn;
        for (size_t j = 0; j < Nt; j++) r[j] = 0.5f * (A[j] + (j == 0));
        for (int l = L_att - 2; l >= 0; l--) {
            A = s->roll.p + (size_t)b * L_att * nn + (size_t)l * nn;
            for (size_t j = 0; j < Nt; j++) r2[j] = 0.5f * r[j];
            for (size_t i = 0; i < Nt; i++) {
                const float ri = 0.5f * r[i];
                const float *Ai = A + i * Nt;
#pragma omp simd
                for (size_t j = 0; j < Nt; j++) r2[j] += ri * Ai[j];
            }
            float *t2 = r;
            r = r2;
            r2 = t2;
        }
        memcpy(out->attn + (size_t)b * Np, r + 1 + f->R, Np * sizeof(float));
    }
}

/* Final LayerNorm of CLS (out->cls [B][D]) and the classifier (out->logits [B][C]). */
static void fwd_head(const fwd *f, const uf_forward_request *req, uf_forward_output *out)
{
    const uf__vit_weights *w = f->w;
    const int D = f->D;
    const float *x = f->s->x.p;
    float *cls = req->want_cls ? out->cls : f->s->h.p; /* [B][D] */
    for (int b = 0; b < f->B; b++)
        layernorm_row(x + (size_t)b * f->Nt * D, w->norm_w, w->norm_b, w->ln_eps,
                      cls + (size_t)b * D, D);
    if (!req->want_logits) return;
    const int C = w->n_classes;
    for (int b = 0; b < f->B; b++)
        for (int c = 0; c < C; c++) {
            const float *hw = w->head_w + (size_t)c * D, *cb = cls + (size_t)b * D;
            float acc = 0;
#pragma omp simd reduction(+ : acc)
            for (int d = 0; d < D; d++) acc += hw[d] * cb[d];
            out->logits[(size_t)b * C + c] = acc + w->head_b[c];
        }
}

uf_status uf_forward(uf_session *s, const float *pixels, int B, int H, int W,
                     const uf_forward_request *req, uf_forward_output *out)
{
    if (!s) return uf__err(UF_ERR_ARG, "uf_forward: session is NULL");
    fwd f;
    uf_status st = fwd_prepare(s, pixels, B, H, W, req, out, &f);
    if (st != UF_OK) return st;
    /* one team for the whole pass (nth 1: an inactive region, the loops bind to it) */
#pragma omp parallel num_threads(f.nth) if (f.nth > 1)
    {
        fwd_embed(&f, pixels, H, W);
        uf__attn_job aj = {.B = B, .Nt = f.iNt, .D = f.D, .heads = f.heads, .nth = f.nth,
                           .qkv = s->qkv.p, .ctx = s->ctx.p, .scores = s->att.p};
        int sel = 0; /* index of the next selected block output */
        for (int l = 0; l < f.nrun; l++) {
            float *ob =
                (req->blocks >> l & 1) ? out->blocks + (size_t)sel++ * B * f.Np * f.D : NULL;
            fwd_block(&f, l, req, &aj, ob);
        }
    }
    if (req->attn_block && !req->rollout) fwd_cls_attention(&f, out);
    if (f.L_att) fwd_rollout(&f, out);
    if (req->want_cls || req->want_logits) fwd_head(&f, req, out);
    return UF_OK;
}
