#!/usr/bin/env bash
# test_detector_cli.sh - the detector's verbs as a user meets them: fit writes a model file,
# info describes it, predict scores images (text and JSON), writes heatmap overlays and raw
# maps in the original image geometry, applies thresholds; bad input gets exit 1 and one
# line naming the file, bad flags exit 2; a failed or interrupted fit leaves the previous
# model intact; demo runs end to end. Uses the tiny golden ViT (4 blocks, dim 48) and the
# small PNGs of tests/data/detector, so it needs nothing from ../shared. Needs UF_BIN.
. "$(dirname "$0")/lib.sh"

cp tests/data/golden/m1.safetensors "$T/m1.safetensors"
M1="$T/m1.safetensors"
OPTS="--heads 3 --layers 2-4 --resize 72 --crop 64 --mean 0.5,0.5,0.5 --std 0.5,0.5,0.5 --quiet"
D=tests/data/detector
mkdir -p "$T/train" && cp $D/train_*.png "$T/train/"
TEST="$D/test_good.png $D/test_blob.png $D/test_crack.png"

# --- usage errors: exit 2 ---
for v in fit predict; do
  expect 0 "$v --help" "$BIN" $v --help
  expect 2 "$v unknown flag" "$BIN" $v --no-such-flag
done
expect 2 "fit without --out"        "$BIN" fit --backbone $M1 $OPTS "$T/train"
expect 2 "fit without images"       "$BIN" fit --backbone $M1 $OPTS --out "$T/m.ufm"
expect 2 "fit bad --coreset"        "$BIN" fit --backbone $M1 $OPTS --coreset 0 --out "$T/m.ufm" "$T/train"
expect 2 "fit bad --bpm-kernel"     "$BIN" fit --backbone $M1 $OPTS --bpm-kernel 4 --out "$T/m.ufm" "$T/train"
expect 2 "fit bad --layers"         "$BIN" fit --backbone $M1 $OPTS --layers 4-2 --out "$T/m.ufm" "$T/train"
expect 2 "fit bad --knn"            "$BIN" fit --backbone $M1 $OPTS --knn 0 --out "$T/m.ufm" "$T/train"
expect 2 "fit bad --topk"           "$BIN" fit --backbone $M1 $OPTS --topk 1.5 --out "$T/m.ufm" "$T/train"
expect 2 "fit bad --sampler"        "$BIN" fit --backbone $M1 $OPTS --sampler best --out "$T/m.ufm" "$T/train"
expect 2 "fit bad --shots"          "$BIN" fit --backbone $M1 $OPTS --shots -1 --out "$T/m.ufm" "$T/train"
expect 2 "predict without model"    "$BIN" predict
expect 2 "predict without images"   "$BIN" predict "$T/m.ufm"
expect 2 "predict --raw-maps alone" "$BIN" predict "$T/m.ufm" --raw-maps $TEST

# --- runtime errors: exit 1, nothing written ---
expect 1 "fit with layers beyond depth" "$BIN" fit --backbone $M1 $OPTS --layers 3-10 --out "$T/m.ufm" "$T/train"
check "no model after a failed fit" '[ ! -e "$T/m.ufm" ]'
printf 'not an image' > "$T/junk.png"
expect 1 "fit with an unreadable training image" "$BIN" fit --backbone $M1 $OPTS --out "$T/m.ufm" "$T/train" "$T/junk.png"
grep -q "junk.png" "$T/err" && ok "error names the bad image" || bad "error names the bad image: $(cat "$T/err")"
check "no model after a failed fit (bad image)" '[ ! -e "$T/m.ufm" ]'

