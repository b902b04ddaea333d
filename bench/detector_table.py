#!/usr/bin/env python3
"""detector_table.py - JSON records and the table of the detector part of `make bench`.

Called by bench/detector.sh (standard library only: no torch, no numpy). Subcommands:
  skip               a "skipped (reason)" record
  fit                a record of one `uniformaly fit` run: its stderr summary line, the
                     /usr/bin/time figures (peak RSS), `uniformaly info --json`, file sizes,
                     and the memory budget 1.5 x raw bank bytes + model + 256 MB
  predict            a record of one `uniformaly predict --json` run: images/s and the image
                     AUROC (labels from the folder names: "good" = normal)
  ref                the record of scripts/ref_detector.py's JSON output
  patches-per-image  foreground patches per image of a fit record (rounded down), for sizing
                     the large-bank fit
  table              the table, from $RES (JSON lines) and the environment run.sh-style
Records are printed to stdout, one JSON object per line.
"""
import argparse
import json
import statistics
import os
import re
import sys
import textwrap

MB = 1 << 20


def say(text):
    """A note under a table, wrapped at 100 columns."""
    print(textwrap.fill(text, 100, subsequent_indent="    "))


def emit(rec):
    print(json.dumps(rec))


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def auroc(labels, scores):
    """Area under the ROC curve (ties count one half), as sklearn's roc_auc_score."""
    pos = [s for l, s in zip(labels, scores) if l]
    neg = [s for l, s in zip(labels, scores) if not l]
    if not pos or not neg:
        return None
    # rank-sum with average ranks for ties (Mann-Whitney U)
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    rpos = sum(r for r, l in zip(ranks, labels) if l)
    return (rpos - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))


def cmd_skip(a):
    emit({"bench": a.bench, "name": a.name, "impl": a.impl, "status": "skipped",
          "reason": a.reason})


def cmd_fit(a):
    rec = {"bench": "fit", "name": a.name, "impl": "ours", "dir": a.dir}
    log = read(a.log)
    # fit: 209 images (12.3 s, 17.0 images/s), 40964 foreground patches -> bank 4096 x 192
    #      (3.1 MB, coreset 4.5 s); wrote ...
    m = re.search(r"fit: (\d+) images \(([\d.]+) s, ([\d.]+) images/s\), (\d+) foreground "
                  r"patches -> bank (\d+) x (\d+) \(([\d.]+) MB, coreset ([\d.]+) s\)", log)
    if a.rc != 0 or not m:
        last = [l for l in log.splitlines() if l.strip()][-1:] or ["no output"]
        rec.update(status="failed", reason="exit %d: %s" % (a.rc, last[0][:200]))
        emit(rec)
        return
    rec.update(status="ok", n_images=int(m.group(1)), features_s=float(m.group(2)),
               features_images_per_s=float(m.group(3)), patches=int(m.group(4)),
               bank_size=int(m.group(5)), dim=int(m.group(6)),
               coreset_save_s=float(m.group(8)))
    rec["wall_s"] = round(a.wall, 3)
    rec["images_per_s"] = round(rec["n_images"] / a.wall, 3)
    for k, v in re.findall(r"(\w+)=([\d.]+)", read(a.time)):
        rec[k] = float(v)
    try:
        info = json.loads(read(a.info))
    except ValueError:
        info = {}
    full = info.get("bank_size_full", info.get("n_bank_full", rec["patches"]))
    dim = info.get("dim", rec["dim"])
    rec["bank_size_full"] = int(full)
    embedded = bool(info.get("backbone", {}).get("embedded")) if isinstance(
        info.get("backbone"), dict) else bool(info.get("embedded", False))
    model_bytes = os.path.getsize(a.model) if os.path.exists(a.model) else 0
    backbone_bytes = os.path.getsize(a.backbone) if os.path.exists(a.backbone) else 0
    # The backbone is resident during the fit whether or not the file embeds it.
    model_total = model_bytes + (0 if embedded else backbone_bytes)
    raw = int(full) * int(dim) * 4
    budget = 1.5 * raw + model_total + 256 * MB
    rec.update(model_bytes=model_bytes, backbone_bytes=backbone_bytes,
               backbone_embedded=embedded, raw_bank_bytes=raw,
               budget_bytes=int(budget))
    if "maxrss_kb" in rec:
        rec["peak_rss_bytes"] = int(rec["maxrss_kb"] * 1024)
        rec["rss_over_budget"] = round(rec["peak_rss_bytes"] / budget, 4)
    emit(rec)


