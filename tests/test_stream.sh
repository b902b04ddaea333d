#!/usr/bin/env bash
# test_stream.sh - `predict --stdin` (issue 14): image paths arrive on standard input one
# per line and each result line must come out (flushed) before the next path is sent, with
# the same scores as a batch predict; an unreadable path is reported and skipped (exit 1);
# image arguments beside --stdin are a usage error. Tiny golden ViT, no ../shared. Needs UF_BIN.
. "$(dirname "$0")/lib.sh"

D=tests/data/detector
OPTS="--heads 3 --layers 2-4 --resize 72 --crop 64 --mean 0.5,0.5,0.5 --std 0.5,0.5,0.5 --quiet"
"$BIN" fit --backbone tests/data/golden/m1.safetensors $OPTS --out "$T/m.ufm" $D/train_*.png 2>"$T/err" \
  || bad "fit: $(head -3 "$T/err")"
# --batch 1, as --stdin scores (batches agree only up to float rounding in some builds)
"$BIN" predict "$T/m.ufm" --json --batch 1 $D/test_good.png $D/test_crack.png > "$T/batch.json" 2>"$T/err" \
  || bad "batch predict: $(head -3 "$T/err")"

# a conversation over two FIFOs: the writer keeps stdin open while waiting for each answer
mkfifo "$T/in" "$T/out"
"$BIN" predict "$T/m.ufm" --stdin --json < "$T/in" > "$T/out" 2>"$T/stream.err" &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$T"' EXIT  # (replaces lib.sh's trap, keeping its cleanup)
exec 3>"$T/in" 4<"$T/out"
echo "$D/test_good.png" >&3
if read -r -t 60 l1 <&4; then ok "first line arrives while stdin is still open"; else bad "no line for the first image within 60 s"; fi
printf '\n%s\r\n' "$T/missing.png" >&3   # an empty line is skipped; a missing file reported
echo "$D/test_crack.png" >&3
if read -r -t 60 l2 <&4; then ok "second line arrives while stdin is still open"; else bad "no line for the second image within 60 s"; fi
exec 3>&-
wait $pid; rc=$?
exec 4<&-
check "exit 1 after an unreadable path" '[ "$rc" -eq 1 ]'
check "the missing path is named on stderr" 'grep -q "missing.png" "$T/stream.err"'
printf '%s\n%s\n' "${l1:-}" "${l2:-}" > "$T/stream.json"
check "streamed lines equal predict's" 'cmp -s "$T/batch.json" "$T/stream.json"'

# usage
"$BIN" predict "$T/m.ufm" --stdin $D/test_good.png </dev/null >/dev/null 2>"$T/err"
check "--stdin with image arguments: exit 2" '[ $? -eq 2 ] && grep -q "stdin" "$T/err"'
"$BIN" predict "$T/m.ufm" --stdin </dev/null >"$T/o" 2>"$T/err"
check "--stdin with empty input: exit 0, no output" '[ $? -eq 0 ] && [ ! -s "$T/o" ]'
"$BIN" predict "$T/m.ufm" --stdin --heatmap-dir "$T/h" </dev/null >/dev/null 2>"$T/err"
check "--stdin with --heatmap-dir: exit 2" '[ $? -eq 2 ] && grep -q "heatmap" "$T/err"'
printf '%s\n' $D/test_good.png $D/test_crack.png | "$BIN" predict "$T/m.ufm" --stdin > "$T/text" 2>"$T/err"
check "text mode: one PATH<TAB>SCORE<TAB>- line per image" \
  '[ $? -eq 0 ] && [ "$(grep -c "^tests/data/detector/test_[a-z]*\.png	[0-9.e+-]*	-$" "$T/text")" -eq 2 ]'
finish
