#!/usr/bin/env bash
# test_messages.sh - inputs that used to get a misleading message or a wrong result (issue 12,
# point 6): each now gets one line naming the file and the real cause with exit 1, or the
# correct output. A model header asking for a crop of 100000 or layers beyond the backbone's
# depth (rewritten here with a valid checksum), a flipped bit in the version field or the
# magic, a 1x10000 PNG, OMP_NUM_THREADS=abc, fit --shots 50 on one image, a symlink loop and
# an over-deep folder inside an image tree, a list line holding a NUL byte. Needs UF_BIN.
. "$(dirname "$0")/lib.sh"

# R NAME NEEDLE CMD...: exit 1, exactly one stderr line "uniformaly: ..." holding NEEDLE
R() {
  local name=$1 needle=$2; shift 2
  "$@" >"$T/out" 2>"$T/err" </dev/null; local rc=$?
  no_sanitizer_report "$name" "$T/err" || return 1
  if [ "$rc" -ne 1 ]; then bad "$name: exit $rc, want 1: $(head -c 300 "$T/err")"; return 1; fi
  if [ "$(wc -l <"$T/err")" -ne 1 ]; then bad "$name: not one line: $(head -c 500 "$T/err")"; return 1; fi
  if ! grep -q "^uniformaly: " "$T/err" || ! grep -qF -- "$needle" "$T/err"; then
    bad "$name: message lacks '$needle': $(cat "$T/err")"; return 1; fi
  ok "$name"
}

M1=tests/data/golden/m1.safetensors
D=tests/data/detector
OPTS="--backbone $M1 --heads 3 --layers 2-4 --resize 72 --crop 64 --quiet"
"$BIN" fit $OPTS --out "$T/m.ufm" $D/train_0.png $D/train_1.png 2>"$T/err" || bad "setup: fit: $(cat "$T/err")"