def cmd_predict(a):
    rec = {"bench": "predict", "name": a.name, "impl": "ours"}
    rows = []
    for line in read(a.json).splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if isinstance(r, dict) and "image" in r and "score" in r:
            rows.append(r)
    if a.rc != 0 or not rows:
        last = [l for l in read(a.log).splitlines() if l.strip()][-1:] or ["no output"]
        rec.update(status="failed", reason="exit %d: %s" % (a.rc, last[0][:200]))
        emit(rec)
        return
    test = os.path.abspath(a.test)
    labels = []
    for r in rows:
        rel = os.path.relpath(os.path.abspath(r["image"]), test)
        labels.append(0 if "good" in rel.split(os.sep)[:-1] else 1)
    walls = [float(w) for w in (a.walls or "").split()] or [a.wall]
    best, med = min(walls), statistics.median(walls)
    rec.update(status="ok", n_images=len(rows), wall_s=round(best, 3),
               images_per_s=round(len(rows) / best, 3), rounds=len(walls),
               images_per_s_median=round(len(rows) / med, 3),
               image_auroc=auroc(labels, [float(r["score"]) for r in rows]),
               n_anomalous=sum(labels))
    emit(rec)


def cmd_ref(a):
    try:
        r = json.loads(read(a.json).strip().splitlines()[-1])
    except (ValueError, IndexError):
        emit({"bench": "bottle", "name": "fit", "impl": "torch", "status": "skipped",
              "reason": "scripts/ref_detector.py printed no JSON"})
        return
    r.update(bench="ref", name="bottle", impl="torch", status="ok")
    emit(r)


def load(res):
    recs = []
    for line in read(res).splitlines():
        try:
            recs.append(json.loads(line))
        except ValueError:
            pass
    return recs


