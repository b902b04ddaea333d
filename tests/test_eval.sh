#!/usr/bin/env bash
# test_eval.sh - `uniformaly eval` as a user meets it: a small MVTec-layout dataset built
# here from the PNGs of tests/data/detector (masks drawn as PGM files with awk), scored with
# the tiny golden ViT (tests/data/detector/vit.safetensors: dim 48, 4 heads, patch 8).
# Checks: usage errors exit 2 and runtime errors exit 1 naming the file; results.json has
# every documented key with values in range; results.csv/.md/scores.csv agree with it; eval
# scores equal `fit` + `predict` on the same images; the image AUROC and the F1-max threshold
# are recomputed from scores.csv; --cluster (both protocols), --gt-mode/--gt-threshold,
# --shots/--repeats, --multi-class, --max-train and --heatmaps add what they promise; the
# task defaults of the coreset are applied and recorded (and --coreset overrides them); a
# semantic dataset (MNIST fixture) runs the one-class and multi-class protocols; a run that
# fails or is interrupted after its first category keeps that category's results. With
# ../shared: MVTec bottle with the ViT-Tiny reaches image AUROC >= 0.99, pixel AUROC >= 0.98
# and, under the official clustering protocol, NMI >= 0.50 and F1 >= 0.70 (about 15 s). JSON
# is read with /usr/bin/python3's json module (no third-party packages). Needs UF_BIN.
. "$(dirname "$0")/lib.sh"
# pycheck NAME FILE... <<'PY' ... PY: run a python snippet on the files (sys.argv[1:])
pycheck() { local name=$1; shift; if "$PY" - "$@" >"$T/py" 2>&1; then ok "$name"; else bad "$name: $(tail -n 5 "$T/py")"; fi; }

VIT=tests/data/detector/vit.safetensors
OPTS="--backbone $VIT --heads 4 --resize 56 --crop 48 --quiet"
SEM_OPTS="--backbone $VIT --heads 4 --quiet" # semantic: the dataset's default preprocessing
D=tests/data/detector

