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
"""
import os

import numpy as np
from sklearn.metrics import roc_auc_score

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


if __name__ == "__main__":
    main()
