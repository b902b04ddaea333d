#!/usr/bin/env bash
# serve.sh - `make bench-serve` (also run by `make bench`): the load test of `uniformaly
# serve` over loopback (bench/serve_load.py: 10,000 requests from 16 concurrent clients, 0
# errors, server RSS growth < 5% from the first to the last thousand, p50 / p99 latency and
# requests per second), printed beside the CLI's cost per image: one `predict` process per
# image (start, model load, score) and one `predict` over 100 images.
#
# The model: by default the tiny golden ViT of tests/data (4 blocks, dim 48, 64x64 input)
# fitted on tests/data/detector, which measures the service's own overhead; with
# SERVE_BENCH_REAL=1 and ../shared present, ViT-Tiny/16 fitted on 16 bottle images and
# scored on bottle test images (900x900 PNGs), which measures a real deployment.
# Environment: SERVE_REQUESTS=10000 SERVE_CLIENTS=16 SERVE_WORKERS=2 SERVE_MAX_SECONDS=900
set -u
cd "$(dirname "$0")/.." || exit 1
BIN=${BIN:-./uniformaly}
N=${SERVE_REQUESTS:-10000}
C=${SERVE_CLIENTS:-16}
K=${SERVE_WORKERS:-2}
SHARED=${UF_SHARED:-../shared}
T=$(mktemp -d); pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$T"' EXIT

if [ "${SERVE_BENCH_REAL:-0}" = 1 ] && [ -d "$SHARED/data/mvtec_ad/bottle" ]; then
  what="ViT-Tiny/16 on bottle (900x900 PNG)"
  "$BIN" fit --backbone "$SHARED/weights/vit_tiny_patch16_224.safetensors" --mean 0.5,0.5,0.5 \
    --std 0.5,0.5,0.5 --shots 16 --quiet --out "$T/m.ufm" "$SHARED/data/mvtec_ad/bottle/train" || exit 1
  IMGS=$(ls "$SHARED"/data/mvtec_ad/bottle/test/*/00[0-2].png)
else
  what="tiny golden ViT (dim 48, 4 blocks, 64x64 input) on tests/data/detector"
  "$BIN" fit --backbone tests/data/golden/m1.safetensors --heads 3 --layers 2-4 --resize 72 --crop 64 \
    --mean 0.5,0.5,0.5 --std 0.5,0.5,0.5 --quiet --out "$T/m.ufm" tests/data/detector/train_*.png || exit 1
  IMGS=$(ls tests/data/detector/test_*.png)
fi
echo "serve bench: $what; $K workers; $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"

# the CLI's cost per image, for comparison
one=$(echo $IMGS | cut -d' ' -f1)
t0=$(date +%s.%N); for i in 1 2 3 4 5; do "$BIN" predict "$T/m.ufm" --quiet "$one" >/dev/null || exit 1; done; t1=$(date +%s.%N)
for i in $(seq 1 $((100 / $(echo $IMGS | wc -w) + 1))); do printf '%s\n' $IMGS; done | head -100 > "$T/list.txt"
sed -i "s|^|$(pwd)/|" "$T/list.txt"
t2=$(date +%s.%N); "$BIN" predict "$T/m.ufm" --quiet "$T/list.txt" >/dev/null || exit 1; t3=$(date +%s.%N)
awk -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" 'BEGIN { printf "CLI: %.1f ms per image as one process per image (start, model load, score); %.2f ms per image in one predict of 100\n", (b - a) * 1000 / 5, (d - c) * 1000 / 100 }'

"$BIN" serve "$T/m.ufm" --port 0 --workers "$K" --max-connections 64 2>"$T/serve.err" &
pid=$!
for i in $(seq 1 300); do grep -q "listening on" "$T/serve.err" && break; sleep 0.1; done
port=$(sed -n 's|.*http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$T/serve.err")
[ -n "$port" ] || { echo "serve bench: the server did not start: $(cat "$T/serve.err")"; exit 1; }
python3 bench/serve_load.py --port "$port" --pid "$pid" --requests "$N" --clients "$C" \
  --max-seconds "${SERVE_MAX_SECONDS:-900}" $IMGS
rc=$?
kill -TERM $pid; wait $pid; src=$?
pid=
[ $src -eq 0 ] || { echo "serve bench: the server exited with status $src"; rc=1; }
exit $rc
