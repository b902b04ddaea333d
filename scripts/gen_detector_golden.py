#!/usr/bin/python3
"""
gen_detector_golden.py - regenerate tests/data/detector/, the golden files that
tests/test_detector.c checks the C detector (src/detector/detector.c) against.

Everything is computed by the independent PyTorch reference scripts/ref_detector.py in
float64 (pixels from torchvision's float32 ToTensor + Normalize, as the C side gets them).

Written files:
  vit.safetensors          a small random ViT: dim 48, 4 heads (the C loader cannot infer 4
                           heads from dim 48: the test passes heads = 4), depth 10, patch 8,
                           MLP 96, trained grid 6 x 6. Values are float16-exact and stored
                           as F16 to keep the file small.
  train_*.png, test_*.png  seven synthetic RGB images (a textured disc on a darker
                           background; two test images carry a "defect": a dark crack, a
                           bright blob), of different sizes so the shorter-side resize and
                           the centre crop both matter. Preprocessing: resize 56 bilinear,
                           crop 48, mean = std = 0.5 -> a 6 x 6 patch grid, pixel maps 48 x 48.
                           (Synthetic rather than MVTec crops: ../shared must not be copied
                           into the project.)
  cfg_<name>.safetensors   one per detector configuration (CONFIGS below), float32:
      params        [16]  the configuration (see PARAM_NAMES), so the test can check that it
                          runs the same one
      train_mask    [4][6][6]  BPM masks of the training images (1 = foreground)
      train_smooth  [4][6][6]  smoothed, max-normalised attention (mask = smooth > lambda)
      test_mask, test_smooth  [3][6][6]  the same for the test images
      bank          [Nb][48]   memory bank (coreset 1: every foreground patch, in order)
      patch_scores  [3][6][6]  unmasked patch scores
      image_scores  [3]
      pixel_maps    [3][48][48]
      features      [3][48]    mean feature of the top-K patches
      topk_gap      [3]        (K-th - (K+1)-th masked score) / max score: the test compares
                               features only where this is clearly positive (no tie)
  real_bottle.safetensors  only when ../shared is present at generation time: the real
                           ViT-Tiny (../shared/weights) on 7 MVTec bottle images read from
                           ../shared at test time (REAL_TRAIN / REAL_TEST), defaults except
                           coreset 1, resize 256 crop 224, mean = std = 0.5. Same tensors,
                           except that the bank is summarised (bank_sum, bank_sqnorm [Nb],
                           bank_head [8][192]) and the pixel maps are subsampled every 4th
                           pixel ([3][56][56]) to stay small.

Run: /usr/bin/python3 scripts/gen_detector_golden.py   (deterministic: fixed seeds)
"""
import json
import math
import os
import sys

import numpy as np
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import ref_detector as rd                              # noqa: E402
from gen_golden import exact_round, save_safetensors   # noqa: E402  (file writer only)

ROOT = os.path.normpath(os.path.join(HERE, ".."))
OUT = os.path.join(ROOT, "tests", "data", "detector")
SHARED = os.path.normpath(os.path.join(ROOT, "..", "shared"))

VIT = dict(dim=48, heads=4, depth=10, patch=8, mlp=96, grid=6)
PRE = dict(resize=56, crop=48, interp="bilinear", mean=(0.5,) * 3, std=(0.5,) * 3)

PARAM_NAMES = ["layer_first", "layer_last", "bpm", "bpm_kernel", "bpm_lambda", "soft_mask",
               "rollout", "knn", "topk", "sigma", "resize", "crop", "mean", "std", "coreset",
               "reserved"]

# name -> changes from uf_detector_default_params() (coreset is always 1 here).
# bpm_lambda None: picked from LAMBDA_CANDIDATES so that every image's mask is non-trivial
# (the default 0.1 keeps every patch of these small grids: the 7 x 7 mean filter flattens
# the attention map too much), which makes the masks and the bank actually test BPM.
CONFIGS = [
    ("default", {}),
    ("nobpm", dict(bpm=False)),
    ("knn3_top25", dict(knn=3, topk=0.25)),
    ("rollout", dict(rollout=True, bpm_lambda=None)),
    ("soft", dict(soft_mask=True)),
    ("lambda", dict(bpm_lambda=None)),
    ("l5_k3_nosigma", dict(layer_first=5, layer_last=5, bpm_kernel=3, sigma=0.0)),
]
LAMBDA_CANDIDATES = [0.5, 0.625, 0.375, 0.75, 0.25]  # float32-exact

