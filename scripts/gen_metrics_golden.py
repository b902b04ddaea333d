#!/usr/bin/python3
"""gen_metrics_golden.py - golden AUROC values for uf_auroc (tests/test_metrics.c).

Run with /usr/bin/python3 (needs numpy and scikit-learn). The reference is
sklearn.metrics.roc_auc_score(labels, scores) on float32 scores, ties counting half
(with +-inf replaced by +-FLT_MAX, which sklearn accepts; see auc()).
Writes into tests/data/metrics/:
  <name>.txt     small cases stored in full: one "score label" line per sample, the score
                 printed with 9 significant digits (round-trips float32 exactly);
  expected.txt   one line per case:
                   file <name> <n> <auc>              a stored case
                   gen <kind> <seed> <n> <auc>        a case the C test regenerates
                 auc printed with 17 significant digits.
Generated cases (too big to store; 100k samples) come from splitmix64 (the generator of
test_kernels.c) with integer arithmetic only, so Python and C produce identical data:
  kind q: score = (r >> 53) / 64 (2048 distinct values in [0, 32): heavy ties),
  kind c: score = (r >> 40) / 2^24 (24-bit uniform in [0, 1): few ties),
  label:  1 when (r2 >> 32) < 85899345 + bin * 419430, bin = r >> 53 (positives 2-22 %,
          more likely for high scores, so the AUC is well above 0.5).

Also (tests/test_metrics.c, tests/test_cluster.c):
  f1.txt       image F1-max of the stored cases and of generated ones: max over the points
               of precision_recall_curve of 2PR/(P+R) (NaN -> 0), as anomaly-detection
               code computes it;  lines "file <name> <n> <f1>" / "gen <kind> <seed> <n> <f1>".
  pixel.txt    pixel metrics of synthetic test sets regenerated in C from splitmix64
               (see pixel_case()): "pixel <mode> <seed> <n_images> <h> <w> <max_fpr>
               <auroc> <aupro> <f1_max> <n_anomalous> <n_regions> <aupro_official>".
               auroc: roc_auc_score; f1_max as above; aupro: exact_aupro(), the MVTec AD
               definition evaluated at every distinct score in float64 (cross-checked
               against a brute-force loop over thresholds on small cases);
               aupro_official: MVTec's own compute_pro + trapezoid, whose float32 FPRs
               differ from the exact value by up to ~1e-7 (informational).
  cluster.txt  clustering metrics: "case <name> <n> <nmi> <ari> <f1> <f1_macro>" followed
               by a line of n true labels and a line of n predicted labels, or
               "gen <seed> <n> <kt> <kp> <nmi> <ari> <f1> <f1_macro>" for a generated
               case (cluster_gen()). nmi: normalized_mutual_info_score; ari:
               adjusted_rand_score; f1: f1_score(average='micro') of the predictions
               mapped through scipy's linear_sum_assignment maximising matched counts
               (= matched / n); f1_macro: f1_score(labels=unique(truth), average='macro')
               of the same mapping, written as nan when optimal matchings disagree on it.
"""
import os

import bisect
import itertools

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import (adjusted_rand_score, f1_score, normalized_mutual_info_score,
                             precision_recall_curve, roc_auc_score)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "metrics")
M64 = (1 << 64) - 1


class SplitMix:
    """splitmix64 on a seeded stream, as in test_kernels.c / test_metrics.c."""

    def __init__(self, seed, stream):
        self.s = (seed ^ ((stream * 0xD1B54A32D192ED03) & M64)) & M64

    def next(self):
        self.s = (self.s + 0x9E3779B97F4A7C15) & M64
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        return z ^ (z >> 31)


def generated(kind, seed, n):
    """The (scores float32 [n], labels uint8 [n]) of a generated case."""
    r = SplitMix(seed, 7)
    s = np.empty(n, dtype=np.float32)
    y = np.empty(n, dtype=np.uint8)
    for i in range(n):
        a = r.next()
        b = r.next()
        bin_ = a >> 53
        s[i] = bin_ / 64.0 if kind == "q" else (a >> 40) / float(1 << 24)
        y[i] = 1 if (b >> 32) < 85899345 + bin_ * 419430 else 0
    return s, y


