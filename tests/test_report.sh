#!/usr/bin/env bash
# test_report.sh - report.html (issue 13) from `uniformaly report` (predict --json plus
# labels): self-contained (no network reference, thumbnails inline and at most 240 px),
# curves and histogram present, the AUROC and thresholds it prints recomputed here; then rendered in headless
# chromium (skipped when it is not installed, a failure when UF_REQUIRE_CHROMIUM=1, as .ci/run
# sets): the screenshot is not blank and the page logs no console error. Needs UF_BIN.
. "$(dirname "$0")/lib.sh"

M1=tests/data/golden/m1.safetensors
OPTS="--heads 3 --layers 2-4 --resize 72 --crop 64 --mean 0.5,0.5,0.5 --std 0.5,0.5,0.5 --quiet"
D=tests/data/detector
"$BIN" fit --backbone $M1 $OPTS --coreset 0.5 --out "$T/m.ufm" $D/train_0.png $D/train_1.png 2>/dev/null || bad "fit"
"$BIN" calibrate "$T/m.ufm" --normal --quiet $D/train_0.png 2>/dev/null
A="$PWD/$D"  # absolute: label paths are resolved against the list's folder
IMGS="$A/train_2.png $A/train_3.png $A/test_good.png $A/test_blob.png $A/test_crack.png"
"$BIN" predict "$T/m.ufm" --json --heatmap-dir "$T/hm" $IMGS > "$T/pred.jsonl" 2>/dev/null || bad "predict"
printf '%s good\n%s 0\n%s normal\n%s bad\n%s 1\n' $IMGS > "$T/labels.txt"
# predict's overlays grey what the centre crop discards (resize 72 / crop 64: a 4 px border)
$PY - "$T/hm" <<'PY' && ok "predict overlay: uninspected border grey, centre coloured" || bad "predict overlay greying"
import glob, sys
from PIL import Image
fs = sorted(glob.glob(sys.argv[1] + "/*test_blob*.png"))
assert len(fs) == 1, fs
im = Image.open(fs[0]).convert("RGB")
w, h = im.size
side = im.getpixel((1, h // 2)); centre = im.getpixel((w // 2, h // 2))
assert side[0] == side[1] == side[2], side
assert not (centre[0] == centre[1] == centre[2]), centre
PY

expect 2 "report without --out" "$BIN" report --predictions "$T/pred.jsonl" --labels "$T/labels.txt"
printf '%s good\n' "$D/nowhere.png" > "$T/extra.txt"
expect 1 "a labelled image without a prediction" "$BIN" report --predictions "$T/pred.jsonl" --labels "$T/extra.txt" --out "$T/r0.html"
grep -q "nowhere.png" "$T/err" && ok "error names the image" || bad "error: $(cat "$T/err")"
expect 0 "report" "$BIN" report --predictions "$T/pred.jsonl" --labels "$T/labels.txt" --out "$T/report.html"
$PY - "$T/report.html" "$T/pred.jsonl" <<'PY' && ok "report: self-contained, figures recomputed" || bad "report content"
import json, re, sys
h = open(sys.argv[1], encoding="utf-8").read()
assert not re.search(r'(src|href)="(https?:)?//', h) and "<script" not in h, "network reference"
assert h.count("<svg") == 3 and h.count("<polyline") == 2, h.count("<svg")
assert h.count('src="data:image/png;base64,') == 5, h.count("data:image")  # 3 normal + 2 anomalous
s = [json.loads(l)["score"] for l in open(sys.argv[2])]; y = [0, 0, 0, 1, 1]
pos = [a for a, l in zip(s, y) if l]; neg = [a for a, l in zip(s, y) if not l]
auc = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))
assert ("image AUROC <b>%.4f</b>" % auc) in h, auc
t5 = sorted(neg)[len(neg) - 1]          # 5% of 3 normal images: none above
assert ("<td>at 5%% FPR</td><td>%.5g</td>" % t5) in h, t5
PY

# thumbnails are small: a 600 x 400 image (and its overlay) is embedded at most 240 px wide
$PY - "$T/big.png" <<'PY' || bad "writing big.png"
import struct, sys, zlib
w, h = 600, 400
raw = b"".join(b"\0" + bytes((x * 255 // w, y * 255 // h, (x * y) % 251)[c] for x in range(w) for c in range(3)) for y in range(h))
chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
open(sys.argv[1], "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                              + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
PY
"$BIN" predict "$T/m.ufm" --json --heatmap-dir "$T/hm2" "$T/big.png" $IMGS > "$T/pred2.jsonl" 2>/dev/null || bad "predict big"
printf '%s good\n' "$T/big.png" > "$T/labels2.txt"; cat "$T/labels.txt" >> "$T/labels2.txt"
expect 0 "report with a large image" "$BIN" report --predictions "$T/pred2.jsonl" --labels "$T/labels2.txt" --out "$T/report2.html"
$PY - "$T/report2.html" <<'PY' && ok "report: thumbnails at most 240 px, the large one 240 wide" || bad "report thumbnails"
import base64, re, struct, sys
h = open(sys.argv[1], encoding="utf-8").read()
sizes = [struct.unpack(">II", base64.b64decode(m)[16:24]) for m in re.findall(r'data:image/png;base64,([^"]+)', h)]
assert len(sizes) == 6 and all(max(s) <= 240 for s in sizes) and (240, 160) in sizes, sizes
assert "log scale" in h
PY

if ! command -v chromium >/dev/null; then
  if [ "${UF_REQUIRE_CHROMIUM:-0}" = 1 ]; then bad "chromium is not installed"; else skp "chromium not installed: no browser check"; fi
  finish; exit
fi
H="$T/home"; mkdir -p "$H"
CHR=(chromium --headless=new --no-sandbox --disable-gpu --no-first-run --user-data-dir="$H/profile"
     --enable-logging=stderr --v=0 --window-size=1000,1600)
HOME="$H" timeout 90 "${CHR[@]}" --screenshot="$T/shot.png" "file://$T/report.html" >"$T/chr.log" 2>&1 ||
  [ -s "$T/shot.png" ] || bad "chromium screenshot: $(tail -n 3 "$T/chr.log")"
HOME="$H" timeout 90 "${CHR[@]}" --dump-dom "file://$T/report.html" >"$T/dom.html" 2>>"$T/chr.log"
grep -q "image AUROC" "$T/dom.html" && ok "chromium parsed the page (dump-dom)" || bad "dump-dom: $(head -c 300 "$T/dom.html")"
if grep -i "CONSOLE" "$T/chr.log" | grep -qi "error\|uncaught"; then bad "console errors: $(grep -i CONSOLE "$T/chr.log" | head -n 3)"; else ok "no console errors"; fi
$PY - "$T/shot.png" <<'PY' && ok "screenshot is not blank" || bad "screenshot blank"
import struct, sys, zlib
b = open(sys.argv[1], "rb").read()
assert b[:8] == b"\x89PNG\r\n\x1a\n"
w, h = struct.unpack(">II", b[16:24])
idat = b"".join(b[p + 8:p + 8 + struct.unpack(">I", b[p:p + 4])[0]] for p in
                [i - 4 for i in range(len(b)) if b[i:i + 4] == b"IDAT"])
raw = zlib.decompress(idat)
# distinct byte values across the image data: a blank page has a handful
assert w > 500 and h > 500 and len(set(raw[::7])) > 40, (w, h, len(set(raw[::7])))
PY
finish