REAL_CONFIGS = [
    ("real_bottle", {}),
    ("real_bottle_rollout", dict(rollout=True, bpm_lambda=None)),
]
REAL_PRE = dict(resize=256, crop=224, interp="bilinear", mean=(0.5,) * 3, std=(0.5,) * 3)
REAL_TRAIN = ["train/good/000.png", "train/good/001.png", "train/good/002.png",
              "train/good/003.png"]
REAL_TEST = ["test/good/000.png", "test/broken_large/000.png", "test/contamination/000.png"]


# ---------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------


def make_weights(seed):
    g = torch.Generator().manual_seed(seed)

    def rn(*shape, std=1.0, mean=0.0):
        return torch.randn(*shape, generator=g) * std + mean

    P, D, M, G = VIT["patch"], VIT["dim"], VIT["mlp"], VIT["grid"]
    sd = {}
    fan = 3 * P * P
    sd["cls_token"] = rn(1, 1, D, std=0.3)
    sd["pos_embed"] = rn(1, 1 + G * G, D, std=0.2)
    sd["patch_embed.proj.weight"] = rn(D, 3, P, P, std=1.5 / math.sqrt(fan))
    sd["patch_embed.proj.bias"] = rn(D, std=0.05)
    for i in range(VIT["depth"]):
        b = "blocks.%d." % i
        sd[b + "norm1.weight"] = rn(D, std=0.1, mean=1.0)
        sd[b + "norm1.bias"] = rn(D, std=0.05)
        qk = rn(2 * D, D, std=0.25)      # larger q/k: clearly non-uniform attention
        v = rn(D, D, std=0.12)
        sd[b + "attn.qkv.weight"] = torch.cat([qk, v], 0)
        sd[b + "attn.qkv.bias"] = rn(3 * D, std=0.05)
        sd[b + "attn.proj.weight"] = rn(D, D, std=0.12)
        sd[b + "attn.proj.bias"] = rn(D, std=0.03)
        sd[b + "norm2.weight"] = rn(D, std=0.1, mean=1.0)
        sd[b + "norm2.bias"] = rn(D, std=0.05)
        sd[b + "mlp.fc1.weight"] = rn(M, D, std=1.0 / math.sqrt(D))
        sd[b + "mlp.fc1.bias"] = rn(M, std=0.05)
        sd[b + "mlp.fc2.weight"] = rn(D, M, std=0.6 / math.sqrt(M))
        sd[b + "mlp.fc2.bias"] = rn(D, std=0.03)
    sd["norm.weight"] = rn(D, std=0.1, mean=1.0)
    sd["norm.bias"] = rn(D, std=0.05)
    return {k: exact_round(v).contiguous() for k, v in sd.items()}


