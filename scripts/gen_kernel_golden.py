#!/usr/bin/python3
"""gen_kernel_golden.py - golden values for the detector kernels (tests/test_kernels.c).

Run with /usr/bin/python3 (needs torch, scipy, numpy). Writes .npy files into
tests/data/kernels/. References, each the library call UniFormaly / PatchCore uses:
  bpm_*       torch.nn.AvgPool2d(k, 1, k//2) on a CLS attention map, / max, > 0.1
  up_*        torch.nn.functional.interpolate(mode="bilinear", align_corners=False)
  gauss_*     scipy.ndimage.gaussian_filter(float32 map, sigma)
  topk_*      torch.topk + mean with K = int(round(k * N)) (Python round, half to even)
  knn_*       numpy float64 brute force (faiss IndexFlatL2 semantics: squared L2, mean of k)
  coreset_*   numpy float64 PatchCore ApproximateGreedyCoresetSampler with our generators
  pca_*       AnomalyDINO's compute_background_mask (src/backbones.py of
              github.com/dammsi/AnomalyDINO): sklearn PCA(n_components=1).fit_transform
              (full solver; theirs is the randomized approximation of it) > threshold,
              negated when the central crop keeps <= 35%, then cv2.dilate and
              cv2.morphologyEx(MORPH_CLOSE) with 3x3 ones, written with scipy.ndimage
              (cv2's default morphology border: outside pixels never count)
Inputs of knn/coreset are not stored: they come from a splitmix64 integer grid that the C
test regenerates (values (v - 1024) / 128, exact in float32), keeping the files small.
"""
import os
import sys

import numpy as np
import scipy.ndimage as ndimage
import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "kernels")
M64 = (1 << 64) - 1


class SplitMix:
    """The C generator of coreset.c / test_kernels.c: splitmix64 on a seeded stream."""

    def __init__(self, seed, stream):
        self.s = (seed ^ ((stream * 0xD1B54A32D192ED03) & M64)) & M64

    def next(self):
        self.s = (self.s + 0x9E3779B97F4A7C15) & M64
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        return z ^ (z >> 31)

    def unif(self):
        return (self.next() >> 11) * 2.0 ** -53

    def below(self, m):
        return (self.next() * m) >> 64


def grid(seed, n, d):
    """[n][d] float32 test inputs: (top 11 bits - 1024) / 128 from stream 99."""
    r = SplitMix(seed, 99)
    v = [((r.next() >> 53) - 1024) / 128.0 for _ in range(n * d)]
    return np.array(v, dtype=np.float32).reshape(n, d)


def partial_shuffle(r, n_all, n):
    perm = list(range(n_all))
    for j in range(n):
        p = j + r.below(n_all - j)
        perm[j], perm[p] = perm[p], perm[j]
    return perm[:n]


def save(name, arr):
    np.save(os.path.join(OUT, name + ".npy"), np.ascontiguousarray(arr))


