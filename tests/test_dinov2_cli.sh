#!/usr/bin/env bash
# test_dinov2_cli.sh - DINOv2 checkpoints through the program (issue 15): the tiny official
# .pth files and Hugging Face safetensors of tests/data/dinov2 (their forward pass is checked
# against PyTorch by test_dinov2.c) fit, predict and zeroshot at a 224 crop, a 448 crop and
# on whole images (--crop 0: non-square grids); scores are finite and order the defects of
# tests/data/detector above the good image, which also shows BPM runs on patch columns only
# (registers excluded); the same weights under both naming schemes give the same scores; a
# truncated or inconsistent DINOv2 file exits 1 with one line naming the file.
. "$(dirname "$0")/lib.sh"

DV=tests/data/dinov2
D=tests/data/detector
OPTS="--heads 2 --layers 1-3 --quiet"
TEST="$D/test_good.png $D/test_blob.png $D/test_crack.png"

# score FILE IMAGE: the score of IMAGE in predict/zeroshot output FILE (tab-separated)
score() { awk -F'\t' -v im="$2" '$1 == im { print $2 }' "$1"; }
# defects_above_good FILE: both defect images score above the good one, all finite
defects_above_good() {
  local g b c
  g=$(score "$1" $D/test_good.png); b=$(score "$1" $D/test_blob.png); c=$(score "$1" $D/test_crack.png)
  awk -v g="$g" -v b="$b" -v c="$c" 'BEGIN { ok = g != "" && b != "" && c != "" &&
      g ~ /^[0-9.e+-]+$/ && b ~ /^[0-9.e+-]+$/ && c ~ /^[0-9.e+-]+$/ && b + 0 > g + 0 && c + 0 > g + 0;
      exit !ok }'
}

for m in vits14 vits14_reg4 vitg14_reg4; do
  W=$DV/dinov2_${m}_pretrain.pth
  expect 0 "fit $m (official .pth, crop 224)" "$BIN" fit --backbone $W $OPTS --out "$T/$m.ufm" $D/train_*.png
  expect 0 "predict $m" "$BIN" predict "$T/$m.ufm" $TEST
  cp "$T/out" "$T/$m.tsv"
  check "$m: defects score above the good image" 'defects_above_good "$T/$m.tsv"'
done

# whole images on their own non-square grids, and a 448 crop (a 32x32 grid from 37x37)
expect 0 "fit vits14_reg4 --crop 0" "$BIN" fit --backbone $DV/dinov2_vits14_reg4_pretrain.pth $OPTS \
  --crop 0 --resize 224 --out "$T/whole.ufm" $D/train_*.png
expect 0 "predict --crop 0" "$BIN" predict "$T/whole.ufm" $TEST
check "crop 0: defects score above the good image" 'defects_above_good "$T/out"'
expect 0 "zeroshot HF vits14 at 448" "$BIN" zeroshot --backbone $DV/hf_vits14.safetensors $OPTS \
  --resize 512 --crop 448 $TEST $D/train_*.png
check "zeroshot 448: defects score above the good image" 'defects_above_good "$T/out"'

# the same giant weights under Hugging Face names: the same scores
expect 0 "fit HF vitg14_reg4" "$BIN" fit --backbone $DV/hf_vitg14_reg4.safetensors $OPTS \
  --out "$T/hf.ufm" $D/train_*.png
expect 0 "predict HF vitg14_reg4" "$BIN" predict "$T/hf.ufm" $TEST
check "HF and official giant files score alike" \
  '[ "$(cut -f1,2 "$T/out")" = "$(cut -f1,2 "$T/vitg14_reg4.tsv")" ]'

expect 0 "info on a DINOv2 checkpoint" "$BIN" info --heads 2 $DV/dinov2_vitg14_reg4_pretrain.pth
grep -q "trained at:  37x37 patches (518x518 pixels)" "$T/out" && grep -q "mlp 32" "$T/out" &&
  ok "info: 37x37 grid, SwiGLU width 32" || bad "info: $(cat "$T/out")"

# damaged files: exit 1, one line naming the file
head -c 70000 $DV/dinov2_vits14_reg4_pretrain.pth > "$T/cut.pth"
expect 1 "truncated DINOv2 .pth" "$BIN" fit --backbone "$T/cut.pth" $OPTS --out "$T/x.ufm" $D/train_*.png
grep -q "cut.pth" "$T/err" && [ "$(wc -l < "$T/err")" -eq 1 ] && ok "one line naming cut.pth" ||
  bad "truncated: $(cat "$T/err")"
check "no model after a failed fit" '[ ! -e "$T/x.ufm" ]'
"$PY" - "$DV/hf_vitg14_reg4.safetensors" "$T/badreg.safetensors" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
h["embeddings.register_tokens"]["shape"] = [1, 3, 16]  # 48 floats, as [1,4,12] holds
h = json.dumps(h).encode()
open(sys.argv[2], "wb").write(struct.pack("<Q", len(h)) + h + b[8 + n:])
PY
expect 1 "register tokens of the wrong width" "$BIN" info --heads 2 "$T/badreg.safetensors"
grep -q "badreg.safetensors: register_tokens: expected \[1,R,12\]" "$T/err" && ok "message names the registers" ||
  bad "bad registers: $(cat "$T/err")"

finish