# --- a two-category dataset in the MVTec layout ---
# pgm W H CONDITION: a binary mask (255 where the awk condition on x, y holds)
pgm() {
  awk -v w="$1" -v h="$2" "BEGIN { print \"P2\"; print w, h; print 255;
    for (y = 0; y < h; y++) { s = \"\"; for (x = 0; x < w; x++) s = s ((($3)) ? 255 : 0) \" \"; print s } }"
}
make_cat() { # make_cat ROOT NAME
  local c="$1/$2"
  mkdir -p "$c/train/good" "$c/test/good" "$c/test/blob" "$c/test/crack" "$c/ground_truth/blob" "$c/ground_truth/crack"
  cp $D/train_*.png "$c/train/good/"
  cp $D/test_good.png "$c/test/good/000.png"
  cp $D/test_blob.png "$c/test/blob/000.png"
  cp $D/test_crack.png "$c/test/crack/000.png"
  # where gen_detector_golden.py draws them: a red ellipse up and right of the disc centre
  # (64 x 70 image), a dark slanted line through the disc (64 x 64); a little generous
  pgm 64 70 '((x-42.4)/7)^2 + ((y-28.1)/5.5)^2 < 1' > "$c/ground_truth/blob/000_mask.pgm"
  pgm 64 64 '(y-32) - 0.4*(x-32) - 3 < 2.5 && (y-32) - 0.4*(x-32) - 3 > -2.5 && (x-32)^2 + (y-32)^2 < 441' \
    > "$c/ground_truth/crack/000_mask.pgm"
}
DS="$T/ds"
make_cat "$DS" a_disc
make_cat "$DS" b_disc

# --- usage errors: exit 2 ---
expect 0 "eval --help" "$BIN" eval --help
grep -q -- "--multi-class" "$T/out" && ok "help lists --multi-class" || bad "help lists --multi-class"
"$BIN" --help | grep -q "eval" && ok "eval in the verbs list" || bad "eval in the verbs list"
expect 2 "no arguments"            "$BIN" eval
expect 2 "unknown option"          "$BIN" eval $OPTS --dataset mvtec --root "$DS" --out "$T/o" --frobnicate
expect 2 "missing --out"           "$BIN" eval $OPTS --dataset mvtec --root "$DS"
expect 2 "missing --dataset"       "$BIN" eval $OPTS --root "$DS" --out "$T/o"
expect 2 "missing --root"          "$BIN" eval $OPTS --dataset mvtec --out "$T/o"
UNIFORMALY_BACKBONE="$T/none.safetensors" expect 1 "no --backbone, bundled one missing" "$BIN" eval --dataset mvtec --root "$DS" --out "$T/o2"
expect 2 "unknown dataset"         "$BIN" eval $OPTS --dataset mvtek --root "$DS" --out "$T/o"
grep -q "fashion-mnist" "$T/err" && ok "unknown dataset: valid names listed" || bad "unknown dataset: $(cat "$T/err")"
expect 2 "unknown category"        "$BIN" eval $OPTS --dataset mvtec --root "$DS" --category zebra --out "$T/o"
grep -q "a_disc" "$T/err" && grep -q "b_disc" "$T/err" && ok "unknown category: valid ones listed" \
  || bad "unknown category: $(cat "$T/err")"
expect 2 "category twice"          "$BIN" eval $OPTS --dataset mvtec --root "$DS" --category a_disc --category a_disc --out "$T/o"
expect 2 "bad --cluster value"     "$BIN" eval $OPTS --dataset mvtec --root "$DS" --cluster 0 --out "$T/o"
expect 2 "--repeats without --shots" "$BIN" eval $OPTS --dataset mvtec --root "$DS" --repeats 3 --out "$T/o"
expect 2 "--shots with --max-train" "$BIN" eval $OPTS --dataset mvtec --root "$DS" --shots 2 --max-train 3 --out "$T/o"
expect 2 "bad --shots"             "$BIN" eval $OPTS --dataset mvtec --root "$DS" --shots 0 --out "$T/o"
expect 1 "--shots above the training images" "$BIN" eval $OPTS --dataset mvtec --root "$DS" --category a_disc --shots 5 --out "$T/o-shots"
grep -q "5 shots asked, but the category has only 4 training images" "$T/err" && ok "--shots above: says so" \
  || bad "--shots above: $(cat "$T/err")"
expect 2 "bad --max-train"         "$BIN" eval $OPTS --dataset mvtec --root "$DS" --max-train x --out "$T/o"
expect 2 "bad method flag"         "$BIN" eval $OPTS --dataset mvtec --root "$DS" --coreset 2 --out "$T/o"
expect 2 "bad --cluster-protocol"  "$BIN" eval $OPTS --dataset mvtec --root "$DS" --cluster-protocol paper --out "$T/o"
expect 2 "bad --gt-mode"           "$BIN" eval $OPTS --dataset mvtec --root "$DS" --gt-mode round --out "$T/o"
expect 2 "bad --gt-threshold"      "$BIN" eval $OPTS --dataset mvtec --root "$DS" --gt-threshold 0 --out "$T/o"
expect 2 "stray argument"          "$BIN" eval $OPTS --dataset mvtec --root "$DS" --out "$T/o" extra
check "nothing written by usage errors" '[ ! -e "$T/o" ]'

# --- runtime errors: exit 1, one line naming the file ---
expect 1 "missing root" "$BIN" eval $OPTS --dataset mvtec --root "$T/nowhere" --out "$T/o"
grep -q "$T/nowhere" "$T/err" && ok "error names the root" || bad "error names the root: $(cat "$T/err")"
expect 1 "missing backbone" "$BIN" eval --backbone "$T/none.safetensors" --dataset mvtec --root "$DS" --out "$T/o"
grep -q "none.safetensors" "$T/err" && ok "error names the checkpoint" || bad "error names the checkpoint: $(cat "$T/err")"
expect 1 "layers beyond the backbone" "$BIN" eval $OPTS --layers 3-12 --dataset mvtec --root "$DS" --out "$T/o"

# --- a full run: two categories, clustering, heatmaps ---
O="$T/run"
expect 0 "eval mvtec layout, --cluster --heatmaps" \
  "$BIN" eval $OPTS --dataset mvtec --root "$DS" --cluster --heatmaps --out "$O" || true
cp "$T/out" "$T/table"
check "results files written" '[ -s "$O/results.json" ] && [ -s "$O/results.csv" ] && [ -s "$O/results.md" ] && [ -s "$O/scores.csv" ]'
check "no temporary files left" '[ -z "$(ls "$O" | grep tmp)" ]'
check "table: a row per category and the mean" \
  'grep -q "^a_disc " "$T/table" && grep -q "^b_disc " "$T/table" && grep -q "^mean " "$T/table"'
pycheck "results.json: documented keys, values in range" "$O/results.json" <<'PY'
import json, sys, math
r = json.load(open(sys.argv[1]))
assert r["status"] == "complete", r["status"]
s = r["settings"]
assert s["dataset"] == "mvtec" and s["categories"] == ["a_disc", "b_disc"], s
assert len(s["backbone"]["sha256"]) == 64 and s["backbone"]["dim"] == 48, s["backbone"]
assert s["versions"]["uniformaly"] and s["params"]["layers"] == "3-10", s
assert s["params"]["preprocess"]["crop"] == 48 and s["params"]["preprocess"]["resize"] == 56
assert s["params"]["bpm_lambda"] == 0.1 and s["cluster"] == "types", s["params"]
assert s["cluster_protocol"] == "official" and s["gt_mode"] == "threshold" and s["gt_threshold"] == 0.5, s
assert s["params"]["coreset"] == 0.1 and "run_defect.sh" in s["defaults"]["coreset"], s["defaults"]
cats = r["categories"]
assert sorted(cats) == ["a_disc", "b_disc"], cats.keys()
for name, c in cats.items():
    for k in ("image_auroc", "pixel_auroc", "aupro", "f1_max", "pixel_f1_max"):
        assert isinstance(c[k], float) or c[k] in (0, 1), (name, k, c[k])
        assert 0 <= c[k] <= 1, (name, k, c[k])
    assert c["n_train"] == 4 and c["n_test"] == 3 and c["n_test_anomalous"] == 2, c
    assert 0 < c["bank_size"] <= c["bank_size_full"], c
    for k in ("fit_seconds", "extract_seconds", "score_seconds"):
        assert c[k] >= 0, (k, c)
    assert c["f1_threshold"] is not None and c["pixel_f1_threshold"] is not None, c
    cl = c["clustering"]
    # the official protocol: every test image (good, blob, crack), K = 3 types
    assert cl["k"] == 3 and cl["n"] == 3, cl
    for v in (cl, cl["variants"]["all_patches"], cl["variants"]["max_patch"]):
        assert 0 <= v["nmi"] <= 1 and -1 <= v["ari"] <= 1 and 0 <= v["f1"] <= 1, v
# the two categories hold the same images: same figures
a, b = cats["a_disc"], cats["b_disc"]
assert a["image_auroc"] == b["image_auroc"] and a["pixel_auroc"] == b["pixel_auroc"], (a, b)
m = r["mean"]
assert m["n_categories"] == 2 and abs(m["image_auroc"] - a["image_auroc"]) < 1e-12, m
assert "clustering" in m and "std" in r and r["std"]["image_auroc"] == 0, r["std"]
assert r["timings"]["total_seconds"] > 0
PY
pycheck "results.csv and results.md agree with results.json" "$O/results.json" "$O/results.csv" "$O/results.md" <<'PY'
import csv, json, sys
r = json.load(open(sys.argv[1]))
rows = list(csv.DictReader(open(sys.argv[2])))
assert [x["category"] for x in rows] == ["a_disc", "b_disc", "mean"], rows
for x in rows[:2]:
    c = r["categories"][x["category"]]
    for k in ("image_auroc", "pixel_auroc", "aupro", "f1_max", "pixel_f1_max"):
        assert abs(float(x[k]) - c[k]) < 1e-6, (k, x[k], c[k])
    assert abs(float(x["nmi"]) - c["clustering"]["nmi"]) < 1e-6
md = open(sys.argv[3]).read()
assert "| a_disc |" in md and "| mean |" in md and "image AUROC" in md, md
PY
pycheck "image AUROC and F1-max threshold recomputed from scores.csv" "$O/results.json" "$O/scores.csv" <<'PY'
import csv, json, struct, sys
r = json.load(open(sys.argv[1]))
rows = list(csv.DictReader(open(sys.argv[2])))
assert len(rows) == 6 and set(rows[0]) == {"category", "image", "type", "anomalous", "score"}, rows[:1]
for cat in ("a_disc", "b_disc"):
    s = [(float(x["score"]), int(x["anomalous"])) for x in rows if x["category"] == cat]
    pos = [v for v, l in s if l]; neg = [v for v, l in s if not l]
    auc = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))
    assert abs(auc - r["categories"][cat]["image_auroc"]) < 1e-9, (cat, auc)
    assert {x["type"] for x in rows if x["category"] == cat} == {"good", "blob", "crack"}
    # the F1-max threshold: predicting score >= it reaches the F1-max (scores are float32,
    # printed with 9 digits: compare them as float32)
    f32 = lambda v: struct.unpack("f", struct.pack("f", v))[0]
    t = f32(r["categories"][cat]["f1_threshold"])
    tp = sum(1 for v, l in s if f32(v) >= t and l); fp = sum(1 for v, l in s if f32(v) >= t and not l)
    assert abs(2 * tp / (tp + fp + len(pos)) - r["categories"][cat]["f1_max"]) < 1e-12, (cat, t)