# ---- Back Patch Masking --------------------------------------------------------------
def gen_bpm(rng):
    for gh, gw, k in [(14, 14, 7), (14, 14, 3), (28, 28, 7), (6, 5, 3), (6, 5, 7)]:
        # A CLS attention map: softmax over patches of a blob plus noise.
        yy, xx = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
        cy, cx = rng.uniform(0, gh), rng.uniform(0, gw)
        logits = -((yy - cy) ** 2 + (xx - cx) ** 2) / (0.1 * gh * gw) + rng.normal(0, 1.0, (gh, gw))
        attn = torch.softmax(torch.tensor(logits.reshape(-1), dtype=torch.float32), 0).reshape(gh, gw)
        pool = torch.nn.AvgPool2d(kernel_size=k, stride=1, padding=k // 2)
        pooled = pool(attn[None, None])[0, 0]
        smooth = pooled / pooled.max()
        mask = smooth > 0.1
        tag = f"bpm_{gh}x{gw}_k{k}"
        save(tag + "_in", attn.numpy())
        save(tag + "_smooth", smooth.numpy())
        save(tag + "_mask", mask.numpy().astype(np.uint8))


# ---- bilinear upsampling and Gaussian smoothing ---------------------------------------
def gen_maps(rng):
    src14 = rng.uniform(0, 2, (14, 14)).astype(np.float32)
    up = F.interpolate(torch.tensor(src14)[None, None], size=(224, 224), mode="bilinear",
                       align_corners=False)[0, 0].numpy()
    save("up_14_in", src14)
    save("up_14_224", up)
    src65 = rng.normal(0, 1, (6, 5)).astype(np.float32)
    up65 = F.interpolate(torch.tensor(src65)[None, None], size=(50, 37), mode="bilinear",
                         align_corners=False)[0, 0].numpy()
    save("up_6x5_in", src65)
    save("up_6x5_50x37", up65)
    # Downscaling works too (not used by the detector but cheap to pin down).
    down = F.interpolate(torch.tensor(up65)[None, None], size=(7, 9), mode="bilinear",
                         align_corners=False)[0, 0].numpy()
    save("up_50x37_7x9", down)
    # RescaleSegmentor: gaussian_filter(sigma=4) of the 224 x 224 upsampled map.
    save("gauss_224_s4", ndimage.gaussian_filter(up, sigma=4))
    # Small, odd shapes where the kernel (radius 16) is longer than the image.
    for (h, w, s) in [(10, 7, 4.0), (1, 5, 4.0), (9, 13, 1.5), (3, 2, 0.7)]:
        x = rng.normal(0, 1, (h, w)).astype(np.float32)
        tag = f"gauss_{h}x{w}_s{str(s).replace('.', 'p')}"
        save(tag + "_in", x)
        save(tag, ndimage.gaussian_filter(x, sigma=s))


# ---- top-K mean --------------------------------------------------------------------------
def gen_topk(rng):
    cases = []
    for n, frac in [(784, 0.05), (784, 0.01), (50, 0.05), (30, 0.05), (10, 0.05), (196, 1.0)]:
        # Few distinct levels and many zeros (masked background): lots of ties.
        s = (rng.integers(0, 6, n) * 0.25).astype(np.float32)
        s[rng.uniform(0, 1, n) < 0.4] = 0
        K = int(round(frac * n))
        K = max(1, min(n, K))
        vals = torch.topk(torch.tensor(s), K).values
        cases.append((s, frac, K, float(vals.mean())))
    for i, (s, frac, K, mean) in enumerate(cases):
        save(f"topk_{i}_in", s)
        save(f"topk_{i}_ref", np.array([frac, K, mean], dtype=np.float64))


# ---- kNN -----------------------------------------------------------------------------------
def knn_ref(Q, B, k):
    Q64, B64 = Q.astype(np.float64), B.astype(np.float64)
    d = np.stack([((B64 - q) ** 2).sum(-1) for q in Q64])  # [nq][nb], exact in float64
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    dk = np.take_along_axis(d, idx, axis=1)
    return dk.mean(1), idx.astype(np.int64), dk


def knn_inputs(seed, nq, nb, D):
    """Bank and queries as the C test builds them: grid values, the first 10 queries
    copies of bank rows 17 i, the next 10 those rows with one coordinate + 1/128."""
    B = grid(seed, nb, D)
    Q = grid(seed + 1, nq, D)
    for i in range(min(10, nq)):
        Q[i] = B[(17 * i) % nb]
    for i in range(10, min(20, nq)):
        Q[i] = B[(17 * i) % nb]
        Q[i, i % D] += np.float32(1 / 128)
    return Q, B


def gen_knn():
    for (nq, nb, D, seed) in [(300, 5000, 192, 11), (200, 2100, 7, 12), (5, 1, 7, 13)]:
        Q, B = knn_inputs(seed, nq, nb, D)
        for k in ([1, 3] if nb >= 3 else [1]):
            score, idx, _ = knn_ref(Q, B, k)
            tag = f"knn_{nq}_{nb}_{D}_k{k}"
            save(tag + "_score", score)
            save(tag + "_idx", idx)


# ---- coreset -----------------------------------------------------------------------------
def coreset_ref(X, fraction, seed):
    """PatchCore's ApproximateGreedyCoresetSampler in float64 with our generators."""
    N, D = X.shape
    X64 = X.astype(np.float64)
    if D != 128:
        r = SplitMix(seed, 1)
        bound = 1.0 / np.sqrt(D)
        W = np.array([np.float32((2.0 * r.unif() - 1.0) * bound) for _ in range(128 * D)],
                     dtype=np.float32).reshape(128, D)
        P = X64 @ W.astype(np.float64).T
    else:
        W = None
        P = X64
    ns = min(10, N)
    start = partial_shuffle(SplitMix(seed, 2), N, ns)
    dist = lambda a, b: np.sqrt(np.maximum(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1), 0))
    m = dist(P, P[start]).mean(-1)
    n_keep = max(1, int(N * fraction)) if fraction < 1 else N
    out = []
    for _ in range(n_keep):
        c = int(np.argmax(m))
        out.append(c)
        m = np.minimum(m, dist(P, P[c:c + 1])[:, 0])
    return np.array(out, dtype=np.int64), W, np.array(start, dtype=np.int64)


