#!/usr/bin/env bash
# test_inputs.sh - what goes into a fit and what the user is told about it (issue 13):
# --include / --exclude filter folder inputs; fit warns once about files that look like
# masks beside images, single-colour images and exact duplicates; fit and predict warn once
# when the centre crop discards part of the images, and --crop 0 (the whole image,
# letterboxed) neither warns nor fails. Uses the tiny golden ViT and tests/data/detector.
. "$(dirname "$0")/lib.sh"

M1=tests/data/golden/m1.safetensors
OPTS="--heads 3 --layers 2-4 --resize 72 --crop 64 --mean 0.5,0.5,0.5 --std 0.5,0.5,0.5 --quiet"
D=tests/data/detector
mkdir -p "$T/in"
cp $D/train_*.png "$T/in/"
cp $D/train_0.png "$T/in/dup.png"                       # an exact duplicate
cp $D/train_1.png "$T/in/part.png"                      # the "mask" beside part.ppm (and a 2nd duplicate)
{ printf 'P6\n64 64\n255\n'; head -c 12288 /dev/zero; } > "$T/in/part.ppm"  # all black
warns() { grep -c "^uniformaly: warning: .*$1" "$T/err"; }

expect 0 "fit on the mixed folder" "$BIN" fit --backbone $M1 $OPTS --out "$T/m.ufm" "$T/in"
check "mask-like file named once"  '[ "$(warns "look like masks beside images")" -eq 1 ] && grep -q "part.png, named like .*part.ppm" "$T/err"'
check "single-colour image named"  '[ "$(warns "single colour (e.g. .*part.ppm)")" -eq 1 ]'
check "duplicates counted and named"   '[ "$(warns "2 training images are an exact duplicate of another (e.g. .*dup.png = .*train_0.png)")" -eq 1 ] ||
                                    [ "$(warns "2 training images are an exact duplicate of another (e.g. .*train_0.png = .*dup.png)")" -eq 1 ]'
check "crop warning once"          '[ "$(warns "the centre crop keeps")" -eq 1 ]'
"$BIN" info "$T/m.ufm" > "$T/info" 2>&1
check "7 training images" 'grep -q "training:     7 images" "$T/info"'

expect 0 "fit --include 'train_*'" "$BIN" fit --backbone $M1 $OPTS --include 'train_*' --out "$T/m2.ufm" "$T/in"
check "no data warnings with --include" '[ "$(grep -c "masks\|single colour\|duplicate" "$T/err")" -eq 0 ]'
"$BIN" info "$T/m2.ufm" > "$T/info" 2>&1
check "--include keeps 4" 'grep -q "training:     4 images" "$T/info"'
expect 0 "fit --exclude '*.ppm' --exclude 'dup*'" "$BIN" fit --backbone $M1 $OPTS --exclude '*.ppm' \
  --exclude 'dup*' --out "$T/m3.ufm" "$T/in"
"$BIN" info "$T/m3.ufm" > "$T/info" 2>&1
check "--exclude leaves 5" 'grep -q "training:     5 images" "$T/info"'
expect 1 "--include matching nothing" "$BIN" fit --backbone $M1 $OPTS --include 'nothing*' --out "$T/m4.ufm" "$T/in"
check "says the filter left nothing" 'grep -q "no images found in this directory (after --include/--exclude)" "$T/err"'
check "no model written" '[ ! -e "$T/m4.ufm" ]'

# the whole image: no crop warning, and predict maps back onto the original geometry
expect 0 "fit --crop 0" "$BIN" fit --backbone $M1 $OPTS --crop 0 --resize 64 --include 'train_*' --out "$T/w.ufm" "$T/in"
check "no crop warning with --crop 0" '[ "$(warns "centre crop")" -eq 0 ]'
expect 0 "predict with the whole-image model" "$BIN" predict "$T/w.ufm" --json $D/test_good.png $D/test_blob.png
check "predict: no crop warning" '[ "$(warns "centre crop")" -eq 0 ]'
expect 0 "predict with the crop model" "$BIN" predict "$T/m2.ufm" $D/test_good.png $D/test_blob.png
check "predict: crop warning once" '[ "$(warns "centre crop")" -eq 1 ]'
finish