# rehead IN OUT KEY VALUE: OUT is IN with params[KEY] (or params.preprocess[KEY]) set to
# VALUE, re-framed with a valid SHA-256, so only the field itself is wrong
rehead() {
  "$PY" - "$@" <<'PY'
import hashlib, json, struct, sys
src, dst, key, val = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
b = open(src, "rb").read()
hl = struct.unpack("<Q", b[16:24])[0]
ds = (24 + hl + 63) // 64 * 64
h = json.loads(b[24:24 + hl])
(h["params"]["preprocess"] if key in h["params"]["preprocess"] else h["params"])[key] = val
j = json.dumps(h).encode()
pre = b[:16] + struct.pack("<Q", len(j)) + j
pre += b"\0" * ((len(pre) + 63) // 64 * 64 - len(pre))
body = pre + b[ds:len(b) - 40]
open(dst, "wb").write(body + hashlib.sha256(body).digest() + b"UFMEND\0\0")
PY
}
# flip FILE OFFSET MASK: xor one byte
flip() { "$PY" -c "import sys; p, o, m = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]); b = bytearray(open(p, 'rb').read()); b[o] ^= m; open(p, 'wb').write(b)" "$@"; }

# --- model files --------------------------------------------------------------------------
rehead "$T/m.ufm" "$T/crop.ufm" crop 100000
R "header crop 100000"        "crop.ufm: header params invalid: preprocessing: crop 100000 is above the limit" \
  "$BIN" predict "$T/crop.ufm" $D/test_good.png
rehead "$T/m.ufm" "$T/deep.ufm" layer_last 13
R "header layer_last 13"      "deep.ufm: header params.layer_last 13 is beyond the backbone's 4 blocks" \
  "$BIN" predict "$T/deep.ufm" $D/test_good.png
rehead "$T/m.ufm" "$T/same.ufm" layer_last 4
expect 0 "a re-framed header with valid values loads" "$BIN" predict "$T/same.ufm" $D/test_good.png
cp "$T/m.ufm" "$T/ver.ufm"; flip "$T/ver.ufm" 9 2   # version 2 -> 514
R "flipped version bit"       "ver.ufm: checksum mismatch (file damaged)" "$BIN" info "$T/ver.ufm"
cp "$T/m.ufm" "$T/magic.ufm"; flip "$T/magic.ufm" 2 1
R "flipped magic byte (info)" "magic.ufm: damaged uniformaly model file" "$BIN" info "$T/magic.ufm"
R "flipped magic byte (predict)" "magic.ufm: not a uniformaly model file" "$BIN" predict "$T/magic.ufm" $D/test_good.png
printf 'neither model nor checkpoint' >"$T/junk.bin"
R "info on junk"              "junk.bin: neither a uniformaly model file nor a .pth or .safetensors checkpoint" \
  "$BIN" info "$T/junk.bin"

# --- a 1x10000 PNG ------------------------------------------------------------------------
"$PY" - "$T/thin.png" <<'PY'
import struct, sys, zlib
w, h = 1, 10000
raw = b"".join(b"\0\x80\x40\x20" for _ in range(h))
ch = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
open(sys.argv[1], "wb").write(b"\x89PNG\r\n\x1a\n" + ch(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                              + ch(b"IDAT", zlib.compress(raw)) + ch(b"IEND", b""))
PY
R "1x10000 PNG"               "thin.png: image of 1x10000 pixels is too elongated: resizing its shorter side to 256 would make it 256x2560000" \
  "$BIN" classify --backbone $M1 --heads 3 "$T/thin.png"

# --- OMP_NUM_THREADS=abc: one warning in our words, libgomp silent, the run goes on -------
OMP_NUM_THREADS=abc "$BIN" info "$T/m.ufm" >"$T/out" 2>"$T/err"; rc=$?
check "OMP_NUM_THREADS=abc: exit 0, one warning naming it, nothing from libgomp" \
  '[ $rc -eq 0 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "^uniformaly: warning: ignoring OMP_NUM_THREADS=.abc." "$T/err" && ! grep -q libgomp "$T/err"'
OMP_NUM_THREADS=" 2,1" "$BIN" info "$T/m.ufm" >"$T/out" 2>"$T/err"; rc=$?
check "OMP_NUM_THREADS=' 2,1' is valid: no warning" '[ $rc -eq 0 ] && [ ! -s "$T/err" ]'

# --- fit --shots beyond the images ----------------------------------------------------------
mkdir -p "$T/one" && cp $D/train_0.png "$T/one/"
R "fit --shots 50 on one image" "--shots 50: only 1 training image found in $T/one" \
  "$BIN" fit $OPTS --shots 50 --out "$T/s.ufm" "$T/one"
check "no model after a refused --shots" '[ ! -e "$T/s.ufm" ]'

# --- a symlink loop and an over-deep folder skip their subtree, the rest is scored --------
mkdir -p "$T/tree/a" "$T/tree/b"
cp $D/test_good.png "$T/tree/a/"; cp $D/test_blob.png "$T/tree/b/"
ln -s .. "$T/tree/a/loop"
d="$T/tree/b"; for i in $(seq 1 34); do d="$d/d"; done
mkdir -p "$d" && cp $D/test_crack.png "$d/"
"$BIN" predict "$T/m.ufm" "$T/tree" >"$T/out" 2>"$T/err"; rc=$?
no_sanitizer_report "predict on a tree with a loop" "$T/err" &&
check "loop and deep folder: exit 0, the 2 reachable images scored" '[ $rc -eq 0 ] && [ "$(wc -l <"$T/out")" -eq 2 ]'
check "loop: one warning naming it" 'grep -q "warning: .*/tree/a/loop: loops back to the folder 2 levels above (a symlink); skipped" "$T/err"'
check "deep folder: one warning naming it" 'grep -q "warning: .*/tree/b/d/.*: folders nested deeper than 32 levels; skipped" "$T/err"'

# --- a NUL byte in a list line ----------------------------------------------------------------
cp $D/test_good.png $D/test_blob.png "$T/"
printf 'test_good.png\ntest_good.png\0test_blob.png\n' >"$T/list.txt"
R "list line with a NUL byte"  "list.txt: line 2 contains a NUL byte" "$BIN" predict "$T/m.ufm" "$T/list.txt"
finish