def coreset_inputs(seed, N, D):
    """Grid values; with D == 128 rows 5..9 duplicate rows 0..4 (exact ties)."""
    X = grid(seed, N, D)
    if D == 128:
        X[5:10] = X[0:5]
    return X


def gen_coreset():
    for (N, D, frac, seed) in [(600, 192, 0.1, 21), (500, 128, 0.2, 22), (40, 7, 0.5, 23)]:
        X = coreset_inputs(seed, N, D)
        idx, W, start = coreset_ref(X, frac, seed)
        tag = f"coreset_{N}_{D}"
        save(tag + "_idx", idx)
        save(tag + "_start", start)
        if W is not None:
            save(tag + "_w16", W.reshape(-1)[:16])
    rnd = partial_shuffle(SplitMix(5, 3), 1000, 100)
    save("coreset_random_1000_0p1_seed5", np.array(rnd, dtype=np.int64))


def pca_mask_ref(X, gh, gw, thr, border=0.2):
    from sklearn.decomposition import PCA
    pc = PCA(n_components=1, svd_solver="full").fit_transform(X.astype(np.float32))[:, 0]
    mask = pc > thr
    m = mask.reshape(gh, gw)[int(gh * border):int(gh * (1 - border)),
                             int(gw * border):int(gw * (1 - border))]
    if m.sum() <= m.size * 0.35:
        mask = -pc > thr
    k = np.ones((3, 3), bool)
    mask = ndimage.binary_dilation(mask.reshape(gh, gw), k, border_value=0)
    mask = ndimage.binary_dilation(mask, k, border_value=0)       # closing: dilate,
    mask = ndimage.binary_erosion(mask, k, border_value=1)        # then erode
    return pc.astype(np.float64), mask.astype(np.uint8).ravel()


def gen_pca(rng):
    # (name, gh, gw, D, foreground(y, x), threshold): a centred disc with a hole (kept:
    # the foreground is the minority, so its projections are the large positive ones),
    # a large object whose background corner is the minority (the sign makes the
    # background positive, the central-crop test flips it), and a tiny grid
    cases = [("pca_14x14_disc", 14, 14, 24, 8.0,
              lambda y, x: (y - 6.5) ** 2 + (x - 6.5) ** 2 < 16 and (y, x) != (6, 7), 3.0),
             ("pca_14x14_large", 14, 14, 24, 20.0, lambda y, x: y + x > 5, 1.0),
             ("pca_9x7_small", 9, 7, 8, 8.0, lambda y, x: 4 <= y <= 5 and 3 <= x <= 4, 1.5)]
    for name, gh, gw, D, size, fg, thr in cases:
        for attempt in range(100):
            direction = rng.standard_normal(D)
            direction *= size / np.linalg.norm(direction)
            X = rng.standard_normal((gh * gw, D)) * 0.7
            for y in range(gh):
                for x in range(gw):
                    if fg(y, x):
                        X[y * gw + x] += direction
            X = X.astype(np.float32)
            pc, mask = pca_mask_ref(X, gh, gw, thr)
            # no projection near +-threshold: float rounding must not decide the mask
            if np.min(np.abs(np.abs(pc) - thr)) > 1e-2:
                break
        else:
            raise SystemExit(f"{name}: no fixture away from the threshold")
        save(name + "_in", X)
        save(name + "_proj", pc)
        save(name + "_mask", mask)
        save(name + "_thr", np.array([thr], dtype=np.float32))


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(2024)
    torch.manual_seed(0)
    gen_bpm(rng)
    gen_maps(rng)
    gen_topk(rng)
    gen_knn()
    gen_coreset()
    gen_pca(np.random.default_rng(15))
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"wrote {len(os.listdir(OUT))} files, {total / 1024:.0f} KiB to {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
