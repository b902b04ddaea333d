#!/usr/bin/env bash
# run.sh - `make bench`: our ViT forward speed beside PyTorch and ONNX Runtime, measured in
# the same run, on the same shapes, at the same thread count; prints one table.
#
# Steps: build build/bench_vit; generate the models with scripts/bench_ref.py (seeded
# random weights as .safetensors, one ONNX export per batch size, a check image with its
# float64 reference) unless bench/out/ already has them; install onnxruntime-node into
# bench/node_modules if missing; measure OpenBLAS sgemm; then for each model: ours, PyTorch,
# ONNX Runtime, one after the other (so slow drift in machine load hits all three alike).
# A missing anchor becomes "skipped (reason)" in the table, never a silent gap. The exit
# status is non-zero only if OUR benchmark fails.
#
# Environment (all optional):
#   THREADS=2                      threads for all three (and for sgemm)
#   BENCH_MODELS=vit_s16,vit_b16,vit_b8,dinov2_s14,dinov2_b14   (the dinov2_* run at 448x448)
#   BENCH_BATCHES=1,8
#   BENCH_BUDGET=8                 seconds of timed calls per (impl, model, batch), >= 3 calls
#   BENCH_LEVELS=generic,avx2,avx512,avx512bf16   our kernel levels to time (UF_CPU); default:
#                                  every level this CPU has
#   BENCH_PRECISIONS=fp32,bf16     precisions timed at the avx512bf16 level (interleaved in
#                                  one process: the BF16 / FP32 ratio); the other levels
#                                  run FP32 only (BF16 is emulated there, at FP32 speed)
#   PYTHON=/usr/bin/python3  BUILD=build  BENCH_OUT=bench/out
set -u

