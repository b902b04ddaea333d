#!/usr/bin/env bash
# test_update.sh - `uniformaly update` adds normal images to a fitted model (issue 13): the
# old bank is kept (no image scores higher after an update), with coreset 1 the result
# scores exactly like a fit on all the images, the counts add up, the coreset keeps its
# fraction of the new patches, and a failed update leaves the model file untouched. Uses the
# tiny golden ViT and tests/data/detector. Needs UF_BIN.
. "$(dirname "$0")/lib.sh"

M1=tests/data/golden/m1.safetensors
OPTS="--heads 3 --layers 2-4 --resize 72 --crop 64 --mean 0.5,0.5,0.5 --std 0.5,0.5,0.5 --quiet"
D=tests/data/detector
ALL="$D/train_0.png $D/train_1.png $D/train_2.png $D/train_3.png $D/test_good.png $D/test_blob.png $D/test_crack.png"

expect 2 "update without images" "$BIN" update "$T/none.ufm"
expect 2 "update unknown flag" "$BIN" update --frob "$T/none.ufm" $D/train_3.png
for cs in 0.5 1; do
  "$BIN" fit --backbone $M1 $OPTS --coreset $cs --out "$T/m$cs.ufm" $D/train_0.png $D/train_1.png $D/train_2.png 2>/dev/null || bad "fit $cs"
  cp "$T/m$cs.ufm" "$T/keep.ufm"
  printf 'junk' > "$T/junk.png"
  expect 1 "update with an unreadable image (coreset $cs)" "$BIN" update "$T/m$cs.ufm" $D/train_3.png "$T/junk.png"
  check "model untouched after the failed update" 'cmp -s "$T/m$cs.ufm" "$T/keep.ufm"'
  expect 0 "update coreset $cs" "$BIN" update "$T/m$cs.ufm" --quiet $D/train_3.png
  check "model replaced" '! cmp -s "$T/m$cs.ufm" "$T/keep.ufm"'
  "$BIN" info --json "$T/keep.ufm" > "$T/i0.json"; "$BIN" info --json "$T/m$cs.ufm" > "$T/i1.json"
  "$BIN" fit --backbone $M1 $OPTS --coreset $cs --out "$T/all$cs.ufm" $D/train_0.png $D/train_1.png $D/train_2.png $D/train_3.png 2>/dev/null
  "$BIN" info --json "$T/all$cs.ufm" > "$T/i2.json"
  "$BIN" predict "$T/keep.ufm" $ALL > "$T/p0" 2>/dev/null
  "$BIN" predict "$T/m$cs.ufm" $ALL > "$T/p1" 2>/dev/null
  "$BIN" predict "$T/all$cs.ufm" $ALL > "$T/p2" 2>/dev/null
  $PY - "$T/i0.json" "$T/i1.json" "$T/i2.json" "$T/p0" "$T/p1" "$T/p2" $cs <<'PY' && ok "update coreset $cs: counts, kept bank, scores" || bad "update coreset $cs"
import json, sys
i0, i1, i2 = (json.load(open(p)) for p in sys.argv[1:4])
p0, p1, p2 = ([float(l.split("\t")[1]) for l in open(p)] for p in sys.argv[4:7])
cs = float(sys.argv[7])
new = i2["bank_size_full"] - i0["bank_size_full"]       # train_3's foreground patches
assert new > 0 and i1["n_train"] == 4 and i1["bank_size_full"] == i2["bank_size_full"], (i0, i1)
want = new if cs >= 1 else max(1, int(new * cs))
assert i1["bank_size"] - i0["bank_size"] in (want, want - 1, want - 2), (i0["bank_size"], i1["bank_size"], want)
assert all(b <= a * (1 + 1e-6) for a, b in zip(p0, p1)), (p0, p1)   # the old bank is kept
assert p1[3] < p0[3], (p0, p1)                                       # train_3 is now known
if cs >= 1:
    # the same bank as a fit on all four images (bit-identical on the AVX-512 path; other
    # builds, e.g. the sanitizers', round features by batch size: allow float rounding)
    assert all(abs(a - b) <= 1e-6 * abs(b) + 1e-6 for a, b in zip(p1, p2)), (p1, p2)
PY
done
finish