def synth_image(seed, w, h, defect=None):
    """A textured disc on a darker, shaded background; uint8 [h][w][3]."""
    r = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.empty((h, w, 3))
    shade = 40 + 25 * (xx / w) + 15 * (yy / h)
    for c, base in enumerate((1.0, 0.9, 1.1)):
        img[..., c] = shade * base
    cx = w / 2 + r.uniform(-3, 3)
    cy = h / 2 + r.uniform(-3, 3)
    rad = 0.36 * min(w, h)
    d = np.hypot(xx - cx, yy - cy)
    inside = d < rad
    rings = 25 * np.sin(d / 2.5 + r.uniform(0, 6.28))
    col = np.array([165, 130, 70]) * r.uniform(0.95, 1.05)
    for c in range(3):
        img[..., c] = np.where(inside, col[c] + rings * (0.6 + 0.2 * c), img[..., c])
    if defect == "crack":
        # a dark, slightly slanted line through the disc
        t = np.abs((yy - cy) - 0.4 * (xx - cx) - 3) < 1.3
        img[t & (d < rad * 0.9)] = (25, 20, 15)
    elif defect == "blob":
        e = ((xx - cx - rad * 0.45) / 5.5) ** 2 + ((yy - cy + rad * 0.3) / 4.0) ** 2 < 1
        img[e] = (235, 40, 35)
    img += r.normal(0, 4, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


SYN_TRAIN = [("train_0.png", 11, 64, 64, None), ("train_1.png", 12, 70, 64, None),
             ("train_2.png", 13, 64, 72, None), ("train_3.png", 14, 66, 66, None)]
SYN_TEST = [("test_good.png", 21, 68, 64, None), ("test_crack.png", 22, 64, 64, "crack"),
            ("test_blob.png", 23, 64, 70, "blob")]


# ---------------------------------------------------------------------------------------
# Goldens
# ---------------------------------------------------------------------------------------


def params_for(changes, pre):
    p = rd.DetectorParams(coreset=1.0, **pre)
    for k, v in changes.items():
        setattr(p, k, v)
    return p


def params_vector(p):
    v = [p.layer_first, p.layer_last, int(p.bpm), p.bpm_kernel, p.bpm_lambda, int(p.soft_mask),
         int(p.rollout), p.knn, p.topk, p.sigma, p.resize, p.crop, p.mean[0], p.std[0],
         p.coreset, 0]
    assert len(v) == len(PARAM_NAMES)
    return torch.tensor(v, dtype=torch.float32)


def run(vit, p, train, test):
    det = rd.RefDetector(vit, p, dtype=torch.float64, batch=16)
    det.fit(train)
    res = det.score(test)
    res["train_mask"] = np.stack(det.fit_masks)
    res["train_smooth"] = np.stack(det.fit_smooth)
    res["bank"] = det.bank.numpy()
    return res


def make_config(name, changes, pre, vit, train, test, chosen):
    """The DetectorParams of a configuration; picks bpm_lambda when it is None."""
    changes = dict(changes)
    if "bpm_lambda" in changes and changes["bpm_lambda"] is None:
        best = None   # (distance of the mean foreground fraction from 1/2, lambda)
        for lam in LAMBDA_CANDIDATES:
            p = params_for(dict(changes, bpm_lambda=lam), pre)
            res = run(vit, p, train, test)
            fg_tr = res["train_mask"].reshape(len(train), -1).mean(1)
            fg_te = res["mask"].reshape(len(test), -1).mean(1)
            fg = np.concatenate([fg_tr, fg_te])
            ok = fg.min() > 0.1 and fg.max() < 0.9 and margin(res["train_smooth"], lam) > 1e-4
            print("  %s: lambda %.3f foreground %s margin %.1e%s" % (
                name, lam, np.array2string(fg, precision=2), margin(res["train_smooth"], lam),
                "" if ok else " (rejected)"))
            if ok and (best is None or abs(fg.mean() - 0.5) < best[0]):
                best = (abs(fg.mean() - 0.5), lam)
        if best is None:
            raise SystemExit("%s: no lambda candidate gives non-trivial masks" % name)
        changes["bpm_lambda"] = best[1]
        chosen[name] = changes["bpm_lambda"]
    p = params_for(changes, pre)
    if p.bpm and not p.soft_mask:
        # the bank depends on the training masks: no cell may sit on the threshold
        res = run(vit, p, train, test)
        assert margin(res["train_smooth"], p.bpm_lambda) > 1e-4, name
    return p


def margin(smooth, lam):
    return float(np.abs(smooth - float(np.float32(lam))).min())


def f32(a):
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def describe(name, p, res, res32=None):
    tm, sm = res["train_mask"], res["mask"]
    line = "%-14s bank %4d  fg train %s test %s  scores %s  gap %.2e" % (
        name, res["bank"].shape[0], tm.reshape(len(tm), -1).sum(1).tolist(),
        sm.reshape(len(sm), -1).sum(1).tolist(),
        np.array2string(res["image_scores"], precision=4), float(np.min(res["topk_gap"])))
    if p.bpm and not p.soft_mask:
        line += "  margin train %.2e test %.2e" % (margin(res["train_smooth"], p.bpm_lambda),
                                                   margin(res["smooth"], p.bpm_lambda))
    print(line)
    if res32 is not None:
        # how far a float32 run of the same reference lands: guides the C test's tolerances
        def rel(k):
            a, b = res[k], res32[k]
            return float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-30))
        same = all(np.array_equal(res[k], res32[k]) for k in ("train_mask", "mask"))
        if same:
            print("    float32 vs float64 (rel. to max): bank %.1e patch %.1e image %.1e "
                  "pixel %.1e feature %.1e" % (rel("bank"), rel("patch_scores"),
                                               rel("image_scores"), rel("pixel_maps"),
                                               rel("features")))
        else:
            print("    float32 run gives different masks")


