#!/usr/bin/env bash
# test_names.sh - file and folder names that are not valid UTF-8 (a \xff byte) or that hold a
# tab or a newline (issue 12, point 4): every JSON the program writes still parses (predict
# --json, classify --json, info --json, the features file's header, eval's results.json)
# with each invalid byte replaced by U+FFFD, eval's scores.csv decodes as UTF-8, and the
# tab-separated outputs escape backslash, tab, newline and CR as \\ \t \n \r, so one line
# is one image. JSON is read with /usr/bin/python3's json module. Needs UF_BIN.
. "$(dirname "$0")/lib.sh"

M1=tests/data/golden/m1.safetensors
D=tests/data/detector
OPTS="--backbone $M1 --heads 3 --layers 2-4 --resize 72 --crop 64 --quiet"
# pycheck NAME FILE... <<'PY' ... PY: run a python snippet on the files (sys.argv[1:])
pycheck() { local name=$1; shift; if "$PY" - "$@" >"$T/py" 2>&1; then ok "$name"; else bad "$name: $(tail -n 5 "$T/py")"; fi; }

X=$(printf 'x\xffy')            # not UTF-8
TAB=$(printf 'a\tb')
NL=$(printf 'c\nd')
mkdir -p "$T/img/$X"
cp $D/test_good.png "$T/img/$X/$X.png"
cp $D/test_blob.png "$T/img/$TAB.png"
cp $D/test_crack.png "$T/img/$NL.png"
cp $D/test_good.png "$T/img/back\\slash.png"
"$BIN" fit $OPTS --out "$T/m.ufm" $D/train_0.png $D/train_1.png 2>"$T/err" || bad "setup: fit: $(cat "$T/err")"

# --- predict ------------------------------------------------------------------------------
expect 0 "predict --json on odd names" "$BIN" predict "$T/m.ufm" --json "$T/img"
pycheck "predict --json: 4 valid JSON lines, U+FFFD for the bad byte, tab/newline kept" "$T/out" <<'PY'
import json, sys
raw = open(sys.argv[1], "rb").read()
raw.decode("utf-8")                     # strict: the whole output is UTF-8
lines = raw.decode().splitlines()
assert len(lines) == 4, lines
names = sorted(json.loads(l)["image"].rsplit("/img/", 1)[1] for l in lines)
assert names == sorted(["x\ufffdy/x\ufffdy.png", "a\tb.png", "c\nd.png", "back\\slash.png"]), names
PY
expect 0 "predict (text) on odd names" "$BIN" predict "$T/m.ufm" "$T/img"
pycheck "predict text: one line per image, tab/newline/backslash escaped, bytes kept" "$T/out" <<'PY'
import sys
lines = open(sys.argv[1], "rb").read().split(b"\n")
assert lines[-1] == b"" and len(lines) == 5, lines
rows = [l.split(b"\t") for l in lines[:-1]]
assert all(len(r) == 4 for r in rows), rows  # path, score, decision, normalised
names = sorted(r[0].rsplit(b"/img/", 1)[1] for r in rows)
assert names == sorted([b"x\xffy/x\xffy.png", b"a\\tb.png", b"c\\nd.png", b"back\\\\slash.png"]), names
PY

# --- info --json with a backbone path that is not UTF-8 -----------------------------------
cp $M1 "$T/$X.safetensors"
"$BIN" fit --backbone "$T/$X.safetensors" --heads 3 --layers 2-4 --resize 72 --crop 64 --quiet \
  --out "$T/m2.ufm" $D/train_0.png 2>"$T/err" || bad "setup: fit with an odd backbone name: $(cat "$T/err")"
expect 0 "info --json" "$BIN" info --json "$T/m2.ufm"
pycheck "info --json parses, backbone path with U+FFFD" "$T/out" <<'PY'
import json, sys
o = json.loads(open(sys.argv[1], "rb").read().decode("utf-8"))
assert o["backbone"]["path"].endswith("x\ufffdy.safetensors"), o["backbone"]
PY
expect 0 "predict still finds the odd backbone (the model file keeps the bytes)" \
  "$BIN" predict "$T/m2.ufm" $D/test_good.png

# --- classify -----------------------------------------------------------------------------
expect 0 "classify --json on odd names" "$BIN" classify --backbone $M1 --heads 3 --resize 64 --crop 64 --json "$T/img"
pycheck "classify --json: 4 valid lines" "$T/out" <<'PY'
import json, sys
lines = open(sys.argv[1], "rb").read().decode("utf-8").splitlines()
assert len(lines) == 4 and all("top5" in json.loads(l) for l in lines), lines
assert any(json.loads(l)["image"].endswith("x\ufffdy.png") for l in lines)
PY
expect 0 "classify (text) on odd names" "$BIN" classify --backbone $M1 --heads 3 --resize 64 --crop 64 "$T/img"
check "classify text: 4 name lines + 20 class lines, newline escaped" \
  '[ "$(wc -l <"$T/out")" -eq 24 ] && grep -q "c\\\\nd.png$" "$T/out"'

# --- features header ------------------------------------------------------------------------
expect 0 "features on odd names" "$BIN" features --backbone $M1 --heads 3 --resize 64 --crop 64 --layers 1 --out "$T/f.safetensors" "$T/img"
pycheck "features header: valid UTF-8 JSON, images listed" "$T/f.safetensors" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n].decode("utf-8"))
imgs = json.loads(h["__metadata__"]["images"])
assert len(imgs) == 4 and any(i.endswith("x\ufffdy.png") for i in imgs) and any("\t" in i for i in imgs), imgs
PY

# --- eval: a category folder and an image whose names are not UTF-8 --------------------------
cp -r tests/data/dataset/mvtec/cat_a "$T/ds_cat"
mkdir -p "$T/ds" && mv "$T/ds_cat" "$T/ds/c$X"
mv "$T/ds/c$X/test/good/001.png" "$T/ds/c$X/test/good/$X.png"
expect 0 "eval on a category named with a \\xff byte" "$BIN" eval $OPTS --dataset mvtec --root "$T/ds" --out "$T/ev"
pycheck "eval: results.json and scores.csv are UTF-8, names with U+FFFD" "$T/ev/results.json" "$T/ev/scores.csv" <<'PY'
import csv, io, json, sys
r = json.loads(open(sys.argv[1], "rb").read().decode("utf-8"))
assert "cx\ufffdy" in json.dumps(r, ensure_ascii=False), "category name not found"
rows = list(csv.reader(io.StringIO(open(sys.argv[2], "rb").read().decode("utf-8"))))
assert any("x\ufffdy" in ",".join(row) for row in rows), rows
PY
finish