# --- fit, info ---
expect 0 "fit" "$BIN" fit --backbone $M1 $OPTS --coreset 0.5 --out "$T/m.ufm" "$T/train" || true
check "model written" '[ -s "$T/m.ufm" ]'
check "no temporary files left" '[ -z "$(ls "$T" | grep tmp)" ]'
expect 0 "info on the model" "$BIN" info "$T/m.ufm"
grep -q "training:     4 images" "$T/out" && ok "info: 4 training images" || bad "info: $(cat "$T/out")"
expect 0 "info --json" "$BIN" info --json "$T/m.ufm"
python3 - "$T/out" <<'PY' && ok "info --json fields" || bad "info --json fields: $(cat "$T/out")"
import json, sys
o = json.load(open(sys.argv[1]))
p = o["params"]
assert p["layers"] == "2-4" and p["coreset"] == 0.5 and p["knn"] == 1 and p["bpm"] is True, p
assert o["n_train"] == 4 and o["dim"] == 48 and 0 < o["bank_size"] <= o["bank_size_full"], o
assert o["bank_size"] == max(1, int(o["bank_size_full"] * 0.5)) or o["bank_size"] < o["bank_size_full"]
assert len(o["backbone"]["sha256"]) == 64 and o["threshold"] is None, o
PY

# --- predict ---
expect 0 "predict text" "$BIN" predict "$T/m.ufm" $TEST
check "3 result lines" '[ "$(wc -l < "$T/out")" -eq 3 ]'
check "no threshold -> '-'" '[ "$(cut -f3 "$T/out" | sort -u)" = "-" ]'
expect 0 "predict --json with heatmaps and raw maps" "$BIN" predict "$T/m.ufm" --json --threshold 0 \
  --heatmap-dir "$T/maps" --raw-maps $TEST
cp "$T/out" "$T/pred.json"
python3 - "$T/pred.json" "$T/maps" $TEST <<'PY' && ok "predict JSON, overlays and raw maps" || bad "predict JSON/maps"
# standard library only: PNG size from its IHDR chunk, .npy shape from its header
import ast, json, os, struct, sys
def png_size(path):
    with open(path, "rb") as f:
        b = f.read(33)
    assert b[:8] == b"\x89PNG\r\n\x1a\n" and b[12:16] == b"IHDR", path
    w, h, depth, color = struct.unpack(">IIBB", b[16:26])
    return w, h, depth, color
lines = [json.loads(l) for l in open(sys.argv[1])]
imgs = sys.argv[3:]
assert [l["image"] for l in lines] == imgs, lines
for l, path in zip(lines, imgs):
    assert l["score"] > 0 and l["anomalous"] is True and l["threshold"] == 0, l
    w, h, _, _ = png_size(path)
    ow, oh, depth, color = png_size(l["heatmap"])
    assert (ow, oh, depth, color) == (w, h, 8, 2), (ow, oh, depth, color)  # 8-bit RGB
    with open(l["map"], "rb") as f:
        raw = f.read()
    assert raw[:6] == b"\x93NUMPY", l["map"]
    hl = struct.unpack("<H", raw[8:10])[0]
    hdr = ast.literal_eval(raw[10:10 + hl].decode())
    assert hdr["descr"] == "<f4" and tuple(hdr["shape"]) == (h, w), hdr
    vals = struct.unpack("<%df" % (w * h), raw[10 + hl:])
    assert all(v == v and abs(v) < 1e30 for v in vals)
    assert os.path.dirname(l["heatmap"]) == sys.argv[2]
PY
expect 0 "predict with a threshold above the score" "$BIN" predict "$T/m.ufm" --json --threshold 1e9 $TEST
check "anomalous false under a high threshold" '! grep -q "\"anomalous\":true" "$T/out"'
expect 1 "predict with one unreadable image" "$BIN" predict "$T/m.ufm" "$D/test_good.png" "$T/junk.png" "$D/test_blob.png"
check "the readable images are still scored" '[ "$(wc -l < "$T/out")" -eq 2 ]'
grep -q "junk.png" "$T/err" && ok "error names the unreadable image" || bad "error names the unreadable image"