def save_cfg(path, p, res, real=False):
    t = {"params": params_vector(p),
         "train_mask": f32(res["train_mask"]), "train_smooth": f32(res["train_smooth"]),
         "test_mask": f32(res["mask"]), "test_smooth": f32(res["smooth"]),
         "patch_scores": f32(res["patch_scores"]), "image_scores": f32(res["image_scores"]),
         "features": f32(res["features"]), "topk_gap": f32(res["topk_gap"])}
    if real:
        b = res["bank"].astype(np.float64)
        t["bank_sum"] = f32(b.sum(1))
        t["bank_sqnorm"] = f32((b * b).sum(1))
        t["bank_head"] = f32(b[:8])
        t["pixel_maps_sub4"] = f32(res["pixel_maps"][:, ::4, ::4])
    else:
        t["bank"] = f32(res["bank"])
        t["pixel_maps"] = f32(res["pixel_maps"])
    meta = {"generator": "scripts/gen_detector_golden.py",
            "params": json.dumps(dict(zip(PARAM_NAMES, params_vector(p).tolist())))}
    save_safetensors(path, t, meta)


def main():
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    os.makedirs(OUT, exist_ok=True)

    # --- synthetic set ---
    sd = make_weights(7)
    save_safetensors(os.path.join(OUT, "vit.safetensors"),
                     {k: v.to(torch.float16) for k, v in sd.items()},
                     {"format": "pt", "heads": str(VIT["heads"]),
                      "note": "random ViT for tests/test_detector.c; pass heads = 4"})
    for fname, seed, w, h, defect in SYN_TRAIN + SYN_TEST:
        Image.fromarray(synth_image(seed, w, h, defect)).save(os.path.join(OUT, fname),
                                                              optimize=True)
    # the reference reads the PNGs back, as the C test does
    train = [os.path.join(OUT, t[0]) for t in SYN_TRAIN]
    test = [os.path.join(OUT, t[0]) for t in SYN_TEST]
    vit64 = rd.RefViT(sd, heads=VIT["heads"], dtype=torch.float64)
    vit32 = rd.RefViT(sd, heads=VIT["heads"], dtype=torch.float32)

    chosen = {}
    for name, changes in CONFIGS:
        p = make_config(name, changes, PRE, vit64, train, test, chosen)
        res = run(vit64, p, train, test)
        res32 = run(vit32, p, train, test)
        describe(name, p, res, res32)
        save_cfg(os.path.join(OUT, "cfg_%s.safetensors" % name), p, res)
    print("chosen lambda:", chosen)

    # --- real data (optional) ---
    wpath = os.path.join(SHARED, "weights", "vit_tiny_patch16_224.safetensors")
    bottle = os.path.join(SHARED, "data", "mvtec_ad", "bottle")
    if os.path.exists(wpath) and os.path.isdir(bottle):
        sd_t = rd.load_state_dict(wpath)
        tr = [os.path.join(bottle, f) for f in REAL_TRAIN]
        te = [os.path.join(bottle, f) for f in REAL_TEST]
        v64 = rd.RefViT(sd_t, heads=3, dtype=torch.float64)
        v32 = rd.RefViT(sd_t, heads=3, dtype=torch.float32)
        for name, changes in REAL_CONFIGS:
            p = make_config(name, changes, REAL_PRE, v64, tr, te, chosen)
            res = run(v64, p, tr, te)
            res32 = run(v32, p, tr, te)
            describe(name, p, res, res32)
            save_cfg(os.path.join(OUT, name + ".safetensors"), p, res, real=True)
        print("chosen lambda:", chosen)
    else:
        print("../shared absent: real_bottle.safetensors not regenerated")

    total = 0
    for f in sorted(os.listdir(OUT)):
        n = os.path.getsize(os.path.join(OUT, f))
        total += n
        print("%-30s %8d" % (f, n))
    print("total %d bytes" % total)


if __name__ == "__main__":
    sys.exit(main())
