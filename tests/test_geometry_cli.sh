#!/bin/sh
# test_geometry_cli.sh - the whole-image geometries on the command line (issue 13): fit and
# predict with tiling (--tile / --tile-overlap) and the letterbox (--pad-to, --fit), the
# settings shown by `info` and kept in the model file, and bad values refused with one line
# naming the cause before anything is written. Uses the tiny golden ViT (patch 16) and the
# 64 x 64 images of tests/data/detector, resized to 128 so that 64-pixel tiles split them.
. "$(dirname "$0")/lib.sh"

M1=tests/data/golden/m1.safetensors
OPTS="--heads 3 --layers 2-4 --mean 0.5,0.5,0.5 --std 0.5,0.5,0.5 --quiet"
D=tests/data/detector
TRAIN="$D/train_0.png $D/train_1.png $D/train_2.png $D/train_3.png"

expect 0 "fit, tiled" "$BIN" fit --backbone $M1 $OPTS --crop 0 --resize 128 --tile 64 --tile-overlap 32 --out "$T/t.ufm" $TRAIN
expect 0 "info of the tiled model" "$BIN" info "$T/t.ufm"
check "info shows the tiling" 'grep -q "tiling: *64 x 64 tiles, overlap 32 pixels" "$T/out"'
expect 0 "predict, tiled" "$BIN" predict "$T/t.ufm" --json $D/test_good.png $D/test_blob.png
check "two scores" '[ "$(grep -c "\"score\"" "$T/out")" -eq 2 ]'
expect 0 "fit, not tiled" "$BIN" fit --backbone $M1 $OPTS --crop 0 --resize 128 --out "$T/w.ufm" $TRAIN
expect 0 "predict, not tiled" "$BIN" predict "$T/w.ufm" --json $D/test_good.png
cp "$T/out" "$T/whole.json"
expect 0 "predict, tiled, good image" "$BIN" predict "$T/t.ufm" --json $D/test_good.png
check "tiling changes the score" '! cmp -s "$T/out" "$T/whole.json"'

expect 0 "fit, letterbox" "$BIN" fit --backbone $M1 $OPTS --pad-to 64 --out "$T/l.ufm" $TRAIN
expect 0 "info of the letterbox model" "$BIN" info "$T/l.ufm"
check "info: letterboxed on 64 x 64" 'grep -q "resize 64, crop 0 (letterboxed" "$T/out" && grep -q "canvas: *64 x 64" "$T/out"'
# a 64 x 40 image: letterboxed on the 64 x 64 canvas, its map comes back as 64 x 40
$PY -c "from PIL import Image; Image.open('$D/test_blob.png').crop((0, 12, 64, 52)).save('$T/wide.png')"
expect 0 "predict, letterbox, raw map" "$BIN" predict "$T/l.ufm" --heatmap-dir "$T/h" --raw-maps "$T/wide.png"
check "raw map in the image's own geometry (40 x 64)" 'grep -aq "(40, 64)" "$T"/h/*wide*.npy'

# eval with tiling and clustering: the tiled extraction layout (every tile's patches) goes
# through uf_scorer_extract + uf_score_features and the three clustering features
C="$T/ds/disc"
mkdir -p "$C/train/good" "$C/test/good" "$C/test/blob" "$C/test/crack"
cp $TRAIN "$C/train/good/"
cp $D/test_good.png "$C/test/good/000.png"; cp $D/test_blob.png "$C/test/blob/000.png"
cp $D/test_crack.png "$C/test/crack/000.png"
expect 0 "eval, tiled, --cluster" "$BIN" eval --backbone $M1 $OPTS --crop 0 --resize 128 --tile 64 --tile-overlap 32 --dataset mvtec --root "$T/ds" --cluster --out "$T/ev"
check "eval, tiled: figures and clustering in range" "$PY -c \"
import json, math
c = json.load(open('$T/ev/results.json'))['categories']['disc']
assert 0 <= c['image_auroc'] <= 1, c
cl = c['clustering']
assert cl['n'] == 3, cl
for v in (cl, cl['variants']['all_patches'], cl['variants']['max_patch']):
    assert 0 <= v['nmi'] <= 1 and 0 <= v['f1'] <= 1, v
assert c['bank_size_full'] > 4 * 64, c  # every tile's patches (3 x 3 tiles of 16) offered
\""

# bad values: one line naming the cause, no model file (usage errors, exit 2, where the
# backbone is not needed to tell)
expect 1 "tile not a multiple of the patch" "$BIN" fit --backbone $M1 $OPTS --crop 0 --resize 128 --tile 40 --out "$T/b1.ufm" $TRAIN
check "message names the patch size" 'grep -q "multiples of the patch size 16" "$T/err" && [ ! -e "$T/b1.ufm" ]'
expect 2 "overlap not below the tile" "$BIN" fit --backbone $M1 $OPTS --crop 0 --resize 128 --tile 64 --tile-overlap 64 --out "$T/b2.ufm" $TRAIN
check "message names the overlap" 'grep -q "0 <= tile_overlap < tile" "$T/err" && [ ! -e "$T/b2.ufm" ]'
expect 2 "tile with a centre crop" "$BIN" fit --backbone $M1 $OPTS --tile 64 --out "$T/b3.ufm" $TRAIN
check "message: tiling needs the whole image" 'grep -q "tiling needs the whole-image geometry" "$T/err" && [ ! -e "$T/b3.ufm" ]'
expect 2 "--fit with a bad side" "$BIN" fit --backbone $M1 $OPTS --fit wide --out "$T/b4.ufm" $TRAIN
check "message: --fit" 'grep -q "\-\-fit: expected short, long or auto, got .wide." "$T/err"'
expect 2 "--tile not a number" "$BIN" fit --backbone $M1 $OPTS --crop 0 --tile 6x --out "$T/b5.ufm" $TRAIN
expect 2 "fit short without a canvas" "$BIN" fit --backbone $M1 $OPTS --crop 0 --resize 128 --fit short --out "$T/b6.ufm" $TRAIN
check "message: fit short" 'grep -q "fit short needs a crop or pad_to" "$T/err" && [ ! -e "$T/b6.ufm" ]'
finish
