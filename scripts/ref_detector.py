#!/usr/bin/python3
"""
ref_detector.py - an independent PyTorch reference of the UniFormaly detector.

It is what uniformaly's C detector (src/detector/detector.c) is checked against
(scripts/gen_detector_golden.py writes golden files with it, tests/test_detector.c compares)
and what `make bench` times as the PyTorch baseline (the command line below).

The method, as uniformaly implements it (include/uniformaly.h, uf_detector_params):
  preprocess  torchvision Resize(resize, interp) -> CenterCrop(crop) -> ToTensor ->
              Normalize(mean, std) on PIL images opened with .convert("RGB")
  features    DINO/timm ViT (pre-norm, exact GELU, LayerNorm eps 1e-6); patch features =
              mean over blocks layer_first..layer_last (1-based) of the block outputs'
              patch tokens (CLS excluded, no final norm): [B][Np][D], row-major grid
  BPM         the CLS query's softmax attention of block layer_last averaged over heads,
              patch columns [B][gh][gw] (or attention rollout R = A'_L ... A'_1 with
              A'_l = (mean_heads(A_l) + I) / 2, CLS row); AvgPool2d(k, 1, k // 2,
              count_include_pad=True); divided by its own (per image) maximum; foreground
              = smoothed > lambda (strictly). A map whose pooled maximum is <= 0 keeps
              every patch (as the C library does).
  bank        foreground patch features of the training images, in image order and
              row-major order within an image; optional coreset (PatchCore greedy or
              random - not bit-compatible with the C library's generators)
  patch score squared L2 distance to the nearest bank row, or the mean of the knn smallest
  image score masked patch scores (background 0; soft_mask: score * smoothed map and the
              bank keeps every patch), mean of the top K, K = max(1, round(topk * N))
              (Python round: half to even)
  feature     mean feature of the top-K patches (by masked score)
  pixel map   unmasked patch scores [gh][gw] -> F.interpolate(bilinear,
              align_corners=False) to [S][S] -> scipy.ndimage.gaussian_filter(sigma,
              truncate 4, mode reflect) in float64

As a library:
    sd = load_state_dict("w.safetensors")
    vit = RefViT(sd, heads=4, dtype=torch.float64)
    det = RefDetector(vit, DetectorParams(coreset=1.0, mean=(.5,)*3, std=(.5,)*3))
    det.fit(list_of_PIL_images)
    out = det.score(list_of_PIL_images)   # dict of numpy arrays

Command line (the PyTorch side of `make bench`):
    python3 scripts/ref_detector.py --weights W --mean 0.5 --std 0.5 \
        --train DIR --test DIR --coreset 0.1 --threads 2
prints one JSON object: fit and predict images/s (image decoding included), image AUROC
(sklearn) and the sizes. Test labels come from the folder names: an image whose path
contains a folder named in --good (default "good,MT_Free") is normal, every other one
anomalous.

Needs torch, torchvision, numpy, scipy, PIL (sklearn for the AUROC). No safetensors
package: the file format is read by hand.
"""
import argparse
import dataclasses
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------

_ST_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64}


def load_safetensors(path):
    """Read a .safetensors file into {name: float32 torch tensor} (F32, F16, BF16, F64;
    other dtypes are skipped)."""
    with open(path, "rb") as f:
        raw = f.read()
    (hlen,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + hlen].decode("utf-8"))
    base = 8 + hlen
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        buf = raw[base + a:base + b]
        shape = info["shape"]
        dt = info["dtype"]
        if dt == "BF16":
            u = np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16
            arr = u.view(np.float32)
        elif dt in _ST_DTYPES:
            arr = np.frombuffer(buf, dtype=np.dtype(_ST_DTYPES[dt]).newbyteorder("<"))
        else:
            continue
        out[name] = torch.from_numpy(arr.astype(np.float32).reshape(shape).copy())
    return out


