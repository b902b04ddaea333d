#!/usr/bin/python3
"""
bench_coreset_ref.py - PyTorch reference timing of the greedy coreset for `make bench`
(bench/detector.sh), beside uf__coreset_greedy on the same features.

The algorithm is PatchCore's ApproximateGreedyCoresetSampler (patchcore/sampler.py), the
sampler UniFormaly inherits, written the same way (same tensor operations per step):
  1. project the features to 128 dimensions with a random torch.nn.Linear(D, 128,
     bias=False) (skipped when D == 128);
  2. pick 10 random starting points (np.random.choice without replacement) and set
     m[i] = mean distance of point i to them;
  3. n_keep = int(N * fraction) times: c = argmax(m), record c, m = min(m, dist(., c)).
Distances (--dist, a comma-separated list: each variant is run and reported in turn):
  patchcore  PatchCore's _compute_batchwise_differences: (-2 a.b + |a|^2 + |b|^2)
             .clamp(0).sqrt() with the |a|^2 term recomputed by bmm every step, and the
             running minimum as torch.cat([m, d], -1).min(1) - the code as published
             (default);
  inplace    the same algorithm tuned for PyTorch on CPU: direct distances into buffers
             allocated once (torch.sub/mul_/sum/sqrt_ with out=, torch.minimum out=m).
             Every fresh tensor of N x 128 floats costs page faults (77 MB at N = 150k),
             which on some VMs is the larger part of a step; this variant has none;
  norm       torch.linalg.norm(P - P[c], dim=1) and torch.minimum: the plainest PyTorch
             loop (allocates an N x 128 temporary per step).
Every step of step 3 costs the same (one pass over all N projected points), so the full
run is extrapolated from the first --iters steps:
  total = setup (projection + starting distances) + loop_time * n_keep / iters.
With --iters 0 (or >= n_keep) the loop runs to the end and nothing is extrapolated.

Input: a .npy float32 [N][D] file (bench_detector --coreset writes it). Output: one JSON
line (appended to --out, or stdout).

    /usr/bin/python3 scripts/bench_coreset_ref.py --data bench/out/coreset_clustered.npy \
        --name clustered --fraction 0.1 --iters 100 --threads 2
"""
import argparse
import json
import sys
import time

import numpy as np
import torch


def batchwise_differences(a, b):
    """PatchCore's GreedyCoresetSampler._compute_batchwise_differences: Euclidean distances
    [len(a)][len(b)] by the expansion."""
    a_times_a = a.unsqueeze(1).bmm(a.unsqueeze(2)).reshape(-1, 1)
    b_times_b = b.unsqueeze(1).bmm(b.unsqueeze(2)).reshape(1, -1)
    a_times_b = a.mm(b.T)
    return (-2 * a_times_b + a_times_a + b_times_b).clamp(0, None).sqrt()


def run(feats, n_keep, iters, dist, a):
    """One timed coreset run of `iters` greedy steps with distance variant `dist`; returns
    the JSON record (the total extrapolated to n_keep steps)."""
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    N, D = feats.shape
    with torch.no_grad():
        c0 = time.process_time()
        t0 = time.perf_counter()
        if D != a.proj:
            mapper = torch.nn.Linear(D, a.proj, bias=False)
            P = mapper(feats)                                           # [N][128]
        else:
            P = feats
        n_start = int(np.clip(a.starts, None, N))
        start = np.random.choice(N, n_start, replace=False).tolist()
        if dist != "norm":  # PatchCore's own start, also for "inplace"
            m = torch.mean(batchwise_differences(P, P[start]), axis=-1).reshape(-1, 1)
            if dist == "inplace":
                m = m.reshape(-1).contiguous()                          # [N]
        else:
            m = torch.stack([torch.linalg.norm(P - P[s], dim=1) for s in start]).mean(0)
        if dist == "inplace":
            buf = torch.empty_like(P)                                   # [N][128]
            d = torch.empty(N)                                          # [N]
        t1 = time.perf_counter()
        c1 = time.process_time()
        sel = []
        for _ in range(iters):
            c = torch.argmax(m).item()
            sel.append(c)
            if dist == "patchcore":
                d = batchwise_differences(P, P[c:c + 1])
                m = torch.min(torch.cat([m, d], dim=-1), dim=1).values.reshape(-1, 1)
            elif dist == "inplace":
                torch.sub(P, P[c], out=buf)
                buf.mul_(buf)
                torch.sum(buf, dim=1, out=d)
                d.sqrt_()
                torch.minimum(m, d, out=m)
            else:
                m = torch.minimum(m, torch.linalg.norm(P - P[c], dim=1))
        t2 = time.perf_counter()
        c2 = time.process_time()
    setup, loop = t1 - t0, t2 - t1
    # CPU seconds of the process (all threads), extrapolated like the wall time: on a
    # loaded machine wall / cpu shows how much of the cores the run really had.
    cpu = (c1 - c0) + (c2 - c1) * n_keep / iters
    return {
        "bench": "coreset", "name": a.name, "impl": "torch", "status": "ok",
        "torch": torch.__version__, "threads": torch.get_num_threads(), "dist": dist,
        "n": int(N), "dim": int(D), "fraction": a.fraction, "n_keep": n_keep,
        "iters_run": iters, "setup_s": round(setup, 4), "loop_s": round(loop, 4),
        "ms_per_iter": round(1e3 * loop / iters, 4),
        "seconds": round(setup + loop * n_keep / iters, 3), "extrapolated": iters < n_keep,
        "cpu_s": round(cpu, 3),
        "cover_radius": float(m.max()),  # max distance to the selection after iters steps
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--data", required=True, help=".npy float32 [N][D]")
    ap.add_argument("--name", default="")
    ap.add_argument("--fraction", type=float, default=0.1)
    ap.add_argument("--iters", type=int, default=100,
                    help="greedy steps actually run (0: all); the rest is extrapolated")
    ap.add_argument("--dist", default="patchcore",
                    help="comma-separated: patchcore, inplace, norm")
    ap.add_argument("--proj", type=int, default=128)
    ap.add_argument("--starts", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="")
    a = ap.parse_args(argv)

    torch.set_num_threads(a.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    X = np.load(a.data)
    if X.dtype != np.float32 or X.ndim != 2:
        print("%s: want a float32 [N][D] array" % a.data, file=sys.stderr)
        return 2
    feats = torch.from_numpy(X)
    N, D = feats.shape
    n_keep = int(N * a.fraction)
    iters = n_keep if a.iters <= 0 or a.iters >= n_keep else a.iters

    for dist in a.dist.split(","):
        if dist not in ("patchcore", "inplace", "norm"):
            print("unknown --dist %s" % dist, file=sys.stderr)
            return 2
        rec = run(feats, n_keep, iters, dist, a)
        line = json.dumps(rec)
        if a.out:
            with open(a.out, "a") as f:
                f.write(line + "\n")
        print(line)
        print("bench_coreset_ref: %s %s: setup %.2f s, %.2f ms/step over %d steps -> %.1f s"
              " for %d%s" % (a.name, dist, rec["setup_s"], rec["ms_per_iter"], iters,
                             rec["seconds"], n_keep,
                             " (extrapolated)" if iters < n_keep else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