PY
pycheck "thresholds: F1-optimal, 1% and 5% FPR with their recall, from scores.csv" "$O/results.json" "$O/scores.csv" "$O/results.md" <<'PY'
import csv, json, math, struct, sys
r = json.load(open(sys.argv[1]))
rows = list(csv.DictReader(open(sys.argv[2])))
f32 = lambda v: struct.unpack("f", struct.pack("f", v))[0]
md = open(sys.argv[3]).read()
assert "Decision thresholds" in md, md
for cat in ("a_disc", "b_disc"):
    s = [(f32(float(x["score"])), int(x["anomalous"])) for x in rows if x["category"] == cat]
    neg = sorted(v for v, l in s if not l); npos = sum(l for _, l in s)
    th = r["categories"][cat]["thresholds"]
    for key, fpr in (("fpr_1pct", 0.01), ("fpr_5pct", 0.05)):
        t = neg[len(neg) - 1 - math.floor(fpr * len(neg) + 1e-9)]
        assert abs(th[key]["threshold"] - t) <= 1e-6 * abs(t), (cat, key, th[key], t)
    for key in th:
        t = f32(th[key]["threshold"])
        assert th[key]["recall"] == sum(1 for v, l in s if l and v > t) / npos, (cat, key, th[key])
        assert th[key]["fpr"] == sum(1 for v, l in s if not l and v > t) / len(neg), (cat, key)
    tp = sum(1 for v, l in s if l and v > f32(th["f1"]["threshold"]))
    fp = sum(1 for v, l in s if not l and v > f32(th["f1"]["threshold"]))
    assert abs(2 * tp / (tp + fp + npos) - r["categories"][cat]["f1_max"]) < 1e-12, cat
    assert ("| %s |" % cat) in md.split("Decision thresholds")[1], cat