# scores agree between batch sizes and thread counts (float rounding)
"$BIN" predict "$T/m.ufm" --batch 1 --threads 1 $TEST > "$T/b1" 2>/dev/null
"$BIN" predict "$T/m.ufm" --batch 3 --threads 2 $TEST > "$T/b3" 2>/dev/null
check "same scores for batch 1/1 thread and batch 3/2 threads" 'cmp -s "$T/b1" "$T/b3"'

# --- stored threshold, --shots, embedded backbone ---
expect 0 "fit --threshold --shots 2 --embed-backbone" "$BIN" fit --backbone $M1 $OPTS --shots 2 --seed 7 \
  --threshold 1e9 --embed-backbone --out "$T/e.ufm" "$T/train"
expect 0 "info e.ufm" "$BIN" info --json "$T/e.ufm"
grep -q '"n_train":2' "$T/out" && ok "--shots 2 trains on 2 images" || bad "--shots: $(cat "$T/out")"
grep -q '"embedded":true' "$T/out" && ok "backbone embedded" || bad "backbone embedded"
mv "$M1" "$T/moved.safetensors"
expect 0 "embedded model predicts without the checkpoint" "$BIN" predict "$T/e.ufm" --json $TEST
grep -q '"anomalous":false' "$T/out" && ok "stored threshold applies" || bad "stored threshold: $(head -1 "$T/out")"
expect 1 "non-embedded model without its checkpoint" "$BIN" predict "$T/m.ufm" $TEST
grep -q "m1.safetensors" "$T/err" && ok "error names the missing checkpoint" || bad "names checkpoint: $(cat "$T/err")"
expect 0 "--backbone points to the moved checkpoint" "$BIN" predict "$T/m.ufm" --backbone "$T/moved.safetensors" $TEST
expect 1 "--backbone with different bytes is refused" "$BIN" predict "$T/m.ufm" --backbone tests/data/golden/m1_f16.safetensors $TEST
mv "$T/moved.safetensors" "$M1"

# --- damaged model files ---
head -c 200 "$T/m.ufm" > "$T/trunc.ufm"
expect 1 "truncated model" "$BIN" predict "$T/trunc.ufm" $TEST
check "one-line error" '[ "$(wc -l < "$T/err")" -eq 1 ]'
cp "$T/m.ufm" "$T/flip.ufm"
sz=$(stat -c %s "$T/flip.ufm")
printf '\x55' | dd of="$T/flip.ufm" bs=1 seek=$((sz / 2)) conv=notrunc 2>/dev/null
expect 1 "corrupted model" "$BIN" predict "$T/flip.ufm" $TEST
expect 1 "a checkpoint is not a model" "$BIN" predict "$M1" $TEST

# --- a failing fit leaves the previous model intact ---
cp "$T/m.ufm" "$T/keep.ufm"
( ulimit -f 2; "$BIN" fit --backbone $M1 $OPTS --coreset 1 --out "$T/keep.ufm" "$T/train" ) >/dev/null 2>"$T/err"
rc=$?
check "fit under ulimit -f fails" '[ $rc -ne 0 ]'
check "previous model intact after a failed write" 'cmp -s "$T/m.ufm" "$T/keep.ufm"'
check "no temporary file left after a failed write" '[ -z "$(ls "$T" | grep "keep.ufm.tmp")" ]'

