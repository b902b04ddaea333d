#!/usr/bin/env bash
# test_calibrate.sh - deciding with a fitted model (issue 13): `calibrate --normal` stores
# the threshold at a false-positive rate (checked against an independent count of predict's
# scores) and says how few images limit it; `calibrate --val` with the F1 and fpr=F
# objectives; `fit --holdout`; predict's normalised score and decision; a model written by
# the version-1 format still loads and calibrates; bad input leaves the model untouched.
# Uses the tiny golden ViT and tests/data/detector, nothing from ../shared. Needs UF_BIN.
. "$(dirname "$0")/lib.sh"

M1=tests/data/golden/m1.safetensors
OPTS="--heads 3 --layers 2-4 --resize 72 --crop 64 --mean 0.5,0.5,0.5 --std 0.5,0.5,0.5 --quiet"
D=tests/data/detector
NORMAL="$D/train_0.png $D/train_1.png $D/train_2.png $D/train_3.png $D/test_good.png"
"$BIN" fit --backbone $M1 $OPTS --coreset 0.5 --out "$T/m.ufm" $D/train_0.png $D/train_1.png \
  $D/train_2.png >/dev/null 2>&1 || bad "fit"

# --- usage and input errors; the model stays as it was ---
cp "$T/m.ufm" "$T/orig.ufm"
expect 2 "calibrate without a mode"  "$BIN" calibrate "$T/m.ufm" $NORMAL
expect 2 "calibrate with both modes" "$BIN" calibrate "$T/m.ufm" --normal $NORMAL --val x.txt
expect 2 "calibrate --fpr 1"         "$BIN" calibrate "$T/m.ufm" --normal --fpr 1 $NORMAL
expect 2 "calibrate bad --objective" "$BIN" calibrate "$T/m.ufm" --val x.txt --objective auc
printf '%s maybe\n' "$PWD/$D/test_good.png" > "$T/badlab.txt"
expect 1 "calibrate --val with a bad label" "$BIN" calibrate "$T/m.ufm" --val "$T/badlab.txt"
grep -q "badlab.txt:1" "$T/err" && ok "error names the list line" || bad "bad label: $(cat "$T/err")"
printf '%s 0\n' "$PWD/$D/test_good.png" > "$T/onlyneg.txt"
expect 1 "calibrate --val without anomalous images" "$BIN" calibrate "$T/m.ufm" --val "$T/onlyneg.txt"
check "model untouched after failures" 'cmp -s "$T/m.ufm" "$T/orig.ufm"'

# --- --normal: the threshold is the smallest score with at most F of them above it ---
"$BIN" predict "$T/m.ufm" --json $NORMAL > "$T/raw.json" 2>/dev/null
expect 0 "calibrate --normal --fpr 0.2" "$BIN" calibrate "$T/m.ufm" --normal --fpr 0.2 --quiet $NORMAL
grep -q "calibrate: 5 normal images" "$T/err" && ok "summary line" || bad "summary: $(cat "$T/err")"
"$BIN" info --json "$T/m.ufm" > "$T/info.json"
$PY - "$T/raw.json" "$T/info.json" 0.2 <<'PY' && ok "threshold at FPR 0.2 and statistics" || bad "threshold at FPR 0.2"
import json, math, sys
s = sorted(json.loads(l)["score"] for l in open(sys.argv[1]))
info = json.load(open(sys.argv[2])); fpr = float(sys.argv[3])
n = len(s); k = math.floor(fpr * n + 1e-9)
t = s[n - 1 - k]
assert abs(info["threshold"] - t) <= 1e-6 * abs(t), (info["threshold"], t, s)
c = info["calibration"]
assert c["n_images"] == n and abs(c["fpr_target"] - fpr) < 1e-12, c
assert c["fpr"] == sum(x > t for x in s) / n, c
assert abs(c["image_min"] - s[0]) < 1e-5 and abs(c["image_max"] - s[-1]) < 1e-5, c
assert abs(c["image_mean"] - sum(s) / n) < 1e-4, c
assert c["patch_min"] <= c["patch_p50"] <= c["patch_p99"] <= c["patch_max"], c
PY
expect 0 "calibrate --normal --fpr 0.01 (too few images)" "$BIN" calibrate "$T/m.ufm" --normal --quiet $NORMAL
grep -q "smallest false-positive-rate step is 20%" "$T/err" && ok "says how few images limit the FPR" \
  || bad "limit note: $(cat "$T/err")"

