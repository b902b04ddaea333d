#!/usr/bin/env bash
# test_cli.sh - the `uniformaly` program as a user meets it: usage errors exit 2 with a
# message, runtime errors exit 1 with one line naming the file, outputs are complete or
# absent, classify/features work on real input. Needs UF_BIN (set by `make test`).
. "$(dirname "$0")/lib.sh"
M1=tests/data/golden/m1.safetensors; H="--heads 3"
IMG=$(ls tests/data/image/fixtures/*.png 2>/dev/null | head -n1)

expect 2 "no verb"                 "$BIN"
expect 0 "--help"                  "$BIN" --help
expect 2 "unknown verb"            "$BIN" frobnicate
for v in classify features info demo; do
  expect 0 "$v --help"             "$BIN" $v --help
  expect 2 "$v unknown flag"       "$BIN" $v --no-such-flag
done
UNIFORMALY_BACKBONE="$T/none.safetensors" expect 1 "classify, no --backbone, bundled one missing" "$BIN" classify "$IMG"
expect 2 "classify no images"      "$BIN" classify --backbone $M1
expect 2 "bad --threads"           "$BIN" classify --backbone $M1 $H --threads -3 "$IMG"
expect 2 "bad --mean"              "$BIN" classify --backbone $M1 $H --mean 1,2 "$IMG"
expect 2 "bad --std zero"          "$BIN" classify --backbone $M1 $H --std 0,1,1 "$IMG"
expect 2 "bad --interp"            "$BIN" classify --backbone $M1 $H --interp cubic "$IMG"
expect 2 "missing option value"    "$BIN" features --backbone
expect 2 "bad --layers"            "$BIN" features --backbone $M1 $H --layers 3-x --out "$T/f" "$IMG"
expect 1 "missing backbone file"   "$BIN" classify --backbone "$T/nope.pth" "$IMG"
expect 1 "missing image"           "$BIN" classify --backbone $M1 $H --resize 64 --crop 64 "$T/nope.png"
printf 'not an image at all' > "$T/junk.png"
expect 1 "corrupt image"           "$BIN" classify --backbone $M1 $H --resize 64 --crop 64 "$T/junk.png"
head -c 1000 $M1 > "$T/trunc.safetensors"
expect 1 "truncated checkpoint"    "$BIN" info "$T/trunc.safetensors"
expect 0 "info m1"                 "$BIN" info $H $M1
grep -q "depth 4" "$T/out" && ok "info reports depth" || bad "info reports depth: $(cat "$T/out")"

if [ -n "$IMG" ] && [ -f "$IMG" ]; then
  expect 0 "features m1"           "$BIN" features --backbone $M1 $H --resize 64 --crop 64 --layers 1-4 --cls --logits --out "$T/f.safetensors" "$IMG" "$IMG"
  [ -s "$T/f.safetensors" ] && ok "features file written" || bad "features file written"
  expect 1 "features with a bad image writes nothing" "$BIN" features --backbone $M1 $H --resize 64 --crop 64 --out "$T/g.safetensors" "$IMG" "$T/junk.png"
  [ ! -e "$T/g.safetensors" ] && ok "no partial features file" || bad "no partial features file"
  expect 1 "features block beyond depth" "$BIN" features --backbone $M1 $H --resize 64 --crop 64 --layers 9 --out "$T/h.safetensors" "$IMG"
else
  skp "features on a fixture image (no tests/data/image/*.png yet)"
fi

if need_shared "classify on the shared imagenet samples" "$SHARED/weights/vit_tiny_patch16_224.safetensors" \
     "$SHARED/data/imagenet_samples"; then
  W="$SHARED/weights/vit_tiny_patch16_224.safetensors"; D="$SHARED/data/imagenet_samples"
  expect 0 "classify --json on imagenet samples" "$BIN" classify --backbone "$W" --resize 248 --interp bicubic \
     --mean 0.5,0.5,0.5 --std 0.5,0.5,0.5 --labels "$D/imagenet1k_classes.txt" --json --threads 2 "$D"
  n=$(grep -c '"top5"' "$T/out")
  [ "$n" -eq 17 ] && ok "17 JSON lines" || bad "17 JSON lines (got $n)"
  # top-1 index of every line equals expected.tsv's class
  good=0
  while IFS=$'\t' read -r f idx name p; do
    [ "$f" = file ] && continue
    line=$(grep "\"image\":\"$D/$f\"" "$T/out")
    first=$(printf '%s' "$line" | sed -n 's/.*"top5":\[{"index":\([0-9]*\).*/\1/p')
    [ "$first" = "$idx" ] && good=$((good+1))
  done < "$D/expected.tsv"
  [ "$good" -eq 17 ] && ok "classify CLI top-1 17/17" || bad "classify CLI top-1 $good/17"
  expect 1 "labels count mismatch" "$BIN" classify --backbone "$W" --labels "$D/expected.tsv" "$D"
fi
finish