def load_state_dict(path):
    """A timm/DINO-named state dict from .safetensors or a torch.save checkpoint (plain,
    or nested under state_dict / model / teacher / student; module. and backbone.
    prefixes stripped)."""
    if path.endswith(".safetensors"):
        sd = load_safetensors(path)
    else:
        obj = torch.load(path, map_location="cpu")
        for key in ("state_dict", "model", "teacher", "student"):
            if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
        sd = {k: v for k, v in obj.items() if torch.is_tensor(v)}
    out = {}
    for k, v in sd.items():
        for p in ("module.", "backbone."):
            if k.startswith(p):
                k = k[len(p):]
        out[k] = v.float()
    return out


# ---------------------------------------------------------------------------------------
# ViT (functional, from a state dict)
# ---------------------------------------------------------------------------------------

_DEFAULT_HEADS = {192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16}


class RefViT:
    """DINO/timm Vision Transformer run from a state dict. forward() stops after the last
    block that is needed and returns what the detector consumes."""

    def __init__(self, sd, heads=None, eps=1e-6, dtype=torch.float32):
        self.dtype = dtype
        self.sd = {k: v.to(dtype) for k, v in sd.items()}
        self.dim = self.sd["cls_token"].shape[-1]
        self.patch = self.sd["patch_embed.proj.weight"].shape[-1]
        self.depth = 0
        while "blocks.%d.norm1.weight" % self.depth in self.sd:
            self.depth += 1
        self.heads = heads or _DEFAULT_HEADS.get(self.dim)
        if not self.heads or self.dim % self.heads:
            raise ValueError("cannot infer heads for dim %d: pass heads" % self.dim)
        self.eps = eps
        n = self.sd["pos_embed"].shape[1] - 1
        self.grid = int(round(math.sqrt(n)))

    def pos_embed(self, gh, gw):
        """DINO's interpolate_pos_encoding (bicubic, scale factor with the +0.1)."""
        pos = self.sd["pos_embed"]
        if gh == self.grid and gw == self.grid:
            return pos
        D, G = self.dim, self.grid
        pp = pos[:, 1:].reshape(1, G, G, D).permute(0, 3, 1, 2)
        pp = F.interpolate(pp, scale_factor=((gh + 0.1) / G, (gw + 0.1) / G), mode="bicubic")
        assert pp.shape[-2] == gh and pp.shape[-1] == gw
        pp = pp.permute(0, 2, 3, 1).reshape(1, gh * gw, D)
        return torch.cat([pos[:, :1], pp], dim=1)

    def _block(self, i, x, want_attn):
        p = "blocks.%d." % i
        w = self.sd
        B, N, D = x.shape
        H = self.heads
        h = F.layer_norm(x, (D,), w[p + "norm1.weight"], w[p + "norm1.bias"], self.eps)
        qkv = F.linear(h, w[p + "attn.qkv.weight"], w[p + "attn.qkv.bias"])
        qkv = qkv.reshape(B, N, 3, H, D // H).permute(2, 0, 3, 1, 4)  # [3][B][H][N][hd]
        q, k, v = qkv[0], qkv[1], qkv[2]
        a = (q @ k.transpose(-2, -1)) * (D // H) ** -0.5
        a = a.softmax(dim=-1)                                             # [B][H][N][N]
        y = (a @ v).transpose(1, 2).reshape(B, N, D)
        x = x + F.linear(y, w[p + "attn.proj.weight"], w[p + "attn.proj.bias"])
        h = F.layer_norm(x, (D,), w[p + "norm2.weight"], w[p + "norm2.bias"], self.eps)
        h = F.gelu(F.linear(h, w[p + "mlp.fc1.weight"], w[p + "mlp.fc1.bias"]))
        x = x + F.linear(h, w[p + "mlp.fc2.weight"], w[p + "mlp.fc2.bias"])
        return x, (a.mean(dim=1) if want_attn else None)                  # [B][N][N]

    def forward(self, pixels, layer_first, layer_last, rollout=False):
        """pixels [B][3][H][W] -> (features [B][Np][D] = mean of the patch tokens after
        blocks layer_first..layer_last, attention [B][gh][gw] of block layer_last (CLS
        query, head mean, patch columns; rollout through layer_last if asked))."""
        x = pixels.to(self.dtype)
        B = x.shape[0]
        gh, gw = x.shape[2] // self.patch, x.shape[3] // self.patch
        x = F.conv2d(x, self.sd["patch_embed.proj.weight"], self.sd["patch_embed.proj.bias"],
                     stride=self.patch)
        x = x.flatten(2).transpose(1, 2)                                  # [B][Np][D]
        x = torch.cat([self.sd["cls_token"].expand(B, -1, -1), x], dim=1)
        x = x + self.pos_embed(gh, gw)
        N = x.shape[1]
        acc, roll, attn = None, None, None
        eye = torch.eye(N, dtype=self.dtype)
        for i in range(layer_last):
            want = rollout or i == layer_last - 1
            x, a = self._block(i, x, want)
            if i + 1 >= layer_first:
                acc = x[:, 1:] if acc is None else acc + x[:, 1:]
            if rollout:
                ap = (a + eye) / 2
                ap = ap / ap.sum(dim=-1, keepdim=True)
                roll = ap if roll is None else ap @ roll                  # A'_i ... A'_1
            elif i == layer_last - 1:
                attn = a
        src = roll if rollout else attn
        cls_attn = src[:, 0, 1:].reshape(B, gh, gw)
        return acc / (layer_last - layer_first + 1), cls_attn


# ---------------------------------------------------------------------------------------
# The detector
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class DetectorParams:
    layer_first: int = 3
    layer_last: int = 10
    bpm: bool = True
    bpm_kernel: int = 7
    bpm_lambda: float = 0.1   # compared in float32, as the C library stores it
    soft_mask: bool = False
    rollout: bool = False
    coreset: float = 0.1
    sampler: str = "greedy"   # or "random"
    seed: int = 0
    knn: int = 1
    topk: float = 0.05
    sigma: float = 4.0
    resize: int = 256
    crop: int = 224
    interp: str = "bilinear"  # bilinear | bicubic | lanczos | nearest
    mean: tuple = (0.485, 0.456, 0.406)
    std: tuple = (0.229, 0.224, 0.225)


def topk_count(n, frac):
    """K = max(1, min(n, round(frac * n))), Python round (half to even)."""
    return max(1, min(n, int(round(frac * n))))


def make_transform(p):
    from torchvision import transforms as T
    from torchvision.transforms import InterpolationMode as IM
    im = {"bilinear": IM.BILINEAR, "bicubic": IM.BICUBIC, "lanczos": IM.LANCZOS,
          "nearest": IM.NEAREST}[p.interp]
    return T.Compose([T.Resize(p.resize, interpolation=im), T.CenterCrop(p.crop), T.ToTensor(),
                      T.Normalize(list(p.mean), list(p.std))])


def bpm_maps(attn, k, lam):
    """attn [B][gh][gw] -> (smoothed / per-image max [B][gh][gw], mask [B][gh][gw] bool)."""
    pooled = F.avg_pool2d(attn[:, None], k, stride=1, padding=k // 2,
                          count_include_pad=True)[:, 0]
    mx = pooled.flatten(1).max(dim=1).values                              # [B]
    ok = mx > 0
    smooth = torch.where(ok[:, None, None], pooled / torch.where(ok, mx, torch.ones_like(mx))[:, None, None],
                         torch.ones_like(pooled))
    lam32 = float(np.float32(lam))
    return smooth, smooth > lam32


def greedy_coreset(X, frac, seed=0, proj_dim=128, n_start=10):
    """PatchCore's approximate greedy k-center: project to proj_dim (U(-1/sqrt(D), 1/sqrt(D))
    like torch.nn.Linear, from a seeded torch.Generator), mean distance to n_start random
    points, then repeatedly take the farthest point. Returns indices [n_keep] in selection
    order. Not bit-compatible with the C library (other generator)."""
    N, D = X.shape
    if frac >= 1:
        return torch.arange(N)
    n_keep = max(1, int(N * frac))
    g = torch.Generator().manual_seed(seed)
    Xf = X.float()
    if D != proj_dim:
        W = (torch.rand(proj_dim, D, generator=g) * 2 - 1) / math.sqrt(D)
        P = Xf @ W.T
    else:
        P = Xf
    start = torch.randperm(N, generator=g)[:min(n_start, N)]
    m = torch.cdist(P, P[start]).mean(dim=1)                              # [N]
    out = torch.empty(n_keep, dtype=torch.long)
    for j in range(n_keep):
        c = int(torch.argmax(m))
        out[j] = c
        d = ((P - P[c]) ** 2).sum(dim=1).sqrt()
        m = torch.minimum(m, d)
    return out


def random_coreset(N, frac, seed=0):
    if frac >= 1:
        return torch.arange(N)
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(N, generator=g)[:max(1, int(N * frac))]


class RefDetector:
    def __init__(self, vit, params, dtype=None, batch=8):
        self.vit = vit
        self.p = params
        self.dtype = dtype or vit.dtype
        self.batch = batch
        self.transform = make_transform(params)
        self.bank = None          # [Nb][D]
        self.bank_full = 0
        self.fit_masks = []       # per training image: mask [gh][gw] (numpy bool)
        self.fit_smooth = []      # per training image: smoothed normalised map

    # --- shared ---------------------------------------------------------------------
    def preprocess(self, images):
        """PIL images (or paths) -> [B][3][S][S] float32."""
        from PIL import Image
        ts = []
        for im in images:
            if isinstance(im, str):
                with Image.open(im) as f:
                    im = f.convert("RGB")
            else:
                im = im.convert("RGB")
            ts.append(self.transform(im))
        return torch.stack(ts)

    def extract(self, images):
        """-> features [B][Np][D], smooth [B][gh][gw], mask [B][gh][gw] (bool)."""
        p = self.p
        x = self.preprocess(images)
        feats, attn = self.vit.forward(x, p.layer_first, p.layer_last, p.rollout)
        if p.bpm:
            smooth, mask = bpm_maps(attn, p.bpm_kernel, p.bpm_lambda)
        else:
            smooth = torch.ones_like(attn)
            mask = torch.ones_like(attn, dtype=torch.bool)
        return feats, smooth, mask

    # --- fit ------------------------------------------------------------------------
    def fit(self, images):
        p = self.p
        rows = []
        self.fit_masks, self.fit_smooth = [], []
        with torch.no_grad():
            for i in range(0, len(images), self.batch):
                feats, smooth, mask = self.extract(images[i:i + self.batch])
                keep = torch.ones_like(mask) if (p.soft_mask or not p.bpm) else mask
                for b in range(feats.shape[0]):
                    rows.append(feats[b][keep[b].flatten()])
                    self.fit_masks.append(mask[b].numpy().copy())
                    self.fit_smooth.append(smooth[b].double().numpy().copy())
            bank = torch.cat(rows, dim=0)
            if bank.shape[0] == 0:
                raise ValueError("every training patch is background")
            self.bank_full = bank.shape[0]
            t0 = time.perf_counter()
            if p.coreset < 1:
                if p.sampler == "greedy":
                    idx = greedy_coreset(bank, p.coreset, p.seed)
                else:
                    idx = random_coreset(bank.shape[0], p.coreset, p.seed)
                bank = bank[idx]
            self.bank = bank.contiguous()
            self.bank_norm = (self.bank * self.bank).sum(dim=1)
            self.coreset_s = time.perf_counter() - t0
        return self.bank

    # --- score ----------------------------------------------------------------------
    def knn_scores(self, Q):
        """Q [n][D] -> mean of the knn smallest squared distances [n]. float64: direct
        differences; float32: the ||q||^2 - 2 q.b + ||b||^2 expansion in bank blocks."""
        k = self.p.knn
        if self.dtype == torch.float64:
            d = ((Q[:, None, :] - self.bank[None, :, :]) ** 2).sum(dim=-1)
            return d.topk(k, dim=1, largest=False).values.mean(dim=1)
        qn = (Q * Q).sum(dim=1, keepdim=True)
        best = None
        step = 16384
        for j in range(0, self.bank.shape[0], step):
            B = self.bank[j:j + step]
            d = qn - 2 * (Q @ B.T) + self.bank_norm[j:j + step][None, :]
            cand = d.topk(min(k, d.shape[1]), dim=1, largest=False).values
            best = cand if best is None else torch.cat([best, cand], 1).topk(k, dim=1, largest=False).values
        return best.clamp_min(0).mean(dim=1)

    def score(self, images, pixel_maps=True):
        """-> dict of numpy arrays: patch_scores [n][gh][gw] (unmasked), mask, smooth,
        image_scores [n], features [n][D], topk_idx [n][K], topk_gap [n] (relative gap
        between the K-th and (K+1)-th masked scores, inf when K = N), pixel_maps
        [n][S][S] (float64)."""
        from scipy.ndimage import gaussian_filter
        p = self.p
        res = {k: [] for k in ("patch_scores", "mask", "smooth", "image_scores", "features",
                               "topk_idx", "topk_gap", "pixel_maps")}
        with torch.no_grad():
            for i in range(0, len(images), self.batch):
                feats, smooth, mask = self.extract(images[i:i + self.batch])
                Bn, Np, D = feats.shape
                gh, gw = mask.shape[1:]
                s = self.knn_scores(feats.reshape(-1, D)).reshape(Bn, gh, gw)
                if not p.bpm:
                    masked = s
                elif p.soft_mask:
                    masked = s * smooth.to(s.dtype)
                else:
                    masked = torch.where(mask, s, torch.zeros_like(s))
                K = topk_count(Np, p.topk)
                for b in range(Bn):
                    flat = masked[b].flatten()
                    order = torch.sort(flat, descending=True, stable=True)
                    vals, idx = order.values, order.indices
                    top = idx[:K]
                    res["image_scores"].append(float(vals[:K].mean()))
                    res["features"].append(feats[b][top].mean(dim=0).double().numpy())
                    res["topk_idx"].append(top.numpy())
                    if K < Np:
                        gap = float(vals[K - 1] - vals[K]) / max(float(vals[0]), 1e-30)
                    else:
                        gap = math.inf
                    res["topk_gap"].append(gap)
                    res["patch_scores"].append(s[b].double().numpy())
                    res["mask"].append(mask[b].numpy())
                    res["smooth"].append(smooth[b].double().numpy())
                if pixel_maps:
                    S = p.crop
                    up = F.interpolate(s[:, None].double(), size=(S, S), mode="bilinear",
                                       align_corners=False)[:, 0].numpy()
                    for b in range(Bn):
                        m = up[b]
                        if p.sigma > 0:
                            m = gaussian_filter(m, sigma=p.sigma, mode="reflect", truncate=4.0)
                        res["pixel_maps"].append(m)
        out = {}
        for k, v in res.items():
            if v:
                out[k] = np.stack(v) if k != "image_scores" and k != "topk_gap" else np.array(v)
        return out


# ---------------------------------------------------------------------------------------
# Command line: fit / predict timing and image AUROC
# ---------------------------------------------------------------------------------------

IMG_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff")


def list_images(d):
    out = []
    for root, dirs, files in os.walk(d):
        dirs.sort()
        base = os.path.basename(root)
        if base == "ground_truth" or "ground_truth" in root.split(os.sep):
            continue
        for f in sorted(files):
            if f.lower().endswith(IMG_EXT) and not f.lower().endswith("_mask.png"):
                out.append(os.path.join(root, f))
    return out


def parse_triple(s):
    v = [float(x) for x in s.split(",")]
    if len(v) == 1:
        v = v * 3
    if len(v) != 3:
        raise argparse.ArgumentTypeError("need 1 or 3 comma-separated numbers")
    return tuple(v)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--weights", required=True)
    ap.add_argument("--heads", type=int, default=0)
    ap.add_argument("--train", required=True, help="folder of normal training images")
    ap.add_argument("--test", required=True, help="folder of test images (sub-folders)")
    ap.add_argument("--good", default="good,MT_Free", help="folder names of normal test images")
    ap.add_argument("--limit-train", type=int, default=0, help="use the first N training images")
    ap.add_argument("--limit-test", type=int, default=0, help="use N evenly spread test images")
    ap.add_argument("--mean", type=parse_triple, default=(0.485, 0.456, 0.406))
    ap.add_argument("--std", type=parse_triple, default=(0.229, 0.224, 0.225))
    ap.add_argument("--resize", type=int, default=256)
    ap.add_argument("--crop", type=int, default=224)
    ap.add_argument("--interp", default="bilinear")
    ap.add_argument("--layers", type=int, nargs=2, default=(3, 10))
    ap.add_argument("--no-bpm", action="store_true")
    ap.add_argument("--bpm-kernel", type=int, default=7)
    ap.add_argument("--bpm-lambda", type=float, default=0.1)
    ap.add_argument("--soft-mask", action="store_true")
    ap.add_argument("--rollout", action="store_true")
    ap.add_argument("--coreset", type=float, default=0.1)
    ap.add_argument("--sampler", default="greedy", choices=("greedy", "random"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--knn", type=int, default=1)
    ap.add_argument("--topk", type=float, default=0.05)
    ap.add_argument("--sigma", type=float, default=4.0)
    ap.add_argument("--no-pixel-maps", action="store_true", help="skip upsampling + smoothing")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--float64", action="store_true", help="run in float64 (default float32)")
    a = ap.parse_args(argv)

    if a.threads > 0:
        torch.set_num_threads(a.threads)
    dtype = torch.float64 if a.float64 else torch.float32
    p = DetectorParams(layer_first=a.layers[0], layer_last=a.layers[1], bpm=not a.no_bpm,
                       bpm_kernel=a.bpm_kernel, bpm_lambda=a.bpm_lambda, soft_mask=a.soft_mask,
                       rollout=a.rollout, coreset=a.coreset, sampler=a.sampler, seed=a.seed,
                       knn=a.knn, topk=a.topk, sigma=a.sigma, resize=a.resize, crop=a.crop,
                       interp=a.interp, mean=a.mean, std=a.std)
    train = list_images(a.train)
    test = list_images(a.test)
    if a.limit_train > 0:
        train = train[:a.limit_train]
    if 0 < a.limit_test < len(test):  # evenly spread, so every folder (class) is sampled
        test = [test[int(i)] for i in np.linspace(0, len(test) - 1, a.limit_test).round()]
    if not train or not test:
        print("no images found", file=sys.stderr)
        return 2
    good = set(x for x in a.good.split(",") if x)
    labels = np.array([0 if good & set(os.path.relpath(f, a.test).split(os.sep)[:-1]) else 1
                       for f in test])

    vit = RefViT(load_state_dict(a.weights), heads=a.heads or None, dtype=dtype)
    det = RefDetector(vit, p, dtype=dtype, batch=a.batch)
    t0 = time.perf_counter()
    det.fit(train)                       # paths: decoding is timed too
    t1 = time.perf_counter()
    res = det.score(test, pixel_maps=not a.no_pixel_maps)
    t2 = time.perf_counter()
    auroc = None
    if 0 < labels.sum() < len(labels):
        from sklearn.metrics import roc_auc_score
        auroc = float(roc_auc_score(labels, res["image_scores"]))
    print(json.dumps({
        "impl": "pytorch", "dtype": str(dtype).replace("torch.", ""),
        "threads": torch.get_num_threads(), "n_train": len(train), "n_test": len(test),
        "bank_size_full": int(det.bank_full), "bank_size": int(det.bank.shape[0]),
        "fit_s": round(t1 - t0, 4), "coreset_s": round(det.coreset_s, 4),
        "predict_s": round(t2 - t1, 4),
        "fit_images_per_s": round(len(train) / (t1 - t0), 3),
        "predict_images_per_s": round(len(test) / (t2 - t1), 3),
        "image_auroc": auroc,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