# --- predict: raw score, decision, normalised score (score / threshold) ---
expect 0 "predict after calibration" "$BIN" predict "$T/m.ufm" $NORMAL $D/test_blob.png
$PY - "$T/out" "$T/m.ufm" <<'PY' && ok "normalised score = score / threshold, decision above 1" || bad "normalised score: $(cat "$T/out")"
import json, subprocess, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
assert all(len(r) == 4 for r in rows), rows
t = json.loads(subprocess.check_output(["./uniformaly", "info", "--json", sys.argv[2]]))["threshold"]
for path, score, dec, norm in rows:
    assert abs(float(norm) - float(score) / t) < 1e-3, (score, norm, t)
    if abs(float(score) - t) > 1e-5 * t:  # the text score is rounded to 6 digits
        assert dec == ("anomalous" if float(score) > t else "normal"), (score, dec, t)
assert sum(r[2] == "anomalous" for r in rows[:5]) == 0, rows  # fpr 0.01 with 5 images: none
PY
expect 0 "predict --json has normalized" "$BIN" predict "$T/m.ufm" --json $D/test_blob.png
grep -q '"normalized":[0-9]' "$T/out" && ok "JSON normalized" || bad "JSON: $(cat "$T/out")"

# --- --val: F1-optimal and fpr=F objectives ---
{ for f in $NORMAL; do echo "$PWD/$f good"; done
  echo "$PWD/$D/test_blob.png bad"; echo "# comment"; echo "$PWD/$D/test_crack.png 1"; } > "$T/val.txt"
for obj in f1 fpr=0; do
  expect 0 "calibrate --val --objective $obj" "$BIN" calibrate "$T/m.ufm" --val "$T/val.txt" --objective $obj --out "$T/v.ufm" --quiet
  "$BIN" predict "$T/v.ufm" $NORMAL $D/test_blob.png $D/test_crack.png > "$T/vp.tsv" 2>/dev/null
  $PY - "$T/vp.tsv" $obj <<'PY' && ok "--objective $obj decisions" || bad "--objective $obj: $(cat "$T/vp.tsv")"
import sys
rows = [l.split("\t") for l in open(sys.argv[1])]
y = [0] * 5 + [1, 1]; s = [float(r[1]) for r in rows]; d = [r[2] == "anomalous" for r in rows]
def f1(pred):
    tp = sum(p and t for p, t in zip(pred, y)); fp = sum(p and not t for p, t in zip(pred, y))
    return 2 * tp / (2 * tp + fp + (sum(y) - tp)) if tp else 0.0
if sys.argv[2] == "f1":   # no threshold on the scores does better
    best = max(f1([x >= c for x in s]) for c in s)
    assert abs(f1(d) - best) < 1e-12, (f1(d), best, s)
else:                     # fpr=0: no normal image flagged, the threshold is the top normal score
    assert not any(d[:5]), d
PY
done
check "--out leaves the model alone" '! cmp -s "$T/v.ufm" "$T/m.ufm"'

# --- fit --holdout: half the images held out and calibrated on ---
expect 0 "fit --holdout 0.5" "$BIN" fit --backbone $M1 $OPTS --holdout 0.5 --fpr 0 --out "$T/h.ufm" $NORMAL $D/train_0.png
"$BIN" info --json "$T/h.ufm" > "$T/hinfo.json"
$PY - "$T/hinfo.json" <<'PY' && ok "holdout: 3 trained, 3 calibrated" || bad "holdout: $(cat "$T/hinfo.json")"
import json, sys
o = json.load(open(sys.argv[1]))
assert o["n_train"] == 3 and o["calibration"]["n_images"] == 3 and o["threshold"] is not None, o
assert o["calibration"]["fpr"] == 0, o
PY
expect 2 "fit --holdout 1" "$BIN" fit --backbone $M1 $OPTS --holdout 1 --out "$T/h2.ufm" $NORMAL
expect 1 "fit --holdout of one image" "$BIN" fit --backbone $M1 $OPTS --holdout 0.5 --out "$T/h2.ufm" $D/train_0.png
check "no model after the refused holdout" '[ ! -e "$T/h2.ufm" ]'

