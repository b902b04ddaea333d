#!/usr/bin/env python3
"""zeroshot_auroc.py - image AUROC of a `uniformaly zeroshot` run, labels from folder names.

Why: zeroshot has no eval task yet; this measures its text output the way the README's
figures were measured. Python standard library only.

  scripts/zeroshot_auroc.py mtd-list ROOT > mtd_test.txt   # MTD's test split, as eval's
  scripts/zeroshot_auroc.py auroc SCORES.tsv                # PATH<TAB>SCORE<TAB>... lines

A path is normal when a folder of it is named `good` (MVTec AD) or `MT_Free` (MTD), else
anomalous. The MTD split is eval's (src/eval/dataset.c): MT_Free images sorted bytewise,
index i % 5 == 0 to test, plus every image of the MT_<Defect> folders.
"""
import os
import sys


def mtd_list(root):
    out = []
    for d in sorted(os.listdir(root)):
        imgs_dir = os.path.join(root, d, "Imgs")
        if not d.startswith("MT_") or not os.path.isdir(imgs_dir):
            continue
        names = sorted(f for f in os.listdir(imgs_dir)
                       if f.lower().endswith((".jpg", ".jpeg", ".bmp")))
        out += [os.path.join(imgs_dir, f) for i, f in enumerate(names)
                if d != "MT_Free" or i % 5 == 0]
    return out


def auroc(scores, labels):
    """Mann-Whitney AUROC, ties count half (sklearn's roc_auc_score)."""
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
    npos = sum(labels)
    nneg = len(labels) - npos
    rsum = sum(r for r, y in zip(ranks, labels) if y)
    return (rsum - npos * (npos + 1) / 2) / (npos * nneg)


def main(argv):
    if len(argv) == 3 and argv[1] == "mtd-list":
        print("\n".join(mtd_list(argv[2])))
        return 0
    if len(argv) == 3 and argv[1] == "auroc":
        scores, labels = [], []
        with open(argv[2], encoding="utf-8", errors="replace") as f:
            for line in f:
                path, score = line.rstrip("\n").split("\t")[:2]
                parts = path.split("/")
                labels.append(0 if "good" in parts or "MT_Free" in parts else 1)
                scores.append(float(score))
        print("images %d, anomalous %d, image AUROC %.4f"
              % (len(scores), sum(labels), auroc(scores, labels)))
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
