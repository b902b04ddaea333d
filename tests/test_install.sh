#!/usr/bin/env bash
# test_install.sh - the library as another program meets it (issue 14): `make install`
# into a temporary prefix (and a DESTDIR staging), the shared library's SONAME and its
# exported symbols (only the public uf_ API), the pkg-config file, examples/score.c built
# with pkg-config dynamically and statically, whose scores must equal the CLI's exactly,
# and `make uninstall`. Uses the tiny golden ViT and tests/data/detector (no ../shared).
# Needs UF_BIN and UF_BUILD (the build tree, passed by make test).
. "$(dirname "$0")/lib.sh"
BUILD=${UF_BUILD:-build}

SO=$BUILD/libuniformaly.so
# a sanitizer build's library needs its runtime loaded first: a plain program cannot link it
if readelf -d "$SO" 2>/dev/null | grep -qE 'lib(a|t|ub)san'; then
  skp "install test: $SO is a sanitizer build"; finish; exit
fi
for tool in pkg-config readelf nm "$PY"; do
  command -v $tool >/dev/null || { bad "$tool missing"; finish; exit; }
done

# --- the shared library itself ---
check "SONAME is libuniformaly.so.<major>" \
  'readelf -d "$SO" | grep -q "SONAME.*\[libuniformaly\.so\.[0-9]*\]"'
nm -D --defined-only "$SO" | awk '{print $3}' | sort > "$T/exported"
grep -oE '\buf_[a-z0-9_]+\(' include/uniformaly.h | tr -d '(' | sort -u > "$T/declared"
check "exports exactly the functions the header declares" 'cmp -s "$T/exported" "$T/declared"'
check "no internal uf__ symbol exported" '! grep -q "^uf__" "$T/exported"'
check "public API is not empty" '[ "$(wc -l < "$T/exported")" -gt 50 ]'

# --- make install with DESTDIR: files staged, paths refer to PREFIX ---
MK="make --no-print-directory -s BUILD=$BUILD BIN=$BIN"
$MK install PREFIX=/opt/uf DESTDIR="$T/stage" >"$T/log" 2>&1 || bad "make install DESTDIR: $(tail -3 "$T/log")"
S="$T/stage/opt/uf"
check "DESTDIR: CLI, libraries, header, .pc, man page staged" \
  '[ -x "$S/bin/uniformaly" ] && [ -f "$S/lib/libuniformaly.a" ] && [ -L "$S/lib/libuniformaly.so" ] &&
   [ -f "$S/include/uniformaly.h" ] && [ -f "$S/lib/pkgconfig/uniformaly.pc" ] && [ -f "$S/share/man/man1/uniformaly.1" ]'
check "DESTDIR: uniformaly.pc names PREFIX, not the staging dir" \
  'grep -q "^prefix=/opt/uf$" "$S/lib/pkgconfig/uniformaly.pc" && ! grep -q "$T" "$S/lib/pkgconfig/uniformaly.pc"'