# --- overlays of a calibrated model: one scale, masks and regions at the pixel level ---
expect 2 "--masks without --heatmap-dir" "$BIN" predict "$T/m.ufm" --masks $D/test_blob.png
expect 1 "--masks without a threshold" "$BIN" predict "$T/orig.ufm" --masks --heatmap-dir "$T/hm0" $D/test_blob.png
# calibrated on one image of the bank: a low pixel level, so the defects have regions
"$BIN" calibrate "$T/m.ufm" --normal --quiet --out "$T/mc.ufm" $D/train_0.png 2>/dev/null
expect 0 "predict --heatmap-dir --masks --raw-maps --json" "$BIN" predict "$T/mc.ufm" --json --masks --raw-maps \
  --heatmap-dir "$T/hm" $D/test_good.png $D/test_blob.png $D/test_crack.png
cp "$T/out" "$T/hm.json"
"$BIN" info --json "$T/mc.ufm" > "$T/info2.json"
$PY - "$T/hm.json" "$T/info2.json" <<'PY' && ok "masks = raw map above the pixel level; regions add up" || bad "masks/regions: $(head -c 600 "$T/hm.json")"
import json, sys, zlib, struct, ast
import numpy as np
def png_gray(path):  # our PNGs: 8-bit RGB, non-interlaced; undo the Sub/None filters
    b = open(path, "rb").read(); pos = 8; idat = b""; w = h = 0
    while pos < len(b):
        n, = struct.unpack(">I", b[pos:pos+4]); t = b[pos+4:pos+8]; d = b[pos+8:pos+8+n]
        if t == b"IHDR": w, h = struct.unpack(">II", d[:8])
        if t == b"IDAT": idat += d
        pos += 12 + n
    raw = zlib.decompress(idat); stride = 3 * w; out = np.zeros((h, stride), np.uint8); prev = np.zeros(stride, np.uint8)
    for y in range(h):
        f = raw[y * (stride + 1)]; row = np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1).copy()
        if f == 1:
            for x in range(3, stride): row[x] = (int(row[x]) + int(row[x - 3])) & 255
        elif f == 2: row = (row.astype(int) + prev) .astype(np.uint8)
        elif f != 0: raise SystemExit("filter %d" % f)
        out[y] = row; prev = row
    return out.reshape(h, w, 3)[:, :, 0]
cal = json.load(open(sys.argv[2]))["calibration"]
level = np.float32(cal["patch_max"])
for l in open(sys.argv[1]):
    o = json.loads(l)
    m = png_gray(o["mask"]); mp = np.load(o["map"])
    assert m.shape == mp.shape, (m.shape, mp.shape)
    assert ((m == 255) == (mp > level)).all() and set(np.unique(m)) <= {0, 255}, o["image"]
    regs = o["regions"]
    if len(regs) < 8: assert sum(r["area"] for r in regs) == int((mp > level).sum()), o["image"]
    for r in regs:
        x, y, w, h = r["bbox"]
        assert 0 <= x and 0 <= y and x + w <= mp.shape[1] and y + h <= mp.shape[0], r
        assert abs(r["peak"] - mp[y:y+h, x:x+w].max()) < 1e-4 * max(1, r["peak"]), r
    if "blob" in o["image"]:  # the red ellipse drawn around (42, 28) is in a region
        assert any(r["bbox"][0] <= 42 < r["bbox"][0] + r["bbox"][2] and
                   r["bbox"][1] <= 28 < r["bbox"][1] + r["bbox"][3] for r in regs), regs
PY

# --- a version-1 model file (written before calibration existed) ---
# it records the absolute path of the checkpoint it was fitted with (on the machine that wrote
# it), so the repository's copy of that checkpoint is passed (same sha256)
V1BB=tests/data/golden/m1.safetensors
expect 0 "predict with a version-1 model" "$BIN" predict tests/data/detector/model_v1.ufm --backbone $V1BB $D/test_good.png
check "its threshold applies" '[ "$(cut -f3 "$T/out")" = "normal" ] || [ "$(cut -f3 "$T/out")" = "anomalous" ]'
expect 0 "calibrate a version-1 model into a new file" "$BIN" calibrate tests/data/detector/model_v1.ufm \
  --backbone $V1BB --normal --fpr 0.2 --out "$T/v2.ufm" --quiet $NORMAL
check "written in format version 3 (it uses no version-4 setting)" '[ "$(od -An -tu1 -j8 -N1 "$T/v2.ufm" | tr -d " ")" = 3 ]'
check "the version-1 file untouched" '[ "$(od -An -tu1 -j8 -N1 tests/data/detector/model_v1.ufm | tr -d " ")" = 1 ]'
finish
