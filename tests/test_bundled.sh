#!/usr/bin/env bash
# test_bundled.sh - the backbone that ships with the program (issue 14): without --backbone,
# fit / predict / classify / features / demo use models/vit_tiny_patch16_224.fp16.safetensors
# with its own normalisation (mean/std 0.5); the model records it like any checkpoint, so
# predict finds it again, also when the recorded path is gone but the program finds the same
# file (sha256) elsewhere; $UNIFORMALY_BACKBONE overrides; a program that finds nothing says
# where it looked. With ../shared: the committed FP16 file is exactly what
# scripts/make_bundled_backbone.py makes from the shared FP32 file. Tiny fixtures only
# (tests/data/detector, resize 72 / crop 64). Needs UF_BIN.
. "$(dirname "$0")/lib.sh"
NAME=vit_tiny_patch16_224.fp16.safetensors
W=$PWD/models/$NAME
D=tests/data/detector
OPTS="--resize 72 --crop 64 --layers 3-10 --quiet"
IMGS="$D/test_good.png $D/test_blob.png $D/test_crack.png"
unset UNIFORMALY_BACKBONE

check "the bundled backbone is in the source tree" '[ -s "$W" ]'
expect 0 "fit --help" "$BIN" fit --help
check "--help says where the default backbone is looked for" \
  'grep -q "share/uniformaly" "$T/out" && grep -q "UNIFORMALY_BACKBONE" "$T/out" && grep -q "$NAME" "$T/out"'

# --- fit / predict without --backbone equal the explicit bundled file with mean/std 0.5 ---
expect 0 "fit without --backbone" "$BIN" fit $OPTS --out "$T/d.ufm" $D/train_*.png
expect 0 "fit with the bundled file and mean/std 0.5 given" \
  "$BIN" fit $OPTS --backbone "$W" --mean 0.5,0.5,0.5 --std 0.5,0.5,0.5 --out "$T/e.ufm" $D/train_*.png
"$BIN" info --json "$T/d.ufm" > "$T/info.json" 2>"$T/err" || bad "info: $(head -2 "$T/err")"
check "the model records the bundled checkpoint, its sha256 and mean/std 0.5" "$PY - '$T/info.json' '$W' <<'PY'
import hashlib, json, os, sys
i = json.load(open(sys.argv[1])); b = i['backbone']
assert os.path.realpath(b['path']) == os.path.realpath(sys.argv[2]), b['path']
assert b['sha256'] == hashlib.sha256(open(sys.argv[2], 'rb').read()).hexdigest()
pre = i['params']['preprocess']
assert pre['mean'] == [0.5] * 3 and pre['std'] == [0.5] * 3, pre
PY"
expect 0 "predict without --backbone" "$BIN" predict "$T/d.ufm" --quiet $IMGS
cp "$T/out" "$T/d.txt"
expect 0 "predict the explicit model" "$BIN" predict "$T/e.ufm" --quiet $IMGS
check "same scores as the explicit backbone and normalisation" 'cmp -s "$T/d.txt" "$T/out"'
check "the three images do not score alike" '[ "$(cut -f2 "$T/d.txt" | sort -u | wc -l)" -eq 3 ]'
expect 0 "fit without --backbone, --mean given" "$BIN" fit $OPTS --mean 0.4,0.4,0.4 --out "$T/m4.ufm" $D/train_*.png
check "an explicit --mean wins over the bundled normalisation (std stays 0.5)" \
  '"$BIN" info --json "$T/m4.ufm" | "$PY" -c "import json,sys; p=json.load(sys.stdin)[\"params\"][\"preprocess\"]; assert abs(p[\"mean\"][0]-0.4)<1e-6 and p[\"std\"]==[0.5]*3, p"'

# --- the model finds the bundled backbone again when the recorded path is gone ---
mkdir -p "$T/other/models"
cp "$BIN" "$T/other/uniformaly" && cp "$W" "$T/other/models/"
expect 0 "a program elsewhere fits with the backbone beside it" \
  "$T/other/uniformaly" fit $OPTS --out "$T/o.ufm" $D/train_*.png
rm "$T/other/models/$NAME"
expect 0 "predict after the recorded backbone is gone: the same file is found here" \
  "$BIN" predict "$T/o.ufm" --quiet $IMGS
check "and scores as before" 'cmp -s "$T/d.txt" "$T/out"'
expect 1 "the program without a backbone beside it: predict fails" "$T/other/uniformaly" predict "$T/o.ufm" $IMGS
check "naming the missing recorded checkpoint" 'grep -q "other/models/$NAME" "$T/err" && [ "$(wc -l < "$T/err")" -eq 1 ]'
expect 1 "fit with no bundled backbone found" "$T/other/uniformaly" fit $OPTS --out "$T/x.ufm" $D/train_*.png
check "says where it looked and what to do" 'grep -q "share/uniformaly" "$T/err" && grep -q -- "--backbone" "$T/err" && [ ! -e "$T/x.ufm" ]'
UNIFORMALY_BACKBONE="$W" expect 0 "\$UNIFORMALY_BACKBONE names it" "$T/other/uniformaly" fit $OPTS --out "$T/x.ufm" $D/train_*.png
UNIFORMALY_BACKBONE="$T/nothing.safetensors" expect 1 "\$UNIFORMALY_BACKBONE naming a missing file" \
  "$BIN" fit $OPTS --out "$T/y.ufm" $D/train_*.png
check "is reported naming it" 'grep -q "nothing.safetensors" "$T/err" && [ ! -e "$T/y.ufm" ]'

# --- a model fitted with another checkpoint is not silently given the bundled one ---
cp tests/data/golden/m1.safetensors "$T/m1.safetensors"
"$BIN" fit --backbone "$T/m1.safetensors" --heads 3 --layers 2-4 --resize 72 --crop 64 --quiet \
  --out "$T/g.ufm" $D/train_*.png 2>"$T/err" || bad "fit tiny: $(head -2 "$T/err")"
rm "$T/m1.safetensors"
expect 1 "predict when another recorded checkpoint is gone" "$BIN" predict "$T/g.ufm" $IMGS
check "names that checkpoint, not the bundled one" 'grep -q "m1.safetensors" "$T/err" && ! grep -q "$NAME" "$T/err"'

# --- the other verbs ---
expect 0 "features without --backbone" "$BIN" features $OPTS --out "$T/f.safetensors" $D/test_good.png
expect 0 "classify without --backbone (the bundled file keeps its ImageNet head)" \
  "$BIN" classify --quiet --json $D/test_good.png
check "five classes" '"$PY" -c "import json,sys; assert len(json.loads(open(sys.argv[1]).readline())[\"top5\"]) == 5" "$T/out"'

# --- the committed file is the script's output from the shared FP32 file ---
SRC=$SHARED/weights/vit_tiny_patch16_224.safetensors
if need_shared "FP16 file regenerated from the shared weights" "$SRC"; then
  "$PY" scripts/make_bundled_backbone.py "$SRC" "$T/regen.safetensors" >/dev/null 2>"$T/err" ||
    bad "make_bundled_backbone.py: $(tail -2 "$T/err")"
  check "models/$NAME is byte for byte what scripts/make_bundled_backbone.py makes" 'cmp -s "$T/regen.safetensors" "$W"'
fi
finish