def cmd_ppi(a):
    for r in load(a.res):
        if r.get("bench") == "fit" and r.get("name") == a.name and r.get("status") == "ok":
            if r["n_images"] > 0 and r["patches"] > 0:
                print(max(1, r["patches"] // r["n_images"]))
            return


def fmt_table(head, rows, right=None):
    """Plain aligned table; columns right-aligned except the first."""
    w = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    out = []
    for i, row in enumerate([head, ["-" * n for n in w]] + rows):
        cells = []
        for j, x in enumerate(row):
            cells.append(str(x).ljust(w[j]) if j == 0 else str(x).rjust(w[j]))
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


def cmd_table(a):
    env = os.environ.get
    recs = load(env("RES", "bench/out/detector/results.jsonl"))
    notes = []

    def find(bench, name=None, impl=None, **kw):
        for r in recs:
            if r.get("bench") == bench and (name is None or r.get("name") == name) and \
                    (impl is None or r.get("impl") == impl) and \
                    all(r.get(k) == v for k, v in kw.items()):
                return r
        return None

    def why(r, what):
        """Cell for a missing or failed record; the reason goes under the table."""
        reason = (r or {}).get("reason") or "no result (crashed? see the log above)"
        status = (r or {}).get("status", "missing")
        text = "%s: %s %s" % (what, "failed" if status == "failed" else "skipped", reason)
        if text not in notes:
            notes.append(text)
        return "%s [%d]" % ("failed" if status == "failed" else "skipped",
                            notes.index(text) + 1)

    ok = lambda r: r is not None and r.get("status") == "ok"
    parts = env("PARTS", "knn,coreset,bottle,memory").split(",")
    thr = env("THREADS", "2")
    torch_v = next((r.get("torch") for r in recs if r.get("torch")), None)
    print("uniformaly bench: detector (kNN scoring, coreset, fit, predict, fit memory), "
          "%s threads everywhere" % thr)
    print("cpu: %s; load average %s at start, %s at end; %s s" % (
        env("CPU", "?"), env("load_start", "?"), env("LOAD_END", "?"), env("ELAPSED", "?")))
    print("references, same run: OpenBLAS cblas_sgemm; PyTorch %s (torch.set_num_threads(%s))"
          % (torch_v or "(not run)", thr))
    print()

    # 1. kNN
    # cblas_sgemm 2048^3 is measured at the start and the end of the run: keep the best
    sgs = [r for r in recs if r.get("bench") == "sgemm" and ok(r)]
    sg = max(sgs, key=lambda r: r["gflops"]) if sgs else None
    print("1. kNN scoring (k = 1, exact) vs cblas_sgemm; all counted as 2*nq*nb*D FLOPs, best "
          "call; goal: ours >= 80% of the better sgemm figure")
    rows = []
    for name in ("bank100k", "predict"):
        r = find("knn", name)
        if ok(r):
            best_sg = max(r["sgemm_gflops"], sg["gflops"] if ok(sg) else 0)
            rows.append(["%s %d x %d x %d" % (name, r["nq"], r["nb"], r["dim"]),
                         "%.1f" % r["knn_gflops"], "%.1f" % r["sgemm_gflops"],
                         "%.0f%%" % (100 * r["ratio"]),
                         "%.0f%%" % (100 * r["knn_gflops"] / sg["gflops"]) if ok(sg) else "n/a",
                         "yes" if r["knn_gflops"] >= 0.8 * best_sg else "NO", str(r["reps"])])
        elif find("knn") is not None or r is not None:
            rows.append([name, why(r, "knn " + name), "", "", "", "", ""])
    if rows:
        print(fmt_table(["shape (queries x bank x D)", "ours GFLOP/s", "same-shape sgemm",
                         "ours/same", "ours/peak", "goal met", "calls"], rows))
        if ok(sg):
            say("peak = cblas_sgemm 2048^3 alone: %.1f GFLOP/s (best of %d runs of 5 calls, "
                  "start and end; OpenBLAS %s kernels). The same-shape sgemm (queries in "
                  "pieces of 1024) writes its whole nq x nb product to memory, so it can fall "
                  "below the peak and below the kNN, which keeps its tiles in cache"
                  % (sg["gflops"], len(sgs), sg.get("blas_core", "?")))
    else:
        print("(not run)" if "knn" in parts else "(not selected: BENCH_DETECTOR_PARTS)")
    print()

    # 2. coreset
    print("2. greedy coreset 150,000 x 192 -> 15,000 (10%): seconds; ratio = PyTorch / ours")
    rows = []
    iters = None
    for name, label in (("clustered", "100 Gaussian clusters"), ("uniform", "uniform noise")):
        o = find("coreset", name, "ours")
        tp = find("coreset", name, "torch", dist="patchcore")
        ti = find("coreset", name, "torch", dist="inplace")
        tskip = find("coreset", name, "torch", status="skipped")
        if o is None and tp is None and tskip is None:
            continue
        row = [label]
        ours_s = o["seconds"] if ok(o) else None
        row.append("%.2f" % ours_s if ours_s else why(o, "coreset ours " + name))
        row.append(("yes" if ours_s <= 15 else "NO") if ours_s else "")
        for t in (tp, ti):
            if ok(t):
                iters = t["iters_run"]
                row += ["%.0f" % t["seconds"],
                        "%.0fx" % (t["seconds"] / ours_s) if ours_s else "n/a"]
            else:
                row += [why(t or tskip, "coreset torch " + name), ""]
        rows.append(row)
    if rows:
        print(fmt_table(["data", "ours s", "<= 15 s", "PatchCore torch s", "ratio",
                         "in-place torch s", "ratio"], rows))
        if iters:
            say("PyTorch columns extrapolated: setup (projection, 10 starts) + %d of the "
                  "15,000 greedy steps timed, x 15,000/%d (every step is one pass over all "
                  "150,000 points); PatchCore = its published sampler code, in-place = the same "
                  "algorithm with preallocated buffers" % (iters, iters))
        for name in ("clustered", "uniform"):
            o = find("coreset", name, "ours")
            t = find("coreset", name, "torch", dist="patchcore")
            if ok(o) and ok(t):
                print("  %s: wall/cpu ours %.2f/%.2f s, PatchCore torch %.0f/%.0f s" % (
                    name, o["seconds"], o.get("cpu_s", 0), t["seconds"], t.get("cpu_s", 0)))
    else:
        print("(not run)" if "coreset" in parts else "(not selected: BENCH_DETECTOR_PARTS)")
    print()

    # 3. fit / predict
    print("3. MVTec bottle, shared ViT-Tiny, default method (coreset 0.1): images/s of whole "
          "runs, image decoding included")
    fo, po, rt = find("fit", "bottle", "ours"), find("predict", "bottle", "ours"), \
        find("ref", "bottle", "torch")
    rskip = find("bottle", "fit", "torch")
    oskip = find("bottle", "fit", "ours")
    if "bottle" not in parts:
        print("(not selected: BENCH_DETECTOR_PARTS)")
    elif fo or po or rt or rskip or oskip:
        rows = []
        for step, o, tkey in (("fit", fo, "fit_images_per_s"),
                              ("predict", po, "predict_images_per_s")):
            oc = "%.2f" % o["images_per_s"] if ok(o) else why(o or oskip, "ours " + step)
            tc = "%.2f" % rt[tkey] if ok(rt) else why(rt or rskip, "torch bottle")
            ratio = "%.1fx" % (o["images_per_s"] / rt[tkey]) if ok(o) and ok(rt) else ""
            n = o.get("n_images", "") if ok(o) else (rt.get("n_train" if step == "fit"
                                                             else "n_test", "") if ok(rt) else "")
            rows.append([step, str(n), oc, tc, ratio])
        # the per-level predict runs (UF_CPU), in the order they ran
        for lv in [r for r in recs if r.get("bench") == "predict"
                   and r.get("name", "").startswith("bottle_")]:
            tc = "%.2f" % rt["predict_images_per_s"] if ok(rt) else ""
            ratio = "%.1fx" % (lv["images_per_s"] / rt["predict_images_per_s"]) \
                if ok(lv) and ok(rt) else ""
            lname = lv["name"][len("bottle_"):]
            ips = "%.2f" % lv["images_per_s"] if ok(lv) else why(lv, "ours predict")
            if ok(lv) and lv.get("rounds", 1) > 1:
                ips += " (median %.2f, %d rounds)" % (lv["images_per_s_median"], lv["rounds"])
            rows.append(["predict " + ("--precision bf16" if lname == "bf16" else
                                       "UF_CPU=" + lname),
                         str(lv.get("n_images", "")) if ok(lv) else "", ips, tc, ratio])
        print(fmt_table(["step", "images", "ours img/s", "torch img/s", "ours/torch"], rows))
        aur_o = "%.4f" % po["image_auroc"] if ok(po) and po.get("image_auroc") is not None \
            else "n/a"
        aur_t = "%.4f" % rt["image_auroc"] if ok(rt) and rt.get("image_auroc") is not None \
            else "n/a"
        print("image AUROC (sanity check): ours %s, torch %s" % (aur_o, aur_t))
        if ok(fo):
            say("ours: fit = whole `uniformaly fit` process (load, decode, forward, bank "
                  "%d patches -> coreset %d, save; features %.1f img/s, coreset+save %.1f s)"
                  % (fo["patches"], fo["bank_size"], fo["features_images_per_s"],
                     fo["coreset_save_s"]))
            say("ours: predict = whole `uniformaly predict --json` process (model load, "
                  "decode, score; no pixel maps)")
        if ok(rt):
            say("torch: scripts/ref_detector.py, timed inside the process (weights loaded "
                  "before), bank %d -> %d, its coreset %.1f s; predict without pixel maps"
                  % (rt.get("bank_size_full", 0), rt.get("bank_size", 0),
                     rt.get("coreset_s") or 0))
    else:
        print("(not run)")
    print()

    # 4. memory
    print("4. fit peak resident memory vs the budget 1.5 x raw bank + model + 256 MB "
          "(raw bank = foreground patches x D x 4 bytes; MB = 2^20 bytes)")
    rows = []
    for name in ("bottle", "large") if "memory" in parts else ():
        r = find("fit", name, "ours")
        s = find("memory", name, "ours")
        if ok(r) and "peak_rss_bytes" in r:
            rows.append([name, str(r["n_images"]), str(r["patches"]), str(r["bank_size"]),
                         "%.0f" % (r["raw_bank_bytes"] / MB),
                         "%.0f" % ((r["budget_bytes"] - 1.5 * r["raw_bank_bytes"]
                                    - 256 * MB) / MB),
                         "%.0f" % (r["budget_bytes"] / MB),
                         "%.0f" % (r["peak_rss_bytes"] / MB),
                         "%.2f" % r["rss_over_budget"],
                         "yes" if r["rss_over_budget"] <= 1 else "NO",
                         "%.1f" % r["wall_s"]])
        elif r is not None or s is not None:
            rows.append([name, why(r or s, "fit " + name)] + [""] * 9)
    if rows:
        print(fmt_table(["fit", "images", "patches", "bank", "raw MB", "model MB", "budget MB",
                         "peak RSS MB", "RSS/budget", "within", "wall s"], rows))
        say("model = model file + backbone checkpoint (resident during the fit, counted "
              "once); peak RSS from /usr/bin/time (%%M); large = bottle's train images "
              "repeated until >= %s foreground patches%s" % (
                  env("BENCH_MEM_PATCHES", "150000"),
                  ", fitted with " + env("BENCH_MEM_FIT_OPTS") if env("BENCH_MEM_FIT_OPTS")
                  else ", default method (coreset 0.1)"))
    else:
        print("(not run)" if "memory" in parts else "(not selected: BENCH_DETECTOR_PARTS)")

    if notes:
        print()
        for i, n in enumerate(notes):
            print("[%d] %s" % (i + 1, n))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sp = ap.add_subparsers(dest="cmd", required=True)
    p = sp.add_parser("skip")
    for k in ("bench", "name", "impl", "reason"):
        p.add_argument("--" + k, required=True)
    p = sp.add_parser("fit")
    for k in ("name", "dir", "log", "time", "model", "info", "backbone"):
        p.add_argument("--" + k, required=True)
    p.add_argument("--rc", type=int, required=True)
    p.add_argument("--wall", type=float, required=True)
    p = sp.add_parser("predict")
    for k in ("name", "json", "log", "test"):
        p.add_argument("--" + k, required=True)
    p.add_argument("--rc", type=int, required=True)
    p.add_argument("--wall", type=float, required=True)
    p.add_argument("--walls", help="the wall times of several rounds (best and median kept)")
    p = sp.add_parser("ref")
    p.add_argument("--json", required=True)
    p = sp.add_parser("patches-per-image")
    p.add_argument("--res", required=True)
    p.add_argument("--name", required=True)
    sp.add_parser("table")
    a = ap.parse_args()
    {"skip": cmd_skip, "fit": cmd_fit, "predict": cmd_predict, "ref": cmd_ref,
     "patches-per-image": cmd_ppi, "table": cmd_table}[a.cmd](a)


if __name__ == "__main__":
    main()
