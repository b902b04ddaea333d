#!/usr/bin/python3
"""Golden files for the overlay tests in tests/test_imgout.c (run from the project root
with /usr/bin/python3; needs numpy and matplotlib, e.g. apt-get install python3-matplotlib).

uf_heatmap_overlay promises matplotlib's "jet" colours: cm.jet(t)[:3] * 255 rounded, with
t = (v - lo) / (hi - lo) clipped to [0, 1], blended as floor(alpha * c + (1 - alpha) * img
+ 0.5). The colours below come from matplotlib itself; only the (documented) range and
blend arithmetic are restated here, in float64 like the C code.

Writes tests/data/imgout/:
  jet_lut.u8    [256][3] uint8: np.round(cm.jet(x)[:3] * 255) for x in bin i of 256
                (x = (i + 0.5) / 256, so Colormap.__call__ picks entry i)
  img.u8        [8][16][3] uint8 random image
  map.f32       [8][16] float32 little-endian map: normal values, a few NaN/+Inf/-Inf,
                values outside the ranges used, and one exact copy of lo and hi
  cases.txt     "<name> <lo> <hi> <alpha> <file>" (floats as C99 hex, float32 values)
  <name>.u8     [8][16][3] uint8 expected overlay of each case
"""
import os

import numpy as np
from matplotlib import cm

OUT = "tests/data/imgout"
H, W = 8, 16


def expected(img, m, lo, hi, alpha):
    """The overlay contract, in float64 (lo, hi, alpha are float32 values)."""
    v = m.astype(np.float64)
    lo, hi, a = float(lo), float(hi), float(alpha)
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        fin = v[np.isfinite(v)]
        lo, hi = (fin.min(), fin.max()) if fin.size else (0.0, 0.0)
    flat = not hi > lo
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.zeros_like(v) if flat else (v - lo) / (hi - lo)
    t = np.where(np.isnan(t), 0.0, t)  # NaN map values (also Inf - Inf) draw as t = 0
    t = np.clip(t, 0.0, 1.0)
    c = np.round(cm.jet(t)[..., :3] * 255.0)  # matplotlib's colours, rounded half-even
    mix = a * c + (1.0 - a) * img.astype(np.float64)
    return np.floor(mix + 0.5).astype(np.uint8)


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20240607)
    lut = np.round(cm.jet((np.arange(256) + 0.5) / 256.0)[:, :3] * 255.0).astype(np.uint8)
    lut.tofile(f"{OUT}/jet_lut.u8")

    img = rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8)
    m = rng.normal(0.0, 1.0, size=(H, W)).astype(np.float32)
    m[0, 0], m[0, 1], m[0, 2] = np.nan, np.inf, -np.inf
    m[1, 0], m[1, 1] = 7.5, -6.25  # far outside every explicit range
    m[2, 0], m[2, 1] = -1.0, 1.5   # exactly lo and hi of case "given"
    img.tofile(f"{OUT}/img.u8")
    m.astype("<f4").tofile(f"{OUT}/map.f32")

    f32 = np.float32
    cases = [  # name, lo, hi, alpha
        ("given", f32(-1.0), f32(1.5), f32(0.5)),
        ("auto", f32(0.0), f32(0.0), f32(0.6)),
        ("auto_inverted", f32(2.0), f32(-1.0), f32(0.35)),
        ("pure", f32(-0.75), f32(0.75), f32(1.0)),
        ("steep", f32(0.1), f32(0.1000001), f32(0.7)),
        ("auto_infhi", f32(0.0), f32(np.inf), f32(0.45)),
        ("faint", f32(-2.0), f32(2.0), f32(0.1)),
    ]
    with open(f"{OUT}/cases.txt", "w") as f:
        for name, lo, hi, a in cases:
            exp = expected(img, m, lo, hi, a)
            exp.tofile(f"{OUT}/{name}.u8")
            f.write(f"{name} {float(lo).hex()} {float(hi).hex()} {float(a).hex()} {name}.u8\n")
    print(f"wrote {len(cases)} overlay cases to {OUT}")


if __name__ == "__main__":
    main()