# --- a fit killed at any moment leaves the previous model and nothing else ---
# (a list naming the 4 training images 100 times makes the fit last long enough to be hit;
# a fit that finished first must have written a complete, loadable model)
for i in $(seq 100); do ls "$T"/train/*.png; done > "$T/many.txt"
for delay in 0.05 0.3 1; do
  cp "$T/m.ufm" "$T/keep.ufm"
  "$BIN" fit --backbone $M1 $OPTS --coreset 1 --out "$T/keep.ufm" "$T/many.txt" >/dev/null 2>&1 &
  pid=$!; sleep $delay; kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
  check "model after kill -9 at ${delay}s is the old one or a complete new one" \
    'cmp -s "$T/m.ufm" "$T/keep.ufm" || "$BIN" info "$T/keep.ufm" >/dev/null 2>&1'
  check "no stray file after kill -9 at ${delay}s" '[ -z "$(ls "$T" | grep "keep.ufm.")" ]'
done

# --- precision: fit records it, info shows it, predict uses it unless --precision ---
expect 2 "fit bad --precision"      "$BIN" fit --backbone $M1 $OPTS --precision fp16 --out "$T/mb.ufm" "$T/train"
expect 2 "predict bad --precision"  "$BIN" predict "$T/m.ufm" --precision half $TEST
expect 0 "fit --precision bf16" "$BIN" fit --backbone $M1 $OPTS --coreset 0.5 --precision bf16 \
    --out "$T/mb.ufm" "$T/train"
expect 0 "info of a bf16 model" "$BIN" info "$T/mb.ufm"
grep -q "^precision: *bf16" "$T/out" && ok "info says bf16" || bad "info precision: $(cat "$T/out")"
expect 0 "info of an fp32 model" "$BIN" info "$T/m.ufm"
grep -q "^precision: *fp32" "$T/out" && ok "info says fp32" || bad "info precision: $(cat "$T/out")"
expect 0 "predict bf16 model" "$BIN" predict "$T/mb.ufm" $TEST && cut -f2 "$T/out" > "$T/s_b16"
expect 0 "predict bf16 model --precision fp32" "$BIN" predict "$T/mb.ufm" --precision fp32 $TEST &&
  cut -f2 "$T/out" > "$T/s_b32"
expect 0 "predict bf16 model emulated (UF_CPU=avx2)" env UF_CPU=avx2 "$BIN" predict "$T/mb.ufm" $TEST &&
  cut -f2 "$T/out" > "$T/s_emu"
# the override changes the arithmetic (scores move, a little); the emulation matches native
check "--precision fp32 overrides the recorded bf16" \
  'paste "$T/s_b16" "$T/s_b32" | awk "{ if (\$1 == \$2) same++; d = (\$1 - \$2) / \$2; if (d < 0) d = -d; if (d > 0.1) far++ } END { exit (NR != 3 || same == NR || far) }"'
check "emulated bf16 scores = native within 1e-3" \
  'paste "$T/s_b16" "$T/s_emu" | awk "{ d = (\$1 - \$2) / \$2; if (d < 0) d = -d; if (d > 1e-3) far++ } END { exit (NR != 3 || far) }"'
expect 0 "--version" "$BIN" --version
grep -q "^bf16: " "$T/out" && ok "--version names the bf16 path" || bad "--version: $(cat "$T/out")"

# --- demo: the bundled ViT-Tiny by default (real detection), random weights when asked ---
expect 0 "demo" "$BIN" demo --out "$T/demo" --train 8 --threads 2
grep -q "texture" "$T/out" && grep -q "object" "$T/out" && ok "demo reports both datasets" || bad "demo output: $(cat "$T/out")"
check "demo uses the bundled backbone by default" 'grep -q "bundled ImageNet ViT-Tiny" "$T/out" && ! grep -q "RANDOM" "$T/out"'
check "demo detects: image AUROC >= 0.9 on both datasets" \
  '[ "$(awk '"'"'$1 == "texture" || $1 == "object" { if ($7 >= 0.9) n++ } END { print n + 0 }'"'"' "$T/out")" -eq 2 ]'
check "demo wrote overlays" '[ "$(ls "$T/demo/texture" | grep -c png)" -gt 10 ]'
check "demo wrote models" '[ -s "$T/demo/texture.ufm" ] && [ -s "$T/demo/object.ufm" ]'
expect 0 "demo --random-backbone" "$BIN" demo --random-backbone --out "$T/demor" --train 2 --threads 2 --resize 72 --crop 64
check "says its figures come from random weights" 'grep -q "NOT a trained model" "$T/out" && grep -q "RANDOM" "$T/out"'
expect 2 "demo --backbone with --random-backbone" "$BIN" demo --random-backbone --backbone "$M1" --out "$T/demox"
finish