# --- make install into a real prefix ---
P="$T/prefix"
$MK install PREFIX="$P" >"$T/log" 2>&1 || bad "make install: $(tail -3 "$T/log")"
soname=$(readelf -d "$SO" | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
check "symlinks: libuniformaly.so -> $soname -> real file" \
  '[ "$(readlink "$P/lib/libuniformaly.so")" = "$soname" ] && [ -f "$P/lib/$(readlink "$P/lib/$soname")" ]'
check "man page renders" 'MANWIDTH=80 man -l "$P/share/man/man1/uniformaly.1" 2>/dev/null | grep -q "predict" || ! command -v man >/dev/null'
export PKG_CONFIG_PATH="$P/lib/pkgconfig"
check "pkg-config knows the version" '[ "$(pkg-config --modversion uniformaly)" = "$("$BIN" --help | sed -n "1s/^uniformaly \([0-9.]*\) .*/\1/p")" ]'

CC=${CC:-cc}
if $CC -Wall -Wextra -Werror examples/score.c $(pkg-config --cflags --libs uniformaly) -o "$T/score_dyn" 2>"$T/err"; then
  ok "example builds against the shared library with pkg-config"
else bad "example (dynamic): $(head -5 "$T/err")"; fi
if $CC -Wall -Wextra -Werror examples/score.c $(pkg-config --cflags uniformaly) -Wl,-Bstatic -luniformaly \
     -Wl,-Bdynamic $(pkg-config --static --libs uniformaly) -o "$T/score_static" 2>"$T/err"; then
  ok "example builds against the static library with pkg-config --static"
else bad "example (static): $(head -5 "$T/err")"; fi
check "dynamic example needs libuniformaly.so.<major>" 'readelf -d "$T/score_dyn" | grep -q "NEEDED.*$soname"'
check "static example does not" '! readelf -d "$T/score_static" | grep -q libuniformaly'
check "dynamic example resolves to the installed library" \
  'LD_LIBRARY_PATH="$P/lib" ldd "$T/score_dyn" | grep -q "$P/lib/$soname"'

# --- its scores equal the CLI's ---
D=tests/data/detector
OPTS="--heads 3 --layers 2-4 --resize 72 --crop 64 --mean 0.5,0.5,0.5 --std 0.5,0.5,0.5 --quiet"
IMGS="$D/test_good.png $D/test_blob.png $D/test_crack.png"
"$P/bin/uniformaly" fit --backbone tests/data/golden/m1.safetensors $OPTS --coreset 0.5 --out "$T/m.ufm" $D/train_*.png \
  2>"$T/err" || bad "installed CLI fits: $(head -3 "$T/err")"
"$P/bin/uniformaly" predict "$T/m.ufm" --json --quiet --batch 1 $IMGS > "$T/cli.json" 2>"$T/err" || bad "CLI predict: $(head -3 "$T/err")"
for kind in dyn static; do
  LD_LIBRARY_PATH="$P/lib" "$T/score_$kind" "$T/m.ufm" $IMGS > "$T/$kind.txt" 2>"$T/err" || bad "score_$kind runs: $(head -3 "$T/err")"
  if "$PY" - "$T/cli.json" "$T/$kind.txt" <<'PY'
import json, struct, sys
f32 = lambda x: struct.unpack("f", struct.pack("f", float(x)))[0]
cli = [json.loads(l) for l in open(sys.argv[1])]
ex = [l.rstrip("\n").split("\t") for l in open(sys.argv[2])]
assert len(cli) == 3 and len(ex) == 3, (len(cli), len(ex))
for c, (p, s) in zip(cli, ex):
    assert c["image"] == p, (c["image"], p)
    assert f32(c["score"]) == f32(s), (p, c["score"], s)
# the three images must not all score alike, or the comparison proves little
assert len({f32(c["score"]) for c in cli}) == 3
PY
  then ok "example ($kind) scores equal the CLI's bit for bit"; else bad "example ($kind) scores differ from the CLI's"; fi
done
LD_LIBRARY_PATH="$P/lib" "$T/score_dyn" "$T/m.ufm" "$T/none.png" >/dev/null 2>"$T/err"
check "example reports a missing image with the library's message" 'grep -q "none.png" "$T/err"'

# --- the installed program finds the installed backbone by itself (no --backbone) ---
NAME=vit_tiny_patch16_224.fp16.safetensors
check "backbone and NOTICE installed in share/uniformaly" \
  'cmp -s "$P/share/uniformaly/$NAME" models/$NAME && [ -s "$P/share/uniformaly/NOTICE" ]'
(cd "$T" && env -u UNIFORMALY_BACKBONE "$P/bin/uniformaly" fit --resize 72 --crop 64 --quiet --out "$T/b.ufm" \
  "$OLDPWD"/$D/train_*.png) 2>"$T/err" || bad "installed CLI fits without --backbone: $(head -3 "$T/err")"
check "the model records the installed backbone" \
  '"$P/bin/uniformaly" info --json "$T/b.ufm" | grep -q "\"path\":[[:space:]]*\"$P/share/uniformaly/$NAME\""'
check "installed predict finds it again" \
  '(cd "$T" && env -u UNIFORMALY_BACKBONE "$P/bin/uniformaly" predict "$T/b.ufm" --quiet "$OLDPWD/$D/test_blob.png") >/dev/null 2>"$T/err"'

# --- the Python module make install placed finds the installed library by itself ---
PY=${UF_PYTHON:-$PY}
if "$PY" -c 'import numpy' 2>/dev/null; then
  pydir=$(ls -d "$P"/lib/python3*/dist-packages 2>/dev/null | head -1); blob="$(pwd)/$D/test_blob.png"
  out=$(cd "$T" && env -u UNIFORMALY_LIB -u UNIFORMALY_BACKBONE PYTHONPATH="$pydir" "$PY" -c '
import uniformaly, sys
m = uniformaly.Model.load(sys.argv[1])
print(uniformaly.__file__); print("%.9g" % m.predict(sys.argv[2]).score); print(uniformaly.bundled_backbone())' "$T/m.ufm" "$blob" 2>&1)
  want=$(sed -n 2p "$T/dyn.txt" | cut -f2)
  check "installed Python module loads the installed library and scores as the CLI" \
    '[ "$(printf "%s\n" "$out" | head -1)" = "$pydir/uniformaly/__init__.py" ] && [ "$(printf "%s\n" "$out" | sed -n 2p)" = "$want" ]'
  check "installed Python module finds the installed bundled backbone" \
    '[ "$(printf "%s\n" "$out" | sed -n 3p)" = "$P/share/uniformaly/$NAME" ]'
else
  skp "installed Python module: python3-numpy not installed"
fi

# --- uninstall removes every file it installed ---
$MK uninstall PREFIX="$P" >"$T/log" 2>&1 || bad "make uninstall: $(tail -3 "$T/log")"
check "uninstall leaves no file behind" '[ -z "$(find "$P" -type f -o -type l)" ]'
finish