cd "$(dirname "$0")/.." || exit 1
THREADS=${THREADS:-2}
MODELS=${BENCH_MODELS:-vit_s16,vit_b16,vit_b8,dinov2_s14,dinov2_b14}
BATCHES=${BENCH_BATCHES:-1,8}
BUDGET=${BENCH_BUDGET:-8}
PYTHON=${PYTHON:-/usr/bin/python3}
BUILD=${BUILD:-build}
OUT=${BENCH_OUT:-bench/out}   # models, logs, results
RES=$OUT/results           # this run's JSON lines: ours, torch, ort
mkdir -p "$RES"
rm -f "$RES"/*.jsonl

# Every library gets the same bound, whichever threading runtime it uses.
export OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
# Passive OpenMP waiting for every OpenMP runtime alike (PyTorch included), as the CLI uses:
# spinning waiters starve the workers on a shared machine (see tools/main.c).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

say() { echo "bench: $*" >&2; }
load_start=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")
t_start=$(date +%s)

# ---- our benchmark binary ---------------------------------------------------------------
if ! make -s "$BUILD/bench_vit" "$BUILD/bench_peak" >&2; then
    say "FAILED: cannot build $BUILD/bench_vit or $BUILD/bench_peak"
    exit 1
fi

# ---- PyTorch: models, ONNX exports, check data -------------------------------------------
TORCH_SKIP=""
if ! "$PYTHON" -c "import torch, numpy" 2>/dev/null; then
    TORCH_SKIP="python3-torch not importable by $PYTHON"
else
    say "generating models into $OUT (skips files that exist)"
    if ! "$PYTHON" scripts/bench_ref.py gen --models "$MODELS" --batches "$BATCHES" \
            --threads "$THREADS" --outdir "$OUT"; then
        TORCH_SKIP="scripts/bench_ref.py gen failed"
    fi
fi

# ---- ONNX Runtime (npm onnxruntime-node, CPU build) --------------------------------------
ORT_SKIP=""
if ! command -v node >/dev/null; then
    ORT_SKIP="node not installed"
elif [ ! -d bench/node_modules/onnxruntime-node ]; then
    if ! command -v npm >/dev/null; then
        ORT_SKIP="npm not installed"
    else
        say "installing onnxruntime-node into bench/node_modules"
        if ! (cd bench && npm install --ignore-scripts --no-audit --no-fund --no-package-lock) \
                >"$OUT/npm.log" 2>&1; then
            ORT_SKIP="npm install onnxruntime-node failed: $(tail -n 1 "$OUT/npm.log" | cut -c1-120)"
        fi
    fi
fi
if [ -z "$ORT_SKIP" ] && ! (cd bench && node -e "require('onnxruntime-node')") 2>"$OUT/ort_load.log"; then
    ORT_SKIP="onnxruntime-node does not load: $(grep -m1 -i error "$OUT/ort_load.log" | cut -c1-120)"
fi

# ---- our kernel levels -------------------------------------------------------------------
. bench/levels.sh
[ -n "${BENCH_LEVELS:-}" ] || make -s uniformaly >&2
LEVELS=$(bench_levels ./uniformaly)

# ---- measurements -------------------------------------------------------------------------
OURS_FAILED=0
# sgemm: OpenBLAS's own choice of kernels, and its AVX2 (Haswell) kernels, the yardstick
# of our avx2 level; then our GEMM at each level on the same shape
sgemm_all() {
    say "sgemm ${THREADS} threads"
    "$BUILD/bench_peak" --threads "$THREADS" --out "$RES/ours.jsonl" || OURS_FAILED=1
    "$BUILD/bench_vit" --sgemm --threads "$THREADS" --out "$RES/ours.jsonl" || OURS_FAILED=1
    OPENBLAS_CORETYPE=Haswell "$BUILD/bench_vit" --sgemm --threads "$THREADS" \
        --out "$RES/ours.jsonl" || OURS_FAILED=1
    for l in ${LEVELS//,/ }; do
        UF_CPU=$l "$BUILD/bench_vit" --gemm --threads "$THREADS" --out "$RES/ours.jsonl" ||
            OURS_FAILED=1
    done
}
sgemm_all

# Shape of each model for the --random fallback (used only if no .safetensors exists).
random_cfg() {
    case $1 in
        vit_s16) echo 384,6,12,1536,16 ;;
        vit_b16) echo 768,12,12,3072,16 ;;
        vit_b8)  echo 768,12,12,3072,8 ;;
        dinov2_s14) echo 384,6,12,1536,14 ;;
        dinov2_b14) echo 768,12,12,3072,14 ;;
    esac
}
# Input side of each model: DINOv2 at 448 (AnomalyDINO's resolution), the others at 224.
img_of() { case $1 in dinov2_*) echo 448 ;; *) echo 224 ;; esac; }

TORCH_FAIL="" ORT_FAIL=""
for m in ${MODELS//,/ }; do
    # ours
    src=(--weights "$OUT/$m.safetensors" --check-in "$OUT/${m}_check_in.f32"
         --check-out "$OUT/${m}_check_out.f32")
    if [ ! -f "$OUT/$m.safetensors" ]; then
        src=(--random "$(random_cfg "$m")")
        say "$m: no $OUT/$m.safetensors, using uf_backbone_random with the same shape"
    fi
    for l in ${LEVELS//,/ }; do
        prec=fp32
        [ "$l" = avx512bf16 ] && prec=${BENCH_PRECISIONS:-fp32,bf16}
        say "$m: ours, $l kernels, $prec"
        UF_CPU=$l "$BUILD/bench_vit" --name "$m" "${src[@]}" --size "$(img_of "$m")" --batches "$BATCHES" \
            --threads "$THREADS" --budget "$BUDGET" --precisions "$prec" \
            --out "$RES/ours.jsonl" || OURS_FAILED=1
    done

    # PyTorch
    if [ -z "$TORCH_SKIP" ]; then
        say "$m: pytorch"
        "$PYTHON" scripts/bench_ref.py time --models "$m" --batches "$BATCHES" \
            --threads "$THREADS" --budget "$BUDGET" --outdir "$OUT" --out "$RES/torch.jsonl" \
            || TORCH_FAIL="scripts/bench_ref.py time exited with an error"
    fi

    # ONNX Runtime
    if [ -z "$ORT_SKIP" ]; then
        say "$m: onnxruntime"
        node bench/ort_bench.js --models "$m" --img "$(img_of "$m")" --batches "$BATCHES" --threads "$THREADS" \
            --budget "$BUDGET" --outdir "$OUT" --out "$RES/ort.jsonl" \
            || ORT_FAIL="bench/ort_bench.js exited with an error"
    fi
done

# sgemm once more at the end: the table uses the better of the two (the machine is shared,
# and "% of sgemm" should compare against what the cores can really do).
sgemm_all

# ---- the table ----------------------------------------------------------------------------
export MODELS BATCHES THREADS RES load_start LEVELS
export TORCH_SKIP="${TORCH_SKIP:-$TORCH_FAIL}" ORT_SKIP="${ORT_SKIP:-$ORT_FAIL}"
export ELAPSED=$(( $(date +%s) - t_start ))
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")
CPU=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//')
grep -qw avx512f /proc/cpuinfo 2>/dev/null && CPU="$CPU, AVX-512"
CPU="$CPU, $(nproc 2>/dev/null || echo '?') cores online"
export LOAD_END CPU
if command -v python3 >/dev/null; then
    python3 bench/table.py | tee "$OUT/table.txt"
else
    say "python3 missing: raw results follow"
    cat "$RES"/*.jsonl
fi

if [ "$OURS_FAILED" != 0 ]; then
    say "FAILED: our benchmark did not complete (see the lines above)"
    exit 1
fi
exit 0
