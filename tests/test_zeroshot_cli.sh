#!/usr/bin/env bash
# test_zeroshot_cli.sh - `uniformaly zeroshot` as a user meets it: one line per image in
# input order (text and JSON, as predict), heatmaps and raw maps, results independent of
# --block and --threads; bad flags exit 2, too few images or an unreadable image exit 1
# with one line naming the cause. Why: the verb is the only way to score without training
# images. The scores' meaning is tested in test_zeroshot.c; here the tiny golden ViT and the
# small PNGs of tests/data/detector, so nothing from ../shared is needed. Needs UF_BIN.
. "$(dirname "$0")/lib.sh"

M1=tests/data/golden/m1.safetensors
OPTS="--heads 3 --layers 2-4 --resize 72 --crop 64 --mean 0.5,0.5,0.5 --std 0.5,0.5,0.5 --quiet"
D=tests/data/detector
IMGS="$D/train_0.png $D/train_1.png $D/train_2.png $D/train_3.png $D/test_good.png $D/test_blob.png $D/test_crack.png"

# --- usage errors: exit 2 ---
expect 0 "zeroshot --help" "$BIN" zeroshot --help
grep -q "MuSc" "$T/out" && ok "help cites the method" || bad "help: $(cat "$T/out")"
expect 2 "unknown flag"            "$BIN" zeroshot --no-such-flag
UNIFORMALY_BACKBONE="$T/none.safetensors" expect 1 "no --backbone, bundled one missing" "$BIN" zeroshot $IMGS
expect 2 "without images"          "$BIN" zeroshot --backbone $M1 $OPTS
expect 2 "--ref-frac 0"            "$BIN" zeroshot --backbone $M1 $OPTS --ref-frac 0 $IMGS
expect 2 "--ref-frac 1.5"          "$BIN" zeroshot --backbone $M1 $OPTS --ref-frac 1.5 $IMGS
expect 2 "--block -1"              "$BIN" zeroshot --backbone $M1 $OPTS --block -1 $IMGS
expect 2 "--raw-maps alone"        "$BIN" zeroshot --backbone $M1 $OPTS --raw-maps $IMGS
expect 2 "bad --layers"            "$BIN" zeroshot --backbone $M1 $OPTS --layers 4-2 $IMGS

# --- runtime errors: exit 1, one line naming the cause ---
expect 1 "one image" "$BIN" zeroshot --backbone $M1 $OPTS $D/test_good.png
grep -q "at least 2 images" "$T/err" && ok "one image: message" || bad "one image: $(cat "$T/err")"
printf 'not an image' > "$T/junk.png"
expect 1 "an unreadable image" "$BIN" zeroshot --backbone $M1 $OPTS $IMGS "$T/junk.png"
grep -q "junk.png" "$T/err" && ok "error names the bad image" || bad "unreadable: $(cat "$T/err")"
check "nothing on stdout after a failure" '[ ! -s "$T/out" ]'
expect 1 "layers beyond the depth" "$BIN" zeroshot --backbone $M1 $OPTS --layers 3-10 $IMGS

# --- scoring: lines in input order, invariance ---
expect 0 "zeroshot" "$BIN" zeroshot --backbone $M1 $OPTS $IMGS
cp "$T/out" "$T/ref.tsv"
check "7 lines" '[ "$(wc -l < "$T/ref.tsv")" -eq 7 ]'
check "input order" '[ "$(cut -f1 "$T/ref.tsv" | tr "\n" " ")" = "$(echo $IMGS) " ]'
check "finite positive scores, no threshold" \
  'awk -F"\t" "\$2+0 > 0 && \$3 == \"-\" {n++} END {exit n != 7}" "$T/ref.tsv"'
expect 0 "--block 1 --threads 1" "$BIN" zeroshot --backbone $M1 $OPTS --block 1 --threads 1 $IMGS
cmp -s "$T/out" "$T/ref.tsv" && ok "same scores for --block 1 --threads 1" || bad "block/threads changed: $(diff "$T/out" "$T/ref.tsv")"
expect 0 "--block 3 --threads 2" "$BIN" zeroshot --backbone $M1 $OPTS --block 3 --threads 2 $IMGS
cmp -s "$T/out" "$T/ref.tsv" && ok "same scores for --block 3 --threads 2" || bad "block/threads changed: $(diff "$T/out" "$T/ref.tsv")"
expect 0 "--ref-frac 1" "$BIN" zeroshot --backbone $M1 $OPTS --ref-frac 1 $IMGS
cmp -s "$T/out" "$T/ref.tsv" && bad "--ref-frac changes nothing" || ok "--ref-frac changes the scores"

# --- JSON, threshold, heatmaps ---
expect 0 "--json with heatmaps" "$BIN" zeroshot --backbone $M1 $OPTS --json --threshold 8 \
  --heatmap-dir "$T/maps" --raw-maps $IMGS
python3 - "$T/out" "$T/ref.tsv" <<'PY' && ok "JSON lines match the text run" || bad "JSON: $(cat "$T/out")"
import json, os, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
ref = [l.rstrip("\n").split("\t") for l in open(sys.argv[2])]
assert len(rows) == len(ref) == 7
for o, (path, score, *_) in zip(rows, ref):
    assert o["image"] == path and abs(o["score"] - float(score)) <= 1e-5 * float(score), (o, score)
    assert o["threshold"] == 8 and o["anomalous"] == (o["score"] > 8), o
    assert os.path.getsize(o["heatmap"]) > 0 and o["heatmap"].endswith(".png"), o
    assert os.path.getsize(o["map"]) > 0 and o["map"].endswith(".npy"), o
PY
check "7 overlays and 7 raw maps" '[ "$(ls "$T/maps" | grep -c "png.png$")" -eq 7 ] && [ "$(ls "$T/maps" | grep -c "npy$")" -eq 7 ]'
finish
