#!/usr/bin/env bash
# test_trust.sh - the CLI never replaces what it should not, never blocks on a FIFO, and
# never lets two inputs' heatmaps overwrite each other (issue 12, points 1, 3 and 5):
#  - fit/features/predict refuse an output that is one of their inputs (the backbone, a
#    training image, a list) or that is a FIFO or a directory; the input is unchanged;
#  - a symbolic link --out is written through (the link stays, the file it points to is
#    the new model, its 0600 mode kept); a hard-linked --out is refused;
#  - a FIFO given as an image, a list, --backbone, --labels, a model, or recorded as a
#    model's backbone path fails at once with one line naming it (each run under timeout);
#  - x.jpg, x.png, x.bmp and a/b_c.jpg beside a_b/c.jpg get distinct heatmaps and maps.
# Uses the tiny golden ViT of tests/data/golden; needs UF_BIN (set by `make test`).
. "$(dirname "$0")/lib.sh"
case $BIN in /*) ;; *) BIN=$PWD/$BIN ;; esac   # two checks run from another folder

# F NAME NEEDLE CMD...: CMD fails (exit 1) within 20 s with one stderr line containing NEEDLE
F() {
  local name=$1 needle=$2; shift 2
  timeout 20 "$@" >"$T/out" 2>"$T/err" </dev/null; local rc=$?
  if [ "$rc" -eq 124 ]; then bad "$name: still blocked after 20 s"; return; fi
  no_sanitizer_report "$name" "$T/err" || return
  if [ "$rc" -ne 1 ]; then bad "$name: exit $rc, want 1: $(head -c 300 "$T/err")"; return; fi
  # one error line; advisory warnings (the centre crop discarding part of an image) may
  # precede it
  local n; n=$(grep -vc '^uniformaly: warning: ' "$T/err")
  if [ "$n" -ne 1 ] || ! grep -qF -- "$needle" "$T/err"; then
    bad "$name: want one line naming '$needle': $(head -c 400 "$T/err")"; return; fi
  ok "$name"
}

M1=tests/data/golden/m1.safetensors
D=tests/data/detector
PRE="--heads 3 --resize 72 --crop 64 --layers 2-4 --quiet"
cp $M1 "$T/w.safetensors"
cp $D/train_0.png "$T/t0.png"; cp $D/train_1.png "$T/t1.png"
printf 't0.png\nt1.png\n' >"$T/list.txt"
"$BIN" fit --backbone "$T/w.safetensors" $PRE --out "$T/m.ufm" "$T/t0.png" "$T/t1.png" 2>/dev/null ||
  bad "setup: fit failed"

# ---- 1. outputs that must not be replaced -------------------------------------------------
F "fit --out = --backbone" "is the input" "$BIN" fit --backbone "$T/w.safetensors" $PRE --out "$T/w.safetensors" "$T/t0.png"
cmp -s $M1 "$T/w.safetensors" && ok "the backbone is unchanged" || bad "the backbone was overwritten"
F "fit --out = a training image" "is the input" "$BIN" fit --backbone "$T/w.safetensors" $PRE --out "$T/t1.png" "$T/t0.png" "$T/t1.png"
cmp -s $D/train_1.png "$T/t1.png" && ok "the training image is unchanged" || bad "the training image was overwritten"
F "fit --out = the list" "is the input" "$BIN" fit --backbone "$T/w.safetensors" $PRE --out "$T/list.txt" "$T/list.txt"
F "features --out = --backbone" "is the input" "$BIN" features --backbone "$T/w.safetensors" $PRE --out "$T/w.safetensors" "$T/t0.png"
cmp -s $M1 "$T/w.safetensors" && ok "the backbone is still unchanged" || bad "features overwrote the backbone"
mkfifo "$T/out.fifo"; mkdir "$T/out.dir"
F "fit --out a FIFO" "a FIFO" "$BIN" fit --backbone "$T/w.safetensors" $PRE --out "$T/out.fifo" "$T/t0.png"
[ -p "$T/out.fifo" ] && ok "the FIFO is still a FIFO" || bad "the FIFO was replaced"
if mknod "$T/null" c 1 3 2>/dev/null; then   # root only: a copy of /dev/null's device node
  F "fit --out a device node" "a character device" "$BIN" fit --backbone "$T/w.safetensors" $PRE --out "$T/null" "$T/t0.png"
  [ -c "$T/null" ] && ok "the device node is still a device node" || bad "the device node was replaced"
fi
F "fit --out a directory" "a directory" "$BIN" fit --backbone "$T/w.safetensors" $PRE --out "$T/out.dir" "$T/t0.png"
[ -d "$T/out.dir" ] && ok "the directory is still a directory" || bad "the directory was replaced"
# predict: an output named like an input (NAME = the image path with '/' -> '_', + .png)
mkdir "$T/h"; cp $D/train_0.png "$T/h/x.png"; cp $D/train_0.png "$T/h/x.png.png"
( cd "$T/h" && F "predict: a heatmap that is an input" "is the input" "$BIN" predict ../m.ufm --quiet --heatmap-dir . x.png x.png.png )
cmp -s $D/train_0.png "$T/h/x.png.png" && ok "the image named like a heatmap is unchanged" || bad "predict overwrote an input image"

# symbolic and hard links, modes
cp "$T/m.ufm" "$T/real.ufm"; chmod 600 "$T/real.ufm"; ln -s real.ufm "$T/link.ufm"
"$BIN" fit --backbone "$T/w.safetensors" $PRE --threshold 7 --out "$T/link.ufm" "$T/t0.png" 2>"$T/err"
[ -L "$T/link.ufm" ] && ok "--out a symlink: the link stays" || bad "--out a symlink: the link was replaced"
"$BIN" info --json "$T/real.ufm" 2>/dev/null | grep -q '"threshold":7' &&
  ok "--out a symlink: written through to its target" || bad "--out a symlink: the target is not the new model"
[ "$(stat -c %a "$T/real.ufm")" = 600 ] && ok "a 0600 model stays 0600" || bad "mode became $(stat -c %a "$T/real.ufm")"
cp "$T/m.ufm" "$T/hard1.ufm"; ln "$T/hard1.ufm" "$T/hard2.ufm"
F "fit --out a hard-linked file" "hard links" "$BIN" fit --backbone "$T/w.safetensors" $PRE --out "$T/hard1.ufm" "$T/t0.png"
cmp -s "$T/m.ufm" "$T/hard2.ufm" && [ "$(stat -c %h "$T/hard1.ufm")" = 2 ] &&
  ok "the hard links are intact" || bad "the hard link was split or changed"

# ---- 3. FIFOs as inputs -------------------------------------------------------------------
mkfifo "$T/img.png" "$T/imgs.txt" "$T/bb.safetensors" "$T/labels.txt" "$T/model.ufm"
F "predict: a FIFO image" "$T/img.png: not a regular file (a FIFO)" "$BIN" predict "$T/m.ufm" --quiet "$T/img.png"
F "predict: a FIFO list" "$T/imgs.txt: not a regular file (a FIFO)" "$BIN" predict "$T/m.ufm" --quiet "$T/imgs.txt"
F "predict: a FIFO model" "$T/model.ufm: not a regular file (a FIFO)" "$BIN" predict "$T/model.ufm" --quiet "$T/t0.png"
F "predict --backbone a FIFO" "$T/bb.safetensors: not a regular file (a FIFO)" "$BIN" predict "$T/m.ufm" --quiet --backbone "$T/bb.safetensors" "$T/t0.png"
F "fit --backbone a FIFO" "$T/bb.safetensors: not a regular file (a FIFO)" "$BIN" fit --backbone "$T/bb.safetensors" $PRE --out "$T/m2.ufm" "$T/t0.png"
F "fit: a FIFO image" "$T/img.png: not a regular file (a FIFO)" "$BIN" fit --backbone "$T/w.safetensors" $PRE --out "$T/m2.ufm" "$T/img.png"
F "classify --labels a FIFO" "$T/labels.txt: not a regular file (a FIFO)" "$BIN" classify --backbone $M1 --heads 3 --labels "$T/labels.txt" "$T/t0.png"
F "features: a FIFO image" "$T/img.png: not a regular file (a FIFO)" "$BIN" features --backbone $M1 $PRE --out "$T/f.st" "$T/img.png"
F "info: a FIFO" "$T/model.ufm: not a regular file (a FIFO)" "$BIN" info "$T/model.ufm"
cp $M1 "$T/rec.safetensors"
"$BIN" fit --backbone "$T/rec.safetensors" $PRE --out "$T/rec.ufm" "$T/t0.png" 2>/dev/null || bad "setup: fit rec.ufm"
rm "$T/rec.safetensors"; mkfifo "$T/rec.safetensors"
F "predict: recorded backbone is now a FIFO" "rec.safetensors" "$BIN" predict "$T/rec.ufm" --quiet "$T/t0.png"

# ---- 5. heatmap names unique for every input ----------------------------------------------
mkdir -p "$T/s/a" "$T/s/a_b" "$T/hm"
for e in jpg png bmp; do cp $D/train_0.png "$T/s/x.$e"; done   # decoders go by content
cp $D/test_good.png "$T/s/a/b_c.jpg"; cp $D/test_crack.png "$T/s/a_b/c.jpg"
( cd "$T/s" && "$BIN" predict ../m.ufm --quiet --json --heatmap-dir ../hm --raw-maps x.jpg x.png x.bmp a/b_c.jpg a_b/c.jpg x.png >"$T/pred.json" 2>"$T/err" ); rc=$?
if no_sanitizer_report "predict with colliding names" "$T/err"; then
  [ $rc -eq 0 ] && ok "predict with colliding names: exit 0" || bad "predict with colliding names failed: $(cat "$T/err")"
fi
np=$(ls "$T/hm" | grep -c '\.png$'); nn=$(ls "$T/hm" | grep -c '\.npy$')
[ "$np" -eq 6 ] && [ "$nn" -eq 6 ] && ok "six inputs, six heatmaps and six maps" || bad "$np heatmaps, $nn maps for six inputs: $(ls "$T/hm")"
nh=$(grep -o '"heatmap":"[^"]*"' "$T/pred.json" | sort -u | wc -l)
[ "$nh" -eq 6 ] && ok "six distinct heatmap names in the JSON" || bad "$nh distinct heatmap names in the JSON"
[ -f "$T/hm/x.jpg.png" ] && [ -f "$T/hm/x.bmp.npy" ] && [ -f "$T/hm/a_b_c.jpg.png" ] &&
  ok "names keep the extension" || bad "unexpected names: $(ls "$T/hm")"
ls "$T/hm" | grep -q '^a_b_c\.jpg-[0-9a-f]\{8\}\.png$' && ok "a/b_c.jpg vs a_b/c.jpg: a hash suffix" || bad "no hash suffix: $(ls "$T/hm")"

finish