PY
check "heatmaps: one PNG per test image" \
  '[ "$(ls "$O/heatmaps/a_disc" | grep -c "\.png$")" -eq 3 ] && [ -s "$O/heatmaps/b_disc/blob_000.png" ]'
# with --heatmaps the report's thumbnails are the overlays (each equals one of heatmaps/)
pycheck "report.html: the thumbnails are the heatmap overlays" "$O/report.html" "$O/heatmaps" <<'PY'
import base64, glob, io, re, sys
from PIL import Image
h = open(sys.argv[1], encoding="utf-8").read()
thumbs = [Image.open(io.BytesIO(base64.b64decode(m))).convert("RGB").tobytes()
          for m in re.findall(r'data:image/png;base64,([^"]+)', h)]
overlays = {Image.open(f).convert("RGB").tobytes() for f in glob.glob(sys.argv[2] + "/*/*.png")}
assert thumbs and all(t in overlays for t in thumbs), (len(thumbs), len(overlays))
PY
# resize 56 / crop 48 of a 64 x 70 image: the border the crop discards is grey, the centre not
pycheck "heatmaps: the uninspected border is grey" "$O/heatmaps/b_disc/blob_000.png" <<'PY'
import sys
from PIL import Image
im = Image.open(sys.argv[1]).convert("RGB")
w, h = im.size
corner, centre = im.getpixel((1, 1)), im.getpixel((w // 2, h // 2))
assert corner[0] == corner[1] == corner[2], corner
assert not (centre[0] == centre[1] == centre[2]), centre
PY

# --- eval scores equal fit + predict on the same images (same bank, same scorer) ---
"$BIN" fit $OPTS --out "$T/m.ufm" "$DS/a_disc/train/good" 2>"$T/err" &&
"$BIN" predict "$T/m.ufm" "$DS/a_disc/test" >"$T/pred" 2>>"$T/err"
if [ $? -eq 0 ]; then
  pycheck "eval scores equal fit + predict" "$T/pred" "$O/scores.csv" "$DS" <<'PY'
import csv, sys
pred = {l.split("\t")[0]: float(l.split("\t")[1]) for l in open(sys.argv[1])}
rows = [x for x in csv.DictReader(open(sys.argv[2])) if x["category"] == "a_disc"]
assert len(rows) == 3 and len(pred) == 3, (rows, pred)
for x in rows:
    p = pred[sys.argv[3] + "/" + x["image"]]
    assert abs(p - float(x["score"])) <= 1e-5 * abs(p), (x, p)
PY
else
  bad "fit + predict for the comparison: $(cat "$T/err")"
fi

# --- AnomalyDINO preset and --zero-shot (issue 15) ---
expect 2 "--preset foo"                  "$BIN" eval $OPTS --dataset mvtec --root "$DS" --out "$T/o" --preset foo
expect 2 "--rotations 0"                 "$BIN" eval $OPTS --dataset mvtec --root "$DS" --out "$T/o" --rotations 0
expect 2 "--pca-threshold x"             "$BIN" eval $OPTS --dataset mvtec --root "$DS" --out "$T/o" --pca-threshold x
expect 2 "--ref-frac without --zero-shot" "$BIN" eval $OPTS --dataset mvtec --root "$DS" --out "$T/o" --ref-frac 0.5
expect 2 "--zero-shot with --shots"      "$BIN" eval $OPTS --dataset mvtec --root "$DS" --out "$T/o" --zero-shot --shots 1
expect 2 "--ref-frac 0"                  "$BIN" eval $OPTS --dataset mvtec --root "$DS" --out "$T/o" --zero-shot --ref-frac 0
expect 2 "--pca-threshold nan"           "$BIN" eval $OPTS --dataset mvtec --root "$DS" --out "$T/o" --pca-threshold nan
# the preset in eval: recorded in results.json, and equal to fit + predict with it (the model
# file carries the settings: predict takes no method flags)
AD="--preset anomalydino --rotations 3"
expect 0 "eval --preset anomalydino" "$BIN" eval $OPTS $AD --dataset mvtec --root "$DS" --out "$T/ad" --category a_disc
pycheck "preset recorded in results.json" "$T/ad/results.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
p = r["settings"]["params"] if "settings" in r and "params" in r["settings"] else r["params"]
assert p["layers"] == "last" and p["cosine"] is True and p["rotations"] == 3, p
assert p["topk"] == 0.01 and p["coreset"] == 1 and p["bpm"] is False and p["pca_mask"] is False, p
c = r["categories"]["a_disc"]
assert c["bank_size"] == c["bank_size_full"] == 3 * 4 * 36, c  # 4 images x 3 rotations x 6x6
PY
"$BIN" fit $OPTS $AD --out "$T/ad.ufm" "$DS/a_disc/train/good" 2>"$T/err" &&
"$BIN" predict "$T/ad.ufm" "$DS/a_disc/test" >"$T/pred" 2>>"$T/err"
if [ $? -eq 0 ]; then
  pycheck "preset: eval scores equal fit + predict" "$T/pred" "$T/ad/scores.csv" "$DS" <<'PY'
import csv, sys
pred = {l.split("\t")[0]: float(l.split("\t")[1]) for l in open(sys.argv[1])}
rows = list(csv.DictReader(open(sys.argv[2])))
assert len(rows) == 3 and len(pred) == 3, (rows, pred)
for x in rows:
    p = pred[sys.argv[3] + "/" + x["image"]]
    assert abs(p - float(x["score"])) <= 1e-5 * abs(p), (x, p)
PY
else
  bad "fit + predict with the preset: $(cat "$T/err")"
fi
# eval --zero-shot: the scores of `uniformaly zeroshot` on the same test images
expect 0 "eval --zero-shot" "$BIN" eval $OPTS --dataset mvtec --root "$DS" --out "$T/zs" --zero-shot --category a_disc
"$BIN" zeroshot $OPTS "$DS/a_disc/test" >"$T/zpred" 2>"$T/err"
if [ $? -eq 0 ]; then
  pycheck "eval --zero-shot equals zeroshot, no fit" "$T/zpred" "$T/zs/scores.csv" "$DS" "$T/zs/results.json" <<'PY'
import csv, json, sys
pred = {l.split("\t")[0]: float(l.split("\t")[1]) for l in open(sys.argv[1])}
rows = list(csv.DictReader(open(sys.argv[2])))
assert len(rows) == 3 and len(pred) == 3, (rows, pred)
for x in rows:
    p = pred[sys.argv[3] + "/" + x["image"]]
    assert abs(p - float(x["score"])) <= 1e-5 * abs(p), (x, p)
r = json.load(open(sys.argv[4]))
c = r["categories"]["a_disc"]
assert c["n_train"] == 0 and 0 <= c["image_auroc"] <= 1 and 0 <= c["pixel_auroc"] <= 1, c
assert "zero_shot_ref_frac" in json.dumps(r), r
PY
else
  bad "zeroshot for the comparison: $(cat "$T/err")"
fi

# --- the dataset fixture: JPEG and .PNG files, a category whose masks are incomplete ---
O2="$T/fixture"
expect 0 "eval on tests/data/dataset/mvtec" "$BIN" eval $OPTS --dataset mvtec --root tests/data/dataset/mvtec --out "$O2"
pycheck "fixture: pixel metrics only where every anomaly has a mask" "$O2/results.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))["categories"]
assert sorted(c) == ["cat_a", "cat_b"], c.keys()
assert c["cat_a"]["pixel_auroc"] is not None and 0 <= c["cat_a"]["aupro"] <= 1, c["cat_a"]
assert c["cat_b"]["pixel_auroc"] is None and c["cat_b"]["aupro"] is None, c["cat_b"]
assert c["cat_b"]["pixel_f1_max"] is None and c["cat_b"]["image_auroc"] is not None, c["cat_b"]
assert "clustering" not in c["cat_a"], "clustering without --cluster"
PY

# --- the other clustering protocol, the exact ground truth, a chosen coreset ---
O2b="$T/variants"
expect 0 "eval --cluster-protocol anomalous --gt-mode exact --coreset 0.3" "$BIN" eval $OPTS --dataset mvtec \
  --root "$DS" --category a_disc --cluster --cluster-protocol anomalous --gt-mode exact --coreset 0.3 --out "$O2b"
pycheck "anomalous protocol: the two defective images, K = 2; exact masks; coreset kept" "$O2b/results.json" "$O/results.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); r0 = json.load(open(sys.argv[2]))
s = r["settings"]
assert s["cluster_protocol"] == "anomalous" and s["gt_mode"] == "exact" and s["gt_threshold"] == 1, s
assert s["params"]["coreset"] == 0.3 and s["defaults"]["coreset"] == "set by the caller", s
c = r["categories"]["a_disc"]; c0 = r0["categories"]["a_disc"]
assert c["clustering"]["k"] == 2 and c["clustering"]["n"] == 2, c["clustering"]
# fewer anomalous pixels under the exact mask: the pixel figures move, the image ones may not
assert c["pixel_auroc"] != c0["pixel_auroc"] or c["aupro"] != c0["aupro"], (c, c0)
PY

# --- --shots with repeats: per-repeat values, mean and std ---
O3="$T/shots"
expect 0 "eval --shots 2 --repeats 3 --save-models" "$BIN" eval $OPTS --dataset mvtec --root "$DS" --category b_disc \
  --shots 2 --repeats 3 --cluster 2 --out "$O3" --save-models "$T/models3"
# --save-models: one model per repeat, each the fit of its draw (its training count), and
# scoring a test image with it gives the score eval wrote for that repeat
ls "$T/models3" > "$T/models3.ls"
[ "$(cat "$T/models3.ls" | tr '\n' ' ')" = "b_disc-rep0.ufm b_disc-rep1.ufm b_disc-rep2.ufm " ] \
  && ok "--save-models: a model per repeat" || bad "--save-models: a model per repeat: $(cat "$T/models3.ls" | tr '\n' ' ')"
"$BIN" predict "$T/models3/b_disc-rep1.ufm" "$DS/b_disc/test/blob/000.png" > "$T/models3.pred" 2>/dev/null
pycheck "--save-models: the saved model scores as eval did" "$T/models3.pred" "$O3/scores.csv" <<'PY'
import csv, sys
got = float(open(sys.argv[1]).read().split("\t")[1])
rows = [r for r in csv.DictReader(open(sys.argv[2])) if r["repeat"] == "1" and r["image"].endswith("blob/000.png")]
assert len(rows) == 1, rows
want = float(rows[0]["score"])
assert abs(got - want) <= 1e-4 * max(1.0, abs(want)), (got, want)
PY
pycheck "shots: three repeats, mean and std" "$O3/results.json" "$O3/scores.csv" <<'PY'
import csv, json, sys
r = json.load(open(sys.argv[1]))
assert r["settings"]["shots"] == 2 and r["settings"]["repeats"] == 3 and r["settings"]["cluster"] == 2
c = r["categories"]["b_disc"]
reps = c["repeats"]
assert len(reps) == 3 and [x["seed"] for x in reps] == ["0", "1", "2"], reps
assert all(x["n_train"] == 2 for x in reps) and c["n_train"] == 2, c
mean = sum(x["image_auroc"] for x in reps) / 3
assert abs(c["image_auroc"] - mean) < 1e-12 and "std" in c and c["std"]["image_auroc"] >= 0, c
assert c["clustering"]["k"] == 2, c["clustering"]
rows = list(csv.DictReader(open(sys.argv[2])))
assert len(rows) == 9 and sorted({x["repeat"] for x in rows}) == ["0", "1", "2"], rows
PY

# --- --max-train and --multi-class ---
O4="$T/multi"
expect 0 "eval --multi-class --max-train 3 --save-models" "$BIN" eval $OPTS --dataset mvtec --root "$DS" --multi-class \
  --max-train 3 --out "$O4" --save-models "$T/models4"
[ "$(ls "$T/models4")" = "multi-class.ufm" ] && "$BIN" info "$T/models4/multi-class.ufm" | grep -q "training: *6 images" \
  && ok "--save-models --multi-class: one model of the 6 images" || bad "--save-models --multi-class: $(ls "$T/models4")"
: > "$T/not_a_dir"
expect 2 "--save-models with --zero-shot" "$BIN" eval $OPTS --dataset mvtec --root "$DS" --zero-shot \
  --out "$T/o-sz" --save-models "$T/models-sz"
expect 1 "--save-models onto a file" "$BIN" eval $OPTS --dataset mvtec --root "$DS" --category a_disc \
  --out "$T/o-sm" --save-models "$T/not_a_dir"
pycheck "multi-class: one bank, per-category and overall AUROC" "$O4/results.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["settings"]["multi_class"] is True and r["settings"]["max_train"] == 3
assert r["settings"]["params"]["coreset"] == 0.05 and "multi" in r["settings"]["defaults"]["coreset"]
c = r["categories"]; o = r["overall"]
assert sorted(c) == ["a_disc", "b_disc"], c.keys()
assert c["a_disc"]["bank_size"] == c["b_disc"]["bank_size"] == o["bank_size"], (c, o)
assert o["n_train"] == 6 and o["n_test"] == 6 and o["n_test_anomalous"] == 4, o
assert 0 <= o["image_auroc"] <= 1 and 0 <= c["a_disc"]["pixel_auroc"] <= 1, o
PY

# --- a semantic dataset: the MNIST fixture (4 x 5 images: resized to 112, padded to 224) ---
O5="$T/mnist"
expect 0 "eval mnist one-class" "$BIN" eval $SEM_OPTS --dataset mnist --root tests/data/dataset/mnist \
  --category 0 --category 3 --out "$O5"
pycheck "semantic one-class: the reference preprocessing, no pixel metrics" "$O5/results.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
p = r["settings"]["params"]["preprocess"]
assert p["resize"] == 112 and p["crop"] == 0 and p["pad_to"] == 224 and p["interp"] == "lanczos", p
assert r["settings"]["params"]["coreset"] == 0.05 and "run_cifar10.sh" in r["settings"]["defaults"]["coreset"]
c = r["categories"]
assert sorted(c) == ["0", "3"], c.keys()
assert c["0"]["n_test"] == 6 and c["0"]["n_test_anomalous"] == 5 and c["3"]["n_test_anomalous"] == 4, c
assert c["0"]["pixel_auroc"] is None and 0 <= c["3"]["image_auroc"] <= 1, c
assert c["0"]["extract_seconds"] > 0 and c["3"]["extract_seconds"] == 0, "test features not shared"
PY
O6="$T/mnist_multi"
expect 0 "eval mnist multi-class" "$BIN" eval $SEM_OPTS --dataset mnist --root tests/data/dataset/mnist \
  --multi-class --category 0 --category 3 --cluster --out "$O6"
pycheck "semantic multi-class: selected classes normal, others anomalous" "$O6/results.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
o = r["overall"]
assert o["n_test"] == 6 and o["n_test_anomalous"] == 3 and 0 <= o["image_auroc"] <= 1, o
# official protocol: all six test images, K = their distinct classes
assert o["clustering"]["n"] == 6 and o["clustering"]["k"] == 5, o["clustering"]
c = r["categories"]
assert c["3"]["n_test"] == 5 and c["0"]["n_test"] == 4, c
PY
expect 2 "semantic multi-class needs --category" "$BIN" eval $OPTS --dataset mnist \
  --root tests/data/dataset/mnist --multi-class --out "$T/o7"

# --- a run that fails after its first category keeps that category ---
cp -r "$DS" "$T/ds_fail"
mv "$T/ds_fail/b_disc" "$T/ds_fail/c_broken"
printf 'not an image' > "$T/ds_fail/c_broken/train/good/junk.png"
O8="$T/fail"
expect 1 "failing second category: exit 1" "$BIN" eval $OPTS --dataset mvtec --root "$T/ds_fail" --out "$O8"
grep -q "junk.png" "$T/err" && ok "error names the bad file" || bad "error names the bad file: $(cat "$T/err")"
pycheck "finished category kept after the failure" "$O8/results.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["status"] == "failed" and list(r["categories"]) == ["a_disc"], r["categories"].keys()
assert 0 <= r["categories"]["a_disc"]["image_auroc"] <= 1
PY

# --- killed once the first category is written ---
# (SIGTERM: a background job of a non-interactive shell ignores SIGINT)
# eight categories at 224 x 224 (784 patches) on one thread: about 0.4 s each here, so the
# interrupt lands well before the end (if a machine finishes first, the check still holds)
for c in c d e f g h; do cp -r "$DS/a_disc" "$DS/${c}_disc"; done
O9="$T/intr"
"$BIN" eval --backbone $VIT --heads 4 --resize 224 --crop 224 --quiet --threads 1 --dataset mvtec \
  --root "$DS" --out "$O9" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1 400); do
  grep -q '"a_disc":' "$O9/results.json" 2>/dev/null && break
  sleep 0.05
done
kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null
pycheck "killed run: results.json complete JSON with the first category" "$O9/results.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert "a_disc" in r["categories"], r["categories"].keys()
assert r["status"] in ("running", "complete"), r["status"]
assert r["status"] == "complete" or len(r["categories"]) < 8, r["categories"].keys()
for c in r["categories"].values():
    assert 0 <= c["image_auroc"] <= 1
import os
left = [f for f in os.listdir(os.path.dirname(sys.argv[1])) if ".tmp." in f]
assert not left, left
print("status %s, %d of 8 categories" % (r["status"], len(r["categories"])))
PY
echo "    (after the interrupt: $(cat "$T/py" 2>/dev/null))" >&2

# --- real data: MVTec bottle with the shared ViT-Tiny ---
SH=$SHARED
if need_shared "bottle eval" "$SH/weights/vit_tiny_patch16_224.safetensors" "$SH/data/mvtec_ad/bottle"; then
  OB="$T/bottle"
  expect 0 "eval mvtec bottle --cluster (ViT-Tiny)" "$BIN" eval --backbone "$SH/weights/vit_tiny_patch16_224.safetensors" \
    --mean 0.5,0.5,0.5 --std 0.5,0.5,0.5 --quiet --dataset mvtec --root "$SH/data/mvtec_ad" --category bottle \
    --cluster --out "$OB"
  pycheck "bottle: image AUROC >= 0.99, pixel AUROC >= 0.98, official clustering NMI >= 0.5, F1 >= 0.7" "$OB/results.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))["categories"]["bottle"]
print("bottle: image AUROC %.4f pixel AUROC %.4f AUPRO %.4f NMI %.3f ARI %.3f F1 %.3f" % (
    c["image_auroc"], c["pixel_auroc"], c["aupro"], c["clustering"]["nmi"], c["clustering"]["ari"],
    c["clustering"]["f1"]))
assert c["image_auroc"] >= 0.99 and c["pixel_auroc"] >= 0.98, c
# the official clustering protocol: all 83 test images into 4 types (good included)
assert c["n_train"] == 209 and c["n_test"] == 83 and c["clustering"]["k"] == 4 and c["clustering"]["n"] == 83
assert c["clustering"]["nmi"] >= 0.50 and c["clustering"]["f1"] >= 0.70, c["clustering"]
PY
  echo "    $(cat "$T/py")" >&2
fi
finish