def avg_ranks(x):
    """1-based ranks, ties get their average rank (scipy's rankdata, which returns NaN
    for every element when an infinity is present in scipy 1.10)."""
    u, inv, cnt = np.unique(x, return_inverse=True, return_counts=True)
    first = np.cumsum(cnt) - cnt  # 0-based first position of each distinct value
    return (first + (cnt + 1) / 2.0)[inv]


def auc(s, y):
    """roc_auc_score; it refuses +-inf, so those become +-FLT_MAX first (the AUC depends
    only on the order of the scores and their ties, which this keeps when FLT_MAX itself
    is absent). Cross-checked with a rank-sum (average ranks)."""
    s = s.astype(np.float32)
    fmax = np.finfo(np.float32).max
    assert not np.any(np.abs(s) == fmax)
    a = float(roc_auc_score(y.astype(np.int64), np.clip(s, -fmax, fmax)))
    r = avg_ranks(s.astype(np.float64))
    p = int(y.sum())
    q = len(y) - p
    u = (r[y != 0].sum() - p * (p + 1) / 2.0) / (p * q)
    assert abs(u - a) < 1e-12, (u, a)
    return a


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20240607)
    cases = {}
    # continuous random scores, balanced classes, positives shifted up
    y = (rng.random(300) < 0.5).astype(np.uint8)
    cases["random"] = ((rng.standard_normal(300) + 0.8 * y).astype(np.float32), y)
    # heavily tied: scores rounded to one decimal
    y = (rng.random(500) < 0.3).astype(np.uint8)
    s = np.round(rng.random(500) * 0.7 + 0.3 * y, 1).astype(np.float32)
    cases["tied_1dec"] = (s, y)
    # every score equal: AUC exactly 0.5
    y = np.zeros(60, dtype=np.uint8)
    y[::4] = 1
    cases["all_tied"] = (np.full(60, 0.25, dtype=np.float32), y)
    # a single positive among 199 negatives, tied with some of them
    s = np.round(rng.random(200), 2).astype(np.float32)
    y = np.zeros(200, dtype=np.uint8)
    y[137] = 1
    s[137] = s[12]  # at least one tie with a negative
    cases["single_pos"] = (s, y)
    # a single negative among positives
    s = rng.standard_normal(150).astype(np.float32)
    y = np.ones(150, dtype=np.uint8)
    y[3] = 0
    cases["single_neg"] = (s, y)
    # imbalanced: 2 % positives, labels given as arbitrary nonzero bytes
    y = (rng.random(1000) < 0.02).astype(np.uint8)
    y[0] = 1
    s = (rng.random(1000) + 0.5 * y).astype(np.float32)
    cases["imbalanced"] = (s, y * rng.integers(1, 256, 1000).astype(np.uint8))
    # signed values, +0 / -0 (equal), +-inf, huge and tiny magnitudes
    s = np.array([0.0, -0.0, -0.0, 0.0, np.inf, -np.inf, 1e-45, -1e-45, 3e38, -3e38,
                  1.0, -1.0, 1.0, -1.0, 2.5, -2.5, 0.0, -0.0, np.inf, -np.inf],
                 dtype=np.float32)
    y = np.array([1, 0, 1, 0, 1, 0, 1, 0, 1, 1, 0, 0, 1, 1, 0, 1, 0, 1, 0, 0], dtype=np.uint8)
    cases["signed_zero_inf"] = (s, y)
    # perfect and inverted separation
    s = np.arange(40, dtype=np.float32)
    y = (np.arange(40) >= 25).astype(np.uint8)
    cases["perfect"] = (s, y)
    cases["inverted"] = (s, (1 - y).astype(np.uint8))

    lines = []
    for name, (s, y) in cases.items():
        with open(os.path.join(OUT, name + ".txt"), "w") as f:
            for v, l in zip(s, y):
                f.write("%.9g %d\n" % (float(v), int(l)))
        a = auc(s, (y != 0).astype(np.uint8))
        lines.append("file %s %d %.17g" % (name, len(s), a))
        print(name, len(s), a)
    for kind, seed, n in (("q", 1, 100000), ("c", 2, 100000), ("q", 3, 1000)):
        s, y = generated(kind, seed, n)
        a = auc(s, y)
        lines.append("gen %s %d %d %.17g" % (kind, seed, n, a))
        print("gen", kind, seed, n, a, "positives", int(y.sum()),
              "distinct", len(np.unique(s)))
    with open(os.path.join(OUT, "expected.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    write_f1(cases)
    write_pixel()
    write_cluster()


# ---- image F1-max -------------------------------------------------------------------

def f1_max(y, s):
    """max over precision_recall_curve of 2PR/(P+R) (NaN -> 0), cross-checked with the
    direct max over distinct thresholds t of 2 TP(>=t) / (TP + FP + P)."""
    s = np.asarray(s, dtype=np.float32).astype(np.float64)
    y = (np.asarray(y) != 0).astype(np.int64)
    fmax = float(np.finfo(np.float32).max)
    p, r, _ = precision_recall_curve(y, np.clip(s, -fmax, fmax))
    with np.errstate(invalid="ignore", divide="ignore"):
        f = 2 * p * r / (p + r)
    f[np.isnan(f)] = 0
    best = float(f.max())
    order = np.argsort(-s, kind="stable")
    tp = np.cumsum(y[order])
    fp = np.cumsum(1 - y[order])
    so = s[order]
    keep = np.append(so[1:] != so[:-1], True)  # (np.diff would make inf - inf = NaN)
    direct = float(np.max(2 * tp[keep] / (tp[keep] + fp[keep] + y.sum())))
    assert abs(direct - best) < 1e-12, (direct, best)
    return best


def write_f1(cases):
    lines = []
    for name, (s, y) in cases.items():
        lines.append("file %s %d %.17g" % (name, len(s), f1_max(y, s)))
    for kind, seed, n in (("q", 1, 100000), ("c", 2, 100000), ("q", 3, 1000)):
        s, y = generated(kind, seed, n)
        lines.append("gen %s %d %d %.17g" % (kind, seed, n, f1_max(y, s)))
    with open(os.path.join(OUT, "f1.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("f1.txt:", len(lines), "cases")


# ---- pixel metrics --------------------------------------------------------------------

GAMMA = 0x9E3779B97F4A7C15


def sm_block(state, n):
    """The next n splitmix64 outputs from state, vectorised: (uint64[n], new state)."""
    idx = np.arange(1, n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = np.uint64(state) + idx * np.uint64(GAMMA)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return z, (state + n * GAMMA) & M64


def pixel_case(mode, seed, n_images, h, w):
    """The synthetic test set of test_metrics.c: (maps float32 [h][w], masks uint8 [h][w],
    has_mask) per image. Image i draws from stream 100 + i: unless i % 5 == 4 (no mask:
    NULL in C), 0-3 shapes, each a rectangle (value 1), a disk (value 255) or a diagonal
    run of pixels (value 7; one region with 8-connectivity, several with 4); i % 7 == 6
    makes the whole mask anomalous. Then one draw a per pixel (row-major) and the integer
      v = (a >> 44) + 600000 * anomalous + ((x * 7 + y * 13 + i * 101) % 1024) * 256
    gives the score: mode c v / 2^20 (continuous), mode t (v >> 15) / 32 (at most 64
    levels), mode s ((v >> 15) - 32) / 32 with zeros made -0.0 where a is odd."""
    out = []
    yy, xx = np.divmod(np.arange(h * w, dtype=np.int64), w)
    for i in range(n_images):
        r = SplitMix(seed, 100 + i)
        mask = np.zeros((h, w), dtype=np.uint8)
        has_mask = i % 5 != 4
        n_shapes = r.next() % 4 if has_mask else 0
        for _ in range(n_shapes):
            t = r.next() % 3
            y0 = r.next() % h
            x0 = r.next() % w
            if t == 0:
                hh = 1 + r.next() % max(1, h // 3)
                ww = 1 + r.next() % max(1, w // 3)
                mask[y0:y0 + hh, x0:x0 + ww] = 1
            elif t == 1:
                rad = 1 + r.next() % max(1, min(h, w) // 5)
                mask.ravel()[(yy - y0) ** 2 + (xx - x0) ** 2 <= rad * rad] = 255
            else:
                length = 2 + r.next() % 6
                for k in range(length):
                    if y0 + k < h and x0 + k < w:
                        mask[y0 + k, x0 + k] = 7
        if has_mask and i % 7 == 6:
            mask[:] = 1
        a, r.s = sm_block(r.s, h * w)
        v = ((a >> np.uint64(44)).astype(np.int64) + 600000 * (mask.ravel() != 0)
             + ((xx * 7 + yy * 13 + i * 101) % 1024) * 256)
        if mode == "c":
            s = (v / float(1 << 20)).astype(np.float32)
        elif mode == "t":
            s = ((v >> 15) / 32.0).astype(np.float32)
        else:
            s = (((v >> 15) - 32) / 32.0).astype(np.float32)
            s[(s == 0) & ((a & np.uint64(1)) == 1)] = np.float32(-0.0)
        out.append((s.reshape(h, w), mask, has_mask))
    return out


def trapezoid(x, y, x_max):
    """Area under (x, y) (x non-decreasing) up to x_max, interpolating linearly at x_max:
    the semantics of MVTec AD's generic_util.trapezoid."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    correction = 0.0
    if x_max not in x:
        ins = bisect.bisect(x, x_max)
        assert 0 < ins < len(x)
        y_interp = y[ins - 1] + (y[ins] - y[ins - 1]) * (x_max - x[ins - 1]) / (x[ins] - x[ins - 1])
        correction = 0.5 * (y_interp + y[ins - 1]) * (x_max - x[ins - 1])
    keep = x <= x_max
    x = x[keep]
    y = y[keep]
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * (x[1:] - x[:-1])) + correction)


def region_weights(masks):
    """Per pixel: 1 / size of its 8-connected region (0 for normal pixels); regions."""
    ws, n_regions = [], 0
    for m in masks:
        lab, k = ndimage.label(m != 0, structure=np.ones((3, 3), dtype=int))
        n_regions += k
        sizes = np.bincount(lab.ravel())
        wt = np.where(lab > 0, 1.0 / sizes[lab], 0.0)
        ws.append(wt.ravel())
    return np.concatenate(ws), n_regions


def pro_curve(maps, masks, fpr_dtype=np.float64):
    """The PRO curve at every distinct score (from the top), with (0, 0) in front and
    (1, 1) behind, as MVTec's compute_pro; fpr_dtype float32 reproduces its rounding."""
    s = np.concatenate([m.ravel() for m in maps]).astype(np.float64)
    normal = np.concatenate([(m.ravel() == 0) for m in masks]).astype(np.int64)
    wt, n_regions = region_weights(masks)
    order = np.argsort(-s, kind="stable")
    fp = np.cumsum(normal[order])
    if fpr_dtype == np.float32:
        fprs = fp.astype(np.float32) / np.float32(normal.sum())
    else:
        fprs = fp / float(normal.sum())
    pros = np.cumsum(wt[order]) / n_regions
    so = s[order]
    keep = np.append(so[1:] != so[:-1], True)
    fprs = np.clip(fprs[keep], None, 1.0)
    pros = np.clip(pros[keep], None, 1.0)
    return (np.concatenate(([0.0], fprs, [1.0])), np.concatenate(([0.0], pros, [1.0])))


def exact_aupro(maps, masks, max_fpr, fpr_dtype=np.float64):
    x, y = pro_curve(maps, masks, fpr_dtype)
    return trapezoid(x, y, max_fpr) / max_fpr


def brute_aupro(maps, masks, max_fpr):
    """Threshold by threshold, straight from the definition (small inputs only)."""
    s = np.concatenate([m.ravel() for m in maps]).astype(np.float64)
    normal = np.concatenate([(m.ravel() == 0) for m in masks])
    regions = []
    off = 0
    for m in masks:
        lab, k = ndimage.label(m != 0, structure=np.ones((3, 3), dtype=int))
        for r in range(1, k + 1):
            regions.append(off + np.flatnonzero(lab.ravel() == r))
        off += m.size
    xs, ys = [0.0], [0.0]
    for t in np.unique(s)[::-1]:
        pred = s >= t
        xs.append(min(1.0, np.sum(pred & normal) / normal.sum()))
        ys.append(min(1.0, float(np.mean([pred[r].mean() for r in regions]))))
    xs.append(1.0)
    ys.append(1.0)
    return trapezoid(xs, ys, max_fpr) / max_fpr


PIXEL_CASES = (
    # mode, seed, images, h, w, max_fpr
    ("c", 11, 12, 37, 53, 0.3),
    ("t", 12, 12, 37, 53, 0.3),
    ("s", 13, 10, 29, 31, 0.3),
    ("c", 14, 9, 40, 40, 1.0),
    ("t", 15, 9, 40, 40, 0.05),
    ("c", 16, 3, 1, 7, 0.3),
    ("c", 17, 80, 224, 224, 0.3),   # 4 million pixels
)


def write_pixel():
    lines = []
    for mode, seed, n, h, w, max_fpr in PIXEL_CASES:
        case = pixel_case(mode, seed, n, h, w)
        maps = [c[0] for c in case]
        masks = [c[1] for c in case]
        y = np.concatenate([(m.ravel() != 0) for m in masks]).astype(np.int64)
        s = np.concatenate([m.ravel() for m in maps])
        auroc = float(roc_auc_score(y, s))
        f1 = f1_max(y, s)
        aupro = exact_aupro(maps, masks, max_fpr)
        official = exact_aupro(maps, masks, max_fpr, np.float32)
        if s.size <= 20000:
            brute = brute_aupro(maps, masks, max_fpr)
            assert abs(brute - aupro) < 1e-12, (brute, aupro)
        _, n_regions = region_weights(masks)
        lines.append("pixel %s %d %d %d %d %.17g %.17g %.17g %.17g %d %d %.17g" % (
            mode, seed, n, h, w, max_fpr, auroc, aupro, f1, int(y.sum()), n_regions, official))
        print("pixel", mode, seed, n, h, w, "auroc %.6f aupro %.6f (official %.9f) f1 %.6f"
              % (auroc, aupro, official, f1), "anomalous", int(y.sum()), "regions", n_regions,
              "distinct", len(np.unique(s)))
    with open(os.path.join(OUT, "pixel.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


# ---- clustering -----------------------------------------------------------------------

def cluster_metrics(t, p):
    """(nmi, ari, micro F1, macro F1 or nan) as documented at the top."""
    t = np.asarray(t, dtype=np.int64)
    p = np.asarray(p, dtype=np.int64)
    nmi = float(normalized_mutual_info_score(t, p))
    ari = float(adjusted_rand_score(t, p))
    ut, ti = np.unique(t, return_inverse=True)
    up, pi = np.unique(p, return_inverse=True)
    C = np.zeros((len(ut), len(up)), dtype=np.int64)
    np.add.at(C, (ti, pi), 1)
    rows, cols = linear_sum_assignment(C, maximize=True)
    matched = int(C[rows, cols].sum())
    to_type = {int(c): int(r) for r, c in zip(rows, cols)}
    mapped = np.array([to_type.get(int(x), -1) for x in pi])
    micro = float(f1_score(ti, mapped, average="micro"))
    assert abs(micro - matched / len(t)) < 1e-12
    macro = float(f1_score(ti, mapped, labels=np.arange(len(ut)), average="macro",
                           zero_division=0))
    # every optimal matching must give the same macro F1, else it is not well defined:
    # true when the matching is unique (forbidding any of its cells lowers the optimum),
    # else checked by enumerating all matchings when there are few
    kt, kp = C.shape
    unique = True
    for r_, c_ in zip(rows, cols):
        D = C.copy()
        D[r_, c_] = -(10 ** 9)
        rr, cc = linear_sum_assignment(D, maximize=True)
        if D[rr, cc].sum() == matched:
            unique = False
            break
    small, big = min(kt, kp), max(kt, kp)
    if not unique:
        if np.prod(np.arange(big - small + 1, big + 1, dtype=np.float64)) > 300000:
            return nmi, ari, micro, float("nan")
        best, macros = -1, set()
        for perm in itertools.permutations(range(big), small):
            pairs = [(i, perm[i]) if kt <= kp else (perm[i], i) for i in range(small)]
            tot = sum(C[a, b] for a, b in pairs)
            f = np.zeros(kt)
            for a, b in pairs:
                f[a] = 2.0 * C[a, b] / (C[a].sum() + C[:, b].sum())
            m = round(float(f.mean()), 12)
            if tot > best:
                best, macros = tot, {m}
            elif tot == best:
                macros.add(m)
        assert best == matched
        if len(macros) > 1:
            macro = float("nan")
    return nmi, ari, micro, macro


def cluster_gen(seed, n, kt, kp):
    """Generated case: truth = r % kt; with probability 3/4 pred = (5 * truth + 1) % kp,
    else pred = r'' % kp (draws in that order per item, stream 9)."""
    r = SplitMix(seed, 9)
    t = np.empty(n, dtype=np.int64)
    p = np.empty(n, dtype=np.int64)
    for i in range(n):
        t[i] = r.next() % kt
        if r.next() % 4 != 0:
            p[i] = (5 * t[i] + 1) % kp
        else:
            p[i] = r.next() % kp
    return t, p


def write_cluster():
    rng = np.random.default_rng(777)
    cases = {}
    t = rng.integers(0, 4, 40)
    perm = np.array([11, 5, -3, 8])
    cases["perfect_perm"] = (t, perm[t])
    cases["random_k3_n50"] = (rng.integers(0, 3, 50), rng.integers(0, 3, 50))
    cases["random_k5_n200"] = (rng.integers(0, 5, 200), rng.integers(0, 5, 200))
    t = rng.integers(0, 4, 120)
    p = np.where(rng.random(120) < 0.7, (t + 1) % 4, rng.integers(0, 4, 120))
    cases["noisy_k4_n120"] = (t, p)
    t = rng.integers(0, 3, 90)
    p = np.where(rng.random(90) < 0.6, t, rng.integers(0, 5, 90))
    cases["more_clusters"] = (t, p)
    t = rng.integers(0, 5, 90)
    p = np.where(rng.random(90) < 0.6, t % 3, rng.integers(0, 3, 90))
    cases["fewer_clusters"] = (t, p)
    t = rng.integers(0, 3, 30)
    cases["one_cluster"] = (t, np.full(30, 2))
    cases["all_distinct"] = (t, np.arange(30) * 3 - 40)
    cases["both_one"] = (np.full(12, 4), np.full(12, -1))
    cases["n1"] = (np.array([3]), np.array([9]))
    cases["n2_split"] = (np.array([0, 0]), np.array([0, 1]))
    cases["anti"] = (np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]))
    vals = np.array([-2147483648, -7, 0, 2147483647])
    t = rng.integers(0, 4, 60)
    p = np.where(rng.random(60) < 0.8, t, rng.integers(0, 4, 60))
    cases["extreme_values"] = (vals[t], vals[::-1][p])
    lines = []
    for name, (t, p) in cases.items():
        nmi, ari, f1, f1m = cluster_metrics(t, p)
        lines.append("case %s %d %.17g %.17g %.17g %.17g" % (name, len(t), nmi, ari, f1, f1m))
        lines.append(" ".join(str(int(v)) for v in t))
        lines.append(" ".join(str(int(v)) for v in p))
        print("cluster", name, len(t),
              "nmi %.6f ari %.6f f1 %.6f f1_macro %.6f" % (nmi, ari, f1, f1m))
    for seed, n, kt, kp in ((5, 100000, 10, 12), (6, 5000, 6, 4)):
        t, p = cluster_gen(seed, n, kt, kp)
        nmi, ari, f1, f1m = cluster_metrics(t, p)
        lines.append("gen %d %d %d %d %.17g %.17g %.17g %.17g"
                     % (seed, n, kt, kp, nmi, ari, f1, f1m))
        print("cluster gen", seed, n, kt, kp,
              "nmi %.6f ari %.6f f1 %.6f f1_macro %.6f" % (nmi, ari, f1, f1m))
    with open(os.path.join(OUT, "cluster.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")

if __name__ == "__main__":
    main()
